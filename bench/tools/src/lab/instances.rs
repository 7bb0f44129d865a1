//! The lab's instances: how each is recorded (`procs/<name>.spec`, `.pid`, `.log` in the state
//! dir, the files `scripts/lab.sh` kept), started in its host's namespace, asked from inside
//! that host while it starts, and stopped, by PID and only while that PID runs the lab's copy
//! of the binary.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use superpeer_lan::{Lan, in_namespace, runs_one_of};

use super::{CLIENT_LIMIT, HOSTS, Lab, PATH, PREFIX};
use crate::http::Conn;
use crate::opts::Res;
use crate::procs;

/// How to run one instance: the lines of `procs/<name>.spec` (host, role, port, then
/// `KEY=VALUE` settings over the binary's defaults).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Spec {
    pub(super) host: usize,
    pub(super) role: String,
    pub(super) port: u16,
    pub(super) env: Vec<String>,
}

impl Spec {
    fn parse(text: &str) -> Option<Spec> {
        let mut lines = text.lines();
        Some(Spec {
            host: lines
                .next()?
                .parse()
                .ok()
                .filter(|h| (1..=HOSTS).contains(h))?,
            role: lines.next()?.to_string(),
            port: lines.next()?.parse().ok()?,
            env: lines.filter(|l| !l.is_empty()).map(String::from).collect(),
        })
    }

    fn text(&self) -> String {
        let mut lines = vec![
            self.host.to_string(),
            self.role.clone(),
            self.port.to_string(),
        ];
        lines.extend(self.env.iter().cloned());
        lines.join("\n") + "\n"
    }

    pub(super) fn ns(&self) -> String {
        format!("{PREFIX}-host{}", self.host)
    }

    pub(super) fn addr(&self) -> SocketAddr {
        (Lan::ip(self.host), self.port).into()
    }
}

impl Lab {
    pub(super) fn spec(&self, name: &str) -> Option<Spec> {
        Spec::parse(&fs::read_to_string(self.file(name, "spec")).ok()?)
    }

    pub(super) fn pid(&self, name: &str) -> Option<u32> {
        fs::read_to_string(self.file(name, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether `pid` runs the lab's copy of the binary (a recorded PID the kernel has since
    /// given to somebody else does not).
    pub(super) fn is_lab(&self, pid: u32) -> bool {
        running(pid) && runs_one_of(pid, &[&self.bin])
    }

    /// The recorded instances, by name.
    pub(super) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.procs_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".spec").map(String::from)
            })
            .collect();
        names.sort();
        names
    }

    /// Records how to run an instance, and runs it.
    pub(super) fn start(
        &self,
        name: &str,
        host: usize,
        role: &str,
        port: u16,
        env: &[String],
    ) -> Res<()> {
        let spec = Spec {
            host,
            role: role.into(),
            port,
            env: env.to_vec(),
        };
        fs::write(self.file(name, "spec"), spec.text()).map_err(|e| e.to_string())?;
        self.launch(name)
    }

    /// (Re)starts a recorded instance in its host's namespace, configured by its environment
    /// only. `ip netns exec` execs the binary, so the recorded PID is the instance's; a session
    /// of its own (setsid), so no signal from the terminal reaches it, and nothing ties it to
    /// this process (it outlives it).
    #[allow(
        unsafe_code,
        reason = "setsid between fork and exec: std has no safe way"
    )]
    fn launch(&self, name: &str) -> Res<()> {
        let spec = self.spec(name).ok_or_else(|| format!("{name}: no spec"))?;
        let log_path = self.file(name, "log");
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (ns, addr) = (spec.ns(), spec.addr());
        let _ = writeln!(
            log,
            "=== {} lab: starting {name} ({}) in {ns} on {addr}",
            crate::table::utc(now),
            spec.role
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(&self.bin)
            .arg(&spec.role)
            .env_clear()
            .env("PATH", PATH)
            .env("LHOST", addr.ip().to_string())
            .env("LPORT", spec.port.to_string())
            .env("LOG_LEVEL", &self.log_level);
        let key = self.state.join("cluster.key");
        if fs::metadata(&key).is_ok_and(|m| m.len() > 0) {
            cmd.env("CLUSTER_KEY_FILE", &key);
        }
        for setting in &spec.env {
            if let Some((k, v)) = setting.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: between fork and exec the closure calls only setsid, which is
        // async-signal-safe, and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name} did not start: {e}"))?;
        fs::write(self.file(name, "pid"), format!("{}\n", child.id())).map_err(|e| e.to_string())
    }

    /// `GET path` at instance `name`, from its own host: the status and body (status 0: no
    /// answer within `limit`).
    pub(super) fn get(&self, name: &str, path: &str, limit: Duration) -> (u16, Vec<u8>) {
        let Some(spec) = self.spec(name) else {
            return (0, Vec::new());
        };
        let answer = in_namespace(&spec.ns(), || Conn::new(spec.addr(), limit).get(path));
        match answer {
            Ok(Ok(r)) => (r.status, r.body),
            _ => (0, Vec::new()),
        }
    }

    pub(super) fn loc(&self, name: &str) -> String {
        self.spec(name)
            .map(|s| s.addr().to_string())
            .unwrap_or_default()
    }

    /// Polls `ready` every 100 ms for `limit`; between polls, the instance `name` must run.
    /// Fails with `what` and the end of its log.
    fn wait(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Res<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.pid(name).is_some_and(running) {
                self.show_log_tail(name);
                return Err(format!("{name} exited during start-up"));
            }
            if ready() {
                return Ok(());
            }
            procs::sleep(Duration::from_millis(100))?;
        }
        self.show_log_tail(name);
        Err(what.to_string())
    }

    pub(super) fn wait_supernode(&self, name: &str) -> Res<()> {
        let what = format!("{name} did not answer on http://{} in time", self.loc(name));
        self.wait(name, Duration::from_secs(20), &what, || {
            self.get(name, "/api/supernode/alive", Duration::from_secs(2))
                .0
                == 200
        })
    }

    /// `node` is in `supernode`'s alive list.
    pub(super) fn wait_registered(&self, node: &str, supernode: &str) -> Res<()> {
        let location = quoted(&self.loc(node));
        let what = format!("{node} did not register with {supernode} in time");
        self.wait(node, Duration::from_secs(20), &what, || {
            let (status, body) = self.get(supernode, "/api/supernode/alive", CLIENT_LIMIT);
            status == 200 && contains(&body, &location)
        })
    }

    /// `from` finds `id` at `holder`'s location: the multicast group works.
    pub(super) fn wait_group(&self, from: &str, id: &str, holder: &str) -> Res<()> {
        let location = quoted(&self.loc(holder));
        let what = format!(
            "{from} does not find {id} at {} through the multicast group",
            self.loc(holder)
        );
        let path = format!("/api/supernode/search/{id}");
        self.wait(from, Duration::from_secs(15), &what, || {
            let (status, body) = self.get(from, &path, CLIENT_LIMIT);
            status == 200 && contains(&body, &location)
        })
    }

    fn show_log_tail(&self, name: &str) {
        let log = self.file(name, "log");
        eprintln!("---- last lines of {}", log.display());
        eprint!("{}", tail(&log, 15));
        eprintln!("----");
    }

    /// Stops one recorded instance: TERM, then KILL if it lingers 5 s; only while its PID runs
    /// the lab's binary.
    pub(super) fn stop(&self, name: &str) {
        if let Some(pid) = self.pid(name).filter(|&p| self.is_lab(p)) {
            signal(pid, libc::SIGTERM);
            if !gone_within(pid, Duration::from_secs(5)) && self.is_lab(pid) {
                signal(pid, libc::SIGKILL);
                gone_within(pid, Duration::from_secs(3));
            }
        }
        let _ = fs::remove_file(self.file(name, "pid"));
    }
}

/// Running, a zombie excluded (a process's state is the field after its name's `)`).
pub(super) fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| is_running_state(&stat))
}

fn is_running_state(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Waits up to `limit` for `pid` to stop running; whether it did.
fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[allow(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 1
    {
        // SAFETY: kill(2) takes plain integers; the PID runs the lab's binary (checked just
        // before by the caller).
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// The last `n` lines of a file.
pub(super) fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `"text"`, as a JSON string holds it.
pub(super) fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

pub(super) fn contains(body: &[u8], text: &str) -> bool {
    body.windows(text.len()).any(|w| w == text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_what_lab_sh_wrote() {
        let text = "3\nnode\n8001\nSUPERNODE_ENDPOINT=http://192.168.35.10:5001/api/supernode\nNODE_NAME=node3\n";
        let spec = Spec::parse(text).unwrap();
        assert_eq!(spec.host, 3);
        assert_eq!(spec.role, "node");
        assert_eq!(spec.port, 8001);
        assert_eq!(spec.env.len(), 2);
        assert_eq!(spec.ns(), "sp-host3");
        assert_eq!(spec.addr().to_string(), "192.168.35.12:8001");
        assert_eq!(spec.text(), text);
        assert_eq!(Spec::parse(&spec.text()), Some(spec));
        for bad in [
            "",
            "1\nnode\n",
            "x\nnode\n80\n",
            "4\nnode\n80\n",
            "1\nnode\n99999\n",
        ] {
            assert_eq!(Spec::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_zombie_is_not_running() {
        assert!(is_running_state("42 (superpeer) S 1 42"));
        assert!(is_running_state("42 (a (b) c) R 1"));
        assert!(!is_running_state("42 (superpeer) Z 1 42"));
        assert!(!is_running_state(""));
        assert!(running(std::process::id()));
    }
}

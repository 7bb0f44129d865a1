//! `sp-bench lab up|status|down` (make lab, make lab-down; `scripts/lab.sh` calls it): the
//! seed's three hosts as a LAN of network namespaces on this machine, with the seed's cluster
//! started in them from the static binary and left running, for people who want a lab by hand.
//!
//! ```text
//!   namespace sp-lan:   bridge br0 (multicast snooping off, so multicast floods), ports h1 h2 h3
//!   namespace sp-host1: eth0 192.168.35.10/24 <-> h1    supernode1 :5000, supernode2 :5001
//!   namespace sp-host2: eth0 192.168.35.11/24 <-> h2    node1 :8000 -> supernode1
//!   namespace sp-host3: eth0 192.168.35.12/24 <-> h3    node2 :8000 -> supernode1,
//!                                                       node3 :8001 -> supernode2
//! ```
//!
//! The network is superpeer-lan's ([`Lan::named`], prefix `sp`, kept after this process
//! exits): nothing is created in, or attached to, the machine's own namespace, and no packet
//! leaves the machine. The cluster runs with `MULTICAST_GROUP_SIZE=2` and default timings.
//!
//! The one decision: everything `up` made is found again from names and files, not from this
//! process's memory. `down` (and a failed `up`) stops the instances recorded in the state dir
//! by PID, only while a PID still runs the lab's own copy of the binary, then deletes every
//! namespace named `sp-lan`, `sp-host<n>` (killing, by PID, only processes of that copy left
//! in them), then the state dir. The files are those `scripts/lab.sh` kept when it did this in
//! bash, so either can take down the other's lab.
//!
//! Environment: `LAB_STATE_DIR` (default /tmp/superpeer-lab), `LAB_BIN` (use this binary
//! instead of building the static one), `LAB_LOG_LEVEL` (the instances' log level, default
//! info), `LAB_KEY=1` (one fresh cluster key for every instance: a keyed group). The seed's
//! demonstration and the fault drills are Rust tests, each on a lab of its own (make lab-test).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use superpeer_lan::{Lan, delete_named, existing, is_root};

use crate::opts::Res;
use crate::procs;

mod instances;

use instances::tail;

/// The lab's namespaces: `sp-lan`, `sp-host1`..`sp-host3`.
const PREFIX: &str = "sp";
const HOSTS: usize = 3;
/// The static binary `make dist` builds, and the lab's when `LAB_BIN` is not given.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// A hang detector for the lab's own requests: a few seconds above the search time-out.
const CLIENT_LIMIT: Duration = Duration::from_secs(8);
/// The seed's instances: all must run for a lab to be up.
const SEED: [&str; 5] = ["supernode1", "supernode2", "node1", "node2", "node3"];
/// What an instance may find on its PATH (nothing else of the caller's environment reaches it).
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn say(line: &str) {
    println!("lab: {line}");
}

fn warn(line: &str) {
    eprintln!("lab: {line}");
}

/// `sp-bench lab <up|status|down>`.
pub fn main(args: &[String]) -> ExitCode {
    let lab = Lab::from_env();
    let result = match args {
        [cmd] if cmd == "up" => lab.up(),
        [cmd] if cmd == "down" => lab.down(),
        [cmd] if cmd == "status" => lab.status(),
        [cmd] if cmd == "test" => Err(
            "the demonstration and the fault drills are Rust tests now (tests/lab.rs): make lab-test"
                .into(),
        ),
        _ => {
            eprintln!(
                "usage: scripts/lab.sh up|status|down  (sp-bench lab up|status|down)\n  \
                 up      build, make the namespaces, start the seed's cluster, leave it running\n  \
                 status  what runs where\n  \
                 down    stop the lab's processes, delete its namespaces and state dir ({})\n\
                 The demonstration and the fault drills: make lab-test (tests/lab.rs).",
                lab.state.display()
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn(&e);
            ExitCode::FAILURE
        }
    }
}

struct Lab {
    root: PathBuf,
    state: PathBuf,
    /// The lab's own copy of the binary: a rebuild in target/ cannot swap it under running
    /// processes, and a PID is only ever signalled when it runs this very file.
    bin: PathBuf,
    log_level: String,
    keyed: bool,
    given_bin: Option<PathBuf>,
}

impl Lab {
    fn from_env() -> Lab {
        let env = |key| std::env::var(key).ok().filter(|v| !v.is_empty());
        let state = PathBuf::from(env("LAB_STATE_DIR").unwrap_or("/tmp/superpeer-lab".into()));
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        Lab {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
            bin: state.join("bin/superpeer"),
            state,
            log_level: env("LAB_LOG_LEVEL").unwrap_or("info".into()),
            keyed: env("LAB_KEY").is_some_and(|v| v == "1"),
            given_bin: env("LAB_BIN").map(PathBuf::from),
        }
    }

    fn procs_dir(&self) -> PathBuf {
        self.state.join("procs")
    }

    fn file(&self, name: &str, ext: &str) -> PathBuf {
        self.procs_dir().join(format!("{name}.{ext}"))
    }

    fn lock_path(&self) -> PathBuf {
        let mut path = self.state.clone().into_os_string();
        path.push(".lock");
        path.into()
    }

    /// One lab command at a time on this machine (the namespace names are fixed): the lock is
    /// held while the returned file is open (and never by the instances: Rust opens files
    /// close-on-exec).
    fn lock(&self) -> Res<fs::File> {
        let path = self.lock_path();
        let file = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        file.try_lock().map_err(|_| {
            format!(
                "another scripts/lab.sh is running (lock {})",
                path.display()
            )
        })?;
        Ok(file)
    }

    fn is_up(&self) -> Res<bool> {
        Ok(!existing(PREFIX).map_err(|e| e.to_string())?.is_empty() || self.procs_dir().is_dir())
    }

    fn seed_running(&self) -> bool {
        SEED.iter()
            .all(|name| self.spec(name).is_some() && self.pid(name).is_some_and(|p| self.is_lab(p)))
    }

    // --- up ----------------------------------------------------------------------------------

    fn up(&self) -> Res<()> {
        require_root("up")?;
        require_curl()?;
        let _lock = self.lock()?;
        if self.is_up()? {
            if self.seed_running() {
                say("a lab is already up (scripts/lab.sh status); nothing to do");
                return Ok(());
            }
            return Err("a lab is partly up; run scripts/lab.sh down first".into());
        }
        procs::catch_signals()?;
        match self.bring_up() {
            Ok(id3) => {
                self.print_reach(&id3);
                Ok(())
            }
            // A failed start-up leaves nothing behind.
            Err(e) => {
                warn("up failed; cleaning up");
                self.teardown();
                let _ = fs::remove_file(self.lock_path());
                Err(e)
            }
        }
    }

    /// The network and the seed's cluster; the caller cleans up on failure. Returns an id
    /// only node3 holds, for the text that follows.
    fn bring_up(&self) -> Res<String> {
        fs::create_dir_all(self.procs_dir())
            .map_err(|e| format!("{}: {e}", self.state.display()))?;
        if self.keyed {
            let key = self.state.join("cluster.key");
            let mut bytes = [0u8; 32];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|e| format!("/dev/urandom: {e}"))?;
            let _ = fs::remove_file(&key);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key)
                .and_then(|mut f| f.write_all(hex(&bytes).as_bytes()))
                .map_err(|e| format!("{}: {e}", key.display()))?;
            say(&format!(
                "a fresh cluster key for every instance ({}): requests and datagrams signed",
                key.display()
            ));
        }
        let ids1 = self.unique_ids("node1")?;
        let ids3 = self.unique_ids("node3")?;
        let (Some(id1), Some(id3)) = (ids1.first(), ids3.first()) else {
            return Err("resources/node1 and node3 need files of their own".into());
        };
        self.build_binary()?;
        let names: Vec<String> = (1..=HOSTS)
            .map(|h| format!("{PREFIX}-host{h}"))
            .chain([format!("{PREFIX}-lan")])
            .collect();
        say(&format!("creating namespaces {}", names.join(" ")));
        // Kept at once: from here on, `down` (or the clean-up of a failed `up`) deletes it by
        // its names, after the processes in it.
        Lan::named(PREFIX)
            .one_site(HOSTS)
            .map_err(|e| format!("cannot make the lab's network: {e}"))?
            .keep();
        say("starting the seed's cluster");
        self.start_seed_cluster(id1, id3)?;
        Ok(id3.clone())
    }

    /// The seed's topology, default timings.
    fn start_seed_cluster(&self, id1: &str, id3: &str) -> Res<()> {
        let group = ["MULTICAST_GROUP_SIZE=2".to_string()];
        self.start("supernode1", 1, "supernode", 5000, &group)?;
        self.start("supernode2", 1, "supernode", 5001, &group)?;
        self.wait_supernode("supernode1")?;
        self.wait_supernode("supernode2")?;
        let sn1 = format!("SUPERNODE_ENDPOINT={}", supernode_api(5000));
        let sn2 = format!("SUPERNODE_ENDPOINT={}", supernode_api(5001));
        for (name, host, port, api) in [
            ("node1", 2, 8000, &sn1),
            ("node2", 3, 8000, &sn1),
            ("node3", 3, 8001, &sn2),
        ] {
            let folder = self.root.join("resources").join(name);
            let env = [
                api.clone(),
                format!("RESOURCE_PATH={}", folder.display()),
                format!("NODE_NAME={name}"),
            ];
            self.start(name, host, "node", port, &env)?;
        }
        self.wait_registered("node1", "supernode1")?;
        self.wait_registered("node2", "supernode1")?;
        self.wait_registered("node3", "supernode2")?;
        self.wait_group("supernode1", id3, "node3")?;
        self.wait_group("supernode2", id1, "node1")
    }

    /// The static binary, copied into the state dir: `LAB_BIN` when given (make lab passes the
    /// one `make dist` built), else the same musl build `make dist` makes.
    fn build_binary(&self) -> Res<()> {
        let built = match &self.given_bin {
            Some(given) => {
                if !fs::metadata(given).is_ok_and(|m| m.is_file()) {
                    return Err(format!(
                        "LAB_BIN={} is not an executable file",
                        given.display()
                    ));
                }
                say(&format!("using LAB_BIN={} (no build)", given.display()));
                given.clone()
            }
            None => {
                if !on_path("cargo") {
                    return Err("cargo is missing (or set LAB_BIN to a built superpeer)".into());
                }
                say(&format!(
                    "building: cargo build --release --target {MUSL_TARGET}"
                ));
                let log_path = self.state.join("build.log");
                let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
                let ok = Command::new("cargo")
                    .args(["build", "--release", "--target", MUSL_TARGET])
                    .current_dir(&self.root)
                    .stdout(log.try_clone().map_err(|e| e.to_string())?)
                    .stderr(log)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    eprint!("{}", tail(&log_path, 30));
                    return Err(format!(
                        "cargo build failed (full log above: {})",
                        log_path.display()
                    ));
                }
                self.root
                    .join(format!("target/{MUSL_TARGET}/release/superpeer"))
            }
        };
        fs::create_dir_all(self.state.join("bin")).map_err(|e| e.to_string())?;
        let new = self.state.join("bin/superpeer.new");
        fs::copy(&built, &new)
            .and_then(|_| fs::rename(&new, &self.bin))
            .map_err(|e| format!("copy {} into the lab: {e}", built.display()))?;
        if on_path("file")
            && let Ok(out) = Command::new("file").arg("-b").arg(&self.bin).output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            let first: Vec<&str> = text.trim().split(',').take(5).collect();
            say(&format!("binary: {}", first.join(",")));
        }
        Ok(())
    }

    /// The ids of the files of `resources/<node>` that no other node holds, by file name.
    fn unique_ids(&self, node: &str) -> Res<Vec<String>> {
        let resources = self.root.join("resources");
        let mut folders = Vec::new();
        for entry in fs::read_dir(&resources)
            .map_err(|e| format!("{}: {e}", resources.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            folders.push((name, ids_in(&entry.path())?));
        }
        Ok(unique(&folders, node))
    }

    fn print_reach(&self, id3: &str) {
        let ip = |h| Lan::ip(h);
        println!(
            "lab: up. What runs where (state, logs and pid files in {procs}/):\n  \
             host-1  sp-host1  {h1}   supernode1 :5000, supernode2 :5001 (GROUP_SIZE=2)\n  \
             host-2  sp-host2  {h2}   node1 :8000 -> supernode1\n  \
             host-3  sp-host3  {h3}   node2 :8000 -> supernode1, node3 :8001 -> supernode2\n\
             Reach them from inside their network, e.g.:\n  \
             ip netns exec sp-host2 curl -s http://{h2}:8000/api/node/resources\n  \
             ip netns exec sp-host3 curl -si http://{h3}:8000/api/node/resources/{id3}\n  \
             ip netns exec sp-host2 curl -sL http://{h2}:8000/api/node/resources/{id3}/content\n  \
             ip netns exec sp-host1 curl -s http://{h1}:5000/api/supernode/alive\n  \
             ip netns exec sp-host1 curl -s http://{h1}:5000/api/supernode/search/{id3}\n  \
             ip netns exec sp-host3 bash          # a shell on host-3\n\
             Status: scripts/lab.sh status    Stop: scripts/lab.sh down",
            procs = self.procs_dir().display(),
            h1 = ip(1),
            h2 = ip(2),
            h3 = ip(3),
        );
    }

    // --- down ----------------------------------------------------------------------------------

    fn down(&self) -> Res<()> {
        require_root("down")?;
        let _lock = self.lock()?;
        if !self.is_up()? {
            say("no lab is up; nothing to do");
            let _ = fs::remove_file(self.lock_path());
            return Ok(());
        }
        self.teardown();
        let _ = fs::remove_file(self.lock_path());
        say(&format!(
            "down: processes stopped, namespaces deleted, {} removed",
            self.state.display()
        ));
        Ok(())
    }

    /// Stops every recorded instance, deletes every namespace of the lab, removes the state
    /// dir. Safe at any point (nothing there: nothing done).
    fn teardown(&self) {
        for name in self.names() {
            self.stop(&name);
        }
        match delete_named(PREFIX, std::slice::from_ref(&self.bin)) {
            Ok(deleted) => {
                for (ns, pid) in &deleted.stopped {
                    say(&format!("stopped leftover lab process {pid} in {ns}"));
                }
                for (ns, pid, cmdline) in &deleted.left {
                    warn(&format!(
                        "warning: process {pid} ({cmdline}) is still in {ns}; left alone"
                    ));
                }
                for (ns, why) in &deleted.failed {
                    warn(&format!("warning: could not delete namespace {ns}: {why}"));
                }
            }
            Err(e) => warn(&format!("warning: cannot list the namespaces: {e}")),
        }
        if let Err(e) = fs::remove_dir_all(&self.state)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn(&format!("warning: {}: {e}", self.state.display()));
        }
    }

    // --- status --------------------------------------------------------------------------------

    fn status(&self) -> Res<()> {
        require_root("status")?;
        if !self.is_up()? {
            say("no lab is up");
            return Ok(());
        }
        let present = existing(PREFIX).map_err(|e| e.to_string())?;
        println!("namespaces:");
        let lan = format!("{PREFIX}-lan");
        for ns in (1..=HOSTS)
            .map(|h| format!("{PREFIX}-host{h}"))
            .chain([lan.clone()])
        {
            let line = if !present.contains(&ns) {
                "missing".to_string()
            } else if ns == lan {
                let ports = ip_out(&["-n", &ns, "-br", "link", "show", "master", "br0"]);
                format!("bridge br0, ports {}", bridge_ports(&ports))
            } else {
                let addr = ip_out(&["-n", &ns, "-br", "addr", "show", "eth0"]);
                first_fields(&addr, 3)
            };
            println!("  {ns}: {line}");
        }
        println!("processes:");
        for name in self.names() {
            let Some(spec) = self.spec(&name) else {
                continue;
            };
            let state = match self.pid(&name).filter(|&p| self.is_lab(p)) {
                Some(pid) => format!("running, pid {pid}"),
                None => "NOT running".into(),
            };
            println!(
                "  {name:<11} {:<9} {:<9} http://{:<20} {state}",
                spec.role,
                spec.ns(),
                spec.addr().to_string()
            );
        }
        println!("logs: {}/<name>.log", self.procs_dir().display());
        Ok(())
    }
}

/// `http://192.168.35.10:5000/api/supernode`: host-1's supernode on `port`.
fn supernode_api(port: u16) -> String {
    format!("http://{}:{port}/api/supernode", Lan::ip(1))
}

fn require_root(cmd: &str) -> Res<()> {
    if !is_root() {
        return Err(format!(
            "must run as root: it creates network namespaces (try: sudo scripts/lab.sh {cmd})"
        ));
    }
    if !on_path("ip") {
        return Err("ip (iproute2) is missing; install it: apt-get install -y iproute2".into());
    }
    Ok(())
}

/// The text that `up` prints shows curl: installed when missing.
fn require_curl() -> Res<()> {
    if on_path("curl") {
        return Ok(());
    }
    say("curl is missing; installing it (apt-get install -y curl)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "curl"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("could not install curl".into())
    }
}

/// Whether `tool` is an executable file on the PATH (or in /usr/sbin, /sbin).
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| {
            fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn ip_out(args: &[&str]) -> String {
    superpeer_lan::run("ip", args, None).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of every file in `dir`, by file name.
fn ids_in(dir: &Path) -> Res<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
    {
        let content = fs::read(entry.path()).map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((name, hex(&Sha256::digest(&content))));
    }
    files.sort();
    Ok(files)
}

/// Of `folders` (name, its files' (name, id)), the ids of `node`'s files no other folder
/// holds, in file-name order.
fn unique(folders: &[(String, Vec<(String, String)>)], node: &str) -> Vec<String> {
    let Some((_, mine)) = folders.iter().find(|(name, _)| name == node) else {
        return Vec::new();
    };
    mine.iter()
        .map(|(_, id)| id)
        .filter(|id| {
            folders
                .iter()
                .filter(|(name, _)| name != node)
                .all(|(_, files)| files.iter().all(|(_, other)| other != *id))
        })
        .cloned()
        .collect()
}

/// `ip -br link show master br0` as `h1(UP) h2(UP) `: each port and its state.
fn bridge_ports(text: &str) -> String {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let port = fields.next()?.split('@').next()?;
            Some(format!("{port}({}) ", fields.next().unwrap_or("?")))
        })
        .collect()
}

/// The first `n` fields of the first line.
fn first_fields(text: &str, n: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.split_whitespace()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use instances::{contains, quoted};

    #[test]
    fn unique_ids_leave_out_what_another_node_holds() {
        let file = |name: &str, id: &str| (name.to_string(), id.to_string());
        let folders = vec![
            ("node1".to_string(), vec![file("a", "11"), file("b", "99")]),
            ("node2".to_string(), vec![file("c", "99")]),
            ("node3".to_string(), vec![file("d", "33"), file("e", "34")]),
        ];
        assert_eq!(unique(&folders, "node1"), ["11"]);
        assert!(unique(&folders, "node2").is_empty());
        assert_eq!(unique(&folders, "node3"), ["33", "34"]);
        assert!(unique(&folders, "node9").is_empty());
    }

    #[test]
    fn status_lines_from_ip_brief() {
        let ports = "h1@if2           UP             aa:bb <BROADCAST,MULTICAST,UP>\n\
                     h2@if2           DOWN           cc:dd <BROADCAST>\n";
        assert_eq!(bridge_ports(ports), "h1(UP) h2(DOWN) ");
        let addr = "eth0@if5         UP             192.168.35.10/24 fe80::1/64\n";
        assert_eq!(first_fields(addr, 3), "eth0@if5 UP 192.168.35.10/24");
        assert_eq!(first_fields("", 3), "");
    }

    #[test]
    fn small_helpers() {
        assert!(contains(
            br#"{"data":["192.168.35.11:8000"]}"#,
            &quoted("192.168.35.11:8000")
        ));
        assert!(!contains(
            br#"{"data":["192.168.35.11:80001"]}"#,
            &quoted("192.168.35.11:8000")
        ));
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(
            supernode_api(5001),
            "http://192.168.35.10:5001/api/supernode"
        );
    }
}

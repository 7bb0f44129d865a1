//! `sp-bench run`: the driver of `make bench`. It builds the binaries, makes the test files,
//! starts the references and the instances (on 127.0.0.1 only), runs every measurement (or
//! those asked for), writes the table with the machine's description and every run, and stops
//! every process it started.
//!
//! What a run does (settings, the measurements in order) is in [`crate::plan`]; the
//! measurements in [`crate::rows`]; the set-up they share (builds, files, nginx, the
//! ping-pong, the search pair) in [`crate::setup`].

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::opts::Res;
use crate::plan::{MEASURES, Measure, Need, Settings, select};
use crate::procs::{self, Procs};
use crate::stats::grouped;
use crate::table::{self, Row};

/// Every address the bench binds or asks: loopback.
pub const HOST: &str = "127.0.0.1";

// ---------------------------------------------------------------------------------------------
// The driver's state

pub struct Bench {
    pub s: Settings,
    started: Instant,
    log: Option<fs::File>,
    pub procs: Procs,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// This program (for the subcommands that run as processes of their own).
    pub tool: PathBuf,
    pub bin: PathBuf,
    pub static_bin: Option<PathBuf>,
    pub static_kind: String,
    pub nginx_bin: PathBuf,
    /// The CPU wrk and curl run on while instances are pinned (the other one).
    pub wrk_cpu: Option<usize>,
    /// Multicast ping-pong medians, two cores and one (us).
    pub pp_us: Option<f64>,
    pub pp_same_us: Option<f64>,
    /// Row 3's medians (us): a local hit and a remote one.
    pub local_us: Option<f64>,
    pub remote_us: Option<f64>,
    /// Row 2's nginx figure (req/s), the reference of row 2g.
    pub nginx_rps: Option<f64>,
    /// The groups of supernodes up (rows 15, 16): prefix -> size.
    pub groups: HashMap<String, usize>,
    /// Their idle rate of datagrams at each supernode but the asker, per second.
    pub bg_rate: HashMap<String, Vec<f64>>,
}

/// An instance's settings: KEY=VALUE pairs of its environment.
pub type Env = Vec<(String, String)>;

pub fn env_of(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Bench {
    fn new(s: Settings) -> Res<Bench> {
        let log = fs::File::create(s.logs.join("bench.log")).ok();
        let tool = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
        Ok(Bench {
            bin: s.root.join("target/release/superpeer"),
            s,
            started: Instant::now(),
            log,
            procs: Procs::default(),
            rows: Vec::new(),
            notes: Vec::new(),
            tool,
            static_bin: None,
            static_kind: "musl".into(),
            nginx_bin: PathBuf::from("/usr/sbin/nginx"),
            wrk_cpu: None,
            pp_us: None,
            pp_same_us: None,
            local_us: None,
            remote_us: None,
            nginx_rps: None,
            groups: HashMap::new(),
            bg_rate: HashMap::new(),
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A line of the run's log: on standard error and in bench/logs/bench.log.
    pub fn say(&mut self, msg: impl AsRef<str>) {
        let secs = self.started.elapsed().as_secs();
        eprintln!("[bench {secs:3}s] {}", msg.as_ref());
        if let Some(log) = &mut self.log {
            let _ = writeln!(log, "[{secs:3}s] {}", msg.as_ref());
        }
    }

    /// A note under the table (and in the log).
    pub fn note(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.say(format!("note: {msg}"));
        self.notes.push(msg);
    }

    /// One row of the table: one argument per column.
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &mut self,
        num: &str,
        measurement: impl Into<String>,
        figure: impl Into<String>,
        reference: impl Into<String>,
        ratio: impl ToString,
        target: &str,
        result: String,
    ) {
        self.rows.push(Row {
            num: num.into(),
            measurement: measurement.into(),
            figure: figure.into(),
            reference: reference.into(),
            ratio: ratio.to_string(),
            target: target.into(),
            result,
        });
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.s.logs.join(name)
    }

    pub fn rel<'a>(&self, path: &'a Path) -> std::borrow::Cow<'a, str> {
        match path.strip_prefix(&self.s.root) {
            Ok(p) => p.to_string_lossy(),
            Err(_) => path.to_string_lossy(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Instances

    /// Starts an instance with exactly these settings over the binary's defaults (what users
    /// run) on 127.0.0.1:PORT, logging to bench/logs/NAME.log, and waits until it accepts
    /// connections (20 s at most).
    pub fn start(
        &mut self,
        name: &str,
        role: &str,
        bin: &Path,
        port: u16,
        env: &[(String, String)],
    ) -> Res<()> {
        let log_path = self.log_path(&format!("{name}.log"));
        if procs::port_busy(port) {
            return Err(format!("{name}: port {port} on {HOST} is already in use"));
        }
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg(role)
            .current_dir(&self.s.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        procs::clean_env(&mut cmd)
            .env("LHOST", HOST)
            .env("LPORT", port.to_string())
            .envs(env.iter().cloned());
        procs::contain(&mut cmd, None);
        self.procs.spawn(name, &mut cmd)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !self.procs.running(name) {
                self.procs.stop(&[name]);
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{name} exited at start-up: {}", tail(&log, 3)));
            }
            if procs::port_busy(port) {
                self.procs.set_port(name, port);
                return Ok(());
            }
            if let Err(e) = procs::sleep(Duration::from_millis(50)) {
                self.procs.stop(&[name]);
                return Err(e);
            }
        }
        self.procs.stop(&[name]);
        Err(format!(
            "{name} did not listen on port {port} within 20 s (see {})",
            log_path.display()
        ))
    }

    pub fn stop(&mut self, names: &[&str]) {
        self.procs.stop(names);
    }

    pub fn port(&self, name: &str) -> Option<u16> {
        self.procs.port(name)
    }

    /// 127.0.0.1:port of a running instance.
    pub fn addr(&self, name: &str) -> Res<SocketAddr> {
        let port = self.port(name).ok_or(format!("{name} is not running"))?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    pub fn url(&self, name: &str) -> Res<String> {
        Ok(format!("http://{}", self.addr(name)?))
    }

    pub fn pid(&self, name: &str) -> Res<u32> {
        self.procs.pid(name).ok_or(format!("{name} is not running"))
    }

    /// Waits until the instance's log has a line where the words come in this order.
    pub fn wait_log(&mut self, name: &str, words: &[&str], limit: Duration) -> Res<bool> {
        let path = self.log_path(&format!("{name}.log"));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if text.lines().any(|l| in_order(l, words)) {
                return Ok(true);
            }
            procs::sleep(Duration::from_millis(50))?;
        }
        Ok(false)
    }

    /// The named instances on core 0 (every thread), wrk and curl on core 1, for the rows that
    /// compare two superpeer variants. Unpinned, a run moves by 10-20% with where the
    /// scheduler puts wrk's threads and the server's (one core or two), which a ratio of 0.9
    /// cannot bear.
    pub fn pin(&mut self, names: &[&str]) -> Res<()> {
        if procs::ncpus() < 2 {
            return Ok(());
        }
        for name in names {
            procs::pin_threads(self.pid(name)?, &[0])?;
        }
        self.wrk_cpu = Some(1);
        Ok(())
    }

    /// Undoes [`Bench::pin`] for those still running.
    pub fn unpin(&mut self, names: &[&str]) {
        let all: Vec<usize> = (0..procs::ncpus()).collect();
        for name in names {
            if let Ok(pid) = self.pid(name) {
                let _ = procs::pin_threads(pid, &all);
            }
        }
        self.wrk_cpu = None;
    }

    /// Runs a subcommand of this program as a process of its own (bounded by `limit`), its
    /// standard output to `out` and its standard error to `err` (or with the output).
    pub fn tool_run(
        &mut self,
        name: &str,
        args: &[String],
        limit: Duration,
        out: &Path,
        err: Option<&Path>,
    ) -> Res<String> {
        let out_file = fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let err_file = match err {
            Some(path) => fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => out_file.try_clone().map_err(|e| e.to_string())?,
        };
        let mut cmd = Command::new(&self.tool);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file);
        procs::clean_env(&mut cmd);
        procs::contain(&mut cmd, None);
        self.procs.spawn(name, &mut cmd)?;
        let status = self.procs.wait(name, limit)?;
        let text = fs::read_to_string(out).unwrap_or_default();
        let last = text.lines().last().unwrap_or("").to_string();
        match status {
            Some(_) => Ok(last),
            None => Err(format!("{name} did not end within {} s", limit.as_secs())),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The run

    /// Runs one measurement: skipped past the time budget; one that adds no row gets an ERROR
    /// row (its error, if it said one, is in the log).
    fn measure(&mut self, m: &Measure) -> Res<()> {
        if self.elapsed() > self.s.budget {
            self.rows
                .push(Row::error(m.key, m.name, "-", "SKIPPED (time budget)"));
            return Ok(());
        }
        self.say(format!("== {}: {}", m.key, m.name));
        let before = self.rows.len();
        let outcome = (m.run)(self);
        procs::check()?;
        if let Err(e) = outcome {
            self.say(format!("{}: {e}", m.key));
        }
        if self.rows.len() == before {
            self.rows
                .push(Row::error(m.key, m.name, "-", "ERROR (see the log above)"));
        }
        Ok(())
    }

    fn run_all(&mut self, selected: &[&Measure]) -> Res<()> {
        self.say(format!(
            "superpeer benchmarks; logs in {}/",
            self.rel(&self.s.logs)
        ));
        for tool in ["wrk", "openssl", "cargo", "curl", "ss"] {
            if which(tool).is_none() {
                return Err(format!("{tool} is missing"));
            }
        }
        self.nginx_bin = which("nginx").unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
        let needs: BTreeSet<Need> = selected
            .iter()
            .flat_map(|m| m.needs.iter().copied())
            .collect();
        self.build(needs.contains(&Need::Static))
            .map_err(|e| format!("the build failed: {e}"))?;
        self.set_up(&needs)?;
        for m in MEASURES {
            if selected.iter().any(|s| s.key == m.key) {
                self.measure(m)?;
            }
            // What the measurements after this one no longer need.
            match m.key {
                "6, 7, 10" => self.stop(&["a", "b"]),
                "13" => self.stop(&["nginx"]),
                "12" => self.stop(&["h"]),
                _ => {}
            }
        }
        self.stop_scale();
        Ok(())
    }

    /// The machine, the versions and the references, as the table's header says them.
    fn facts(&self) -> Vec<String> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(": ")
                    .map(|(_, v)| v)
            })
            .unwrap_or("unknown CPU");
        let sha_ni = if cpuinfo
            .lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "sha_ni"))
        {
            "yes"
        } else {
            "no"
        };
        let mem_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb / 1_048_576.0);
        let git = |args: &[&str]| command_output("git", args, &self.s.root);
        let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty = Command::new("git")
            .args(["diff", "--quiet", "HEAD", "--", "src", "Cargo.toml"])
            .current_dir(&self.s.root)
            .status()
            .is_ok_and(|s| !s.success());
        let wrk = command_output("wrk", &["-v"], &self.s.root)
            .and_then(|v| {
                v.lines()
                    .next()?
                    .split_whitespace()
                    .nth(1)
                    .map(String::from)
            })
            .unwrap_or_default();
        let nginx = command_output(&self.nginx_bin.to_string_lossy(), &["-v"], &self.s.root)
            .map(|v| v.rsplit(": ").next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        vec![
            format!(
                "machine: {} cores, {cpu} (SHA-NI: {sha_ni}), {mem_gib:.0} GiB of memory",
                procs::ncpus()
            ),
            format!(
                "kernel: {}",
                command_output("uname", &["-srm"], &self.s.root).unwrap_or_default().trim()
            ),
            format!(
                "superpeer: {}{}",
                head.trim(),
                if dirty { " + uncommitted changes" } else { "" }
            ),
            format!(
                "wrk {wrk}: `wrk -t2 -c32 -d{}s --timeout 2s`, medians of {} runs, superpeer and its reference interleaved",
                self.s.wrk_seconds, self.s.runs
            ),
            format!(
                "nginx: {nginx}, worker_processes auto, access log off; {}",
                match (self.pp_us, self.pp_same_us) {
                    (Some(two), one) => format!(
                        "multicast ping-pong median {} us on two cores, {} us on one",
                        grouped(two, 1),
                        grouped(one.unwrap_or(0.0), 1)
                    ),
                    (None, _) => "no multicast ping-pong in this run".to_string(),
                }
            ),
            "everything on 127.0.0.1 while other work may run on the same machine: figures are noisy, ratios less so".into(),
        ]
    }

    fn write_results(&mut self, start_date: &str) -> Res<usize> {
        let elapsed = self.elapsed().as_secs();
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        let log = fs::read_to_string(self.log_path("bench.log")).unwrap_or_default();
        let text = table::markdown(
            &format!("{start_date}, in {elapsed} s"),
            &self.facts(),
            &self.rows,
            &self.notes,
            &log,
        );
        fs::write(&self.s.results, &text)
            .map_err(|e| format!("{}: {e}", self.s.results.display()))?;
        println!("\n{text}");
        let failed = self.rows.iter().filter(|r| !r.passed()).count();
        self.say(format!(
            "done in {elapsed} s: {failed} item(s) missed their target or failed; table in {}",
            self.rel(&self.s.results)
        ));
        Ok(failed)
    }
}

/// The words appear in the line in this order (` registered ` then ` with `).
pub fn in_order(line: &str, words: &[&str]) -> bool {
    let mut rest = line;
    for word in words {
        match rest.find(word) {
            Some(i) => rest = &rest[i + word.len()..],
            None => return false,
        }
    }
    true
}

/// The last `n` lines of a text, joined by spaces.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" ")
}

/// A program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What a command prints (standard output, or standard error when that is all it printed).
fn command_output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Some(String::from_utf8_lossy(&text).into_owned())
}

/// `sp-bench run ...`.
pub fn run(args: &[String]) -> ExitCode {
    let settings = match Settings::parse(args) {
        Ok(Some(s)) => s,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sp-bench run: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = procs::catch_signals() {
        eprintln!("sp-bench run: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = prepare_dirs(&settings) {
        eprintln!("sp-bench run: {e}");
        return ExitCode::FAILURE;
    }
    let start_date = table::utc(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let selected = select(&settings.only);
    let (keep_data, data, strict) = (settings.keep_data, settings.data.clone(), settings.strict);
    let mut bench = match Bench::new(settings) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sp-bench run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = bench.run_all(&selected);
    // Every process it started, stopped (also after an error or an interruption).
    bench.procs.stop_everything();
    let code = match outcome {
        Err(e) if e == procs::INTERRUPTED => {
            bench.say("interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            bench.say(e);
            ExitCode::FAILURE
        }
        Ok(()) => match bench.write_results(&start_date) {
            Ok(failed) if strict && failed > 0 => ExitCode::FAILURE,
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                bench.say(e);
                ExitCode::FAILURE
            }
        },
    };
    if !keep_data {
        let _ = fs::remove_dir_all(&data);
    }
    code
}

/// bench/logs/ and bench/data/, the last run's logs gone (not setup/, run.sh's).
fn prepare_dirs(s: &Settings) -> Res<()> {
    for dir in [&s.logs, &s.data] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let entries = fs::read_dir(&s.logs).map_err(|e| format!("{}: {e}", s.logs.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "farm" {
            let _ = fs::remove_dir_all(&path);
        } else if [".log", ".txt", ".err", ".out"]
            .iter()
            .any(|x| name.ends_with(x))
        {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_and_tails() {
        assert!(in_order(
            "node: registered 15 files with http://x",
            &[" registered ", " with "]
        ));
        assert!(!in_order(
            "with x registered y",
            &[" registered ", " with "]
        ));
        assert_eq!(tail("a\nb\nc\n", 2), "b c");
        assert_eq!(tail("", 3), "");
    }
}

//! The processes the driver starts, and nothing else: each in a process group of its own
//! (its pid is the group's id), recorded by name and PID, stopped by its group (TERM to every
//! one at once, then KILL for those still there after 10 s), on every path out: the end of a
//! measurement, an error, Ctrl-C or TERM (a flag the waits check), and the driver's own death
//! (each child gets TERM from the kernel then: `PR_SET_PDEATHSIG`).
//!
//! Also: CPU affinity (the pinned rows), resident memory, and the check that a port accepts
//! connections.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::opts::Res;

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// SIGINT and SIGTERM set the flag [`interrupted`] reads, instead of ending the process: the
/// driver then stops what it started and exits.
pub fn catch_signals() -> Res<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&STOP))
            .map_err(|e| format!("cannot catch signal {signal}: {e}"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// An error when the run was interrupted: every loop of the driver checks it.
pub fn check() -> Res<()> {
    if interrupted() {
        Err(INTERRUPTED.to_string())
    } else {
        Ok(())
    }
}

pub const INTERRUPTED: &str = "interrupted";

/// Sleeps, in slices, while the run is not interrupted.
pub fn sleep(d: Duration) -> Res<()> {
    let until = Instant::now() + d;
    loop {
        check()?;
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return Ok(());
        };
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Only what the caller sets reaches the child, and PATH: no configuration key from the
/// caller's environment, no HTTP proxy (everything stays on this machine).
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// Readies a command to be one of the driver's children: a process group of its own, TERM when
/// the driver dies, and, with `cpu`, pinned to that CPU from its first instruction.
pub fn contain(cmd: &mut Command, cpu: Option<usize>) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (prctl, getppid, sched_setaffinity) on memory of its own (a cpu_set_t on its stack).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The driver died between fork and prctl: do not outlive it.
            if libc::getppid() == 1 {
                return Err(io::Error::other("the driver is gone"));
            }
            if let Some(cpu) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// A signal to the process group of a child the driver started (its pid is the group's id)
/// and has not reaped yet, so the id cannot have been given to anyone else.
fn signal_group(child: &Child, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers; a negative pid names a process group.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

pub struct Proc {
    pub name: String,
    pub child: Child,
    pub port: Option<u16>,
}

/// Every process the driver started and has not stopped yet.
#[derive(Default)]
pub struct Procs {
    list: Vec<Proc>,
}

impl Procs {
    /// Starts a command prepared with [`contain`] and records it under `name`.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> Res<u32> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let pid = child.id();
        self.list.push(Proc {
            name: name.to_string(),
            child,
            port: None,
        });
        Ok(pid)
    }

    fn find(&mut self, name: &str) -> Option<&mut Proc> {
        self.list.iter_mut().find(|p| p.name == name)
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.list
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.child.id())
    }

    pub fn port(&self, name: &str) -> Option<u16> {
        self.list
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.port)
    }

    pub fn set_port(&mut self, name: &str, port: u16) {
        if let Some(p) = self.find(name) {
            p.port = Some(port);
        }
    }

    /// Whether the named process is still running (one that exited is reaped here).
    pub fn running(&mut self, name: &str) -> bool {
        match self.find(name) {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the named process to exit by itself, until `limit`; then stops it. Returns
    /// its exit status when it exited in time.
    pub fn wait(&mut self, name: &str, limit: Duration) -> Res<Option<ExitStatus>> {
        let until = Instant::now() + limit;
        loop {
            let Some(p) = self.find(name) else {
                return Ok(None);
            };
            if let Ok(Some(status)) = p.child.try_wait() {
                self.list.retain(|p| p.name != name);
                return Ok(Some(status));
            }
            if Instant::now() >= until || interrupted() {
                self.stop(&[name]);
                check()?;
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the named processes, all at once: TERM to each one's group, 10 s in all for them
    /// to exit, then KILL to each group still there.
    pub fn stop(&mut self, names: &[&str]) {
        let (going, staying): (Vec<Proc>, Vec<Proc>) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|p| names.contains(&p.name.as_str()));
        self.list = staying;
        stop_all(going);
    }

    pub fn stop_everything(&mut self) {
        stop_all(std::mem::take(&mut self.list));
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_everything();
    }
}

fn stop_all(mut procs: Vec<Proc>) {
    for p in &mut procs {
        if matches!(p.child.try_wait(), Ok(None)) {
            signal_group(&p.child, libc::SIGTERM);
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    for p in &mut procs {
        while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
        if matches!(p.child.try_wait(), Ok(None)) {
            signal_group(&p.child, libc::SIGKILL);
            let _ = p.child.wait();
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
pub fn port_busy(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The CPUs this process may run on (what `nproc` prints).
pub fn ncpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled in by the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        usize::try_from(libc::CPU_COUNT(&set)).unwrap_or(1).max(1)
    }
}

fn set_affinity(tid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read and write it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every thread of a process on these CPUs (what `taskset -a -p` does).
pub fn pin_threads(pid: u32, cpus: &[usize]) -> Res<()> {
    let dir = format!("/proc/{pid}/task");
    let tasks = fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ended meanwhile is no error.
        if let Err(e) = set_affinity(tid, cpus)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            return Err(format!("cannot pin thread {tid} of {pid}: {e}"));
        }
    }
    Ok(())
}

/// The processes whose parent is `pid` (nginx's workers).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| parent_in_stat(&stat))
                == Some(pid)
        })
        .collect()
}

/// The parent's pid in a `/proc/PID/stat` line (the 4th field; the 2nd, the command, is in
/// parentheses and may hold spaces).
fn parent_in_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// VmRSS of a process, in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss(&status)
}

fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files() {
        assert_eq!(parent_in_stat("42 (nginx: worker) S 41 41 7 0"), Some(41));
        assert_eq!(parent_in_stat("42 (a) b) R 1 1"), Some(1));
        assert_eq!(parent_in_stat("garbage"), None);
        assert_eq!(
            vm_rss("Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    4108 kB\n"),
            Some(4108)
        );
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn a_child_is_stopped_by_its_group() {
        let mut procs = Procs::default();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let pid = procs.spawn("sleeper", contain(&mut cmd, None)).unwrap();
        assert_eq!(procs.pid("sleeper"), Some(pid));
        assert!(procs.running("sleeper"));
        let started = Instant::now();
        procs.stop(&["sleeper"]);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(procs.pid("sleeper"), None);
        assert!(!procs.running("sleeper"));
    }
}

//! The system calls and commands a LAN is made with: `ip` (iproute2), a thread's `setns`, the
//! processes inside a namespace. Every failure is an [`Error`] that says what was run.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a LAN could not be made, changed or entered.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A program could not be started: it is missing (install iproute2, or the program run in
    /// a host) or this process may not run it.
    Run { program: String, source: io::Error },
    /// A command ran and failed; `stderr` is what it said (not root? a name already taken?).
    Failed { command: String, stderr: String },
    /// A thread could not enter a namespace: it does not exist, or this process is not root.
    Enter { ns: String, source: io::Error },
    /// The LAN asked for cannot be made (a bad prefix, too many hosts): nothing was made.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Run { program, source } => write!(f, "cannot run {program}: {source}"),
            Error::Failed { command, stderr } => write!(f, "{command}: {stderr}"),
            Error::Enter { ns, source } => write!(f, "cannot enter namespace {ns}: {source}"),
            Error::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Run { source, .. } | Error::Enter { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Runs `program` with `args` (and `input` on its standard input); its standard output when it
/// succeeds.
pub fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, Error> {
    let command = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Run {
            program: program.into(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A program that exits without reading its input says why on stderr: that is the
        // error to show, not this write's broken pipe.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| Error::Run {
        program: program.into(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Failed {
            command: command(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<String, Error> {
    run("ip", args, None)
}

/// Whether this process may create network namespaces.
#[allow(unsafe_code, reason = "geteuid has no safe wrapper in std")]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread into network namespace `ns`: the sockets it opens from now on live
/// there (the rest of the process stays where it was).
#[allow(unsafe_code, reason = "setns has no safe wrapper in std")]
pub fn enter(ns: &str) -> Result<(), Error> {
    let failed = |source| Error::Enter {
        ns: ns.into(),
        source,
    };
    let file = std::fs::File::open(format!("/run/netns/{ns}")).map_err(failed)?;
    // SAFETY: a valid descriptor of a network namespace, open for the call; only this thread
    // changes namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns` and returns what it returns (a panic in `f` is
/// passed on).
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| enter(ns).map(|()| f()))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Every network namespace with a name (`ip netns list`).
pub fn namespaces() -> Result<Vec<String>, Error> {
    ip(&["netns", "list"]).map(|out| crate::name::netns_list(&out))
}

/// The processes inside namespace `ns` (none when it is gone).
pub fn pids_in(ns: &str) -> Vec<u32> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// Whether process `pid` exists (a zombie included: its id is still taken).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` runs one of `binaries` (a binary replaced since it started included).
pub fn runs_one_of(pid: u32, binaries: &[impl AsRef<Path>]) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let exe = exe.to_string_lossy();
    let exe = Path::new(exe.trim_end_matches(" (deleted)"));
    binaries.iter().any(|bin| {
        let bin = bin.as_ref();
        exe == bin || std::fs::canonicalize(bin).is_ok_and(|real| exe == real)
    })
}

/// A process's command line, spaces between its arguments (empty when it is gone).
pub fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// SIGKILL to process `pid`.
#[allow(unsafe_code, reason = "kill has no safe wrapper in std")]
pub fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 1 {
        // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

//! Local work: test files of pseudo-random content, a node's start-up timed to its
//! `registered` line, and a command timed (the openssl reference).

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::opts::Res;
use crate::procs;
use crate::util::splitmix;

/// Writes `count` files of `size` bytes of pseudo-random content (the same for the same seed)
/// in `dir`, named `file-NNN.bin`.
pub fn mkfiles(dir: &Path, count: u64, size: usize, seed: u64) -> Res<()> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let width = count.to_string().len().max(3);
    let mut buffer = vec![0u8; size.clamp(8, 1 << 20)];
    for i in 0..count {
        procs::check()?;
        let path = dir.join(format!("file-{i:0width$}.bin"));
        let mut file = io::BufWriter::new(
            fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i;
        let mut left = size;
        while left > 0 {
            let n = left.min(buffer.len());
            for chunk in buffer[..n].chunks_mut(8) {
                let word = splitmix(&mut state).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            file.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
            left -= n;
        }
        file.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What [`startup`] saw: the time from start to the `registered ... with ...` line, and the
/// node's line about its hashing, when it logged one.
pub struct Startup {
    pub elapsed: Duration,
    pub hashed: Option<String>,
}

/// Starts `command` (a node, configured by `env` when given, else by this process's
/// environment), copies its standard error to `log`, and stops it as soon as it logs
/// `registered ... with ...`, or at the deadline.
pub fn startup(
    log: &Path,
    deadline: Duration,
    command: &[String],
    env: Option<&[(String, String)]>,
) -> Res<Startup> {
    let (program, rest) = command.split_first().ok_or("no program given")?;
    let mut log_file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(env) = env {
        procs::clean_env(&mut cmd).envs(env.iter().cloned());
    }
    procs::contain(&mut cmd, None);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let until = start + deadline;
    let mut outcome = Err(format!(
        "no `registered` line within {} s",
        deadline.as_secs()
    ));
    let mut hashed = None;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if procs::interrupted() {
            outcome = Err(procs::INTERRUPTED.into());
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok((at, line)) => {
                let _ = writeln!(log_file, "{line}");
                if line.contains("hashed ") {
                    hashed = Some(line.clone());
                }
                if line.contains(" registered ") && line.contains(" with ") {
                    outcome = Ok(at.duration_since(start));
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                outcome = Err("the program exited before registering".into());
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    for (_, line) in rx.try_iter() {
        let _ = writeln!(log_file, "{line}");
    }
    Ok(Startup {
        elapsed: outcome?,
        hashed,
    })
}

/// Runs a command (no input, output discarded, within `limit`) and times it.
pub fn timecmd(command: &[String], limit: Duration) -> Res<Duration> {
    let (program, rest) = command.split_first().ok_or("no program given")?;
    let mut cmd = Command::new(program);
    cmd.args(rest).stdin(Stdio::null()).stdout(Stdio::null());
    procs::contain(&mut cmd, None);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let elapsed = start.elapsed();
            if !status.success() {
                return Err(format!("{program} failed: {status}"));
            }
            return Ok(elapsed);
        }
        if start.elapsed() > limit || procs::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            procs::check()?;
            return Err(format!(
                "{program} did not end within {} s",
                limit.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_made_alike() {
        let dir = std::env::temp_dir().join(format!("sp-bench-mkfiles-{}", std::process::id()));
        mkfiles(&dir.join("a"), 3, 100, 7).unwrap();
        mkfiles(&dir.join("b"), 3, 100, 7).unwrap();
        let a = fs::read(dir.join("a/file-001.bin")).unwrap();
        assert_eq!(a.len(), 100);
        assert_eq!(a, fs::read(dir.join("b/file-001.bin")).unwrap());
        assert_ne!(a, fs::read(dir.join("a/file-002.bin")).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The HTTP measurements wrk cannot make, and the set-up requests: sequential latency on one
//! keep-alive connection, concurrent rounds of searches, registrations of made-up resources,
//! made-up absent ids, and the copies of answers nginx serves.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::opts::Res;
use crate::procs;
use crate::util::{Summary, id_of_path, make_id, quantile};

/// Checks an answer: the status, and for a 200, that the body names the id asked for and,
/// when given, the expected text (a location).
pub fn check_answer(
    path: &str,
    status: u16,
    body: &[u8],
    want_status: u16,
    contains: Option<&str>,
) -> bool {
    if status != want_status {
        return false;
    }
    let text = String::from_utf8_lossy(body);
    if status == 200 && path.contains("/search/") && !text.contains(id_of_path(path)) {
        return false;
    }
    contains.is_none_or(|c| text.contains(c))
}

fn example(path: &str, status: u16, body: &[u8]) -> String {
    format!(
        "{path} -> {status} {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    )
}

// ---------------------------------------------------------------------------------------------
// latency

pub struct LatencyArgs {
    pub addr: SocketAddr,
    pub paths: Vec<String>,
    pub n: usize,
    pub warmup: usize,
    pub status: u16,
    pub contains: Option<String>,
    pub max_seconds: u64,
    pub timeout_ms: u64,
}

impl LatencyArgs {
    /// `n` requests after 50 of warm-up, status 200, 60 s at most.
    pub fn new(addr: SocketAddr, paths: Vec<String>, n: usize) -> LatencyArgs {
        LatencyArgs {
            addr,
            paths,
            n,
            warmup: 50,
            status: 200,
            contains: None,
            max_seconds: 60,
            timeout_ms: 10_000,
        }
    }
}

pub struct Latency {
    pub summary: Summary,
    pub wrong: usize,
    pub errors: usize,
    /// The first wrong answer or error.
    pub example: Option<String>,
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} wrong={} errors={}",
            self.summary, self.wrong, self.errors
        )
    }
}

/// N sequential requests on one keep-alive connection, cycling through the paths.
pub fn latency(a: &LatencyArgs) -> Res<Latency> {
    if a.paths.is_empty() {
        return Err("no paths".into());
    }
    let mut conn = Conn::new(a.addr, Duration::from_millis(a.timeout_ms));
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let mut us = Vec::with_capacity(a.n);
    let (mut wrong, mut errors) = (0usize, 0usize);
    let mut first: Option<String> = None;
    for i in 0..a.n + a.warmup {
        if Instant::now() > deadline {
            return Err(format!("time is up after {i} requests"));
        }
        procs::check()?;
        let path = &a.paths[i % a.paths.len()];
        let start = Instant::now();
        let result = conn.get(path);
        let elapsed = start.elapsed().as_secs_f64() * 1e6;
        match result {
            Ok(r) => {
                if !check_answer(path, r.status, &r.body, a.status, a.contains.as_deref()) {
                    wrong += 1;
                    first.get_or_insert_with(|| example(path, r.status, &r.body));
                }
            }
            Err(e) => {
                errors += 1;
                first.get_or_insert_with(|| format!("{path} -> {e}"));
            }
        }
        if i >= a.warmup {
            us.push(elapsed);
        }
    }
    Ok(Latency {
        summary: Summary::of(us),
        wrong,
        errors,
        example: first,
    })
}

// ---------------------------------------------------------------------------------------------
// concurrent

pub struct ConcurrentArgs {
    pub addr: SocketAddr,
    pub present: Vec<String>,
    pub absent: Vec<String>,
    pub threads: usize,
    pub rounds: usize,
    /// The location every present id's answer must name.
    pub location: Option<String>,
}

pub struct Concurrent {
    pub summary: Summary,
    pub correct: usize,
    pub wrong: usize,
    pub failed: usize,
    pub over_1s: usize,
    pub p99_after_round1: f64,
    pub seconds: f64,
    /// Up to three wrong answers or failures.
    pub examples: Vec<String>,
}

impl fmt::Display for Concurrent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} correct={} wrong={} failed={} over_1s={} p99_after_round1_us={:.1} seconds={:.2}",
            self.summary,
            self.correct,
            self.wrong,
            self.failed,
            self.over_1s,
            self.p99_after_round1,
            self.seconds
        )
    }
}

type ThreadOutcome = (Vec<(usize, f64)>, usize, usize, usize, String);

/// T threads, each with its own connection, meet at a barrier before every round; even
/// threads ask for present ids (checked: id and location), odd ones for absent ids (404).
pub fn concurrent(a: &ConcurrentArgs) -> Res<Concurrent> {
    if a.present.is_empty() || a.absent.is_empty() || a.threads == 0 {
        return Err("no paths or no threads".into());
    }
    let present = Arc::new(a.present.clone());
    let absent = Arc::new(a.absent.clone());
    let (threads, rounds, addr) = (a.threads, a.rounds, a.addr);
    let location = a.location.as_ref().map(|l| format!("\"location\":\"{l}\""));
    let barrier = Arc::new(Barrier::new(threads));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<thread::JoinHandle<ThreadOutcome>> = (0..threads)
        .map(|t| {
            let (present, absent, barrier, stop, location) = (
                present.clone(),
                absent.clone(),
                barrier.clone(),
                stop.clone(),
                location.clone(),
            );
            thread::spawn(move || {
                let mut conn = Conn::new(addr, Duration::from_secs(10));
                let mut us = Vec::with_capacity(rounds);
                let (mut right, mut wrong, mut failed) = (0usize, 0usize, 0usize);
                let mut first = String::new();
                for r in 0..rounds {
                    barrier.wait();
                    if stop.load(Ordering::Relaxed) {
                        // Every thread still meets the barrier, so nobody waits forever.
                        continue;
                    }
                    let k = t / 2 + r * threads.div_ceil(2);
                    let (path, want, contains) = if t % 2 == 0 {
                        (&present[k % present.len()], 200, location.as_deref())
                    } else {
                        (&absent[k % absent.len()], 404, None)
                    };
                    let start = Instant::now();
                    let result = conn.get(path);
                    us.push((r, start.elapsed().as_secs_f64() * 1e6));
                    let ok = match &result {
                        Ok(resp) => check_answer(path, resp.status, &resp.body, want, contains),
                        Err(_) => false,
                    };
                    if ok {
                        right += 1;
                    } else {
                        let text = match &result {
                            Ok(resp) => {
                                wrong += 1;
                                example(path, resp.status, &resp.body)
                            }
                            Err(e) => {
                                failed += 1;
                                format!("{path} -> no answer: {e} (round {r})")
                            }
                        };
                        if first.is_empty() {
                            first = text;
                        }
                    }
                    if started.elapsed() > Duration::from_secs(120) || procs::interrupted() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                (us, right, wrong, failed, first)
            })
        })
        .collect();
    let mut all: Vec<(usize, f64)> = Vec::new();
    let (mut correct, mut wrong, mut failed) = (0, 0, 0);
    let mut examples = Vec::new();
    for h in handles {
        let (us, r, w, f, first) = h.join().map_err(|_| "a client thread panicked")?;
        all.extend(us);
        correct += r;
        wrong += w;
        failed += f;
        if !first.is_empty() && examples.len() < 3 {
            examples.push(first);
        }
    }
    procs::check()?;
    let over_1s = all.iter().filter(|(_, us)| *us > 1e6).count();
    // The figures without the first round, where every connection is new.
    let mut later: Vec<f64> = all
        .iter()
        .filter(|(r, _)| *r > 0)
        .map(|(_, us)| *us)
        .collect();
    later.sort_by(|a, b| a.total_cmp(b));
    Ok(Concurrent {
        summary: Summary::of(all.into_iter().map(|(_, us)| us).collect()),
        correct,
        wrong,
        failed,
        over_1s,
        p99_after_round1: quantile(&later, 0.99),
        seconds: started.elapsed().as_secs_f64(),
        examples,
    })
}

// ---------------------------------------------------------------------------------------------
// register / ids / mirror

pub struct RegisterArgs {
    pub addr: SocketAddr,
    pub seed: u64,
    pub nodes: u64,
    pub per: u64,
    pub port_base: u64,
    /// How many search paths of the registered ids to write to `sample_out`, spread evenly.
    pub sample: u64,
    pub sample_out: Option<PathBuf>,
    /// The cluster key to sign the registrations with (CLUSTER_KEY's format).
    pub key: Option<String>,
}

impl RegisterArgs {
    pub fn new(addr: SocketAddr, seed: u64, nodes: u64, per: u64, port_base: u64) -> Self {
        RegisterArgs {
            addr,
            seed,
            nodes,
            per,
            port_base,
            sample: 0,
            sample_out: None,
            key: None,
        }
    }

    pub fn sample(mut self, n: u64, out: &Path) -> Self {
        self.sample = n;
        self.sample_out = Some(out.to_path_buf());
        self
    }
}

pub struct Registered {
    /// One line per registration: where, how many, how long.
    pub lines: Vec<String>,
    pub registrations: usize,
    pub entries: u64,
    pub median_ms: f64,
    pub max_ms: f64,
    pub total_ms: f64,
}

impl fmt::Display for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "registrations={} entries={} median_ms={:.1} max_ms={:.1} total_ms={:.1}",
            self.registrations, self.entries, self.median_ms, self.max_ms, self.total_ms
        )
    }
}

/// Registers `nodes` fake nodes of `per` made-up resources each, at 127.0.0.1:<port-base + k>
/// (nothing listens there: the supernode must run with a long liveness period).
pub fn register(a: &RegisterArgs) -> Res<Registered> {
    let keys = match &a.key {
        Some(text) => {
            Some(superpeer::auth::ClusterKeys::parse(text).map_err(|e| format!("--key: {e}"))?)
        }
        None => None,
    };
    let (seed, per) = (a.seed, a.per);
    // The supernodes keep their default liveness sweep: the made-up nodes answer it.
    let ports = (a.port_base..a.port_base + a.nodes).map(|p| p as u16);
    crate::holders::answer_health(ports)?;
    let mut conn = Conn::new(a.addr, Duration::from_secs(120));
    let mut ms = Vec::new();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    for k in 0..a.nodes {
        if Instant::now() > deadline {
            return Err(format!("time is up after {k} registrations"));
        }
        procs::check()?;
        let location = format!("127.0.0.1:{}", a.port_base + k);
        let mut body = String::with_capacity((per as usize) * 96 + 128);
        body.push_str(&format!(
            "{{\"name\":\"bench-{seed}-{k}\",\"location\":\"{location}\",\"resources\":["
        ));
        for i in 0..per {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                "{{\"id\":\"{}\",\"name\":\"file-{k}-{i}.bin\"}}",
                make_id(seed, k * per + i)
            ));
        }
        body.push_str("]}");
        let sign = || match &keys {
            Some(keys) => {
                let target = "/api/supernode/register";
                let header = superpeer::auth::sign_request(keys, "POST", target, body.as_bytes());
                format!("{}: {header}\r\n", superpeer::auth::AUTH_HEADER)
            }
            None => String::new(),
        };
        let start = Instant::now();
        let response = conn
            .request_with("POST", "/api/supernode/register", sign, body.as_bytes())
            .map_err(|e| format!("POST register: {e}"))?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        if response.status != 204 {
            return Err(format!(
                "POST register answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
            ));
        }
        lines.push(format!(
            "register: {location}: {per} resources ({} bytes) in {elapsed:.1} ms",
            body.len()
        ));
        ms.push(elapsed);
    }
    if let Some(out) = &a.sample_out {
        let total = a.nodes * per;
        let mut text = String::new();
        for j in 0..a.sample {
            let global = j * total / a.sample.max(1);
            text.push_str(&format!(
                "/api/supernode/search/{}\n",
                make_id(seed, global)
            ));
        }
        fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    let total_ms: f64 = ms.iter().sum();
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Registered {
        lines,
        registrations: ms.len(),
        entries: a.nodes * per,
        median_ms: quantile(&ms, 0.5),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        total_ms,
    })
}

/// Made-up ids that nobody registered, as paths (one a line) under `prefix`.
pub fn id_paths(seed: u64, n: u64, prefix: &str) -> String {
    (0..n)
        .map(|i| format!("{prefix}{}\n", make_id(seed, i)))
        .collect()
}

/// Fetches every path and writes its body to <root><path>: the same bytes for nginx to serve.
/// Returns the number of files and their mean size.
pub fn mirror(addr: SocketAddr, paths: &[String], root: &Path, want: u16) -> Res<(usize, usize)> {
    let mut conn = Conn::new(addr, Duration::from_secs(30));
    let mut bytes = 0usize;
    for path in paths {
        procs::check()?;
        let response = conn.get(path).map_err(|e| format!("GET {path}: {e}"))?;
        if response.status != want {
            return Err(format!("GET {path} answered {}", response.status));
        }
        let file = root.join(path.trim_start_matches('/'));
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::write(&file, &response.body).map_err(|e| format!("{}: {e}", file.display()))?;
        bytes += response.body.len();
    }
    Ok((paths.len(), bytes / paths.len().max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let id = make_id(2, 0);
        let path = format!("/api/supernode/search/{id}");
        let good = format!("{{\"id\":\"{id}\",\"location\":\"127.0.0.1:27802\"}}");
        let loc = Some("\"location\":\"127.0.0.1:27802\"");
        assert!(check_answer(&path, 200, good.as_bytes(), 200, loc));
        assert!(!check_answer(
            &path,
            200,
            good.as_bytes(),
            200,
            Some("elsewhere")
        ));
        assert!(!check_answer(&path, 200, b"{\"id\":\"other\"}", 200, None));
        assert!(!check_answer(&path, 404, b"", 200, None));
        assert!(check_answer(&path, 404, b"not found", 404, None));
        // A name search names no id in its path.
        let names = "/api/supernode/search?file_name=file-0-1.bin";
        assert!(check_answer(
            names,
            200,
            b"\"name\":\"file-0-1.bin\"",
            200,
            Some("\"name\":\"file-")
        ));
    }

    #[test]
    fn absent_ids_as_paths() {
        let text = id_paths(99, 3, "/api/supernode/search/");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!("/api/supernode/search/{}", make_id(99, 0))
        );
    }
}

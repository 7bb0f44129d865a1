//! wrk: one run (its output read, every error counted, and the connections the server never
//! served counted halfway through), and a pair of runs against a reference, interleaved.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::driver::Bench;
use crate::opts::Res;
use crate::procs;
use crate::stats::median;

/// What wrk printed.
#[derive(Debug, Default, PartialEq)]
pub struct WrkOutput {
    /// `Requests/sec:` as printed, when there was one.
    pub rps: Option<String>,
    /// The requests answered.
    pub requests: u64,
    /// Answers other than 2xx and 3xx.
    pub non2xx: u64,
    /// connect + read + write + timeout.
    pub socket_errors: u64,
    /// Answers the Lua script found wrong (`WRONG_ANSWERS n`).
    pub wrong: u64,
}

fn is_plain_number(text: &str) -> bool {
    let mut parts = text.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

pub fn parse_wrk(out: &str) -> WrkOutput {
    let mut w = WrkOutput::default();
    let count = |text: &str| text.trim().replace(',', "").parse::<u64>().unwrap_or(0);
    let mut requests_seen = false;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            w.rps = rest
                .split_whitespace()
                .next()
                .filter(|v| is_plain_number(v))
                .map(String::from);
        } else if line.contains(" requests in ") && !requests_seen {
            requests_seen = true;
            w.requests = line.split_whitespace().next().map_or(0, count);
        } else if line.contains("Non-2xx or 3xx responses:") {
            w.non2xx = line.split_whitespace().last().map_or(0, count);
        } else if let Some(rest) = line.trim_start().strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            let words: Vec<&str> = rest.split_whitespace().collect();
            w.socket_errors = words.iter().skip(1).step_by(2).map(|v| count(v)).sum();
        } else if let Some(rest) = line.strip_prefix("WRONG_ANSWERS") {
            w.wrong = count(rest);
        }
    }
    w
}

/// The connections in `ss -Htni` output that received a request and never sent a byte back.
pub fn unserved(ss: &str) -> usize {
    ss.lines()
        .filter(|l| l.contains("bytes_received"))
        .filter(|l| {
            !l.match_indices("bytes_sent:")
                .any(|(i, m)| l[i + m.len()..].starts_with(|c: char| ('1'..='9').contains(&c)))
        })
        .count()
}

/// The port of `http://host:port/...`.
pub fn url_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let host_port = rest.split('/').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// One run's figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct WrkRun {
    /// None: wrk gave no figure.
    pub rps: Option<f64>,
    /// Non-2xx answers (when 200 is expected), socket errors, answers found wrong.
    pub bad: u64,
    /// Connections never served, halfway through.
    pub idle: usize,
    pub requests: u64,
}

/// A pair of interleaved series: medians, errors summed, the most connections never served.
pub struct Pair {
    pub a: f64,
    pub b: f64,
    pub bad_a: u64,
    pub bad_b: u64,
    pub idle_a: usize,
    pub idle_b: usize,
}

/// One side of a pair: a label, a URL, and the file of request paths (none: the URL's own).
pub type Side<'a> = (&'a str, &'a str, Option<&'a Path>);

impl Bench {
    /// One wrk run (`wrk -t2 -c32 -dSs --timeout 2s`, with the Lua script when there are
    /// paths). `expect`: text every answer must hold (checked by the script); `status`: with
    /// another status than 200 (a 404), non-2xx answers are no error here (the caller checks).
    pub fn wrk_run(
        &mut self,
        label: &str,
        url: &str,
        paths: Option<&Path>,
        expect: &str,
        status: u16,
    ) -> Res<WrkRun> {
        let seconds = self.s.wrk_seconds;
        let out_path = self.log_path("wrk.out");
        let out = fs::File::create(&out_path).map_err(|e| format!("wrk.out: {e}"))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("wrk");
        cmd.args(["-t2", "-c32", &format!("-d{seconds}s"), "--timeout", "2s"]);
        if paths.is_some() {
            cmd.arg("-s").arg(self.s.root.join("bench/wrk/paths.lua"));
        }
        cmd.arg(url);
        procs::clean_env(&mut cmd)
            .env("WRK_PATHS", paths.map(Path::as_os_str).unwrap_or_default())
            .env("WRK_EXPECT", expect)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        procs::contain(&mut cmd, self.wrk_cpu);
        let started = Instant::now();
        let spawned = self.procs.spawn("wrk", &mut cmd);
        let mut idle = 0;
        if spawned.is_ok() {
            // Halfway through: the server's connections that have not sent a byte.
            let half = Duration::from_millis(seconds * 500);
            if let Err(e) = procs::sleep(half) {
                self.procs.stop(&["wrk"]);
                return Err(e);
            }
            idle = url_port(url).map_or(0, |port| unserved(&ss_established(port)));
            let limit = Duration::from_secs(seconds + 20).saturating_sub(started.elapsed());
            self.procs.wait("wrk", limit)?;
        }
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        if let Ok(mut log) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path("wrk.log"))
        {
            let _ = writeln!(log, "== {label}\n{}", text.trim_end_matches('\n'));
        }
        let w = parse_wrk(&text);
        let non2xx = if status == 200 { w.non2xx } else { 0 };
        let run = WrkRun {
            rps: w.rps.as_deref().and_then(|r| r.parse().ok()),
            bad: non2xx + w.socket_errors + w.wrong,
            idle,
            requests: w.requests,
        };
        match (&w.rps, spawned) {
            (Some(rps), Ok(_)) => self.say(format!(
                "wrk {label}: {rps} req/s, {} errors, {idle} of 32 connections not served at half time",
                run.bad
            )),
            (_, Err(e)) => self.say(format!("wrk {label} failed: {e}")),
            (None, Ok(_)) => {
                let lines: Vec<&str> = text.trim_end().lines().collect();
                let tail = lines[lines.len().saturating_sub(2)..].join("\n");
                self.say(format!("wrk {label} failed: {tail}"));
            }
        }
        Ok(run)
    }

    /// `runs` interleaved runs of each side (both with the same expected text).
    pub fn wrk_pair(&mut self, a: Side, b: Side, expect: &str, runs: usize) -> Res<Pair> {
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        let mut p = Pair {
            a: 0.0,
            b: 0.0,
            bad_a: 0,
            bad_b: 0,
            idle_a: 0,
            idle_b: 0,
        };
        for _ in 0..runs {
            let run = self.wrk_run(a.0, a.1, a.2, expect, 200)?;
            ra.extend(run.rps);
            p.bad_a += run.bad;
            p.idle_a = p.idle_a.max(run.idle);
            let run = self.wrk_run(b.0, b.1, b.2, expect, 200)?;
            rb.extend(run.rps);
            p.bad_b += run.bad;
            p.idle_b = p.idle_b.max(run.idle);
        }
        match (median(&ra), median(&rb)) {
            (Some(ma), Some(mb)) => {
                p.a = ma;
                p.b = mb;
                Ok(p)
            }
            _ => Err(format!("wrk gave no figure for {} or {}", a.0, b.0)),
        }
    }
}

/// `ss -Htni state established ( sport = :PORT )`: the server's side of every connection.
fn ss_established(port: u16) -> String {
    let mut cmd = Command::new("ss");
    cmd.args([
        "-Htni",
        "state",
        "established",
        &format!("( sport = :{port} )"),
    ]);
    cmd.stdin(Stdio::null()).stderr(Stdio::null());
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://127.0.0.1:27010
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   271.33us  180.50us   8.12ms   93.12%
    Req/Sec    59.55k     3.99k   66.40k    74.00%
  592364 requests in 5.00s, 120.12MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 17
Requests/sec: 118445.96
Transfer/sec:     24.02MB
WRONG_ANSWERS 4
";

    #[test]
    fn wrk_output() {
        let w = parse_wrk(OUT);
        assert_eq!(
            w,
            WrkOutput {
                rps: Some("118445.96".into()),
                requests: 592_364,
                non2xx: 17,
                socket_errors: 6,
                wrong: 4,
            }
        );
        let clean = parse_wrk(
            "  1000 requests in 5.00s, 1MB read\nRequests/sec:   200.00\nTransfer/sec: 1MB\n",
        );
        assert_eq!(clean.rps.as_deref(), Some("200.00"));
        assert_eq!((clean.non2xx, clean.socket_errors, clean.wrong), (0, 0, 0));
        // wrk that could not start says so and gives no figure.
        let failed = parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n");
        assert_eq!(failed, WrkOutput::default());
        assert_eq!(parse_wrk("Requests/sec: nan\n").rps, None);
    }

    #[test]
    fn connections_never_served() {
        let ss = "0 0 127.0.0.1:27010 127.0.0.1:50000\n\
             \t cubic rto:201 bytes_sent:5100 bytes_acked:5101 bytes_received:3000 segs_out:20\n\
             0 0 127.0.0.1:27010 127.0.0.1:50002\n\
             \t cubic rto:201 bytes_received:75 segs_out:1\n\
             0 0 127.0.0.1:27010 127.0.0.1:50004\n\
             \t cubic rto:201 bytes_sent:0 bytes_received:75\n\
             0 0 127.0.0.1:27010 127.0.0.1:50006\n\
             \t cubic rto:201 segs_out:1\n";
        assert_eq!(unserved(ss), 2);
        assert_eq!(unserved(""), 0);
    }

    #[test]
    fn ports_of_urls() {
        assert_eq!(url_port("http://127.0.0.1:27010"), Some(27010));
        assert_eq!(
            url_port("http://127.0.0.1:27020/api/node/resources"),
            Some(27020)
        );
        assert_eq!(url_port("http://127.0.0.1/x"), None);
        assert_eq!(url_port("https://127.0.0.1:1/"), None);
    }

    #[test]
    fn plain_numbers() {
        assert!(is_plain_number("118445.96") && is_plain_number("7"));
        assert!(!is_plain_number("1.") && !is_plain_number("-1") && !is_plain_number("nan"));
    }
}

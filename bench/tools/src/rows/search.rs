//! Rows 1 to 5: local and remote searches under load, one at a time, 64 at once, and
//! searches for ids nobody holds.

use std::fs;

use super::{ratio, rps_text, unpinned_text};
use crate::client::{self, ConcurrentArgs, LatencyArgs, RegisterArgs};
use crate::driver::{Bench, Env, env_of};
use crate::opts::Res;
use crate::setup::{A_PATHS, ABSENT, B_LOC, B_PATHS, super_env};
use crate::stats::{calc, grouped, median};
use crate::table::{Row, verdict};
use crate::util::read_lines;
use crate::wrk::Pair;

/// The cluster key of row 2k: every datagram sealed and checked.
const BENCH_KEY: &str = "bench-cluster-key-0123456789abcdef";

impl Bench {
    pub fn m1_local_wrk(&mut self) -> Res<()> {
        let (a, nginx) = (self.a_url()?, self.nginx_url()?);
        let paths = self.log_path(A_PATHS);
        let p = self.wrk_pair(
            ("local search", &a, Some(&paths)),
            ("nginx, same answers", &nginx, Some(&paths)),
            "",
            self.s.runs,
        )?;
        let r = ratio(p.a, p.b);
        self.row(
            "1",
            "supernode local search, wrk keep-alive",
            rps_text(p.a, p.bad_a, p.idle_a),
            format!("nginx {} req/s", grouped(p.b, 0)),
            &r,
            ">= 0.5 x nginx",
            verdict(r.0 >= 0.5 && p.bad_a == 0),
        );
        Ok(())
    }

    /// The static binary (make dist's, the one the VMs run) against the release one, on the
    /// same local searches of the same index, unpinned (as users run them: on one core, threads
    /// never contend for musl's allocator lock, which is the cost on every multi-core host).
    pub fn m1s_local_static(&mut self) -> Res<()> {
        let a = self.a_url()?;
        let bin = self.static_bin.clone().ok_or("no static binary")?;
        self.start("s", "supernode", &bin, 27012, &super_env(3, 1))?;
        let paths = self.log_path(A_PATHS);
        let kind = self.static_kind.clone();
        let outcome = (|| {
            client::register(&RegisterArgs::new(self.addr("s")?, 1, 1, 15, 27801))?;
            let s_url = self.url("s")?;
            self.wrk_pair(
                (
                    &format!("local search, static ({kind})"),
                    &s_url,
                    Some(&paths),
                ),
                ("local search, release", &a, Some(&paths)),
                "",
                self.s.runs,
            )
        })();
        self.stop(&["s"]);
        let p = outcome?;
        let r = ratio(p.a, p.b);
        self.row(
            "1s",
            format!("supernode local search, static {kind} binary (make dist's), wrk"),
            rps_text(p.a, p.bad_a, p.idle_a),
            format!("release binary {} req/s", grouped(p.b, 0)),
            &r,
            ">= 0.9 x release",
            verdict(r.0 >= 0.9 && p.bad_a == 0),
        );
        Ok(())
    }

    pub fn m2_remote_wrk(&mut self) -> Res<()> {
        self.pair_up()?;
        let (a, nginx) = (self.a_url()?, self.nginx_url()?);
        let paths = self.log_path(B_PATHS);
        let p = self.wrk_pair(
            ("remote search", &a, Some(&paths)),
            ("nginx, same answers", &nginx, Some(&paths)),
            &format!("\"location\":\"{B_LOC}\""),
            self.s.runs,
        )?;
        let r = ratio(p.a, p.b);
        self.nginx_rps = Some(p.b);
        self.row(
            "2",
            "supernode remote search (multicast to a 2nd supernode), wrk",
            rps_text(p.a, p.bad_a, p.idle_a),
            format!("nginx {} req/s", grouped(p.b, 0)),
            &r,
            ">= 0.5 x nginx, all correct",
            verdict(r.0 >= 0.5 && p.bad_a == 0),
        );
        Ok(())
    }

    /// A variant pair Xa, Xb (ports PORT and PORT+1, multicast group GROUP, with ENV), Xb
    /// holding b's 1,000 resources (registered with KEY when given), searched remotely through
    /// Xa against a's same searches, all pinned and interleaved, two runs more than the other
    /// rows: a difference of a few per cent is what these rows are about. Then one run of each
    /// unpinned, the figure users see beside the one the target holds. Returns the pairs (a:
    /// the variant, b: a), pinned and unpinned.
    fn pair_against_a(
        &mut self,
        x: &str,
        group: u16,
        port: u16,
        label: &str,
        key: Option<&str>,
        extra: &Env,
    ) -> Res<(Pair, Pair)> {
        self.pair_up()?;
        let a = self.a_url()?;
        let (xa, xb) = (format!("{x}a"), format!("{x}b"));
        let mut env = super_env(group, 2);
        env.extend(extra.iter().cloned());
        let bin = self.bin.clone();
        self.start(&xa, "supernode", &bin, port, &env)?;
        let paths = self.log_path(B_PATHS);
        let runs = self.s.runs + 2;
        let expect = format!("\"location\":\"{B_LOC}\"");
        let outcome = (|| {
            self.start(&xb, "supernode", &bin, port + 1, &env)?;
            let mut reg = RegisterArgs::new(self.addr(&xb)?, 2, 1, 1000, 27802);
            reg.key = key.map(String::from);
            client::register(&reg)?;
            let xa_url = self.url(&xa)?;
            let variant = format!("remote search, {label}");
            let sides = [
                (variant.as_str(), xa_url.as_str()),
                ("remote search, as a", a.as_str()),
            ];
            self.pin(&[&xa, &xb, "a", "b"])?;
            let pinned = self.wrk_pair(
                (sides[0].0, sides[0].1, Some(&paths)),
                (sides[1].0, sides[1].1, Some(&paths)),
                &expect,
                runs,
            );
            self.unpin(&[&xa, &xb, "a", "b"]);
            let unpinned = self.wrk_pair(
                (
                    &format!("{} (unpinned)", sides[0].0),
                    sides[0].1,
                    Some(&paths),
                ),
                (
                    &format!("{} (unpinned)", sides[1].0),
                    sides[1].1,
                    Some(&paths),
                ),
                &expect,
                1,
            );
            Ok((pinned?, unpinned?))
        })();
        self.unpin(&["a", "b"]);
        self.stop(&[&xa, &xb]);
        outcome
    }

    /// The cost of the cluster key: every datagram sealed and checked.
    pub fn m2k_remote_keyed(&mut self) -> Res<()> {
        let env = env_of(&[("CLUSTER_KEY", BENCH_KEY)]);
        let (p, loose) = self.pair_against_a("k", 6, 27024, "keyed", Some(BENCH_KEY), &env)?;
        let r = ratio(p.a, p.b);
        self.row(
            "2k",
            "supernode remote search, keyed group (every datagram sealed and checked), wrk",
            format!(
                "{}; unpinned {}",
                rps_text(p.a, p.bad_a, p.idle_a),
                unpinned_text(loose.a, loose.b)
            ),
            format!("no key {} req/s", grouped(p.b, 0)),
            &r,
            ">= 0.9 x no key, all correct (pinned)",
            verdict(r.0 >= 0.9 && p.bad_a == 0),
        );
        Ok(())
    }

    /// The cost of logging at the default level (a summary line a minute, no line per
    /// search): the pair a, b (which run at the defaults) against a pair at warn.
    pub fn m2i_remote_info(&mut self) -> Res<()> {
        let env = env_of(&[("LOG_LEVEL", "warn")]);
        let (p, loose) = self.pair_against_a("i", 8, 27026, "LOG_LEVEL=warn", None, &env)?;
        let lines = fs::read_to_string(self.log_path("a.log")).map_or(0, |t| t.lines().count());
        let r = ratio(p.b, p.a);
        self.row(
            "2i",
            "supernode remote search at LOG_LEVEL=info (the default), wrk",
            format!(
                "{}, {lines} log lines in all; unpinned {}",
                rps_text(p.b, p.bad_b, p.idle_b),
                unpinned_text(loose.b, loose.a)
            ),
            format!("warn {} req/s", grouped(p.a, 0)),
            &r,
            ">= 0.9 x warn, all correct (pinned)",
            verdict(r.0 >= 0.9 && p.bad_b == 0),
        );
        Ok(())
    }

    pub fn m3_sequential(&mut self) -> Res<()> {
        self.pair_up()?;
        let a = self.addr("a")?;
        let (a_paths, b_paths) = (
            read_lines(self.log_path(A_PATHS))?,
            read_lines(self.log_path(B_PATHS))?,
        );
        let (mut l, mut r, mut wrong) = (Vec::new(), Vec::new(), 0usize);
        for _ in 0..self.s.runs {
            let local = LatencyArgs::new(a, a_paths.clone(), 2000);
            l.extend(
                self.latency("local hit", &local, &mut wrong)?
                    .map(|x| x.summary.median),
            );
            let mut remote = LatencyArgs::new(a, b_paths.clone(), 2000);
            remote.contains = Some(format!("\"location\":\"{B_LOC}\""));
            r.extend(
                self.latency("remote hit", &remote, &mut wrong)?
                    .map(|x| x.summary.median),
            );
        }
        self.local_us = median(&l);
        self.remote_us = median(&r);
        let (Some(local), Some(remote), Some(pp)) = (self.local_us, self.remote_us, self.pp_us)
        else {
            return Err("no median of the local hits, the remote hits or the ping-pong".into());
        };
        let bound = calc(local + 3.0 * pp).0;
        let r = ratio(remote, bound);
        self.row(
            "3",
            "one remote search, sequential, median",
            format!("{} us", grouped(remote, 1)),
            format!(
                "local hit {} us + 3 x ping-pong {} us (two cores) = {} us",
                grouped(local, 1),
                grouped(pp, 1),
                grouped(bound, 1)
            ),
            &r,
            "<= 1 (local + 3 x ping-pong)",
            verdict(r.0 <= 1.0 && wrong == 0),
        );
        if wrong > 0 {
            self.note(format!("3: {wrong} wrong answers in the sequential runs"));
        }
        Ok(())
    }

    pub fn m4_concurrent(&mut self) -> Res<()> {
        self.pair_up()?;
        let args = ConcurrentArgs {
            addr: self.addr("a")?,
            present: read_lines(self.log_path(B_PATHS))?,
            absent: read_lines(self.log_path(ABSENT))?,
            threads: 64,
            rounds: 50,
            location: Some(B_LOC.into()),
        };
        let c = client::concurrent(&args)?;
        let examples: String = c
            .examples
            .iter()
            .map(|e| format!("concurrent: {e}\n"))
            .collect();
        let _ = fs::write(self.log_path("concurrent.err"), &examples);
        self.say(format!("concurrent: {c}"));
        let single = self
            .remote_us
            .ok_or("no single remote search median (row 3)")?;
        let r = ratio(c.summary.p99, single);
        self.row(
            "4",
            "64 concurrent remote searches (half present, half absent) x 50",
            format!(
                "{}/{} correct ({} wrong, {} unanswered in 10 s), p99 {} us (rounds 2-50: {} us), max {} us",
                c.correct,
                c.summary.n,
                c.wrong,
                c.failed,
                grouped(c.summary.p99, 0),
                grouped(c.p99_after_round1, 0),
                grouped(c.summary.max, 0)
            ),
            format!("single remote search median {} us", grouped(single, 1)),
            &r,
            "100% correct, p99 <= 10 x single",
            verdict(c.correct == c.summary.n && c.summary.n == 3200 && r.0 <= 10.0),
        );
        if let Some(first) = c.examples.first() {
            self.note(format!("4: concurrent: {first}"));
        }
        Ok(())
    }

    pub fn m5_negative(&mut self) -> Res<()> {
        self.pair_up()?;
        let a = self.addr("a")?;
        let absent = read_lines(self.log_path(ABSENT))?;
        let (mut v, mut wrong) = (Vec::new(), 0usize);
        for _ in 0..self.s.runs {
            let mut args = LatencyArgs::new(a, absent.clone(), 1000);
            args.status = 404;
            v.extend(
                self.latency("negative, every peer up", &args, &mut wrong)?
                    .map(|x| x.summary.median),
            );
        }
        match (median(&v), self.local_us) {
            (Some(neg), Some(local)) => {
                let r = ratio(neg, local);
                self.row(
                    "5a",
                    "negative search, every peer up (GROUP_SIZE=2)",
                    format!("{} us", grouped(neg, 1)),
                    format!("local hit {} us", grouped(local, 1)),
                    &r,
                    "<= 2 x local hit",
                    verdict(r.0 <= 2.0 && wrong == 0),
                );
            }
            _ => self.rows.push(Row::error(
                "5a",
                "negative search, every peer up (GROUP_SIZE=2)",
                "<= 2 x local hit",
                "ERROR",
            )),
        }
        // A third supernode that believes the group has 4 members: a and b answer, the 4th is
        // dead.
        let timeout_ms = 2000u32;
        let mut env = super_env(1, 4);
        env.push(("SEARCH_TIMEOUT_MS".into(), timeout_ms.to_string()));
        let bin = self.bin.clone();
        if let Err(e) = self.start("c", "supernode", &bin, 27012, &env) {
            self.say(e);
            self.rows.push(Row::error(
                "5b",
                "negative search, GROUP_SIZE naming a dead peer",
                "<= time-out + 10%",
                "ERROR",
            ));
            return Ok(());
        }
        let mut args = LatencyArgs::new(self.addr("c")?, absent, self.s.runs);
        args.warmup = 0;
        args.status = 404;
        let mut wrong = 0;
        let dead = self.latency("negative, dead peer", &args, &mut wrong);
        self.stop(&["c"]);
        match dead? {
            Some(l) => {
                let (med, max) = (l.summary.median, l.summary.max);
                let r = ratio(med, f64::from(timeout_ms) * 1000.0);
                self.row(
                    "5b",
                    "negative search, GROUP_SIZE=4, 3 up: one dead peer",
                    format!(
                        "{} ms (max {} ms)",
                        grouped(calc(med / 1000.0).0, 0),
                        grouped(calc(max / 1000.0).0, 0)
                    ),
                    format!("time-out {timeout_ms} ms"),
                    &r,
                    "<= 1.1 x time-out",
                    verdict(r.0 <= 1.1 && wrong == 0),
                );
            }
            None => self.rows.push(Row::error(
                "5b",
                "negative search, GROUP_SIZE=4, 3 up: one dead peer",
                "<= 1.1 x time-out",
                "ERROR",
            )),
        }
        Ok(())
    }
}

//! Rows 10, 7, 6 and 14: one supernode with 1,000,000 entries: registering them, their memory,
//! searching among them, and a name search among them.

use std::fs;
use std::time::Duration;

use super::{ratio, rps_text, unpinned_text};
use crate::client::{self, LatencyArgs, RegisterArgs};
use crate::driver::Bench;
use crate::opts::Res;
use crate::procs;
use crate::setup::{A_PATHS, super_env};
use crate::stats::{calc, grouped, median};
use crate::table::{Row, verdict};

impl Bench {
    /// Rows 10, 7, 6 and 14: supernode d with 1,000,000 entries.
    pub fn m6_m7_m10_million(&mut self) -> Res<()> {
        self.addr("a")?;
        let bin = self.bin.clone();
        self.start("d", "supernode", &bin, 27013, &super_env(4, 1))?;
        let outcome = self.million();
        self.stop(&["d"]);
        outcome
    }

    fn million(&mut self) -> Res<()> {
        procs::sleep(Duration::from_secs(1))?;
        let d_pid = self.pid("d")?;
        let idle = procs::rss_kb(d_pid).ok_or("no VmRSS of d")?;
        self.say(format!(
            "supernode d idle: VmRSS {idle} kB; registering 10 x 100,000 resources"
        ));
        let d_paths = self.log_path("paths-d-million.txt");
        let reg = RegisterArgs::new(self.addr("d")?, 4, 10, 100_000, 27810).sample(1000, &d_paths);
        let outcome = client::register(&reg);
        procs::check()?;
        let err_path = self.log_path("register-million.err");
        let registered = match outcome {
            Ok(r) => {
                let _ = fs::write(&err_path, r.lines.join("\n") + "\n");
                r
            }
            Err(e) => {
                let _ = fs::write(&err_path, format!("{e}\n"));
                self.note(format!("registration of 1,000,000 entries failed: {e}"));
                return Err(e);
            }
        };
        self.say(format!("register: {registered}"));
        if registered.entries != 1_000_000 {
            return Err("not 1,000,000 entries".into());
        }
        procs::sleep(Duration::from_secs(1))?;
        let loaded = procs::rss_kb(d_pid).ok_or("no VmRSS of d")?;
        self.say(format!(
            "supernode d with 1,000,000 entries: VmRSS {loaded} kB"
        ));

        // 10: one registration of 100,000 resources (the median of the ten above).
        let (med, max) = (registered.median_ms, registered.max_ms);
        self.row(
            "10",
            "register one node with 100,000 resources",
            format!(
                "{} ms (median of 10; max {} ms)",
                grouped(med, 0),
                grouped(max, 0)
            ),
            "-",
            calc(med / 1000.0),
            "<= 1 s",
            verdict(med <= 1000.0),
        );

        // 7: memory per entry above the idle size.
        let per = calc((loaded as f64 - idle as f64) * 1024.0 / 1_000_000.0).0;
        self.row(
            "7",
            "supernode memory for 1,000,000 indexed resources",
            format!("{} B/entry", grouped(per, 0)),
            format!(
                "idle {} MiB -> {} MiB",
                grouped(calc(idle as f64 / 1024.0).0, 0),
                grouped(calc(loaded as f64 / 1024.0).0, 0)
            ),
            calc(per / 200.0),
            "<= 200 B/entry",
            verdict(per <= 200.0),
        );

        // 6: the same wrk command against 1,000,000 entries and against 15.
        let (d_url, a_url) = (self.url("d")?, self.a_url()?);
        let a_paths = self.log_path(A_PATHS);
        let sides = |pinned: &str| {
            (
                format!("local search, 1,000,000 entries{pinned}"),
                format!("local search, 15 entries{pinned}"),
            )
        };
        let (big, small) = sides("");
        let pair = self.pin(&["d", "a"]).and_then(|()| {
            self.wrk_pair(
                (&big, &d_url, Some(&d_paths)),
                (&small, &a_url, Some(&a_paths)),
                "",
                self.s.runs,
            )
        });
        self.unpin(&["d", "a"]);
        // One run unpinned, as users run it, beside the pinned figure the target holds.
        let (big, small) = sides(" (unpinned)");
        let loose = pair.as_ref().ok().and_then(|_| {
            let (d, a) = (Some(d_paths.as_path()), Some(a_paths.as_path()));
            self.wrk_pair((&big, &d_url, d), (&small, &a_url, a), "", 1)
                .ok()
        });
        procs::check()?;
        match pair {
            Ok(p) => {
                let r = ratio(p.a, p.b);
                let beside = loose.map_or(String::new(), |l| {
                    format!("; unpinned {}", unpinned_text(l.a, l.b))
                });
                self.row(
                    "6",
                    "local search, 1,000,000 indexed resources vs 15",
                    format!("{}{beside}", rps_text(p.a, p.bad_a, p.idle_a)),
                    format!("15 entries: {}", rps_text(p.b, p.bad_b, p.idle_b)),
                    &r,
                    ">= 0.9 (pinned)",
                    verdict(r.0 >= 0.9 && p.bad_a + p.bad_b == 0),
                );
            }
            Err(e) => {
                self.say(e);
                self.rows.push(Row::error(
                    "6",
                    "local search, 1,000,000 indexed resources vs 15",
                    ">= 0.9",
                    "ERROR",
                ));
            }
        }
        if let Err(e) = self.name_search_row() {
            procs::check()?;
            self.say(format!("14: {e}"));
        }
        Ok(())
    }

    /// 14: a name search that matches one resource among 1,000,000 (supernode d, alone in its
    /// group: no group to ask) against the same kind of search among 15 (supernode n, alone
    /// too), sequential, medians. The names are those `register` gives: file-<node>-<n>.bin.
    fn name_search_row(&mut self) -> Res<()> {
        let big: Vec<String> = (0..200u64)
            .map(|i| {
                format!(
                    "/api/supernode/search?file_name=file-{}-{}.bin",
                    i % 10,
                    (i * 7919) % 100_000
                )
            })
            .collect();
        let small: Vec<String> = (0..15)
            .map(|i| format!("/api/supernode/search?file_name=FILE-0-{i}.BIN"))
            .collect();
        let _ = fs::write(
            self.log_path("paths-names-million.txt"),
            big.join("\n") + "\n",
        );
        let _ = fs::write(self.log_path("paths-names-15.txt"), small.join("\n") + "\n");
        let bin = self.bin.clone();
        self.start("n", "supernode", &bin, 27019, &super_env(9, 1))?;
        let outcome = (|| -> Res<(Option<f64>, Option<f64>, usize)> {
            client::register(&RegisterArgs::new(self.addr("n")?, 1, 1, 15, 27831))?;
            let (d, n) = (self.addr("d")?, self.addr("n")?);
            let (mut m, mut s, mut wrong) = (Vec::new(), Vec::new(), 0usize);
            for _ in 0..self.s.runs {
                let mut args = LatencyArgs::new(d, big.clone(), 300);
                args.contains = Some("\"name\":\"file-".into());
                m.extend(
                    self.latency("name search, 1,000,000 entries", &args, &mut wrong)?
                        .map(|x| x.summary.median),
                );
                let mut args = LatencyArgs::new(n, small.clone(), 300);
                args.contains = Some("\"name\":\"file-".into());
                s.extend(
                    self.latency("name search, 15 entries", &args, &mut wrong)?
                        .map(|x| x.summary.median),
                );
            }
            Ok((median(&m), median(&s), wrong))
        })();
        self.stop(&["n"]);
        let (Some(mm), Some(sm), wrong) = outcome? else {
            return Err("no median of the name searches".into());
        };
        self.row(
            "14",
            "name search matching 1 of 1,000,000 indexed resources, sequential, median",
            format!("{} ms", grouped(calc(mm / 1000.0).0, 2)),
            format!("15 entries: {} ms", grouped(calc(sm / 1000.0).0, 2)),
            calc(mm / 5000.0),
            "< 5 ms",
            verdict(mm < 5000.0 && wrong == 0),
        );
        Ok(())
    }
}

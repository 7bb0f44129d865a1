//! Rows 8, 9, 13, 11 and 12: a node's start-up over 1 GiB, its listing of 10,000 resources, a
//! 1 GiB download, the liveness sweep over 1,000 nodes, idle memory and the binary's size.

use std::fs;
use std::time::Duration;

use super::{ratio, rps_text};
use crate::client::{self};
use crate::driver::{Bench, HOST, env_of};
use crate::local;
use crate::opts::Res;
use crate::procs;
use crate::setup::{node_env, super_env};
use crate::stats::{calc, grouped, kv, kv_num, median};
use crate::table::{Row, verdict};
use crate::util::read_lines;

impl Bench {
    pub fn m8_startup(&mut self) -> Res<()> {
        let hub = self.start_hub()?;
        let dir = self.s.data.join("gib");
        let mut files: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        files.sort();
        if files.len() != 256 {
            return Err(format!(
                "{} files in {}, not 256",
                files.len(),
                dir.display()
            ));
        }
        // Warm: both read from the page cache.
        for f in &files {
            procs::check()?;
            let _ = fs::read(f);
        }
        let mut env = node_env(hub, &dir);
        env.push(("LHOST".into(), HOST.into()));
        env.push(("LPORT".into(), "0".into()));
        let mut openssl: Vec<String> = vec!["openssl".into(), "dgst".into(), "-sha256".into()];
        openssl.extend(files.iter().cloned());
        let node = vec![self.bin.to_string_lossy().into_owned(), "node".to_string()];
        let (mut o, mut n) = (Vec::new(), Vec::new());
        for i in 0..self.s.runs {
            match local::timecmd(&openssl, Duration::from_secs(120)) {
                Ok(d) => {
                    let ms = d.as_secs_f64() * 1e3;
                    self.say(format!("openssl dgst -sha256, 256 files: ms={ms:.1}"));
                    o.push(ms);
                }
                Err(e) => self.say(format!("openssl dgst -sha256, 256 files: {e}")),
            }
            procs::check()?;
            let log = self.log_path(&format!("node-gib-{i}.log"));
            match local::startup(&log, Duration::from_secs(90), &node, Some(&env)) {
                Ok(s) => {
                    let ms = s.elapsed.as_secs_f64() * 1e3;
                    self.say(format!("node start-up to registered: ms={ms:.1}"));
                    n.push(ms);
                }
                Err(e) => self.say(format!("node start-up to registered: {e}")),
            }
            procs::check()?;
        }
        let (Some(om), Some(nm)) = (median(&o), median(&n)) else {
            return Err("no median of openssl or of the start-ups".into());
        };
        let r = ratio(nm, om);
        self.row(
            "8",
            "node start-up over 1 GiB in 256 files, start to registered",
            format!("{} ms", grouped(nm, 0)),
            format!("openssl dgst -sha256 {} ms", grouped(om, 0)),
            &r,
            "<= 0.75 x openssl",
            verdict(r.0 <= 0.75),
        );
        Ok(())
    }

    pub fn m9_listing(&mut self) -> Res<()> {
        let hub = self.start_hub()?;
        let nginx = self.nginx_url()?;
        let bin = self.bin.clone();
        self.start(
            "n10k",
            "node",
            &bin,
            27020,
            &node_env(hub, &self.s.data.join("10k")),
        )?;
        let outcome = self.listing(&nginx);
        self.stop(&["n10k"]);
        outcome
    }

    fn listing(&mut self, nginx: &str) -> Res<()> {
        if !self.wait_log("n10k", &[" registered ", " with "], Duration::from_secs(60))? {
            return Err("node n10k did not register".into());
        }
        let path = "/api/node/resources";
        let _ = fs::write(self.log_path("paths-listing.txt"), format!("{path}\n"));
        let www = self.www();
        client::mirror(self.addr("n10k")?, &[path.to_string()], &www, 200)?;
        let size = fs::metadata(www.join("api/node/resources")).map_or(0, |m| m.len());
        let url = format!("{}{path}", self.url("n10k")?);
        let p = self.wrk_pair(
            ("node listing, 10,000 resources", &url, None),
            ("nginx, same listing", &format!("{nginx}{path}"), None),
            "",
            self.s.runs,
        )?;
        self.row(
            "9",
            format!(
                "listing a node of 10,000 resources ({} bytes), wrk",
                grouped(size as f64, 0)
            ),
            rps_text(p.a, p.bad_a, p.idle_a),
            format!("nginx {} req/s; seed 109 req/s", grouped(p.b, 0)),
            format!("{} x seed", calc(p.a / 109.0)),
            ">= 2,200 req/s (20 x seed)",
            verdict(p.a >= 2200.0 && p.bad_a == 0),
        );
        Ok(())
    }

    /// curl's own speed (bytes/s) for one download, pinned like the servers' opposite when
    /// they are pinned; None for a failed one.
    fn curl_speed(&self, url: &str, range: Option<&str>) -> Option<f64> {
        let range = range.map(|r| ["-r", r]);
        let extra = range.as_ref().map_or(&[][..], |r| &r[..]);
        let text = crate::util::curl_write_out(
            url,
            60,
            extra,
            self.wrk_cpu,
            "%{http_code} %{speed_download}",
        )?;
        let (code, speed) = text.trim().split_once(' ')?;
        if code == "200" || code == "206" {
            speed.parse().ok()
        } else {
            None
        }
    }

    /// A 1 GiB file downloaded with curl from a node (written from a mapping of the file, 1 MiB
    /// a call) and from nginx (sendfile), whole and its second half as a range, interleaved;
    /// medians of curl's own speed over 7 runs. Both servers (every nginx worker too) on core 0
    /// and curl on core 1: unpinned, a download moves by 20-40% with whether the scheduler
    /// puts curl on the server's core or the other one.
    pub fn m13_download(&mut self) -> Res<()> {
        let nginx = self.nginx_url()?;
        let hub = self.start_hub()?;
        let dir = self.s.data.join("onegib");
        self.make_files(&dir, 1, 1 << 30, 13)?;
        let file = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "bin"))
            .ok_or("no 1 GiB file")?;
        let copy = self.www().join("onegib.bin");
        let _ = fs::remove_file(&copy);
        if fs::hard_link(&file, &copy).is_err() {
            fs::copy(&file, &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
        }
        let _ = fs::read(&file);
        procs::check()?;
        let bin = self.bin.clone();
        self.start("dl", "node", &bin, 27030, &node_env(hub, &dir))?;
        let outcome = self.downloads(&nginx);
        let all: Vec<usize> = (0..procs::ncpus()).collect();
        if let Some(pid) = self.procs.pid("nginx") {
            for worker in procs::children_of(pid) {
                let _ = procs::pin_threads(worker, &all);
            }
        }
        self.unpin(&["dl"]);
        self.stop(&["dl"]);
        outcome
    }

    fn downloads(&mut self, nginx: &str) -> Res<()> {
        if !self.wait_log("dl", &["registered"], Duration::from_secs(120))? {
            return Err("node dl did not register".into());
        }
        let listing = crate::http::Conn::new(self.addr("dl")?, Duration::from_secs(30))
            .get("/api/node/resources")
            .map_err(|e| format!("GET /api/node/resources: {e}"))?;
        let body = String::from_utf8_lossy(&listing.body).into_owned();
        let id = first_hex64(&body).ok_or("no id listed")?;
        let url = format!("{}/api/node/resources/{id}/content", self.url("dl")?);
        let reference = format!("{nginx}/onegib.bin");
        if procs::ncpus() >= 2 {
            self.pin(&["dl"])?;
            let nginx_pid = self.pid("nginx")?;
            for worker in procs::children_of(nginx_pid) {
                let _ = procs::pin_threads(worker, &[0]);
            }
        }
        let half = format!("{}-", 1u64 << 29);
        let mut pinned_rows = Vec::new();
        for range in [None, Some(half.as_str())] {
            let kind = if range.is_some() { "range" } else { "whole" };
            let (mut a, mut b, mut bad) = (Vec::new(), Vec::new(), 0);
            for _ in 0..7 {
                procs::check()?;
                let sa = self.curl_speed(&url, range);
                let sb = self.curl_speed(&reference, range);
                bad += usize::from(sa.is_none()) + usize::from(sb.is_none());
                let (sa, sb) = (sa.unwrap_or(0.0), sb.unwrap_or(0.0));
                a.push(sa);
                b.push(sb);
                self.say(format!(
                    "download {kind}: node {} MB/s, nginx {} MB/s",
                    calc(sa / 1e6),
                    calc(sb / 1e6)
                ));
            }
            let (sa, sb) = (median(&a).unwrap_or(0.0), median(&b).unwrap_or(0.0));
            let r = ratio(sa, sb);
            let (num, what) = match range {
                None => ("13", "download of a 1 GiB file from a node, curl"),
                Some(_) => ("13r", "its second half as a byte range (206), curl"),
            };
            pinned_rows.push((num, what, sa, sb, r, bad, range));
        }
        // Three of each unpinned, as users run them, beside the pinned figures the targets hold.
        let all: Vec<usize> = (0..procs::ncpus()).collect();
        self.unpin(&["dl"]);
        let nginx_pid = self.pid("nginx")?;
        for worker in procs::children_of(nginx_pid) {
            let _ = procs::pin_threads(worker, &all);
        }
        for (num, what, sa, sb, r, bad, range) in pinned_rows {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                procs::check()?;
                a.extend(self.curl_speed(&url, range));
                b.extend(self.curl_speed(&reference, range));
            }
            let beside = match (median(&a), median(&b)) {
                (Some(la), Some(lb)) => format!(
                    "; unpinned {} MB/s, ratio {}",
                    grouped(calc(la / 1e6).0, 0),
                    ratio(la, lb)
                ),
                _ => String::new(),
            };
            self.row(
                num,
                what,
                format!("{} MB/s{beside}", grouped(calc(sa / 1e6).0, 0)),
                format!("nginx (sendfile) {} MB/s", grouped(calc(sb / 1e6).0, 0)),
                &r,
                ">= 1.0 x nginx (pinned)",
                verdict(r.0 >= 1.0 && bad == 0),
            );
        }
        Ok(())
    }

    pub fn m11_liveness(&mut self) -> Res<()> {
        // The farm registers its 1,000 nodes from 127.0.0.1: exactly MAX_NODES_PER_HOST's
        // default, which is taken (raise the key here if the farm grows).
        let env = env_of(&[
            ("MULTICAST_LOCATION", "239.77.1.6:27106"),
            ("MULTICAST_GROUP_SIZE", "1"),
            ("MULTICAST_INTERFACE", HOST),
            ("LIVENESS_PERIOD_MS", "5000"),
            ("LIVENESS_MISSES", "2"),
            ("HEALTH_TIMEOUT_MS", "2000"),
            ("LOG_LEVEL", "debug"),
        ]);
        let bin = self.bin.clone();
        self.start("f", "supernode", &bin, 27015, &env)?;
        let farm_dir = self.log_path("farm");
        let args: Vec<String> = [
            "farm",
            "--addr",
            &self.addr("f")?.to_string(),
            "--live",
            "900",
            "--hanging",
            "100",
            "--deadline-s",
            "45",
            "--out",
            &farm_dir.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (out, err) = (self.log_path("farm.out"), self.log_path("farm.err"));
        let line = self.tool_run("farm", &args, Duration::from_secs(90), &out, Some(&err));
        self.stop(&["f"]);
        let line = line?;
        self.say(format!("farm: {line}"));
        for l in fs::read_to_string(&err).unwrap_or_default().lines() {
            self.say(format!("  {l}"));
        }
        let log = fs::read_to_string(self.log_path("f.log")).unwrap_or_default();
        let live = read_lines(farm_dir.join("live.txt")).unwrap_or_default();
        let hanging = read_lines(farm_dir.join("hanging.txt")).unwrap_or_default();
        let c = LivenessLog::count(&log, &live, &hanging);
        let span = kv_num("max_sweep_span_ms", &line).ok_or("the farm gave no sweep span")?;
        let removed = kv("removed", &line) == Some("true");
        let twice = kv("live_checked_twice", &line) == Some("true");
        let after = kv_num("removed_after_s", &line).unwrap_or(f64::NAN);
        let cmin = kv("hanging_checks_at_removal_min", &line).unwrap_or("");
        let cmax = kv("hanging_checks_at_removal_max", &line).unwrap_or("");
        let lost = kv("live_lost", &line).unwrap_or("");
        let pass = span <= 5000.0
            && twice
            && lost == "0"
            && c.missed_live == 0
            && removed
            && cmin == "2"
            && cmax == "2"
            && c.removed_lines == 100
            && c.removed_live == 0;
        let none_lost = if lost == "0" && c.missed_live == 0 {
            "yes"
        } else {
            "no"
        };
        self.row(
            "11",
            "liveness sweep, 1,000 nodes of which 100 hang",
            format!(
                "live 900 checked within {} ms per sweep (0 lost: {none_lost}); hanging removed after {cmin}-{cmax} sweeps, {} s after registering ({} removed, {} misses logged)",
                grouped(span, 0),
                grouped(after, 1),
                c.removed_lines,
                c.missed_hanging
            ),
            "period 5,000 ms",
            calc(span / 5000.0),
            "live 900 within one 5 s period; the 100 removed after 2 sweeps",
            verdict(pass),
        );
        Ok(())
    }

    /// One row of 12 from the VmRSS (kB) of each build.
    fn idle_row(&mut self, role: &str, rss: &[(String, u64)]) {
        let measurement = format!("idle resident memory, {role} (VmRSS)");
        let Some(worst) = rss.iter().map(|(_, kb)| *kb).max() else {
            self.rows
                .push(Row::error("12", &measurement, "<= 8 MB", "ERROR"));
            return;
        };
        let text: Vec<String> = rss
            .iter()
            .map(|(kind, kb)| {
                format!(
                    "{kind} {} MB",
                    grouped(calc(*kb as f64 * 1024.0 / 1e6).0, 1)
                )
            })
            .collect();
        self.row(
            "12",
            measurement,
            text.join(", "),
            "-",
            calc(worst as f64 * 1024.0 / 8e6),
            "<= 8 MB",
            verdict(worst * 1024 <= 8_000_000),
        );
    }

    pub fn m12_idle(&mut self) -> Res<()> {
        let hub = self.start_hub()?;
        let (mut sup, mut nod) = (Vec::new(), Vec::new());
        let builds = [
            ("release", Some(self.bin.clone()), 27016u16),
            ("static", self.static_bin.clone(), 27018),
        ];
        for (kind, bin, port) in builds {
            let Some(bin) = bin.filter(|b| b.is_file()) else {
                continue;
            };
            let name = format!("idle-super-{kind}");
            match self.start(&name, "supernode", &bin, port, &super_env(7, 2)) {
                Ok(()) => {
                    procs::sleep(Duration::from_secs(1))?;
                    if let Some(kb) = procs::rss_kb(self.pid(&name)?) {
                        sup.push((kind.to_string(), kb));
                    }
                }
                Err(e) => self.say(e),
            }
            self.stop(&[&name]);
            let name = format!("idle-node-{kind}");
            let env = node_env(hub, &self.s.data.join("small"));
            match self.start(&name, "node", &bin, port + 1, &env) {
                Ok(()) => {
                    if self.wait_log(&name, &[" registered ", " with "], Duration::from_secs(30))? {
                        procs::sleep(Duration::from_secs(1))?;
                        if let Some(kb) = procs::rss_kb(self.pid(&name)?) {
                            nod.push((kind.to_string(), kb));
                        }
                    } else {
                        self.say(format!("{name} did not register within 30 s"));
                    }
                }
                Err(e) => self.say(e),
            }
            self.stop(&[&name]);
        }
        self.idle_row("supernode", &sup);
        self.idle_row("node", &nod);
        if let Some(bin) = self.static_bin.clone().filter(|b| b.is_file()) {
            let size = fs::metadata(&bin).map_or(0, |m| m.len());
            let kind = self.static_kind.clone();
            self.row(
                "12",
                format!("static binary size ({kind})"),
                format!(
                    "{} MB ({} bytes)",
                    grouped(calc(size as f64 / 1e6).0, 2),
                    grouped(size as f64, 0)
                ),
                "-",
                calc(size as f64 / 6e6),
                "<= 6 MB",
                verdict(size <= 6_000_000),
            );
        }
        Ok(())
    }
}

/// The first 64 hex digits in a row (a resource id in a listing).
fn first_hex64(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() || (b'a'..=b'f').contains(b) {
            run += 1;
            if run == 64 {
                return Some(&text[i + 1 - 64..=i]);
            }
        } else {
            run = 0;
        }
    }
    None
}

/// What the liveness row counts in the supernode's log.
#[derive(Debug, PartialEq)]
struct LivenessLog {
    removed_lines: usize,
    missed_live: usize,
    missed_hanging: usize,
    removed_live: usize,
}

impl LivenessLog {
    fn count(log: &str, live: &[String], hanging: &[String]) -> LivenessLog {
        let names = |list: &[String], after: &str| -> Vec<String> {
            list.iter()
                .map(|l| format!("liveness: {l}{after}"))
                .collect()
        };
        let (live_missed, hanging_missed) = (names(live, " missed"), names(hanging, " missed"));
        let live_removed: Vec<String> = live
            .iter()
            .map(|l| format!("liveness: removed {l} "))
            .collect();
        let any =
            |line: &str, patterns: &[String]| patterns.iter().any(|p| line.contains(p.as_str()));
        let mut c = LivenessLog {
            removed_lines: 0,
            missed_live: 0,
            missed_hanging: 0,
            removed_live: 0,
        };
        for line in log.lines() {
            if line.contains("liveness: removed") {
                c.removed_lines += 1;
                c.removed_live += usize::from(any(line, &live_removed));
            }
            if line.contains("missed a health check") {
                c.missed_live += usize::from(any(line, &live_missed));
                c.missed_hanging += usize::from(any(line, &hanging_missed));
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_listings() {
        let id = "ab".repeat(32);
        let listing = format!("{{\"data\":[{{\"id\":\"{id}\",\"size\":1073741824}}]}}");
        assert_eq!(first_hex64(&listing), Some(id.as_str()));
        assert_eq!(first_hex64("{\"id\":\"abc\"}"), None);
    }

    #[test]
    fn the_liveness_log() {
        let live = vec!["127.0.0.1:4000".to_string(), "127.0.0.1:4001".to_string()];
        let hanging = vec!["127.0.0.1:5000".to_string()];
        let log = "\
            DEBUG liveness: 127.0.0.1:5000 missed a health check (1 of 2)\n\
            DEBUG liveness: 127.0.0.1:5000 missed a health check (2 of 2)\n\
            INFO liveness: removed 127.0.0.1:5000 (node x) after 2 misses\n\
            DEBUG liveness: 127.0.0.1:4001 missed a health check (1 of 2)\n\
            INFO liveness: removed 127.0.0.1:4000 (node y)\n";
        assert_eq!(
            LivenessLog::count(log, &live, &hanging),
            LivenessLog {
                removed_lines: 2,
                missed_live: 1,
                missed_hanging: 2,
                removed_live: 1,
            }
        );
    }
}

//! Row 15: groups of 2, 8 and 32 supernodes, each one process on 127.0.0.1 in a multicast
//! group of its own (239.77.1.11-14), all up at once so that their runs interleave. In each,
//! supernode 0 is the asker and supernode 1 holds one node's 1,000 files, searched in turn as
//! row 2 searches b's (searches for one id seldom overlap, so few join another). The
//! 32-group stays up
//! for row 16.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::rps_text;
use crate::client::{self, RegisterArgs};
use crate::driver::{Bench, Env, env_of};
use crate::opts::Res;
use crate::procs;
use crate::scale::{self, Want};
use crate::setup::super_env;
use crate::stats::{calc, grouped, median, per_search};
use crate::table::verdict;

/// The groups, in the order their runs interleave: prefix, supernodes, group octet (239.77.1.x),
/// first HTTP port.
const GROUPS: [(&str, usize, u16, u16); 4] = [
    ("g2", 2, 11, 27400),
    ("g8", 8, 12, 27410),
    ("g32", 32, 13, 27420),
    ("n32", 32, 14, 27460),
];

const SCALE_ABSENT: &str = "paths-scale-absent.txt";
const SCALE_PRESENT: &str = "paths-scale-present.txt";
/// Where the holder's fake node is: every positive answer must name it.
const SCALE_LOC: &str = "127.0.0.1:27850";
const RECEIVED: &str = "superpeer_datagrams_received_total";
pub(super) const REQUESTS: &str = "superpeer_http_requests_total";

fn spec(prefix: &str) -> Res<(usize, u16, u16)> {
    GROUPS
        .iter()
        .find(|g| g.0 == prefix)
        .map(|g| (g.1, g.2, g.3))
        .ok_or(format!("no group {prefix}"))
}

pub(super) fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Datagrams per search at each supernode but those skipped: the rise of its counter, less its
/// idle rate over the run's length, over the searches. (mean, most); None when a counter could
/// not be read or no search was made; Some(None) when every supernode was skipped.
pub fn per_search_at(
    before: &[f64],
    after: &[f64],
    idle_rate: &[f64],
    seconds: f64,
    searches: u64,
    skip: Option<usize>,
) -> Option<Option<(f64, f64)>> {
    if searches == 0 || before.is_empty() || after.len() < before.len() {
        return None;
    }
    let mut per = Vec::new();
    for (i, (&b, &a)) in before.iter().zip(after).enumerate() {
        if Some(i) == skip {
            continue;
        }
        if b < 0.0 || a < 0.0 {
            return None;
        }
        let rate = idle_rate.get(i).copied().unwrap_or(0.0);
        per.push((a - b - rate * seconds) / searches as f64);
    }
    if per.is_empty() {
        return Some(None);
    }
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    let most = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Some((mean, most)))
}

/// What the runs of one group and kind gave.
#[derive(Default)]
struct Series {
    rps: Vec<f64>,
    bad: u64,
    idle: usize,
    mean: Vec<f64>,
    most: Vec<f64>,
}

impl Bench {
    fn group_name(prefix: &str, i: usize) -> String {
        format!("{prefix}-{i}")
    }

    /// Supernodes PREFIX-0 .. PREFIX-(n-1), within 60 s for the whole group (each start waits
    /// for its port); stopped again if one fails.
    pub(super) fn start_group(&mut self, prefix: &str, extra: &Env) -> Res<()> {
        let (size, octet, base) = spec(prefix)?;
        let mut env = super_env(octet, size);
        env.extend(extra.iter().cloned());
        self.groups.insert(prefix.to_string(), size);
        let deadline = Instant::now() + Duration::from_secs(60);
        let bin = self.bin.clone();
        for i in 0..size {
            let port = base + u16::try_from(i).unwrap_or(0);
            let started = if Instant::now() > deadline {
                Err("past the group's 60 s".to_string())
            } else {
                self.start(&Self::group_name(prefix, i), "supernode", &bin, port, &env)
            };
            if let Err(e) = started {
                procs::check()?;
                self.say(e);
                self.say(format!(
                    "group {prefix}: supernode {i} of {size} did not start in time"
                ));
                self.stop_group(prefix);
                return Err(format!("group {prefix} did not start"));
            }
        }
        Ok(())
    }

    fn stop_group(&mut self, prefix: &str) {
        let size = self.groups.remove(prefix).unwrap_or(0);
        let names: Vec<String> = (0..size).map(|i| Self::group_name(prefix, i)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.stop(&names);
    }

    pub fn stop_scale(&mut self) {
        for (prefix, ..) in GROUPS {
            self.stop_group(prefix);
        }
    }

    /// 127.0.0.1:port of the group's supernodes but those numbered in `skip`.
    pub(super) fn group_addrs(&self, prefix: &str, skip: &[usize]) -> Vec<SocketAddr> {
        let size = self.groups.get(prefix).copied().unwrap_or(0);
        (0..size)
            .filter(|i| !skip.contains(i))
            .filter_map(|i| self.port(&Self::group_name(prefix, i)))
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .collect()
    }

    pub(super) fn counter(
        addrs: &[SocketAddr],
        metric: &str,
        label: Option<&str>,
    ) -> Res<Vec<f64>> {
        let values = scale::counters(addrs, metric, label);
        procs::check()?;
        Ok(values)
    }

    /// Registers the node at PREFIX-1 and waits until the asker (PREFIX-0) hears every other
    /// supernode and, with summaries, holds a fresh summary of each, the holder's with its files.
    fn scale_ready(&mut self, prefix: &str, digests: bool) -> Res<()> {
        let size = self.groups.get(prefix).copied().unwrap_or(0);
        let holder = self.addr(&Self::group_name(prefix, 1))?;
        let present = self.log_path(SCALE_PRESENT);
        client::register(&RegisterArgs::new(holder, 15, 1, 1000, 27850).sample(1000, &present))?;
        let held = if digests {
            let d = scale::digest(holder, None)?;
            Some(format!("{:x}/{}", d.epoch, d.version))
        } else {
            None
        };
        let want = Want {
            fresh: if digests { size - 1 } else { 0 },
            peers: size - 1,
            held: held.as_deref(),
        };
        let asker = self.addr(&Self::group_name(prefix, 0))?;
        let ready = scale::ready(&[asker], &want, Duration::from_secs(60))?;
        self.say(format!("group {prefix}: the asker is ready: {ready}"));
        if ready.ok {
            Ok(())
        } else {
            Err(format!("group {prefix}: the asker is not ready"))
        }
    }

    /// Whether every supernode of the 32-group holds 31 fresh summaries, said.
    fn say_g32_fresh(&mut self, since: Instant) -> Res<()> {
        let all = self.group_addrs("g32", &[]);
        let want = Want {
            fresh: 31,
            ..Want::default()
        };
        let ready = scale::ready(&all, &want, Duration::ZERO)?;
        self.say(format!(
            "group g32, {} s after the first start: every supernode with 31 fresh summaries? {ready}",
            since.elapsed().as_secs()
        ));
        Ok(())
    }

    /// One wrk run at the asker, absent ids (every answer a 404, from the asker's own count of
    /// its answers by status) or the holder's file (every answer checked by the Lua script: 200
    /// and the holder's location), with the datagrams every other supernode received
    /// meanwhile. For absent ids, `bad` counts socket errors, answers of another status than
    /// 404, and fewer 404s than wrk's answers.
    fn scale_run(&mut self, prefix: &str, negative: bool, series: &mut Series) -> Res<()> {
        let peers = self.group_addrs(prefix, &[0]);
        let asker = self.addr(&Self::group_name(prefix, 0))?;
        let url = format!("http://{asker}");
        let route = "route=\"/api/supernode/search/{id}\"";
        let not_found = format!("{route},status=\"404\"");
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        let all0 = sum(&Self::counter(&[asker], REQUESTS, Some(route))?);
        let nf0 = sum(&Self::counter(&[asker], REQUESTS, Some(&not_found))?);
        let before = Self::counter(&peers, RECEIVED, None)?;
        let t0 = now_s();
        let mut run = if negative {
            let paths = self.log_path(SCALE_ABSENT);
            let mut run = self.wrk_run(
                &format!("{prefix}, negative search"),
                &url,
                Some(&paths),
                "",
                404,
            )?;
            // Read in the opposite order from the start: a search still in flight when wrk
            // stops and answered between the two reads is then counted in both, never as a
            // 404 without its answer (which would make `others` negative).
            let nf1 = sum(&Self::counter(&[asker], REQUESTS, Some(&not_found))?);
            let all1 = sum(&Self::counter(&[asker], REQUESTS, Some(route))?);
            let answered_404 = nf1 - nf0;
            let mut others = (all1 - all0) - answered_404;
            let mut missing = run.requests as f64 - answered_404;
            if all0 < 0.0 || all1 < 0.0 || nf0 < 0.0 || nf1 < 0.0 || others < 0.0 {
                others = run.requests as f64;
                missing = 0.0;
            }
            run.bad += others as u64 + missing.max(0.0) as u64;
            self.say(format!(
                "{prefix} negative: the asker answered {} searches 404 and {} otherwise",
                calc(answered_404),
                calc(others)
            ));
            run
        } else {
            let paths = self.log_path(SCALE_PRESENT);
            let expect = format!("\"location\":\"{SCALE_LOC}\"");
            self.wrk_run(
                &format!("{prefix}, positive search"),
                &url,
                Some(&paths),
                &expect,
                200,
            )?
        };
        let seconds = calc(now_s() - t0).0;
        let after = Self::counter(&peers, RECEIVED, None)?;
        let idle_rate = self.bg_rate.get(prefix).cloned().unwrap_or_default();
        // The holder (the first of the peers) receives the searches for its files.
        let skip = if negative { None } else { Some(0) };
        let stats = per_search_at(&before, &after, &idle_rate, seconds, run.requests, skip);
        let (mean, most) = match stats {
            Some(Some((mean, most))) => {
                series.mean.push(mean);
                series.most.push(most);
                (format!("{mean:.6}"), format!("{most:.6}"))
            }
            Some(None) => ("-".into(), "-".into()),
            None => ("x".into(), "x".into()),
        };
        let kind = if negative { "neg" } else { "pos" };
        self.say(format!(
            "{prefix} {kind}: {} searches; datagrams per search at each supernode not holding the id: mean {mean}, most {most}",
            run.requests
        ));
        series.rps.extend(run.rps.take());
        series.bad += run.bad;
        series.idle = series.idle.max(run.idle);
        Ok(())
    }

    pub fn m15_scale(&mut self) -> Res<()> {
        fs::write(
            self.log_path(SCALE_ABSENT),
            client::id_paths(98, 1000, "/api/supernode/search/"),
        )
        .map_err(|e| format!("{SCALE_ABSENT}: {e}"))?;
        let t0 = Instant::now();
        let no_digests = env_of(&[("INDEX_DIGESTS", "false")]);
        for (prefix, ..) in GROUPS {
            let extra = if prefix == "n32" {
                no_digests.clone()
            } else {
                Env::new()
            };
            if let Err(e) = self.start_group(prefix, &extra) {
                self.stop_scale();
                return Err(e);
            }
        }
        self.say(format!(
            "scale: 74 supernodes started in {} s",
            t0.elapsed().as_secs()
        ));
        for (prefix, ..) in GROUPS {
            if let Err(e) = self.scale_ready(prefix, prefix != "n32") {
                self.stop_scale();
                return Err(e);
            }
        }
        self.say_g32_fresh(t0)?;

        // The idle rate of datagrams at each supernode (pings, their answers, announcements).
        let mut start: Vec<(Vec<f64>, f64)> = Vec::new();
        for (prefix, ..) in GROUPS {
            let addrs = self.group_addrs(prefix, &[0]);
            start.push((Self::counter(&addrs, RECEIVED, None)?, now_s()));
        }
        procs::sleep(Duration::from_secs(self.s.wrk_seconds))?;
        for ((prefix, ..), (b0, w0)) in GROUPS.iter().zip(start) {
            let addrs = self.group_addrs(prefix, &[0]);
            let now = Self::counter(&addrs, RECEIVED, None)?;
            let seconds = calc(now_s() - w0).0;
            // Kept as shown, with two decimals.
            let rates: Vec<f64> = b0
                .iter()
                .zip(&now)
                .map(|(b, a)| format!("{:.2}", (a - b) / seconds).parse().unwrap_or(0.0))
                .collect();
            let text: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
            self.say(format!(
                "group {prefix}: idle datagrams per second at each supernode but the asker: {}",
                text.join(",")
            ));
            self.bg_rate.insert(prefix.to_string(), rates);
        }
        self.say_g32_fresh(t0)?;

        let mut series: HashMap<(String, bool), Series> = HashMap::new();
        for _ in 0..self.s.runs {
            for (prefix, ..) in GROUPS {
                for negative in [true, false] {
                    let mut s = series
                        .remove(&(prefix.to_string(), negative))
                        .unwrap_or_default();
                    let outcome = self.scale_run(prefix, negative, &mut s);
                    series.insert((prefix.to_string(), negative), s);
                    outcome?;
                }
            }
        }
        self.stop_group("g2");
        self.stop_group("g8");
        self.stop_group("n32");
        self.scale_rows(&series);
        Ok(())
    }

    fn scale_rows(&mut self, series: &HashMap<(String, bool), Series>) {
        let empty = Series::default();
        let get = |p: &str, neg: bool| series.get(&(p.to_string(), neg)).unwrap_or(&empty);
        let rps = |p: &str, neg: bool| median(&get(p, neg).rps);
        let text = |p: &str, neg: bool| {
            let s = get(p, neg);
            rps_text(median(&s.rps).unwrap_or(0.0), s.bad, s.idle)
        };
        let mean = |p: &str, neg: bool| median(&get(p, neg).mean);
        let most = |p: &str, neg: bool| median(&get(p, neg).most);

        // 15a and 15b: the 32-group against the 2-group, absent ids and the holder's files.
        let kinds = [
            ("15a", true, "negative search (1,000 absent ids)", "all 404"),
            (
                "15b",
                false,
                "positive remote search (1,000 files one other supernode holds)",
                "all correct",
            ),
        ];
        for (num, neg, what, correct) in kinds {
            if let (Some(g32), Some(g2)) = (rps("g32", neg), rps("g2", neg)) {
                let r = calc(g32 / g2);
                self.row(
                    num,
                    format!("{what}, 32 supernodes with summaries, wrk at one of them"),
                    format!("{}; 8: {}", text("g32", neg), text("g8", neg)),
                    format!("2 supernodes: {}", text("g2", neg)),
                    &r,
                    &format!(">= 0.5 x 2 supernodes, {correct}"),
                    verdict(r.0 >= 0.5 && get("g32", neg).bad + get("g2", neg).bad == 0),
                );
            }
        }
        if let (Some(g8), Some(nginx)) = (rps("g8", false), self.nginx_rps) {
            let r = calc(g8 / nginx);
            self.row(
                "2g",
                "supernode remote search in a group of 8 (1,000 files one other supernode holds), wrk",
                text("g8", false),
                format!("nginx {} req/s (row 2's)", grouped(nginx, 0)),
                &r,
                ">= 0.5 x nginx, all correct",
                verdict(r.0 >= 0.5 && get("g8", false).bad == 0),
            );
        }
        if let (Some(_), Some(_), Some(without)) =
            (most("g32", true), most("g32", false), mean("n32", true))
        {
            // The background subtracted can leave a hair below zero: none is none.
            let worst = [
                most("g32", true),
                most("g32", false),
                most("g8", true),
                most("g8", false),
            ]
            .into_iter()
            .flatten()
            .fold(0.0f64, f64::max);
            let z = |x: Option<f64>| per_search(x.unwrap_or(0.0));
            self.row(
                "15c",
                "datagrams a supernode whose summary cannot hold the id receives per search (32; background subtracted)",
                format!(
                    "absent ids: {} (most at one: {}); the files: {} (most {}); 8 supernodes: {}, {}",
                    z(mean("g32", true)),
                    z(most("g32", true)),
                    z(mean("g32", false)),
                    z(most("g32", false)),
                    z(mean("g8", true)),
                    z(mean("g8", false))
                ),
                format!(
                    "INDEX_DIGESTS=false: absent ids {}, the files {} per search",
                    grouped(without, 3),
                    grouped(mean("n32", false).unwrap_or(0.0), 3)
                ),
                calc(worst / without),
                "~0: <= 0.01 per search at every such supernode (8 and 32)",
                verdict(worst <= 0.01),
            );
        }
        if let (Some(gn), Some(gp), Some(nn), Some(np)) = (
            rps("g32", true),
            rps("g32", false),
            rps("n32", true),
            rps("n32", false),
        ) {
            let (r, r2) = (calc(gn / nn), calc(gp / np));
            self.row(
                "15d",
                "32 supernodes, summaries against none (INDEX_DIGESTS=false: every peer asked, answers by unicast)",
                format!(
                    "with: absent ids {} req/s, the files {} req/s",
                    grouped(gn, 0),
                    grouped(gp, 0)
                ),
                format!(
                    "without: absent ids {}, the files {}",
                    text("n32", true),
                    text("n32", false)
                ),
                format!("{r} (the files: {r2})"),
                ">= 1 x without, both",
                verdict(
                    r.0 >= 1.0
                        && r2.0 >= 1.0
                        && get("n32", true).bad + get("n32", false).bad == 0,
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_per_search() {
        // Two peers, 1,000 searches over 5 s; idle rates 1/s and 2/s.
        let got = per_search_at(
            &[100.0, 200.0],
            &[1105.0, 210.0],
            &[1.0, 2.0],
            5.0,
            1000,
            None,
        );
        assert_eq!(got, Some(Some((0.5, 1.0))));
        // The holder (the first peer) left out.
        let got = per_search_at(
            &[100.0, 200.0],
            &[1105.0, 210.0],
            &[1.0, 2.0],
            5.0,
            1000,
            Some(0),
        );
        assert_eq!(got, Some(Some((0.0, 0.0))));
        // Only the holder: nothing to say.
        assert_eq!(
            per_search_at(&[1.0], &[2.0], &[0.0], 5.0, 10, Some(0)),
            Some(None)
        );
        // A counter that could not be read, or no search.
        assert_eq!(per_search_at(&[-1.0], &[2.0], &[0.0], 5.0, 10, None), None);
        assert_eq!(per_search_at(&[1.0], &[2.0], &[0.0], 5.0, 0, None), None);
    }
}

//! Row 16: the index summary of 1,000,000 ids at one supernode of the 32-group (row 15's, or
//! started anew): its size per id, and what one more registration of ten ids costs it to tell
//! the 31 others.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::scale::{REQUESTS, now_s};
use crate::client::{self, RegisterArgs};
use crate::driver::{Bench, Env};
use crate::opts::Res;
use crate::procs;
use crate::scale::{self, Want};
use crate::stats::{calc, grouped, kv_num};
use crate::table::{Row, verdict};

impl Bench {
    /// 16: the summary of 1,000,000 ids (the registration of rows 6, 7 and 10, here at g32-2,
    /// in the 32-supernode group of row 15, started anew when 15 did not run): its size per id,
    /// and what one more registration of ten ids costs it to tell the 31 others.
    pub fn m16_summaries(&mut self) -> Res<()> {
        if !self.groups.contains_key("g32") {
            self.start_group("g32", &Env::new())?;
        }
        let addr = self.addr("g32-2")?;
        let others = self.group_addrs("g32", &[2]);
        self.say("registering 10 x 100,000 resources at g32-2");
        let outcome = client::register(&RegisterArgs::new(addr, 4, 10, 100_000, 27810));
        procs::check()?;
        let err_path = self.log_path("register-million-g32.err");
        let registered = match outcome {
            Ok(r) => {
                let _ = fs::write(&err_path, r.lines.join("\n") + "\n");
                r
            }
            Err(e) => {
                let _ = fs::write(&err_path, format!("{e}\n"));
                self.note(format!(
                    "16: the registration of 1,000,000 entries failed: {e}"
                ));
                return Err(e);
            }
        };
        self.say(format!("register: {registered}"));
        let whole = scale::digest(addr, None)?;
        self.say(format!("the whole summary: {whole}"));
        let (epoch, version) = (whole.epoch, whole.version);
        let scale::DigestKind::Full { hashes, bits } = whole.kind else {
            return Err("the whole summary is a delta".into());
        };
        // Its answer as it goes over the connection: head and body.
        let whole_http = http_size(&format!("http://{addr}/api/supernode/digest"));
        let per = calc(whole.bytes as f64 * 8.0 / 1_000_000.0).0;
        self.row(
            "16a",
            "index summary of 1,000,000 ids (GET /api/supernode/digest, whole), bits per id",
            format!(
                "{} bits/id ({} bytes: a filter of {} bits, {hashes} hashes)",
                grouped(per, 1),
                grouped(whole.bytes as f64, 0),
                grouped(bits as f64, 0)
            ),
            "the ids themselves: 256 bits/id",
            calc(per / 16.0),
            "<= 16 bits/id",
            verdict(per <= 16.0),
        );
        let row_16b = "bytes sent per registration (10 new ids), 32 supernodes, 1,000,000 ids";
        let target = "<= 0.01 x whole refetch";

        // Every other supernode holds this version, fresh; then one node with ten new ids.
        let held = format!("{epoch:x}/{version}");
        let want = Want {
            held: Some(&held),
            ..Want::default()
        };
        let ready = scale::ready(&others, &want, Duration::from_secs(60))?;
        self.say(format!(
            "the 31 others hold the summary of 1,000,000 ids: {ready}"
        ));
        if !ready.ok {
            let result = format!("ERROR (the 31 others never all held its summary: {ready})");
            self.rows.push(Row::error("16b", row_16b, target, &result));
            return Ok(());
        }
        // What it sends from now on: the answers to the digest route (their count, from its
        // metrics, times the size of the delta they fetch, head included, measured after) and
        // its announcements (their count from its metrics; each one as it came on the group,
        // from a listener there, timed so that only those in the window count).
        let next = format!("{epoch:x}/{}", version + 10);
        let listener: Vec<String> = [
            "announcements",
            "--group",
            "239.77.1.13",
            "--port",
            "27113",
            "--contains",
            &format!(";27;{addr}/"),
            "--ms",
            "30000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let ann_path = self.log_path("announcements.txt");
        self.spawn_listener(&listener, &ann_path)?;
        let outcome = self.one_registration(addr, &others, &next);
        self.stop(&["announcements"]);
        let (ready, took, (c0, c1), (a0, a1), (t0, t1)) = outcome?;
        let text = fs::read_to_string(&ann_path).unwrap_or_default();
        let seen: Vec<&str> = text.lines().filter(|l| l.starts_with("at=")).collect();
        let (mut ann_n, mut ann_bytes) = (0u64, 0u64);
        for line in &seen {
            let at = kv_num("at", line).unwrap_or(0.0);
            if at >= t0 && at <= t1 {
                ann_n += 1;
                ann_bytes += kv_num("bytes", line).unwrap_or(0.0) as u64;
            }
        }
        self.say(format!(
            "after the registration: {ready} ({} ms); digest requests {c0} -> {c1}, announcements sent {a0} -> {a1}, seen on the group in the window: {ann_n} ({ann_bytes} bytes)",
            grouped(took, 0)
        ));
        for line in &seen {
            self.say(format!("  on the group: {line}"));
        }
        let delta = scale::digest(addr, Some((epoch, version)));
        let delta_http = http_size(&format!(
            "http://{addr}/api/supernode/digest?epoch={epoch:x}&since={version}"
        ));
        let delta_text = match &delta {
            Ok(d) => d.to_string(),
            Err(e) => e.clone(),
        };
        let show = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        self.say(format!(
            "the delta they fetched: {delta_text} ({} bytes with the head); the whole: {} bytes with the head",
            show(delta_http),
            show(whole_http)
        ));
        let fetches = c1 - c0;
        let (true, Some(delta_http), Some(whole_http), true) =
            (ready.ok, delta_http, whole_http, fetches >= 0.0)
        else {
            self.rows
                .push(Row::error("16b", row_16b, target, "ERROR (see the log)"));
            return Ok(());
        };
        let counted = (a1 - a0) as u64;
        if ann_n != counted {
            self.note(format!(
                "16b: {counted} announcements counted by the supernode, {ann_n} seen on the group"
            ));
        }
        let sent = calc(fetches * delta_http as f64 + ann_bytes as f64).0;
        let reference = calc(31.0 * whole_http as f64).0;
        let r = calc(sent / reference);
        self.row(
            "16b",
            "bytes a supernode of 1,000,000 ids sends when a node registers 10 new ids, 32 supernodes",
            format!(
                "{} bytes: {fetches} delta fetches x {} bytes (head included) + {ann_n} announcement(s), {ann_bytes} bytes; all 31 fresh after {} ms",
                grouped(sent, 0),
                grouped(delta_http as f64, 0),
                grouped(took, 0)
            ),
            format!(
                "31 whole refetches x {} bytes = {} bytes",
                grouped(whole_http as f64, 0),
                grouped(reference, 0)
            ),
            &r,
            target,
            verdict(r.0 <= 0.01 && fetches <= 31.0),
        );
        Ok(())
    }

    /// The `announcements` listener, in the background, its output to `out`.
    fn spawn_listener(&mut self, args: &[String], out: &Path) -> Res<()> {
        let file = fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.tool);
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        procs::clean_env(&mut cmd);
        procs::contain(&mut cmd, None);
        self.procs.spawn("announcements", &mut cmd)?;
        procs::sleep(Duration::from_millis(300))
    }

    /// Ten new ids registered at `addr`, and the wait until the others hold version `next`:
    /// (their readiness, how long in ms, digest requests before and after, announcements sent
    /// before and after, the window's start and end in Unix seconds).
    #[allow(clippy::type_complexity)]
    fn one_registration(
        &mut self,
        addr: SocketAddr,
        others: &[SocketAddr],
        next: &str,
    ) -> Res<(scale::Ready, f64, (f64, f64), (f64, f64), (f64, f64))> {
        let digest_route = Some("route=\"/api/supernode/digest\"");
        let digest_kind = Some("kind=\"digest\"");
        let sum = |v: Vec<f64>| v.iter().sum::<f64>();
        let t0 = now_s();
        let c0 = sum(Self::counter(&[addr], REQUESTS, digest_route)?);
        let a0 = sum(Self::counter(
            &[addr],
            "superpeer_datagrams_sent_total",
            digest_kind,
        )?);
        let registered = client::register(&RegisterArgs::new(addr, 16, 1, 10, 27860));
        let want = Want {
            held: Some(next),
            ..Want::default()
        };
        let ready = scale::ready(others, &want, Duration::from_secs(20))?;
        let took = calc((now_s() - t0) * 1000.0).0;
        let c1 = sum(Self::counter(&[addr], REQUESTS, digest_route)?);
        let a1 = sum(Self::counter(
            &[addr],
            "superpeer_datagrams_sent_total",
            digest_kind,
        )?);
        let t1 = now_s();
        procs::sleep(Duration::from_millis(200))?;
        registered.map_err(|e| format!("the registration of 10 ids: {e}"))?;
        Ok((ready, took, (c0, c1), (a0, a1), (t0, t1)))
    }
}

/// The size of an answer as it goes over the connection, head and body (curl's
/// `size_header` + `size_download`).
fn http_size(url: &str) -> Option<u64> {
    let text = crate::util::curl_write_out(url, 30, &[], None, "%{size_header} %{size_download}")?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    Some(parts.next()?? + parts.next()??)
}

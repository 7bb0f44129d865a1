//! Rows 17a and 17b: a 256 MiB file held by three nodes, downloaded by `superpeer get` from all
//! of them at once. 17a on a LAN of network namespaces whose holders' uplinks are each limited
//! (tc), against one holder (curl) and beside aria2c with the Metalink document; 17b on
//! loopback without limits, against `superpeer get` of a file only one node holds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use superpeer_lan::{Lan, is_root};

use super::ratio;
use crate::driver::{Bench, HOST};
use crate::local;
use crate::opts::Res;
use crate::procs;
use crate::setup::node_env;
use crate::stats::{calc, grouped, median};
use crate::table::verdict;

/// The file's size.
const SIZE: usize = 256 << 20;
/// Each holder's uplink in row 17a.
const RATE_MBIT: u64 = 400;
/// The nodes' port, on loopback (three) and in each namespace.
const NODE_PORT: u16 = 27060;
/// The supernode's port in the namespaces.
const SUPER_PORT: u16 = 27070;

impl Bench {
    pub fn m17_swarm(&mut self) -> Res<()> {
        let dir = self.s.data.join("swarm");
        let shared = self.one_file(&dir.join("shared"), 17)?;
        let alone = self.one_file(&dir.join("alone"), 18)?;
        let outcome = self.swarm_loopback(&dir, &shared, &alone);
        self.stop(&["sw1", "sw2", "sw3"]);
        outcome?;
        if !is_root() {
            self.note("row 17a needs root (network namespaces and tc): not run");
            return Ok(());
        }
        for tool in ["tc", "aria2c"] {
            if crate::driver::which(tool).is_none() {
                self.note(format!("row 17a needs {tool}: not run"));
                return Ok(());
            }
        }
        self.swarm_limited(&dir, &shared)
    }

    /// A file of SIZE bytes of its own (`seed`) in `dir`, made once.
    fn one_file(&mut self, dir: &Path, seed: u64) -> Res<PathBuf> {
        self.make_files(dir, 1, SIZE, seed)?;
        fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "bin"))
            .ok_or(format!("no file in {}", dir.display()))
    }

    /// Folders `holders/1..=n` under `dir`, each holding a hard link to `file`.
    fn holder_folders(&self, dir: &Path, file: &Path, n: usize) -> Res<Vec<PathBuf>> {
        (1..=n)
            .map(|h| {
                let folder = dir.join(format!("holder{h}"));
                let _ = fs::remove_dir_all(&folder);
                fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
                let link = folder.join("file.bin");
                fs::hard_link(file, &link).map_err(|e| format!("{}: {e}", link.display()))?;
                Ok(folder)
            })
            .collect()
    }

    /// `superpeer get` of `id` through `via` (in namespace `ns` when given): MB/s, or None.
    fn get_speed(&mut self, ns: Option<&str>, id: &str, via: &str, out: &Path) -> Option<f64> {
        let _ = fs::remove_file(out);
        let mut argv: Vec<String> = match ns {
            Some(ns) => ["ip", "netns", "exec", ns].map(String::from).to_vec(),
            None => Vec::new(),
        };
        argv.push(self.bin.to_string_lossy().into_owned());
        argv.extend(["get", id, "--via", via, "--force", "-o"].map(String::from));
        argv.push(out.to_string_lossy().into_owned());
        let took = local::timecmd(&argv, Duration::from_secs(120));
        let right = fs::metadata(out).is_ok_and(|m| m.len() == SIZE as u64);
        let _ = fs::remove_file(out);
        match took {
            Ok(d) if right => Some(SIZE as f64 / d.as_secs_f64() / 1e6),
            Ok(_) => {
                self.say("superpeer get: no file of the right size");
                None
            }
            Err(e) => {
                self.say(format!("superpeer get: {e}"));
                None
            }
        }
    }

    /// Row 17b: three nodes on loopback holding `shared`, the first also `alone`.
    fn swarm_loopback(&mut self, dir: &Path, shared: &Path, alone: &Path) -> Res<()> {
        let hub = self.start_hub()?;
        let folders = self.holder_folders(&dir.join("loopback"), shared, 3)?;
        let also = folders[0].join("alone.bin");
        fs::hard_link(alone, &also).map_err(|e| format!("{}: {e}", also.display()))?;
        let bin = self.bin.clone();
        for (i, folder) in folders.iter().enumerate() {
            let name = format!("sw{}", i + 1);
            self.start(
                &name,
                "node",
                &bin,
                NODE_PORT + i as u16,
                &node_env(hub, folder),
            )?;
        }
        for name in ["sw1", "sw2", "sw3"] {
            if !self.wait_log(name, &["registered"], Duration::from_secs(120))? {
                return Err(format!("node {name} did not register"));
            }
        }
        let (shared_id, alone_id) = (sha256_of(shared)?, sha256_of(alone)?);
        let via = format!("http://{HOST}:{hub}");
        let out = dir.join("got.bin");
        let (mut swarm, mut one) = (Vec::new(), Vec::new());
        // Each file's pieces hashed by their holders before the first timed run.
        let _ = self.get_speed(None, &shared_id, &via, &out);
        let _ = self.get_speed(None, &alone_id, &via, &out);
        for _ in 0..self.s.runs.max(3) {
            procs::check()?;
            let s = self.get_speed(None, &shared_id, &via, &out);
            let o = self.get_speed(None, &alone_id, &via, &out);
            self.say(format!(
                "loopback: 3 holders {} MB/s, 1 holder {} MB/s",
                calc(s.unwrap_or(0.0)),
                calc(o.unwrap_or(0.0))
            ));
            swarm.extend(s);
            one.extend(o);
        }
        let (Some(s), Some(o)) = (median(&swarm), median(&one)) else {
            return Err("no download of row 17b succeeded".into());
        };
        let r = ratio(s, o);
        self.row(
            "17b",
            "download of a 256 MiB file that 3 nodes hold, superpeer get, loopback without limits",
            format!("{} MB/s", grouped(s, 0)),
            format!("a file only one node holds: {} MB/s", grouped(o, 0)),
            &r,
            ">= 0.9 x one holder",
            verdict(r.0 >= 0.9),
        );
        Ok(())
    }

    /// Row 17a: a supernode, three holders whose uplinks are limited to RATE_MBIT, and a
    /// client, each a host of a LAN of namespaces (deleted once they are stopped).
    fn swarm_limited(&mut self, dir: &Path, shared: &Path) -> Res<()> {
        let lan = Lan::owned()
            .sweep_stops(self.bin.clone())
            .one_site(5)
            .map_err(|e| format!("the LAN: {e}"))?;
        let outcome = self.swarm_on(&lan, dir, shared);
        self.stop(&["ns-s", "ns-1", "ns-2", "ns-3"]);
        drop(lan);
        outcome
    }

    fn swarm_on(&mut self, lan: &Lan, dir: &Path, shared: &Path) -> Res<()> {
        let folders = self.holder_folders(&dir.join("lan"), shared, 3)?;
        let supernode = format!("{}:{SUPER_PORT}", Lan::ip(1));
        let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let on = |h: usize| Lan::ip(h).to_string();
        self.start_in(
            lan.ns(1),
            "ns-s",
            "supernode",
            &env(&[
                ("LHOST", on(1)),
                ("LPORT", SUPER_PORT.to_string()),
                ("MULTICAST_LOCATION", "239.77.1.17:27117".into()),
                ("MULTICAST_GROUP_SIZE", "1".into()),
                ("MULTICAST_INTERFACE", on(1)),
                ("MULTICAST_TTL", "1".into()),
            ]),
        )?;
        for (i, folder) in folders.iter().enumerate() {
            let h = i + 2;
            let rate = format!("{RATE_MBIT}mbit");
            let tbf = [
                "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", &rate, "burst",
                "256kb", "latency", "100ms",
            ];
            lan.exec(h, &tbf, None)
                .map_err(|e| format!("tc on host {h}: {e}"))?;
            let node = env(&[
                ("LHOST", on(h)),
                ("LPORT", NODE_PORT.to_string()),
                (
                    "SUPERNODE_ENDPOINT",
                    format!("http://{supernode}/api/supernode"),
                ),
                ("RESOURCE_PATH", folder.to_string_lossy().into_owned()),
            ]);
            self.start_in(lan.ns(h), &format!("ns-{}", i + 1), "node", &node)?;
        }
        for name in ["ns-1", "ns-2", "ns-3"] {
            if !self.wait_log(name, &["registered"], Duration::from_secs(120))? {
                return Err(format!("node {name} did not register"));
            }
        }
        let id = sha256_of(shared)?;
        let client = lan.ns(5).to_string();
        let via = format!("http://{supernode}");
        let one_url = format!(
            "http://{}:{NODE_PORT}/api/node/resources/{id}/content",
            Lan::ip(2)
        );
        let metalink = format!("{via}/api/supernode/search/{id}/metalink");
        let out = dir.join("got.bin");
        let aria_dir = dir.join("aria2");
        let (mut swarm, mut one, mut aria) = (Vec::new(), Vec::new(), Vec::new());
        let _ = self.get_speed(Some(&client), &id, &via, &out);
        for _ in 0..self.s.runs.max(3) {
            procs::check()?;
            let s = self.get_speed(Some(&client), &id, &via, &out);
            let o = curl_speed_in(&client, &one_url);
            let a = aria2_speed_in(&client, &metalink, &aria_dir);
            self.say(format!(
                "{RATE_MBIT} Mbit/s uplinks: get {} MB/s, one holder (curl) {} MB/s, aria2c {} MB/s",
                calc(s.unwrap_or(0.0)),
                calc(o.unwrap_or(0.0)),
                calc(a.unwrap_or(0.0))
            ));
            swarm.extend(s);
            one.extend(o);
            aria.extend(a);
        }
        let (Some(s), Some(o)) = (median(&swarm), median(&one)) else {
            return Err("no download of row 17a succeeded".into());
        };
        let aria_text = median(&aria).map_or("aria2c failed".into(), |a| {
            format!(
                "aria2c with the Metalink {} MB/s ({} x one)",
                grouped(a, 1),
                ratio(a, o)
            )
        });
        let r = ratio(s, o);
        self.row(
            "17a",
            format!(
                "download of a 256 MiB file from 3 nodes whose uplinks are each limited to {RATE_MBIT} Mbit/s (tc, namespaces), superpeer get"
            ),
            format!("{} MB/s; {aria_text}", grouped(s, 1)),
            format!("one holder (curl) {} MB/s", grouped(o, 1)),
            &r,
            ">= 2.5 x one holder",
            verdict(r.0 >= 2.5),
        );
        Ok(())
    }

    /// Starts our binary as `role` in namespace `ns` with `env`, logging to NAME.log.
    fn start_in(&mut self, ns: &str, name: &str, role: &str, env: &[(String, String)]) -> Res<()> {
        let log_path = self.log_path(&format!("{name}.log"));
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.bin)
            .arg(role)
            .current_dir(&self.s.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        procs::clean_env(&mut cmd).envs(env.iter().cloned());
        procs::contain(&mut cmd, None);
        self.procs.spawn(name, &mut cmd)?;
        if !self.wait_log(name, &["listening"], Duration::from_secs(20))? {
            return Err(format!("{name} did not start (see {})", log_path.display()));
        }
        Ok(())
    }
}

/// curl's speed (MB/s) for `url`, run in namespace `ns`.
fn curl_speed_in(ns: &str, url: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{speed_download}", url])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (code, speed) = text.trim().split_once(' ')?;
    (code == "200").then(|| speed.parse::<f64>().ok().map(|s| s / 1e6))?
}

/// aria2c's speed (MB/s) for the Metalink document at `url`, run in namespace `ns`, into
/// `dir` (emptied after).
fn aria2_speed_in(ns: &str, url: &str, dir: &Path) -> Option<f64> {
    let _ = fs::remove_dir_all(dir);
    let argv: Vec<String> = [
        "ip",
        "netns",
        "exec",
        ns,
        "aria2c",
        "--no-conf",
        "--quiet",
        "--follow-metalink=mem",
        "--allow-overwrite=true",
        "--file-allocation=none",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("--dir={}", dir.display()), url.to_string()])
    .collect();
    let took = local::timecmd(&argv, Duration::from_secs(120)).ok();
    let size = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let _ = fs::remove_dir_all(dir);
    let took = took?;
    (size == SIZE as u64).then(|| SIZE as f64 / took.as_secs_f64() / 1e6)
}

/// The SHA-256 of a file, in hex (its id).
fn sha256_of(path: &Path) -> Res<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

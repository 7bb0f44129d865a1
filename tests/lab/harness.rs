//! The lab of the seed's demonstration and fault drills (what `scripts/lab.sh test` did): the
//! seed's three hosts as network namespaces on a bridge of their own ([`Lan`]), the instances
//! started in them from the test's binary with the seed's addresses and ports, and a client
//! that asks from inside a host. Every drill makes a lab of its own and drops it when it ends,
//! even when it fails: the processes first (killed by PID), then the namespaces.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::netns::{self, Lan};
use crate::support::{Folder, Launch, Proc, sha256, wait_until};

/// The search time-out of every supernode of the drills (the default).
pub const SEARCH_TIMEOUT: Duration = Duration::from_millis(2000);
/// A search "ends in time" when it answers within the time-out plus this.
pub const SEARCH_MARGIN: Duration = Duration::from_millis(500);
/// The client gives up on an answer after this: a hang detector, well above the time-out.
const CLIENT_LIMIT: Duration = Duration::from_secs(8);
/// Drills 2 to 5: liveness every 2 s, removal at the 2nd miss, health time-out 1 s, node
/// heartbeat 1 s (drill 1 keeps the defaults: 5 s, 2 misses, 2 s, 5 s).
pub const FAST_LIVENESS_MS: u64 = 2000;
pub const LIVENESS_MISSES: u64 = 2;
pub const FAST_HEALTH_TIMEOUT_MS: u64 = 1000;
pub const FAST_HEARTBEAT_MS: u64 = 1000;

/// Without a cluster key (the seed's way), or with one fresh key for every instance.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Keying {
    Open,
    Keyed,
}

impl Keying {
    pub fn label(self) -> &'static str {
        match self {
            Keying::Open => "open lab",
            Keying::Keyed => "keyed lab",
        }
    }
}

// --- what the drills print ------------------------------------------------------------------

/// Prints `line` where `make lab-test` shows it: straight to standard output, past the test
/// harness's capture (which keeps the instances' logs, and shows them for a failed test only).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A detail under a drill's result line.
pub fn note(line: &str) {
    say(&format!("      {line}"));
}

/// The drill's title, before its lab is made.
pub fn header(title: &str) {
    say(&format!("\n== {title}"));
}

/// One `PASS`/`FAIL` line per result, all printed; then the test fails with every failed line.
pub fn verdicts(results: &[(bool, String)]) {
    for (ok, line) in results {
        say(&format!("{} {line}", if *ok { "PASS" } else { "FAIL" }));
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, line)| line.as_str())
        .collect();
    assert!(failed.is_empty(), "FAIL {}", failed.join("\nFAIL "));
}

pub fn verdict(ok: bool, line: String) {
    verdicts(&[(ok, line)]);
}

/// Seconds, two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Seconds, three decimals (for searches, whose time-out is the figure to compare with).
pub fn secs3(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub fn secs_or_never(d: Option<Duration>) -> String {
    d.map_or("never".into(), secs)
}

// --- scheduler stalls -------------------------------------------------------------------------

const TICK: Duration = Duration::from_millis(50);
/// A tick this much later than asked counts as a stall.
const STALL_MIN: Duration = Duration::from_millis(250);

/// A busy (or paused) machine sometimes runs nothing for a while. A thread ticks every 50 ms
/// and records each tick that comes more than 250 ms late as a stall; a drill adds the stall
/// time inside a window to that window's upper bound, and says so in its line, so that the
/// program is not blamed for time during which nothing ran.
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    stalls: Arc<Mutex<Vec<(Instant, Instant)>>>,
    thread: Option<JoinHandle<()>>,
}

impl StallWatch {
    pub fn start() -> StallWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (stop, stalls) = (stop.clone(), stalls.clone());
            move || {
                let mut before = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    let now = Instant::now();
                    if now - before > TICK + STALL_MIN {
                        stalls.lock().unwrap().push((before + TICK, now));
                    }
                    before = now;
                }
            }
        });
        StallWatch {
            stop,
            stalls,
            thread: Some(thread),
        }
    }

    /// How long the machine stood still between `from` and `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Duration {
        self.stalls
            .lock()
            .unwrap()
            .iter()
            .map(|&(start, end)| end.min(to).saturating_duration_since(start.max(from)))
            .sum()
    }

    /// `" (the machine stalled 1.20 s meanwhile: bound widened by it)"` when it stalled
    /// noticeably between `from` and `to`, else nothing.
    pub fn note(&self, from: Instant, to: Instant) -> String {
        let stalled = self.between(from, to);
        if stalled >= Duration::from_millis(300) {
            format!(
                " (the machine stalled {} meanwhile: bound widened by it)",
                secs(stalled)
            )
        } else {
            String::new()
        }
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// --- the client ---------------------------------------------------------------------------------

/// One HTTP answer, or none (`status` 0: refused, reset or no answer within 8 s).
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
    pub started: Instant,
    pub took: Duration,
}

impl Answer {
    pub fn end(&self) -> Instant {
        self.started + self.took
    }

    /// `HTTP 404`, or `no answer`.
    pub fn code(&self) -> String {
        if self.status == 0 {
            "no answer".into()
        } else {
            format!("HTTP {}", self.status)
        }
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A search answer's holders: `location` first, then the rest of `locations` (none unless
    /// 200).
    pub fn search_locations(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.status != 200 {
            return out;
        }
        let Some(doc) = self.json() else {
            return out;
        };
        let file = &doc["data"]["file"];
        let all = file["locations"].as_array().cloned().unwrap_or_default();
        for location in std::iter::once(&file["location"]).chain(all.iter()) {
            if let Some(location) = location.as_str()
                && !out.iter().any(|l| l == location)
            {
                out.push(location.to_string());
            }
        }
        out
    }

    /// A name search answer's holders of `id` (none unless 200).
    pub fn name_locations(&self, id: &str) -> Vec<String> {
        let Some(doc) = self.json().filter(|_| self.status == 200) else {
            return Vec::new();
        };
        let found = doc["data"].as_array().cloned().unwrap_or_default();
        found
            .iter()
            .filter(|entry| entry["id"] == id)
            .flat_map(|entry| entry["file"]["locations"].as_array().cloned())
            .flatten()
            .filter_map(|location| location.as_str().map(String::from))
            .collect()
    }

    /// An `alive` answer's locations (`None` unless 200 with a list).
    pub fn alive_locations(&self) -> Option<Vec<String>> {
        if self.status != 200 {
            return None;
        }
        let doc = self.json()?;
        Some(
            doc["data"]
                .as_array()?
                .iter()
                .filter_map(|n| n["location"].as_str().map(String::from))
                .collect(),
        )
    }

    /// A node's 302 answer's `data.info.location`.
    pub fn info_location(&self) -> Option<String> {
        self.json()?["data"]["info"]["location"]
            .as_str()
            .map(String::from)
    }
}

/// `GET url` from the calling thread's network namespace; redirects are not followed.
pub fn fetch(url: &str) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CLIENT_LIMIT))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    let started = Instant::now();
    let result = agent.get(url).call().and_then(|mut response| {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 26)
            .read_to_vec()?;
        Ok((response.status().as_u16(), location, body))
    });
    let took = started.elapsed();
    let (status, location, body) = result.unwrap_or((0, None, Vec::new()));
    Answer {
        status,
        location,
        body,
        started,
        took,
    }
}

/// `url`'s content as `curl -L` gets it: redirects followed (5 at most), `None` unless the
/// last answer is 200.
pub fn download(url: &str) -> Option<Vec<u8>> {
    let mut url = url.to_string();
    for _ in 0..=5 {
        let answer = fetch(&url);
        match (answer.status, answer.location) {
            (200, _) => return Some(answer.body),
            (301 | 302 | 303 | 307 | 308, Some(next)) => url = next,
            _ => return None,
        }
    }
    None
}

/// Whether `tool` is an executable on the PATH (or in /usr/sbin, /sbin).
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

// --- the resources ------------------------------------------------------------------------------

/// The seed's files (`resources/node1..3`), by the id only that node holds, in file-name
/// order; and a valid id nobody holds.
pub struct Ids {
    pub node1: Vec<String>,
    pub node2: Vec<String>,
    pub node3: Vec<String>,
    pub nobody: String,
    /// Every file's name, by id.
    pub names: BTreeMap<String, String>,
}

pub fn resources(node: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("resources")
        .join(node)
}

/// (file name, id) of every file in `dir`, by name.
fn ids_in(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| {
            let content = std::fs::read(entry.path()).unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                sha256(&content),
            )
        })
        .collect();
    files.sort();
    files
}

impl Ids {
    fn load() -> Ids {
        let root = resources("");
        let mut by_folder: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut names = BTreeMap::new();
        for entry in std::fs::read_dir(&root).unwrap().filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let folder = entry.file_name().to_string_lossy().into_owned();
                let files = ids_in(&entry.path());
                by_folder.insert(folder, files.iter().map(|(_, id)| id.clone()).collect());
                names.extend(files.into_iter().map(|(name, id)| (id, name)));
            }
        }
        let only = |node: &str| -> Vec<String> {
            ids_in(&resources(node))
                .into_iter()
                .map(|(_, id)| id)
                .filter(|id| {
                    by_folder
                        .iter()
                        .all(|(folder, ids)| folder == node || !ids.contains(id))
                })
                .collect()
        };
        let ids = Ids {
            node1: only("node1"),
            node2: only("node2"),
            node3: only("node3"),
            // Not the all-zero id, which the supernodes use as a ping.
            nobody: sha256(b"superpeer lab: nobody holds this"),
            names,
        };
        assert!(
            !ids.node1.is_empty() && !ids.node2.is_empty() && ids.node3.len() >= 2,
            "resources/node1..3 need files of their own (node3 at least two)"
        );
        ids
    }
}

// --- the lab ------------------------------------------------------------------------------------

/// How to (re)start one instance.
struct Spec {
    host: usize,
    role: &'static str,
    port: u16,
    env: Vec<(String, String)>,
}

pub struct Lab {
    pub ids: Ids,
    pub watch: StallWatch,
    /// The cluster key file (keyed labs), mode 600 as the binary wants it.
    key: Option<Folder>,
    specs: BTreeMap<String, Spec>,
    procs: BTreeMap<String, Proc>,
    /// Last: fields are dropped in order, and the processes must stop before their namespaces
    /// go.
    lan: Lan,
}

/// A fresh cluster key (64 hex digits from /dev/urandom), in a file only its owner reads.
fn fresh_key() -> Folder {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut bytes,
    )
    .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let folder = Folder::with(&[("cluster.key", hex.as_bytes())]);
    std::fs::set_permissions(
        folder.path.join("cluster.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    folder
}

/// The group of an IPv6-only lab's supernodes: link-local scope, transient.
pub const GROUP6: &str = "[ff12::230]:4321";

impl Lab {
    /// `hosts` hosts on a LAN of their own, nothing running yet.
    pub fn new(keying: Keying, hosts: usize) -> Lab {
        Lab::with_lan(keying, || Lan::new(hosts))
    }

    /// Two sites of two hosts each (1-2 on site A, 11-12 on site B) joined by a router that
    /// forwards unicast and not multicast ([`Lan::two_sites`]), nothing running yet.
    pub fn two_sites(keying: Keying) -> Lab {
        Lab::with_lan(keying, || Lan::two_sites(2))
    }

    /// [`Lab::two_sites`] with IPv6 addresses alone (`fd00:35::/64` and `fd00:36::/64`).
    pub fn two_sites_ipv6(keying: Keying) -> Lab {
        Lab::with_lan(keying, || Lan::two_sites_ipv6(2))
    }

    fn with_lan(keying: Keying, lan: impl FnOnce() -> Lan) -> Lab {
        assert!(
            netns::is_root(),
            "the lab drills make network namespaces: run them as root (make lab-test)"
        );
        let ids = Ids::load();
        let key = (keying == Keying::Keyed).then(fresh_key);
        Lab {
            ids,
            watch: StallWatch::start(),
            key,
            specs: BTreeMap::new(),
            procs: BTreeMap::new(),
            lan: lan(),
        }
    }

    /// `http://192.168.35.10:5000/api/supernode` (`http://[fd00:35::a]:5000/...` on IPv6):
    /// host-1's supernode on `port`.
    pub fn supernode_api(&self, port: u16) -> String {
        let at = std::net::SocketAddr::new(self.lan.addr(1), port);
        format!("http://{at}/api/supernode")
    }

    /// Limits what host `h` sends to `mbit` Mbit/s (tc).
    pub fn limit_uplink(&self, h: usize, mbit: u32) {
        self.lan.limit_uplink(h, mbit);
    }

    /// Cuts the router off site A, or connects it again (two-site labs).
    pub fn set_router(&self, up: bool) {
        self.lan.set_router(up);
    }

    /// The seed's topology with default timings (GROUP_SIZE=2): host-1 supernode1 :5000 and
    /// supernode2 :5001; host-2 node1 :8000 -> supernode1; host-3 node2 :8000 -> supernode1,
    /// node3 :8001 -> supernode2.
    pub fn seed(keying: Keying) -> Lab {
        Lab::seed_on(keying, 3, &[("MULTICAST_GROUP_SIZE", "2")])
    }

    /// The seed's topology on a LAN of `hosts` hosts (4 and up are free for the drill), the
    /// supernodes started with `env` over the defaults.
    pub fn seed_on(keying: Keying, hosts: usize, env: &[(&str, &str)]) -> Lab {
        Lab::new(keying, hosts).seed_in(env)
    }

    /// [`Lab::seed`] on an IPv6-only LAN of 4 hosts (no IPv4 address anywhere), the
    /// supernodes in the group [`GROUP6`].
    pub fn seed_ipv6(keying: Keying) -> Lab {
        Lab::seed_ipv6_on(keying, 4, &[("MULTICAST_GROUP_SIZE", "2")])
    }

    /// [`Lab::seed_on`] on an IPv6-only LAN.
    pub fn seed_ipv6_on(keying: Keying, hosts: usize, env: &[(&str, &str)]) -> Lab {
        Lab::with_lan(keying, || Lan::ipv6_only(hosts)).seed_in(env)
    }

    /// Host `h`'s address, of the LAN's family.
    pub fn addr(&self, h: usize) -> std::net::IpAddr {
        self.lan.addr(h)
    }

    /// Whether the LAN has IPv6 addresses alone.
    pub fn is_ipv6(&self) -> bool {
        self.lan.is_ipv6_only()
    }

    fn seed_in(self, env: &[(&str, &str)]) -> Lab {
        let mut lab = self;
        let size = env;
        lab.start("supernode1", 1, "supernode", 5000, size);
        lab.start("supernode2", 1, "supernode", 5001, size);
        lab.wait_supernode("supernode1");
        lab.wait_supernode("supernode2");
        lab.check_keyed();
        lab.start_nodes(&[]);
        lab.wait_group("supernode1", &lab.ids.node3[0], &lab.loc("node3"));
        lab.wait_group("supernode2", &lab.ids.node1[0], &lab.loc("node1"));
        lab
    }

    /// Drills 2 to 5: supernode3 on host-3 (:5002) joins, GROUP_SIZE=3 everywhere, short
    /// timings. node1 (host-2) and node2 (host-3) register with supernode1; node3 (host-3)
    /// keeps the seed's supernode2 (host-1), so that cutting host-3 off separates node3 from
    /// its supernode and restarting supernode2 leaves node3 to register again by itself.
    /// supernode3 indexes nobody: it is the member that goes silent when host-3 is cut off.
    pub fn partition(keying: Keying) -> Lab {
        let mut lab = Lab::new(keying, 3);
        let (liveness, misses, health, timeout) = (
            FAST_LIVENESS_MS.to_string(),
            LIVENESS_MISSES.to_string(),
            FAST_HEALTH_TIMEOUT_MS.to_string(),
            SEARCH_TIMEOUT.as_millis().to_string(),
        );
        let fast = [
            ("MULTICAST_GROUP_SIZE", "3"),
            ("LIVENESS_PERIOD_MS", liveness.as_str()),
            ("LIVENESS_MISSES", misses.as_str()),
            ("HEALTH_TIMEOUT_MS", health.as_str()),
            ("SEARCH_TIMEOUT_MS", timeout.as_str()),
        ];
        lab.start("supernode1", 1, "supernode", 5000, &fast);
        lab.start("supernode2", 1, "supernode", 5001, &fast);
        lab.start("supernode3", 3, "supernode", 5002, &fast);
        for supernode in ["supernode1", "supernode2", "supernode3"] {
            lab.wait_supernode(supernode);
        }
        lab.check_keyed();
        let heartbeat = FAST_HEARTBEAT_MS.to_string();
        lab.start_nodes(&[
            ("HEARTBEAT_MS", heartbeat.as_str()),
            ("REGISTER_RETRY_MAX_MS", "1000"),
            ("SUPERNODE_TIMEOUT_MS", "1000"),
        ]);
        lab.wait_group("supernode1", &lab.ids.node3[0], &lab.loc("node3"));
        lab.wait_group("supernode3", &lab.ids.node2[0], &lab.loc("node2"));
        lab.wait_group("supernode2", &lab.ids.node1[0], &lab.loc("node1"));
        lab
    }

    /// In a keyed lab, that the key is in force: supernode1 refuses an unsigned sweep
    /// (`GET /api/supernode/xxx`, which an open lab would run: so asked in keyed labs only).
    pub fn check_keyed(&self) {
        if self.key.is_none() {
            return;
        }
        let sweep = self.get(1, &format!("{}/api/supernode/xxx", self.url("supernode1")));
        assert_eq!(
            sweep.status, 401,
            "keyed lab: supernode1 should refuse an unsigned sweep"
        );
        note("keyed lab: supernode1 refuses an unsigned request (HTTP 401)");
    }

    /// The seed's three nodes, with `extra` settings, each waited for at its supernode.
    fn start_nodes(&mut self, extra: &[(&str, &str)]) {
        let (sn1, sn2) = (self.supernode_api(5000), self.supernode_api(5001));
        for (name, host, port, api) in [
            ("node1", 2, 8000, &sn1),
            ("node2", 3, 8000, &sn1),
            ("node3", 3, 8001, &sn2),
        ] {
            let folder = resources(name);
            let mut env = vec![
                ("SUPERNODE_ENDPOINT", api.as_str()),
                ("RESOURCE_PATH", folder.to_str().unwrap()),
                ("NODE_NAME", name),
            ];
            env.extend_from_slice(extra);
            self.start(name, host, "node", port, &env);
        }
        self.wait_registered("node1", "supernode1");
        self.wait_registered("node2", "supernode1");
        self.wait_registered("node3", "supernode2");
    }

    /// Records how to run instance `name` (on `host`'s address and `port`, with `env` over
    /// the binary's defaults) and starts it.
    pub fn start(
        &mut self,
        name: &str,
        host: usize,
        role: &'static str,
        port: u16,
        env: &[(&str, &str)],
    ) {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.specs.insert(
            name.into(),
            Spec {
                host,
                role,
                port,
                env,
            },
        );
        self.launch(name);
    }

    /// (Re)starts recorded instance `name` and waits until it listens.
    pub fn launch(&mut self, name: &str) {
        let spec = &self.specs[name];
        let mut launch = Launch::instance(name, spec.role)
            .netns(self.lan.ns(spec.host))
            .env("LHOST", &self.lan.addr(spec.host).to_string())
            .env("LPORT", &spec.port.to_string())
            .env("LOG_LEVEL", "info");
        if spec.role == "supernode" {
            // The default, said out loud: the group's datagrams never leave the LAN.
            launch = launch.env("MULTICAST_TTL", "1");
            if self.lan.is_ipv6_only() {
                launch = launch.env("MULTICAST_LOCATION", GROUP6);
            }
        }
        if let Some(key) = &self.key {
            launch = launch.env(
                "CLUSTER_KEY_FILE",
                key.path.join("cluster.key").to_str().unwrap(),
            );
        }
        for (key, value) in &spec.env {
            launch = launch.env(key, value);
        }
        let proc = launch.start();
        self.procs.insert(name.into(), proc);
    }

    /// Kills instance `name` (SIGKILL, by its PID) and waits until it is gone.
    pub fn kill(&mut self, name: &str) {
        self.procs
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
            .kill();
    }

    /// The instances that no longer run (they crashed or exited by themselves).
    pub fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|(name, proc)| (!proc.is_running()).then(|| name.clone()))
            .collect()
    }

    pub fn proc(&self, name: &str) -> &Proc {
        &self.procs[name]
    }

    pub fn host_of(&self, name: &str) -> usize {
        self.specs[name].host
    }

    /// `192.168.35.12:8001` (`[fd00:35::c]:8001` on IPv6): where `name` listens (running or
    /// not).
    pub fn loc(&self, name: &str) -> String {
        let spec = &self.specs[name];
        std::net::SocketAddr::new(self.lan.addr(spec.host), spec.port).to_string()
    }

    /// Runs `command` in host `h`'s namespace: its standard output.
    pub fn exec(&self, h: usize, command: &[&str]) -> String {
        self.lan
            .exec(h, command, None)
            .unwrap_or_else(|e| panic!("{command:?} in host-{h}: {e}"))
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}", self.loc(name))
    }

    /// Host `h`'s network namespace (for a thread of the drill's to enter).
    pub fn ns(&self, h: usize) -> &str {
        self.lan.ns(h)
    }

    /// Runs `f` on a thread inside host `h`'s namespace.
    pub fn on<T: Send>(&self, h: usize, f: impl FnOnce() -> T + Send) -> T {
        self.lan.on(h, f)
    }

    /// `GET url`, asked from host `h`.
    pub fn get(&self, h: usize, url: &str) -> Answer {
        self.lan.on(h, || fetch(url))
    }

    /// A search at `supernode`, asked from its own host.
    pub fn search(&self, supernode: &str, id: &str) -> Answer {
        let url = format!("{}/api/supernode/search/{id}", self.url(supernode));
        self.get(self.host_of(supernode), &url)
    }

    /// Whether `supernode`'s search for `id` answers 200 with `location` among the holders.
    pub fn finds(&self, supernode: &str, id: &str, location: &str) -> bool {
        let answer = self.search(supernode, id);
        answer.search_locations().iter().any(|l| l == location)
    }

    /// `supernode`'s alive list (`None` when it does not answer 200), asked from its host.
    pub fn alive(&self, supernode: &str) -> Option<Vec<String>> {
        let url = format!("{}/api/supernode/alive", self.url(supernode));
        self.get(self.host_of(supernode), &url).alive_locations()
    }

    /// Whether a search answer (200 or 404) came within the time-out plus the margin, plus
    /// any stall of the machine meanwhile.
    pub fn in_time(&self, answer: &Answer) -> bool {
        let stalled = self.watch.between(answer.started, answer.end());
        matches!(answer.status, 200 | 404)
            && answer.took <= SEARCH_TIMEOUT + SEARCH_MARGIN + stalled
    }

    pub fn wait_supernode(&self, name: &str) {
        wait_until(
            &format!("{name} to answer on {}", self.url(name)),
            Duration::from_secs(20),
            || self.alive(name).is_some(),
        );
    }

    /// Waits until `supernode` lists `node` as alive.
    pub fn wait_registered(&self, node: &str, supernode: &str) {
        let location = self.loc(node);
        wait_until(
            &format!("{node} to register with {supernode}"),
            Duration::from_secs(20),
            || self.alive(supernode).is_some_and(|l| l.contains(&location)),
        );
    }

    /// Waits until `from` finds `id` at `location`: the multicast group works.
    pub fn wait_group(&self, from: &str, id: &str, location: &str) {
        wait_until(
            &format!("{from} to find {id} at {location} through the multicast group"),
            Duration::from_secs(15),
            || self.finds(from, id, location),
        );
    }

    /// Pulls host `h`'s cable out of the switch, or plugs it back in.
    pub fn set_cable(&self, h: usize, up: bool) {
        self.lan.set_cable(h, up);
    }

    /// Runs `nft -f -` with `script` inside host `h`'s namespace; panics with nft's error.
    pub fn nft(&self, h: usize, script: &str) {
        self.lan.nft(h, script);
    }

    /// `nft list table <table>` inside host `h`'s namespace.
    pub fn nft_list(&self, h: usize, table: &str) -> String {
        self.lan.nft_list(h, table)
    }
}

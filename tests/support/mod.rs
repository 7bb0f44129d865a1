//! The integration-test harness: starts the real `superpeer` binary as child processes.
//!
//! Every instance binds port 0 and the harness reads the address it got from its log, so
//! tests never fight over ports. Every test gets its own multicast group and port from
//! [`group`]. A [`Proc`] kills its child when dropped, even when the test fails, and each
//! child's log lines are forwarded with a prefix, so a failing test shows what happened.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use socket2::{Domain, Protocol, Socket, Type};

pub mod netns;

pub const BIN: &str = env!("CARGO_BIN_EXE_superpeer");

/// A multicast `group:port` no other test (in this or another test process) uses.
pub fn group() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "239.{}.{}.{}:{}",
        128 + ((pid >> 16) & 0x7f),
        (pid >> 8) & 0xff,
        pid & 0xff,
        40000 + n
    )
}

/// Set in the process [`in_own_process`] starts: the name of the one test it runs.
const OWN_PROCESS: &str = "SUPERPEER_TEST_OWN_PROCESS";

/// For a test that changes what its process holds for every test in it (the open-files limit,
/// the logger): `true` when it runs in a process of its own, and may. Otherwise this runs the
/// calling test again in a new process of this test binary, alone, waits for it, shows its
/// output, panics when it failed, and returns `false`: the caller then returns.
pub fn in_own_process() -> bool {
    // libtest runs each test on a thread named after it, as `--exact` wants it.
    let thread = std::thread::current();
    let test = thread.name().expect("a test's thread has its name");
    if std::env::var_os(OWN_PROCESS).is_some_and(|own| own == test) {
        return true;
    }
    let exe = std::env::current_exe().expect("this test binary's path");
    let out = Command::new(exe)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(OWN_PROCESS, test)
        .stdin(Stdio::null())
        .output()
        .expect("start this test binary again");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{test}, in a process of its own: {}",
        out.status
    );
    // With no test of that name, the new process would pass having run nothing.
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its own process"
    );
    false
}

/// The tests that have started an instance and not ended yet, and the one that runs
/// [`alone`], if one does. A test is known by its thread: libtest runs each test on a thread
/// of its own, which ends with the test.
struct Running {
    alone: Option<ThreadId>,
    tests: Vec<ThreadId>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    alone: None,
    tests: Vec::new(),
});
static RUNNING_CHANGED: Condvar = Condvar::new();

fn running() -> MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait_running(guard: MutexGuard<'static, Running>) -> MutexGuard<'static, Running> {
    RUNNING_CHANGED
        .wait(guard)
        .unwrap_or_else(PoisonError::into_inner)
}

/// A test that started an instance, until its thread ends.
struct Started(ThreadId);

impl Started {
    /// Waits while another test runs alone; then this test counts as running.
    fn now() -> Started {
        let me = std::thread::current().id();
        let mut running = running();
        while running.alone.is_some_and(|alone| alone != me) {
            running = wait_running(running);
        }
        running.tests.push(me);
        Started(me)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        running().tests.retain(|test| *test != self.0);
        RUNNING_CHANGED.notify_all();
    }
}

thread_local! {
    /// Made at the test's first instance, dropped when the test's thread ends.
    static STARTED: Started = Started::now();
}

/// Held by a test whose figures another test's load would change (the attacks measure how long
/// a fresh client waits): such tests run one at a time, and while one holds this no other test
/// has instances running. It waits for the tests that have started theirs to end; a test that
/// has not yet waits at its first [`Launch::spawn`] until this is dropped. (Instances are
/// started from the test's own thread, which is how the tests are known.)
pub struct Alone {
    _turn: MutexGuard<'static, ()>,
}

pub fn alone() -> Alone {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let me = std::thread::current().id();
    let mut running = running();
    running.alone = Some(me);
    while running.tests.iter().any(|test| *test != me) {
        running = wait_running(running);
    }
    Alone { _turn: turn }
}

impl Drop for Alone {
    fn drop(&mut self) {
        running().alone = None;
        RUNNING_CHANGED.notify_all();
    }
}

/// A port that was free a moment ago (for a process that must be known before it starts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How to start one instance.
pub struct Launch {
    name: String,
    args: Vec<String>,
    env: HashMap<String, String>,
    nofile: Option<u64>,
    netns: Option<String>,
    /// Another program than superpeer (a tool a test needs running beside it).
    program: Option<String>,
}

impl Launch {
    /// A supernode in `group`, on a free port, with quick searches and no automatic sweep
    /// (tests run sweeps with `GET /api/supernode/xxx`).
    pub fn supernode(name: &str, group: &str, group_size: usize) -> Launch {
        Launch::new(name, "supernode")
            .env("MULTICAST_LOCATION", group)
            .env("MULTICAST_GROUP_SIZE", &group_size.to_string())
            .env("SEARCH_TIMEOUT_MS", "1500")
            .env("SEARCH_RETRY_MS", "100")
            .env("LIVENESS_PERIOD_MS", "3600000")
            .env("HEALTH_TIMEOUT_MS", "1000")
    }

    /// A node serving `folder`, registered with `supernodes` (fail-over order).
    pub fn node(name: &str, folder: &Path, supernodes: &[&str]) -> Launch {
        let endpoints: Vec<String> = supernodes
            .iter()
            .map(|s| format!("{s}/api/supernode"))
            .collect();
        Launch::new(name, "node")
            .env("RESOURCE_PATH", folder.to_str().unwrap())
            .env("SUPERNODE_ENDPOINT", &endpoints.join(","))
            .env("HEARTBEAT_MS", "100")
            .env("REGISTER_RETRY_MAX_MS", "100")
            .env("SUPERNODE_TIMEOUT_MS", "5000")
    }

    /// An instance of `role` (`supernode` or `node`) with nothing but the binary's defaults
    /// (on 127.0.0.1, a free port, logging at debug): for drills that must run the default
    /// timings, which [`Launch::supernode`] and [`Launch::node`] shorten.
    pub fn instance(name: &str, role: &str) -> Launch {
        Launch::new(name, role)
    }

    fn new(name: &str, role: &str) -> Launch {
        let launch = Launch {
            name: name.into(),
            args: vec![role.into()],
            env: HashMap::new(),
            nofile: None,
            netns: None,
            program: None,
        };
        launch
            .env("LHOST", "127.0.0.1")
            .env("LPORT", "0")
            .env("LOG_LEVEL", "debug")
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn port(self, port: u16) -> Launch {
        self.env("LPORT", &port.to_string())
    }

    pub fn arg(mut self, arg: &str) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// Runs the instance with its open-files limit (soft and hard) at `files`, as `ulimit -n`.
    pub fn nofile(mut self, files: u64) -> Launch {
        self.nofile = Some(files);
        self
    }

    /// Another program, `argv[0]` with the rest of `argv`, started and stopped as an instance
    /// is (its output forwarded with `name` before each line).
    pub fn tool(name: &str, argv: &[&str]) -> Launch {
        let mut launch = Launch::new(name, "");
        launch.program = Some(argv[0].into());
        launch.args = argv[1..].iter().map(|a| a.to_string()).collect();
        launch
    }

    /// Runs the instance in network namespace `ns` (see [`netns::Lan`]).
    pub fn netns(mut self, ns: &str) -> Launch {
        self.netns = Some(ns.into());
        self
    }

    /// Starts the instance and waits until it listens.
    pub fn start(self) -> Proc {
        let mut proc = self.spawn();
        proc.addr = proc
            .listening
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{} did not start listening; see its log above", proc.name));
        proc
    }

    /// Starts the process without waiting for anything (for start-up failures).
    pub fn spawn(self) -> Proc {
        STARTED.with(|_| ());
        // util-linux's prlimit and iproute2's `ip netns exec` each run the next program in
        // their place: the child's PID stays the binary's.
        let mut program: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            program.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        if let Some(files) = self.nofile {
            program.extend([
                "prlimit".into(),
                format!("--nofile={files}:{files}"),
                "--".into(),
            ]);
        }
        program.push(self.program.clone().unwrap_or_else(|| BIN.into()));
        let mut command = Command::new(&program[0]);
        command.args(&program[1..]);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Keep the test's own environment out: only the keys the test gives count.
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env);
        let mut child = command.spawn().expect("start superpeer");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, listening) = bounded(1);
        for (stream, tx) in [
            (
                Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
                Some(tx),
            ),
            (Box::new(child.stdout.take().unwrap()), None),
        ] {
            let (name, log) = (self.name.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[{name}] {line}");
                    if let (Some(tx), Some(at)) = (&tx, line.find("listening on http://")) {
                        let rest = &line[at + "listening on http://".len()..];
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        if let Ok(addr) = addr.parse::<SocketAddr>() {
                            let _ = tx.try_send(addr);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        Proc {
            name: self.name,
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            listening,
        }
    }
}

/// A running instance; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    listening: Receiver<SocketAddr>,
}

impl Proc {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port`, as the node registers itself.
    pub fn location(&self) -> String {
        self.addr.to_string()
    }

    pub fn get(&self, path: &str) -> Resp {
        get(&format!("{}{path}", self.url()))
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Resp {
        post(&format!("{}{path}", self.url()), body)
    }

    /// Waits until a log line contains `text`.
    pub fn wait_log(&self, text: &str, limit: Duration) {
        wait_until(&format!("{} to log {text:?}", self.name), limit, || {
            self.logged(text)
        });
    }

    /// How many log lines contain `text`.
    pub fn count_logged(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
    }

    /// Waits for the process to exit by itself; returns its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(mut self) {
        self.stop();
    }

    /// Whether the process still runs (it did not crash or exit).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the standard error body for `code`.
    pub fn assert_error(&self, code: u16) {
        assert_eq!(
            self.status,
            code,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["code"], code);
        assert!(
            body["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{body}"
        );
        assert!(
            body["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn finish(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Resp {
    let mut response = result.unwrap_or_else(|e| panic!("{what}: {e}"));
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    Resp {
        status: response.status().as_u16(),
        location,
        body,
    }
}

pub fn get(url: &str) -> Resp {
    finish(agent().get(url).call(), url)
}

/// [`get`], or `None` when no answer came (refused, reset, timed out).
pub fn try_get(url: &str) -> Option<Resp> {
    let result = agent().get(url).call();
    result.is_ok().then(|| finish(result, url))
}

pub fn post(url: &str, body: &[u8]) -> Resp {
    finish(
        agent()
            .post(url)
            .header("Content-Type", "application/json")
            .send(body),
        url,
    )
}

/// `GET path` on a fresh connection: the whole answer as text, head included (for tests of
/// the headers themselves).
pub fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Sends raw bytes on a fresh connection and returns the status code of the answer.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(request).ok()?;
    // Say that nothing more comes, so a truncated request ends now rather than at a time-out.
    stream.shutdown(std::net::Shutdown::Write).ok()?;
    let mut answer = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A temporary folder of files, removed when dropped.
pub struct Folder {
    pub path: PathBuf,
}

impl Folder {
    /// A folder holding `files` (name, content).
    pub fn with(files: &[(&str, &[u8])]) -> Folder {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "superpeer-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        for (name, content) in files {
            let file = path.join(name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        Folder { path }
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The SHA-256 of `content`, as lowercase hex.
pub fn sha256(content: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An id nobody holds.
pub fn absent_id(n: u32) -> String {
    sha256(format!("nobody has this {n} {}", std::process::id()).as_bytes())
}

/// The supernode's `alive` list, as locations.
pub fn alive(supernode: &Proc) -> Vec<String> {
    let answer = supernode.get("/api/supernode/alive");
    assert_eq!(answer.status, 200);
    answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["location"].as_str().unwrap().to_string())
        .collect()
}

/// Registers at `supernode` a holder of `id` that is gone (nothing listens where it says it
/// is, on 127.0.0.1), for tests of what happens past it.
pub fn register_gone_holder(supernode: &Proc, id: &str) {
    let gone = format!("127.0.0.1:{}", free_port());
    register_holder(supernode, &gone, &[(id, "x")]);
}

/// Registers at `supernode` a node at `location` holding `resources` (id, name), as any host
/// on the LAN may (the source check accepts 127.0.0.1 for a 127.0.0.1 location).
pub fn register_holder(supernode: &Proc, location: &str, resources: &[(&str, &str)]) {
    let resources: Vec<_> = resources
        .iter()
        .map(|(id, name)| serde_json::json!({"id": id, "name": name}))
        .collect();
    let body = serde_json::json!({"name": "fake", "location": location, "resources": resources});
    let answer = supernode.post("/api/supernode/register", body.to_string().as_bytes());
    assert_eq!(
        answer.status,
        204,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

/// The `locations` of a search answer's `file` (a `data` entry's), sorted.
pub fn sorted_locations(file: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = file["locations"]
        .as_array()
        .unwrap_or_else(|| panic!("no locations in {file}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    found.sort();
    found
}

/// Waits until `supernode` lists every one of `nodes` as registered.
pub fn wait_registered(supernode: &Proc, nodes: &[&Proc]) {
    wait_until(
        &format!("{} to list {} nodes", supernode.name, nodes.len()),
        Duration::from_secs(20),
        || {
            let live = alive(supernode);
            nodes.iter().all(|n| live.contains(&n.location()))
        },
    );
}

/// A connection to `addr` from the source address `from` (127.0.0.2 plays the attacker, so that
/// limits per address do not touch the clients on 127.0.0.1). `None` when refused or not
/// accepted within 2 s.
pub fn connect_from(addr: SocketAddr, from: &str) -> Option<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    let source: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&source.into()).ok()?;
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .ok()?;
    Some(socket.into())
}

/// A connection to `addr` with a receive buffer of `window` bytes, so that what the client
/// has not read backs up to the server soon, which has been sent `request` (a 20 s read
/// time-out).
pub fn small_window(addr: SocketAddr, window: usize, request: &str) -> std::net::TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(window).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// One request on a fresh connection from 127.0.0.1: the status and how long the answer took
/// (`None` when there was no answer within 5 s).
pub fn probe(addr: SocketAddr, path: &str) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let answer = (|| {
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    })();
    (answer, started.elapsed())
}

/// Asserts that a fresh client gets `200` for `path` within 500 ms (`during` says when).
pub fn assert_served(addr: SocketAddr, path: &str, during: &str) {
    let (status, took) = probe(addr, path);
    assert_eq!(status, Some(200), "{during}: a fresh client got {status:?}");
    assert!(
        took <= Duration::from_millis(500),
        "{during}: a fresh client waited {took:?}"
    );
}

/// `POST path` with `body` on a fresh connection from the source address `from`: the status
/// and the body of the answer (a test client from a second loopback address, which ureq cannot
/// bind).
pub fn post_from(addr: SocketAddr, from: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, _, body) = request_from(addr, from, "POST", path, body);
    (status, body)
}

/// `GET path` from source address `from`: the status, the head and the body.
pub fn get_from(addr: SocketAddr, from: &str, path: &str) -> (u16, String, String) {
    request_from(addr, from, "GET", path, b"")
}

/// One request on a connection of its own from source address `from`: the status, the head
/// and the body.
pub fn request_from(
    addr: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = connect_from(addr, from).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

/// The answers, under each of `names`, to `datagram` when it is a query of a supernode of ours
/// (a cookie, or a ping: a `20` for an id), as our supernodes answer it: "not here", tagged.
/// Only the name the cookie was made for proves its address with it.
pub fn answers_to_query(datagram: &[u8], names: &[&str]) -> Vec<Vec<u8>> {
    use superpeer::wire::{self, Body, Message, Sender};
    let Ok(Message {
        sender: Sender::Query { from: prober, tag },
        body: Body::Query(id),
        ..
    }) = wire::parse(datagram)
    else {
        return Vec::new();
    };
    let answer = |name: &&str| {
        let sender = Sender::Reply {
            from: name.to_string(),
            to: prober.clone(),
            tag,
        };
        Message::new(sender, Body::NotFound(id.to_string())).encode()
    };
    names.iter().map(answer).collect()
}

/// Answers the cookie a supernode sends to `socket` (a `20` for an id made up for that name
/// and address) as a supernode of ours does, under the name `me`: from then on the address has
/// proved to it that it receives there. Panics when no cookie comes within 5 s.
pub fn prove_address(socket: &UdpSocket, me: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buffer = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline {
        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if let [answer] = &answers_to_query(&buffer[..len], &[me])[..] {
            socket.send_to(answer, from).unwrap();
            return;
        }
    }
    panic!("no cookie came to {:?}", socket.local_addr());
}

/// The value of one `series` (a metric's name with its labels, as scraped) in `proc`'s
/// `/metrics`; 0 when the series is not there yet.
pub fn metric(proc: &Proc, series: &str) -> f64 {
    let text = String::from_utf8(proc.get("/metrics").body).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// The other supernodes `supernode` counts on: heard lately, their address proven.
pub fn peers_of(supernode: &Proc) -> usize {
    supernode.get("/api/supernode/status").json()["data"]["peers"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A member of the group as the seed's supernodes are: plain sender names, three fields.
pub struct Peer {
    socket: UdpSocket,
    group: SocketAddrV4,
}

impl Peer {
    pub fn join(group: &str) -> Peer {
        Peer::join_on(group, Ipv4Addr::LOCALHOST)
    }

    /// A member of `group` on the interface of address `interface`.
    pub fn join_on(group: &str, interface: Ipv4Addr) -> Peer {
        let group: SocketAddrV4 = group.parse().unwrap();
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.set_reuse_port(true).unwrap();
        socket
            .bind(&std::net::SocketAddr::V4(group).into())
            .unwrap();
        socket.join_multicast_v4(group.ip(), &interface).unwrap();
        socket.set_multicast_if_v4(&interface).unwrap();
        socket.set_multicast_ttl_v4(1).unwrap();
        socket.set_multicast_loop_v4(true).unwrap();
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Peer { socket, group }
    }

    pub fn send(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, self.group).unwrap();
    }

    /// The next datagram and its source, if one comes within the socket's 100 ms.
    pub fn next(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buffer = [0u8; 2048];
        let (len, from) = self.socket.recv_from(&mut buffer).ok()?;
        Some((buffer[..len].to_vec(), from))
    }

    /// The next datagram for which `keep` holds, within `limit`.
    pub fn receive(&self, limit: Duration, keep: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut buffer = [0u8; 2048];
        while Instant::now() < deadline {
            if let Ok((len, _)) = self.socket.recv_from(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                if keep(&text) {
                    return Some(text);
                }
            }
        }
        None
    }
}

/// Reads one request head from `stream` (a fake server's), byte by byte: `(the head in
/// lowercase, its path)`, or `None` when the client hung up first.
pub fn read_request_head(stream: &mut std::net::TcpStream) -> Option<(String, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((head, path))
}

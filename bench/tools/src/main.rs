//! `sp-bench`: the measurements of bench/run.sh that wrk cannot make.
//!
//! Every subcommand prints `key=value` pairs on its last line of standard output, for the
//! script to pick up. Everything talks to 127.0.0.1 only; every loop is bounded in count and
//! in time.
//!
//! | subcommand | what it does |
//! |---|---|
//! | `pingpong`   | UDP multicast round trips between this process and a child (`echo`) |
//! | `latency`    | N sequential requests on one keep-alive connection: median, p99, errors |
//! | `concurrent` | T threads x R rounds of simultaneous searches, half present, half absent |
//! | `register`   | registers fake nodes with made-up ids; times each POST; writes sample paths |
//! | `ids`        | prints made-up ids nobody holds, as search paths |
//! | `mirror`     | fetches paths and writes the bodies under a folder (nginx's copy) |
//! | `mkfiles`    | writes N files of pseudo-random content |
//! | `startup`    | starts a node, times it until it logs that it registered |
//! | `timecmd`    | times a command |
//! | `farm`       | 1,000 fake nodes for the liveness sweep: 900 answer, 100 hang |
//! | `probe`      | a fresh client every few ms for N seconds: availability second by second |
//! | `ready`, `counters`, `digest`, `announcements` | many supernodes and their summaries ([`scale`]) |

mod http;
mod scale;

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use http::Conn;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: sp-bench <subcommand> [--key value ...] (see the source)");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "pingpong" => Opts::parse(rest).and_then(|o| pingpong(&o)),
        "echo" => Opts::parse(rest).and_then(|o| echo(&o)),
        "latency" => Opts::parse(rest).and_then(|o| latency(&o)),
        "concurrent" => Opts::parse(rest).and_then(|o| concurrent(&o)),
        "register" => Opts::parse(rest).and_then(|o| register(&o)),
        "ids" => Opts::parse(rest).and_then(|o| ids(&o)),
        "mirror" => Opts::parse(rest).and_then(|o| mirror(&o)),
        "mkfiles" => Opts::parse(rest).and_then(|o| mkfiles(&o)),
        "startup" => startup(rest),
        "timecmd" => timecmd(rest),
        "farm" => Opts::parse(rest).and_then(|o| farm(&o)),
        "probe" => Opts::parse(rest).and_then(|o| probe(&o)),
        "ready" => Opts::parse(rest).and_then(|o| scale::ready(&o)),
        "counters" => Opts::parse(rest).and_then(|o| scale::counters(&o)),
        "digest" => Opts::parse(rest).and_then(|o| scale::digest(&o)),
        "announcements" => Opts::parse(rest).and_then(|o| scale::announcements(&o)),
        other => Err(format!("unknown subcommand {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sp-bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options, ids, statistics

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, found {key:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Opts(map))
    }

    fn str(&self, key: &str) -> Res<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Res<T> {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: not a number: {v:?}")),
            None => default.ok_or_else(|| format!("--{key} is required")),
        }
    }

    fn addr(&self) -> Res<SocketAddr> {
        let text = self.str("addr")?;
        let addr: SocketAddr = text
            .parse()
            .map_err(|_| format!("--addr: not host:port: {text:?}"))?;
        // Loopback, or the attack lab's own network (scripts/attack.sh), which exists only
        // inside the namespaces it makes.
        let lab = matches!(addr.ip(), std::net::IpAddr::V4(ip) if ip.octets()[..3] == [10, 77, 0]);
        if !addr.ip().is_loopback() && !lab {
            return Err(format!(
                "--addr {addr}: only loopback addresses (or the attack lab's 10.77.0.0/24) are allowed"
            ));
        }
        Ok(addr)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A made-up resource id: 64 lowercase hex characters, the same for the same seed and index.
fn make_id(seed: u64, index: u64) -> String {
    let mut state = seed.wrapping_mul(0x1000_0000_01B3) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        out.push_str(&format!("{:016x}", splitmix(&mut state)));
    }
    out
}

fn read_lines(path: &str) -> Res<Vec<String>> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(lines)
}

/// The q-quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary_us(mut us: Vec<f64>) -> String {
    us.sort_by(|a, b| a.total_cmp(b));
    let mean = us.iter().sum::<f64>() / us.len().max(1) as f64;
    format!(
        "n={} median_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} mean_us={:.1}",
        us.len(),
        quantile(&us, 0.5),
        quantile(&us, 0.9),
        quantile(&us, 0.99),
        us.last().copied().unwrap_or(f64::NAN),
        mean
    )
}

fn id_of_path(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// pingpong / echo: the floor of a remote search

fn mcast_socket(group: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(group, port)).into())?;
    // Loopback only, TTL 1: nothing leaves the machine.
    socket.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)?;
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    Ok(socket.into())
}

fn group_opt(o: &Opts) -> Res<Ipv4Addr> {
    let group: Ipv4Addr = o
        .str("group")?
        .parse()
        .map_err(|_| "--group: not an IPv4 address".to_string())?;
    if !group.is_multicast() {
        return Err(format!("{group} is not a multicast group"));
    }
    Ok(group)
}

/// Pins this process to one CPU (`--cpu-a` / `--cpu-b`), when asked.
fn pin(cpu: Option<&str>) -> Res<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let cpu: usize = cpu.parse().map_err(|_| format!("bad cpu {cpu:?}"))?;
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read and write it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!(
            "cannot pin to cpu {cpu}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Round trips: this process sends to group:port-b, the child answers to group:port-a.
/// `--cpu-a N --cpu-b M` pin this process and the child to CPUs N and M.
fn pingpong(o: &Opts) -> Res<()> {
    let group = group_opt(o)?;
    let port_a: u16 = o.num("port-a", None)?;
    let port_b: u16 = o.num("port-b", None)?;
    pin(o.opt("cpu-a"))?;
    let mut child_args = vec![
        "echo".to_string(),
        "--group".into(),
        group.to_string(),
        "--listen".into(),
        port_b.to_string(),
        "--reply".into(),
        port_a.to_string(),
    ];
    if let Some(cpu) = o.opt("cpu-b") {
        child_args.extend(["--cpu".to_string(), cpu.to_string()]);
    }
    let n: usize = o.num("n", Some(5000))?;
    let warmup: usize = o.num("warmup", Some(200))?;
    let socket = mcast_socket(group, port_a).map_err(|e| format!("multicast socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(&child_args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the echo process: {e}"))?;
    let result = (|| {
        let mut ready = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?)
            .read_line(&mut ready)
            .map_err(|e| e.to_string())?;
        if ready.trim() != "ready" {
            return Err(format!("echo process said {ready:?}"));
        }
        let to = SocketAddrV4::new(group, port_b);
        let mut buf = [0u8; 64];
        let mut rtts = Vec::with_capacity(n);
        let mut lost = 0usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seq: u64 = 0;
        while rtts.len() < n {
            if Instant::now() > deadline {
                return Err(format!("time is up after {} round trips", rtts.len()));
            }
            if lost > 100 {
                return Err(
                    "more than 100 datagrams lost: is multicast on loopback working?".into(),
                );
            }
            seq += 1;
            let payload = seq.to_string();
            let start = Instant::now();
            socket
                .send_to(payload.as_bytes(), to)
                .map_err(|e| format!("send: {e}"))?;
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((len, _)) if &buf[..len] == payload.as_bytes() => {
                        if seq as usize > warmup {
                            rtts.push(start.elapsed().as_secs_f64() * 1e6);
                        }
                        break;
                    }
                    Ok(_) => continue, // a late answer to an earlier, lost round
                    Err(_) => {
                        lost += 1;
                        break;
                    }
                }
            }
        }
        println!("{} lost={lost}", summary_us(rtts));
        Ok(())
    })();
    let _ = socket.send_to(b"quit", SocketAddrV4::new(group, port_b));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            _ => thread::sleep(Duration::from_millis(10)),
        }
    }
    result
}

fn echo(o: &Opts) -> Res<()> {
    let group = group_opt(o)?;
    let listen: u16 = o.num("listen", None)?;
    let reply: u16 = o.num("reply", None)?;
    pin(o.opt("cpu"))?;
    let socket = mcast_socket(group, listen).map_err(|e| format!("multicast socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    println!("ready");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let to = SocketAddrV4::new(group, reply);
    let mut buf = [0u8; 64];
    let started = Instant::now();
    // Ends on "quit", after 5 s of silence, or after 60 s in all.
    while started.elapsed() < Duration::from_secs(60) {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) if &buf[..len] == b"quit" => break,
            Ok((len, _)) => {
                let _ = socket.send_to(&buf[..len], to);
            }
            Err(_) => break,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// latency / concurrent

/// Checks an answer: the status, and for a 200, that the body names the id asked for and,
/// when given, the expected text (a location).
fn check_answer(
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

fn latency(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let paths = match (o.opt("paths"), o.opt("path")) {
        (Some(file), _) => read_lines(file)?,
        (None, Some(path)) => vec![path.to_string()],
        (None, None) => return Err("--paths FILE or --path PATH is required".into()),
    };
    let n: usize = o.num("n", Some(1000))?;
    let warmup: usize = o.num("warmup", Some(50))?;
    let want: u16 = o.num("status", Some(200))?;
    let contains = o.opt("contains");
    let max_s: u64 = o.num("max-seconds", Some(60))?;
    let timeout_ms: u64 = o.num("timeout-ms", Some(10_000))?;
    let mut conn = Conn::new(addr, Duration::from_millis(timeout_ms));
    let deadline = Instant::now() + Duration::from_secs(max_s);
    let mut us = Vec::with_capacity(n);
    let (mut wrong, mut errors) = (0usize, 0usize);
    let mut example = String::new();
    for i in 0..n + warmup {
        if Instant::now() > deadline {
            return Err(format!("time is up after {i} requests"));
        }
        let path = &paths[i % paths.len()];
        let start = Instant::now();
        let result = conn.get(path);
        let elapsed = start.elapsed().as_secs_f64() * 1e6;
        match result {
            Ok(r) => {
                if !check_answer(path, r.status, &r.body, want, contains) {
                    wrong += 1;
                    if example.is_empty() {
                        example = format!(
                            "{path} -> {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                        );
                    }
                }
            }
            Err(e) => {
                errors += 1;
                if example.is_empty() {
                    example = format!("{path} -> {e}");
                }
            }
        }
        if i >= warmup {
            us.push(elapsed);
        }
    }
    if !example.is_empty() {
        eprintln!("latency: first wrong answer: {example}");
    }
    println!("{} wrong={wrong} errors={errors}", summary_us(us));
    Ok(())
}

fn concurrent(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let present = Arc::new(read_lines(o.str("present")?)?);
    let absent = Arc::new(read_lines(o.str("absent")?)?);
    let threads: usize = o.num("threads", Some(64))?;
    let rounds: usize = o.num("rounds", Some(50))?;
    let location = o.opt("location").map(|l| format!("\"location\":\"{l}\""));
    let barrier = Arc::new(Barrier::new(threads));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
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
                let mut example = String::new();
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
                                format!(
                                    "{path} -> {} {}",
                                    resp.status,
                                    String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                                )
                            }
                            Err(e) => {
                                failed += 1;
                                format!("{path} -> no answer: {e} (round {r})")
                            }
                        };
                        if example.is_empty() {
                            example = text;
                        }
                    }
                    if started.elapsed() > Duration::from_secs(120) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                (us, right, wrong, failed, example)
            })
        })
        .collect();
    let mut all: Vec<(usize, f64)> = Vec::new();
    let (mut right, mut wrong, mut failed) = (0, 0, 0);
    let mut examples = 0;
    for h in handles {
        let (us, r, w, f, example) = h.join().map_err(|_| "a client thread panicked")?;
        all.extend(us);
        right += r;
        wrong += w;
        failed += f;
        if !example.is_empty() && examples < 3 {
            examples += 1;
            eprintln!("concurrent: {example}");
        }
    }
    let slow = all.iter().filter(|(_, us)| *us > 1e6).count();
    // The figures without the first round, where every connection is new.
    let mut later: Vec<f64> = all
        .iter()
        .filter(|(r, _)| *r > 0)
        .map(|(_, us)| *us)
        .collect();
    later.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{} correct={right} wrong={wrong} failed={failed} over_1s={slow} \
         p99_after_round1_us={:.1} seconds={:.2}",
        summary_us(all.into_iter().map(|(_, us)| us).collect()),
        quantile(&later, 0.99),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// register / ids / mirror

/// Registers `nodes` fake nodes of `per` made-up resources each, at 127.0.0.1:<port-base + k>
/// (nothing listens there: the supernode must run with a long liveness period).
fn register(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let seed: u64 = o.num("seed", None)?;
    let nodes: u64 = o.num("nodes", Some(1))?;
    let per: u64 = o.num("per", None)?;
    let port_base: u64 = o.num("port-base", None)?;
    let sample: u64 = o.num("sample", Some(0))?;
    // --key: the cluster key to sign the registrations with (CLUSTER_KEY's format).
    let keys = match o.opt("key") {
        Some(text) => {
            Some(superpeer::auth::ClusterKeys::parse(text).map_err(|e| format!("--key: {e}"))?)
        }
        None => None,
    };
    let mut conn = Conn::new(addr, Duration::from_secs(120));
    let mut ms = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    for k in 0..nodes {
        if Instant::now() > deadline {
            return Err(format!("time is up after {k} registrations"));
        }
        let location = format!("127.0.0.1:{}", port_base + k);
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
        eprintln!(
            "register: {location}: {per} resources ({} bytes) in {elapsed:.1} ms",
            body.len()
        );
        ms.push(elapsed);
    }
    if let Some(out) = o.opt("sample-out") {
        let total = nodes * per;
        let mut text = String::new();
        for j in 0..sample {
            let global = j * total / sample.max(1);
            text.push_str(&format!(
                "/api/supernode/search/{}\n",
                make_id(seed, global)
            ));
        }
        fs::write(out, text).map_err(|e| format!("cannot write {out}: {e}"))?;
    }
    let total_ms: f64 = ms.iter().sum();
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "registrations={} entries={} median_ms={:.1} max_ms={:.1} total_ms={:.1}",
        ms.len(),
        nodes * per,
        quantile(&ms, 0.5),
        ms.last().copied().unwrap_or(f64::NAN),
        total_ms
    );
    Ok(())
}

/// Made-up ids that nobody registered, as search paths.
fn ids(o: &Opts) -> Res<()> {
    let seed: u64 = o.num("seed", None)?;
    let n: u64 = o.num("n", None)?;
    let prefix = o.opt("prefix").unwrap_or("/api/supernode/search/");
    let mut out = io::BufWriter::new(io::stdout().lock());
    for i in 0..n {
        writeln!(out, "{prefix}{}", make_id(seed, i)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Fetches every path and writes its body to <root><path>: the same bytes for nginx to serve.
fn mirror(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let paths = read_lines(o.str("paths")?)?;
    let root = PathBuf::from(o.str("root")?);
    let want: u16 = o.num("status", Some(200))?;
    let mut conn = Conn::new(addr, Duration::from_secs(30));
    let mut bytes = 0usize;
    for path in &paths {
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
    println!(
        "files={} mean_bytes={}",
        paths.len(),
        bytes / paths.len().max(1)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// mkfiles / startup / timecmd

fn mkfiles(o: &Opts) -> Res<()> {
    let dir = PathBuf::from(o.str("dir")?);
    let count: u64 = o.num("count", None)?;
    let size: usize = o.num("size", None)?;
    let seed: u64 = o.num("seed", Some(1))?;
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let width = count.to_string().len().max(3);
    let mut buffer = vec![0u8; size.clamp(8, 1 << 20)];
    for i in 0..count {
        let path = dir.join(format!("file-{i:0width$}.bin"));
        let mut file = io::BufWriter::new(
            fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i;
        let mut left = size;
        while left > 0 {
            let n = left.min(buffer.len());
            for chunk in buffer[..n].chunks_mut(8) {
                let word = splitmix(&mut state).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            file.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
            left -= n;
        }
        file.flush().map_err(|e| e.to_string())?;
    }
    println!("files={count} bytes_each={size}");
    Ok(())
}

/// `startup --log FILE --deadline-s S -- PROGRAM ARGS...`: starts the program (a node, with its
/// configuration in the environment), copies its standard error to FILE, and stops it as soon
/// as it logs `registered ... with ...`; prints the time from start to that line.
fn startup(args: &[String]) -> Res<()> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("startup needs -- PROGRAM ARGS")?;
    let o = Opts::parse(&args[..split])?;
    let command = &args[split + 1..];
    let (program, rest) = command.split_first().ok_or("no program given")?;
    let log_path = PathBuf::from(o.str("log")?);
    let deadline_s: u64 = o.num("deadline-s", Some(60))?;
    let mut log =
        fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let deadline = start + Duration::from_secs(deadline_s);
    let mut outcome = Err(format!("no `registered` line within {deadline_s} s"));
    let mut hashed = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((at, line)) => {
                let _ = writeln!(log, "{line}");
                if line.contains("hashed ") {
                    hashed = line.clone();
                }
                if line.contains(" registered ") && line.contains(" with ") {
                    outcome = Ok(at.duration_since(start));
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                outcome = Err("the program exited before registering".into());
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    for (_, line) in rx.try_iter() {
        let _ = writeln!(log, "{line}");
    }
    let elapsed = outcome?;
    if !hashed.is_empty() {
        eprintln!("startup: {hashed}");
    }
    println!("ms={:.1}", elapsed.as_secs_f64() * 1e3);
    Ok(())
}

fn timecmd(args: &[String]) -> Res<()> {
    let command = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let (program, rest) = command.split_first().ok_or("no program given")?;
    let start = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("{program} failed: {status}"));
    }
    println!("ms={:.1}", elapsed.as_secs_f64() * 1e3);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// farm: the liveness sweep over 1,000 nodes

/// When each fake node was asked (live ones: health requests answered; hanging ones:
/// connections accepted and left unanswered).
struct Checks {
    times: Vec<Mutex<Vec<Instant>>>,
}

fn spawn_small(f: impl FnOnce() + Send + 'static) -> Res<()> {
    thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start a thread: {e}"))
}

fn answer_health(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_nodelay(true);
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

fn farm(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let live: usize = o.num("live", Some(900))?;
    let hanging: usize = o.num("hanging", Some(100))?;
    let deadline_s: u64 = o.num("deadline-s", Some(45))?;
    let out_dir = PathBuf::from(o.str("out")?);
    let total = live + hanging;
    let checks = Arc::new(Checks {
        times: (0..total).map(|_| Mutex::new(Vec::new())).collect(),
    });
    // Spread the hanging nodes among the live ones, so the sweep meets them in every part.
    let stride = (total / hanging.max(1)).max(1);
    let is_hanging = |k: usize| hanging > 0 && k.is_multiple_of(stride) && k / stride < hanging;
    let mut locations = Vec::with_capacity(total);
    let mut kinds = Vec::with_capacity(total);
    for k in 0..total {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let location = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let checks = checks.clone();
        let hang = is_hanging(k);
        spawn_small(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Ok(mut times) = checks.times[k].lock() {
                    times.push(Instant::now());
                }
                if hang {
                    // Accepted, never answered, kept open (closed when the farm ends).
                    held.push(stream);
                } else {
                    answer_health(stream);
                }
            }
        })?;
        locations.push(location);
        kinds.push(hang);
    }
    let n_hanging = kinds.iter().filter(|&&h| h).count();
    let n_live = total - n_hanging;
    let live_locs: String = locations
        .iter()
        .zip(&kinds)
        .filter(|(_, h)| !**h)
        .map(|(l, _)| format!("{l}\n"))
        .collect();
    let hanging_locs: String = locations
        .iter()
        .zip(&kinds)
        .filter(|(_, h)| **h)
        .map(|(l, _)| format!("{l}\n"))
        .collect();
    fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    fs::write(out_dir.join("live.txt"), live_locs).map_err(|e| e.to_string())?;
    fs::write(out_dir.join("hanging.txt"), hanging_locs).map_err(|e| e.to_string())?;

    let mut conn = Conn::new(addr, Duration::from_secs(10));
    for (k, location) in locations.iter().enumerate() {
        let body = format!(
            "{{\"name\":\"farm-{k}\",\"location\":\"{location}\",\"resources\":[{{\"id\":\"{}\",\"name\":\"farm-{k}.bin\"}}]}}",
            make_id(7_000_000, k as u64)
        );
        let r = conn
            .request("POST", "/api/supernode/register", body.as_bytes())
            .map_err(|e| format!("register {location}: {e}"))?;
        if r.status != 204 {
            return Err(format!("register {location} answered {}", r.status));
        }
    }
    let registered = Instant::now();
    eprintln!("farm: registered {total} nodes ({n_live} live, {n_hanging} hanging)");

    // Poll the supernode's list until the hanging nodes are gone and every live node has been
    // checked twice more since, or the deadline.
    let deadline = registered + Duration::from_secs(deadline_s);
    let mut live_lost: usize = 0;
    let mut removed_at: Option<Duration> = None;
    let mut checks_at_removal: Option<(usize, usize)> = None;
    let mut hanging_seen_after_one: bool = false;
    let mut polls = 0usize;
    let mut sweeps_needed_for_live = usize::MAX;
    loop {
        if Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        let r = match conn.get("/api/supernode/alive") {
            Ok(r) if r.status == 200 => r,
            Ok(r) => return Err(format!("GET alive answered {}", r.status)),
            Err(e) => return Err(format!("GET alive: {e}")),
        };
        polls += 1;
        let value: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| format!("alive: bad JSON: {e}"))?;
        let listed: std::collections::HashSet<&str> = value["data"]
            .as_array()
            .ok_or("alive: no data list")?
            .iter()
            .filter_map(|n| n["location"].as_str())
            .collect();
        let counts: Vec<usize> = checks
            .times
            .iter()
            .map(|t| t.lock().map(|t| t.len()).unwrap_or(0))
            .collect();
        let mut lost_now = 0;
        let mut hanging_listed = 0;
        for (k, location) in locations.iter().enumerate() {
            let present = listed.contains(location.as_str());
            if kinds[k] {
                if present {
                    hanging_listed += 1;
                    if counts[k] == 1 {
                        hanging_seen_after_one = true;
                    }
                }
            } else if !present {
                lost_now += 1;
            }
        }
        live_lost = live_lost.max(lost_now);
        if hanging_listed == 0 && removed_at.is_none() {
            removed_at = Some(registered.elapsed());
            let hanging_counts: Vec<usize> = (0..total)
                .filter(|&k| kinds[k])
                .map(|k| counts[k])
                .collect();
            checks_at_removal = Some((
                hanging_counts.iter().copied().min().unwrap_or(0),
                hanging_counts.iter().copied().max().unwrap_or(0),
            ));
            // Wait for one more complete live round after the removal, to see they stay.
            let min_live = (0..total)
                .filter(|&k| !kinds[k])
                .map(|k| counts[k])
                .min()
                .unwrap_or(0);
            sweeps_needed_for_live = min_live + 1;
        }
        if removed_at.is_some() {
            let min_live = (0..total)
                .filter(|&k| !kinds[k])
                .map(|k| counts[k])
                .min()
                .unwrap_or(0);
            if min_live >= sweeps_needed_for_live {
                break;
            }
        }
    }

    // Sweep k of every node is its k-th check; a sweep's span runs from the first check of any
    // node in it to the last check of a live node in it.
    let times: Vec<Vec<Instant>> = checks
        .times
        .iter()
        .map(|t| t.lock().map(|t| t.clone()).unwrap_or_default())
        .collect();
    let max_sweeps = times.iter().map(Vec::len).max().unwrap_or(0);
    let mut spans = Vec::new();
    for s in 0..max_sweeps {
        let first = times.iter().filter_map(|t| t.get(s)).min();
        let last_live = (0..total)
            .filter(|&k| !kinds[k])
            .filter_map(|k| times[k].get(s))
            .max();
        let live_checked = (0..total)
            .filter(|&k| !kinds[k] && times[k].len() > s)
            .count();
        let hanging_checked = (0..total)
            .filter(|&k| kinds[k] && times[k].len() > s)
            .count();
        if let (Some(first), Some(last)) = (first, last_live) {
            spans.push(format!(
                "sweep{}: live_checked={live_checked} hanging_checked={hanging_checked} span_ms={:.0} start_s={:.2}",
                s + 1,
                last.duration_since(*first).as_secs_f64() * 1e3,
                first.saturating_duration_since(registered).as_secs_f64()
            ));
        }
    }
    for line in &spans {
        eprintln!("farm: {line}");
    }
    let max_span_ms = (0..max_sweeps.min(2))
        .filter_map(|s| {
            let first = times.iter().filter_map(|t| t.get(s)).min()?;
            let last = (0..total)
                .filter(|&k| !kinds[k])
                .filter_map(|k| times[k].get(s))
                .max()?;
            Some(last.duration_since(*first).as_secs_f64() * 1e3)
        })
        .fold(0.0f64, f64::max);
    let live_all_twice = (0..total)
        .filter(|&k| !kinds[k])
        .all(|k| times[k].len() >= 2);
    let (cmin, cmax) = checks_at_removal.unwrap_or((0, 0));
    println!(
        "live={n_live} hanging={n_hanging} polls={polls} removed={} removed_after_s={:.2} \
         hanging_checks_at_removal_min={cmin} hanging_checks_at_removal_max={cmax} \
         hanging_listed_after_one_check={} live_lost={live_lost} live_checked_twice={} \
         max_sweep_span_ms={max_span_ms:.0} sweeps_seen={max_sweeps}",
        removed_at.is_some(),
        removed_at.map_or(f64::NAN, |d| d.as_secs_f64()),
        hanging_seen_after_one,
        live_all_twice,
    );
    // The listener threads block in accept: leave by exiting the process.
    io::stdout().flush().ok();
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// probe: is the server available to a fresh client, second by second?

/// `--addr A --path P --seconds N [--every-ms 100] [--limit-ms 500]`: a GET on a fresh
/// connection every `every-ms`; a second counts as available when every probe in it got a 200
/// within `limit-ms`. Prints the timeline (`#` available, `.` not) and the counts.
fn probe(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let path = o.str("path")?.to_string();
    let seconds: u64 = o.num("seconds", None)?;
    let every = Duration::from_millis(o.num("every-ms", Some(100))?);
    let limit = Duration::from_millis(o.num("limit-ms", Some(500))?);
    let started = Instant::now();
    let mut per_second = vec![(0u32, 0u32); seconds as usize];
    let mut worst = Duration::ZERO;
    let mut statuses: HashMap<String, u32> = HashMap::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let second = started.elapsed().as_secs() as usize;
        let sent = Instant::now();
        // A fresh connection each time, as a new client would open.
        let mut conn = Conn::new(addr, limit.max(Duration::from_secs(2)));
        let answer = conn.get(&path);
        let took = sent.elapsed();
        worst = worst.max(took);
        let ok = matches!(&answer, Ok(r) if r.status == 200) && took <= limit;
        let label = match &answer {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *statuses.entry(label).or_default() += 1;
        if let Some(slot) = per_second.get_mut(second) {
            slot.0 += u32::from(ok);
            slot.1 += 1;
        }
        thread::sleep(every.saturating_sub(sent.elapsed()));
    }
    let timeline: String = per_second
        .iter()
        .map(|&(ok, all)| if all > 0 && ok == all { '#' } else { '.' })
        .collect();
    let available = timeline.chars().filter(|&c| c == '#').count();
    let mut statuses: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    statuses.sort();
    println!(
        "seconds={seconds} available={available} worst_ms={:.1} answers={} timeline={timeline}",
        worst.as_secs_f64() * 1e3,
        statuses.join(",")
    );
    Ok(())
}

//! The subcommands of the scale and summary rows (15, 16): many supernodes at once, their
//! index summaries, their counters, and the announcements on their group.
//!
//! | subcommand      | what it does |
//! |---|---|
//! | `ready`         | polls supernodes' status until each holds N fresh summaries (or hears N peers) |
//! | `counters`      | one metric of many supernodes, summed over its labels, in one pass |
//! | `digest`        | fetches a supernode's summary (whole or a delta) and describes it |
//! | `announcements` | listens on a group for a supernode's `27` datagrams: how many, how long |

use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::{Opts, Res, group_opt, mcast_socket};

/// `--addrs host:port,...`: loopback addresses only, as `--addr`.
fn addrs(o: &Opts) -> Res<Vec<SocketAddr>> {
    o.str("addrs")?
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|text| {
            let addr: SocketAddr = text
                .parse()
                .map_err(|_| format!("--addrs: not host:port: {text:?}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "--addrs {addr}: only loopback addresses are allowed"
                ));
            }
            Ok(addr)
        })
        .collect()
}

fn status(conn: &mut Conn) -> Res<serde_json::Value> {
    let response = conn
        .get("/api/supernode/status")
        .map_err(|e| format!("GET status: {e}"))?;
    if response.status != 200 {
        return Err(format!("GET status answered {}", response.status));
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|e| format!("status: {e}"))?;
    Ok(body["data"].clone())
}

/// What one supernode's status says: (fresh summaries, peers heard, whether it holds `held`
/// fresh).
fn readiness(data: &serde_json::Value, held: Option<&str>) -> (usize, usize, bool) {
    let empty = Vec::new();
    let summaries = data["summaries"].as_array().unwrap_or(&empty);
    let fresh = summaries
        .iter()
        .filter(|s| s["fresh"].as_bool() == Some(true))
        .count();
    let has = held.is_none_or(|want| {
        summaries
            .iter()
            .any(|s| s["fresh"].as_bool() == Some(true) && s["held"].as_str() == Some(want))
    });
    let peers = data["peers"].as_array().map_or(0, Vec::len);
    (fresh, peers, has)
}

/// `ready --addrs A,B --fresh N --peers N [--held EPOCH/VERSION] --deadline-s S`: polls every
/// 20 ms until every supernode holds at least `fresh` fresh summaries, hears at least `peers`
/// peers and (with `--held`) holds that version of a summary, fresh. Prints how long it took,
/// or, at the deadline, how far each one got (and fails).
pub fn ready(o: &Opts) -> Res<()> {
    let addrs = addrs(o)?;
    let want_fresh: usize = o.num("fresh", Some(0))?;
    let want_peers: usize = o.num("peers", Some(0))?;
    let held = o.opt("held");
    let deadline = Duration::from_secs(o.num("deadline-s", Some(30))?);
    let started = Instant::now();
    let mut conns: Vec<Conn> = addrs
        .iter()
        .map(|&a| Conn::new(a, Duration::from_secs(5)))
        .collect();
    let mut done = vec![false; addrs.len()];
    let mut last = vec![(0, 0, false); addrs.len()];
    loop {
        for (k, conn) in conns.iter_mut().enumerate() {
            if done[k] {
                continue;
            }
            if let Ok(data) = status(conn) {
                last[k] = readiness(&data, held);
                let (fresh, peers, has) = last[k];
                done[k] = fresh >= want_fresh && peers >= want_peers && has;
            }
        }
        if done.iter().all(|&d| d) {
            println!(
                "ok=true ready_ms={:.0} supernodes={}",
                started.elapsed().as_secs_f64() * 1e3,
                addrs.len()
            );
            return Ok(());
        }
        if started.elapsed() > deadline {
            let behind: Vec<String> = addrs
                .iter()
                .zip(&last)
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|((a, (f, p, h)), _)| format!("{a}:fresh{f}/peers{p}/held{h}"))
                .collect();
            println!(
                "ok=false ready={}/{} behind={}",
                done.iter().filter(|&&d| d).count(),
                addrs.len(),
                behind.join(",")
            );
            return Err(format!(
                "not ready after {} s: {}",
                deadline.as_secs(),
                behind.join(" ")
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `counters --addrs A,B --metric NAME [--label TEXT]`: for each supernode, the sum of the
/// series of NAME (those whose labels contain TEXT, with it) on its `/metrics`, as
/// `values=a,b,...` (`-1` where the page could not be had).
pub fn counters(o: &Opts) -> Res<()> {
    let addrs = addrs(o)?;
    let name = o.str("metric")?;
    let label = o.opt("label");
    let mut values = Vec::new();
    for addr in addrs {
        let mut conn = Conn::new(addr, Duration::from_secs(5));
        let value = match conn.get("/metrics") {
            Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body)
                .lines()
                .filter(|line| {
                    line.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                })
                .filter(|line| label.is_none_or(|l| line.contains(l)))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>(),
            _ => -1.0,
        };
        values.push(format!("{value}"));
    }
    println!("values={}", values.join(","));
    Ok(())
}

/// `digest --addr A [--epoch HEX --since V]`: fetches the summary (whole, or what came after
/// version V of epoch HEX) and prints its kind, size in bytes, epoch, version and, whole, the
/// filter's bits and hashes (or, a delta, the ids in it).
pub fn digest(o: &Opts) -> Res<()> {
    let addr = o.addr()?;
    let path = match (o.opt("epoch"), o.opt("since")) {
        (Some(epoch), Some(since)) => format!("/api/supernode/digest?epoch={epoch}&since={since}"),
        _ => "/api/supernode/digest".to_string(),
    };
    let mut conn = Conn::new(addr, Duration::from_secs(30));
    let response = conn.get(&path).map_err(|e| format!("GET {path}: {e}"))?;
    if response.status != 200 {
        return Err(format!("GET {path} answered {}", response.status));
    }
    let b = &response.body;
    if b.len() < 21 || &b[..4] != b"SPD1" {
        return Err(format!("GET {path}: not a summary ({} bytes)", b.len()));
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let (epoch, version) = (u64_at(5), u64_at(13));
    let rest = match b[4] {
        0 if b.len() >= 30 => format!("kind=full hashes={} bits={}", b[21], u64_at(22)),
        1 if b.len() >= 25 => format!(
            "kind=delta ids={}",
            u32::from_le_bytes(b[21..25].try_into().expect("4 bytes"))
        ),
        k => {
            return Err(format!(
                "GET {path}: a summary of kind {k}, {} bytes",
                b.len()
            ));
        }
    };
    println!(
        "bytes={} epoch={epoch:x} version={version} {rest}",
        response.body.len()
    );
    Ok(())
}

/// `announcements --group G --port P --contains TEXT --ms N [--max K]`: listens on the group
/// (loopback, as the supernodes do) for N ms or until K datagrams containing TEXT came; prints
/// each (`at=<unix time, s> bytes=<size> text=<datagram>`), then how many came and their sizes.
pub fn announcements(o: &Opts) -> Res<()> {
    let group: Ipv4Addr = group_opt(o)?;
    let port: u16 = o.num("port", None)?;
    let contains = o.str("contains")?.as_bytes().to_vec();
    let window = Duration::from_millis(o.num("ms", None)?);
    let max: usize = o.num("max", Some(usize::MAX))?;
    let socket = mcast_socket(group, port).map_err(|e| format!("group socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut sizes = Vec::new();
    let mut buf = [0u8; 2048];
    while started.elapsed() < window && sizes.len() < max {
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && buf[..n].windows(contains.len()).any(|w| w == contains)
        {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            println!(
                "at={at:.6} bytes={n} text={}",
                String::from_utf8_lossy(&buf[..n]).replace(char::is_whitespace, "_")
            );
            sizes.push(n);
        }
    }
    let sizes_text: Vec<String> = sizes.iter().map(usize::to_string).collect();
    println!(
        "count={} bytes={} sizes={}",
        sizes.len(),
        sizes.iter().sum::<usize>(),
        if sizes.is_empty() {
            "-".to_string()
        } else {
            sizes_text.join(",")
        }
    );
    Ok(())
}

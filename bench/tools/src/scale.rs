//! Many supernodes at once (the rows of 2, 8 and 32 supernodes and of index summaries):
//! whether they are ready, their counters, their summaries, and the announcements on their
//! group.
//!
//! | subcommand      | what it does |
//! |---|---|
//! | `ready`         | polls supernodes' status until each holds N fresh summaries (or hears N peers) |
//! | `counters`      | one metric of many supernodes, summed over its labels, in one pass |
//! | `digest`        | fetches a supernode's summary (whole or a delta) and describes it |
//! | `announcements` | listens on a group for a supernode's `27` datagrams: how many, how long |

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::opts::{Opts, Res};
use crate::pingpong::{group_opt, mcast_socket};
use crate::procs;

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

/// What supernodes must show to be ready.
#[derive(Default)]
pub struct Want<'a> {
    pub fresh: usize,
    pub peers: usize,
    /// `EPOCH/VERSION`: a summary each must hold, fresh.
    pub held: Option<&'a str>,
}

/// Whether they got ready, and the line that says how fast or how far each one got.
pub struct Ready {
    pub ok: bool,
    pub line: String,
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// Polls every 20 ms until every supernode holds at least `fresh` fresh summaries, hears at
/// least `peers` peers and (with `held`) holds that version of a summary, fresh; or until the
/// deadline (0: one look).
pub fn ready(addrs: &[SocketAddr], want: &Want, deadline: Duration) -> Res<Ready> {
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
                last[k] = readiness(&data, want.held);
                let (fresh, peers, has) = last[k];
                done[k] = fresh >= want.fresh && peers >= want.peers && has;
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(Ready {
                ok: true,
                line: format!(
                    "ok=true ready_ms={:.0} supernodes={}",
                    started.elapsed().as_secs_f64() * 1e3,
                    addrs.len()
                ),
            });
        }
        if started.elapsed() > deadline {
            let behind: Vec<String> = addrs
                .iter()
                .zip(&last)
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|((a, (f, p, h)), _)| format!("{a}:fresh{f}/peers{p}/held{h}"))
                .collect();
            return Ok(Ready {
                ok: false,
                line: format!(
                    "ok=false ready={}/{} behind={}",
                    done.iter().filter(|&&d| d).count(),
                    addrs.len(),
                    behind.join(",")
                ),
            });
        }
        procs::sleep(Duration::from_millis(20))?;
    }
}

/// `ready --addrs A,B --fresh N --peers N [--held EPOCH/VERSION] --deadline-s S`: prints how
/// long it took, or, at the deadline, how far each one got (and fails).
pub fn ready_cmd(o: &Opts) -> Res<()> {
    let want = Want {
        fresh: o.num("fresh", Some(0))?,
        peers: o.num("peers", Some(0))?,
        held: o.opt("held"),
    };
    let deadline = Duration::from_secs(o.num("deadline-s", Some(30))?);
    let outcome = ready(&o.addrs()?, &want, deadline)?;
    println!("{outcome}");
    if outcome.ok {
        Ok(())
    } else {
        Err(format!("not ready after {} s", deadline.as_secs()))
    }
}

/// The sum of the series of metric `name` (those whose labels contain `label`, with it) in a
/// `/metrics` page.
pub fn metric_sum(page: &str, name: &str, label: Option<&str>) -> f64 {
    page.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| label.is_none_or(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// For each supernode, [`metric_sum`] on its `/metrics` (-1 where the page could not be had).
pub fn counters(addrs: &[SocketAddr], name: &str, label: Option<&str>) -> Vec<f64> {
    addrs
        .iter()
        .map(|&addr| {
            let mut conn = Conn::new(addr, Duration::from_secs(5));
            match conn.get("/metrics") {
                Ok(r) if r.status == 200 => {
                    metric_sum(&String::from_utf8_lossy(&r.body), name, label)
                }
                _ => -1.0,
            }
        })
        .collect()
}

/// `counters --addrs A,B --metric NAME [--label TEXT]`: prints `values=a,b,...`.
pub fn counters_cmd(o: &Opts) -> Res<()> {
    let values = counters(&o.addrs()?, o.str("metric")?, o.opt("label"));
    let values: Vec<String> = values.iter().map(f64::to_string).collect();
    println!("values={}", values.join(","));
    Ok(())
}

/// A summary as `GET /api/supernode/digest` sends it.
pub struct Digest {
    pub bytes: usize,
    pub epoch: u64,
    pub version: u64,
    /// Whole: the filter's hashes and bits; a delta: the ids in it.
    pub kind: DigestKind,
}

pub enum DigestKind {
    Full { hashes: u8, bits: u64 },
    Delta { ids: u32 },
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bytes={} epoch={:x} version={} ",
            self.bytes, self.epoch, self.version
        )?;
        match self.kind {
            DigestKind::Full { hashes, bits } => write!(f, "kind=full hashes={hashes} bits={bits}"),
            DigestKind::Delta { ids } => write!(f, "kind=delta ids={ids}"),
        }
    }
}

/// Reads a summary's head: `SPD1`, its kind, epoch and version, then the filter's hashes and
/// bits (whole) or the count of ids (a delta).
pub fn parse_digest(b: &[u8]) -> Res<Digest> {
    if b.len() < 21 || &b[..4] != b"SPD1" {
        return Err(format!("not a summary ({} bytes)", b.len()));
    }
    let u64_at = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(word)
    };
    let kind = match b[4] {
        0 if b.len() >= 30 => DigestKind::Full {
            hashes: b[21],
            bits: u64_at(22),
        },
        1 if b.len() >= 25 => DigestKind::Delta {
            ids: u32::from_le_bytes([b[21], b[22], b[23], b[24]]),
        },
        k => return Err(format!("a summary of kind {k}, {} bytes", b.len())),
    };
    Ok(Digest {
        bytes: b.len(),
        epoch: u64_at(5),
        version: u64_at(13),
        kind,
    })
}

/// Fetches a supernode's summary: whole, or what came after `since` = (epoch, version).
pub fn digest(addr: SocketAddr, since: Option<(u64, u64)>) -> Res<Digest> {
    let path = match since {
        Some((epoch, version)) => {
            format!("/api/supernode/digest?epoch={epoch:x}&since={version}")
        }
        None => "/api/supernode/digest".to_string(),
    };
    let mut conn = Conn::new(addr, Duration::from_secs(30));
    let response = conn.get(&path).map_err(|e| format!("GET {path}: {e}"))?;
    if response.status != 200 {
        return Err(format!("GET {path} answered {}", response.status));
    }
    parse_digest(&response.body).map_err(|e| format!("GET {path}: {e}"))
}

/// `digest --addr A [--epoch HEX --since V]`: prints the summary's kind, size in bytes, epoch,
/// version and, whole, the filter's bits and hashes (or, a delta, the ids in it).
pub fn digest_cmd(o: &Opts) -> Res<()> {
    let since = match (o.opt("epoch"), o.opt("since")) {
        (Some(epoch), Some(since)) => Some((
            u64::from_str_radix(epoch, 16).map_err(|_| format!("--epoch: not hex: {epoch:?}"))?,
            since
                .parse()
                .map_err(|_| format!("--since: not a number: {since:?}"))?,
        )),
        _ => None,
    };
    println!("{}", digest(o.addr()?, since)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_matching_series() {
        let page = "# HELP superpeer_datagrams_received_total x\n\
            superpeer_datagrams_received_total{kind=\"ping\"} 3\n\
            superpeer_datagrams_received_total{kind=\"digest\"} 4\n\
            superpeer_datagrams_received_total_other 100\n\
            superpeer_http_requests_total{route=\"/api/supernode/digest\",status=\"200\"} 31\n";
        assert_eq!(
            metric_sum(page, "superpeer_datagrams_received_total", None),
            7.0
        );
        assert_eq!(
            metric_sum(
                page,
                "superpeer_datagrams_received_total",
                Some("kind=\"digest\"")
            ),
            4.0
        );
        assert_eq!(
            metric_sum(
                page,
                "superpeer_http_requests_total",
                Some("route=\"/api/supernode/digest\"")
            ),
            31.0
        );
        assert_eq!(metric_sum(page, "absent", None), 0.0);
    }

    #[test]
    fn summary_heads() {
        let mut whole = b"SPD1\0".to_vec();
        whole.extend_from_slice(&0xab5a_u64.to_le_bytes());
        whole.extend_from_slice(&300_000_u64.to_le_bytes());
        whole.push(7);
        whole.extend_from_slice(&10_500_032_u64.to_le_bytes());
        let d = parse_digest(&whole).unwrap();
        assert_eq!(
            d.to_string(),
            "bytes=30 epoch=ab5a version=300000 kind=full hashes=7 bits=10500032"
        );
        let mut delta = b"SPD1\x01".to_vec();
        delta.extend_from_slice(&1_u64.to_le_bytes());
        delta.extend_from_slice(&2_u64.to_le_bytes());
        delta.extend_from_slice(&10_u32.to_le_bytes());
        assert_eq!(
            parse_digest(&delta).unwrap().to_string(),
            "bytes=25 epoch=1 version=2 kind=delta ids=10"
        );
        assert!(parse_digest(b"nope").is_err());
        let mut odd = whole.clone();
        odd[4] = 9;
        assert!(parse_digest(&odd).is_err());
    }
}

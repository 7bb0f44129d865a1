//! The liveness sweep's farm (1,000 fake nodes: 900 answer their health check, 100 accept
//! and never answer) and the availability probe of `scripts/attack.sh`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::opts::{Opts, Res};
use crate::util::make_id;

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

pub fn farm(o: &Opts) -> Res<()> {
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
pub fn probe(o: &Opts) -> Res<()> {
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

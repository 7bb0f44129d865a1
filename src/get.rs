//! `superpeer get <id|name> [--via URL] [-o FILE]`: finds a resource's holders through a node
//! or a supernode, downloads it into `FILE.part` (resuming what an earlier try left there),
//! moves to the next holder when one fails, and keeps the file only once its SHA-256 is the
//! id. A progress line on a terminal; nothing when standard error is not one.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::id::ResourceId;

/// What to fetch and where to put it.
pub struct GetArgs {
    pub target: String,
    pub via: String,
    pub output: Option<PathBuf>,
}

/// A resource found: its id, a name for the file, every holder.
struct Found {
    id: ResourceId,
    name: Option<String>,
    holders: Vec<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<(u16, serde_json::Value), String> {
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Finds `target` (an id, or a part of a name that only one resource has) through `via`.
fn find(agent: &ureq::Agent, via: &str, target: &str) -> Result<Found, String> {
    let via = via.trim_end_matches('/');
    let supernode = get_json(agent, &format!("{via}/api/supernode/status"))?.0 == 200;
    if let Some(id) = ResourceId::parse(target) {
        let url = if supernode {
            format!("{via}/api/supernode/search/{id}?all=true")
        } else {
            format!("{via}/api/node/resources/{id}")
        };
        let (status, body) = get_json(agent, &url)?;
        let data = &body["data"];
        return match status {
            // Held by the node asked: it is the holder.
            200 if !supernode => Ok(Found {
                id,
                name: data["name"].as_str().map(String::from),
                holders: vec![via.trim_start_matches("http://").to_string()],
            }),
            200 => Ok(Found {
                id,
                name: data["file"]["name"].as_str().map(String::from),
                holders: strings(&data["file"]["locations"]),
            }),
            302 => Ok(Found {
                id,
                name: data["info"]["name"].as_str().map(String::from),
                holders: strings(&data["info"]["locations"]),
            }),
            404 => Err(format!("nobody has {id}")),
            other => Err(format!("{url} answered {other}: {}", body["description"])),
        };
    }
    let route = if supernode { "supernode" } else { "node" };
    let mut query = String::new();
    for byte in target.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                query.push(char::from(byte))
            }
            _ => query.push_str(&format!("%{byte:02X}")),
        }
    }
    let url = format!("{via}/api/{route}/search?file_name={query}&limit=20");
    let (status, body) = get_json(agent, &url)?;
    if status != 200 {
        return Err(format!("{url} answered {status}: {}", body["description"]));
    }
    let matches = body["data"].as_array().cloned().unwrap_or_default();
    let name_of = |m: &serde_json::Value| m["file"]["name"].as_str().unwrap_or("").to_string();
    // One match, or one whose whole name is the text.
    let chosen = match &matches[..] {
        [] => return Err(format!("no name contains {target:?}")),
        [one] => one.clone(),
        many => match many.iter().find(|m| name_of(m) == target) {
            Some(exact) => exact.clone(),
            None => {
                let list: Vec<String> = many
                    .iter()
                    .map(|m| format!("  {}  {}", m["id"].as_str().unwrap_or(""), name_of(m)))
                    .collect();
                return Err(format!(
                    "{} resources match {target:?}; give one's id:\n{}",
                    many.len(),
                    list.join("\n")
                ));
            }
        },
    };
    Ok(Found {
        id: chosen["id"]
            .as_str()
            .and_then(ResourceId::parse)
            .ok_or("a match without an id")?,
        name: Some(name_of(&chosen)),
        holders: strings(&chosen["file"]["locations"]),
    })
}

/// Shows how far a download is, on a terminal only, at most ten times a second.
struct Progress {
    shown: bool,
    last: Instant,
    started: Instant,
    label: String,
}

impl Progress {
    fn update(&mut self, done: u64, total: u64, from: u64) {
        if !self.shown || self.last.elapsed() < Duration::from_millis(100) && done < total {
            return;
        }
        self.last = Instant::now();
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let rate = (done - from) as f64 / self.started.elapsed().as_secs_f64().max(1e-3) / 1e6;
        let width = 30;
        let filled = (percent as usize * width / 100).min(width);
        eprint!(
            "\r{} [{}{}] {percent:>3}% {:.1}/{:.1} MB {rate:.1} MB/s ",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            done as f64 / 1e6,
            total as f64 / 1e6
        );
        if done >= total {
            eprintln!();
        }
    }
}

/// Downloads from `holder` into `part`, from what it holds already: `Ok(())` once the whole
/// file is there.
fn fetch(
    agent: &ureq::Agent,
    holder: &str,
    id: ResourceId,
    part: &Path,
    progress: &mut Progress,
) -> Result<(), String> {
    let have = std::fs::metadata(part).map_or(0, |m| m.len());
    let url = format!("http://{holder}/api/node/resources/{id}/content");
    let mut request = agent.get(&url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request.call().map_err(|e| format!("{holder}: {e}"))?;
    let status = response.status().as_u16();
    let (mut file, from, total) = match status {
        206 => {
            let total = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{holder}: a 206 without its length"))?;
            let file = OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(|e| format!("{}: {e}", part.display()))?;
            (file, have, total)
        }
        200 => {
            let total = response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let file = File::create(part).map_err(|e| format!("{}: {e}", part.display()))?;
            (file, 0, total)
        }
        // Everything is there already.
        416 if have > 0 => return Ok(()),
        other => return Err(format!("{holder} answered {other}")),
    };
    progress.started = Instant::now();
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut buffer = vec![0u8; 256 << 10];
    let mut done = from;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(format!("{holder}: {e} after {done} bytes")),
        };
        file.write_all(&buffer[..n])
            .map_err(|e| format!("{}: {e}", part.display()))?;
        done += n as u64;
        progress.update(done, total, from);
    }
    if done < total {
        return Err(format!(
            "{holder}: the download stopped at {done} of {total} bytes"
        ));
    }
    Ok(())
}

fn sha256_of(path: &Path) -> std::io::Result<ResourceId> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(ResourceId(hasher.finalize().into()))
}

/// Runs `superpeer get`; the error is what to tell the user.
pub fn run(args: &GetArgs) -> Result<PathBuf, String> {
    let agent = agent();
    let found = find(&agent, &args.via, &args.target)?;
    if found.holders.is_empty() {
        return Err(format!("nobody has {}", found.id));
    }
    let output = args.output.clone().unwrap_or_else(|| {
        // The name's last part, never a path of the sender's choosing.
        let name = found
            .name
            .as_deref()
            .and_then(|n| n.rsplit('/').next())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .map_or_else(|| found.id.to_string(), String::from);
        PathBuf::from(name)
    });
    let part = PathBuf::from(format!("{}.part", output.display()));
    let mut progress = Progress {
        shown: std::io::stderr().is_terminal(),
        last: Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now),
        started: Instant::now(),
        label: output.display().to_string(),
    };
    let mut failures = Vec::new();
    for holder in &found.holders {
        // A resumed download that does not hash right is tried once more from nothing: the
        // bytes an earlier try left may be the wrong ones.
        for _ in 0..2 {
            let resumed = part.exists();
            match fetch(&agent, holder, found.id, &part, &mut progress) {
                Ok(()) => {
                    let got = sha256_of(&part).map_err(|e| format!("{}: {e}", part.display()))?;
                    if got == found.id {
                        std::fs::rename(&part, &output)
                            .map_err(|e| format!("{}: {e}", output.display()))?;
                        return Ok(output);
                    }
                    let _ = std::fs::remove_file(&part);
                    failures.push(format!("{holder}: the bytes hash to {got}, not the id"));
                    if !resumed {
                        break;
                    }
                }
                Err(e) => {
                    failures.push(e);
                    break;
                }
            }
        }
    }
    Err(format!(
        "no holder gave {} (kept what came in {}):\n  {}",
        found.id,
        part.display(),
        failures.join("\n  ")
    ))
}

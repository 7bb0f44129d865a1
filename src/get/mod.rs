//! `superpeer get <id|name> [--via URL] [-o FILE] [--force]`: finds a resource's holders
//! through a node or a supernode, downloads it into `FILE.part` (resuming what an earlier try
//! left there), moves to the next holder when one fails, and keeps the file only once its
//! SHA-256 is the id. A progress line on a terminal; nothing when standard error is not one.
//!
//! Everything the network says is an attacker's to choose (a holder or a supernode on the LAN
//! may be one): a right hash proves the bytes, not the name nor the size. So a name from the
//! network is only ever a plain, visible file name in the current folder, nothing is replaced
//! without `--force`, what is printed has its control characters escaped, and no holder gets
//! more bytes written than the length it stated.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::id::ResourceId;
use crate::pieces::PieceList;

mod swarm;

/// What to fetch and where to put it.
pub struct GetArgs {
    pub target: String,
    pub via: String,
    pub output: Option<PathBuf>,
    /// Replace `output` when it exists.
    pub force: bool,
}

/// A resource found: its id, a name for the file, every holder.
struct Found {
    id: ResourceId,
    name: Option<String>,
    holders: Vec<String>,
}

fn agent() -> ureq::Agent {
    agent_within(Duration::from_secs(30), Duration::from_secs(60))
}

/// An agent for the holders: an answer's head within `head`, its body within `body`.
fn agent_within(head: Duration, body: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        // A holder that accepts and never answers must not hold the client forever.
        .timeout_recv_response(Some(head))
        .timeout_recv_body(Some(body))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<(u16, serde_json::Value), String> {
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("{url}: {}", said(e)))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("{url}: {}", said(e)))?;
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

/// `text` as it may go to a terminal: control characters, and the bidirectional overrides that
/// reorder what a terminal shows, escaped as Rust's `escape_debug` writes them (`\u{1b}`,
/// `\n`), so a name from the network cannot move the cursor, recolour or forge a line.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// A path as it may be printed.
pub fn shown(path: &Path) -> String {
    printable(&path.display().to_string())
}

/// An error's text (it may quote what a server sent) as it may be printed.
fn said(error: impl std::fmt::Display) -> String {
    printable(&error.to_string())
}

/// The file name to save a resource under when the network calls it `name`: its last path
/// part, never a path of the sender's choosing. `None` when that part is empty (the id is used
/// instead); an error when it would land on a hidden file or a folder (a leading `.`: `.bashrc`,
/// `.`, `..`) or holds control characters (NUL included): the user chooses with `-o`.
fn file_name(name: &str) -> Result<Option<String>, String> {
    let last = name.rsplit('/').next().unwrap_or(name);
    let refused = |why: &str| {
        Err(format!(
            "the network names this file {last:?}, {why}; refused: choose a file name with -o"
        ))
    };
    if last.is_empty() {
        Ok(None)
    } else if last.starts_with('.') {
        refused("which starts with '.'")
    } else if last.chars().any(char::is_control) {
        refused("which holds control characters")
    } else {
        Ok(Some(last.to_string()))
    }
}

/// Finds `target` (an id, or a part of a name that only one resource has) through `via`.
fn find(agent: &ureq::Agent, via: &str, target: &str) -> Result<Found, String> {
    let via = via.trim_end_matches('/');
    let supernode = get_json(agent, &format!("{via}/api/supernode/status"))?.0 == 200;
    if let Some(id) = ResourceId::parse(target) {
        let url = if supernode {
            format!("{via}/api/supernode/search/{id}?all=true")
        } else {
            // A node asks its supernode for every holder too.
            format!("{via}/api/node/resources/{id}?all=true")
        };
        let (status, body) = get_json(agent, &url)?;
        let data = &body["data"];
        return match status {
            // Held by the node asked: it, and every other holder it knows.
            200 if !supernode => Ok(Found {
                id,
                name: data["name"].as_str().map(String::from),
                holders: match strings(&data["locations"]) {
                    every if !every.is_empty() => every,
                    _ => vec![via.trim_start_matches("http://").to_string()],
                },
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
            other => Err(format!(
                "{url} answered {other}: {}",
                said(&body["description"])
            )),
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
        return Err(format!(
            "{url} answered {status}: {}",
            said(&body["description"])
        ));
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
                    .map(|m| {
                        let id = m["id"].as_str().unwrap_or("");
                        format!("  {}  {}", printable(id), printable(&name_of(m)))
                    })
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
    /// Shows nothing: a node fetching for a client.
    fn hidden() -> Progress {
        Progress {
            shown: false,
            last: Instant::now(),
            started: Instant::now(),
            label: String::new(),
        }
    }

    fn update(&mut self, done: u64, total: u64, from: u64) {
        self.show(done, total, from, "");
    }

    /// [`Progress::update`], with how many holders send pieces now.
    fn update_swarm(&mut self, done: u64, total: u64, from: u64, holders: usize) {
        let plural = if holders == 1 { "" } else { "s" };
        self.show(done, total, from, &format!("{holders} holder{plural}"));
    }

    fn show(&mut self, done: u64, total: u64, from: u64, more: &str) {
        if !self.shown || self.last.elapsed() < Duration::from_millis(100) && done < total {
            return;
        }
        self.last = Instant::now();
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let rate = (done - from) as f64 / self.started.elapsed().as_secs_f64().max(1e-3) / 1e6;
        let width = 30;
        let filled = (percent as usize * width / 100).min(width);
        eprint!(
            "\r{} [{}{}] {percent:>3}% {:.1}/{:.1} MB {rate:.1} MB/s {more} ",
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

/// `Content-Range: bytes <start>-<end>/<total>` as numbers.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, total.parse().ok()?))
}

/// Downloads from `holder` into `part`, from what it holds already: `Ok(())` once the whole
/// file is there. The holder is held to the length it states before its body (a 200's
/// `Content-Length`, a 206's `Content-Range`): an answer without one is refused, and a body
/// that goes on past it is an error before a byte past it is written.
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
    let mut response = request
        .call()
        .map_err(|e| format!("{holder}: {}", said(e)))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // Where the body starts in the file, and the file's whole length.
    let (from, total) = match response.status().as_u16() {
        206 => match header("content-range").and_then(content_range) {
            // The rest of the file, as asked.
            Some((start, end, total))
                if start == have && start <= end && end.checked_add(1) == Some(total) =>
            {
                (have, total)
            }
            _ => {
                return Err(format!(
                    "{holder}: a 206 whose Content-Range is not the bytes {have}- asked for"
                ));
            }
        },
        200 => match header("content-length").and_then(|v| v.parse::<u64>().ok()) {
            Some(total) => (0, total),
            // Chunked, or up to the close: a body that might never end (our nodes always
            // state a length).
            None => {
                return Err(format!(
                    "{holder}: a 200 without a Content-Length (a body that may never end); refused"
                ));
            }
        },
        // Everything is there already.
        416 if have > 0 => return Ok(()),
        other => return Err(format!("{holder} answered {other}")),
    };
    let mut file = if from > 0 {
        OpenOptions::new().append(true).open(part)
    } else {
        File::create(part)
    }
    .map_err(|e| format!("{}: {e}", shown(part)))?;
    progress.started = Instant::now();
    // One byte more than stated is enough to know the holder lied.
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take((total - from).saturating_add(1));
    let mut buffer = vec![0u8; 256 << 10];
    let mut done = from;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(format!("{holder}: {} after {done} bytes", said(e))),
        };
        let fits = n.min(usize::try_from(total - done).unwrap_or(usize::MAX));
        file.write_all(&buffer[..fits])
            .map_err(|e| format!("{}: {e}", shown(part)))?;
        done += fits as u64;
        if fits < n {
            return Err(format!(
                "{holder}: sent more than the {total} bytes it stated; the rest was not written"
            ));
        }
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

/// The name the first holder that names `id` gives it (`GET /api/node/resources/<id>`): a
/// search answer that came from another supernode carries none.
fn name_from_holders(agent: &ureq::Agent, id: ResourceId, holders: &[String]) -> Option<String> {
    holders.iter().find_map(|holder| {
        let url = format!("http://{holder}/api/node/resources/{id}");
        let (status, body) = get_json(agent, &url).ok()?;
        let data = &body["data"];
        (status == 200 && data["id"].as_str() == Some(&id.to_string()))
            .then(|| data["name"].as_str().map(String::from))
            .flatten()
    })
}

/// Moves the checked download to `output`: with `force` over whatever is there, otherwise
/// never over a file, even one that appeared during the download (a hard link fails where a
/// rename would replace).
fn keep(part: &Path, output: &Path, force: bool) -> std::io::Result<()> {
    if force {
        return std::fs::rename(part, output);
    }
    match std::fs::hard_link(part, output) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(e),
        // A file system without hard links (FAT): a copy into a file that must be new.
        Err(_) => {
            let mut to = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(output)?;
            if let Err(e) = std::io::copy(&mut File::open(part)?, &mut to) {
                let _ = std::fs::remove_file(output);
                return Err(e);
            }
        }
    }
    std::fs::remove_file(part)
}

/// The first piece list one of `holders` gives for `id`, and which of them gave it.
fn first_list(
    agent: &ureq::Agent,
    id: ResourceId,
    holders: &[String],
) -> Option<(PieceList, usize)> {
    holders
        .iter()
        .enumerate()
        .find_map(|(i, holder)| match swarm::piece_list(agent, holder, id) {
            Ok(list) => Some((list, i)),
            Err(e) => {
                log::debug!("{e}");
                None
            }
        })
}

/// Downloads `id` from every one of `holders` at once into `part`, as `superpeer get` does
/// but silently, for a node that fetches a file for a client. `max_size`: a larger file is
/// refused before a byte of it is fetched. `Ok` once `part` hashes to the id.
pub(crate) fn swarm_quietly(
    id: ResourceId,
    holders: Vec<String>,
    part: &Path,
    max_size: u64,
) -> Result<(), Fetch> {
    let agent = agent();
    let (list, from) = first_list(&agent, id, &holders).ok_or(Fetch::NoList)?;
    if list.size > max_size {
        return Err(Fetch::TooLarge(list.size));
    }
    let swarm = swarm::Swarm {
        agent: &agent,
        id,
        holders,
        part,
    };
    swarm::download(&swarm, list, from, &mut Progress::hidden()).map_err(Fetch::Failed)
}

/// Why [`swarm_quietly`] gave no file.
#[derive(Debug)]
pub(crate) enum Fetch {
    /// No holder gave a piece list.
    NoList,
    /// The file has this many bytes, over the limit.
    TooLarge(u64),
    /// Every holder failed, or the part file could not be written: why.
    Failed(String),
}

/// Runs `superpeer get`; the error is what to tell the user.
pub fn run(args: &GetArgs) -> Result<PathBuf, String> {
    let agent = agent();
    let found = find(&agent, &args.via, &args.target)?;
    // Only a plain host:port goes into a URL, and into what is printed.
    let (holders, odd): (Vec<String>, Vec<String>) = found
        .holders
        .into_iter()
        .partition(|holder| crate::wire::check_location(holder).is_ok());
    let mut failures: Vec<String> = odd
        .iter()
        .map(|holder| format!("{holder:?}: not a host:port"))
        .collect();
    if holders.is_empty() && failures.is_empty() {
        return Err(format!("nobody has {}", found.id));
    }
    let output = match &args.output {
        // The user's choice.
        Some(output) => output.clone(),
        None => {
            let name = match found.name {
                Some(name) => Some(name),
                None => name_from_holders(&agent, found.id, &holders),
            };
            let name = name.as_deref().map(file_name).transpose()?.flatten();
            PathBuf::from(name.unwrap_or_else(|| found.id.to_string()))
        }
    };
    if !args.force && output.symlink_metadata().is_ok() {
        return Err(format!(
            "{} exists already and is left as it is; give --force to replace it, or choose another name with -o",
            shown(&output)
        ));
    }
    let part = PathBuf::from(format!("{}.part", output.display()));
    let mut progress = Progress {
        shown: std::io::stderr().is_terminal(),
        last: Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now),
        started: Instant::now(),
        label: shown(&output),
    };
    let kept = |output: PathBuf| match keep(&part, &output, args.force) {
        Ok(()) => Ok(output),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(format!(
            "{} appeared during the download and is left as it is; the checked file is {} (give --force to replace {0})",
            shown(&output),
            shown(&part)
        )),
        Err(e) => Err(format!("{}: {e}", shown(&output))),
    };
    // From every holder at once when one of them gives a piece list.
    if let Some((list, from)) = first_list(&agent, found.id, &holders) {
        let swarm = swarm::Swarm {
            agent: &agent,
            id: found.id,
            holders: holders.clone(),
            part: &part,
        };
        return match swarm::download(&swarm, list, from, &mut progress) {
            Ok(()) => kept(output),
            Err(e) => Err(format!(
                "no download of {} (kept what came in {}; run the same command again to go on): {e}",
                found.id,
                shown(&part)
            )),
        };
    }
    // Holders without piece lists: one after the other, the whole file from each.
    for holder in &holders {
        // A resumed download that does not hash right is tried once more from nothing: the
        // bytes an earlier try left may be the wrong ones.
        for _ in 0..2 {
            let resumed = part.exists();
            match fetch(&agent, holder, found.id, &part, &mut progress) {
                Ok(()) => {
                    let got = sha256_of(&part).map_err(|e| format!("{}: {e}", shown(&part)))?;
                    if got == found.id {
                        return kept(output);
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
        shown(&part),
        failures.join("\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_from_the_network_is_a_plain_visible_file_name_or_refused() {
        assert_eq!(file_name("report.bin"), Ok(Some("report.bin".into())));
        assert_eq!(
            file_name("a/b/report 2025.bin"),
            Ok(Some("report 2025.bin".into()))
        );
        assert_eq!(file_name("relatório"), Ok(Some("relatório".into())));
        // Nothing to name it by: the id is used.
        assert_eq!(file_name(""), Ok(None));
        assert_eq!(file_name("dir/"), Ok(None));
        for bad in [
            ".bashrc",
            "home/.bashrc",
            ".",
            "..",
            "a/..",
            "x\u{1b}[2J.txt",
            "a\nb",
            "nul\0.txt",
            "del\u{7f}",
        ] {
            let refused = file_name(bad).unwrap_err();
            assert!(refused.contains("-o"), "{refused}");
            assert!(!refused.chars().any(char::is_control), "{refused:?}");
        }
    }

    #[test]
    fn printed_text_has_its_control_characters_escaped() {
        assert_eq!(printable("plain 'name' é.txt"), "plain 'name' é.txt");
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(printable("x\u{202e}fdp.exe"), "x\\u{202e}fdp.exe");
        assert_eq!(printable("\0\u{85}"), "\\0\\u{85}");
    }

    #[test]
    fn content_ranges_parse_or_not() {
        assert_eq!(content_range("bytes 5-9/10"), Some((5, 9, 10)));
        assert_eq!(content_range("bytes */10"), None);
        assert_eq!(content_range("bytes 5-9"), None);
        assert_eq!(content_range("items 5-9/10"), None);
    }
}

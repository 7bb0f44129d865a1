//! SPEC section 9b: `superpeer get` downloads from every holder at once, checks each piece
//! against the piece list before it is written, drops a holder that sends a bad piece, stalls
//! or leaves, and replaces a piece list that lies. Honest holders are real nodes; the liars
//! are fake holders on threads of the test (real sockets, registered with a real supernode)
//! that serve the same file with one lie each.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Pieces of 16 KiB: files of a few hundred KiB have dozens.
const PIECE: usize = 16 << 10;

/// How a fake holder lies.
#[derive(Clone, Copy)]
enum Lie {
    /// The byte at this offset is flipped in every piece it sends.
    Byte(usize),
    /// The first byte of every piece of this size is flipped.
    EveryPiece(usize),
    /// Its first answer sends half of the piece, then nothing (the connection held open).
    Stall,
    /// Serves this many pieces, then closes every connection without an answer.
    LeaveAfter(usize),
    /// Flips the byte at this offset in what it serves and in its piece list, which therefore
    /// matches its own bytes and lies about the file.
    List(usize),
}

/// A fake holder: its `host:port`, and how many pieces it was asked for.
struct Fake {
    location: String,
    asked: Arc<AtomicUsize>,
}

fn fake(content: &[u8], lie: Lie) -> Fake {
    fake_with(content, lie, PIECE)
}

/// [`fake`], with pieces of `piece` bytes in its list.
fn fake_with(content: &[u8], lie: Lie, piece: usize) -> Fake {
    let mut served = content.to_vec();
    if let Lie::Byte(at) | Lie::List(at) = lie {
        served[at] ^= 0xff;
    }
    if let Lie::EveryPiece(size) = lie {
        for at in (0..served.len()).step_by(size) {
            served[at] ^= 0xff;
        }
    }
    let listed = match lie {
        Lie::List(_) => &served,
        _ => content,
    };
    let pieces: Vec<String> = listed.chunks(piece).map(sha256).collect();
    let id = sha256(content);
    let list = serde_json::json!({"data": {"id": id, "size": content.len(), "piece_size": piece,
        "pieces": pieces}, "entity": "pieces"})
    .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let location = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let (served, list) = (Arc::new(served), Arc::new(list));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (served, list, counter) = (served.clone(), list.clone(), counter.clone());
            std::thread::spawn(move || answer(stream, &served, &list, &counter, lie));
        }
    });
    Fake { location, asked }
}

/// Answers the requests of one connection.
fn answer(mut stream: TcpStream, served: &[u8], list: &str, asked: &AtomicUsize, lie: Lie) {
    let limit = Some(Duration::from_secs(30));
    stream.set_read_timeout(limit).unwrap();
    loop {
        let Some((head, path)) = read_request_head(&mut stream) else {
            return;
        };
        let send = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).is_ok() && stream.write_all(body).is_ok()
        };
        if !path.ends_with("/content") {
            let body = if path.ends_with("/pieces") {
                list
            } else {
                "{\"data\":\"ok\"}"
            };
            if !send(&mut stream, "200 OK", "", body.as_bytes()) {
                return;
            }
            continue;
        }
        let (start, end) = head
            .lines()
            .find_map(|line| {
                let (a, b) = line.strip_prefix("range: bytes=")?.trim().split_once('-')?;
                Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
            })
            .unwrap_or((0, served.len() - 1));
        let n = asked.fetch_add(1, Ordering::SeqCst);
        match lie {
            Lie::LeaveAfter(pieces) if n >= pieces => return,
            Lie::Stall if n == 0 => {
                let range = format!("Content-Range: bytes {start}-{end}/{}\r\n", served.len());
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n{range}\r\n",
                    end - start + 1
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&served[start..start + (end - start) / 2]);
                // Held open, silent, until the client hangs up (or 30 s).
                let _ = stream.read(&mut [0u8; 1]);
                return;
            }
            _ => {}
        }
        let range = format!("Content-Range: bytes {start}-{end}/{}\r\n", served.len());
        if !send(
            &mut stream,
            "206 Partial Content",
            &range,
            &served[start..=end],
        ) {
            return;
        }
    }
}

/// `superpeer get` of `id` through `via` into `dir` as `out`, within 60 s.
fn superpeer_get(dir: &std::path::Path, id: &str, via: &str, out: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(["get", id, "--via", via, "-o", out])
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until("get to end", Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    child.wait_with_output().unwrap()
}

/// Pieces a real node served (its 206 answers).
fn pieces_served(node: &Proc) -> usize {
    metric(
        node,
        "superpeer_http_requests_total{route=\"/api/node/resources/{id}/content\",status=\"206\"}",
    ) as usize
}

/// A file of `pieces` whole pieces and a bit, that no other test shares.
fn file(seed: u8, pieces: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..(pieces * PIECE) as u32)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect();
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes
}

/// A supernode with a liar registered first (its piece list is the one asked first), then
/// `nodes` real nodes holding `content`.
struct Swarm {
    supernode: Proc,
    nodes: Vec<Proc>,
    _folders: Vec<Folder>,
    liar: Fake,
    out: Folder,
}

fn swarm(content: &[u8], lie: Lie, nodes: usize) -> Swarm {
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    let liar = fake(content, lie);
    register_holder(
        &supernode,
        &liar.location,
        &[(&sha256(content), "swarm.bin")],
    );
    let mut folders = Vec::new();
    let mut started = Vec::new();
    for name in ["n1", "n2"].into_iter().take(nodes) {
        let folder = Folder::with(&[("swarm.bin", content)]);
        let node = Launch::node(name, &folder.path, &[&supernode.url()])
            .env("PIECE_SIZE", &PIECE.to_string())
            .start();
        folders.push(folder);
        started.push(node);
    }
    wait_registered(&supernode, &started.iter().collect::<Vec<_>>());
    Swarm {
        supernode,
        nodes: started,
        _folders: folders,
        liar,
        out: Folder::with(&[]),
    }
}

impl Swarm {
    fn get(&self, content: &[u8], out: &str) -> Output {
        self.get_via(content, out, &self.supernode.url())
    }

    fn get_via(&self, content: &[u8], out: &str, via: &str) -> Output {
        let done = superpeer_get(&self.out.path, &sha256(content), via, out);
        let said = String::from_utf8_lossy(&done.stderr);
        assert!(done.status.success(), "{said}");
        assert_eq!(std::fs::read(self.out.path.join(out)).unwrap(), content);
        assert!(!self.out.path.join(format!("{out}.part")).exists());
        done
    }

    /// Pieces every holder was asked for, the liar's included.
    fn asked(&self) -> usize {
        self.nodes.iter().map(pieces_served).sum::<usize>() + self.liar.asked.load(Ordering::SeqCst)
    }
}

#[test]
fn a_holder_that_sends_a_bad_piece_is_dropped_and_the_file_comes_right() {
    let content = file(31, 40);
    // The lie is in piece 20 of 41.
    let swarm = swarm(&content, Lie::Byte(20 * PIECE + 5), 2);
    swarm.get(&content, "swarm.bin");
    // Every holder sent pieces, each real node at least one.
    for node in &swarm.nodes {
        assert!(pieces_served(node) > 0, "{} served none", node.url());
    }
    // At most a couple fetched twice: the bad piece, and one the liar's other connection had
    // in flight when it was dropped.
    let pieces = content.len().div_ceil(PIECE);
    assert!(
        swarm.asked() <= pieces + 2,
        "{} asked for {pieces} pieces",
        swarm.asked()
    );
    // A resume checks what is on disk: a part file right but for one piece gets that piece.
    let mut part = content.clone();
    part[3 * PIECE] ^= 1;
    std::fs::write(swarm.out.path.join("again.bin.part"), &part).unwrap();
    let before = swarm.asked();
    swarm.get(&content, "again.bin");
    assert_eq!(swarm.asked() - before, 1);
}

#[test]
fn a_holder_that_stalls_mid_piece_does_not_hold_the_download() {
    let content = file(32, 24);
    let swarm = swarm(&content, Lie::Stall, 2);
    let started = Instant::now();
    swarm.get(&content, "swarm.bin");
    // Its piece went to another holder long before its 30 s deadline.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Its other connection went on serving pieces.
    assert!(swarm.liar.asked.load(Ordering::SeqCst) >= 1);
}

#[test]
fn a_holder_that_leaves_half_way_leaves_its_pieces_to_the_others() {
    let content = file(33, 40);
    let swarm = swarm(&content, Lie::LeaveAfter(4), 2);
    swarm.get(&content, "swarm.bin");
    let pieces = content.len().div_ceil(PIECE);
    let from_nodes: usize = swarm.nodes.iter().map(pieces_served).sum();
    assert!(
        from_nodes >= pieces - 4,
        "{from_nodes} of {pieces} from the nodes"
    );
}

#[test]
fn a_piece_list_that_lies_is_replaced_by_another_holder_s() {
    let content = file(34, 40);
    let pieces = content.len().div_ceil(PIECE);
    // The liar's list is asked first; it holds the hash of the liar's piece 7, not the file's.
    // With two nodes, both nodes' bytes for piece 7 disagree with it before the end.
    let lie = Lie::List(7 * PIECE + 100);
    let two = swarm(&content, lie, 2);
    two.get(&content, "swarm.bin");
    assert!(
        two.asked() <= pieces + 3,
        "{} asked for {pieces} pieces",
        two.asked()
    );
    // With one node, the list is found out at the latest at the end: every piece matched it
    // (the liar's own piece 7 among them) and the whole does not hash to the id. Only the
    // pieces whose hashes differ in the node's list are fetched again.
    let one = swarm(&content, lie, 1);
    one.get(&content, "swarm.bin");
    assert!(
        one.asked() <= pieces + 3,
        "{} asked for {pieces} pieces",
        one.asked()
    );
}

#[test]
fn through_a_node_that_holds_the_file_every_holder_sends_pieces() {
    let content = file(35, 40);
    // A liar that leaves at once: both real nodes share the file.
    let swarm = swarm(&content, Lie::LeaveAfter(0), 2);
    swarm.get_via(&content, "swarm.bin", &swarm.nodes[0].url());
    for node in &swarm.nodes {
        assert!(pieces_served(node) > 0, "{} served none", node.url());
    }
}

#[test]
#[ignore = "needs aria2c: make test-tools"]
fn aria2c_downloads_from_every_holder_with_the_metalink_and_finds_the_bad_pieces() {
    // 8 MiB in pieces of 1 MiB (the default): aria2 splits a file over its sources at 1 MiB
    // at the least.
    let content: Vec<u8> = (0..8u32 << 20).map(|i| (i % 241) as u8 ^ 36).collect();
    let id = sha256(&content);
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    // A holder that flips a byte of every piece, and a real node.
    let liar = fake_with(&content, Lie::EveryPiece(1 << 20), 1 << 20);
    register_holder(&supernode, &liar.location, &[(&id, "big.bin")]);
    let folders: Vec<Folder> = (0..1)
        .map(|_| Folder::with(&[("big.bin", &content)]))
        .collect();
    let nodes: Vec<Proc> = folders
        .iter()
        .enumerate()
        .map(|(i, f)| Launch::node(&format!("n{i}"), &f.path, &[&supernode.url()]).start())
        .collect();
    wait_registered(&supernode, &nodes.iter().collect::<Vec<_>>());

    // The document: every holder, the size, the hash, 8 piece hashes.
    let document = supernode.get(&format!("/api/supernode/search/{id}/metalink"));
    assert_eq!(document.status, 200);
    let xml = String::from_utf8(document.body).unwrap();
    assert!(
        xml.contains(&format!("<hash type=\"sha-256\">{id}</hash>")),
        "{xml}"
    );
    assert_eq!(xml.matches("<url ").count(), 2, "{xml}");
    assert_eq!(xml.matches("      <hash>").count(), 8, "{xml}");

    let out = Folder::with(&[]);
    let log = out.path.join("aria2.log");
    let url = format!("{}/api/supernode/search/{id}/metalink", supernode.url());
    let status = Command::new("aria2c")
        .args([
            "--no-conf",
            "--quiet",
            "--follow-metalink=mem",
            "--min-split-size=1M",
        ])
        .args(["--split=8", "--max-connection-per-server=2"])
        .args(["--log-level=info", "--retry-wait=1", "--max-tries=5"])
        .arg(format!("--log={}", log.display()))
        .arg(format!("--dir={}", out.path.display()))
        .arg(&url)
        .env_clear()
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "aria2c: {status}\n{said}");
    assert_eq!(std::fs::read(out.path.join("big.bin")).unwrap(), content);
    // One connection to each holder at once: the liar's pieces were found out by their
    // hashes, and taken from the node.
    assert!(liar.asked.load(Ordering::SeqCst) > 0, "{said}");
    assert!(said.contains("Chunk checksum validation failed"), "{said}");
    for node in &nodes {
        assert!(
            pieces_served(node) > 0,
            "{} served none\n{said}",
            node.url()
        );
    }
}

#[test]
fn metalink_documents_come_from_a_node_and_from_either_supernode() {
    let content = file(37, 3);
    let id = sha256(&content);
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let folder = Folder::with(&[("docs/report.pdf", &content)]);
    let node = Launch::node("n", &folder.path, &[&s2.url()])
        .env("PIECE_SIZE", &PIECE.to_string())
        .start();
    wait_registered(&s2, &[&node]);
    let expect = |xml: &str| {
        assert!(xml.contains("<file name=\"report.pdf\">"), "{xml}");
        assert!(
            xml.contains(&format!("<size>{}</size>", content.len())),
            "{xml}"
        );
        assert!(
            xml.contains(&format!("<pieces length=\"{PIECE}\" type=\"sha-256\">")),
            "{xml}"
        );
        assert_eq!(xml.matches("      <hash>").count(), 4, "{xml}");
        let url = format!("http://{}/api/node/resources/{id}/content", node.location());
        assert!(
            xml.contains(&format!("<url priority=\"1\">{url}</url>")),
            "{xml}"
        );
    };
    // The node's own, and the supernode's it registered with (the piece list fetched from it).
    for (at, path) in [
        (&node, format!("/api/node/resources/{id}/metalink")),
        (&s2, format!("/api/supernode/search/{id}/metalink")),
    ] {
        let answer = at.get(&path);
        assert_eq!(answer.status, 200, "{path}");
        expect(&String::from_utf8(answer.body).unwrap());
    }
    // The other supernode connects to no node of another's: a 302 to the holder's document.
    let answer = s1.get(&format!("/api/supernode/search/{id}/metalink"));
    assert_eq!(answer.status, 302);
    let to = answer.location.unwrap();
    assert_eq!(
        to,
        format!(
            "http://{}/api/node/resources/{id}/metalink",
            node.location()
        )
    );
    expect(&String::from_utf8(get(&to).body).unwrap());
    // Nobody has it: 404.
    let absent = s1.get(&format!("/api/supernode/search/{}/metalink", absent_id(7)));
    assert_eq!(absent.status, 404);
}

/// SPEC 9b: a node asked for a file it does not hold, with `?fetch=true`, fetches it from
/// every holder at once (each piece checked: the liar's bad piece is fetched again elsewhere)
/// and serves the checked file itself, ranges included; nothing is left in its `TMPDIR`.
#[test]
fn a_node_asked_to_fetch_a_file_serves_it_checked_from_every_holder() {
    let content = file(38, 40);
    let id = sha256(&content);
    let swarm = swarm(&content, Lie::Byte(9 * PIECE + 3), 2);
    let empty = Folder::with(&[]);
    let tmp = Folder::with(&[]);
    let fetcher = Launch::node("f", &empty.path, &[&swarm.supernode.url()])
        .env("FETCH_MAX_BYTES", &content.len().to_string())
        .env("TMPDIR", tmp.path.to_str().unwrap())
        .start();
    wait_registered(&swarm.supernode, &[&fetcher]);
    let path = format!("/api/node/resources/{id}/content");
    // Not asked to: a 302 to a holder, as ever.
    assert_eq!(fetcher.get(&path).status, 302);
    let fetched = fetcher.get(&format!("{path}?fetch=true"));
    assert_eq!(
        fetched.status,
        200,
        "{}",
        String::from_utf8_lossy(&fetched.body)
    );
    assert!(fetched.body == content, "the fetched bytes differ");
    for node in &swarm.nodes {
        assert!(pieces_served(node) > 0, "{} served none", node.url());
    }
    assert!(fetcher.logged(&format!(
        "resource {id}: fetched for a client from 3 holder(s)"
    )));
    // A range of it.
    let mut stream = TcpStream::connect(fetcher.location()).unwrap();
    let request = format!(
        "GET {path}?fetch=true HTTP/1.1\r\nHost: x\r\nRange: bytes=100-199\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 206"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(answer.ends_with(&content[100..200]));
    assert_eq!(std::fs::read_dir(&tmp.path).unwrap().count(), 0);
    // Larger than the node fetches: refused before a piece is asked for.
    let small = Launch::node("g", &empty.path, &[&swarm.supernode.url()])
        .env("FETCH_MAX_BYTES", "1000")
        .start();
    let before = swarm.asked();
    small.get(&format!("{path}?fetch=true")).assert_error(403);
    assert_eq!(swarm.asked(), before);
}

/// A fetch costs the node a whole file whatever the client takes: two at once, the next
/// refused at once (not queued on an HTTP worker); meanwhile the node serves everyone else.
#[test]
fn fetches_for_clients_are_bounded_and_the_node_serves_others_meanwhile() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    // A holder that takes connections and never answers (each held 40 s, then let go); it
    // counts the requests for its piece list (the fetches), not the supernode's health checks.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let location = silent.local_addr().unwrap().to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(40)))
                    .unwrap();
                if read_request_head(&mut stream).is_some_and(|(_, path)| path.ends_with("/pieces"))
                {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let _ = stream.read(&mut [0u8; 1]);
            });
        }
    });
    let id = absent_id(38);
    register_holder(&supernode, &location, &[(&id, "slow.bin")]);
    let folder = Folder::with(&[("mine.txt", b"mine")]);
    let node = Launch::node("n", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    let url = format!("{}/api/node/resources/{id}/content?fetch=true", node.url());
    let _waiting: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || try_get(&url))
        })
        .collect();
    wait_until("two fetches at the holder", Duration::from_secs(10), || {
        asked.load(Ordering::SeqCst) >= 2
    });
    get(&url).assert_error(503);
    let mine = node.get(&format!("/api/node/resources/{}/content", sha256(b"mine")));
    assert_eq!((mine.status, mine.body.as_slice()), (200, &b"mine"[..]));
    assert_served(
        node.location().parse().unwrap(),
        "/api/node/resources",
        "two fetches",
    );
    // A node that fetches nothing says so.
    let none = Launch::node("z", &folder.path, &[&supernode.url()])
        .env("FETCH_MAX_BYTES", "0")
        .start();
    none.get(&format!("/api/node/resources/{id}/content?fetch=true"))
        .assert_error(403);
}

//! SPEC section 9, downloads as from a static file server: `HEAD`, one byte range (206 or
//! 416), the id as `ETag` with `If-None-Match` and `If-Range`, caching, the type from the
//! name, the name in `Content-Disposition`; and a download cut half-way, resumed through
//! another node's 302; the write deadline of a slow or stalled reader. (A file changed or cut
//! short during a download: `tests/integrity.rs`.)

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

/// One answer, read to its end: status, headers (names in lowercase), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn fetch(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

struct One {
    _supernode: Proc,
    node: Proc,
    _folder: Folder,
    id: String,
    path: String,
}

fn one_file(name: &str, content: &[u8]) -> One {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let folder = Folder::with(&[(name, content)]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    let id = sha256(content);
    let path = format!("/api/node/resources/{id}/content");
    One {
        _supernode: supernode,
        node,
        _folder: folder,
        id,
        path,
    }
}

#[test]
fn a_download_says_what_a_static_file_server_says() {
    let content = b"0123456789";
    let one = one_file("docs/notes.txt", content);
    let whole = fetch(one.node.addr, "GET", &one.path, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, content);
    let etag = format!("\"{}\"", one.id);
    for (name, value) in [
        ("accept-ranges", "bytes"),
        ("etag", etag.as_str()),
        ("cache-control", "public, max-age=31536000, immutable"),
        ("content-type", "text/plain"),
        ("content-disposition", "attachment; filename=\"notes.txt\""),
        ("content-length", "10"),
    ] {
        assert_eq!(whole.header(name), Some(value), "{name}");
    }
    // HEAD: the same head, no body.
    let head = fetch(one.node.addr, "HEAD", &one.path, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("10"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    // The id does not change, so neither do the bytes: 304.
    let cached = fetch(one.node.addr, "GET", &one.path, &[("If-None-Match", &etag)]);
    assert_eq!((cached.status, cached.body.len()), (304, 0));
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    let other = fetch(
        one.node.addr,
        "GET",
        &one.path,
        &[("If-None-Match", "\"something-else\"")],
    );
    assert_eq!(other.status, 200);
}

#[test]
fn byte_ranges_at_the_edges() {
    let content = b"0123456789";
    let one = one_file("digits.bin", content);
    for (range, want, content_range) in [
        ("bytes=0-0", &b"0"[..], "bytes 0-0/10"),
        ("bytes=9-9", b"9", "bytes 9-9/10"),
        ("bytes=9-", b"9", "bytes 9-9/10"),
        ("bytes=-1", b"9", "bytes 9-9/10"),
        ("bytes=3-5", b"345", "bytes 3-5/10"),
        ("bytes=5-100", b"56789", "bytes 5-9/10"),
        ("bytes=-100", b"0123456789", "bytes 0-9/10"),
    ] {
        let part = fetch(one.node.addr, "GET", &one.path, &[("Range", range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.body, want, "{range}");
        assert_eq!(part.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            part.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        assert_eq!(
            part.header("content-type"),
            Some("application/octet-stream")
        );
    }
    for range in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
        let past = fetch(one.node.addr, "GET", &one.path, &[("Range", range)]);
        assert_eq!(past.status, 416, "{range}");
        assert_eq!(past.header("content-range"), Some("bytes */10"));
        let body: serde_json::Value = serde_json::from_slice(&past.body).unwrap();
        assert_eq!(body["code"], 416);
    }
    // Not understood (several ranges, bad syntax): the whole file, as RFC 9110 allows.
    for range in ["bytes=0-1,4-5", "bytes=x-y", "lines=1-2"] {
        let whole = fetch(one.node.addr, "GET", &one.path, &[("Range", range)]);
        assert_eq!((whole.status, whole.body.as_slice()), (200, &content[..]));
    }
    // If-Range: the range only while the id is the one the client has.
    let etag = format!("\"{}\"", one.id);
    let same = fetch(
        one.node.addr,
        "GET",
        &one.path,
        &[("Range", "bytes=8-"), ("If-Range", &etag)],
    );
    assert_eq!((same.status, same.body.as_slice()), (206, &b"89"[..]));
    let changed = fetch(
        one.node.addr,
        "GET",
        &one.path,
        &[("Range", "bytes=8-"), ("If-Range", "\"an-older-version\"")],
    );
    assert_eq!(
        (changed.status, changed.body.as_slice()),
        (200, &content[..])
    );
    // HEAD with a range: its head only.
    let head = fetch(one.node.addr, "HEAD", &one.path, &[("Range", "bytes=2-3")]);
    assert_eq!(head.status, 206);
    assert_eq!(head.header("content-length"), Some("2"));
    assert!(head.body.is_empty());
}

#[test]
fn a_name_beyond_ascii_is_given_as_rfc_6266_says() {
    let one = one_file("relatório final.pdf", b"%PDF-1.4 not really\n");
    let whole = fetch(one.node.addr, "HEAD", &one.path, &[]);
    assert_eq!(
        whole.header("content-disposition"),
        Some(
            "attachment; filename=\"relat_rio final.pdf\"; filename*=UTF-8''relat%C3%B3rio%20final.pdf"
        )
    );
    assert_eq!(whole.header("content-type"), Some("application/pdf"));
}

#[test]
fn a_download_cut_half_way_resumes_through_another_node() {
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    let id = sha256(&content);
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let holding = Folder::with(&[("big.bin", &content)]);
    let empty = Folder::with(&[]);
    let holder = Launch::node("holder", &holding.path, &[&s1.url()]).start();
    let other = Launch::node("other", &empty.path, &[&s2.url()]).start();
    wait_registered(&s1, &[&holder]);
    wait_registered(&s2, &[&other]);
    let path = format!("/api/node/resources/{id}/content");

    // The first half, then the connection is gone.
    let half = content.len() / 2;
    let first = fetch(
        holder.addr,
        "GET",
        &path,
        &[("Range", &format!("bytes=0-{}", half - 1))],
    );
    assert_eq!(first.status, 206);
    // The rest, asked of the other node (which holds nothing): its 302 keeps the range.
    let range = format!("bytes={half}-");
    let redirect = fetch(other.addr, "GET", &path, &[("Range", &range)]);
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").unwrap().to_string();
    assert_eq!(location, format!("http://{}{path}", holder.location()));
    let rest = fetch(holder.addr, "GET", &path, &[("Range", &range)]);
    assert_eq!(rest.status, 206);
    assert_eq!(
        rest.header("content-range"),
        Some(format!("bytes {half}-{}/{}", content.len() - 1, content.len()).as_str())
    );
    let mut whole = first.body;
    whole.extend_from_slice(&rest.body);
    assert_eq!(sha256(&whole), id);
}

/// A download of `content` from `node` on a socket with a small receive window, its head read.
fn small_window_download(node: &Proc, content: &[u8]) -> std::net::TcpStream {
    let id = sha256(content);
    let request = format!(
        "GET /api/node/resources/{id}/content HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut stream = small_window(node.addr, 16 << 10, &request);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    stream
}

#[test]
fn a_slow_reader_gets_all_of_a_download_and_a_stalled_one_is_dropped() {
    // The write deadline is per 256 KiB taken, not per download nor per write call: a client
    // that takes 2 MiB at some 640 KB/s (3 s, 1.6 s a write call) with a 1 s deadline gets
    // every byte; one that stops taking is dropped about a deadline later.
    let small: Vec<u8> = (0..2u32 << 20).map(|i| (i % 253) as u8).collect();
    // Far more than the socket buffers hold (the sender's grows to a few MiB).
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 241) as u8).collect();
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let folder = Folder::with(&[("small", &small), ("big", &big)]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()])
        .env("HTTP_WRITE_TIMEOUT_MS", "1000")
        .start();

    let mut slow = small_window_download(&node, &small);
    let mut got = Vec::with_capacity(small.len());
    let mut piece = vec![0u8; 32 << 10];
    loop {
        let n = slow.read(&mut piece).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&piece[..n]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(got == small, "the slow reader got {} bytes", got.len());
    assert!(!node.logged("did not take its answer"));

    let mut stalled = small_window_download(&node, &big);
    stalled.read_exact(&mut piece).unwrap();
    node.wait_log("did not take its answer", Duration::from_secs(5));
    // Dropped: what is left to read is what the socket buffers held, then the end.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(
        rest.len() < big.len() / 2,
        "{} bytes after the stall",
        rest.len()
    );
}

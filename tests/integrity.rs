//! SPEC section 7, content: `/content` never serves bytes that are not the id asked for, a link
//! out of the node's folder is not shared, and nothing a supernode says reaches a header
//! unchecked.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::support::*;

fn listed_ids(node: &Proc) -> Vec<String> {
    node.get("/api/node/resources").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_file_rewritten_in_place_with_its_time_put_back_is_not_served_as_its_old_id() {
    let old: &[u8] = b"the original content\n";
    let new: &[u8] = b"a forged content!!!!\n";
    assert_eq!(old.len(), new.len());
    let folder = Folder::with(&[("f", old)]);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let node = Launch::node("node", &folder.path, &[&supernode.url()])
        .env("RESCAN_MS", "300")
        .start();
    let (old_id, new_id) = (sha256(old), sha256(new));
    assert_eq!(listed_ids(&node), std::slice::from_ref(&old_id));

    // Same size, and the modification time put back: only the change time (which nobody can
    // set) and the content say it changed.
    let path = folder.path.join("f");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(new).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );

    // Never the new bytes under the old id: refused until the rescan, then not held here.
    let answer = node.get(&format!("/api/node/resources/{old_id}/content"));
    assert_ne!(answer.body, new, "served the new bytes as {old_id}");
    assert!(
        matches!(answer.status, 503 | 404),
        "status {}",
        answer.status
    );
    wait_until(
        "the rescan to find the new id",
        Duration::from_secs(10),
        || listed_ids(&node) == [new_id.clone()],
    );
    let answer = node.get(&format!("/api/node/resources/{new_id}/content"));
    assert_eq!((answer.status, answer.body.as_slice()), (200, new));
    // Gone here; and from the supernode once the node's update reaches it (until then, the
    // node asks it and may be sent to itself).
    wait_until("the old id to be gone", Duration::from_secs(10), || {
        let answer = node.get(&format!("/api/node/resources/{old_id}/content"));
        assert_ne!(answer.status, 200, "served something as {old_id}");
        answer.status == 404
    });
}

/// Starts a 32 MiB download (`range`: a Range header, or none), does `change` to the file once
/// the answer is flowing, and checks the download is cut before its end, the node says why
/// (`logged`), and it lives on and answers.
fn cut_under_download(
    range: Option<&str>,
    status_line: &str,
    change: impl FnOnce(&std::path::Path, &[u8]),
    logged: &str,
) {
    // 32 MiB: far more than the socket buffers hold, so the server is mid-file when it changes.
    let content: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let id = sha256(&content);
    let folder = Folder::with(&[("big", &content)]);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let mut node = Launch::node("node", &folder.path, &[&supernode.url()]).start();

    let range = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
    let request = format!(
        "GET /api/node/resources/{id}/content HTTP/1.1\r\nHost: x\r\n{range}Connection: close\r\n\r\n"
    );
    let mut stream = small_window(node.addr, 64 << 10, &request);
    // The head and the first bytes come; then the file changes.
    let mut first = vec![0u8; 64 << 10];
    stream.read_exact(&mut first).unwrap();
    assert!(first.starts_with(status_line.as_bytes()));
    change(&folder.path.join("big"), &content);

    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let head_len = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let received = first.len() - head_len + rest.len();
    assert!(
        received < content.len() - 1,
        "all of it came ({received} bytes), though the file changed"
    );
    node.wait_log(logged, Duration::from_secs(5));
    assert!(node.is_running(), "the node ended");
    assert_eq!(node.get("/api/node/health").status, 200);
}

/// Changes one byte of the file at `at`.
fn flip_byte(at: SeekFrom) -> impl FnOnce(&std::path::Path, &[u8]) {
    move |path, content| {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let offset = file.seek(at).unwrap() as usize;
        file.write_all(&[content[offset] ^ 0xff]).unwrap();
    }
}

#[test]
fn a_file_changed_during_a_download_cuts_it_before_its_last_bytes() {
    cut_under_download(
        None,
        "HTTP/1.1 200 OK",
        flip_byte(SeekFrom::End(-1)),
        "changed while it was sent",
    );
}

#[test]
fn a_file_changed_during_a_ranged_download_cuts_it_too() {
    // A byte the range already passed: the file is no longer the one hashed all the same.
    cut_under_download(
        Some("bytes=1-"),
        "HTTP/1.1 206 Partial Content",
        flip_byte(SeekFrom::Start(2)),
        "changed while it was sent",
    );
}

#[test]
fn a_file_cut_short_during_a_download_ends_it_and_the_node_lives_on() {
    // The node sends from a mapping of the file: what was cut off must fail the write, not
    // fault the process.
    cut_under_download(
        None,
        "HTTP/1.1 200 OK",
        |path, _| {
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(1 << 20).unwrap();
        },
        "shrank while it was sent",
    );
}

#[test]
fn a_link_out_of_the_folder_is_not_shared() {
    let secret: &[u8] = b"not for sharing\n";
    let outside = Folder::with(&[("secret", secret)]);
    let folder = Folder::with(&[("inside", b"shared\n")]);
    std::os::unix::fs::symlink(outside.path.join("secret"), folder.path.join("escape")).unwrap();
    std::os::unix::fs::symlink(folder.path.join("inside"), folder.path.join("alias")).unwrap();
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    let listing = node.get("/api/node/resources").json();
    let names: Vec<&str> = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // A link to a file inside the folder is fine (the same content: one resource, first name).
    assert_eq!(names, ["alias"]);
    node.get(&format!("/api/node/resources/{}/content", sha256(secret)))
        .assert_error(404);
    node.wait_log(
        "a link to a file outside the folder",
        Duration::from_secs(5),
    );
}

/// A "supernode" that accepts any registration and heartbeat, and answers every search with
/// `location`.
fn fake_supernode(location: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 65536];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() < end + 4 + length {
                        continue;
                    }
                    let answer = if text.starts_with("GET") {
                        let id = text
                            .split('/')
                            .nth(4)
                            .unwrap_or_default()
                            .split(' ')
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        let body = serde_json::json!({"data": {"id": id, "file": {"location": location, "locations": [location]}}, "entity": "node_resource_location"}).to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                    };
                    let _ = stream.write_all(answer.as_bytes());
                    request.drain(..end + 4 + length);
                }
            });
        }
    });
    url
}

#[test]
fn a_location_that_is_not_host_port_never_reaches_a_header() {
    let supernode = fake_supernode("evil.example:80\r\nSet-Cookie: taken=1");
    let folder = Folder::with(&[("f", b"x")]);
    let node = Launch::node("node", &folder.path, &[&supernode]).start();
    node.wait_log("registered", Duration::from_secs(10));
    let answer = node.get(&format!("/api/node/resources/{}", absent_id(1)));
    answer.assert_error(503);
    assert_eq!(answer.location, None);
}

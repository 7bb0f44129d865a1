//! Bad input and load: clear errors, no crash, no hang, no lost index entries.

use std::time::Duration;

use crate::support::*;

#[test]
fn oversized_bodies_and_garbage_requests_get_errors_and_the_server_lives_on() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("MAX_BODY_BYTES", "1024")
        .start();
    let big = format!(
        r#"{{"location":"127.0.0.1:9","resources":[],"pad":"{}"}}"#,
        "x".repeat(4096)
    );
    supernode
        .post("/api/supernode/register", big.as_bytes())
        .assert_error(413);

    // The same body in chunks, with no Content-Length to reject it up front.
    let chunked = format!(
        "POST /api/supernode/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    assert_eq!(raw_http(supernode.addr, chunked.as_bytes()), Some(413));

    // Not HTTP at all, a truncated request line, a path that is not a path.
    let _ = raw_http(supernode.addr, b"\x00\x01\x02 garbage\r\n\r\n");
    let _ = raw_http(supernode.addr, b"GET");
    let _ = raw_http(supernode.addr, b"GET /api/supernode/%%%%/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(
        raw_http(
            supernode.addr,
            b"DELETE /api/supernode/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        Some(405)
    );
    let long_id = "a".repeat(1000);
    supernode
        .get(&format!("/api/supernode/search/{long_id}"))
        .assert_error(400);
    let longer_than_a_request_line = "a".repeat(30_000);
    supernode
        .get(&format!(
            "/api/supernode/search/{longer_than_a_request_line}"
        ))
        .assert_error(414);
    // The most ids a list may hold fit in a request line; one more is a 400.
    let many: Vec<String> = (0..257).map(absent_id).collect();
    let answer = supernode.get(&format!(
        "/api/supernode/search?hash_ids={}",
        many[..256].join(",")
    ));
    assert_eq!(answer.status, 200);
    supernode
        .get(&format!(
            "/api/supernode/search?hash_ids={}",
            many.join(",")
        ))
        .assert_error(400);
    // Counted before any is parsed: a long list of junk is refused for its length.
    let junk = supernode.get(&format!(
        "/api/supernode/search?hash_ids={}",
        vec!["x"; 5000].join(",")
    ));
    junk.assert_error(400);
    assert!(
        junk.json()["description"]
            .as_str()
            .unwrap()
            .starts_with("5000 ids asked"),
        "{}",
        junk.json()
    );

    // Still serving, and a normal registration still works.
    let ok = r#"{"location":"127.0.0.1:9","resources":[]}"#;
    assert_eq!(
        supernode
            .post("/api/supernode/register", ok.as_bytes())
            .status,
        204
    );
    assert_eq!(alive(&supernode), ["127.0.0.1:9"]);
}

#[test]
fn concurrent_registrations_and_searches_lose_no_entry() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let nodes = 40;
    let per_node = 50;
    let id = |node: usize, n: usize| sha256(format!("node {node} file {n}").as_bytes());
    std::thread::scope(|scope| {
        for node in 0..nodes {
            let supernode = &supernode;
            scope.spawn(move || {
                let resources: Vec<_> = (0..per_node)
                    .map(|n| serde_json::json!({"id": id(node, n), "name": format!("f{n}")}))
                    .collect();
                let body = serde_json::json!({
                    "location": format!("127.0.0.1:{}", 20000 + node),
                    "resources": resources,
                });
                // Each node registers three times, as after restarts; searches run meanwhile.
                for _ in 0..3 {
                    assert_eq!(
                        supernode
                            .post("/api/supernode/register", body.to_string().as_bytes())
                            .status,
                        204
                    );
                    let answer = supernode.get(&format!(
                        "/api/supernode/search/{}",
                        id(node, node % per_node)
                    ));
                    assert_eq!(answer.status, 200);
                }
            });
        }
    });
    assert_eq!(alive(&supernode).len(), nodes);
    for node in 0..nodes {
        let ids: Vec<String> = (0..per_node).step_by(7).map(|n| id(node, n)).collect();
        let answer = supernode.get(&format!("/api/supernode/search?hash_ids={}", ids.join(",")));
        assert_eq!(
            answer.json()["data"].as_array().unwrap().len(),
            ids.len(),
            "node {node}"
        );
    }
}

#[test]
fn a_node_skips_unreadable_files_and_serves_the_rest() {
    let folder = Folder::with(&[
        ("readable", b"fine\n"),
        ("removed-later", b"removed later\n"),
    ]);
    // A dangling link cannot be read (unlike a chmod 000 file, for root): it is skipped.
    std::os::unix::fs::symlink(folder.path.join("gone"), folder.path.join("dangling")).unwrap();
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
    assert_eq!(names, ["readable", "removed-later"]);

    // A file removed after the scan: a clear 404, not a crash.
    std::fs::remove_file(folder.path.join("removed-later")).unwrap();
    node.get(&format!(
        "/api/node/resources/{}/content",
        sha256(b"removed later\n")
    ))
    .assert_error(404);
    assert_eq!(node.get("/api/node/health").status, 200);
    node.wait_log("cannot be read", Duration::from_secs(5));
}

#[test]
fn keep_alive_connections_serve_request_after_request() {
    use std::io::{BufRead, BufReader, Read, Write};
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let stream = std::net::TcpStream::connect(supernode.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    // Each answer is read by its Content-Length: a wrong length would break the next one.
    let mut exchange = |request: &str| -> (String, Vec<u8>) {
        writer.write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (status.trim_end().to_string(), body)
    };
    let get = "GET /api/supernode/alive HTTP/1.1\r\nHost: x\r\n\r\n";
    let (status, body) = exchange(get);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.starts_with(b"{\"data\":[]"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = exchange("GET /api/node/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 418 I'm a teapot");
    let (status, body) = exchange(get);
    assert_eq!((status.as_str(), body.len()), ("HTTP/1.1 200 OK", 27));
}

#[test]
fn a_burst_of_new_keep_alive_connections_is_served_at_once() {
    use std::io::{Read, Write};
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    // Connections that stay open, as clients' pools keep them: each must be answered while all
    // the others stay connected (a connection left waiting until another closes would hang).
    let clients = 64;
    let barrier = std::sync::Barrier::new(clients);
    let answered: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let barrier = &barrier;
                let addr = supernode.addr;
                scope.spawn(move || {
                    barrier.wait();
                    let mut stream = std::net::TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    stream
                        .write_all(b"GET /api/supernode/alive HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    let mut first = [0u8; 12];
                    let answered =
                        stream.read_exact(&mut first).is_ok() && &first == b"HTTP/1.1 200";
                    // Hold the connection until every client has had its answer (or given up).
                    barrier.wait();
                    answered
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unanswered = answered.iter().filter(|a| !**a).count();
    assert_eq!(
        unanswered, 0,
        "{unanswered} of {clients} new connections got no answer within 5 s"
    );
}

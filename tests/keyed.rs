//! SPEC section 7, the cluster key over HTTP: with `CLUSTER_KEY`, only signed registrations,
//! heartbeats, leaves and manual sweeps are taken; the rest of the API stays open.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use superpeer::auth::{self, ClusterKeys};
use support::*;

const KEY: &str = "the-cluster-key-of-this-test-0123456789";
const OTHER_KEY: &str = "somebody-elses-key-0123456789abcdef";

fn keys(text: &str) -> ClusterKeys {
    ClusterKeys::parse(text).unwrap()
}

/// `method target` with `body` and, when given, the signature header; the answer's status.
fn send(proc: &Proc, method: &str, target: &str, body: &[u8], signature: Option<&str>) -> u16 {
    let mut stream = std::net::TcpStream::connect(proc.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(signature) = signature {
        head.push_str(&format!("{}: {signature}\r\n", auth::AUTH_HEADER));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    std::str::from_utf8(&answer[9..12])
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_keyed_cluster_registers_its_nodes_and_searches() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("CLUSTER_KEY", KEY)
        .start();
    let s2 = Launch::supernode("s2", &group, 2)
        .env("CLUSTER_KEY", KEY)
        .start();
    let folder = Folder::with(&[("f", b"signed and found\n")]);
    let id = sha256(b"signed and found\n");
    let node = Launch::node("node", &folder.path, &[&s2.url()])
        .env("CLUSTER_KEY", KEY)
        .start();
    wait_registered(&s2, &[&node]);
    // Found at s2's node through s1 (the group), and through the node itself.
    let found = s1.get(&format!("/api/supernode/search/{id}"));
    assert_eq!(found.json()["data"]["file"]["location"], node.location());
    assert_eq!(node.get(&format!("/api/node/resources/{id}")).status, 200);
    // The node's heartbeats are signed too: they are taken.
    s2.wait_log("POST /api/supernode/alive -> 204", Duration::from_secs(5));
    assert!(!node.logged("failed"), "a heartbeat failed");
}

#[test]
fn unsigned_wrong_old_replayed_or_altered_requests_are_401() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("CLUSTER_KEY", KEY)
        .start();
    let key = keys(KEY);
    let target = "/api/supernode/register";
    let body = br#"{"location":"127.0.0.1:9","resources":[]}"#;
    let signed = |key: &ClusterKeys, t: u64, nonce: u64| {
        auth::sign_request_at(key, "POST", target, body, t, nonce)
    };
    let now = auth::unix_ms();
    // Unsigned, signed with another key, too old, for another path, for another body.
    assert_eq!(send(&supernode, "POST", target, body, None), 401);
    assert_eq!(
        send(
            &supernode,
            "POST",
            target,
            body,
            Some(&signed(&keys(OTHER_KEY), now, 1))
        ),
        401
    );
    assert_eq!(
        send(
            &supernode,
            "POST",
            target,
            body,
            Some(&signed(&key, now - 120_000, 2))
        ),
        401
    );
    let for_alive = auth::sign_request_at(&key, "POST", "/api/supernode/alive", body, now, 3);
    assert_eq!(
        send(&supernode, "POST", target, body, Some(&for_alive)),
        401
    );
    let other_body = br#"{"location":"127.0.0.1:9","resources":[{"id":"aa","name":"x"}]}"#;
    assert_eq!(
        send(
            &supernode,
            "POST",
            target,
            other_body,
            Some(&signed(&key, now, 4))
        ),
        401
    );
    assert!(alive(&supernode).is_empty());

    // Signed right: taken once; the same signature again is a replay.
    let good = signed(&key, auth::unix_ms(), 5);
    assert_eq!(send(&supernode, "POST", target, body, Some(&good)), 204);
    assert_eq!(send(&supernode, "POST", target, body, Some(&good)), 401);
    assert_eq!(alive(&supernode), ["127.0.0.1:9"]);

    // A manual sweep needs a signature too; searches and listings do not.
    assert_eq!(
        send(&supernode, "GET", "/api/supernode/xxx", b"", None),
        401
    );
    let sweep = auth::sign_request(&key, "GET", "/api/supernode/xxx", b"");
    assert_eq!(
        send(&supernode, "GET", "/api/supernode/xxx", b"", Some(&sweep)),
        204
    );
    assert_eq!(supernode.get("/api/supernode/alive").status, 200);
    supernode.wait_log(
        "must be signed with the cluster key",
        Duration::from_secs(5),
    );
}

#[test]
fn an_unsigned_upload_is_refused_before_its_body_is_read() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("CLUSTER_KEY", KEY)
        .start();
    // 60 MB announced, none sent: the 401 comes at once, not after a body time-out.
    let mut stream = std::net::TcpStream::connect(supernode.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(
            b"POST /api/supernode/register HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n",
        )
        .unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
}

#[test]
fn a_node_with_another_key_is_not_registered() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("CLUSTER_KEY", KEY)
        .start();
    let folder = Folder::with(&[("f", b"x")]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()])
        .env("CLUSTER_KEY", OTHER_KEY)
        .start();
    node.wait_log("answered 401", Duration::from_secs(10));
    assert!(alive(&supernode).is_empty());
    // The key is in no log line, on either side.
    assert!(!node.logged(OTHER_KEY) && !supernode.logged(KEY));
}

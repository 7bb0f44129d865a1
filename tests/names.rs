//! SPEC section 9, finding by name: `GET /api/supernode/search?file_name=` over the own index
//! and the group's (new codes `23`/`24`, each datagram under 512 bytes), merged by id; the
//! node's `/api/node/search` asks its supernode.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

fn search(proc: &Proc, query: &str) -> Vec<Value> {
    let answer = proc.get(&format!("/api/supernode/search?{query}"));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    assert_eq!(body["entity"], "node_resource_location");
    body["data"].as_array().unwrap().clone()
}

fn names(found: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = found
        .iter()
        .map(|f| f["file"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn names_are_found_in_the_own_index_and_the_groups() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    // Longer than a datagram can carry (a path of three long folders).
    let part = "very long name ".repeat(12);
    let long = format!("{part}/{part}/{part}.bin");
    let shared = b"the same bytes at both nodes\n";
    let here = Folder::with(&[
        ("Report 2024.pdf", b"a report\n"),
        ("notes;v2.txt", b"notes with a semicolon\n"),
        ("copy-a.txt", shared),
    ]);
    let there = Folder::with(&[
        ("report-final.PDF", b"the final report\n"),
        ("relatório été.txt", b"summer\n"),
        (long.as_str(), b"a long name\n"),
        ("copy-b.txt", shared),
    ]);
    let node1 = Launch::node("node1", &here.path, &[&s1.url()]).start();
    let node2 = Launch::node("node2", &there.path, &[&s2.url()]).start();
    wait_registered(&s1, &[&node1]);
    wait_registered(&s2, &[&node2]);

    // Case-insensitive, local and remote, each with its holder.
    let reports = search(&s1, "file_name=REPORT");
    assert_eq!(names(&reports), ["Report 2024.pdf", "report-final.PDF"]);
    for found in &reports {
        let want = if found["file"]["name"] == "Report 2024.pdf" {
            node1.location()
        } else {
            node2.location()
        };
        assert_eq!(found["file"]["location"], want);
        assert_eq!(found["file"]["locations"], serde_json::json!([want]));
    }
    // Anything a name may hold, through the wire and back.
    assert_eq!(
        names(&search(&s2, &format!("file_name={}", encode(";v2")))),
        ["notes;v2.txt"]
    );
    assert_eq!(
        names(&search(&s1, &format!("file_name={}", encode("ÉTÉ")))),
        ["relatório été.txt"]
    );
    // A name too long for a datagram comes cut, with its id and holder right.
    let long_found = search(&s1, "file_name=very%20long");
    assert_eq!(long_found.len(), 1);
    let cut = long_found[0]["file"]["name"].as_str().unwrap();
    assert!(
        cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')),
        "{cut}"
    );
    assert_eq!(long_found[0]["id"], sha256(b"a long name\n"));
    // The same content at both nodes: one result, both locations.
    let copies = search(&s1, "file_name=copy-");
    assert_eq!(copies.len(), 1, "{copies:?}");
    let mut want = vec![node1.location(), node2.location()];
    want.sort();
    assert_eq!(sorted_locations(&copies[0]["file"]), want);
    // One node only; a limit.
    assert_eq!(
        names(&search(
            &s1,
            &format!("file_name=.&node_name={}", node2.location())
        ))
        .len(),
        4
    );
    assert_eq!(search(&s1, "file_name=.&limit=2").len(), 2);
    assert!(search(&s1, "file_name=nothing-is-called-this").is_empty());

    // The node asks its supernode.
    let answer = node1.get("/api/node/search?file_name=final");
    assert_eq!(answer.status, 200);
    assert_eq!(
        names(answer.json()["data"].as_array().unwrap()),
        ["report-final.PDF"]
    );

    // Bad requests, at both roles.
    for query in [
        "file_name=".to_string(),
        "file_name=%20%20".to_string(),
        format!("file_name={}", "x".repeat(181)),
        format!("file_name={}", encode(&"é".repeat(101))),
        format!("file_name={}", encode(&";".repeat(67))),
        "file_name=a&limit=0".to_string(),
        "file_name=a&limit=1001".to_string(),
        "file_name=a&limit=many".to_string(),
    ] {
        s1.get(&format!("/api/supernode/search?{query}"))
            .assert_error(400);
        node1
            .get(&format!("/api/node/search?{query}"))
            .assert_error(400);
    }
}

#[test]
fn ten_thousand_matches_keep_the_limit_and_small_datagrams() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2_port = free_port();
    let s2 = Launch::supernode("s2", &group, 2)
        .env("UNICAST_PORT", &s2_port.to_string())
        .start();
    // 10,000 resources whose names all match, registered at s2 for a made-up node.
    let resources: Vec<Value> = (0..10_000)
        .map(|n| {
            serde_json::json!({"id": sha256(format!("match {n}").as_bytes()),
                               "name": format!("match {n:05} ; with, some/separators % é.txt")})
        })
        .collect();
    let body =
        serde_json::json!({"name": "many", "location": "127.0.0.1:9", "resources": resources});
    assert_eq!(
        s2.post("/api/supernode/register", body.to_string().as_bytes())
            .status,
        204
    );
    let started = Instant::now();
    let found = search(&s1, "file_name=MATCH&limit=1000");
    assert_eq!(found.len(), 1000);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "waited {:?}: every part came, the time-out was not needed",
        started.elapsed()
    );
    assert!(found.iter().all(|f| {
        f["file"]["location"] == "127.0.0.1:9"
            && f["file"]["name"]
                .as_str()
                .unwrap()
                .ends_with(" ; with, some/separators % é.txt")
    }));
    assert_eq!(search(&s1, "file_name=match").len(), 100);
    // Every datagram of an answer is under 512 bytes, in three fields: s2 asked directly, as
    // a supernode of ours asks (its answer comes back by unicast).
    use superpeer::wire::{self, Body, Message, Sender};
    // A name as long as a supernode's: its query buys room for the cookie (3 x its bytes).
    const ASKER: &str = "5b0e1b8e-0d8c-4a43-9f3e-asker0000000";
    let asker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    asker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let query = Message::new(
        Sender::Query {
            from: ASKER.into(),
            tag: 9,
        },
        Body::NameQuery {
            text: "match".into(),
            node: None,
            limit: 1000,
        },
    );
    // An address that has not proved it receives there gets no name answer (it could be a
    // victim's, forged): only a cookie to echo.
    asker
        .send_to(&query.encode(), ("127.0.0.1", s2_port))
        .unwrap();
    prove_address(&asker, ASKER);
    asker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    asker
        .send_to(&query.encode(), ("127.0.0.1", s2_port))
        .unwrap();
    let (mut parts, mut seen, mut hits) = (None, std::collections::HashSet::new(), 0);
    let mut buffer = [0u8; 2048];
    while parts != Some(seen.len()) {
        let (len, _) = asker
            .recv_from(&mut buffer)
            .expect("every part of s2's answer");
        let datagram = String::from_utf8_lossy(&buffer[..len]).into_owned();
        assert!(len < 512, "{len} bytes: {datagram}");
        assert_eq!(datagram.matches(';').count(), 2, "{datagram}");
        let (part, n, h) = match wire::parse(&buffer[..len]).unwrap().body {
            Body::NameAnswer {
                part,
                parts: n,
                hits: h,
            } => (part, n, h),
            // s2 pings the address that proved itself, to count on it: not an answer.
            Body::Query(id) if id.0 == [0; 32] => continue,
            _ => panic!("not a name answer: {datagram}"),
        };
        parts = Some(n as usize);
        seen.insert(part);
        hits += h.len();
    }
    assert!(seen.len() > 100, "{} answer datagrams", seen.len());
    assert_eq!(hits, 1000);
}

#[test]
fn a_seed_supernode_in_the_group_ignores_name_queries() {
    let group = group();
    // Three members: s1, s2 and the seed's (which never answers a 23).
    let s1 = Launch::supernode("s1", &group, 3).start();
    let s2 = Launch::supernode("s2", &group, 3).start();
    let seed = Peer::join(&group);
    let there = Folder::with(&[("wanted.txt", b"wanted\n")]);
    let node = Launch::node("node", &there.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    let started = Instant::now();
    let found = search(&s1, "file_name=wanted");
    // What came by the time-out (1.5 s): s2's match.
    assert_eq!(names(&found), ["wanted.txt"]);
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // The query the seed saw splits into its three fields, and is not one it acts on.
    let query = seed
        .receive(Duration::from_secs(1), |d| d.contains(";23;"))
        .expect("the name query on the group");
    let fields: Vec<&str> = query.split(';').collect();
    assert_eq!(fields.len(), 3);
    assert_ne!(fields[1], "20");
}

#[test]
fn a_keyed_group_finds_names_too() {
    let group = group();
    let key = "the-names-test-cluster-key-0123456789";
    let s1 = Launch::supernode("s1", &group, 2)
        .env("CLUSTER_KEY", key)
        .start();
    let s2 = Launch::supernode("s2", &group, 2)
        .env("CLUSTER_KEY", key)
        .start();
    let there = Folder::with(&[("keyed.txt", b"behind a key\n")]);
    let node = Launch::node("node", &there.path, &[&s2.url()])
        .env("CLUSTER_KEY", key)
        .start();
    wait_registered(&s2, &[&node]);
    assert_eq!(names(&search(&s1, "file_name=keyed")), ["keyed.txt"]);
    // An unsigned name answer from a stranger is dropped.
    let stranger = Peer::join(&group);
    stranger.send(b"someone/me/1;24;1/1");
    s1.wait_log("unsigned under the cluster key", Duration::from_secs(5));
}

#[test]
fn a_query_from_a_name_too_long_to_answer_leaves_the_peer_answering() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let there = Folder::with(&[("still.txt", b"still found\n")]);
    let node = Launch::node("node", &there.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    // An asker's name that leaves no room under 512 bytes for any answer.
    let stranger = Peer::join(&group);
    let long = "n".repeat(420);
    stranger.send(format!("{long}/1;23;10//still").as_bytes());
    stranger.send(format!("{long}/2;25;{}", sha256(b"still found\n")).as_bytes());
    // s2 answered nothing for them, and answers a real search as before.
    assert_eq!(names(&search(&s1, "file_name=still")), ["still.txt"]);
    assert!(
        stranger
            .receive(std::time::Duration::from_millis(300), |d| d
                .contains(&format!("/{long}/")))
            .is_none()
    );
}

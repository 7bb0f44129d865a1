//! SPEC section 7, the cluster key over HTTP: with `CLUSTER_KEY`, only signed registrations,
//! heartbeats, leaves and manual sweeps are taken; the rest of the API stays open.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use superpeer::auth::{self, ClusterKeys};

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
        .env("SEARCH_TIMEOUT_MS", "5000")
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
    // A negative ends at s2's signed "not here", not at the 5 s time-out.
    let started = std::time::Instant::now();
    s1.get(&format!("/api/supernode/search/{}", absent_id(77)))
        .assert_error(404);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(node.get(&format!("/api/node/resources/{id}")).status, 200);
    // The node's heartbeats are signed too: they are taken.
    s2.wait_log("POST /api/supernode/alive -> 204", Duration::from_secs(5));
    assert!(!node.logged("failed"), "a heartbeat failed");
    // Fifty searches at once: s1's queries leave from fifty threads, out of order, and each
    // is taken (nothing of the cluster's own is dropped), each answered right.
    std::thread::scope(|scope| {
        let searches: Vec<_> = (0..50)
            .map(|n| {
                let (s1, id) = (&s1, &id);
                scope.spawn(move || {
                    let wanted = if n % 2 == 0 { id.clone() } else { absent_id(n) };
                    (n, s1.get(&format!("/api/supernode/search/{wanted}")).status)
                })
            })
            .collect();
        for search in searches {
            let (n, status) = search.join().unwrap();
            assert_eq!(status, if n % 2 == 0 { 200 } else { 404 }, "search {n}");
        }
    });
    assert!(!s1.logged("dropped a datagram") && !s2.logged("dropped a datagram"));
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

/// Two keyed supernodes in a group, a node under the second, and a host in the group without
/// the key.
struct KeyedGroup {
    s1: Proc,
    _s2: Proc,
    _node: Proc,
    _folder: Folder,
    attacker: Peer,
    held: String,
    /// s2's own socket, which answers queries by unicast.
    s2_unicast: SocketAddr,
}

/// With `group_size` 3 (one more than there are), a negative search at s1 waits its whole
/// time-out: whatever an attacker sends arrives while the search still listens.
fn keyed_group(group_size: usize) -> KeyedGroup {
    let group = group();
    let s1 = Launch::supernode("s1", &group, group_size)
        .env("CLUSTER_KEY", KEY)
        .env("SEARCH_TIMEOUT_MS", "2000")
        .start();
    let s2_port = free_port();
    let s2 = Launch::supernode("s2", &group, group_size)
        .env("CLUSTER_KEY", KEY)
        .env("UNICAST_PORT", &s2_port.to_string())
        .start();
    let folder = Folder::with(&[("f", b"held by the keyed group\n")]);
    let node = Launch::node("node", &folder.path, &[&s2.url()])
        .env("CLUSTER_KEY", KEY)
        .start();
    wait_registered(&s2, &[&node]);
    let attacker = Peer::join(&group);
    KeyedGroup {
        s1,
        _s2: s2,
        _node: node,
        _folder: folder,
        attacker,
        held: sha256(b"held by the keyed group\n"),
        s2_unicast: SocketAddr::from(([127, 0, 0, 1], s2_port)),
    }
}

/// s1's query for `id`, as the group hears it.
fn query_for(attacker: &Peer, id: &str) -> superpeer::wire::Message {
    let heard = attacker
        .receive(Duration::from_secs(5), |d| {
            d.ends_with(&format!(";20;{id}"))
        })
        .expect("s1's query");
    superpeer::wire::parse(heard.as_bytes()).unwrap()
}

#[test]
fn forged_answers_from_a_host_without_the_key_change_nothing() {
    use superpeer::wire::{Body, Message, Sender};
    let group = keyed_group(3);
    let s1 = &group.s1;
    let absent = absent_id(7);
    std::thread::scope(|scope| {
        let search = scope.spawn(|| s1.get(&format!("/api/supernode/search/{absent}")));
        // The attacker sees the query (name, tag) and answers first: "I have it".
        let query = query_for(&group.attacker, &absent);
        let Sender::Query { from, tag } = query.sender else {
            panic!("not a tagged query: {query:?}")
        };
        let forged = Message::new(
            Sender::Reply {
                from: "evil".into(),
                to: from.clone(),
                tag,
            },
            Body::Found("127.0.0.2:666".into()),
        );
        group.attacker.send(&forged.encode());
        // A seal made up, or made with another key, does no better.
        let mut sealed = forged.clone();
        let bytes =
            superpeer::auth::DatagramSeals::new(keys(OTHER_KEY)).seal_encode(&mut sealed, None);
        group.attacker.send(&bytes);
        search.join().unwrap().assert_error(404);
    });
    // Forged "not here" answers do not hide what exists.
    std::thread::scope(|scope| {
        let search = scope.spawn(|| s1.get(&format!("/api/supernode/search/{}", group.held)));
        let query = query_for(&group.attacker, &group.held);
        let Sender::Query { from, tag } = query.sender else {
            panic!("not a tagged query")
        };
        let no = Sender::Reply {
            from: "evil".into(),
            to: from,
            tag,
        };
        group
            .attacker
            .send(&Message::new(no, Body::NotFound(group.held.clone())).encode());
        assert_eq!(search.join().unwrap().status, 200);
    });
    s1.wait_log("unsigned under the cluster key", Duration::from_secs(5));
}

#[test]
fn a_captured_answer_replayed_or_moved_to_another_search_changes_nothing() {
    use superpeer::wire::{self, Body, Message, Sender};
    let group = keyed_group(3);
    let s1 = &group.s1;
    // A signed answer of s2's, as one on the path sees it: s2 answers by unicast to the asker,
    // so the test asks s2 itself, with the key, from a socket of its own.
    let spy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let held = superpeer::id::ResourceId::parse(&group.held).unwrap();
    let mut query = Message::new(
        Sender::Query {
            from: "spy".into(),
            tag: 7,
        },
        Body::Query(held),
    );
    let sealed = superpeer::auth::DatagramSeals::new(keys(KEY)).seal_encode(&mut query, None);
    spy.send_to(&sealed, group.s2_unicast).unwrap();
    let mut buffer = [0u8; 2048];
    let (len, _) = spy.recv_from(&mut buffer).expect("s2's answer, by unicast");
    let captured = wire::parse(&buffer[..len]).unwrap();
    assert!(matches!(captured.body, Body::Found(_)), "{captured:?}");
    assert!(captured.seal.is_some());
    let absent = absent_id(8);
    std::thread::scope(|scope| {
        let search = scope.spawn(|| s1.get(&format!("/api/supernode/search/{absent}")));
        let query = query_for(&group.attacker, &absent);
        let Sender::Query { tag, .. } = query.sender else {
            panic!("not a tagged query")
        };
        // The same datagram again, and moved to the new search: s1 as its addressee, and
        // the search's tag.
        let Sender::Query { from: s1_name, .. } = &query.sender else {
            unreachable!()
        };
        group.attacker.send(&captured.encode());
        let mut moved = captured.clone();
        if let Sender::Reply { to, tag: t, .. } = &mut moved.sender {
            *to = s1_name.clone();
            *t = tag;
        }
        group.attacker.send(&moved.encode());
        let answer = search.join().unwrap();
        answer.assert_error(404);
        assert!(matches!(captured.body, Body::Found(_)));
    });
    s1.wait_log("a wrong MAC under the cluster key", Duration::from_secs(5));
}

#[test]
fn made_up_peers_without_the_key_are_not_waited_for() {
    // Group size unknown: peers are those heard. A thousand made-up names, unsigned, are not.
    let group = keyed_group(0);
    let zero = "0".repeat(64);
    for n in 0..1000 {
        group
            .attacker
            .send(format!("made-up-{n};22;{zero}").as_bytes());
        std::thread::sleep(Duration::from_micros(200));
    }
    // s2's own answer to the discovery ping has been heard by now: a negative search asks
    // it alone and ends when it says no, not at the 3 s time-out.
    wait_until("s1 to hear s2", Duration::from_secs(10), || {
        let started = std::time::Instant::now();
        let answer = group
            .s1
            .get(&format!("/api/supernode/search/{}", absent_id(9)));
        answer.status == 404 && started.elapsed() < Duration::from_secs(1)
    });
    assert!(!group.s1.logged("of 1000 peers") && !group.s1.logged("of 1001 peers"));
}

#[test]
fn the_seeds_unsigned_supernodes_are_not_answered_in_a_keyed_group() {
    let group = keyed_group(2);
    group
        .attacker
        .send(format!("seed-supernode;20;{}", group.held).as_bytes());
    let answer = group
        .attacker
        .receive(Duration::from_millis(500), |d| d.contains(";21;"));
    assert_eq!(answer, None);
}

#[test]
fn keys_rotate_across_a_rolling_restart_without_a_failed_search() {
    let (a, b) = (
        "the-first-key-0123456789abcdef",
        "the-second-key-0123456789abcdef",
    );
    let group = group();
    let s2_port = free_port();
    let folder = Folder::with(&[("f", b"found at every step\n")]);
    let held = sha256(b"found at every step\n");
    let supernode = |name: &str, keys: &str, port: Option<u16>| {
        let launch = Launch::supernode(name, &group, 2).env("CLUSTER_KEY", keys);
        match port {
            Some(port) => launch.port(port),
            None => launch,
        }
        .start()
    };
    let node = |keys: &str| {
        Launch::node(
            "node",
            &folder.path,
            &[&format!("http://127.0.0.1:{s2_port}")],
        )
        .env("CLUSTER_KEY", keys)
        .start()
    };
    let found = |s1: &Proc| {
        let answer = s1.get(&format!("/api/supernode/search/{held}"));
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    };
    let mut s1 = supernode("s1", a, None);
    let mut s2 = supernode("s2", a, Some(s2_port));
    let mut n = node(a);
    wait_registered(&s2, &[&n]);
    found(&s1);
    // Every step: one instance restarts with its new keys, and searches go on at once. The
    // first key signs, every one verifies: any two neighbouring steps understand each other.
    for keys in [&format!("{a},{b}"), &format!("{b},{a}"), &b.to_string()] {
        drop(s1);
        s1 = supernode("s1", keys, None);
        found(&s1);
        drop(n);
        n = node(keys);
        wait_registered(&s2, &[&n]);
        found(&s1);
        drop(s2);
        s2 = supernode("s2", keys, Some(s2_port));
        wait_registered(&s2, &[&n]);
        found(&s1);
    }
    // And the old key alone is now a stranger.
    let stale = supernode("stale", a, None);
    stale
        .get(&format!("/api/supernode/search/{held}"))
        .assert_error(404);
}

//! SPEC section 10: supernodes where multicast does not reach each other, joined by `PEERS`
//! (unicast), against real processes. Here every supernode has a multicast group of its own,
//! so that only unicast joins them.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// A supernode alone in a group of its own, with its own socket on `port`, `PEERS` = `peers`
/// and `GROUP_SIZE` = `group_size`.
fn supernode(name: &str, port: u16, peers: &[u16], group_size: usize) -> Launch {
    let peers: Vec<String> = peers.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    Launch::supernode(name, &group(), group_size)
        .env("UNICAST_PORT", &port.to_string())
        .env("PEERS", &peers.join(","))
}

fn search(supernode: &Proc, id: &str) -> (Resp, Duration) {
    let started = Instant::now();
    let answer = supernode.get(&format!("/api/supernode/search/{id}"));
    (answer, started.elapsed())
}

#[test]
fn peers_find_each_other_by_unicast_and_stop_waiting_for_a_silent_one() {
    let (p1, p2) = (free_port(), free_port());
    let s1 = supernode("s1", p1, &[p2], 2)
        .env("SEARCH_TIMEOUT_MS", "3000")
        .start();
    let s2 = supernode("s2", p2, &[p1], 2).start();
    let folder = Folder::with(&[("far", b"on the other site\n")]);
    let node = Launch::node("n2", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    let far = sha256(b"on the other site\n");

    // Found across, and a negative ends at s2's 22, not at the time-out.
    let (answer, _) = search(&s1, &far);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["data"]["file"]["location"], node.location());
    let (answer, took) = search(&s1, &absent_id(1));
    answer.assert_error(404);
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Name searches and ?all=true cross too.
    let names = s1.get("/api/supernode/search?file_name=FAR");
    assert_eq!(names.status, 200);
    assert_eq!(names.json()["data"].as_array().map(Vec::len), Some(1));
    let all = s1.get(&format!("/api/supernode/search/{far}?all=true"));
    assert_eq!(
        sorted_locations(&all.json()["data"]["file"]),
        vec![node.location()]
    );

    // s2 goes: searches wait the time-out until it has missed 3 pings, then not at all.
    drop(node);
    s2.kill();
    s1.wait_log("has not answered 3 pings", Duration::from_secs(25));
    let (answer, took) = search(&s1, &absent_id(2));
    answer.assert_error(404);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let metrics = String::from_utf8(s1.get("/metrics").body).unwrap();
    assert!(
        metrics.contains("superpeer_configured_peers_silent 1"),
        "{metrics}"
    );

    // Back on the same address: heard again, searched again.
    let s2 = supernode("s2", p2, &[p1], 2).start();
    let node = Launch::node("n2", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    s1.wait_log("answers again", Duration::from_secs(15));
    let (answer, _) = search(&s1, &far);
    assert_eq!(answer.status, 200);
}

#[test]
fn without_peers_separate_groups_do_not_find_each_other() {
    let (p1, p2) = (free_port(), free_port());
    let s1 = supernode("s1", p1, &[], 2).start();
    let s2 = supernode("s2", p2, &[], 2).start();
    let folder = Folder::with(&[("far", b"unreachable without PEERS\n")]);
    let node = Launch::node("n2", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    let (answer, took) = search(&s1, &sha256(b"unreachable without PEERS\n"));
    answer.assert_error(404);
    assert!(
        took >= Duration::from_millis(1400),
        "ended at the time-out: {took:?}"
    );
}

#[test]
fn a_bad_peers_list_stops_the_start_with_a_clear_error() {
    for bad in [
        "127.0.0.1",
        "127.0.0.1:0",
        ":4321",
        "127.0.0.1:99999",
        "a:1,b",
    ] {
        let mut proc = Launch::supernode("s", &group(), 2)
            .env("PEERS", bad)
            .spawn();
        let status = proc.wait_exit(Duration::from_secs(5));
        assert!(!status.success(), "PEERS={bad}");
        proc.wait_log("PEERS", Duration::from_secs(5));
    }
}

//! SPEC section 10: supernodes where multicast does not reach each other, joined by `PEERS`
//! (unicast), against real processes. Here every supernode has a multicast group of its own,
//! so that only unicast joins them.

use std::time::{Duration, Instant};

use crate::support::*;

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

/// A link between a supernode and its one `PEERS` entry that drops the first datagram from
/// the far side for which `drop` says so: the near supernode sends to `near()`, and the far
/// one (own socket on `far_port`) hears it from the link's other socket and answers there.
struct LossyLink {
    near: std::net::UdpSocket,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LossyLink {
    fn start(far_port: u16, drops: Vec<fn(&str) -> bool>) -> LossyLink {
        use std::net::{SocketAddr, UdpSocket};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let near = UdpSocket::bind("127.0.0.1:0").unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (dropped, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let near_peer: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let far_addr: SocketAddr = format!("127.0.0.1:{far_port}").parse().unwrap();
        for socket in [&near, &far] {
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
        }
        // Near to far: everything.
        let (from_near, to_far, peer, halt) = (
            near.try_clone().unwrap(),
            far.try_clone().unwrap(),
            near_peer.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !halt.load(Ordering::Relaxed) {
                if let Ok((len, from)) = from_near.recv_from(&mut buffer) {
                    *peer.lock().unwrap() = Some(from);
                    let _ = to_far.send_to(&buffer[..len], far_addr);
                }
            }
        });
        // Far to near: all but the first datagram each of `drops` picks.
        let (from_far, to_near, count, halt) = (
            far,
            near.try_clone().unwrap(),
            dropped.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            let mut armed = drops;
            while !halt.load(Ordering::Relaxed) {
                let Ok((len, _)) = from_far.recv_from(&mut buffer) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                if let Some(at) = armed.iter().position(|picks| picks(&text)) {
                    armed.remove(at);
                    count.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(to) = *near_peer.lock().unwrap() {
                    let _ = to_near.send_to(&buffer[..len], to);
                }
            }
        });
        LossyLink {
            near,
            dropped,
            stop,
        }
    }

    fn near_port(&self) -> u16 {
        self.near.local_addr().unwrap().port()
    }

    fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_lost_part_of_a_name_answer_or_a_lost_holders_answer_is_asked_for_again() {
    // s1 reaches s2 only through a link that loses the second part of s2's first name answer
    // and its first every-holder answer: each search asks s2 again (SEARCH_RETRY_MS), and gets
    // everything s2 holds, where it once ended at the time-out with what had come.
    let p2 = free_port();
    let link = LossyLink::start(
        p2,
        vec![|datagram| datagram.contains(";24;2/"), |datagram| {
            datagram.contains(";26;")
        }],
    );
    let s1 = supernode("s1", free_port(), &[link.near_port()], 2)
        .env("SEARCH_TIMEOUT_MS", "3000")
        .start();
    let s2 = supernode("s2", p2, &[], 2).start();
    // Long names: a few matches a datagram, so s2's answer comes in several parts.
    let names: Vec<String> = (0..24)
        .map(|n| format!("lossy-{n:02}-{}", "x".repeat(120)))
        .collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    let folder = Folder::with(&files);
    let node = Launch::node("n2", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    let first = sha256(names[0].as_bytes());
    wait_until(
        "s1 to find s2's files through the link",
        Duration::from_secs(10),
        || s1.get(&format!("/api/supernode/search/{first}")).status == 200,
    );

    let found = s1.get("/api/supernode/search?file_name=LOSSY");
    assert_eq!(found.status, 200);
    let mut ids: Vec<String> = found.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = names.iter().map(|n| sha256(n.as_bytes())).collect();
    want.sort();
    assert!(
        ids == want,
        "{} of the {} matches came",
        ids.len(),
        want.len()
    );

    let all = s1.get(&format!("/api/supernode/search/{first}?all=true"));
    assert_eq!(
        sorted_locations(&all.json()["data"]["file"]),
        vec![node.location()]
    );
    assert_eq!(link.dropped(), 2, "the link lost what it should");
}

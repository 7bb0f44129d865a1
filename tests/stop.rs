//! SPEC section 8, a graceful stop: on SIGTERM or SIGINT a node leaves its supernode at once,
//! and a supernode answers the requests in flight before it exits 0.

use std::time::{Duration, Instant};

use crate::support::*;
use superpeer::wire::{self, Body, Message, Sender};

fn signal(proc: &Proc, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {}", proc.name);
}

#[test]
fn a_node_stopped_with_sigterm_leaves_its_supernode_at_once() {
    let group = group();
    // No sweep runs: only the leave can take the node out of the index.
    let supernode = Launch::supernode("super", &group, 1).start();
    let folder = Folder::with(&[("f", b"here until SIGTERM\n")]);
    let id = sha256(b"here until SIGTERM\n");
    let mut node = Launch::node("node", &folder.path, &[&supernode.url()])
        .env("HEARTBEAT_MS", "60000")
        .start();
    wait_registered(&supernode, &[&node]);
    let search = format!("/api/supernode/search/{id}");
    assert_eq!(supernode.get(&search).status, 200);

    let stopped = Instant::now();
    signal(&node, "TERM");
    let status = node.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "the node's exit status");
    wait_until(
        "the node's file to leave the index",
        Duration::from_secs(1),
        || supernode.get(&search).status == 404,
    );
    assert!(alive(&supernode).is_empty());
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(node.logged("SIGTERM: stopping"));
    assert!(node.logged(&format!("left {}", supernode.url())));
    supernode.wait_log(
        &format!("node {} left (1 resources)", node.location()),
        Duration::from_secs(5),
    );
}

#[test]
fn sigint_stops_a_node_as_sigterm_does() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let folder = Folder::with(&[("f", b"here until Ctrl-C\n")]);
    let mut node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    signal(&node, "INT");
    assert_eq!(node.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert!(alive(&supernode).is_empty());
}

#[test]
fn a_supernode_answers_the_search_in_flight_then_exits_0() {
    let group = group();
    let mut supernode = Launch::supernode("super", &group, 2)
        .env("SEARCH_TIMEOUT_MS", "10000")
        .start();
    // The other member of the group is the test: the search waits for its answer.
    let peer = Peer::join(&group);
    let id = absent_id(1);
    std::thread::scope(|scope| {
        let search = scope.spawn(|| supernode.get(&format!("/api/supernode/search/{id}")));
        let heard = peer
            .receive(Duration::from_secs(5), |d| {
                d.ends_with(&format!(";20;{id}"))
            })
            .expect("the supernode's query");
        // The search is in flight: stop the supernode, then answer.
        let stopped = Instant::now();
        signal(&supernode, "TERM");
        supernode.wait_log("SIGTERM: stopping", Duration::from_secs(5));
        // A new connection is not taken any more.
        wait_until("the listener to close", Duration::from_secs(5), || {
            std::net::TcpStream::connect(supernode.addr).is_err()
        });
        let Sender::Query { from, tag } = wire::parse(heard.as_bytes()).unwrap().sender else {
            panic!("not a tagged query: {heard}")
        };
        let reply = Sender::Reply {
            from: "peer".into(),
            to: from,
            tag,
        };
        peer.send(&Message::new(reply, Body::Found("127.0.0.1:9".into())).encode());
        let answer = search.join().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["data"]["file"]["location"], "127.0.0.1:9");
        assert!(stopped.elapsed() < Duration::from_secs(5));
    });
    assert_eq!(supernode.wait_exit(Duration::from_secs(15)).code(), Some(0));
    // The last line may still be on its way through the pipe when the process is gone.
    supernode.wait_log("stopped", Duration::from_secs(5));
}

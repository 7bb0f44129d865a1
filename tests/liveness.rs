//! SPEC section 5: health checks, removal, re-registration and fail-over, with real processes.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_killed_node_leaves_after_two_missed_checks_a_period_apart_and_not_before() {
    let group = group();
    let period = Duration::from_millis(1500);
    let supernode = Launch::supernode("super", &group, 1)
        .env("LIVENESS_PERIOD_MS", &period.as_millis().to_string())
        .start();
    let folder = Folder::with(&[("f", b"short-lived\n")]);
    let id = sha256(b"short-lived\n");
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    let location = node.location();
    wait_registered(&supernode, &[&node]);

    // A sweep over a live node changes nothing.
    assert_eq!(supernode.get("/api/supernode/xxx").status, 204);
    assert_eq!(alive(&supernode), std::slice::from_ref(&location));

    node.kill();
    let first_miss = Instant::now();
    assert_eq!(supernode.get("/api/supernode/xxx").status, 204);
    // A second sweep at once is not a second chance missed: a node slow once must not go.
    assert_eq!(supernode.get("/api/supernode/xxx").status, 204);
    assert_eq!(
        alive(&supernode),
        std::slice::from_ref(&location),
        "removed by two sweeps in a row"
    );
    assert_eq!(
        supernode.get(&format!("/api/supernode/search/{id}")).status,
        200
    );

    // The periodic sweep a period later counts the second miss.
    wait_until("the removal", Duration::from_secs(10), || {
        alive(&supernode).is_empty()
    });
    let after = first_miss.elapsed();
    assert!(after >= period, "removed {after:?} after the first miss");
    supernode
        .get(&format!("/api/supernode/search/{id}"))
        .assert_error(404);
    supernode.wait_log(
        &format!("removed {location} (1 resources)"),
        Duration::from_secs(5),
    );
}

#[test]
fn the_periodic_sweep_removes_a_dead_node_by_itself() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("LIVENESS_PERIOD_MS", "200")
        .start();
    let folder = Folder::with(&[("f", b"x")]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    node.kill();
    wait_until("the dead node's removal", Duration::from_secs(10), || {
        alive(&supernode).is_empty()
    });
}

#[test]
fn a_restarted_supernode_learns_its_nodes_again() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let port = supernode.addr.port();
    let folder = Folder::with(&[("f", b"survives a supernode restart\n")]);
    let id = sha256(b"survives a supernode restart\n");
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    // The node has had the answer too: killed before it, the supernode would leave the node
    // retrying its first registration rather than registering again after a 404.
    node.wait_log("registered 127.0.0.1", Duration::from_secs(10));

    supernode.kill();
    let supernode = Launch::supernode("super-again", &group, 1)
        .port(port)
        .start();
    // Nobody restarts the node: its next heartbeat gets a 404 and it registers again.
    wait_until(
        "the node to register again",
        Duration::from_secs(10),
        || supernode.get(&format!("/api/supernode/search/{id}")).status == 200,
    );
    node.wait_log("registering again", Duration::from_secs(5));
}

#[test]
fn a_node_started_before_its_supernode_registers_when_it_comes_up() {
    let port = free_port();
    let folder = Folder::with(&[("f", b"early node\n")]);
    let node = Launch::node("node", &folder.path, &[&format!("http://127.0.0.1:{port}")]).start();
    node.wait_log("cannot register", Duration::from_secs(10));
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).port(port).start();
    wait_registered(&supernode, &[&node]);
    assert_eq!(
        supernode
            .get(&format!(
                "/api/supernode/search/{}",
                sha256(b"early node\n")
            ))
            .status,
        200
    );
}

#[test]
fn a_node_fails_over_along_its_supernode_list() {
    let group = group();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let first = Launch::supernode("first", &group, 2).start();
    let second = Launch::supernode("second", &group, 2).start();
    let folder = Folder::with(&[("f", b"fail-over\n")]);
    let id = sha256(b"fail-over\n");

    // The first entry is down: the node registers with the next one.
    let node = Launch::node("node", &folder.path, &[&dead, &first.url(), &second.url()]).start();
    wait_registered(&first, &[&node]);

    // Its supernode dies: the node moves on to the next one, and is found there.
    first.kill();
    wait_registered(&second, &[&node]);
    assert_eq!(
        second.get(&format!("/api/supernode/search/{id}")).status,
        200
    );
    // And the node's own look-ups go to the supernode that answers.
    node.get(&format!("/api/node/resources/{}", absent_id(1)))
        .assert_error(404);
}

#[test]
fn hanging_nodes_do_not_delay_the_checks_of_the_others() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("HEALTH_TIMEOUT_MS", "1000")
        .env("HEALTH_CONCURRENCY", "64")
        .env("LIVENESS_PERIOD_MS", "1000")
        .start();
    let folder = Folder::with(&[("f", b"alive and well\n")]);
    let live = Launch::node("live", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&live]);

    // Thirty "nodes" that accept connections and never answer.
    let hangers: Vec<TcpListener> = (0..30)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, listener) in hangers.iter().enumerate() {
        let body = serde_json::json!({
            "name": format!("hanging-{i}"),
            "location": listener.local_addr().unwrap().to_string(),
            "resources": [{"id": absent_id(i as u32), "name": "never served"}],
        });
        assert_eq!(
            supernode
                .post("/api/supernode/register", body.to_string().as_bytes())
                .status,
            204
        );
    }
    assert_eq!(alive(&supernode).len(), 31);

    // Checked one after another they would take 30 s; concurrently, about one time-out.
    for round in 1..=2 {
        let started = Instant::now();
        assert_eq!(supernode.get("/api/supernode/xxx").status, 204);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "sweep {round} took {took:?}");
    }
    wait_until(
        "the hanging nodes' removal",
        Duration::from_secs(10),
        || alive(&supernode) == [live.location()],
    );
}

#[test]
fn a_burst_of_manual_sweeps_costs_one_sweep_and_holds_nobody_else() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("HEALTH_TIMEOUT_MS", "1000")
        .start();
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let id = absent_id(7);
    let body = serde_json::json!({
        "location": hanging.local_addr().unwrap().to_string(),
        "resources": [{"id": id, "name": "never served"}],
    });
    let registered = supernode.post("/api/supernode/register", body.to_string().as_bytes());
    assert_eq!(registered.status, 204);

    // Sixteen at once (as many as HTTP_WORKERS): one after another they would take 16 s, each
    // holding a thread. Before: every worker was pinned for about 30 s.
    let started = Instant::now();
    std::thread::scope(|scope| {
        let sweeps: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| supernode.get("/api/supernode/xxx").status))
            .collect();
        assert_served(
            supernode.addr,
            &format!("/api/supernode/search/{id}"),
            "16 manual sweeps",
        );
        for sweep in sweeps {
            assert_eq!(sweep.join().unwrap(), 204);
        }
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "the burst took {took:?}"
    );
    let sweeps = supernode.count_logged("missed a health check");
    assert!((1..=2).contains(&sweeps), "{sweeps} sweeps for 16 requests");
    // A node slow in two sweeps a moment apart has missed one period's check, not two.
    assert_eq!(alive(&supernode).len(), 1);
}

#[test]
fn a_registration_left_at_another_supernode_is_taken_back() {
    // An earlier run of the node (before a fail-over, or before a kill -9 and a restart)
    // registered with `second`; this run registers with `first`. Left there, the old
    // registration would go on handing the node out after it leaves `first` (its health
    // checks still pass): found by the real VMs (machine/vms.sh).
    let group = group();
    let first = Launch::supernode("first", &group, 2).start();
    let second = Launch::supernode("second", &group, 2).start();
    let folder = Folder::with(&[("f", b"registered once only\n")]);
    let port = free_port();
    let location = format!("127.0.0.1:{port}");
    let earlier = serde_json::json!({
        "name": "node", "location": location,
        "resources": [{"id": sha256(b"registered once only\n"), "name": "f"}],
    });
    assert_eq!(
        second
            .post("/api/supernode/register", earlier.to_string().as_bytes())
            .status,
        204
    );
    let node = Launch::node("node", &folder.path, &[&first.url(), &second.url()])
        .port(port)
        .start();
    wait_registered(&first, &[&node]);
    wait_until(
        "second to drop the earlier registration",
        Duration::from_secs(5),
        || !alive(&second).contains(&location),
    );
    node.wait_log("which still had", Duration::from_secs(5));
}

//! SPEC section 10, index digests: each supernode announces a versioned summary of its index,
//! the others fetch it, and a search asks only the supernodes whose summary may hold the id,
//! against real processes.

use std::time::{Duration, Instant};

use crate::support::*;

/// Datagrams of `kind` that `proc` received, from its metrics.
fn received(proc: &Proc, kind: &str) -> f64 {
    metric(
        proc,
        &format!("superpeer_datagrams_received_total{{kind=\"{kind}\"}}"),
    )
}

/// Waits until `asker` holds a fresh summary of `peers` other supernodes.
fn wait_summaries(asker: &Proc, peers: usize) {
    wait_until(
        &format!("{} to hold {peers} fresh summaries", asker.name),
        Duration::from_secs(15),
        || {
            let status = asker.get("/api/supernode/status").json();
            let summaries = status["data"]["summaries"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            summaries.iter().filter(|s| s["fresh"] == true).count() == peers
        },
    );
}

struct Three {
    s1: Proc,
    s2: Proc,
    s3: Proc,
    node: Proc,
    folder: Folder,
    group: String,
}

/// Three supernodes; a node of s2 holds one file.
fn three() -> Three {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 3).start();
    let s2 = Launch::supernode("s2", &group, 3).start();
    let s3 = Launch::supernode("s3", &group, 3).start();
    let folder = Folder::with(&[("at-s2", b"indexed at s2\n")]);
    let node = Launch::node("n2", &folder.path, &[&s2.url()]).start();
    wait_registered(&s2, &[&node]);
    Three {
        s1,
        s2,
        s3,
        node,
        folder,
        group,
    }
}

#[test]
fn a_search_asks_only_the_supernodes_whose_summary_may_hold_the_id() {
    let t = three();
    wait_summaries(&t.s1, 2);
    let (q2, q3) = (received(&t.s2, "query"), received(&t.s3, "query"));
    // Positive: s2 is asked, s3 (whose summary cannot hold the id) handles nothing.
    let answer = t.s1.get(&format!(
        "/api/supernode/search/{}",
        sha256(b"indexed at s2\n")
    ));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["data"]["file"]["location"], t.node.location());
    // Negative: nobody is asked, and the answer does not wait for anyone.
    for n in 0..20 {
        let started = Instant::now();
        t.s1.get(&format!("/api/supernode/search/{}", absent_id(n)))
            .assert_error(404);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    // Pings went on meanwhile (every 5 s): count queries for resources only.
    let (d2, d3) = (received(&t.s2, "query") - q2, received(&t.s3, "query") - q3);
    assert!(
        d2 <= 2.0,
        "s2 handled {d2} queries (one search, maybe a ping)"
    );
    assert!(d3 <= 1.0, "s3 handled {d3} queries (at most a ping)");
    assert!(d2 >= 1.0, "s2 was asked");
}

#[test]
fn a_registration_is_found_from_the_others_at_once() {
    let t = three();
    wait_summaries(&t.s1, 2);
    wait_summaries(&t.s3, 2);
    // A new node registers at s2: s1 and s3 find its file right after, by the announcement
    // s2 sends before it answers the registration (a delta of one id, not the whole summary).
    let folder = Folder::with(&[("new", b"registered just now\n")]);
    let started = Instant::now();
    let node = Launch::node("n2b", &folder.path, &[&t.s2.url()]).start();
    wait_registered(&t.s2, &[&node]);
    let id = sha256(b"registered just now\n");
    for asker in [&t.s1, &t.s3] {
        wait_until(
            &format!("{} to find the new file", asker.name),
            Duration::from_secs(5),
            || asker.get(&format!("/api/supernode/search/{id}")).status == 200,
        );
    }
    println!(
        "found from both others {:?} after the node started",
        started.elapsed()
    );
    // The removal of a node leaves its ids in the summaries until the next rebuild: a search
    // for them asks s2 once more, and gets the right answer.
    let leave = format!(r#"{{"location":"{}"}}"#, node.location());
    assert_eq!(
        t.s2.post("/api/supernode/leave", leave.as_bytes()).status,
        204
    );
    drop(node);
    drop(folder);
    t.s1.get(&format!("/api/supernode/search/{id}"))
        .assert_error(404);
    let _ = (&t.folder, &t.group);
}

#[test]
fn a_seed_supernode_in_the_group_means_everyone_is_asked() {
    let t = three();
    // A member that has no summary, and has not been heard yet: a seed supernode. s4 knows
    // the group is five (GROUP_SIZE=5) and has heard only three others: it rules nobody out.
    let s4 = Launch::supernode("s4", &t.group, 5)
        .env("SEARCH_TIMEOUT_MS", "1500")
        .start();
    let seed = Peer::join(&t.group);
    wait_summaries(&s4, 3);
    let absent = absent_id(5);
    let before = received(&t.s3, "query");
    let search = std::thread::spawn({
        let url = format!("{}/api/supernode/search/{absent}", s4.url());
        move || get(&url)
    });
    // The query reaches the group (so the seed hears it), and s3 too.
    seed.receive(Duration::from_secs(5), |d| {
        d.ends_with(&format!(";20;{absent}"))
    })
    .expect("the query on the group");
    seed.send(format!("seed-uuid;22;{absent}").as_bytes());
    search.join().unwrap().assert_error(404);
    wait_until("s3 to have been asked", Duration::from_secs(5), || {
        received(&t.s3, "query") > before
    });
}

#[test]
fn the_summary_is_served_whole_or_as_a_delta_and_bad_requests_are_refused() {
    let group = group();
    let s = Launch::supernode("s", &group, 1).start();
    let whole = s.get("/api/supernode/digest");
    assert_eq!(whole.status, 200);
    assert_eq!(&whole.body[..5], b"SPD1\0");
    let epoch = u64::from_le_bytes(whole.body[5..13].try_into().unwrap());
    let delta = s.get(&format!("/api/supernode/digest?epoch={epoch:x}&since=0"));
    assert_eq!(&delta.body[..5], b"SPD1\x01");
    assert_eq!(delta.body.len(), 5 + 8 + 8 + 4, "nothing added since 0");
    for bad in [
        "?epoch=zz&since=0",
        "?epoch=1",
        "?since=1",
        "?epoch=1&since=-1",
    ] {
        s.get(&format!("/api/supernode/digest{bad}"))
            .assert_error(400);
    }
    assert_eq!(
        s.post("/api/supernode/digest", b"").status,
        405,
        "read-only"
    );
}

#[test]
fn without_summaries_everyone_is_asked_as_before() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("INDEX_DIGESTS", "false")
        .start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let before = received(&s2, "query");
    s1.get(&format!("/api/supernode/search/{}", absent_id(3)))
        .assert_error(404);
    assert!(received(&s2, "query") > before);
    let status = s1.get("/api/supernode/status").json();
    assert_eq!(status["data"]["summaries"], serde_json::json!([]));
}

#[test]
fn under_a_cluster_key_summaries_are_signed_and_checked() {
    const KEY: &str = "the-cluster-key-of-the-digest-test-0123";
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2)
        .env("CLUSTER_KEY", KEY)
        .start();
    let s2 = Launch::supernode("s2", &group, 2)
        .env("CLUSTER_KEY", KEY)
        .start();
    // s1 takes in s2's signed summary (a summary whose MAC failed would stay not fresh).
    wait_summaries(&s1, 1);
    let before = received(&s2, "query");
    s1.get(&format!("/api/supernode/search/{}", absent_id(4)))
        .assert_error(404);
    assert_eq!(received(&s2, "query"), before, "decided by s2's summary");
    // What s2 serves ends with a 32-byte MAC: the bare summary of an empty index is 4 + 1 +
    // 8 + 8 + 1 + 8 bytes and a filter of 4,096 x 10 bits.
    let served = s2.get("/api/supernode/digest");
    assert_eq!(served.body.len(), 30 + 4096 * 10 / 8 + 32);
}

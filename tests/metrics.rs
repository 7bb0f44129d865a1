//! SPEC section 8, what operators see: `GET /metrics` on both roles moves with the traffic,
//! passes `promtool check metrics`, and a supernode writes a summary line instead of a line
//! per search.

use std::time::Duration;

use crate::support::*;

/// The value of `series` (name and labels, as written) in a scrape, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn scrape(proc: &Proc) -> String {
    let answer = proc.get("/metrics");
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body).unwrap()
}

/// Waits until `series` reaches at least `want` in `proc`'s scrape; returns the scrape.
fn wait_value(proc: &Proc, series: &str, want: f64) -> String {
    let mut text = String::new();
    wait_until(
        &format!("{} {series} >= {want}", proc.name),
        Duration::from_secs(10),
        || {
            text = scrape(proc);
            value(&text, series).is_some_and(|v| v >= want)
        },
    );
    text
}

#[test]
fn counters_move_with_the_traffic() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    let here = Folder::with(&[("here", b"held by a node of s1\n")]);
    let there = Folder::with(&[("there", b"held by a node of s2\n")]);
    let (local, remote) = (
        sha256(b"held by a node of s1\n"),
        sha256(b"held by a node of s2\n"),
    );
    let node1 = Launch::node("node1", &here.path, &[&s1.url()]).start();
    let node2 = Launch::node("node2", &there.path, &[&s2.url()]).start();
    wait_registered(&s1, &[&node1]);
    wait_registered(&s2, &[&node2]);

    for _ in 0..3 {
        assert_eq!(
            s1.get(&format!("/api/supernode/search/{local}")).status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            s1.get(&format!("/api/supernode/search/{remote}")).status,
            200
        );
    }
    s1.get(&format!("/api/supernode/search/{}", absent_id(1)))
        .assert_error(404);
    // A registration for a location that is not the sender's: refused.
    let foreign = br#"{"name":"x","location":"127.0.0.1:9","resources":[]}"#;
    let (status, _) = post_from(s1.addr, "127.0.0.2", "/api/supernode/register", foreign);
    assert_eq!(status, 403);
    // One sweep: node1 is checked once.
    assert_eq!(s1.get("/api/supernode/xxx").status, 204);

    let answer = s1.get("/metrics");
    let text = String::from_utf8(answer.body).unwrap();
    for (series, want) in [
        ("superpeer_searches_total{outcome=\"local_hit\"}", 3.0),
        ("superpeer_searches_total{outcome=\"found_by_group\"}", 2.0),
        ("superpeer_searches_total{outcome=\"not_found\"}", 1.0),
        ("superpeer_searches_total{outcome=\"timed_out\"}", 0.0),
        (
            "superpeer_search_duration_seconds_count{kind=\"local\"}",
            3.0,
        ),
        (
            "superpeer_search_duration_seconds_count{kind=\"remote\"}",
            3.0,
        ),
        (
            "superpeer_http_requests_total{route=\"/api/supernode/search/{id}\",status=\"200\"}",
            5.0,
        ),
        (
            "superpeer_http_requests_total{route=\"/api/supernode/search/{id}\",status=\"404\"}",
            1.0,
        ),
        (
            "superpeer_registrations_total{outcome=\"403\",request=\"register\"}",
            1.0,
        ),
        ("superpeer_health_checks_total{result=\"ok\"}", 1.0),
        ("superpeer_index_nodes", 1.0),
        ("superpeer_index_resources", 1.0),
        ("superpeer_index_locations", 1.0),
        ("superpeer_group_peers", 1.0),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series} in:\n{text}");
    }
    for series in [
        "superpeer_registrations_total{outcome=\"accepted\",request=\"register\"}",
        "superpeer_datagrams_sent_total{kind=\"query\"}",
        "superpeer_datagrams_received_total{kind=\"found\"}",
        // The negative search is decided by s2's summary (no datagram): its announcements.
        "superpeer_datagrams_received_total{kind=\"digest\"}",
        "superpeer_http_connections_open",
        "process_resident_memory_bytes",
        "process_threads",
    ] {
        assert!(
            value(&text, series).is_some_and(|v| v >= 1.0),
            "{series} in:\n{text}"
        );
    }
    // s2 answered s1's queries for the remote id (its summary may hold it; the absent id's
    // search never reached s2, whose summary cannot hold it).
    let other = scrape(&s2);
    assert!(value(&other, "superpeer_datagrams_received_total{kind=\"query\"}").unwrap() >= 2.0);
    assert!(value(&other, "superpeer_datagrams_sent_total{kind=\"found\"}").unwrap() >= 2.0);

    // The node counts what it served: the sweep's health check, this scrape.
    let node_text = scrape(&node1);
    assert_eq!(
        value(
            &node_text,
            "superpeer_http_requests_total{route=\"/api/node/health\",status=\"200\"}"
        ),
        Some(1.0),
        "{node_text}"
    );
    assert!(!node_text.contains("superpeer_searches_total"));

    // A leave, counted as a registration request and as a removal.
    let leave = format!(r#"{{"location":"{}"}}"#, node1.location());
    assert_eq!(
        s1.post("/api/supernode/leave", leave.as_bytes()).status,
        204
    );
    let text = scrape(&s1);
    assert_eq!(
        value(&text, "superpeer_nodes_removed_total{reason=\"leave\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "superpeer_index_nodes"), Some(0.0));
}

#[test]
fn the_metrics_are_served_as_prometheus_text() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    let answer = raw_get(supernode.addr, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{answer}"
    );
    assert!(answer.contains("# HELP superpeer_searches_total "));
    assert!(answer.contains("# TYPE superpeer_searches_total counter"));
    assert_eq!(supernode.post("/metrics", b"").status, 405);
}

#[test]
fn datagrams_dropped_are_counted_by_reason() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 2)
        .env("CLUSTER_KEY", "the-metrics-test-key-0123456789")
        .start();
    let stranger = Peer::join(&group);
    stranger.send(b"junk, not a datagram of the protocol");
    stranger.send(format!("someone/1f;20;{}", absent_id(2)).as_bytes());
    wait_value(
        &supernode,
        "superpeer_datagrams_dropped_total{reason=\"malformed\"}",
        1.0,
    );
    let text = wait_value(
        &supernode,
        "superpeer_datagrams_dropped_total{reason=\"unsigned\"}",
        1.0,
    );
    assert_eq!(
        value(&text, "superpeer_datagrams_received_total{kind=\"query\"}"),
        None,
        "an unsigned query counted as received:\n{text}"
    );
}

#[test]
fn a_supernode_writes_a_summary_line_not_a_line_per_search() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 2)
        .env("LOG_LEVEL", "info")
        .env("LOG_SUMMARY_MS", "300")
        .env("SEARCH_TIMEOUT_MS", "200")
        .start();
    let absent = absent_id(3);
    for _ in 0..2 {
        supernode
            .get(&format!("/api/supernode/search/{absent}"))
            .assert_error(404);
    }
    // The two may fall into one period or two: the summaries add up to them.
    wait_until("summaries of both searches", Duration::from_secs(5), || {
        let timed_out: usize = (0..=2)
            .map(|n| {
                supernode.count_logged(&format!(
                    "searches (0 local, 0 found by the group, 0 not found, {n} timed out), p50 "
                )) * n
            })
            .sum();
        timed_out == 2
    });
    assert!(supernode.logged("summary of the last 300ms: "));
    assert!(!supernode.logged(&format!("search {absent}")));
    let lines = supernode.count_logged("summary of the last");
    // Nothing happened since: no more summaries.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(supernode.count_logged("summary of the last"), lines);
}

/// `promtool check metrics` (Debian's `prometheus` package) on both roles' scrapes; run by
/// `make test-tools`, which CI runs after installing it.
#[test]
#[ignore = "needs promtool: make test-tools"]
fn promtool_accepts_both_roles() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    let folder = Folder::with(&[("f", b"scraped\n")]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    supernode.get(&format!("/api/supernode/search/{}", sha256(b"scraped\n")));
    supernode.get("/api/supernode/xxx");
    for proc in [&supernode, &node] {
        let text = scrape(proc);
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool (apt-get install prometheus)");
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool on {}'s metrics: {}{}\n{text}",
            proc.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

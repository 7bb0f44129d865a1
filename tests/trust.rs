//! SPEC section 7, who may speak for what: only a node's own address registers, beats or
//! leaves for its location, in the one spelling of that address and never by name, and quotas
//! (in total, per node, per source host) bound the index without costing what it holds. The
//! attacker is 127.0.0.2; the nodes live on 127.0.0.1.

use std::time::Duration;

use crate::support::*;

const ATTACKER: &str = "127.0.0.2";

fn registration(location: &str, ids: &[String]) -> Vec<u8> {
    let resources: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": "x"}))
        .collect();
    serde_json::json!({"name": "n", "location": location, "resources": resources})
        .to_string()
        .into_bytes()
}

#[test]
fn a_foreign_source_can_neither_wipe_nor_hijack_nor_keep_alive_a_node() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let folder = Folder::with(&[("f", b"a node's own file\n")]);
    let id = sha256(b"a node's own file\n");
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    let location = node.location();
    let addr = supernode.addr;

    // Wipe its list, make it the holder of other ids, beat for it, make it leave: all 403.
    let hijacked = absent_id(1);
    for (path, body) in [
        ("/api/supernode/register", registration(&location, &[])),
        (
            "/api/supernode/register",
            registration(&location, std::slice::from_ref(&hijacked)),
        ),
        (
            "/api/supernode/alive",
            format!(r#"{{"location":"{location}"}}"#).into_bytes(),
        ),
        (
            "/api/supernode/leave",
            format!(r#"{{"location":"{location}"}}"#).into_bytes(),
        ),
    ] {
        let (status, answer) = post_from(addr, ATTACKER, path, &body);
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer.contains("127.0.0.2"), "{answer}");
    }
    let found = supernode.get(&format!("/api/supernode/search/{id}"));
    assert_eq!(found.json()["data"]["file"]["location"], location);
    supernode
        .get(&format!("/api/supernode/search/{hijacked}"))
        .assert_error(404);
    supernode.wait_log("refused 127.0.0.1:", Duration::from_secs(5));

    // Its own address may register itself, and so may the attacker for its own.
    let own = registration(&format!("{ATTACKER}:9"), &[absent_id(2)]);
    assert_eq!(
        post_from(addr, ATTACKER, "/api/supernode/register", &own).0,
        204
    );
    let mut live = alive(&supernode);
    live.sort();
    assert_eq!(live, [location.clone(), "127.0.0.2:9".to_string()]);
}

#[test]
fn a_node_leaves_from_its_own_address() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let body = registration("127.0.0.1:9", &[absent_id(3)]);
    assert_eq!(supernode.post("/api/supernode/register", &body).status, 204);
    let leave = br#"{"location":"127.0.0.1:9"}"#;
    assert_eq!(supernode.post("/api/supernode/leave", leave).status, 204);
    assert!(alive(&supernode).is_empty());
    supernode
        .get(&format!("/api/supernode/search/{}", absent_id(3)))
        .assert_error(404);
    supernode
        .post("/api/supernode/leave", leave)
        .assert_error(404);
    supernode
        .post("/api/supernode/leave", br#"{"location":"not a location"}"#)
        .assert_error(400);
    supernode.wait_log(
        "node 127.0.0.1:9 left (1 resources)",
        Duration::from_secs(5),
    );
}

#[test]
fn behind_nat_the_source_check_can_be_turned_off() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("SOURCE_CHECK", "false")
        .start();
    let body = registration("127.0.0.1:9", &[absent_id(4)]);
    assert_eq!(
        post_from(supernode.addr, ATTACKER, "/api/supernode/register", &body).0,
        204
    );
    assert_eq!(alive(&supernode), ["127.0.0.1:9"]);
}

#[test]
fn quotas_refuse_a_registration_and_keep_what_the_index_holds() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("MAX_RESOURCES_PER_NODE", "10")
        .env("MAX_INDEX_RESOURCES", "25")
        .env("MAX_NODES", "3")
        .start();
    let ids =
        |node: u32, n: u32| -> Vec<String> { (0..n).map(|i| absent_id(1000 * node + i)).collect() };
    let register = |port: u16, ids: &[String]| {
        supernode.post(
            "/api/supernode/register",
            &registration(&format!("127.0.0.1:{port}"), ids),
        )
    };
    let holds = |ids: &[String]| {
        ids.iter()
            .all(|id| supernode.get(&format!("/api/supernode/search/{id}")).status == 200)
    };
    let (a, b, c) = (ids(1, 10), ids(2, 10), ids(3, 10));
    assert_eq!(register(1, &a).status, 204);
    // Over the per-node quota: 413, and a's earlier list is still there.
    register(1, &ids(9, 11)).assert_error(413);
    assert!(holds(&a));
    assert_eq!(register(2, &b).status, 204);
    // Over the index's total: 429, nothing lost.
    register(3, &c).assert_error(429);
    assert!(holds(&a) && holds(&b) && !holds(&c[..1]));
    // Room made by a smaller list is room for another node.
    assert_eq!(register(1, &a[..5]).status, 204);
    assert_eq!(register(3, &c[..5]).status, 204);
    // Over the number of nodes: 429.
    let refused = register(4, &[]);
    refused.assert_error(429);
    assert!(
        refused.json()["description"]
            .as_str()
            .unwrap()
            .contains("MAX_NODES")
    );
    assert_eq!(alive(&supernode).len(), 3);
    supernode.wait_log("MAX_RESOURCES_PER_NODE", Duration::from_secs(5));
}

/// The status of `answer` is `code`, with an error body whose description holds `words`.
fn assert_refused(answer: &(u16, String), code: u16, words: &str) {
    let (status, body) = answer;
    assert_eq!(*status, code, "{body}");
    let body: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(body["code"], code, "{body}");
    let description = body["description"].as_str().unwrap_or_default();
    assert!(
        description.contains(words),
        "{description:?} lacks {words:?}"
    );
}

/// What the C resolver (`inet_aton`) reads as `a.b.c.d`, besides `a.b.c.d` itself: a
/// leading zero (octal), hex, one 32-bit number, three parts, two parts, and the IPv4-mapped
/// IPv6 address.
fn aliases(a: u8, b: u8, c: u8, d: u8) -> Vec<String> {
    let number = u32::from_be_bytes([a, b, c, d]);
    vec![
        format!("{a}.{b}.{c}.0{d}"),
        format!("0{a:o}.{b}.{c}.{d}"),
        format!("0x{a:x}.{b}.{c}.{d}"),
        format!("{number}"),
        format!("{a}.{b}.{}", u16::from_be_bytes([c, d])),
        format!("{a}.{}", number & 0xff_ffff),
        format!("[::ffff:{a}.{b}.{c}.{d}]"),
    ]
}

#[test]
fn every_other_spelling_of_an_address_is_a_400_and_takes_no_slot() {
    let group = group();
    // Two slots: had one alias been taken, the attacker's own node and the real one could not
    // both register.
    let supernode = Launch::supernode("super", &group, 1)
        .env("MAX_NODES", "2")
        .start();
    let addr = supernode.addr;
    for host in aliases(127, 0, 0, 2) {
        for path in [
            "/api/supernode/register",
            "/api/supernode/alive",
            "/api/supernode/leave",
        ] {
            let location = format!("{host}:9");
            let answer = post_from(
                addr,
                ATTACKER,
                path,
                &registration(&location, &[absent_id(10)]),
            );
            // The error names the location it refused.
            assert_refused(&answer, 400, &location);
        }
    }
    assert!(alive(&supernode).is_empty());
    supernode
        .get(&format!("/api/supernode/search/{}", absent_id(10)))
        .assert_error(404);

    // The same host in its one spelling is a node; so is a real one on 127.0.0.1.
    let own = registration(&format!("{ATTACKER}:9"), &[absent_id(11)]);
    assert_eq!(
        post_from(addr, ATTACKER, "/api/supernode/register", &own).0,
        204
    );
    let folder = Folder::with(&[("f", b"a real node's file\n")]);
    let id = sha256(b"a real node's file\n");
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    let location = node.location();
    let mut live = alive(&supernode);
    live.sort();
    assert_eq!(live, [location.clone(), format!("{ATTACKER}:9")]);

    // The real node's location spelt otherwise, from its own host: nobody can beat, leave or
    // register for it that way either.
    let port = node.addr.port();
    for host in aliases(127, 0, 0, 1) {
        let other = format!("{host}:{port}");
        for (path, body) in [
            ("/api/supernode/register", registration(&other, &[])),
            (
                "/api/supernode/alive",
                format!(r#"{{"location":"{other}"}}"#).into_bytes(),
            ),
            (
                "/api/supernode/leave",
                format!(r#"{{"location":"{other}"}}"#).into_bytes(),
            ),
        ] {
            let answer = post_from(addr, "127.0.0.1", path, &body);
            assert_refused(&answer, 400, &other);
        }
    }
    let found = supernode.get(&format!("/api/supernode/search/{id}"));
    assert_eq!(found.json()["data"]["file"]["location"], location);
    let mut live = alive(&supernode);
    live.sort();
    assert_eq!(live, [location, format!("{ATTACKER}:9")]);
}

#[test]
fn a_host_name_is_a_400_even_one_that_resolves_to_the_sender() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let folder = Folder::with(&[("f", b"named\n")]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    // localhost is 127.0.0.1, where these come from: a resolver would let them through.
    let named = format!("localhost:{}", node.addr.port());
    for (path, body) in [
        ("/api/supernode/register", registration(&named, &[])),
        (
            "/api/supernode/alive",
            format!(r#"{{"location":"{named}"}}"#).into_bytes(),
        ),
        (
            "/api/supernode/leave",
            format!(r#"{{"location":"{named}"}}"#).into_bytes(),
        ),
    ] {
        let answer = post_from(supernode.addr, "127.0.0.1", path, &body);
        assert_refused(
            &answer,
            400,
            "a location is ip:port; names are not resolved",
        );
    }
    assert_eq!(alive(&supernode), [node.location()]);
    let found = supernode.get(&format!("/api/supernode/search/{}", sha256(b"named\n")));
    assert_eq!(found.json()["data"]["file"]["location"], node.location());
}

/// Registers `location` with `ids` from `from`.
fn register_from(supernode: &Proc, from: &str, location: &str, ids: &[String]) -> (u16, String) {
    post_from(
        supernode.addr,
        from,
        "/api/supernode/register",
        &registration(location, ids),
    )
}

#[test]
fn one_host_filling_its_node_quota_leaves_room_for_a_real_node() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("MAX_NODES_PER_HOST", "3")
        .start();
    for port in 1..=3 {
        let answer = register_from(&supernode, ATTACKER, &format!("{ATTACKER}:{port}"), &[]);
        assert_eq!(answer.0, 204, "{}", answer.1);
    }
    let refused = register_from(&supernode, ATTACKER, &format!("{ATTACKER}:4"), &[]);
    assert_refused(&refused, 429, "MAX_NODES_PER_HOST");
    assert!(refused.1.contains(ATTACKER), "{}", refused.1);
    // A node it has may register again: that is no new slot.
    let again = register_from(
        &supernode,
        ATTACKER,
        &format!("{ATTACKER}:1"),
        &[absent_id(20)],
    );
    assert_eq!(again.0, 204, "{}", again.1);
    supernode.wait_log("(MAX_NODES_PER_HOST)", Duration::from_secs(5));

    // Another host is still accepted, and served.
    let content = b"served despite the flood\n";
    let folder = Folder::with(&[("f", content)]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    let id = sha256(content);
    let found = supernode.get(&format!("/api/supernode/search/{id}"));
    assert_eq!(found.json()["data"]["file"]["location"], node.location());
    let bytes = node.get(&format!("/api/node/resources/{id}/content"));
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.body, content);
    assert_eq!(alive(&supernode).len(), 4);
    let metrics = String::from_utf8(supernode.get("/metrics").body).unwrap();
    assert!(
        metrics.contains("superpeer_registrations_total{outcome=\"429\",request=\"register\"} 1"),
        "{metrics}"
    );
}

#[test]
fn behind_nat_the_quota_is_the_source_hosts_whatever_the_locations_say() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("SOURCE_CHECK", "false")
        .env("MAX_NODES_PER_HOST", "2")
        .start();
    // From 127.0.0.2, locations on 127.0.0.1: they count for 127.0.0.2.
    for port in 1..=2 {
        let answer = register_from(&supernode, ATTACKER, &format!("127.0.0.1:{port}"), &[]);
        assert_eq!(answer.0, 204, "{}", answer.1);
    }
    let refused = register_from(&supernode, ATTACKER, "127.0.0.1:3", &[]);
    assert_refused(&refused, 429, "MAX_NODES_PER_HOST");
    let folder = Folder::with(&[("f", b"behind no NAT\n")]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);
    assert_eq!(alive(&supernode).len(), 3);
}

#[test]
fn a_host_over_its_resource_quota_loses_nothing_indexed() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("MAX_RESOURCES_PER_HOST", "10")
        .start();
    let ids =
        |node: u32, n: u32| -> Vec<String> { (0..n).map(|i| absent_id(1000 * node + i)).collect() };
    let holds = |ids: &[String]| {
        ids.iter()
            .all(|id| supernode.get(&format!("/api/supernode/search/{id}")).status == 200)
    };
    let holds_none = |ids: &[String]| {
        ids.iter()
            .all(|id| supernode.get(&format!("/api/supernode/search/{id}")).status == 404)
    };
    let (first, second) = (format!("{ATTACKER}:1"), format!("{ATTACKER}:2"));
    let a = ids(1, 6);
    assert_eq!(register_from(&supernode, ATTACKER, &first, &a).0, 204);
    // 6 + 5 is over the host's 10: 429, and the first list stays.
    let b = ids(2, 5);
    assert_refused(
        &register_from(&supernode, ATTACKER, &second, &b),
        429,
        "MAX_RESOURCES_PER_HOST",
    );
    assert!(holds(&a) && holds_none(&b));
    // One registration over the host's quota: 413, and the node keeps its earlier list.
    let too_many = ids(3, 11);
    assert_refused(
        &register_from(&supernode, ATTACKER, &first, &too_many),
        413,
        "MAX_RESOURCES_PER_HOST",
    );
    assert!(holds(&a) && holds_none(&too_many));
    // A node's own earlier list does not count twice when it registers again.
    let replaced = ids(4, 10);
    assert_eq!(
        register_from(&supernode, ATTACKER, &first, &replaced).0,
        204
    );
    assert!(holds(&replaced) && holds_none(&a));
    assert_refused(
        &register_from(&supernode, ATTACKER, &second, &b[..1]),
        429,
        "MAX_RESOURCES_PER_HOST",
    );
    // Another host's nodes are not held to this one's quota.
    let other = ids(5, 10);
    assert_eq!(
        register_from(&supernode, "127.0.0.1", "127.0.0.1:1", &other).0,
        204
    );
    assert!(holds(&other) && holds(&replaced));
    // A node that leaves gives its room back to its host.
    let leave = format!(r#"{{"location":"{first}"}}"#).into_bytes();
    assert_eq!(
        post_from(supernode.addr, ATTACKER, "/api/supernode/leave", &leave).0,
        204
    );
    assert_eq!(register_from(&supernode, ATTACKER, &second, &b).0, 204);
    assert!(holds(&b) && holds_none(&replaced));
    supernode.wait_log("(MAX_RESOURCES_PER_HOST)", Duration::from_secs(5));
}

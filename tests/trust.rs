//! SPEC section 7, who may speak for what: only a node's own address registers, beats or
//! leaves for its location, and quotas bound the index without costing what it holds. The
//! attacker is 127.0.0.2; the nodes live on 127.0.0.1.

mod support;

use std::time::Duration;

use support::*;

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

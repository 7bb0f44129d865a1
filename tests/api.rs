//! Every row of SPEC section 3, against real processes.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const FILES: &[(&str, &[u8])] = &[
    ("resource_ahXhUa", b"first file\n"),
    ("resource_b", b"second file\n"),
    ("sub/deep.txt", b"in a sub-folder\n"),
];

#[test]
fn node_ids_are_the_sha256sum_of_each_file() {
    let folder = Folder::with(FILES);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();

    let listing = node.get("/api/node/resources");
    assert_eq!(listing.status, 200);
    let body = listing.json();
    assert_eq!(body["entity"], "resource");
    let mut listed: Vec<(String, String)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    listed.sort();

    // The reference is coreutils' sha256sum, run on the files themselves.
    let mut expected: Vec<(String, String)> = FILES
        .iter()
        .map(|(name, _)| {
            let out = Command::new("sha256sum")
                .arg(folder.path.join(name))
                .output()
                .unwrap();
            let id = String::from_utf8(out.stdout).unwrap()[..64].to_string();
            (name.to_string(), id)
        })
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn node_endpoints() {
    let folder = Folder::with(FILES);
    let elsewhere = Folder::with(&[("remote.bin", b"held by another node\n")]);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    let other = Launch::node("other", &elsewhere.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node, &other]);

    let local = sha256(b"first file\n");
    let remote = sha256(b"held by another node\n");
    let unknown = absent_id(1);

    assert_eq!(node.get("/api/node/health").status, 200);

    // Held here: 200 with id and name; the id is accepted in upper case, answered in lower.
    for asked in [local.clone(), local.to_uppercase()] {
        let answer = node.get(&format!("/api/node/resources/{asked}"));
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.json(),
            serde_json::json!({"data": {"id": local, "name": "resource_ahXhUa"}, "entity": "resource"})
        );
    }
    let content = node.get(&format!("/api/node/resources/{local}/content"));
    assert_eq!(
        (content.status, content.body.as_slice()),
        (200, &b"first file\n"[..])
    );

    // Held elsewhere: 302 with the holder's location, in the body and in the Location header.
    let answer = node.get(&format!("/api/node/resources/{remote}"));
    assert_eq!(answer.status, 302);
    let body = answer.json();
    assert_eq!(body["entity"], "resource");
    assert_eq!(body["data"]["id"], remote);
    assert_eq!(body["data"]["info"]["location"], other.location());
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("{}/api/node/resources/{remote}", other.url()).as_str())
    );
    let redirected = get(answer.location.as_deref().unwrap());
    assert_eq!(redirected.json()["data"]["name"], "remote.bin");

    // Content held elsewhere: 302 to the holder's content URL, which serves the bytes.
    let answer = node.get(&format!("/api/node/resources/{remote}/content"));
    assert_eq!(answer.status, 302);
    let bytes = get(answer.location.as_deref().unwrap());
    assert_eq!(bytes.body, b"held by another node\n");

    // Unknown everywhere: 404 error body, for the info and for the content.
    node.get(&format!("/api/node/resources/{unknown}"))
        .assert_error(404);
    node.get(&format!("/api/node/resources/{unknown}/content"))
        .assert_error(404);

    // find: local as {id, name}, remote as {id, info}, unknown left out, in the asked order.
    let answer = node.get(&format!(
        "/api/node/resources/find?hash_ids={remote},{unknown},{}",
        local.to_uppercase()
    ));
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["entity"], "resource");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{body}");
    assert_eq!(data[0]["id"], remote);
    assert_eq!(data[0]["info"]["location"], other.location());
    assert_eq!(
        data[1],
        serde_json::json!({"id": local, "name": "resource_ahXhUa"})
    );

    // Bad input.
    node.get("/api/node/resources/find").assert_error(400);
    node.get("/api/node/resources/find?hash_ids=abc")
        .assert_error(400);
    node.get("/api/node/resources/not-an-id").assert_error(400);
    node.get(&format!("/api/node/resources/{}", &local[..63]))
        .assert_error(400);
    node.get("/api/node/resources/zz/content").assert_error(400);
    node.get("/api/node/nothing").assert_error(404);
    node.get("/elsewhere").assert_error(404);
    node.post("/api/node/resources", b"{}").assert_error(405);
    node.post(&format!("/api/node/resources/{local}"), b"")
        .assert_error(405);

    // A node asked a supernode path.
    let answer = node.get("/api/supernode/alive");
    answer.assert_error(418);
    assert_eq!(answer.json()["description"], "I'm not your guy");
}

#[test]
fn supernode_endpoints() {
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("LIVENESS_PERIOD_MS", "300")
        .start();
    let a = sha256(b"a");
    let b = sha256(b"b");
    let register = |location: &str, resources: &[(&str, &str)]| {
        let resources: Vec<_> = resources
            .iter()
            .map(|(id, name)| serde_json::json!({"id": id, "name": name}))
            .collect();
        let body = serde_json::json!({"name": "n", "location": location, "resources": resources});
        supernode.post("/api/supernode/register", body.to_string().as_bytes())
    };

    assert_eq!(
        register(
            "127.0.0.1:1",
            &[(&a, "a.txt"), (&b.to_uppercase(), "b.txt")]
        )
        .status,
        204
    );

    let answer = supernode.get(&format!("/api/supernode/search/{a}"));
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "data": {"id": a, "file": {"name": "a.txt", "location": "127.0.0.1:1", "locations": ["127.0.0.1:1"]}},
            "entity": "node_resource_location"
        })
    );

    let answer = supernode.get(&format!(
        "/api/supernode/search?hash_ids={b},{},{a}",
        absent_id(2)
    ));
    assert_eq!(answer.status, 200);
    let data = answer.json()["data"].clone();
    assert_eq!(data.as_array().unwrap().len(), 2);
    assert_eq!(data[0]["id"], b);
    assert_eq!(data[1]["file"]["name"], "a.txt");

    // Registering again replaces the list.
    assert_eq!(register("127.0.0.1:1", &[(&b, "b.txt")]).status, 204);
    supernode
        .get(&format!("/api/supernode/search/{a}"))
        .assert_error(404);
    assert_eq!(
        supernode.get(&format!("/api/supernode/search/{b}")).status,
        200
    );

    // alive lists the registered nodes; heartbeats say whether the node is known.
    let answer = supernode.get("/api/supernode/alive");
    assert_eq!(
        answer.json(),
        serde_json::json!({"data": [{"name": "n", "location": "127.0.0.1:1"}], "entity": "node"})
    );
    assert_eq!(
        supernode
            .post("/api/supernode/alive", br#"{"location":"127.0.0.1:1"}"#)
            .status,
        204
    );
    supernode
        .post("/api/supernode/alive", br#"{"location":"127.0.0.1:2"}"#)
        .assert_error(404);
    supernode
        .post("/api/supernode/alive", b"{")
        .assert_error(400);

    // The seed's manual sweep: the node at 127.0.0.1:1 does not answer its health check, and
    // goes at its second missed check a period later (tests/liveness.rs has the details).
    assert_eq!(supernode.get("/api/supernode/xxx").status, 204);
    wait_until("the dead node's removal", Duration::from_secs(5), || {
        alive(&supernode).is_empty()
    });
    supernode
        .get(&format!("/api/supernode/search/{b}"))
        .assert_error(404);

    // Bad registrations: 400, and the index is unchanged.
    assert_eq!(register("127.0.0.1:3", &[(&a, "a.txt")]).status, 204);
    for body in [
        "",
        "{",
        "[]",
        r#"{"resources": []}"#,
        r#"{"location": "127.0.0.1:4"}"#,
        r#"{"location": 5, "resources": []}"#,
        r#"{"location": "127.0.0.1:4", "resources": {}}"#,
        r#"{"location": "127.0.0.1:4", "resources": [{"id": "abc", "name": "x"}]}"#,
        r#"{"location": "127.0.0.1:4", "resources": [{"name": "x"}]}"#,
        r#"{"location": "bad;location:4", "resources": []}"#,
        r#"{"location": "no-port", "resources": []}"#,
    ] {
        let answer = supernode.post("/api/supernode/register", body.as_bytes());
        answer.assert_error(400);
    }
    assert_eq!(alive(&supernode), ["127.0.0.1:3"]);
    assert_eq!(
        supernode.get(&format!("/api/supernode/search/{a}")).status,
        200
    );

    // Ids, paths, methods, roles.
    supernode.get("/api/supernode/search/xyz").assert_error(400);
    supernode
        .get("/api/supernode/search?hash_ids=1,2")
        .assert_error(400);
    supernode.get("/api/supernode/search").assert_error(400);
    supernode.get("/api/supernode/register").assert_error(405);
    supernode.post("/api/supernode/xxx", b"").assert_error(405);
    supernode
        .post(&format!("/api/supernode/search/{a}"), b"")
        .assert_error(405);
    supernode.get("/api/supernode/nothing").assert_error(404);
    let answer = supernode.get("/api/node/resources");
    answer.assert_error(418);
    assert_eq!(answer.json()["description"], "I'm not your guy");
}

#[test]
fn a_resource_held_by_two_nodes_lists_both_locations() {
    let shared: &[u8] = b"the same content on two nodes\n";
    let one = Folder::with(&[("copy-one", shared)]);
    let two = Folder::with(&[("copy-two", shared)]);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1)
        .env("LIVENESS_PERIOD_MS", "300")
        .start();
    let n1 = Launch::node("n1", &one.path, &[&supernode.url()]).start();
    let n2 = Launch::node("n2", &two.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&n1, &n2]);

    let answer = supernode.get(&format!("/api/supernode/search/{}", sha256(shared)));
    let mut expected = vec![n1.location(), n2.location()];
    expected.sort();
    assert_eq!(sorted_locations(&answer.json()["data"]["file"]), expected);

    // One leaving removes its location only.
    n1.kill();
    let search = format!("/api/supernode/search/{}", sha256(shared));
    wait_until("n1's removal", Duration::from_secs(5), || {
        alive(&supernode) == [n2.location()]
    });
    assert_eq!(
        supernode.get(&search).json()["data"]["file"]["locations"],
        serde_json::json!([n2.location()])
    );
}

#[test]
fn env_file_and_environment_configure_an_instance() {
    let folder = Folder::with(FILES);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let env_file = folder.path.join("node.env");
    std::fs::write(
        &env_file,
        format!(
            "# a node from a .env file\nIS_SUPERNODE=False\nLHOST=127.0.0.1\nLPORT=1\n\
             SUPERNODE_ENDPOINT=\"{}/api/supernode\"\nRESOURCE_PATH={}\nNODE_NAME=from-file\n",
            supernode.url(),
            folder.path.display()
        ),
    )
    .unwrap();
    // LPORT=1 in the file would fail to bind: the environment's 0 must win.
    let node = Launch::node("node", &folder.path, &[])
        .env("SUPERNODE_ENDPOINT", "")
        .env("RESOURCE_PATH", "")
        .arg("--config")
        .arg(env_file.to_str().unwrap())
        .start();
    wait_registered(&supernode, &[&node]);
    let answer = supernode.get("/api/supernode/alive");
    assert_eq!(answer.json()["data"][0]["name"], "from-file");
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_key() {
    let group = group();
    for (key, value) in [
        ("MULTICAST_TTL", "0"),
        ("LPORT", "http"),
        ("SEARCH_TIMEOUT_MS", "-5"),
        // Values that would overflow a deadline later: refused at start-up.
        ("LIVENESS_PERIOD_MS", "18446744073709551615"),
        ("HTTP_WRITE_TIMEOUT_MS", "99999999999999"),
        ("MAX_BODY_BYTES", "99999999999999"),
    ] {
        let mut proc = Launch::supernode("bad", &group, 1).env(key, value).spawn();
        let status = proc.wait_exit(Duration::from_secs(10));
        assert!(!status.success());
        proc.wait_log(key, Duration::from_secs(5));
    }
}

#[test]
fn a_node_shares_files_added_changed_and_removed_while_it_runs() {
    let folder = Folder::with(&[
        ("kept", b"kept\n"),
        ("removed", b"removed soon\n"),
        ("changed", b"old text\n"),
    ]);
    let group = group();
    let supernode = Launch::supernode("super", &group, 1).start();
    let node = Launch::node("node", &folder.path, &[&supernode.url()])
        .env("RESCAN_MS", "100")
        .start();
    wait_registered(&supernode, &[&node]);
    let found = |content: &[u8]| {
        supernode
            .get(&format!("/api/supernode/search/{}", sha256(content)))
            .status
            == 200
    };
    assert!(found(b"removed soon\n") && found(b"old text\n"));

    std::fs::write(folder.path.join("added"), b"added later\n").unwrap();
    std::fs::remove_file(folder.path.join("removed")).unwrap();
    // Longer than before, so the size alone tells the change even within one mtime tick.
    std::fs::write(folder.path.join("changed"), b"new, longer text\n").unwrap();
    wait_until(
        "the supernode to learn the new list",
        Duration::from_secs(10),
        || {
            found(b"added later\n")
                && found(b"new, longer text\n")
                && !found(b"removed soon\n")
                && !found(b"old text\n")
        },
    );
    assert!(found(b"kept\n"));

    // The node serves what it now holds, and its listing says so.
    let content = node.get(&format!(
        "/api/node/resources/{}/content",
        sha256(b"added later\n")
    ));
    assert_eq!(content.body, b"added later\n");
    let listing = node.get("/api/node/resources").json();
    let mut names: Vec<&str> = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["added", "changed", "kept"]);
    node.wait_log("rescan:", Duration::from_secs(5));
}

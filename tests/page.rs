//! SPEC section 8, the web page: served from the binary on both roles, with the status it
//! reads. (`tests/browser.rs` drives it in a real browser.)

use crate::support::*;

#[test]
fn both_roles_serve_their_page_and_its_status() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    let folder = Folder::with(&[("<b>bold</b>.txt", b"a name that is not HTML\n")]);
    let node = Launch::node("node", &folder.path, &[&supernode.url()]).start();
    wait_registered(&supernode, &[&node]);

    for (proc, role) in [(&supernode, "supernode"), (&node, "node")] {
        let page = proc.get("/");
        assert_eq!(page.status, 200);
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains(&format!("data-role=\"{role}\"")), "{html}");
        assert!(html.contains("src=\"/page.js\"") && html.contains("href=\"/page.css\""));
        // Nothing from elsewhere.
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
        for asset in ["/page.js", "/page.css"] {
            let answer = proc.get(asset);
            assert_eq!(answer.status, 200, "{asset}");
            assert!(!answer.body.is_empty());
        }
        assert_eq!(proc.post("/", b"").status, 405);
    }

    let status = supernode.get("/api/supernode/status").json();
    let data = &status["data"];
    assert_eq!(data["role"], "supernode");
    assert_eq!(data["index"]["nodes"], 1);
    assert_eq!(data["nodes"][0]["location"], node.location());
    assert_eq!(data["nodes"][0]["resources"], 1);
    assert!(data["nodes"][0]["checked_ms_ago"].is_null());
    assert_eq!(data["searches"]["local_hit"], 0);
    assert_eq!(supernode.get("/api/supernode/xxx").status, 204);
    let status = supernode.get("/api/supernode/status").json();
    assert!(status["data"]["nodes"][0]["checked_ms_ago"].is_u64());

    let status = node.get("/api/node/status").json();
    let data = &status["data"];
    assert_eq!(data["role"], "node");
    assert_eq!(data["location"], node.location());
    assert_eq!(data["files"][0]["name"], "<b>bold</b>.txt");
    assert_eq!(data["files"][0]["size"], 24);
    assert_eq!(data["files"][0]["id"], sha256(b"a name that is not HTML\n"));
    // Each role's status lives under its own API.
    assert_eq!(node.get("/api/supernode/status").status, 418);
}

#[test]
fn the_page_may_run_only_its_own_script() {
    let group = group();
    let supernode = Launch::supernode("s", &group, 1).start();
    let answer = raw_get(supernode.addr, "/");
    assert!(answer.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
    assert!(answer.contains("\r\nContent-Security-Policy: default-src 'none'; script-src 'self';"));
    assert!(answer.contains("\r\nX-Content-Type-Options: nosniff\r\n"));
}

#[test]
fn a_supernodes_status_links_each_peer_to_its_api() {
    let group = group();
    let s1 = Launch::supernode("s1", &group, 2).start();
    let s2 = Launch::supernode("s2", &group, 2).start();
    // The page links a peer to its page at the API address it announced with its summary.
    let mut peers = serde_json::Value::Null;
    wait_until(
        "s1 to count on s2, its API known",
        std::time::Duration::from_secs(20),
        || {
            peers = s1.get("/api/supernode/status").json()["data"]["peers"].clone();
            peers[0]["api"].is_string()
        },
    );
    assert_eq!(peers.as_array().unwrap().len(), 1, "{peers}");
    assert_eq!(peers[0]["api"], s2.location(), "{peers}");
    assert_ne!(
        peers[0]["address"],
        s2.location(),
        "its datagrams' address is another"
    );
}

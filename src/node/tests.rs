//! The node's routes, driven with requests built by hand, on a real folder and a stand-in for
//! its supernodes: no socket, milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::http::Method;

/// The supernodes: where the ids the node lacks are.
#[derive(Default)]
struct FakeSupernodes {
    elsewhere: Vec<(ResourceId, String)>,
    asked: AtomicUsize,
}

impl Supernodes for FakeSupernodes {
    fn search(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Ok(self.where_is(id))
    }
    fn search_all(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError> {
        Ok(self.where_is(id))
    }
    fn search_many(&self, ids: &[ResourceId]) -> Result<Vec<Located>, ApiError> {
        self.asked.fetch_add(ids.len(), Ordering::Relaxed);
        Ok(ids
            .iter()
            .filter_map(|&id| {
                Some(Located {
                    id,
                    file: self.where_is(id)?,
                })
            })
            .collect())
    }
    fn search_names(&self, _query: &str) -> Result<Vec<Located>, ApiError> {
        Ok(Vec::new())
    }
    fn current(&self) -> String {
        "http://10.0.0.1:5000/api/supernode".into()
    }
}

impl FakeSupernodes {
    fn where_is(&self, id: ResourceId) -> Option<FileInfo> {
        let (_, location) = self.elsewhere.iter().find(|(i, _)| *i == id)?;
        Some(FileInfo {
            name: None,
            location: location.clone(),
            locations: vec![location.clone()],
        })
    }
}

/// A folder of the test's own, with `files`.
fn folder(files: &[(&str, &[u8])]) -> std::path::PathBuf {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "superpeer-node-routes-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

fn sha(content: &[u8]) -> ResourceId {
    use sha2::Digest;
    ResourceId(sha2::Sha256::digest(content).into())
}

/// The folder goes with the test.
struct Gone(std::path::PathBuf);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(supernodes: Arc<FakeSupernodes>, files: &[(&str, &[u8])]) -> (NodeService, Gone) {
    let dir = folder(files);
    let catalog = resources::scan(&dir, 1, crate::pieces::MIN_PIECE_SIZE, None).unwrap();
    let service = NodeService::new(Arc::new(catalog), supernodes, 256);
    (service, Gone(dir))
}

fn ask(node: &NodeService, method: Method, target: &str) -> Reply {
    let request = Request::new(method, target, b"");
    let routed = node.route(&request);
    node.handle(&request, &routed)
        .unwrap_or_else(|error| Reply::error(&error))
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(reply.body_bytes()).unwrap()
}

#[test]
fn a_node_answers_for_what_it_holds_and_asks_for_the_rest() {
    let elsewhere = sha(b"held by another node");
    let supernodes = Arc::new(FakeSupernodes {
        elsewhere: vec![(elsewhere, "127.0.0.1:1".into())],
        ..FakeSupernodes::default()
    });
    let (node, _folder) = node(
        supernodes.clone(),
        &[("a.txt", b"mine"), ("b.txt", b"mine too")],
    );
    let mine = sha(b"mine");
    let listing = ask(&node, Method::Get, "/api/node/resources");
    assert_eq!(json(&listing)["data"].as_array().unwrap().len(), 2);
    let held = ask(&node, Method::Get, &format!("/api/node/resources/{mine}"));
    assert_eq!(
        (held.status, json(&held)["data"]["name"].as_str()),
        (200, Some("a.txt"))
    );
    assert_eq!(supernodes.asked.load(Ordering::Relaxed), 0);
    let content = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{mine}/content"),
    );
    assert_eq!(content.status, 200);
    // Unknown everywhere: 404. Held elsewhere by a node that does not answer its health
    // check: 503, retry later.
    let nobody = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{}", sha(b"x")),
    );
    assert_eq!(nobody.status, 404);
    let gone = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{elsewhere}"),
    );
    assert_eq!(gone.status, 503);
    // Several at once: the local one as {id, name}, the remote one as {id, info}, in one
    // request to the supernode for the ones not held here.
    let before = supernodes.asked.load(Ordering::Relaxed);
    let find = format!(
        "/api/node/resources/find?hash_ids={mine},{elsewhere},{}",
        sha(b"x")
    );
    let found = json(&ask(&node, Method::Get, &find))["data"].clone();
    assert_eq!(found[0]["name"], "a.txt");
    assert_eq!(found[1]["info"]["location"], "127.0.0.1:1");
    assert_eq!(found.as_array().unwrap().len(), 2);
    assert_eq!(supernodes.asked.load(Ordering::Relaxed) - before, 2);
}

#[test]
fn a_node_lists_the_pieces_of_what_it_holds_and_digests_its_downloads() {
    let content: Vec<u8> = (0..40_000u32).map(|i| (i % 249) as u8).collect();
    let (node, _folder) = node(Arc::default(), &[("p.bin", &content)]);
    let id = sha(&content);
    let reply = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{id}/pieces"),
    );
    assert_eq!(reply.status, 200);
    let list: crate::pieces::PieceList = crate::api::data_of(reply.body_bytes()).unwrap();
    assert_eq!(list.check(id), Ok(()));
    assert_eq!((list.size, list.pieces.len()), (40_000, 3));
    assert_eq!(list.pieces[1], sha(&content[16384..32768]));
    // The same list again, from the catalog.
    let again = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{id}/pieces"),
    );
    assert_eq!(again.body_bytes(), reply.body_bytes());
    // Not held: asked of the supernode, which knows nobody with it.
    let absent = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{}/pieces", sha(b"x")),
    );
    assert_eq!(absent.status, 404);
    let download = ask(
        &node,
        Method::Get,
        &format!("/api/node/resources/{id}/content"),
    );
    let digest = download.header("Repr-Digest").unwrap();
    assert_eq!(digest, crate::content::repr_digest(id));
}

#[test]
fn downloads_name_the_other_holders_once_the_supernode_said_them() {
    let content = b"held here and at another node";
    let id = sha(content);
    let supernodes = Arc::new(FakeSupernodes {
        elsewhere: vec![(id, "10.0.0.2:8000".into())],
        ..FakeSupernodes::default()
    });
    let (node, _folder) = node(supernodes, &[("m.bin", content)]);
    let path = format!("/api/node/resources/{id}/content");
    // The first download does not wait for the question.
    assert_eq!(ask(&node, Method::Get, &path).header("Link"), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let link = loop {
        if let Some(link) = ask(&node, Method::Get, &path).header("Link") {
            break link.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no Link header came");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        link,
        format!("<http://10.0.0.2:8000/api/node/resources/{id}/content>; rel=duplicate")
    );
}

#[test]
fn a_node_s_routes_refuse_what_is_not_theirs() {
    let (node, _folder) = node(Arc::new(FakeSupernodes::default()), &[]);
    let status = |method, target: &str| ask(&node, method, target).status;
    assert_eq!(status(Method::Get, "/api/supernode/alive"), 418);
    assert_eq!(status(Method::Post, "/api/node/resources"), 405);
    assert_eq!(status(Method::Get, "/api/node/resources/abc"), 400);
    assert_eq!(status(Method::Get, "/api/node/nothing"), 404);
    assert_eq!(status(Method::Get, "/api/node/search?file_name="), 400);
    assert_eq!(status(Method::Get, "/api/node/health"), 200);
    assert_eq!(status(Method::Get, "/metrics"), 200);
    let about = ask(&node, Method::Get, "/api/node/status");
    assert_eq!(
        json(&about)["data"]["supernode"],
        "http://10.0.0.1:5000/api/supernode"
    );
}

#[test]
fn the_registered_location_is_an_address_in_its_one_spelling() {
    let bound: SocketAddr = "127.0.0.1:8000".parse().unwrap();
    assert_eq!(registered_location(None, bound), Ok(bound));
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:8000".parse().unwrap();
    assert_eq!(registered_location(None, mapped), Ok(bound));
    let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
    assert_eq!(
        registered_location(None, any).unwrap_err().key,
        "NODE_LOCATION"
    );
    let given = HostPort::Addr("10.0.0.7:9000".parse().unwrap());
    assert_eq!(
        registered_location(Some(&given), any),
        Ok("10.0.0.7:9000".parse().unwrap())
    );
    // A name is the operator's to resolve: localhost is 127.0.0.1 (or ::1) everywhere.
    let name = HostPort::Name {
        host: "localhost".into(),
        port: 9000,
    };
    let resolved = registered_location(Some(&name), bound).unwrap();
    assert!(resolved.ip().is_loopback(), "{resolved}");
    assert_eq!(resolved.port(), 9000);
    assert_eq!(
        crate::location::parse(&resolved.to_string()),
        Ok(resolved),
        "what the node registers is what the supernode takes"
    );
    let nowhere = HostPort::Name {
        host: "no-such-host.invalid".into(),
        port: 9000,
    };
    assert_eq!(
        registered_location(Some(&nowhere), bound).unwrap_err().key,
        "NODE_LOCATION"
    );
}

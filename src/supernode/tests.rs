//! The supernode's routes, driven with requests built by hand, on a real index and a stand-in
//! for the other supernodes: no socket, milliseconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::{Group, SupernodeService};
use crate::api::{Routed, Searched};
use crate::config::{Config, Settings};
use crate::error::ApiError;
use crate::http::{Method, Reply, Request, Service};
use crate::id::ResourceId;
use crate::index::Index;
use crate::liveness::Liveness;
use crate::metrics::{Metrics, SupernodeMetrics};
use crate::multicast::{Outcome, SummaryHeld};
use crate::shutdown::Shutdown;
use crate::wire::NameHit;

/// The other supernodes: who holds what, and how many ids they were asked for.
#[derive(Default)]
struct FakeGroup {
    holders: Mutex<HashMap<ResourceId, String>>,
    names: Vec<NameHit>,
    asked: AtomicUsize,
    grew: AtomicUsize,
}

impl Group for FakeGroup {
    fn search_many(&self, ids: &[ResourceId]) -> Vec<Outcome> {
        self.asked.fetch_add(ids.len(), Ordering::Relaxed);
        let holders = self.holders.lock().unwrap();
        let outcome = |id| {
            holders
                .get(id)
                .map_or(Outcome::NotFound, |l| Outcome::Found(l.clone()))
        };
        ids.iter().map(outcome).collect()
    }
    fn search_all(&self, id: ResourceId) -> Vec<String> {
        self.holders
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .into_iter()
            .collect()
    }
    fn search_names(&self, _text: &str, _node: Option<&str>, _limit: u32) -> Vec<NameHit> {
        self.names.clone()
    }
    fn index_grew(&self) {
        self.grew.fetch_add(1, Ordering::Relaxed);
    }
    fn peers(&self) -> Vec<(String, SocketAddr, Duration, Option<SocketAddr>)> {
        Vec::new()
    }
    fn summaries(&self) -> Vec<SummaryHeld> {
        Vec::new()
    }
}

fn id(n: u8) -> ResourceId {
    ResourceId([n; 32])
}

fn service(group: Arc<FakeGroup>, settings: &[(&str, &str)]) -> SupernodeService {
    let pairs = settings.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let settings = Settings::from_pairs(pairs, [("IS_SUPERNODE".into(), "true".into())]);
    let Ok(Config::Supernode(config)) = Config::from_settings(&settings, None) else {
        panic!("a supernode's settings");
    };
    let index = Arc::new(RwLock::new(Index::new()));
    let metrics = Arc::new(Metrics::new());
    let supernode = Arc::new(SupernodeMetrics::new(&metrics));
    let liveness = Arc::new(Liveness::new(
        &config,
        index.clone(),
        Shutdown::new(),
        supernode.clone(),
    ));
    SupernodeService::new(&config, (index, group, liveness), (metrics, supernode))
}

/// Routes and handles `request` as the server does.
fn ask(service: &SupernodeService, request: Request) -> Reply {
    let routed: Routed = service.route(&request);
    service
        .check_head(&request, &routed)
        .and_then(|()| service.handle(&request, &routed))
        .unwrap_or_else(|error| Reply::error(&error))
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(reply.body_bytes()).unwrap()
}

const HERE: &str = "10.0.0.7:41234";

fn register(service: &SupernodeService, location: &str, ids: &[ResourceId]) -> Reply {
    let resources: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": format!("file {}", id.0[0])}))
        .collect();
    let body = serde_json::json!({"location": location, "resources": resources}).to_string();
    let request = Request::new(Method::Post, "/api/supernode/register", body.as_bytes());
    ask(service, request.from_peer(HERE.parse().unwrap()))
}

#[test]
fn a_registered_id_is_found_here_and_a_remote_one_by_the_group() {
    let group = Arc::new(FakeGroup::default());
    group
        .holders
        .lock()
        .unwrap()
        .insert(id(2), "10.0.0.9:8000".into());
    let service = service(group.clone(), &[]);
    assert_eq!(register(&service, "10.0.0.7:8000", &[id(1)]).status, 204);
    assert_eq!(
        group.grew.load(Ordering::Relaxed),
        1,
        "the others were told"
    );

    let here = ask(
        &service,
        Request::new(
            Method::Get,
            &format!("/api/supernode/search/{}", id(1)),
            b"",
        ),
    );
    assert_eq!((here.status, here.searched), (200, Some(Searched::Index)));
    assert_eq!(
        json(&here)["data"]["file"]["locations"],
        serde_json::json!(["10.0.0.7:8000"])
    );
    assert_eq!(group.asked.load(Ordering::Relaxed), 0);

    let remote = ask(
        &service,
        Request::new(
            Method::Get,
            &format!("/api/supernode/search/{}", id(2)),
            b"",
        ),
    );
    assert_eq!(
        (remote.status, remote.searched),
        (200, Some(Searched::Group))
    );
    assert_eq!(json(&remote)["data"]["file"]["location"], "10.0.0.9:8000");
    // A negative is timed as a search too.
    let nowhere = ask(
        &service,
        Request::new(
            Method::Get,
            &format!("/api/supernode/search/{}", id(3)),
            b"",
        ),
    );
    assert_eq!(
        (nowhere.status, nowhere.searched),
        (404, Some(Searched::Group))
    );

    let list = format!(
        "/api/supernode/search?hash_ids={},{},{}",
        id(1),
        id(2),
        id(3)
    );
    let many = ask(&service, Request::new(Method::Get, &list, b""));
    let found: Vec<String> = json(&many)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(found, [id(1).to_string(), id(2).to_string()]);
}

#[test]
fn only_a_location_s_own_address_speaks_for_it() {
    let service = service(Arc::new(FakeGroup::default()), &[]);
    assert_eq!(register(&service, "10.0.0.8:8000", &[id(1)]).status, 403);
    assert_eq!(register(&service, "10.0.0.7:08000", &[id(1)]).status, 400);
    assert_eq!(register(&service, "10.0.0.7:8000", &[id(1)]).status, 204);
    let beat = |location: &str, path: &str| {
        let body = format!(r#"{{"location":"{location}"}}"#);
        let request = Request::new(Method::Post, path, body.as_bytes());
        ask(&service, request.from_peer(HERE.parse().unwrap())).status
    };
    assert_eq!(beat("10.0.0.7:8000", "/api/supernode/alive"), 204);
    assert_eq!(beat("10.0.0.7:9000", "/api/supernode/alive"), 404);
    assert_eq!(beat("10.0.0.8:8000", "/api/supernode/leave"), 403);
    assert_eq!(beat("10.0.0.7:8000", "/api/supernode/leave"), 204);
    assert_eq!(beat("10.0.0.7:8000", "/api/supernode/leave"), 404);
    let bad = Request::new(Method::Post, "/api/supernode/alive", b"{not json");
    assert_eq!(
        ask(&service, bad.from_peer(HERE.parse().unwrap())).status,
        400
    );
}

#[test]
fn names_merge_the_index_s_matches_and_the_group_s_by_id() {
    let group = Arc::new(FakeGroup {
        names: vec![
            NameHit {
                id: id(1),
                location: "10.0.0.9:8000".into(),
                name: "file 1".into(),
            },
            NameHit {
                id: id(5),
                location: "10.0.0.9:8000".into(),
                name: "file 5".into(),
            },
        ],
        ..FakeGroup::default()
    });
    let service = service(group, &[]);
    register(&service, "10.0.0.7:8000", &[id(1), id(2)]);
    let reply = ask(
        &service,
        Request::new(Method::Get, "/api/supernode/search?file_name=FILE", b""),
    );
    let data = json(&reply)["data"].clone();
    let ids: Vec<&str> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        data[0]["file"]["locations"],
        serde_json::json!(["10.0.0.7:8000", "10.0.0.9:8000"])
    );
}

#[test]
fn a_client_that_asks_the_group_too_much_gets_a_429_to_retry() {
    let service = service(Arc::new(FakeGroup::default()), &[]);
    let list: Vec<String> = (0..=255).map(|n| id(n).to_string()).collect();
    let target = format!("/api/supernode/search?hash_ids={}", list.join(","));
    let here: SocketAddr = HERE.parse().unwrap();
    let get = |target: &str, from: SocketAddr| {
        ask(
            &service,
            Request::new(Method::Get, target, b"").from_peer(from),
        )
    };
    let statuses: Vec<u16> = (0..3).map(|_| get(&target, here).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(get(&target, here).header("retry-after"), Some("1"));
    // Another client has its own share; one id at a time is never limited.
    assert_eq!(get(&target, "10.0.0.8:1".parse().unwrap()).status, 200);
    let one = format!("/api/supernode/search/{}", id(9));
    assert_eq!(get(&one, here).status, 404);
}

#[test]
fn under_a_key_writes_must_be_signed_before_their_body_is_read() {
    let key = "the-cluster-key-of-the-route-tests-012345";
    let service = service(Arc::new(FakeGroup::default()), &[("CLUSTER_KEY", key)]);
    let request = Request::new(Method::Post, "/api/supernode/register", b"");
    let routed = service.route(&request);
    let refused = service.check_head(&request, &routed).unwrap_err();
    assert!(matches!(refused, ApiError::Unauthorized(_)), "{refused}");
    // Reads are open.
    let status = Request::new(Method::Get, "/api/supernode/status", b"");
    assert_eq!(ask(&service, status).status, 200);
}

#[test]
fn paths_of_the_other_role_and_shared_routes() {
    let service = service(Arc::new(FakeGroup::default()), &[]);
    let get = |target: &'static str| ask(&service, Request::new(Method::Get, target, b""));
    assert_eq!(get("/api/node/resources").status, 418);
    assert_eq!(get("/api/supernode/nothing").status, 404);
    assert_eq!(get("/metrics").status, 200);
    assert!(
        String::from_utf8_lossy(get("/metrics").body_bytes()).contains("superpeer_searches_total")
    );
    assert!(get("/").header("content-security-policy").is_some());
    assert_eq!(json(&get("/api/supernode/alive"))["entity"], "node");
}

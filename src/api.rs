//! The HTTP API's contract in one place: a type for each JSON shape (written by one side and
//! read by the other: the supernode, the node, the node's client of its supernode, `superpeer
//! get`, the check of a seed's holder), the lists of ids a request carries, and every route of
//! both roles, parsed once from a request's head ([`Routed`]) with what the rest of the code
//! asks of a route: its name in the metrics, whether a cluster key must sign it, and which
//! registration request it is.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::config::Role;
use crate::error::ApiError;
use crate::http::{Method, Request};
use crate::id::{self, ResourceId};
use crate::wire;

// --- the JSON shapes ----------------------------------------------------------------------------

/// Every success answer: `{"data": ..., "entity": "<kind>"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<'a, T> {
    pub data: T,
    #[serde(borrow, default)]
    pub entity: Cow<'a, str>,
}

/// The `entity` of each kind of answer.
pub mod entity {
    pub const RESOURCE: &str = "resource";
    pub const LOCATION: &str = "node_resource_location";
    pub const NODE: &str = "node";
    pub const STATUS: &str = "status";
    pub const HEALTH: &str = "health";
    pub const PIECES: &str = "pieces";
}

/// Reads the `data` of an answer's body.
pub fn data_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice::<Envelope<T>>(body).map(|envelope| envelope.data)
}

/// A resource a node holds: `{"id", "name"}`. Names are borrowed from the body they are read
/// from where they can be (no escapes), so a list of 100,000 costs no allocation per name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held<'a> {
    pub id: ResourceId,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

/// Where a resource is: `{"name"?, "location", "locations"}`; `location` is the one holder to
/// use, `locations` every holder known (missing in older supernodes' answers: then read as the
/// one `location`, see [`FileInfo::every_location`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub location: String,
    #[serde(default)]
    pub locations: Vec<String>,
}

impl FileInfo {
    /// With `locations` holding `location` at least.
    pub fn every_location(mut self) -> FileInfo {
        if self.locations.is_empty() {
            self.locations.push(self.location.clone());
        }
        self
    }
}

/// A supernode's search answer: `{"id", "file": {...}}` (`F`: a [`FileInfo`], or the index's
/// view of one, serialised without a copy).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Located<F = FileInfo> {
    pub id: ResourceId,
    pub file: F,
}

/// A node's answer for a resource held elsewhere: `{"id", "info": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remote {
    pub id: ResourceId,
    pub info: FileInfo,
}

/// A node's answer for an id it holds when asked for every holder (`?all=true`): `{"id",
/// "name", "locations"}`, the node itself first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldEverywhere<'a> {
    #[serde(borrow, flatten)]
    pub held: Held<'a>,
    pub locations: Vec<String>,
}

/// A node's answer for an id it holds (`{"id", "name"}`) or knows the holders of.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Found<'a> {
    Remote(Remote),
    #[serde(borrow)]
    Local(Held<'a>),
}

/// A file's piece list (`GET /api/node/resources/<id>/pieces`): `{"id", "size",
/// "piece_size", "pieces": [sha256, ...]}`, each piece's SHA-256 written as an id is. What it
/// means and how it is checked: [`crate::pieces`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceList {
    pub id: ResourceId,
    pub size: u64,
    pub piece_size: u64,
    pub pieces: Vec<ResourceId>,
}

/// A registration: `{"name"?, "location", "resources": [{"id", "name"}, ...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registration<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub location: Cow<'a, str>,
    #[serde(borrow)]
    pub resources: Vec<Held<'a>>,
}

/// A heartbeat or a leave: `{"location": "ip:port"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeLocation<'a> {
    #[serde(borrow)]
    pub location: Cow<'a, str>,
}

/// A registered node, as `GET /api/supernode/alive` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub location: String,
}

/// Reads a request's JSON body: a 400 that says what was wrong, or the value.
pub fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

// --- what requests carry ------------------------------------------------------------------------

/// Parses an id from a path segment: 400 when it is not 64 hex characters.
pub fn parse_id(text: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "malformed resource id {:?}: expected 64 hex characters",
            id::truncate(text, 80)
        ))
    })
}

/// Parses `?hash_ids=a,b,c`: at most `max` ids (counted before any is parsed), every one
/// valid, each kept once, in the order asked.
pub fn parse_id_list(request: &Request, max: usize) -> Result<Vec<ResourceId>, ApiError> {
    let list = request
        .query_param("hash_ids")
        .ok_or_else(|| ApiError::BadRequest("missing query parameter hash_ids".into()))?;
    let texts = || {
        list.split(',')
            .map(str::trim)
            .filter(|text| !text.is_empty())
    };
    let count = texts().count();
    if count > max {
        return Err(ApiError::BadRequest(format!(
            "{count} ids asked; at most {max} per request"
        )));
    }
    let ids = texts().map(parse_id).collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::with_capacity(ids.len());
    Ok(ids.into_iter().filter(|id| seen.insert(*id)).collect())
}

/// The longest text (and node name) a name search takes, in bytes as its datagram carries
/// them: with both at most this, the query stays under 512 bytes with a seal.
pub const MAX_NAME_QUERY: usize = 180;
/// The most results a name search returns.
pub const MAX_NAME_RESULTS: usize = 1000;

/// The parameters of a name search, checked: `file_name`, `node_name`, `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameQuery {
    pub text: String,
    pub node: Option<String>,
    pub limit: usize,
}

impl NameQuery {
    pub fn from_request(request: &Request) -> Result<NameQuery, ApiError> {
        let text = request.query_param("file_name").unwrap_or_default();
        if text.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "file_name must hold some text to look for".into(),
            ));
        }
        let node = request.query_param("node_name").filter(|n| !n.is_empty());
        // Measured as the query datagram carries it (escaped, UTF-8), which must stay under
        // 512 bytes.
        for (what, value) in [("file_name", Some(&text)), ("node_name", node.as_ref())] {
            let mut escaped = String::new();
            wire::escape_into(&mut escaped, value.map_or("", |v| v.as_str()));
            if escaped.len() > MAX_NAME_QUERY {
                return Err(ApiError::BadRequest(format!(
                    "{what} is longer than {MAX_NAME_QUERY} bytes (as UTF-8, with ; / , % and control characters counted as 3)"
                )));
            }
        }
        let limit = match request.query_param("limit") {
            None => 100,
            Some(limit) => limit
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_NAME_RESULTS).contains(l))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be a number from 1 to {MAX_NAME_RESULTS}"
                    ))
                })?,
        };
        Ok(NameQuery { text, node, limit })
    }
}

// --- the routes ---------------------------------------------------------------------------------

/// Every route of both roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`.
    Metrics,
    /// `GET /` (and its CSS and script): the web page.
    Page,
    Supernode(SupernodeRoute),
    Node(NodeRoute),
}

/// A supernode's routes, under `/api/supernode/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupernodeRoute {
    /// `POST register`.
    Register,
    /// `GET search/<id>`.
    Search(ResourceId),
    /// `GET search/<id>?all=true`: every holder the group knows.
    SearchAll(ResourceId),
    /// `GET search/<id>/metalink`: a Metalink document of every holder.
    Metalink(ResourceId),
    /// `GET search?hash_ids=...`.
    SearchMany,
    /// `GET search?file_name=...`.
    SearchNames,
    /// `GET alive`: the registered nodes.
    Nodes,
    /// `POST alive`: a node's heartbeat.
    Heartbeat,
    /// `POST leave`.
    Leave,
    /// `GET xxx`: a liveness sweep now (the seed's name).
    Sweep,
    /// `GET status`: what the page shows.
    Status,
    /// `GET digest`: the index's summary.
    Digest,
}

/// A node's routes, under `/api/node/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRoute {
    /// `GET health`.
    Health,
    /// `GET status`: what the page shows.
    Status,
    /// `GET search?file_name=...`, asked of the supernode.
    Search,
    /// `GET resources`: the listing.
    Resources,
    /// `GET resources/find?hash_ids=...`.
    Find,
    /// `GET resources/<id>`.
    Resource(ResourceId),
    /// `GET resources/<id>/content`.
    Content(ResourceId),
    /// `GET resources/<id>/pieces`: the piece list.
    Pieces(ResourceId),
    /// `GET resources/<id>/metalink`: a Metalink document of every holder.
    Metalink(ResourceId),
}

impl SupernodeRoute {
    /// Whether a request on this route must be signed under a cluster key: those that change
    /// what the supernode says.
    pub fn signed(self) -> bool {
        matches!(
            self,
            SupernodeRoute::Register
                | SupernodeRoute::Heartbeat
                | SupernodeRoute::Leave
                | SupernodeRoute::Sweep
        )
    }

    /// The registration request it is, as the metrics count them.
    pub fn registration(self) -> Option<&'static str> {
        match self {
            SupernodeRoute::Register => Some("register"),
            SupernodeRoute::Heartbeat => Some("heartbeat"),
            SupernodeRoute::Leave => Some("leave"),
            _ => None,
        }
    }
}

/// Where a search found its answer (the metrics time each in a histogram of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searched {
    /// The supernode's own index.
    Index,
    /// The other supernodes were asked.
    Group,
}

/// A request's route, parsed once from its head: its name in the metrics (a fixed name, never
/// the path: ids would make a series each), and the route, or the error that answers it (404,
/// 405, a malformed id's 400, the other role's path's 418).
#[derive(Debug, Clone)]
pub struct Routed {
    pub name: &'static str,
    pub route: Result<Route, ApiError>,
}

impl Routed {
    /// The route of `request` on a server of `role`.
    pub fn parse(request: &Request, role: Role) -> Routed {
        let get = |name, route| Routed::only(request, Method::Get, name, route);
        match request.path {
            "/metrics" => return get("/metrics", Ok(Route::Metrics)),
            "/" | "/index.html" | "/page.css" | "/page.js" => return get("page", Ok(Route::Page)),
            _ => {}
        }
        let (mine, other) = match role {
            Role::Supernode => ("supernode", "node"),
            Role::Node => ("node", "supernode"),
        };
        let segments = match request.segments(mine, other) {
            Ok(segments) => segments,
            Err(error) => {
                return Routed {
                    name: "other",
                    route: Err(error),
                };
            }
        };
        let routed = match role {
            Role::Supernode => Routed::parse_supernode(request, &segments),
            Role::Node => Routed::parse_node(request, &segments),
        };
        routed.unwrap_or_else(|| Routed {
            name: "other",
            route: Err(ApiError::NotFound(format!(
                "no such path: {}",
                request.path
            ))),
        })
    }

    fn parse_supernode(request: &Request, segments: &[&str]) -> Option<Routed> {
        use SupernodeRoute as S;
        let route = |route| Ok(Route::Supernode(route));
        let get = |name, route| Routed::only(request, Method::Get, name, route);
        let post = |name, route| Routed::only(request, Method::Post, name, route);
        Some(match segments {
            ["register"] => post("/api/supernode/register", route(S::Register)),
            ["search"] => {
                let names = request.query_param("file_name").is_some();
                let which = if names { S::SearchNames } else { S::SearchMany };
                get("/api/supernode/search", route(which))
            }
            ["search", id] => {
                let all = request.query_param("all").as_deref() == Some("true");
                let which = parse_id(id)
                    .and_then(|id| route(if all { S::SearchAll(id) } else { S::Search(id) }));
                get("/api/supernode/search/{id}", which)
            }
            ["search", id, "metalink"] => get(
                "/api/supernode/search/{id}/metalink",
                parse_id(id).and_then(|id| route(S::Metalink(id))),
            ),
            ["alive"] => {
                let which = match request.method {
                    Method::Post => route(S::Heartbeat),
                    _ => route(S::Nodes),
                };
                let name = "/api/supernode/alive";
                match request.method {
                    Method::Get | Method::Post => Routed { name, route: which },
                    Method::Other => Routed::only(request, Method::Get, name, which),
                }
            }
            ["leave"] => post("/api/supernode/leave", route(S::Leave)),
            ["xxx"] => get("/api/supernode/xxx", route(S::Sweep)),
            ["status"] => get("/api/supernode/status", route(S::Status)),
            ["digest"] => get("/api/supernode/digest", route(S::Digest)),
            _ => return None,
        })
    }

    fn parse_node(request: &Request, segments: &[&str]) -> Option<Routed> {
        use NodeRoute as N;
        let route = |route| Ok(Route::Node(route));
        let get = |name, route| Routed::only(request, Method::Get, name, route);
        Some(match segments {
            ["health"] => get("/api/node/health", route(N::Health)),
            ["status"] => get("/api/node/status", route(N::Status)),
            ["search"] => get("/api/node/search", route(N::Search)),
            ["resources"] => get("/api/node/resources", route(N::Resources)),
            ["resources", "find"] => get("/api/node/resources/find", route(N::Find)),
            ["resources", id] => get(
                "/api/node/resources/{id}",
                parse_id(id).and_then(|id| route(N::Resource(id))),
            ),
            ["resources", id, "content"] => get(
                "/api/node/resources/{id}/content",
                parse_id(id).and_then(|id| route(N::Content(id))),
            ),
            ["resources", id, "pieces"] => get(
                "/api/node/resources/{id}/pieces",
                parse_id(id).and_then(|id| route(N::Pieces(id))),
            ),
            ["resources", id, "metalink"] => get(
                "/api/node/resources/{id}/metalink",
                parse_id(id).and_then(|id| route(N::Metalink(id))),
            ),
            _ => return None,
        })
    }

    /// `route` named `name`, for `method` only (405 otherwise, before any other error).
    fn only(
        request: &Request,
        method: Method,
        name: &'static str,
        route: Result<Route, ApiError>,
    ) -> Routed {
        let route = if request.method == method {
            route
        } else {
            Err(ApiError::MethodNotAllowed)
        };
        Routed { name, route }
    }

    /// The supernode route, if this is one.
    pub fn supernode(&self) -> Option<SupernodeRoute> {
        match self.route {
            Ok(Route::Supernode(route)) => Some(route),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a165db4b039ff22779f88e8e847a938fcbab8229769c5ce81111c88cfc8cbb85";

    fn routed(method: Method, target: &str, role: Role) -> Routed {
        Routed::parse(&Request::new(method, target, b""), role)
    }

    fn status(routed: &Routed) -> u16 {
        routed.route.as_ref().map_or_else(ApiError::status, |_| 200)
    }

    #[test]
    fn every_route_of_both_roles_parses_with_its_name() {
        let id = ResourceId::parse(ID).unwrap();
        use NodeRoute as N;
        use SupernodeRoute as S;
        let cases = [
            (
                Method::Get,
                "/metrics".to_string(),
                Role::Node,
                Route::Metrics,
                "/metrics",
            ),
            (
                Method::Get,
                "/".into(),
                Role::Supernode,
                Route::Page,
                "page",
            ),
            (
                Method::Get,
                "/page.js".into(),
                Role::Node,
                Route::Page,
                "page",
            ),
            (
                Method::Post,
                "/api/supernode/register".into(),
                Role::Supernode,
                Route::Supernode(S::Register),
                "/api/supernode/register",
            ),
            (
                Method::Get,
                format!("/api/supernode/search/{ID}"),
                Role::Supernode,
                Route::Supernode(S::Search(id)),
                "/api/supernode/search/{id}",
            ),
            (
                Method::Get,
                format!("/api/supernode/search/{}?all=true", ID.to_uppercase()),
                Role::Supernode,
                Route::Supernode(S::SearchAll(id)),
                "/api/supernode/search/{id}",
            ),
            (
                Method::Get,
                "/api/supernode/search?hash_ids=a".into(),
                Role::Supernode,
                Route::Supernode(S::SearchMany),
                "/api/supernode/search",
            ),
            (
                Method::Get,
                "/api/supernode/search?file_name=a".into(),
                Role::Supernode,
                Route::Supernode(S::SearchNames),
                "/api/supernode/search",
            ),
            (
                Method::Get,
                "/api/supernode/alive".into(),
                Role::Supernode,
                Route::Supernode(S::Nodes),
                "/api/supernode/alive",
            ),
            (
                Method::Post,
                "/api/supernode/alive/".into(),
                Role::Supernode,
                Route::Supernode(S::Heartbeat),
                "/api/supernode/alive",
            ),
            (
                Method::Post,
                "/api/supernode/leave".into(),
                Role::Supernode,
                Route::Supernode(S::Leave),
                "/api/supernode/leave",
            ),
            (
                Method::Get,
                "/api/supernode/xxx".into(),
                Role::Supernode,
                Route::Supernode(S::Sweep),
                "/api/supernode/xxx",
            ),
            (
                Method::Get,
                "/api/supernode/status".into(),
                Role::Supernode,
                Route::Supernode(S::Status),
                "/api/supernode/status",
            ),
            (
                Method::Get,
                "/api/supernode/digest?epoch=1&since=2".into(),
                Role::Supernode,
                Route::Supernode(S::Digest),
                "/api/supernode/digest",
            ),
            (
                Method::Get,
                "/api/node/health".into(),
                Role::Node,
                Route::Node(N::Health),
                "/api/node/health",
            ),
            (
                Method::Get,
                "/api/node/status".into(),
                Role::Node,
                Route::Node(N::Status),
                "/api/node/status",
            ),
            (
                Method::Get,
                "/api/node/search?file_name=x".into(),
                Role::Node,
                Route::Node(N::Search),
                "/api/node/search",
            ),
            (
                Method::Get,
                "/api/node/resources".into(),
                Role::Node,
                Route::Node(N::Resources),
                "/api/node/resources",
            ),
            (
                Method::Get,
                "/api/node/resources/find?hash_ids=x".into(),
                Role::Node,
                Route::Node(N::Find),
                "/api/node/resources/find",
            ),
            (
                Method::Get,
                format!("/api/node/resources/{ID}"),
                Role::Node,
                Route::Node(N::Resource(id)),
                "/api/node/resources/{id}",
            ),
            (
                Method::Get,
                format!("/api/node/resources/{ID}/content"),
                Role::Node,
                Route::Node(N::Content(id)),
                "/api/node/resources/{id}/content",
            ),
        ];
        for (method, target, role, route, name) in cases {
            let routed = routed(method, &target, role);
            assert_eq!(routed.route, Ok(route), "{target}");
            assert_eq!(routed.name, name, "{target}");
        }
    }

    #[test]
    fn a_wrong_path_method_id_or_role_is_its_error_with_the_routes_name() {
        let cases = [
            (
                Method::Post,
                "/api/supernode/search".to_string(),
                Role::Supernode,
                405,
                "/api/supernode/search",
            ),
            (
                Method::Get,
                "/api/supernode/register".into(),
                Role::Supernode,
                405,
                "/api/supernode/register",
            ),
            (
                Method::Other,
                "/api/supernode/alive".into(),
                Role::Supernode,
                405,
                "/api/supernode/alive",
            ),
            (Method::Post, "/metrics".into(), Role::Node, 405, "/metrics"),
            (
                Method::Get,
                "/api/supernode/search/abc".into(),
                Role::Supernode,
                400,
                "/api/supernode/search/{id}",
            ),
            (
                Method::Post,
                "/api/supernode/search/abc".into(),
                Role::Supernode,
                405,
                "/api/supernode/search/{id}",
            ),
            (
                Method::Get,
                "/api/node/resources/xyz/content".into(),
                Role::Node,
                400,
                "/api/node/resources/{id}/content",
            ),
            (
                Method::Get,
                "/api/node/resources".into(),
                Role::Supernode,
                418,
                "other",
            ),
            (
                Method::Get,
                "/api/supernode/alive".into(),
                Role::Node,
                418,
                "other",
            ),
            (
                Method::Get,
                "/api/supernode/nothing".into(),
                Role::Supernode,
                404,
                "other",
            ),
            (Method::Get, "/nothing".into(), Role::Node, 404, "other"),
            (
                Method::Get,
                format!("/api/node/resources/{ID}/content/more"),
                Role::Node,
                404,
                "other",
            ),
        ];
        for (method, target, role, code, name) in cases {
            let routed = routed(method, &target, role);
            assert_eq!((status(&routed), routed.name), (code, name), "{target}");
        }
    }

    #[test]
    fn signed_routes_and_registrations() {
        let signed: Vec<SupernodeRoute> = [
            SupernodeRoute::Register,
            SupernodeRoute::Heartbeat,
            SupernodeRoute::Leave,
            SupernodeRoute::Sweep,
            SupernodeRoute::Status,
            SupernodeRoute::SearchMany,
        ]
        .into_iter()
        .filter(|r| r.signed())
        .collect();
        assert_eq!(signed.len(), 4);
        assert_eq!(SupernodeRoute::Heartbeat.registration(), Some("heartbeat"));
        assert_eq!(SupernodeRoute::Sweep.registration(), None);
    }

    #[test]
    fn id_lists_are_counted_before_parsing_and_kept_once_in_order() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let target = format!("/x?hash_ids={a},{b}, ,{a}");
        let ids = parse_id_list(&Request::new(Method::Get, &target, b""), 3).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].to_string(), "b".repeat(64));
        let many = format!("/x?hash_ids={}", ["junk"; 5].join(","));
        let error = parse_id_list(&Request::new(Method::Get, &many, b""), 4).unwrap_err();
        assert!(error.description().contains("5 ids asked"), "{error}");
        assert_eq!(
            parse_id_list(&Request::new(Method::Get, "/x", b""), 4)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn shapes_read_what_they_write() {
        let body = br#"{"name":"n","location":"10.0.0.7:8000","resources":[{"id":"a165db4b039ff22779f88e8e847a938fcbab8229769c5ce81111c88cfc8cbb85","name":"x"}]}"#;
        let registration: Registration = body_of(body).unwrap();
        assert!(matches!(registration.resources[0].name, Cow::Borrowed("x")));
        assert_eq!(serde_json::to_vec(&registration).unwrap(), body.to_vec());
        let old: Located = data_of(br#"{"data":{"id":"a165db4b039ff22779f88e8e847a938fcbab8229769c5ce81111c88cfc8cbb85","file":{"location":"h:1"}},"entity":"x"}"#).unwrap();
        assert_eq!(old.file.every_location().locations, ["h:1"]);
        let found: Vec<Found> = data_of(br#"{"data":[{"id":"a165db4b039ff22779f88e8e847a938fcbab8229769c5ce81111c88cfc8cbb85","name":"x"},{"id":"a165db4b039ff22779f88e8e847a938fcbab8229769c5ce81111c88cfc8cbb85","info":{"location":"h:1","locations":["h:1"]}}]}"#).unwrap();
        assert!(matches!(found[0], Found::Local(_)) && matches!(found[1], Found::Remote(_)));
        assert!(body_of::<NodeLocation>(b"{}").is_err());
    }
}

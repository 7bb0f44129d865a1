//! The supernode: keeps the index of its nodes' resources, answers searches from it, and asks
//! the other supernodes over multicast for what it does not have.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::{self, ClusterKeys, Nonces};
use crate::config::SupernodeConfig;
use crate::error::{ApiError, Error};
use crate::http::{HttpServer, Method, Reply, Request, Service};
use crate::id::ResourceId;
use crate::index::{FileInfo, Index};
use crate::liveness::Liveness;
use crate::logging::Throttle;
use crate::metrics::{Metrics, SearchOutcome, SupernodeMetrics};
use crate::multicast::{Multicast, Outcome};
use crate::shutdown::Shutdown;
use crate::{Instance, parse_id, parse_id_list, wire};

/// What the supernode's handlers need.
pub struct SupernodeService {
    index: Arc<RwLock<Index>>,
    multicast: Multicast,
    liveness: Arc<Liveness>,
    /// `MAX_IDS_PER_REQUEST`.
    max_ids: usize,
    /// Who may speak for a location, and how much the index takes.
    admission: Admission,
    /// `CLUSTER_KEY`: what signed requests must be signed with, and the signatures seen.
    keys: Option<ClusterKeys>,
    /// Signs the index's summary, under a cluster key.
    digest_keys: Option<ClusterKeys>,
    nonces: Nonces,
    metrics: Arc<Metrics>,
    started: Instant,
    /// `MULTICAST_LOCATION`, for the status page.
    group: String,
    /// What each client may ask of the other supernodes.
    fan_out: FanOut,
}

/// What one client (a source host) may ask of the other supernodes each second: the searches
/// that ask every one of them (by name, every holder) and the ids a list asks remotely. A
/// search for one id is not limited: it costs the group one query, as the seed's did. A
/// supernode alone in its group (`MULTICAST_GROUP_SIZE=1`) asks nobody and limits nothing.
struct FanOut {
    alone: bool,
    buckets: std::sync::Mutex<crate::rate::Buckets<(IpAddr, Fan)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fan {
    /// A name or every-holder search: one query to every supernode, each of which scans its
    /// index or answers with every holder.
    Everyone,
    /// The ids of a `hash_ids` list not in the index: one query each.
    ListedIds,
}

impl Fan {
    /// `(per second, burst)` for one client.
    fn limit(self) -> (f64, f64) {
        match self {
            Fan::Everyone => (20.0, 50.0),
            Fan::ListedIds => (256.0, 512.0),
        }
    }
}

impl FanOut {
    /// Takes `cost` of `fan` from `request`'s client, or says to retry later.
    fn charge(&self, request: &Request, fan: Fan, cost: usize) -> Result<(), ApiError> {
        let Some(client) = request.peer.map(|peer| peer.ip().to_canonical()) else {
            return Ok(());
        };
        if self.alone || cost == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.take((client, fan), cost as f64, fan.limit(), Instant::now()) {
            return Ok(());
        }
        let (rate, burst) = fan.limit();
        Err(ApiError::TooManyRequests(match fan {
            Fan::Everyone => format!(
                "{client} asked every supernode more than {rate} times a second ({burst} at once): searches by name and for every holder are limited per client"
            ),
            Fan::ListedIds => format!(
                "{client} asked the other supernodes for more than {rate} listed ids a second ({burst} at once); {cost} were asked now"
            ),
        }))
    }
}

impl Service for SupernodeService {
    /// A request that changes what the supernode says (a registration, heartbeat, leave or
    /// manual sweep) must be signed when there is a cluster key: checked here, before its body
    /// is read; the body is checked against the signature in `route`.
    fn check_head(&self, request: &Request<'_>) -> Result<(), ApiError> {
        if let Some(keys) = &self.keys
            && signed_route(request)
        {
            auth::check_head(
                keys,
                &self.nonces,
                method_name(request),
                &target_of(request),
                request.header(auth::AUTH_HEADER),
            )
            .map_err(|e| self.refused(&who(request), e))
            .inspect_err(|e| self.count_registration(request, Some(e.status())))?;
        }
        Ok(())
    }

    fn handle(&self, request: &Request<'_>) -> Result<Reply, ApiError> {
        let answer = (|| {
            if self.keys.is_some() && signed_route(request) {
                // The head's signature was checked; it covers this hash of the body.
                let hash = request
                    .header(auth::AUTH_HEADER)
                    .and_then(auth::body_hash_of)
                    .ok_or_else(|| ApiError::Unauthorized("no signature".into()))?;
                auth::check_body(&hash, request.body)
                    .map_err(|e| self.refused(&who(request), e))?;
            }
            self.route(request)
        })();
        let status = match &answer {
            Ok(_) => None,
            Err(e) => Some(e.status()),
        };
        self.count_registration(request, status);
        answer
    }

    /// A search's time goes to the local or the remote histogram, as its handler said.
    fn answered(&self, _request: &Request<'_>, _status: u16, took: Duration) {
        if let Some(remote) = SEARCHED.take() {
            self.supernode_metrics().search_took(remote, took);
        }
    }

    fn route_name(&self, request: &Request<'_>) -> &'static str {
        let Some(rest) = request.path.strip_prefix("/api/supernode/") else {
            return crate::page::route_name(request.path);
        };
        match rest.trim_end_matches('/') {
            "register" => "/api/supernode/register",
            "search" => "/api/supernode/search",
            "alive" => "/api/supernode/alive",
            "leave" => "/api/supernode/leave",
            "xxx" => "/api/supernode/xxx",
            "status" => "/api/supernode/status",
            "digest" => "/api/supernode/digest",
            path if path.starts_with("search/") => "/api/supernode/search/{id}",
            _ => "other",
        }
    }
}

thread_local! {
    /// Set by a search's handler: `Some(true)` when it asked the group, `Some(false)` when the
    /// index answered; taken in `answered`, on the same thread, with the request's time.
    static SEARCHED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Which registration request `request` is, as the metrics count them.
fn registration_kind(request: &Request<'_>) -> Option<&'static str> {
    if request.method != Method::Post {
        return None;
    }
    match request.path.strip_prefix("/api/supernode/")? {
        "register" => Some("register"),
        "alive" => Some("heartbeat"),
        "leave" => Some("leave"),
        _ => None,
    }
}

/// `POST /api/supernode/register from 10.0.0.7:41234`, for a log line.
fn who(request: &Request<'_>) -> String {
    let from = request.peer.map_or("here".into(), |peer| peer.to_string());
    format!("{} {} from {from}", method_name(request), request.path)
}

/// The requests that must be signed when there is a cluster key.
fn signed_route(request: &Request<'_>) -> bool {
    matches!(
        (request.api_path("supernode").as_deref(), request.method),
        (Some(["register" | "alive" | "leave"]), Method::Post) | (Some(["xxx"]), Method::Get)
    )
}

fn method_name(request: &Request<'_>) -> &'static str {
    match request.method {
        Method::Post => "POST",
        _ => "GET",
    }
}

/// The path and query, as the client signed them.
fn target_of<'a>(request: &Request<'a>) -> Cow<'a, str> {
    if request.query.is_empty() {
        Cow::Borrowed(request.path)
    } else {
        Cow::Owned(format!("{}?{}", request.path, request.query))
    }
}

/// The rules a registration, heartbeat or leave must meet (SPEC section 7).
struct Admission {
    source_check: bool,
    max_node_resources: usize,
    max_index: usize,
    max_nodes: usize,
    max_nodes_per_host: usize,
    max_host_resources: usize,
    refusals: Throttle,
}

impl Admission {
    /// Whether `index` takes a registration of `count` resources for `location` from
    /// `source`, in its place of any earlier one: the refusal when not. Called under the
    /// index's write lock, before anything changes, so a refusal costs nothing indexed.
    fn check(
        &self,
        index: &Index,
        location: &str,
        source: Option<IpAddr>,
        count: usize,
    ) -> Result<(), ApiError> {
        if count > self.max_node_resources {
            return Err(ApiError::OverQuota(format!(
                "{count} resources; a node may register at most {} (MAX_RESOURCES_PER_NODE)",
                self.max_node_resources
            )));
        }
        if source.is_some() && count > self.max_host_resources {
            return Err(ApiError::OverQuota(format!(
                "{count} resources; the nodes of one host may register at most {} (MAX_RESOURCES_PER_HOST)",
                self.max_host_resources
            )));
        }
        let (holdings, nodes) = index.size();
        let current = index.holdings_of(location);
        if !index.is_registered(location) && nodes >= self.max_nodes {
            return Err(ApiError::Full(format!(
                "{nodes} nodes are registered, the most this supernode takes (MAX_NODES)"
            )));
        }
        if holdings - current + count > self.max_index {
            return Err(ApiError::Full(format!(
                "the index holds {holdings} resources and takes at most {} (MAX_INDEX_RESOURCES)",
                self.max_index
            )));
        }
        let Some(host) = source else {
            return Ok(());
        };
        // What the location holds counts for its host only when it registered from there
        // (behind NAT a node may come back from another address).
        let usage = index.usage_of(host);
        let here = index.source_of(location) == Some(host);
        if !here && usage.nodes >= self.max_nodes_per_host {
            return Err(ApiError::Full(format!(
                "{} nodes are registered from {host}, the most one host may register (MAX_NODES_PER_HOST)",
                usage.nodes
            )));
        }
        let held = usage.holdings - if here { current } else { 0 };
        if held + count > self.max_host_resources {
            return Err(ApiError::Full(format!(
                "the nodes registered from {host} hold {} resources; one host's may hold at most {} (MAX_RESOURCES_PER_HOST)",
                usage.holdings, self.max_host_resources
            )));
        }
        Ok(())
    }
}

/// A registration body; names are borrowed from the body where they can be (no escapes), so a
/// list of 100,000 resources costs no allocation per name.
#[derive(Deserialize)]
struct RegisterBody<'a> {
    #[serde(default)]
    name: Option<String>,
    location: String,
    #[serde(borrow)]
    resources: Vec<RegisterResource<'a>>,
}

#[derive(Deserialize)]
pub struct RegisterResource<'a> {
    pub id: ResourceId,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
}

/// A registration as the supernode accepts it: the JSON well formed, the location an
/// `ip:port` in its one spelling, the name defaulting to the location.
pub struct Registration<'a> {
    pub name: String,
    pub location: SocketAddr,
    pub resources: Vec<RegisterResource<'a>>,
}

/// Reads a `POST /api/supernode/register` body: a 400 that says what is wrong, or the
/// registration.
pub fn parse_registration(body: &[u8]) -> Result<Registration<'_>, ApiError> {
    let body: RegisterBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let location = parse_location(&body.location)?;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| location.to_string());
    Ok(Registration {
        name,
        location,
        resources: body.resources,
    })
}

/// A location from a request, strictly `ip:port` ([`crate::location::parse`]); never resolved.
fn parse_location(text: &str) -> Result<SocketAddr, ApiError> {
    crate::location::parse(text).map_err(ApiError::BadRequest)
}

/// A heartbeat or a leave: `{"location": "host:port"}`.
#[derive(Deserialize)]
struct NodeLocation {
    location: String,
}

/// A search answer: `{"id", "file": {"name"?, "location", "locations"}}`; the file is a
/// [`FileInfo`], or a view of the index for an answer serialised under its lock.
#[derive(Serialize)]
struct Located<F = FileInfo> {
    id: ResourceId,
    file: F,
}

const ENTITY: &str = "node_resource_location";

/// The parameters of a name search, checked.
pub struct NameQuery {
    pub text: String,
    pub node: Option<String>,
    pub limit: usize,
}

/// The longest text (and node name) a name search takes, in bytes as its datagram carries
/// them: with both at most this, the query stays under 512 bytes with a seal.
pub const MAX_NAME_QUERY: usize = 180;
/// The most results a name search returns.
pub const MAX_NAME_RESULTS: usize = 1000;

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

/// `GET /api/supernode/status`: the supernode's page reads it every few seconds.
#[derive(Serialize)]
struct Status {
    role: &'static str,
    group: String,
    keyed: bool,
    up_seconds: u64,
    peers: Vec<PeerStatus>,
    /// The other supernodes' index summaries held here.
    summaries: Vec<SummaryStatus>,
    index: IndexSizes,
    nodes: Vec<crate::index::NodeStatus>,
    searches: SearchCounts,
}

#[derive(Serialize)]
struct PeerStatus {
    /// The name it sends under (chosen at its start).
    name: String,
    /// Where its last datagram came from.
    address: String,
    heard_ms_ago: u64,
    /// Its API's `host:port` (its page), as it announced it; `null` before that.
    api: Option<String>,
}

#[derive(Serialize)]
struct SummaryStatus {
    name: String,
    /// `<epoch hex>/<version>` held, if any.
    held: Option<String>,
    /// Whether it is the last version announced (used to choose whom to ask).
    fresh: bool,
}

#[derive(Serialize)]
struct IndexSizes {
    resources: usize,
    locations: usize,
    nodes: usize,
}

/// Searches for one id since the start, by outcome.
#[derive(Serialize)]
struct SearchCounts {
    local_hit: u64,
    found_by_group: u64,
    not_found: u64,
    timed_out: u64,
}

/// The longest `GET /api/supernode/xxx` waits for its sweep.
const SWEEP_WAIT: Duration = Duration::from_secs(60);

impl SupernodeService {
    pub fn route(&self, request: &Request) -> Result<Reply, ApiError> {
        if request.path == "/metrics" {
            request.expect(Method::Get)?;
            return Ok(self.metrics_page());
        }
        if let Some(reply) = crate::page::asset(request, "supernode")? {
            return Ok(reply);
        }
        let segments = request.segments("supernode", "node")?;
        match (&segments[..], request.method) {
            (["register"], Method::Post) => self.register(request),
            (["search"], Method::Get) if request.query_param("file_name").is_some() => {
                self.search_names(request)
            }
            (["search"], Method::Get) => self.search_many(request),
            (["search", id], Method::Get)
                if request.query_param("all").as_deref() == Some("true") =>
            {
                let id = parse_id(id)?;
                self.fan_out.charge(request, Fan::Everyone, 1)?;
                self.every_holder(id)
            }
            (["search", id], Method::Get) => {
                let id = parse_id(id)?;
                {
                    // The common case, answered from the index without copying anything.
                    let index = self.read_index();
                    if let Some(file) = index.view(&id) {
                        let reply = Reply::data(200, ENTITY, &Located { id, file });
                        drop(index);
                        self.supernode_metrics().searched(SearchOutcome::LocalHit);
                        SEARCHED.set(Some(false));
                        return Ok(reply);
                    }
                }
                let file = self.locate(&[id], |_| Ok(()))?.pop().flatten();
                let file =
                    file.ok_or_else(|| ApiError::NotFound(format!("resource {id} not found")))?;
                Ok(Reply::data(200, ENTITY, &Located { id, file }))
            }
            (["alive"], Method::Get) => {
                let nodes = self.read_index().nodes();
                Ok(Reply::data(200, "node", &nodes))
            }
            (["status"], Method::Get) => Ok(Reply::data(200, "status", &self.status())),
            (["digest"], Method::Get) => self.digest(request),
            (["alive"], Method::Post) => {
                let beat: NodeLocation = request.json()?;
                let location = parse_location(&beat.location)?;
                self.check_source(request, location)?;
                if self.read_index().is_registered(&location.to_string()) {
                    Ok(Reply::no_content())
                } else {
                    Err(ApiError::NotFound(format!(
                        "node {location} is not registered here; register again"
                    )))
                }
            }
            (["xxx"], Method::Get) => {
                if self.liveness.sweep_now(SWEEP_WAIT) {
                    Ok(Reply::no_content())
                } else {
                    Err(ApiError::Unavailable(
                        "the liveness sweep is still running; ask again later".into(),
                    ))
                }
            }
            (["leave"], Method::Post) => {
                let leaving: NodeLocation = request.json()?;
                let location = parse_location(&leaving.location)?;
                self.check_source(request, location)?;
                let removed = self
                    .index
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove_node(&location.to_string());
                match removed {
                    Some(held) => {
                        self.supernode_metrics().removed("leave");
                        log::info!("node {location} left ({held} resources)");
                        Ok(Reply::no_content())
                    }
                    None => Err(ApiError::NotFound(format!(
                        "node {location} is not registered here"
                    ))),
                }
            }
            (
                ["register" | "search" | "alive" | "xxx" | "leave" | "status" | "digest"]
                | ["search", _],
                _,
            ) => Err(ApiError::MethodNotAllowed),
            _ => Err(ApiError::NotFound(format!(
                "no such path: {}",
                request.path
            ))),
        }
    }

    fn supernode_metrics(&self) -> &SupernodeMetrics {
        self.metrics
            .supernode
            .as_ref()
            .expect("a supernode's metrics have their supernode part")
    }

    fn count_registration(&self, request: &Request<'_>, status: Option<u16>) {
        if let Some(kind) = registration_kind(request) {
            self.supernode_metrics().registration(kind, status);
        }
    }

    /// `GET /api/supernode/status`: what the page shows.
    fn status(&self) -> Status {
        let (nodes, resources, (locations, _)) = {
            let index = self.read_index();
            (index.node_statuses(), index.resource_count(), index.size())
        };
        let peers = self
            .multicast
            .peers()
            .into_iter()
            .map(|(name, address, ago, api)| PeerStatus {
                name,
                address: address.to_string(),
                heard_ms_ago: ago.as_millis() as u64,
                api: api.map(|api| api.to_string()),
            })
            .collect();
        let summaries = self
            .multicast
            .summaries()
            .into_iter()
            .map(|s| SummaryStatus {
                name: s.peer,
                held: s
                    .held
                    .map(|(epoch, version)| format!("{epoch:x}/{version}")),
                fresh: s.fresh,
            })
            .collect();
        let [local_hit, found_by_group, not_found, timed_out] =
            self.supernode_metrics().search_counts();
        Status {
            role: "supernode",
            group: self.group.clone(),
            keyed: self.keys.is_some(),
            up_seconds: self.started.elapsed().as_secs(),
            peers,
            summaries,
            index: IndexSizes {
                resources,
                locations,
                nodes: nodes.len(),
            },
            nodes,
            searches: SearchCounts {
                local_hit,
                found_by_group,
                not_found,
                timed_out,
            },
        }
    }

    /// `GET /metrics`: the index's sizes and the peers as of now, then every counter.
    fn metrics_page(&self) -> Reply {
        let metrics = self.supernode_metrics();
        let (resources, (locations, nodes)) = {
            let index = self.read_index();
            (index.resource_count(), index.size())
        };
        metrics.index_resources.set(resources as i64);
        metrics.index_locations.set(locations as i64);
        metrics.index_nodes.set(nodes as i64);
        metrics.peers.set(self.multicast.peers().len() as i64);
        Reply::typed(self.metrics.render(), crate::metrics::CONTENT_TYPE)
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, request: &Request) -> Result<Reply, ApiError> {
        let Registration {
            name,
            location: addr,
            resources,
        } = parse_registration(request.body)?;
        self.check_source(request, addr)?;
        let location = addr.to_string();
        // The quotas per host count by where the request came from, whatever the location
        // says (with SOURCE_CHECK off, a whole NAT is one host).
        let source = request.peer.map(|peer| peer.ip().to_canonical());
        let count = resources.len();
        let resources = resources.into_iter().map(|r| (r.id, r.name));
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if let Err(refusal) = self.admission.check(&index, &location, source, count) {
            drop(index);
            return Err(self.refused(&location, refusal));
        }
        let grown = index.digest().version();
        let again = index.register(&location, source, name.clone(), resources);
        let grown = index.digest().version() != grown;
        drop(index);
        if grown {
            // Before the answer: the node's files are announced by the time it hears 204.
            self.multicast.index_grew();
        }
        let verb = if again {
            "registered again"
        } else {
            "registered"
        };
        // The name is the client's: escaped, so it cannot forge a log line of its own.
        let name = name.escape_debug();
        log::info!("node {location} ({name}) {verb} with {count} resources");
        Ok(Reply::no_content())
    }

    /// `GET /api/supernode/digest[?epoch=<hex>&since=<version>]`: the index's summary, whole, or
    /// only what was added since `version` of `epoch` when that is still known.
    fn digest(&self, request: &Request) -> Result<Reply, ApiError> {
        let have = match (request.query_param("epoch"), request.query_param("since")) {
            (None, None) => None,
            (Some(epoch), Some(since)) => Some((
                u64::from_str_radix(&epoch, 16)
                    .map_err(|_| ApiError::BadRequest(format!("bad epoch {epoch:?}")))?,
                since
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("bad version {since:?}")))?,
            )),
            _ => {
                return Err(ApiError::BadRequest(
                    "epoch and since go together".to_string(),
                ));
            }
        };
        let mut bytes = self.read_index().digest().encode_for(have);
        if let Some(keys) = &self.digest_keys {
            crate::digest::sign(keys, &mut bytes);
        }
        Ok(Reply::typed(bytes, "application/octet-stream"))
    }

    /// With `SOURCE_CHECK` on, only `ip` may speak for `ip:port`. The location is an address
    /// in its one spelling ([`crate::location::parse`]), so this is one comparison, and no
    /// request ever makes the supernode ask the resolver.
    fn check_source(&self, request: &Request, location: SocketAddr) -> Result<(), ApiError> {
        let Some(peer) = request.peer.filter(|_| self.admission.source_check) else {
            return Ok(());
        };
        let peer = peer.ip().to_canonical();
        if location.ip() == peer {
            return Ok(());
        }
        Err(self.refused(
            &location.to_string(),
            ApiError::Forbidden(format!(
                "only {} may speak for {location}; this request came from {peer} (SOURCE_CHECK)",
                location.ip()
            )),
        ))
    }

    /// Logs a refused registration, heartbeat or leave (a line per 10 s at most).
    fn refused(&self, location: &str, error: ApiError) -> ApiError {
        if let Some(count) = self.admission.refusals.hit() {
            log::warn!(
                "refused {}: {} ({count} refusal(s) since the last report)",
                location.escape_debug(),
                error.description()
            );
        }
        error
    }

    /// `GET /api/supernode/search/<id>?all=true`: the own holders and every other
    /// supernode's, once each other peer answered (or the time-out).
    fn every_holder(&self, id: ResourceId) -> Result<Reply, ApiError> {
        let local = self.read_index().lookup(&id);
        let mut file = local.unwrap_or(FileInfo {
            name: None,
            location: String::new(),
            locations: Vec::new(),
        });
        for location in self.multicast.search_all(id) {
            if !file.locations.contains(&location) {
                file.locations.push(location);
            }
        }
        match file.locations.first() {
            Some(first) => {
                file.location = first.clone();
                Ok(Reply::data(200, ENTITY, &Located { id, file }))
            }
            None => Err(ApiError::NotFound(format!("resource {id} not found"))),
        }
    }

    /// `GET /api/supernode/search?file_name=<text>[&node_name=<n>][&limit=<k>]`: the own
    /// index's matches and the group's, merged by id with every location.
    fn search_names(&self, request: &Request) -> Result<Reply, ApiError> {
        let query = NameQuery::from_request(request)?;
        self.fan_out.charge(request, Fan::Everyone, 1)?;
        let node = query.node.as_deref();
        let local = self.read_index().find_names(&query.text, node, query.limit);
        let remote = self
            .multicast
            .search_names(&query.text, node, query.limit as u32);
        let mut found: Vec<Located> = Vec::new();
        let mut at: HashMap<ResourceId, usize> = HashMap::new();
        let hits = local
            .into_iter()
            .flat_map(|m| {
                let name = m.name;
                let id = m.id;
                m.locations
                    .into_iter()
                    .map(move |location| (id, name.clone(), location))
            })
            .chain(remote.into_iter().map(|h| (h.id, h.name, h.location)));
        for (id, name, location) in hits {
            match at.get(&id) {
                Some(&i) => {
                    let file = &mut found[i].file;
                    if !file.locations.contains(&location) {
                        file.locations.push(location);
                    }
                }
                None if found.len() < query.limit => {
                    at.insert(id, found.len());
                    found.push(Located {
                        id,
                        file: FileInfo {
                            name: Some(name),
                            location: location.clone(),
                            locations: vec![location],
                        },
                    });
                }
                None => {}
            }
        }
        Ok(Reply::data(200, ENTITY, &found))
    }

    fn search_many(&self, request: &Request) -> Result<Reply, ApiError> {
        let ids = parse_id_list(request, self.max_ids)?;
        let located = self.locate(&ids, |remote| match ids.len() {
            1 => Ok(()),
            _ => self.fan_out.charge(request, Fan::ListedIds, remote),
        })?;
        let found: Vec<Located> = ids
            .iter()
            .zip(located)
            .filter_map(|(&id, file)| Some(Located { id, file: file? }))
            .collect();
        Ok(Reply::data(200, ENTITY, &found))
    }

    /// Looks every id up in the index, then asks the group for the others, all at once, once
    /// `charge` allowed that many.
    fn locate(
        &self,
        ids: &[ResourceId],
        charge: impl FnOnce(usize) -> Result<(), ApiError>,
    ) -> Result<Vec<Option<FileInfo>>, ApiError> {
        let metrics = self.supernode_metrics();
        let mut found: Vec<Option<FileInfo>> = {
            let index = self.read_index();
            ids.iter().map(|id| index.lookup(id)).collect()
        };
        let missing: Vec<ResourceId> = ids
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(id, _)| *id)
            .collect();
        for _ in 0..ids.len() - missing.len() {
            metrics.searched(SearchOutcome::LocalHit);
        }
        SEARCHED.set(Some(!missing.is_empty()));
        if missing.is_empty() {
            return Ok(found);
        }
        charge(missing.len())?;
        let started = Instant::now();
        let outcomes = self.multicast.search_many(&missing);
        let elapsed = started.elapsed();
        let mut outcomes = missing.iter().zip(outcomes);
        for slot in found.iter_mut().filter(|f| f.is_none()) {
            let Some((id, outcome)) = outcomes.next() else {
                break;
            };
            match outcome {
                Outcome::Found(location) => {
                    metrics.searched(SearchOutcome::FoundByGroup);
                    log::debug!("search {id}: found at {location} by the group in {elapsed:.1?}");
                    *slot = Some(FileInfo {
                        name: None,
                        locations: vec![location.clone()],
                        location,
                    });
                }
                Outcome::NotFound => {
                    metrics.searched(SearchOutcome::NotFound);
                    log::debug!("search {id}: no supernode has it ({elapsed:.1?})");
                }
                Outcome::TimedOut { answered, expected } => {
                    metrics.searched(SearchOutcome::TimedOut);
                    log::debug!(
                        "search {id}: not found; timed out after {elapsed:.1?} with {answered} of {expected} peers answering"
                    );
                }
            }
        }
        Ok(found)
    }
}

/// Joins the group, starts the liveness sweep and the API.
pub fn start(config: SupernodeConfig) -> Result<Instance, Error> {
    let shutdown = Shutdown::new();
    // Searches and sweeps in flight when the stop comes still need these two.
    let background = Shutdown::new();
    let index = Arc::new(RwLock::new(Index::new()));
    let metrics = Arc::new(Metrics::new(true));
    let (multicast, multicast_thread) =
        Multicast::start(&config, index.clone(), background.clone(), metrics.clone())?;
    let liveness = Arc::new(Liveness::new(
        &config,
        index.clone(),
        background.clone(),
        metrics.clone(),
    ));
    let liveness_thread = liveness.clone().spawn()?;
    let service = SupernodeService {
        index,
        multicast: multicast.clone(),
        liveness,
        max_ids: config.http.max_ids,
        admission: Admission {
            source_check: config.source_check,
            max_node_resources: config.max_node_resources,
            max_index: config.max_index,
            max_nodes: config.max_nodes,
            max_nodes_per_host: config.max_nodes_per_host,
            max_host_resources: config.max_host_resources,
            refusals: Throttle::new(Duration::from_secs(10)),
        },
        keys: config.cluster_keys.clone(),
        digest_keys: config
            .cluster_keys
            .as_ref()
            .map(crate::digest::signing_keys),
        nonces: Nonces::default(),
        metrics: metrics.clone(),
        started: Instant::now(),
        group: config.group.to_string(),
        fan_out: FanOut {
            alone: config.group_size == 1,
            buckets: std::sync::Mutex::new(crate::rate::Buckets::new(4096)),
        },
    };
    let http = HttpServer::start(
        &config.http,
        Arc::new(service),
        shutdown.clone(),
        metrics.http.clone(),
    )?;
    multicast.serve_summaries_at(http.addr);
    log::info!(
        "supernode listening on http://{} (group {} via {}, ttl {}, group size {})",
        http.addr,
        config.group,
        config.interface,
        config.ttl,
        match config.group_size {
            0 => "unknown".to_string(),
            n => n.to_string(),
        }
    );
    let summary = crate::logging::spawn_summary(metrics, config.log_summary, shutdown.clone())?;
    Ok(Instance::new(
        http,
        shutdown,
        background,
        vec![multicast_thread, liveness_thread, summary],
    ))
}

//! The supernode: keeps the index of its nodes' resources, answers searches from it, and asks
//! the other supernodes (its [`Group`]) for what it does not have. Its routes by what they are
//! about: [`admission`] (registrations, heartbeats, leaves: who may speak for what, and how much
//! the index takes), [`searches`] (by id, list, name and every holder, and what one client may
//! ask of the group), [`status`] (the page's status, the metrics, the index's summary).

mod admission;
mod searches;
mod status;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::Instance;
use crate::api::{Route, Routed, Searched, SupernodeRoute, entity};
use crate::auth::{self, ClusterKeys, Nonces};
use crate::config::{Role, SupernodeConfig};
use crate::error::{ApiError, Error};
use crate::http::{HttpServer, Method, Reply, Request, Service};
use crate::id::ResourceId;
use crate::index::Index;
use crate::liveness::Liveness;
use crate::logging::Throttle;
use crate::metrics::{Metrics, SupernodeMetrics};
use crate::multicast::{Multicast, Outcome, SummaryHeld};
use crate::shutdown::Shutdown;
use crate::wire::NameHit;

pub use admission::{Accepted, parse_registration};

use admission::Admission;
use searches::{FanOut, Metalinks};

/// What a supernode asks of the other supernodes: [`Multicast`], or a stand-in in the routes'
/// unit tests.
pub trait Group: Send + Sync {
    /// Asks for every id at once; an outcome per id, within one time-out.
    fn search_many(&self, ids: &[ResourceId]) -> Vec<Outcome>;
    /// Every holder of `id` the others know.
    fn search_all(&self, id: ResourceId) -> Vec<String>;
    /// The resources whose name contains `text` (of node `node`), at most `limit` from each.
    fn search_names(&self, text: &str, node: Option<&str>, limit: u32) -> Vec<NameHit>;
    /// The index grew: the others are told.
    fn index_grew(&self);
    /// The peers counted on: name, address, how long ago heard, and its API's address when
    /// it announced it.
    fn peers(&self) -> Vec<(String, SocketAddr, Duration, Option<SocketAddr>)>;
    /// What is held of each other supernode's summary.
    fn summaries(&self) -> Vec<SummaryHeld>;
}

impl Group for Multicast {
    fn search_many(&self, ids: &[ResourceId]) -> Vec<Outcome> {
        Multicast::search_many(self, ids)
    }
    fn search_all(&self, id: ResourceId) -> Vec<String> {
        Multicast::search_all(self, id)
    }
    fn search_names(&self, text: &str, node: Option<&str>, limit: u32) -> Vec<NameHit> {
        Multicast::search_names(self, text, node, limit)
    }
    fn index_grew(&self) {
        Multicast::index_grew(self)
    }
    fn peers(&self) -> Vec<(String, SocketAddr, Duration, Option<SocketAddr>)> {
        Multicast::peers(self)
    }
    fn summaries(&self) -> Vec<SummaryHeld> {
        Multicast::summaries(self)
    }
}

/// What the supernode's handlers need.
pub struct SupernodeService {
    index: Arc<RwLock<Index>>,
    group: Arc<dyn Group>,
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
    supernode_metrics: Arc<SupernodeMetrics>,
    started: Instant,
    /// `MULTICAST_LOCATION`, for the status page.
    group_location: String,
    /// What each client may ask of the other supernodes.
    fan_out: FanOut,
    /// Fetches the piece lists of the Metalink documents from registered nodes.
    metalinks: Metalinks,
}

/// The longest `GET /api/supernode/xxx` waits for its sweep.
const SWEEP_WAIT: Duration = Duration::from_secs(60);

impl Service for SupernodeService {
    fn route(&self, request: &Request<'_>) -> Routed {
        Routed::parse(request, Role::Supernode)
    }

    /// A request that changes what the supernode says (a registration, heartbeat, leave or
    /// manual sweep) must be signed when there is a cluster key: checked here, before its body
    /// is read; the body is checked against the signature in `handle`.
    fn check_head(&self, request: &Request<'_>, routed: &Routed) -> Result<(), ApiError> {
        let Some(route) = routed.supernode() else {
            return Ok(());
        };
        if let Some(keys) = &self.keys
            && route.signed()
        {
            auth::check_head(
                keys,
                &self.nonces,
                method_name(request),
                &target_of(request),
                request.header(auth::AUTH_HEADER),
            )
            .map_err(|e| self.refused(&who(request), e))
            .inspect_err(|e| self.count_registration(route, Some(e.status())))?;
        }
        Ok(())
    }

    fn handle(&self, request: &Request<'_>, routed: &Routed) -> Result<Reply, ApiError> {
        let route = routed.route.clone()?;
        let Route::Supernode(route) = route else {
            return self.shared(request, route);
        };
        let answer = (|| {
            if self.keys.is_some() && route.signed() {
                // The head's signature was checked; it covers this hash of the body.
                let hash = request
                    .header(auth::AUTH_HEADER)
                    .and_then(auth::body_hash_of)
                    .ok_or_else(|| ApiError::Unauthorized("no signature".into()))?;
                auth::check_body(&hash, request.body)
                    .map_err(|e| self.refused(&who(request), e))?;
            }
            self.dispatch(request, route)
        })();
        let status = match &answer {
            Ok(_) => None,
            Err(e) => Some(e.status()),
        };
        self.count_registration(route, status);
        answer
    }

    /// A search's time goes to the local or the remote histogram, as its reply said.
    fn answered(&self, _routed: &Routed, searched: Option<Searched>, took: Duration) {
        if let Some(searched) = searched {
            self.supernode_metrics
                .search_took(searched == Searched::Group, took);
        }
    }
}

impl SupernodeService {
    /// The service of `config`, on `index`, asking `group`, sweeping with `liveness`.
    pub fn new(
        config: &SupernodeConfig,
        (index, group, liveness): (Arc<RwLock<Index>>, Arc<dyn Group>, Arc<Liveness>),
        (metrics, supernode_metrics): (Arc<Metrics>, Arc<SupernodeMetrics>),
    ) -> SupernodeService {
        SupernodeService {
            index,
            group,
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
            metrics,
            supernode_metrics,
            started: Instant::now(),
            group_location: config.group.to_string(),
            fan_out: FanOut::new(config.group_size == 1),
            metalinks: Metalinks::new(),
        }
    }

    /// The routes of both roles: the metrics and the page.
    fn shared(&self, request: &Request, route: Route) -> Result<Reply, ApiError> {
        match route {
            Route::Metrics => Ok(self.metrics_page()),
            Route::Page => Ok(crate::page::reply(request.path, Role::Supernode)),
            Route::Supernode(_) | Route::Node(_) => Err(ApiError::WrongRole),
        }
    }

    fn dispatch(&self, request: &Request, route: SupernodeRoute) -> Result<Reply, ApiError> {
        use SupernodeRoute as S;
        match route {
            S::Register => self.register(request),
            S::Search(id) => self.search(id),
            S::SearchAll(id) => self.every_holder(request, id),
            S::Metalink(id) => self.metalink(request, id),
            S::SearchMany => self.search_many(request),
            S::SearchNames => self.search_names(request),
            S::Nodes => Ok(Reply::data(200, entity::NODE, &self.read_index().nodes())),
            S::Heartbeat => self.heartbeat(request),
            S::Leave => self.leave(request),
            S::Sweep => {
                if self.liveness.sweep_now(SWEEP_WAIT) {
                    Ok(Reply::no_content())
                } else {
                    Err(ApiError::Unavailable(
                        "the liveness sweep is still running; ask again later".into(),
                    ))
                }
            }
            S::Status => Ok(Reply::data(200, entity::STATUS, &self.status())),
            S::Digest => self.digest(request),
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_registration(&self, route: SupernodeRoute, status: Option<u16>) {
        if let Some(kind) = route.registration() {
            self.supernode_metrics.registration(kind, status);
        }
    }
}

/// `POST /api/supernode/register from 10.0.0.7:41234`, for a log line.
fn who(request: &Request<'_>) -> String {
    let from = request.peer.map_or("here".into(), |peer| peer.to_string());
    format!("{} {} from {from}", method_name(request), request.path)
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

/// Joins the group, starts the liveness sweep and the API.
pub fn start(config: SupernodeConfig) -> Result<Instance, Error> {
    let shutdown = Shutdown::new();
    // Searches and sweeps in flight when the stop comes still need these two.
    let background = Shutdown::new();
    let index = Arc::new(RwLock::new(Index::new()));
    let metrics = Arc::new(Metrics::new());
    let supernode_metrics = Arc::new(SupernodeMetrics::new(&metrics));
    let (multicast, multicast_thread) = Multicast::start(
        &config,
        index.clone(),
        background.clone(),
        supernode_metrics.clone(),
    )?;
    let liveness = Arc::new(Liveness::new(
        &config,
        index.clone(),
        background.clone(),
        supernode_metrics.clone(),
    ));
    let liveness_thread = liveness.clone().spawn()?;
    let service = SupernodeService::new(
        &config,
        (index, Arc::new(multicast.clone()), liveness),
        (metrics.clone(), supernode_metrics.clone()),
    );
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
    let summary =
        crate::logging::spawn_summary(supernode_metrics, config.log_summary, shutdown.clone())?;
    Ok(Instance::new(
        http,
        shutdown,
        background,
        vec![multicast_thread, liveness_thread, summary],
    ))
}

//! Registrations, heartbeats and leaves: who may speak for a location (its own address only,
//! with `SOURCE_CHECK`), and how much the index takes (per node, per source host, in all). A
//! refusal is checked under the index's write lock before anything changes, so it costs
//! nothing indexed.

use std::net::{IpAddr, SocketAddr};
use std::sync::PoisonError;

use crate::api::{self, NodeLocation, Registration};
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::index::Index;
use crate::logging::Throttle;

use super::SupernodeService;

/// The rules a registration, heartbeat or leave must meet.
pub(super) struct Admission {
    pub(super) source_check: bool,
    pub(super) max_node_resources: usize,
    pub(super) max_index: usize,
    pub(super) max_nodes: usize,
    pub(super) max_nodes_per_host: usize,
    pub(super) max_host_resources: usize,
    pub(super) refusals: Throttle,
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

/// A location from a request, strictly `ip:port` ([`crate::location::parse`]); never resolved.
fn parse_location(text: &str) -> Result<SocketAddr, ApiError> {
    crate::location::parse(text).map_err(ApiError::BadRequest)
}

/// A registration as the supernode accepts it: the JSON well formed, the location an
/// `ip:port` in its one spelling, the name defaulting to the location.
pub struct Accepted<'a> {
    pub name: String,
    pub location: SocketAddr,
    pub resources: Vec<api::Held<'a>>,
}

/// Reads a `POST /api/supernode/register` body: a 400 that says what is wrong, or the
/// registration.
pub fn parse_registration(body: &[u8]) -> Result<Accepted<'_>, ApiError> {
    let Registration {
        name,
        location,
        resources,
    } = api::body_of(body)?;
    let location = parse_location(&location)?;
    let name = name
        .filter(|n| !n.is_empty())
        .map_or_else(|| location.to_string(), |n| n.into_owned());
    Ok(Accepted {
        name,
        location,
        resources,
    })
}

impl SupernodeService {
    /// `POST /api/supernode/register`.
    pub(super) fn register(&self, request: &Request) -> Result<Reply, ApiError> {
        let Accepted {
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
            self.group.index_grew();
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

    /// `POST /api/supernode/alive`: 204 for a registered node, 404 for another (it then
    /// registers again).
    pub(super) fn heartbeat(&self, request: &Request) -> Result<Reply, ApiError> {
        let location = self.speaking_for(request)?;
        if self.read_index().is_registered(&location.to_string()) {
            Ok(Reply::no_content())
        } else {
            Err(ApiError::NotFound(format!(
                "node {location} is not registered here; register again"
            )))
        }
    }

    /// `POST /api/supernode/leave`: the node's resources leave the index at once.
    pub(super) fn leave(&self, request: &Request) -> Result<Reply, ApiError> {
        let location = self.speaking_for(request)?;
        let removed = self
            .index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_node(&location.to_string());
        match removed {
            Some(held) => {
                self.supernode_metrics.removed("leave");
                log::info!("node {location} left ({held} resources)");
                Ok(Reply::no_content())
            }
            None => Err(ApiError::NotFound(format!(
                "node {location} is not registered here"
            ))),
        }
    }

    /// The location a heartbeat or leave speaks for, when its sender may.
    fn speaking_for(&self, request: &Request) -> Result<SocketAddr, ApiError> {
        let body: NodeLocation = api::body_of(request.body)?;
        let location = parse_location(&body.location)?;
        self.check_source(request, location)?;
        Ok(location)
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
    pub(super) fn refused(&self, location: &str, error: ApiError) -> ApiError {
        if let Some(count) = self.admission.refusals.hit() {
            log::warn!(
                "refused {}: {} ({count} refusal(s) since the last report)",
                location.escape_debug(),
                error.description()
            );
        }
        error
    }
}

//! What the supernode says of itself: the status its page reads, the metrics, and its index's
//! summary for the other supernodes.

use serde::Serialize;

use crate::error::ApiError;
use crate::http::{Reply, Request};

use super::SupernodeService;

/// `GET /api/supernode/status`: the supernode's page reads it every few seconds.
#[derive(Serialize)]
pub(super) struct Status {
    role: &'static str,
    group: String,
    keyed: bool,
    up_seconds: u64,
    peers: Vec<PeerStatus>,
    /// The other supernodes' index summaries held here.
    summaries: Vec<SummaryStatus>,
    index: IndexSizes,
    nodes: Vec<crate::index::RegisteredNode>,
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

impl SupernodeService {
    /// `GET /api/supernode/status`: what the page shows.
    pub(super) fn status(&self) -> Status {
        let (nodes, resources, (locations, _)) = {
            let index = self.read_index();
            (
                index.registered_nodes(),
                index.resource_count(),
                index.size(),
            )
        };
        let peers = self
            .group
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
            .group
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
            self.supernode_metrics.search_counts();
        Status {
            role: "supernode",
            group: self.group_location.clone(),
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
    pub(super) fn metrics_page(&self) -> Reply {
        let metrics = &self.supernode_metrics;
        let (resources, (locations, nodes)) = {
            let index = self.read_index();
            (index.resource_count(), index.size())
        };
        metrics.index_resources.set(resources as i64);
        metrics.index_locations.set(locations as i64);
        metrics.index_nodes.set(nodes as i64);
        metrics.peers.set(self.group.peers().len() as i64);
        Reply::typed(self.metrics.render(), crate::metrics::CONTENT_TYPE)
    }

    /// `GET /api/supernode/digest[?epoch=<hex>&since=<version>]`: the index's summary, whole, or
    /// only what was added since `version` of `epoch` when that is still known.
    pub(super) fn digest(&self, request: &Request) -> Result<Reply, ApiError> {
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
}

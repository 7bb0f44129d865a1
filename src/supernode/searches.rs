//! The searches: by id (the index first, then the group), by list of ids, by name, and for
//! every holder; and what one client may ask of the other supernodes each second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::{FileInfo, Located, NameQuery, Searched, entity, parse_id_list};
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::id::ResourceId;
use crate::metrics::SearchOutcome;
use crate::multicast::Outcome;
use crate::pieces::PieceList;
use crate::rate::Buckets;

use super::SupernodeService;

/// What one client (a source host) may ask of the other supernodes each second: the searches
/// that ask every one of them (by name, every holder) and the ids a list asks remotely. A
/// search for one id is not limited: it costs the group one query, as the seed's did. A
/// supernode alone in its group (`MULTICAST_GROUP_SIZE=1`) asks nobody and limits nothing.
pub(super) struct FanOut {
    alone: bool,
    buckets: Mutex<Buckets<(IpAddr, Fan)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Fan {
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
    pub(super) fn new(alone: bool) -> FanOut {
        FanOut {
            alone,
            buckets: Mutex::new(Buckets::new(4096)),
        }
    }

    /// Takes `cost` of `fan` from `request`'s client, or says to retry later.
    pub(super) fn charge(&self, request: &Request, fan: Fan, cost: usize) -> Result<(), ApiError> {
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

/// The piece lists a supernode fetches for its Metalink documents: from the nodes registered
/// with it, a few at once (each costs a node a read of the file the first time), each within
/// a deadline.
pub(super) struct Metalinks {
    agent: ureq::Agent,
    running: AtomicUsize,
}

/// Piece-list fetches at once.
const METALINK_FETCHES: usize = 4;
/// The largest piece list fetched: a file of 240 GB in pieces of 1 MiB.
const PIECE_LIST_LIMIT: u64 = 16 << 20;

impl Metalinks {
    pub(super) fn new() -> Metalinks {
        Metalinks {
            agent: crate::client::agent(Duration::from_secs(10)),
            running: AtomicUsize::new(0),
        }
    }

    /// The piece list of `id` from the first of `registered` (at most 3 asked) that gives one.
    fn piece_list(&self, id: ResourceId, registered: &[String]) -> Result<PieceList, ApiError> {
        if self.running.fetch_add(1, Ordering::AcqRel) >= METALINK_FETCHES {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Unavailable(format!(
                "{METALINK_FETCHES} Metalink documents are being made; retry in a moment"
            )));
        }
        let mut why = Vec::new();
        let list = registered.iter().take(3).find_map(|holder| {
            crate::pieces::fetch(&self.agent, holder, id, PIECE_LIST_LIMIT)
                .map_err(|e| why.push(e))
                .ok()
        });
        self.running.fetch_sub(1, Ordering::AcqRel);
        list.ok_or_else(|| {
            ApiError::Unavailable(format!(
                "no node registered here gave the piece list of {id}: {}",
                why.join("; ")
            ))
        })
    }
}

impl SupernodeService {
    /// `GET /api/supernode/search/<id>`.
    pub(super) fn search(&self, id: ResourceId) -> Result<Reply, ApiError> {
        {
            // The common case, answered from the index without copying anything.
            let index = self.read_index();
            if let Some(file) = index.view(&id) {
                let reply = Reply::data(200, entity::LOCATION, &Located { id, file });
                drop(index);
                self.supernode_metrics.searched(SearchOutcome::LocalHit);
                return Ok(reply.searched(Searched::Index));
            }
        }
        let (mut found, searched) = self.locate(&[id], |_| Ok(()))?;
        // A 404 is a search's answer too: timed like a 200, so built here.
        let reply = match found.pop().flatten() {
            Some(file) => Reply::data(200, entity::LOCATION, &Located { id, file }),
            None => Reply::error(&ApiError::NotFound(format!("resource {id} not found"))),
        };
        Ok(reply.searched(searched))
    }

    /// `GET /api/supernode/search?hash_ids=...`: the ids found, here or by the group.
    pub(super) fn search_many(&self, request: &Request) -> Result<Reply, ApiError> {
        let ids = parse_id_list(request, self.max_ids)?;
        let (located, searched) = self.locate(&ids, |remote| match ids.len() {
            1 => Ok(()),
            _ => self.fan_out.charge(request, Fan::ListedIds, remote),
        })?;
        let found: Vec<Located> = ids
            .iter()
            .zip(located)
            .filter_map(|(&id, file)| Some(Located { id, file: file? }))
            .collect();
        Ok(Reply::data(200, entity::LOCATION, &found).searched(searched))
    }

    /// `GET /api/supernode/search/<id>?all=true`: the own holders and every other
    /// supernode's, once each other peer answered (or the time-out).
    pub(super) fn every_holder(
        &self,
        request: &Request,
        id: ResourceId,
    ) -> Result<Reply, ApiError> {
        let file = self.holders_of(request, id)?;
        Ok(Reply::data(200, entity::LOCATION, &Located { id, file }))
    }

    /// `GET /api/supernode/search/<id>/metalink`: a Metalink document of every holder, with
    /// the piece list of a node registered here. The supernode fetches only from the
    /// locations registrations proved; when only other supernodes' nodes hold the file, the
    /// answer is a 302 to one of their own documents, as a search's answer would send a
    /// client there.
    pub(super) fn metalink(&self, request: &Request, id: ResourceId) -> Result<Reply, ApiError> {
        let every = self.holders_of(request, id)?;
        let registered = self.read_index().lookup(&id).map(|f| f.locations);
        let Some(registered) = registered else {
            let url = format!("http://{}/api/node/resources/{id}/metalink", every.location);
            crate::wire::check_location(&every.location).map_err(|e| {
                ApiError::Unavailable(format!("the group's answer for {id} is unusable: {e}"))
            })?;
            return Ok(
                Reply::data(302, entity::LOCATION, &Located { id, file: every }).with_location(url),
            );
        };
        let list = self.metalinks.piece_list(id, &registered)?;
        let document = crate::metalink::document(&list, every.name.as_deref(), &every.locations);
        Ok(Reply::typed(
            document.into_bytes(),
            crate::metalink::CONTENT_TYPE,
        ))
    }

    /// Every holder of `id`: the index's, then the group's (one charge of the client's
    /// fan-out); a 404 when nobody has it.
    fn holders_of(&self, request: &Request, id: ResourceId) -> Result<FileInfo, ApiError> {
        self.fan_out.charge(request, Fan::Everyone, 1)?;
        let local = self.read_index().lookup(&id);
        let mut file = local.unwrap_or(FileInfo {
            name: None,
            location: String::new(),
            locations: Vec::new(),
        });
        for location in self.group.search_all(id) {
            if !file.locations.contains(&location) {
                file.locations.push(location);
            }
        }
        match file.locations.first() {
            Some(first) => {
                file.location = first.clone();
                Ok(file)
            }
            None => Err(ApiError::NotFound(format!("resource {id} not found"))),
        }
    }

    /// `GET /api/supernode/search?file_name=<text>[&node_name=<n>][&limit=<k>]`: the own
    /// index's matches and the group's, merged by id with every location.
    pub(super) fn search_names(&self, request: &Request) -> Result<Reply, ApiError> {
        let query = NameQuery::from_request(request)?;
        self.fan_out.charge(request, Fan::Everyone, 1)?;
        let node = query.node.as_deref();
        let local = self.read_index().find_names(&query.text, node, query.limit);
        let remote = self
            .group
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
        Ok(Reply::data(200, entity::LOCATION, &found))
    }

    /// Looks every id up in the index, then asks the group for the others, all at once, once
    /// `charge` allowed that many; and whether the group was asked.
    fn locate(
        &self,
        ids: &[ResourceId],
        charge: impl FnOnce(usize) -> Result<(), ApiError>,
    ) -> Result<(Vec<Option<FileInfo>>, Searched), ApiError> {
        let metrics = &self.supernode_metrics;
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
        if missing.is_empty() {
            return Ok((found, Searched::Index));
        }
        charge(missing.len())?;
        let started = Instant::now();
        let outcomes = self.group.search_many(&missing);
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
        Ok((found, Searched::Group))
    }
}

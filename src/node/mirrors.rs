//! Every holder of the files this node serves, as the supernode last named them: for the
//! `Link: <url>; rel=duplicate` header of its downloads (RFC 6249), so any client can find
//! mirrors of what it downloads, and for the Metalink documents and `?all=true` answers.
//!
//! A download never waits for them: the first download of a file asks the supernode for every
//! holder on a thread of its own and goes out without the header; the downloads after it,
//! for a minute, carry what came back. A Metalink document waits (it is a list of holders),
//! and what it got serves the downloads too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};

use super::Supernodes;
use crate::id::ResourceId;

/// How long the holders of a file are used before they are asked again.
const FRESH: Duration = Duration::from_secs(60);
/// Files whose holders are kept; past it the list starts again.
const MAX_FILES: usize = 4096;
/// Holders named in one header.
const MAX_LINKS: usize = 8;
/// Files waiting to be looked up; a download past it goes without asking.
const MAX_WAITING: usize = 64;

/// What is known of each file's holders: when they were asked for, and what came (`None`
/// while the first question is on its way).
type Known = HashMap<ResourceId, (Instant, Option<Arc<[String]>>)>;

pub struct Mirrors {
    known: Arc<Mutex<Known>>,
    asks: Sender<ResourceId>,
    supernodes: Arc<dyn Supernodes>,
}

impl Mirrors {
    /// Looks holders up through `supernodes`, on a thread that ends with this.
    pub fn start(supernodes: Arc<dyn Supernodes>) -> Mirrors {
        let known: Arc<Mutex<Known>> = Arc::default();
        let (asks, questions) = bounded::<ResourceId>(MAX_WAITING);
        let (filled, asking) = (known.clone(), supernodes.clone());
        let started = thread::Builder::new()
            .name("mirrors".into())
            .spawn(move || {
                for id in questions {
                    let holders = ask(asking.as_ref(), id);
                    lock(&filled).insert(id, (Instant::now(), Some(holders)));
                }
            });
        if let Err(e) = started {
            log::warn!("no Link headers on downloads: cannot start their thread: {e}");
        }
        Mirrors {
            known,
            asks,
            supernodes,
        }
    }

    /// Every holder of `id`: as named within the last minute, else asked now (and kept).
    pub fn every_holder(&self, id: ResourceId) -> Arc<[String]> {
        let now = Instant::now();
        if let Some((asked, Some(holders))) = lock(&self.known).get(&id)
            && now.duration_since(*asked) < FRESH
        {
            return holders.clone();
        }
        let holders = ask(self.supernodes.as_ref(), id);
        let mut known = lock(&self.known);
        if known.len() >= MAX_FILES {
            known.clear();
        }
        known.insert(id, (now, Some(holders.clone())));
        holders
    }

    /// The `Link` header for a download of `id` from `me`: the other holders known, or `None`
    /// (then asked for, once a minute at most).
    pub fn link(&self, id: ResourceId, me: Option<&str>) -> Option<String> {
        let now = Instant::now();
        let holders = {
            let mut known = lock(&self.known);
            let entry = known.get(&id).cloned();
            if entry
                .as_ref()
                .is_none_or(|(asked, _)| now.duration_since(*asked) >= FRESH)
            {
                if known.len() >= MAX_FILES {
                    known.clear();
                }
                let so_far = entry.as_ref().and_then(|e| e.1.clone());
                // Asked now: no second question until this one is a minute old.
                known.insert(id, (now, so_far));
                let _ = self.asks.try_send(id);
            }
            entry?.1?
        };
        let links: Vec<String> = holders
            .iter()
            .filter(|holder| Some(holder.as_str()) != me)
            .filter(|holder| crate::wire::check_location(holder).is_ok())
            .take(MAX_LINKS)
            .map(|holder| {
                format!("<http://{holder}/api/node/resources/{id}/content>; rel=duplicate")
            })
            .collect();
        (!links.is_empty()).then(|| links.join(", "))
    }
}

/// Every holder of `id` the supernode names; none when it cannot say.
fn ask(supernodes: &dyn Supernodes, id: ResourceId) -> Arc<[String]> {
    match supernodes.search_all(id) {
        Ok(Some(found)) => found.every_location().locations.into(),
        _ => Arc::default(),
    }
}

fn lock(known: &Mutex<Known>) -> std::sync::MutexGuard<'_, Known> {
    known.lock().unwrap_or_else(PoisonError::into_inner)
}

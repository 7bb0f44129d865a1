//! Untagged `21`s, the seed's answers: one names a holder but not the id it answers, so while
//! several of our searches wait (or one waits and the `21` may be a late answer to a search
//! that already ended, or to another supernode's query) it belongs to nobody for certain.
//! Instead of dropping it, the holder is asked what it holds, and every waiting search for one
//! of those ids gets the holder as its answer. The holder's listing (`GET /api/node/resources`)
//! is asked rather than `GET /api/node/resources/<id>` for each waiting id: one request, and
//! it starts no search of its own for the ids the holder lacks.
//!
//! Bounded like every input path: one check per holder at a time (answers naming it meanwhile
//! ask for one more round), [`MAX_RUNNING`] holders at once, a time-out per request, a cap on
//! the listing's size, and a supernode on loopback asks only loopback holders, so a datagram
//! cannot send it to an address off the machine.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

use crate::id::ResourceId;

/// Holders checked at once; an untagged answer beyond them is dropped, as before checks.
pub(super) const MAX_RUNNING: usize = 8;
/// The largest listing read (about 160,000 resources).
const MAX_LISTING: u64 = 16 << 20;

/// The holders being checked, each with whether another answer named it since its check began.
#[derive(Default)]
pub(super) struct Checks {
    running: HashMap<SocketAddr, bool>,
}

/// What to do with an untagged answer naming a holder.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Start a check of the holder.
    Start,
    /// A check of it is running and will look again when it ends.
    Joined,
    /// Too many checks running: the answer is dropped.
    Busy,
}

impl Checks {
    pub(super) fn named(&mut self, holder: SocketAddr) -> Next {
        if let Some(again) = self.running.get_mut(&holder) {
            *again = true;
            return Next::Joined;
        }
        if self.running.len() >= MAX_RUNNING {
            return Next::Busy;
        }
        self.running.insert(holder, false);
        Next::Start
    }

    /// A check of `holder` ended: true when it should run once more.
    pub(super) fn ended(&mut self, holder: SocketAddr) -> bool {
        match self.running.get_mut(&holder) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                self.running.remove(&holder);
                false
            }
        }
    }
}

/// The holder an untagged answer names, when a supernode on `interface` may ask it.
pub(super) fn holder(location: &str, interface: Ipv4Addr) -> Option<SocketAddr> {
    let addr: SocketAddr = location.parse().ok()?;
    let allowed = super::reachable(interface, addr.ip());
    (allowed && addr.port() != 0 && !addr.ip().is_unspecified()).then_some(addr)
}

#[derive(Deserialize)]
struct Listing {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
}

/// The ids `holder` says it holds.
pub(super) fn held(agent: &ureq::Agent, holder: SocketAddr) -> Result<HashSet<ResourceId>, String> {
    let mut response = agent
        .get(&format!("http://{holder}/api/node/resources"))
        .call()
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_LISTING)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    let listing: Listing = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(listing
        .data
        .iter()
        .filter_map(|entry| ResourceId::parse(&entry.id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_check_per_holder_and_a_cap_on_all() {
        let mut checks = Checks::default();
        let a: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        assert_eq!(checks.named(a), Next::Start);
        assert_eq!(checks.named(a), Next::Joined);
        assert!(checks.ended(a), "named again while running: one more round");
        assert!(!checks.ended(a));
        assert_eq!(
            checks.named(a),
            Next::Start,
            "ended: a new answer starts again"
        );
        for port in 1..MAX_RUNNING as u16 {
            assert_eq!(
                checks.named(SocketAddr::from(([127, 0, 0, 1], port))),
                Next::Start
            );
        }
        assert_eq!(checks.named("127.0.0.2:1".parse().unwrap()), Next::Busy);
    }

    #[test]
    fn a_supernode_on_loopback_asks_only_loopback_holders() {
        let lo = Ipv4Addr::LOCALHOST;
        let lan = Ipv4Addr::new(192, 168, 35, 10);
        assert!(holder("127.0.0.1:8001", lo).is_some());
        assert!(holder("10.0.0.1:8001", lo).is_none());
        assert!(holder("10.0.0.1:8001", lan).is_some());
        for junk in [
            "",
            "host:80",
            "127.0.0.1:0",
            "0.0.0.0:80",
            "127.0.0.1",
            "[::1]:x",
        ] {
            assert!(holder(junk, lan).is_none(), "{junk}");
        }
    }
}

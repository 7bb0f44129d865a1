//! The other supernodes' index summaries ([`crate::digest`]), as this supernode holds them.
//!
//! A peer announces its summary's `(epoch, version)` on the group (and to `PEERS`) when its
//! index grows, and with every ping. A summary is *fresh* while the version held is the last
//! one announced; a peer whose summary is not fresh (never fetched, behind, a fetch that
//! failed, the seed's supernodes which have none) is asked as if there were no summaries.
//! Fetches run on threads of their own, one per peer at a time and [`MAX_FETCHING`] at once;
//! an announcement that comes during a fetch asks for one more when it ends, and one that
//! finds every fetch slot taken is fetched when a slot frees (not at its next announcement).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::digest::PeerDigest;
use crate::id::ResourceId;

/// Summaries fetched at once.
pub(super) const MAX_FETCHING: usize = 4;
/// The largest summary fetched: a filter of 2^29 bits (50 million ids at 10 bits each).
pub(super) const MAX_SUMMARY: u64 = (1 << 26) + 64;

#[derive(Default)]
struct Summary {
    /// Where its API is (from the announcement).
    http: Option<SocketAddr>,
    announced: (u64, u64),
    held: Option<PeerDigest>,
    fetching: bool,
}

impl Summary {
    fn is_fresh(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| (h.epoch, h.version) == self.announced)
    }
}

/// What this supernode holds of one peer's summary.
pub struct SummaryHeld {
    /// The name it sends under.
    pub peer: String,
    /// `(epoch, version)` of the summary held, if any.
    pub held: Option<(u64, u64)>,
    /// Whether that is the last version announced (only then is it used).
    pub fresh: bool,
}

/// A fetch to start: the peer's name, the URL of what it lacks, and what is held of its
/// summary, taken out for the time of the fetch so that the summary is fetched and applied
/// outside the lock every search takes (a summary of a million ids is 1.3 MB).
pub(super) struct Fetch {
    pub peer: String,
    pub url: String,
    pub held: Option<PeerDigest>,
}

#[derive(Default)]
pub(super) struct Summaries {
    peers: HashMap<String, Summary>,
    fetching: usize,
}

impl Summaries {
    /// Whether `peer`'s summary may hold `id`: `None` when there is no fresh summary of it.
    pub(super) fn may_hold(&self, peer: &str, id: &ResourceId) -> Option<bool> {
        let summary = self.peers.get(peer).filter(|s| s.is_fresh())?;
        Some(summary.held.as_ref()?.bloom.may_contain(id))
    }

    /// `peer` announced `(epoch, version)` at `http`: the fetch to start, if one is due.
    pub(super) fn announced(
        &mut self,
        peer: &str,
        http: SocketAddr,
        announced: (u64, u64),
        max_peers: usize,
    ) -> Option<Fetch> {
        if !self.peers.contains_key(peer) && self.peers.len() >= max_peers {
            return None;
        }
        let summary = self.peers.entry(peer.to_string()).or_default();
        summary.http = Some(http);
        summary.announced = announced;
        self.next_fetch(peer)
    }

    /// The fetch `peer` needs now, if any and if there is room for it.
    fn next_fetch(&mut self, peer: &str) -> Option<Fetch> {
        let summary = self.peers.get_mut(peer)?;
        if summary.fetching || summary.is_fresh() || self.fetching >= MAX_FETCHING {
            return None;
        }
        let http = summary.http?;
        let url = match &summary.held {
            Some(held)
                if held.epoch == summary.announced.0 && held.version < summary.announced.1 =>
            {
                format!(
                    "http://{http}/api/supernode/digest?epoch={:x}&since={}",
                    held.epoch, held.version
                )
            }
            _ => format!("http://{http}/api/supernode/digest"),
        };
        summary.fetching = true;
        self.fetching += 1;
        Some(Fetch {
            peer: peer.to_string(),
            url,
            held: summary.held.take(),
        })
    }

    /// A fetch for `peer` ended with its summary (applied) or an error: keeps the summary, and
    /// returns the fetches now due: this peer's next (its announcements moved on meanwhile),
    /// then those of peers that found no free slot, as many as there are slots. After an
    /// error nothing is held of that peer: its next announcement fetches the whole summary.
    pub(super) fn fetched(
        &mut self,
        peer: &str,
        applied: Result<PeerDigest, String>,
    ) -> Vec<Fetch> {
        self.fetching = self.fetching.saturating_sub(1);
        let mut due = Vec::new();
        if let Some(summary) = self.peers.get_mut(peer) {
            summary.fetching = false;
            match applied {
                Ok(held) => {
                    summary.held = Some(held);
                    due.extend(self.next_fetch(peer));
                }
                // Not fetched again until it announces again: a peer whose summary is broken
                // must not keep a slot busy.
                Err(e) => log::debug!(
                    "summaries: the summary of {} is not usable: {e}",
                    peer.escape_debug()
                ),
            }
        }
        let waiting: Vec<String> = self
            .peers
            .iter()
            .filter(|(name, s)| *name != peer && !s.fetching && !s.is_fresh() && s.http.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in waiting {
            if self.fetching >= MAX_FETCHING {
                break;
            }
            due.extend(self.next_fetch(&name));
        }
        due
    }

    /// A fetch for `peer` could not start: its slot is free again.
    pub(super) fn abandon(&mut self, peer: &str) {
        if let Some(summary) = self.peers.get_mut(peer).filter(|s| s.fetching) {
            summary.fetching = false;
            self.fetching = self.fetching.saturating_sub(1);
        }
    }

    /// Forgets the peers not heard from lately (`live` says who is).
    pub(super) fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.peers
            .retain(|peer, summary| summary.fetching || live(peer));
    }

    /// What is held of each peer's summary, for the status page.
    pub(super) fn held(&self) -> Vec<SummaryHeld> {
        self.peers
            .iter()
            .map(|(peer, s)| SummaryHeld {
                peer: peer.clone(),
                held: s.held.as_ref().map(|h| (h.epoch, h.version)),
                fresh: s.is_fresh(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn a_peer_that_found_no_free_slot_is_fetched_when_one_frees() {
        let mut summaries = Summaries::default();
        let http: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let digest = Digest::default();
        let (own, epoch) = (digest.encode_for(None), digest.epoch());
        let started: Vec<Fetch> = (0..MAX_FETCHING + 2)
            .filter_map(|n| summaries.announced(&format!("p{n}"), http, (epoch, 0), 100))
            .collect();
        assert_eq!(started.len(), MAX_FETCHING, "two wait for a slot");
        let first = &started[0].peer;
        let due = summaries.fetched(first, crate::digest::apply(None, &own));
        assert_eq!(due.len(), 1, "one slot freed: one waiting peer goes");
        assert!(due[0].peer != *first);
        assert_eq!(
            summaries.may_hold(first, &crate::id::ResourceId([7; 32])),
            Some(false),
            "fresh, and empty"
        );
        // A fetch that could not start gives its slot back.
        summaries.abandon(&due[0].peer);
        let due = summaries.fetched(&started[1].peer, Err("refused".into()));
        assert_eq!(due.len(), 2, "two slots free, two peers waiting");
    }
}

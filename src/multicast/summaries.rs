//! The other supernodes' index summaries ([`crate::digest`]), as this supernode holds them.
//!
//! A peer announces its summary's `(epoch, version)` on the group (and to `PEERS`) when its
//! index grows, and with every ping. A summary is *fresh* while the version held is the last
//! one announced; a peer whose summary is not fresh (never fetched, behind, a fetch that
//! failed, the seed's supernodes which have none) is asked as if there were no summaries.
//! Fetches run on threads of their own, one per peer at a time and [`MAX_FETCHING`] at once;
//! an announcement that comes during a fetch asks for one more when it ends, and one that
//! finds every fetch slot taken is fetched when a slot frees (not at its next announcement).
//!
//! Bounded like every input path: a peer whose fetch failed is not fetched again before its
//! back-off (1 s, doubling to [`MAX_BACKOFF`]); the summaries held and being fetched share one
//! memory budget (sized from the group and `MAX_INDEX_RESOURCES`), and a peer whose summary
//! does not fit is asked as if there were no summaries. Which announcements may start a fetch
//! at all (a proven peer, from the address bound to its name) is the caller's decision.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::digest::{Bloom, PeerDigest};
use crate::id::ResourceId;

/// Summaries fetched at once.
pub(super) const MAX_FETCHING: usize = 4;
/// The largest summary fetched: a filter of 2^29 bits (50 million ids at 10 bits each).
const MAX_SUMMARY: u64 = (1 << 26) + 64;
/// The longest a peer whose fetches fail waits before the next one.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A delta holds at most the additions a peer logs, 32 bytes each, and a header.
const MAX_DELTA: u64 = crate::digest::LOG_IDS as u64 * 32 + 64;
/// Peers whose summaries the budget holds when the group's size is unknown.
const UNKNOWN_GROUP_PEERS: u64 = 8;

#[derive(Default)]
struct Summary {
    /// Where its API is (from the announcement).
    http: Option<SocketAddr>,
    announced: (u64, u64),
    held: Option<PeerDigest>,
    fetching: bool,
    /// The peer proved its address (or its seal): only then is its summary fetched.
    proven: bool,
    /// Bytes of the budget set aside for the fetch running.
    reserved: u64,
    /// Fetches failed in a row, and when the next may start.
    failures: u32,
    retry_at: Option<Instant>,
}

impl Summary {
    fn held_bytes(&self) -> u64 {
        self.held.as_ref().map_or(0, |h| h.bloom.bits() / 8)
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

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
    /// The most bytes to read.
    pub limit: u64,
}

pub(super) struct Summaries {
    peers: HashMap<String, Summary>,
    fetching: usize,
    /// Bytes the summaries held and the fetches running may take in all.
    budget: u64,
    /// The largest summary one peer may have: that of an index as large as this one's may be.
    per_peer: u64,
}

impl Summaries {
    /// Summaries for a group of `group_size` supernodes (0: unknown) whose indexes hold at most
    /// `max_index` ids each.
    pub(super) fn new(group_size: usize, max_index: usize) -> Summaries {
        let largest = Bloom::for_ids(max_index.saturating_mul(3) / 2).bits() / 8 + 64;
        let per_peer = largest.min(MAX_SUMMARY);
        let peers = match group_size {
            0 => UNKNOWN_GROUP_PEERS,
            n => n as u64 - 1,
        };
        Summaries {
            peers: HashMap::new(),
            fetching: 0,
            budget: per_peer.saturating_mul(peers.max(1)),
            per_peer,
        }
    }

    /// Whether `peer`'s summary may hold `id`: `None` when there is no fresh summary of it.
    pub(super) fn may_hold(&self, peer: &str, id: &ResourceId) -> Option<bool> {
        let summary = self.peers.get(peer).filter(|s| s.is_fresh())?;
        Some(summary.held.as_ref()?.bloom.may_contain(id))
    }

    /// `peer` announced `(epoch, version)` at `http`: the fetch to start, if one is due and the
    /// peer is `proven` (else the announcement is kept for when it is).
    pub(super) fn announced(
        &mut self,
        peer: &str,
        (http, announced): (SocketAddr, (u64, u64)),
        proven: bool,
        max_peers: usize,
        now: Instant,
    ) -> Option<Fetch> {
        if !self.peers.contains_key(peer) && self.peers.len() >= max_peers {
            return None;
        }
        let summary = self.peers.entry(peer.to_string()).or_default();
        summary.http = Some(http);
        summary.announced = announced;
        summary.proven |= proven;
        self.next_fetch(peer, now)
    }

    /// `peer` proved its address: the fetch of what it announced, if one is due.
    pub(super) fn proven(&mut self, peer: &str, now: Instant) -> Option<Fetch> {
        self.peers.get_mut(peer)?.proven = true;
        self.next_fetch(peer, now)
    }

    /// The fetch `peer` needs now, if any and if there is room for it (a slot, the end of its
    /// back-off, and memory in the budget).
    fn next_fetch(&mut self, peer: &str, now: Instant) -> Option<Fetch> {
        let others: u64 = (self.peers.iter())
            .filter(|(name, _)| *name != peer)
            .map(|(_, s)| s.held_bytes() + s.reserved)
            .sum();
        let room = self.budget.saturating_sub(others);
        let summary = self.peers.get_mut(peer)?;
        if !summary.proven
            || summary.fetching
            || summary.is_fresh()
            || summary.backing_off(now)
            || self.fetching >= MAX_FETCHING
        {
            return None;
        }
        let http = summary.http?;
        let (url, limit) = match &summary.held {
            Some(held)
                if held.epoch == summary.announced.0 && held.version < summary.announced.1 =>
            {
                let url = format!(
                    "http://{http}/api/supernode/digest?epoch={:x}&since={}",
                    held.epoch, held.version
                );
                (url, MAX_DELTA)
            }
            _ => (
                format!("http://{http}/api/supernode/digest"),
                self.per_peer.min(room),
            ),
        };
        if limit < Bloom::for_ids(0).bits() / 8 {
            log::debug!(
                "summaries: no room in the budget for the summary of {}; it is asked as without one",
                peer.escape_debug()
            );
            return None;
        }
        summary.fetching = true;
        summary.reserved = limit;
        self.fetching += 1;
        Some(Fetch {
            peer: peer.to_string(),
            url,
            held: summary.held.take(),
            limit,
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
        now: Instant,
    ) -> Vec<Fetch> {
        self.fetching = self.fetching.saturating_sub(1);
        let mut due = Vec::new();
        if let Some(summary) = self.peers.get_mut(peer) {
            summary.fetching = false;
            summary.reserved = 0;
            match applied {
                Ok(held) => {
                    summary.held = Some(held);
                    summary.failures = 0;
                    summary.retry_at = None;
                    due.extend(self.next_fetch(peer, now));
                }
                // Not fetched again before its back-off, and then only when it announces
                // again: a peer whose summary is broken or whose port is closed must not keep
                // a slot busy, nor be asked again and again.
                Err(e) => {
                    summary.failures = summary.failures.saturating_add(1);
                    let backoff = Duration::from_secs(1 << (summary.failures - 1).min(6));
                    summary.retry_at = Some(now + backoff.min(MAX_BACKOFF));
                    log::debug!(
                        "summaries: the summary of {} is not usable ({} failure(s) in a row): {e}",
                        peer.escape_debug(),
                        summary.failures
                    );
                }
            }
        }
        let waiting: Vec<String> = self
            .peers
            .iter()
            .filter(|(name, s)| {
                *name != peer
                    && s.proven
                    && !s.fetching
                    && !s.is_fresh()
                    && !s.backing_off(now)
                    && s.http.is_some()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in waiting {
            if self.fetching >= MAX_FETCHING {
                break;
            }
            due.extend(self.next_fetch(&name, now));
        }
        due
    }

    /// A fetch for `peer` could not start: its slot is free again.
    pub(super) fn abandon(&mut self, peer: &str) {
        if let Some(summary) = self.peers.get_mut(peer).filter(|s| s.fetching) {
            summary.fetching = false;
            summary.reserved = 0;
            self.fetching = self.fetching.saturating_sub(1);
        }
    }

    /// `peer` left: its summary no longer counts (a fetch running for it ends unheeded).
    pub(super) fn forget(&mut self, peer: &str) {
        self.peers.remove(peer);
    }

    /// Forgets the peers not heard from lately (`live` says who is).
    pub(super) fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.peers
            .retain(|peer, summary| summary.fetching || live(peer));
    }

    /// Where `peer`'s API is, as its last announcement said.
    pub(super) fn api(&self, peer: &str) -> Option<SocketAddr> {
        self.peers.get(peer)?.http
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

    fn http() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn a_peer_that_found_no_free_slot_is_fetched_when_one_frees() {
        let now = Instant::now();
        let mut summaries = Summaries::new(0, 1000);
        let digest = Digest::default();
        let (own, epoch) = (digest.encode_for(None), digest.epoch());
        let started: Vec<Fetch> = (0..MAX_FETCHING + 2)
            .filter_map(|n| {
                summaries.announced(&format!("p{n}"), (http(), (epoch, 0)), true, 100, now)
            })
            .collect();
        assert_eq!(started.len(), MAX_FETCHING, "two wait for a slot");
        let first = &started[0].peer;
        let due = summaries.fetched(first, crate::digest::apply(None, &own), now);
        assert_eq!(due.len(), 1, "one slot freed: one waiting peer goes");
        assert!(due[0].peer != *first);
        assert_eq!(
            summaries.may_hold(first, &crate::id::ResourceId([7; 32])),
            Some(false),
            "fresh, and empty"
        );
        // A fetch that could not start gives its slot back.
        summaries.abandon(&due[0].peer);
        let due = summaries.fetched(&started[1].peer, Err("refused".into()), now);
        assert_eq!(due.len(), 2, "two slots free, two peers waiting");
    }

    #[test]
    fn a_peer_whose_fetch_failed_waits_longer_each_time() {
        let now = Instant::now();
        let mut summaries = Summaries::new(2, 1000);
        let mut at = now;
        for backoff in [1, 2, 4, 8, 16, 32, 60, 60] {
            let fetch = summaries
                .announced("p", (http(), (1, 1)), true, 100, at)
                .expect("due");
            assert!(
                summaries
                    .fetched(&fetch.peer, Err("refused".into()), at)
                    .is_empty()
            );
            let soon = at + Duration::from_secs(backoff) - Duration::from_millis(1);
            assert!(
                summaries
                    .announced("p", (http(), (1, 1)), true, 100, soon)
                    .is_none()
            );
            at += Duration::from_secs(backoff);
        }
        // A success ends the back-off.
        let digest = Digest::default();
        let fetch = summaries
            .announced("p", (http(), (digest.epoch(), 0)), true, 100, at)
            .unwrap();
        let applied = crate::digest::apply(fetch.held, &digest.encode_for(None));
        summaries.fetched("p", applied, at);
        assert!(summaries.held()[0].fresh);
        assert!(
            summaries
                .announced("p", (http(), (digest.epoch(), 1)), true, 100, at)
                .is_some()
        );
    }

    #[test]
    fn an_unproven_peer_is_fetched_once_it_proves_itself() {
        let now = Instant::now();
        let mut summaries = Summaries::new(2, 1000);
        assert!(
            summaries
                .announced("p", (http(), (1, 1)), false, 100, now)
                .is_none()
        );
        let waiting = summaries
            .announced("q", (http(), (1, 1)), true, 100, now)
            .unwrap();
        // A slot that frees does not go to the unproven one either.
        assert!(
            summaries
                .fetched(&waiting.peer, Err("x".into()), now)
                .is_empty()
        );
        assert!(summaries.proven("p", now).is_some());
        assert!(summaries.proven("nobody", now).is_none());
    }

    #[test]
    fn the_summaries_held_share_one_budget() {
        let now = Instant::now();
        // A group of 3 whose indexes hold at most a million ids: two peers' worth.
        let mut summaries = Summaries::new(3, 1_000_000);
        let big = Digest::rebuilt(std::iter::empty(), 1_000_000);
        let whole = big.encode_for(None);
        for peer in ["a", "b"] {
            let fetch = summaries
                .announced(peer, (http(), (big.epoch(), 0)), true, 100, now)
                .unwrap();
            assert!(
                whole.len() as u64 <= fetch.limit,
                "{} > {}",
                whole.len(),
                fetch.limit
            );
            let applied = crate::digest::apply(None, &whole);
            summaries.fetched(peer, applied, now);
        }
        // A third peer (more supernodes than the group said, or made-up ones) gets no room:
        // it is asked as if there were no summaries.
        assert!(
            summaries
                .announced("c", (http(), (big.epoch(), 0)), true, 100, now)
                .is_none()
        );
        assert_eq!(
            summaries.may_hold("c", &crate::id::ResourceId([1; 32])),
            None
        );
        // One that leaves makes room.
        summaries.forget("a");
        assert!(
            summaries
                .announced("c", (http(), (big.epoch(), 0)), true, 100, now)
                .is_some()
        );
    }
}

//! Who a datagram is from, and what answering it may cost.
//!
//! Without a cluster key a datagram's source address and sender name are both forgeable, so a
//! datagram may cost a supernode what it cost the seed, and no more:
//!
//! - **A peer is its name bound to its source address.** The first datagram under a name binds
//!   it; one under that name from another address is dropped while the binding lives (a peer
//!   not heard for [`PEER_TTL`] is forgotten). One host binds at most [`MAX_NAMES_PER_HOST`]
//!   names; made-up names that never proved themselves make room for new ones.
//! - **An address proves it receives** by echoing a cookie sent to it by unicast: the id of a
//!   `20` query made from a secret, the name and the address, which nobody else can guess.
//!   Our kind answers it by unicast, the seed's supernodes on the group; either way only who
//!   receives at that address can say it. A validated peer counts as expected, is asked by
//!   summary, and gets name and holder answers.
//! - **No amplification** (QUIC's rule, RFC 9000 section 8.1): an address that has not proved
//!   itself is sent at most 3 x the bytes received from it.
//! - **Rate limits** per source host and query kind, in token buckets.
//!
//! Under a cluster key every datagram that passed its seal is from whom it says: its sender is
//! validated at once, and a binding follows the peer to a new address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::id::ResourceId;
use crate::rate::Buckets;
use crate::wire::{Body, Message, Sender};

/// How long a peer not heard from stays bound (three pings, and a margin).
pub(super) const PEER_TTL: Duration = Duration::from_secs(16);
/// The most names bound to one host: several supernodes may share a host (a test cluster on
/// 127.0.0.1 has dozens), a host that makes names up gets no more.
pub(super) const MAX_NAMES_PER_HOST: usize = 64;
/// The most peers bound in all.
pub(super) const MAX_PEERS: usize = 1024;
/// The most source addresses whose bytes are counted, and source hosts rate-limited.
const MAX_SOURCES: usize = 4096;
/// A source not heard from for this long is forgotten (what it sent no longer buys answers).
const SOURCE_IDLE: Duration = Duration::from_secs(60);
/// An unvalidated peer is sent a cookie at most this often.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// What an unvalidated address may be sent, as a multiple of what came from it.
const AMPLIFICATION: u64 = 3;
/// What all unvalidated addresses together may be sent, in datagrams: `(per second, burst)`.
/// A new peer proves itself within a round trip; answers beyond this go to made-up or forged
/// addresses, which may not even resolve (each send then waits in the kernel for a neighbour).
const UNPROVEN_SENDS: (f64, f64) = (200.0, 400.0);
/// A peer's strikes: each search it leaves unanswered adds [`MISS`], each it answers takes
/// one away; searches wait for it while it has fewer than [`COUNTED_BELOW`]. One miss (a
/// datagram lost through every retry) is forgiven; two are not, and then it takes four
/// answers to be waited for again, so a peer that answers some searches and not others (to
/// make them wait) costs at most one search in five.
const MISS: u8 = 4;
const MAX_STRIKES: u8 = 2 * MISS;
const COUNTED_BELOW: u8 = MISS + 1;

/// The kinds of datagram that cost an answer or work, each with its own rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// `20` and `25`: a lookup and one answer the size of the query.
    Query,
    /// `23`: a scan of the index's names.
    NameQuery,
    /// `27` and `28`: may start a fetch of a summary.
    Announcement,
    /// An untagged `21`: may start a check of the holder it names.
    LegacyFound,
    /// Answers to our own queries (matched to a search, or dropped): not limited.
    Answer,
}

impl Kind {
    /// The kind of `message`, as its rate is limited.
    pub(super) fn of(message: &Message) -> Kind {
        match (&message.body, &message.sender) {
            (Body::Query(_) | Body::AllQuery(_), _) => Kind::Query,
            (Body::NameQuery { .. }, _) => Kind::NameQuery,
            (Body::Digest { .. } | Body::Leaving, _) => Kind::Announcement,
            (Body::Found(_), Sender::Plain(_)) => Kind::LegacyFound,
            _ => Kind::Answer,
        }
    }

    /// `(per second, burst)` for a source, by whether its address proved itself. A validated
    /// peer's id and holder queries are not limited: each costs a lookup and one answer the
    /// size of the query, to an address that proved it asked.
    fn limit(self, validated: bool) -> Option<(f64, f64)> {
        match (self, validated) {
            (Kind::Query, true) | (Kind::Answer, _) => None,
            (Kind::Query, false) => Some((1000.0, 1000.0)),
            (Kind::NameQuery, _) => Some((50.0, 100.0)),
            (Kind::Announcement, _) => Some((20.0, 100.0)),
            (Kind::LegacyFound, _) => Some((20.0, 40.0)),
        }
    }
}

/// Why a datagram was dropped before it was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Its name is bound to another address.
    Moved,
    /// Its host (or the whole table) has every name it may have, all proven.
    TooManyNames,
    /// Over its source's rate for its kind.
    RateLimited,
}

impl Refused {
    /// The `reason` label of the dropped-datagrams counter.
    pub(super) fn label(self) -> &'static str {
        match self {
            Refused::Moved => "name_bound_elsewhere",
            Refused::TooManyNames => "too_many_names",
            Refused::RateLimited => "rate_limited",
        }
    }
}

/// A peer: a name bound to an address.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    pub(super) heard: Instant,
    /// It echoed a cookie sent to `addr` (or, under a cluster key, its seal passed).
    pub(super) validated: bool,
    probed: Option<Instant>,
    /// It sends untagged datagrams, as the seed's supernodes do.
    legacy: bool,
    /// It answered one of our queries (a ping or a search).
    answered: bool,
    /// See [`MISS`].
    strikes: u8,
}

impl Peer {
    /// Whether searches wait for it.
    fn counted(&self) -> bool {
        self.validated && self.answered && self.strikes < COUNTED_BELOW
    }
}

/// What came from one address and what went to it.
struct Spent {
    received: u64,
    sent: u64,
    validated: bool,
    seen: Instant,
}

/// The peer table, the byte counts and the rate limits.
pub(super) struct Sources {
    keyed: bool,
    cookies: Hmac<Sha256>,
    peers: HashMap<String, Peer>,
    addrs: HashMap<SocketAddr, Spent>,
    buckets: Buckets<(IpAddr, Kind)>,
    unproven_sends: Buckets<()>,
}

/// What to do about a datagram that was let in.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Heard {
    /// Its address proved it receives there.
    pub(super) validated: bool,
    /// A cookie to send to the address (as the id of a `20`), to prove it.
    pub(super) probe: Option<ResourceId>,
}

impl Sources {
    /// `keyed`: every datagram handed in passed a cluster key's seal.
    pub(super) fn new(keyed: bool) -> Sources {
        let secret = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
        let secret: Vec<u8> = secret.iter().flat_map(|u| *u.as_bytes()).collect();
        Sources {
            keyed,
            cookies: Hmac::new_from_slice(&secret).expect("HMAC takes keys of any length"),
            peers: HashMap::new(),
            addrs: HashMap::new(),
            buckets: Buckets::new(MAX_SOURCES),
            unproven_sends: Buckets::new(1),
        }
    }

    /// The cookie for `name` at `addr`: the id a probe asks for.
    pub(super) fn cookie(&self, name: &str, addr: SocketAddr) -> ResourceId {
        let mut mac = self.cookies.clone();
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(addr.to_string().as_bytes());
        ResourceId(mac.finalize().into_bytes().into())
    }

    /// A datagram of `len` bytes and `kind` came from `from` under `name`: counts its bytes,
    /// binds the name, applies the rate limit, and says whether to send a cookie.
    pub(super) fn heard(
        &mut self,
        name: &str,
        from: SocketAddr,
        len: usize,
        kind: Kind,
        now: Instant,
    ) -> Result<Heard, Refused> {
        self.spent(from, now).received += len as u64;
        self.bind(name, from, now)?;
        let validated = self.is_validated(from);
        if let Some(limit) = kind.limit(validated)
            && !self.buckets.take((from.ip(), kind), 1.0, limit, now)
        {
            return Err(Refused::RateLimited);
        }
        let peer = self.peers.get_mut(name).expect("bound just now");
        let probe = (!peer.validated && peer.probed.is_none_or(|at| now - at >= PROBE_INTERVAL))
            .then(|| {
                peer.probed = Some(now);
            })
            .map(|()| self.cookie(name, from));
        Ok(Heard { validated, probe })
    }

    /// Binds `name` to `from`, or refreshes its binding; see the module's header.
    fn bind(&mut self, name: &str, from: SocketAddr, now: Instant) -> Result<(), Refused> {
        if let Some(peer) = self.peers.get_mut(name) {
            let live = now - peer.heard < PEER_TTL;
            if peer.addr != from && live && !self.keyed {
                return Err(Refused::Moved);
            }
            if peer.addr != from {
                peer.addr = from;
                peer.validated = self.keyed;
                peer.answered = self.keyed;
                peer.probed = None;
            }
            peer.heard = now;
            return Ok(());
        }
        let host = from.ip();
        let on_host = self.peers.values().filter(|p| p.addr.ip() == host).count();
        if on_host >= MAX_NAMES_PER_HOST {
            self.evict(|p| p.addr.ip() == host, now)?;
        } else if self.peers.len() >= MAX_PEERS {
            self.evict(|_| true, now)?;
        }
        self.peers.insert(
            name.to_string(),
            Peer {
                addr: from,
                heard: now,
                validated: self.keyed,
                probed: None,
                legacy: false,
                // Under a key nobody can make peers up: each counts at once.
                answered: self.keyed,
                strikes: 0,
            },
        );
        if self.keyed {
            self.spent(from, now).validated = true;
        }
        Ok(())
    }

    /// Makes room among the peers `among` picks: one no longer heard, else the unproven one
    /// heard longest ago.
    fn evict(&mut self, among: impl Fn(&Peer) -> bool, now: Instant) -> Result<(), Refused> {
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| among(p) && (now - p.heard >= PEER_TTL || !p.validated))
            .min_by_key(|(_, p)| (now - p.heard < PEER_TTL, p.heard))
            .map(|(name, _)| name.clone())
            .ok_or(Refused::TooManyNames)?;
        self.peers.remove(&victim);
        Ok(())
    }

    /// A `22` for `id` came from `from` under `name`: when `id` is the cookie sent there, the
    /// peer (and its address) proved itself. Returns whether it was a cookie's answer.
    pub(super) fn validate(
        &mut self,
        name: &str,
        from: SocketAddr,
        id: &ResourceId,
        now: Instant,
    ) -> bool {
        // Only a peer that has not proved itself is sent a cookie: the others' 22s answer
        // searches, and cost no MAC.
        let proven = self.peers.get(name).is_some_and(|p| p.validated);
        if proven || self.cookie(name, from) != *id {
            return false;
        }
        if let Some(peer) = self.peers.get_mut(name).filter(|p| p.addr == from) {
            if !peer.validated {
                log::debug!(
                    "multicast: {} at {from} proved its address",
                    name.escape_debug()
                );
            }
            peer.validated = true;
        }
        self.spent(from, now).validated = true;
        true
    }

    fn is_validated(&self, addr: SocketAddr) -> bool {
        self.keyed || self.addrs.get(&addr).is_some_and(|s| s.validated)
    }

    /// Whether `len` more bytes may go to `to`: always to an address that proved itself,
    /// else while the total stays within 3 x what came from it (counted as sent when so).
    pub(super) fn may_send(&mut self, to: SocketAddr, len: usize, now: Instant) -> bool {
        if self.is_validated(to) {
            return true;
        }
        let spent = self.spent(to, now);
        if spent.sent + len as u64 > AMPLIFICATION * spent.received {
            return false;
        }
        if !self.unproven_sends.take((), 1.0, UNPROVEN_SENDS, now) {
            return false;
        }
        self.spent(to, now).sent += len as u64;
        true
    }

    /// The byte counts of `addr`, made when it is new (room made by forgetting idle sources,
    /// then the least recently seen unproven one).
    fn spent(&mut self, addr: SocketAddr, now: Instant) -> &mut Spent {
        if !self.addrs.contains_key(&addr) && self.addrs.len() >= MAX_SOURCES {
            self.addrs.retain(|_, s| now - s.seen < SOURCE_IDLE);
            if self.addrs.len() >= MAX_SOURCES
                && let Some(oldest) = (self.addrs.iter())
                    .filter(|(_, s)| !s.validated)
                    .min_by_key(|(_, s)| s.seen)
                    .map(|(a, _)| *a)
            {
                self.addrs.remove(&oldest);
            }
        }
        let spent = self.addrs.entry(addr).or_insert(Spent {
            received: 0,
            sent: 0,
            validated: false,
            seen: now,
        });
        spent.seen = now;
        spent
    }

    /// `name`, heard from `from`, says it leaves: forgotten, when it is bound there.
    pub(super) fn left(&mut self, name: &str, from: SocketAddr) -> bool {
        let bound = self.peers.get(name).is_some_and(|p| p.addr == from);
        if bound {
            self.peers.remove(name);
        }
        bound
    }

    /// The peers heard within [`PEER_TTL`], proven or not.
    pub(super) fn heard_lately(&self, now: Instant) -> impl Iterator<Item = (&str, &Peer)> {
        self.peers
            .iter()
            .filter(move |(_, p)| now - p.heard < PEER_TTL)
            .map(|(name, p)| (name.as_str(), p))
    }

    /// The peers searches count on, by name and address: heard within [`PEER_TTL`], proved
    /// their address, answered us (a ping or a search), and not left too many searches
    /// unanswered (see [`MISS`]).
    pub(super) fn live(&self, now: Instant) -> Vec<(&str, SocketAddr)> {
        self.counted(now).map(|(name, p)| (name, p.addr)).collect()
    }

    /// The peers [`Sources::live`] lists, with what is known of them.
    pub(super) fn counted(&self, now: Instant) -> impl Iterator<Item = (&str, &Peer)> {
        self.heard_lately(now).filter(|(_, p)| p.counted())
    }

    /// `name`, from `from`, answered one of our queries: a search when `search`, else a ping.
    pub(super) fn answered(&mut self, name: &str, from: SocketAddr, search: bool) {
        if let Some(peer) = self.peers.get_mut(name).filter(|p| p.addr == from) {
            peer.answered = true;
            if search {
                peer.strikes = peer.strikes.saturating_sub(1);
            }
        }
    }

    /// A search ended without an answer from the live peers `missing` picks.
    pub(super) fn missed(&mut self, missing: impl Fn(&str, SocketAddr) -> bool, now: Instant) {
        for (name, peer) in self.peers.iter_mut() {
            let live = peer.validated && peer.answered && now - peer.heard < PEER_TTL;
            if live && missing(name, peer.addr) {
                let was = peer.counted();
                peer.strikes = (peer.strikes + MISS).min(MAX_STRIKES);
                if was && !peer.counted() {
                    log::info!(
                        "multicast: {} at {} left searches unanswered: searches do not wait for it until it answers again",
                        name.escape_debug(),
                        peer.addr
                    );
                }
            }
        }
    }

    /// `name`, just heard, sent an untagged datagram: a supernode of the seed's kind.
    pub(super) fn sent_untagged(&mut self, name: &str) {
        if let Some(peer) = self.peers.get_mut(name) {
            peer.legacy = true;
        }
    }

    /// Whether a supernode heard lately may hold what the summaries of those counted on do
    /// not say: one of the seed's kind (it has no summary), or one that proved its address and
    /// is not counted on (not answered yet, or left searches unanswered). Then everyone is
    /// asked (and only the counted ones are waited for): no summary may answer 404 for an id
    /// such a peer holds.
    pub(super) fn uncounted(&self, now: Instant) -> bool {
        self.heard_lately(now)
            .any(|(_, p)| p.legacy || (p.validated && !p.counted()))
    }

    /// Whether `name` is bound to an address and heard lately, proven or not.
    pub(super) fn is_bound(&self, name: &str, now: Instant) -> bool {
        self.peers
            .get(name)
            .is_some_and(|p| now - p.heard < PEER_TTL)
    }

    /// Whether `name` is a live, proven peer (answering or not).
    pub(super) fn is_live(&self, name: &str, now: Instant) -> bool {
        self.peers
            .get(name)
            .is_some_and(|p| p.validated && now - p.heard < PEER_TTL)
    }

    /// Forgets the peers not heard within [`PEER_TTL`] and the sources idle for a minute.
    pub(super) fn expire(&mut self, now: Instant) {
        self.peers.retain(|_, p| now - p.heard < PEER_TTL);
        let peers = &self.peers;
        self.addrs.retain(|addr, s| {
            now - s.seen < SOURCE_IDLE || peers.values().any(|p| p.addr == *addr)
        });
        self.buckets.expire(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_name_stays_bound_to_its_address_until_it_is_forgotten() {
        let now = Instant::now();
        let mut sources = Sources::new(false);
        let real = addr("10.0.0.2:4321");
        assert!(sources.heard("s2", real, 100, Kind::Query, now).is_ok());
        let forged = sources.heard("s2", addr("10.0.0.66:4321"), 100, Kind::Query, now);
        assert_eq!(forged, Err(Refused::Moved));
        assert_eq!(sources.peers["s2"].addr, real);
        // Forgotten once not heard for PEER_TTL: the name may be bound anew.
        let later = now + PEER_TTL;
        sources.expire(later);
        assert!(
            sources
                .heard("s2", addr("10.0.0.66:4321"), 100, Kind::Query, later)
                .is_ok()
        );
    }

    #[test]
    fn under_a_key_a_binding_follows_its_peer_and_is_proven() {
        let now = Instant::now();
        let mut sources = Sources::new(true);
        let heard = sources
            .heard("s2", addr("10.0.0.2:1"), 100, Kind::Query, now)
            .unwrap();
        assert_eq!(
            heard,
            Heard {
                validated: true,
                probe: None
            }
        );
        sources
            .heard("s2", addr("10.0.0.3:1"), 100, Kind::Query, now)
            .unwrap();
        sources.answered("s2", addr("10.0.0.3:1"), false);
        assert_eq!(sources.live(now), vec![("s2", addr("10.0.0.3:1"))]);
    }

    #[test]
    fn only_who_receives_at_an_address_can_prove_it() {
        let now = Instant::now();
        let mut sources = Sources::new(false);
        let at = addr("10.0.0.2:4321");
        let heard = sources.heard("s2", at, 100, Kind::Query, now).unwrap();
        let cookie = heard.probe.expect("an unproven peer is sent a cookie");
        assert!(!heard.validated && sources.live(now).is_empty());
        // Not again within the probe interval.
        assert_eq!(
            sources
                .heard("s2", at, 100, Kind::Query, now)
                .unwrap()
                .probe,
            None
        );
        // The cookie of another name, or from another address, proves nothing.
        assert!(!sources.validate("s3", at, &cookie, now));
        assert!(!sources.validate("s2", addr("10.0.0.2:4322"), &cookie, now));
        assert!(!sources.validate("s2", at, &ResourceId([0; 32]), now));
        assert!(sources.live(now).is_empty());
        assert!(sources.validate("s2", at, &cookie, now));
        assert!(sources.is_live("s2", now) && sources.is_validated(at));
        // Counted on once it answers us.
        assert!(sources.live(now).is_empty());
        sources.answered("s2", at, false);
        assert_eq!(sources.live(now), vec![("s2", at)]);
        // Another name forged from the same address is not proven by it.
        sources.heard("ghost", at, 100, Kind::Query, now).unwrap();
        assert!(!sources.is_live("ghost", now));
        // One of the seed's kind means everyone is asked.
        sources.answered("s2", at, false);
        assert!(!sources.uncounted(now));
        sources.sent_untagged("ghost");
        assert!(sources.uncounted(now));
    }

    #[test]
    fn an_unproven_address_gets_at_most_three_times_what_it_sent() {
        let now = Instant::now();
        let mut sources = Sources::new(false);
        let victim = addr("10.0.0.9:53");
        assert!(!sources.may_send(victim, 1, now), "nothing came from it");
        sources.heard("x", victim, 42, Kind::Query, now).unwrap();
        assert!(sources.may_send(victim, 100, now));
        assert!(!sources.may_send(victim, 27, now), "127 > 126");
        assert!(sources.may_send(victim, 26, now));
        let cookie = sources.cookie("x", victim);
        sources.validate("x", victim, &cookie, now);
        assert!(sources.may_send(victim, 100_000, now));
    }

    #[test]
    fn one_host_binds_a_bounded_number_of_names_and_made_up_ones_make_room() {
        let now = Instant::now();
        let mut sources = Sources::new(false);
        let host = |port| SocketAddr::from(([10, 0, 0, 7], port));
        // The real one proves itself first.
        sources
            .heard("real", host(1), 100, Kind::Query, now)
            .unwrap();
        let cookie = sources.cookie("real", host(1));
        sources.validate("real", host(1), &cookie, now);
        for n in 0..1000 {
            let t = now + Duration::from_millis(n);
            let heard = sources.heard(&format!("fake{n}"), host(2), 100, Kind::Answer, t);
            assert!(heard.is_ok(), "an unproven name makes room");
        }
        let on_host = sources
            .peers
            .values()
            .filter(|p| p.addr.ip() == host(1).ip())
            .count();
        assert_eq!(on_host, MAX_NAMES_PER_HOST);
        assert!(sources.is_live("real", now + Duration::from_secs(1)));
        assert!(sources.peers.contains_key("fake999"));
    }

    #[test]
    fn each_host_and_kind_has_its_own_rate() {
        let now = Instant::now();
        let mut sources = Sources::new(false);
        let a = addr("10.0.0.2:1");
        let took = (0..200)
            .filter(|_| sources.heard("a", a, 50, Kind::NameQuery, now).is_ok())
            .count();
        assert_eq!(took, 100, "the burst");
        assert!(
            sources.heard("a", a, 50, Kind::Query, now).is_ok(),
            "another kind"
        );
        assert!(
            sources
                .heard("b", addr("10.0.0.3:1"), 50, Kind::NameQuery, now)
                .is_ok()
        );
        // Refilled at 50 a second.
        let later = now + Duration::from_millis(100);
        let took = (0..20)
            .filter(|_| sources.heard("a", a, 50, Kind::NameQuery, later).is_ok())
            .count();
        assert_eq!(took, 5);
    }

    #[test]
    fn a_peer_that_leaves_searches_unanswered_is_not_waited_for_until_it_answers() {
        let now = Instant::now();
        let mut sources = Sources::new(true);
        let (a, b) = (addr("10.0.0.2:1"), addr("10.0.0.3:1"));
        for (name, at) in [("a", a), ("b", b)] {
            sources.heard(name, at, 100, Kind::Query, now).unwrap();
            sources.answered(name, at, false);
        }
        let silent = |name: &str, _: SocketAddr| name == "b";
        sources.missed(silent, now);
        assert_eq!(
            sources.live(now).len(),
            2,
            "one miss may be a lost datagram"
        );
        sources.missed(silent, now);
        assert_eq!(sources.live(now), vec![("a", a)]);
        assert!(
            sources.uncounted(now),
            "b may hold what a's summary does not say"
        );
        // A ping's answer is not enough; searches' are, four of them.
        sources.answered("b", b, false);
        assert_eq!(sources.live(now).len(), 1);
        for answered in 1..=4 {
            sources.answered("b", b, true);
            assert_eq!(sources.live(now).len(), if answered < 4 { 1 } else { 2 });
        }
        // Then one miss is enough: answering four searches in five makes one wait, no more.
        sources.missed(silent, now);
        assert_eq!(sources.live(now).len(), 1);
    }

    #[test]
    fn an_unproven_address_is_sent_little_in_all() {
        let now = Instant::now();
        let mut sources = Sources::new(false);
        let sent = (0..1000u16)
            .filter(|n| {
                let at = SocketAddr::from(([10, 9, (n / 250) as u8, (n % 250) as u8], 1));
                sources.heard("x", at, 1000, Kind::Answer, now).ok();
                sources.may_send(at, 10, now)
            })
            .count();
        assert_eq!(sent, UNPROVEN_SENDS.1 as usize);
    }

    #[test]
    fn a_peer_that_leaves_is_forgotten_only_from_its_own_address() {
        let now = Instant::now();
        let mut sources = Sources::new(true);
        sources
            .heard("s2", addr("10.0.0.2:1"), 100, Kind::Query, now)
            .unwrap();
        assert!(!sources.left("s2", addr("10.0.0.66:1")));
        assert!(sources.left("s2", addr("10.0.0.2:1")));
        assert!(sources.live(now).is_empty());
    }
}

//! The supernodes' multicast group: one thread owns the socket, answers the other supernodes'
//! queries from the index, and routes answers to the searches waiting on them.
//!
//! ```text
//!  HTTP worker ──search_many(ids)──> pending[tag] = {id, reply: bounded(1)}
//!      │                                   ▲            │
//!      │ sends "<me>/<tag>;20;<id>"        │ 21/22      │ Outcome
//!      ▼                                   │            ▼
//!   group ──datagrams──> "multicast" thread (recv, answer 20s, match 21/22, resend) ──> waiter
//! ```
//!
//! Every search has its own tag, and answers from our own kind echo it, so concurrent searches
//! never take each other's answers. A legacy (untagged) `21` names a holder but not the id:
//! the holder is asked what it holds ([`legacy`]); a legacy `22` carries the id and counts for
//! every search of that id.
//! A search ends at the first `21`, at a `22` from every expected peer, or at its deadline;
//! unanswered queries are sent again every `SEARCH_RETRY_MS` until then, so a lost datagram
//! costs a retry, not the search.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender as ReplyTx, bounded};
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::{DatagramSeals, SealError};
use crate::config::SupernodeConfig;
use crate::error::Error;
use crate::id::ResourceId;
use crate::index::Index;
use crate::logging::Throttle;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::wire::{self, Body, MAX_DATAGRAM, Message, NameHit, Sender};

mod legacy;
mod peers;
mod summaries;

pub use summaries::SummaryHeld;

/// Tag of the discovery query (the all-zero id, which nobody holds): every peer answers it
/// with a `22`, which tells us who is alive: the expected answerers when
/// `MULTICAST_GROUP_SIZE` is unknown, and the group an operator sees on the page either way.
const PING_TAG: u64 = 0;
/// How often to ping (two datagrams a peer), and how long a peer counts as alive.
const PING_PERIOD: Duration = Duration::from_secs(5);
const PEER_TTL: Duration = Duration::from_secs(16);
/// The longest the socket thread sleeps before looking at the stop flag again.
const MAX_IDLE: Duration = Duration::from_millis(250);
/// Send failures are logged at most once per this period.
const FAILURE_REPORT_PERIOD: Duration = Duration::from_secs(10);
/// The most peers tracked, and the most "not here" answers one search keeps: a host that
/// sends under a thousand made-up names fills this, not the memory.
const MAX_PEERS: usize = 1024;

/// How a remote search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A node at this `host:port` holds the resource.
    Found(String),
    /// Every expected peer said it does not know the resource.
    NotFound,
    /// The deadline passed with `answered` of `expected` peers having said no.
    TimedOut { answered: usize, expected: usize },
}

/// A search waiting for answers.
struct Pending {
    id: ResourceId,
    /// Who is asked: the supernodes whose summaries may hold the id, or `None` for everyone.
    targets: Option<Vec<SocketAddr>>,
    expected: usize,
    said_no: Vec<String>,
    reply: ReplyTx<Outcome>,
    deadline: Instant,
    next_send: Instant,
}

/// A query every expected peer answers (`23`, `25`), asked again every `SEARCH_RETRY_MS` of
/// the peers whose answer has not all come, until they all have or the time-out.
struct Asked {
    body: Body,
    expected: usize,
    deadline: Instant,
    next_send: Instant,
    /// Signalled when every expected peer's answer has come.
    done: ReplyTx<()>,
}

/// A name search waiting for the parts of every expected peer's answer.
struct PendingNames {
    asked: Asked,
    hits: Vec<NameHit>,
    /// Each answering peer's parts so far.
    parts: HashMap<String, Parts>,
    complete: usize,
}

/// Which parts of one peer's `24` answer have come, of how many it said there are.
struct Parts {
    total: u16,
    got: u16,
    seen: Vec<u64>,
}

impl Parts {
    fn new(total: u16) -> Parts {
        Parts {
            total,
            got: 0,
            seen: vec![0; usize::from(total).div_ceil(64)],
        }
    }

    /// Takes part `part` (from 1) of `total`; whether it is one not seen before. A count
    /// that differs from the one held is a new answer (the peer's index changed before it
    /// was asked again): counted afresh, its hits merged by id with the ones before.
    fn take(&mut self, part: u16, total: u16) -> bool {
        if part == 0 || part > total {
            return false;
        }
        if total != self.total {
            *self = Parts::new(total);
        }
        let (word, bit) = (usize::from(part - 1) / 64, (part - 1) % 64);
        let new = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        self.got += u16::from(new);
        new
    }

    fn complete(&self) -> bool {
        self.got == self.total
    }
}

/// A search for every holder, waiting for every expected peer's `26`.
struct PendingAll {
    asked: Asked,
    id: ResourceId,
    answered: Vec<String>,
    locations: Vec<String>,
}

/// A query every expected peer answers, gathering the answers.
trait Gathering {
    fn asked(&self) -> &Asked;
    fn asked_mut(&mut self) -> &mut Asked;
    /// Whether `peer`'s whole answer has come.
    fn answered(&self, peer: &str) -> bool;
}

impl Gathering for PendingNames {
    fn asked(&self) -> &Asked {
        &self.asked
    }
    fn asked_mut(&mut self) -> &mut Asked {
        &mut self.asked
    }
    fn answered(&self, peer: &str) -> bool {
        self.parts.get(peer).is_some_and(Parts::complete)
    }
}

impl Gathering for PendingAll {
    fn asked(&self) -> &Asked {
        &self.asked
    }
    fn asked_mut(&mut self) -> &mut Asked {
        &mut self.asked
    }
    fn answered(&self, peer: &str) -> bool {
        self.answered.iter().any(|a| a == peer)
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Pending>,
    names: HashMap<u64, PendingNames>,
    all: HashMap<u64, PendingAll>,
    /// Peers heard from lately: when, and from which address (counted as the expected
    /// answerers when the group size is unknown; shown on the supernode's page).
    peers: HashMap<String, (Instant, SocketAddr)>,
    /// The holders named by untagged answers, being asked what they hold.
    checks: legacy::Checks,
    /// The other supernodes' index summaries.
    summaries: summaries::Summaries,
}

struct Inner {
    /// The group's socket: hears the group.
    socket: UdpSocket,
    /// The supernode's own socket (`UNICAST_PORT`): sends every datagram, and hears the
    /// answers to its queries.
    unicast: UdpSocket,
    me: String,
    group: SocketAddrV4,
    interface: Ipv4Addr,
    group_size: usize,
    timeout: Duration,
    retry: Duration,
    index: Arc<RwLock<Index>>,
    next_tag: AtomicU64,
    send_failures: Throttle,
    /// `CLUSTER_KEY`: every datagram sent is sealed, and one that fails is dropped before it
    /// touches any state.
    seals: Option<DatagramSeals>,
    /// Datagrams dropped by the cluster key, for a throttled log line for each reason (a
    /// flood of one kind must not hide another).
    refused: [Throttle; SealError::COUNT],
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    /// Asks the holders that untagged answers name (within the search time-out).
    checker: ureq::Agent,
    /// `PEERS`: asked by unicast whatever the group is asked.
    peers: peers::Peers,
    /// `INDEX_DIGESTS`: summaries are announced, fetched and used to choose whom to ask.
    digests: bool,
    /// Under a cluster key, the summaries fetched must be signed with it.
    digest_keys: Option<crate::auth::ClusterKeys>,
    /// Where this supernode's API serves its summary (`host:port`), once it listens.
    api: std::sync::OnceLock<String>,
}

/// A handle on the multicast service; clones share the one socket and thread.
#[derive(Clone)]
pub struct Multicast {
    inner: Arc<Inner>,
}

impl Multicast {
    /// Joins the group and starts the socket thread.
    pub fn start(
        config: &SupernodeConfig,
        index: Arc<RwLock<Index>>,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
    ) -> Result<(Multicast, JoinHandle<()>), Error> {
        let socket = open_socket(config.group, config.interface).map_err(|e| {
            Error::io(
                format!(
                    "cannot join multicast group {} on {}",
                    config.group, config.interface
                ),
                e,
            )
        })?;
        let unicast = open_unicast(config).map_err(|e| {
            Error::io(
                format!(
                    "cannot open the unicast socket on {}:{}",
                    config.interface,
                    config.unicast_port.unwrap_or(config.group.port())
                ),
                e,
            )
        })?;
        let inner = Arc::new(Inner {
            socket,
            unicast,
            me: uuid::Uuid::new_v4().to_string(),
            group: config.group,
            interface: config.interface,
            group_size: config.group_size,
            timeout: config.search_timeout,
            retry: config.search_retry,
            index,
            next_tag: AtomicU64::new(PING_TAG + 1),
            send_failures: Throttle::new(FAILURE_REPORT_PERIOD),
            seals: config.cluster_keys.clone().map(DatagramSeals::new),
            refused: std::array::from_fn(|_| Throttle::new(FAILURE_REPORT_PERIOD)),
            state: Mutex::new(State::default()),
            metrics,
            checker: crate::client::agent(config.search_timeout),
            peers: peers::Peers::new(&config.peers),
            digests: config.index_digests,
            digest_keys: config
                .cluster_keys
                .as_ref()
                .map(crate::digest::signing_keys),
            api: std::sync::OnceLock::new(),
        });
        let thread_inner = inner.clone();
        let thread = thread::Builder::new()
            .name("multicast".into())
            .spawn(move || thread_inner.run(&shutdown))
            .map_err(|e| Error::io("cannot start the multicast thread", e))?;
        Ok((Multicast { inner }, thread))
    }

    /// The API listens at `addr`: from now on the index's summary is announced, with where to
    /// fetch it (the interface address when the API listens on every address).
    pub fn serve_summaries_at(&self, addr: SocketAddr) {
        let ip = match addr.ip() {
            ip if !ip.is_unspecified() => ip,
            _ if !self.inner.interface.is_unspecified() => IpAddr::V4(self.inner.interface),
            _ => {
                log::warn!(
                    "summaries: the API listens on every address and MULTICAST_INTERFACE is not set: no summary is announced"
                );
                return;
            }
        };
        if self.inner.digests {
            let _ = self
                .inner
                .api
                .set(SocketAddr::new(ip, addr.port()).to_string());
            self.inner.announce();
        }
    }

    /// The index grew: tells the other supernodes at once.
    pub fn index_grew(&self) {
        self.inner.announce();
    }

    /// What is held of each other supernode's summary.
    pub fn summaries(&self) -> Vec<SummaryHeld> {
        self.inner.state().summaries.held()
    }

    /// Asks the group for every id at once and waits for all of them, within one time-out.
    pub fn search_many(&self, ids: &[ResourceId]) -> Vec<Outcome> {
        self.inner.search_many(ids)
    }

    pub fn search(&self, id: ResourceId) -> Outcome {
        self.search_many(&[id]).pop().unwrap_or(Outcome::NotFound)
    }

    /// Every holder of `id` the other supernodes know: see [`Inner::search_all`].
    pub fn search_all(&self, id: ResourceId) -> Vec<String> {
        self.inner.search_all(id)
    }

    /// Asks the group for the resources whose name contains `text`: see [`Inner::search_names`].
    pub fn search_names(&self, text: &str, node: Option<&str>, limit: u32) -> Vec<NameHit> {
        self.inner.search_names(text, node, limit)
    }

    /// The other supernodes heard from lately: name, address, and how long ago, the latest
    /// first.
    pub fn peers(&self) -> Vec<(String, SocketAddr, Duration)> {
        let now = Instant::now();
        let mut peers: Vec<_> = self
            .inner
            .state()
            .peers
            .iter()
            .filter(|(_, (heard, _))| now - *heard < PEER_TTL)
            .map(|(name, (heard, from))| (name.clone(), *from, now - *heard))
            .collect();
        peers.sort_by_key(|peer| peer.2);
        peers
    }
}

/// The most matches (an id at one holder) one supernode sends for one name query, and so the
/// most parts its answer has.
const MAX_NAME_HITS: u32 = 1000;
/// The least room a `24` must leave for its matches: an id, a long location and a name.
const MIN_HIT_ROOM: usize = 200;
/// Name answer datagrams sent back to back before a short pause.
const ANSWER_BURST: usize = 32;
/// Room for a seal in a datagram's sender field: `/<stamp, 16 hex>/<MAC, 32 hex>`.
const SEAL_ROOM: usize = 50;

/// Splits `hits` into groups whose `24` entries fit in `room` bytes each; a name too long to
/// fit in one datagram is cut (at a character, ending with `…`). Always one group at least.
fn pack_hits(hits: Vec<NameHit>, room: usize) -> Vec<Vec<NameHit>> {
    let mut groups = vec![Vec::new()];
    let mut used = 0;
    for mut hit in hits {
        let mut len = wire::hit_text(&hit).len() + 1;
        while len > room && !hit.name.is_empty() {
            let mut cut = hit.name.trim_end_matches('…').to_string();
            hit.name = match cut.pop() {
                Some(_) => format!("{cut}…"),
                None => String::new(),
            };
            len = wire::hit_text(&hit).len() + 1;
        }
        if used + len > room {
            groups.push(Vec::new());
            used = 0;
        }
        used += len;
        groups.last_mut().expect("one group at least").push(hit);
    }
    groups
}

/// A datagram's kind, as the metrics count it.
fn kind_of(body: &Body) -> &'static str {
    match body {
        Body::Query(_) => "query",
        Body::Found(_) => "found",
        Body::NotFound(_) => "not_found",
        Body::AllQuery(_) => "all_query",
        Body::AllFound { .. } => "all_found",
        Body::NameQuery { .. } => "name_query",
        Body::NameAnswer { .. } => "name_answer",
        Body::Digest { .. } => "digest",
    }
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy)]
enum To {
    /// The group (answers to the seed's queries, which listen there).
    Group,
    /// The group and every `PEERS` entry: our queries.
    Everyone,
    /// One supernode's own socket: answers to its queries.
    One(SocketAddr),
}

/// Whether a supernode on `interface` may send to `addr`: one on loopback only to loopback, so
/// that no datagram (nor a check of a holder) leaves a cluster bound to 127.0.0.1.
fn reachable(interface: Ipv4Addr, addr: IpAddr) -> bool {
    !interface.is_loopback() || addr.is_loopback()
}

/// The supernode's own socket, on the interface address: exclusively its own (no port
/// sharing), so what comes to it by unicast reaches it alone.
fn open_unicast(config: &SupernodeConfig) -> io::Result<UdpSocket> {
    let open = |port: u16| -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.bind(&SocketAddr::from((config.interface, port)).into())?;
        Ok(socket)
    };
    // Room for bursts (a name search's answers): as much as the system allows, up to 4 MiB.
    let socket = match config.unicast_port {
        Some(port) => open(port)?,
        // The group's port unless another supernode on this address has it already.
        None => match open(config.group.port()) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => open(0)?,
            result => result?,
        },
    };
    if !config.interface.is_unspecified() {
        socket.set_multicast_if_v4(&config.interface)?;
    }
    socket.set_multicast_ttl_v4(config.ttl)?;
    // Several supernodes on one host must hear each other.
    socket.set_multicast_loop_v4(true)?;
    Ok(socket.into())
}

/// The group's socket: it only hears (every datagram leaves from the supernode's own socket).
fn open_socket(group: SocketAddrV4, interface: Ipv4Addr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    // Bound to the group address, the socket hears only this group, even if another group on
    // the same host uses the same port.
    socket.bind(&SocketAddr::V4(group).into())?;
    socket.join_multicast_v4(group.ip(), &interface)?;
    Ok(socket.into())
}

impl Inner {
    /// The datagram counters (a supernode's metrics always have them).
    fn count(&self) -> Option<&crate::metrics::SupernodeMetrics> {
        self.metrics.supernode.as_ref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `message` to the group or one peer, from the supernode's own socket, sealed when
    /// there is a cluster key (`answered`: the id a `21` answers, which its seal binds).
    fn send(&self, mut message: Message, answered: Option<&ResourceId>, to: To) {
        let bytes = match &self.seals {
            Some(seals) => seals.seal_encode(&mut message, answered),
            None => message.encode(),
        };
        if let Some(metrics) = self.count() {
            metrics.sent(kind_of(&message.body));
        }
        let mut sent = match to {
            To::Group | To::Everyone => self.unicast.send_to(&bytes, self.group).map(drop),
            To::One(addr) => self.unicast.send_to(&bytes, addr).map(drop),
        };
        if let To::Everyone = to {
            for peer in self.peers.addrs() {
                sent = sent.and(self.unicast.send_to(&bytes, peer).map(drop));
            }
        }
        if let Err(e) = sent {
            if let Some(metrics) = self.count() {
                metrics.datagram_send_failures.inc();
            }
            // Reported at most every 10 s: a lossy or cut link fails many sends.
            if let Some(failed) = self.send_failures.hit() {
                log::warn!(
                    "multicast: {failed} send(s) failed since the last report (the last to {}): {e}",
                    match to {
                        To::Group | To::Everyone => SocketAddr::V4(self.group),
                        To::One(addr) => addr,
                    }
                );
            }
        }
    }

    /// Announces this supernode's summary version (when summaries are on and the API listens).
    fn announce(&self) {
        let Some(http) = self.api.get() else {
            return;
        };
        let (epoch, version) = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            (index.digest().epoch(), index.digest().version())
        };
        let body = Body::Digest {
            http: http.clone(),
            epoch,
            version,
        };
        // Sent as our queries are (a plain sender could not carry a seal unambiguously).
        let sender = Sender::Query {
            from: self.me.clone(),
            tag: PING_TAG,
        };
        self.send(Message::new(sender, body), None, To::Everyone);
    }

    /// A peer's announcement: fetches its summary when what is held is older.
    fn on_digest(self: &Arc<Self>, sender: &Sender, http: &str, announced: (u64, u64)) {
        let Sender::Query { from: peer, .. } = sender else {
            return;
        };
        let Some(http) = http
            .parse::<SocketAddr>()
            .ok()
            .filter(|a| reachable(self.interface, a.ip()))
        else {
            return;
        };
        if !self.digests {
            return;
        }
        let fetch = self
            .state()
            .summaries
            .announced(peer, http, announced, MAX_PEERS);
        if let Some(fetch) = fetch {
            self.fetch_summary(fetch);
        }
    }

    /// Fetches a peer's summary on a thread of its own, and the next one it needs after.
    fn fetch_summary(self: &Arc<Self>, fetch: summaries::Fetch) {
        let inner = self.clone();
        let peer = fetch.peer.clone();
        let started = thread::Builder::new()
            .name("summary".into())
            .spawn(move || {
                let mut next = Some(fetch);
                while let Some(fetch) = next {
                    let bytes = inner
                        .checker
                        .get(&fetch.url)
                        .call()
                        .map_err(|e| e.to_string())
                        .and_then(|mut response| match response.status().as_u16() {
                            200 => response
                                .body_mut()
                                .with_config()
                                .limit(summaries::MAX_SUMMARY)
                                .read_to_vec()
                                .map_err(|e| e.to_string()),
                            status => Err(format!("status {status}")),
                        })
                        .and_then(|bytes| match &inner.digest_keys {
                            Some(keys) => crate::digest::check(keys, &bytes),
                            None => Ok(bytes),
                        });
                    // Applied before the lock is taken: a whole summary is a megabyte or so.
                    let applied = bytes.and_then(|bytes| crate::digest::apply(fetch.held, &bytes));
                    let mut due = inner.state().summaries.fetched(&fetch.peer, applied);
                    // This thread goes on with one; the others get threads of their own.
                    next = due.pop();
                    for other in due {
                        inner.fetch_summary(other);
                    }
                }
            });
        if started.is_err() {
            // Its slot is given back; it is fetched at its next announcement.
            self.state().summaries.abandon(&peer);
        }
    }

    /// Whom to ask for `id`: the supernodes whose summaries may hold it, when every supernode
    /// expected to answer is known and has a fresh summary; `None` (everyone, as without
    /// summaries) otherwise.
    fn targets(&self, state: &State, id: &ResourceId, now: Instant) -> Option<Vec<SocketAddr>> {
        if !self.digests {
            return None;
        }
        let live: Vec<(&String, SocketAddr)> = state
            .peers
            .iter()
            .filter(|(_, (heard, _))| now - *heard < PEER_TTL)
            .map(|(name, (_, addr))| (name, *addr))
            .collect();
        let expected = self.expected_peers(state, now);
        if live.is_empty() || live.len() < expected {
            // Someone expected is unknown (not heard yet, or a seed that never says who it is).
            return None;
        }
        let mut ask = Vec::new();
        for (name, addr) in live {
            match state.summaries.may_hold(name, id) {
                Some(false) => {}
                Some(true) => ask.push(addr),
                None => return None,
            }
        }
        Some(ask)
    }

    /// Asks the group for every holder of `id` and waits for every expected peer's answer,
    /// or the time-out: the locations that came by then.
    fn search_all(&self, id: ResourceId) -> Vec<String> {
        self.ask_everyone(
            Body::AllQuery(id),
            |state, tag, asked| {
                state.all.insert(
                    tag,
                    PendingAll {
                        asked,
                        id,
                        answered: Vec::new(),
                        locations: Vec::new(),
                    },
                );
            },
            |state, tag| state.all.remove(&tag).map(|pending| pending.locations),
        )
    }

    /// Sends `body` as a tagged query that every peer answers, registered by `register`
    /// (with its tag and what [`Multicast::resend_due`] needs to ask again), and waits for
    /// every expected peer's answer or the time-out; `take` removes what was gathered.
    fn ask_everyone<T: Default>(
        &self,
        body: Body,
        register: impl FnOnce(&mut State, u64, Asked),
        take: impl FnOnce(&mut State, u64) -> Option<T>,
    ) -> T {
        if self.group_size == 1 {
            return T::default();
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (done, finished) = bounded(1);
        let now = Instant::now();
        {
            let mut state = self.state();
            let expected = self.expected_peers(&state, now);
            if expected == 0 {
                return T::default();
            }
            let asked = Asked {
                body: body.clone(),
                expected,
                deadline: now + self.timeout,
                next_send: now + self.retry.max(Duration::from_millis(1)),
                done,
            };
            register(&mut state, tag, asked);
        }
        self.ask(tag, body, None);
        let _ = finished.recv_timeout(self.timeout);
        take(&mut self.state(), tag).unwrap_or_default()
    }

    /// Sends a tagged query to `targets`, or to everyone.
    fn ask(&self, tag: u64, body: Body, targets: Option<&[SocketAddr]>) {
        let sender = Sender::Query {
            from: self.me.clone(),
            tag,
        };
        let message = Message::new(sender, body);
        match targets {
            None => self.send(message, None, To::Everyone),
            Some(targets) => {
                for &target in targets {
                    self.send(message.clone(), None, To::One(target));
                }
            }
        }
    }

    /// Answers a `25` with every location here that holds the id, as many as one datagram
    /// carries.
    fn answer_all(&self, asker: &Sender, id: ResourceId, to: To) {
        let Sender::Query { from, tag } = asker else {
            return;
        };
        let held = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup(&id)
            .map(|file| file.locations)
            .unwrap_or_default();
        let sender = Sender::Reply {
            from: self.me.clone(),
            to: from.clone(),
            tag: *tag,
        };
        // An asker's name is a UUID; one so long that nothing fits is not answered.
        let Some(mut room) =
            MAX_DATAGRAM.checked_sub(sender.to_string().len() + SEAL_ROOM + ";26;".len() + 64)
        else {
            return;
        };
        let locations = held
            .into_iter()
            .take_while(|location| {
                let fits = location.len() < room;
                room = room.saturating_sub(location.len() + 1);
                fits
            })
            .collect();
        self.send(
            Message::new(sender, Body::AllFound { id, locations }),
            None,
            to,
        );
    }

    fn on_all_found(&self, sender: &Sender, id: ResourceId, locations: Vec<String>) {
        let Sender::Reply { from, to, tag } = sender else {
            return;
        };
        if *to != self.me {
            return;
        }
        let mut state = self.state();
        let Some(pending) = state.all.get_mut(tag) else {
            return;
        };
        if pending.id != id
            || pending.answered.contains(from)
            || pending.answered.len() >= MAX_PEERS
        {
            // Not ours, or an answer again to a query asked again.
            return;
        }
        pending.answered.push(from.clone());
        for location in locations {
            if !pending.locations.contains(&location) && pending.locations.len() < MAX_PEERS {
                pending.locations.push(location);
            }
        }
        if pending.answered.len() >= pending.asked.expected {
            let _ = pending.asked.done.try_send(());
        }
    }

    /// Asks the group which resources have a name containing `text`, and collects the
    /// answers until every expected peer has sent all its parts, or the time-out: what came
    /// by then (at most `limit` from each peer).
    fn search_names(&self, text: &str, node: Option<&str>, limit: u32) -> Vec<NameHit> {
        let body = Body::NameQuery {
            text: text.to_string(),
            node: node.map(str::to_string),
            limit,
        };
        self.ask_everyone(
            body,
            |state, tag, asked| {
                state.names.insert(
                    tag,
                    PendingNames {
                        asked,
                        hits: Vec::new(),
                        parts: HashMap::new(),
                        complete: 0,
                    },
                );
            },
            |state, tag| state.names.remove(&tag).map(|pending| pending.hits),
        )
    }

    /// Answers a name query from the index, in as many datagrams as the matches need.
    fn answer_names(&self, asker: &Sender, query: (&str, Option<&str>, u32), to: To) {
        let (text, node, limit) = query;
        let Sender::Query { from, tag } = asker else {
            return; // untagged: nobody could put the parts together
        };
        let found = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find_names(text, node, limit.min(MAX_NAME_HITS) as usize);
        let hits: Vec<NameHit> = found
            .into_iter()
            .flat_map(|m| {
                m.locations.into_iter().map(move |location| NameHit {
                    id: m.id,
                    location,
                    name: m.name.clone(),
                })
            })
            .take(MAX_NAME_HITS as usize)
            .collect();
        let sender = Sender::Reply {
            from: self.me.clone(),
            to: from.clone(),
            tag: *tag,
        };
        // Room for the hits: what the sender field, the seal and the part numbers leave.
        let fixed = sender.to_string().len() + SEAL_ROOM + ";24;65535/65535".len();
        // An asker's name is a UUID; one that leaves no room for a match is not answered.
        let Some(room) = MAX_DATAGRAM
            .checked_sub(fixed)
            .filter(|room| *room >= MIN_HIT_ROOM)
        else {
            return;
        };
        let groups = pack_hits(hits, room);
        let parts = groups.len() as u16;
        for (i, hits) in groups.into_iter().enumerate() {
            if i > 0 && i % ANSWER_BURST == 0 {
                // Hundreds at once would overflow the asker's receive buffer: a breath.
                thread::sleep(Duration::from_micros(200));
            }
            let body = Body::NameAnswer {
                part: i as u16 + 1,
                parts,
                hits,
            };
            self.send(Message::new(sender.clone(), body), None, to);
        }
    }

    fn on_name_answer(&self, sender: &Sender, part: u16, parts: u16, hits: Vec<NameHit>) {
        let Sender::Reply { from, to, tag } = sender else {
            return;
        };
        // Every part holds a match at least (but the one empty part of no match): a count above
        // what a peer sends is not held, nor its bitset allocated.
        if *to != self.me || u32::from(parts) > MAX_NAME_HITS {
            return;
        }
        let mut state = self.state();
        let Some(pending) = state.names.get_mut(tag) else {
            return;
        };
        if !pending.parts.contains_key(from) && pending.parts.len() >= MAX_PEERS {
            return;
        }
        let seen = pending
            .parts
            .entry(from.clone())
            .or_insert_with(|| Parts::new(parts));
        // Parts come in any order; one seen before (the peer was asked again) counts once, and
        // a whole answer is final.
        if seen.complete() || !seen.take(part, parts) {
            return;
        }
        let now_complete = seen.complete();
        let room =
            (MAX_NAME_HITS as usize * pending.asked.expected).saturating_sub(pending.hits.len());
        pending.hits.extend(hits.into_iter().take(room));
        if now_complete {
            pending.complete += 1;
            if pending.complete >= pending.asked.expected {
                let _ = pending.asked.done.try_send(());
            }
        }
    }

    /// Peers expected to answer: the group size less this one, or the peers heard lately.
    fn expected_peers(&self, state: &State, now: Instant) -> usize {
        if self.group_size > 0 {
            // `PEERS` that stopped answering are not waited for.
            (self.group_size - 1).saturating_sub(self.peers.silent())
        } else {
            state
                .peers
                .values()
                .filter(|(heard, _)| now - *heard < PEER_TTL)
                .count()
        }
    }

    fn search_many(&self, ids: &[ResourceId]) -> Vec<Outcome> {
        if self.group_size == 1 {
            // Alone in the group: nobody else can know.
            return vec![Outcome::NotFound; ids.len()];
        }
        let now = Instant::now();
        let deadline = now + self.timeout;
        let mut waits = Vec::with_capacity(ids.len());
        {
            let mut state = self.state();
            let expected = self.expected_peers(&state, now);
            if expected == 0 && self.group_size > 0 {
                // Every other supernode is a `PEERS` entry that stopped answering.
                return vec![Outcome::NotFound; ids.len()];
            }
            for &id in ids {
                let targets = self.targets(&state, &id, now);
                let expected = targets.as_ref().map_or(expected, Vec::len);
                let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
                let (reply, answer) = bounded(1);
                if expected == 0 && targets.is_some() {
                    // No summary may hold it: nobody else has it.
                    let _ = reply.send(Outcome::NotFound);
                    waits.push((tag, id, None, answer));
                    continue;
                }
                let next_send = now + self.retry.max(Duration::from_millis(1));
                state.pending.insert(
                    tag,
                    Pending {
                        id,
                        targets: targets.clone(),
                        expected,
                        said_no: Vec::new(),
                        reply,
                        deadline,
                        next_send,
                    },
                );
                waits.push((tag, id, Some(targets), answer));
            }
        }
        for (tag, id, targets, _) in &waits {
            if let Some(targets) = targets {
                self.ask(*tag, Body::Query(*id), targets.as_deref());
            }
        }
        waits
            .into_iter()
            .map(|(tag, _, _, answer)| match answer.recv_deadline(deadline) {
                Ok(outcome) => outcome,
                Err(_) => {
                    let pending = self.state().pending.remove(&tag);
                    // An answer may have landed between the deadline and the removal.
                    answer.try_recv().unwrap_or(match pending {
                        Some(p) => Outcome::TimedOut {
                            answered: p.said_no.len(),
                            expected: p.expected,
                        },
                        None => Outcome::TimedOut {
                            answered: 0,
                            expected: 0,
                        },
                    })
                }
            })
            .collect()
    }

    fn run(self: &Arc<Self>, shutdown: &Shutdown) {
        let mut buffer = vec![0u8; 65536];
        let mut next_ping = Instant::now();
        log::info!(
            "multicast: joined {} on {} as {}, own socket {}",
            self.group,
            self.interface,
            self.me,
            self.unicast
                .local_addr()
                .map_or("?".to_string(), |a| a.to_string())
        );
        let unicast = thread::Builder::new().name("unicast".into()).spawn({
            let inner = self.clone();
            let shutdown = shutdown.clone();
            move || inner.hear_unicast(&shutdown)
        });
        if let Err(e) = &unicast {
            log::error!("multicast: cannot start the unicast thread: {e}");
        }
        if !self.peers.is_empty() {
            // Resolved before the first ping, then again every minute on a thread of its own.
            self.peers.resolve(self.interface);
            let inner = self.clone();
            let shutdown = shutdown.clone();
            let resolver = thread::Builder::new().name("peers".into()).spawn(move || {
                while !shutdown.sleep(peers::RESOLVE_PERIOD) {
                    inner.peers.resolve(inner.interface);
                }
            });
            if let Err(e) = resolver {
                log::error!("peers: cannot start the resolver thread: {e}");
            }
        }
        while !shutdown.is_triggered() {
            let now = Instant::now();
            if self.group_size != 1 && now >= next_ping {
                self.ping(now);
                next_ping = now + PING_PERIOD;
            }
            let wait = self
                .resend_due(now)
                .min(MAX_IDLE)
                .max(Duration::from_millis(1));
            if let Err(e) = self.socket.set_read_timeout(Some(wait)) {
                log::error!("multicast: cannot set the read time-out: {e}");
            }
            self.receive(&self.socket, &mut buffer);
        }
        if let Ok(unicast) = unicast {
            let _ = unicast.join();
        }
    }

    /// Hears the supernode's own socket: answers to its queries, and what `PEERS` send.
    fn hear_unicast(self: &Arc<Self>, shutdown: &Shutdown) {
        let mut buffer = vec![0u8; 65536];
        if let Err(e) = self.unicast.set_read_timeout(Some(MAX_IDLE)) {
            log::error!("multicast: cannot set the unicast read time-out: {e}");
        }
        while !shutdown.is_triggered() {
            self.receive(&self.unicast, &mut buffer);
        }
    }

    /// Takes one datagram from `socket` (waiting at most its read time-out) and handles it.
    fn receive(self: &Arc<Self>, socket: &UdpSocket, buffer: &mut [u8]) {
        match socket.recv_from(buffer) {
            Ok((len, from)) => self.handle(&buffer[..len], from),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => log::debug!("multicast: receive failed: {e}"),
        }
    }

    /// Sends again the queries whose retry time came; returns the time until the next one.
    /// A search for an id asks again whom it asked; a name or every-holder search asks again
    /// only the peers whose answer has not all come.
    fn resend_due(&self, now: Instant) -> Duration {
        let mut due = Vec::new();
        let mut next = MAX_IDLE;
        if self.retry.is_zero() {
            return next;
        }
        {
            let mut state = self.state();
            let State {
                pending,
                names,
                all,
                peers,
                ..
            } = &mut *state;
            for (&tag, pending) in pending.iter_mut() {
                if pending.deadline <= now {
                    continue;
                }
                if pending.next_send <= now {
                    due.push((tag, Body::Query(pending.id), pending.targets.clone()));
                    pending.next_send = now + self.retry;
                }
                next = next.min(pending.next_send - now);
            }
            let gathering = (names.iter_mut().map(|(t, p)| (*t, p as &mut dyn Gathering)))
                .chain(all.iter_mut().map(|(t, p)| (*t, p as &mut dyn Gathering)));
            for (tag, pending) in gathering {
                self.again(tag, pending, (peers, now), &mut due, &mut next);
            }
        }
        for (tag, body, targets) in due {
            self.ask(tag, body, targets.as_deref());
        }
        next
    }

    /// Adds a name or every-holder query to `due` when its retry time came: to the live
    /// peers whose answer has not all come, by unicast, or to everyone when some expected
    /// peer is not known by name.
    fn again(
        &self,
        tag: u64,
        pending: &mut dyn Gathering,
        (peers, now): (&HashMap<String, (Instant, SocketAddr)>, Instant),
        due: &mut Vec<(u64, Body, Option<Vec<SocketAddr>>)>,
        next: &mut Duration,
    ) {
        let asked = pending.asked();
        if asked.deadline <= now {
            return;
        }
        if asked.next_send <= now {
            let live = || {
                peers
                    .iter()
                    .filter(|(_, (heard, _))| now - *heard < PEER_TTL)
            };
            let targets = (live().count() >= asked.expected).then(|| {
                live()
                    .filter(|(name, _)| !pending.answered(name))
                    .map(|(_, (_, addr))| *addr)
                    .collect::<Vec<_>>()
            });
            if targets.as_ref().is_none_or(|t| !t.is_empty()) {
                due.push((tag, asked.body.clone(), targets));
            }
            pending.asked_mut().next_send = now + self.retry;
        }
        *next = (*next).min(pending.asked().next_send - now);
    }

    fn ping(&self, now: Instant) {
        self.state()
            .peers
            .retain(|_, (heard, _)| now - *heard < PEER_TTL);
        if !self.peers.is_empty() {
            let (now_silent, silent) = self.peers.ping_round();
            for name in now_silent {
                log::warn!(
                    "peers: {name} has not answered {} pings; searches stop waiting for it until it answers",
                    peers::SILENT_AFTER
                );
            }
            if let Some(metrics) = self.count() {
                metrics.peers_silent.set(silent as i64);
            }
        }
        self.ask(PING_TAG, Body::Query(ResourceId([0; 32])), None);
        if self.digests {
            // Removals make the summary looser; rebuilt, it is a new epoch to fetch whole.
            self.index
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .maintain_digest();
            let mut state = self.state();
            let State {
                peers, summaries, ..
            } = &mut *state;
            summaries.retain(|peer| peers.contains_key(peer));
        }
        self.announce();
    }

    fn handle(self: &Arc<Self>, datagram: &[u8], from: SocketAddr) {
        let message = match wire::parse(datagram) {
            Ok(message) => message,
            Err(e) => {
                log::debug!("multicast: ignoring a datagram from {from}: {e}");
                if let Some(metrics) = self.count() {
                    metrics.dropped("malformed");
                }
                return;
            }
        };
        let sender = message.sender.from();
        if sender == self.me {
            return;
        }
        if let Some(seals) = &self.seals {
            // A 21 carries a location, not the id it answers: its seal binds the id of the
            // search it names. One that names no search of ours is nothing to check.
            let answered = match (&message.body, &message.sender) {
                (Body::Found(_), Sender::Reply { to, tag, .. }) if *to == self.me => {
                    match self.state().pending.get(tag) {
                        Some(pending) => Some(pending.id),
                        None => return,
                    }
                }
                (Body::Found(_), Sender::Reply { .. }) => return,
                _ => None,
            };
            if let Err(why) = seals.check(&message, datagram, answered.as_ref()) {
                if let Some(metrics) = self.count() {
                    metrics.dropped(why.label());
                }
                if let Some(count) = self.refused[why as usize].hit() {
                    log::warn!(
                        "multicast: dropped a datagram from {from} ({}): {why} under the cluster key ({count} dropped as {why} since the last report)",
                        sender.escape_debug()
                    );
                }
                return;
            }
        }
        if let Some(metrics) = self.count() {
            metrics.received(kind_of(&message.body));
        }
        if let Some(name) = self.peers.heard(from) {
            log::info!("peers: {name} answers again");
            if let Some(metrics) = self.count() {
                metrics.peers_silent.set(self.peers.silent() as i64);
            }
        }
        {
            let mut state = self.state();
            if let Some(heard) = state.peers.get_mut(sender) {
                *heard = (Instant::now(), from);
            } else if state.peers.len() < MAX_PEERS {
                state
                    .peers
                    .insert(sender.to_string(), (Instant::now(), from));
            }
        }
        // Our own kind's (tagged) queries are answered to the asker's socket, the seed's on the
        // group, where they listen.
        let to = match &message.sender {
            Sender::Query { .. } if reachable(self.interface, from.ip()) => To::One(from),
            _ => To::Group,
        };
        match message.body {
            Body::Query(id) => self.answer(&message.sender, id, to),
            Body::Found(location) => self.on_found(&message.sender, location),
            Body::NotFound(id) => self.on_not_found(&message.sender, &id),
            Body::AllQuery(id) => self.answer_all(&message.sender, id, to),
            Body::AllFound { id, locations } => self.on_all_found(&message.sender, id, locations),
            Body::NameQuery { text, node, limit } => {
                self.answer_names(&message.sender, (&text, node.as_deref(), limit), to)
            }
            Body::NameAnswer { part, parts, hits } => {
                self.on_name_answer(&message.sender, part, parts, hits)
            }
            Body::Digest {
                http,
                epoch,
                version,
            } => self.on_digest(&message.sender, &http, (epoch, version)),
        }
    }

    /// Answers a query from the index: one holder, or "not here".
    fn answer(&self, asker: &Sender, id: ResourceId, to: To) {
        let holder = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .first_location(&id);
        let sender = match asker {
            Sender::Query { from, tag } => Sender::Reply {
                from: self.me.clone(),
                to: from.clone(),
                tag: *tag,
            },
            _ => Sender::Plain(self.me.clone()),
        };
        let body = match holder {
            Some(location) => {
                log::debug!(
                    "multicast: {} asked for {id}: held at {location}",
                    asker.from().escape_debug()
                );
                Body::Found(location.to_string())
            }
            None => Body::NotFound(id.to_string()),
        };
        // A 21's seal binds the id it answers (its payload is a location); a 22 names its id.
        let answered = matches!(body, Body::Found(_)).then_some(id);
        self.send(Message::new(sender, body), answered.as_ref(), to);
    }

    fn on_found(self: &Arc<Self>, sender: &Sender, location: String) {
        let tag = match sender {
            Sender::Reply { to, tag, .. } if *to == self.me => *tag,
            Sender::Plain(_) => return self.check_holder(location),
            _ => return,
        };
        if let Some(pending) = self.state().pending.remove(&tag) {
            let _ = pending.reply.try_send(Outcome::Found(location));
        }
    }

    /// An untagged `21`: while any search waits, asks the holder it names what it holds, on a
    /// thread of its own, and answers the waiting searches for those ids.
    fn check_holder(self: &Arc<Self>, location: String) {
        let Some(holder) = legacy::holder(&location, self.interface) else {
            log::debug!("multicast: untagged answer {location:?} names no holder we may ask");
            return;
        };
        {
            let mut state = self.state();
            if state.pending.is_empty() {
                return;
            }
            match state.checks.named(holder) {
                legacy::Next::Start => {}
                legacy::Next::Joined => return,
                legacy::Next::Busy => {
                    log::debug!("multicast: untagged answer {holder} dropped: checks busy");
                    return;
                }
            }
        }
        let inner = self.clone();
        let started = thread::Builder::new()
            .name("legacy-check".into())
            .spawn(move || {
                loop {
                    let held = legacy::held(&inner.checker, holder);
                    let mut state = inner.state();
                    match held {
                        Ok(held) => {
                            let answered: Vec<u64> = state
                                .pending
                                .iter()
                                .filter(|(_, pending)| held.contains(&pending.id))
                                .map(|(&tag, _)| tag)
                                .collect();
                            for tag in answered {
                                if let Some(pending) = state.pending.remove(&tag) {
                                    log::debug!(
                                        "multicast: untagged answer: {holder} holds {}",
                                        pending.id
                                    );
                                    let _ =
                                        pending.reply.try_send(Outcome::Found(holder.to_string()));
                                }
                            }
                        }
                        Err(e) => log::debug!("multicast: cannot ask {holder} what it holds: {e}"),
                    }
                    if !state.checks.ended(holder) {
                        break;
                    }
                }
            });
        if started.is_err() {
            let mut state = self.state();
            while state.checks.ended(holder) {}
        }
    }

    fn on_not_found(&self, sender: &Sender, id_text: &str) {
        // A legacy peer may echo anything: an id that does not parse matches no search.
        let id = ResourceId::parse(id_text);
        let mut state = self.state();
        let mut done = Vec::new();
        let mut count = |tag: u64, pending: &mut Pending, from: &str| {
            if Some(pending.id) == id
                && pending.said_no.len() < MAX_PEERS
                && !pending.said_no.iter().any(|p| p == from)
            {
                pending.said_no.push(from.to_string());
            }
            if pending.expected > 0 && pending.said_no.len() >= pending.expected {
                done.push(tag);
            }
        };
        match sender {
            Sender::Reply { from, to, tag } if *to == self.me => {
                if let Some(pending) = state.pending.get_mut(tag) {
                    count(*tag, pending, from);
                }
            }
            Sender::Plain(from) => {
                for (&tag, pending) in state.pending.iter_mut() {
                    count(tag, pending, from);
                }
            }
            _ => {}
        }
        for tag in done {
            if let Some(pending) = state.pending.remove(&tag) {
                let _ = pending.reply.try_send(Outcome::NotFound);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(name: &str) -> NameHit {
        NameHit {
            id: ResourceId([1; 32]),
            location: "127.0.0.1:8000".into(),
            name: name.into(),
        }
    }

    #[test]
    fn matches_are_packed_into_parts_that_fit() {
        let room = MIN_HIT_ROOM;
        let groups = pack_hits(
            vec![hit("a"), hit(&"long ".repeat(100)), hit("…"), hit("b")],
            room,
        );
        for group in &groups {
            let used: usize = group.iter().map(|h| wire::hit_text(h).len() + 1).sum();
            assert!(used <= room, "{used} > {room}");
        }
        let names: Vec<&str> = groups.iter().flatten().map(|h| h.name.as_str()).collect();
        assert_eq!(names.len(), 4);
        assert!(names[1].ends_with('…') && names[1].starts_with("long long"));
        // A name that is nothing but the mark fits as it is; nothing loops.
        assert_eq!(names[2], "…");
        assert_eq!(pack_hits(Vec::new(), room), vec![Vec::new()]);
        // Room for the id and location only: names go, the matches stay.
        let tight = pack_hits(vec![hit("x".repeat(50).as_str())], 82);
        assert_eq!(tight[0][0].name, "");
    }

    #[test]
    fn parts_count_once_in_any_order_and_a_new_count_starts_again() {
        let mut parts = Parts::new(130);
        assert!(!parts.take(0, 130) && !parts.take(131, 130));
        for part in (1..=130).rev() {
            assert!(parts.take(part, 130), "part {part}");
            // Asked again, a peer sends its parts again: each counts once.
            assert!(!parts.take(part, 130));
            assert_eq!(parts.complete(), part == 1);
        }
        assert_eq!(parts.got, 130);
        // The answer asked again has another count: it is counted afresh.
        assert!(parts.take(2, 3) && !parts.complete());
        assert!(parts.take(1, 3) && parts.take(3, 3) && parts.complete());
        let mut largest = Parts::new(u16::MAX);
        assert!(largest.take(u16::MAX, u16::MAX) && largest.take(1, u16::MAX));
        assert_eq!(largest.got, 2);
    }
}

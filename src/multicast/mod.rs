//! The supernodes' multicast group: a thread hears the group, another the supernode's own
//! socket; both answer the other supernodes' queries from the index and route answers to the
//! searches waiting on them.
//!
//! ```text
//!  HTTP worker ──search_many(ids)──> searches[tag] = {id, reply: bounded(1)}
//!      │                                   ▲            │
//!      │ sends "<me>/<tag>;20;<id>"        │ 21/22      │ Outcome
//!      ▼                                   │            ▼
//!   group ──datagrams──> "multicast" thread (recv, answer 20s, match 21/22, resend) ──> waiter
//! ```
//!
//! Every search has its own tag, and answers from our own kind echo it, so concurrent searches
//! never take each other's answers. A legacy (untagged) `21` names a holder but not the id:
//! the holder is asked what it holds ([`legacy`]); a legacy `22` carries the id and counts for
//! every search of that id. The modules: [`transport`] (sockets, seals, where a datagram
//! goes), [`searches`] (the waiting searches and the rules that end them), [`answers`]
//! (answering from the index), [`summaries`] (the other supernodes' index summaries),
//! [`legacy`] (checking the holders untagged answers name), [`peers`] (`PEERS`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::auth::SealError;
use crate::config::SupernodeConfig;
use crate::error::Error;
use crate::id::ResourceId;
use crate::index::Index;
use crate::logging::Throttle;
use crate::metrics::SupernodeMetrics;
use crate::shutdown::Shutdown;
use crate::wire::{self, Body, Message, NameHit, Sender};

mod answers;
mod legacy;
mod peers;
mod searches;
mod sources;
mod summaries;
mod transport;

pub use searches::Outcome;
pub use summaries::SummaryHeld;

use searches::{Answerer, Asked, Pending, PendingAll, PendingNames, Searches};
use sources::{Kind, Sources};
use transport::{To, Transport, kind_of, reachable};

/// Tag of the discovery query (the all-zero id, which nobody holds): every peer answers it
/// with a `22`, which tells us who is alive: the expected answerers when
/// `MULTICAST_GROUP_SIZE` is unknown, and the group an operator sees on the page either way.
const PING_TAG: u64 = 0;
/// How often to ping (two datagrams a peer).
const PING_PERIOD: Duration = Duration::from_secs(5);
/// The longest the socket thread sleeps before looking at the stop flag again.
const MAX_IDLE: Duration = Duration::from_millis(250);
/// Dropped datagrams are logged at most once per this period for each reason.
const REFUSAL_REPORT_PERIOD: Duration = Duration::from_secs(10);
/// Name answer datagrams sent back to back before a short pause.
const ANSWER_BURST: usize = 32;

struct State {
    searches: Searches,
    /// The peers (names bound to addresses), what each source proved and was sent, and the
    /// rate limits: the live, proven peers are the expected answerers when the group size is
    /// unknown, and the group the supernode's page shows.
    sources: Sources,
    /// The holders named by untagged answers, being asked what they hold.
    checks: legacy::Checks,
    /// The other supernodes' index summaries.
    summaries: summaries::Summaries,
}

impl State {
    /// Notes what `sender`'s datagram, from `from`, says of it as a peer: of the seed's kind
    /// when untagged; answering when it is an answer to us (tagged to `me`, or for the seed's
    /// kind, for an id we search).
    fn note_answer(&mut self, sender: &Sender, body: &Body, from: SocketAddr, me: &str) {
        let name = sender.from();
        match (sender, body) {
            (Sender::Reply { to, tag, .. }, _) if to == me => {
                let search = self.searches.waiting(*tag);
                // The ping's answer, not a cookie's (which proves an address, not an answer).
                let ping = *tag == PING_TAG
                    && matches!(body, Body::NotFound(id) if id.bytes().all(|b| b == b'0'));
                if search || ping {
                    self.sources.answered(name, from, search);
                }
            }
            (Sender::Plain(_), _) => {
                self.sources.sent_untagged(name);
                let answers = match body {
                    Body::NotFound(id) => {
                        ResourceId::parse(id).is_some_and(|id| self.searches.searching(&id))
                    }
                    Body::Found(_) => !self.searches.ids.is_empty(),
                    _ => false,
                };
                if answers {
                    self.sources.answered(name, from, true);
                }
            }
            _ => {}
        }
    }
}

struct Inner {
    transport: Transport,
    me: String,
    group_size: usize,
    timeout: Duration,
    retry: Duration,
    index: Arc<RwLock<Index>>,
    next_tag: AtomicU64,
    /// Datagrams dropped by the cluster key, for a throttled log line for each reason (a
    /// flood of one kind must not hide another).
    refused: [Throttle; SealError::COUNT],
    /// Datagrams dropped in open mode (a name bound elsewhere, a rate), for a throttled line.
    dropped: Throttle,
    state: Mutex<State>,
    /// Fetches summaries (within the search time-out).
    checker: ureq::Agent,
    /// Asks the holders that untagged answers name (within a second).
    holders: ureq::Agent,
    /// `INDEX_DIGESTS`: summaries are announced, fetched and used to choose whom to ask.
    digests: bool,
    /// Under a cluster key, the summaries fetched must be signed with it.
    digest_keys: Option<crate::auth::ClusterKeys>,
    /// Where this supernode's API serves its summary (`host:port`), once it listens.
    api: std::sync::OnceLock<String>,
}

/// A handle on the multicast service; clones share the sockets and threads.
#[derive(Clone)]
pub struct Multicast {
    inner: Arc<Inner>,
}

impl Multicast {
    /// Joins the group and starts the socket threads.
    pub fn start(
        config: &SupernodeConfig,
        index: Arc<RwLock<Index>>,
        shutdown: Shutdown,
        metrics: Arc<SupernodeMetrics>,
    ) -> Result<(Multicast, JoinHandle<()>), Error> {
        let inner = Arc::new(Inner {
            transport: Transport::open(config, metrics)?,
            me: uuid::Uuid::new_v4().to_string(),
            group_size: config.group_size,
            timeout: config.search_timeout,
            retry: config.search_retry,
            index,
            next_tag: AtomicU64::new(PING_TAG + 1),
            refused: std::array::from_fn(|_| Throttle::new(REFUSAL_REPORT_PERIOD)),
            dropped: Throttle::new(REFUSAL_REPORT_PERIOD),
            state: Mutex::new(State {
                searches: Searches::default(),
                sources: Sources::new(config.cluster_keys.is_some()),
                checks: legacy::Checks::default(),
                summaries: summaries::Summaries::new(config.group_size, config.max_index),
            }),
            checker: crate::client::agent(config.search_timeout),
            holders: crate::client::agent(config.search_timeout.min(legacy::CHECK_TIMEOUT)),
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
        let interface = self.inner.transport.interface;
        let ip = match addr.ip() {
            ip if !ip.is_unspecified() => ip,
            _ if !interface.is_unspecified() => IpAddr::V4(interface),
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

    /// Every holder of `id` the other supernodes know: see [`Inner::search_all`].
    pub fn search_all(&self, id: ResourceId) -> Vec<String> {
        self.inner.search_all(id)
    }

    /// Asks the group for the resources whose name contains `text`: see [`Inner::search_names`].
    pub fn search_names(&self, text: &str, node: Option<&str>, limit: u32) -> Vec<NameHit> {
        self.inner.search_names(text, node, limit)
    }

    /// The other supernodes searches count on (heard from lately, their address proven, and
    /// answering): name, address, how long ago, and where its API is when it announced it
    /// (with its summary), the latest first.
    pub fn peers(&self) -> Vec<(String, SocketAddr, Duration, Option<SocketAddr>)> {
        let now = Instant::now();
        let state = self.inner.state();
        let mut peers: Vec<_> = (state.sources.counted(now))
            .map(|(name, peer)| {
                let api = state.summaries.api(name);
                (name.to_string(), peer.addr, now - peer.heard, api)
            })
            .collect();
        peers.sort_by_key(|peer| peer.2);
        peers
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, message: Message, answered: Option<&ResourceId>, to: To) {
        self.transport.send(message, answered, to);
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces this supernode's summary version (when summaries are on and the API listens).
    fn announce(&self) {
        let Some(http) = self.api.get() else {
            return;
        };
        let (epoch, version) = {
            let index = self.read_index();
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

    /// A peer's announcement: fetches its summary when what is held is older. Only a live,
    /// proven peer's, and without a cluster key only from the address bound to its name (the
    /// port may differ: its API's): a summary that could not be tied to its peer so could
    /// make searches answer 404 for what that peer holds.
    fn on_digest(
        self: &Arc<Self>,
        sender: &Sender,
        from: SocketAddr,
        http: &str,
        announced: (u64, u64),
    ) {
        let Sender::Query { from: peer, .. } = sender else {
            return;
        };
        if !self.digests {
            return;
        }
        let Ok(http) = http.parse::<SocketAddr>() else {
            return;
        };
        let keyed = self.transport.seals.is_some();
        let allowed = if keyed {
            reachable(self.transport.interface, http.ip())
        } else {
            http.ip() == from.ip()
        };
        let own = self.api.get().is_some_and(|api| *api == http.to_string());
        if !allowed || own || http.port() == 0 {
            log::debug!(
                "summaries: {} announced a summary at {http}, which is not its own address {from}",
                peer.escape_debug()
            );
            return;
        }
        let now = Instant::now();
        let fetch = {
            let mut state = self.state();
            // Kept either way: a peer that proves itself a moment later is fetched then.
            let proven = state.sources.is_live(peer, now);
            (state.summaries).announced(peer, (http, announced), proven, sources::MAX_PEERS, now)
        };
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
                                .limit(fetch.limit)
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
                    let now = Instant::now();
                    let mut due = inner.state().summaries.fetched(&fetch.peer, applied, now);
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
        let live = state.sources.live(now);
        let expected = self.expected_peers(state, now);
        if live.is_empty() || live.len() < expected || state.sources.uncounted(now) {
            // Someone expected is unknown (not heard yet, or a seed that never says who it is),
            // or a supernode not counted on may hold what no summary says.
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

    /// Peers expected to answer: the group size less this one, or the peers heard lately.
    fn expected_peers(&self, state: &State, now: Instant) -> usize {
        if self.group_size > 0 {
            // `PEERS` that stopped answering are not waited for.
            (self.group_size - 1).saturating_sub(self.transport.peers.silent())
        } else {
            state.sources.live(now).len()
        }
    }

    /// Asks the group for every holder of `id` and waits for every expected peer's answer,
    /// or the time-out: the locations that came by then.
    fn search_all(&self, id: ResourceId) -> Vec<String> {
        self.ask_everyone(
            Body::AllQuery(id),
            |searches, tag, asked| {
                searches.all.insert(tag, PendingAll::new(asked, id));
            },
            |searches, tag| searches.all.remove(&tag).map(|pending| pending.locations),
        )
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
            |searches, tag, asked| {
                searches.names.insert(tag, PendingNames::new(asked));
            },
            |searches, tag| searches.names.remove(&tag).map(|pending| pending.hits),
        )
    }

    /// Sends `body` as a tagged query that every peer answers, registered by `register`
    /// (with its tag and what [`Searches::due`] needs to ask again), and waits for every
    /// expected peer's answer or the time-out; `take` removes what was gathered.
    fn ask_everyone<T: Default>(
        &self,
        body: Body,
        register: impl FnOnce(&mut Searches, u64, Asked),
        take: impl FnOnce(&mut Searches, u64) -> Option<T>,
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
            register(&mut state.searches, tag, asked);
        }
        self.ask(tag, body, None);
        let whole = finished.recv_timeout(self.timeout).is_ok();
        let mut state = self.state();
        if !whole {
            let answered = state.searches.answered_whole(tag);
            let silent = |name: &str, _| !answered.iter().any(|a| a == name);
            state.sources.missed(silent, Instant::now());
        }
        take(&mut state.searches, tag).unwrap_or_default()
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
                state.searches.ids.insert(
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
                    let mut state = self.state();
                    let (timed_out, pending) = state.searches.timed_out(tag);
                    // An answer may have landed between the deadline and the removal.
                    let outcome = answer.try_recv().unwrap_or(timed_out);
                    if let (Outcome::TimedOut { .. }, Some(pending)) = (&outcome, pending) {
                        let asked =
                            |addr| pending.targets.as_ref().is_none_or(|t| t.contains(&addr));
                        let silent = |name: &str, addr| {
                            asked(addr) && !pending.said_no.iter().any(|n| n == name)
                        };
                        state.sources.missed(silent, Instant::now());
                    }
                    outcome
                }
            })
            .collect()
    }

    fn run(self: &Arc<Self>, shutdown: &Shutdown) {
        let mut buffer = vec![0u8; 65536];
        let mut next_ping = Instant::now();
        let transport = &self.transport;
        log::info!(
            "multicast: joined {} on {} as {}, own socket {}",
            transport.group,
            transport.interface,
            self.me,
            transport
                .unicast
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
        if !transport.peers.is_empty() {
            // Resolved before the first ping, then again every minute on a thread of its own.
            transport.peers.resolve(transport.interface);
            let inner = self.clone();
            let shutdown = shutdown.clone();
            let resolver = thread::Builder::new().name("peers".into()).spawn(move || {
                while !shutdown.sleep(peers::RESOLVE_PERIOD) {
                    let transport = &inner.transport;
                    transport.peers.resolve(transport.interface);
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
            if let Err(e) = transport.group_socket.set_read_timeout(Some(wait)) {
                log::error!("multicast: cannot set the read time-out: {e}");
            }
            self.receive(&transport.group_socket, &mut buffer);
        }
        if self.group_size != 1 {
            // Gone at once from the others' searches, not when they stop hearing it.
            let sender = Sender::Query {
                from: self.me.clone(),
                tag: PING_TAG,
            };
            self.send(Message::new(sender, Body::Leaving), None, To::Everyone);
        }
        if let Ok(unicast) = unicast {
            let _ = unicast.join();
        }
    }

    /// Hears the supernode's own socket: answers to its queries, and what `PEERS` send.
    fn hear_unicast(self: &Arc<Self>, shutdown: &Shutdown) {
        let mut buffer = vec![0u8; 65536];
        if let Err(e) = self.transport.unicast.set_read_timeout(Some(MAX_IDLE)) {
            log::error!("multicast: cannot set the unicast read time-out: {e}");
        }
        while !shutdown.is_triggered() {
            self.receive(&self.transport.unicast, &mut buffer);
        }
    }

    /// Takes one datagram from `socket` (waiting at most its read time-out) and handles it.
    fn receive(self: &Arc<Self>, socket: &UdpSocket, buffer: &mut [u8]) {
        if let Some((len, from)) = Transport::receive(socket, buffer) {
            self.handle(&buffer[..len], from);
        }
    }

    /// Sends again the queries whose retry time came; returns the time until the next one.
    fn resend_due(&self, now: Instant) -> Duration {
        let (due, next) = {
            let mut state = self.state();
            let State {
                searches, sources, ..
            } = &mut *state;
            searches.due(now, self.retry, &sources.live(now), MAX_IDLE)
        };
        for (tag, body, targets) in due {
            self.ask(tag, body, targets.as_deref());
        }
        next
    }

    fn ping(&self, now: Instant) {
        self.state().sources.expire(now);
        let configured = &self.transport.peers;
        if !configured.is_empty() {
            let (now_silent, silent) = configured.ping_round();
            for name in now_silent {
                log::warn!(
                    "peers: {name} has not answered {} pings; searches stop waiting for it until it answers",
                    peers::SILENT_AFTER
                );
            }
            self.transport.metrics.peers_silent.set(silent as i64);
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
                sources, summaries, ..
            } = &mut *state;
            summaries.retain(|peer| sources.is_bound(peer, now));
        }
        self.announce();
    }

    fn handle(self: &Arc<Self>, datagram: &[u8], from: SocketAddr) {
        let metrics = &self.transport.metrics;
        let message = match wire::parse(datagram) {
            Ok(message) => message,
            Err(e) => {
                log::debug!("multicast: ignoring a datagram from {from}: {e}");
                metrics.dropped("malformed");
                return;
            }
        };
        let sender = message.sender.from();
        if sender == self.me {
            return;
        }
        if let Some(seals) = &self.transport.seals {
            // A 21 carries a location, not the id it answers: its seal binds the id of the
            // search it names. One that names no search of ours is nothing to check.
            let answered = match (&message.body, &message.sender) {
                (Body::Found(_), Sender::Reply { to, tag, .. }) if *to == self.me => {
                    match self.state().searches.id_of(*tag) {
                        Some(id) => Some(id),
                        None => return,
                    }
                }
                (Body::Found(_), Sender::Reply { .. }) => return,
                _ => None,
            };
            if let Err(why) = seals.check(&message, datagram, answered.as_ref()) {
                metrics.dropped(why.label());
                if let Some(dropped) = self.refused[why as usize].hit() {
                    log::warn!(
                        "multicast: dropped a datagram from {from} ({}): {why} under the cluster key ({dropped} dropped as {why} since the last report)",
                        sender.escape_debug()
                    );
                }
                return;
            }
        }
        metrics.received(kind_of(&message.body));
        if let Some(name) = self.transport.peers.heard(from) {
            log::info!("peers: {name} answers again");
            metrics
                .peers_silent
                .set(self.transport.peers.silent() as i64);
        }
        let now = Instant::now();
        let asker = &message.sender;
        let heard = {
            let mut state = self.state();
            let heard =
                (state.sources).heard(sender, from, datagram.len(), Kind::of(&message), now);
            if heard.is_ok() {
                state.note_answer(asker, &message.body, from, &self.me);
            }
            // A cookie's answer proves the sender's address, and is nothing more.
            if let (Ok(_), Body::NotFound(id)) = (&heard, &message.body)
                && (matches!(asker, Sender::Plain(_))
                    || matches!(asker, Sender::Reply { to, .. } if *to == self.me))
                && let Some(id) = ResourceId::parse(id)
                && state.sources.validate(sender, from, &id, now)
            {
                // Its summary, if it announced one already, may be fetched now; and it is
                // pinged, so that it counts as soon as it answers (not at the next ping).
                let fetch = state.summaries.proven(sender, now);
                drop(state);
                if let Some(fetch) = fetch {
                    self.fetch_summary(fetch);
                }
                self.ask(PING_TAG, Body::Query(ResourceId([0; 32])), Some(&[from]));
                return;
            }
            heard
        };
        let heard = match heard {
            Ok(heard) => heard,
            Err(refused) => {
                metrics.dropped(refused.label());
                if let Some(dropped) = self.dropped.hit() {
                    log::warn!(
                        "multicast: dropped {dropped} datagram(s) since the last report, the last from {from} ({}): {}",
                        sender.escape_debug(),
                        refused.label()
                    );
                }
                return;
            }
        };
        let reachable = reachable(self.transport.interface, from.ip());
        if let Some(cookie) = heard.probe
            && reachable
        {
            let sender = Sender::Query {
                from: self.me.clone(),
                tag: PING_TAG,
            };
            self.reply(
                Message::new(sender, Body::Query(cookie)),
                None,
                To::One(from),
                now,
            );
        }
        // Our own kind's (tagged) queries are answered to the asker's socket, the seed's on the
        // group, where they listen.
        let to = match asker {
            Sender::Query { .. } if reachable => To::One(from),
            _ => To::Group,
        };
        // A name answer or a holder list is larger than its query: only for a proven address.
        let big_allowed = || {
            let allowed = matches!(to, To::Group) || heard.validated;
            if !allowed {
                metrics.withheld("unproven");
            }
            allowed
        };
        match message.body {
            Body::Query(id) => {
                let (answer, answered) = answers::id_query(&self.read_index(), &self.me, asker, id);
                self.reply(answer, answered.as_ref(), to, now);
            }
            Body::AllQuery(id) => {
                let answer = answers::all_query(&self.read_index(), &self.me, asker, id);
                if let Some(answer) = answer
                    && big_allowed()
                {
                    self.reply(answer, None, to, now);
                }
            }
            Body::NameQuery { text, node, limit } => {
                if !big_allowed() {
                    return;
                }
                let query = (text.as_str(), node.as_deref(), limit);
                let parts = answers::name_query(&self.read_index(), &self.me, asker, query);
                for (i, part) in parts.into_iter().enumerate() {
                    if i > 0 && i % ANSWER_BURST == 0 {
                        // Hundreds at once would overflow the asker's receive buffer: a breath.
                        thread::sleep(Duration::from_micros(200));
                    }
                    self.reply(part, None, to, now);
                }
            }
            Body::Found(location) => self.on_found(asker, location),
            Body::NotFound(id) => {
                let answerer = match asker {
                    Sender::Reply { from, to, tag } if *to == self.me => {
                        Answerer::Tagged { from, tag: *tag }
                    }
                    Sender::Plain(from) => Answerer::Untagged(from),
                    _ => return,
                };
                let id = ResourceId::parse(&id);
                self.state().searches.not_found(answerer, id);
            }
            Body::AllFound { id, locations } => {
                if let Sender::Reply { from, to, tag } = asker
                    && *to == self.me
                {
                    self.state().searches.all_found(from, *tag, id, locations);
                }
            }
            Body::NameAnswer { part, parts, hits } => {
                if let Sender::Reply { from, to, tag } = asker
                    && *to == self.me
                {
                    let mut state = self.state();
                    state.searches.name_answer(from, *tag, (part, parts), hits);
                }
            }
            Body::Digest {
                http,
                epoch,
                version,
            } => self.on_digest(asker, from, &http, (epoch, version)),
            Body::Leaving => {
                let mut state = self.state();
                if state.sources.left(sender, from) {
                    state.summaries.forget(sender);
                    log::info!(
                        "multicast: {} at {from} left the group",
                        sender.escape_debug()
                    );
                }
            }
        }
    }

    /// Sends an answer (or a cookie) caused by a datagram: to an address that has not proved
    /// itself, only within 3 x what came from it.
    fn reply(&self, message: Message, answered: Option<&ResourceId>, to: To, now: Instant) {
        let kind = kind_of(&message.body);
        let bytes = self.transport.seal(message, answered);
        if let To::One(addr) = to
            && !self.state().sources.may_send(addr, bytes.len(), now)
        {
            self.transport.metrics.withheld("amplification");
            return;
        }
        self.transport.send_bytes(&bytes, kind, to);
    }

    fn on_found(self: &Arc<Self>, sender: &Sender, location: String) {
        match sender {
            Sender::Reply { to, tag, .. } if *to == self.me => {
                self.state().searches.found(*tag, location);
            }
            Sender::Plain(name) => self.check_holder(name, location),
            _ => {}
        }
    }

    /// An untagged `21` from `sender`: while any search waits, asks the holder it names what
    /// it holds, on a thread of its own, and answers the waiting searches for those ids.
    fn check_holder(self: &Arc<Self>, sender: &str, location: String) {
        let own: Vec<SocketAddr> = (self.api.get().and_then(|api| api.parse().ok()))
            .into_iter()
            .chain(self.transport.unicast.local_addr().ok())
            .collect();
        let Some(holder) = legacy::holder(&location, self.transport.interface, &own) else {
            log::debug!("multicast: untagged answer {location:?} names no holder we may ask");
            return;
        };
        {
            let mut state = self.state();
            if state.searches.ids.is_empty() {
                return;
            }
            match state.checks.named(holder, sender, Instant::now()) {
                legacy::Next::Start => {}
                legacy::Next::Joined => return,
                legacy::Next::Busy | legacy::Next::Failed => {
                    log::debug!(
                        "multicast: untagged answer {holder} dropped: checks busy, or it failed lately"
                    );
                    return;
                }
            }
        }
        let inner = self.clone();
        let started = thread::Builder::new()
            .name("legacy-check".into())
            .spawn(move || {
                loop {
                    let held = legacy::held(&inner.holders, holder);
                    let mut state = inner.state();
                    let ok = match held {
                        Ok(held) => {
                            for id in state.searches.held_by(&held, &holder.to_string()) {
                                log::debug!("multicast: untagged answer: {holder} holds {id}");
                            }
                            true
                        }
                        Err(e) => {
                            log::debug!("multicast: cannot ask {holder} what it holds: {e}");
                            false
                        }
                    };
                    if !state.checks.ended(holder, ok, Instant::now()) {
                        break;
                    }
                }
            });
        if started.is_err() {
            let mut state = self.state();
            state.checks.ended(holder, false, Instant::now());
        }
    }
}

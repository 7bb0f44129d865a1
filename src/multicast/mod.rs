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
//! goes), [`hearing`] (what a datagram does once heard), [`sources`] (who sent it and what
//! answering it may cost: open mode's defences), [`asking`] (the searches this supernode asks),
//! [`searches`] (the waiting searches and the rules that end them), [`answers`] (answering
//! from the index), [`summaries`] (the other supernodes' index summaries, and their fetches),
//! [`legacy`] (checking the holders untagged answers name), [`peers`] (`PEERS`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::auth::SealError;
use crate::config::SupernodeConfig;
use crate::error::Error;
use crate::id::ResourceId;
use crate::index::Index;
use crate::logging::Throttle;
use crate::metrics::SupernodeMetrics;
use crate::shutdown::Shutdown;
use crate::wire::{Body, Message, NameHit, Sender};

mod answers;
mod asking;
mod hearing;
mod legacy;
mod peers;
mod searches;
mod sources;
mod summaries;
mod transport;

pub use searches::Outcome;
pub use summaries::SummaryHeld;

use searches::Searches;
use sources::Sources;
use transport::{To, Transport, reachable};

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
            _ if !interface.is_unspecified() => interface,
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
}

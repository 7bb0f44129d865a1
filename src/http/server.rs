//! The listener, the admission of connections, and the threads that serve them.
//!
//! One thread accepts. Errors of `accept` (out of file descriptors, out of memory) are retried
//! with a growing pause, never fatal: the listener serves again as soon as resources free up.
//! A new connection is admitted within two caps, `MAX_CONNECTIONS_PER_IP` and
//! `MAX_CONNECTIONS` (itself kept within the open-files limit). At the total cap, the
//! connection idle the longest (between requests, or not yet begun) is closed to make room,
//! as nginx reuses keep-alive connections; with none idle, and at the per-address cap, the
//! new connection gets a 503 and is closed at once. An admitted connection goes to a waiting
//! pool thread, or to a new one: `HTTP_WORKERS` threads stay ready, others end after a
//! minute without work.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Shutdown as Close, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use socket2::{Domain, Socket, Type};

use super::body::Budget;
use super::conn::{self, Buffers, Shared, Tracked};
use super::head::{HeadLimits, MAX_HEADERS_LIMIT};
use super::{Handler, Reply};
use crate::config::HttpConfig;
use crate::error::{ApiError, Error};
use crate::logging::Throttle;
use crate::metrics::HttpMetrics;
use crate::shutdown::Shutdown;

/// Stack of a connection thread: handlers parse JSON and call other instances, nothing deep.
const STACK_SIZE: usize = 512 << 10;
/// A pool thread beyond `HTTP_WORKERS` ends after this long without a connection.
const SPARE_THREAD_LINGER: Duration = Duration::from_secs(60);
/// How often the accept loop looks at the stop signal.
const ACCEPT_POLL: Duration = Duration::from_millis(250);
/// The longest pause between two failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Pending connections the kernel may queue before the accept loop takes them.
const BACKLOG: i32 = 1024;
/// File descriptors kept for everything but client connections (files served, calls to other
/// instances, the multicast socket, logs).
const RESERVED_FILES: u64 = 64;
const REPORT_PERIOD: Duration = Duration::from_secs(10);

/// A running HTTP server: its address, its accept thread and its connections.
pub struct HttpServer {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    registry: Arc<Registry>,
}

impl HttpServer {
    /// Binds `config.bind` and serves every connection with `handler`.
    pub fn start(
        config: &HttpConfig,
        handler: Arc<Handler>,
        shutdown: Shutdown,
        metrics: HttpMetrics,
    ) -> Result<HttpServer, Error> {
        let listener = listen(config.bind)
            .map_err(|e| Error::io(format!("cannot listen on {}", config.bind), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("bound address", e))?;
        let cap = connection_cap(config.max_connections);
        let registry = Arc::new(Registry::new(
            cap,
            config.max_connections_per_ip,
            metrics.clone(),
        ));
        let shared = Arc::new(Shared {
            metrics,
            limits: HeadLimits {
                request_line: config.max_request_line,
                header_bytes: config.max_header_bytes,
                headers: config.max_headers.min(MAX_HEADERS_LIMIT),
                max_body: config.max_body,
            },
            budget: Budget::new(config.body_memory),
            config: config.clone(),
            handler,
            shutdown,
            refusals: std::array::from_fn(|_| Throttle::new(REPORT_PERIOD)),
            slow_readers: Throttle::new(REPORT_PERIOD),
        });
        let (jobs, queue) = bounded(0);
        let pool = Pool {
            jobs,
            queue,
            shared,
            registry: registry.clone(),
        };
        for _ in 0..config.workers {
            pool.spawn(None, true)
                .map_err(|e| Error::io("cannot start an HTTP thread", e))?;
        }
        let accept = thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(&listener, &pool))
            .map_err(|e| Error::io("cannot start the HTTP accept thread", e))?;
        Ok(HttpServer {
            addr,
            accept,
            registry,
        })
    }

    /// Stops accepting, wakes the connections waiting for a request, and waits (a bounded
    /// time) for the requests in flight. Call after triggering the shutdown.
    pub fn join(self) {
        let _ = self.accept.join();
        self.registry.close_reads();
        self.registry.wait_threads(Duration::from_secs(10));
    }
}

fn listen(bind: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&bind.into())?;
    socket.listen(BACKLOG)?;
    // accept() honours the receive time-out, so the loop can look at the stop signal.
    socket.set_read_timeout(Some(ACCEPT_POLL))?;
    Ok(socket.into())
}

/// `MAX_CONNECTIONS`, within what the open-files limit allows: a connection takes one file
/// descriptor, and a node's content download a second one. The soft limit is first raised to
/// the hard one, as Go's runtime does: systemd's default soft limit is 1024.
fn connection_cap(max_connections: usize) -> usize {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => files,
        Err(e) => {
            log::warn!("http: cannot read or raise the open-files limit: {e}");
            return max_connections;
        }
    };
    let allowed = usize::try_from(files.saturating_sub(RESERVED_FILES) / 2).unwrap_or(usize::MAX);
    if allowed < max_connections {
        log::warn!(
            "http: at most {allowed} connections, not MAX_CONNECTIONS={max_connections}: the open-files limit is {files} (raise it, e.g. LimitNOFILE= in systemd)"
        );
    }
    max_connections.min(allowed).max(1)
}

/// A connection holding its place in the registry; dropping it gives the place back.
struct Admitted {
    tracked: Arc<Tracked>,
    registry: Arc<Registry>,
    accepted: Instant,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.release(&self.tracked);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress,
    Full,
}

#[derive(Default)]
struct Slots {
    conns: HashMap<u64, Arc<Tracked>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections closed to make room whose threads have not let go of them yet.
    evicting: usize,
    next_id: u64,
    threads: usize,
}

/// Every open connection and thread of one server.
struct Registry {
    cap: usize,
    per_ip_cap: usize,
    epoch: Instant,
    slots: Mutex<Slots>,
    no_threads: Condvar,
    evictions: Throttle,
    refusals: [Throttle; 2],
    metrics: HttpMetrics,
}

impl Registry {
    fn new(cap: usize, per_ip_cap: usize, metrics: HttpMetrics) -> Registry {
        Registry {
            cap,
            per_ip_cap,
            metrics,
            epoch: Instant::now(),
            slots: Mutex::new(Slots::default()),
            no_threads: Condvar::new(),
            evictions: Throttle::new(REPORT_PERIOD),
            refusals: [Throttle::new(REPORT_PERIOD), Throttle::new(REPORT_PERIOD)],
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<Admitted, (TcpStream, Refusal)> {
        let ip = peer.ip().to_canonical();
        let mut slots = self.slots();
        if slots.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip_cap {
            return Err((stream, Refusal::PerAddress));
        }
        if slots.conns.len() - slots.evicting >= self.cap {
            let idlest = slots
                .conns
                .values()
                .filter(|c| !c.evicted.load(Ordering::Relaxed))
                .filter_map(|c| match c.idle_since.load(Ordering::Relaxed) {
                    0 => None,
                    since => Some(((since, c.id), c)),
                })
                .min_by_key(|(age, _)| *age)
                .map(|(_, c)| c.clone());
            let Some(idlest) = idlest else {
                return Err((stream, Refusal::Full));
            };
            idlest.evicted.store(true, Ordering::Relaxed);
            // Its thread sees the end of the connection and lets go of the place.
            let _ = idlest.stream.shutdown(Close::Both);
            slots.evicting += 1;
            self.metrics.refused("evicted_idle");
            if let Some(count) = self.evictions.hit() {
                log::warn!(
                    "http: {} connections open (MAX_CONNECTIONS): closed the one idle longest, from {}, to admit {peer} ({count} such since the last report)",
                    self.cap,
                    idlest.peer
                );
            }
        }
        slots.next_id += 1;
        let tracked = Arc::new(Tracked {
            stream,
            peer,
            id: slots.next_id,
            epoch: self.epoch,
            // Nothing read yet: idle until its thread has a request in hand.
            idle_since: AtomicU64::new(self.epoch.elapsed().as_micros() as u64 + 1),
            evicted: AtomicBool::new(false),
        });
        slots.conns.insert(tracked.id, tracked.clone());
        *slots.per_ip.entry(ip).or_insert(0) += 1;
        self.metrics.connections_open.inc();
        Ok(Admitted {
            tracked,
            registry: self.clone(),
            accepted: Instant::now(),
        })
    }

    fn release(&self, tracked: &Tracked) {
        let mut slots = self.slots();
        if slots.conns.remove(&tracked.id).is_none() {
            return;
        }
        self.metrics.connections_open.dec();
        if tracked.evicted.load(Ordering::Relaxed) {
            slots.evicting -= 1;
        }
        let ip = tracked.peer.ip().to_canonical();
        if let Some(count) = slots.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                slots.per_ip.remove(&ip);
            }
        }
    }

    fn log_refusal(&self, peer: SocketAddr, why: Refusal) {
        self.metrics.refused(match why {
            Refusal::PerAddress => "per_address",
            Refusal::Full => "full",
        });
        let (throttle, what) = match why {
            Refusal::PerAddress => (
                &self.refusals[0],
                format!(
                    "{} connections from its address (MAX_CONNECTIONS_PER_IP)",
                    self.per_ip_cap
                ),
            ),
            Refusal::Full => (
                &self.refusals[1],
                format!(
                    "{} connections open and none idle (MAX_CONNECTIONS)",
                    self.cap
                ),
            ),
        };
        if let Some(count) = throttle.hit() {
            log::warn!(
                "http: refused a connection from {peer}: {what} ({count} refused since the last report)"
            );
        }
    }

    /// Wakes every connection thread blocked on a read (at shutdown).
    fn close_reads(&self) {
        for conn in self.slots().conns.values() {
            let _ = conn.stream.shutdown(Close::Read);
        }
    }

    fn thread_started(&self) {
        self.slots().threads += 1;
    }

    fn thread_ended(&self) {
        let mut slots = self.slots();
        slots.threads -= 1;
        if slots.threads == 0 {
            self.no_threads.notify_all();
        }
    }

    fn wait_threads(&self, limit: Duration) {
        let slots = self.slots();
        let _ = self
            .no_threads
            .wait_timeout_while(slots, limit, |slots| slots.threads > 0);
    }
}

/// Answers a connection that will not be served with a 503, without waiting for anything.
fn turn_away(stream: &TcpStream, why: &str) {
    let reply = Reply::error(&ApiError::Unavailable(why.into()));
    let mut out = Vec::with_capacity(256);
    reply.write_head(&mut out, Some("close"));
    out.extend_from_slice(reply.body_bytes());
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&*stream).write(&out);
    }
}

/// Threads that serve connections: idle ones wait on `queue`; new ones start when none waits.
struct Pool {
    jobs: Sender<Admitted>,
    queue: Receiver<Admitted>,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl Pool {
    /// Hands `conn` to a waiting thread, or starts one for it.
    fn dispatch(&self, conn: Admitted) -> io::Result<()> {
        match self.jobs.try_send(conn) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(conn) | TrySendError::Disconnected(conn)) => {
                let tracked = conn.tracked.clone();
                self.spawn(Some(conn), false).inspect_err(|_| {
                    // The thread never ran: its connection is ours to answer and close.
                    turn_away(
                        &tracked.stream,
                        "the server cannot start a thread now; retry",
                    );
                })
            }
        }
    }

    /// Starts a thread that serves `first`, then whatever the queue brings. A `ready` thread
    /// waits for work forever; a spare one ends after a minute without any.
    fn spawn(&self, first: Option<Admitted>, ready: bool) -> io::Result<()> {
        let queue = self.queue.clone();
        let shared = self.shared.clone();
        let registry = self.registry.clone();
        registry.thread_started();
        let spawned = thread::Builder::new()
            .name("http".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _ended = ThreadEnd(&registry);
                let mut buffers = Buffers::default();
                let mut next = first;
                loop {
                    if let Some(conn) = next.take() {
                        // A panic outside the handler (which has its own guard) costs this
                        // connection, not the thread: the place is given back as `conn` drops.
                        let _ = catch_unwind(AssertUnwindSafe(|| {
                            conn::serve(&conn.tracked, conn.accepted, &shared, &mut buffers);
                        }));
                    }
                    let job = if ready {
                        queue.recv().ok()
                    } else {
                        queue.recv_timeout(SPARE_THREAD_LINGER).ok()
                    };
                    match job {
                        Some(conn) => next = Some(conn),
                        None => break,
                    }
                }
            });
        spawned
            .map(drop)
            .inspect_err(|_| self.registry.thread_ended())
    }
}

/// Counts a pool thread out when it ends, however it ends.
struct ThreadEnd<'a>(&'a Registry);

impl Drop for ThreadEnd<'_> {
    fn drop(&mut self) {
        self.0.thread_ended();
    }
}

fn accept_loop(listener: &TcpListener, pool: &Pool) {
    let shutdown = &pool.shared.shutdown;
    let failures = Throttle::new(REPORT_PERIOD);
    let mut backoff = Duration::ZERO;
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff = Duration::ZERO;
                // The listener must outlive any bug in what follows: a panic costs this
                // connection only.
                let admitted = catch_unwind(AssertUnwindSafe(|| {
                    admit(pool, stream, peer, &failures);
                }));
                if admitted.is_err() {
                    log::error!("http: admitting {peer} panicked; the listener goes on");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                // Out of file descriptors or memory: wait for some to free up, and try again.
                backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                if let Some(count) = failures.hit() {
                    log::warn!(
                        "http: cannot accept connections: {e}; retrying every {backoff:?} at most ({count} failure(s) since the last report)"
                    );
                }
                shutdown.sleep(backoff);
            }
        }
    }
}

/// Admits a new connection and hands it to a thread, or turns it away with a 503.
fn admit(pool: &Pool, stream: TcpStream, peer: SocketAddr, failures: &Throttle) {
    let registry = &pool.registry;
    match registry.admit(stream, peer) {
        Ok(conn) => {
            if let Err(e) = pool.dispatch(conn) {
                if let Some(count) = failures.hit() {
                    log::warn!(
                        "http: cannot start a thread for {peer}: {e} ({count} failure(s) since the last report)"
                    );
                }
                // Threads free up as connections end: give them a moment.
                pool.shared.shutdown.sleep(Duration::from_millis(10));
            }
        }
        Err((stream, why)) => {
            registry.log_refusal(peer, why);
            let reason = match why {
                Refusal::PerAddress => {
                    "too many connections from your address; close some and retry"
                }
                Refusal::Full => "too many connections; retry in a moment",
            };
            turn_away(&stream, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, http_config};
    use crate::http::{Method, Request};

    #[test]
    fn a_panicking_handler_is_a_500_and_the_thread_lives_on() {
        let shutdown = Shutdown::new();
        let handler: Arc<Handler> = Arc::new(|request: &Request| {
            if request.path == "/panic" {
                panic!("deliberate");
            }
            assert_eq!(request.method, Method::Get);
            Ok(Reply::data(200, "ok", &"fine"))
        });
        // One ready thread and one connection after another: if the panic killed the
        // thread, its connection would still be served by a new one, so also check it is the
        // same connection that keeps working.
        let settings = Settings::from_pairs(
            [
                ("LPORT".to_string(), "0".to_string()),
                ("HTTP_WORKERS".into(), "1".into()),
            ],
            [],
        );
        let config = http_config(&settings).unwrap();
        let server =
            HttpServer::start(&config, handler, shutdown.clone(), HttpMetrics::detached()).unwrap();
        let agent = crate::client::agent(Duration::from_secs(5));
        let url = |path: &str| format!("http://{}{path}", server.addr);
        let status = |path: &str| agent.get(&url(path)).call().unwrap().status().as_u16();
        assert_eq!(status("/panic"), 500);
        assert_eq!(status("/fine"), 200);
        assert_eq!(status("/panic"), 500);
        assert_eq!(status("/fine"), 200);
        shutdown.trigger();
        let stopping = Instant::now();
        server.join();
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "join took {:?}",
            stopping.elapsed()
        );
    }
}

//! One connection, from its first byte to its close, on the thread that owns it.
//!
//! Every wait has a deadline: the first byte of the next request (`HTTP_IDLE_TIMEOUT_MS`), the
//! whole head (`HTTP_HEAD_TIMEOUT_MS`, counted from the connection's accept or the request's
//! first byte), the whole body (`HTTP_BODY_TIMEOUT_MS`), and each piece of the answer
//! (`HTTP_WRITE_TIMEOUT_MS`). Deadlines are socket time-outs (`sock`). Nothing is allocated by
//! a number the client sent: buffers grow with the bytes that actually arrive, and a body is
//! read within a memory budget (`body`).

use std::io;
use std::net::{Shutdown as Close, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::body::{self, Budget, Reservation};
use super::head::{self, Framing, HeadLimits};
use super::mapped::Window;
use super::sock::{Sock, WRITE_PIECE, is_timeout};
use super::{Handler, Method, Reply, ReplyBody, Request, split_target};
use crate::api::Routed;
use crate::config::HttpConfig;
use crate::error::ApiError;
use crate::logging::Throttle;
use crate::shutdown::Shutdown;

/// One admitted connection, as the registry sees it.
pub(super) struct Tracked {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub(super) id: u64,
    pub(super) epoch: Instant,
    /// Microseconds since `epoch` (plus one) since when it has waited for a request with
    /// nothing of it read yet; 0 while a request is in progress.
    pub(super) idle_since: AtomicU64,
    pub(super) evicted: AtomicBool,
}

impl Tracked {
    /// Marks the connection idle (keeping the time it became so) or busy.
    pub fn set_idle(&self, idle: bool) {
        if idle {
            let now = self.epoch.elapsed().as_micros() as u64 + 1;
            let _ = self
                .idle_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.idle_since.store(0, Ordering::Relaxed);
        }
    }
}

/// A head buffer starts this large and grows, up to the head limits, only as bytes arrive.
const HEAD_BUFFER: usize = 8 << 10;
/// Buffers larger than this are given back to the allocator after the request.
const KEEP_BUFFER: usize = 64 << 10;
/// A file is mapped (see `mapped`) this much at a time, so that a download of any size holds
/// a bounded part of the address space and page tables.
const FILE_WINDOW: usize = 32 << 20;
/// A mapped file is written in calls of this size: 256 KiB calls measured 0.7 of 1 MiB ones.
/// Not `sendfile`: the pages it hands to the socket can still change after the last look at
/// the file, and on loopback it measured under half of this (nginx sets `TCP_CORK` for it).
const FILE_PIECE: usize = 1 << 20;
/// After an error answer, unread request bytes are read and dropped for at most this long (and
/// this much), so that closing does not reset the connection before the client reads the
/// answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// What every connection of one server shares.
pub(super) struct Shared {
    pub metrics: crate::metrics::HttpMetrics,
    pub config: HttpConfig,
    pub limits: HeadLimits,
    pub handler: std::sync::Arc<Handler>,
    pub shutdown: Shutdown,
    pub budget: Budget,
    /// One throttled log line per kind of refusal.
    pub refusals: [Throttle; 8],
    pub slow_readers: Throttle,
}

impl Shared {
    /// Logs a request refused at the HTTP layer, at most one line per 10 s per status.
    fn log_refusal(&self, peer: SocketAddr, error: &ApiError) {
        let slot = match error.status() {
            400 => 0,
            408 => 1,
            413 => 2,
            414 => 3,
            431 => 4,
            501 => 5,
            503 => 6,
            _ => 7,
        };
        if let Some(count) = self.refusals[slot].hit() {
            log::warn!(
                "http: {} to {peer}: {} ({count} such answer(s) since the last report)",
                error.status(),
                error.description()
            );
        }
    }
}

impl Shared {
    fn log_slow_reader(&self, peer: SocketAddr) {
        if let Some(count) = self.slow_readers.hit() {
            log::warn!(
                "http: dropped {peer}: it did not take its answer within {:?} (HTTP_WRITE_TIMEOUT_MS; {count} dropped since the last report)",
                self.config.write_timeout
            );
        }
    }
}

/// The buffers a connection thread keeps from one connection to the next.
#[derive(Default)]
pub(super) struct Buffers {
    head: Vec<u8>,
    body: Vec<u8>,
    out: Vec<u8>,
    scratch: Vec<u8>,
}

impl Buffers {
    fn trim(&mut self) {
        for buffer in [&mut self.body, &mut self.out, &mut self.scratch] {
            if buffer.capacity() > KEEP_BUFFER {
                *buffer = Vec::new();
            }
        }
    }
}

/// How a request ended when it did not end with an answer and a next request.
pub(super) enum Failure {
    /// Nothing to say: the client left, went quiet, or cannot be written to.
    Closed,
    /// Answer with this error, then close.
    Answer(ApiError),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure::Answer(error)
    }
}

/// Serves one connection until it closes, fails or the server stops.
pub(super) fn serve(tracked: &Tracked, accepted: Instant, shared: &Shared, bufs: &mut Buffers) {
    let stream = &tracked.stream;
    let _ = stream.set_nodelay(true);
    let mut sock = Sock::new(stream);
    if bufs.head.len() < HEAD_BUFFER {
        bufs.head.resize(HEAD_BUFFER, 0);
    }
    let mut filled = 0;
    // The first head is due a head time-out after the accept: a connection that says nothing
    // is closed then.
    let mut head_deadline = Some(accepted + shared.config.head_timeout);
    loop {
        let outcome = one_request(&mut sock, tracked, &mut filled, head_deadline, shared, bufs);
        match outcome {
            Ok(true) if !shared.shutdown.is_triggered() => head_deadline = None,
            Ok(_) | Err(Failure::Closed) => break,
            Err(Failure::Answer(error)) => {
                shared.log_refusal(tracked.peer, &error);
                shared.metrics.answered("rejected", error.status(), None);
                let reply = Reply::error(&error);
                let (out, timeout) = (&mut bufs.out, shared.config.write_timeout);
                let sent = send(&mut sock, reply, out, false, Some("close"), timeout);
                if sent.is_ok() {
                    linger(&mut sock, &mut bufs.scratch);
                }
                break;
            }
        }
    }
    if bufs.head.len() > KEEP_BUFFER {
        bufs.head = vec![0; HEAD_BUFFER];
    }
    bufs.trim();
}

/// Reads, answers and writes one request; `Ok(true)` when the connection may carry another.
fn one_request(
    sock: &mut Sock,
    tracked: &Tracked,
    filled: &mut usize,
    head_deadline: Option<Instant>,
    shared: &Shared,
    bufs: &mut Buffers,
) -> Result<bool, Failure> {
    let end = read_head(sock, tracked, &mut bufs.head, filled, head_deadline, shared)?;
    let started = Instant::now();
    let mut storage = head::header_storage();
    let head = head::parse(&bufs.head[..end], &mut storage, &shared.limits)?;
    let (method, head_only) = match head.method {
        "GET" => (Method::Get, false),
        "HEAD" => (Method::Get, true),
        "POST" => (Method::Post, false),
        _ => (Method::Other, false),
    };
    let (path, query) = split_target(head.target);
    let mut request = Request {
        method,
        head: head_only,
        path,
        query,
        headers: head.headers,
        body: &[],
        peer: Some(tracked.peer),
    };
    let route = shared.handler.route(&request);
    if head.framing != Framing::None {
        // Before a byte of the body is read, the service may refuse it (an unsigned upload).
        shared.handler.check_head(&request, &route)?;
    }
    let mut keep_alive = head.keep_alive;
    let mut reservation = Reservation::new(&shared.budget);
    let body_deadline = || Instant::now() + shared.config.body_timeout;
    let (body, consumed): (&[u8], usize) = match head.framing {
        Framing::None => (&[], end),
        Framing::Length(len) => {
            // At most MAX_BODY_BYTES, which fits in memory by configuration.
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if *filled - end >= len {
                (&bufs.head[end..end + len], end + len)
            } else {
                if head.expect_continue {
                    body::continue_(sock, shared)?;
                }
                let deadline = body_deadline();
                let have = &bufs.head[end..*filled];
                body::read_body(sock, &mut bufs.body, have, len, deadline, &mut reservation)?;
                (&bufs.body, *filled)
            }
        }
        Framing::Chunked => {
            if head.expect_continue {
                body::continue_(sock, shared)?;
            }
            let deadline = body_deadline();
            let have = &bufs.head[end..*filled];
            let limit = shared.limits;
            body::read_chunked(
                sock,
                &mut bufs.body,
                have,
                &limit,
                deadline,
                &mut reservation,
            )?;
            // What came after the body was read with it and dropped: this connection ends here.
            keep_alive = false;
            (&bufs.body, *filled)
        }
    };
    if head.framing == Framing::None {
        shared.handler.check_head(&request, &route)?;
    }
    request.body = body;
    let reply = run_handler(&*shared.handler, &request, &route);
    let (status, searched) = (reply.status, reply.searched);
    let keep_alive = keep_alive && !shared.shutdown.is_triggered();
    let connection = match (keep_alive, head.minor_version) {
        (false, _) => Some("close"),
        (true, 0) => Some("keep-alive"),
        (true, _) => None,
    };
    let timeout = shared.config.write_timeout;
    let written = send(sock, reply, &mut bufs.out, head_only, connection, timeout);
    let took = started.elapsed();
    shared.metrics.answered(route.name, status, Some(took));
    shared.handler.answered(&route, searched, took);
    if log::log_enabled!(log::Level::Debug) {
        log::debug!(
            "http: {} {} {} -> {status} in {took:.1?}",
            tracked.peer,
            head.method,
            head.target,
        );
    }
    // A large body's buffer goes back to the allocator before its share of the budget does.
    if bufs.body.capacity() > KEEP_BUFFER {
        bufs.body = Vec::new();
    }
    drop(reservation);
    if let Err(e) = written {
        if is_timeout(&e) {
            shared.log_slow_reader(tracked.peer);
        }
        return Err(Failure::Closed);
    }
    // Whatever follows the request is the start of the next one (pipelining).
    bufs.head.copy_within(consumed..*filled, 0);
    *filled -= consumed;
    Ok(keep_alive)
}

/// Runs the handler; a panic is logged and answered 500, and the thread lives on.
fn run_handler(handler: &Handler, request: &Request, route: &Routed) -> Reply {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(request, route))) {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => Reply::error(&error),
        Err(_) => {
            log::error!("handler panicked on {:?} {}", request.method, request.path);
            Reply::error(&ApiError::Internal)
        }
    }
}

/// Waits for a complete head in `buf[..filled]`; returns its length.
fn read_head(
    sock: &mut Sock,
    tracked: &Tracked,
    buf: &mut Vec<u8>,
    filled: &mut usize,
    deadline: Option<Instant>,
    shared: &Shared,
) -> Result<usize, Failure> {
    let limits = &shared.limits;
    let head_timeout = shared.config.head_timeout;
    // A pipelined request already begun is due a head time-out from now.
    let mut deadline = deadline.or_else(|| (*filled > 0).then(|| Instant::now() + head_timeout));
    let mut scanned = 0;
    loop {
        // Empty lines before a request line are allowed (RFC 9112, 2.2): drop them.
        let blank = buf[..*filled]
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            buf.copy_within(blank..*filled, 0);
            *filled -= blank;
            scanned = 0;
        }
        if *filled > 0 {
            if let Some(end) = head::head_end(&buf[..*filled], scanned, limits)? {
                return Ok(end);
            }
            scanned = *filled;
        }
        if *filled == buf.len() {
            if buf.len() >= limits.max_head() {
                // head_end refuses a head over its limits before it gets this long.
                return Err(
                    ApiError::HeaderTooLarge("the request head is too large".into()).into(),
                );
            }
            let grown = (buf.len() * 2).clamp(HEAD_BUFFER, limits.max_head());
            buf.resize(grown, 0);
        }
        let waiting = *filled == 0;
        if waiting {
            tracked.set_idle(true);
        }
        let result = match deadline {
            Some(deadline) => sock.read_by(&mut buf[*filled..], deadline),
            None => sock.read_for(&mut buf[*filled..], shared.config.idle_timeout),
        };
        if waiting {
            tracked.set_idle(false);
        }
        match result {
            Ok(0) if *filled == 0 => return Err(Failure::Closed),
            Ok(0) => {
                return Err(ApiError::BadRequest(
                    "the connection was closed in the middle of the request head".into(),
                )
                .into());
            }
            Ok(n) => {
                *filled += n;
                deadline.get_or_insert_with(|| Instant::now() + head_timeout);
            }
            Err(e) if is_timeout(&e) && *filled > 0 => {
                return Err(ApiError::RequestTimeout(format!(
                    "the request head did not arrive within {head_timeout:?}"
                ))
                .into());
            }
            Err(_) => return Err(Failure::Closed),
        }
    }
}

/// Writes `reply`: a small JSON body goes out with the head in one write.
fn send(
    sock: &mut Sock,
    reply: Reply,
    out: &mut Vec<u8>,
    head_only: bool,
    connection: Option<&str>,
    timeout: Duration,
) -> io::Result<()> {
    out.clear();
    reply.write_head(out, connection);
    let body: &[u8] = match &reply.body {
        _ if head_only => &[],
        ReplyBody::Empty | ReplyBody::File { .. } => &[],
        ReplyBody::Json(bytes) => bytes,
        ReplyBody::SharedJson(bytes) => bytes,
        ReplyBody::Typed { bytes, .. } => bytes,
    };
    if body.len() <= WRITE_PIECE {
        out.extend_from_slice(body);
        sock.write_all(out, timeout)?;
    } else {
        sock.write_all(out, timeout)?;
        sock.write_all(body, timeout)?;
    }
    if let ReplyBody::Json(bytes) = reply.body {
        super::recycle(bytes);
        return Ok(());
    }
    if let (
        ReplyBody::File {
            file,
            offset,
            len,
            unchanged,
            ..
        },
        false,
    ) = (reply.body, head_only)
    {
        send_file(sock, (file, offset, len), &*unchanged, timeout)?;
    }
    Ok(())
}

/// Streams `len` bytes of `file` from `offset`, mapped a window at a time. The file's metadata
/// is looked at once more before the last piece goes: a client never gets a complete answer
/// from a file that changed under the transfer (it is cut with an error instead), nor from one
/// cut short (the write of what is no longer there fails).
fn send_file(
    sock: &mut Sock,
    (file, offset, len): (std::fs::File, u64, u64),
    unchanged: &dyn Fn(&std::fs::Metadata) -> bool,
    timeout: Duration,
) -> io::Result<()> {
    let mut sent = 0u64;
    while sent < len {
        let want = (len - sent).min(FILE_WINDOW as u64) as usize;
        let window = Window::map(&file, offset + sent, want).inspect_err(|e| {
            // The answer's head has gone: the client sees the download cut, and this says why.
            log::warn!("http: a file cannot be mapped to be sent ({e}); the download is cut");
        })?;
        for piece in window.for_write().chunks(FILE_PIECE) {
            if sent + piece.len() as u64 == len && !file.metadata().is_ok_and(|m| unchanged(&m)) {
                log::warn!("http: a file changed while it was sent; the download is cut");
                return Err(io::Error::other("the file is no longer the one hashed"));
            }
            if let Err(e) = sock.write_all(piece, timeout) {
                if file.metadata().is_ok_and(|m| m.len() < offset + len) {
                    log::warn!("http: a file shrank while it was sent; the download is cut");
                }
                return Err(e);
            }
            sent += piece.len() as u64;
        }
    }
    Ok(())
}

fn linger(sock: &mut Sock, scratch: &mut Vec<u8>) {
    if sock.stream.shutdown(Close::Write).is_err() {
        return;
    }
    scratch.resize(16 << 10, 0);
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match sock.read_by(scratch, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

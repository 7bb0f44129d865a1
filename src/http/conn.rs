//! One connection, from its first byte to its close, on the thread that owns it.
//!
//! Every wait has a deadline: the first byte of the next request (`HTTP_IDLE_TIMEOUT_MS`), the
//! whole head (`HTTP_HEAD_TIMEOUT_MS`, counted from the connection's accept or the request's
//! first byte), the whole body (`HTTP_BODY_TIMEOUT_MS`), and each piece of the answer
//! (`HTTP_WRITE_TIMEOUT_MS`). Deadlines are socket time-outs, set only when they change, so a
//! request that arrives in one read costs no extra system call. Nothing is allocated by a
//! number the client sent: buffers grow with the bytes that actually arrive, and a body beyond
//! 64 KiB draws on a budget shared by every connection (`BODY_MEMORY_BYTES`).

use std::io::{self, Read, Write};
use std::net::{Shutdown as Close, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::head::{self, Framing, HeadLimits};
use super::mapped::Window;
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
/// Bodies up to this size need nothing from the body budget.
const FREE_BODY: usize = 64 << 10;
/// A client must take each this many bytes of an answer within the write deadline; a JSON
/// body up to this size goes out in one write with its head.
const WRITE_PIECE: usize = 256 << 10;
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
/// A chunk-size line of a chunked body may be this long (extensions included).
const CHUNK_LINE: usize = 1024;

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

/// Bytes of request bodies held in memory beyond the free 64 KiB of each, all connections
/// together (`BODY_MEMORY_BYTES`).
pub(super) struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A share of the [`Budget`], given back when dropped.
struct Reservation<'a> {
    budget: &'a Budget,
    held: u64,
}

impl Reservation<'_> {
    /// Makes sure a body buffer of `capacity` bytes is covered.
    fn cover(&mut self, capacity: usize) -> Result<(), Failure> {
        let need = capacity.saturating_sub(FREE_BODY) as u64;
        if need > self.held {
            if !self.budget.take(need - self.held) {
                return Err(Failure::Answer(ApiError::Unavailable(
                    "the server holds as many request bodies as it may; retry in a moment".into(),
                )));
            }
            self.held = need;
        }
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.give(self.held);
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
enum Failure {
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

/// The socket with the time-outs last set on it, so that each is set only when it changes.
struct Sock<'s> {
    stream: &'s TcpStream,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

fn timed_out() -> io::Error {
    io::Error::from(io::ErrorKind::TimedOut)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Sets a socket time-out through `set` unless it is already `timeout`; a time-out under a
/// millisecond is one that has passed.
fn arm(
    current: &mut Option<Duration>,
    timeout: Duration,
    set: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    if timeout < Duration::from_millis(1) {
        return Err(timed_out());
    }
    if *current != Some(timeout) {
        set(Some(timeout))?;
        *current = Some(timeout);
    }
    Ok(())
}

impl Sock<'_> {
    fn arm_read(&mut self, timeout: Duration) -> io::Result<()> {
        let stream = self.stream;
        arm(&mut self.read_timeout, timeout, |t| {
            stream.set_read_timeout(t)
        })
    }

    fn arm_write(&mut self, timeout: Duration) -> io::Result<()> {
        let stream = self.stream;
        arm(&mut self.write_timeout, timeout, |t| {
            stream.set_write_timeout(t)
        })
    }

    /// Reads what is there, waiting at most `timeout` for it.
    fn read_for(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.arm_read(timeout)?;
        loop {
            match (&*self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    /// Reads what is there, waiting until `deadline` at most.
    fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.read_for(buf, deadline.saturating_duration_since(Instant::now()))
    }

    /// Writes all of `data` in as few calls as the socket takes it, the client taking each
    /// [`WRITE_PIECE`] bytes within `timeout` (a call that times out part-way returns what
    /// went, so a client is dropped within `timeout` of its last 256 KiB).
    fn write_all(&mut self, data: &[u8], timeout: Duration) -> io::Result<()> {
        self.arm_write(timeout)?;
        let mut deadline = Instant::now() + timeout;
        let (mut written, mut earned) = (0, 0);
        while written < data.len() {
            match (&*self.stream).write(&data[written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if written < data.len() {
                // A slow reader: another piece taken earns it another `timeout`; else the rest
                // gets what is left of its time.
                if written - earned >= WRITE_PIECE {
                    earned = written;
                    deadline = Instant::now() + timeout;
                }
                self.arm_write(deadline.saturating_duration_since(Instant::now()))?;
            }
        }
        Ok(())
    }
}

/// Serves one connection until it closes, fails or the server stops.
pub(super) fn serve(tracked: &Tracked, accepted: Instant, shared: &Shared, bufs: &mut Buffers) {
    let stream = &tracked.stream;
    let _ = stream.set_nodelay(true);
    let mut sock = Sock {
        stream,
        read_timeout: None,
        write_timeout: None,
    };
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
    let mut reservation = Reservation {
        budget: &shared.budget,
        held: 0,
    };
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
                    continue_(sock, shared)?;
                }
                let deadline = body_deadline();
                let have = &bufs.head[end..*filled];
                read_body(sock, &mut bufs.body, have, len, deadline, &mut reservation)?;
                (&bufs.body, *filled)
            }
        }
        Framing::Chunked => {
            if head.expect_continue {
                continue_(sock, shared)?;
            }
            let deadline = body_deadline();
            let have = &bufs.head[end..*filled];
            let limit = shared.limits;
            read_chunked(
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

/// `100 Continue`: the client waits for it before it sends the body.
fn continue_(sock: &mut Sock, shared: &Shared) -> Result<(), Failure> {
    sock.write_all(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        shared.config.write_timeout,
    )
    .map_err(|_| Failure::Closed)
}

fn body_error(e: &io::Error, deadline_passed: bool) -> Failure {
    if is_timeout(e) || deadline_passed {
        ApiError::RequestTimeout("the request body did not arrive in time".into()).into()
    } else {
        Failure::Closed
    }
}

/// Reads a body of `len` bytes (`have` of them already read with the head) into `body`.
fn read_body(
    sock: &mut Sock,
    body: &mut Vec<u8>,
    have: &[u8],
    len: usize,
    deadline: Instant,
    reservation: &mut Reservation,
) -> Result<(), Failure> {
    let first = len.min(FREE_BODY.max(have.len()));
    reservation.cover(first)?;
    body.clear();
    body.resize(first, 0);
    body[..have.len()].copy_from_slice(have);
    let mut got = have.len();
    while got < len {
        if got == body.len() {
            let grown = (body.len() * 2).clamp(FREE_BODY, len);
            reservation.cover(grown)?;
            body.resize(grown, 0);
        }
        match sock.read_by(&mut body[got..], deadline) {
            Ok(0) => {
                return Err(ApiError::BadRequest(format!(
                    "the body ended after {got} of {len} bytes"
                ))
                .into());
            }
            Ok(n) => got += n,
            Err(e) => return Err(body_error(&e, Instant::now() >= deadline)),
        }
    }
    Ok(())
}

/// The bytes of a chunked body, as they come: what was read with the head, then the socket.
struct Incoming<'a, 's> {
    sock: &'a mut Sock<'s>,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Incoming<'_, '_> {
    /// At least one unread byte in `buf[pos..]`.
    fn fill(&mut self) -> Result<(), Failure> {
        if self.pos < self.buf.len() {
            return Ok(());
        }
        self.buf.resize(16 << 10, 0);
        self.pos = 0;
        match self.sock.read_by(&mut self.buf, self.deadline) {
            Ok(0) => {
                self.buf.clear();
                Err(ApiError::BadRequest("the chunked body ended early".into()).into())
            }
            Ok(n) => {
                self.buf.truncate(n);
                Ok(())
            }
            Err(e) => {
                self.buf.clear();
                Err(body_error(&e, Instant::now() >= self.deadline))
            }
        }
    }

    /// One line without its line end, at most `max` bytes long.
    fn line(&mut self, max: usize, line: &mut Vec<u8>) -> Result<(), Failure> {
        line.clear();
        loop {
            self.fill()?;
            let byte = self.buf[self.pos];
            self.pos += 1;
            match byte {
                b'\n' => {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(());
                }
                _ if line.len() >= max => {
                    return Err(ApiError::BadRequest(format!(
                        "a line of the chunked body is over {max} bytes"
                    ))
                    .into());
                }
                _ => line.push(byte),
            }
        }
    }
}

/// Reads a chunked body into `body`, within `MAX_BODY_BYTES` and the budget.
fn read_chunked(
    sock: &mut Sock,
    body: &mut Vec<u8>,
    have: &[u8],
    limits: &HeadLimits,
    deadline: Instant,
    reservation: &mut Reservation,
) -> Result<(), Failure> {
    let mut incoming = Incoming {
        sock,
        buf: have.to_vec(),
        pos: 0,
        deadline,
    };
    let mut line = Vec::new();
    body.clear();
    loop {
        incoming.line(CHUNK_LINE, &mut line)?;
        let size_text = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .filter(|text| !text.is_empty() && text.len() <= 15)
            .and_then(|text| u64::from_str_radix(text, 16).ok())
            .ok_or_else(|| ApiError::BadRequest("malformed chunk size".into()))?;
        if size == 0 {
            break;
        }
        let total = (body.len() as u64).saturating_add(size);
        if total > limits.max_body {
            return Err(ApiError::PayloadTooLarge(limits.max_body).into());
        }
        let mut left = size as usize;
        while left > 0 {
            incoming.fill()?;
            let take = left.min(incoming.buf.len() - incoming.pos);
            if body.len() + take > body.capacity() {
                let grown = (body.len() + take)
                    .max(body.capacity() * 2)
                    .clamp(FREE_BODY, total as usize);
                reservation.cover(grown)?;
                body.reserve_exact(grown - body.len());
            }
            body.extend_from_slice(&incoming.buf[incoming.pos..incoming.pos + take]);
            incoming.pos += take;
            left -= take;
        }
        incoming.line(0, &mut line)?;
    }
    // Trailer fields, if any, until the empty line; counted against the header limit.
    let mut trailers = 0;
    loop {
        incoming.line(limits.header_bytes, &mut line)?;
        if line.is_empty() {
            return Ok(());
        }
        trailers += line.len() + 2;
        if trailers > limits.header_bytes {
            return Err(ApiError::HeaderTooLarge("the trailer section is too large".into()).into());
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

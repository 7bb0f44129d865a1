//! A request's body: read whole into the connection's buffer, by `Content-Length` or chunked,
//! within the body deadline and `MAX_BODY_BYTES`. Beyond 64 KiB a body draws on a budget shared
//! by every connection (`BODY_MEMORY_BYTES`), so many large bodies at once are refused with a
//! 503 rather than held.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::conn::{Failure, Shared};
use super::head::HeadLimits;
use super::sock::{Sock, is_timeout};
use crate::error::ApiError;

/// Bodies up to this size need nothing from the body budget.
const FREE_BODY: usize = 64 << 10;
/// A chunk-size line of a chunked body may be this long (extensions included).
const CHUNK_LINE: usize = 1024;

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
pub(super) struct Reservation<'a> {
    budget: &'a Budget,
    held: u64,
}

impl<'a> Reservation<'a> {
    pub(super) fn new(budget: &'a Budget) -> Reservation<'a> {
        Reservation { budget, held: 0 }
    }

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

/// `100 Continue`: the client waits for it before it sends the body.
pub(super) fn continue_(sock: &mut Sock, shared: &Shared) -> Result<(), Failure> {
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
pub(super) fn read_body(
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
pub(super) fn read_chunked(
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

//! The request head: where it ends, whether it fits its limits, and what it says about the body.
//!
//! Pure functions over bytes, so the limits are unit-tested and fuzzed without a socket. The
//! head is checked while it arrives: a request line over its limit is a 414 and a header
//! section over its limit a 431 as soon as that many bytes are in, never after buffering more.
//! Parsing itself is `httparse`'s (the parser of hyper and ureq).

use std::mem::MaybeUninit;

use httparse::{Header, Status};

use crate::error::ApiError;

/// The size limits of a request head and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// `MAX_REQUEST_LINE_BYTES`: the request line, without its line end.
    pub request_line: usize,
    /// `MAX_HEADER_BYTES`: the header fields after the request line, line ends included.
    pub header_bytes: usize,
    /// `MAX_HEADERS`: header fields.
    pub headers: usize,
    /// `MAX_BODY_BYTES`: the largest body.
    pub max_body: u64,
}

/// The most header fields any configuration may allow (the parser's array lives on the stack).
pub const MAX_HEADERS_LIMIT: usize = 256;

impl HeadLimits {
    /// The most bytes a complete head can take: the request line, the fields, the line ends.
    pub fn max_head(&self) -> usize {
        self.request_line + self.header_bytes + 8
    }
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: n`, already checked against `MAX_BODY_BYTES`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Head<'h, 'b> {
    pub method: &'b str,
    /// The origin-form target: path and query.
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: &'h [Header<'b>],
    pub framing: Framing,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// Looks for the end of the head in `buf` (which starts at the request line): `Ok(Some(len))`
/// when the head is complete and `len` bytes long, `Ok(None)` when more bytes are needed, and
/// the 414 or 431 as soon as the bytes in hand already break a limit. `scanned` is how many
/// bytes an earlier call already looked at, so a head that trickles in is scanned once, not
/// once per read.
pub fn head_end(
    buf: &[u8],
    scanned: usize,
    limits: &HeadLimits,
) -> Result<Option<usize>, ApiError> {
    let line_end = match buf.iter().position(|&b| b == b'\n') {
        Some(at) => at + 1,
        None if buf.len() > limits.request_line + 1 => return Err(uri_too_long(limits)),
        None => return Ok(None),
    };
    let line_len = line_end - 1 - usize::from(line_end >= 2 && buf[line_end - 2] == b'\r');
    if line_len > limits.request_line {
        return Err(uri_too_long(limits));
    }
    // The head ends at the first empty line: "\n\r\n" or "\n\n" (the request line's own line
    // end may be the first "\n" of it).
    let fields = &buf[line_end - 1..];
    let start = scanned.saturating_sub(line_end + 2);
    let end = fields[start..]
        .windows(2)
        .enumerate()
        .find_map(|(i, pair)| match pair {
            [b'\n', b'\n'] => Some(start + i + 2),
            [b'\n', b'\r'] if fields.get(start + i + 2) == Some(&b'\n') => Some(start + i + 3),
            _ => None,
        });
    let section = end.unwrap_or(fields.len()).saturating_sub(1);
    if section > limits.header_bytes + 2 {
        return Err(ApiError::HeaderTooLarge(format!(
            "the header section is over {} bytes",
            limits.header_bytes
        )));
    }
    Ok(end.map(|end| line_end - 1 + end))
}

fn uri_too_long(limits: &HeadLimits) -> ApiError {
    ApiError::UriTooLong(format!(
        "the request line is over {} bytes",
        limits.request_line
    ))
}

/// Parses a complete head (`buf` as [`head_end`] measured it) into `storage`.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut [MaybeUninit<Header<'b>>],
    limits: &HeadLimits,
) -> Result<Head<'h, 'b>, ApiError> {
    let max = limits.headers.min(storage.len());
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(buf, &mut storage[..max]) {
        Ok(Status::Complete(_)) => {}
        Ok(Status::Partial) => return Err(bad("the request head is incomplete")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ApiError::HeaderTooLarge(format!(
                "more than {} header fields",
                limits.headers
            )));
        }
        Err(e) => return Err(bad(&format!("malformed request head: {e}"))),
    }
    let (Some(method), Some(target), Some(minor_version)) =
        (request.method, request.path, request.version)
    else {
        return Err(bad("the request line is incomplete"));
    };
    let target = origin_form(target)?;
    let headers: &'h [Header<'b>] = request.headers;

    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = minor_version == 0;
    let mut expect_continue = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = content_length(header.value)?;
            if length.is_some_and(|seen| seen != value) {
                return Err(bad("conflicting Content-Length headers"));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !trimmed(header.value).eq_ignore_ascii_case(b"chunked") {
                return Err(ApiError::NotImplemented(
                    "the only transfer coding accepted is a single \"chunked\"".into(),
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',').map(trimmed) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor_version == 0 {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = trimmed(header.value).eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match (length, chunked) {
        // Both at once is how requests are smuggled past a proxy: refuse it.
        (Some(_), true) => return Err(bad("both Content-Length and Transfer-Encoding")),
        (None, true) if minor_version == 0 => {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        (None, true) => Framing::Chunked,
        (Some(n), false) if n > limits.max_body => {
            return Err(ApiError::PayloadTooLarge(limits.max_body));
        }
        (Some(0) | None, false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
    };
    Ok(Head {
        method,
        target,
        minor_version,
        headers,
        framing,
        keep_alive: !close,
        expect_continue,
    })
}

/// A `Content-Length` value: decimal digits only, no sign, no overflow.
fn content_length(value: &[u8]) -> Result<u64, ApiError> {
    let digits = trimmed(value);
    let parsed = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .then(|| {
            digits.iter().try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
        })
        .flatten();
    parsed.ok_or_else(|| {
        bad(&format!(
            "Content-Length {:?} is not a decimal number that fits in 64 bits",
            String::from_utf8_lossy(&value[..value.len().min(40)])
        ))
    })
}

/// The path and query of a target: origin-form as is; absolute-form (`http://host/path`)
/// without its scheme and authority.
fn origin_form(target: &str) -> Result<&str, ApiError> {
    if target.starts_with('/') {
        return Ok(target);
    }
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("http://")
        && let Some(slash) = target[7..].find('/')
    {
        return Ok(&target[7 + slash..]);
    }
    Err(bad("the request target must be a path starting with /"))
}

fn trimmed(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

fn bad(what: &str) -> ApiError {
    ApiError::BadRequest(what.to_string())
}

/// Room for [`parse`] to put the header fields, left uninitialised: filling 8 KiB for every
/// request would cost more than parsing it.
pub fn header_storage<'b>() -> [MaybeUninit<Header<'b>>; MAX_HEADERS_LIMIT] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS_LIMIT]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        request_line: 64,
        header_bytes: 128,
        headers: 4,
        max_body: 1000,
    };

    fn end(text: &[u8]) -> Result<Option<usize>, u16> {
        let whole = head_end(text, 0, &LIMITS).map_err(|e| e.status());
        // Byte by byte, as a slow client sends it, the answer is the same.
        let mut trickled = Ok(None);
        for n in 1..=text.len() {
            trickled = head_end(&text[..n], n - 1, &LIMITS).map_err(|e| e.status());
            if trickled != Ok(None) {
                break;
            }
        }
        assert_eq!(whole, trickled, "{:?}", String::from_utf8_lossy(text));
        whole
    }

    fn parsed(text: &str) -> Result<(Framing, bool, bool, String), u16> {
        let mut storage = header_storage();
        let head = parse(text.as_bytes(), &mut storage, &LIMITS).map_err(|e| e.status())?;
        Ok((
            head.framing,
            head.keep_alive,
            head.expect_continue,
            head.target.to_string(),
        ))
    }

    #[test]
    fn finds_the_end_of_the_head_with_either_line_end() {
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Ok(Some(27)));
        assert_eq!(end(b"GET / HTTP/1.1\nHost: x\n\nrest"), Ok(Some(24)));
        assert_eq!(end(b"GET / HTTP/1.1\r\n\r\n"), Ok(Some(18)));
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: x\r\n\r"), Ok(None));
        assert_eq!(end(b"GET / HT"), Ok(None));
        assert_eq!(end(b""), Ok(None));
    }

    #[test]
    fn a_long_request_line_is_414_before_it_ends() {
        let long = format!("GET /{} HTTP/1.1", "a".repeat(60));
        assert_eq!(end(long.as_bytes()), Err(414));
        assert_eq!(end(format!("{long}\r\n\r\n").as_bytes()), Err(414));
        // Exactly at the limit is fine.
        let fits = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64 - 14));
        assert_eq!(end(fits.as_bytes()), Ok(Some(fits.len())));
    }

    #[test]
    fn a_large_header_section_is_431_before_it_ends() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(200));
        assert_eq!(end(big.as_bytes()), Err(431));
        let fits = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(end(fits.as_bytes()), Ok(Some(fits.len())));
    }

    #[test]
    fn body_framing_is_strict() {
        let get = |headers: &str| parsed(&format!("POST /p HTTP/1.1\r\n{headers}\r\n"));
        assert_eq!(get("").unwrap().0, Framing::None);
        assert_eq!(
            get("Content-Length: 10\r\n").unwrap().0,
            Framing::Length(10)
        );
        assert_eq!(
            get("Content-Length: 10\r\ncontent-length: 10\r\n")
                .unwrap()
                .0,
            Framing::Length(10)
        );
        assert_eq!(
            get("Transfer-Encoding: Chunked\r\n").unwrap().0,
            Framing::Chunked
        );
        for bad in [
            "Content-Length: -1\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 1 0\r\n",
            "Content-Length: \r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Content-Length: 1000000000000000000000000\r\n",
            "Content-Length: 10\r\nContent-Length: 11\r\n",
            "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(get(bad), Err(400), "{bad:?}");
        }
        assert_eq!(get("Content-Length: 1001\r\n"), Err(413));
        assert_eq!(get("Content-Length: 18446744073709551615\r\n"), Err(413));
        assert_eq!(get("Transfer-Encoding: gzip, chunked\r\n"), Err(501));
        assert_eq!(
            parsed("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(400)
        );
    }

    #[test]
    fn connection_expect_and_targets() {
        let (_, keep, expect, target) =
            parsed("GET /a?b=c HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert!(keep && expect);
        assert_eq!(target, "/a?b=c");
        assert!(
            !parsed("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .1
        );
        assert!(!parsed("GET / HTTP/1.0\r\n\r\n").unwrap().1);
        assert!(
            parsed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .1
        );
        assert_eq!(
            parsed("GET http://h:1/x/y HTTP/1.1\r\n\r\n").unwrap().3,
            "/x/y"
        );
        assert_eq!(parsed("GET * HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parsed("GET / HTTP/2.0\r\n\r\n"), Err(400));
        assert_eq!(parsed("\x00\x01 garbage\r\n\r\n"), Err(400));
        let five = "A: 1\r\n".repeat(5);
        assert_eq!(parsed(&format!("GET / HTTP/1.1\r\n{five}\r\n")), Err(431));
    }
}

//! The HTTP side shared by both roles: our own small HTTP/1.1 server, the request and reply
//! types handlers see, and the one road from an [`ApiError`] to a JSON error body.
//!
//! ```text
//!  listener ──accept──> admission ──> connection thread (one per connection, pooled)
//!  (back-off on         (caps: total,   head within its limits and deadline ──> body within
//!   EMFILE & co.)        per address;   MAX_BODY_BYTES and its deadline ──> handler ──> reply
//!                        idle evicted)  within the write deadline ──> next request or close
//! ```
//!
//! Every connection has a thread of its own for its whole life, so a slow or hostile client
//! holds only its own connection, never a thread that answers others; the caps bound how
//! many connections (and threads) there can be. Handlers are plain functions
//! `&Request -> Result<Reply, ApiError>`, testable without a socket; a panicking handler
//! becomes a 500 and its thread lives on.

mod body;
mod conn;
pub mod head;
mod mapped;
mod request;
mod server;
mod sock;

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::api::{Routed, Searched};
use crate::error::ApiError;

pub(crate) use request::split_target;
pub use request::{Method, Request};
pub use server::HttpServer;

/// The body of a reply.
pub enum ReplyBody {
    Empty,
    Json(Vec<u8>),
    /// A JSON body serialised once and served many times (a node's listing).
    SharedJson(Arc<[u8]>),
    /// Anything else with its `Content-Type`: the metrics' text, the web page.
    Typed {
        bytes: std::borrow::Cow<'static, [u8]>,
        content_type: &'static str,
    },
    /// A file's bytes, streamed: `len` bytes from `offset`. Just before the last piece goes,
    /// `unchanged` looks at the file's metadata: a file that changed under the transfer cuts
    /// the connection instead of finishing with bytes that are not the ones promised.
    File {
        file: File,
        offset: u64,
        len: u64,
        content_type: &'static str,
        unchanged: Box<dyn Fn(&std::fs::Metadata) -> bool + Send>,
    },
}

/// A reply: status, body and any headers beyond the ones every reply gets.
pub struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub headers: Vec<(&'static str, String)>,
    /// Where a search found its answer, for the metrics (not sent).
    pub searched: Option<Searched>,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    data: &'a T,
    entity: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    name: &'a str,
    description: &'a str,
    code: u16,
}

/// Serialises the success envelope `{"data": ..., "entity": ...}`.
pub fn envelope<T: Serialize>(entity: &str, data: &T) -> Vec<u8> {
    to_json(&Envelope { data, entity })
}

/// JSON into a buffer of this thread's that the connection gives back after sending it
/// ([`recycle`]), so a typical answer costs no allocation. (Serialising our own types into
/// memory cannot fail.)
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut buffer = SPARE_BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(1024));
    let _ = serde_json::to_writer(&mut buffer, value);
    buffer
}

/// The JSON buffers a thread keeps for its next answers, and the largest one worth keeping.
const SPARE_BUFFER_COUNT: usize = 4;
const SPARE_BUFFER_BYTES: usize = 64 << 10;

thread_local! {
    static SPARE_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps a sent body's buffer for the next answer of this thread.
fn recycle(mut buffer: Vec<u8>) {
    if buffer.capacity() <= SPARE_BUFFER_BYTES {
        buffer.clear();
        SPARE_BUFFERS.with_borrow_mut(|spare| {
            if spare.len() < SPARE_BUFFER_COUNT {
                spare.push(buffer);
            }
        });
    }
}

impl Reply {
    pub fn new(status: u16, body: ReplyBody) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            searched: None,
        }
    }

    /// A success body `{"data": ..., "entity": ...}`.
    pub fn data<T: Serialize>(status: u16, entity: &str, data: &T) -> Reply {
        Reply::new(status, ReplyBody::Json(envelope(entity, data)))
    }

    /// A body of `content_type` (not JSON).
    pub fn typed(
        bytes: impl Into<std::borrow::Cow<'static, [u8]>>,
        content_type: &'static str,
    ) -> Reply {
        Reply::new(
            200,
            ReplyBody::Typed {
                bytes: bytes.into(),
                content_type,
            },
        )
    }

    pub fn no_content() -> Reply {
        Reply::new(204, ReplyBody::Empty)
    }

    /// The error body `{"name", "description", "code"}` for `error`.
    pub fn error(error: &ApiError) -> Reply {
        let code = error.status();
        let body = ErrorBody {
            name: reason_phrase(code),
            description: &error.description(),
            code,
        };
        let reply = Reply::new(code, ReplyBody::Json(to_json(&body)));
        match error {
            // Worth another try soon: say when.
            ApiError::Unavailable(_) | ApiError::TooManyRequests(_) => {
                reply.with_header("Retry-After", "1".into())
            }
            _ => reply,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// Says where the search it answers found its answer.
    pub fn searched(mut self, searched: Searched) -> Reply {
        self.searched = Some(searched);
        self
    }

    pub fn with_location(self, url: String) -> Reply {
        self.with_header("Location", url)
    }

    /// The value of header `name`, for tests.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body's bytes, for tests (a file body reads as empty).
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            ReplyBody::Json(bytes) => bytes,
            ReplyBody::SharedJson(bytes) => bytes,
            ReplyBody::Typed { bytes, .. } => bytes,
            ReplyBody::Empty | ReplyBody::File { .. } => &[],
        }
    }

    fn body_len(&self) -> u64 {
        match &self.body {
            ReplyBody::Empty => 0,
            ReplyBody::Json(bytes) => bytes.len() as u64,
            ReplyBody::SharedJson(bytes) => bytes.len() as u64,
            ReplyBody::Typed { bytes, .. } => bytes.len() as u64,
            ReplyBody::File { len, .. } => *len,
        }
    }

    /// Writes the status line and the headers. `connection` is the `Connection` header to
    /// send, if any (`close`, or `keep-alive` for an HTTP/1.0 client that asked for it).
    fn write_head(&self, out: &mut Vec<u8>, connection: Option<&str>) {
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: superpeer\r\nDate: ",
            self.status,
            reason_phrase(self.status)
        );
        write_http_date(out);
        let _ = write!(out, "\r\nContent-Length: {}\r\n", self.body_len());
        match self.body {
            ReplyBody::Empty => {}
            ReplyBody::Json(_) | ReplyBody::SharedJson(_) => {
                out.extend_from_slice(b"Content-Type: application/json\r\n");
            }
            ReplyBody::File { content_type, .. } | ReplyBody::Typed { content_type, .. } => {
                let _ = write!(out, "Content-Type: {content_type}\r\n");
            }
        }
        for (name, value) in &self.headers {
            // A value with a line end would start a header (or a body) of its own: such a value
            // is a bug upstream, and is left out rather than sent.
            if value.contains(['\r', '\n']) {
                log::error!("http: a {name} header with a line end was left out");
                continue;
            }
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if let Some(connection) = connection {
            let _ = write!(out, "Connection: {connection}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the `Date` header's value, formatted once a second per thread.
fn write_http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *cached = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// The reason phrase of the statuses this server sends.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What the server needs of a role: the route of each request, parsed once from its head; a
/// look at the head before the body is read; the answer once it is; and a word when the answer
/// is written. A plain function `&Request -> Result<Reply, ApiError>` is one (with no routes).
pub trait Service: Send + Sync {
    /// The route of `request`, from its head; handed to every call below, and its name counts
    /// the request in the metrics.
    fn route(&self, _request: &Request<'_>) -> Routed {
        Routed {
            name: "other",
            route: Err(ApiError::NotFound("no routes".into())),
        }
    }

    /// Called with the head only (`request.body` is empty): an error is the answer, and the
    /// body is never read (a stranger's upload costs nothing).
    fn check_head(&self, _request: &Request<'_>, _route: &Routed) -> Result<(), ApiError> {
        Ok(())
    }

    fn handle(&self, request: &Request<'_>, route: &Routed) -> Result<Reply, ApiError>;

    /// Called on the same thread once the answer to `request` is written, `took` from its
    /// head to its last byte: the one clock reading a request costs serves the service's own
    /// measurements too (`searched`: what the reply said of its search).
    fn answered(&self, _route: &Routed, _searched: Option<Searched>, _took: std::time::Duration) {}
}

impl<F> Service for F
where
    F: Fn(&Request<'_>) -> Result<Reply, ApiError> + Send + Sync,
{
    fn handle(&self, request: &Request<'_>, _route: &Routed) -> Result<Reply, ApiError> {
        self(request)
    }
}

/// The service a server runs.
pub type Handler = dyn Service;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_have_name_description_code() {
        let reply = Reply::error(&ApiError::WrongRole);
        let body: serde_json::Value = serde_json::from_slice(reply.body_bytes()).unwrap();
        assert_eq!(reply.status, 418);
        assert_eq!(
            body,
            serde_json::json!({"name": "I'm a teapot", "description": "I'm not your guy", "code": 418})
        );
        let busy = Reply::error(&ApiError::Unavailable("busy".into()));
        assert_eq!(busy.header("retry-after"), Some("1"));
    }

    #[test]
    fn a_header_value_cannot_break_the_head() {
        let reply = Reply::no_content().with_location("http://a/b\r\nSet-Cookie: x=1".into());
        let mut out = Vec::new();
        reply.write_head(&mut out, None);
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("Set-Cookie") && !text.contains("Location"),
            "{text:?}"
        );
    }

    #[test]
    fn the_head_says_length_type_and_connection() {
        let reply = Reply::data(200, "x", &1).with_location("http://a/b".into());
        let mut out = Vec::new();
        reply.write_head(&mut out, Some("close"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: superpeer\r\nDate: "));
        for line in [
            "\r\nContent-Length: 23\r\n",
            "\r\nContent-Type: application/json\r\n",
            "\r\nLocation: http://a/b\r\n",
            "\r\nConnection: close\r\n\r\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text:?}");
        }
    }
}

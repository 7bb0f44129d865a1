//! The HTTP side shared by both roles: a pool of workers on one `tiny_http` server, the request
//! and reply types handlers see, and the one road from an [`ApiError`] to a JSON error body.
//!
//! Handlers are plain functions `&Request -> Result<Reply, ApiError>`, so they can be tested
//! without a socket. A panicking handler becomes a 500 and its worker lives on.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::Serialize;
use tiny_http::{Method as TinyMethod, Server};

use crate::config::HttpConfig;
use crate::error::{ApiError, Error};
use crate::shutdown::Shutdown;

/// The methods the API knows; anything else is answered 405 where the path exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// A request as a handler sees it: the body is already read, within the size limit.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path without the query string and without a trailing `/`.
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

impl Request {
    /// A request built by hand, for tests and for routing without a socket.
    pub fn new(method: Method, url: &str, body: impl Into<Vec<u8>>) -> Request {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let trimmed = path.trim_end_matches('/');
        Request {
            method,
            path: if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            },
            query: query.into(),
            body: body.into(),
        }
    }

    /// The segments of the path after `/api/<role>/`, when it starts that way.
    pub fn api_path(&self, role: &str) -> Option<Vec<&str>> {
        let rest = self.path.strip_prefix("/api/")?.strip_prefix(role)?;
        if rest.is_empty() {
            return Some(Vec::new());
        }
        Some(rest.strip_prefix('/')?.split('/').collect())
    }

    /// The segments after `/api/<role>/` for a server of `role`: a path of the `other` role is
    /// a 418 ("I'm not your guy", as the seed says), anything else a 404.
    pub fn segments(&self, role: &str, other: &str) -> Result<Vec<&str>, ApiError> {
        if self.api_path(other).is_some() {
            return Err(ApiError::WrongRole);
        }
        self.api_path(role)
            .ok_or_else(|| ApiError::NotFound(format!("no such path: {}", self.path)))
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// Fails with 405 unless the method is `method`.
    pub fn expect(&self, method: Method) -> Result<(), ApiError> {
        if self.method == method {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed)
        }
    }

    /// Parses the body as JSON; a parse error is a 400 that says what was wrong.
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a reply.
pub enum Body {
    Empty,
    Json(Vec<u8>),
    /// A JSON body serialised once and served many times (a node's listing).
    SharedJson(Arc<[u8]>),
    /// A file's bytes, streamed.
    File(File, u64),
}

/// A reply: status, body and an optional `Location` header.
pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub location: Option<String>,
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
    // Serialising our own types into memory cannot fail.
    serde_json::to_vec(&Envelope { data, entity }).unwrap_or_default()
}

impl Reply {
    /// A success body `{"data": ..., "entity": ...}`.
    pub fn data<T: Serialize>(status: u16, entity: &str, data: &T) -> Reply {
        Reply {
            status,
            body: Body::Json(envelope(entity, data)),
            location: None,
        }
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            body: Body::Empty,
            location: None,
        }
    }

    /// The error body `{"name", "description", "code"}` for `error`.
    pub fn error(error: &ApiError) -> Reply {
        let code = error.status();
        let body = ErrorBody {
            name: reason_phrase(code),
            description: &error.description(),
            code,
        };
        Reply {
            status: code,
            body: Body::Json(serde_json::to_vec(&body).unwrap_or_default()),
            location: None,
        }
    }

    pub fn with_location(mut self, url: String) -> Reply {
        self.location = Some(url);
        self
    }

    /// The body's bytes, for tests (a file body reads as empty).
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Json(bytes) => bytes,
            Body::SharedJson(bytes) => bytes,
            Body::Empty | Body::File(..) => &[],
        }
    }

    /// Writes the reply on the request's connection.
    ///
    /// We write the response ourselves rather than through `tiny_http::Response`, which copies
    /// every body through an 8 KiB buffer (a 1 MB listing took 120 system calls; now the
    /// header and the body take two) and writes `418 Unknown` for the seed's 418. tiny_http
    /// still parses requests and decides whether the connection stays open.
    fn send(self, raw: tiny_http::Request) -> io::Result<()> {
        let version = raw.http_version().clone();
        let head_only = *raw.method() == TinyMethod::Head;
        let (content_type, length) = match &self.body {
            Body::Empty => (None, 0),
            Body::Json(bytes) => (Some("application/json"), bytes.len() as u64),
            Body::SharedJson(bytes) => (Some("application/json"), bytes.len() as u64),
            Body::File(_, len) => (Some("application/octet-stream"), *len),
        };
        let mut out = Vec::with_capacity(256);
        let _ = write!(
            out,
            "HTTP/{}.{} {} {}\r\nServer: superpeer\r\nDate: {}\r\nContent-Length: {length}\r\n",
            version.0,
            version.1,
            self.status,
            reason_phrase(self.status),
            http_date(),
        );
        if let Some(content_type) = content_type {
            let _ = write!(out, "Content-Type: {content_type}\r\n");
        }
        if let Some(location) = &self.location {
            let _ = write!(out, "Location: {location}\r\n");
        }
        out.extend_from_slice(b"\r\n");

        let mut writer = raw.into_writer();
        match self.body {
            _ if head_only => writer.write_all(&out)?,
            Body::Empty => writer.write_all(&out)?,
            Body::Json(bytes) => {
                out.extend_from_slice(&bytes);
                writer.write_all(&out)?;
            }
            Body::SharedJson(bytes) => {
                writer.write_all(&out)?;
                writer.write_all(&bytes)?;
            }
            Body::File(file, len) => {
                writer.write_all(&out)?;
                let mut file = file.take(len);
                let mut chunk = vec![0u8; 256 << 10];
                loop {
                    match file.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => writer.write_all(&chunk[..n])?,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        writer.flush()
    }
}

/// The `Date` header's value, formatted once a second per thread.
fn http_date() -> String {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = httpdate::fmt_http_date(now);
        }
        text.clone()
    })
}

/// The reason phrase of the statuses this API uses.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What the server needs of a role: a routing function.
pub type Handler = dyn Fn(&Request) -> Result<Reply, ApiError> + Send + Sync;

/// A running HTTP server: its address and its worker threads.
pub struct HttpServer {
    pub addr: SocketAddr,
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `config.bind` and starts `config.workers` threads that answer with `handler`.
    pub fn start(
        config: &HttpConfig,
        handler: Arc<Handler>,
        shutdown: Shutdown,
    ) -> Result<HttpServer, Error> {
        let (bind, max_body) = (config.bind, config.max_body);
        let server = Server::http_with_read_timeout(bind, config.read_timeout).map_err(|e| {
            Error::io(
                format!("cannot listen on {bind}"),
                io::Error::other(e.to_string()),
            )
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::io("bound address", io::Error::other("not an IP address")))?;
        let server = Arc::new(server);
        let workers = (0..config.workers)
            .map(|n| {
                let (server, handler, shutdown) =
                    (server.clone(), handler.clone(), shutdown.clone());
                thread::Builder::new()
                    .name(format!("http-{n}"))
                    .spawn(move || worker(&server, &*handler, max_body, &shutdown))
                    .map_err(|e| Error::io("cannot start an HTTP worker", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpServer {
            addr,
            server,
            workers,
        })
    }

    /// Stops accepting and joins the workers (call after triggering the shutdown).
    pub fn join(self) {
        self.server.unblock();
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

fn worker(server: &Server, handler: &Handler, max_body: u64, shutdown: &Shutdown) {
    while !shutdown.is_triggered() {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(request)) => answer(request, handler, max_body),
            Ok(None) => {}
            Err(e) => {
                log::debug!("http: receive failed: {e}");
                if shutdown.sleep(Duration::from_millis(50)) {
                    break;
                }
            }
        }
    }
}

fn answer(mut raw: tiny_http::Request, handler: &Handler, max_body: u64) {
    let reply = match read_request(&mut raw, max_body) {
        Ok(request) => match catch_unwind(AssertUnwindSafe(|| handler(&request))) {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => Reply::error(&error),
            Err(_) => {
                log::error!("handler panicked on {} {}", raw.method(), raw.url());
                Reply::error(&ApiError::Internal)
            }
        },
        Err(error) => Reply::error(&error),
    };
    // The client may be gone; there is nobody left to tell.
    let _ = reply.send(raw);
}

/// How much of an oversized body is read and dropped before the 413, so that the connection
/// closes cleanly: closing with unread data makes the kernel reset it, and the client may then
/// never see the answer.
const DRAIN_LIMIT: u64 = 1 << 20;

fn read_request(raw: &mut tiny_http::Request, max_body: u64) -> Result<Request, ApiError> {
    let too_large = |raw: &mut tiny_http::Request| {
        let _ = io::copy(&mut raw.as_reader().take(DRAIN_LIMIT), &mut io::sink());
        Err(ApiError::PayloadTooLarge(max_body))
    };
    if raw.body_length().is_some_and(|len| len as u64 > max_body) {
        return too_large(raw);
    }
    // Sized from Content-Length when there is one: a 10 MB registration then takes 10 MB, not
    // the 16 MB a doubling buffer ends at (memory the allocator may keep afterwards).
    let mut body = Vec::with_capacity(raw.body_length().unwrap_or(0));
    raw.as_reader()
        .take(max_body + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
    if body.len() as u64 > max_body {
        return too_large(raw);
    }
    let method = match raw.method() {
        TinyMethod::Get | TinyMethod::Head => Method::Get,
        TinyMethod::Post => Method::Post,
        _ => Method::Other,
    };
    Ok(Request::new(method, raw.url(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        let request = Request::new(
            Method::Get,
            "/api/node/resources/find/?hash_ids=a%2Cb,c&x",
            b"",
        );
        assert_eq!(request.path, "/api/node/resources/find");
        assert_eq!(request.api_path("node"), Some(vec!["resources", "find"]));
        assert_eq!(request.api_path("supernode"), None);
        assert_eq!(request.query_param("hash_ids").as_deref(), Some("a,b,c"));
        assert_eq!(request.query_param("x").as_deref(), Some(""));
        assert_eq!(request.query_param("y"), None);
        assert_eq!(
            Request::new(Method::Get, "/api/nodes", b"").api_path("node"),
            None
        );
        assert_eq!(
            Request::new(Method::Get, "/api/node", b"").api_path("node"),
            Some(vec![])
        );
    }

    #[test]
    fn percent_decoding_survives_junk() {
        assert_eq!(percent_decode("%41%4a"), "AJ");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn error_bodies_have_name_description_code() {
        let reply = Reply::error(&ApiError::WrongRole);
        let body: serde_json::Value = serde_json::from_slice(reply.body_bytes()).unwrap();
        assert_eq!(reply.status, 418);
        assert_eq!(
            body,
            serde_json::json!({"name": "I'm a teapot", "description": "I'm not your guy", "code": 418})
        );
    }
}

#[cfg(test)]
mod server_tests {
    use super::*;

    #[test]
    fn a_panicking_handler_is_a_500_and_the_worker_lives_on() {
        let shutdown = Shutdown::new();
        let handler: Arc<Handler> = Arc::new(|request: &Request| {
            if request.path == "/panic" {
                panic!("deliberate");
            }
            Ok(Reply::data(200, "ok", &"fine"))
        });
        // One worker: if the panic killed it, the second request would never be answered.
        let config = HttpConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            max_body: 1024,
            read_timeout: Duration::from_secs(10),
        };
        let server = HttpServer::start(&config, handler, shutdown.clone()).unwrap();
        let agent = crate::client::agent(Duration::from_secs(5));
        let url = |path: &str| format!("http://{}{path}", server.addr);
        let status = |path: &str| agent.get(&url(path)).call().unwrap().status().as_u16();
        assert_eq!(status("/panic"), 500);
        assert_eq!(status("/fine"), 200);
        assert_eq!(status("/panic"), 500);
        assert_eq!(status("/fine"), 200);
        shutdown.trigger();
        server.join();
    }
}

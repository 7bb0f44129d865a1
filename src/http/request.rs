//! A request as a handler sees it: method, path, query, headers and the whole body, borrowed
//! from the connection's buffers (a request allocates nothing of its own).

use std::net::SocketAddr;

use crate::error::ApiError;

/// The methods the API knows; anything else is answered 405 where the path exists. `HEAD` is
/// routed as `GET` and answered without the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// One request, complete: the head was parsed within its limits and the body read whole.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    /// `true` for `HEAD`: the reply is sent without its body.
    pub head: bool,
    /// The path without the query string and without a trailing `/`.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub body: &'a [u8],
    /// The client's address (`None` for requests built by hand).
    pub peer: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// A request built by hand, for tests and for routing without a socket.
    pub fn new(method: Method, target: &'a str, body: &'a [u8]) -> Request<'a> {
        let (path, query) = split_target(target);
        Request {
            method,
            head: false,
            path,
            query,
            headers: &[],
            body,
            peer: None,
        }
    }

    /// The same request, from `peer` (for tests: a request built by hand comes from nowhere).
    pub fn from_peer(mut self, peer: SocketAddr) -> Request<'a> {
        self.peer = Some(peer);
        self
    }

    /// The value of header `name` (any case), when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }

    /// The segments of the path after `/api/<role>/`, when it starts that way.
    pub fn api_path(&self, role: &str) -> Option<Segments<'a>> {
        let rest = self.path.strip_prefix("/api/")?.strip_prefix(role)?;
        let mut segments = Segments {
            parts: [""; MAX_SEGMENTS],
            len: 0,
        };
        if rest.is_empty() {
            return Some(segments);
        }
        for part in rest.strip_prefix('/')?.split('/') {
            // Longer than any route: left as a path that matches none (a 404).
            let slot = segments.parts.get_mut(segments.len)?;
            *slot = part;
            segments.len += 1;
        }
        Some(segments)
    }

    /// The segments after `/api/<role>/` for a server of `role`: a path of the `other` role is
    /// a 418 ("I'm not your guy", as the seed says), anything else a 404.
    pub fn segments(&self, role: &str, other: &str) -> Result<Segments<'a>, ApiError> {
        if self.path.strip_prefix("/api/").is_some_and(|rest| {
            rest.strip_prefix(other)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }) {
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
    pub fn json<T: serde::Deserialize<'a>>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The most path segments a route has after `/api/<role>/`, with room to spare.
const MAX_SEGMENTS: usize = 6;

/// The segments of a path after `/api/<role>/`, without an allocation per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments<'a> {
    parts: [&'a str; MAX_SEGMENTS],
    len: usize,
}

impl<'a> std::ops::Deref for Segments<'a> {
    type Target = [&'a str];

    fn deref(&self) -> &[&'a str] {
        &self.parts[..self.len]
    }
}

/// Splits a request target into its path (without a trailing `/`, `/` when empty) and query.
pub(crate) fn split_target(target: &str) -> (&str, &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let trimmed = path.trim_end_matches('/');
    (if trimmed.is_empty() { "/" } else { trimmed }, query)
}

pub(crate) fn percent_decode(text: &str) -> String {
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
        assert_eq!(*request.api_path("node").unwrap(), ["resources", "find"]);
        assert_eq!(request.api_path("supernode"), None);
        assert_eq!(
            request.segments("supernode", "node").unwrap_err(),
            ApiError::WrongRole
        );
        let deep = Request::new(Method::Get, "/api/node/a/b/c/d/e/f/g", b"");
        assert_eq!(deep.api_path("node"), None);
        assert!(matches!(
            deep.segments("node", "supernode"),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(request.query_param("hash_ids").as_deref(), Some("a,b,c"));
        assert_eq!(request.query_param("x").as_deref(), Some(""));
        assert_eq!(request.query_param("y"), None);
        assert_eq!(
            Request::new(Method::Get, "/api/nodes", b"").api_path("node"),
            None
        );
        assert!(
            Request::new(Method::Get, "/api/node", b"")
                .api_path("node")
                .is_some_and(|s| s.is_empty())
        );
        assert_eq!(Request::new(Method::Get, "/", b"").path, "/");
    }

    #[test]
    fn percent_decoding_survives_junk() {
        assert_eq!(percent_decode("%41%4a"), "AJ");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}

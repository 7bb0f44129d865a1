//! What a download (`GET` or `HEAD /api/node/resources/<id>/content`) answers, as a static
//! file server would: one byte range (206, or 416), the id as the strongest `ETag` there is
//! (the id *is* the content's hash, so the bytes behind it never change), `If-None-Match`
//! (304) and `If-Range`, a year of caching, a `Content-Type` from the name, and the name in
//! `Content-Disposition`.

use std::fs::{File, Metadata};

use crate::error::ApiError;
use crate::http::{Reply, ReplyBody, Request};
use crate::id::ResourceId;

/// Which bytes of a file of `len` bytes a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// All of it: no header, one this server ignores (several ranges, another unit, bad
    /// syntax), as RFC 9110 allows.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// None of the asked bytes exist: 416.
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b`, `a-` or `-n` against a file of `len` bytes.
pub fn parse_range(header: Option<&str>, len: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let number = |text: &str| {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    match (number(first), number(last)) {
        // The last n bytes.
        (None, Some(n)) if first.trim().is_empty() => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (Some(start), None) if last.trim().is_empty() => {
            if start >= len {
                Range::Unsatisfiable
            } else {
                Range::Part {
                    start,
                    end: len - 1,
                }
            }
        }
        (Some(start), Some(end)) if start <= end => {
            if start >= len {
                Range::Unsatisfiable
            } else {
                Range::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => Range::Whole,
    }
}

/// `attachment` with the file's own name (its last path part): a plain `filename` for every
/// client, and RFC 6266's `filename*` (UTF-8, percent-encoded) when the name is not plain ASCII.
pub fn disposition(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let plain: String = base
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    if plain == base {
        return format!("attachment; filename=\"{plain}\"");
    }
    let mut encoded = String::new();
    for byte in base.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(char::from(byte))
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

/// Whether an `If-None-Match` list names `etag` or is `*`, by weak comparison (RFC 9110
/// section 13.1.2: `W/"x"` matches `"x"`, since a 304 only says "what you hold will do").
fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// Whether an `If-Range` validator is `etag` by strong comparison (RFC 9110 section 13.1.5):
/// a range is glued onto bytes the client holds, so only the very same bytes may match. A weak
/// tag, a list or a date (this server sends no `Last-Modified`) never does.
fn range_matches(validator: &str, etag: &str) -> bool {
    validator.trim() == etag
}

/// `Repr-Digest` (RFC 9530): the id is the SHA-256 of the whole file, which any client can
/// check what it downloads against, whichever range it took from whichever holder.
pub fn repr_digest(id: ResourceId) -> String {
    use base64::Engine;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(id.0)
    )
}

/// The answer to a download of `id`, held in `file` (opened, `metadata` read and checked
/// against the hash's): `unchanged` says, before the last piece goes, that the file is still
/// the one hashed (same inode, size, modification and change time: a write through the file
/// system cannot keep the change time). Hashing the bytes as they go would say the same at
/// half the speed (1 GB/s against 2.5 on the bench's machine); `superpeer get` checks the
/// hash of what it keeps anyway.
pub fn reply(
    request: &Request,
    id: ResourceId,
    name: &str,
    (file, metadata): (File, Metadata),
    unchanged: Box<dyn Fn(&Metadata) -> bool + Send>,
) -> Result<Reply, ApiError> {
    let len = metadata.len();
    let etag = format!("\"{id}\"");
    let digest = repr_digest(id);
    let headers = |reply: Reply| {
        reply
            .with_header("ETag", etag.clone())
            .with_header("Repr-Digest", digest.clone())
            .with_header("Accept-Ranges", "bytes".into())
            .with_header(
                "Cache-Control",
                "public, max-age=31536000, immutable".into(),
            )
    };
    if request
        .header("If-None-Match")
        .is_some_and(|h| none_match(h, &etag))
    {
        return Ok(headers(Reply::new(304, ReplyBody::Empty)));
    }
    let range = match request.header("If-Range") {
        // A range of another version is not this one's: the whole file instead.
        Some(validator) if !range_matches(validator, &etag) => Range::Whole,
        _ => parse_range(request.header("Range"), len),
    };
    let content_type = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let (status, offset, count) = match range {
        Range::Whole => (200, 0, len),
        Range::Part { start, end } => (206, start, end - start + 1),
        Range::Unsatisfiable => {
            let reply = Reply::error(&ApiError::RangeNotSatisfiable(format!(
                "resource {id} has {len} bytes; the range asked for is outside them"
            )));
            return Ok(headers(
                reply.with_header("Content-Range", format!("bytes */{len}")),
            ));
        }
    };
    let mut reply = Reply::new(
        status,
        ReplyBody::File {
            file,
            offset,
            len: count,
            content_type,
            unchanged,
        },
    )
    .with_header("Content-Disposition", disposition(name));
    if status == 206 {
        reply = reply.with_header(
            "Content-Range",
            format!("bytes {offset}-{}/{len}", offset + count - 1),
        );
    }
    Ok(headers(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_at_the_edges() {
        let part = |start, end| Range::Part { start, end };
        assert_eq!(parse_range(None, 10), Range::Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 10), part(0, 0));
        assert_eq!(parse_range(Some("bytes=9-9"), 10), part(9, 9));
        assert_eq!(parse_range(Some("bytes=9-"), 10), part(9, 9));
        assert_eq!(parse_range(Some("bytes=-1"), 10), part(9, 9));
        assert_eq!(parse_range(Some("bytes=-20"), 10), part(0, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), part(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-20"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Range::Unsatisfiable);
        // Not understood, so ignored: the whole file.
        for header in [
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(parse_range(Some(header), 10), Range::Whole, "{header}");
        }
    }

    #[test]
    fn names_go_into_the_disposition_safely() {
        assert_eq!(
            disposition("dir/a b.txt"),
            "attachment; filename=\"a b.txt\""
        );
        assert_eq!(
            disposition("relatório \"final\".pdf"),
            "attachment; filename=\"relat_rio _final_.pdf\"; filename*=UTF-8''relat%C3%B3rio%20%22final%22.pdf"
        );
        assert!(!disposition("evil\r\nSet-Cookie: x").contains(['\r', '\n']));
    }

    #[test]
    fn validators_match_the_id() {
        assert!(none_match("\"abc\"", "\"abc\""));
        assert!(none_match("\"x\", \"abc\"", "\"abc\""));
        assert!(none_match("*", "\"abc\""));
        assert!(!none_match("\"abd\"", "\"abc\""));
        assert!(range_matches(" \"abc\" ", "\"abc\""));
        assert!(!range_matches("*", "\"abc\""));
        assert!(!range_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn if_none_match_is_weak_and_if_range_strong() {
        // RFC 9110 section 13.1.2: weak comparison ignores `W/`; section 13.1.5: If-Range
        // needs a strong match, so a weak tag means "send it all" (a 200).
        assert!(none_match("W/\"abc\"", "\"abc\""));
        assert!(none_match("W/\"x\", W/\"abc\"", "\"abc\""));
        assert!(!range_matches("W/\"abc\"", "\"abc\""));
        assert!(!range_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(!range_matches("Wed, 21 Oct 2015 07:28:00 GMT", "\"abc\""));
    }

    #[test]
    fn a_weak_if_range_gets_the_whole_file() {
        let path = std::env::temp_dir().join(format!("superpeer-if-range-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let id = ResourceId([7; 32]);
        let status = |validator: String| {
            let headers = [
                httparse::Header {
                    name: "Range",
                    value: b"bytes=8-",
                },
                httparse::Header {
                    name: "If-Range",
                    value: validator.as_bytes(),
                },
            ];
            let mut request = Request::new(crate::http::Method::Get, "/x", b"");
            request.headers = &headers;
            let file = File::open(&path).unwrap();
            let metadata = file.metadata().unwrap();
            reply(&request, id, "x.bin", (file, metadata), Box::new(|_| true))
                .unwrap()
                .status
        };
        assert_eq!(status(format!("\"{id}\"")), 206);
        assert_eq!(status(format!("W/\"{id}\"")), 200);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_representation_digest_is_the_id_in_base64() {
        // The SHA-256 of no bytes, as `openssl dgst -sha256 -binary | base64` writes it.
        let empty =
            ResourceId::parse("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap();
        assert_eq!(
            repr_digest(empty),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }
}

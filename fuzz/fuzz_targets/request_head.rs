//! Any bytes as a request head, as they trickle in: the limits hold, a complete head parses or
//! is refused with a 4xx/5xx, and what a handler reads of it (path, query, headers) is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use superpeer::http::head::{self, HeadLimits};
use superpeer::http::{Method, Request};

const LIMITS: HeadLimits = HeadLimits {
    request_line: 512,
    header_bytes: 2048,
    headers: 16,
    max_body: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    // The whole input in one read, and split where its first byte says, as two reads bring
    // it: the answer must be the same.
    let whole = head::head_end(data, 0, &LIMITS);
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let first = head::head_end(&data[..cut], 0, &LIMITS);
    let two_reads = match &first {
        Ok(None) => head::head_end(data, cut, &LIMITS),
        // A head complete, or a limit broken, in the first read stays so.
        _ => first.clone(),
    };
    assert_eq!(
        whole.as_ref().map_err(|e| e.status()),
        two_reads.as_ref().map_err(|e| e.status())
    );
    let end = match whole {
        Ok(Some(end)) => end,
        Ok(None) => {
            assert!(data.len() <= LIMITS.max_head());
            return;
        }
        Err(e) => {
            assert!((400..600).contains(&e.status()));
            return;
        }
    };
    assert!(end <= data.len() && end <= LIMITS.max_head());
    let mut storage = head::header_storage();
    match head::parse(&data[..end], &mut storage, &LIMITS) {
        Ok(parsed) => {
            assert!(parsed.headers.len() <= LIMITS.headers);
            if let head::Framing::Length(n) = parsed.framing {
                assert!(n <= LIMITS.max_body);
            }
            let request = Request::new(Method::Get, parsed.target, b"");
            let _ = request.segments("supernode", "node");
            let _ = request.query_param("hash_ids");
        }
        Err(e) => assert!((400..600).contains(&e.status())),
    }
});

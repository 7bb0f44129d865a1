//! Metalink 4 documents (RFC 5854): every holder's URL of one file with its size, its SHA-256
//! and its piece hashes, so a standard client (aria2c) downloads from every holder at once
//! and checks each piece as `superpeer get` does.

use std::fmt::Write;

use crate::id::ResourceId;
use crate::pieces::PieceList;

/// The media type of a Metalink 4 document.
pub const CONTENT_TYPE: &str = "application/metalink4+xml";

/// The document for the file `list` describes, named `name` (the holder's name for it, made a
/// plain file name, else the id), at each of `holders` (`host:port`s of nodes).
pub fn document(list: &PieceList, name: Option<&str>, holders: &[String]) -> String {
    let id = list.id;
    let mut xml = String::with_capacity(512 + 80 * list.pieces.len() + 96 * holders.len());
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str("<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n");
    let _ = writeln!(
        xml,
        "  <generator>superpeer/{}</generator>",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(xml, "  <file name=\"{}\">", escape(&file_name(name, id)));
    let _ = writeln!(xml, "    <size>{}</size>", list.size);
    let _ = writeln!(xml, "    <hash type=\"sha-256\">{id}</hash>");
    if !list.pieces.is_empty() {
        let _ = writeln!(
            xml,
            "    <pieces length=\"{}\" type=\"sha-256\">",
            list.piece_size
        );
        for piece in &list.pieces {
            let _ = writeln!(xml, "      <hash>{piece}</hash>");
        }
        xml.push_str("    </pieces>\n");
    }
    for holder in holders {
        let url = format!("http://{holder}/api/node/resources/{id}/content");
        let _ = writeln!(xml, "    <url priority=\"1\">{}</url>", escape(&url));
    }
    xml.push_str("  </file>\n</metalink>\n");
    xml
}

/// A name a client may save the file under: the last part of `name` when it is a plain,
/// visible one (RFC 5854 forbids paths that climb; a client would take a leading `.` too),
/// else the id.
fn file_name(name: Option<&str>, id: ResourceId) -> String {
    let last = name.and_then(|n| n.rsplit('/').next()).unwrap_or("");
    if last.is_empty() || last.starts_with('.') || last.chars().any(char::is_control) {
        id.to_string()
    } else {
        last.to_string()
    }
}

/// `text` as XML character data or an attribute value.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pieces::sha256;

    #[test]
    fn a_document_lists_the_pieces_and_every_holder() {
        let id = sha256(b"file");
        let list = PieceList {
            id,
            size: 20_000,
            piece_size: 16384,
            pieces: vec![sha256(b"a"), sha256(b"b")],
        };
        let holders = ["10.0.0.1:8001".to_string(), "10.0.0.2:8002".to_string()];
        let xml = document(&list, Some("docs/a <b> & 'c'.txt"), &holders);
        assert!(xml.contains("<file name=\"a &lt;b&gt; &amp; &apos;c&apos;.txt\">"));
        assert!(xml.contains("<size>20000</size>"));
        assert!(xml.contains(&format!("<hash type=\"sha-256\">{id}</hash>")));
        assert!(xml.contains("<pieces length=\"16384\" type=\"sha-256\">"));
        assert!(xml.contains(&format!("      <hash>{}</hash>", sha256(b"b"))));
        assert!(xml.contains(&format!(
            "<url priority=\"1\">http://10.0.0.2:8002/api/node/resources/{id}/content</url>"
        )));
        // A name that would hide the file or climb out is the id instead.
        for odd in [
            Some(".bashrc"),
            Some("a/.."),
            Some(""),
            Some("x\u{1b}y"),
            None,
        ] {
            let xml = document(&list, odd, &holders);
            assert!(xml.contains(&format!("<file name=\"{id}\">")), "{odd:?}");
        }
    }
}

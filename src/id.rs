//! Resource ids: the SHA-256 of a file's content.
//!
//! Kept as 32 raw bytes (half the size of the hex text, cheap to hash and compare); parsed from
//! 64 hex characters in either case and always written back in lowercase.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a resource: the SHA-256 digest of its content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(pub [u8; 32]);

impl ResourceId {
    /// Parses 64 hex characters (either case); anything else is `None`.
    pub fn parse(text: &str) -> Option<ResourceId> {
        decode_hex(text.as_bytes()).map(ResourceId)
    }
}

/// `N` bytes from exactly `2 * N` hex digits (either case); anything else is `None`.
pub fn decode_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (value(pair[0])? << 4) | value(pair[1])?;
    }
    Some(bytes)
}

/// Writes `bytes` as lowercase hex digits into `out` (twice as long).
pub fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 64];
        write_hex(&self.0, &mut text);
        // Only ASCII hex digits were written.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({self})")
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ResourceId::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "malformed resource id {:?}: expected 64 hex characters",
                truncate(&text, 80)
            ))
        })
    }
}

/// Shortens untrusted text before it goes into an error message or a log line.
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_either_case_and_prints_lowercase() {
        let upper = "DE93C8F9BAC8AF367EE5AA0C8DC828D02CA2976FFB6E37A6D27BF420F318A68A";
        let id = ResourceId::parse(upper).unwrap();
        assert_eq!(id.to_string(), upper.to_lowercase());
        assert_eq!(ResourceId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!(ResourceId::parse(""), None);
        assert_eq!(ResourceId::parse(&"a".repeat(63)), None);
        assert_eq!(ResourceId::parse(&"a".repeat(65)), None);
        assert_eq!(ResourceId::parse(&"g".repeat(64)), None);
        // 64 bytes but not 64 characters: must not panic on a char boundary.
        assert_eq!(ResourceId::parse(&"é".repeat(32)), None);
    }
}

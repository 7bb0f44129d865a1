//! The cluster key: HMAC-SHA256 over what nodes and supernodes say to each other, so that a
//! host without the key is not believed (SPEC section 7).
//!
//! `CLUSTER_KEY` (or `CLUSTER_KEY_FILE`) holds one key or a comma-separated list: the first
//! signs, every one verifies, so a key is replaced without downtime (add the new one second
//! everywhere, then first, then drop the old one). The keys never leave this module: their
//! `Debug` says only how many there are, and no error or log line carries one.
//!
//! Over HTTP, a signed request carries `X-Superpeer-Auth: t=<unix ms>;n=<nonce>;h=<sha256 of
//! the body>;m=<mac>`, the MAC covering the method, the path, the time, the nonce and the body's
//! hash. The supernode checks it before it reads the body (a body announced by a stranger is
//! never read), then checks the body against its hash; a time outside the window, or a nonce
//! seen before, is refused.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The header of a signed HTTP request.
pub const AUTH_HEADER: &str = "X-Superpeer-Auth";
/// How far a signed request's time may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The shortest key accepted: shorter ones are too easy to guess.
pub const MIN_KEY_BYTES: usize = 16;
/// Nonces remembered, at most (signed requests within the window; strangers cannot add any).
const MAX_NONCES: usize = 200_000;

/// The cluster's keys: the first signs, all verify.
#[derive(Clone)]
pub struct ClusterKeys {
    /// Each key's HMAC state after the key itself (its padded blocks hashed once): a MAC
    /// starts from a copy of it.
    keys: Vec<Hmac<Sha256>>,
}

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKeys({} key(s), not shown)", self.keys.len())
    }
}

impl ClusterKeys {
    /// Keys from `text`: comma- or line-separated, each at least [`MIN_KEY_BYTES`] long. The
    /// error names which key is wrong by its place, never by its value.
    pub fn parse(text: &str) -> Result<ClusterKeys, String> {
        let keys: Vec<Vec<u8>> = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(|key| key.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Err("no key given".into());
        }
        if let Some(n) = keys.iter().position(|key| key.len() < MIN_KEY_BYTES) {
            return Err(format!(
                "key {} of {} is shorter than {MIN_KEY_BYTES} bytes (make one with: openssl rand -hex 32)",
                n + 1,
                keys.len()
            ));
        }
        let keys = keys
            .iter()
            .map(|key| Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"))
            .collect();
        Ok(ClusterKeys { keys })
    }

    fn mac(key: &Hmac<Sha256>, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = key.clone();
        for part in parts {
            // Each part after its length: no two lists of parts sign the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The MAC of `parts` under the signing key, cut to `len` bytes (16 or 32).
    pub fn sign(&self, parts: &[&[u8]], len: usize) -> Vec<u8> {
        let full = Self::mac(&self.keys[0], parts).finalize().into_bytes();
        full[..len.min(full.len())].to_vec()
    }

    /// Whether `tag` is the MAC of `parts` under any of the keys (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        tag.len() >= 16
            && self
                .keys
                .iter()
                .any(|key| Self::mac(key, parts).verify_truncated_left(tag).is_ok())
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn http_parts<'a>(
    method: &'a str,
    target: &'a str,
    t: &'a str,
    n: &'a str,
    h: &'a str,
) -> [&'a [u8]; 6] {
    [
        b"superpeer http",
        method.as_bytes(),
        target.as_bytes(),
        t.as_bytes(),
        n.as_bytes(),
        h.as_bytes(),
    ]
}

/// The `X-Superpeer-Auth` value for a request of `method` to `target` (path and query, as the
/// server sees them) with `body`.
pub fn sign_request(keys: &ClusterKeys, method: &str, target: &str, body: &[u8]) -> String {
    let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
    sign_request_at(keys, method, target, body, unix_ms(), nonce)
}

/// [`sign_request`] at time `t_ms` (unix ms) with `nonce`: for tests of the replay window.
pub fn sign_request_at(
    keys: &ClusterKeys,
    method: &str,
    target: &str,
    body: &[u8],
    t_ms: u64,
    nonce: u64,
) -> String {
    let t = t_ms.to_string();
    let n = format!("{nonce:016x}");
    let h = hex(&Sha256::digest(body));
    let m = hex(&keys.sign(&http_parts(method, target, &t, &n, &h), 32));
    format!("t={t};n={n};h={h};m={m}")
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::Unauthorized(format!("{why} ({AUTH_HEADER}, CLUSTER_KEY)"))
}

/// Checks a signed request's head, before its body is read: the MAC, the time and the nonce.
/// Returns the hash its body must have.
pub fn check_head(
    keys: &ClusterKeys,
    nonces: &Nonces,
    method: &str,
    target: &str,
    header: Option<&str>,
) -> Result<[u8; 32], ApiError> {
    let header =
        header.ok_or_else(|| unauthorized("this request must be signed with the cluster key"))?;
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for pair in header.split(';') {
        if let Some((key, value)) = pair.trim().split_once('=') {
            fields.insert(key, value);
        }
    }
    let (Some(&t), Some(&n), Some(&h), Some(&m)) = (
        fields.get("t"),
        fields.get("n"),
        fields.get("h"),
        fields.get("m"),
    ) else {
        return Err(unauthorized("a malformed signature"));
    };
    let tag = unhex(m).ok_or_else(|| unauthorized("a malformed signature"))?;
    if !keys.verify(&http_parts(method, target, t, n, h), &tag) {
        return Err(unauthorized("a wrong signature"));
    }
    let sent = t
        .parse::<u64>()
        .map_err(|_| unauthorized("a malformed time"))?;
    if unix_ms().abs_diff(sent) > WINDOW.as_millis() as u64 {
        return Err(unauthorized(
            "a signature outside the replay window of 60 s",
        ));
    }
    if !nonces.first_time(&tag, sent) {
        return Err(unauthorized("a signature used before"));
    }
    let body_hash = unhex(h)
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or_else(|| unauthorized("a malformed body hash"))?;
    Ok(body_hash)
}

/// The body hash a signature header names (its MAC already checked by [`check_head`]).
pub fn body_hash_of(header: &str) -> Option<[u8; 32]> {
    let h = header
        .split(';')
        .find_map(|pair| pair.trim().strip_prefix("h="))?;
    unhex(h).and_then(|h| <[u8; 32]>::try_from(h).ok())
}

/// Checks a signed request's body against the hash its head gave.
pub fn check_body(body_hash: &[u8; 32], body: &[u8]) -> Result<(), ApiError> {
    if Sha256::digest(body).as_slice() == body_hash {
        Ok(())
    } else {
        Err(unauthorized("a body that is not the one signed"))
    }
}

/// The MACs of the signed requests of the last window, to refuse one sent again.
#[derive(Default)]
pub struct Nonces {
    seen: Mutex<Seen>,
}

/// Each MAC seen with the time it was sent, and the MACs in the order they came (to forget
/// the oldest).
#[derive(Default)]
struct Seen {
    sent: HashMap<Vec<u8>, u64>,
    order: VecDeque<(u64, Vec<u8>)>,
}

impl Nonces {
    /// `true` the first time `tag` (sent at `sent`, unix ms) is seen within the window.
    fn first_time(&self, tag: &[u8], sent: u64) -> bool {
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Seen { sent: seen, order } = &mut *guard;
        let horizon = unix_ms().saturating_sub(2 * WINDOW.as_millis() as u64);
        while let Some((at, _)) = order.front() {
            if *at >= horizon && order.len() < MAX_NONCES {
                break;
            }
            if let Some((_, old)) = order.pop_front() {
                seen.remove(&old);
            }
        }
        if seen.contains_key(tag) {
            return false;
        }
        seen.insert(tag.to_vec(), sent);
        order.push_back((unix_ms(), tag.to_vec()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> ClusterKeys {
        ClusterKeys::parse(text).unwrap()
    }

    #[test]
    fn datagrams_are_sealed_checked_and_taken_once() {
        use crate::id::ResourceId;
        use crate::wire::{self, Body, Message, Sender};
        let seals = DatagramSeals::new(keys("the-group-key-0123456789"));
        let other = DatagramSeals::new(keys("another-group-0123456789"));
        let id = ResourceId([7; 32]);
        let reply = |location: &str| {
            let sender = Sender::Reply {
                from: "b".into(),
                to: "a".into(),
                tag: 5,
            };
            Message::new(sender, Body::Found(location.into()))
        };
        let mut found = reply("127.0.0.1:8000");
        let bytes = seals.seal_encode(&mut found, Some(&id));
        assert_eq!(bytes, found.encode());
        let sent = wire::parse(&bytes).unwrap();
        assert_eq!(sent, found);
        // Bound to the id it answers, and to every byte of it.
        assert_eq!(
            seals.check(&sent, Some(&ResourceId([8; 32]))),
            Err(SealError::Wrong)
        );
        let mut moved = sent.clone();
        moved.body = Body::Found("10.0.0.66:80".into());
        assert_eq!(seals.check(&moved, Some(&id)), Err(SealError::Wrong));
        assert_eq!(other.check(&sent, Some(&id)), Err(SealError::Wrong));
        assert_eq!(
            seals.check(&reply("x:1"), Some(&id)),
            Err(SealError::Unsigned)
        );
        // Right once; the same again is a replay; others of the sender are fine, in any order.
        let mut later = reply("127.0.0.1:8000");
        seals.seal(&mut later, Some(&id));
        assert_eq!(seals.check(&later, Some(&id)), Ok(()));
        assert_eq!(seals.check(&sent, Some(&id)), Ok(()));
        assert_eq!(seals.check(&sent, Some(&id)), Err(SealError::Replayed));
        assert_eq!(seals.check(&later, Some(&id)), Err(SealError::Replayed));
        // Too old, even with a right MAC.
        let mut old = reply("127.0.0.1:8000");
        let stamp = unix_us() - 2 * WINDOW.as_micros() as u64;
        let text = old.signed_text(stamp);
        let mac = seals.keys.sign(&DatagramSeals::parts(&text, Some(&id)), 16);
        old.seal = Some(crate::wire::Seal {
            stamp,
            mac: mac.try_into().unwrap(),
        });
        assert_eq!(seals.check(&old, Some(&id)), Err(SealError::Stale));
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(ClusterKeys::parse("").is_err());
        let short = ClusterKeys::parse("0123456789abcdef0123, tiny").unwrap_err();
        assert!(
            short.contains("key 2 of 2") && !short.contains("tiny"),
            "{short}"
        );
        let two = keys("first-key-0123456789,\nsecond-key-0123456789");
        let shown = format!("{two:?}");
        assert_eq!(shown, "ClusterKeys(2 key(s), not shown)");
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let old = keys("old-key-0123456789abcdef");
        let rotating = keys("new-key-0123456789abcdef,old-key-0123456789abcdef");
        let new = keys("new-key-0123456789abcdef");
        let parts: [&[u8]; 2] = [b"a", b"b"];
        let by_old = old.sign(&parts, 16);
        let by_rotating = rotating.sign(&parts, 16);
        assert!(rotating.verify(&parts, &by_old));
        assert!(new.verify(&parts, &by_rotating));
        assert!(!new.verify(&parts, &by_old));
        // Parts are framed: ["ab"] is not ["a", "b"].
        assert!(!old.verify(&[b"ab"], &by_old));
        assert!(!old.verify(&parts, &by_old[..8]), "too short a tag");
    }

    #[test]
    fn a_signed_request_is_checked_head_then_body_once() {
        let key = keys("a-key-of-the-cluster-0123");
        let nonces = Nonces::default();
        let header = sign_request(&key, "POST", "/api/supernode/register", b"{}");
        let check = |method: &str, target: &str, header: &str| {
            check_head(&key, &nonces, method, target, Some(header)).map_err(|e| e.status())
        };
        assert_eq!(check("GET", "/api/supernode/register", &header), Err(401));
        assert_eq!(check("POST", "/api/supernode/alive", &header), Err(401));
        let hash = check("POST", "/api/supernode/register", &header).unwrap();
        assert!(check_body(&hash, b"{}").is_ok());
        assert!(check_body(&hash, b"{ }").is_err());
        // The same signature again is a replay.
        assert_eq!(check("POST", "/api/supernode/register", &header), Err(401));
        let other = keys("another-key-0123456789ab");
        let forged = sign_request(&other, "POST", "/api/supernode/register", b"{}");
        assert_eq!(check("POST", "/api/supernode/register", &forged), Err(401));
        assert_eq!(
            check_head(&key, &nonces, "POST", "/x", None).map_err(|e| e.status()),
            Err(401)
        );
    }
}

/// Why a datagram failed the cluster key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// It carries no seal: a sender without the key (or the seed's own supernodes).
    Unsigned,
    /// Its MAC is not right under any key: forged, altered, or moved to another search.
    Wrong,
    /// Its time is outside the window.
    Stale,
    /// Its time was taken from its sender before: sent again.
    Replayed,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::Unsigned => "unsigned",
            SealError::Wrong => "a wrong MAC",
            SealError::Stale => "outside the time window",
            SealError::Replayed => "replayed",
        })
    }
}

/// Seals the datagrams a supernode sends and checks the ones it gets. A seal's MAC covers the
/// whole datagram and, for a `21` (whose payload is a location), the id it answers; its time
/// (unique per sender) must be within the window and not taken from its sender before, so a
/// datagram sent again changes nothing.
pub struct DatagramSeals {
    keys: ClusterKeys,
    last_stamp: std::sync::atomic::AtomicU64,
    /// The times taken from each sender; only datagrams that passed the MAC get here.
    seen: Mutex<HashMap<String, Taken>>,
}

/// The times taken from one sender. Datagrams may arrive out of order (a supernode's queries
/// leave from many threads), so a time is refused only when taken before or at most `floor`;
/// the floor rises as the oldest times are forgotten.
#[derive(Default)]
struct Taken {
    floor: u64,
    times: std::collections::BTreeSet<u64>,
}

/// Senders remembered at most; older entries are forgotten first (their datagrams are
/// outside the window by then).
const MAX_SENDERS: usize = 1024;
/// Times remembered per sender: datagrams arriving more than this many places out of order
/// are dropped (a retry resends a query).
const TIMES_PER_SENDER: usize = 4096;

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl DatagramSeals {
    pub fn new(keys: ClusterKeys) -> DatagramSeals {
        DatagramSeals {
            keys,
            last_stamp: std::sync::atomic::AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn parts<'a>(text: &'a str, answered: Option<&'a crate::id::ResourceId>) -> [&'a [u8]; 3] {
        [
            b"superpeer datagram",
            text.as_bytes(),
            answered.map_or(&[][..], |id| &id.0[..]),
        ]
    }

    /// Seals `message` and encodes it, writing its text once.
    pub fn seal_encode(
        &self,
        message: &mut crate::wire::Message,
        answered: Option<&crate::id::ResourceId>,
    ) -> Vec<u8> {
        let (text, seal) = self.sealed(message, answered);
        message.seal = Some(seal);
        // The MAC goes at the end of the sender field, before the first `;`.
        let at = text.find(';').unwrap_or(text.len());
        let mut out = Vec::with_capacity(text.len() + 33);
        out.extend_from_slice(&text.as_bytes()[..at]);
        out.push(b'/');
        out.extend_from_slice(hex(&seal.mac).as_bytes());
        out.extend_from_slice(&text.as_bytes()[at..]);
        out
    }

    /// Seals `message` (`answered`: the id a `21` answers).
    pub fn seal(
        &self,
        message: &mut crate::wire::Message,
        answered: Option<&crate::id::ResourceId>,
    ) {
        message.seal = Some(self.sealed(message, answered).1);
    }

    /// The text a seal covers, and the seal.
    fn sealed(
        &self,
        message: &crate::wire::Message,
        answered: Option<&crate::id::ResourceId>,
    ) -> (String, crate::wire::Seal) {
        use std::sync::atomic::Ordering;
        let now = unix_us();
        let stamp =
            match self
                .last_stamp
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                    Some(now.max(last + 1))
                }) {
                Ok(last) | Err(last) => now.max(last + 1),
            };
        let text = message.signed_text(stamp);
        let tag = self.keys.sign(&Self::parts(&text, answered), 16);
        let mut mac = [0u8; 16];
        mac.copy_from_slice(&tag);
        (text, crate::wire::Seal { stamp, mac })
    }

    /// Checks `message`'s seal; only a datagram that passes is remembered (its sender's time).
    pub fn check(
        &self,
        message: &crate::wire::Message,
        answered: Option<&crate::id::ResourceId>,
    ) -> Result<(), SealError> {
        let seal = message.seal.ok_or(SealError::Unsigned)?;
        let text = message.signed_text(seal.stamp);
        if !self.keys.verify(&Self::parts(&text, answered), &seal.mac) {
            return Err(SealError::Wrong);
        }
        let now = unix_us();
        let window = WINDOW.as_micros() as u64;
        if now.abs_diff(seal.stamp) > window {
            return Err(SealError::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = message.sender.from();
        if let Some(taken) = seen.get(sender)
            && (seal.stamp <= taken.floor || taken.times.contains(&seal.stamp))
        {
            return Err(SealError::Replayed);
        }
        if seen.len() >= MAX_SENDERS && !seen.contains_key(sender) {
            // Senders silent for a window: their datagrams would be stale anyway.
            seen.retain(|_, taken| {
                taken
                    .times
                    .last()
                    .is_some_and(|&last| now.saturating_sub(last) <= window)
            });
            if seen.len() >= MAX_SENDERS {
                return Err(SealError::Replayed);
            }
        }
        let taken = seen.entry(sender.to_string()).or_default();
        taken.times.insert(seal.stamp);
        // Forget the oldest beyond the count, and those outside the window: the floor (and
        // the window itself) refuses them from now on.
        let horizon = now.saturating_sub(window);
        while taken.times.len() > TIMES_PER_SENDER
            || taken.times.first().is_some_and(|&first| first < horizon)
        {
            if let Some(first) = taken.times.pop_first() {
                taken.floor = taken.floor.max(first);
            }
        }
        Ok(())
    }
}

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

    /// The keys for one purpose: each key's MAC of `purpose`. A MAC under them can never pass
    /// for one under the keys themselves, or for another purpose, whatever its input.
    pub fn derive(&self, purpose: &str) -> ClusterKeys {
        let keys = self
            .keys
            .iter()
            .map(|key| {
                let derived = Self::mac(key, &[purpose.as_bytes()])
                    .finalize()
                    .into_bytes();
                Hmac::<Sha256>::new_from_slice(&derived).expect("HMAC takes keys of any length")
            })
            .collect();
        ClusterKeys { keys }
    }

    /// The first 16 bytes of the MAC of `pieces` as one text, under the signing key; for
    /// inputs that delimit themselves (a datagram's text), under keys of their own purpose.
    pub fn sign_text(&self, pieces: &[&[u8]]) -> [u8; 16] {
        let mut mac = self.keys[0].clone();
        pieces.iter().for_each(|piece| mac.update(piece));
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// Whether `tag` is the [`ClusterKeys::sign_text`] of `pieces` under any of the keys.
    pub fn verify_text(&self, pieces: &[&[u8]], tag: &[u8; 16]) -> bool {
        self.keys.iter().any(|key| {
            let mut mac = key.clone();
            pieces.iter().for_each(|piece| mac.update(piece));
            mac.verify_truncated_left(tag).is_ok()
        })
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

    /// The MAC of `parts` under the signing key (a datagram keeps its first 16 bytes).
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        Self::mac(&self.keys[0], parts)
            .finalize()
            .into_bytes()
            .into()
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
    let mut text = vec![0; 2 * bytes.len()];
    crate::id::write_hex(bytes, &mut text);
    String::from_utf8(text).expect("hex digits are ASCII")
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
    let m = hex(&keys.sign(&http_parts(method, target, &t, &n, &h)));
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
            seals.check(&sent, &bytes, Some(&ResourceId([8; 32]))),
            Err(SealError::Wrong)
        );
        let mut moved = sent.clone();
        moved.body = Body::Found("10.0.0.66:80".into());
        assert_eq!(
            seals.check(&moved, &moved.encode(), Some(&id)),
            Err(SealError::Wrong)
        );
        assert_eq!(other.check(&sent, &bytes, Some(&id)), Err(SealError::Wrong));
        let unsigned = reply("x:1");
        assert_eq!(
            seals.check(&unsigned, &unsigned.encode(), Some(&id)),
            Err(SealError::Unsigned)
        );
        // Right once; the same again is a replay; others of the sender are fine, in any order.
        let mut later = reply("127.0.0.1:8000");
        let later_bytes = seals.seal_encode(&mut later, Some(&id));
        assert_eq!(seals.check(&later, &later_bytes, Some(&id)), Ok(()));
        assert_eq!(seals.check(&sent, &bytes, Some(&id)), Ok(()));
        assert_eq!(
            seals.check(&sent, &bytes, Some(&id)),
            Err(SealError::Replayed)
        );
        assert_eq!(
            seals.check(&later, &later_bytes, Some(&id)),
            Err(SealError::Replayed)
        );
        // Too old, even with a right MAC.
        let mut old = reply("127.0.0.1:8000");
        let stamp = unix_us() - 2 * WINDOW.as_micros() as u64;
        old.seal = Some(crate::wire::Seal {
            stamp,
            mac: [0; 16],
        });
        let mut old_bytes = old.encode();
        let mac = seals.keys.sign_text(&DatagramSeals::parts(
            wire::unsealed(&old_bytes).unwrap(),
            Some(&id),
        ));
        wire::put_mac(&mut old_bytes, &mac);
        let old = wire::parse(&old_bytes).unwrap();
        assert_eq!(
            seals.check(&old, &old_bytes, Some(&id)),
            Err(SealError::Stale)
        );
    }

    #[test]
    fn the_replay_window_slides_with_the_latest_time() {
        let base = 1_000_000_007;
        let mut taken = Taken::new(base);
        assert_eq!(taken.take(base), Err(SealError::Replayed));
        // Later, then earlier ones inside the window, each once.
        for stamp in [
            base + 5,
            base + 3,
            base - 1,
            base + 6 - REORDER_US,
            base + 200,
        ] {
            assert_eq!(taken.take(stamp), Ok(()), "{stamp}");
            assert_eq!(taken.take(stamp), Err(SealError::Replayed), "{stamp}");
        }
        assert_eq!(taken.take(base + 4), Ok(()));
        // Out of the window below the latest: refused, taken or not.
        assert_eq!(
            taken.take(base + 200 - REORDER_US),
            Err(SealError::Replayed)
        );
        // A jump clears what the window slides over: those bits stand for new times now.
        let later = base + 200 + REORDER_US - 10;
        assert_eq!(taken.take(later), Ok(()));
        for stamp in [base + 205, later - 1, later - 64, later - 65] {
            assert_eq!(taken.take(stamp), Ok(()), "{stamp}");
        }
        assert_eq!(taken.take(base + 4), Err(SealError::Replayed));
        let far = later + 10 * REORDER_US;
        assert_eq!(taken.take(far), Ok(()));
        assert_eq!(taken.take(far - 1), Ok(()));
        assert_eq!(taken.take(later), Err(SealError::Replayed));
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
        let by_old = old.sign(&parts);
        let by_rotating = rotating.sign(&parts);
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

impl SealError {
    /// How many kinds there are (`why as usize` numbers them).
    pub const COUNT: usize = 4;

    /// The reason, as the metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            SealError::Unsigned => "unsigned",
            SealError::Wrong => "wrong_mac",
            SealError::Stale => "stale",
            SealError::Replayed => "replayed",
        }
    }
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

/// The times taken from one sender: a sliding window of `REORDER_US` microseconds below the
/// latest, one bit a microsecond (the anti-replay window of IPsec, RFC 4303). Datagrams may
/// arrive out of order (a supernode's queries leave from many threads): a time is refused
/// when taken before, or when it is further below the latest than the window reaches.
struct Taken {
    latest: u64,
    bits: Box<[u64]>,
}

/// How far below its sender's latest time a datagram may arrive: 65 ms (8 KiB a sender).
/// One delayed longer is dropped as if replayed; a retry resends a query.
const REORDER_US: u64 = 1 << 16;

impl Taken {
    fn new(stamp: u64) -> Taken {
        let mut taken = Taken {
            latest: stamp,
            bits: vec![0; (REORDER_US / 64) as usize].into_boxed_slice(),
        };
        taken.flip(stamp);
        taken
    }

    /// Flips the bit of `stamp`; whether it was set before.
    fn flip(&mut self, stamp: u64) -> bool {
        let at = stamp % REORDER_US;
        let (word, bit) = ((at / 64) as usize, 1u64 << (at % 64));
        let was = self.bits[word] & bit != 0;
        self.bits[word] ^= bit;
        was
    }

    /// Takes `stamp` unless taken before or out of the window.
    fn take(&mut self, stamp: u64) -> Result<(), SealError> {
        if stamp > self.latest {
            // The bits of the times the window slides over now stand for new ones: cleared.
            let mut at = (self.latest + 1).max(stamp.saturating_sub(REORDER_US - 1));
            while at <= stamp {
                let (word, bit) = (((at % REORDER_US) / 64) as usize, at % 64);
                let n = (64 - bit).min(stamp + 1 - at);
                self.bits[word] &= !(u64::MAX >> (64 - n) << bit);
                at += n;
            }
            self.latest = stamp;
        } else if self.latest - stamp >= REORDER_US {
            return Err(SealError::Replayed);
        }
        if self.flip(stamp) {
            self.flip(stamp);
            return Err(SealError::Replayed);
        }
        Ok(())
    }
}

/// Senders remembered at most; older entries are forgotten first (their datagrams are
/// outside the window by then).
const MAX_SENDERS: usize = 1024;

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl DatagramSeals {
    pub fn new(keys: ClusterKeys) -> DatagramSeals {
        DatagramSeals {
            keys: keys.derive("superpeer datagram"),
            last_stamp: std::sync::atomic::AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// What a datagram's MAC covers: its bytes but the MAC (`unsealed`, in two pieces) and,
    /// for a `21` (whose payload is a location), the id it answers. No framing is needed: the
    /// text delimits itself, and its code says whether 32 bytes of id follow.
    fn parts<'a>(
        unsealed: (&'a [u8], &'a [u8]),
        answered: Option<&'a crate::id::ResourceId>,
    ) -> [&'a [u8]; 3] {
        [
            unsealed.0,
            unsealed.1,
            answered.map_or(&[][..], |id| &id.0[..]),
        ]
    }

    /// Seals `message` and encodes it: the text is written once, with room for the MAC, which
    /// is then computed over the text around it and written in place.
    pub fn seal_encode(
        &self,
        message: &mut crate::wire::Message,
        answered: Option<&crate::id::ResourceId>,
    ) -> Vec<u8> {
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
        message.seal = Some(crate::wire::Seal {
            stamp,
            mac: [0; 16],
        });
        let mut bytes = message.encode();
        let unsealed = crate::wire::unsealed(&bytes).expect("a sealed datagram has a MAC field");
        let mac = self.keys.sign_text(&Self::parts(unsealed, answered));
        crate::wire::put_mac(&mut bytes, &mac);
        message.seal = Some(crate::wire::Seal { stamp, mac });
        bytes
    }

    /// Checks the seal of `message`, parsed from `datagram`; only a datagram that passes is
    /// remembered (its sender's time).
    pub fn check(
        &self,
        message: &crate::wire::Message,
        datagram: &[u8],
        answered: Option<&crate::id::ResourceId>,
    ) -> Result<(), SealError> {
        let seal = message.seal.ok_or(SealError::Unsigned)?;
        let unsealed = crate::wire::unsealed(datagram).ok_or(SealError::Unsigned)?;
        if !self
            .keys
            .verify_text(&Self::parts(unsealed, answered), &seal.mac)
        {
            return Err(SealError::Wrong);
        }
        let now = unix_us();
        let window = WINDOW.as_micros() as u64;
        if now.abs_diff(seal.stamp) > window {
            return Err(SealError::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = message.sender.from();
        if let Some(taken) = seen.get_mut(sender) {
            return taken.take(seal.stamp);
        }
        if seen.len() >= MAX_SENDERS {
            // Senders silent for a window: their datagrams would be stale anyway.
            seen.retain(|_, taken| now.saturating_sub(taken.latest) <= window);
            if seen.len() >= MAX_SENDERS {
                return Err(SealError::Replayed);
            }
        }
        seen.insert(sender.to_string(), Taken::new(seal.stamp));
        Ok(())
    }
}

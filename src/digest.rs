//! Index digests: a compact, versioned summary of the ids a supernode indexes (the idea of
//! Summary Cache, Fan et al. 2000, and of Squid's cache digests), so that a search asks only
//! the peers whose summary may hold the id, and answers "not found" at once when none may.
//!
//! The summary is a Bloom filter: [`BITS_PER_ID`] bits for each id it is sized for and
//! [`HASHES`] positions per id, taken from the id itself (a SHA-256, so already uniform): about
//! 1% false positives when full, which cost one extra query each, never a wrong answer.
//!
//! The asymmetry it is built around: a peer that misses an *addition* would answer "not found"
//! wrongly; one that misses a *removal* only asks once too often. So every addition sets its
//! bits at once and takes the next version number, and the ids added lately are kept in a log
//! (up to [`LOG_IDS`]), from which a peer that has version `v` fetches just what came after
//! it. A removal changes nothing until the summary is rebuilt (when the ids outgrow it, or
//! enough were removed): a rebuild starts a new epoch, and peers fetch it whole.

use std::collections::VecDeque;

use crate::auth::ClusterKeys;
use crate::id::ResourceId;

/// The purpose the cluster key is derived for to sign summaries (their own key: a summary's
/// MAC can never pass for a request's or a datagram's).
const SIGNING_PURPOSE: &str = "superpeer index summary";
/// The MAC at the end of a summary served under a cluster key.
const MAC_LEN: usize = 32;

/// The keys that sign and check summaries, from the cluster key.
pub fn signing_keys(cluster: &ClusterKeys) -> ClusterKeys {
    cluster.derive(SIGNING_PURPOSE)
}

/// Appends the MAC of `encoded` under `keys` (served under a cluster key).
pub fn sign(keys: &ClusterKeys, encoded: &mut Vec<u8>) {
    let mac = keys.sign(&[encoded]);
    encoded.extend_from_slice(&mac);
}

/// The summary without its MAC, if the MAC is right under `keys`.
pub fn check(keys: &ClusterKeys, signed: &[u8]) -> Result<Vec<u8>, String> {
    let Some(split) = signed.len().checked_sub(MAC_LEN) else {
        return Err("a summary without its MAC".into());
    };
    let (encoded, mac) = signed.split_at(split);
    if keys.verify(&[encoded], mac) {
        Ok(encoded.to_vec())
    } else {
        Err("a summary whose MAC is wrong under the cluster key".into())
    }
}

/// Bits of the filter for each id it is sized for.
pub const BITS_PER_ID: usize = 10;
/// Positions set per id: near the best for 10 bits per id (0.8% false positives when full).
pub const HASHES: u32 = 7;
/// A new filter is sized for this many times the ids it starts with.
const GROWTH: f64 = 1.5;
/// The smallest filter, in ids.
const MIN_IDS: usize = 4096;
/// The largest filter a peer accepts, in bits (1 GiB of ids' summaries is not a summary).
pub const MAX_BITS: u64 = 1 << 31;
/// Additions kept for deltas: a peer further behind fetches the whole summary.
pub const LOG_IDS: usize = 65_536;
/// The first bytes of every encoded summary.
const MAGIC: &[u8; 4] = b"SPD1";
const FULL: u8 = 0;
const DELTA: u8 = 1;

/// A Bloom filter over resource ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
    bits: u64,
    hashes: u32,
}

impl Bloom {
    /// A filter sized for `ids` ids.
    pub fn for_ids(ids: usize) -> Bloom {
        let bits = (ids.max(MIN_IDS) * BITS_PER_ID).div_ceil(64) * 64;
        Bloom {
            words: vec![0; bits / 64],
            bits: bits as u64,
            hashes: HASHES,
        }
    }

    /// The ids the filter is sized for.
    pub fn capacity(&self) -> usize {
        self.bits as usize / BITS_PER_ID
    }

    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// The filter's positions for `id`: double hashing over two words of the id, each reduced
    /// to `0..bits` by a multiply and shift (no division).
    fn positions(&self, id: &ResourceId) -> impl Iterator<Item = u64> + use<> {
        let word = |i: usize| u64::from_le_bytes(id.0[i..i + 8].try_into().expect("8 bytes"));
        let (h1, h2) = (word(0), word(8) | 1);
        let bits = self.bits;
        (0..u64::from(self.hashes)).map(move |i| {
            let h = h1.wrapping_add(i.wrapping_mul(h2));
            ((u128::from(h) * u128::from(bits)) >> 64) as u64
        })
    }

    pub fn insert(&mut self, id: &ResourceId) {
        for p in self.positions(id) {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, id: &ResourceId) -> bool {
        self.positions(id)
            .all(|p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// This supernode's summary of its own index, kept by [`crate::index::Index`] under its lock.
#[derive(Debug)]
pub struct Digest {
    epoch: u64,
    version: u64,
    bloom: Bloom,
    /// Ids the filter holds (additions since the rebuild included).
    ids: usize,
    /// Ids removed from the index since the rebuild (still in the filter).
    removed: usize,
    /// The latest additions: `log[i]` took version `log_start + i + 1`.
    log: VecDeque<ResourceId>,
    log_start: u64,
}

impl Default for Digest {
    fn default() -> Digest {
        Digest::rebuilt(std::iter::empty(), 0)
    }
}

/// A new epoch: random, so a restarted supernode's versions never look like the old ones'.
fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

impl Digest {
    /// A summary of `ids` (`count` of them), in a new epoch.
    pub fn rebuilt<'a>(ids: impl Iterator<Item = &'a ResourceId>, count: usize) -> Digest {
        let mut bloom = Bloom::for_ids((count as f64 * GROWTH) as usize);
        for id in ids {
            bloom.insert(id);
        }
        Digest {
            epoch: new_epoch(),
            version: 0,
            bloom,
            ids: count,
            removed: 0,
            log: VecDeque::new(),
            log_start: 0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn bloom(&self) -> &Bloom {
        &self.bloom
    }

    /// An id new to the index.
    pub fn add(&mut self, id: &ResourceId) {
        self.bloom.insert(id);
        self.ids += 1;
        self.version += 1;
        if self.log.len() == LOG_IDS {
            self.log.pop_front();
            self.log_start += 1;
        }
        self.log.push_back(*id);
    }

    /// An id gone from the index: it stays in the filter until the next rebuild.
    pub fn remove(&mut self) {
        self.removed += 1;
    }

    /// Whether the summary should be built again: it holds more ids than it was sized for
    /// (false positives climb), or half of what it holds is gone.
    pub fn wants_rebuild(&self) -> bool {
        self.ids > self.bloom.capacity() || self.removed > MIN_IDS.max(self.ids / 2)
    }

    /// The summary for a peer that has `(epoch, version)`: only the additions since, when the
    /// log still has them all; the whole filter otherwise.
    pub fn encode_for(&self, have: Option<(u64, u64)>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        match have {
            Some((epoch, since))
                if epoch == self.epoch && since >= self.log_start && since <= self.version =>
            {
                let ids = self.log.range((since - self.log_start) as usize..);
                out.reserve(21 + 32 * ids.len());
                out.push(DELTA);
                out.extend_from_slice(&self.epoch.to_le_bytes());
                out.extend_from_slice(&self.version.to_le_bytes());
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
            _ => {
                out.reserve(26 + 8 * self.bloom.words.len());
                out.push(FULL);
                out.extend_from_slice(&self.epoch.to_le_bytes());
                out.extend_from_slice(&self.version.to_le_bytes());
                out.push(self.bloom.hashes as u8);
                out.extend_from_slice(&self.bloom.bits.to_le_bytes());
                for word in &self.bloom.words {
                    out.extend_from_slice(&word.to_le_bytes());
                }
            }
        }
        out
    }
}

/// A peer's summary as this supernode holds it.
#[derive(Debug, Clone)]
pub struct PeerDigest {
    pub epoch: u64,
    pub version: u64,
    pub bloom: Bloom,
}

/// Applies an encoded summary (from [`Digest::encode_for`]) to what was held of that peer's:
/// a whole one replaces it, a delta adds to it (and needs the same epoch). Errors say why.
pub fn apply(held: Option<PeerDigest>, bytes: &[u8]) -> Result<PeerDigest, String> {
    let mut input = Reader(bytes);
    if input.take(4)? != MAGIC {
        return Err("not a digest".into());
    }
    let kind = input.take(1)?[0];
    let epoch = input.u64()?;
    let version = input.u64()?;
    match kind {
        FULL => {
            let hashes = u32::from(input.take(1)?[0]);
            let bits = input.u64()?;
            if !(1..=16).contains(&hashes) || bits == 0 || bits % 64 != 0 || bits > MAX_BITS {
                return Err(format!("a filter of {bits} bits and {hashes} hashes"));
            }
            let raw = input.take(bits as usize / 8)?;
            input.end()?;
            let words = raw
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                .collect();
            Ok(PeerDigest {
                epoch,
                version,
                bloom: Bloom {
                    words,
                    bits,
                    hashes,
                },
            })
        }
        DELTA => {
            let Some(mut digest) = held.filter(|d| d.epoch == epoch) else {
                return Err("a delta for a summary not held".into());
            };
            let count = u32::from_le_bytes(input.take(4)?.try_into().expect("4 bytes"));
            for _ in 0..count {
                let id: [u8; 32] = input.take(32)?.try_into().expect("32 bytes");
                digest.bloom.insert(&ResourceId(id));
            }
            input.end()?;
            digest.version = version;
            Ok(digest)
        }
        other => Err(format!("unknown digest kind {other}")),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a digest cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn end(&self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the digest")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ResourceId {
        use sha2::{Digest as _, Sha256};
        ResourceId(Sha256::digest(n.to_le_bytes()).into())
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut bloom = Bloom::for_ids(10_000);
        for n in 0..10_000 {
            bloom.insert(&id(n));
        }
        assert!((0..10_000).all(|n| bloom.may_contain(&id(n))));
        let false_positives = (10_000..110_000)
            .filter(|&n| bloom.may_contain(&id(n)))
            .count();
        assert!(false_positives < 1_500, "{false_positives} of 100,000");
    }

    #[test]
    fn a_peer_follows_by_deltas_and_refetches_a_new_epoch_whole() {
        let ids: Vec<ResourceId> = (0..100).map(id).collect();
        let mut own = Digest::rebuilt(ids.iter(), ids.len());
        let full = own.encode_for(None);
        let peer = apply(None, &full).unwrap();
        assert_eq!((peer.epoch, peer.version), (own.epoch(), 0));
        assert!(ids.iter().all(|i| peer.bloom.may_contain(i)));

        for n in 100..110 {
            own.add(&id(n));
        }
        let delta = own.encode_for(Some((peer.epoch, peer.version)));
        assert!(delta.len() < 400, "ten ids: {} bytes", delta.len());
        let peer = apply(Some(peer), &delta).unwrap();
        assert_eq!(peer.version, 10);
        assert!((0..110).all(|n| peer.bloom.may_contain(&id(n))));
        assert_eq!(peer.bloom, own.bloom().clone());

        // A delta for another epoch is refused; a peer too far behind gets the whole.
        let other = Digest::rebuilt(ids.iter(), ids.len());
        let wrong = other.encode_for(Some((other.epoch(), 0)));
        assert!(apply(Some(peer.clone()), &wrong).is_err());
        let behind = own.encode_for(Some((own.epoch(), 11)));
        assert_eq!(behind[4], FULL, "a version never issued");
    }

    #[test]
    fn the_log_keeps_the_latest_additions_only() {
        let mut own = Digest::default();
        for n in 0..(LOG_IDS as u32 + 10) {
            own.add(&id(n));
        }
        assert_eq!(own.encode_for(Some((own.epoch(), 5)))[4], FULL);
        let delta = own.encode_for(Some((own.epoch(), 10)));
        assert_eq!(delta[4], DELTA);
        assert_eq!(delta.len(), 4 + 1 + 8 + 8 + 4 + 32 * LOG_IDS);
        assert!(own.wants_rebuild(), "65,546 ids in a filter for 4,096");
    }

    #[test]
    fn a_summary_signed_under_the_cluster_key_is_checked() {
        let cluster = ClusterKeys::parse("a-cluster-key-of-at-least-16-bytes").unwrap();
        let other = ClusterKeys::parse("another-key-of-at-least-16-bytes").unwrap();
        let (keys, wrong) = (signing_keys(&cluster), signing_keys(&other));
        let mut encoded = Digest::default().encode_for(None);
        let plain = encoded.clone();
        sign(&keys, &mut encoded);
        assert_eq!(check(&keys, &encoded).unwrap(), plain);
        assert!(check(&wrong, &encoded).is_err());
        assert!(check(&keys, &plain).is_err(), "unsigned");
        encoded[10] ^= 1;
        assert!(check(&keys, &encoded).is_err(), "changed");
        assert!(check(&keys, b"short").is_err());
    }

    #[test]
    fn junk_is_refused_not_trusted() {
        let own = Digest::rebuilt(std::iter::empty(), 0);
        let good = own.encode_for(None);
        for cut in [0, 3, 5, 20, good.len() - 1] {
            assert!(apply(None, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(apply(None, &long).is_err());
        let mut huge = good[..21].to_vec();
        huge.push(7);
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(apply(None, &huge).is_err());
        let mut no_hashes = good.clone();
        no_hashes[21] = 0;
        assert!(apply(None, &no_hashes).is_err());
    }
}

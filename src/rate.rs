//! Token buckets by key (a source host and what it asks): `rate` a second, up to `burst` at
//! once. The table is bounded: idle keys are forgotten first (a full bucket is as good as
//! none), and when every key is busy a new one gets nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A key not used for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60);

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key, at most `max_keys` of them.
pub struct Buckets<K> {
    buckets: HashMap<K, Bucket>,
    max_keys: usize,
}

impl<K: Hash + Eq> Buckets<K> {
    pub fn new(max_keys: usize) -> Buckets<K> {
        Buckets {
            buckets: HashMap::new(),
            max_keys,
        }
    }

    /// Takes `cost` tokens from `key`'s bucket, filled at `rate` a second up to `burst`:
    /// whether it had them (when not, nothing is taken).
    pub fn take(&mut self, key: K, cost: f64, (rate, burst): (f64, f64), now: Instant) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            self.buckets.retain(|_, b| now - b.at < IDLE);
            if self.buckets.len() >= self.max_keys {
                return false;
            }
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens + (now - bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Forgets the keys idle for a minute.
    pub fn expire(&mut self, now: Instant) {
        self.buckets.retain(|_, b| now - b.at < IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let now = Instant::now();
        let mut buckets = Buckets::new(2);
        let limit = (10.0, 20.0);
        assert_eq!(
            (0..30)
                .filter(|_| buckets.take("a", 1.0, limit, now))
                .count(),
            20
        );
        assert!(!buckets.take("a", 1.0, limit, now));
        assert!(buckets.take("b", 20.0, limit, now), "each key its own");
        let later = now + Duration::from_millis(500);
        assert!(!buckets.take("a", 6.0, limit, later), "5 came back, not 6");
        assert!(buckets.take("a", 5.0, limit, later));
        // The table is full of busy keys: a third gets nothing, until the others idle.
        assert!(!buckets.take("c", 1.0, limit, later));
        assert!(buckets.take("c", 1.0, limit, later + IDLE));
    }
}

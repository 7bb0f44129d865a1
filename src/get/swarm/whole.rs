//! The whole file's SHA-256, taken in order while the pieces arrive: a thread reads each
//! piece back from the page cache as soon as the ones before it are done, so the hash is ready
//! soon after the last piece instead of a whole read later.

use std::os::unix::fs::FileExt;
use std::sync::PoisonError;
use std::time::Duration;

use crate::id::ResourceId;

use super::Shared;

/// Sets the download over when dropped, so the hashing thread ends.
pub(super) struct Over<'a>(pub(super) &'a Shared);

impl Drop for Over<'_> {
    fn drop(&mut self) {
        self.0.lock().over = true;
        self.0.changed.notify_all();
    }
}

/// The whole part file's SHA-256, once every piece is done and the hashing thread took them.
pub(super) fn whole_hash(shared: &Shared) -> Result<ResourceId, String> {
    let mut state = shared.lock();
    loop {
        if let Some(whole) = state.whole.clone() {
            return whole;
        }
        state = shared
            .changed
            .wait_timeout(state, Duration::from_millis(100))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The hashing thread: hashes the part file's pieces in order as they are done (read back
/// from the page cache), so the whole file's hash is ready soon after its last piece instead
/// of a whole read later; starts over when a replaced list undid a piece it took.
pub(super) fn hash_in_order(shared: &Shared) {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = Vec::new();
    loop {
        let (start, len) = {
            let mut state = shared.lock();
            loop {
                if state.over {
                    return;
                }
                if state.whole_restart {
                    state.whole_restart = false;
                    state.whole_next = 0;
                    state.whole = None;
                    hasher = sha2::Sha256::new();
                }
                let next = state.whole_next;
                if next == state.done.len() {
                    if state.whole.is_none() {
                        state.whole = Some(Ok(ResourceId(hasher.clone().finalize().into())));
                        shared.changed.notify_all();
                    }
                } else if state.done[next] {
                    state.whole_next += 1;
                    break state.list.span(next);
                }
                state = shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        buffer.resize(len as usize, 0);
        if let Err(e) = shared.file.read_exact_at(&mut buffer, start) {
            shared.lock().whole = Some(Err(format!("reading it back: {e}")));
            shared.changed.notify_all();
            return;
        }
        hasher.update(&buffer);
    }
}

//! A file this node does not hold, served all the same to a client that asks for it
//! (`GET resources/<id>/content?fetch=true`, SPEC 9b): the node downloads it from every
//! holder at once as `superpeer get` does, each piece checked against its list and the whole
//! against the id, into a temporary file, and answers from that file like from one of its
//! own (ranges included). For a client that reaches this node and not the holders (a holder
//! on another network, found through `PEERS`), or that cannot check what it gets.
//!
//! The file is unlinked as soon as it is open: it goes when the answer is sent, and nothing of
//! it stays in `TMPDIR` after a crash longer than the download. A request costs the node the
//! whole file, whatever the client takes of it, so fetches are bounded: `FETCH_MAX_BYTES` per
//! file (0: never) and [`AT_ONCE`] in all, the others refused at once (503) instead of
//! holding an HTTP worker each.

use std::fs::{File, Metadata};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::ApiError;
use crate::get::{Fetch, swarm_quietly};
use crate::id::ResourceId;

/// Fetches at once, in all.
pub const AT_ONCE: usize = 2;

pub struct Fetcher {
    /// `FETCH_MAX_BYTES`.
    max_bytes: u64,
    running: AtomicUsize,
    /// Numbers the temporary files (two clients may ask for one id at once).
    next: AtomicU64,
    dir: PathBuf,
}

impl Fetcher {
    pub fn new(max_bytes: u64) -> Fetcher {
        Fetcher {
            max_bytes,
            running: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            dir: std::env::temp_dir(),
        }
    }

    /// `id`, fetched from `holders` (plain `host:port`s, this node not among them) and
    /// checked: the open file, already unlinked, and its metadata.
    pub fn fetch(
        &self,
        id: ResourceId,
        holders: Vec<String>,
    ) -> Result<(File, Metadata), ApiError> {
        if self.max_bytes == 0 {
            return Err(ApiError::Forbidden(
                "this node fetches no file for its clients (FETCH_MAX_BYTES=0)".into(),
            ));
        }
        let _slot = self.slot()?;
        let count = holders.len();
        let part = self.dir.join(format!(
            "superpeer-fetch-{}-{}-{id}.part",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        let fetched = swarm_quietly(id, holders, &part, self.max_bytes);
        let opened = fetched.map_err(|e| refused(id, e)).and_then(|()| {
            let file = File::open(&part).map_err(|e| {
                ApiError::Unavailable(format!("resource {id}: the fetched file: {e}"))
            })?;
            let metadata = file.metadata().map_err(|e| {
                ApiError::Unavailable(format!("resource {id}: the fetched file: {e}"))
            })?;
            Ok((file, metadata))
        });
        let _ = std::fs::remove_file(&part);
        match &opened {
            Ok((_, metadata)) => log::info!(
                "resource {id}: fetched for a client from {count} holder(s), {} bytes",
                metadata.len()
            ),
            Err(e) => log::warn!("resource {id}: not fetched for a client: {e}"),
        }
        opened
    }

    /// One of the [`AT_ONCE`] places, held until the guard drops.
    fn slot(&self) -> Result<Slot<'_>, ApiError> {
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < AT_ONCE).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(&self.running)),
            Err(_) => Err(ApiError::Unavailable(format!(
                "this node fetches {AT_ONCE} files for clients already; retry later"
            ))),
        }
    }
}

struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client's answer when the fetch gave no file.
fn refused(id: ResourceId, why: Fetch) -> ApiError {
    match why {
        Fetch::NoList => ApiError::BadGateway(format!("no holder of {id} gives its piece list")),
        Fetch::TooLarge(size) => ApiError::Forbidden(format!(
            "resource {id} has {size} bytes, more than this node fetches for a client (FETCH_MAX_BYTES)"
        )),
        Fetch::Failed(why) => ApiError::BadGateway(format!("resource {id}: {why}")),
    }
}

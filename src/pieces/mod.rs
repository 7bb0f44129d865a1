//! A file's pieces: fixed-size spans (the last one shorter), each named by its own SHA-256, so
//! a download from several holders can check every piece as it arrives instead of the whole
//! file at its end (BitTorrent's pieces, aria2's Metalink piece hashes).
//!
//! A node hashes a file's pieces in the same read that gives its id ([`IdHasher`]), and keeps
//! the list with the file's entry.

mod hasher;
#[cfg(target_arch = "x86_64")]
mod sha_ni;

use sha2::{Digest, Sha256};

pub use crate::api::PieceList;
use crate::id::ResourceId;
pub use hasher::IdHasher;

/// `PIECE_SIZE`'s default: 1 MiB, BitTorrent's and aria2's usual size for files of this size.
pub const DEFAULT_PIECE_SIZE: u64 = 1 << 20;
/// The smallest piece size a node may use and a client accepts: 16 KiB (a list of a 1 GiB
/// file is then 2 MiB of hex).
pub const MIN_PIECE_SIZE: u64 = 16 << 10;
/// The largest: 64 MiB, which a client holds in memory once per connection.
pub const MAX_PIECE_SIZE: u64 = 64 << 20;

impl PieceList {
    /// How many pieces a file of `size` bytes has.
    pub fn count(size: u64, piece_size: u64) -> u64 {
        size.div_ceil(piece_size)
    }

    /// Where piece `index` starts in the file, and its length.
    pub fn span(&self, index: usize) -> (u64, u64) {
        let start = index as u64 * self.piece_size;
        (start, self.piece_size.min(self.size - start))
    }

    /// Whether the list is one a client can use for `id`: the id asked for, a piece size in
    /// bounds, one hash for each piece of the size. Why not, otherwise.
    pub fn check(&self, id: ResourceId) -> Result<(), String> {
        if self.id != id {
            return Err(format!("a piece list of {}, not of {id}", self.id));
        }
        if !(MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&self.piece_size) {
            return Err(format!(
                "a piece size of {} bytes, outside {MIN_PIECE_SIZE}-{MAX_PIECE_SIZE}",
                self.piece_size
            ));
        }
        let count = PieceList::count(self.size, self.piece_size);
        if self.pieces.len() as u64 != count {
            return Err(format!(
                "{} piece hashes for {count} pieces of {} bytes",
                self.pieces.len(),
                self.size
            ));
        }
        Ok(())
    }
}

/// The piece list `holder` (`host:port`) gives for `id`, checked to fit it; a body over
/// `limit` bytes is refused. The error says why, in the holder's words where it had any (not
/// escaped for a terminal).
pub fn fetch(
    agent: &ureq::Agent,
    holder: &str,
    id: ResourceId,
    limit: u64,
) -> Result<PieceList, String> {
    let url = format!("http://{holder}/api/node/resources/{id}/pieces");
    let mut response = agent
        .get(&url)
        .call()
        .map_err(|e| format!("{holder}: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("{holder}: no piece list (it answered {status})"));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| format!("{holder}: {e}"))?;
    let list: PieceList = crate::api::data_of(&body)
        .map_err(|e| format!("{holder}: a piece list that does not parse: {e}"))?;
    list.check(id).map_err(|e| format!("{holder}: {e}"))?;
    Ok(list)
}

/// The SHA-256 of `bytes`, as an id.
pub fn sha256(bytes: &[u8]) -> ResourceId {
    ResourceId(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_file_and_the_last_is_shorter() {
        let bytes: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        let piece_size = MIN_PIECE_SIZE;
        let mut hasher = IdHasher::new(piece_size);
        hasher.update(&bytes);
        let (id, pieces) = hasher.finish();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0], sha256(&bytes[..16384]));
        assert_eq!(pieces[2], sha256(&bytes[32768..]));
        let list = PieceList {
            id,
            size: bytes.len() as u64,
            piece_size,
            pieces,
        };
        assert_eq!(list.check(list.id), Ok(()));
        assert_eq!(list.span(2), (32768, 40_000 - 32768));
        assert_eq!(list.id, sha256(&bytes));
        // An empty file has no pieces.
        assert_eq!(IdHasher::new(piece_size).finish().1, []);
    }

    #[test]
    fn a_list_that_does_not_fit_its_size_or_id_is_refused() {
        let id = sha256(b"x");
        let good = PieceList {
            id,
            size: 3 * MIN_PIECE_SIZE,
            piece_size: MIN_PIECE_SIZE,
            pieces: vec![id; 3],
        };
        assert!(good.check(id).is_ok());
        assert!(good.check(sha256(b"y")).is_err());
        let short = PieceList {
            pieces: vec![id; 2],
            ..good.clone()
        };
        assert!(short.check(id).unwrap_err().contains("2 piece hashes"));
        for piece_size in [0, MIN_PIECE_SIZE - 1, MAX_PIECE_SIZE + 1] {
            let odd = PieceList {
                piece_size,
                ..good.clone()
            };
            assert!(odd.check(id).is_err(), "{piece_size}");
        }
    }
}

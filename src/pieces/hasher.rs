//! A file's id and its piece hashes from one read of its bytes.
//!
//! Every piece starts on a 64-byte block boundary (piece sizes are multiples of 16 KiB), so the
//! whole hash and the current piece's hash take the very same blocks: with the x86 SHA
//! extensions both advance together ([`super::sha_ni`]), for little more than the id costs
//! alone; elsewhere one after the other with the `sha2` crate's compression.

use sha2::digest::generic_array::GenericArray;

use crate::id::ResourceId;

/// SHA-256's initial state.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Hashes a stream of bytes as a whole and in pieces of a fixed size.
pub struct IdHasher {
    whole: [u32; 8],
    piece: [u32; 8],
    /// Bytes that do not fill a block yet.
    pending: [u8; 64],
    pending_len: usize,
    /// Bytes taken in all, and into the current piece.
    total: u64,
    in_piece: u64,
    piece_size: u64,
    pieces: Vec<ResourceId>,
    two_at_once: bool,
}

impl IdHasher {
    /// # Panics
    /// When `piece_size` is not a positive multiple of 64.
    pub fn new(piece_size: u64) -> IdHasher {
        assert!(piece_size > 0 && piece_size.is_multiple_of(64));
        IdHasher {
            whole: H0,
            piece: H0,
            pending: [0; 64],
            pending_len: 0,
            total: 0,
            in_piece: 0,
            piece_size,
            pieces: Vec::new(),
            two_at_once: fast_available(),
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        if self.pending_len > 0 {
            let take = bytes.len().min(64 - self.pending_len);
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < 64 {
                return;
            }
            let block = self.pending;
            self.pending_len = 0;
            self.blocks(&block);
        }
        let whole_blocks = bytes.len() / 64 * 64;
        self.blocks(&bytes[..whole_blocks]);
        let rest = &bytes[whole_blocks..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The id of everything given, and the hash of each piece (none for no bytes).
    pub fn finish(mut self) -> (ResourceId, Vec<ResourceId>) {
        let tail = &self.pending[..self.pending_len];
        let total = self.total + tail.len() as u64;
        if self.in_piece > 0 || !tail.is_empty() {
            let piece = finish(self.piece, tail, self.in_piece + tail.len() as u64);
            self.pieces.push(piece);
        }
        (finish(self.whole, tail, total), self.pieces)
    }

    /// Takes whole blocks, closing each piece at its end.
    fn blocks(&mut self, mut blocks: &[u8]) {
        while !blocks.is_empty() {
            let room = usize::try_from(self.piece_size - self.in_piece).unwrap_or(usize::MAX);
            let (now, later) = blocks.split_at(blocks.len().min(room));
            self.compress(now);
            self.total += now.len() as u64;
            self.in_piece += now.len() as u64;
            if self.in_piece == self.piece_size {
                self.pieces.push(finish(self.piece, &[], self.piece_size));
                self.piece = H0;
                self.in_piece = 0;
            }
            blocks = later;
        }
    }

    fn compress(&mut self, blocks: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if self.two_at_once {
            return super::sha_ni::compress_both(&mut self.whole, &mut self.piece, blocks);
        }
        compress(&mut self.whole, blocks);
        compress(&mut self.piece, blocks);
    }
}

fn fast_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::sha_ni::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The `sha2` crate's compression of whole blocks (SHA-NI when there, but one state at a time).
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

/// The digest of a state that took `len` bytes so far, `tail` (under 64 bytes) being the last.
fn finish(mut state: [u32; 8], tail: &[u8], len: u64) -> ResourceId {
    // The padding: 0x80, zeros, then the length in bits, to end on a block boundary.
    let mut last = [0u8; 128];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    let end = if tail.len() < 56 { 64 } else { 128 };
    last[end - 8..end].copy_from_slice(&(len * 8).to_be_bytes());
    compress(&mut state, &last[..end]);
    let mut id = [0u8; 32];
    for (bytes, word) in id.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    ResourceId(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pieces::sha256;

    /// Against `sha2` itself: every length around block and piece boundaries, fed in odd
    /// chunks, on both paths (two at once where the CPU has it, one after the other).
    #[test]
    fn the_id_and_the_pieces_are_sha256s() {
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let piece_size = 1024;
        for len in [
            0, 1, 55, 56, 63, 64, 65, 119, 120, 1023, 1024, 1025, 2048, 5000, 20_000,
        ] {
            let data = &bytes[..len];
            for two_at_once in [false, fast_available()] {
                for chunk in [1, 63, 64, 1000, 4096] {
                    let mut hasher = IdHasher::new(piece_size);
                    hasher.two_at_once = two_at_once;
                    data.chunks(chunk).for_each(|c| hasher.update(c));
                    let (id, pieces) = hasher.finish();
                    assert_eq!(id, sha256(data), "len {len} chunk {chunk}");
                    let expected: Vec<_> = data.chunks(piece_size as usize).map(sha256).collect();
                    assert_eq!(pieces, expected, "len {len} chunk {chunk}");
                }
            }
        }
    }
}

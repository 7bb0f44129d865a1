//! Two SHA-256 states advanced over the same blocks at once, with the x86 SHA extensions.
//!
//! One SHA-256 is a chain: each `sha256rnds2` waits for the one before it, so a core runs one
//! hash at the speed of that instruction's latency and leaves its throughput half idle. Two
//! independent states fed the same message words fill that gap (the kernel's
//! `sha256_finup_2x` makes the same observation): the node's id and its current piece's hash
//! cost little more than the id alone. The message schedule is shared, as the bytes are.
//!
//! The round structure is Intel's (the SHA-NI white paper, as in the `sha2` crate's x86
//! backend), each step done for both states.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

/// Whether this CPU has what [`compress_both`] needs (std caches the answer).
pub fn available() -> bool {
    is_x86_feature_detected!("sha")
        && is_x86_feature_detected!("sse2")
        && is_x86_feature_detected!("ssse3")
        && is_x86_feature_detected!("sse4.1")
}

/// Advances both states over `blocks` (whole 64-byte blocks).
///
/// # Panics
/// When the CPU lacks the extensions: callers check [`available`] first.
pub fn compress_both(a: &mut [u32; 8], b: &mut [u32; 8], blocks: &[u8]) {
    assert!(available() && blocks.len().is_multiple_of(64));
    // SAFETY: the features the function is compiled for were detected just above, and it
    // reads only whole blocks of `blocks` (checked to be a multiple of 64 bytes).
    unsafe { compress_both_ni(a, b, blocks) }
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A state as the instructions keep it: the words ABEF in one register, CDGH in the other.
#[derive(Clone, Copy)]
struct Lanes {
    abef: __m128i,
    cdgh: __m128i,
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn load(state: &[u32; 8]) -> Lanes {
    // SAFETY: `state` is 32 bytes; the loads are unaligned.
    let (dcba, efgh) = unsafe {
        let p = state.as_ptr().cast::<__m128i>();
        (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
    };
    let cdab = _mm_shuffle_epi32(dcba, 0xB1);
    let efgh = _mm_shuffle_epi32(efgh, 0x1B);
    Lanes {
        abef: _mm_alignr_epi8(cdab, efgh, 8),
        cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
    }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn store(lanes: Lanes, state: &mut [u32; 8]) {
    let feba = _mm_shuffle_epi32(lanes.abef, 0x1B);
    let dchg = _mm_shuffle_epi32(lanes.cdgh, 0xB1);
    let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    let hgef = _mm_alignr_epi8(dchg, feba, 8);
    // SAFETY: `state` is 32 bytes; the stores are unaligned.
    unsafe {
        let p = state.as_mut_ptr().cast::<__m128i>();
        _mm_storeu_si128(p, dcba);
        _mm_storeu_si128(p.add(1), hgef);
    }
}

/// The next four message words from the sixteen before them.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
    let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
    _mm_sha256msg2_epu32(t, w3)
}

/// Four rounds of both states with the message words `w` (rounds `4 * i` to `4 * i + 3`).
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn rounds4(x: &mut Lanes, y: &mut Lanes, w: __m128i, i: usize) {
    // SAFETY: `i` < 16, so the four words at `4 * i` are in `K`; the load is unaligned.
    let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * i).cast::<__m128i>()) };
    let wk = _mm_add_epi32(w, k);
    x.cdgh = _mm_sha256rnds2_epu32(x.cdgh, x.abef, wk);
    y.cdgh = _mm_sha256rnds2_epu32(y.cdgh, y.abef, wk);
    let wk = _mm_shuffle_epi32(wk, 0x0E);
    x.abef = _mm_sha256rnds2_epu32(x.abef, x.cdgh, wk);
    y.abef = _mm_sha256rnds2_epu32(y.abef, y.cdgh, wk);
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn compress_both_ni(a: &mut [u32; 8], b: &mut [u32; 8], blocks: &[u8]) {
    // Message bytes are big-endian words.
    let swap = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
    // SAFETY (the loads and stores below): the states are 32 bytes each, each block 64.
    let (mut x, mut y) = unsafe { (load(a), load(b)) };
    for block in blocks.chunks_exact(64) {
        let (x0, y0) = (x, y);
        let word = |i: usize| {
            // SAFETY: `block` is 64 bytes and `i` < 4; the load is unaligned.
            let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>().add(i)) };
            _mm_shuffle_epi8(v, swap)
        };
        let (mut w0, mut w1, mut w2, mut w3) = (word(0), word(1), word(2), word(3));
        rounds4(&mut x, &mut y, w0, 0);
        rounds4(&mut x, &mut y, w1, 1);
        rounds4(&mut x, &mut y, w2, 2);
        rounds4(&mut x, &mut y, w3, 3);
        // Rounds 16 to 63, four at a time, on words scheduled from the sixteen before.
        for i in (4..16).step_by(4) {
            w0 = schedule(w0, w1, w2, w3);
            rounds4(&mut x, &mut y, w0, i);
            w1 = schedule(w1, w2, w3, w0);
            rounds4(&mut x, &mut y, w1, i + 1);
            w2 = schedule(w2, w3, w0, w1);
            rounds4(&mut x, &mut y, w2, i + 2);
            w3 = schedule(w3, w0, w1, w2);
            rounds4(&mut x, &mut y, w3, i + 3);
        }
        x.abef = _mm_add_epi32(x.abef, x0.abef);
        x.cdgh = _mm_add_epi32(x.cdgh, x0.cdgh);
        y.abef = _mm_add_epi32(y.abef, y0.abef);
        y.cdgh = _mm_add_epi32(y.cdgh, y0.cdgh);
    }
    unsafe {
        store(x, a);
        store(y, b);
    }
}

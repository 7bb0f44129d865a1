//! What the connections and the main thread of a swarm share: the list, which pieces are
//! done, queued and in flight, and who sent what. Plain data, unit-tested.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::id::ResourceId;
use crate::pieces::PieceList;

use super::ENDGAME_AFTER;

/// One holder, as the swarm sees it.
pub(super) struct Holder {
    pub(super) location: String,
    /// Why it is no longer asked, once it is not.
    pub(super) dropped: Option<String>,
    /// Dropped for a piece that did not match: it comes back when the list turns out wrong.
    pub(super) dropped_for_bytes: bool,
    /// Connections running for it.
    pub(super) connections: usize,
    pub(super) pieces: usize,
}

/// What every connection and the main thread share, under one lock.
pub(super) struct State {
    pub(super) list: Arc<PieceList>,
    /// The holder the list came from.
    pub(super) list_from: usize,
    pub(super) done: Vec<bool>,
    /// The pieces to fetch, in order, and whether each is in it (a file of a million pieces
    /// must not search it).
    pub(super) queue: VecDeque<usize>,
    pub(super) queued: Vec<bool>,
    /// For each piece, who fetches it now and since when.
    pub(super) fetching: Vec<Vec<(usize, Instant)>>,
    /// For each piece, the holders whose bytes for it did not match the list.
    pub(super) bad: Vec<Vec<usize>>,
    pub(super) holders: Vec<Holder>,
    pub(super) done_count: usize,
    pub(super) done_bytes: u64,
    /// Pieces that arrived more than once (a bad copy, or the endgame's second copy).
    pub(super) fetched_again: usize,
    /// Set when two holders' bytes for one piece disagree with the list.
    pub(super) suspect: bool,
    /// A fatal error (the part file could not be written).
    pub(super) fatal: Option<String>,
    /// The whole file's hash, taken in order as the pieces are done: the next piece to take,
    /// whether a replaced list undid a piece already taken (it starts over), the hash once
    /// every piece is taken, and whether the download is over (the hashing thread ends).
    pub(super) whole_next: usize,
    pub(super) whole_restart: bool,
    pub(super) whole: Option<Result<ResourceId, String>>,
    pub(super) over: bool,
}

impl State {
    pub(super) fn new(list: PieceList, list_from: usize, holders: Vec<String>) -> State {
        let count = list.pieces.len();
        State {
            list: Arc::new(list),
            list_from,
            done: vec![false; count],
            queue: (0..count).collect(),
            queued: vec![true; count],
            fetching: vec![Vec::new(); count],
            bad: vec![Vec::new(); count],
            holders: holders
                .into_iter()
                .map(|location| Holder {
                    location,
                    dropped: None,
                    dropped_for_bytes: false,
                    connections: 0,
                    pieces: 0,
                })
                .collect(),
            done_count: 0,
            done_bytes: 0,
            fetched_again: 0,
            suspect: false,
            fatal: None,
            whole_next: 0,
            whole_restart: false,
            whole: None,
            over: false,
        }
    }

    pub(super) fn all_done(&self) -> bool {
        self.done_count == self.done.len()
    }

    pub(super) fn mark_done(&mut self, piece: usize) {
        if !self.done[piece] {
            self.done[piece] = true;
            self.done_count += 1;
            self.done_bytes += self.list.span(piece).1;
        }
    }

    pub(super) fn drop_holder(&mut self, holder: usize, why: String, for_bytes: bool) {
        let h = &mut self.holders[holder];
        if h.dropped.is_none() {
            h.dropped = Some(why);
            h.dropped_for_bytes = for_bytes;
        }
    }

    /// The next piece for a connection to `holder`: from the queue, or in the endgame a piece
    /// another holder has had for long. `None` when there is nothing for it now.
    pub(super) fn next_piece(&mut self, holder: usize, now: Instant) -> Option<usize> {
        let free = self
            .queue
            .iter()
            .position(|&p| !self.done[p] && !self.bad[p].contains(&holder));
        if let Some(at) = free {
            let piece = self.queue.remove(at)?;
            self.queued[piece] = false;
            self.fetching[piece].push((holder, now));
            return Some(piece);
        }
        let slow = (0..self.done.len()).find(|&p| {
            !self.done[p]
                && !self.bad[p].contains(&holder)
                && self.fetching[p].len() == 1
                && self.fetching[p]
                    .iter()
                    .all(|&(h, since)| h != holder && now.duration_since(since) >= ENDGAME_AFTER)
        })?;
        self.fetching[slow].push((holder, now));
        Some(slow)
    }

    /// `holder` no longer fetches `piece`; back to the queue unless it is done or fetched.
    pub(super) fn release(&mut self, piece: usize, holder: usize) {
        self.fetching[piece].retain(|&(h, _)| h != holder);
        if !self.done[piece] && self.fetching[piece].is_empty() {
            self.enqueue(piece, true);
        }
    }

    /// `piece` into the queue, first in line or last, unless it is there.
    pub(super) fn enqueue(&mut self, piece: usize, first: bool) {
        if !self.queued[piece] {
            self.queued[piece] = true;
            if first {
                self.queue.push_front(piece);
            } else {
                self.queue.push_back(piece);
            }
        }
    }

    pub(super) fn in_use(&self) -> usize {
        self.holders.iter().filter(|h| h.connections > 0).count()
    }

    /// Why each dropped holder was dropped.
    pub(super) fn failures(&self) -> Vec<String> {
        self.holders
            .iter()
            .filter_map(|h| Some(format!("{}: {}", h.location, h.dropped.as_ref()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pieces::sha256;

    fn state(pieces: usize, holders: usize) -> State {
        let list = PieceList {
            id: sha256(b"file"),
            size: pieces as u64 * crate::pieces::MIN_PIECE_SIZE,
            piece_size: crate::pieces::MIN_PIECE_SIZE,
            pieces: vec![sha256(b"piece"); pieces],
        };
        State::new(list, 0, (0..holders).map(|h| format!("h{h}:1")).collect())
    }

    #[test]
    fn pieces_come_from_the_queue_then_from_slow_holders_only() {
        let mut state = state(2, 2);
        let t0 = Instant::now();
        assert_eq!(state.next_piece(0, t0), Some(0));
        assert_eq!(state.next_piece(0, t0), Some(1));
        // Nothing queued, and nothing in flight for long: nothing for holder 1 yet.
        assert_eq!(state.next_piece(1, t0), None);
        let later = t0 + ENDGAME_AFTER;
        // Never a second copy from the holder that has it.
        assert_eq!(state.next_piece(0, later), None);
        assert_eq!(state.next_piece(1, later), Some(0));
        // A third copy is not asked for.
        assert_eq!(state.next_piece(1, later), Some(1));
        assert_eq!(state.next_piece(1, later + ENDGAME_AFTER), None);
        state.mark_done(0);
        state.release(0, 0);
        state.release(0, 1);
        assert!(state.queue.is_empty(), "a piece done is not queued again");
        // A holder that drops a piece it alone had puts it back, first in line.
        state.release(1, 0);
        state.release(1, 1);
        assert_eq!(state.queue, [1]);
    }

    #[test]
    fn a_holder_is_not_asked_again_for_a_piece_it_sent_wrong() {
        let mut state = state(1, 2);
        state.bad[0].push(0);
        assert_eq!(state.next_piece(0, Instant::now()), None);
        assert_eq!(state.next_piece(1, Instant::now()), Some(0));
    }
}

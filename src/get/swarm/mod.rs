//! One file from every holder at once: pieces taken from a shared queue by a connection to
//! each holder (a faster holder comes back for the next piece sooner, so it takes more), each
//! piece checked against the piece list before it is written at its offset in the `.part`
//! file, and the whole file checked against the id at the end.
//!
//! Whom to believe. A piece that does not match the list comes from a holder that lies about
//! the bytes, or from a list that lies about the piece. The first bad piece drops the holder
//! that sent it and the piece goes to another; when a second holder's bytes for the same piece
//! do not match either, two holders agree against the list: the list is taken from another
//! holder, the holder that served the first is dropped, and the holders dropped for bad pieces
//! come back. A list can also lie in agreement with the bytes its holder serves: every piece
//! matches and the whole does not hash to the id; then too the list is taken from another
//! holder and only the pieces whose hashes differ are fetched again.
//!
//! Stalls cost nothing while other pieces are left: the queue goes on through the other
//! holders. Once the queue is empty, an idle connection takes a piece in flight for far longer
//! than pieces take (the endgame), and the first copy to arrive is kept.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::id::ResourceId;
use crate::pieces::{PieceList, sha256};

use super::{Progress, agent_within, content_range, said, shown};

mod state;
mod whole;

use state::State;
use whole::{Over, hash_in_order, whole_hash};

/// Connections to each holder at once. One: on a LAN a holder's uplink is what limits, and
/// a second connection gained nothing there (bench row 17a) while it cost 16% on loopback,
/// where the client's CPU limits (17b).
const CONNECTIONS_PER_HOLDER: usize = 1;
/// Holders used at once.
const MAX_HOLDERS: usize = 8;
/// A piece in flight this long, when nothing else is left, is asked of another holder too.
const ENDGAME_AFTER: Duration = Duration::from_millis(250);

/// What a swarm needs to start.
pub struct Swarm<'a> {
    pub agent: &'a ureq::Agent,
    pub id: ResourceId,
    /// Every holder, plain `host:port`s.
    pub holders: Vec<String>,
    pub part: &'a std::path::Path,
}

/// The piece list `holder` gives for `id`, checked to fit the id.
pub fn piece_list(agent: &ureq::Agent, holder: &str, id: ResourceId) -> Result<PieceList, String> {
    crate::pieces::fetch(agent, holder, id, 64 << 20).map_err(said)
}

/// What the connections, the hashing thread and the main thread share: the state under one
/// lock, its condition variable (every change is told), the part file and the agent.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    file: File,
    agent: ureq::Agent,
    id: ResourceId,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Downloads the file `list` describes into `swarm.part` from every holder; `list_from` is
/// the index of the holder that gave the list. `Ok` once the part file hashes to the id.
pub fn download(
    swarm: &Swarm,
    list: PieceList,
    list_from: usize,
    progress: &mut Progress,
) -> Result<(), String> {
    let part = swarm.part;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(|e| format!("{}: {e}", shown(part)))?;
    let had = file.metadata().map_or(0, |m| m.len());
    file.set_len(list.size)
        .map_err(|e| format!("{}: {e}", shown(part)))?;
    let holders: Vec<String> = swarm.holders.iter().take(MAX_HOLDERS).cloned().collect();
    let shared = Arc::new(Shared {
        state: Mutex::new(State::new(list, list_from, holders)),
        changed: Condvar::new(),
        file,
        // A piece must come within a deadline of its own: a holder that stalls past it is
        // dropped and its piece given to another.
        agent: agent_within(Duration::from_secs(15), Duration::from_secs(30)),
        id: swarm.id,
    });
    if had > 0 {
        resume(&shared).map_err(|e| format!("{}: {e}", shown(part)))?;
    }
    let resumed = shared.lock().done_bytes;
    progress.started = Instant::now();
    let hashing = shared.clone();
    std::thread::spawn(move || hash_in_order(&hashing));
    // However this ends, the hashing thread ends with it.
    let _over = Over(&shared);
    loop {
        start_connections(&shared);
        let mut state = shared.lock();
        while !state.all_done()
            && !state.suspect
            && state.fatal.is_none()
            && state.holders.iter().any(|h| h.connections > 0)
        {
            let total = state.list.size;
            let (done, in_use) = (state.done_bytes, state.in_use());
            drop(state);
            progress.update_swarm(done, total, resumed, in_use);
            state = shared.lock();
            state = shared
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if let Some(fatal) = state.fatal.take() {
            return Err(fatal);
        }
        if state.suspect {
            state.suspect = false;
            drop(state);
            let why = "two holders' bytes for one piece do not match its list";
            if replace_list(&shared, swarm.agent, why).is_err() {
                // Nobody gives another list: it stands, and the bytes were the lies.
                let mut state = shared.lock();
                for piece in 0..state.bad.len() {
                    for holder in state.bad[piece].clone() {
                        let why = format!("sent piece {piece} that does not match its hash");
                        state.drop_holder(holder, why, true);
                    }
                }
            }
            continue;
        }
        if !state.all_done() {
            let failures = state.failures();
            return Err(format!(
                "every holder failed before the end:\n  {}",
                failures.join("\n  ")
            ));
        }
        let (total, in_use) = (state.list.size, state.in_use());
        drop(state);
        progress.update_swarm(total, total, resumed, in_use);
        let got = whole_hash(&shared).map_err(|e| format!("{}: {e}", shown(part)))?;
        if got == swarm.id {
            if progress.shown {
                // On a terminal, what went wrong on the way.
                let state = shared.lock();
                for holder in state.holders.iter().filter(|h| h.pieces > 0) {
                    eprintln!("  {} sent {} piece(s)", holder.location, holder.pieces);
                }
                for failure in state.failures() {
                    eprintln!("  dropped {failure}");
                }
                if state.fetched_again > 0 {
                    eprintln!("  {} piece(s) fetched more than once", state.fetched_again);
                }
            }
            return Ok(());
        }
        let why = format!("every piece matched its list and the whole hashes to {got}");
        replace_list(&shared, swarm.agent, &why)?;
    }
}

/// Marks done the pieces an earlier try left right in the part file: each is read and
/// checked, never trusted.
fn resume(shared: &Shared) -> std::io::Result<()> {
    let list = shared.lock().list.clone();
    let mut buffer = Vec::new();
    let mut right = Vec::new();
    for (piece, hash) in list.pieces.iter().enumerate() {
        let (start, len) = list.span(piece);
        buffer.resize(len as usize, 0);
        shared.file.read_exact_at(&mut buffer, start)?;
        if sha256(&buffer) == *hash {
            right.push(piece);
        }
    }
    let mut state = shared.lock();
    for piece in right {
        state.mark_done(piece);
    }
    let State {
        queue,
        queued,
        done,
        ..
    } = &mut *state;
    queue.retain(|&p| !done[p]);
    for (queued, done) in queued.iter_mut().zip(done.iter()) {
        *queued &= !done;
    }
    Ok(())
}

/// Starts the connections of every holder still in use that has none.
fn start_connections(shared: &Arc<Shared>) {
    let mut state = shared.lock();
    for holder in 0..state.holders.len() {
        let h = &mut state.holders[holder];
        if h.dropped.is_some() || h.connections > 0 {
            continue;
        }
        h.connections = CONNECTIONS_PER_HOLDER;
        for _ in 0..CONNECTIONS_PER_HOLDER {
            let shared = shared.clone();
            // Detached: a connection stalled in a read must not hold the download's end.
            std::thread::spawn(move || connection(&shared, holder));
        }
    }
}

/// One connection to `holder`: pieces in turn until it is dropped or nothing is left.
fn connection(shared: &Shared, holder: usize) {
    let location = shared.lock().holders[holder].location.clone();
    let mut buffer = Vec::new();
    loop {
        let (piece, list) = {
            let mut state = shared.lock();
            loop {
                if state.holders[holder].dropped.is_some()
                    || state.all_done()
                    || state.fatal.is_some()
                {
                    state.holders[holder].connections -= 1;
                    shared.changed.notify_all();
                    return;
                }
                if let Some(piece) = state.next_piece(holder, Instant::now()) {
                    break (piece, state.list.clone());
                }
                state = shared
                    .changed
                    .wait_timeout(state, ENDGAME_AFTER / 5)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        let (start, len) = list.span(piece);
        let fetched = fetch_piece(shared, &location, start, len, list.size, &mut buffer);
        let hash = fetched.map(|()| sha256(&buffer));
        let mut state = shared.lock();
        match hash {
            Err(why) => {
                state.drop_holder(holder, why, false);
            }
            Ok(_) if state.done[piece] => state.fetched_again += 1,
            Ok(hash) if hash == state.list.pieces[piece] => {
                // Written outside the lock: another copy of the same piece, if any, is the
                // same checked bytes.
                drop(state);
                let written = shared.file.write_all_at(&buffer, start);
                state = shared.lock();
                match written {
                    // Unless a list that came meanwhile says otherwise.
                    Ok(()) if hash == state.list.pieces[piece] => {
                        state.mark_done(piece);
                        state.holders[holder].pieces += 1;
                    }
                    Ok(()) => {}
                    Err(e) => state.fatal = Some(format!("writing piece {piece}: {e}")),
                }
            }
            Ok(_) => {
                state.fetched_again += 1;
                if !state.bad[piece].contains(&holder) {
                    state.bad[piece].push(holder);
                }
                let others = state.bad[piece].iter().filter(|&&h| h != holder).count();
                if others > 0 {
                    state.suspect = true;
                } else {
                    let why =
                        format!("sent piece {piece} ({start}+{len}) that does not match its hash");
                    state.drop_holder(holder, why, true);
                }
            }
        }
        state.release(piece, holder);
        shared.changed.notify_all();
    }
}

/// Fetches `len` bytes at `start` of the file of `size` bytes from `holder` into `buffer`.
fn fetch_piece(
    shared: &Shared,
    holder: &str,
    start: u64,
    len: u64,
    size: u64,
    buffer: &mut Vec<u8>,
) -> Result<(), String> {
    let id = shared.id;
    let end = start + len - 1;
    let url = format!("http://{holder}/api/node/resources/{id}/content");
    let mut response = shared
        .agent
        .get(&url)
        .header("Range", format!("bytes={start}-{end}"))
        .call()
        .map_err(said)?;
    let range = response
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(content_range);
    match response.status().as_u16() {
        206 if range == Some((start, end, size)) => {}
        // The whole file, for a piece that is the whole file.
        200 if start == 0 && len == size => {}
        206 => return Err(format!("a 206 for other bytes than {start}-{end}/{size}")),
        other => return Err(format!("answered {other} for bytes {start}-{end}")),
    }
    buffer.clear();
    response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take(len + 1)
        .read_to_end(buffer)
        .map_err(|e| format!("{} after {} bytes of a piece", said(e), buffer.len()))?;
    if buffer.len() as u64 != len {
        return Err(format!("sent {} bytes for a piece of {len}", buffer.len()));
    }
    Ok(())
}

/// The list was wrong (`why`): takes another holder's; the pieces whose hashes differ are
/// fetched again, the list's holder is dropped and the holders dropped for bytes that did not
/// match the old list come back. An error when no other holder has a different list.
fn replace_list(shared: &Shared, agent: &ureq::Agent, why: &str) -> Result<(), String> {
    let (old, from, candidates) = {
        let state = shared.lock();
        let candidates: Vec<(usize, String)> = state
            .holders
            .iter()
            .enumerate()
            .filter(|&(i, h)| i != state.list_from && (h.dropped.is_none() || h.dropped_for_bytes))
            .map(|(i, h)| (i, h.location.clone()))
            .collect();
        (state.list.clone(), state.list_from, candidates)
    };
    let mut tried = Vec::new();
    for (holder, location) in candidates {
        let list = match piece_list(agent, &location, shared.id) {
            Ok(list) if list.size == old.size && list.piece_size == old.piece_size => list,
            Ok(_) => {
                tried.push(format!("{location}: a list of another size or piece size"));
                continue;
            }
            Err(e) => {
                tried.push(e);
                continue;
            }
        };
        if list.pieces == old.pieces {
            tried.push(format!("{location}: the same list"));
            continue;
        }
        let mut state = shared.lock();
        let liar = state.holders[from].location.clone();
        for piece in 0..list.pieces.len() {
            if list.pieces[piece] != old.pieces[piece] {
                if piece < state.whole_next {
                    state.whole_restart = true;
                    state.whole = None;
                }
                if state.done[piece] {
                    state.done[piece] = false;
                    state.done_count -= 1;
                    state.done_bytes -= list.span(piece).1;
                }
                state.bad[piece].clear();
                state.enqueue(piece, false);
            }
        }
        for h in &mut state.holders {
            if h.dropped_for_bytes {
                h.dropped = None;
                h.dropped_for_bytes = false;
            }
        }
        state.drop_holder(from, format!("its piece list was wrong: {why}"), false);
        state.list = Arc::new(list);
        state.list_from = holder;
        log::debug!("piece list of {liar} replaced by {location}'s: {why}");
        return Ok(());
    }
    Err(format!(
        "the piece list is wrong ({why}) and no other holder gives another:\n  {}",
        tried.join("\n  ")
    ))
}

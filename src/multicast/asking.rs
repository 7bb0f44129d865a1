//! The searches this supernode asks of the others: whom to ask (every peer, or the ones whose
//! summary may hold the id), how many answers to wait for, and the waiting itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::id::ResourceId;
use crate::wire::{Body, Message, NameHit, Sender};

use super::searches::{Asked, Outcome, Pending, PendingAll, PendingNames, Searches};
use super::transport::To;
use super::{Inner, State};

impl Inner {
    /// Whom to ask for `id`: the supernodes whose summaries may hold it, when every supernode
    /// expected to answer is known and has a fresh summary; `None` (everyone, as without
    /// summaries) otherwise.
    pub(super) fn targets(
        &self,
        state: &State,
        id: &ResourceId,
        now: Instant,
    ) -> Option<Vec<SocketAddr>> {
        if !self.digests {
            return None;
        }
        let live = state.sources.counted(now).count();
        let expected = self.expected_peers(state, now);
        if live == 0 || live < expected || state.sources.uncounted(now) {
            // Someone expected is unknown (not heard yet, or a seed that never says who it is),
            // or a supernode not counted on may hold what no summary says.
            return None;
        }
        let mut ask = Vec::new();
        for (name, peer) in state.sources.counted(now) {
            match state.summaries.may_hold(name, id) {
                Some(false) => {}
                Some(true) => ask.push(peer.addr),
                None => return None,
            }
        }
        Some(ask)
    }
    /// Peers expected to answer: the group size less this one, or the peers heard lately.
    pub(super) fn expected_peers(&self, state: &State, now: Instant) -> usize {
        if self.group_size > 0 {
            // `PEERS` that stopped answering are not waited for.
            (self.group_size - 1).saturating_sub(self.transport.peers.silent())
        } else {
            state.sources.counted(now).count()
        }
    }
    /// Asks the group for every holder of `id` and waits for every expected peer's answer,
    /// or the time-out: the locations that came by then.
    pub(super) fn search_all(&self, id: ResourceId) -> Vec<String> {
        self.ask_everyone(
            Body::AllQuery(id),
            |searches, tag, asked| {
                searches.all.insert(tag, PendingAll::new(asked, id));
            },
            |searches, tag| searches.all.remove(&tag).map(|pending| pending.locations),
        )
    }
    /// Asks the group which resources have a name containing `text`, and collects the
    /// answers until every expected peer has sent all its parts, or the time-out: what came
    /// by then (at most `limit` from each peer).
    pub(super) fn search_names(&self, text: &str, node: Option<&str>, limit: u32) -> Vec<NameHit> {
        let body = Body::NameQuery {
            text: text.to_string(),
            node: node.map(str::to_string),
            limit,
        };
        self.ask_everyone(
            body,
            |searches, tag, asked| {
                searches.names.insert(tag, PendingNames::new(asked));
            },
            |searches, tag| searches.names.remove(&tag).map(|pending| pending.hits),
        )
    }
    /// Sends `body` as a tagged query that every peer answers, registered by `register`
    /// (with its tag and what [`Searches::due`] needs to ask again), and waits for every
    /// expected peer's answer or the time-out; `take` removes what was gathered.
    pub(super) fn ask_everyone<T: Default>(
        &self,
        body: Body,
        register: impl FnOnce(&mut Searches, u64, Asked),
        take: impl FnOnce(&mut Searches, u64) -> Option<T>,
    ) -> T {
        if self.group_size == 1 {
            return T::default();
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (done, finished) = bounded(1);
        let now = Instant::now();
        {
            let mut state = self.state();
            let expected = self.expected_peers(&state, now);
            if expected == 0 {
                return T::default();
            }
            let asked = Asked {
                body: body.clone(),
                expected,
                deadline: now + self.timeout,
                next_send: now + self.retry.max(Duration::from_millis(1)),
                done,
            };
            register(&mut state.searches, tag, asked);
        }
        self.ask(tag, body, None);
        let whole = finished.recv_timeout(self.timeout).is_ok();
        let mut state = self.state();
        if !whole {
            let answered = state.searches.answered_whole(tag);
            let silent = |name: &str, _| !answered.iter().any(|a| a == name);
            state.sources.missed(silent, Instant::now());
        }
        take(&mut state.searches, tag).unwrap_or_default()
    }
    /// Sends a tagged query to `targets`, or to everyone.
    pub(super) fn ask(&self, tag: u64, body: Body, targets: Option<&[SocketAddr]>) {
        let sender = Sender::Query {
            from: self.me.clone(),
            tag,
        };
        let message = Message::new(sender, body);
        match targets {
            None => self.send(message, None, To::Everyone),
            Some(targets) => {
                for &target in targets {
                    self.send(message.clone(), None, To::One(target));
                }
            }
        }
    }
    pub(super) fn search_many(&self, ids: &[ResourceId]) -> Vec<Outcome> {
        if self.group_size == 1 {
            // Alone in the group: nobody else can know.
            return vec![Outcome::NotFound; ids.len()];
        }
        let now = Instant::now();
        let mut waits = Vec::with_capacity(ids.len());
        let mut asks = Vec::new();
        {
            let mut state = self.state();
            let expected = self.expected_peers(&state, now);
            if expected == 0 && self.group_size > 0 {
                // Every other supernode is a `PEERS` entry that stopped answering.
                return vec![Outcome::NotFound; ids.len()];
            }
            for &id in ids {
                let (reply, answer) = bounded(1);
                if let Some((tag, deadline)) = state.searches.join(&id, &reply, now) {
                    waits.push((tag, deadline, answer));
                    continue;
                }
                let targets = self.targets(&state, &id, now);
                let expected = targets.as_ref().map_or(expected, Vec::len);
                let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
                let deadline = now + self.timeout;
                if expected == 0 && targets.is_some() {
                    // No summary may hold it: nobody else has it.
                    let _ = reply.send(Outcome::NotFound);
                    waits.push((tag, deadline, answer));
                    continue;
                }
                let first_resend = now + self.retry.max(Duration::from_millis(1));
                state.searches.start(
                    tag,
                    Pending {
                        id,
                        targets: targets.clone(),
                        expected,
                        said_no: Vec::new(),
                        replies: vec![reply],
                        deadline,
                        next_send: first_resend,
                        joinable_until: first_resend,
                    },
                );
                waits.push((tag, deadline, answer));
                asks.push((tag, id, targets));
            }
        }
        for (tag, id, targets) in asks {
            self.ask(tag, Body::Query(id), targets.as_deref());
        }
        waits
            .into_iter()
            .map(|(tag, deadline, answer)| {
                if let Ok(outcome) = answer.recv_deadline(deadline) {
                    return outcome;
                }
                let mut state = self.state();
                if let Some(pending) = state.searches.timed_out(tag) {
                    let asked = |addr| pending.targets.as_ref().is_none_or(|t| t.contains(&addr));
                    let silent = |name: &str, addr| {
                        asked(addr) && !pending.said_no.iter().any(|n| n == name)
                    };
                    state.sources.missed(silent, Instant::now());
                }
                // Its outcome: the time-out just told, or an answer that landed first.
                let unanswered = Outcome::TimedOut {
                    answered: 0,
                    expected: 0,
                };
                answer.try_recv().unwrap_or(unanswered)
            })
            .collect()
    }
}

//! The searches waiting for the group's answers, and the rules that end them: plain data, fed
//! the answers the socket threads parse, answering each waiter on its own channel. Nothing
//! here touches a socket, so the completion rules are tested in milliseconds.
//!
//! - A search for one id ends at the first `21`, at a `22` from every expected peer, or at its
//!   deadline; a `22` counts once per peer, and an untagged (legacy) `22` counts for every
//!   search of its id. A search for an id already asked within `SEARCH_RETRY_MS` joins that
//!   search and ends with it: a burst of searches for one id costs the group one query.
//! - A name (`23`) or every-holder (`25`) search gathers every expected peer's whole answer;
//!   a name answer comes in parts, each counted once, in any order.
//! - Unanswered queries are asked again every `SEARCH_RETRY_MS` until their deadline: a search
//!   for an id asks again whom it asked; a gathering search asks again only the live peers
//!   whose answer has not all come (everyone when an expected peer is not known by name).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender as ReplyTx;

use crate::id::ResourceId;
use crate::wire::{Body, NameHit};

/// The most peers one search keeps answers of: a host that sends under a thousand made-up
/// names fills this, not the memory.
pub(super) const MAX_ANSWERERS: usize = 1024;
/// The most matches (an id at one holder) one supernode sends for one name query, and so the
/// most parts its answer has.
pub(super) const MAX_NAME_HITS: u32 = 1000;

/// How a remote search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A node at this `host:port` holds the resource.
    Found(String),
    /// Every expected peer said it does not know the resource.
    NotFound,
    /// The deadline passed with `answered` of `expected` peers having said no.
    TimedOut { answered: usize, expected: usize },
}

/// A search for one id, waiting for answers.
pub(super) struct Pending {
    pub(super) id: ResourceId,
    /// Who is asked: the supernodes whose summaries may hold the id, or `None` for everyone.
    pub(super) targets: Option<Vec<SocketAddr>>,
    pub(super) expected: usize,
    pub(super) said_no: Vec<String>,
    /// Every waiter's channel: the one that started the search, then those that joined it.
    pub(super) replies: Vec<ReplyTx<Outcome>>,
    pub(super) deadline: Instant,
    pub(super) next_send: Instant,
    /// Until when a new search for the id joins this one: its answers are at most this old.
    pub(super) joinable_until: Instant,
}

impl Pending {
    fn answer(&self, outcome: Outcome) {
        for reply in &self.replies {
            let _ = reply.try_send(outcome.clone());
        }
    }
}

/// A query every expected peer answers (`23`, `25`), asked again every `SEARCH_RETRY_MS` of
/// the peers whose answer has not all come, until they all have or the time-out.
pub(super) struct Asked {
    pub(super) body: Body,
    pub(super) expected: usize,
    pub(super) deadline: Instant,
    pub(super) next_send: Instant,
    /// Signalled when every expected peer's answer has come.
    pub(super) done: ReplyTx<()>,
}

/// A name search waiting for the parts of every expected peer's answer.
pub(super) struct PendingNames {
    pub(super) asked: Asked,
    pub(super) hits: Vec<NameHit>,
    /// Each answering peer's parts so far.
    parts: HashMap<String, Parts>,
    complete: usize,
}

impl PendingNames {
    pub(super) fn new(asked: Asked) -> PendingNames {
        PendingNames {
            asked,
            hits: Vec::new(),
            parts: HashMap::new(),
            complete: 0,
        }
    }
}

/// Which parts of one peer's `24` answer have come, of how many it said there are.
pub(super) struct Parts {
    total: u16,
    got: u16,
    seen: Vec<u64>,
}

impl Parts {
    fn new(total: u16) -> Parts {
        Parts {
            total,
            got: 0,
            seen: vec![0; usize::from(total).div_ceil(64)],
        }
    }

    /// Takes part `part` (from 1) of `total`; whether it is one not seen before. A count
    /// that differs from the one held is a new answer (the peer's index changed before it
    /// was asked again): counted afresh, its hits merged by id with the ones before.
    fn take(&mut self, part: u16, total: u16) -> bool {
        if part == 0 || part > total {
            return false;
        }
        if total != self.total {
            *self = Parts::new(total);
        }
        let (word, bit) = (usize::from(part - 1) / 64, (part - 1) % 64);
        let new = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        self.got += u16::from(new);
        new
    }

    fn complete(&self) -> bool {
        self.got == self.total
    }
}

/// A search for every holder, waiting for every expected peer's `26`.
pub(super) struct PendingAll {
    pub(super) asked: Asked,
    id: ResourceId,
    answered: Vec<String>,
    pub(super) locations: Vec<String>,
}

impl PendingAll {
    pub(super) fn new(asked: Asked, id: ResourceId) -> PendingAll {
        PendingAll {
            asked,
            id,
            answered: Vec::new(),
            locations: Vec::new(),
        }
    }
}

/// A query every expected peer answers, gathering the answers.
trait Gathering {
    fn asked(&self) -> &Asked;
    fn asked_mut(&mut self) -> &mut Asked;
    /// Whether `peer`'s whole answer has come.
    fn answered(&self, peer: &str) -> bool;
}

impl Gathering for PendingNames {
    fn asked(&self) -> &Asked {
        &self.asked
    }
    fn asked_mut(&mut self) -> &mut Asked {
        &mut self.asked
    }
    fn answered(&self, peer: &str) -> bool {
        self.parts.get(peer).is_some_and(Parts::complete)
    }
}

impl Gathering for PendingAll {
    fn asked(&self) -> &Asked {
        &self.asked
    }
    fn asked_mut(&mut self) -> &mut Asked {
        &mut self.asked
    }
    fn answered(&self, peer: &str) -> bool {
        self.answered.iter().any(|a| a == peer)
    }
}

/// Who said "not here" (`22`): a peer of ours about one search, or a legacy peer about its id.
#[derive(Debug, Clone, Copy)]
pub(super) enum Answerer<'a> {
    /// A tagged answer from `from` to search `tag`.
    Tagged { from: &'a str, tag: u64 },
    /// An untagged answer from `from`: counts for every search of its id.
    Untagged(&'a str),
}

/// A query to send again: its tag, what it asks, and whom (`None`: everyone).
pub(super) type Resend = (u64, Body, Option<Vec<SocketAddr>>);

/// Every search waiting for answers, by tag.
#[derive(Default)]
pub(super) struct Searches {
    pub(super) ids: HashMap<u64, Pending>,
    /// The newest search waiting for each id.
    newest: HashMap<ResourceId, u64>,
    pub(super) names: HashMap<u64, PendingNames>,
    pub(super) all: HashMap<u64, PendingAll>,
}

impl Searches {
    /// The id search `tag`, if it still waits.
    pub(super) fn id_of(&self, tag: u64) -> Option<ResourceId> {
        self.ids.get(&tag).map(|pending| pending.id)
    }

    /// Whether search `tag` (of any kind) still waits.
    pub(super) fn waiting(&self, tag: u64) -> bool {
        self.ids.contains_key(&tag) || self.names.contains_key(&tag) || self.all.contains_key(&tag)
    }

    /// Whether a search for `id` waits.
    pub(super) fn searching(&self, id: &ResourceId) -> bool {
        self.newest.contains_key(id)
    }

    /// Starts search `tag`.
    pub(super) fn start(&mut self, tag: u64, pending: Pending) {
        self.newest.insert(pending.id, tag);
        self.ids.insert(tag, pending);
    }

    /// Adds `reply` to the waiters of a search for `id` that may still be joined at `now`:
    /// its tag and deadline, or `None` when there is none.
    pub(super) fn join(
        &mut self,
        id: &ResourceId,
        reply: &ReplyTx<Outcome>,
        now: Instant,
    ) -> Option<(u64, Instant)> {
        let tag = *self.newest.get(id)?;
        let pending = self.ids.get_mut(&tag)?;
        if now >= pending.joinable_until {
            return None;
        }
        pending.replies.push(reply.clone());
        Some((tag, pending.deadline))
    }

    /// Ends search `tag`: no longer waiting, nor joined.
    fn end(&mut self, tag: u64) -> Option<Pending> {
        let pending = self.ids.remove(&tag)?;
        if self.newest.get(&pending.id) == Some(&tag) {
            self.newest.remove(&pending.id);
        }
        Some(pending)
    }

    /// Who answered the name or every-holder search `tag` whole.
    pub(super) fn answered_whole(&self, tag: u64) -> Vec<String> {
        let names = self.names.get(&tag).into_iter().flat_map(|pending| {
            (pending.parts.iter())
                .filter(|(_, parts)| parts.complete())
                .map(|(peer, _)| peer.clone())
        });
        let all = (self.all.get(&tag).into_iter()).flat_map(|pending| pending.answered.clone());
        names.chain(all).collect()
    }

    /// A `21` for search `tag`: it ends with `location`.
    pub(super) fn found(&mut self, tag: u64, location: String) {
        if let Some(pending) = self.end(tag) {
            pending.answer(Outcome::Found(location));
        }
    }

    /// A holder an untagged `21` named holds `held`: every search for one of those ids ends
    /// with it. Returns the ids answered.
    pub(super) fn held_by(&mut self, held: &HashSet<ResourceId>, holder: &str) -> Vec<ResourceId> {
        let answered: Vec<u64> = self
            .ids
            .iter()
            .filter(|(_, pending)| held.contains(&pending.id))
            .map(|(&tag, _)| tag)
            .collect();
        let mut ids = Vec::new();
        for tag in answered {
            if let Some(pending) = self.end(tag) {
                ids.push(pending.id);
                pending.answer(Outcome::Found(holder.to_string()));
            }
        }
        ids
    }

    /// A `22` for `id` (as its sender wrote it: a legacy peer may echo anything, and an id
    /// that does not parse matches no search).
    pub(super) fn not_found(&mut self, answerer: Answerer<'_>, id: Option<ResourceId>) {
        let mut done = Vec::new();
        let mut count = |tag: u64, pending: &mut Pending, from: &str| {
            if Some(pending.id) == id
                && pending.said_no.len() < MAX_ANSWERERS
                && !pending.said_no.iter().any(|p| p == from)
            {
                pending.said_no.push(from.to_string());
            }
            if pending.expected > 0 && pending.said_no.len() >= pending.expected {
                done.push(tag);
            }
        };
        match answerer {
            Answerer::Tagged { from, tag } => {
                if let Some(pending) = self.ids.get_mut(&tag) {
                    count(tag, pending, from);
                }
            }
            Answerer::Untagged(from) => {
                for (&tag, pending) in self.ids.iter_mut() {
                    count(tag, pending, from);
                }
            }
        }
        for tag in done {
            if let Some(pending) = self.end(tag) {
                pending.answer(Outcome::NotFound);
            }
        }
    }

    /// Search `tag` passed its deadline: every waiter is told how far it got, and the caller
    /// gets the search (who said no, whom it asked); `None` when it had ended already.
    pub(super) fn timed_out(&mut self, tag: u64) -> Option<Pending> {
        let pending = self.end(tag)?;
        pending.answer(Outcome::TimedOut {
            answered: pending.said_no.len(),
            expected: pending.expected,
        });
        Some(pending)
    }

    /// `from`'s `26` to search `tag`: every holder it knows of `id`.
    pub(super) fn all_found(
        &mut self,
        from: &str,
        tag: u64,
        id: ResourceId,
        locations: Vec<String>,
    ) {
        let Some(pending) = self.all.get_mut(&tag) else {
            return;
        };
        if pending.id != id
            || pending.answered.iter().any(|a| a == from)
            || pending.answered.len() >= MAX_ANSWERERS
        {
            // Not ours, or an answer again to a query asked again.
            return;
        }
        pending.answered.push(from.to_string());
        for location in locations {
            if !pending.locations.contains(&location) && pending.locations.len() < MAX_ANSWERERS {
                pending.locations.push(location);
            }
        }
        if pending.answered.len() >= pending.asked.expected {
            let _ = pending.asked.done.try_send(());
        }
    }

    /// Part `part` of `parts` of `from`'s `24` to search `tag`.
    pub(super) fn name_answer(
        &mut self,
        from: &str,
        tag: u64,
        (part, parts): (u16, u16),
        hits: Vec<NameHit>,
    ) {
        // Every part holds a match at least (but the one empty part of no match): a count above
        // what a peer sends is not held, nor its bitset allocated.
        if u32::from(parts) > MAX_NAME_HITS {
            return;
        }
        let Some(pending) = self.names.get_mut(&tag) else {
            return;
        };
        if !pending.parts.contains_key(from) && pending.parts.len() >= MAX_ANSWERERS {
            return;
        }
        let seen = pending
            .parts
            .entry(from.to_string())
            .or_insert_with(|| Parts::new(parts));
        // Parts come in any order; one seen before (the peer was asked again) counts once, and
        // a whole answer is final.
        if seen.complete() || !seen.take(part, parts) {
            return;
        }
        let now_complete = seen.complete();
        let room =
            (MAX_NAME_HITS as usize * pending.asked.expected).saturating_sub(pending.hits.len());
        pending.hits.extend(hits.into_iter().take(room));
        if now_complete {
            pending.complete += 1;
            if pending.complete >= pending.asked.expected {
                let _ = pending.asked.done.try_send(());
            }
        }
    }

    /// The queries whose retry time came (see the module's header), and the time until the
    /// next one (at most `idle`). `live` is the peers heard lately, by name and address.
    pub(super) fn due(
        &mut self,
        now: Instant,
        retry: Duration,
        live: &[(&str, SocketAddr)],
        idle: Duration,
    ) -> (Vec<Resend>, Duration) {
        let mut due = Vec::new();
        let mut next = idle;
        if retry.is_zero() {
            return (due, next);
        }
        for (&tag, pending) in self.ids.iter_mut() {
            if pending.deadline <= now {
                continue;
            }
            if pending.next_send <= now {
                due.push((tag, Body::Query(pending.id), pending.targets.clone()));
                pending.next_send = now + retry;
            }
            next = next.min(pending.next_send - now);
        }
        let gathering = (self.names.iter_mut())
            .map(|(t, p)| (*t, p as &mut dyn Gathering))
            .chain(
                self.all
                    .iter_mut()
                    .map(|(t, p)| (*t, p as &mut dyn Gathering)),
            );
        for (tag, pending) in gathering {
            let asked = pending.asked();
            if asked.deadline <= now {
                continue;
            }
            if asked.next_send <= now {
                let targets = (live.len() >= asked.expected).then(|| {
                    live.iter()
                        .filter(|(name, _)| !pending.answered(name))
                        .map(|(_, addr)| *addr)
                        .collect::<Vec<_>>()
                });
                if targets.as_ref().is_none_or(|t| !t.is_empty()) {
                    due.push((tag, asked.body.clone(), targets));
                }
                pending.asked_mut().next_send = now + retry;
            }
            next = next.min(pending.asked().next_send - now);
        }
        (due, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, bounded};

    const RETRY: Duration = Duration::from_millis(100);
    const IDLE: Duration = Duration::from_millis(250);

    fn id(n: u8) -> ResourceId {
        ResourceId([n; 32])
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A search for `id` expecting `expected` answers, asked of `targets`.
    fn search(
        searches: &mut Searches,
        tag: u64,
        id: ResourceId,
        expected: usize,
        targets: Option<Vec<SocketAddr>>,
        now: Instant,
    ) -> Receiver<Outcome> {
        let (reply, answer) = bounded(1);
        searches.start(
            tag,
            Pending {
                id,
                targets,
                expected,
                said_no: Vec::new(),
                replies: vec![reply],
                deadline: now + Duration::from_secs(2),
                next_send: now + RETRY,
                joinable_until: now + RETRY,
            },
        );
        answer
    }

    fn asked(body: Body, expected: usize, now: Instant) -> (Asked, Receiver<()>) {
        let (done, finished) = bounded(1);
        let asked = Asked {
            body,
            expected,
            deadline: now + Duration::from_secs(2),
            next_send: now + RETRY,
            done,
        };
        (asked, finished)
    }

    fn hit(n: u8, location: &str) -> NameHit {
        NameHit {
            id: id(n),
            location: location.into(),
            name: format!("file {n}"),
        }
    }

    #[test]
    fn concurrent_searches_each_take_only_their_own_answers() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let a = search(&mut searches, 1, id(1), 2, None, now);
        let b = search(&mut searches, 2, id(2), 2, None, now);
        // A 22 for another id, or to another tag, counts for nobody.
        searches.not_found(Answerer::Tagged { from: "p", tag: 1 }, Some(id(2)));
        searches.not_found(Answerer::Tagged { from: "p", tag: 3 }, Some(id(1)));
        assert_eq!(searches.ids[&1].said_no.len(), 0);
        searches.found(2, "127.0.0.1:8000".into());
        assert_eq!(b.try_recv(), Ok(Outcome::Found("127.0.0.1:8000".into())));
        assert!(a.try_recv().is_err());
        assert_eq!(searches.id_of(1), Some(id(1)));
        assert_eq!(searches.id_of(2), None);
    }

    #[test]
    fn a_negative_needs_every_expected_peer_once() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let answer = search(&mut searches, 7, id(1), 2, None, now);
        let no = |from| Answerer::Tagged { from, tag: 7 };
        searches.not_found(no("p"), Some(id(1)));
        searches.not_found(no("p"), Some(id(1)));
        assert!(answer.try_recv().is_err(), "one peer said no twice");
        searches.not_found(no("q"), Some(id(1)));
        assert_eq!(answer.try_recv(), Ok(Outcome::NotFound));
        assert!(searches.ids.is_empty());
    }

    #[test]
    fn an_untagged_no_counts_for_every_search_of_its_id() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let a = search(&mut searches, 1, id(1), 1, None, now);
        let b = search(&mut searches, 2, id(1), 1, None, now);
        let c = search(&mut searches, 3, id(2), 1, None, now);
        searches.not_found(Answerer::Untagged("seed"), Some(id(1)));
        assert_eq!(a.try_recv(), Ok(Outcome::NotFound));
        assert_eq!(b.try_recv(), Ok(Outcome::NotFound));
        assert!(c.try_recv().is_err());
        // One that echoes junk matches nothing.
        searches.not_found(Answerer::Untagged("seed"), None);
        assert!(c.try_recv().is_err());
        assert!(searches.timed_out(3).is_some());
        assert_eq!(
            c.try_recv(),
            Ok(Outcome::TimedOut {
                answered: 0,
                expected: 1
            })
        );
        assert!(searches.timed_out(3).is_none(), "ended once");
    }

    #[test]
    fn a_search_for_an_id_just_asked_joins_it_and_ends_with_it() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let first = search(&mut searches, 1, id(1), 2, None, now);
        let (reply, joined) = bounded(1);
        let deadline = now + Duration::from_secs(2);
        assert_eq!(searches.join(&id(1), &reply, now), Some((1, deadline)));
        assert_eq!(searches.join(&id(2), &reply, now), None, "another id");
        assert_eq!(
            searches.join(&id(1), &reply, now + RETRY),
            None,
            "asked too long ago"
        );
        searches.found(1, "127.0.0.1:9".into());
        let found = Ok(Outcome::Found("127.0.0.1:9".into()));
        assert_eq!(
            (first.try_recv(), joined.try_recv()),
            (found.clone(), found)
        );
        assert!(!searches.searching(&id(1)));
        assert_eq!(searches.join(&id(1), &reply, now), None, "ended");

        // A joined search times out with the one it joined, told how far it got.
        let first = search(&mut searches, 2, id(1), 2, None, now);
        let (reply, joined) = bounded(1);
        assert_eq!(searches.join(&id(1), &reply, now), Some((2, deadline)));
        searches.not_found(Answerer::Tagged { from: "p", tag: 2 }, Some(id(1)));
        assert!(searches.timed_out(2).is_some());
        let timed_out = Ok(Outcome::TimedOut {
            answered: 1,
            expected: 2,
        });
        assert_eq!(
            (first.try_recv(), joined.try_recv()),
            (timed_out.clone(), timed_out)
        );

        // Two searches for one id: the newer is joined, and ending the older keeps it.
        let _older = search(&mut searches, 3, id(1), 1, None, now);
        let _newer = search(&mut searches, 4, id(1), 1, None, now);
        assert!(searches.timed_out(3).is_some());
        assert_eq!(searches.join(&id(1), &reply, now), Some((4, deadline)));
    }

    #[test]
    fn a_holder_named_without_a_tag_answers_every_search_for_what_it_holds() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let a = search(&mut searches, 1, id(1), 1, None, now);
        let b = search(&mut searches, 2, id(2), 1, None, now);
        let held: HashSet<ResourceId> = [id(2), id(9)].into_iter().collect();
        assert_eq!(searches.held_by(&held, "127.0.0.1:9"), vec![id(2)]);
        assert_eq!(b.try_recv(), Ok(Outcome::Found("127.0.0.1:9".into())));
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn every_holder_gathers_each_peer_once_and_ends_with_the_last_expected() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let (asked, finished) = asked(Body::AllQuery(id(1)), 2, now);
        searches.all.insert(5, PendingAll::new(asked, id(1)));
        searches.all_found("p", 5, id(2), vec!["10.0.0.9:1".into()]);
        searches.all_found("p", 5, id(1), vec!["10.0.0.1:1".into()]);
        searches.all_found("p", 5, id(1), vec!["10.0.0.2:1".into()]);
        assert!(finished.try_recv().is_err());
        searches.all_found(
            "q",
            5,
            id(1),
            vec!["10.0.0.1:1".into(), "10.0.0.3:1".into()],
        );
        assert_eq!(finished.try_recv(), Ok(()));
        assert_eq!(searches.all[&5].locations, ["10.0.0.1:1", "10.0.0.3:1"]);
    }

    #[test]
    fn a_name_search_ends_when_every_expected_peer_sent_every_part() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let body = Body::NameQuery {
            text: "file".into(),
            node: None,
            limit: 100,
        };
        let (asked, finished) = asked(body, 2, now);
        searches.names.insert(9, PendingNames::new(asked));
        searches.name_answer("p", 9, (2, 2), vec![hit(2, "10.0.0.1:1")]);
        searches.name_answer("p", 9, (2, 2), vec![hit(2, "10.0.0.1:1")]);
        searches.name_answer("q", 9, (1, 1), vec![]);
        assert!(finished.try_recv().is_err(), "p's first part is missing");
        // A count over what any peer sends is not held.
        searches.name_answer("r", 9, (1, MAX_NAME_HITS as u16 + 1), vec![hit(3, "x:1")]);
        searches.name_answer("p", 9, (1, 2), vec![hit(1, "10.0.0.1:1")]);
        assert_eq!(finished.try_recv(), Ok(()));
        let names: Vec<u8> = searches.names[&9].hits.iter().map(|h| h.id.0[0]).collect();
        assert_eq!(names, [2, 1]);
    }

    #[test]
    fn parts_count_once_in_any_order_and_a_new_count_starts_again() {
        let mut parts = Parts::new(130);
        assert!(!parts.take(0, 130) && !parts.take(131, 130));
        for part in (1..=130).rev() {
            assert!(parts.take(part, 130), "part {part}");
            // Asked again, a peer sends its parts again: each counts once.
            assert!(!parts.take(part, 130));
            assert_eq!(parts.complete(), part == 1);
        }
        assert_eq!(parts.got, 130);
        // The answer asked again has another count: it is counted afresh.
        assert!(parts.take(2, 3) && !parts.complete());
        assert!(parts.take(1, 3) && parts.take(3, 3) && parts.complete());
        let mut largest = Parts::new(u16::MAX);
        assert!(largest.take(u16::MAX, u16::MAX) && largest.take(1, u16::MAX));
        assert_eq!(largest.got, 2);
    }

    #[test]
    fn queries_are_asked_again_of_whom_they_asked_or_of_who_has_not_answered() {
        let now = Instant::now();
        let mut searches = Searches::default();
        let _a = search(&mut searches, 1, id(1), 1, Some(vec![addr(1)]), now);
        let (asked, _finished) = asked(Body::AllQuery(id(2)), 2, now);
        searches.all.insert(2, PendingAll::new(asked, id(2)));
        searches.all_found("p", 2, id(2), vec![]);
        let live = [("p", addr(1)), ("q", addr(2))];
        let (due, next) = searches.due(now, RETRY, &live, IDLE);
        assert!(due.is_empty());
        assert_eq!(next, RETRY);
        let later = now + RETRY;
        let (mut due, next) = searches.due(later, RETRY, &live, IDLE);
        due.sort_by_key(|d| d.0);
        assert_eq!(due[0], (1, Body::Query(id(1)), Some(vec![addr(1)])));
        // Only q has not answered the every-holder search.
        assert_eq!(due[1], (2, Body::AllQuery(id(2)), Some(vec![addr(2)])));
        assert_eq!(next, RETRY);
        // An expected peer unknown by name: everyone is asked again.
        let (due, _) = searches.due(later + RETRY, RETRY, &live[..1], IDLE);
        assert!(due.iter().any(|d| d.0 == 2 && d.2.is_none()));
        // Past its deadline, nothing is asked again; no retry, nothing at all.
        let (due, next) = searches.due(now + Duration::from_secs(3), RETRY, &live, IDLE);
        assert!(due.is_empty() && next == IDLE);
        assert!(
            searches
                .due(later, Duration::ZERO, &live, IDLE)
                .0
                .is_empty()
        );
    }
}

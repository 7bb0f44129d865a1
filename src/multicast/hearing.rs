//! What a datagram does once heard: checked (its seal under a cluster key, then its source: a
//! name bound to an address, a rate), then answered from the index, or taken as an answer by
//! the search it belongs to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::id::ResourceId;
use crate::wire::{self, Body, Message, Sender};

use super::searches::Answerer;
use super::sources::{Heard, Kind};
use super::transport::{To, kind_of, reachable};
use super::{ANSWER_BURST, Inner, PING_TAG, State, answers};

impl State {
    /// Notes what `sender`'s datagram, from `from`, says of it as a peer: of the seed's kind
    /// when untagged; answering when it is an answer to us (tagged to `me`, or for the seed's
    /// kind, for an id we search).
    pub(super) fn note_answer(&mut self, sender: &Sender, body: &Body, from: SocketAddr, me: &str) {
        let name = sender.from();
        match (sender, body) {
            (Sender::Reply { to, tag, .. }, _) if to == me => {
                let search = self.searches.waiting(*tag);
                // The ping's answer, not a cookie's (which proves an address, not an answer).
                let ping = *tag == PING_TAG
                    && matches!(body, Body::NotFound(id) if id.bytes().all(|b| b == b'0'));
                if search || ping {
                    self.sources.answered(name, from, search);
                }
            }
            (Sender::Plain(_), _) => {
                self.sources.sent_untagged(name);
                let answers = match body {
                    Body::NotFound(id) => {
                        ResourceId::parse(id).is_some_and(|id| self.searches.searching(&id))
                    }
                    Body::Found(_) => !self.searches.ids.is_empty(),
                    _ => false,
                };
                if answers {
                    self.sources.answered(name, from, true);
                }
            }
            _ => {}
        }
    }
}

impl Inner {
    /// One datagram, from `from`: checked, then acted on.
    pub(super) fn handle(self: &Arc<Self>, datagram: &[u8], from: SocketAddr) {
        let Some(message) = self.unsealed(datagram, from) else {
            return;
        };
        self.transport.metrics.received(kind_of(&message.body));
        if let Some(name) = self.transport.peers.heard(from) {
            log::info!("peers: {name} answers again");
            let silent = self.transport.peers.silent() as i64;
            self.transport.metrics.peers_silent.set(silent);
        }
        let now = Instant::now();
        let Some(heard) = self.admit(&message, datagram.len(), from, now) else {
            return;
        };
        let reachable = reachable(self.transport.interface, from.ip());
        if let Some(cookie) = heard.probe
            && reachable
        {
            let sender = Sender::Query {
                from: self.me.clone(),
                tag: PING_TAG,
            };
            let probe = Message::new(sender, Body::Query(cookie));
            self.reply(probe, None, (To::One(from), false), now);
        }
        // Our own kind's (tagged) queries are answered to the asker's socket, the seed's on the
        // group, where they listen.
        let to = match &message.sender {
            Sender::Query { .. } if reachable => To::One(from),
            _ => To::Group,
        };
        self.act(message, (from, to, heard.validated), now);
    }

    /// The message `datagram` holds, unless it is malformed, our own, or (under a cluster
    /// key) not sealed right: those are dropped, counted, and logged now and then.
    fn unsealed(&self, datagram: &[u8], from: SocketAddr) -> Option<Message> {
        let metrics = &self.transport.metrics;
        let message = match wire::parse(datagram) {
            Ok(message) => message,
            Err(e) => {
                log::debug!("multicast: ignoring a datagram from {from}: {e}");
                metrics.dropped("malformed");
                return None;
            }
        };
        let sender = message.sender.from();
        if sender == self.me {
            return None;
        }
        let Some(seals) = &self.transport.seals else {
            return Some(message);
        };
        // A 21 carries a location, not the id it answers: its seal binds the id of the search
        // it names. One that names no search of ours is nothing to check.
        let answered = match (&message.body, &message.sender) {
            (Body::Found(_), Sender::Reply { to, tag, .. }) if *to == self.me => {
                Some(self.state().searches.id_of(*tag)?)
            }
            (Body::Found(_), Sender::Reply { .. }) => return None,
            _ => None,
        };
        if let Err(why) = seals.check(&message, datagram, answered.as_ref()) {
            metrics.dropped(why.label());
            if let Some(dropped) = self.refused[why as usize].hit() {
                log::warn!(
                    "multicast: dropped a datagram from {from} ({}): {why} under the cluster key ({dropped} dropped as {why} since the last report)",
                    sender.escape_debug()
                );
            }
            return None;
        }
        Some(message)
    }

    /// What its source may do ([`super::sources`]): `None` when the datagram is dropped (a
    /// name bound elsewhere, a rate) or was a cookie's answer, which proves the sender's
    /// address and is nothing more.
    fn admit(
        self: &Arc<Self>,
        message: &Message,
        len: usize,
        from: SocketAddr,
        now: Instant,
    ) -> Option<Heard> {
        let (sender, asker) = (message.sender.from(), &message.sender);
        let mut state = self.state();
        let heard = match (state.sources).heard(sender, from, len, Kind::of(message), now) {
            Ok(heard) => heard,
            Err(refused) => {
                drop(state);
                self.transport.metrics.dropped(refused.label());
                if let Some(dropped) = self.dropped.hit() {
                    log::warn!(
                        "multicast: dropped {dropped} datagram(s) since the last report, the last from {from} ({}): {}",
                        sender.escape_debug(),
                        refused.label()
                    );
                }
                return None;
            }
        };
        state.note_answer(asker, &message.body, from, &self.me);
        if let Body::NotFound(id) = &message.body
            && (matches!(asker, Sender::Plain(_))
                || matches!(asker, Sender::Reply { to, .. } if *to == self.me))
            && let Some(id) = ResourceId::parse(id)
            && state.sources.validate(sender, from, &id, now)
        {
            // Its summary, if it announced one already, may be fetched now; and it is pinged,
            // so that it counts as soon as it answers (not at the next ping).
            let fetch = state.summaries.proven(sender, now);
            drop(state);
            if let Some(fetch) = fetch {
                self.fetch_summary(fetch);
            }
            self.ask(PING_TAG, Body::Query(ResourceId([0; 32])), Some(&[from]));
            return None;
        }
        Some(heard)
    }

    /// Answers a query (`to` the asker; a name answer or a holder list only when its address
    /// is `proven`), or hands an answer to its search.
    fn act(
        self: &Arc<Self>,
        message: Message,
        (from, to, proven): (SocketAddr, To, bool),
        now: Instant,
    ) {
        let Message {
            sender: asker,
            body,
            ..
        } = message;
        // A name answer or a holder list is larger than its query: only for a proven address.
        let big_allowed = || {
            let allowed = matches!(to, To::Group) || proven;
            if !allowed {
                self.transport.metrics.withheld("unproven");
            }
            allowed
        };
        let asker = &asker;
        match body {
            Body::Query(id) => {
                let (answer, answered) = answers::id_query(&self.read_index(), &self.me, asker, id);
                self.reply(answer, answered.as_ref(), (to, proven), now);
            }
            Body::AllQuery(id) => {
                let answer = answers::all_query(&self.read_index(), &self.me, asker, id);
                if let Some(answer) = answer
                    && big_allowed()
                {
                    self.reply(answer, None, (to, proven), now);
                }
            }
            Body::NameQuery { text, node, limit } => {
                if !big_allowed() {
                    return;
                }
                let query = (text.as_str(), node.as_deref(), limit);
                let parts = answers::name_query(&self.read_index(), &self.me, asker, query);
                for (i, part) in parts.into_iter().enumerate() {
                    if i > 0 && i % ANSWER_BURST == 0 {
                        // Hundreds at once would overflow the asker's receive buffer: a breath.
                        thread::sleep(Duration::from_micros(200));
                    }
                    self.reply(part, None, (to, proven), now);
                }
            }
            Body::Found(location) => self.on_found(asker, location),
            Body::NotFound(id) => {
                let answerer = match asker {
                    Sender::Reply { from, to, tag } if *to == self.me => {
                        Answerer::Tagged { from, tag: *tag }
                    }
                    Sender::Plain(from) => Answerer::Untagged(from),
                    _ => return,
                };
                let id = ResourceId::parse(&id);
                self.state().searches.not_found(answerer, id);
            }
            Body::AllFound { id, locations } => {
                if let Sender::Reply { from, to, tag } = asker
                    && *to == self.me
                {
                    self.state().searches.all_found(from, *tag, id, locations);
                }
            }
            Body::NameAnswer { part, parts, hits } => {
                if let Sender::Reply { from, to, tag } = asker
                    && *to == self.me
                {
                    let mut state = self.state();
                    state.searches.name_answer(from, *tag, (part, parts), hits);
                }
            }
            Body::Digest {
                http,
                epoch,
                version,
            } => self.on_digest(asker, from, &http, (epoch, version)),
            Body::Leaving => {
                let sender = asker.from();
                let mut state = self.state();
                if state.sources.left(sender, from) {
                    state.summaries.forget(sender);
                    log::info!(
                        "multicast: {} at {from} left the group",
                        sender.escape_debug()
                    );
                }
            }
        }
    }

    /// Sends an answer (or a cookie) caused by a datagram: to an address that has not proved
    /// itself, only within 3 x what came from it (`proven`: `to` has, nothing to count).
    pub(super) fn reply(
        &self,
        message: Message,
        answered: Option<&ResourceId>,
        (to, proven): (To, bool),
        now: Instant,
    ) {
        let kind = kind_of(&message.body);
        let bytes = self.transport.seal(message, answered);
        if let To::One(addr) = to
            && !proven
            && !self.state().sources.may_send(addr, bytes.len(), now)
        {
            self.transport.metrics.withheld("amplification");
            return;
        }
        self.transport.send_bytes(&bytes, kind, to);
    }

    pub(super) fn on_found(self: &Arc<Self>, sender: &Sender, location: String) {
        match sender {
            Sender::Reply { to, tag, .. } if *to == self.me => {
                self.state().searches.found(*tag, location);
            }
            Sender::Plain(name) => self.check_holder(name, location),
            _ => {}
        }
    }
}

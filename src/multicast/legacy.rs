//! Untagged `21`s, the seed's answers: one names a holder but not the id it answers, so while
//! several of our searches wait (or one waits and the `21` may be a late answer to a search
//! that already ended, or to another supernode's query) it belongs to nobody for certain.
//! Instead of dropping it, the holder is asked what it holds, and every waiting search for one
//! of those ids gets the holder as its answer. The holder's listing (`GET /api/node/resources`)
//! is asked rather than `GET /api/node/resources/<id>` for each waiting id: one request, and
//! it starts no search of its own for the ids the holder lacks.
//!
//! Bounded like every input path, since a forged datagram can name any address: one check per
//! holder at a time (answers naming it meanwhile ask for one more round), [`MAX_RUNNING`]
//! holders at once and [`MAX_PER_SENDER`] for one sender, [`CHECK_TIMEOUT`] for the whole
//! request, so a tar pit frees its slot soon, and a host whose check failed is not asked again
//! for [`FAILED_BACKOFF`]; a cap on the listing's size. A supernode on loopback asks only
//! loopback holders (no datagram sends it off the machine), one on a LAN address never asks
//! loopback nor its own address, and none asks its own API or socket.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::api::{self, Held};
use crate::id::ResourceId;

use super::Inner;

/// Holders checked at once; an untagged answer beyond them is dropped, as before checks.
pub(super) const MAX_RUNNING: usize = 8;
/// Holders checked at once for answers from one sender.
const MAX_PER_SENDER: usize = 2;
/// The longest one check may take, connection and listing included.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a host whose check failed is not asked again.
const FAILED_BACKOFF: Duration = Duration::from_secs(30);
/// The most failed hosts remembered.
const MAX_FAILED: usize = 1024;
/// The largest listing read (about 160,000 resources).
const MAX_LISTING: u64 = 16 << 20;

/// A check running: who named the holder, and whether another answer named it since.
struct Running {
    sender: String,
    again: bool,
}

/// The holders being checked, and the hosts whose check failed lately.
#[derive(Default)]
pub(super) struct Checks {
    running: HashMap<SocketAddr, Running>,
    failed: HashMap<IpAddr, Instant>,
}

/// What to do with an untagged answer naming a holder.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Start a check of the holder.
    Start,
    /// A check of it is running and will look again when it ends.
    Joined,
    /// Too many checks running (in all, or for this sender): the answer is dropped.
    Busy,
    /// The holder's host failed a check lately: the answer is dropped.
    Failed,
}

impl Checks {
    /// An untagged answer from `sender` named `holder`.
    pub(super) fn named(&mut self, holder: SocketAddr, sender: &str, now: Instant) -> Next {
        if let Some(running) = self.running.get_mut(&holder) {
            running.again = true;
            return Next::Joined;
        }
        if self
            .failed
            .get(&holder.ip())
            .is_some_and(|until| now < *until)
        {
            return Next::Failed;
        }
        let of_sender = self.running.values().filter(|r| r.sender == sender).count();
        if self.running.len() >= MAX_RUNNING || of_sender >= MAX_PER_SENDER {
            return Next::Busy;
        }
        let sender = sender.to_string();
        self.running.insert(
            holder,
            Running {
                sender,
                again: false,
            },
        );
        Next::Start
    }

    /// A check of `holder` ended (`ok`: the holder answered): true when it should run once
    /// more. A failed one is not run again, and its host is not asked for a while.
    pub(super) fn ended(&mut self, holder: SocketAddr, ok: bool, now: Instant) -> bool {
        if !ok {
            self.running.remove(&holder);
            if self.failed.len() >= MAX_FAILED {
                self.failed.retain(|_, until| now < *until);
            }
            if self.failed.len() < MAX_FAILED {
                self.failed.insert(holder.ip(), now + FAILED_BACKOFF);
            }
            return false;
        }
        match self.running.get_mut(&holder) {
            Some(running) if running.again => {
                running.again = false;
                true
            }
            _ => {
                self.running.remove(&holder);
                false
            }
        }
    }
}

/// The holder an untagged answer names, when a supernode on `interface` whose own API and
/// socket are `own` may ask it.
pub(super) fn holder(location: &str, interface: IpAddr, own: &[SocketAddr]) -> Option<SocketAddr> {
    let addr: SocketAddr = location.parse().ok()?;
    let ip = addr.ip();
    let allowed = if interface.is_loopback() {
        ip.is_loopback()
    } else {
        !ip.is_loopback() && ip != interface
    };
    let special = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    (allowed && !special && addr.port() != 0 && !own.contains(&addr)).then_some(addr)
}

/// The ids `holder` says it holds.
pub(super) fn held(agent: &ureq::Agent, holder: SocketAddr) -> Result<HashSet<ResourceId>, String> {
    let mut response = agent
        .get(&format!("http://{holder}/api/node/resources"))
        .call()
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_LISTING)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    let listing: Vec<Held> = api::data_of(&body).map_err(|e| e.to_string())?;
    Ok(listing.iter().map(|held| held.id).collect())
}

// --- the checks, on threads of their own -----------------------------------------------------

impl Inner {
    /// An untagged `21` from `sender`: while any search waits, asks the holder it names what
    /// it holds, on a thread of its own, and answers the waiting searches for those ids.
    pub(super) fn check_holder(self: &Arc<Self>, sender: &str, location: String) {
        let own: Vec<SocketAddr> = (self.api.get().and_then(|api| api.parse().ok()))
            .into_iter()
            .chain(self.transport.unicast.local_addr().ok())
            .collect();
        let Some(holder) = holder(&location, self.transport.interface, &own) else {
            log::debug!("multicast: untagged answer {location:?} names no holder we may ask");
            return;
        };
        {
            let mut state = self.state();
            if state.searches.ids.is_empty() {
                return;
            }
            match state.checks.named(holder, sender, Instant::now()) {
                Next::Start => {}
                Next::Joined => return,
                Next::Busy | Next::Failed => {
                    log::debug!(
                        "multicast: untagged answer {holder} dropped: checks busy, or it failed lately"
                    );
                    return;
                }
            }
        }
        let inner = self.clone();
        let started = thread::Builder::new()
            .name("legacy-check".into())
            .spawn(move || {
                loop {
                    let held = held(&inner.holders, holder);
                    let mut state = inner.state();
                    let ok = match held {
                        Ok(held) => {
                            for id in state.searches.held_by(&held, &holder.to_string()) {
                                log::debug!("multicast: untagged answer: {holder} holds {id}");
                            }
                            true
                        }
                        Err(e) => {
                            log::debug!("multicast: cannot ask {holder} what it holds: {e}");
                            false
                        }
                    };
                    if !state.checks.ended(holder, ok, Instant::now()) {
                        break;
                    }
                }
            });
        if started.is_err() {
            let mut state = self.state();
            state.checks.ended(holder, false, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn one_check_per_holder_and_a_cap_on_all_and_on_each_sender() {
        let now = Instant::now();
        let mut checks = Checks::default();
        let a: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        assert_eq!(checks.named(a, "seed", now), Next::Start);
        assert_eq!(checks.named(a, "seed", now), Next::Joined);
        assert!(
            checks.ended(a, true, now),
            "named again while running: one more round"
        );
        assert!(!checks.ended(a, true, now));
        assert_eq!(
            checks.named(a, "seed", now),
            Next::Start,
            "ended: a new answer starts again"
        );
        let b: SocketAddr = "127.0.0.1:8002".parse().unwrap();
        assert_eq!(checks.named(b, "seed", now), Next::Start);
        let c: SocketAddr = "127.0.0.1:8003".parse().unwrap();
        assert_eq!(
            checks.named(c, "seed", now),
            Next::Busy,
            "two for one sender"
        );
        for port in 3..=MAX_RUNNING as u16 {
            let holder = SocketAddr::from(([127, 0, 0, 1], port));
            assert_eq!(checks.named(holder, &format!("s{port}"), now), Next::Start);
        }
        assert_eq!(
            checks.named("127.0.0.2:1".parse().unwrap(), "x", now),
            Next::Busy
        );
    }

    #[test]
    fn a_host_whose_check_failed_is_left_alone_for_a_while() {
        let now = Instant::now();
        let mut checks = Checks::default();
        let pit: SocketAddr = "10.0.0.66:9".parse().unwrap();
        assert_eq!(checks.named(pit, "x", now), Next::Start);
        assert_eq!(checks.named(pit, "x", now), Next::Joined);
        assert!(
            !checks.ended(pit, false, now),
            "a failed check is not run again"
        );
        let other_port: SocketAddr = "10.0.0.66:10".parse().unwrap();
        assert_eq!(checks.named(other_port, "y", now), Next::Failed);
        assert_eq!(
            checks.named(other_port, "y", now + FAILED_BACKOFF),
            Next::Start
        );
    }

    #[test]
    fn no_datagram_sends_a_check_where_it_must_not_go() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 35, 10));
        let own: Vec<SocketAddr> = vec!["127.0.0.1:5000".parse().unwrap()];
        assert!(holder("127.0.0.1:8001", lo, &own).is_some());
        assert!(holder("127.0.0.1:5000", lo, &own).is_none(), "its own API");
        assert!(
            holder("10.0.0.1:8001", lo, &own).is_none(),
            "off the machine"
        );
        assert!(holder("10.0.0.1:8001", lan, &own).is_some());
        assert!(
            holder("127.0.0.1:8001", lan, &own).is_none(),
            "its host's loopback"
        );
        assert!(
            holder("192.168.35.10:8001", lan, &own).is_none(),
            "its own address"
        );
        for junk in [
            "",
            "host:80",
            "127.0.0.1:0",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "127.0.0.1",
            "[::1]:x",
        ] {
            assert!(holder(junk, lan, &own).is_none(), "{junk}");
        }
    }
}

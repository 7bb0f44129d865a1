//! `PEERS`: supernodes beyond the group's reach (another site, a cloud, a container network,
//! where multicast does not go). Every query, ping, name query and holder query sent to the
//! group goes to each of them too, by unicast to its own socket; they answer by unicast, as
//! every supernode of ours does.
//!
//! Names are resolved at start and every [`RESOLVE_PERIOD`], on a thread of their own, so a
//! slow resolver never holds up a search. A peer that misses [`SILENT_AFTER`] pings in a row
//! is logged and counted (`superpeer_configured_peers_silent`), and searches stop waiting for
//! it until it is heard again.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Pings in a row a peer may miss before searches stop waiting for it.
pub(super) const SILENT_AFTER: u32 = 3;
/// How often the names are resolved again.
pub(super) const RESOLVE_PERIOD: Duration = Duration::from_secs(60);

struct Entry {
    /// As configured: `host:port`.
    name: String,
    /// What the name resolved to last (IPv4 only: the socket is IPv4).
    addr: Option<SocketAddr>,
    /// Heard from since the last ping.
    heard: bool,
    missed: u32,
}

impl Entry {
    fn silent(&self) -> bool {
        self.missed >= SILENT_AFTER
    }
}

/// The configured peers and whether they answer.
pub(super) struct Peers {
    entries: Mutex<Vec<Entry>>,
    /// Whether any is configured (fixed at start: asked on every send without the lock).
    configured: bool,
}

impl Peers {
    pub(super) fn new(names: &[String]) -> Peers {
        let entries = names
            .iter()
            .map(|name| Entry {
                name: name.clone(),
                addr: None,
                heard: false,
                missed: 0,
            })
            .collect();
        Peers {
            entries: Mutex::new(entries),
            configured: !names.is_empty(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.configured
    }

    /// Whether `addr` is where a configured peer was last resolved to.
    pub(super) fn has(&self, addr: SocketAddr) -> bool {
        self.configured && self.entries().iter().any(|e| e.addr == Some(addr))
    }

    /// Where a datagram for everyone goes besides the group: every resolved peer, silent or not
    /// (a silent one is heard again only if it is still asked).
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.entries().iter().filter_map(|e| e.addr).collect()
    }

    /// Resolves every name again (blocking: call from the peers' own thread). A name that does
    /// not resolve keeps its last address; one that resolves to an address a supernode on
    /// `interface` may not send to is not used.
    pub(super) fn resolve(&self, interface: IpAddr) {
        let names: Vec<String> = self.entries().iter().map(|e| e.name.clone()).collect();
        for name in names {
            let resolved = name.to_socket_addrs().map(|addrs| {
                addrs
                    .filter(|a| a.is_ipv4() == interface.is_ipv4())
                    .filter(|a| super::reachable(interface, a.ip()))
                    .find(|a| !a.ip().is_unspecified())
            });
            let mut entries = self.entries();
            let Some(entry) = entries.iter_mut().find(|e| e.name == name) else {
                continue;
            };
            match resolved {
                Ok(Some(addr)) => {
                    if entry.addr != Some(addr) {
                        log::info!("peers: {name} is {addr}");
                    }
                    entry.addr = Some(addr);
                }
                Ok(None) => log::warn!(
                    "peers: {name} has no {} address this supernode may use",
                    if interface.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
                Err(e) => log::warn!("peers: cannot resolve {name}: {e}"),
            }
        }
    }

    /// A datagram came from `from`: the peer there (if any) answers. Returns its name when it
    /// had been silent.
    pub(super) fn heard(&self, from: SocketAddr) -> Option<String> {
        let mut entries = self.entries();
        let entry = entries.iter_mut().find(|e| e.addr == Some(from))?;
        let was_silent = entry.silent();
        entry.heard = true;
        entry.missed = 0;
        was_silent.then(|| entry.name.clone())
    }

    /// A ping goes out: a peer not heard since the last one missed it. Returns the peers that
    /// have just become silent, and how many are silent now.
    pub(super) fn ping_round(&self) -> (Vec<String>, usize) {
        let mut entries = self.entries();
        let mut now_silent = Vec::new();
        for entry in entries.iter_mut() {
            if std::mem::take(&mut entry.heard) {
                continue;
            }
            entry.missed = entry.missed.saturating_add(1);
            if entry.missed == SILENT_AFTER {
                now_silent.push(entry.name.clone());
            }
        }
        let silent = entries.iter().filter(|e| e.silent()).count();
        (now_silent, silent)
    }

    /// Peers that searches do not wait for.
    pub(super) fn silent(&self) -> usize {
        self.entries().iter().filter(|e| e.silent()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_peer_is_silent_after_missed_pings_and_answers_again_when_heard() {
        let peers = Peers::new(&["127.0.0.1:4999".to_string(), "localhost:4998".to_string()]);
        assert!(peers.addrs().is_empty(), "nothing resolved yet");
        peers.resolve(Ipv4Addr::LOCALHOST.into());
        let addrs = peers.addrs();
        assert_eq!(addrs.len(), 2);
        let first: SocketAddr = "127.0.0.1:4999".parse().unwrap();
        assert!(addrs.contains(&first));
        for round in 1..SILENT_AFTER {
            assert!(peers.heard(first).is_none());
            let (now_silent, silent) = peers.ping_round();
            assert!(now_silent.is_empty(), "round {round}");
            assert_eq!(silent, 0);
        }
        // The second peer has missed SILENT_AFTER pings by now.
        let (now_silent, silent) = peers.ping_round();
        assert_eq!(now_silent, vec!["localhost:4998".to_string()]);
        assert_eq!((silent, peers.silent()), (1, 1));
        assert!(peers.ping_round().0.is_empty(), "reported once");
        let second: SocketAddr = "127.0.0.1:4998".parse().unwrap();
        assert_eq!(peers.heard(second), Some("localhost:4998".to_string()));
        assert_eq!(peers.silent(), 0);
        assert!(peers.heard("127.0.0.1:1".parse().unwrap()).is_none());
    }

    #[test]
    fn a_supernode_on_loopback_uses_only_loopback_peers() {
        let peers = Peers::new(&["10.1.2.3:4321".to_string()]);
        peers.resolve(Ipv4Addr::LOCALHOST.into());
        assert!(peers.addrs().is_empty());
        peers.resolve(Ipv4Addr::new(192, 168, 35, 10).into());
        assert_eq!(peers.addrs(), vec!["10.1.2.3:4321".parse().unwrap()]);
    }
}

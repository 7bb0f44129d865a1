//! How datagrams leave and arrive: the group's socket only hears the group; the supernode's
//! own socket (`UNICAST_PORT`) sends every datagram and hears the answers to its queries and
//! what `PEERS` send. Under a cluster key every datagram leaves sealed.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::DatagramSeals;
use crate::config::SupernodeConfig;
use crate::error::Error;
use crate::id::ResourceId;
use crate::logging::Throttle;
use crate::metrics::SupernodeMetrics;
use crate::wire::{Body, Message};

use super::peers::Peers;

/// Send failures are logged at most once per this period.
const FAILURE_REPORT_PERIOD: Duration = Duration::from_secs(10);
/// The TTL of what goes to `PEERS`, which may be routers away (everything else leaves with
/// `MULTICAST_TTL`, 1 by default: answers to the group's members stay on its network).
const ROUTED_TTL: u32 = 64;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum To {
    /// The group (answers to the seed's queries, which listen there).
    Group,
    /// The group and every `PEERS` entry: our queries.
    Everyone,
    /// One supernode's own socket: answers to its queries.
    One(SocketAddr),
}

/// A datagram's kind, as the metrics count it.
pub(super) fn kind_of(body: &Body) -> &'static str {
    match body {
        Body::Query(_) => "query",
        Body::Found(_) => "found",
        Body::NotFound(_) => "not_found",
        Body::AllQuery(_) => "all_query",
        Body::AllFound { .. } => "all_found",
        Body::NameQuery { .. } => "name_query",
        Body::NameAnswer { .. } => "name_answer",
        Body::Digest { .. } => "digest",
        Body::Leaving => "leaving",
    }
}

/// Whether a supernode on `interface` may send to `addr`: one on loopback only to loopback, so
/// that no datagram (nor a check of a holder) leaves a cluster bound to 127.0.0.1.
pub(super) fn reachable(interface: IpAddr, addr: IpAddr) -> bool {
    !interface.is_loopback() || addr.is_loopback()
}

/// The sockets, and what every datagram sent needs.
pub(super) struct Transport {
    /// The group's socket: hears the group.
    pub(super) group_socket: UdpSocket,
    /// The supernode's own socket: sends every datagram, and hears the answers to its queries.
    pub(super) unicast: UdpSocket,
    /// The group as datagrams are sent to it (an IPv6 one with its interface's index).
    pub(super) group: SocketAddr,
    /// Whether the group can be sent to: not on an interface without IPv6 multicast (Linux's
    /// loopback has none), where only `PEERS` are asked.
    group_sends: bool,
    pub(super) interface: IpAddr,
    /// `CLUSTER_KEY`: every datagram sent is sealed.
    pub(super) seals: Option<DatagramSeals>,
    /// `PEERS`: asked by unicast whatever the group is asked.
    pub(super) peers: Peers,
    /// `MULTICAST_TTL`, the own socket's TTL but for what goes to `PEERS`.
    ttl: u32,
    /// Held while the own socket sends, when there are `PEERS`: a send to one of them raises
    /// the TTL for its time, and no other send may leave meanwhile.
    routed: Mutex<()>,
    send_failures: Throttle,
    pub(super) metrics: Arc<SupernodeMetrics>,
}

impl Transport {
    /// Joins the group and opens the supernode's own socket.
    pub(super) fn open(
        config: &SupernodeConfig,
        metrics: Arc<SupernodeMetrics>,
    ) -> Result<Transport, Error> {
        let (index, group_sends) = match config.interface {
            IpAddr::V6(ip) => {
                let (index, multicast) = interface_of(ip)
                    .map_err(|e| Error::io(format!("no interface has the address {ip}"), e))?;
                if !multicast {
                    log::warn!(
                        "multicast: the interface of {ip} has no IPv6 multicast (a loopback): the group {} is not sent to; only PEERS are asked",
                        config.group
                    );
                }
                (index, multicast)
            }
            IpAddr::V4(_) => (0, true),
        };
        let group = match config.group {
            SocketAddr::V6(group) => {
                SocketAddr::V6(SocketAddrV6::new(*group.ip(), group.port(), 0, index))
            }
            v4 => v4,
        };
        let group_socket = open_group(group, config.interface).map_err(|e| {
            Error::io(
                format!(
                    "cannot join multicast group {} on {}",
                    config.group, config.interface
                ),
                e,
            )
        })?;
        let unicast = open_unicast(config, index).map_err(|e| {
            Error::io(
                format!(
                    "cannot open the unicast socket on {}",
                    SocketAddr::new(
                        config.interface,
                        config.unicast_port.unwrap_or(config.group.port())
                    )
                ),
                e,
            )
        })?;
        Ok(Transport {
            group_socket,
            unicast,
            group,
            group_sends,
            interface: config.interface,
            seals: config.cluster_keys.clone().map(DatagramSeals::new),
            peers: Peers::new(&config.peers),
            ttl: config.ttl,
            routed: Mutex::new(()),
            send_failures: Throttle::new(FAILURE_REPORT_PERIOD),
            metrics,
        })
    }

    /// The bytes of `message`, sealed when there is a cluster key (`answered`: the id a `21`
    /// answers, which its seal binds).
    pub(super) fn seal(&self, mut message: Message, answered: Option<&ResourceId>) -> Vec<u8> {
        match &self.seals {
            Some(seals) => seals.seal_encode(&mut message, answered),
            None => message.encode(),
        }
    }

    /// Sends `message` to the group or one peer, from the supernode's own socket, sealed when
    /// there is a cluster key.
    pub(super) fn send(&self, message: Message, answered: Option<&ResourceId>, to: To) {
        let kind = kind_of(&message.body);
        let bytes = self.seal(message, answered);
        self.send_bytes(&bytes, kind, to);
    }

    /// Sends a datagram of `kind` already sealed.
    pub(super) fn send_bytes(&self, bytes: &[u8], kind: &'static str, to: To) {
        self.metrics.sent(kind);
        let sent = match to {
            To::Group if !self.group_sends => Ok(()),
            To::Group => self.send_to(bytes, self.group, false),
            To::One(addr) => self.send_to(bytes, addr, self.peers.has(addr)),
            To::Everyone => {
                let mut sent = if self.group_sends {
                    self.send_to(bytes, self.group, false)
                } else {
                    Ok(())
                };
                for peer in self.peers.addrs() {
                    sent = sent.and(self.send_to(bytes, peer, true));
                }
                sent
            }
        };
        if let Err(e) = sent {
            self.metrics.datagram_send_failures.inc();
            // Reported at most every 10 s: a lossy or cut link fails many sends.
            if let Some(failed) = self.send_failures.hit() {
                log::warn!(
                    "multicast: {failed} send(s) failed since the last report (the last to {}): {e}",
                    match to {
                        To::Group | To::Everyone => self.group,
                        To::One(addr) => addr,
                    }
                );
            }
        }
    }

    /// One send from the own socket; `routed`: to a `PEERS` entry, with [`ROUTED_TTL`].
    fn send_to(&self, bytes: &[u8], addr: SocketAddr, routed: bool) -> io::Result<()> {
        if self.peers.is_empty() {
            // No send ever changes the TTL: nothing to wait for.
            return self.send_now(bytes, addr);
        }
        let _alone = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
        if !routed {
            return self.send_now(bytes, addr);
        }
        set_hops(&self.unicast, self.interface, ROUTED_TTL)?;
        let sent = self.send_now(bytes, addr);
        set_hops(&self.unicast, self.interface, self.ttl)?;
        sent
    }

    /// Sends without waiting: datagrams to an address that does not resolve (a forged one)
    /// wait in the kernel for its neighbour, and fill the socket's buffer; once full, a send
    /// fails (like a lost datagram, which a retry makes up for) instead of stopping the thread
    /// that answers everyone.
    fn send_now(&self, bytes: &[u8], addr: SocketAddr) -> io::Result<()> {
        socket2::SockRef::from(&self.unicast)
            .send_to_with_flags(bytes, &addr.into(), libc::MSG_DONTWAIT)
            .map(drop)
    }

    /// Takes one datagram from `socket` into `buffer` (waiting at most its read time-out).
    pub(super) fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match socket.recv_from(buffer) {
            Ok(got) => Some(got),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => {
                log::debug!("multicast: receive failed: {e}");
                None
            }
        }
    }
}

/// The hop limit of the unicast datagrams `socket` (of `interface`'s family) sends.
fn set_hops(socket: &UdpSocket, interface: IpAddr, hops: u32) -> io::Result<()> {
    match interface {
        IpAddr::V4(_) => socket.set_ttl(hops),
        IpAddr::V6(_) => socket2::SockRef::from(socket).set_unicast_hops_v6(hops),
    }
}

/// The index of the interface that has the IPv6 address `ip` (0 for the unspecified address:
/// the system's choice), and whether it does multicast. From the kernel's list of addresses
/// (`/proc/net/if_inet6`: the address in 32 hex digits, the index in hex, three more fields,
/// the interface's name) and the interface's flags (`IFF_MULTICAST`).
fn interface_of(ip: Ipv6Addr) -> io::Result<(u32, bool)> {
    if ip.is_unspecified() {
        return Ok((0, true));
    }
    let hex: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
    let list = std::fs::read_to_string("/proc/net/if_inet6")?;
    let (index, name) = list
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [address, index, _, _, _, name] = fields[..] else {
                return None;
            };
            let index = u32::from_str_radix(index, 16).ok()?;
            (address == hex).then(|| (index, name.to_string()))
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "not on this host"))?;
    const IFF_MULTICAST: u32 = 0x1000;
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .map_err(|e| io::Error::other(format!("the flags of {name}: {e}")))?;
    Ok((index, flags & IFF_MULTICAST != 0))
}

/// The supernode's own socket, on the interface address: exclusively its own (no port
/// sharing), so what comes to it by unicast reaches it alone. `index`: the interface's, for
/// IPv6.
fn open_unicast(config: &SupernodeConfig, index: u32) -> io::Result<UdpSocket> {
    let open = |port: u16| -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(config.group),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        if config.group.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Room for bursts (a name search's answers): as much as the system allows, up to 4 MiB,
        // each way.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        socket.bind(&SocketAddr::from((config.interface, port)).into())?;
        Ok(socket)
    };
    let socket = match config.unicast_port {
        Some(port) => open(port)?,
        // The group's port unless another supernode on this address has it already.
        None => match open(config.group.port()) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => open(0)?,
            result => result?,
        },
    };
    match config.interface {
        IpAddr::V4(interface) => {
            if !interface.is_unspecified() {
                socket.set_multicast_if_v4(&interface)?;
            }
            socket.set_multicast_ttl_v4(config.ttl)?;
            // Several supernodes on one host must hear each other.
            socket.set_multicast_loop_v4(true)?;
        }
        IpAddr::V6(_) => {
            if index != 0 {
                socket.set_multicast_if_v6(index)?;
            }
            socket.set_multicast_hops_v6(config.ttl)?;
            socket.set_multicast_loop_v6(true)?;
        }
    }
    // Unicast answers to the group's members go no further than the group's datagrams.
    let socket: UdpSocket = socket.into();
    set_hops(&socket, config.interface, config.ttl)?;
    Ok(socket)
}

/// The group's socket: it only hears (every datagram leaves from the supernode's own socket).
/// `group` is an IPv6 one with its interface's index.
fn open_group(group: SocketAddr, interface: IpAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    if group.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    // Bound to the group address, the socket hears only this group, even if another group on
    // the same host uses the same port.
    socket.bind(&group.into())?;
    match (group, interface) {
        (SocketAddr::V4(group), IpAddr::V4(interface)) => {
            socket.join_multicast_v4(group.ip(), &interface)?;
        }
        (SocketAddr::V6(group), _) => socket.join_multicast_v6(group.ip(), group.scope_id())?,
        _ => {
            return Err(io::Error::other(
                "the group and the interface are of two families",
            ));
        }
    }
    Ok(socket.into())
}

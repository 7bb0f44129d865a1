//! [`Lan`]: a LAN of network namespaces, made by a [`Builder`], deleted on drop unless kept;
//! and the clean-ups that find LANs by name ([`delete_named`], [`delete_owned_by`], and the
//! sweep of dead processes' LANs every owned LAN begins with).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::name::{self, GATEWAYS, Prefix, SITE_HOSTS};
use crate::sys::{self, Error, ip};

/// How the next LAN is named and cleaned up after: from [`Lan::owned`], [`Lan::owned_by`] or
/// [`Lan::named`]; then [`Builder::one_site`] or [`Builder::two_sites`] makes it.
#[must_use]
pub struct Builder {
    prefix: Result<Prefix, String>,
    /// Owned LANs: dead processes' LANs are deleted first.
    sweep: bool,
    /// The binaries whose processes that sweep may stop.
    stops: Vec<PathBuf>,
    ipv6_only: bool,
}

impl Builder {
    /// When the sweep finds a dead process's LAN, processes running `binary` inside it are
    /// killed (SIGKILL, by PID) before its namespaces go. No other process is ever signalled:
    /// they are left running in a namespace without a name.
    pub fn sweep_stops(mut self, binary: impl Into<PathBuf>) -> Builder {
        self.stops.push(binary.into());
        self
    }

    /// Addresses the hosts (and the router) with IPv6 alone: `fd00:35::(9 + h)/64` (site B
    /// `fd00:36::`, [`name::host_ip6`]), no IPv4 address anywhere, not even 127.0.0.1 on the
    /// namespaces' loopback (`::1` stays). Duplicate address detection is off in every
    /// namespace: the addresses, link-local ones included, are usable at once.
    pub fn ipv6_only(mut self) -> Builder {
        self.ipv6_only = true;
        self
    }

    /// Hosts 1..=`hosts` (at most 10) on one bridge, `192.168.35.(9 + h)/24`.
    pub fn one_site(self, hosts: usize) -> Result<Lan, Error> {
        let mut lan = self.start(hosts)?;
        let switch = lan.prefix.switch();
        lan.make_switch(&switch)?;
        for h in 1..=hosts {
            lan.add_host(&switch, h)?;
        }
        Ok(lan)
    }

    /// Two sites of `hosts` hosts each (at most 10): 1..=hosts on site A (192.168.35.0/24),
    /// 11..=10+hosts on site B (192.168.36.0/24), each host's default route through the router
    /// (.1 on each side). The router forwards unicast; with no multicast routing, the group
    /// stays on its side.
    pub fn two_sites(self, hosts: usize) -> Result<Lan, Error> {
        let mut lan = self.start(hosts)?;
        lan.two_sites = true;
        let (switch_a, switch_b, router) = (
            lan.prefix.switch(),
            lan.prefix.switch_b(),
            lan.prefix.router(),
        );
        lan.make_switch(&switch_a)?;
        lan.make_switch(&switch_b)?;
        lan.make_ns(&router)?;
        let v6 = lan.ipv6_only;
        for (switch, side, gateway) in [
            (&switch_a, "to-a", gateway(v6, 0)),
            (&switch_b, "to-b", gateway(v6, 1)),
        ] {
            // Born in the switch's namespace, its peer moved straight into the router's.
            ip(&[
                "-n", switch, "link", "add", "r", "type", "veth", "peer", "name", side, "netns",
                &router,
            ])?;
            ip(&["-n", switch, "link", "set", "r", "master", "br0"])?;
            ip(&["-n", switch, "link", "set", "r", "up"])?;
            lan.add_address(&router, &gateway, side)?;
            ip(&["-n", &router, "link", "set", side, "up"])?;
        }
        // /proc/sys/net is the namespace's own inside `ip netns exec`.
        let forward = if v6 {
            "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"
        } else {
            "echo 1 > /proc/sys/net/ipv4/ip_forward"
        };
        lan.exec_in(&router, &["sh", "-c", forward], None)?;
        for h in (1..=hosts).chain(SITE_HOSTS + 1..=SITE_HOSTS + hosts) {
            let site = name::site(h);
            let switch = if site == 0 { &switch_a } else { &switch_b };
            let ns = lan.add_host(switch, h)?;
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &gateway(v6, site),
            ])?;
        }
        Ok(lan)
    }

    /// Checks what was asked, sweeps dead processes' LANs (owned LANs), and returns the empty
    /// LAN that the rest fills: dropped on an error, it deletes what was made.
    fn start(self, hosts: usize) -> Result<Lan, Error> {
        let prefix = self.prefix.map_err(Error::Invalid)?;
        if !(1..=SITE_HOSTS).contains(&hosts) {
            return Err(Error::Invalid(format!(
                "{hosts} hosts: a site holds 1 to {SITE_HOSTS}"
            )));
        }
        if self.sweep {
            sweep(&self.stops);
        }
        Ok(Lan {
            prefix,
            hosts: Vec::new(),
            two_sites: false,
            ipv6_only: self.ipv6_only,
            made: Vec::new(),
            keep: false,
        })
    }
}

/// Hosts 1..=n on one bridge, or two sites ([`Builder::two_sites`]): hosts 1..=n on one bridge
/// and 11..=10+n on another, joined by a router that forwards unicast and not multicast. Each
/// bridge is in a namespace of its own, each host is a namespace with `eth0` on its bridge
/// (born in the bridge's namespace, its peer moved straight into the host's), and nothing is
/// attached to the machine's own interfaces. Dropped, it deletes every namespace it made
/// (processes started in them must be stopped first), unless [`Lan::keep`] was called.
pub struct Lan {
    prefix: Prefix,
    /// Host number and namespace.
    hosts: Vec<(usize, String)>,
    two_sites: bool,
    ipv6_only: bool,
    /// Every namespace made, in order.
    made: Vec<String>,
    keep: bool,
}

impl Lan {
    /// A LAN of this process, named `spt<pid>-<n>-*` (`n` counts the process's LANs, so two
    /// alive at once never share a name), deleted on drop. Before it is made, the LANs of
    /// processes that died without deleting theirs (killed by a signal) are deleted.
    pub fn owned() -> Builder {
        Lan::owned_by(std::process::id())
    }

    /// [`Lan::owned`], but on behalf of process `pid` (a script that asked this tool for a LAN
    /// and deletes it with [`delete_owned_by`]; the sweep takes it once `pid` is gone).
    pub fn owned_by(pid: u32) -> Builder {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Builder {
            prefix: Ok(Prefix::owned(pid, NEXT.fetch_add(1, Ordering::Relaxed))),
            sweep: true,
            stops: Vec::new(),
            ipv6_only: false,
        }
    }

    /// A LAN named `<prefix>-*` (make lab's is `sp`: `sp-lan`, `sp-host1`, ...), for one that
    /// must outlive its process ([`Lan::keep`]); [`delete_named`] deletes it later. No sweep
    /// ever touches it. Fails (when built) if a namespace of that name exists already.
    pub fn named(prefix: &str) -> Builder {
        Builder {
            prefix: Prefix::fixed(prefix),
            sweep: false,
            stops: Vec::new(),
            ipv6_only: false,
        }
    }

    /// Leaves the LAN up after it is dropped; its namespaces, for whoever deletes it.
    pub fn keep(mut self) -> Vec<String> {
        self.keep = true;
        self.made.clone()
    }

    /// The prefix of its namespaces' names.
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// Every namespace of the LAN, in the order they were made.
    pub fn namespaces(&self) -> &[String] {
        &self.made
    }

    /// Host `h`'s address ([`name::host_ip`]).
    pub fn ip(h: usize) -> Ipv4Addr {
        name::host_ip(h)
    }

    /// Host `h`'s address on this LAN: [`name::host_ip6`] on an IPv6-only one, else
    /// [`name::host_ip`].
    pub fn addr(&self, h: usize) -> IpAddr {
        if self.ipv6_only {
            IpAddr::V6(name::host_ip6(h))
        } else {
            IpAddr::V4(name::host_ip(h))
        }
    }

    /// Whether the LAN has IPv6 addresses alone ([`Builder::ipv6_only`]).
    pub fn is_ipv6_only(&self) -> bool {
        self.ipv6_only
    }

    /// Host `h`'s namespace.
    ///
    /// # Panics
    /// When this LAN has no host `h`.
    pub fn ns(&self, h: usize) -> &str {
        self.hosts
            .iter()
            .find(|(n, _)| *n == h)
            .map(|(_, ns)| ns.as_str())
            .unwrap_or_else(|| panic!("no host {h} in this LAN"))
    }

    /// The hosts' numbers, in order.
    pub fn hosts(&self) -> impl Iterator<Item = usize> + '_ {
        self.hosts.iter().map(|(h, _)| *h)
    }

    /// Pulls host `h`'s cable out of its switch (`up == false`: its bridge port goes down; the
    /// host keeps its own interface and address) or plugs it back in.
    pub fn set_cable(&self, h: usize, up: bool) -> Result<(), Error> {
        let switch = if name::site(h) == 0 {
            self.prefix.switch()
        } else {
            self.prefix.switch_b()
        };
        if !self.hosts().any(|n| n == h) {
            return Err(Error::Invalid(format!("no host {h} in this LAN")));
        }
        ip(&["-n", &switch, "link", "set", &format!("h{h}"), state(up)]).map(drop)
    }

    /// Cuts the router off site A (its port on site A's switch goes down), or connects it
    /// again (two sites only).
    pub fn set_router(&self, up: bool) -> Result<(), Error> {
        if !self.two_sites {
            return Err(Error::Invalid("this LAN has no router".into()));
        }
        ip(&["-n", &self.prefix.switch(), "link", "set", "r", state(up)]).map(drop)
    }

    /// Runs `f` on a thread inside host `h`'s namespace and returns what it returns.
    pub fn on<T: Send>(&self, h: usize, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
        sys::in_namespace(self.ns(h), f)
    }

    /// Runs `command` (a program and its arguments) inside host `h`'s namespace
    /// (`ip netns exec`), `input` on its standard input; its standard output.
    pub fn exec(&self, h: usize, command: &[&str], input: Option<&str>) -> Result<String, Error> {
        self.exec_in(self.ns(h), command, input)
    }

    fn exec_in(&self, ns: &str, command: &[&str], input: Option<&str>) -> Result<String, Error> {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(command);
        sys::run("ip", &args, input)
    }

    /// A namespace, recorded (for the drop) once it exists, with its loopback up (on an
    /// IPv6-only LAN without 127.0.0.1).
    fn make_ns(&mut self, ns: &str) -> Result<(), Error> {
        ip(&["netns", "add", ns])?;
        self.made.push(ns.into());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        if self.ipv6_only {
            ip(&["-n", ns, "addr", "del", "127.0.0.1/8", "dev", "lo"])?;
            // No duplicate address detection on the interfaces to come, link-local addresses
            // included: neighbour discovery and the router answer at once, as ARP does.
            let no_dad = "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; \
                          echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad";
            self.exec_in(ns, &["sh", "-c", no_dad], None)?;
        }
        Ok(())
    }

    /// `address` (an IPv4 or IPv6 one, without its prefix length) on `dev` in `ns`: /24 or
    /// /64, an IPv6 one without duplicate address detection (usable at once).
    fn add_address(&self, ns: &str, address: &str, dev: &str) -> Result<(), Error> {
        if address.contains(':') {
            let address = format!("{address}/64");
            ip(&["-n", ns, "addr", "add", &address, "dev", dev, "nodad"]).map(drop)
        } else {
            let address = format!("{address}/24");
            ip(&["-n", ns, "addr", "add", &address, "dev", dev]).map(drop)
        }
    }

    /// A namespace holding a bridge `br0` that floods multicast (the switch of one LAN).
    fn make_switch(&mut self, ns: &str) -> Result<(), Error> {
        self.make_ns(ns)?;
        ip(&["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        // Without snooping the bridge floods multicast to every port: no IGMP querier needed.
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", ns, "link", "set", "br0", "up"]).map(drop)
    }

    /// Host `h` on `switch`'s bridge (port `h<h>`): its namespace, `eth0` with its address, the
    /// group's route.
    fn add_host(&mut self, switch: &str, h: usize) -> Result<String, Error> {
        let ns = self.prefix.host(h);
        self.make_ns(&ns)?;
        self.hosts.push((h, ns.clone()));
        let port = format!("h{h}");
        ip(&[
            "-n", switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        ip(&["-n", switch, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", switch, "link", "set", &port, "up"])?;
        self.add_address(&ns, &self.addr(h).to_string(), "eth0")?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        // IPv6 groups are routed on every multicast interface by the kernel itself.
        if !self.ipv6_only {
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(ns)
    }
}

/// The router's address on `site` (0 or 1), of the LAN's family.
fn gateway(ipv6_only: bool, site: usize) -> String {
    if ipv6_only {
        name::GATEWAYS6[site].to_string()
    } else {
        GATEWAYS[site].to_string()
    }
}

fn state(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // The processes in them were stopped first (started after the LAN, they are dropped
        // before it); deleting a namespace takes its interfaces with it.
        for ns in self.made.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// What a clean-up did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// The namespaces deleted.
    pub namespaces: Vec<String>,
    /// The processes killed (namespace, PID): they ran one of the binaries named.
    pub stopped: Vec<(String, u32)>,
    /// The processes left running (namespace, PID, command line): not ours to kill.
    pub left: Vec<(String, u32, String)>,
    /// The namespaces that could not be deleted, and why.
    pub failed: Vec<(String, String)>,
}

/// Deletes the namespaces of the LAN named `prefix` ([`Lan::named`]; the exact names its LANs
/// have, nothing else that starts the same way). A process inside one running one of `stops`
/// is killed by PID first; any other is left alone and reported.
pub fn delete_named(prefix: &str, stops: &[PathBuf]) -> Result<Deleted, Error> {
    let prefix = Prefix::fixed(prefix).map_err(Error::Invalid)?;
    delete_where(|ns| prefix.holds(ns), stops)
}

/// Deletes every LAN made on behalf of process `pid` ([`Lan::owned_by`]), as
/// [`delete_named`] does.
pub fn delete_owned_by(pid: u32, stops: &[PathBuf]) -> Result<Deleted, Error> {
    delete_where(|ns| name::owner(ns) == Some(pid), stops)
}

/// The namespaces of the LAN named `prefix` that exist now.
pub fn existing(prefix: &str) -> Result<Vec<String>, Error> {
    let prefix = Prefix::fixed(prefix).map_err(Error::Invalid)?;
    Ok(sys::namespaces()?
        .into_iter()
        .filter(|ns| prefix.holds(ns))
        .collect())
}

/// Deletes the LANs of processes that no longer exist.
fn sweep(stops: &[PathBuf]) {
    let _ = delete_where(
        |ns| name::owner(ns).is_some_and(|pid| !sys::exists(pid)),
        stops,
    );
}

fn delete_where(select: impl Fn(&str) -> bool, stops: &[PathBuf]) -> Result<Deleted, Error> {
    let mut deleted = Deleted::default();
    for ns in sys::namespaces()?.into_iter().filter(|ns| select(ns)) {
        for pid in sys::pids_in(&ns) {
            if sys::runs_one_of(pid, stops) {
                sys::kill(pid);
                deleted.stopped.push((ns.clone(), pid));
            } else {
                deleted.left.push((ns.clone(), pid, sys::cmdline(pid)));
            }
        }
        match ip(&["netns", "del", &ns]) {
            Ok(_) => deleted.namespaces.push(ns),
            Err(e) => deleted.failed.push((ns, e.to_string())),
        }
    }
    Ok(deleted)
}

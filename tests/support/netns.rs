//! The tests' LANs of network namespaces (root only): superpeer-lan's ([`superpeer_lan::Lan`],
//! tools/lan), named after the test process (`spt<pid>-<n>-*`) and deleted when dropped, even
//! when the test fails. Those of a test process that was killed go before the next LAN is made,
//! and instances of this test build's binary still running in them are killed by PID. Here the
//! builder's errors become panics, as a test wants them.

use std::net::Ipv4Addr;
use std::ops::Deref;

pub use superpeer_lan::is_root;

/// Moves the calling thread into network namespace `ns`: the sockets it opens from now on
/// live there (the rest of the process stays where it was).
pub fn enter(ns: &str) {
    superpeer_lan::enter(ns).unwrap_or_else(|e| panic!("{e}"));
}

/// Hosts 1..=n on one bridge: host `h` is `192.168.35.(9 + h)/24`, as the seed's VMs were.
/// Or two sites ([`Lan::two_sites`]): hosts 1..=n on one bridge and 11..=10+n on another
/// (`192.168.36.(h - 1)/24`), joined by a router that forwards unicast and not multicast.
pub struct Lan(superpeer_lan::Lan);

fn builder() -> superpeer_lan::Builder {
    superpeer_lan::Lan::owned().sweep_stops(super::BIN)
}

impl Lan {
    pub fn new(hosts: usize) -> Lan {
        Lan(builder()
            .one_site(hosts)
            .unwrap_or_else(|e| panic!("make a LAN of {hosts} hosts: {e}")))
    }

    /// [`Lan::new`] with IPv6 addresses alone (`fd00:35::(9 + h)/64`, no IPv4 address in any of
    /// its namespaces, 127.0.0.1 included): [`superpeer_lan::Lan::addr`] gives them.
    pub fn ipv6_only(hosts: usize) -> Lan {
        Lan(builder()
            .ipv6_only()
            .one_site(hosts)
            .unwrap_or_else(|e| panic!("make an IPv6-only LAN of {hosts} hosts: {e}")))
    }

    /// Two sites of `hosts` hosts each: 1..=hosts on site A (192.168.35.0/24), 11..=10+hosts
    /// on site B (192.168.36.0/24), each host's default route through the router.
    pub fn two_sites(hosts: usize) -> Lan {
        Lan(builder()
            .two_sites(hosts)
            .unwrap_or_else(|e| panic!("make two sites of {hosts} hosts: {e}")))
    }

    /// [`Lan::two_sites`] with IPv6 addresses alone.
    pub fn two_sites_ipv6(hosts: usize) -> Lan {
        Lan(builder()
            .ipv6_only()
            .two_sites(hosts)
            .unwrap_or_else(|e| panic!("make two IPv6-only sites of {hosts} hosts: {e}")))
    }

    /// Host `h`'s address: `192.168.35.(9 + h)` for hosts 1..=10 (site A, or the one LAN),
    /// `192.168.36.(h - 1)` for 11 and up (site B).
    pub fn ip(h: usize) -> Ipv4Addr {
        superpeer_lan::Lan::ip(h)
    }

    /// Cuts the router off site A (its port on site A's switch goes down), or connects it.
    pub fn set_router(&self, up: bool) {
        self.0.set_router(up).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Pulls host `h`'s cable out of the switch (`up == false`: its bridge port goes down; the
    /// host keeps its own interface and address) or plugs it back in.
    pub fn set_cable(&self, h: usize, up: bool) {
        self.0.set_cable(h, up).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `f` on a thread inside host `h`'s namespace and returns what it returns.
    pub fn on<T: Send>(&self, h: usize, f: impl FnOnce() -> T + Send) -> T {
        self.0.on(h, f).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Limits what host `h` sends to `mbit` Mbit/s (`tc qdisc add dev eth0 root tbf`).
    pub fn limit_uplink(&self, h: usize, mbit: u32) {
        let rate = format!("{mbit}mbit");
        let tbf = [
            "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "64kb",
            "latency", "100ms",
        ];
        if let Err(e) = self.0.exec(h, &tbf, None) {
            panic!("tc in host-{h}: {e}");
        }
    }

    /// Runs `nft -f -` with `script` inside host `h`'s namespace; panics with nft's error.
    pub fn nft(&self, h: usize, script: &str) {
        if let Err(e) = self.0.exec(h, &["nft", "-f", "-"], Some(script)) {
            panic!("nft -f in host-{h}: {e}\n{script}");
        }
    }

    /// `nft list table <table>` inside host `h`'s namespace.
    pub fn nft_list(&self, h: usize, table: &str) -> String {
        let mut command = vec!["nft", "list", "table"];
        command.extend(table.split_whitespace());
        self.0
            .exec(h, &command, None)
            .unwrap_or_else(|e| panic!("nft list table {table} in host-{h}: {e}"))
    }
}

/// The rest ([`superpeer_lan::Lan::ns`], ...) as the builder has it.
impl Deref for Lan {
    type Target = superpeer_lan::Lan;

    fn deref(&self) -> &superpeer_lan::Lan {
        &self.0
    }
}

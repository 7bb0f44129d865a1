//! A LAN of network namespaces for the lab drills (root only): a bridge in a namespace of its
//! own and one namespace a host, each with `eth0` on the bridge. Everything is created inside
//! those namespaces (each veth is born in the LAN's namespace and its peer moved straight into
//! a host's), nothing is attached to the machine's own interfaces, and everything is deleted
//! when the [`Lan`] is dropped, even when the test fails.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this process may create network namespaces.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `ip` with `args`; panics with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Moves the calling thread into network namespace `ns`: the sockets it opens from now on
/// live there (the rest of the process stays where it was).
pub fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open namespace {ns}: {e}"));
    // SAFETY: a valid descriptor of a network namespace; only this thread changes namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Namespaces of this harness are named `spt<pid>-<n>-...` (`n` counts the LANs of the test
/// process, so two LANs alive at once never share a name): those of test processes that died
/// without cleaning up (killed by a signal) are deleted before a new LAN is made.
const PREFIX: &str = "spt";

fn delete_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // Instances of superpeer still running in it were started by that test: stopped
            // by PID (only those running this very binary), then the namespace goes.
            if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                    let ours = exe.to_string_lossy().trim_end_matches(" (deleted)") == super::BIN;
                    if let (true, Ok(pid)) = (ours, pid.parse::<libc::pid_t>()) {
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Hosts 1..=n on one bridge: host `h` is `192.168.35.(9 + h)/24`, as the seed's VMs were.
/// Or two sites ([`Lan::two_sites`]): hosts 1..=n on one bridge and 11..=10+n on another
/// (`192.168.36.(h - 1)/24`), joined by a router that forwards unicast and not multicast.
pub struct Lan {
    lan: String,
    /// Host number and namespace.
    hosts: Vec<(usize, String)>,
    /// Two sites: the second bridge's namespace and the router's.
    site_b: Option<(String, String)>,
}

/// Site A's router address, and site B's.
const GATEWAYS: [&str; 2] = ["192.168.35.1", "192.168.36.1"];

fn new_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    delete_orphans();
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A namespace holding a bridge `br0` that floods multicast (the switch of one LAN).
fn make_switch(ns: &str) {
    ip(&["netns", "add", ns]);
    ip(&["-n", ns, "link", "set", "lo", "up"]);
    ip(&["-n", ns, "link", "add", "br0", "type", "bridge"]);
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
    ]);
    ip(&["-n", ns, "link", "set", "br0", "up"]);
}

impl Lan {
    /// Two sites of `hosts` hosts each: 1..=hosts on site A (192.168.35.0/24), 11..=10+hosts
    /// on site B (192.168.36.0/24), each host's default route through the router (.1 on each
    /// side). The router forwards unicast; with no multicast routing, the group stays on its
    /// side.
    pub fn two_sites(hosts: usize) -> Lan {
        let prefix = new_prefix();
        let mut made = Lan {
            lan: format!("{prefix}-lan"),
            hosts: Vec::new(),
            site_b: Some((format!("{prefix}-lanb"), format!("{prefix}-router"))),
        };
        let (lan_b, router) = made.site_b.clone().expect("two sites");
        make_switch(&made.lan);
        make_switch(&lan_b);
        ip(&["netns", "add", &router]);
        ip(&["-n", &router, "link", "set", "lo", "up"]);
        for (switch, side, gateway) in [
            (&made.lan, "to-a", GATEWAYS[0]),
            (&lan_b, "to-b", GATEWAYS[1]),
        ] {
            ip(&[
                "-n", switch, "link", "add", "r", "type", "veth", "peer", "name", side, "netns",
                &router,
            ]);
            ip(&["-n", switch, "link", "set", "r", "master", "br0"]);
            ip(&["-n", switch, "link", "set", "r", "up"]);
            ip(&[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                side,
            ]);
            ip(&["-n", &router, "link", "set", side, "up"]);
        }
        // /proc/sys/net is the namespace's own inside `ip netns exec`.
        let forward = Command::new("ip")
            .args(["netns", "exec", &router, "sh", "-c"])
            .arg("echo 1 > /proc/sys/net/ipv4/ip_forward")
            .status()
            .expect("run sh in the router's namespace");
        assert!(forward.success(), "the router does not forward");
        for h in (1..=hosts).chain(11..=10 + hosts) {
            let (switch, gateway) = if h <= 10 {
                (made.lan.clone(), GATEWAYS[0])
            } else {
                (lan_b.clone(), GATEWAYS[1])
            };
            let ns = made.add_host(&prefix, &switch, h);
            ip(&["-n", &ns, "route", "add", "default", "via", gateway]);
        }
        made
    }

    /// Cuts the router off site A (its port on site A's switch goes down), or connects it.
    pub fn set_router(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.lan, "link", "set", "r", state]);
    }

    /// Host `h` on `switch`'s bridge: its namespace, `eth0` with its address, the group's
    /// route.
    fn add_host(&mut self, prefix: &str, switch: &str, h: usize) -> String {
        let ns = format!("{prefix}-h{h}");
        ip(&["netns", "add", &ns]);
        self.hosts.push((h, ns.clone()));
        let port = format!("h{h}");
        ip(&[
            "-n", switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", switch, "link", "set", &port, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", Lan::ip(h)),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        ns
    }

    pub fn new(hosts: usize) -> Lan {
        let prefix = new_prefix();
        let mut made = Lan {
            lan: format!("{prefix}-lan"),
            hosts: Vec::new(),
            site_b: None,
        };
        make_switch(&made.lan);
        let lan = made.lan.clone();
        for h in 1..=hosts {
            made.add_host(&prefix, &lan, h);
        }
        made
    }

    /// Host `h`'s address: `192.168.35.(9 + h)` for hosts 1..=10 (site A, or the one LAN),
    /// `192.168.36.(h - 1)` for 11 and up (site B).
    pub fn ip(h: usize) -> Ipv4Addr {
        if h <= 10 {
            Ipv4Addr::new(192, 168, 35, 9 + h as u8)
        } else {
            Ipv4Addr::new(192, 168, 36, h as u8 - 1)
        }
    }

    /// Host `h`'s namespace.
    pub fn ns(&self, h: usize) -> &str {
        self.hosts
            .iter()
            .find(|(n, _)| *n == h)
            .map(|(_, ns)| ns.as_str())
            .unwrap_or_else(|| panic!("no host {h} in this lab"))
    }

    /// Pulls host `h`'s cable out of the switch (`up == false`: its bridge port goes down; the
    /// host keeps its own interface and address) or plugs it back in.
    pub fn set_cable(&self, h: usize, up: bool) {
        let port = format!("h{h}");
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.lan, "link", "set", &port, state]);
    }

    /// Runs `f` on a thread inside host `h`'s namespace and returns what it returns.
    pub fn on<T: Send>(&self, h: usize, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.ns(h);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(ns);
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // The processes in them are stopped first (they were started after the LAN, so they
        // are dropped before it); deleting a namespace takes its interfaces with it.
        let site_b = self.site_b.iter().flat_map(|(lan, router)| [lan, router]);
        for ns in self
            .hosts
            .iter()
            .map(|(_, ns)| ns)
            .chain([&self.lan])
            .chain(site_b)
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

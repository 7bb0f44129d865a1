//! What a LAN's namespaces are called and which addresses its hosts have: pure functions, so
//! that who owns a namespace, and which ones a clean-up may touch, is decided by tested code.
//!
//! A LAN's namespaces share a prefix: `<prefix>-lan` (site A's switch), `<prefix>-lanb` (site
//! B's), `<prefix>-router`, `<prefix>-host<h>`. A LAN that belongs to a process is prefixed
//! `spt<pid>-<n>`; once that process is gone, the next LAN made by anyone deletes it. Any other
//! prefix (make lab's `sp`) is the caller's to find and delete.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The start of every owned prefix: `spt<pid>-<n>`.
const OWNED: &str = "spt";

/// The shared start of one LAN's namespace names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// LAN `n` of process `pid` (`spt<pid>-<n>`).
    pub fn owned(pid: u32, n: u32) -> Prefix {
        Prefix(format!("{OWNED}{pid}-{n}"))
    }

    /// A prefix of the caller's choosing: letters, digits and `-`, at most 32 of them, starting
    /// with a letter, and not one a process's LANs could have (`spt` then a digit), so that no
    /// sweep of dead processes' LANs ever takes it for one.
    pub fn fixed(prefix: &str) -> Result<Prefix, String> {
        let valid = prefix.len() <= 32
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "namespace prefix {prefix:?}: use 1 to 32 lowercase letters, digits and '-', starting with a letter"
            ));
        }
        if prefix
            .strip_prefix(OWNED)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        {
            return Err(format!(
                "namespace prefix {prefix:?} looks like a process's ({OWNED}<pid>-): choose another"
            ));
        }
        Ok(Prefix(prefix.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Site A's switch (or the one LAN's).
    pub fn switch(&self) -> String {
        format!("{}-lan", self.0)
    }

    /// Site B's switch.
    pub fn switch_b(&self) -> String {
        format!("{}-lanb", self.0)
    }

    pub fn router(&self) -> String {
        format!("{}-router", self.0)
    }

    pub fn host(&self, h: usize) -> String {
        format!("{}-host{h}", self.0)
    }

    /// Whether `name` is one of this prefix's namespaces (and not merely a name that starts
    /// the same way: `sp` holds `sp-host1`, not `sp-atk-srv` nor `sp-host1x`).
    pub fn holds(&self, name: &str) -> bool {
        let Some(rest) = name
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('-'))
        else {
            return false;
        };
        match rest.strip_prefix("host") {
            Some(h) => !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()),
            None => matches!(rest, "lan" | "lanb" | "router"),
        }
    }
}

/// The process a namespace belongs to: `spt4242-0-host1` is process 4242's.
pub fn owner(name: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix(OWNED)?.split_once('-')?;
    let (n, _) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n))
        .then(|| pid.parse().ok())
        .flatten()
}

/// The names in `ip netns list`'s output (`sp-host1 (id: 3)`, or a bare name).
pub fn netns_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The most hosts a site holds: hosts 1..=10 on site A, 11..=20 on site B.
pub const SITE_HOSTS: usize = 10;

/// Host `h`'s address: `192.168.35.(9 + h)` for hosts 1..=10 (site A, or the one LAN), as the
/// seed's VMs had, `192.168.36.(h - 1)` for 11..=20 (site B).
///
/// # Panics
/// For a host number out of 1..=20.
pub fn host_ip(h: usize) -> Ipv4Addr {
    assert!(
        (1..=2 * SITE_HOSTS).contains(&h),
        "host {h}: hosts are numbered 1..=20"
    );
    let h = h as u8;
    if h <= SITE_HOSTS as u8 {
        Ipv4Addr::new(192, 168, 35, 9 + h)
    } else {
        Ipv4Addr::new(192, 168, 36, h - 1)
    }
}

/// Site A's router address, and site B's.
pub const GATEWAYS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 35, 1),
    Ipv4Addr::new(192, 168, 36, 1),
];

/// Whether `ip` is in a LAN's address plan (192.168.35.0/24, 192.168.36.0/24): inside one of
/// its namespaces, a host or the router; outside them, nothing of this project's.
pub fn is_lan_address(ip: Ipv4Addr) -> bool {
    matches!(ip.octets(), [192, 168, 35 | 36, _])
}

/// Host `h`'s address on an IPv6-only LAN ([`crate::Builder::ipv6_only`]): `fd00:35::(9 + h)`
/// (in hex) for hosts 1..=10, `fd00:36::(h - 1)` for 11..=20: unique local addresses, the
/// IPv4 plan's numbers.
///
/// # Panics
/// For a host number out of 1..=20.
pub fn host_ip6(h: usize) -> Ipv6Addr {
    let v4 = host_ip(h).octets();
    // 35 -> 0x35: the site reads the same in both plans.
    let site = 0x35 + u16::from(v4[2] - 35);
    Ipv6Addr::new(0xfd00, site, 0, 0, 0, 0, 0, u16::from(v4[3]))
}

/// The router's address on each side of an IPv6-only two-site LAN.
pub const GATEWAYS6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x35, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0xfd00, 0x36, 0, 0, 0, 0, 0, 1),
];

/// Which site host `h` is on: 0 (A) or 1 (B).
pub fn site(h: usize) -> usize {
    usize::from(h > SITE_HOSTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_prefixes_name_their_process() {
        let p = Prefix::owned(4242, 3);
        assert_eq!(p.as_str(), "spt4242-3");
        for name in [p.switch(), p.switch_b(), p.router(), p.host(1), p.host(12)] {
            assert_eq!(owner(&name), Some(4242), "{name}");
            assert!(p.holds(&name), "{name}");
        }
    }

    #[test]
    fn only_owned_names_have_an_owner() {
        for name in [
            "sp-lan",
            "sp-host1",
            "sp-atk-srv-77",
            "spt-1-lan",
            "sptx1-0-lan",
            "spt12-lan",
            "spt12-x-lan",
            "spt12-0",
            "spt99999999999-0-lan",
            "",
        ] {
            assert_eq!(owner(name), None, "{name:?}");
        }
        assert_eq!(owner("spt7-0-anything"), Some(7));
    }

    #[test]
    fn a_prefix_holds_its_own_namespaces_only() {
        let lab = Prefix::fixed("sp").unwrap();
        for name in ["sp-lan", "sp-lanb", "sp-router", "sp-host1", "sp-host10"] {
            assert!(lab.holds(name), "{name}");
        }
        for name in [
            "sp",
            "sp-",
            "sp-host",
            "sp-host1x",
            "sp-hostx",
            "sp-lan2",
            "sp-atk-srv-77",
            "spx-lan",
            "splab-host1",
            "spt1-0-host1",
            "xsp-lan",
        ] {
            assert!(!lab.holds(name), "{name}");
        }
        // Two LANs of one process never hold each other's namespaces.
        assert!(!Prefix::owned(5, 1).holds("spt5-10-host1"));
        assert!(!Prefix::owned(5, 1).holds(&Prefix::owned(5, 0).switch()));
    }

    #[test]
    fn a_fixed_prefix_is_plain_and_never_a_process_s() {
        assert!(Prefix::fixed("sp").is_ok());
        assert!(Prefix::fixed("splab").is_ok());
        assert!(Prefix::fixed("spt").is_ok());
        assert!(Prefix::fixed("sptx").is_ok());
        for bad in [
            "", "-sp", "1sp", "Sp", "sp_lab", "sp lab", "sp/lab", "spt4", "spt42-0",
        ] {
            assert!(Prefix::fixed(bad).is_err(), "{bad:?}");
        }
        assert!(Prefix::fixed(&"s".repeat(33)).is_err());
    }

    #[test]
    fn ip_netns_list_gives_names() {
        let text = "sp-host2 (id: 4)\nsp-host1 (id: 3)\nspt5-0-lan\n\n";
        assert_eq!(netns_list(text), ["sp-host2", "sp-host1", "spt5-0-lan"]);
        assert!(netns_list("").is_empty());
    }

    #[test]
    fn hosts_have_the_seed_s_addresses() {
        assert_eq!(host_ip(1), Ipv4Addr::new(192, 168, 35, 10));
        assert_eq!(host_ip(3), Ipv4Addr::new(192, 168, 35, 12));
        assert_eq!(host_ip(10), Ipv4Addr::new(192, 168, 35, 19));
        assert_eq!(host_ip(11), Ipv4Addr::new(192, 168, 36, 10));
        assert_eq!(host_ip(20), Ipv4Addr::new(192, 168, 36, 19));
        assert_eq!((site(10), site(11)), (0, 1));
        for h in 1..=20 {
            assert!(is_lan_address(host_ip(h)));
        }
        assert!(GATEWAYS.into_iter().all(is_lan_address));
        for other in [
            [127, 0, 0, 1],
            [10, 77, 0, 1],
            [192, 168, 34, 10],
            [192, 168, 37, 1],
        ] {
            assert!(!is_lan_address(Ipv4Addr::from(other)), "{other:?}");
        }
    }

    #[test]
    #[should_panic(expected = "hosts are numbered")]
    fn host_zero_has_no_address() {
        host_ip(0);
    }
}

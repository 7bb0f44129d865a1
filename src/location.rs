//! Locations: how the `ip:port` of a node (or a peer) is written.
//!
//! A supernode uses a location as an index key, as the address a request must come from, and
//! as the address it connects to for health checks. So each address has exactly one spelling:
//! were `10.77.0.03`, `0xa.77.0.3`, `172818435` and `10.77.3` taken (the C resolver reads
//! them all as `10.77.0.3`), one host and one port would be as many nodes as it has spellings.
//! And a request never makes a supernode ask the resolver anything.
//!
//! - [`parse`]: a location a request gives (registration, heartbeat, leave): `ip:port` only.
//! - [`HostPort`]: a location the operator's config gives (`NODE_LOCATION`, `PEERS`): the
//!   same, or `name:port` for the operator's own resolver.
//!
//! Locations in datagrams (the seed's supernodes may send names) keep
//! [`crate::wire::check_location`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::id::truncate;

/// The answer to a host name where an address must be (the words the API promises).
pub const NO_NAMES: &str = "a location is ip:port; names are not resolved";

/// Why an IPv6 link-local address (`fe80::/10`) is no location: it means something only with
/// the zone (the interface) of the host that reads it, and each host's zones are its own.
const LINK_LOCAL: &str = "give the host's global or unique local (fd00::/8) address";

/// Parses a location from a request: `ip:port`, the IP exactly as Rust's `std::net` parses
/// and prints it (IPv4 as `10.0.0.7`; IPv6 as `[fd00::7]`, lower case, `::` where it
/// belongs), the port plain decimal from 1 to 65535 (no sign, no leading zero). Refused too:
/// an IPv4 host written as IPv6 (`[::ffff:10.0.0.7]`), and addresses that are not one
/// host's (`0.0.0.0`, `[::]`, multicast, broadcast), which reach the supernode itself or
/// nobody. The error says what is wrong, for a 400.
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    let shown = truncate(text, 80);
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("location {shown:?} is not ip:port"));
    };
    let port = parse_port(port).ok_or_else(|| {
        format!("location {shown:?}: the port must be a number from 1 to 65535, written plainly")
    })?;
    let ip = parse_ip(host).map_err(|why| format!("location {shown:?}: {why}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A port as written one way only: decimal digits, no sign, no leading zero, 1 to 65535.
fn parse_port(text: &str) -> Option<u16> {
    let plain = !text.is_empty()
        && text.len() <= 5
        && !text.starts_with('0')
        && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

/// The host part of an `ip:port`, when it is one host's address in its one spelling.
fn parse_ip(host: &str) -> Result<IpAddr, String> {
    let ip = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = inner.parse().map_err(|_| {
            if inner.contains('%') {
                format!("{host}: a location carries no zone id; {LINK_LOCAL}")
            } else {
                NO_NAMES.to_string()
            }
        })?;
        if let Some(v4) = ip.to_ipv4_mapped() {
            return Err(format!("{host} is the IPv4 address {v4}: write it as {v4}"));
        }
        if ip.is_unicast_link_local() {
            return Err(format!(
                "{host} is link-local, which needs a zone id; {LINK_LOCAL}"
            ));
        }
        if ip.to_string() != inner {
            return Err(format!("{host} is written [{ip}]"));
        }
        IpAddr::V6(ip)
    } else {
        match host.parse::<Ipv4Addr>() {
            // std takes no leading zeros and exactly four parts, so this is its one spelling
            // (checked anyway: the rule is "as it prints").
            Ok(ip) if ip.to_string() == host => IpAddr::V4(ip),
            _ if host.parse::<Ipv6Addr>().is_ok() => {
                return Err(format!("an IPv6 address goes in brackets: [{host}]:port"));
            }
            _ => return Err(NO_NAMES.to_string()),
        }
    };
    let one_host =
        !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::V4(Ipv4Addr::BROADCAST);
    if one_host {
        Ok(ip)
    } else {
        Err(format!("{ip} is not the address of one host"))
    }
}

/// A location from the operator's config: `ip:port` as [`parse`] takes it, or `name:port`,
/// which the operator's resolver answers (the config is the operator's; a request is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPort {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

impl HostPort {
    /// Reads `ip:port` or `name:port`. A name is letters, digits, `-` and `_` in dot-separated
    /// labels (at most 63 bytes each, 253 in all), and its last label is not a number: a
    /// resolver reads `10.77.3`, `172818435` or `0xa.77.0.3` as an address, so text like that
    /// must be an address as [`parse`] takes it.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let shown = truncate(text, 80);
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("expected ip:port or name:port, found {shown:?}"));
        };
        let looks_like_an_address = host.starts_with('[')
            || host.contains(':')
            || host.rsplit('.').next().is_some_and(is_number);
        if looks_like_an_address {
            return parse(text).map(HostPort::Addr);
        }
        let port = parse_port(port).ok_or_else(|| {
            format!("{shown:?}: the port must be a number from 1 to 65535, written plainly")
        })?;
        if !is_host_name(host) {
            return Err(format!(
                "{shown:?}: {:?} is neither an IP address nor a host name",
                truncate(host, 80)
            ));
        }
        Ok(HostPort::Name {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPort::Addr(addr) => write!(f, "{addr}"),
            HostPort::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A label the C library's `inet_aton` reads as a number: decimal (octal with a leading 0
/// included) or `0x` hex.
fn is_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_address() {
        for (good, addr) in [
            ("10.77.0.3:80", "10.77.0.3:80"),
            ("127.0.0.1:65535", "127.0.0.1:65535"),
            ("192.168.1.10:1", "192.168.1.10:1"),
            ("[::1]:5000", "[::1]:5000"),
            ("[fd00::7]:8000", "[fd00::7]:8000"),
            ("[2001:db8::a:b]:443", "[2001:db8::a:b]:443"),
        ] {
            let parsed = parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(parsed.to_string(), addr, "{good}");
            assert_eq!(
                parsed.to_string(),
                good,
                "the one spelling is the canonical one"
            );
        }
    }

    #[test]
    fn aliases_names_and_junk_are_refused() {
        for bad in [
            // Aliases of 10.77.0.3 that the C resolver takes.
            "10.77.0.03:80",
            "010.77.0.3:80",
            "0xa.77.0.3:80",
            "0XA.77.0.3:80",
            "172818435:80",
            "10.77.3:80",
            "10.5046275:80",
            "[::ffff:10.77.0.3]:80",
            "[::ffff:a4d:3]:80",
            "[10.77.0.3]:80",
            "10.77.0.3.:80",
            " 10.77.0.3:80",
            "10.77.0.3 :80",
            // IPv6 written another way than it prints.
            "[FD00::7]:80",
            "[fd00:0::7]:80",
            "[fd00:0:0:0:0:0:0:7]:80",
            "[0:0:0:0:0:0:0:1]:80",
            "[fe80::1%2]:80",
            "[fe80::1%eth0]:80",
            // Link-local: meaningless without a zone, which a location never carries.
            "[fe80::1]:80",
            "::1:80",
            "[::1:80",
            // Ports written another way, or out of range.
            "10.77.0.3:080",
            "10.77.0.3:+80",
            "10.77.0.3:0",
            "10.77.0.3:65536",
            "10.77.0.3:99999999999999999999",
            "10.77.0.3:",
            "10.77.0.3: 80",
            "10.77.0.3:8_0",
            // Names, resolvable or not.
            "localhost:8000",
            "host-3.lan:80",
            "a_b:1",
            // Not one host.
            "0.0.0.0:80",
            "[::]:80",
            "239.1.2.3:80",
            "[ff02::1]:80",
            "255.255.255.255:80",
            // Junk.
            "",
            ":80",
            "10.77.0.3",
            "a;b:80",
            "http://10.77.0.3:80",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was taken as {:?}", parse(bad));
        }
    }

    #[test]
    fn a_name_is_refused_in_the_promised_words() {
        for name in ["localhost:8000", "10.77.0.03:80", "0xa.77.0.3:80"] {
            let error = parse(name).unwrap_err();
            assert!(error.contains(NO_NAMES), "{error}");
        }
        let mapped = parse("[::ffff:10.77.0.3]:80").unwrap_err();
        assert!(mapped.contains("write it as 10.77.0.3"), "{mapped}");
        for zoned in ["[fe80::1%eth0]:80", "[fe80::1]:80"] {
            let error = parse(zoned).unwrap_err();
            assert!(error.contains("unique local (fd00::/8)"), "{error}");
        }
        let long = parse(&format!("{}:80", "a".repeat(10_000))).unwrap_err();
        assert!(long.len() < 300, "the error quotes at most 80 characters");
    }

    #[test]
    fn config_takes_names_and_only_canonical_addresses() {
        assert_eq!(
            HostPort::parse("10.0.0.7:4321"),
            Ok(HostPort::Addr("10.0.0.7:4321".parse().unwrap()))
        );
        assert_eq!(
            HostPort::parse("[fd00::7]:4321"),
            Ok(HostPort::Addr("[fd00::7]:4321".parse().unwrap()))
        );
        for (name, host) in [
            ("localhost:8000", "localhost"),
            ("supernode-b.site2.lan:4321", "supernode-b.site2.lan"),
            ("peer_1:4321", "peer_1"),
            ("3com.example:80", "3com.example"),
            ("10.77.0.x:80", "10.77.0.x"),
        ] {
            let parsed = HostPort::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                parsed,
                HostPort::Name {
                    host: host.into(),
                    port: name.rsplit_once(':').unwrap().1.parse().unwrap()
                }
            );
            assert_eq!(parsed.to_string(), name);
        }
        for bad in [
            "10.77.0.03:80",
            "0xa.77.0.3:80",
            "172818435:80",
            "10.77.3:80",
            "a.0x1f:80",
            "[::ffff:10.77.0.3]:80",
            "localhost",
            "localhost:0",
            "localhost:080",
            ":4321",
            "-a:1",
            "a-.b:1",
            "a..b:1",
            "a b:1",
            "a/b:1",
            "0.0.0.0:80",
        ] {
            assert!(
                HostPort::parse(bad).is_err(),
                "{bad:?} was taken as {:?}",
                HostPort::parse(bad)
            );
        }
    }
}

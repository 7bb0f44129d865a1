//! The subcommands' options (`--key value` pairs) and the address checks: every subcommand
//! talks to loopback only (or to the hosts of a LAN of namespaces, the attack's, whose
//! addresses exist only inside the namespaces `sp-bench lan` makes for `scripts/attack.sh`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

pub type Res<T> = Result<T, String>;

pub struct Opts(HashMap<String, String>);

impl Opts {
    pub fn parse(args: &[String]) -> Res<Opts> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, found {key:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Opts(map))
    }

    pub fn str(&self, key: &str) -> Res<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Res<T> {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: not a number: {v:?}")),
            None => default.ok_or_else(|| format!("--{key} is required")),
        }
    }

    /// `--addr host:port`: loopback or a LAN of namespaces' (192.168.35.0/24, 192.168.36.0/24).
    pub fn addr(&self) -> Res<SocketAddr> {
        let text = self.str("addr")?;
        let addr: SocketAddr = text
            .parse()
            .map_err(|_| format!("--addr: not host:port: {text:?}"))?;
        if !addr.ip().is_loopback() && !in_a_lan(addr.ip()) {
            return Err(format!(
                "--addr {addr}: only loopback addresses (or a LAN of namespaces', 192.168.35-36.x) are allowed"
            ));
        }
        Ok(addr)
    }

    /// `--addrs host:port,...`: loopback addresses only.
    pub fn addrs(&self) -> Res<Vec<SocketAddr>> {
        self.str("addrs")?
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|text| {
                let addr: SocketAddr = text
                    .parse()
                    .map_err(|_| format!("--addrs: not host:port: {text:?}"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "--addrs {addr}: only loopback addresses are allowed"
                    ));
                }
                Ok(addr)
            })
            .collect()
    }
}

fn in_a_lan(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(ip) if superpeer_lan::name::is_lan_address(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Res<Opts> {
        Opts::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn pairs_numbers_and_defaults() {
        let o = opts(&["--n", "5", "--path", "/x"]).unwrap();
        assert_eq!(o.num::<u32>("n", None), Ok(5));
        assert_eq!(o.num::<u32>("m", Some(7)), Ok(7));
        assert!(o.num::<u32>("m", None).is_err());
        assert_eq!(o.str("path"), Ok("/x"));
        assert!(opts(&["n", "5"]).is_err());
        assert!(opts(&["--n"]).is_err());
    }

    #[test]
    fn only_loopback_or_the_lab() {
        assert!(opts(&["--addr", "127.0.0.1:80"]).unwrap().addr().is_ok());
        assert!(
            opts(&["--addr", "192.168.35.10:80"])
                .unwrap()
                .addr()
                .is_ok()
        );
        assert!(opts(&["--addr", "10.77.0.1:80"]).unwrap().addr().is_err());
        assert!(opts(&["--addr", "10.0.0.1:80"]).unwrap().addr().is_err());
        assert!(
            opts(&["--addrs", "127.0.0.1:1,127.0.0.2:2"])
                .unwrap()
                .addrs()
                .is_ok()
        );
        assert!(
            opts(&["--addrs", "127.0.0.1:1,8.8.8.8:53"])
                .unwrap()
                .addrs()
                .is_err()
        );
    }
}

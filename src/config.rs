//! Configuration: `.env` text, then the process environment over it, then typed and validated.
//!
//! [`parse_env`] reads the seed's `.env` format from any reader, so tests feed it strings.
//! [`Settings`] layers the environment over the file (the environment wins; an empty value
//! counts as unset). [`Config::from_settings`] checks every key once, at start-up, and names the
//! key in its error, so a running instance never meets a bad value.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// Parses `.env` text: `KEY=VALUE` lines, `#` comments, blank lines, an optional `export `,
/// values in single or double quotes, and ` #` comments after unquoted values.
pub fn parse_env(reader: impl BufRead) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line =
            line.map_err(|e| ConfigError::new(format!("line {}", number + 1), e.to_string()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::new(
                format!("line {}", number + 1),
                format!("expected KEY=VALUE, found {line:?}"),
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::new(
                format!("line {}", number + 1),
                format!("invalid key {key:?}"),
            ));
        }
        pairs.push((key.to_string(), unquote(value.trim())));
    }
    Ok(pairs)
}

fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote)
            && let Some(end) = rest.find(quote)
        {
            return rest[..end].to_string();
        }
    }
    match value.find(" #") {
        Some(comment) => value[..comment].trim_end().to_string(),
        None => value.to_string(),
    }
}

/// Raw key/value settings: the process environment layered over a `.env` file.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    file: HashMap<String, String>,
    env: HashMap<String, String>,
}

impl Settings {
    /// Reads `file` (when given) and captures the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let file_pairs = match file {
            Some(path) => {
                let opened = std::fs::File::open(path).map_err(|e| {
                    ConfigError::new("CONFIG", format!("cannot read {}: {e}", path.display()))
                })?;
                parse_env(std::io::BufReader::new(opened)).map_err(|e| {
                    ConfigError::new(format!("{} {}", path.display(), e.key), e.message)
                })?
            }
            None => Vec::new(),
        };
        Ok(Settings::from_pairs(file_pairs, std::env::vars()))
    }

    /// Settings from explicit pairs: `env` wins over `file`.
    pub fn from_pairs(
        file: impl IntoIterator<Item = (String, String)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Settings {
        Settings {
            file: file.into_iter().collect(),
            env: env.into_iter().collect(),
        }
    }

    /// The value of `key`, from the environment first; empty values count as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        [&self.env, &self.file]
            .into_iter()
            .filter_map(|map| map.get(key))
            .map(|value| value.trim())
            .find(|value| !value.is_empty())
    }

    fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|e| ConfigError::new(key, format!("invalid value {text:?}: {e}"))),
        }
    }

    fn millis(&self, key: &str, default_ms: u64, min_ms: u64) -> Result<Duration, ConfigError> {
        let ms = self.parse_or(key, default_ms)?;
        if ms < min_ms {
            return Err(ConfigError::new(
                key,
                format!("must be at least {min_ms} ms"),
            ));
        }
        Ok(Duration::from_millis(ms))
    }

    fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => Err(ConfigError::new(
                key,
                format!("expected true or false, found {other:?}"),
            )),
        }
    }

    /// The log level (`LOG_LEVEL`, default `info`).
    pub fn log_level(&self) -> Result<log::LevelFilter, ConfigError> {
        self.parse_or("LOG_LEVEL", log::LevelFilter::Info)
    }
}

/// Which program an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Supernode,
    Node,
}

/// Settings of the HTTP API, common to both roles.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `LHOST:LPORT`: where the API listens. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// `HTTP_WORKERS`: threads answering requests (a remote search holds one while it waits).
    pub workers: usize,
    /// `MAX_BODY_BYTES`: the largest request body accepted (a registration with its list).
    pub max_body: u64,
    /// `HTTP_READ_TIMEOUT_MS`: the longest wait for the next bytes from a client: a body that
    /// stalls fails, a connection idle between requests is closed.
    pub read_timeout: Duration,
}

/// A supernode's settings.
#[derive(Debug, Clone)]
pub struct SupernodeConfig {
    pub http: HttpConfig,
    /// `MULTICAST_LOCATION`: the supernodes' group and port.
    pub group: SocketAddrV4,
    /// `MULTICAST_INTERFACE`: the interface address the group is joined and sent on.
    pub interface: Ipv4Addr,
    /// `MULTICAST_TTL`: hops a datagram may take; 1 keeps it on the local network.
    pub ttl: u32,
    /// `MULTICAST_GROUP_SIZE`: supernodes in the group, this one included; 0 = unknown.
    pub group_size: usize,
    /// `SEARCH_TIMEOUT_MS`: the longest a remote search waits for answers.
    pub search_timeout: Duration,
    /// `SEARCH_RETRY_MS`: how often an unanswered query is sent again within the time-out.
    pub search_retry: Duration,
    /// `LIVENESS_PERIOD_MS`: time between two health sweeps of the registered nodes.
    pub liveness_period: Duration,
    /// `LIVENESS_MISSES`: missed checks in a row after which a node is removed.
    pub liveness_misses: u32,
    /// `HEALTH_TIMEOUT_MS`: how long one health check may take.
    pub health_timeout: Duration,
    /// `HEALTH_CONCURRENCY`: health checks run at once.
    pub health_concurrency: usize,
}

/// A node's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub http: HttpConfig,
    /// `SUPERNODE_ENDPOINT`: base URLs of the supernodes, in fail-over order.
    pub supernodes: Vec<String>,
    /// `RESOURCE_PATH`: the folder of the node's files.
    pub resource_path: PathBuf,
    /// `NODE_NAME`: the name registered with the supernode (default: a fresh UUID).
    pub name: Option<String>,
    /// `NODE_LOCATION`: the `host:port` announced to the supernode (default: the bound address).
    pub location: Option<String>,
    /// `HEARTBEAT_MS`: time between two heartbeats to the supernode.
    pub heartbeat: Duration,
    /// `REGISTER_RETRY_MAX_MS`: the longest back-off between two registration attempts.
    pub register_retry_max: Duration,
    /// `SUPERNODE_TIMEOUT_MS`: how long a request to the supernode may take.
    pub supernode_timeout: Duration,
    /// `RESCAN_MS`: how often the folder is looked at again for changed files; 0 = never.
    pub rescan: Duration,
}

/// A validated configuration for one instance.
#[derive(Debug, Clone)]
pub enum Config {
    Supernode(SupernodeConfig),
    Node(NodeConfig),
}

impl Config {
    /// Checks every key the role needs. `role` overrides `IS_SUPERNODE` when given.
    pub fn from_settings(settings: &Settings, role: Option<Role>) -> Result<Config, ConfigError> {
        let role = match role {
            Some(role) => role,
            None if settings.flag("IS_SUPERNODE")? => Role::Supernode,
            None => Role::Node,
        };
        let http = http_config(settings)?;
        Ok(match role {
            Role::Supernode => Config::Supernode(supernode_config(settings, http)?),
            Role::Node => Config::Node(node_config(settings, http)?),
        })
    }
}

fn http_config(settings: &Settings) -> Result<HttpConfig, ConfigError> {
    let host: IpAddr = settings.parse_or("LHOST", IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let port: u16 = settings.parse_or("LPORT", 5000)?;
    let workers: usize = settings.parse_or("HTTP_WORKERS", 16)?;
    if !(1..=1024).contains(&workers) {
        return Err(ConfigError::new(
            "HTTP_WORKERS",
            "must be between 1 and 1024",
        ));
    }
    Ok(HttpConfig {
        bind: SocketAddr::new(host, port),
        workers,
        max_body: settings.parse_or("MAX_BODY_BYTES", 64 << 20)?,
        read_timeout: settings.millis("HTTP_READ_TIMEOUT_MS", 10_000, 100)?,
    })
}

fn supernode_config(settings: &Settings, http: HttpConfig) -> Result<SupernodeConfig, ConfigError> {
    let group = match settings.get("MULTICAST_LOCATION") {
        None => SocketAddrV4::new(Ipv4Addr::new(230, 0, 0, 0), 4321),
        Some(text) => text.parse().map_err(|_| {
            ConfigError::new(
                "MULTICAST_LOCATION",
                format!("expected group:port, found {text:?}"),
            )
        })?,
    };
    if !group.ip().is_multicast() || group.port() == 0 {
        return Err(ConfigError::new(
            "MULTICAST_LOCATION",
            format!("{group} is not a multicast group with a port"),
        ));
    }
    // The safety default: send where the API listens, so a cluster on 127.0.0.1 stays on it.
    let default_interface = match http.bind.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_multicast() => ip,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let ttl = settings.parse_or("MULTICAST_TTL", 1u32)?;
    if !(1..=255).contains(&ttl) {
        return Err(ConfigError::new(
            "MULTICAST_TTL",
            "must be between 1 and 255",
        ));
    }
    let search_timeout = settings.millis("SEARCH_TIMEOUT_MS", 2000, 1)?;
    let search_retry = settings.millis("SEARCH_RETRY_MS", 250, 0)?;
    let health_concurrency = settings.parse_or("HEALTH_CONCURRENCY", 64usize)?;
    if health_concurrency == 0 {
        return Err(ConfigError::new("HEALTH_CONCURRENCY", "must be at least 1"));
    }
    let liveness_misses = settings.parse_or("LIVENESS_MISSES", 2u32)?;
    if liveness_misses == 0 {
        return Err(ConfigError::new("LIVENESS_MISSES", "must be at least 1"));
    }
    Ok(SupernodeConfig {
        group,
        interface: settings.parse_or("MULTICAST_INTERFACE", default_interface)?,
        ttl,
        group_size: settings.parse_or("MULTICAST_GROUP_SIZE", 0)?,
        search_timeout,
        search_retry,
        liveness_period: settings.millis("LIVENESS_PERIOD_MS", 5000, 10)?,
        liveness_misses,
        health_timeout: settings.millis("HEALTH_TIMEOUT_MS", 2000, 1)?,
        health_concurrency,
        http,
    })
}

fn node_config(settings: &Settings, http: HttpConfig) -> Result<NodeConfig, ConfigError> {
    let endpoints = settings
        .get("SUPERNODE_ENDPOINT")
        .ok_or_else(|| ConfigError::new("SUPERNODE_ENDPOINT", "required for a node"))?;
    let supernodes = endpoints
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if url.starts_with("http://") && url.len() > "http://".len() {
                Ok(url.trim_end_matches('/').to_string())
            } else {
                Err(ConfigError::new(
                    "SUPERNODE_ENDPOINT",
                    format!("{url:?} is not an http:// URL"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if supernodes.is_empty() {
        return Err(ConfigError::new("SUPERNODE_ENDPOINT", "no URL given"));
    }
    let resource_path = PathBuf::from(
        settings
            .get("RESOURCE_PATH")
            .ok_or_else(|| ConfigError::new("RESOURCE_PATH", "required for a node"))?,
    );
    if !resource_path.is_dir() {
        return Err(ConfigError::new(
            "RESOURCE_PATH",
            format!("{} is not a readable folder", resource_path.display()),
        ));
    }
    let location = settings.get("NODE_LOCATION").map(str::to_string);
    if let Some(location) = &location {
        crate::wire::check_location(location).map_err(|e| ConfigError::new("NODE_LOCATION", e))?;
    }
    Ok(NodeConfig {
        supernodes,
        resource_path,
        name: settings.get("NODE_NAME").map(str::to_string),
        location,
        heartbeat: settings.millis("HEARTBEAT_MS", 5000, 10)?,
        register_retry_max: settings.millis("REGISTER_RETRY_MAX_MS", 5000, 10)?,
        supernode_timeout: settings.millis("SUPERNODE_TIMEOUT_MS", 5000, 1)?,
        rescan: settings.millis("RESCAN_MS", 10_000, 0)?,
        http,
    })
}

/// Where `--config NAME_OR_PATH` points: a value with `/` or ending in `.env` is a path,
/// anything else is `config/NAME.env`.
pub fn config_path(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') || name_or_path.ends_with(".env") {
        PathBuf::from(name_or_path)
    } else {
        Path::new("config").join(format!("{name_or_path}.env"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_env(text.as_bytes()).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn parses_the_seeds_env_format() {
        let text = "# a comment\n\nLHOST=127.0.0.1\nexport LPORT = 5000\n\
                    SUPERNODE_ENDPOINT=\"http://127.0.0.1:5000/api/supernode\"\n\
                    NAME='a # b'\nRESOURCE_PATH=resources/node1 # inline comment\nEMPTY=\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("LHOST", "127.0.0.1"),
                kv("LPORT", "5000"),
                kv("SUPERNODE_ENDPOINT", "http://127.0.0.1:5000/api/supernode"),
                kv("NAME", "a # b"),
                kv("RESOURCE_PATH", "resources/node1"),
                kv("EMPTY", ""),
            ]
        );
    }

    #[test]
    fn rejects_lines_without_a_key() {
        let err = parse_env("LHOST=1\njust words\n".as_bytes()).unwrap_err();
        assert_eq!(err.key, "line 2");
        assert!(parse_env("=value\n".as_bytes()).is_err());
        assert!(parse_env("BAD KEY=1\n".as_bytes()).is_err());
    }

    #[test]
    fn environment_wins_and_empty_means_unset() {
        let settings = Settings::from_pairs(
            vec![kv("LPORT", "5000"), kv("LHOST", "127.0.0.2")],
            vec![kv("LPORT", "6000"), kv("LHOST", "")],
        );
        assert_eq!(settings.get("LPORT"), Some("6000"));
        assert_eq!(settings.get("LHOST"), Some("127.0.0.2"));
    }

    #[test]
    fn supernode_defaults_follow_the_spec() {
        let settings = Settings::from_pairs(vec![kv("IS_SUPERNODE", "True")], vec![]);
        let Config::Supernode(config) = Config::from_settings(&settings, None).unwrap() else {
            panic!("IS_SUPERNODE=True must give a supernode");
        };
        assert_eq!(config.http.bind, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(config.group, "230.0.0.0:4321".parse().unwrap());
        assert_eq!(config.interface, Ipv4Addr::LOCALHOST);
        assert_eq!(config.ttl, 1);
        assert_eq!(config.group_size, 0);
        assert_eq!(config.liveness_period, Duration::from_secs(5));
        assert_eq!(config.liveness_misses, 2);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let bad = [
            ("LPORT", "70000"),
            ("LHOST", "not-an-ip"),
            ("MULTICAST_LOCATION", "10.0.0.1:4321"),
            ("MULTICAST_LOCATION", "230.0.0.0"),
            ("MULTICAST_TTL", "0"),
            ("MULTICAST_GROUP_SIZE", "-1"),
            ("SEARCH_TIMEOUT_MS", "soon"),
            ("IS_SUPERNODE", "maybe"),
        ];
        for (key, value) in bad {
            let settings =
                Settings::from_pairs(vec![kv("IS_SUPERNODE", "true"), kv(key, value)], vec![]);
            let err = Config::from_settings(&settings, None).unwrap_err();
            assert_eq!(err.key, key, "{key}={value} gave {err}");
        }
    }

    #[test]
    fn node_needs_its_supernode_and_folder() {
        let none = Settings::default();
        let err = Config::from_settings(&none, Some(Role::Node)).unwrap_err();
        assert_eq!(err.key, "SUPERNODE_ENDPOINT");

        let dir = std::env::temp_dir();
        let settings = Settings::from_pairs(
            vec![
                kv(
                    "SUPERNODE_ENDPOINT",
                    "http://127.0.0.1:5000/api/supernode/, http://127.0.0.1:5001/api/supernode",
                ),
                kv("RESOURCE_PATH", dir.to_str().unwrap()),
            ],
            vec![],
        );
        let Config::Node(config) = Config::from_settings(&settings, None).unwrap() else {
            panic!("IS_SUPERNODE unset must give a node");
        };
        assert_eq!(
            config.supernodes,
            [
                "http://127.0.0.1:5000/api/supernode",
                "http://127.0.0.1:5001/api/supernode"
            ]
        );

        let missing = Settings::from_pairs(
            vec![
                kv("SUPERNODE_ENDPOINT", "http://127.0.0.1:5000/api/supernode"),
                kv("RESOURCE_PATH", "/no/such/folder"),
            ],
            vec![],
        );
        let err = Config::from_settings(&missing, None).unwrap_err();
        assert_eq!(err.key, "RESOURCE_PATH");
    }

    #[test]
    fn config_names_and_paths() {
        assert_eq!(config_path("node1"), PathBuf::from("config/node1.env"));
        assert_eq!(
            config_path("machine/config/node1.env"),
            PathBuf::from("machine/config/node1.env")
        );
        assert_eq!(
            config_path("/etc/superpeer/a.env"),
            PathBuf::from("/etc/superpeer/a.env")
        );
    }
}

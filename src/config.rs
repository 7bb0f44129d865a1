//! Configuration: `.env` text, then the process environment over it, then typed and validated.
//!
//! [`parse_env`] reads the seed's `.env` format from any reader, so tests feed it strings.
//! [`Settings`] layers the environment over the file (the environment wins; an empty value
//! counts as unset). [`Config::from_settings`] checks every key once, at start-up, and names the
//! key in its error, so a running instance never meets a bad value.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::auth::ClusterKeys;
use crate::error::ConfigError;
use crate::location::HostPort;

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
    /// Every key asked for, so a test can check that each is documented.
    #[cfg(test)]
    asked: std::cell::RefCell<std::collections::BTreeSet<String>>,
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
            #[cfg(test)]
            asked: Default::default(),
        }
    }

    /// The value of `key`, from the environment first; empty values count as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        #[cfg(test)]
        self.asked.borrow_mut().insert(key.to_string());
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

    /// A number within `min..=max`: out of range is a start-up error, never a later overflow.
    fn number<T>(&self, key: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let value = self.parse_or(key, default)?;
        if value < min || value > max {
            return Err(ConfigError::new(
                key,
                format!("{value} is out of range: must be between {min} and {max}"),
            ));
        }
        Ok(value)
    }

    /// A duration in milliseconds within `min_ms..=max_ms`.
    fn millis(
        &self,
        key: &str,
        default_ms: u64,
        min_ms: u64,
        max_ms: u64,
    ) -> Result<Duration, ConfigError> {
        self.number(key, default_ms, min_ms, max_ms)
            .map(Duration::from_millis)
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

/// Settings of the HTTP API, common to both roles: where it listens and the limits every
/// client is held to (docs/security.md, "Limits").
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `LHOST:LPORT`: where the API listens. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// `HTTP_WORKERS`: connection threads kept ready (more start as connections come).
    pub workers: usize,
    /// `MAX_CONNECTIONS`: open connections in all (kept within the open-files limit).
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`: open connections from one address.
    pub max_connections_per_ip: usize,
    /// `MAX_BODY_BYTES`: the largest request body accepted (a registration with its list).
    pub max_body: u64,
    /// `BODY_MEMORY_BYTES`: request bodies held at once, beyond the first 64 KiB of each.
    pub body_memory: u64,
    /// `MAX_REQUEST_LINE_BYTES`: the longest request line (method, target, version).
    pub max_request_line: usize,
    /// `MAX_HEADER_BYTES`: the largest header section.
    pub max_header_bytes: usize,
    /// `MAX_HEADERS`: the most header fields.
    pub max_headers: usize,
    /// `HTTP_HEAD_TIMEOUT_MS`: a request head must be complete this long after its first byte
    /// (or after the accept, for a connection's first request).
    pub head_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_MS`: a request body must be complete this long after its head.
    pub body_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`: a kept-alive connection with no new request for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// `HTTP_WRITE_TIMEOUT_MS`: each 256 KiB of an answer must be taken by the client within
    /// this long, or the connection is dropped.
    pub write_timeout: Duration,
    /// `MAX_IDS_PER_REQUEST`: the most ids one `hash_ids` list may hold.
    pub max_ids: usize,
}

/// A supernode's settings.
#[derive(Debug, Clone)]
pub struct SupernodeConfig {
    pub http: HttpConfig,
    /// `MULTICAST_LOCATION`: the supernodes' group and port, IPv4 or IPv6 (no zone id: the
    /// interface is `interface`'s).
    pub group: SocketAddr,
    /// `MULTICAST_INTERFACE`: the address, of the group's family, of the interface the group
    /// is joined and sent on; unspecified: the system's choice.
    pub interface: IpAddr,
    /// `MULTICAST_TTL`: hops a datagram may take; 1 keeps it on the local network.
    pub ttl: u32,
    /// `MULTICAST_GROUP_SIZE`: supernodes in the group, this one included; 0 = unknown.
    pub group_size: usize,
    /// `UNICAST_PORT`: the port of the supernode's own socket, on the interface address, which
    /// sends its datagrams and gets the answers to its queries. Unset: the group's port, or any
    /// free port when another supernode on this address has that; 0: any free port.
    pub unicast_port: Option<u16>,
    /// `PEERS`: `ip:port` or `name:port` of supernodes on other networks, where multicast does
    /// not reach; every datagram for the group goes to each of them too, by unicast. Checked
    /// by [`HostPort::parse`] and kept as text: an address is used as it is, a name is resolved
    /// (and resolved again) by the supernode's own resolver.
    pub peers: Vec<String>,
    /// `INDEX_DIGESTS`: keep a summary of the index for the other supernodes, and use theirs
    /// to ask only those that may hold an id.
    pub index_digests: bool,
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
    /// `SOURCE_CHECK`: registrations, heartbeats and leaves for `host:port` are accepted only
    /// from `host` (turn off behind NAT).
    pub source_check: bool,
    /// `MAX_RESOURCES_PER_NODE`: the most resources one node may register.
    pub max_node_resources: usize,
    /// `MAX_INDEX_RESOURCES`: the most holdings of all nodes together.
    pub max_index: usize,
    /// `MAX_NODES`: the most nodes registered at once.
    pub max_nodes: usize,
    /// `MAX_NODES_PER_HOST`: the most nodes registered at once from one source address (the
    /// request's, whatever the locations say).
    pub max_nodes_per_host: usize,
    /// `MAX_RESOURCES_PER_HOST`: the most holdings of the nodes registered from one source
    /// address together.
    pub max_host_resources: usize,
    /// `CLUSTER_KEY` / `CLUSTER_KEY_FILE`: when set, registrations, heartbeats, leaves, manual
    /// sweeps and datagrams must be signed with it.
    pub cluster_keys: Option<ClusterKeys>,
    /// `LOG_SUMMARY_MS`: how often the `info` summary of searches, registrations and removals
    /// is written (when there were any); 0 = never.
    pub log_summary: Duration,
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
    /// `NODE_LOCATION`: the `ip:port` announced to the supernode, or a `name:port` resolved to
    /// one at start-up (default: the bound address).
    pub location: Option<HostPort>,
    /// `HEARTBEAT_MS`: time between two heartbeats to the supernode.
    pub heartbeat: Duration,
    /// `REGISTER_RETRY_MAX_MS`: the longest back-off between two registration attempts.
    pub register_retry_max: Duration,
    /// `SUPERNODE_TIMEOUT_MS`: how long a request to the supernode may take.
    pub supernode_timeout: Duration,
    /// `RESCAN_MS`: how often the folder is looked at again for changed files; 0 = never.
    pub rescan: Duration,
    /// `PIECE_SIZE`: the size of the pieces whose hashes the node lists for downloads from
    /// several holders (bytes).
    pub piece_size: u64,
    /// `FETCH_MAX_BYTES`: the largest file the node fetches from its holders for a client
    /// that asks it (`/content?fetch=true`); 0 = never.
    pub fetch_max_bytes: u64,
    /// `CLUSTER_KEY` / `CLUSTER_KEY_FILE`: signs the registrations, heartbeats and leaves.
    pub cluster_keys: Option<ClusterKeys>,
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

/// The longest any period or time-out may be: a day. Far beyond any use, and far from the
/// overflow of `Instant + Duration`.
const MAX_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The HTTP settings alone (both roles read them the same way).
pub fn http_config(settings: &Settings) -> Result<HttpConfig, ConfigError> {
    let host: IpAddr = settings.parse_or("LHOST", IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let port: u16 = settings.parse_or("LPORT", 5000)?;
    let max_body = settings.number("MAX_BODY_BYTES", 64 * MIB, 1, GIB)?;
    let body_memory = settings.number("BODY_MEMORY_BYTES", max_body.max(256 * MIB), 0, 64 * GIB)?;
    if body_memory < max_body {
        return Err(ConfigError::new(
            "BODY_MEMORY_BYTES",
            format!(
                "{body_memory} is less than MAX_BODY_BYTES ({max_body}): no largest body could ever be read"
            ),
        ));
    }
    // HTTP_READ_TIMEOUT_MS is the key's name before 0.2; it still works.
    let idle_key = match settings.get("HTTP_IDLE_TIMEOUT_MS") {
        None if settings.get("HTTP_READ_TIMEOUT_MS").is_some() => "HTTP_READ_TIMEOUT_MS",
        _ => "HTTP_IDLE_TIMEOUT_MS",
    };
    Ok(HttpConfig {
        bind: SocketAddr::new(host, port),
        workers: settings.number("HTTP_WORKERS", 16, 1, 1024)?,
        max_connections: settings.number("MAX_CONNECTIONS", 1024, 1, 65_536)?,
        max_connections_per_ip: settings.number("MAX_CONNECTIONS_PER_IP", 128, 1, 65_536)?,
        max_body,
        body_memory,
        // 20 KiB, not the common 8 KiB: a hash_ids list of MAX_IDS_PER_REQUEST (256) ids takes
        // about 17 KB.
        max_request_line: settings.number("MAX_REQUEST_LINE_BYTES", 20_480, 256, 1 << 20)?,
        max_header_bytes: settings.number("MAX_HEADER_BYTES", 65_536, 1024, 1 << 20)?,
        max_headers: settings.number(
            "MAX_HEADERS",
            100,
            1,
            crate::http::head::MAX_HEADERS_LIMIT,
        )?,
        head_timeout: settings.millis("HTTP_HEAD_TIMEOUT_MS", 10_000, 100, HOUR_MS)?,
        body_timeout: settings.millis("HTTP_BODY_TIMEOUT_MS", 60_000, 100, HOUR_MS)?,
        idle_timeout: settings.millis(idle_key, 10_000, 100, HOUR_MS)?,
        write_timeout: settings.millis("HTTP_WRITE_TIMEOUT_MS", 10_000, 100, HOUR_MS)?,
        max_ids: settings.number("MAX_IDS_PER_REQUEST", 256, 1, 4096)?,
    })
}

fn supernode_config(settings: &Settings, http: HttpConfig) -> Result<SupernodeConfig, ConfigError> {
    let group = multicast_group(settings)?;
    Ok(SupernodeConfig {
        group,
        interface: multicast_interface(settings, group, http.bind.ip())?,
        ttl: settings.number("MULTICAST_TTL", 1, 1, 255)?,
        group_size: settings.number("MULTICAST_GROUP_SIZE", 0, 0, 1024)?,
        unicast_port: match settings.get("UNICAST_PORT") {
            None => None,
            Some(_) => Some(settings.number("UNICAST_PORT", 0, 0, u16::MAX)?),
        },
        peers: peers(settings)?,
        index_digests: match settings.get("INDEX_DIGESTS") {
            None => true,
            Some(_) => settings.flag("INDEX_DIGESTS")?,
        },
        search_timeout: settings.millis("SEARCH_TIMEOUT_MS", 2000, 1, HOUR_MS)?,
        search_retry: settings.millis("SEARCH_RETRY_MS", 250, 0, HOUR_MS)?,
        liveness_period: settings.millis("LIVENESS_PERIOD_MS", 5000, 10, MAX_MS)?,
        liveness_misses: settings.number("LIVENESS_MISSES", 2, 1, 1000)?,
        health_timeout: settings.millis("HEALTH_TIMEOUT_MS", 2000, 1, HOUR_MS)?,
        health_concurrency: settings.number("HEALTH_CONCURRENCY", 64, 1, 1024)?,
        source_check: match settings.get("SOURCE_CHECK") {
            None => true,
            Some(_) => settings.flag("SOURCE_CHECK")?,
        },
        max_node_resources: settings.number("MAX_RESOURCES_PER_NODE", 1_000_000, 0, 100_000_000)?,
        max_index: settings.number("MAX_INDEX_RESOURCES", 5_000_000, 0, 1_000_000_000)?,
        max_nodes: settings.number("MAX_NODES", 10_000, 1, 1_000_000)?,
        // A tenth of MAX_NODES: more nodes than a LAN host runs (the liveness bench's 1,000
        // from 127.0.0.1 are exactly this), and one host cannot take every slot.
        max_nodes_per_host: settings.number("MAX_NODES_PER_HOST", 1_000, 1, 1_000_000)?,
        // Two nodes of MAX_RESOURCES_PER_NODE: no LAN host holds more, the benches' million
        // from 127.0.0.1 fits, and one host cannot take the whole MAX_INDEX_RESOURCES.
        max_host_resources: settings.number(
            "MAX_RESOURCES_PER_HOST",
            2_000_000,
            0,
            1_000_000_000,
        )?,
        cluster_keys: cluster_keys(settings)?,
        log_summary: settings.millis("LOG_SUMMARY_MS", 60_000, 0, MAX_MS)?,
        http,
    })
}

/// `MULTICAST_LOCATION`: `group:port` or `[group]:port`, a multicast group of either family.
fn multicast_group(settings: &Settings) -> Result<SocketAddr, ConfigError> {
    let key = "MULTICAST_LOCATION";
    let group: SocketAddr = match settings.get(key) {
        None => SocketAddr::from((Ipv4Addr::new(230, 0, 0, 0), 4321)),
        Some(text) => text.parse().map_err(|_| {
            ConfigError::new(
                key,
                format!("expected group:port or [group]:port, found {text:?}"),
            )
        })?,
    };
    if let SocketAddr::V6(v6) = group
        && (v6.scope_id() != 0 || v6.flowinfo() != 0)
    {
        return Err(ConfigError::new(
            key,
            "a group takes no zone id: it is joined on the interface of LHOST (or MULTICAST_INTERFACE)",
        ));
    }
    if !group.ip().is_multicast() || group.port() == 0 {
        return Err(ConfigError::new(
            key,
            format!("{group} is not a multicast group with a port"),
        ));
    }
    Ok(group)
}

/// `MULTICAST_INTERFACE`, of the group's family. The safety default: the address the API
/// listens on, so a cluster on 127.0.0.1 (or ::1) stays on it.
fn multicast_interface(
    settings: &Settings,
    group: SocketAddr,
    lhost: IpAddr,
) -> Result<IpAddr, ConfigError> {
    let key = "MULTICAST_INTERFACE";
    let unspecified = match group {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let interface = match settings.get(key) {
        Some(_) => settings.parse_or(key, unspecified)?,
        None if lhost.is_unspecified() || lhost.is_multicast() => unspecified,
        None if lhost.is_ipv4() != group.is_ipv4() => {
            return Err(ConfigError::new(
                "LHOST",
                format!(
                    "{lhost} and the group {group} are of two families: give MULTICAST_LOCATION a group of LHOST's (an IPv6 one: [ff12::230]:4321), or MULTICAST_INTERFACE an address of the group's"
                ),
            ));
        }
        None => lhost,
    };
    if interface.is_ipv4() != group.is_ipv4() {
        return Err(ConfigError::new(
            key,
            format!("{interface} is not of the family of the group {group}"),
        ));
    }
    if let IpAddr::V6(v6) = interface
        && v6.is_unicast_link_local()
    {
        return Err(ConfigError::new(
            key,
            format!(
                "{v6} is link-local and would need a zone id: give the interface's global or unique local (fd00::/8) address"
            ),
        ));
    }
    Ok(interface)
}

/// The most supernodes `PEERS` may name.
pub const MAX_PEERS: usize = 256;

/// `PEERS`: a comma-separated list of `ip:port` or `name:port` (names are resolved when used,
/// and again periodically).
fn peers(settings: &Settings) -> Result<Vec<String>, ConfigError> {
    let Some(text) = settings.get("PEERS") else {
        return Ok(Vec::new());
    };
    let mut peers: Vec<String> = Vec::new();
    for peer in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let peer = HostPort::parse(peer)
            .map_err(|e| ConfigError::new("PEERS", e))?
            .to_string();
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    if peers.len() > MAX_PEERS {
        return Err(ConfigError::new(
            "PEERS",
            format!("{} peers: at most {MAX_PEERS}", peers.len()),
        ));
    }
    Ok(peers)
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
    let location = settings
        .get("NODE_LOCATION")
        .map(HostPort::parse)
        .transpose()
        .map_err(|e| ConfigError::new("NODE_LOCATION", e))?;
    Ok(NodeConfig {
        supernodes,
        resource_path,
        name: settings.get("NODE_NAME").map(str::to_string),
        location,
        heartbeat: settings.millis("HEARTBEAT_MS", 5000, 10, MAX_MS)?,
        register_retry_max: settings.millis("REGISTER_RETRY_MAX_MS", 5000, 10, MAX_MS)?,
        supernode_timeout: settings.millis("SUPERNODE_TIMEOUT_MS", 5000, 1, HOUR_MS)?,
        rescan: settings.millis("RESCAN_MS", 10_000, 0, MAX_MS)?,
        piece_size: piece_size(settings)?,
        fetch_max_bytes: settings.number("FETCH_MAX_BYTES", GIB, 0, 1024 * GIB)?,
        cluster_keys: cluster_keys(settings)?,
        http,
    })
}

/// `PIECE_SIZE`: in bounds, and a multiple of the smallest (so every piece starts on a
/// SHA-256 block, and the id and the pieces come from one pass over the bytes).
fn piece_size(settings: &Settings) -> Result<u64, ConfigError> {
    use crate::pieces::{DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MIN_PIECE_SIZE};
    let size = settings.number(
        "PIECE_SIZE",
        DEFAULT_PIECE_SIZE,
        MIN_PIECE_SIZE,
        MAX_PIECE_SIZE,
    )?;
    if !size.is_multiple_of(MIN_PIECE_SIZE) {
        return Err(ConfigError::new(
            "PIECE_SIZE",
            format!("{size} is not a multiple of {MIN_PIECE_SIZE} (16 KiB)"),
        ));
    }
    Ok(size)
}

/// The cluster's keys, from `CLUSTER_KEY` or the file `CLUSTER_KEY_FILE` names (not both).
/// No error carries a key.
pub fn cluster_keys(settings: &Settings) -> Result<Option<ClusterKeys>, ConfigError> {
    match (
        settings.get("CLUSTER_KEY"),
        settings.get("CLUSTER_KEY_FILE"),
    ) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ConfigError::new(
            "CLUSTER_KEY",
            "set CLUSTER_KEY or CLUSTER_KEY_FILE, not both",
        )),
        (Some(text), None) => ClusterKeys::parse(text)
            .map(Some)
            .map_err(|e| ConfigError::new("CLUSTER_KEY", e)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("CLUSTER_KEY_FILE", format!("cannot read {path}: {e}"))
            })?;
            if std::fs::metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.permissions().mode() & 0o077 != 0
            }) {
                log::warn!(
                    "CLUSTER_KEY_FILE {path} can be read by others than its owner (chmod 600 it)"
                );
            }
            ClusterKeys::parse(&text)
                .map(Some)
                .map_err(|e| ConfigError::new("CLUSTER_KEY_FILE", format!("{path}: {e}")))
        }
    }
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
        assert_eq!(config.interface, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.ttl, 1);
        assert_eq!(config.group_size, 0);
        assert_eq!(config.liveness_period, Duration::from_secs(5));
        assert_eq!(config.liveness_misses, 2);
        assert_eq!(config.max_nodes_per_host, 1_000);
        assert_eq!(config.max_host_resources, 2_000_000);
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
            // Huge values are refused at start-up instead of overflowing a deadline later.
            ("SEARCH_TIMEOUT_MS", "18446744073709551615"),
            ("LIVENESS_PERIOD_MS", "86400001"),
            ("HEALTH_TIMEOUT_MS", "99999999999"),
            ("HTTP_IDLE_TIMEOUT_MS", "0"),
            ("HTTP_WRITE_TIMEOUT_MS", "99999999999"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "9999999999999"),
            ("BODY_MEMORY_BYTES", "1000"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_HEADERS", "100000"),
            ("MAX_REQUEST_LINE_BYTES", "10"),
            ("MAX_IDS_PER_REQUEST", "0"),
            ("HTTP_WORKERS", "0"),
            ("CLUSTER_KEY", "too-short"),
            ("CLUSTER_KEY_FILE", "/no/such/key/file"),
            ("MAX_NODES_PER_HOST", "0"),
            ("MAX_RESOURCES_PER_HOST", "-1"),
            // Aliases of an address are no names: refused, not handed to the resolver.
            ("PEERS", "10.77.0.03:4321"),
            ("PEERS", "127.0.0.1:4321,0xa.77.0.3:4321"),
            ("PEERS", "[::ffff:10.77.0.3]:4321"),
            ("PEERS", "peer.lan:04321"),
        ];
        for (key, value) in bad {
            let settings =
                Settings::from_pairs(vec![kv("IS_SUPERNODE", "true"), kv(key, value)], vec![]);
            let err = Config::from_settings(&settings, None).unwrap_err();
            assert_eq!(err.key, key, "{key}={value} gave {err}");
        }
    }

    /// SPEC 10: an IPv6 group works like an IPv4 one, on the interface of LHOST; no zone id;
    /// the group and the interface are of one family.
    #[test]
    fn ipv6_groups_are_joined_on_the_interface_of_lhost() {
        let supernode = |pairs: &[(&str, &str)]| {
            let mut settings = vec![kv("IS_SUPERNODE", "true")];
            settings.extend(pairs.iter().map(|(k, v)| kv(k, v)));
            match Config::from_settings(&Settings::from_pairs(settings, vec![]), None) {
                Ok(Config::Supernode(config)) => Ok((config.group, config.interface)),
                Ok(Config::Node(_)) => unreachable!(),
                Err(e) => Err(e.key),
            }
        };
        let group: SocketAddr = "[ff12::230]:4321".parse().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let v6 = [
            ("LHOST", "fd00:35::a"),
            ("MULTICAST_LOCATION", "[ff12::230]:4321"),
        ];
        assert_eq!(supernode(&v6), Ok((group, ip("fd00:35::a"))));
        let any = [("LHOST", "::"), ("MULTICAST_LOCATION", "[ff12::230]:4321")];
        assert_eq!(supernode(&any), Ok((group, ip("::"))));
        let chosen = [
            ("LHOST", "::"),
            ("MULTICAST_LOCATION", "[ff12::230]:4321"),
            ("MULTICAST_INTERFACE", "fd00:35::b"),
        ];
        assert_eq!(supernode(&chosen), Ok((group, ip("fd00:35::b"))));
        // An IPv4 group on an IPv6 LHOST: the seed's default is not silently swapped.
        assert_eq!(supernode(&[("LHOST", "::1")]), Err("LHOST".into()));
        let refused = [
            ("MULTICAST_LOCATION", "[ff12::230%2]:4321"),
            ("MULTICAST_LOCATION", "ff12::230:4321"),
            ("MULTICAST_LOCATION", "[fd00::1]:4321"),
            ("MULTICAST_INTERFACE", "127.0.0.1"),
            ("MULTICAST_INTERFACE", "fe80::1"),
        ];
        for (key, value) in refused {
            let mut pairs = vec![("LHOST", "::"), ("MULTICAST_LOCATION", "[ff12::230]:4321")];
            pairs.retain(|(k, _)| *k != key);
            pairs.push((key, value));
            assert_eq!(supernode(&pairs), Err(key.to_string()), "{key}={value}");
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

        // Pieces are whole multiples of 16 KiB, within bounds.
        for (value, ok) in [
            ("16384", true),
            ("65536", true),
            ("20000", false),
            ("0", false),
        ] {
            let settings = Settings::from_pairs(
                vec![
                    kv("SUPERNODE_ENDPOINT", "http://127.0.0.1:5000/api/supernode"),
                    kv("RESOURCE_PATH", dir.to_str().unwrap()),
                    kv("PIECE_SIZE", value),
                ],
                vec![],
            );
            match Config::from_settings(&settings, Some(Role::Node)) {
                Ok(Config::Node(config)) => assert!(ok && config.piece_size.to_string() == value),
                Ok(Config::Supernode(_)) => unreachable!(),
                Err(e) => assert!(!ok && e.key == "PIECE_SIZE", "{value}: {e}"),
            }
        }
    }

    #[test]
    fn node_location_is_a_canonical_address_or_a_name() {
        let dir = std::env::temp_dir();
        let node = |location: &str| {
            let settings = Settings::from_pairs(
                vec![
                    kv("SUPERNODE_ENDPOINT", "http://127.0.0.1:5000/api/supernode"),
                    kv("RESOURCE_PATH", dir.to_str().unwrap()),
                    kv("NODE_LOCATION", location),
                ],
                vec![],
            );
            match Config::from_settings(&settings, Some(Role::Node)) {
                Ok(Config::Node(config)) => Ok(config.location),
                Ok(Config::Supernode(_)) => unreachable!(),
                Err(e) => Err(e),
            }
        };
        assert_eq!(
            node("10.0.0.7:8000").unwrap(),
            Some(HostPort::Addr("10.0.0.7:8000".parse().unwrap()))
        );
        assert_eq!(
            node("node1.lan:8000").unwrap(),
            Some(HostPort::Name {
                host: "node1.lan".into(),
                port: 8000
            })
        );
        for bad in [
            "10.0.0.07:8000",
            "167772167:8000",
            "node1.lan",
            "[::ffff:10.0.0.7]:80",
        ] {
            assert_eq!(node(bad).unwrap_err().key, "NODE_LOCATION", "{bad}");
        }
    }

    #[test]
    fn peers_are_addresses_or_names_each_once() {
        let settings = Settings::from_pairs(
            vec![kv(
                "PEERS",
                "10.0.0.7:4321, b.site2.lan:4321,10.0.0.7:4321,[fd00::7]:4321",
            )],
            vec![],
        );
        let Config::Supernode(config) =
            Config::from_settings(&settings, Some(Role::Supernode)).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            config.peers,
            ["10.0.0.7:4321", "b.site2.lan:4321", "[fd00::7]:4321"]
        );
    }

    #[test]
    fn every_key_read_is_in_the_example_file() {
        // config/example.env lists every key; scripts/clean-env.sh unsets what it lists.
        let example = include_str!("../config/example.env");
        let documented: Vec<(String, String)> = example
            .lines()
            .filter_map(|line| line.trim_start_matches('#').split_once('='))
            .map(|(key, _)| (key.trim().to_string(), String::new()))
            .collect();
        let dir = std::env::temp_dir();
        let settings = Settings::from_pairs(
            [
                kv("SUPERNODE_ENDPOINT", "http://127.0.0.1:5000/api/supernode"),
                kv("RESOURCE_PATH", dir.to_str().unwrap()),
                kv("HTTP_READ_TIMEOUT_MS", "1000"),
            ],
            [],
        );
        for role in [Role::Supernode, Role::Node] {
            Config::from_settings(&settings, Some(role)).unwrap();
        }
        settings.flag("IS_SUPERNODE").unwrap();
        settings.log_level().unwrap();
        let missing: Vec<String> = settings
            .asked
            .borrow()
            .iter()
            .filter(|key| *key != "HTTP_READ_TIMEOUT_MS")
            .filter(|key| !documented.iter().any(|(k, _)| k == *key))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "not in config/example.env: {missing:?}");
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

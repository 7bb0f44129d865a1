//! The node: serves its own resources, and sends the rest of the world to their holders.
//!
//! A resource held here is answered from the catalog; any other id is asked of the supernode,
//! and the answer is a 302 to the holder, so `curl -L` reaches the bytes from any node. The
//! folder is scanned again every `RESCAN_MS`: a changed catalog replaces the old one and is
//! registered again.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::Serialize;

use self::fetch::Fetcher;
use crate::Instance;
use crate::api::{
    FileInfo, Found, HeldEverywhere, Located, NameQuery, NodeRoute, Registration, Remote, Route,
    Routed, entity, parse_id_list,
};
use crate::client::{Announcement, Registrar, Upstream};
use crate::config::{NodeConfig, Role};
use crate::error::{ApiError, ConfigError, Error};
use crate::http::{HttpServer, Reply, ReplyBody, Request, Service};
use crate::id::ResourceId;
use crate::location::HostPort;
use crate::logging::Throttle;
use crate::metrics::Metrics;
use crate::resources::{self, Catalog};
use crate::shutdown::Shutdown;
use mirrors::Mirrors;

/// What a node asks of its supernodes: [`Upstream`] (fail-over along `SUPERNODE_ENDPOINT`), or
/// a stand-in in the routes' unit tests.
pub trait Supernodes: Send + Sync {
    /// Where `id` is, according to the supernodes.
    fn search(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError>;
    /// Every holder of `id` the whole group knows.
    fn search_all(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError>;
    /// Where each of `ids` is, in one request; ids nobody has are left out.
    fn search_many(&self, ids: &[ResourceId]) -> Result<Vec<Located>, ApiError>;
    /// A name search: `query` is the client's, already checked.
    fn search_names(&self, query: &str) -> Result<Vec<Located>, ApiError>;
    /// The supernode the node is registered with now.
    fn current(&self) -> String;
}

impl Supernodes for Upstream {
    fn search(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError> {
        Upstream::search(self, id)
    }
    fn search_all(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError> {
        Upstream::search_all(self, id)
    }
    fn search_many(&self, ids: &[ResourceId]) -> Result<Vec<Located>, ApiError> {
        Upstream::search_many(self, ids)
    }
    fn search_names(&self, query: &str) -> Result<Vec<Located>, ApiError> {
        Upstream::search_names(self, query)
    }
    fn current(&self) -> String {
        Upstream::current(self).to_string()
    }
}

/// What the node's handlers need.
pub struct NodeService {
    catalog: RwLock<Arc<Catalog>>,
    supernodes: Arc<dyn Supernodes>,
    /// `MAX_IDS_PER_REQUEST`.
    max_ids: usize,
    /// Downloads refused because the file changed since it was hashed, for a throttled log line.
    changed_files: Throttle,
    metrics: Metrics,
    /// For the holders' health checks before a redirect.
    holders: ureq::Agent,
    /// Every holder of what it serves, for the downloads' `Link` headers, the Metalink
    /// documents and `?all=true`.
    mirrors: Mirrors,
    /// Files fetched for clients that ask (`?fetch=true`).
    fetcher: Fetcher,
    started: std::time::Instant,
    /// The name and location it registers under, known once it listens.
    identity: std::sync::OnceLock<(String, String)>,
}

impl Service for NodeService {
    fn route(&self, request: &Request<'_>) -> Routed {
        Routed::parse(request, Role::Node)
    }

    fn handle(&self, request: &Request<'_>, routed: &Routed) -> Result<Reply, ApiError> {
        use NodeRoute as N;
        match routed.route.clone()? {
            Route::Metrics => Ok(Reply::typed(
                self.metrics.render(),
                crate::metrics::CONTENT_TYPE,
            )),
            Route::Page => Ok(crate::page::reply(request.path, Role::Node)),
            Route::Node(N::Health) => Ok(Reply::data(200, entity::HEALTH, &"ok")),
            Route::Node(N::Status) => Ok(Reply::data(200, entity::STATUS, &self.status())),
            Route::Node(N::Search) => {
                // Checked here too, so a bad one is this node's 400, not a relayed one.
                NameQuery::from_request(request)?;
                let found = self.supernodes.search_names(request.query)?;
                Ok(Reply::data(200, entity::LOCATION, &found))
            }
            Route::Node(N::Resources) => Ok(Reply::new(
                200,
                ReplyBody::SharedJson(self.catalog().listing()),
            )),
            Route::Node(N::Find) => self.find(request),
            Route::Node(N::Resource(id)) => {
                let all = request.query_param("all").as_deref() == Some("true");
                self.resource(id, "", all)
            }
            Route::Node(N::Content(id)) => self.content(request, id),
            Route::Node(N::Pieces(id)) => self.pieces(id),
            Route::Node(N::Metalink(id)) => self.metalink(id),
            Route::Supernode(_) => Err(ApiError::WrongRole),
        }
    }
}

/// How long a holder's health check before a redirect may take.
const HOLDER_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /api/node/status`: the node's page reads it every few seconds.
#[derive(Serialize)]
struct Status {
    role: &'static str,
    name: String,
    location: String,
    /// The supernode it registers with now.
    supernode: String,
    up_seconds: u64,
    files: Vec<FileStatus>,
}

#[derive(Serialize)]
struct FileStatus {
    id: ResourceId,
    name: String,
    size: u64,
}

impl NodeService {
    pub fn new(
        catalog: Arc<Catalog>,
        supernodes: Arc<dyn Supernodes>,
        max_ids: usize,
    ) -> NodeService {
        NodeService {
            catalog: RwLock::new(catalog),
            supernodes: supernodes.clone(),
            max_ids,
            changed_files: Throttle::new(Duration::from_secs(10)),
            metrics: Metrics::new(),
            holders: crate::client::agent(HOLDER_CHECK_TIMEOUT),
            mirrors: Mirrors::start(supernodes.clone()),
            fetcher: Fetcher::new(0),
            started: std::time::Instant::now(),
            identity: std::sync::OnceLock::new(),
        }
    }

    /// Fetching files of up to `max_bytes` for clients that ask (`FETCH_MAX_BYTES`).
    pub fn with_fetch_max_bytes(mut self, max_bytes: u64) -> NodeService {
        self.fetcher = Fetcher::new(max_bytes);
        self
    }

    /// The current catalog (a request keeps the one it started with).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace_catalog(&self, catalog: Arc<Catalog>) {
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = catalog;
    }

    /// The first of `locations` (at most 8 tried) whose node answers its health check.
    fn answering(&self, locations: &[String]) -> Option<String> {
        locations
            .iter()
            .filter(|location| crate::wire::check_location(location).is_ok())
            .take(8)
            .find(|location| {
                let url = format!("http://{location}/api/node/health");
                self.holders
                    .get(&url)
                    .call()
                    .is_ok_and(|response| response.status().is_success())
            })
            .cloned()
    }

    /// `GET /api/node/status`: what the page shows.
    fn status(&self) -> Status {
        let catalog = self.catalog();
        let (name, location) = self.identity.get().cloned().unwrap_or_default();
        Status {
            role: "node",
            name,
            location,
            supernode: self.supernodes.current(),
            up_seconds: self.started.elapsed().as_secs(),
            files: catalog
                .iter()
                .map(|resource| FileStatus {
                    id: resource.id,
                    name: resource.name.clone(),
                    size: resource.size(),
                })
                .collect(),
        }
    }

    /// The resource's info, or a 302 to the holder's URL for it (`suffix` picks which URL);
    /// with `all`, the 302's body lists every holder the group knows (`superpeer get` swarms
    /// from them).
    fn resource(&self, id: ResourceId, suffix: &str, all: bool) -> Result<Reply, ApiError> {
        if let Some(resource) = self.catalog().get(&id) {
            if !all {
                return Ok(Reply::data(200, entity::RESOURCE, &resource.info()));
            }
            let everywhere = HeldEverywhere {
                held: resource.info(),
                locations: self.every_holder_with_me(id),
            };
            return Ok(Reply::data(200, entity::RESOURCE, &everywhere));
        }
        let found = if all {
            self.supernodes.search_all(id)?
        } else {
            self.supernodes.search(id)?
        };
        let mut info =
            found.ok_or_else(|| ApiError::NotFound(format!("resource {id} not found")))?;
        // Sent to a holder that answers: the first that does, else one of every holder the
        // group knows.
        let holder = match self.answering(&info.locations) {
            Some(holder) => holder,
            None => {
                let every = self.supernodes.search_all(id)?.map(|all| all.locations);
                self.answering(&every.unwrap_or_default()).ok_or_else(|| {
                    ApiError::Unavailable(format!(
                        "no holder of {id} answers ({}); retry later",
                        info.locations.join(", ")
                    ))
                })?
            }
        };
        info.location = holder;
        // The location goes into a Location header: only a plain host:port may.
        crate::wire::check_location(&info.location).map_err(|e| {
            ApiError::Unavailable(format!("the supernode's answer for {id} is unusable: {e}"))
        })?;
        let url = format!("http://{}/api/node/resources/{id}{suffix}", info.location);
        Ok(Reply::data(302, entity::RESOURCE, &Remote { id, info }).with_location(url))
    }

    /// `GET resources/<id>/content?fetch=true` of a file held elsewhere: fetched from every
    /// holder and served from here.
    fn fetched(&self, request: &Request, id: ResourceId) -> Result<Reply, ApiError> {
        let info = self
            .supernodes
            .search_all(id)?
            .ok_or_else(|| ApiError::NotFound(format!("resource {id} not found")))?
            .every_location();
        let me = self.identity.get().map(|(_, location)| location.as_str());
        // Only a plain host:port goes into a URL; never this node itself.
        let holders: Vec<String> = info
            .locations
            .into_iter()
            .filter(|l| crate::wire::check_location(l).is_ok() && Some(l.as_str()) != me)
            .collect();
        if holders.is_empty() {
            return Err(ApiError::NotFound(format!(
                "resource {id} has no holder this node can fetch it from"
            )));
        }
        let (file, metadata) = self.fetcher.fetch(id, holders)?;
        let name = info.name.unwrap_or_else(|| id.to_string());
        // Unlinked and checked whole: nobody can change it under the answer.
        crate::content::reply(request, id, &name, (file, metadata), Box::new(|_| true))
    }

    fn content(&self, request: &Request, id: ResourceId) -> Result<Reply, ApiError> {
        let catalog = self.catalog();
        let Some(resource) = catalog.get(&id) else {
            if request.query_param("fetch").as_deref() == Some("true") {
                return self.fetched(request, id);
            }
            return self.resource(id, "/content", false);
        };
        // The path comes from the catalog, never from the request.
        let opened = std::fs::File::open(&resource.path).and_then(|f| Ok((f.metadata()?, f)));
        match opened {
            Ok((metadata, file)) if resource.unchanged(&metadata) => {
                let reply = crate::content::reply(
                    request,
                    id,
                    &resource.name,
                    (file, metadata),
                    resource.unchanged_check(),
                )?;
                let me = self.identity.get().map(|(_, location)| location.as_str());
                Ok(match self.mirrors.link(id, me) {
                    Some(link) => reply.with_header("Link", link),
                    None => reply,
                })
            }
            Ok(_) => {
                if let Some(count) = self.changed_files.hit() {
                    log::warn!(
                        "resource {id} ({}) changed since it was hashed: not served until the next rescan hashes it again ({count} such refusal(s) since the last report)",
                        resource.path.display()
                    );
                }
                Err(ApiError::Unavailable(format!(
                    "resource {id} changed on disk since it was hashed; it is being looked at again"
                )))
            }
            Err(e) => {
                log::warn!(
                    "resource {id} ({}) cannot be read: {e}",
                    resource.path.display()
                );
                Err(ApiError::NotFound(format!(
                    "resource {id} is no longer readable here"
                )))
            }
        }
    }

    /// This node, then every other holder of `id` the group knows (none when it cannot say;
    /// as named within the last minute).
    fn every_holder_with_me(&self, id: ResourceId) -> Vec<String> {
        let mut locations: Vec<String> = self
            .identity
            .get()
            .map(|i| i.1.clone())
            .into_iter()
            .collect();
        for location in self.mirrors.every_holder(id).iter() {
            if !locations.contains(location) {
                locations.push(location.clone());
            }
        }
        locations
    }

    /// `GET resources/<id>/pieces`: the piece list of a file held here, or a 302 to a
    /// holder's.
    fn pieces(&self, id: ResourceId) -> Result<Reply, ApiError> {
        let catalog = self.catalog();
        let Some(resource) = catalog.get(&id) else {
            return self.resource(id, "/pieces", false);
        };
        Ok(Reply::data(
            200,
            entity::PIECES,
            &catalog.piece_list(resource),
        ))
    }

    /// `GET resources/<id>/metalink`: a Metalink document of a file held here (this node and
    /// every other holder), or a 302 to a holder's.
    fn metalink(&self, id: ResourceId) -> Result<Reply, ApiError> {
        let catalog = self.catalog();
        let Some(resource) = catalog.get(&id) else {
            return self.resource(id, "/metalink", false);
        };
        let list = catalog.piece_list(resource);
        let holders = self.every_holder_with_me(id);
        let document = crate::metalink::document(&list, Some(&resource.name), &holders);
        Ok(Reply::typed(
            document.into_bytes(),
            crate::metalink::CONTENT_TYPE,
        ))
    }

    /// Local ids from the catalog, the rest from the supernode in one request.
    fn find(&self, request: &Request) -> Result<Reply, ApiError> {
        let ids = parse_id_list(request, self.max_ids)?;
        let catalog = self.catalog();
        let missing: Vec<ResourceId> = ids
            .iter()
            .copied()
            .filter(|id| catalog.get(id).is_none())
            .collect();
        let mut remote: Vec<Option<FileInfo>> = vec![None; ids.len()];
        for entry in self.supernodes.search_many(&missing)? {
            if let Some(i) = ids.iter().position(|id| *id == entry.id) {
                remote[i] = Some(entry.file.every_location());
            }
        }
        let found: Vec<Found> = ids
            .iter()
            .zip(remote)
            .filter_map(|(&id, remote)| match catalog.get(&id) {
                Some(resource) => Some(Found::Local(resource.info())),
                None => remote.map(|info| Found::Remote(Remote { id, info })),
            })
            .collect();
        Ok(Reply::data(200, entity::RESOURCE, &found))
    }
}

/// Hashes the node's files, starts its API and keeps it registered.
pub fn start(config: NodeConfig) -> Result<Instance, Error> {
    let started = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let folder = config.resource_path.clone();
    let catalog = resources::scan(&folder, threads, config.piece_size, None)
        .map_err(|e| Error::io(format!("cannot read RESOURCE_PATH {}", folder.display()), e))?;
    log::info!(
        "hashed {} resources in {} in {:.1?}",
        catalog.len(),
        folder.display(),
        started.elapsed()
    );
    let catalog = Arc::new(catalog);
    let upstream = Arc::new(Upstream::new(
        config.supernodes.clone(),
        config.supernode_timeout,
        config.cluster_keys.clone(),
    ));
    let service = Arc::new(
        NodeService::new(catalog.clone(), upstream.clone(), config.http.max_ids)
            .with_fetch_max_bytes(config.fetch_max_bytes),
    );

    let shutdown = Shutdown::new();
    let http = HttpServer::start(
        &config.http,
        service.clone(),
        shutdown.clone(),
        service.metrics.http.clone(),
    )?;
    let location = registered_location(config.location.as_ref(), http.addr)?.to_string();
    log::info!("node listening on http://{} as {location}", http.addr);

    let name = config
        .name
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let _ = service.identity.set((name.clone(), location.clone()));
    let announcement = Arc::new(Announcement::new(
        registration_body(&name, &location, &catalog),
        catalog.len(),
    ));
    let mut threads = Vec::new();
    if !config.rescan.is_zero() {
        let rescan = Rescan {
            service,
            folder,
            threads: 1,
            period: config.rescan,
            name,
            location: location.clone(),
        };
        threads.push(rescan.spawn(announcement.clone(), shutdown.clone())?);
    }
    let registrar = Registrar {
        upstream,
        announcement,
        location,
        heartbeat: config.heartbeat,
        retry_max: config.register_retry_max,
    };
    threads.push(registrar.spawn(shutdown.clone())?);
    Ok(Instance::new(http, shutdown, Shutdown::new(), threads))
}

/// Looks at the folder every period; a change replaces the catalog and the registration.
struct Rescan {
    service: Arc<NodeService>,
    folder: PathBuf,
    /// One hashing thread: a rescan should not take every core from the requests.
    threads: usize,
    period: Duration,
    name: String,
    location: String,
}

impl Rescan {
    fn spawn(
        self,
        announcement: Arc<Announcement>,
        shutdown: Shutdown,
    ) -> Result<JoinHandle<()>, Error> {
        thread::Builder::new()
            .name("rescan".into())
            .spawn(move || {
                while !shutdown.sleep(self.period) {
                    self.once(&announcement);
                }
            })
            .map_err(|e| Error::io("cannot start the rescan thread", e))
    }

    fn once(&self, announcement: &Announcement) {
        let current = self.service.catalog();
        let scanned = resources::scan(
            &self.folder,
            self.threads,
            current.piece_size(),
            Some(&current),
        );
        let catalog = match scanned {
            Ok(catalog) => catalog,
            Err(e) => {
                log::warn!(
                    "rescan: cannot read {}: {e}; keeping the last list",
                    self.folder.display()
                );
                return;
            }
        };
        if catalog.same_resources(&current) {
            return;
        }
        log::info!(
            "rescan: {} now holds {} resources (was {}); registering the new list",
            self.folder.display(),
            catalog.len(),
            current.len()
        );
        announcement.replace(
            registration_body(&self.name, &self.location, &catalog),
            catalog.len(),
        );
        self.service.replace_catalog(Arc::new(catalog));
    }
}

/// The `ip:port` the node registers: `NODE_LOCATION`'s address, or what its name resolves to
/// now (the operator's resolver, once, at start-up: the supernode takes no names), or the
/// address the API is bound to.
fn registered_location(
    configured: Option<&HostPort>,
    bound: SocketAddr,
) -> Result<SocketAddr, ConfigError> {
    let (host, port) = match configured {
        Some(HostPort::Addr(addr)) => return Ok(*addr),
        Some(HostPort::Name { host, port }) => (host, *port),
        None if bound.ip().is_unspecified() => {
            return Err(ConfigError::new(
                "NODE_LOCATION",
                format!(
                    "required when LHOST is {}: other hosts cannot reach that address",
                    bound.ip()
                ),
            ));
        }
        // As the supernode reads it (an IPv4 address bound as IPv6 is written as IPv4).
        None => return Ok(SocketAddr::new(bound.ip().to_canonical(), bound.port())),
    };
    let resolved: Vec<IpAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| ConfigError::new("NODE_LOCATION", format!("cannot resolve {host}: {e}")))?
        .map(|addr| addr.ip().to_canonical())
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
        .collect();
    // One of the bound address's family when there is one: that is where the API listens.
    let ip = resolved
        .iter()
        .find(|ip| ip.is_ipv4() == bound.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| {
            ConfigError::new(
                "NODE_LOCATION",
                format!("{host} resolves to no address of a host"),
            )
        })?;
    let addr = SocketAddr::new(ip, port);
    log::info!("NODE_LOCATION {host}:{port} resolves to {addr}: registering that");
    Ok(addr)
}

fn registration_body(name: &str, location: &str, catalog: &Catalog) -> Vec<u8> {
    let registration = Registration {
        name: Some(Cow::Borrowed(name)),
        location: Cow::Borrowed(location),
        resources: catalog.iter().map(|r| r.info()).collect(),
    };
    serde_json::to_vec(&registration).unwrap_or_default()
}

mod fetch;
mod mirrors;
#[cfg(test)]
mod tests;

//! The HTTP client side: a node's link to its supernodes, and the agent both roles use.
//!
//! The node keeps the `SUPERNODE_ENDPOINT` list in fail-over order and one "current" entry.
//! A background thread registers with the current supernode (retrying with back-off, moving
//! along the list when one cannot be reached), then sends heartbeats; a 404 to a heartbeat
//! means the supernode forgot the node (it restarted, or removed it), so it registers again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::Deserialize;

use crate::api::{self, FileInfo, Located};

use crate::auth::{self, ClusterKeys};
use crate::error::{ApiError, Error};
use crate::id::ResourceId;
use crate::shutdown::Shutdown;

/// An agent with an overall time-out per request, which reports HTTP statuses as answers
/// (not errors) and never follows redirects.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        // Reuse a kept-alive connection only while the other side surely keeps it open: our
        // servers close connections idle for HTTP_IDLE_TIMEOUT_MS (10 s by default).
        .max_idle_age(Duration::from_secs(3))
        // Nodes and supernodes talk directly on their LAN: an HTTP_PROXY meant for the
        // outside world must not carry (or leak) their traffic.
        .proxy(None)
        .build()
        .into()
}

/// The largest answer accepted from a supernode.
const MAX_ANSWER: u64 = 64 << 20;

/// A node's supernodes, in fail-over order.
pub struct Upstream {
    endpoints: Vec<String>,
    current: AtomicUsize,
    agent: ureq::Agent,
    /// `CLUSTER_KEY`: registrations, heartbeats and leaves are signed with it.
    keys: Option<ClusterKeys>,
}

impl Upstream {
    pub fn new(endpoints: Vec<String>, timeout: Duration, keys: Option<ClusterKeys>) -> Upstream {
        assert!(
            !endpoints.is_empty(),
            "the config checks that there is a supernode"
        );
        Upstream {
            endpoints,
            current: AtomicUsize::new(0),
            agent: agent(timeout),
            keys,
        }
    }

    pub fn current(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// Moves to the next supernode of the list (wrapping around).
    fn fail_over(&self) {
        if self.endpoints.len() > 1 {
            let next = (self.current.load(Ordering::Relaxed) + 1) % self.endpoints.len();
            self.current.store(next, Ordering::Relaxed);
            log::warn!("failing over to supernode {}", self.endpoints[next]);
        }
    }

    /// Where `id` is, according to the supernodes.
    pub fn search(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError> {
        self.search_at(&format!("/search/{id}"))
    }

    /// Every holder of `id` the whole group knows (`?all=true`).
    pub fn search_all(&self, id: ResourceId) -> Result<Option<FileInfo>, ApiError> {
        self.search_at(&format!("/search/{id}?all=true"))
    }

    fn search_at(&self, path: &str) -> Result<Option<FileInfo>, ApiError> {
        let (status, body) = self.get(path)?;
        match status {
            200 => parse_answer::<Located>(&body).map(|entry| Some(entry.file.every_location())),
            404 => Ok(None),
            other => Err(ApiError::Unavailable(format!(
                "the supernode answered {other} to a search"
            ))),
        }
    }

    /// Where each of `ids` is, in one request; ids nobody has are left out.
    pub fn search_many(&self, ids: &[ResourceId]) -> Result<Vec<Located>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(ResourceId::to_string).collect();
        let (status, body) = self.get(&format!("/search?hash_ids={}", list.join(",")))?;
        match status {
            200 => parse_answer(&body),
            other => Err(ApiError::Unavailable(format!(
                "the supernode answered {other} to a search"
            ))),
        }
    }

    /// A name search (`query`: the client's `file_name=...` query, already checked), asked of
    /// the supernode: what it found.
    pub fn search_names(&self, query: &str) -> Result<Vec<Located>, ApiError> {
        let (status, body) = self.get(&format!("/search?{query}"))?;
        match status {
            200 => parse_answer(&body),
            400 => {
                let refusal: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                Err(ApiError::BadRequest(
                    refusal["description"]
                        .as_str()
                        .unwrap_or("bad name search")
                        .into(),
                ))
            }
            other => Err(ApiError::Unavailable(format!(
                "the supernode answered {other} to a name search"
            ))),
        }
    }

    /// GETs `path` from the current supernode, then from the others in order when it cannot be
    /// reached.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), ApiError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..self.endpoints.len() {
            let endpoint = &self.endpoints[(first + step) % self.endpoints.len()];
            match self.agent.get(&format!("{endpoint}{path}")).call() {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    match response
                        .body_mut()
                        .with_config()
                        .limit(MAX_ANSWER)
                        .read_to_vec()
                    {
                        Ok(body) => return Ok((status, body)),
                        Err(e) => failures.push(format!("{endpoint}: {e}")),
                    }
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(ApiError::Unavailable(format!(
            "no supernode answered ({})",
            failures.join("; ")
        )))
    }

    fn post(&self, path: &str, body: &[u8]) -> Result<u16, String> {
        self.post_to(self.current(), path, body)
    }

    /// Posts to `endpoint` (one of the list), signed when there is a cluster key.
    fn post_to(&self, endpoint: &str, path: &str, body: &[u8]) -> Result<u16, String> {
        let url = format!("{endpoint}{path}");
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(keys) = &self.keys {
            // Signed over the path as the supernode sees it: the URL after its host and port.
            let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let target = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
            request = request.header(
                auth::AUTH_HEADER,
                auth::sign_request(keys, "POST", target, body),
            );
        }
        request
            .send(body)
            .map(|response| response.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

fn parse_answer<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    api::data_of(body).map_err(|e| {
        ApiError::Unavailable(format!("the supernode's answer is not understood: {e}"))
    })
}

/// How the node keeps itself registered.
pub struct Registrar {
    pub upstream: Arc<Upstream>,
    pub announcement: Arc<Announcement>,
    pub location: String,
    pub heartbeat: Duration,
    pub retry_max: Duration,
}

/// What the node registers: its registration body, serialised once, replaced when a rescan
/// finds its files changed (the node then registers again at its next heartbeat).
pub struct Announcement {
    current: Mutex<(Arc<[u8]>, usize)>,
    changed: AtomicBool,
}

impl Announcement {
    pub fn new(body: Vec<u8>, resources: usize) -> Announcement {
        Announcement {
            current: Mutex::new((body.into(), resources)),
            changed: AtomicBool::new(false),
        }
    }

    /// Replaces the body; the node registers it at its next heartbeat.
    pub fn replace(&self, body: Vec<u8>, resources: usize) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = (body.into(), resources);
        self.changed.store(true, Ordering::Release);
    }

    /// The body to register and how many resources it lists.
    fn take(&self) -> (Arc<[u8]>, usize) {
        self.changed.store(false, Ordering::Release);
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }
}

impl Registrar {
    pub fn spawn(self, shutdown: Shutdown) -> Result<JoinHandle<()>, Error> {
        thread::Builder::new()
            .name("registration".into())
            .spawn(move || self.run(&shutdown))
            .map_err(|e| Error::io("cannot start the registration thread", e))
    }

    fn run(&self, shutdown: &Shutdown) {
        let first_retry = Duration::from_millis(100).min(self.retry_max);
        let beat = serde_json::json!({ "location": self.location }).to_string();
        // Where this run registered last: a move to another supernode leaves the others.
        let mut registered_at: Option<String> = None;
        'register: loop {
            let mut retry = first_retry;
            let mut attempts = 0u32;
            loop {
                let endpoint = self.upstream.current().to_string();
                let (body, resources) = self.announcement.take();
                match self.upstream.post("/register", &body) {
                    Ok(204 | 200) => {
                        log::info!(
                            "registered {} with {endpoint} ({resources} resources)",
                            self.location
                        );
                        if registered_at.as_deref() != Some(endpoint.as_str()) {
                            self.leave_others(&endpoint, &beat);
                            registered_at = Some(endpoint);
                        }
                        break;
                    }
                    outcome => {
                        attempts += 1;
                        let why = match outcome {
                            Ok(status) => format!("answered {status}"),
                            Err(e) => e,
                        };
                        // One line when it starts failing, then one now and then: not a flood.
                        if attempts == 1 || attempts.is_power_of_two() {
                            log::warn!(
                                "cannot register {} with {endpoint} ({why}); attempt {attempts}, retrying",
                                self.location
                            );
                        }
                        self.upstream.fail_over();
                    }
                }
                if shutdown.sleep(retry) {
                    return;
                }
                retry = (retry * 2).min(self.retry_max);
            }

            let mut failures = 0;
            while !shutdown.sleep(self.heartbeat) {
                if self.announcement.changed() {
                    continue 'register;
                }
                let endpoint = self.upstream.current().to_string();
                match self.upstream.post("/alive", beat.as_bytes()) {
                    Ok(204 | 200) => failures = 0,
                    Ok(404) => {
                        log::info!(
                            "{endpoint} does not know {}; registering again",
                            self.location
                        );
                        continue 'register;
                    }
                    outcome => {
                        failures += 1;
                        log::warn!(
                            "heartbeat to {endpoint} failed ({outcome:?}), {failures} in a row"
                        );
                        if failures >= 2 {
                            self.upstream.fail_over();
                            continue 'register;
                        }
                    }
                }
            }
            // Stopping (SIGTERM): leave now, so that no search hands this node out any more.
            self.leave(&beat);
            return;
        }
    }

    /// A node is registered with one supernode at a time. After a fail-over, or a restart
    /// (the run before may have been registered elsewhere), a registration left at another
    /// supernode of the list would go on handing this node out (its health checks still pass)
    /// after it leaves the one it is registered with: so every other one is told it left.
    fn leave_others(&self, registered: &str, beat: &str) {
        for endpoint in self.upstream.endpoints.iter().filter(|e| *e != registered) {
            // 404: it did not have it. No answer: the leave at this node's stop asks again.
            if let Ok(204 | 200) = self.upstream.post_to(endpoint, "/leave", beat.as_bytes()) {
                log::info!(
                    "left {endpoint}, which still had {} from before",
                    self.location
                );
            }
        }
    }

    fn leave(&self, beat: &str) {
        let endpoint = self.upstream.current().to_string();
        self.leave_others(&endpoint, beat);
        match self.upstream.post("/leave", beat.as_bytes()) {
            Ok(204 | 200) => log::info!(
                "left {endpoint}: the resources of {} are out of its index",
                self.location
            ),
            Ok(404) => log::info!("{endpoint} did not know {} any more", self.location),
            outcome => log::warn!(
                "cannot leave {endpoint} ({outcome:?}): it drops {} after missed health checks",
                self.location
            ),
        }
    }
}

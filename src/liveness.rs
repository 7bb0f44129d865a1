//! Liveness: the supernode asks every registered node `GET /api/node/health`, every period.
//!
//! Checks run concurrently (up to `HEALTH_CONCURRENCY` at once), each with its own time-out, so
//! a hundred hanging nodes delay nobody else's check by more than one time-out. A node that
//! misses `LIVENESS_MISSES` checks in a row, at least a period apart, is removed with its
//! resources. Sweeps run on the liveness thread alone: `GET /api/supernode/xxx` asks it for one
//! and waits, and every request that comes while a sweep is running is answered by the same
//! next sweep, so a burst of them costs one sweep, not one each.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::config::SupernodeConfig;
use crate::error::Error;
use crate::index::{Index, MissRule, NodeToCheck};
use crate::metrics::SupernodeMetrics;
use crate::shutdown::Shutdown;

/// How often a waiting thread looks at the stop signal.
const POLL: Duration = Duration::from_millis(250);

/// Sweeps begun and finished, and the latest one asked for.
#[derive(Default)]
struct Sweeps {
    started: u64,
    finished: u64,
    wanted: u64,
}

pub struct Liveness {
    index: Arc<RwLock<Index>>,
    agent: ureq::Agent,
    period: Duration,
    rule: MissRule,
    concurrency: usize,
    shutdown: Shutdown,
    sweeps: Mutex<Sweeps>,
    changed: Condvar,
    metrics: Arc<SupernodeMetrics>,
}

impl Liveness {
    pub fn new(
        config: &SupernodeConfig,
        index: Arc<RwLock<Index>>,
        shutdown: Shutdown,
        metrics: Arc<SupernodeMetrics>,
    ) -> Liveness {
        Liveness {
            index,
            agent: crate::client::agent(config.health_timeout),
            period: config.liveness_period,
            rule: MissRule {
                max_misses: config.liveness_misses,
                min_gap: config.liveness_period,
            },
            concurrency: config.health_concurrency,
            shutdown,
            sweeps: Mutex::new(Sweeps::default()),
            changed: Condvar::new(),
            metrics,
        }
    }

    fn sweeps(&self) -> MutexGuard<'_, Sweeps> {
        self.sweeps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the thread that sweeps every period, and when asked.
    pub fn spawn(self: Arc<Self>) -> Result<JoinHandle<()>, Error> {
        thread::Builder::new()
            .name("liveness".into())
            .spawn(move || self.run())
            .map_err(|e| Error::io("cannot start the liveness thread", e))
    }

    fn run(&self) {
        let mut next = Instant::now() + self.period;
        loop {
            let mut sweeps = self.sweeps();
            let asked = loop {
                if self.shutdown.is_triggered() {
                    return;
                }
                if sweeps.wanted > sweeps.started {
                    break true;
                }
                let now = Instant::now();
                if now >= next {
                    break false;
                }
                sweeps = self
                    .changed
                    .wait_timeout(sweeps, (next - now).min(POLL))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            };
            sweeps.started += 1;
            let ticket = sweeps.started;
            drop(sweeps);
            // A periodic sweep counts as made at its scheduled time, so consecutive periodic
            // misses are exactly a period apart.
            self.sweep(if asked { Instant::now() } else { next });
            self.sweeps().finished = ticket;
            self.changed.notify_all();
            if !asked {
                // After a sweep longer than a period, start the next one a period from now.
                next = (next + self.period).max(Instant::now());
            }
        }
    }

    /// Asks for a sweep that starts after this call and waits for its end, at most `limit`:
    /// `true` when it ended in time.
    pub fn sweep_now(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut sweeps = self.sweeps();
        let ticket = sweeps.started + 1;
        sweeps.wanted = sweeps.wanted.max(ticket);
        self.changed.notify_all();
        while sweeps.finished < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.shutdown.is_triggered() {
                return false;
            }
            sweeps = self
                .changed
                .wait_timeout(sweeps, left.min(POLL))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Checks every registered node once and removes the ones out of chances.
    fn sweep(&self, at: Instant) {
        let nodes = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes_to_check();
        if nodes.is_empty() {
            return;
        }
        let results = self.check_all(&nodes);
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for (node, alive) in &results {
            if !alive {
                log::debug!("liveness: {} missed a health check", node.location);
            }
            self.metrics.health_check(*alive);
            if let Some(held) = index.record_check(node, *alive, self.rule, at) {
                self.metrics.removed("liveness");
                log::info!(
                    "liveness: removed {} ({held} resources) after {} missed checks",
                    node.location,
                    self.rule.max_misses
                );
            }
        }
    }

    fn check_all(&self, nodes: &[NodeToCheck]) -> Vec<(NodeToCheck, bool)> {
        let (jobs, queue) = unbounded();
        for node in nodes {
            let _ = jobs.send(node.clone());
        }
        drop(jobs);
        let workers = self.concurrency.min(nodes.len());
        thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let queue = queue.clone();
                    scope.spawn(move || {
                        queue
                            .iter()
                            .map(|node| {
                                let alive = self.is_alive(&node.location);
                                (node, alive)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    fn is_alive(&self, location: &str) -> bool {
        let url = format!("http://{location}/api/node/health");
        match self.agent.get(&url).call() {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }
}

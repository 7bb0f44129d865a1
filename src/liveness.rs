//! Liveness: the supernode asks every registered node `GET /api/node/health`, every period.
//!
//! Checks run concurrently (up to `HEALTH_CONCURRENCY` at once), each with its own time-out, so
//! a hundred hanging nodes delay nobody else's check by more than one time-out. A node that
//! misses `LIVENESS_MISSES` checks in a row is removed with its resources. Sweeps never overlap:
//! the periodic one and the one `GET /api/supernode/xxx` asks for take turns.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::config::SupernodeConfig;
use crate::error::Error;
use crate::index::{Index, Registration};
use crate::shutdown::Shutdown;

/// What one sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub checked: usize,
    pub failed: usize,
    pub removed: Vec<String>,
}

pub struct Liveness {
    index: Arc<RwLock<Index>>,
    agent: ureq::Agent,
    period: Duration,
    max_misses: u32,
    concurrency: usize,
    turn: Mutex<()>,
}

impl Liveness {
    pub fn new(config: &SupernodeConfig, index: Arc<RwLock<Index>>) -> Liveness {
        Liveness {
            index,
            agent: crate::client::agent(config.health_timeout),
            period: config.liveness_period,
            max_misses: config.liveness_misses,
            concurrency: config.health_concurrency,
            turn: Mutex::new(()),
        }
    }

    /// Starts the thread that sweeps every period.
    pub fn spawn(self: Arc<Self>, shutdown: Shutdown) -> Result<JoinHandle<()>, Error> {
        thread::Builder::new()
            .name("liveness".into())
            .spawn(move || {
                let mut next = Instant::now() + self.period;
                while !shutdown.sleep(next.saturating_duration_since(Instant::now())) {
                    next += self.period;
                    self.sweep();
                    // After a sweep longer than a period, start the next one a period from now.
                    next = next.max(Instant::now());
                }
            })
            .map_err(|e| Error::io("cannot start the liveness thread", e))
    }

    /// Checks every registered node once and removes the ones out of chances.
    pub fn sweep(&self) -> SweepReport {
        let _turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let nodes = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .registrations();
        if nodes.is_empty() {
            return SweepReport::default();
        }
        let results = self.check_all(&nodes);
        let mut report = SweepReport {
            checked: results.len(),
            ..SweepReport::default()
        };
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for (node, alive) in &results {
            if !alive {
                report.failed += 1;
                log::debug!("liveness: {} missed a health check", node.location);
            }
            if let Some(held) = index.record_check(node, *alive, self.max_misses) {
                log::info!(
                    "liveness: removed {} ({held} resources) after {} missed checks",
                    node.location,
                    self.max_misses
                );
                report.removed.push(node.location.to_string());
            }
        }
        report
    }

    fn check_all(&self, nodes: &[Registration]) -> Vec<(Registration, bool)> {
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

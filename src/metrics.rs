//! What an instance counts, for `GET /metrics` (Prometheus text format, written by the
//! `prometheus` crate) and for the `info` summary line a supernode writes every minute.
//!
//! Each instance has its own registry (tests run several in one process). Counters only grow;
//! the gauges (index sizes, peers, process memory and threads) are read when scraped.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds: 50 us to 10 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Registers `metric` (valid by construction: fixed names and labels) and returns it.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<M, prometheus::Error>,
) -> M {
    let metric = metric.expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help))
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts, labels))
}

/// One thread's handles on the series of one route and status.
struct Handles {
    owner: usize,
    route: &'static str,
    status: u16,
    requests: IntCounter,
    seconds: Histogram,
}

/// Series a thread keeps handles on, at most (routes times the statuses they answer).
const MAX_CACHED_SERIES: usize = 64;

/// The HTTP layer's metrics, on both roles.
#[derive(Clone)]
pub struct HttpMetrics {
    /// Who these metrics are, for the threads' caches of handles (an instance each).
    owner: std::sync::Arc<()>,
    requests: IntCounterVec,
    seconds: HistogramVec,
    pub connections_open: IntGauge,
    connections_refused: IntCounterVec,
}

impl HttpMetrics {
    fn new(registry: &Registry) -> HttpMetrics {
        HttpMetrics {
            owner: std::sync::Arc::new(()),
            requests: counter_vec(
                registry,
                "superpeer_http_requests_total",
                "HTTP requests answered, by route and status (route \"rejected\": refused by a limit before any route)",
                &["route", "status"],
            ),
            seconds: histogram_vec(
                registry,
                "superpeer_http_request_duration_seconds",
                "Time from a request's head to the last byte of its answer, by route",
                &["route"],
            ),
            connections_open: gauge(
                registry,
                "superpeer_http_connections_open",
                "Client connections open now",
            ),
            connections_refused: counter_vec(
                registry,
                "superpeer_http_connections_refused_total",
                "Connections refused or closed to make room, by reason (per_address, full: MAX_CONNECTIONS_PER_IP, MAX_CONNECTIONS; evicted_idle: the idlest closed at the cap)",
                &["reason"],
            ),
        }
    }

    /// Metrics no scrape sees (for servers started without an instance, in tests).
    pub fn detached() -> HttpMetrics {
        HttpMetrics::new(&Registry::new())
    }

    /// One request answered on `route` with `status`, `took` from head to last byte.
    pub fn answered(&self, route: &'static str, status: u16, took: Option<Duration>) {
        // Each thread keeps the handles it used: a request costs two atomic additions, not a
        // hash, a lock and a reference count per series.
        thread_local! {
            static HANDLES: std::cell::RefCell<Vec<Handles>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let owner = std::sync::Arc::as_ptr(&self.owner) as usize;
        HANDLES.with_borrow_mut(|handles| {
            let found = handles.iter().position(|h| {
                h.owner == owner && std::ptr::eq(h.route, route) && h.status == status
            });
            let at = match found {
                Some(at) => at,
                None => {
                    if handles.len() >= MAX_CACHED_SERIES {
                        handles.clear();
                    }
                    let mut code = [0u8; 3];
                    let text = status_text(status, &mut code);
                    handles.push(Handles {
                        owner,
                        route,
                        status,
                        requests: self.requests.with_label_values(&[route, text]),
                        seconds: self.seconds.with_label_values(&[route]),
                    });
                    handles.len() - 1
                }
            };
            let handle = &handles[at];
            handle.requests.inc();
            if let Some(took) = took {
                handle.seconds.observe(took.as_secs_f64());
            }
        });
    }

    pub fn refused(&self, reason: &str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }
}

/// A status code as text, without an allocation.
fn status_text(status: u16, out: &mut [u8; 3]) -> &str {
    let status = status.clamp(100, 999);
    out[0] = b'0' + (status / 100) as u8;
    out[1] = b'0' + (status / 10 % 10) as u8;
    out[2] = b'0' + (status % 10) as u8;
    std::str::from_utf8(out).expect("digits")
}

/// How a search for one id ended, for `superpeer_searches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOutcome {
    LocalHit,
    FoundByGroup,
    NotFound,
    TimedOut,
}

impl SearchOutcome {
    const ALL: [SearchOutcome; 4] = [
        SearchOutcome::LocalHit,
        SearchOutcome::FoundByGroup,
        SearchOutcome::NotFound,
        SearchOutcome::TimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            SearchOutcome::LocalHit => "local_hit",
            SearchOutcome::FoundByGroup => "found_by_group",
            SearchOutcome::NotFound => "not_found",
            SearchOutcome::TimedOut => "timed_out",
        }
    }
}

/// A supernode's metrics: searches, the group's datagrams, the index, liveness, registrations.
pub struct SupernodeMetrics {
    searches: [IntCounter; 4],
    local_seconds: Histogram,
    remote_seconds: Histogram,
    datagrams_sent: IntCounterVec,
    pub datagram_send_failures: IntCounter,
    datagrams_received: IntCounterVec,
    datagrams_dropped: IntCounterVec,
    datagrams_withheld: IntCounterVec,
    registrations: IntCounterVec,
    health_checks: IntCounterVec,
    removals: IntCounterVec,
    pub index_resources: IntGauge,
    pub index_locations: IntGauge,
    pub index_nodes: IntGauge,
    pub peers: IntGauge,
    pub peers_silent: IntGauge,
    /// What [`SupernodeMetrics::summary`] said last.
    last: std::sync::Mutex<Snapshot>,
}

impl SupernodeMetrics {
    /// A supernode's metrics, in `metrics`' registry (one scrape has both).
    pub fn new(metrics: &Metrics) -> SupernodeMetrics {
        let registry = &metrics.registry;
        let searches = counter_vec(
            registry,
            "superpeer_searches_total",
            "Searches for one id, by outcome (local_hit, found_by_group, not_found, timed_out)",
            &["outcome"],
        );
        let seconds = histogram_vec(
            registry,
            "superpeer_search_duration_seconds",
            "Time to answer a search for ids, by kind (local: from the index; remote: the group asked)",
            &["kind"],
        );
        SupernodeMetrics {
            searches: SearchOutcome::ALL.map(|o| searches.with_label_values(&[o.label()])),
            local_seconds: seconds.with_label_values(&["local"]),
            remote_seconds: seconds.with_label_values(&["remote"]),
            datagrams_sent: counter_vec(
                registry,
                "superpeer_datagrams_sent_total",
                "Datagrams sent (to the group, to PEERS, or an answer to one supernode), by kind (query, found, not_found, ...)",
                &["kind"],
            ),
            datagram_send_failures: counter(
                registry,
                "superpeer_datagram_send_failures_total",
                "Datagrams the system refused to send (a cut link, no route)",
            ),
            datagrams_received: counter_vec(
                registry,
                "superpeer_datagrams_received_total",
                "Datagrams received (from the group, or on the supernode's own socket), by kind (query, found, not_found, ...); the own ones looped back are not counted",
                &["kind"],
            ),
            datagrams_dropped: counter_vec(
                registry,
                "superpeer_datagrams_dropped_total",
                "Datagrams dropped before they touched any state, by reason (malformed; name_bound_elsewhere, too_many_names, rate_limited; under the cluster key: unsigned, wrong_mac, stale, replayed)",
                &["reason"],
            ),
            datagrams_withheld: counter_vec(
                registry,
                "superpeer_datagrams_withheld_total",
                "Answers not sent to an address that has not proved it receives there, by reason (amplification: over 3 x the bytes it sent; unproven: a name answer or holder list)",
                &["reason"],
            ),
            registrations: counter_vec(
                registry,
                "superpeer_registrations_total",
                "Registrations, heartbeats and leaves, by request (register, heartbeat, leave) and outcome (accepted, or the refusal's status)",
                &["request", "outcome"],
            ),
            health_checks: counter_vec(
                registry,
                "superpeer_health_checks_total",
                "Health checks of registered nodes, by result (ok, missed)",
                &["result"],
            ),
            removals: counter_vec(
                registry,
                "superpeer_nodes_removed_total",
                "Nodes taken out of the index, by reason (liveness: missed checks; leave: the node said so)",
                &["reason"],
            ),
            index_resources: gauge(
                registry,
                "superpeer_index_resources",
                "Distinct resource ids in the index",
            ),
            index_locations: gauge(
                registry,
                "superpeer_index_locations",
                "Resource-location pairs in the index (an id held by two nodes counts twice)",
            ),
            index_nodes: gauge(registry, "superpeer_index_nodes", "Registered nodes"),
            peers: gauge(
                registry,
                "superpeer_group_peers",
                "Other supernodes counted on: heard from within the last 16 s, their address (or, under a cluster key, their seal) proved, answering",
            ),
            peers_silent: gauge(
                registry,
                "superpeer_configured_peers_silent",
                "PEERS entries that missed the last 3 pings: searches do not wait for them",
            ),
            last: std::sync::Mutex::new(Snapshot::default()),
        }
    }

    /// The `info` line for the searches, registrations and removals since the last call, or
    /// `None` when there were none.
    pub fn summary(&self, period: Duration) -> Option<String> {
        let now = self.snapshot();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = std::mem::replace(&mut *last, now.clone());
        let searches: Vec<u64> = (0..4)
            .map(|i| now.searches[i] - before.searches[i])
            .collect();
        let buckets: Vec<u64> = (0..now.buckets.len())
            .map(|i| now.buckets[i] - before.buckets.get(i).copied().unwrap_or(0))
            .collect();
        let registrations = now.registrations - before.registrations;
        let removals = now.removals - before.removals;
        let total: u64 = searches.iter().sum();
        if total == 0 && registrations == 0 && removals == 0 {
            return None;
        }
        let mut line = format!(
            "summary of the last {:.0?}: {total} searches ({} local, {} found by the group, {} not found, {} timed out)",
            period, searches[0], searches[1], searches[2], searches[3]
        );
        if let (Some(p50), Some(p99)) = (quantile(&buckets, 0.5), quantile(&buckets, 0.99)) {
            let _ = write!(line, ", p50 {p50:.1?}, p99 {p99:.1?}");
        }
        let _ = write!(
            line,
            "; {registrations} registrations, {removals} nodes removed"
        );
        Some(line)
    }

    /// Searches since the start: local hits, found by the group, not found, timed out.
    pub fn search_counts(&self) -> [u64; 4] {
        self.searches.each_ref().map(|c| c.get())
    }

    pub fn searched(&self, outcome: SearchOutcome) {
        self.searches[outcome as usize].inc();
    }

    /// A search request's time: `remote` when it asked the group.
    pub fn search_took(&self, remote: bool, took: Duration) {
        let histogram = if remote {
            &self.remote_seconds
        } else {
            &self.local_seconds
        };
        histogram.observe(took.as_secs_f64());
    }

    pub fn sent(&self, kind: &str) {
        self.datagrams_sent.with_label_values(&[kind]).inc();
    }

    pub fn received(&self, kind: &str) {
        self.datagrams_received.with_label_values(&[kind]).inc();
    }

    pub fn dropped(&self, reason: &str) {
        self.datagrams_dropped.with_label_values(&[reason]).inc();
    }

    pub fn withheld(&self, reason: &str) {
        self.datagrams_withheld.with_label_values(&[reason]).inc();
    }

    /// A registration (`request`: register, heartbeat, leave) accepted, or refused with `status`.
    pub fn registration(&self, request: &str, status: Option<u16>) {
        let mut code = [0u8; 3];
        let outcome = status.map_or("accepted", |s| status_text(s, &mut code));
        self.registrations
            .with_label_values(&[request, outcome])
            .inc();
    }

    pub fn health_check(&self, ok: bool) {
        let result = if ok { "ok" } else { "missed" };
        self.health_checks.with_label_values(&[result]).inc();
    }

    pub fn removed(&self, reason: &str) {
        self.removals.with_label_values(&[reason]).inc();
    }

    /// What the summary line compares with the last one.
    fn snapshot(&self) -> Snapshot {
        use prometheus::core::Metric as _;
        let mut buckets = vec![0u64; BUCKETS.len() + 1];
        for histogram in [&self.local_seconds, &self.remote_seconds] {
            let metric = histogram.metric();
            let histogram = metric.get_histogram();
            let mut below = 0;
            for (slot, bucket) in buckets.iter_mut().zip(histogram.get_bucket()) {
                *slot += bucket.cumulative_count() - below;
                below = bucket.cumulative_count();
            }
            buckets[BUCKETS.len()] += histogram.get_sample_count() - below;
        }
        Snapshot {
            searches: self.searches.each_ref().map(|c| c.get()),
            buckets,
            registrations: self
                .registrations
                .with_label_values(&["register", "accepted"])
                .get(),
            removals: ["liveness", "leave"]
                .iter()
                .map(|reason| self.removals.with_label_values(&[reason]).get())
                .sum(),
        }
    }
}

/// Counts at one moment, for the summary line's differences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    searches: [u64; 4],
    buckets: Vec<u64>,
    registrations: u64,
    removals: u64,
}

/// The quantile `q` of the searches counted in `buckets` (per bucket, not cumulative), as
/// Prometheus's `histogram_quantile` estimates it: linearly within the bucket it falls in.
fn quantile(buckets: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let low = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let Some(&high) = BUCKETS.get(i) else {
                return Some(Duration::from_secs_f64(low));
            };
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(Duration::from_secs_f64(low + (high - low) * within));
        }
        below += count;
    }
    None
}

/// An instance's metrics: the HTTP server's and the process's (a supernode adds its own to
/// the same registry, [`SupernodeMetrics::new`]).
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    resident: IntGauge,
    threads: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http = HttpMetrics::new(&registry);
        Metrics {
            http,
            resident: gauge(
                &registry,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            threads: gauge(&registry, "process_threads", "Number of OS threads"),
            registry,
        }
    }

    /// The text a scrape gets.
    pub fn render(&self) -> Vec<u8> {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|value| value.parse::<i64>().ok())
            };
            if let Some(kb) = field("VmRSS:") {
                self.resident.set(kb * 1024);
            }
            if let Some(threads) = field("Threads:") {
                self.threads.set(threads);
            }
        }
        let mut out = Vec::with_capacity(16 << 10);
        // Writing into a Vec cannot fail, and every family is valid by construction.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut buckets = vec![0u64; BUCKETS.len() + 1];
        assert_eq!(quantile(&buckets, 0.5), None);
        // 100 searches between 0.5 and 1 ms.
        buckets[4] = 100;
        let p50 = quantile(&buckets, 0.5).unwrap();
        assert!((p50.as_secs_f64() - 0.00075).abs() < 1e-9, "{p50:?}");
        // One slow one beyond the last bucket: the p99 stays in the fast bucket.
        buckets[BUCKETS.len()] = 1;
        assert!(quantile(&buckets, 0.99).unwrap() <= Duration::from_millis(1));
        assert_eq!(quantile(&buckets, 1.0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_summary_counts_what_happened_since_the_last_one() {
        let metrics = Metrics::new();
        let supernode = SupernodeMetrics::new(&metrics);
        assert_eq!(supernode.summary(Duration::from_secs(60)), None);
        supernode.searched(SearchOutcome::LocalHit);
        supernode.searched(SearchOutcome::FoundByGroup);
        supernode.search_took(false, Duration::from_micros(80));
        supernode.search_took(true, Duration::from_micros(700));
        supernode.registration("register", None);
        supernode.registration("register", Some(403));
        supernode.removed("leave");
        let line = supernode.summary(Duration::from_secs(60)).unwrap();
        assert!(
            line.starts_with("summary of the last 60s: 2 searches (1 local, 1 found by the group, 0 not found, 0 timed out), p50 "),
            "{line}"
        );
        assert!(
            line.ends_with("; 1 registrations, 1 nodes removed"),
            "{line}"
        );
        assert_eq!(supernode.summary(Duration::from_secs(60)), None);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("superpeer_searches_total{outcome=\"local_hit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("superpeer_registrations_total{outcome=\"403\",request=\"register\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
    }

    #[test]
    fn status_codes_are_written_without_allocating() {
        let mut out = [0u8; 3];
        assert_eq!(status_text(204, &mut out), "204");
        assert_eq!(status_text(5, &mut out), "100");
    }
}

//! Logging for operators: one line per event, to standard error, level from `LOG_LEVEL`.
//! Only this crate's lines are shown; the HTTP libraries' own debug output is left out.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

pub fn init(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .add_filter_allow_str("superpeer")
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_format_rfc3339()
        .build();
    // A second init (tests starting several instances in one process) keeps the first logger.
    let _ = WriteLogger::init(level, config, std::io::stderr());
}

/// A log line that may come thousands of times a second (an attack, a cut link): the first
/// one is written, then at most one per period, each saying how many happened meanwhile.
pub struct Throttle {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event; `Some(n)` when it is time to write a line for the `n` events counted
    /// since the last line (this one included).
    pub fn hit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, count) = &mut *state;
        *count += 1;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(count))
    }
}

/// Writes the metrics' summary line at `info` every `period` in which something happened
/// (nothing when `period` is zero), until `shutdown`.
pub fn spawn_summary(
    metrics: std::sync::Arc<crate::metrics::SupernodeMetrics>,
    period: Duration,
    shutdown: crate::shutdown::Shutdown,
) -> Result<std::thread::JoinHandle<()>, crate::Error> {
    std::thread::Builder::new()
        .name("summary".into())
        .spawn(move || {
            if period.is_zero() {
                return;
            }
            while !shutdown.sleep(period) {
                if let Some(line) = metrics.summary(period) {
                    log::info!("{line}");
                }
            }
        })
        .map_err(|e| crate::Error::io("cannot start the summary thread", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_reports_the_first_event_then_counts() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.hit(), Some(1));
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
        let quick = Throttle::new(Duration::ZERO);
        assert_eq!(quick.hit(), Some(1));
        assert_eq!(quick.hit(), Some(1));
    }
}

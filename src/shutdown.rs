//! One stop signal shared by every thread of a running instance.
//!
//! Loops sleep through [`Shutdown::sleep`] instead of `thread::sleep`, so a stop wakes them at
//! once rather than at the end of their period. [`on_signals`] turns SIGTERM and SIGINT into
//! that stop.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A cloneable stop flag that sleeping threads can wait on.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every thread to stop; wakes the sleeping ones.
    pub fn trigger(&self) {
        let (flag, wake) = &*self.inner;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    pub fn is_triggered(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `duration` or until the stop signal; returns `true` when it is time to stop.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let (flag, wake) = &*self.inner;
        let mut stopped = flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopped = wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// From now on SIGTERM or SIGINT (systemd's stop, Ctrl-C) triggers `stopper`: a graceful stop.
/// A second one ends the process at once, for a stop that takes too long.
pub fn on_signals(stopper: Shutdown) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let name = |signal| {
        if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                log::info!(
                    "{}: stopping (the requests in flight are answered first)",
                    name(signal)
                );
                stopper.trigger();
            }
            if let Some(signal) = received.next() {
                log::warn!("{} again: exiting now", name(signal));
                std::process::exit(1);
            }
        })?;
    Ok(())
}

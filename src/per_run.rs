// SPDX-License-Identifier: MIT OR Apache-2.0
//! The counters behind an element's `stats`, one set per run.

use std::sync::{Arc, Mutex};

/// The field of a `stats` structure that names its counters, as an array of strings: the
/// fields that only grow during a run (served to Prometheus as counters, which a restart
/// resets). The structure's other numbers are gauges.
pub const COUNTERS: &str = "counters";

/// The value of [`COUNTERS`] for these field names.
#[cfg(feature = "gst")]
pub fn counters(fields: &[&str]) -> gst::Array {
    use gst::prelude::ToSendValue;
    fields.iter().map(|field| field.to_send_value()).collect()
}

/// An element's counters for its current run: fresh at each start, still readable after
/// stop until the next start, so that every element's `stats` covers the same span. The
/// counters are shared (`Arc`) with whoever updates them besides the element, such as a
/// Kafka client's callbacks; those of a finished run no longer count.
pub struct PerRun<T>(Mutex<Arc<T>>);

impl<T: Default> Default for PerRun<T> {
    fn default() -> Self {
        PerRun(Mutex::new(Arc::default()))
    }
}

impl<T: Default> PerRun<T> {
    /// The counters of the current run, or of the last one once stopped.
    pub fn current(&self) -> Arc<T> {
        self.0.lock().unwrap().clone()
    }

    /// A run starts: fresh counters from now on, also returned for handing on.
    pub fn restart(&self) -> Arc<T> {
        let fresh = Arc::new(T::default());
        *self.0.lock().unwrap() = fresh.clone();
        fresh
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn a_restart_counts_from_zero_and_the_old_runs_updates_no_longer_count() {
        let counters: PerRun<AtomicU64> = PerRun::default();
        let first = counters.current();
        first.fetch_add(3, Ordering::Relaxed);
        assert_eq!(counters.current().load(Ordering::Relaxed), 3);
        let second = counters.restart();
        assert_eq!(counters.current().load(Ordering::Relaxed), 0);
        first.fetch_add(1, Ordering::Relaxed);
        second.fetch_add(2, Ordering::Relaxed);
        assert_eq!(counters.current().load(Ordering::Relaxed), 2);
    }
}

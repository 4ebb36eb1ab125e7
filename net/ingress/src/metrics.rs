//! [`IngressMetrics`]: responses counted by HTTP status code. One atomic per code, so counting
//! on the request path takes no lock; the admin API reads the counts for `/metrics`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The lowest HTTP status code.
const FIRST: u16 = 100;
/// The highest status code an HTTP response can carry (three digits).
const LAST: u16 = 999;
const SLOTS: usize = (LAST - FIRST + 1) as usize;

/// Responses ingress sent, by status code. Cheap to clone; clones count into the same counters,
/// so the server and `/metrics` share one handle.
#[derive(Clone)]
pub struct IngressMetrics {
    by_code: Arc<[AtomicU64; SLOTS]>,
}

impl Default for IngressMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IngressMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
}

impl IngressMetrics {
    /// Zeroed counters.
    pub fn new() -> Self {
        IngressMetrics {
            by_code: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    fn slot(&self, code: u16) -> Option<&AtomicU64> {
        let index = usize::from(code.checked_sub(FIRST)?);
        self.by_code.get(index)
    }

    /// Counts one response with status `code`; codes outside 100..=999 (which no HTTP response
    /// carries) are ignored.
    pub fn record(&self, code: u16) {
        if let Some(slot) = self.slot(code) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Responses sent with status `code` so far.
    pub fn count(&self, code: u16) -> u64 {
        self.slot(code)
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    /// Every code seen at least once with its count, in ascending code order.
    pub fn snapshot(&self) -> Vec<(u16, u64)> {
        (FIRST..=LAST)
            .zip(self.by_code.iter())
            .filter_map(|(code, slot)| {
                let n = slot.load(Ordering::Relaxed);
                (n > 0).then_some((code, n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_counts_and_only_seen_codes_are_listed() {
        let metrics = IngressMetrics::new();
        let clone = metrics.clone();
        for code in [200, 404, 200, 470, 999, 100] {
            clone.record(code);
        }
        assert_eq!(
            metrics.snapshot(),
            [(100, 1), (200, 2), (404, 1), (470, 1), (999, 1)]
        );
        assert_eq!(metrics.count(200), 2);
        assert_eq!(metrics.count(500), 0);
    }

    #[test]
    fn codes_no_response_carries_are_ignored() {
        let metrics = IngressMetrics::default();
        for code in [0, 99, 1000, u16::MAX] {
            metrics.record(code);
            assert_eq!(metrics.count(code), 0);
        }
        assert!(metrics.snapshot().is_empty());
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let metrics = IngressMetrics::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let metrics = metrics.clone();
                scope.spawn(move || {
                    for _ in 0..1000 {
                        metrics.record(503);
                    }
                });
            }
        });
        assert_eq!(metrics.count(503), 4000);
    }
}

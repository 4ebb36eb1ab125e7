//! A fixed-bucket histogram in the shape Prometheus expects: cumulative counts per upper bound,
//! plus sum and count.

use serde::Serialize;

/// Counts observations into buckets with fixed upper bounds.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// Upper bounds, ascending; an implicit `+Inf` bucket follows.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more entry than `bounds`, for `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// A histogram with the given ascending upper bounds.
    pub fn new(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len() + 1];
        Self {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// Buckets for latencies in seconds, 50 µs to 10 s.
    pub fn latency_seconds() -> Self {
        Self::new(vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 10.0,
        ])
    }

    /// Buckets for invocation durations in seconds, 1 ms to 1 h.
    pub fn invocation_seconds() -> Self {
        Self::new(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0, 3600.0,
        ])
    }

    /// Buckets for batch sizes, 1 to 4096 commands.
    pub fn batch_sizes() -> Self {
        Self::new((0..13).map(|i| f64::from(1u32 << i)).collect())
    }

    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Cumulative counts per bound, ending with `(+Inf, count)`, as Prometheus exposes them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(bound, n)| {
                running += n;
                (bound, running)
            })
            .collect()
    }
}

/// What one handler's invocations did on a partition while this node led it (since the process
/// started): rendered by service and handler, summed over partitions.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerMetrics {
    /// The service.
    pub service: String,
    /// The handler.
    pub handler: String,
    /// Invocations accepted (created, including scheduled ones).
    pub started: u64,
    /// Invocations completed, successfully or not.
    pub completed: u64,
    /// Invocations completed with a failure (a subset of `completed`).
    pub failed: u64,
    /// Attempts started (the first included).
    pub attempts: u64,
    /// Retries scheduled after a failed attempt.
    pub retries: u64,
    /// Seconds from acceptance to completion.
    pub duration: Histogram,
}

impl HandlerMetrics {
    /// Zeroed counters for `service/handler`.
    pub fn new(service: &str, handler: &str) -> Self {
        HandlerMetrics {
            service: service.to_owned(),
            handler: handler.to_owned(),
            started: 0,
            completed: 0,
            failed: 0,
            attempts: 0,
            retries: 0,
            duration: Histogram::invocation_seconds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::new(vec![1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 1, 1]);
        assert_eq!(h.cumulative(), vec![(1.0, 2), (2.0, 3), (f64::INFINITY, 4)]);
        assert_eq!(h.count, 4);
        assert!((h.sum - 6.0).abs() < 1e-9);
    }
}

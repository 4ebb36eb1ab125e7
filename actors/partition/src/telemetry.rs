//! The leader's metrics and spans from observations: counters per service and handler, the
//! journal-entry counter, ticks per schedule, and spans derived from applied commands handed to
//! the span sink.

use crate::actor::PartitionActor;
use crate::metrics::HandlerMetrics;
use holdfast_fsm::Observation;
use holdfast_types::Target;

impl PartitionActor {
    /// Updates the counters of `target`'s handler, created on first use (names are cloned only
    /// then: this runs several times per invocation).
    fn count(&mut self, target: &Target, update: impl FnOnce(&mut HandlerMetrics)) {
        let known = self
            .handlers
            .get(&target.service)
            .is_some_and(|handlers| handlers.contains_key(&target.handler));
        if !known {
            self.handlers
                .entry(target.service.clone())
                .or_default()
                .insert(
                    target.handler.clone(),
                    HandlerMetrics::new(&target.service, &target.handler),
                );
        }
        if let Some(metrics) = self
            .handlers
            .get_mut(&target.service)
            .and_then(|handlers| handlers.get_mut(&target.handler))
        {
            update(metrics);
        }
    }

    /// An attempt of `target` starts.
    pub(crate) fn observe_attempt(&mut self, target: &Target) {
        self.count(target, |metrics| metrics.attempts += 1);
    }

    /// Applies one observation of a committed command.
    pub(crate) fn observe(&mut self, observation: &Observation) {
        match observation {
            Observation::Accepted { target } => self.count(target, |m| m.started += 1),
            Observation::Retrying { target } => self.count(target, |m| m.retries += 1),
            Observation::Appended => self.journal_entries += 1,
            Observation::Completed(completion) => {
                let elapsed_ms = completion
                    .completed_at_ms
                    .saturating_sub(completion.created_at_ms);
                let failed = completion.failure.is_some();
                self.count(&completion.target, |metrics| {
                    metrics.completed += 1;
                    metrics.failed += u64::from(failed);
                    metrics.duration.observe(elapsed_ms as f64 / 1000.0);
                });
            }
            Observation::Span(span) => self.settings.spans.emit(span.as_ref().clone()),
            Observation::ScheduleTicks {
                name,
                fired,
                skipped,
            } => {
                let ticks = match self.schedule_ticks.get_mut(name) {
                    Some(ticks) => ticks,
                    None => self.schedule_ticks.entry(name.clone()).or_default(),
                };
                ticks.0 += fired;
                ticks.1 += skipped;
            }
            Observation::Limit { name, removed, .. } if *removed => {
                self.limit_gauges.remove(name);
            }
            Observation::Limit {
                name,
                running,
                queued,
                granted,
                ..
            } => {
                let gauges = (*running, *queued, *granted);
                match self.limit_gauges.get_mut(name) {
                    Some(known) => *known = gauges,
                    None => {
                        self.limit_gauges.insert(name.clone(), gauges);
                    }
                }
            }
        }
    }
}

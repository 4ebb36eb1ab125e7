//! The leader's metrics and spans from observations: counters per service and handler, the
//! journal-entry counter, and spans derived from applied commands handed to the span sink.

use crate::actor::PartitionActor;
use crate::metrics::HandlerMetrics;
use holdfast_fsm::Observation;
use holdfast_types::Target;

impl PartitionActor {
    /// The counters of `target`'s handler, created on first use.
    fn handler_metrics(&mut self, target: &Target) -> &mut HandlerMetrics {
        self.handlers
            .entry(target.service.clone())
            .or_default()
            .entry(target.handler.clone())
            .or_insert_with(|| HandlerMetrics::new(&target.service, &target.handler))
    }

    /// An attempt of `target` starts.
    pub(crate) fn observe_attempt(&mut self, target: &Target) {
        self.handler_metrics(target).attempts += 1;
    }

    /// Applies one observation of a committed command.
    pub(crate) fn observe(&mut self, observation: &Observation) {
        match observation {
            Observation::Accepted { target } => self.handler_metrics(target).started += 1,
            Observation::Retrying { target } => self.handler_metrics(target).retries += 1,
            Observation::Appended => self.journal_entries += 1,
            Observation::Completed(completion) => {
                let metrics = self.handler_metrics(&completion.target);
                metrics.completed += 1;
                if completion.failure.is_some() {
                    metrics.failed += 1;
                }
                let elapsed_ms = completion
                    .completed_at_ms
                    .saturating_sub(completion.created_at_ms);
                metrics.duration.observe(elapsed_ms as f64 / 1000.0);
            }
            Observation::Span(span) => self.settings.spans.emit(span.as_ref().clone()),
        }
    }
}

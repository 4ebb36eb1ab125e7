//! [`StatementPool`]: one statement's share of the node's memory pool.
//!
//! ```text
//!   node pool (GreedyMemoryPool, memory_limit_bytes, shared by every statement)
//!     ├─ StatementPool (at most memory_limit_bytes / 2)  ← statement A's operators
//!     └─ StatementPool (at most memory_limit_bytes / 2)  ← statement B's operators
//! ```
//!
//! A reservation is granted only when it fits both the statement's share and what the node pool
//! has left; otherwise the operator fails with DataFusion's `ResourcesExhausted`.

use datafusion::common::DataFusionError;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A statement's share of a node-wide [`MemoryPool`]: grants reservations from the node pool
/// while the statement holds at most `limit` bytes.
#[derive(Debug)]
pub(crate) struct StatementPool {
    node: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl StatementPool {
    /// A share of at most `limit` bytes of `node`.
    pub(crate) fn new(node: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            node,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for StatementPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "statement share of {} bytes ({} held) of {}",
            self.limit,
            self.used.load(Ordering::Relaxed),
            self.node
        )
    }
}

impl MemoryPool for StatementPool {
    fn name(&self) -> &str {
        "holdfast statement share"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.node.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.node.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.node.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.node.shrink(reservation, shrink);
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(shrink))
            });
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::common::Result<()> {
        let limit = self.limit;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional).filter(|total| *total <= limit)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "Failed to allocate additional {additional} bytes for {} with {} bytes \
                     already allocated: the statement holds {used} of its {limit} bytes \
                     (half of the node's [sql] memory_limit_bytes)",
                    reservation.consumer().name(),
                    reservation.size(),
                ))
            })?;
        if let Err(e) = self.node.try_grow(reservation, additional) {
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                    Some(used.saturating_sub(additional))
                });
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_statement_holds_at_most_its_share_of_the_node_pool() {
        let node: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let a: Arc<dyn MemoryPool> = Arc::new(StatementPool::new(node.clone(), 600));
        let b: Arc<dyn MemoryPool> = Arc::new(StatementPool::new(node.clone(), 600));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        assert!(ra.try_grow(600).is_ok());
        let over = ra.try_grow(1).expect_err("over the statement's share");
        assert!(
            matches!(over, DataFusionError::ResourcesExhausted(_)),
            "{over}"
        );
        assert_eq!(node.reserved(), 600);
        // B fits its share but not what the node has left.
        let starved = rb.try_grow(500).expect_err("over the node pool");
        assert!(
            starved.to_string().contains("Resources exhausted"),
            "{starved}"
        );
        assert!(rb.try_grow(400).is_ok());
        assert_eq!(node.reserved(), 1000);
        ra.free();
        assert_eq!(a.reserved(), 0);
        assert_eq!(node.reserved(), 400);
        assert!(rb.try_grow(200).is_ok());
    }
}

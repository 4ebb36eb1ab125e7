//! The limits this partition applies and grants. The registry holds their definitions; every
//! partition's leader proposes `SetLimits` when the registry's limits differ from the ones its
//! partition applies (looked at every second, so a change takes effect within about a second).
//! A limit's home partition grants its permits; when its token bucket is empty, applying asks
//! (`WakeLimit`) for a `DrainLimit` once the next token is in, which this leader proposes. A new
//! leader proposes `DrainLimit` for every limit it is home of, so no wake is lost with the old
//! leader.

use crate::actor::PartitionActor;
use crate::effects::now_ms;
use crate::leader::Leadership;
use actix::prelude::*;
use holdfast_types::{Command, Limit};
use std::collections::HashMap;
use std::time::Duration;

/// The leader's view of the limits.
#[derive(Default)]
pub(crate) struct Limiting {
    /// A look is reading the applied limits.
    looking: bool,
    /// The limits this leader proposed, until it sees them applied.
    proposed: Option<Vec<Limit>>,
    /// Whether this leader proposed a `DrainLimit` for the limits it is home of.
    drained: bool,
    /// The pending wake per limit: when, and its timer.
    wakes: HashMap<String, (u64, SpawnHandle)>,
}

impl PartitionActor {
    /// Compares the registry's limits with the applied ones (leader only) and proposes the
    /// registry's when they differ.
    pub(crate) fn look_at_limits(&mut self, ctx: &mut Context<Self>) {
        let partition = self.partition();
        let partitions = self.settings.placement.partitions;
        let wanted: Vec<Limit> = self.settings.registry.borrow().limits().cloned().collect();
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        let Some(group) = &self.group else { return };
        if !leader.limits.drained {
            leader.limits.drained = true;
            let now = now_ms();
            let drains: Vec<Command> = wanted
                .iter()
                .filter(|limit| {
                    holdfast_types::routing::partition_for_key(limit.partition_key(), partitions)
                        == partition
                })
                .map(|limit| Command::DrainLimit {
                    name: limit.name.clone(),
                    at_ms: now,
                })
                .collect();
            if !drains.is_empty() {
                self.submit(drains, ctx);
                return self.look_at_limits(ctx);
            }
        }
        if leader.limits.looking {
            return;
        }
        leader.limits.looking = true;
        let term = leader.term;
        let state = group.state.clone();
        let read = async move {
            let applied = tokio::task::spawn_blocking(move || state.applied_limits())
                .await
                .map_err(|e| e.to_string())
                .and_then(|read| read.map_err(|e| e.to_string()));
            (term, applied)
        };
        ctx.spawn(
            read.into_actor(self)
                .map(move |(term, applied), act, ctx| act.limits_read(term, applied, wanted, ctx)),
        );
    }

    /// Proposes `wanted` if the partition applies other limits and this leader has not proposed
    /// them already.
    fn limits_read(
        &mut self,
        term: u64,
        applied: Result<Vec<Limit>, String>,
        wanted: Vec<Limit>,
        ctx: &mut Context<Self>,
    ) {
        let partition = self.partition();
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if leader.term != term {
            return;
        }
        leader.limits.looking = false;
        let applied = match applied {
            Ok(applied) => applied,
            Err(message) => {
                tracing::warn!(%partition, %message, "cannot read the applied limits");
                return;
            }
        };
        if applied == wanted {
            leader.limits.proposed = None;
            return;
        }
        if leader.limits.proposed.as_ref() == Some(&wanted) {
            return;
        }
        leader.limits.proposed = Some(wanted.clone());
        let set = Command::SetLimits {
            limits: wanted,
            at_ms: now_ms(),
        };
        self.submit(vec![set], ctx);
    }

    /// Proposes `DrainLimit` for limit `name` at `at_ms` (leader only), unless an earlier wake of
    /// it is pending.
    pub(crate) fn wake_limit(&mut self, name: &str, at_ms: u64, ctx: &mut Context<Self>) {
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if let Some((when, timer)) = leader.limits.wakes.get(name) {
            if *when <= at_ms {
                return;
            }
            ctx.cancel_future(*timer);
        }
        let wait = Duration::from_millis(at_ms.saturating_sub(now_ms()));
        let owned = name.to_owned();
        let timer = ctx.run_later(wait, move |act, ctx| {
            if let Leadership::Leading(leader) = &mut act.leadership {
                leader.limits.wakes.remove(&owned);
            }
            let drain = Command::DrainLimit {
                name: owned,
                at_ms: now_ms(),
            };
            act.submit(vec![drain], ctx);
        });
        leader.limits.wakes.insert(name.to_owned(), (at_ms, timer));
    }
}

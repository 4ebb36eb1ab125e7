//! [`ShuffleActor`]: moves a leader's outbox messages to the partitions that own their targets,
//! exactly once.
//!
//! Exactly once = at least once + dedup: a message stays in the source's outbox until the target
//! has committed it, and the target applies a `ShuffleIn` only if its sequence number is above the
//! last one it applied from this source. That dedup is only sound if a target never sees a later
//! message before an earlier one, so each target receives its messages in sequence order, all of
//! its pending ones in one all-or-nothing batch (`ProposeInternal`), one batch in flight at a
//! time; a batch ends at the group-commit byte limit (with at least one message), so no proposal
//! grows with the backlog.
//! Once every message up to `n` is delivered, the source truncates its outbox up to `n`.

use crate::actor::PartitionActor;
use crate::effects::now_ms;
use crate::{ProposeInternal, Request, Router};
use actix::prelude::*;
use holdfast_types::routing::partition_for_key;
use holdfast_types::{Command, OutboxMessage, PartitionId};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// How long a failed delivery waits before it is tried again.
const REDELIVERY_BACKOFF: Duration = Duration::from_millis(100);

/// A new outbox message to deliver (from an `Effect::ShuffleOut`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ShuffleOut {
    pub(crate) seq: u64,
    pub(crate) message: OutboxMessage,
}

/// The whole undelivered outbox, read by a new leader; replaces what the shuffle holds.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Reload(pub(crate) Vec<(u64, OutboxMessage)>);

/// The way to every partition's leader (the shuffle waits for it to deliver).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Targets(pub(crate) Router);

/// The source no longer leads: deliver nothing more.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Halt;

/// Delivers one partition's outbox.
pub(crate) struct ShuffleActor {
    source: PartitionId,
    owner: Addr<PartitionActor>,
    router: Option<Router>,
    /// Undelivered messages by sequence number.
    pending: BTreeMap<u64, OutboxMessage>,
    /// Targets with a batch in flight.
    in_flight: HashSet<PartitionId>,
    /// Highest sequence number handed to this shuffle.
    highest: u64,
    /// Highest sequence number whose truncation was asked for.
    truncated: u64,
    /// Most (approximate) bytes of one delivery batch.
    max_batch_bytes: usize,
    halted: bool,
}

impl ShuffleActor {
    pub(crate) fn new(
        source: PartitionId,
        owner: Addr<PartitionActor>,
        router: Option<Router>,
        max_batch_bytes: usize,
    ) -> Self {
        Self {
            source,
            owner,
            router,
            pending: BTreeMap::new(),
            in_flight: HashSet::new(),
            highest: 0,
            truncated: 0,
            max_batch_bytes,
            halted: false,
        }
    }

    fn add(&mut self, seq: u64, message: OutboxMessage) {
        self.highest = self.highest.max(seq);
        self.pending.insert(seq, message);
    }

    /// Sends each idle target all of its pending messages, in order, as one batch (once the
    /// partitions are known).
    fn deliver(&mut self, ctx: &mut Context<Self>) {
        let Some(router) = self.router.clone().filter(|_| !self.halted) else {
            return;
        };
        let partitions = router.partitions();
        let mut batches: BTreeMap<PartitionId, (usize, Vec<(u64, Command)>)> = BTreeMap::new();
        let mut full: HashSet<PartitionId> = HashSet::new();
        for (seq, message) in &self.pending {
            let target = partition_for_key(message.partition_key(), partitions);
            if self.in_flight.contains(&target) || full.contains(&target) {
                continue;
            }
            let command = Command::ShuffleIn {
                from: self.source,
                seq: *seq,
                message: message.clone(),
                at_ms: now_ms(),
            };
            let (bytes, batch) = batches.entry(target).or_default();
            let size = command.approx_size();
            if !batch.is_empty() && *bytes + size > self.max_batch_bytes {
                // Later messages wait for the next batch: order per target is kept.
                full.insert(target);
                continue;
            }
            *bytes += size;
            batch.push((*seq, command));
        }
        for (target, (_, batch)) in batches {
            self.in_flight.insert(target);
            let (seqs, commands): (Vec<u64>, Vec<Command>) = batch.into_iter().unzip();
            let router = router.clone();
            let sent = async move { router.ask(target, Request::Internal(commands)).await };
            ctx.spawn(sent.into_actor(self).map(move |result, act, ctx| {
                act.in_flight.remove(&target);
                match result {
                    Ok(_) => {
                        for seq in seqs {
                            act.pending.remove(&seq);
                        }
                        act.truncate_delivered();
                        act.deliver(ctx);
                    }
                    Err(e) => {
                        // Nothing of the batch was committed (or the target dedups what was):
                        // the same messages go again, still in order.
                        let reason = e.to_string();
                        tracing::debug!(source = %act.source, %target, %reason, "outbox delivery failed; retrying");
                        ctx.run_later(REDELIVERY_BACKOFF, |act, ctx| act.deliver(ctx));
                    }
                }
            }));
        }
    }

    /// Asks the source to truncate its outbox up to the last message before the first undelivered.
    fn truncate_delivered(&mut self) {
        let up_to = match self.pending.keys().next() {
            Some(first) => first.saturating_sub(1),
            None => self.highest,
        };
        if up_to > self.truncated {
            self.truncated = up_to;
            self.owner
                .do_send(ProposeInternal(vec![Command::OutboxDelivered { up_to }]));
        }
    }
}

impl Actor for ShuffleActor {
    type Context = Context<Self>;
}

impl Handler<ShuffleOut> for ShuffleActor {
    type Result = ();

    fn handle(&mut self, out: ShuffleOut, ctx: &mut Context<Self>) {
        self.add(out.seq, out.message);
        self.deliver(ctx);
    }
}

impl Handler<Reload> for ShuffleActor {
    type Result = ();

    fn handle(&mut self, Reload(outbox): Reload, ctx: &mut Context<Self>) {
        self.halted = false;
        self.pending.clear();
        for (seq, message) in outbox {
            self.add(seq, message);
        }
        self.deliver(ctx);
    }
}

impl Handler<Targets> for ShuffleActor {
    type Result = ();

    fn handle(&mut self, Targets(router): Targets, ctx: &mut Context<Self>) {
        self.router = Some(router);
        self.deliver(ctx);
    }
}

impl Handler<Halt> for ShuffleActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        self.halted = true;
        ctx.stop();
    }
}

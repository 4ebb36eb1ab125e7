//! An in-memory [`Store`] for tests and tools: the same contract as the redb store, no I/O.

use crate::Store;
use crate::state::{Invocation, JournalItem, LimitState, Promise, Queued, ScheduleRun};
use holdfast_protocol::EntryIndex;
use holdfast_types::{
    InvocationId, Limit, ObjectKey, OutboxMessage, PartitionId, Target, TimerKey,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;

/// Partition state held in ordered maps; it cannot fail. Equal stores hold equal state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    state: BTreeMap<(ObjectKey, String), Vec<u8>>,
    /// Status records by invocation.
    pub invocations: BTreeMap<InvocationId, Invocation>,
    /// Journal entries by (invocation, index).
    pub journal: BTreeMap<(InvocationId, EntryIndex), JournalItem>,
    /// Exclusive lock holders by object.
    pub locks: BTreeMap<ObjectKey, InvocationId>,
    /// Inbox queues by object (empty queues are removed).
    pub inboxes: BTreeMap<ObjectKey, VecDeque<InvocationId>>,
    /// Idempotency index: (target, key) to invocation.
    pub idempotency: BTreeMap<(Target, String), InvocationId>,
    /// Outbox messages by sequence number.
    pub outbox: BTreeMap<u64, OutboxMessage>,
    /// The last outbox sequence number handed out.
    pub outbox_seq: u64,
    /// Last applied sequence number per source partition.
    pub dedup: BTreeMap<PartitionId, u64>,
    /// Pending timers, ordered by fire time like the redb timer table.
    pub timers: BTreeSet<TimerKey>,
    /// Workflow promises by (workflow object, name).
    pub promises: BTreeMap<(ObjectKey, String), Promise>,
    /// The record of each fired schedule's ticks, by schedule name.
    pub schedule_runs: BTreeMap<String, ScheduleRun>,
    /// The limits applied.
    pub limits: Vec<Limit>,
    /// What this partition keeps of the limits it is home of, by name.
    pub limit_states: BTreeMap<String, LimitState>,
    /// Queue rows by (limit, number).
    pub limit_queued: BTreeMap<(String, u64), Queued>,
    /// Permits held by (limit, invocation).
    pub limit_held: BTreeMap<(String, InvocationId), u32>,
}

impl MemoryStore {
    /// Every state entry, ordered by object and name.
    pub fn entries(&self) -> impl Iterator<Item = (&ObjectKey, &str, &[u8])> {
        self.state
            .iter()
            .map(|((object, name), value)| (object, name.as_str(), value.as_slice()))
    }
}

impl Store for MemoryStore {
    type Error = Infallible;

    fn get_state(&self, object: &ObjectKey, name: &str) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.state.get(&(object.clone(), name.to_owned())).cloned())
    }

    fn put_state(
        &mut self,
        object: &ObjectKey,
        name: &str,
        value: &[u8],
    ) -> Result<(), Infallible> {
        self.state
            .insert((object.clone(), name.to_owned()), value.to_vec());
        Ok(())
    }

    fn delete_state(&mut self, object: &ObjectKey, name: &str) -> Result<(), Infallible> {
        self.state.remove(&(object.clone(), name.to_owned()));
        Ok(())
    }

    fn delete_all_state(&mut self, object: &ObjectKey) -> Result<(), Infallible> {
        self.state.retain(|(owner, _), _| owner != object);
        Ok(())
    }

    fn state_names(&self, object: &ObjectKey) -> Result<Vec<String>, Infallible> {
        Ok(self
            .state
            .keys()
            .filter(|(owner, _)| owner == object)
            .map(|(_, name)| name.clone())
            .collect())
    }

    fn get_invocation(&self, id: InvocationId) -> Result<Option<Invocation>, Infallible> {
        Ok(self.invocations.get(&id).cloned())
    }

    fn put_invocation(&mut self, id: InvocationId, record: &Invocation) -> Result<(), Infallible> {
        self.invocations.insert(id, record.clone());
        Ok(())
    }

    fn delete_invocation(&mut self, id: InvocationId) -> Result<(), Infallible> {
        self.invocations.remove(&id);
        Ok(())
    }

    fn get_journal(
        &self,
        id: InvocationId,
        index: EntryIndex,
    ) -> Result<Option<JournalItem>, Infallible> {
        Ok(self.journal.get(&(id, index)).cloned())
    }

    fn put_journal(
        &mut self,
        id: InvocationId,
        index: EntryIndex,
        item: &JournalItem,
    ) -> Result<(), Infallible> {
        self.journal.insert((id, index), item.clone());
        Ok(())
    }

    fn delete_journal(&mut self, id: InvocationId) -> Result<(), Infallible> {
        self.journal.retain(|(owner, _), _| *owner != id);
        Ok(())
    }

    fn get_lock(&self, object: &ObjectKey) -> Result<Option<InvocationId>, Infallible> {
        Ok(self.locks.get(object).copied())
    }

    fn put_lock(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Infallible> {
        self.locks.insert(object.clone(), id);
        Ok(())
    }

    fn delete_lock(&mut self, object: &ObjectKey) -> Result<(), Infallible> {
        self.locks.remove(object);
        Ok(())
    }

    fn inbox_push(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Infallible> {
        self.inboxes
            .entry(object.clone())
            .or_default()
            .push_back(id);
        Ok(())
    }

    fn inbox_pop(&mut self, object: &ObjectKey) -> Result<Option<InvocationId>, Infallible> {
        let Some(queue) = self.inboxes.get_mut(object) else {
            return Ok(None);
        };
        let front = queue.pop_front();
        if queue.is_empty() {
            self.inboxes.remove(object);
        }
        Ok(front)
    }

    fn inbox_remove(&mut self, object: &ObjectKey, id: InvocationId) -> Result<bool, Infallible> {
        let Some(queue) = self.inboxes.get_mut(object) else {
            return Ok(false);
        };
        let before = queue.len();
        queue.retain(|queued| *queued != id);
        let removed = queue.len() != before;
        if queue.is_empty() {
            self.inboxes.remove(object);
        }
        Ok(removed)
    }

    fn get_idempotency(
        &self,
        target: &Target,
        key: &str,
    ) -> Result<Option<InvocationId>, Infallible> {
        Ok(self
            .idempotency
            .get(&(target.clone(), key.to_owned()))
            .copied())
    }

    fn put_idempotency(
        &mut self,
        target: &Target,
        key: &str,
        id: InvocationId,
    ) -> Result<(), Infallible> {
        self.idempotency
            .insert((target.clone(), key.to_owned()), id);
        Ok(())
    }

    fn delete_idempotency(&mut self, target: &Target, key: &str) -> Result<(), Infallible> {
        self.idempotency.remove(&(target.clone(), key.to_owned()));
        Ok(())
    }

    fn outbox_push(&mut self, message: &OutboxMessage) -> Result<u64, Infallible> {
        self.outbox_seq += 1;
        self.outbox.insert(self.outbox_seq, message.clone());
        Ok(self.outbox_seq)
    }

    fn outbox_truncate(&mut self, up_to: u64) -> Result<(), Infallible> {
        self.outbox.retain(|seq, _| *seq > up_to);
        Ok(())
    }

    fn get_dedup(&self, from: PartitionId) -> Result<Option<u64>, Infallible> {
        Ok(self.dedup.get(&from).copied())
    }

    fn put_dedup(&mut self, from: PartitionId, seq: u64) -> Result<(), Infallible> {
        self.dedup.insert(from, seq);
        Ok(())
    }

    fn has_timer(&self, timer: &TimerKey) -> Result<bool, Infallible> {
        Ok(self.timers.contains(timer))
    }

    fn put_timer(&mut self, timer: &TimerKey) -> Result<(), Infallible> {
        self.timers.insert(*timer);
        Ok(())
    }

    fn delete_timer(&mut self, timer: &TimerKey) -> Result<(), Infallible> {
        self.timers.remove(timer);
        Ok(())
    }

    fn get_promise(&self, workflow: &ObjectKey, name: &str) -> Result<Option<Promise>, Infallible> {
        Ok(self
            .promises
            .get(&(workflow.clone(), name.to_owned()))
            .cloned())
    }

    fn put_promise(
        &mut self,
        workflow: &ObjectKey,
        name: &str,
        promise: &Promise,
    ) -> Result<(), Infallible> {
        self.promises
            .insert((workflow.clone(), name.to_owned()), promise.clone());
        Ok(())
    }

    fn delete_promises(&mut self, workflow: &ObjectKey) -> Result<(), Infallible> {
        self.promises.retain(|(owner, _), _| owner != workflow);
        Ok(())
    }

    fn get_schedule_run(&self, name: &str) -> Result<Option<ScheduleRun>, Infallible> {
        Ok(self.schedule_runs.get(name).cloned())
    }

    fn put_schedule_run(&mut self, name: &str, run: &ScheduleRun) -> Result<(), Infallible> {
        self.schedule_runs.insert(name.to_owned(), run.clone());
        Ok(())
    }

    fn get_limits(&self) -> Result<Vec<Limit>, Infallible> {
        Ok(self.limits.clone())
    }

    fn put_limits(&mut self, limits: &[Limit]) -> Result<(), Infallible> {
        self.limits = limits.to_vec();
        Ok(())
    }

    fn get_limit_state(&self, name: &str) -> Result<Option<LimitState>, Infallible> {
        Ok(self.limit_states.get(name).cloned())
    }

    fn put_limit_state(&mut self, name: &str, state: &LimitState) -> Result<(), Infallible> {
        self.limit_states.insert(name.to_owned(), state.clone());
        Ok(())
    }

    fn delete_limit_state(&mut self, name: &str) -> Result<(), Infallible> {
        self.limit_states.remove(name);
        Ok(())
    }

    fn get_limit_queued(&self, name: &str, seq: u64) -> Result<Option<Queued>, Infallible> {
        Ok(self.limit_queued.get(&(name.to_owned(), seq)).copied())
    }

    fn put_limit_queued(&mut self, name: &str, seq: u64, row: &Queued) -> Result<(), Infallible> {
        self.limit_queued.insert((name.to_owned(), seq), *row);
        Ok(())
    }

    fn delete_limit_queued(&mut self, name: &str, seq: u64) -> Result<(), Infallible> {
        self.limit_queued.remove(&(name.to_owned(), seq));
        Ok(())
    }

    fn limit_held(&self, name: &str, id: InvocationId) -> Result<u32, Infallible> {
        Ok(self
            .limit_held
            .get(&(name.to_owned(), id))
            .copied()
            .unwrap_or(0))
    }

    fn set_limit_held(
        &mut self,
        name: &str,
        id: InvocationId,
        count: u32,
    ) -> Result<(), Infallible> {
        if count == 0 {
            self.limit_held.remove(&(name.to_owned(), id));
        } else {
            self.limit_held.insert((name.to_owned(), id), count);
        }
        Ok(())
    }

    fn clear_limit_held(&mut self, name: &str) -> Result<(), Infallible> {
        self.limit_held.retain(|(limit, _), _| limit != name);
        Ok(())
    }
}

//! The storage contract of the state machine: everything a partition keeps, read and written
//! through one transaction. The redb store and [`crate::memory::MemoryStore`] implement it and
//! must give identical results for identical calls.

use crate::state::{Invocation, JournalItem, LimitState, Promise, Queued, ScheduleRun};
use holdfast_types::{
    EntryIndex, InvocationId, Limit, ObjectKey, OutboxMessage, PartitionId, Target, TimerKey,
};

/// The state a partition keeps, seen through one storage transaction.
///
/// Every method fails only when the storage engine fails; applying stops at the first error and
/// the transaction is discarded.
pub trait Store {
    /// The storage engine's failure; applying stops at the first one.
    type Error;

    /// Reads one named state entry of an object.
    fn get_state(&self, object: &ObjectKey, name: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Writes one named state entry of an object, replacing any previous value.
    fn put_state(
        &mut self,
        object: &ObjectKey,
        name: &str,
        value: &[u8],
    ) -> Result<(), Self::Error>;
    /// Deletes one named state entry of an object if it exists.
    fn delete_state(&mut self, object: &ObjectKey, name: &str) -> Result<(), Self::Error>;
    /// Deletes every state entry of an object.
    fn delete_all_state(&mut self, object: &ObjectKey) -> Result<(), Self::Error>;
    /// The names of an object's state entries, in ascending byte order.
    fn state_names(&self, object: &ObjectKey) -> Result<Vec<String>, Self::Error>;

    /// Reads an invocation's status record.
    fn get_invocation(&self, id: InvocationId) -> Result<Option<Invocation>, Self::Error>;
    /// Writes an invocation's status record, replacing any previous one.
    fn put_invocation(&mut self, id: InvocationId, record: &Invocation) -> Result<(), Self::Error>;
    /// Deletes an invocation's status record if it exists.
    fn delete_invocation(&mut self, id: InvocationId) -> Result<(), Self::Error>;

    /// Reads one journal entry of an invocation.
    fn get_journal(
        &self,
        id: InvocationId,
        index: EntryIndex,
    ) -> Result<Option<JournalItem>, Self::Error>;
    /// Writes one journal entry of an invocation, replacing any previous one at that index.
    fn put_journal(
        &mut self,
        id: InvocationId,
        index: EntryIndex,
        item: &JournalItem,
    ) -> Result<(), Self::Error>;
    /// Deletes every journal entry of an invocation.
    fn delete_journal(&mut self, id: InvocationId) -> Result<(), Self::Error>;

    /// The invocation holding an object's exclusive lock, if any.
    fn get_lock(&self, object: &ObjectKey) -> Result<Option<InvocationId>, Self::Error>;
    /// Gives an object's exclusive lock to `id`.
    fn put_lock(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Self::Error>;
    /// Frees an object's exclusive lock.
    fn delete_lock(&mut self, object: &ObjectKey) -> Result<(), Self::Error>;

    /// Appends `id` at the back of an object's inbox queue.
    fn inbox_push(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Self::Error>;
    /// Removes and returns the front of an object's inbox queue.
    fn inbox_pop(&mut self, object: &ObjectKey) -> Result<Option<InvocationId>, Self::Error>;
    /// Removes `id` from an object's inbox queue wherever it is; true if it was there.
    fn inbox_remove(&mut self, object: &ObjectKey, id: InvocationId) -> Result<bool, Self::Error>;

    /// The invocation created for (target, idempotency key), if any.
    fn get_idempotency(
        &self,
        target: &Target,
        key: &str,
    ) -> Result<Option<InvocationId>, Self::Error>;
    /// Records the invocation created for (target, idempotency key).
    fn put_idempotency(
        &mut self,
        target: &Target,
        key: &str,
        id: InvocationId,
    ) -> Result<(), Self::Error>;
    /// Forgets (target, idempotency key).
    fn delete_idempotency(&mut self, target: &Target, key: &str) -> Result<(), Self::Error>;

    /// Appends a message to the outbox under the next sequence number (from 1, never reused,
    /// even after truncation) and returns that number.
    fn outbox_push(&mut self, message: &OutboxMessage) -> Result<u64, Self::Error>;
    /// Deletes every outbox message with a sequence number up to and including `up_to`.
    fn outbox_truncate(&mut self, up_to: u64) -> Result<(), Self::Error>;

    /// The last sequence number applied from partition `from`'s outbox.
    fn get_dedup(&self, from: PartitionId) -> Result<Option<u64>, Self::Error>;
    /// Records the last sequence number applied from partition `from`'s outbox.
    fn put_dedup(&mut self, from: PartitionId, seq: u64) -> Result<(), Self::Error>;

    /// Whether timer `timer` is pending.
    fn has_timer(&self, timer: &TimerKey) -> Result<bool, Self::Error>;
    /// Registers timer `timer` (registering a pending one again changes nothing).
    fn put_timer(&mut self, timer: &TimerKey) -> Result<(), Self::Error>;
    /// Removes timer `timer` if it is pending.
    fn delete_timer(&mut self, timer: &TimerKey) -> Result<(), Self::Error>;

    /// Reads one durable promise of a workflow (service and key) by name.
    fn get_promise(&self, workflow: &ObjectKey, name: &str)
    -> Result<Option<Promise>, Self::Error>;
    /// Writes one durable promise, replacing any previous state.
    fn put_promise(
        &mut self,
        workflow: &ObjectKey,
        name: &str,
        promise: &Promise,
    ) -> Result<(), Self::Error>;
    /// Deletes every durable promise of a workflow.
    fn delete_promises(&mut self, workflow: &ObjectKey) -> Result<(), Self::Error>;

    /// Reads what this partition recorded of schedule `name`'s ticks.
    fn get_schedule_run(&self, name: &str) -> Result<Option<ScheduleRun>, Self::Error>;
    /// Writes the record of schedule `name`'s ticks, replacing any previous one.
    fn put_schedule_run(&mut self, name: &str, run: &ScheduleRun) -> Result<(), Self::Error>;

    /// The limits this partition applies (the last `SetLimits`), in name order.
    fn get_limits(&self) -> Result<Vec<Limit>, Self::Error>;
    /// Replaces the limits this partition applies.
    fn put_limits(&mut self, limits: &[Limit]) -> Result<(), Self::Error>;
    /// Reads what this partition, as limit `name`'s home, keeps of it.
    fn get_limit_state(&self, name: &str) -> Result<Option<LimitState>, Self::Error>;
    /// Writes what this partition keeps of limit `name`, replacing any previous state.
    fn put_limit_state(&mut self, name: &str, state: &LimitState) -> Result<(), Self::Error>;
    /// Forgets limit `name`'s state (its queue rows are deleted one by one).
    fn delete_limit_state(&mut self, name: &str) -> Result<(), Self::Error>;
    /// Reads row `seq` of limit `name`'s queue.
    fn get_limit_queued(&self, name: &str, seq: u64) -> Result<Option<Queued>, Self::Error>;
    /// Writes row `seq` of limit `name`'s queue.
    fn put_limit_queued(&mut self, name: &str, seq: u64, row: &Queued) -> Result<(), Self::Error>;
    /// Deletes row `seq` of limit `name`'s queue.
    fn delete_limit_queued(&mut self, name: &str, seq: u64) -> Result<(), Self::Error>;
    /// How many permits of limit `name` invocation `id` holds (more than one only while a permit
    /// for an attempt it gave up is on its way back).
    fn limit_held(&self, name: &str, id: InvocationId) -> Result<u32, Self::Error>;
    /// Records that `id` holds `count` permits of limit `name` (0 deletes the row).
    fn set_limit_held(
        &mut self,
        name: &str,
        id: InvocationId,
        count: u32,
    ) -> Result<(), Self::Error>;
    /// Forgets every holder of limit `name` (the limit was removed).
    fn clear_limit_held(&mut self, name: &str) -> Result<(), Self::Error>;
}

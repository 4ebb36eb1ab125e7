//! The pure state machine's [`holdfast_fsm::Store`] over the redb tables of `state.redb`: reads
//! see the memtable over one read transaction, writes go to the memtable ([`crate::memtable`]).
//! Every table maps bytes to bytes:
//!
//! ```text
//!   state        len service, service, len key, key, name   → value
//!   invocations  invocation id (24 bytes)                    → Invocation record
//!   journal      invocation id, index u32                    → JournalItem
//!   locks        len service, service, len key, key          → holding invocation id
//!   inbox        object prefix, arrival u64                  → waiting invocation id
//!   idempotency  service, handler, [key], idempotency key    → invocation id
//!   outbox       seq u64                                     → OutboxMessage
//!   dedup        source partition u32                        → last applied seq u64
//!   fsm_counters name                                        → u64 (outbox_seq)
//!   timers       fire time u64, kind, invocation id, index   → (empty)
//!   promises     len service, service, len key, key, name   → Promise record
//!   suspended    invocation id (24 bytes)                    → (empty)
//!   active       invocation id (24 bytes)                    → (empty)
//!   schedules    schedule name                               → ScheduleRun record
//!   limits       limit name                                  → LimitState record
//!                (empty name)                                → the applied limits
//!   limit_queue  len name, name, number u64                  → Queued record
//!   limit_held   len name, name, invocation id               → permits held u32
//! ```
//! `suspended` and `active` are indexes of the `invocations` rows whose status is `Suspended`,
//! respectively `Invoked` or `BackingOff` (an attempt runs or is due), kept in step by
//! `put_invocation`/`delete_invocation`: the suspended count is the table's length, and a new
//! leader (and its reconciler) finds what must run without reading every retained invocation.
//! Integers are big-endian so keys sort numerically; records use the log codec, packed
//! ([`crate::pack`]).

use crate::keys::{
    idempotency_key, inbox_key, journal_key, limit_held_key, limit_queue_key, name_prefix,
    object_prefix, promise_key, state_key,
};
use crate::memtable::{Memtable, View};
use crate::{Error, pack};
use holdfast_fsm::state::{
    Invocation, JournalItem, LimitState, Promise, Queued, ScheduleRun, Status,
};
use holdfast_types::{
    EntryIndex, InvocationId, Limit, ObjectKey, OutboxMessage, PartitionId, Target, TimerKey, codec,
};
use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use std::ops::{Bound, ControlFlow};

type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const STATE: Bytes = TableDefinition::new("state");
pub(crate) const INVOCATIONS: Bytes = TableDefinition::new("invocations");
pub(crate) const JOURNAL: Bytes = TableDefinition::new("journal");
pub(crate) const LOCKS: Bytes = TableDefinition::new("locks");
pub(crate) const INBOX: Bytes = TableDefinition::new("inbox");
pub(crate) const IDEMPOTENCY: Bytes = TableDefinition::new("idempotency");
pub(crate) const OUTBOX: Bytes = TableDefinition::new("outbox");
const DEDUP: Bytes = TableDefinition::new("dedup");
const COUNTERS: Bytes = TableDefinition::new("fsm_counters");
pub(crate) const TIMERS: Bytes = TableDefinition::new("timers");
pub(crate) const PROMISES: Bytes = TableDefinition::new("promises");
pub(crate) const SUSPENDED: Bytes = TableDefinition::new("suspended");
pub(crate) const ACTIVE: Bytes = TableDefinition::new("active");
pub(crate) const SCHEDULES: Bytes = TableDefinition::new("schedules");
pub(crate) const LIMITS: Bytes = TableDefinition::new("limits");
pub(crate) const LIMIT_QUEUE: Bytes = TableDefinition::new("limit_queue");
pub(crate) const LIMIT_HELD: Bytes = TableDefinition::new("limit_held");
const OUTBOX_SEQ: &[u8] = b"outbox_seq";
/// The row of `limits` holding the applied limits (no limit has an empty name).
pub(crate) const APPLIED_LIMITS: &[u8] = b"";

/// Every table of applied state, in the order snapshots carry them.
pub(crate) const ALL: [Bytes; 17] = [
    STATE,
    INVOCATIONS,
    JOURNAL,
    LOCKS,
    INBOX,
    IDEMPOTENCY,
    OUTBOX,
    DEDUP,
    COUNTERS,
    TIMERS,
    PROMISES,
    SUSPENDED,
    ACTIVE,
    SCHEDULES,
    LIMITS,
    LIMIT_QUEUE,
    LIMIT_HELD,
];

/// The index tables derived from `invocations`; state written before one of them existed gets
/// them rebuilt ([`rebuild_indexes`]).
pub(crate) const INDEXES: [Bytes; 2] = [SUSPENDED, ACTIVE];

/// One row, as (key, value).
type Row = (Vec<u8>, Vec<u8>);

/// Each table's position in [`ALL`]: its rows' place in the memtable.
pub(crate) mod slot {
    pub(crate) const STATE: usize = 0;
    pub(crate) const INVOCATIONS: usize = 1;
    pub(crate) const JOURNAL: usize = 2;
    pub(crate) const LOCKS: usize = 3;
    pub(crate) const INBOX: usize = 4;
    pub(crate) const IDEMPOTENCY: usize = 5;
    pub(crate) const OUTBOX: usize = 6;
    pub(crate) const DEDUP: usize = 7;
    pub(crate) const COUNTERS: usize = 8;
    pub(crate) const TIMERS: usize = 9;
    pub(crate) const PROMISES: usize = 10;
    pub(crate) const SUSPENDED: usize = 11;
    pub(crate) const ACTIVE: usize = 12;
    pub(crate) const SCHEDULES: usize = 13;
    pub(crate) const LIMITS: usize = 14;
    pub(crate) const LIMIT_QUEUE: usize = 15;
    pub(crate) const LIMIT_HELD: usize = 16;

    /// Whether the table's rows are records stored packed ([`crate::pack`]).
    pub(crate) fn is_packed(slot: usize) -> bool {
        matches!(
            slot,
            INVOCATIONS | JOURNAL | OUTBOX | PROMISES | SCHEDULES | LIMITS | LIMIT_QUEUE
        )
    }
}

/// The applied state as one batch of commands sees and changes it: the memtable over a read
/// transaction of `state.redb`. Writes go to the memtable only.
pub(crate) struct Tables<'t> {
    view: View<&'t mut Memtable>,
    /// The applied limits once read in this batch: every admission asks for them.
    limits: std::cell::RefCell<Option<Vec<Limit>>>,
}

impl<'t> Tables<'t> {
    /// The state `txn` reads, with the changes in `mem` over it; every change goes to `mem`.
    pub(crate) fn new(mem: &'t mut Memtable, txn: redb::ReadTransaction) -> Self {
        Self {
            view: View::new(mem, txn),
            limits: std::cell::RefCell::new(None),
        }
    }

    /// The view under these tables.
    pub(crate) fn view(&mut self) -> &mut View<&'t mut Memtable> {
        &mut self.view
    }

    fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        slot: usize,
        key: &[u8],
    ) -> Result<Option<T>, Error> {
        self.view.get(slot, key, pack::decode_found)
    }

    fn put_record<T: serde::Serialize>(
        &mut self,
        slot: usize,
        key: &[u8],
        value: &T,
    ) -> Result<(), Error> {
        // Plain while in the memtable: packed once, when settled (`Memtable::write_rows`).
        self.view.put(slot, key, codec::encode(value)?);
        Ok(())
    }

    fn get_id(&self, slot: usize, key: &[u8]) -> Result<Option<InvocationId>, Error> {
        self.view.get(slot, key, |value| {
            value
                .map(|bytes| read_id(ALL[slot].name(), bytes))
                .transpose()
        })
    }

    fn get_u64(&self, slot: usize, key: &[u8]) -> Result<Option<u64>, Error> {
        self.view.get(slot, key, |value| {
            value
                .map(|bytes| read_u64(ALL[slot].name(), bytes))
                .transpose()
        })
    }

    fn delete_prefix(&mut self, slot: usize, prefix: &[u8]) -> Result<(), Error> {
        for key in self.view.keys_with_prefix(slot, prefix)? {
            self.view.delete(slot, &key);
        }
        Ok(())
    }

    /// The first row of table `slot` whose key starts with `prefix` and whose value `wanted`
    /// accepts, as (key, value).
    fn first_with_prefix(
        &self,
        slot: usize,
        prefix: &[u8],
        mut wanted: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<Row>, Error> {
        let mut found = None;
        self.view.scan_prefix(slot, prefix, |key, value| {
            if !wanted(value) {
                return Ok(ControlFlow::Continue(()));
            }
            found = Some((key.to_vec(), value.to_vec()));
            Ok(ControlFlow::Break(()))
        })?;
        Ok(found)
    }
}

/// Whether an invocation in `status` has an attempt running or due (the `active` index).
pub(crate) fn is_active(status: &Status) -> bool {
    matches!(status, Status::Invoked { .. } | Status::BackingOff { .. })
}

/// Rebuilds the index tables from the `invocations` table in `txn`, for state written before
/// an index existed (an older database or snapshot).
pub(crate) fn rebuild_indexes(txn: &WriteTransaction) -> Result<(), Error> {
    let invocations = txn.open_table(INVOCATIONS)?;
    let mut suspended = txn.open_table(SUSPENDED)?;
    let mut active = txn.open_table(ACTIVE)?;
    suspended.retain(|_, _| false)?;
    active.retain(|_, _| false)?;
    for item in invocations.iter()? {
        let (key, value) = item?;
        let record: Invocation = pack::decode(value.value())?;
        if matches!(record.status, Status::Suspended { .. }) {
            suspended.insert(key.value(), &[][..])?;
        }
        if is_active(&record.status) {
            active.insert(key.value(), &[][..])?;
        }
    }
    Ok(())
}

pub(crate) fn read_id(table: &'static str, bytes: &[u8]) -> Result<InvocationId, Error> {
    InvocationId::from_bytes(bytes).ok_or(Error::CorruptRecord {
        table,
        len: bytes.len(),
    })
}

fn read_u64(table: &'static str, bytes: &[u8]) -> Result<u64, Error> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| Error::CorruptRecord {
        table,
        len: bytes.len(),
    })?;
    Ok(u64::from_be_bytes(array))
}

impl holdfast_fsm::Store for Tables<'_> {
    type Error = Error;

    fn get_state(&self, object: &ObjectKey, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = state_key(object, name);
        self.view
            .get(slot::STATE, &key, |value| Ok(value.map(<[u8]>::to_vec)))
    }

    fn put_state(&mut self, object: &ObjectKey, name: &str, value: &[u8]) -> Result<(), Error> {
        self.view
            .put(slot::STATE, &state_key(object, name), value.to_vec());
        Ok(())
    }

    fn delete_state(&mut self, object: &ObjectKey, name: &str) -> Result<(), Error> {
        self.view.delete(slot::STATE, &state_key(object, name));
        Ok(())
    }

    fn delete_all_state(&mut self, object: &ObjectKey) -> Result<(), Error> {
        self.delete_prefix(slot::STATE, &object_prefix(object))
    }

    fn state_names(&self, object: &ObjectKey) -> Result<Vec<String>, Error> {
        let prefix = object_prefix(object);
        self.view
            .keys_with_prefix(slot::STATE, &prefix)?
            .into_iter()
            .map(|mut key| {
                let len = key.len();
                String::from_utf8(key.split_off(prefix.len())).map_err(|_| Error::CorruptKey(len))
            })
            .collect()
    }

    fn get_invocation(&self, id: InvocationId) -> Result<Option<Invocation>, Error> {
        self.get_record(slot::INVOCATIONS, &id.to_bytes())
    }

    fn put_invocation(&mut self, id: InvocationId, record: &Invocation) -> Result<(), Error> {
        let key = id.to_bytes();
        self.put_record(slot::INVOCATIONS, &key, record)?;
        if matches!(record.status, Status::Suspended { .. }) {
            self.view.put(slot::SUSPENDED, &key, Vec::new());
        } else {
            self.view.delete(slot::SUSPENDED, &key);
        }
        if is_active(&record.status) {
            self.view.put(slot::ACTIVE, &key, Vec::new());
        } else {
            self.view.delete(slot::ACTIVE, &key);
        }
        Ok(())
    }

    fn delete_invocation(&mut self, id: InvocationId) -> Result<(), Error> {
        let key = id.to_bytes();
        self.view.delete(slot::INVOCATIONS, &key);
        self.view.delete(slot::SUSPENDED, &key);
        self.view.delete(slot::ACTIVE, &key);
        Ok(())
    }

    fn get_journal(
        &self,
        id: InvocationId,
        index: EntryIndex,
    ) -> Result<Option<JournalItem>, Error> {
        self.get_record(slot::JOURNAL, &journal_key(id, index))
    }

    fn put_journal(
        &mut self,
        id: InvocationId,
        index: EntryIndex,
        item: &JournalItem,
    ) -> Result<(), Error> {
        self.put_record(slot::JOURNAL, &journal_key(id, index), item)
    }

    fn delete_journal(&mut self, id: InvocationId) -> Result<(), Error> {
        self.delete_prefix(slot::JOURNAL, &id.to_bytes())
    }

    fn get_lock(&self, object: &ObjectKey) -> Result<Option<InvocationId>, Error> {
        self.get_id(slot::LOCKS, &object_prefix(object))
    }

    fn put_lock(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Error> {
        self.view
            .put(slot::LOCKS, &object_prefix(object), id.to_bytes().to_vec());
        Ok(())
    }

    fn delete_lock(&mut self, object: &ObjectKey) -> Result<(), Error> {
        self.view.delete(slot::LOCKS, &object_prefix(object));
        Ok(())
    }

    fn inbox_push(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Error> {
        let prefix = object_prefix(object);
        let next = match self.view.keys_with_prefix(slot::INBOX, &prefix)?.last() {
            Some(last) => read_u64("inbox", &last[prefix.len()..])?.saturating_add(1),
            None => 0,
        };
        self.view.put(
            slot::INBOX,
            &inbox_key(object, next),
            id.to_bytes().to_vec(),
        );
        Ok(())
    }

    fn inbox_pop(&mut self, object: &ObjectKey) -> Result<Option<InvocationId>, Error> {
        let prefix = object_prefix(object);
        let Some((key, value)) = self.first_with_prefix(slot::INBOX, &prefix, |_| true)? else {
            return Ok(None);
        };
        self.view.delete(slot::INBOX, &key);
        Ok(Some(read_id("inbox", &value)?))
    }

    fn inbox_remove(&mut self, object: &ObjectKey, id: InvocationId) -> Result<bool, Error> {
        let prefix = object_prefix(object);
        let wanted = id.to_bytes();
        match self.first_with_prefix(slot::INBOX, &prefix, |value| value == wanted.as_slice())? {
            Some((key, _)) => {
                self.view.delete(slot::INBOX, &key);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn get_idempotency(&self, target: &Target, key: &str) -> Result<Option<InvocationId>, Error> {
        self.get_id(slot::IDEMPOTENCY, &idempotency_key(target, key))
    }

    fn put_idempotency(
        &mut self,
        target: &Target,
        key: &str,
        id: InvocationId,
    ) -> Result<(), Error> {
        self.view.put(
            slot::IDEMPOTENCY,
            &idempotency_key(target, key),
            id.to_bytes().to_vec(),
        );
        Ok(())
    }

    fn delete_idempotency(&mut self, target: &Target, key: &str) -> Result<(), Error> {
        self.view
            .delete(slot::IDEMPOTENCY, &idempotency_key(target, key));
        Ok(())
    }

    fn outbox_push(&mut self, message: &OutboxMessage) -> Result<u64, Error> {
        let last = self.get_u64(slot::COUNTERS, OUTBOX_SEQ)?.unwrap_or(0);
        let seq = last.saturating_add(1);
        self.view
            .put(slot::COUNTERS, OUTBOX_SEQ, seq.to_be_bytes().to_vec());
        self.put_record(slot::OUTBOX, &seq.to_be_bytes(), message)?;
        Ok(seq)
    }

    fn outbox_truncate(&mut self, up_to: u64) -> Result<(), Error> {
        let end = up_to.to_be_bytes();
        let mut doomed = Vec::new();
        self.view.scan(slot::OUTBOX, Bound::Unbounded, |key, _| {
            if key > end.as_slice() {
                return Ok(ControlFlow::Break(()));
            }
            doomed.push(key.to_vec());
            Ok(ControlFlow::Continue(()))
        })?;
        for key in doomed {
            self.view.delete(slot::OUTBOX, &key);
        }
        Ok(())
    }

    fn get_dedup(&self, from: PartitionId) -> Result<Option<u64>, Error> {
        self.get_u64(slot::DEDUP, &from.0.to_be_bytes())
    }

    fn put_dedup(&mut self, from: PartitionId, seq: u64) -> Result<(), Error> {
        self.view.put(
            slot::DEDUP,
            &from.0.to_be_bytes(),
            seq.to_be_bytes().to_vec(),
        );
        Ok(())
    }

    fn has_timer(&self, timer: &TimerKey) -> Result<bool, Error> {
        self.view
            .get(slot::TIMERS, &timer.to_bytes(), |value| Ok(value.is_some()))
    }

    fn put_timer(&mut self, timer: &TimerKey) -> Result<(), Error> {
        self.view.put(slot::TIMERS, &timer.to_bytes(), Vec::new());
        Ok(())
    }

    fn delete_timer(&mut self, timer: &TimerKey) -> Result<(), Error> {
        self.view.delete(slot::TIMERS, &timer.to_bytes());
        Ok(())
    }

    fn get_promise(&self, workflow: &ObjectKey, name: &str) -> Result<Option<Promise>, Error> {
        self.get_record(slot::PROMISES, &promise_key(workflow, name))
    }

    fn put_promise(
        &mut self,
        workflow: &ObjectKey,
        name: &str,
        promise: &Promise,
    ) -> Result<(), Error> {
        self.put_record(slot::PROMISES, &promise_key(workflow, name), promise)
    }

    fn delete_promises(&mut self, workflow: &ObjectKey) -> Result<(), Error> {
        self.delete_prefix(slot::PROMISES, &object_prefix(workflow))
    }

    fn get_schedule_run(&self, name: &str) -> Result<Option<ScheduleRun>, Error> {
        self.get_record(slot::SCHEDULES, name.as_bytes())
    }

    fn put_schedule_run(&mut self, name: &str, run: &ScheduleRun) -> Result<(), Error> {
        self.put_record(slot::SCHEDULES, name.as_bytes(), run)
    }

    fn get_limits(&self) -> Result<Vec<Limit>, Error> {
        if let Some(limits) = &*self.limits.borrow() {
            return Ok(limits.clone());
        }
        let limits: Vec<Limit> = self
            .get_record(slot::LIMITS, APPLIED_LIMITS)?
            .unwrap_or_default();
        *self.limits.borrow_mut() = Some(limits.clone());
        Ok(limits)
    }

    fn put_limits(&mut self, limits: &[Limit]) -> Result<(), Error> {
        *self.limits.get_mut() = Some(limits.to_vec());
        self.put_record(slot::LIMITS, APPLIED_LIMITS, &limits)
    }

    fn get_limit_state(&self, name: &str) -> Result<Option<LimitState>, Error> {
        self.get_record(slot::LIMITS, name.as_bytes())
    }

    fn put_limit_state(&mut self, name: &str, state: &LimitState) -> Result<(), Error> {
        self.put_record(slot::LIMITS, name.as_bytes(), state)
    }

    fn delete_limit_state(&mut self, name: &str) -> Result<(), Error> {
        self.view.delete(slot::LIMITS, name.as_bytes());
        Ok(())
    }

    fn get_limit_queued(&self, name: &str, seq: u64) -> Result<Option<Queued>, Error> {
        self.get_record(slot::LIMIT_QUEUE, &limit_queue_key(name, seq))
    }

    fn put_limit_queued(&mut self, name: &str, seq: u64, row: &Queued) -> Result<(), Error> {
        self.put_record(slot::LIMIT_QUEUE, &limit_queue_key(name, seq), row)
    }

    fn delete_limit_queued(&mut self, name: &str, seq: u64) -> Result<(), Error> {
        self.view
            .delete(slot::LIMIT_QUEUE, &limit_queue_key(name, seq));
        Ok(())
    }

    fn limit_held(&self, name: &str, id: InvocationId) -> Result<u32, Error> {
        self.view
            .get(slot::LIMIT_HELD, &limit_held_key(name, id), |value| {
                value.map_or(Ok(0), |bytes| {
                    let bytes: [u8; 4] = bytes
                        .try_into()
                        .map_err(|_| Error::CorruptKey(bytes.len()))?;
                    Ok(u32::from_be_bytes(bytes))
                })
            })
    }

    fn set_limit_held(&mut self, name: &str, id: InvocationId, count: u32) -> Result<(), Error> {
        let key = limit_held_key(name, id);
        if count == 0 {
            self.view.delete(slot::LIMIT_HELD, &key);
        } else {
            self.view
                .put(slot::LIMIT_HELD, &key, count.to_be_bytes().to_vec());
        }
        Ok(())
    }

    fn clear_limit_held(&mut self, name: &str) -> Result<(), Error> {
        self.delete_prefix(slot::LIMIT_HELD, &name_prefix(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_names_its_table() {
        let slots = [
            (slot::STATE, STATE),
            (slot::INVOCATIONS, INVOCATIONS),
            (slot::JOURNAL, JOURNAL),
            (slot::LOCKS, LOCKS),
            (slot::INBOX, INBOX),
            (slot::IDEMPOTENCY, IDEMPOTENCY),
            (slot::OUTBOX, OUTBOX),
            (slot::DEDUP, DEDUP),
            (slot::COUNTERS, COUNTERS),
            (slot::TIMERS, TIMERS),
            (slot::PROMISES, PROMISES),
            (slot::SUSPENDED, SUSPENDED),
            (slot::ACTIVE, ACTIVE),
            (slot::SCHEDULES, SCHEDULES),
            (slot::LIMITS, LIMITS),
            (slot::LIMIT_QUEUE, LIMIT_QUEUE),
            (slot::LIMIT_HELD, LIMIT_HELD),
        ];
        assert_eq!(slots.len(), ALL.len());
        for (slot, table) in slots {
            assert_eq!(ALL[slot].name(), table.name());
        }
    }
}

//! The pure state machine's [`holdfast_fsm::Store`] over the redb tables of `state.redb`, inside
//! one write transaction. Every table maps bytes to bytes:
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
//! ```
//! `suspended` and `active` are indexes of the `invocations` rows whose status is `Suspended`,
//! respectively `Invoked` or `BackingOff` (an attempt runs or is due), kept in step by
//! `put_invocation`/`delete_invocation`: the suspended count is the table's length, and a new
//! leader (and its reconciler) finds what must run without reading every retained invocation.
//! Integers are big-endian so keys sort numerically; records use the log codec, packed
//! ([`crate::pack`]).

use crate::keys::{idempotency_key, inbox_key, journal_key, object_prefix, promise_key, state_key};
use crate::{Error, pack};
use holdfast_fsm::state::{Invocation, JournalItem, Promise, Status};
use holdfast_types::{
    EntryIndex, InvocationId, ObjectKey, OutboxMessage, PartitionId, Target, TimerKey,
};
use redb::{ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};
use std::cell::OnceCell;

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
const OUTBOX_SEQ: &[u8] = b"outbox_seq";

/// Every table of applied state, in the order snapshots carry them.
pub(crate) const ALL: [Bytes; 13] = [
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
];

/// The index tables derived from `invocations`; state written before one of them existed gets
/// them rebuilt ([`rebuild_indexes`]).
pub(crate) const INDEXES: [Bytes; 2] = [SUSPENDED, ACTIVE];

type BytesTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// The state tables of one write transaction, each opened when first used: an apply batch
/// touches a few of the thirteen, and an open table costs its lookup and, at commit, the
/// write-back of its root whether it was used or not.
pub(crate) struct Tables<'t> {
    state: Lazy<'t>,
    invocations: Lazy<'t>,
    journal: Lazy<'t>,
    locks: Lazy<'t>,
    inbox: Lazy<'t>,
    idempotency: Lazy<'t>,
    outbox: Lazy<'t>,
    dedup: Lazy<'t>,
    counters: Lazy<'t>,
    timers: Lazy<'t>,
    promises: Lazy<'t>,
    suspended: Lazy<'t>,
    active: Lazy<'t>,
}

impl<'t> Tables<'t> {
    /// The state tables of `txn`, none opened yet (every one exists: opening the store
    /// creates them).
    pub(crate) fn open(txn: &'t WriteTransaction) -> Self {
        Self {
            state: Lazy::new(txn, STATE),
            invocations: Lazy::new(txn, INVOCATIONS),
            journal: Lazy::new(txn, JOURNAL),
            locks: Lazy::new(txn, LOCKS),
            inbox: Lazy::new(txn, INBOX),
            idempotency: Lazy::new(txn, IDEMPOTENCY),
            outbox: Lazy::new(txn, OUTBOX),
            dedup: Lazy::new(txn, DEDUP),
            counters: Lazy::new(txn, COUNTERS),
            timers: Lazy::new(txn, TIMERS),
            promises: Lazy::new(txn, PROMISES),
            suspended: Lazy::new(txn, SUSPENDED),
            active: Lazy::new(txn, ACTIVE),
        }
    }
}

/// One table of a write transaction, opened on first use.
struct Lazy<'t> {
    txn: &'t WriteTransaction,
    definition: Bytes,
    table: OnceCell<BytesTable<'t>>,
}

impl<'t> Lazy<'t> {
    fn new(txn: &'t WriteTransaction, definition: Bytes) -> Self {
        Self {
            txn,
            definition,
            table: OnceCell::new(),
        }
    }

    /// The table, opened now if this is its first use.
    fn read(&self) -> Result<&BytesTable<'t>, Error> {
        match self.table.get() {
            Some(table) => Ok(table),
            None => {
                let table = self.txn.open_table(self.definition)?;
                Ok(self.table.get_or_init(|| table))
            }
        }
    }

    /// The table to change, opened now if this is its first use.
    fn write(&mut self) -> Result<&mut BytesTable<'t>, Error> {
        self.read()?;
        let name = self.definition.name();
        self.table
            .get_mut()
            .ok_or_else(|| redb::Error::TableDoesNotExist(name.to_owned()).into())
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

/// Keys of `table` starting with `prefix`, in order.
fn keys_with_prefix(table: &BytesTable<'_>, prefix: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut keys = Vec::new();
    for item in table.range(prefix..)? {
        let (key, _) = item?;
        if !key.value().starts_with(prefix) {
            break;
        }
        keys.push(key.value().to_vec());
    }
    Ok(keys)
}

fn delete_prefix(table: &mut BytesTable<'_>, prefix: &[u8]) -> Result<(), Error> {
    for key in keys_with_prefix(table, prefix)? {
        table.remove(key.as_slice())?;
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

fn get_record<T: serde::de::DeserializeOwned>(
    table: &BytesTable<'_>,
    key: &[u8],
) -> Result<Option<T>, Error> {
    match table.get(key)? {
        Some(bytes) => Ok(Some(pack::decode(bytes.value())?)),
        None => Ok(None),
    }
}

fn put_record<T: serde::Serialize>(
    table: &mut BytesTable<'_>,
    key: &[u8],
    value: &T,
) -> Result<(), Error> {
    table.insert(key, pack::encode(value)?.as_slice())?;
    Ok(())
}

impl holdfast_fsm::Store for Tables<'_> {
    type Error = Error;

    fn get_state(&self, object: &ObjectKey, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = state_key(object, name);
        Ok(self
            .state
            .read()?
            .get(key.as_slice())?
            .map(|v| v.value().to_vec()))
    }

    fn put_state(&mut self, object: &ObjectKey, name: &str, value: &[u8]) -> Result<(), Error> {
        self.state
            .write()?
            .insert(state_key(object, name).as_slice(), value)?;
        Ok(())
    }

    fn delete_state(&mut self, object: &ObjectKey, name: &str) -> Result<(), Error> {
        self.state
            .write()?
            .remove(state_key(object, name).as_slice())?;
        Ok(())
    }

    fn delete_all_state(&mut self, object: &ObjectKey) -> Result<(), Error> {
        delete_prefix(self.state.write()?, &object_prefix(object))
    }

    fn state_names(&self, object: &ObjectKey) -> Result<Vec<String>, Error> {
        let prefix = object_prefix(object);
        keys_with_prefix(self.state.read()?, &prefix)?
            .into_iter()
            .map(|mut key| {
                let len = key.len();
                String::from_utf8(key.split_off(prefix.len())).map_err(|_| Error::CorruptKey(len))
            })
            .collect()
    }

    fn get_invocation(&self, id: InvocationId) -> Result<Option<Invocation>, Error> {
        get_record(self.invocations.read()?, &id.to_bytes())
    }

    fn put_invocation(&mut self, id: InvocationId, record: &Invocation) -> Result<(), Error> {
        let key = id.to_bytes();
        put_record(self.invocations.write()?, &key, record)?;
        if matches!(record.status, Status::Suspended { .. }) {
            self.suspended.write()?.insert(key.as_slice(), &[][..])?;
        } else {
            self.suspended.write()?.remove(key.as_slice())?;
        }
        if is_active(&record.status) {
            self.active.write()?.insert(key.as_slice(), &[][..])?;
        } else {
            self.active.write()?.remove(key.as_slice())?;
        }
        Ok(())
    }

    fn delete_invocation(&mut self, id: InvocationId) -> Result<(), Error> {
        let key = id.to_bytes();
        self.invocations.write()?.remove(key.as_slice())?;
        self.suspended.write()?.remove(key.as_slice())?;
        self.active.write()?.remove(key.as_slice())?;
        Ok(())
    }

    fn get_journal(
        &self,
        id: InvocationId,
        index: EntryIndex,
    ) -> Result<Option<JournalItem>, Error> {
        get_record(self.journal.read()?, &journal_key(id, index))
    }

    fn put_journal(
        &mut self,
        id: InvocationId,
        index: EntryIndex,
        item: &JournalItem,
    ) -> Result<(), Error> {
        put_record(self.journal.write()?, &journal_key(id, index), item)
    }

    fn delete_journal(&mut self, id: InvocationId) -> Result<(), Error> {
        delete_prefix(self.journal.write()?, &id.to_bytes())
    }

    fn get_lock(&self, object: &ObjectKey) -> Result<Option<InvocationId>, Error> {
        match self.locks.read()?.get(object_prefix(object).as_slice())? {
            Some(bytes) => Ok(Some(read_id("locks", bytes.value())?)),
            None => Ok(None),
        }
    }

    fn put_lock(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Error> {
        self.locks
            .write()?
            .insert(object_prefix(object).as_slice(), id.to_bytes().as_slice())?;
        Ok(())
    }

    fn delete_lock(&mut self, object: &ObjectKey) -> Result<(), Error> {
        self.locks
            .write()?
            .remove(object_prefix(object).as_slice())?;
        Ok(())
    }

    fn inbox_push(&mut self, object: &ObjectKey, id: InvocationId) -> Result<(), Error> {
        let prefix = object_prefix(object);
        let next = match keys_with_prefix(self.inbox.read()?, &prefix)?.last() {
            Some(last) => read_u64("inbox", &last[prefix.len()..])?.saturating_add(1),
            None => 0,
        };
        self.inbox
            .write()?
            .insert(inbox_key(object, next).as_slice(), id.to_bytes().as_slice())?;
        Ok(())
    }

    fn inbox_pop(&mut self, object: &ObjectKey) -> Result<Option<InvocationId>, Error> {
        let prefix = object_prefix(object);
        let first = {
            let mut range = self.inbox.read()?.range(prefix.as_slice()..)?;
            match range.next() {
                Some(item) => {
                    let (key, value) = item?;
                    key.value()
                        .starts_with(&prefix)
                        .then(|| (key.value().to_vec(), value.value().to_vec()))
                }
                None => None,
            }
        };
        let Some((key, value)) = first else {
            return Ok(None);
        };
        self.inbox.write()?.remove(key.as_slice())?;
        Ok(Some(read_id("inbox", &value)?))
    }

    fn inbox_remove(&mut self, object: &ObjectKey, id: InvocationId) -> Result<bool, Error> {
        let prefix = object_prefix(object);
        let wanted = id.to_bytes();
        let mut found = None;
        for item in self.inbox.read()?.range(prefix.as_slice()..)? {
            let (key, value) = item?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            if value.value() == wanted.as_slice() {
                found = Some(key.value().to_vec());
                break;
            }
        }
        match found {
            Some(key) => {
                self.inbox.write()?.remove(key.as_slice())?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn get_idempotency(&self, target: &Target, key: &str) -> Result<Option<InvocationId>, Error> {
        match self
            .idempotency
            .read()?
            .get(idempotency_key(target, key).as_slice())?
        {
            Some(bytes) => Ok(Some(read_id("idempotency", bytes.value())?)),
            None => Ok(None),
        }
    }

    fn put_idempotency(
        &mut self,
        target: &Target,
        key: &str,
        id: InvocationId,
    ) -> Result<(), Error> {
        self.idempotency.write()?.insert(
            idempotency_key(target, key).as_slice(),
            id.to_bytes().as_slice(),
        )?;
        Ok(())
    }

    fn delete_idempotency(&mut self, target: &Target, key: &str) -> Result<(), Error> {
        self.idempotency
            .write()?
            .remove(idempotency_key(target, key).as_slice())?;
        Ok(())
    }

    fn outbox_push(&mut self, message: &OutboxMessage) -> Result<u64, Error> {
        let last = match self.counters.read()?.get(OUTBOX_SEQ)? {
            Some(bytes) => read_u64("fsm_counters", bytes.value())?,
            None => 0,
        };
        let seq = last.saturating_add(1);
        self.counters
            .write()?
            .insert(OUTBOX_SEQ, seq.to_be_bytes().as_slice())?;
        put_record(self.outbox.write()?, &seq.to_be_bytes(), message)?;
        Ok(seq)
    }

    fn outbox_truncate(&mut self, up_to: u64) -> Result<(), Error> {
        let end = up_to.to_be_bytes();
        let mut doomed = Vec::new();
        for item in self.outbox.read()?.range(..=end.as_slice())? {
            let (key, _) = item?;
            doomed.push(key.value().to_vec());
        }
        for key in doomed {
            self.outbox.write()?.remove(key.as_slice())?;
        }
        Ok(())
    }

    fn get_dedup(&self, from: PartitionId) -> Result<Option<u64>, Error> {
        match self.dedup.read()?.get(from.0.to_be_bytes().as_slice())? {
            Some(bytes) => Ok(Some(read_u64("dedup", bytes.value())?)),
            None => Ok(None),
        }
    }

    fn put_dedup(&mut self, from: PartitionId, seq: u64) -> Result<(), Error> {
        self.dedup.write()?.insert(
            from.0.to_be_bytes().as_slice(),
            seq.to_be_bytes().as_slice(),
        )?;
        Ok(())
    }

    fn has_timer(&self, timer: &TimerKey) -> Result<bool, Error> {
        Ok(self
            .timers
            .read()?
            .get(timer.to_bytes().as_slice())?
            .is_some())
    }

    fn put_timer(&mut self, timer: &TimerKey) -> Result<(), Error> {
        self.timers
            .write()?
            .insert(timer.to_bytes().as_slice(), &[][..])?;
        Ok(())
    }

    fn delete_timer(&mut self, timer: &TimerKey) -> Result<(), Error> {
        self.timers.write()?.remove(timer.to_bytes().as_slice())?;
        Ok(())
    }

    fn get_promise(&self, workflow: &ObjectKey, name: &str) -> Result<Option<Promise>, Error> {
        get_record(self.promises.read()?, &promise_key(workflow, name))
    }

    fn put_promise(
        &mut self,
        workflow: &ObjectKey,
        name: &str,
        promise: &Promise,
    ) -> Result<(), Error> {
        put_record(
            self.promises.write()?,
            &promise_key(workflow, name),
            promise,
        )
    }

    fn delete_promises(&mut self, workflow: &ObjectKey) -> Result<(), Error> {
        delete_prefix(self.promises.write()?, &object_prefix(workflow))
    }
}

//! Applied state held in memory until it is written to `state.redb` in one transaction.
//!
//! Applying a batch of commands writes its rows into the [`Memtable`], not into a redb
//! transaction of its own: a redb commit costs its dirty pages' copies and checksums whatever
//! it carries, and most rows of a short invocation are rewritten or deleted within a second (its
//! record per step, the `active` index, a key's lock and inbox). The memtable is written out
//! ("settled") when it grows past [`SETTLE_BYTES`], and before every flush, snapshot, SQL scan
//! and table count, which read `state.redb` alone. At every moment `state.redb` plus the
//! memtable is the applied state. The applied log id is written with the rows it describes:
//! after a crash, openraft re-applies the log above the one on disk.
//!
//! Readers see the memtable's changes over one redb read transaction ([`View`]), taken under
//! the memtable's lock, so a reader never sees half a batch.

use crate::tables::{ALL, slot};
use crate::{Error, pack};
use openraft::{LogId, StoredMembership};
use redb::{ReadTransaction, WriteTransaction};
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow, Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

/// Bytes the memtable holds (keys, values and each row's overhead) before applying writes it
/// out. Settling writes each row into its B-tree leaf, and rows of random invocation ids land on
/// as many leaves, each a 4 KiB page held until the commit: 512 KiB raised the node's peak
/// memory by a quarter, 64 KiB by a few MiB (docs/benchmarks.md). Records are held plain
/// (about four times their packed size) and packed once, when written out.
pub(crate) const SETTLE_BYTES: usize = 64 << 10;

/// What a row costs the memtable beyond its key and value: its place in the map's node and the
/// allocations of key and value.
const ROW_OVERHEAD: usize = 96;

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Rows of one table changed since the last settle: `Some` written, `None` deleted.
type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The applied changes not yet in `state.redb`, by table (in the order of [`ALL`]), and where
/// applying stands.
#[derive(Default)]
pub(crate) struct Memtable {
    rows: [Changes; ALL.len()],
    /// The last applied log id, once anything was applied since the last settle.
    pub(crate) applied: Option<LogId<NodeId>>,
    /// The last applied membership, once a membership entry was applied since the last settle.
    pub(crate) membership: Option<Membership>,
    /// Commands applied in total, once anything was applied since the last settle.
    pub(crate) commands_applied: Option<u64>,
    bytes: usize,
}

/// A memtable shared by every handle on one partition's state.
pub(crate) type Shared = std::sync::Arc<Mutex<Memtable>>;

/// The memtable, locked. After a panic while it was held it is refused for good: the panic may
/// have left half a batch in it, and clearing it would drop rows that openraft counts as applied
/// and never applies again. Every later apply then fails, which stops the group, and the node's
/// restart rebuilds the state from `state.redb` and the log above it.
pub(crate) fn lock(shared: &Mutex<Memtable>) -> Result<MutexGuard<'_, Memtable>, Error> {
    shared.lock().map_err(|_| Error::MemtablePoisoned)
}

impl Memtable {
    /// Whether nothing waits to be written out.
    pub(crate) fn is_empty(&self) -> bool {
        self.applied.is_none()
            && self.membership.is_none()
            && self.commands_applied.is_none()
            && self.rows.iter().all(BTreeMap::is_empty)
    }

    /// Bytes written since the last settle, with each row's overhead (rewrites counted each
    /// time).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets every change: after a settle, or after a failed apply (the log still holds what
    /// was lost, and the group restarts from `state.redb`).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    fn put(&mut self, slot: usize, key: &[u8], value: Vec<u8>) {
        self.bytes += ROW_OVERHEAD + key.len() + value.len();
        self.rows[slot].insert(key.to_vec(), Some(value));
    }

    fn delete(&mut self, slot: usize, key: &[u8]) {
        self.bytes += ROW_OVERHEAD + key.len();
        self.rows[slot].insert(key.to_vec(), None);
    }

    /// Writes every changed row into `txn`; the caller adds the applied position, commits, then
    /// clears.
    pub(crate) fn write_rows(&self, txn: &WriteTransaction) -> Result<(), Error> {
        for (slot, (definition, rows)) in ALL.iter().zip(&self.rows).enumerate() {
            if rows.is_empty() {
                continue;
            }
            let packed = slot::is_packed(slot);
            let mut table = txn.open_table(*definition)?;
            for (key, value) in rows {
                match value {
                    Some(value) if packed => {
                        table.insert(key.as_slice(), &*pack::pack_borrowed(value)?)?;
                    }
                    Some(value) => {
                        table.insert(key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        table.remove(key.as_slice())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The applied state as a reader sees it: the memtable `M` over one redb read transaction.
/// With `M` a mutable borrow it is also how applying writes ([`View::put`], [`View::delete`]).
pub(crate) struct View<M> {
    mem: M,
    txn: ReadTransaction,
    tables: [OnceCell<ReadTable>; ALL.len()],
}

impl<M: Deref<Target = Memtable>> View<M> {
    /// `mem` over the state `txn` reads.
    pub(crate) fn new(mem: M, txn: ReadTransaction) -> Self {
        Self {
            mem,
            txn,
            tables: Default::default(),
        }
    }

    /// The memtable seen through this view.
    pub(crate) fn memtable(&self) -> &Memtable {
        &self.mem
    }

    /// The read transaction under the memtable (for the tables it does not hold).
    pub(crate) fn transaction(&self) -> &ReadTransaction {
        &self.txn
    }

    fn table(&self, slot: usize) -> Result<&ReadTable, Error> {
        if let Some(table) = self.tables[slot].get() {
            return Ok(table);
        }
        let table = self.txn.open_table(ALL[slot])?;
        Ok(self.tables[slot].get_or_init(|| table))
    }

    /// Reads the row `key` of table `slot` (none if absent) with `read`.
    pub(crate) fn get<T>(
        &self,
        slot: usize,
        key: &[u8],
        read: impl FnOnce(Option<&[u8]>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let Some(change) = self.mem.rows[slot].get(key) {
            return read(change.as_deref());
        }
        match self.table(slot)?.get(key)? {
            Some(value) => read(Some(value.value())),
            None => read(None),
        }
    }

    /// Visits the rows of table `slot` from `from` on, in key order, until `visit` breaks.
    pub(crate) fn scan(
        &self,
        slot: usize,
        from: Bound<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, Error>,
    ) -> Result<(), Error> {
        let mut mem = self.mem.rows[slot]
            .range::<[u8], _>((from, Bound::Unbounded))
            .peekable();
        let mut disk = self.table(slot)?.range::<&[u8]>((from, Bound::Unbounded))?;
        let mut next_disk = disk.next().transpose()?;
        loop {
            let mem_first = match (mem.peek(), &next_disk) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((mem_key, _)), Some((disk_key, _))) => mem_key.as_slice() <= disk_key.value(),
            };
            let flow = if mem_first {
                let Some((key, change)) = mem.next() else {
                    return Ok(());
                };
                // A change replaces the row on disk under the same key.
                if next_disk
                    .as_ref()
                    .is_some_and(|(disk_key, _)| disk_key.value() == key.as_slice())
                {
                    next_disk = disk.next().transpose()?;
                }
                match change {
                    Some(value) => visit(key, value)?,
                    None => ControlFlow::Continue(()),
                }
            } else {
                let Some((key, value)) = next_disk.take() else {
                    return Ok(());
                };
                let flow = visit(key.value(), value.value())?;
                next_disk = disk.next().transpose()?;
                flow
            };
            if flow.is_break() {
                return Ok(());
            }
        }
    }

    /// Visits the rows of table `slot` whose key starts with `prefix`, in key order, until
    /// `visit` breaks.
    pub(crate) fn scan_prefix(
        &self,
        slot: usize,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, Error>,
    ) -> Result<(), Error> {
        self.scan(slot, Bound::Included(prefix), |key, value| {
            if key.starts_with(prefix) {
                visit(key, value)
            } else {
                Ok(ControlFlow::Break(()))
            }
        })
    }

    /// The keys of table `slot` starting with `prefix`, in order.
    pub(crate) fn keys_with_prefix(
        &self,
        slot: usize,
        prefix: &[u8],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut keys = Vec::new();
        self.scan_prefix(slot, prefix, |key, _| {
            keys.push(key.to_vec());
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(keys)
    }
}

impl<M: DerefMut<Target = Memtable>> View<M> {
    /// The memtable, to record where applying stands.
    pub(crate) fn memtable_mut(&mut self) -> &mut Memtable {
        &mut self.mem
    }

    /// Writes row `key` of table `slot`.
    pub(crate) fn put(&mut self, slot: usize, key: &[u8], value: Vec<u8>) {
        self.mem.put(slot, key, value);
    }

    /// Deletes row `key` of table `slot` (whether or not it exists).
    pub(crate) fn delete(&mut self, slot: usize, key: &[u8]) {
        self.mem.delete(slot, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    /// A small deterministic generator: the same sequence of operations on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn database(dir: &tempfile::TempDir) -> Database {
        let db = Database::create(dir.path().join("state.redb")).expect("create");
        let txn = db.begin_write().expect("begin");
        for table in ALL {
            txn.open_table(table).expect("table");
        }
        txn.commit().expect("commit");
        db
    }

    fn settle(db: &Database, mem: &mut Memtable) {
        let txn = db.begin_write().expect("begin");
        mem.write_rows(&txn).expect("write");
        txn.commit().expect("commit");
        mem.clear();
    }

    fn everything(
        view: &View<&mut Memtable>,
        slot: usize,
        from: Bound<&[u8]>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut rows = Vec::new();
        view.scan(slot, from, |key, value| {
            rows.push((key.to_vec(), value.to_vec()));
            Ok(ControlFlow::Continue(()))
        })
        .expect("scan");
        rows
    }

    #[test]
    fn a_view_reads_what_a_plain_map_holds_whenever_the_memtable_is_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(&dir);
        let mut mem = Memtable::default();
        let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut rng = Lcg(7);
        let slot = 2;
        for step in 0..3_000u64 {
            let key = vec![rng.below(4) as u8, rng.below(40) as u8];
            {
                let mut view = View::new(&mut mem, db.begin_read().expect("read"));
                if rng.below(3) == 0 {
                    view.delete(slot, &key);
                    expected.remove(&key);
                } else {
                    let value = step.to_be_bytes().to_vec();
                    view.put(slot, &key, value.clone());
                    expected.insert(key.clone(), value);
                }
                let probe = vec![rng.below(4) as u8, rng.below(40) as u8];
                let got = view
                    .get(slot, &probe, |value| Ok(value.map(<[u8]>::to_vec)))
                    .expect("get");
                assert_eq!(got, expected.get(&probe).cloned(), "get at step {step}");
                let prefix = [rng.below(4) as u8];
                let mut under = Vec::new();
                view.scan_prefix(slot, &prefix, |key, value| {
                    under.push((key.to_vec(), value.to_vec()));
                    Ok(ControlFlow::Continue(()))
                })
                .expect("scan");
                let want: Vec<_> = expected
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                assert_eq!(under, want, "prefix scan at step {step}");
                let from = probe.as_slice();
                let want: Vec<_> = expected
                    .range::<[u8], _>((Bound::Excluded(from), Bound::Unbounded))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                assert_eq!(
                    everything(&view, slot, Bound::Excluded(from)),
                    want,
                    "scan after a key at step {step}"
                );
            }
            if rng.below(50) == 0 {
                settle(&db, &mut mem);
            }
        }
        let view = View::new(&mut mem, db.begin_read().expect("read"));
        let want: Vec<_> = expected.into_iter().collect();
        assert_eq!(everything(&view, slot, Bound::Unbounded), want);
    }

    #[test]
    fn a_panic_while_the_memtable_is_held_fails_every_later_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(&dir);
        let shared = Shared::default();
        let panicked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut mem = lock(&shared).expect("lock");
                    let mut view = View::new(&mut *mem, db.begin_read().expect("read"));
                    view.put(0, b"half", b"a batch".to_vec());
                    panic!("applying failed half-way");
                })
                .join()
        });
        assert!(panicked.is_err());
        // Neither written out nor forgotten: refused, again and again.
        for _ in 0..2 {
            assert!(matches!(lock(&shared), Err(Error::MemtablePoisoned)));
        }
        assert!(shared.is_poisoned());
    }

    #[test]
    fn a_scan_stops_where_its_visitor_breaks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(&dir);
        let mut mem = Memtable::default();
        {
            let mut view = View::new(&mut mem, db.begin_read().expect("read"));
            for key in [1u8, 3, 5] {
                view.put(0, &[key], vec![key]);
            }
        }
        settle(&db, &mut mem);
        let mut view = View::new(&mut mem, db.begin_read().expect("read"));
        view.put(0, &[2], vec![2]);
        view.delete(0, &[3]);
        let mut seen = Vec::new();
        view.scan(0, Bound::Unbounded, |key, _| {
            seen.push(key[0]);
            Ok(if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .expect("scan");
        assert_eq!(seen, [1, 2]);
        assert_eq!(everything(&view, 0, Bound::Unbounded).len(), 3);
    }
}

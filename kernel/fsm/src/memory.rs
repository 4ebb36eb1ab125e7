//! An in-memory [`Store`] for tests and tools: the same contract as the redb store, no I/O.

use crate::Store;
use holdfast_types::ObjectKey;
use std::collections::BTreeMap;
use std::convert::Infallible;

/// Partition state held in ordered maps; it cannot fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    state: BTreeMap<(ObjectKey, String), Vec<u8>>,
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
}

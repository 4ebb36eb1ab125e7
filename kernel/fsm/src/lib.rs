//! The partition state machine: a pure, deterministic function from (state, command) to state
//! changes. It knows no actors, network, clock or storage engine; it reads and writes only through
//! the [`Store`] trait, which the storage layer implements over one transaction.
//!
//! ```text
//!   committed Command ──► apply(store, command) ──► writes through Store (one transaction)
//! ```
//!
//! Every replica applies the same committed commands in the same order and so reaches the same
//! state; that is what lets the log alone rebuild a partition after a crash.

pub mod memory;

use holdfast_types::{Command, ObjectKey};

/// The state a partition keeps, seen through one storage transaction.
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
}

/// Applies one committed command to the partition state.
pub fn apply<S: Store>(store: &mut S, command: &Command) -> Result<(), S::Error> {
    match command {
        Command::SetState {
            object,
            name,
            value,
        } => store.put_state(object, name, value),
        Command::ClearState { object, name } => store.delete_state(object, name),
        Command::ClearAllState { object } => store.delete_all_state(object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use proptest::prelude::*;

    fn object(key: &str) -> ObjectKey {
        ObjectKey::new("Counter", key)
    }

    fn set(key: &str, name: &str, value: &[u8]) -> Command {
        Command::SetState {
            object: object(key),
            name: name.into(),
            value: value.to_vec(),
        }
    }

    fn applied(commands: &[Command]) -> MemoryStore {
        let mut store = MemoryStore::default();
        for command in commands {
            let Ok(()) = apply(&mut store, command);
        }
        store
    }

    #[test]
    fn set_state_creates_then_replaces_the_value() {
        let store = applied(&[set("a", "count", b"1")]);
        assert_eq!(
            store.get_state(&object("a"), "count"),
            Ok(Some(b"1".to_vec()))
        );
        let store = applied(&[set("a", "count", b"1"), set("a", "count", b"2")]);
        assert_eq!(
            store.get_state(&object("a"), "count"),
            Ok(Some(b"2".to_vec()))
        );
    }

    #[test]
    fn clear_state_removes_only_that_entry() {
        let store = applied(&[
            set("a", "x", b"1"),
            set("a", "y", b"2"),
            Command::ClearState {
                object: object("a"),
                name: "x".into(),
            },
        ]);
        assert_eq!(store.get_state(&object("a"), "x"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "y"), Ok(Some(b"2".to_vec())));
    }

    #[test]
    fn clear_state_of_an_absent_entry_changes_nothing() {
        let before = applied(&[set("a", "x", b"1")]);
        let after = applied(&[
            set("a", "x", b"1"),
            Command::ClearState {
                object: object("b"),
                name: "x".into(),
            },
        ]);
        assert_eq!(before, after);
    }

    #[test]
    fn clear_all_state_removes_every_entry_of_one_object_only() {
        let store = applied(&[
            set("a", "x", b"1"),
            set("a", "y", b"2"),
            set("b", "x", b"3"),
            Command::SetState {
                object: ObjectKey::new("Other", "a"),
                name: "x".into(),
                value: b"4".to_vec(),
            },
            Command::ClearAllState {
                object: object("a"),
            },
        ]);
        assert_eq!(store.get_state(&object("a"), "x"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "y"), Ok(None));
        assert_eq!(store.get_state(&object("b"), "x"), Ok(Some(b"3".to_vec())));
        assert_eq!(
            store.get_state(&ObjectKey::new("Other", "a"), "x"),
            Ok(Some(b"4".to_vec()))
        );
    }

    fn command_strategy() -> impl Strategy<Value = Command> {
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let name = prop::sample::select(vec!["x", "y"]);
        prop_oneof![
            (
                key.clone(),
                name.clone(),
                prop::collection::vec(any::<u8>(), 0..4)
            )
                .prop_map(|(k, n, v)| set(k, n, &v)),
            (key.clone(), name).prop_map(|(k, n)| Command::ClearState {
                object: object(k),
                name: n.into()
            }),
            key.prop_map(|k| Command::ClearAllState { object: object(k) }),
        ]
    }

    proptest! {
        /// Replaying the same log always yields the same state (determinism).
        #[test]
        fn replay_is_deterministic(commands in prop::collection::vec(command_strategy(), 0..64)) {
            prop_assert_eq!(applied(&commands), applied(&commands));
        }

        /// The state after a log equals a simple model: the last write per entry wins, a clear
        /// removes it.
        #[test]
        fn state_matches_the_last_write_model(commands in prop::collection::vec(command_strategy(), 0..64)) {
            let store = applied(&commands);
            for key in ["a", "b", "c"] {
                for name in ["x", "y"] {
                    let mut expected = None;
                    for command in &commands {
                        match command {
                            Command::SetState { object: o, name: n, value } if o.key == key && n == name => expected = Some(value.clone()),
                            Command::ClearState { object: o, name: n } if o.key == key && n == name => expected = None,
                            Command::ClearAllState { object: o } if o.key == key => expected = None,
                            _ => {}
                        }
                    }
                    prop_assert_eq!(store.get_state(&object(key), name), Ok(expected));
                }
            }
        }
    }
}

//! The partition state machine: a pure, deterministic function from (state, command) to state
//! changes and effects. It knows no actors, network, clock or storage engine; it reads and writes
//! only through the [`Store`] trait, which the storage layer implements over one transaction, and
//! it hands back what must happen in the world as [`Effect`] values.
//!
//! ```text
//!   committed Command ──► apply(store, config, command) ──► writes through Store (one transaction)
//!                                                      └──► Vec<Effect> (executed by the leader only)
//! ```
//!
//! Every replica applies the same committed commands in the same order and so reaches the same
//! state; that is what lets the log alone rebuild a partition after a crash. Time and randomness
//! only enter as values inside commands.
//!
//! # Layout
//! - [`store`]: the [`Store`] trait; [`memory`]: an in-memory implementation for tests and tools.
//! - [`state`]: the per-invocation records ([`state::Invocation`], [`state::JournalItem`]) and
//!   workflow promises ([`state::Promise`]).
//! - [`effect`]: [`Effect`], what the leader must do after a command.
//! - [`config`]: the retry policy of invocations that carry none, and retention of call results.
//! - [`control`]: which operator requests (cancel, kill, purge, pause, resume) the state of an
//!   invocation allows; the admin asks it before proposing, the lifecycle steps obey it.
//! - `lifecycle`: one module per command or lifecycle step (invoke, journal, attempt_ended,
//!   completion, run_completed, retry, resume, resume_on, pause, shuffle, outbox, cancel, kill,
//!   purge, object_state, timer, awakeable, promise, schedule).
//!
//! # Invocation lifecycle
//! ```text
//!   Invoke ─► Inboxed ─(lock freed)─► Invoked{e} ─► Suspended{e} ─(waited completion)─► Invoked{e+1}
//!                 └──────(free lock)────┘  │  └──► BackingOff{e} ─(Retry timer)─► Invoked{e+1}
//!                                          │            └──(retries exhausted)─► Paused ─(Resume)─► …
//!                                          │                      (or Completed with the last error: kill)
//!                                          └──► Completed ─(Purge, or its Purge timer)─► gone
//!   Invoke with execute_at_ms ─► Scheduled ─(Start timer)─► Inboxed or Invoked{1}, like Invoke
//!   Invoked / Suspended / BackingOff ─(Pause)─► Paused{e} ─(ResumeOn)─► Invoked{e+1}
//!   Suspended / BackingOff ─(ResumeOn)─► Invoked{e+1}
//!   Inboxed / Scheduled ─(Cancel or Kill)─► Completed
//! ```
//! Every attempt has an epoch; entries, run results and endings of any other epoch are fenced off.
//!
//! Pending entries are completed from inside the partition too: a `sleep` by its timer
//! (`FireTimer`), an `awakeable` by `CompleteAwakeable` (signed with the invocation's awakeable
//! key, which derives from its secret),
//! a `get_promise` by the workflow's first `complete_promise`. Timers are rows in the store
//! registered with [`Effect::RegisterTimer`]; firing deletes the row, so each fires once.
//!
//! A workflow's run handler runs once per key: a call or send to it gets the one id of the run
//! (`InvocationId::workflow`), and submitting it again after it completed is answered with 409.
//! Purging the run forgets the workflow's state and promises too.

pub mod config;
pub mod control;
pub mod effect;
mod lifecycle;
pub mod memory;
pub mod state;
pub mod store;

pub use config::{Config, Home, OnMaxAttempts, RetryPolicy};
pub use effect::{Completion, Effect, Observation};
pub use lifecycle::invoke::WORKFLOW_ALREADY_INVOKED;
pub use store::Store;

use holdfast_types::Command;

/// Applies one committed command to the partition state and returns the effects the leader must
/// execute, in order. Fails only when the store fails; the caller then discards the transaction.
pub fn apply<S: Store>(
    store: &mut S,
    config: &Config,
    command: &Command,
) -> Result<Vec<Effect>, S::Error> {
    use lifecycle::*;
    let mut cx = Ctx {
        store,
        config,
        effects: Vec::new(),
        local: std::collections::VecDeque::new(),
    };
    match command {
        Command::SetState {
            object,
            name,
            value,
        } => object_state::set(&mut cx, object, name, value)?,
        Command::ClearState { object, name } => object_state::clear(&mut cx, object, name)?,
        Command::ClearAllState { object } => object_state::clear_all(&mut cx, object)?,
        Command::EditState {
            object,
            entries,
            expected_version,
        } => object_state::edit(&mut cx, object, entries, expected_version.as_deref())?,
        Command::Invoke(request) => invoke::apply(&mut cx, request, request.at_ms)?,
        Command::JournalAppend {
            id,
            epoch,
            index,
            entry,
            ack,
            callee_kind,
            at_ms,
            callee_retry,
        } => journal::apply(
            &mut cx,
            journal::Append {
                id: *id,
                epoch: *epoch,
                index: *index,
                entry,
                ack: *ack,
                callee_kind: *callee_kind,
                callee_retry: *callee_retry,
                at_ms: *at_ms,
            },
        )?,
        Command::AttemptEnded {
            id,
            epoch,
            ending,
            at_ms,
        } => attempt_ended::apply(&mut cx, *id, *epoch, ending, *at_ms)?,
        Command::Completion { id, index, outcome } => {
            completion::apply(&mut cx, *id, *index, outcome)?
        }
        Command::Retry { id, epoch } => retry::apply(&mut cx, *id, *epoch)?,
        Command::Restart { id, epoch } => retry::restart(&mut cx, *id, *epoch)?,
        Command::ShuffleIn {
            from,
            seq,
            message,
            at_ms,
        } => shuffle::apply(&mut cx, *from, *seq, message, *at_ms)?,
        Command::OutboxDelivered { up_to } => outbox::apply(&mut cx, *up_to)?,
        Command::Cancel { id, at_ms } => cancel::apply(&mut cx, *id, *at_ms)?,
        Command::Kill { id, at_ms } => kill::apply(&mut cx, *id, *at_ms)?,
        Command::Purge { id } => purge::apply(&mut cx, *id)?,
        Command::Resume { id } => resume::apply(&mut cx, *id)?,
        Command::RunCompleted {
            id,
            epoch,
            index,
            outcome,
            ack,
        } => run_completed::apply(&mut cx, *id, *epoch, *index, outcome, *ack)?,
        Command::Pause { id } => pause::apply(&mut cx, *id)?,
        Command::ResumeOn { id, deployment } => {
            resume_on::apply(&mut cx, *id, deployment.as_ref())?
        }
        Command::FireTimer { timer, at_ms } => timer::apply(&mut cx, timer, *at_ms)?,
        Command::CompleteAwakeable {
            id,
            index,
            token,
            outcome,
        } => awakeable::apply(&mut cx, *id, *index, token, outcome)?,
        Command::FireSchedule {
            name,
            tick_ms,
            skipped,
            overlap,
            request,
        } => schedule::apply(&mut cx, name, *tick_ms, *skipped, *overlap, request)?,
        Command::SetLimits { limits, at_ms } => limit::set(&mut cx, limits, *at_ms)?,
        Command::DrainLimit { name, at_ms } => limit::drain(&mut cx, name, *at_ms)?,
    }
    // Messages to this partition's own invocations arrive now, in the order they were sent, each
    // after everything before it is stored: what the outbox and the shuffle would deliver a log
    // round later. Delivering one may send more; each chain ends (a call completes its caller).
    while let Some((message, at_ms)) = cx.local.pop_front() {
        shuffle::deliver(&mut cx, &message, at_ms)?;
    }
    Ok(cx.effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use holdfast_types::{InvocationId, ObjectKey, StateEntry};
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
            let Ok(_) = apply(&mut store, &Config::default(), command);
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

    #[test]
    fn an_edit_replaces_the_whole_state_unless_the_object_is_locked() {
        let edit = |entries: &[(&str, &[u8])]| versioned_edit(entries, None);
        let store = applied(&[
            set("a", "x", b"1"),
            set("a", "y", b"2"),
            edit(&[("z", b"3")]),
        ]);
        assert_eq!(store.get_state(&object("a"), "x"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "y"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "z"), Ok(Some(b"3".to_vec())));

        // While an invocation holds the object's lock the edit changes nothing.
        let mut store = applied(&[set("a", "x", b"1")]);
        let holder = InvocationId::from_bytes(&[7u8; InvocationId::BYTES]).expect("an id");
        store.put_lock(&object("a"), holder).expect("lock");
        let effects = apply(&mut store, &Config::default(), &edit(&[])).expect("applied");
        assert!(effects.is_empty());
        assert_eq!(store.get_state(&object("a"), "x"), Ok(Some(b"1".to_vec())));
        store.delete_lock(&object("a")).expect("unlock");
        apply(&mut store, &Config::default(), &edit(&[])).expect("applied");
        assert_eq!(store.get_state(&object("a"), "x"), Ok(None));
    }

    fn versioned_edit(entries: &[(&str, &[u8])], expected_version: Option<String>) -> Command {
        Command::EditState {
            object: object("a"),
            entries: entries
                .iter()
                .map(|(name, value)| StateEntry {
                    name: (*name).into(),
                    value: value.to_vec(),
                })
                .collect(),
            expected_version,
        }
    }

    #[test]
    fn an_edit_with_the_current_version_applies() {
        let version = holdfast_types::state_version([("x", &b"1"[..]), ("y", &b"2"[..])]);
        let store = applied(&[
            set("a", "y", b"2"),
            set("a", "x", b"1"),
            versioned_edit(&[("z", b"3")], Some(version)),
        ]);
        assert_eq!(store.get_state(&object("a"), "x"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "y"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "z"), Ok(Some(b"3".to_vec())));

        // An object without state has the version of the empty state.
        let empty = holdfast_types::state_version(Vec::<(&str, &[u8])>::new());
        let store = applied(&[versioned_edit(&[("z", b"3")], Some(empty))]);
        assert_eq!(store.get_state(&object("a"), "z"), Ok(Some(b"3".to_vec())));
    }

    #[test]
    fn an_edit_with_a_stale_version_changes_nothing() {
        let stale = holdfast_types::state_version([("x", &b"1"[..])]);
        let mut store = applied(&[set("a", "x", b"1"), set("a", "x", b"2")]);
        let before = store.clone();
        let effects = apply(
            &mut store,
            &Config::default(),
            &versioned_edit(&[("z", b"3")], Some(stale)),
        )
        .expect("applied");
        assert!(effects.is_empty());
        assert_eq!(store, before);
        assert_eq!(store.get_state(&object("a"), "x"), Ok(Some(b"2".to_vec())));
        assert_eq!(store.get_state(&object("a"), "z"), Ok(None));
    }

    #[test]
    fn an_edit_without_a_version_is_forced() {
        let store = applied(&[
            set("a", "x", b"1"),
            set("a", "x", b"2"),
            versioned_edit(&[("z", b"3")], None),
        ]);
        assert_eq!(store.get_state(&object("a"), "x"), Ok(None));
        assert_eq!(store.get_state(&object("a"), "z"), Ok(Some(b"3".to_vec())));
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
            key.clone()
                .prop_map(|k| Command::ClearAllState { object: object(k) }),
            (
                key,
                prop::option::of(prop::collection::vec(any::<u8>(), 0..4))
            )
                .prop_map(|(k, value)| Command::EditState {
                    object: object(k),
                    entries: value
                        .map(|value| StateEntry {
                            name: "x".into(),
                            value
                        })
                        .into_iter()
                        .collect(),
                    expected_version: None,
                }),
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
                            Command::EditState { object: o, entries, .. } if o.key == key => {
                                expected = entries.iter().find(|e| e.name == name).map(|e| e.value.clone());
                            }
                            _ => {}
                        }
                    }
                    prop_assert_eq!(store.get_state(&object(key), name), Ok(expected));
                }
            }
        }
    }
}

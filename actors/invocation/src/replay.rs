//! The journal as the SDK sees it on replay: each stored entry with the result it has received
//! embedded in its `result` field (`docs/protocol.md`, section 5, step 1).

use holdfast_fsm::state::JournalItem;
use holdfast_protocol::{Entry, Message, Outcome};

/// The message that replays `item` to the SDK: the entry as written, with its later completion
/// (if any) as its `result`, so the handler gets the recorded result instead of acting again.
///
/// A pending entry keeps the result it was written with, which for a kernel-completed entry is
/// none: the SDK then waits for a `completion`. Entries that are not completable never carry one.
pub fn replay(item: &JournalItem) -> Message {
    Message::Entry(replay_entry(item))
}

/// The entry part of [`replay`], for callers that frame entries themselves.
pub fn replay_entry(item: &JournalItem) -> Entry {
    let mut entry = item.entry.clone();
    if let Some(outcome) = &item.completion
        && let Some(slot) = result_slot(&mut entry)
    {
        *slot = Some(outcome.clone());
    }
    entry
}

/// The `result` field of a completable entry; `None` for entries that never get a result.
fn result_slot(entry: &mut Entry) -> Option<&mut Option<Outcome>> {
    match entry {
        Entry::GetState(e) => Some(&mut e.result),
        Entry::StateKeys(e) => Some(&mut e.result),
        Entry::Call(e) => Some(&mut e.result),
        Entry::Sleep(e) => Some(&mut e.result),
        Entry::Run(e) => Some(&mut e.result),
        Entry::Awakeable(e) => Some(&mut e.result),
        Entry::GetPromise(e) => Some(&mut e.result),
        Entry::PeekPromise(e) => Some(&mut e.result),
        Entry::CompletePromise(e) => Some(&mut e.result),
        Entry::Input(_)
        | Entry::Output(_)
        | Entry::SetState(_)
        | Entry::ClearState(_)
        | Entry::ClearAllState(_)
        | Entry::Send(_)
        | Entry::CompleteAwakeable(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::message::{
        Awakeable, Call, ClearAllState, ClearState, CompleteAwakeable, CompletePromise, GetPromise,
        GetState, Input, Output, PeekPromise, Run, Send, SetState, Sleep, StateKeys,
    };
    use holdfast_protocol::{Failure, Payload};

    fn bytes(text: &str) -> Payload {
        Payload::from(text.as_bytes())
    }

    fn value(text: &str) -> Outcome {
        Outcome::Value(bytes(text))
    }

    fn completed(entry: Entry, outcome: Outcome) -> JournalItem {
        JournalItem {
            completion: Some(outcome),
            ..JournalItem::new(entry)
        }
    }

    fn entry_of(message: Message) -> Entry {
        match message {
            Message::Entry(entry) => entry,
            other => panic!("replay produced a control message: {other:?}"),
        }
    }

    fn call(result: Option<Outcome>) -> Call {
        Call {
            handler: "greet".to_owned(),
            headers: vec![("x-trace".to_owned(), "1".to_owned())],
            idempotency_key: None,
            key: Some("k".to_owned()),
            parameter: bytes("\"Bob\""),
            result,
            service: "Greeter".to_owned(),
        }
    }

    #[test]
    fn input_is_replayed_as_written() {
        let entry = Entry::Input(Input {
            value: bytes("\"Alice\""),
        });
        assert_eq!(
            replay(&JournalItem::new(entry.clone())),
            Message::Entry(entry)
        );
    }

    #[test]
    fn output_is_replayed_as_written() {
        let entry = Entry::Output(Output {
            result: Outcome::Failure(Failure {
                code: 418,
                message: "teapot".to_owned(),
            }),
        });
        assert_eq!(entry_of(replay(&JournalItem::new(entry.clone()))), entry);
    }

    #[test]
    fn get_state_carries_the_value_the_kernel_read() {
        let pending = Entry::GetState(GetState {
            key: "count".to_owned(),
            result: None,
        });
        let replayed = entry_of(replay(&completed(pending, value("3"))));
        assert_eq!(
            replayed,
            Entry::GetState(GetState {
                key: "count".to_owned(),
                result: Some(value("3")),
            })
        );
    }

    #[test]
    fn get_state_answered_by_the_sdk_keeps_its_own_result() {
        let eager = Entry::GetState(GetState {
            key: "count".to_owned(),
            result: Some(Outcome::Void),
        });
        assert_eq!(entry_of(replay(&JournalItem::new(eager.clone()))), eager);
    }

    #[test]
    fn pending_get_state_is_replayed_without_result() {
        let pending = Entry::GetState(GetState {
            key: "count".to_owned(),
            result: None,
        });
        assert_eq!(
            entry_of(replay(&JournalItem::new(pending.clone()))),
            pending
        );
    }

    #[test]
    fn state_writes_are_replayed_as_written() {
        for entry in [
            Entry::SetState(SetState {
                key: "k".to_owned(),
                value: bytes("1"),
            }),
            Entry::ClearState(ClearState {
                key: "k".to_owned(),
            }),
            Entry::ClearAllState(ClearAllState {}),
        ] {
            assert_eq!(entry_of(replay(&JournalItem::new(entry.clone()))), entry);
        }
    }

    #[test]
    fn state_keys_carries_the_keys() {
        let keys = Outcome::Keys(vec!["a".to_owned(), "b".to_owned()]);
        let replayed = entry_of(replay(&completed(
            Entry::StateKeys(StateKeys { result: None }),
            keys.clone(),
        )));
        assert_eq!(replayed, Entry::StateKeys(StateKeys { result: Some(keys) }));
    }

    #[test]
    fn call_carries_the_callee_output() {
        let replayed = entry_of(replay(&completed(
            Entry::Call(call(None)),
            value("\"Hello Bob\""),
        )));
        assert_eq!(replayed, Entry::Call(call(Some(value("\"Hello Bob\"")))));
    }

    #[test]
    fn pending_call_is_replayed_without_result() {
        let replayed = entry_of(replay(&JournalItem::new(Entry::Call(call(None)))));
        assert_eq!(replayed, Entry::Call(call(None)));
    }

    #[test]
    fn send_is_replayed_as_written() {
        let entry = Entry::Send(Send {
            delay_ms: Some(5),
            handler: "greet".to_owned(),
            headers: Vec::new(),
            idempotency_key: Some("once".to_owned()),
            key: None,
            parameter: bytes("1"),
            service: "Greeter".to_owned(),
        });
        assert_eq!(entry_of(replay(&JournalItem::new(entry.clone()))), entry);
    }

    #[test]
    fn fired_sleep_carries_void() {
        let replayed = entry_of(replay(&completed(
            Entry::Sleep(Sleep {
                duration_ms: 1000,
                result: None,
            }),
            Outcome::Void,
        )));
        assert_eq!(
            replayed,
            Entry::Sleep(Sleep {
                duration_ms: 1000,
                result: Some(Outcome::Void),
            })
        );
    }

    #[test]
    fn run_carries_its_recorded_result() {
        let run = |result| {
            Entry::Run(Run {
                name: "charge".to_owned(),
                result,
            })
        };
        let replayed = entry_of(replay(&completed(run(None), value("42"))));
        assert_eq!(replayed, run(Some(value("42"))));
        let failed = Outcome::Failure(Failure {
            code: 500,
            message: "declined".to_owned(),
        });
        let replayed = entry_of(replay(&completed(run(None), failed.clone())));
        assert_eq!(replayed, run(Some(failed)));
        assert_eq!(entry_of(replay(&JournalItem::new(run(None)))), run(None));
    }

    #[test]
    fn awakeable_carries_its_resolution() {
        let replayed = entry_of(replay(&completed(
            Entry::Awakeable(Awakeable { result: None }),
            value("\"ok\""),
        )));
        assert_eq!(
            replayed,
            Entry::Awakeable(Awakeable {
                result: Some(value("\"ok\""))
            })
        );
    }

    #[test]
    fn complete_awakeable_is_replayed_as_written() {
        let entry = Entry::CompleteAwakeable(CompleteAwakeable {
            id: "awk_x_1".to_owned(),
            result: value("1"),
        });
        assert_eq!(entry_of(replay(&JournalItem::new(entry.clone()))), entry);
    }

    #[test]
    fn promises_carry_their_results() {
        let get = entry_of(replay(&completed(
            Entry::GetPromise(GetPromise {
                name: "p".to_owned(),
                result: None,
            }),
            value("7"),
        )));
        assert_eq!(
            get,
            Entry::GetPromise(GetPromise {
                name: "p".to_owned(),
                result: Some(value("7")),
            })
        );
        let peek = entry_of(replay(&completed(
            Entry::PeekPromise(PeekPromise {
                name: "p".to_owned(),
                result: None,
            }),
            Outcome::Void,
        )));
        assert_eq!(
            peek,
            Entry::PeekPromise(PeekPromise {
                name: "p".to_owned(),
                result: Some(Outcome::Void),
            })
        );
        let conflict = Outcome::Failure(Failure {
            code: 409,
            message: "already completed".to_owned(),
        });
        let complete = entry_of(replay(&completed(
            Entry::CompletePromise(CompletePromise {
                completion: value("1"),
                name: "p".to_owned(),
                result: None,
            }),
            conflict.clone(),
        )));
        assert_eq!(
            complete,
            Entry::CompletePromise(CompletePromise {
                completion: value("1"),
                name: "p".to_owned(),
                result: Some(conflict),
            })
        );
    }

    #[test]
    fn a_completion_of_a_non_completable_entry_is_not_invented_into_it() {
        let entry = Entry::SetState(SetState {
            key: "k".to_owned(),
            value: bytes("1"),
        });
        assert_eq!(
            entry_of(replay(&completed(entry.clone(), Outcome::Void))),
            entry
        );
    }
}

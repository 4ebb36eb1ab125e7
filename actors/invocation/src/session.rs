//! The kernel's bookkeeping for one attempt, free of I/O: which index the next entry gets, which
//! entries are runs or already completed, and what each frame from the SDK means
//! (`docs/protocol.md`, sections 5 and 6). The actor feeds it frames and reports what comes out.

use std::collections::{BTreeSet, HashSet};

use holdfast_fsm::state::JournalItem;
use holdfast_protocol::message::AttemptError;
use holdfast_protocol::{Entry, EntryIndex, Flags, Frame, Message, Outcome};
use holdfast_types::Ending;
use thiserror::Error;

/// What a frame from the SDK amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A new journal entry at `index`.
    Entry {
        index: EntryIndex,
        entry: Entry,
        ack: bool,
    },
    /// The SDK's result for its own `run` entry at `index`.
    RunResult {
        index: EntryIndex,
        outcome: Outcome,
        ack: bool,
    },
    /// The attempt is over.
    Ended(Ending),
}

/// How the SDK broke the protocol; each one ends the attempt with a retryable 571.
#[derive(Debug, Error)]
pub enum Violation {
    /// The response body does not decode into frames.
    #[error("undecodable frame: {0}")]
    Undecodable(#[from] holdfast_protocol::Error),
    /// A control message only the kernel may send.
    #[error("the SDK sent a {0} message, which only the kernel sends")]
    KernelMessage(&'static str),
    /// An `input` entry, which only the kernel writes.
    #[error("the SDK sent an input entry, which only the kernel writes")]
    InputEntry,
    /// A completion for an entry the journal does not have yet.
    #[error("the SDK sent a completion for entry {index}, but the journal has only {len} entries")]
    UnknownEntry {
        /// The index named by the completion.
        index: u32,
        /// Entries in the journal so far.
        len: u32,
    },
    /// A completion for an entry that is not a `run`: only runs are completed by the SDK.
    #[error("the SDK sent a completion for entry {index}, which is not a run entry")]
    NotARun {
        /// The index named by the completion.
        index: u32,
    },
    /// Something other than `end` after the output entry.
    #[error("the SDK sent a {0} message after its output entry")]
    AfterOutput(&'static str),
    /// `end` without an output entry in the journal.
    #[error("the SDK sent end without an output entry")]
    EndWithoutOutput,
    /// A suspension that waits on nothing or on entries that do not exist.
    #[error("the SDK suspended waiting on {waiting:?}, but the journal has only {len} entries")]
    BadSuspension {
        /// The entries named by the suspension.
        waiting: Vec<u32>,
        /// Entries in the journal so far.
        len: u32,
    },
    /// The response ended before the SDK said how the attempt ends.
    #[error("the response ended without end, suspension or error")]
    NoEnding,
}

/// Index bookkeeping of one attempt, seeded from the replayed journal.
#[derive(Debug)]
pub(crate) struct Session {
    /// The index the next new entry gets.
    next: u32,
    /// Indices of `run` entries: the only entries the SDK may complete.
    runs: BTreeSet<u32>,
    /// Entries whose result the SDK already has (replayed with it, or delivered since).
    completed: HashSet<u32>,
    /// An output entry exists (replayed or new): `end` may follow.
    output: bool,
    /// The output entry was written during this attempt: only `end` may follow it.
    output_new: bool,
}

impl Session {
    /// A session for an attempt that replays `journal`.
    pub(crate) fn new(journal: &[JournalItem]) -> Self {
        let mut session = Session {
            next: 0,
            runs: BTreeSet::new(),
            completed: HashSet::new(),
            output: false,
            output_new: false,
        };
        for item in journal {
            let index = session.push(&item.entry);
            if item.outcome().is_some() {
                session.completed.insert(index);
            }
        }
        session
    }

    /// The index the next new entry will get.
    #[cfg(test)]
    pub(crate) fn next_index(&self) -> EntryIndex {
        EntryIndex(self.next)
    }

    /// Whether a completion for `index` should reach the SDK: false for an entry it already has
    /// a result for. Admitting it marks it completed, so a duplicate is dropped.
    pub(crate) fn admit_completion(&mut self, index: EntryIndex) -> bool {
        self.completed.insert(index.0)
    }

    /// Interprets one frame from the SDK.
    pub(crate) fn receive(&mut self, frame: Frame) -> Result<Step, Violation> {
        let ack = frame.flags.contains(Flags::ACK);
        let name = frame.message.message_type().name();
        if self.output_new && !matches!(frame.message, Message::End(_)) {
            return Err(Violation::AfterOutput(name));
        }
        match frame.message {
            Message::Entry(Entry::Input(_)) => Err(Violation::InputEntry),
            Message::Entry(entry) => {
                let index = EntryIndex(self.push(&entry));
                if matches!(entry, Entry::Output(_)) {
                    self.output_new = true;
                }
                Ok(Step::Entry { index, entry, ack })
            }
            Message::Completion(completion) => {
                let index = completion.entry.0;
                if index >= self.next {
                    return Err(Violation::UnknownEntry {
                        index,
                        len: self.next,
                    });
                }
                if !self.runs.contains(&index) {
                    return Err(Violation::NotARun { index });
                }
                Ok(Step::RunResult {
                    index: completion.entry,
                    outcome: completion.result,
                    ack,
                })
            }
            Message::Suspension(suspension) => {
                let waiting = suspension.waiting_on;
                if waiting.is_empty() || waiting.iter().any(|i| i.0 >= self.next) {
                    return Err(Violation::BadSuspension {
                        waiting: waiting.iter().map(|i| i.0).collect(),
                        len: self.next,
                    });
                }
                Ok(Step::Ended(Ending::Suspended { waiting }))
            }
            Message::Error(error) => Ok(Step::Ended(failed(error))),
            Message::End(_) if self.output => Ok(Step::Ended(Ending::Completed)),
            Message::End(_) => Err(Violation::EndWithoutOutput),
            Message::Start(_) | Message::EntryAck(_) => Err(Violation::KernelMessage(name)),
        }
    }

    /// Appends an entry to the bookkeeping; returns its index.
    fn push(&mut self, entry: &Entry) -> u32 {
        let index = self.next;
        self.next = self.next.saturating_add(1);
        match entry {
            Entry::Run(_) => {
                self.runs.insert(index);
            }
            Entry::Output(_) => self.output = true,
            _ => {}
        }
        index
    }
}

/// The ending an SDK `error` message asks for.
fn failed(error: AttemptError) -> Ending {
    Ending::Failed {
        code: error.code,
        message: error.message,
        retryable: error.retryable,
        retry_after_ms: error.next_retry_delay_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::Payload;
    use holdfast_protocol::message::{
        Call, Completion, End, EntryAck, Input, Output, Run, SetState, Start, Suspension,
    };

    fn input() -> JournalItem {
        JournalItem::new(Entry::Input(Input {
            value: Payload::from(&b"1"[..]),
        }))
    }

    fn run(name: &str) -> Entry {
        Entry::Run(Run {
            name: name.to_owned(),
            result: None,
        })
    }

    fn call() -> Entry {
        Entry::Call(Call {
            handler: "h".to_owned(),
            headers: Vec::new(),
            idempotency_key: None,
            key: None,
            parameter: Payload::default(),
            result: None,
            service: "S".to_owned(),
        })
    }

    fn output() -> Entry {
        Entry::Output(Output {
            result: Outcome::Void,
        })
    }

    fn frame(message: Message) -> Frame {
        Frame::new(message)
    }

    fn acked(message: Message) -> Frame {
        Frame {
            flags: Flags::ACK,
            message,
        }
    }

    fn completion(index: u32) -> Message {
        Message::Completion(Completion {
            entry: EntryIndex(index),
            result: Outcome::Value(Payload::from(&b"2"[..])),
        })
    }

    #[test]
    fn new_entries_are_numbered_after_the_replayed_journal() {
        let mut session = Session::new(&[input(), JournalItem::new(call())]);
        assert_eq!(session.next_index(), EntryIndex(2));
        let step = session.receive(acked(Message::Entry(run("r"))));
        assert_eq!(
            step.ok(),
            Some(Step::Entry {
                index: EntryIndex(2),
                entry: run("r"),
                ack: true,
            })
        );
        assert_eq!(session.next_index(), EntryIndex(3));
    }

    #[test]
    fn a_run_completion_is_a_run_result_with_its_ack_flag() {
        let mut session = Session::new(&[input()]);
        assert!(session.receive(frame(Message::Entry(run("r")))).is_ok());
        let step = session.receive(acked(completion(1)));
        assert_eq!(
            step.ok(),
            Some(Step::RunResult {
                index: EntryIndex(1),
                outcome: Outcome::Value(Payload::from(&b"2"[..])),
                ack: true,
            })
        );
    }

    #[test]
    fn a_replayed_pending_run_may_be_completed_by_the_sdk() {
        let mut session = Session::new(&[input(), JournalItem::new(run("r"))]);
        assert!(matches!(
            session.receive(acked(completion(1))),
            Ok(Step::RunResult { .. })
        ));
    }

    #[test]
    fn a_completion_for_another_entry_is_a_violation() {
        let mut session = Session::new(&[input(), JournalItem::new(call())]);
        assert!(matches!(
            session.receive(frame(completion(1))),
            Err(Violation::NotARun { index: 1 })
        ));
        assert!(matches!(
            session.receive(frame(completion(7))),
            Err(Violation::UnknownEntry { index: 7, len: 2 })
        ));
    }

    #[test]
    fn kernel_messages_and_input_from_the_sdk_are_violations() {
        let mut session = Session::new(&[input()]);
        let start = Message::Start(Start {
            attempt: 1,
            awakeable_key: holdfast_protocol::Payload::from(&[0u8; 32][..]),
            headers: Vec::new(),
            id: "x".to_owned(),
            key: None,
            known_entries: 1,
            retry_count: 0,
            retry_elapsed_ms: 0,
            retry_entry: None,
            state: Vec::new(),
            state_complete: true,
        });
        assert!(matches!(
            session.receive(frame(start)),
            Err(Violation::KernelMessage("start"))
        ));
        let ack = Message::EntryAck(EntryAck {
            entry: EntryIndex(0),
        });
        assert!(matches!(
            session.receive(frame(ack)),
            Err(Violation::KernelMessage("entry_ack"))
        ));
        assert!(matches!(
            session.receive(frame(Message::Entry(input().entry))),
            Err(Violation::InputEntry)
        ));
    }

    #[test]
    fn end_after_output_completes_and_nothing_else_may_follow_it() {
        let mut session = Session::new(&[input()]);
        assert!(session.receive(frame(Message::Entry(output()))).is_ok());
        let mut after = Session::new(&[input()]);
        assert!(after.receive(frame(Message::Entry(output()))).is_ok());
        assert!(matches!(
            after.receive(frame(Message::Entry(call()))),
            Err(Violation::AfterOutput("call"))
        ));
        assert_eq!(
            session.receive(frame(Message::End(End {}))).ok(),
            Some(Step::Ended(Ending::Completed))
        );
    }

    #[test]
    fn end_after_a_replayed_output_completes() {
        let mut session = Session::new(&[input(), JournalItem::new(output())]);
        assert_eq!(
            session.receive(frame(Message::End(End {}))).ok(),
            Some(Step::Ended(Ending::Completed))
        );
    }

    #[test]
    fn end_without_output_is_a_violation() {
        let mut session = Session::new(&[input()]);
        let set = Entry::SetState(SetState {
            key: "k".to_owned(),
            value: Payload::default(),
        });
        assert!(session.receive(frame(Message::Entry(set))).is_ok());
        assert!(matches!(
            session.receive(frame(Message::End(End {}))),
            Err(Violation::EndWithoutOutput)
        ));
    }

    #[test]
    fn suspension_must_wait_on_existing_entries() {
        let mut session = Session::new(&[input(), JournalItem::new(call())]);
        let suspend = |waiting: Vec<u32>| {
            frame(Message::Suspension(Suspension {
                waiting_on: waiting.into_iter().map(EntryIndex).collect(),
            }))
        };
        assert!(matches!(
            session.receive(suspend(vec![])),
            Err(Violation::BadSuspension { .. })
        ));
        assert!(matches!(
            session.receive(suspend(vec![1, 2])),
            Err(Violation::BadSuspension { len: 2, .. })
        ));
        assert_eq!(
            session.receive(suspend(vec![1])).ok(),
            Some(Step::Ended(Ending::Suspended {
                waiting: vec![EntryIndex(1)]
            }))
        );
    }

    #[test]
    fn an_sdk_error_becomes_the_failed_ending_it_asks_for() {
        let mut session = Session::new(&[input()]);
        let error = Message::Error(AttemptError {
            code: 418,
            message: "teapot".to_owned(),
            next_retry_delay_ms: None,
            related_entry: None,
            retryable: false,
        });
        assert_eq!(
            session.receive(frame(error)).ok(),
            Some(Step::Ended(Ending::Failed {
                code: 418,
                message: "teapot".to_owned(),
                retryable: false,
                retry_after_ms: None,
            }))
        );
        let retry = Message::Error(AttemptError {
            code: 500,
            message: "run failed".to_owned(),
            next_retry_delay_ms: Some(100),
            related_entry: Some(EntryIndex(0)),
            retryable: true,
        });
        assert_eq!(
            session.receive(frame(retry)).ok(),
            Some(Step::Ended(Ending::Failed {
                code: 500,
                message: "run failed".to_owned(),
                retryable: true,
                retry_after_ms: Some(100),
            }))
        );
    }

    #[test]
    fn completions_already_known_are_admitted_once() {
        let completed = JournalItem {
            completion: Some(Outcome::Void),
            ..JournalItem::new(call())
        };
        let mut session = Session::new(&[input(), completed, JournalItem::new(call())]);
        assert!(!session.admit_completion(EntryIndex(1)));
        assert!(session.admit_completion(EntryIndex(2)));
        assert!(!session.admit_completion(EntryIndex(2)));
    }
}

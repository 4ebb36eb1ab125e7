//! Operator control of invocations — cancel, kill, purge, pause, resume — as a pure question:
//! what may each request do to an invocation in a given state?
//!
//! The admin API asks [`check`] against the applied state before it proposes anything, so an
//! operator hears why a request was refused (not found, already completed, still running). The
//! lifecycle steps obey the same rules when the command is applied, so a command that went stale
//! between the check and its commit (the invocation completed meanwhile) is still ignored, the
//! same way on every replica and every replay.

use crate::state::Status;

/// An operator's request about one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Cancel: the handler sees a cancellation failure at its next await.
    Cancel,
    /// Kill: stop at once, without compensation.
    Kill,
    /// Purge: forget a completed invocation.
    Purge,
    /// Pause: fence the running attempt (or abandon a backoff or suspension) until resumed.
    Pause,
    /// Resume with a new attempt now; `repin` when the request also moves the invocation to
    /// another deployment.
    Resume {
        /// The request names a deployment to pin the invocation to.
        repin: bool,
    },
}

/// What a request that is allowed will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Proposing the command changes the invocation.
    Apply,
    /// The invocation already is where the request would put it (paused and asked to pause,
    /// running and asked to resume): nothing needs to be proposed.
    Unchanged,
}

/// Why the state of an invocation forbids a request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum Refusal {
    /// No such invocation: it never existed here, or it was purged.
    #[error("invocation not found")]
    NotFound,
    /// The invocation has completed; only purge applies to it.
    #[error("the invocation has already completed")]
    Completed,
    /// Purge applies only to completed invocations.
    #[error("the invocation has not completed yet, so it cannot be purged")]
    NotCompleted,
    /// The invocation has never run: it waits in its object's inbox or for its scheduled start.
    #[error(
        "the invocation has not started yet: it waits in its object's inbox or for its scheduled start"
    )]
    NotStarted,
    /// A running attempt cannot move to another deployment; pause it first.
    #[error("the invocation is running: pause it before resuming it on another deployment")]
    Running,
}

/// Decides what `action` does to an invocation whose status is `status` (`None`: unknown).
pub fn check(status: Option<&Status>, action: Action) -> Result<Verdict, Refusal> {
    let Some(status) = status else {
        return Err(Refusal::NotFound);
    };
    let completed = matches!(status, Status::Completed { .. });
    match action {
        Action::Cancel | Action::Kill if completed => Err(Refusal::Completed),
        Action::Cancel | Action::Kill => Ok(Verdict::Apply),
        Action::Purge if completed => Ok(Verdict::Apply),
        Action::Purge => Err(Refusal::NotCompleted),
        Action::Pause | Action::Resume { .. } => match status {
            Status::Completed { .. } => Err(Refusal::Completed),
            Status::Inboxed | Status::Scheduled { .. } => Err(Refusal::NotStarted),
            Status::Paused { .. } => Ok(match action {
                Action::Pause => Verdict::Unchanged,
                _ => Verdict::Apply,
            }),
            Status::Invoked { .. } => match action {
                Action::Pause => Ok(Verdict::Apply),
                Action::Resume { repin: true } => Err(Refusal::Running),
                _ => Ok(Verdict::Unchanged),
            },
            Status::Suspended { .. } | Status::BackingOff { .. } => Ok(Verdict::Apply),
            // Waiting for a limit's permit: it may be paused; resuming it changes nothing.
            Status::Throttled { .. } => Ok(match action {
                Action::Pause => Verdict::Apply,
                _ => Verdict::Unchanged,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::{EntryIndex, Outcome};
    use holdfast_types::Epoch;

    fn statuses() -> [Status; 8] {
        [
            Status::Inboxed,
            Status::Scheduled { start_at_ms: 9 },
            Status::Invoked { epoch: Epoch(1) },
            Status::Suspended {
                epoch: Epoch(1),
                waiting: vec![EntryIndex(1)],
            },
            Status::BackingOff {
                epoch: Epoch(1),
                attempts: 1,
                retry_at_ms: Some(9),
            },
            Status::Paused { epoch: Epoch(1) },
            Status::Throttled { epoch: Epoch(1) },
            Status::Completed {
                outcome: Outcome::Void,
                expires_at_ms: 5,
            },
        ]
    }

    #[test]
    fn every_action_on_an_unknown_invocation_is_not_found() {
        for action in [
            Action::Cancel,
            Action::Kill,
            Action::Purge,
            Action::Pause,
            Action::Resume { repin: false },
            Action::Resume { repin: true },
        ] {
            assert_eq!(check(None, action), Err(Refusal::NotFound), "{action:?}");
        }
    }

    #[test]
    fn the_matrix_of_actions_and_states_is_as_documented() {
        use Refusal::*;
        use Verdict::*;
        let states = statuses();
        // Columns: inboxed, scheduled, invoked, suspended, backing off, paused, throttled,
        // completed.
        let rows: [(Action, [Result<Verdict, Refusal>; 8]); 6] = [
            (
                Action::Cancel,
                [
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Err(Completed),
                ],
            ),
            (
                Action::Kill,
                [
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Err(Completed),
                ],
            ),
            (
                Action::Purge,
                [
                    Err(NotCompleted),
                    Err(NotCompleted),
                    Err(NotCompleted),
                    Err(NotCompleted),
                    Err(NotCompleted),
                    Err(NotCompleted),
                    Err(NotCompleted),
                    Ok(Apply),
                ],
            ),
            (
                Action::Pause,
                [
                    Err(NotStarted),
                    Err(NotStarted),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Unchanged),
                    Ok(Apply),
                    Err(Completed),
                ],
            ),
            (
                Action::Resume { repin: false },
                [
                    Err(NotStarted),
                    Err(NotStarted),
                    Ok(Unchanged),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Unchanged),
                    Err(Completed),
                ],
            ),
            (
                Action::Resume { repin: true },
                [
                    Err(NotStarted),
                    Err(NotStarted),
                    Err(Running),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Apply),
                    Ok(Unchanged),
                    Err(Completed),
                ],
            ),
        ];
        for (action, expected) in rows {
            for (status, expected) in states.iter().zip(expected) {
                assert_eq!(
                    check(Some(status), action),
                    expected,
                    "{action:?} {status:?}"
                );
            }
        }
    }
}

//! The commands of a partition log. The log is the ground truth: a partition's state is exactly
//! the fold of its committed commands.
//!
//! The format is append-only: never reorder, rename or remove a variant or a field; add new
//! variants at the end with a golden-bytes test in [`crate::codec`].

use crate::{
    DeploymentId, Ending, EntryIndex, Epoch, HandlerKind, InvocationId, InvocationRequest,
};
use crate::{OutboxMessage, PartitionId, RetryPolicy, TimerKey};
use holdfast_protocol::{Entry, Outcome};
use serde::{Deserialize, Serialize};

/// Addresses the state of one keyed service instance (a virtual object or a workflow run).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Name of the keyed service, e.g. `Counter`.
    pub service: String,
    /// The key that selects one instance, e.g. a user id.
    pub key: String,
}

impl ObjectKey {
    /// Builds the address of one keyed service instance.
    pub fn new(service: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            key: key.into(),
        }
    }
}

/// One named state entry of an object, as an operator writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The entry's name.
    pub name: String,
    /// Its value, as the SDK stores it (JSON bytes for the TypeScript SDK).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// The version of an object's state, as Restate's CLI computes it before `state edit`/`clear`:
/// base64url (no padding) of the SHA-256 of the entries sorted by name (byte order), each
/// written as `u64_be(i) ‖ 0x01 ‖ name ‖ 0x02 ‖ value ‖ 0x03` with `i` its position. An edit that
/// carries a version is refused unless the object's state still has it.
pub fn state_version<N, V>(entries: impl IntoIterator<Item = (N, V)>) -> String
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<(N, V)> = entries.into_iter().collect();
    sorted.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut hasher = Sha256::new();
    for (i, (name, value)) in sorted.iter().enumerate() {
        hasher.update((i as u64).to_be_bytes());
        hasher.update([0x01]);
        hasher.update(name.as_ref());
        hasher.update([0x02]);
        hasher.update(value.as_ref());
        hasher.update([0x03]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// One command in a partition log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets one named state entry of an object, replacing any previous value.
    SetState {
        object: ObjectKey,
        name: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes one named state entry of an object; absent entries are left alone.
    ClearState { object: ObjectKey, name: String },
    /// Removes every state entry of an object.
    ClearAllState { object: ObjectKey },
    /// An operator replaces an object's whole state with `entries` (none: cleared), unless an
    /// invocation holds the object's lock when the command applies (then nothing changes, so a
    /// running handler never sees its state change under it).
    ///
    /// With `expected_version`, the edit is also skipped unless the object's current state has
    /// that [`state_version`] (an edit based on stale state); absent: applied whatever the state.
    EditState {
        object: ObjectKey,
        entries: Vec<StateEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<String>,
    },
    /// Creates an invocation (from the ingress); duplicates of an existing id attach to it.
    Invoke(Box<InvocationRequest>),
    /// A new journal entry from attempt `epoch`; refused unless that attempt is the running one
    /// and `index` is the journal's next index.
    JournalAppend {
        id: InvocationId,
        epoch: Epoch,
        index: EntryIndex,
        entry: Entry,
        /// The frame carried the `ACK` flag: the SDK wants an `entry_ack` once durable.
        ack: bool,
        /// For `call`/`send` entries: the callee handler's kind, resolved by the proposer from the
        /// registered schema (absent: exclusive if keyed, else shared).
        callee_kind: Option<HandlerKind>,
        /// The proposer's clock when the entry arrived, in Unix milliseconds.
        at_ms: u64,
        /// For `call`/`send` entries: the callee's retry policy, resolved by the proposer like
        /// `callee_kind` (absent: the callee's partition uses its configured policy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callee_retry: Option<RetryPolicy>,
    },
    /// Attempt `epoch` ended (suspended, failed or completed); ignored unless it is the running one.
    AttemptEnded {
        id: InvocationId,
        epoch: Epoch,
        ending: Ending,
        /// The proposer's clock when the attempt ended, in Unix milliseconds.
        at_ms: u64,
    },
    /// The result of a completable entry from outside the attempt (a callee's output).
    Completion {
        id: InvocationId,
        index: EntryIndex,
        outcome: Outcome,
    },
    /// Starts a new attempt if attempt `epoch` is still the current one (backoff expired, or a
    /// new leader restarts attempts it cannot see running).
    Retry { id: InvocationId, epoch: Epoch },
    /// A message from another partition's outbox; applied only if `seq` is above the last one
    /// seen from `from`.
    ShuffleIn {
        from: PartitionId,
        seq: u64,
        message: OutboxMessage,
        /// The proposer's clock, in Unix milliseconds.
        at_ms: u64,
    },
    /// Every outbox message up to and including `up_to` was committed by its target partition.
    OutboxDelivered { up_to: u64 },
    /// Cancels an invocation: the handler sees a 409 failure at its next await.
    Cancel { id: InvocationId, at_ms: u64 },
    /// Stops an invocation at once, without compensation; callers get a failure.
    Kill { id: InvocationId, at_ms: u64 },
    /// Forgets a completed invocation: its status, journal and idempotency key.
    Purge { id: InvocationId },
    /// Starts a new attempt of a paused invocation.
    Resume { id: InvocationId },
    /// The result of a `run` entry proposed by attempt `epoch`; the first result wins.
    RunCompleted {
        id: InvocationId,
        epoch: Epoch,
        index: EntryIndex,
        outcome: Outcome,
        /// The SDK waits for an `entry_ack` before releasing the result to user code.
        ack: bool,
    },
    /// Pauses a started invocation (an operator's request): a running attempt is fenced, a
    /// backoff or a suspension is abandoned, and nothing runs until [`Command::ResumeOn`].
    Pause { id: InvocationId },
    /// Resumes a paused, suspended or backing-off invocation with a new attempt at once; with
    /// `deployment`, its attempts are first pinned to that deployment (the proposer resolves
    /// "the latest deployment" to an id, so every replica pins the same one).
    ResumeOn {
        id: InvocationId,
        deployment: Option<DeploymentId>,
    },
    /// Timer `timer` came due (proposed by the leader's timer wheel); applied only if the timer
    /// is still pending, so it fires exactly once however often it is proposed.
    FireTimer {
        timer: TimerKey,
        /// The proposer's clock, in Unix milliseconds.
        at_ms: u64,
    },
    /// Completes awakeable entry `index` of invocation `id` from outside (the ingress); applied
    /// only if `token` proves the id was issued for that entry and the awakeable is still pending.
    CompleteAwakeable {
        id: InvocationId,
        index: EntryIndex,
        #[serde(with = "serde_bytes")]
        token: [u8; crate::awakeable::TOKEN_BYTES],
        outcome: Outcome,
    },
    /// Replaces running attempt `epoch` with a new one, if it is still the running attempt: a
    /// new leader (or its reconciler) restarts an attempt it does not run. Unlike
    /// [`Command::Retry`] it never cuts a backoff short.
    Restart { id: InvocationId, epoch: Epoch },
    /// Tick `tick_ms` of schedule `name` came due (proposed by the leader of the partition that
    /// fires the schedule, which resolved `request` from the registry): applied only if the tick
    /// is newer than the last one fired, so each tick starts one invocation however often it is
    /// proposed. `skipped` counts the due ticks before it that the catch-up policy does not fire.
    FireSchedule {
        name: String,
        tick_ms: u64,
        skipped: u64,
        /// What the tick does while an earlier tick's invocation runs.
        overlap: crate::Overlap,
        request: Box<InvocationRequest>,
    },
    /// The limits the registry holds now, proposed by the partition's leader when they differ
    /// from the applied ones: invocations admitted from here on are covered by these.
    SetLimits {
        limits: Vec<crate::Limit>,
        /// The proposer's clock, Unix milliseconds.
        at_ms: u64,
    },
    /// Grant what limit `name`'s queue may start now (proposed by its home's leader when the
    /// limit's bucket has refilled, or after a leader change).
    DrainLimit {
        name: String,
        /// The proposer's clock, Unix milliseconds: the bucket refills up to it.
        at_ms: u64,
    },
}

impl Command {
    /// The object this command writes state of directly, for the state commands.
    pub fn object(&self) -> Option<&ObjectKey> {
        match self {
            Command::SetState { object, .. }
            | Command::ClearState { object, .. }
            | Command::ClearAllState { object }
            | Command::EditState { object, .. } => Some(object),
            _ => None,
        }
    }

    /// Rough encoded size in bytes, used to bound the bytes in one group commit.
    pub fn approx_size(&self) -> usize {
        fn payload(outcome: &Outcome) -> usize {
            match outcome {
                Outcome::Value(value) => value.0.len(),
                Outcome::Failure(failure) => failure.message.len(),
                Outcome::Keys(keys) => keys.iter().map(|k| k.len() + 2).sum(),
                Outcome::Void => 0,
            }
        }
        let body = match self {
            Command::SetState {
                object,
                name,
                value,
            } => object.service.len() + object.key.len() + name.len() + value.len(),
            Command::ClearState { object, name } => {
                object.service.len() + object.key.len() + name.len()
            }
            Command::ClearAllState { object } => object.service.len() + object.key.len(),
            Command::EditState {
                object,
                entries,
                expected_version,
            } => {
                object.service.len()
                    + object.key.len()
                    + expected_version.as_ref().map_or(0, |v| v.len() + 2)
                    + entries
                        .iter()
                        .map(|e| e.name.len() + e.value.len() + 4)
                        .sum::<usize>()
            }
            Command::Invoke(request) => {
                request.argument.0.len()
                    + request
                        .headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len())
                        .sum::<usize>()
                    + 128
            }
            // Entries are stored as their canonical body; an unencodable one is refused later.
            Command::JournalAppend { entry, .. } => {
                entry.encode_body().map(|b| b.len()).unwrap_or(0) + 64
            }
            Command::AttemptEnded { ending, .. } => match ending {
                Ending::Failed { message, .. } => message.len() + 64,
                Ending::Suspended { waiting } => 4 * waiting.len() + 64,
                Ending::Completed => 64,
            },
            Command::Completion { outcome, .. } | Command::RunCompleted { outcome, .. } => {
                payload(outcome) + 64
            }
            Command::ShuffleIn { message, .. } => match message {
                OutboxMessage::Invoke(request) => request.argument.0.len() + 192,
                OutboxMessage::Completion { outcome, .. } => payload(outcome) + 96,
                OutboxMessage::Cancel { .. } | OutboxMessage::Kill { .. } => 96,
                OutboxMessage::CompleteAwakeable { outcome, .. } => payload(outcome) + 128,
                OutboxMessage::ScheduleRunEnded { name, .. } => name.len() + 96,
                OutboxMessage::LimitAcquire { limit, .. }
                | OutboxMessage::LimitGrant { limit, .. }
                | OutboxMessage::LimitRelease { limit, .. } => limit.len() + 96,
            },
            Command::Retry { .. }
            | Command::Restart { .. }
            | Command::OutboxDelivered { .. }
            | Command::Cancel { .. }
            | Command::Kill { .. }
            | Command::Purge { .. }
            | Command::Resume { .. }
            | Command::Pause { .. } => 64,
            Command::ResumeOn { deployment, .. } => 64 + deployment.as_ref().map_or(0, |_| 25),
            Command::FireTimer { .. } => 64,
            Command::CompleteAwakeable { outcome, .. } => payload(outcome) + 96,
            Command::FireSchedule { name, request, .. } => {
                name.len() + request.argument.0.len() + 192
            }
            Command::SetLimits { limits, .. } => limits
                .iter()
                .map(|l| l.name.len() + l.service.len() + 96)
                .sum(),
            Command::DrainLimit { name, .. } => name.len() + 32,
        };
        32 + body
    }
}

#[cfg(test)]
mod tests {
    use super::state_version;

    /// The values Restate's CLI computes for the same states.
    #[test]
    fn state_version_matches_restate() {
        assert_eq!(
            state_version([("count", b"5")]),
            "S6MyUcVGhqv_Nm54F5guL_XKfJMeFCOXIi7QEc5GZZA"
        );
        assert_eq!(
            state_version(Vec::<(&str, &[u8])>::new()),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn state_version_sorts_by_name_and_separates_fields() {
        let a = state_version([("b", &b"2"[..]), ("a", &b"1"[..])]);
        assert_eq!(a, state_version([("a", &b"1"[..]), ("b", &b"2"[..])]));
        assert_ne!(a, state_version([("a", &b"2"[..]), ("b", &b"1"[..])]));
        assert_ne!(
            state_version([("ab", &b""[..])]),
            state_version([("a", &b"b"[..])])
        );
    }
}

//! Builders shared by the scenario tests.

use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::{Invocation, Status};
use holdfast_fsm::{Config, Effect, Home, Store, apply};
use holdfast_protocol::message::{
    Awakeable, Call, CompleteAwakeable, CompletePromise, Entry, GetPromise, GetState, Output,
    PeekPromise, Run, Send, SetState, Sleep,
};
use holdfast_protocol::{EntryIndex, Failure, Outcome, Payload};
use holdfast_types::{
    Command, Ending, Epoch, HandlerKind, InvocationId, InvocationRequest, ObjectKey, OutboxMessage,
    Source, Target, Timer, TimerKey,
};

pub const T0: u64 = 1_000;

/// Partitions of the cluster in the tests that route messages between partitions.
pub const PARTITIONS: u32 = 8;

/// The settings of the partition that owns `id`.
pub fn home_of(id: InvocationId) -> Config {
    Config {
        home: Some(Home {
            partition: id.partition(PARTITIONS),
            partitions: PARTITIONS,
        }),
        ..Config::default()
    }
}

pub fn counter(key: &str) -> Target {
    Target::new("Counter", "add", Some(key.to_owned()))
}

pub fn greeter() -> Target {
    Target::new("Greeter", "greet", None)
}

pub fn object(key: &str) -> ObjectKey {
    ObjectKey::new("Counter", key)
}

pub fn id_of(target: &Target, nonce: u128) -> InvocationId {
    InvocationId::new(target, nonce)
}

pub fn bytes(text: &str) -> Payload {
    Payload::from(text.as_bytes())
}

pub fn request(target: Target, kind: HandlerKind, nonce: u128) -> InvocationRequest {
    InvocationRequest {
        id: id_of(&target, nonce),
        target,
        kind,
        argument: bytes("arg"),
        headers: vec![("h".to_owned(), "v".to_owned())],
        source: Source::Ingress,
        idempotency_key: None,
        retention_ms: 500,
        response: true,
        at_ms: T0,
        deployment: None,
        retry: None,
        secret: 0,
        execute_at_ms: None,
        trace: None,
    }
}

pub fn invoke(request: InvocationRequest) -> Command {
    Command::Invoke(Box::new(request))
}

pub fn append(id: InvocationId, epoch: u32, index: u32, entry: Entry) -> Command {
    Command::JournalAppend {
        id,
        epoch: Epoch(epoch),
        index: EntryIndex(index),
        entry,
        ack: false,
        callee_kind: None,
        at_ms: T0,
        callee_retry: None,
    }
}

pub fn ended(id: InvocationId, epoch: u32, ending: Ending) -> Command {
    Command::AttemptEnded {
        id,
        epoch: Epoch(epoch),
        ending,
        at_ms: T0 + 10,
    }
}

pub fn retryable(code: u16) -> Ending {
    Ending::Failed {
        code,
        message: "boom".to_owned(),
        retryable: true,
        retry_after_ms: None,
    }
}

pub fn suspended(waiting: &[u32]) -> Ending {
    Ending::Suspended {
        waiting: waiting.iter().map(|i| EntryIndex(*i)).collect(),
    }
}

pub fn set_state(key: &str, value: &str) -> Entry {
    Entry::SetState(SetState {
        key: key.to_owned(),
        value: bytes(value),
    })
}

pub fn get_state(key: &str) -> Entry {
    Entry::GetState(GetState {
        key: key.to_owned(),
        result: None,
    })
}

pub fn output(value: &str) -> Entry {
    Entry::Output(Output {
        result: Outcome::Value(bytes(value)),
    })
}

pub fn run(name: &str) -> Entry {
    Entry::Run(Run {
        name: name.to_owned(),
        result: None,
    })
}

pub fn sleep(ms: u64) -> Entry {
    Entry::Sleep(Sleep {
        duration_ms: ms,
        result: None,
    })
}

pub fn call(target: &Target, idempotency_key: Option<&str>) -> Entry {
    Entry::Call(Call {
        handler: target.handler.clone(),
        headers: Vec::new(),
        idempotency_key: idempotency_key.map(str::to_owned),
        key: target.key.clone(),
        parameter: bytes("p"),
        result: None,
        service: target.service.clone(),
    })
}

pub fn send(target: &Target, delay_ms: Option<u64>) -> Entry {
    Entry::Send(Send {
        delay_ms,
        handler: target.handler.clone(),
        headers: Vec::new(),
        idempotency_key: None,
        key: target.key.clone(),
        parameter: bytes("p"),
        service: target.service.clone(),
    })
}

pub fn awakeable() -> Entry {
    Entry::Awakeable(Awakeable { result: None })
}

pub fn complete_awakeable(id: &str, result: Outcome) -> Entry {
    Entry::CompleteAwakeable(CompleteAwakeable {
        id: id.to_owned(),
        result,
    })
}

pub fn get_promise(name: &str) -> Entry {
    Entry::GetPromise(GetPromise {
        name: name.to_owned(),
        result: None,
    })
}

pub fn peek_promise(name: &str) -> Entry {
    Entry::PeekPromise(PeekPromise {
        name: name.to_owned(),
        result: None,
    })
}

pub fn complete_promise(name: &str, completion: Outcome) -> Entry {
    Entry::CompletePromise(CompletePromise {
        completion,
        name: name.to_owned(),
        result: None,
    })
}

/// A `JournalAppend` whose callee is of `kind`, as the invoker resolves it from the schema.
pub fn append_to(
    id: InvocationId,
    epoch: u32,
    index: u32,
    entry: Entry,
    kind: HandlerKind,
) -> Command {
    let Command::JournalAppend {
        id,
        epoch,
        index,
        entry,
        ack,
        at_ms,
        callee_retry,
        ..
    } = append(id, epoch, index, entry)
    else {
        unreachable!()
    };
    Command::JournalAppend {
        id,
        epoch,
        index,
        entry,
        ack,
        callee_kind: Some(kind),
        at_ms,
        callee_retry,
    }
}

/// The timer wheel proposing `timer` at `at_ms`.
pub fn fire(timer: TimerKey, at_ms: u64) -> Command {
    Command::FireTimer { timer, at_ms }
}

pub fn sleep_timer(id: InvocationId, index: u32, fire_at_ms: u64) -> TimerKey {
    TimerKey::new(
        fire_at_ms,
        Timer::Sleep {
            id,
            index: EntryIndex(index),
        },
    )
}

pub fn start_timer(id: InvocationId, fire_at_ms: u64) -> TimerKey {
    TimerKey::new(fire_at_ms, Timer::Start { id })
}

pub fn purge_key(id: InvocationId, fire_at_ms: u64) -> TimerKey {
    TimerKey::new(fire_at_ms, Timer::Purge { id })
}

/// Completes running attempt `epoch` of `id` at `T0 + 10` with output `value`.
pub fn finish(store: &mut MemoryStore, id: InvocationId, epoch: u32, value: &str) -> Vec<Effect> {
    let index = record(store, id).journal_len;
    step(
        store,
        &[
            append(id, epoch, index, output(value)),
            ended(id, epoch, Ending::Completed),
        ],
    )
}

/// The messages in the outbox, in sequence order.
pub fn outbox(store: &MemoryStore) -> Vec<OutboxMessage> {
    store.outbox.values().cloned().collect()
}

pub fn failure(code: u16, message: &str) -> Outcome {
    Outcome::Failure(Failure {
        code,
        message: message.to_owned(),
    })
}

/// The registration of the timer that purges `id` at `expires_at_ms`.
pub fn purge_timer(id: InvocationId, expires_at_ms: u64) -> Effect {
    Effect::RegisterTimer {
        timer: purge_key(id, expires_at_ms),
    }
}

/// The timer that retries `id` after failed attempt `epoch`, due at `fire_at_ms`.
pub fn retry_timer(id: InvocationId, epoch: u32, fire_at_ms: u64) -> Effect {
    Effect::RegisterTimer {
        timer: TimerKey::new(
            fire_at_ms,
            Timer::Retry {
                id,
                epoch: Epoch(epoch),
            },
        ),
    }
}

/// The backoff a failed attempt registered: its retry timer's epoch and delay after `at_ms`.
pub fn retry_delay(effects: &[Effect], at_ms: u64) -> Option<(Epoch, u64)> {
    effects.iter().find_map(|effect| match effect {
        Effect::RegisterTimer {
            timer:
                TimerKey {
                    fire_at_ms,
                    timer: Timer::Retry { epoch, .. },
                },
        } => Some((*epoch, fire_at_ms - at_ms)),
        _ => None,
    })
}

/// `BackingOff` after attempt `epoch`, the `attempts`-th failure, due at `retry_at_ms`.
pub fn backing_off(epoch: u32, attempts: u32, retry_at_ms: u64) -> Status {
    Status::BackingOff {
        epoch: Epoch(epoch),
        attempts,
        retry_at_ms: Some(retry_at_ms),
    }
}

pub fn run_attempt(id: InvocationId, target: &Target, epoch: u32) -> Effect {
    Effect::RunAttempt {
        id,
        epoch: Epoch(epoch),
        target: target.clone(),
        deployment: None,
    }
}

/// Applies commands in order; returns the effects of the last one, without observations (they
/// are tested on their own, in `observations`).
pub fn step(store: &mut MemoryStore, commands: &[Command]) -> Vec<Effect> {
    step_quietly(store, &Config::default(), commands)
}

/// Like [`step`] with `config`.
pub fn step_quietly(store: &mut MemoryStore, config: &Config, commands: &[Command]) -> Vec<Effect> {
    let mut last = step_with(store, config, commands);
    last.retain(|effect| !matches!(effect, Effect::Observe(_)));
    last
}

/// Applies commands in order with `config`; returns every effect of the last one.
pub fn step_with(store: &mut MemoryStore, config: &Config, commands: &[Command]) -> Vec<Effect> {
    let mut last = Vec::new();
    for command in commands {
        let Ok(effects) = apply(store, config, command);
        last = effects;
    }
    last
}

pub fn status(store: &MemoryStore, id: InvocationId) -> Option<Status> {
    let Ok(record) = store.get_invocation(id);
    record.map(|r| r.status)
}

pub fn record(store: &MemoryStore, id: InvocationId) -> Invocation {
    let Ok(Some(record)) = store.get_invocation(id) else {
        panic!("no invocation {id}");
    };
    record
}

pub fn completion_of(store: &MemoryStore, id: InvocationId, index: u32) -> Option<Outcome> {
    let Ok(item) = store.get_journal(id, EntryIndex(index));
    item.and_then(|item| item.outcome().cloned())
}

pub fn state_of(store: &MemoryStore, key: &str, name: &str) -> Option<Vec<u8>> {
    let Ok(value) = store.get_state(&object(key), name);
    value
}

/// An exclusive Counter invocation for `key`, started and running attempt 1.
pub fn running(store: &mut MemoryStore, key: &str, nonce: u128) -> InvocationId {
    let request = request(counter(key), HandlerKind::Exclusive, nonce);
    let id = request.id;
    step(store, &[invoke(request)]);
    id
}

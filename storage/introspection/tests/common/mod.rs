//! A small cluster of real partition stores for the introspection tests: commands are applied
//! through the redb state machine, and outbox messages are shuffled to their partitions like the
//! kernel does.

#![allow(dead_code)]

use datafusion::arrow::array::Array;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use holdfast_fsm::Effect;
use holdfast_introspection::{PartitionStores, QueryEngine, QueryLimits, QueryResult};
use holdfast_protocol::manifest::{
    Handler, HandlerKind as ManifestKind, Manifest, ProtocolMode, Service, ServiceType,
};
use holdfast_protocol::message::{
    Call, CompletePromise, Entry, GetPromise, Output, Run, SetState, Sleep,
};
use holdfast_protocol::{EntryIndex, Outcome, Payload};
use holdfast_raft_store::{Batch, StateMachine, TypeConfig};
use holdfast_schema::{Registry, RegistryCommand, Timestamp};
use holdfast_types::{
    Command, DeploymentId, Ending, Epoch, HandlerKind, InvocationId, InvocationRequest, ObjectKey,
    PartitionId, Source, Target, routing,
};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry as RaftEntry, EntryPayload, LogId};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::watch;

/// Partitions of the test cluster.
pub const PARTITIONS: u32 = 4;
/// The clock of every command.
pub const NOW: u64 = 1_700_000_000_000;

/// The partition stores, as the kernel would hand them to the engine.
pub struct Stores {
    pub stores: Vec<(PartitionId, StateMachine)>,
}

impl PartitionStores for Stores {
    fn stores(&self) -> Vec<(PartitionId, StateMachine)> {
        self.stores.clone()
    }

    fn partition_count(&self) -> u32 {
        PARTITIONS
    }
}

/// Real partition stores in a temporary directory.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub stores: Arc<Stores>,
    next_index: HashMap<PartitionId, u64>,
}

/// The partition a command is for.
fn partition_of(command: &Command) -> PartitionId {
    let id = match command {
        Command::SetState { object, .. }
        | Command::ClearState { object, .. }
        | Command::ClearAllState { object }
        | Command::EditState { object, .. } => {
            return routing::partition_of(object, PARTITIONS);
        }
        Command::Invoke(request) | Command::FireSchedule { request, .. } => request.id,
        Command::JournalAppend { id, .. }
        | Command::AttemptEnded { id, .. }
        | Command::Completion { id, .. }
        | Command::Retry { id, .. }
        | Command::Restart { id, .. }
        | Command::Cancel { id, .. }
        | Command::Kill { id, .. }
        | Command::Purge { id }
        | Command::Resume { id }
        | Command::RunCompleted { id, .. }
        | Command::Pause { id }
        | Command::ResumeOn { id, .. }
        | Command::CompleteAwakeable { id, .. } => *id,
        Command::ShuffleIn { message, .. } => {
            return routing::partition_for_key(message.partition_key(), PARTITIONS);
        }
        Command::DrainLimit { name, .. } => {
            let key = routing::limit_partition_key(name);
            return routing::partition_for_key(key, PARTITIONS);
        }
        Command::OutboxDelivered { .. } | Command::FireTimer { .. } | Command::SetLimits { .. } => {
            panic!("the tests address these to a partition themselves")
        }
    };
    id.partition(PARTITIONS)
}

impl Cluster {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = (0..PARTITIONS)
            .map(|n| {
                let path = dir.path().join(format!("partition-{n}"));
                std::fs::create_dir_all(&path).expect("mkdir");
                let store = StateMachine::open(&path.join("state.redb")).expect("open");
                (PartitionId(n), store)
            })
            .collect();
        Self {
            _dir: dir,
            stores: Arc::new(Stores { stores }),
            next_index: HashMap::new(),
        }
    }

    fn store(&self, partition: PartitionId) -> StateMachine {
        self.stores
            .stores
            .iter()
            .find(|(id, _)| *id == partition)
            .map(|(_, store)| store.clone())
            .expect("partition")
    }

    /// Applies `commands` to `partition` as one raft entry; returns their effects.
    pub async fn apply_batch(
        &mut self,
        partition: PartitionId,
        commands: Vec<Command>,
    ) -> Vec<Effect> {
        let index = self.next_index.entry(partition).or_insert(0);
        *index += 1;
        let entry = RaftEntry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), *index),
            payload: EntryPayload::Normal(Batch::new(commands)),
        };
        let mut store = self.store(partition);
        let applied = store.apply(vec![entry]).await.expect("apply");
        applied
            .into_iter()
            .flat_map(|a| a.effects.to_vec())
            .collect()
    }

    /// Applies `command` on its partition, then delivers every outbox message it (transitively)
    /// produced to its partition.
    pub async fn run(&mut self, command: Command) {
        let mut queue = VecDeque::from([(partition_of(&command), command)]);
        while let Some((partition, command)) = queue.pop_front() {
            for effect in self.apply_batch(partition, vec![command]).await {
                if let Effect::ShuffleOut { seq, message, .. } = effect {
                    let shuffled = Command::ShuffleIn {
                        from: partition,
                        seq,
                        message,
                        at_ms: NOW,
                    };
                    queue.push_back((partition_of(&shuffled), shuffled));
                }
            }
        }
    }

    pub fn engine(&self, limits: QueryLimits) -> QueryEngine {
        let (_tx, rx) = watch::channel(Arc::new(registry()));
        QueryEngine::new(self.stores.clone(), rx, limits)
    }
}

fn handler(name: &str, kind: ManifestKind) -> Handler {
    Handler {
        name: name.into(),
        kind,
        input: "json".into(),
        output: "json".into(),
        retry_policy: None,
        inactivity_timeout_ms: None,
        abort_timeout_ms: None,
        schedules: Vec::new(),
    }
}

fn service(name: &str, ty: ServiceType, handlers: Vec<Handler>) -> Service {
    Service {
        name: name.into(),
        ty,
        handlers,
        retry_policy: None,
        inactivity_timeout_ms: None,
        abort_timeout_ms: None,
    }
}

/// The SDK version the fixture's deployment declares.
pub const SDK_VERSION: &str = "holdfast-sdk-typescript/0.1.0";

/// The id of the fixture's deployment (registered with seed 7).
pub fn deployment_id() -> DeploymentId {
    DeploymentId::from_seed(7)
}

/// One deployment serving Counter (object), Greeter (service) and Signup (workflow), declaring
/// [`SDK_VERSION`].
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    let manifest = Manifest {
        min_protocol_version: 1,
        max_protocol_version: 1,
        protocol_modes: vec![ProtocolMode::Stream],
        services: vec![
            service(
                "Counter",
                ServiceType::Object,
                vec![
                    handler("add", ManifestKind::Exclusive),
                    handler("get", ManifestKind::Shared),
                ],
            ),
            service(
                "Greeter",
                ServiceType::Service,
                vec![handler("greet", ManifestKind::Shared)],
            ),
            service(
                "Signup",
                ServiceType::Workflow,
                vec![
                    handler("run", ManifestKind::Workflow),
                    handler("confirm", ManifestKind::Shared),
                ],
            ),
        ],
        sdk_version: Some(SDK_VERSION.into()),
    };
    registry
        .apply(&RegistryCommand::RegisterDeployment {
            seed: 7,
            uri: "http://localhost:9080/".into(),
            manifest,
            force: false,
            at_ms: Timestamp(NOW),
        })
        .expect("register");
    registry
}

pub fn request(target: Target, id: InvocationId, kind: HandlerKind) -> InvocationRequest {
    InvocationRequest {
        id,
        target,
        kind,
        argument: Payload::from(&b"{}"[..]),
        headers: Vec::new(),
        source: Source::Ingress,
        idempotency_key: None,
        retention_ms: 60_000,
        response: true,
        at_ms: NOW,
        deployment: None,
        retry: None,
        secret: 0,
        execute_at_ms: None,
        trace: None,
    }
}

pub fn append(id: InvocationId, epoch: u32, index: u32, entry: Entry) -> Command {
    Command::JournalAppend {
        id,
        epoch: Epoch(epoch),
        index: EntryIndex(index),
        entry,
        ack: false,
        callee_kind: None,
        at_ms: NOW,
        callee_retry: None,
    }
}

fn ended(id: InvocationId, ending: Ending) -> Command {
    Command::AttemptEnded {
        id,
        epoch: Epoch(1),
        ending,
        at_ms: NOW + 100,
    }
}

fn value(bytes: &[u8]) -> Outcome {
    Outcome::Value(Payload::from(bytes))
}

/// The invocations of the scenario, by role.
pub struct Ids {
    /// Counter/a/add, pinned to the fixture's deployment: running, holds the lock of Counter/a.
    pub running: InvocationId,
    /// Counter/a/add, pinned to the fixture's deployment: waits in Counter/a's inbox.
    pub inboxed: InvocationId,
    /// Greeter/greet with idempotency key `idem-1`: ran `step1`, called Counter/b/add, slept,
    /// then suspended.
    pub suspended: InvocationId,
    /// Counter/b/add, called by `suspended`: running.
    pub callee: InvocationId,
    /// Greeter/greet: completed with `"hi"`.
    pub succeeded: InvocationId,
    /// Greeter/greet: completed with `[418] failed: x`.
    pub failed: InvocationId,
    /// Greeter/greet: scheduled a minute from now.
    pub scheduled: InvocationId,
    /// Signup/w1/run: completed promise `confirmed`, waits for promise `other`.
    pub workflow: InvocationId,
}

fn greeter() -> Target {
    Target::new("Greeter", "greet", None)
}

/// Builds the scenario every table test reads.
pub async fn scenario(cluster: &mut Cluster) -> Ids {
    let counter = |key: &str| Target::new("Counter", "add", Some(key.to_owned()));
    let running = InvocationId::new(&counter("a"), 1);
    let inboxed = InvocationId::new(&counter("a"), 2);
    // Both pinned to the fixture's deployment: only `running` has had an attempt.
    for id in [running, inboxed] {
        let mut pinned = request(counter("a"), id, HandlerKind::Exclusive);
        pinned.deployment = Some(deployment_id());
        cluster.run(Command::Invoke(Box::new(pinned))).await;
    }
    cluster
        .run(append(
            running,
            1,
            1,
            Entry::SetState(SetState {
                key: "count".into(),
                value: Payload::from(&b"7"[..]),
            }),
        ))
        .await;

    let suspended = InvocationId::idempotent(&greeter(), "idem-1");
    let mut idempotent = request(greeter(), suspended, HandlerKind::Shared);
    idempotent.idempotency_key = Some("idem-1".into());
    cluster.run(Command::Invoke(Box::new(idempotent))).await;
    cluster
        .run(append(
            suspended,
            1,
            1,
            Entry::Run(Run {
                name: "step1".into(),
                result: None,
            }),
        ))
        .await;
    cluster
        .run(Command::RunCompleted {
            id: suspended,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: value(b"1"),
            ack: false,
        })
        .await;
    cluster
        .run(append(
            suspended,
            1,
            2,
            Entry::Call(Call {
                handler: "add".into(),
                headers: Vec::new(),
                idempotency_key: None,
                key: Some("b".into()),
                parameter: Payload::from(&b"1"[..]),
                result: None,
                service: "Counter".into(),
            }),
        ))
        .await;
    cluster
        .run(append(
            suspended,
            1,
            3,
            Entry::Sleep(Sleep {
                duration_ms: 5_000,
                result: None,
            }),
        ))
        .await;
    cluster
        .run(ended(
            suspended,
            Ending::Suspended {
                waiting: vec![EntryIndex(2), EntryIndex(3)],
            },
        ))
        .await;
    let callee = InvocationId::derived(&counter("b"), suspended, EntryIndex(2));

    let succeeded = InvocationId::new(&greeter(), 11);
    cluster
        .run(Command::Invoke(Box::new(request(
            greeter(),
            succeeded,
            HandlerKind::Shared,
        ))))
        .await;
    cluster
        .run(append(
            succeeded,
            1,
            1,
            Entry::Output(Output {
                result: value(b"\"hi\""),
            }),
        ))
        .await;
    cluster.run(ended(succeeded, Ending::Completed)).await;

    let failed = InvocationId::new(&greeter(), 12);
    cluster
        .run(Command::Invoke(Box::new(request(
            greeter(),
            failed,
            HandlerKind::Shared,
        ))))
        .await;
    cluster
        .run(ended(
            failed,
            Ending::Failed {
                code: 418,
                message: "failed: x".into(),
                retryable: false,
                retry_after_ms: None,
            },
        ))
        .await;

    let scheduled = InvocationId::new(&greeter(), 13);
    let mut later = request(greeter(), scheduled, HandlerKind::Shared);
    later.execute_at_ms = Some(NOW + 60_000);
    cluster.run(Command::Invoke(Box::new(later))).await;

    let run = Target::new("Signup", "run", Some("w1".into()));
    let workflow = InvocationId::workflow(&run);
    cluster
        .run(Command::Invoke(Box::new(request(
            run,
            workflow,
            HandlerKind::Workflow,
        ))))
        .await;
    cluster
        .run(append(
            workflow,
            1,
            1,
            Entry::CompletePromise(CompletePromise {
                completion: value(b"\"yes\""),
                name: "confirmed".into(),
                result: None,
            }),
        ))
        .await;
    cluster
        .run(append(
            workflow,
            1,
            2,
            Entry::GetPromise(GetPromise {
                name: "other".into(),
                result: None,
            }),
        ))
        .await;

    for (key, name, bytes) in [("b", "count", &b"3"[..]), ("a", "raw", &[0xff, 0x00][..])] {
        cluster
            .run(Command::SetState {
                object: ObjectKey::new("Counter", key),
                name: name.into(),
                value: bytes.to_vec(),
            })
            .await;
    }

    Ids {
        running,
        inboxed,
        suspended,
        callee,
        succeeded,
        failed,
        scheduled,
        workflow,
    }
}

/// Every value of the result as text (NULL as `None`, bytes in hex), row by row.
pub fn rows(result: &QueryResult) -> Vec<Vec<Option<String>>> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for batch in &result.batches {
        let formatters: Vec<ArrayFormatter<'_>> = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(column, formatter)| {
                        (!column.is_null(row)).then(|| formatter.value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    out
}

/// The column names of the result.
pub fn names(result: &QueryResult) -> Vec<String> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// `Some(text)`, for comparing rows.
pub fn s(text: &str) -> Option<String> {
    Some(text.to_owned())
}

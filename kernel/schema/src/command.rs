//! [`RegistryCommand`]: the only things ever written to the metadata log.
//!
//! The enum is append-only: never reorder or rename a variant or a field; new variants get a
//! golden-bytes test below. Records travel in [`holdfast_types::codec`]'s versioned MessagePack.

use crate::{DeploymentId, Schedule, ServicePatch, Timestamp};
use holdfast_protocol::manifest::Manifest;
use serde::{Deserialize, Serialize};

/// A change to the registry, as proposed by the admin API and applied by every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryCommand {
    /// Register the endpoint at `uri`, whose discovery returned `manifest`.
    RegisterDeployment {
        /// Chosen by the proposer; the new deployment's id is derived from it.
        seed: u128,
        /// Where the endpoint listens, normalised by the proposer (compared byte for byte).
        uri: String,
        /// What the endpoint's discovery returned.
        manifest: Manifest,
        /// Register even if it conflicts with live services, or re-register an unchanged endpoint.
        force: bool,
        /// The proposer's clock when it proposed: the deployment's creation time.
        at_ms: Timestamp,
    },
    /// Remove a deployment; invocations pinned to it can no longer run.
    RemoveDeployment {
        /// The deployment.
        id: DeploymentId,
        /// Remove it even if it serves the newest revision of some service.
        force: bool,
    },
    /// Change operator settings of a live service; they stick to later revisions too.
    ModifyService {
        /// The service name.
        service: String,
        /// The settings to change.
        patch: ServicePatch,
    },
    /// Add node `id` at `address` to the cluster; its replicas are placed on it by the groups'
    /// leaders (learner, then voter).
    AddNode {
        /// The new node's id; never one the cluster had before.
        id: u64,
        /// Its node-to-node address.
        address: String,
        /// The configured nodes (`[[cluster.nodes]]`): the members until the first change.
        initial: Vec<(u64, String)>,
    },
    /// Remove node `id` from the cluster for good; its replicas move to the other members.
    RemoveNode {
        /// The node.
        id: u64,
        /// The configured nodes (`[[cluster.nodes]]`): the members until the first change.
        initial: Vec<(u64, String)>,
        /// Replicas per partition: at least that many members must remain.
        replication_factor: u32,
    },
    /// Create schedule `schedule.name` (`create`: refused if it exists) or replace it (refused
    /// if it does not).
    PutSchedule {
        /// The whole definition, as the proposer resolved it.
        schedule: Schedule,
        /// Whether this creates the schedule rather than changing it.
        create: bool,
    },
    /// Remove a schedule; it fires no more ticks.
    RemoveSchedule {
        /// Its name.
        name: String,
    },
    /// Create limit `limit.name` (`create`: refused if it exists) or replace it (created if it
    /// does not exist: the configuration declares limits this way).
    PutLimit {
        /// The whole definition.
        limit: holdfast_types::Limit,
        /// Whether this must create the limit.
        create: bool,
    },
    /// Remove a limit; invocations waiting for it start.
    RemoveLimit {
        /// Its name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Millis;
    use holdfast_protocol::manifest::{Handler, HandlerKind, ProtocolMode, Service, ServiceType};
    use holdfast_types::codec;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn register() -> RegistryCommand {
        RegistryCommand::RegisterDeployment {
            seed: 1,
            uri: "u".into(),
            manifest: Manifest {
                min_protocol_version: 1,
                max_protocol_version: 1,
                sdk_version: None,
                protocol_modes: vec![ProtocolMode::Stream],
                services: vec![Service {
                    name: "S".into(),
                    ty: ServiceType::Object,
                    handlers: vec![Handler {
                        name: "h".into(),
                        kind: HandlerKind::Exclusive,
                        input: "i".into(),
                        output: "o".into(),
                        retry_policy: None,
                        inactivity_timeout_ms: None,
                        abort_timeout_ms: None,
                        schedules: Vec::new(),
                    }],
                    retry_policy: None,
                    inactivity_timeout_ms: None,
                    abort_timeout_ms: None,
                }],
            },
            force: false,
            at_ms: Timestamp(2),
        }
    }

    fn remove() -> RegistryCommand {
        RegistryCommand::RemoveDeployment {
            id: DeploymentId::from_seed(1),
            force: true,
        }
    }

    fn modify() -> RegistryCommand {
        RegistryCommand::ModifyService {
            service: "S".into(),
            patch: ServicePatch {
                public: Some(false),
                abort_timeout: Some(Millis(3)),
                ..ServicePatch::default()
            },
        }
    }

    fn add_node() -> RegistryCommand {
        RegistryCommand::AddNode {
            id: 4,
            address: "a:1".into(),
            initial: vec![(1, "b:2".into())],
        }
    }

    fn remove_node() -> RegistryCommand {
        RegistryCommand::RemoveNode {
            id: 2,
            initial: vec![(1, "b:2".into())],
            replication_factor: 3,
        }
    }

    fn put_schedule() -> RegistryCommand {
        RegistryCommand::PutSchedule {
            schedule: Schedule {
                name: "n".into(),
                service: "S".into(),
                handler: "h".into(),
                key: Some("k".into()),
                input: Some(b"1".to_vec()),
                spec: crate::ScheduleSpec::Cron {
                    expression: "@daily".into(),
                    zone: "UTC".into(),
                },
                catch_up: holdfast_schedule::CatchUp::All { max: 3 },
                overlap: holdfast_types::Overlap::Allow,
                paused: false,
                since: Timestamp(4),
                created_at: Timestamp(4),
                updated_at: Timestamp(5),
                declared: false,
            },
            create: true,
        }
    }

    fn remove_schedule() -> RegistryCommand {
        RegistryCommand::RemoveSchedule { name: "n".into() }
    }

    fn put_limit() -> RegistryCommand {
        RegistryCommand::PutLimit {
            limit: holdfast_types::Limit {
                name: "l".into(),
                service: "S".into(),
                handler: Some("h".into()),
                key_prefix: Some("eu-".into()),
                max_concurrency: Some(5),
                rate: Some(holdfast_types::Rate {
                    count: 50,
                    period_ms: 1000,
                    burst: 2,
                }),
            },
            create: true,
        }
    }

    fn remove_limit() -> RegistryCommand {
        RegistryCommand::RemoveLimit { name: "l".into() }
    }

    fn all() -> [RegistryCommand; 9] {
        [
            register(),
            remove(),
            modify(),
            add_node(),
            remove_node(),
            put_schedule(),
            remove_schedule(),
            put_limit(),
            remove_limit(),
        ]
    }

    #[test]
    fn commands_round_trip() {
        for command in all() {
            let bytes = codec::encode(&command).expect("encode");
            assert_eq!(
                codec::decode::<RegistryCommand>(&bytes).expect("decode"),
                command
            );
        }
    }

    /// Golden bytes: if one of these changes, existing metadata logs can no longer be read.
    #[test]
    fn encodings_are_pinned() {
        let goldens = [
            GOLDEN_REGISTER,
            GOLDEN_REMOVE,
            GOLDEN_MODIFY,
            GOLDEN_ADD_NODE,
            GOLDEN_REMOVE_NODE,
            GOLDEN_PUT_SCHEDULE,
            GOLDEN_REMOVE_SCHEDULE,
            GOLDEN_PUT_LIMIT,
            GOLDEN_REMOVE_LIMIT,
        ];
        for (command, golden) in all().into_iter().zip(goldens) {
            let bytes = codec::encode(&command).expect("encode");
            assert_eq!(hex(&bytes), golden, "{command:?}");
        }
    }

    const GOLDEN_REGISTER: &str = "0181b252656769737465724465706c6f796d656e7485a473656564c41000000000000000000000000000000001a3757269a175a86d616e696665737484b46d696e5f70726f746f636f6c5f76657273696f6e01b46d61785f70726f746f636f6c5f76657273696f6e01ae70726f746f636f6c5f6d6f64657391a673747265616da873657276696365739183a46e616d65a153a474797065a66f626a656374a868616e646c6572739184a46e616d65a168a46b696e64a96578636c7573697665a5696e707574a169a66f7574707574a16fa5666f726365c2a561745f6d7302";
    const GOLDEN_PUT_LIMIT: &str = "0181a85075744c696d697482a56c696d697486a46e616d65a16ca773657276696365a153a768616e646c6572a168aa6b65795f707265666978a365752daf6d61785f636f6e63757272656e637905a47261746583a5636f756e7432a9706572696f645f6d73cd03e8a5627572737402a6637265617465c3";
    const GOLDEN_REMOVE_LIMIT: &str = "0181ab52656d6f76654c696d697481a46e616d65a16c";
    const GOLDEN_REMOVE: &str = "0181b052656d6f76654465706c6f796d656e7482a26964b964705f30303030303030303030303030303030303030303031a5666f726365c3";
    const GOLDEN_MODIFY: &str = "0181ad4d6f646966795365727669636582a773657276696365a153a5706174636886a67075626c6963c2b56964656d706f74656e63795f726574656e74696f6ec0b16a6f75726e616c5f726574656e74696f6ec0bd776f726b666c6f775f636f6d706c6574696f6e5f726574656e74696f6ec0b2696e61637469766974795f74696d656f7574c0ad61626f72745f74696d656f757403";
    const GOLDEN_ADD_NODE: &str =
        "0181a74164644e6f646583a2696404a761646472657373a3613a31a7696e697469616c919201a3623a32";
    const GOLDEN_REMOVE_NODE: &str = "0181aa52656d6f76654e6f646583a2696402a7696e697469616c919201a3623a32b27265706c69636174696f6e5f666163746f7203";
    const GOLDEN_PUT_SCHEDULE: &str = "0181ab5075745363686564756c6582a87363686564756c658ca46e616d65a16ea773657276696365a153a768616e646c6572a168a36b6579a16ba5696e707574c40131a47370656381a443726f6e82aa65787072657373696f6ea6406461696c79a47a6f6e65a3555443a863617463685f757081a3616c6c81a36d617803a76f7665726c6170a5616c6c6f77a6706175736564c2a573696e636504aa637265617465645f617404aa757064617465645f617405a6637265617465c3";
    const GOLDEN_REMOVE_SCHEDULE: &str = "0181ae52656d6f76655363686564756c6581a46e616d65a16e";
}

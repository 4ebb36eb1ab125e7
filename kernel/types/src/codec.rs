//! The log encoding: one format-version byte followed by MessagePack with named fields, so new
//! optional fields can be added without a new version.

use serde::{Serialize, de::DeserializeOwned};

/// The format version written in front of every encoded log record.
pub const FORMAT_V1: u8 = 1;

/// Why a log record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record is empty, so it has no version byte.
    #[error("empty log record")]
    Empty,
    /// The record was written by a newer release that this one cannot read.
    #[error("unsupported log format version {0} (this release reads version {FORMAT_V1})")]
    UnsupportedVersion(u8),
    /// The MessagePack body does not match the expected type.
    #[error("malformed log record: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The value could not be serialised (e.g. a map with non-string keys).
    #[error("cannot encode log record: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes `value` behind the current format version byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_V1);
    rmp_serde::encode::write_named(&mut out, value)?;
    Ok(out)
}

/// Decodes a record written by [`encode`], refusing unknown format versions.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match bytes.split_first() {
        None => Err(Error::Empty),
        Some((&FORMAT_V1, body)) => Ok(rmp_serde::from_slice(body)?),
        Some((&version, _)) => Err(Error::UnsupportedVersion(version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, ObjectKey};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn set_state() -> Command {
        Command::SetState {
            object: ObjectKey::new("C", "k"),
            name: "n".into(),
            value: vec![1, 2],
        }
    }

    #[test]
    fn commands_round_trip() {
        let commands = vec![
            set_state(),
            Command::ClearState {
                object: ObjectKey::new("C", "k"),
                name: "n".into(),
            },
            Command::ClearAllState {
                object: ObjectKey::new("C", "k"),
            },
        ];
        for command in commands {
            let bytes = encode(&command).expect("encode");
            assert_eq!(decode::<Command>(&bytes).expect("decode"), command);
        }
    }

    /// `EditState` without an expected version encodes as before the field existed, so records
    /// already in logs decode (with no version); with one, it round-trips.
    #[test]
    fn edit_state_version_is_optional() {
        use crate::StateEntry;
        let edit = |expected_version: Option<&str>| Command::EditState {
            object: ObjectKey::new("C", "k"),
            entries: vec![StateEntry {
                name: "n".into(),
                value: vec![1, 2],
            }],
            expected_version: expected_version.map(str::to_owned),
        };
        let old = unhex(GOLDEN_EDIT_STATE);
        assert_eq!(decode::<Command>(&old).expect("decode"), edit(None));
        assert_eq!(
            hex(&encode(&edit(None)).expect("encode")),
            GOLDEN_EDIT_STATE
        );
        let versioned = edit(Some("S6MyUcVGhqv_Nm54F5guL_XKfJMeFCOXIi7QEc5GZZA"));
        let bytes = encode(&versioned).expect("encode");
        assert_eq!(decode::<Command>(&bytes).expect("decode"), versioned);
    }

    /// Golden bytes: if this changes, existing logs can no longer be read.
    #[test]
    fn set_state_encoding_is_pinned() {
        let bytes = encode(&set_state()).expect("encode");
        assert_eq!(hex(&bytes), GOLDEN_SET_STATE);
    }

    #[test]
    fn decode_refuses_unknown_version_and_garbage() {
        assert!(matches!(decode::<Command>(&[]), Err(Error::Empty)));
        assert!(matches!(
            decode::<Command>(&[9, 0]),
            Err(Error::UnsupportedVersion(9))
        ));
        assert!(matches!(
            decode::<Command>(&[FORMAT_V1, 0xc1]),
            Err(Error::Decode(_))
        ));
    }

    /// One value of every variant added after the first release, in declaration order.
    fn invocation_commands() -> Vec<Command> {
        use crate::{
            Ending, EntryIndex, Epoch, HandlerKind, InvocationId, InvocationRequest, OutboxMessage,
            PartitionId, Source, Target,
        };
        use holdfast_protocol::message::{Entry, SetState};
        use holdfast_protocol::{Outcome, Payload};
        let target = Target::new("C", "h", Some("k".to_owned()));
        let id = InvocationId {
            partition_key: 1,
            nonce: 2,
        };
        let request = InvocationRequest {
            id,
            target,
            kind: HandlerKind::Exclusive,
            argument: Payload::from(&b"a"[..]),
            headers: vec![("x".to_owned(), "y".to_owned())],
            source: Source::Invocation {
                id,
                entry: EntryIndex(3),
            },
            idempotency_key: Some("i".to_owned()),
            retention_ms: 9,
            response: true,
            at_ms: 7,
            deployment: None,
            retry: None,
            secret: 0,
            execute_at_ms: None,
            trace: None,
        };
        let scheduled = InvocationRequest {
            source: Source::Schedule {
                name: "n".into(),
                tick_ms: 13,
            },
            response: false,
            ..request.clone()
        };
        let timer = crate::TimerKey::new(
            11,
            crate::Timer::Sleep {
                id,
                index: EntryIndex(2),
            },
        );
        vec![
            Command::Invoke(Box::new(request.clone())),
            Command::JournalAppend {
                id,
                epoch: Epoch(1),
                index: EntryIndex(1),
                entry: Entry::SetState(SetState {
                    key: "n".to_owned(),
                    value: Payload::from(&b"v"[..]),
                }),
                ack: true,
                callee_kind: Some(HandlerKind::Shared),
                at_ms: 7,
                callee_retry: None,
            },
            Command::AttemptEnded {
                id,
                epoch: Epoch(1),
                ending: Ending::Failed {
                    code: 500,
                    message: "m".to_owned(),
                    retryable: true,
                    retry_after_ms: Some(5),
                },
                at_ms: 7,
            },
            Command::Completion {
                id,
                index: EntryIndex(2),
                outcome: Outcome::Value(Payload::from(&b"r"[..])),
            },
            Command::Retry {
                id,
                epoch: Epoch(2),
            },
            Command::ShuffleIn {
                from: PartitionId(4),
                seq: 6,
                message: OutboxMessage::Invoke(Box::new(request)),
                at_ms: 7,
            },
            Command::OutboxDelivered { up_to: 6 },
            Command::Cancel { id, at_ms: 7 },
            Command::Kill { id, at_ms: 7 },
            Command::Purge { id },
            Command::Resume { id },
            Command::RunCompleted {
                id,
                epoch: Epoch(1),
                index: EntryIndex(2),
                outcome: Outcome::Void,
                ack: true,
            },
            Command::Pause { id },
            Command::ResumeOn {
                id,
                deployment: Some(crate::DeploymentId::from_seed(1)),
            },
            Command::ResumeOn {
                id,
                deployment: None,
            },
            Command::FireTimer { timer, at_ms: 12 },
            Command::CompleteAwakeable {
                id,
                index: EntryIndex(2),
                token: [5; 16],
                outcome: Outcome::Value(Payload::from(&b"r"[..])),
            },
            Command::ShuffleIn {
                from: PartitionId(4),
                seq: 7,
                message: OutboxMessage::CompleteAwakeable {
                    id,
                    index: EntryIndex(2),
                    token: [5; 16],
                    outcome: Outcome::Void,
                },
                at_ms: 7,
            },
            Command::Restart {
                id,
                epoch: Epoch(3),
            },
            Command::FireSchedule {
                name: "n".into(),
                tick_ms: 13,
                skipped: 2,
                overlap: crate::Overlap::Queue,
                request: Box::new(scheduled),
            },
            Command::SetLimits {
                limits: vec![crate::Limit {
                    name: "l".into(),
                    service: "S".into(),
                    handler: Some("h".into()),
                    key_prefix: Some("eu-".into()),
                    max_concurrency: Some(5),
                    rate: Some(crate::Rate {
                        count: 50,
                        period_ms: 1000,
                        burst: 2,
                    }),
                }],
                at_ms: 7,
            },
            Command::DrainLimit {
                name: "l".into(),
                at_ms: 8,
            },
            Command::ShuffleIn {
                from: PartitionId(1),
                seq: 2,
                message: OutboxMessage::LimitAcquire {
                    limit: "l".into(),
                    id,
                    epoch: Epoch(1),
                },
                at_ms: 9,
            },
            Command::ShuffleIn {
                from: PartitionId(1),
                seq: 3,
                message: OutboxMessage::LimitGrant {
                    limit: "l".into(),
                    id,
                    epoch: Epoch(2),
                },
                at_ms: 9,
            },
            Command::ShuffleIn {
                from: PartitionId(1),
                seq: 4,
                message: OutboxMessage::LimitRelease {
                    limit: "l".into(),
                    id,
                },
                at_ms: 9,
            },
        ]
    }

    /// A trace context rides along in the log with the request that created the invocation.
    #[test]
    fn trace_contexts_round_trip() {
        for command in invocation_commands() {
            let Command::Invoke(mut request) = command else {
                continue;
            };
            request.trace = Some(crate::TraceContext {
                trace_id: crate::TraceId(u128::MAX - 1),
                parent: crate::SpanId(0x0102_0304_0506_0708),
                sampled: true,
            });
            let command = Command::Invoke(request);
            let bytes = encode(&command).expect("encode");
            assert_eq!(decode::<Command>(&bytes).expect("decode"), command);
        }
    }

    /// A secret and a start time ride along as optional fields of an invocation request.
    #[test]
    fn secrets_and_start_times_round_trip() {
        for command in invocation_commands() {
            let Command::Invoke(mut request) = command else {
                continue;
            };
            request.secret = u128::MAX - 3;
            request.execute_at_ms = Some(99);
            let command = Command::Invoke(request);
            let bytes = encode(&command).expect("encode");
            assert_eq!(decode::<Command>(&bytes).expect("decode"), command);
        }
    }

    #[test]
    fn invocation_commands_round_trip() {
        for command in invocation_commands() {
            let bytes = encode(&command).expect("encode");
            assert_eq!(decode::<Command>(&bytes).expect("decode"), command);
        }
        let suspended = Command::AttemptEnded {
            id: crate::InvocationId {
                partition_key: 1,
                nonce: 2,
            },
            epoch: crate::Epoch(1),
            ending: crate::Ending::Suspended {
                waiting: vec![crate::EntryIndex(1)],
            },
            at_ms: 0,
        };
        let bytes = encode(&suspended).expect("encode");
        assert_eq!(decode::<Command>(&bytes).expect("decode"), suspended);
    }

    /// Retry policies ride along as optional fields: they round-trip, and commands written
    /// without them (the golden bytes) still decode, with no policy.
    #[test]
    fn retry_policies_round_trip_and_stay_optional() {
        let policy = crate::RetryPolicy {
            initial_interval_ms: 10,
            factor: 1.5,
            max_interval_ms: 900,
            max_attempts: 3,
            on_max_attempts: crate::OnMaxAttempts::Kill,
        };
        for command in invocation_commands() {
            let with_policy = match command {
                Command::Invoke(mut request) => {
                    request.retry = Some(policy);
                    Command::Invoke(request)
                }
                Command::JournalAppend {
                    id,
                    epoch,
                    index,
                    entry,
                    ack,
                    callee_kind,
                    at_ms,
                    ..
                } => Command::JournalAppend {
                    id,
                    epoch,
                    index,
                    entry,
                    ack,
                    callee_kind,
                    at_ms,
                    callee_retry: Some(policy),
                },
                _ => continue,
            };
            let bytes = encode(&with_policy).expect("encode");
            assert_eq!(decode::<Command>(&bytes).expect("decode"), with_policy);
        }
        for golden in &GOLDEN_INVOCATION_COMMANDS[..2] {
            let bytes = unhex(golden);
            match decode::<Command>(&bytes).expect("decode") {
                Command::Invoke(request) => assert_eq!(request.retry, None),
                Command::JournalAppend { callee_retry, .. } => assert_eq!(callee_retry, None),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Golden bytes of every invocation command: if one changes, existing logs can no longer be
    /// read.
    #[test]
    fn invocation_command_encodings_are_pinned() {
        let actual: Vec<String> = invocation_commands()
            .iter()
            .map(|command| hex(&encode(command).expect("encode")))
            .collect();
        assert_eq!(actual, GOLDEN_INVOCATION_COMMANDS);
    }

    const GOLDEN_INVOCATION_COMMANDS: [&str; 25] = [
        "0181a6496e766f6b658aa26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a674617267657483a773657276696365a143a768616e646c6572a168a36b6579a16ba46b696e64a94578636c7573697665a8617267756d656e74c40161a7686561646572739192a178a179a6736f7572636581aa496e766f636174696f6e82a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a5656e74727903af6964656d706f74656e63795f6b6579a169ac726574656e74696f6e5f6d7309a8726573706f6e7365c3a561745f6d7307",
        "0181ad4a6f75726e616c417070656e6487a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636801a5696e64657801a5656e74727992cd0104c41082a36b6579a16ea576616c7565c40176a361636bc3ab63616c6c65655f6b696e64a6536861726564a561745f6d7307",
        "0181ac417474656d7074456e64656484a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636801a6656e64696e6781a64661696c656484a4636f6465cd01f4a76d657373616765a16da9726574727961626c65c3ae72657472795f61667465725f6d7305a561745f6d7307",
        "0181aa436f6d706c6574696f6e83a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a5696e64657802a76f7574636f6d6581a576616c7565c40172",
        "0181a5526574727982a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636802",
        "0181a953687566666c65496e84a466726f6d04a373657106a76d65737361676581a6496e766f6b658aa26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a674617267657483a773657276696365a143a768616e646c6572a168a36b6579a16ba46b696e64a94578636c7573697665a8617267756d656e74c40161a7686561646572739192a178a179a6736f7572636581aa496e766f636174696f6e82a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a5656e74727903af6964656d706f74656e63795f6b6579a169ac726574656e74696f6e5f6d7309a8726573706f6e7365c3a561745f6d7307a561745f6d7307",
        "0181af4f7574626f7844656c69766572656481a575705f746f06",
        "0181a643616e63656c82a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a561745f6d7307",
        "0181a44b696c6c82a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a561745f6d7307",
        "0181a5507572676581a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032",
        "0181a6526573756d6581a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032",
        "0181ac52756e436f6d706c6574656485a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636801a5696e64657802a76f7574636f6d6580a361636bc3",
        "0181a5506175736581a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032",
        "0181a8526573756d654f6e82a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032aa6465706c6f796d656e74b964705f30303030303030303030303030303030303030303031",
        "0181a8526573756d654f6e82a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032aa6465706c6f796d656e74c0",
        "0181a94669726554696d657282a574696d657282aa666972655f61745f6d730ba574696d657281a5536c65657082a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a5696e64657802a561745f6d730c",
        "0181b1436f6d706c6574654177616b6561626c6584a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a5696e64657802a5746f6b656ec41005050505050505050505050505050505a76f7574636f6d6581a576616c7565c40172",
        "0181a953687566666c65496e84a466726f6d04a373657107a76d65737361676581b1436f6d706c6574654177616b6561626c6584a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a5696e64657802a5746f6b656ec41005050505050505050505050505050505a76f7574636f6d6580a561745f6d7307",
        "0181a75265737461727482a26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636803",
        "0181ac466972655363686564756c6585a46e616d65a16ea77469636b5f6d730da7736b697070656402a76f7665726c6170a57175657565a7726571756573748aa26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a674617267657483a773657276696365a143a768616e646c6572a168a36b6579a16ba46b696e64a94578636c7573697665a8617267756d656e74c40161a7686561646572739192a178a179a6736f7572636581a85363686564756c6582a46e616d65a16ea77469636b5f6d730daf6964656d706f74656e63795f6b6579a169ac726574656e74696f6e5f6d7309a8726573706f6e7365c2a561745f6d7307",
        "0181a95365744c696d69747382a66c696d6974739186a46e616d65a16ca773657276696365a153a768616e646c6572a168aa6b65795f707265666978a365752daf6d61785f636f6e63757272656e637905a47261746583a5636f756e7432a9706572696f645f6d73cd03e8a5627572737402a561745f6d7307",
        "0181aa447261696e4c696d697482a46e616d65a16ca561745f6d7308",
        "0181a953687566666c65496e84a466726f6d01a373657102a76d65737361676581ac4c696d69744163717569726583a56c696d6974a16ca26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636801a561745f6d7309",
        "0181a953687566666c65496e84a466726f6d01a373657103a76d65737361676581aa4c696d69744772616e7483a56c696d6974a16ca26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a565706f636802a561745f6d7309",
        "0181a953687566666c65496e84a466726f6d01a373657104a76d65737361676581ac4c696d697452656c6561736582a56c696d6974a16ca26964d934696e765f303030303030303030303030303030313030303030303030303030303030303030303030303030303030303030303032a561745f6d7309",
    ];

    /// `EditState` as written before it had `expected_version`.
    const GOLDEN_EDIT_STATE: &str = "0181a945646974537461746582a66f626a65637482a773657276696365a143a36b6579a16ba7656e74726965739182a46e616d65a16ea576616c7565c4020102";
    const GOLDEN_SET_STATE: &str = "0181a8536574537461746583a66f626a65637482a773657276696365a143a36b6579a16ba46e616d65a16ea576616c7565c4020102";
}

//! The stored form of what openraft hands the stores: votes, log ids, memberships, entries and
//! snapshot metadata, as types of our own. Their encoding is pinned by golden bytes below, so
//! upgrading openraft is a change of the conversions here, never a migration of data on disk.
//! The field names match what openraft 0.9 serialized, so stores written before these records
//! existed read as they are.

use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftTypeConfig,
    SnapshotMeta, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Who leads, in which term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    term: u64,
    node_id: u64,
}

/// A vote: for whom, and whether a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    leader_id: LeaderRecord,
    committed: bool,
}

/// The position of a log entry: the leader that proposed it and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogIdRecord {
    leader_id: LeaderRecord,
    index: u64,
}

/// A node as raft records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    addr: String,
}

/// A group's voter sets (two during a joint change) and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    configs: Vec<BTreeSet<u64>>,
    nodes: BTreeMap<u64, NodeRecord>,
}

/// A membership and the entry that stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMembershipRecord {
    log_id: Option<LogIdRecord>,
    membership: MembershipRecord,
}

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadRecord<D> {
    /// The no-op a new leader commits.
    Blank,
    /// Commands of the group's state machine.
    Normal(D),
    /// A membership change.
    Membership(MembershipRecord),
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord<D> {
    log_id: LogIdRecord,
    payload: PayloadRecord<D>,
}

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetaRecord {
    last_log_id: Option<LogIdRecord>,
    last_membership: StoredMembershipRecord,
    snapshot_id: String,
}

impl From<&Vote<u64>> for VoteRecord {
    fn from(vote: &Vote<u64>) -> Self {
        Self {
            leader_id: LeaderRecord {
                term: vote.leader_id.term,
                node_id: vote.leader_id.node_id,
            },
            committed: vote.committed,
        }
    }
}

impl From<VoteRecord> for Vote<u64> {
    fn from(record: VoteRecord) -> Self {
        let (term, node) = (record.leader_id.term, record.leader_id.node_id);
        if record.committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        }
    }
}

impl From<&LogId<u64>> for LogIdRecord {
    fn from(id: &LogId<u64>) -> Self {
        Self {
            leader_id: LeaderRecord {
                term: id.leader_id.term,
                node_id: id.leader_id.node_id,
            },
            index: id.index,
        }
    }
}

impl From<LogIdRecord> for LogId<u64> {
    fn from(record: LogIdRecord) -> Self {
        LogId::new(
            CommittedLeaderId::new(record.leader_id.term, record.leader_id.node_id),
            record.index,
        )
    }
}

/// `Option<LogId>` to its record.
pub fn log_id_record(id: Option<&LogId<u64>>) -> Option<LogIdRecord> {
    id.map(LogIdRecord::from)
}

/// A record back to `Option<LogId>`.
pub fn log_id(record: Option<LogIdRecord>) -> Option<LogId<u64>> {
    record.map(LogId::from)
}

impl From<&Membership<u64, BasicNode>> for MembershipRecord {
    fn from(membership: &Membership<u64, BasicNode>) -> Self {
        Self {
            configs: membership.get_joint_config().clone(),
            nodes: membership
                .nodes()
                .map(|(id, node)| {
                    let addr = node.addr.clone();
                    (*id, NodeRecord { addr })
                })
                .collect(),
        }
    }
}

impl From<MembershipRecord> for Membership<u64, BasicNode> {
    fn from(record: MembershipRecord) -> Self {
        let nodes: BTreeMap<u64, BasicNode> = record
            .nodes
            .into_iter()
            .map(|(id, node)| (id, BasicNode::new(node.addr)))
            .collect();
        Membership::new(record.configs, nodes)
    }
}

impl From<&StoredMembership<u64, BasicNode>> for StoredMembershipRecord {
    fn from(stored: &StoredMembership<u64, BasicNode>) -> Self {
        Self {
            log_id: log_id_record(stored.log_id().as_ref()),
            membership: stored.membership().into(),
        }
    }
}

impl From<StoredMembershipRecord> for StoredMembership<u64, BasicNode> {
    fn from(record: StoredMembershipRecord) -> Self {
        StoredMembership::new(log_id(record.log_id), record.membership.into())
    }
}

impl From<&SnapshotMeta<u64, BasicNode>> for SnapshotMetaRecord {
    fn from(meta: &SnapshotMeta<u64, BasicNode>) -> Self {
        Self {
            last_log_id: log_id_record(meta.last_log_id.as_ref()),
            last_membership: (&meta.last_membership).into(),
            snapshot_id: meta.snapshot_id.clone(),
        }
    }
}

impl From<SnapshotMetaRecord> for SnapshotMeta<u64, BasicNode> {
    fn from(record: SnapshotMetaRecord) -> Self {
        SnapshotMeta {
            last_log_id: log_id(record.last_log_id),
            last_membership: record.last_membership.into(),
            snapshot_id: record.snapshot_id,
        }
    }
}

/// Written borrowing the entry's commands (a record of `&D` encodes as one of `D`).
impl<'a, C> From<&'a Entry<C>> for EntryRecord<&'a C::D>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    fn from(entry: &'a Entry<C>) -> Self {
        Self {
            log_id: (&entry.log_id).into(),
            payload: match &entry.payload {
                EntryPayload::Blank => PayloadRecord::Blank,
                EntryPayload::Normal(data) => PayloadRecord::Normal(data),
                EntryPayload::Membership(membership) => {
                    PayloadRecord::Membership(membership.into())
                }
            },
        }
    }
}

impl<C> From<EntryRecord<C::D>> for Entry<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    fn from(record: EntryRecord<C::D>) -> Self {
        Entry {
            log_id: record.log_id.into(),
            payload: match record.payload {
                PayloadRecord::Blank => EntryPayload::Blank,
                PayloadRecord::Normal(data) => EntryPayload::Normal(data),
                PayloadRecord::Membership(membership) => {
                    EntryPayload::Membership(membership.into())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, TypeConfig};
    use holdfast_types::codec;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn membership() -> Membership<u64, BasicNode> {
        Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("127.0.0.1:5122")),
                (2, BasicNode::new("127.0.0.2:5122")),
                (3, BasicNode::new("127.0.0.3:5122")),
            ]),
        )
    }

    /// The record encodes exactly as openraft's own type did (stores written before read as
    /// they are), to the pinned bytes (the format never drifts), and converts back unchanged.
    fn pinned<T, R>(value: &T, record: R, golden: &str)
    where
        T: Serialize + PartialEq + std::fmt::Debug,
        R: Serialize + serde::de::DeserializeOwned + Into<T>,
    {
        let ours = codec::encode(&record).expect("encode record");
        let theirs = codec::encode(value).expect("encode openraft value");
        assert_eq!(
            hex(&ours),
            hex(&theirs),
            "the record changed the stored bytes"
        );
        assert_eq!(hex(&ours), golden, "the stored format drifted");
        let back: T = codec::decode::<R>(&ours).expect("decode").into();
        assert_eq!(&back, value);
    }

    #[test]
    fn votes_are_stored_as_before() {
        let vote = Vote::new_committed(7, 2);
        pinned(
            &vote,
            VoteRecord::from(&vote),
            "0182a96c65616465725f696482a47465726d07a76e6f64655f696402a9636f6d6d6974746564c3",
        );
    }

    #[test]
    fn log_ids_are_stored_as_before() {
        let id = LogId::new(CommittedLeaderId::new(3, 1), 42);
        pinned(
            &id,
            LogIdRecord::from(&id),
            "0182a96c65616465725f696482a47465726d03a76e6f64655f696401a5696e6465782a",
        );
    }

    #[test]
    fn memberships_and_snapshot_metadata_are_stored_as_before() {
        let stored = StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
            membership(),
        );
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 3), 99)),
            last_membership: stored.clone(),
            snapshot_id: "2-3-99-1".into(),
        };
        let record = SnapshotMetaRecord::from(&meta);
        let bytes = codec::encode(&record).expect("encode");
        assert_eq!(bytes, codec::encode(&meta).expect("encode openraft value"));
        let back: SnapshotMeta<u64, BasicNode> = codec::decode::<SnapshotMetaRecord>(&bytes)
            .expect("decode")
            .into();
        assert_eq!(back, meta);
        pinned(
            &stored,
            StoredMembershipRecord::from(&stored),
            concat!(
                "0182a66c6f675f696482a96c65616465725f696482a47465726d01a76e6f64655f696401a5696e646578",
                "01aa6d656d6265727368697082a7636f6e666967739193010203a56e6f646573830181a461646472ae31",
                "32372e302e302e313a353132320281a461646472ae3132372e302e302e323a353132320381a461646472",
                "ae3132372e302e302e333a35313232"
            ),
        );
    }

    #[test]
    fn entries_of_every_kind_are_stored_as_before() {
        let id = LogId::new(CommittedLeaderId::new(4, 2), 10);
        let entries: [Entry<TypeConfig>; 3] = [
            Entry {
                log_id: id,
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Normal(Batch::new(Vec::new())),
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Membership(membership()),
            },
        ];
        for entry in &entries {
            let record = EntryRecord::from(entry);
            let bytes = codec::encode(&record).expect("encode");
            assert_eq!(bytes, codec::encode(entry).expect("encode openraft value"));
            let back: Entry<TypeConfig> = codec::decode::<EntryRecord<Batch>>(&bytes)
                .expect("decode")
                .into();
            assert_eq!(back.log_id, entry.log_id);
            assert_eq!(
                codec::encode(&back).expect("encode"),
                bytes,
                "round trip changed the entry"
            );
        }
        let command = holdfast_types::Command::SetState {
            object: holdfast_types::ObjectKey::new("Counter", "k"),
            name: "count".into(),
            value: vec![1],
        };
        let mut deferrable = Batch::new(vec![command.clone()]);
        deferrable.deferrable = true;
        let bytes = codec::encode(&deferrable).expect("encode");
        assert_eq!(
            bytes,
            codec::encode(&vec![command]).expect("encode"),
            "a batch is stored as its commands alone, whatever its mark"
        );
        let back: Batch = codec::decode(&bytes).expect("decode");
        assert!(!back.deferrable, "a replica's copy is never deferrable");
        assert_eq!(
            hex(&codec::encode(&EntryRecord::from(&entries[0])).expect("encode")),
            "0182a66c6f675f696482a96c65616465725f696482a47465726d04a76e6f64655f696402a5696e6465780aa77061796c6f6164a5426c616e6b"
        );
    }
}

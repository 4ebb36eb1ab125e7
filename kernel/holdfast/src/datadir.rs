//! The layout of a node's data directory and the facts fixed when it is created.
//!
//! ```text
//!   <data_dir>/LOCK                 held exclusively while a process uses the directory
//!   <data_dir>/node.json            layout version, node id, partition count and cluster
//!                                   identity with its fingerprint (fixed)
//!   <data_dir>/raft-log.redb        the raft logs of the metadata log and every partition
//!                                   (one file, one writer, one fsync per batch)
//!   <data_dir>/metadata/            state.redb of the metadata log (deployments)
//!   <data_dir>/partitions/<n>/      state.redb of partition n
//!   <data_dir>/signing-key          the node's ed25519 request-signing key (PKCS#8 PEM, 0600),
//!                                   unless `node.signing_key_file` names another file
//! ```
//!
//! Layout version 1 (the release before) kept one `log.redb` per group in `metadata/` and
//! `partitions/<n>/`; [`DataDir::open_raft_log`] moves them into `raft-log.redb` and records
//! version 2, which the release before refuses to open.

use holdfast_config::ClusterIdentity;
use holdfast_raft_store::{GroupKey, Migration, SharedLog};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The layout this release writes: every group's raft log in `raft-log.redb`.
const LAYOUT_VERSION: u32 = 2;
/// The oldest layout this release opens: one `log.redb` per group, migrated on open.
const OLDEST_LAYOUT: u32 = 1;
/// How long compaction after a stop waits, over all files, for the node's handles to close.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use data dir {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {} is in use by another holdfast process", path.display())]
    Locked { path: PathBuf },
    #[error("{} is unreadable: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "data dir {} was created with {created} partitions but the configuration asks for {configured} \
         (key `cluster.partitions`); the partition count is fixed when a data dir is created",
        path.display()
    )]
    PartitionCount {
        path: PathBuf,
        created: u32,
        configured: u32,
    },
    #[error(
        "data dir {} belongs to node {created} but this is node {configured} (key `node.id`)",
        path.display()
    )]
    NodeId {
        path: PathBuf,
        created: u64,
        configured: u64,
    },
    #[error(
        "data dir {} has layout version {found}, this release reads versions {OLDEST_LAYOUT} to \
         {LAYOUT_VERSION}",
        path.display()
    )]
    Version { found: u32, path: PathBuf },
    /// The node's raft-log file cannot be opened, or an old per-group log not moved into it.
    #[error("cannot open the raft log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: holdfast_raft_store::Error,
    },
    /// The `[cluster]` section differs from the one the data dir was created with: its state
    /// belongs to another cluster (or another shape of this one).
    #[error(
        "data dir {} was created for {key} = {stored} but the configuration says {configured}; \
         a node cannot move to another cluster configuration (start it with the configuration \
         it was created with, or with an empty data dir)",
        path.display()
    )]
    Cluster {
        path: PathBuf,
        /// The first differing key, e.g. `cluster.name`.
        key: &'static str,
        /// Its value as recorded in `node.json`.
        stored: String,
        /// Its value in the configuration.
        configured: String,
    },
}

/// The facts written when a data directory is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    layout_version: u32,
    node_id: u64,
    partitions: u32,
    /// The `[cluster]` section; absent in data dirs created before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterIdentity>,
    /// `cluster`'s fingerprint, for tools and peers that compare identities by one string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    /// Random, fixed when the directory is created: peers remember it, so a node id coming back
    /// with a wiped (or another) data dir is told apart and refused. Absent in older data dirs
    /// until their first start with this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incarnation: Option<String>,
}

impl Identity {
    fn new(node_id: u64, cluster: &ClusterIdentity) -> Self {
        Identity {
            layout_version: LAYOUT_VERSION,
            node_id,
            partitions: cluster.partitions,
            cluster: Some(cluster.clone()),
            fingerprint: Some(cluster.fingerprint()),
            incarnation: Some(fresh_incarnation()),
        }
    }
}

/// 128 random bits in hex: a data dir's incarnation.
fn fresh_incarnation() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut bytes));
    if random.is_err() {
        // Unique enough without /dev/urandom: the clock and the process.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (now ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of `key` in `identity`, as the refusal message shows it.
fn shown(identity: &ClusterIdentity, key: &str) -> String {
    match key {
        "cluster.name" => format!("{:?}", identity.name),
        "cluster.partitions" => identity.partitions.to_string(),
        "cluster.replication_factor" => identity.replication_factor.to_string(),
        _ => {
            let mut nodes: Vec<&(u64, String)> = identity.nodes.iter().collect();
            nodes.sort();
            let members: Vec<String> = nodes
                .iter()
                .map(|(id, address)| format!("{{ id = {id}, address = {address:?} }}"))
                .collect();
            format!("[{}]", members.join(", "))
        }
    }
}

/// `<root>/signing-key`: the default request-signing key file of the data dir `root` (a path
/// only: `holdfast keys public` reads it without taking the data dir's lock).
pub fn signing_key_path(root: &Path) -> PathBuf {
    root.join("signing-key")
}

/// An opened data directory, locked for this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// What `node.json` records; its layout version is raised once the logs are migrated.
    identity: Identity,
    _lock: File,
}

impl DataDir {
    /// Opens (creating on first use) `root` for node `node_id` of the cluster `cluster`,
    /// refusing a directory created for another node, partition count or cluster identity.
    /// A directory recorded without a cluster identity (an earlier release) adopts `cluster`.
    pub fn open(root: &Path, node_id: u64, cluster: &ClusterIdentity) -> Result<Self, Error> {
        let partitions = cluster.partitions;
        let io = |source| Error::Io {
            path: root.to_path_buf(),
            source,
        };
        create_private_dir(root).map_err(io)?;
        let lock = File::create(root.join("LOCK")).map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(Error::Locked {
                path: root.to_path_buf(),
            });
        }
        let identity_path = root.join("node.json");
        let identity = match std::fs::read(&identity_path) {
            Ok(bytes) => {
                let identity: Identity =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                        path: identity_path.clone(),
                        message: e.to_string(),
                    })?;
                if !(OLDEST_LAYOUT..=LAYOUT_VERSION).contains(&identity.layout_version) {
                    return Err(Error::Version {
                        found: identity.layout_version,
                        path: root.to_path_buf(),
                    });
                }
                if identity.partitions != partitions {
                    return Err(Error::PartitionCount {
                        path: root.to_path_buf(),
                        created: identity.partitions,
                        configured: partitions,
                    });
                }
                if identity.node_id != node_id {
                    return Err(Error::NodeId {
                        path: root.to_path_buf(),
                        created: identity.node_id,
                        configured: node_id,
                    });
                }
                if let Some(stored) = &identity.cluster
                    && let Some(key) = stored.difference(cluster)
                {
                    return Err(Error::Cluster {
                        path: root.to_path_buf(),
                        key,
                        stored: shown(stored, key),
                        configured: shown(cluster, key),
                    });
                }
                // Recorded by an earlier release without the cluster identity (or its
                // fingerprint): adopt the configured one, which agrees on every recorded fact.
                // The layout version stays until the logs are migrated.
                let fingerprint = cluster.fingerprint();
                if identity.cluster.is_none()
                    || identity.fingerprint.as_ref() != Some(&fingerprint)
                    || identity.incarnation.is_none()
                {
                    let fresh = Identity::new(node_id, cluster);
                    let adopted = Identity {
                        layout_version: identity.layout_version,
                        incarnation: identity.incarnation.or(fresh.incarnation.clone()),
                        ..fresh
                    };
                    write_identity(root, &adopted)?;
                    adopted
                } else {
                    identity
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::new(node_id, cluster);
                write_identity(root, &identity)?;
                identity
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            root: root.to_path_buf(),
            identity,
            _lock: lock,
        })
    }

    /// This data dir's incarnation: what peers know this node's state by.
    pub fn incarnation(&self) -> &str {
        self.identity.incarnation.as_deref().unwrap_or_default()
    }

    /// Where this node remembers its peers' incarnations.
    pub fn peers_file(&self) -> PathBuf {
        self.root.join("peers.json")
    }

    /// The file holding the raft logs of every group of this node.
    pub fn raft_log(&self) -> PathBuf {
        self.root.join("raft-log.redb")
    }

    /// Opens the node's raft log ([`DataDir::raft_log`]), first moving into it the per-group
    /// `log.redb` files a layout-1 data dir has (each group in one durable transaction, its
    /// old file removed after), then records the current layout version. Safe to repeat after
    /// an interruption. The file's page cache holds `cache_bytes`.
    pub fn open_raft_log(&self, cache_bytes: usize) -> Result<SharedLog, Error> {
        let path = self.raft_log();
        let failed = |source| Error::Log {
            path: path.clone(),
            source,
        };
        let log = SharedLog::open_with_cache(&path, cache_bytes).map_err(failed)?;
        for (group, legacy) in self.legacy_logs()? {
            let migration =
                holdfast_raft_store::migrate_legacy_log(&log, group, &legacy).map_err(failed)?;
            match migration {
                Migration::Absent => {}
                Migration::Copied { entries } => {
                    tracing::info!(%group, entries, from = %legacy.display(), "moved a raft log into the node's raft-log file");
                }
                Migration::AlreadyCopied => {
                    tracing::info!(%group, from = %legacy.display(), "removed a raft log already moved into the node's raft-log file");
                }
            }
        }
        if self.identity.layout_version < LAYOUT_VERSION {
            let current = Identity {
                layout_version: LAYOUT_VERSION,
                ..self.identity.clone()
            };
            write_identity(&self.root, &current)?;
        }
        Ok(log)
    }

    /// The per-group log files of layout 1 still present: the metadata log's and those of
    /// every partition directory.
    fn legacy_logs(&self) -> Result<Vec<(GroupKey, PathBuf)>, Error> {
        let mut logs = vec![(GroupKey::METADATA, self.metadata().join("log.redb"))];
        let partitions = self.root.join("partitions");
        let io = |source| Error::Io {
            path: partitions.clone(),
            source,
        };
        let dirs = match std::fs::read_dir(&partitions) {
            Ok(dirs) => dirs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(logs),
            Err(e) => return Err(io(e)),
        };
        for dir in dirs {
            let dir = dir.map_err(io)?;
            let partition = dir.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
            if let Some(n) = partition.filter(|n| *n < self.identity.partitions) {
                let group = GroupKey::partition(holdfast_types::PartitionId(n));
                logs.push((group, dir.path().join("log.redb")));
            }
        }
        Ok(logs)
    }

    /// The directory holding the metadata log's stores.
    pub fn metadata(&self) -> PathBuf {
        self.root.join("metadata")
    }

    /// The directory holding partition `n`'s stores.
    pub fn partition(&self, n: u32) -> PathBuf {
        self.root.join("partitions").join(n.to_string())
    }

    /// Compacts the node's redb files (the raft log, the metadata state, each partition's state)
    /// once the node has stopped and closed them: a clean stop leaves each file about the size
    /// of what it holds. A file that cannot be compacted is logged and left as it is. Returns
    /// the bytes the compacted files held before and after (files with no free pages count in
    /// neither).
    pub fn compact_files(&self) -> (u64, u64) {
        let mut files = vec![self.raft_log(), self.metadata().join("state.redb")];
        files.extend((0..self.identity.partitions).map(|n| self.partition(n).join("state.redb")));
        let (mut before, mut after) = (0, 0);
        // Threads of the stopped node may still be dropping their last handles.
        let deadline = std::time::Instant::now() + CLOSE_PATIENCE;
        for file in files.iter().filter(|file| file.exists()) {
            let patience = deadline.saturating_duration_since(std::time::Instant::now());
            match holdfast_raft_store::compact(file, patience) {
                Ok(Some(compacted)) => {
                    tracing::debug!(file = %file.display(), before = compacted.before, after = compacted.after, "compacted");
                    before += compacted.before;
                    after += compacted.after;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "not compacted; the file keeps its free pages");
                }
            }
        }
        (before, after)
    }
}

/// Creates `root` (and missing parents) readable by this user only (0700), and takes group and
/// other permissions away from an existing one: the data dir holds every invocation's
/// arguments, state and results.
fn create_private_dir(root: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        let mode = std::fs::metadata(root)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & 0o7700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(root)
    }
}

/// Writes `node.json` durably: to a staging file first, then renamed over, so a crash never
/// leaves a half-written identity behind.
fn write_identity(root: &Path, identity: &Identity) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: root.to_path_buf(),
        source,
    };
    let identity_path = root.join("node.json");
    let text = serde_json::to_vec_pretty(identity).map_err(|e| Error::Corrupt {
        path: identity_path.clone(),
        message: e.to_string(),
    })?;
    holdfast_types::files::write_private_atomically(&identity_path, &text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::{DataDir, Error};
    use holdfast_config::ClusterIdentity;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> std::io::Result<Self> {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "holdfast-datadir-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            // A leftover from an earlier run with a recycled pid must not leak into this one.
            match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }

        fn data(&self) -> PathBuf {
            self.0.join("data")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn identity() -> ClusterIdentity {
        ClusterIdentity {
            name: "holdfast".to_owned(),
            partitions: 4,
            replication_factor: 3,
            nodes: vec![
                (1, "127.0.0.1:5122".to_owned()),
                (2, "127.0.0.2:5123".to_owned()),
                (3, "127.0.0.3:5124".to_owned()),
            ],
        }
    }

    fn stored(root: &Path) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        Ok(serde_json::from_slice(&std::fs::read(
            root.join("node.json"),
        )?)?)
    }

    /// Opens and closes again (the lock is released on drop).
    fn open(root: &Path, node: u64, cluster: &ClusterIdentity) -> Result<(), Error> {
        DataDir::open(root, node, cluster).map(drop)
    }

    #[test]
    fn first_open_records_the_identity_and_reopening_with_it_works() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        let cluster = identity();
        open(&root, 2, &cluster)?;
        let json = stored(&root)?;
        assert_eq!(json["layout_version"], 2);
        assert_eq!(json["node_id"], 2);
        assert_eq!(json["partitions"], 4);
        assert_eq!(json["fingerprint"], cluster.fingerprint().as_str());
        let recorded: ClusterIdentity = serde_json::from_value(json["cluster"].clone())?;
        assert_eq!(recorded, cluster);
        assert!(!root.join("node.json.tmp").exists());

        open(&root, 2, &cluster)?;
        // The same cluster listed in another order is the same cluster.
        let mut reordered = cluster.clone();
        reordered.nodes.reverse();
        open(&root, 2, &reordered)?;
        assert_eq!(stored(&root)?, json);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn the_data_dir_and_node_json_are_private() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| -> std::io::Result<u32> {
            Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
        };
        let dir = TempDir::new()?;
        let root = dir.data();
        open(&root, 1, &identity())?;
        assert_eq!(mode(&root)?, 0o700);
        assert_eq!(mode(&root.join("node.json"))?, 0o600);
        // A data dir made readable by others (an earlier release) is narrowed on open.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        open(&root, 1, &identity())?;
        assert_eq!(mode(&root)?, 0o700);
        Ok(())
    }

    #[test]
    fn each_differing_cluster_field_is_refused_naming_its_key() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        let cluster = identity();
        open(&root, 1, &cluster)?;
        let before = stored(&root)?;

        let mut name = cluster.clone();
        name.name = "other".to_owned();
        let mut factor = cluster.clone();
        factor.replication_factor = 1;
        let mut address = cluster.clone();
        address.nodes[2].1 = "127.0.0.3:6000".to_owned();
        let mut member = cluster.clone();
        member.nodes.push((4, "127.0.0.4:5125".to_owned()));
        let cases = [
            (name, "cluster.name", "\"holdfast\"", "\"other\""),
            (factor, "cluster.replication_factor", "3", "1"),
            (
                address,
                "cluster.nodes",
                "[{ id = 1, address = \"127.0.0.1:5122\" }, { id = 2, address = \
                 \"127.0.0.2:5123\" }, { id = 3, address = \"127.0.0.3:5124\" }]",
                "[{ id = 1, address = \"127.0.0.1:5122\" }, { id = 2, address = \
                 \"127.0.0.2:5123\" }, { id = 3, address = \"127.0.0.3:6000\" }]",
            ),
            (member, "cluster.nodes", "", ""),
        ];
        for (configured, key, old, new) in cases {
            let err = open(&root, 1, &configured)
                .err()
                .ok_or_else(|| format!("{key}: accepted {configured:?}"))?;
            let Error::Cluster {
                key: k,
                stored: s,
                configured: c,
                ..
            } = &err
            else {
                return Err(format!("{key}: expected Error::Cluster, got {err}").into());
            };
            assert_eq!(*k, key);
            if !old.is_empty() {
                assert_eq!((s.as_str(), c.as_str()), (old, new));
            }
            // A refused start leaves the record alone.
            assert_eq!(stored(&root)?, before);
        }

        let mut factor = cluster.clone();
        factor.replication_factor = 1;
        let message = open(&root, 1, &factor)
            .err()
            .ok_or("accepted another replication factor")?
            .to_string();
        assert_eq!(
            message,
            format!(
                "data dir {} was created for cluster.replication_factor = 3 but the \
                 configuration says 1; a node cannot move to another cluster configuration \
                 (start it with the configuration it was created with, or with an empty data dir)",
                root.display()
            )
        );
        Ok(())
    }

    #[test]
    fn partition_count_and_node_id_keep_their_own_errors() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        let cluster = identity();
        open(&root, 1, &cluster)?;
        let mut partitions = cluster.clone();
        partitions.partitions = 8;
        partitions.name = "other".to_owned();
        let err = open(&root, 1, &partitions)
            .err()
            .ok_or("accepted another partition count")?;
        assert!(
            matches!(
                err,
                Error::PartitionCount {
                    created: 4,
                    configured: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("cluster.partitions"), "{err}");
        let err = open(&root, 2, &cluster)
            .err()
            .ok_or("accepted another node id")?;
        assert!(
            matches!(
                err,
                Error::NodeId {
                    created: 1,
                    configured: 2,
                    ..
                }
            ),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn an_incarnation_is_fixed_at_creation_and_a_wiped_dir_gets_another() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        let cluster = identity();
        let first = DataDir::open(&root, 1, &cluster)?.incarnation().to_owned();
        assert_eq!(first.len(), 32, "{first}");
        let again = DataDir::open(&root, 1, &cluster)?.incarnation().to_owned();
        assert_eq!(again, first, "a restart keeps the incarnation");
        std::fs::remove_dir_all(&root)?;
        let wiped = DataDir::open(&root, 1, &cluster)?.incarnation().to_owned();
        assert_ne!(wiped, first, "a wiped dir is another incarnation");
        // A record from before incarnations gets one on its next start, kept from then on.
        let mut json = stored(&root)?;
        json.as_object_mut()
            .ok_or("an object")?
            .remove("incarnation");
        std::fs::write(root.join("node.json"), serde_json::to_vec(&json)?)?;
        let adopted = DataDir::open(&root, 1, &cluster)?.incarnation().to_owned();
        assert_eq!(adopted.len(), 32);
        assert_eq!(stored(&root)?["incarnation"], adopted.as_str());
        Ok(())
    }

    #[test]
    fn a_legacy_record_adopts_the_configured_identity() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        std::fs::create_dir_all(&root)?;
        // node.json as written by the release before cluster identities.
        std::fs::write(
            root.join("node.json"),
            "{\n  \"layout_version\": 1,\n  \"node_id\": 3,\n  \"partitions\": 4\n}",
        )?;
        let cluster = identity();
        open(&root, 3, &cluster)?;
        let json = stored(&root)?;
        assert_eq!(json["node_id"], 3);
        assert_eq!(json["partitions"], 4);
        assert_eq!(json["fingerprint"], cluster.fingerprint().as_str());
        let recorded: ClusterIdentity = serde_json::from_value(json["cluster"].clone())?;
        assert_eq!(recorded, cluster);
        assert!(!root.join("node.json.tmp").exists());
        // From now on the adopted identity is enforced.
        let mut renamed = cluster.clone();
        renamed.name = "other".to_owned();
        let err = open(&root, 3, &renamed)
            .err()
            .ok_or("accepted another name")?;
        assert!(
            matches!(
                err,
                Error::Cluster {
                    key: "cluster.name",
                    ..
                }
            ),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_legacy_record_with_another_partition_count_is_still_refused() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        std::fs::create_dir_all(&root)?;
        let legacy = "{\"layout_version\": 1, \"node_id\": 1, \"partitions\": 2}";
        std::fs::write(root.join("node.json"), legacy)?;
        let err = open(&root, 1, &identity())
            .err()
            .ok_or("accepted another partition count")?;
        assert!(matches!(err, Error::PartitionCount { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(root.join("node.json"))?, legacy);
        Ok(())
    }

    #[test]
    fn a_missing_fingerprint_is_rewritten() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        let cluster = identity();
        open(&root, 1, &cluster)?;
        let mut json = stored(&root)?;
        if let Some(fields) = json.as_object_mut() {
            fields.remove("fingerprint");
        }
        std::fs::write(root.join("node.json"), serde_json::to_vec(&json)?)?;
        open(&root, 1, &cluster)?;
        assert_eq!(
            stored(&root)?["fingerprint"],
            cluster.fingerprint().as_str()
        );
        Ok(())
    }

    #[test]
    fn a_layout_1_dir_is_recorded_as_layout_2_once_its_logs_are_moved() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        let cluster = identity();
        open(&root, 1, &cluster)?;
        let mut json = stored(&root)?;
        json["layout_version"] = 1.into();
        std::fs::write(root.join("node.json"), serde_json::to_vec(&json)?)?;
        std::fs::create_dir_all(root.join("partitions").join("0"))?;

        let data_dir = DataDir::open(&root, 1, &cluster)?;
        assert_eq!(stored(&root)?["layout_version"], 1, "not before the move");
        let log = data_dir.open_raft_log(holdfast_raft_store::LOG_CACHE_BYTES)?;
        assert_eq!(log.path().file_name(), Some("raft-log.redb".as_ref()));
        assert!(root.join("raft-log.redb").exists());
        let json = stored(&root)?;
        assert_eq!(json["layout_version"], 2);
        assert_eq!(json["fingerprint"], cluster.fingerprint().as_str());
        drop((log, data_dir));
        open(&root, 1, &cluster)?;
        Ok(())
    }

    #[test]
    fn an_unreadable_old_log_fails_the_move_and_keeps_layout_1() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        std::fs::create_dir_all(root.join("partitions").join("2"))?;
        let legacy = root.join("partitions").join("2").join("log.redb");
        std::fs::write(&legacy, b"not a redb file")?;
        let record = "{\"layout_version\": 1, \"node_id\": 1, \"partitions\": 4}";
        std::fs::write(root.join("node.json"), record)?;

        let data_dir = DataDir::open(&root, 1, &identity())?;
        let err = data_dir
            .open_raft_log(holdfast_raft_store::LOG_CACHE_BYTES)
            .err()
            .ok_or("moved an unreadable log")?;
        assert!(matches!(err, Error::Log { .. }), "{err}");
        assert!(legacy.exists(), "the old file is kept for the next try");
        assert_eq!(stored(&root)?["layout_version"], 1);
        Ok(())
    }

    #[test]
    fn a_newer_layout_is_refused() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        std::fs::create_dir_all(&root)?;
        let record = "{\"layout_version\": 3, \"node_id\": 1, \"partitions\": 4}";
        std::fs::write(root.join("node.json"), record)?;
        let err = open(&root, 1, &identity())
            .err()
            .ok_or("accepted layout 3")?;
        assert!(matches!(err, Error::Version { found: 3, .. }), "{err}");
        assert!(err.to_string().contains("reads versions 1 to 2"), "{err}");
        Ok(())
    }

    #[test]
    fn an_unreadable_record_is_corrupt() -> TestResult {
        let dir = TempDir::new()?;
        let root = dir.data();
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("node.json"), "{\"layout_version\": 1")?;
        let err = open(&root, 1, &identity())
            .err()
            .ok_or("accepted a truncated record")?;
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        Ok(())
    }
}

//! The layout of a node's data directory and the facts fixed when it is created.
//!
//! ```text
//!   <data_dir>/LOCK                 held exclusively while a process uses the directory
//!   <data_dir>/node.json            format version, node id and partition count (fixed)
//!   <data_dir>/metadata/            log.redb + state.redb of the metadata log (deployments)
//!   <data_dir>/partitions/<n>/      log.redb + state.redb of partition n
//! ```

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

const LAYOUT_VERSION: u32 = 1;

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
    #[error("data dir {} has layout version {found}, this release reads version {LAYOUT_VERSION}", path.display())]
    Version { found: u32, path: PathBuf },
}

/// The facts written when a data directory is created.
#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    layout_version: u32,
    node_id: u64,
    partitions: u32,
}

/// An opened data directory, locked for this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Opens (creating on first use) `root` for node `node_id` with `partitions` partitions,
    /// refusing a directory created with another count or node.
    pub fn open(root: &Path, node_id: u64, partitions: u32) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let lock = File::create(root.join("LOCK")).map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(Error::Locked {
                path: root.to_path_buf(),
            });
        }
        let identity_path = root.join("node.json");
        match std::fs::read(&identity_path) {
            Ok(bytes) => {
                let identity: Identity =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                        path: identity_path.clone(),
                        message: e.to_string(),
                    })?;
                if identity.layout_version != LAYOUT_VERSION {
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
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity {
                    layout_version: LAYOUT_VERSION,
                    node_id,
                    partitions,
                };
                let text = serde_json::to_vec_pretty(&identity).map_err(|e| Error::Corrupt {
                    path: identity_path.clone(),
                    message: e.to_string(),
                })?;
                // Write then rename, so a crash never leaves a half-written identity behind.
                let staging = root.join("node.json.tmp");
                std::fs::write(&staging, text).map_err(io)?;
                File::open(&staging)
                    .and_then(|f| f.sync_all())
                    .map_err(io)?;
                std::fs::rename(&staging, &identity_path).map_err(io)?;
                File::open(root).and_then(|d| d.sync_all()).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory holding the metadata log's stores.
    pub fn metadata(&self) -> PathBuf {
        self.root.join("metadata")
    }

    /// The directory holding partition `n`'s stores.
    pub fn partition(&self, n: u32) -> PathBuf {
        self.root.join("partitions").join(n.to_string())
    }
}

//! Which data dir each node id stands for: a node id must never come back with a wiped (or
//! another machine's) data dir, because its peers remember what its old replicas held — raft
//! would take the empty log for the old one (openraft forbids a follower's log going backwards).
//!
//! Every data dir has a random incarnation fixed at its creation. Hellos carry it both ways, and
//! each node records the first incarnation it sees per peer (in `<data_dir>/peers.json`, so a
//! restart remembers). A peer presenting another incarnation later is refused on both sides with
//! a log line naming the cure: such a node joins under a new id.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// Why an incarnation book cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IncarnationError {
    /// The file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The book's file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a map of node ids to incarnations.
    #[error("{} is not a peers file: {message}", path.display())]
    Corrupt {
        /// The book's file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// This node's incarnation and those it has seen of its peers.
#[derive(Debug)]
pub struct Incarnations {
    own: String,
    /// Where the peers' incarnations are kept (`None`: only in memory, for tests).
    file: Option<PathBuf>,
    known: Mutex<BTreeMap<u64, String>>,
}

impl Incarnations {
    /// The book at `file` (created when the first peer is seen) for a node of incarnation `own`.
    pub fn load(own: String, file: PathBuf) -> Result<Self, IncarnationError> {
        let known = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| IncarnationError::Corrupt {
                path: file.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(IncarnationError::Io { path: file, source }),
        };
        Ok(Self {
            own,
            file: Some(file),
            known: Mutex::new(known),
        })
    }

    /// A book kept in memory only.
    pub fn in_memory(own: String) -> Self {
        Self {
            own,
            file: None,
            known: Mutex::new(BTreeMap::new()),
        }
    }

    /// This node's incarnation.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// Accepts `peer` presenting `incarnation` if it is the one first seen (recording it when
    /// new), and says why not otherwise. An empty incarnation (a peer of an older release) is
    /// accepted without being recorded.
    pub fn admit(&self, peer: u64, incarnation: &str) -> Result<(), String> {
        if incarnation.is_empty() {
            return Ok(());
        }
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match known.get(&peer) {
            Some(seen) if seen == incarnation => Ok(()),
            Some(seen) => Err(format!(
                "node {peer} presents data dir incarnation {incarnation}, but this node knew it as \
                 {seen}: its data dir was wiped or replaced; a node with a new data dir must join \
                 under a new id (POST /cluster/nodes) and the old id be removed"
            )),
            None => {
                known.insert(peer, incarnation.to_owned());
                if let Err(e) = self.save(&known) {
                    // Still admitted: forgetting the peer after a restart only skips one check.
                    tracing::warn!(peer, error = %e, "cannot record a peer's incarnation");
                }
                Ok(())
            }
        }
    }

    /// Writes the book through a temporary file, so a crash leaves the old or the new one.
    fn save(&self, known: &BTreeMap<u64, String>) -> Result<(), IncarnationError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let io = |source| IncarnationError::Io {
            path: file.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(known).map_err(|e| IncarnationError::Corrupt {
            path: file.clone(),
            message: e.to_string(),
        })?;
        holdfast_types::files::write_private_atomically(file, &bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_incarnation_seen_is_kept_across_restarts_and_another_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("peers.json");
        let book = Incarnations::load("me".into(), file.clone()).expect("load");
        assert_eq!(book.admit(2, "aaaa"), Ok(()));
        assert_eq!(book.admit(2, "aaaa"), Ok(()));
        assert_eq!(book.admit(3, ""), Ok(()), "older peers are not checked");
        let reloaded = Incarnations::load("me".into(), file).expect("reload");
        let refusal = reloaded.admit(2, "bbbb").expect_err("a wiped node");
        assert!(refusal.contains("new id"), "{refusal}");
        assert_eq!(reloaded.admit(3, "cccc"), Ok(()));
        assert_eq!(reloaded.own(), "me");
    }

    #[cfg(unix)]
    #[test]
    fn the_book_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("peers.json");
        let book = Incarnations::load("me".into(), file.clone()).expect("load");
        assert_eq!(book.admit(2, "aaaa"), Ok(()));
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_book_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("peers.json");
        std::fs::write(&file, "not json").expect("write");
        let error = Incarnations::load("me".into(), file).expect_err("corrupt");
        assert!(error.to_string().contains("not a peers file"), "{error}");
    }
}

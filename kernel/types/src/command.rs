//! The commands of a partition log. The log is the ground truth: a partition's state is exactly
//! the fold of its committed commands.
//!
//! The format is append-only: never reorder, rename or remove a variant or a field; add new
//! variants at the end with a golden-bytes test in [`crate::codec`].

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
}

impl Command {
    /// The object whose partition must hold this command.
    pub fn object(&self) -> &ObjectKey {
        match self {
            Command::SetState { object, .. }
            | Command::ClearState { object, .. }
            | Command::ClearAllState { object } => object,
        }
    }
}

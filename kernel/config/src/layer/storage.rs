//! The `[storage]` keys: how much memory the node's page caches may hold. They are the part of
//! a node's memory that grows with the data it keeps, so operators size them here.

use config::Value;

use super::{Layer, Range, Sourced, int};
use crate::Storage;
use crate::error::Error;
use crate::validate::required;

/// A page cache: at least 64 KiB (a few pages), at most 2^40 bytes.
const CACHE_BYTES: Range = Range::between(64 << 10, 1 << 40);

/// The storage keys one layer sets.
#[derive(Debug, Default)]
pub(crate) struct StorageKeys {
    log_cache_bytes: Option<Sourced<usize>>,
    state_cache_bytes: Option<Sourced<usize>>,
}

impl StorageKeys {
    /// Lays `upper` over `self`, key by key.
    pub(crate) fn overlay(self, upper: StorageKeys) -> StorageKeys {
        StorageKeys {
            log_cache_bytes: upper.log_cache_bytes.or(self.log_cache_bytes),
            state_cache_bytes: upper.state_cache_bytes.or(self.state_cache_bytes),
        }
    }

    /// Reads `storage.<name>`; any other name is an unknown key.
    pub(crate) fn read(
        &mut self,
        name: &str,
        value: &Value,
        layer: &Layer<'_>,
    ) -> Result<(), Error> {
        let key = format!("storage.{name}");
        match name {
            "log_cache_bytes" => self.log_cache_bytes = Some(int(value, &key, CACHE_BYTES, layer)?),
            "state_cache_bytes" => {
                self.state_cache_bytes = Some(int(value, &key, CACHE_BYTES, layer)?);
            }
            _ => return Err(super::unknown(&key, layer)),
        }
        Ok(())
    }

    /// Every key's merged value; a key no layer set (the embedded default always does) is a
    /// [`Error::MissingKey`].
    pub(crate) fn finish(self) -> Result<Storage, Error> {
        Ok(Storage {
            log_cache_bytes: required(self.log_cache_bytes, "storage.log_cache_bytes")?.value,
            state_cache_bytes: required(self.state_cache_bytes, "storage.state_cache_bytes")?.value,
        })
    }
}

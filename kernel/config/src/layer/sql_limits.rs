//! The `[sql]` keys that bound what SQL clients may cost a node: the memory pool, the result
//! byte cap and the PostgreSQL-wire listener's connection limits. Kept apart from the other
//! `[sql]` keys so the layer reader only hands them over.

use config::Value;

use super::{Layer, MILLIS, Range, Sourced, int};
use crate::error::Error;
use crate::validate::required;

/// `sql.memory_limit_bytes` and `sql.max_result_bytes`: 0 (off) up to 2^53.
const BYTES_OR_OFF: Range = Range::between(0, 1 << 53);
/// `sql.max_connections`: at least one client, at most 65 536.
const MAX_CONNECTIONS: Range = Range::between(1, 65_536);
/// `sql.idle_timeout_ms`: 0 (off) up to 2^53 ms.
const MILLIS_OR_OFF: Range = Range::between(0, 1 << 53);
/// `sql.max_message_bytes`: 1 KiB up to PostgreSQL's own limit (1 GiB - 1).
const MESSAGE_BYTES: Range = Range::between(1024, 0x3fff_ffff);

/// The limit keys one layer sets.
#[derive(Debug, Default)]
pub(crate) struct SqlLimitKeys {
    memory_limit_bytes: Option<Sourced<u64>>,
    max_result_bytes: Option<Sourced<u64>>,
    max_connections: Option<Sourced<u32>>,
    startup_timeout_ms: Option<Sourced<u64>>,
    idle_timeout_ms: Option<Sourced<u64>>,
    max_message_bytes: Option<Sourced<u64>>,
}

/// The merged limit values, every key present.
#[derive(Debug)]
pub(crate) struct SqlLimitValues {
    pub memory_limit_bytes: u64,
    pub max_result_bytes: u64,
    pub max_connections: u32,
    pub startup_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_message_bytes: u64,
}

impl SqlLimitKeys {
    /// Lays `upper` over `self`, key by key.
    pub(crate) fn overlay(self, upper: SqlLimitKeys) -> SqlLimitKeys {
        SqlLimitKeys {
            memory_limit_bytes: upper.memory_limit_bytes.or(self.memory_limit_bytes),
            max_result_bytes: upper.max_result_bytes.or(self.max_result_bytes),
            max_connections: upper.max_connections.or(self.max_connections),
            startup_timeout_ms: upper.startup_timeout_ms.or(self.startup_timeout_ms),
            idle_timeout_ms: upper.idle_timeout_ms.or(self.idle_timeout_ms),
            max_message_bytes: upper.max_message_bytes.or(self.max_message_bytes),
        }
    }

    /// Reads `sql.<name>` if it is one of the limit keys (`false` otherwise).
    pub(crate) fn read(
        &mut self,
        name: &str,
        value: &Value,
        layer: &Layer<'_>,
    ) -> Result<bool, Error> {
        let key = format!("sql.{name}");
        match name {
            "memory_limit_bytes" => {
                self.memory_limit_bytes = Some(int(value, &key, BYTES_OR_OFF, layer)?);
            }
            "max_result_bytes" => {
                self.max_result_bytes = Some(int(value, &key, BYTES_OR_OFF, layer)?);
            }
            "max_connections" => {
                self.max_connections = Some(int(value, &key, MAX_CONNECTIONS, layer)?);
            }
            "startup_timeout_ms" => {
                self.startup_timeout_ms = Some(int(value, &key, MILLIS, layer)?);
            }
            "idle_timeout_ms" => {
                self.idle_timeout_ms = Some(int(value, &key, MILLIS_OR_OFF, layer)?);
            }
            "max_message_bytes" => {
                self.max_message_bytes = Some(int(value, &key, MESSAGE_BYTES, layer)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Every key's merged value; a key no layer set (the embedded default always does) is a
    /// [`Error::MissingKey`].
    pub(crate) fn finish(self) -> Result<SqlLimitValues, Error> {
        Ok(SqlLimitValues {
            memory_limit_bytes: required(self.memory_limit_bytes, "sql.memory_limit_bytes")?.value,
            max_result_bytes: required(self.max_result_bytes, "sql.max_result_bytes")?.value,
            max_connections: required(self.max_connections, "sql.max_connections")?.value,
            startup_timeout_ms: required(self.startup_timeout_ms, "sql.startup_timeout_ms")?.value,
            idle_timeout_ms: required(self.idle_timeout_ms, "sql.idle_timeout_ms")?.value,
            max_message_bytes: required(self.max_message_bytes, "sql.max_message_bytes")?.value,
        })
    }
}

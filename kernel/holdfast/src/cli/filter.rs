//! Which invocations a command means: filters on `sys_invocation`, turned into a SQL `WHERE`
//! clause with every value quoted (no filter value can change the query's shape).

use std::time::Duration;

/// An invocation's status, as `sys_invocation.status` names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its start time.
    Scheduled,
    /// Queued in its object's inbox behind the invocation holding the key (`inboxed` also
    /// accepted).
    #[value(alias = "inboxed")]
    Pending,
    /// Waiting for a permit of a limit covering it (`throttled` also accepted).
    #[value(alias = "throttled")]
    Ready,
    /// An attempt is running.
    Running,
    /// Waiting for a timer, a call, an awakeable or a promise.
    Suspended,
    /// Waiting to retry after a failed attempt.
    BackingOff,
    /// Paused by an operator.
    Paused,
    /// Finished (its result is kept for its retention).
    Completed,
}

impl Status {
    /// The name `sys_invocation.status` uses.
    fn sql_name(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Pending => "pending",
            Status::Ready => "ready",
            Status::Running => "running",
            Status::Suspended => "suspended",
            Status::BackingOff => "backing-off",
            Status::Paused => "paused",
            Status::Completed => "completed",
        }
    }
}

/// Filters on invocations (all given ones must match).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Filter {
    /// Only invocations of this service.
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Only invocations of this handler.
    #[arg(long, value_name = "HANDLER")]
    pub handler: Option<String>,
    /// Only invocations on this object or workflow key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Only invocations in this status.
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    /// Only invocations created longer ago than this (`10m`, `1h`, `2d`).
    #[arg(long, value_name = "DURATION", value_parser = age)]
    pub older_than: Option<Duration>,
    /// Only invocations created within this (`10m`, `1h`, `2d`).
    #[arg(long, value_name = "DURATION", value_parser = age)]
    pub newer_than: Option<Duration>,
}

/// Parses `--older-than` and `--newer-than`.
fn age(text: &str) -> Result<Duration, String> {
    holdfast_schema::duration::parse(text).map_err(|e| format!("bad duration '{text}': {e}"))
}

impl Filter {
    /// Whether any filter is given.
    pub fn is_empty(&self) -> bool {
        self.service.is_none()
            && self.handler.is_none()
            && self.key.is_none()
            && self.status.is_none()
            && self.older_than.is_none()
            && self.newer_than.is_none()
    }

    /// ` WHERE …` for the given filters (empty without any).
    pub fn where_clause(&self) -> String {
        let mut conditions = Vec::new();
        let columns = [
            ("target_service_name", self.service.as_deref()),
            ("target_handler_name", self.handler.as_deref()),
            ("target_service_key", self.key.as_deref()),
            ("status", self.status.map(Status::sql_name)),
        ];
        for (column, value) in columns {
            if let Some(value) = value {
                conditions.push(format!("{column} = {}", quote(value)));
            }
        }
        let ages = [("<", self.older_than), (">=", self.newer_than)];
        for (op, age) in ages {
            if let Some(age) = age {
                conditions.push(format!(
                    "created_at {op} now() - INTERVAL '{} milliseconds'",
                    age.as_millis()
                ));
            }
        }
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    }
}

/// `text` as a SQL string literal: quotes doubled, so it stays one literal whatever it holds.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::{Filter, Status, quote};
    use std::time::Duration;

    #[test]
    fn values_stay_literals() {
        assert_eq!(quote("Notes"), "'Notes'");
        assert_eq!(quote("x' OR '1'='1"), "'x'' OR ''1''=''1'");
        assert_eq!(quote(r"a\'b"), r"'a\''b'");
    }

    #[test]
    fn filters_become_a_where_clause() {
        assert_eq!(Filter::default().where_clause(), "");
        let filter = Filter {
            service: Some("Sleeper".into()),
            handler: Some("it's".into()),
            status: Some(Status::BackingOff),
            older_than: Some(Duration::from_secs(600)),
            ..Filter::default()
        };
        assert!(!filter.is_empty());
        assert_eq!(
            filter.where_clause(),
            " WHERE target_service_name = 'Sleeper' AND target_handler_name = 'it''s' AND \
             status = 'backing-off' AND created_at < now() - INTERVAL '600000 milliseconds'"
        );
    }
}

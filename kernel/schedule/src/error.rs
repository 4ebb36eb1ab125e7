//! Why a schedule's spec was refused.

/// A spec that cannot be used, with what is wrong in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not have 5 or 6 fields and is no known alias.
    #[error(
        "cron expression `{expression}` has {fields} fields; expected 5 (minute hour day-of-month month day-of-week), 6 (seconds first) or an alias such as @hourly"
    )]
    FieldCount { expression: String, fields: usize },
    /// One field is malformed or out of range.
    #[error("cron {field} field `{value}`: {reason}")]
    Field {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The alias is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.
    #[error(
        "unknown cron alias `{0}`; known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
    )]
    Alias(String),
    /// The time zone is not in the IANA database.
    #[error("unknown time zone `{0}`; expected an IANA name such as Europe/Berlin or UTC")]
    Zone(String),
    /// The expression matches no time in the years ahead (such as the 30th of February).
    #[error("cron expression `{0}` never fires")]
    Never(String),
    /// An interval of zero, or one too long to count in milliseconds.
    #[error("interval of {0} ms: expected at least 1 ms and at most a year")]
    Interval(u64),
}

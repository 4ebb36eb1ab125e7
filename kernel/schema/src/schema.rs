//! What the registry knows about a deployment, its services and their handlers, and the defaults a
//! service gets when neither its manifest nor an operator says otherwise.

use crate::DeploymentId;
use holdfast_protocol::manifest::{HandlerKind, ProtocolMode, ServiceType};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A span of time in milliseconds; rendered for people as `1d`, `1m`, `500ms`, `1h 30m`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    /// One second.
    pub const SECOND: Self = Self(1_000);
    /// One minute.
    pub const MINUTE: Self = Self(60_000);
    /// One hour.
    pub const HOUR: Self = Self(3_600_000);
    /// One day.
    pub const DAY: Self = Self(86_400_000);
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 5] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
            (1, "ms"),
        ];
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        let mut first = true;
        for (size, unit) in UNITS {
            let count = rest / size;
            if count == 0 {
                continue;
            }
            rest %= size;
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{count}{unit}")?;
            first = false;
        }
        Ok(())
    }
}

/// A wall-clock instant in milliseconds since the Unix epoch, taken from the log command (never
/// from this node's clock, so every replica records the same value).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

/// How long a completed invocation's result stays retrievable by idempotency key (24 h).
pub const DEFAULT_IDEMPOTENCY_RETENTION: Millis = Millis::DAY;
/// How long a completed invocation's journal is kept (24 h).
pub const DEFAULT_JOURNAL_RETENTION: Millis = Millis::DAY;
/// How long a completed workflow's result is kept (24 h); workflows only.
pub const DEFAULT_WORKFLOW_COMPLETION_RETENTION: Millis = Millis::DAY;
/// A silent attempt is asked to suspend after this long (60 s).
pub const DEFAULT_INACTIVITY_TIMEOUT: Millis = Millis::MINUTE;
/// An attempt that ignored the suspension request is aborted after this long (600 s).
pub const DEFAULT_ABORT_TIMEOUT: Millis = Millis(600_000);

/// What happens to an invocation whose retries are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnMaxAttempts {
    /// Keep the invocation and its journal; an operator resumes it.
    Pause,
    /// Fail the invocation; its caller gets the last error.
    Kill,
}

/// Exponential backoff between attempts of a failing invocation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial_interval: Millis,
    /// Each further delay is the previous one times this factor.
    pub exponentiation_factor: f64,
    /// Upper bound of any single delay.
    pub max_interval: Millis,
    /// Attempts before `on_max_attempts` applies; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// What to do once the attempts are used up.
    pub on_max_attempts: OnMaxAttempts,
}

impl Default for RetryPolicy {
    /// 50 ms doubling up to 60 s, 70 attempts, then pause.
    fn default() -> Self {
        Self {
            initial_interval: Millis(50),
            exponentiation_factor: 2.0,
            max_interval: Millis::MINUTE,
            max_attempts: Some(70),
            on_max_attempts: OnMaxAttempts::Pause,
        }
    }
}

/// Per-handler replacements for fields of the service's [`RetryPolicy`]; `None` keeps the service's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryOverrides {
    /// Replaces [`RetryPolicy::initial_interval`].
    pub initial_interval: Option<Millis>,
    /// Replaces [`RetryPolicy::exponentiation_factor`].
    pub exponentiation_factor: Option<f64>,
    /// Replaces [`RetryPolicy::max_interval`].
    pub max_interval: Option<Millis>,
    /// Replaces [`RetryPolicy::max_attempts`].
    pub max_attempts: Option<u32>,
    /// Replaces [`RetryPolicy::on_max_attempts`].
    pub on_max_attempts: Option<OnMaxAttempts>,
}

impl RetryOverrides {
    /// The policy the invoker uses for this handler: the service's, with these fields replaced.
    pub fn apply_to(&self, policy: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            initial_interval: self.initial_interval.unwrap_or(policy.initial_interval),
            exponentiation_factor: self
                .exponentiation_factor
                .unwrap_or(policy.exponentiation_factor),
            max_interval: self.max_interval.unwrap_or(policy.max_interval),
            max_attempts: self.max_attempts.or(policy.max_attempts),
            on_max_attempts: self.on_max_attempts.unwrap_or(policy.on_max_attempts),
        }
    }
}

/// One handler of one service revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandlerSchema {
    /// Name used in invocation paths.
    pub name: String,
    /// How invocations of it are scheduled against their key.
    pub kind: HandlerKind,
    /// Content type its input must have.
    pub input: String,
    /// Content type of its output.
    pub output: String,
    /// Whether ingress may call it (otherwise only other services may).
    pub public: bool,
    /// Retry settings this handler overrides, if its manifest declares any.
    pub retry: Option<RetryOverrides>,
}

/// One revision of a service, as served by one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSchema {
    /// Name used in invocation paths.
    pub name: String,
    /// Stateless service, keyed object, or keyed workflow.
    pub ty: ServiceType,
    /// Counts the registrations that served this service, from 1.
    pub revision: u32,
    /// The deployment that serves this revision.
    pub deployment_id: DeploymentId,
    /// Its handlers, sorted by name.
    pub handlers: Vec<HandlerSchema>,
    /// Whether ingress may call it at all.
    pub public: bool,
    /// How long results stay retrievable by idempotency key.
    pub idempotency_retention: Millis,
    /// How long a completed invocation's journal is kept.
    pub journal_retention: Millis,
    /// How long a completed workflow's result is kept; `None` for other service types.
    pub workflow_completion_retention: Option<Millis>,
    /// Silence after which an attempt is asked to suspend.
    pub inactivity_timeout: Millis,
    /// Time after the suspension request at which the attempt is aborted.
    pub abort_timeout: Millis,
    /// Backoff between attempts, unless a handler overrides it.
    pub retry_policy: RetryPolicy,
}

impl ServiceSchema {
    /// The handler called `name` in this revision.
    pub fn handler(&self, name: &str) -> Option<&HandlerSchema> {
        self.handlers.iter().find(|h| h.name == name)
    }

    /// The retry policy the invoker applies to `handler`: the service's with its overrides.
    pub fn retry_policy_for(&self, handler: &HandlerSchema) -> RetryPolicy {
        handler
            .retry
            .map_or(self.retry_policy, |o| o.apply_to(self.retry_policy))
    }
}

/// One registered endpoint: where it listens and what it served when it was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Its identifier.
    pub id: DeploymentId,
    /// Where the invoker reaches it, exactly as registered.
    pub uri: String,
    /// When it was registered, from the registration command.
    pub created_at: Timestamp,
    /// Registration order within the registry (the command's clock may not be monotonic).
    pub sequence: u64,
    /// The newer deployment that replaced it at the same uri; it is then kept only for the
    /// invocations pinned to it. May name a deployment removed since.
    pub superseded_by: Option<DeploymentId>,
    /// Lowest protocol version the endpoint speaks.
    pub min_protocol_version: u32,
    /// Highest protocol version the endpoint speaks.
    pub max_protocol_version: u32,
    /// Modes the endpoint serves.
    pub protocol_modes: Vec<ProtocolMode>,
    /// The service revisions it serves, sorted by name.
    pub services: Vec<ServiceSchema>,
}

impl Deployment {
    /// The service called `name` as this deployment serves it (used for pinned invocations).
    pub fn service(&self, name: &str) -> Option<&ServiceSchema> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The mode the invoker should use: the bidirectional stream when offered, as it lets the
    /// kernel push completions into a running attempt.
    pub fn preferred_mode(&self) -> Option<ProtocolMode> {
        if self.protocol_modes.contains(&ProtocolMode::Stream) {
            Some(ProtocolMode::Stream)
        } else {
            self.protocol_modes.first().copied()
        }
    }
}

/// Operator changes to a service's settings; `None` leaves a setting as it is. They stick to the
/// service name, so later revisions inherit them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePatch {
    /// Expose the service to ingress, or not.
    pub public: Option<bool>,
    /// New idempotency retention.
    pub idempotency_retention: Option<Millis>,
    /// New journal retention.
    pub journal_retention: Option<Millis>,
    /// New workflow completion retention (workflows only).
    pub workflow_completion_retention: Option<Millis>,
    /// New inactivity timeout.
    pub inactivity_timeout: Option<Millis>,
    /// New abort timeout.
    pub abort_timeout: Option<Millis>,
}

impl ServicePatch {
    /// Adds `newer` on top of `self`: fields `newer` sets win.
    pub(crate) fn merge(&mut self, newer: &Self) {
        self.public = newer.public.or(self.public);
        self.idempotency_retention = newer.idempotency_retention.or(self.idempotency_retention);
        self.journal_retention = newer.journal_retention.or(self.journal_retention);
        self.workflow_completion_retention = newer
            .workflow_completion_retention
            .or(self.workflow_completion_retention);
        self.inactivity_timeout = newer.inactivity_timeout.or(self.inactivity_timeout);
        self.abort_timeout = newer.abort_timeout.or(self.abort_timeout);
    }

    /// Writes the fields this patch sets into `schema`.
    pub(crate) fn overlay(&self, schema: &mut ServiceSchema) {
        if let Some(public) = self.public {
            schema.public = public;
        }
        if let Some(value) = self.idempotency_retention {
            schema.idempotency_retention = value;
        }
        if let Some(value) = self.journal_retention {
            schema.journal_retention = value;
        }
        if let (Some(value), Some(slot)) = (
            self.workflow_completion_retention,
            schema.workflow_completion_retention.as_mut(),
        ) {
            *slot = value;
        }
        if let Some(value) = self.inactivity_timeout {
            schema.inactivity_timeout = value;
        }
        if let Some(value) = self.abort_timeout {
            schema.abort_timeout = value;
        }
    }

    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_render_like_the_admin_api() {
        let cases = [
            (0, "0s"),
            (50, "50ms"),
            (500, "500ms"),
            (1_000, "1s"),
            (60_000, "1m"),
            (600_000, "10m"),
            (90_000, "1m 30s"),
            (86_400_000, "1d"),
            (90_061_001, "1d 1h 1m 1s 1ms"),
        ];
        for (ms, text) in cases {
            assert_eq!(Millis(ms).to_string(), text);
        }
    }

    #[test]
    fn retry_overrides_replace_only_what_they_set() {
        let overrides = RetryOverrides {
            max_attempts: Some(3),
            on_max_attempts: Some(OnMaxAttempts::Kill),
            ..RetryOverrides::default()
        };
        let policy = overrides.apply_to(RetryPolicy::default());
        assert_eq!(policy.max_attempts, Some(3));
        assert_eq!(policy.on_max_attempts, OnMaxAttempts::Kill);
        assert_eq!(policy.initial_interval, Millis(50));
        assert_eq!(policy.max_interval, Millis(60_000));
    }

    #[test]
    fn default_retry_policy_matches_the_documented_defaults() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.initial_interval, Millis(50));
        assert_eq!(policy.exponentiation_factor, 2.0);
        assert_eq!(policy.max_interval, Millis(60_000));
        assert_eq!(policy.max_attempts, Some(70));
        assert_eq!(policy.on_max_attempts, OnMaxAttempts::Pause);
    }
}

//! What the registry knows about a deployment, its services and their handlers, and the defaults a
//! service gets when neither its manifest nor an operator says otherwise.

use crate::DeploymentId;
use holdfast_protocol::manifest::{HandlerKind, ProtocolMode, ServiceType};
use holdfast_types::RetryPolicy;
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

/// The UTC calendar parts of a [`Timestamp`], for rendering it in the forms clients expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Proleptic Gregorian year.
    pub year: u64,
    /// Month, 1..=12.
    pub month: u64,
    /// Day of the month, 1..=31.
    pub day: u64,
    /// Hour, 0..=23.
    pub hour: u64,
    /// Minute, 0..=59.
    pub minute: u64,
    /// Second, 0..=59.
    pub second: u64,
    /// Millisecond, 0..=999.
    pub millis: u64,
}

impl Timestamp {
    /// The instant in RFC 3339, UTC, to the millisecond: `2026-12-05T11:00:00.000Z`.
    pub fn rfc3339(self) -> String {
        let c = self.civil();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
        )
    }

    /// Splits the timestamp into its UTC calendar parts.
    pub fn civil(self) -> Civil {
        const DAY_MS: u64 = 86_400_000;
        let (days, in_day) = (self.0 / DAY_MS, self.0 % DAY_MS);
        // Count from 0000-03-01 so that the leap day ends each 4/100/400-year cycle.
        let shifted = days + 719_468;
        let era = shifted / 146_097;
        let day_of_era = shifted % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        Civil {
            year: year_of_era + era * 400 + u64::from(month <= 2),
            month,
            day,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1_000 % 60,
            millis: in_day % 1_000,
        }
    }
}

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

pub use holdfast_types::OnMaxAttempts;

/// Retry policy fields declared by a service or a handler in its manifest; `None` keeps the value
/// of the next level (handler > service > the node's `[invocation]` configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryOverrides {
    /// Replaces the delay before the first retry.
    #[serde(default)]
    pub initial_interval: Option<Millis>,
    /// Replaces the factor between consecutive delays.
    #[serde(default)]
    pub exponentiation_factor: Option<f64>,
    /// Replaces the upper bound of a delay.
    #[serde(default)]
    pub max_interval: Option<Millis>,
    /// Replaces the number of attempts before `on_max_attempts` applies.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Replaces what happens once the attempts are used up.
    #[serde(default)]
    pub on_max_attempts: Option<OnMaxAttempts>,
}

impl RetryOverrides {
    /// `policy` with the fields these overrides set replaced.
    pub fn apply_to(&self, policy: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            initial_interval_ms: self
                .initial_interval
                .map_or(policy.initial_interval_ms, |m| m.0),
            factor: self.exponentiation_factor.unwrap_or(policy.factor),
            max_interval_ms: self.max_interval.map_or(policy.max_interval_ms, |m| m.0),
            max_attempts: self.max_attempts.unwrap_or(policy.max_attempts),
            on_max_attempts: self.on_max_attempts.unwrap_or(policy.on_max_attempts),
        }
    }
}

/// What an attempt of a handler runs with: its retry policy and its timeouts. The node's
/// configuration gives one for everything; [`ServiceSchema::attempt_policy`] refines it for a
/// handler with what its manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// Backoff between failed attempts, then pause or kill.
    pub retry: RetryPolicy,
    /// Silence after which an attempt is asked to suspend.
    pub inactivity_timeout: Millis,
    /// Time after the suspension request at which the attempt is aborted.
    pub abort_timeout: Millis,
}

impl Default for AttemptPolicy {
    /// The documented defaults: 50 ms doubling up to 60 s, 70 attempts then pause; 60 s
    /// inactivity, 600 s abort.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            abort_timeout: DEFAULT_ABORT_TIMEOUT,
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
    /// Inactivity timeout this handler's manifest declares, over the service's.
    #[serde(default)]
    pub inactivity_timeout: Option<Millis>,
    /// Abort timeout this handler's manifest declares, over the service's.
    #[serde(default)]
    pub abort_timeout: Option<Millis>,
    /// Schedules this handler's manifest declares (see [`crate::Schedule::declared`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<holdfast_protocol::manifest::HandlerSchedule>,
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
    /// Silence after which an attempt is asked to suspend, as the manifest or an operator set
    /// it; `None`: the node's configured value.
    #[serde(default)]
    pub inactivity_timeout: Option<Millis>,
    /// Time after the suspension request at which the attempt is aborted, as the manifest or an
    /// operator set it; `None`: the node's configured value.
    #[serde(default)]
    pub abort_timeout: Option<Millis>,
    /// Retry policy fields the manifest declares for the whole service (handlers may override
    /// them); unset fields keep the node's configured values.
    #[serde(default)]
    pub retry_policy: RetryOverrides,
}

impl ServiceSchema {
    /// The handler called `name` in this revision.
    pub fn handler(&self, name: &str) -> Option<&HandlerSchema> {
        self.handlers.iter().find(|h| h.name == name)
    }

    /// The retry policy of `handler`'s invocations: `node`'s, with the fields this service
    /// declares replaced, then those the handler declares.
    pub fn retry_policy_for(&self, handler: &HandlerSchema, node: RetryPolicy) -> RetryPolicy {
        let service = self.retry_policy.apply_to(node);
        handler.retry.map_or(service, |o| o.apply_to(service))
    }

    /// What an attempt of `handler` runs with: handler declarations over service declarations
    /// (or operator settings) over the node's configuration `node`.
    pub fn attempt_policy(&self, handler: &HandlerSchema, node: &AttemptPolicy) -> AttemptPolicy {
        AttemptPolicy {
            retry: self.retry_policy_for(handler, node.retry),
            inactivity_timeout: handler
                .inactivity_timeout
                .or(self.inactivity_timeout)
                .unwrap_or(node.inactivity_timeout),
            abort_timeout: handler
                .abort_timeout
                .or(self.abort_timeout)
                .unwrap_or(node.abort_timeout),
        }
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
    /// The SDK and version the endpoint declared in its manifest, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
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
            schema.inactivity_timeout = Some(value);
        }
        if let Some(value) = self.abort_timeout {
            schema.abort_timeout = Some(value);
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
    fn timestamps_render_as_rfc3339() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(951_782_400_000).rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp(951_868_799_999).rfc3339(),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            Timestamp(1_709_251_199_000).rfc3339(),
            "2024-02-29T23:59:59.000Z"
        );
        assert_eq!(
            Timestamp(1_798_306_745_860).rfc3339(),
            "2026-12-26T17:39:05.860Z"
        );
        assert_eq!(
            Timestamp(4_102_444_800_000).rfc3339(),
            "2100-01-01T00:00:00.000Z"
        );
    }

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
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.on_max_attempts, OnMaxAttempts::Kill);
        assert_eq!(policy.initial_interval_ms, 50);
        assert_eq!(policy.max_interval_ms, 60_000);
    }

    #[test]
    fn default_attempt_policy_matches_the_documented_defaults() {
        let policy = AttemptPolicy::default();
        assert_eq!(policy.retry.initial_interval_ms, 50);
        assert_eq!(policy.retry.factor, 2.0);
        assert_eq!(policy.retry.max_interval_ms, 60_000);
        assert_eq!(policy.retry.max_attempts, 70);
        assert_eq!(policy.retry.on_max_attempts, OnMaxAttempts::Pause);
        assert_eq!(policy.inactivity_timeout, Millis(60_000));
        assert_eq!(policy.abort_timeout, Millis(600_000));
    }

    fn handler(retry: Option<RetryOverrides>, inactivity: Option<Millis>) -> HandlerSchema {
        HandlerSchema {
            name: "h".into(),
            kind: HandlerKind::Shared,
            input: "application/json".into(),
            output: "application/json".into(),
            public: true,
            retry,
            inactivity_timeout: inactivity,
            abort_timeout: None,
            schedules: Vec::new(),
        }
    }

    fn service(retry: RetryOverrides, inactivity: Option<Millis>) -> ServiceSchema {
        ServiceSchema {
            name: "S".into(),
            ty: ServiceType::Service,
            revision: 1,
            deployment_id: DeploymentId::from_seed(1),
            handlers: vec![handler(None, None)],
            public: true,
            idempotency_retention: Millis::DAY,
            journal_retention: Millis::DAY,
            workflow_completion_retention: None,
            inactivity_timeout: inactivity,
            abort_timeout: None,
            retry_policy: retry,
        }
    }

    #[test]
    fn attempt_policy_is_handler_over_service_over_node() {
        let node = AttemptPolicy {
            retry: RetryPolicy {
                initial_interval_ms: 7,
                max_attempts: 9,
                ..RetryPolicy::default()
            },
            inactivity_timeout: Millis(1_000),
            abort_timeout: Millis(2_000),
        };
        let bare = service(RetryOverrides::default(), None);
        assert_eq!(bare.attempt_policy(&handler(None, None), &node), node);

        let svc = service(
            RetryOverrides {
                max_attempts: Some(3),
                exponentiation_factor: Some(1.5),
                ..RetryOverrides::default()
            },
            Some(Millis(500)),
        );
        let plain = svc.attempt_policy(&handler(None, None), &node);
        assert_eq!(plain.retry.max_attempts, 3);
        assert_eq!(plain.retry.factor, 1.5);
        assert_eq!(plain.retry.initial_interval_ms, 7);
        assert_eq!(plain.inactivity_timeout, Millis(500));
        assert_eq!(plain.abort_timeout, Millis(2_000));

        let specific = handler(
            Some(RetryOverrides {
                max_attempts: Some(1),
                on_max_attempts: Some(OnMaxAttempts::Kill),
                ..RetryOverrides::default()
            }),
            Some(Millis(50)),
        );
        let own = svc.attempt_policy(&specific, &node);
        assert_eq!(own.retry.max_attempts, 1);
        assert_eq!(own.retry.on_max_attempts, OnMaxAttempts::Kill);
        assert_eq!(own.retry.factor, 1.5);
        assert_eq!(own.inactivity_timeout, Millis(50));
    }
}

//! Schedules: a handler invoked with a fixed input on a cron expression or an interval. The
//! registry holds their definitions; the partition a schedule's name routes to fires its ticks
//! and records them (see `holdfast_fsm`'s `FireSchedule`).

use crate::{Millis, ServiceSchema, Timestamp};
use holdfast_protocol::manifest::ServiceType;
use holdfast_schedule::{CatchUp, ScheduleError, Spec};
use holdfast_types::Overlap;
use serde::{Deserialize, Serialize};

/// The most missed ticks a schedule may ask to fire after downtime.
pub const MAX_CATCH_UP: u32 = 1_000;

/// Longest schedule name, in bytes.
const MAX_NAME: usize = 128;

/// When a schedule fires, as its author wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleSpec {
    /// A cron expression (5 or 6 fields, or an alias such as `@hourly`) read in an IANA zone.
    Cron {
        /// The expression.
        expression: String,
        /// The time zone, e.g. `Europe/Berlin` or `UTC`.
        zone: String,
    },
    /// A fixed interval, at its multiples since the Unix epoch.
    Every {
        /// The interval.
        period: Millis,
    },
}

impl ScheduleSpec {
    /// The spec, ready to compute ticks; refuses what cannot fire.
    pub fn parse(&self) -> Result<Spec, ScheduleError> {
        match self {
            Self::Cron { expression, zone } => Spec::cron(expression, zone),
            Self::Every { period } => Spec::every(period.0),
        }
    }
}

/// A schedule: what it invokes, with what, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its name: 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// The service, virtual object or workflow invoked.
    pub service: String,
    /// The handler invoked.
    pub handler: String,
    /// The object or workflow key; none for a service.
    pub key: Option<String>,
    /// The request body each tick sends (JSON), if any.
    #[serde(with = "serde_bytes")]
    pub input: Option<Vec<u8>>,
    /// When it fires.
    pub spec: ScheduleSpec,
    /// What fires of the ticks missed while no leader could fire them.
    pub catch_up: CatchUp,
    /// What a tick does while an earlier tick's invocation still runs.
    pub overlap: Overlap,
    /// A paused schedule fires nothing; its ticks while paused are not due when it resumes.
    pub paused: bool,
    /// Ticks at or before this instant are never due: when the schedule was created, last
    /// resumed or given a new spec.
    pub since: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Declared in code by its handler (the discovery manifest) rather than through the admin
    /// API: it follows the service's registrations, and its definition is the code's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub declared: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Missed ticks `catch_up: "all"` fires when no `catch_up_max` is given.
pub const DEFAULT_CATCH_UP_MAX: u32 = 10;

/// Reads a catch-up policy as the admin API and manifests write it.
pub fn catch_up_of(name: Option<&str>, max: Option<u32>) -> Result<CatchUp, String> {
    match (name, max) {
        (None | Some("skip"), None) => Ok(CatchUp::Skip),
        (Some("latest"), None) => Ok(CatchUp::Latest),
        (Some("all"), max) => Ok(CatchUp::All {
            max: max.unwrap_or(DEFAULT_CATCH_UP_MAX),
        }),
        (None | Some("skip" | "latest"), Some(_)) => {
            Err("catch_up_max applies to catch_up \"all\" only".into())
        }
        (Some(other), _) => Err(format!(
            "catch_up `{other}`: expected \"skip\", \"latest\" or \"all\""
        )),
    }
}

impl Schedule {
    /// The schedule `declaration`, the `index`-th of handler `handler` of `service` (whose
    /// deployment was created `at`), or why it is not one.
    pub fn declared(
        service: &ServiceSchema,
        handler: &str,
        index: usize,
        declaration: &holdfast_protocol::manifest::HandlerSchedule,
        at: Timestamp,
    ) -> Result<Schedule, String> {
        let name = match (&declaration.name, index) {
            (Some(name), _) => name.clone(),
            (None, 0) => format!("{}.{handler}", service.name),
            (None, n) => format!("{}.{handler}.{}", service.name, n + 1),
        };
        let what = format!("schedule {name:?} of {}/{handler}", service.name);
        let spec = match (&declaration.cron, declaration.every_ms) {
            (Some(expression), None) => ScheduleSpec::Cron {
                expression: expression.clone(),
                zone: declaration.timezone.clone().unwrap_or_else(|| "UTC".into()),
            },
            (None, Some(every)) if declaration.timezone.is_none() => ScheduleSpec::Every {
                period: Millis(every),
            },
            (None, Some(_)) => return Err(format!("{what}: timezone applies to cron only")),
            _ => return Err(format!("{what}: give either cron or every")),
        };
        let catch_up = catch_up_of(declaration.catch_up.as_deref(), declaration.catch_up_max)
            .map_err(|e| format!("{what}: {e}"))?;
        let overlap = match declaration.overlap.as_deref() {
            None | Some("skip") => Overlap::Skip,
            Some("queue") => Overlap::Queue,
            Some("allow") => Overlap::Allow,
            Some(other) => {
                return Err(format!(
                    "{what}: overlap `{other}`: expected \"skip\", \"queue\" or \"allow\""
                ));
            }
        };
        let input = declaration
            .input
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| format!("{what}: input: {e}"))?;
        let schedule = Schedule {
            name,
            service: service.name.clone(),
            handler: handler.to_owned(),
            key: declaration.key.clone(),
            input,
            spec,
            catch_up,
            overlap,
            paused: false,
            since: at,
            created_at: at,
            updated_at: at,
            declared: true,
        };
        if let Some(problem) = schedule.invalid().or_else(|| schedule.mismatch(service)) {
            return Err(format!("{what}: {problem}"));
        }
        Ok(schedule)
    }

    /// Whether `other` invokes the same handler with the same input on the same ticks under the
    /// same policies (its state — paused, since, times — aside).
    pub fn same_definition(&self, other: &Schedule) -> bool {
        self.service == other.service
            && self.handler == other.handler
            && self.key == other.key
            && self.input == other.input
            && self.spec == other.spec
            && self.catch_up == other.catch_up
            && self.overlap == other.overlap
    }
}

/// What is wrong with `name` as the name of a `what` (schedule, limit): 1 to [`MAX_NAME`]
/// characters of `A-Z a-z 0-9 . _ -`, so it fits in paths and metric labels as it is.
pub(crate) fn name_problem(what: &str, name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| {
        format!(
            "{what} name {name:?} is not 1 to {MAX_NAME} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )
    })
}

impl Schedule {
    /// What is wrong with the definition on its own, before the registry compares it with the
    /// services (`None`: nothing).
    pub fn invalid(&self) -> Option<String> {
        if let Some(problem) = name_problem("schedule", &self.name) {
            return Some(problem);
        }
        if let Err(e) = self.spec.parse() {
            return Some(e.to_string());
        }
        if let CatchUp::All { max } = self.catch_up
            && !(1..=MAX_CATCH_UP).contains(&max)
        {
            return Some(format!(
                "catch_up all of {max} ticks: expected 1 to {MAX_CATCH_UP}"
            ));
        }
        None
    }

    /// Its next tick after `now_ms` (Unix milliseconds): none while paused.
    pub fn next_fire(&self, now_ms: u64) -> Option<u64> {
        if self.paused {
            return None;
        }
        self.spec.parse().ok()?.next_after(now_ms.max(self.since.0))
    }

    /// The key tick `tick_ms` invokes: the schedule's key with `{tick}` replaced by the tick in
    /// RFC 3339 (UTC, to the millisecond) and `{tick_ms}` by its Unix milliseconds, so a
    /// workflow, which runs once per key, runs once per tick.
    pub fn key_at(&self, tick_ms: u64) -> Option<String> {
        self.key.as_ref().map(|key| {
            key.replace("{tick_ms}", &tick_ms.to_string())
                .replace("{tick}", &Timestamp(tick_ms).rfc3339())
        })
    }

    /// The idempotency key of tick `tick_ms`'s invocation: the schedule's name and the tick, so
    /// no tick starts two invocations.
    pub fn idempotency_key(&self, tick_ms: u64) -> String {
        format!("schedule/{}/{tick_ms}", self.name)
    }

    /// The partition that fires this schedule, among `partitions`.
    pub fn partition(&self, partitions: u32) -> holdfast_types::PartitionId {
        holdfast_types::routing::partition_for_key(
            holdfast_types::routing::schedule_partition_key(&self.name),
            partitions,
        )
    }

    /// What is wrong with the target given the live service (`None`: nothing).
    pub fn mismatch(&self, service: &ServiceSchema) -> Option<String> {
        if service.handler(&self.handler).is_none() {
            return Some(format!(
                "service '{}' has no handler '{}'",
                self.service, self.handler
            ));
        }
        match (service.ty, &self.key) {
            (ServiceType::Service, Some(_)) => Some(format!(
                "service '{}' is a stateless service: a schedule of it takes no key",
                self.service
            )),
            (ServiceType::Object | ServiceType::Workflow, None) => Some(format!(
                "'{}' is keyed: a schedule of it needs a key",
                self.service
            )),
            (ServiceType::Workflow, Some(key)) if !key.contains("{tick") => Some(format!(
                "'{}' is a workflow, which runs once per key: its key must contain {{tick}} or {{tick_ms}}",
                self.service
            )),
            _ => None,
        }
    }
}

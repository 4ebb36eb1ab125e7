//! `sys_service`, `sys_deployment`, `sys_schedule` and `sys_limit`: the registry as of the query. The
//! registry is small and in memory, so each scan builds one batch and lets a [`MemTable`] serve
//! it.

use super::Whole;
use super::columns;
use crate::scan::service_type;
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result as DfResult;
use holdfast_schema::Registry;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

columns! {
    enum ServiceCol {
        Name = "name": Utf8 [required],
        Revision = "revision": U64,
        Public = "public": Bool,
        Ty = "ty": Utf8,
        DeploymentId = "deployment_id": Utf8,
    }
}

columns! {
    enum DeploymentCol {
        Id = "id": Utf8 [required],
        Ty = "ty": Utf8,
        Endpoint = "endpoint": Utf8,
        CreatedAt = "created_at": Time,
        MinServiceProtocolVersion = "min_service_protocol_version": U32,
        MaxServiceProtocolVersion = "max_service_protocol_version": U32,
        Services = "services": Utf8,
        SdkVersion = "sdk_version": Utf8,
    }
}

columns! {
    enum ScheduleCol {
        Name = "name": Utf8 [required],
        ServiceName = "service_name": Utf8 [required],
        HandlerName = "handler_name": Utf8 [required],
        ServiceKey = "service_key": Utf8,
        Cron = "cron": Utf8,
        Timezone = "timezone": Utf8,
        EveryMs = "every_ms": U64,
        CatchUp = "catch_up": Utf8 [required],
        Overlap = "overlap": Utf8 [required],
        Paused = "paused": Bool [required],
        Declared = "declared": Bool [required],
        NextFireAt = "next_fire_at": Time,
        CreatedAt = "created_at": Time,
        UpdatedAt = "updated_at": Time,
    }
}

columns! {
    enum LimitCol {
        Name = "name": Utf8 [required],
        ServiceName = "service_name": Utf8 [required],
        HandlerName = "handler_name": Utf8,
        KeyPrefix = "key_prefix": Utf8,
        MaxConcurrency = "max_concurrency": U32,
        Rate = "rate": Utf8,
        Burst = "burst": U32,
    }
}

/// Which registry table.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Service,
    Deployment,
    Schedule,
    Limit,
}

/// A table over the current registry.
pub(crate) struct RegistryTable {
    kind: Kind,
    schema: SchemaRef,
    registry: watch::Receiver<Arc<Registry>>,
}

impl fmt::Debug for RegistryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryTable")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// `sys_service` and `sys_deployment`, by name.
pub(crate) fn registry_tables(
    registry: &watch::Receiver<Arc<Registry>>,
) -> Vec<(&'static str, RegistryTable)> {
    vec![
        (
            "sys_service",
            RegistryTable {
                kind: Kind::Service,
                schema: ServiceCol::schema(),
                registry: registry.clone(),
            },
        ),
        (
            "sys_deployment",
            RegistryTable {
                kind: Kind::Deployment,
                schema: DeploymentCol::schema(),
                registry: registry.clone(),
            },
        ),
        (
            "sys_schedule",
            RegistryTable {
                kind: Kind::Schedule,
                schema: ScheduleCol::schema(),
                registry: registry.clone(),
            },
        ),
        (
            "sys_limit",
            RegistryTable {
                kind: Kind::Limit,
                schema: LimitCol::schema(),
                registry: registry.clone(),
            },
        ),
    ]
}

impl RegistryTable {
    fn rows(&self, registry: &Registry) -> DfResult<RecordBatch> {
        let columns: Vec<ArrayRef> = match self.kind {
            Kind::Service => {
                let services = registry.services();
                vec![
                    Arc::new(StringArray::from_iter_values(
                        services.iter().map(|s| s.name.as_str()),
                    )),
                    Arc::new(UInt64Array::from_iter_values(
                        services.iter().map(|s| u64::from(s.revision)),
                    )),
                    Arc::new(BooleanArray::from_iter(
                        services.iter().map(|s| Some(s.public)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        services.iter().map(|s| service_type(s.ty)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        services.iter().map(|s| s.deployment_id.to_string()),
                    )),
                ]
            }
            Kind::Deployment => {
                let deployments = registry.deployments();
                let millis = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
                vec![
                    Arc::new(StringArray::from_iter_values(
                        deployments.iter().map(|d| d.id.to_string()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        deployments.iter().map(|_| "http"),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        deployments.iter().map(|d| d.uri.as_str()),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            deployments.iter().map(|d| millis(d.created_at.0)),
                        )
                        .with_timezone(crate::scan::UTC),
                    ),
                    Arc::new(UInt32Array::from_iter_values(
                        deployments.iter().map(|d| d.min_protocol_version),
                    )),
                    Arc::new(UInt32Array::from_iter_values(
                        deployments.iter().map(|d| d.max_protocol_version),
                    )),
                    Arc::new(StringArray::from_iter_values(deployments.iter().map(|d| {
                        d.services
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    }))),
                    Arc::new(StringArray::from_iter(
                        deployments.iter().map(|d| d.sdk_version.as_deref()),
                    )),
                ]
            }
            Kind::Schedule => schedule_columns(registry),
            Kind::Limit => {
                let limits: Vec<&holdfast_types::Limit> = registry.limits().collect();
                let strings = |f: &dyn Fn(&holdfast_types::Limit) -> Option<String>| -> ArrayRef {
                    Arc::new(StringArray::from_iter(limits.iter().map(|l| f(l))))
                };
                let numbers = |f: &dyn Fn(&holdfast_types::Limit) -> Option<u32>| -> ArrayRef {
                    Arc::new(UInt32Array::from_iter(limits.iter().map(|l| f(l))))
                };
                vec![
                    strings(&|l| Some(l.name.clone())),
                    strings(&|l| Some(l.service.clone())),
                    strings(&|l| l.handler.clone()),
                    strings(&|l| l.key_prefix.clone()),
                    numbers(&|l| l.max_concurrency),
                    strings(&|l| l.rate.map(|r| r.display())),
                    numbers(&|l| l.rate.map(|r| r.burst)),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// A time column in UTC from Unix milliseconds.
fn times(values: impl Iterator<Item = Option<u64>>) -> ArrayRef {
    let millis = values.map(|ms| ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)));
    Arc::new(TimestampMillisecondArray::from_iter(millis).with_timezone(crate::scan::UTC))
}

/// `sys_schedule`'s columns: each schedule's definition and, unless paused, its next tick from
/// now.
fn schedule_columns(registry: &Registry) -> Vec<ArrayRef> {
    use holdfast_schedule::CatchUp;
    use holdfast_schema::ScheduleSpec;
    let schedules: Vec<&holdfast_schema::Schedule> = registry.schedules().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let cron = |s: &&holdfast_schema::Schedule| match &s.spec {
        ScheduleSpec::Cron { expression, zone } => Some((expression.clone(), zone.clone())),
        ScheduleSpec::Every { .. } => None,
    };
    let strings = |f: &dyn Fn(&holdfast_schema::Schedule) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(schedules.iter().map(|s| f(s))))
    };
    vec![
        strings(&|s| Some(s.name.clone())),
        strings(&|s| Some(s.service.clone())),
        strings(&|s| Some(s.handler.clone())),
        strings(&|s| s.key.clone()),
        strings(&|s| cron(&s).map(|(expression, _)| expression)),
        strings(&|s| cron(&s).map(|(_, zone)| zone)),
        Arc::new(UInt64Array::from_iter(schedules.iter().map(
            |s| match s.spec {
                ScheduleSpec::Every { period } => Some(period.0),
                ScheduleSpec::Cron { .. } => None,
            },
        ))),
        strings(&|s| {
            Some(match s.catch_up {
                CatchUp::All { max } => format!("all {max}"),
                other => other.name().to_owned(),
            })
        }),
        strings(&|s| Some(s.overlap.name().to_owned())),
        Arc::new(BooleanArray::from_iter(
            schedules.iter().map(|s| Some(s.paused)),
        )),
        Arc::new(BooleanArray::from_iter(
            schedules.iter().map(|s| Some(s.declared)),
        )),
        times(schedules.iter().map(|s| s.next_fire(now))),
        times(schedules.iter().map(|s| Some(s.created_at.0))),
        times(schedules.iter().map(|s| Some(s.updated_at.0))),
    ]
}

#[async_trait]
impl Whole for RegistryTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn batch(&self) -> DfResult<RecordBatch> {
        let registry = self.registry.borrow().clone();
        self.rows(&registry)
    }
}

//! `sys_service` and `sys_deployment`: the registry as of the query. The registry is small and
//! in memory, so each scan builds one batch and lets a [`MemTable`] serve it.

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

/// Which registry table.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Service,
    Deployment,
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
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
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

//! The tables: one module per partition table, plus the registry tables. Each partition table
//! declares its columns with [`columns!`], which gives an enum of the columns in schema order
//! (so a row matches on it exhaustively) and the arrow schema.

pub(crate) mod cluster;
mod idempotency;
mod inbox;
mod invocation;
mod journal;
mod keyed_status;
mod promise;
mod queue;
mod registry;
mod schedule_run;
mod state;

use crate::scan::{Cell, SysTable, timestamp};
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::Result as DfResult;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use holdfast_protocol::{Failure, Outcome};
use std::sync::Arc;

pub(crate) use registry::registry_tables;

/// A small table built whole at each scan (the registry's tables, the cluster's): its schema
/// and its rows as one batch.
#[async_trait]
pub(crate) trait Whole: Send + Sync + std::fmt::Debug + 'static {
    /// Every column.
    fn schema(&self) -> SchemaRef;
    /// Every row, as of now.
    async fn batch(&self) -> DfResult<RecordBatch>;
}

/// A [`Whole`] table as DataFusion sees it: built at each scan, filtered above it.
#[derive(Debug)]
pub(crate) struct WholeTable<T>(pub(crate) T);

#[async_trait]
impl<T: Whole> TableProvider for WholeTable<T> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.0.batch().await?;
        let table = MemTable::try_new(self.0.schema(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// The column types the tables use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Utf8,
    U64,
    U32,
    Bool,
    Time,
    Binary,
}

/// An arrow field of `ty`.
pub(crate) fn field(name: &str, ty: Ty, nullable: bool) -> Field {
    let data_type = match ty {
        Ty::Utf8 => DataType::Utf8,
        Ty::U64 => DataType::UInt64,
        Ty::U32 => DataType::UInt32,
        Ty::Bool => DataType::Boolean,
        Ty::Time => timestamp(),
        Ty::Binary => DataType::Binary,
    };
    Field::new(name, data_type, nullable)
}

/// Declares a table's columns: `Variant = "sql_name": Ty` (nullable) or
/// `Variant = "sql_name": Ty [required]` (NOT NULL), in schema order.
macro_rules! columns {
    ($vis:vis enum $name:ident { $($variant:ident = $sql:literal : $ty:ident $([$required:ident])?,)* }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($variant,)*
        }

        #[allow(dead_code)]
        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The column at `index` of the schema.
            fn at(index: usize) -> Option<Self> {
                Self::ALL.get(index).copied()
            }

            /// This column's index in the schema.
            fn index(self) -> usize {
                self as usize
            }

            /// The table's schema.
            fn schema() -> datafusion::arrow::datatypes::SchemaRef {
                std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                    $($crate::tables::field(
                        $sql,
                        $crate::tables::Ty::$ty,
                        columns!(@nullable $($required)?),
                    ),)*
                ]))
            }
        }
    };
    (@nullable) => { true };
    (@nullable required) => { false };
}
pub(crate) use columns;

/// Every partition table.
pub(crate) fn partition_tables() -> Vec<Arc<dyn SysTable>> {
    vec![
        Arc::new(invocation::InvocationTable::new(
            invocation::StatusNames::Operator,
        )),
        Arc::new(invocation::InvocationTable::new(
            invocation::StatusNames::Lifecycle,
        )),
        Arc::new(journal::JournalTable::new()),
        Arc::new(state::StateTable::new()),
        Arc::new(inbox::InboxTable::new()),
        Arc::new(keyed_status::KeyedStatusTable::new()),
        Arc::new(idempotency::IdempotencyTable::new()),
        Arc::new(promise::PromiseTable::new()),
        Arc::new(schedule_run::ScheduleRunTable::new()),
        Arc::new(queue::QueueTable::new()),
    ]
}

/// A failure as Restate renders it: `[code] message`.
pub(crate) fn failure_text(failure: &Failure) -> String {
    format!("[{}] {}", failure.code, failure.message)
}

/// Bytes as text if they are valid UTF-8.
pub(crate) fn utf8(bytes: &[u8]) -> Cell<'_> {
    Cell::opt_str(std::str::from_utf8(bytes).ok())
}

/// `success` or `failure`, for a completed outcome.
pub(crate) fn outcome_result(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Failure(_) => "failure",
        Outcome::Void | Outcome::Value(_) | Outcome::Keys(_) => "success",
    }
}

/// `Service/handler` or `Object/key/handler`.
pub(crate) fn target_text(service: &str, key: Option<&str>, handler: &str) -> String {
    match key {
        Some(key) => format!("{service}/{key}/{handler}"),
        None => format!("{service}/{handler}"),
    }
}

//! Which filters narrow a partition scan, and to what: equality on the routing columns picks the
//! partitions to read and the key range to read in each. Every pushed filter is `Inexact`, so
//! DataFusion still applies it to the rows a scan returns; the scan may only read fewer rows,
//! never return wrong ones.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use holdfast_types::{InvocationId, ObjectKey, PartitionId, routing};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The column holding a row's partition key, in every partition table.
pub(crate) const PARTITION_KEY: &str = "partition_key";

/// How a table's rows are routed and which key ranges it can read directly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routing {
    /// The column holding the row's invocation id: an id routes to its partition.
    pub id: Option<&'static str>,
    /// The columns holding the object's service name (aliases of each other).
    pub service: &'static [&'static str],
    /// The columns holding the object's key (aliases of each other).
    pub key: &'static [&'static str],
    /// The table can read only the rows of given invocation ids.
    pub by_id: bool,
    /// The table can read only one service's rows.
    pub by_service: bool,
    /// The table can read only the rows of one partition key.
    pub by_partition_key: bool,
}

/// What a scan reads inside each partition it visits; a remote scan ships it as it is (see
/// [`crate::remote`]), so the partition is read the same way wherever it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Lookup {
    /// The filters cannot match any row: read nothing.
    Empty,
    /// Only these invocations.
    Ids(Vec<InvocationId>),
    /// Only this object.
    Object(ObjectKey),
    /// Only this service's objects.
    Service(String),
    /// Only the rows of this partition key.
    PartitionKey(u64),
    /// The whole partition.
    Scan,
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lookup::Empty => "empty",
            Lookup::Ids(_) => "id",
            Lookup::Object(_) => "object",
            Lookup::Service(_) => "service",
            Lookup::PartitionKey(_) => "partition_key",
            Lookup::Scan => "scan",
        })
    }
}

/// The routing constraints found in a scan's filters (a conjunction).
#[derive(Debug, Default)]
pub(crate) struct Pushdown {
    ids: Option<BTreeSet<InvocationId>>,
    service: Option<String>,
    key: Option<String>,
    partition_key: Option<u64>,
    /// Two constraints contradict each other (or a literal cannot match): no row qualifies.
    contradiction: bool,
}

/// A column compared for equality with one or more literals.
struct Term<'a> {
    column: &'a str,
    values: Vec<&'a ScalarValue>,
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

/// `column = literal`, `literal = column` or `column IN (literal, …)`.
fn term(expr: &Expr) -> Option<Term<'_>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(column), other) | (other, Expr::Column(column)) => Some(Term {
                column: &column.name,
                values: vec![literal(other)?],
            }),
            _ => None,
        },
        Expr::InList(list) if !list.negated => match list.expr.as_ref() {
            Expr::Column(column) => Some(Term {
                column: &column.name,
                values: list.list.iter().map(literal).collect::<Option<_>>()?,
            }),
            _ => None,
        },
        _ => None,
    }
}

fn text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// An integer literal as a partition key; `Err` for one no partition key can equal (negative).
fn unsigned(value: &ScalarValue) -> Option<Result<u64, ()>> {
    let signed = |n: i64| u64::try_from(n).map_err(|_| ());
    Some(match value {
        ScalarValue::UInt64(Some(n)) => Ok(*n),
        ScalarValue::UInt32(Some(n)) => Ok(u64::from(*n)),
        ScalarValue::UInt16(Some(n)) => Ok(u64::from(*n)),
        ScalarValue::UInt8(Some(n)) => Ok(u64::from(*n)),
        ScalarValue::Int64(Some(n)) => signed(*n),
        ScalarValue::Int32(Some(n)) => signed(i64::from(*n)),
        ScalarValue::Int16(Some(n)) => signed(i64::from(*n)),
        ScalarValue::Int8(Some(n)) => signed(i64::from(*n)),
        _ => return None,
    })
}

impl Routing {
    /// Whether `expr` constrains a routing column in a way scans use.
    pub(crate) fn understands(&self, expr: &Expr) -> bool {
        split_conjunction(expr).into_iter().any(|part| {
            let Some(term) = term(part) else {
                return false;
            };
            let column = term.column;
            if Some(column) == self.id {
                return term.values.iter().all(|v| text(v).is_some());
            }
            if term.values.len() != 1 {
                return false;
            }
            let value = term.values[0];
            if self.service.contains(&column) || self.key.contains(&column) {
                return text(value).is_some();
            }
            column == PARTITION_KEY && unsigned(value).is_some()
        })
    }
}

impl Pushdown {
    /// Collects the routing constraints of `filters` (all of which must hold).
    pub(crate) fn from_filters(filters: &[Expr], routing: &Routing) -> Self {
        let mut out = Pushdown::default();
        for filter in filters {
            for part in split_conjunction(filter) {
                if let Some(term) = term(part) {
                    out.add(&term, routing);
                }
            }
        }
        out
    }

    fn add(&mut self, term: &Term<'_>, routing: &Routing) {
        let column = term.column;
        if Some(column) == routing.id {
            let Some(texts) = term
                .values
                .iter()
                .map(|v| text(v))
                .collect::<Option<Vec<_>>>()
            else {
                return;
            };
            // A string that is no id matches no row.
            let ids: BTreeSet<InvocationId> = texts.iter().filter_map(|t| t.parse().ok()).collect();
            self.ids = Some(match self.ids.take() {
                Some(known) => known.intersection(&ids).copied().collect(),
                None => ids,
            });
            return;
        }
        let [value] = term.values.as_slice() else {
            return;
        };
        if routing.service.contains(&column) {
            if let Some(service) = text(value) {
                self.merge_text(service, |p| &mut p.service);
            }
        } else if routing.key.contains(&column) {
            if let Some(key) = text(value) {
                self.merge_text(key, |p| &mut p.key);
            }
        } else if column == PARTITION_KEY {
            match unsigned(value) {
                Some(Ok(key)) => match self.partition_key {
                    Some(known) if known != key => self.contradiction = true,
                    _ => self.partition_key = Some(key),
                },
                Some(Err(())) => self.contradiction = true,
                None => {}
            }
        }
    }

    fn merge_text(&mut self, value: &str, slot: impl Fn(&mut Self) -> &mut Option<String>) {
        match slot(self) {
            Some(known) if known != value => self.contradiction = true,
            Some(_) => {}
            empty => *empty = Some(value.to_owned()),
        }
    }

    /// The object named by the service and key constraints, if both are given.
    fn object(&self) -> Option<ObjectKey> {
        Some(ObjectKey::new(self.service.clone()?, self.key.clone()?))
    }

    /// The partitions that can hold a matching row among `count`; `None` when any can.
    pub(crate) fn partitions(&self, count: u32) -> Option<BTreeSet<PartitionId>> {
        if self.contradiction {
            return Some(BTreeSet::new());
        }
        let mut narrowed: Option<BTreeSet<PartitionId>> = None;
        let mut narrow = |only: BTreeSet<PartitionId>| {
            narrowed = Some(match narrowed.take() {
                Some(known) => known.intersection(&only).copied().collect(),
                None => only,
            });
        };
        if let Some(ids) = &self.ids {
            narrow(ids.iter().map(|id| id.partition(count)).collect());
        }
        if let Some(object) = self.object() {
            narrow(BTreeSet::from([routing::partition_for_key(
                object.partition_key(),
                count,
            )]));
        }
        if let Some(key) = self.partition_key {
            narrow(BTreeSet::from([routing::partition_for_key(key, count)]));
        }
        narrowed
    }

    /// What to read inside each partition, given what the table can read directly.
    pub(crate) fn lookup(&self, routing: &Routing) -> Lookup {
        if self.contradiction || self.ids.as_ref().is_some_and(BTreeSet::is_empty) {
            return Lookup::Empty;
        }
        if let (Some(ids), true) = (&self.ids, routing.by_id) {
            return Lookup::Ids(ids.iter().copied().collect());
        }
        if let Some(object) = self.object() {
            return Lookup::Object(object);
        }
        if let (Some(service), true) = (&self.service, routing.by_service) {
            return Lookup::Service(service.clone());
        }
        if let (Some(key), true) = (self.partition_key, routing.by_partition_key) {
            return Lookup::PartitionKey(key);
        }
        Lookup::Scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    const ROUTING: Routing = Routing {
        id: Some("id"),
        service: &["service_name", "service"],
        key: &["service_key"],
        by_id: true,
        by_service: true,
        by_partition_key: true,
    };

    fn id(key: u64) -> InvocationId {
        InvocationId {
            partition_key: key,
            nonce: 1,
        }
    }

    #[test]
    fn an_id_routes_to_its_partition_and_reads_only_it() {
        let filters = [col("id").eq(lit(id(5).to_string()))];
        let pushdown = Pushdown::from_filters(&filters, &ROUTING);
        assert_eq!(
            pushdown.partitions(4),
            Some(BTreeSet::from([PartitionId(1)]))
        );
        assert_eq!(pushdown.lookup(&ROUTING), Lookup::Ids(vec![id(5)]));
        assert!(ROUTING.understands(&filters[0]));
    }

    #[test]
    fn service_and_key_name_one_object_in_either_order_and_alias() {
        let filters = [lit("k")
            .eq(col("service_key"))
            .and(col("service").eq(lit("Cart")))];
        let pushdown = Pushdown::from_filters(&filters, &ROUTING);
        let object = ObjectKey::new("Cart", "k");
        assert_eq!(pushdown.lookup(&ROUTING), Lookup::Object(object.clone()));
        assert_eq!(
            pushdown.partitions(8),
            Some(BTreeSet::from([routing::partition_of(&object, 8)]))
        );
    }

    #[test]
    fn contradictions_and_non_ids_read_nothing() {
        let conflicting = [
            col("service").eq(lit("a")),
            col("service_name").eq(lit("b")),
        ];
        let pushdown = Pushdown::from_filters(&conflicting, &ROUTING);
        assert_eq!(pushdown.lookup(&ROUTING), Lookup::Empty);
        assert_eq!(pushdown.partitions(3), Some(BTreeSet::new()));
        let bad_id = [col("id").eq(lit("nope"))];
        let pushdown = Pushdown::from_filters(&bad_id, &ROUTING);
        assert_eq!(pushdown.lookup(&ROUTING), Lookup::Empty);
    }

    #[test]
    fn other_filters_leave_the_scan_whole() {
        let filters = [
            col("status").eq(lit("running")),
            col("partition_key").gt(lit(3u64)),
        ];
        let pushdown = Pushdown::from_filters(&filters, &ROUTING);
        assert_eq!(pushdown.partitions(3), None);
        assert_eq!(pushdown.lookup(&ROUTING), Lookup::Scan);
        assert!(!ROUTING.understands(&filters[0]));
        assert!(!ROUTING.understands(&filters[1]));
    }

    #[test]
    fn partition_key_and_id_lists_narrow_partitions() {
        let filters = [
            col("id").in_list(vec![lit(id(1).to_string()), lit(id(2).to_string())], false),
            col("partition_key").eq(lit(2i64)),
        ];
        let pushdown = Pushdown::from_filters(&filters, &ROUTING);
        assert_eq!(
            pushdown.partitions(4),
            Some(BTreeSet::from([PartitionId(2)]))
        );
        assert_eq!(pushdown.lookup(&ROUTING), Lookup::Ids(vec![id(1), id(2)]));
        let negative = [col("partition_key").eq(lit(-1i64))];
        assert_eq!(
            Pushdown::from_filters(&negative, &ROUTING).lookup(&ROUTING),
            Lookup::Empty
        );
    }
}

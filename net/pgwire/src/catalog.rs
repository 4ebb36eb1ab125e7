//! A `pg_catalog` subset built from the session's DataFusion catalog, so that
//! psql, drivers and GUI tools can discover tables and columns.
//!
//! The tables are rebuilt from a [`CatalogSnapshot`] whenever a query
//! references them. Table oids are derived from a hash of the qualified name
//! (stable across connections while the set of tables does not change);
//! system objects use oids below 16384 like PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, new_empty_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::TableType;
use pgwire::api::Type;

use crate::encode::{Kind, pg_type_of, type_size};

/// Name of the schema holding the catalog tables.
pub(crate) const PG_CATALOG: &str = "pg_catalog";
const PG_CATALOG_OID: i32 = 11;
const PUBLIC_OID: i32 = 2200;
const INFORMATION_SCHEMA_OID: i32 = 13_000;
/// Oid of the single role every session runs as.
pub(crate) const OWNER_OID: i32 = 10;
const DATABASE_OID: i32 = 5;
const FIRST_USER_OID: i32 = 16_384;

/// Per-session values the catalog shows (who is connected, to what, and the
/// session's settings).
#[derive(Debug, Default)]
pub(crate) struct SessionInfo {
    pub user: Mutex<String>,
    pub database: Mutex<String>,
    pub settings: Mutex<BTreeMap<String, String>>,
    pub default_catalog: String,
    pub default_schema: String,
}

impl SessionInfo {
    pub fn user(&self) -> String {
        self.user.lock().map(|u| u.clone()).unwrap_or_default()
    }

    pub fn database(&self) -> String {
        self.database.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn settings(&self) -> BTreeMap<String, String> {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Col {
    Oid,
    Text,
    Bool,
    I16,
    I32,
    I64,
    F32,
}

impl Col {
    fn data_type(self) -> DataType {
        match self {
            Col::Oid | Col::I32 => DataType::Int32,
            Col::Text => DataType::Utf8,
            Col::Bool => DataType::Boolean,
            Col::I16 => DataType::Int16,
            Col::I64 => DataType::Int64,
            Col::F32 => DataType::Float32,
        }
    }
}

use Col::{Bool, F32, I16, I32, I64, Oid, Text};

struct TableDef {
    name: &'static str,
    oid: i32,
    columns: &'static [(&'static str, Col)],
}

const TABLES: &[TableDef] = &[
    TableDef {
        name: "pg_namespace",
        oid: 2615,
        columns: &[
            ("oid", Oid),
            ("nspname", Text),
            ("nspowner", Oid),
            ("nspacl", Text),
        ],
    },
    TableDef {
        name: "pg_class",
        oid: 1259,
        columns: &[
            ("oid", Oid),
            ("relname", Text),
            ("relnamespace", Oid),
            ("reltype", Oid),
            ("reloftype", Oid),
            ("relowner", Oid),
            ("relam", Oid),
            ("relfilenode", Oid),
            ("reltablespace", Oid),
            ("relpages", I32),
            ("reltuples", F32),
            ("relallvisible", I32),
            ("reltoastrelid", Oid),
            ("relhasindex", Bool),
            ("relisshared", Bool),
            ("relpersistence", Text),
            ("relkind", Text),
            ("relnatts", I16),
            ("relchecks", I16),
            ("relhasrules", Bool),
            ("relhastriggers", Bool),
            ("relhassubclass", Bool),
            ("relrowsecurity", Bool),
            ("relforcerowsecurity", Bool),
            ("relispopulated", Bool),
            ("relreplident", Text),
            ("relispartition", Bool),
            ("relrewrite", Oid),
            ("relfrozenxid", I32),
            ("relminmxid", I32),
            ("relacl", Text),
            ("reloptions", Text),
            ("relpartbound", Text),
        ],
    },
    TableDef {
        name: "pg_attribute",
        oid: 1249,
        columns: &[
            ("attrelid", Oid),
            ("attname", Text),
            ("atttypid", Oid),
            ("attstattarget", I32),
            ("attlen", I16),
            ("attnum", I16),
            ("attndims", I32),
            ("attcacheoff", I32),
            ("atttypmod", I32),
            ("attbyval", Bool),
            ("attalign", Text),
            ("attstorage", Text),
            ("attcompression", Text),
            ("attnotnull", Bool),
            ("atthasdef", Bool),
            ("atthasmissing", Bool),
            ("attidentity", Text),
            ("attgenerated", Text),
            ("attisdropped", Bool),
            ("attislocal", Bool),
            ("attinhcount", I32),
            ("attcollation", Oid),
            ("attacl", Text),
            ("attoptions", Text),
            ("attfdwoptions", Text),
            ("attmissingval", Text),
        ],
    },
    TableDef {
        name: "pg_type",
        oid: 1247,
        columns: &[
            ("oid", Oid),
            ("typname", Text),
            ("typnamespace", Oid),
            ("typowner", Oid),
            ("typlen", I16),
            ("typbyval", Bool),
            ("typtype", Text),
            ("typcategory", Text),
            ("typispreferred", Bool),
            ("typisdefined", Bool),
            ("typdelim", Text),
            ("typrelid", Oid),
            ("typsubscript", Text),
            ("typelem", Oid),
            ("typarray", Oid),
            ("typinput", Text),
            ("typoutput", Text),
            ("typreceive", Text),
            ("typsend", Text),
            ("typmodin", Text),
            ("typmodout", Text),
            ("typanalyze", Text),
            ("typalign", Text),
            ("typstorage", Text),
            ("typnotnull", Bool),
            ("typbasetype", Oid),
            ("typtypmod", I32),
            ("typndims", I32),
            ("typcollation", Oid),
            ("typdefaultbin", Text),
            ("typdefault", Text),
            ("typacl", Text),
        ],
    },
    TableDef {
        name: "pg_database",
        oid: 1262,
        columns: &[
            ("oid", Oid),
            ("datname", Text),
            ("datdba", Oid),
            ("encoding", I32),
            ("datlocprovider", Text),
            ("datistemplate", Bool),
            ("datallowconn", Bool),
            ("datconnlimit", I32),
            ("datfrozenxid", I32),
            ("datminmxid", I32),
            ("dattablespace", Oid),
            ("datcollate", Text),
            ("datctype", Text),
            ("daticulocale", Text),
            ("datcollversion", Text),
            ("datacl", Text),
        ],
    },
    TableDef {
        name: "pg_settings",
        oid: 12_001,
        columns: &[
            ("name", Text),
            ("setting", Text),
            ("unit", Text),
            ("category", Text),
            ("short_desc", Text),
            ("extra_desc", Text),
            ("context", Text),
            ("vartype", Text),
            ("source", Text),
            ("min_val", Text),
            ("max_val", Text),
            ("enumvals", Text),
            ("boot_val", Text),
            ("reset_val", Text),
            ("sourcefile", Text),
            ("sourceline", I32),
            ("pending_restart", Bool),
        ],
    },
    TableDef {
        name: "pg_proc",
        oid: 1255,
        columns: &[
            ("oid", Oid),
            ("proname", Text),
            ("pronamespace", Oid),
            ("proowner", Oid),
            ("prolang", Oid),
            ("procost", F32),
            ("prorows", F32),
            ("provariadic", Oid),
            ("prosupport", Text),
            ("prokind", Text),
            ("prosecdef", Bool),
            ("proleakproof", Bool),
            ("proisstrict", Bool),
            ("proretset", Bool),
            ("provolatile", Text),
            ("proparallel", Text),
            ("pronargs", I16),
            ("pronargdefaults", I16),
            ("prorettype", Oid),
            ("proargtypes", Text),
            ("proallargtypes", Text),
            ("proargmodes", Text),
            ("proargnames", Text),
            ("proargdefaults", Text),
            ("protrftypes", Text),
            ("prosrc", Text),
            ("probin", Text),
            ("prosqlbody", Text),
            ("proconfig", Text),
            ("proacl", Text),
        ],
    },
    TableDef {
        name: "pg_roles",
        oid: 12_002,
        columns: &[
            ("rolname", Text),
            ("rolsuper", Bool),
            ("rolinherit", Bool),
            ("rolcreaterole", Bool),
            ("rolcreatedb", Bool),
            ("rolcanlogin", Bool),
            ("rolreplication", Bool),
            ("rolconnlimit", I32),
            ("rolpassword", Text),
            ("rolvaliduntil", Text),
            ("rolbypassrls", Bool),
            ("rolconfig", Text),
            ("oid", Oid),
        ],
    },
    TableDef {
        name: "pg_user",
        oid: 12_003,
        columns: &[
            ("usename", Text),
            ("usesysid", Oid),
            ("usecreatedb", Bool),
            ("usesuper", Bool),
            ("userepl", Bool),
            ("usebypassrls", Bool),
            ("passwd", Text),
            ("valuntil", Text),
            ("useconfig", Text),
        ],
    },
    TableDef {
        name: "pg_tables",
        oid: 12_004,
        columns: &[
            ("schemaname", Text),
            ("tablename", Text),
            ("tableowner", Text),
            ("tablespace", Text),
            ("hasindexes", Bool),
            ("hasrules", Bool),
            ("hastriggers", Bool),
            ("rowsecurity", Bool),
        ],
    },
    TableDef {
        name: "pg_views",
        oid: 12_005,
        columns: &[
            ("schemaname", Text),
            ("viewname", Text),
            ("viewowner", Text),
            ("definition", Text),
        ],
    },
    TableDef {
        name: "pg_am",
        oid: 2601,
        columns: &[
            ("oid", Oid),
            ("amname", Text),
            ("amhandler", Text),
            ("amtype", Text),
        ],
    },
    TableDef {
        name: "pg_tablespace",
        oid: 1213,
        columns: &[
            ("oid", Oid),
            ("spcname", Text),
            ("spcowner", Oid),
            ("spcacl", Text),
            ("spcoptions", Text),
        ],
    },
    TableDef {
        name: "pg_description",
        oid: 2609,
        columns: &[
            ("objoid", Oid),
            ("classoid", Oid),
            ("objsubid", I32),
            ("description", Text),
        ],
    },
    TableDef {
        name: "pg_attrdef",
        oid: 2604,
        columns: &[
            ("oid", Oid),
            ("adrelid", Oid),
            ("adnum", I16),
            ("adbin", Text),
        ],
    },
    TableDef {
        name: "pg_index",
        oid: 2610,
        columns: &[
            ("indexrelid", Oid),
            ("indrelid", Oid),
            ("indnatts", I16),
            ("indnkeyatts", I16),
            ("indisunique", Bool),
            ("indnullsnotdistinct", Bool),
            ("indisprimary", Bool),
            ("indisexclusion", Bool),
            ("indimmediate", Bool),
            ("indisclustered", Bool),
            ("indisvalid", Bool),
            ("indcheckxmin", Bool),
            ("indisready", Bool),
            ("indislive", Bool),
            ("indisreplident", Bool),
            ("indkey", Text),
            ("indcollation", Text),
            ("indclass", Text),
            ("indoption", Text),
            ("indexprs", Text),
            ("indpred", Text),
        ],
    },
    TableDef {
        name: "pg_indexes",
        oid: 12_006,
        columns: &[
            ("schemaname", Text),
            ("tablename", Text),
            ("indexname", Text),
            ("tablespace", Text),
            ("indexdef", Text),
        ],
    },
    TableDef {
        name: "pg_constraint",
        oid: 2606,
        columns: &[
            ("oid", Oid),
            ("conname", Text),
            ("connamespace", Oid),
            ("contype", Text),
            ("condeferrable", Bool),
            ("condeferred", Bool),
            ("convalidated", Bool),
            ("conrelid", Oid),
            ("contypid", Oid),
            ("conindid", Oid),
            ("conparentid", Oid),
            ("confrelid", Oid),
            ("confupdtype", Text),
            ("confdeltype", Text),
            ("confmatchtype", Text),
            ("conislocal", Bool),
            ("coninhcount", I32),
            ("connoinherit", Bool),
            ("conkey", Text),
            ("confkey", Text),
            ("conbin", Text),
        ],
    },
    TableDef {
        name: "pg_inherits",
        oid: 2611,
        columns: &[
            ("inhrelid", Oid),
            ("inhparent", Oid),
            ("inhseqno", I32),
            ("inhdetachpending", Bool),
        ],
    },
    TableDef {
        name: "pg_trigger",
        oid: 2620,
        columns: &[
            ("oid", Oid),
            ("tgrelid", Oid),
            ("tgparentid", Oid),
            ("tgname", Text),
            ("tgfoid", Oid),
            ("tgtype", I16),
            ("tgenabled", Text),
            ("tgisinternal", Bool),
            ("tgconstrrelid", Oid),
            ("tgconstrindid", Oid),
            ("tgconstraint", Oid),
            ("tgdeferrable", Bool),
            ("tginitdeferred", Bool),
            ("tgnargs", I16),
            ("tgattr", Text),
            ("tgargs", Text),
            ("tgqual", Text),
            ("tgoldtable", Text),
            ("tgnewtable", Text),
        ],
    },
    TableDef {
        name: "pg_collation",
        oid: 3456,
        columns: &[
            ("oid", Oid),
            ("collname", Text),
            ("collnamespace", Oid),
            ("collowner", Oid),
            ("collprovider", Text),
            ("collisdeterministic", Bool),
            ("collencoding", I32),
            ("collcollate", Text),
            ("collctype", Text),
            ("colliculocale", Text),
            ("collversion", Text),
        ],
    },
    TableDef {
        name: "pg_extension",
        oid: 3079,
        columns: &[
            ("oid", Oid),
            ("extname", Text),
            ("extowner", Oid),
            ("extnamespace", Oid),
            ("extrelocatable", Bool),
            ("extversion", Text),
            ("extconfig", Text),
            ("extcondition", Text),
        ],
    },
    TableDef {
        name: "pg_enum",
        oid: 3501,
        columns: &[
            ("oid", Oid),
            ("enumtypid", Oid),
            ("enumsortorder", F32),
            ("enumlabel", Text),
        ],
    },
    TableDef {
        name: "pg_range",
        oid: 3541,
        columns: &[
            ("rngtypid", Oid),
            ("rngsubtype", Oid),
            ("rngmultitypid", Oid),
            ("rngcollation", Oid),
            ("rngsubopc", Oid),
            ("rngcanonical", Text),
            ("rngsubdiff", Text),
        ],
    },
    TableDef {
        name: "pg_sequence",
        oid: 2224,
        columns: &[
            ("seqrelid", Oid),
            ("seqtypid", Oid),
            ("seqstart", I64),
            ("seqincrement", I64),
            ("seqmax", I64),
            ("seqmin", I64),
            ("seqcache", I64),
            ("seqcycle", Bool),
        ],
    },
    TableDef {
        name: "pg_matviews",
        oid: 12_007,
        columns: &[
            ("schemaname", Text),
            ("matviewname", Text),
            ("matviewowner", Text),
            ("tablespace", Text),
            ("hasindexes", Bool),
            ("ispopulated", Bool),
            ("definition", Text),
        ],
    },
    TableDef {
        name: "pg_depend",
        oid: 2608,
        columns: &[
            ("classid", Oid),
            ("objid", Oid),
            ("objsubid", I32),
            ("refclassid", Oid),
            ("refobjid", Oid),
            ("refobjsubid", I32),
            ("deptype", Text),
        ],
    },
    TableDef {
        name: "pg_policy",
        oid: 3256,
        columns: &[
            ("oid", Oid),
            ("polname", Text),
            ("polrelid", Oid),
            ("polcmd", Text),
            ("polpermissive", Bool),
            ("polroles", Text),
            ("polqual", Text),
            ("polwithcheck", Text),
        ],
    },
    TableDef {
        name: "pg_rewrite",
        oid: 2618,
        columns: &[
            ("oid", Oid),
            ("rulename", Text),
            ("ev_class", Oid),
            ("ev_type", Text),
            ("ev_enabled", Text),
            ("is_instead", Bool),
            ("ev_qual", Text),
            ("ev_action", Text),
        ],
    },
    TableDef {
        name: "pg_language",
        oid: 2612,
        columns: &[
            ("oid", Oid),
            ("lanname", Text),
            ("lanowner", Oid),
            ("lanispl", Bool),
            ("lanpltrusted", Bool),
            ("lanplcallfoid", Oid),
            ("laninline", Oid),
            ("lanvalidator", Oid),
            ("lanacl", Text),
        ],
    },
    TableDef {
        name: "pg_stat_activity",
        oid: 12_008,
        columns: &[
            ("datid", Oid),
            ("datname", Text),
            ("pid", I32),
            ("usesysid", Oid),
            ("usename", Text),
            ("application_name", Text),
            ("client_addr", Text),
            ("state", Text),
            ("query", Text),
        ],
    },
];

/// Names of all tables in the `pg_catalog` schema.
pub(crate) const PG_CATALOG_TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_database",
    "pg_settings",
    "pg_proc",
    "pg_roles",
    "pg_user",
    "pg_tables",
    "pg_views",
    "pg_am",
    "pg_tablespace",
    "pg_description",
    "pg_attrdef",
    "pg_index",
    "pg_indexes",
    "pg_constraint",
    "pg_inherits",
    "pg_trigger",
    "pg_collation",
    "pg_extension",
    "pg_enum",
    "pg_range",
    "pg_sequence",
    "pg_matviews",
    "pg_depend",
    "pg_policy",
    "pg_rewrite",
    "pg_language",
    "pg_stat_activity",
];

fn table_def(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

fn def_schema(def: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|(name, col)| Field::new(*name, col.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// A built-in type as listed in `pg_type`.
struct PgTypeRow {
    ty: Type,
    len: i16,
    byval: bool,
    category: char,
    array: u32,
    /// Name as printed by `format_type`.
    display: &'static str,
}

fn builtin_types() -> Vec<PgTypeRow> {
    let t = |ty: Type, len: i16, byval: bool, category: char, array: u32, display| PgTypeRow {
        ty,
        len,
        byval,
        category,
        array,
        display,
    };
    vec![
        t(Type::BOOL, 1, true, 'B', 1000, "boolean"),
        t(Type::BYTEA, -1, false, 'U', 1001, "bytea"),
        t(Type::CHAR, 1, true, 'Z', 1002, "\"char\""),
        t(Type::NAME, 64, false, 'S', 1003, "name"),
        t(Type::INT8, 8, true, 'N', 1016, "bigint"),
        t(Type::INT2, 2, true, 'N', 1005, "smallint"),
        t(Type::INT4, 4, true, 'N', 1007, "integer"),
        t(Type::REGPROC, 4, true, 'N', 1008, "regproc"),
        t(Type::TEXT, -1, false, 'S', 1009, "text"),
        t(Type::OID, 4, true, 'N', 1028, "oid"),
        t(Type::JSON, -1, false, 'U', 199, "json"),
        t(Type::FLOAT4, 4, true, 'N', 1021, "real"),
        t(Type::FLOAT8, 8, true, 'N', 1022, "double precision"),
        t(Type::UNKNOWN, -2, false, 'X', 0, "unknown"),
        t(Type::BPCHAR, -1, false, 'S', 1014, "character"),
        t(Type::VARCHAR, -1, false, 'S', 1015, "character varying"),
        t(Type::DATE, 4, true, 'D', 1182, "date"),
        t(Type::TIME, 8, true, 'D', 1183, "time without time zone"),
        t(
            Type::TIMESTAMP,
            8,
            true,
            'D',
            1115,
            "timestamp without time zone",
        ),
        t(
            Type::TIMESTAMPTZ,
            8,
            true,
            'D',
            1185,
            "timestamp with time zone",
        ),
        t(Type::INTERVAL, 16, false, 'T', 1187, "interval"),
        t(Type::NUMERIC, -1, false, 'N', 1231, "numeric"),
        t(Type::REGCLASS, 4, true, 'N', 2210, "regclass"),
        t(Type::UUID, 16, false, 'U', 2951, "uuid"),
        t(Type::JSONB, -1, false, 'U', 3807, "jsonb"),
    ]
}

/// `format_type(oid, typmod)`: the SQL name of a type, `None` if unknown.
pub(crate) fn format_type(oid: i64) -> Option<String> {
    let types = builtin_types();
    if let Some(t) = types.iter().find(|t| i64::from(t.ty.oid()) == oid) {
        return Some(t.display.to_owned());
    }
    types
        .iter()
        .find(|t| t.array != 0 && i64::from(t.array) == oid)
        .map(|t| format!("{}[]", t.display))
}

/// The oid of a type given by any of its PostgreSQL names (`int4`,
/// `integer`, `timestamp with time zone`, …).
pub(crate) fn type_oid_by_name(name: &str) -> Option<i32> {
    let name = name.trim().trim_matches('"').to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let alias = match name {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        other => other,
    };
    let types = builtin_types();
    if let Some(t) = types.iter().find(|t| t.ty.name() == alias) {
        return i32::try_from(t.ty.oid()).ok();
    }
    if let Some(elem) = alias.strip_suffix("[]").or_else(|| alias.strip_prefix('_')) {
        let elem_oid = type_oid_by_name(elem)?;
        return types
            .iter()
            .find(|t| i64::from(t.ty.oid()) == i64::from(elem_oid))
            .and_then(|t| i32::try_from(t.array).ok());
    }
    None
}

/// One column of a table in the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
}

impl ColumnInfo {
    pub fn pg_type(&self) -> Type {
        pg_type_of(&self.data_type)
    }
}

/// One table or view in the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    pub oid: i32,
    pub namespace_oid: i32,
    pub schema: String,
    pub name: String,
    /// `r` for tables, `v` for views.
    pub kind: char,
    pub columns: Vec<ColumnInfo>,
}

/// The session's tables, schemas and identity at one point in time.
#[derive(Debug, Clone, Default)]
pub(crate) struct CatalogSnapshot {
    pub namespaces: Vec<(i32, String)>,
    pub tables: Vec<TableInfo>,
    pub user: String,
    pub database: String,
    pub settings: BTreeMap<String, String>,
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn hashed_oid(key: &str, used: &mut HashSet<i32>) -> i32 {
    let span = u32::try_from(i32::MAX - FIRST_USER_OID).unwrap_or(u32::MAX);
    let mut candidate = FIRST_USER_OID + i32::try_from(fnv1a(key) % span).unwrap_or(0);
    while !used.insert(candidate) {
        candidate = if candidate == i32::MAX {
            FIRST_USER_OID
        } else {
            candidate + 1
        };
    }
    candidate
}

impl CatalogSnapshot {
    /// Reads every schema and table of the session's default catalog.
    pub async fn build(catalogs: &Arc<dyn CatalogProviderList>, info: &SessionInfo) -> Self {
        let mut snapshot = CatalogSnapshot {
            user: info.user(),
            database: info.database(),
            settings: info.settings(),
            ..Default::default()
        };
        let mut used: HashSet<i32> = HashSet::new();
        snapshot
            .namespaces
            .push((PG_CATALOG_OID, PG_CATALOG.to_owned()));
        snapshot
            .namespaces
            .push((INFORMATION_SCHEMA_OID, "information_schema".to_owned()));
        for def in TABLES {
            snapshot.tables.push(TableInfo {
                oid: def.oid,
                namespace_oid: PG_CATALOG_OID,
                schema: PG_CATALOG.to_owned(),
                name: def.name.to_owned(),
                kind: 'r',
                columns: def
                    .columns
                    .iter()
                    .map(|(name, col)| ColumnInfo {
                        name: (*name).to_owned(),
                        data_type: col.data_type(),
                        nullable: true,
                    })
                    .collect(),
            });
        }
        let Some(catalog) = catalogs.catalog(&info.default_catalog) else {
            return snapshot;
        };
        let mut schema_names = catalog.schema_names();
        schema_names.sort();
        for schema_name in schema_names {
            if schema_name == PG_CATALOG || schema_name == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let namespace_oid = if schema_name == "public" {
                PUBLIC_OID
            } else {
                hashed_oid(&format!("namespace:{schema_name}"), &mut used)
            };
            snapshot
                .namespaces
                .push((namespace_oid, schema_name.clone()));
            let mut table_names = schema.table_names();
            table_names.sort();
            for table_name in table_names {
                let table = match schema.table(&table_name).await {
                    Ok(Some(table)) => table,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(table = %table_name, error = %e, "skipping table in pg_catalog");
                        continue;
                    }
                };
                let kind = match table.table_type() {
                    TableType::View => 'v',
                    TableType::Base | TableType::Temporary => 'r',
                };
                let columns = table
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| ColumnInfo {
                        name: f.name().clone(),
                        data_type: f.data_type().clone(),
                        nullable: f.is_nullable(),
                    })
                    .collect();
                snapshot.tables.push(TableInfo {
                    oid: hashed_oid(&format!("{schema_name}.{table_name}"), &mut used),
                    namespace_oid,
                    schema: schema_name.clone(),
                    name: table_name,
                    kind,
                    columns,
                });
            }
        }
        snapshot
    }

    /// User-visible (non-system) tables.
    pub fn user_tables(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables.iter().filter(|t| t.schema != PG_CATALOG)
    }

    pub fn namespace_oid(&self, name: &str) -> Option<i32> {
        self.namespaces
            .iter()
            .find(|(_, n)| n == name)
            .map(|(oid, _)| *oid)
    }

    /// Resolves `name` or `schema.name` (optionally double-quoted) like a
    /// `::regclass` cast, user schemas first, then `pg_catalog`.
    pub fn table_oid_by_name(&self, name: &str) -> Option<i32> {
        let parts: Vec<String> = name
            .split('.')
            .map(|p| {
                let p = p.trim();
                if p.starts_with('"') && p.ends_with('"') && p.len() >= 2 {
                    p[1..p.len() - 1].to_owned()
                } else {
                    p.to_ascii_lowercase()
                }
            })
            .collect();
        match parts.as_slice() {
            [table] => self
                .user_tables()
                .chain(self.tables.iter().filter(|t| t.schema == PG_CATALOG))
                .find(|t| &t.name == table)
                .map(|t| t.oid),
            [schema, table] => self
                .tables
                .iter()
                .find(|t| &t.schema == schema && &t.name == table)
                .map(|t| t.oid),
            _ => None,
        }
    }
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_owned()))
}

fn oid(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}

fn int2(v: i16) -> ScalarValue {
    ScalarValue::Int16(Some(v))
}

fn int4(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}

fn boolean(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}

fn null(col: Col) -> ScalarValue {
    ScalarValue::try_from(&col.data_type()).unwrap_or(ScalarValue::Null)
}

fn rows_for(def: &TableDef, snap: &CatalogSnapshot) -> Vec<Vec<ScalarValue>> {
    let n = |i: usize| null(def.columns[i].1);
    match def.name {
        "pg_namespace" => snap
            .namespaces
            .iter()
            .map(|(id, name)| vec![oid(*id), text(name), oid(OWNER_OID), n(3)])
            .collect(),
        "pg_class" => snap
            .tables
            .iter()
            .map(|t| {
                vec![
                    oid(t.oid),
                    text(&t.name),
                    oid(t.namespace_oid),
                    oid(0),
                    oid(0),
                    oid(OWNER_OID),
                    oid(if t.kind == 'r' { 2 } else { 0 }),
                    oid(t.oid),
                    oid(0),
                    int4(0),
                    ScalarValue::Float32(Some(-1.0)),
                    int4(0),
                    oid(0),
                    boolean(false),
                    boolean(false),
                    text("p"),
                    text(&t.kind.to_string()),
                    int2(i16::try_from(t.columns.len()).unwrap_or(i16::MAX)),
                    int2(0),
                    boolean(false),
                    boolean(false),
                    boolean(false),
                    boolean(false),
                    boolean(false),
                    boolean(true),
                    text("d"),
                    boolean(false),
                    oid(0),
                    int4(0),
                    int4(0),
                    n(30),
                    n(31),
                    n(32),
                ]
            })
            .collect(),
        "pg_attribute" => snap
            .tables
            .iter()
            .flat_map(|t| {
                t.columns.iter().enumerate().map(move |(idx, c)| {
                    let ty = c.pg_type();
                    let len = type_size(&ty);
                    let is_text = Kind::of(&c.data_type) == Kind::Text;
                    vec![
                        oid(t.oid),
                        text(&c.name),
                        oid(i32::try_from(ty.oid()).unwrap_or(0)),
                        int4(-1),
                        int2(len),
                        int2(i16::try_from(idx + 1).unwrap_or(i16::MAX)),
                        int4(0),
                        int4(-1),
                        int4(-1),
                        boolean(len > 0 && len <= 8),
                        text(if len == 8 { "d" } else { "i" }),
                        text(if len > 0 { "p" } else { "x" }),
                        text(""),
                        boolean(!c.nullable),
                        boolean(false),
                        boolean(false),
                        text(""),
                        text(""),
                        boolean(false),
                        boolean(true),
                        int4(0),
                        oid(if is_text { 100 } else { 0 }),
                        null(Text),
                        null(Text),
                        null(Text),
                        null(Text),
                    ]
                })
            })
            .collect(),
        "pg_type" => {
            let types = builtin_types();
            let mut rows = Vec::new();
            for t in &types {
                let name = t.ty.name();
                let type_oid = i32::try_from(t.ty.oid()).unwrap_or(0);
                let array_oid = i32::try_from(t.array).unwrap_or(0);
                rows.push(type_row(
                    type_oid, name, t.len, t.byval, t.category, 0, array_oid,
                ));
                if t.array != 0 {
                    rows.push(type_row(
                        array_oid,
                        &format!("_{name}"),
                        -1,
                        false,
                        'A',
                        type_oid,
                        0,
                    ));
                }
            }
            rows
        }
        "pg_database" => vec![vec![
            oid(DATABASE_OID),
            text(&snap.database),
            oid(OWNER_OID),
            int4(6),
            text("c"),
            boolean(false),
            boolean(true),
            int4(-1),
            int4(0),
            int4(0),
            oid(1663),
            text("C"),
            text("C"),
            n(13),
            n(14),
            n(15),
        ]],
        "pg_settings" => snap
            .settings
            .iter()
            .map(|(name, value)| {
                vec![
                    text(name),
                    text(value),
                    n(2),
                    text("Holdfast"),
                    text(name),
                    n(5),
                    text("user"),
                    text("string"),
                    text("session"),
                    n(9),
                    n(10),
                    n(11),
                    text(value),
                    text(value),
                    n(14),
                    n(15),
                    boolean(false),
                ]
            })
            .collect(),
        "pg_roles" => vec![vec![
            text(&snap.user),
            boolean(false),
            boolean(true),
            boolean(false),
            boolean(false),
            boolean(true),
            boolean(false),
            int4(-1),
            text("********"),
            n(9),
            boolean(false),
            n(11),
            oid(OWNER_OID),
        ]],
        "pg_user" => vec![vec![
            text(&snap.user),
            oid(OWNER_OID),
            boolean(false),
            boolean(false),
            boolean(false),
            boolean(false),
            text("********"),
            n(7),
            n(8),
        ]],
        "pg_tables" => snap
            .user_tables()
            .chain(snap.tables.iter().filter(|t| t.schema == PG_CATALOG))
            .filter(|t| t.kind == 'r')
            .map(|t| {
                vec![
                    text(&t.schema),
                    text(&t.name),
                    text(&snap.user),
                    n(3),
                    boolean(false),
                    boolean(false),
                    boolean(false),
                    boolean(false),
                ]
            })
            .collect(),
        "pg_views" => snap
            .user_tables()
            .filter(|t| t.kind == 'v')
            .map(|t| vec![text(&t.schema), text(&t.name), text(&snap.user), n(3)])
            .collect(),
        "pg_am" => vec![vec![
            oid(2),
            text("heap"),
            text("heap_tableam_handler"),
            text("t"),
        ]],
        "pg_tablespace" => vec![
            vec![oid(1663), text("pg_default"), oid(OWNER_OID), n(3), n(4)],
            vec![oid(1664), text("pg_global"), oid(OWNER_OID), n(3), n(4)],
        ],
        _ => Vec::new(),
    }
}

fn type_row(
    type_oid: i32,
    name: &str,
    len: i16,
    byval: bool,
    category: char,
    elem: i32,
    array: i32,
) -> Vec<ScalarValue> {
    let base = if category == 'A' { "array" } else { name };
    vec![
        oid(type_oid),
        text(name),
        oid(PG_CATALOG_OID),
        oid(OWNER_OID),
        int2(len),
        boolean(byval),
        text("b"),
        text(&category.to_string()),
        boolean(false),
        boolean(true),
        text(","),
        oid(0),
        text(if category == 'A' {
            "array_subscript_handler"
        } else {
            "-"
        }),
        oid(elem),
        oid(array),
        text(&format!("{base}_in")),
        text(&format!("{base}_out")),
        text(&format!("{base}_recv")),
        text(&format!("{base}_send")),
        text("-"),
        text("-"),
        text("-"),
        text(if len == 8 { "d" } else { "i" }),
        text(if len > 0 { "p" } else { "x" }),
        boolean(false),
        oid(0),
        int4(-1),
        int4(0),
        oid(if category == 'S' { 100 } else { 0 }),
        null(Text),
        null(Text),
        null(Text),
    ]
}

/// Builds one `pg_catalog` table from a snapshot; `None` for unknown names.
pub(crate) fn build_table(name: &str, snap: &CatalogSnapshot) -> Option<DfResult<RecordBatch>> {
    let def = table_def(name)?;
    let schema = def_schema(def);
    let rows = rows_for(def, snap);
    let columns: DfResult<Vec<ArrayRef>> = def
        .columns
        .iter()
        .enumerate()
        .map(|(idx, (_, col))| {
            if rows.is_empty() {
                Ok(new_empty_array(&col.data_type()))
            } else {
                ScalarValue::iter_to_array(
                    rows.iter()
                        .map(|r| r.get(idx).cloned().unwrap_or_else(|| null(*col))),
                )
            }
        })
        .collect();
    Some(columns.and_then(|cols| RecordBatch::try_new(schema, cols).map_err(Into::into)))
}

/// The `pg_catalog` schema: every table is rebuilt from a fresh snapshot of
/// the session's catalog when a query refers to it.
#[derive(Debug)]
pub(crate) struct PgCatalogSchema {
    /// The factory's catalogs (not the session wrapper, to avoid a cycle).
    catalogs: Arc<dyn CatalogProviderList>,
    info: Arc<SessionInfo>,
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        PG_CATALOG_TABLES.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(def) = table_def(name) else {
            return Ok(None);
        };
        let snapshot = CatalogSnapshot::build(&self.catalogs, &self.info).await;
        let Some(batch) = build_table(def.name, &snapshot) else {
            return Ok(None);
        };
        let table = MemTable::try_new(def_schema(def), vec![vec![batch?]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        table_def(name).is_some()
    }
}

/// The session's view of the factory's catalogs: the same catalogs, with a
/// `pg_catalog` schema added to the default one. The factory's catalogs are
/// never modified.
#[derive(Debug)]
pub(crate) struct SessionCatalogList {
    inner: Arc<dyn CatalogProviderList>,
    default_catalog: String,
    pg_catalog: Arc<PgCatalogSchema>,
}

impl SessionCatalogList {
    pub fn new(inner: Arc<dyn CatalogProviderList>, info: Arc<SessionInfo>) -> Self {
        let pg_catalog = Arc::new(PgCatalogSchema {
            catalogs: Arc::clone(&inner),
            info: Arc::clone(&info),
        });
        Self {
            inner,
            default_catalog: info.default_catalog.clone(),
            pg_catalog,
        }
    }
}

impl CatalogProviderList for SessionCatalogList {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let catalog = self.inner.catalog(name)?;
        if name == self.default_catalog {
            Some(Arc::new(SessionCatalog {
                inner: catalog,
                pg_catalog: Arc::clone(&self.pg_catalog),
            }))
        } else {
            Some(catalog)
        }
    }
}

#[derive(Debug)]
struct SessionCatalog {
    inner: Arc<dyn CatalogProvider>,
    pg_catalog: Arc<PgCatalogSchema>,
}

impl CatalogProvider for SessionCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        if !names.iter().any(|n| n == PG_CATALOG) {
            names.push(PG_CATALOG.to_owned());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == PG_CATALOG {
            Some(Arc::clone(&self.pg_catalog) as Arc<dyn SchemaProvider>)
        } else {
            self.inner.schema(name)
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_table_has_a_definition() {
        for name in PG_CATALOG_TABLES {
            assert!(table_def(name).is_some(), "{name}");
        }
        assert_eq!(PG_CATALOG_TABLES.len(), TABLES.len());
    }

    #[test]
    fn empty_snapshot_builds_every_table() {
        let snap = CatalogSnapshot::default();
        for name in PG_CATALOG_TABLES {
            let batch = build_table(name, &snap).expect("known").expect("builds");
            assert_eq!(
                batch.num_columns(),
                table_def(name).expect("def").columns.len()
            );
        }
    }

    #[test]
    fn populated_snapshot_builds_every_table() {
        let mut snap = CatalogSnapshot {
            user: "u".to_owned(),
            database: "db".to_owned(),
            settings: [("a".to_owned(), "b".to_owned())].into_iter().collect(),
            ..Default::default()
        };
        snap.namespaces.push((PUBLIC_OID, "public".to_owned()));
        snap.tables.push(TableInfo {
            oid: FIRST_USER_OID,
            namespace_oid: PUBLIC_OID,
            schema: "public".to_owned(),
            name: "t".to_owned(),
            kind: 'r',
            columns: vec![
                ColumnInfo {
                    name: "a".to_owned(),
                    data_type: DataType::Int64,
                    nullable: false,
                },
                ColumnInfo {
                    name: "b".to_owned(),
                    data_type: DataType::Utf8,
                    nullable: true,
                },
            ],
        });
        for name in PG_CATALOG_TABLES {
            let def = table_def(name).expect("def");
            for row in rows_for(def, &snap) {
                assert_eq!(row.len(), def.columns.len(), "{name}");
            }
            build_table(name, &snap).expect("known").expect("builds");
        }
        let attributes = build_table("pg_attribute", &snap)
            .expect("known")
            .expect("builds");
        assert_eq!(attributes.num_rows(), 2);
        assert_eq!(snap.table_oid_by_name("public.t"), Some(FIRST_USER_OID));
        assert_eq!(snap.table_oid_by_name("T"), Some(FIRST_USER_OID));
        assert_eq!(snap.table_oid_by_name("\"T\""), None);
    }

    #[test]
    fn type_names() {
        assert_eq!(type_oid_by_name("integer"), Some(23));
        assert_eq!(type_oid_by_name("pg_catalog.int8"), Some(20));
        assert_eq!(type_oid_by_name("text[]"), Some(1009));
        assert_eq!(
            format_type(1184).as_deref(),
            Some("timestamp with time zone")
        );
        assert_eq!(format_type(1007).as_deref(), Some("integer[]"));
        assert_eq!(format_type(424_242), None);
    }

    #[test]
    fn oids_are_stable_and_distinct() {
        let mut used = HashSet::new();
        let a = hashed_oid("public.a", &mut used);
        let b = hashed_oid("public.b", &mut used);
        assert_ne!(a, b);
        assert!(a >= FIRST_USER_OID && b >= FIRST_USER_OID);
        let mut again = HashSet::new();
        assert_eq!(hashed_oid("public.a", &mut again), a);
    }
}

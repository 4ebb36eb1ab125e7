//! PostgreSQL system functions that clients call in their catalog queries
//! (`version()`, `format_type`, `pg_table_is_visible`, …), registered in
//! every session.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::catalog::{self, SessionInfo};

/// A function returning the same value whatever its arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstFn {
    name: String,
    value: ScalarValue,
    signature: Signature,
}

impl ConstFn {
    fn udf(name: &str, value: ScalarValue) -> ScalarUDF {
        ScalarUDF::new_from_impl(ConstFn {
            name: name.to_owned(),
            value,
            signature: Signature::user_defined(Volatility::Stable),
        })
    }
}

impl ScalarUDFImpl for ConstFn {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.value.data_type())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `format_type(type_oid, typmod)`: the SQL name of a type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatType {
    signature: Signature,
}

impl ScalarUDFImpl for FormatType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(first) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let oids: ArrayRef = cast(&first.to_array(args.number_rows)?, &DataType::Int64)?;
        let oids = oids
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal("format_type: not an oid".to_owned())
            })?;
        let names: StringArray = oids
            .iter()
            .map(|oid| oid.map(|oid| catalog::format_type(oid).unwrap_or_else(|| "???".to_owned())))
            .collect();
        let names: ArrayRef = Arc::new(names);
        if matches!(first, ColumnarValue::Scalar(_)) && !names.is_empty() {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &names, 0,
            )?));
        }
        Ok(ColumnarValue::Array(names))
    }
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_owned()))
}

/// Version string reported by `version()` and `server_version`.
pub(crate) const SERVER_VERSION: &str = "15.0";

/// Registers the functions that do not depend on the connected user.
pub(crate) fn register_static(ctx: &SessionContext, default_schema: &str) {
    let null_text = ScalarValue::Utf8(None);
    let version = format!(
        "PostgreSQL {SERVER_VERSION} (Holdfast SQL endpoint on Apache DataFusion {})",
        datafusion::DATAFUSION_VERSION
    );
    let consts: Vec<(&str, ScalarValue)> = vec![
        ("version", text(&version)),
        ("current_schema", text(default_schema)),
        ("pg_table_is_visible", ScalarValue::Boolean(Some(true))),
        ("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
        ("pg_function_is_visible", ScalarValue::Boolean(Some(true))),
        ("obj_description", null_text.clone()),
        ("col_description", null_text.clone()),
        ("shobj_description", null_text.clone()),
        ("pg_get_expr", null_text.clone()),
        ("pg_get_indexdef", null_text.clone()),
        ("pg_get_constraintdef", null_text.clone()),
        ("pg_get_viewdef", null_text.clone()),
        ("pg_get_triggerdef", null_text.clone()),
        ("pg_get_partkeydef", null_text.clone()),
        ("pg_get_function_result", null_text.clone()),
        ("pg_get_function_arguments", null_text.clone()),
        ("pg_get_statisticsobjdef_columns", null_text.clone()),
        ("pg_get_serial_sequence", null_text),
        (
            "pg_relation_is_publishable",
            ScalarValue::Boolean(Some(false)),
        ),
        ("has_table_privilege", ScalarValue::Boolean(Some(true))),
        ("has_schema_privilege", ScalarValue::Boolean(Some(true))),
        ("has_database_privilege", ScalarValue::Boolean(Some(true))),
        ("has_column_privilege", ScalarValue::Boolean(Some(true))),
        ("has_any_column_privilege", ScalarValue::Boolean(Some(true))),
        ("has_function_privilege", ScalarValue::Boolean(Some(true))),
        ("pg_encoding_to_char", text("UTF8")),
        ("pg_is_in_recovery", ScalarValue::Boolean(Some(false))),
        ("pg_relation_size", ScalarValue::Int64(Some(0))),
        ("pg_total_relation_size", ScalarValue::Int64(Some(0))),
        ("pg_table_size", ScalarValue::Int64(Some(0))),
        ("pg_indexes_size", ScalarValue::Int64(Some(0))),
        ("txid_current", ScalarValue::Int64(Some(1))),
        (
            "current_schemas",
            ScalarValue::List(ScalarValue::new_list_nullable(
                &[text("pg_catalog"), text(default_schema)],
                &DataType::Utf8,
            )),
        ),
    ];
    for (name, value) in consts {
        ctx.register_udf(ConstFn::udf(name, value));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(FormatType {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
    register_row_functions(ctx);
}

/// Registers the functions that report who is connected to what.
pub(crate) fn register_identity(ctx: &SessionContext, user: &str, database: &str, pid: i32) {
    for name in ["current_user", "session_user", "user", "current_role"] {
        ctx.register_udf(ConstFn::udf(name, text(user)));
    }
    ctx.register_udf(ConstFn::udf("pg_get_userbyid", text(user)));
    ctx.register_udf(ConstFn::udf("current_database", text(database)));
    ctx.register_udf(ConstFn::udf("current_catalog", text(database)));
    ctx.register_udf(ConstFn::udf(
        "pg_backend_pid",
        ScalarValue::Int32(Some(pid)),
    ));
}

/// `current_setting(name)`: the session's value of a setting.
#[derive(Debug)]
struct CurrentSetting {
    info: Arc<SessionInfo>,
    signature: Signature,
}

impl PartialEq for CurrentSetting {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.info, &other.info)
    }
}

impl Eq for CurrentSetting {}

impl std::hash::Hash for CurrentSetting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "current_setting".hash(state);
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(first) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let names: ArrayRef = cast(&first.to_array(args.number_rows)?, &DataType::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "current_setting: not a name".to_owned(),
                )
            })?;
        let settings = self.info.settings();
        let mut values = Vec::with_capacity(names.len());
        for name in names.iter() {
            values.push(match name {
                None => None,
                Some(name) => match settings.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                    Some((_, v)) => Some(v.clone()),
                    None => {
                        return Err(datafusion::error::DataFusionError::Plan(format!(
                            "unrecognized configuration parameter \"{name}\""
                        )));
                    }
                },
            });
        }
        let values: ArrayRef = Arc::new(values.into_iter().collect::<StringArray>());
        if matches!(first, ColumnarValue::Scalar(_)) && !values.is_empty() {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &values, 0,
            )?));
        }
        Ok(ColumnarValue::Array(values))
    }
}

/// Registers `current_setting`, which reads the session's settings.
pub(crate) fn register_settings(ctx: &SessionContext, info: Arc<SessionInfo>) {
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting {
        info,
        signature: Signature::user_defined(Volatility::Stable),
    }));
}

/// `quote_ident(name)`: double-quotes a name unless it is a plain lower-case
/// identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `pg_size_pretty(bytes)` with PostgreSQL's rounding and units.
pub(crate) fn size_pretty(size: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if size.abs() < LIMIT {
        return format!("{size} bytes");
    }
    let mut size = size >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

/// Functions whose value is computed per row from their arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowFn {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for RowFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let internal =
            |e: crate::error::SqlError| datafusion::error::DataFusionError::Execution(e.message);
        let mut out: Vec<Option<String>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let value = |i: usize| -> DfResult<Option<String>> {
                match arrays.get(i) {
                    Some(a) => crate::encode::text_value(a, row).map_err(internal),
                    None => Ok(None),
                }
            };
            out.push(match self.name {
                "pg_size_pretty" => value(0)?
                    .and_then(|v| v.parse::<i64>().ok())
                    .map(size_pretty),
                "quote_ident" => value(0)?.map(|v| quote_ident(&v)),
                _ => {
                    // array_to_string(array, separator[, null_string])
                    let separator = value(1)?.unwrap_or_default();
                    let null_string = value(2)?;
                    match arrays.first() {
                        Some(a) if !a.is_null(row) => Some(
                            join_array(a, row, &separator, null_string.as_deref())
                                .map_err(internal)?,
                        ),
                        _ => None,
                    }
                }
            });
        }
        let out: ArrayRef = Arc::new(out.into_iter().collect::<StringArray>());
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

fn join_array(
    array: &ArrayRef,
    row: usize,
    separator: &str,
    null_string: Option<&str>,
) -> Result<String, crate::error::SqlError> {
    use datafusion::arrow::array::AsArray;
    let items = match array.data_type() {
        DataType::List(_) => array.as_list_opt::<i32>().map(|l| l.value(row)),
        DataType::LargeList(_) => array.as_list_opt::<i64>().map(|l| l.value(row)),
        DataType::FixedSizeList(..) => array.as_fixed_size_list_opt().map(|l| l.value(row)),
        _ => None,
    };
    let mut parts = Vec::new();
    match items {
        Some(items) => {
            for i in 0..items.len() {
                match crate::encode::text_value(&items, i)? {
                    Some(v) => parts.push(v),
                    None => {
                        if let Some(n) = null_string {
                            parts.push(n.to_owned());
                        }
                    }
                }
            }
        }
        None => {
            // A PostgreSQL array literal stored as text: `{a,b}`.
            let text = crate::encode::text_value(array, row)?.unwrap_or_default();
            let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
            parts.extend(
                inner
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.trim_matches('"').to_owned()),
            );
        }
    }
    Ok(parts.join(separator))
}

/// Registers functions DataFusion lacks in this build (`array_to_string`
/// only when DataFusion's own is not registered).
pub(crate) fn register_row_functions(ctx: &SessionContext) {
    let mut names = vec!["pg_size_pretty", "quote_ident"];
    if !ctx
        .state()
        .scalar_functions()
        .contains_key("array_to_string")
    {
        names.push("array_to_string");
    }
    for name in names {
        ctx.register_udf(ScalarUDF::new_from_impl(RowFn {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
        }));
    }
}

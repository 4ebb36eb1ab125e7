//! Arrow → PostgreSQL: type OIDs for result columns and the text and binary
//! encodings of values in `DataRow`s.
//!
//! Type mapping (PostgreSQL has no unsigned integers, so unsigned types widen
//! to the next larger signed type; `UInt64` maps to `int8` and a value above
//! `i64::MAX` is an error 22003 rather than a silent wrap):
//!
//! | Arrow | PostgreSQL |
//! |---|---|
//! | Boolean | bool |
//! | Int8, Int16, UInt8 | int2 |
//! | Int32, UInt16 | int4 |
//! | Int64, UInt32, UInt64 | int8 |
//! | Float16, Float32 / Float64 | float4 / float8 |
//! | Decimal* | numeric |
//! | Utf8, LargeUtf8, Utf8View | text |
//! | Binary, LargeBinary, BinaryView, FixedSizeBinary | bytea |
//! | Timestamp with / without time zone | timestamptz / timestamp |
//! | Date32, Date64 | date |
//! | Time32, Time64 | time |
//! | Interval, Duration | interval |
//! | lists, structs, maps, Null, anything else | text (rendered) |

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, IntervalMonthDayNanoArray, StringArray,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
    DurationSecondType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    IntervalMonthDayNano, IntervalUnit, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

use crate::error::{SqlError, sqlstate};

/// Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch.
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;

/// The value families the encoder knows; each has one canonical Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Bytea,
    Timestamp,
    Timestamptz,
    Date,
    Time,
    Interval,
}

impl Kind {
    /// The family an Arrow type belongs to (see the module table).
    pub fn of(dt: &DataType) -> Kind {
        match dt {
            DataType::Boolean => Kind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => Kind::Int2,
            DataType::Int32 | DataType::UInt16 => Kind::Int4,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Kind::Int8,
            DataType::Float16 | DataType::Float32 => Kind::Float4,
            DataType::Float64 => Kind::Float8,
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Kind::Numeric,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => Kind::Bytea,
            DataType::Timestamp(_, None) => Kind::Timestamp,
            DataType::Timestamp(_, Some(_)) => Kind::Timestamptz,
            DataType::Date32 | DataType::Date64 => Kind::Date,
            DataType::Time32(_) | DataType::Time64(_) => Kind::Time,
            DataType::Interval(_) | DataType::Duration(_) => Kind::Interval,
            DataType::Dictionary(_, value) => Kind::of(value),
            DataType::RunEndEncoded(_, values) => Kind::of(values.data_type()),
            _ => Kind::Text,
        }
    }

    /// The family of a PostgreSQL type; unknown types are sent as text.
    pub fn of_pg(ty: &Type) -> Kind {
        match *ty {
            Type::BOOL => Kind::Bool,
            Type::INT2 => Kind::Int2,
            Type::INT4 | Type::OID => Kind::Int4,
            Type::INT8 => Kind::Int8,
            Type::FLOAT4 => Kind::Float4,
            Type::FLOAT8 => Kind::Float8,
            Type::NUMERIC => Kind::Numeric,
            Type::BYTEA => Kind::Bytea,
            Type::TIMESTAMP => Kind::Timestamp,
            Type::TIMESTAMPTZ => Kind::Timestamptz,
            Type::DATE => Kind::Date,
            Type::TIME => Kind::Time,
            Type::INTERVAL => Kind::Interval,
            _ => Kind::Text,
        }
    }

    pub fn pg_type(self) -> Type {
        match self {
            Kind::Bool => Type::BOOL,
            Kind::Int2 => Type::INT2,
            Kind::Int4 => Type::INT4,
            Kind::Int8 => Type::INT8,
            Kind::Float4 => Type::FLOAT4,
            Kind::Float8 => Type::FLOAT8,
            Kind::Numeric => Type::NUMERIC,
            Kind::Text => Type::TEXT,
            Kind::Bytea => Type::BYTEA,
            Kind::Timestamp => Type::TIMESTAMP,
            Kind::Timestamptz => Type::TIMESTAMPTZ,
            Kind::Date => Type::DATE,
            Kind::Time => Type::TIME,
            Kind::Interval => Type::INTERVAL,
        }
    }

    /// The Arrow type values of this family are converted to before encoding.
    pub fn arrow_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Numeric => DataType::Decimal128(38, 10),
            Kind::Text => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
        }
    }
}

/// The PostgreSQL type reported for an Arrow column.
pub(crate) fn pg_type_of(dt: &DataType) -> Type {
    Kind::of(dt).pg_type()
}

/// Size and type modifier reported in `RowDescription` for a PostgreSQL type.
pub(crate) fn type_size(ty: &Type) -> i16 {
    match *ty {
        Type::BOOL => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME => 8,
        Type::INTERVAL => 16,
        _ => -1,
    }
}

/// Builds the `FieldInfo`s of a result schema with the per-column formats
/// the client asked for.
pub(crate) fn field_infos(
    schema: &datafusion::arrow::datatypes::Schema,
    format_for: impl Fn(usize) -> FieldFormat,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(idx, field)| {
            let ty = pg_type_of(field.data_type());
            let size = type_size(&ty);
            FieldInfo::new(field.name().clone(), None, None, ty, format_for(idx))
                .with_type_size(size)
        })
        .collect()
}

fn cast_strict(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, SqlError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options).map_err(|e| {
        let code = if matches!(
            to,
            DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Decimal128(..)
        ) && e.to_string().contains("overflow")
            || e.to_string().contains("Can't cast value")
        {
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
        } else {
            sqlstate::DATATYPE_MISMATCH
        };
        SqlError::new(code, format!("cannot convert result column to {to}: {e}"))
    })
}

fn internal(what: &str) -> SqlError {
    SqlError::new(
        sqlstate::INTERNAL_ERROR,
        format!("unexpected array layout while encoding {what}"),
    )
}

/// Converts a result column to the canonical Arrow type of `kind`.
fn prepare(array: &ArrayRef, kind: Kind) -> Result<ArrayRef, SqlError> {
    let dt = array.data_type();
    match kind {
        Kind::Text => {
            if matches!(dt, DataType::Utf8) {
                Ok(Arc::clone(array))
            } else if matches!(dt, DataType::LargeUtf8 | DataType::Utf8View)
                || matches!(dt, DataType::Dictionary(_, v) if Kind::of(v) == Kind::Text && matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
            {
                cast_strict(array, &DataType::Utf8)
            } else {
                let rendered = (0..array.len())
                    .map(|row| text_value(array, row))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Arc::new(StringArray::from(rendered)))
            }
        }
        Kind::Numeric => {
            if matches!(
                dt,
                DataType::Decimal32(..)
                    | DataType::Decimal64(..)
                    | DataType::Decimal128(..)
                    | DataType::Decimal256(..)
            ) {
                Ok(Arc::clone(array))
            } else {
                cast_strict(array, &kind.arrow_type())
            }
        }
        Kind::Timestamp | Kind::Timestamptz => match dt {
            DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(Arc::clone(array)),
            DataType::Timestamp(_, tz) => cast_strict(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            ),
            _ => cast_strict(array, &kind.arrow_type()),
        },
        Kind::Interval => match dt {
            DataType::Duration(unit) => Ok(Arc::new(duration_to_interval(array, *unit)?)),
            DataType::Interval(IntervalUnit::MonthDayNano) => Ok(Arc::clone(array)),
            _ => cast_strict(array, &kind.arrow_type()),
        },
        _ => {
            let target = kind.arrow_type();
            if dt == &target {
                Ok(Arc::clone(array))
            } else {
                cast_strict(array, &target)
            }
        }
    }
}

fn duration_to_interval(
    array: &ArrayRef,
    unit: TimeUnit,
) -> Result<IntervalMonthDayNanoArray, SqlError> {
    let to_nanos = |v: i64, per_sec: i64| -> i64 { v.saturating_mul(1_000_000_000 / per_sec) };
    let values: Vec<Option<IntervalMonthDayNano>> = match unit {
        TimeUnit::Second => array
            .as_primitive_opt::<DurationSecondType>()
            .ok_or_else(|| internal("duration"))?
            .iter()
            .map(|v| v.map(|v| IntervalMonthDayNano::new(0, 0, to_nanos(v, 1))))
            .collect(),
        TimeUnit::Millisecond => array
            .as_primitive_opt::<DurationMillisecondType>()
            .ok_or_else(|| internal("duration"))?
            .iter()
            .map(|v| v.map(|v| IntervalMonthDayNano::new(0, 0, to_nanos(v, 1_000))))
            .collect(),
        TimeUnit::Microsecond => array
            .as_primitive_opt::<DurationMicrosecondType>()
            .ok_or_else(|| internal("duration"))?
            .iter()
            .map(|v| v.map(|v| IntervalMonthDayNano::new(0, 0, to_nanos(v, 1_000_000))))
            .collect(),
        TimeUnit::Nanosecond => array
            .as_primitive_opt::<DurationNanosecondType>()
            .ok_or_else(|| internal("duration"))?
            .iter()
            .map(|v| v.map(|v| IntervalMonthDayNano::new(0, 0, v)))
            .collect(),
    };
    Ok(IntervalMonthDayNanoArray::from(values))
}

/// A result column converted to its canonical type, ready to encode.
struct Column {
    kind: Kind,
    format: FieldFormat,
    array: ArrayRef,
    with_tz: bool,
}

impl Column {
    fn encode(&self, row: usize, buf: &mut BytesMut) -> Result<(), SqlError> {
        if is_null_at(&self.array, row) {
            buf.put_i32(-1);
            return Ok(());
        }
        let len_at = buf.len();
        buf.put_i32(0);
        match self.format {
            FieldFormat::Text => self.write_text(row, buf)?,
            FieldFormat::Binary => self.write_binary(row, buf)?,
        }
        let len = buf.len() - len_at - 4;
        let len = i32::try_from(len).map_err(|_| {
            SqlError::new(
                sqlstate::OUT_OF_MEMORY,
                "value too large for the wire protocol",
            )
        })?;
        buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn write_text(&self, row: usize, buf: &mut BytesMut) -> Result<(), SqlError> {
        let a = &self.array;
        let mut s = String::new();
        match self.kind {
            Kind::Bool => {
                let v = bools(a)?.value(row);
                buf.put_slice(if v { b"t" } else { b"f" });
                return Ok(());
            }
            Kind::Int2 => write_display(&mut s, prim::<Int16Type>(a)?.value(row)),
            Kind::Int4 => write_display(&mut s, prim::<Int32Type>(a)?.value(row)),
            Kind::Int8 => write_display(&mut s, prim::<Int64Type>(a)?.value(row)),
            Kind::Float4 => s = format_float4(prim::<Float32Type>(a)?.value(row)),
            Kind::Float8 => s = format_float8(prim::<Float64Type>(a)?.value(row)),
            Kind::Numeric => s = decimal_string(a, row)?,
            Kind::Text => {
                let v = a.as_string_opt::<i32>().ok_or_else(|| internal("text"))?;
                buf.put_slice(v.value(row).as_bytes());
                return Ok(());
            }
            Kind::Bytea => {
                let v = a.as_binary_opt::<i32>().ok_or_else(|| internal("bytea"))?;
                s = bytea_hex(v.value(row));
            }
            Kind::Timestamp | Kind::Timestamptz => {
                let micros = prim::<TimestampMicrosecondType>(a)?.value(row);
                s = format_timestamp(micros, self.with_tz && self.kind == Kind::Timestamptz);
            }
            Kind::Date => s = format_date(prim::<Date32Type>(a)?.value(row)),
            Kind::Time => s = format_time(prim::<Time64MicrosecondType>(a)?.value(row)),
            Kind::Interval => {
                let v = a
                    .as_primitive_opt::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                    .ok_or_else(|| internal("interval"))?
                    .value(row);
                s = format_interval(v);
            }
        }
        buf.put_slice(s.as_bytes());
        Ok(())
    }

    fn write_binary(&self, row: usize, buf: &mut BytesMut) -> Result<(), SqlError> {
        let a = &self.array;
        match self.kind {
            Kind::Bool => buf.put_u8(u8::from(bools(a)?.value(row))),
            Kind::Int2 => buf.put_i16(prim::<Int16Type>(a)?.value(row)),
            Kind::Int4 => buf.put_i32(prim::<Int32Type>(a)?.value(row)),
            Kind::Int8 => buf.put_i64(prim::<Int64Type>(a)?.value(row)),
            Kind::Float4 => buf.put_f32(prim::<Float32Type>(a)?.value(row)),
            Kind::Float8 => buf.put_f64(prim::<Float64Type>(a)?.value(row)),
            Kind::Numeric => write_numeric_binary(&decimal_string(a, row)?, buf)?,
            Kind::Text => {
                let v = a.as_string_opt::<i32>().ok_or_else(|| internal("text"))?;
                buf.put_slice(v.value(row).as_bytes());
            }
            Kind::Bytea => {
                let v = a.as_binary_opt::<i32>().ok_or_else(|| internal("bytea"))?;
                buf.put_slice(v.value(row));
            }
            Kind::Timestamp | Kind::Timestamptz => {
                let micros = prim::<TimestampMicrosecondType>(a)?.value(row);
                buf.put_i64(micros.saturating_sub(PG_EPOCH_MICROS));
            }
            Kind::Date => buf.put_i32(
                prim::<Date32Type>(a)?
                    .value(row)
                    .saturating_sub(PG_EPOCH_DAYS),
            ),
            Kind::Time => buf.put_i64(prim::<Time64MicrosecondType>(a)?.value(row)),
            Kind::Interval => {
                let v = a
                    .as_primitive_opt::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                    .ok_or_else(|| internal("interval"))?
                    .value(row);
                buf.put_i64(v.nanoseconds / 1_000);
                buf.put_i32(v.days);
                buf.put_i32(v.months);
            }
        }
        Ok(())
    }
}

/// Nullness including arrays without a validity buffer (`Null`, dictionaries,
/// run-end encoded).
fn is_null_at(array: &ArrayRef, row: usize) -> bool {
    array
        .logical_nulls()
        .is_some_and(|nulls| nulls.is_null(row))
}

fn write_display(s: &mut String, v: impl std::fmt::Display) {
    let _ = write!(s, "{v}");
}

fn prim<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    a: &ArrayRef,
) -> Result<&datafusion::arrow::array::PrimitiveArray<T>, SqlError> {
    a.as_primitive_opt::<T>()
        .ok_or_else(|| internal("a number"))
}

fn bools(a: &ArrayRef) -> Result<&BooleanArray, SqlError> {
    a.as_boolean_opt().ok_or_else(|| internal("a boolean"))
}

fn decimal_string(a: &ArrayRef, row: usize) -> Result<String, SqlError> {
    let formatter =
        ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).map_err(SqlError::from)?;
    Ok(formatter.value(row).to_string())
}

/// Encodes every row of `batch` with the given result fields (type and
/// format per column), appending one `DataRow` per row.
pub(crate) fn encode_batch(
    batch: &RecordBatch,
    fields: &[FieldInfo],
    out: &mut Vec<DataRow>,
) -> Result<(), SqlError> {
    if batch.num_columns() != fields.len() {
        return Err(SqlError::new(
            sqlstate::INTERNAL_ERROR,
            format!(
                "result has {} columns but {} were described",
                batch.num_columns(),
                fields.len()
            ),
        ));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(fields)
        .map(|(array, field)| {
            let kind = Kind::of_pg(field.datatype());
            let array = prepare(array, kind)?;
            let with_tz = matches!(array.data_type(), DataType::Timestamp(_, Some(_)))
                || kind == Kind::Timestamptz;
            Ok(Column {
                kind,
                format: field.format(),
                array,
                with_tz,
            })
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    let field_count = i16::try_from(columns.len())
        .map_err(|_| SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, "too many result columns"))?;
    for row in 0..batch.num_rows() {
        let mut buf = BytesMut::with_capacity(16 * columns.len());
        for column in &columns {
            column.encode(row, &mut buf)?;
        }
        out.push(DataRow::new(buf, field_count));
    }
    Ok(())
}

/// The PostgreSQL text form of any Arrow value; `None` for NULL. Lists are
/// rendered as PostgreSQL array literals (`{1,2,NULL}`).
pub(crate) fn text_value(array: &ArrayRef, row: usize) -> Result<Option<String>, SqlError> {
    if is_null_at(array, row) {
        return Ok(None);
    }
    let dt = array.data_type();
    let list_item = match dt {
        DataType::List(_) => array.as_list_opt::<i32>().map(|l| l.value(row)),
        DataType::LargeList(_) => array.as_list_opt::<i64>().map(|l| l.value(row)),
        DataType::FixedSizeList(..) => array.as_fixed_size_list_opt().map(|l| l.value(row)),
        DataType::ListView(_) => array.as_list_view_opt::<i32>().map(|l| l.value(row)),
        DataType::LargeListView(_) => array.as_list_view_opt::<i64>().map(|l| l.value(row)),
        _ => None,
    };
    if let Some(items) = list_item {
        let mut s = String::from("{");
        for i in 0..items.len() {
            if i > 0 {
                s.push(',');
            }
            match text_value(&items, i)? {
                None => s.push_str("NULL"),
                Some(v) => push_array_element(&mut s, &v),
            }
        }
        s.push('}');
        return Ok(Some(s));
    }
    let kind = Kind::of(dt);
    if kind == Kind::Text && !is_string(dt) {
        let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
            .map_err(SqlError::from)?;
        return Ok(Some(formatter.value(row).to_string()));
    }
    let single = array.slice(row, 1);
    let column = Column {
        kind,
        format: FieldFormat::Text,
        array: prepare(&single, kind)?,
        with_tz: matches!(dt, DataType::Timestamp(_, Some(_))),
    };
    let mut buf = BytesMut::new();
    column.write_text(0, &mut buf)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn is_string(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        DataType::RunEndEncoded(_, v) => is_string(v.data_type()),
        _ => false,
    }
}

fn push_array_element(s: &mut String, v: &str) {
    let needs_quotes = v.is_empty()
        || v.eq_ignore_ascii_case("null")
        || v.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if !needs_quotes {
        s.push_str(v);
        return;
    }
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
}

/// `bytea` in PostgreSQL's hex output format.
pub(crate) fn bytea_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// float8 output as PostgreSQL prints it (shortest exact digits, exponent
/// outside 1e-4..1e15).
pub(crate) fn format_float8(v: f64) -> String {
    format_float(v, format!("{v:e}"), 15, || format!("{v}"))
}

/// float4 output as PostgreSQL prints it.
pub(crate) fn format_float4(v: f32) -> String {
    format_float(f64::from(v), format!("{v:e}"), 6, || format!("{v}"))
}

fn format_float(v: f64, sci: String, max_exp: i32, plain: impl Fn() -> String) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if v == 0.0 {
        return plain();
    }
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return plain();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..max_exp).contains(&exp) {
        return plain();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Civil date (proleptic Gregorian) from days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 from a civil date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_year(s: &mut String, y: i64) {
    if y <= 0 {
        // PostgreSQL has no year 0: 1 BC is year 0 in the proleptic calendar.
        let _ = write!(s, "{:04}", 1 - y);
    } else {
        let _ = write!(s, "{y:04}");
    }
}

pub(crate) fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    let mut s = String::with_capacity(13);
    format_year(&mut s, y);
    let _ = write!(s, "-{m:02}-{d:02}");
    if y <= 0 {
        s.push_str(" BC");
    }
    s
}

fn push_time_of_day(s: &mut String, micros_of_day: i64) {
    let secs = micros_of_day / 1_000_000;
    let frac = micros_of_day % 1_000_000;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let digits = format!("{frac:06}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
}

pub(crate) fn format_time(micros: i64) -> String {
    let mut s = String::with_capacity(15);
    push_time_of_day(&mut s, micros.rem_euclid(86_400_000_000));
    s
}

pub(crate) fn format_timestamp(micros: i64, with_tz: bool) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let of_day = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(32);
    format_year(&mut s, y);
    let _ = write!(s, "-{m:02}-{d:02} ");
    push_time_of_day(&mut s, of_day);
    if with_tz {
        s.push_str("+00");
    }
    if y <= 0 {
        s.push_str(" BC");
    }
    s
}

/// An interval in PostgreSQL's default (`postgres`) output style.
pub(crate) fn format_interval(v: IntervalMonthDayNano) -> String {
    let mut parts: Vec<String> = Vec::new();
    let years = v.months / 12;
    let months = v.months % 12;
    let plural =
        |n: i32, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years, "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months, "mon", "mons"));
    }
    if v.days != 0 {
        parts.push(plural(v.days, "day", "days"));
    }
    let micros = v.nanoseconds / 1_000;
    if micros != 0 || parts.is_empty() {
        let mut t = String::new();
        if micros < 0 {
            t.push('-');
        }
        let abs = micros.unsigned_abs();
        let secs = abs / 1_000_000;
        let frac = abs % 1_000_000;
        let _ = write!(
            t,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        if frac != 0 {
            let digits = format!("{frac:06}");
            t.push('.');
            t.push_str(digits.trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

/// Writes a decimal string (`-123.4500`) in PostgreSQL's binary `numeric`
/// format: base-10000 digits with weight, sign and display scale.
pub(crate) fn write_numeric_binary(text: &str, buf: &mut BytesMut) -> Result<(), SqlError> {
    let bad = || {
        SqlError::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("invalid numeric value: {text}"),
        )
    };
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || int_part.is_empty() && frac_part.is_empty()
    {
        return Err(bad());
    }
    let dscale = u16::try_from(frac_part.len()).map_err(|_| bad())?;
    let int_part = int_part.trim_start_matches('0');
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let int_digits = format!("{}{int_part}", "0".repeat(int_pad));
    let frac_digits = format!("{frac_part}{}", "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
            .collect()
    };
    let int_groups = group(&int_digits);
    let mut digits: Vec<i16> = int_groups.clone();
    digits.extend(group(&frac_digits));
    let mut weight = i32::try_from(int_groups.len()).map_err(|_| bad())? - 1;
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= i32::try_from(leading).map_err(|_| bad())?;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let (weight, sign) = if digits.is_empty() {
        (0, 0x0000u16)
    } else {
        (weight, if negative { 0x4000 } else { 0x0000 })
    };
    buf.put_i16(i16::try_from(digits.len()).map_err(|_| bad())?);
    buf.put_i16(i16::try_from(weight).map_err(|_| bad())?);
    buf.put_u16(sign);
    buf.put_u16(dscale);
    for d in digits {
        buf.put_i16(d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(format_float8(1.5), "1.5");
        assert_eq!(format_float8(1e20), "1e+20");
        assert_eq!(format_float8(0.00001), "1e-05");
        assert_eq!(format_float8(f64::NAN), "NaN");
        assert_eq!(format_float8(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(format_float4(1234567.0), "1.234567e+06");
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(PG_EPOCH_DAYS), "2000-01-01");
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(
            format_timestamp(1_700_000_000_123_000, true),
            "2023-11-14 22:13:20.123+00"
        );
        assert_eq!(format_timestamp(0, false), "1970-01-01 00:00:00");
    }

    #[test]
    fn intervals() {
        assert_eq!(
            format_interval(IntervalMonthDayNano::new(14, 3, 3_723_000_000_000)),
            "1 year 2 mons 3 days 01:02:03"
        );
        assert_eq!(
            format_interval(IntervalMonthDayNano::new(0, 0, 0)),
            "00:00:00"
        );
    }

    #[test]
    fn numeric_binary() {
        let mut buf = BytesMut::new();
        write_numeric_binary("-12345.678", &mut buf).expect("valid numeric");
        // ndigits 3, weight 1, sign negative, dscale 3, digits 1 2345 6780
        assert_eq!(
            buf.as_ref(),
            &[0, 3, 0, 1, 0x40, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        let mut zero = BytesMut::new();
        write_numeric_binary("0.00", &mut zero).expect("valid numeric");
        assert_eq!(zero.as_ref(), &[0, 0, 0, 0, 0, 0, 0, 2]);
        assert!(write_numeric_binary("abc", &mut BytesMut::new()).is_err());
    }

    #[test]
    fn array_literals() {
        let mut s = String::new();
        push_array_element(&mut s, "a b");
        assert_eq!(s, "\"a b\"");
    }
}

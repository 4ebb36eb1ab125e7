//! Bind parameters: PostgreSQL text/binary values → DataFusion scalars.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;

use crate::encode::{Kind, PG_EPOCH_DAYS, PG_EPOCH_MICROS, days_from_civil};
use crate::error::{SqlError, sqlstate};

/// The PostgreSQL type announced for a parameter DataFusion inferred as `dt`
/// (`None`: nothing to infer from, sent as text).
pub(crate) fn pg_param_type(dt: Option<&DataType>) -> Type {
    match dt {
        None | Some(DataType::Null) => Type::TEXT,
        Some(dt) => crate::encode::pg_type_of(dt),
    }
}

/// Decodes one bound parameter sent as `ty` in `format`, then converts it to
/// the type DataFusion inferred for the placeholder (when it inferred one).
pub(crate) fn decode_param(
    index: usize,
    value: Option<&[u8]>,
    format: FieldFormat,
    ty: &Type,
    target: Option<&DataType>,
) -> Result<ScalarValue, SqlError> {
    let kind = Kind::of_pg(ty);
    let scalar = match value {
        None => ScalarValue::try_from(&kind.arrow_type()).map_err(SqlError::from)?,
        Some(bytes) => match format {
            FieldFormat::Text => decode_text(bytes, kind),
            FieldFormat::Binary => decode_binary(bytes, kind),
        }
        .map_err(|msg| {
            let code = match format {
                FieldFormat::Text => sqlstate::INVALID_TEXT_REPRESENTATION,
                FieldFormat::Binary => sqlstate::INVALID_BINARY_REPRESENTATION,
            };
            SqlError::new(
                code,
                format!(
                    "invalid value for parameter ${} of type {}: {msg}",
                    index + 1,
                    ty.name()
                ),
            )
        })?,
    };
    match target {
        Some(target) if target != &scalar.data_type() && !matches!(target, DataType::Null) => {
            scalar.cast_to(target).map_err(|e| {
                SqlError::new(
                    sqlstate::DATATYPE_MISMATCH,
                    format!(
                        "parameter ${} of type {} cannot be used as {target}: {}",
                        index + 1,
                        ty.name(),
                        SqlError::from(e).message
                    ),
                )
            })
        }
        _ => Ok(scalar),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_owned())
}

fn decode_text(bytes: &[u8], kind: Kind) -> Result<ScalarValue, String> {
    let s = utf8(bytes)?;
    let t = s.trim();
    let num_err = |e: &dyn std::fmt::Display| format!("\"{t}\": {e}");
    Ok(match kind {
        Kind::Bool => ScalarValue::Boolean(Some(parse_bool(t)?)),
        Kind::Int2 => ScalarValue::Int16(Some(t.parse().map_err(|e| num_err(&e))?)),
        Kind::Int4 => ScalarValue::Int32(Some(t.parse().map_err(|e| num_err(&e))?)),
        Kind::Int8 => ScalarValue::Int64(Some(t.parse().map_err(|e| num_err(&e))?)),
        Kind::Float4 => ScalarValue::Float32(Some(parse_float(t)? as f32)),
        Kind::Float8 => ScalarValue::Float64(Some(parse_float(t)?)),
        Kind::Numeric => parse_numeric(t)?,
        Kind::Text => ScalarValue::Utf8(Some(s.to_owned())),
        Kind::Bytea => ScalarValue::Binary(Some(parse_bytea(s)?)),
        Kind::Timestamp => ScalarValue::TimestampMicrosecond(Some(parse_timestamp(t)?.0), None),
        Kind::Timestamptz => {
            ScalarValue::TimestampMicrosecond(Some(parse_timestamp(t)?.0), Some("+00:00".into()))
        }
        Kind::Date => ScalarValue::Date32(Some(parse_date(t)?)),
        Kind::Time => ScalarValue::Time64Microsecond(Some(parse_time(t)?)),
        Kind::Interval => ScalarValue::Utf8(Some(s.to_owned())),
    })
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}

fn decode_binary(bytes: &[u8], kind: Kind) -> Result<ScalarValue, String> {
    Ok(match kind {
        Kind::Bool => ScalarValue::Boolean(Some(fixed::<1>(bytes)?[0] != 0)),
        Kind::Int2 => ScalarValue::Int16(Some(i16::from_be_bytes(fixed(bytes)?))),
        Kind::Int4 => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(bytes)?))),
        Kind::Int8 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(bytes)?))),
        Kind::Float4 => ScalarValue::Float32(Some(f32::from_be_bytes(fixed(bytes)?))),
        Kind::Float8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(bytes)?))),
        Kind::Numeric => parse_numeric(&numeric_from_binary(bytes)?)?,
        Kind::Text => ScalarValue::Utf8(Some(utf8(bytes)?.to_owned())),
        Kind::Bytea => ScalarValue::Binary(Some(bytes.to_vec())),
        Kind::Timestamp | Kind::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(bytes)?).saturating_add(PG_EPOCH_MICROS);
            let tz = (kind == Kind::Timestamptz).then(|| "+00:00".into());
            ScalarValue::TimestampMicrosecond(Some(micros), tz)
        }
        Kind::Date => ScalarValue::Date32(Some(
            i32::from_be_bytes(fixed(bytes)?).saturating_add(PG_EPOCH_DAYS),
        )),
        Kind::Time => ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(fixed(bytes)?))),
        Kind::Interval => {
            let raw: [u8; 16] = fixed(bytes)?;
            let micros = i64::from_be_bytes(raw[0..8].try_into().map_err(|_| "interval")?);
            let days = i32::from_be_bytes(raw[8..12].try_into().map_err(|_| "interval")?);
            let months = i32::from_be_bytes(raw[12..16].try_into().map_err(|_| "interval")?);
            ScalarValue::IntervalMonthDayNano(Some(
                datafusion::arrow::datatypes::IntervalMonthDayNano::new(
                    months,
                    days,
                    micros.saturating_mul(1_000),
                ),
            ))
        }
    })
}

fn parse_bool(t: &str) -> Result<bool, String> {
    match t.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("\"{t}\" is not a boolean")),
    }
}

fn parse_float(t: &str) -> Result<f64, String> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => Ok(f64::NAN),
        "infinity" | "+infinity" | "inf" => Ok(f64::INFINITY),
        "-infinity" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => t.parse().map_err(|e| format!("\"{t}\": {e}")),
    }
}

/// A decimal string → `Decimal128` with the string's own scale.
fn parse_numeric(t: &str) -> Result<ScalarValue, String> {
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let all: String = format!("{int_part}{frac_part}");
    if all.is_empty() || !all.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{t}\" is not a numeric value"));
    }
    let scale = i8::try_from(frac_part.len()).map_err(|_| "too many fraction digits")?;
    let trimmed = all.trim_start_matches('0');
    if trimmed.len() > 38 {
        return Err(format!("\"{t}\" has more than 38 digits"));
    }
    let mut value: i128 = if trimmed.is_empty() {
        0
    } else {
        trimmed
            .parse()
            .map_err(|_| format!("\"{t}\" is out of range"))?
    };
    if negative {
        value = -value;
    }
    let precision = u8::try_from(
        trimmed
            .len()
            .max(usize::try_from(scale).unwrap_or(0))
            .max(1),
    )
    .map_err(|_| "precision")?;
    Ok(ScalarValue::Decimal128(
        Some(value),
        precision.min(38),
        scale,
    ))
}

/// Binary `numeric` → its decimal string.
fn numeric_from_binary(bytes: &[u8]) -> Result<String, String> {
    let header = bytes.get(0..8).ok_or("numeric value too short")?;
    let read_i16 = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
    let ndigits = usize::try_from(read_i16(&header[0..2])).map_err(|_| "negative digit count")?;
    let weight = i32::from(read_i16(&header[2..4]));
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let dscale = usize::from(u16::from_be_bytes([header[6], header[7]]));
    if sign == 0xC000 {
        return Err("NaN is not supported".to_owned());
    }
    let body = bytes
        .get(8..8 + 2 * ndigits)
        .ok_or("numeric value truncated")?;
    let digits: Vec<i16> = body.chunks(2).map(read_i16).collect();
    let mut int_part = String::new();
    for i in 0..=weight.max(-1) {
        let d = usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut pos = weight + 1;
    while frac.len() < dscale {
        let d = if pos < 0 {
            0
        } else {
            usize::try_from(pos)
                .ok()
                .and_then(|p| digits.get(p))
                .copied()
                .unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        pos += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if dscale > 0 {
        format!("{sign}{int_part}.{frac}")
    } else {
        format!("{sign}{int_part}")
    })
}

fn parse_bytea(s: &str) -> Result<Vec<u8>, String> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return Err("odd number of hex digits".to_owned());
        }
        return hex
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).map_err(|_| "invalid hex digit")?;
                u8::from_str_radix(text, 16).map_err(|_| "invalid hex digit".to_owned())
            })
            .collect();
    }
    // Escape format: backslash-octal and doubled backslashes.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            let octal = bytes.get(i + 1..i + 4).ok_or("invalid escape")?;
            let text = std::str::from_utf8(octal).map_err(|_| "invalid escape")?;
            out.push(u8::from_str_radix(text, 8).map_err(|_| "invalid escape")?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn parse_date(t: &str) -> Result<i32, String> {
    let bad = || format!("\"{t}\" is not a date (expected YYYY-MM-DD)");
    let mut it = t.splitn(3, '-');
    let y: i64 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let m: u32 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let d: u32 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    i32::try_from(days_from_civil(y, m, d)).map_err(|_| bad())
}

/// `HH:MM[:SS[.ffffff]]` → microseconds since midnight.
fn parse_time(t: &str) -> Result<i64, String> {
    let bad = || format!("\"{t}\" is not a time (expected HH:MM:SS)");
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut it = hms.split(':');
    let h: i64 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let m: i64 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let s: i64 = match it.next() {
        Some(v) => v.parse().map_err(|_| bad())?,
        None => 0,
    };
    if it.next().is_some()
        || !(0..=24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..=60).contains(&s)
    {
        return Err(bad());
    }
    let mut micros = 0i64;
    if !frac.is_empty() {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let padded = format!("{:0<6}", &frac[..frac.len().min(6)]);
        micros = padded.parse().map_err(|_| bad())?;
    }
    Ok(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.ffffff][Z|±HH[:MM]]` → microseconds since the
/// Unix epoch in UTC, and whether an offset was given.
fn parse_timestamp(t: &str) -> Result<(i64, bool), String> {
    let bad = || format!("\"{t}\" is not a timestamp");
    let (date, rest) = match t.find([' ', 'T']) {
        Some(pos) => (&t[..pos], t[pos + 1..].trim()),
        None => (t, ""),
    };
    let days = i64::from(parse_date(date)?);
    if rest.is_empty() {
        return Ok((days * 86_400_000_000, false));
    }
    let (time, offset_secs, has_offset) = if let Some(time) = rest.strip_suffix('Z') {
        (time, 0i64, true)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (time, off) = rest.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (hh, mm) = match off.split_once(':') {
            Some((h, m)) => (h, m),
            None if off.len() == 4 => off.split_at_checked(2).ok_or_else(bad)?,
            None => (off, "0"),
        };
        let hh: i64 = hh.parse().map_err(|_| bad())?;
        let mm: i64 = mm.parse().map_err(|_| bad())?;
        (time.trim(), sign * (hh * 3600 + mm * 60), true)
    } else {
        (rest, 0, false)
    };
    let micros = days * 86_400_000_000 + parse_time(time)? - offset_secs * 1_000_000;
    Ok((micros, has_offset))
}

/// The Arrow type a client-declared parameter type decodes to.
pub(crate) fn arrow_type_of_pg(ty: &Type) -> DataType {
    match Kind::of_pg(ty) {
        Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        kind => kind.arrow_type(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_params() {
        assert_eq!(
            decode_param(
                0,
                Some(b"42"),
                FieldFormat::Text,
                &Type::INT4,
                Some(&DataType::Int64)
            )
            .expect("int"),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            decode_param(0, Some(b"t"), FieldFormat::Text, &Type::BOOL, None).expect("bool"),
            ScalarValue::Boolean(Some(true))
        );
        let err = decode_param(0, Some(b"x1"), FieldFormat::Text, &Type::INT8, None)
            .expect_err("not a number");
        assert_eq!(err.code, sqlstate::INVALID_TEXT_REPRESENTATION);
        assert_eq!(
            decode_param(0, None, FieldFormat::Text, &Type::TEXT, None).expect("null"),
            ScalarValue::Utf8(None)
        );
    }

    #[test]
    fn binary_params() {
        assert_eq!(
            decode_param(
                0,
                Some(&7i64.to_be_bytes()),
                FieldFormat::Binary,
                &Type::INT8,
                None
            )
            .expect("int8"),
            ScalarValue::Int64(Some(7))
        );
        let err = decode_param(0, Some(&[1, 2]), FieldFormat::Binary, &Type::INT4, None)
            .expect_err("short");
        assert_eq!(err.code, sqlstate::INVALID_BINARY_REPRESENTATION);
    }

    #[test]
    fn timestamps_and_bytea() {
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01").expect("ts").0,
            1_000_000
        );
        assert_eq!(
            parse_timestamp("2000-01-01T01:00:00+01:00").expect("ts").0,
            PG_EPOCH_MICROS
        );
        assert_eq!(parse_bytea("\\x0aff").expect("hex"), vec![0x0a, 0xff]);
        assert_eq!(
            parse_bytea("a\\\\b\\001").expect("escape"),
            b"a\\b\x01".to_vec()
        );
    }

    #[test]
    fn numeric_roundtrip() {
        let mut buf = bytes::BytesMut::new();
        crate::encode::write_numeric_binary("-12345.678", &mut buf).expect("encode");
        assert_eq!(numeric_from_binary(&buf).expect("decode"), "-12345.678");
        assert_eq!(
            parse_numeric("-1.50").expect("numeric"),
            ScalarValue::Decimal128(Some(-150), 3, 2)
        );
    }
}

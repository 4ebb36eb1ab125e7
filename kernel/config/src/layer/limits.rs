//! `[[limits]]`: flow-control limits declared in the configuration. At start the node puts each
//! into the registry (creating or replacing it by name), as `POST /limits` would; a limit taken
//! out of the file stays until removed through the admin API. Like `[[cluster.nodes]]`, the
//! array is replaced as a whole by the highest layer declaring it.

use config::{Value, ValueKind};
use holdfast_types::Limit;

use super::{
    Layer, Range, Sourced, describe, int, missing, non_empty, sorted, string, table, unknown,
};
use crate::error::Error;

/// `max_concurrency` and `burst`.
const PERMITS: Range = Range::between(1, holdfast_schema::limit::MAX_CONCURRENCY as i128);

/// Reads the `[[limits]]` array; every entry is complete on its own.
pub(crate) fn limits(
    value: Value,
    key: &str,
    layer: &Layer<'_>,
) -> Result<Sourced<Vec<Limit>>, Error> {
    if layer.is_env() {
        return Err(Error::Unsupported {
            origin: layer.origin(key),
            key: key.to_owned(),
            reason: "limits cannot be set from the environment; declare [[limits]] in the \
                     config file",
        });
    }
    let items = match value.kind {
        ValueKind::Array(items) => items,
        other => {
            return Err(Error::InvalidType {
                origin: layer.origin(key),
                key: key.to_owned(),
                found: describe(&other),
                expected: "an array of tables ([[limits]])",
            });
        }
    };
    let mut limits: Vec<Limit> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let entry = format!("{key}[{index}]");
        let limit = entry_of(table(item, &entry, layer)?, &entry, layer)?;
        if let Some(first) = limits.iter().position(|l| l.name == limit.name) {
            return Err(Error::InvalidValue {
                origin: layer.origin(&entry),
                key: format!("{entry}.name"),
                value: format!("{:?}", limit.name),
                expected: format!("a name not already used by {key}[{first}]"),
            });
        }
        limits.push(limit);
    }
    Ok(Sourced {
        value: limits,
        origin: layer.origin(key),
    })
}

/// One `[[limits]]` entry.
fn entry_of(
    fields: config::Map<String, Value>,
    entry: &str,
    layer: &Layer<'_>,
) -> Result<Limit, Error> {
    let mut limit = Limit {
        name: String::new(),
        service: String::new(),
        handler: None,
        key_prefix: None,
        max_concurrency: None,
        rate: None,
    };
    let mut rate: Option<(String, String)> = None;
    let mut burst = None;
    for (name, value) in sorted(fields) {
        let field = format!("{entry}.{name}");
        let text = |expected| non_empty(&value, &field, expected, layer).map(|s| s.value);
        match name.as_str() {
            "name" => limit.name = text("a limit name")?,
            "service" => limit.service = text("a service name")?,
            "handler" => limit.handler = Some(text("a handler name")?),
            "key_prefix" => {
                limit.key_prefix = Some(string(&value, &field, "a key prefix", layer)?.to_owned());
            }
            "max_concurrency" => {
                limit.max_concurrency = Some(int::<u32>(&value, &field, PERMITS, layer)?.value);
            }
            "rate" => rate = Some((text("a rate like \"50/s\"")?, field)),
            "burst" => burst = Some(int::<u32>(&value, &field, PERMITS, layer)?.value),
            _ => return Err(unknown(&field, layer)),
        }
    }
    for required in ["name", "service"] {
        let empty = match required {
            "name" => limit.name.is_empty(),
            _ => limit.service.is_empty(),
        };
        if empty {
            return Err(missing(&format!("{entry}.{required}"), layer));
        }
    }
    if let Some((text, field)) = rate {
        let parsed = holdfast_schema::limit::parse_rate(&text, burst).map_err(|reason| {
            Error::InvalidValue {
                origin: layer.origin(&field),
                key: field.clone(),
                value: format!("{text:?}"),
                expected: reason,
            }
        })?;
        limit.rate = Some(parsed);
    } else if burst.is_some() {
        return Err(missing(&format!("{entry}.rate"), layer));
    }
    if let Some(reason) = holdfast_schema::limit::invalid(&limit) {
        return Err(Error::InvalidValue {
            origin: layer.origin(entry),
            key: entry.to_owned(),
            value: format!("{:?}", limit.name),
            expected: reason,
        });
    }
    Ok(limit)
}

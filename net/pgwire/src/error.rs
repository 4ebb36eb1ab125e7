//! Errors: the server's own error type and the SQL errors sent to clients
//! as `ErrorResponse`s with a SQLSTATE.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError, SEVERITY_ERROR};

/// Errors of the server itself (binding, accepting); query errors go to the
/// client instead and never end up here.
#[derive(Debug, thiserror::Error)]
pub enum PgServerError {
    /// The listening socket could not be bound or inspected.
    #[error("cannot bind the PostgreSQL endpoint: {0}")]
    Bind(#[source] std::io::Error),
    /// The accept loop task panicked or was aborted.
    #[error("the PostgreSQL endpoint task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// SQLSTATE codes used by the endpoint (see PostgreSQL's errcodes.txt).
pub(crate) mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const UNDEFINED_PARAMETER: &str = "42P02";
    pub const QUERY_CANCELED: &str = "57014";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// A query error as the client sees it: a SQLSTATE plus a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (SQLSTATE {code})")]
pub(crate) struct SqlError {
    pub code: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(sqlstate::SYNTAX_ERROR, message)
    }

    pub fn canceled_by_timeout() -> Self {
        Self::new(
            sqlstate::QUERY_CANCELED,
            "canceling statement due to statement timeout",
        )
    }

    pub fn read_only(what: &str) -> Self {
        Self::new(
            sqlstate::READ_ONLY_SQL_TRANSACTION,
            format!("cannot execute {what} in a read-only session"),
        )
    }

    /// The `ErrorInfo` pgwire turns into an `ErrorResponse`.
    pub fn into_error_info(self) -> ErrorInfo {
        ErrorInfo::new(
            SEVERITY_ERROR.to_owned(),
            self.code.to_owned(),
            self.message,
        )
    }

    pub fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(self.into_error_info()))
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        classify(&e)
    }
}

impl From<ArrowError> for SqlError {
    fn from(e: ArrowError) -> Self {
        classify_arrow(&e)
    }
}

/// Maps a DataFusion error (possibly wrapped in context, diagnostics or
/// shared handles) to a SQLSTATE and a message without DataFusion's prefixes.
fn classify(e: &DataFusionError) -> SqlError {
    let e = innermost(e);
    match e {
        DataFusionError::SQL(parser_error, _) => SqlError::syntax(parser_message(parser_error)),
        DataFusionError::SchemaError(schema_error, _) => {
            use datafusion::common::SchemaError;
            let code = match schema_error.as_ref() {
                SchemaError::FieldNotFound { .. } => sqlstate::UNDEFINED_COLUMN,
                SchemaError::AmbiguousReference { .. } => sqlstate::AMBIGUOUS_COLUMN,
                SchemaError::DuplicateQualifiedField { .. }
                | SchemaError::DuplicateUnqualifiedField { .. } => sqlstate::DUPLICATE_COLUMN,
            };
            SqlError::new(code, schema_error.to_string())
        }
        DataFusionError::ArrowError(arrow_error, _) => classify_arrow(arrow_error),
        DataFusionError::NotImplemented(msg) => {
            SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, msg.clone())
        }
        DataFusionError::Plan(msg) => {
            let code = classify_plan_message(msg);
            SqlError::new(code, postgres_message(code, msg))
        }
        DataFusionError::Execution(msg) => {
            let code = if msg.contains("Cast error") || msg.contains("Cannot cast") {
                sqlstate::INVALID_TEXT_REPRESENTATION
            } else if msg.contains("Divide by zero") || msg.contains("division by zero") {
                sqlstate::DIVISION_BY_ZERO
            } else if msg.contains("overflow") {
                sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
            } else {
                sqlstate::INTERNAL_ERROR
            };
            SqlError::new(code, msg.clone())
        }
        DataFusionError::ResourcesExhausted(msg) => {
            SqlError::new(sqlstate::OUT_OF_MEMORY, msg.clone())
        }
        DataFusionError::Configuration(msg) => {
            SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, msg.clone())
        }
        other => SqlError::new(sqlstate::INTERNAL_ERROR, other.message().into_owned()),
    }
}

/// Unwraps context, diagnostic, shared and collection wrappers, and external
/// errors that are DataFusion errors themselves.
fn innermost(mut e: &DataFusionError) -> &DataFusionError {
    loop {
        e = match e {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => inner,
            DataFusionError::Shared(inner) => inner.as_ref(),
            DataFusionError::Collection(errors) => match errors.first() {
                Some(first) => first,
                None => return e,
            },
            DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
                Some(inner) => inner,
                None => return e,
            },
            DataFusionError::ArrowError(arrow_error, _) => match arrow_error.as_ref() {
                ArrowError::ExternalError(inner) => match inner.downcast_ref::<DataFusionError>() {
                    Some(inner) => inner,
                    None => return e,
                },
                _ => return e,
            },
            _ => return e,
        };
    }
}

fn parser_message(e: &ParserError) -> String {
    match e {
        ParserError::TokenizerError(msg) | ParserError::ParserError(msg) => {
            format!("syntax error: {msg}")
        }
        ParserError::RecursionLimitExceeded => "statement is nested too deeply".to_owned(),
    }
}

/// PostgreSQL's wording for the most common errors (`relation "x" does
/// not exist`), DataFusion's message otherwise.
fn postgres_message(code: &str, msg: &str) -> String {
    if code == sqlstate::UNDEFINED_TABLE
        && let Some(rest) = msg.strip_prefix("table '")
        && let Some((name, _)) = rest.split_once('\'')
    {
        let name = name.rsplit('.').next().unwrap_or(name);
        return format!("relation \"{name}\" does not exist");
    }
    msg.to_owned()
}

fn classify_plan_message(msg: &str) -> &'static str {
    let lower = msg.to_ascii_lowercase();
    if lower.starts_with("table '") && lower.contains("not found") {
        sqlstate::UNDEFINED_TABLE
    } else if lower.contains("failed to resolve schema") {
        sqlstate::INVALID_SCHEMA_NAME
    } else if lower.contains("no field named")
        || (lower.starts_with("column '") && lower.contains("not found"))
    {
        sqlstate::UNDEFINED_COLUMN
    } else if lower.contains("invalid function")
        || lower.contains("unknown function")
        || lower.contains("no function matches")
        || lower.contains("function") && lower.contains("not found")
    {
        sqlstate::UNDEFINED_FUNCTION
    } else if lower.contains("coerc")
        || lower.contains("cannot cast")
        || lower.contains("cannot infer common")
        || lower.contains("type mismatch")
        || lower.contains("does not support")
        || lower.contains("unsupported sql type")
        || lower.contains("expected a boolean")
        || lower.contains("must be boolean")
    {
        sqlstate::DATATYPE_MISMATCH
    } else if lower.contains("unsupported") || lower.contains("not supported") {
        sqlstate::FEATURE_NOT_SUPPORTED
    } else {
        sqlstate::INTERNAL_ERROR
    }
}

fn classify_arrow(e: &ArrowError) -> SqlError {
    let code = match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) => {
            sqlstate::INVALID_TEXT_REPRESENTATION
        }
        ArrowError::DivideByZero => sqlstate::DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::InvalidArgumentError(_) => sqlstate::INVALID_PARAMETER_VALUE,
        ArrowError::MemoryError(_) => sqlstate::OUT_OF_MEMORY,
        ArrowError::ExternalError(inner) => {
            if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                return classify(df);
            }
            sqlstate::INTERNAL_ERROR
        }
        _ => sqlstate::INTERNAL_ERROR,
    };
    SqlError::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_messages_map_to_sqlstates() {
        assert_eq!(
            classify_plan_message("table 'datafusion.public.nope' not found"),
            sqlstate::UNDEFINED_TABLE
        );
        assert_eq!(
            classify_plan_message("Cannot coerce arithmetic expression Boolean + Int64"),
            sqlstate::DATATYPE_MISMATCH
        );
        assert_eq!(
            classify_plan_message("Invalid function 'nope'"),
            sqlstate::UNDEFINED_FUNCTION
        );
    }

    #[test]
    fn wrapped_errors_are_unwrapped() {
        let inner = DataFusionError::Plan("table 'x' not found".to_owned());
        let wrapped = DataFusionError::Context("while planning".to_owned(), Box::new(inner));
        let e = SqlError::from(wrapped);
        assert_eq!(e.code, sqlstate::UNDEFINED_TABLE);
        assert_eq!(e.message, "relation \"x\" does not exist");
    }
}

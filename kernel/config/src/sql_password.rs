//! `[sql] password` and `[sql] password_file`: the password psql clients must present
//! (SCRAM-SHA-256 on the PostgreSQL-wire listener). One password at a time.

use std::fmt;
use std::path::{Path, PathBuf};

use config::{Value, ValueKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Origin};
use crate::layer::Sourced;

/// The psql password; its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SqlPassword(String);

impl SqlPassword {
    /// A password from its text.
    pub fn new(text: impl Into<String>) -> SqlPassword {
        SqlPassword(text.into())
    }

    /// The secret itself, to hand to the listener.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SqlPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqlPassword(<redacted>)")
    }
}

/// `sql.password`: a non-empty string (taken as written, also from the environment).
pub(crate) fn password(
    value: &Value,
    key: &str,
    origin: Origin,
) -> Result<Sourced<SqlPassword>, Error> {
    match &value.kind {
        ValueKind::String(text) if !text.is_empty() => Ok(Sourced {
            value: SqlPassword(text.clone()),
            origin,
        }),
        ValueKind::String(_) => Err(Error::InvalidValue {
            origin,
            key: key.to_owned(),
            value: "\"\"".to_owned(),
            expected: "a non-empty password".to_owned(),
        }),
        // The value is never echoed: it may be the password written without quotes.
        _ => Err(Error::InvalidType {
            origin,
            key: key.to_owned(),
            found: "a value that is not a string".to_owned(),
            expected: "a password string",
        }),
    }
}

/// The password of the merged layers: `sql.password`, or the first line of
/// `sql.password_file` (which must exist and start with a non-empty line); both set is an
/// error naming `sql.password_file`.
pub(crate) fn resolve(
    inline: Option<Sourced<SqlPassword>>,
    file: Option<&Sourced<PathBuf>>,
) -> Result<Option<SqlPassword>, Error> {
    match (inline, file) {
        (None, None) => Ok(None),
        (Some(inline), None) => Ok(Some(inline.value)),
        (None, Some(file)) => read_password_file(&file.value, &file.origin).map(Some),
        (Some(inline), Some(file)) => Err(Error::InvalidValue {
            origin: file.origin.clone(),
            key: "sql.password_file".to_owned(),
            value: format!("{:?}", file.value.display().to_string()),
            expected: format!(
                "either sql.password or sql.password_file, not both (sql.password is set in {})",
                inline.origin
            ),
        }),
    }
}

fn read_password_file(path: &Path, origin: &Origin) -> Result<SqlPassword, Error> {
    let refuse = |expected: String| Error::InvalidValue {
        origin: origin.clone(),
        key: "sql.password_file".to_owned(),
        value: format!("{:?}", path.display().to_string()),
        expected,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        refuse(format!(
            "a readable file whose first line is the password (reading {} failed: {e})",
            path.display()
        ))
    })?;
    let first = text.lines().next().unwrap_or_default();
    if first.is_empty() {
        return Err(refuse(format!(
            "a file whose first line is the password ({} starts with an empty line)",
            path.display()
        )));
    }
    Ok(SqlPassword(first.to_owned()))
}

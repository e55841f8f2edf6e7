//! Readers that accept every shape real eggs use for a field.

use super::{ImportError, MAX_EGG_DEPTH};
use crate::depth;
use serde_json::{Map, Value};

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError::InvalidField { field: field.into(), message: message.into() }
}

/// A text field: strings as they are, numbers and booleans as their text, null/absent as `None`.
pub(super) fn text(value: Option<&Value>, field: &str) -> Result<Option<String>, ImportError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(invalid(field, format!("expected text, found {}", kind(other)))),
    }
}

/// A boolean field: `true`/`false`, `1`/`0`, `"1"`/`"0"`, `"true"`/`"false"`.
pub(super) fn boolean(value: Option<&Value>, field: &str, default: bool) -> Result<bool, ImportError> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(false),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(true),
        Some(Value::String(s)) => match s.trim() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            other => Err(invalid(field, format!("expected a boolean, found `{other}`"))),
        },
        Some(other) => Err(invalid(field, format!("expected a boolean, found {}", kind(other)))),
    }
}

/// A list of strings; `null`, `""`, `{}` and `[]` are empty; a non-empty string is one line
/// per entry.
pub(super) fn string_list(value: Option<&Value>, field: &str) -> Result<Vec<String>, ImportError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match text(Some(item), &format!("{field}[{i}]")) {
                Ok(Some(s)) => Some(Ok(s)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .collect(),
        Some(Value::Object(map)) if map.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()),
        Some(other) => Err(invalid(field, format!("expected a list, found {}", kind(other)))),
    }
}

/// An object that older formats store as a JSON-encoded string (`config.files`,
/// `config.startup`, `config.logs`). Empty strings and null are an empty object. The embedded
/// JSON is held to [`MAX_EGG_DEPTH`] like the file itself.
pub(super) fn embedded_object(value: Option<&Value>, field: &str) -> Result<Map<String, Value>, ImportError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(Value::Array(items)) if items.is_empty() => Ok(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Value::String(s)) => {
            if depth::json(s, MAX_EGG_DEPTH, false).is_err() {
                return Err(ImportError::TooDeep { location: format!("field `{field}`"), limit: MAX_EGG_DEPTH });
            }
            match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(Value::Array(items)) if items.is_empty() => Ok(Map::new()),
                Ok(other) => Err(invalid(field, format!("expected an object, found {}", kind(&other)))),
                Err(e) => Err(invalid(field, format!("embedded JSON does not parse: {e}"))),
            }
        }
        Some(other) => Err(invalid(field, format!("expected an object, found {}", kind(other)))),
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

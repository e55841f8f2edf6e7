//! Request bodies as Pterodactyl's clients send them: a JSON object whose numbers may come as
//! numbers or numeric strings (PHP billing modules send both), read field by field, each
//! refusal a `422` naming the field (`limits.memory`).

use super::super::ApiError;
use super::super::router::Call;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A request's JSON object.
pub(super) struct Body(Map<String, Value>);

impl Body {
    /// The call's body; an empty body is an empty object.
    pub(super) fn of(call: &Call) -> Result<Self, ApiError> {
        if call.body.is_empty() {
            return Ok(Self(Map::new()));
        }
        match call.json::<Value>()? {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(ApiError::bad_request("the body must be a JSON object")),
        }
    }

    /// An empty object.
    pub(super) fn empty() -> Self {
        Self(Map::new())
    }

    /// The value at `path` (`a.b`), `None` when absent or `null`.
    pub(super) fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut value = self.0.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        (!value.is_null()).then_some(value)
    }

    /// Whether the top-level field `name` is sent as `null` (to clear it).
    pub(super) fn is_null(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(Value::is_null)
    }

    /// Whether `path` holds a value.
    pub(super) fn has(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// A string field (numbers are taken as their text).
    pub(super) fn string(&self, path: &str) -> Result<Option<String>, ApiError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::invalid(path, format!("The {path} must be a string."))),
        }
    }

    /// A required string field.
    pub(super) fn required_string(&self, path: &str) -> Result<String, ApiError> {
        self.string(path)?.filter(|s| !s.trim().is_empty()).ok_or_else(|| required(path))
    }

    /// An integer field (a numeric string counts).
    pub(super) fn int(&self, path: &str) -> Result<Option<i64>, ApiError> {
        match self.get(path) {
            None => Ok(None),
            Some(value) => integer(value)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(path, format!("The {path} must be an integer."))),
        }
    }

    /// A required integer field.
    pub(super) fn required_int(&self, path: &str) -> Result<i64, ApiError> {
        self.int(path)?.ok_or_else(|| required(path))
    }

    /// A non-negative integer field no larger than `max`.
    pub(super) fn bounded(&self, path: &str, max: u64) -> Result<Option<u64>, ApiError> {
        match self.int(path)? {
            None => Ok(None),
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|n| *n <= max)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(path, format!("The {path} must be between 0 and {max}."))),
        }
    }

    /// A boolean field (`true`/`false`, `1`/`0`, `"1"`/`"0"`, `"true"`/`"false"`).
    pub(super) fn boolean(&self, path: &str) -> Result<Option<bool>, ApiError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(value) => match integer(value) {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => match value.as_str() {
                    Some("true") => Ok(Some(true)),
                    Some("false") => Ok(Some(false)),
                    _ => Err(ApiError::invalid(path, format!("The {path} field must be true or false."))),
                },
            },
        }
    }

    /// A list of integers (a single integer counts as a list of one).
    pub(super) fn ints(&self, path: &str) -> Result<Vec<i64>, ApiError> {
        let bad = || ApiError::invalid(path, format!("The {path} must be an array of integers."));
        match self.get(path) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| integer(v).ok_or_else(bad)).collect(),
            Some(value) => integer(value).map(|n| vec![n]).ok_or_else(bad),
        }
    }

    /// A list of strings (a single string counts as a list of one).
    pub(super) fn strings(&self, path: &str) -> Result<Vec<String>, ApiError> {
        let bad = || ApiError::invalid(path, format!("The {path} must be an array of strings."));
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match self.get(path) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| text(v).ok_or_else(bad)).collect(),
            Some(value) => text(value).map(|s| vec![s]).ok_or_else(bad),
        }
    }

    /// An object of variable values (`environment`): strings, numbers and booleans as the
    /// text Pterodactyl stores (`true` is `1`); `null` values are left out (the default
    /// applies).
    pub(super) fn environment(&self, path: &str) -> Result<BTreeMap<String, String>, ApiError> {
        let Some(value) = self.get(path) else { return Ok(BTreeMap::new()) };
        let Value::Object(map) = value else {
            return Err(ApiError::invalid(path, format!("The {path} must be an object.")));
        };
        let mut values = BTreeMap::new();
        for (name, value) in map {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
                _ => return Err(ApiError::invalid(format!("{path}.{name}"), "The value must be a string.")),
            };
            values.insert(name.clone(), text);
        }
        Ok(values)
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `422`: `path` is required.
pub(super) fn required(path: &str) -> ApiError {
    ApiError { code: "required", ..ApiError::invalid(path, format!("The {path} field is required.")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Body {
        match value {
            Value::Object(map) => Body(map),
            _ => panic!("an object"),
        }
    }

    #[test]
    fn numbers_come_as_numbers_or_numeric_strings() {
        let b =
            body(json!({ "a": 5, "b": "7", "c": " 9 ", "d": "x", "e": 1.5, "f": null, "limits": { "memory": "128" } }));
        assert_eq!(b.int("a").unwrap(), Some(5));
        assert_eq!(b.int("b").unwrap(), Some(7));
        assert_eq!(b.int("c").unwrap(), Some(9));
        assert_eq!(b.int("limits.memory").unwrap(), Some(128));
        assert_eq!(b.int("f").unwrap(), None, "null is absent");
        assert_eq!(b.int("missing").unwrap(), None);
        for bad in ["d", "e"] {
            let e = b.int(bad).unwrap_err();
            assert_eq!((e.status.as_u16(), e.field.as_deref()), (422, Some(bad)));
        }
        let e = b.required_int("missing").unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("required", Some("missing")));
        assert_eq!(b.bounded("a", 4).unwrap_err().field.as_deref(), Some("a"), "over the bound");
        assert_eq!(body(json!({ "n": -1 })).bounded("n", 10).unwrap_err().field.as_deref(), Some("n"), "negative");
    }

    #[test]
    fn booleans_take_php_spellings() {
        let b = body(json!({ "a": true, "b": 0, "c": "1", "d": "false", "e": "yes", "f": 2 }));
        assert_eq!(b.boolean("a").unwrap(), Some(true));
        assert_eq!(b.boolean("b").unwrap(), Some(false));
        assert_eq!(b.boolean("c").unwrap(), Some(true));
        assert_eq!(b.boolean("d").unwrap(), Some(false));
        assert!(b.boolean("e").is_err() && b.boolean("f").is_err());
    }

    #[test]
    fn lists_and_environment() {
        let b = body(json!({
            "ports": ["25565", 25570, "25571-25575"],
            "one": 3,
            "bad": [{}],
            "environment": { "A": "x", "B": 8, "C": true, "D": false, "E": null },
            "nested": { "A": [] },
        }));
        assert_eq!(b.strings("ports").unwrap(), ["25565", "25570", "25571-25575"]);
        assert_eq!(b.ints("one").unwrap(), [3], "a single value is a list of one");
        assert!(b.strings("bad").is_err() && b.ints("bad").is_err());
        let env = b.environment("environment").unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("A", "x"), ("B", "8"), ("C", "1"), ("D", "0")], "null takes the default");
        let e = b.environment("nested").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nested.A"));
        assert!(body(json!({ "environment": [] })).environment("environment").is_err());
        assert!(!b.is_null("missing") && body(json!({ "x": null })).is_null("x"));
    }

    #[test]
    fn strings_refuse_objects_and_required_refuses_blank() {
        let b = body(json!({ "s": "text", "n": 12, "o": {}, "blank": "  " }));
        assert_eq!(b.string("s").unwrap().as_deref(), Some("text"));
        assert_eq!(b.string("n").unwrap().as_deref(), Some("12"));
        assert!(b.string("o").is_err());
        assert_eq!(b.required_string("blank").unwrap_err().code, "required");
    }
}

//! A `find` value with its placeholders resolved, and the decision of what a current value
//! becomes.

use super::placeholders::{self, ConfigContext};
use nexus_core::model::FindValue;
use regex::Regex;
use std::borrow::Cow;

/// What one `find` entry does to the values its key addresses.
#[derive(Clone, Debug)]
pub(super) enum Replacement {
    /// Always write this value; create the key if it is missing.
    Set(NewValue),
    /// Pterodactyl's `if_value`: rewrite only values a rule matches; never create.
    Match(Vec<MatchRule>),
}

/// A value to write.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum NewValue {
    /// Text; typed formats keep the type of the value it replaces where the text allows.
    Text(String),
    /// A number, boolean or null written by the egg author as such.
    Scalar(Scalar),
}

/// A typed value from the egg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scalar {
    /// `true` or `false`.
    Bool(bool),
    /// A number, in its JSON spelling.
    Number(String),
    /// JSON `null`.
    Null,
}

/// One `if_value` rule.
#[derive(Clone, Debug)]
pub(super) struct MatchRule {
    condition: Condition,
    /// For [`Condition::Regex`] a replacement template (`$1`), otherwise the final text.
    replacement: String,
}

#[derive(Clone, Debug)]
enum Condition {
    Equals(String),
    Regex(Regex),
}

/// Why a `find` value could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ResolveError {
    InvalidRegex { pattern: String, reason: String },
    UnsupportedValue(String),
}

impl Replacement {
    /// Resolves the placeholders of `value` and compiles its patterns.
    pub fn resolve(value: &FindValue, ctx: &ConfigContext) -> Result<Self, ResolveError> {
        let resolve = |template: &str, escape| Ok::<_, ResolveError>(ctx.resolve(template, escape));
        Ok(match value {
            FindValue::Text(text) => Self::Set(NewValue::Text(resolve(text, placeholders::verbatim)?)),
            FindValue::Scalar(scalar) => Self::Set(match scalar {
                serde_json::Value::Bool(flag) => NewValue::Scalar(Scalar::Bool(*flag)),
                serde_json::Value::Number(number) => NewValue::Scalar(Scalar::Number(number.to_string())),
                serde_json::Value::Null => NewValue::Scalar(Scalar::Null),
                serde_json::Value::String(text) => NewValue::Text(resolve(text, placeholders::verbatim)?),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    return Err(ResolveError::UnsupportedValue(
                        "only text, numbers and booleans can be written".to_owned(),
                    ));
                }
            }),
            FindValue::Match(rules) => Self::Match(
                rules
                    .iter()
                    .map(|(pattern, replacement)| match pattern.strip_prefix("regex:") {
                        Some(pattern) => Ok(MatchRule {
                            condition: Condition::Regex(Regex::new(pattern).map_err(|error| {
                                ResolveError::InvalidRegex { pattern: pattern.to_owned(), reason: error.to_string() }
                            })?),
                            replacement: resolve(replacement, placeholders::regex_replacement)?,
                        }),
                        None => Ok(MatchRule {
                            condition: Condition::Equals(pattern.clone()),
                            replacement: resolve(replacement, placeholders::verbatim)?,
                        }),
                    })
                    .collect::<Result<_, ResolveError>>()?,
            ),
        })
    }

    /// Whether a missing key gets created.
    pub fn creates_missing(&self) -> bool {
        matches!(self, Self::Set(_))
    }

    /// What a key currently holding `current` (as text) becomes; `None` leaves it alone.
    pub fn next_value(&self, current: &str) -> Option<NewValue> {
        match self {
            Self::Set(value) => Some(value.clone()),
            Self::Match(rules) => rules.iter().find_map(|rule| match &rule.condition {
                Condition::Equals(expected) => (expected == current).then(|| NewValue::Text(rule.replacement.clone())),
                // Like Wings: every match inside the value is rewritten, not only a full match.
                Condition::Regex(regex) => regex
                    .is_match(current)
                    .then(|| NewValue::Text(regex.replace_all(current, rule.replacement.as_str()).into_owned())),
            }),
        }
    }

    /// The value for a key that does not exist yet, if one is created.
    pub fn value_for_missing(&self) -> Option<&NewValue> {
        match self {
            Self::Set(value) => Some(value),
            Self::Match(_) => None,
        }
    }
}

impl NewValue {
    /// The value as plain text: numbers and booleans in their JSON spelling.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(text) => Cow::Borrowed(text),
            Self::Scalar(Scalar::Bool(flag)) => Cow::Borrowed(if *flag { "true" } else { "false" }),
            Self::Scalar(Scalar::Number(number)) => Cow::Borrowed(number),
            Self::Scalar(Scalar::Null) => Cow::Borrowed("null"),
        }
    }
}

/// An integer the way Wings recognises one (Go's `strconv.Atoi`): created keys holding one
/// become numbers.
pub(super) fn is_integer(text: &str) -> bool {
    text.parse::<i64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ConfigContext {
        ConfigContext::new("10.0.0.5:25565".parse().unwrap(), 1024)
            .with_node_config([("docker.interface", "172.18.0.1")])
            .with_environment([("NAME", "a$1b")])
    }

    fn rules(pairs: &[(&str, &str)]) -> FindValue {
        FindValue::Match(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn regex_rules_use_groups_and_rewrite_in_place() {
        let rule = rules(&[(r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$", "{{config.docker.interface}}$2")]);
        let replacement = Replacement::resolve(&rule, &ctx()).unwrap();
        assert_eq!(replacement.next_value("localhost:25566"), Some(NewValue::Text("172.18.0.1:25566".into())));
        assert_eq!(replacement.next_value("127.0.0.1"), Some(NewValue::Text("172.18.0.1".into())));
        assert_eq!(replacement.next_value("10.1.1.1:25565"), None);
        assert!(!replacement.creates_missing());
    }

    #[test]
    fn literal_rules_compare_whole_values_and_first_rule_wins() {
        let rule = rules(&[("localhost", "first"), ("localhost", "second"), ("x", "{{env.NAME}}")]);
        let replacement = Replacement::resolve(&rule, &ctx()).unwrap();
        assert_eq!(replacement.next_value("localhost"), Some(NewValue::Text("first".into())));
        assert_eq!(replacement.next_value("localhost:1"), None);
        // Substituted values are not group references, literal or regex.
        assert_eq!(replacement.next_value("x"), Some(NewValue::Text("a$1b".into())));
        let regex = Replacement::resolve(&rules(&[("regex:x", "{{env.NAME}}")]), &ctx()).unwrap();
        assert_eq!(regex.next_value("x"), Some(NewValue::Text("a$1b".into())));
    }

    #[test]
    fn resolution_errors_are_reported() {
        let bad_regex = Replacement::resolve(&rules(&[("regex:(unclosed", "x")]), &ctx());
        assert!(matches!(bad_regex, Err(ResolveError::InvalidRegex { pattern, .. }) if pattern == "(unclosed"));
        let object = Replacement::resolve(&FindValue::Scalar(serde_json::json!({"a": 1})), &ctx());
        assert!(matches!(object, Err(ResolveError::UnsupportedValue(_))));
    }

    #[test]
    fn scalars_keep_their_type() {
        let number = Replacement::resolve(&FindValue::Scalar(serde_json::json!(0)), &ctx()).unwrap();
        assert_eq!(number.next_value("x"), Some(NewValue::Scalar(Scalar::Number("0".into()))));
        assert_eq!(NewValue::Scalar(Scalar::Bool(true)).text(), "true");
    }
}

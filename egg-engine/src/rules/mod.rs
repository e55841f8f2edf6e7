//! The Laravel validation rules of egg variables: parsed once at import ([`parse_rules`]),
//! enforced on every value a user sets ([`validate`]).
//!
//! # Rule strings
//!
//! Eggs write rules as a pipe string (`required|string|max:20`) or as a list
//! (`["required", "string", "max:20"]`). [`split_rule_string`] turns the first form into the
//! second. Rule names are matched the way Laravel finds its validator methods: case-insensitively
//! and ignoring `_` and `-` (`digits_between`, `digitsBetween`, `DIGITS_BETWEEN`); `int` is
//! accepted as `integer` because real eggs use it. Empty entries are ignored. A rule Nexus does
//! not know is [`RuleError::Unknown`], never silently ignored, so an egg is either enforced as
//! its author wrote it or refused at import.
//!
//! **A `|` inside a regex.** Laravel splits a pipe string naively, so
//! `required|regex:/^(a|b)$/` falls apart into `regex:/^(a` and `b)$/` and the egg breaks in
//! Pterodactyl. Nexus instead reads the pattern of a `regex:`/`not_regex:` entry up to its
//! closing delimiter the way PHP does (a backslash escapes, bracket delimiters nest) and only
//! then looks for the next `|`; the modifiers after the delimiter stay with the pattern. The same
//! repair happens in [`parse_rules`] when a list arrives already split naively: an entry whose
//! pattern lacks its closing delimiter is joined with the following entries (with `|`) until the
//! delimiter appears. None of the 77 eggs of the corpus has a `|` inside a pattern; this only
//! makes such eggs work as their authors meant. After a pattern that never closes, the rest of a
//! pipe string is split naively (the set is refused at that pattern anyway); this keeps
//! splitting linear in the length of the string.
//!
//! # Semantics
//!
//! [`RuleSet::check`] follows what Pterodactyl does to a submitted value: its middleware trims
//! input and turns an empty string into `null`, then Laravel validates. So here:
//!
//! - A value that is absent (`None`), empty or only whitespace counts as **empty** (`null`).
//!   Non-empty values are checked exactly as given (not trimmed), because that is what is stored.
//! - `required` fails on empty. `present` fails only on absent.
//! - `nullable`: an empty value skips every rule except `required` and `present`.
//! - Without `nullable`, an empty value still meets the other rules, as `null` meets them in
//!   Laravel: `string`, `integer`, `numeric`, `boolean`, `regex`, `alpha*`, `url` fail, `max`
//!   passes (length 0), `in:,beta` passes (the empty string is listed).
//! - `min`, `max`, `between`, `size` compare the numeric value when the set has `integer`,
//!   `int` or `numeric` and the value is numeric, the length in characters otherwise.
//!   `gt`, `gte`, `lt`, `lte` compare numbers only; a non-numeric value fails.
//! - `integer` is PHP's `FILTER_VALIDATE_INT` (sign allowed, no leading zeros, 64-bit);
//!   `numeric` is PHP 8's `is_numeric` (fractions and exponents, surrounding whitespace).
//! - `boolean` accepts `true`, `false`, `1`, `0`.
//! - `in`/`not_in` parameters are split like PHP's `str_getcsv` and compared with PHP's loose
//!   `==` (`1` equals `01`).
//! - `digits`/`digits_between` need ASCII digits only and count them.
//! - `alpha`, `alpha_num`, `alpha_dash`: Unicode letters and marks (plus numbers; plus `-`, `_`).
//! - `regex`/`not_regex`: see [`PhpRegex`] for how PHP patterns are translated.
//! - Rules are checked in the author's order; the first failure is reported.

mod php;
mod php_regex;
#[cfg(test)]
pub(crate) mod test_corpus;
#[cfg(test)]
mod tests;

pub use php_regex::{PhpRegex, PhpRegexError};

use nexus_core::model::EggVariable;
use php_regex::{DelimiterScan, DelimiterScanner, closing_delimiter};
use regex::Regex;
use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

/// One validation rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// `required`: not absent, not empty, not only whitespace.
    Required,
    /// `nullable`: an empty value skips the other rules.
    Nullable,
    /// `present`: the value must be given, even if empty.
    Present,
    /// `string`: any non-empty value.
    String,
    /// `integer` (also `int`): a whole number.
    Integer,
    /// `numeric`: a number, fractions and exponents allowed.
    Numeric,
    /// `boolean`: `true`, `false`, `1` or `0`.
    Boolean,
    /// `min:n`: size at least `n`.
    Min(f64),
    /// `max:n`: size at most `n`.
    Max(f64),
    /// `between:a,b`: size from `a` to `b`, inclusive.
    Between(f64, f64),
    /// `size:n`: size exactly `n`.
    Size(f64),
    /// `gt:n`: a number greater than `n`.
    Gt(f64),
    /// `gte:n`: a number at least `n`.
    Gte(f64),
    /// `lt:n`: a number less than `n`.
    Lt(f64),
    /// `lte:n`: a number at most `n`.
    Lte(f64),
    /// `in:a,b`: one of the listed values.
    In(Vec<String>),
    /// `not_in:a,b`: none of the listed values.
    NotIn(Vec<String>),
    /// `regex:/pattern/flags`: the pattern matches somewhere in the value.
    Regex(PhpRegex),
    /// `not_regex:/pattern/flags`: the pattern matches nowhere in the value.
    NotRegex(PhpRegex),
    /// `digits:n`: exactly `n` ASCII digits.
    Digits(usize),
    /// `digits_between:a,b`: from `a` to `b` ASCII digits.
    DigitsBetween(usize, usize),
    /// `alpha`: Unicode letters and marks only.
    Alpha,
    /// `alpha_dash`: Unicode letters, marks, numbers, `-` and `_` only.
    AlphaDash,
    /// `alpha_num`: Unicode letters, marks and numbers only.
    AlphaNum,
    /// `url`: an absolute URL with a scheme and a host.
    Url,
    /// `starts_with:a,b`: starts with one of the listed prefixes.
    StartsWith(Vec<String>),
    /// `ends_with:a,b`: ends with one of the listed suffixes.
    EndsWith(Vec<String>),
}

impl Rule {
    /// Rules Laravel runs even on an empty value of a `nullable` field.
    fn is_implicit(&self) -> bool {
        matches!(self, Self::Required | Self::Present)
    }

    /// The canonical rule name (`digits_between`; `integer` for `int`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Nullable => "nullable",
            Self::Present => "present",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Numeric => "numeric",
            Self::Boolean => "boolean",
            Self::Min(_) => "min",
            Self::Max(_) => "max",
            Self::Between(..) => "between",
            Self::Size(_) => "size",
            Self::Gt(_) => "gt",
            Self::Gte(_) => "gte",
            Self::Lt(_) => "lt",
            Self::Lte(_) => "lte",
            Self::In(_) => "in",
            Self::NotIn(_) => "not_in",
            Self::Regex(_) => "regex",
            Self::NotRegex(_) => "not_regex",
            Self::Digits(_) => "digits",
            Self::DigitsBetween(..) => "digits_between",
            Self::Alpha => "alpha",
            Self::AlphaDash => "alpha_dash",
            Self::AlphaNum => "alpha_num",
            Self::Url => "url",
            Self::StartsWith(_) => "starts_with",
            Self::EndsWith(_) => "ends_with",
        }
    }

    /// `subject` is the value, or `""` when the value is empty; `number` is the value's numeric
    /// size when the set compares sizes numerically.
    fn passes(&self, subject: &str, empty: bool, present: bool, number: Option<f64>) -> bool {
        let size = || number.unwrap_or(subject.chars().count() as f64);
        let compare = |f: &dyn Fn(f64) -> bool| php::numeric_value(subject).is_some_and(f);
        match self {
            Self::Required => !empty,
            Self::Nullable => true,
            Self::Present => present,
            Self::String => !empty,
            Self::Integer => php::is_integer(subject),
            Self::Numeric => php::numeric_value(subject).is_some(),
            Self::Boolean => matches!(subject, "true" | "false" | "1" | "0"),
            Self::Min(n) => size() >= *n,
            Self::Max(n) => size() <= *n,
            Self::Between(a, b) => (*a..=*b).contains(&size()),
            Self::Size(n) => size() == *n,
            Self::Gt(n) => compare(&|v| v > *n),
            Self::Gte(n) => compare(&|v| v >= *n),
            Self::Lt(n) => compare(&|v| v < *n),
            Self::Lte(n) => compare(&|v| v <= *n),
            Self::In(list) => list.iter().any(|item| php::loose_eq(subject, item)),
            Self::NotIn(list) => !list.iter().any(|item| php::loose_eq(subject, item)),
            // Laravel refuses `null` before running the pattern.
            Self::Regex(re) => !empty && re.is_match(subject),
            Self::NotRegex(re) => !empty && !re.is_match(subject),
            Self::Digits(n) => all_digits(subject) && subject.len() == *n,
            Self::DigitsBetween(a, b) => all_digits(subject) && (*a..=*b).contains(&subject.len()),
            Self::Alpha => matches_static(&ALPHA, subject),
            Self::AlphaDash => matches_static(&ALPHA_DASH, subject),
            Self::AlphaNum => matches_static(&ALPHA_NUM, subject),
            Self::Url => matches_static(&URL, subject),
            Self::StartsWith(list) => list.iter().any(|p| !p.is_empty() && subject.starts_with(p.as_str())),
            Self::EndsWith(list) => list.iter().any(|s| !s.is_empty() && subject.ends_with(s.as_str())),
        }
    }

    /// What a failing value must do, e.g. `must match regex:/^\d+$/`.
    fn reason(&self, numeric: bool) -> String {
        let unit = if numeric { "" } else { " characters" };
        match self {
            Self::Required => "is required".into(),
            Self::Nullable => "may be empty".into(),
            Self::Present => "must be present".into(),
            Self::String => "must be a string".into(),
            Self::Integer => "must be an integer".into(),
            Self::Numeric => "must be a number".into(),
            Self::Boolean => "must be true or false (true, false, 1 or 0)".into(),
            Self::Min(n) => format!("must be at least {n}{unit}"),
            Self::Max(n) if numeric => format!("may not be greater than {n}"),
            Self::Max(n) => format!("may not be longer than {n} characters"),
            Self::Between(a, b) => format!("must be between {a} and {b}{unit}"),
            Self::Size(n) if numeric => format!("must be {n}"),
            Self::Size(n) => format!("must be exactly {n} characters"),
            Self::Gt(n) => format!("must be a number greater than {n}"),
            Self::Gte(n) => format!("must be a number greater than or equal to {n}"),
            Self::Lt(n) => format!("must be a number less than {n}"),
            Self::Lte(n) => format!("must be a number less than or equal to {n}"),
            Self::In(list) => format!("must be one of: {}", human_list(list)),
            Self::NotIn(list) => format!("must not be one of: {}", human_list(list)),
            Self::Regex(_) | Self::NotRegex(_) => {
                let verb = if matches!(self, Self::Regex(_)) { "must match" } else { "must not match" };
                format!("{verb} {self}")
            }
            Self::Digits(n) => format!("must be {n} digits"),
            Self::DigitsBetween(a, b) => format!("must be between {a} and {b} digits"),
            Self::Alpha => "may only contain letters".into(),
            Self::AlphaDash => "may only contain letters, numbers, dashes and underscores".into(),
            Self::AlphaNum => "may only contain letters and numbers".into(),
            Self::Url => "must be a valid URL".into(),
            Self::StartsWith(list) => format!("must start with one of: {}", human_list(list)),
            Self::EndsWith(list) => format!("must end with one of: {}", human_list(list)),
        }
    }
}

/// The rule as a Laravel rule string; it parses back to the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Self::Min(n) | Self::Max(n) | Self::Size(n) | Self::Gt(n) | Self::Gte(n) | Self::Lt(n) | Self::Lte(n) => {
                write!(f, "{name}:{n}")
            }
            Self::Between(a, b) => write!(f, "{name}:{a},{b}"),
            Self::Digits(n) => write!(f, "{name}:{n}"),
            Self::DigitsBetween(a, b) => write!(f, "{name}:{a},{b}"),
            Self::In(list) | Self::NotIn(list) | Self::StartsWith(list) | Self::EndsWith(list) => {
                write!(f, "{name}:{}", csv_list(list))
            }
            Self::Regex(re) | Self::NotRegex(re) => write!(f, "{name}:{re}"),
            _ => f.write_str(name),
        }
    }
}

/// Why a rule string does not parse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A rule Nexus does not implement.
    #[error("unknown validation rule `{rule}`")]
    Unknown {
        /// The rule as written.
        rule: String,
    },
    /// A rule lacks its parameter(s), e.g. `max` without `:20`.
    #[error("validation rule `{rule}` needs {expected}")]
    MissingParameter {
        /// The rule as written.
        rule: String,
        /// What the rule takes, e.g. `a number`.
        expected: &'static str,
    },
    /// A parameter has the wrong shape, e.g. `max:abc`.
    #[error("validation rule `{rule}`: invalid parameter `{parameter}`, expected {expected}")]
    InvalidParameter {
        /// The rule as written.
        rule: String,
        /// The offending parameter.
        parameter: String,
        /// What the rule takes.
        expected: &'static str,
    },
    /// A `regex`/`not_regex` pattern is malformed or cannot be compiled.
    #[error("validation rule `{rule}`: {source}")]
    Regex {
        /// The rule as written.
        rule: String,
        /// What is wrong with the pattern.
        #[source]
        source: PhpRegexError,
    },
}

/// The parsed rules of one variable, in the author's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    nullable: bool,
    numeric: bool,
}

impl RuleSet {
    /// A set from already parsed rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        let nullable = rules.contains(&Rule::Nullable);
        let numeric = rules.iter().any(|r| matches!(r, Rule::Integer | Rule::Numeric));
        Self { rules, nullable, numeric }
    }

    /// Parses a pipe string such as `required|string|max:20`.
    pub fn from_rule_string(s: &str) -> Result<Self, RuleError> {
        parse_rules(&split_rule_string(s))
    }

    /// The rules in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether `nullable` is among the rules.
    pub fn is_nullable(&self) -> bool {
        self.nullable
    }

    /// Whether `required` is among the rules.
    pub fn is_required(&self) -> bool {
        self.rules.contains(&Rule::Required)
    }

    /// Checks `value` (`None`: not given) against every rule; see the module docs.
    pub fn check(&self, value: Option<&str>) -> Result<(), RuleViolation> {
        let text = value.unwrap_or("");
        let empty = php::trim(text).is_empty();
        let subject = if empty { "" } else { text };
        let number = if self.numeric { php::numeric_value(subject) } else { None };
        for rule in &self.rules {
            if empty && self.nullable && !rule.is_implicit() {
                continue;
            }
            if !rule.passes(subject, empty, value.is_some(), number) {
                return Err(RuleViolation { rule: rule.clone(), reason: rule.reason(number.is_some()) });
            }
        }
        Ok(())
    }
}

/// The pipe string of the set (`required|string|max:20`).
impl fmt::Display for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

/// A value that fails a rule, without naming the variable (see [`ValidationError`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct RuleViolation {
    /// The first rule that failed.
    pub rule: Rule,
    /// What the value must do, e.g. `must be at least 1025`.
    pub reason: String,
}

/// A variable's value fails one of its rules.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{env_variable} ({name}): {reason}")]
#[non_exhaustive]
pub struct ValidationError {
    /// The variable's environment name.
    pub env_variable: String,
    /// The variable's display name.
    pub name: String,
    /// The first rule that failed.
    pub rule: Rule,
    /// What the value must do, e.g. `must match regex:/^([\w\d._-]+)(\.jar)$/`.
    pub reason: String,
}

/// Checks the value a user gives `variable` against its parsed `rules` (`None`: no value).
pub fn validate(variable: &EggVariable, rules: &RuleSet, value: Option<&str>) -> Result<(), ValidationError> {
    rules.check(value).map_err(|v| ValidationError {
        env_variable: variable.env_variable.clone(),
        name: variable.name.clone(),
        rule: v.rule,
        reason: v.reason,
    })
}

/// Splits a pipe rule string into entries, keeping a `|` inside a `regex:`/`not_regex:`
/// pattern (see the module docs). Entries are returned as written, empty ones included.
pub fn split_rule_string(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    // After a pattern that runs unclosed to the end of the string the set is refused at that
    // pattern anyway; scanning every later pattern to the end again would be quadratic.
    let mut naive = false;
    loop {
        let end = if naive {
            rest.find('|').unwrap_or(rest.len())
        } else {
            let (end, unclosed) = segment_end(rest);
            naive = unclosed;
            end
        };
        out.push(rest[..end].to_string());
        if end >= rest.len() {
            return out;
        }
        rest = &rest[end + 1..];
    }
}

/// Byte index of the `|` that ends the first entry of `s` (or `s.len()`), and whether that
/// entry's pattern never closes.
fn segment_end(s: &str) -> (usize, bool) {
    let naive = s.find('|').unwrap_or(s.len());
    let Some(param) = regex_parameter_start(s) else {
        return (naive, false);
    };
    let pattern = s[param..].trim_start();
    let offset = s.len() - pattern.len();
    match closing_delimiter(pattern) {
        DelimiterScan::Closed { close, end, .. } => {
            let after = offset + end + close.len_utf8();
            (s[after..].find('|').map_or(s.len(), |i| after + i), false)
        }
        DelimiterScan::Unclosed(_) => (naive, true),
        DelimiterScan::Empty | DelimiterScan::BadDelimiter(_) => (naive, false),
    }
}

/// If `s` starts with a `regex:` or `not_regex:` entry, the byte index where its pattern starts.
fn regex_parameter_start(s: &str) -> Option<usize> {
    // The name ends before the first `|`: looking further would rescan the rest of the string
    // for every entry.
    let first = &s[..s.find('|').unwrap_or(s.len())];
    let colon = first.find(':')?;
    matches!(normalize_name(&first[..colon]).as_str(), "regex" | "notregex").then_some(colon + 1)
}

/// Parses a rule list; empty entries are skipped. A regex entry split apart at a `|` inside its
/// pattern is joined back first (see the module docs).
pub fn parse_rules(rules: &[String]) -> Result<RuleSet, RuleError> {
    let mut parsed = Vec::with_capacity(rules.len());
    let mut i = 0;
    while i < rules.len() {
        let (entry, consumed) = rejoin(&rules[i..]);
        if let Some(rule) = parse_rule(&entry)? {
            parsed.push(rule);
        }
        i += consumed;
    }
    Ok(RuleSet::new(parsed))
}

/// The first entry of `rules` (which must not be empty), joined with `|` to as many following
/// entries as its pattern needs to reach its closing delimiter, and how many entries that
/// took. An entry whose pattern never closes stays alone (and fails to parse). The scan goes on
/// from where the previous entry stopped, so each entry is read once.
fn rejoin(rules: &[String]) -> (Cow<'_, str>, usize) {
    let Some((first, following)) = rules.split_first() else { return (Cow::Borrowed(""), 1) };
    let Some(start) = regex_parameter_start(first) else { return (Cow::Borrowed(first), 1) };
    let Ok((mut scanner, rest)) = DelimiterScanner::open(first[start..].trim_start()) else {
        return (Cow::Borrowed(first), 1);
    };
    if scanner.feed(rest).is_some() {
        return (Cow::Borrowed(first), 1);
    }
    let mut joined = first.clone();
    for (k, next) in following.iter().enumerate() {
        joined.push('|');
        joined.push_str(next);
        if scanner.feed("|").is_some() || scanner.feed(next).is_some() {
            return (Cow::Owned(joined), k + 2);
        }
    }
    (Cow::Borrowed(first), 1)
}

/// Parses one entry; `None` for an empty one.
pub fn parse_rule(entry: &str) -> Result<Option<Rule>, RuleError> {
    let entry_trimmed = entry.trim();
    if entry_trimmed.is_empty() {
        return Ok(None);
    }
    let (name, param) = match entry_trimmed.split_once(':') {
        Some((name, param)) => (name, Some(param)),
        None => (entry_trimmed, None),
    };
    let rule = entry_trimmed.to_string();
    let number = |p: &str| -> Result<f64, RuleError> {
        php::numeric_value(p).ok_or_else(|| RuleError::InvalidParameter {
            rule: rule.clone(),
            parameter: p.to_string(),
            expected: "a number",
        })
    };
    let count = |p: &str| -> Result<usize, RuleError> {
        p.trim().parse::<usize>().map_err(|_| RuleError::InvalidParameter {
            rule: rule.clone(),
            parameter: p.to_string(),
            expected: "a whole number",
        })
    };
    let missing = |expected| RuleError::MissingParameter { rule: rule.clone(), expected };
    let one = |expected| param.filter(|p| !p.trim().is_empty()).ok_or_else(|| missing(expected));
    let two = |expected| -> Result<(String, String), RuleError> {
        let p = one(expected)?;
        match php::str_getcsv(p).as_slice() {
            [a, b] => Ok((a.clone(), b.clone())),
            [_] => Err(missing(expected)),
            _ => Err(RuleError::InvalidParameter { rule: rule.clone(), parameter: p.to_string(), expected }),
        }
    };
    let list = || param.map(php::str_getcsv).ok_or_else(|| missing("a list of values"));
    let pattern = |p: Option<&str>| -> Result<PhpRegex, RuleError> {
        let p = p.filter(|p| !p.trim().is_empty()).ok_or_else(|| missing("a pattern"))?;
        PhpRegex::new(p).map_err(|source| RuleError::Regex { rule: rule.clone(), source })
    };
    Ok(Some(match normalize_name(name).as_str() {
        "required" => Rule::Required,
        "nullable" => Rule::Nullable,
        "present" => Rule::Present,
        "string" => Rule::String,
        "integer" | "int" => Rule::Integer,
        "numeric" => Rule::Numeric,
        "boolean" => Rule::Boolean,
        "min" => Rule::Min(number(one("a number")?)?),
        "max" => Rule::Max(number(one("a number")?)?),
        "size" => Rule::Size(number(one("a number")?)?),
        "gt" => Rule::Gt(number(one("a number")?)?),
        "gte" => Rule::Gte(number(one("a number")?)?),
        "lt" => Rule::Lt(number(one("a number")?)?),
        "lte" => Rule::Lte(number(one("a number")?)?),
        "between" => {
            let (a, b) = two("two numbers")?;
            Rule::Between(number(&a)?, number(&b)?)
        }
        "digits" => Rule::Digits(count(one("a whole number")?)?),
        "digitsbetween" => {
            let (a, b) = two("two whole numbers")?;
            Rule::DigitsBetween(count(&a)?, count(&b)?)
        }
        "in" => Rule::In(list()?),
        "notin" => Rule::NotIn(list()?),
        "startswith" => Rule::StartsWith(list()?),
        "endswith" => Rule::EndsWith(list()?),
        "regex" => Rule::Regex(pattern(param)?),
        "notregex" => Rule::NotRegex(pattern(param)?),
        "alpha" => Rule::Alpha,
        "alphadash" => Rule::AlphaDash,
        "alphanum" => Rule::AlphaNum,
        "url" => Rule::Url,
        _ => return Err(RuleError::Unknown { rule }),
    }))
}

/// Laravel turns a rule name into a method name with `Str::studly` and PHP method names ignore
/// case, so `digits_between`, `digits-between` and `DigitsBetween` are the same rule.
fn normalize_name(name: &str) -> String {
    name.trim().chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect()
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

fn human_list(list: &[String]) -> String {
    let items: Vec<&str> = list.iter().map(|s| if s.is_empty() { "(empty)" } else { s.as_str() }).collect();
    items.join(", ")
}

/// Inverse of `str_getcsv` for [`Rule`]'s `Display`.
fn csv_list(list: &[String]) -> String {
    let fields: Vec<String> = list
        .iter()
        .map(|s| if s.contains([',', '"']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.clone() })
        .collect();
    fields.join(",")
}

/// The patterns below are constants covered by tests; a failure to compile would make the rule
/// reject every value rather than panic.
fn matches_static(re: &LazyLock<Option<Regex>>, value: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(value))
}

static ALPHA: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A[\p{L}\p{M}]+\z").ok());
static ALPHA_DASH: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A[\p{L}\p{M}\p{N}_-]+\z").ok());
static ALPHA_NUM: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A[\p{L}\p{M}\p{N}]+\z").ok());

/// Laravel's `Str::isUrl` (Symfony's URL pattern), with any RFC 3986 scheme instead of Laravel's
/// long list of registered ones and a looser IPv6 literal.
static URL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?xi)
        \A
        [a-z][a-z0-9+.\-]*://
        (?: (?: (?: [_.\pL\pN\-] | %[0-9a-f]{2} )+ : )? (?: [_.\pL\pN\-] | %[0-9a-f]{2} )+ @ )?
        (?:
            [\pL\pN\pS_.\-]+ (?: \.? (?: [\pL\pN] | xn--[\pL\pN\-]+ )+ \.? )
          | \d{1,3} \. \d{1,3} \. \d{1,3} \. \d{1,3}
          | \[ [0-9a-f:.]+ \]
        )
        (?: : [0-9]+ )?
        (?: / (?: [\pL\pN\-._~!$&'()*+,;=:@] | %[0-9a-f]{2} )* )*
        (?: \? (?: [\pL\pN\-._~!$&'\[\]()*+,;=:@/?] | %[0-9a-f]{2} )* )?
        (?: \# (?: [\pL\pN\-._~!$&'()*+,;=:@/?] | %[0-9a-f]{2} )* )?
        \z",
    )
    .ok()
});

//! Helpers the parsers' unit tests share.

use super::Edit;
use super::replacement::{NewValue, Replacement};

/// An edit that sets `key` to the text `value` (and creates it if missing).
pub(super) fn set<'a>(key: &'a str, value: &str) -> Edit<'a> {
    Edit { key, replacement: Replacement::Set(NewValue::Text(value.to_owned())) }
}

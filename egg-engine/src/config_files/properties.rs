//! Java `.properties` files (Minecraft's `server.properties`, Terraria's `serverconfig.txt`).
//!
//! Keys are whole keys (`query.port` is one key). The format's escapes, `key value`/`key=value`/
//! `key: value` separators and backslash line continuations are understood when reading;
//! values are written with the escapes Java needs to read them back.

use super::lines::{Splices, line_ending, position, split_lines};
use super::{Edit, PatchError};
use std::ops::Range;

const WHITESPACE: [char; 3] = [' ', '\t', '\x0c'];

/// One `key=value` entry, possibly continued over several lines.
#[derive(Debug)]
struct Entry {
    key: String,
    value: String,
    /// Raw bytes between the key and the value (`=`, ` = `, `: `, ` `).
    separator: Range<usize>,
    /// Raw bytes of the value, up to the end of its last line.
    value_span: Range<usize>,
}

/// Sets each key: every entry of the key is rewritten; a missing key is appended at the end
/// with the separator style of the file's first entry.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    let eol = line_ending(text);
    let mut text = text.to_owned();
    parse(&text).map_err(PatchError::Malformed)?;
    for edit in edits {
        if edit.key.is_empty() {
            return Err(PatchError::invalid_key(edit.key, "empty key"));
        }
        let entries = parse(&text).map_err(PatchError::Malformed)?;
        let mut splices = Splices::default();
        let mut found = false;
        for entry in entries.iter().filter(|entry| entry.key == edit.key) {
            found = true;
            if let Some(value) = edit.replacement.next_value(&entry.value) {
                let value = value.text();
                if value != entry.value {
                    splices.replace(entry.value_span.clone(), escape_value(&value));
                }
            }
        }
        if let Some(value) = edit.replacement.value_for_missing().filter(|_| !found) {
            let separator = entries
                .first()
                .map(|entry| &text[entry.separator.clone()])
                .filter(|separator| !separator.contains('\n'))
                .unwrap_or("=");
            let line = format!("{}{separator}{}", escape_key(edit.key), escape_value(&value.text()));
            splices.append_lines(&text, &line, eol);
        }
        if !splices.is_empty() {
            text = splices.apply(&text)?;
        }
    }
    Ok(text)
}

/// Every `(key, value)` of a file, decoded, for tests that read back what was written.
#[cfg(test)]
pub(super) fn read(text: &str) -> Vec<(String, String)> {
    parse(text).unwrap_or_default().into_iter().map(|entry| (entry.key, entry.value)).collect()
}

fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let lines = split_lines(text);
    let mut entries = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let body = line.content.trim_start_matches(WHITESPACE);
        if body.is_empty() || body.starts_with(['#', '!']) {
            index += 1;
            continue;
        }
        // The logical line's characters with their byte offsets, continuations removed.
        let mut chars: Vec<(usize, char)> = Vec::new();
        let mut segment_start = line.end - body.len();
        let logical_end = loop {
            let current = lines[index];
            let segment = &text[segment_start..current.end];
            let backslashes = segment.len() - segment.trim_end_matches('\\').len();
            let continued = backslashes % 2 == 1;
            let content_end = if continued { current.end - 1 } else { current.end };
            chars.extend(text[segment_start..content_end].char_indices().map(|(at, c)| (segment_start + at, c)));
            index += 1;
            if !continued || index >= lines.len() {
                break current.end;
            }
            let next = lines[index];
            segment_start = next.end - next.content.trim_start_matches(WHITESPACE).len();
        };
        let offset_of = |at: usize| chars.get(at).map_or(logical_end, |(offset, _)| *offset);

        let mut key_end = 0;
        while let Some(&(_, c)) = chars.get(key_end) {
            if c == '\\' {
                key_end += 2;
            } else if c == '=' || c == ':' || WHITESPACE.contains(&c) {
                break;
            } else {
                key_end += 1;
            }
        }
        let key_end = key_end.min(chars.len());
        let mut value_start = key_end;
        while chars.get(value_start).is_some_and(|(_, c)| WHITESPACE.contains(c)) {
            value_start += 1;
        }
        if chars.get(value_start).is_some_and(|(_, c)| *c == '=' || *c == ':') {
            value_start += 1;
            while chars.get(value_start).is_some_and(|(_, c)| WHITESPACE.contains(c)) {
                value_start += 1;
            }
        }
        let malformed = |reason: String| format!("{reason} ({})", position(text, line.start));
        entries.push(Entry {
            key: unescape(&chars[..key_end]).map_err(malformed)?,
            value: unescape(&chars[value_start..]).map_err(malformed)?,
            separator: offset_of(key_end)..offset_of(value_start),
            value_span: offset_of(value_start)..logical_end,
        });
    }
    Ok(entries)
}

fn unescape(chars: &[(usize, char)]) -> Result<String, String> {
    let mut out = String::with_capacity(chars.len());
    let mut rest = chars.iter().map(|(_, c)| *c);
    let mut pending_high_surrogate: Option<u32> = None;
    while let Some(c) = rest.next() {
        let decoded = if c == '\\' {
            match rest.next() {
                None => break,
                Some('t') => '\t',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('f') => '\x0c',
                Some('u') => {
                    let hex: String = rest.by_ref().take(4).collect();
                    let unit = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 4)
                        .ok_or_else(|| format!("malformed \\uxxxx escape `\\u{hex}`"))?;
                    // Java escapes are UTF-16 units: a pair of them makes one character.
                    if (0xD800..0xDC00).contains(&unit) {
                        if pending_high_surrogate.replace(unit).is_some() {
                            out.push(char::REPLACEMENT_CHARACTER);
                        }
                        continue;
                    }
                    if (0xDC00..0xE000).contains(&unit) {
                        let combined = pending_high_surrogate
                            .take()
                            .and_then(|high| char::from_u32(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)));
                        out.push(combined.unwrap_or(char::REPLACEMENT_CHARACTER));
                        continue;
                    }
                    char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
                Some(other) => other,
            }
        } else {
            c
        };
        if pending_high_surrogate.take().is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
        out.push(decoded);
    }
    if pending_high_surrogate.is_some() {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    Ok(out)
}

/// Escapes a value so Java reads it back unchanged. Non-ASCII text is written as UTF-8, which
/// current servers read; only what would change the meaning is escaped.
fn escape_value(value: &str) -> String {
    // Leading whitespace would be skipped, and with a `key value` separator a leading `=` or `:`
    // would be taken for the separator.
    escape(value, |at, c| at == 0 && (c == ' ' || c == '=' || c == ':'))
}

fn escape_key(key: &str) -> String {
    // A separator character anywhere would end the key; a leading `#` or `!` starts a comment.
    escape(key, |at, c| c == ' ' || c == '=' || c == ':' || (at == 0 && (c == '#' || c == '!')))
}

/// `text` with the escapes Java needs; `literal(at, c)` picks the characters (by index) that
/// are written with a backslash before them because they would be read as syntax.
fn escape(text: &str, literal: impl Fn(usize, char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (at, c) in text.chars().enumerate() {
        match c {
            c if literal(at, c) => {
                out.push('\\');
                out.push(c);
            }
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::test_support::set;

    fn values(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap().into_iter().map(|e| (e.key, e.value)).collect()
    }

    #[test]
    fn reads_java_syntax() {
        let text =
            "# c\n! c\n  a = 1\nb:2\nc 3\nd\\ e=f\\=g\ncont=one \\\n    two\nuni=\\u00e9\\uD83D\\uDE00\nempty=\n";
        let expected =
            [("a", "1"), ("b", "2"), ("c", "3"), ("d e", "f=g"), ("cont", "one two"), ("uni", "é😀"), ("empty", "")];
        let expected: Vec<_> = expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(values(text), expected);
    }

    #[test]
    fn rewrites_value_spans_only() {
        let text = "#Minecraft server properties\r\nserver-port=25565\r\nmotd = A \\\r\n  server\r\nquery.port=25565";
        let out = patch(text, &[set("server-port", "25600"), set("motd", "Hi"), set("query.port", "25600")]).unwrap();
        assert_eq!(out, "#Minecraft server properties\r\nserver-port=25600\r\nmotd = Hi\r\nquery.port=25600");
    }

    #[test]
    fn escapes_what_java_would_misread() {
        let out = patch("a b\n", &[set("a", " =x\\y\nz"), set("new key", "é")]).unwrap();
        assert_eq!(out, "a \\ =x\\\\y\\nz\nnew\\ key é\n");
        assert_eq!(values(&out), [("a".to_owned(), " =x\\y\nz".to_owned()), ("new key".to_owned(), "é".to_owned())]);
    }

    #[test]
    fn malformed_unicode_escape_is_an_error() {
        assert!(matches!(patch("a=\\u12G4\n", &[]), Err(PatchError::Malformed(_))));
    }
}

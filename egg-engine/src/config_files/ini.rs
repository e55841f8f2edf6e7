//! INI files with `[sections]` (Mumble's `murmur.ini`, Cuberite's `settings.ini`, OpenTTD's
//! `openttd.cfg`).
//!
//! Keys are `section.key`; a key without a dot lives before the first section header (Mumble
//! eggs use `port`, `users`); `[a.b].key` names a section with dots, and `a.b.c` is key `b.c`
//! of section `a` (Wings splits the same way). Names are case-sensitive.
//!
//! Values may be double-quoted (`"..."`, kept quoted when rewritten). `;` or `#` after
//! whitespace starts an inline comment, which is kept; values that would be misread that way
//! are written in double quotes.

use super::lines::{Line, Splices, line_ending, position, split_lines};
use super::{Edit, PatchError};
use std::ops::Range;

/// One `key = value` line.
#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    value: String,
    quoted: bool,
    line: usize,
    /// Raw bytes between the key and the value (`=`, ` = `).
    separator: Range<usize>,
    /// Raw bytes of the value, quotes included, inline comment excluded.
    value_span: Range<usize>,
}

struct Layout<'a> {
    lines: Vec<Line<'a>>,
    entries: Vec<Entry>,
    /// Section names with the line of their header, in file order.
    headers: Vec<(String, usize)>,
}

/// Sets each key in every place it occurs. A missing key is added after the last key of its
/// section (keys without a section: at the top of the file if it has none yet); a missing
/// section is appended at the end of the file.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    let eol = line_ending(text);
    let mut text = text.to_owned();
    parse(&text).map_err(PatchError::Malformed)?;
    for edit in edits {
        let (section, key) = split_key(edit.key);
        let (section, key) = (section.as_str(), key.as_str());
        if key.is_empty() || key.contains(['=', ':', '\n', '\r']) || key.starts_with([';', '#', '[']) {
            return Err(PatchError::invalid_key(edit.key, "not a usable INI key name"));
        }
        if section.contains([']', '\n', '\r']) {
            return Err(PatchError::invalid_key(edit.key, "not a usable INI section name"));
        }
        let layout = parse(&text).map_err(PatchError::Malformed)?;
        let mut splices = Splices::default();
        let mut found = false;
        for entry in layout.entries.iter().filter(|entry| entry.section == section && entry.key == key) {
            found = true;
            if let Some(value) = edit.replacement.next_value(&entry.value) {
                let value = value.text();
                if unwrapped(&value) != entry.value {
                    let encoded =
                        encode(&value, entry.quoted).map_err(|reason| PatchError::unwritable(edit.key, reason))?;
                    splices.replace(entry.value_span.clone(), encoded);
                }
            }
        }
        if let Some(value) = edit.replacement.value_for_missing().filter(|_| !found) {
            let encoded = encode(&value.text(), false).map_err(|reason| PatchError::unwritable(edit.key, reason))?;
            insert_key(&text, &layout, section, key, &encoded, eol, &mut splices);
        }
        if !splices.is_empty() {
            text = splices.apply(&text)?;
        }
    }
    Ok(text)
}

fn insert_key(
    text: &str,
    layout: &Layout<'_>,
    section: &str,
    key: &str,
    value: &str,
    eol: &str,
    splices: &mut Splices,
) {
    let last_in_section = layout.entries.iter().rfind(|entry| entry.section == section);
    let separator = last_in_section.or(layout.entries.first()).map_or("=", |entry| &text[entry.separator.clone()]);
    let new_line = format!("{key}{separator}{value}");
    if let Some(entry) = last_in_section {
        splices.insert_lines_after(&layout.lines[entry.line], &new_line, eol);
    } else if section.is_empty() {
        match layout.lines.first() {
            Some(first) => splices.insert_lines_before(first, &new_line, eol),
            None => splices.append_lines(text, &new_line, eol),
        }
    } else if let Some((_, header)) = layout.headers.iter().rfind(|(name, _)| name == section) {
        splices.insert_lines_after(&layout.lines[*header], &new_line, eol);
    } else {
        let needs_blank_line = layout.lines.last().is_some_and(|line| !line.is_blank());
        let blank = if needs_blank_line { eol } else { "" };
        splices.append_lines(text, &format!("{blank}[{section}]{eol}{new_line}"), eol);
    }
}

/// `section.key` the way Wings splits it: at the first dot outside brackets; brackets are
/// dropped, later dots belong to the key.
fn split_key(key: &str) -> (String, String) {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut bracket_depth = 0usize;
    for c in key.chars() {
        match c {
            '[' => bracket_depth += 1,
            ']' => bracket_depth = bracket_depth.saturating_sub(1),
            '.' if bracket_depth == 0 && parts.is_empty() => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    match parts.pop() {
        Some(section) => (section, current),
        None => (String::new(), current),
    }
}

/// `value` without the double quotes it is wrapped in, if it is.
fn unwrapped(value: &str) -> &str {
    value.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(value)
}

/// The text written for `value` in place of a value that was `quoted` or not. A value the egg
/// already wrapped in double quotes (`"\"{{server.name}}\""`) is written as it is, never
/// quoted twice.
fn encode(value: &str, quoted: bool) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err("INI values cannot span lines".to_owned());
    }
    if value.len() >= 2 && unwrapped(value).len() == value.len() - 2 {
        if unwrapped(value).contains('"') {
            return Err("a value in double quotes cannot hold a double quote".to_owned());
        }
        return Ok(value.to_owned());
    }
    let misread = value != value.trim()
        || value.starts_with([';', '#', '"'])
        || [" ;", " #", "\t;", "\t#"].iter().any(|comment| value.contains(comment));
    Ok(if quoted || misread { format!("\"{value}\"") } else { value.to_owned() })
}

/// Every `(section, key, value)` of a file, decoded, for tests that read back what was written.
#[cfg(test)]
pub(super) fn read(text: &str) -> Vec<(String, String, String)> {
    parse(text)
        .map(|layout| layout.entries.into_iter().map(|entry| (entry.section, entry.key, entry.value)).collect())
        .unwrap_or_default()
}

fn parse(text: &str) -> Result<Layout<'_>, String> {
    let lines = split_lines(text);
    let mut entries = Vec::new();
    let mut headers = Vec::new();
    let mut section = String::new();
    for (index, line) in lines.iter().enumerate() {
        let body = line.content.trim_start();
        let body_start = line.end - body.len();
        if body.is_empty() || body.starts_with([';', '#']) {
            continue;
        }
        if let Some(header) = body.strip_prefix('[') {
            let close = header
                .find(']')
                .ok_or_else(|| format!("unterminated section header ({})", position(text, body_start)))?;
            section = header[..close].trim().to_owned();
            headers.push((section.clone(), index));
            continue;
        }
        // Lines without a delimiter are boolean keys to some readers; they hold no value to patch.
        let Some(delimiter) = body.find(['=', ':']) else { continue };
        let key = body[..delimiter].trim_end();
        if key.is_empty() {
            continue;
        }
        let after = &body[delimiter + 1..];
        let rest = after.trim_start_matches([' ', '\t']);
        let value_start = line.end - rest.len();
        let (value, span_len, quoted) = read_value(rest);
        entries.push(Entry {
            section: section.clone(),
            key: key.to_owned(),
            value: value.to_owned(),
            quoted,
            line: index,
            separator: body_start + key.len()..value_start,
            value_span: value_start..value_start + span_len,
        });
    }
    Ok(Layout { lines, entries, headers })
}

/// The value at the start of `rest`: its text, its raw length and whether it was quoted.
fn read_value(rest: &str) -> (&str, usize, bool) {
    if let Some(inner) = rest.strip_prefix('"') {
        if let Some(close) = inner.rfind('"') {
            return (&inner[..close], close + 2, true);
        }
    }
    let bytes = rest.as_bytes();
    let comment = (1..bytes.len())
        .find(|&at| matches!(bytes[at], b';' | b'#') && matches!(bytes[at - 1], b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let value = rest[..comment].trim_end();
    (value, value.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::test_support::set;

    #[test]
    fn splits_keys_like_wings() {
        let split = |key: &str| {
            let (section, key) = split_key(key);
            (section, key)
        };
        assert_eq!(split("network.server_port"), ("network".into(), "server_port".into()));
        assert_eq!(split("User:admin.Password"), ("User:admin".into(), "Password".into()));
        assert_eq!(split("port"), (String::new(), "port".into()));
        assert_eq!(split("[a.b].c"), ("a.b".into(), "c".into()));
        assert_eq!(split("a.b.c"), ("a".into(), "b.c".into()));
    }

    #[test]
    fn keeps_comments_quotes_and_separators() {
        let text = "[Server]\nPorts = 25565 ; the port\nDescription=\"Old\"\n[Other]\nPorts=1\n";
        let out = patch(text, &[set("Server.Ports", "25600"), set("Server.Description", "New")]).unwrap();
        assert_eq!(out, "[Server]\nPorts = 25600 ; the port\nDescription=\"New\"\n[Other]\nPorts=1\n");
    }

    #[test]
    fn creates_keys_and_sections_where_they_belong() {
        let text = "; murmur\ndatabase=\n\n[Ice]\nIce.Warn.UnknownProperties=1";
        let out = patch(text, &[set("host", "0.0.0.0"), set("Ice.Ice.MessageSizeMax", "65536"), set("New.key", "v")])
            .unwrap();
        assert_eq!(
            out,
            "; murmur\ndatabase=\nhost=0.0.0.0\n\n[Ice]\nIce.Warn.UnknownProperties=1\nIce.MessageSizeMax=65536\n\n[New]\nkey=v"
        );
        assert_eq!(patch("[a]\n", &[set("top", "1")]).unwrap(), "top=1\n[a]\n");
    }

    #[test]
    fn quotes_values_that_would_be_misread() {
        let out = patch("pw=\n", &[set("pw", "abc #1")]).unwrap();
        assert_eq!(out, "pw=\"abc #1\"\n");
        assert_eq!(patch(&out, &[set("pw", "abc #1")]).unwrap(), out);
        assert!(matches!(patch("pw=\n", &[set("pw", "a\nb")]), Err(PatchError::UnwritableValue { .. })));
    }

    /// Found on a real egg: a value the egg wraps in quotes was quoted again (`""Server""`).
    #[test]
    fn values_the_egg_quotes_are_not_quoted_again() {
        let text = "[Server]\nName=\"Old\"\nMotd=plain\n";
        let out = patch(text, &[set("Server.Name", "\"My server\""), set("Server.Motd", "\"Hi\"")]).unwrap();
        assert_eq!(out, "[Server]\nName=\"My server\"\nMotd=\"Hi\"\n");
        assert_eq!(patch(&out, &[set("Server.Name", "\"My server\"")]).unwrap(), out, "idempotent");
        assert_eq!(patch("[a]\n", &[set("a.k", "\"v\"")]).unwrap(), "[a]\nk=\"v\"\n");
        assert!(matches!(patch("[a]\n", &[set("a.k", "\"v\" ; x=\"")]), Err(PatchError::UnwritableValue { .. })));
    }

    #[test]
    fn unterminated_header_is_malformed() {
        assert!(matches!(patch("[Server\nPorts=1\n", &[]), Err(PatchError::Malformed(_))));
    }
}

//! TOML files (Velocity's `velocity.toml`). `toml_edit` parses the file and reports the byte
//! span of every value; the text is then edited at those spans, so everything else stays
//! byte for byte (re-rendering through `toml_edit` would normalise CRLF line endings).
//!
//! Text replacing an integer, float, boolean or date-time is written bare when it is one;
//! replacing a string it stays a string, in literal quotes (`'...'`) if the old value used
//! them and the text allows. New keys go after the last key of their table (as dotted keys
//! for tables that do not exist yet); a table that exists only implicitly (`a` of `[a.b]`) gets
//! a `[a]` header at the end of the file.

use super::escape::DoubleQuoted;
use super::key_path::{self, Segment};
use super::lines::{Splices, line_ending, split_lines};
use super::replacement::{NewValue, Scalar, is_integer};
use super::{Edit, MAX_DEPTH, PatchError};
use crate::depth;
use toml_edit::{ArrayOfTables, ImDocument, InlineTable, Item, Table, Value};

#[derive(Clone, Copy)]
enum Node<'d> {
    Table(&'d Table),
    ArrayOfTables(&'d ArrayOfTables),
    Value(&'d Value),
}

/// Where keys created below a node go.
#[derive(Clone, Debug)]
enum Anchor<'d> {
    /// The root or a table with a header; new keys are dotted by `relative` (for tables that
    /// exist only through dotted keys).
    Table { table: &'d Table, relative: Vec<String> },
    /// A table implied by deeper headers, at this full path.
    Implicit { path: Vec<String> },
    /// An inline table: keys are added inside its braces.
    Inline(&'d InlineTable),
    /// Keys cannot be added here.
    Unsupported,
}

enum Target<'d> {
    Found(&'d Value),
    FoundTable,
    Missing { anchor: Anchor<'d>, keys: Vec<String> },
}

/// Applies the edits one after the other.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    let eol = line_ending(text);
    let mut text = text.to_owned();
    parse(&text)?;
    for edit in edits {
        let path = edit.path()?;
        let document = parse(&text)?;
        let root = document.as_table();
        let mut targets = Vec::new();
        let anchor = Anchor::Table { table: root, relative: Vec::new() };
        walk(&path, Node::Table(root), 0, anchor, Some(&[]), false, &mut targets)
            .map_err(|reason| PatchError::cannot_patch(edit.key, reason))?;
        let mut splices = Splices::default();
        for target in targets {
            match target {
                Target::Found(value) => rewrite(&text, value, edit, &mut splices)?,
                Target::FoundTable if edit.replacement.creates_missing() => {
                    return Err(PatchError::cannot_patch(edit.key, "a table cannot be replaced by a value"));
                }
                Target::FoundTable => {}
                Target::Missing { anchor, keys } => {
                    if let Some(value) = edit.replacement.value_for_missing() {
                        let encoded = encode(value, None).map_err(|reason| PatchError::unwritable(edit.key, reason))?;
                        create(&text, root, anchor, &keys, &encoded, eol, &mut splices)
                            .map_err(|reason| PatchError::cannot_patch(edit.key, reason))?;
                    }
                }
            }
        }
        if !splices.is_empty() {
            text = splices.apply(&text)?;
            parse(&text).map_err(|_| PatchError::cannot_patch(edit.key, "the patched file would not be valid TOML"))?;
        }
    }
    Ok(text)
}

/// The document, once its nesting is known to be within [`MAX_DEPTH`]: toml_edit recurses
/// once per array or inline table level (about 25 KiB of stack each in a debug build).
fn parse(text: &str) -> Result<ImDocument<&str>, PatchError> {
    depth::toml(text, MAX_DEPTH).map_err(|too_deep| PatchError::too_deep(text, too_deep.offset))?;
    ImDocument::parse(text).map_err(|error| PatchError::Malformed(error.to_string().trim_end().to_owned()))
}

fn walk<'d>(
    path: &[Segment],
    node: Node<'d>,
    depth: usize,
    anchor: Anchor<'d>,
    full_path: Option<&[String]>,
    under_wildcard: bool,
    out: &mut Vec<Target<'d>>,
) -> Result<(), String> {
    let Some(segment) = path.get(depth) else {
        out.push(match node {
            Node::Value(value) => Target::Found(value),
            Node::Table(_) | Node::ArrayOfTables(_) => Target::FoundTable,
        });
        return Ok(());
    };
    let missing = |anchor: Anchor<'d>, out: &mut Vec<Target<'d>>| {
        let tail = &path[depth..];
        if !under_wildcard && key_path::creatable(tail) {
            let keys = key_path::key_names(tail).into_iter().map(str::to_owned).collect();
            out.push(Target::Missing { anchor, keys });
        }
    };
    let prefix = || key_path::display(&path[..depth]);
    match (segment, node) {
        (Segment::Key(name), Node::Table(table)) => match table.get(name).filter(|item| !item.is_none()) {
            Some(item) => {
                let child_path = full_path.map(|full_path| [full_path, std::slice::from_ref(name)].concat());
                if let Some((child, child_anchor)) = enter(item, name, &anchor, child_path.as_deref()) {
                    walk(path, child, depth + 1, child_anchor, child_path.as_deref(), under_wildcard, out)?;
                }
            }
            None => missing(anchor, out),
        },
        (Segment::Key(name), Node::Value(Value::InlineTable(inline))) => match inline.get(name) {
            Some(value) => walk(path, Node::Value(value), depth + 1, value_anchor(value), None, under_wildcard, out)?,
            None => missing(Anchor::Inline(inline), out),
        },
        (Segment::Index(index), Node::Value(Value::Array(array))) => {
            if let Some(value) = array.get(*index) {
                walk(path, Node::Value(value), depth + 1, value_anchor(value), None, under_wildcard, out)?;
            }
        }
        (Segment::Index(index), Node::ArrayOfTables(tables)) => {
            if let Some(table) = tables.get(*index) {
                let anchor = Anchor::Table { table, relative: Vec::new() };
                walk(path, Node::Table(table), depth + 1, anchor, None, under_wildcard, out)?;
            }
        }
        (Segment::Wildcard, Node::Table(table)) => {
            for (name, item) in table.iter() {
                let child_path = full_path.map(|full_path| [full_path, &[name.to_owned()]].concat());
                if let Some((child, child_anchor)) = enter(item, name, &anchor, child_path.as_deref()) {
                    walk(path, child, depth + 1, child_anchor, child_path.as_deref(), true, out)?;
                }
            }
        }
        (Segment::Wildcard, Node::Value(Value::InlineTable(inline))) => {
            for (_, value) in inline.iter() {
                walk(path, Node::Value(value), depth + 1, value_anchor(value), None, true, out)?;
            }
        }
        (Segment::Wildcard, Node::Value(Value::Array(array))) => {
            for value in array.iter() {
                walk(path, Node::Value(value), depth + 1, value_anchor(value), None, true, out)?;
            }
        }
        (Segment::Wildcard, Node::ArrayOfTables(tables)) => {
            for table in tables.iter() {
                let anchor = Anchor::Table { table, relative: Vec::new() };
                walk(path, Node::Table(table), depth + 1, anchor, None, true, out)?;
            }
        }
        _ if under_wildcard => {}
        (Segment::Key(_), _) => return Err(format!("`{}` is not a table", prefix())),
        (Segment::Index(_), _) => return Err(format!("`{}` is not an array", prefix())),
        (Segment::Wildcard, _) => return Err(format!("`{}` is neither a table nor an array", prefix())),
    }
    Ok(())
}

fn value_anchor(value: &Value) -> Anchor<'_> {
    match value {
        Value::InlineTable(inline) => Anchor::Inline(inline),
        _ => Anchor::Unsupported,
    }
}

/// The node for `item`, child `name` of a table whose anchor is `anchor`, and its own anchor.
/// `path` is the child's full key path when it is reachable by names alone from the root.
fn enter<'d>(
    item: &'d Item,
    name: &str,
    anchor: &Anchor<'d>,
    path: Option<&[String]>,
) -> Option<(Node<'d>, Anchor<'d>)> {
    Some(match item {
        Item::Table(table) if table.is_dotted() => {
            let anchor = match anchor {
                Anchor::Table { table: parent, relative } => {
                    Anchor::Table { table: parent, relative: [relative.as_slice(), &[name.to_owned()]].concat() }
                }
                Anchor::Implicit { .. } | Anchor::Inline(_) | Anchor::Unsupported => Anchor::Unsupported,
            };
            (Node::Table(table), anchor)
        }
        // Implied by a deeper header: a header of its own can be added, if it has a name path.
        Item::Table(table) if table.is_implicit() => {
            let anchor = path.map_or(Anchor::Unsupported, |path| Anchor::Implicit { path: path.to_vec() });
            (Node::Table(table), anchor)
        }
        Item::Table(table) => (Node::Table(table), Anchor::Table { table, relative: Vec::new() }),
        Item::ArrayOfTables(tables) => (Node::ArrayOfTables(tables), Anchor::Unsupported),
        Item::Value(value) => (Node::Value(value), value_anchor(value)),
        Item::None => return None,
    })
}

fn rewrite(text: &str, value: &Value, edit: &Edit<'_>, splices: &mut Splices) -> Result<(), PatchError> {
    let span = value.span().ok_or_else(|| PatchError::cannot_patch(edit.key, "value without a position"))?;
    let raw = &text[span.clone()];
    let current = match value {
        Value::String(string) => string.value().as_str(),
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => raw,
        Value::Array(_) | Value::InlineTable(_) => {
            if !edit.replacement.creates_missing() {
                return Ok(());
            }
            raw
        }
    };
    let Some(new) = edit.replacement.next_value(current) else { return Ok(()) };
    if matches!((&new, value), (NewValue::Text(new), Value::String(_)) if new == current) {
        return Ok(());
    }
    let encoded = encode(&new, Some((value, raw))).map_err(|reason| PatchError::unwritable(edit.key, reason))?;
    if encoded != raw {
        splices.replace(span, encoded);
    }
    Ok(())
}

/// TOML text for `value` replacing `existing` (the value and its raw text; `None`: a new key).
fn encode(value: &NewValue, existing: Option<(&Value, &str)>) -> Result<String, String> {
    let text = match value {
        NewValue::Scalar(Scalar::Null) => return Err("TOML has no null".to_owned()),
        NewValue::Scalar(scalar) => return Ok(NewValue::Scalar(scalar.clone()).text().into_owned()),
        NewValue::Text(text) => text,
    };
    // A bare TOML value must be the whole text: no padding, comment or second line.
    let plain = text.trim() == text && !text.contains(['#', '\n', '\r']);
    let parsed = plain.then(|| text.parse::<Value>().ok()).flatten();
    let parsed_integer = matches!(parsed, Some(Value::Integer(_)));
    let bare = match (existing.map(|(value, _)| value), &parsed) {
        (Some(Value::Integer(_)), Some(Value::Integer(_)))
        | (Some(Value::Float(_)), Some(Value::Float(_)))
        | (Some(Value::Boolean(_)), Some(Value::Boolean(_)))
        | (Some(Value::Datetime(_)), Some(Value::Datetime(_))) => Some(text.clone()),
        (Some(Value::Float(_)), _) if parsed_integer && is_integer(text) => Some(format!("{text}.0")),
        // New keys, arrays and inline tables: integers become numbers, as Wings does.
        (None | Some(Value::Array(_) | Value::InlineTable(_)), _) if parsed_integer && is_integer(text) => {
            Some(text.clone())
        }
        _ => None,
    };
    if let Some(bare) = bare {
        return Ok(bare);
    }
    let literal = existing.is_some_and(|(_, raw)| raw.starts_with('\'') && !raw.starts_with("'''"));
    if literal && !text.chars().any(|c| c == '\'' || (c.is_control() && c != '\t')) {
        return Ok(format!("'{text}'"));
    }
    Ok(BASIC_STRING.quote(text))
}

/// Basic strings: `\b` and `\f` have letters; every other control character must be a
/// `\uXXXX` escape.
const BASIC_STRING: DoubleQuoted =
    DoubleQuoted { short: &[('\x08', 'b'), ('\x0c', 'f')], unicode: char::is_control, upper_hex: true };

fn bare_or_quoted_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        BASIC_STRING.quote(key)
    }
}

fn dotted(keys: &[String]) -> String {
    keys.iter().map(|key| bare_or_quoted_key(key)).collect::<Vec<_>>().join(".")
}

/// The end of the last value that belongs to `table`'s own section (dotted keys included).
fn body_end(table: &Table) -> Option<usize> {
    // The root's span is empty; a header table's runs from its header to its last value.
    let own = table.span().filter(|span| !span.is_empty()).map(|span| span.end);
    let values = table.iter().filter_map(|(_, item)| match item {
        Item::Value(value) => value.span().map(|span| span.end),
        Item::Table(dotted) if dotted.is_dotted() => body_end(dotted),
        Item::Table(_) | Item::ArrayOfTables(_) | Item::None => None,
    });
    own.into_iter().chain(values).max()
}

/// `key = value` or `key=value`, as the file writes it.
fn separator<'t>(text: &'t str, root: &Table) -> &'t str {
    fn find(table: &Table) -> Option<std::ops::Range<usize>> {
        table.iter().find_map(|(name, item)| match item {
            Item::Value(value) => {
                let key_end = table.key(name).and_then(|key| key.span()).map(|span| span.end)?;
                let value_start = value.span()?.start;
                (key_end <= value_start).then_some(key_end..value_start)
            }
            Item::Table(child) => find(child),
            Item::ArrayOfTables(_) | Item::None => None,
        })
    }
    find(root).map(|range| &text[range]).filter(|sep| sep.trim() == "=" && !sep.contains('\n')).unwrap_or(" = ")
}

fn create(
    text: &str,
    root: &Table,
    anchor: Anchor<'_>,
    keys: &[String],
    value: &str,
    eol: &str,
    splices: &mut Splices,
) -> Result<(), String> {
    let separator = separator(text, root);
    match anchor {
        Anchor::Table { table, relative } => {
            let line = format!("{}{separator}{value}", dotted(&[relative, keys.to_vec()].concat()));
            let lines = split_lines(text);
            match body_end(table) {
                Some(end) => {
                    let index = lines.partition_point(|line| line.next < end).min(lines.len().saturating_sub(1));
                    splices.insert_lines_after(&lines[index], &line, eol);
                }
                None => match lines.first() {
                    Some(first) => splices.insert_lines_before(first, &line, eol),
                    None => splices.append_lines(text, &line, eol),
                },
            }
        }
        Anchor::Implicit { path } => {
            let needs_blank_line = split_lines(text).last().is_some_and(|line| !line.is_blank());
            let blank = if needs_blank_line { eol } else { "" };
            let block = format!("{blank}[{}]{eol}{}{separator}{value}", dotted(&path), dotted(keys));
            splices.append_lines(text, &block, eol);
        }
        Anchor::Inline(inline) => {
            let span = inline.span().ok_or("this inline table has no position")?;
            let member = format!("{} = {value}", dotted(keys));
            if inline.is_empty() {
                splices.replace(span, format!("{{ {member} }}"));
            } else {
                let last_end = inline
                    .iter()
                    .map(|(_, value)| value.span().map(|span| span.end))
                    .collect::<Option<Vec<_>>>()
                    .and_then(|ends| ends.into_iter().max())
                    .ok_or("this inline table uses dotted keys; cannot add to it")?;
                splices.insert(last_end, format!(", {member}"));
            }
        }
        Anchor::Unsupported => return Err("keys can only be added to tables and inline tables".to_owned()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::replacement::Replacement;
    use crate::config_files::test_support::set;

    #[test]
    fn keeps_types_styles_and_line_endings() {
        let text = "a = 1 # c\r\nb = 'lit'\r\nc = \"s\"\r\nd = 1.5\r\ne = true\r\nf = 1979-05-27\r\n";
        let edits = [set("a", "2"), set("b", "new"), set("c", "3"), set("d", "2"), set("e", "false"), set("f", "x")];
        let out = patch(text, &edits).unwrap();
        assert_eq!(out, "a = 2 # c\r\nb = 'new'\r\nc = \"3\"\r\nd = 2.0\r\ne = false\r\nf = \"x\"\r\n");
    }

    #[test]
    fn navigates_tables_arrays_and_inline_tables() {
        let text = "[servers]\nlobby = \"127.0.0.1:30066\"\ntry = [\"lobby\"]\n\n[[srv]]\nn = 1\n[[srv]]\nn = 2\n[t]\ninl = { a = 1 }\n";
        let edits = [
            set("servers.lobby", "x"),
            set("try", "y"),
            set("srv[1].n", "5"),
            set("srv.*.n", "7"),
            set("t.inl.a", "3"),
        ];
        let out = patch(text, &edits).unwrap();
        assert_eq!(
            out,
            "try = \"y\"\n[servers]\nlobby = \"x\"\ntry = [\"lobby\"]\n\n[[srv]]\nn = 7\n[[srv]]\nn = 7\n[t]\ninl = { a = 3 }\n"
        );
    }

    #[test]
    fn creates_keys_in_their_table() {
        let text = "# header\nx = 1\n\n[a]\nk = 1 # c\n\n[b.c]\nd = 1\n[e]\ninl = {}\nin2 = { p = 1 }\n";
        let edits = [
            set("y", "2"),
            set("a.n", "v"),
            set("a.deep.er", "w"),
            set("b.m", "1"),
            set("e.inl.q", "z"),
            set("e.in2.r", "s"),
        ];
        let out = patch(text, &edits).unwrap();
        assert_eq!(
            out,
            "# header\nx = 1\ny = 2\n\n[a]\nk = 1 # c\nn = \"v\"\ndeep.er = \"w\"\n\n[b.c]\nd = 1\n[e]\ninl = { q = \"z\" }\nin2 = { p = 1, r = \"s\" }\n\n[b]\nm = 1\n"
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(patch("a = \n", &[]), Err(PatchError::Malformed(_))));
        assert!(matches!(patch("[a]\nb = 1\n", &[set("a", "x")]), Err(PatchError::CannotPatch { .. })));
        assert!(matches!(patch("a = 1\n", &[set("a.b", "x")]), Err(PatchError::CannotPatch { .. })));
        let null = Edit { key: "a", replacement: Replacement::Set(NewValue::Scalar(Scalar::Null)) };
        assert!(matches!(patch("a = 1\n", &[null]), Err(PatchError::UnwritableValue { .. })));
    }
}

//! JSON files (Factorio's `server-settings.json`, Impostor's `config.json`), edited through a
//! small scanner that records the byte span of every value.
//!
//! `//` and `/* */` comments are accepted as whitespace (and kept), since several games ship
//! commented JSON. Text replacing a number or boolean is written unquoted when it is one;
//! text replacing a string stays a string.

use super::escape::DoubleQuoted;
use super::key_path::{self, Shape, Target, Tree};
use super::lines::{LineStarts, Splices, line_ending, position};
use super::replacement::{NewValue, Replacement, Scalar, is_integer};
use super::{Edit, MAX_DEPTH, PatchError};
use crate::depth;
use std::ops::Range;

#[derive(Debug)]
enum Node {
    Object { span: Range<usize>, members: Vec<Member> },
    Array { span: Range<usize>, items: Vec<Node> },
    Scalar { span: Range<usize>, kind: ScalarKind },
}

#[derive(Debug)]
struct Member {
    key: String,
    key_span: Range<usize>,
    value: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum ScalarKind {
    String(String),
    Number,
    Bool,
    Null,
}

impl Node {
    fn span(&self) -> Range<usize> {
        match self {
            Self::Object { span, .. } | Self::Array { span, .. } | Self::Scalar { span, .. } => span.clone(),
        }
    }
}

impl Tree for Node {
    type Entry = Member;
    const NAMES: (&'static str, &'static str) = ("an object", "an array");

    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Self::Object { members, .. } => Shape::Map(members),
            Self::Array { items, .. } => Shape::List(items),
            Self::Scalar { .. } => Shape::Scalar,
        }
    }

    fn key(member: &Member) -> &str {
        &member.key
    }

    fn value(member: &Member) -> &Self {
        &member.value
    }
}

/// Applies the edits one after the other.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    let eol = line_ending(text);
    let mut text = text.to_owned();
    parse(&text)?;
    for edit in edits {
        let path = edit.path()?;
        let root = parse(&text)?;
        let targets = key_path::locate(&root, &path).map_err(|reason| PatchError::cannot_patch(edit.key, reason))?;
        let mut splices = Splices::default();
        for target in targets {
            match target {
                Target::Found(node) => rewrite(&text, node, &edit.replacement, &mut splices),
                Target::Missing { parent, keys } => {
                    if let Some(value) = edit.replacement.value_for_missing() {
                        let lines = LineStarts::new(&text);
                        let style = Style::of(&text, &lines, &root, eol);
                        insert_member(&text, &lines, parent, &keys, value, &style, &mut splices);
                    }
                }
            }
        }
        if !splices.is_empty() {
            text = splices.apply(&text)?;
        }
    }
    Ok(text)
}

fn rewrite(text: &str, node: &Node, replacement: &Replacement, splices: &mut Splices) {
    let span = node.span();
    let raw = &text[span.clone()];
    let (current, kind) = match node {
        Node::Scalar { kind: ScalarKind::String(decoded), .. } => (decoded.as_str(), Some(node_kind(node))),
        Node::Scalar { .. } => (raw, Some(node_kind(node))),
        // Objects and arrays equal no literal; only an unconditional value replaces them.
        Node::Object { .. } | Node::Array { .. } => match replacement {
            Replacement::Set(value) => {
                splices.replace(span, encode(value, None));
                return;
            }
            Replacement::Match(_) => return,
        },
    };
    let Some(value) = replacement.next_value(current) else { return };
    let encoded = encode(&value, kind.as_ref());
    let unchanged_string =
        matches!((&value, &kind), (NewValue::Text(new), Some(ScalarKind::String(_))) if new == current);
    if encoded != raw && !unchanged_string {
        splices.replace(span, encoded);
    }
}

fn node_kind(node: &Node) -> ScalarKind {
    match node {
        Node::Scalar { kind, .. } => kind.clone(),
        Node::Object { .. } | Node::Array { .. } => ScalarKind::Null,
    }
}

/// JSON text for `value` replacing a value of kind `existing` (`None`: a new key).
fn encode(value: &NewValue, existing: Option<&ScalarKind>) -> String {
    let text = match value {
        NewValue::Scalar(Scalar::Bool(flag)) => return flag.to_string(),
        NewValue::Scalar(Scalar::Number(number)) => return number.clone(),
        NewValue::Scalar(Scalar::Null) => return "null".to_owned(),
        NewValue::Text(text) => text,
    };
    let unquoted = match existing {
        Some(ScalarKind::String(_)) => false,
        Some(ScalarKind::Number) => is_number(text),
        Some(ScalarKind::Bool) => text == "true" || text == "false",
        // Wings writes integers as numbers into new or null values; everything else as text.
        Some(ScalarKind::Null) | None => is_integer(text) && is_number(text),
    };
    if unquoted { text.clone() } else { STRING.quote(text) }
}

/// JSON strings: `\b` and `\f` have letters; the other characters below U+0020 must be
/// `\u00xx` escapes (written in lower case); everything else is written as is.
const STRING: DoubleQuoted =
    DoubleQuoted { short: &[('\x08', 'b'), ('\x0c', 'f')], unicode: |c| u32::from(c) < 0x20, upper_hex: false };

fn is_number(text: &str) -> bool {
    let mut parser = Parser::new(text);
    parser.number().is_ok() && parser.pos == text.len()
}

/// How the file lays out objects, for members we add.
struct Style<'a> {
    eol: &'a str,
    /// One level of indentation.
    unit: String,
    /// Between a key and its value (`": "`, `":"`).
    colon: String,
    /// Objects spread over lines.
    pretty: bool,
}

impl<'a> Style<'a> {
    fn of(text: &str, lines: &LineStarts, root: &Node, eol: &'a str) -> Self {
        let mut style = Self { eol, unit: "  ".to_owned(), colon: ": ".to_owned(), pretty: text.contains('\n') };
        if let Some(unit) = find_indent_unit(text, lines, root) {
            style.unit = unit;
        }
        if let Some(colon) = find_colon(text, root) {
            style.colon = colon;
        }
        style
    }

    /// `"key": value`, nesting the remaining keys as objects.
    fn member(&self, keys: &[&str], value: &str, indent: &str) -> String {
        let Some((first, rest)) = keys.split_first() else { return value.to_owned() };
        let value = if rest.is_empty() {
            value.to_owned()
        } else if self.pretty {
            let inner_indent = format!("{indent}{}", self.unit);
            format!("{{{}{inner_indent}{}{}{indent}}}", self.eol, self.member(rest, value, &inner_indent), self.eol)
        } else {
            format!("{{{}}}", self.member(rest, value, indent))
        };
        format!("{}{}{value}", STRING.quote(first), self.colon)
    }
}

fn insert_member(
    text: &str,
    lines: &LineStarts,
    object: &Node,
    keys: &[&str],
    value: &NewValue,
    style: &Style<'_>,
    splices: &mut Splices,
) {
    let Node::Object { span, members } = object else { return };
    let value = encode(value, None);
    match members.last() {
        Some(last) => {
            let key_start = last.key_span.start;
            let starts_line = text[lines.line_start(key_start)..key_start].trim().is_empty();
            let indent = line_indent(text, lines, key_start);
            let separator = if starts_line {
                format!(",{}{indent}", style.eol)
            } else {
                let spacing = members.len().checked_sub(2).map_or(" ", |before| {
                    let gap = &text[members[before].value.span().end..key_start];
                    let gap = gap.trim_start().strip_prefix(',').unwrap_or(" ");
                    if gap.trim().is_empty() && !gap.contains('\n') { gap } else { " " }
                });
                format!(",{spacing}")
            };
            splices.insert(last.value.span().end, format!("{separator}{}", style.member(keys, &value, indent)));
        }
        None => {
            let inner = span.start + 1..span.end - 1;
            let whitespace_only = text[inner.clone()].trim().is_empty();
            let insertion = if style.pretty {
                let outer = line_indent(text, lines, span.start);
                let indent = format!("{outer}{}", style.unit);
                let closing = if whitespace_only { format!("{}{outer}", style.eol) } else { String::new() };
                format!("{}{indent}{}{closing}", style.eol, style.member(keys, &value, &indent))
            } else {
                style.member(keys, &value, "")
            };
            if whitespace_only {
                splices.replace(inner, insertion);
            } else {
                splices.insert(inner.start, insertion);
            }
        }
    }
}

/// The spaces and tabs that start the line holding `offset`.
fn line_indent<'t>(text: &'t str, lines: &LineStarts, offset: usize) -> &'t str {
    let line = &text[lines.line_start(offset)..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

fn find_indent_unit(text: &str, lines: &LineStarts, node: &Node) -> Option<String> {
    let (open, first_child_start) = match node {
        Node::Object { span, members } => (span.start, members.first().map(|m| m.key_span.start)),
        Node::Array { span, items } => (span.start, items.first().map(|item| item.span().start)),
        Node::Scalar { .. } => return None,
    };
    if let Some(child) = first_child_start {
        let (outer, inner) = (line_indent(text, lines, open), line_indent(text, lines, child));
        let child_starts_line = text[lines.line_start(child)..child].trim().is_empty();
        if child_starts_line && inner.len() > outer.len() && inner.starts_with(outer) {
            return Some(inner[outer.len()..].to_owned());
        }
    }
    match node {
        Node::Object { members, .. } => members.iter().find_map(|member| find_indent_unit(text, lines, &member.value)),
        Node::Array { items, .. } => items.iter().find_map(|item| find_indent_unit(text, lines, item)),
        Node::Scalar { .. } => None,
    }
}

fn find_colon(text: &str, node: &Node) -> Option<String> {
    match node {
        Node::Object { members, .. } => members.iter().find_map(|member| {
            let colon = &text[member.key_span.end..member.value.span().start];
            if colon.trim() == ":" && !colon.contains('\n') {
                Some(colon.to_owned())
            } else {
                find_colon(text, &member.value)
            }
        }),
        Node::Array { items, .. } => items.iter().find_map(|item| find_colon(text, item)),
        Node::Scalar { .. } => None,
    }
}

/// The node tree. Its nesting is measured first, without recursion, so that a hostile file
/// is refused before the parser recurses (its own check stops it at [`MAX_DEPTH`] regardless).
fn parse(text: &str) -> Result<Node, PatchError> {
    depth::json(text, MAX_DEPTH, true).map_err(|too_deep| PatchError::too_deep(text, too_deep.offset))?;
    let mut parser = Parser::new(text);
    parser.skip_whitespace()?;
    let root = parser.value()?;
    parser.skip_whitespace()?;
    if parser.pos != text.len() {
        return Err(parser.error("unexpected text after the JSON value"));
    }
    Ok(root)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, bytes: text.as_bytes(), pos: 0, depth: 0 }
    }

    fn error(&self, what: &str) -> PatchError {
        PatchError::Malformed(format!("{what} ({})", position(self.text, self.pos)))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) -> Result<(), PatchError> {
        loop {
            match (self.peek(), self.bytes.get(self.pos + 1)) {
                (Some(b' ' | b'\t' | b'\n' | b'\r'), _) => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    self.pos = self.text[self.pos..].find('\n').map_or(self.text.len(), |newline| self.pos + newline);
                }
                (Some(b'/'), Some(b'*')) => match self.text[self.pos + 2..].find("*/") {
                    Some(close) => self.pos += close + 4,
                    None => return Err(self.error("unterminated comment")),
                },
                _ => return Ok(()),
            }
        }
    }

    fn consume(&mut self, byte: u8) -> Result<(), PatchError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", char::from(byte))))
        }
    }

    fn value(&mut self) -> Result<Node, PatchError> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let start = self.pos;
                let decoded = self.string()?;
                Ok(Node::Scalar { span: start..self.pos, kind: ScalarKind::String(decoded) })
            }
            Some(b't') => self.literal("true", ScalarKind::Bool),
            Some(b'f') => self.literal("false", ScalarKind::Bool),
            Some(b'n') => self.literal("null", ScalarKind::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.number()?;
                Ok(Node::Scalar { span: start..self.pos, kind: ScalarKind::Number })
            }
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end of file")),
        }
    }

    /// Checked before every object and array, so the recursion never goes deeper than
    /// [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), PatchError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(PatchError::too_deep(self.text, self.pos)) } else { Ok(()) }
    }

    fn object(&mut self) -> Result<Node, PatchError> {
        let start = self.pos;
        let mut members = Vec::new();
        self.delimited(b'}', |parser| {
            if parser.peek() != Some(b'"') {
                return Err(parser.error("expected a string key"));
            }
            let key_start = parser.pos;
            let key = parser.string()?;
            let key_span = key_start..parser.pos;
            parser.skip_whitespace()?;
            parser.consume(b':')?;
            parser.skip_whitespace()?;
            let value = parser.value()?;
            members.push(Member { key, key_span, value });
            Ok(())
        })?;
        Ok(Node::Object { span: start..self.pos, members })
    }

    fn array(&mut self) -> Result<Node, PatchError> {
        let start = self.pos;
        let mut items = Vec::new();
        self.delimited(b']', |parser| {
            items.push(parser.value()?);
            Ok(())
        })?;
        Ok(Node::Array { span: start..self.pos, items })
    }

    /// The comma-separated items of an object or array, `pos` at its opening bracket; `item`
    /// reads one item from its first character. Leaves `pos` past the `close` bracket.
    fn delimited(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), PatchError>,
    ) -> Result<(), PatchError> {
        self.enter()?;
        self.pos += 1;
        self.skip_whitespace()?;
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace()?;
                item(self)?;
                self.skip_whitespace()?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(byte) if byte == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error(&format!("expected `,` or `{}`", char::from(close)))),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn literal(&mut self, word: &str, kind: ScalarKind) -> Result<Node, PatchError> {
        if !self.text[self.pos..].starts_with(word) {
            return Err(self.error("expected a JSON value"));
        }
        let start = self.pos;
        self.pos += word.len();
        Ok(Node::Scalar { span: start..self.pos, kind })
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), PatchError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("malformed number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("malformed number"));
            }
        }
        Ok(())
    }

    /// A string at `pos` (its opening quote); returns it decoded and leaves `pos` past it.
    fn string(&mut self) -> Result<String, PatchError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(stop) = rest.find(|c: char| c == '"' || c == '\\' || u32::from(c) < 0x20) else {
                return Err(self.error("unterminated string"));
            };
            out.push_str(&rest[..stop]);
            self.pos += stop;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => self.escape(&mut out)?,
                _ => return Err(self.error("control character in string")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), PatchError> {
        let escaped = self.bytes.get(self.pos + 1).copied();
        self.pos += 2;
        out.push(match escaped {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\x08',
            Some(b'f') => '\x0c',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4()?;
                if (0xD800..0xDC00).contains(&unit) && self.text[self.pos..].starts_with("\\u") {
                    let resume = self.pos;
                    self.pos += 2;
                    let low = self.hex4()?;
                    if (0xDC00..0xE000).contains(&low) {
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                            .unwrap_or(char::REPLACEMENT_CHARACTER)
                    } else {
                        self.pos = resume;
                        char::REPLACEMENT_CHARACTER
                    }
                } else {
                    char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            }
            _ => {
                self.pos -= 2;
                return Err(self.error("invalid escape"));
            }
        });
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, PatchError> {
        let hex = self.text.get(self.pos..self.pos + 4).filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let unit =
            hex.and_then(|hex| u32::from_str_radix(hex, 16).ok()).ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::test_support::set;

    #[test]
    fn keeps_types_and_formatting() {
        let text = "{\r\n  \"name\": \"old\",  // comment\r\n  \"max\": 0,\r\n  \"flag\": false,\r\n  \"nested\": {\"port\": 1}\r\n}";
        let edits = [set("name", "1234"), set("max", "20"), set("flag", "true"), set("nested.port", "x\"y")];
        let out = patch(text, &edits).unwrap();
        assert_eq!(
            out,
            "{\r\n  \"name\": \"1234\",  // comment\r\n  \"max\": 20,\r\n  \"flag\": true,\r\n  \"nested\": {\"port\": \"x\\\"y\"}\r\n}"
        );
    }

    #[test]
    fn unchanged_strings_keep_their_escapes() {
        let text = "{\"a\": \"caf\\u00e9\"}";
        assert_eq!(patch(text, &[set("a", "café")]).unwrap(), text);
    }

    #[test]
    fn creates_members_in_the_file_style() {
        let text = "{\n    \"a\": 1,\n    \"empty\": {}\n}\n";
        let out = patch(text, &[set("b.c", "x"), set("empty.d", "2")]).unwrap();
        assert_eq!(
            out,
            "{\n    \"a\": 1,\n    \"empty\": {\n        \"d\": 2\n    },\n    \"b\": {\n        \"c\": \"x\"\n    }\n}\n"
        );
        assert_eq!(patch("{\"a\":1}", &[set("b", "y")]).unwrap(), "{\"a\":1, \"b\":\"y\"}");
        assert_eq!(patch("{}", &[set("b", "y")]).unwrap(), "{\"b\": \"y\"}");
    }

    #[test]
    fn indices_and_wildcards() {
        let text = r#"{"l": [{"p": 1}, {"p": 2}], "s": {"a": {"h": "x"}, "b": {"h": "y"}, "c": 3}}"#;
        let out = patch(text, &[set("l[1].p", "5"), set("s.*.h", "z"), set("l[7].p", "9")]).unwrap();
        assert_eq!(out, r#"{"l": [{"p": 1}, {"p": 5}], "s": {"a": {"h": "z"}, "b": {"h": "z"}, "c": 3}}"#);
    }

    #[test]
    fn errors() {
        for bad in ["", "{", "{\"a\" 1}", "{\"a\": 01}", "{\"a\": \"\n\"}", "{} x", "[1,]", "{\"a\": tru}"] {
            assert!(matches!(patch(bad, &[]), Err(PatchError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(patch("{\"a\": 1}", &[set("a.b", "x")]), Err(PatchError::CannotPatch { .. })));
        assert!(matches!(patch("{}", &[set("a..b", "x")]), Err(PatchError::InvalidKey { .. })));
    }
}

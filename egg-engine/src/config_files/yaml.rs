//! YAML files (BungeeCord's `config.yml`, Lavalink's `application.yml`), edited through a
//! locator for block-style (indentation-based) YAML that records the byte span of scalars.
//!
//! The file is first validated with `yaml_serde`. Paths may not lead into flow-style
//! collections (`{a: 1}`, `[1, 2]`); those can only be replaced whole.
//!
//! Text is written plain when YAML reads it back as the same text and type; otherwise it is
//! quoted (single quotes, or double quotes when it needs escapes). A quoted value stays quoted
//! in its quote style; a plain string stays a string (`'123'`), a plain number or boolean takes
//! text as written (`25565`). Created keys follow Wings: integers become numbers, other text
//! strings.

use super::escape::DoubleQuoted;
use super::key_path::{self, Segment, Shape, Target, Tree};
use super::lines::{Line, Splices, line_ending, position, split_lines};
use super::replacement::{NewValue, Replacement, Scalar, is_integer};
use super::{Edit, MAX_DEPTH, PatchError};
use crate::{depth, yaml_expansion};
use std::ops::Range;

#[derive(Debug)]
enum Node {
    Mapping(Mapping),
    Sequence(Sequence),
    Scalar(ScalarNode),
    /// Nothing after `key:` or `-` (null). `at` is where a value would go; `owner` is the
    /// line and column of the key or dash, `None` for an empty document.
    Empty {
        at: usize,
        owner: Option<(usize, usize)>,
    },
}

#[derive(Debug)]
struct Mapping {
    col: usize,
    entries: Vec<(String, Node)>,
    last_line: usize,
}

#[derive(Debug)]
struct Sequence {
    items: Vec<Node>,
}

#[derive(Debug)]
struct ScalarNode {
    span: Range<usize>,
    style: Style,
    /// The scalar's text after unquoting and folding.
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>`.
    Block,
    /// `*anchor`.
    Alias,
    /// A flow collection (`[..]`, `{..}`), kept as an opaque value.
    Flow,
}

impl Tree for Node {
    type Entry = (String, Node);
    const NAMES: (&'static str, &'static str) = ("a mapping", "a sequence");

    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Self::Mapping(mapping) => Shape::Map(&mapping.entries),
            Self::Sequence(sequence) => Shape::List(&sequence.items),
            Self::Scalar(ScalarNode { style: Style::Flow, .. }) => {
                Shape::Opaque("a flow-style collection, which cannot be navigated")
            }
            Self::Scalar(_) => Shape::Scalar,
            Self::Empty { .. } => Shape::Empty,
        }
    }

    fn key((key, _): &(String, Node)) -> &str {
        key
    }

    fn value((_, value): &(String, Node)) -> &Self {
        value
    }
}

/// Applies the edits one after the other.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    validate(text)?;
    let eol = line_ending(text);
    let mut text = text.to_owned();
    for edit in edits {
        let path = edit.path()?;
        let lines = split_lines(&text);
        let root =
            Locator::new(&text, &lines).document().map_err(|reason| PatchError::cannot_patch(edit.key, reason))?;
        let targets = key_path::locate(&root, &path).map_err(|reason| PatchError::cannot_patch(edit.key, reason))?;
        let mut splices = Splices::default();
        for target in targets {
            match target {
                Target::Found(node) => rewrite(&text, node, edit, &path, &mut splices)?,
                Target::Missing { parent, keys } => {
                    if let Some(value) = edit.replacement.value_for_missing() {
                        let layout = Layout { text: &text, lines: &lines, unit: indent_unit(&root).unwrap_or(2), eol };
                        insert(&layout, parent, &keys, &encode(value, Existing::Missing), &mut splices);
                    }
                }
            }
        }
        if !splices.is_empty() {
            text = splices.apply(&text)?;
            validate(&text).map_err(|_| {
                PatchError::cannot_patch(edit.key, "the patched file would not be valid YAML (unsupported layout)")
            })?;
        }
    }
    Ok(text)
}

/// Whether `text` is valid YAML. Its nesting is measured first: libyaml slows down with every
/// open flow level (quadratic time on `[[[[…`), and the locator recurses once per level. Then
/// it is parsed with its aliases followed, within a budget (see [`yaml_expansion`]).
fn validate(text: &str) -> Result<(), PatchError> {
    depth::yaml(text, MAX_DEPTH).map_err(|too_deep| PatchError::too_deep(text, too_deep.offset))?;
    yaml_expansion::check(text).map_err(|refused| match refused {
        yaml_expansion::Refused::Expands { limit } => PatchError::ExpandsTooMuch(limit),
        other => PatchError::Malformed(other.to_string()),
    })
}

fn rewrite(
    text: &str,
    node: &Node,
    edit: &Edit<'_>,
    path: &[Segment],
    splices: &mut Splices,
) -> Result<(), PatchError> {
    let (span, current, existing) = match node {
        Node::Scalar(scalar) => {
            let existing = match scalar.style {
                Style::Plain => Existing::Plain(&scalar.value),
                Style::SingleQuoted => Existing::Quoted(Quote::Single),
                Style::DoubleQuoted => Existing::Quoted(Quote::Double),
                Style::Block | Style::Alias | Style::Flow => Existing::Other,
            };
            (scalar.span.clone(), scalar.value.as_str(), existing)
        }
        Node::Empty { at, .. } => (*at..*at, "", Existing::Null),
        Node::Mapping(_) | Node::Sequence(_) => {
            if matches!(edit.replacement, Replacement::Match(_)) {
                return Ok(());
            }
            let what = if matches!(node, Node::Mapping(_)) { "mapping" } else { "sequence" };
            return Err(PatchError::cannot_patch(
                edit.key,
                format!("`{}` is a {what}; only scalars can be replaced", key_path::display(path)),
            ));
        }
    };
    let Some(value) = edit.replacement.next_value(current) else { return Ok(()) };
    let quoted = matches!(existing, Existing::Quoted(_));
    if matches!(&value, NewValue::Text(new) if new == current) && (quoted || text[span.clone()] == *current) {
        return Ok(());
    }
    let encoded = encode(&value, existing);
    if span.is_empty() {
        splices.insert(span.start, format!(" {encoded}"));
    } else if text[span.clone()] != encoded {
        splices.replace(span, encoded);
    }
    Ok(())
}

/// The file being patched, as new lines need it.
struct Layout<'a> {
    text: &'a str,
    lines: &'a [Line<'a>],
    /// Spaces per nesting level.
    unit: usize,
    eol: &'a str,
}

/// Adds `keys[0]: ...: value` (nested one level per key) to `parent`.
fn insert(layout: &Layout<'_>, parent: &Node, keys: &[&str], value: &str, splices: &mut Splices) {
    let render = |col: usize| {
        let mut out = String::new();
        for (depth, key) in keys.iter().enumerate() {
            if depth > 0 {
                out.push_str(layout.eol);
            }
            out.push_str(&" ".repeat(col + depth * layout.unit));
            out.push_str(&encode_key(key));
            out.push(':');
        }
        out.push(' ');
        out.push_str(value);
        out
    };
    let (lines, eol) = (layout.lines, layout.eol);
    match parent {
        Node::Mapping(mapping) => splices.insert_lines_after(&lines[mapping.last_line], &render(mapping.col), eol),
        Node::Empty { owner: Some((line, col)), .. } => {
            splices.insert_lines_after(&lines[*line], &render(col + layout.unit), eol)
        }
        Node::Empty { owner: None, .. } => splices.append_lines(layout.text, &render(0), eol),
        Node::Sequence(_) | Node::Scalar(_) => {}
    }
}

/// The indentation step of nested mappings in the file.
fn indent_unit(node: &Node) -> Option<usize> {
    match node {
        Node::Mapping(mapping) => mapping.entries.iter().find_map(|(_, value)| match value {
            Node::Mapping(child) if child.col > mapping.col => Some(child.col - mapping.col),
            other => indent_unit(other),
        }),
        Node::Sequence(sequence) => sequence.items.iter().find_map(indent_unit),
        Node::Scalar(_) | Node::Empty { .. } => None,
    }
}

// ----- writing values -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Single,
    Double,
}

/// What is being replaced.
#[derive(Debug, Clone, Copy)]
enum Existing<'a> {
    /// A plain scalar with this text.
    Plain(&'a str),
    Quoted(Quote),
    /// A block scalar, alias or flow collection.
    Other,
    /// `key:` with nothing after it.
    Null,
    /// A key being created.
    Missing,
}

/// How YAML reads a plain scalar. Covers YAML 1.1 (SnakeYAML, which Minecraft servers use)
/// as well as 1.2, erring towards "not a string".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

fn encode(value: &NewValue, existing: Existing<'_>) -> String {
    let text = match value {
        NewValue::Scalar(scalar @ (Scalar::Bool(_) | Scalar::Number(_))) => {
            return NewValue::Scalar(scalar.clone()).text().into_owned();
        }
        NewValue::Scalar(Scalar::Null) => return "null".to_owned(),
        NewValue::Text(text) => text.as_str(),
    };
    let kind = plain_kind(text);
    let plain = plain_safe(text)
        && match existing {
            Existing::Quoted(_) => false,
            Existing::Plain(current) => plain_kind(current) != PlainKind::Str || kind == PlainKind::Str,
            Existing::Other => kind == PlainKind::Str,
            Existing::Null | Existing::Missing => {
                kind == PlainKind::Str || (kind == PlainKind::Int && is_integer(text))
            }
        };
    if plain {
        return text.to_owned();
    }
    match existing {
        Existing::Quoted(Quote::Double) => DOUBLE_QUOTED.quote(text),
        _ => quote(text),
    }
}

fn encode_key(key: &str) -> String {
    if plain_safe(key) && plain_kind(key) == PlainKind::Str { key.to_owned() } else { quote(key) }
}

/// Whether `text` written plain after `key: ` is read back as exactly `text`.
fn plain_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else { return false };
    let second = text.chars().nth(1);
    let indicator_start = match first {
        '-' | '?' | ':' => second.is_none_or(|c| c == ' ' || c == '\t'),
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => true,
        _ => false,
    };
    !indicator_start
        && text.trim() == text
        && !text.chars().any(needs_escape)
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.ends_with(':')
}

/// Characters a YAML reader does not take literally (controls, the byte order mark, the Unicode
/// line and paragraph separators): text holding one needs a double-quoted scalar.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}'
}

/// Double-quoted scalars: `\0` has a letter; every other character [`needs_escape`] names is a
/// `\uXXXX` escape.
const DOUBLE_QUOTED: DoubleQuoted = DoubleQuoted { short: &[('\0', '0')], unicode: needs_escape, upper_hex: true };

/// `text` quoted: in single quotes, or in double quotes when it holds a character only an
/// escape can write.
fn quote(text: &str) -> String {
    if text.chars().any(needs_escape) { DOUBLE_QUOTED.quote(text) } else { format!("'{}'", text.replace('\'', "''")) }
}

fn plain_kind(text: &str) -> PlainKind {
    const NULLS: [&str; 5] = ["", "~", "null", "Null", "NULL"];
    const BOOLS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    if NULLS.contains(&text) {
        return PlainKind::Null;
    }
    if BOOLS.contains(&text) {
        return PlainKind::Bool;
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c == '_' || c.is_digit(radix));
    let is_int = digits(unsigned, 10) && unsigned.starts_with(|c: char| c.is_ascii_digit())
        || unsigned.strip_prefix("0x").is_some_and(|s| digits(s, 16))
        || unsigned.strip_prefix("0o").is_some_and(|s| digits(s, 8))
        || unsigned.strip_prefix("0b").is_some_and(|s| digits(s, 2))
        || is_sexagesimal(unsigned, false);
    if is_int {
        return PlainKind::Int;
    }
    if [".inf", ".Inf", ".INF"].contains(&unsigned) || [".nan", ".NaN", ".NAN"].contains(&text) {
        return PlainKind::Float;
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = mantissa.chars().filter(|c| *c == '.').count() <= 1
        && mantissa.chars().any(|c| c.is_ascii_digit())
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '_' || c == '.')
        && !mantissa.starts_with('_');
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    if mantissa_ok && exponent_ok || is_sexagesimal(unsigned, true) {
        return PlainKind::Float;
    }
    PlainKind::Str
}

/// YAML 1.1 base-60 numbers: `1:20` (int), `1:20.5` (float).
fn is_sexagesimal(text: &str, float: bool) -> bool {
    let (whole, fraction) = match (float, text.rsplit_once('.')) {
        (true, Some((whole, fraction))) => (whole, Some(fraction)),
        (true, None) => return false,
        (false, _) => (text, None),
    };
    let mut groups = whole.split(':');
    let first_ok = groups.next().is_some_and(|g| {
        !g.is_empty()
            && g.starts_with(|c: char| c.is_ascii_digit())
            && g.chars().all(|c| c.is_ascii_digit() || c == '_')
    });
    let rest: Vec<&str> = groups.collect();
    first_ok
        && !rest.is_empty()
        && rest.iter().all(|g| (1..=2).contains(&g.len()) && g.chars().all(|c| c.is_ascii_digit()))
        && fraction.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit() || c == '_'))
}

// ----- locating -----

struct Parsed {
    node: Node,
    /// The first line after the node.
    next: usize,
    /// The node's last line holding content.
    last: usize,
}

struct Locator<'a> {
    text: &'a str,
    lines: &'a [Line<'a>],
    /// Lines past the document (after a `...` marker) are not looked at.
    end: usize,
    /// For each line, the first line at or after it that is not blank or a comment
    /// (`lines.len()` if none): every nesting level asks after its last entry, and scanning
    /// the same run of comment lines once per level would multiply the work by the depth.
    content_from: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str, lines: &'a [Line<'a>]) -> Self {
        let mut content_from = vec![lines.len(); lines.len() + 1];
        for (i, line) in lines.iter().enumerate().rev() {
            let body = line.content.trim_start();
            content_from[i] = if body.is_empty() || body.starts_with('#') { content_from[i + 1] } else { i };
        }
        Self { text, lines, end: lines.len(), content_from }
    }

    fn err(&self, line: usize, what: &str) -> String {
        let offset = self.lines.get(line).map_or(self.text.len(), |l| l.start);
        format!("{what} ({})", position(self.text, offset))
    }

    /// The first line at or after `from` that is not blank or a comment.
    fn next_content(&self, from: usize) -> Option<usize> {
        self.content_from.get(from).copied().filter(|&line| line < self.end)
    }

    fn document(mut self) -> Result<Node, String> {
        let mut start = self.next_content(0);
        while let Some(line) = start.filter(|&i| self.lines[i].content.starts_with('%')) {
            start = self.next_content(line + 1);
        }
        let mut start_col = 0;
        if let Some(line) = start.filter(|&i| is_marker(self.lines[i].content, "---")) {
            let rest = self.lines[line].content[3..].trim_start();
            if rest.is_empty() || rest.starts_with('#') {
                start = self.next_content(line + 1);
            } else {
                start_col = self.lines[line].content.len() - rest.len();
            }
        }
        if let Some(end) = (start.unwrap_or(0)..self.lines.len())
            .skip(1)
            .find(|&i| is_marker(self.lines[i].content, "...") || is_marker(self.lines[i].content, "---"))
        {
            self.end = end;
        }
        let Some(start) = start.filter(|&i| i < self.end && !is_marker(self.lines[i].content, "...")) else {
            return Ok(Node::Empty { at: self.text.len(), owner: None });
        };
        let parsed = self.node(start, start_col.max(self.lines[start].indent()), -1)?;
        match self.next_content(parsed.next) {
            Some(extra) => Err(self.err(extra, "unsupported YAML layout")),
            None => Ok(parsed.node),
        }
    }

    /// A node whose first character is at `col` of line `line`.
    fn node(&self, line: usize, col: usize, parent_indent: isize) -> Result<Parsed, String> {
        let content = &self.lines[line].content[col..];
        if is_dash(content) {
            self.sequence(line, col)
        } else if mapping_key(content).is_some() {
            self.mapping(line, col)
        } else if content.starts_with("? ") || content == "?" {
            Err(self.err(line, "complex mapping keys are not supported"))
        } else {
            self.scalar(line, col, parent_indent)
        }
    }

    fn mapping(&self, first_line: usize, col: usize) -> Result<Parsed, String> {
        let mut entries = Vec::new();
        let mut line = first_line;
        loop {
            let current = self.lines[line];
            let content = &current.content[col..];
            let (key, colon) = mapping_key(content).ok_or_else(|| self.err(line, "expected a mapping key"))?;
            let after_colon = col + colon + 1;
            let parsed = self.value_after_indicator(line, after_colon, col, true)?;
            entries.push((key, parsed.node));
            let last_line = parsed.last;
            match self.next_content(parsed.next) {
                Some(next) if self.lines[next].indent() == col && !is_dash(&self.lines[next].content[col..]) => {
                    line = next;
                }
                Some(next) if self.lines[next].indent() > col => {
                    return Err(self.err(next, "unexpected indentation"));
                }
                _ => {
                    return Ok(Parsed {
                        node: Node::Mapping(Mapping { col, entries, last_line }),
                        next: parsed.next,
                        last: last_line,
                    });
                }
            }
        }
    }

    fn sequence(&self, first_line: usize, col: usize) -> Result<Parsed, String> {
        let mut items = Vec::new();
        let mut line = first_line;
        loop {
            let parsed = self.value_after_indicator(line, col + 1, col, false)?;
            items.push(parsed.node);
            match self.next_content(parsed.next) {
                Some(next) if self.lines[next].indent() == col && is_dash(&self.lines[next].content[col..]) => {
                    line = next;
                }
                _ => {
                    return Ok(Parsed {
                        node: Node::Sequence(Sequence { items }),
                        next: parsed.next,
                        last: parsed.last,
                    });
                }
            }
        }
    }

    /// The value after `key:` or `-` (ending at column `after` of `line`), owned by an
    /// indicator at column `owner_col`.
    fn value_after_indicator(
        &self,
        line: usize,
        after: usize,
        owner_col: usize,
        is_key: bool,
    ) -> Result<Parsed, String> {
        let current = self.lines[line];
        let mut col = after;
        let skip_spaces = |mut col: usize| {
            while current.content[col..].starts_with([' ', '\t']) {
                col += 1;
            }
            col
        };
        col = skip_spaces(col);
        // Anchors and tags stay in place; the value starts after them.
        while current.content[col..].starts_with(['&', '!']) {
            let token = current.content[col..].find([' ', '\t']).unwrap_or(current.content.len() - col);
            col = skip_spaces(col + token);
        }
        let rest = &current.content[col..];
        if !rest.is_empty() && !rest.starts_with('#') {
            // On the same line: a scalar after `key:`, anything after `-`.
            return if is_key {
                self.scalar(line, col, owner_col as isize)
            } else {
                self.node(line, col, owner_col as isize)
            };
        }
        let empty = Parsed {
            node: Node::Empty { at: current.start + after, owner: Some((line, owner_col)) },
            next: line + 1,
            last: line,
        };
        match self.next_content(line + 1) {
            Some(next) if self.lines[next].indent() > owner_col => {
                self.node(next, self.lines[next].indent(), owner_col as isize)
            }
            Some(next)
                if is_key
                    && self.lines[next].indent() == owner_col
                    && is_dash(&self.lines[next].content[owner_col..]) =>
            {
                self.sequence(next, owner_col)
            }
            _ => Ok(empty),
        }
    }

    fn scalar(&self, line: usize, col: usize, parent_indent: isize) -> Result<Parsed, String> {
        let current = self.lines[line];
        let start = current.start + col;
        let content = &current.content[col..];
        let quoted = |style: Style, end: Option<usize>| -> Result<Parsed, String> {
            let end = end.ok_or_else(|| self.err(line, "unterminated quoted scalar"))?;
            let last = self.line_of(end - 1);
            let raw = &self.text[start + 1..end - 1];
            let value = if style == Style::DoubleQuoted { unquote_double(raw) } else { unquote_single(raw) };
            Ok(Parsed { node: Node::Scalar(ScalarNode { span: start..end, style, value }), next: last + 1, last })
        };
        match content.chars().next() {
            Some('"') => quoted(Style::DoubleQuoted, find_double_end(self.text, start)),
            Some('\'') => quoted(Style::SingleQuoted, find_single_end(self.text, start)),
            Some('[' | '{') => {
                let end =
                    find_flow_end(self.text, start).ok_or_else(|| self.err(line, "unterminated flow collection"))?;
                let last = self.line_of(end - 1);
                let raw = self.text[start..end].to_owned();
                Ok(Parsed {
                    node: Node::Scalar(ScalarNode { span: start..end, style: Style::Flow, value: raw }),
                    next: last + 1,
                    last,
                })
            }
            Some('|' | '>') => {
                let mut last = line;
                let mut next = line + 1;
                let mut body = Vec::new();
                while next < self.end
                    && (self.lines[next].is_blank() || self.lines[next].indent() as isize > parent_indent)
                {
                    if !self.lines[next].is_blank() {
                        last = next;
                    }
                    body.push(self.lines[next].content);
                    next += 1;
                }
                body.truncate(last - line);
                let indent = body
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.len() - l.trim_start().len())
                    .min()
                    .unwrap_or(0);
                let value = body.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n");
                let span = start..self.lines[last].end;
                Ok(Parsed { node: Node::Scalar(ScalarNode { span, style: Style::Block, value }), next: last + 1, last })
            }
            Some('*') => {
                let len = content.find([' ', '\t', ',']).unwrap_or(content.len());
                let raw = content[..len].to_owned();
                Ok(Parsed {
                    node: Node::Scalar(ScalarNode { span: start..start + len, style: Style::Alias, value: raw }),
                    next: line + 1,
                    last: line,
                })
            }
            _ => {
                let first = strip_comment(content).trim_end();
                let mut end = start + first.len();
                let mut parts = vec![first.to_owned()];
                let mut last = line;
                let mut next = line + 1;
                // A plain scalar continues on lines indented deeper than its parent.
                while next < self.end {
                    let candidate = self.lines[next];
                    let body = candidate.content.trim_start();
                    if body.starts_with('#') || (!candidate.is_blank() && candidate.indent() as isize <= parent_indent)
                    {
                        break;
                    }
                    if !candidate.is_blank() {
                        let text = strip_comment(body).trim_end();
                        end = candidate.end - body.len() + text.len();
                        parts.push(text.to_owned());
                        last = next;
                    }
                    next += 1;
                }
                let value = parts.join(" ");
                Ok(Parsed {
                    node: Node::Scalar(ScalarNode { span: start..end, style: Style::Plain, value }),
                    next: last + 1,
                    last,
                })
            }
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.lines.partition_point(|line| line.next <= offset).min(self.lines.len().saturating_sub(1))
    }
}

fn is_marker(content: &str, marker: &str) -> bool {
    content.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn is_dash(content: &str) -> bool {
    content == "-" || content.starts_with("- ") || content.starts_with("-\t")
}

/// Cuts a ` #` comment off a plain scalar's line.
fn strip_comment(content: &str) -> &str {
    let bytes = content.as_bytes();
    (1..bytes.len())
        .find(|&at| bytes[at] == b'#' && matches!(bytes[at - 1], b' ' | b'\t'))
        .map_or(content, |at| &content[..at])
}

/// The key of a `key: value` line and the offset of its colon.
fn mapping_key(content: &str) -> Option<(String, usize)> {
    let colon_follows = |rest: &str| -> Option<usize> {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let after = trimmed.strip_prefix(':')?;
        (after.is_empty() || after.starts_with([' ', '\t'])).then_some(rest.len() - trimmed.len())
    };
    match content.chars().next()? {
        '"' => {
            let end = find_double_end(content, 0)?;
            let colon = end + colon_follows(&content[end..])?;
            Some((unquote_double(&content[1..end - 1]), colon))
        }
        '\'' => {
            let end = find_single_end(content, 0)?;
            let colon = end + colon_follows(&content[end..])?;
            Some((unquote_single(&content[1..end - 1]), colon))
        }
        '[' | '{' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | '#' => None,
        _ if is_dash(content) || content.starts_with("? ") => None,
        _ => {
            let searchable = strip_comment(content);
            let bytes = searchable.as_bytes();
            let colon = (0..bytes.len())
                .find(|&at| bytes[at] == b':' && bytes.get(at + 1).is_none_or(|next| matches!(next, b' ' | b'\t')))?;
            let key = searchable[..colon].trim_end();
            (!key.is_empty()).then(|| (key.to_owned(), colon))
        }
    }
}

/// The offset just past the closing quote of a double-quoted scalar opening at `start`.
fn find_double_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

fn find_single_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    while at < bytes.len() {
        if bytes[at] == b'\'' {
            if bytes.get(at + 1) == Some(&b'\'') {
                at += 2;
                continue;
            }
            return Some(at + 1);
        }
        at += 1;
    }
    None
}

fn find_flow_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut at = start;
    // A quote opens a quoted scalar only where a scalar starts (`it's` is plain).
    let mut scalar_may_start = true;
    while at < bytes.len() {
        match bytes[at] {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            b'"' if scalar_may_start => at = find_double_end(text, at)? - 1,
            b'\'' if scalar_may_start => at = find_single_end(text, at)? - 1,
            _ => {}
        }
        let byte = bytes[at];
        if !matches!(byte, b' ' | b'\t' | b'\r' | b'\n') {
            scalar_may_start = matches!(byte, b'[' | b'{' | b',' | b':' | b'?');
        }
        at += 1;
    }
    None
}

/// Folds line breaks inside a quoted scalar: one break is a space, `n` breaks are `n - 1`
/// newlines; spaces around breaks go.
fn fold(
    raw: &str,
    mut unescape: impl FnMut(&mut std::iter::Peekable<std::str::Chars<'_>>, &mut String, char) -> bool,
) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if unescape(&mut chars, &mut out, c) {
            continue;
        }
        if c == '\r' || c == '\n' {
            out.truncate(out.trim_end_matches([' ', '\t']).len());
            let mut breaks = 1;
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            while let Some(&next) = chars.peek() {
                match next {
                    ' ' | '\t' | '\r' => {
                        chars.next();
                    }
                    '\n' => {
                        breaks += 1;
                        chars.next();
                    }
                    _ => break,
                }
            }
            if breaks == 1 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', breaks - 1));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unquote_single(raw: &str) -> String {
    fold(raw, |chars, out, c| {
        if c == '\'' && chars.peek() == Some(&'\'') {
            chars.next();
            out.push('\'');
            return true;
        }
        false
    })
}

fn unquote_double(raw: &str) -> String {
    fold(raw, |chars, out, c| {
        if c != '\\' {
            return false;
        }
        let hex = |digits: usize, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let code: String = chars.by_ref().take(digits).collect();
            u32::from_str_radix(&code, 16).ok().and_then(char::from_u32).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        let Some(escaped) = chars.next() else { return true };
        let decoded = match escaped {
            '0' => '\0',
            'a' => '\x07',
            'b' => '\x08',
            't' | '\t' => '\t',
            'n' => '\n',
            'v' => '\x0b',
            'f' => '\x0c',
            'r' => '\r',
            'e' => '\x1b',
            'N' => '\u{85}',
            '_' => '\u{a0}',
            'L' => '\u{2028}',
            'P' => '\u{2029}',
            'x' => hex(2, chars),
            'u' => hex(4, chars),
            'U' => hex(8, chars),
            '\r' | '\n' => {
                // An escaped line break joins the lines without a space.
                while chars.peek().is_some_and(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                    chars.next();
                }
                return true;
            }
            other => other,
        };
        out.push(decoded);
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::test_support::set;

    fn read(text: &str, path: &str) -> yaml_serde::Value {
        let mut value = yaml_serde::from_str::<yaml_serde::Value>(text).unwrap();
        for part in path.split('.') {
            value = match part.parse::<usize>() {
                Ok(index) => value[index].clone(),
                Err(_) => value[part].clone(),
            };
        }
        value
    }

    #[test]
    fn classifies_plain_scalars() {
        for (text, kind) in [
            ("25565", PlainKind::Int),
            ("-1", PlainKind::Int),
            ("0x1F", PlainKind::Int),
            ("1:20", PlainKind::Int),
            ("1.5", PlainKind::Float),
            ("1e5", PlainKind::Float),
            (".inf", PlainKind::Float),
            ("yes", PlainKind::Bool),
            ("~", PlainKind::Null),
            ("0.0.0.0:25577", PlainKind::Str),
            ("localhost:25565", PlainKind::Str),
            ("1.2.3", PlainKind::Str),
            ("inf", PlainKind::Str),
        ] {
            assert_eq!(plain_kind(text), kind, "{text}");
        }
    }

    #[test]
    fn writes_values_that_read_back() {
        let text = "a: plain\nb: 'single'\nc: \"double\"\nd: 1\ne:\nf: |\n  block\n  text\ng: [1, 2]\n";
        let edits = [
            set("a", "123"),
            set("b", "it's"),
            set("c", "tab\there"),
            set("d", "25565"),
            set("e", "x: y"),
            set("f", "one"),
            set("g", ""),
        ];
        let out = patch(text, &edits).unwrap();
        assert_eq!(out, "a: '123'\nb: 'it''s'\nc: \"tab\\there\"\nd: 25565\ne: 'x: y'\nf: one\ng: ''\n");
        assert_eq!(read(&out, "a"), yaml_serde::Value::String("123".into()));
        assert_eq!(read(&out, "c"), yaml_serde::Value::String("tab\there".into()));
        assert_eq!(read(&out, "d"), yaml_serde::Value::Number(25565.into()));
    }

    #[test]
    fn navigates_block_layouts() {
        let text = "servers:\n  lobby:\n    address: localhost:25565 # here\n    motd: x\nlisteners:\n- query_port: 25577\n  host: 0.0.0.0:25577\n  forced_hosts:\n    pvp.md-5.net: pvp\n- host: b\nlist:\n  - - deep\n";
        let edits = [
            set("servers.lobby.address", "10.0.0.1:25565"),
            set("listeners[0].host", "0.0.0.0:25600"),
            set("listeners[1].host", "c"),
            set("list[0][0]", "deeper"),
        ];
        let out = patch(text, &edits).unwrap();
        assert_eq!(
            out,
            "servers:\n  lobby:\n    address: 10.0.0.1:25565 # here\n    motd: x\nlisteners:\n- query_port: 25577\n  host: 0.0.0.0:25600\n  forced_hosts:\n    pvp.md-5.net: pvp\n- host: c\nlist:\n  - - deeper\n"
        );
    }

    #[test]
    fn creates_keys_at_the_end_of_their_mapping() {
        let text = "server:\n    port: 8080\n    # trailing comment\n\nspring:\n  x: 1\nempty:\n";
        let out = patch(text, &[set("server.address", "0.0.0.0"), set("empty.a.b", "1"), set("new", "v")]).unwrap();
        assert_eq!(
            out,
            "server:\n    port: 8080\n    address: 0.0.0.0\n    # trailing comment\n\nspring:\n  x: 1\nempty:\n    a:\n        b: 1\nnew: v\n"
        );
        assert_eq!(patch("", &[set("a.b", "true")]).unwrap(), "a:\n  b: 'true'\n");
        assert_eq!(patch("- a\n", &[set("x", "1")]).map_err(|_| ()), Err(()));
    }

    #[test]
    fn flow_collections_are_refused_for_navigation() {
        let result = patch("a: {b: 1}\n", &[set("a.b", "2")]);
        assert!(matches!(result, Err(PatchError::CannotPatch { reason, .. }) if reason.contains("flow")));
    }

    #[test]
    fn malformed_yaml_is_rejected() {
        assert!(matches!(patch("a: [1, 2\n", &[]), Err(PatchError::Malformed(_))));
        assert!(matches!(patch("a: 1\n\tb: 2\n", &[]), Err(PatchError::Malformed(_))));
    }
}

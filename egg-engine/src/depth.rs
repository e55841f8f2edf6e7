//! Nesting depth of untrusted documents, measured in one linear pass and without recursion,
//! before a parser that recurses once per level (serde_json, toml_edit, our own JSON and YAML
//! locators) or slows down per level sees them.
//!
//! libyaml (under yaml_serde, as libyaml-rs: libyaml translated to Rust, the same code as the
//! unsafe-libyaml that serde_yaml used) is the reason this exists for YAML: its scanner walks
//! the whole stack of open flow collections for every token, so 200 KB of `[[[[…` takes most
//! of a minute before yaml_serde's own recursion limit is ever consulted. [`yaml`] therefore
//! follows libyaml's scanner closely enough to count exactly the flow levels and block
//! indentation levels libyaml itself opens, up to the point where libyaml would stop with an
//! error.

/// Where a document first nests deeper than allowed: the byte offset of the opening token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooDeep {
    pub offset: usize,
}

/// JSON: `[` and `{` outside strings (and, with `comments`, outside `//` and `/* */`
/// comments). Exact for every valid prefix, which is all a JSON parser reads before it stops.
pub(crate) fn json(text: &str, limit: usize, comments: bool) -> Result<(), TooDeep> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while at < b.len() {
        match (b[at], b.get(at + 1)) {
            (b'"', _) => {
                at += 1;
                while at < b.len() && b[at] != b'"' {
                    at += if b[at] == b'\\' { 2 } else { 1 };
                }
            }
            (b'/', Some(b'/')) if comments => at = memchr_newline(b, at),
            (b'/', Some(b'*')) if comments => {
                at = text[at + 2..].find("*/").map_or(b.len(), |close| at + 2 + close + 1);
            }
            (b'[' | b'{', _) => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { offset: at });
                }
            }
            (b']' | b'}', _) => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// TOML: brackets outside strings and comments (arrays, inline tables, and the table headers,
/// which count as one or two levels). In valid TOML every such bracket is structural and every
/// `"`, `'` or `#` outside a string starts a string or a comment, so this is exact for every
/// valid prefix, which is all toml_edit reads before it stops.
pub(crate) fn toml(text: &str, limit: usize) -> Result<(), TooDeep> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while at < b.len() {
        match b[at] {
            b'#' => at = memchr_newline(b, at),
            quote @ (b'"' | b'\'') => at = toml_string_end(b, at, quote),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { offset: at });
                }
                at += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// The offset of the next `\n` at or after `from` (or the end).
fn memchr_newline(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|&c| c == b'\n').map_or(b.len(), |i| from + i)
}

/// The offset past the TOML string whose opening quote is at `start`: basic (`"`, with
/// backslash escapes) or literal (`'`), single-line or multi-line (`"""`, `'''`, whose
/// closing run may carry up to two quotes of content). An unterminated string runs to the end
/// of its line (single-line) or of the text (multi-line); toml_edit stops there anyway.
fn toml_string_end(b: &[u8], start: usize, quote: u8) -> usize {
    let escapes = quote == b'"';
    let multi = b.get(start + 1) == Some(&quote) && b.get(start + 2) == Some(&quote);
    let mut at = if multi { start + 3 } else { start + 1 };
    while at < b.len() {
        match b[at] {
            b'\\' if escapes => at += 2,
            b'\n' if !multi => return at,
            c if c == quote => {
                if !multi {
                    return at + 1;
                }
                let run = b[at..].iter().take_while(|&&c| c == quote).count();
                if run >= 3 {
                    return at + run;
                }
                at += run;
            }
            _ => at += 1,
        }
    }
    b.len()
}

/// YAML: block indentation levels plus flow levels, as libyaml's scanner opens them.
pub(crate) fn yaml(text: &str, limit: usize) -> Result<(), TooDeep> {
    YamlScanner::new(text, limit).run()
}

/// A port of the parts of libyaml's scanner (`scanner.c`) that decide where tokens start and
/// end, which is what decides where a `[` or `{` opens a flow collection: token dispatch,
/// skipping of whitespace and comments, block indentation (roll and unroll), the simple key of
/// the block context (whose column a `key:` rolls the indentation to), and the extent of plain,
/// quoted and block scalars, anchors, aliases, tags and directives. Values are not built.
///
/// Where libyaml reports an error it stops reading; the port carries on. Counting past
/// libyaml's stopping point can only over-count, which is safe: it turns a malformed document
/// into a "too deep" one at worst.
struct YamlScanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
    /// In characters, as libyaml counts.
    column: usize,
    flow_level: usize,
    /// The current block indentation column (-1 outside any block collection).
    indent: isize,
    indents: Vec<isize>,
    simple_key_allowed: bool,
    /// libyaml's simple key slot of the block context (flow levels have their own slots,
    /// which never affect indentation and so are not tracked).
    key: Option<SimpleKey>,
    limit: usize,
}

#[derive(Clone, Copy)]
struct SimpleKey {
    offset: usize,
    line: usize,
    column: usize,
}

/// Characters of a tag after `!` (libyaml's handle and URI characters).
fn is_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_;/?:@&=+$.%!~*'()".contains(&c)
}

impl<'a> YamlScanner<'a> {
    fn new(text: &'a str, limit: usize) -> Self {
        Self {
            text,
            b: text.as_bytes(),
            pos: 0,
            line: 0,
            column: 0,
            flow_level: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: true,
            key: None,
            limit,
        }
    }

    fn at(&self, k: usize) -> Option<u8> {
        self.b.get(self.pos + k).copied()
    }

    fn is(&self, k: usize, c: u8) -> bool {
        self.at(k) == Some(c)
    }

    fn is_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// Width in bytes of a line break at `pos + k` (`\r\n` counts as one), 0 if none. NEL,
    /// LINE SEPARATOR and PARAGRAPH SEPARATOR are breaks to libyaml.
    fn break_width(&self, k: usize) -> usize {
        match (self.at(k), self.at(k + 1), self.at(k + 2)) {
            (Some(b'\r'), Some(b'\n'), _) => 2,
            (Some(b'\r' | b'\n'), _, _) => 1,
            (Some(0xC2), Some(0x85), _) => 2,
            (Some(0xE2), Some(0x80), Some(0xA8 | 0xA9)) => 3,
            _ => 0,
        }
    }

    fn is_break(&self, k: usize) -> bool {
        self.break_width(k) > 0
    }

    fn is_blank(&self, k: usize) -> bool {
        matches!(self.at(k), Some(b' ' | b'\t'))
    }

    fn is_blankz(&self, k: usize) -> bool {
        self.at(k).is_none() || self.is_blank(k) || self.is_break(k)
    }

    fn is_breakz(&self, k: usize) -> bool {
        self.at(k).is_none() || self.is_break(k)
    }

    /// `---` or `...` at the start of a line, followed by a blank, a break or the end.
    fn at_document_indicator(&self) -> bool {
        self.column == 0
            && (self.b[self.pos..].starts_with(b"---") || self.b[self.pos..].starts_with(b"..."))
            && self.is_blankz(3)
    }

    /// Moves past one character.
    fn skip(&mut self) {
        let width = self.text.get(self.pos..).and_then(|rest| rest.chars().next()).map_or(1, char::len_utf8);
        self.pos += width;
        self.column += 1;
    }

    /// Moves past one line break, if there is one.
    fn skip_line(&mut self) {
        let width = self.break_width(0);
        if width > 0 {
            self.pos += width;
            self.column = 0;
            self.line += 1;
        }
    }

    fn depth_check(&self) -> Result<(), TooDeep> {
        if self.indents.len() + self.flow_level > self.limit { Err(TooDeep { offset: self.pos }) } else { Ok(()) }
    }

    fn roll_indent(&mut self, column: usize) -> Result<(), TooDeep> {
        let column = isize::try_from(column).unwrap_or(isize::MAX);
        if self.flow_level == 0 && self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            self.depth_check()?;
        }
        Ok(())
    }

    fn unroll_indent(&mut self, column: isize) {
        if self.flow_level == 0 {
            while self.indent > column {
                self.indent = self.indents.pop().unwrap_or(-1);
            }
        }
    }

    fn save_key(&mut self) {
        if self.flow_level == 0 && self.simple_key_allowed {
            self.key = Some(SimpleKey { offset: self.pos, line: self.line, column: self.column });
        }
    }

    fn remove_key(&mut self) {
        if self.flow_level == 0 {
            self.key = None;
        }
    }

    /// A simple key must sit on one line and within 1024 bytes of its `:`.
    fn stale_key(&mut self) {
        if self.key.is_some_and(|key| key.line < self.line || key.offset + 1024 < self.pos) {
            self.key = None;
        }
    }

    fn run(mut self) -> Result<(), TooDeep> {
        loop {
            self.scan_to_next_token();
            self.stale_key();
            self.unroll_indent(isize::try_from(self.column).unwrap_or(isize::MAX));
            let Some(c) = self.at(0) else { return Ok(()) };
            let in_flow = self.flow_level > 0;
            match c {
                b'%' if self.column == 0 => {
                    self.unroll_indent(-1);
                    self.remove_key();
                    self.simple_key_allowed = false;
                    while !self.is_breakz(0) {
                        self.skip();
                    }
                    self.skip_line();
                }
                _ if self.at_document_indicator() => {
                    self.unroll_indent(-1);
                    self.remove_key();
                    self.simple_key_allowed = false;
                    self.pos += 3;
                    self.column += 3;
                }
                b'[' | b'{' => {
                    self.save_key();
                    self.flow_level += 1;
                    self.depth_check()?;
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b']' | b'}' => {
                    self.remove_key();
                    self.flow_level = self.flow_level.saturating_sub(1);
                    self.simple_key_allowed = false;
                    self.skip();
                }
                b',' => {
                    self.remove_key();
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b'-' if self.is_blankz(1) => {
                    self.roll_indent(self.column)?;
                    self.remove_key();
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b'?' if in_flow || self.is_blankz(1) => {
                    self.roll_indent(self.column)?;
                    self.remove_key();
                    self.simple_key_allowed = !in_flow;
                    self.skip();
                }
                b':' if in_flow || self.is_blankz(1) => {
                    if in_flow {
                        self.simple_key_allowed = false;
                    } else if let Some(key) = self.key.take() {
                        self.roll_indent(key.column)?;
                        self.simple_key_allowed = false;
                    } else {
                        self.roll_indent(self.column)?;
                        self.simple_key_allowed = true;
                    }
                    self.skip();
                }
                b'*' | b'&' => {
                    self.save_key();
                    self.simple_key_allowed = false;
                    self.skip();
                    while self.at(0).is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                        self.skip();
                    }
                }
                b'!' => {
                    self.save_key();
                    self.simple_key_allowed = false;
                    self.scan_tag();
                }
                b'|' | b'>' if !in_flow => {
                    self.remove_key();
                    self.simple_key_allowed = true;
                    self.scan_block_scalar();
                }
                b'\'' | b'"' => {
                    self.save_key();
                    self.simple_key_allowed = false;
                    self.scan_quoted(c == b'\'');
                }
                _ if self.plain_may_start(c) => {
                    self.save_key();
                    self.simple_key_allowed = false;
                    self.scan_plain();
                }
                // libyaml stops here ("cannot start any token").
                _ => self.skip(),
            }
        }
    }

    fn plain_may_start(&self, c: u8) -> bool {
        !(self.is_blankz(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c))
            || (c == b'-' && !self.is_blank(1))
            || (self.flow_level == 0 && (c == b'?' || c == b':') && !self.is_blankz(1))
    }

    fn scan_to_next_token(&mut self) {
        loop {
            if self.column == 0 && self.b[self.pos..].starts_with("\u{feff}".as_bytes()) {
                self.skip();
            }
            while self.is(0, b' ') || ((self.flow_level > 0 || !self.simple_key_allowed) && self.is(0, b'\t')) {
                self.skip();
            }
            if self.is(0, b'#') {
                while !self.is_breakz(0) {
                    self.skip();
                }
            }
            if !self.is_break(0) {
                return;
            }
            self.skip_line();
            if self.flow_level == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    fn scan_tag(&mut self) {
        if self.is(1, b'<') {
            self.skip();
            self.skip();
            while !self.is_blankz(0) && !self.is(0, b'>') {
                self.skip();
            }
            if self.is(0, b'>') {
                self.skip();
            }
        } else {
            self.skip();
            while self.at(0).is_some_and(is_tag_char) {
                self.skip();
            }
        }
    }

    fn scan_plain(&mut self) {
        let indent = self.indent + 1;
        let in_flow = self.flow_level > 0;
        let mut leading_blanks = false;
        loop {
            if self.at_document_indicator() || self.is(0, b'#') {
                break;
            }
            while let Some(c) = self.at(0).filter(|_| !self.is_blankz(0)) {
                let ends_here = (c == b':'
                    && (self.is_blankz(1) || (in_flow && self.at(1).is_some_and(|n| b",?[]{}".contains(&n)))))
                    || (in_flow && b",[]{}".contains(&c));
                if ends_here {
                    break;
                }
                self.skip();
            }
            if !(self.is_blank(0) || self.is_break(0)) {
                break;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    let column = isize::try_from(self.column).unwrap_or(isize::MAX);
                    if leading_blanks && column < indent && self.is(0, b'\t') {
                        // libyaml stops here (a tab where indentation is expected).
                        return;
                    }
                    self.skip();
                } else {
                    self.skip_line();
                    leading_blanks = true;
                }
            }
            if !in_flow && isize::try_from(self.column).unwrap_or(isize::MAX) < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
    }

    fn scan_quoted(&mut self, single: bool) {
        let quote = if single { b'\'' } else { b'"' };
        self.skip();
        loop {
            // libyaml stops at a document indicator or the end inside a quoted scalar.
            if self.at_document_indicator() || self.is_end() {
                return;
            }
            while !self.is_blankz(0) {
                if single && self.is(0, b'\'') && self.is(1, b'\'') {
                    self.skip();
                    self.skip();
                } else if self.is(0, quote) {
                    break;
                } else if !single && self.is(0, b'\\') && self.is_break(1) {
                    self.skip();
                    self.skip_line();
                    break;
                } else if !single && self.is(0, b'\\') {
                    self.skip();
                    if !self.is_end() {
                        self.skip();
                    }
                } else {
                    self.skip();
                }
            }
            if self.is(0, quote) {
                self.skip();
                return;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    self.skip();
                } else {
                    self.skip_line();
                }
            }
        }
    }

    fn scan_block_scalar(&mut self) {
        self.skip();
        let digit = |c: Option<u8>| c.filter(u8::is_ascii_digit).map(|c| isize::from(c - b'0'));
        let mut increment = 0;
        if matches!(self.at(0), Some(b'+' | b'-')) {
            self.skip();
            if let Some(d) = digit(self.at(0)) {
                increment = d;
                self.skip();
            }
        } else if let Some(d) = digit(self.at(0)) {
            increment = d;
            self.skip();
            if matches!(self.at(0), Some(b'+' | b'-')) {
                self.skip();
            }
        }
        while self.is_blank(0) {
            self.skip();
        }
        if self.is(0, b'#') {
            while !self.is_breakz(0) {
                self.skip();
            }
        }
        if !self.is_breakz(0) {
            // libyaml stops here ("did not find expected comment or line break").
            return;
        }
        self.skip_line();
        let mut indent: isize = 0;
        if increment != 0 {
            indent = if self.indent >= 0 { self.indent + increment } else { increment };
        }
        if !self.block_scalar_breaks(&mut indent) {
            return;
        }
        while isize::try_from(self.column).unwrap_or(isize::MAX) == indent && !self.is_end() {
            while !self.is_breakz(0) {
                self.skip();
            }
            self.skip_line();
            if !self.block_scalar_breaks(&mut indent) {
                return;
            }
        }
    }

    /// Skips the indentation and empty lines before a block scalar's next content line; an
    /// `indent` of 0 is detected from them. `false` where libyaml stops (a tab in the
    /// indentation).
    fn block_scalar_breaks(&mut self, indent: &mut isize) -> bool {
        let mut max_indent: isize = 0;
        loop {
            let column = |s: &Self| isize::try_from(s.column).unwrap_or(isize::MAX);
            while (*indent == 0 || column(self) < *indent) && self.is(0, b' ') {
                self.skip();
            }
            max_indent = max_indent.max(column(self));
            if (*indent == 0 || column(self) < *indent) && self.is(0, b'\t') {
                return false;
            }
            if !self.is_break(0) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Documents with text full of YAML and JSON syntax, and every kind of line break.
    fn tree() -> impl Strategy<Value = Value> {
        let text = "[a-z \\[\\]{}\"'#:,\\\\!&*|>?%@`\n\t\u{85}\u{2028}é-]{0,12}";
        let leaf = prop_oneof![text.prop_map(Value::from), any::<i64>().prop_map(Value::from), Just(Value::Null)];
        leaf.prop_recursive(8, 64, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(text, inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn nesting(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// JSON is YAML in flow style: on any JSON document, compact or pretty, the YAML
        /// scanner finds exactly the nesting the JSON scanner finds, which is the document's.
        #[test]
        fn yaml_and_json_agree_on_json_documents(value in tree()) {
            let depth = nesting(&value);
            for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
                prop_assert!(json(&text, depth, false).is_ok());
                prop_assert!(yaml(&text, depth).is_ok(), "{}", text);
                if depth > 0 {
                    prop_assert!(json(&text, depth - 1, false).is_err());
                    prop_assert!(yaml(&text, depth - 1).is_err(), "{}", text);
                }
            }
        }

        /// Block YAML as yaml_serde writes it is never found deeper than it is.
        #[test]
        fn yaml_never_over_counts_block_documents(value in tree()) {
            let text = yaml_serde::to_string(&value).unwrap();
            prop_assert!(yaml(&text, nesting(&value).max(1)).is_ok(), "{}", text);
        }
    }

    fn yaml_depth(text: &str) -> usize {
        (0..200).find(|&limit| yaml(text, limit).is_ok()).unwrap_or(usize::MAX)
    }

    #[test]
    fn json_counts_brackets_outside_strings_and_comments() {
        assert_eq!(json(r#"{"a": [[1]], "b": "[[[[\"[\\"}"#, 3, false), Ok(()));
        assert_eq!(json(r#"{"a": [[1]]}"#, 2, false), Err(TooDeep { offset: 7 }));
        let commented = "{\"a\": [1], // [[[[\n /* [[\n[[ */ \"b\": {}}";
        assert_eq!(json(commented, 2, true), Ok(()));
        assert!(json(commented, 2, false).is_err());
        assert!(json(&"[".repeat(100_000), 64, false).is_err());
    }

    #[test]
    fn toml_counts_brackets_outside_strings_and_comments() {
        let text = "[t]\na = [[1]] # [[[[\nb = \"[[\\\"[[\"\nc = '''[[\n''[['''\nd = \"\"\"[[\"\"\"\"\ne = {f = [2]}\n";
        assert_eq!(toml(text, 2), Ok(()));
        assert!(toml(text, 1).is_err());
        assert!(toml(&format!("a = {}", "[".repeat(100_000)), 64).is_err());
    }

    #[test]
    fn yaml_counts_block_and_flow_levels() {
        assert_eq!(yaml_depth("a: 1\n"), 1);
        assert_eq!(yaml_depth("a:\n  b:\n    c: [1, {d: 2}]\n"), 5);
        assert_eq!(yaml_depth("- - - x\n"), 3);
        assert_eq!(yaml_depth("[[[]]]"), 3);
        // Brackets that are not flow collections to libyaml.
        assert_eq!(yaml_depth("a: x[[[ y\nb: '[[[' # [[[\nc: \"[\\\"[[\"\n"), 1);
        assert_eq!(yaml_depth("a: |\n  [[[[\n  {{{{\nb: >-\n    [[[\n"), 1);
        assert_eq!(yaml_depth("a: !t x[[\nb: &x y[[\nc: !<t[[> z\n"), 1);
        // A plain scalar continued on a deeper line; then a new key with a flow value.
        assert_eq!(yaml_depth("a: b\n  [[c\nd: [[1]]\n"), 3);
        // Quoted scalars spanning lines hide nothing after them.
        assert_eq!(yaml_depth("a: 'x\n  y' \nb: [[[1]]]\n"), 4);
        // In a flow collection, a quote inside a plain scalar is text; brackets still count.
        assert_eq!(yaml_depth("[a 'b [[c]] ']"), 3);
    }

    #[test]
    fn yaml_deep_inputs_are_refused_without_recursion() {
        for text in [
            format!("a: {}", "[".repeat(100_000)),
            format!("{}x", "- ".repeat(100_000)),
            "{\"\":[".repeat(50_000),
            (0..1000).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect(),
        ] {
            assert!(yaml(&text, 64).is_err());
        }
    }
}

//! PHP (PCRE) delimited patterns such as `/^[\w.-]+$/i`, translated to the `regex` crate.

use regex::bytes::{Regex, RegexBuilder};
use std::fmt;
use std::sync::Arc;

/// Why a PHP pattern cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhpRegexError {
    /// Nothing but whitespace.
    #[error("empty pattern")]
    Empty,
    /// The first character cannot be a delimiter (PHP forbids letters, digits and `\`).
    #[error("delimiter must not be alphanumeric or backslash, found `{0}`")]
    BadDelimiter(char),
    /// The closing delimiter is missing.
    #[error("no ending delimiter `{0}` found")]
    NoEndingDelimiter(char),
    /// A modifier after the closing delimiter that PHP or Nexus does not know.
    #[error("unknown modifier `{0}`")]
    UnknownModifier(char),
    /// The `regex` crate cannot compile the pattern (PCRE-only syntax such as look-around,
    /// back-references or possessive quantifiers, or an invalid pattern).
    #[error("cannot compile pattern: {0}")]
    Compile(String),
}

/// A compiled PHP pattern, e.g. `/^([\w\d._-]+)(\.jar)$/`.
///
/// Translation to the `regex` crate:
/// - Delimiters as PHP reads them: any non-alphanumeric, non-backslash character; `(`, `[`, `{`,
///   `<` close with their partner and may nest; a backslash escapes the next character.
/// - Modifiers: `i`, `m`, `s`, `x`, `U` map to the crate's flags; `A` anchors at the start; `u`
///   switches to Unicode. Without `u`, PCRE matches bytes with ASCII classes (`\w` is
///   `[A-Za-z0-9_]`), so the pattern is compiled as a byte regex with Unicode off, which matches
///   PHP on non-ASCII input. `D`, `S`, `X`, `J`, `n` do not change what matches and are accepted.
/// - `$` without `m` matches only at the very end; PCRE also matches before a final `\n`.
///   Nexus is stricter here on purpose: a value with a trailing newline does not pass.
/// - Text both engines accept but read differently is rewritten to mean what PCRE means:
///   `\<` and `\>` (literals, not word boundaries), `[` inside a class (a literal, not a nested
///   class), `&` and `~` inside a class (no set operations), a `{` that starts no repetition
///   (a literal), blanks and `#` inside a class in extended mode (kept, not ignored).
/// - Text the crate would accept with another meaning and that cannot be rewritten is refused:
///   possessive quantifiers (`a++`) and `\v` (vertical whitespace in PCRE). Everything PCRE-only
///   that the crate rejects (look-around, back-references, atomic groups, `\Z`, `\h`, ...) is
///   refused as well, with the crate's message.
/// - Matching is a search (`preg_match`), not a full match: anchors must be in the pattern.
#[derive(Clone)]
pub struct PhpRegex(Arc<Compiled>);

/// Shared so that rules, and the errors naming them, stay small and cheap to clone.
struct Compiled {
    source: String,
    regex: Regex,
}

impl PhpRegex {
    /// Parses and compiles `source`, the pattern with delimiters and modifiers.
    pub fn new(source: &str) -> Result<Self, PhpRegexError> {
        let body = source.trim_start();
        let (open, close, end) = match closing_delimiter(body) {
            DelimiterScan::Closed { open, close, end } => (open, close, end),
            DelimiterScan::Empty => return Err(PhpRegexError::Empty),
            DelimiterScan::BadDelimiter(c) => return Err(PhpRegexError::BadDelimiter(c)),
            DelimiterScan::Unclosed(c) => return Err(PhpRegexError::NoEndingDelimiter(c)),
        };
        let pattern = &body[open.len_utf8()..end];
        let mut flags = Flags::default();
        for modifier in body[end + close.len_utf8()..].chars() {
            match modifier {
                'i' => flags.case_insensitive = true,
                'm' => flags.multi_line = true,
                's' => flags.dot_all = true,
                'x' => flags.extended = true,
                'U' => flags.ungreedy = true,
                'u' => flags.unicode = true,
                'A' => flags.anchored = true,
                // PHP skips whitespace among modifiers.
                'D' | 'S' | 'X' | 'J' | 'n' | ' ' | '\n' | '\r' => {}
                other => return Err(PhpRegexError::UnknownModifier(other)),
            }
        }
        let mut translated = translate(pattern, flags.extended)?;
        if flags.anchored {
            // In extended mode a trailing `#` comment would swallow the closing parenthesis.
            let end_comment = if flags.extended { "\n" } else { "" };
            translated = format!("\\A(?:{translated}{end_comment})");
        }
        let regex = RegexBuilder::new(&translated)
            .unicode(flags.unicode)
            .case_insensitive(flags.case_insensitive)
            .multi_line(flags.multi_line)
            .dot_matches_new_line(flags.dot_all)
            .ignore_whitespace(flags.extended)
            .swap_greed(flags.ungreedy)
            .build()
            .map_err(|e| PhpRegexError::Compile(compile_message(&e)))?;
        Ok(Self(Arc::new(Compiled { source: source.to_string(), regex })))
    }

    /// The pattern as written, with delimiters and modifiers.
    pub fn as_str(&self) -> &str {
        &self.0.source
    }

    /// Whether the pattern matches anywhere in `text` (`preg_match`).
    pub fn is_match(&self, text: &str) -> bool {
        self.0.regex.is_match(text.as_bytes())
    }
}

impl PartialEq for PhpRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

impl fmt::Debug for PhpRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PhpRegex").field(&self.0.source).finish()
    }
}

impl fmt::Display for PhpRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.source)
    }
}

#[derive(Default)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
    extended: bool,
    ungreedy: bool,
    unicode: bool,
    anchored: bool,
}

/// Result of looking for a pattern's closing delimiter.
pub(crate) enum DelimiterScan {
    /// `open` at byte 0, `close` at byte `end`.
    Closed { open: char, close: char, end: usize },
    /// Empty input.
    Empty,
    /// The first character cannot be a delimiter.
    BadDelimiter(char),
    /// No closing delimiter.
    Unclosed(char),
}

/// Finds the closing delimiter the way PHP's `preg` does: a backslash skips the next character,
/// bracket delimiters nest. Character classes are not special, as in PHP.
pub(crate) fn closing_delimiter(s: &str) -> DelimiterScan {
    let (mut scanner, rest) = match DelimiterScanner::open(s) {
        Ok(opened) => opened,
        Err(scan) => return scan,
    };
    let offset = s.len() - rest.len();
    match scanner.feed(rest) {
        Some(at) => DelimiterScan::Closed { open: scanner.open, close: scanner.close, end: offset + at },
        None => DelimiterScan::Unclosed(scanner.close),
    }
}

/// [`closing_delimiter`] in pieces: a pattern split apart at `|` is scanned on from where the
/// previous piece stopped, rather than from its start each time a piece is added (which, for a
/// pattern that never closes, would be quadratic in the number of pieces).
pub(crate) struct DelimiterScanner {
    open: char,
    close: char,
    depth: usize,
    /// The previous character was a backslash.
    escaped: bool,
}

impl DelimiterScanner {
    /// A scanner past the opening delimiter, the first character of `s`, and the rest of `s`;
    /// [`DelimiterScan::Empty`] or [`DelimiterScan::BadDelimiter`] if there is none.
    pub(crate) fn open(s: &str) -> Result<(Self, &str), DelimiterScan> {
        let mut chars = s.chars();
        let Some(open) = chars.next() else {
            return Err(DelimiterScan::Empty);
        };
        if open.is_alphanumeric() || open == '\\' || open.is_whitespace() || open == '\0' {
            return Err(DelimiterScan::BadDelimiter(open));
        }
        let close = match open {
            '(' => ')',
            '[' => ']',
            '{' => '}',
            '<' => '>',
            other => other,
        };
        Ok((Self { open, close, depth: 1, escaped: false }, chars.as_str()))
    }

    /// Reads `text`, the continuation of what was read so far; the byte offset in `text` of the
    /// closing delimiter once it is reached (nothing after it is read).
    pub(crate) fn feed(&mut self, text: &str) -> Option<usize> {
        for (i, c) in text.char_indices() {
            if std::mem::take(&mut self.escaped) {
                continue;
            }
            if c == '\\' {
                self.escaped = true;
            } else if c == self.close {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    return Some(i);
                }
            } else if c == self.open {
                self.depth += 1;
            }
        }
        None
    }
}

/// Rewrites the PCRE constructs the `regex` crate reads differently, and refuses those it
/// would accept with another meaning.
fn translate(pattern: &str, extended: bool) -> Result<String, PhpRegexError> {
    let unsupported = |what: &str| PhpRegexError::Compile(format!("{what} are not supported"));
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Just after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    let mut after_quantifier = false;
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        let was_quantifier = std::mem::take(&mut after_quantifier);
        if c == '\\' {
            match chars.next() {
                // Literals in PCRE, word boundaries in the crate.
                Some(lit @ ('<' | '>')) => out.push(lit),
                // Vertical whitespace in PCRE, the VT character in the crate.
                Some('v') => return Err(unsupported("`\\v` classes")),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
            class_start = false;
            prev = Some('\\');
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start => in_class = false,
                '^' if class_start && prev == Some('[') => {
                    out.push(c);
                    prev = Some(c);
                    continue;
                }
                // `[:alpha:]` is a POSIX class in both; any other `[` is a literal in PCRE but
                // opens a nested class in the crate.
                '[' if chars.peek() == Some(&':') => {
                    out.push(c);
                    for d in chars.by_ref() {
                        out.push(d);
                        if d == ']' {
                            break;
                        }
                    }
                    class_start = false;
                    prev = Some(']');
                    continue;
                }
                // Extended mode ignores blanks and comments inside classes only in the crate.
                ' ' | '#' if extended => {
                    out.push('\\');
                    out.push(c);
                    class_start = false;
                    prev = Some(c);
                    continue;
                }
                '\t' | '\n' | '\r' | '\x0B' | '\x0C' if extended => {
                    out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
                    class_start = false;
                    prev = Some(c);
                    continue;
                }
                // `&&` and `~~` are set operations in the crate's classes.
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                    class_start = false;
                    prev = Some(c);
                    continue;
                }
                _ => {}
            }
            class_start = false;
            out.push(c);
            prev = Some(c);
            continue;
        }
        match c {
            '#' if extended => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
                prev = Some('\n');
                continue;
            }
            '[' => {
                in_class = true;
                class_start = true;
            }
            '+' if was_quantifier => return Err(unsupported("possessive quantifiers")),
            // A `?` after a quantifier makes it lazy, which both read the same way.
            '?' if was_quantifier => {}
            '?' if prev == Some('(') => {}
            '*' | '+' | '?' => after_quantifier = true,
            '{' => {
                // Only digits and a comma can make a repetition; looking further (up to the
                // next `}`) for every `{` would be quadratic on `{{{{…`.
                let rest: String = chars.clone().take_while(|&d| d.is_ascii_digit() || d == ',').collect();
                let counted = !rest.is_empty()
                    && chars.clone().nth(rest.chars().count()) == Some('}')
                    && rest.split_once(',').map_or(rest.chars().all(|d| d.is_ascii_digit()), |(a, b)| {
                        !a.is_empty() && a.chars().all(|d| d.is_ascii_digit()) && b.chars().all(|d| d.is_ascii_digit())
                    });
                if counted {
                    out.push('{');
                    out.push_str(&rest);
                    out.push('}');
                    for _ in 0..=rest.chars().count() {
                        chars.next();
                    }
                    after_quantifier = true;
                    prev = Some('}');
                    continue;
                }
                // Not a repetition: a literal brace in PCRE, an error in the crate.
                out.push_str("\\{");
                prev = Some('{');
                continue;
            }
            _ => {}
        }
        out.push(c);
        prev = Some(c);
    }
    Ok(out)
}

/// The crate's messages span several lines with a caret diagram; the last line says what is wrong.
fn compile_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&text).trim().to_string()
}

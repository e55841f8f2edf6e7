//! Splits a startup template into literal text and `{{VAR}}` placeholders, each placeholder
//! tagged with the shell quoting it sits in.
//!
//! The scanner follows the shell constructs that change how a `${VAR}` reference is read:
//! `'...'`, `"..."`, bash's `$'...'`, backslash escapes, `$(...)`, `` `...` ``, `${...}`,
//! bash's `<(...)`/`>(...)`, and `#` comments. Inside `$(...)` and backticks quoting starts
//! afresh, even within double quotes (`"$(echo '{{A}}')"` is single-quoted). Not modelled:
//! here-documents and the unbalanced `)` of `case` patterns; neither occurs in real startup
//! commands, and a misreading there can only make a value expand wrongly, never be parsed as
//! shell syntax, because only `${NAME}` references and quote characters are ever inserted
//! (bash's arithmetic evaluation of expanded values is a separate limit, see the module docs).

use super::StartupError;

/// The quoting a placeholder sits in, which decides how its reference is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quoting {
    /// Outside quotes (also inside `$(...)`, backticks, `${...}` and comments).
    Unquoted,
    /// Inside `"..."`.
    Double,
    /// Inside `'...'`.
    Single,
    /// Inside bash's `$'...'`.
    AnsiC,
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text that appears in the command as `command` and in the display as `display`; the two
    /// differ only for a backslash written right before a placeholder.
    Text { command: &'a str, display: &'a str },
    /// A `{{NAME}}` placeholder.
    Placeholder { name: &'a str, quoting: Quoting },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Top,
    Double,
    Single,
    AnsiC,
    /// `$(`, `$((`, `<(`, `>(`; `depth` counts inner unmatched `(`.
    CmdSubst {
        depth: u32,
    },
    Backtick,
    Brace,
    Comment,
}

impl Frame {
    fn quoting(self) -> Quoting {
        match self {
            Self::Double => Quoting::Double,
            Self::Single => Quoting::Single,
            Self::AnsiC => Quoting::AnsiC,
            Self::Top | Self::CmdSubst { .. } | Self::Backtick | Self::Brace | Self::Comment => Quoting::Unquoted,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Double => "double quote `\"`",
            Self::Single => "single quote `'`",
            Self::AnsiC => "`$'` quote",
            Self::CmdSubst { .. } => "command substitution `$(`",
            Self::Backtick => "backtick command substitution",
            Self::Brace => "parameter expansion `${`",
            Self::Top | Self::Comment => "construct",
        }
    }
}

/// If a placeholder `{{ NAME }}` starts at byte `i`, its name and length in bytes.
pub(crate) fn placeholder_at(s: &str, i: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'{') || b.get(i + 1) != Some(&b'{') {
        return None;
    }
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    let mut j = i + 2;
    while b.get(j).is_some_and(blank) {
        j += 1;
    }
    let start = j;
    if !b.get(j).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
        return None;
    }
    while b.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        j += 1;
    }
    let end = j;
    while b.get(j).is_some_and(blank) {
        j += 1;
    }
    if b.get(j) != Some(&b'}') || b.get(j + 1) != Some(&b'}') {
        return None;
    }
    Some((&s[start..end], j + 2 - i))
}

/// Splits `template` into pieces. Fails only when a quote or substitution is left open.
pub(crate) fn scan<'a>(template: &'a str) -> Result<Vec<Piece<'a>>, StartupError> {
    let b = template.as_bytes();
    let mut pieces = Vec::new();
    let mut stack: Vec<(Frame, usize)> = vec![(Frame::Top, 0)];
    let mut run = 0;
    let mut i = 0;
    let flush = |pieces: &mut Vec<Piece<'a>>, from: usize, to: usize| {
        if from < to {
            let text = &template[from..to];
            pieces.push(Piece::Text { command: text, display: text });
        }
    };
    while i < b.len() {
        let (frame, _) = *stack.last().unwrap_or(&(Frame::Top, 0));
        if let Some((name, len)) = placeholder_at(template, i) {
            flush(&mut pieces, run, i);
            pieces.push(Piece::Placeholder { name, quoting: frame.quoting() });
            i += len;
            run = i;
            continue;
        }
        let c = b[i];
        let next = b.get(i + 1).copied();
        let placeholder_next = placeholder_at(template, i + 1).is_some();
        match frame {
            Frame::Single => {
                if c == b'\'' {
                    stack.pop();
                }
                i += 1;
            }
            Frame::Comment => {
                if c == b'\n' {
                    stack.pop();
                }
                i += 1;
            }
            Frame::AnsiC => match c {
                // `$'\{'` keeps its backslash; written as `\\` so it cannot escape the quote that
                // closes before the reference.
                b'\\' if placeholder_next => {
                    flush(&mut pieces, run, i);
                    pieces.push(Piece::Text { command: "\\\\", display: "\\" });
                    i += 1;
                    run = i;
                }
                b'\\' => i += 2,
                b'\'' => {
                    stack.pop();
                    i += 1;
                }
                _ => i += 1,
            },
            Frame::Double => match c {
                b'\\' if matches!(next, Some(b'$' | b'`' | b'"' | b'\\' | b'\n')) => i += 2,
                // A literal backslash before a placeholder would escape the reference's `$`.
                b'\\' if placeholder_next => {
                    flush(&mut pieces, run, i);
                    pieces.push(Piece::Text { command: "\\\\", display: "\\" });
                    i += 1;
                    run = i;
                }
                b'"' => {
                    stack.pop();
                    i += 1;
                }
                b'`' => {
                    stack.push((Frame::Backtick, i));
                    i += 1;
                }
                b'$' if next == Some(b'(') => {
                    stack.push((Frame::CmdSubst { depth: 0 }, i));
                    i += 2;
                }
                b'$' if next == Some(b'{') => {
                    stack.push((Frame::Brace, i));
                    i += 2;
                }
                _ => i += 1,
            },
            Frame::Top | Frame::CmdSubst { .. } | Frame::Backtick | Frame::Brace => {
                match c {
                    // The backslash would escape the first character of the value, which the
                    // shell never sees; dropping it keeps the reference intact.
                    b'\\' if placeholder_next => {
                        flush(&mut pieces, run, i);
                        pieces.push(Piece::Text { command: "", display: "\\" });
                        i += 1;
                        run = i;
                        continue;
                    }
                    b'\\' => {
                        i += 2;
                        continue;
                    }
                    b'\'' => stack.push((Frame::Single, i)),
                    b'"' => stack.push((Frame::Double, i)),
                    b'`' if frame == Frame::Backtick => {
                        stack.pop();
                    }
                    b'`' => stack.push((Frame::Backtick, i)),
                    b'$' if next == Some(b'\'') => {
                        stack.push((Frame::AnsiC, i));
                        i += 1;
                    }
                    b'$' if next == Some(b'(') => {
                        stack.push((Frame::CmdSubst { depth: 0 }, i));
                        i += 1;
                    }
                    b'$' if next == Some(b'{') => {
                        stack.push((Frame::Brace, i));
                        i += 1;
                    }
                    b'<' | b'>' if next == Some(b'(') => {
                        stack.push((Frame::CmdSubst { depth: 0 }, i));
                        i += 1;
                    }
                    b'(' => {
                        if let Some((Frame::CmdSubst { depth }, _)) = stack.last_mut() {
                            *depth += 1;
                        }
                    }
                    b')' => match stack.last_mut() {
                        Some((Frame::CmdSubst { depth: 0 }, _)) => {
                            stack.pop();
                        }
                        Some((Frame::CmdSubst { depth }, _)) => *depth -= 1,
                        _ => {}
                    },
                    b'}' if frame == Frame::Brace => {
                        stack.pop();
                    }
                    b'#' if frame != Frame::Brace && at_word_start(b, i) => stack.push((Frame::Comment, i)),
                    _ => {}
                }
                i += 1;
            }
        }
    }
    flush(&mut pieces, run, b.len());
    match stack.last() {
        Some(&(frame, offset)) if !matches!(frame, Frame::Top | Frame::Comment) => {
            Err(StartupError::Unterminated { construct: frame.describe(), offset })
        }
        _ => Ok(pieces),
    }
}

/// A `#` starts a comment only at the start of a word.
fn at_word_start(b: &[u8], i: usize) -> bool {
    i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' | b'`')
}

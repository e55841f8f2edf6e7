//! Splits a startup template into literal text and `{{VAR}}` placeholders, each placeholder
//! tagged with the shell quoting it sits in, and finds the uses of variables that bash
//! evaluates as arithmetic or as variable names (see [`super::arithmetic`]).
//!
//! The scanner follows the shell constructs that change how a `${VAR}` reference is read:
//! `'...'`, `"..."`, bash's `$'...'`, backslash escapes, `$(...)`, `` `...` ``, `${...}`,
//! bash's `<(...)`/`>(...)`, and `#` comments. Inside `$(...)` and backticks quoting starts
//! afresh, even within double quotes (`"$(echo '{{A}}')"` is single-quoted). Not modelled:
//! here-documents and the unbalanced `)` of `case` patterns; neither occurs in real startup
//! commands, and a misreading there can only make a value expand wrongly, never be parsed as
//! shell syntax, because only `${NAME}` references and quote characters are ever inserted.
//!
//! For arithmetic it also follows `$(( ))`, `(( ))`, `$[ ]`, `[[ ]]`, `NAME[...]` subscripts,
//! the parts of `${...}` (name, subscript, operator), `NAME=( ... )` array assignments, and
//! the words of each simple command (command name, options, assignments), in one pass.

use super::StartupError;
use super::arithmetic::{self, CommandKind, Eval, NAME_TESTS, NUMERIC_TESTS, PREFIX_WORDS};
use super::is_valid_variable_name;
use std::ops::Range;

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

/// A use of a variable in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Use<'a> {
    pub name: &'a str,
    /// A `{{NAME}}` placeholder; otherwise a `$NAME`, `${NAME...}` or bare `NAME` the author
    /// wrote.
    pub placeholder: bool,
    /// Bash evaluates the value here as arithmetic or as a variable name (or the scanner
    /// cannot rule it out).
    pub arithmetic: bool,
    /// A bare `NAME`, which only a place evaluated as arithmetic reads the value of.
    bare: bool,
    /// How the place is evaluated, as far as known when the use was read.
    eval: Eval,
}

/// A scanned template.
pub(crate) struct Scanned<'a> {
    pub pieces: Vec<Piece<'a>>,
    /// Every placeholder, and every use the author wrote of a name the caller asked about, in
    /// template order.
    pub uses: Vec<Use<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Top,
    Double,
    Single,
    AnsiC,
    /// `$(`, `<(`, `>(`; `depth` counts inner unmatched `(`.
    CmdSubst {
        depth: u32,
    },
    Backtick,
    Brace(BracePart),
    Comment,
    /// `$((` and `((` (`bracket: false`, `parens` counts inner unmatched `(`), or `$[`.
    Arith {
        parens: u32,
        bracket: bool,
    },
    /// `[[ ... ]]`: `start` is its first use, `eval` what its operators (numeric tests,
    /// `-v`/`-R`) make of every use inside.
    Test {
        start: usize,
        eval: Eval,
    },
    /// The `( ... )` of `NAME=( ... )`.
    Compound {
        parens: u32,
    },
}

/// How far the scanner has got in a `${...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BracePart {
    /// No parameter name yet (`${{{X}}}`, `${ }`): a value here names a variable.
    Name,
    /// Past the name (and any subscript): the operator comes next.
    Operator,
    /// The word of `-`, `=`, `?`, `+` (with or without `:`) or the pattern of `#`, `%`, `/`,
    /// `^`, `,`: expanded, never evaluated.
    Word,
    /// A substring offset or length (`:`), or an operator the scanner does not know.
    Evaluated,
}

impl Frame {
    fn quoting(self) -> Quoting {
        match self {
            Self::Double => Quoting::Double,
            Self::Single => Quoting::Single,
            Self::AnsiC => Quoting::AnsiC,
            Self::Top
            | Self::CmdSubst { .. }
            | Self::Backtick
            | Self::Brace(_)
            | Self::Comment
            | Self::Arith { .. }
            | Self::Test { .. }
            | Self::Compound { .. } => Quoting::Unquoted,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Double => "double quote `\"`",
            Self::Single => "single quote `'`",
            Self::AnsiC => "`$'` quote",
            Self::CmdSubst { .. } => "command substitution `$(`",
            Self::Backtick => "backtick command substitution",
            Self::Brace(_) => "parameter expansion `${`",
            Self::Arith { bracket: false, .. } => "arithmetic `((`",
            Self::Arith { bracket: true, .. } => "arithmetic expansion `$[`",
            Self::Compound { .. } => "array assignment `=(`",
            Self::Top | Self::Comment | Self::Test { .. } => "construct",
        }
    }

    /// Frames whose text is split into simple commands.
    fn runs_commands(self) -> bool {
        matches!(self, Self::Top | Self::CmdSubst { .. } | Self::Backtick)
    }

    fn is_quote(self) -> bool {
        matches!(self, Self::Double | Self::Single | Self::AnsiC)
    }
}

/// The simple command being read in a frame that runs commands.
#[derive(Clone, Copy, Debug)]
struct Command {
    /// Its first use.
    start: usize,
    /// `None` while the next word is still in command position.
    kind: Option<CommandKind>,
    /// What the command's options make of every use in it.
    eval: Eval,
    word: Option<Word>,
}

impl Command {
    fn new(start: usize) -> Self {
        Self { start, kind: None, eval: Eval::Text, word: None }
    }
}

/// The word being read.
#[derive(Clone, Copy, Debug)]
struct Word {
    start: usize,
    first_use: usize,
    /// The first `=` written directly in the word: its offset and the uses before it.
    equals: Option<(usize, usize)>,
    /// Only plain text: no quotes, escapes, expansions or placeholders.
    literal: bool,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    frame: Frame,
    offset: usize,
    /// How text here is evaluated (by this frame, or the one it opened in).
    eval: Eval,
    /// Open `[` of `NAME[` subscripts written in this level; quotes count in the level below.
    subscripts: u32,
    command: Option<Command>,
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

/// Splits `template` into pieces and lists its variable uses: every placeholder, and the
/// author's own uses (`$NAME`, `${NAME}`, bare `NAME`) of names `is_variable` accepts. Fails
/// when the template holds a NUL byte or leaves a quote or substitution open.
pub(crate) fn scan<'a>(template: &'a str, is_variable: impl Fn(&str) -> bool) -> Result<Scanned<'a>, StartupError> {
    if let Some(offset) = template.find('\0') {
        return Err(StartupError::NulInTemplate { offset });
    }
    let mut scanner = Scanner {
        template,
        b: template.as_bytes(),
        is_variable,
        stack: vec![Level {
            frame: Frame::Top,
            offset: 0,
            eval: Eval::Text,
            subscripts: 0,
            command: Some(Command::new(0)),
        }],
        pieces: Vec::new(),
        uses: Vec::new(),
        evaluated: Vec::new(),
        all_evaluated: false,
        run: 0,
        i: 0,
    };
    while scanner.i < scanner.b.len() {
        scanner.step();
    }
    scanner.flush(scanner.b.len());
    scanner.finish()
}

struct Scanner<'a, F> {
    template: &'a str,
    b: &'a [u8],
    is_variable: F,
    /// Never empty: the top level stays until [`Scanner::finish`].
    stack: Vec<Level>,
    pieces: Vec<Piece<'a>>,
    uses: Vec<Use<'a>>,
    /// Ranges of `uses` found to be evaluated only once their command or `[[ ]]` ended.
    evaluated: Vec<(Range<usize>, Eval)>,
    /// An integer declaration (`declare -i`) makes later plain assignments to the variable
    /// arithmetic, wherever they are: then every use is.
    all_evaluated: bool,
    /// Start of the text not yet in `pieces`.
    run: usize,
    i: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'a, F: Fn(&str) -> bool> Scanner<'a, F> {
    fn top(&self) -> Level {
        self.stack.last().copied().unwrap_or(Level {
            frame: Frame::Top,
            offset: 0,
            eval: Eval::Text,
            subscripts: 0,
            command: None,
        })
    }

    fn top_mut(&mut self) -> Option<&mut Level> {
        self.stack.last_mut()
    }

    /// The level that counts subscripts for the top one: itself, or the one below a quote.
    fn owner_mut(&mut self) -> Option<&mut Level> {
        let len = self.stack.len();
        let index = if self.top().frame.is_quote() { len.checked_sub(2)? } else { len.checked_sub(1)? };
        self.stack.get_mut(index)
    }

    fn next(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    /// How a value used here is evaluated, as far as the scan has got.
    fn eval_here(&self) -> Eval {
        let top = self.top();
        let below = self.stack.len().checked_sub(2).and_then(|i| self.stack.get(i));
        let quoted_subscript = top.frame.is_quote() && below.is_some_and(|level| level.subscripts > 0);
        let here = match top.frame {
            _ if top.subscripts > 0 || quoted_subscript => Eval::Arithmetic,
            Frame::Brace(BracePart::Name | BracePart::Operator) => Eval::Name,
            Frame::Brace(BracePart::Evaluated) => Eval::Arithmetic,
            _ => Eval::Text,
        };
        top.eval.max(here)
    }

    fn flush(&mut self, to: usize) {
        if self.run < to {
            let text = &self.template[self.run..to];
            self.pieces.push(Piece::Text { command: text, display: text });
        }
    }

    fn record(&mut self, name: &'a str, placeholder: bool, bare: bool, eval: Eval) {
        self.uses.push(Use { name, placeholder, arithmetic: false, bare, eval });
    }

    fn push(&mut self, frame: Frame) {
        let own = match frame {
            Frame::Arith { .. } => Eval::Arithmetic,
            // Older bash versions parse `[sub]=value` in the expanded elements.
            Frame::Compound { .. } => Eval::Name,
            _ => Eval::Text,
        };
        let eval = self.eval_here().max(own);
        let command = frame.runs_commands().then(|| Command::new(self.uses.len()));
        self.stack.push(Level { frame, offset: self.i, eval, subscripts: 0, command });
    }

    /// Closes the top level; the top-level frame is never closed here.
    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.close_top();
        }
    }

    fn close_top(&mut self) {
        let top = self.top();
        if top.command.is_some() {
            self.end_command();
        }
        if let Frame::Test { start, eval } = top.frame {
            self.mark(start..self.uses.len(), eval);
        }
        self.stack.pop();
    }

    /// Notes a character of the current word, if the top level runs commands.
    fn word_char(&mut self, literal: bool) {
        let (i, uses) = (self.i, self.uses.len());
        if let Some(command) = self.top_mut().and_then(|level| level.command.as_mut()) {
            let word = command.word.get_or_insert(Word { start: i, first_use: uses, equals: None, literal: true });
            word.literal &= literal;
        }
    }

    fn in_word(&self) -> bool {
        self.top().command.is_some_and(|command| command.word.is_some())
    }

    /// Ends the current word at `self.i`. Returns whether the word was a literal `{` or `}`
    /// after the command name, which ends the command (`function f { ...`).
    fn end_word(&mut self) -> bool {
        let (template, end, uses) = (self.template, self.i, self.uses.len());
        let Some(command) = self.top_mut().and_then(|level| level.command.as_mut()) else { return false };
        let Some(word) = command.word.take() else { return false };
        let text = &template[word.start..end];
        let literal = word.literal.then_some(text);
        let Some(kind) = command.kind else {
            let keeps_position = literal.is_some_and(|t| PREFIX_WORDS.contains(&t) || t == "{" || t == "}");
            if !keeps_position && !is_assignment(template, &word) {
                command.kind = Some(CommandKind::of(literal));
            }
            return false;
        };
        if literal.is_some_and(|t| t == "{" || t == "}") {
            return true;
        }
        if let Some(t) = literal {
            command.eval = command.eval.max(kind.with_argument(t));
        }
        let option = literal.is_some_and(|t| t.starts_with(['-', '+']));
        if kind == CommandKind::Declare && literal.is_some_and(arithmetic::declares_integer) {
            self.all_evaluated = true;
        }
        if kind == CommandKind::Declare && !option {
            // The variable name: what comes before `=`.
            let until = word.equals.map_or(uses, |(_, before)| before);
            self.mark(word.first_use..until, Eval::Name);
        }
        false
    }

    /// Ends the current simple command at `self.i`.
    fn end_command(&mut self) {
        self.end_word();
        let uses = self.uses.len();
        let Some(command) = self.top_mut().and_then(|level| level.command.as_mut()) else { return };
        let eval = command.kind.map_or(Eval::Text, CommandKind::arguments).max(command.eval);
        let start = command.start;
        *command = Command::new(uses);
        self.mark(start..uses, eval);
    }

    /// Notes that `uses` are evaluated as `eval`.
    fn mark(&mut self, uses: Range<usize>, eval: Eval) {
        if eval != Eval::Text && !uses.is_empty() {
            self.evaluated.push((uses, eval));
        }
    }

    /// A bare name at `self.i`, if one starts there: recorded when it is a variable.
    fn bare_name(&mut self) -> bool {
        let i = self.i;
        let starts = self.b.get(i).is_some_and(|&c| is_ident_start(c))
            && i.checked_sub(1).and_then(|p| self.b.get(p)).is_none_or(|&p| !is_ident(p) && p != b'$');
        if !starts {
            return false;
        }
        let len = self.b[i..].iter().take_while(|&&c| is_ident(c)).count();
        let name = &self.template[i..i + len];
        if (self.is_variable)(name) {
            let eval = self.eval_here();
            self.record(name, false, true, eval);
        }
        self.i += len;
        true
    }

    /// `$` at `self.i`: an expansion, or a literal dollar.
    fn dollar(&mut self, in_double: bool) {
        match (self.next(1), self.next(2)) {
            (Some(b'\''), _) if !in_double => {
                self.push(Frame::AnsiC);
                self.i += 2;
            }
            (Some(b'('), Some(b'(')) => {
                self.push(Frame::Arith { parens: 0, bracket: false });
                self.i += 3;
            }
            (Some(b'('), _) => {
                self.push(Frame::CmdSubst { depth: 0 });
                self.i += 2;
            }
            (Some(b'['), _) => {
                self.push(Frame::Arith { parens: 0, bracket: true });
                self.i += 2;
            }
            (Some(b'{'), _) => self.open_brace(),
            (Some(c), _) if is_ident_start(c) => {
                let len = self.b[self.i + 1..].iter().take_while(|&&c| is_ident(c)).count();
                let name = &self.template[self.i + 1..self.i + 1 + len];
                if (self.is_variable)(name) {
                    let eval = self.eval_here();
                    self.record(name, false, false, eval);
                }
                self.i += 1 + len;
            }
            _ => self.i += 1,
        }
    }

    /// `${` at `self.i`: reads the prefix (`#`, `!`) and the parameter name.
    fn open_brace(&mut self) {
        let outer = self.eval_here();
        self.push(Frame::Brace(BracePart::Name));
        let mut j = self.i + 2;
        let prefix = self.b.get(j).copied().filter(|c| matches!(c, b'#' | b'!'));
        if prefix.is_some() && self.b.get(j + 1).is_some_and(|&c| c != b'}') {
            j += 1;
        }
        let len = self.b[j..].iter().take_while(|&&c| is_ident(c)).count();
        let part = if len > 0 {
            let name = &self.template[j..j + len];
            if (self.is_variable)(name) {
                // `${!X}`: the value of X names the variable to expand.
                let eval = if prefix == Some(b'!') { outer.max(Eval::Name) } else { outer };
                self.record(name, false, false, eval);
            }
            j += len;
            BracePart::Operator
        } else if self.b.get(j).is_some_and(|c| b"@*#?-$!".contains(c)) {
            j += 1;
            BracePart::Operator
        } else {
            BracePart::Name
        };
        if let Some(level) = self.top_mut() {
            level.frame = Frame::Brace(part);
        }
        self.i = j;
    }

    /// A `[` or `]` at `self.i` as a subscript bracket: `[` right after a name opens one.
    fn subscript_bracket(&mut self, c: u8) -> bool {
        let after_name = self.i.checked_sub(1).and_then(|p| self.b.get(p)).is_some_and(|&p| is_ident(p));
        let Some(owner) = self.owner_mut() else { return false };
        match c {
            b'[' if after_name || owner.subscripts > 0 => {
                owner.subscripts += 1;
                true
            }
            b']' if owner.subscripts > 0 => {
                owner.subscripts -= 1;
                true
            }
            _ => false,
        }
    }

    fn step(&mut self) {
        let i = self.i;
        if let Some((name, len)) = placeholder_at(self.template, i) {
            self.word_char(false);
            if let Some(level) = self.top_mut() {
                if level.frame == Frame::Brace(BracePart::Operator) {
                    level.frame = Frame::Brace(BracePart::Evaluated);
                }
            }
            self.flush(i);
            self.pieces.push(Piece::Placeholder { name, quoting: self.top().frame.quoting() });
            let eval = self.eval_here();
            self.record(name, true, false, eval);
            self.i += len;
            self.run = self.i;
            return;
        }
        let c = self.b[i];
        let placeholder_next = placeholder_at(self.template, i + 1).is_some();
        match self.top().frame {
            Frame::Comment => {
                // The newline is left for the enclosing level: it ends a command there.
                if c == b'\n' {
                    self.pop();
                } else {
                    self.i += 1;
                }
            }
            Frame::Single => {
                if c == b'\'' {
                    self.pop();
                    self.i += 1;
                } else if !self.bare_name() {
                    self.subscript_bracket(c);
                    self.i += 1;
                }
            }
            Frame::AnsiC => match c {
                // `$'\{'` keeps its backslash; written as `\\` so it cannot escape the quote that
                // closes before the reference.
                b'\\' if placeholder_next => self.escaped_backslash(i),
                b'\\' => self.i += 2,
                b'\'' => {
                    self.pop();
                    self.i += 1;
                }
                _ => {
                    if !self.bare_name() {
                        self.subscript_bracket(c);
                        self.i += 1;
                    }
                }
            },
            Frame::Double => match c {
                b'\\' if matches!(self.next(1), Some(b'$' | b'`' | b'"' | b'\\' | b'\n')) => self.i += 2,
                // A literal backslash before a placeholder would escape the reference's `$`.
                b'\\' if placeholder_next => self.escaped_backslash(i),
                b'"' => {
                    self.pop();
                    self.i += 1;
                }
                b'`' => {
                    self.push(Frame::Backtick);
                    self.i += 1;
                }
                b'$' => self.dollar(true),
                _ => {
                    if !self.bare_name() {
                        self.subscript_bracket(c);
                        self.i += 1;
                    }
                }
            },
            Frame::Brace(part @ (BracePart::Name | BracePart::Operator)) if self.top().subscripts == 0 => {
                self.brace_operator(part, c);
            }
            _ => self.code(c, placeholder_next),
        }
    }

    /// The backslash right before a placeholder, inside quotes: kept, written doubled.
    fn escaped_backslash(&mut self, i: usize) {
        self.flush(i);
        self.pieces.push(Piece::Text { command: "\\\\", display: "\\" });
        self.i += 1;
        self.run = self.i;
    }

    /// The character after a `${` name (and subscript), which picks the operator.
    fn brace_operator(&mut self, part: BracePart, c: u8) {
        let next = match (part, c) {
            (_, b'}') => {
                self.pop();
                self.i += 1;
                return;
            }
            (BracePart::Operator, b'[') => {
                if let Some(level) = self.top_mut() {
                    level.subscripts += 1;
                }
                self.i += 1;
                return;
            }
            (BracePart::Operator, b':') if matches!(self.next(1), Some(b'-' | b'=' | b'?' | b'+')) => {
                self.i += 2;
                BracePart::Word
            }
            (BracePart::Operator, b':') => {
                self.i += 1;
                BracePart::Evaluated
            }
            (BracePart::Operator, b'-' | b'=' | b'?' | b'+' | b'#' | b'%' | b'/' | b'^' | b',') => {
                self.i += 1;
                BracePart::Word
            }
            // Unknown operators (`@P` expands prompts, for one) and anything in place of a
            // name: read on as evaluated.
            _ => BracePart::Evaluated,
        };
        if let Some(level) = self.top_mut() {
            level.frame = Frame::Brace(next);
        }
    }

    /// A character in a frame of shell code: the top level, `$(...)`, backticks, `${...}`,
    /// arithmetic, `[[ ]]` or an array assignment.
    fn code(&mut self, c: u8, placeholder_next: bool) {
        let top = self.top();
        let frame = top.frame;
        let commands = frame.runs_commands();
        let next = self.next(1);
        match c {
            // The backslash would escape the first character of the value, which the shell
            // never sees; dropping it keeps the reference intact.
            b'\\' if placeholder_next => {
                self.flush(self.i);
                self.pieces.push(Piece::Text { command: "", display: "\\" });
                self.i += 1;
                self.run = self.i;
            }
            b'\\' => {
                self.word_char(false);
                self.i += 2;
            }
            b'\'' | b'"' => {
                self.word_char(false);
                self.push(if c == b'\'' { Frame::Single } else { Frame::Double });
                self.i += 1;
            }
            b'`' if frame == Frame::Backtick => {
                self.pop();
                self.i += 1;
            }
            b'`' => {
                self.word_char(false);
                self.push(Frame::Backtick);
                self.i += 1;
            }
            b'$' => {
                self.word_char(false);
                self.dollar(false);
            }
            b'<' | b'>' if next == Some(b'(') => {
                self.word_char(false);
                self.push(Frame::CmdSubst { depth: 0 });
                self.i += 2;
            }
            b'[' if commands && !self.in_word() && self.b[self.i..].starts_with(b"[[") && self.is_blank_at(2) => {
                self.set_kind_if_unset();
                self.push(Frame::Test { start: self.uses.len(), eval: Eval::Text });
                self.i += 2;
            }
            b']' if matches!(frame, Frame::Test { .. })
                && top.subscripts == 0
                && at_word_start(self.b, self.i)
                && self.b[self.i..].starts_with(b"]]")
                && self.ends_word_at(2) =>
            {
                self.pop();
                self.i += 2;
            }
            b']' if matches!(frame, Frame::Arith { bracket: true, .. }) && top.subscripts == 0 => {
                self.pop();
                self.i += 1;
            }
            b'[' | b']' => {
                self.word_char(true);
                self.subscript_bracket(c);
                self.i += 1;
            }
            b'(' if commands && !self.in_word() && next == Some(b'(') => {
                self.set_kind_if_unset();
                self.push(Frame::Arith { parens: 0, bracket: false });
                self.i += 2;
            }
            b'(' if commands && self.assignment_opens_here() => {
                self.push(Frame::Compound { parens: 0 });
                self.i += 1;
            }
            b'(' => {
                if commands {
                    self.end_command();
                }
                if let Some(Level {
                    frame: Frame::CmdSubst { depth: parens } | Frame::Arith { parens, .. } | Frame::Compound { parens },
                    ..
                }) = self.top_mut()
                {
                    *parens += 1;
                }
                self.i += 1;
            }
            b')' => self.close_paren(),
            b'}' if matches!(frame, Frame::Brace(_)) => {
                self.pop();
                self.i += 1;
            }
            b'#' if !matches!(frame, Frame::Brace(_) | Frame::Arith { .. }) && at_word_start(self.b, self.i) => {
                if commands {
                    self.end_word();
                }
                self.push(Frame::Comment);
                self.i += 1;
            }
            b' ' | b'\t' if commands => {
                if self.end_word() {
                    self.end_command();
                }
                self.i += 1;
            }
            b'\n' | b';' | b'|' if commands => {
                self.end_command();
                self.i += 1;
            }
            // `>&2`, `<&0` and `&>` are redirections, not `&`.
            b'&' if commands && !self.previous_is(b"<>") && next != Some(b'>') => {
                self.end_command();
                self.i += 1;
            }
            b'<' | b'>' | b'&' if commands => {
                self.end_word();
                self.i += 1;
            }
            b'-' if matches!(frame, Frame::Test { .. }) && at_word_start(self.b, self.i) => {
                let is = |ops: &[&str]| {
                    ops.iter().any(|op| self.b[self.i..].starts_with(op.as_bytes()) && self.ends_word_at(op.len()))
                };
                let operator = if is(&NUMERIC_TESTS) {
                    Eval::Arithmetic
                } else if is(&NAME_TESTS) {
                    Eval::Name
                } else {
                    Eval::Text
                };
                if let Some(Level { frame: Frame::Test { eval, .. }, .. }) = self.top_mut() {
                    *eval = (*eval).max(operator);
                }
                self.i += 1;
            }
            b'=' if commands => {
                let (i, uses) = (self.i, self.uses.len());
                self.word_char(true);
                if let Some(word) =
                    self.top_mut().and_then(|level| level.command.as_mut()).and_then(|c| c.word.as_mut())
                {
                    word.equals.get_or_insert((i, uses));
                }
                self.i += 1;
            }
            _ => {
                self.word_char(true);
                if !self.bare_name() {
                    self.i += 1;
                }
            }
        }
    }

    fn close_paren(&mut self) {
        let top = self.top();
        if top.frame.runs_commands() {
            self.end_command();
        }
        match top.frame {
            Frame::CmdSubst { depth: 0 } | Frame::Compound { parens: 0 } => {
                self.pop();
                self.i += 1;
            }
            Frame::Arith { parens: 0, bracket: false } => {
                self.pop();
                // `))` closes `((`; a lone `)` closes it as well rather than run away.
                self.i += if self.next(1) == Some(b')') { 2 } else { 1 };
            }
            _ => {
                if let Some(Level {
                    frame: Frame::CmdSubst { depth: parens } | Frame::Arith { parens, .. } | Frame::Compound { parens },
                    ..
                }) = self.top_mut()
                {
                    *parens = parens.saturating_sub(1);
                }
                self.i += 1;
            }
        }
    }

    fn set_kind_if_unset(&mut self) {
        if let Some(command) = self.top_mut().and_then(|level| level.command.as_mut()) {
            command.kind.get_or_insert(CommandKind::Other);
        }
    }

    /// `(` right after the `=` of an assignment word: `NAME=(` or `NAME+=(`.
    fn assignment_opens_here(&self) -> bool {
        let word = self.top().command.and_then(|command| command.word);
        word.is_some_and(|word| {
            word.equals.is_some_and(|(at, _)| at + 1 == self.i) && is_assignment(self.template, &word)
        })
    }

    fn is_blank_at(&self, k: usize) -> bool {
        matches!(self.next(k), Some(b' ' | b'\t' | b'\n'))
    }

    /// Whether a word ends `k` bytes ahead (a blank, an operator or the end).
    fn ends_word_at(&self, k: usize) -> bool {
        self.next(k).is_none_or(|c| matches!(c, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b')'))
    }

    fn previous_is(&self, set: &[u8]) -> bool {
        self.i.checked_sub(1).and_then(|p| self.b.get(p)).is_some_and(|p| set.contains(p))
    }

    /// Closes what is left open at the end and settles which uses are evaluated.
    fn finish(mut self) -> Result<Scanned<'a>, StartupError> {
        while let Some(top) = self.stack.last().copied() {
            match top.frame {
                Frame::Top | Frame::Comment => self.close_top(),
                // An unclosed `[[` means the scan lost track of the template: nothing after it
                // can be classified, so all of it counts as evaluated.
                Frame::Test { start, .. } => {
                    if let Some(level) = self.top_mut() {
                        level.frame = Frame::Test { start, eval: Eval::Arithmetic };
                    }
                    self.close_top();
                }
                frame => return Err(StartupError::Unterminated { construct: frame.describe(), offset: top.offset }),
            }
        }
        // Ranges nest (a command inside a `[[ ]]`): count how many of each kind cover each use,
        // with a +1 where a range starts and a -1 where it ends.
        let mut deltas = vec![[0isize; 2]; self.uses.len() + 1];
        for (range, eval) in &self.evaluated {
            let kind = match eval {
                Eval::Text => continue,
                Eval::Name => 0,
                Eval::Arithmetic => 1,
            };
            deltas[range.start][kind] += 1;
            deltas[range.end][kind] -= 1;
        }
        let mut open = [0isize; 2];
        for (use_, delta) in self.uses.iter_mut().zip(&deltas) {
            open = [open[0] + delta[0], open[1] + delta[1]];
            let mut eval = use_.eval;
            if open[0] > 0 {
                eval = eval.max(Eval::Name);
            }
            if open[1] > 0 || self.all_evaluated {
                eval = Eval::Arithmetic;
            }
            use_.arithmetic = eval == Eval::Arithmetic || (eval == Eval::Name && !use_.bare);
        }
        Ok(Scanned { pieces: self.pieces, uses: self.uses })
    }
}

/// Whether `word` is an assignment: `NAME=`, `NAME+=`, `NAME[...]=`, `NAME[...]+=`.
fn is_assignment(template: &str, word: &Word) -> bool {
    let Some((equals, _)) = word.equals else { return false };
    let target = &template[word.start..equals];
    let target = target.strip_suffix('+').unwrap_or(target);
    match target.split_once('[') {
        Some((name, subscript)) => is_valid_variable_name(name) && subscript.ends_with(']'),
        None => is_valid_variable_name(target),
    }
}

/// A `#` starts a comment only at the start of a word.
fn at_word_start(b: &[u8], i: usize) -> bool {
    i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' | b'`')
}

//! Where bash evaluates an expanded value as arithmetic, or as a variable name whose subscript
//! it evaluates, and what values are safe there.
//!
//! An arithmetic expression may run commands (`a[$(cmd)]`), and bash evaluates the *expanded*
//! text of a variable as one, quoted or not, in these places:
//!
//! - `$(( ))`, `(( ))` (also `for (( ; ; ))`), and the old `$[ ]`;
//! - the operands of the numeric tests of `[[ ]]` (`-eq`, `-ne`, `-lt`, `-le`, `-gt`, `-ge`);
//! - array subscripts: `a[X]=…`, `${a[X]}`, `${#a[X]}`, `${!a[X]}`, and a `name[X]` handed to
//!   a builtin that takes variable names (`unset`, `read`, `printf -v`, `[[ -v ]]`, …);
//! - substring offsets and lengths: `${s:X}`, `${s:X:Y}`, `${s: -X}`;
//! - the arguments of `let`, and assignments to integer variables (`declare -i`, `local -i`,
//!   `typeset -i`, `export -i`);
//! - a value used as a variable *name*, which may carry a subscript: `${!X}`, `declare -n r=X`,
//!   the names given to `unset`, `read`, `mapfile`, `getopts`, `printf -v`, `wait -p`,
//!   `declare`/`local`/`export`/`readonly`/`typeset`, and the operand of `-v`/`-R` in
//!   `[[ ]]`, `[ ]` and `test`.
//!
//! The scanner ([`mod@super::scan`]) marks every use of a variable in those places; where it
//! cannot tell (a `${…}` operator it does not know, an integer or nameref declaration anywhere
//! in the template, which makes later plain assignments arithmetic), it marks conservatively.
//! Not arithmetic: `case` patterns, `[ ]`/`test` numeric tests (which only accept integers),
//! `${s:-X}` and the other word and pattern operators of `${…}`.

/// How bash treats the value of a variable used at some place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Eval {
    /// As text.
    Text,
    /// As the name of a variable, whose subscript bash evaluates: a placeholder or `$X` there
    /// is unsafe; a bare `X` there is only the name itself.
    Name,
    /// As an arithmetic expression, which evaluates the value of a bare `X` too.
    Arithmetic,
}

/// How the command a variable use belongs to treats its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandKind {
    /// `let`: every argument is an arithmetic expression.
    Let,
    /// `declare`, `typeset`, `local`, `export`, `readonly`: arguments name variables; with
    /// `-i` (integer) the values are arithmetic, with `-n` (nameref) they name variables, with
    /// `-a`/`-A` they are array elements.
    Declare,
    /// `unset`, `read`, `readarray`, `mapfile`, `getopts`: arguments name variables.
    NameArgs,
    /// `printf`: `-v` names a variable.
    Printf,
    /// `wait`: `-p` names a variable.
    Wait,
    /// `[` and `test`: `-v` and `-R` name a variable.
    Test,
    /// Anything else, including commands whose name is not literal text.
    Other,
}

impl CommandKind {
    /// The kind of a command named `name` (`None`: not literal text).
    pub(crate) fn of(name: Option<&str>) -> Self {
        match name {
            Some("let") => Self::Let,
            Some("declare" | "typeset" | "local" | "export" | "readonly") => Self::Declare,
            Some("unset" | "read" | "readarray" | "mapfile" | "getopts") => Self::NameArgs,
            Some("printf") => Self::Printf,
            Some("wait") => Self::Wait,
            Some("[" | "test") => Self::Test,
            _ => Self::Other,
        }
    }

    /// How the command treats every one of its arguments, whatever its options.
    pub(crate) fn arguments(self) -> Eval {
        match self {
            Self::Let => Eval::Arithmetic,
            Self::NameArgs => Eval::Name,
            Self::Declare | Self::Printf | Self::Wait | Self::Test | Self::Other => Eval::Text,
        }
    }

    /// How the command treats every one of its arguments once it has the literal argument
    /// `word` (an option such as `-i`).
    pub(crate) fn with_argument(self, word: &str) -> Eval {
        let option_with = |letters: &[char]| word.starts_with(['-', '+']) && word.contains(letters);
        match self {
            Self::Declare if option_with(&['i']) => Eval::Arithmetic,
            Self::Declare if option_with(&['n', 'a', 'A']) => Eval::Name,
            Self::Printf if option_with(&['v']) => Eval::Name,
            Self::Wait if option_with(&['p']) => Eval::Name,
            Self::Test if NAME_TESTS.contains(&word) => Eval::Name,
            _ => Eval::Text,
        }
    }
}

/// Whether `word` (a literal option of a `declare`-like command) gives variables the integer
/// attribute, which makes later plain assignments to them arithmetic too.
pub(crate) fn declares_integer(word: &str) -> bool {
    word.starts_with('-') && word.contains('i')
}

/// Words that leave the next word in command position.
pub(crate) const PREFIX_WORDS: [&str; 13] =
    ["if", "then", "elif", "else", "do", "while", "until", "time", "!", "builtin", "command", "function", "coproc"];

/// The numeric tests of `[[ ]]`, whose operands bash evaluates as arithmetic.
pub(crate) const NUMERIC_TESTS: [&str; 6] = ["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

/// The tests whose operand names a variable (`[[ -v X ]]`, `[ -v X ]`, `test -R X`).
pub(crate) const NAME_TESTS: [&str; 2] = ["-v", "-R"];

/// Whether `value` is safe where bash evaluates arithmetic: empty (bash reads 0) or an integer.
pub(crate) fn is_arithmetic_safe(value: &str) -> bool {
    let digits = value.trim().trim_start_matches(['+', '-']);
    value.trim().is_empty() || (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_values_only() {
        for ok in ["", "0", "1", "-3", "+42", " 7 "] {
            assert!(is_arithmetic_safe(ok), "{ok:?}");
        }
        for bad in ["a[$(id)]", "1+1", "x", "0x1f", "1 2", "-", "true"] {
            assert!(!is_arithmetic_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn commands_and_their_options() {
        assert_eq!(CommandKind::of(Some("local")), CommandKind::Declare);
        assert_eq!(CommandKind::of(None), CommandKind::Other);
        assert_eq!(CommandKind::Let.arguments(), Eval::Arithmetic);
        assert_eq!(CommandKind::NameArgs.arguments(), Eval::Name);
        assert_eq!(CommandKind::Declare.with_argument("-ri"), Eval::Arithmetic);
        assert_eq!(CommandKind::Declare.with_argument("-n"), Eval::Name);
        assert_eq!(CommandKind::Declare.with_argument("-x"), Eval::Text);
        assert_eq!(CommandKind::Printf.with_argument("-v"), Eval::Name);
        assert_eq!(CommandKind::Printf.with_argument("%s"), Eval::Text);
        assert_eq!(CommandKind::Test.with_argument("-v"), Eval::Name);
        assert_eq!(CommandKind::Test.with_argument("-eq"), Eval::Text);
        assert!(declares_integer("-ai") && !declares_integer("+i") && !declares_integer("-x"));
    }
}

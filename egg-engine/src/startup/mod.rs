//! Rendering an egg's startup command and the environment a server runs with.
//!
//! [`render_startup`] turns a template such as `java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}`
//! into a [`RenderedStartup`]:
//!
//! - `command`, for `/bin/sh -c`: every placeholder becomes a reference to an environment
//!   variable, so the shell expands the value but never parses it as shell syntax: a value
//!   cannot add commands, redirections, substitutions or quotes (see "Limits" below for the
//!   places where bash itself evaluates an expanded value). How the reference is written
//!   depends on where the placeholder sits in the author's template:
//!
//!   | placeholder in          | written as       |
//!   |-------------------------|------------------|
//!   | no quotes               | `${VAR}`         |
//!   | `"..."`                 | `${VAR}`         |
//!   | `'...'`                 | `'"${VAR}"'`     |
//!   | `$'...'` (bash)         | `'"${VAR}"$'`    |
//!
//!   Inside `$(...)` and backticks quoting starts afresh, as in the shell. Unquoted references
//!   keep the shell's word splitting and pathname expansion on purpose: authors write
//!   `{{ADDITIONAL_ARGS}}` bare to pass several arguments, and quote placeholders they want
//!   kept whole. A backslash written right before a placeholder (`\{{VAR}}`) is dropped outside
//!   quotes (it would only escape the value's first character) and kept literal inside quotes.
//!   `${VAR}` references written by the author pass through untouched.
//! - `display`: the template with values pasted in literally, for people to read. Never run it.
//! - `env`: everything the server process gets (see below), `STARTUP` included.
//!
//! # Placeholders
//!
//! `{{NAME}}`, with optional blanks inside the braces (`{{ NAME }}`), where `NAME` matches
//! `[A-Za-z_][A-Za-z0-9_]*`; anything else between braces is left as text. A placeholder
//! resolves against the environment: the egg's variables, the built-ins `SERVER_MEMORY`,
//! `SERVER_IP`, `SERVER_PORT`, and the other platform names (`P_SERVER_UUID`, `TZ`, `HOME`,
//! `USER`).
//!
//! **A placeholder naming no variable stays a reference** (`${X}`, quoted like the others), and
//! is listed in [`RenderedStartup::unresolved`] so callers can warn. This is what Wings passes:
//! it hands `STARTUP` to the image unrendered, and the yolks entrypoints rewrite `{{X}}` to
//! `${X}`, so the shell expands whatever the entrypoint itself defined, or nothing. Real eggs
//! rely on it: the Arma 3 egg's startup passes `-mod=\"{{CLIENT_MODS}}\"`, defines no
//! `CLIENT_MODS` variable, and its image's entrypoint computes `CLIENT_MODS` before it
//! evaluates the startup. The value comes from the image, never from a tenant: every name a
//! tenant can set is an egg variable, and those resolve.
//!
//! # Environment
//!
//! In this order: `SERVER_MEMORY` (MiB), `SERVER_IP`, `SERVER_PORT`, `P_SERVER_UUID`,
//! `P_SERVER_LOCATION` (when the panel gave one), `P_SERVER_ALLOCATION_LIMIT` (`0` when
//! none), `TZ` (when the platform has one), `HOME=/home/container`, `USER=container`, then every variable
//! in the given order, then `STARTUP` (the rendered `command`, which Pterodactyl images read and
//! evaluate; it is the template with each placeholder turned into a `${X}` reference). Variable
//! names keep their case (Wings upper-cases them; the corpus has `srv_name`, referenced as
//! `{{srv_name}}`).
//!
//! # Reserved names
//!
//! [`is_reserved`] names may not be egg variables, so the importer refuses them:
//! - set by the platform for every server: `SERVER_MEMORY`, `SERVER_IP`, `SERVER_PORT`,
//!   `STARTUP`, `HOME`, `USER`, and every `P_SERVER_*` name (Pterodactyl sets
//!   `P_SERVER_UUID`, `P_SERVER_LOCATION`, `P_SERVER_ALLOCATION_LIMIT`);
//! - read by the shell that runs the command and able to change what it does: `IFS` (how
//!   values are split), `BASH_ENV` and `ENV` (a file sourced before the command), `SHELLOPTS`,
//!   `BASHOPTS`.
//!
//! `TZ` is **not** reserved: eggs in the wild define a `TZ` variable for users to pick a time
//! zone. A non-empty `TZ` variable wins over the platform's zone (the server owner chose it);
//! an empty one leaves the platform's. None of the 77 corpus eggs uses a reserved name.
//!
//! # Shell notes
//!
//! Many real templates use bash syntax (`[[ ]]`, `$'...'`, `<(...)`, `compgen`); runtimes
//! should run the command with bash where the image has it. The quoting written here is valid
//! for both POSIX `sh` and bash. A template that hands a value to `eval`, `trap "{{STOP}}"` or
//! `sh -c` runs it as code by the author's choice; rendering cannot and does not change that.
//!
//! # Limits
//!
//! Bash evaluates the *expanded* text of a variable as an arithmetic expression in many places,
//! quoted or not, and an arithmetic expression may contain `a[$(cmd)]`, which runs `cmd`. The
//! Valheim egg, for example, writes `[[ {{ENABLE_CROSSPLAY}} -eq 1 ]]`. In such places a value
//! is only safe if it is a plain integer (or empty), so rendering refuses any other value
//! ([`StartupError::NotAnInteger`]) for a variable used in:
//!
//! - `$(( ))`, `(( ))` (also `for (( ; ; ))`), `$[ ]`;
//! - a `[[ ]]` with a numeric test (`-eq`, `-ne`, `-lt`, `-le`, `-gt`, `-ge`) or `-v`/`-R`;
//! - an array subscript: `a[X]=1`, `${a[X]}`, `${#a[X]}`, `${!a[X]}`, `unset 'a[X]'`, in any
//!   quoting (any `NAME[` starts one, so a glob such as `file[X]` counts too), and an array
//!   assignment `a=(X)`;
//! - a substring offset or length: `${s:X}`, `${s:1:X}`, `${s: -X}`, and a `${...}` operator
//!   the renderer does not know (`${s@P}`);
//! - a value used as a variable name: `${!X}`, a placeholder where `${...}` expects a name
//!   (`${{{X}}}`);
//! - the arguments of `let`; the names given to `declare`, `typeset`, `local`, `export`,
//!   `readonly` (all their arguments with `-i`, `-n`, `-a` or `-A`); every argument of
//!   `unset`, `read`, `readarray`, `mapfile`, `getopts`, and of `printf -v`, `wait -p`,
//!   `[ -v ]`, `test -v` (and `-R`);
//! - anywhere, once the template declares an integer variable (`declare -i`, `local -i`, ...):
//!   later plain assignments to it are arithmetic, so every use is checked.
//!
//! This applies to placeholders and equally to the author's own `$X`, `${X}` or bare `X`
//! naming an egg variable in those places (`(( X > 1 ))` evaluates X's value too). A value
//! in a `${s:-X}` word, a `case` pattern or the numeric tests of `[ ]`/`test` (which refuse
//! non-integers themselves) is not evaluated. Where the scanner cannot classify a position it
//! errs towards refusing. Callers should still validate values with [`crate::rules::validate`]
//! before rendering. A here-document whose body is run by a shell (`bash <<EOF ... EOF`)
//! re-parses the expanded value, like `eval`.
//!
//! A template may not contain a NUL byte ([`StartupError::NulInTemplate`]): no environment or
//! argument can carry one, and a shell would cut the command there.

mod arithmetic;
mod scan;
#[cfg(test)]
mod tests;

use indexmap::IndexMap;
use scan::{Piece, Quoting, scan};
use std::collections::HashSet;

/// Placeholders every template may use besides the egg's variables.
pub const BUILTIN_PLACEHOLDERS: &[&str] = &["SERVER_MEMORY", "SERVER_IP", "SERVER_PORT"];

// Which names are well-formed and which are reserved (see the module docs) is written once in
// `nexus-core`: nodes and panels check server specs against the same rules.
pub use nexus_core::env::{RESERVED_PREFIXES, RESERVED_VARIABLES, is_reserved, is_valid_variable_name};

/// The home directory every server gets.
pub const HOME_DIR: &str = "/home/container";

/// The user name every server gets.
pub const USER_NAME: &str = "container";

/// What the platform knows about the server, for the built-in variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFacts {
    /// Memory limit in MiB (`SERVER_MEMORY`).
    pub memory_mib: u64,
    /// Primary allocation's IP (`SERVER_IP`).
    pub ip: String,
    /// Primary allocation's port (`SERVER_PORT`).
    pub port: u16,
    /// The server's UUID (`P_SERVER_UUID`).
    pub uuid: String,
    /// Time zone for `TZ`, e.g. `Europe/Berlin`; `None` sets no `TZ` (unless the egg does).
    pub timezone: Option<String>,
    /// The location's short code (`P_SERVER_LOCATION`); `None` sets none.
    pub location: Option<String>,
    /// Allocations the server may hold (`P_SERVER_ALLOCATION_LIMIT`, `0` when `None`).
    pub allocation_limit: Option<u32>,
}

/// A rendered startup command with its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderedStartup {
    /// Shell-safe command for `/bin/sh -c`, run with [`Self::env`].
    pub command: String,
    /// The command with values pasted in, for people to read. Not safe to run.
    pub display: String,
    /// The complete environment of the server process.
    pub env: IndexMap<String, String>,
    /// Placeholders that named no variable and no built-in, in order of first use; they stay
    /// `${X}` references, for the image's entrypoint to expand (or to expand to nothing).
    pub unresolved: Vec<String>,
}

/// Why a startup command cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// A variable name the shell could not reference.
    #[error("variable `{name}`: environment name must match [A-Za-z_][A-Za-z0-9_]*")]
    InvalidVariableName {
        /// The name given.
        name: String,
    },
    /// A variable uses a name the platform or the shell owns.
    #[error("variable `{name}` uses a reserved name")]
    ReservedVariable {
        /// The name given.
        name: String,
    },
    /// A value contains a NUL byte, which no environment can carry.
    #[error("value of `{name}` contains a NUL byte")]
    NulByte {
        /// The variable (or built-in) whose value it is.
        name: String,
    },
    /// A value that is not an integer is used where bash evaluates arithmetic or a variable
    /// name (`(( ))`, `$(( ))`, `[[ ... -eq ... ]]`, subscripts, `${s:X}`, `let`, ...; see the
    /// module docs), where it could run commands.
    #[error("value of `{name}` must be an integer: the startup command uses it in an arithmetic context")]
    NotAnInteger {
        /// The variable.
        name: String,
    },
    /// The template contains a NUL byte.
    #[error("startup command contains a NUL byte at byte {offset}")]
    NulInTemplate {
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// The template leaves a quote or substitution open.
    #[error("startup command: unterminated {construct} opened at byte {offset}")]
    Unterminated {
        /// What is left open.
        construct: &'static str,
        /// Byte offset of the opening character.
        offset: usize,
    },
}

/// Renders `template` with the variable `values` (environment name → value) and the server's
/// `facts`. See the module docs for the rules.
///
/// # Errors
///
/// [`StartupError`]: an invalid or reserved variable name, a NUL byte in a value or in the
/// template, a non-integer value where bash evaluates arithmetic (`(( ))`, `$(( ))`, `$[ ]`,
/// `[[ ... -eq ... ]]`, `[[ -v ]]`, array subscripts, `${s:X}`, `let`, `declare -i`, names
/// handed to `unset`/`read`/`printf -v`/..., see the module docs), or a quote or substitution
/// left open.
pub fn render_startup<I, K, V>(template: &str, values: I, facts: &ServerFacts) -> Result<RenderedStartup, StartupError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut env: IndexMap<String, String> = IndexMap::new();
    env.insert("SERVER_MEMORY".into(), facts.memory_mib.to_string());
    env.insert("SERVER_IP".into(), facts.ip.clone());
    env.insert("SERVER_PORT".into(), facts.port.to_string());
    env.insert("P_SERVER_UUID".into(), facts.uuid.clone());
    if let Some(location) = &facts.location {
        env.insert("P_SERVER_LOCATION".into(), location.clone());
    }
    env.insert("P_SERVER_ALLOCATION_LIMIT".into(), facts.allocation_limit.unwrap_or(0).to_string());
    if let Some(tz) = &facts.timezone {
        env.insert("TZ".into(), tz.clone());
    }
    env.insert("HOME".into(), HOME_DIR.into());
    env.insert("USER".into(), USER_NAME.into());
    for (name, value) in &env {
        if value.contains('\0') {
            return Err(StartupError::NulByte { name: name.clone() });
        }
    }
    let mut variables: HashSet<String> = HashSet::new();
    for (name, value) in values {
        let (name, value) = (name.as_ref(), value.as_ref());
        if !is_valid_variable_name(name) {
            return Err(StartupError::InvalidVariableName { name: name.into() });
        }
        if is_reserved(name) {
            return Err(StartupError::ReservedVariable { name: name.into() });
        }
        if value.contains('\0') {
            return Err(StartupError::NulByte { name: name.into() });
        }
        variables.insert(name.into());
        if name == "TZ" && value.is_empty() && env.contains_key("TZ") {
            continue;
        }
        env.insert(name.into(), value.into());
    }

    // The author's own `$X` is checked for egg variables only: the platform's values are not
    // a tenant's to choose.
    let scanned = scan(template, |name| variables.contains(name))?;
    for used in scanned.uses.iter().filter(|used| used.arithmetic) {
        if env.get(used.name).is_some_and(|value| !arithmetic::is_arithmetic_safe(value)) {
            return Err(StartupError::NotAnInteger { name: used.name.into() });
        }
    }

    let mut command = String::with_capacity(template.len());
    let mut display = String::with_capacity(template.len());
    let mut unresolved: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for piece in scanned.pieces {
        match piece {
            Piece::Text { command: c, display: d } => {
                command.push_str(c);
                display.push_str(d);
            }
            Piece::Placeholder { name, quoting } => match env.get(name) {
                Some(value) => {
                    push_reference(&mut command, name, quoting);
                    display.push_str(value);
                }
                None => {
                    push_reference(&mut command, name, quoting);
                    push_reference(&mut display, name, quoting);
                    if seen.insert(name) {
                        unresolved.push(name.into());
                    }
                }
            },
        }
    }
    env.insert("STARTUP".into(), command.clone());
    Ok(RenderedStartup { command, display, env, unresolved })
}

/// The names of all placeholders in `template`, in order of first use.
///
/// # Errors
///
/// [`StartupError::NulInTemplate`] or [`StartupError::Unterminated`].
pub fn placeholders(template: &str) -> Result<Vec<String>, StartupError> {
    let mut names: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for piece in scan(template, |_| false)?.pieces {
        if let Piece::Placeholder { name, .. } = piece {
            if seen.insert(name) {
                names.push(name.into());
            }
        }
    }
    Ok(names)
}

fn push_reference(out: &mut String, name: &str, quoting: Quoting) {
    match quoting {
        Quoting::Unquoted | Quoting::Double => {
            out.push_str("${");
            out.push_str(name);
            out.push('}');
        }
        // Close the author's quote, expand in double quotes, reopen.
        Quoting::Single => {
            out.push_str("'\"${");
            out.push_str(name);
            out.push_str("}\"'");
        }
        Quoting::AnsiC => {
            out.push_str("'\"${");
            out.push_str(name);
            out.push_str("}\"$'");
        }
    }
}

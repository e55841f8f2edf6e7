//! The egg engine alone: validate values and render the startup of an egg file.
//!
//! ```text
//! egg_tool <egg file> [NAME=value ...]
//! ```
//!
//! Imports the egg (any Pterodactyl or Pelican format, JSON or YAML), checks every variable's
//! default and every given value against the variable's rules, then renders the default
//! startup command with the values (a given value, else the default) and prints the egg's
//! name, its variables, the `display` line (values pasted in, for people) and the `command`
//! line (values referenced from the environment, for `/bin/sh -c`).
//!
//! Exit status: 0 on success; 2 when the egg or a value is refused (one line on stderr naming
//! the variable and the rule); 64 on a usage error.

use nexus_core::model::{Egg, EggVariable};
use nexus_eggs::import::import_egg;
use nexus_eggs::rules::{RuleSet, parse_rules, validate};
use nexus_eggs::startup::{ServerFacts, render_startup};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: egg_tool <egg file> [NAME=value ...]";

/// `EX_USAGE` of `sysexits.h`.
const EXIT_USAGE: u8 = 64;

/// The egg or a value was refused.
const EXIT_REFUSED: u8 = 2;

/// Why the tool stops.
enum Failure {
    /// The command line is wrong; the message says how.
    Usage(String),
    /// The egg or a value is refused.
    Refused(String),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("egg_tool: {message}");
            eprintln!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Refused(message)) => {
            eprintln!("egg_tool: {message}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// Does the work; returns what to print on success.
fn run(args: Vec<OsString>) -> Result<String, Failure> {
    let mut args = args.into_iter();
    let path = PathBuf::from(args.next().ok_or_else(|| Failure::Usage("missing the egg file".into()))?);
    let given = parse_assignments(args)?;

    let bytes = std::fs::read(&path).map_err(|e| Failure::Refused(format!("cannot read `{}`: {e}", path.display())))?;
    let egg = import_egg(&bytes).map_err(|e| Failure::Refused(format!("cannot import `{}`: {e}", path.display())))?;

    if let Some(unknown) = given.keys().find(|name| egg.variable(name).is_none()) {
        return Err(Failure::Refused(format!(
            "{unknown} is not a variable of egg `{}` (variables: {})",
            egg.name,
            variable_names(&egg)
        )));
    }

    let mut checked: Vec<(&EggVariable, RuleSet, &str)> = Vec::with_capacity(egg.variables.len());
    for variable in &egg.variables {
        let rules = parse_rules(&variable.rules)
            .map_err(|e| Failure::Refused(format!("{}: the egg's rules do not parse: {e}", variable.env_variable)))?;
        if let Some(value) = given.get(variable.env_variable.as_str()) {
            check(variable, &rules, value, "value")?;
        }
        check(variable, &rules, &variable.default_value, "default value")?;
        let value = given.get(variable.env_variable.as_str()).map_or(variable.default_value.as_str(), String::as_str);
        checked.push((variable, rules, value));
    }

    let template =
        egg.default_startup().ok_or_else(|| Failure::Refused(format!("egg `{}` has no startup command", egg.name)))?;
    let facts = ServerFacts {
        memory_mib: 1024,
        ip: "0.0.0.0".into(),
        port: 25_565,
        uuid: "00000000-0000-4000-8000-000000000000".into(),
        timezone: None,
        location: None,
        allocation_limit: None,
    };
    let values = checked.iter().map(|(variable, _, value)| (variable.env_variable.as_str(), *value));
    let rendered = render_startup(template, values, &facts)
        .map_err(|e| Failure::Refused(format!("cannot render the startup command: {e}")))?;

    let mut report = format!("egg: {}\nvariables:\n", egg.name);
    for (variable, rules, value) in &checked {
        report.push_str(&format!("  {}={value:?} (rules: {rules})\n", variable.env_variable));
    }
    report.push_str(&format!("display: {}\ncommand: {}\n", rendered.display, rendered.command));
    Ok(report)
}

/// `NAME=value` arguments by name.
fn parse_assignments(args: impl Iterator<Item = OsString>) -> Result<BTreeMap<String, String>, Failure> {
    let mut given = BTreeMap::new();
    for arg in args {
        let arg = arg.into_string().map_err(|arg| Failure::Usage(format!("argument {arg:?} is not valid UTF-8")))?;
        let Some((name, value)) = arg.split_once('=') else {
            return Err(Failure::Usage(format!("argument `{arg}` is not NAME=value")));
        };
        if name.is_empty() {
            return Err(Failure::Usage(format!("argument `{arg}` has no variable name")));
        }
        if given.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(Failure::Usage(format!("{name} is given more than once")));
        }
    }
    Ok(given)
}

/// Checks one value of `variable`; `what` says which (`value`, `default value`).
fn check(variable: &EggVariable, rules: &RuleSet, value: &str, what: &str) -> Result<(), Failure> {
    validate(variable, rules, Some(value)).map_err(|e| {
        Failure::Refused(format!(
            "{} {what} {value:?} fails rule `{}`: {} {}",
            e.env_variable, e.rule, e.name, e.reason
        ))
    })
}

/// The egg's variable names, comma-separated, or `none`.
fn variable_names(egg: &Egg) -> String {
    if egg.variables.is_empty() {
        return "none".into();
    }
    egg.variables.iter().map(|v| v.env_variable.as_str()).collect::<Vec<_>>().join(", ")
}

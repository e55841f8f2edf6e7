//! The egg engine alone: validate values and render the startup of an egg file.
//!
//! ```text
//! egg_tool <egg file> [NAME=value ...]
//! ```
//!
//! Imports the egg (any Pterodactyl or Pelican format, JSON or YAML), builds the server spec
//! a panel would send a node (`nexus_eggs::server_spec`: every given value, else the default,
//! checked against the variable's rules), renders its startup as the node will and prints the
//! egg's name, its variables, the `display` line (values pasted in, for people) and the
//! `command` line (values referenced from the environment, for `/bin/sh -c`).
//!
//! Exit status: 0 on success; 2 when the egg or a value is refused (one line on stderr naming
//! the variable and the rule); 64 on a usage error.

use nexus_core::ids::ServerId;
use nexus_core::model::Egg;
use nexus_core::runtime::PortBinding;
use nexus_eggs::import::import_egg;
use nexus_eggs::spec::{Editor, ServerSettings, SpecBuildError, render_spec_startup, server_spec};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
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

    // What a panel does with a user's values, run by an operator: every variable may be set.
    let mut settings = ServerSettings::new(ServerId::new());
    settings.editor = Editor::Admin;
    settings.limits.memory_mb = 1024;
    let port = PortBinding { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: 25_565 };
    let spec = server_spec(&egg, &settings, &[port], &given).map_err(|e| match e {
        SpecBuildError::UnknownVariable { name } => Failure::Refused(format!(
            "{name} is not a variable of egg `{}` (variables: {})",
            egg.name,
            variable_names(&egg)
        )),
        SpecBuildError::Invalid(e) => {
            let value = given.get(&e.env_variable).map_or("(default)".to_owned(), |v| format!("{v:?}"));
            Failure::Refused(format!(
                "{} value {value} fails rule `{}`: {} {}",
                e.env_variable, e.rule, e.name, e.reason
            ))
        }
        other => Failure::Refused(other.to_string()),
    })?;
    let rendered = render_spec_startup(&spec, None)
        .map_err(|e| Failure::Refused(format!("cannot render the startup command: {e}")))?;

    let mut report = format!("egg: {}\nvariables:\n", egg.name);
    for variable in &egg.variables {
        let value = &spec.environment[&variable.env_variable];
        report.push_str(&format!("  {}={value:?} (rules: {})\n", variable.env_variable, variable.rules.join("|")));
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

/// The egg's variable names, comma-separated, or `none`.
fn variable_names(egg: &Egg) -> String {
    if egg.variables.is_empty() {
        return "none".into();
    }
    egg.variables.iter().map(|v| v.env_variable.as_str()).collect::<Vec<_>>().join(", ")
}

//! `nexus-panel`: the reference panel.
//!
//! * `nexus-panel up`: the panel with a local node in one process, on SQLite under
//!   `--data-dir`; the first start creates an admin and prints its password once.
//! * `nexus-panel serve --config FILE`: the panel for production (PostgreSQL, MySQL/MariaDB
//!   or SQLite), nodes elsewhere.
//! * `nexus-panel keys create`: a new API key for an account, printed alone on stdout.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Nexus panel: game servers on your own machines.
#[derive(Debug, Parser)]
#[command(name = "nexus-panel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the panel with a local node on this machine (Docker, else Podman) and the embedded
    /// SQLite store: everything in one process, for a first look or a single machine.
    Up(cli::up::UpArgs),
    /// Run the panel for production from a configuration file (PostgreSQL, MySQL/MariaDB or
    /// SQLite; nodes are `nexus-wings` daemons elsewhere).
    Serve(cli::serve::ServeArgs),
    /// API keys.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Template layers.
    #[command(subcommand)]
    Templates(cli::templates::TemplatesCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => cli::up::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Keys(command) => cli::keys::run(command),
        Command::Templates(command) => cli::templates::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexus-panel: {e}");
            ExitCode::FAILURE
        }
    }
}

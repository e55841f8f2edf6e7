//! `nexus-wings`: the reference node daemon.

use clap::Parser;
use nexus_wings::config::{Config, DEFAULT_CONFIG};
use std::path::PathBuf;
use std::process::ExitCode;

/// Nexus node daemon: runs game servers in containers for the Nexus panel.
#[derive(Debug, Parser)]
#[command(name = "nexus-wings", version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "PATH", default_value = "/etc/nexus/wings.toml")]
    config: PathBuf,
    /// Print the default configuration, with every field documented, and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("nexus-wings: {e}");
            return ExitCode::from(2);
        }
    };
    match nexus_wings::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexus-wings: {e}");
            tracing::error!(error = %e, "nexus-wings failed");
            ExitCode::FAILURE
        }
    }
}

//! `nexus-panel keys create`: a new API key printed alone on stdout, for scripts and billing
//! systems.

use super::{CliError, DataDir, fail, open_control};
use clap::{Args, Subcommand, ValueEnum};
use nexus_core::model::ApiKeyScope;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an API key for an account and print it (only the key, on stdout).
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The panel's data directory (as given to `up`).
    #[arg(long, default_value = "./nexus-data")]
    data_dir: PathBuf,
    /// The configuration file of a `serve` panel (its database is used instead of a data
    /// directory's).
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// The account's e-mail address or user name.
    #[arg(long)]
    user: String,
    /// `application`: admin-wide (admins only); `client`: the account's own servers.
    #[arg(long, value_enum)]
    kind: Kind,
    /// A note shown next to the key.
    #[arg(long, default_value = "")]
    memo: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Application,
    Client,
}

pub(crate) fn run(command: KeysCommand) -> Result<(), CliError> {
    let KeysCommand::Create(args) = command;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail("start the async runtime"))?;
    runtime.block_on(async move {
        let control = match &args.config {
            Some(path) => super::serve::ServeConfig::load(path)?.open().await?.0,
            None => {
                let data = DataDir::new(&args.data_dir);
                if !data.database().exists() {
                    return Err(CliError(format!(
                        "{} has no panel database; run `nexus-panel up --data-dir {}` first, or give --config",
                        args.data_dir.display(),
                        args.data_dir.display()
                    )));
                }
                open_control(&data, Duration::from_secs(10)).await?.0
            }
        };
        let user = control
            .store()
            .find_user_by_login(args.user.trim())
            .await
            .map_err(fail("look up the account"))?
            .ok_or_else(|| CliError(format!("no account `{}`", args.user.trim())))?;
        let scope = match args.kind {
            Kind::Application => ApiKeyScope::Application,
            Kind::Client => ApiKeyScope::Client,
        };
        let (_, key) =
            control.create_api_key(user.id, scope, &args.memo, None).await.map_err(fail("create the key"))?;
        println!("{key}");
        Ok(())
    })
}

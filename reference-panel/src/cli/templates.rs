//! `nexus-panel templates publish name@version PATH`: a template layer published from a
//! directory or a tar archive (plain, gzip or zstd) into the panel's template store, as the
//! API's `POST /api/v1/templates/{layer}` does with an uploaded archive.

use super::{CliError, DataDir, fail};
use clap::{Args, Subcommand};
use nexus_core::template::LayerRef;
use nexus_templates::{ObjectStoreConfig, ObjectStoreTemplates};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum TemplatesCommand {
    /// Publish a layer from a directory or a tar archive (`.wh.<name>` files are whiteouts,
    /// a root `.nexus-render` lists the files to render); versions are immutable.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The layer, `name@version`.
    layer: LayerRef,
    /// A directory, or a tar / tar.gz / tar.zst archive.
    path: PathBuf,
    /// The panel's data directory (as given to `up`): its `templates` store.
    #[arg(long, default_value = "./nexus-data")]
    data_dir: PathBuf,
    /// The configuration file of a `serve` panel: its `[templates]` store.
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
}

pub(crate) fn run(command: TemplatesCommand) -> Result<(), CliError> {
    let TemplatesCommand::Publish(args) = command;
    let store = match &args.config {
        Some(path) => super::serve::ServeConfig::load(path)?
            .templates()
            .ok_or_else(|| CliError(format!("{}: no [templates] store configured", path.display())))?,
        None => {
            let root = std::fs::canonicalize(&args.data_dir)
                .map_err(fail(format!("{} (run `nexus-panel up` first)", args.data_dir.display())))?;
            ObjectStoreConfig::local(&DataDir::new(&root).templates())
        }
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail("start the async runtime"))?;
    runtime.block_on(async move {
        let templates = ObjectStoreTemplates::open(&store).map_err(fail("open the template store"))?;
        let what = format!("publish {} from {}", args.layer, args.path.display());
        let manifest = if args.path.is_dir() {
            templates.publish_dir(&args.layer, &args.path).await.map_err(fail(&what))?
        } else {
            let file = std::fs::File::open(&args.path).map_err(fail(&what))?;
            templates.publish_archive(&args.layer, file).await.map_err(fail(&what))?
        };
        println!("published {} ({} entries)", manifest.layer, manifest.entries.len());
        Ok(())
    })
}

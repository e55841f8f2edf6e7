//! The commands of the `nexus-panel` binary.

pub(crate) mod keys;
pub(crate) mod up;

use nexus_control::{ControlConfig, ControlPlane, NodeSecret};
use nexus_core::store::Store;
use nexus_panel::node_client::HttpNodeTransport;
use nexus_store_sqlite::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a command failed, in words for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CliError(pub(crate) String);

/// Turns any displayable error into a [`CliError`] saying what was being done.
pub(crate) fn fail<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> CliError {
    move |e| CliError(format!("{what}: {e}"))
}

/// The files of a data directory.
pub(crate) struct DataDir {
    pub(crate) root: PathBuf,
}

impl DataDir {
    pub(crate) fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }

    pub(crate) fn database(&self) -> PathBuf {
        self.root.join("panel.db")
    }

    pub(crate) fn node_secret(&self) -> PathBuf {
        self.root.join("node-secret")
    }

    pub(crate) fn node(&self) -> PathBuf {
        self.root.join("node")
    }
}

/// The panel's store and control plane over an existing data directory.
pub(crate) async fn open_control(
    data: &DataDir,
    heartbeat: Duration,
) -> Result<(Arc<ControlPlane>, Arc<HttpNodeTransport>), CliError> {
    let database = data.database();
    let url = database.to_str().ok_or_else(|| CliError(format!("{} is not UTF-8", database.display())))?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::connect(url).await.map_err(fail(format!("open the store {}", database.display())))?);
    let secret = std::fs::read(data.node_secret()).map_err(fail(format!("read {}", data.node_secret().display())))?;
    let mut config = ControlConfig::default();
    config.node_secret = Some(NodeSecret::new(secret).map_err(fail("the node secret"))?);
    config.node_scheme = "http";
    config.heartbeat_interval = heartbeat;
    let nodes = Arc::new(HttpNodeTransport::new(config.node_timeout).map_err(fail("the node client"))?);
    let control = ControlPlane::new(store, nodes.clone(), config).await.map_err(fail("start the control plane"))?;
    Ok((Arc::new(control), nodes))
}

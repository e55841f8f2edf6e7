//! The commands of the `nexus-panel` binary.

pub(crate) mod keys;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod templates;
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

    /// The template store of `up` (the panel publishes there, the local node reads there).
    pub(crate) fn templates(&self) -> PathBuf {
        self.root.join("templates")
    }
}

/// The store a database URL names: `postgres://`/`postgresql://`, `mysql://`, or a SQLite
/// path (optionally `sqlite://path`).
pub(crate) async fn open_store(url: &str) -> Result<Arc<dyn Store>, CliError> {
    let shown = url.split_once('@').map_or_else(|| url.to_owned(), |(_, host)| format!("…@{host}"));
    let what = format!("open the database {shown}");
    Ok(if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(nexus_store_postgres::PostgresStore::connect(url).await.map_err(fail(what))?)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        Arc::new(nexus_store_mysql::MysqlStore::connect(&url).await.map_err(fail(what))?)
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Arc::new(SqliteStore::connect(path).await.map_err(fail(what))?)
    })
}

/// The panel's node secret from `path`: its bytes, without trailing whitespace (an editor's
/// newline), never re-encoded, so `up` and `serve` derive the same node tokens from one file.
pub(crate) fn read_node_secret(path: &Path) -> Result<NodeSecret, CliError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut secret = std::fs::read(path).map_err(fail(format!("read {}", path.display())))?;
    while secret.last().is_some_and(u8::is_ascii_whitespace) {
        secret.pop();
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "the node secret is readable by others (chmod 600)");
    }
    NodeSecret::new(secret).map_err(fail(path.display()))
}

/// The panel's store and control plane over an existing data directory.
pub(crate) async fn open_control(
    data: &DataDir,
    heartbeat: Duration,
) -> Result<(Arc<ControlPlane>, Arc<HttpNodeTransport>), CliError> {
    let database = data.database();
    let url = database.to_str().ok_or_else(|| CliError(format!("{} is not UTF-8", database.display())))?;
    let store = open_store(url).await?;
    let mut config = ControlConfig::default();
    config.node_secret = Some(read_node_secret(&data.node_secret())?);
    config.node_scheme = "http";
    config.heartbeat_interval = heartbeat;
    let nodes = Arc::new(HttpNodeTransport::new(config.node_timeout).map_err(fail("the node client"))?);
    let control = ControlPlane::new(store, nodes.clone(), config).await.map_err(fail("start the control plane"))?;
    Ok((Arc::new(control), nodes))
}

/// The admin account made on first start.
pub(crate) const ADMIN_USERNAME: &str = "admin";
/// Its e-mail address.
pub(crate) const ADMIN_EMAIL: &str = "admin@nexus.local";

/// The admin account on first start (no account at all yet); its password, shown once.
pub(crate) async fn first_admin(control: &ControlPlane) -> Result<Option<String>, CliError> {
    use nexus_control::accounts::{NewUser, random_alphanumeric};
    use nexus_core::store::Page;
    if !control.store().list_users(Page::first(1)).await.map_err(fail("read the accounts"))?.is_empty() {
        return Ok(None);
    }
    let password = random_alphanumeric(20);
    let admin = NewUser::new(ADMIN_USERNAME, ADMIN_EMAIL, password.clone(), nexus_core::model::Role::Admin);
    match control.create_user(admin).await {
        Ok(_) => Ok(Some(password)),
        // Another panel process on the same database made it first.
        Err(nexus_control::ControlError::Store(nexus_core::store::StoreError::Duplicate { .. })) => Ok(None),
        Err(e) => Err(fail("create the admin account")(e)),
    }
}

/// Prints the first admin's credentials (once, on the start that made them).
pub(crate) fn print_first_admin(password: Option<&str>) {
    if let Some(password) = password {
        println!("First start: created the admin account (shown once; change it after logging in)");
        println!("  e-mail:   {ADMIN_EMAIL}");
        println!("  password: {password}");
    }
}

//! Containers as engines report them: what a runtime reads back, what `list_managed` offers,
//! and where the engine's socket is.

use nexus_core::ids::ServerId;
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{ContainerId, ExitStatus, ManagedContainer, RuntimeError, SERVER_LABEL};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the engine recorded for one container (a runtime's `inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDetails {
    /// Full container id.
    pub id: ContainerId,
    /// Name (without Docker's leading `/`).
    pub name: String,
    /// Image, as the spec gave it.
    pub image: String,
    /// Every label.
    pub labels: BTreeMap<String, String>,
    /// Limits as applied by the engine (`disk_mb` is always 0: not an engine limit). A limit
    /// the engine discarded (block-IO weight on kernels without it) reads back as 0.
    pub limits: ServerLimits,
    /// Whether an init process runs as PID 1.
    pub init: bool,
    /// Whether the process runs.
    pub running: bool,
    /// Host PID of the container's PID 1 while it runs.
    pub pid: Option<i64>,
    /// The last exit, when the container ran and is not running now.
    pub exit: Option<ExitStatus>,
}

/// A listed container carrying the managed label, as [`ManagedContainer`]; `None` (with a
/// warning) when its server label is missing or not a server id: labelled managed by hand or
/// by a broken tool, so not adoptable, but worth a look.
pub fn managed_container(
    id: String,
    server_label: Option<&str>,
    image: String,
    running: bool,
) -> Option<ManagedContainer> {
    match server_label.and_then(|s| s.parse::<ServerId>().ok()) {
        Some(server) => Some(ManagedContainer { id: ContainerId(id), server, image, running }),
        None => {
            tracing::warn!(container = %id, "managed container without a valid {SERVER_LABEL} label; ignored");
            None
        }
    }
}

/// Logs the warnings an engine returned for creating a container of `server` (limits it
/// discarded, for instance).
pub fn log_create_warnings(server: ServerId, warnings: &[String]) {
    for warning in warnings {
        tracing::warn!(%server, %warning, "engine warning creating container");
    }
}

/// The engine socket named by environment variable `var` (`unix://` only), or `default` when
/// it is unset or empty. Nexus runtimes talk to the local engine only.
pub fn socket_from_env(var: &str, default: &str) -> Result<PathBuf, RuntimeError> {
    match std::env::var(var) {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(PathBuf::from).ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "{var}={host} is not a unix:// socket; Nexus talks to the local engine only"
            ))
        }),
        _ => Ok(PathBuf::from(default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_containers_need_a_server_label() {
        let server = ServerId::new();
        let found = managed_container("c1".into(), Some(&server.to_string()), "img".into(), true).expect("adoptable");
        assert_eq!((found.id.0.as_str(), found.server, found.running), ("c1", server, true));
        assert!(managed_container("c2".into(), Some("not-a-uuid"), "img".into(), false).is_none());
        assert!(managed_container("c3".into(), None, "img".into(), false).is_none());
    }

    #[test]
    fn sockets_come_from_the_environment_or_the_default() {
        let var = "NEXUS_TEST_SOCKET_FROM_ENV_UNSET";
        assert_eq!(socket_from_env(var, "/run/x.sock").expect("default"), PathBuf::from("/run/x.sock"));
    }
}

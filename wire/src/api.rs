//! Panel → node: the node API's paths and bodies.
//!
//! Every request carries `Authorization: Bearer <node token>` (browsers use a
//! [browser token](crate::token) on the console and file routes). Bodies are JSON.
//!
//! | method | path ([`paths`]) | body → answer |
//! |---|---|---|
//! | GET | `/api/system` | → [`SystemInfo`] |
//! | GET | `/api/servers` | → `[`[`ServerStatus`]`]` |
//! | POST | `/api/servers[?install=true]` ([`CreateServerQuery`]) | [`ServerSpec`] → `201` `{"server":"<uuid>"}` (also when it replaces the spec of an existing server); a spec that can never run: `422 invalid_spec` with `field` |
//! | GET | `/api/servers/:id` | → [`ServerDetails`] |
//! | DELETE | `/api/servers/:id` | → `204` |
//! | POST | `/api/servers/:id/power[?wait=true]` ([`PowerQuery`]) | [`PowerRequest`] → `202` (queued; failures become console notices) or, with `wait`, `204` once done |
//! | POST | `/api/servers/:id/install` | → `204` once the install ran |
//! | POST | `/api/servers/:id/commands` | [`CommandRequest`] → `204` |
//! | GET | `/api/servers/:id/install-log` | → `text/plain` |
//! | GET | `/api/servers/:id/console` | WebSocket: server → client [`ConsoleEvent`]s as JSON text, client → server [`ConsoleClientMessage`] |
//! | GET/PUT/DELETE | `/api/servers/:id/files/*path` | a directory listing, a file's bytes; write; delete |
//! | POST | `/api/servers/:id/files/{compress,decompress,rename,copy,mkdir,chmod}` | JSON bodies (see the daemon's files API) |
//!
//! Errors: [`ErrorBody`](crate::error::ErrorBody).
//!
//! [`ServerSpec`]: nexus_core::transport::ServerSpec
//! [`ServerStatus`]: nexus_core::transport::ServerStatus
//! [`ConsoleEvent`]: nexus_core::console::ConsoleEvent

use nexus_core::ids::ServerId;
use nexus_core::lifecycle::ServerState;
use nexus_core::transport::{PowerAction, ServerSpec};
use serde::{Deserialize, Serialize};

/// Paths of the node API, for clients.
pub mod paths {
    use nexus_core::ids::ServerId;

    /// `GET`: [`SystemInfo`](super::SystemInfo).
    pub const SYSTEM: &str = "/api/system";
    /// `GET`: every server; `POST`: create one.
    pub const SERVERS: &str = "/api/servers";

    /// One server.
    pub fn server(id: ServerId) -> String {
        format!("{SERVERS}/{id}")
    }
    /// Its power endpoint.
    pub fn power(id: ServerId) -> String {
        format!("{SERVERS}/{id}/power")
    }
    /// Its install endpoint.
    pub fn install(id: ServerId) -> String {
        format!("{SERVERS}/{id}/install")
    }
    /// Its last install's output.
    pub fn install_log(id: ServerId) -> String {
        format!("{SERVERS}/{id}/install-log")
    }
    /// Its console commands.
    pub fn commands(id: ServerId) -> String {
        format!("{SERVERS}/{id}/commands")
    }
    /// Its console WebSocket.
    pub fn console(id: ServerId) -> String {
        format!("{SERVERS}/{id}/console")
    }
    /// A file or directory of it, `path` relative to its root (percent-encode it when it is
    /// not plain ASCII).
    pub fn file(id: ServerId, path: &str) -> String {
        format!("{SERVERS}/{id}/files/{}", path.trim_start_matches('/'))
    }
    /// Its backups: `POST` starts one.
    pub fn backups(id: ServerId) -> String {
        format!("{SERVERS}/{id}/backups")
    }
    /// One backup: `GET` downloads it, `DELETE` removes it.
    pub fn backup(id: ServerId, backup: nexus_core::ids::BackupId) -> String {
        format!("{SERVERS}/{id}/backups/{backup}")
    }
    /// Restoring one backup.
    pub fn backup_restore(id: ServerId, backup: nexus_core::ids::BackupId) -> String {
        format!("{SERVERS}/{id}/backups/{backup}/restore")
    }
}

/// `POST /api/servers` query: `?install=true` runs the egg's install script after creating.
/// Unknown parameters are refused, so a typo never silently skips the install.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateServerQuery {
    /// Run the install script.
    #[serde(default)]
    pub install: bool,
}

/// `POST /api/servers/:id/power` query: `?wait=true` answers once the action is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerQuery {
    /// Wait for the action.
    #[serde(default)]
    pub wait: bool,
}

/// `POST /api/servers/:id/power` body: `{"action":"start"}` (`stop`, `restart`, `kill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    /// What to do.
    pub action: PowerAction,
}

/// `POST /api/servers/:id/commands` body: `{"command":"say hi"}` (`"line"` is accepted too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The line, without a newline; at most
    /// [`MAX_COMMAND_BYTES`](nexus_core::transport::MAX_COMMAND_BYTES), no control characters.
    #[serde(alias = "line")]
    pub command: String,
}

/// `GET /api/servers/:id` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerDetails {
    /// Which server.
    pub server: ServerId,
    /// Its state (none while it is being created).
    pub state: Option<ServerState>,
    /// Disk usage as last measured, bytes.
    pub disk_bytes: u64,
    /// The latest resource sample while the server is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<nexus_core::runtime::ResourceStats>,
    /// What the node runs.
    pub spec: ServerSpec,
}

/// `GET /api/system` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Daemon version.
    pub version: String,
    /// Container runtime (`docker`, `podman`).
    pub runtime: String,
    /// CPUs available to the daemon.
    pub cpu_count: usize,
    /// Total memory of the host, bytes.
    pub memory_total_bytes: u64,
    /// Memory available for new allocations, bytes.
    pub memory_available_bytes: u64,
    /// Servers on this node.
    pub servers: usize,
    /// Resident memory of the daemon, bytes.
    pub daemon_rss_bytes: u64,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Kernel (`uname -r`).
    pub kernel: String,
    /// CPU architecture.
    pub arch: String,
}

/// What a console client sends on the WebSocket: `{"type":"command","line":"say hi"}` (needs
/// `console_write`). A refused command answers `{"type":"error","error":{..}}` (an
/// [`ErrorDetail`](crate::error::ErrorDetail)) and the socket stays open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsoleClientMessage {
    /// A console command.
    Command {
        /// The line, without newline.
        line: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_documented_shapes() {
        let power: PowerRequest = serde_json::from_str(r#"{"action":"restart"}"#).unwrap();
        assert_eq!(power.action, PowerAction::Restart);
        let command: CommandRequest = serde_json::from_str(r#"{"line":"say hi"}"#).unwrap();
        assert_eq!(serde_json::to_string(&command).unwrap(), r#"{"command":"say hi"}"#);
        assert!(serde_json::from_str::<PowerRequest>(r#"{"action":"start","force":true}"#).is_err());
        let message: ConsoleClientMessage = serde_json::from_str(r#"{"type":"command","line":"list"}"#).unwrap();
        assert_eq!(message, ConsoleClientMessage::Command { line: "list".into() });
        let id = ServerId::new();
        assert_eq!(paths::file(id, "/config/a.txt"), format!("/api/servers/{id}/files/config/a.txt"));
    }
}

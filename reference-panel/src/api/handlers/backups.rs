//! A server's backups: records in the store ([`nexus_control::backups`]), archives on its
//! node. Creating and restoring answer `202` at once; the node reports the outcome, which
//! the list then shows (`state`: `pending`, `succeeded`, `failed`) and the activity log
//! records. Downloads stream from the node through the panel.

use crate::api::answer::{Answer, Download, NoContent, accepted, no_content, ok};
use crate::api::{ApiError, Call, PanelState};
use crate::node_proxy::{Deadline, ProxyBody};
use nexus_control::backups::NewBackup;
use nexus_core::ids::BackupId;
use nexus_core::model::Backup;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use warp::http::Method;

/// `POST /servers/{id}/backups`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBackup {
    /// Display name (`Backup at <time>` when absent).
    #[serde(default)]
    name: Option<String>,
    /// Gitignore-syntax patterns left out, besides the server's `.pteroignore`.
    #[serde(default)]
    ignored: Vec<String>,
    /// Lock it against deletion from the start.
    #[serde(default)]
    locked: bool,
}

/// `POST /servers/{id}/backups/{backup}/lock`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockBackup {
    /// Lock (`true`) or unlock (`false`); toggles when absent.
    #[serde(default)]
    locked: Option<bool>,
}

/// `POST /servers/{id}/backups/{backup}/restore`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBackup {
    /// Delete every file first; otherwise files the backup lacks are kept.
    #[serde(default)]
    wipe: bool,
}

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<Backup>>, ApiError> {
    ok(state.control.backups(call.server()?.id).await?)
}

pub(crate) async fn create(state: Arc<PanelState>, call: Call, body: CreateBackup) -> Result<Answer<Backup>, ApiError> {
    let server = super::files::usable(&call)?.id;
    // Locking is `backup.delete`'s right (as in Pterodactyl): without it a lock could fill
    // the limit with backups nobody may remove.
    let locked = body.locked && call.access()?.allows("backup.delete");
    let input = NewBackup { name: body.name, ignored: body.ignored, locked };
    accepted(state.control.create_backup(server, input, false).await?)
}

pub(crate) async fn show(state: Arc<PanelState>, call: Call) -> Result<Answer<Backup>, ApiError> {
    let id: BackupId = call.param(1)?;
    ok(state.control.backup(call.server()?.id, id).await?)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    let id: BackupId = call.param(1)?;
    state.control.delete_backup(call.server()?.id, id).await?;
    no_content()
}

pub(crate) async fn lock(state: Arc<PanelState>, call: Call, body: LockBackup) -> Result<Answer<Backup>, ApiError> {
    let id: BackupId = call.param(1)?;
    ok(state.control.lock_backup(call.server()?.id, id, body.locked).await?)
}

pub(crate) async fn restore(
    state: Arc<PanelState>,
    call: Call,
    body: RestoreBackup,
) -> Result<Answer<Backup>, ApiError> {
    let server = super::files::usable(&call)?.id;
    let id: BackupId = call.param(1)?;
    accepted(state.control.restore_backup(server, id, body.wipe).await?)
}

/// The archive (`tar.zst`), streamed from the node.
pub(crate) async fn download(state: Arc<PanelState>, call: Call) -> Result<Answer<Download>, ApiError> {
    let server = super::files::usable(&call)?.id;
    let id: BackupId = call.param(1)?;
    let (backup, server) = state.control.downloadable_backup(server, id).await?;
    let path = nexus_wire::api::paths::backup(server.id, backup.id);
    let response = super::files::nodes(&state)?
        .forward(server.node, Method::GET, &path, ProxyBody::Empty, Deadline::Transfer)
        .await?;
    Ok(super::files::attachment(response, &archive_name(&backup), nexus_wire::backups::ARCHIVE_CONTENT_TYPE))
}

/// `<name>.tar.zst` with the name's path separators and control characters replaced.
pub(crate) fn archive_name(backup: &Backup) -> String {
    let name: String =
        backup.name.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    format!("{name}.tar.zst")
}

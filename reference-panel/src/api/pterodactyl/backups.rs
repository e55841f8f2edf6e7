//! `/api/client/servers/{server}/backups`, in Pterodactyl's shapes over the control plane's
//! backups ([`nexus_control::backups`]). Backups are named by their UUID, as in Pterodactyl;
//! `checksum` is `sha256:<hex>` (Pterodactyl's Wings reports `sha1:`), and the download link
//! points at the server's node with a short-lived token for that server's backups.

use super::body::Body;
use super::shapes::{Paging, answer, date, item, no_content};
use crate::api::router::Call;
use crate::api::{ApiError, PanelState};
use nexus_control::backups::NewBackup;
use nexus_core::ids::BackupId;
use nexus_core::model::{Backup, BackupState, Permission};
use serde_json::{Value, json};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

type Answered = Result<Response, ApiError>;

fn attributes(backup: &Backup) -> Value {
    json!({
        "uuid": backup.id,
        "is_successful": backup.state == BackupState::Succeeded,
        "is_locked": backup.locked,
        "name": backup.name,
        "ignored_files": backup.ignored,
        "checksum": backup.checksum.as_ref().map(|c| format!("sha256:{c}")),
        "bytes": backup.bytes.unwrap_or(0),
        "created_at": date(backup.created_at),
        "completed_at": backup.completed_at.map(date),
    })
}

fn one(status: StatusCode, backup: &Backup) -> Answered {
    answer(status, &item("backup", attributes(backup)))
}

/// The `{backup}` of the path: a UUID, else no such backup (as route binding answers).
fn backup_id(call: &Call) -> Result<BackupId, ApiError> {
    call.params.get(1).and_then(|p| p.parse().ok()).ok_or_else(|| ApiError::not_found("backup"))
}

pub(super) async fn list(state: Arc<PanelState>, call: Call) -> Answered {
    let backups = state.control.backups(call.server()?.id).await?;
    let kept = backups.iter().filter(|b| b.state != BackupState::Failed).count();
    let path = format!("/api/client/servers/{}/backups", call.params[0]);
    // As Pterodactyl: 20 a page unless asked.
    let mut list =
        Paging::list(Paging::with_default(&call, &state, 20)?, backups, "backup", &path, |rows| async move {
            Ok(rows.iter().map(attributes).collect())
        })
        .await?;
    list["meta"]["backup_count"] = json!(kept);
    answer(StatusCode::OK, &list)
}

pub(super) async fn create(state: Arc<PanelState>, call: Call) -> Answered {
    let server = crate::api::handlers::files::usable(&call)?.id;
    let body = Body::of(&call)?;
    // Pterodactyl takes the patterns as one text, a pattern a line.
    let ignored = body.string("ignored")?.unwrap_or_default().lines().map(str::to_owned).collect();
    // As Pterodactyl: `is_locked` counts only for callers who may delete backups.
    let locked = body.boolean("is_locked")?.unwrap_or(false) && call.access()?.allows("backup.delete");
    let input = NewBackup { name: body.string("name")?, ignored, locked };
    one(StatusCode::OK, &state.control.create_backup(server, input, false).await?)
}

pub(super) async fn show(state: Arc<PanelState>, call: Call) -> Answered {
    one(StatusCode::OK, &state.control.backup(call.server()?.id, backup_id(&call)?).await?)
}

pub(super) async fn delete(state: Arc<PanelState>, call: Call) -> Answered {
    state.control.delete_backup(call.server()?.id, backup_id(&call)?).await?;
    no_content()
}

pub(super) async fn lock(state: Arc<PanelState>, call: Call) -> Answered {
    one(StatusCode::OK, &state.control.lock_backup(call.server()?.id, backup_id(&call)?, None).await?)
}

pub(super) async fn restore(state: Arc<PanelState>, call: Call) -> Answered {
    let server = crate::api::handlers::files::usable(&call)?.id;
    let wipe = Body::of(&call)?.boolean("truncate")?.unwrap_or(false);
    state.control.restore_backup(server, backup_id(&call)?, wipe).await?;
    no_content()
}

/// A link the browser downloads the archive from, straight from the node, with a
/// short-lived token for this server's backups.
pub(super) async fn download(state: Arc<PanelState>, call: Call) -> Answered {
    let server = crate::api::handlers::files::usable(&call)?.id;
    let (backup, server) = state.control.downloadable_backup(server, backup_id(&call)?).await?;
    let path = nexus_wire::api::paths::backup(server.id, backup.id);
    super::client::signed_url(&state, &server, &path, Permission::Backup).await
}

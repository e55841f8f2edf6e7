//! Backup routes over [`Backups`](crate::backup::Backups), with the bodies of
//! [`nexus_wire::backups`].
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /api/servers/:id/backups` (node) | [`CreateBackupRequest`] `{"backup":"<uuid>","ignored":["*.log"]}` | `202` [`BackupAccepted`]; a backup or restore of the server already under way: `409 busy`; installing: `409 busy`; an ignore pattern that does not parse: `400` naming it |
//! | `GET /api/servers/:id/backups/:backup` (node, or browser with `backup`) | | `200` the archive, `application/zstd`, `content-length`, `content-disposition: attachment; filename="<backup>.tar.zst"`, streamed; `404 unknown_backup` |
//! | `POST /api/servers/:id/backups/:backup/restore` (node) | [`RestoreBackupRequest`] `{"wipe":true,"checksum":"<sha256>"}` | `202` [`BackupAccepted`]; the server not stopped: `409 busy`; a bad checksum: `400` |
//! | `DELETE /api/servers/:id/backups/:backup` (node) | | `204`, also when there was nothing to delete; `409 busy` while that backup is being created |
//!
//! A `:backup` segment that is not a UUID is `400 invalid_id` (`"field":"backup"`). The
//! outcome of a create or a restore is reported to the panel as a
//! [`NodeMessage::Backup`](nexus_core::transport::NodeMessage::Backup).

use super::request::{json_body, server_id};
use super::{ApiError, ApiState, caller, json, no_content, require, respond, with_state};
use crate::auth::Caller;
use bytes::{Bytes, BytesMut};
use futures::SinkExt as _;
use nexus_core::ids::{BackupId, ServerId};
use nexus_core::model::Permission;
use nexus_core::transport::validate::printable;
use nexus_wire::backups::{
    ARCHIVE_CONTENT_TYPE, BackupAccepted, CreateBackupRequest, RestoreBackupRequest, archive_file_name,
};
use std::sync::Arc;
use tokio::io::AsyncReadExt as _;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

/// Bytes read from the store per chunk sent to a downloading client.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// The `:backup` segment; not a UUID is `400 invalid_id`.
fn backup_id() -> BoxedFilter<(BackupId,)> {
    warp::path::param::<String>()
        .and_then(|segment: String| async move {
            segment.parse::<BackupId>().map_err(|_| {
                warp::reject::custom(
                    ApiError::new(400, "invalid_id", format!("`{}` is not a backup id (a UUID)", printable(&segment)))
                        .with_field("backup"),
                )
            })
        })
        .boxed()
}

pub(super) fn routes(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    let node = || caller(Arc::clone(&state), false);
    let st = || with_state(Arc::clone(&state));
    let limit = state.max_json_body;

    let create = server_id()
        .and(warp::path!("backups"))
        .and(warp::post())
        .and(node())
        .and(json_body::<CreateBackupRequest>(limit))
        .and(st())
        .and_then(|id: ServerId, _: Caller, body: CreateBackupRequest, state: Arc<ApiState>| async move {
            respond(create(&state, id, body))
        });

    let download = server_id()
        .and(warp::path("backups"))
        .and(backup_id())
        .and(warp::path::end())
        .and(warp::get())
        .and(caller(Arc::clone(&state), true))
        .and(st())
        .and_then(|id: ServerId, backup: BackupId, caller: Caller, state: Arc<ApiState>| async move {
            respond(download(&state, id, backup, &caller).await)
        });

    let restore = server_id()
        .and(warp::path("backups"))
        .and(backup_id())
        .and(warp::path!("restore"))
        .and(warp::post())
        .and(node())
        .and(json_body::<RestoreBackupRequest>(limit))
        .and(st())
        .and_then(
            |id: ServerId, backup: BackupId, _: Caller, body: RestoreBackupRequest, state: Arc<ApiState>| async move {
                respond(restore(&state, id, backup, body).await)
            },
        );

    let delete = server_id()
        .and(warp::path("backups"))
        .and(backup_id())
        .and(warp::path::end())
        .and(warp::delete())
        .and(node())
        .and(st())
        .and_then(|id: ServerId, backup: BackupId, _: Caller, state: Arc<ApiState>| async move {
            respond(state.backups.delete(id, backup).await.map(|()| no_content()))
        });

    create.or(download).unify().or(restore).unify().or(delete).unify().boxed()
}

fn create(state: &ApiState, id: ServerId, body: CreateBackupRequest) -> Result<Response, ApiError> {
    body.check().map_err(|message| ApiError::bad_request(message).with_field("ignored"))?;
    for (i, pattern) in body.ignored.iter().enumerate() {
        let mut builder = ignore::gitignore::GitignoreBuilder::new(".");
        if let Err(e) = builder.add_line(None, pattern) {
            return Err(ApiError::bad_request(format!("ignore pattern `{}`: {e}", printable(pattern)))
                .with_field(format!("ignored[{i}]")));
        }
    }
    let backup = body.backup;
    state.backups.start_create(id, backup, body.ignored)?;
    Ok(json(&BackupAccepted { server: id, backup }, 202))
}

async fn restore(
    state: &ApiState,
    id: ServerId,
    backup: BackupId,
    body: RestoreBackupRequest,
) -> Result<Response, ApiError> {
    body.check().map_err(|message| ApiError::bad_request(message).with_field("checksum"))?;
    state.backups.start_restore(id, backup, body.checksum, body.wipe).await?;
    Ok(json(&BackupAccepted { server: id, backup }, 202))
}

async fn download(state: &ApiState, id: ServerId, backup: BackupId, caller: &Caller) -> Result<Response, ApiError> {
    require(caller, id, Permission::Backup)?;
    let mut reader = state.backups.store().open(id, backup).await?;
    let size = reader.size();
    // The body is fed by a task through a short queue: the store is read only as fast as
    // the client takes it, and a client that goes away stops the read.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        loop {
            let mut chunk = BytesMut::with_capacity(DOWNLOAD_CHUNK);
            match reader.read_buf(&mut chunk).await {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(chunk.freeze())).await.is_err() {
                        tracing::debug!(server = %id, %backup, "backup download abandoned by the client");
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(server = %id, %backup, error = %e, "backup download failed mid-stream");
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    let mut response = warp::reply::stream(rx).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", warp::http::HeaderValue::from_static(ARCHIVE_CONTENT_TYPE));
    if let Ok(length) = warp::http::HeaderValue::from_str(&size.to_string()) {
        headers.insert("content-length", length);
    }
    let disposition = format!("attachment; filename=\"{}\"", archive_file_name(backup));
    if let Ok(disposition) = warp::http::HeaderValue::from_str(&disposition) {
        headers.insert("content-disposition", disposition);
    }
    Ok(response)
}

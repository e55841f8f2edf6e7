//! Schedules of a server, and its activity (the audit log about it).

use super::account::ctl;
use super::{created, listing, no_content, ok};
use crate::api::{ApiError, Call, PanelState, json_response};
use nexus_control::schedules::ScheduleInput;
use nexus_core::ids::ScheduleId;
use nexus_core::model::AuditSubject;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    ok(&state.control.store().list_schedules(call.server()?.id).await.map_err(ctl)?)
}

pub(crate) async fn create(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: ScheduleInput = call.json()?;
    created(&state.control.create_schedule(call.server()?.id, body, call.access()?).await?)
}

pub(crate) async fn show(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ScheduleId = call.param(1)?;
    ok(&state.control.schedule_of(call.server()?.id, id).await?)
}

pub(crate) async fn update(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ScheduleId = call.param(1)?;
    let body: ScheduleInput = call.json()?;
    ok(&state.control.update_schedule(call.server()?.id, id, body, call.access()?).await?)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ScheduleId = call.param(1)?;
    state.control.schedule_of(call.server()?.id, id).await?;
    state.control.store().delete_schedule(id).await.map_err(ctl)?;
    no_content()
}

/// Starts the schedule now; its outcome goes to the activity log.
pub(crate) async fn run(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ScheduleId = call.param(1)?;
    state.control.run_schedule_now(call.server()?.id, id, call.access()?).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({ "running": true })))
}

pub(crate) async fn activity(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let (page, number, per_page) = call.page()?;
    let subject = AuditSubject::Server(call.server()?.id);
    let events = state.control.store().list_audit(Some(&subject), page).await.map_err(ctl)?;
    listing(events, number, per_page)
}

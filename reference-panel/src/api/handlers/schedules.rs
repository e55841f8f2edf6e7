//! Schedules of a server, and its activity (the audit log about it).

use super::account::ctl;
use crate::api::answer::{Answer, Listing, NoContent, accepted, created, listing, no_content, ok};
use crate::api::{ApiError, Call, PanelState};
use nexus_control::schedules::ScheduleInput;
use nexus_core::ids::ScheduleId;
use nexus_core::model::{AuditEvent, AuditSubject, Schedule};
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::Arc;

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<Schedule>>, ApiError> {
    ok(state.control.store().list_schedules(call.server()?.id).await.map_err(ctl)?)
}

pub(crate) async fn create(
    state: Arc<PanelState>,
    call: Call,
    body: ScheduleInput,
) -> Result<Answer<Schedule>, ApiError> {
    created(state.control.create_schedule(call.server()?.id, body, call.access()?).await?)
}

pub(crate) async fn show(state: Arc<PanelState>, call: Call) -> Result<Answer<Schedule>, ApiError> {
    let id: ScheduleId = call.param(1)?;
    ok(state.control.schedule_of(call.server()?.id, id).await?)
}

pub(crate) async fn update(
    state: Arc<PanelState>,
    call: Call,
    body: ScheduleInput,
) -> Result<Answer<Schedule>, ApiError> {
    let id: ScheduleId = call.param(1)?;
    ok(state.control.update_schedule(call.server()?.id, id, body, call.access()?).await?)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    let id: ScheduleId = call.param(1)?;
    state.control.schedule_of(call.server()?.id, id).await?;
    state.control.store().delete_schedule(id).await.map_err(ctl)?;
    no_content()
}

/// A schedule run was started; its outcome goes to the server's activity.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Running {
    /// Always `true`.
    running: bool,
}

/// Starts the schedule now; its outcome goes to the activity log.
pub(crate) async fn run(state: Arc<PanelState>, call: Call) -> Result<Answer<Running>, ApiError> {
    let id: ScheduleId = call.param(1)?;
    state.control.run_schedule_now(call.server()?.id, id, call.access()?).await?;
    accepted(Running { running: true })
}

pub(crate) async fn activity(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<AuditEvent>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let subject = AuditSubject::Server(call.server()?.id);
    let events = state.control.store().list_audit(Some(&subject), page).await.map_err(ctl)?;
    listing(events, number, per_page)
}

/// The whole panel's audit log (admins).
pub(crate) async fn all_activity(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<AuditEvent>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let events = state.control.store().list_audit(None, page).await.map_err(ctl)?;
    listing(events, number, per_page)
}

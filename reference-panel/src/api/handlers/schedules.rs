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

/// Audit events of a server searched for schedules' last results.
const RESULT_SEARCH: u64 = 500;

/// A schedule with the outcome of its last run.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ScheduleView {
    #[serde(flatten)]
    schedule: Schedule,
    /// How its last run ended (among the server's latest 500 activity entries).
    last_result: Option<RunResult>,
}

/// How a schedule run ended.
#[derive(Clone, Serialize, JsonSchema)]
pub(crate) struct RunResult {
    /// When it ended.
    at: chrono::DateTime<chrono::Utc>,
    /// Whether every task that ran succeeded.
    ok: bool,
    /// The first failure, in words for the server's users.
    error: Option<String>,
    /// `cron` or `manual`.
    trigger: Option<String>,
}

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<ScheduleView>>, ApiError> {
    let server = call.server()?.id;
    let store = state.control.store();
    let schedules = store.list_schedules(server).await.map_err(ctl)?;
    let recent = store
        .list_audit(Some(&AuditSubject::Server(server)), nexus_core::store::Page { offset: 0, limit: RESULT_SEARCH })
        .await
        .map_err(ctl)?;
    let mut results: std::collections::HashMap<String, RunResult> = std::collections::HashMap::new();
    // Newest first: the first result seen for a schedule is its last.
    for event in recent.iter().filter(|e| e.action == "schedule.run") {
        let Some(id) = event.metadata.get("schedule").and_then(|v| v.as_str()) else { continue };
        results.entry(id.to_owned()).or_insert_with(|| RunResult {
            at: event.at,
            ok: event.metadata.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false),
            error: event.metadata.get("error").and_then(|v| v.as_str()).map(str::to_owned),
            trigger: event.metadata.get("trigger").and_then(|v| v.as_str()).map(str::to_owned),
        });
    }
    ok(schedules
        .into_iter()
        .map(|schedule| {
            let last_result = results.get(&schedule.id.to_string()).cloned();
            ScheduleView { schedule, last_result }
        })
        .collect())
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
    state.control.delete_schedule(call.server()?.id, id).await?;
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

/// An audit entry with its actor's name.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ActivityView {
    #[serde(flatten)]
    pub(crate) event: AuditEvent,
    /// The actor's user name (none for the panel itself, or a deleted account; "an
    /// administrator" for an admin, to anyone but admins). Addresses are shown to admins, and
    /// to others on their own entries only.
    pub(crate) actor_name: Option<String>,
}

/// The events with their actors' names, as `viewer` may see them: admins see everything;
/// others see addresses only on their own entries, and an administrator's entries without
/// the administrator's name.
pub(crate) async fn with_names(
    state: &PanelState,
    events: Vec<AuditEvent>,
    viewer: &crate::api::auth::Principal,
) -> Vec<ActivityView> {
    let mut users: std::collections::HashMap<nexus_core::ids::UserId, Option<nexus_core::model::User>> =
        std::collections::HashMap::new();
    let mut views = Vec::with_capacity(events.len());
    for mut event in events {
        let actor = match event.actor {
            None => None,
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = users.entry(id) {
                    slot.insert(state.control.store().get_user(id).await.ok());
                }
                users.get(&id).cloned().flatten()
            }
        };
        let mut actor_name = actor.as_ref().map(|u| u.username.clone());
        if !viewer.is_admin() {
            if event.actor != Some(viewer.user.id) {
                event.ip = None;
            }
            if actor.as_ref().is_some_and(|u| u.role == nexus_core::model::Role::Admin && u.id != viewer.user.id) {
                actor_name = Some("an administrator".into());
                event.actor = None;
            }
        }
        views.push(ActivityView { event, actor_name });
    }
    views
}

pub(crate) async fn activity(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<ActivityView>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let subject = AuditSubject::Server(call.server()?.id);
    let events = state.control.store().list_audit(Some(&subject), page).await.map_err(ctl)?;
    listing(with_names(&state, events, call.principal()?).await, number, per_page)
}

/// The whole panel's audit log (admins).
pub(crate) async fn all_activity(
    state: Arc<PanelState>,
    call: Call,
) -> Result<Answer<Listing<ActivityView>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let events = state.control.store().list_audit(None, page).await.map_err(ctl)?;
    listing(with_names(&state, events, call.principal()?).await, number, per_page)
}

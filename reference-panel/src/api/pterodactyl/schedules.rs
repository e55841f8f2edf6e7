//! `/api/client/servers/{server}/schedules` and their tasks, and `…/users` (subusers), in
//! Pterodactyl's shapes over the control plane's schedules and grants. A schedule's five cron
//! fields are Pterodactyl's; Nexus keeps tasks inside their schedule, so a task route reads
//! the schedule, changes its list and stores it whole (task ids kept).

use super::body::{Body, required};
use super::shapes::{answer, date, item, no_content};
use super::{key_of, refs, store_error};
use crate::api::router::Call;
use crate::api::{ApiError, PanelState};
use nexus_control::schedules::ScheduleInput;
use nexus_core::ids::{ScheduleId, TaskId, UserId};
use nexus_core::model::{RecordKind, Schedule, Subuser, Task, TaskAction};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

type Answered = Result<Response, ApiError>;

async fn schedule_attributes(state: &PanelState, schedule: &Schedule) -> Result<Value, ApiError> {
    let number = refs(state, RecordKind::Schedule, vec![schedule.id.to_string()]).await?;
    let tasks =
        refs(state, RecordKind::ScheduleTask, schedule.tasks.iter().map(|t| t.id.to_string()).collect()).await?;
    let fields: Vec<&str> = schedule.cron.split_whitespace().collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or("*");
    let tasks: Vec<Value> = schedule
        .tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let (action, payload) = match &task.action {
                TaskAction::Command(line) => ("command", line.clone()),
                TaskAction::Power(action) => ("power", action.clone()),
                TaskAction::Backup(ignored) => ("backup", ignored.join("\n")),
            };
            item(
                "schedule_task",
                json!({
                    "id": tasks.get(&task.id.to_string()).map_or(0, |r| r.number),
                    "sequence_id": i + 1,
                    "action": action,
                    "payload": payload,
                    "time_offset": task.offset_seconds,
                    "is_queued": false,
                    "continue_on_failure": task.continue_on_failure,
                    "created_at": Value::Null,
                    "updated_at": Value::Null,
                }),
            )
        })
        .collect();
    Ok(json!({
        "id": number.get(&schedule.id.to_string()).map_or(0, |r| r.number),
        "name": schedule.name,
        "cron": {
            "minute": field(0),
            "hour": field(1),
            "day_of_month": field(2),
            "month": field(3),
            "day_of_week": field(4),
        },
        "is_active": schedule.enabled,
        "is_processing": false,
        "only_when_online": schedule.only_when_online,
        "last_run_at": schedule.last_run_at.map(date),
        "next_run_at": schedule.next_run_at.map(date),
        "created_at": Value::Null,
        "updated_at": Value::Null,
        "relationships": { "tasks": { "object": "list", "data": tasks } },
    }))
}

async fn one(state: &PanelState, schedule: &Schedule) -> Answered {
    answer(StatusCode::OK, &item("server_schedule", schedule_attributes(state, schedule).await?))
}

async fn schedule(state: &PanelState, call: &Call) -> Result<Schedule, ApiError> {
    let id: ScheduleId = key_of(state, call, 1, RecordKind::Schedule).await?;
    Ok(state.control.schedule_of(call.server()?.id, id).await?)
}

pub(super) async fn list(state: Arc<PanelState>, call: Call) -> Answered {
    let schedules = state.control.store().list_schedules(call.server()?.id).await.map_err(store_error)?;
    let mut data = Vec::with_capacity(schedules.len());
    for schedule in &schedules {
        data.push(item("server_schedule", schedule_attributes(&state, schedule).await?));
    }
    answer(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

pub(super) async fn show(state: Arc<PanelState>, call: Call) -> Answered {
    let schedule = schedule(&state, &call).await?;
    one(&state, &schedule).await
}

/// A task as the control plane takes it, keeping `id`.
fn task_input(task: &Task) -> Value {
    json!({
        "id": task.id,
        "action": task.action,
        "offset_seconds": task.offset_seconds,
        "continue_on_failure": task.continue_on_failure,
    })
}

/// The schedule input a Pterodactyl body describes, over `current`'s values and tasks.
fn schedule_input(body: &Body, current: Option<&Schedule>, tasks: Vec<Value>) -> Result<ScheduleInput, ApiError> {
    let old: Vec<String> = current.map_or_else(Vec::new, |s| s.cron.split_whitespace().map(str::to_owned).collect());
    let field = |name: &str, i: usize| -> Result<String, ApiError> {
        match body.string(name)? {
            Some(value) => Ok(value),
            None => old.get(i).cloned().ok_or_else(|| required(name)),
        }
    };
    let cron = [
        field("minute", 0)?,
        field("hour", 1)?,
        field("day_of_month", 2)?,
        field("month", 3)?,
        field("day_of_week", 4)?,
    ];
    if cron.iter().any(|f| f.split_whitespace().count() != 1) {
        return Err(ApiError::invalid("minute", "Each cron field is one word."));
    }
    let name = match body.string("name")? {
        Some(name) => name,
        None => current.map(|s| s.name.clone()).ok_or_else(|| required("name"))?,
    };
    let value = json!({
        "name": name,
        "cron": cron.join(" "),
        "timezone": current.map_or("UTC", |s| s.timezone.as_str()),
        "enabled": body.boolean("is_active")?.or(current.map(|s| s.enabled)).unwrap_or(true),
        "only_when_online": body.boolean("only_when_online")?.or(current.map(|s| s.only_when_online)).unwrap_or(false),
        "tasks": tasks,
    });
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("invalid schedule: {e}")))
}

pub(super) async fn create(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let input = schedule_input(&body, None, Vec::new())?;
    let schedule = state.control.create_schedule(call.server()?.id, input, call.access()?).await?;
    one(&state, &schedule).await
}

pub(super) async fn update(state: Arc<PanelState>, call: Call) -> Answered {
    let current = schedule(&state, &call).await?;
    let body = Body::of(&call)?;
    let input = schedule_input(&body, Some(&current), current.tasks.iter().map(task_input).collect())?;
    let schedule = state.control.update_schedule(call.server()?.id, current.id, input, call.access()?).await?;
    one(&state, &schedule).await
}

pub(super) async fn execute(state: Arc<PanelState>, call: Call) -> Answered {
    let schedule = schedule(&state, &call).await?;
    state.control.run_schedule_now(call.server()?.id, schedule.id, call.access()?).await?;
    let mut response = no_content()?;
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

pub(super) async fn delete(state: Arc<PanelState>, call: Call) -> Answered {
    let schedule = schedule(&state, &call).await?;
    state.control.delete_schedule(call.server()?.id, schedule.id).await?;
    no_content()
}

/// A task from a Pterodactyl body (`action`, `payload`, `time_offset`, `continue_on_failure`).
fn task_from(body: &Body, id: Option<TaskId>) -> Result<Value, ApiError> {
    let payload = body.string("payload")?.unwrap_or_default();
    let action = match body.required_string("action")?.as_str() {
        "command" => json!({ "kind": "command", "payload": payload }),
        "power" => json!({ "kind": "power", "payload": payload }),
        "backup" => json!({ "kind": "backup", "payload": payload.lines().map(str::to_owned).collect::<Vec<_>>() }),
        _ => return Err(ApiError::invalid("action", "The selected action is invalid.")),
    };
    Ok(json!({
        "id": id,
        "action": action,
        "offset_seconds": body.bounded("time_offset", 900)?.unwrap_or(0),
        "continue_on_failure": body.boolean("continue_on_failure")?.unwrap_or(false),
    }))
}

/// Stores `current` with `tasks` and answers the task at `position`.
async fn with_tasks(
    state: &PanelState,
    call: &Call,
    current: &Schedule,
    tasks: Vec<Value>,
    position: usize,
) -> Answered {
    let input = schedule_input(&Body::empty(), Some(current), tasks)?;
    let schedule = state.control.update_schedule(call.server()?.id, current.id, input, call.access()?).await?;
    let attributes = schedule_attributes(state, &schedule).await?;
    let task = attributes["relationships"]["tasks"]["data"]
        .get(position)
        .cloned()
        .ok_or_else(|| ApiError::not_found("task"))?;
    answer(StatusCode::OK, &task)
}

pub(super) async fn create_task(state: Arc<PanelState>, call: Call) -> Answered {
    let current = schedule(&state, &call).await?;
    let body = Body::of(&call)?;
    let mut tasks: Vec<Value> = current.tasks.iter().map(task_input).collect();
    tasks.push(task_from(&body, None)?);
    let position = tasks.len() - 1;
    with_tasks(&state, &call, &current, tasks, position).await
}

/// The position of the task the path's third segment numbers.
async fn task_position(state: &PanelState, call: &Call, schedule: &Schedule) -> Result<usize, ApiError> {
    let id: TaskId = key_of(state, call, 2, RecordKind::ScheduleTask).await?;
    schedule.tasks.iter().position(|t| t.id == id).ok_or_else(|| ApiError::not_found("task"))
}

pub(super) async fn update_task(state: Arc<PanelState>, call: Call) -> Answered {
    let current = schedule(&state, &call).await?;
    let position = task_position(&state, &call, &current).await?;
    let body = Body::of(&call)?;
    let mut tasks: Vec<Value> = current.tasks.iter().map(task_input).collect();
    tasks[position] = task_from(&body, Some(current.tasks[position].id))?;
    with_tasks(&state, &call, &current, tasks, position).await
}

pub(super) async fn delete_task(state: Arc<PanelState>, call: Call) -> Answered {
    let current = schedule(&state, &call).await?;
    let position = task_position(&state, &call, &current).await?;
    let mut tasks: Vec<Value> = current.tasks.iter().map(task_input).collect();
    tasks.remove(position);
    let input = schedule_input(&Body::empty(), Some(&current), tasks)?;
    state.control.update_schedule(call.server()?.id, current.id, input, call.access()?).await?;
    no_content()
}

// ---- subusers ---------------------------------------------------------------------------

async fn subuser_attributes(state: &PanelState, subuser: &Subuser) -> Result<Value, ApiError> {
    let user = state.control.store().get_user(subuser.user).await.map_err(store_error)?;
    let totp = state.control.store().get_totp(user.id).await.map_err(store_error)?;
    Ok(item(
        "server_subuser",
        json!({
            "uuid": user.id,
            "username": user.username,
            "email": user.email,
            "image": Value::Null,
            "2fa_enabled": totp.is_some_and(|t| t.enabled_at.is_some()),
            "created_at": date(subuser.created_at),
            "permissions": subuser.permissions,
        }),
    ))
}

pub(super) async fn list_subusers(state: Arc<PanelState>, call: Call) -> Answered {
    let subusers = state.control.store().list_subusers(call.server()?.id).await.map_err(store_error)?;
    let mut data = Vec::with_capacity(subusers.len());
    for subuser in &subusers {
        data.push(subuser_attributes(&state, subuser).await?);
    }
    answer(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

fn permissions(body: &Body) -> Result<BTreeSet<String>, ApiError> {
    if !body.has("permissions") {
        return Err(required("permissions"));
    }
    Ok(body.strings("permissions")?.into_iter().collect())
}

pub(super) async fn create_subuser(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let email = body.required_string("email")?;
    let caller = (&call.principal()?.user, call.access()?);
    let subuser = state.control.put_subuser(call.server()?.id, &email, permissions(&body)?, false, caller).await?;
    answer(StatusCode::OK, &subuser_attributes(&state, &subuser).await?)
}

async fn subuser(state: &PanelState, call: &Call) -> Result<Subuser, ApiError> {
    let user: UserId = call.params.get(1).and_then(|p| p.parse().ok()).ok_or_else(|| ApiError::not_found("subuser"))?;
    let found = state.control.store().get_subuser(call.server()?.id, user).await.map_err(store_error)?;
    found.ok_or_else(|| ApiError::not_found("subuser"))
}

pub(super) async fn show_subuser(state: Arc<PanelState>, call: Call) -> Answered {
    let subuser = subuser(&state, &call).await?;
    answer(StatusCode::OK, &subuser_attributes(&state, &subuser).await?)
}

pub(super) async fn update_subuser(state: Arc<PanelState>, call: Call) -> Answered {
    let current = subuser(&state, &call).await?;
    let body = Body::of(&call)?;
    let account = state.control.store().get_user(current.user).await.map_err(store_error)?;
    let caller = (&call.principal()?.user, call.access()?);
    let subuser =
        state.control.put_subuser(call.server()?.id, &account.email, permissions(&body)?, true, caller).await?;
    answer(StatusCode::OK, &subuser_attributes(&state, &subuser).await?)
}

pub(super) async fn delete_subuser(state: Arc<PanelState>, call: Call) -> Answered {
    let current = subuser(&state, &call).await?;
    let caller = (&call.principal()?.user, call.access()?);
    state.control.remove_subuser(call.server()?.id, current.user, caller).await?;
    no_content()
}

//! Schedules: cron-driven task lists on a server (Pterodactyl's schedules), and the runner.
//!
//! Each due run is claimed in the store ([`claim_schedule_run`]: a compare-and-set of
//! `next_run_at`), so when several panel processes share one database every run happens
//! exactly once, whichever process sees it first. A claimed run executes its tasks in order,
//! each `offset_seconds` after the previous one; a failing task stops the rest unless it
//! says `continue_on_failure`. Every run and its outcome go to the audit log
//! (`schedule.run`), which is where "last result" is read from.
//!
//! [`claim_schedule_run`]: nexus_core::store::ScheduleRepo::claim_schedule_run

use crate::subusers::ServerAccess;
use crate::{ControlError, ControlPlane};
use chrono::{DateTime, Utc};
use nexus_core::cron::CronSchedule;
use nexus_core::ids::{AuditEventId, ScheduleId, ServerId, TaskId};
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{AuditEvent, AuditSubject, RecordKind, Schedule, Task, TaskAction};
use nexus_core::transport::PowerAction;
use std::sync::Arc;
use std::time::Duration;

/// Most schedules per server.
pub const MAX_SCHEDULES: usize = 50;
/// Most tasks per schedule.
pub const MAX_TASKS: usize = 20;
/// Longest delay of one task after the previous, seconds (Pterodactyl's limit is 900).
pub const MAX_OFFSET_SECS: u32 = 900;
/// How often the runner looks for due schedules.
pub const TICK: Duration = Duration::from_secs(5);

/// What a caller gives to create or change a schedule.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScheduleInput {
    /// Display name.
    pub name: String,
    /// Five-field cron expression.
    pub cron: String,
    /// IANA time zone (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Whether it fires.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fire only while the server runs.
    #[serde(default)]
    pub only_when_online: bool,
    /// Tasks in order.
    #[serde(default)]
    pub tasks: Vec<TaskInput>,
}

/// One task as a caller gives it.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TaskInput {
    /// The task this one replaces, on an update: it keeps that task's id (a new id when
    /// absent or not a task of the schedule).
    #[serde(default)]
    pub id: Option<TaskId>,
    /// What to do.
    pub action: TaskAction,
    /// Delay after the previous task, seconds.
    #[serde(default)]
    pub offset_seconds: u32,
    /// Keep going if it fails.
    #[serde(default)]
    pub continue_on_failure: bool,
}

fn utc() -> String {
    "UTC".into()
}

fn yes() -> bool {
    true
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ControlError {
    ControlError::Invalid { field, reason: reason.into() }
}

/// Checks `input` and makes the schedule `id` of `server` from it, due next after `now`.
fn build(id: ScheduleId, server: ServerId, input: ScheduleInput, now: DateTime<Utc>) -> Result<Schedule, ControlError> {
    let name = input.name.trim();
    if name.is_empty() || name.len() > 191 || name.chars().any(char::is_control) {
        return Err(invalid("name", "1 to 191 bytes, one line"));
    }
    let cron =
        CronSchedule::parse_in(input.cron.trim(), input.timezone.trim()).map_err(|e| invalid("cron", e.to_string()))?;
    if input.tasks.len() > MAX_TASKS {
        return Err(invalid("tasks", format!("at most {MAX_TASKS}")));
    }
    let mut tasks = Vec::with_capacity(input.tasks.len());
    for task in input.tasks {
        if task.offset_seconds > MAX_OFFSET_SECS {
            return Err(invalid("offset_seconds", format!("at most {MAX_OFFSET_SECS}")));
        }
        match &task.action {
            TaskAction::Command(line) if line.is_empty() || line.len() > 4096 || line.contains(['\n', '\r', '\0']) => {
                return Err(invalid("tasks", "a command is one line of 1 to 4096 bytes"));
            }
            TaskAction::Power(action) if power_action(action).is_none() => {
                return Err(invalid("tasks", "power is start, stop, restart or kill"));
            }
            TaskAction::Backup(ignored) => {
                if let Some(reason) = crate::backups::refused_patterns(ignored) {
                    return Err(invalid("tasks", format!("a backup's ignore patterns: {reason}")));
                }
            }
            _ => {}
        }
        tasks.push(Task {
            id: TaskId::new(),
            action: task.action,
            offset_seconds: task.offset_seconds,
            continue_on_failure: task.continue_on_failure,
        });
    }
    Ok(Schedule {
        id,
        server,
        name: name.to_owned(),
        cron: cron.expression().to_owned(),
        timezone: input.timezone.trim().to_owned(),
        enabled: input.enabled,
        only_when_online: input.only_when_online,
        tasks,
        last_run_at: None,
        next_run_at: if input.enabled { cron.next_after(now) } else { None },
    })
}

/// What a tenant is told about a failed task.
fn public_reason(e: &ControlError) -> &'static str {
    match e {
        ControlError::Suspended(_) => "the server is suspended",
        ControlError::Deleting(_) => "the server is being deleted",
        ControlError::Node { .. } => "the node could not do it",
        ControlError::Invalid { .. } => "the task is not valid",
        ControlError::BackupRefused(_) => {
            "the backup was refused (limit reached, every backup locked, or one in progress)"
        }
        _ => "internal error",
    }
}

fn power_action(name: &str) -> Option<PowerAction> {
    match name {
        "start" => Some(PowerAction::Start),
        "stop" => Some(PowerAction::Stop),
        "restart" => Some(PowerAction::Restart),
        "kill" => Some(PowerAction::Kill),
        _ => None,
    }
}

/// The permission a task needs from whoever schedules or runs it: a schedule must not do
/// what its author may not do by hand.
fn task_permission(action: &TaskAction) -> &'static str {
    match action {
        TaskAction::Command(_) => "control.console",
        TaskAction::Power(action) => match power_action(action) {
            Some(PowerAction::Start) => "control.start",
            Some(PowerAction::Stop | PowerAction::Kill) => "control.stop",
            _ => "control.restart",
        },
        TaskAction::Backup(_) => "backup.create",
    }
}

fn check_tasks(tasks: &[TaskAction], access: &ServerAccess) -> Result<(), ControlError> {
    match tasks.iter().map(task_permission).find(|name| !access.allows(name)) {
        Some(name) => Err(ControlError::Forbidden(format!("a task needs `{name}`, which you do not hold"))),
        None => Ok(()),
    }
}

impl ControlPlane {
    /// Creates a schedule on `server` for a caller with `access` (each task needs the
    /// permission its action would need by hand).
    pub async fn create_schedule(
        &self,
        server: ServerId,
        input: ScheduleInput,
        access: &ServerAccess,
    ) -> Result<Schedule, ControlError> {
        check_tasks(&input.tasks.iter().map(|t| t.action.clone()).collect::<Vec<_>>(), access)?;
        self.server(server).await?;
        if self.store.list_schedules(server).await?.len() >= MAX_SCHEDULES {
            return Err(invalid("schedule", format!("a server has at most {MAX_SCHEDULES} schedules")));
        }
        let schedule = build(ScheduleId::new(), server, input, Utc::now())?;
        self.store.create_schedule(&schedule).await?;
        Ok(schedule)
    }

    /// Replaces schedule `id` of `server` (its next run recomputed), for a caller with
    /// `access`.
    pub async fn update_schedule(
        &self,
        server: ServerId,
        id: ScheduleId,
        input: ScheduleInput,
        access: &ServerAccess,
    ) -> Result<Schedule, ControlError> {
        check_tasks(&input.tasks.iter().map(|t| t.action.clone()).collect::<Vec<_>>(), access)?;
        let current = self.schedule_of(server, id).await?;
        let kept: Vec<Option<TaskId>> =
            input.tasks.iter().map(|t| t.id.filter(|id| current.tasks.iter().any(|c| c.id == *id))).collect();
        let mut schedule = build(id, server, input, Utc::now())?;
        for (task, kept) in schedule.tasks.iter_mut().zip(kept) {
            if let Some(kept) = kept {
                task.id = kept;
            }
        }
        schedule.last_run_at = current.last_run_at;
        self.store.update_schedule(&schedule).await?;
        let gone: Vec<String> = current
            .tasks
            .iter()
            .filter(|old| !schedule.tasks.iter().any(|new| new.id == old.id))
            .map(|old| old.id.to_string())
            .collect();
        self.forget_refs(RecordKind::ScheduleTask, gone).await;
        Ok(schedule)
    }

    /// Deletes schedule `id` of `server` (`NotFound` for another server's).
    pub async fn delete_schedule(&self, server: ServerId, id: ScheduleId) -> Result<(), ControlError> {
        let schedule = self.schedule_of(server, id).await?;
        self.store.delete_schedule(id).await?;
        self.forget_refs(RecordKind::Schedule, vec![id.to_string()]).await;
        self.forget_refs(RecordKind::ScheduleTask, schedule.tasks.iter().map(|t| t.id.to_string()).collect()).await;
        Ok(())
    }

    /// Forgets the record refs of records that are gone, so churning tenants do not grow the
    /// store; a failure only leaves a row behind.
    async fn forget_refs(&self, kind: RecordKind, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.store.forget_record_refs(kind, &keys).await {
            tracing::warn!(error = %e, ?kind, "forgetting record refs");
        }
    }

    /// Schedule `id` if it belongs to `server` (`NotFound` otherwise, so ids of other
    /// servers' schedules reveal nothing).
    pub async fn schedule_of(&self, server: ServerId, id: ScheduleId) -> Result<Schedule, ControlError> {
        let schedule = self.store.get_schedule(id).await?;
        if schedule.server != server {
            return Err(nexus_core::store::StoreError::not_found("schedule", id).into());
        }
        Ok(schedule)
    }

    /// Runs every schedule due at `now` that this process claims; returns how many it
    /// started. The tasks run in the background (`self` must be in an `Arc`).
    pub async fn run_due_schedules(self: &Arc<Self>, now: DateTime<Utc>) -> Result<usize, ControlError> {
        let mut started = 0;
        for schedule in self.store.due_schedules(now).await? {
            let Some(due) = schedule.next_run_at else { continue };
            let next = CronSchedule::parse_in(&schedule.cron, &schedule.timezone).ok().and_then(|c| c.next_after(now));
            if !self.store.claim_schedule_run(schedule.id, due, next, now).await? {
                continue; // another panel process has it
            }
            started += 1;
            let me = Arc::clone(self);
            tokio::spawn(async move { me.execute(&schedule, "cron").await });
        }
        Ok(started)
    }

    /// Starts schedule `id` of `server` now, whatever its cron says (its next run
    /// unchanged), for a caller with `access`; the tasks run in the background and the
    /// outcome goes to the audit log. Refused while a run of it is under way.
    pub async fn run_schedule_now(
        self: &Arc<Self>,
        server: ServerId,
        id: ScheduleId,
        access: &ServerAccess,
    ) -> Result<(), ControlError> {
        let schedule = self.schedule_of(server, id).await?;
        check_tasks(&schedule.tasks.iter().map(|t| t.action.clone()).collect::<Vec<_>>(), access)?;
        if self.running_lock().contains(&id) {
            return Err(ControlError::Busy(format!("schedule {id} is running")));
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.execute(&schedule, "manual").await });
        Ok(())
    }

    fn running_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<ScheduleId>> {
        self.running_schedules.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tasks of `schedule`, in order; the outcome goes to the audit log. A run of a
    /// schedule whose previous run is still under way in this process is skipped.
    async fn execute(&self, schedule: &Schedule, trigger: &str) -> Result<(), ControlError> {
        if !self.running_lock().insert(schedule.id) {
            tracing::info!(schedule = %schedule.id, "skipped: the previous run is still under way");
            return Ok(());
        }
        let outcome = self.execute_tasks(schedule, trigger).await;
        self.running_lock().remove(&schedule.id);
        outcome
    }

    async fn execute_tasks(&self, schedule: &Schedule, trigger: &str) -> Result<(), ControlError> {
        let mut outcome: Result<(), String> = Ok(());
        let mut ran = 0;
        let online = self.server(schedule.server).await.map(|s| s.state == ServerState::Running).unwrap_or(false);
        if schedule.only_when_online && !online {
            outcome = Err("skipped: the server is not running".into());
        } else {
            for task in &schedule.tasks {
                if task.offset_seconds > 0 {
                    tokio::time::sleep(Duration::from_secs(u64::from(task.offset_seconds))).await;
                }
                let result = match &task.action {
                    TaskAction::Command(line) => self.send_command(schedule.server, line).await,
                    TaskAction::Power(action) => match power_action(action) {
                        Some(action) => self.power(schedule.server, action).await,
                        None => Err(invalid("tasks", format!("unknown power action `{action}`"))),
                    },
                    // Past the server's limit, a scheduled backup replaces the oldest
                    // unlocked one (as Pterodactyl's schedules do).
                    TaskAction::Backup(ignored) => self
                        .create_backup(schedule.server, crate::backups::NewBackup::ignoring(ignored.clone()), true)
                        .await
                        .map(drop),
                };
                ran += 1;
                if let Err(e) = result {
                    tracing::info!(schedule = %schedule.id, task = %task.id, error = %e, "schedule task failed");
                    if outcome.is_ok() {
                        // Tenants read this in their activity: a kind of failure, not the
                        // internals (store errors, node addresses) the log has.
                        outcome = Err(format!("task {ran}: {}", public_reason(&e)));
                    }
                    if !task.continue_on_failure {
                        break;
                    }
                }
            }
        }
        let event = AuditEvent {
            id: AuditEventId::new(),
            actor: None,
            action: "schedule.run".into(),
            subject: AuditSubject::Server(schedule.server),
            metadata: serde_json::json!({
                "schedule": schedule.id,
                "name": schedule.name,
                "trigger": trigger,
                "tasks_run": ran,
                "ok": outcome.is_ok(),
                "error": outcome.as_ref().err(),
            }),
            ip: None,
            at: Utc::now(),
        };
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::warn!(error = %e, "recording a schedule run");
        }
        outcome.map_err(|e| ControlError::Invalid { field: "schedule", reason: e })
    }

    /// Runs due schedules every [`TICK`] until `shutdown` resolves.
    pub async fn watch_schedules(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.run_due_schedules(Utc::now()).await {
                        tracing::warn!(error = %e, "schedule runner");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(cron: &str, tasks: Vec<TaskInput>) -> ScheduleInput {
        ScheduleInput {
            name: "nightly".into(),
            cron: cron.into(),
            timezone: "Europe/Berlin".into(),
            enabled: true,
            only_when_online: false,
            tasks,
        }
    }

    #[test]
    fn schedules_are_checked_and_get_their_next_run() {
        let now = Utc::now();
        let ok = build(ScheduleId::new(), ServerId::new(), input("0 4 * * *", vec![]), now).unwrap();
        assert!(ok.next_run_at.is_some_and(|next| next > now));
        assert!(build(ScheduleId::new(), ServerId::new(), input("61 * * * *", vec![]), now).is_err());
        let mut zone = input("0 4 * * *", vec![]);
        zone.timezone = "Mars/Olympus".into();
        assert!(build(ScheduleId::new(), ServerId::new(), zone, now).is_err());
        let power = |action: &str| TaskInput {
            id: None,
            action: TaskAction::Power(action.into()),
            offset_seconds: 0,
            continue_on_failure: false,
        };
        assert!(build(ScheduleId::new(), ServerId::new(), input("* * * * *", vec![power("restart")]), now).is_ok());
        assert!(build(ScheduleId::new(), ServerId::new(), input("* * * * *", vec![power("explode")]), now).is_err());
        let late = TaskInput { offset_seconds: MAX_OFFSET_SECS + 1, ..power("stop") };
        assert!(build(ScheduleId::new(), ServerId::new(), input("* * * * *", vec![late]), now).is_err());
    }
}

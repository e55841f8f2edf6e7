use crate::ids::{ScheduleId, ServerId, TaskId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A cron-driven list of tasks on one server.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Identifier.
    pub id: ScheduleId,
    /// The server it acts on.
    pub server: ServerId,
    /// Display name.
    pub name: String,
    /// Five-field cron expression, see [`CronSchedule`](crate::cron::CronSchedule).
    pub cron: String,
    /// IANA time zone the expression is read in (`Europe/Berlin`).
    pub timezone: String,
    /// Disabled schedules never fire.
    pub enabled: bool,
    /// Fire only while the server is running.
    pub only_when_online: bool,
    /// Tasks in order; each runs `offset_seconds` after the previous one.
    pub tasks: Vec<Task>,
    /// Last time it fired.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Next time it is due.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// One step of a schedule.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Identifier.
    pub id: TaskId,
    /// What to do.
    pub action: TaskAction,
    /// Delay after the previous task, seconds.
    pub offset_seconds: u32,
    /// Keep going with the next task if this one fails.
    pub continue_on_failure: bool,
}

/// What a task does.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum TaskAction {
    /// Send a console command.
    Command(String),
    /// A power action: `start`, `stop`, `restart`, `kill`.
    Power(String),
    /// Create a backup, ignoring the given patterns.
    Backup(Vec<String>),
}

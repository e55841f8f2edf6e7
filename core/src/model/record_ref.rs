use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which kind of record a [`RecordRef`] names. Numbers are unique within a kind.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordKind {
    /// A [`User`](crate::model::User).
    User,
    /// A [`Location`](crate::model::Location).
    Location,
    /// A [`Node`](crate::model::Node).
    Node,
    /// An [`Allocation`](crate::model::Allocation).
    Allocation,
    /// A [`Nest`](crate::model::Nest).
    Nest,
    /// An [`Egg`](crate::model::Egg).
    Egg,
    /// An egg's variable, keyed `<egg id>/<env variable>`.
    EggVariable,
    /// A [`Server`](crate::model::Server).
    Server,
    /// A [`Schedule`](crate::model::Schedule).
    Schedule,
    /// An [`ApiKey`](crate::model::ApiKey).
    ApiKey,
    /// A schedule's [`Task`](crate::model::Task).
    ScheduleTask,
}

impl RecordKind {
    /// Every kind.
    pub const ALL: [RecordKind; 11] = [
        Self::User,
        Self::Location,
        Self::Node,
        Self::Allocation,
        Self::Nest,
        Self::Egg,
        Self::EggVariable,
        Self::Server,
        Self::Schedule,
        Self::ApiKey,
        Self::ScheduleTask,
    ];

    /// The name stored for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Location => "location",
            Self::Node => "node",
            Self::Allocation => "allocation",
            Self::Nest => "nest",
            Self::Egg => "egg",
            Self::EggVariable => "egg_variable",
            Self::Server => "server",
            Self::Schedule => "schedule",
            Self::ApiKey => "api_key",
            Self::ScheduleTask => "schedule_task",
        }
    }

    /// The kind stored as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The names a record has besides its UUID, for APIs that want them (Pterodactyl's integer
/// `id`, 8-character `identifier` and operator-chosen `external_id`).
///
/// A record gets its number the first time one is asked for; numbers are unique within a
/// kind, start at 1, grow in the order they are handed out and are never reused, even after
/// the record is gone.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// What the record is.
    pub kind: RecordKind,
    /// Its key: the UUID's text (or, for egg variables, `<egg id>/<env variable>`).
    pub key: String,
    /// Its number, from 1.
    pub number: u64,
    /// The first [`SHORT_KEY_LEN`] characters of `key` (a server's Pterodactyl `identifier`).
    pub short: String,
    /// A name chosen by whoever created the record (a billing system's id), unique within
    /// the kind.
    pub external_id: Option<String>,
    /// What an API keeps about the record that Nexus' model does not (Pterodactyl's
    /// `first_name`, `last_name`, `language`, a server's `description`), by name; at most
    /// [`MAX_RECORD_EXTRA_BYTES`] as JSON.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// Length of [`RecordRef::short`].
pub const SHORT_KEY_LEN: usize = 8;
/// Longest [`RecordRef::key`] in bytes.
pub const MAX_RECORD_KEY_BYTES: usize = 191;
/// Longest [`RecordRef::external_id`] in bytes (Pterodactyl's limit).
pub const MAX_EXTERNAL_ID_BYTES: usize = 191;

/// Largest [`RecordRef::extra`], as JSON, in bytes.
pub const MAX_RECORD_EXTRA_BYTES: usize = 8 * 1024;

/// How a [`RecordRef`] is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefLookup<'a> {
    /// By number.
    Number(u64),
    /// By external id.
    External(&'a str),
    /// By the first [`SHORT_KEY_LEN`] characters of the key; several records may share them.
    Short(&'a str),
}

impl RecordRef {
    /// The short form of `key`.
    pub fn short_of(key: &str) -> String {
        key.chars().take(SHORT_KEY_LEN).collect()
    }
}

//! Typed identifiers. Every aggregate is keyed by a UUID wrapped in its own type so that a
//! `NodeId` can never be passed where a `ServerId` is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

typed_id!(
    /// Identifies a [`User`](crate::model::User).
    UserId
);
typed_id!(
    /// Identifies a [`Node`](crate::model::Node).
    NodeId
);
typed_id!(
    /// Identifies an [`Allocation`](crate::model::Allocation).
    AllocationId
);
typed_id!(
    /// Identifies an [`Egg`](crate::model::Egg).
    EggId
);
typed_id!(
    /// Identifies a [`Nest`](crate::model::Nest).
    NestId
);
typed_id!(
    /// Identifies a [`Server`](crate::model::Server).
    ServerId
);
typed_id!(
    /// Identifies a [`Schedule`](crate::model::Schedule).
    ScheduleId
);
typed_id!(
    /// Identifies a [`Task`](crate::model::Task) inside a schedule.
    TaskId
);
typed_id!(
    /// Identifies an [`ApiKey`](crate::model::ApiKey).
    ApiKeyId
);
typed_id!(
    /// Identifies an [`AuditEvent`](crate::model::AuditEvent).
    AuditEventId
);
typed_id!(
    /// Identifies a [`Backup`](crate::model::Backup).
    BackupId
);
typed_id!(
    /// Identifies a [`Location`](crate::model::Location).
    LocationId
);

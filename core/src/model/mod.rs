//! The domain model shared by the control plane and the data plane.
//!
//! These are plain `serde` types: every boundary (store, transport, HTTP) speaks them.

mod allocation;
mod api_key;
mod audit;
mod backup;
mod egg;
mod nest;
mod node;
mod record_ref;
mod schedule;
mod server;
mod subuser;
mod user;

pub use allocation::Allocation;
pub use api_key::{ApiKey, ApiKeyScope};
pub use audit::{AuditEvent, AuditSubject};
pub use backup::{Backup, BackupState};
pub use egg::{
    ConfigFile, ConfigParser, DoneMatcher, Egg, EggFeatures, EggImage, EggScript, EggSourceFormat, EggStartup,
    EggVariable, FindValue, StopMethod, StopSignal,
};
pub use nest::Nest;
pub use node::{Location, Node, NodeCapacity, NodeStatus, Overallocation};
pub use record_ref::{
    MAX_EXTERNAL_ID_BYTES, MAX_RECORD_EXTRA_BYTES, MAX_RECORD_KEY_BYTES, RecordKind, RecordRef, RefLookup,
    SHORT_KEY_LEN,
};
pub use schedule::{Schedule, Task, TaskAction};
pub use server::{Server, ServerLimits};
pub use subuser::{Subuser, UserTotp};
pub use user::{Permission, Role, User};

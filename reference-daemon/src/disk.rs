//! Disk limits (`disk_mb`) against everything that writes a server's directory, the server's
//! own process included.
//!
//! A server's directory is a bind mount: the container writes it directly, so no engine limit
//! applies and the file manager only sees its own writes. As Wings does, the daemon measures:
//!
//! * **Before every start** the usage is measured exactly (the server is stopped, so nothing
//!   writes) and a server over its limit does not start ([`AgentError::OverDiskQuota`], 507).
//! * **While servers run**, [`DiskWatcher`] rescans the directories of *active* servers every
//!   `disk_check_interval_secs` (a stopped server's usage only changes through the file
//!   manager, which counts its own writes), one server at a time on the blocking pool, and
//!   waits at least 10× as long as the last round took before the next one, so a node with
//!   huge directories spends at most ~10 % of one core on it. A running server found over its
//!   limit is told so on its console and stopped; the new usage also becomes the file
//!   manager's counter, so API writes over the limit are refused from then on.
//! * Every measurement is recorded with [`NodeAgent::record_disk_usage`]: stats events and
//!   `GET /api/servers/:id` report it.
//!
//! Limits of the mechanism: between two rounds a running server can write past its limit by
//! whatever it writes in one interval (bounded by the disk's write speed); a running server
//! renaming a large directory back and forth while it is walked can hide it from that walk
//! (the check before a start, with nothing running, is exact); and a round costs one `stat`
//! per entry. A file system with project quotas would enforce the limit in the
//! kernel instead; [`crate::host::DataRootMount`] reports whether the data root has them.

use crate::api::files::FileManagers;
use nexus_agent::{AgentError, NodeAgent};
use nexus_core::ids::ServerId;
use nexus_core::transport::{PowerAction, ServerSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Longest the walk of one server's files may take before the server is treated as over its
/// limit. Time spent waiting for a turn (other servers' walks, at most
/// [`NODE_MEASURES`](nexus_files::NODE_MEASURES) at once, each bounded by this) does not
/// count: only the server's own tree can make its measurement fail.
pub const MEASURE_DEADLINE: Duration = Duration::from_secs(60);

/// Measures a server's files, outside the tenant's job queue, its walk bounded by
/// [`MEASURE_DEADLINE`].
pub async fn measure(files: &nexus_files::ServerFiles) -> Result<u64, String> {
    files.measure(MEASURE_DEADLINE).await.map_err(|error| error.to_string())
}

/// The check before every start: the usage measured through the API's file managers (whose
/// counters it refreshes), a server over its `disk_mb` refused.
#[derive(Debug)]
pub struct StartDiskCheck(pub Arc<FileManagers>);

#[async_trait::async_trait]
impl nexus_agent::DiskCheck for StartDiskCheck {
    async fn check(&self, spec: &ServerSpec, data_dir: &std::path::Path) -> Result<(), AgentError> {
        if limit_bytes(spec).is_none() {
            return Ok(());
        }
        let files = self
            .0
            .open_for(spec, data_dir, false)
            .await
            .map_err(|e| AgentError::Prepare(format!("measuring disk usage: {}", e.message)))?;
        let used = measure(&files).await.map_err(|e| AgentError::Prepare(format!("measuring disk usage: {e}")))?;
        match over_limit(spec, used) {
            Some(over) => Err(over),
            None => Ok(()),
        }
    }
}

/// The limit of `spec` in bytes, if it has one.
pub fn limit_bytes(spec: &ServerSpec) -> Option<u64> {
    (spec.limits.disk_mb > 0).then(|| spec.limits.disk_mb.saturating_mul(MIB))
}

/// The error for a server using `used` bytes, if that is over its limit.
pub fn over_limit(spec: &ServerSpec, used: u64) -> Option<AgentError> {
    let limit = limit_bytes(spec)?;
    (used > limit).then(|| AgentError::OverDiskQuota {
        server: spec.id,
        used_mb: used.div_ceil(MIB),
        limit_mb: spec.limits.disk_mb,
    })
}

/// The periodic measurement of running servers; see the module docs.
pub struct DiskWatcher {
    agent: Arc<NodeAgent>,
    files: Arc<FileManagers>,
    interval: Duration,
}

impl std::fmt::Debug for DiskWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskWatcher").field("interval", &self.interval).finish_non_exhaustive()
    }
}

/// What one round found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Servers measured.
    pub measured: usize,
    /// Servers found over their limit and stopped.
    pub stopped: Vec<ServerId>,
}

impl DiskWatcher {
    /// A watcher measuring every `interval` (at least).
    pub fn new(agent: Arc<NodeAgent>, files: Arc<FileManagers>, interval: Duration) -> Self {
        Self { agent, files, interval }
    }

    /// Measures every active server once; stops those over their limit.
    pub async fn round(&self) -> Round {
        let mut round = Round::default();
        for status in self.agent.servers() {
            // Installing servers too: an install script can write as much as the server.
            if !(status.state.is_active() || status.state == nexus_core::lifecycle::ServerState::Installing) {
                continue;
            }
            let Some(spec) = self.agent.spec(status.server) else { continue };
            let files = match self.files.open_for(&spec, &self.agent.data_dir(spec.id), true).await {
                Ok(files) => files,
                Err(error) => {
                    tracing::warn!(server = %spec.id, %error, "disk check: cannot open the server's files");
                    continue;
                }
            };
            let used = match measure(&files).await {
                Ok(used) => used,
                Err(reason) => {
                    // Fail closed: a server whose usage cannot be measured (a tree too deep to
                    // walk, a measurement past its deadline) could be writing without limit.
                    if crate::disk::limit_bytes(&spec).is_some() {
                        tracing::warn!(server = %spec.id, %reason, "disk check: cannot measure; stopping the server");
                        self.stop(&spec, format!("its disk usage cannot be measured ({reason}): stopping the server"));
                        round.stopped.push(spec.id);
                    } else {
                        tracing::warn!(server = %spec.id, %reason, "disk check: cannot measure");
                    }
                    continue;
                }
            };
            round.measured += 1;
            self.agent.record_disk_usage(spec.id, used);
            if let Some(over) = over_limit(&spec, used) {
                tracing::warn!(server = %spec.id, used, "server over its disk limit; stopping it");
                self.stop(&spec, format!("{over}: stopping the server"));
                round.stopped.push(spec.id);
            }
        }
        round
    }

    /// Tells the server's console why, and stops it in the background (a graceful stop may
    /// take the whole stop timeout).
    /// An install is killed instead (which cancels it).
    fn stop(&self, spec: &ServerSpec, why: String) {
        self.agent.notice(spec.id, why);
        let agent = Arc::clone(&self.agent);
        let id = spec.id;
        let action = if agent.state(id) == Some(nexus_core::lifecycle::ServerState::Installing) {
            PowerAction::Kill
        } else {
            PowerAction::Stop
        };
        tokio::spawn(async move {
            if let Err(error) = agent.power(id, action).await {
                tracing::warn!(server = %id, %error, "stopping a server over its disk limit failed");
            }
        });
    }

    /// Runs rounds forever (spawn it; abort the task to stop).
    pub async fn run(self) {
        loop {
            let started = Instant::now();
            let round = self.round().await;
            let took = started.elapsed();
            tracing::debug!(measured = round.measured, stopped = round.stopped.len(), ?took, "disk check round");
            tokio::time::sleep(self.interval.max(took * 10)).await;
        }
    }
}

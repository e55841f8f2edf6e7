//! Nodes whose heartbeats stopped.

use crate::{ControlError, ControlPlane};
use chrono::{DateTime, Utc};
use nexus_core::ids::NodeId;

/// Silence after which a node is offline, in half heartbeat intervals (2½ intervals: one lost
/// or late heartbeat is tolerated). With the watch looking every quarter interval, a node is
/// offline within 3 intervals of its last heartbeat.
pub const SILENT_HALF_INTERVALS: u32 = 5;

impl ControlPlane {
    /// Marks every online node silent for 2½ intervals ([`SILENT_HALF_INTERVALS`]) at `now` offline
    /// (in the store and in placement, which then stops choosing it); returns them. A later
    /// heartbeat brings a node back ([`ingest`](ControlPlane::ingest)).
    pub async fn mark_silent_nodes_offline(&self, now: DateTime<Utc>) -> Result<Vec<NodeId>, ControlError> {
        let silence = self.config.heartbeat_interval.saturating_mul(SILENT_HALF_INTERVALS) / 2;
        let cutoff = chrono::Duration::from_std(silence)
            .ok()
            .and_then(|silence| now.checked_sub_signed(silence))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let offline = self.store.mark_stale_nodes_offline(cutoff).await?;
        for node in &offline {
            tracing::warn!(%node, ?silence, "node offline: no heartbeat");
            if let Err(e) = self.placement().set_online(*node, false) {
                tracing::debug!(%node, error = %e, "offline node unknown to placement");
            }
        }
        Ok(offline)
    }
}

/// Heartbeat intervals between two re-reads of placement from the store by
/// [`watch_heartbeats`](ControlPlane::watch_heartbeats).
pub const PLACEMENT_REFRESH_INTERVALS: u32 = 10;

impl ControlPlane {
    /// Runs [`mark_silent_nodes_offline`](Self::mark_silent_nodes_offline) every quarter
    /// heartbeat interval until `shutdown` resolves. A failing store is logged and tried again at the
    /// next tick.
    ///
    /// Every [`PLACEMENT_REFRESH_INTERVALS`] it also re-reads placement from the store
    /// ([`refresh_placement`](Self::refresh_placement)): other panel processes on the same
    /// database book and free room this process's placement does not see (their creates
    /// cannot overbook a node, which each create checks in its transaction, but a stale view
    /// keeps choosing nodes that are full).
    pub async fn watch_heartbeats(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.heartbeat_interval / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let refresh_every = self.config.heartbeat_interval.saturating_mul(PLACEMENT_REFRESH_INTERVALS);
        let mut refreshed = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.mark_silent_nodes_offline(Utc::now()).await {
                        tracing::warn!(error = %e, "heartbeat watch");
                    }
                    if refreshed.elapsed() >= refresh_every {
                        refreshed = tokio::time::Instant::now();
                        if let Err(e) = self.refresh_placement().await {
                            tracing::warn!(error = %e, "re-reading placement from the store");
                        }
                    }
                }
            }
        }
    }
}

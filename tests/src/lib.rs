//! The whole-system test harness: images of our own binaries built without a registry,
//! PostgreSQL, one or two panels and several `nexus-wings` daemons as containers on a private
//! Docker network ([`Cluster`]), and a client that drives it only through the panel's public
//! API ([`Api`]), as a user would.
//!
//! Every scenario in `system/` starts its own cluster and removes it (containers, the
//! servers' containers, the network, the data roots) when it ends, failed or not. The tests
//! need Docker and the `nexus-test/system` and `nexus-test/busybox` images
//! (`scripts/images/`); under `CI=true` a missing one fails the test instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod cluster;
pub mod console;
pub mod docker;
pub mod images;

pub use api::Api;
pub use cluster::{Cluster, ClusterConfig, Node};
pub use console::Console;

use serde_json::{Value, json};
use std::time::Duration;

/// How long a test waits for a state to be reached.
pub const T: Duration = Duration::from_secs(90);

/// Whether Docker answers and has the images the cluster needs; under `CI=true` a missing
/// one fails the test instead ([`require_service`](nexus_conformance::require_service)).
pub fn docker_ready() -> bool {
    let probe = [images::BASE_IMAGE, nexus_conformance::runtime::BUSYBOX_IMAGE].into_iter().try_for_each(|image| {
        match docker::try_docker(&["image", "inspect", image]) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("image {image}: {e} (run scripts/images/*.sh)")),
        }
    });
    nexus_conformance::require_service("Docker", probe)
}

/// Holds the other cluster tests of this process off while a cluster runs: two clusters at
/// once on two cores would make every timing the tests check meaningless.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The busybox echo egg of the tests (`egg-engine/tests/fixtures`).
pub fn busybox_egg() -> Vec<u8> {
    include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec()
}

/// Creates a server from `egg` for `owner` with `memory_mb`, placed by the panel; the
/// panel's answer.
pub async fn create_server(api: &Api, egg: &Value, owner: &Value, name: &str, memory_mb: u64) -> Value {
    let body = json!({ "name": name, "owner": owner, "egg": egg["id"], "limits": { "memory_mb": memory_mb } });
    api.expect(reqwest::Method::POST, "/api/v1/servers", Some(body), 201).await
}

/// Creates a busybox server on `node`, installs and starts it; its id once it runs.
pub async fn running_server_on(api: &Api, egg: &Value, owner: &Value, name: &str, node: &str) -> String {
    let body = json!({ "name": name, "owner": owner, "egg": egg["id"], "limits": { "memory_mb": 128 }, "node": node });
    let created = api.expect(reqwest::Method::POST, "/api/v1/servers", Some(body), 201).await;
    let id = created["server"]["id"].as_str().unwrap().to_owned();
    api.wait_state(&id, "installed").await;
    api.expect(reqwest::Method::POST, &format!("/api/v1/servers/{id}/power"), Some(json!({ "action": "start" })), 202)
        .await;
    api.wait_state(&id, "running").await;
    id
}

/// The `p`-th percentile (0..=100) of `values`, which it sorts.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Resident memory of process `pid` (a host PID), MiB, read from the kernel.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

//! Real game servers through their real eggs on a local Podman service: the shared scenarios
//! of `nexus_conformance::teeworlds` and `nexus_conformance::minetest` (what they
//! check, and what stands in for the eggs' installs, is documented there).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_conformance::minetest::minetest_egg_runs_on_a_terminal;
use nexus_conformance::require_service;
use nexus_conformance::teeworlds::teeworlds_egg_runs_listens_and_stops;
use nexus_core::runtime::ContainerId;
use nexus_runtime_podman::PodmanRuntime;
use std::future::Future;

async fn podman() -> Option<PodmanRuntime> {
    let connected = match std::env::var("NEXUS_TEST_PODMAN_SOCKET") {
        Ok(socket) if !socket.is_empty() => PodmanRuntime::connect(socket).await,
        _ => PodmanRuntime::connect_default().await,
    };
    match connected {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            require_service("Podman", Err(e.to_string()));
            None
        }
    }
}

/// The host PID of a running container's PID 1, from the engine.
fn pid_of(runtime: &PodmanRuntime) -> impl Fn(ContainerId) -> std::pin::Pin<Box<dyn Future<Output = i64> + Send>> {
    let runtime = runtime.clone();
    move |id: ContainerId| {
        let runtime = runtime.clone();
        Box::pin(async move { runtime.inspect(&id).await.expect("inspect").pid.expect("pid of the running server") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teeworlds_egg_runs_listens_and_stops_on_podman() {
    let Some(runtime) = podman().await else { return };
    teeworlds_egg_runs_listens_and_stops(&runtime, pid_of(&runtime)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minetest_egg_runs_on_a_terminal_on_podman() {
    let Some(runtime) = podman().await else { return };
    minetest_egg_runs_on_a_terminal(&runtime, pid_of(&runtime)).await;
}

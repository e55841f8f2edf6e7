//! The real Teeworlds egg on a local Podman service: the shared scenario of
//! `nexus_runtime_testing::teeworlds` (what it checks, and what stands in for the egg's
//! install, is documented there).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_core::conformance::require_service;
use nexus_runtime_podman::PodmanRuntime;
use nexus_runtime_testing::minetest::minetest_egg_runs_on_a_terminal;
use nexus_runtime_testing::teeworlds::teeworlds_egg_runs_listens_and_stops;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teeworlds_egg_runs_listens_and_stops_on_podman() {
    let connected = match std::env::var("NEXUS_TEST_PODMAN_SOCKET") {
        Ok(socket) if !socket.is_empty() => PodmanRuntime::connect(socket).await,
        _ => PodmanRuntime::connect_default().await,
    };
    let runtime = match connected {
        Ok(runtime) => runtime,
        Err(e) => {
            require_service("Podman", Err(e.to_string()));
            return;
        }
    };
    let pid_of = |id| {
        let runtime = runtime.clone();
        async move { runtime.inspect(&id).await.expect("inspect").pid.expect("pid of the running server") }
    };
    teeworlds_egg_runs_listens_and_stops(&runtime, pid_of).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minetest_egg_runs_on_a_terminal_on_podman() {
    let connected = match std::env::var("NEXUS_TEST_PODMAN_SOCKET") {
        Ok(socket) if !socket.is_empty() => PodmanRuntime::connect(socket).await,
        _ => PodmanRuntime::connect_default().await,
    };
    let runtime = match connected {
        Ok(runtime) => runtime,
        Err(e) => {
            require_service("Podman", Err(e.to_string()));
            return;
        }
    };
    let pid_of = |id| {
        let runtime = runtime.clone();
        async move { runtime.inspect(&id).await.expect("inspect").pid.expect("pid of the running server") }
    };
    minetest_egg_runs_on_a_terminal(&runtime, pid_of).await;
}

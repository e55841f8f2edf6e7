//! The real Teeworlds egg on the local Docker Engine: the shared scenario of
//! `nexus_runtime_testing::teeworlds` (what it checks, and what stands in for the egg's
//! install, is documented there).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_core::conformance::require_service;
use nexus_runtime_docker::DockerRuntime;
use nexus_runtime_testing::minetest::minetest_egg_runs_on_a_terminal;
use nexus_runtime_testing::teeworlds::teeworlds_egg_runs_listens_and_stops;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teeworlds_egg_runs_listens_and_stops_on_docker() {
    let runtime = match DockerRuntime::connect_default().await {
        Ok(runtime) => runtime,
        Err(e) => {
            require_service("Docker", Err(e.to_string()));
            return;
        }
    };
    let pid_of = |id: nexus_core::runtime::ContainerId| {
        let docker = runtime.client().clone();
        async move {
            let state = docker.inspect_container(&id.0, None).await.expect("inspect").state;
            state.and_then(|s| s.pid).expect("pid of the running server")
        }
    };
    teeworlds_egg_runs_listens_and_stops(&runtime, pid_of).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minetest_egg_runs_on_a_terminal_on_docker() {
    let runtime = match DockerRuntime::connect_default().await {
        Ok(runtime) => runtime,
        Err(e) => {
            require_service("Docker", Err(e.to_string()));
            return;
        }
    };
    let pid_of = |id: nexus_core::runtime::ContainerId| {
        let docker = runtime.client().clone();
        async move {
            let state = docker.inspect_container(&id.0, None).await.expect("inspect").state;
            state.and_then(|s| s.pid).expect("pid of the running server")
        }
    };
    minetest_egg_runs_on_a_terminal(&runtime, pid_of).await;
}

//! Real game servers through their real eggs on the local Docker Engine: the shared scenarios of
//! `nexus_conformance::teeworlds` and `nexus_conformance::minetest` (what they check,
//! and what stands in for the eggs' installs, is documented there).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_conformance::minetest::minetest_egg_runs_on_a_terminal;
use nexus_conformance::require_service;
use nexus_conformance::teeworlds::teeworlds_egg_runs_listens_and_stops;
use nexus_core::runtime::ContainerId;
use nexus_runtime_docker::DockerRuntime;
use std::future::Future;

async fn docker() -> Option<DockerRuntime> {
    match DockerRuntime::connect_default().await {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            require_service("Docker", Err(e.to_string()));
            None
        }
    }
}

/// The host PID of a running container's PID 1, from the engine.
fn pid_of(runtime: &DockerRuntime) -> impl Fn(ContainerId) -> std::pin::Pin<Box<dyn Future<Output = i64> + Send>> {
    let docker = runtime.client().clone();
    move |id: ContainerId| {
        let docker = docker.clone();
        Box::pin(async move {
            let state = docker.inspect_container(&id.0, None).await.expect("inspect").state;
            state.and_then(|s| s.pid).expect("pid of the running server")
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teeworlds_egg_runs_listens_and_stops_on_docker() {
    let Some(runtime) = docker().await else { return };
    teeworlds_egg_runs_listens_and_stops(&runtime, pid_of(&runtime)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minetest_egg_runs_on_a_terminal_on_docker() {
    let Some(runtime) = docker().await else { return };
    minetest_egg_runs_on_a_terminal(&runtime, pid_of(&runtime)).await;
}

//! The runtime conformance suite of `nexus-core`, run against a local Podman service.
//!
//! Needs `podman system service` on `$NEXUS_TEST_PODMAN_SOCKET` (or `$CONTAINER_HOST`, or
//! /run/podman/podman.sock; `scripts/services/podman.sh` starts it) and the busybox test
//! image (`scripts/images/busybox.sh`); without them every case skips, or fails under
//! `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use async_trait::async_trait;
use nexus_conformance::require_service;
use nexus_conformance::runtime::{EngineProbe, EngineView, Subject};
use nexus_core::ServerId;
use nexus_core::runtime::{ContainerId, RuntimeError, SERVER_LABEL};
use nexus_runtime_podman::PodmanRuntime;
use nexus_runtime_podman::podman_api::opts::{ContainerCreateOpts, ContainerListFilter, ContainerListOpts};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The socket the tests use: the setup script's, else the runtime's default.
async fn connect() -> Result<PodmanRuntime, RuntimeError> {
    match std::env::var("NEXUS_TEST_PODMAN_SOCKET") {
        Ok(socket) if !socket.is_empty() => PodmanRuntime::connect(socket).await,
        _ => PodmanRuntime::connect_default().await,
    }
}

/// The runtime and its probe, or `None` (after `require_service`) without a service.
async fn subject() -> Option<Subject> {
    let runtime = match connect().await {
        Ok(runtime) => Arc::new(runtime),
        Err(e) => {
            require_service("Podman", Err(e.to_string()));
            return None;
        }
    };
    Some(Subject { runtime: runtime.clone(), probe: Arc::new(PodmanProbe(runtime)) })
}

/// Reads what Podman recorded, through podman-api rather than the `Runtime` methods.
struct PodmanProbe(Arc<PodmanRuntime>);

#[async_trait]
impl EngineProbe for PodmanProbe {
    async fn inspect(&self, id: &ContainerId) -> Result<EngineView, RuntimeError> {
        // Runtime-specific inspect (not a `Runtime` method): what the engine recorded.
        Ok(self.0.inspect(id).await?.into())
    }

    async fn run_unmanaged(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<ContainerId, RuntimeError> {
        let containers = self.0.client().containers();
        let options =
            ContainerCreateOpts::builder().image(image).command(["sleep", "600"]).labels(labels).init(true).build();
        let created = containers.create(&options).await.map_err(failed)?;
        containers.get(&created.id).start(None).await.map_err(failed)?;
        Ok(ContainerId(created.id))
    }

    async fn server_containers(&self, server: ServerId) -> Result<Vec<ContainerId>, RuntimeError> {
        let filter = ContainerListFilter::LabelKeyVal(SERVER_LABEL.into(), server.to_string());
        let options = ContainerListOpts::builder().all(true).filter([filter]).build();
        let listed = self.0.client().containers().list(&options).await.map_err(failed)?;
        Ok(listed.into_iter().filter_map(|c| c.id).map(ContainerId).collect())
    }
}

/// A probe call that failed (the probe maps nothing: any failure fails the case).
fn failed(e: nexus_runtime_podman::podman_api::Error) -> RuntimeError {
    RuntimeError::Engine(format!("probe: {e}"))
}

mod conformance {
    nexus_conformance::runtime_conformance_tests!(super::subject);
}

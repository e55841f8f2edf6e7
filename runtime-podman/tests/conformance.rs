//! The runtime conformance suite of `nexus-conformance`, run against a local Podman service.
//!
//! Needs `podman system service` on `$NEXUS_TEST_PODMAN_SOCKET` (or `$CONTAINER_HOST`, or
//! /run/podman/podman.sock; `scripts/services/podman.sh` starts it) and the busybox test
//! image (`scripts/images/busybox.sh`); without them every case skips, or fails under
//! `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_conformance::require_service;
use nexus_conformance::runtime::Subject;
use nexus_core::runtime::RuntimeError;
use nexus_runtime_podman::PodmanRuntime;
use nexus_runtime_podman::probe::PodmanProbe;
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

mod conformance {
    nexus_conformance::runtime_conformance_tests!(super::subject);
}

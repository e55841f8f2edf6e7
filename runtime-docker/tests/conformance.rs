//! The runtime conformance suite of `nexus-conformance`, run against the local Docker Engine.
//!
//! Needs the engine (`docker info`) and the busybox test image (`scripts/images/busybox.sh`);
//! without them every case skips, or fails under `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_conformance::require_service;
use nexus_conformance::runtime::Subject;
use nexus_runtime_docker::DockerRuntime;
use nexus_runtime_docker::probe::DockerProbe;
use std::sync::Arc;

/// The runtime and its probe, or `None` (after `require_service`) without an engine.
async fn subject() -> Option<Subject> {
    match DockerRuntime::connect_default().await {
        Ok(runtime) => {
            let runtime = Arc::new(runtime);
            Some(Subject { runtime: runtime.clone(), probe: Arc::new(DockerProbe(runtime)) })
        }
        Err(e) => {
            require_service("Docker", Err(e.to_string()));
            None
        }
    }
}

mod conformance {
    nexus_conformance::runtime_conformance_tests!(super::subject);
}

//! The whole runtime conformance suite on `AuditedRuntime` over Docker: a runtime written
//! outside Nexus passes the same cases as ours. Needs Docker and the busybox test image
//! (`scripts/images/busybox.sh`); fails under `CI=true` without them.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_conformance::require_service;
use nexus_conformance::runtime::Subject;
use nexus_examples::audited_runtime::AuditedRuntime;
use nexus_runtime_docker::DockerRuntime;
use nexus_runtime_docker::probe::DockerProbe;
use std::sync::Arc;

/// The audited runtime allowing the suite's images, and a probe on the same engine.
async fn subject() -> Option<Subject> {
    match DockerRuntime::connect_default().await {
        Ok(docker) => Some(Subject {
            runtime: Arc::new(AuditedRuntime::new(docker.clone(), ["nexus-test/"])),
            probe: Arc::new(DockerProbe(Arc::new(docker))),
        }),
        Err(e) => {
            require_service("Docker", Err(e.to_string()));
            None
        }
    }
}

mod conformance {
    nexus_conformance::runtime_conformance_tests!(super::subject);
}

/// The binary runs, refuses an image off its list and prints its trail.
#[test]
fn the_custom_runtime_example_runs() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_custom_runtime")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && stdout.contains("Docker unavailable") {
        require_service("Docker", Err(stdout.into_owned()));
        return;
    }
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("refused: image `docker.io/library/alpine:latest`"), "{stdout}");
    assert!(stdout.contains("create") && stdout.contains("destroy"), "the trail lists the calls: {stdout}");
}

//! Runs the headless orchestrator example end to end on Docker and checks what it printed.
//! Needs Docker and the busybox test image; fails under `CI=true` without them.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use nexus_conformance::require_service;

#[test]
fn the_orchestrator_runs_a_server_from_an_egg_file_through_its_whole_life() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && stdout.contains("Docker unavailable") {
        require_service("Docker", Err(stdout.into_owned()));
        return;
    }
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for expected in [
        "imported egg `Busybox echo`",
        "Installing -> Installed",
        "[console] hi from nexus on port 301",
        "Starting -> Running (Ready)",
        "server-port=301",
        "max-players=8",
        "[console] echo: are you there?",
        "Stopping -> Stopped",
        "the server is Destroyed",
        "its row and its port are gone from the store: true",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
}

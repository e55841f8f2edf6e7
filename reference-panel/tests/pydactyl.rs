//! py-dactyl, a third-party Pterodactyl API client library from the Python package index
//! (installed by `scripts/services/pydactyl.sh`), drives `nexus-panel up` unchanged through a
//! whole provision → start → command → delete flow (`tests/pydactyl/flow.py`) on the real
//! Docker engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::up::{Up, create_key};
use std::process::Command;

/// The interpreter of the environment py-dactyl is installed in; under `CI=true` a missing
/// one fails the test.
fn pydactyl_python() -> Option<String> {
    let python = std::env::var("NEXUS_TEST_PYDACTYL_PYTHON").ok();
    let probe = match &python {
        Some(python) => match Command::new(python).args(["-c", "import pydactyl"]).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!("py-dactyl does not import: {}", String::from_utf8_lossy(&out.stderr))),
            Err(e) => Err(e.to_string()),
        },
        None => Err("NEXUS_TEST_PYDACTYL_PYTHON is not set (run scripts/services/pydactyl.sh)".to_owned()),
    };
    nexus_conformance::require_service("py-dactyl", probe).then(|| python.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_dactyl_provisions_starts_commands_and_deletes_a_server() {
    if !common::docker_ready() {
        return;
    }
    let Some(python) = pydactyl_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start_with_ports(&data, "30450-30459", "127.0.0.1:0");
    let session = up.admin_session().await;
    session.import_busybox_egg_into_nest("Pydactyl").await;
    let admin = "admin@nexus.local";
    let (application, client) = (create_key(&data, admin, "application"), create_key(&data, admin, "client"));
    let flow = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pydactyl/flow.py");
    let run =
        tokio::process::Command::new(&python).args([flow, &up.url, &application, &client, "30455-30456"]).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run).await.expect("the flow in time").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "py-dactyl flow failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("py-dactyl flow passed"), "{stdout}");
    up.interrupt();
}

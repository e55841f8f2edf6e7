//! py-dactyl, a third-party Pterodactyl API client library from the Python package index
//! (installed by `scripts/services/pydactyl.sh`), drives `nexus-panel up` unchanged through a
//! whole provision → start → command → delete flow (`tests/pydactyl/flow.py`) on the real
//! Docker engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use common::up::{BIN, Up};
use serde_json::json;
use std::process::Command;

fn create_key(data: &std::path::Path, kind: &str) -> String {
    let out = Command::new(BIN)
        .args(["keys", "create", "--user", "admin@nexus.local", "--kind", kind, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

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
    let password = up.password.clone().unwrap();
    let session = Client::login(&up.url, "admin@nexus.local", &password).await;
    let node = session.get("/api/v1/nodes").await["data"][0]["id"].as_str().unwrap().to_owned();
    up.node_containers = Some(format!("label={}={node}", nexus_agent::NODE_LABEL));
    let (status, nest) = session
        .call(reqwest::Method::POST, "/api/v1/nests", Some(json!({ "name": "Pydactyl", "description": "" })))
        .await;
    assert_eq!(status, 201, "{nest}");
    let response = session
        .http
        .post(format!("{}/api/v1/nests/{}/eggs", up.url, nest["id"].as_str().unwrap()))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .header("content-type", "application/json")
        .body(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (application, client) = (create_key(&data, "application"), create_key(&data, "client"));
    let flow = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pydactyl/flow.py");
    let run =
        tokio::process::Command::new(&python).args([flow, &up.url, &application, &client, "30455-30456"]).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run).await.expect("the flow in time").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "py-dactyl flow failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("py-dactyl flow passed"), "{stdout}");
    up.interrupt();
}

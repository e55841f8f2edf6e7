//! A custom `Runtime` in use: Docker behind a node-wide image allow-list with an audit trail
//! (`nexus_examples::audited_runtime`). Creates a container of an allowed image, runs it,
//! refuses one of an image off the list, and prints the trail.
//!
//! ```text
//! cargo run -p nexus-examples --bin custom_runtime
//! ```
//! Needs Docker and the busybox test image (`scripts/images/busybox.sh`).

use nexus_core::ids::ServerId;
use nexus_core::runtime::{ContainerSpec, Runtime};
use nexus_examples::audited_runtime::AuditedRuntime;
use nexus_runtime_docker::DockerRuntime;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let docker = DockerRuntime::connect_default().await.map_err(|e| format!("Docker unavailable: {e}"))?;
    let runtime = AuditedRuntime::new(docker, ["nexus-test/"]);
    let data = tempfile::tempdir()?;

    let mut spec = ContainerSpec::new(ServerId::new(), "nexus-test/busybox:latest", data.path());
    spec.command = Some(vec!["sh".into(), "-c".into(), "echo hello from an allowed image".into()]);
    let id = runtime.create(&spec).await?;
    let ran = async {
        runtime.start(&id).await?;
        runtime.wait(&id).await
    }
    .await;
    runtime.destroy(&id).await?;
    println!("allowed image ran and exited with {}", ran?.code);

    let mut off_list = ContainerSpec::new(ServerId::new(), "docker.io/library/alpine:latest", data.path());
    off_list.command = Some(vec!["true".into()]);
    match runtime.create(&off_list).await {
        Err(e) => println!("refused: {e}"),
        Ok(id) => {
            runtime.destroy(&id).await?;
            return Err("an image off the list was accepted".into());
        }
    }

    println!("trail:");
    for entry in runtime.trail() {
        println!(
            "  {} {} {} {}",
            entry.at.format("%H:%M:%S%.3f"),
            entry.action,
            entry.target,
            entry.error.as_deref().unwrap_or("ok")
        );
    }
    Ok(())
}

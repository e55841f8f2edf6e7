//! [`PodmanProbe`]: what the runtime conformance suite needs to ask Podman directly (what the
//! engine recorded, a container Nexus does not manage, every container of a server).

use crate::PodmanRuntime;
use crate::podman_api::opts::{ContainerCreateOpts, ContainerListFilter, ContainerListOpts};
use async_trait::async_trait;
use nexus_conformance::runtime::{EngineProbe, EngineView};
use nexus_core::ids::ServerId;
use nexus_core::runtime::{ContainerId, RuntimeError, SERVER_LABEL};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reads what Podman recorded, through podman-api rather than the `Runtime` methods.
#[derive(Debug)]
pub struct PodmanProbe(pub Arc<PodmanRuntime>);

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
fn failed(e: crate::podman_api::Error) -> RuntimeError {
    RuntimeError::Engine(format!("probe: {e}"))
}

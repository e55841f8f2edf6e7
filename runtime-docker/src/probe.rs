//! [`DockerProbe`]: what the runtime conformance suite needs to ask Docker directly (what the
//! engine recorded, a container Nexus does not manage, every container of a server).

use crate::DockerRuntime;
use crate::bollard::models::{ContainerCreateBody, HostConfig};
use crate::bollard::query_parameters::{CreateContainerOptions, ListContainersOptionsBuilder};
use async_trait::async_trait;
use nexus_conformance::runtime::{EngineProbe, EngineView};
use nexus_core::ids::ServerId;
use nexus_core::runtime::{ContainerId, RuntimeError, SERVER_LABEL};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Reads what Docker recorded, through bollard directly rather than the `Runtime` methods.
#[derive(Debug)]
pub struct DockerProbe(pub Arc<DockerRuntime>);

fn engine(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine(e.to_string())
}

#[async_trait]
impl EngineProbe for DockerProbe {
    async fn inspect(&self, id: &ContainerId) -> Result<EngineView, RuntimeError> {
        // Runtime-specific inspect (not a `Runtime` method): what the engine recorded.
        Ok(self.0.inspect(id).await?.into())
    }

    async fn run_unmanaged(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<ContainerId, RuntimeError> {
        let docker = self.0.client();
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(vec!["sleep".into(), "600".into()]),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            host_config: Some(HostConfig { init: Some(true), ..Default::default() }),
            ..Default::default()
        };
        let created = docker.create_container(None::<CreateContainerOptions>, body).await.map_err(engine)?;
        docker.start_container(&created.id, None).await.map_err(engine)?;
        Ok(ContainerId(created.id))
    }

    async fn server_containers(&self, server: ServerId) -> Result<Vec<ContainerId>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{SERVER_LABEL}={server}")])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let listed = self.0.client().list_containers(Some(options)).await.map_err(engine)?;
        Ok(listed.into_iter().filter_map(|c| c.id).map(ContainerId).collect())
    }
}

//! The engine calls the shared stop and install sequences of
//! [`nexus_engine`] run on, over bollard.

use crate::console::{self, Streams};
use crate::error::{About, engine_error, is_not_found};
use crate::spec;
use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use nexus_core::console::ConsoleLine;
use nexus_core::model::StopSignal;
use nexus_core::runtime::{ConsoleInput, ExitStatus, InstallSpec, RuntimeError};
use nexus_engine::container;
use nexus_engine::install::InstallEngine;
use nexus_engine::stop::StopEngine;
use std::path::Path;

/// The Docker Engine as the shared sequences see it.
#[derive(Clone, Debug)]
pub(crate) struct DockerEngine(pub(crate) Docker);

#[async_trait]
impl StopEngine for DockerEngine {
    async fn exit_if_stopped(&self, id: &str) -> Result<Option<ExitStatus>, RuntimeError> {
        let raw = self.0.inspect_container(id, None::<InspectContainerOptions>).await;
        let state = raw.map_err(|e| engine_error(e, About::Container(id)))?.state.unwrap_or_default();
        Ok((!state.running.unwrap_or(false))
            .then(|| ExitStatus { code: state.exit_code.unwrap_or(0), oom_killed: state.oom_killed.unwrap_or(false) }))
    }

    async fn open_stdin(&self, id: &str) -> Result<ConsoleInput, RuntimeError> {
        Ok(console::attach(&self.0, id, Streams { stdin: true, output: false }).await?.input)
    }

    async fn signal(&self, id: &str, signal: StopSignal) -> Result<(), RuntimeError> {
        let options = KillContainerOptionsBuilder::default().signal(signal.name()).build();
        self.0.kill_container(id, Some(options)).await.map_err(|e| engine_error(e, About::Container(id)))
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        crate::wait(&self.0, id).await
    }
}

#[async_trait]
impl InstallEngine for DockerEngine {
    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.0.remove_container(name, Some(options)).await {
            Err(e) if !is_not_found(&e) => Err(engine_error(e, About::Container(name))),
            _ => Ok(()),
        }
    }

    async fn create(&self, name: &str, spec: &InstallSpec, script_dir: &Path) -> Result<(), RuntimeError> {
        let body = spec::install_container(spec, script_dir)?;
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .0
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine_error(e, About::Create { image: &spec.image }))?;
        container::log_create_warnings(spec.server, &created.warnings);
        Ok(())
    }

    async fn output(&self, name: &str) -> Result<BoxStream<'static, Result<ConsoleLine, RuntimeError>>, RuntimeError> {
        let attached = console::attach(&self.0, name, Streams { stdin: false, output: true }).await?;
        Ok(console::lines(attached.output, name.to_owned()))
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.0.start_container(name, None).await.map_err(|e| engine_error(e, About::Container(name)))
    }

    async fn wait(&self, name: &str) -> Result<ExitStatus, RuntimeError> {
        crate::wait(&self.0, name).await
    }
}

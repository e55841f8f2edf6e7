//! The engine calls, as plain methods over podman-api (and the raw libpod calls of
//! `libpod.rs` where podman-api falls short), with errors mapped; and the small engine traits
//! of `nexus_engine` the shared stop and install sequences run on.

use crate::console::{self, Streams};
use crate::error::{About, api_error};
use crate::libpod::Libpod;
use crate::spec;
use async_trait::async_trait;
use futures::stream::BoxStream;
use nexus_core::ServerId;
use nexus_core::console::ConsoleLine;
use nexus_core::model::StopSignal;
use nexus_core::runtime::{ConsoleInput, ExitStatus, InstallSpec, RuntimeError};
use nexus_engine::container;
use nexus_engine::install::InstallEngine;
use nexus_engine::stop::StopEngine;
use podman_api::Podman;
use podman_api::models::InspectContainerData;
use podman_api::opts::ContainerDeleteOpts;
use std::path::{Path, PathBuf};

/// The engine behind a `PodmanRuntime`: cheap to clone (two client handles and a path).
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) podman: Podman,
    pub(crate) libpod: Libpod,
    /// Where install scripts are staged (the engine must see the same path).
    pub(crate) install_root: PathBuf,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("libpod", &self.libpod).finish_non_exhaustive()
    }
}

/// The wait conditions that make libpod's wait mean Docker's `not-running`: a container that
/// was created (or re-initialised by an attach) but not started does not block a wait.
/// (`created` covers libpod's `configured` state too.)
const NOT_RUNNING: &str = "condition=created&condition=stopped&condition=exited";

impl Api {
    /// Creates a container of `image` for `server`; returns its id. libpod's create never
    /// pulls, so a missing image fails here.
    pub(crate) async fn create(
        &self,
        body: &spec::CreateBody,
        server: ServerId,
        image: &str,
    ) -> Result<String, RuntimeError> {
        let created = self.libpod.post_json("/containers/create", body, About::Create { image }).await?;
        let warnings: Vec<String> = created["Warnings"]
            .as_array()
            .map(|w| w.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        container::log_create_warnings(server, &warnings);
        created["Id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| RuntimeError::Engine(format!("container create answered without an id: {created}")))
    }

    pub(crate) async fn inspect(&self, id: &str) -> Result<InspectContainerData, RuntimeError> {
        self.podman.containers().get(id).inspect().await.map_err(|e| api_error(e, About::Container(id)))
    }

    /// How the process ended, or `None` while it runs; a container that never ran counts as
    /// ended with code 0.
    pub(crate) async fn exit_if_stopped(&self, id: &str) -> Result<Option<ExitStatus>, RuntimeError> {
        let state = self.inspect(id).await?.state;
        let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        Ok((!running).then(|| ExitStatus {
            code: state.as_ref().and_then(|s| s.exit_code).map_or(0, i64::from),
            oom_killed: state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false),
        }))
    }

    pub(crate) async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self.podman.containers().get(id).start(None).await {
            Ok(()) => {
                tracing::info!(container = %id, "started container");
                Ok(())
            }
            // 304: already running, which is what was asked for.
            Err(podman_api::Error::Fault { code, .. }) if code.as_u16() == 304 => Ok(()),
            Err(e) => Err(api_error(e, About::Container(id))),
        }
    }

    pub(crate) async fn signal(&self, id: &str, signal: StopSignal) -> Result<(), RuntimeError> {
        self.podman
            .containers()
            .get(id)
            .send_signal(signal.name())
            .await
            .map_err(|e| api_error(e, About::Container(id)))
    }

    /// Waits until container `id` is not running and returns how its process ended. The exit
    /// code is libpod's answer (a raw call: podman-api drops it); the OOM flag comes from the
    /// container state.
    pub(crate) async fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        let path = format!("/containers/{id}/wait?{NOT_RUNNING}&interval=100ms");
        let answer = self.libpod.post_text(&path, About::Container(id)).await?;
        let code = answer
            .trim()
            .parse::<i64>()
            .map_err(|_| RuntimeError::Engine(format!("wait on {id} answered {answer:?}, not an exit code")))?;
        let oom_killed = match self.inspect(id).await {
            Ok(data) => data.state.and_then(|s| s.oom_killed).unwrap_or(false),
            // Removed right after it exited: the exit code is all there is.
            Err(RuntimeError::ContainerNotFound(_)) => false,
            Err(e) => return Err(e),
        };
        Ok(ExitStatus { code, oom_killed })
    }

    /// Force-removes container `id` (killing it at once, no stop timeout) with its anonymous
    /// volumes; absent is fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = ContainerDeleteOpts::builder().force(true).volumes(true).timeout(0).build();
        match self.podman.containers().get(id).delete(&options).await.map_err(|e| api_error(e, About::Container(id))) {
            Ok(()) | Err(RuntimeError::ContainerNotFound(_)) => Ok(()),
            // Someone else is removing it already: the outcome is the one asked for.
            Err(RuntimeError::Conflict(message)) if message.contains("in progress") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Attaches `stdin` and/or `output`; whether the container has a terminal (and so how its
    /// output is framed) is read from the engine first.
    pub(crate) async fn attach(&self, id: &str, stdin: bool, output: bool) -> Result<console::Attached, RuntimeError> {
        let tty = output && self.inspect(id).await?.config.and_then(|c| c.tty).unwrap_or(false);
        console::attach(&self.libpod, id, Streams { stdin, output, tty }).await
    }
}

#[async_trait]
impl StopEngine for Api {
    async fn exit_if_stopped(&self, id: &str) -> Result<Option<ExitStatus>, RuntimeError> {
        Api::exit_if_stopped(self, id).await
    }

    /// A stdin-only attachment of a terminal container drops what is written right after it
    /// opens about half the time under load (the terminal never echoes it: libpod answers
    /// before conmon takes the input). With the output attached too that has not been seen, so
    /// the output is attached and drained until the input is dropped.
    async fn open_stdin(&self, id: &str) -> Result<ConsoleInput, RuntimeError> {
        let attached = self.attach(id, true, true).await?;
        let mut output = attached.output;
        let drain = tokio::spawn(async move { while futures::StreamExt::next(&mut output).await.is_some() {} });
        Ok(Box::pin(DrainedInput { input: attached.input, drain }))
    }

    async fn signal(&self, id: &str, signal: StopSignal) -> Result<(), RuntimeError> {
        Api::signal(self, id, signal).await
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        Api::wait(self, id).await
    }
}

#[async_trait]
impl InstallEngine for Api {
    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        Api::remove(self, name).await
    }

    async fn create(&self, name: &str, spec: &InstallSpec, script_dir: &Path) -> Result<(), RuntimeError> {
        let options = spec::install_container(name, spec, script_dir)?;
        Api::create(self, &options, spec.server, &spec.image).await.map(drop)
    }

    async fn output(&self, name: &str) -> Result<BoxStream<'static, Result<ConsoleLine, RuntimeError>>, RuntimeError> {
        Ok(self.attach(name, false, true).await?.output)
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        Api::start(self, name).await
    }

    async fn wait(&self, name: &str) -> Result<ExitStatus, RuntimeError> {
        Api::wait(self, name).await
    }
}

/// A console input whose attachment's output is drained by `drain`, stopped when the input is
/// dropped (the connection closes with both).
struct DrainedInput {
    input: ConsoleInput,
    drain: tokio::task::JoinHandle<()>,
}

impl Drop for DrainedInput {
    fn drop(&mut self) {
        self.drain.abort();
    }
}

impl tokio::io::AsyncWrite for DrainedInput {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.input.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.input.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.input.as_mut().poll_shutdown(cx)
    }
}

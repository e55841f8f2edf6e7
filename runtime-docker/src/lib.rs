//! # nexus-runtime-docker
//!
//! [`DockerRuntime`] implements [`nexus_core::runtime::Runtime`] over the Docker Engine API
//! (through [`bollard`]) on the local engine's unix socket.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nexus_core::runtime::RuntimeError> {
//! use nexus_core::runtime::Runtime;
//! use nexus_runtime_docker::DockerRuntime;
//!
//! let docker = DockerRuntime::connect_default().await?; // $DOCKER_HOST or /var/run/docker.sock
//! assert!(docker.image_exists("nexus-test/busybox:latest").await?);
//! # Ok(()) }
//! ```
//!
//! What it does, in Docker terms:
//!
//! | `Runtime` | Docker |
//! |---|---|
//! | `create` | `POST /containers/create` named `nexus-server-<uuid>`, labels `io.nexus.server`/`io.nexus.managed`, `Init`, the data directory bind-mounted at `/home/container` (also the working directory), every port published for TCP and UDP, limits in `HostConfig`, stdin open without a TTY. Never pulls: a missing image is `ImageNotFound`. |
//! | `attach` | `POST /containers/{id}/attach` (stdin, stdout, stderr, no log replay), frames split into lines by [`LineSplitter`](nexus_core::console::LineSplitter) per stream |
//! | `stop` | the shared sequence of [`nexus_engine::stop`]: a console command written to stdin through a stdin-only attach, or a signal sent with `kill`; then `wait` up to the timeout, then `SIGKILL` |
//! | `stats` | `GET /containers/{id}/stats` (streamed), CPU % from successive counters, cut when the container stops |
//! | `run_install` | [`nexus_engine::install`]: a container `nexus-install-<uuid>` with the script directory read-only at `/mnt/install` and the data directory at `/mnt/server`, output attached before start, always removed |
//! | `list_managed` | `GET /containers/json?all=1&filters={"label":["io.nexus.managed"]}` |
//!
//! Limits: memory (`Memory`), swap (`MemorySwap` = memory + swap, `-1` unlimited), CPU
//! (`CpuQuota` over a 100 ms `CpuPeriod`), pids (`PidsLimit`), block-IO weight
//! (`BlkioWeight`; Docker discards it, with a warning this crate logs, on kernels without
//! proportional IO weights). `disk_mb` is not a container limit (the data directory is a bind
//! mount) and is left to the node agent. [`DockerRuntime::inspect`] reads back what the
//! engine recorded.
//!
//! **Read the console or drop it.** Docker copies a container's output to every attached
//! client synchronously, so an attachment whose `output` nobody reads eventually blocks the
//! server's writes to stdout. Keep reading [`ConsoleIo::output`] (a node agent attaches once
//! and fans lines out) or drop the whole [`ConsoleIo`]. Stops by console command attach
//! stdin only, so they never hold output back.
//!
//! Engine errors map to [`RuntimeError`] by HTTP status and by what the request was about:
//! 404 is `ImageNotFound` (image lookups, creates) or `ContainerNotFound`, 409 `Conflict`,
//! 400 `InvalidSpec`, a published port already in use `Conflict`, an unreachable socket
//! `Unavailable`, anything else `Engine`.

mod console;
mod engine;
mod error;
#[cfg(feature = "conformance")]
pub mod probe;
mod spec;
mod stats;

pub use bollard;
pub use nexus_engine::container::ContainerDetails;
pub use nexus_engine::install::{INSTALL_LABEL, MAX_INSTALL_LOG_BYTES};

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, WaitContainerOptionsBuilder,
};
use engine::DockerEngine;
use error::{About, engine_error, is_not_found};
use futures::stream::{BoxStream, StreamExt};
use nexus_core::ServerId;
use nexus_core::console::ConsoleLine;
use nexus_core::model::{StopMethod, StopSignal};
use nexus_core::runtime::{
    ConsoleIo, ContainerId, ContainerSpec, ExitStatus, InstallOutcome, InstallSpec, MANAGED_LABEL, ManagedContainer,
    ResourceStats, Runtime, RuntimeError, SERVER_LABEL, StopOutcome, container_name,
};
use nexus_engine::stop::StopEngine;
use nexus_engine::{container, install, stop};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Docker socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Timeout of one engine request until its response headers arrive (streams such as attach,
/// stats and wait then run as long as they need).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A [`Runtime`] over the local Docker Engine.
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    install_root: PathBuf,
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (`unix://` only) or, when it is unset,
    /// to [`DEFAULT_SOCKET`].
    pub async fn connect_default() -> Result<Self, RuntimeError> {
        Self::connect(container::socket_from_env("DOCKER_HOST", DEFAULT_SOCKET)?).await
    }

    /// Connects to the engine listening on the unix socket at `socket`.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        let socket = socket.as_ref();
        let path =
            socket.to_str().ok_or_else(|| RuntimeError::Unavailable(format!("socket path {socket:?} is not UTF-8")))?;
        let docker = Docker::connect_with_socket(path, REQUEST_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
            .map_err(|e| RuntimeError::Unavailable(format!("{path}: {e}")))?;
        Self::from_client(docker).await
    }

    /// Wraps an already configured bollard client. Negotiates the API version down to the
    /// engine's (so older engines work) and checks the engine answers.
    pub async fn from_client(docker: Docker) -> Result<Self, RuntimeError> {
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        docker.ping().await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        tracing::debug!(api = %docker.client_version(), "connected to Docker");
        Ok(Self { docker, install_root: std::env::temp_dir().join("nexus-install") })
    }

    /// Uses `dir` for install scripts instead of `$TMPDIR/nexus-install`. The engine must see
    /// the same path (it bind-mounts a subdirectory into the install container).
    pub fn with_install_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.install_root = dir.into();
        self
    }

    /// The bollard client, for engine calls this crate does not wrap.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// What the engine recorded for container `id`: name, labels, limits, init, state.
    pub async fn inspect(&self, id: &ContainerId) -> Result<ContainerDetails, RuntimeError> {
        let raw = self.inspect_raw(&id.0).await?;
        let config = raw.config.unwrap_or_default();
        let host = raw.host_config.unwrap_or_default();
        let state = raw.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let ran = state.started_at.as_deref().is_some_and(|s| !s.starts_with("0001-"));
        Ok(ContainerDetails {
            id: ContainerId(raw.id.unwrap_or_else(|| id.0.clone())),
            name: raw.name.unwrap_or_default().trim_start_matches('/').to_owned(),
            image: config.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            limits: spec::limits_from(&host),
            init: host.init.unwrap_or(false),
            running,
            pid: state.pid.filter(|pid| running && *pid > 0),
            exit: (!running && ran).then(|| ExitStatus {
                code: state.exit_code.unwrap_or(0),
                oom_killed: state.oom_killed.unwrap_or(false),
            }),
        })
    }

    async fn inspect_raw(&self, id: &str) -> Result<bollard::models::ContainerInspectResponse, RuntimeError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error(e, About::Container(id)))
    }

    /// The engine as the shared stop and install sequences see it.
    fn engine(&self) -> DockerEngine {
        DockerEngine(self.docker.clone())
    }
}

/// Waits until container `id` is not running and returns how its process ended.
pub(crate) async fn wait(docker: &Docker, id: &str) -> Result<ExitStatus, RuntimeError> {
    let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
    let code = match docker.wait_container(id, Some(options)).next().await {
        Some(Ok(response)) => response.status_code,
        // bollard reports a non-zero exit as an error; for us it is the answer.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        Some(Err(e)) => return Err(engine_error(e, About::Container(id))),
        None => return Err(RuntimeError::Engine(format!("wait on {id} ended without a status"))),
    };
    // The wait answer has no OOM flag; the container state has.
    let oom_killed = match docker.inspect_container(id, None::<InspectContainerOptions>).await {
        Ok(raw) => raw.state.and_then(|s| s.oom_killed).unwrap_or(false),
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(engine_error(e, About::Container(id))),
    };
    Ok(ExitStatus { code, oom_killed })
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine_error(e, About::Image(image))),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let name = container_name(spec.server);
        let body = spec::server_container(spec)?;
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        // The create API never pulls (only the CLI does), so a missing image is a 404 here.
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine_error(e, About::Create { image: &spec.image }))?;
        container::log_create_warnings(spec.server, &created.warnings);
        tracing::info!(server = %spec.server, container = %created.id, image = %spec.image, "created container");
        Ok(ContainerId(created.id))
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.docker
            .start_container(&id.0, None::<StartContainerOptions>)
            .await
            .map_err(|e| engine_error(e, About::Container(&id.0)))?;
        tracing::info!(container = %id, "started container");
        Ok(())
    }

    async fn stop(
        &self,
        id: &ContainerId,
        method: &StopMethod,
        timeout: Duration,
    ) -> Result<StopOutcome, RuntimeError> {
        stop::stop(&self.engine(), id, method, timeout).await
    }

    async fn kill(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError> {
        self.engine().signal(&id.0, signal).await
    }

    async fn destroy(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(&id.0, Some(options)).await {
            Ok(()) => {
                tracing::info!(container = %id, "destroyed container");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => match engine_error(e, About::Container(&id.0)) {
                // Someone else is removing it already: the outcome is the one asked for.
                RuntimeError::Conflict(message) if message.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn output_since_start(&self, id: &ContainerId, max_lines: usize) -> Result<Vec<ConsoleLine>, RuntimeError> {
        let state = self.inspect_raw(&id.0).await?.state.unwrap_or_default();
        // Seconds, as the API takes them: a line of the same second before the start would
        // come too, but a container of this crate runs once (a new one per start).
        let since = state
            .started_at
            .as_deref()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map_or(0, |at| i32::try_from(at.timestamp()).unwrap_or(0));
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .since(since)
            .tail(&max_lines.to_string())
            .build();
        let frames = self.docker.logs(&id.0, Some(options));
        nexus_engine::console::last_lines(console::lines(frames, id.0.clone()), max_lines).await
    }

    async fn attach(&self, id: &ContainerId) -> Result<ConsoleIo, RuntimeError> {
        let attached = console::attach(&self.docker, &id.0, console::Streams { stdin: true, output: true }).await?;
        Ok(ConsoleIo { input: attached.input, output: console::lines(attached.output, id.0.clone()) })
    }

    async fn stats(
        &self,
        id: &ContainerId,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        // The stats endpoint fails only once its stream is read; inspecting first gives the
        // caller a typed error from the call itself.
        let raw = self.inspect_raw(&id.0).await?;
        let full_id = raw.id.unwrap_or_else(|| id.0.clone());
        Ok(stats::stream(self.docker.clone(), full_id))
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError> {
        wait(&self.docker, &id.0).await
    }

    async fn run_install(
        &self,
        spec: &InstallSpec,
        live: Option<nexus_core::runtime::LiveOutput>,
    ) -> Result<InstallOutcome, RuntimeError> {
        install::run_install(&self.engine(), &self.install_root, spec, live).await
    }

    async fn remove_install(&self, server: ServerId) -> Result<(), RuntimeError> {
        install::remove_until_gone(&self.engine(), &install::install_container_name(server)).await
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        let filters = HashMap::from([("label", vec![MANAGED_LABEL])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine_error(e, About::Container("<managed containers>")))?;
        let managed = summaries.into_iter().filter_map(|summary| {
            let running = summary.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            let server = summary.labels.as_ref().and_then(|l| l.get(SERVER_LABEL)).map(String::as_str);
            container::managed_container(
                summary.id.clone().unwrap_or_default(),
                server,
                summary.image.clone().unwrap_or_default(),
                running,
            )
        });
        Ok(managed.collect())
    }
}

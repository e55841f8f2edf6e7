//! # nexus-runtime-podman
//!
//! [`PodmanRuntime`] implements [`nexus_core::runtime::Runtime`] over Podman's libpod REST API
//! (`podman system service`) on a unix socket, through [`podman_api`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), nexus_core::runtime::RuntimeError> {
//! use nexus_core::runtime::Runtime;
//! use nexus_runtime_podman::PodmanRuntime;
//!
//! let podman = PodmanRuntime::connect_default().await?; // $CONTAINER_HOST or /run/podman/podman.sock
//! assert!(podman.image_exists("nexus-test/busybox:latest").await?);
//! # Ok(()) }
//! ```
//!
//! What it does, in libpod terms (the behaviour is the Docker runtime's, checked by the same
//! conformance suite):
//!
//! | `Runtime` | libpod |
//! |---|---|
//! | `create` | `POST /libpod/containers/create` named `nexus-server-<uuid>`, labels `io.nexus.server`/`io.nexus.managed`/`io.nexus.image`, `init`, the data directory bind-mounted at `/home/container` (also the working directory), every port published for TCP and UDP, limits as OCI `LinuxResources`, stdin open without a TTY. Never pulls: a missing image is `ImageNotFound`. |
//! | `attach` | `POST /libpod/containers/{id}/attach` upgraded to a raw stream (stdin, stdout, stderr, no log replay), frames split into lines by [`LineSplitter`](nexus_core::console::LineSplitter) per stream |
//! | `stop` | the shared sequence of [`nexus_engine::stop`]: a console command through a stdin-only attach, or a signal (`kill?signal=`); `wait` up to the timeout; then `SIGKILL` |
//! | `wait` | `POST /libpod/containers/{id}/wait` on the not-running states; its answer is the exit code |
//! | `stats` | `GET /libpod/containers/stats?stream=true&interval=1`, CPU % from successive counters, cut when the container stops |
//! | `run_install` | [`nexus_engine::install`]: a container `nexus-install-<uuid>` with the script directory read-only at `/mnt/install` and the data directory at `/mnt/server`, output attached before start, always removed |
//! | `list_managed` | `GET /libpod/containers/json?all=true&filters={"label":["io.nexus.managed"]}` |
//! | `destroy` | `DELETE /libpod/containers/{id}?force=true&v=true&timeout=0` |
//!
//! ## podman-api and raw libpod calls
//!
//! Most calls go through podman-api. Three do not, because podman-api 0.11 gets them wrong
//! against Podman 4.3 (details in `libpod.rs`): attach (its multiplexer panics on unknown
//! frames and ends silently on short reads), wait (it drops the exit code) and the stats
//! stream (it parses each HTTP chunk as whole JSON values). Those go straight to the same
//! socket with hyper.
//!
//! ## Image names
//!
//! Podman qualifies short names of local images: an image imported as
//! `nexus-test/busybox:latest` is stored and listed as `localhost/nexus-test/busybox:latest`.
//! Lookups and creates accept the short name (Podman resolves it to the local image, and
//! never pulls here). So that [`ManagedContainer::image`] is the reference the spec gave,
//! the runtime records it in the `io.nexus.image` label and reports that; containers without
//! the label report Podman's name minus `localhost/`.
//!
//! ## Engine settings this runtime relies on
//!
//! * **Console stdin stays open across detaches.** Podman starts `conmon` without
//!   `--leave-stdin-open`, so by default a container's stdin is closed as soon as any attach
//!   connection ends: closing one console (or restarting the node daemon) would give the game
//!   server end-of-input. `conmon-wrapper.sh` in this crate adds the flag for Nexus server
//!   containers; install it and point Podman's `conmon_path` at it (containers.conf
//!   `[engine]`), as `scripts/services/podman.sh` does. [`PodmanRuntime::connect`] warns when
//!   the engine's conmon is not that wrapper.
//! * Rootful Podman with `runc` and the `cgroupfs` manager on hosts without systemd (crun
//!   fails on cgroup v1 layouts with a named systemd hierarchy).
//! * Limits: memory and swap (`memory.limit`, `memory.swap` = memory + swap, `-1`
//!   unlimited), CPU (`cpu.quota` over a 100 ms `cpu.period`), pids (`pids.limit`; `-1` when
//!   unlimited, overriding Podman's default of 2048), block-IO weight (`blockIO.weight`;
//!   Podman discards it with a warning on kernels without proportional IO weights). `disk_mb`
//!   is not a container limit and is left to the node agent. [`PodmanRuntime::inspect`] reads
//!   back what the engine recorded.
//!
//! Engine errors map to [`RuntimeError`] by HTTP status and libpod's cause: 404 is
//! `ImageNotFound` (image lookups, creates) or `ContainerNotFound`; "image not known" on a
//! create is `ImageNotFound`; 409, a wrong container state, a name or published port in use
//! are `Conflict`; 400 `InvalidSpec`; an unreachable socket `Unavailable`; anything else
//! `Engine`.

mod api;
mod console;
mod error;
mod libpod;
#[cfg(feature = "conformance")]
pub mod probe;
mod spec;
mod stats;

pub use nexus_engine::container::ContainerDetails;
pub use nexus_engine::install::{INSTALL_LABEL, MAX_INSTALL_LOG_BYTES};
pub use podman_api;
pub use spec::IMAGE_LABEL;

use api::Api;
use async_trait::async_trait;
use error::{About, api_error};
use futures::FutureExt;
use futures::stream::BoxStream;
use nexus_core::ServerId;
use nexus_core::console::ConsoleLine;
use nexus_core::model::{StopMethod, StopSignal};
use nexus_core::runtime::{
    ConsoleIo, ContainerId, ContainerSpec, ExitStatus, InstallOutcome, InstallSpec, MANAGED_LABEL, ManagedContainer,
    ResourceStats, Runtime, RuntimeError, SERVER_LABEL, StopOutcome,
};
use nexus_engine::{container, install, stop};
use podman_api::Podman;
use podman_api::opts::{ContainerListFilter, ContainerListOpts};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket of a rootful `podman system service`, used when `CONTAINER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/run/podman/podman.sock";

/// Where `scripts/services/podman.sh` installs `conmon-wrapper.sh`; the conmon path
/// [`PodmanRuntime::connect`] expects the engine to report.
pub const CONMON_WRAPPER_PATH: &str = "/usr/local/libexec/nexus/conmon";

/// A [`Runtime`] over a local Podman service. Cheap to clone (client handles and paths);
/// clones talk to the same service.
#[derive(Clone, Debug)]
pub struct PodmanRuntime {
    api: Api,
}

impl PodmanRuntime {
    /// Connects to the service listening on the unix socket at `socket` and checks it
    /// answers.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        let socket = socket.as_ref();
        let podman = Podman::unix(socket);
        let unavailable = |e: podman_api::Error| match api_error(e, About::Container("<service>")) {
            RuntimeError::Unavailable(m) | RuntimeError::Engine(m) | RuntimeError::Conflict(m) => {
                RuntimeError::Unavailable(format!("{}: {m}", socket.display()))
            }
            other => other,
        };
        let ping = podman.ping().await.map_err(unavailable)?;
        let info = podman.info().await.map_err(unavailable)?;
        let conmon = info.host.and_then(|h| h.conmon).and_then(|c| c.path).unwrap_or_default();
        if conmon != CONMON_WRAPPER_PATH {
            tracing::warn!(
                %conmon,
                expected = CONMON_WRAPPER_PATH,
                "Podman's conmon is not the Nexus wrapper: a server's stdin will be closed when a console detaches \
                 (see nexus-runtime-podman's docs)"
            );
        }
        tracing::debug!(api = ?ping.libpod_api_version, socket = %socket.display(), "connected to Podman");
        let install_root = std::env::temp_dir().join("nexus-install");
        Ok(Self { api: Api { podman, libpod: libpod::Libpod::new(socket), install_root } })
    }

    /// Connects to the service named by `CONTAINER_HOST` (`unix://` only, as Podman's own
    /// clients read it) or, when it is unset, to [`DEFAULT_SOCKET`].
    pub async fn connect_default() -> Result<Self, RuntimeError> {
        Self::connect(container::socket_from_env("CONTAINER_HOST", DEFAULT_SOCKET)?).await
    }

    /// Uses `dir` for install scripts instead of `$TMPDIR/nexus-install`. The engine must see
    /// the same path (it bind-mounts a subdirectory into the install container).
    pub fn with_install_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.api.install_root = dir.into();
        self
    }

    /// The podman-api client, for engine calls this crate does not wrap.
    pub fn client(&self) -> &Podman {
        &self.api.podman
    }

    /// What the engine recorded for container `id`: name, labels, limits, init, state.
    pub async fn inspect(&self, id: &ContainerId) -> Result<ContainerDetails, RuntimeError> {
        let raw = self.api.inspect(&id.0).await?;
        let labels: BTreeMap<String, String> =
            raw.config.and_then(|c| c.labels).unwrap_or_default().into_iter().collect();
        let host = raw.host_config;
        let state = raw.state;
        let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let ran = state.as_ref().and_then(|s| s.started_at).is_some_and(|t| t.timestamp() > 0);
        Ok(ContainerDetails {
            id: ContainerId(raw.id.unwrap_or_else(|| id.0.clone())),
            name: raw.name.unwrap_or_default(),
            image: spec::reported_image(
                labels.get(IMAGE_LABEL).map(String::as_str),
                raw.image_name.as_deref().unwrap_or_default(),
            ),
            labels,
            limits: host.as_ref().map(spec::limits_from).unwrap_or_default(),
            init: host.as_ref().and_then(|h| h.init).unwrap_or(false),
            running,
            pid: state.as_ref().and_then(|s| s.pid).filter(|pid| running && *pid > 0),
            exit: (!running && ran).then(|| ExitStatus {
                code: state.as_ref().and_then(|s| s.exit_code).map_or(0, i64::from),
                oom_killed: state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false),
            }),
        })
    }
}

#[async_trait]
impl Runtime for PodmanRuntime {
    fn name(&self) -> &'static str {
        "podman"
    }

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        self.api.podman.images().get(image).exists().await.map_err(|e| api_error(e, About::Image(image)))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let options = spec::server_container(spec)?;
        let id = ContainerId(self.api.create(&options, spec.server, &spec.image).await?);
        tracing::info!(server = %spec.server, container = %id, image = %spec.image, "created container");
        Ok(id)
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.api.start(&id.0).await
    }

    async fn stop(&self, id: &ContainerId, method: &StopMethod, grace: Duration) -> Result<StopOutcome, RuntimeError> {
        let outcome = stop::stop(&self.api, id, method, grace).await?;
        tracing::info!(container = %id, exit_code = outcome.exit.code, graceful = outcome.graceful, "container stopped");
        Ok(outcome)
    }

    async fn kill(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError> {
        self.api.signal(&id.0, signal).await
    }

    async fn destroy(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.api.remove(&id.0).await?;
        tracing::info!(container = %id, "destroyed container");
        Ok(())
    }

    async fn output_since_start(&self, id: &ContainerId, max_lines: usize) -> Result<Vec<ConsoleLine>, RuntimeError> {
        use http_body_util::BodyExt as _;
        /// A log answer larger than this is refused rather than held in memory.
        const MAX_LOG_BYTES: usize = 16 << 20;
        let state = self.api.inspect(&id.0).await?.state;
        let since = state.and_then(|s| s.started_at).map_or(0, |at| at.timestamp());
        let path = format!("/containers/{}/logs?stdout=true&stderr=true&since={since}&tail={max_lines}", id.0);
        let body = self.api.libpod.get_stream(&path, About::Container(&id.0)).await?;
        let read = http_body_util::Limited::new(body, MAX_LOG_BYTES).collect();
        let bytes = match tokio::time::timeout(nexus_engine::console::LOG_READ_DEADLINE, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => return Err(RuntimeError::Engine(format!("reading the log of {}: {e}", id.0))),
            Err(_) => return Err(RuntimeError::Engine(format!("the log of {} was not read in time", id.0))),
        };
        let chunks = futures::stream::iter(console::log_frames(bytes));
        nexus_engine::console::last_lines(nexus_engine::console::chunk_lines(chunks), max_lines).await
    }

    async fn attach(&self, id: &ContainerId) -> Result<ConsoleIo, RuntimeError> {
        let attached = self.api.attach(&id.0, true, true).await?;
        Ok(ConsoleIo { input: attached.input, output: attached.output })
    }

    async fn stats(
        &self,
        id: &ContainerId,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        // libpod reports a missing container inside the stream; inspecting first gives the
        // caller a typed error from the call itself.
        let full_id = self.api.inspect(&id.0).await?.id.unwrap_or_else(|| id.0.clone());
        let stopped = {
            let api = self.api.clone();
            let id = full_id.clone();
            // Any answer (an exit code, an error, a removed container) means no more samples.
            async move {
                let _ = api.wait(&id).await;
            }
            .boxed()
        };
        stats::stream(&self.api.libpod, full_id, stopped).await
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError> {
        self.api.wait(&id.0).await
    }

    async fn run_install(
        &self,
        spec: &InstallSpec,
        live: Option<nexus_core::runtime::LiveOutput>,
    ) -> Result<InstallOutcome, RuntimeError> {
        install::run_install(&self.api, &self.api.install_root, spec, live).await
    }

    async fn remove_install(&self, server: ServerId) -> Result<(), RuntimeError> {
        install::remove_until_gone(&self.api, &install::install_container_name(server)).await
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        let options = ContainerListOpts::builder()
            .all(true)
            .filter([ContainerListFilter::LabelKey(MANAGED_LABEL.into())])
            .build();
        let listed = self
            .api
            .podman
            .containers()
            .list(&options)
            .await
            .map_err(|e| api_error(e, About::Container("<managed containers>")))?;
        let managed = listed.into_iter().filter_map(|listed| {
            let label = |key: &str| listed.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
            let image = spec::reported_image(label(IMAGE_LABEL), listed.image.as_deref().unwrap_or_default());
            let running = listed.state.as_deref() == Some("running");
            container::managed_container(listed.id.clone().unwrap_or_default(), label(SERVER_LABEL), image, running)
        });
        Ok(managed.collect())
    }
}

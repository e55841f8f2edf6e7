//! Putting the daemon together: runtime, agent, API, signals.
//!
//! [`run`] is what `nexus-wings --config` does: set up logging, build the tokio runtime
//! (`current_thread` unless `worker_threads > 1`), connect to Docker, start the agent (which
//! loads its state and re-adopts the containers it finds), serve the API until SIGTERM or
//! SIGINT, then stop serving and stop the agent's loops. **Servers keep running** across a
//! daemon stop or crash: the next start adopts them again.
//!
//! [`Daemon`] is the same thing as a library, for embedding (the panel's `up` command) and
//! tests: bring your own [`Runtime`] and [`PanelTransport`].

use crate::api::{self, ApiState};
use crate::auth::{NodeToken, TokenSigner};
use crate::config::{LogFormat, ResolvedConfig};
use crate::metrics::HttpMetrics;
use crate::panel::HttpPanelTransport;
use nexus_agent::NoPanel;
use nexus_agent::{AgentConfig, AgentError, NodeAgent};
use nexus_agent::{EggPreparer, FileStateStore};
use nexus_core::runtime::{Runtime, RuntimeError};
use nexus_core::transport::{PanelTransport, TransportError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long open HTTP connections get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The container runtime is unreachable.
    #[error("container runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The agent refused to start (unreadable state, ...).
    #[error("node agent: {0}")]
    Agent(#[from] AgentError),
    /// The panel link could not be set up.
    #[error("panel link: {0}")]
    Panel(#[from] TransportError),
    /// The browser token secret is unusable.
    #[error("token secret: {0}")]
    Token(#[from] crate::auth::TokenError),
    /// The backup or template store cannot be opened.
    #[error("object store: {0}")]
    ObjectStore(#[from] nexus_templates::StorageConfigError),
    /// The template cache cannot be opened.
    #[error("template cache: {0}")]
    Templates(#[from] nexus_templates::Error),
    /// Local I/O (listening socket, directories, tokio runtime).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// A started daemon: the agent runs, the API socket is bound, nothing is served yet.
pub struct Daemon {
    agent: Arc<NodeAgent>,
    api: Arc<ApiState>,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    disk_check: Duration,
    limits: crate::listener::ConnectionLimits,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the agent on `runtime` with `panel` as the panel link, and binds the API socket.
    pub async fn start(
        config: &ResolvedConfig,
        runtime: Arc<dyn Runtime>,
        panel: Arc<dyn PanelTransport>,
    ) -> Result<Self, DaemonError> {
        let c = &config.config;
        std::fs::create_dir_all(&c.data_root).map_err(io_error(format!("create {}", c.data_root.display())))?;
        match crate::host::DataRootMount::of(&c.data_root) {
            Ok(mount) => {
                for warning in mount.warnings() {
                    tracing::warn!("{warning}");
                }
                tracing::info!(
                    mount = %mount.mount_point.display(),
                    fs = %mount.fs_type,
                    project_quotas = mount.has_project_quotas(),
                    "data root file system (disk limits are measured by the daemon)"
                );
            }
            Err(error) => tracing::warn!(%error, "cannot tell which file system holds the data root"),
        }
        // Before any server starts or any request is served: what restores of a daemon that
        // died left next to the server directories (a directory moved aside is put back).
        let data_root = c.data_root.clone();
        match tokio::task::spawn_blocking(move || nexus_files::sweep_restore_leftovers(&data_root, None)).await {
            Ok(Ok(swept)) if swept.removed + swept.recovered > 0 => {
                tracing::warn!(removed = swept.removed, recovered = swept.recovered, "restore leftovers cleaned up");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot clean up restore leftovers in the data root"),
            Err(error) => tracing::warn!(%error, "cannot clean up restore leftovers in the data root"),
        }
        let state = Arc::new(FileStateStore::open(&c.state_dir)?);
        let files = Arc::new(api::files::FileManagers::new(Some(c.file_owner())));
        let mut egg_preparer = EggPreparer::new(c.timezone.clone())
            .with_file_owner(Some(c.file_owner()))
            .with_disk_check(Arc::new(crate::disk::StartDiskCheck(Arc::clone(&files))));
        if let Some(store) = &c.templates.store {
            let source = nexus_templates::ObjectStoreTemplates::open(store)?;
            let mut cache = nexus_templates::CacheConfig::new(
                c.templates.cache_dir.clone().unwrap_or_else(|| c.state_dir.join("template-cache")),
            );
            cache.max_bytes = c.templates.cache_max_bytes;
            let cache = nexus_templates::LayerCache::open(cache, Arc::new(source)).await?;
            let layers = crate::templates::CachedLayers::new(Arc::new(cache), Some(c.file_owner()), Arc::clone(&files));
            egg_preparer = egg_preparer.with_templates(Arc::new(layers));
        }
        let preparer = Arc::new(egg_preparer.clone());
        let agent_config = AgentConfig {
            node: config.node_id,
            data_root: c.data_root.clone(),
            stop_timeout: c.stop_timeout(),
            console_replay_lines: c.console_replay_lines,
            console_lines_per_second: c.console_lines_per_second,
            heartbeat_interval: c.heartbeat_interval(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            isolation: c.server_isolation(),
            install_isolation: c.install_isolation(),
            default_pids_limit: c.container_pids_limit,
            install_timeout: Duration::from_secs(c.install_timeout_secs),
            tty: c.container_tty,
        };
        let runtime_name = runtime.name();
        let agent = NodeAgent::builder(agent_config, runtime)
            .panel(panel)
            .state_store(state)
            .preparer(preparer)
            .start()
            .await?;
        let signer = match &config.token_secret {
            Some(secret) => Some(TokenSigner::new(secret, c.max_token_lifetime())?),
            None => None,
        };
        let store_config = c.backups.store(&c.data_root);
        let store = store_config.open()?;
        let backups = crate::backup::Backups::new(
            crate::backup::BackupStore::new(store, c.backups.retry()).with_timeout(store_config.request_timeout()),
            Arc::clone(&agent),
            Arc::clone(&files),
            c.backups.max_concurrent,
        )
        .with_markers(c.state_dir.join("backup-jobs"));
        // Jobs of a daemon that died are reported failed before anything is served.
        backups.recover_interrupted().await;
        let api = Arc::new(ApiState {
            agent: Arc::clone(&agent),
            node_token: NodeToken::new(&config.token),
            signer,
            http: HttpMetrics::default(),
            files,
            backups: Arc::new(backups),
            listener: Arc::default(),
            consoles: api::console_slots::ConsoleSlots::new(api::console_slots::ConsoleCaps {
                per_server: c.console_max_per_server,
                per_token: c.console_max_per_token,
                total: c.console_max_total,
                node_token: c.console_max_node_token,
            }),
            commands: c.command_limits(),
            power: api::power_queue::PowerQueues::default(),
            preparer: egg_preparer,
            metrics_require_token: c.metrics_require_token,
            max_json_body: c.max_json_body_bytes,
            runtime_name,
            started: Instant::now(),
        });
        let listener =
            tokio::net::TcpListener::bind(c.listen).await.map_err(io_error(format!("listen on {}", c.listen)))?;
        let local_addr = listener.local_addr().map_err(io_error("listening address"))?;
        let disk_check = Duration::from_secs(c.disk_check_interval_secs);
        let (limits, lowered) = c.connection_limits().fit_to_fd_limit();
        if let Some(warning) = lowered {
            tracing::warn!("{warning}");
        }
        Ok(Self { agent, api, listener, local_addr, disk_check, limits })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The agent.
    pub fn agent(&self) -> &Arc<NodeAgent> {
        &self.agent
    }

    /// Serves the API until `shutdown` resolves, then stops the agent's loops (servers keep
    /// running).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Self { agent, api, listener, local_addr, disk_check, limits } = self;
        tracing::info!(%local_addr, servers = agent.servers().len(), "nexus-wings serving");
        let disk =
            tokio::spawn(crate::disk::DiskWatcher::new(Arc::clone(&agent), Arc::clone(&api.files), disk_check).run());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stats = Arc::clone(&api.listener);
        let serving = tokio::spawn(crate::listener::serve(
            listener,
            api::routes(api),
            limits,
            stats,
            async move {
                let _ = stop_rx.await;
            },
            SHUTDOWN_GRACE,
        ));
        shutdown.await;
        tracing::info!("shutting down: no new requests; servers keep running");
        let _ = stop_tx.send(());
        // Idle keep-alive connections close at once; a stuck one is cut after the grace period.
        if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), serving).await.is_err() {
            tracing::warn!("the listener did not stop within {SHUTDOWN_GRACE:?}");
        }
        disk.abort();
        agent.shutdown().await;
        tracing::info!("nexus-wings stopped");
    }
}

/// Runs the daemon as `nexus-wings --config` does, blocking until a shutdown signal.
pub fn run(config: ResolvedConfig) -> Result<(), DaemonError> {
    init_logging(&config);
    for warning in &config.warnings {
        tracing::warn!("configuration: {warning}");
    }
    let threads = config.config.worker_threads;
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    // File operations use the blocking pool; a handful of threads is plenty for one node and
    // each idle one still costs a stack.
    let runtime = builder.enable_all().max_blocking_threads(32).build().map_err(io_error("start the tokio runtime"))?;
    runtime.block_on(async move {
        let install_dir = config.config.state_dir.join("install");
        let runtime: Arc<dyn Runtime> = match config.config.runtime {
            crate::config::RuntimeKind::Docker => Arc::new(
                nexus_runtime_docker::DockerRuntime::connect(&config.config.docker_socket)
                    .await?
                    .with_install_dir(install_dir),
            ),
            crate::config::RuntimeKind::Podman => Arc::new(
                nexus_runtime_podman::PodmanRuntime::connect(&config.config.podman_socket)
                    .await?
                    .with_install_dir(install_dir),
            ),
        };
        let panel: Arc<dyn PanelTransport> = match &config.config.panel_url {
            Some(url) => Arc::new(HttpPanelTransport::new(url, &config.token)?),
            None => {
                tracing::warn!("no panel_url configured: running standalone, heartbeats and events are dropped");
                Arc::new(NoPanel)
            }
        };
        let daemon = Daemon::start(&config, runtime, panel).await?;
        daemon.serve(shutdown_signal()).await;
        Ok(())
    })
}

/// The runtime of a node that should just work on this host: Docker at `$DOCKER_HOST` or
/// its default socket if it answers, else Podman at `$CONTAINER_HOST` or its default socket;
/// an error naming both otherwise. Install containers keep their scripts in `install_dir`.
pub async fn detect_runtime(install_dir: &std::path::Path) -> Result<Arc<dyn Runtime>, DaemonError> {
    // Connecting checks that the engine answers.
    let docker = match nexus_runtime_docker::DockerRuntime::connect_default().await {
        Ok(docker) => return Ok(Arc::new(docker.with_install_dir(install_dir.to_path_buf()))),
        Err(e) => e.to_string(),
    };
    let podman = match nexus_runtime_podman::PodmanRuntime::connect_default().await {
        Ok(podman) => return Ok(Arc::new(podman.with_install_dir(install_dir.to_path_buf()))),
        Err(e) => e.to_string(),
    };
    Err(DaemonError::Runtime(RuntimeError::Unavailable(format!(
        "no container engine answers: Docker: {docker}; Podman: {podman}"
    ))))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the daemon");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Installs the global log subscriber (format and filter from the config; `RUST_LOG` wins).
///
/// The filter is `tracing_subscriber`'s `Targets` (`info`, `nexus_wings=debug,warn`): target
/// prefixes and levels, no regular expressions, so logging costs little code and memory.
pub fn init_logging(config: &ResolvedConfig) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = from_env
        .as_deref()
        .and_then(|v| v.parse::<Targets>().ok())
        .or_else(|| config.config.log_level.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.config.log_format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init(),
    };
    if let Err(e) = result {
        eprintln!("nexus-wings: logging already initialised: {e}");
    }
}

//! The container runtime a node runs servers with.
//!
//! One small trait, [`Runtime`], implemented by `nexus-runtime-docker` and
//! `nexus-runtime-podman`; the node agent is written against it alone. What those two share
//! lives in `nexus-engine`.

use crate::console::ConsoleLine;
use crate::ids::ServerId;
use crate::model::{ServerLimits, StopMethod, StopSignal};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWrite;

/// Label carrying the server id on every container Nexus creates.
pub const SERVER_LABEL: &str = "io.nexus.server";
/// Label marking a container as managed by Nexus.
pub const MANAGED_LABEL: &str = "io.nexus.managed";

/// Container name for a server: `nexus-server-<uuid>`.
pub fn container_name(server: ServerId) -> String {
    format!("nexus-server-{server}")
}

/// Runtime-assigned container identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to create a server's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The server; gives the name and the label.
    pub server: ServerId,
    /// Image reference; never pulled.
    pub image: String,
    /// Command to run; `None` keeps the image's default.
    pub command: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Host directory bind-mounted at `/home/container`.
    pub data_dir: PathBuf,
    /// Resource limits.
    pub limits: ServerLimits,
    /// Addresses published for TCP and UDP.
    pub ports: Vec<PortBinding>,
    /// Extra labels (the server and managed labels are always added).
    pub labels: BTreeMap<String, String>,
    /// Who the process runs as and how it is confined beyond its limits.
    #[serde(default)]
    pub isolation: Isolation,
    /// Run the process on a terminal, as Wings does (eggs rely on it: a server started with
    /// `--terminal` needs one): stdin and stdout are a TTY, `TERM` is set, stdout and stderr
    /// arrive merged as stdout, and what is written to stdin is echoed back as output.
    #[serde(default)]
    pub tty: bool,
}

impl ContainerSpec {
    /// A spec for `server` running `image`'s own command, with `data_dir` mounted at
    /// [`HOME`], server [`Isolation`], no limits, ports, labels or environment, no TTY.
    pub fn new(server: ServerId, image: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            server,
            image: image.into(),
            command: None,
            env: BTreeMap::new(),
            data_dir: data_dir.into(),
            limits: ServerLimits::default(),
            ports: Vec::new(),
            labels: BTreeMap::new(),
            isolation: Isolation::server(),
            tty: false,
        }
    }
}

/// A numeric user and group a container process runs as (need not exist in the image).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl ContainerUser {
    /// `uid:gid`, as engines take it.
    pub fn engine_user(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

/// How a container is confined beyond its resource limits.
///
/// Every container a runtime creates also runs with `no-new-privileges` and without the
/// capabilities in [`SERVER_DROPPED_CAPABILITIES`] (server containers) or
/// [`INSTALL_DROPPED_CAPABILITIES`] (install containers); those are not
/// optional. The default ([`Isolation::server`]) is the hardened server profile with the
/// image's user; the node agent sets the node's unprivileged user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Isolation {
    /// The process's user; `None` keeps the image's (often root).
    pub user: Option<ContainerUser>,
    /// Mount the image's root filesystem read-only.
    pub read_only_root: bool,
    /// Size of the tmpfs mounted at `/tmp` (`nosuid,nodev`), MiB; 0 mounts none.
    pub tmp_size_mb: u64,
}

/// Default size of the `/tmp` tmpfs, MiB (Wings' default).
pub const DEFAULT_TMP_SIZE_MB: u64 = 100;

impl Isolation {
    /// Server containers: read-only root filesystem, a 100 MiB `/tmp`, the image's user.
    pub fn server() -> Self {
        Self { user: None, read_only_root: true, tmp_size_mb: DEFAULT_TMP_SIZE_MB }
    }

    /// Install containers: writable root filesystem (install scripts install packages), a
    /// 100 MiB `/tmp`, the image's user (root, as Wings runs installs).
    pub fn install() -> Self {
        Self { user: None, read_only_root: false, tmp_size_mb: DEFAULT_TMP_SIZE_MB }
    }

    /// The same profile running as `user`.
    pub fn with_user(self, user: Option<ContainerUser>) -> Self {
        Self { user, ..self }
    }
}

impl Default for Isolation {
    fn default() -> Self {
        Self::server()
    }
}

/// One published `ip:port`, same port inside and outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
}

/// An egg installation run in a throwaway container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSpec {
    /// The server being installed.
    pub server: ServerId,
    /// Image the script runs in.
    pub image: String,
    /// Interpreter (`bash`, `ash`); the script is at `/mnt/install/install.sh`.
    pub entrypoint: String,
    /// Script body.
    pub script: String,
    /// Server environment.
    pub env: BTreeMap<String, String>,
    /// Host directory mounted at `/mnt/server`.
    pub data_dir: PathBuf,
    /// Limits during installation.
    pub limits: ServerLimits,
    /// Who the script runs as and how it is confined ([`Isolation::install`] by default).
    #[serde(default = "Isolation::install")]
    pub isolation: Isolation,
}

/// Where an install's output goes as it is printed, line by line (the outcome's log still
/// holds all of it). Bounded: when the receiver lags by more than the channel holds, lines are
/// left out of the live view, never out of the log, and the install never waits for it.
#[derive(Clone, Debug)]
pub struct LiveOutput(tokio::sync::mpsc::Sender<ConsoleLine>);

impl LiveOutput {
    /// A live output holding up to `capacity` lines for its receiver.
    pub fn channel(capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<ConsoleLine>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (Self(tx), rx)
    }

    /// Offers `line`; false when it was left out (the receiver lags or is gone).
    pub fn offer(&self, line: &ConsoleLine) -> bool {
        self.0.try_send(line.clone()).is_ok()
    }
}

/// How an installation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallOutcome {
    /// Exit code of the script.
    pub exit_code: i64,
    /// Combined output of the script.
    pub log: String,
}

/// How a container's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code (128 + signal for signal deaths).
    pub code: i64,
    /// Killed by the kernel's OOM killer.
    pub oom_killed: bool,
}

/// How a stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOutcome {
    /// The exit status.
    pub exit: ExitStatus,
    /// False if the process ignored the stop and was killed after the timeout.
    pub graceful: bool,
}

/// A point-in-time resource sample of one container.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceStats {
    /// CPU, percent of one core.
    pub cpu_percent: f64,
    /// Memory in use.
    pub memory_bytes: u64,
    /// Memory limit.
    pub memory_limit_bytes: u64,
    /// Bytes received on all interfaces.
    pub network_rx_bytes: u64,
    /// Bytes sent on all interfaces.
    pub network_tx_bytes: u64,
    /// Bytes read from block devices.
    pub disk_read_bytes: u64,
    /// Bytes written to block devices.
    pub disk_write_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Space the server's files take on disk, bytes, as last measured by the node (runtimes
    /// leave it 0; the node agent fills it in from
    /// `NodeAgent::record_disk_usage` of `nexus-agent`).
    #[serde(default)]
    pub disk_bytes: u64,
    /// Sample time.
    pub at: Option<DateTime<Utc>>,
}

/// A container found on the engine carrying the Nexus labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedContainer {
    /// Container id.
    pub id: ContainerId,
    /// Server it belongs to (from its label).
    pub server: ServerId,
    /// Image it runs.
    pub image: String,
    /// Whether its process is running.
    pub running: bool,
}

/// Writable console input of a container.
pub type ConsoleInput = Pin<Box<dyn AsyncWrite + Send>>;

/// An attached console: write to `input`, read lines from `output`.
pub struct ConsoleIo {
    /// Bytes written here reach the process's stdin.
    pub input: ConsoleInput,
    /// The process's stdout and stderr, line by line, in order.
    pub output: BoxStream<'static, Result<ConsoleLine, RuntimeError>>,
}

impl std::fmt::Debug for ConsoleIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleIo").finish_non_exhaustive()
    }
}

/// Failures of a runtime, mapped from engine errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The image is not present locally (Nexus never pulls).
    #[error("image `{image}` is not available on this node; import or build it first (images are never pulled)")]
    ImageNotFound {
        /// The missing image.
        image: String,
    },
    /// No such container.
    #[error("container `{0}` does not exist")]
    ContainerNotFound(String),
    /// The container exists already or is in the wrong state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The spec cannot be applied.
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The engine cannot be reached.
    #[error("container engine unavailable: {0}")]
    Unavailable(String),
    /// Waited too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Any other engine failure.
    #[error("container engine error: {0}")]
    Engine(String),
    /// Local I/O failure (console pipes, install files).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A container engine on one node.
///
/// # Contract
///
/// Besides what each method's docs say, every implementation behaves like this (the runtime
/// conformance suite of `nexus-conformance` checks each rule against a real engine; Docker and
/// Podman pass it, and so must a runtime of your own):
///
/// * Containers are named `nexus-server-<uuid>` ([`container_name`]),
///   carry [`SERVER_LABEL`] = the server id and
///   [`MANAGED_LABEL`] (any value) plus the spec's labels,
///   run under an init process (the server process is not PID 1), and start in
///   `/home/container` with exactly the spec's environment added.
/// * Creating a second container for a server whose container exists is
///   [`RuntimeError::Conflict`]; so is killing a
///   container that is not running.
/// * Operations on a removed container (start, stop, kill, wait, attach, stats) fail with
///   [`RuntimeError::ContainerNotFound`];
///   `stats` fails on the call, not on the first item. `destroy` succeeds on it.
/// * `stop` of a container that already exited returns that exit, `graceful: true`. A process
///   killed after the stop timeout exits with code 137 (128 + SIGKILL), an untrapped signal
///   with 128 + its number.
/// * Output is attachable before `start`, so a console attached between `create` and `start`
///   sees the first line; the output stream ends when the process exits; an unterminated last
///   line is delivered; stdout and stderr keep their [`ConsoleStream`](crate::console::ConsoleStream).
/// * Stats samples carry `memory_limit_bytes` equal to the memory limit, and the stream ends
///   within a few seconds of the container stopping.
/// * An install that exits non-zero is an `Ok` [`InstallOutcome`]
///   with that code, not an error. Install containers carry `SERVER_LABEL` (so leftovers can be
///   found) but not `MANAGED_LABEL` (so [`list_managed`](Runtime::list_managed)
///   never offers them for adoption), and none is left once `run_install` returns.
/// * `list_managed` returns exactly the containers with `MANAGED_LABEL`, running or not, and
///   ignores every container without it, even one carrying `SERVER_LABEL`.
/// * Nothing is ever pulled: a missing image is [`RuntimeError::ImageNotFound`] naming it.
/// * [`Isolation`] holds inside the container: the user, `no-new-privileges`,
///   [`SERVER_DROPPED_CAPABILITIES`] / [`INSTALL_DROPPED_CAPABILITIES`], the read-only root and
///   the `nosuid,nodev` `/tmp` of its size.
///
/// # Example
///
/// A node agent needs nothing but this trait. Running a short command to completion:
///
/// ```no_run
/// use nexus_core::ids::ServerId;
/// use nexus_core::runtime::{ContainerSpec, Runtime, RuntimeError};
///
/// async fn run_once(runtime: &dyn Runtime, data_dir: &std::path::Path) -> Result<i64, RuntimeError> {
///     let mut spec = ContainerSpec::new(ServerId::new(), "nexus-test/busybox:latest", data_dir);
///     spec.command = Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]);
///     let id = runtime.create(&spec).await?;
///     runtime.start(&id).await?;
///     let exit = runtime.wait(&id).await?;
///     runtime.destroy(&id).await?;
///     Ok(exit.code)
/// }
/// ```
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Short name for logs (`docker`, `podman`).
    fn name(&self) -> &'static str;

    /// Whether `image` is present locally.
    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError>;

    /// Creates (but does not start) the server's container.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError>;

    /// Starts a created or exited container.
    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Asks the process to stop (console command or signal); kills it after `timeout`.
    async fn stop(&self, id: &ContainerId, method: &StopMethod, timeout: Duration)
    -> Result<StopOutcome, RuntimeError>;

    /// Sends a signal now.
    async fn kill(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError>;

    /// Removes the container (forcefully if running). Idempotent.
    async fn destroy(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Attaches to the console.
    async fn attach(&self, id: &ContainerId) -> Result<ConsoleIo, RuntimeError>;

    /// The last `max_lines` lines container `id` printed since its process last started,
    /// oldest first, from the engine's log (stdout and stderr, each line whole): what a node
    /// agent that was away missed. A re-adopting agent replays them and looks for the done
    /// line in them. Bounded by `max_lines` whatever the container printed. The engine's log
    /// may trail an attached console by a moment.
    async fn output_since_start(&self, id: &ContainerId, max_lines: usize) -> Result<Vec<ConsoleLine>, RuntimeError>;

    /// A stream of resource samples until the container stops.
    async fn stats(
        &self,
        id: &ContainerId,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError>;

    /// Waits for the main process to exit.
    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError>;

    /// Runs an install script to completion in a throwaway container, then removes it. When
    /// the returned future is dropped the container is removed in the background; call
    /// [`remove_install`](Self::remove_install) to wait until it is gone.
    /// Each line is offered to `live` as it is printed, if given.
    async fn run_install(&self, spec: &InstallSpec, live: Option<LiveOutput>) -> Result<InstallOutcome, RuntimeError>;

    /// Force-removes the install container of `server`, if any (an abandoned install's, or
    /// one left by a crash of the node), and returns once it is gone. Idempotent.
    async fn remove_install(&self, server: ServerId) -> Result<(), RuntimeError>;

    /// Every container carrying the Nexus labels, for re-attaching after a daemon restart.
    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, RuntimeError>;
}

/// Where the server's data directory is mounted, and the working directory of its process
/// (egg startup commands such as `./teeworlds_srv` are relative to it).
pub const HOME: &str = "/home/container";

/// Where every container gets its size-limited tmpfs ([`Isolation::tmp_size_mb`]).
pub const TMP_DIR: &str = "/tmp";

/// Capabilities removed from server containers, on top of `no-new-privileges`: Wings' list
/// (`SETPCAP`, `MKNOD`, `AUDIT_WRITE`, `NET_RAW`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`,
/// `NET_BIND_SERVICE`, `SYS_CHROOT`, `SETFCAP`) plus `CHOWN`. A game server needs none of
/// them; run as an unprivileged user it has no effective capabilities at all, and these keep
/// an image whose user is root from creating device nodes, set-id files for others, or raw
/// sockets. What remains of the engines' default set is `SETUID`, `SETGID` and `KILL`.
pub const SERVER_DROPPED_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SYS_CHROOT",
];

/// Capabilities removed from install containers. Install scripts run as root (as with Wings)
/// and install packages, which needs ownership and permission overrides (`CHOWN`,
/// `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `SETUID`/`SETGID` for apt's sandbox user); device
/// nodes, raw sockets, chroot and capability games are never needed. The node agent hands the
/// installed files to the server's user afterwards, clearing set-id bits.
pub const INSTALL_DROPPED_CAPABILITIES: &[&str] =
    &["CAP_AUDIT_WRITE", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_SYS_CHROOT"];

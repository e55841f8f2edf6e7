//! One server as the agent holds it: spec, lifecycle, container, console, operation lock.

use super::console::ConsoleHub;
use super::done::DoneWatcher;
use super::error::AgentError;
use nexus_core::ids::ServerId;
use nexus_core::lifecycle::Lifecycle;
use nexus_core::runtime::{ConsoleInput, ContainerId};
use nexus_core::transport::ServerSpec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::OwnedMutexGuard;
use tokio::task::AbortHandle;

/// Locks a std mutex, recovering from poisoning: every critical section in the agent leaves
/// its data consistent at each statement (single assignments and lifecycle applies, which
/// change nothing on error), so a panicking holder cannot leave it torn.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What holds a server's operation lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Start,
    Stop,
    Restart,
    Kill,
    AutoRestart,
    Install,
    Update,
    Destroy,
    /// A backup being restored into the server's directory (the embedder's work, under
    /// [`NodeAgent::begin_restore`](crate::NodeAgent::begin_restore)).
    Restore,
}

impl Operation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Kill => "kill",
            Self::AutoRestart => "automatic restart",
            Self::Install => "install",
            Self::Update => "update",
            Self::Destroy => "destroy",
            Self::Restore => "restore",
        }
    }

    /// Long operations that others do not queue behind (they are refused with `Busy`).
    fn excludes_waiters(self) -> bool {
        matches!(self, Self::Install | Self::Destroy | Self::Restore)
    }
}

/// The mutable part of a server, behind one std mutex never held across an await.
pub(crate) struct ServerInner {
    pub spec: ServerSpec,
    pub done: DoneWatcher,
    pub lifecycle: Lifecycle,
    pub container: Option<ContainerId>,
    /// Incremented for each process run (start or adoption); background tasks of an older run
    /// see the mismatch and leave the state alone.
    pub run: u64,
    /// Incremented by every user action; a pending automatic restart that sees it changed
    /// gives way (a stop after a crash must not be undone by the restart).
    pub intent: u64,
}

pub(crate) struct Server {
    pub id: ServerId,
    /// Serializes power actions, installs, updates and removal (tokio's mutex is FIFO, so
    /// waiting requests run in arrival order).
    ops: Arc<tokio::sync::Mutex<()>>,
    current_op: Mutex<Option<Operation>>,
    pub inner: Mutex<ServerInner>,
    pub hub: ConsoleHub,
    /// Stdin of the current run's process.
    pub input: tokio::sync::Mutex<Option<ConsoleInput>>,
    /// Background tasks of this server, aborted on removal and agent shutdown.
    tasks: Mutex<Vec<AbortHandle>>,
    removed: AtomicBool,
    /// True once the running install is to be cancelled (a kill or removal must not wait for
    /// a script that never ends). Reset whenever the operation lock is taken for an install,
    /// under the same lock as the operation label, so a kill can never miss the install.
    install_cancel: tokio::sync::watch::Sender<bool>,
    /// Disk usage of the server's files as last measured by the node, bytes.
    disk_bytes: std::sync::atomic::AtomicU64,
}

/// Holding it means holding the server's operation lock.
pub(crate) struct OpGuard {
    server: Arc<Server>,
    _guard: OwnedMutexGuard<()>,
}

impl OpGuard {
    /// Relabels what the holder does (an update that turns into an install).
    pub(crate) fn relabel(&self, op: Operation) {
        self.server.set_operation(op);
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        // Runs before the mutex guard (a field) is released.
        *lock(&self.server.current_op) = None;
    }
}

impl Server {
    pub(crate) fn new(inner: ServerInner, hub: ConsoleHub) -> Self {
        Self {
            id: inner.spec.id,
            ops: Arc::new(tokio::sync::Mutex::new(())),
            current_op: Mutex::new(None),
            inner: Mutex::new(inner),
            hub,
            input: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            removed: AtomicBool::new(false),
            install_cancel: tokio::sync::watch::Sender::new(false),
            disk_bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_disk_bytes(&self, bytes: u64) {
        self.disk_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Completes once the running install is to be cancelled.
    pub(crate) fn install_cancelled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut cancelled = self.install_cancel.subscribe();
        async move {
            let _ = cancelled.wait_for(|cancel| *cancel).await;
        }
    }

    /// Marks what holds the operation lock, arming the install cancellation for an install.
    fn set_operation(&self, op: Operation) {
        let mut current = lock(&self.current_op);
        if op == Operation::Install {
            self.install_cancel.send_replace(false);
        }
        *current = Some(op);
    }

    pub(crate) fn inner(&self) -> MutexGuard<'_, ServerInner> {
        lock(&self.inner)
    }

    /// Takes the operation lock: refused with `Busy` while an install or removal runs,
    /// otherwise waits in line.
    /// A kill or removal arriving during an install cancels the install and then waits for
    /// the lock, which the install task releases once its container is gone.
    pub(crate) async fn acquire(self: &Arc<Self>, op: Operation) -> Result<OpGuard, AgentError> {
        {
            let current = lock(&self.current_op);
            if let Some(current) = *current
                && current.excludes_waiters()
            {
                let cancels = current == Operation::Install && matches!(op, Operation::Kill | Operation::Destroy);
                if !cancels {
                    return Err(AgentError::Busy { server: self.id, operation: current.name() });
                }
                // Under the label's lock: the install cannot be re-armed in between.
                self.install_cancel.send_replace(true);
            }
        }
        let guard = self.ops.clone().lock_owned().await;
        if self.is_removed() {
            return Err(AgentError::UnknownServer(self.id));
        }
        self.set_operation(op);
        Ok(OpGuard { server: self.clone(), _guard: guard })
    }

    pub(crate) fn track(&self, task: AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    pub(crate) fn abort_tasks(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }
}

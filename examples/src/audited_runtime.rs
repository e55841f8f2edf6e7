//! A custom [`Runtime`]: a node-wide image allow-list and an audit trail, around any other
//! runtime.
//!
//! Hosting companies often want a node to run only images they vetted, whatever a panel
//! admin types, and a record of what the node did. Both fit in a `Runtime` of their own,
//! without touching the agent or the engine: [`AuditedRuntime`] refuses every image outside
//! its allow-list as if the node did not have it ([`RuntimeError::ImageNotFound`], which is
//! what the agent and panel already handle), and records every call that changes a
//! container in a bounded in-memory trail.
//!
//! It implements every method of the trait, and `tests/custom_runtime.rs` runs the whole
//! runtime conformance suite on it (over Docker): a wrapper that breaks a rule of the trait
//! (an error kind, a container left behind) fails there.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use nexus_core::console::ConsoleLine;
use nexus_core::ids::ServerId;
use nexus_core::model::{StopMethod, StopSignal};
use nexus_core::runtime::{
    ConsoleIo, ContainerId, ContainerSpec, ExitStatus, InstallOutcome, InstallSpec, LiveOutput, ManagedContainer,
    ResourceStats, Runtime, RuntimeError, StopOutcome,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Entries kept in the trail; older ones are dropped first.
pub const TRAIL_LIMIT: usize = 10_000;

/// One call that changed (or tried to change) a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When the call returned.
    pub at: DateTime<Utc>,
    /// The trait method (`create`, `stop`, ...).
    pub action: &'static str,
    /// The server or container it was about.
    pub target: String,
    /// `None` when it succeeded, else the error's text.
    pub error: Option<String>,
}

/// Wraps `R`, allowing only images that start with one of the allowed prefixes.
pub struct AuditedRuntime<R> {
    inner: R,
    allowed: Vec<String>,
    trail: Arc<Mutex<VecDeque<AuditEntry>>>,
}

impl<R> std::fmt::Debug for AuditedRuntime<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditedRuntime").field("allowed", &self.allowed).finish_non_exhaustive()
    }
}

impl<R: Runtime> AuditedRuntime<R> {
    /// `inner`, limited to images starting with one of `allowed_prefixes`
    /// (`nexus-test/`, `ghcr.io/pterodactyl/yolks:`).
    pub fn new(inner: R, allowed_prefixes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            inner,
            allowed: allowed_prefixes.into_iter().map(Into::into).collect(),
            trail: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Whether `image` is on the allow-list.
    pub fn allows(&self, image: &str) -> bool {
        self.allowed.iter().any(|prefix| image.starts_with(prefix.as_str()))
    }

    /// The trail, oldest first.
    pub fn trail(&self) -> Vec<AuditEntry> {
        self.trail.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    fn check(&self, image: &str) -> Result<(), RuntimeError> {
        if self.allows(image) {
            Ok(())
        } else {
            // To this node an image off the list does not exist: the agent and the panel
            // already explain a missing image to the user.
            Err(RuntimeError::ImageNotFound { image: image.to_owned() })
        }
    }

    fn record<T>(&self, action: &'static str, target: impl ToString, result: &Result<T, RuntimeError>) {
        let entry = AuditEntry {
            at: Utc::now(),
            action,
            target: target.to_string(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        tracing::info!(action, target = %entry.target, error = ?entry.error, "runtime call");
        let mut trail = self.trail.lock().unwrap_or_else(PoisonError::into_inner);
        if trail.len() == TRAIL_LIMIT {
            trail.pop_front();
        }
        trail.push_back(entry);
    }
}

#[async_trait]
impl<R: Runtime> Runtime for AuditedRuntime<R> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        if !self.allows(image) {
            return Ok(false);
        }
        self.inner.image_exists(image).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let result = match self.check(&spec.image) {
            Ok(()) => self.inner.create(spec).await,
            Err(refused) => Err(refused),
        };
        self.record("create", spec.server, &result);
        result
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let result = self.inner.start(id).await;
        self.record("start", id, &result);
        result
    }

    async fn stop(
        &self,
        id: &ContainerId,
        method: &StopMethod,
        timeout: Duration,
    ) -> Result<StopOutcome, RuntimeError> {
        let result = self.inner.stop(id, method, timeout).await;
        self.record("stop", id, &result);
        result
    }

    async fn kill(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError> {
        let result = self.inner.kill(id, signal).await;
        self.record("kill", id, &result);
        result
    }

    async fn destroy(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let result = self.inner.destroy(id).await;
        self.record("destroy", id, &result);
        result
    }

    async fn attach(&self, id: &ContainerId) -> Result<ConsoleIo, RuntimeError> {
        self.inner.attach(id).await
    }

    async fn output_since_start(&self, id: &ContainerId, max_lines: usize) -> Result<Vec<ConsoleLine>, RuntimeError> {
        self.inner.output_since_start(id, max_lines).await
    }

    async fn stats(
        &self,
        id: &ContainerId,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        self.inner.stats(id).await
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError> {
        self.inner.wait(id).await
    }

    async fn run_install(&self, spec: &InstallSpec, live: Option<LiveOutput>) -> Result<InstallOutcome, RuntimeError> {
        let result = match self.check(&spec.image) {
            Ok(()) => self.inner.run_install(spec, live).await,
            Err(refused) => Err(refused),
        };
        self.record("run_install", spec.server, &result);
        result
    }

    async fn remove_install(&self, server: ServerId) -> Result<(), RuntimeError> {
        let result = self.inner.remove_install(server).await;
        self.record("remove_install", server, &result);
        result
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        self.inner.list_managed().await
    }
}

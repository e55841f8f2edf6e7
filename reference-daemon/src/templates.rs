//! Template layers on the node: the `[templates]` store read through a local
//! content-addressed cache ([`nexus_templates::LayerCache`]), applied after a server's install
//! script by the agent's [`TemplateLayers`] hook.
//!
//! The layers are written through a confined file manager on the server's directory (never
//! outside it, whatever the server left there), within the server's disk limit, as the node's
//! file owner. The render context is `server` (`id`, `memory`, `swap`, `disk`, `cpu`, `io`,
//! `pids`, `port`, `ip`) and `env` (the install environment: `SERVER_PORT`, `SERVER_MEMORY`,
//! the egg's variables).

use async_trait::async_trait;
use nexus_agent::TemplateLayers;
use nexus_core::transport::ServerSpec;
use nexus_files::{FileOwner, FilesConfig, ServerFiles};
use nexus_templates::{LayerCache, RenderContext};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The node's template layers: its cache over the configured store.
#[derive(Debug)]
pub struct CachedLayers {
    cache: Arc<LayerCache>,
    owner: Option<FileOwner>,
    files: Arc<crate::api::files::FileManagers>,
}

impl CachedLayers {
    /// Layers from `cache`, files written as `owner`; the server's cached file manager in
    /// `files` is dropped after an apply (its usage counter is stale then).
    pub fn new(cache: Arc<LayerCache>, owner: Option<FileOwner>, files: Arc<crate::api::files::FileManagers>) -> Self {
        Self { cache, owner, files }
    }

    /// The cache (its figures for metrics and tests).
    pub fn cache(&self) -> &Arc<LayerCache> {
        &self.cache
    }
}

/// What `{{ server.* }}` names in a template.
fn server_context(spec: &ServerSpec) -> serde_json::Value {
    let primary = spec.allocations.first();
    serde_json::json!({
        "id": spec.id,
        "memory": spec.limits.memory_mb,
        "swap": spec.limits.swap_mb,
        "disk": spec.limits.disk_mb,
        "cpu": spec.limits.cpu_percent,
        "io": spec.limits.io_weight,
        "pids": spec.limits.pids,
        "ip": primary.map(|p| p.ip.to_string()),
        "port": primary.map(|p| p.port),
    })
}

#[async_trait]
impl TemplateLayers for CachedLayers {
    async fn apply(
        &self,
        spec: &ServerSpec,
        data_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, String> {
        let config = FilesConfig {
            quota_bytes: spec.limits.disk_mb.saturating_mul(1 << 20),
            owner: self.owner,
            ..FilesConfig::default()
        };
        let files =
            ServerFiles::open(data_dir, config).await.map_err(|e| format!("opening the server directory: {e}"))?;
        let ctx = RenderContext::new(server_context(spec), env.clone());
        let applied = self.cache.apply(&spec.templates, &files, &ctx).await;
        self.files.forget(spec.id);
        let summary = applied.map_err(|e| e.to_string())?;
        let names: Vec<String> = spec.templates.iter().map(ToString::to_string).collect();
        Ok(vec![format!(
            "template layers {}: {} files ({} rendered, {} bytes), {} folders, {} links; {} downloaded, the rest from the node's cache",
            names.join(", "),
            summary.files,
            summary.rendered,
            summary.bytes,
            summary.dirs,
            summary.symlinks,
            summary.downloaded,
        )])
    }
}

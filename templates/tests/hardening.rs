//! Hostile or failing inputs around the cache and apply: a layer replacing a tree, a cache
//! too small for an apply, a failing or stalled source, a third party's invalid manifest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use nexus_conformance::data::put as write;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use nexus_core::template::{BlobStream, MANIFEST_FORMAT};
use nexus_files::{FilesConfig, ServerFiles};
use nexus_templates::{
    CacheConfig, EntryKind, Error, LayerCache, LayerEntry, LayerManifest, LayerRef, ObjectStoreConfig,
    ObjectStoreTemplates, RenderContext, TemplateError, TemplateSource,
};

fn layer(s: &str) -> LayerRef {
    s.parse().unwrap()
}

fn ctx() -> RenderContext {
    RenderContext::new(serde_json::json!({}), BTreeMap::new())
}

async fn server(root: &std::path::Path) -> Result<ServerFiles, nexus_files::FilesError> {
    std::fs::create_dir_all(root).unwrap();
    ServerFiles::open(root, FilesConfig::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_removes_a_tree_and_ships_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = ObjectStoreTemplates::open(&ObjectStoreConfig::from_url("memory://")).unwrap();
    let old = tmp.path().join("old");
    write(&old, "x/old.txt", b"old");
    write(&old, "x/sub/deep.txt", b"deep");
    templates.publish_dir(&layer("base@1"), &old).await.unwrap();
    let new = tmp.path().join("new");
    write(&new, ".wh.x", b"");
    write(&new, "x/new.txt", b"new");
    let manifest = templates.publish_dir(&layer("next@1"), &new).await.unwrap();
    let at_x: Vec<_> = manifest.entries.iter().filter(|e| e.path == "x").map(|e| e.kind.clone()).collect();
    assert_eq!(at_x.len(), 2, "{at_x:?}");
    assert!(at_x.contains(&EntryKind::Whiteout));

    let cache = LayerCache::open(CacheConfig::new(tmp.path().join("cache")), Arc::new(templates)).await.unwrap();
    let root = tmp.path().join("server");
    let files = server(&root).await.unwrap();
    cache.apply(&[layer("base@1"), layer("next@1")], &files, &ctx()).await.unwrap();
    assert_eq!(std::fs::read(root.join("x/new.txt")).unwrap(), b"new");
    assert!(!root.join("x/old.txt").exists());
    assert!(!root.join("x/sub").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_larger_than_the_cache_is_refused_before_downloading() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = ObjectStoreTemplates::open(&ObjectStoreConfig::from_url("memory://")).unwrap();
    let src = tmp.path().join("src");
    write(&src, "a", &[1u8; 600]);
    write(&src, "b", &[2u8; 600]);
    templates.publish_dir(&layer("big@1"), &src).await.unwrap();
    let mut config = CacheConfig::new(tmp.path().join("cache"));
    config.max_bytes = 1000;
    let cache = LayerCache::open(config, Arc::new(templates)).await.unwrap();
    let files = server(&tmp.path().join("server")).await.unwrap();
    let out = cache.apply(&[layer("big@1")], &files, &ctx()).await;
    assert!(matches!(out, Err(Error::CacheTooSmall { bytes: 1200, max_bytes: 1000 })), "{out:?}");
    assert_eq!(cache.stats().blob_downloads, 0);
}

/// A source with one layer of one file, whose blob fails or stalls.
struct Flaky {
    manifest: LayerManifest,
    blob_calls: AtomicUsize,
    stall: bool,
}

impl Flaky {
    fn new(stall: bool, path: &str) -> Self {
        let manifest = LayerManifest {
            format: MANIFEST_FORMAT,
            layer: layer("flaky@1"),
            created_at: chrono::Utc::now(),
            entries: vec![LayerEntry {
                path: path.into(),
                kind: EntryKind::File { size: 4, sha256: "a".repeat(64), mode: 0o644, render: false },
            }],
        };
        Self { manifest, blob_calls: AtomicUsize::new(0), stall }
    }
}

#[async_trait]
impl TemplateSource for Flaky {
    async fn list_layers(&self) -> Result<Vec<LayerRef>, TemplateError> {
        Ok(vec![self.manifest.layer.clone()])
    }

    async fn manifest(&self, _: &LayerRef) -> Result<LayerManifest, TemplateError> {
        Ok(self.manifest.clone())
    }

    async fn blob(&self, _: &str) -> Result<BlobStream, TemplateError> {
        self.blob_calls.fetch_add(1, Ordering::SeqCst);
        if self.stall {
            // One chunk, then nothing, ever.
            let first = futures::stream::iter([Ok(Bytes::from_static(b"ab"))]);
            return Ok(first.chain(futures::stream::pending()).boxed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Err(TemplateError::Unreachable { what: "reading a blob".into(), source: "connection reset".into() })
    }
}

fn config(dir: &std::path::Path) -> CacheConfig {
    let mut config = CacheConfig::new(dir);
    config.backoff = Duration::from_millis(10);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_a_failed_download() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Arc::new(Flaky::new(false, "f"));
    let cache = LayerCache::open(config(&tmp.path().join("cache")), source.clone()).await.unwrap();
    let mut applies = Vec::new();
    for i in 0..4 {
        let (cache, root) = (cache.clone(), tmp.path().join(format!("server-{i}")));
        applies.push(tokio::spawn(async move {
            let files = server(&root).await.unwrap();
            cache.apply(&[layer("flaky@1")], &files, &ctx()).await
        }));
    }
    for apply in applies {
        let out = apply.await.unwrap();
        assert!(matches!(out, Err(Error::Fetch { source: TemplateError::Unreachable { .. }, .. })), "{out:?}");
    }
    // One caller's three attempts, not three for each of the four.
    assert_eq!(source.blob_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_fails_after_the_idle_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Arc::new(Flaky::new(true, "f"));
    let mut config = config(&tmp.path().join("cache"));
    config.idle_timeout = Duration::from_millis(100);
    config.attempts = 2;
    let cache = LayerCache::open(config, source.clone()).await.unwrap();
    let files = server(&tmp.path().join("server")).await.unwrap();
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), cache.apply(&[layer("flaky@1")], &files, &ctx()))
        .await
        .expect("a stalled download never ended");
    assert!(matches!(out, Err(Error::Fetch { source: TemplateError::Unreachable { .. }, .. })), "{out:?}");
    assert_eq!(source.blob_calls.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(std::fs::read_dir(tmp.path().join("cache/tmp")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_manifest_is_validated_before_it_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Arc::new(Flaky::new(false, "../escape"));
    let cache = LayerCache::open(config(&tmp.path().join("cache")), source).await.unwrap();
    let out = cache.manifest(&layer("flaky@1")).await;
    assert!(matches!(out, Err(Error::Fetch { source: TemplateError::InvalidPath { .. }, .. })), "{out:?}");
    assert!(!tmp.path().join("cache/layers/flaky@1.json").exists());
}

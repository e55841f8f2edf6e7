//! Apply benchmark: a 3-layer template of 1,000 files / 50 MB against a real S3-compatible
//! server (`s3s-fs`, found through `NEXUS_TEST_S3S_FS`).
//!
//! - cold: an empty cache, fetch + merge + write into an empty directory;
//! - warm: every layer cached, merge + write into an empty directory.
//!
//! Prints both medians and the warm/cold ratio. `cargo bench -p nexus-templates`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use nexus_conformance::data::noise;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_conformance::s3::S3Server;
use nexus_files::{FilesConfig, ServerFiles};
use nexus_templates::{CacheConfig, LayerCache, LayerRef, ObjectStoreConfig, ObjectStoreTemplates, RenderContext};

const FILES: usize = 1_000;
const TOTAL: usize = 50 << 20;
const RUNS: usize = 5;

/// Three layers; 1,000 files in all, 50 MB, sizes from 1 KB to ~200 KB, some paths shared
/// by several layers (later wins), a few rendered configs.
fn build(root: &Path) -> Vec<(LayerRef, std::path::PathBuf)> {
    let counts = [500, 300, 200];
    let mut layers = Vec::new();
    let mut n = 0usize;
    let avg = TOTAL / FILES;
    for (i, count) in counts.iter().enumerate() {
        let dir = root.join(format!("layer{i}"));
        for j in 0..*count {
            // Every tenth file of the upper layers overrides one of the base layer.
            let path = if i > 0 && j % 10 == 0 {
                format!("d{}/f{}.bin", j % 20, j)
            } else {
                format!("d{}/l{i}-f{j}.bin", j % 20)
            };
            let size = 1024 + (n * 7919) % (2 * avg - 2048);
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, noise(size, n as u64)).unwrap();
            n += 1;
        }
        std::fs::write(
            dir.join(format!("config{i}.properties")),
            "port={{ env.SERVER_PORT }}\nmemory={{ server.memory }}\n",
        )
        .unwrap();
        std::fs::write(dir.join(".nexus-render"), "*.properties\n").unwrap();
        layers.push((format!("bench{i}@1").parse().unwrap(), dir));
    }
    layers
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let Some(s3) = S3Server::start("bench").await else {
            println!("templates bench: skipped (set NEXUS_TEST_S3S_FS to an s3s-fs binary)");
            return;
        };
        let work = tempfile::tempdir().unwrap();
        let mut config =
            ObjectStoreConfig::s3_compatible("s3://bench/templates", s3.endpoint(), s3.access_key(), s3.secret_key());
        config.allow_http = true;
        let templates = ObjectStoreTemplates::open(&config).unwrap();
        let sources = build(&work.path().join("src"));
        let mut refs = Vec::new();
        let mut bytes = 0u64;
        let mut files = 0usize;
        for (layer, dir) in &sources {
            let manifest = templates.publish_dir(layer, dir).await.unwrap();
            for e in &manifest.entries {
                if let nexus_templates::EntryKind::File { size, .. } = e.kind {
                    bytes += size;
                    files += 1;
                }
            }
            refs.push(layer.clone());
        }
        println!("templates bench: 3 layers, {files} files, {:.1} MB published", bytes as f64 / 1e6);
        let env = BTreeMap::from([("SERVER_PORT".to_owned(), "25565".to_owned())]);
        let ctx = RenderContext::new(serde_json::json!({ "memory": 2048 }), env);
        let source: Arc<dyn nexus_templates::TemplateSource> = Arc::new(templates);
        let mut target_n = 0;
        let mut target = || {
            target_n += 1;
            let dir = work.path().join(format!("server-{target_n}"));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };

        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        let mut written = 0;
        for run in 0..RUNS {
            let cache_dir = work.path().join(format!("cache-{run}"));
            let cache = LayerCache::open(CacheConfig::new(&cache_dir), Arc::clone(&source)).await.unwrap();
            let files = ServerFiles::open(target(), FilesConfig::default()).await.unwrap();
            let started = Instant::now();
            let summary = cache.apply(&refs, &files, &ctx).await.unwrap();
            cold.push(started.elapsed());
            written = summary.files;
            let files = ServerFiles::open(target(), FilesConfig::default()).await.unwrap();
            let started = Instant::now();
            let summary = cache.apply(&refs, &files, &ctx).await.unwrap();
            warm.push(started.elapsed());
            assert_eq!(summary.downloaded, 0);
            drop(cache);
            std::fs::remove_dir_all(cache_dir).unwrap();
        }
        let (cold, warm) = (median(cold), median(warm));
        println!("templates bench: {written} files written per apply, {RUNS} runs each");
        println!("templates bench: cold (empty cache, fetch + merge + write) median {cold:?}");
        println!("templates bench: warm (cache hit, merge + write)           median {warm:?}");
        println!("templates bench: warm/cold = {:.1} % (goal <= 5 %)", warm.as_secs_f64() / cold.as_secs_f64() * 100.0);
    });
}

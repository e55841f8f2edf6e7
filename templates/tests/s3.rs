//! End to end: publish, list, apply through the cache, against a real S3-compatible server
//! (`s3s-fs`, see `nexus_conformance::s3`), and the same core cases against `memory://` and
//! `file://` stores (one shared body).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use nexus_conformance::data::{noise, put as write};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nexus_conformance::s3::S3Server;
use nexus_files::{FilesConfig, FilesError, ServerFiles};
use nexus_templates::{
    CacheConfig, EntryKind, Error, LayerCache, LayerRef, ObjectStoreConfig, ObjectStoreTemplates, RenderContext,
    TemplateError, TemplateSource,
};
use object_store::ObjectStoreExt;

type Corrupt = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn layer(s: &str) -> LayerRef {
    s.parse().unwrap()
}

fn ctx() -> RenderContext {
    let env = BTreeMap::from([("SERVER_PORT".to_owned(), "25565".to_owned())]);
    RenderContext::new(serde_json::json!({ "id": "srv-1", "memory": 2048 }), env)
}

fn tar_zst(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *content).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    zstd::encode_all(&tar[..], 3).unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    tmp: PathBuf,
    binary: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Self { tmp: tmp.path().to_path_buf(), _tmp: tmp, binary: noise(300_000, 7) }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let path = self.tmp.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    async fn server(&self, name: &str) -> (PathBuf, ServerFiles) {
        let root = self.dir(name);
        let files = ServerFiles::open(&root, FilesConfig::default()).await.unwrap();
        (root, files)
    }

    /// base@1 (a directory), mods@1 (a tar.zst), local@1 (a directory).
    async fn publish(&self, templates: &ObjectStoreTemplates) {
        let base = self.dir("src-base");
        write(&base, "config/server.properties", b"port={{ env.SERVER_PORT }}\nmemory={{ server.memory }}M\n");
        write(&base, "logs/old.log", b"old");
        write(&base, "eula.txt", b"eula=false\n");
        write(&base, "bin/start.sh", b"#!/bin/sh\nexec java\n");
        std::fs::set_permissions(base.join("bin/start.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        write(&base, "data/blob.bin", &self.binary);
        std::os::unix::fs::symlink("data", base.join("current")).unwrap();
        write(&base, ".nexus-render", b"*.properties\n");
        let manifest = templates.publish_dir(&layer("base@1"), &base).await.unwrap();
        assert!(manifest.entries.iter().all(|e| !e.path.contains(".nexus-render")));

        let archive = tar_zst(&[
            ("./plugins/a.jar", b"jar-a"),
            ("./.wh.logs", b""),
            ("./eula.txt", b"eula=true\n"),
            ("./config/extra.yml", b"id: {{ server.id }}\n"),
            ("./.nexus-render", b"config/*.yml\n"),
        ]);
        templates.publish_archive(&layer("mods@1"), std::io::Cursor::new(archive)).await.unwrap();

        let local = self.dir("src-local");
        write(&local, ".wh.current", b"");
        write(&local, "plugins/b.jar", b"jar-b");
        write(&local, "data/raw.bin", &[0xff, 0xfe, 0x00, 0x7b, 0x7b]);
        write(&local, ".nexus-render", b"*.bin\n");
        templates.publish_dir(&layer("local@1"), &local).await.unwrap();
    }
}

fn stack() -> Vec<LayerRef> {
    vec![layer("base@1"), layer("mods@1"), layer("local@1")]
}

/// What the three layers must produce.
fn check_applied(root: &Path, fixture: &Fixture) {
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(read("config/server.properties"), b"port=25565\nmemory=2048M\n");
    assert_eq!(read("config/extra.yml"), b"id: srv-1\n");
    assert_eq!(read("eula.txt"), b"eula=true\n");
    assert_eq!(read("plugins/a.jar"), b"jar-a");
    assert_eq!(read("plugins/b.jar"), b"jar-b");
    assert_eq!(read("data/raw.bin"), [0xff, 0xfe, 0x00, 0x7b, 0x7b]);
    assert_eq!(read("data/blob.bin"), fixture.binary);
    assert!(!root.join("logs").exists(), "whiteout of logs/");
    assert!(std::fs::symlink_metadata(root.join("current")).is_err(), "whiteout of the symlink");
    let mode = std::fs::metadata(root.join("bin/start.sh")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750);
}

async fn open_cache(dir: &Path, templates: &ObjectStoreTemplates, max_bytes: Option<u64>) -> LayerCache {
    let mut config = CacheConfig::new(dir);
    config.backoff = Duration::from_millis(50);
    if let Some(max) = max_bytes {
        config.max_bytes = max;
    }
    LayerCache::open(config, Arc::new(templates.clone())).await.unwrap()
}

fn digest_of(templates_manifest: &nexus_templates::LayerManifest, path: &str) -> String {
    templates_manifest
        .entries
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::File { sha256, .. } if e.path == path => Some(sha256.clone()),
            _ => None,
        })
        .unwrap()
}

fn tmp_is_empty(cache: &LayerCache) -> bool {
    std::fs::read_dir(cache.dir().join("tmp")).unwrap().next().is_none()
}

/// The cases every store must pass.
async fn core_cases(templates: ObjectStoreTemplates, corrupt_object: Corrupt) -> Fixture {
    let fixture = Fixture::new();
    fixture.publish(&templates).await;

    // Listing, and immutability of versions.
    assert_eq!(templates.list_layers().await.unwrap(), vec![layer("base@1"), layer("local@1"), layer("mods@1")]);
    let again = templates.publish_dir(&layer("base@1"), fixture.dir("src-local")).await;
    assert!(matches!(again, Err(Error::AlreadyPublished(ref l)) if l == &layer("base@1")), "{again:?}");

    // Apply the three layers into an empty server directory.
    let cache = open_cache(&fixture.dir("cache"), &templates, None).await;
    let (root, files) = fixture.server("server-1").await;
    let summary = cache.apply(&stack(), &files, &ctx()).await.unwrap();
    check_applied(&root, &fixture);
    // Two templates rendered; data/raw.bin is marked `render` but binary: copied, not counted.
    assert_eq!((summary.layers, summary.rendered), (3, 2), "{summary:?}");
    let downloads = cache.stats().blob_downloads;
    assert_eq!(summary.downloaded, downloads);
    assert_eq!(cache.stats().manifest_downloads, 3);

    // Again, from the cache only; a planted symlink at a file's path is replaced, not followed.
    let (root2, files2) = fixture.server("server-2").await;
    let outside = fixture.tmp.join("outside.txt");
    std::fs::write(&outside, b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, root2.join("eula.txt")).unwrap();
    let summary = cache.apply(&stack(), &files2, &ctx()).await.unwrap();
    assert_eq!(summary.downloaded, 0);
    assert_eq!(cache.stats().blob_downloads, downloads);
    check_applied(&root2, &fixture);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");

    // A corrupted cached blob is detected when copied out, evicted and fetched again.
    let base = cache.manifest(&layer("base@1")).await.unwrap();
    let blob = digest_of(&base, "data/blob.bin");
    let path = cache.blob_path(&blob);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (root3, files3) = fixture.server("server-3").await;
    cache.apply(&stack(), &files3, &ctx()).await.unwrap();
    check_applied(&root3, &fixture);
    assert_eq!(cache.stats().corrupt, 1);
    assert_eq!(cache.stats().blob_downloads, downloads + 1);

    // Concurrent applies of the same layers into a cold cache: one download per blob.
    let cold = open_cache(&fixture.dir("cache-cold"), &templates, None).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (cold, (_, files)) = (cold.clone(), fixture.server(&format!("concurrent-{i}")).await);
        tasks.push(tokio::spawn(async move { cold.apply(&stack(), &files, &ctx()).await.map(|_| ()) }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(cold.stats().blob_downloads, downloads, "{:?}", cold.stats());
    assert_eq!(cold.stats().manifest_downloads, 3);

    // An apply whose files cannot all be in the cache at once is refused, before any download.
    let tiny = open_cache(&fixture.dir("cache-tiny"), &templates, Some(200_000)).await;
    let (_, files_tiny) = fixture.server("server-tiny").await;
    let refused = tiny.apply(&stack(), &files_tiny, &ctx()).await;
    assert!(matches!(refused, Err(Error::CacheTooSmall { max_bytes: 200_000, .. })), "{refused:?}");
    assert_eq!(tiny.stats().blob_downloads, 0);

    // LRU under a small bound: the stack fits, but not with a 100 KB filler applied after it.
    let filler = fixture.dir("src-filler");
    write(&filler, "filler.bin", &noise(100_000, 7));
    templates.publish_dir(&layer("filler@1"), &filler).await.unwrap();
    let small = open_cache(&fixture.dir("cache-small"), &templates, Some(350_000)).await;
    let (root4, files4) = fixture.server("server-4").await;
    small.apply(&stack(), &files4, &ctx()).await.unwrap();
    check_applied(&root4, &fixture);
    let (_, files_filler) = fixture.server("server-filler").await;
    small.apply(&[layer("filler@1")], &files_filler, &ctx()).await.unwrap();
    let stats = small.stats();
    assert!(stats.evictions >= 1 && stats.bytes <= 350_000, "{stats:?}");
    assert!(!small.contains_blob(&blob));
    // The order survives a restart (mtimes): reopened, the newest blobs are still there.
    let before: Vec<_> = std::fs::read_dir(small.dir().join("blobs")).unwrap().count().to_string().into_bytes();
    drop(small);
    let reopened = open_cache(&fixture.dir("cache-small"), &templates, Some(350_000)).await;
    assert_eq!(std::fs::read_dir(reopened.dir().join("blobs")).unwrap().count().to_string().into_bytes(), before);

    // Hostile layers are refused at publishing, naming the path.
    let evil = fixture.dir("src-evil");
    std::os::unix::fs::symlink("/etc", evil.join("etc")).unwrap();
    let refused = templates.publish_dir(&layer("evil@1"), &evil).await;
    assert!(matches!(refused, Err(Error::Refused { ref path, .. }) if path == "etc"), "{refused:?}");
    let evil2 = fixture.dir("src-evil2");
    std::fs::create_dir(evil2.join("a")).unwrap();
    std::os::unix::fs::symlink("../../x", evil2.join("a/up")).unwrap();
    let refused = templates.publish_dir(&layer("evil@2"), &evil2).await;
    assert!(matches!(refused, Err(Error::Refused { ref path, .. }) if path == "a/up"), "{refused:?}");
    let mut raw = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_entry_type(tar::EntryType::Regular);
    header.as_old_mut().name[..10].copy_from_slice(b"../escaped");
    header.set_cksum();
    raw.append(&header, &b"x"[..]).unwrap();
    let refused = templates.publish_archive(&layer("evil@3"), std::io::Cursor::new(raw.into_inner().unwrap())).await;
    assert!(matches!(refused, Err(Error::Refused { ref path, .. }) if path == "../escaped"), "{refused:?}");
    assert!(!templates.list_layers().await.unwrap().iter().any(|l| l.name() == "evil"));

    // A planted symlink to /etc in the server directory is not followed out.
    let (root5, files5) = fixture.server("server-5").await;
    std::os::unix::fs::symlink("/etc", root5.join("config")).unwrap();
    let etc_before = std::fs::read_dir("/etc").unwrap().count();
    let err = cache.apply(&stack(), &files5, &ctx()).await.unwrap_err();
    assert!(matches!(err, Error::Files { source: FilesError::OutsideRoot { .. }, .. }), "{err:?}");
    assert!(!Path::new("/etc/server.properties").exists() && !Path::new("/etc/extra.yml").exists());
    assert_eq!(std::fs::read_dir("/etc").unwrap().count(), etc_before);

    // A bad template fails with its file and line.
    let bad = fixture.dir("src-bad");
    write(&bad, "bad.cfg", b"ok\nport={{ env.NOPE }}\n");
    write(&bad, "syntax.cfg", b"fine\n");
    write(&bad, ".nexus-render", b"*.cfg\n");
    templates.publish_dir(&layer("bad@1"), &bad).await.unwrap();
    let (_, files6) = fixture.server("server-6").await;
    let err = cache.apply(&[layer("bad@1")], &files6, &ctx()).await.unwrap_err();
    assert!(matches!(err, Error::Render { ref file, line: Some(2), .. } if file == "bad.cfg"), "{err:?}");
    let bad2 = fixture.dir("src-bad2");
    write(&bad2, "syntax.cfg", b"a\nb\nc {% if %}\n");
    write(&bad2, ".nexus-render", b"syntax.cfg\n");
    templates.publish_dir(&layer("bad@2"), &bad2).await.unwrap();
    let err = cache.apply(&[layer("bad@2")], &files6, &ctx()).await.unwrap_err();
    assert!(matches!(err, Error::Render { ref file, line: Some(3), .. } if file == "syntax.cfg"), "{err:?}");

    // A corrupted object in the store is refused as corrupt and not kept.
    let victim = fixture.dir("src-victim");
    write(&victim, "victim.bin", &noise(50_000, 99));
    let manifest = templates.publish_dir(&layer("victim@1"), &victim).await.unwrap();
    let digest = digest_of(&manifest, "victim.bin");
    corrupt_object(digest.clone()).await;
    let fresh = open_cache(&fixture.dir("cache-victim"), &templates, None).await;
    let (_, files7) = fixture.server("server-7").await;
    let err = fresh.apply(&[layer("victim@1")], &files7, &ctx()).await.unwrap_err();
    assert!(
        matches!(err, Error::Fetch { ref layer, source: TemplateError::Corrupt { .. }, .. } if layer == "victim@1"),
        "{err:?}"
    );
    assert!(!fresh.contains_blob(&digest) && !fresh.blob_path(&digest).exists());
    assert!(tmp_is_empty(&fresh));
    fixture
}

fn flip_file(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes[10] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    let templates = ObjectStoreTemplates::open(&ObjectStoreConfig::from_url("memory://")).unwrap();
    let store = Arc::clone(templates.store());
    let corrupt: Corrupt = Box::new(move |digest| {
        let store = Arc::clone(&store);
        Box::pin(async move {
            let key = nexus_templates::source::blob_key(&digest);
            let mut bytes = store.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
            bytes[10] ^= 0xff;
            store.put(&key, bytes.into()).await.unwrap();
        })
    });
    core_cases(templates, corrupt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let templates = ObjectStoreTemplates::open(&ObjectStoreConfig::local(&root)).unwrap();
    let corrupt: Corrupt = Box::new(move |digest| {
        let path = root.join("blobs/sha256").join(digest);
        Box::pin(async move { flip_file(&path) })
    });
    core_cases(templates, corrupt).await;
}

fn s3_config(s3: &S3Server) -> ObjectStoreConfig {
    let url = format!("s3://{}/templates", s3.bucket());
    let mut config = ObjectStoreConfig::s3_compatible(url, s3.endpoint(), s3.access_key(), s3.secret_key());
    config.allow_http = true;
    config.request_timeout_secs = Some(30);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store() {
    let Some(mut s3) = S3Server::start("nexus-templates").await else { return };
    let templates = ObjectStoreTemplates::open(&s3_config(&s3)).unwrap();
    let data = s3.data_dir().join(s3.bucket()).join("templates/blobs/sha256");
    let corrupt: Corrupt = Box::new(move |digest| {
        let path = data.join(digest);
        Box::pin(async move { flip_file(&path) })
    });
    let fixture = core_cases(templates.clone(), corrupt).await;

    // A warm cache applies with the server gone.
    let cache = open_cache(&fixture.dir("cache-offline"), &templates, None).await;
    let (_, files) = fixture.server("offline-1").await;
    cache.apply(&stack(), &files, &ctx()).await.unwrap();
    s3.kill().await;
    let (root, files) = fixture.server("offline-2").await;
    let summary = cache.apply(&stack(), &files, &ctx()).await.unwrap();
    assert_eq!(summary.downloaded, 0);
    check_applied(&root, &fixture);
    // A cold cache fails clearly, naming the layer.
    let cold = open_cache(&fixture.dir("cache-offline-cold"), &templates, None).await;
    let err = cold.apply(&stack(), &files, &ctx()).await.unwrap_err();
    assert!(matches!(err, Error::Fetch { ref what, .. } if what == "manifest"), "{err:?}");
    s3.restart().await;

    // The server killed in the middle of a big download.
    let big = fixture.dir("src-big");
    write(&big, "world/region.mca", &noise(64 << 20, 3));
    let manifest = templates.publish_dir(&layer("big@1"), &big).await.unwrap();
    let digest = digest_of(&manifest, "world/region.mca");
    let cache = open_cache(&fixture.dir("cache-big"), &templates, None).await;
    let (root, files) = fixture.server("big-1").await;
    let apply = {
        let (cache, files) = (cache.clone(), files.clone());
        tokio::spawn(async move { cache.apply(&[layer("big@1")], &files, &ctx()).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cache.stats().in_flight_bytes < (1 << 20) {
        assert!(tokio::time::Instant::now() < deadline, "the download never started");
        assert!(!apply.is_finished(), "the download finished before it could be interrupted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s3.kill().await;
    let err = apply.await.unwrap().unwrap_err();
    match &err {
        Error::Fetch { layer, what, source } => {
            assert_eq!(layer, "big@1");
            assert!(what.contains(&digest) && what.contains("world/region.mca"), "{what}");
            assert!(source.is_retryable(), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!cache.contains_blob(&digest) && !cache.blob_path(&digest).exists());
    assert!(tmp_is_empty(&cache));
    assert!(!root.join("world/region.mca").exists());
    s3.restart().await;
    cache.apply(&[layer("big@1")], &files, &ctx()).await.unwrap();
    assert_eq!(std::fs::metadata(root.join("world/region.mca")).unwrap().len(), 64 << 20);
    assert!(cache.contains_blob(&digest));
    let _ = std::io::stdout().flush();
}

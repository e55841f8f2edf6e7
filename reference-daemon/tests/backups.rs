//! Backups through the daemon's API on Docker, against the node's disk (the default
//! `file://` store) and a real S3-compatible server (`s3s-fs`), with one shared scenario:
//! a backup honouring `.pteroignore` and the denylist, downloaded (node token, browser
//! token) and read back as a tar.zst, restores with and without wipe, a checksum mismatch
//! refused with nothing changed, a restore refused while the server runs, deletion. On S3
//! also: the server killed in the middle of an upload (retried once it is back, or reported,
//! and no partial object or part left), and in the middle of a restore's download (reported,
//! the directory exactly as before).
//!
//! Needs Docker and `nexus-test/busybox:latest` (`scripts/images/busybox.sh`), and for S3
//! `s3s-fs` (`NEXUS_TEST_S3S_FS`, `scripts/services/s3.sh`); skips without them, fails under
//! `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "test code")]

mod support;

use nexus_conformance::data::{noise, put};
use nexus_conformance::s3::S3Server;
use nexus_core::ids::{BackupId, ServerId};
use nexus_core::model::Permission;
use nexus_core::transport::{BackupOutcome, NodeMessage, ServerSpec};
use nexus_templates::ObjectStoreConfig;
use nexus_wings::auth::TokenSigner;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// Longest wait for a backup's report.
const REPORT: Duration = Duration::from_secs(180);

/// One entry of a tree as the test sees it: directory, file (its SHA-256), or symlink target.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(String),
    Link(PathBuf),
}

fn file(content: &[u8]) -> Node {
    Node::File(sha256_hex(content))
}

fn tree_of(root: &Path) -> BTreeMap<String, Node> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let node = if meta.is_symlink() {
                Node::Link(std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                walk(base, &path, out);
                Node::Dir
            } else {
                file(&std::fs::read(&path).unwrap())
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Names in a tar.zst, in order.
fn archive_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(bytes).unwrap());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(String::from_utf8_lossy(&entry.path_bytes()).trim_end_matches('/').to_owned());
        std::io::copy(&mut entry.by_ref().take(u64::MAX), &mut std::io::sink()).unwrap();
    }
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The outcome the daemon reported for `backup`, waiting for it.
async fn report(panel: &RecordingPanel, backup: BackupId) -> BackupOutcome {
    let deadline = Instant::now() + REPORT;
    loop {
        let found = panel.received.lock().unwrap().iter().rev().find_map(|m| match m {
            NodeMessage::Backup(r) if r.backup == backup => Some(r.outcome.clone()),
            _ => None,
        });
        if let Some(outcome) = found {
            // Consumed, so the next operation on the same backup waits for its own report.
            panel.received.lock().unwrap().retain(|m| !matches!(m, NodeMessage::Backup(r) if r.backup == backup));
            return outcome;
        }
        assert!(Instant::now() < deadline, "no report for backup {backup} within {REPORT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `spec` on the daemon (installed, not installing).
async fn create_server(c: &Client, spec: &ServerSpec) {
    let (status, body) = c.post("/api/servers", serde_json::to_value(spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    c.wait_state(spec.id, "installed", Duration::from_secs(30)).await;
}

async fn start_backup(c: &Client, server: ServerId, backup: BackupId, ignored: &[&str]) {
    let (status, body) =
        c.post(&format!("/api/servers/{server}/backups"), json!({"backup": backup, "ignored": ignored})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"server": server, "backup": backup}));
}

/// A created backup: (bytes, checksum).
async fn backup_now(c: &Client, panel: &RecordingPanel, server: ServerId, ignored: &[&str]) -> (BackupId, u64, String) {
    let backup = BackupId::new();
    start_backup(c, server, backup, ignored).await;
    match report(panel, backup).await {
        BackupOutcome::Created { bytes, checksum } => (backup, bytes, checksum),
        other => panic!("backup failed: {other:?}"),
    }
}

async fn restore(
    c: &Client,
    server: ServerId,
    backup: BackupId,
    wipe: bool,
    checksum: &str,
) -> (u16, serde_json::Value) {
    c.post(&format!("/api/servers/{server}/backups/{backup}/restore"), json!({"wipe": wipe, "checksum": checksum}))
        .await
}

async fn download(c: &Client, server: ServerId, backup: BackupId, token: Option<&str>) -> reqwest::Response {
    let url = c.url(&format!("/api/servers/{server}/backups/{backup}"));
    match token {
        Some(token) => c.http.get(format!("{url}?token={token}")).send().await.unwrap(),
        None => c.http.get(url).bearer_auth(TOKEN).send().await.unwrap(),
    }
}

/// Names next to the server's directory that a restore would leave behind.
fn leftovers(data_root: &Path) -> Vec<String> {
    std::fs::read_dir(data_root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".nexus-"))
        .collect()
}

/// What the shared scenario leaves: a backup kept and one deleted.
struct Scenario {
    server: ServerId,
    kept: BackupId,
    deleted: BackupId,
}

/// Everything that does not depend on where the archives are kept.
async fn scenario(daemon: &TestDaemon, panel: &RecordingPanel) -> Scenario {
    let c = &daemon.client;
    let spec = busybox_spec();
    let server = spec.id;
    create_server(c, &spec).await;
    let root = daemon.data_dir(server);
    let data_root = root.parent().unwrap().to_path_buf();
    put(&root, "server.properties", b"motd=first\n");
    put(&root, "world/level.dat", &noise(1 << 20, 7));
    put(&root, "world/region/r.0.0.mca", b"region");
    put(&root, "logs/latest.log", b"noise");
    put(&root, "cache/blob", b"cached");
    put(&root, "plugins/a.jar", b"jar");
    put(&root, "secret.txt", b"denied to users");
    put(&root, ".pteroignore", b"*.log\ncache/\n");
    std::os::unix::fs::symlink("world/level.dat", root.join("level-link")).unwrap();

    // --- refusals before anything runs ---------------------------------------------------
    let (status, body) = c.post(&format!("/api/servers/{server}/backups"), json!({"backup": "nope"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = c
        .post(&format!("/api/servers/{server}/backups"), json!({"backup": BackupId::new(), "ignored": ["[z-a]"]}))
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("ignored[0]")), "{body}");
    let (status, body) =
        c.post(&format!("/api/servers/{}/backups", ServerId::new()), json!({"backup": BackupId::new()})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_server")), "{body}");
    let (status, body) = c.get(&format!("/api/servers/{server}/backups/not-a-uuid")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("backup")), "{body}");
    let (status, body) = restore(c, server, BackupId::new(), true, "xyz").await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("checksum")), "{body}");
    let (status, body) = c.get(&format!("/api/servers/{server}/backups/{}", BackupId::new())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_backup")), "{body}");

    // --- create ------------------------------------------------------------------------
    let (backup, bytes, checksum) = backup_now(c, panel, server, &["plugins/*.jar"]).await;
    let response = download(c, server, backup, None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/zstd");
    assert_eq!(headers["content-length"], bytes.to_string().as_str());
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"{backup}.tar.zst\"").as_str());
    let archive = response.bytes().await.unwrap();
    assert_eq!(archive.len() as u64, bytes);
    assert_eq!(sha256_hex(&archive), checksum);
    let expected_names = [
        ".pteroignore",
        "level-link",
        "logs",
        "plugins",
        "server.properties",
        "world",
        "world/level.dat",
        "world/region",
        "world/region/r.0.0.mca",
    ];
    assert_eq!(archive_names(&archive), expected_names, "ignored, denied and jar files left out");

    // Browser tokens: `backup` on this server only.
    let signer = TokenSigner::new(SECRET.as_bytes(), Duration::from_secs(900)).unwrap();
    let allowed = signer.mint(server, &[Permission::Backup], Duration::from_secs(60));
    let response = download(c, server, backup, Some(&allowed)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sha256_hex(&response.bytes().await.unwrap()), checksum);
    let files_only = signer.mint(server, &[Permission::FileRead], Duration::from_secs(60));
    assert_eq!(download(c, server, backup, Some(&files_only)).await.status(), 403);
    let other = signer.mint(ServerId::new(), &[Permission::Backup], Duration::from_secs(60));
    assert_eq!(download(c, server, backup, Some(&other)).await.status(), 403);
    let restore_by_browser = c
        .http
        .post(c.url(&format!("/api/servers/{server}/backups/{backup}/restore?token={allowed}")))
        .json(&json!({"wipe": true, "checksum": checksum}))
        .send()
        .await
        .unwrap();
    assert_eq!(restore_by_browser.status(), 401, "restores take the node token");

    // --- restore, keeping what the backup lacks -------------------------------------------
    let at_backup = tree_of(&root);
    put(&root, "server.properties", b"motd=changed\n");
    std::fs::remove_dir_all(root.join("world")).unwrap();
    put(&root, "new.txt", b"made after the backup");
    let (status, body) = restore(c, server, backup, false, &checksum).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(report(panel, backup).await, BackupOutcome::Restored);
    let mut expected = at_backup.clone();
    expected.insert("new.txt".into(), file(b"made after the backup"));
    assert_eq!(tree_of(&root), expected);
    assert_eq!(leftovers(&data_root), Vec::<String>::new());

    // --- restore with wipe: only the archive, and what users may not touch ----------------
    put(&root, "another.txt", b"x");
    let (status, body) = restore(c, server, backup.to_owned(), true, &checksum.to_uppercase()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(report(panel, backup).await, BackupOutcome::Restored);
    let mut expected: BTreeMap<String, Node> =
        at_backup.into_iter().filter(|(name, _)| expected_names.contains(&name.as_str())).collect();
    expected.insert("secret.txt".into(), file(b"denied to users"));
    assert_eq!(tree_of(&root), expected);
    // The file routes work on the new directory (the daemon reopened its manager).
    let (status, listing) = c.get(&format!("/api/servers/{server}/files/world")).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing.as_array().unwrap().len(), 2, "{listing}");

    // --- a checksum mismatch changes nothing ------------------------------------------------
    put(&root, "after.txt", b"y");
    let before = tree_of(&root);
    let (status, body) = restore(c, server, backup, true, &"0".repeat(64)).await;
    assert_eq!(status, 202, "{body}");
    match report(panel, backup).await {
        BackupOutcome::RestoreFailed { error } => assert!(error.contains("checksum mismatch"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(tree_of(&root), before);
    assert_eq!(leftovers(&data_root), Vec::<String>::new());

    // --- refused while the server runs; a backup of a running server is fine --------------
    let (status, body) = c.post(&format!("/api/servers/{server}/power?wait=true"), json!({"action": "start"})).await;
    assert_eq!(status, 204, "{body}");
    c.wait_state(server, "running", Duration::from_secs(30)).await;
    let (status, body) = restore(c, server, backup, true, &checksum).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("busy")), "{body}");
    let (second, _, _) = backup_now(c, panel, server, &[]).await;
    let (status, body) = c.post(&format!("/api/servers/{server}/power?wait=true"), json!({"action": "stop"})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(tree_of(&root), before, "nothing restored while it ran");

    // --- delete: idempotent -----------------------------------------------------------------
    for _ in 0..2 {
        let response =
            c.http.delete(c.url(&format!("/api/servers/{server}/backups/{backup}"))).bearer_auth(TOKEN).send().await;
        assert_eq!(response.unwrap().status(), 204);
    }
    let (status, body) = c.get(&format!("/api/servers/{server}/backups/{backup}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_backup")), "{body}");
    let (status, body) = restore(c, server, backup, true, &checksum).await;
    assert_eq!(status, 202, "{body}");
    assert!(matches!(report(panel, backup).await, BackupOutcome::RestoreFailed { .. }));
    assert_eq!(tree_of(&root), before);
    Scenario { server, kept: second, deleted: backup }
}

/// Objects and multipart parts of `s3` (relative paths), sorted.
fn s3_files(s3: &S3Server) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(s3.data_dir(), s3.data_dir(), &mut out);
    out.sort();
    out
}

/// What `s3s-fs` keeps of unfinished uploads: parts (`.upload_id-<id>.part-<n>`), the upload's
/// record (`.upload-<id>.json`), its metadata (`….upload-<id>.metadata.json`), files being
/// written (`.tmp.<n>.internal.part`).
fn partial_files(s3: &S3Server) -> Vec<String> {
    s3_files(s3).into_iter().filter(|f| f.contains(".upload") || f.starts_with(".tmp.")).collect()
}

fn s3_config(s3: &S3Server) -> ObjectStoreConfig {
    let url = format!("s3://{}/node", s3.bucket());
    let mut config = ObjectStoreConfig::s3_compatible(url, s3.endpoint(), s3.access_key(), s3.secret_key());
    config.region = Some(nexus_conformance::s3::REGION.into());
    config.allow_http = true;
    config.request_timeout_secs = Some(30);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_on_the_nodes_disk() {
    let Some(docker) = docker().await else { return };
    let panel = Arc::new(RecordingPanel::default());
    let daemon = TestDaemon::start_with_panel(docker, panel.clone(), |_| {}).await;
    let done = scenario(&daemon, &panel).await;
    let dir = daemon.dir.path().join("volumes/backups").join(done.server.to_string());
    let mut stored: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    stored.sort();
    assert_eq!(stored, [format!("{}.tar.zst", done.kept)], "the deleted one is gone, no partial file left");
    assert!(!dir.join(format!("{}.tar.zst", done.deleted)).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_on_s3() {
    let Some(docker) = docker().await else { return };
    let Some(s3) = S3Server::start("backups").await else { return };
    let panel = Arc::new(RecordingPanel::default());
    let store = s3_config(&s3);
    let daemon = TestDaemon::start_with_panel(docker, panel.clone(), |c| c.backups.store = Some(store)).await;
    let done = scenario(&daemon, &panel).await;
    assert_eq!(
        s3_files(&s3).into_iter().filter(|f| !f.starts_with(".bucket-")).collect::<Vec<_>>(),
        [format!("backups/node/{}/{}.tar.zst", done.server, done.kept)]
    );
}

/// Waits until `check` holds, or fails after `timeout` saying `what`.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_mid_upload_and_mid_restore() {
    // The daemon's retries and aborts, shown with `--nocapture` or when the test fails.
    let _ = tracing_subscriber::fmt().with_test_writer().with_max_level(tracing::Level::INFO).try_init();
    let Some(docker) = docker().await else { return };
    let Some(mut s3) = S3Server::start("backups").await else { return };
    let panel = Arc::new(RecordingPanel::default());
    let store = s3_config(&s3);
    let daemon = TestDaemon::start_with_panel(docker, panel.clone(), |c| c.backups.store = Some(store)).await;
    let c = &daemon.client;
    let mut spec = busybox_spec();
    spec.limits.disk_mb = 1024;
    let server = spec.id;
    create_server(c, &spec).await;
    let root = daemon.data_dir(server);
    let data_root = root.parent().unwrap().to_path_buf();
    for i in 0..4u64 {
        put(&root, &format!("world/chunk-{i}.bin"), &noise(50 << 20, i + 1));
    }
    put(&root, "server.properties", b"motd=big\n");
    let key = |backup: BackupId| format!("backups/node/{server}/{backup}.tar.zst");

    // --- killed mid-upload, back two seconds later: retried, and nothing partial stays ------
    let backup = BackupId::new();
    start_backup(c, server, backup, &[]).await;
    eventually("a first part to be uploaded", Duration::from_secs(120), || {
        s3_files(&s3).iter().any(|f| f.contains(".upload_id-") && f.contains(".part-"))
    })
    .await;
    s3.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.restart().await;
    let outcome = report(&panel, backup).await;
    println!("backup killed mid-upload then back: {outcome:?}");
    let kept = match outcome {
        BackupOutcome::Created { bytes, checksum } => {
            let stored = std::fs::read(s3.data_dir().join(key(backup))).unwrap();
            assert_eq!((stored.len() as u64, sha256_hex(&stored)), (bytes, checksum.clone()));
            Some((backup, checksum))
        }
        BackupOutcome::CreateFailed { error } => {
            assert!(error.contains("backup store"), "a clear error: {error}");
            assert!(!s3.data_dir().join(key(backup)).exists());
            None
        }
        other => panic!("{other:?}"),
    };
    eventually("the failed attempt's parts to be aborted", Duration::from_secs(60), || partial_files(&s3).is_empty())
        .await;

    // --- killed mid-upload for good: reported; its parts go once the store is back ----------
    let failed = BackupId::new();
    start_backup(c, server, failed, &[]).await;
    eventually("a first part to be uploaded", Duration::from_secs(120), || {
        s3_files(&s3).iter().any(|f| f.contains(".upload_id-") && f.contains(".part-"))
    })
    .await;
    s3.kill().await;
    match report(&panel, failed).await {
        BackupOutcome::CreateFailed { error } => {
            println!("backup killed mid-upload for good: {error}");
            assert!(error.contains("attempts failed") && error.contains("backup store"), "a clear error: {error}")
        }
        other => panic!("{other:?}"),
    }
    s3.restart().await;
    assert!(!s3.data_dir().join(key(failed)).exists());
    eventually("the parts of the failed backup to be aborted", Duration::from_secs(60), || {
        partial_files(&s3).is_empty()
    })
    .await;

    // A stored backup for the restore below (the first one, or a new one).
    let (backup, checksum) = match kept {
        Some(kept) => kept,
        None => {
            let (backup, _, checksum) = backup_now(c, &panel, server, &[]).await;
            (backup, checksum)
        }
    };

    // --- killed mid-restore: reported, the directory exactly as it was --------------------
    put(&root, "world/chunk-0.bin", b"changed since the backup");
    put(&root, "after.txt", b"made after the backup");
    let before = tree_of(&root);
    let (status, body) = restore(c, server, backup, true, &checksum).await;
    assert_eq!(status, 202, "{body}");
    eventually("the restore to be staging", Duration::from_secs(60), || !leftovers(&data_root).is_empty()).await;
    s3.kill().await;
    match report(&panel, backup).await {
        BackupOutcome::RestoreFailed { error } => {
            println!("restore killed mid-download: {error}");
            assert!(error.contains("backup store"), "a clear error: {error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(tree_of(&root) == before, "the directory changed");
    assert_eq!(leftovers(&data_root), Vec::<String>::new(), "no staging directory left");

    // The same restore once the store is back.
    s3.restart().await;
    let (status, body) = restore(c, server, backup, true, &checksum).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(report(&panel, backup).await, BackupOutcome::Restored);
    assert_eq!(std::fs::read(root.join("world/chunk-0.bin")).unwrap(), noise(50 << 20, 1));
    assert!(!root.join("after.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_interrupted_by_a_restart_are_reported_failed_at_start() {
    let Some(docker) = docker().await else { return };
    let panel = Arc::new(RecordingPanel::default());
    let (server, created, restored) = (ServerId::new(), BackupId::new(), BackupId::new());
    let mut partial = PathBuf::new();
    let mut markers = PathBuf::new();
    let daemon = TestDaemon::start_with_panel(docker, panel.clone(), |c| {
        // What a daemon killed mid-backup and mid-restore leaves: markers, a partial archive.
        markers = c.state_dir.join("backup-jobs");
        std::fs::create_dir_all(&markers).unwrap();
        std::fs::write(markers.join(format!("{server}.{created}.create")), b"").unwrap();
        std::fs::write(markers.join(format!("{server}.{restored}.restore")), b"").unwrap();
        partial = c.data_root.join("backups").join(server.to_string()).join(format!("{created}.tar.zst"));
        std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
        std::fs::write(&partial, b"half an archive").unwrap();
    })
    .await;
    assert_eq!(
        report(&panel, created).await,
        BackupOutcome::CreateFailed { error: "the node restarted during the backup".into() }
    );
    assert!(matches!(report(&panel, restored).await, BackupOutcome::RestoreFailed { .. }));
    assert!(!partial.exists(), "the partial archive is removed");
    assert_eq!(std::fs::read_dir(&markers).unwrap().count(), 0, "the markers are removed");

    // A job run to its end leaves no marker either.
    let spec = busybox_spec();
    create_server(&daemon.client, &spec).await;
    backup_now(&daemon.client, &panel, spec.id, &[]).await;
    assert_eq!(std::fs::read_dir(&markers).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fails_the_job_within_its_timeout() {
    let Some(docker) = docker().await else { return };
    // An "S3" that accepts connections and never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", stalled.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            connections.push(socket);
        }
    });
    let mut store = ObjectStoreConfig::s3_compatible("s3://bucket/node", endpoint, "key", "secret-secret");
    store.region = Some("us-east-1".into());
    store.allow_http = true;
    store.request_timeout_secs = Some(1);
    let panel = Arc::new(RecordingPanel::default());
    let daemon = TestDaemon::start_with_panel(docker, panel.clone(), |c| {
        c.backups.store = Some(store);
        c.backups.attempts = 1;
    })
    .await;
    let c = &daemon.client;
    let spec = busybox_spec();
    let server = spec.id;
    create_server(c, &spec).await;
    put(&daemon.data_dir(server), "world/level.dat", &noise(1 << 20, 3));

    let backup = BackupId::new();
    let started = Instant::now();
    start_backup(c, server, backup, &[]).await;
    match report(&panel, backup).await {
        BackupOutcome::CreateFailed { error } => {
            assert!(error.contains("backup store") && error.contains("no answer"), "a clear error: {error}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    // A restore from it fails as fast, and the server's slot is free again.
    let before = tree_of(&daemon.data_dir(server));
    let (status, body) = restore(c, server, backup, true, &"0".repeat(64)).await;
    assert_eq!(status, 202, "{body}");
    match report(&panel, backup).await {
        BackupOutcome::RestoreFailed { error } => assert!(error.contains("no answer"), "a clear error: {error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(tree_of(&daemon.data_dir(server)), before);
    let again = BackupId::new();
    start_backup(c, server, again, &[]).await;
    assert!(matches!(report(&panel, again).await, BackupOutcome::CreateFailed { .. }));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_a_server_removes_its_archives() {
    let Some(docker) = docker().await else { return };
    let panel = Arc::new(RecordingPanel::default());
    let daemon = TestDaemon::start_with_panel(docker, panel.clone(), |_| {}).await;
    let c = &daemon.client;
    let spec = busybox_spec();
    let server = spec.id;
    create_server(c, &spec).await;
    put(&daemon.data_dir(server), "a.txt", b"a");
    let (first, _, _) = backup_now(c, &panel, server, &[]).await;
    let (second, _, _) = backup_now(c, &panel, server, &[]).await;
    let volumes = daemon.dir.path().join("volumes");
    let stored = volumes.join("backups").join(server.to_string());
    assert!(stored.join(format!("{first}.tar.zst")).exists() && stored.join(format!("{second}.tar.zst")).exists());
    // Another server's archive, and a staging directory a crashed restore left.
    let foreign =
        volumes.join("backups").join(ServerId::new().to_string()).join(format!("{}.tar.zst", BackupId::new()));
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, b"not mine").unwrap();
    let staging = volumes.join(format!(".nexus-restore-{server}-{:032x}", 7));
    std::fs::create_dir_all(staging.join("world")).unwrap();

    let (status, body) = c.call(reqwest::Method::DELETE, &format!("/api/servers/{server}"), None).await;
    assert_eq!(status, 204, "{body}");
    let left: Vec<_> =
        std::fs::read_dir(&stored).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "archives left: {left:?}");
    assert!(!staging.exists(), "the staging directory is removed");
    assert_eq!(std::fs::read(&foreign).unwrap(), b"not mine");
}

//! Functional tests: every operation does its job, and the usage counter follows it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{Env, MAX};
use nexus_files::{ArchiveFormat, FileKind, FileOwner, FilesConfig, FilesError, dir_cost, file_cost};

/// The counter must always equal a fresh scan after the manager's own operations.
async fn assert_usage_consistent(env: &Env) -> u64 {
    let tracked = env.files.disk_usage().await.unwrap();
    let scanned = env.files.rescan().await.unwrap();
    assert_eq!(tracked, scanned, "tracked usage drifted from the disk");
    scanned
}

#[tokio::test]
async fn write_read_stat_list() {
    let env = Env::new().await;
    let entry = env.files.write("/a/b/c.txt", "hello").await.unwrap();
    assert_eq!((entry.path.as_str(), entry.kind, entry.size, entry.mode), ("a/b/c.txt", FileKind::File, 5, 0o644));
    assert_eq!(env.files.read("a/b/c.txt", MAX).await.unwrap(), b"hello");
    assert_eq!(std::fs::read(env.at("a/b/c.txt")).unwrap(), b"hello");
    let stat = env.files.stat("a//b/./c.txt").await.unwrap();
    assert_eq!((stat.name.as_str(), stat.size, stat.symlink), ("c.txt", 5, false));
    assert!(stat.modified.is_some());

    env.files.write("a/z.txt", "z").await.unwrap();
    let names: Vec<_> = env.files.list("a").await.unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
    assert_eq!(names, vec![("b".into(), FileKind::Directory), ("z.txt".into(), FileKind::File)]);
    let root = env.files.stat("/").await.unwrap();
    assert_eq!(root.kind, FileKind::Directory);
    assert!(matches!(env.files.read("a/b", MAX).await, Err(FilesError::NotAFile { .. })));
    assert!(matches!(env.files.list("a/z.txt").await, Err(FilesError::NotADirectory { .. })));
    assert!(matches!(env.files.read("nope", MAX).await, Err(FilesError::NotFound { .. })));
}

#[tokio::test]
async fn overwrite_keeps_mode_and_leaves_no_temporary() {
    let env = Env::new().await;
    env.put("run.sh", b"old");
    std::fs::set_permissions(env.at("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    env.files.write("run.sh", "new content").await.unwrap();
    assert_eq!(std::fs::read(env.at("run.sh")).unwrap(), b"new content");
    assert_eq!(std::fs::metadata(env.at("run.sh")).unwrap().mode() & 0o777, 0o750);
    assert_eq!(env.root_names(), vec!["run.sh"]);
}

#[tokio::test]
async fn streams_in_and_out() {
    let env = Env::new().await;
    let data = vec![7u8; 300_000];
    env.files.write_stream("big.bin", &data[..], None).await.unwrap();
    env.files.write_stream("hinted.bin", &data[..1000], Some(1000)).await.unwrap();
    let (entry, mut file) = env.files.open_read("big.bin").await.unwrap();
    assert_eq!(entry.size, 300_000);
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut file, &mut back).await.unwrap();
    assert_eq!(back, data);
    let err = env.files.read("big.bin", 1000).await.unwrap_err();
    assert!(matches!(err, FilesError::TooLarge { size: 300_000, max: 1000, .. }));
    assert_eq!(err.status_code(), 413);
    assert_eq!(assert_usage_consistent(&env).await, file_cost(300_000) + file_cost(1000));
}

#[tokio::test]
async fn rename_moves_files_and_directories() {
    let env = Env::new().await;
    env.put("d/f.txt", b"f");
    env.put("other.txt", b"o");
    env.files.rename("d/f.txt", "moved/deeper/g.txt").await.unwrap();
    assert_eq!(std::fs::read(env.at("moved/deeper/g.txt")).unwrap(), b"f");
    env.files.rename("moved", "d/moved").await.unwrap();
    assert!(env.at("d/moved/deeper/g.txt").exists());
    assert!(matches!(
        env.files.rename("other.txt", "d/moved/deeper/g.txt").await,
        Err(FilesError::AlreadyExists { .. })
    ));
    assert!(matches!(env.files.rename("d", "d/moved/inner").await, Err(FilesError::InvalidPath { .. })));
    assert!(matches!(env.files.rename("/", "x").await, Err(FilesError::InvalidPath { .. })));
}

#[tokio::test]
async fn copy_files_and_trees() {
    let env = Env::new().await;
    env.put("src/a.txt", b"a");
    env.put("src/sub/b.txt", b"bb");
    env.link("sub/b.txt", "src/link");
    std::fs::set_permissions(env.at("src/a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = assert_usage_consistent(&env).await;

    env.files.copy("src/a.txt", "a-copy.txt").await.unwrap();
    assert_eq!(std::fs::metadata(env.at("a-copy.txt")).unwrap().mode() & 0o777, 0o600);
    let entry = env.files.copy("src", "dst/tree").await.unwrap();
    assert_eq!(entry.kind, FileKind::Directory);
    assert_eq!(env.tree("dst/tree"), env.tree("src"));
    assert_eq!(std::fs::read_link(env.at("dst/tree/link")).unwrap().to_str(), Some("sub/b.txt"));
    assert_eq!(std::fs::read(env.at("dst/tree/sub/b.txt")).unwrap(), b"bb");
    // The tree once more, its new parent `dst`, and `a-copy.txt`.
    assert_eq!(assert_usage_consistent(&env).await, 2 * before + dir_cost() + file_cost(1));

    assert!(matches!(env.files.copy("src/a.txt", "a-copy.txt").await, Err(FilesError::AlreadyExists { .. })));
    assert!(matches!(env.files.copy("src", "src/inside").await, Err(FilesError::InvalidPath { .. })));
    assert!(!env.root_names().iter().any(|n| n.starts_with(".nexus-tmp-")));
}

#[tokio::test]
async fn delete_files_trees_and_links() {
    let env = Env::new().await;
    env.put("keep.txt", b"keep");
    env.put("tree/a/b/c.txt", b"12345");
    env.link("keep.txt", "link");
    assert_usage_consistent(&env).await;
    env.files.delete("link").await.unwrap();
    assert!(env.at("keep.txt").exists(), "deleting a link must not delete its target");
    env.files.delete("tree").await.unwrap();
    assert!(!env.at("tree").exists());
    assert_eq!(assert_usage_consistent(&env).await, file_cost(4));
    assert!(matches!(env.files.delete("tree").await, Err(FilesError::NotFound { .. })));
    assert!(matches!(env.files.delete("/").await, Err(FilesError::InvalidPath { .. })));
}

#[tokio::test]
async fn mkdir_is_recursive_and_idempotent() {
    let env = Env::new().await;
    let entry = env.files.mkdir("x/y/z").await.unwrap();
    assert_eq!((entry.kind, entry.path.as_str()), (FileKind::Directory, "x/y/z"));
    env.files.mkdir("x/y/z").await.unwrap();
    env.put("file", b"");
    assert!(matches!(env.files.mkdir("file").await, Err(FilesError::AlreadyExists { .. })));
    assert!(matches!(env.files.mkdir("file/sub").await, Err(FilesError::NotADirectory { .. })));
}

#[tokio::test]
async fn chmod_sets_permission_bits() {
    let env = Env::new().await;
    env.put("d/f", b"");
    env.files.chmod("d/f", 0o600).await.unwrap();
    env.files.chmod("d", 0o700).await.unwrap();
    assert_eq!(std::fs::metadata(env.at("d/f")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(env.at("d")).unwrap().mode() & 0o7777, 0o700);
}

#[tokio::test]
async fn in_root_symlinks_are_followed() {
    let env = Env::new().await;
    env.put("data/real.txt", b"real");
    env.link("data/real.txt", "file-link");
    env.link("data", "dir-link");
    env.link("../data/real.txt", "nested/up-link");
    assert_eq!(env.files.read("file-link", MAX).await.unwrap(), b"real");
    assert_eq!(env.files.read("nested/up-link", MAX).await.unwrap(), b"real");
    assert_eq!(env.files.read("dir-link/real.txt", MAX).await.unwrap(), b"real");
    env.files.write("dir-link/new.txt", "via link").await.unwrap();
    assert_eq!(std::fs::read(env.at("data/new.txt")).unwrap(), b"via link");
    env.files.write("file-link", "rewritten").await.unwrap();
    assert_eq!(std::fs::read(env.at("data/real.txt")).unwrap(), b"rewritten");
    assert!(std::fs::symlink_metadata(env.at("file-link")).unwrap().is_symlink(), "the link itself stays a link");
    let listed = env.files.list("/").await.unwrap();
    let dir_link = listed.iter().find(|e| e.name == "dir-link").unwrap();
    assert_eq!((dir_link.kind, dir_link.symlink), (FileKind::Directory, true));
    env.link("/etc/passwd", "out-link");
    let out = env.files.stat("out-link").await.unwrap();
    assert_eq!((out.kind, out.symlink), (FileKind::Symlink, true));
}

async fn roundtrip(format: ArchiveFormat) {
    let env = Env::new().await;
    env.put("srv/config/server.properties", b"motd=hi\n");
    env.put("srv/world/level.dat", &vec![3u8; 100_000]);
    env.put("srv/empty.txt", b"");
    std::fs::create_dir_all(env.at("srv/empty-dir")).unwrap();
    env.link("config/server.properties", "srv/props-link");
    std::fs::set_permissions(env.at("srv/config/server.properties"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let name = format!("backups/srv.{}", format.extension());
    let entry = env.files.compress("/", &["srv".into()], &name, format).await.unwrap();
    assert!(entry.size > 0);
    assert_eq!(ArchiveFormat::from_name(&name), Some(format));
    let summary = env.files.decompress(&name, "restored").await.unwrap();
    assert_eq!(summary.bytes, 8 + 100_000);
    assert_eq!(env.tree("restored/srv"), env.tree("srv"));
    assert_eq!(std::fs::read(env.at("restored/srv/world/level.dat")).unwrap(), vec![3u8; 100_000]);
    assert_eq!(
        std::fs::read_link(env.at("restored/srv/props-link")).unwrap().to_str(),
        Some("config/server.properties")
    );
    assert_eq!(std::fs::metadata(env.at("restored/srv/config/server.properties")).unwrap().mode() & 0o777, 0o600);
    assert!(!env.tree("").iter().any(|n| n.contains(".nexus-tmp-")));
    assert_usage_consistent(&env).await;
}

#[tokio::test]
async fn archive_roundtrips() {
    for format in [ArchiveFormat::TarGz, ArchiveFormat::TarZst, ArchiveFormat::Zip, ArchiveFormat::Tar] {
        roundtrip(format).await;
    }
}

#[tokio::test]
async fn compress_several_paths_relative_to_a_base() {
    let env = Env::new().await;
    env.put("srv/a.txt", b"a");
    env.put("srv/b/c.txt", b"c");
    env.files.compress("srv", &["a.txt".into(), "b".into()], "out.zip", ArchiveFormat::Zip).await.unwrap();
    env.files.decompress("out.zip", "x").await.unwrap();
    assert_eq!(env.tree("x"), vec!["a.txt", "b", "b/c.txt"]);
    // Detected by content, whatever the name says.
    env.files.rename("out.zip", "misnamed.tar.gz").await.unwrap();
    env.files.decompress("misnamed.tar.gz", "y").await.unwrap();
    assert_eq!(env.tree("y"), vec!["a.txt", "b", "b/c.txt"]);
    assert!(env.files.compress("srv", &["a.txt".into()], "out2.zip", ArchiveFormat::Zip).await.is_ok());
    assert!(matches!(
        env.files.compress("srv", &["a.txt".into()], "out2.zip", ArchiveFormat::Zip).await,
        Err(FilesError::AlreadyExists { .. })
    ));
    env.put("not-an-archive.bin", b"just bytes");
    assert!(matches!(
        env.files.decompress("not-an-archive.bin", "z").await,
        Err(FilesError::UnsupportedArchive { .. })
    ));
}

#[tokio::test]
async fn decompress_merges_and_replaces() {
    let env = Env::new().await;
    env.put("pack/mods/a.jar", b"new a");
    env.put("pack/mods/b.jar", b"b");
    env.put("server/mods/a.jar", b"old a, longer");
    env.put("server/mods/keep.jar", b"keep");
    env.files.compress("pack", &["mods".into()], "pack.tar.gz", ArchiveFormat::TarGz).await.unwrap();
    assert_usage_consistent(&env).await;
    env.files.decompress("pack.tar.gz", "server").await.unwrap();
    assert_eq!(std::fs::read(env.at("server/mods/a.jar")).unwrap(), b"new a");
    assert_eq!(env.tree("server"), vec!["mods", "mods/a.jar", "mods/b.jar", "mods/keep.jar"]);
    assert_usage_consistent(&env).await;
}

#[tokio::test]
async fn usage_follows_every_operation() {
    let env = Env::new().await;
    env.put("pre-existing.bin", &[0u8; 10_000]);
    let pre = file_cost(10_000);
    assert_eq!(env.files.disk_usage().await.unwrap(), pre, "the first scan counts what was there");
    env.files.write("a.txt", vec![1u8; 5000]).await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), pre + file_cost(5000));
    env.files.write("a.txt", vec![1u8; 200]).await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), pre + file_cost(200));
    env.files.copy("a.txt", "b.txt").await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), pre + 2 * file_cost(200));
    env.files.delete("pre-existing.bin").await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), 2 * file_cost(200));
    env.files.rename("b.txt", "sub/c.txt").await.unwrap();
    assert_eq!(assert_usage_consistent(&env).await, 2 * file_cost(200) + dir_cost());
    env.files.mkdir("empty/deeper").await.unwrap();
    assert_eq!(assert_usage_consistent(&env).await, 2 * file_cost(200) + 3 * dir_cost());
    env.files.write("empty.txt", "").await.unwrap();
    assert_eq!(assert_usage_consistent(&env).await, 3 * file_cost(200) + 3 * dir_cost(), "an empty file costs a block");
    env.files.delete("empty").await.unwrap();
    assert_eq!(assert_usage_consistent(&env).await, 3 * file_cost(200) + dir_cost());
    env.files.compress("/", &["a.txt".into()], "a.tar.zst", ArchiveFormat::TarZst).await.unwrap();
    env.files.decompress("a.tar.zst", "unpacked").await.unwrap();
    assert_usage_consistent(&env).await;
    // The game server writing behind the manager's back is only seen by a rescan.
    env.put("server-log.txt", &[0u8; 4096]);
    let tracked = env.files.disk_usage().await.unwrap();
    assert_eq!(env.files.rescan().await.unwrap(), tracked + file_cost(4096));
}

#[tokio::test]
async fn quota_is_enforced_and_adjustable() {
    let quota = 3 * file_cost(0);
    let env = Env::with(FilesConfig { quota_bytes: quota, ..Default::default() }).await;
    assert_eq!(env.files.quota(), quota);
    env.files.write("a", vec![0u8; 600]).await.unwrap();
    let err = env.files.write("b", vec![0u8; 10_000]).await.unwrap_err();
    let (needed, available) = (file_cost(10_000), quota - file_cost(600));
    assert!(
        matches!(err, FilesError::QuotaExceeded { needed: n, available: a } if (n, a) == (needed, available)),
        "{err:?}"
    );
    assert_eq!(err.status_code(), 507);
    // A replacement needs room for the whole new file: the old one stays until it is done.
    env.files.write("a", vec![0u8; 5000]).await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), file_cost(5000));
    let err = env.files.write("a", vec![0u8; 8000]).await.unwrap_err();
    assert!(matches!(err, FilesError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(std::fs::read(env.at("a")).unwrap().len(), 5000, "the old content stays");
    env.files.set_quota(0);
    env.files.write("b", vec![0u8; 50_000]).await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), file_cost(5000) + file_cost(50_000));
}

/// The manager's temporary names (writes and extractions in flight) are out of reach: a
/// temporary file renamed or deleted under a write would skew the usage counter.
#[tokio::test]
async fn temporary_names_are_reserved() {
    let env = Env::new().await;
    env.put(".nexus-tmp-0123/inner.txt", b"x");
    env.put("a.txt", b"a");
    env.link(".nexus-tmp-0123/inner.txt", "alias");
    let names: Vec<_> = env.files.list("/").await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["a.txt", "alias"]);
    let invalid = |r: Result<(), FilesError>| assert!(matches!(r, Err(FilesError::InvalidPath { .. })), "{r:?}");
    invalid(env.files.read(".nexus-tmp-0123/inner.txt", MAX).await.map(drop));
    invalid(env.files.read("alias", MAX).await.map(drop));
    invalid(env.files.write(".nexus-tmp-0123/inner.txt", "y").await.map(drop));
    invalid(env.files.delete(".nexus-tmp-0123").await);
    invalid(env.files.rename("a.txt", ".nexus-tmp-0124").await);
    invalid(env.files.rename(".nexus-tmp-0123", "b").await);
    invalid(env.files.copy("a.txt", "d/.nexus-tmp-0125").await.map(drop));
    invalid(env.files.mkdir(".nexus-tmp-0126").await.map(drop));
    // Archives may not bring such names in either.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_mode(0o644);
    tar.append_data(&mut header, "x/.nexus-tmp-0127", &b"x"[..]).unwrap();
    env.put("bad.tar", &tar.into_inner().unwrap());
    assert!(matches!(env.files.decompress("bad.tar", "/").await, Err(FilesError::ArchiveRejected { .. })));
    assert!(!env.at("x").exists());
}

#[tokio::test]
async fn created_files_get_the_configured_owner() {
    let owner = FileOwner { uid: 4242, gid: 4343 };
    let env = Env::with(FilesConfig { owner: Some(owner), ..Default::default() }).await;
    env.put("probe", b"");
    if std::fs::metadata(env.at("probe")).unwrap().uid() != 0 {
        eprintln!("skipped: chown needs root");
        return;
    }
    env.files.write("d/e/f.txt", "x").await.unwrap();
    env.files.mkdir("m").await.unwrap();
    for rel in ["d", "d/e", "d/e/f.txt", "m"] {
        let meta = std::fs::metadata(env.at(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343), "{rel}");
    }
}

#[tokio::test]
async fn errors_map_to_statuses_and_entries_serialize() {
    let env = Env::with(FilesConfig { denylist: vec!["*.jar".into()], ..Default::default() }).await;
    env.put("server.jar", b"jar");
    let listed = env.files.list("/").await.unwrap();
    assert!(listed[0].denied);
    let json = serde_json::to_value(&listed[0]).unwrap();
    assert_eq!(json["kind"], "file");
    assert_eq!(json["denied"], true);
    let cases: Vec<(FilesError, u16, &str)> = vec![
        (env.files.read("../x", MAX).await.unwrap_err(), 400, "outside_root"),
        (env.files.read("server.jar", MAX).await.unwrap_err(), 403, "denied"),
        (env.files.read("missing", MAX).await.unwrap_err(), 404, "not_found"),
        (env.files.mkdir("server.jar").await.unwrap_err(), 403, "denied"),
        (env.files.chmod("x", 0o4755).await.unwrap_err(), 400, "invalid_mode"),
    ];
    for (err, status, code) in cases {
        assert_eq!((err.status_code(), err.code()), (status, code), "{err}");
    }
    let format: ArchiveFormat = serde_json::from_str("\"tar.zst\"").unwrap();
    assert_eq!(format, ArchiveFormat::TarZst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_keep_usage_exact() {
    let env = Env::with(FilesConfig { quota_bytes: 1 << 30, ..Default::default() }).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let files = env.files.clone();
        tasks.push(tokio::spawn(async move { files.write(&format!("dir/{}.bin", i % 8), vec![0u8; 1000 + i]).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_usage_consistent(&env).await;
    assert_eq!(env.tree("dir").len(), 8);
}

//! Backups and restores of a whole root: what goes in (`.pteroignore`, the denylist, hostile
//! entries left out and never followed or opened), restores staged next to the root and
//! swapped in at once (wipe or keep, hard-linked clones never written through), hostile and
//! broken archives refused with the root and everything around it unchanged, and a property
//! test: any tree restores to itself.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use nexus_files::{BackupSummary, FilesConfig, FilesError, ServerFiles};
use proptest::prelude::*;

/// One entry of a tree as a test sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(Vec<u8>, u32),
    Link(String),
    Special,
}

/// Every entry below `root` (relative paths), never following symlinks.
fn tree_of(root: &Path) -> BTreeMap<String, Node> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let node = if meta.is_symlink() {
                Node::Link(std::fs::read_link(&path).unwrap().to_string_lossy().into_owned())
            } else if meta.is_dir() {
                walk(base, &path, out);
                Node::Dir(mode)
            } else if meta.is_file() {
                Node::File(std::fs::read(&path).unwrap(), mode)
            } else {
                Node::Special
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Entries of a tar.zst: name → node (directories without their mode: tar keeps it).
fn archive_of(bytes: &[u8]) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(bytes).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mode = entry.header().mode().unwrap() & 0o777;
        let node = match entry.header().entry_type() {
            tar::EntryType::Directory => Node::Dir(mode),
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                Node::File(data, mode)
            }
            tar::EntryType::Symlink => {
                Node::Link(String::from_utf8(entry.link_name_bytes().unwrap().into_owned()).unwrap())
            }
            other => panic!("unexpected entry type {other:?}"),
        };
        out.insert(name.trim_end_matches('/').to_owned(), node);
    }
    out
}

async fn backup(files: &ServerFiles, ignored: &[&str]) -> (Vec<u8>, BackupSummary) {
    let ignored: Vec<String> = ignored.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let summary = tokio::time::timeout(Duration::from_secs(30), files.write_backup(&mut out, &ignored))
        .await
        .expect("a backup never stalls")
        .unwrap();
    assert_eq!(summary.archive_bytes, out.len() as u64);
    (out, summary)
}

async fn restore(files: &ServerFiles, archive: &[u8], wipe: bool) {
    let staged = files.stage_restore(archive, wipe).await.unwrap();
    staged.commit().await.unwrap();
}

fn names(tree: &BTreeMap<String, Node>) -> Vec<&str> {
    tree.keys().map(String::as_str).collect()
}

/// Names next to the root (in the temporary directory holding it).
fn siblings(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn backups_honour_pteroignore_and_restore_with_wipe() {
    let env = Env::new().await;
    env.put("server.properties", b"motd=hello\n");
    env.put("world/level.dat", &[7u8; 100_000]);
    env.put("world/region/r.0.0.mca", b"region");
    env.put("logs/latest.log", b"noise");
    env.put("logs/keep.log", b"kept");
    env.put("cache/blob.bin", b"cached");
    env.put("crash.log", b"crash");
    env.put("plugins/a.jar", b"jar");
    env.put("plugins/config.yml", b"x: 1");
    env.link("world/level.dat", "level-link");
    env.put(".pteroignore", b"# comment\n*.log\n!keep.log\ncache/\n[z-a]\n");
    std::fs::set_permissions(env.at("server.properties"), std::fs::Permissions::from_mode(0o640)).unwrap();

    let (archive, summary) = backup(&env.files, &["plugins/*.jar"]).await;
    let entries = archive_of(&archive);
    assert_eq!(
        names(&entries),
        [
            ".pteroignore",
            "level-link",
            "logs",
            "logs/keep.log",
            "plugins",
            "plugins/config.yml",
            "server.properties",
            "world",
            "world/level.dat",
            "world/region",
            "world/region/r.0.0.mca"
        ]
    );
    assert_eq!(entries["level-link"], Node::Link("world/level.dat".into()));
    assert_eq!(entries["server.properties"], Node::File(b"motd=hello\n".to_vec(), 0o640));
    assert_eq!((summary.files, summary.directories, summary.symlinks), (6, 4, 1));
    assert_eq!(summary.ignored, 4, "latest.log, crash.log, cache/, a.jar: {summary:?}");
    let content: usize = entries.values().map(|n| if let Node::File(data, _) = n { data.len() } else { 0 }).sum();
    assert_eq!(summary.bytes, content as u64);

    // The tree moves on; a wiping restore brings back exactly what was archived.
    let expected = {
        let mut tree = tree_of(&env.root);
        tree.retain(|name, _| entries.contains_key(name));
        tree
    };
    std::fs::remove_dir_all(env.at("world")).unwrap();
    env.put("server.properties", b"motd=changed\n");
    env.put("new.txt", b"new");
    let before = env.snapshot();
    restore(&env.files, &archive, true).await;
    env.assert_unchanged(&before);
    assert_eq!(tree_of(&env.root), expected);
    // The root is a new directory: a manager opened now sees it; the old one is stale.
    let fresh = ServerFiles::open(&env.root, FilesConfig::default()).await.unwrap();
    assert_eq!(fresh.read("server.properties", 100).await.unwrap(), b"motd=hello\n");
}

#[tokio::test]
async fn restore_without_wipe_keeps_later_files_and_never_writes_through_a_link() {
    let env = Env::new().await;
    env.put("a.txt", b"old");
    env.put("d/b.txt", b"b");
    env.put("swap", b"a file at backup time");
    let (archive, _) = backup(&env.files, &[]).await;

    // Changed in place (same inode), added, and a file turned into a directory.
    std::fs::OpenOptions::new().write(true).truncate(true).open(env.at("a.txt")).unwrap().write_all(b"new").unwrap();
    let live_inode = std::fs::metadata(env.at("a.txt")).unwrap().ino();
    env.put("c.txt", b"added later");
    env.put("d/e.txt", b"added later too");
    std::fs::remove_file(env.at("swap")).unwrap();
    env.put("swap/inner.txt", b"in a directory now");
    env.link("c.txt", "later-link");

    let staged = env.files.stage_restore(&archive[..], false).await.unwrap();
    assert_eq!(staged.summary().kept, 3, "c.txt, d/e.txt, later-link: {:?}", staged.summary());
    // Nothing of the root changed yet; the staging directory is next to it, and its files
    // kept from the live tree are the live inodes, linked.
    assert_eq!(std::fs::read(env.at("a.txt")).unwrap(), b"new");
    assert_eq!(std::fs::metadata(env.at("a.txt")).unwrap().ino(), live_inode);
    let staging = siblings(&env).into_iter().find(|n| n.starts_with(".nexus-restore-")).expect("staging sibling");
    let staging = env.tmp.path().join(staging);
    assert_eq!(std::fs::read(staging.join("a.txt")).unwrap(), b"old");
    assert_ne!(std::fs::metadata(staging.join("a.txt")).unwrap().ino(), live_inode);
    assert_eq!(
        std::fs::metadata(staging.join("c.txt")).unwrap().ino(),
        std::fs::metadata(env.at("c.txt")).unwrap().ino()
    );
    assert_eq!(std::fs::metadata(env.at("c.txt")).unwrap().nlink(), 2);

    staged.commit().await.unwrap();
    assert_eq!(std::fs::read(env.at("a.txt")).unwrap(), b"old");
    assert_eq!(std::fs::read(env.at("d/b.txt")).unwrap(), b"b");
    assert_eq!(std::fs::read(env.at("c.txt")).unwrap(), b"added later");
    assert_eq!(std::fs::read(env.at("d/e.txt")).unwrap(), b"added later too");
    assert_eq!(std::fs::read(env.at("swap")).unwrap(), b"a file at backup time", "the archive wins");
    assert_eq!(std::fs::read_link(env.at("later-link")).unwrap(), Path::new("c.txt"));
    // The replaced tree is gone: the kept file has one link again, nothing is left beside.
    assert_eq!(std::fs::metadata(env.at("c.txt")).unwrap().nlink(), 1);
    assert_eq!(siblings(&env), ["outside", "root"]);
}

#[tokio::test]
async fn hostile_trees_are_archived_without_following_or_opening_anything() {
    let env = Env::new().await;
    env.put("ok.txt", b"fine");
    env.link("/etc", "etc");
    env.link("/etc/passwd", "passwd");
    env.link("../outside", "up");
    env.link("../../outside/secret.txt", "dir/secret");
    mkfifo(&env.at("pipe"));
    mkfifo(&env.at("dir/pipe2"));
    std::fs::hard_link(env.outside.join("secret.txt"), env.at("hard")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(env.at("sock")).unwrap();
    let device = std::process::Command::new("mknod").arg(env.at("null")).args(["c", "1", "3"]).status();
    let has_device = device.is_ok_and(|s| s.success());
    let before = env.snapshot();

    let (archive, summary) = backup(&env.files, &[]).await;
    let entries = archive_of(&archive);
    assert_eq!(names(&entries), ["dir", "ok.txt"]);
    let expected_skipped = 8 + u64::from(has_device);
    assert_eq!(summary.skipped, expected_skipped, "{summary:?}");
    let raw = zstd::stream::decode_all(&archive[..]).unwrap();
    assert!(!raw.windows(SECRET.len()).any(|w| w == SECRET), "the secret was read");

    // Restoring over the same hostile tree keeps what can be kept, follows nothing.
    restore(&env.files, &archive, false).await;
    env.assert_unchanged(&before);
    let tree = tree_of(&env.root);
    assert_eq!(names(&tree), ["dir", "hard", "ok.txt"], "links leading out, fifos, sockets, devices not kept");
    assert_eq!(std::fs::read(env.at("hard")).unwrap(), SECRET, "the hard link itself is kept, as it was");
    assert_eq!(std::fs::metadata(env.outside.join("secret.txt")).unwrap().nlink(), 2);
}

#[tokio::test]
async fn a_fifo_or_an_oversized_pteroignore_refuses_the_backup_at_once() {
    let env = Env::new().await;
    mkfifo(&env.at(".pteroignore"));
    let mut out = Vec::new();
    let err = tokio::time::timeout(Duration::from_secs(10), env.files.write_backup(&mut out, &[])).await.unwrap();
    assert!(matches!(err, Err(FilesError::SpecialFile { .. })), "{err:?}");

    std::fs::remove_file(env.at(".pteroignore")).unwrap();
    env.put(".pteroignore", &vec![b'#'; 64 * 1024 + 1]);
    let err = env.files.write_backup(&mut Vec::new(), &[]).await;
    assert!(matches!(err, Err(FilesError::TooLarge { .. })), "{err:?}");

    std::fs::remove_file(env.at(".pteroignore")).unwrap();
    env.link("../outside/secret.txt", ".pteroignore");
    let err = env.files.write_backup(&mut Vec::new(), &[]).await;
    assert!(matches!(err, Err(FilesError::OutsideRoot { .. })), "{err:?}");

    std::fs::remove_file(env.at(".pteroignore")).unwrap();
    let err = env.files.write_backup(&mut Vec::new(), &["[z-a]".to_owned()]).await;
    assert!(matches!(err, Err(FilesError::InvalidConfig { .. })), "{err:?}");
}

/// Fails every write after `left` bytes.
struct FailingSink {
    left: usize,
}

impl tokio::io::AsyncWrite for FailingSink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::other("the store went away")));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_sink_stops_the_backup_with_its_own_error() {
    let env = Env::new().await;
    let mut noise = vec![0u8; 8 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    env.put("noise.bin", &noise);
    let err = tokio::time::timeout(Duration::from_secs(30), env.files.write_backup(FailingSink { left: 1 << 20 }, &[]))
        .await
        .expect("no hang");
    match err {
        Err(FilesError::Io { source, .. }) => assert_eq!(source.to_string(), "the store went away"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wiping_restores_keep_denied_files_and_backups_leave_them_out() {
    let config = FilesConfig { denylist: vec!["*.jar".into(), "secret/".into()], ..FilesConfig::default() };
    let env = Env::with(config.clone()).await;
    env.put("server.jar", b"the server");
    env.put("secret/key", b"key");
    env.put("deep/down/mod.jar", b"mod");
    env.put("a.txt", b"a");
    let (archive, summary) = backup(&env.files, &[]).await;
    assert_eq!(names(&archive_of(&archive)), ["a.txt", "deep", "deep/down"]);
    assert_eq!(summary.denied, 3);

    std::fs::remove_file(env.at("a.txt")).unwrap();
    env.put("b.txt", b"b");
    restore(&env.files, &archive, true).await;
    let tree = tree_of(&env.root);
    assert_eq!(names(&tree), ["a.txt", "deep", "deep/down", "deep/down/mod.jar", "secret", "secret/key", "server.jar"]);
    assert_eq!(tree["server.jar"], Node::File(b"the server".to_vec(), 0o644));

    // An archive carrying a denied entry is refused, whatever made it.
    let files = ServerFiles::open(&env.root, config).await.unwrap();
    let denied = zst(&tar_of(&[(b"other.jar", REGULAR, b"", b"x")]));
    let err = files.stage_restore(&denied[..], true).await.err().unwrap();
    assert!(matches!(err, FilesError::Denied { .. }), "{err:?}");
}

/// Archives a restore must refuse, by name.
fn hostile_archives() -> Vec<(&'static str, Vec<u8>)> {
    let valid = zst(&tar_of(&[(b"fine.txt", REGULAR, b"", b"fine")]));
    let mut trailing = valid.clone();
    trailing.extend(std::iter::repeat_n(0x55u8, 2 << 20));
    let big = zst(&tar_of(&[(b"big.bin", REGULAR, b"", &vec![1u8; 1 << 20])]));
    vec![
        ("dot-dot", zst(&tar_of(&[(b"../x", REGULAR, b"", b"escaped")]))),
        ("inner dot-dot", zst(&tar_of(&[(b"a/../../x", REGULAR, b"", b"escaped")]))),
        ("absolute", zst(&tar_of(&[(b"/tmp/nexus-absolute", REGULAR, b"", b"escaped")]))),
        (
            "file below a symlink entry",
            zst(&tar_of(&[
                (b"sub", DIRECTORY, b"", b""),
                (b"link", SYMLINK, b"sub", b""),
                (b"link/f", REGULAR, b"", b"x"),
            ])),
        ),
        ("symlink leading out", zst(&tar_of(&[(b"out", SYMLINK, b"../outside", b"")]))),
        ("absolute symlink", zst(&tar_of(&[(b"etc", SYMLINK, b"/etc", b"")]))),
        ("hard link", zst(&tar_of(&[(b"a", REGULAR, b"", b"a"), (b"h", HARDLINK, b"../outside/secret.txt", b"")]))),
        ("device", zst(&tar_of(&[(b"null", CHARDEV, b"", b"")]))),
        ("fifo", zst(&tar_of(&[(b"pipe", FIFO, b"", b"")]))),
        ("reserved name", zst(&tar_of(&[(b".nexus-tmp-x", REGULAR, b"", b"x")]))),
        ("truncated", big[..big.len() / 2].to_vec()),
        ("gzip", gz(&tar_of(&[(b"fine.txt", REGULAR, b"", b"fine")]))),
        ("plain tar", tar_of(&[(b"fine.txt", REGULAR, b"", b"fine")])),
        ("garbage", vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("trailing data", trailing),
        ("empty", Vec::new()),
    ]
}

#[tokio::test]
async fn hostile_and_broken_archives_leave_everything_as_it_was() {
    for (name, archive) in hostile_archives() {
        for wipe in [true, false] {
            let env = Env::new().await;
            env.put("keep/me.txt", b"still here");
            env.link("keep/me.txt", "me-link");
            let before_root = tree_of(&env.root);
            let before = env.snapshot();
            let result = env.files.stage_restore(&archive[..], wipe).await;
            let err = match result {
                Ok(staged) => {
                    staged.discard().await;
                    panic!("{name} (wipe {wipe}) was staged")
                }
                Err(e) => e,
            };
            // "empty" is a zstd-less stream: refused as an unreadable archive like the others.
            assert!(matches!(err, FilesError::ArchiveRejected { .. }), "{name}: {err:?}");
            assert_eq!(tree_of(&env.root), before_root, "{name}: the root changed");
            env.assert_unchanged(&before);
            assert!(!Path::new("/tmp/nexus-absolute").exists());
            // The same manager still works: nothing was swapped.
            assert_eq!(env.files.read("keep/me.txt", 100).await.unwrap(), b"still here");
        }
    }
}

#[tokio::test]
async fn a_staged_restore_changes_nothing_until_committed() {
    let env = Env::new().await;
    env.put("a.txt", b"a");
    let (archive, _) = backup(&env.files, &[]).await;
    env.put("a.txt", b"changed");
    let before_root = tree_of(&env.root);

    let staged = env.files.stage_restore(&archive[..], true).await.unwrap();
    assert_eq!(tree_of(&env.root), before_root);
    assert_eq!(siblings(&env).len(), 3, "root, outside and the staging directory");
    // One restore of a root at a time.
    let err = env.files.stage_restore(&archive[..], true).await.err().unwrap();
    assert!(matches!(err, FilesError::Busy { .. }), "{err:?}");
    staged.discard().await;
    assert_eq!(siblings(&env), ["outside", "root"]);
    assert_eq!(tree_of(&env.root), before_root);

    // Dropped without a word: removed in the background.
    drop(env.files.stage_restore(&archive[..], true).await.unwrap());
    for _ in 0..100 {
        if siblings(&env).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(siblings(&env), ["outside", "root"]);
    assert_eq!(tree_of(&env.root), before_root);

    // A leftover of a crashed run is removed by the next restore.
    let leftover = env.tmp.path().join(".nexus-restore-root-0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(leftover.join("x")).unwrap();
    restore(&env.files, &archive, true).await;
    assert_eq!(siblings(&env), ["outside", "root"]);
}

#[tokio::test]
async fn a_restore_must_fit_the_quota() {
    let env = Env::new().await;
    env.put("big.bin", &vec![3u8; 2 << 20]);
    let (archive, _) = backup(&env.files, &[]).await;
    let small =
        ServerFiles::open(&env.root, FilesConfig { quota_bytes: 1 << 20, ..FilesConfig::default() }).await.unwrap();
    let before = tree_of(&env.root);
    let err = small.stage_restore(&archive[..], true).await.err().unwrap();
    assert!(matches!(err, FilesError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(tree_of(&env.root), before);
    assert_eq!(siblings(&env), ["outside", "root"]);
}

/// A reader failing after `left` bytes (a store that died mid-download).
struct FailingReader {
    data: Vec<u8>,
    at: usize,
    left: usize,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "store killed")));
        }
        let n = buf.remaining().min(self.left).min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_source_failing_mid_stream_fails_the_restore_with_its_error() {
    let env = Env::new().await;
    let mut noise = vec![0u8; 4 << 20];
    let mut x = 88172645463325252_u64;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    env.put("noise.bin", &noise);
    let (archive, _) = backup(&env.files, &[]).await;
    env.put("noise.bin", b"replaced");
    let before = env.snapshot();
    let before_root = tree_of(&env.root);
    let reader = FailingReader { left: archive.len() / 2, data: archive, at: 0 };
    let err = env.files.stage_restore(reader, true).await.err().unwrap();
    match err {
        FilesError::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::ConnectionReset),
        other => panic!("{other:?}"),
    }
    assert_eq!(tree_of(&env.root), before_root);
    env.assert_unchanged(&before);
}

/// One generated entry: its path, a file's content and mode, or a symlink's target (a
/// directory when neither).
type TreeEntry = (String, Option<(Vec<u8>, u32)>, Option<String>);

/// A random tree: directories, files (content, mode) and in-root symlinks.
fn arb_tree() -> impl Strategy<Value = Vec<TreeEntry>> {
    let name = prop::sample::select(vec!["a", "b", "c", "data", "x.txt", "World", "é"]);
    let path = prop::collection::vec(name, 1..4).prop_map(|parts| parts.join("/"));
    let content = prop::collection::vec(any::<u8>(), 0..5000);
    let mode = prop::sample::select(vec![0o600u32, 0o644, 0o755, 0o400]);
    let entry =
        (path, prop::option::of((content, mode)), prop::option::of(prop::sample::select(vec!["a", "b/c", "x.txt"])));
    prop::collection::vec(entry.prop_map(|(p, f, l)| (p, f, l.map(str::to_owned))), 0..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn any_tree_restores_to_itself(entries in arb_tree()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let env = Env::new().await;
            for (path, file, link) in &entries {
                let at = env.at(path);
                if std::fs::symlink_metadata(&at).is_ok() || at.ancestors().skip(1).any(|a| a.is_file() || a.is_symlink()) {
                    continue;
                }
                match (file, link) {
                    (_, Some(target)) => env.link(target, path),
                    (Some((content, mode)), None) => {
                        env.put(path, content);
                        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(*mode)).unwrap();
                    }
                    (None, None) => std::fs::create_dir_all(&at).unwrap(),
                }
            }
            let original = tree_of(&env.root);
            let (archive, _) = backup(&env.files, &[]).await;
            for entry in std::fs::read_dir(&env.root).unwrap() {
                let path = entry.unwrap().path();
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
            env.put("junk", b"junk");
            restore(&env.files, &archive, true).await;
            assert_eq!(tree_of(&env.root), original);
        });
    }
}

/// A tar.zst of `count` symlinks `l<i>` whose targets are `target_len` bytes of in-root
/// names (GNU long link entries), varied so the archive does not compress like a bomb.
fn symlinks_archive(count: usize, target_len: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..count {
        let target: String = (0..target_len)
            .map(|j| {
                if j % 100 == 99 {
                    return '/';
                }
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                char::from(b'a' + (seed >> 59) as u8 % 26)
            })
            .collect();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, format!("l{i}"), &target).unwrap();
    }
    zst(&builder.into_inner().unwrap())
}

#[tokio::test]
async fn symlink_entries_are_bounded_while_held() {
    // One target longer than the kernel takes: refused when read.
    let env = Env::new().await;
    let err = env.files.stage_restore(&symlinks_archive(1, 5000)[..], true).await.err().unwrap();
    assert!(matches!(&err, FilesError::ArchiveRejected { reason } if reason.contains("target")), "{err:?}");
    assert_eq!(siblings(&env), ["outside", "root"]);

    // Many long targets (~20 MiB held until the symlinks are created at the end): refused
    // past the cap, with nothing created.
    let archive = symlinks_archive(5000, 4000);
    assert!(archive.len() < 40 << 20, "{}", archive.len());
    let before = tree_of(&env.root);
    let err = env.files.stage_restore(&archive[..], true).await.err().unwrap();
    assert!(matches!(err, FilesError::TooLarge { .. }), "{err:?}");
    assert_eq!(tree_of(&env.root), before);
    assert_eq!(siblings(&env), ["outside", "root"]);

    // The tenant's decompress reads the same way.
    std::fs::write(env.at("links.tar.zst"), &archive).unwrap();
    let err = env.files.decompress("links.tar.zst", "/").await.err().unwrap();
    assert!(matches!(err, FilesError::TooLarge { .. }), "{err:?}");
    assert!(!env.at("l0").exists());

    // Fewer of them are fine.
    let env = Env::new().await;
    restore(&env.files, &symlinks_archive(100, 4000), true).await;
    assert_eq!(std::fs::read_link(env.at("l0")).unwrap().as_os_str().len(), 4000);
}

#[test]
fn a_sweep_puts_a_moved_root_back_and_removes_staging_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name);
    let id = |n: u8| format!("{:032x}", n);
    // `srv` died between the two renames of a commit: no root, its tree aside, the new one staged.
    std::fs::create_dir_all(at(&format!(".nexus-replaced-srv-{}/world", id(1)))).unwrap();
    std::fs::write(at(&format!(".nexus-replaced-srv-{}/world/level.dat", id(1))), b"real data").unwrap();
    std::fs::create_dir_all(at(&format!(".nexus-restore-srv-{}/x", id(2)))).unwrap();
    // `other` finished its commit: the replaced tree is an old one.
    std::fs::create_dir_all(at("other")).unwrap();
    std::fs::write(at("other/new.txt"), b"new").unwrap();
    std::fs::create_dir_all(at(&format!(".nexus-replaced-other-{}", id(3)))).unwrap();
    // Unrelated names stay.
    std::fs::create_dir_all(at(".nexus-restore-short")).unwrap();

    let summary = nexus_files::sweep_restore_leftovers(tmp.path(), None).unwrap();
    assert_eq!((summary.recovered, summary.removed), (1, 2));
    assert_eq!(std::fs::read(at("srv/world/level.dat")).unwrap(), b"real data");
    assert_eq!(std::fs::read(at("other/new.txt")).unwrap(), b"new");
    let mut left: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, [".nexus-restore-short", "other", "srv"]);

    // For a destroyed server: its leftovers go, nothing is put back, others stay.
    std::fs::create_dir_all(at(&format!(".nexus-replaced-gone-{}", id(4)))).unwrap();
    std::fs::create_dir_all(at(&format!(".nexus-restore-gone-{}", id(5)))).unwrap();
    std::fs::create_dir_all(at(&format!(".nexus-restore-srv-{}", id(6)))).unwrap();
    let summary = nexus_files::sweep_restore_leftovers(tmp.path(), Some(&["gone".into()])).unwrap();
    assert_eq!((summary.recovered, summary.removed), (0, 2));
    assert!(!at("gone").exists());
    assert!(at(&format!(".nexus-restore-srv-{}", id(6))).exists());
}

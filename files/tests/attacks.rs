//! The attack suite: every case asserts the specific refusal *and* that nothing outside the
//! root changed (a sentinel directory next to the root, its siblings, and the host's
//! `/etc/passwd` are snapshotted — names, sizes, content hashes, modes, mtimes, link counts —
//! before the attack and compared after it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use nexus_files::{
    ArchiveFormat, ArchiveLimits, ENTRY_COST, FilesConfig, FilesError as E, ServerFiles, dir_cost, file_cost,
};

fn outside_root(e: &E) -> bool {
    matches!(e, E::OutsideRoot { .. })
}
fn rejected(e: &E) -> bool {
    matches!(e, E::ArchiveRejected { .. })
}
fn denied(e: &E) -> bool {
    matches!(e, E::Denied { .. })
}
fn hard_linked(e: &E) -> bool {
    matches!(e, E::HardLinked { .. })
}
fn special(e: &E) -> bool {
    matches!(e, E::SpecialFile { .. })
}
fn quota(e: &E) -> bool {
    matches!(e, E::QuotaExceeded { .. })
}

impl Env {
    /// An operation that must succeed while leaving everything outside the root untouched.
    async fn stays_inside<T: std::fmt::Debug>(&self, op: impl std::future::Future<Output = Result<T, E>>) -> T {
        let before = self.snapshot();
        let value = op.await.unwrap();
        self.assert_unchanged(&before);
        value
    }

    /// Puts an archive into the root and checks that extracting it is refused as expected,
    /// that nothing was extracted and that usage did not move.
    async fn extract_refused(&self, archive: &[u8], name: &str, expected: impl Fn(&E) -> bool) -> E {
        self.put(name, archive);
        self.files.rescan().await.unwrap();
        let usage = self.files.disk_usage().await.unwrap();
        let before_tree = self.tree("");
        let err = self.refuses(self.files.decompress(name, "dest"), expected).await;
        let after_tree: Vec<_> = self.tree("").into_iter().filter(|p| p != "dest").collect();
        assert_eq!(after_tree, before_tree, "something was left behind: {err}");
        assert!(self.tree("dest").is_empty(), "partial extraction: {:?}", self.tree("dest"));
        assert_eq!(self.files.disk_usage().await.unwrap(), usage, "usage moved");
        err
    }

    fn outside_abs(&self, rel: &str) -> String {
        self.outside.join(rel).to_string_lossy().into_owned()
    }
}

fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn limits(f: impl FnOnce(&mut ArchiveLimits)) -> FilesConfig {
    let mut archive_limits = ArchiveLimits::default();
    f(&mut archive_limits);
    FilesConfig { archive_limits, ..Default::default() }
}

// ---- 1. one operation, one refusal: the table -------------------------------------------

/// One call on the manager.
#[derive(Clone, Copy, Debug)]
enum Op {
    Read(&'static str),
    Write(&'static str),
    Stream(&'static str),
    Mkdir(&'static str),
    Delete(&'static str),
    List(&'static str),
    Stat(&'static str),
    Chmod(&'static str, u32),
    Rename(&'static str, &'static str),
    Copy(&'static str, &'static str),
}

impl Op {
    async fn run(self, files: &ServerFiles) -> Result<(), E> {
        match self {
            Op::Read(p) => files.read(p, MAX).await.map(drop),
            Op::Write(p) => files.write(p, "pwned").await.map(drop),
            Op::Stream(p) => files.write_stream(p, &b"pwned"[..], None).await.map(drop),
            Op::Mkdir(p) => files.mkdir(p).await.map(drop),
            Op::Delete(p) => files.delete(p).await,
            Op::List(p) => files.list(p).await.map(drop),
            Op::Stat(p) => files.stat(p).await.map(drop),
            Op::Chmod(p, mode) => files.chmod(p, mode).await,
            Op::Rename(a, b) => files.rename(a, b).await,
            Op::Copy(a, b) => files.copy(a, b).await.map(drop),
        }
    }
}

/// What is in the root before a row runs.
#[derive(Clone, Copy, Debug)]
enum Fixture {
    /// A few plain files.
    Plain,
    /// Symlinks of every escaping kind (see `fixture`).
    Symlinks,
    /// `hl`: a hard link to the sentinel's secret; `alias` → `hl`.
    HardLink,
    /// Denylist `*.jar`, `config/secret.txt`, `private/` and files it covers.
    Denylist,
    /// `fifo`: a named pipe.
    Fifo,
}

async fn fixture(kind: Fixture) -> Env {
    let env = match kind {
        Fixture::Denylist => {
            let denylist = vec!["*.jar".into(), "config/secret.txt".into(), "private/".into()];
            Env::with(FilesConfig { denylist, ..Default::default() }).await
        }
        _ => Env::new().await,
    };
    env.put("f.txt", b"f");
    env.put("secret.txt", b"s");
    match kind {
        Fixture::Plain => {}
        Fixture::Symlinks => {
            env.put("evil.txt", b"root::0:0::/:/bin/sh\n");
            env.link("/etc/passwd", "passwd");
            env.link(env.outside.join("passwd"), "opasswd");
            env.link(env.outside.join("secret.txt"), "osecret");
            env.link(env.outside.join("dir"), "d");
            env.link(&env.outside, "abs");
            env.link("../outside", "up");
            env.link("b", "a");
            env.link("c/../../outside/secret.txt", "b");
            std::fs::create_dir(env.at("c")).unwrap();
            env.link("../../../outside/secret.txt", "x/y/link");
            env.link("l2", "l1");
            env.link("l1", "l2");
            env.link(env.outside.join("created-by-attack.txt"), "dangling");
        }
        Fixture::HardLink => {
            std::fs::hard_link(env.outside.join("secret.txt"), env.at("hl")).unwrap();
            env.link("hl", "alias");
        }
        Fixture::Denylist => {
            env.put("config/secret.txt", b"rcon-password");
            env.put("config/public.txt", b"public");
            env.put("server.jar", b"jar");
            env.put("private/key", b"key");
            env.link("config/secret.txt", "alias");
            env.link("server.jar", "alias2");
            env.link("private", "pv");
        }
        Fixture::Fifo => make_fifo(&env, "fifo"),
    }
    env
}

fn make_fifo(env: &Env, name: &str) {
    let dir = std::fs::File::open(&env.root).unwrap();
    rustix::fs::mkfifoat(&dir, name, rustix::fs::Mode::from_raw_mode(0o666)).unwrap();
}

fn invalid(e: &E) -> bool {
    matches!(e, E::InvalidPath { .. })
}
fn not_found(e: &E) -> bool {
    matches!(e, E::NotFound { .. })
}
fn exists(e: &E) -> bool {
    matches!(e, E::AlreadyExists { .. })
}
fn bad_mode(e: &E) -> bool {
    matches!(e, E::InvalidMode { .. })
}

type Row = (&'static str, Fixture, Op, fn(&E) -> bool);

use Fixture::{Denylist as Dl, Fifo as Ff, HardLink as Hl, Plain as Pl, Symlinks as Sl};

const ROWS: &[Row] = &[
    // Lexical escapes.
    ("dotdot read", Pl, Op::Read("../outside/secret.txt"), outside_root),
    ("nested dotdot write", Pl, Op::Write("a/../../outside/pwn.txt"), outside_root),
    ("deeper nested dotdot write", Pl, Op::Write("a/b/../../../x"), outside_root),
    ("backslash dotdot write", Pl, Op::Write("..\\..\\outside\\pwn.txt"), outside_root),
    ("backslash dotdot read", Pl, Op::Read("a\\..\\..\\outside\\secret.txt"), outside_root),
    ("absolute then dotdot", Pl, Op::Write("/../outside/pwn.txt"), outside_root),
    ("doubled slashes and dotdot", Pl, Op::Stream("//..//..//outside/pwn.txt"), outside_root),
    ("absolute path is root-relative", Pl, Op::Read("/etc/passwd"), not_found),
    ("NUL in a written name", Pl, Op::Write("a\0b"), invalid),
    ("NUL before an extension", Pl, Op::Read("secret.txt\0.png"), invalid),
    ("mkdir escape", Pl, Op::Mkdir("x/../../escape"), outside_root),
    ("rename target escape", Pl, Op::Rename("f.txt", "../outside/moved.txt"), outside_root),
    ("rename source escape", Pl, Op::Rename("../outside/secret.txt", "stolen.txt"), outside_root),
    ("copy target escape", Pl, Op::Copy("f.txt", "../outside/copied.txt"), outside_root),
    ("copy source escape", Pl, Op::Copy("../outside/secret.txt", "stolen.txt"), outside_root),
    ("delete escape", Pl, Op::Delete("../outside"), outside_root),
    ("delete parent", Pl, Op::Delete(".."), outside_root),
    ("delete the root itself", Pl, Op::Delete("/"), invalid),
    ("list parent", Pl, Op::List(".."), outside_root),
    ("chmod escape", Pl, Op::Chmod("../outside/secret.txt", 0o777), outside_root),
    // Symlinks.
    ("read symlink to /etc/passwd", Sl, Op::Read("passwd"), outside_root),
    ("write through absolute symlink", Sl, Op::Write("opasswd"), outside_root),
    ("stream through absolute symlink", Sl, Op::Stream("opasswd"), outside_root),
    ("chmod through symlink", Sl, Op::Chmod("osecret", 0o777), outside_root),
    ("delete through symlinked dir", Sl, Op::Delete("d/inner.txt"), outside_root),
    ("delete subdir through symlinked dir", Sl, Op::Delete("d/sub"), outside_root),
    ("rename onto a symlink", Sl, Op::Rename("evil.txt", "opasswd"), exists),
    ("rename into symlinked dir", Sl, Op::Rename("evil.txt", "d/evil.txt"), outside_root),
    ("rename out of symlinked dir", Sl, Op::Rename("d/inner.txt", "stolen.txt"), outside_root),
    ("write through relative dir symlink", Sl, Op::Write("up/pwn.txt"), outside_root),
    ("list relative dir symlink", Sl, Op::List("up"), outside_root),
    ("stat through dir symlink", Sl, Op::Stat("up/secret.txt"), outside_root),
    ("mkdir -p through dir symlink", Sl, Op::Mkdir("up/new/deep"), outside_root),
    ("symlink chain", Sl, Op::Read("a"), outside_root),
    ("deep relative escape read", Sl, Op::Read("x/y/link"), outside_root),
    ("deep relative escape write", Sl, Op::Write("x/y/link"), outside_root),
    ("symlink loop read", Sl, Op::Read("l1"), invalid),
    ("symlink loop as a directory", Sl, Op::Write("l1/x"), invalid),
    ("copy from escaping symlink", Sl, Op::Copy("osecret", "stolen.txt"), outside_root),
    ("write through dangling symlink", Sl, Op::Write("dangling"), outside_root),
    ("mkdir through dangling symlink", Sl, Op::Mkdir("dangling"), outside_root),
    ("write below absolute dir symlink", Sl, Op::Write("abs/x.txt"), outside_root),
    ("copy from below absolute dir symlink", Sl, Op::Copy("abs/secret.txt", "y"), outside_root),
    ("chmod below absolute dir symlink", Sl, Op::Chmod("abs/dir", 0o777), outside_root),
    // Hard links.
    ("read hard link to outside", Hl, Op::Read("hl"), hard_linked),
    ("write hard link to outside", Hl, Op::Write("hl"), hard_linked),
    ("chmod hard link to outside", Hl, Op::Chmod("hl", 0o666), hard_linked),
    ("copy hard link to outside", Hl, Op::Copy("hl", "copied"), hard_linked),
    ("symlink to hard link", Hl, Op::Read("alias"), hard_linked),
    // Special files.
    ("write fifo", Ff, Op::Write("fifo"), special),
    ("copy fifo", Ff, Op::Copy("fifo", "copy"), special),
    ("chmod fifo", Ff, Op::Chmod("fifo", 0o600), special),
    // Mode bits.
    ("chmod setuid", Pl, Op::Chmod("f.txt", 0o4755), bad_mode),
    ("chmod setgid", Pl, Op::Chmod("f.txt", 0o2755), bad_mode),
    ("chmod sticky", Pl, Op::Chmod("f.txt", 0o1777), bad_mode),
    ("chmod with type bits", Pl, Op::Chmod("f.txt", 0o100_644), bad_mode),
    // Denylist bypass attempts.
    ("read denied file", Dl, Op::Read("config/secret.txt"), denied),
    ("read denied glob", Dl, Op::Read("server.jar"), denied),
    ("case variant", Dl, Op::Read("CONFIG/Secret.TXT"), denied),
    ("case variant of a glob, new file", Dl, Op::Write("mods/New.JAR"), denied),
    ("dot-slash variant", Dl, Op::Read("./config/./secret.txt"), denied),
    ("trailing slash", Dl, Op::Read("config/secret.txt/"), denied),
    ("doubled slashes", Dl, Op::Read("//config//secret.txt"), denied),
    ("backslash separator", Dl, Op::Read("config\\secret.txt"), denied),
    ("dotdot detour", Dl, Op::Read("config/x/../secret.txt"), denied),
    ("rename denied away", Dl, Op::Rename("config/secret.txt", "config/readable.txt"), denied),
    ("rename onto a denied name", Dl, Op::Rename("f.txt", "payload.jar"), denied),
    ("rename the parent of a denied file", Dl, Op::Rename("config", "cfg"), denied),
    ("read via symlink to denied", Dl, Op::Read("alias"), denied),
    ("write via symlink to denied", Dl, Op::Write("alias2"), denied),
    ("delete denied", Dl, Op::Delete("config/secret.txt"), denied),
    ("delete parent of denied", Dl, Op::Delete("config"), denied),
    ("delete denied directory", Dl, Op::Delete("private"), denied),
    ("copy denied away", Dl, Op::Copy("config/secret.txt", "copy.txt"), denied),
    ("copy parent of denied", Dl, Op::Copy("config", "config-copy"), denied),
    ("copy onto a denied name", Dl, Op::Copy("f.txt", "f.jar"), denied),
    ("chmod denied", Dl, Op::Chmod("config/secret.txt", 0o644), denied),
    ("mkdir in denied dir", Dl, Op::Mkdir("private/sub"), denied),
    ("list denied dir", Dl, Op::List("private"), denied),
    ("write in denied dir", Dl, Op::Write("private/new.txt"), denied),
    ("mkdir -p via symlink into denied dir", Dl, Op::Mkdir("pv/newdir/deeper"), denied),
    ("write via symlink into denied dir", Dl, Op::Write("pv/a/b.txt"), denied),
];

/// Every row on a fresh root: the refusal it expects, nothing outside changed, and the
/// fixture's files inside still as they were.
#[tokio::test]
async fn table_of_single_operation_attacks() {
    for (name, kind, op, expected) in ROWS {
        println!("case: {name} ({op:?})");
        let env = fixture(*kind).await;
        let inside_before = env.tree("");
        env.refuses(op.run(&env.files), expected).await;
        assert_eq!(env.tree(""), inside_before, "{name}: the root changed");
    }
    assert!(ROWS.len() >= 80, "{} rows", ROWS.len());
}

// ---- A. lexical escapes ------------------------------------------------------------------

#[tokio::test]
async fn a04_percent_encoding_is_a_literal_name() {
    let env = Env::new().await;
    env.stays_inside(env.files.write("%2e%2e/%2e%2e/outside/pwn.txt", "x")).await;
    assert!(env.at("%2e%2e/%2e%2e/outside/pwn.txt").is_file());
}

#[tokio::test]
async fn a05_absolute_path_is_root_relative() {
    let env = Env::new().await;
    env.refuses(env.files.read("/etc/passwd", MAX), |e| matches!(e, E::NotFound { .. })).await;
    env.stays_inside(env.files.write("/etc/passwd", "owned")).await;
    assert_eq!(std::fs::read(env.at("etc/passwd")).unwrap(), b"owned");
    let abs = env.outside_abs("secret.txt");
    env.stays_inside(env.files.write(&abs, "not there")).await;
    assert!(env.root.join(abs.trim_start_matches('/')).is_file());
}

#[tokio::test]
async fn a12_compress_and_decompress_escape() {
    let env = Env::new().await;
    env.put("f.txt", b"f");
    env.refuses(env.files.compress("/", &["../outside".into()], "x.zip", ArchiveFormat::Zip), outside_root).await;
    env.refuses(env.files.compress("..", &["outside".into()], "x.zip", ArchiveFormat::Zip), outside_root).await;
    env.refuses(env.files.compress("/", &["f.txt".into()], "../outside/x.zip", ArchiveFormat::Zip), outside_root).await;
    env.files.compress("/", &["f.txt".into()], "ok.zip", ArchiveFormat::Zip).await.unwrap();
    env.refuses(env.files.decompress("ok.zip", "../outside"), outside_root).await;
}

// ---- B. symlinks ---------------------------------------------------------------------------

#[tokio::test]
async fn b04_delete_through_symlinked_dir() {
    let env = Env::new().await;
    env.link(env.outside.join("dir"), "d");
    env.refuses(env.files.delete("d/inner.txt"), outside_root).await;
    env.refuses(env.files.delete("d/sub"), outside_root).await;
    // Deleting the link itself is fine and leaves the target alone.
    env.stays_inside(env.files.delete("d")).await;
    assert!(!env.at("d").exists());
}

#[tokio::test]
async fn b12_copy_tree_holding_escaping_symlink() {
    let env = Env::new().await;
    env.put("tree/a.txt", b"a");
    env.link(env.outside.join("secret.txt"), "tree/secret");
    env.refuses(env.files.copy("tree", "tree2"), outside_root).await;
    assert_eq!(env.root_names(), vec!["tree"], "no partial copy, no temporary left");
}

#[tokio::test]
async fn b13_compress_never_reads_through_escaping_symlinks() {
    let env = Env::new().await;
    env.put("tree/a.txt", b"a");
    env.link(env.outside.join("secret.txt"), "tree/secret");
    env.link("../../outside/dir", "tree/dir");
    for format in [ArchiveFormat::TarGz, ArchiveFormat::Zip, ArchiveFormat::Tar] {
        let name = format!("out.{}", format.extension());
        env.stays_inside(env.files.compress("/", &["tree".into()], &name, format)).await;
        let bytes = std::fs::read(env.at(&name)).unwrap();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET));
        env.stays_inside(env.files.decompress(&name, &format!("x-{}", format.extension()))).await;
        assert_eq!(env.tree(&format!("x-{}", format.extension())), vec!["tree", "tree/a.txt"]);
    }
}

#[tokio::test]
async fn b16_archive_behind_escaping_symlink() {
    let env = Env::new().await;
    std::fs::write(env.outside.join("dir/pack.zip"), zip_of(&[("a.txt", b"a")])).unwrap();
    env.link(env.outside.join("dir/pack.zip"), "pack.zip");
    env.refuses(env.files.decompress("pack.zip", "dest"), outside_root).await;
}

/// Flips `root/d` between a real directory and a symlink to the sentinel directory (atomic
/// `RENAME_EXCHANGE`) while operations run through `d/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b17_symlink_swap_race_on_a_directory() {
    let env = Env::new().await;
    std::fs::create_dir(env.at("d")).unwrap();
    std::fs::write(env.at("d/inner.txt"), b"inside").unwrap();
    env.link(env.outside.join("dir"), "swap");
    let before = env.snapshot();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (root, stop) = (env.root.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let dir = std::fs::File::open(&root).unwrap();
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(&dir, "d", &dir, "swap", rustix::fs::RenameFlags::EXCHANGE).unwrap();
                flips += 1;
            }
            flips
        })
    };
    let mut outcomes = std::collections::BTreeMap::<&str, u32>::new();
    for i in 0..400 {
        if let Ok(data) = env.files.read("d/inner.txt", MAX).await {
            assert_eq!(data, b"inside", "read the sentinel through the swap");
        }
        let results = [
            env.files.write(&format!("d/pwn-{i}.txt"), "pwned").await.err(),
            env.files.mkdir(&format!("d/dir-{i}")).await.err(),
            env.files.chmod("d/inner.txt", 0o777).await.err(),
            env.files.copy("d/inner.txt", &format!("copy-{i}")).await.err(),
            env.files.list("d").await.err(),
            env.files.rename(&format!("copy-{i}"), &format!("d/moved-{i}")).await.err(),
            env.files.delete("d/inner.txt").await.err(),
            env.files.write("d/inner.txt", "inside").await.err(),
        ];
        for err in results.into_iter().flatten() {
            *outcomes.entry(err.code()).or_default() += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 100, "the race did not run ({flips} flips)");
    assert!(outcomes.contains_key("outside_root"), "the swap was never observed: {outcomes:?}");
    env.assert_unchanged(&before);
}

/// Flips a file between a regular file and a symlink to the sentinel file while it is
/// written, chmod-ed and read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b18_symlink_swap_race_on_a_file() {
    let env = Env::new().await;
    env.put("f", b"inside");
    env.link(env.outside.join("secret.txt"), "swap");
    let before = env.snapshot();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (root, stop) = (env.root.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let dir = std::fs::File::open(&root).unwrap();
            while !stop.load(Ordering::Relaxed) {
                // The manager's own writes replace `f` by rename; recreate it when gone.
                if rustix::fs::renameat_with(&dir, "f", &dir, "swap", rustix::fs::RenameFlags::EXCHANGE).is_err() {
                    let _ = std::fs::write(root.join("f"), b"inside");
                }
            }
        })
    };
    for _ in 0..400 {
        let _ = env.files.write("f", "overwrite").await;
        let _ = env.files.chmod("f", 0o777).await;
        if let Ok(data) = env.files.read("f", MAX).await {
            assert_ne!(data, SECRET, "read the sentinel through the swap");
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    env.assert_unchanged(&before);
}

// ---- C. hard links -------------------------------------------------------------------------

async fn hard_linked_env() -> Env {
    let env = Env::new().await;
    std::fs::hard_link(env.outside.join("secret.txt"), env.at("hl")).unwrap();
    env
}

#[tokio::test]
async fn c05_compress_hard_link_to_outside() {
    let env = hard_linked_env().await;
    env.refuses(env.files.compress("/", &["hl".into()], "x.tar.gz", ArchiveFormat::TarGz), hard_linked).await;
    assert_eq!(env.root_names(), vec!["hl"], "no partial archive left");
}

// ---- D. special files ----------------------------------------------------------------------

#[tokio::test]
async fn d01_read_fifo_does_not_block() {
    let env = Env::new().await;
    make_fifo(&env, "fifo");
    let read = tokio::time::timeout(Duration::from_secs(5), env.files.read("fifo", MAX));
    let err = env.refuses(async { read.await.expect("reading a fifo blocked") }, special).await;
    assert_eq!(err.status_code(), 403);
}

#[tokio::test]
async fn d04_device_or_socket() {
    let env = Env::new().await;
    let dir = std::fs::File::open(&env.root).unwrap();
    let made_device = rustix::fs::mknodat(
        &dir,
        "null",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();
    let _socket;
    if !made_device {
        // No CAP_MKNOD here: a socket is another inode that must never be opened.
        _socket = std::os::unix::net::UnixListener::bind(env.at("null")).unwrap();
    }
    env.refuses(env.files.read("null", MAX), special).await;
    env.refuses(env.files.write("null", "x"), special).await;
    env.refuses(env.files.copy("null", "c"), special).await;
}

// ---- E. chmod bits -------------------------------------------------------------------------

// ---- 2. one archive, one refusal: the table ---------------------------------------------

type ArchiveRow = (&'static str, &'static str, fn(&Env) -> Vec<u8>, fn(&mut ArchiveLimits), fn(&E) -> bool);

fn defaults(_: &mut ArchiveLimits) {}

const ARCHIVE_ROWS: &[ArchiveRow] = &[
    (
        "tar zip-slip",
        "slip.tar.gz",
        |_| gz(&tar_of(&[(b"ok.txt", REGULAR, b"", b"ok"), (b"../outside/evil.txt", REGULAR, b"", b"evil")])),
        defaults,
        rejected,
    ),
    ("tar nested dotdot", "slip.tar", |_| tar_of(&[(b"a/../../x.txt", REGULAR, b"", b"evil")]), defaults, rejected),
    ("tar dot-slash dotdot", "slip.tar", |_| tar_of(&[(b"./../x.txt", REGULAR, b"", b"evil")]), defaults, rejected),
    (
        "tar absolute name",
        "abs.tar.zst",
        |env| zst(&tar_of(&[(env.outside_abs("evil.txt").as_bytes(), REGULAR, b"", b"evil")])),
        defaults,
        rejected,
    ),
    ("zip zip-slip", "slip.zip", |_| lying_zip(b"../outside/evil.txt", b"evil", 4, None), defaults, rejected),
    (
        "zip backslash slip",
        "slip.zip",
        |_| lying_zip(b"..\\..\\outside\\evil.txt", b"evil", 4, None),
        defaults,
        rejected,
    ),
    ("zip absolute name", "abs.zip", |_| lying_zip(b"/tmp/evil.txt", b"evil", 4, None), defaults, rejected),
    ("zip drive letter", "drive.zip", |_| lying_zip(b"C:/evil.txt", b"evil", 4, None), defaults, rejected),
    (
        "tar symlink entry pointing out (relative)",
        "link.tar.gz",
        |_| gz(&tar_of(&[(b"link", SYMLINK, b"../../outside/secret.txt", b"")])),
        defaults,
        rejected,
    ),
    (
        "tar symlink entry pointing out (absolute)",
        "link.tar.gz",
        |env| gz(&tar_of(&[(b"link", SYMLINK, env.outside_abs("secret.txt").as_bytes(), b"")])),
        defaults,
        rejected,
    ),
    (
        "tar symlink entry then a file written through it",
        "two.tar.gz",
        |env| {
            let target = env.outside_abs("dir");
            gz(&tar_of(&[(b"link", SYMLINK, target.as_bytes(), b""), (b"link/pwn.txt", REGULAR, b"", b"pwned")]))
        },
        defaults,
        rejected,
    ),
    (
        "tar entry below an in-root symlink entry",
        "through.tar.gz",
        |_| gz(&tar_of(&[(b"link", SYMLINK, b"sub", b""), (b"link/x.txt", REGULAR, b"", b"x")])),
        defaults,
        rejected,
    ),
    (
        "tar hard link entry to outside",
        "hl.tar.gz",
        |env| gz(&tar_of(&[(b"hl", HARDLINK, env.outside_abs("secret.txt").as_bytes(), b"")])),
        defaults,
        rejected,
    ),
    (
        "tar hard link entry inside",
        "hl.tar.gz",
        |_| gz(&tar_of(&[(b"a.txt", REGULAR, b"", b"a"), (b"b.txt", HARDLINK, b"a.txt", b"")])),
        defaults,
        rejected,
    ),
    ("tar device entry", "dev.tar", |_| tar_of(&[(b"null", CHARDEV, b"", b"")]), defaults, rejected),
    ("tar fifo entry", "fifo.tar", |_| tar_of(&[(b"fifo", FIFO, b"", b"")]), defaults, rejected),
    (
        "zip symlink entry pointing out",
        "link.zip",
        |_| lying_zip(b"link", b"../../outside/secret.txt", 24, Some(0o120_777)),
        defaults,
        rejected,
    ),
    ("zip device entry", "dev.zip", |_| lying_zip(b"null", b"", 0, Some(0o020_666)), defaults, rejected),
    (
        "tar declared size over the total limit",
        "big.tar",
        |_| tar_of(&[(b"small.bin", REGULAR, b"", &[1u8; 1000]), (b"big.bin", REGULAR, b"", &noise(2 << 20))]),
        |l| l.max_total_bytes = 1 << 20,
        rejected,
    ),
    ("zip huge declared size", "huge.zip", |_| lying_zip(b"huge.bin", b"tiny", 0xFFFF_0000, None), defaults, rejected),
    ("zip data longer than declared", "liar.zip", |_| lying_zip(b"liar.txt", &[b'x'; 64], 4, None), defaults, rejected),
    (
        "too many entries (tar)",
        "many.tar.gz",
        |_| {
            let names: Vec<String> = (0..51).map(|i| format!("f{i}")).collect();
            let entries: Vec<TarEntry<'_>> =
                names.iter().map(|n| (n.as_bytes(), REGULAR, &b""[..], &b"x"[..])).collect();
            gz(&tar_of(&entries))
        },
        |l| l.max_entries = 50,
        rejected,
    ),
    (
        "too many entries (zip)",
        "many.zip",
        |_| {
            let names: Vec<String> = (0..51).map(|i| format!("f{i}")).collect();
            zip_of(&names.iter().map(|n| (n.as_str(), &b"x"[..])).collect::<Vec<_>>())
        },
        |l| l.max_entries = 50,
        rejected,
    ),
    (
        "path too deep",
        "deep.tar.gz",
        |_| gz(&tar_of(&[(b"a/b/c/d/e/f/g/h/i/j.txt", REGULAR, b"", b"deep")])),
        |l| l.max_depth = 8,
        rejected,
    ),
    (
        "a file and a directory of one name",
        "clash.tar.gz",
        |_| gz(&tar_of(&[(b"x", REGULAR, b"", b"file"), (b"x/y.txt", REGULAR, b"", b"y")])),
        defaults,
        rejected,
    ),
];

/// Every archive row: refused, nothing extracted, no staging left, usage unchanged, nothing
/// outside changed.
#[tokio::test]
async fn table_of_archive_attacks() {
    for (name, file, build, tune, expected) in ARCHIVE_ROWS {
        println!("case: {name}");
        let env = Env::with(limits(tune)).await;
        env.extract_refused(&build(&env), file, expected).await;
    }
}

// ---- F. archives ---------------------------------------------------------------------------

#[tokio::test]
async fn f13_tar_gz_bomb() {
    let env = Env::new().await;
    let mut bomb = gz(&raw_header(b"zeros.bin", REGULAR, 1 << 30, b""));
    let chunk = gz(&vec![0u8; 1 << 20]);
    for _ in 0..1024 {
        bomb.extend_from_slice(&chunk);
    }
    bomb.extend_from_slice(&gz(&[0u8; 1024]));
    let err = env.extract_refused(&bomb, "bomb.tar.gz", rejected).await;
    assert!(err.to_string().contains("expands more than"), "{err}");
}

#[tokio::test]
async fn f14_tar_zst_bomb() {
    let env = Env::new().await;
    let mut bomb = zst(&raw_header(b"zeros.bin", REGULAR, 1 << 30, b""));
    let chunk = zst(&vec![0u8; 1 << 20]);
    for _ in 0..1024 {
        bomb.extend_from_slice(&chunk);
    }
    let err = env.extract_refused(&bomb, "bomb.tar.zst", rejected).await;
    assert!(err.to_string().contains("expands more than"), "{err}");
}

#[tokio::test]
async fn f17_zip_ratio_bomb() {
    let env = Env::new().await;
    let zip = zip_of(&[("zeros.bin", &vec![0u8; 24 << 20])]);
    let err = env.extract_refused(&zip, "ratio.zip", rejected).await;
    assert!(err.to_string().contains("expands more than"), "{err}");
}

#[tokio::test]
async fn f22_pax_header_memory_bomb() {
    let env = Env::new().await;
    // A 4 MiB PAX extended header: the tar reader would buffer it all in memory.
    let record = {
        let body = vec![b'a'; 4 << 20];
        let mut r = format!("{} comment=", body.len() + 20).into_bytes();
        r.extend_from_slice(&body);
        r.push(b'\n');
        r
    };
    let tar = tar_of(&[(b"pax", b'x', b"", &record), (b"f.txt", REGULAR, b"", b"f")]);
    env.extract_refused(&gz(&tar), "pax.tar.gz", rejected).await;
}

#[tokio::test]
async fn f23_destination_symlinked_dir_is_not_merged_into() {
    let env = Env::new().await;
    std::fs::create_dir(env.at("dest")).unwrap();
    env.link(env.outside.join("dir"), "dest/mods");
    env.put("pack/mods/evil.jar", b"evil");
    env.files.compress("pack", &["mods".into()], "pack.tar.gz", ArchiveFormat::TarGz).await.unwrap();
    env.refuses(env.files.decompress("pack.tar.gz", "dest"), rejected).await;
    assert_eq!(env.tree("dest"), vec!["mods"]);
}

// ---- G. quota --------------------------------------------------------------------------------

fn with_quota(bytes: u64) -> FilesConfig {
    FilesConfig { quota_bytes: bytes, ..Default::default() }
}

#[tokio::test]
async fn g01_write_over_quota() {
    let env = Env::with(with_quota(1000)).await;
    env.refuses(env.files.write("big.bin", vec![0u8; 2000]), quota).await;
    assert!(env.root_names().is_empty(), "no partial file: {:?}", env.root_names());
    assert_eq!(env.files.disk_usage().await.unwrap(), 0);
}

#[tokio::test]
async fn g02_stream_over_quota_keeps_old_content() {
    let env = Env::with(with_quota(100_000)).await;
    env.put("f.bin", b"old");
    let data = noise(1 << 20);
    env.refuses(env.files.write_stream("f.bin", &data[..], None), quota).await;
    assert_eq!(std::fs::read(env.at("f.bin")).unwrap(), b"old");
    assert_eq!(env.root_names(), vec!["f.bin"], "no partial file");
    assert_eq!(env.files.disk_usage().await.unwrap(), file_cost(3));
    // With a size hint the refusal comes before the first byte.
    env.refuses(env.files.write_stream("g.bin", &data[..], Some(data.len() as u64)), quota).await;
    assert_eq!(env.root_names(), vec!["f.bin"]);
}

#[tokio::test]
async fn g03_tar_decompress_over_quota() {
    // The archive itself takes ~1.6 MiB; the first entry fits, the second does not.
    let env = Env::with(with_quota(3 << 20)).await;
    let tar = tar_of(&[(b"a.bin", REGULAR, b"", &noise(800 << 10)), (b"b.bin", REGULAR, b"", &noise(800 << 10))]);
    env.extract_refused(&gz(&tar), "q.tar.gz", quota).await;
}

#[tokio::test]
async fn g04_zip_decompress_over_quota() {
    let env = Env::with(with_quota(3 << 20)).await;
    let zip = zip_of(&[("a.bin", &noise(800 << 10)), ("b.bin", &noise(800 << 10))]);
    env.extract_refused(&zip, "q.zip", quota).await;
}

#[tokio::test]
async fn g05_copy_over_quota() {
    let env = Env::with(with_quota(100_000)).await;
    env.put("tree/a.bin", &noise(30_000));
    env.put("tree/b.bin", &noise(30_000));
    env.refuses(env.files.copy("tree", "tree2"), quota).await;
    assert_eq!(env.root_names(), vec!["tree"], "no partial copy");
    assert_eq!(env.files.disk_usage().await.unwrap(), dir_cost() + 2 * file_cost(30_000));
}

#[tokio::test]
async fn g06_compress_over_quota() {
    let env = Env::with(with_quota(300_000)).await;
    env.put("data.bin", &noise(200_000));
    env.refuses(env.files.compress("/", &["data.bin".into()], "data.zip", ArchiveFormat::Zip), quota).await;
    assert_eq!(env.root_names(), vec!["data.bin"], "no partial archive");
    assert_eq!(env.files.disk_usage().await.unwrap(), file_cost(200_000));
}

/// Bytes the entries below `dir` take on disk (`st_blocks`), by a walk independent of the
/// manager; entries vanishing meanwhile (temporary files of writes in flight) are skipped.
fn allocated(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += allocated(&entry.path());
        }
    }
    total
}

/// [`allocated`] for a directory whose entries change while it is walked: the walk is kept
/// only if no entry it counted was replaced or removed meanwhile (`None` otherwise). A walk
/// that stats a file, then sees another grow into the room that file freed when it was
/// replaced, counts the same bytes twice: a torn sample, not the disk's state.
fn allocated_untorn(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let inodes = |dir: &std::path::Path| -> Vec<(std::ffi::OsString, u64)> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries.flatten().filter_map(|e| Some((e.file_name(), e.metadata().ok()?.ino()))).collect()
    };
    let before = inodes(dir);
    let total = allocated(dir);
    let after = inodes(dir);
    before.iter().all(|entry| after.contains(entry)).then_some(total)
}

/// An upload whose bytes the test hands over chunk by chunk.
fn fed_upload(
    files: &ServerFiles,
    path: &str,
) -> (tokio::sync::mpsc::Sender<bytes::Bytes>, tokio::task::JoinHandle<Result<u64, E>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    let chunks =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (Ok::<_, std::io::Error>(c), rx)) });
    let (files, path) = (files.clone(), path.to_owned());
    let task = tokio::spawn(async move {
        files.write_stream(&path, tokio_util::io::StreamReader::new(Box::pin(chunks)), None).await.map(|e| e.size)
    });
    (tx, task)
}

/// Ten uploads replacing one file at once: each used to be credited with the old file's size,
/// so together they held ten times the room left (22 MB on disk under an 8 MiB quota). Now
/// every upload in flight holds its own bytes; the disk (measured independently, temporary
/// files included) never holds more than the quota plus one chunk. Which uploads win is up to
/// timing (while refused ones remove their partial files, they still hold their room, so
/// several may be refused at once, even all of them); the file is always one whole upload
/// or the old content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g07_parallel_replacing_uploads_stay_within_quota() {
    const QUOTA: u64 = 8 << 20;
    const SIZE: usize = 2 << 20;
    const CHUNK: usize = 64 << 10;
    let env = Env::with(with_quota(QUOTA)).await;
    let old = noise(SIZE);
    env.put("world.bin", &old);
    env.files.rescan().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (root, stop) = (env.root.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                most = most.max(allocated_untorn(&root).unwrap_or(0));
            }
            most.max(allocated(&root))
        })
    };
    let (mut feeds, mut uploads): (Vec<_>, Vec<_>) =
        (0..10).map(|_| fed_upload(&env.files, "world.bin")).map(|(tx, task)| (Some(tx), task)).unzip();
    // Measured by the sampler all along, and here between rounds (every upload has written
    // all but its last chunk by then).
    let mut most = 0;
    for _ in 0..SIZE / CHUNK {
        most = most.max(allocated(&env.root));
        for (i, feed) in feeds.iter_mut().enumerate() {
            let sent = match feed {
                Some(tx) => tx.send(bytes::Bytes::from(vec![i as u8; CHUNK])).await.is_ok(),
                None => false,
            };
            if !sent {
                *feed = None;
            }
        }
    }
    drop(feeds);
    let mut accepted = 0;
    for upload in uploads.drain(..) {
        match upload.await.unwrap() {
            Ok(size) => {
                assert_eq!(size, SIZE as u64);
                accepted += 1;
            }
            Err(e) => {
                println!("refused: {e}");
                assert!(quota(&e), "{e}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let most = most.max(sampler.join().unwrap());
    println!("at most {most} bytes on disk (quota {QUOTA}), {accepted} of 10 uploads accepted");
    assert!(most <= QUOTA + CHUNK as u64, "{most} bytes on disk at once, quota {QUOTA} ({accepted} uploads accepted)");
    let data = std::fs::read(env.at("world.bin")).unwrap();
    assert_eq!(data.len(), SIZE);
    if accepted == 0 {
        assert!(data == old, "no upload was accepted, yet the file changed");
    } else {
        assert!(data.iter().all(|b| *b == data[0]), "the file mixes two uploads");
    }
    assert_eq!(env.root_names(), vec!["world.bin"], "temporary files left");
    let tracked = env.files.disk_usage().await.unwrap();
    assert_eq!(env.files.rescan().await.unwrap(), tracked, "usage drifted");
    // Alone, a replacement fits (the old and the new file side by side).
    env.files.write_stream("world.bin", &old[..], None).await.unwrap();
}

/// Deleting the directory of an upload in flight removes its temporary file: freed once (by
/// the upload's reservation when it fails), not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g11_deleting_under_an_upload_frees_it_once() {
    let env = Env::with(with_quota(64 << 20)).await;
    env.put("keep.bin", &noise(4 << 20));
    let before = env.files.rescan().await.unwrap();
    let (tx, upload) = fed_upload(&env.files, "d/x.bin");
    for _ in 0..16 {
        tx.send(bytes::Bytes::from(vec![7u8; 64 << 10])).await.unwrap();
    }
    // The last chunk sent is taken once the one before has been written.
    tx.send(bytes::Bytes::from_static(b"x")).await.unwrap();
    env.files.delete("d").await.unwrap();
    drop(tx);
    upload.await.unwrap().unwrap_err();
    assert_eq!(env.files.disk_usage().await.unwrap(), before, "usage moved");
    assert_eq!(env.files.rescan().await.unwrap(), before);
}

/// An archive of 20,000 empty directories put ~80 MB on disk counted as nothing. Entries now
/// cost what they take: refused under a small quota, counted at least at their real
/// allocation under a large one, freed again by delete.
#[tokio::test]
async fn g08_empty_directories_are_not_free() {
    let names: Vec<String> = (0..20_000).map(|i| format!("d{i}/")).collect();
    let entries: Vec<TarEntry<'_>> = names.iter().map(|n| (n.as_bytes(), DIRECTORY, &b""[..], &b""[..])).collect();
    let archive = gz(&tar_of(&entries));

    let env = Env::with(with_quota(16 << 20)).await;
    env.extract_refused(&archive, "dirs.tar.gz", quota).await;

    let env = Env::with(with_quota(1 << 30)).await;
    env.put("dirs.tar.gz", &archive);
    let before = env.files.rescan().await.unwrap();
    env.files.decompress("dirs.tar.gz", "dest").await.unwrap();
    let used = env.files.disk_usage().await.unwrap();
    let real = allocated(&env.root);
    println!("counted {used} bytes, {real} on disk");
    assert!(used >= real, "counted {used} bytes, {real} on disk");
    assert_eq!(env.files.rescan().await.unwrap(), used, "extraction and scan disagree");
    env.files.delete("dest").await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), before, "delete did not free the directories");
}

/// Empty files and directories one by one through the API calls: each is counted.
#[tokio::test]
async fn g09_empty_entries_one_by_one_are_counted() {
    let env = Env::with(with_quota(1 << 20)).await;
    let mut made = 0;
    let err = loop {
        assert!(made < 1000, "1000 empty entries fit in a 1 MiB quota");
        let result = if made % 2 == 0 {
            env.files.mkdir(&format!("d{made}")).await.map(drop)
        } else {
            env.files.write(&format!("f{made}"), "").await.map(drop)
        };
        match result {
            Ok(()) => made += 1,
            Err(e) => break e,
        }
    };
    assert!(quota(&err), "{err}");
    let used = env.files.disk_usage().await.unwrap();
    println!("{made} empty entries in 1 MiB: counted {used} bytes, {} on disk", allocated(&env.root));
    assert!(used >= allocated(&env.root), "counted {used}, {} on disk", allocated(&env.root));
    assert!(used <= 1 << 20);
    assert_eq!(env.files.rescan().await.unwrap(), used);
}

/// Compressing a sparse file reads its whole apparent size: an input past the archive
/// limits' total is refused before any byte is read.
#[tokio::test]
async fn g10_compressing_a_sparse_giant_is_refused() {
    let env = Env::with(limits(|l| l.max_total_bytes = 16 << 20)).await;
    std::fs::File::create(env.at("sparse.bin")).unwrap().set_len(64 << 20).unwrap();
    env.put("small.txt", b"small");
    let err = env
        .refuses(
            env.files.compress("/", &["small.txt".into(), "sparse.bin".into()], "x.tar.gz", ArchiveFormat::TarGz),
            |e| matches!(e, E::TooLarge { .. }),
        )
        .await;
    assert_eq!(err.status_code(), 413);
    assert_eq!(env.root_names(), vec!["small.txt", "sparse.bin"], "no partial archive");
}

// ---- H. denylist -------------------------------------------------------------------------------

async fn denylist_env() -> Env {
    let config = FilesConfig {
        denylist: vec!["*.jar".into(), "config/secret.txt".into(), "private/".into()],
        ..Default::default()
    };
    let env = Env::with(config).await;
    env.put("config/secret.txt", b"rcon-password");
    env.put("config/public.txt", b"public");
    env.put("server.jar", b"jar");
    env.put("private/key", b"key");
    env.put("notes.txt", b"notes");
    env
}

#[tokio::test]
async fn h10_decompress_onto_denied_paths() {
    let env = denylist_env().await;
    let tar = tar_of(&[(b"plugins/ok.txt", REGULAR, b"", b"ok"), (b"plugins/evil.JAR", REGULAR, b"", b"evil")]);
    env.put("jar.tar.gz", &gz(&tar));
    env.refuses(env.files.decompress("jar.tar.gz", "/"), denied).await;
    assert!(!env.at("plugins").exists());
    let zip = zip_of(&[("secret.txt", b"replaced")]);
    env.put("cfg.zip", &zip);
    env.refuses(env.files.decompress("cfg.zip", "config"), denied).await;
    assert_eq!(std::fs::read(env.at("config/secret.txt")).unwrap(), b"rcon-password");
}

#[tokio::test]
async fn h11_compress_leaves_denied_files_out() {
    let env = denylist_env().await;
    env.stays_inside(env.files.compress(
        "/",
        &["config".into(), "private".into(), "notes.txt".into()],
        "all.tar",
        ArchiveFormat::Tar,
    ))
    .await;
    let bytes = std::fs::read(env.at("all.tar")).unwrap();
    assert!(!bytes.windows(13).any(|w| w == b"rcon-password"));
    assert!(bytes.windows(6).any(|w| w == b"public"));
    env.refuses(env.files.compress("/", &["notes.txt".into()], "loot.jar", ArchiveFormat::Zip), denied).await;
}

// ---- I. fairness between servers ---------------------------------------------------------------

/// 36 compress jobs of one server made another server's listing wait 64 s: they filled the
/// daemon's blocking pool. Here the pool is shrunk to 4 threads and one server starts 20
/// compressions of a sparse file; another server's `list`, asked after them, must not queue
/// behind them. Before the fix it ran only once 17 of them had finished (the pool is FIFO).
#[test]
fn i01_heavy_jobs_of_one_server_leave_room_for_another() {
    const POOL: usize = 4;
    const JOBS: usize = 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(POOL)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hog = Env::new().await;
        let victim = Env::new().await;
        victim.put("server.properties", b"motd=hi\n");
        std::fs::File::create(hog.at("sparse.bin")).unwrap().set_len(128 << 20).unwrap();
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs: Vec<_> = (0..JOBS)
            .map(|i| {
                let (files, finished) = (hog.files.clone(), Arc::clone(&finished));
                tokio::spawn(async move {
                    let out = format!("out-{i}.tar.zst");
                    let result = files.compress("/", &["sparse.bin".into()], &out, ArchiveFormat::TarZst).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        // The hog's jobs are all asked for (and running) before the victim asks.
        while !hog.root_names().iter().any(|n| n.starts_with(".nexus-tmp-")) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listed = victim.files.list("/").await.unwrap();
        let finished_before = finished.load(Ordering::SeqCst);
        println!("the other server's list returned after {finished_before} of {JOBS} heavy jobs");
        assert_eq!(listed.len(), 1);
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert!(
            finished_before < JOBS / 2,
            "the other server's list waited for {finished_before} of {JOBS} heavy jobs of this one"
        );
    });
}

/// Space a server's process takes without growing a file (`fallocate --keep-size`) is on disk
/// all the same: the scan counts what is allocated, not the apparent size, and the quota
/// then refuses writes through the API.
#[tokio::test]
async fn g12_preallocated_space_is_counted() {
    let env = Env::with(with_quota(16 << 20)).await;
    env.put("empty.bin", b"");
    let status = std::process::Command::new("fallocate")
        .args(["--keep-size", "--length", "32MiB"])
        .arg(env.root.join("empty.bin"))
        .status()
        .expect("fallocate runs");
    assert!(status.success(), "fallocate failed");
    let used = env.files.rescan().await.unwrap();
    assert!(used >= 32 << 20, "a 32 MiB preallocation counted as {used} bytes");
    env.refuses(env.files.write("more.bin", vec![0u8; 4096]), quota).await;
    env.files.delete("empty.bin").await.unwrap();
    assert_eq!(env.files.disk_usage().await.unwrap(), 0, "delete did not free the preallocation");
}

/// Hard links made by a server's process cost nothing to make; each extra name now counts an
/// entry (the content once), and deleting one name frees one entry.
#[tokio::test]
async fn g13_hard_links_count_their_names() {
    let env = Env::with(with_quota(64 << 20)).await;
    env.put("data.bin", &noise(10_000));
    std::fs::create_dir(env.root.join("links")).unwrap();
    for i in 0..1000 {
        std::fs::hard_link(env.root.join("data.bin"), env.root.join(format!("links/{i}"))).unwrap();
    }
    let used = env.files.rescan().await.unwrap();
    assert_eq!(used, file_cost(10_000) + dir_cost() + 1000 * ENTRY_COST);
    env.files.delete("links/7").await.unwrap();
    let after = env.files.disk_usage().await.unwrap();
    assert_eq!(after, used - ENTRY_COST);
    assert_eq!(env.files.rescan().await.unwrap(), after, "counter and scan agree");
}

/// A tree made slow to walk costs only its own server's measurement: the walk gives up at
/// its budget with a typed error (and its node-wide turn with it), and another server's
/// measurement meanwhile completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g14_a_slow_tree_only_fails_its_own_measurement() {
    let slow = Env::with(with_quota(1 << 30)).await;
    for d in 0..50 {
        let dir = slow.root.join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..400 {
            std::fs::write(dir.join(f.to_string()), b"").unwrap();
        }
    }
    let other = Env::with(with_quota(1 << 30)).await;
    other.put("a.bin", &noise(1000));
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let files = slow.files.clone();
            tokio::spawn(async move { files.measure(Duration::ZERO).await })
        })
        .collect();
    assert_eq!(other.files.measure(Duration::from_secs(60)).await.unwrap(), file_cost(1000));
    for attempt in attempts {
        match attempt.await.unwrap() {
            Err(E::ScanTimedOut { .. }) => {}
            other => panic!("expected ScanTimedOut, got {other:?}"),
        }
    }
    assert!(slow.files.measure(Duration::from_secs(60)).await.unwrap() >= 20_000 * ENTRY_COST);
}

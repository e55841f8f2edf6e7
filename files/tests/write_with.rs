//! `write_with` (a write filled by a closure, with a mode, replacing a symlink) and
//! `symlink` (creating an in-root symlink): what the template layers of `nexus-templates`
//! are written with, under the same confinement and quota rules as every other operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;

use common::Env;
use nexus_files::{FilesConfig, FilesError, WriteOptions, file_cost};

#[tokio::test]
async fn write_with_sets_the_mode_and_counts_usage() {
    let env = Env::new().await;
    let entry = env
        .files
        .write_with("bin/run.sh", WriteOptions::new().mode(0o750).size_hint(5), |w| w.write_all(b"#!/bi"))
        .await
        .unwrap();
    assert_eq!((entry.size, entry.mode), (5, 0o750));
    assert_eq!(std::fs::read(env.at("bin/run.sh")).unwrap(), b"#!/bi");
    assert_eq!(std::fs::metadata(env.at("bin/run.sh")).unwrap().mode() & 0o777, 0o750);
    // Without a mode, an existing file keeps its own.
    env.files.write_with("bin/run.sh", WriteOptions::new(), |w| w.write_all(b"again")).await.unwrap();
    assert_eq!(std::fs::metadata(env.at("bin/run.sh")).unwrap().mode() & 0o777, 0o750);
    assert_eq!(env.files.disk_usage().await.unwrap(), env.files.rescan().await.unwrap());
    assert!(matches!(
        env.files.write_with("x", WriteOptions::new().mode(0o4755), |_| Ok(())).await,
        Err(FilesError::InvalidMode { .. })
    ));
}

#[tokio::test]
async fn a_failing_fill_leaves_the_old_file_and_no_temporary() {
    let env = Env::new().await;
    env.put("a.txt", b"old");
    let err = env
        .files
        .write_with("a.txt", WriteOptions::new(), |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("source broke"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, FilesError::Io { .. }), "{err:?}");
    assert_eq!(std::fs::read(env.at("a.txt")).unwrap(), b"old");
    assert_eq!(env.root_names(), vec!["a.txt"]);
}

#[tokio::test]
async fn write_with_stops_at_the_quota_whatever_the_hint() {
    let env = Env::with(FilesConfig { quota_bytes: file_cost(100_000), ..Default::default() }).await;
    let err = env
        .files
        .write_with("big", WriteOptions::new().size_hint(10), |w| w.write_all(&vec![1u8; 1_000_000]))
        .await
        .unwrap_err();
    assert!(matches!(err, FilesError::QuotaExceeded { .. }), "{err:?}");
    assert!(env.root_names().is_empty());
    assert_eq!(env.files.disk_usage().await.unwrap(), 0);
}

#[tokio::test]
async fn replace_symlink_replaces_the_link_not_its_target() {
    let env = Env::new().await;
    // A link planted by the server process, pointing out of the root.
    env.link(env.outside.join("secret.txt"), "config.yml");
    let before = env.snapshot();
    // Followed (the default), it is refused.
    let err = env.files.write_with("config.yml", WriteOptions::new(), |w| w.write_all(b"x")).await.unwrap_err();
    assert!(matches!(err, FilesError::OutsideRoot { .. }), "{err:?}");
    // Replaced, the link becomes a plain file and the outside is untouched.
    env.files
        .write_with("config.yml", WriteOptions::new().replace_symlink(true), |w| w.write_all(b"mine"))
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(env.at("config.yml")).unwrap().is_file());
    assert_eq!(std::fs::read(env.at("config.yml")).unwrap(), b"mine");
    assert_eq!(env.snapshot(), before);
    // A symlinked parent leading out is refused either way.
    env.link(&env.outside, "out");
    let err = env
        .files
        .write_with("out/secret.txt", WriteOptions::new().replace_symlink(true), |w| w.write_all(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, FilesError::OutsideRoot { .. }), "{err:?}");
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn symlinks_are_created_inside_only() {
    let env = Env::new().await;
    env.put("data/real.txt", b"real");
    let entry = env.files.symlink("conf/link", "../data/real.txt").await.unwrap();
    assert!(entry.symlink);
    assert_eq!(std::fs::read_link(env.at("conf/link")).unwrap().to_str(), Some("../data/real.txt"));
    assert_eq!(env.files.read("conf/link", 100).await.unwrap(), b"real");
    // Replacing a file or a link is allowed; a directory is not.
    env.put("f", b"file");
    env.files.rescan().await.unwrap();
    env.files.symlink("f", "data/real.txt").await.unwrap();
    env.files.symlink("f", "data").await.unwrap();
    assert_eq!(std::fs::read_link(env.at("f")).unwrap().to_str(), Some("data"));
    assert!(matches!(env.files.symlink("data", "conf").await, Err(FilesError::NotAFile { .. })));
    let before = env.snapshot();
    for (link, target) in [("x", "/etc/passwd"), ("x", "../outside"), ("conf/x", "../../x"), ("x", "")] {
        let err = env.files.symlink(link, target).await.unwrap_err();
        assert!(matches!(err, FilesError::OutsideRoot { .. }), "{link} -> {target}: {err:?}");
    }
    // Lexically inside from the link's real place: a symlinked parent is resolved first.
    env.link("data", "alias");
    env.files.rescan().await.unwrap();
    assert!(matches!(env.files.symlink("alias/x", "../../y").await, Err(FilesError::OutsideRoot { .. })));
    env.files.symlink("alias/y", "real.txt").await.unwrap();
    assert_eq!(std::fs::read_link(env.at("data/y")).unwrap().to_str(), Some("real.txt"));
    assert!(matches!(env.files.symlink("x", ".nexus-tmp-abc").await, Err(FilesError::InvalidPath { .. })));
    assert_eq!(env.snapshot(), before);
    assert_eq!(env.files.disk_usage().await.unwrap(), env.files.rescan().await.unwrap());
}

//! Ownership and modes of the data root and the server directories on the host.
//!
//! A server's process writes its directory through a bind mount, so whatever it leaves there
//! is on the host. Three rules keep that from reaching other local users or root:
//!
//! * the data root is `0700`, owned by the daemon: no other local user can even reach a
//!   server's files (a set-id copy or a world-writable file inside is out of their reach);
//! * each server directory is `0700` and owned by the container user the server runs as, so
//!   the process can write it and nobody else can;
//! * after an install (which runs as root, as with Wings) everything the script left is
//!   handed to the container user ([`hand_over`]): set-uid and set-gid bits cleared, device
//!   nodes, fifos and sockets removed, nothing followed through a symlink.

use crate::runtime::ContainerUser;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the data root and of every server directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) if needed and makes it `0700`.
pub(crate) fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
}

/// Creates the server directory `dir` if needed, `0700`, owned by `user` (when given).
pub(crate) fn ensure_server_dir(dir: &Path, user: Option<ContainerUser>) -> std::io::Result<()> {
    ensure_private_dir(dir)?;
    if let Some(user) = user {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

/// What [`hand_over`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HandOver {
    /// Entries given to the user.
    pub(crate) chowned: u64,
    /// Files whose set-uid or set-gid bit was cleared.
    pub(crate) setid_cleared: u64,
    /// Device nodes, fifos and sockets removed.
    pub(crate) specials_removed: u64,
}

/// Gives everything under `dir` to `user` (or leaves owners when `None`), clears set-id bits
/// and removes special files. Never follows a symlink (they are re-owned with `lchown`).
/// Must run while no process of the server runs (after an install, before a start), so no
/// entry can be swapped under the walk.
pub(crate) fn hand_over(dir: &Path, user: Option<ContainerUser>) -> std::io::Result<HandOver> {
    let mut done = HandOver::default();
    ensure_server_dir(dir, user)?;
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let kind = meta.file_type();
            if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
                std::fs::remove_file(&path)?;
                done.specials_removed += 1;
                continue;
            }
            let had_setid = kind.is_file() && meta.mode() & 0o6000 != 0;
            if let Some(user) = user {
                if (meta.uid(), meta.gid()) != (user.uid, user.gid) {
                    std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))?;
                    done.chowned += 1;
                }
            }
            if kind.is_symlink() {
                continue;
            }
            // chown clears set-id bits of files on Linux; cleared again explicitly because
            // nothing is chowned when no user is configured, and for directories.
            if had_setid {
                let mode = std::fs::symlink_metadata(&path)?.mode();
                if mode & 0o6000 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o1777))?;
                }
                done.setid_cleared += 1;
            }
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_over_reowns_clears_setid_and_removes_specials() {
        let root = std::env::temp_dir().join(format!("nexus-handover-{}", uuid::Uuid::new_v4().simple()));
        let outside = std::env::temp_dir().join(format!("nexus-handover-outside-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(&outside, "x").unwrap();
        let outside_mode = std::fs::metadata(&outside).unwrap().mode();
        std::fs::write(root.join("a/b/suid"), "x").unwrap();
        std::fs::set_permissions(root.join("a/b/suid"), std::fs::Permissions::from_mode(0o6755)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
        let fifo = std::process::Command::new("mkfifo").arg(root.join("a/fifo")).status();
        let user = if rustix_is_root() { Some(ContainerUser { uid: 988, gid: 988 }) } else { None };

        let done = hand_over(&root, user).unwrap();

        let suid = std::fs::metadata(root.join("a/b/suid")).unwrap();
        assert_eq!(suid.mode() & 0o7777, 0o755);
        assert_eq!(done.setid_cleared, 1);
        if fifo.is_ok_and(|s| s.success()) {
            assert!(!root.join("a/fifo").exists());
            assert_eq!(done.specials_removed, 1);
        }
        assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        // The symlink's target outside was not touched.
        let target = std::fs::metadata(&outside).unwrap();
        assert_eq!(target.mode(), outside_mode);
        if let Some(user) = user {
            assert_eq!(target.uid(), 0);
            assert_eq!(std::fs::symlink_metadata(root.join("a/link")).unwrap().uid(), user.uid);
            assert_eq!(suid.uid(), user.uid);
        }
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_file(&outside).unwrap();
    }

    fn rustix_is_root() -> bool {
        std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    }
}

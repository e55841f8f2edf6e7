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
//!   nodes, fifos and sockets removed, every step relative to a directory descriptor and
//!   nothing followed through a symlink.

use nexus_core::runtime::ContainerUser;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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

/// Deepest directory level [`hand_over`] descends to; a deeper tree fails it. Up to two
/// descriptors are held per level, so this stays well under the daemon's reserve of 256
/// (`FD_RESERVE`); game server trees are rarely 20 levels deep.
pub(crate) const MAX_HAND_OVER_DEPTH: usize = 100;

/// Gives everything under `dir` to `user` (or leaves owners when `None`), clears set-id bits
/// and removes special files.
///
/// Every step is relative to a directory descriptor and never follows a symlink: entries are
/// examined with `fstatat(AT_SYMLINK_NOFOLLOW)`, files and directories opened with
/// `O_NOFOLLOW` and changed through that descriptor after checking it is the inode examined,
/// symlinks re-owned with `AT_SYMLINK_NOFOLLOW`. So an entry swapped for a symlink to a host
/// path mid-walk (by a process still running, or the file API) changes nothing outside `dir`.
/// Entries that vanish mid-walk are skipped.
pub(crate) fn hand_over(dir: &Path, user: Option<ContainerUser>) -> std::io::Result<HandOver> {
    use rustix::fs::{Dir, Mode, OFlags};
    ensure_server_dir(dir, user)?;
    let open_dir = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root = rustix::fs::open(dir, open_dir, Mode::empty())?;
    let mut done = HandOver::default();
    // One (descriptor, listing) per level being walked: depth-first, so descriptors are bounded
    // by the depth, not the width, of the tree.
    let mut stack = vec![Dir::read_from(&root)?];
    let mut fds = vec![root];
    while let Some(listing) = stack.last_mut() {
        let Some(entry) = listing.next() else {
            stack.pop();
            fds.pop();
            continue;
        };
        let entry = entry?;
        let name = entry.file_name().to_owned();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let Some(parent) = fds.last() else { break };
        if let Some(child) = hand_over_entry(parent, &name, user, &mut done)? {
            if stack.len() >= MAX_HAND_OVER_DEPTH {
                return Err(std::io::Error::other(format!("deeper than {MAX_HAND_OVER_DEPTH} directory levels")));
            }
            stack.push(Dir::read_from(&child)?);
            fds.push(child);
        }
    }
    Ok(done)
}

/// One entry of a [`hand_over`] walk; returns the opened directory to descend into.
fn hand_over_entry(
    parent: &rustix::fd::OwnedFd,
    name: &std::ffi::CStr,
    user: Option<ContainerUser>,
    done: &mut HandOver,
) -> std::io::Result<Option<rustix::fd::OwnedFd>> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let vanished = |e: &rustix::io::Errno| matches!(*e, rustix::io::Errno::NOENT);
    let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(e) if vanished(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let owner = user.map(|u| (rustix::fs::Uid::from_raw(u.uid), rustix::fs::Gid::from_raw(u.gid)));
    let needs_chown = user.is_some_and(|u| (stat.st_uid, stat.st_gid) != (u.uid, u.gid));
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => {
            if let (Some((uid, gid)), true) = (owner, needs_chown) {
                match rustix::fs::chownat(parent, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(()) => done.chowned += 1,
                    Err(e) if vanished(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(None)
        }
        FileType::RegularFile | FileType::Directory => {
            let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            // O_NONBLOCK: never wait on a fifo swapped in after the stat (the inode check
            // below refuses it anyway).
            let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
            if is_dir {
                flags |= OFlags::DIRECTORY;
            }
            let fd = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) if vanished(&e) || e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            };
            let opened = rustix::fs::fstat(&fd)?;
            if (opened.st_dev, opened.st_ino) != (stat.st_dev, stat.st_ino) {
                // Swapped between the stat and the open: whatever is there now is not walked.
                return Ok(None);
            }
            if let (Some((uid, gid)), true) = (owner, needs_chown) {
                rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
                done.chowned += 1;
            }
            let mode = rustix::fs::fstat(&fd)?.st_mode;
            if !is_dir && stat.st_mode & 0o6000 != 0 {
                // chown clears set-id bits of files on Linux; cleared explicitly for when no
                // user is configured.
                if mode & 0o6000 != 0 {
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o1777))?;
                }
                done.setid_cleared += 1;
            }
            Ok(is_dir.then_some(fd))
        }
        _ => {
            match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
                Ok(()) => done.specials_removed += 1,
                Err(e) if vanished(&e) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn hand_over_never_reaches_through_a_symlinked_directory() {
        let root = std::env::temp_dir().join(format!("nexus-handover-{}", uuid::Uuid::new_v4().simple()));
        let host = std::env::temp_dir().join(format!("nexus-handover-host-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("suid"), "x").unwrap();
        std::fs::set_permissions(host.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let fifo = std::process::Command::new("mkfifo").arg(host.join("fifo")).status();
        std::os::unix::fs::symlink(&host, root.join("dir-link")).unwrap();
        let deep = (0..40).fold(root.clone(), |p, i| p.join(format!("d{i}")));
        std::fs::create_dir_all(&deep).unwrap();
        std::os::unix::fs::symlink(&host, deep.join("link")).unwrap();

        hand_over(&root, None).unwrap();

        assert_eq!(std::fs::metadata(host.join("suid")).unwrap().mode() & 0o7777, 0o4755, "host file untouched");
        if fifo.is_ok_and(|s| s.success()) {
            assert!(host.join("fifo").exists(), "host fifo untouched");
        }
        assert!(std::fs::symlink_metadata(deep.join("link")).unwrap().file_type().is_symlink());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&host).unwrap();
    }

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

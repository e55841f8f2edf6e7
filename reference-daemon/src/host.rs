//! What the daemon checks about its host at start: the mount holding the data root.
//!
//! Server processes write their directories through bind mounts, so a file they create is a
//! file on the host. The daemon makes the data root `0700` (no other local user can reach
//! it) and servers run unprivileged with `no-new-privileges`, but defence in depth asks for
//! the data root on a `nosuid,nodev` mount too: then a set-uid file or a device node in a
//! server directory is inert on the host even for root's processes that wander in. The daemon
//! cannot remount the operator's file systems; it reads `/proc/self/mountinfo` and warns.
//!
//! It also reports whether the file system could enforce disk limits in the kernel (XFS or
//! ext4 mounted with project quotas); see [`crate::disk`] for what the daemon does otherwise.

use std::path::{Path, PathBuf};

/// The mount a path lives on, as `/proc/self/mountinfo` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRootMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File-system type (`ext4`, `xfs`, `tmpfs`, `overlay`, ...).
    pub fs_type: String,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    pub mount_options: Vec<String>,
    /// Per-superblock options (`rw,prjquota`).
    pub super_options: Vec<String>,
}

impl DataRootMount {
    /// The mount holding `path` (which must exist), from `/proc/self/mountinfo`.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let path = std::fs::canonicalize(path)?;
        let table = std::fs::read_to_string("/proc/self/mountinfo")?;
        Self::find(&table, &path).ok_or_else(|| std::io::Error::other(format!("no mount holds {}", path.display())))
    }

    /// The mount in `mountinfo` text whose mount point is the longest prefix of `path` (the
    /// last such line wins: later mounts hide earlier ones on the same point).
    pub fn find(mountinfo: &str, path: &Path) -> Option<Self> {
        let mut best: Option<Self> = None;
        for line in mountinfo.lines() {
            let Some(mount) = parse_line(line) else { continue };
            if !path.starts_with(&mount.mount_point) {
                continue;
            }
            let longer =
                best.as_ref().is_none_or(|b| mount.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
            if longer {
                best = Some(mount);
            }
        }
        best
    }

    fn has(&self, option: &str) -> bool {
        self.mount_options.iter().chain(&self.super_options).any(|o| o == option)
    }

    /// Whether set-uid files and device nodes are inert on this mount.
    pub fn is_nosuid_nodev(&self) -> bool {
        self.has("nosuid") && self.has("nodev")
    }

    /// Whether the file system can enforce project quotas (XFS `prjquota`/`pquota`, ext4
    /// `prjquota`).
    pub fn has_project_quotas(&self) -> bool {
        matches!(self.fs_type.as_str(), "xfs" | "ext4") && (self.has("prjquota") || self.has("pquota"))
    }

    /// What an operator should hear about this mount at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.is_nosuid_nodev() {
            warnings.push(format!(
                "the data root is on {} ({}, options {}) without nosuid,nodev: mount it (or a file system for it) \
                 with nosuid,nodev so set-uid files and device nodes servers leave there are inert on the host",
                self.mount_point.display(),
                self.fs_type,
                self.mount_options.join(",")
            ));
        }
        warnings
    }
}

/// One `mountinfo` line: `id parent major:minor root mount-point options [optional...] - type source super-options`.
fn parse_line(line: &str) -> Option<DataRootMount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let after: Vec<&str> = after.split(' ').collect();
    Some(DataRootMount {
        mount_point: PathBuf::from(unescape(fields.get(4)?)),
        mount_options: fields.get(5)?.split(',').map(str::to_owned).collect(),
        fs_type: (*after.first()?).to_owned(),
        super_options: after.get(2).map(|o| o.split(',').map(str::to_owned).collect()).unwrap_or_default(),
    })
}

/// `mountinfo` escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = bytes[i + 1..i + 4].iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
40 22 0:35 / /var/lib/nexus rw,nosuid,nodev,relatime shared:20 - xfs /dev/sdb1 rw,attr2,inode64,prjquota
41 22 0:36 / /srv/with\\040space rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn the_longest_mount_point_wins() {
        let root = DataRootMount::find(TABLE, Path::new("/var/lib/other")).unwrap();
        assert_eq!(root.mount_point, Path::new("/"));
        assert!(!root.is_nosuid_nodev());
        assert_eq!(root.warnings().len(), 1);
        let data = DataRootMount::find(TABLE, Path::new("/var/lib/nexus/volumes")).unwrap();
        assert_eq!(data.mount_point, Path::new("/var/lib/nexus"));
        assert!(data.is_nosuid_nodev());
        assert!(data.has_project_quotas());
        assert!(data.warnings().is_empty());
        let spaced = DataRootMount::find(TABLE, Path::new("/srv/with space/x")).unwrap();
        assert_eq!(spaced.fs_type, "tmpfs");
        assert!(!spaced.has_project_quotas());
    }

    #[test]
    fn a_real_nosuid_nodev_mount_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "nosuid,nodev,size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| if s.success() { Ok(()) } else { Err(format!("mount exited with {s}")) });
        // Mounting needs root; under CI=true its absence fails the test.
        if !nexus_conformance::require_service("mounting a tmpfs (root)", mounted) {
            return;
        }
        let data_root = dir.path().join("volumes");
        std::fs::create_dir(&data_root).unwrap();
        let mount = DataRootMount::of(&data_root);
        let unmounted = std::process::Command::new("umount").arg(dir.path()).status();
        let mount = mount.unwrap();
        assert_eq!(mount.fs_type, "tmpfs");
        assert!(mount.is_nosuid_nodev(), "{mount:?}");
        assert!(mount.warnings().is_empty());
        assert!(unmounted.is_ok_and(|s| s.success()));
        let plain = DataRootMount::of(dir.path()).unwrap();
        assert_ne!(plain.mount_point, mount.mount_point);
    }
}

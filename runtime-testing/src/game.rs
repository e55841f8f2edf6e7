//! What the real-server scenarios share: done matching, handing a data directory to the
//! server's user, and reading a container's sockets from the host.

use nexus_core::model::DoneMatcher;
use nexus_core::runtime::ContainerUser;
use std::path::{Path, PathBuf};

/// Whether `line` satisfies one of an egg's done matchers.
pub(crate) fn matches(matcher: &DoneMatcher, line: &str) -> bool {
    match matcher {
        DoneMatcher::Substring(text) => line.contains(text.as_str()),
        DoneMatcher::Regex(pattern) => regex::Regex::new(pattern).expect("done regex").is_match(line),
    }
}

/// Gives the data directory to the server's user, private, as a node does before a start.
pub(crate) fn hand_over(dir: &Path, user: ContainerUser) {
    give(dir, user);
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).expect("chown data dir");
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod data dir");
}

/// Everything below `dir` to `user`, symlinks themselves (never what they point to).
fn give(dir: &Path, user: ContainerUser) {
    for entry in std::fs::read_dir(dir).expect("data dir") {
        let entry = entry.expect("entry");
        std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid)).expect("chown");
        if entry.file_type().expect("file type").is_dir() {
            give(&entry.path(), user);
        }
    }
}

/// UDP ports with a bound socket in the network namespace of process `pid`
/// (`/proc/<pid>/net/udp` is the container's `/proc/net/udp`).
pub(crate) fn udp_listeners(pid: i64) -> Vec<u16> {
    let table =
        std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/net/udp"))).expect("reading /proc/<pid>/net/udp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|local| local.split_once(':'))
        .filter_map(|(_, port)| u16::from_str_radix(port, 16).ok())
        .collect()
}

//! What the real-server scenarios share: done matching, handing a data directory to the
//! server's user, and reading a container's sockets from the host.

use crate::require_service;
use futures::FutureExt;
use nexus_core::ServerId;
use nexus_core::model::DoneMatcher;
use nexus_core::runtime::{ContainerUser, Runtime};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

/// Runs `scenario` for a new server with a fresh data directory, if `image` (built by
/// `scripts/images/<game>.sh`) is in `runtime`: a missing one fails under `CI=true`, else the
/// scenario is skipped. Whatever happens, the server's containers and the directory are
/// removed afterwards.
pub(crate) async fn with_new_server<R, S, F>(runtime: &R, image: &str, game: &str, scenario: S)
where
    R: Runtime + ?Sized,
    S: FnOnce(ServerId, PathBuf) -> F,
    F: Future<Output = ()>,
{
    let present = runtime.image_exists(image).await.expect("image_exists");
    let probe = if present { Ok(()) } else { Err(format!("not built; run scripts/images/{game}.sh")) };
    if !require_service(&format!("test image {image} in {}", runtime.name()), probe) {
        return;
    }
    let data_dir = std::env::temp_dir().join(format!("nexus-{game}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).expect("data directory");
    let server = ServerId::new();
    let result = AssertUnwindSafe(scenario(server, data_dir.clone())).catch_unwind().await;
    for managed in runtime.list_managed().await.expect("list_managed") {
        if managed.server == server {
            runtime.destroy(&managed.id).await.expect("destroy leftover");
        }
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

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

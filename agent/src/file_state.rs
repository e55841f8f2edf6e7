//! [`FileStateStore`]: the agent's snapshot as one JSON file, replaced atomically.
//!
//! `save` writes `agent-state.json.tmp` in the state directory, fsyncs it, renames it over
//! `agent-state.json` and fsyncs the directory, so after a crash (`kill -9`, power loss) the
//! file is either the previous snapshot or the new one, never a torn mix. Saves are
//! serialised by a mutex (two concurrent saves would share the temp file). A missing file
//! loads as an empty snapshot (first start); an unreadable one is an error, never silently
//! an empty node, because forgetting servers would orphan their containers.
//!
//! The store holds an exclusive `flock` on `<state_dir>/lock` for as long as it lives (the
//! kernel drops it when the process ends, `kill -9` included): two daemons on one state
//! directory would adopt, stop and restart the same containers, so a second one is refused
//! at open with an error naming the directory.

use crate::{AgentError, AgentSnapshot, AgentStateStore};
use async_trait::async_trait;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Name of the snapshot file in the state directory.
pub const STATE_FILE: &str = "agent-state.json";

/// Name of the lock file in the state directory.
pub const LOCK_FILE: &str = "lock";

/// Stores the agent snapshot in `<state_dir>/agent-state.json`.
#[derive(Debug)]
pub struct FileStateStore {
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
    /// Holds the directory's `flock` while the store lives.
    _held: std::fs::File,
}

impl FileStateStore {
    /// A store in `dir` (created if missing, mode 0700: it holds server specs with their
    /// environment).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| state_error("create", &dir, &e))?;
        set_private(&dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let held = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| state_error("open", &lock_path, &e))?;
        match rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(AgentError::State(format!(
                    "another nexus-wings already uses the state directory {} (it holds {}); two daemons on one \
                     state directory would adopt the same containers",
                    dir.display(),
                    lock_path.display()
                )));
            }
            Err(e) => return Err(state_error("lock", &lock_path, &std::io::Error::from(e))),
        }
        Ok(Self { dir, lock: tokio::sync::Mutex::new(()), _held: held })
    }

    /// Path of the snapshot file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
}

#[async_trait]
impl AgentStateStore for FileStateStore {
    async fn load(&self) -> Result<AgentSnapshot, AgentError> {
        let path = self.path();
        let _guard = self.lock.lock().await;
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::State(format!("{} is not a valid agent snapshot: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentSnapshot::default()),
            Err(e) => Err(state_error("read", &path, &e)),
        })
        .await
        .map_err(|e| AgentError::State(format!("state load task failed: {e}")))?
    }

    async fn save(&self, snapshot: &AgentSnapshot) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(snapshot).map_err(|e| AgentError::State(format!("serialize snapshot: {e}")))?;
        let dir = self.dir.clone();
        let _guard = self.lock.lock().await;
        tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
            .map_err(|e| AgentError::State(format!("state save task failed: {e}")))?
    }
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let target = dir.join(STATE_FILE);
    let temp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| state_error("create", &temp, &e))?;
    file.write_all(bytes).map_err(|e| state_error("write", &temp, &e))?;
    file.sync_all().map_err(|e| state_error("fsync", &temp, &e))?;
    drop(file);
    std::fs::rename(&temp, &target).map_err(|e| state_error("rename", &target, &e))?;
    // The rename is durable only once the directory entry is on disk.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| state_error("fsync", dir, &e))?;
    Ok(())
}

fn set_private(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| state_error("chmod", dir, &e))
}

fn state_error(op: &str, path: &Path, e: &std::io::Error) -> AgentError {
    AgentError::State(format!("{op} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_file_is_empty_then_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path().join("state")).unwrap();
        let empty = store.load().await.unwrap();
        assert_eq!(serde_json::to_value(&empty).unwrap(), serde_json::to_value(AgentSnapshot::default()).unwrap());
        store.save(&empty).await.unwrap();
        let again = store.load().await.unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&empty).unwrap());
        assert!(store.path().exists());
        assert!(!dir.path().join("state").join("agent-state.json.tmp").exists());
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_not_an_empty_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path()).unwrap();
        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(matches!(store.load().await, Err(AgentError::State(_))));
    }

    /// A second store on the same directory (a second daemon) is refused while the first
    /// lives, and allowed once it is gone.
    #[test]
    fn a_second_store_on_one_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = FileStateStore::open(dir.path()).unwrap();
        let second = FileStateStore::open(dir.path()).unwrap_err();
        assert!(second.to_string().contains("already uses the state directory"), "{second}");
        drop(first);
        FileStateStore::open(dir.path()).unwrap();
    }
}

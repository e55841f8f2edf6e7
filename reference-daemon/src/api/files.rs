//! File routes over the confined file manager ([`ServerFiles`]).
//!
//! The path after `files/` is percent-decoded once and handed to the file manager, which
//! confines it (so `%2e%2e/` is refused there like `../`: `400 outside_root`).
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET files/<dir>` | | `200` JSON array of [`FileEntry`] |
//! | `GET files/<file>` | | `200` the bytes, `application/octet-stream`, `content-length` |
//! | `PUT files/<file>` | the bytes (streamed; `content-length` lets the quota refuse up front) | `200` the new [`FileEntry`] |
//! | `DELETE files/<path>` | | `204` |
//! | `POST files/compress` | `{"root":"/","files":["world","server.properties"],"destination":"backup.tar.zst","format":"tar.zst"}` (`format` optional: from the extension, else tar.gz) | `200` [`FileEntry`] |
//! | `POST files/decompress` | `{"file":"modpack.zip","destination":"/"}` (`destination` optional: `/`) | `200` [`ExtractSummary`](nexus_files::ExtractSummary) |
//! | `POST files/rename` | `{"from":"a","to":"b"}` | `204` |
//! | `POST files/copy` | `{"from":"a","to":"b"}` | `200` [`FileEntry`] |
//! | `POST files/mkdir` | `{"path":"a/b"}` | `200` [`FileEntry`] |
//! | `POST files/chmod` | `{"path":"a","mode":"755"}` (octal string, or a number taken as is) | `204` |
//!
//! # Disk usage
//! Each server's manager is opened on first use with the spec's quota (`disk_mb`) and
//! denylist, and kept: one per server, so that its bound on concurrent file jobs
//! ([`JobLimits`](nexus_files::JobLimits)) holds across requests. The manager's usage counter
//! sees its own writes, every entry at its on-disk cost; what the game server writes is picked
//! up by one rescan the first time the files are used after the server has stopped (no
//! periodic rescan loop).

use super::request::{body, json_content_type, server_id};
use super::{ApiError, ApiState, caller, json, no_content, require, respond, with_state};
use crate::auth::Caller;
use futures::StreamExt as _;
use nexus_agent::NodeAgent;
use nexus_core::ids::ServerId;
use nexus_core::model::Permission;
use nexus_files::{ArchiveFormat, FileEntry, FileKind, FileOwner, FilesConfig, ServerFiles};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::path::Tail;
use warp::reply::{Reply, Response};

/// What of a spec a manager is opened with.
#[derive(Clone, PartialEq, Eq)]
struct FileRules {
    quota_bytes: u64,
    denylist: Vec<String>,
}

impl FileRules {
    fn of(spec: &nexus_core::transport::ServerSpec) -> Self {
        Self { quota_bytes: spec.limits.disk_mb.saturating_mul(1 << 20), denylist: spec.file_denylist.clone() }
    }
}

/// One server's manager, the rules it was opened with, and whether its server ran since the
/// last rescan.
#[derive(Clone)]
struct Managed {
    files: ServerFiles,
    rules: FileRules,
    /// The server was seen active since the counter was last exact.
    dirty: bool,
}

/// The file managers of all servers, opened lazily.
#[derive(Default)]
pub struct FileManagers {
    owner: Option<FileOwner>,
    open: Mutex<HashMap<ServerId, Managed>>,
    /// Servers whose directory a restore is replacing: their files are refused meanwhile.
    restoring: Mutex<HashSet<ServerId>>,
}

/// Marks a server's files as being restored ([`FileManagers::restoring`]); dropped, the
/// mark goes and the server's cached manager is forgotten (it holds the old directory).
#[derive(Debug)]
pub struct RestoringMark {
    managers: Arc<FileManagers>,
    server: ServerId,
}

impl Drop for RestoringMark {
    fn drop(&mut self) {
        if let Ok(mut restoring) = self.managers.restoring.lock() {
            restoring.remove(&self.server);
        }
        self.managers.forget(self.server);
    }
}

impl std::fmt::Debug for FileManagers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileManagers").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl FileManagers {
    /// Managers creating files owned by `owner`.
    pub fn new(owner: Option<FileOwner>) -> Self {
        Self { owner, open: Mutex::new(HashMap::new()), restoring: Mutex::new(HashSet::new()) }
    }

    /// Refuses the files of `server` (`409 busy`) until the mark is dropped, then reopens
    /// its manager: a restore replaces the server's directory, and a manager opened before
    /// holds the old one.
    pub fn restoring(self: &Arc<Self>, server: ServerId) -> RestoringMark {
        if let Ok(mut restoring) = self.restoring.lock() {
            restoring.insert(server);
        }
        self.forget(server);
        RestoringMark { managers: Arc::clone(self), server }
    }

    /// A manager of the server `spec` describes, rooted at `data_dir`, with `limits` for its
    /// archives, opened for one job and not cached (backups and restores: their own limits,
    /// and a restore makes any manager of the old directory stale).
    pub async fn open_dedicated(
        &self,
        spec: &nexus_core::transport::ServerSpec,
        data_dir: &std::path::Path,
        limits: nexus_files::ArchiveLimits,
    ) -> Result<ServerFiles, ApiError> {
        let rules = FileRules::of(spec);
        let config = FilesConfig {
            quota_bytes: rules.quota_bytes,
            denylist: rules.denylist,
            owner: self.owner,
            archive_limits: limits,
            ..FilesConfig::default()
        };
        Ok(ServerFiles::open(data_dir, config).await?)
    }

    /// Drops the cached manager of `server` (its spec changed or it was destroyed).
    pub fn forget(&self, server: ServerId) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&server);
        }
    }

    /// The manager of `server`, opened if needed, its usage made exact if the server stopped
    /// since it was last looked at.
    ///
    /// Refused (`409 busy`) while the server installs: the install script runs as root in
    /// its directory, and the node hands its files over afterwards; nothing else touches them
    /// meanwhile. Refused too while a backup is restored into it ([`restoring`](Self::restoring)).
    pub async fn get(&self, agent: &NodeAgent, server: ServerId) -> Result<ServerFiles, ApiError> {
        if self.restoring.lock().is_ok_and(|restoring| restoring.contains(&server)) {
            return Err(ApiError::new(
                409,
                "busy",
                format!("a backup is being restored into server {server}; its files are not available"),
            ));
        }
        let state = agent.state(server);
        if state == Some(nexus_core::lifecycle::ServerState::Installing) {
            // What the script writes is not counted: the next use rescans.
            if let Ok(mut open) = self.open.lock()
                && let Some(managed) = open.get_mut(&server)
            {
                managed.dirty = true;
            }
            return Err(ApiError::new(
                409,
                "busy",
                format!("server {server} is installing; its files are not available"),
            ));
        }
        // Whether something other than this manager may be writing the files right now.
        let active = state.is_some_and(|s| s.is_active());
        let spec = agent
            .spec(server)
            .ok_or_else(|| ApiError::new(404, "unknown_server", format!("unknown server {server}")))?;
        let files = self.open_for(&spec, &agent.data_dir(server), active).await?;
        let rescan = self.open.lock().ok().and_then(|mut open| {
            let managed = open.get_mut(&server)?;
            let rescan = managed.dirty && !active;
            managed.dirty = active || (managed.dirty && !rescan);
            Some(rescan)
        });
        if rescan == Some(true) {
            let used = files.rescan().await?;
            tracing::debug!(%server, used, "disk usage rescanned after the server stopped");
        }
        Ok(files)
    }

    /// The manager of the server `spec` describes, rooted at `data_dir`, opened if needed
    /// (`active`: its server may be writing, so the counter is not exact). A cached manager
    /// opened for another quota or denylist (the server was created again with a new spec)
    /// is replaced, whoever asks first: the spec read now is what holds.
    pub async fn open_for(
        &self,
        spec: &nexus_core::transport::ServerSpec,
        data_dir: &std::path::Path,
        active: bool,
    ) -> Result<ServerFiles, ApiError> {
        let rules = FileRules::of(spec);
        let cached = self.open.lock().ok().and_then(|open| open.get(&spec.id).cloned());
        if let Some(managed) = cached.filter(|m| m.rules == rules) {
            return Ok(managed.files);
        }
        let config = FilesConfig {
            quota_bytes: rules.quota_bytes,
            denylist: rules.denylist.clone(),
            owner: self.owner,
            ..FilesConfig::default()
        };
        let files = ServerFiles::open(data_dir, config).await?;
        if let Ok(mut open) = self.open.lock() {
            // A concurrent request may have opened one for the same rules too: keep the first.
            match open.get(&spec.id) {
                Some(managed) if managed.rules == rules => return Ok(managed.files.clone()),
                _ => {
                    open.insert(spec.id, Managed { files: files.clone(), rules, dirty: active });
                    return Ok(files);
                }
            }
        }
        Err(ApiError::new(500, "internal", "file manager registry poisoned"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompressBody {
    #[serde(default = "root")]
    root: String,
    files: Vec<String>,
    destination: String,
    #[serde(default)]
    format: Option<ArchiveFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecompressBody {
    file: String,
    #[serde(default = "root")]
    destination: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FromTo {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathBody {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChmodBody {
    path: String,
    mode: Mode,
}

/// A mode: `"755"`/`"0755"`/`"0o755"` (octal text) or a plain number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Mode {
    Number(u32),
    Octal(String),
}

impl Mode {
    fn bits(&self) -> Result<u32, ApiError> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Octal(text) => {
                let digits = text.trim_start_matches("0o");
                u32::from_str_radix(digits, 8)
                    .map_err(|_| ApiError::bad_request(format!("invalid octal mode `{text}`")))
            }
        }
    }
}

fn root() -> String {
    "/".into()
}

pub(super) fn routes(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    let who = || caller(Arc::clone(&state), true);
    let st = || with_state(Arc::clone(&state));
    let limit = state.max_json_body;

    let read =
        server_id().and(warp::path("files")).and(warp::path::tail()).and(warp::get()).and(who()).and(st()).and_then(
            |id: ServerId, tail: Tail, caller: Caller, state: Arc<ApiState>| async move {
                respond(get(&state, id, tail.as_str(), &caller).await)
            },
        );

    let write = server_id()
        .and(warp::path("files"))
        .and(warp::path::tail())
        .and(warp::put())
        .and(who())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(st())
        .and_then(put_route);

    let delete =
        server_id().and(warp::path("files")).and(warp::path::tail()).and(warp::delete()).and(who()).and(st()).and_then(
            |id: ServerId, tail: Tail, caller: Caller, state: Arc<ApiState>| async move {
                respond(
                    async {
                        require(&caller, id, Permission::FileWrite)?;
                        let path = decode(tail.as_str())?;
                        if path.trim_matches('/').is_empty() {
                            return Err(ApiError::bad_request("refusing to delete the server root"));
                        }
                        state.files.get(&state.agent, id).await?.delete(&path).await?;
                        Ok(no_content())
                    }
                    .await,
                )
            },
        );

    let op = server_id()
        .and(warp::path!("files" / String))
        .and(warp::post())
        .and(who())
        .and(json_content_type())
        .and(body(limit))
        .and(st())
        .and_then(|id: ServerId, op: String, caller: Caller, body: bytes::Bytes, state: Arc<ApiState>| async move {
            respond(operation(&state, id, &op, &caller, &body).await)
        });

    read.or(write).unify().or(delete).unify().or(op).unify().boxed()
}

async fn get(state: &ApiState, id: ServerId, tail: &str, caller: &Caller) -> Result<Response, ApiError> {
    require(caller, id, Permission::FileRead)?;
    let path = decode(tail)?;
    let files = state.files.get(&state.agent, id).await?;
    if path.trim_matches('/').is_empty() {
        return Ok(json(&files.list("/").await?, 200));
    }
    let entry = files.stat(&path).await?;
    if entry.kind == FileKind::Directory {
        return Ok(json(&files.list(&path).await?, 200));
    }
    let (entry, file) = files.open_read(&path).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let mut response = warp::reply::stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", warp::http::HeaderValue::from_static("application/octet-stream"));
    if let Ok(length) = warp::http::HeaderValue::from_str(&entry.size.to_string()) {
        headers.insert("content-length", length);
    }
    Ok(response)
}

/// A named function rather than a closure: the body stream's type cannot be written down.
async fn put_route<S, B>(
    id: ServerId,
    tail: Tail,
    caller: Caller,
    length: Option<u64>,
    body: S,
    state: Arc<ApiState>,
) -> Result<Response, std::convert::Infallible>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: bytes::Buf + Send,
{
    respond(put(&state, id, tail.as_str(), &caller, length, body).await)
}

async fn put<S, B>(
    state: &ApiState,
    id: ServerId,
    tail: &str,
    caller: &Caller,
    length: Option<u64>,
    body: S,
) -> Result<Response, ApiError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf + Send,
{
    require(caller, id, Permission::FileWrite)?;
    let path = decode(tail)?;
    let files = state.files.get(&state.agent, id).await?;
    let chunks =
        body.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining())).map_err(std::io::Error::other));
    let reader = tokio_util::io::StreamReader::new(chunks);
    let entry: FileEntry = files.write_stream(&path, reader, length).await?;
    Ok(json(&entry, 200))
}

/// A `POST files/<op>` request, parsed before anything is looked up (a malformed request is
/// `400` whether or not the server exists).
enum Operation {
    Compress(CompressBody),
    Decompress(DecompressBody),
    Rename(FromTo),
    Copy(FromTo),
    Mkdir(PathBody),
    Chmod(ChmodBody),
}

impl Operation {
    fn parse(op: &str, body: &[u8]) -> Result<Self, ApiError> {
        fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
        }
        Ok(match op {
            "compress" => Self::Compress(parse(body)?),
            "decompress" => Self::Decompress(parse(body)?),
            "rename" => Self::Rename(parse(body)?),
            "copy" => Self::Copy(parse(body)?),
            "mkdir" => Self::Mkdir(parse(body)?),
            "chmod" => Self::Chmod(parse(body)?),
            _ => return Err(ApiError::new(404, "not_found", format!("no file operation `{op}`"))),
        })
    }
}

async fn operation(
    state: &ApiState,
    id: ServerId,
    op: &str,
    caller: &Caller,
    body: &[u8],
) -> Result<Response, ApiError> {
    require(caller, id, Permission::FileWrite)?;
    let operation = Operation::parse(op, body)?;
    let files = state.files.get(&state.agent, id).await?;
    match operation {
        Operation::Compress(b) => {
            let format = b.format.or_else(|| ArchiveFormat::from_name(&b.destination)).unwrap_or(ArchiveFormat::TarGz);
            Ok(json(&files.compress(&b.root, &b.files, &b.destination, format).await?, 200))
        }
        Operation::Decompress(b) => Ok(json(&files.decompress(&b.file, &b.destination).await?, 200)),
        Operation::Rename(b) => {
            files.rename(&b.from, &b.to).await?;
            Ok(no_content())
        }
        Operation::Copy(b) => Ok(json(&files.copy(&b.from, &b.to).await?, 200)),
        Operation::Mkdir(b) => Ok(json(&files.mkdir(&b.path).await?, 200)),
        Operation::Chmod(b) => {
            files.chmod(&b.path, b.mode.bits()?).await?;
            Ok(no_content())
        }
    }
}

/// Percent-decodes the path tail (once; the file manager does the confining).
fn decode(tail: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(tail)
        .decode_utf8()
        .map(|p| p.into_owned())
        .map_err(|_| ApiError::new(400, "invalid_path", "the path is not UTF-8 after percent-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::Octal("755".into()).bits().unwrap(), 0o755);
        assert_eq!(Mode::Octal("0o644".into()).bits().unwrap(), 0o644);
        assert_eq!(Mode::Number(0o600).bits().unwrap(), 0o600);
        assert!(Mode::Octal("9".into()).bits().is_err());
    }

    #[test]
    fn decode_is_single_and_keeps_dots() {
        assert_eq!(decode("a%20b/%2e%2e/c").unwrap(), "a b/../c");
        assert_eq!(decode("%252e").unwrap(), "%2e");
    }

    /// A manager opened for one spec is not handed out for another spec of the same server
    /// (re-created with a new quota or denylist), whichever caller opens first.
    #[tokio::test]
    async fn a_new_spec_reopens_the_manager() {
        use nexus_core::model::{EggScript, ServerLimits, StopMethod};
        let dir = tempfile::tempdir().unwrap();
        let mut spec = nexus_core::transport::ServerSpec {
            id: ServerId::new(),
            image: "nexus-test/busybox:latest".into(),
            startup: "./run".into(),
            environment: Default::default(),
            limits: ServerLimits { memory_mb: 512, disk_mb: 1, ..ServerLimits::default() },
            allocations: vec![],
            done: vec![],
            stop: StopMethod::Command("stop".into()),
            config_files: vec![],
            install: EggScript { script: String::new(), container: String::new(), entrypoint: "ash".into() },
            file_denylist: vec![],
            suspended: false,
            location: None,
            allocation_limit: None,
            templates: Vec::new(),
        };
        let managers = FileManagers::new(None);
        let small = managers.open_for(&spec, dir.path(), false).await.unwrap();
        small.write("big.bin", vec![1u8; 2 << 20]).await.unwrap_err();

        spec.limits.disk_mb = 16;
        spec.file_denylist = vec!["*.jar".into()];
        let large = managers.open_for(&spec, dir.path(), false).await.unwrap();
        large.write("big.bin", vec![1u8; 2 << 20]).await.unwrap();
        large.write("server.jar", vec![1u8; 10]).await.unwrap_err();
        let again = managers.open_for(&spec, dir.path(), false).await.unwrap();
        again.write("server.jar", vec![1u8; 10]).await.unwrap_err();
    }
}

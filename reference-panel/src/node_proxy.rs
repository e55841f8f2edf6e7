//! Requests the panel forwards to a server's node on a user's behalf (files, resources):
//! the panel has checked the user's permission; the node gets its own token, never the
//! user's credentials.
//!
//! Unlike [`NodeTransport`](nexus_core::transport::NodeTransport) commands these may stream
//! (a download, an upload) or take long (extracting an archive), so each call says how long
//! it may take ([`Deadline`]): a quick read has a short deadline, a file operation a long
//! one, and a transfer none as a whole but [`IDLE_TIMEOUT`] between two chunks, so a stalled
//! transfer fails and a slow but moving one does not.

use crate::node_client::HttpNodeTransport;
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use nexus_core::ids::{NodeId, ServerId};
use nexus_wire::ErrorBody;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warp::http::Method;

/// How long the node may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transfer may stall between two chunks, either way.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a forwarded call may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deadline {
    /// A listing, a small read: 30 s.
    Quick,
    /// A file operation that may walk many files (compress, extract, copy, delete): 15 min.
    Operation,
    /// A transfer: no deadline for the whole, [`IDLE_TIMEOUT`] between chunks (the caller
    /// wraps the streams with [`idle_limited`]).
    Transfer,
}

impl Deadline {
    fn total(self) -> Option<Duration> {
        match self {
            Self::Quick => Some(Duration::from_secs(30)),
            Self::Operation => Some(Duration::from_secs(15 * 60)),
            Self::Transfer => None,
        }
    }
}

/// When a forwarded call last moved (a chunk sent), for its watchdog.
struct Progress {
    start: std::time::Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self { start: std::time::Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// `stream`, failing with `TimedOut` when no chunk comes for `idle`.
pub fn idle_limited<S, T>(stream: S, idle: Duration) -> impl Stream<Item = Result<T, std::io::Error>> + Send + Unpin
where
    S: Stream<Item = Result<T, std::io::Error>> + Send + Unpin + 'static,
    T: Send + 'static,
{
    Box::pin(futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the transfer stalled")), None)),
        }
    }))
}

/// Largest error body read from a node.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Why a forwarded request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The node could not be reached, or stopped answering.
    #[error("the server's node does not answer: {0}")]
    Unreachable(String),
    /// The node refused: its status and typed error (a path outside the root, a full disk).
    #[error("{code}: {message}")]
    Refused {
        /// The node's HTTP status.
        status: u16,
        /// The node's error code (`outside_root`, `quota_exceeded`, ...).
        code: String,
        /// Its words.
        message: String,
    },
}

/// A request body: none, JSON, or a stream of bytes of a known or unknown length.
pub enum ProxyBody {
    /// No body.
    Empty,
    /// A JSON document.
    Json(serde_json::Value),
    /// Bytes as they come (an upload), with the length when the client declared it.
    Stream(Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin>, Option<u64>),
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Json(v) => f.debug_tuple("Json").field(v).finish(),
            Self::Stream(_, length) => f.debug_tuple("Stream").field(length).finish(),
        }
    }
}

/// The client for forwarded requests (built once, beside the command transport).
pub(crate) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("nexus-panel/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The path of `server`'s file or directory `path` on its node: the user's path is one
/// percent-encoded segment, slashes included (the node decodes it once and confines the
/// result to the server's root). Were its slashes left as they are, a URL parser would fold
/// `..` segments before the node saw them, and `../../<other server>/files/x` would name
/// another server's file with the node's all-servers token.
pub fn file_path(server: ServerId, path: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(path.trim_start_matches('/'), SEGMENT).to_string();
    nexus_wire::api::paths::file(server, &encoded)
}

/// `base` + `path` as a URL whose path is exactly `path`: a URL parser folding dot segments
/// (`%2e%2e` counts as `..`) would aim the node's token at another route, so such a path is
/// refused.
fn exact_url(base: &str, path: &str) -> Result<reqwest::Url, ProxyError> {
    let url = reqwest::Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| ProxyError::Unreachable(format!("node URL: {e}")))?;
    let built = path.split('?').next().unwrap_or_default();
    if !url.path().ends_with(built) {
        return Err(ProxyError::Refused {
            status: 400,
            code: "invalid_path".into(),
            message: "this path cannot be used".into(),
        });
    }
    Ok(url)
}

impl HttpNodeTransport {
    /// Sends `method path` with `body` to `node` with its token; a 2xx answer is returned
    /// unread (the caller streams or parses it), anything else becomes a [`ProxyError`].
    pub async fn forward(
        &self,
        node: NodeId,
        method: Method,
        path: &str,
        body: ProxyBody,
        deadline: Deadline,
    ) -> Result<reqwest::Response, ProxyError> {
        let endpoint = self.endpoint(node).map_err(|e| ProxyError::Unreachable(e.to_string()))?;
        let url = exact_url(&endpoint.base_url, path)?;
        let mut request = self.streaming.request(method, url).bearer_auth(&endpoint.token);
        let progress = Arc::new(Progress::new());
        if let Some(total) = deadline.total() {
            request = request.timeout(total);
        }
        request = match body {
            ProxyBody::Empty => request,
            ProxyBody::Json(value) => request.json(&value),
            ProxyBody::Stream(stream, length) => {
                let progress = Arc::clone(&progress);
                let watched = idle_limited(stream, IDLE_TIMEOUT).inspect(move |_| progress.touch());
                let request = request.body(reqwest::Body::wrap_stream(watched));
                match length {
                    Some(length) => request.header("content-length", length),
                    None => request,
                }
            }
        };
        // Without a deadline for the whole, the answer's head must come within the idle limit
        // of the last chunk sent (of the start, for a download): a node that takes the
        // connection and goes silent does not hold the request forever.
        let sending = request.send();
        tokio::pin!(sending);
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        let watched = deadline.total().is_none();
        let mut response = loop {
            tokio::select! {
                sent = &mut sending => break sent.map_err(|e| ProxyError::Unreachable(e.to_string()))?,
                _ = watch.tick(), if watched => {
                    if progress.idle() > IDLE_TIMEOUT {
                        return Err(ProxyError::Unreachable("the node stopped answering".into()));
                    }
                }
            }
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
            if body.len() + chunk.len() > MAX_ERROR_BYTES {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => ProxyError::Refused { status, code: error.error.code, message: error.error.message },
            Err(_) => ProxyError::Refused {
                status,
                code: "node_error".into(),
                message: String::from_utf8_lossy(&body).chars().take(256).collect(),
            },
        })
    }

    /// [`forward`](Self::forward), then the answer parsed as JSON `T` (at most
    /// [`MAX_ANSWER_BYTES`](crate::node_client::MAX_ANSWER_BYTES)).
    pub async fn forward_json<T: serde::de::DeserializeOwned>(
        &self,
        node: NodeId,
        method: Method,
        path: &str,
        body: ProxyBody,
        deadline: Deadline,
    ) -> Result<T, ProxyError> {
        let mut response = self.forward(node, method, path, body, deadline).await?;
        read_json(&mut response).await
    }
}

/// A forwarded call's answer parsed as JSON `T`: at most
/// [`MAX_ANSWER_BYTES`](crate::node_client::MAX_ANSWER_BYTES), read within [`IDLE_TIMEOUT`].
pub async fn read_json<T: serde::de::DeserializeOwned>(response: &mut reqwest::Response) -> Result<T, ProxyError> {
    let reading = crate::node_client::read_limited(response, crate::node_client::MAX_ANSWER_BYTES);
    let body = tokio::time::timeout(IDLE_TIMEOUT, reading)
        .await
        .map_err(|_| ProxyError::Unreachable("the node stopped answering".into()))?
        .map_err(ProxyError::Unreachable)?;
    serde_json::from_slice(&body).map_err(|e| ProxyError::Unreachable(format!("the node's answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_transfer_fails_and_a_moving_one_does_not() {
        let slow = futures::stream::iter(0..3).then(|i| async move {
            tokio::time::sleep(IDLE_TIMEOUT / 2).await;
            Ok::<_, std::io::Error>(i)
        });
        let items: Vec<_> = idle_limited(Box::pin(slow), IDLE_TIMEOUT).collect().await;
        assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 3, "slow but moving: {items:?}");
        let stalled = futures::stream::iter(0..2).then(|i| async move {
            tokio::time::sleep(IDLE_TIMEOUT * i * 2).await;
            Ok::<_, std::io::Error>(i)
        });
        let items: Vec<_> = idle_limited(Box::pin(stalled), IDLE_TIMEOUT).collect().await;
        assert!(matches!(&items[..], [Ok(0), Err(e)] if e.kind() == std::io::ErrorKind::TimedOut), "{items:?}");
    }

    #[test]
    fn a_file_path_is_one_encoded_segment() {
        let id = ServerId::new();
        let base = nexus_wire::api::paths::file(id, "");
        assert_eq!(file_path(id, "/a b/c%d?e#f"), format!("{base}a%20b%2Fc%25d%3Fe%23f"));
        assert_eq!(file_path(id, "plugins/x.jar"), format!("{base}plugins%2Fx%2Ejar"));
        assert_eq!(file_path(id, "ünï"), format!("{base}%C3%BCn%C3%AF"));
        // A user's path is one segment of the node's route, or refused; never another route.
        let other = ServerId::new();
        for hostile in ["..", "../..", &format!("../../{other}/files/x"), "%2e%2e", ".", "a/./b", "/..", "%2E"] {
            let built = file_path(id, hostile);
            match exact_url("http://node:1", &built) {
                Ok(url) => {
                    assert!(url.path().starts_with(&base), "{hostile}: {url}");
                    assert_eq!(url.path().matches('/').count(), base.matches('/').count(), "{hostile}: {url}");
                }
                Err(ProxyError::Refused { code, .. }) => {
                    assert_eq!(code, "invalid_path");
                    assert!(["..", ".", "/..", "%2E"].contains(&hostile) || hostile == "%2e%2e", "{hostile}");
                }
                Err(e) => panic!("{hostile}: {e}"),
            }
        }
    }
}

//! Requests the panel forwards to a server's node on a user's behalf (files, resources):
//! the panel has checked the user's permission; the node gets its own token, never the
//! user's credentials.
//!
//! Unlike [`NodeTransport`](nexus_core::transport::NodeTransport) commands these may stream
//! (a download, an upload), so they have no overall deadline, only a connect deadline and a
//! deadline between two reads: a node that stops answering mid-stream fails the request, a
//! slow but moving transfer does not.

use crate::node_client::HttpNodeTransport;
use bytes::Bytes;
use futures::Stream;
use nexus_core::ids::{NodeId, ServerId};
use nexus_wire::ErrorBody;
use warp::http::Method;

/// How long the node may take to accept the connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the node may stay silent in the middle of an answer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
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
        .read_timeout(READ_TIMEOUT)
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
    ) -> Result<reqwest::Response, ProxyError> {
        let endpoint = self.endpoint(node).map_err(|e| ProxyError::Unreachable(e.to_string()))?;
        let url = exact_url(&endpoint.base_url, path)?;
        let mut request = self.streaming.request(method, url).bearer_auth(&endpoint.token);
        request = match body {
            ProxyBody::Empty => request,
            ProxyBody::Json(value) => request.json(&value),
            ProxyBody::Stream(stream, length) => {
                let request = request.body(reqwest::Body::wrap_stream(stream));
                match length {
                    Some(length) => request.header("content-length", length),
                    None => request,
                }
            }
        };
        let mut response = request.send().await.map_err(|e| ProxyError::Unreachable(e.to_string()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
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
    ) -> Result<T, ProxyError> {
        let mut response = self.forward(node, method, path, body).await?;
        let body = crate::node_client::read_limited(&mut response, crate::node_client::MAX_ANSWER_BYTES)
            .await
            .map_err(ProxyError::Unreachable)?;
        serde_json::from_slice(&body).map_err(|e| ProxyError::Unreachable(format!("the node's answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_are_encoded_per_segment() {
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

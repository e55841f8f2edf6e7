//! Direct libpod REST calls over the unix socket (hyper 1), for the four requests podman-api
//! gets wrong against Podman 4.3:
//!
//! * **create**: podman-api 0.11 spells `no_new_privileges` wrong, so libpod would never see
//!   it; [`Libpod::post_json`] sends the finished `SpecGenerator` JSON.
//!
//! * **attach**: podman-api's `Multiplexer` panics on a frame whose stream byte it does not
//!   know, ends the stream silently on a short read, inspects the container first, and hands
//!   out a `futures::io` writer; [`Libpod::upgrade`] gives the raw upgraded connection, which
//!   `console.rs` frames itself.
//! * **wait**: podman-api's `wait` returns `()`, dropping the exit code libpod sends as the
//!   response body; [`Libpod::post_text`] keeps it.
//! * **stats**: podman-api's stream parses every HTTP chunk as whole JSON values (a sample
//!   split across chunks is an error) and borrows its container handle, so it cannot outlive
//!   the call; [`Libpod::get_stream`] yields the body, split into lines by `stats.rs`.
//!
//! Each request opens its own connection (as podman-api does): attach and streams hold it
//! for their lifetime, and unix-socket connects are cheap.

use crate::error::{About, body_message, io_error, status_error};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nexus_core::runtime::RuntimeError;
use std::path::{Path, PathBuf};

/// An upgraded (hijacked) connection: raw bytes both ways.
pub(crate) type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// The libpod API on one unix socket.
#[derive(Clone, Debug)]
pub(crate) struct Libpod {
    socket: PathBuf,
    /// `/v<api version>/libpod`, the same version podman-api speaks.
    prefix: String,
}

impl Libpod {
    /// The API at `socket`.
    pub(crate) fn new(socket: &Path) -> Self {
        Self { socket: socket.to_path_buf(), prefix: format!("/v{}/libpod", podman_api::LATEST_API_VERSION) }
    }

    /// `POST path` asking for a connection upgrade (libpod's attach); the raw connection once
    /// the engine switched protocols.
    pub(crate) async fn upgrade(&self, path: &str, about: About<'_>) -> Result<Upgraded, RuntimeError> {
        let request = self
            .request(Method::POST, path)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "tcp")
            .body(Full::default())
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let response = self.send(request, about).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(RuntimeError::Engine(format!("{path}: expected a protocol switch, got {}", response.status())));
        }
        let upgraded = hyper::upgrade::on(response).await.map_err(|e| RuntimeError::Engine(format!("{path}: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }

    /// `POST path`; the response body as text.
    pub(crate) async fn post_text(&self, path: &str, about: About<'_>) -> Result<String, RuntimeError> {
        let request =
            self.request(Method::POST, path).body(Full::default()).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let response = self.send(request, about).await?;
        let body = response.into_body().collect().await.map_err(|e| body_error(path, e))?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST path` with a JSON body; the response body parsed as JSON.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        about: About<'_>,
    ) -> Result<serde_json::Value, RuntimeError> {
        let request = self
            .request(Method::POST, path)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let response = self.send(request, about).await?;
        let body = response.into_body().collect().await.map_err(|e| body_error(path, e))?.to_bytes();
        serde_json::from_slice(&body).map_err(|e| RuntimeError::Engine(format!("{path}: unexpected answer: {e}")))
    }

    /// `GET path`; the response body, to be read as it streams.
    pub(crate) async fn get_stream(&self, path: &str, about: About<'_>) -> Result<Incoming, RuntimeError> {
        let request =
            self.request(Method::GET, path).body(Full::default()).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Ok(self.send(request, about).await?.into_body())
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        // The host is required by HTTP/1.1 and ignored by the engine.
        Request::builder().method(method).uri(format!("{}{path}", self.prefix)).header(HOST, "podman")
    }

    /// Sends `request` on a fresh connection; an error status becomes a [`RuntimeError`].
    async fn send(&self, request: Request<Full<Bytes>>, about: About<'_>) -> Result<Response<Incoming>, RuntimeError> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| match io_error(e) {
            RuntimeError::Unavailable(m) | RuntimeError::Engine(m) => {
                RuntimeError::Unavailable(format!("{}: {m}", self.socket.display()))
            }
            other => other,
        })?;
        let (mut sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        // Drives the connection (and hands it over on an upgrade) until the response and its
        // body are done or dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "libpod connection ended with an error");
            }
        });
        let path = request.uri().path().to_owned();
        let response = sender.send_request(request).await.map_err(|e| RuntimeError::Engine(format!("{path}: {e}")))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let body = response.into_body().collect().await.map_err(|e| body_error(&path, e))?.to_bytes();
        Err(status_error(status.as_u16(), &body_message(&body), about))
    }
}

fn body_error(path: &str, error: hyper::Error) -> RuntimeError {
    RuntimeError::Engine(format!("{path}: reading the response: {error}"))
}

//! `POST /api/remote/events`: what nodes send the panel (heartbeats, lifecycle events), as
//! [`EventEnvelope`]s with `Authorization: Bearer <node token>`.
//!
//! The body is bounded ([`MAX_EVENT_BYTES`]); the token must be the token of the node the
//! envelope names (checked in constant time against the stored hash), else `401`; the message
//! goes to [`ControlPlane::ingest`], which applies it idempotently. Answers: `204` once
//! handled (also for a message the control plane ignored: the node must not retry it), a
//! typed [`ErrorBody`] otherwise: `401` for a wrong token, `400` for a body that is not an
//! envelope, `503` when the message could not be applied now (the node retries).

use bytes::Bytes;
use nexus_control::ControlPlane;
use nexus_wire::{ErrorBody, EventEnvelope};
use std::sync::Arc;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// Largest event body accepted (a heartbeat of a node with thousands of servers).
pub const MAX_EVENT_BYTES: u64 = 1 << 20;

/// The route, for mounting into the panel's router.
pub fn route(control: Arc<ControlPlane>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "remote" / "events")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(MAX_EVENT_BYTES))
        .and(warp::body::bytes())
        .and_then(move |authorization: Option<String>, body: Bytes| {
            let control = Arc::clone(&control);
            async move { Ok::<_, std::convert::Infallible>(handle(control, authorization.as_deref(), &body).await) }
        })
        .boxed()
}

async fn handle(control: Arc<ControlPlane>, authorization: Option<&str>, body: &[u8]) -> Response {
    let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing node token");
    };
    let envelope: EventEnvelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &format!("invalid event: {e}")),
    };
    match control.node_token_matches(envelope.node, token).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::UNAUTHORIZED, "unauthorized", "not this node's token"),
        Err(e) => return control_error(&e),
    }
    let node = envelope.node;
    // On a task of its own: a node that gives up on the request (a timeout, a restart) must
    // not cancel what follows the write its message may already be part of (the
    // reconciliation of a node back from silence, the start after an install).
    let ingested = tokio::spawn(async move {
        let outcome = control.ingest(node, envelope.message).await;
        if let Ok(nexus_control::ingest::Ingested::Transitioned(server)) = &outcome
            && control.take_start_after_install(server)
        {
            // Not awaited: the node is waiting on this request's answer.
            let id = server.id;
            tokio::spawn(async move {
                if let Err(e) = control.power(id, nexus_core::transport::PowerAction::Start).await {
                    tracing::warn!(server = %id, error = %e, "starting a server after its install");
                }
            });
        }
        outcome
    });
    match ingested.await {
        Ok(Ok(outcome)) => {
            tracing::debug!(%node, ?outcome, "node message");
            StatusCode::NO_CONTENT.into_response()
        }
        // The store failed or the server kept changing: the node delivers it again.
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e.to_string()),
        Err(e) => {
            tracing::error!(%node, error = %e, "ingesting a node message failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "ingesting the message failed")
        }
    }
}

fn control_error(e: &nexus_control::ControlError) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, if status.is_server_error() { "internal" } else { "rejected" }, &e.to_string())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_string(&ErrorBody::new(code, message)).unwrap_or_default();
    let mut response = warp::reply::with_header(body, "content-type", "application/json").into_response();
    *response.status_mut() = status;
    response
}

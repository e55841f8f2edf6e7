//! `GET /api/servers/:id/console`: the console WebSocket.
//!
//! On connect the client gets the replay (the last lines, as the agent keeps them), then every
//! live [`ConsoleEvent`] (console lines, stats, state changes, notices, install output), one
//! JSON text message each, serialized as the agent's `ConsoleEvent`. Install output (which
//! echoes secrets) reaches only callers with `install_read` (the node token has it; browser
//! tokens only when the panel grants it, as Wings' `admin.websocket.install`). The client may send
//! `{"type":"command","line":"say hi"}` (needs `console_write`); a refused or failed command
//! answers `{"type":"error","error":{"code":...,"message":...}}` on the socket, which stays
//! open. Commands are rate-limited per server (see [`super::limit`]): past the limit the
//! answer is an error with code `rate_limited`.
//!
//! **Caps.** Consoles per server, per browser token and per node are capped
//! ([`ConsoleSlots`](super::console_slots::ConsoleSlots)); over a cap the upgrade is refused
//! with `429 too_many_consoles`. Each event is serialized once for all clients
//! ([`SharedEvent`]).
//!
//! **A slow client never blocks anyone.** Each socket has its own receiver on the agent's
//! broadcast channel; the channel never waits for receivers. A client that cannot keep up
//! falls behind by more than the channel holds, loses the oldest events and is told how many
//! with a `notice` event; other clients and the server are unaffected. A client that stops
//! reading altogether is disconnected once any write to it (replay, event, ping, error, close)
//! has waited [`SLOW_CLIENT_DEADLINE`]. Events are written in batches (whatever is ready, then
//! one flush) so a fast console costs one syscall per batch, not per line.

use super::console_slots::ConsoleSlot;
use super::request::server_id;
use super::{ApiError, ApiState, caller, require, with_state};
use crate::auth::Caller;
use futures::{SinkExt as _, StreamExt as _};
use nexus_agent::{ConsoleEvent, SharedEvent, lagged_notice};
use nexus_core::ids::ServerId;
use nexus_core::model::Permission;
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::reply::{Reply, Response};

/// Events written before one flush.
const BATCH: usize = 256;

/// How often a console socket is pinged.
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a flush to one client may take before the client is dropped as not reading.
pub const SLOW_CLIENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest message a client may send (a command line).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

use nexus_wire::api::ConsoleClientMessage as ClientMessage;

pub(super) fn route(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    server_id()
        .and(warp::path!("console"))
        .and(warp::get())
        .and(caller(Arc::clone(&state), true))
        .and(warp::ws())
        .and(with_state(state))
        .and_then(|server: ServerId, caller: Caller, ws: Ws, state: Arc<ApiState>| async move {
            if let Err(e) = require(&caller, server, Permission::ConsoleRead) {
                return Ok::<_, std::convert::Infallible>(e.into_response());
            }
            // Fail before the upgrade when the server does not exist: a typed 404, not a socket
            // that closes at once.
            if state.agent.state(server).is_none() {
                return Ok(ApiError::new(404, "unknown_server", format!("unknown server {server}")).into_response());
            }
            let slot = match state.consoles.take(&caller, server) {
                Ok(slot) => slot,
                Err(e) => return Ok(e.into_response()),
            };
            Ok(ws
                .max_message_size(MAX_CLIENT_MESSAGE)
                .max_frame_size(MAX_CLIENT_MESSAGE)
                .on_upgrade(move |socket| session(socket, state, server, caller, slot))
                .into_response())
        })
        .boxed()
}

async fn session(socket: WebSocket, state: Arc<ApiState>, server: ServerId, caller: Caller, slot: ConsoleSlot) {
    // Held for the life of the socket: the slot comes back when this returns.
    let _slot = slot;
    let (mut tx, mut rx) = socket.split();
    let subscription = match state.agent.console(server).await {
        Ok(subscription) => subscription,
        Err(e) => {
            write(tx.send(error_message(&ApiError::from(e)))).await;
            write(tx.close()).await;
            return;
        }
    };
    let may_write = caller.may(server, Permission::ConsoleWrite);
    let may_see_install = caller.may(server, Permission::InstallRead);
    let visible = |event: &ConsoleEvent| may_see_install || !matches!(event, ConsoleEvent::Install(_));
    // A browser token is checked at the upgrade only; without this deadline a socket opened
    // with a 15-minute token would keep streaming (and accepting commands) for as long as it
    // stays open, after the panel has stopped minting tokens for that user.
    let expires_at = match &caller {
        Caller::Node => None,
        Caller::Browser(claims) => Some(
            tokio::time::Instant::now()
                + std::time::Duration::from_secs(claims.expires.saturating_sub(crate::auth::unix_now())),
        ),
    };
    tracing::debug!(%server, may_write, replay = subscription.replay.len(), "console client connected");
    for event in subscription.replay.iter().filter(|e| visible(e)) {
        if !write(tx.feed(event_message(event))).await {
            return;
        }
    }
    if !write(tx.flush()).await {
        return;
    }
    let mut live = subscription.live;
    // Pings keep a quiet console (a stopped server) from being closed as idle by the listener,
    // and make a vanished peer fail a write.
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if !write(tx.send(Message::ping(Vec::new()))).await {
                    break;
                }
            }
            () = token_expiry(expires_at) => {
                let expired = ApiError::new(401, "token_expired", "the console token expired; reconnect with a fresh token");
                write(tx.send(error_message(&expired))).await;
                break;
            }
            received = live.recv() => {
                let first = match received {
                    Ok(event) if !visible(event.event()) => continue,
                    Ok(event) => shared_message(&event),
                    Err(RecvError::Lagged(skipped)) => lagged(skipped),
                    Err(RecvError::Closed) => break,
                };
                if !write(tx.feed(first)).await {
                    break;
                }
                // Whatever else is ready goes in the same flush.
                let mut closed = false;
                for _ in 1..BATCH {
                    let message = match live.try_recv() {
                        Ok(event) if !visible(event.event()) => continue,
                        Ok(event) => shared_message(&event),
                        Err(TryRecvError::Lagged(skipped)) => lagged(skipped),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => {
                            closed = true;
                            break;
                        }
                    };
                    if !write(tx.feed(message)).await {
                        return;
                    }
                }
                if !write(tx.flush()).await || closed {
                    break;
                }
            }
            incoming = rx.next() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(_)) | None => break,
                };
                if message.is_close() {
                    break;
                }
                if !message.is_text() {
                    continue;
                }
                if let Some(reply) = handle_client(&state, server, &caller, may_write, message.as_bytes()).await {
                    if !write(tx.send(error_message(&reply))).await {
                        break;
                    }
                }
            }
        }
    }
    write(tx.close()).await;
    tracing::debug!(%server, "console client disconnected");
}

/// One write to the client (a message fed or sent, a flush, the close), bounded by
/// [`SLOW_CLIENT_DEADLINE`]: any write may wait for the client to read (a feed flushes when
/// the socket's buffer is full), and a client that does not read must stall only its own
/// session, never for longer than the deadline. False when the write failed or timed out:
/// the session ends.
pub(super) async fn write(write: impl std::future::Future<Output = Result<(), warp::Error>>) -> bool {
    match tokio::time::timeout(SLOW_CLIENT_DEADLINE, write).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::debug!("console client not reading; dropped");
            false
        }
    }
}

/// Carries out one client message; returns the error to send back, if any.
async fn handle_client(
    state: &ApiState,
    server: ServerId,
    caller: &Caller,
    may_write: bool,
    text: &[u8],
) -> Option<ApiError> {
    let line = match serde_json::from_slice::<ClientMessage>(text) {
        Ok(ClientMessage::Command { line }) => line,
        Ok(other) => return Some(ApiError::bad_request(format!("unsupported message: {other:?}"))),
        Err(e) => return Some(ApiError::bad_request(format!("invalid message: {e}"))),
    };
    if !may_write {
        return Some(ApiError::forbidden("this token does not grant console_write"));
    }
    super::servers::send_command(state, server, caller, &line).await.err()
}

fn shared_message(event: &SharedEvent) -> Message {
    Message::text(&*event.json())
}

fn event_message(event: &ConsoleEvent) -> Message {
    match serde_json::to_string(event) {
        Ok(json) => Message::text(json),
        Err(e) => error_message(&ApiError::new(500, "internal", format!("unserializable event: {e}"))),
    }
}

/// `{"type":"error","error":{"code":...,"message":...}}`.
/// Completes when the caller's token expires; never for the node token.
async fn token_expiry(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn error_message(error: &ApiError) -> Message {
    let value = serde_json::json!({ "type": "error", "error": { "code": error.code, "message": error.message } });
    Message::text(value.to_string())
}

fn lagged(skipped: u64) -> Message {
    tracing::debug!(skipped, "console client lagging; events skipped");
    event_message(&lagged_notice(skipped))
}

//! `GET /api/servers/:id/ws`: the console in Pterodactyl Wings' protocol, for console clients
//! written for Pterodactyl (its panel's console, bots, client libraries). The same console as
//! [`console`](super::console), the same tokens (the panel's `websocket` route hands them
//! out), the same caps; only the framing differs.
//!
//! Messages are `{"event": name, "args": [text, ...]}` both ways:
//!
//! * The socket opens without credentials; the first message must be `auth` with the token
//!   (within [`AUTH_DEADLINE`], else the socket closes). The answer is `auth success`, then
//!   the server's `status`. A later `auth` replaces the token (a fresh one before the old
//!   expires). A wrong token answers `jwt error`.
//! * From the client: `send command` (needs `console_write`), `set state` with `start`,
//!   `stop`, `restart` or `kill` (needs `power`), `send logs` (the recent lines, as `console
//!   output`), `send stats`. As Wings, a message the token does not allow is ignored and an
//!   unknown event is ignored; a failed action answers `daemon error`.
//! * To the client: `console output` (a line), `status` (`offline`, `starting`, `running`,
//!   `stopping`), `stats` (a JSON text: `memory_bytes`, `memory_limit_bytes`,
//!   `cpu_absolute`, `network.rx_bytes`/`tx_bytes`, `uptime`, `state`, `disk_bytes`),
//!   `daemon message` (the agent's notices), `install output` (with `install_read` only),
//!   `token expiring` a minute before the token ends, `token expired` when it does (events
//!   stop until the next `auth`; without one within [`EXPIRED_GRACE`] the socket closes).
//!   `send logs` is answered at most once a second.
//!
//! Writes share the console's bounds: a client that stops reading is dropped after
//! [`SLOW_CLIENT_DEADLINE`](super::console::SLOW_CLIENT_DEADLINE); one that falls behind
//! loses the oldest events and is told so.

use super::console::{PING_INTERVAL, write};
use super::request::server_id;
use super::{ApiState, authenticate, with_state};
use crate::auth::{Caller, unix_now};
use futures::{SinkExt as _, StreamExt as _};
use nexus_agent::{ConsoleEvent, lagged_notice};
use nexus_core::ids::ServerId;
use nexus_core::lifecycle::ServerState;
use nexus_core::model::Permission;
use nexus_core::runtime::ResourceStats;
use nexus_core::transport::PowerAction;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::reply::{Reply, Response};

/// How long a new socket may take to send `auth`.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(10);
/// How long before its end a token is reported `token expiring` (Wings' minute).
pub const EXPIRING_NOTICE: Duration = Duration::from_secs(60);
/// How long a socket whose token ended may stay open waiting for a fresh one: past it the
/// socket closes and gives its console slot back (a removed subuser's sockets must not keep
/// the server's consoles full).
pub const EXPIRED_GRACE: Duration = Duration::from_secs(10);
/// How often `send logs` is answered; more frequent requests are ignored.
const LOGS_INTERVAL: Duration = Duration::from_secs(1);
/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// A message from the client. `args` entries may be `null` (Pterodactyl's console sends
/// `[null]` for events without a payload).
#[derive(Deserialize)]
struct Inbound {
    event: String,
    #[serde(default)]
    args: Vec<Option<String>>,
}

impl Inbound {
    /// The arguments joined, as Wings reads them.
    fn arg(&self) -> String {
        self.args.iter().flatten().map(String::as_str).collect()
    }
}

fn event(name: &str, args: &[&str]) -> Message {
    Message::text(json!({ "event": name, "args": args }).to_string())
}

pub(super) fn route(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    server_id()
        .and(warp::path!("ws"))
        .and(warp::get())
        .and(warp::ws())
        .and(with_state(state))
        .and_then(|server: ServerId, ws: Ws, state: Arc<ApiState>| async move {
            if state.agent.state(server).is_none() {
                let e = super::ApiError::new(404, "unknown_server", format!("unknown server {server}"));
                return Ok::<_, std::convert::Infallible>(e.into_response());
            }
            Ok(ws
                .max_message_size(MAX_CLIENT_MESSAGE)
                .max_frame_size(MAX_CLIENT_MESSAGE)
                .on_upgrade(move |socket| session(socket, state, server))
                .into_response())
        })
        .boxed()
}

/// The caller a token names, if it is valid for `server`.
fn check_token(state: &ApiState, server: ServerId, token: &str) -> Result<Caller, &'static str> {
    match authenticate(state, token.trim(), true) {
        Ok(caller) if caller.may(server, Permission::ConsoleRead) => Ok(caller),
        Ok(_) => Err("jwt: missing connect permission"),
        Err(_) => Err("jwt: invalid token"),
    }
}

/// When `caller`'s token ends; never for the node token.
fn expiry(caller: &Caller) -> Option<Instant> {
    match caller {
        Caller::Node => None,
        Caller::Browser(claims) => {
            Some(Instant::now() + Duration::from_secs(claims.expires.saturating_sub(unix_now())))
        }
    }
}

async fn session(socket: WebSocket, state: Arc<ApiState>, server: ServerId) {
    let (mut tx, mut rx) = socket.split();
    let first = tokio::time::timeout(AUTH_DEADLINE, async {
        while let Some(Ok(message)) = rx.next().await {
            if let Ok(text) = message.to_str()
                && let Ok(inbound) = serde_json::from_str::<Inbound>(text)
                && inbound.event == "auth"
            {
                return Some(inbound.arg());
            }
        }
        None
    })
    .await;
    let Ok(Some(token)) = first else {
        write(tx.close()).await;
        return;
    };
    let mut caller = match check_token(&state, server, &token) {
        Ok(caller) => caller,
        Err(reason) => {
            write(tx.send(event("jwt error", &[reason]))).await;
            write(tx.close()).await;
            return;
        }
    };
    let slot = match state.consoles.take(&caller, server) {
        Ok(slot) => slot,
        Err(e) => {
            write(tx.send(event("daemon error", &[&e.message]))).await;
            write(tx.close()).await;
            return;
        }
    };
    // Held for the life of the socket.
    let _slot = slot;
    let mut live = match state.agent.console(server).await {
        Ok(subscription) => subscription.live,
        Err(e) => {
            write(tx.send(event("daemon error", &[&e.to_string()]))).await;
            write(tx.close()).await;
            return;
        }
    };
    if !write(tx.send(event("auth success", &[]))).await || !write(tx.send(status(&state, server))).await {
        return;
    }
    let mut expires_at = expiry(&caller);
    let mut logs_sent: Option<Instant> = None;
    let mut warned = false;
    let mut expired = false;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        let notice_at = expires_at.map(|at| at.checked_sub(EXPIRING_NOTICE).unwrap_or(at));
        tokio::select! {
            _ = ping.tick() => {
                if !write(tx.send(Message::ping(Vec::new()))).await {
                    break;
                }
            }
            () = at(notice_at), if !warned && !expired => {
                warned = true;
                if !write(tx.send(event("token expiring", &[]))).await {
                    break;
                }
            }
            () = at(expires_at), if !expired => {
                expired = true;
                if !write(tx.send(event("token expired", &[]))).await {
                    break;
                }
            }
            () = at(expires_at.map(|at| at + EXPIRED_GRACE)), if expired => {
                break;
            }
            received = live.recv(), if !expired => {
                let translated = match received {
                    Ok(shared) => translate(&state, server, &caller, shared.event()),
                    Err(RecvError::Lagged(skipped)) => translate(&state, server, &caller, &lagged_notice(skipped)),
                    Err(RecvError::Closed) => break,
                };
                if let Some(message) = translated
                    && !write(tx.send(message)).await
                {
                    break;
                }
            }
            incoming = rx.next() => {
                let Some(Ok(message)) = incoming else { break };
                if message.is_close() {
                    break;
                }
                let Some(inbound) = message.to_str().ok().and_then(|t| serde_json::from_str::<Inbound>(t).ok()) else {
                    continue;
                };
                if inbound.event == "auth" {
                    match check_token(&state, server, &inbound.arg()) {
                        Ok(fresh) => {
                            caller = fresh;
                            expires_at = expiry(&caller);
                            (warned, expired) = (false, false);
                            if !write(tx.send(event("auth success", &[]))).await {
                                break;
                            }
                        }
                        Err(reason) => {
                            if !write(tx.send(event("jwt error", &[reason]))).await {
                                break;
                            }
                        }
                    }
                    continue;
                }
                if expired {
                    if !write(tx.send(event("jwt error", &["jwt: exp claim is invalid"]))).await {
                        break;
                    }
                    continue;
                }
                if inbound.event == "send logs" {
                    if logs_sent.is_some_and(|at| at.elapsed() < LOGS_INTERVAL) {
                        continue;
                    }
                    logs_sent = Some(Instant::now());
                }
                for reply in handle(&state, server, &caller, &inbound).await {
                    if !write(tx.feed(reply)).await {
                        return;
                    }
                }
                if !write(tx.flush()).await {
                    break;
                }
            }
        }
    }
    write(tx.close()).await;
}

/// Completes at `instant`; never when there is none.
async fn at(instant: Option<Instant>) {
    match instant {
        Some(instant) => tokio::time::sleep_until(instant).await,
        None => std::future::pending().await,
    }
}

/// Wings' name for a state.
fn wings_state(state: Option<ServerState>) -> &'static str {
    match state {
        Some(ServerState::Starting) => "starting",
        Some(ServerState::Running) => "running",
        Some(ServerState::Stopping) => "stopping",
        _ => "offline",
    }
}

fn status(state: &ApiState, server: ServerId) -> Message {
    event("status", &[wings_state(state.agent.state(server))])
}

fn stats(state: &ApiState, server: ServerId, sample: Option<&ResourceStats>) -> Message {
    let payload = json!({
        "memory_bytes": sample.map_or(0, |s| s.memory_bytes),
        "memory_limit_bytes": sample.map_or(0, |s| s.memory_limit_bytes),
        "cpu_absolute": sample.map_or(0.0, |s| s.cpu_percent),
        "network": {
            "rx_bytes": sample.map_or(0, |s| s.network_rx_bytes),
            "tx_bytes": sample.map_or(0, |s| s.network_tx_bytes),
        },
        // The agent samples no uptime or disk use with its stats.
        "uptime": 0,
        "state": wings_state(state.agent.state(server)),
        "disk_bytes": 0,
    });
    event("stats", &[&payload.to_string()])
}

/// A console event as Wings sends it; `None` for what the caller may not see.
fn translate(state: &ApiState, server: ServerId, caller: &Caller, console: &ConsoleEvent) -> Option<Message> {
    Some(match console {
        ConsoleEvent::Line(line) => event("console output", &[&line.text]),
        ConsoleEvent::Stats(sample) => stats(state, server, Some(sample)),
        ConsoleEvent::State(change) => event("status", &[wings_state(Some(change.to))]),
        ConsoleEvent::Notice(text) => event("daemon message", &[text]),
        ConsoleEvent::Install(line) if caller.may(server, Permission::InstallRead) => event("install output", &[line]),
        _ => return None,
    })
}

/// Carries out one client message; the messages to send back.
async fn handle(state: &Arc<ApiState>, server: ServerId, caller: &Caller, inbound: &Inbound) -> Vec<Message> {
    let failed = |e: super::ApiError| vec![event("daemon error", &[&e.message])];
    match inbound.event.as_str() {
        "send command" if caller.may(server, Permission::ConsoleWrite) => {
            match super::servers::send_command(state, server, caller, &inbound.arg()).await {
                Ok(()) => Vec::new(),
                Err(e) => failed(e),
            }
        }
        "set state" if caller.may(server, Permission::Power) => {
            let action = match inbound.arg().as_str() {
                "start" => PowerAction::Start,
                "stop" => PowerAction::Stop,
                "restart" => PowerAction::Restart,
                "kill" => PowerAction::Kill,
                _ => return vec![event("daemon error", &["attempting to handle unknown power action"])],
            };
            match state.power.submit(&state.agent, server, action) {
                Ok(()) => Vec::new(),
                Err(e) => failed(e),
            }
        }
        "send logs" => match state.agent.console(server).await {
            Ok(subscription) => subscription
                .replay
                .iter()
                .filter_map(|e| match e {
                    ConsoleEvent::Line(line) => Some(event("console output", &[&line.text])),
                    _ => None,
                })
                .collect(),
            Err(e) => vec![event("daemon error", &[&e.to_string()])],
        },
        "send stats" => vec![stats(state, server, state.agent.resources(server).as_ref())],
        _ => Vec::new(),
    }
}

//! The HTTP panel link against a fake panel (warp on loopback): what is sent, and how the
//! panel's answers map to `TransportError` for the agent's outbox.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use chrono::Utc;
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger};
use nexus_core::transport::{Heartbeat, NodeMessage, PanelTransport, TransportError};
use nexus_wings::panel::HttpPanelTransport;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use warp::Filter;

const TOKEN: &str = "panel-link-token-0123456789";

/// A fake panel answering `status` and recording (authorization, body) of each request.
async fn fake_panel(status: u16) -> (String, Arc<Mutex<Vec<(Option<String>, Value)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let route = warp::path!("api" / "remote" / "events")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::json::<Value>())
        .map(move |auth: Option<String>, body: Value| {
            record.lock().unwrap().push((auth, body));
            warp::reply::with_status("{}", warp::http::StatusCode::from_u16(status).unwrap())
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://{addr}/"), seen)
}

fn heartbeat(node: NodeId) -> NodeMessage {
    NodeMessage::Heartbeat(Heartbeat { node, at: Utc::now(), version: "0.1.0".into(), servers: vec![] })
}

#[tokio::test]
async fn posts_messages_with_the_node_token() {
    let (url, seen) = fake_panel(204).await;
    let panel = HttpPanelTransport::new(&url, TOKEN).unwrap();
    assert_eq!(panel.url(), format!("{}/api/remote/events", url.trim_end_matches('/')));
    let node = NodeId::new();
    panel.publish(node, heartbeat(node)).await.unwrap();
    let event = LifecycleEvent {
        server: ServerId::new(),
        from: ServerState::Starting,
        to: ServerState::Running,
        trigger: Trigger::Ready,
        at: Utc::now(),
    };
    panel.publish(node, NodeMessage::Lifecycle(event.clone())).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(seen[0].1["node"], node.to_string());
    assert_eq!(seen[0].1["message"]["type"], "heartbeat");
    assert_eq!(seen[1].1["message"]["type"], "lifecycle");
    let back: NodeMessage = serde_json::from_value(seen[1].1["message"].clone()).unwrap();
    assert_eq!(back, NodeMessage::Lifecycle(event));
}

#[tokio::test]
async fn answers_map_to_retryable_or_final_errors() {
    let node = NodeId::new();
    for (status, retry) in [(500, true), (503, true), (429, true), (401, false), (403, false), (422, false)] {
        let (url, _) = fake_panel(status).await;
        let error = HttpPanelTransport::new(&url, TOKEN).unwrap().publish(node, heartbeat(node)).await.unwrap_err();
        match error {
            TransportError::Unreachable(..) => assert!(retry, "{status} must not be retried"),
            TransportError::Unauthorized => assert!(matches!(status, 401 | 403)),
            TransportError::Rejected { status: s, .. } => assert_eq!((s, retry), (status, false)),
            other => panic!("{status}: unexpected {other:?}"),
        }
    }
    // Nobody listening: unreachable, so the outbox keeps the message.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = HttpPanelTransport::new(&format!("http://127.0.0.1:{port}"), TOKEN)
        .unwrap()
        .publish(node, heartbeat(node))
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::Unreachable(..)), "{error:?}");
}

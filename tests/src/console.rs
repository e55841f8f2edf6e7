//! A server's console as the panel's web UI opens it: credentials from the panel
//! (`GET /api/v1/servers/{id}/websocket`), then the node's WebSocket with that token.

use crate::api::Api;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One open console.
pub struct Console {
    socket: Socket,
    /// Every console line received so far.
    pub lines: Vec<String>,
}

impl Console {
    /// Opens `server`'s console with credentials from the panel.
    pub async fn open(api: &Api, server: &str) -> Self {
        let access = api.get(&format!("/api/v1/servers/{server}/websocket")).await;
        let url = format!("{}?token={}", access["socket"].as_str().unwrap(), access["token"].as_str().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        Self { socket, lines: Vec::new() }
    }

    /// Sends a console command.
    pub async fn send(&mut self, line: &str) {
        let message = json!({ "type": "command", "line": line }).to_string();
        self.socket.send(Message::text(message)).await.unwrap();
    }

    /// The next event, `None` when the socket closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    if event["type"] == "line" {
                        self.lines.push(event["data"]["text"].as_str().unwrap_or_default().to_owned());
                    }
                    return Some(event);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until a line containing `text` arrives; that line.
    pub async fn wait_line(&mut self, text: &str) -> String {
        self.wait_lines(text, 1).await
    }

    /// Reads until `n` lines containing `text` arrived; the last of them.
    pub async fn wait_lines(&mut self, text: &str, n: usize) -> String {
        let seen = |lines: &[String]| lines.iter().filter(|l| l.contains(text)).count() >= n;
        let found = tokio::time::timeout(crate::T, async {
            while !seen(&self.lines) {
                self.next_event().await?;
            }
            self.lines.iter().rev().find(|l| l.contains(text)).cloned()
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the console closed before `{text}`; lines: {:?}", self.lines),
            Err(_) => panic!("no `{text}` on the console within {:?}; lines: {:?}", crate::T, self.lines),
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.socket.close(None)).await;
    }
}

//! What the panel's end-to-end tests share: an HTTP client that logs in like a browser.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Whether Docker answers and has the busybox test image; under `CI=true` a missing one
/// fails the test instead ([`require_service`](nexus_conformance::require_service)).
pub fn docker_ready() -> bool {
    let image = nexus_conformance::runtime::BUSYBOX_IMAGE;
    let probe = match std::process::Command::new("docker").args(["image", "inspect", image]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(_) => Err("the busybox test image is missing".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    nexus_conformance::require_service("Docker", probe)
}

/// How long a test waits for a state.
pub const T: Duration = Duration::from_secs(60);

/// A browser-like client: the session cookie and the CSRF token after login.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Client {
    pub async fn login(base: &str, login: &str, password: &str) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({ "login": login, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login");
        let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        Self { http, base: base.to_owned(), cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn wait_state(&self, server: &str, state: &str) {
        let deadline = Instant::now() + T;
        loop {
            let now = self.get(&format!("/api/v1/servers/{server}")).await["state"].clone();
            if now == state {
                return;
            }
            assert!(Instant::now() < deadline, "server {server} stayed {now}, expected {state}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

//! The panel's public API as a user drives it: a session login once, then an API key (kept
//! in the database, so it works on every panel replica and after a panel restart).

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A client of one panel.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// The panel's URL.
    pub base: String,
    key: String,
}

impl Api {
    /// Logs in as `login` at `base` and creates an application key for this client.
    pub async fn login(base: &str, login: &str, password: &str) -> Self {
        let http = client();
        let response = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({ "login": login, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login at {base}");
        let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        let csrf = body["csrf_token"].as_str().unwrap().to_owned();
        let created = http
            .post(format!("{base}/api/v1/account/api-keys"))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&json!({ "kind": "application", "memo": "system tests" }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "creating an application key");
        let created: Value = created.json().await.unwrap();
        Self { http, base: base.to_owned(), key: created["secret"].as_str().unwrap().to_owned() }
    }

    /// A client with no credentials yet.
    pub fn unauthenticated() -> Self {
        Self { http: client(), base: String::new(), key: String::new() }
    }

    /// The API key it authenticates with.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The same key against another panel (a replica on the same database).
    pub fn at(&self, base: &str) -> Self {
        Self { http: client(), base: base.to_owned(), key: self.key.clone() }
    }

    /// One request; the transport error when the panel does not answer.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// One request, which must reach the panel.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let what = format!("{method} {path}");
        self.try_call(method, path, body).await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// `GET path`, which must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `method path` with `body`, which must answer `expected`.
    pub async fn expect(&self, method: Method, path: &str, body: Option<Value>, expected: u16) -> Value {
        let what = format!("{method} {path}");
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, expected, "{what}: {answer}");
        answer
    }

    /// A body as text (`GET`), which must answer 200.
    pub async fn text(&self, path: &str) -> String {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// Writes `content` to a server's file through the panel.
    pub async fn write_file(&self, server: &str, file: &str, content: &str) {
        let response = self
            .http
            .put(format!("{}/api/v1/servers/{server}/files/contents?file={file}", self.base))
            .bearer_auth(&self.key)
            .body(content.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "writing {file}: {}", response.text().await.unwrap_or_default());
    }

    /// A server's state as the panel shows it.
    pub async fn state(&self, server: &str) -> String {
        self.get(&format!("/api/v1/servers/{server}")).await["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the panel shows `server` in `state`.
    pub async fn wait_state(&self, server: &str, state: &str) {
        let deadline = Instant::now() + crate::T;
        loop {
            let now = self.state(server).await;
            if now == state {
                return;
            }
            assert!(Instant::now() < deadline, "server {server} stayed {now}, expected {state}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A node's status (`online`, `offline`, ...).
    pub async fn node_status(&self, node: &str) -> String {
        self.get(&format!("/api/v1/nodes/{node}")).await["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Every page of a list route (`path` without a query, or ending in one).
    pub async fn all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1.. {
            let separator = if path.contains('?') { '&' } else { '?' };
            let body = self.get(&format!("{path}{separator}per_page=100&page={page}")).await;
            out.extend(body["data"].as_array().cloned().unwrap_or_default());
            if body["pagination"]["has_more"] != true {
                break;
            }
        }
        out
    }
}

fn client() -> reqwest::Client {
    // A killed or partitioned panel must fail a request, not hang the test.
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// Polls `done` every 100 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < timeout, "{what} (waited {timeout:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

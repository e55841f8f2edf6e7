//! What the panel's end-to-end tests share: an HTTP client that logs in like a browser.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod up;

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

/// The `content-type` of an answer.
pub fn content_type(response: &reqwest::Response) -> Option<String> {
    response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A browser-like client: the session cookie and the CSRF token after login.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    /// Every answer is checked against this.
    pub spec: std::sync::Arc<Spec>,
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
        let content_type = content_type(&response);
        let text = response.text().await.unwrap();
        let spec = std::sync::Arc::new(Spec::fetch(base).await);
        spec.check("POST", "/api/v1/auth/login", 200, content_type.as_deref(), &text);
        let body: Value = serde_json::from_str(&text).unwrap();
        Self { http, base: base.to_owned(), cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned(), spec }
    }

    /// A request to `path` as this session (cookie and CSRF token set), for bodies and
    /// answers that are not JSON.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let text = response.text().await.unwrap();
        if path.starts_with("/api/v1/") {
            self.spec.check(method.as_str(), path, status, content_type.as_deref(), &text);
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Imports the busybox test egg as an admin uploads the file; answers the egg.
    pub async fn import_busybox_egg(&self) -> Value {
        self.import_busybox_egg_at("/api/v1/eggs").await
    }

    /// Creates nest `name` and imports the busybox test egg into it.
    pub async fn import_busybox_egg_into_nest(&self, name: &str) -> Value {
        let (status, nest) =
            self.call(reqwest::Method::POST, "/api/v1/nests", Some(json!({ "name": name, "description": "" }))).await;
        assert_eq!(status, 201, "{nest}");
        self.import_busybox_egg_at(&format!("/api/v1/nests/{}/eggs", nest["id"].as_str().unwrap())).await
    }

    async fn import_busybox_egg_at(&self, path: &str) -> Value {
        let file = include_bytes!("../../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec();
        let response = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(file)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "importing the busybox egg");
        response.json().await.unwrap()
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

/// The panel's OpenAPI document, to check real answers against: every answer the tests get
/// must have a documented status and media type and match the schema documented for them
/// (errors: `default`), with no property the schema does not name.
pub struct Spec {
    doc: Value,
}

/// Closes every object schema that names its properties (`unevaluatedProperties: false`, which
/// sees through `allOf`/`anyOf`/flattened parts), so an answer carrying a field its type's
/// schema does not document (a leaked hash, say) fails.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("unevaluatedProperties".to_owned(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

impl Spec {
    /// The document the panel at `base` serves.
    pub async fn fetch(base: &str) -> Self {
        let response = reqwest::get(format!("{base}/api/v1/openapi.json")).await.unwrap();
        assert_eq!(response.status(), 200, "GET /api/v1/openapi.json");
        let mut doc: Value = response.json().await.unwrap();
        close_objects(&mut doc["components"]);
        Self { doc }
    }

    /// The documented operations, as `(METHOD, path pattern)`.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, ops) in self.doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// Panics unless the answer (`status`, `content_type`, `body`) to `method path` is what
    /// the document says.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: Option<&str>, body: &str) {
        let path = path.split('?').next().unwrap();
        let (pattern, ops) = self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(pattern, ops)| {
                ops.get(method.to_ascii_lowercase()).is_some() && {
                    let (a, b): (Vec<_>, Vec<_>) = (pattern.split('/').collect(), path.split('/').collect());
                    a.len() == b.len() && a.iter().zip(&b).all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
                }
            })
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        let responses = &ops[method.to_ascii_lowercase()]["responses"];
        if (200..300).contains(&status) && responses.get(status.to_string()).is_none() {
            panic!("{method} {pattern} answered {status}, which is not documented: {body}");
        }
        let documented = responses.get(status.to_string()).unwrap_or(&responses["default"]);
        let Some(content) = documented.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{method} {pattern} {status}: a body where none is documented: {body}");
            return;
        };
        let media = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let schema = content
            .get(&media)
            .unwrap_or_else(|| panic!("{method} {pattern} {status}: media type `{media}` is not documented"))
            .get("schema")
            .unwrap();
        if media != "application/json" {
            assert_eq!(schema["type"], "string", "{method} {pattern}: {media}");
            return;
        }
        let instance: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{method} {pattern} {status}: not JSON ({e}): {body}"));
        if schema == &Value::Bool(true) {
            return;
        }
        let mut root = schema.clone();
        close_objects(&mut root);
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::draft202012::options().should_validate_formats(true).build(&root).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {pattern} {status} differs from the document: {errors:?}\n{body}");
    }
}

//! The API's list queries and `/metrics`, on a panel without nodes (in-memory store): what
//! the server list's filters and order return, and who may scrape what `promtool` accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use nexus_control::accounts::NewUser;
use nexus_control::nodes::NewNode;
use nexus_control::servers::NewServer;
use nexus_control::{ControlConfig, ControlPlane, NodeSecret};
use nexus_core::memory::MemoryStore;
use nexus_core::model::{ApiKeyScope, NodeCapacity, Role, ServerLimits};
use nexus_core::store::Store;
use nexus_panel::api::PanelState;
use nexus_panel::node_client::HttpNodeTransport;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use warp::Filter;

struct Panel {
    base: String,
    control: Arc<ControlPlane>,
    admin_key: String,
    admin: nexus_core::model::User,
}

async fn panel() -> Panel {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut config = ControlConfig::default();
    config.node_secret = Some(NodeSecret::new(b"api test node secret, at least 32 bytes".to_vec()).unwrap());
    config.node_timeout = Duration::from_millis(300);
    let nodes = Arc::new(HttpNodeTransport::new(Duration::from_millis(300)).unwrap());
    let control = Arc::new(ControlPlane::new(store, nodes, config).await.unwrap());
    let admin =
        control.create_user(NewUser::new("admin", "admin@example.com", "admin password", Role::Admin)).await.unwrap();
    let admin_key = control.create_api_key(admin.id, ApiKeyScope::Application, "", None).await.unwrap().1;
    let state = Arc::new(PanelState::new(control.clone(), "http://127.0.0.1"));
    let routes = nexus_panel::api::metrics(state.clone()).or(nexus_panel::api::filter(state)).unify();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Panel { base, control, admin_key, admin }
}

/// Status, content type and body of `GET path` with `key`.
async fn get(base: &str, path: &str, key: &str) -> (u16, Option<String>, String) {
    let response = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(key).send().await.unwrap();
    let content_type = common::content_type(&response);
    (response.status().as_u16(), content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_list_filters_and_orders() {
    let panel = panel().await;
    let spec = common::Spec::fetch(&panel.base).await;
    let control = &panel.control;
    let capacity = NodeCapacity { memory_mb: 8192, disk_mb: 10_240, cpu_percent: 400 };
    let mut nodes = Vec::new();
    for name in ["n1", "n2"] {
        let node = control.register_node(NewNode::new(name, "127.0.0.1", 1, capacity)).await.unwrap().node;
        control
            .add_allocations(
                node.id,
                "127.0.0.1".parse().unwrap(),
                if name == "n1" { "30600-30609" } else { "30610-30619" },
            )
            .await
            .unwrap();
        nodes.push(node);
    }
    let egg = control
        .import_egg(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec())
        .await
        .unwrap();
    let other =
        control.create_user(NewUser::new("other", "other@example.com", "other password", Role::User)).await.unwrap();
    // (name, owner, node)
    let plan = [("delta", &panel.admin, 0), ("alpha", &other, 1), ("charlie", &panel.admin, 1), ("bravo", &other, 0)];
    for (name, owner, node) in plan {
        let mut request =
            NewServer::new(name, owner.id, egg.id, ServerLimits { memory_mb: 64, ..ServerLimits::default() });
        request.node = Some(nodes[node].id);
        control.create_server(request).await.unwrap();
    }
    let other_key = control.create_api_key(other.id, ApiKeyScope::Client, "", None).await.unwrap().1;
    let names_as = async |key: &str, query: &str| -> Vec<String> {
        let path = format!("/api/v1/servers{query}");
        let (status, content_type, body) = get(&panel.base, &path, key).await;
        spec.check("GET", &path, status, content_type.as_deref(), &body);
        assert_eq!(status, 200, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        body["data"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
    };
    let names = async |query: &str| names_as(&panel.admin_key, query).await;
    assert_eq!(names("").await, ["delta", "alpha", "charlie", "bravo"], "oldest first by default");
    assert_eq!(names("?sort=-created_at").await, ["bravo", "charlie", "alpha", "delta"]);
    assert_eq!(names("?sort=name").await, ["alpha", "bravo", "charlie", "delta"]);
    assert_eq!(names("?sort=-name&per_page=2").await, ["delta", "charlie"]);
    assert_eq!(names("?sort=-name&per_page=2&page=2").await, ["bravo", "alpha"]);
    assert_eq!(names(&format!("?owner={}&sort=name", other.id)).await, ["alpha", "bravo"]);
    assert_eq!(names(&format!("?node={}&sort=name", nodes[1].id)).await, ["alpha", "charlie"]);
    assert_eq!(names(&format!("?node={}&owner={}", nodes[0].id, other.id)).await, ["bravo"]);
    assert_eq!(names(&format!("?egg={}", nexus_core::ids::EggId::new())).await, Vec::<String>::new());
    // A filter narrows what the caller may see; it never widens it.
    assert_eq!(names_as(&other_key, "?sort=name").await, ["alpha", "bravo"]);
    assert_eq!(names_as(&other_key, &format!("?owner={}", panel.admin.id)).await, Vec::<String>::new());
    assert_eq!(names_as(&other_key, &format!("?node={}&sort=name", nodes[0].id)).await, ["bravo"]);
    for (query, field) in [("?sort=size", "sort"), ("?owner=me", "owner"), ("?per_page=0", "per_page")] {
        let path = format!("/api/v1/servers{query}");
        let (status, content_type, body) = get(&panel.base, &path, &panel.admin_key).await;
        spec.check("GET", &path, status, content_type.as_deref(), &body);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(status == 400 || status == 422, "{query}: {status} {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_admins_and_count_each_route() {
    let panel = panel().await;
    let user =
        panel.control.create_user(NewUser::new("user", "user@example.com", "user password", Role::User)).await.unwrap();
    let client_key = panel.control.create_api_key(user.id, ApiKeyScope::Client, "", None).await.unwrap().1;
    let admin_client_key = panel.control.create_api_key(panel.admin.id, ApiKeyScope::Client, "", None).await.unwrap().1;
    let capacity = NodeCapacity { memory_mb: 1024, disk_mb: 1024, cpu_percent: 100 };
    panel.control.register_node(NewNode::new(r#"node "quoted" \ back"#, "127.0.0.1", 1, capacity)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&panel.base, "/api/v1/servers", &panel.admin_key).await.0, 200);
    }
    assert_eq!(get(&panel.base, "/api/v1/nowhere", &panel.admin_key).await.0, 404);
    let anonymous = reqwest::get(format!("{}/metrics", panel.base)).await.unwrap().status();
    assert_eq!(anonymous, 401);
    assert_eq!(get(&panel.base, "/metrics", &client_key).await.0, 403, "a user's key");
    assert_eq!(get(&panel.base, "/metrics", &admin_client_key).await.0, 403, "an admin's client key");
    let (status, _, metrics) = get(&panel.base, "/metrics", &panel.admin_key).await;
    assert_eq!(status, 200, "{metrics}");
    let has = |line: &str| metrics.lines().any(|l| l == line);
    assert!(
        has(r#"nexus_panel_http_requests_total{method="GET",route="/api/v1/servers",status="2xx"} 3"#),
        "{metrics}"
    );
    assert!(has(r#"nexus_panel_http_requests_total{method="any",route="unmatched",status="4xx"} 1"#), "{metrics}");
    assert!(has(r#"nexus_panel_http_request_duration_seconds_count{method="GET",route="/api/v1/servers"} 3"#));
    assert!(has(r#"nexus_panel_nodes{status="offline"} 1"#), "{metrics}");
    assert!(has(r#"nexus_panel_node_servers{node="node \"quoted\" \\ back"} 0"#), "names escaped: {metrics}");
    nexus_conformance::promtool_accepts(&metrics);
}

/// The document check used by every panel test fails on what it must catch: an undocumented
/// field, a wrong type, an undocumented status or media type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_check_refuses_what_the_document_does_not_say() {
    let panel = panel().await;
    let spec = common::Spec::fetch(&panel.base).await;
    let json = Some("application/json");
    spec.check("GET", "/api/v1/health", 200, json, r#"{"status":"ok","version":"1"}"#);
    let refused = |status: u16, media: Option<&'static str>, body: &'static str| {
        std::panic::catch_unwind(|| spec.check("GET", "/api/v1/health", status, media, body)).is_err()
    };
    assert!(refused(200, json, r#"{"status":"ok","version":"1","password_hash":"x"}"#), "extra field");
    assert!(refused(200, json, r#"{"status":"ok","version":1}"#), "wrong type");
    assert!(refused(200, json, r#"{"status":"ok"}"#), "missing field");
    assert!(refused(201, json, r#"{"status":"ok","version":"1"}"#), "undocumented status");
    assert!(refused(200, Some("text/html"), "<html>"), "undocumented media type");
    assert!(refused(500, json, r#"{"error":{"code":"internal","message":"m","stack":"…"}}"#), "extra error field");
}

/// An API key limited to addresses is answered `403 address_not_allowed` from elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_other_addresses_is_refused() {
    let panel = panel().await;
    let spec = common::Spec::fetch(&panel.base).await;
    let id = panel.admin.id;
    let here = vec!["127.0.0.0/8".to_owned()];
    let (_, local) = panel.control.create_limited_api_key(id, ApiKeyScope::Client, "", None, &here).await.unwrap();
    let there = vec!["192.0.2.1".to_owned()];
    let (_, remote) = panel.control.create_limited_api_key(id, ApiKeyScope::Client, "", None, &there).await.unwrap();
    let (status, content_type, body) = get(&panel.base, "/api/v1/servers", &local).await;
    spec.check("GET", "/api/v1/servers", status, content_type.as_deref(), &body);
    assert_eq!(status, 200, "{body}");
    let (status, content_type, body) = get(&panel.base, "/api/v1/servers", &remote).await;
    spec.check("GET", "/api/v1/servers", status, content_type.as_deref(), &body);
    assert_eq!(status, 403, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "address_not_allowed");
}

/// Status, content type and body of `method path` with `key` and a JSON body.
async fn send(base: &str, method: reqwest::Method, path: &str, key: &str, json: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method.clone(), format!("{base}{path}")).bearer_auth(key);
    if let Some(json) = json {
        request = request.header("content-type", "application/json").body(json.to_owned());
    }
    let response = request.send().await.unwrap();
    let (status, content_type) = (response.status().as_u16(), common::content_type(&response));
    let body = response.text().await.unwrap();
    common::Spec::fetch(base).await.check(method.as_str(), path, status, content_type.as_deref(), &body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nests_group_eggs_through_the_api() {
    use reqwest::Method;
    let panel = panel().await;
    let (base, key) = (&panel.base, &panel.admin_key);
    let (status, nest) =
        send(base, Method::POST, "/api/v1/nests", key, Some(r#"{"name":"Games","description":"d"}"#)).await;
    assert_eq!(status, 201, "{nest}");
    let nest = nest["id"].as_str().unwrap().to_owned();
    let (status, body) = send(base, Method::POST, "/api/v1/nests", key, Some(r#"{"name":"Games"}"#)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("duplicate")), "{body}");
    let file = include_str!("../../egg-engine/tests/fixtures/egg-busybox-echo.json");
    let (status, egg) = send(base, Method::POST, &format!("/api/v1/nests/{nest}/eggs"), key, Some(file)).await;
    assert_eq!(status, 201, "{egg}");
    assert_eq!(egg["nest"], nest.as_str());
    let egg = egg["id"].as_str().unwrap().to_owned();
    let (status, _) = send(base, Method::POST, "/api/v1/eggs", key, Some(file)).await;
    assert_eq!(status, 201, "a second copy, in no nest");
    let (_, listed) = send(base, Method::GET, &format!("/api/v1/eggs?nest={nest}"), key, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["id"], egg.as_str());
    let (status, body) = send(base, Method::DELETE, &format!("/api/v1/nests/{nest}"), key, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("in_use")), "{body}");
    let (status, moved) =
        send(base, Method::PUT, &format!("/api/v1/eggs/{egg}/nest"), key, Some(r#"{"nest":null}"#)).await;
    assert_eq!((status, &moved["nest"]), (200, &Value::Null), "{moved}");
    let (status, _) = send(base, Method::DELETE, &format!("/api/v1/nests/{nest}"), key, None).await;
    assert_eq!(status, 204);
    let (status, body) = send(base, Method::GET, &format!("/api/v1/nests/{nest}"), key, None).await;
    assert_eq!(status, 404, "{body}");
}

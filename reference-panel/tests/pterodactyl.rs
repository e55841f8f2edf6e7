//! Pterodactyl's Application and Client APIs, route by route, against `nexus-panel up` with
//! its local node on the real Docker engine. Field names, types and status codes follow
//! Pterodactyl's API documentation; every error answer is checked for Pterodactyl's error
//! shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::up::{Up, create_key};
use common::{Client, T};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A client of Pterodactyl's API with one key, as a billing system or library sends it.
struct Ptero {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Ptero {
    fn new(base: &str, key: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.to_owned(), key: key.to_owned() }
    }

    async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("accept", "Application/vnd.pterodactyl.v1+json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// The status and JSON body; an error answer must be in Pterodactyl's shape.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let response = self.raw(method.clone(), path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status >= 400 {
            assert_error_shape(status, &value, &format!("{method} {path}"));
        }
        (status, value)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>, expected: u16) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path}: {value}");
        value
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None, 200).await
    }
}

/// `{"errors":[{"code": "...Exception", "status": "<status>", "detail": "..."}]}`.
fn assert_error_shape(status: u16, body: &Value, what: &str) {
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{what}: not Pterodactyl's error shape: {body}"));
    assert!(!errors.is_empty(), "{what}: {body}");
    for error in errors {
        assert!(error["code"].as_str().is_some_and(|c| c.ends_with("Exception")), "{what}: {body}");
        assert_eq!(error["status"], status.to_string(), "{what}: {body}");
        assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: {body}");
    }
}

/// An object of `object` with integer `id` when it has one.
fn attributes<'a>(value: &'a Value, object: &str) -> &'a Value {
    assert_eq!(value["object"], object, "{value}");
    &value["attributes"]
}

fn assert_pagination(list: &Value, total: u64) {
    assert_eq!(list["object"], "list", "{list}");
    let pagination = &list["meta"]["pagination"];
    assert_eq!(pagination["total"], total, "{list}");
    assert_eq!(pagination["count"].as_u64(), list["data"].as_array().map(|d| d.len() as u64), "{list}");
    for field in ["per_page", "current_page", "total_pages"] {
        assert!(pagination[field].as_u64().is_some(), "{field}: {list}");
    }
    assert!(pagination["links"].is_object(), "{list}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(socket: &mut Socket, name: &str, args: &[&str]) {
    use futures::SinkExt;
    let text = json!({ "event": name, "args": args }).to_string();
    socket.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
}

/// The next event matching `wanted`, as `(event, args)`.
async fn next_event(socket: &mut Socket, wanted: impl Fn(&(String, Vec<String>)) -> bool) -> (String, Vec<String>) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.expect("an event in time");
        let message = message.expect("the socket stays open").unwrap();
        let Ok(text) = message.into_text() else { continue };
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        let event = value["event"].as_str().expect("an event name").to_owned();
        let args = value["args"]
            .as_array()
            .map_or_else(Vec::new, |a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
        let pair = (event, args);
        if wanted(&pair) {
            return pair;
        }
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_and_client_apis_answer_as_pterodactyl_documents() {
    if !common::docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start_with_ports(&data, "30440-30449", "127.0.0.1:0");
    let password = up.password.clone().unwrap();
    let session = Client::login(&up.url, "admin@nexus.local", &password).await;
    let app = Ptero::new(&up.url, &create_key(&data, "admin@nexus.local", "application"));

    // Refusals, in Pterodactyl's shape.
    let anonymous = Ptero::new(&up.url, "ptla_nothing");
    assert_eq!(anonymous.call(Method::GET, "/api/application/users", None).await.0, 401);
    let (status, body) = app.call(Method::GET, "/api/application/no-such-thing", None).await;
    assert_eq!((status, body["errors"][0]["code"].as_str()), (404, Some("NotFoundHttpException")));
    assert_eq!(app.call(Method::GET, "/api/client/servers/zzzzzzzz/nope", None).await.0, 404);
    assert_eq!(app.call(Method::GET, "/api/application/users/999999", None).await.0, 404);

    // Users.
    let (status, body) = app.call(Method::POST, "/api/application/users", Some(json!({ "username": "nomail" }))).await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("email")), "{body}");
    let created = app
        .ok(
            Method::POST,
            "/api/application/users",
            Some(json!({
                "email": "player@example.com", "username": "player", "first_name": "Pat", "last_name": "Player",
                "password": "correct horse battery", "external_id": "billing-7",
            })),
            201,
        )
        .await;
    let user = attributes(&created, "user").clone();
    assert!(
        created["meta"]["resource"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("/api/application/users/{}", user["id"]))),
        "{created}"
    );
    let user_id = user["id"].as_u64().expect("an integer id");
    assert!(user_id >= 1);
    assert_eq!((user["external_id"].as_str(), user["root_admin"].as_bool()), (Some("billing-7"), Some(false)));
    assert!(user["uuid"].as_str().is_some_and(|u| u.len() == 36) && user["2fa"] == false, "{user}");
    assert_eq!((user["first_name"].as_str(), user["last_name"].as_str()), (Some("Pat"), Some("Player")), "names kept");
    for field in ["username", "email", "first_name", "last_name", "language", "created_at", "updated_at"] {
        assert!(user[field].is_string(), "{field}: {user}");
    }
    assert_eq!(app.get(&format!("/api/application/users/{user_id}")).await["attributes"]["uuid"], user["uuid"]);
    assert_eq!(app.get("/api/application/users/external/billing-7").await["attributes"]["id"], user_id);
    let found = app.get("/api/application/users?filter[email]=player@example.com").await;
    assert_pagination(&found, 1);
    assert_eq!(found["data"][0]["attributes"]["id"], user_id);
    assert_pagination(&app.get("/api/application/users?filter[external_id]=billing-7").await, 1);
    assert_pagination(&app.get("/api/application/users?filter[external_id]=nobody").await, 0);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/application/users",
            Some(json!({"email": "twin@example.com", "username": "twin", "first_name": "T", "last_name": "W", "external_id": "billing-7"})),
        )
        .await;
    assert_eq!(status, 422, "an external id names one user");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/application/users",
            Some(json!({"email": "player@example.com", "username": "other", "first_name": "O", "last_name": "T"})),
        )
        .await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("email")), "{body}");
    assert_pagination(&app.get("/api/application/users?filter[username]=twin").await, 0);
    let patched = app
        .ok(
            Method::PATCH,
            &format!("/api/application/users/{user_id}"),
            Some(json!({ "email": "pat@example.com" })),
            200,
        )
        .await;
    assert_eq!(patched["attributes"]["email"], "pat@example.com");
    // A refused field changes nothing, the password included.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/application/users/{user_id}"),
            Some(json!({ "password": "a different password", "first_name": "bell\u{7}" })),
        )
        .await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("first_name")), "{body}");
    Client::login(&up.url, "player", "correct horse battery").await;
    let all = app.get("/api/application/users?per_page=1").await;
    assert_pagination(&all, 2);
    assert_eq!(all["meta"]["pagination"]["total_pages"], 2);
    let next = all["meta"]["pagination"]["links"]["next"].as_str().unwrap();
    assert!(next.starts_with(&up.url) && next.ends_with("/api/application/users?page=2&per_page=1"), "{all}");
    assert_pagination(&app.get("/api/application/users?per_page=1&page=0").await, 2);

    // Locations.
    let location = app
        .ok(Method::POST, "/api/application/locations", Some(json!({ "short": "fra1", "long": "Frankfurt" })), 201)
        .await;
    let location_id = attributes(&location, "location")["id"].as_u64().unwrap();
    assert_eq!(app.get(&format!("/api/application/locations/{location_id}")).await["attributes"]["short"], "fra1");
    assert_pagination(&app.get("/api/application/locations").await, 1);
    let patched = app
        .ok(
            Method::PATCH,
            &format!("/api/application/locations/{location_id}"),
            Some(json!({ "long": "Frankfurt am Main" })),
            200,
        )
        .await;
    assert_eq!(
        (patched["attributes"]["short"].as_str(), patched["attributes"]["long"].as_str()),
        (Some("fra1"), Some("Frankfurt am Main"))
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/application/locations/{location_id}"),
            Some(json!({ "short": "bad code!" })),
        )
        .await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("short")));

    // Nodes: one registered here (checked, then removed) and the local node that runs servers.
    let node = app
        .ok(
            Method::POST,
            "/api/application/nodes",
            Some(json!({
                "name": "spare", "location_id": location_id, "fqdn": "spare.example.com", "scheme": "https",
                "memory": 4096, "memory_overallocate": 0, "disk": 20000, "disk_overallocate": 0,
                "upload_size": 100, "daemon_sftp": 2022, "daemon_listen": 8443,
            })),
            201,
        )
        .await;
    let spare = attributes(&node, "node").clone();
    let spare_id = spare["id"].as_u64().unwrap();
    assert_eq!((spare["location_id"].as_u64(), spare["memory"].as_u64()), (Some(location_id), Some(4096)));
    assert!(spare["allocated_resources"]["memory"].is_u64(), "{spare}");
    for (change, field) in
        [(json!({ "fqdn": "evil.example:80/#" }), "fqdn"), (json!({ "daemon_listen": 0 }), "daemon_listen")]
    {
        let (status, body) = app.call(Method::PATCH, &format!("/api/application/nodes/{spare_id}"), Some(change)).await;
        assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some(field)), "{body}");
    }
    let config = app.get(&format!("/api/application/nodes/{spare_id}/configuration")).await;
    assert_eq!(config["uuid"], spare["uuid"]);
    assert!(config["token"].as_str().is_some_and(|t| !t.is_empty()) && config["remote"] == up.url.as_str(), "{config}");
    app.ok(
        Method::POST,
        &format!("/api/application/nodes/{spare_id}/allocations"),
        Some(json!({ "ip": "127.0.0.1", "ports": ["25565", "25570-25572"] })),
        204,
    )
    .await;
    let allocations = app.get(&format!("/api/application/nodes/{spare_id}/allocations")).await;
    assert_pagination(&allocations, 4);
    let first = &allocations["data"][0]["attributes"];
    assert_eq!((first["port"].as_u64(), first["assigned"].as_bool()), (Some(25565), Some(false)), "{allocations}");
    let allocation_id = first["id"].as_u64().unwrap();
    app.ok(Method::DELETE, &format!("/api/application/nodes/{spare_id}/allocations/{allocation_id}"), None, 204).await;
    assert_pagination(&app.get(&format!("/api/application/nodes/{spare_id}/allocations")).await, 3);
    app.ok(Method::DELETE, &format!("/api/application/nodes/{spare_id}"), None, 204).await;
    assert_eq!(app.call(Method::GET, &format!("/api/application/nodes/{spare_id}"), None).await.0, 404);

    let nodes = app.get("/api/application/nodes?filter[name]=local").await;
    assert_pagination(&nodes, 1);
    let local = nodes["data"][0]["attributes"].clone();
    let local_id = local["id"].as_u64().unwrap();
    up.node_containers = Some(format!("label={}={}", nexus_agent::NODE_LABEL, local["uuid"].as_str().unwrap()));
    let moved = app
        .ok(
            Method::PATCH,
            &format!("/api/application/nodes/{local_id}"),
            Some(json!({ "location_id": location_id })),
            200,
        )
        .await;
    assert_eq!(moved["attributes"]["location_id"], location_id);
    wait_for("the local node online", async || {
        session.get(&format!("/api/v1/nodes/{}", local["uuid"].as_str().unwrap())).await["status"] == "online"
    })
    .await;

    // Nests and eggs (an egg imported into a nest through /api/v1: Pterodactyl's API has no
    // import).
    session.import_busybox_egg_into_nest("Tests").await;
    let nests = app.get("/api/application/nests").await;
    let nest_id = nests["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "Tests")
        .map(|n| n["attributes"]["id"].as_u64().unwrap())
        .expect("the nest is listed");
    assert_eq!(app.get(&format!("/api/application/nests/{nest_id}")).await["attributes"]["name"], "Tests");
    let eggs = app.get(&format!("/api/application/nests/{nest_id}/eggs?include=variables")).await;
    assert_eq!((eggs["object"].as_str(), eggs["data"].as_array().map(Vec::len)), (Some("list"), Some(1)), "{eggs}");
    let egg = eggs["data"][0]["attributes"].clone();
    let egg_id = egg["id"].as_u64().unwrap();
    assert_eq!(
        (egg["nest"].as_u64(), egg["docker_image"].as_str()),
        (Some(nest_id), Some("nexus-test/busybox:latest"))
    );
    assert_eq!(egg["config"]["startup"]["done"], "ready", "config blocks are objects: {egg}");
    assert_eq!(egg["script"]["container"], "nexus-test/busybox:latest");
    let variables = egg["relationships"]["variables"]["data"].as_array().unwrap();
    let greeting = variables.iter().find(|v| v["attributes"]["env_variable"] == "GREETING").unwrap();
    assert_eq!(greeting["object"], "egg_variable");
    assert_eq!(
        (greeting["attributes"]["rules"].as_str(), greeting["attributes"]["egg_id"].as_u64()),
        (Some("required|string|max:20"), Some(egg_id))
    );
    let shown = app.get(&format!("/api/application/nests/{nest_id}/eggs/{egg_id}")).await;
    assert!(shown["attributes"]["relationships"].is_null(), "no include, no relationships");

    // A server placed by `deploy`: a location and a port range.
    let create = json!({
        "name": "pt-echo", "user": user_id, "egg": egg_id,
        "docker_image": "nexus-test/busybox:latest", "startup": egg["startup"],
        "environment": { "GREETING": "hi from ptero", "MAX_PLAYERS": 8, "MOTD": null },
        "limits": { "memory": 128, "swap": 0, "disk": 512, "io": 500, "cpu": 0 },
        "feature_limits": { "databases": 0, "allocations": 1, "backups": 0 },
        "deploy": { "locations": [location_id], "dedicated_ip": false, "port_range": ["30443-30444"] },
        "start_on_completion": false, "external_id": "order-42", "description": "Pat's server",
    });
    let mut bad = create.clone();
    bad["environment"]["MAX_PLAYERS"] = json!(500);
    let (status, body) = app.call(Method::POST, "/api/application/servers", Some(bad)).await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("MAX_PLAYERS")), "{body}");
    let mut long = create.clone();
    long["description"] = json!("x".repeat(5000));
    let (status, body) = app.call(Method::POST, "/api/application/servers", Some(long)).await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("description")), "{body}");
    assert_pagination(&app.get("/api/application/servers").await, 0);
    let created = app.ok(Method::POST, "/api/application/servers", Some(create), 201).await;
    let server = attributes(&created, "server").clone();
    let server_id = server["id"].as_u64().unwrap();
    let identifier = server["identifier"].as_str().unwrap().to_owned();
    assert_eq!(identifier.len(), 8);
    assert!(server["uuid"].as_str().unwrap().starts_with(&identifier));
    assert_eq!(
        (server["user"].as_u64(), server["node"].as_u64(), server["egg"].as_u64(), server["nest"].as_u64()),
        (Some(user_id), Some(local_id), Some(egg_id), Some(nest_id))
    );
    assert_eq!((server["external_id"].as_str(), server["limits"]["memory"].as_u64()), (Some("order-42"), Some(128)));
    assert_eq!(server["container"]["environment"]["GREETING"], "hi from ptero");
    assert_eq!(server["description"], "Pat's server", "the description is kept");
    for field in ["feature_limits", "container", "limits"] {
        assert!(server[field].is_object(), "{field}: {server}");
    }
    assert_eq!(app.get(&format!("/api/application/servers/{server_id}")).await["attributes"]["uuid"], server["uuid"]);
    assert_eq!(app.get("/api/application/servers/external/order-42").await["attributes"]["id"], server_id);
    assert_pagination(&app.get("/api/application/servers?filter[external_id]=order-42").await, 1);
    assert_pagination(&app.get("/api/application/servers").await, 1);
    let (status, _) = app.call(Method::DELETE, &format!("/api/application/users/{user_id}"), None).await;
    assert_eq!(status, 400, "a user owning servers stays");
    wait_for("the install", async || {
        app.get(&format!("/api/application/servers/{server_id}")).await["attributes"]["container"]["installed"] == 1
    })
    .await;

    // As the owner, through the client API.
    let owner = Ptero::new(&up.url, &create_key(&data, "player", "client"));
    assert_eq!(owner.call(Method::GET, "/api/application/servers", None).await.0, 403, "a client key is not an admin");
    let account = owner.get("/api/client/account").await;
    assert_eq!((account["object"].as_str(), account["attributes"]["id"].as_u64()), (Some("user"), Some(user_id)));
    let mine = owner.get("/api/client").await;
    assert_pagination(&mine, 1);
    let listed = attributes(&mine["data"][0], "server").clone();
    assert_eq!(
        (listed["identifier"].as_str(), listed["internal_id"].as_u64()),
        (Some(identifier.as_str()), Some(server_id))
    );
    assert_eq!(listed["server_owner"], true);
    let allocations = listed["relationships"]["allocations"]["data"].as_array().unwrap();
    let port = allocations[0]["attributes"]["port"].as_u64().unwrap();
    assert!((30443..=30444).contains(&port) && allocations[0]["attributes"]["is_default"] == true, "{listed}");
    let shown = owner.get(&format!("/api/client/servers/{identifier}")).await;
    assert_eq!(shown["meta"]["is_server_owner"], true);
    assert_eq!(
        owner.get(&format!("/api/client/servers/{}", server["uuid"].as_str().unwrap())).await["attributes"]["identifier"],
        identifier.as_str()
    );
    let stranger = Ptero::new(&up.url, &create_key(&data, "admin@nexus.local", "client"));
    assert_pagination(&stranger.get("/api/client").await, 0);
    assert_pagination(&stranger.get("/api/client?type=admin").await, 1);

    // The console in Wings' protocol: credentials from the panel, `auth` as the first message.
    let socket = owner.get(&format!("/api/client/servers/{identifier}/websocket")).await;
    let url = socket["data"]["socket"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("ws://") && url.ends_with(&format!("/api/servers/{}/ws", server["uuid"].as_str().unwrap())),
        "{url}"
    );
    let token = socket["data"]["token"].as_str().unwrap().to_owned();
    let (mut refused, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("console socket");
    send(&mut refused, "auth", &["not-a-token"]).await;
    assert_eq!(next_event(&mut refused, |_| true).await.0, "jwt error");
    let (mut console, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("console socket");
    send(&mut console, "auth", &[&token]).await;
    assert_eq!(next_event(&mut console, |_| true).await.0, "auth success");
    assert_eq!(next_event(&mut console, |_| true).await, ("status".to_owned(), vec!["offline".to_owned()]));
    let (status, body) = owner
        .call(Method::POST, &format!("/api/client/servers/{identifier}/power"), Some(json!({ "signal": "jump" })))
        .await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("signal")));
    owner
        .ok(Method::POST, &format!("/api/client/servers/{identifier}/power"), Some(json!({ "signal": "start" })), 204)
        .await;
    next_event(&mut console, |(name, args)| name == "status" && args[0] == "running").await;
    owner
        .ok(
            Method::POST,
            &format!("/api/client/servers/{identifier}/command"),
            Some(json!({ "command": "ping ptero" })),
            204,
        )
        .await;
    next_event(&mut console, |(name, args)| name == "console output" && args[0].contains("echo: ping ptero")).await;
    send(&mut console, "send command", &["ping socket"]).await;
    next_event(&mut console, |(name, args)| name == "console output" && args[0].contains("echo: ping socket")).await;
    send(&mut console, "send stats", &[]).await;
    let (_, args) = next_event(&mut console, |(name, _)| name == "stats").await;
    let sample: Value = serde_json::from_str(&args[0]).expect("stats is a JSON text");
    assert_eq!(sample["state"], "running", "{sample}");
    assert!(sample["memory_bytes"].is_u64() && sample["network"]["rx_bytes"].is_u64(), "{sample}");
    send(&mut console, "send logs", &[]).await;
    next_event(&mut console, |(name, args)| name == "console output" && args[0].contains("hi from ptero")).await;
    let stats = owner.get(&format!("/api/client/servers/{identifier}/resources")).await;
    let resources = &attributes(&stats, "stats")["resources"];
    for field in ["memory_bytes", "disk_bytes", "network_rx_bytes", "network_tx_bytes", "uptime"] {
        assert!(resources[field].is_u64(), "{field}: {stats}");
    }
    assert!(resources["cpu_absolute"].is_number(), "{stats}");

    // Files.
    let response = owner
        .http
        .post(format!("{}/api/client/servers/{identifier}/files/write?file=%2Fnotes.txt", up.url))
        .bearer_auth(&owner.key)
        .body("written through the client API")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let listing = owner.get(&format!("/api/client/servers/{identifier}/files/list?directory=%2F")).await;
    assert_eq!(listing["object"], "list");
    let notes =
        listing["data"].as_array().unwrap().iter().find(|f| f["attributes"]["name"] == "notes.txt").expect("listed");
    assert_eq!(notes["object"], "file_object");
    assert_eq!(
        (notes["attributes"]["is_file"].as_bool(), notes["attributes"]["size"].as_u64()),
        (Some(true), Some(30))
    );
    assert!(notes["attributes"]["mode"].as_str().is_some_and(|m| m.starts_with("-rw")), "{notes}");
    let contents = owner
        .raw(Method::GET, &format!("/api/client/servers/{identifier}/files/contents?file=%2Fnotes.txt"), None)
        .await;
    assert_eq!(contents.status(), 200);
    assert_eq!(contents.text().await.unwrap(), "written through the client API");

    client_routes(&owner, &identifier, &up.url).await;
    // A subuser sees what its permissions allow: no variables without `startup.read`.
    app.ok(
        Method::POST,
        "/api/application/users",
        Some(json!({ "email": "helper@example.com", "username": "helper", "first_name": "H", "last_name": "P", "password": "helper's long password" })),
        201,
    )
    .await;
    owner
        .ok(
            Method::POST,
            &format!("/api/client/servers/{identifier}/users"),
            Some(json!({ "email": "helper@example.com", "permissions": ["control.console"] })),
            200,
        )
        .await;
    let helper = Ptero::new(&up.url, &create_key(&data, "helper", "client"));
    let seen = helper.get("/api/client").await;
    let relationships = &seen["data"][0]["attributes"]["relationships"];
    assert_eq!(relationships["variables"], json!({ "object": "null_resource", "attributes": null }), "{seen}");
    let shown = helper.get(&format!("/api/client/servers/{identifier}")).await;
    assert_eq!(shown["attributes"]["relationships"]["variables"]["object"], "null_resource", "{shown}");
    assert_eq!(shown["meta"]["user_permissions"], json!(["control.console"]));
    assert_eq!(helper.call(Method::GET, &format!("/api/client/servers/{identifier}/startup"), None).await.0, 403);
    account_routes(&owner, &up.url).await;
    let (status, body) = app.call(Method::GET, "/api/client", None).await;
    assert_eq!(status, 403, "an application key is not a client key: {body}");

    // Build, details, startup, suspension, reinstall.
    let built = app
        .ok(Method::PATCH, &format!("/api/application/servers/{server_id}/build"), Some(json!({ "allocation": allocations[0]["attributes"]["id"], "memory": 192, "swap": 0, "disk": 512, "io": 500, "cpu": 0, "feature_limits": {"databases": 0, "allocations": 1, "backups": 0} })), 200)
        .await;
    assert_eq!(built["attributes"]["limits"]["memory"], 192);
    let renamed = app
        .ok(
            Method::PATCH,
            &format!("/api/application/servers/{server_id}/details"),
            Some(json!({ "name": "pt-renamed", "user": user_id, "external_id": "order-43" })),
            200,
        )
        .await;
    assert_eq!(
        (renamed["attributes"]["name"].as_str(), renamed["attributes"]["external_id"].as_str()),
        (Some("pt-renamed"), Some("order-43"))
    );
    let started = app
        .ok(
            Method::PATCH,
            &format!("/api/application/servers/{server_id}/startup"),
            Some(json!({ "environment": { "GREETING": "changed" }, "egg": egg_id })),
            200,
        )
        .await;
    assert_eq!(started["attributes"]["container"]["environment"]["GREETING"], "changed");
    owner
        .ok(Method::POST, &format!("/api/client/servers/{identifier}/power"), Some(json!({ "signal": "kill" })), 204)
        .await;
    wait_for("stopped", async || {
        owner.get(&format!("/api/client/servers/{identifier}/resources")).await["attributes"]["current_state"]
            == "offline"
    })
    .await;
    app.ok(Method::POST, &format!("/api/application/servers/{server_id}/suspend"), None, 204).await;
    let suspended = app.get(&format!("/api/application/servers/{server_id}")).await;
    assert_eq!(
        (suspended["attributes"]["suspended"].as_bool(), suspended["attributes"]["status"].as_str()),
        (Some(true), Some("suspended"))
    );
    app.ok(Method::POST, &format!("/api/application/servers/{server_id}/suspend"), None, 204).await;
    assert_eq!(
        owner
            .call(Method::POST, &format!("/api/client/servers/{identifier}/power"), Some(json!({ "signal": "start" })))
            .await
            .0,
        409,
        "a suspended server does not start"
    );
    app.ok(Method::POST, &format!("/api/application/servers/{server_id}/unsuspend"), None, 204).await;
    app.ok(Method::POST, &format!("/api/application/servers/{server_id}/unsuspend"), None, 204).await;
    assert_eq!(app.get(&format!("/api/application/servers/{server_id}")).await["attributes"]["suspended"], false);
    app.ok(Method::POST, &format!("/api/application/servers/{server_id}/reinstall"), None, 204).await;
    wait_for("the reinstall", async || {
        app.get(&format!("/api/application/servers/{server_id}")).await["attributes"]["container"]["installed"] == 1
    })
    .await;

    // Removal.
    app.ok(Method::DELETE, &format!("/api/application/servers/{server_id}"), None, 204).await;
    wait_for("the server gone", async || {
        app.call(Method::GET, &format!("/api/application/servers/{server_id}"), None).await.0 == 404
    })
    .await;
    assert_eq!(owner.call(Method::GET, &format!("/api/client/servers/{identifier}"), None).await.0, 404);
    app.ok(Method::DELETE, &format!("/api/application/users/{user_id}"), None, 204).await;
    assert_eq!(app.call(Method::GET, &format!("/api/application/users/{user_id}"), None).await.0, 404);
    up.interrupt();
}

/// The client API's file operations, startup variables, settings, schedules and their tasks,
/// subusers and activity, on a running server.
async fn client_routes(owner: &Ptero, identifier: &str, base: &str) {
    let server = format!("/api/client/servers/{identifier}");
    let names = async |directory: &str| -> Vec<String> {
        let listing = owner.get(&format!("{server}/files/list?directory={directory}")).await;
        listing["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["attributes"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    owner
        .ok(Method::POST, &format!("{server}/files/create-folder"), Some(json!({ "root": "/", "name": "world" })), 204)
        .await;
    owner
        .ok(
            Method::PUT,
            &format!("{server}/files/rename"),
            Some(json!({ "root": "/", "files": [{ "from": "notes.txt", "to": "world/notes.txt" }] })),
            204,
        )
        .await;
    assert!(names("%2Fworld").await.contains(&"notes.txt".to_owned()));
    owner.ok(Method::POST, &format!("{server}/files/copy"), Some(json!({ "location": "/world/notes.txt" })), 204).await;
    owner.ok(Method::POST, &format!("{server}/files/copy"), Some(json!({ "location": "/world/notes.txt" })), 204).await;
    let mut copies = names("%2Fworld").await;
    copies.sort();
    assert_eq!(copies, ["notes copy 2.txt", "notes copy.txt", "notes.txt"]);
    owner
        .ok(
            Method::POST,
            &format!("{server}/files/chmod"),
            Some(json!({ "root": "/world", "files": [{ "file": "notes.txt", "mode": 600 }] })),
            204,
        )
        .await;
    let listing = owner.get(&format!("{server}/files/list?directory=%2Fworld")).await;
    let notes =
        listing["data"].as_array().unwrap().iter().find(|f| f["attributes"]["name"] == "notes.txt").unwrap().clone();
    assert_eq!(notes["attributes"]["mode_bits"], "600", "{notes}");
    let archive = owner
        .ok(Method::POST, &format!("{server}/files/compress"), Some(json!({ "root": "/", "files": ["world"] })), 200)
        .await;
    let archive_name = attributes(&archive, "file_object")["name"].as_str().unwrap().to_owned();
    assert!(archive_name.ends_with(".tar.gz"), "{archive}");
    owner
        .ok(Method::POST, &format!("{server}/files/delete"), Some(json!({ "root": "/", "files": ["world"] })), 204)
        .await;
    assert!(!names("%2F").await.contains(&"world".to_owned()));
    owner
        .ok(
            Method::POST,
            &format!("{server}/files/decompress"),
            Some(json!({ "root": "/", "file": archive_name })),
            204,
        )
        .await;
    assert!(names("%2Fworld").await.contains(&"notes copy.txt".to_owned()), "extracted");
    let (status, _) =
        owner.call(Method::POST, &format!("{server}/files/delete"), Some(json!({ "root": "/", "files": [] }))).await;
    assert_eq!(status, 422, "an empty list is refused");

    let startup = owner.get(&format!("{server}/startup")).await;
    assert_eq!(startup["object"], "list");
    assert!(startup["meta"]["startup_command"].is_string(), "{startup}");
    let greeting =
        startup["data"].as_array().unwrap().iter().find(|v| v["attributes"]["env_variable"] == "GREETING").unwrap();
    assert_eq!(
        (greeting["object"].as_str(), greeting["attributes"]["is_editable"].as_bool()),
        (Some("egg_variable"), Some(true))
    );
    let changed = owner
        .ok(
            Method::PUT,
            &format!("{server}/startup/variable"),
            Some(json!({ "key": "GREETING", "value": "howdy" })),
            200,
        )
        .await;
    assert_eq!(changed["attributes"]["server_value"], "howdy");
    let (status, body) = owner
        .call(Method::PUT, &format!("{server}/startup/variable"), Some(json!({ "key": "MOTD", "value": "x" })))
        .await;
    assert!(status == 403 || status == 422, "MOTD is not user-editable: {status} {body}");
    owner
        .ok(Method::POST, &format!("{server}/settings/rename"), Some(json!({ "name": "renamed by client" })), 204)
        .await;
    assert_eq!(owner.get(&server).await["attributes"]["name"], "renamed by client");

    // Schedules and their tasks.
    let schedule = owner
        .ok(Method::POST, &format!("{server}/schedules"), Some(json!({ "name": "nightly", "minute": "0", "hour": "3", "day_of_month": "*", "month": "*", "day_of_week": "*", "is_active": true })), 200)
        .await;
    let schedule = attributes(&schedule, "server_schedule").clone();
    let schedule_id = schedule["id"].as_u64().unwrap();
    assert_eq!(
        (schedule["cron"]["hour"].as_str(), schedule["is_active"].as_bool()),
        (Some("3"), Some(true)),
        "{schedule}"
    );
    assert!(schedule["next_run_at"].is_string());
    let task = owner
        .ok(
            Method::POST,
            &format!("{server}/schedules/{schedule_id}/tasks"),
            Some(json!({ "action": "command", "payload": "say nightly", "time_offset": 0 })),
            200,
        )
        .await;
    let task = attributes(&task, "schedule_task").clone();
    assert_eq!((task["action"].as_str(), task["sequence_id"].as_u64()), (Some("command"), Some(1)));
    let second = owner
        .ok(
            Method::POST,
            &format!("{server}/schedules/{schedule_id}/tasks"),
            Some(json!({ "action": "power", "payload": "restart", "time_offset": 10 })),
            200,
        )
        .await;
    let second_id = second["attributes"]["id"].as_u64().unwrap();
    let edited = owner
        .ok(
            Method::POST,
            &format!("{server}/schedules/{schedule_id}/tasks/{}", task["id"]),
            Some(json!({ "action": "command", "payload": "say edited", "time_offset": 5 })),
            200,
        )
        .await;
    assert_eq!(
        (edited["attributes"]["id"].as_u64(), edited["attributes"]["payload"].as_str()),
        (task["id"].as_u64(), Some("say edited")),
        "the task keeps its id"
    );
    owner.ok(Method::POST, &format!("{server}/schedules/{schedule_id}"), Some(json!({ "name": "nightly", "minute": "30", "hour": "4", "day_of_month": "*", "month": "*", "day_of_week": "*", "is_active": false })), 200).await;
    let shown = owner.get(&format!("{server}/schedules/{schedule_id}")).await;
    let tasks = shown["attributes"]["relationships"]["tasks"]["data"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 2, "an update keeps the tasks: {shown}");
    assert_eq!(tasks[1]["attributes"]["id"].as_u64(), Some(second_id), "and their ids");
    assert_eq!(
        (shown["attributes"]["cron"]["minute"].as_str(), shown["attributes"]["is_active"].as_bool()),
        (Some("30"), Some(false))
    );
    owner.ok(Method::DELETE, &format!("{server}/schedules/{schedule_id}/tasks/{second_id}"), None, 204).await;
    let (status, _) = owner
        .call(Method::POST, &format!("{server}/schedules/{schedule_id}/tasks"), Some(json!({ "action": "explode" })))
        .await;
    assert_eq!(status, 422);
    let list = owner.get(&format!("{server}/schedules")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    owner.ok(Method::POST, &format!("{server}/schedules/{schedule_id}/execute"), None, 202).await;
    owner.ok(Method::DELETE, &format!("{server}/schedules/{schedule_id}"), None, 204).await;
    assert_eq!(owner.call(Method::GET, &format!("{server}/schedules/{schedule_id}"), None).await.0, 404);

    // Subusers: an account of the panel, added by e-mail.
    let friend = owner
        .ok(
            Method::POST,
            &format!("{server}/users"),
            Some(json!({ "email": "admin@nexus.local", "permissions": ["control.console", "file.read"] })),
            200,
        )
        .await;
    let friend = attributes(&friend, "server_subuser").clone();
    let uuid = friend["uuid"].as_str().unwrap().to_owned();
    assert_eq!(friend["permissions"], json!(["control.console", "file.read"]));
    assert_eq!(owner.get(&format!("{server}/users")).await["data"].as_array().unwrap().len(), 1);
    let updated = owner
        .ok(Method::POST, &format!("{server}/users/{uuid}"), Some(json!({ "permissions": ["file.read"] })), 200)
        .await;
    assert_eq!(updated["attributes"]["permissions"], json!(["file.read"]));
    assert_eq!(owner.get(&format!("{server}/users/{uuid}")).await["attributes"]["email"], "admin@nexus.local");
    owner.ok(Method::DELETE, &format!("{server}/users/{uuid}"), None, 204).await;
    assert_eq!(owner.call(Method::GET, &format!("{server}/users/{uuid}"), None).await.0, 404);

    // What was done, in the server's activity.
    let activity = owner.get(&format!("{server}/activity")).await;
    assert_pagination(&activity, activity["meta"]["pagination"]["total"].as_u64().unwrap());
    assert_eq!(activity["meta"]["pagination"]["per_page"], 25);
    let first = &activity["data"][0];
    assert_eq!(first["object"], "activity_log");
    assert!(first["attributes"]["event"].is_string() && first["attributes"]["timestamp"].is_string(), "{first}");
    assert!(first["attributes"]["properties"].is_object(), "{first}");
    // A download link straight from the node, usable without the panel's credentials.
    let link = owner.get(&format!("{server}/files/download?file=%2Fworld%2Fnotes.txt")).await;
    let url = attributes(&link, "signed_url")["url"].as_str().unwrap().to_owned();
    assert!(!url.starts_with(base), "served by the node, not the panel: {url}");
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.text().await.unwrap(), "written through the client API");
    let (status, _) = owner.call(Method::GET, &format!("{server}/files/download"), None).await;
    assert_eq!(status, 422, "a file must be named");
}

/// The account routes: keys and credentials need a browser session; keys read.
async fn account_routes(owner: &Ptero, base: &str) {
    let permissions = owner.get("/api/client/permissions").await;
    assert_eq!(permissions["object"], "system_permissions");
    assert!(permissions["attributes"]["permissions"]["control"]["keys"]["start"].is_string(), "{permissions}");
    let (status, _) =
        owner.call(Method::POST, "/api/client/account/api-keys", Some(json!({ "description": "bot" }))).await;
    assert_eq!(status, 403, "a key cannot mint keys");

    let session = Client::login(base, "player", "correct horse battery").await;
    let (status, created) = session
        .call(Method::POST, "/api/client/account/api-keys", Some(json!({ "description": "bot", "allowed_ips": [] })))
        .await;
    assert_eq!(status, 200, "{created}");
    let identifier = created["attributes"]["identifier"].as_str().unwrap().to_owned();
    assert!(identifier.starts_with("ptlc_"), "{created}");
    let key = format!("{identifier}{}", created["meta"]["secret_token"].as_str().unwrap());
    let bot = Ptero::new(base, &key);
    assert_eq!(bot.get("/api/client/account").await["attributes"]["username"], "player");
    let keys = bot.get("/api/client/account/api-keys").await;
    assert!(
        keys["data"].as_array().unwrap().iter().any(|k| k["attributes"]["identifier"] == identifier.as_str()),
        "{keys}"
    );
    let (status, _) = session.call(Method::DELETE, &format!("/api/client/account/api-keys/{identifier}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(bot.call(Method::GET, "/api/client/account", None).await.0, 401, "a deleted key stops working");

    let (status, body) = session
        .call(Method::PUT, "/api/client/account/password", Some(json!({ "current_password": "wrong", "password": "another long password", "password_confirmation": "another long password" })))
        .await;
    assert_eq!((status, body["errors"][0]["meta"]["source_field"].as_str()), (422, Some("current_password")), "{body}");
    let (status, _) = session
        .call(Method::PUT, "/api/client/account/password", Some(json!({ "current_password": "correct horse battery", "password": "another long password", "password_confirmation": "another long password" })))
        .await;
    assert_eq!(status, 204);
    let (status, _) = session
        .call(
            Method::PUT,
            "/api/client/account/email",
            Some(json!({ "email": "pat.new@example.com", "password": "another long password" })),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(owner.get("/api/client/account").await["attributes"]["email"], "pat.new@example.com");
}

//! The authorization matrix of `/api/v1`: every route of the router's own table, called over
//! HTTP as each kind of caller, must be allowed for exactly the callers this file lists. A
//! route added to the router without a row here fails the test, as does a row whose route is
//! gone.
//!
//! Subusers appear twice: without any permission, and with exactly the one the route needs.
//! "Refused" is `401`, `403`, or on a server route the `404` that hides someone else's
//! server; anything else (including `400` for the empty bodies sent here, or `502` because no
//! node runs in this test) got past authorization.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use nexus_control::accounts::NewUser;
use nexus_control::nodes::NewNode;
use nexus_control::servers::NewServer;
use nexus_control::{ControlConfig, ControlPlane, NodeSecret};
use nexus_core::ids::ScheduleId;
use nexus_core::memory::MemoryStore;
use nexus_core::model::{ApiKeyScope, NodeCapacity, Role, ServerLimits, Subuser};
use nexus_core::store::Store;
use nexus_panel::api::auth::{CSRF_HEADER, SESSION_COOKIE};
use nexus_panel::api::{Access, PanelState, routes};
use nexus_panel::node_client::HttpNodeTransport;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    /// A user who does not own the server and is not its subuser.
    Stranger,
    /// A subuser of the server with no permission at all.
    SubuserWithout,
    /// A subuser of the server holding exactly the permission the route needs.
    SubuserWith,
    /// The server's owner, logged in.
    Owner,
    /// The owner's client key.
    OwnerClientKey,
    /// An admin's client key.
    AdminClientKey,
    /// An admin's application key.
    ApplicationKey,
    /// An admin, logged in.
    Admin,
}

use Who::*;
const EVERYONE: &[Who] =
    &[Anonymous, Stranger, SubuserWithout, SubuserWith, Owner, OwnerClientKey, AdminClientKey, ApplicationKey, Admin];
const LOGGED_IN: &[Who] =
    &[Stranger, SubuserWithout, SubuserWith, Owner, OwnerClientKey, AdminClientKey, ApplicationKey, Admin];
const ADMINS: &[Who] = &[ApplicationKey, Admin];
/// Browser sessions, not keys.
const SESSIONS: &[Who] = &[Stranger, SubuserWithout, SubuserWith, Owner, Admin];
/// Whoever holds the route's permission on the server.
const GRANTED: &[Who] = &[SubuserWith, Owner, OwnerClientKey, AdminClientKey, ApplicationKey, Admin];
/// Whoever may see the server at all.
const MEMBERS: &[Who] = &[SubuserWithout, SubuserWith, Owner, OwnerClientKey, AdminClientKey, ApplicationKey, Admin];

/// Who may call each route, and the one permission `SubuserWith` holds for it.
fn expected() -> BTreeMap<(&'static str, &'static str), (&'static [Who], &'static str)> {
    BTreeMap::from([
        (("GET", "/api/v1/openapi.json"), (EVERYONE, "")),
        (("GET", "/api/v1/health"), (EVERYONE, "")),
        (("POST", "/api/v1/auth/login"), (EVERYONE, "")),
        (("POST", "/api/v1/auth/login/totp"), (EVERYONE, "")),
        (("POST", "/api/v1/auth/logout"), (LOGGED_IN, "")),
        (("GET", "/api/v1/account"), (LOGGED_IN, "")),
        (("PUT", "/api/v1/account/password"), (SESSIONS, "")),
        (("POST", "/api/v1/account/totp"), (SESSIONS, "")),
        (("POST", "/api/v1/account/totp/enable"), (SESSIONS, "")),
        (("POST", "/api/v1/account/totp/disable"), (SESSIONS, "")),
        (("GET", "/api/v1/account/api-keys"), (LOGGED_IN, "")),
        (("POST", "/api/v1/account/api-keys"), (SESSIONS, "")),
        (("DELETE", "/api/v1/account/api-keys/{id}"), (SESSIONS, "")),
        (("GET", "/api/v1/permissions"), (LOGGED_IN, "")),
        (("GET", "/api/v1/users"), (ADMINS, "")),
        (("POST", "/api/v1/users"), (ADMINS, "")),
        (("GET", "/api/v1/activity"), (ADMINS, "")),
        (("GET", "/api/v1/locations"), (ADMINS, "")),
        (("POST", "/api/v1/locations"), (ADMINS, "")),
        (("GET", "/api/v1/nodes"), (ADMINS, "")),
        (("POST", "/api/v1/nodes"), (ADMINS, "")),
        (("GET", "/api/v1/nodes/{id}"), (ADMINS, "")),
        (("DELETE", "/api/v1/nodes/{id}"), (ADMINS, "")),
        (("GET", "/api/v1/nodes/{id}/configuration"), (ADMINS, "")),
        (("GET", "/api/v1/nodes/{id}/allocations"), (ADMINS, "")),
        (("POST", "/api/v1/nodes/{id}/allocations"), (ADMINS, "")),
        (("GET", "/api/v1/eggs"), (LOGGED_IN, "")),
        (("POST", "/api/v1/eggs"), (ADMINS, "")),
        (("GET", "/api/v1/eggs/{id}"), (LOGGED_IN, "")),
        (("PUT", "/api/v1/eggs/{id}"), (ADMINS, "")),
        (("PUT", "/api/v1/eggs/{id}/nest"), (ADMINS, "")),
        (("GET", "/api/v1/nests"), (ADMINS, "")),
        (("POST", "/api/v1/nests"), (ADMINS, "")),
        (("GET", "/api/v1/nests/{id}"), (ADMINS, "")),
        (("PUT", "/api/v1/nests/{id}"), (ADMINS, "")),
        (("DELETE", "/api/v1/nests/{id}"), (ADMINS, "")),
        (("POST", "/api/v1/nests/{id}/eggs"), (ADMINS, "")),
        (("GET", "/api/v1/eggs/{id}/export"), (ADMINS, "")),
        (("DELETE", "/api/v1/eggs/{id}"), (ADMINS, "")),
        (("GET", "/api/v1/servers"), (LOGGED_IN, "")),
        (("POST", "/api/v1/servers"), (ADMINS, "")),
        (("GET", "/api/v1/servers/{id}"), (MEMBERS, "")),
        (("GET", "/api/v1/servers/{id}/events"), (GRANTED, "activity.read")),
        (("POST", "/api/v1/servers/{id}/power"), (GRANTED, "control.start")),
        (("POST", "/api/v1/servers/{id}/command"), (GRANTED, "control.console")),
        (("GET", "/api/v1/servers/{id}/websocket"), (GRANTED, "websocket.connect")),
        (("POST", "/api/v1/servers/{id}/rename"), (GRANTED, "settings.rename")),
        (("POST", "/api/v1/servers/{id}/reinstall"), (GRANTED, "settings.reinstall")),
        (("GET", "/api/v1/servers/{id}/startup"), (GRANTED, "startup.read")),
        (("PUT", "/api/v1/servers/{id}/startup"), (GRANTED, "startup.update")),
        (("PUT", "/api/v1/servers/{id}/build"), (ADMINS, "")),
        (("POST", "/api/v1/servers/{id}/suspend"), (ADMINS, "")),
        (("POST", "/api/v1/servers/{id}/unsuspend"), (ADMINS, "")),
        (("GET", "/api/v1/servers/{id}/users"), (GRANTED, "user.read")),
        (("POST", "/api/v1/servers/{id}/users"), (GRANTED, "user.create")),
        (("PUT", "/api/v1/servers/{id}/users/{user}"), (GRANTED, "user.update")),
        (("DELETE", "/api/v1/servers/{id}/users/{user}"), (GRANTED, "user.delete")),
        (("GET", "/api/v1/servers/{id}/schedules"), (GRANTED, "schedule.read")),
        (("POST", "/api/v1/servers/{id}/schedules"), (GRANTED, "schedule.create")),
        (("GET", "/api/v1/servers/{id}/schedules/{schedule}"), (GRANTED, "schedule.read")),
        (("PUT", "/api/v1/servers/{id}/schedules/{schedule}"), (GRANTED, "schedule.update")),
        (("DELETE", "/api/v1/servers/{id}/schedules/{schedule}"), (GRANTED, "schedule.delete")),
        (("POST", "/api/v1/servers/{id}/schedules/{schedule}/run"), (GRANTED, "schedule.update")),
        (("GET", "/api/v1/servers/{id}/activity"), (GRANTED, "activity.read")),
        (("GET", "/api/v1/servers/{id}/resources"), (MEMBERS, "")),
        (("GET", "/api/v1/servers/{id}/files"), (GRANTED, "file.read")),
        (("DELETE", "/api/v1/servers/{id}/files"), (GRANTED, "file.delete")),
        (("GET", "/api/v1/servers/{id}/files/contents"), (GRANTED, "file.read-content")),
        (("PUT", "/api/v1/servers/{id}/files/contents"), (GRANTED, "file.create")),
        (("GET", "/api/v1/servers/{id}/files/download"), (GRANTED, "file.read-content")),
        (("POST", "/api/v1/servers/{id}/files/rename"), (GRANTED, "file.update")),
        (("POST", "/api/v1/servers/{id}/files/copy"), (GRANTED, "file.create")),
        (("POST", "/api/v1/servers/{id}/files/create-folder"), (GRANTED, "file.create")),
        (("POST", "/api/v1/servers/{id}/files/chmod"), (GRANTED, "file.update")),
        (("POST", "/api/v1/servers/{id}/files/compress"), (GRANTED, "file.archive")),
        (("POST", "/api/v1/servers/{id}/files/decompress"), (GRANTED, "file.archive")),
        (("DELETE", "/api/v1/servers/{id}"), (ADMINS, "")),
    ])
}

/// A body that passes parsing where the handler checks a permission that depends on it.
fn body_for(path: &str) -> &'static str {
    match path {
        "/api/v1/servers/{id}/power" => r#"{"action":"start"}"#,
        _ => "{}",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_allows_exactly_its_callers() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut config = ControlConfig::default();
    config.node_secret = Some(NodeSecret::new(b"authorization test node secret, 32+ bytes".to_vec()).unwrap());
    config.node_scheme = "http";
    config.node_timeout = Duration::from_secs(2);
    // No node runs: calls that reach one fail fast, after authorization.
    let nodes = Arc::new(HttpNodeTransport::new(Duration::from_secs(2)).unwrap());
    let control = Arc::new(ControlPlane::new(store.clone(), nodes, config).await.unwrap());

    let user = |name: &str, role| NewUser::new(name, format!("{name}@example.com"), format!("{name} password"), role);
    let admin = control.create_user(user("admin", Role::Admin)).await.unwrap();
    let owner = control.create_user(user("owner", Role::User)).await.unwrap();
    let stranger = control.create_user(user("stranger", Role::User)).await.unwrap();
    let without = control.create_user(user("without", Role::User)).await.unwrap();
    let with = control.create_user(user("with", Role::User)).await.unwrap();
    let target = control.create_user(user("target", Role::User)).await.unwrap();
    let capacity = NodeCapacity { memory_mb: 4096, disk_mb: 10_240, cpu_percent: 200 };
    let node = control.register_node(NewNode::new("n1", "127.0.0.1", 1, capacity)).await.unwrap().node;
    control.add_allocations(node.id, "127.0.0.1".parse().unwrap(), "30500-30509").await.unwrap();
    let egg = control
        .import_egg(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec())
        .await
        .unwrap();
    let mut request = NewServer::new("s", owner.id, egg.id, ServerLimits { memory_mb: 64, ..ServerLimits::default() });
    request.node = Some(node.id);
    let server = control.create_server(request).await.unwrap().server;
    let schedule = ScheduleId::new();

    let state = Arc::new(PanelState::new(control.clone(), "http://127.0.0.1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(nexus_panel::api::filter(state.clone())).incoming(listener).run());

    let owner_key = control.create_api_key(owner.id, ApiKeyScope::Client, "", None).await.unwrap().1;
    let admin_client_key = control.create_api_key(admin.id, ApiKeyScope::Client, "", None).await.unwrap().1;
    let application_key = control.create_api_key(admin.id, ApiKeyScope::Application, "", None).await.unwrap().1;

    let table = routes();
    let expected = expected();
    let listed: BTreeSet<(String, &str)> = table.iter().map(|r| (r.method.to_string(), r.path)).collect();
    let written: BTreeSet<(String, &str)> = expected.keys().map(|(m, p)| ((*m).to_owned(), *p)).collect();
    assert_eq!(listed, written, "the router's routes and this test's rows differ");
    // The served OpenAPI document names exactly these routes, and every answer below (each
    // refusal too) must match the schema it documents.
    let spec = common::Spec::fetch(&base).await;
    let documented: BTreeSet<(String, &str)> = spec
        .operations()
        .into_iter()
        .map(|(m, p)| (m, listed.iter().find(|(_, q)| *q == p).map_or("?", |(_, q)| *q)))
        .collect();
    assert_eq!(documented, listed, "the OpenAPI document and the router differ");

    let grant = |user, names: &[&str]| Subuser {
        server: server.id,
        user,
        permissions: names.iter().filter(|n| !n.is_empty()).map(|n| (*n).to_owned()).collect(),
        created_at: chrono::Utc::now(),
    };
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for route in &table {
        let (allowed, permission) = expected[&(route.method.as_str(), route.path)];
        let allowed: BTreeSet<Who> = allowed.iter().copied().collect();
        let id = match route.path {
            p if p.starts_with("/api/v1/servers/") => server.id.to_string(),
            p if p.starts_with("/api/v1/nodes/") => node.id.to_string(),
            p if p.starts_with("/api/v1/eggs/") => egg.id.to_string(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let path = route
            .path
            .replace("{id}", &id)
            .replace("{user}", &target.id.to_string())
            .replace("{schedule}", &schedule.to_string());
        for who in EVERYONE.iter().copied() {
            // What earlier calls removed is put back, so each call meets the same world.
            store.put_subuser(&grant(without.id, &[])).await.unwrap();
            store.put_subuser(&grant(with.id, &[permission])).await.unwrap();
            store.put_subuser(&grant(target.id, &["control.console"])).await.unwrap();
            if store.get_schedule(schedule).await.is_err() {
                let mut made = control
                    .create_schedule(
                        server.id,
                        serde_json::from_str(r#"{"name":"s","cron":"0 4 * * *"}"#).unwrap(),
                        &nexus_control::subusers::ServerAccess::Owner,
                    )
                    .await
                    .unwrap();
                store.delete_schedule(made.id).await.unwrap();
                made.id = schedule;
                store.create_schedule(&made).await.unwrap();
            }
            let mut request =
                http.request(route.method.clone(), format!("{base}{path}")).header("content-type", "application/json");
            if route.method != reqwest::Method::GET {
                request = request.body(body_for(route.path));
            }
            request = match who {
                Anonymous => request,
                OwnerClientKey => request.bearer_auth(&owner_key),
                AdminClientKey => request.bearer_auth(&admin_client_key),
                ApplicationKey => request.bearer_auth(&application_key),
                Stranger | SubuserWithout | SubuserWith | Owner | Admin => {
                    let user = match who {
                        Stranger => stranger.id,
                        SubuserWithout => without.id,
                        SubuserWith => with.id,
                        Owner => owner.id,
                        _ => admin.id,
                    };
                    // A fresh session per call: logout must not end the next call's.
                    let (session, csrf) = state.sessions.open(user);
                    request.header("cookie", format!("{SESSION_COOKIE}={session}")).header(CSRF_HEADER, csrf)
                }
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = common::content_type(&response);
            let body = response.text().await.unwrap();
            spec.check(route.method.as_str(), &path, status, content_type.as_deref(), &body);
            let unrouted = status == 405 || (status == 404 && body.contains("no route"));
            assert!(!unrouted, "{} {path} is documented but not served: {body}", route.method);
            let refused =
                status == 401 || status == 403 || (status == 404 && matches!(route.access, Access::Server(_)));
            if refused == allowed.contains(&who) {
                wrong.push(format!("{} {} as {who:?}: {status} {body}", route.method, route.path));
            }
        }
    }
    assert!(wrong.is_empty(), "authorization differs from the matrix:\n{}", wrong.join("\n"));
    // The last route deletes; with no node to tell, the server is only marked.
    assert!(store.get_server(server.id).await.unwrap().deletion_requested_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_its_csrf_token_cannot_change_anything() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let nodes = Arc::new(HttpNodeTransport::new(Duration::from_secs(2)).unwrap());
    let control = Arc::new(ControlPlane::new(store, nodes, ControlConfig::default()).await.unwrap());
    let admin =
        control.create_user(NewUser::new("admin", "admin@example.com", "admin password", Role::Admin)).await.unwrap();
    let state = Arc::new(PanelState::new(control.clone(), "http://127.0.0.1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(nexus_panel::api::filter(state.clone())).incoming(listener).run());
    let (session, csrf) = state.sessions.open(admin.id);
    let http = reqwest::Client::new();
    let body = r#"{"short":"fra1"}"#;
    for token in [None, Some("wrong"), Some(&csrf[..csrf.len() - 1])] {
        let mut request = http
            .post(format!("{base}/api/v1/locations"))
            .header("cookie", format!("{SESSION_COOKIE}={session}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.header(CSRF_HEADER, token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "CSRF token {token:?}");
    }
    // Reads need no token; the right token writes.
    let read = http.get(format!("{base}/api/v1/locations")).header("cookie", format!("{SESSION_COOKIE}={session}"));
    assert_eq!(read.send().await.unwrap().status(), 200);
    let write = http
        .post(format!("{base}/api/v1/locations"))
        .header("cookie", format!("{SESSION_COOKIE}={session}"))
        .header(CSRF_HEADER, &csrf)
        .header("content-type", "application/json")
        .body(body);
    assert_eq!(write.send().await.unwrap().status(), 201);
    // Another content type is refused even with the token (no form posts).
    let form = http
        .post(format!("{base}/api/v1/locations"))
        .header("cookie", format!("{SESSION_COOKIE}={session}"))
        .header(CSRF_HEADER, &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("short=ams1");
    assert_eq!(form.send().await.unwrap().status(), 415);
}

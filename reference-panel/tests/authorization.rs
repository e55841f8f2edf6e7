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
use warp::Filter;

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
        (("PUT", "/api/v1/eggs/{id}/templates"), (ADMINS, "")),
        (("GET", "/api/v1/templates"), (ADMINS, "")),
        (("GET", "/api/v1/templates/{layer}"), (ADMINS, "")),
        (("POST", "/api/v1/templates/{layer}"), (ADMINS, "")),
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
        (("PUT", "/api/v1/servers/{id}/templates"), (ADMINS, "")),
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
        (("GET", "/api/v1/servers/{id}/backups"), (GRANTED, "backup.read")),
        (("POST", "/api/v1/servers/{id}/backups"), (GRANTED, "backup.create")),
        (("GET", "/api/v1/servers/{id}/backups/{backup}"), (GRANTED, "backup.read")),
        (("DELETE", "/api/v1/servers/{id}/backups/{backup}"), (GRANTED, "backup.delete")),
        (("POST", "/api/v1/servers/{id}/backups/{backup}/lock"), (GRANTED, "backup.delete")),
        (("POST", "/api/v1/servers/{id}/backups/{backup}/restore"), (GRANTED, "backup.restore")),
        (("GET", "/api/v1/servers/{id}/backups/{backup}/download"), (GRANTED, "backup.download")),
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

/// Everything a matrix test calls: the control plane over a memory store, a served panel
/// (both APIs), one of each kind of caller, a node (that does not run), an egg, the owner's
/// server and a schedule on it.
struct World {
    store: Arc<dyn Store>,
    control: Arc<ControlPlane>,
    state: Arc<PanelState>,
    base: String,
    users: BTreeMap<&'static str, nexus_core::model::User>,
    node: nexus_core::model::Node,
    egg: nexus_core::model::Egg,
    server: nexus_core::model::Server,
    schedule: ScheduleId,
    backup: nexus_core::ids::BackupId,
    keys: BTreeMap<Who, String>,
}

async fn world() -> World {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut config = ControlConfig::default();
    config.node_secret = Some(NodeSecret::new(b"authorization test node secret, 32+ bytes".to_vec()).unwrap());
    config.node_scheme = "http";
    config.node_timeout = Duration::from_secs(2);
    // No node runs: calls that reach one fail fast, after authorization.
    let nodes = Arc::new(HttpNodeTransport::new(Duration::from_secs(2)).unwrap());
    let control = Arc::new(ControlPlane::new(store.clone(), nodes, config).await.unwrap());

    let user = |name: &str, role| NewUser::new(name, format!("{name}@example.com"), format!("{name} password"), role);
    let mut users = BTreeMap::new();
    for (name, role) in [
        ("admin", Role::Admin),
        ("owner", Role::User),
        ("stranger", Role::User),
        ("without", Role::User),
        ("with", Role::User),
        ("target", Role::User),
    ] {
        users.insert(name, control.create_user(user(name, role)).await.unwrap());
    }
    let capacity = NodeCapacity { memory_mb: 4096, disk_mb: 10_240, cpu_percent: 200 };
    let node = control.register_node(NewNode::new("n1", "127.0.0.1", 1, capacity)).await.unwrap().node;
    control.add_allocations(node.id, "127.0.0.1".parse().unwrap(), "30500-30509").await.unwrap();
    let egg = control
        .import_egg(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec())
        .await
        .unwrap();
    let mut request =
        NewServer::new("s", users["owner"].id, egg.id, ServerLimits { memory_mb: 64, ..ServerLimits::default() });
    request.node = Some(node.id);
    let server = control.create_server(request).await.unwrap().server;
    // A completed backup of the server, for the backup routes.
    let backup = nexus_core::model::Backup {
        id: nexus_core::ids::BackupId::new(),
        server: server.id,
        name: "nightly".into(),
        ignored: Vec::new(),
        state: nexus_core::model::BackupState::Succeeded,
        bytes: Some(10),
        checksum: Some("00".repeat(32)),
        locked: false,
        created_at: chrono::Utc::now(),
        completed_at: Some(chrono::Utc::now()),
    };
    store.create_backup(&backup).await.unwrap();

    let state = Arc::new(PanelState::new(control.clone(), "http://127.0.0.1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served =
        nexus_panel::api::filter(state.clone()).or(nexus_panel::api::pterodactyl::filter(state.clone())).unify();
    tokio::spawn(warp::serve(served).incoming(listener).run());

    let key = async |user: &str, scope| control.create_api_key(users[user].id, scope, "", None).await.unwrap().1;
    let keys = BTreeMap::from([
        (OwnerClientKey, key("owner", ApiKeyScope::Client).await),
        (AdminClientKey, key("admin", ApiKeyScope::Client).await),
        (ApplicationKey, key("admin", ApiKeyScope::Application).await),
    ]);
    World {
        store,
        control,
        state,
        base,
        users,
        node,
        egg,
        server,
        schedule: ScheduleId::new(),
        backup: backup.id,
        keys,
    }
}

impl World {
    /// Calls `method path` with `body` as `who`, after putting back what earlier calls
    /// removed (grants, the schedule), so each call meets the same world; `permission` is the
    /// one `SubuserWith` holds. Answers the status, content type and body.
    async fn call_as(
        &self,
        who: Who,
        method: &reqwest::Method,
        path: &str,
        body: &'static str,
        permission: &str,
    ) -> (u16, Option<String>, String) {
        let grant = |user: &str, names: &[&str]| Subuser {
            server: self.server.id,
            user: self.users[user].id,
            permissions: names.iter().filter(|n| !n.is_empty()).map(|n| (*n).to_owned()).collect(),
            created_at: chrono::Utc::now(),
        };
        self.store.put_subuser(&grant("without", &[])).await.unwrap();
        self.store.put_subuser(&grant("with", &[permission])).await.unwrap();
        self.store.put_subuser(&grant("target", &["control.console"])).await.unwrap();
        if self.store.get_schedule(self.schedule).await.is_err() {
            let mut made = self
                .control
                .create_schedule(
                    self.server.id,
                    serde_json::from_str(r#"{"name":"s","cron":"0 4 * * *"}"#).unwrap(),
                    &nexus_control::subusers::ServerAccess::Owner,
                )
                .await
                .unwrap();
            self.store.delete_schedule(made.id).await.unwrap();
            made.id = self.schedule;
            self.store.create_schedule(&made).await.unwrap();
        }
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if *method != reqwest::Method::GET {
            request = request.body(body);
        }
        request = match who {
            Anonymous => request,
            OwnerClientKey | AdminClientKey | ApplicationKey => request.bearer_auth(&self.keys[&who]),
            Stranger | SubuserWithout | SubuserWith | Owner | Admin => {
                let user = match who {
                    Stranger => "stranger",
                    SubuserWithout => "without",
                    SubuserWith => "with",
                    Owner => "owner",
                    _ => "admin",
                };
                // A fresh session per call: logout must not end the next call's.
                let (session, csrf) = self.state.sessions.open(self.users[user].id);
                request.header("cookie", format!("{SESSION_COOKIE}={session}")).header(CSRF_HEADER, csrf)
            }
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = common::content_type(&response);
        (status, content_type, response.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_allows_exactly_its_callers() {
    let world = world().await;
    let table = routes();
    let expected = expected();
    let listed: BTreeSet<(String, &str)> = table.iter().map(|r| (r.method.to_string(), r.path)).collect();
    let written: BTreeSet<(String, &str)> = expected.keys().map(|(m, p)| ((*m).to_owned(), *p)).collect();
    assert_eq!(listed, written, "the router's routes and this test's rows differ");
    // The served OpenAPI document names exactly these routes, and every answer below (each
    // refusal too) must match the schema it documents.
    let spec = common::Spec::fetch(&world.base).await;
    let documented: BTreeSet<(String, &str)> = spec
        .operations()
        .into_iter()
        .map(|(m, p)| (m, listed.iter().find(|(_, q)| *q == p).map_or("?", |(_, q)| *q)))
        .collect();
    assert_eq!(documented, listed, "the OpenAPI document and the router differ");

    let mut wrong = Vec::new();
    for route in &table {
        let (allowed, permission) = expected[&(route.method.as_str(), route.path)];
        let allowed: BTreeSet<Who> = allowed.iter().copied().collect();
        let id = match route.path {
            p if p.starts_with("/api/v1/servers/") => world.server.id.to_string(),
            p if p.starts_with("/api/v1/nodes/") => world.node.id.to_string(),
            p if p.starts_with("/api/v1/eggs/") => world.egg.id.to_string(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let path = route
            .path
            .replace("{id}", &id)
            .replace("{user}", &world.users["target"].id.to_string())
            .replace("{schedule}", &world.schedule.to_string())
            .replace("{backup}", &world.backup.to_string())
            .replace("{layer}", "base@1");
        for who in EVERYONE.iter().copied() {
            let (status, content_type, body) =
                world.call_as(who, &route.method, &path, body_for(route.path), permission).await;
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
    assert!(world.store.get_server(world.server.id).await.unwrap().deletion_requested_at.is_some());
}

/// Callers of Pterodactyl's client API: no application key (Pterodactyl refuses those there).
const CLIENT_LOGGED_IN: &[Who] = &[Stranger, SubuserWithout, SubuserWith, Owner, OwnerClientKey, AdminClientKey, Admin];
/// Whoever may see the server, through the client API.
const CLIENT_MEMBERS: &[Who] = &[SubuserWithout, SubuserWith, Owner, OwnerClientKey, AdminClientKey, Admin];
/// Whoever holds the route's permission, through the client API.
const CLIENT_GRANTED: &[Who] = &[SubuserWith, Owner, OwnerClientKey, AdminClientKey, Admin];

/// Who may call each route of Pterodactyl's APIs, and the permission `SubuserWith` holds.
fn expected_pterodactyl() -> BTreeMap<(&'static str, &'static str), (&'static [Who], &'static str)> {
    let application = [
        ("GET", "/api/application/users"),
        ("GET", "/api/application/users/external/{external_id}"),
        ("GET", "/api/application/users/{user}"),
        ("POST", "/api/application/users"),
        ("PATCH", "/api/application/users/{user}"),
        ("DELETE", "/api/application/users/{user}"),
        ("GET", "/api/application/locations"),
        ("GET", "/api/application/locations/{location}"),
        ("POST", "/api/application/locations"),
        ("PATCH", "/api/application/locations/{location}"),
        ("DELETE", "/api/application/locations/{location}"),
        ("GET", "/api/application/nodes"),
        ("GET", "/api/application/nodes/{node}"),
        ("GET", "/api/application/nodes/{node}/configuration"),
        ("POST", "/api/application/nodes"),
        ("PATCH", "/api/application/nodes/{node}"),
        ("DELETE", "/api/application/nodes/{node}"),
        ("GET", "/api/application/nodes/{node}/allocations"),
        ("POST", "/api/application/nodes/{node}/allocations"),
        ("DELETE", "/api/application/nodes/{node}/allocations/{allocation}"),
        ("GET", "/api/application/nests"),
        ("GET", "/api/application/nests/{nest}"),
        ("GET", "/api/application/nests/{nest}/eggs"),
        ("GET", "/api/application/nests/{nest}/eggs/{egg}"),
        ("GET", "/api/application/servers"),
        ("GET", "/api/application/servers/external/{external_id}"),
        ("GET", "/api/application/servers/{server}"),
        ("POST", "/api/application/servers"),
        ("PATCH", "/api/application/servers/{server}/details"),
        ("PATCH", "/api/application/servers/{server}/build"),
        ("PATCH", "/api/application/servers/{server}/startup"),
        ("POST", "/api/application/servers/{server}/suspend"),
        ("POST", "/api/application/servers/{server}/unsuspend"),
        ("POST", "/api/application/servers/{server}/reinstall"),
        ("DELETE", "/api/application/servers/{server}"),
        ("DELETE", "/api/application/servers/{server}/force"),
    ];
    let mut rows: BTreeMap<_, (&'static [Who], &'static str)> =
        application.into_iter().map(|route| (route, (ADMINS, ""))).collect();
    let server = "/api/client/servers/{server}";
    for (method, path, allowed) in [
        ("GET", "/api/client", CLIENT_LOGGED_IN),
        ("GET", "/api/client/account", CLIENT_LOGGED_IN),
        ("GET", "/api/client/permissions", CLIENT_LOGGED_IN),
        ("PUT", "/api/client/account/email", SESSIONS),
        ("PUT", "/api/client/account/password", SESSIONS),
        ("GET", "/api/client/account/api-keys", CLIENT_LOGGED_IN),
        ("POST", "/api/client/account/api-keys", SESSIONS),
        ("DELETE", "/api/client/account/api-keys/{identifier}", SESSIONS),
        ("GET", "/api/client/account/two-factor", SESSIONS),
        ("POST", "/api/client/account/two-factor", SESSIONS),
        ("POST", "/api/client/account/two-factor/disable", SESSIONS),
    ] {
        rows.insert((method, path), (allowed, ""));
    }
    let client: [(&str, &str, &'static [Who], &str); 42] = [
        ("GET", "", CLIENT_MEMBERS, ""),
        ("GET", "/resources", CLIENT_MEMBERS, ""),
        ("GET", "/websocket", CLIENT_GRANTED, "websocket.connect"),
        ("POST", "/command", CLIENT_GRANTED, "control.console"),
        ("POST", "/power", CLIENT_GRANTED, "control.start"),
        ("GET", "/files/list", CLIENT_GRANTED, "file.read"),
        ("GET", "/files/contents", CLIENT_GRANTED, "file.read-content"),
        ("GET", "/files/download", CLIENT_GRANTED, "file.read-content"),
        ("POST", "/files/write", CLIENT_GRANTED, "file.create"),
        ("PUT", "/files/rename", CLIENT_GRANTED, "file.update"),
        ("POST", "/files/copy", CLIENT_GRANTED, "file.create"),
        ("POST", "/files/delete", CLIENT_GRANTED, "file.delete"),
        ("POST", "/files/create-folder", CLIENT_GRANTED, "file.create"),
        ("POST", "/files/chmod", CLIENT_GRANTED, "file.update"),
        ("POST", "/files/compress", CLIENT_GRANTED, "file.archive"),
        ("POST", "/files/decompress", CLIENT_GRANTED, "file.archive"),
        ("GET", "/startup", CLIENT_GRANTED, "startup.read"),
        ("PUT", "/startup/variable", CLIENT_GRANTED, "startup.update"),
        ("POST", "/settings/rename", CLIENT_GRANTED, "settings.rename"),
        ("POST", "/settings/reinstall", CLIENT_GRANTED, "settings.reinstall"),
        ("GET", "/activity", CLIENT_GRANTED, "activity.read"),
        ("GET", "/schedules", CLIENT_GRANTED, "schedule.read"),
        ("POST", "/schedules", CLIENT_GRANTED, "schedule.create"),
        ("GET", "/schedules/{schedule}", CLIENT_GRANTED, "schedule.read"),
        ("POST", "/schedules/{schedule}", CLIENT_GRANTED, "schedule.update"),
        ("POST", "/schedules/{schedule}/execute", CLIENT_GRANTED, "schedule.update"),
        ("DELETE", "/schedules/{schedule}", CLIENT_GRANTED, "schedule.delete"),
        ("POST", "/schedules/{schedule}/tasks", CLIENT_GRANTED, "schedule.update"),
        ("POST", "/schedules/{schedule}/tasks/{task}", CLIENT_GRANTED, "schedule.update"),
        ("DELETE", "/schedules/{schedule}/tasks/{task}", CLIENT_GRANTED, "schedule.update"),
        ("GET", "/backups", CLIENT_GRANTED, "backup.read"),
        ("POST", "/backups", CLIENT_GRANTED, "backup.create"),
        ("GET", "/backups/{backup}", CLIENT_GRANTED, "backup.read"),
        ("GET", "/backups/{backup}/download", CLIENT_GRANTED, "backup.download"),
        ("POST", "/backups/{backup}/lock", CLIENT_GRANTED, "backup.delete"),
        ("POST", "/backups/{backup}/restore", CLIENT_GRANTED, "backup.restore"),
        ("DELETE", "/backups/{backup}", CLIENT_GRANTED, "backup.delete"),
        ("GET", "/users", CLIENT_GRANTED, "user.read"),
        ("POST", "/users", CLIENT_GRANTED, "user.create"),
        ("GET", "/users/{user}", CLIENT_GRANTED, "user.read"),
        ("POST", "/users/{user}", CLIENT_GRANTED, "user.update"),
        ("DELETE", "/users/{user}", CLIENT_GRANTED, "user.delete"),
    ];
    for (method, tail, allowed, permission) in client {
        rows.insert((method, format!("{server}{tail}").leak()), (allowed, permission));
    }
    rows
}

fn pterodactyl_body(path: &str) -> &'static str {
    match path {
        "/api/client/servers/{server}/power" => r#"{"signal":"start"}"#,
        _ => "{}",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pterodactyl_route_allows_exactly_its_callers() {
    use nexus_core::model::RecordKind;
    let world = world().await;
    let table = nexus_panel::api::pterodactyl::routes();
    let expected = expected_pterodactyl();
    let listed: BTreeSet<(String, &str)> = table.iter().map(|r| (r.method.to_string(), r.path)).collect();
    let written: BTreeSet<(String, &str)> = expected.keys().map(|(m, p)| ((*m).to_owned(), *p)).collect();
    assert_eq!(listed, written, "the router's Pterodactyl routes and this test's rows differ");

    let store = &world.store;
    let number = async |kind, key: String| store.record_refs(kind, &[key]).await.unwrap()[0].clone();
    let server = number(RecordKind::Server, world.server.id.to_string()).await;
    let schedule = number(RecordKind::Schedule, world.schedule.to_string()).await.number.to_string();
    let node = number(RecordKind::Node, world.node.id.to_string()).await.number.to_string();
    let egg = number(RecordKind::Egg, world.egg.id.to_string()).await.number.to_string();
    // Records that do not exist: an admin passes authorization and meets a 404.
    let missing = "999999".to_owned();
    let target = world.users["target"].id.to_string();
    // The server's deletions come last: a server being deleted refuses users' file routes.
    let mut ordered: Vec<_> = table.iter().collect();
    ordered.sort_by_key(|r| r.method == reqwest::Method::DELETE && r.path.starts_with("/api/application/servers/"));
    let mut wrong = Vec::new();
    for route in ordered {
        let (allowed, permission) = expected[&(route.method.as_str(), route.path)];
        let allowed: BTreeSet<Who> = allowed.iter().copied().collect();
        let client = route.path.starts_with("/api/client");
        let server_name = if client { server.short.clone() } else { server.number.to_string() };
        let path = route
            .path
            .replace("{server}", &server_name)
            .replace("{user}", if client { &target } else { &missing })
            .replace("{schedule}", &schedule)
            .replace("{task}", &missing)
            .replace("{node}", &node)
            .replace("{location}", &missing)
            .replace("{nest}", &missing)
            .replace("{egg}", &egg)
            .replace("{allocation}", &missing)
            .replace("{external_id}", "nobody")
            .replace("{identifier}", "ptlc_nothing")
            .replace("{backup}", &world.backup.to_string());
        for who in EVERYONE.iter().copied() {
            let (status, _, body) =
                world.call_as(who, &route.method, &path, pterodactyl_body(route.path), permission).await;
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if status >= 400 {
                let shape = value["errors"][0]["status"].as_str() == Some(status.to_string().as_str());
                assert!(shape, "{} {path}: not Pterodactyl's error shape: {body}", route.method);
            }
            let unrouted = status == 405 || (status == 404 && body.contains("no route"));
            assert!(!unrouted, "{} {path} is listed but not served: {body}", route.method);
            // A server the caller may not see is a 404 naming the server; a missing task
            // (a 404 naming that) got past authorization.
            let hidden = status == 404 && value["errors"][0]["detail"] == "server";
            let refused = status == 401 || status == 403 || (hidden && client);
            if refused == allowed.contains(&who) {
                wrong.push(format!("{} {} as {who:?}: {status} {body}", route.method, route.path));
            }
        }
    }
    assert!(wrong.is_empty(), "authorization differs from the matrix:\n{}", wrong.join("\n"));
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

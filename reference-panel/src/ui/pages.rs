//! The pages: who may see each, and what its template gets.

use crate::api::PanelState;
use crate::api::auth::Principal;
use nexus_core::ids::ServerId;
use nexus_core::model::{NodeStatus, Role, Server};
use nexus_core::store::{Page, ServerFilter};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tera::{Context, Tera};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

/// The templates, compiled into the binary (autoescaped: every name is `.html`).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("servers.html", include_str!("templates/servers.html")),
    ("server_head.html", include_str!("templates/server_head.html")),
    ("server.html", include_str!("templates/server.html")),
    ("files.html", include_str!("templates/files.html")),
    ("startup.html", include_str!("templates/startup.html")),
    ("account.html", include_str!("templates/account.html")),
    ("admin.html", include_str!("templates/admin.html")),
    ("eggs.html", include_str!("templates/eggs.html")),
    ("new_server.html", include_str!("templates/new_server.html")),
    ("schedules.html", include_str!("templates/schedules.html")),
    ("users.html", include_str!("templates/users.html")),
    ("activity.html", include_str!("templates/activity.html")),
    ("settings.html", include_str!("templates/settings.html")),
    ("nodes.html", include_str!("templates/nodes.html")),
    ("node.html", include_str!("templates/node.html")),
    ("admin_users.html", include_str!("templates/admin_users.html")),
    ("admin_servers.html", include_str!("templates/admin_servers.html")),
    ("admin_settings.html", include_str!("templates/admin_settings.html")),
    ("error.html", include_str!("templates/error.html")),
    ("admin_nav.html", include_str!("templates/admin_nav.html")),
];

/// Servers counted at most on the admin overview (in pages of 1,000).
const OVERVIEW_MAX_SERVERS: u64 = 50_000;

/// The compiled templates; a template that does not compile is a build defect the unit test
/// below catches, and at run time every page then answers 500 (logged) instead of panicking.
fn templates() -> Result<&'static Tera, &'static str> {
    static TERA: OnceLock<Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = Tera::default();
        tera.add_raw_templates(TEMPLATES.iter().copied()).map_err(|e| format!("{e:?}"))?;
        Ok(tera)
    })
    .as_ref()
    .map_err(String::as_str)
}

/// Where a page request came from.
struct Visit {
    principal: Option<Principal>,
}

/// What a page answers.
enum Outcome {
    /// The template rendered with the context.
    Page(&'static str, Context),
    /// Not logged in: to the login page.
    Login,
    /// Somewhere else (a logged-in user on `/login`).
    Redirect(&'static str),
    /// Not there, or not theirs (the same answer).
    NotFound,
    /// The panel failed (logged).
    Failed(String),
}

pub(super) fn filter(state: Arc<PanelState>) -> BoxedFilter<(Response,)> {
    let with_state = move || {
        let state = Arc::clone(&state);
        warp::any().map(move || Arc::clone(&state))
    };
    let visit = || warp::header::optional::<String>("cookie");
    let page = warp::get().and(warp::path::full()).and(visit()).and(with_state()).and_then(
        |path: warp::path::FullPath, cookie: Option<String>, state: Arc<PanelState>| async move {
            let segments: Vec<&str> = path.as_str().trim_matches('/').split('/').collect();
            let principal = crate::api::session_principal(&state, cookie.as_deref()).await.ok().flatten();
            let visit = Visit { principal };
            let outcome = match segments.as_slice() {
                ["login"] => login(&visit),
                [""] => servers(&visit),
                ["server", id] => server_page(&state, &visit, id, "server.html", None).await,
                ["server", id, "files"] => server_page(&state, &visit, id, "files.html", Some("file.read")).await,
                ["server", id, "startup"] => {
                    server_page(&state, &visit, id, "startup.html", Some("startup.read")).await
                }
                ["server", id, "schedules"] => {
                    server_page(&state, &visit, id, "schedules.html", Some("schedule.read")).await
                }
                ["server", id, "users"] => server_page(&state, &visit, id, "users.html", Some("user.read")).await,
                ["server", id, "activity"] => {
                    server_page(&state, &visit, id, "activity.html", Some("activity.read")).await
                }
                ["server", id, "settings"] => server_page(&state, &visit, id, "settings.html", None).await,
                ["account"] => account(&state, &visit).await,
                ["admin"] => admin(&state, &visit).await,
                ["admin", "eggs"] => admin_page(&state, &visit, "eggs.html", "Nests and eggs"),
                ["admin", "servers"] => admin_page(&state, &visit, "admin_servers.html", "All servers"),
                ["admin", "servers", "new"] => admin_page(&state, &visit, "new_server.html", "New server"),
                ["admin", "nodes"] => admin_page(&state, &visit, "nodes.html", "Nodes"),
                ["admin", "nodes", id] => admin_node(&state, &visit, id).await,
                ["admin", "users"] => admin_page(&state, &visit, "admin_users.html", "Users"),
                ["admin", "activity"] => admin_page(&state, &visit, "activity.html", "Activity"),
                ["admin", "settings"] => admin_page(&state, &visit, "admin_settings.html", "Settings"),
                _ => return Err(warp::reject::not_found()),
            };
            Ok::<_, warp::Rejection>(render(&visit, outcome))
        },
    );
    page.boxed()
}

fn base(visit: &Visit, title: &str, nav: &str) -> Context {
    let mut context = Context::new();
    context.insert("title", title);
    context.insert("nav", nav);
    context.insert("version", env!("CARGO_PKG_VERSION"));
    if let Some(principal) = &visit.principal {
        context.insert(
            "user",
            &json!({
                "name": principal.user.username,
                "email": principal.user.email,
                "admin": principal.user.role == Role::Admin,
            }),
        );
        if let crate::api::auth::Via::Session { csrf, .. } = &principal.via {
            context.insert("csrf", csrf);
        }
    }
    context
}

fn login(visit: &Visit) -> Outcome {
    if visit.principal.is_some() {
        return Outcome::Redirect("/");
    }
    Outcome::Page("login.html", base(visit, "Log in", "login"))
}

fn servers(visit: &Visit) -> Outcome {
    if visit.principal.is_none() {
        return Outcome::Login;
    }
    Outcome::Page("servers.html", base(visit, "Servers", "servers"))
}

async fn account(state: &PanelState, visit: &Visit) -> Outcome {
    let Some(principal) = &visit.principal else { return Outcome::Login };
    let mut context = base(visit, "Account", "account");
    match state.control.totp_enabled(principal.user.id).await {
        Ok(enabled) => context.insert("totp_enabled", &enabled),
        Err(e) => return Outcome::Failed(e.to_string()),
    }
    Outcome::Page("account.html", context)
}

fn admin_page(state: &PanelState, visit: &Visit, template: &'static str, title: &str) -> Outcome {
    match &visit.principal {
        None => Outcome::Login,
        Some(p) if p.user.role != Role::Admin => Outcome::NotFound,
        Some(_) => {
            let mut context = base(visit, title, "admin");
            let config = state.control.config();
            context.insert(
                "panel",
                &json!({
                    "public_url": state.public_url,
                    "heartbeat_secs": config.heartbeat_interval.as_secs(),
                    "node_secret": config.node_secret.is_some(),
                    "secure_cookies": state.secure_cookies,
                    "trusted_proxies": state.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            );
            Outcome::Page(template, context)
        }
    }
}

/// A node's page: its allocations (admins).
async fn admin_node(state: &PanelState, visit: &Visit, id: &str) -> Outcome {
    let (template, mut context) = match admin_page(state, visit, "node.html", "Node") {
        Outcome::Page(template, context) => (template, context),
        refused => return refused,
    };
    let Ok(id) = id.parse::<nexus_core::ids::NodeId>() else { return Outcome::NotFound };
    match state.control.store().get_node(id).await {
        Ok(node) => {
            context.insert("title", &node.name);
            context.insert("node", &json!({ "id": node.id.to_string(), "name": node.name, "fqdn": node.fqdn }));
            Outcome::Page(template, context)
        }
        Err(nexus_core::store::StoreError::NotFound { .. }) => Outcome::NotFound,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// A server page: the caller must see the server, and hold `needs` when given.
async fn server_page(
    state: &PanelState,
    visit: &Visit,
    id: &str,
    template: &'static str,
    needs: Option<&str>,
) -> Outcome {
    let Some(principal) = &visit.principal else { return Outcome::Login };
    let Ok(id) = id.parse::<ServerId>() else { return Outcome::NotFound };
    let server = match state.control.server(id).await {
        Ok(server) => server,
        Err(nexus_control::ControlError::UnknownServer(_)) => return Outcome::NotFound,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let access = match state.control.server_access(&principal.user, &server).await {
        Ok(Some(access)) => access,
        Ok(None) => return Outcome::NotFound,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if needs.is_some_and(|needed| !access.allows(needed)) {
        return Outcome::NotFound;
    }
    if template == "settings.html" && !access.allows("settings.rename") && !access.allows("settings.reinstall") {
        return Outcome::NotFound;
    }
    let address = match state.control.store().get_allocation(server.primary_allocation).await {
        Ok(allocation) => format!("{}:{}", allocation.ip, allocation.port),
        Err(_) => String::new(),
    };
    let tab = template.trim_end_matches(".html");
    let mut context = base(visit, &server.name, "servers");
    if let Ok(node) = state.control.store().get_node(server.node).await {
        context.insert("connect_src", &state.control.console_origin(&node));
    }
    context.insert("server", &server_json(&server, &address));
    context.insert("perms", &access.permissions());
    context.insert("tab", tab);
    Outcome::Page(template, context)
}

fn server_json(server: &Server, address: &str) -> Value {
    json!({
        "id": server.id.to_string(),
        "name": server.name,
        "state": server.state,
        "suspended": server.suspended,
        "address": address,
        "memory_mb": server.limits.memory_mb,
        "disk_mb": server.limits.disk_mb,
        "cpu_percent": server.limits.cpu_percent,
    })
}

/// The admin overview: nodes with their heartbeat age and booked resources, servers by state.
async fn admin(state: &PanelState, visit: &Visit) -> Outcome {
    let (template, mut context) = match admin_page(state, visit, "admin.html", "Overview") {
        Outcome::Page(template, context) => (template, context),
        refused => return refused,
    };
    let store = state.control.store();
    let (nodes, usage) = match (store.list_nodes().await, store.node_usage().await) {
        (Ok(nodes), Ok(usage)) => (nodes, usage),
        (Err(e), _) | (_, Err(e)) => return Outcome::Failed(e.to_string()),
    };
    let now = chrono::Utc::now();
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|node| {
            let used = usage.iter().find(|u| u.node == Some(node.id));
            json!({
                "name": node.name,
                "fqdn": node.fqdn,
                "online": node.status == NodeStatus::Online,
                "heartbeat_age": node.last_heartbeat.map(|at| (now - at).num_seconds().max(0)),
                "servers": used.map_or(0, |u| u.servers),
                "memory_mb": used.map_or(0, |u| u.memory_mb),
                "memory_capacity_mb": node.capacity.memory_mb,
                "disk_mb": used.map_or(0, |u| u.disk_mb),
                "disk_capacity_mb": node.capacity.disk_mb,
                "free_allocations": used.map_or(0, |u| u.free_allocations),
            })
        })
        .collect();
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let (mut counted, mut offset) = (0u64, 0u64);
    loop {
        let page = match store.list_servers(&ServerFilter::default(), Page { offset, limit: 1000 }).await {
            Ok(page) => page,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        for server in &page {
            let name = serde_json::to_value(server.state).ok().and_then(|v| v.as_str().map(str::to_owned));
            *by_state.entry(name.unwrap_or_default()).or_default() += 1;
        }
        counted += page.len() as u64;
        offset += 1000;
        if page.len() < 1000 || counted >= OVERVIEW_MAX_SERVERS {
            break;
        }
    }
    context.insert("online", &nodes.iter().filter(|n| n["online"] == true).count());
    context.insert("offline", &nodes.iter().filter(|n| n["online"] != true).count());
    context.insert("nodes", &nodes);
    context.insert("by_state", &by_state);
    context.insert("servers_total", &counted);
    context.insert("servers_truncated", &(counted >= OVERVIEW_MAX_SERVERS));
    Outcome::Page(template, context)
}

fn render(visit: &Visit, outcome: Outcome) -> Response {
    let (status, html) = match outcome {
        Outcome::Login => return redirect("/login"),
        Outcome::Redirect(to) => return redirect(to),
        Outcome::Page(template, context) => {
            let connect = context.get("connect_src").and_then(|v| v.as_str()).map(str::to_owned);
            let (status, html) = page(template, &context);
            let mut response = Response::new(html.into());
            *response.status_mut() = status;
            secure(&mut response, connect.as_deref());
            return response;
        }
        Outcome::NotFound => {
            (StatusCode::NOT_FOUND, error_page(visit, "Not found", "There is nothing here, or it is not yours to see."))
        }
        Outcome::Failed(e) => {
            tracing::error!(error = %e, "serving a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_page(
                    visit,
                    "Something went wrong",
                    "The panel could not show this page; its log has the details.",
                ),
            )
        }
    };
    let mut response = Response::new(html.into());
    *response.status_mut() = status;
    secure(&mut response, None);
    response
}

fn page(template: &'static str, context: &Context) -> (StatusCode, String) {
    let rendered = templates().and_then(|t| {
        t.render(template, context).map_err(|e| {
            tracing::error!(template, error = ?e, "rendering a page");
            "render"
        })
    });
    match rendered {
        Ok(html) => (StatusCode::OK, html),
        Err(e) => {
            tracing::error!(error = e, "the UI's templates");
            (StatusCode::INTERNAL_SERVER_ERROR, plain_error())
        }
    }
}

fn error_page(visit: &Visit, title: &str, message: &str) -> String {
    let mut context = base(visit, title, "");
    context.insert("message", message);
    templates().ok().and_then(|t| t.render("error.html", &context).ok()).unwrap_or_else(plain_error)
}

fn plain_error() -> String {
    "<!doctype html><title>Error</title><p>The panel could not show this page; its log has the details.</p>".into()
}

fn redirect(to: &'static str) -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert("location", HeaderValue::from_static(to));
    secure(&mut response, None);
    response
}

/// Headers every page carries; `console` is the one other origin its scripts may connect to
/// (the server's node, for the console socket).
fn secure(response: &mut Response, console: Option<&str>) {
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
    // A node's address is an admin's input: only host-and-port characters reach the header.
    let console = console.filter(|origin| origin.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:/[]".contains(&b)));
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'{}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        console.map(|origin| format!(" {origin}")).unwrap_or_default()
    );
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert("content-security-policy", policy);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes() {
        let tera = templates().unwrap();
        let visit = Visit { principal: None };
        let mut context = base(&visit, "<script>x</script>", "");
        context.insert("message", "<b>m</b>");
        let html = tera.render("error.html", &context).unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;&#x2F;script&gt;") && !html.contains("<b>m</b>"), "{html}");
    }
}

//! `/api/client`: the caller's account and the servers they may see, as Pterodactyl's client
//! area and its libraries use them. Server routes reuse `/api/v1`'s handlers, so both APIs
//! check and do exactly the same.

use super::application::{limits_of, status_of, user_names};
use super::body::{Body, required};
use super::shapes::{Paging, answer, date, item, no_content};
use super::{refs, store_error};
use crate::api::handlers::{files, servers};
use crate::api::router::Call;
use crate::api::{ApiError, PanelState};
use nexus_control::subusers::ServerAccess;
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{RecordKind, Role, Server};
use nexus_core::store::{Page, ServerFilter};
use nexus_core::transport::PowerAction;
use serde_json::{Value, json};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

type Answered = Result<Response, ApiError>;

pub(super) async fn account(state: Arc<PanelState>, call: Call) -> Answered {
    let user = &call.principal()?.user;
    let kept =
        state.control.store().record_refs(RecordKind::User, &[user.id.to_string()]).await.map_err(store_error)?;
    let kept = kept.into_iter().next().ok_or_else(|| ApiError::not_found("user"))?;
    let (first_name, last_name, language) = user_names(user, Some(&kept));
    let attributes = json!({
        "id": kept.number,
        "admin": user.role == Role::Admin,
        "username": user.username,
        "email": user.email,
        "first_name": first_name,
        "last_name": last_name,
        "language": language,
    });
    answer(StatusCode::OK, &item("user", attributes))
}

/// What Pterodactyl answers for a relationship the caller may not see.
fn null_resource() -> Value {
    json!({ "object": "null_resource", "attributes": null })
}

/// The servers as `call`'s caller sees them: variables only with `startup.read`, allocations
/// other than the primary only with `allocation.read` (as Pterodactyl's client API).
async fn server_attributes(state: &PanelState, call: &Call, servers: Vec<Server>) -> Result<Vec<Value>, ApiError> {
    let user = &call.principal()?.user;
    let store = state.control.store();
    let numbers = refs(state, RecordKind::Server, servers.iter().map(|s| s.id.to_string()).collect()).await?;
    let mut out = Vec::with_capacity(servers.len());
    for server in servers {
        let Some(access) = state.control.server_access(user, &server).await? else { continue };
        let record = numbers.get(&server.id.to_string());
        let node = store.get_node(server.node).await.map_err(store_error)?;
        let mut allocations = Vec::new();
        let shown: Vec<_> = if access.allows("allocation.read") {
            server.allocations().collect()
        } else {
            vec![server.primary_allocation]
        };
        for id in shown {
            if let Ok(a) = store.get_allocation(id).await {
                allocations.push(a);
            }
        }
        let allocation_numbers =
            refs(state, RecordKind::Allocation, allocations.iter().map(|a| a.id.to_string()).collect()).await?;
        let allocations: Vec<Value> = allocations
            .iter()
            .map(|a| {
                item(
                    "allocation",
                    json!({
                        "id": allocation_numbers.get(&a.id.to_string()).map_or(0, |r| r.number),
                        "ip": a.ip.to_string(),
                        "ip_alias": a.alias,
                        "port": a.port,
                        "notes": Value::Null,
                        "is_default": a.id == server.primary_allocation,
                    }),
                )
            })
            .collect();
        let egg = store.get_egg(server.egg).await.ok();
        let admin = matches!(access, ServerAccess::Admin);
        let variables: Vec<Value> = egg
            .iter()
            .flat_map(|egg| egg.variables.iter().filter(|v| v.user_viewable || admin))
            .map(|v| {
                let value = server.environment.get(&v.env_variable).unwrap_or(&v.default_value);
                egg_variable(
                    [&v.name, &v.description, &v.env_variable, &v.default_value, value],
                    v.user_editable,
                    &v.rules,
                )
            })
            .collect();
        out.push(json!({
            "server_owner": server.owner == user.id,
            "identifier": record.map_or_else(String::new, |r| r.short.clone()),
            "internal_id": record.map_or(0, |r| r.number),
            "uuid": server.id,
            "name": server.name,
            "node": node.name,
            "is_node_under_maintenance": node.maintenance,
            "sftp_details": { "ip": node.fqdn, "port": 2022 },
            "description": record.and_then(|r| r.extra.get("description")).map_or("", String::as_str),
            "limits": limits_of(&server.limits),
            "invocation": server.startup,
            "docker_image": server.image,
            "egg_features": egg.as_ref().map(|e| e.features.clone()),
            "feature_limits": { "databases": 0, "allocations": 1 + server.extra_allocations.len(), "backups": server.backup_limit },
            "status": status_of(&server),
            "is_suspended": server.suspended,
            "is_installing": matches!(server.state, ServerState::Requested | ServerState::Installing),
            "is_transferring": false,
            "relationships": {
                "allocations": { "object": "list", "data": allocations },
                "variables": if access.allows("startup.read") {
                    json!({ "object": "list", "data": variables })
                } else {
                    null_resource()
                },
            },
        }));
    }
    Ok(out)
}

pub(super) async fn list_servers(state: Arc<PanelState>, call: Call) -> Answered {
    let user = &call.principal()?.user;
    // As Pterodactyl: everyone sees their own servers and those shared with them; an admin
    // asking `?type=admin` (or `admin-all`) sees every server.
    let all =
        user.role == Role::Admin && matches!(call.query.get("type").map(String::as_str), Some("admin" | "admin-all"));
    let filter = ServerFilter { member: (!all).then_some(user.id), ..ServerFilter::default() };
    let rows = state.control.store().list_servers(&filter, Page::all()).await.map_err(store_error)?;
    let list = Paging::list(Paging::of(&call, &state)?, rows, "server", "/api/client", |rows| {
        server_attributes(&state, &call, rows)
    })
    .await?;
    answer(StatusCode::OK, &list)
}

pub(super) async fn show_server(state: Arc<PanelState>, call: Call) -> Answered {
    let server = call.server()?.clone();
    let mut attributes = server_attributes(&state, &call, vec![server])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("server"))?;
    let permissions: Vec<String> = match call.access()? {
        ServerAccess::Subuser(names) => names.iter().cloned().collect(),
        _ => vec!["*".into()],
    };
    let mut body = item("server", attributes.take());
    body["meta"] =
        json!({ "is_server_owner": matches!(call.access()?, ServerAccess::Owner), "user_permissions": permissions });
    answer(StatusCode::OK, &body)
}

pub(super) async fn resources(state: Arc<PanelState>, call: Call) -> Answered {
    let server = call.server()?.clone();
    let figures = files::resources(state, call).await?.into_body();
    let stats = figures.stats.as_ref();
    let current = match figures.state.unwrap_or(server.state) {
        ServerState::Running => "running",
        ServerState::Starting => "starting",
        ServerState::Stopping => "stopping",
        _ => "offline",
    };
    let attributes = json!({
        "current_state": current,
        "is_suspended": server.suspended,
        "resources": {
            "memory_bytes": stats.map_or(0, |s| s.memory_bytes),
            "cpu_absolute": stats.map_or(0.0, |s| s.cpu_percent),
            "disk_bytes": figures.disk_bytes,
            "network_rx_bytes": stats.map_or(0, |s| s.network_rx_bytes),
            "network_tx_bytes": stats.map_or(0, |s| s.network_tx_bytes),
            // Nodes report no uptime yet.
            "uptime": 0,
        },
    });
    answer(StatusCode::OK, &item("stats", attributes))
}

pub(super) async fn websocket(state: Arc<PanelState>, call: Call) -> Answered {
    let access = servers::websocket(state, call).await?.into_body();
    // The node serves Wings' console protocol next to its own: `…/ws` beside `…/console`.
    let socket = access.socket.strip_suffix("/console").map_or(access.socket.clone(), |base| format!("{base}/ws"));
    answer(StatusCode::OK, &json!({ "data": { "token": access.token, "socket": socket } }))
}

pub(super) async fn command(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let command = body.string("command")?.ok_or_else(|| required("command"))?;
    servers::command(state, call, servers::Command { command }).await?;
    no_content()
}

pub(super) async fn power(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let action = match body.required_string("signal")?.as_str() {
        "start" => PowerAction::Start,
        "stop" => PowerAction::Stop,
        "restart" => PowerAction::Restart,
        "kill" => PowerAction::Kill,
        _ => return Err(ApiError::invalid("signal", "The selected signal is invalid.")),
    };
    servers::power(state, call, servers::Power { action }).await?;
    no_content()
}

pub(super) async fn list_files(state: Arc<PanelState>, call: Call) -> Answered {
    let entries = files::list(state, call).await?.into_body();
    let data: Vec<Value> = entries.into_iter().map(file_object).collect();
    answer(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

/// `drwxr-xr-x` for a mode.
fn mode_string(mode: u32, directory: bool, symlink: bool) -> String {
    let kind = if symlink {
        'l'
    } else if directory {
        'd'
    } else {
        '-'
    };
    let bits = "rwxrwxrwx".chars().enumerate().map(|(i, c)| if mode & (0o400 >> i) != 0 { c } else { '-' });
    std::iter::once(kind).chain(bits).collect()
}

pub(super) async fn file_contents(state: Arc<PanelState>, call: Call) -> Answered {
    Ok(files::contents(state, call).await?.into_text())
}

pub(super) async fn write_file(state: Arc<PanelState>, call: Call) -> Answered {
    files::write(state, call).await?;
    no_content()
}

/// `name` inside folder `root`, as Pterodactyl's file bodies name files.
fn under(root: &str, name: &str) -> String {
    format!("{}/{}", root.trim_end_matches('/'), name.trim_start_matches('/'))
}

/// The `root` of a file body (`/` when absent).
fn root_of(body: &Body) -> Result<String, ApiError> {
    Ok(body.string("root")?.unwrap_or_else(|| "/".to_owned()))
}

/// Most files one request may name.
const MAX_FILES: usize = 100;

/// The `files` list of a body: names, or objects whose `field` is the name.
fn file_list(body: &Body) -> Result<Vec<serde_json::Value>, ApiError> {
    let files = match body.get("files") {
        Some(Value::Array(files)) if !files.is_empty() && files.len() <= MAX_FILES => files.clone(),
        Some(_) => return Err(ApiError::invalid("files", format!("The files must list 1 to {MAX_FILES} entries."))),
        None => return Err(required("files")),
    };
    Ok(files)
}

fn text_of(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(ApiError::invalid(field, format!("The {field} must be a string."))),
    }
}

pub(super) async fn rename_files(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let root = root_of(&body)?;
    for entry in file_list(&body)? {
        let (from, to) = (text_of(&entry["from"], "files.from")?, text_of(&entry["to"], "files.to")?);
        files::rename_path(&state, &call, &under(&root, &from), &under(&root, &to)).await?;
    }
    no_content()
}

pub(super) async fn copy_file(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let location = body.required_string("location")?;
    // As Pterodactyl: `name copy.ext` beside the original, then `name copy 2.ext`, ...
    let (folder, name) = location.rsplit_once('/').unwrap_or(("", &location));
    // `world.tar.gz` copies to `world copy.tar.gz`, as Wings names it.
    let split = match name.rsplit_once('.') {
        Some((stem, last)) => match stem.strip_suffix(".tar") {
            Some(base) if !base.is_empty() => Some((base, format!(".tar.{last}"))),
            _ => Some((stem, format!(".{last}"))),
        },
        None => None,
    };
    let (stem, extension) = match split {
        Some((stem, extension)) if !stem.is_empty() => (stem, extension),
        _ => (name, String::new()),
    };
    for attempt in 1..=50 {
        let suffix = if attempt == 1 { " copy".to_owned() } else { format!(" copy {attempt}") };
        let target = format!("{folder}/{stem}{suffix}{extension}");
        match files::copy_path(&state, &call, &location, &target).await {
            Ok(_) => return no_content(),
            Err(e) if e.status == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::bad_request("too many copies of this file exist already"))
}

pub(super) async fn delete_files(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let root = root_of(&body)?;
    for entry in file_list(&body)? {
        files::delete_path(&state, &call, &under(&root, &text_of(&entry, "files")?)).await?;
    }
    no_content()
}

pub(super) async fn create_folder(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let path = under(&root_of(&body)?, &body.required_string("name")?);
    files::make_folder(&state, &call, &path).await?;
    no_content()
}

pub(super) async fn chmod_files(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let root = root_of(&body)?;
    for entry in file_list(&body)? {
        let (file, mode) = (text_of(&entry["file"], "files.file")?, text_of(&entry["mode"], "files.mode")?);
        files::chmod_path(&state, &call, &under(&root, &file), &mode).await?;
    }
    no_content()
}

pub(super) async fn compress_files(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let root = root_of(&body)?;
    let names = file_list(&body)?.iter().map(|f| text_of(f, "files")).collect::<Result<Vec<_>, _>>()?;
    let archive = files::compress_paths(&state, &call, &root, &names, None).await?;
    answer(StatusCode::OK, &file_object(archive))
}

pub(super) async fn decompress_file(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let root = root_of(&body)?;
    let file = under(&root, &body.required_string("file")?);
    files::decompress_file(&state, &call, &file, &root).await?;
    no_content()
}

pub(super) async fn startup(state: Arc<PanelState>, call: Call) -> Answered {
    let view = servers::startup(state, call).await?.into_body();
    answer(StatusCode::OK, &startup_list(&view))
}

fn startup_variable(v: &servers::StartupVariable) -> Value {
    egg_variable([&v.name, &v.description, &v.env_variable, &v.default_value, &v.value], v.editable, &v.rules)
}

/// A variable as the client API shows it: `[name, description, env_variable, default_value,
/// server_value]`, whether the caller may edit it, its rules.
fn egg_variable([name, description, env, default, value]: [&str; 5], editable: bool, rules: &[String]) -> Value {
    item(
        "egg_variable",
        json!({
            "name": name,
            "description": description,
            "env_variable": env,
            "default_value": default,
            "server_value": value,
            "is_editable": editable,
            "rules": rules.join("|"),
        }),
    )
}

fn startup_list(view: &servers::StartupView) -> Value {
    json!({
        "object": "list",
        "data": view.variables.iter().map(startup_variable).collect::<Vec<_>>(),
        "meta": {
            "startup_command": view.startup,
            "raw_startup_command": view.startup,
            "docker_images": { view.image.clone(): view.image },
        },
    })
}

pub(super) async fn update_variable(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let key = body.required_string("key")?;
    let value = body.string("value")?.unwrap_or_default();
    let server = call.server()?.clone();
    let access = call.access()?.clone();
    let variables = std::collections::BTreeMap::from([(key.clone(), value)]);
    servers::update_startup(Arc::clone(&state), call, servers::UpdateStartup { variables }).await?;
    // Read back as the caller sees it.
    let refreshed = Call::for_server(state.control.server(server.id).await?, access);
    let view = servers::startup(state, refreshed).await?.into_body();
    let variable =
        view.variables.iter().find(|v| v.env_variable == key).ok_or_else(|| ApiError::not_found("variable"))?;
    answer(StatusCode::OK, &startup_variable(variable))
}

pub(super) async fn rename(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let name = body.required_string("name")?;
    servers::rename(state, call, servers::Rename { name }).await?;
    no_content()
}

pub(super) async fn reinstall(state: Arc<PanelState>, call: Call) -> Answered {
    servers::reinstall(state, call).await?;
    let mut response = no_content()?;
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// Audit entries the activity list pages through (the newest).
const ACTIVITY_WINDOW: u64 = 500;

pub(super) async fn activity(state: Arc<PanelState>, call: Call) -> Answered {
    let subject = nexus_core::model::AuditSubject::Server(call.server()?.id);
    let events =
        state.control.store().list_audit(Some(&subject), Page::first(ACTIVITY_WINDOW)).await.map_err(store_error)?;
    let viewer = call.principal()?.clone();
    let path = format!("/api/client/servers/{}/activity", call.params[0]);
    // As Pterodactyl: 25 entries a page unless asked.
    let list = Paging::list(Paging::with_default(&call, &state, 25)?, events, "activity_log", &path, |rows| async {
        let views = crate::api::handlers::schedules::with_names(&state, rows, &viewer).await;
        Ok(views
            .into_iter()
            .map(|v| {
                json!({
                    "id": v.event.id,
                    "batch": Value::Null,
                    "event": v.event.action,
                    "is_api": false,
                    "ip": v.event.ip,
                    "description": Value::Null,
                    "properties": if v.event.metadata.is_null() { json!({}) } else { v.event.metadata },
                    "has_additional_metadata": false,
                    "timestamp": date(v.event.at),
                    "relationships": { "actor": v.actor_name.map(|name| item("user", json!({ "username": name }))) },
                })
            })
            .collect())
    })
    .await?;
    answer(StatusCode::OK, &list)
}

/// A file entry as Pterodactyl's `file_object`.
fn file_object(e: nexus_files::FileEntry) -> Value {
    let is_file = matches!(e.kind, nexus_files::FileKind::File);
    let directory = matches!(e.kind, nexus_files::FileKind::Directory);
    item(
        "file_object",
        json!({
            "name": e.name,
            "mode": mode_string(e.mode, directory, e.symlink),
            "mode_bits": format!("{:o}", e.mode & 0o777),
            "size": e.size,
            "is_file": is_file,
            "is_symlink": e.symlink,
            "mimetype": if directory { "inode/directory" } else { "application/octet-stream" },
            "created_at": e.modified.map(date),
            "modified_at": e.modified.map(date),
        }),
    )
}

/// A link the browser downloads the file from, straight from the node: the node's file
/// route with a short-lived token that lets it read this server's files (Pterodactyl's
/// signed URL names one file; this token reads any of the server's files, which whoever
/// holds `file.read-content` may anyway).
pub(super) async fn download_file(state: Arc<PanelState>, call: Call) -> Answered {
    let server = call.server()?.clone();
    let file = files::path_param(&call, "file", None)?;
    if file.trim_matches('/').is_empty() {
        return Err(ApiError::invalid("file", "The file must name a file."));
    }
    let path = crate::node_proxy::file_path(server.id, &file);
    signed_url(&state, &server, &path, nexus_core::model::Permission::FileRead).await
}

/// Pterodactyl's `signed_url` answer: `path` on the server's node with a short-lived token
/// granting `permission` on that server.
pub(super) async fn signed_url(
    state: &PanelState,
    server: &nexus_core::model::Server,
    path: &str,
    permission: nexus_core::model::Permission,
) -> Answered {
    let access = state.control.console_access(server.id, &[permission]).await?;
    let node = state.control.store().get_node(server.node).await.map_err(store_error)?;
    let url = format!("{}{path}?token={}", state.control.node_origin(&node), access.token);
    answer(StatusCode::OK, &item("signed_url", json!({ "url": url })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(0o644, false, false), "-rw-r--r--");
        assert_eq!(mode_string(0o755, true, false), "drwxr-xr-x");
        assert_eq!(mode_string(0o777, false, true), "lrwxrwxrwx");
        assert_eq!(mode_string(0o4600, false, false), "-rw-------", "set-id bits are not shown");
    }

    #[test]
    fn names_join_their_root() {
        assert_eq!(under("/", "a.txt"), "/a.txt");
        assert_eq!(under("/world/", "/region"), "/world/region");
        assert_eq!(under("world", "x"), "world/x");
    }
}

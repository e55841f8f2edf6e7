//! Server management routes (node token only), `/api/system` and `/metrics`.

use super::request::{json_body, query, server_id};
use super::{ApiError, ApiState, caller, json, no_content, respond, with_state};
use crate::auth::Caller;
use crate::metrics::{self, resident_memory_bytes};
use nexus_core::ids::ServerId;
use nexus_core::transport::validate::printable;
use nexus_core::transport::{PowerAction, ServerSpec};
use std::sync::Arc;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

pub use nexus_wire::api::SystemInfo;
use nexus_wire::api::{CommandRequest, CreateServerQuery, PowerQuery, PowerRequest, ServerDetails};

pub(super) fn routes(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    let node = || caller(Arc::clone(&state), false);
    let st = || with_state(Arc::clone(&state));
    let limit = state.max_json_body;

    let system = warp::path!("api" / "system")
        .and(warp::get())
        .and(node())
        .and(st())
        .map(|_: Caller, state: Arc<ApiState>| json(&system_info(&state), 200));

    let list = warp::path!("api" / "servers")
        .and(warp::get())
        .and(node())
        .and(st())
        .map(|_: Caller, state: Arc<ApiState>| json(&state.agent.servers(), 200));

    let create = warp::path!("api" / "servers")
        .and(warp::post())
        .and(node())
        .and(query::<CreateServerQuery>())
        .and(json_body::<ServerSpec>(limit))
        .and(st())
        .and_then(|_: Caller, query: CreateServerQuery, spec: ServerSpec, state: Arc<ApiState>| async move {
            respond(create(&state, spec, query.install).await)
        });

    let details = server_id().and(warp::path::end()).and(warp::get()).and(node()).and(st()).map(
        |id: ServerId, _: Caller, state: Arc<ApiState>| match state.agent.spec(id) {
            Some(spec) => {
                let status = state.agent.servers().into_iter().find(|s| s.server == id).map(|s| s.state);
                let disk_bytes = state.agent.disk_usage(id).unwrap_or(0);
                let stats = state.agent.resources(id);
                json(&ServerDetails { server: id, state: status, disk_bytes, stats, spec }, 200)
            }
            None => ApiError::new(404, "unknown_server", format!("unknown server {id}")).into_response(),
        },
    );

    let destroy = server_id().and(warp::path::end()).and(warp::delete()).and(node()).and(st()).and_then(
        |id: ServerId, _: Caller, state: Arc<ApiState>| async move {
            let result = state.agent.destroy_server(id).await;
            if result.is_ok() {
                // The archives and restore leftovers go with the server.
                state.backups.server_destroyed(id).await;
            }
            state.files.forget(id);
            state.commands.forget(id);
            state.power.forget(id);
            respond(result.map(|()| no_content()).map_err(ApiError::from))
        },
    );

    let power = server_id()
        .and(warp::path!("power"))
        .and(warp::post())
        .and(node())
        .and(query::<PowerQuery>())
        .and(json_body::<PowerRequest>(limit))
        .and(st())
        .and_then(|id: ServerId, _: Caller, query: PowerQuery, body: PowerRequest, state: Arc<ApiState>| async move {
            respond(power(&state, id, body.action, query.wait).await)
        });

    let install = server_id().and(warp::path!("install")).and(warp::post()).and(node()).and(st()).and_then(
        |id: ServerId, _: Caller, state: Arc<ApiState>| async move {
            let result = state.agent.install(id).await;
            // What the script writes is not counted by a cached manager: the next one scans.
            state.files.forget(id);
            respond(result.map(|()| no_content()).map_err(ApiError::from))
        },
    );

    let command = server_id()
        .and(warp::path!("commands"))
        .and(warp::post())
        .and(node())
        .and(json_body::<CommandRequest>(limit))
        .and(st())
        .and_then(|id: ServerId, caller: Caller, body: CommandRequest, state: Arc<ApiState>| async move {
            respond(send_command(&state, id, &caller, &body.command).await.map(|()| no_content()))
        });

    let install_log = server_id().and(warp::path!("install-log")).and(warp::get()).and(node()).and(st()).and_then(
        |id: ServerId, _: Caller, state: Arc<ApiState>| async move {
            respond(
                state
                    .agent
                    .install_log(id)
                    .await
                    .map(|log| {
                        warp::reply::with_header(log, "content-type", "text/plain; charset=utf-8").into_response()
                    })
                    .map_err(ApiError::from),
            )
        },
    );

    system
        .or(list)
        .unify()
        .or(create)
        .unify()
        .or(details)
        .unify()
        .or(destroy)
        .unify()
        .or(power)
        .unify()
        .or(install)
        .unify()
        .or(command)
        .unify()
        .or(install_log)
        .unify()
        .boxed()
}

/// `POST /api/servers/:id/power`. As Wings: `202 Accepted` at once, the action carried out in
/// the background, its progress reported as lifecycle events and its failure, if any, as a
/// console notice (a stop may take the whole stop timeout; an HTTP call must not). With
/// `?wait=true`: `204` once done, or the action's typed error.
async fn power(state: &Arc<ApiState>, id: ServerId, action: PowerAction, wait: bool) -> Result<Response, ApiError> {
    if wait {
        state.agent.power(id, action).await?;
        return Ok(no_content());
    }
    if state.agent.state(id).is_none() {
        return Err(ApiError::new(404, "unknown_server", format!("unknown server {id}")));
    }
    state.power.submit(&state.agent, id, action)?;
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::ACCEPTED).into_response())
}

pub(super) fn action_name(action: PowerAction) -> &'static str {
    match action {
        PowerAction::Start => "start",
        PowerAction::Stop => "stop",
        PowerAction::Restart => "restart",
        PowerAction::Kill => "kill",
    }
}

/// `POST /api/servers`: the spec is checked completely before the agent sees it, so an
/// impossible one is refused here (`422 invalid_spec` naming the field) instead of being
/// stored and failing at every start.
async fn create(state: &ApiState, spec: ServerSpec, install: bool) -> Result<Response, ApiError> {
    check_spec(state, &spec)?;
    let id = spec.id;
    // A new spec may change the denylist or quota: drop the cached file manager.
    state.files.forget(id);
    state.agent.create_server(spec, install).await?;
    if install {
        state.files.forget(id);
    }
    Ok(json(&serde_json::json!({ "server": id }), 201))
}

/// What [`ServerSpec::validate`] checks, plus what only this daemon can: the denylist as its
/// file manager compiles it, and the startup command as its preparer renders it.
pub(super) fn check_spec(state: &ApiState, spec: &ServerSpec) -> Result<(), ApiError> {
    spec.validate()?;
    check_denylist(&spec.file_denylist)?;
    state.preparer.render_startup(spec).map_err(|e| {
        use nexus_eggs::startup::StartupError;
        let field = match &e {
            StartupError::InvalidVariableName { name }
            | StartupError::ReservedVariable { name }
            | StartupError::NulByte { name }
            | StartupError::NotAnInteger { name } => format!("environment.{}", printable(name)),
            _ => "startup".to_owned(),
        };
        ApiError::new(422, "invalid_spec", format!("{field}: {e}")).with_field(field)
    })?;
    Ok(())
}

/// Compiles `patterns` the way the file manager does (`files/denylist.rs`: gitignore lines,
/// case-insensitive), so a pattern it would refuse (and with it every file request of the
/// server, as `500 invalid_config`) is refused at create, naming the pattern.
fn check_denylist(patterns: &[String]) -> Result<(), ApiError> {
    let invalid =
        |field: String, e: ignore::Error| ApiError::new(422, "invalid_spec", format!("{field}: {e}")).with_field(field);
    let mut builder = ignore::gitignore::GitignoreBuilder::new(".");
    builder.case_insensitive(true).map_err(|e| invalid("file_denylist".into(), e))?;
    for (i, pattern) in patterns.iter().enumerate() {
        builder.add_line(None, pattern).map_err(|e| invalid(format!("file_denylist[{i}]"), e))?;
    }
    builder.build().map_err(|e| invalid("file_denylist".into(), e))?;
    Ok(())
}

/// One console command from `caller`, after its server's rate limit (see [`super::limit`]).
pub(super) async fn send_command(state: &ApiState, id: ServerId, caller: &Caller, line: &str) -> Result<(), ApiError> {
    state.commands.check(id, caller)?;
    Ok(state.agent.send_command(id, line).await?)
}

/// `GET /metrics`.
pub(super) fn metrics_route(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    let auth = if state.metrics_require_token {
        caller(Arc::clone(&state), false)
    } else {
        warp::any().map(|| Caller::Node).boxed()
    };
    warp::path!("metrics")
        .and(warp::get())
        .and(auth)
        .and(with_state(state))
        .map(|_: Caller, state: Arc<ApiState>| {
            warp::reply::with_header(render_metrics(&state), "content-type", "text/plain; version=0.0.4")
                .into_response()
        })
        .boxed()
}

fn render_metrics(state: &ApiState) -> String {
    let mut out = String::with_capacity(4096);
    metrics::render_agent(&state.agent.metrics(), &mut out);
    state.http.render(&mut out);
    if let Some(rss) = resident_memory_bytes() {
        metrics::metric(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory of the daemon.", rss);
    }
    let listener = &state.listener;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    metrics::metric(&mut out, "nexus_wings_connections_open", "gauge", "HTTP connections open.", load(&listener.open));
    metrics::metric(
        &mut out,
        "nexus_wings_connections_refused_total",
        "counter",
        "Connections closed at once because the connection cap was reached.",
        load(&listener.refused),
    );
    metrics::metric(
        &mut out,
        "nexus_wings_connections_idle_closed_total",
        "counter",
        "Connections closed for sending nothing for too long.",
        load(&listener.idle_closed),
    );
    metrics::metric(
        &mut out,
        "nexus_wings_console_sockets_open",
        "gauge",
        "Console WebSockets open.",
        state.consoles.open() as u64,
    );
    metrics::metric(
        &mut out,
        "nexus_wings_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        state.started.elapsed().as_secs(),
    );
    out
}

/// What `GET /api/system` reports.
pub fn system_info(state: &ApiState) -> SystemInfo {
    let (total, available) = meminfo().unwrap_or((0, 0));
    SystemInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        runtime: state.runtime_name.to_owned(),
        cpu_count: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        memory_total_bytes: total,
        memory_available_bytes: available,
        servers: state.agent.servers().len(),
        daemon_rss_bytes: resident_memory_bytes().unwrap_or(0),
        uptime_secs: state.started.elapsed().as_secs(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
        arch: std::env::consts::ARCH.to_owned(),
    }
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, bytes.
fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denylist_patterns_the_file_manager_refuses_are_named() {
        assert!(
            check_denylist(&["*.jar".into(), "config/secret.txt".into(), "logs/".into(), "!keep.jar".into()]).is_ok()
        );
        assert!(check_denylist(&["[".into()]).is_ok(), "an unclosed class is a literal `[`, as in git");
        for (i, bad) in ["[z-a]", "{a,b", "a,b}", "x/{a,{b,c}"].into_iter().enumerate() {
            let mut patterns = vec!["*.jar".to_owned(); i + 1];
            patterns.push(bad.into());
            let e = check_denylist(&patterns).unwrap_err();
            assert_eq!((e.status, e.code), (422, "invalid_spec"), "{bad}");
            assert_eq!(e.field.as_deref(), Some(format!("file_denylist[{}]", i + 1).as_str()), "{bad}");
        }
    }
}

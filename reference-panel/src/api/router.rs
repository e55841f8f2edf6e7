//! The route table and the dispatcher: path matching, authentication, the access check, the
//! bounded body, then the handler.

use super::auth::{CSRF_HEADER, Principal, Via, same_token, session_cookie};
use super::{ApiError, DEFAULT_PER_PAGE, MAX_BODY_BYTES, MAX_PER_PAGE, PanelState, handlers};
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use nexus_control::subusers::ServerAccess;
use nexus_core::ids::{AuditEventId, ServerId, UserId};
use nexus_core::model::{AuditEvent, AuditSubject, Server};
use nexus_core::store::Page;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Any logged-in user or key.
    Authenticated,
    /// A browser session only, not an API key: what manages the account's own credentials
    /// (password, second factor, keys), so a stolen key cannot lock its owner out or mint
    /// itself successors.
    Session,
    /// Admins (session or application key).
    Admin,
    /// Whoever may see the server named by the route's first `{…}` segment and, if given,
    /// holds this permission on it (a Pterodactyl name, see
    /// [`PERMISSIONS`](nexus_control::subusers::PERMISSIONS); owners and admins hold all).
    /// Others get `404` (existence is not revealed) or `403`.
    Server(Option<&'static str>),
}

/// What a handler answers.
pub type Handled = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;

/// One route: method, path (`{…}` matches one segment), access, handler.
#[derive(Clone)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path pattern, e.g. `/api/v1/servers/{id}/power`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    handler: fn(Arc<PanelState>, Call) -> Handled,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

macro_rules! route {
    ($method:ident $path:literal, $access:expr, $handler:path) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
            handler: |state, call| Box::pin($handler(state, call)),
        }
    };
}

/// Every route of `/api/v1`.
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Authenticated, Public, Server, Session};
    use handlers::{account, infra, schedules, servers, subusers};
    vec![
        route!(GET "/api/v1/health", Public, account::health),
        route!(POST "/api/v1/auth/login", Public, account::login),
        route!(POST "/api/v1/auth/login/totp", Public, account::login_second_factor),
        route!(POST "/api/v1/auth/logout", Authenticated, account::logout),
        route!(GET "/api/v1/account", Authenticated, account::me),
        route!(PUT "/api/v1/account/password", Session, account::change_password),
        route!(POST "/api/v1/account/totp", Session, account::totp_setup),
        route!(POST "/api/v1/account/totp/enable", Session, account::totp_enable),
        route!(POST "/api/v1/account/totp/disable", Session, account::totp_disable),
        route!(GET "/api/v1/account/api-keys", Authenticated, account::list_keys),
        route!(POST "/api/v1/account/api-keys", Session, account::create_key),
        route!(DELETE "/api/v1/account/api-keys/{id}", Session, account::delete_key),
        route!(GET "/api/v1/permissions", Authenticated, subusers::catalog),
        route!(GET "/api/v1/users", Admin, account::list_users),
        route!(POST "/api/v1/users", Admin, account::create_user),
        route!(GET "/api/v1/locations", Admin, infra::list_locations),
        route!(POST "/api/v1/locations", Admin, infra::create_location),
        route!(GET "/api/v1/nodes", Admin, infra::list_nodes),
        route!(POST "/api/v1/nodes", Admin, infra::create_node),
        route!(GET "/api/v1/nodes/{id}", Admin, infra::show_node),
        route!(GET "/api/v1/nodes/{id}/configuration", Admin, infra::node_configuration),
        route!(GET "/api/v1/nodes/{id}/allocations", Admin, infra::list_allocations),
        route!(POST "/api/v1/nodes/{id}/allocations", Admin, infra::create_allocations),
        route!(GET "/api/v1/eggs", Authenticated, infra::list_eggs),
        route!(POST "/api/v1/eggs", Admin, infra::import_egg),
        route!(GET "/api/v1/eggs/{id}", Authenticated, infra::show_egg),
        route!(PUT "/api/v1/eggs/{id}", Admin, infra::update_egg),
        route!(GET "/api/v1/eggs/{id}/export", Admin, infra::export_egg),
        route!(DELETE "/api/v1/eggs/{id}", Admin, infra::delete_egg),
        route!(GET "/api/v1/servers", Authenticated, servers::list),
        route!(POST "/api/v1/servers", Admin, servers::create),
        route!(GET "/api/v1/servers/{id}", Server(None), servers::show),
        route!(GET "/api/v1/servers/{id}/events", Server(Some("activity.read")), servers::events),
        route!(POST "/api/v1/servers/{id}/power", Server(None), servers::power),
        route!(POST "/api/v1/servers/{id}/command", Server(Some("control.console")), servers::command),
        route!(GET "/api/v1/servers/{id}/websocket", Server(None), servers::websocket),
        route!(POST "/api/v1/servers/{id}/rename", Server(Some("settings.rename")), servers::rename),
        route!(POST "/api/v1/servers/{id}/reinstall", Server(Some("settings.reinstall")), servers::reinstall),
        route!(GET "/api/v1/servers/{id}/startup", Server(Some("startup.read")), servers::startup),
        route!(PUT "/api/v1/servers/{id}/startup", Server(Some("startup.update")), servers::update_startup),
        route!(PUT "/api/v1/servers/{id}/build", Admin, servers::update_build),
        route!(POST "/api/v1/servers/{id}/suspend", Admin, servers::suspend),
        route!(POST "/api/v1/servers/{id}/unsuspend", Admin, servers::unsuspend),
        route!(GET "/api/v1/servers/{id}/users", Server(Some("user.read")), subusers::list),
        route!(POST "/api/v1/servers/{id}/users", Server(Some("user.create")), subusers::create),
        route!(PUT "/api/v1/servers/{id}/users/{user}", Server(Some("user.update")), subusers::update),
        route!(DELETE "/api/v1/servers/{id}/users/{user}", Server(Some("user.delete")), subusers::delete),
        route!(GET "/api/v1/servers/{id}/schedules", Server(Some("schedule.read")), schedules::list),
        route!(POST "/api/v1/servers/{id}/schedules", Server(Some("schedule.create")), schedules::create),
        route!(GET "/api/v1/servers/{id}/schedules/{schedule}", Server(Some("schedule.read")), schedules::show),
        route!(PUT "/api/v1/servers/{id}/schedules/{schedule}", Server(Some("schedule.update")), schedules::update),
        route!(DELETE "/api/v1/servers/{id}/schedules/{schedule}", Server(Some("schedule.delete")), schedules::delete),
        route!(POST "/api/v1/servers/{id}/schedules/{schedule}/run", Server(Some("schedule.update")), schedules::run),
        route!(GET "/api/v1/servers/{id}/activity", Server(Some("activity.read")), schedules::activity),
        route!(DELETE "/api/v1/servers/{id}", Admin, servers::delete),
    ]
}

/// A request as a handler sees it: the caller, the server for server routes, the path's
/// `{…}` values, the query, the body.
#[derive(Debug)]
pub struct Call {
    /// The caller (`None` only on public routes).
    pub principal: Option<Principal>,
    /// The server of a [`Access::Server`] route, loaded and checked.
    pub server: Option<Server>,
    /// The caller's access to that server.
    pub access: Option<ServerAccess>,
    /// The path's `{…}` segments, in order.
    pub params: Vec<String>,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Bytes,
    /// The request's `content-type`.
    pub content_type: Option<String>,
    /// The client's address.
    pub client: IpAddr,
}

impl Call {
    /// The caller; only public routes have none.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.principal.as_ref().ok_or_else(ApiError::unauthenticated)
    }

    /// The checked server of a server route.
    pub fn server(&self) -> Result<&Server, ApiError> {
        self.server.as_ref().ok_or_else(|| ApiError::not_found("server"))
    }

    /// The caller's access to the server of a server route.
    pub fn access(&self) -> Result<&ServerAccess, ApiError> {
        self.access.as_ref().ok_or_else(|| ApiError::not_found("server"))
    }

    /// Refuses unless the caller holds the permission `name` on the route's server.
    pub fn require(&self, name: &str) -> Result<(), ApiError> {
        if self.access()?.allows(name) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the `{name}` permission")))
        }
    }

    /// The `i`th `{…}` segment as `T` (`400 invalid_id` otherwise).
    pub fn param<T: FromStr>(&self, i: usize) -> Result<T, ApiError> {
        self.params
            .get(i)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", "the id in the path is not valid"))
    }

    /// The body as JSON `T` (`415` unless `application/json`, `400` naming the problem).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.content_type.as_deref().is_none_or(|c| media_type(c) != "application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }

    /// `?page=&per_page=` as a store page (one row more than asked, to tell whether more
    /// follow) and the numbers asked for.
    pub fn page(&self) -> Result<(Page, u64, u64), ApiError> {
        let number = |name: &str, default: u64| -> Result<u64, ApiError> {
            match self.query.get(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| ApiError {
                    field: Some(name.to_owned()),
                    ..ApiError::bad_request(format!("`{name}` must be a positive integer"))
                }),
            }
        };
        let page = number("page", 1)?;
        let per_page = number("per_page", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE);
        let offset = (page - 1).checked_mul(per_page).ok_or_else(|| ApiError::bad_request("`page` is too large"))?;
        Ok((Page { offset, limit: per_page + 1 }, page, per_page))
    }
}

/// The media type of a `content-type` value, lower-cased, without parameters.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The warp filter serving every route of [`routes`] under `/api/v1`.
pub fn filter(state: Arc<PanelState>) -> BoxedFilter<(Response,)> {
    let table: Arc<Vec<Route>> = Arc::new(routes());
    warp::path("api")
        .and(warp::path("v1"))
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  remote: Option<SocketAddr>,
                  body| {
                let (state, table) = (Arc::clone(&state), Arc::clone(&table));
                async move {
                    let client = remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                    match dispatch(&state, &table, method, path.as_str(), &query, &headers, client, body).await {
                        Ok(response) => response,
                        Err(error) => error.into_response(),
                    }
                }
            },
        )
        .boxed()
}

fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_parts = pattern.trim_end_matches('/').split('/');
    let mut path_parts = path.trim_end_matches('/').split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && !s.is_empty() => params.push(s.to_owned()),
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn dispatch<S, B>(
    state: &Arc<PanelState>,
    table: &[Route],
    method: Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    client: IpAddr,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut path_known = false;
    let mut found = None;
    for route in table {
        if let Some(params) = matches(route.path, path) {
            path_known = true;
            if route.method == method {
                found = Some((route, params));
                break;
            }
        }
    }
    let Some((route, params)) = found else {
        return Err(if path_known {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed here"))
        } else {
            ApiError::not_found(format!("no route {path}"))
        });
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let client = client_address(client, header("x-forwarded-for"), &state.trusted_proxies);
    let principal = authenticate(state, header("authorization"), header("cookie")).await?;
    if let Some(principal) = &principal
        && let Via::Session { csrf, .. } = &principal.via
        && !matches!(method, Method::GET | Method::HEAD)
        && route.access != Access::Public
        && !header(CSRF_HEADER).is_some_and(|sent| same_token(sent, csrf))
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "csrf", "missing or wrong X-CSRF-Token"));
    }
    let (mut server, mut access) = (None, None);
    match route.access {
        Access::Public => {}
        _ if principal.is_none() => return Err(ApiError::unauthenticated()),
        Access::Authenticated => {}
        Access::Session => {
            if !principal.as_ref().is_some_and(|p| matches!(p.via, Via::Session { .. })) {
                return Err(ApiError::forbidden("this needs a browser session, not an API key"));
            }
        }
        Access::Admin => {
            if !principal.as_ref().is_some_and(Principal::is_admin) {
                return Err(ApiError::forbidden("this needs an admin"));
            }
        }
        Access::Server(permission) => {
            let id = params.first().and_then(|p| p.parse().ok()).ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", "the id in the path is not valid")
            })?;
            let record = match state.control.server(id).await {
                Ok(record) => record,
                Err(nexus_control::ControlError::UnknownServer(_)) => return Err(ApiError::not_found("server")),
                Err(e) => return Err(e.into()),
            };
            let Some(user) = principal.as_ref().map(|p| &p.user) else { return Err(ApiError::unauthenticated()) };
            let Some(granted) = state.control.server_access(user, &record).await? else {
                return Err(ApiError::not_found("server"));
            };
            if let Some(needed) = permission
                && !granted.allows(needed)
            {
                return Err(ApiError::forbidden(format!("this needs the `{needed}` permission")));
            }
            server = Some(record);
            access = Some(granted);
        }
    }
    let query = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?
        .into_iter()
        .collect();
    let length = header("content-length").and_then(|l| l.parse::<u64>().ok());
    let body = read_bounded(length, body, MAX_BODY_BYTES).await?;
    let call = Call {
        principal,
        server,
        access,
        params,
        query,
        body,
        content_type: header("content-type").map(str::to_owned),
        client,
    };
    let audit = (!matches!(method, Method::GET | Method::HEAD))
        .then(|| call.principal.as_ref().map(|p| (p.user.id, call.server.as_ref().map(|s| s.id))))
        .flatten();
    let client = call.client;
    let answer = (route.handler)(Arc::clone(state), call).await;
    if let (Some((actor, server)), Ok(response)) = (audit, &answer)
        && response.status().is_success()
    {
        record(state, actor, server, route, client).await;
    }
    answer
}

/// Writes a changing request that succeeded to the audit log (never its body: it may hold
/// passwords). Server routes are recorded on the server (its activity), others on the actor.
async fn record(state: &PanelState, actor: UserId, server: Option<ServerId>, route: &Route, client: IpAddr) {
    let subject = match server {
        Some(server) => AuditSubject::Server(server),
        None => AuditSubject::User(actor),
    };
    let event = AuditEvent {
        id: AuditEventId::new(),
        actor: Some(actor),
        action: format!("{} {}", route.method, route.path),
        subject,
        metadata: serde_json::Value::Null,
        ip: Some(client.to_string()),
        at: chrono::Utc::now(),
    };
    if let Err(e) = state.control.store().append_audit(&event).await {
        tracing::warn!(error = %e, "writing the audit log");
    }
}

async fn authenticate(
    state: &PanelState,
    authorization: Option<&str>,
    cookie: Option<&str>,
) -> Result<Option<Principal>, ApiError> {
    if let Some(authorization) = authorization {
        let Some(key) = authorization.strip_prefix("Bearer ") else {
            return Err(ApiError::unauthenticated());
        };
        let (key, user) = state.control.authenticate_key(key.trim()).await?;
        return Ok(Some(Principal { user, via: Via::Key(key.scope) }));
    }
    let Some(id) = cookie.and_then(session_cookie) else { return Ok(None) };
    let Some((user, csrf)) = state.sessions.get(id) else { return Ok(None) };
    match state.control.store().get_user(user).await {
        Ok(user) => Ok(Some(Principal { user, via: Via::Session { id: id.to_owned(), csrf } })),
        Err(nexus_core::store::StoreError::NotFound { .. }) => {
            state.sessions.close(id);
            Ok(None)
        }
        Err(e) => Err(nexus_control::ControlError::from(e).into()),
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not itself a trusted proxy (the left part of that
/// header is whatever the client claims).
fn client_address(peer: IpAddr, forwarded: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    forwarded
        .into_iter()
        .flat_map(|list| list.rsplit(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
}

/// The whole body, at most `limit` bytes: refused from its `content-length` before anything
/// is read, or once a chunked body passes the limit.
async fn read_bounded<S, B>(length: Option<u64>, mut stream: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    if length.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if u64::try_from(body.len() + chunk.remaining()).map_or(true, |total| total > limit) {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        assert_eq!(matches("/api/v1/servers/{id}", "/api/v1/servers/abc"), Some(vec!["abc".to_owned()]));
        assert_eq!(matches("/api/v1/servers/{id}", "/api/v1/servers/"), None);
        assert_eq!(matches("/api/v1/servers/{id}", "/api/v1/servers/abc/power"), None);
        assert_eq!(matches("/api/v1/servers", "/api/v1/servers/"), Some(vec![]));
        assert_eq!(matches("/api/v1/servers", "/api/v1/server"), None);
    }

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        let (proxy, client): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "203.0.113.7".parse().unwrap());
        assert_eq!(client_address(client, Some("1.2.3.4"), &[proxy]), client, "an untrusted peer's header is ignored");
        assert_eq!(client_address(proxy, Some("1.2.3.4, 203.0.113.7"), &[proxy]), client);
        assert_eq!(client_address(proxy, Some("203.0.113.7, 10.0.0.1"), &[proxy]), client, "proxy hops skipped");
        assert_eq!(client_address(proxy, Some("garbage"), &[proxy]), proxy);
        assert_eq!(client_address(proxy, None, &[proxy]), proxy);
    }

    #[test]
    fn every_route_is_unique_and_server_routes_name_the_server_first() {
        let table = routes();
        let mut seen = std::collections::HashSet::new();
        for route in &table {
            assert!(seen.insert((route.method.clone(), route.path)), "{route:?} twice");
            if matches!(route.access, Access::Server(_)) {
                assert!(route.path.starts_with("/api/v1/servers/{id}"), "{route:?}");
            }
        }
    }
}

//! The route table and the dispatcher: path matching, authentication, the access check, the
//! bounded body, then the handler.

use super::answer::{Answer, Download, Listing, NoContent, Text};
use super::auth::{CSRF_HEADER, Principal, Via, same_token, session_cookie};
use super::openapi::{
    AnswerDoc, BodyDoc, DIRECTORY_QUERY, EGG_QUERY, EXPORT_QUERY, FILE_QUERY, NODE_DELETE_QUERY, PAGED, QueryParam,
    RouteDoc, SERVER_QUERY, USER_QUERY, schema,
};
use super::{ApiError, DEFAULT_PER_PAGE, MAX_BODY_BYTES, MAX_PER_PAGE, PanelState, handlers};
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use nexus_control::subusers::ServerAccess;
use nexus_core::ids::{AuditEventId, ServerId, UserId};
use nexus_core::model::{ApiKeyScope, AuditEvent, AuditSubject, Server};
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

/// Which API a table belongs to: how its server routes name the server, and how its errors
/// are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/api/v1`: servers by UUID, errors as `{"error":{…}}`.
    Native,
    /// Pterodactyl's `/api/application`: servers by integer id, errors as `{"errors":[…]}`.
    Application,
    /// Pterodactyl's `/api/client`: servers by 8-character identifier or UUID.
    Client,
}

/// What a handler answers.
pub type Handled = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;

/// One route: method, path (`{…}` matches one segment), access, handler, and what the
/// OpenAPI document says of it.
#[derive(Clone)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path pattern, e.g. `/api/v1/servers/{id}/power`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its documentation: summary, body and answer schemas.
    pub doc: RouteDoc,
    /// The handler gets the body as a stream ([`Call::upload`]), not read into memory.
    streams_body: bool,
    handler: fn(Arc<PanelState>, Call) -> Handled,
}

impl Route {
    /// A route outside the OpenAPI document (the Pterodactyl-compatible API): `handler`
    /// answers a whole response; with `streams_body` it gets the body as a stream.
    pub(crate) fn plain(
        method: Method,
        path: &'static str,
        access: Access,
        streams_body: bool,
        handler: fn(Arc<PanelState>, Call) -> Handled,
    ) -> Self {
        let doc = RouteDoc::new("", "", BodyDoc::None, 200, AnswerDoc::Empty);
        Self { method, path, access, doc, streams_body, handler }
    }

    /// The same route, documenting the query parameters `query` too.
    fn with_query(mut self, query: &'static [QueryParam]) -> Self {
        self.doc.query = query;
        self
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

/// A row of [`routes`]:
/// `route!(METHOD "/path", access, "summary", handler, [json Body | file] => status [Type | page Row | text ["media", …]])`.
/// A `json` handler gets the parsed body as its third argument; every handler returns
/// `Result<Answer<Type>, ApiError>` (`Listing<Row>` for `page`, `Text` for `text`,
/// `NoContent` for none). The same types go into the OpenAPI document.
macro_rules! route {
    ($method:ident $path:literal, $access:expr, $summary:literal, $handler:path, $($rest:tt)*) => {
        route!(@body [$method $path, $access, $summary, $handler] $($rest)*)
    };
    (@body $head:tt json $body:ty => $($answer:tt)*) => { route!(@answer $head [json $body] $($answer)*) };
    (@body $head:tt file => $($answer:tt)*) => { route!(@answer $head [file] $($answer)*) };
    (@body $head:tt stream => $($answer:tt)*) => { route!(@answer $head [stream] $($answer)*) };
    (@body $head:tt => $($answer:tt)*) => { route!(@answer $head [none] $($answer)*) };
    (@answer $head:tt $body:tt $status:literal page $row:ty) => {
        route!(@make $head $body [$status, Listing<$row>, into_json, AnswerDoc::Json(schema::<Listing<$row>>)])
            .with_query(PAGED)
    };
    (@answer $head:tt $body:tt $status:literal download) => {
        route!(@make $head $body [$status, Download, into_download, AnswerDoc::Text(&["application/octet-stream"])])
    };
    (@answer $head:tt $body:tt $status:literal text [$($media:literal),+]) => {
        route!(@make $head $body [$status, Text, into_text, AnswerDoc::Text(&[$($media),+])])
    };
    (@answer $head:tt $body:tt $status:literal $answer:ty) => {
        route!(@make $head $body [$status, $answer, into_json, AnswerDoc::Json(schema::<$answer>)])
    };
    (@answer $head:tt $body:tt $status:literal) => {
        route!(@make $head $body [$status, NoContent, into_empty, AnswerDoc::Empty])
    };
    (@make [$method:ident $path:literal, $access:expr, $summary:literal, $handler:path] [json $body:ty]
        [$status:literal, $answer:ty, $into:ident, $answer_doc:expr]) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
            doc: RouteDoc::new($summary, stringify!($handler), BodyDoc::Json(schema::<$body>), $status, $answer_doc),
            streams_body: false,
            handler: |state, call| {
                Box::pin(async move {
                    let body: $body = call.json()?;
                    let answer: Answer<$answer> = $handler(state, call, body).await?;
                    Ok(answer.$into())
                })
            },
        }
    };
    (@make [$method:ident $path:literal, $access:expr, $summary:literal, $handler:path] [$body:ident]
        [$status:literal, $answer:ty, $into:ident, $answer_doc:expr]) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
            doc: RouteDoc::new($summary, stringify!($handler), route!(@bodydoc $body), $status, $answer_doc),
            streams_body: route!(@streams $body),
            handler: |state, call| {
                Box::pin(async move {
                    let answer: Answer<$answer> = $handler(state, call).await?;
                    Ok(answer.$into())
                })
            },
        }
    };
    (@bodydoc none) => { BodyDoc::None };
    (@bodydoc file) => { BodyDoc::EggFile };
    (@bodydoc stream) => { BodyDoc::Bytes };
    (@streams stream) => { true };
    (@streams $other:ident) => { false };
}

/// Every route of `/api/v1`.
#[rustfmt::skip]
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Authenticated, Public, Server, Session};
    use handlers::{account, backups, files, infra, schedules, servers, subusers, templates};
    use handlers::templates::{LayerView, Layers};
    use handlers::backups::{CreateBackup, LockBackup, RestoreBackup};
    use handlers::files::{Chmod, Compress, Decompress, FromTo, NewFolder, Resources};
    use nexus_files::{ExtractSummary, FileEntry};
    use handlers::account::{OpenApiDocument, AccountView, CreateUser, CreatedKey, Health, Login, LoginAnswer, NewKey, Password, PasswordChange, RecoveryCodes, SecondFactor, SessionView, TotpCode, TotpSetupView};
    use handlers::infra::{CreateNode, EggNest, NestInput, NewAllocations, NewLocation, NodeDeleted, RegisteredNode};
    use handlers::servers::{Command, CreateServer, CreatedServer, Deleting, Power, PowerAccepted, Reinstalling, Rename, ServerDetail, StartupView, UpdateBuild, UpdateStartup};
    use handlers::schedules::{ActivityView, Running, ScheduleView};
    use handlers::subusers::{NewSubuser, SubuserView, UpdateSubuser};
    use handlers::views::{EggView, KeyView, NodeView, ServerView, UserView};
    use nexus_control::console::ConsoleAccess;
    use nexus_control::schedules::ScheduleInput;
    use nexus_core::lifecycle::LifecycleEvent;
    use nexus_core::model::{Allocation, Backup, Location, Nest, Schedule};
    vec![
        route!(GET "/api/v1/openapi.json", Public, "This API's OpenAPI 3.1 document", account::openapi, => 200 OpenApiDocument),
        route!(GET "/api/v1/health", Public, "Whether the panel answers, and its version", account::health, => 200 Health),
        route!(POST "/api/v1/auth/login", Public, "Log in with a password; sets the session cookie unless a second factor is due", account::login, json Login => 200 LoginAnswer),
        route!(POST "/api/v1/auth/login/totp", Public, "Finish a login with a TOTP or recovery code", account::login_second_factor, json SecondFactor => 200 SessionView),
        route!(POST "/api/v1/auth/logout", Authenticated, "End this session", account::logout, => 204),
        route!(GET "/api/v1/account", Authenticated, "The caller's account (and a session's CSRF token)", account::me, => 200 AccountView),
        route!(PUT "/api/v1/account/password", Session, "Change the password; other sessions end", account::change_password, json PasswordChange => 204),
        route!(POST "/api/v1/account/totp", Session, "Begin setting up TOTP: a new secret", account::totp_setup, => 200 TotpSetupView),
        route!(POST "/api/v1/account/totp/enable", Session, "Turn TOTP on with a code; answers the recovery codes once", account::totp_enable, json TotpCode => 200 RecoveryCodes),
        route!(POST "/api/v1/account/totp/disable", Session, "Turn TOTP off (needs the password)", account::totp_disable, json Password => 204),
        route!(GET "/api/v1/account/api-keys", Authenticated, "The caller's API keys (never their secrets)", account::list_keys, => 200 Vec<KeyView>),
        route!(POST "/api/v1/account/api-keys", Session, "Create an API key; its secret is shown once", account::create_key, json NewKey => 201 CreatedKey),
        route!(DELETE "/api/v1/account/api-keys/{id}", Session, "Delete an API key (refused at once)", account::delete_key, => 204),
        route!(GET "/api/v1/permissions", Authenticated, "Every subuser permission name", subusers::catalog, => 200 Vec<&'static str>),
        route!(GET "/api/v1/users", Admin, "List users", account::list_users, => 200 page UserView).with_query(USER_QUERY),
        route!(POST "/api/v1/users", Admin, "Create a user", account::create_user, json CreateUser => 201 UserView),
        route!(GET "/api/v1/activity", Admin, "The audit log of the whole panel, newest first", schedules::all_activity, => 200 page ActivityView),
        route!(GET "/api/v1/locations", Admin, "List locations", infra::list_locations, => 200 page Location),
        route!(POST "/api/v1/locations", Admin, "Create a location", infra::create_location, json NewLocation => 201 Location),
        route!(GET "/api/v1/nodes", Admin, "List nodes", infra::list_nodes, => 200 page NodeView),
        route!(POST "/api/v1/nodes", Admin, "Register a node; its token is shown once", infra::create_node, json CreateNode => 201 RegisteredNode),
        route!(GET "/api/v1/nodes/{id}", Admin, "Show a node", infra::show_node, => 200 NodeView),
        route!(DELETE "/api/v1/nodes/{id}", Admin, "Remove a node with no servers (or, offline, forgetting its servers)", infra::delete_node, => 200 NodeDeleted).with_query(NODE_DELETE_QUERY),
        route!(GET "/api/v1/nodes/{id}/configuration", Admin, "The node daemon's configuration file (TOML; holds its secrets)", infra::node_configuration, => 200 text ["application/toml"]),
        route!(GET "/api/v1/nodes/{id}/allocations", Admin, "List a node's allocations", infra::list_allocations, => 200 page Allocation),
        route!(POST "/api/v1/nodes/{id}/allocations", Admin, "Add allocations from a port list (`25565-25665`)", infra::create_allocations, json NewAllocations => 201 Vec<Allocation>),
        route!(GET "/api/v1/eggs", Authenticated, "List eggs (`?nest=` narrows to one nest)", infra::list_eggs, => 200 page EggView).with_query(EGG_QUERY),
        route!(POST "/api/v1/eggs", Admin, "Import a Pterodactyl or Pelican egg file (JSON or YAML)", infra::import_egg, file => 201 EggView),
        route!(GET "/api/v1/eggs/{id}", Authenticated, "Show an egg (users see its viewable variables)", infra::show_egg, => 200 EggView),
        route!(PUT "/api/v1/eggs/{id}", Admin, "Update an egg from a file", infra::update_egg, file => 200 EggView),
        route!(PUT "/api/v1/eggs/{id}/nest", Admin, "Put an egg in a nest (or in none)", infra::move_egg, json EggNest => 200 EggView),
        route!(PUT "/api/v1/eggs/{id}/templates", Admin, "Set the template layers every server of the egg gets after its install script (from its next install on)", templates::set_egg, json Layers => 200 EggView),
        route!(GET "/api/v1/templates", Admin, "List the published template layers (`name@version`)", templates::list, => 200 Vec<String>),
        route!(GET "/api/v1/templates/{layer}", Admin, "Show a published layer", templates::show, => 200 LayerView),
        route!(POST "/api/v1/templates/{layer}", Admin, "Publish a layer `name@version` from a tar archive (plain, gzip or zstd; `.wh.<name>` files are whiteouts, `.nexus-render` lists the files to render); versions are immutable", templates::publish, stream => 201 LayerView),
        route!(GET "/api/v1/nests", Admin, "List nests", infra::list_nests, => 200 page Nest),
        route!(POST "/api/v1/nests", Admin, "Create a nest", infra::create_nest, json NestInput => 201 Nest),
        route!(GET "/api/v1/nests/{id}", Admin, "Show a nest", infra::show_nest, => 200 Nest),
        route!(PUT "/api/v1/nests/{id}", Admin, "Rename or re-describe a nest", infra::update_nest, json NestInput => 200 Nest),
        route!(DELETE "/api/v1/nests/{id}", Admin, "Delete a nest that holds no egg", infra::delete_nest, => 204),
        route!(POST "/api/v1/nests/{id}/eggs", Admin, "Import an egg file (JSON or YAML) into the nest", infra::import_egg_into_nest, file => 201 EggView),
        route!(GET "/api/v1/eggs/{id}/export", Admin, "Export an egg file", infra::export_egg, => 200 text ["application/json", "application/yaml"]).with_query(EXPORT_QUERY),
        route!(DELETE "/api/v1/eggs/{id}", Admin, "Delete an egg no server uses", infra::delete_egg, => 204),
        route!(GET "/api/v1/servers", Authenticated, "List the servers the caller may see (admins: all), from the store", servers::list, => 200 page ServerView).with_query(SERVER_QUERY),
        route!(POST "/api/v1/servers", Admin, "Create a server: variables checked, placed, sent to its node", servers::create, json CreateServer => 201 CreatedServer),
        route!(GET "/api/v1/servers/{id}", Server(None), "Show a server", servers::show, => 200 ServerDetail),
        route!(GET "/api/v1/servers/{id}/events", Server(Some("activity.read")), "The server's lifecycle transitions, newest first", servers::events, => 200 Vec<LifecycleEvent>),
        route!(POST "/api/v1/servers/{id}/power", Server(None), "Start, stop, restart or kill (each its own permission)", servers::power, json Power => 202 PowerAccepted),
        route!(POST "/api/v1/servers/{id}/command", Server(Some("control.console")), "Send one console command", servers::command, json Command => 204),
        route!(GET "/api/v1/servers/{id}/websocket", Server(None), "The node's console socket and a short-lived token for it (needs `websocket.connect` or `control.console`)", servers::websocket, => 200 ConsoleAccess),
        route!(POST "/api/v1/servers/{id}/rename", Server(Some("settings.rename")), "Rename a server", servers::rename, json Rename => 200 ServerView),
        route!(POST "/api/v1/servers/{id}/reinstall", Server(Some("settings.reinstall")), "Run the egg's install again", servers::reinstall, => 202 Reinstalling),
        route!(GET "/api/v1/servers/{id}/startup", Server(Some("startup.read")), "The startup command and the variables the caller may see", servers::startup, => 200 StartupView),
        route!(PUT "/api/v1/servers/{id}/startup", Server(Some("startup.update")), "Change variables (checked against the egg's rules)", servers::update_startup, json UpdateStartup => 200 ServerView),
        route!(PUT "/api/v1/servers/{id}/build", Admin, "Change a server's limits", servers::update_build, json UpdateBuild => 200 ServerView),
        route!(PUT "/api/v1/servers/{id}/templates", Admin, "Set the server's own template layers, applied after its egg's (from its next install on)", templates::set_server, json Layers => 200 ServerView),
        route!(POST "/api/v1/servers/{id}/suspend", Admin, "Suspend a server (stops it; it cannot start)", servers::suspend, => 200 ServerView),
        route!(POST "/api/v1/servers/{id}/unsuspend", Admin, "Lift a suspension", servers::unsuspend, => 200 ServerView),
        route!(GET "/api/v1/servers/{id}/users", Server(Some("user.read")), "List the server's subusers", subusers::list, => 200 Vec<SubuserView>),
        route!(POST "/api/v1/servers/{id}/users", Server(Some("user.create")), "Add a subuser by e-mail", subusers::create, json NewSubuser => 201 SubuserView),
        route!(PUT "/api/v1/servers/{id}/users/{user}", Server(Some("user.update")), "Change a subuser's permissions", subusers::update, json UpdateSubuser => 200 SubuserView),
        route!(DELETE "/api/v1/servers/{id}/users/{user}", Server(Some("user.delete")), "Remove a subuser", subusers::delete, => 204),
        route!(GET "/api/v1/servers/{id}/schedules", Server(Some("schedule.read")), "List the server's schedules", schedules::list, => 200 Vec<ScheduleView>),
        route!(POST "/api/v1/servers/{id}/schedules", Server(Some("schedule.create")), "Create a schedule", schedules::create, json ScheduleInput => 201 Schedule),
        route!(GET "/api/v1/servers/{id}/schedules/{schedule}", Server(Some("schedule.read")), "Show a schedule", schedules::show, => 200 Schedule),
        route!(PUT "/api/v1/servers/{id}/schedules/{schedule}", Server(Some("schedule.update")), "Replace a schedule", schedules::update, json ScheduleInput => 200 Schedule),
        route!(DELETE "/api/v1/servers/{id}/schedules/{schedule}", Server(Some("schedule.delete")), "Delete a schedule", schedules::delete, => 204),
        route!(POST "/api/v1/servers/{id}/schedules/{schedule}/run", Server(Some("schedule.update")), "Run a schedule now (in the background)", schedules::run, => 202 Running),
        route!(GET "/api/v1/servers/{id}/backups", Server(Some("backup.read")), "List the server's backups, newest first", backups::list, => 200 Vec<Backup>),
        route!(POST "/api/v1/servers/{id}/backups", Server(Some("backup.create")), "Start a backup (its node reports the outcome; refused past the server's backup limit)", backups::create, json CreateBackup => 202 Backup),
        route!(GET "/api/v1/servers/{id}/backups/{backup}", Server(Some("backup.read")), "Show a backup", backups::show, => 200 Backup),
        route!(DELETE "/api/v1/servers/{id}/backups/{backup}", Server(Some("backup.delete")), "Delete a backup (refused while locked or in progress)", backups::delete, => 204),
        route!(POST "/api/v1/servers/{id}/backups/{backup}/lock", Server(Some("backup.delete")), "Lock or unlock a backup (`{}` toggles)", backups::lock, json LockBackup => 200 Backup),
        route!(POST "/api/v1/servers/{id}/backups/{backup}/restore", Server(Some("backup.restore")), "Restore a backup over the server's files (the server must be stopped; `wipe` deletes every file first)", backups::restore, json RestoreBackup => 202 Backup),
        route!(GET "/api/v1/servers/{id}/backups/{backup}/download", Server(Some("backup.download")), "Download a backup's archive (tar.zst), streamed", backups::download, => 200 download),
        route!(GET "/api/v1/servers/{id}/resources", Server(None), "The node's latest state, CPU, memory, network and disk figures for the server", files::resources, => 200 Resources),
        route!(GET "/api/v1/servers/{id}/files", Server(Some("file.read")), "List a folder (`?directory=`, `/` when absent)", files::list, => 200 Vec<FileEntry>).with_query(DIRECTORY_QUERY),
        route!(DELETE "/api/v1/servers/{id}/files", Server(Some("file.delete")), "Delete a file or folder (`?file=`)", files::delete, => 204).with_query(FILE_QUERY),
        route!(GET "/api/v1/servers/{id}/files/contents", Server(Some("file.read-content")), "A text file's content for editing (`?file=`; at most 4 MiB)", files::contents, => 200 text ["text/plain"]).with_query(FILE_QUERY),
        route!(PUT "/api/v1/servers/{id}/files/contents", Server(Some("file.create")), "Write a file (`?file=`), created or replaced, from the body's bytes (streamed; uploads too)", files::write, stream => 200 FileEntry).with_query(FILE_QUERY),
        route!(GET "/api/v1/servers/{id}/files/download", Server(Some("file.read-content")), "Download a file (`?file=`), streamed", files::download, => 200 download).with_query(FILE_QUERY),
        route!(POST "/api/v1/servers/{id}/files/rename", Server(Some("file.update")), "Rename or move a file or folder", files::rename, json FromTo => 204),
        route!(POST "/api/v1/servers/{id}/files/copy", Server(Some("file.create")), "Copy a file", files::copy, json FromTo => 200 FileEntry),
        route!(POST "/api/v1/servers/{id}/files/create-folder", Server(Some("file.create")), "Create a folder", files::create_folder, json NewFolder => 200 FileEntry),
        route!(POST "/api/v1/servers/{id}/files/chmod", Server(Some("file.update")), "Change a file's permission bits", files::chmod, json Chmod => 204),
        route!(POST "/api/v1/servers/{id}/files/compress", Server(Some("file.archive")), "Put files and folders in an archive", files::compress, json Compress => 200 FileEntry),
        route!(POST "/api/v1/servers/{id}/files/decompress", Server(Some("file.archive")), "Extract an archive (zip, tar, tar.gz, tar.zst, ...)", files::decompress, json Decompress => 200 ExtractSummary),
        route!(GET "/api/v1/servers/{id}/activity", Server(Some("activity.read")), "The server's audit log, newest first", schedules::activity, => 200 page ActivityView),
        route!(DELETE "/api/v1/servers/{id}", Admin, "Delete a server (on its node first; finished when a down node returns)", servers::delete, => 202 Deleting),
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
    /// The body (at most [`MAX_BODY_BYTES`]); empty on a route that streams it.
    pub body: Bytes,
    /// The body as it arrives, on a route that streams it (taken once).
    pub upload: Option<Upload>,
    /// The request's `content-type`.
    pub content_type: Option<String>,
    /// The client's address.
    pub client: IpAddr,
}

impl Call {
    /// A call on `server` with `access` and no caller, query or body: a handler that reads
    /// only those, asked again after a change.
    pub(crate) fn for_server(server: Server, access: ServerAccess) -> Self {
        Self {
            principal: None,
            server: Some(server),
            access: Some(access),
            params: Vec::new(),
            query: HashMap::new(),
            body: Bytes::new(),
            upload: None,
            content_type: None,
            client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

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

/// A request body as it arrives, and its declared length.
pub struct Upload {
    /// The chunks (in a mutex only so that a [`Call`] may be shared between threads; it is
    /// taken whole by [`Upload::into_stream`]).
    stream: std::sync::Mutex<BodyStream>,
    /// The `content-length`, when the client sent one.
    pub length: Option<u64>,
}

/// A body's chunks as they arrive.
pub type BodyStream = Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin>;

impl Upload {
    /// The chunks.
    pub fn into_stream(self) -> BodyStream {
        self.stream.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("length", &self.length).finish_non_exhaustive()
    }
}

/// The media type of a `content-type` value, lower-cased, without parameters.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The warp filter serving every route of [`routes`] under `/api/v1`, counting each answer
/// in [`PanelState::metrics`].
pub fn filter(state: Arc<PanelState>) -> BoxedFilter<(Response,)> {
    warp::path("api").and(warp::path("v1")).and(serve(state, Arc::new(routes()), 0)).boxed()
}

/// Serves the requests that reached it from `table` (whose routes are counted from
/// `metrics_offset` in [`PanelState::metrics`]); the flavor is read from the path.
pub(crate) fn serve(
    state: Arc<PanelState>,
    table: Arc<Vec<Route>>,
    metrics_offset: usize,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::method()
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
                    let started = std::time::Instant::now();
                    let flavor = flavor_of(path.as_str());
                    let client = remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                    let (index, answer) = match find(&table, &method, path.as_str()) {
                        Ok((index, params)) => {
                            let call = Request {
                                route: &table[index],
                                flavor,
                                params,
                                query: &query,
                                headers: &headers,
                                client,
                            };
                            (Some(index + metrics_offset), dispatch(&state, call, body).await)
                        }
                        Err(e) => (None, Err(e)),
                    };
                    let response = answer.unwrap_or_else(|e| match flavor {
                        Flavor::Native => e.into_response(),
                        Flavor::Application | Flavor::Client => e.into_pterodactyl_response(),
                    });
                    state.metrics.record(index, response.status().as_u16(), started.elapsed());
                    response
                }
            },
        )
}

/// The flavor of the API `path` is in.
pub(crate) fn flavor_of(path: &str) -> Flavor {
    if path.starts_with("/api/application/") {
        Flavor::Application
    } else if path.starts_with("/api/client") {
        Flavor::Client
    } else {
        Flavor::Native
    }
}

/// `GET /metrics`: Prometheus text for admins (an application key or an admin's session).
pub fn metrics(state: Arc<PanelState>) -> BoxedFilter<(Response,)> {
    warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .then(move |headers: HeaderMap, remote: Option<SocketAddr>| {
            let state = Arc::clone(&state);
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let peer = remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                let client = client_address(peer, header("x-forwarded-for"), &state.trusted_proxies);
                let answer = match authenticate(&state, header("authorization"), header("cookie"), client).await {
                    Ok(Some(principal)) if principal.is_admin() => render_metrics(&state).await,
                    Ok(Some(_)) => Err(ApiError::forbidden("this needs an admin")),
                    Ok(None) => Err(ApiError::unauthenticated()),
                    Err(e) => Err(e),
                };
                answer.unwrap_or_else(ApiError::into_response)
            }
        })
        .boxed()
}

async fn render_metrics(state: &PanelState) -> Result<Response, ApiError> {
    let store = state.control.store();
    let nodes = store.list_nodes().await.map_err(nexus_control::ControlError::from)?;
    let usage = store.node_usage().await.map_err(nexus_control::ControlError::from)?;
    let samples: Vec<crate::metrics::NodeSample<'_>> = nodes
        .iter()
        .map(|node| crate::metrics::NodeSample {
            name: &node.name,
            online: node.status == nexus_core::model::NodeStatus::Online,
            servers: usage.iter().find(|u| u.node == Some(node.id)).map_or(0, |u| u.servers),
        })
        .collect();
    let mut out = String::new();
    state.metrics.render(&mut out);
    crate::metrics::render_nodes(&mut out, &samples, state.sessions.len());
    let mut response = Response::new(out.into());
    response
        .headers_mut()
        .insert("content-type", warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

/// The route `method path` names and the values of its `{…}` segments; `404` for an unknown
/// path, `405` for a known path with another method.
fn find(table: &[Route], method: &Method, path: &str) -> Result<(usize, Vec<String>), ApiError> {
    let mut path_known = false;
    for (index, route) in table.iter().enumerate() {
        if let Some(params) = matches(route.path, path) {
            path_known = true;
            if route.method == *method {
                return Ok((index, params));
            }
        }
    }
    Err(if path_known {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed here"))
    } else {
        ApiError::not_found(format!("no route {path}"))
    })
}

/// A request matched to its route, before authentication.
struct Request<'a> {
    route: &'a Route,
    flavor: Flavor,
    params: Vec<String>,
    query: &'a str,
    headers: &'a HeaderMap,
    client: IpAddr,
}

fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_parts = pattern.trim_end_matches('/').split('/');
    let mut path_parts = path.trim_end_matches('/').split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            // A `{…}` value is percent-decoded once (an external id `order%2042`); one that
            // decodes to control characters names nothing.
            (Some(p), Some(s)) if p.starts_with('{') && !s.is_empty() => {
                let value = percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                if value.chars().any(char::is_control) {
                    return None;
                }
                params.push(value);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

async fn dispatch<S, B>(state: &Arc<PanelState>, request: Request<'_>, body: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: Buf + Send,
{
    let Request { route, flavor, params, query, headers, client } = request;
    let method = route.method.clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let client = client_address(client, header("x-forwarded-for"), &state.trusted_proxies);
    let principal = authenticate(state, header("authorization"), header("cookie"), client).await?;
    if let Some(principal) = &principal
        && let Via::Session { csrf, .. } = &principal.via
        && !matches!(method, Method::GET | Method::HEAD)
        && route.access != Access::Public
        && !header(CSRF_HEADER).is_some_and(|sent| same_token(sent, csrf))
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "csrf", "missing or wrong X-CSRF-Token"));
    }
    // As Pterodactyl: the client API takes client keys (and sessions), never application keys.
    if flavor == Flavor::Client && principal.as_ref().is_some_and(|p| p.via == Via::Key(ApiKeyScope::Application)) {
        return Err(ApiError::forbidden(
            "You are attempting to use an application API key on an endpoint that requires a client API key.",
        ));
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
            let id = server_named(state, flavor, params.first().map(String::as_str).unwrap_or_default()).await?;
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
    let (body, upload) = if route.streams_body {
        let stream =
            body.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining())).map_err(std::io::Error::other));
        (Bytes::new(), Some(Upload { stream: std::sync::Mutex::new(Box::new(stream)), length }))
    } else {
        (read_bounded(length, body, MAX_BODY_BYTES).await?, None)
    };
    let call = Call {
        principal,
        server,
        access,
        params,
        query,
        body,
        upload,
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

/// The server a path segment names: a UUID on `/api/v1`; an integer id on Pterodactyl's
/// application API; an 8-character identifier or a UUID on its client API. A name that
/// matches nothing, or an identifier two servers share, is `404`.
async fn server_named(state: &PanelState, flavor: Flavor, segment: &str) -> Result<ServerId, ApiError> {
    use nexus_core::model::{RecordKind, RefLookup, SHORT_KEY_LEN};
    let invalid = || ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", "the id in the path is not valid");
    let lookup = match flavor {
        Flavor::Native => return segment.parse().map_err(|_| invalid()),
        Flavor::Client if segment.len() != SHORT_KEY_LEN => {
            return segment.parse().map_err(|_| ApiError::not_found("server"));
        }
        Flavor::Client => RefLookup::Short(segment),
        Flavor::Application => RefLookup::Number(segment.parse().map_err(|_| ApiError::not_found("server"))?),
    };
    let found = state
        .control
        .store()
        .find_record_refs(RecordKind::Server, lookup)
        .await
        .map_err(nexus_control::ControlError::from)?;
    match found.as_slice() {
        [one] => one.key.parse().map_err(|_| ApiError::not_found("server")),
        _ => Err(ApiError::not_found("server")),
    }
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

/// The logged-in user of a browser session (the `cookie` header), if any: what the web UI's
/// pages decide what to show by.
pub async fn session_principal(state: &PanelState, cookie: Option<&str>) -> Result<Option<Principal>, ApiError> {
    authenticate(state, None, cookie, IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await
}

async fn authenticate(
    state: &PanelState,
    authorization: Option<&str>,
    cookie: Option<&str>,
    client: IpAddr,
) -> Result<Option<Principal>, ApiError> {
    if let Some(authorization) = authorization {
        let Some(key) = authorization.strip_prefix("Bearer ") else {
            return Err(ApiError::unauthenticated());
        };
        let (key, user) = state.control.authenticate_key(key.trim(), client).await?;
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
        assert_eq!(matches("/a/{x}", "/a/order%2042"), Some(vec!["order 42".to_owned()]), "decoded once");
        assert_eq!(matches("/a/{x}", "/a/%00abcdefg"), None, "a NUL names nothing");
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

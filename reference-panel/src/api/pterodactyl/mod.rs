//! Pterodactyl's Application API (`/api/application`) and Client API (`/api/client`), served
//! over the same control plane as `/api/v1`, so billing systems, bots and client libraries
//! written for Pterodactyl work unchanged.
//!
//! * Every route is a row of [`routes`] served by the same dispatcher as `/api/v1` (the same
//!   authentication, access check, bounded body and audit log); only naming and shapes
//!   differ. Application routes need an admin (an application key `ptla_…` or an admin's
//!   session); client routes act on the servers the caller may see, with Pterodactyl's
//!   permission names.
//! * Records are named as Pterodactyl names them: integer `id`s and a server's 8-character
//!   `identifier`, from the store's record refs
//!   ([`RecordRefRepo`](nexus_core::store::RecordRefRepo)): a record gets its number the
//!   first time an answer names it, and keeps it. The UUID is always shown too, and the
//!   client API accepts a server's UUID wherever it takes an identifier.
//! * Answers are `{"object": …, "attributes": {…}}`, lists `{"object":"list","data":[…],
//!   "meta":{"pagination":{…}}}`; errors `{"errors":[{"code","status","detail"}]}` with
//!   Pterodactyl's status codes. An unserved route under either prefix is a `404` in that
//!   shape.

mod account;
mod application;
mod backups;
mod body;
mod client;
mod schedules;
mod shapes;

use super::router::{Access, Call, Handled, Route, serve};
use super::{ApiError, PanelState};
use nexus_core::model::{RecordKind, RecordRef, RefLookup};
use std::collections::HashMap;
use std::sync::Arc;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;

/// A row of [`routes`]: `pt!(METHOD "/path", access, handler)`; `stream` after the handler
/// hands it the body as it arrives.
macro_rules! pt {
    ($method:ident $path:literal, $access:expr, $handler:path) => {
        Route::plain(Method::$method, $path, $access, false, |state, call| -> Handled {
            Box::pin($handler(state, call))
        })
    };
    ($method:ident $path:literal, $access:expr, $handler:path, stream) => {
        Route::plain(Method::$method, $path, $access, true, |state, call| -> Handled {
            Box::pin($handler(state, call))
        })
    };
}

/// Every served route of Pterodactyl's two APIs. What is not here answers `404`.
#[rustfmt::skip]
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Authenticated, Server, Session};
    use application as app;
    vec![
        pt!(GET "/api/application/users", Admin, app::list_users),
        pt!(GET "/api/application/users/external/{external_id}", Admin, app::user_by_external_id),
        pt!(GET "/api/application/users/{user}", Admin, app::show_user),
        pt!(POST "/api/application/users", Admin, app::create_user),
        pt!(PATCH "/api/application/users/{user}", Admin, app::update_user),
        pt!(DELETE "/api/application/users/{user}", Admin, app::delete_user),

        pt!(GET "/api/application/locations", Admin, app::list_locations),
        pt!(GET "/api/application/locations/{location}", Admin, app::show_location),
        pt!(POST "/api/application/locations", Admin, app::create_location),
        pt!(PATCH "/api/application/locations/{location}", Admin, app::update_location),
        pt!(DELETE "/api/application/locations/{location}", Admin, app::delete_location),

        pt!(GET "/api/application/nodes", Admin, app::list_nodes),
        pt!(GET "/api/application/nodes/{node}", Admin, app::show_node),
        pt!(GET "/api/application/nodes/{node}/configuration", Admin, app::node_configuration),
        pt!(POST "/api/application/nodes", Admin, app::create_node),
        pt!(PATCH "/api/application/nodes/{node}", Admin, app::update_node),
        pt!(DELETE "/api/application/nodes/{node}", Admin, app::delete_node),
        pt!(GET "/api/application/nodes/{node}/allocations", Admin, app::list_allocations),
        pt!(POST "/api/application/nodes/{node}/allocations", Admin, app::create_allocations),
        pt!(DELETE "/api/application/nodes/{node}/allocations/{allocation}", Admin, app::delete_allocation),

        pt!(GET "/api/application/nests", Admin, app::list_nests),
        pt!(GET "/api/application/nests/{nest}", Admin, app::show_nest),
        pt!(GET "/api/application/nests/{nest}/eggs", Admin, app::list_eggs),
        pt!(GET "/api/application/nests/{nest}/eggs/{egg}", Admin, app::show_egg),

        pt!(GET "/api/application/servers", Admin, app::list_servers),
        pt!(GET "/api/application/servers/external/{external_id}", Admin, app::server_by_external_id),
        pt!(GET "/api/application/servers/{server}", Admin, app::show_server),
        pt!(POST "/api/application/servers", Admin, app::create_server),
        pt!(PATCH "/api/application/servers/{server}/details", Admin, app::update_details),
        pt!(PATCH "/api/application/servers/{server}/build", Admin, app::update_build),
        pt!(PATCH "/api/application/servers/{server}/startup", Admin, app::update_startup),
        pt!(POST "/api/application/servers/{server}/suspend", Admin, app::suspend),
        pt!(POST "/api/application/servers/{server}/unsuspend", Admin, app::unsuspend),
        pt!(POST "/api/application/servers/{server}/reinstall", Admin, app::reinstall),
        pt!(DELETE "/api/application/servers/{server}", Admin, app::delete_server),
        pt!(DELETE "/api/application/servers/{server}/force", Admin, app::force_delete_server),

        pt!(GET "/api/client", Authenticated, client::list_servers),
        pt!(GET "/api/client/account", Authenticated, client::account),
        pt!(GET "/api/client/permissions", Authenticated, account::permissions),
        pt!(PUT "/api/client/account/email", Session, account::update_email),
        pt!(PUT "/api/client/account/password", Session, account::update_password),
        pt!(GET "/api/client/account/api-keys", Authenticated, account::list_keys),
        pt!(POST "/api/client/account/api-keys", Session, account::create_key),
        pt!(DELETE "/api/client/account/api-keys/{identifier}", Session, account::delete_key),
        pt!(GET "/api/client/account/two-factor", Session, account::two_factor),
        pt!(POST "/api/client/account/two-factor", Session, account::enable_two_factor),
        pt!(POST "/api/client/account/two-factor/disable", Session, account::disable_two_factor),
        pt!(GET "/api/client/servers/{server}", Server(None), client::show_server),
        pt!(GET "/api/client/servers/{server}/resources", Server(None), client::resources),
        pt!(GET "/api/client/servers/{server}/websocket", Server(Some("websocket.connect")), client::websocket),
        pt!(POST "/api/client/servers/{server}/command", Server(Some("control.console")), client::command),
        pt!(POST "/api/client/servers/{server}/power", Server(None), client::power),
        pt!(GET "/api/client/servers/{server}/files/list", Server(Some("file.read")), client::list_files),
        pt!(GET "/api/client/servers/{server}/files/contents", Server(Some("file.read-content")), client::file_contents),
        pt!(GET "/api/client/servers/{server}/files/download", Server(Some("file.read-content")), client::download_file),
        pt!(POST "/api/client/servers/{server}/files/write", Server(Some("file.create")), client::write_file, stream),
        pt!(PUT "/api/client/servers/{server}/files/rename", Server(Some("file.update")), client::rename_files),
        pt!(POST "/api/client/servers/{server}/files/copy", Server(Some("file.create")), client::copy_file),
        pt!(POST "/api/client/servers/{server}/files/delete", Server(Some("file.delete")), client::delete_files),
        pt!(POST "/api/client/servers/{server}/files/create-folder", Server(Some("file.create")), client::create_folder),
        pt!(POST "/api/client/servers/{server}/files/chmod", Server(Some("file.update")), client::chmod_files),
        pt!(POST "/api/client/servers/{server}/files/compress", Server(Some("file.archive")), client::compress_files),
        pt!(POST "/api/client/servers/{server}/files/decompress", Server(Some("file.archive")), client::decompress_file),
        pt!(GET "/api/client/servers/{server}/startup", Server(Some("startup.read")), client::startup),
        pt!(PUT "/api/client/servers/{server}/startup/variable", Server(Some("startup.update")), client::update_variable),
        pt!(POST "/api/client/servers/{server}/settings/rename", Server(Some("settings.rename")), client::rename),
        pt!(POST "/api/client/servers/{server}/settings/reinstall", Server(Some("settings.reinstall")), client::reinstall),
        pt!(GET "/api/client/servers/{server}/activity", Server(Some("activity.read")), client::activity),
        pt!(GET "/api/client/servers/{server}/schedules", Server(Some("schedule.read")), schedules::list),
        pt!(POST "/api/client/servers/{server}/schedules", Server(Some("schedule.create")), schedules::create),
        pt!(GET "/api/client/servers/{server}/schedules/{schedule}", Server(Some("schedule.read")), schedules::show),
        pt!(POST "/api/client/servers/{server}/schedules/{schedule}", Server(Some("schedule.update")), schedules::update),
        pt!(POST "/api/client/servers/{server}/schedules/{schedule}/execute", Server(Some("schedule.update")), schedules::execute),
        pt!(DELETE "/api/client/servers/{server}/schedules/{schedule}", Server(Some("schedule.delete")), schedules::delete),
        pt!(POST "/api/client/servers/{server}/schedules/{schedule}/tasks", Server(Some("schedule.update")), schedules::create_task),
        pt!(POST "/api/client/servers/{server}/schedules/{schedule}/tasks/{task}", Server(Some("schedule.update")), schedules::update_task),
        pt!(DELETE "/api/client/servers/{server}/schedules/{schedule}/tasks/{task}", Server(Some("schedule.update")), schedules::delete_task),
        pt!(GET "/api/client/servers/{server}/backups", Server(Some("backup.read")), backups::list),
        pt!(POST "/api/client/servers/{server}/backups", Server(Some("backup.create")), backups::create),
        pt!(GET "/api/client/servers/{server}/backups/{backup}", Server(Some("backup.read")), backups::show),
        pt!(GET "/api/client/servers/{server}/backups/{backup}/download", Server(Some("backup.download")), backups::download),
        pt!(POST "/api/client/servers/{server}/backups/{backup}/lock", Server(Some("backup.delete")), backups::lock),
        pt!(POST "/api/client/servers/{server}/backups/{backup}/restore", Server(Some("backup.restore")), backups::restore),
        pt!(DELETE "/api/client/servers/{server}/backups/{backup}", Server(Some("backup.delete")), backups::delete),
        pt!(GET "/api/client/servers/{server}/users", Server(Some("user.read")), schedules::list_subusers),
        pt!(POST "/api/client/servers/{server}/users", Server(Some("user.create")), schedules::create_subuser),
        pt!(GET "/api/client/servers/{server}/users/{user}", Server(Some("user.read")), schedules::show_subuser),
        pt!(POST "/api/client/servers/{server}/users/{user}", Server(Some("user.update")), schedules::update_subuser),
        pt!(DELETE "/api/client/servers/{server}/users/{user}", Server(Some("user.delete")), schedules::delete_subuser),
    ]
}

/// The warp filter serving [`routes`] under `/api/application` and `/api/client` (mount it
/// after `/api/v1`'s).
pub fn filter(state: Arc<PanelState>) -> BoxedFilter<(Response,)> {
    let offset = super::routes().len();
    warp::path("api")
        .and(warp::path("application").or(warp::path("client")).unify())
        .and(serve(state, Arc::new(routes()), offset))
        .boxed()
}

/// The refs of `keys` (records of `kind`), by key, numbering those without one.
async fn refs(state: &PanelState, kind: RecordKind, keys: Vec<String>) -> Result<HashMap<String, RecordRef>, ApiError> {
    let found = state.control.store().record_refs(kind, &keys).await.map_err(store_error)?;
    Ok(found.into_iter().map(|r| (r.key.clone(), r)).collect())
}

/// The key of the record of `kind` `lookup` finds (the first, by number), as `T`.
async fn record_named<T: std::str::FromStr>(
    state: &PanelState,
    kind: RecordKind,
    lookup: RefLookup<'_>,
) -> Result<Option<T>, ApiError> {
    let found = state.control.store().find_record_refs(kind, lookup).await.map_err(store_error)?;
    Ok(found.first().and_then(|r| r.key.parse().ok()))
}

/// The key of the record of `kind` numbered by the path's `i`th segment (`404` when none).
async fn key_of<T: std::str::FromStr>(
    state: &PanelState,
    call: &Call,
    i: usize,
    kind: RecordKind,
) -> Result<T, ApiError> {
    let not_found = || ApiError::not_found("The requested resource could not be found on the server.");
    let number: u64 = call.params.get(i).and_then(|p| p.parse().ok()).ok_or_else(not_found)?;
    record_named(state, kind, RefLookup::Number(number)).await?.ok_or_else(not_found)
}

fn store_error(e: nexus_core::store::StoreError) -> ApiError {
    nexus_control::ControlError::from(e).into()
}

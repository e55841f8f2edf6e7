//! Subusers of a server and the permission catalog.

use super::account::ctl;
use super::views::UserView;
use super::{created, no_content, ok};
use crate::api::{ApiError, Call, PanelState};
use nexus_control::subusers::PERMISSIONS;
use nexus_core::ids::UserId;
use nexus_core::model::Subuser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use warp::reply::Response;

pub(crate) async fn catalog(_: Arc<PanelState>, _: Call) -> Result<Response, ApiError> {
    ok(&PERMISSIONS)
}

#[derive(Serialize)]
struct SubuserView {
    user: UserView,
    permissions: BTreeSet<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

async fn view(state: &PanelState, subuser: &Subuser) -> Result<SubuserView, ApiError> {
    let user = state.control.store().get_user(subuser.user).await.map_err(ctl)?;
    Ok(SubuserView {
        user: UserView::from(&user),
        permissions: subuser.permissions.clone(),
        created_at: subuser.created_at,
    })
}

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let subusers = state.control.store().list_subusers(call.server()?.id).await.map_err(ctl)?;
    let mut views = Vec::with_capacity(subusers.len());
    for subuser in &subusers {
        views.push(view(&state, subuser).await?);
    }
    ok(&views)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubuser {
    email: String,
    permissions: BTreeSet<String>,
}

pub(crate) async fn create(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: NewSubuser = call.json()?;
    let caller = (&call.principal()?.user, call.access()?);
    let subuser = state.control.put_subuser(call.server()?.id, &body.email, body.permissions, false, caller).await?;
    created(&view(&state, &subuser).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSubuser {
    permissions: BTreeSet<String>,
}

pub(crate) async fn update(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let user: UserId = call.param(1)?;
    let body: UpdateSubuser = call.json()?;
    let server = call.server()?.id;
    if state.control.store().get_subuser(server, user).await.map_err(ctl)?.is_none() {
        return Err(ApiError::not_found("subuser"));
    }
    let account = state.control.store().get_user(user).await.map_err(ctl)?;
    let caller = (&call.principal()?.user, call.access()?);
    let subuser = state.control.put_subuser(server, &account.email, body.permissions, true, caller).await?;
    ok(&view(&state, &subuser).await?)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let user: UserId = call.param(1)?;
    let caller = (&call.principal()?.user, call.access()?);
    state.control.remove_subuser(call.server()?.id, user, caller).await?;
    no_content()
}

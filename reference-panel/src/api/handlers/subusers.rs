//! Subusers of a server and the permission catalog.

use super::account::ctl;
use super::views::UserView;
use crate::api::answer::{Answer, NoContent, created, no_content, ok};
use crate::api::{ApiError, Call, PanelState};
use nexus_control::subusers::PERMISSIONS;
use nexus_core::ids::UserId;
use nexus_core::model::Subuser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

pub(crate) async fn catalog(_: Arc<PanelState>, _: Call) -> Result<Answer<Vec<&'static str>>, ApiError> {
    ok(PERMISSIONS.to_vec())
}

/// A subuser: the account and what it may do on the server.
#[derive(Serialize, JsonSchema)]
pub(crate) struct SubuserView {
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

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<SubuserView>>, ApiError> {
    let subusers = state.control.store().list_subusers(call.server()?.id).await.map_err(ctl)?;
    let mut views = Vec::with_capacity(subusers.len());
    for subuser in &subusers {
        views.push(view(&state, subuser).await?);
    }
    ok(views)
}

/// A subuser to add: an existing account's e-mail and its permissions.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSubuser {
    email: String,
    /// Names from `GET /api/v1/permissions`.
    permissions: BTreeSet<String>,
}

pub(crate) async fn create(
    state: Arc<PanelState>,
    call: Call,
    body: NewSubuser,
) -> Result<Answer<SubuserView>, ApiError> {
    let caller = (&call.principal()?.user, call.access()?);
    let subuser = state.control.put_subuser(call.server()?.id, &body.email, body.permissions, false, caller).await?;
    created(view(&state, &subuser).await?)
}

/// A subuser's new permissions.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSubuser {
    permissions: BTreeSet<String>,
}

pub(crate) async fn update(
    state: Arc<PanelState>,
    call: Call,
    body: UpdateSubuser,
) -> Result<Answer<SubuserView>, ApiError> {
    let user: UserId = call.param(1)?;
    let server = call.server()?.id;
    if state.control.store().get_subuser(server, user).await.map_err(ctl)?.is_none() {
        return Err(ApiError::not_found("subuser"));
    }
    let account = state.control.store().get_user(user).await.map_err(ctl)?;
    let caller = (&call.principal()?.user, call.access()?);
    let subuser = state.control.put_subuser(server, &account.email, body.permissions, true, caller).await?;
    ok(view(&state, &subuser).await?)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    let user: UserId = call.param(1)?;
    let caller = (&call.principal()?.user, call.access()?);
    state.control.remove_subuser(call.server()?.id, user, caller).await?;
    no_content()
}

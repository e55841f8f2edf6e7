//! Health, login/logout, the caller's account and API keys, users (admins).

use super::views::{KeyView, UserView};
use super::{created, listing, no_content, ok};
use crate::api::auth::{SESSION_COOKIE, SESSION_LIFETIME, Via};
use crate::api::{ApiError, Call, PanelState, json_response};
use chrono::{DateTime, Utc};
use nexus_control::accounts::NewUser;
use nexus_core::ids::ApiKeyId;
use nexus_core::model::{ApiKeyScope, Role};
use serde::Deserialize;
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

/// API keys per account at most (as Pterodactyl).
const MAX_KEYS: usize = 25;

pub(crate) async fn health(_: Arc<PanelState>, _: Call) -> Result<Response, ApiError> {
    ok(&serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    login: String,
    password: String,
}

pub(crate) async fn login(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: Login = call.json()?;
    let user = state.control.authenticate(&body.login, &body.password, call.client).await?;
    if state.control.totp_enabled(user.id).await? {
        // The password was right; the session waits for the second factor.
        let token = state.sessions.await_second_factor(user.id);
        return ok(&serde_json::json!({ "totp_required": true, "login_token": token }));
    }
    session_response(&state, &user)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondFactor {
    login_token: String,
    /// A code from the authenticator app, or a recovery code.
    code: String,
}

pub(crate) async fn login_second_factor(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: SecondFactor = call.json()?;
    let Some(user) = state.sessions.pending_login(&body.login_token) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "the login expired; log in again"));
    };
    state.control.verify_second_factor(user, &body.code, call.client).await?;
    state.sessions.finish_login(&body.login_token);
    let user = state.control.store().get_user(user).await.map_err(ctl)?;
    session_response(&state, &user)
}

fn session_response(state: &PanelState, user: &nexus_core::model::User) -> Result<Response, ApiError> {
    let (id, csrf) = state.sessions.open(user.id);
    tracing::info!(user = %user.id, "login");
    let mut response =
        json_response(StatusCode::OK, &serde_json::json!({ "user": UserView::from(user), "csrf_token": csrf }));
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if state.secure_cookies { "; Secure" } else { "" }
    );
    let value = HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("session cookie"))?;
    response.headers_mut().insert("set-cookie", value);
    Ok(response)
}

pub(crate) async fn logout(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    match &call.principal()?.via {
        Via::Session { id, .. } => state.sessions.close(id),
        Via::Key(_) => return Err(ApiError::bad_request("API keys have no session; delete the key instead")),
    }
    let mut response = no_content()?;
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert("set-cookie", value);
    }
    Ok(response)
}

/// The caller's account; a session also gets its CSRF token back (a reloaded page has the
/// cookie but lost the token).
pub(crate) async fn me(_: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let principal = call.principal()?;
    let mut view = serde_json::to_value(UserView::from(&principal.user)).unwrap_or_default();
    if let Via::Session { csrf, .. } = &principal.via {
        view["csrf_token"] = serde_json::Value::String(csrf.clone());
    }
    ok(&view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let principal = call.principal()?;
    let body: PasswordChange = call.json()?;
    state.control.change_password(principal.user.id, &body.current_password, &body.new_password, call.client).await?;
    // Every other session of this account ends; this one (if it is one) stays.
    let keep = match &principal.via {
        Via::Session { id, .. } => Some(id.as_str()),
        Via::Key(_) => None,
    };
    state.sessions.close_all_of(principal.user.id, keep);
    no_content()
}

pub(crate) async fn list_keys(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let keys = state.control.store().list_api_keys(call.principal()?.user.id).await.map_err(ctl)?;
    ok(&keys.iter().map(KeyView::from).collect::<Vec<_>>())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    kind: ApiKeyScope,
    #[serde(default)]
    memo: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

pub(crate) async fn create_key(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let principal = call.principal()?;
    let body: NewKey = call.json()?;
    if body.kind == ApiKeyScope::Application && !principal.is_admin() {
        return Err(ApiError::forbidden("application keys are for admins"));
    }
    if state.control.store().list_api_keys(principal.user.id).await.map_err(ctl)?.len() >= MAX_KEYS {
        return Err(ApiError::invalid("kind", format!("an account has at most {MAX_KEYS} API keys; delete one first")));
    }
    let (key, secret) = state.control.create_api_key(principal.user.id, body.kind, &body.memo, body.expires_at).await?;
    created(&serde_json::json!({ "key": KeyView::from(&key), "secret": secret }))
}

pub(crate) async fn delete_key(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ApiKeyId = call.param(0)?;
    state.control.delete_api_key(call.principal()?.user.id, id).await?;
    no_content()
}

pub(crate) async fn list_users(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let (page, number, per_page) = call.page()?;
    let users = state.control.store().list_users(page).await.map_err(ctl)?;
    listing(users.iter().map(UserView::from).collect(), number, per_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    email: String,
    password: String,
    #[serde(default = "user_role")]
    role: Role,
}

fn user_role() -> Role {
    Role::User
}

pub(crate) async fn create_user(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: CreateUser = call.json()?;
    let user = state.control.create_user(NewUser::new(body.username, body.email, body.password, body.role)).await?;
    created(&UserView::from(&user))
}

/// A store error as the API answers it.
pub(super) fn ctl(e: nexus_core::store::StoreError) -> ApiError {
    nexus_control::ControlError::from(e).into()
}

pub(crate) async fn totp_setup(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let setup = state.control.totp_setup(call.principal()?.user.id).await?;
    ok(&serde_json::json!({ "secret": setup.secret, "uri": setup.uri }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpCode {
    code: String,
}

pub(crate) async fn totp_enable(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: TotpCode = call.json()?;
    let codes = state.control.totp_enable(call.principal()?.user.id, &body.code).await?;
    ok(&serde_json::json!({ "recovery_codes": codes }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

pub(crate) async fn totp_disable(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: Password = call.json()?;
    state.control.totp_disable(call.principal()?.user.id, &body.password, call.client).await?;
    no_content()
}

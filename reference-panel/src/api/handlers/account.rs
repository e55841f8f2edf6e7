//! Health, login/logout, the caller's account and API keys, users (admins).

use super::views::{KeyView, UserView};
use crate::api::answer::{Answer, Listing, NoContent, created, listing, no_content, ok};
use crate::api::auth::{SESSION_COOKIE, SESSION_LIFETIME, Via};
use crate::api::{ApiError, Call, PanelState};
use chrono::{DateTime, Utc};
use nexus_control::accounts::NewUser;
use nexus_core::ids::ApiKeyId;
use nexus_core::model::{ApiKeyScope, Role};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use warp::http::header::SET_COOKIE;
use warp::http::{HeaderValue, StatusCode};

/// API keys per account at most (as Pterodactyl).
const MAX_KEYS: usize = 25;

/// An OpenAPI 3.1 document.
#[derive(Clone, Serialize, JsonSchema)]
#[serde(transparent)]
pub(crate) struct OpenApiDocument(#[schemars(with = "serde_json::Map<String, serde_json::Value>")] serde_json::Value);

/// The OpenAPI document, built once per process from the route table.
pub(crate) async fn openapi(_: Arc<PanelState>, _: Call) -> Result<Answer<OpenApiDocument>, ApiError> {
    static DOCUMENT: OnceLock<OpenApiDocument> = OnceLock::new();
    ok(DOCUMENT.get_or_init(|| OpenApiDocument(crate::api::openapi::document(&crate::api::routes()))).clone())
}

/// The panel is up.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
    /// The panel's version.
    version: &'static str,
}

pub(crate) async fn health(_: Arc<PanelState>, _: Call) -> Result<Answer<Health>, ApiError> {
    ok(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// A login.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    /// User name or e-mail.
    login: String,
    password: String,
}

/// A login's answer: a session, or the wait for the second factor.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum LoginAnswer {
    /// Logged in: the cookie is set.
    Session(SessionView),
    /// The password was right; send a code to `/api/v1/auth/login/totp` with this token.
    SecondFactor {
        /// Always `true`.
        totp_required: bool,
        /// Names this login for the second step (valid for a few minutes).
        login_token: String,
    },
}

/// A new session: who, and the token changing requests must send as `X-CSRF-Token`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct SessionView {
    user: UserView,
    csrf_token: String,
}

pub(crate) async fn login(state: Arc<PanelState>, call: Call, body: Login) -> Result<Answer<LoginAnswer>, ApiError> {
    let user = state.control.authenticate(&body.login, &body.password, call.client).await?;
    if state.control.totp_enabled(user.id).await? {
        // The password was right; the session waits for the second factor.
        let login_token = state.sessions.await_second_factor(user.id);
        return ok(LoginAnswer::SecondFactor { totp_required: true, login_token });
    }
    let (session, cookie) = open_session(&state, &user)?;
    Ok(ok(LoginAnswer::Session(session))?.header(SET_COOKIE, cookie))
}

/// The second step of a login.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecondFactor {
    /// From the first step's answer.
    login_token: String,
    /// A code from the authenticator app, or a recovery code.
    code: String,
}

pub(crate) async fn login_second_factor(
    state: Arc<PanelState>,
    call: Call,
    body: SecondFactor,
) -> Result<Answer<SessionView>, ApiError> {
    let Some(user) = state.sessions.pending_login(&body.login_token) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "the login expired; log in again"));
    };
    state.control.verify_second_factor(user, &body.code, call.client).await?;
    state.sessions.finish_login(&body.login_token);
    let user = state.control.store().get_user(user).await.map_err(ctl)?;
    let (session, cookie) = open_session(&state, &user)?;
    Ok(ok(session)?.header(SET_COOKIE, cookie))
}

/// A new session for `user`, and its cookie.
fn open_session(state: &PanelState, user: &nexus_core::model::User) -> Result<(SessionView, HeaderValue), ApiError> {
    let (id, csrf_token) = state.sessions.open(user.id);
    tracing::info!(user = %user.id, "login");
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if state.secure_cookies { "; Secure" } else { "" }
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("session cookie"))?;
    Ok((SessionView { user: UserView::from(user), csrf_token }, cookie))
}

pub(crate) async fn logout(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    match &call.principal()?.via {
        Via::Session { id, .. } => state.sessions.close(id),
        Via::Key(_) => return Err(ApiError::bad_request("API keys have no session; delete the key instead")),
    }
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let expired = HeaderValue::from_str(&expired).map_err(|_| ApiError::bad_request("session cookie"))?;
    Ok(no_content()?.header(SET_COOKIE, expired))
}

/// The caller's account.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AccountView {
    #[serde(flatten)]
    user: UserView,
    /// A session's CSRF token (a reloaded page has the cookie but lost the token); absent
    /// for API keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

pub(crate) async fn me(_: Arc<PanelState>, call: Call) -> Result<Answer<AccountView>, ApiError> {
    let principal = call.principal()?;
    let csrf_token = match &principal.via {
        Via::Session { csrf, .. } => Some(csrf.clone()),
        Via::Key(_) => None,
    };
    ok(AccountView { user: UserView::from(&principal.user), csrf_token })
}

/// A password change.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(
    state: Arc<PanelState>,
    call: Call,
    body: PasswordChange,
) -> Result<Answer<NoContent>, ApiError> {
    let principal = call.principal()?;
    state.control.change_password(principal.user.id, &body.current_password, &body.new_password, call.client).await?;
    // Every other session of this account ends; this one (if it is one) stays.
    let keep = match &principal.via {
        Via::Session { id, .. } => Some(id.as_str()),
        Via::Key(_) => None,
    };
    state.sessions.close_all_of(principal.user.id, keep);
    no_content()
}

pub(crate) async fn list_keys(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<KeyView>>, ApiError> {
    let keys = state.control.store().list_api_keys(call.principal()?.user.id).await.map_err(ctl)?;
    ok(keys.iter().map(KeyView::from).collect())
}

/// A new API key.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// `application` (admins: the whole panel) or `client` (the caller's rights).
    kind: ApiKeyScope,
    /// A note for its owner.
    #[serde(default)]
    memo: String,
    /// When it stops working (never when absent).
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    /// Addresses it is accepted from: IPs and CIDR ranges, at most 50 (anywhere when empty).
    #[serde(default)]
    allowed_ips: Vec<String>,
}

/// A created API key and its secret (shown once; only its hash is kept).
#[derive(Serialize, JsonSchema)]
pub(crate) struct CreatedKey {
    key: KeyView,
    secret: String,
}

pub(crate) async fn create_key(
    state: Arc<PanelState>,
    call: Call,
    body: NewKey,
) -> Result<Answer<CreatedKey>, ApiError> {
    let principal = call.principal()?;
    if body.kind == ApiKeyScope::Application && !principal.is_admin() {
        return Err(ApiError::forbidden("application keys are for admins"));
    }
    if state.control.store().list_api_keys(principal.user.id).await.map_err(ctl)?.len() >= MAX_KEYS {
        return Err(ApiError::invalid("kind", format!("an account has at most {MAX_KEYS} API keys; delete one first")));
    }
    let (key, secret) = state
        .control
        .create_limited_api_key(principal.user.id, body.kind, &body.memo, body.expires_at, &body.allowed_ips)
        .await?;
    created(CreatedKey { key: KeyView::from(&key), secret })
}

pub(crate) async fn delete_key(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    let id: ApiKeyId = call.param(0)?;
    state.control.delete_api_key(call.principal()?.user.id, id).await?;
    no_content()
}

pub(crate) async fn list_users(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<UserView>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    if let Some(email) = call.query.get("email") {
        let rows = state.control.user_by_email(email).await?.iter().map(UserView::from).collect();
        return listing(rows, number, per_page);
    }
    let users = state.control.store().list_users(page).await.map_err(ctl)?;
    listing(users.iter().map(UserView::from).collect(), number, per_page)
}

/// A new user.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    username: String,
    email: String,
    password: String,
    #[serde(default = "user_role")]
    role: Role,
}

fn user_role() -> Role {
    Role::User
}

pub(crate) async fn create_user(
    state: Arc<PanelState>,
    _: Call,
    body: CreateUser,
) -> Result<Answer<UserView>, ApiError> {
    let user = state.control.create_user(NewUser::new(body.username, body.email, body.password, body.role)).await?;
    created(UserView::from(&user))
}

/// A store error as the API answers it.
pub(super) fn ctl(e: nexus_core::store::StoreError) -> ApiError {
    nexus_control::ControlError::from(e).into()
}

/// A TOTP secret being set up (not active until enabled with a code).
#[derive(Serialize, JsonSchema)]
pub(crate) struct TotpSetupView {
    /// The secret, base32.
    secret: String,
    /// `otpauth://totp/…` for authenticator apps.
    uri: String,
}

pub(crate) async fn totp_setup(state: Arc<PanelState>, call: Call) -> Result<Answer<TotpSetupView>, ApiError> {
    let setup = state.control.totp_setup(call.principal()?.user.id).await?;
    ok(TotpSetupView { secret: setup.secret, uri: setup.uri })
}

/// A code from the authenticator app.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TotpCode {
    code: String,
}

/// Recovery codes, each good for one login; shown once.
#[derive(Serialize, JsonSchema)]
pub(crate) struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

pub(crate) async fn totp_enable(
    state: Arc<PanelState>,
    call: Call,
    body: TotpCode,
) -> Result<Answer<RecoveryCodes>, ApiError> {
    let recovery_codes = state.control.totp_enable(call.principal()?.user.id, &body.code).await?;
    ok(RecoveryCodes { recovery_codes })
}

/// The account's password.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Password {
    password: String,
}

pub(crate) async fn totp_disable(
    state: Arc<PanelState>,
    call: Call,
    body: Password,
) -> Result<Answer<NoContent>, ApiError> {
    state.control.totp_disable(call.principal()?.user.id, &body.password, call.client).await?;
    no_content()
}

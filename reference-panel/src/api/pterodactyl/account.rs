//! `/api/client/account…` and `/api/client/permissions`: the caller's account as
//! Pterodactyl's client area manages it. As on `/api/v1`, what changes credentials (password,
//! e-mail, API keys, second factor) needs a browser session: a stolen key cannot lock its
//! owner out or mint itself successors.

use super::body::{Body, required};
use super::shapes::{answer, date, item, no_content};
use super::store_error;
use crate::api::router::Call;
use crate::api::{ApiError, PanelState};
use nexus_control::accounts::{UserChanges, key_prefix};
use nexus_control::subusers::PERMISSIONS;
use nexus_core::model::{ApiKey, ApiKeyScope};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

type Answered = Result<Response, ApiError>;

/// Keys one account holds at most (Pterodactyl's 25).
const MAX_KEYS: usize = 25;

fn key_attributes(key: &ApiKey) -> Value {
    json!({
        "identifier": format!("{}{}", key_prefix(key.scope), key.prefix),
        "description": key.memo,
        "allowed_ips": key.allowed_ips,
        "last_used_at": key.last_used_at.map(date),
        "created_at": date(key.created_at),
    })
}

pub(super) async fn list_keys(state: Arc<PanelState>, call: Call) -> Answered {
    let keys = state.control.store().list_api_keys(call.principal()?.user.id).await.map_err(store_error)?;
    // The client area lists account (client) keys; application keys are the admin area's.
    let data: Vec<Value> =
        keys.iter().filter(|k| k.scope == ApiKeyScope::Client).map(|k| item("api_key", key_attributes(k))).collect();
    answer(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

pub(super) async fn create_key(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let description = body.required_string("description")?;
    let allowed_ips = body.strings("allowed_ips")?;
    let user = call.principal()?.user.id;
    let held = state.control.store().list_api_keys(user).await.map_err(store_error)?;
    if held.iter().filter(|k| k.scope == ApiKeyScope::Client).count() >= MAX_KEYS {
        return Err(ApiError::bad_request(format!(
            "You have reached the account limit for number of API keys ({MAX_KEYS})."
        )));
    }
    let (key, secret) =
        state.control.create_limited_api_key(user, ApiKeyScope::Client, &description, None, &allowed_ips).await?;
    let identifier = format!("{}{}", key_prefix(key.scope), key.prefix);
    // As Pterodactyl: the identifier and this secret, joined, are the key.
    let secret_token = secret.strip_prefix(&identifier).unwrap_or_default().to_owned();
    let mut value = item("api_key", key_attributes(&key));
    value["meta"] = json!({ "secret_token": secret_token });
    answer(StatusCode::OK, &value)
}

pub(super) async fn delete_key(state: Arc<PanelState>, call: Call) -> Answered {
    let user = call.principal()?.user.id;
    let identifier = call.params.first().map(String::as_str).unwrap_or_default();
    let keys = state.control.store().list_api_keys(user).await.map_err(store_error)?;
    let key = keys
        .iter()
        .find(|k| format!("{}{}", key_prefix(k.scope), k.prefix) == identifier)
        .ok_or_else(|| ApiError::not_found("The requested resource could not be found on the server."))?;
    state.control.delete_api_key(user, key.id).await?;
    no_content()
}

pub(super) async fn update_password(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let current = body.required_string("current_password")?;
    let password = body.required_string("password")?;
    if body.string("password_confirmation")?.is_some_and(|c| c != password) {
        return Err(ApiError::invalid("password", "The password confirmation does not match."));
    }
    let principal = call.principal()?;
    state.control.change_password(principal.user.id, &current, &password, call.client).await.map_err(wrong_password)?;
    let keep = match &principal.via {
        crate::api::auth::Via::Session { id, .. } => Some(id.as_str()),
        crate::api::auth::Via::Key(_) => None,
    };
    state.sessions.close_all_of(principal.user.id, keep);
    no_content()
}

pub(super) async fn update_email(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let email = body.required_string("email")?;
    let password = body.required_string("password")?;
    let user = call.principal()?.user.id;
    state.control.confirm_password(user, &password, call.client, "password").await?;
    let mut changes = UserChanges::default();
    changes.email = Some(email);
    state.control.update_user(user, changes).await?;
    no_content()
}

/// A wrong current password is a refusal of that field (the caller stays logged in).
fn wrong_password(e: nexus_control::ControlError) -> ApiError {
    match ApiError::from(e) {
        ApiError { field: Some(field), .. } if field == "current_password" => {
            ApiError::invalid("current_password", "The password provided was invalid for this account.")
        }
        other => other,
    }
}

pub(super) async fn two_factor(state: Arc<PanelState>, call: Call) -> Answered {
    let setup = state.control.totp_setup(call.principal()?.user.id).await?;
    answer(StatusCode::OK, &json!({ "data": { "image_url_data": setup.uri, "secret": setup.secret } }))
}

pub(super) async fn enable_two_factor(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let code = body.required_string("code")?;
    let user = call.principal()?.user.id;
    if let Some(password) = body.string("password")? {
        state.control.confirm_password(user, &password, call.client, "password").await?;
    }
    let tokens = state.control.totp_enable(user, &code).await?;
    answer(StatusCode::OK, &item("recovery_tokens", json!({ "tokens": tokens })))
}

pub(super) async fn disable_two_factor(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let password = body.string("password")?.ok_or_else(|| required("password"))?;
    state.control.totp_disable(call.principal()?.user.id, &password, call.client).await?;
    no_content()
}

pub(super) async fn permissions(_: Arc<PanelState>, _: Call) -> Answered {
    // Pterodactyl groups its permission names (`control.start`) by their first part.
    let mut groups: Map<String, Value> = Map::new();
    for name in PERMISSIONS {
        let (group, key) = name.split_once('.').unwrap_or((name, name));
        let entry = groups.entry(group.to_owned()).or_insert_with(|| json!({ "description": "", "keys": {} }));
        entry["keys"][key] = json!("");
    }
    answer(StatusCode::OK, &item("system_permissions", json!({ "permissions": groups })))
}

//! Typed JSON errors: every failure answers `{"error":{"code":"...","message":"..."}}` with a
//! matching status code.

use crate::files::FilesError;
use nexus_core::agent::AgentError;
use serde::Serialize;
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// An API failure: status, stable code, message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code (`unauthorized`, `not_found`, `outside_root`, ...).
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

impl warp::reject::Reject for ApiError {}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 401: no or bad credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "missing or invalid credentials")
    }

    /// 403: credentials fine, not allowed to do this.
    pub fn forbidden(what: impl Into<String>) -> Self {
        Self::new(403, "forbidden", what)
    }

    /// 400: the request is malformed.
    pub fn bad_request(what: impl Into<String>) -> Self {
        Self::new(400, "bad_request", what)
    }

    /// The JSON body of this error (also sent on the console WebSocket).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Body { error: Inner { code: self.code, message: &self.message } })
            .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"unserializable error"}}"#.into())
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = warp::reply::with_header(self.to_json(), "content-type", "application/json").into_response();
        *response.status_mut() = status;
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", warp::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        Self::new(e.status_code(), e.code(), e.to_string())
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        Self::new(e.status_code(), e.code(), e.to_string())
    }
}

/// A generic code for a status.
pub fn status_code_name(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "timeout",
        _ if status >= 500 => "internal",
        _ => "error",
    }
}

/// Turns every rejection into a typed JSON error.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::new(404, "not_found", "no such route")
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(format!("invalid JSON body: {e}"))
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(413, "payload_too_large", "request body too large")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(405, "method_not_allowed", "method not allowed on this route")
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid query string")
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(415, "unsupported_media_type", "expected application/json")
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(411, "length_required", "a content-length is required")
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::MissingHeader>().is_some()
    {
        ApiError::bad_request("invalid or missing header")
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::bad_request(format!("{rejection:?}"))
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_errors_keep_their_status_and_code() {
        let e: ApiError = FilesError::OutsideRoot { path: "../x".into() }.into();
        assert_eq!((e.status, e.code), (400, "outside_root"));
        assert_eq!(
            e.to_json(),
            r#"{"error":{"code":"outside_root","message":"path `../x` leads outside the server root"}}"#
        );
    }

    #[test]
    fn agent_errors_map_by_status() {
        let e: ApiError = AgentError::UnknownServer(nexus_core::ids::ServerId::new()).into();
        assert_eq!((e.status, e.code), (404, "unknown_server"));
    }
}

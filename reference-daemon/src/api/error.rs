//! Typed JSON errors: every failure answers `{"error":{"code":"...","message":"..."}}`
//! ([`nexus_wire::error`], which lists the codes) with a matching status code; errors about one field of the request (a server spec refused with
//! `422 invalid_spec`) add `"field"`, its path in the request's JSON (`limits.memory_mb`,
//! `environment.STARTUP`, `done[1]`).
//!
//! # Which rejection answers
//! Warp tries every route and, when none accepts the request, hands [`recover`] the
//! rejections of all of them combined. Most routes reject because the path is not theirs
//! (404) or the method is not theirs (405); at most one route matched path and method, and
//! only its rejection says what is wrong with the request. So [`recover`] ranks, whatever
//! order the routes were tried in:
//!
//! 1. an [`ApiError`] (raised by our own filters, which run after the path matched: a bad
//!    server id, authentication, bodies);
//! 2. warp's rejections of the request's shape, which only a route whose path and method
//!    matched can raise (body too large, media type, query, headers);
//! 3. 405, when some route has the path but not the method;
//! 4. 404, when no route has the path.

use nexus_agent::AgentError;
use nexus_core::transport::SpecError;
use nexus_files::FilesError;
use nexus_wire::ErrorBody;
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
    /// The request field at fault, when there is one (`limits.memory_mb`).
    pub field: Option<String>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    /// The same error, naming the request field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
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

    /// The error as it travels ([`nexus_wire::ErrorBody`]).
    pub fn body(&self) -> ErrorBody {
        let body = ErrorBody::new(self.code, self.message.clone());
        match &self.field {
            Some(field) => body.with_field(field.clone()),
            None => body,
        }
    }

    /// The JSON body of this error (also sent on the console WebSocket).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.body())
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

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        Self::new(422, "invalid_spec", e.to_string()).with_field(e.field)
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        Self::new(e.status_code(), e.code(), e.to_string())
    }
}

/// Turns every rejection into a typed JSON error, the most specific one first (see the
/// module docs).
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    Ok(classify(&rejection).into_response())
}

fn classify(rejection: &warp::Rejection) -> ApiError {
    use warp::reject;
    if let Some(e) = rejection.find::<ApiError>() {
        return e.clone();
    }
    if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        return ApiError::bad_request(format!("invalid JSON body: {e}"));
    }
    if rejection.find::<reject::PayloadTooLarge>().is_some() {
        return ApiError::new(413, "payload_too_large", "request body too large");
    }
    if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        return ApiError::new(415, "unsupported_media_type", "expected application/json");
    }
    if rejection.find::<reject::LengthRequired>().is_some() {
        return ApiError::new(411, "length_required", "a content-length is required");
    }
    if rejection.find::<reject::InvalidQuery>().is_some() {
        return ApiError::bad_request("invalid query string");
    }
    if let Some(e) = rejection.find::<reject::InvalidHeader>() {
        return ApiError::bad_request(e.to_string());
    }
    if let Some(e) = rejection.find::<reject::MissingHeader>() {
        return ApiError::bad_request(e.to_string());
    }
    if rejection.find::<reject::MethodNotAllowed>().is_some() {
        return ApiError::new(405, "method_not_allowed", "method not allowed on this route");
    }
    if rejection.is_not_found() {
        return ApiError::new(404, "not_found", "no such route");
    }
    tracing::debug!(?rejection, "unhandled rejection");
    ApiError::bad_request("the request could not be handled")
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

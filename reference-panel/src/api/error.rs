//! [`ApiError`]: every refusal of the `/api/v1` API as a status and a typed
//! [`ErrorBody`] (`{"error":{"code","message","field"?}}`).

use nexus_control::ControlError;
use nexus_control::accounts::AuthError;
use nexus_core::store::StoreError;
use nexus_wire::ErrorBody;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// A refused request: status, machine-readable code, words for a person, and the field it is
/// about when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`not_found`, `invalid`, `forbidden`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field it is about.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `401 unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "log in or send an API key")
    }

    /// `403 forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// `404 not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// `422 invalid` about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message) }
    }

    /// The response.
    pub fn into_response(self) -> Response {
        let mut body = ErrorBody::new(self.code, self.message);
        if let Some(field) = self.field {
            body = body.with_field(field);
        }
        crate::api::json_response(self.status, &body)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match &e {
            ControlError::Store(StoreError::NotFound { .. })
            | ControlError::UnknownEgg(_)
            | ControlError::UnknownServer(_) => "not_found",
            ControlError::Store(StoreError::Duplicate { .. }) => "duplicate",
            ControlError::Store(StoreError::InUse { .. }) => "in_use",
            ControlError::Store(_) if status.is_client_error() => "conflict",
            ControlError::Store(_) => "internal",
            ControlError::Placement(_) | ControlError::NoFreeAllocation(_) => "no_capacity",
            ControlError::Spec(_) | ControlError::InvalidPorts { .. } | ControlError::Invalid { .. } => "invalid",
            ControlError::Node { .. } if status.is_client_error() => "node_refused",
            ControlError::Node { .. } => "node_unavailable",
            ControlError::Suspended(_) => "suspended",
            ControlError::Deleting(_) => "deleting",
            ControlError::Running(_) => "running",
            ControlError::Auth(AuthError::Throttled { .. }) => "throttled",
            ControlError::Auth(AuthError::AddressNotAllowed) => "address_not_allowed",
            ControlError::Auth(_) => "unauthenticated",
            ControlError::Forbidden(_) => "forbidden",
            ControlError::Busy(_) => "busy",
            _ => "internal",
        };
        let field = match &e {
            ControlError::Invalid { field, .. } => Some((*field).to_owned()),
            ControlError::InvalidPorts { .. } => Some("ports".to_owned()),
            ControlError::Spec(spec) => spec_field(spec),
            _ => None,
        };
        // What the store or a node said in detail stays in the log; the caller gets words.
        let message = if status.is_server_error() && code == "internal" {
            tracing::error!(error = %e, "request failed");
            "internal error; the panel's log has the details".to_owned()
        } else {
            e.to_string()
        };
        Self { status, code, message, field }
    }
}

impl From<crate::node_proxy::ProxyError> for ApiError {
    fn from(e: crate::node_proxy::ProxyError) -> Self {
        use crate::node_proxy::ProxyError;
        match e {
            ProxyError::Refused { status, code, message } if (400..500).contains(&status) => {
                // The node's file errors are the user's to read (a path outside the root, a
                // full disk); the codes are the file manager's, kept as they are.
                let code = FILE_CODES.iter().find(|known| **known == code).copied().unwrap_or("node_refused");
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                Self::new(status, code, message)
            }
            other => {
                tracing::warn!(error = %other, "a request forwarded to a node failed");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "node_unavailable",
                    "the server's node does not answer; try again shortly",
                )
            }
        }
    }
}

/// The file manager's error codes a node answers with ([`nexus_files::FilesError::code`]).
const FILE_CODES: &[&str] = &[
    "invalid_path",
    "outside_root",
    "denied",
    "not_found",
    "already_exists",
    "not_a_file",
    "not_a_directory",
    "special_file",
    "hard_linked",
    "symlink",
    "invalid_mode",
    "quota_exceeded",
    "too_large",
    "archive_rejected",
    "unsupported_archive",
    "payload_too_large",
    "bad_request",
];

fn spec_field(e: &nexus_eggs::spec::SpecBuildError) -> Option<String> {
    use nexus_eggs::spec::SpecBuildError;
    match e {
        SpecBuildError::UnknownVariable { name }
        | SpecBuildError::NotEditable { name }
        | SpecBuildError::TooLong { name }
        | SpecBuildError::Rules { name, .. } => Some(name.clone()),
        SpecBuildError::Invalid(v) => Some(v.env_variable.clone()),
        _ => None,
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        ApiError::into_response(self)
    }
}

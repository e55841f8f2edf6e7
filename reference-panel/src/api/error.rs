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

impl ApiError {
    /// The response in Pterodactyl's shape, `{"errors":[{"code","status","detail"}]}`, with
    /// the exception name Pterodactyl's panel reports for the status as `code`, and
    /// `meta.source_field` on a refusal about a field (as its validation errors carry).
    pub fn into_pterodactyl_response(self) -> Response {
        let status = self.status;
        crate::api::json_response(status, &self.into_pterodactyl_body())
    }

    /// The body of [`into_pterodactyl_response`](Self::into_pterodactyl_response).
    fn into_pterodactyl_body(self) -> serde_json::Value {
        let code = match (self.status.as_u16(), self.code) {
            (400, "bad_request" | "invalid_id") => "BadRequestHttpException",
            // A business rule (a user owning servers, an assigned allocation): Pterodactyl's
            // DisplayException.
            (400, _) => "DisplayException",
            (401, _) => "AuthenticationException",
            (403, _) => "AccessDeniedHttpException",
            (404, _) => "NotFoundHttpException",
            (405, _) => "MethodNotAllowedHttpException",
            (409, _) => "ConflictHttpException",
            (413, _) => "PayloadTooLargeHttpException",
            (415, _) => "UnsupportedMediaTypeHttpException",
            (422, _) => "ValidationException",
            (429, _) => "ThrottleRequestsException",
            (502..=504, _) => "DaemonConnectionException",
            _ => "HttpException",
        };
        let mut error = serde_json::json!({
            "code": code,
            "status": self.status.as_u16().to_string(),
            "detail": self.message,
        });
        if let Some(field) = self.field {
            let rule = if self.code == "required" { "required" } else { "invalid" };
            error["meta"] = serde_json::json!({ "source_field": field, "rule": rule });
        }
        serde_json::json!({ "errors": [error] })
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
            ControlError::Placement(_) | ControlError::NoFreeAllocation(_) | ControlError::NodeFull(_) => "no_capacity",
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
            ControlError::UnknownBackup(_) => "not_found",
            ControlError::BackupRefused(_) => "backup_refused",
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
            ProxyError::Refused { status, code, message }
                if PASSED_STATUSES.contains(&status) && FILE_CODES.contains(&code.as_str()) =>
            {
                // The node's file errors are the user's to read (a path outside the root, a
                // full disk); the codes and statuses are the file manager's, kept as they are.
                // Anything else (a refused node token, an internal error) is the operator's
                // problem, not the user's: logged, and a 502 without the node's words.
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

/// Statuses of the node's file errors passed on to the user (never 401: that is the node
/// refusing the panel's own token, which would send the user's browser to the login page).
const PASSED_STATUSES: &[u16] = &[400, 403, 404, 409, 413, 415, 422, 503, 507];

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
    "scan_timed_out",
    "busy",
    "unknown_server",
    "payload_too_large",
    "bad_request",
];

fn spec_field(e: &nexus_eggs::spec::SpecBuildError) -> Option<String> {
    e.variable().map(str::to_owned)
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        ApiError::into_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_proxy::ProxyError;

    fn refused(status: u16, code: &str) -> ApiError {
        ProxyError::Refused { status, code: code.into(), message: "m".into() }.into()
    }

    #[test]
    fn node_file_errors_reach_the_user_and_node_trouble_does_not() {
        assert_eq!(
            (refused(507, "quota_exceeded").status.as_u16(), refused(507, "quota_exceeded").code),
            (507, "quota_exceeded")
        );
        assert_eq!(refused(403, "denied").status.as_u16(), 403);
        assert_eq!(refused(400, "outside_root").code, "outside_root");
        // The node refusing the panel's token is not the user's session ending.
        assert_eq!(
            (refused(401, "unauthorized").status.as_u16(), refused(401, "unauthorized").code),
            (502, "node_unavailable")
        );
        assert_eq!(refused(500, "io").status.as_u16(), 502);
        assert_eq!(refused(404, "made_up").status.as_u16(), 502, "unknown codes are not passed on");
        let unreachable: ApiError = ProxyError::Unreachable("x".into()).into();
        assert_eq!(unreachable.status.as_u16(), 502);
    }
}

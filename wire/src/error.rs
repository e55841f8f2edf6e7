//! The daemon API's typed errors, as they travel.
//!
//! Every failure of the node API answers a status code and this JSON body (also sent on the
//! console WebSocket as `{"type":"error","error":{..}}` for a refused command):
//!
//! ```json
//! {"error":{"code":"invalid_spec","message":"limits.memory_mb: 1 MiB: must be 0 (unlimited) or 16..=16777216","field":"limits.memory_mb"}}
//! ```
//!
//! `code` is stable and machine-readable; `message` is for people; `field`, present for
//! errors about one value of the request, is its path in the request's JSON
//! (`limits.memory_mb`, `environment.STARTUP`, `done[1]`). The codes:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_id`, `bad_request`, `invalid_command`, `invalid_path`, `outside_root`, `not_a_file`, `not_a_directory`, `invalid_mode` | the request is malformed |
//! | 401 | `unauthorized`, `token_expired` | no, a wrong or an expired token |
//! | 403 | `forbidden`, `denied`, `special_file`, `hard_linked` | a browser token without the permission or for another server; a file the egg's denylist or the confinement refuses |
//! | 404 | `not_found`, `unknown_server` | no such route or file; no such server |
//! | 405 | `method_not_allowed` | a route has the path, none the method |
//! | 409 | `busy`, `invalid_state`, `not_running`, `suspended`, `install_cancelled`, `already_exists`, `symlink` | the server is installing or being removed; the action is not allowed in its state |
//! | 411, 413, 415 | `length_required`, `payload_too_large`, `too_large`, `unsupported_media_type`, `unsupported_archive` | body and archive limits |
//! | 422 | `invalid_spec`, `prepare`, `archive_rejected`, `runtime` | a [`ServerSpec`](nexus_core::transport::ServerSpec) that can never run (`field` names the value); an image that does not exist |
//! | 429 | `rate_limited`, `too_many_consoles`, `too_many_power_actions` | commands past the server's rate; console caps; power actions past the queue |
//! | 409 | `runtime` | the engine refused the action in the container's state |
//! | 500, 502 | `internal`, `io`, `state`, `runtime`, `transport`, `invalid_config` | the node failed |
//! | 503, 504 | `panel_backlog`, `shutting_down`, `scan_timed_out`, `install_timeout`, `runtime` | the node or its engine cannot take this work now, or timed out |
//! | 507 | `over_disk_quota`, `quota_exceeded` | the server is over its disk limit |

use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`unauthorized`, `unknown_server`, `outside_root`, ...).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code: code.into(), message: message.into(), field: None } }
    }

    /// The same error, naming the request field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_appears_only_when_there_is_one() {
        let plain = ErrorBody::new("unknown_server", "unknown server x");
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"error":{"code":"unknown_server","message":"unknown server x"}}"#
        );
        let field = ErrorBody::new("invalid_spec", "too small").with_field("limits.memory_mb");
        let json = serde_json::to_string(&field).unwrap();
        assert_eq!(json, r#"{"error":{"code":"invalid_spec","message":"too small","field":"limits.memory_mb"}}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), field);
    }
}

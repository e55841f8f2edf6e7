//! Mapping Podman errors to [`RuntimeError`].
//!
//! libpod answers with an HTTP status and a JSON body `{"cause", "message", "response"}`, and
//! reports several client-side conditions as 500 with a telling cause ("image not known",
//! "container state improper", "name is already in use"); the shared
//! [`status_error`] weighs both.

use nexus_core::runtime::RuntimeError;
pub(crate) use nexus_engine::error::{About, io_error, status_error};
use podman_api::Error;

/// Maps a podman-api error for a request about `about`.
pub(crate) fn api_error(error: Error, about: About<'_>) -> RuntimeError {
    match error {
        Error::Fault { code, message } => status_error(code.as_u16(), &message, about),
        Error::Error(podman_api::conn::Error::Fault { code, message }) => status_error(code.as_u16(), &message, about),
        Error::Error(podman_api::conn::Error::Hyper(err)) if err.is_connect() => {
            RuntimeError::Unavailable(err.to_string())
        }
        Error::Error(podman_api::conn::Error::IO(err)) | Error::IO(err) => io_error(err),
        other => RuntimeError::Engine(other.to_string()),
    }
}

/// The text of an error body: libpod's `message` (which includes the cause), or the body.
pub(crate) fn body_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        cause: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { message: Some(message), cause }) => match cause {
            Some(cause) if !message.contains(&cause) => format!("{message}: {cause}"),
            _ => message,
        },
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_map() {
        let refused = Error::IO(std::io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(api_error(refused, About::Container("c")), RuntimeError::Unavailable(_)));
        assert!(matches!(api_error(Error::StringError("odd".into()), About::Container("c")), RuntimeError::Engine(_)));
    }

    #[test]
    fn error_bodies_read_message_and_cause() {
        let body = br#"{"cause":"image not known","message":"x: image not known","response":500}"#;
        assert_eq!(body_message(body), "x: image not known");
        let body =
            br#"{"cause":"container state improper","message":"can only kill running containers","response":500}"#;
        assert_eq!(body_message(body), "can only kill running containers: container state improper");
        assert_eq!(body_message(b"plain text\n"), "plain text");
    }
}

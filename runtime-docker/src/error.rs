//! Mapping Docker Engine errors to [`RuntimeError`]: an answer with a status goes through the
//! shared [`status_error`]; bollard's transport errors are mapped here.

use bollard::errors::Error;
use nexus_core::runtime::RuntimeError;
pub(crate) use nexus_engine::error::About;
use nexus_engine::error::{io_error, status_error};

/// Maps an engine error for a request about `about`.
pub(crate) fn engine_error(error: Error, about: About<'_>) -> RuntimeError {
    match error {
        Error::DockerResponseServerError { status_code, message } => status_error(status_code, &message, about),
        // bollard's only timeout is the client's request timeout.
        Error::RequestTimeoutError => RuntimeError::Timeout(crate::REQUEST_TIMEOUT),
        Error::SocketNotFoundError(path) => RuntimeError::Unavailable(format!("no Docker socket at {path}")),
        Error::HyperLegacyError { err } if err.is_connect() => RuntimeError::Unavailable(err.to_string()),
        Error::IOError { err } => io_error(err),
        other => RuntimeError::Engine(other.to_string()),
    }
}

/// Whether `error` is the engine saying "no such container/image" (for idempotent removal).
pub(crate) fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::DockerResponseServerError { status_code: 404, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> Error {
        Error::DockerResponseServerError { status_code, message: message.to_owned() }
    }

    #[test]
    fn bollard_errors_map() {
        assert!(matches!(
            engine_error(server(404, "No such image: x:latest"), About::Create { image: "x:latest" }),
            RuntimeError::ImageNotFound { image } if image == "x:latest"
        ));
        assert!(matches!(engine_error(Error::RequestTimeoutError, About::Image("i")), RuntimeError::Timeout(_)));
        assert!(matches!(
            engine_error(Error::SocketNotFoundError("/nope".into()), About::Image("i")),
            RuntimeError::Unavailable(_)
        ));
        let refused = Error::IOError { err: std::io::ErrorKind::ConnectionRefused.into() };
        assert!(matches!(engine_error(refused, About::Image("i")), RuntimeError::Unavailable(_)));
    }
}

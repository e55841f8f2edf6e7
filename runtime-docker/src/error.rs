//! Mapping Docker Engine errors to [`RuntimeError`].
//!
//! The engine answers with an HTTP status and a message; the status says what kind of
//! failure it is, and the caller knows what the request was about (a container, an image, a
//! create), which decides between `ContainerNotFound` and `ImageNotFound` for a 404.

use bollard::errors::Error;
use nexus_core::runtime::RuntimeError;

/// What a failed request was about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum About<'a> {
    /// A container, by id or name.
    Container(&'a str),
    /// An image.
    Image(&'a str),
    /// Creating a container of this image: a 404 means the image is missing.
    Create {
        /// The image of the container being created.
        image: &'a str,
    },
}

/// Maps an engine error for a request about `about`.
pub(crate) fn engine_error(error: Error, about: About<'_>) -> RuntimeError {
    match error {
        Error::DockerResponseServerError { status_code, message } => status_error(status_code, message, about),
        // bollard's only timeout is the client's request timeout.
        Error::RequestTimeoutError => RuntimeError::Timeout(crate::REQUEST_TIMEOUT),
        Error::SocketNotFoundError(path) => RuntimeError::Unavailable(format!("no Docker socket at {path}")),
        Error::HyperLegacyError { err } if err.is_connect() => RuntimeError::Unavailable(err.to_string()),
        Error::IOError { err } if is_connection_failure(&err) => RuntimeError::Unavailable(err.to_string()),
        Error::IOError { err } => RuntimeError::Io(err),
        other => RuntimeError::Engine(other.to_string()),
    }
}

fn status_error(status: u16, message: String, about: About<'_>) -> RuntimeError {
    match (status, about) {
        (404, About::Image(image) | About::Create { image }) => RuntimeError::ImageNotFound { image: image.to_owned() },
        (404, About::Container(id)) => RuntimeError::ContainerNotFound(id.to_owned()),
        // Older engines answer 500 for a container removed under a running request.
        (500, About::Container(id)) if message.contains("No such container") => {
            RuntimeError::ContainerNotFound(id.to_owned())
        }
        (409, _) => RuntimeError::Conflict(message),
        // A published port someone else holds: a conflict over the address, not an engine fault.
        (500, _) if message.contains("already allocated") || message.contains("address already in use") => {
            RuntimeError::Conflict(message)
        }
        (400, _) => RuntimeError::InvalidSpec(message),
        _ => RuntimeError::Engine(format!("HTTP {status}: {message}")),
    }
}

fn is_connection_failure(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(err.kind(), ConnectionRefused | ConnectionReset | NotFound | PermissionDenied | BrokenPipe)
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
    fn statuses_map_by_subject() {
        assert!(matches!(
            engine_error(server(404, "No such image: x:latest"), About::Create { image: "x:latest" }),
            RuntimeError::ImageNotFound { image } if image == "x:latest"
        ));
        assert!(matches!(
            engine_error(server(404, "No such container: abc"), About::Container("abc")),
            RuntimeError::ContainerNotFound(id) if id == "abc"
        ));
        assert!(matches!(engine_error(server(409, "name in use"), About::Container("a")), RuntimeError::Conflict(_)));
        assert!(matches!(engine_error(server(400, "bad mount"), About::Container("a")), RuntimeError::InvalidSpec(_)));
        assert!(matches!(
            engine_error(
                server(500, "Bind for 127.0.0.1:25565 failed: port is already allocated"),
                About::Container("a")
            ),
            RuntimeError::Conflict(_)
        ));
        assert!(
            matches!(engine_error(server(500, "boom"), About::Image("i")), RuntimeError::Engine(m) if m.contains("boom"))
        );
        assert!(matches!(engine_error(Error::RequestTimeoutError, About::Image("i")), RuntimeError::Timeout(_)));
        assert!(matches!(
            engine_error(Error::SocketNotFoundError("/nope".into()), About::Image("i")),
            RuntimeError::Unavailable(_)
        ));
    }
}

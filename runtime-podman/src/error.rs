//! Mapping Podman errors to [`RuntimeError`].
//!
//! libpod answers with an HTTP status and a JSON body `{"cause", "message", "response"}`.
//! Unlike Docker it reports several client-side conditions as 500 with a telling cause
//! ("image not known", "container state improper", "name is already in use"), so the cause
//! text decides as much as the status. The caller knows what the request was about (a
//! container, an image, a create), which decides between `ContainerNotFound` and
//! `ImageNotFound`.

use nexus_core::runtime::RuntimeError;
use podman_api::Error;

/// What a failed request was about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum About<'a> {
    /// A container, by id or name.
    Container(&'a str),
    /// An image.
    Image(&'a str),
    /// Creating a container of this image: "image not known" means the image is missing.
    Create {
        /// The image of the container being created.
        image: &'a str,
    },
}

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

/// Maps an error answer (status and body text) for a request about `about`.
pub(crate) fn status_error(status: u16, message: &str, about: About<'_>) -> RuntimeError {
    let lower = message.to_ascii_lowercase();
    let says = |what: &str| lower.contains(what);
    match (status, about) {
        (404, About::Image(image) | About::Create { image }) => RuntimeError::ImageNotFound { image: image.to_owned() },
        // libpod's create answers 500 for an image that is not in local storage (it never
        // pulls on this endpoint).
        (_, About::Create { image }) if says("image not known") || says("no such image") => {
            RuntimeError::ImageNotFound { image: image.to_owned() }
        }
        (404, About::Container(id)) => RuntimeError::ContainerNotFound(id.to_owned()),
        (_, About::Container(id)) if says("no such container") => RuntimeError::ContainerNotFound(id.to_owned()),
        (409, _) => RuntimeError::Conflict(message.to_owned()),
        // Wrong state (killing an exited container), a name in use, a published port someone
        // else holds: conflicts, not engine faults.
        _ if says("container state improper")
            || says("already in use")
            || says("already exists")
            || says("address already in use")
            || says("already allocated") =>
        {
            RuntimeError::Conflict(message.to_owned())
        }
        (400, _) => RuntimeError::InvalidSpec(message.to_owned()),
        _ => RuntimeError::Engine(format!("HTTP {status}: {message}")),
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

/// A failed socket operation: the engine is gone, or plain I/O.
pub(crate) fn io_error(err: std::io::Error) -> RuntimeError {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused | ConnectionReset | NotFound | PermissionDenied | BrokenPipe => {
            RuntimeError::Unavailable(err.to_string())
        }
        _ => RuntimeError::Io(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_causes_map_by_subject() {
        let image = About::Create { image: "x:latest" };
        assert!(matches!(
            status_error(500, "x:latest: image not known", image),
            RuntimeError::ImageNotFound { image } if image == "x:latest"
        ));
        assert!(matches!(status_error(404, "no such image", About::Image("i")), RuntimeError::ImageNotFound { .. }));
        assert!(matches!(
            status_error(404, "no such container", About::Container("abc")),
            RuntimeError::ContainerNotFound(id) if id == "abc"
        ));
        assert!(matches!(
            status_error(500, "can only kill running containers: container state improper", About::Container("a")),
            RuntimeError::Conflict(_)
        ));
        assert!(matches!(
            status_error(500, "the container name \"n\" is already in use", image),
            RuntimeError::Conflict(_)
        ));
        assert!(matches!(status_error(409, "busy", About::Container("a")), RuntimeError::Conflict(_)));
        assert!(matches!(status_error(400, "bad mount", About::Container("a")), RuntimeError::InvalidSpec(_)));
        assert!(matches!(status_error(500, "boom", About::Image("i")), RuntimeError::Engine(m) if m.contains("boom")));
        assert!(matches!(
            io_error(std::io::ErrorKind::ConnectionRefused.into()),
            RuntimeError::Unavailable(_)
        ));
    }

    #[test]
    fn error_bodies_read_message_and_cause() {
        let body = br#"{"cause":"image not known","message":"x: image not known","response":500}"#;
        assert_eq!(body_message(body), "x: image not known");
        let body = br#"{"cause":"container state improper","message":"can only kill running containers","response":500}"#;
        assert_eq!(body_message(body), "can only kill running containers: container state improper");
        assert_eq!(body_message(b"plain text\n"), "plain text");
    }
}

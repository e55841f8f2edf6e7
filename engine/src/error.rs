//! Engine answers → [`RuntimeError`], for engines speaking Docker's HTTP API or libpod's.
//!
//! An engine answers a failed request with an HTTP status and a message. The status says
//! what kind of failure it is, but both engines report some client-side conditions as 500
//! with a telling message (Podman: "image not known", "container state improper"; both: a
//! published port already allocated), so the message decides too. The caller knows what the
//! request was about (a container, an image, a create), which decides between
//! `ContainerNotFound` and `ImageNotFound`.

use nexus_core::runtime::RuntimeError;

/// What a failed request was about.
#[derive(Clone, Copy, Debug)]
pub enum About<'a> {
    /// A container, by id or name.
    Container(&'a str),
    /// An image.
    Image(&'a str),
    /// Creating a container of this image: a missing image is the likely 404.
    Create {
        /// The image of the container being created.
        image: &'a str,
    },
}

/// Maps an error answer (`status` and the engine's `message`) for a request about `about`.
pub fn status_error(status: u16, message: &str, about: About<'_>) -> RuntimeError {
    let lower = message.to_ascii_lowercase();
    let says = |what: &str| lower.contains(what);
    match (status, about) {
        (404, About::Image(image) | About::Create { image }) => RuntimeError::ImageNotFound { image: image.to_owned() },
        // libpod's create answers 500 for an image that is not in local storage (it never
        // pulls on that endpoint).
        (_, About::Create { image }) if says("image not known") || says("no such image") => {
            RuntimeError::ImageNotFound { image: image.to_owned() }
        }
        (404, About::Container(id)) => RuntimeError::ContainerNotFound(id.to_owned()),
        // Older engines answer 500 for a container removed under a running request.
        (_, About::Container(id)) if says("no such container") => RuntimeError::ContainerNotFound(id.to_owned()),
        (409, _) => RuntimeError::Conflict(message.to_owned()),
        // A wrong state (killing an exited container), a name in use, a published port someone
        // else holds: conflicts over the container or the address, not engine faults.
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

/// A failed socket operation: the engine is gone (refused, reset, no socket, no permission),
/// or plain I/O.
pub fn io_error(err: std::io::Error) -> RuntimeError {
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
    fn statuses_and_messages_map_by_subject() {
        let create = About::Create { image: "x:latest" };
        assert!(matches!(
            status_error(404, "No such image: x:latest", create),
            RuntimeError::ImageNotFound { image } if image == "x:latest"
        ));
        assert!(matches!(status_error(500, "x:latest: image not known", create), RuntimeError::ImageNotFound { .. }));
        assert!(matches!(status_error(404, "no such image", About::Image("i")), RuntimeError::ImageNotFound { .. }));
        assert!(matches!(
            status_error(404, "No such container: abc", About::Container("abc")),
            RuntimeError::ContainerNotFound(id) if id == "abc"
        ));
        assert!(matches!(
            status_error(500, "No such container: abc", About::Container("abc")),
            RuntimeError::ContainerNotFound(_)
        ));
        assert!(matches!(status_error(409, "name in use", About::Container("a")), RuntimeError::Conflict(_)));
        assert!(matches!(
            status_error(500, "can only kill running containers: container state improper", About::Container("a")),
            RuntimeError::Conflict(_)
        ));
        assert!(matches!(
            status_error(500, "Bind for 127.0.0.1:25565 failed: port is already allocated", About::Container("a")),
            RuntimeError::Conflict(_)
        ));
        assert!(matches!(status_error(400, "bad mount", About::Container("a")), RuntimeError::InvalidSpec(_)));
        assert!(matches!(status_error(500, "boom", About::Image("i")), RuntimeError::Engine(m) if m.contains("boom")));
        assert!(matches!(io_error(std::io::ErrorKind::ConnectionRefused.into()), RuntimeError::Unavailable(_)));
        assert!(matches!(io_error(std::io::ErrorKind::InvalidData.into()), RuntimeError::Io(_)));
    }
}

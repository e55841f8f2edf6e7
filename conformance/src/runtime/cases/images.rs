//! Images: presence checks and the never-pull rule.

use crate::runtime::{BUSYBOX_IMAGE, Ctx};
use nexus_core::runtime::RuntimeError;

/// A name no image on any machine has.
fn absent_image() -> String {
    format!("nexus-test/absent-{}:latest", uuid::Uuid::new_v4().simple())
}

/// `image_exists` is true for the locally built test image and false for one never built.
pub async fn image_exists_reports_local_images(ctx: Ctx) {
    assert!(ctx.runtime.image_exists(BUSYBOX_IMAGE).await.expect("image_exists(busybox)"), "{BUSYBOX_IMAGE} exists");
    let absent = absent_image();
    assert!(!ctx.runtime.image_exists(&absent).await.expect("image_exists(absent)"), "{absent} must not exist");
}

/// Creating a container of a missing image fails with `ImageNotFound` naming the image as the
/// spec gave it; nothing is pulled (the image is still missing afterwards, also for a fully
/// qualified name on a public registry) and no container is left.
pub async fn create_with_missing_image_is_image_not_found(ctx: Ctx) {
    for image in [absent_image(), "docker.io/library/busybox:nexus-never-pulled".to_owned()] {
        let mut spec = ctx.spec("true");
        spec.image = image.clone();
        match ctx.runtime.create(&spec).await {
            Err(RuntimeError::ImageNotFound { image: named }) => assert_eq!(named, image, "the error names the image"),
            other => panic!("create with missing image {image}: expected ImageNotFound, got {other:?}"),
        }
        assert!(!ctx.runtime.image_exists(&image).await.expect("image_exists"), "{image} was pulled");
        let left = ctx.probe.server_containers(spec.server).await.expect("server_containers");
        assert!(left.is_empty(), "a failed create left containers: {left:?}");
    }
}

//! The image of our own binaries, built without a registry: the `nexus-panel` and
//! `nexus-wings` binaries this test run built, stripped of debug information, committed on
//! top of the Debian base image `scripts/images/system.sh` makes (PostgreSQL and the shared
//! libraries the binaries link). One image serves the panel, the daemons and the database.

use crate::docker::{docker, try_docker};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The base image (`scripts/images/system.sh`).
pub const BASE_IMAGE: &str = "nexus-test/system:latest";
/// Where our images are tagged, one tag per build of the binaries.
const REPOSITORY: &str = "nexus-test/nexus";
/// The binaries the image carries, under `/usr/local/bin`.
const BINARIES: [&str; 2] = ["nexus-panel", "nexus-wings"];

/// The image holding this run's binaries; built at the first call of the process and
/// reused while the binaries do not change.
pub fn nexus_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(build).clone()
}

/// `target/<profile>`: the test binary runs from `target/<profile>/deps`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// The path of one of this run's binaries (`nexus-panel`, `nexus-wings`), built if missing.
pub fn binary(name: &str) -> PathBuf {
    ensure_built();
    profile_dir().join(name)
}

fn ensure_built() {
    let dir = profile_dir();
    if BINARIES.iter().any(|b| !dir.join(b).exists()) {
        // `cargo test --workspace --all-targets` builds them; a lone `-p nexus-system-tests`
        // does not.
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "-p", "nexus-panel", "-p", "nexus-wings", "--bins"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        assert!(cargo.status().is_ok_and(|s| s.success()), "building nexus-panel and nexus-wings failed");
    }
}

fn build() -> String {
    ensure_built();
    let dir = profile_dir();
    // The tag names the binaries' identity (size and modification time), so a rebuilt
    // binary gets a new image and an unchanged one reuses it.
    let mut identity = 0xcbf2_9ce4_8422_2325_u64;
    for binary in BINARIES {
        let meta = std::fs::metadata(dir.join(binary)).expect("the built binary");
        for value in [meta.size(), meta.mtime() as u64, meta.mtime_nsec() as u64] {
            identity = (identity ^ value).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let image = format!("{REPOSITORY}:{identity:016x}");
    if try_docker(&["image", "inspect", &image]).is_ok() {
        return image;
    }
    let staging = tempfile::tempdir().expect("a staging directory");
    for binary in BINARIES {
        let (from, to) = (dir.join(binary), staging.path().join(binary));
        // Debug information is most of a test build's size; the image needs none of it.
        let stripped = Command::new("objcopy").arg("--strip-debug").arg(&from).arg(&to).status();
        if !stripped.is_ok_and(|s| s.success()) {
            std::fs::copy(&from, &to).expect("copy the binary");
        }
    }
    let container = docker(&["create", BASE_IMAGE, "true"]);
    for binary in BINARIES {
        let from = staging.path().join(binary);
        docker(&["cp", from.to_str().expect("a UTF-8 path"), &format!("{container}:/usr/local/bin/{binary}")]);
    }
    docker(&["commit", "--change", "WORKDIR /", "--change", "CMD [\"nexus-panel\", \"--help\"]", &container, &image]);
    docker(&["rm", "-f", &container]);
    // Older builds' images are of no further use (an image still in use stays).
    for tag in try_docker(&["images", REPOSITORY, "--format", "{{.Tag}}"]).unwrap_or_default().lines() {
        let old = format!("{REPOSITORY}:{tag}");
        if old != image {
            let _ = try_docker(&["rmi", &old]);
        }
    }
    image
}

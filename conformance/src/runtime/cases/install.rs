//! Installation in throwaway containers.

use crate::runtime::{BUSYBOX_IMAGE, Ctx};
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{InstallSpec, Isolation, RuntimeError};
use std::collections::BTreeMap;

pub(super) fn install_spec(ctx: &Ctx, script: &str) -> InstallSpec {
    InstallSpec {
        server: ctx.server(),
        image: BUSYBOX_IMAGE.to_owned(),
        entrypoint: "ash".to_owned(),
        script: script.to_owned(),
        env: BTreeMap::from([("GREETING".to_owned(), "hello install".to_owned())]),
        data_dir: ctx.data_dir(),
        limits: ServerLimits { memory_mb: 256, swap_mb: 0, ..ServerLimits::default() },
        isolation: Isolation::install(),
    }
}

async fn assert_no_containers(ctx: &Ctx, spec: &InstallSpec) {
    let left = ctx.probe.server_containers(spec.server).await.expect("server_containers");
    assert!(left.is_empty(), "run_install left containers behind: {left:?}");
}

/// `run_install` runs the script at `/mnt/install/install.sh` with the given entrypoint and
/// environment, on a terminal as Wings does, the data directory at `/mnt/server` (existing
/// files visible, new files kept); it returns exit code 0 and the combined stdout and stderr,
/// and removes its container.
pub async fn install_runs_script_and_captures_log(ctx: Ctx) {
    let spec = install_spec(
        &ctx,
        r#"set -e
echo "script=$0"
echo "greeting=$GREETING"
test -f /mnt/install/install.sh
echo "existing=$(cat /mnt/server/existing.txt)"
echo installed > /mnt/server/installed.txt
echo to-stderr >&2
if [ -t 1 ]; then echo on-a-terminal; fi
echo install-finished"#,
    );
    std::fs::write(spec.data_dir.join("existing.txt"), "kept").expect("writing on the host");
    let outcome = ctx.runtime.run_install(&spec, None).await.expect("run_install");
    assert_eq!(outcome.exit_code, 0, "log: {}", outcome.log);
    for expected in [
        "script=/mnt/install/install.sh",
        "greeting=hello install",
        "existing=kept",
        "to-stderr",
        "on-a-terminal",
        "install-finished",
    ] {
        assert!(outcome.log.contains(expected), "log lacks {expected:?}: {}", outcome.log);
    }
    let installed = std::fs::read_to_string(spec.data_dir.join("installed.txt")).expect("installed file on the host");
    assert_eq!(installed, "installed\n");
    assert_no_containers(&ctx, &spec).await;
}

/// A failing script is an `Ok` outcome carrying its exit code and log; its container is
/// removed too.
pub async fn install_failure_returns_exit_code(ctx: Ctx) {
    let spec = install_spec(&ctx, "echo about-to-fail\nexit 3");
    let outcome = ctx.runtime.run_install(&spec, None).await.expect("run_install of a failing script");
    assert_eq!(outcome.exit_code, 3, "log: {}", outcome.log);
    assert!(outcome.log.contains("about-to-fail"), "log: {}", outcome.log);
    assert_no_containers(&ctx, &spec).await;
}

/// An install whose image is missing fails with `ImageNotFound` naming it, and leaves nothing.
pub async fn install_with_missing_image_is_image_not_found(ctx: Ctx) {
    let mut spec = install_spec(&ctx, "true");
    spec.image = format!("nexus-test/absent-{}:latest", uuid::Uuid::new_v4().simple());
    match ctx.runtime.run_install(&spec, None).await {
        Err(RuntimeError::ImageNotFound { image }) => assert_eq!(image, spec.image),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert_no_containers(&ctx, &spec).await;
}

/// `remove_install` removes the container of an install the node abandoned without cleaning
/// up (its future leaked, as when the node is killed), while the script still runs, and
/// returns once it is gone; it is idempotent and `Ok` when there is nothing to remove.
pub async fn remove_install_removes_an_abandoned_install(ctx: Ctx) {
    let spec = install_spec(&ctx, "echo started > /mnt/server/started.txt\nsleep 600");
    ctx.runtime.remove_install(spec.server).await.expect("remove_install with no install");
    let started = spec.data_dir.join("started.txt");
    let mut install = Box::pin(ctx.runtime.run_install(&spec, None));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !started.exists() {
        tokio::select! {
            outcome = &mut install => panic!("the install ended early: {outcome:?}"),
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "the install script never started");
    }
    // Leaked, not dropped: nothing removes the container in the background.
    std::mem::forget(install);
    let running = ctx.probe.server_containers(spec.server).await.expect("server_containers");
    assert_eq!(running.len(), 1, "the abandoned install runs on: {running:?}");
    ctx.runtime.remove_install(spec.server).await.expect("remove_install");
    assert_no_containers(&ctx, &spec).await;
    ctx.runtime.remove_install(spec.server).await.expect("remove_install again");

    // Dropped instead: its removal runs in the background, and `remove_install` right after
    // waits for it (the engine answers "removal in progress" meanwhile) instead of failing.
    std::fs::remove_file(&started).expect("removing the marker");
    let mut install = Box::pin(ctx.runtime.run_install(&spec, None));
    while !started.exists() {
        tokio::select! {
            outcome = &mut install => panic!("the install ended early: {outcome:?}"),
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
        assert!(tokio::time::Instant::now() < deadline + std::time::Duration::from_secs(30), "never started");
    }
    drop(install);
    ctx.runtime.remove_install(spec.server).await.expect("remove_install during a background removal");
    assert_no_containers(&ctx, &spec).await;
}

/// Each line of an install reaches the live output as it is printed, before the script ends
/// (as Wings streams install output); the outcome's log still has every line.
pub async fn install_output_is_live(ctx: Ctx) {
    let spec = install_spec(&ctx, "echo first\nsleep 3\necho second");
    let (live, mut printed) = nexus_core::runtime::LiveOutput::channel(16);
    let mut install = Box::pin(ctx.runtime.run_install(&spec, Some(live)));
    let first = tokio::select! {
        line = printed.recv() => line.expect("a live line"),
        outcome = &mut install => panic!("the install ended before its first line was live: {outcome:?}"),
    };
    assert_eq!(first.text, "first");
    let outcome = install.await.expect("run_install");
    assert_eq!(outcome.exit_code, 0, "log: {}", outcome.log);
    assert_eq!(printed.recv().await.map(|l| l.text).as_deref(), Some("second"));
    assert!(outcome.log.contains("first") && outcome.log.contains("second"), "{}", outcome.log);
    assert_no_containers(&ctx, &spec).await;
}

/// As Wings, a script with Windows line ends (`\r\n`, common in pasted eggs) runs as if it
/// had Unix ones.
pub async fn install_script_line_ends_are_normalised(ctx: Ctx) {
    let spec = install_spec(&ctx, "x=1\r\nif [ \"$x\" = 1 ]; then echo crlf-ok; fi\r\n");
    let outcome = ctx.runtime.run_install(&spec, None).await.expect("run_install");
    assert_eq!(outcome.exit_code, 0, "log: {}", outcome.log);
    assert!(outcome.log.lines().any(|l| l == "crlf-ok"), "log: {}", outcome.log);
    assert_no_containers(&ctx, &spec).await;
}

//! Listing, removal and typed errors.

use crate::runtime::{BUSYBOX_IMAGE, CONFORMANCE_LABEL, Ctx};
use nexus_core::ids::ServerId;
use nexus_core::model::{StopMethod, StopSignal};
use nexus_core::runtime::{ContainerId, RuntimeError, SERVER_LABEL};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `list_managed` returns every container carrying the managed label, running or not, with its
/// server, its image as the spec gave it, and whether it runs; it ignores containers without
/// the managed label, even those carrying the server label; destroyed containers disappear.
pub async fn list_managed_finds_managed_containers_only(ctx: Ctx) {
    let running_spec = ctx.spec("sleep 600");
    let running = ctx.run(&running_spec).await;
    let created_spec = ctx.spec("true");
    let created = ctx.create(&created_spec).await;
    let exited_spec = ctx.spec("exit 0");
    let exited = ctx.run(&exited_spec).await;
    ctx.runtime.wait(&exited).await.expect("wait");

    let conformance = (CONFORMANCE_LABEL.to_owned(), "true".to_owned());
    let unlabelled = ctx.probe.run_unmanaged(BUSYBOX_IMAGE, &BTreeMap::from([conformance.clone()])).await;
    let unlabelled = unlabelled.expect("run an unmanaged container");
    ctx.track(&unlabelled);
    let stray = ServerId::new();
    let half = BTreeMap::from([conformance, (SERVER_LABEL.to_owned(), stray.to_string())]);
    let half = ctx.probe.run_unmanaged(BUSYBOX_IMAGE, &half).await.expect("run a server-labelled container");
    ctx.track(&half);

    let listed = ctx.runtime.list_managed().await.expect("list_managed");
    let find = |id: &ContainerId| listed.iter().find(|m| &m.id == id);
    for (id, spec, running) in
        [(&running, &running_spec, true), (&created, &created_spec, false), (&exited, &exited_spec, false)]
    {
        let found = find(id).unwrap_or_else(|| panic!("{id} (running: {running}) not listed"));
        assert_eq!(found.server, spec.server, "server of {id}");
        assert_eq!(found.image, BUSYBOX_IMAGE, "image of {id}");
        assert_eq!(found.running, running, "running flag of {id}");
    }
    assert!(find(&unlabelled).is_none(), "an unlabelled container was listed");
    assert!(find(&half).is_none(), "a container without the managed label was listed");
    assert!(listed.iter().all(|m| m.server != stray), "the stray server label was listed");

    ctx.runtime.destroy(&running).await.expect("destroy");
    let listed = ctx.runtime.list_managed().await.expect("list_managed");
    assert!(listed.iter().all(|m| m.id != running), "a destroyed container is still listed");
}

/// `destroy` removes a running container and frees its name; destroying it again, or an id
/// that never existed, succeeds.
pub async fn destroy_is_idempotent(ctx: Ctx) {
    let spec = ctx.spec("sleep 600");
    let id = ctx.run(&spec).await;
    ctx.runtime.destroy(&id).await.expect("destroy a running container");
    let left = ctx.probe.server_containers(spec.server).await.expect("server_containers");
    assert!(left.is_empty(), "destroy left {left:?}");
    ctx.runtime.destroy(&id).await.expect("destroy again");
    let never = ContainerId(format!("nexus-never-existed-{}", uuid::Uuid::new_v4().simple()));
    ctx.runtime.destroy(&never).await.expect("destroy an id that never existed");
    let again = ctx.create(&spec).await;
    assert_ne!(again, id, "a new container for the same server after destroy");
}

/// Every operation on a removed container fails with `ContainerNotFound`, `stats` on the call
/// itself.
pub async fn removed_container_errors_are_typed(ctx: Ctx) {
    let id = ctx.run(&ctx.spec("sleep 600")).await;
    ctx.runtime.destroy(&id).await.expect("destroy");
    let rt = &ctx.runtime;
    assert_err!(rt.start(&id).await, RuntimeError::ContainerNotFound(_), "start");
    let stop = StopMethod::Signal(StopSignal::Terminate);
    assert_err!(rt.stop(&id, &stop, Duration::from_secs(1)).await, RuntimeError::ContainerNotFound(_), "stop");
    assert_err!(rt.kill(&id, StopSignal::Kill).await, RuntimeError::ContainerNotFound(_), "kill");
    assert_err!(rt.wait(&id).await, RuntimeError::ContainerNotFound(_), "wait");
    assert_err!(rt.attach(&id).await, RuntimeError::ContainerNotFound(_), "attach");
    match rt.stats(&id).await {
        Err(RuntimeError::ContainerNotFound(_)) => {}
        Err(other) => panic!("stats: expected ContainerNotFound, got {other:?}"),
        Ok(_) => panic!("stats: expected ContainerNotFound, got a stream"),
    }
}

/// A second container for a server whose container exists is a `Conflict`, and so is killing
/// a container that is not running; a data directory that is relative or missing is an
/// `InvalidSpec` (the runtime never creates it, nor lets the engine treat it as a volume name).
pub async fn engine_conflicts_are_typed(ctx: Ctx) {
    let spec = ctx.spec("sleep 600");
    ctx.run(&spec).await;
    assert_err!(ctx.runtime.create(&spec).await, RuntimeError::Conflict(_), "second container for {}", spec.server);

    let exited = ctx.run(&ctx.spec("exit 0")).await;
    ctx.runtime.wait(&exited).await.expect("wait");
    assert_err!(
        ctx.runtime.kill(&exited, StopSignal::Kill).await,
        RuntimeError::Conflict(_),
        "kill of an exited container"
    );

    let mut relative = ctx.spec("true");
    relative.data_dir = PathBuf::from("relative/data");
    assert_err!(ctx.runtime.create(&relative).await, RuntimeError::InvalidSpec(_), "relative data directory");
    let mut missing = ctx.spec("true");
    missing.data_dir = missing.data_dir.join("does-not-exist");
    assert_err!(ctx.runtime.create(&missing).await, RuntimeError::InvalidSpec(_), "missing data directory");
    assert!(!missing.data_dir.exists(), "the runtime created the missing data directory");
}

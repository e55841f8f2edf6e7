//! The runtime conformance suite: the behaviour every [`Runtime`] (Docker, Podman, ...) must
//! show against a real container engine, as executable cases.
//!
//! # Plugging a runtime in
//!
//! The suite drives the runtime only through the [`Runtime`] trait. Three things it must check
//! cannot be seen through that trait (what the engine recorded for a container's name, labels
//! and limits; a container Nexus did not create; every container of one server, including the
//! runtime's own install containers), so the runtime's test supplies a small [`EngineProbe`]
//! that asks the engine directly. Then one line generates one `#[test]` per case:
//!
//! ```ignore
//! struct Probe(Arc<MyRuntime>);
//!
//! #[async_trait::async_trait]
//! impl EngineProbe for Probe { /* three methods over the engine's own API */ }
//!
//! async fn subject() -> Option<Subject> {
//!     let runtime = Arc::new(match MyRuntime::connect().await {
//!         Ok(runtime) => runtime,
//!         // Fails the test under CI=true, skips it otherwise.
//!         Err(e) => { require_service("MyEngine", Err(e.to_string())); return None; }
//!     });
//!     Some(Subject { runtime: runtime.clone(), probe: Arc::new(Probe(runtime)) })
//! }
//!
//! mod conformance {
//!     nexus_conformance::runtime_conformance_tests!(super::subject);
//! }
//! ```
//!
//! The argument is any expression callable as `make()` whose future yields
//! `Option<`[`Subject`]`>`; `None` means "engine unavailable, skip" (after
//! [`require_service`](crate::require_service) decided a skip is allowed). Each
//! case gets its own subject, runs on its own multi-threaded tokio runtime with a time limit
//! of [`CASE_TIMEOUT`], and everything it created (containers of its servers, data
//! directories) is removed afterwards, whether it passed, panicked or timed out. [`run_all`]
//! runs every case inside one test instead, and [`CASES`] lists them.
//!
//! The cases need one image, [`BUSYBOX_IMAGE`], built locally by `scripts/images/busybox.sh`
//! (the suite never pulls), and a writable temporary directory for data directories.
//!
//! # How limits are verified
//!
//! Twice, because each check alone can be fooled. [`EngineProbe::inspect`] reads back what
//! the engine recorded (Docker's and Podman's `HostConfig`): this proves the runtime asked for
//! the right values, in the engine's units. A command inside the container then reads the
//! kernel's own cgroup files (v1 or v2, whichever the host has) for memory, pids and CPU quota:
//! this proves the limits reached the kernel. Block-IO weight needs a kernel with a
//! proportional-weight IO scheduler; where the host has no `blkio.weight`/`io.weight` file,
//! an engine discards the weight (Docker does, with a warning) and the suite accepts a
//! read-back of 0 and says so on stderr.
//!
//! # What the suite pins
//!
//! The contract is written on the trait: see "Contract" on
//! [`Runtime`]. Each rule there is a case here, and the
//! isolation cases check [`Isolation`](nexus_core::runtime::Isolation) from inside real
//! containers.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code compiled as a library module: a failed expectation must fail the case"
)]

pub mod cases;
pub mod context;

pub use context::Ctx;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use nexus_core::ids::ServerId;
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{ContainerId, Runtime, RuntimeError};
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// The image every case runs: a static busybox, built by `scripts/images/busybox.sh`.
pub const BUSYBOX_IMAGE: &str = "nexus-test/busybox:latest";

/// The same busybox made like the community's images (`USER container`, `WORKDIR
/// /home/container`), built by `scripts/images/busybox.sh` too.
pub const BUSYBOX_USER_IMAGE: &str = "nexus-test/busybox-user:latest";

/// A real game server image (Debian's `teeworlds-server`), built by
/// `scripts/images/teeworlds.sh`, for runtime crates' end-to-end tests.
pub const TEEWORLDS_IMAGE: &str = "nexus-test/teeworlds:latest";

/// A real game server image that needs a terminal (Debian's `minetest-server`, run with
/// `--terminal` by its egg), built by `scripts/images/minetest.sh`.
pub const MINETEST_IMAGE: &str = "nexus-test/minetest:latest";

/// The unprivileged user cases run hardened containers as (the uid Wings' `pterodactyl` user
/// usually gets); it need not exist in the image.
pub const TEST_USER: nexus_core::runtime::ContainerUser = nexus_core::runtime::ContainerUser { uid: 988, gid: 988 };

/// Label the suite puts on every container it creates, so a human can find leftovers of a
/// killed test run (`docker ps -a --filter label=io.nexus.conformance`).
pub const CONFORMANCE_LABEL: &str = "io.nexus.conformance";

/// Longest a single case may run under [`run_case`] before it fails (a hung engine call
/// should fail, not hang CI). Generous: two cores run cases in parallel.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// The runtime under test and its probe.
#[derive(Clone)]
pub struct Subject {
    /// The runtime, driven only through the trait.
    pub runtime: Arc<dyn Runtime>,
    /// Direct access to the same engine, for what the trait does not show.
    pub probe: Arc<dyn EngineProbe>,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject").field("runtime", &self.runtime.name()).finish_non_exhaustive()
    }
}

/// What the engine recorded for a container, read with the engine's own API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineView {
    /// Container name, without Docker's leading `/`.
    pub name: String,
    /// Every label.
    pub labels: BTreeMap<String, String>,
    /// Limits as the engine recorded them, in [`ServerLimits`] units: memory in MiB, swap as
    /// the MiB allowed beyond memory (`-1` unlimited), CPU as percent of one core from quota
    /// and period, block-IO weight, pids (`0` for no limit). `disk_mb` is not an engine limit
    /// and is ignored by the suite.
    pub limits: ServerLimits,
    /// Whether the engine runs an init process as PID 1 in the container.
    pub init: bool,
}

impl From<nexus_engine::container::ContainerDetails> for EngineView {
    fn from(details: nexus_engine::container::ContainerDetails) -> Self {
        Self { name: details.name, labels: details.labels, limits: details.limits, init: details.init }
    }
}

/// Engine access the suite needs beyond [`Runtime`]; each runtime's test implements it over
/// its engine's API (it must not go through the runtime's own `Runtime` methods).
#[async_trait]
pub trait EngineProbe: Send + Sync {
    /// What the engine recorded for container `id`.
    async fn inspect(&self, id: &ContainerId) -> Result<EngineView, RuntimeError>;

    /// Creates and starts a container of `image` running `sleep 600`, with exactly `labels`
    /// and none of the Nexus labels unless given: a container Nexus does not manage.
    async fn run_unmanaged(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<ContainerId, RuntimeError>;

    /// Every container (any state, managed or not, install containers included) whose
    /// [`SERVER_LABEL`](nexus_core::runtime::SERVER_LABEL) is `server`.
    async fn server_containers(&self, server: ServerId) -> Result<Vec<ContainerId>, RuntimeError>;
}

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's function name in [`cases`].
    pub name: &'static str,
    /// Runs the case; panics on failure. Cleanup is the caller's (see [`Ctx::cleanup`]).
    pub run: fn(Ctx) -> BoxFuture<'static, ()>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every case, in the order [`runtime_conformance_tests!`](crate::runtime_conformance_tests)
/// emits them.
pub const CASES: &[Case] = crate::__runtime_conformance_cases!(list());

/// Runs one case on a fresh multi-threaded runtime against the subject `make` builds, then
/// removes what the case created; panics if the case fails or exceeds [`CASE_TIMEOUT`].
/// Returns without running when `make` yields `None` or the test image is missing outside CI.
/// What the generated tests call.
pub fn run_case<M, MF, C, CF>(make: M, case: C)
where
    M: FnOnce() -> MF,
    MF: Future<Output = Option<Subject>>,
    C: FnOnce(Ctx) -> CF,
    CF: Future<Output = ()>,
{
    let runtime = super::case_runtime();
    let outcome = runtime.block_on(async move {
        let Some(subject) = make().await else { return Ok(()) };
        if !image_available(&subject).await {
            return Ok(());
        }
        let ctx = Ctx::new(subject);
        let result = AssertUnwindSafe(tokio::time::timeout(CASE_TIMEOUT, case(ctx.clone()))).catch_unwind().await;
        // Cleanup runs whatever happened: a failed case must not leave containers behind.
        ctx.cleanup().await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_elapsed)) => Err(None),
            Err(panic) => Err(Some(panic)),
        }
    });
    match outcome {
        Ok(()) => {}
        Err(Some(panic)) => std::panic::resume_unwind(panic),
        Err(None) => panic!("runtime conformance case did not finish within {CASE_TIMEOUT:?}"),
    }
}

/// Runs every case, each against a fresh subject from `make`, on the caller's runtime, with
/// cleanup after each; panics at the end naming every failed case. For a single test
/// instead of one per case.
pub async fn run_all<M, MF>(mut make: M)
where
    M: FnMut() -> MF,
    MF: Future<Output = Option<Subject>>,
{
    let mut failed = Vec::new();
    for case in CASES {
        let Some(subject) = make().await else { return };
        if !image_available(&subject).await {
            return;
        }
        let ctx = Ctx::new(subject);
        let result = AssertUnwindSafe(tokio::time::timeout(CASE_TIMEOUT, (case.run)(ctx.clone()))).catch_unwind().await;
        ctx.cleanup().await;
        if !matches!(result, Ok(Ok(()))) {
            failed.push(case.name);
        }
    }
    assert!(failed.is_empty(), "{} of {} runtime conformance cases failed: {failed:?}", failed.len(), CASES.len());
}

/// Whether [`BUSYBOX_IMAGE`] is present; a missing image fails under CI like a missing engine.
async fn image_available(subject: &Subject) -> bool {
    let probe = match subject.runtime.image_exists(BUSYBOX_IMAGE).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("not built; run scripts/images/busybox.sh".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    crate::require_service(&format!("test image {BUSYBOX_IMAGE}"), probe)
}

/// Generates one `#[test]` per runtime conformance case in the current module.
///
/// The argument is an expression callable as `make()` (a closure or a function path) whose
/// future yields `Option<`[`Subject`](crate::runtime::Subject)`>`:
///
/// ```ignore
/// mod conformance {
///     nexus_conformance::runtime_conformance_tests!(super::subject);
/// }
/// ```
///
/// See [the module docs](crate::runtime).
#[macro_export]
macro_rules! runtime_conformance_tests {
    ($make:expr $(,)?) => {
        $crate::__runtime_conformance_cases!(tests($make));
    };
}

/// The single list of case names, handed to [`__runtime_conformance_emit!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __runtime_conformance_cases {
    ($mode:ident $args:tt) => {
        $crate::__runtime_conformance_emit! { $mode $args [
            image_exists_reports_local_images,
            create_with_missing_image_is_image_not_found,
            container_is_named_labelled_and_runs_under_init,
            data_dir_is_home_container_both_ways,
            limits_are_applied,
            ports_are_published_tcp_and_udp,
            console_input_reaches_the_process,
            console_separates_stdout_and_stderr,
            console_burst_loses_no_line,
            tty_container_runs_on_a_terminal,
            output_since_start_reads_the_log,
            hostname_is_the_server_id,
            stop_by_console_command,
            stop_by_signal,
            stop_ignored_is_killed_after_timeout,
            stop_of_exited_container_reports_its_exit,
            kill_sends_the_signal,
            wait_returns_real_exit_code,
            stats_report_cpu_memory_pids_network,
            install_runs_script_and_captures_log,
            install_failure_returns_exit_code,
            install_with_missing_image_is_image_not_found,
            remove_install_removes_an_abandoned_install,
            install_output_is_live,
            install_script_line_ends_are_normalised,
            list_managed_finds_managed_containers_only,
            destroy_is_idempotent,
            removed_container_errors_are_typed,
            engine_conflicts_are_typed,
            server_container_is_confined,
            root_server_container_lacks_dropped_capabilities,
            install_container_is_confined,
            image_user_gives_way_to_the_node_user,
        ] }
    };
}

/// Expands the case list as tests or as the [`CASES`](crate::runtime::CASES) table.
#[doc(hidden)]
#[macro_export]
macro_rules! __runtime_conformance_emit {
    (tests($make:expr) [$($case:ident),* $(,)?]) => {
        $(
            #[test]
            fn $case() {
                $crate::runtime::run_case($make, $crate::runtime::cases::$case);
            }
        )*
    };
    (list() [$($case:ident),* $(,)?]) => {
        &[$(
            $crate::runtime::Case {
                name: stringify!($case),
                run: |ctx| ::std::boxed::Box::pin($crate::runtime::cases::$case(ctx)),
            }
        ),*]
    };
}

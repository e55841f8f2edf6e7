//! The start benchmark every runtime crate runs (`benches/start.rs`): create + start until
//! the process runs, through the runtime against the engine's own `run -d` CLI, on the same
//! busybox image with the same container settings, interleaved in one run.
//!
//! Both sides return once the engine has started the process (the create/start API calls
//! return then, and so does `<cli> run -d`). Removal is not timed. Rounds alternate which
//! side goes first so drift in the engine's speed hits both equally. Prints the medians and
//! the ratio runtime/CLI (goal ≤ 1.10). Without a `--bench` argument (as under
//! `cargo test --all-targets`) it only prints how to run it.

use crate::runtime::{BUSYBOX_IMAGE, TEST_USER as BENCH_USER};
use nexus_core::ServerId;
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{
    ContainerSpec, DEFAULT_TMP_SIZE_MB, Isolation, MANAGED_LABEL, Runtime, RuntimeError, SERVER_LABEL, container_name,
};
use nexus_engine::spec::{NO_NEW_PRIVILEGES, SERVER_DROPPED_CAPABILITIES, TMP_DIR, tmpfs_options};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMITS: ServerLimits =
    ServerLimits { memory_mb: 256, swap_mb: 0, cpu_percent: 100, disk_mb: 0, io_weight: 0, pids: 256 };
const BENCH_LABEL: &str = "io.nexus.bench";

/// What the benchmark measured.
#[derive(Clone, Debug)]
pub struct StartTimes {
    /// Create + start through the runtime, sorted.
    pub runtime: Vec<Duration>,
    /// `<cli> run -d`, sorted.
    pub cli: Vec<Duration>,
}

impl StartTimes {
    /// Median runtime time / median CLI time.
    pub fn ratio(&self) -> f64 {
        median(&self.runtime).as_secs_f64() / median(&self.cli).as_secs_f64()
    }
}

/// The benchmark's `main`: with `--bench`, connects with `connect` and runs
/// `NEXUS_BENCH_ROUNDS` (default 20) interleaved rounds against `cli` (`docker`, `podman`),
/// then prints medians and the ratio. `package` names the crate in the how-to line.
pub fn start_benchmark_main<R, C, F>(package: &str, cli: &str, connect: C)
where
    R: Runtime,
    C: FnOnce() -> F,
    F: Future<Output = Result<R, RuntimeError>>,
{
    if !std::env::args().any(|a| a == "--bench") {
        println!("start benchmark: run `cargo bench -p {package} --bench start`");
        return;
    }
    let rounds: usize = std::env::var("NEXUS_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let runtime = tokio.block_on(connect()).unwrap_or_else(|e| panic!("{cli} is required for this benchmark: {e}"));
    assert!(
        tokio.block_on(runtime.image_exists(BUSYBOX_IMAGE)).expect("image_exists"),
        "run scripts/images/busybox.sh"
    );
    let times = measure(&tokio, &runtime, cli, rounds);
    let ratio = times.ratio();
    println!("create+start until running, {rounds} rounds each, interleaved, image {BUSYBOX_IMAGE}");
    for (name, times) in [(runtime_name(&runtime), &times.runtime), (format!("{cli} run -d"), &times.cli)] {
        println!(
            "  {name:<15} median {:>8.1} ms  (min {:.1}, max {:.1})",
            ms(median(times)),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    println!("  ratio runtime/CLI = {ratio:.3} (goal <= 1.10): {}", if ratio <= 1.10 { "met" } else { "NOT met" });
}

fn runtime_name<R: Runtime>(runtime: &R) -> String {
    let name = runtime.name();
    format!("{}{}Runtime", name[..1].to_uppercase(), &name[1..])
}

/// Runs one untimed warm-up round per side, then `rounds` interleaved rounds.
pub fn measure<R: Runtime>(tokio: &tokio::runtime::Runtime, runtime: &R, cli: &str, rounds: usize) -> StartTimes {
    let data_dir = std::env::temp_dir().join(format!("nexus-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).expect("data directory");

    // One untimed round each: the first container of a run pays for cold caches.
    sweep(cli);
    ours(tokio, runtime, &data_dir);
    theirs(cli, &data_dir);
    sweep(cli);

    let (mut runtime_times, mut cli_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            runtime_times.push(ours(tokio, runtime, &data_dir));
            cli_times.push(theirs(cli, &data_dir));
        } else {
            cli_times.push(theirs(cli, &data_dir));
            runtime_times.push(ours(tokio, runtime, &data_dir));
        }
        sweep(cli);
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    runtime_times.sort();
    cli_times.sort();
    StartTimes { runtime: runtime_times, cli: cli_times }
}

/// Creates and starts one server container through the runtime; returns the time taken.
fn ours<R: Runtime>(tokio: &tokio::runtime::Runtime, runtime: &R, data_dir: &Path) -> Duration {
    let spec = ContainerSpec {
        server: ServerId::new(),
        image: BUSYBOX_IMAGE.to_owned(),
        command: Some(vec!["sleep".into(), "3600".into()]),
        env: BTreeMap::new(),
        data_dir: data_dir.to_path_buf(),
        limits: LIMITS,
        ports: Vec::new(),
        labels: BTreeMap::from([(BENCH_LABEL.to_owned(), "true".to_owned())]),
        isolation: Isolation::server().with_user(Some(BENCH_USER)),
        tty: false,
    };
    tokio.block_on(async {
        let started = Instant::now();
        let id = runtime.create(&spec).await.expect("create");
        runtime.start(&id).await.expect("start");
        started.elapsed()
    })
}

/// The same container (name, labels, init, open stdin, bind mount, working directory, limits)
/// with `<cli> run -d` (Docker's and Podman's CLIs take the same flags); returns the time
/// taken.
fn theirs(cli: &str, data_dir: &Path) -> Duration {
    let server = ServerId::new();
    let mount = format!("type=bind,source={},target=/home/container", data_dir.display());
    let started = Instant::now();
    let status = Command::new(cli)
        .args(["run", "-d", "-i", "--init", "--name", &container_name(server)])
        .args(["--label", &format!("{SERVER_LABEL}={server}"), "--label", &format!("{MANAGED_LABEL}=true")])
        .args(["--label", &format!("{BENCH_LABEL}=true"), "--mount", &mount, "-w", "/home/container"])
        .args(["--memory", "256m", "--memory-swap", "256m", "--cpu-period", "100000", "--cpu-quota", "100000"])
        .args(["--pids-limit", "256", "--user", &BENCH_USER.engine_user(), "--read-only"])
        .args(["--tmpfs", &format!("{TMP_DIR}:{}", tmpfs_options(DEFAULT_TMP_SIZE_MB))])
        .args(["--security-opt", NO_NEW_PRIVILEGES])
        .args(SERVER_DROPPED_CAPABILITIES.iter().flat_map(|cap| ["--cap-drop", cap]))
        .args([BUSYBOX_IMAGE, "sleep", "3600"])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running {cli}: {e}"));
    let elapsed = started.elapsed();
    assert!(status.success(), "{cli} run failed");
    elapsed
}

/// Removes every benchmark container (untimed).
fn sweep(cli: &str) {
    let listed = Command::new(cli)
        .args(["ps", "-aq", "--filter", &format!("label={BENCH_LABEL}")])
        .output()
        .unwrap_or_else(|e| panic!("{cli} ps: {e}"));
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_owned).collect();
    if !ids.is_empty() {
        let status = Command::new(cli)
            .args(["rm", "-f"])
            .args(&ids)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{cli} rm: {e}"));
        assert!(status.success(), "{cli} rm failed");
    }
}

/// The median of sorted `times`.
pub fn median(times: &[Duration]) -> Duration {
    assert!(!times.is_empty(), "no times");
    let mid = times.len() / 2;
    if times.len() % 2 == 0 { (times[mid - 1] + times[mid]) / 2 } else { times[mid] }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(1), ms(2), ms(9)]), ms(2));
        assert_eq!(median(&[ms(1), ms(3), ms(5), ms(9)]), ms(4));
        let times = StartTimes { runtime: vec![ms(11)], cli: vec![ms(10)] };
        assert!((times.ratio() - 1.1).abs() < 1e-9);
    }
}

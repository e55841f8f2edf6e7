//! Create + start until the process runs: `DockerRuntime` against the `docker run -d` CLI, on
//! the same busybox image with the same container settings, interleaved in one run.
//!
//! ```sh
//! cargo bench -p nexus-runtime-docker --bench start          # 20 rounds
//! NEXUS_BENCH_ROUNDS=50 cargo bench -p nexus-runtime-docker --bench start
//! ```
//!
//! Both sides return once the engine has started the process (the create/start API calls
//! return then, and so does `docker run -d`). Removal is not timed. Rounds alternate which
//! side goes first so drift in the engine's speed hits both equally. Prints the medians and
//! the ratio runtime/CLI (goal ≤ 1.10). Under `cargo test --all-targets` (no `--bench`
//! argument) it only prints how to run it.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "benchmark binary: fail loudly")]

use nexus_core::ServerId;
use nexus_core::conformance::runtime::BUSYBOX_IMAGE;
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{ContainerSpec, MANAGED_LABEL, Runtime, SERVER_LABEL, container_name};
use nexus_runtime_docker::DockerRuntime;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMITS: ServerLimits =
    ServerLimits { memory_mb: 256, swap_mb: 0, cpu_percent: 100, disk_mb: 0, io_weight: 0, pids: 256 };
const BENCH_LABEL: &str = "io.nexus.bench";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("start benchmark: run `cargo bench -p nexus-runtime-docker --bench start`");
        return;
    }
    let rounds: usize = std::env::var("NEXUS_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let runtime = tokio.block_on(DockerRuntime::connect_default()).expect("Docker is required for this benchmark");
    assert!(
        tokio.block_on(runtime.image_exists(BUSYBOX_IMAGE)).expect("image_exists"),
        "run scripts/images/busybox.sh"
    );
    let data_dir = std::env::temp_dir().join(format!("nexus-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).expect("data directory");

    // One untimed round each: the first container of a run pays for cold caches.
    sweep();
    ours(&tokio, &runtime, &data_dir);
    cli(&data_dir);
    sweep();

    let (mut runtime_times, mut cli_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            runtime_times.push(ours(&tokio, &runtime, &data_dir));
            cli_times.push(cli(&data_dir));
        } else {
            cli_times.push(cli(&data_dir));
            runtime_times.push(ours(&tokio, &runtime, &data_dir));
        }
        sweep();
    }
    let _ = std::fs::remove_dir_all(&data_dir);

    let (ours_median, cli_median) = (median(&mut runtime_times), median(&mut cli_times));
    let ratio = ours_median.as_secs_f64() / cli_median.as_secs_f64();
    println!("create+start until running, {rounds} rounds each, interleaved, image {BUSYBOX_IMAGE}");
    println!(
        "  DockerRuntime   median {:>8.1} ms  (min {:.1}, max {:.1})",
        ms(ours_median),
        ms(runtime_times[0]),
        ms(*runtime_times.last().unwrap())
    );
    println!(
        "  docker run -d   median {:>8.1} ms  (min {:.1}, max {:.1})",
        ms(cli_median),
        ms(cli_times[0]),
        ms(*cli_times.last().unwrap())
    );
    println!("  ratio runtime/CLI = {ratio:.3} (goal <= 1.10): {}", if ratio <= 1.10 { "met" } else { "NOT met" });
}

/// Creates and starts one server container through `DockerRuntime`; returns the time taken.
fn ours(tokio: &tokio::runtime::Runtime, runtime: &DockerRuntime, data_dir: &Path) -> Duration {
    let spec = ContainerSpec {
        server: ServerId::new(),
        image: BUSYBOX_IMAGE.to_owned(),
        command: Some(vec!["sleep".into(), "3600".into()]),
        env: BTreeMap::new(),
        data_dir: data_dir.to_path_buf(),
        limits: LIMITS,
        ports: Vec::new(),
        labels: BTreeMap::from([(BENCH_LABEL.to_owned(), "true".to_owned())]),
    };
    tokio.block_on(async {
        let started = Instant::now();
        let id = runtime.create(&spec).await.expect("create");
        runtime.start(&id).await.expect("start");
        started.elapsed()
    })
}

/// The same container (name, labels, init, open stdin, bind mount, working directory, limits)
/// with `docker run -d`; returns the time taken.
fn cli(data_dir: &Path) -> Duration {
    let server = ServerId::new();
    let mount = format!("type=bind,source={},target=/home/container", data_dir.display());
    let started = Instant::now();
    let status = Command::new("docker")
        .args(["run", "-d", "-i", "--init", "--name", &container_name(server)])
        .args(["--label", &format!("{SERVER_LABEL}={server}"), "--label", &format!("{MANAGED_LABEL}=true")])
        .args(["--label", &format!("{BENCH_LABEL}=true"), "--mount", &mount, "-w", "/home/container"])
        .args(["--memory", "256m", "--memory-swap", "256m", "--cpu-period", "100000", "--cpu-quota", "100000"])
        .args(["--pids-limit", "256", BUSYBOX_IMAGE, "sleep", "3600"])
        .stdout(Stdio::null())
        .status()
        .expect("running docker");
    let elapsed = started.elapsed();
    assert!(status.success(), "docker run failed");
    elapsed
}

/// Removes every benchmark container (untimed).
fn sweep() {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={BENCH_LABEL}")])
        .output()
        .expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_owned).collect();
    if !ids.is_empty() {
        let status =
            Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).status().expect("docker rm");
        assert!(status.success(), "docker rm failed");
    }
}

/// Sorts `times` and returns the median.
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    let mid = times.len() / 2;
    if times.len() % 2 == 0 { (times[mid - 1] + times[mid]) / 2 } else { times[mid] }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

//! Create + start until the process runs: `DockerRuntime` against the `docker run -d` CLI
//! (the shared harness of `nexus_conformance::bench`, which documents the method).
//!
//! ```sh
//! cargo bench -p nexus-runtime-docker --bench start          # 20 rounds
//! NEXUS_BENCH_ROUNDS=50 cargo bench -p nexus-runtime-docker --bench start
//! ```

use nexus_runtime_docker::DockerRuntime;

fn main() {
    nexus_conformance::bench::start_benchmark_main("nexus-runtime-docker", "docker", DockerRuntime::connect_default);
}

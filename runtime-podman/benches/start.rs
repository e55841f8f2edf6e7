//! Create + start until the process runs: `PodmanRuntime` against the `podman run -d` CLI
//! (the shared harness of `nexus_conformance::bench`, which documents the method).
//!
//! ```sh
//! cargo bench -p nexus-runtime-podman --bench start          # 20 rounds
//! NEXUS_BENCH_ROUNDS=50 cargo bench -p nexus-runtime-podman --bench start
//! ```
//!
//! The runtime talks to `podman system service` on `$NEXUS_TEST_PODMAN_SOCKET` (else
//! `$CONTAINER_HOST`, else /run/podman/podman.sock); the CLI runs Podman locally, on the same
//! storage.

use nexus_runtime_podman::PodmanRuntime;

fn main() {
    nexus_conformance::bench::start_benchmark_main("nexus-runtime-podman", "podman", || async {
        match std::env::var("NEXUS_TEST_PODMAN_SOCKET") {
            Ok(socket) if !socket.is_empty() => PodmanRuntime::connect(socket).await,
            _ => PodmanRuntime::connect_default().await,
        }
    });
}

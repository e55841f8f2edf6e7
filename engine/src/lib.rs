//! Building blocks for implementing [`Runtime`](nexus_core::runtime::Runtime) over a container engine.
//!
//! Docker and Podman share the container model Nexus relies on (bind mounts, cgroup limits in
//! the same units, attach streams, wait, signals), so everything about a runtime that is not a
//! call to the engine's API is written once here and used by both `nexus-runtime-docker` and
//! `nexus-runtime-podman`:
//!
//! | module | what |
//! |---|---|
//! | [`container`] | [`ContainerDetails`](container::ContainerDetails) (what a runtime reads back), managed-container listing, the engine socket from the environment |
//! | [`error`] | HTTP status and engine message → [`RuntimeError`](nexus_core::runtime::RuntimeError) |
//! | [`spec`] | paths inside containers, data-directory and port checks |
//! | [`limits`] | [`ServerLimits`](nexus_core::model::ServerLimits) ↔ engine units ([`EngineLimits`](limits::EngineLimits)) |
//! | [`console`] | stdout/stderr chunks → [`ConsoleLine`](nexus_core::console::ConsoleLine)s |
//! | [`stop`] | the stop sequence (command or signal, wait up to the timeout, then `SIGKILL`) over a small [`StopEngine`](stop::StopEngine) |
//! | [`install`] | install runs in throwaway containers over a small [`InstallEngine`](install::InstallEngine): script staging, the capped log, removal on every path |
//! | [`stats`] | CPU percent from successive counters |

pub mod console;
pub mod container;
pub mod error;
pub mod install;
pub mod limits;
pub mod spec;
pub mod stats;
pub mod stop;

//! Turning [`ContainerSpec`] and [`InstallSpec`] into Docker create bodies, and reading
//! limits back from a `HostConfig`.

use crate::INSTALL_LABEL;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding as DockerPortBinding, PortMap};
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{ContainerSpec, InstallSpec, MANAGED_LABEL, RuntimeError, SERVER_LABEL};
use std::collections::HashMap;
use std::path::Path;

/// Where the server's data directory is mounted, and the working directory of its process
/// (egg startup commands such as `./teeworlds_srv` are relative to it).
pub(crate) const HOME: &str = "/home/container";
/// Where an install container sees the server's data directory.
pub(crate) const INSTALL_SERVER_DIR: &str = "/mnt/server";
/// Where an install container sees its script directory.
pub(crate) const INSTALL_SCRIPT_DIR: &str = "/mnt/install";
/// The script's path inside an install container.
pub(crate) const INSTALL_SCRIPT: &str = "/mnt/install/install.sh";

/// CFS period for CPU quotas: 100 ms, the kernel's default, so `quota = percent * 1000`.
const CPU_PERIOD_US: i64 = 100_000;
const MIB: i64 = 1024 * 1024;

/// The create body of a server container.
pub(crate) fn server_container(spec: &ContainerSpec) -> Result<ContainerCreateBody, RuntimeError> {
    check_data_dir(&spec.data_dir)?;
    let mut labels: HashMap<String, String> = spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert(SERVER_LABEL.to_owned(), spec.server.to_string());
    labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());

    let mut exposed = Vec::new();
    let mut bindings: PortMap = HashMap::new();
    for binding in &spec.ports {
        if binding.port == 0 {
            return Err(RuntimeError::InvalidSpec("port 0 cannot be published".into()));
        }
        // Game servers use either protocol on their port (often both), so both are published.
        for protocol in ["tcp", "udp"] {
            let key = format!("{}/{protocol}", binding.port);
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(
                DockerPortBinding { host_ip: Some(binding.ip.to_string()), host_port: Some(binding.port.to_string()) },
            );
        }
    }

    let host_config = HostConfig {
        mounts: Some(vec![bind(&spec.data_dir, HOME, false)]),
        port_bindings: Some(bindings),
        ..host_config(&spec.limits)?
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(env(spec.env.iter())),
        working_dir: Some(HOME.to_owned()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        // Console: stdin stays open across attachments (a server must never see EOF because a
        // console client went away); no TTY, so stdout and stderr stay apart.
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// The create body of an install container: the script directory read-only at
/// [`INSTALL_SCRIPT_DIR`], the data directory at [`INSTALL_SERVER_DIR`], the egg's
/// interpreter running the script.
pub(crate) fn install_container(spec: &InstallSpec, script_dir: &Path) -> Result<ContainerCreateBody, RuntimeError> {
    check_data_dir(&spec.data_dir)?;
    if spec.entrypoint.trim().is_empty() {
        return Err(RuntimeError::InvalidSpec("install entrypoint is empty".into()));
    }
    // The server label lets an operator (and the conformance suite) find leftovers; the
    // managed label is left off so `list_managed` never offers an install for adoption.
    let labels = HashMap::from([
        (SERVER_LABEL.to_owned(), spec.server.to_string()),
        (INSTALL_LABEL.to_owned(), "true".to_owned()),
    ]);
    let host_config = HostConfig {
        mounts: Some(vec![bind(script_dir, INSTALL_SCRIPT_DIR, true), bind(&spec.data_dir, INSTALL_SERVER_DIR, false)]),
        ..host_config(&spec.limits)?
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        // An explicit entrypoint replaces the image's, and Docker then does not append the
        // image's CMD, so exactly `<interpreter> /mnt/install/install.sh` runs.
        entrypoint: Some(vec![spec.entrypoint.clone(), INSTALL_SCRIPT.to_owned()]),
        cmd: Some(Vec::new()),
        env: Some(env(spec.env.iter())),
        working_dir: Some(INSTALL_SERVER_DIR.to_owned()),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Limits, init and restart policy shared by server and install containers.
fn host_config(limits: &ServerLimits) -> Result<HostConfig, RuntimeError> {
    let invalid = |what: &str| RuntimeError::InvalidSpec(format!("{what} out of range: {limits:?}"));
    let mut config = HostConfig {
        // An init process as PID 1 forwards signals and reaps zombies, so a server that never
        // expected to be PID 1 still stops on SIGTERM/SIGINT.
        init: Some(true),
        ..HostConfig::default()
    };
    if limits.memory_mb > 0 {
        let memory =
            i64::try_from(limits.memory_mb).ok().and_then(|mb| mb.checked_mul(MIB)).ok_or_else(|| invalid("memory"))?;
        config.memory = Some(memory);
        // Docker's MemorySwap is memory + swap; -1 lifts the swap limit.
        config.memory_swap = Some(match limits.swap_mb {
            -1 => -1,
            0 => memory,
            swap if swap > 0 => {
                swap.checked_mul(MIB).and_then(|s| s.checked_add(memory)).ok_or_else(|| invalid("swap"))?
            }
            _ => return Err(invalid("swap")),
        });
    } else if limits.swap_mb < -1 {
        return Err(invalid("swap"));
    }
    if limits.cpu_percent > 0 {
        let quota = i64::try_from(limits.cpu_percent)
            .ok()
            .and_then(|p| p.checked_mul(CPU_PERIOD_US / 100))
            .ok_or_else(|| invalid("cpu"))?;
        config.cpu_period = Some(CPU_PERIOD_US);
        config.cpu_quota = Some(quota);
    }
    if limits.pids > 0 {
        config.pids_limit = Some(i64::try_from(limits.pids).map_err(|_| invalid("pids"))?);
    }
    match limits.io_weight {
        0 => {}
        weight @ 10..=1000 => config.blkio_weight = Some(weight),
        _ => return Err(invalid("io_weight (10..=1000)")),
    }
    // `disk_mb` is not a container limit: the data directory is a bind mount, whose size the
    // node agent watches (as Wings does); Docker's storage quota covers only the container's
    // own writable layer and needs XFS project quotas.
    Ok(config)
}

/// Limits as recorded in a `HostConfig`, in [`ServerLimits`] units (`disk_mb` is always 0).
pub(crate) fn limits_from(config: &HostConfig) -> ServerLimits {
    let memory = config.memory.unwrap_or(0).max(0);
    let swap_mb = match config.memory_swap.unwrap_or(0) {
        -1 => -1,
        total if memory > 0 && total >= memory => (total - memory) / MIB,
        _ => 0,
    };
    let cpu_percent = match (config.cpu_quota, config.cpu_period) {
        (Some(quota), Some(period)) if quota > 0 && period > 0 => quota * 100 / period,
        // Docker's default period when only a quota is set.
        (Some(quota), _) if quota > 0 => quota * 100 / CPU_PERIOD_US,
        _ => match config.nano_cpus {
            Some(nano) if nano > 0 => nano / 10_000_000,
            _ => 0,
        },
    };
    ServerLimits {
        memory_mb: u64::try_from(memory / MIB).unwrap_or(0),
        swap_mb,
        cpu_percent: u64::try_from(cpu_percent).unwrap_or(0),
        disk_mb: 0,
        io_weight: config.blkio_weight.unwrap_or(0),
        pids: config.pids_limit.and_then(|p| u64::try_from(p).ok()).unwrap_or(0),
    }
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        source: Some(source.to_string_lossy().into_owned()),
        target: Some(target.to_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn env<'a>(vars: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<String> {
    vars.map(|(k, v)| format!("{k}={v}")).collect()
}

/// A data directory must be an existing absolute directory: Docker would take a relative
/// path for a volume name, and (with `Binds`) create a missing one as root.
fn check_data_dir(dir: &Path) -> Result<(), RuntimeError> {
    if !dir.is_absolute() {
        return Err(RuntimeError::InvalidSpec(format!("data directory {} is not absolute", dir.display())));
    }
    if !dir.is_dir() {
        return Err(RuntimeError::InvalidSpec(format!("data directory {} does not exist", dir.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_core::ServerId;
    use nexus_core::runtime::PortBinding;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};

    fn limits(memory_mb: u64, swap_mb: i64) -> ServerLimits {
        ServerLimits { memory_mb, swap_mb, cpu_percent: 150, disk_mb: 1024, io_weight: 500, pids: 64 }
    }

    #[test]
    fn limits_round_trip_through_host_config() {
        for swap in [-1, 0, 64] {
            let wanted = limits(256, swap);
            let config = host_config(&wanted).expect("valid limits");
            assert_eq!(config.init, Some(true));
            assert_eq!(limits_from(&config), ServerLimits { disk_mb: 0, ..wanted });
        }
        let config = host_config(&limits(256, 64)).expect("valid");
        assert_eq!((config.memory, config.memory_swap), (Some(256 * MIB), Some(320 * MIB)));
        assert_eq!((config.cpu_quota, config.cpu_period), (Some(150_000), Some(100_000)));
        assert_eq!(limits_from(&HostConfig::default()), ServerLimits::default());
    }

    #[test]
    fn out_of_range_limits_are_invalid() {
        for bad in [
            ServerLimits { io_weight: 5, ..ServerLimits::default() },
            ServerLimits { io_weight: 1001, ..ServerLimits::default() },
            ServerLimits { memory_mb: 10, swap_mb: -2, ..ServerLimits::default() },
            ServerLimits { memory_mb: u64::MAX, ..ServerLimits::default() },
            ServerLimits { cpu_percent: u64::MAX, ..ServerLimits::default() },
        ] {
            assert!(matches!(host_config(&bad), Err(RuntimeError::InvalidSpec(_))), "{bad:?}");
        }
    }

    #[test]
    fn server_container_publishes_both_protocols_and_labels() {
        let dir = std::env::temp_dir();
        let spec = ContainerSpec {
            server: ServerId::new(),
            image: "img:1".into(),
            command: Some(vec!["/bin/sh".into(), "-c".into(), "true".into()]),
            env: BTreeMap::from([("A".into(), "1 2".into())]),
            data_dir: dir.clone(),
            limits: ServerLimits::default(),
            ports: vec![
                PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 27015 },
                PortBinding { ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port: 27015 },
            ],
            labels: BTreeMap::from([("x".into(), "y".into())]),
        };
        let body = server_container(&spec).expect("valid spec");
        assert_eq!(body.exposed_ports, Some(vec!["27015/tcp".to_owned(), "27015/udp".to_owned()]));
        let host = body.host_config.expect("host config");
        let bindings = host.port_bindings.expect("bindings");
        assert_eq!(bindings["27015/udp"].as_ref().map(Vec::len), Some(2));
        let labels = body.labels.expect("labels");
        assert_eq!(labels[SERVER_LABEL], spec.server.to_string());
        assert_eq!(labels["x"], "y");
        assert!(labels.contains_key(MANAGED_LABEL));
        assert_eq!(body.env, Some(vec!["A=1 2".to_owned()]));
        assert_eq!(body.working_dir.as_deref(), Some(HOME));
        assert_eq!(host.mounts.expect("mounts")[0].target.as_deref(), Some(HOME));

        let bad =
            ContainerSpec { ports: vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0 }], ..spec.clone() };
        assert!(matches!(server_container(&bad), Err(RuntimeError::InvalidSpec(_))));
        let relative = ContainerSpec { data_dir: "data".into(), ..spec };
        assert!(matches!(server_container(&relative), Err(RuntimeError::InvalidSpec(_))));
    }
}

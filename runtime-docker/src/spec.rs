//! Turning [`ContainerSpec`] and [`InstallSpec`] into Docker create bodies, and reading
//! limits back from a `HostConfig`.

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding as DockerPortBinding, PortMap};
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{ContainerSpec, InstallSpec, Isolation, MANAGED_LABEL, RuntimeError, SERVER_LABEL};
use nexus_engine::install::{INSTALL_LABEL, INSTALL_SCRIPT, INSTALL_SCRIPT_DIR, INSTALL_SERVER_DIR};
use nexus_engine::limits::EngineLimits;
use nexus_engine::spec::{
    HOME, INSTALL_DROPPED_CAPABILITIES, NO_NEW_PRIVILEGES, SERVER_DROPPED_CAPABILITIES, TMP_DIR, check_server_spec,
    tmpfs_options,
};
use std::collections::HashMap;
use std::path::Path;

/// The create body of a server container.
pub(crate) fn server_container(spec: &ContainerSpec) -> Result<ContainerCreateBody, RuntimeError> {
    check_server_spec(spec)?;
    let mut labels: HashMap<String, String> = spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert(SERVER_LABEL.to_owned(), spec.server.to_string());
    labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());

    let mut exposed = Vec::new();
    let mut bindings: PortMap = HashMap::new();
    for binding in &spec.ports {
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
        ..host_config(&spec.limits, &spec.isolation, SERVER_DROPPED_CAPABILITIES)?
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(env(spec.env.iter())),
        working_dir: Some(HOME.to_owned()),
        // As Wings: the server's id is the container's host name.
        hostname: Some(spec.server.to_string()),
        user: spec.isolation.user.map(|u| u.engine_user()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        // Console: stdin stays open across attachments (a server must never see EOF because a
        // console client went away); a terminal when the spec asks for one (as Wings), else
        // stdout and stderr stay apart.
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(spec.tty),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// The create body of an install container: the script directory read-only at
/// [`INSTALL_SCRIPT_DIR`], the data directory at [`INSTALL_SERVER_DIR`], the egg's
/// interpreter running the script. (Checks of the spec are `run_install`'s.)
pub(crate) fn install_container(spec: &InstallSpec, script_dir: &Path) -> Result<ContainerCreateBody, RuntimeError> {
    // The server label lets an operator (and the conformance suite) find leftovers; the
    // managed label is left off so `list_managed` never offers an install for adoption.
    let labels = HashMap::from([
        (SERVER_LABEL.to_owned(), spec.server.to_string()),
        (INSTALL_LABEL.to_owned(), "true".to_owned()),
    ]);
    let host_config = HostConfig {
        mounts: Some(vec![bind(script_dir, INSTALL_SCRIPT_DIR, true), bind(&spec.data_dir, INSTALL_SERVER_DIR, false)]),
        ..host_config(&spec.limits, &spec.isolation, INSTALL_DROPPED_CAPABILITIES)?
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        // An explicit entrypoint replaces the image's, and Docker then does not append the
        // image's CMD, so exactly `<interpreter> /mnt/install/install.sh` runs.
        entrypoint: Some(vec![spec.entrypoint.clone(), INSTALL_SCRIPT.to_owned()]),
        cmd: Some(Vec::new()),
        env: Some(env(spec.env.iter())),
        working_dir: Some(INSTALL_SERVER_DIR.to_owned()),
        user: spec.isolation.user.map(|u| u.engine_user()),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        // As Wings runs install scripts: on a terminal (tools that check for one, like
        // progress output, behave as they do there); stdout and stderr arrive merged.
        tty: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Limits, init and confinement, shared by server and install containers.
fn host_config(limits: &ServerLimits, isolation: &Isolation, dropped: &[&str]) -> Result<HostConfig, RuntimeError> {
    let engine = EngineLimits::from_limits(limits)?;
    let tmpfs = (isolation.tmp_size_mb > 0)
        .then(|| HashMap::from([(TMP_DIR.to_owned(), tmpfs_options(isolation.tmp_size_mb))]));
    Ok(HostConfig {
        readonly_rootfs: Some(isolation.read_only_root),
        tmpfs,
        security_opt: Some(vec![NO_NEW_PRIVILEGES.to_owned()]),
        cap_drop: Some(dropped.iter().map(|cap| (*cap).to_owned()).collect()),
        // An init process as PID 1 forwards signals and reaps zombies, so a server that never
        // expected to be PID 1 still stops on SIGTERM/SIGINT.
        init: Some(true),
        memory: engine.memory,
        memory_swap: engine.memory_swap,
        cpu_period: engine.cpu_period,
        cpu_quota: engine.cpu_quota,
        pids_limit: engine.pids,
        blkio_weight: engine.io_weight,
        ..HostConfig::default()
    })
}

/// Limits as recorded in a `HostConfig`, in [`ServerLimits`] units (`disk_mb` is always 0).
pub(crate) fn limits_from(config: &HostConfig) -> ServerLimits {
    EngineLimits {
        memory: config.memory,
        memory_swap: config.memory_swap,
        cpu_period: config.cpu_period,
        cpu_quota: config.cpu_quota,
        nano_cpus: config.nano_cpus,
        pids: config.pids_limit,
        io_weight: config.blkio_weight,
    }
    .to_limits()
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

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_core::ServerId;
    use nexus_core::runtime::PortBinding;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn limits_map_onto_host_config_and_back() {
        let wanted =
            ServerLimits { memory_mb: 256, swap_mb: 64, cpu_percent: 150, disk_mb: 0, io_weight: 500, pids: 64 };
        let config = host_config(&wanted, &Isolation::server(), SERVER_DROPPED_CAPABILITIES).expect("valid limits");
        assert_eq!(config.init, Some(true));
        assert_eq!((config.memory, config.memory_swap), (Some(256 << 20), Some(320 << 20)));
        assert_eq!((config.cpu_quota, config.cpu_period), (Some(150_000), Some(100_000)));
        assert_eq!((config.pids_limit, config.blkio_weight), (Some(64), Some(500)));
        assert_eq!(limits_from(&config), wanted);
        assert_eq!(limits_from(&HostConfig::default()), ServerLimits::default());
        let bad = ServerLimits { io_weight: 5, ..ServerLimits::default() };
        assert!(matches!(host_config(&bad, &Isolation::server(), &[]), Err(RuntimeError::InvalidSpec(_))));
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
            isolation: Isolation::server(),
            tty: false,
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

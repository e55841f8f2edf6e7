//! Turning [`ContainerSpec`] and [`InstallSpec`] into libpod create options (a
//! `SpecGenerator`), reading limits back from inspect output, and the image name Podman
//! reports.

use nexus_core::model::ServerLimits;
use nexus_core::runtime::{
    ContainerSpec, InstallSpec, Isolation, MANAGED_LABEL, RuntimeError, SERVER_LABEL, container_name,
};
use nexus_engine::install::{INSTALL_LABEL, INSTALL_SCRIPT, INSTALL_SCRIPT_DIR, INSTALL_SERVER_DIR};
use nexus_engine::limits::EngineLimits;
use nexus_engine::spec::{
    HOME, INSTALL_DROPPED_CAPABILITIES, SERVER_DROPPED_CAPABILITIES, TMP_DIR, check_server_spec, tmpfs_options,
};
use podman_api::models::{ContainerMount, InspectContainerHostConfig, LinuxResources, PortMapping};
use podman_api::opts::ContainerCreateOpts;
use std::collections::BTreeMap;
use std::path::Path;

/// Label holding the image reference exactly as the spec gave it, which `list_managed` and
/// `inspect` report (Podman itself reports `localhost/`-qualified names; see the crate docs).
pub const IMAGE_LABEL: &str = "io.nexus.image";

/// The prefix Podman gives short names of images that exist only locally.
const LOCAL_PREFIX: &str = "localhost/";

/// Unlimited swap as Podman accepts it. libpod refuses the usual `-1` (its check that
/// memory + swap is not below memory ignores the sentinel), so the largest page-aligned
/// value is sent instead: the kernel's own "no limit" (cgroup v1 shows it as the limit,
/// v2 as `max`). Read back, it is `-1` again.
const UNLIMITED_SWAP: i64 = i64::MAX & !0xfff;

/// The create options of a server container.
pub(crate) fn server_container(spec: &ContainerSpec) -> Result<CreateBody, RuntimeError> {
    check_server_spec(spec)?;
    let mut labels = spec.labels.clone();
    labels.insert(SERVER_LABEL.to_owned(), spec.server.to_string());
    labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());
    labels.insert(IMAGE_LABEL.to_owned(), spec.image.clone());

    // Game servers use either protocol on their port (often both), so both are published.
    let ports = spec.ports.iter().flat_map(|binding| {
        ["tcp", "udp"].map(|protocol| PortMapping {
            container_port: Some(binding.port),
            host_ip: Some(binding.ip.to_string()),
            host_port: Some(binding.port),
            protocol: Some(protocol.to_owned()),
            range: None,
        })
    });
    let mut options = ContainerCreateOpts::builder()
        .name(container_name(spec.server))
        .image(&spec.image)
        .env(spec.env.iter())
        .work_dir(HOME)
        // As Wings: the server's id is the container's host name.
        .hostname(spec.server.to_string())
        .labels(labels)
        .mounts(with_tmp([bind(&spec.data_dir, HOME, false)], &spec.isolation))
        .portmappings(ports)
        // An init process as PID 1 forwards signals and reaps zombies, so a server that never
        // expected to be PID 1 still stops on SIGTERM/SIGINT.
        .init(true)
        // Console: stdin open (keeping it open across detaches is conmon's part; see the crate
        // docs); a terminal when the spec asks for one (as Wings), else stdout and stderr stay
        // apart.
        .stdin(true)
        .terminal(spec.tty)
        .resource_limits(resources(&spec.limits)?);
    if let Some(command) = &spec.command {
        options = options.command(command);
    }
    confined(options, &spec.isolation, SERVER_DROPPED_CAPABILITIES)
}

/// The create options of install container `name`: the script directory read-only at
/// `/mnt/install`, the data directory at `/mnt/server`, the egg's interpreter running the
/// script. (Checks of the spec are `run_install`'s.)
pub(crate) fn install_container(name: &str, spec: &InstallSpec, script_dir: &Path) -> Result<CreateBody, RuntimeError> {
    // The server label lets an operator (and the conformance suite) find leftovers; the
    // managed label is left off so `list_managed` never offers an install for adoption.
    let labels = BTreeMap::from([
        (SERVER_LABEL.to_owned(), spec.server.to_string()),
        (INSTALL_LABEL.to_owned(), "true".to_owned()),
    ]);
    let options = ContainerCreateOpts::builder()
        .name(name)
        .image(&spec.image)
        // An explicit entrypoint replaces the image's, and Podman then does not append the
        // image's CMD, so exactly `<interpreter> /mnt/install/install.sh` runs.
        .entrypoint([spec.entrypoint.as_str(), INSTALL_SCRIPT])
        .env(spec.env.iter())
        .work_dir(INSTALL_SERVER_DIR)
        .labels(labels)
        .mounts(with_tmp(
            [bind(script_dir, INSTALL_SCRIPT_DIR, true), bind(&spec.data_dir, INSTALL_SERVER_DIR, false)],
            &spec.isolation,
        ))
        .init(true)
        .stdin(false)
        // As Wings runs install scripts: on a terminal; stdout and stderr arrive merged.
        .terminal(true)
        .resource_limits(resources(&spec.limits)?);
    confined(options, &spec.isolation, INSTALL_DROPPED_CAPABILITIES)
}

/// A libpod create body (`SpecGenerator` JSON), as `POST /libpod/containers/create` takes it.
pub(crate) type CreateBody = serde_json::Value;

/// The create body of `options` with the confinement every container gets: its user,
/// read-only root, dropped capabilities and `no_new_privileges`. The JSON is finished by
/// hand because podman-api 0.11 sends `no_new_privileges` misspelled (libpod would ignore
/// it), and with a read-only root libpod would otherwise add unsized tmpfs mounts of its own.
fn confined(
    options: podman_api::opts::ContainerCreateOptsBuilder,
    isolation: &Isolation,
    dropped: &[&str],
) -> Result<CreateBody, RuntimeError> {
    let mut options = options.read_only_fs(isolation.read_only_root).drop_capabilities(dropped.iter().copied());
    if let Some(user) = isolation.user {
        options = options.user(user.engine_user());
    }
    let text = options.build().serialize().map_err(|e| RuntimeError::InvalidSpec(format!("create options: {e}")))?;
    let mut body: CreateBody =
        serde_json::from_str(&text).map_err(|e| RuntimeError::InvalidSpec(format!("create options: {e}")))?;
    body["no_new_privileges"] = serde_json::Value::Bool(true);
    body["read_only_tmpfs"] = serde_json::Value::Bool(false);
    Ok(body)
}

/// `mounts` plus the `/tmp` tmpfs of `isolation`, if it has one.
fn with_tmp<const N: usize>(mounts: [ContainerMount; N], isolation: &Isolation) -> Vec<ContainerMount> {
    let mut all = Vec::from(mounts);
    if isolation.tmp_size_mb > 0 {
        all.push(ContainerMount {
            destination: Some(TMP_DIR.to_owned()),
            options: Some(tmpfs_options(isolation.tmp_size_mb).split(',').map(str::to_owned).collect()),
            source: Some("tmpfs".to_owned()),
            _type: Some("tmpfs".to_owned()),
            uid_mappings: None,
            gid_mappings: None,
        });
    }
    all
}

/// Limits as an OCI `LinuxResources`. Podman fills in what is left out from containers.conf,
/// and its default `pids_limit` is 2048 where Docker has none; "no pids limit" is therefore
/// sent explicitly (`-1`) so both engines mean the same by `pids: 0`.
fn resources(limits: &ServerLimits) -> Result<LinuxResources, RuntimeError> {
    let engine = EngineLimits::from_limits(limits)?;
    let mut resources = serde_json::json!({ "pids": { "limit": engine.pids.unwrap_or(-1) } });
    if let Some(memory) = engine.memory {
        let swap = engine.memory_swap.map(|total| if total == -1 { UNLIMITED_SWAP } else { total });
        resources["memory"] = serde_json::json!({ "limit": memory, "swap": swap });
    }
    if let (Some(quota), Some(period)) = (engine.cpu_quota, engine.cpu_period) {
        resources["cpu"] = serde_json::json!({ "quota": quota, "period": period });
    }
    if let Some(weight) = engine.io_weight {
        resources["blockIO"] = serde_json::json!({ "weight": weight });
    }
    // The generated model has no constructor for partial values; its fields are all optional.
    serde_json::from_value(resources).map_err(|e| RuntimeError::InvalidSpec(format!("resource limits: {e}")))
}

/// Limits as recorded in an inspect `HostConfig`, in [`ServerLimits`] units (`disk_mb` is
/// always 0). A limit the engine discarded (block-IO weight on kernels without it) reads 0.
pub(crate) fn limits_from(config: &InspectContainerHostConfig) -> ServerLimits {
    EngineLimits {
        memory: config.memory,
        memory_swap: config.memory_swap.map(|total| if total >= UNLIMITED_SWAP { -1 } else { total }),
        cpu_period: config.cpu_period.and_then(|p| i64::try_from(p).ok()),
        cpu_quota: config.cpu_quota,
        nano_cpus: config.nano_cpus,
        pids: config.pids_limit,
        io_weight: config.blkio_weight,
    }
    .to_limits()
}

/// The image of a container as Nexus reports it: the reference its spec gave (kept in
/// [`IMAGE_LABEL`]), because Podman reports the resolved name, and qualifies short names of
/// local images with `localhost/` (`nexus-test/busybox:latest` is listed as
/// `localhost/nexus-test/busybox:latest`). Containers created without the label (by another
/// tool) report the engine's name with `localhost/` removed, which Podman resolves to the
/// same image.
pub(crate) fn reported_image(label: Option<&str>, engine_name: &str) -> String {
    match label {
        Some(image) => image.to_owned(),
        None => engine_name.strip_prefix(LOCAL_PREFIX).unwrap_or(engine_name).to_owned(),
    }
}

fn bind(source: &Path, target: &str, read_only: bool) -> ContainerMount {
    ContainerMount {
        destination: Some(target.to_owned()),
        options: Some(vec!["rbind".to_owned(), if read_only { "ro" } else { "rw" }.to_owned()]),
        source: Some(source.to_string_lossy().into_owned()),
        _type: Some("bind".to_owned()),
        uid_mappings: None,
        gid_mappings: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_core::ServerId;
    use nexus_core::runtime::PortBinding;
    use std::net::{IpAddr, Ipv4Addr};

    /// The JSON libpod receives for `limits`.
    fn sent(limits: ServerLimits) -> serde_json::Value {
        serde_json::to_value(resources(&limits).expect("valid limits")).expect("serialize")
    }

    #[test]
    fn resources_carry_every_limit_in_engine_units() {
        let value =
            sent(ServerLimits { memory_mb: 256, swap_mb: 64, cpu_percent: 50, disk_mb: 0, io_weight: 500, pids: 64 });
        assert_eq!(value["memory"]["limit"], 256 * 1024 * 1024);
        assert_eq!(value["memory"]["swap"], 320 * 1024 * 1024);
        assert_eq!((value["cpu"]["quota"].as_i64(), value["cpu"]["period"].as_u64()), (Some(50_000), Some(100_000)));
        assert_eq!(value["pids"]["limit"], 64);
        assert_eq!(value["blockIO"]["weight"], 500);
        let none = sent(ServerLimits::default());
        assert_eq!(none["pids"]["limit"], -1, "no pids limit, explicitly");
        assert!(none["memory"].is_null() && none["cpu"].is_null());
        let unlimited = sent(ServerLimits { memory_mb: 128, swap_mb: -1, ..ServerLimits::default() });
        assert_eq!(unlimited["memory"]["swap"], UNLIMITED_SWAP);
        let recorded = InspectContainerHostConfig {
            memory: Some(128 * 1024 * 1024),
            memory_swap: Some(UNLIMITED_SWAP),
            ..serde_json::from_value(serde_json::json!({})).expect("empty host config")
        };
        assert_eq!(limits_from(&recorded).swap_mb, -1);
    }

    #[test]
    fn server_container_names_labels_mounts_and_publishes_both_protocols() {
        let spec = ContainerSpec {
            server: ServerId::new(),
            image: "img:1".into(),
            command: Some(vec!["/bin/sh".into(), "-c".into(), "true".into()]),
            env: BTreeMap::from([("A".into(), "1 2".into())]),
            data_dir: std::env::temp_dir(),
            limits: ServerLimits::default(),
            ports: vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 27015 }],
            labels: BTreeMap::from([("x".into(), "y".into())]),
            isolation: Isolation::server().with_user(Some(nexus_core::runtime::ContainerUser { uid: 988, gid: 989 })),
            tty: false,
        };
        let body = server_container(&spec).expect("valid");
        assert_eq!(body["no_new_privileges"], true);
        assert_eq!(body["read_only_filesystem"], true);
        assert_eq!(body["user"], "988:989");
        assert_eq!(body["cap_drop"].as_array().map(Vec::len), Some(SERVER_DROPPED_CAPABILITIES.len()));
        assert_eq!(body["mounts"][1]["destination"], TMP_DIR);
        assert_eq!(body["name"], container_name(spec.server));
        assert_eq!(body["labels"][SERVER_LABEL], spec.server.to_string());
        assert_eq!(body["labels"][IMAGE_LABEL], "img:1");
        assert_eq!(body["labels"]["x"], "y");
        assert_eq!(body["env"]["A"], "1 2");
        assert_eq!(body["work_dir"], HOME);
        assert_eq!(body["init"], true);
        assert_eq!(body["mounts"][0]["destination"], HOME);
        let protocols: Vec<_> =
            body["portmappings"].as_array().expect("ports").iter().map(|p| p["protocol"].clone()).collect();
        assert_eq!(protocols, ["tcp", "udp"]);
    }

    #[test]
    fn reported_image_prefers_the_label_then_drops_localhost() {
        let label = Some("nexus-test/busybox:latest");
        assert_eq!(reported_image(label, "localhost/nexus-test/busybox:latest"), "nexus-test/busybox:latest");
        assert_eq!(reported_image(None, "localhost/nexus-test/busybox:latest"), "nexus-test/busybox:latest");
        assert_eq!(reported_image(None, "docker.io/library/debian:12"), "docker.io/library/debian:12");
    }
}

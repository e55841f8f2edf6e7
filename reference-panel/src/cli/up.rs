//! `nexus-panel up`: the panel, a local node and the SQLite store in one process.
//!
//! First start in an empty `--data-dir`: the directory (mode 0700), the node secret (0600),
//! the database, an admin account whose password is printed once, the local node with its
//! allocations, and the shipped eggs (plus `--eggs DIR`). Later starts reuse all of it: no
//! new admin, the same node, eggs already present (by name) are not imported again. Ctrl-C
//! (or SIGTERM) stops the panel and the node; game servers keep running and are re-adopted
//! on the next start.

use super::{CliError, DataDir, fail, first_admin, open_control};
use clap::Args;
use nexus_control::ControlPlane;
use nexus_control::accounts::random_alphanumeric;
use nexus_control::nodes::NewNode;
use nexus_core::model::{Node, NodeCapacity};
use nexus_wings::config::Config as NodeConfig;
use nexus_wings::daemon::{Daemon, detect_runtime, shutdown_signal};
use nexus_wings::panel::HttpPanelTransport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The local node's name in the store.
const LOCAL_NODE: &str = "local";

/// Eggs shipped with the panel, imported on first start.
const SHIPPED_EGGS: &[(&str, &str)] = &[("busybox-echo.json", include_str!("../../eggs/busybox-echo.json"))];

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Address the panel listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL browsers reach the panel at, when not the listening address (behind a proxy,
    /// or listening on 0.0.0.0). The local node always talks to the panel over loopback.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Directory of the database, secrets and the local node's server files.
    #[arg(long, default_value = "./nexus-data")]
    data_dir: PathBuf,
    /// Also import every egg file (`.json`, `.yaml`, `.yml`) in this directory.
    #[arg(long, value_name = "DIR")]
    eggs: Option<PathBuf>,
    /// Ports the local node offers game servers (on 127.0.0.1), as on a Pterodactyl node.
    #[arg(long, default_value = "25565-25664")]
    ports: String,
    /// Seconds between the local node's heartbeats.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_secs: u64,
    /// Log more (debug level).
    #[arg(long, short)]
    verbose: bool,
}

pub(crate) fn run(args: UpArgs) -> Result<(), CliError> {
    let level = if args.verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(fail("start the async runtime"))?;
    runtime.block_on(up(args))
}

async fn up(args: UpArgs) -> Result<(), CliError> {
    let root = prepare_data_dir(&args.data_dir)?;
    let data = DataDir::new(&root);
    if let Some(url) = &args.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(CliError(format!("--public-url {url}: give an http:// or https:// URL")));
    }
    let heartbeat = Duration::from_secs(args.heartbeat_secs);
    let (control, transport) = open_control(&data, heartbeat).await?;

    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(fail(format!("listen on {}", args.listen)))?;
    let mut address = listener.local_addr().map_err(fail("the panel's address"))?;
    if address.ip().is_unspecified() {
        // Listening everywhere: the local node and the printed URL use loopback.
        address.set_ip(if address.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        });
    }
    let panel_link = format!("http://{address}");
    let public_url = args.public_url.clone().map_or_else(|| panel_link.clone(), |u| u.trim_end_matches('/').to_owned());

    let first_admin = first_admin(&control).await?;
    // Shown now: should the node fail to start below, the password is not lost.
    super::print_first_admin(first_admin.as_deref());
    let node = local_node(&control, &data, &args.ports).await?;
    import_eggs(&control, args.eggs.as_deref()).await?;

    // The local node: the daemon's library in this process, on Docker or Podman, talking to
    // this panel over loopback HTTP exactly as a remote node would.
    let node_dir = data.node();
    // Template layers live in the data directory; the panel publishes there and the local
    // node reads from there, as remote nodes read the configured object store.
    let template_store = nexus_templates::ObjectStoreConfig::local(&data.templates());
    let token = control.node_token(node.id).ok_or_else(|| CliError("no node secret".into()))?;
    let node_config = NodeConfig {
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        node_id: Some(node.id),
        token: Some(token.clone()),
        token_secret: control.node_console_secret(node.id),
        panel_url: Some(panel_link.clone()),
        data_root: node_dir.join("volumes"),
        state_dir: node_dir.join("state"),
        heartbeat_interval_secs: args.heartbeat_secs,
        templates: nexus_wings::config::TemplatesConfig {
            store: Some(template_store.clone()),
            ..nexus_wings::config::TemplatesConfig::default()
        },
        backups: nexus_wings::config::BackupsConfig {
            store: Some(nexus_templates::ObjectStoreConfig::local(&node_dir.join("backups"))),
            ..nexus_wings::config::BackupsConfig::default()
        },
        ..NodeConfig::default()
    }
    .resolve()
    .map_err(fail("the local node's configuration"))?;
    let container_runtime = detect_runtime(&node_dir.join("install")).await.map_err(fail("the local node"))?;
    let link = HttpPanelTransport::new(&panel_link, &token).map_err(fail("the local node's panel link"))?;
    let daemon = Daemon::start(&node_config, container_runtime.clone(), Arc::new(link))
        .await
        .map_err(fail("start the local node"))?;
    let mut record = control.store().get_node(node.id).await.map_err(fail("read the local node"))?;
    record.daemon_port = daemon.local_addr().port();
    control.store().update_node(&record).await.map_err(fail("record the local node's port"))?;
    transport.sync_endpoints(&control).await.map_err(fail("reach the nodes"))?;

    // Stop on Ctrl-C / SIGTERM: panel first (no new requests), then the node.
    let templates = Arc::new(
        nexus_templates::ObjectStoreTemplates::open(&template_store).map_err(fail("open the template store"))?,
    );
    let running = super::run::start(&control, &transport, listener, &public_url, Vec::new(), Some(templates));
    let node_task = tokio::spawn(daemon.serve(super::run::stopping(running.subscribe())));

    println!("Nexus panel: {public_url}  (local node on {}, runtime {})", record.daemon_port, container_runtime.name());
    println!("Stop with Ctrl-C.");

    shutdown_signal().await;
    tracing::info!("stopping: the panel, then the local node (game servers keep running)");
    running.stop().await;
    let _ = node_task.await;
    Ok(())
}

/// Creates the data directory (0700) and the node secret (0600) if missing; returns the
/// directory's absolute path (container engines bind-mount paths under it).
fn prepare_data_dir(dir: &Path) -> Result<PathBuf, CliError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail(format!("create {}", dir.display())))?;
    let root = dir.canonicalize().map_err(fail(format!("resolve {}", dir.display())))?;
    let mode = std::fs::metadata(&root).map_err(fail(format!("read {}", root.display())))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %root.display(), "the data directory is readable by others; it holds secrets (chmod 700)");
    }
    let secret = DataDir::new(&root).node_secret();
    if !secret.exists() {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .map_err(fail(format!("create {}", secret.display())))?;
        file.write_all(random_alphanumeric(64).as_bytes()).map_err(fail(format!("write {}", secret.display())))?;
    }
    Ok(root)
}

/// The local node: found by name, or registered with this host's capacity and `ports`.
async fn local_node(control: &ControlPlane, data: &DataDir, ports: &str) -> Result<Node, CliError> {
    let nodes = control.store().list_nodes().await.map_err(fail("read the nodes"))?;
    if let Some(node) = nodes.into_iter().find(|n| n.name == LOCAL_NODE) {
        return Ok(node);
    }
    let capacity = host_capacity(&data.root);
    let registration = control
        .register_node(NewNode::new(LOCAL_NODE, "127.0.0.1", 0, capacity))
        .await
        .map_err(fail("register the local node"))?;
    control
        .add_allocations(registration.node.id, IpAddr::V4(Ipv4Addr::LOCALHOST), ports)
        .await
        .map_err(fail(format!("allocate ports {ports}")))?;
    tracing::info!(node = %registration.node.id, ?capacity, ports, "registered the local node");
    Ok(registration.node)
}

/// What this machine can host: its memory, the free space under the data directory, its CPUs.
fn host_capacity(data_dir: &Path) -> NodeCapacity {
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb / 1024);
    let disk_mb =
        rustix::fs::statvfs(data_dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize) / (1024 * 1024)).unwrap_or(10_240);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    NodeCapacity { memory_mb, disk_mb, cpu_percent: u64::try_from(cpus).unwrap_or(1) * 100 }
}

/// Imports the shipped eggs and those in `dir`, skipping any whose name is already stored.
async fn import_eggs(control: &ControlPlane, dir: Option<&Path>) -> Result<(), CliError> {
    let mut files: Vec<(String, Vec<u8>)> =
        SHIPPED_EGGS.iter().map(|(name, text)| ((*name).to_owned(), text.as_bytes().to_vec())).collect();
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir).map_err(fail(format!("read the egg directory {}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        for path in paths {
            match std::fs::read(&path) {
                Ok(bytes) => files.push((path.display().to_string(), bytes)),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "egg file skipped"),
            }
        }
    }
    let mut known: std::collections::BTreeSet<String> =
        control.store().list_eggs().await.map_err(fail("read the eggs"))?.into_iter().map(|e| e.name).collect();
    let (mut imported, mut failed) = (0, 0);
    for (name, bytes) in files {
        let egg = match nexus_eggs::import::import_egg(&bytes) {
            Ok(egg) => egg,
            Err(e) => {
                failed += 1;
                tracing::warn!(file = %name, error = %e, "egg file not imported");
                continue;
            }
        };
        if !known.insert(egg.name.clone()) {
            continue;
        }
        control.store().create_egg(&egg).await.map_err(fail(format!("store the egg from {name}")))?;
        imported += 1;
    }
    tracing::info!(imported, failed, "eggs");
    Ok(())
}

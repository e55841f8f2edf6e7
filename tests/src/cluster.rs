//! A cluster as operators run one, in containers on a private Docker network: PostgreSQL, one
//! or more `nexus-panel serve` replicas on it, and several `nexus-wings` daemons, each with
//! its own data root, registered through the panel's API and configured from the file the
//! panel hands out. The daemons reach the host's Docker socket and run the game servers as
//! the host's containers; every data root is mounted at the same path in the daemon's
//! container as on the host, because the engine resolves the servers' bind mounts on the
//! host.
//!
//! Faults are what an operator's tooling does: `docker stop` / `start` (SIGTERM), `docker
//! kill` (SIGKILL), `docker network disconnect` / `connect` (a partition of one container
//! from all the others). The test process reaches every container by its address on the
//! network, as a browser on the operator's network would.

use crate::api::{Api, wait_for};
use crate::docker::{docker, names, pid_of, remove_containers, try_docker};
use crate::images::{BASE_IMAGE, nexus_image};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The label every container of a cluster carries (its name as the value).
const LABEL: &str = "nexus-system";
/// The label naming the test process that started a container or network (see [`owner`]), so
/// that the next run can sweep what a killed run left behind.
const PID_LABEL: &str = "nexus-system.pid";
/// The label of a daemon's container naming its node, whose servers' containers carry
/// [`nexus_agent::NODE_LABEL`] with that id.
const NODE_ID_LABEL: &str = "nexus-system.node";
/// The port the panels and the daemons listen on inside their containers.
const PORT: u16 = 8080;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Daemons.
    pub nodes: usize,
    /// Panel replicas on the one database (nodes report to the first).
    pub panels: usize,
    /// The panels' placement strategy: `bin_pack` or `spread`.
    pub placement: &'static str,
    /// Heartbeat interval of panels and daemons, seconds.
    pub heartbeat_secs: u64,
    /// Game ports per node; node `i` gets `first_port + i * ports_per_node ..`.
    pub ports_per_node: u16,
    /// The first game port.
    pub first_port: u16,
    /// Memory each node offers, MiB.
    pub node_memory_mb: u64,
    /// Extra lines for every daemon's configuration file.
    pub daemon_config: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            panels: 1,
            placement: "bin_pack",
            heartbeat_secs: 1,
            ports_per_node: 20,
            first_port: 31000,
            node_memory_mb: 4096,
            daemon_config: String::new(),
        }
    }
}

/// One daemon of the cluster.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its id in the panel.
    pub id: String,
    /// Its container.
    pub container: String,
    /// Its address on the cluster's network (also its `fqdn` in the panel).
    pub ip: String,
    /// Its data root and state directory live here (the same path on the host).
    pub dir: PathBuf,
    /// Its game ports.
    pub ports: std::ops::RangeInclusive<u16>,
}

/// One panel replica.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Its container.
    pub container: String,
    /// Its URL on the cluster's network.
    pub url: String,
}

/// A running cluster; everything it started is removed when it is dropped.
pub struct Cluster {
    /// Its name: the prefix of its containers and its network.
    pub name: String,
    /// The panel replicas.
    pub panels: Vec<Panel>,
    /// The daemons.
    pub nodes: Vec<Node>,
    /// An admin's client of the first panel.
    pub api: Api,
    /// The database container.
    pub database: String,
    network: String,
    subnet: u32,
    image: String,
    // Dropped after the containers are gone (the data roots are bind-mounted into them).
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts PostgreSQL, the panels and the daemons, registers every node through the API
    /// and waits until all are online.
    pub async fn start(config: ClusterConfig) -> Self {
        sweep_leftovers();
        let image = nexus_image();
        let name = format!("nexus-sys-{:08x}", std::process::id() ^ nanos());
        let dir = tempfile::Builder::new().prefix(&format!("{name}-")).tempdir().expect("a data directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let subnet = create_network(&name);
        let mut cluster = Self {
            database: format!("{name}-postgres"),
            name: name.clone(),
            panels: Vec::new(),
            nodes: Vec::new(),
            api: Api::unauthenticated(),
            network: name,
            subnet,
            image,
            dir,
        };
        cluster.start_database().await;
        let secret_dir = cluster.dir.path().join("panel");
        std::fs::create_dir(&secret_dir).unwrap();
        write_private(&secret_dir.join("node-secret"), "the system tests' node secret, 32 bytes or more\n");
        let database_url = format!("postgres://nexus@{}/postgres", cluster.ip(10));
        let mut password = None;
        for k in 0..config.panels {
            let ip = cluster.ip(20 + k as u32);
            let url = format!("http://{ip}:{PORT}");
            write_private(
                &secret_dir.join(format!("panel-{k}.toml")),
                &format!(
                    "listen = \"0.0.0.0:{PORT}\"\npublic_url = \"{url}\"\ndatabase_url = \"{database_url}\"\n\
                     node_secret_file = \"/etc/nexus/node-secret\"\nnode_scheme = \"http\"\n\
                     heartbeat_interval_secs = {}\nnode_timeout_secs = 5\nplacement = \"{}\"\n",
                    config.heartbeat_secs, config.placement
                ),
            );
            let container = format!("{}-panel-{k}", cluster.name);
            cluster.run(
                &container,
                &ip,
                &cluster.image,
                &["-v", &format!("{}:/etc/nexus:ro", secret_dir.display())],
                &["nexus-panel", "serve", "--config", &format!("/etc/nexus/panel-{k}.toml")],
            );
            let printed = wait_banner(&container).await;
            password = password.or(printed);
            cluster.panels.push(Panel { container, url });
        }
        let password = password.expect("the first panel printed the admin password");
        cluster.api = Api::login(&cluster.panels[0].url, "admin@nexus.local", &password).await;
        for i in 0..config.nodes {
            cluster.add_node(i, &config).await;
        }
        cluster
    }

    /// The address `offset` hosts into the cluster's subnet.
    fn ip(&self, offset: u32) -> String {
        Ipv4Addr::from(self.subnet + offset).to_string()
    }

    /// `docker run -d` on the cluster's network at `ip`, labelled for removal.
    fn run(&self, container: &str, ip: &str, image: &str, options: &[&str], command: &[&str]) {
        let (label, pid) = (format!("{LABEL}={}", self.name), format!("{PID_LABEL}={}", owner()));
        let mut args = vec![
            "run",
            "-d",
            "--name",
            container,
            "--label",
            &label,
            "--label",
            &pid,
            "--network",
            &self.network,
            "--ip",
            ip,
        ];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        docker(&args);
    }

    async fn start_database(&self) {
        // initdb and the server run as the `postgres` user the package created; the test
        // network may connect without a password.
        let script = "set -e; mkdir -p /var/lib/pg /run/postgresql; chown postgres:postgres /var/lib/pg /run/postgresql; \
             runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D /var/lib/pg/data -U nexus -A trust --no-sync >/dev/null; \
             echo 'host all all 0.0.0.0/0 trust' >> /var/lib/pg/data/pg_hba.conf; \
             exec runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D /var/lib/pg/data \
               -c listen_addresses='*' -c max_connections=400";
        self.run(&self.database, &self.ip(10), BASE_IMAGE, &[], &["bash", "-c", script]);
        let ready = async || {
            try_docker(&["exec", &self.database, "/usr/lib/postgresql/15/bin/pg_isready", "-q", "-h", "127.0.0.1"])
                .is_ok()
        };
        wait_for("PostgreSQL never became ready", crate::T, ready).await;
    }

    async fn add_node(&mut self, i: usize, config: &ClusterConfig) {
        let ip = self.ip(30 + i as u32);
        let registered = self
            .api
            .expect(
                reqwest::Method::POST,
                "/api/v1/nodes",
                Some(json!({ "name": format!("node-{i}"), "fqdn": ip, "daemon_port": PORT,
                             "capacity": { "memory_mb": config.node_memory_mb, "disk_mb": 100_000, "cpu_percent": 800 } })),
                201,
            )
            .await;
        let id = registered["node"]["id"].as_str().unwrap().to_owned();
        let first = config.first_port + i as u16 * config.ports_per_node;
        let last = first + config.ports_per_node - 1;
        self.api
            .expect(
                reqwest::Method::POST,
                &format!("/api/v1/nodes/{id}/allocations"),
                Some(json!({ "ip": "127.0.0.1", "ports": format!("{first}-{last}") })),
                201,
            )
            .await;
        let from_panel = self.api.text(&format!("/api/v1/nodes/{id}/configuration")).await;
        let dir = self.dir.path().join(format!("node-{i}"));
        std::fs::create_dir(&dir).unwrap();
        write_private(
            &dir.join("wings.toml"),
            &format!(
                "{from_panel}\ndata_root = \"{}\"\nstate_dir = \"{}\"\nheartbeat_interval_secs = {}\n{}\n",
                dir.join("volumes").display(),
                dir.join("state").display(),
                config.heartbeat_secs,
                config.daemon_config
            ),
        );
        let container = format!("{}-node-{i}", self.name);
        let mount = format!("{0}:{0}", dir.display());
        let config_path = dir.join("wings.toml");
        let node_label = format!("{NODE_ID_LABEL}={id}");
        self.run(
            &container,
            &ip,
            &self.image,
            &["-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", &mount, "--label", &node_label],
            &["nexus-wings", "--config", config_path.to_str().unwrap()],
        );
        let node = Node { id, container, ip, dir, ports: first..=last };
        self.wait_node(&node, "online").await;
        self.nodes.push(node);
    }

    /// Waits until the panel shows `node` with `status`; how long it took.
    pub async fn wait_node(&self, node: &Node, status: &str) -> Duration {
        let api = &self.api;
        wait_for(&format!("node {} never became {status}", node.container), crate::T, async || {
            api.try_call(reqwest::Method::GET, &format!("/api/v1/nodes/{}", node.id), None)
                .await
                .is_ok_and(|(code, body)| code == 200 && body["status"] == status)
        })
        .await
    }

    /// `docker stop`: SIGTERM, the daemon exits and leaves its servers running.
    pub fn stop_node(&self, i: usize) {
        docker(&["stop", "-t", "30", &self.nodes[i].container]);
    }

    /// `docker start` of a stopped or killed daemon.
    pub fn start_node(&self, i: usize) {
        docker(&["start", &self.nodes[i].container]);
    }

    /// `docker kill`: SIGKILL to the daemon.
    pub fn kill_node(&self, i: usize) {
        docker(&["kill", "-s", "KILL", &self.nodes[i].container]);
    }

    /// Cuts node `i` off the network: the panel cannot reach it nor it the panel.
    pub fn partition(&self, i: usize) {
        docker(&["network", "disconnect", &self.network, &self.nodes[i].container]);
    }

    /// Puts node `i` back on the network at its address.
    pub fn heal(&self, i: usize) {
        docker(&["network", "connect", "--ip", &self.nodes[i].ip, &self.network, &self.nodes[i].container]);
    }

    /// `docker kill` of panel replica `k`.
    pub fn kill_panel(&self, k: usize) {
        docker(&["kill", "-s", "KILL", &self.panels[k].container]);
    }

    /// `docker start` of a killed panel replica; returns once it serves again.
    pub async fn start_panel(&self, k: usize) {
        docker(&["start", &self.panels[k].container]);
        let api = self.api.at(&self.panels[k].url);
        wait_for("the panel never served again", crate::T, async || {
            api.try_call(reqwest::Method::GET, "/api/v1/health", None).await.is_ok_and(|(code, _)| code == 200)
        })
        .await;
    }

    /// What node `i` itself says it holds (`GET /api/servers` with its token, straight to the
    /// daemon): server id → state. `None` while it does not answer.
    pub async fn node_servers(&self, i: usize) -> Option<BTreeMap<String, String>> {
        let node = &self.nodes[i];
        let config = std::fs::read_to_string(node.dir.join("wings.toml")).ok()?;
        let token = config.lines().find_map(|l| l.strip_prefix("token = \"")?.strip_suffix('"'))?;
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?
            .get(format!("http://{}:{PORT}/api/servers", node.ip))
            .bearer_auth(token)
            .send()
            .await
            .ok()?;
        let list: Vec<Value> = response.json().await.ok()?;
        Some(
            list.iter()
                .map(|s| {
                    (
                        s["server"].as_str().unwrap_or_default().to_owned(),
                        s["state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        )
    }

    /// The container running `server`'s game process.
    pub fn server_container(server: &str) -> String {
        format!("nexus-server-{server}")
    }

    /// Names of the game-server containers node `i` runs.
    pub fn server_containers(&self, i: usize) -> Vec<String> {
        names(&format!("label={}={}", nexus_agent::NODE_LABEL, self.nodes[i].id))
    }

    /// Resident memory of a container's first process (the panel's or daemon's binary), MiB.
    pub fn rss_mib(&self, container: &str) -> f64 {
        pid_of(container).map_or(f64::NAN, crate::rss_mib)
    }

    /// The index of the node `id` names.
    pub fn node_index(&self, id: &str) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The first user's id (the admin).
    pub async fn admin_id(&self) -> Value {
        self.api.get("/api/v1/account").await["id"].clone()
    }

    /// Imports an egg file as an admin uploads it; the egg.
    pub async fn import_egg(&self, file: Vec<u8>) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/eggs", self.api.base))
            .bearer_auth(self.api.key())
            .header("content-type", "application/json")
            .body(file)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "importing an egg");
        response.json().await.unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut containers: Vec<&str> = self.panels.iter().map(|p| p.container.as_str()).collect();
            containers.extend(self.nodes.iter().map(|n| n.container.as_str()));
            for container in containers {
                let logs = std::process::Command::new("docker").args(["logs", "--tail", "40", container]).output();
                if let Ok(out) = logs {
                    eprintln!(
                        "--- {container}\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        remove_containers(&format!("label={LABEL}={}", self.name));
        for node in &self.nodes {
            remove_containers(&format!("label={}={}", nexus_agent::NODE_LABEL, node.id));
        }
        let _ = try_docker(&["network", "rm", &self.network]);
    }
}

/// Reads a starting panel's output until it serves; the admin password when it printed one.
async fn wait_banner(container: &str) -> Option<String> {
    let started = std::time::Instant::now();
    loop {
        let out = std::process::Command::new("docker").args(["logs", container]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.lines().any(|l| l.starts_with("Stop with Ctrl-C")) {
            return stdout.lines().find_map(|l| l.trim().strip_prefix("password: ").map(str::to_owned));
        }
        assert!(
            started.elapsed() < crate::T && crate::docker::running(container),
            "panel {container} did not start: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes what clusters of test processes that no longer run left behind (a run killed with
/// `SIGKILL` never reaches [`Drop`]): their containers, the game servers their daemons
/// started, their networks and their data directories. Clusters of live processes (another
/// test binary running at the same time) are left alone.
fn sweep_leftovers() {
    let this_boot = boot_id();
    let this_namespace = pid_namespace();
    // Dead: started before this machine's last boot, or a process of this PID namespace
    // that is gone. A run in another PID namespace (another CI job's container sharing the
    // Docker socket) cannot be told from here and is left alone.
    let dead = |owner: &str| {
        let mut parts = owner.splitn(3, ':');
        let (Some(boot), Some(namespace), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        boot != this_boot
            || (namespace == this_namespace
                && pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()))
    };
    let format = format!("{{{{.ID}}}} {{{{.Label \"{PID_LABEL}\"}}}} {{{{.Label \"{NODE_ID_LABEL}\"}}}}");
    let listed = try_docker(&["ps", "-a", "--filter", &format!("label={PID_LABEL}"), "--format", &format]);
    let mut swept = 0;
    for line in listed.unwrap_or_default().lines() {
        let mut fields = line.split_whitespace();
        let (Some(container), Some(pid)) = (fields.next(), fields.next()) else { continue };
        if !dead(pid) {
            continue;
        }
        if let Some(node) = fields.next() {
            remove_containers(&format!("label={}={node}", nexus_agent::NODE_LABEL));
        }
        let _ = try_docker(&["rm", "-f", container]);
        swept += 1;
    }
    let networks = try_docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label={PID_LABEL}"),
        "--format",
        &format!("{{{{.Name}}}} {{{{.Label \"{PID_LABEL}\"}}}}"),
    ]);
    for line in networks.unwrap_or_default().lines() {
        if let Some((network, pid)) = line.split_once(' ')
            && dead(pid)
        {
            let _ = try_docker(&["network", "rm", network]);
            // The data directory is named after the cluster (its network) and may hold files
            // the containers wrote as root; gone with it.
            if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&format!("{network}-")) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
    }
    if swept > 0 {
        eprintln!("swept {swept} container(s) left behind by killed test runs");
    }
}

/// `<boot id>:<PID namespace>:<pid>` of this test process: what [`sweep_leftovers`] needs to
/// tell a dead run from a live one.
fn owner() -> String {
    format!("{}:{}:{}", boot_id(), pid_namespace(), std::process::id())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(|_| "unknown".into(), |id| id.trim().into())
}

fn pid_namespace() -> String {
    // `pid:[4026531836]`: the inode names the namespace.
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| link.to_str().map(|s| s.trim_start_matches("pid:[").trim_end_matches(']').to_owned()))
        .unwrap_or_else(|| "unknown".into())
}

/// Creates the cluster's network on a /24 of its own (fixed addresses need a configured
/// subnet); the subnet's first address.
fn create_network(name: &str) -> u32 {
    let seed = nanos() ^ std::process::id().rotate_left(16);
    let mut last = String::new();
    for attempt in 0..32u32 {
        let pick = seed.wrapping_add(attempt.wrapping_mul(2_654_435_761));
        let subnet = Ipv4Addr::new(10, 200 + (pick % 50) as u8, (pick >> 8) as u8, 0);
        let (label, pid) = (format!("{LABEL}={name}"), format!("{PID_LABEL}={}", owner()));
        let subnet_arg = format!("{subnet}/24");
        match try_docker(&["network", "create", "--label", &label, "--label", &pid, "--subnet", &subnet_arg, name]) {
            Ok(_) => return subnet.into(),
            // Another network (a parallel run's, the host's) has it: try the next.
            Err(e) => last = e,
        }
    }
    panic!("no free subnet for the cluster's network: {last}");
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

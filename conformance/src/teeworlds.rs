//! A real game server through its real egg, on any runtime: the Teeworlds egg from the
//! community corpus, imported and rendered by `nexus-eggs`, run in the Debian-built
//! `nexus-test/teeworlds:latest` image (`scripts/images/teeworlds.sh`). Each runtime crate's
//! `tests/real_servers.rs` calls [`teeworlds_egg_runs_listens_and_stops`].
//!
//! # What stands in for the egg's install script, and why
//!
//! The egg's installer downloads the latest release tarball from GitHub, plus `autoexec.cfg`
//! and `storage.cfg` from the egg repository. Nothing outside this machine can be reached
//! here, so the test lays out the data directory the way that install leaves it, from what
//! Debian packages:
//!
//! | install leaves | the test puts | because |
//! |---|---|---|
//! | `teeworlds_srv` (release binary, 0.7.5) | symlink to `/usr/games/teeworlds-server` in the image | Debian's build of the same 0.7.5 release |
//! | `data/` (release data) | symlink to `/usr/share/games/teeworlds/data` | Debian's `teeworlds-data`, same release |
//! | `storage.cfg` (egg repo) | a storage.cfg searching `$CURRENTDIR` first, then `$DATADIR` | keeps everything the server writes under `/home/container`, the point of the egg's "safe storage file" |
//! | `autoexec.cfg` (egg repo) | an autoexec.cfg with the four keys the egg's `config.files` patches, plus `sv_register 0` | the egg's patch then runs for real (`nexus_eggs::config_files`); `sv_register 0` keeps the server from contacting the master servers (no traffic leaves the machine) |
//!
//! # What "up" means here
//!
//! The egg's `done` string is `as master, sending heartbeats`: Teeworlds prints it only after
//! a master server on the internet answered its registration. That cannot happen offline (and
//! registration is off, see above), so the test waits for the egg's `done` matcher *or* the
//! line `server name is '<SERVER_NAME>'`, which the server prints right after it has bound its
//! UDP socket and which shows the egg variable went through the config patch. It reports which
//! one it saw.
//!
//! Teeworlds 0.7.5 installs no SIGINT handler; the egg's stop (`^C`, SIGINT) ends it at once by
//! the signal's default action (exit code 130), which is how Pterodactyl stops it too.

use crate::game::{hand_over, matches, udp_listeners, with_new_server};
use crate::runtime::context::free_port;
use crate::runtime::{TEEWORLDS_IMAGE, TEST_USER as SERVER_USER};
use nexus_core::ServerId;
use nexus_core::console::ConsoleLine;
use nexus_core::model::{ServerLimits, StopMethod, StopSignal};
use nexus_core::runtime::{ContainerId, ContainerSpec, Isolation, PortBinding, Runtime};
use nexus_eggs::config_files::{ConfigContext, apply};
use nexus_eggs::import::import_egg;
use nexus_eggs::startup::{ServerFacts, render_startup};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const EGG: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/eggs/parkervcp__game_eggs__teeworlds__egg-teeworlds.json");
const SERVER_NAME: &str = "Nexus Teeworlds Test";

/// The scenario: checks the test image (a missing one fails under `CI=true`, else skips),
/// runs the egg on `runtime`, and removes the server's container and data directory
/// whatever happened. `pid_of` gives the host PID of a running container's PID 1 (read from
/// the engine), whose `/proc/<pid>/net` is the container's network namespace.
pub async fn teeworlds_egg_runs_listens_and_stops<R, P, F>(runtime: &R, pid_of: P)
where
    R: Runtime + ?Sized,
    P: Fn(ContainerId) -> F,
    F: Future<Output = i64>,
{
    with_new_server(runtime, TEEWORLDS_IMAGE, "teeworlds", |server, data_dir| async move {
        run(runtime, &pid_of, server, &data_dir).await;
    })
    .await;
}

/// The test proper; the caller removes the server's container.
async fn run<R, P, F>(runtime: &R, pid_of: &P, server: ServerId, data_dir: &Path)
where
    R: Runtime + ?Sized,
    P: Fn(ContainerId) -> F,
    F: Future<Output = i64>,
{
    let egg = import_egg(&std::fs::read(EGG).expect("reading the teeworlds egg")).expect("importing the teeworlds egg");
    assert_eq!(egg.stop, StopMethod::Signal(StopSignal::Interrupt), "the egg stops with ^C");

    let port = free_port();
    let limits = ServerLimits { memory_mb: 512, swap_mb: 0, cpu_percent: 100, disk_mb: 0, io_weight: 0, pids: 128 };
    let values: BTreeMap<String, String> = egg
        .variables
        .iter()
        .map(|v| (v.env_variable.clone(), v.default_value.clone()))
        .chain([("SERVER_NAME".to_owned(), SERVER_NAME.to_owned())])
        .collect();

    prepare_data_dir(data_dir);
    // What the node agent does before each start: patch the egg's config files.
    let context = ConfigContext::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), limits.memory_mb)
        .with_environment(values.clone());
    for file in &egg.config_files {
        let path = data_dir.join(&file.path);
        let original = std::fs::read_to_string(&path).expect("config file laid out by the install");
        let patched = apply(file, &original, &context).expect("patching the egg's config file");
        std::fs::write(&path, patched).expect("writing the patched config file");
    }
    hand_over(data_dir, SERVER_USER);
    let autoexec = std::fs::read_to_string(data_dir.join("autoexec.cfg")).expect("autoexec.cfg");
    assert!(autoexec.contains(&format!("sv_port {port}\n")), "egg patched the port: {autoexec}");
    assert!(autoexec.contains(&format!("sv_name {SERVER_NAME}\n")), "egg patched the name: {autoexec}");

    let facts = ServerFacts {
        memory_mib: limits.memory_mb,
        ip: "0.0.0.0".into(),
        port,
        uuid: server.to_string(),
        timezone: None,
        location: None,
        allocation_limit: None,
    };
    let startup = render_startup(egg.default_startup().expect("startup command"), &values, &facts).expect("render");
    let spec = ContainerSpec {
        server,
        image: TEEWORLDS_IMAGE.to_owned(),
        // Startup commands may use bash syntax; the image has bash.
        command: Some(vec!["/bin/bash".into(), "-c".into(), startup.command.clone()]),
        env: startup.env.into_iter().collect(),
        data_dir: data_dir.to_path_buf(),
        limits,
        ports: vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port }],
        labels: BTreeMap::new(),
        // As a node runs it: an unprivileged user owning its directory, hardened container.
        isolation: Isolation::server().with_user(Some(SERVER_USER)),
        tty: false,
    };

    let started = Instant::now();
    let id = runtime.create(&spec).await.expect("create");
    let id = &id;
    let mut console = runtime.attach(id).await.expect("attach");
    runtime.start(id).await.expect("start");
    let done = &egg.done;

    let fallback = format!("server name is '{SERVER_NAME}'");
    let mut seen: Vec<ConsoleLine> = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        use futures::StreamExt;
        while let Some(line) = console.output.next().await {
            let line = line.expect("console line");
            let egg_done = done.iter().any(|m| matches(m, &line.text));
            let name_line = line.text.contains(&fallback);
            seen.push(line);
            if egg_done {
                return "the egg's done string";
            }
            if name_line {
                return "the server-name line (offline: no master server answers)";
            }
        }
        "nothing (console ended)"
    })
    .await;
    let up = up.unwrap_or_else(|_| panic!("server not up within 60 s; console: {seen:#?}"));
    assert!(!up.starts_with("nothing"), "server exited before it was up; console: {seen:#?}");
    println!("teeworlds on {} up after {:?}, recognised by {up}", runtime.name(), started.elapsed());

    let pid = pid_of(id.clone()).await;
    let listening = udp_listeners(pid);
    assert!(listening.contains(&port), "no UDP socket bound to {port} in the container; bound: {listening:?}");

    // A datagram sent to the published port on the host is delivered to that socket
    // (Teeworlds drops it as malformed, but the kernel counts it as delivered, not as "no port").
    let before = udp_counters(pid);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("UDP socket");
    let delivered = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let _ = socket.send_to(b"\xff\xff\xff\xffnexus-probe", ("127.0.0.1", port));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = udp_counters(pid);
            if now.0 > before.0 {
                return now;
            }
        }
    })
    .await
    .expect("a datagram to 127.0.0.1:port reached the server's socket");
    assert_eq!(delivered.1, before.1, "datagrams were counted as 'no port' instead of reaching the server");
    println!("teeworlds listens on UDP {port}; datagrams from the host reach it");

    let stop_started = Instant::now();
    let outcome = runtime.stop(id, &egg.stop, Duration::from_secs(30)).await.expect("stop");
    println!("stopped with the egg's ^C in {:?}: {outcome:?}", stop_started.elapsed());
    assert!(outcome.graceful, "the server did not stop on SIGINT: {outcome:?}");
    assert!([0, 130].contains(&outcome.exit.code), "exit code {}", outcome.exit.code);
}

/// Lays the data directory out like the egg's install would (see the module docs).
fn prepare_data_dir(dir: &Path) {
    std::os::unix::fs::symlink("/usr/games/teeworlds-server", dir.join("teeworlds_srv")).expect("teeworlds_srv");
    std::os::unix::fs::symlink("/usr/share/games/teeworlds/data", dir.join("data")).expect("data");
    std::fs::write(dir.join("storage.cfg"), "add_path $CURRENTDIR\nadd_path $DATADIR\n").expect("storage.cfg");
    std::fs::write(
        dir.join("autoexec.cfg"),
        "# laid out by the test in place of the egg's downloaded default config\n\
         sv_name Teeworlds Server\n\
         sv_motd Welcome\n\
         bindaddr 127.0.0.1\n\
         sv_port 8303\n\
         sv_register 0\n",
    )
    .expect("autoexec.cfg");
}

/// `(InDatagrams, NoPorts)` of the UDP counters in the namespace of process `pid`.
fn udp_counters(pid: i64) -> (u64, u64) {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).expect("reading /proc/<pid>/net/snmp");
    let values = snmp
        .lines()
        .filter(|l| l.starts_with("Udp: "))
        .nth(1)
        .expect("UDP counters")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().expect("counter"))
        .collect::<Vec<_>>();
    (values[0], values[1])
}

//! A real game server that needs a terminal, through its real egg, on any runtime: the
//! Minetest egg from the community corpus (its startup runs the server with `--terminal`, a
//! curses console), imported and rendered by `nexus-eggs`, run on a TTY in the Debian-built
//! `nexus-test/minetest:latest` image (`scripts/images/minetest.sh`). Without a terminal it
//! ends at once with `Error opening terminal: unknown.`, as it did before servers ran on one.
//! Each runtime crate's `tests/real_servers.rs` calls [`minetest_egg_runs_on_a_terminal`].
//!
//! # What stands in for the egg's install script, and why
//!
//! The egg's installer runs `apt` and downloads an example config and mod list from GitHub;
//! nothing outside this machine can be reached here, so the test lays the data directory out
//! the way the install leaves it (with `COMMUNITY_DOWNLOAD=0`, the egg's default):
//!
//! | install leaves | the test puts | because |
//! |---|---|---|
//! | `.minetest/minetest.conf` with one bare line per key the egg patches | the same lines, from the install script's own `echo` | the egg's `file` patch then runs for real |
//! | `.minetest/games/`, `.minetest/mods/` (empty, plus a downloaded `mods_here.txt`) | the empty directories | the default game (`minetest`) comes with the image, as with the community image |
//! | `server.log` (empty) | an empty `server.log` | |
//!
//! The egg leaves `SERVER_ADMIN_NAME` empty; in `--terminal` mode Minetest refuses to start
//! without an admin, so the test sets it, as a user must. `SERVER_ANNOUNCE` is `false`, so the
//! server does not try to announce itself to the public server list.

use crate::game::{hand_over, matches, udp_listeners, with_new_server};
use crate::runtime::context::free_port;
use crate::runtime::{MINETEST_IMAGE, TEST_USER as SERVER_USER};
use nexus_core::ServerId;
use nexus_core::console::ConsoleLine;
use nexus_core::model::ServerLimits;
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
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/eggs/parkervcp__game_eggs__minetest__egg-minetest.json");
const SERVER_NAME: &str = "Nexus Minetest Test";

/// The scenario: checks the test image (a missing one fails under `CI=true`, else skips),
/// runs the egg on a terminal on `runtime`, and removes the server's container and data
/// directory whatever happened. `pid_of` gives the host PID of a running container's PID 1.
pub async fn minetest_egg_runs_on_a_terminal<R, P, F>(runtime: &R, pid_of: P)
where
    R: Runtime + ?Sized,
    P: Fn(ContainerId) -> F,
    F: Future<Output = i64>,
{
    with_new_server(runtime, MINETEST_IMAGE, "minetest", |server, data_dir| async move {
        run(runtime, &pid_of, server, &data_dir).await;
    })
    .await;
}

async fn run<R, P, F>(runtime: &R, pid_of: &P, server: ServerId, data_dir: &Path)
where
    R: Runtime + ?Sized,
    P: Fn(ContainerId) -> F,
    F: Future<Output = i64>,
{
    let egg = import_egg(&std::fs::read(EGG).expect("reading the minetest egg")).expect("importing the minetest egg");
    let startup_template = egg.default_startup().expect("startup command");
    assert!(startup_template.contains("--terminal"), "the egg runs the server with its curses console");

    let port = free_port();
    let limits = ServerLimits { memory_mb: 1024, swap_mb: 0, cpu_percent: 100, disk_mb: 0, io_weight: 0, pids: 128 };
    let values: BTreeMap<String, String> = egg
        .variables
        .iter()
        .map(|v| (v.env_variable.clone(), v.default_value.clone()))
        .chain([
            ("SERVER_NAME".to_owned(), SERVER_NAME.to_owned()),
            ("SERVER_ADMIN_NAME".to_owned(), "admin".to_owned()),
            // No announcement to the public server list: no traffic leaves the machine.
            ("SERVER_ANNOUNCE".to_owned(), "false".to_owned()),
        ])
        .collect();

    prepare_data_dir(data_dir);
    let context = ConfigContext::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), limits.memory_mb)
        .with_environment(values.clone());
    for file in &egg.config_files {
        let path = data_dir.join(&file.path);
        let original = std::fs::read_to_string(&path).expect("config file laid out by the install");
        let patched = apply(file, &original, &context).expect("patching the egg's config file");
        std::fs::write(&path, patched).expect("writing the patched config file");
    }
    let conf = std::fs::read_to_string(data_dir.join(".minetest/minetest.conf")).expect("minetest.conf");
    assert!(conf.contains(&format!("server_name = {SERVER_NAME}\n")), "egg patched the name: {conf}");
    assert!(conf.contains("name = admin\n"), "egg patched the admin: {conf}");
    hand_over(data_dir, SERVER_USER);

    let facts = ServerFacts {
        memory_mib: limits.memory_mb,
        ip: "0.0.0.0".into(),
        port,
        uuid: server.to_string(),
        timezone: None,
        location: None,
        allocation_limit: None,
    };
    let startup = render_startup(startup_template, &values, &facts).expect("render");
    let spec = ContainerSpec {
        server,
        image: MINETEST_IMAGE.to_owned(),
        command: Some(vec!["/bin/bash".into(), "-c".into(), startup.command.clone()]),
        env: startup.env.into_iter().collect(),
        data_dir: data_dir.to_path_buf(),
        limits,
        ports: vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port }],
        labels: BTreeMap::new(),
        isolation: Isolation::server().with_user(Some(SERVER_USER)),
        // As Wings runs every server: on a terminal.
        tty: true,
    };

    let started = Instant::now();
    let id = runtime.create(&spec).await.expect("create");
    let id = &id;
    let mut console = runtime.attach(id).await.expect("attach");
    runtime.start(id).await.expect("start");
    let mut seen: Vec<ConsoleLine> = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(90), async {
        use futures::StreamExt;
        while let Some(line) = console.output.next().await {
            let line = line.expect("console line");
            let done = egg.done.iter().any(|m| matches(m, &line.text));
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or_else(|_| panic!("server not up within 90 s; console: {seen:#?}"));
    assert!(up, "the server exited before its done line; console: {seen:#?}");
    println!("minetest on {} up on a terminal after {:?}", runtime.name(), started.elapsed());

    let pid = pid_of(id.clone()).await;
    let listening = udp_listeners(pid);
    assert!(listening.contains(&port), "no UDP socket bound to {port} in the container; bound: {listening:?}");

    // The egg's stop is a console command, typed into the curses console through the
    // terminal. Minetest refuses admin commands on its console until the admin has logged in
    // once (it says so in its log), so on this fresh world the command is shown and refused,
    // and the server is killed after the stop timeout, as under Wings.
    let outcome = runtime.stop(id, &egg.stop, Duration::from_secs(5)).await.expect("stop");
    println!("stopped after the egg's {:?}: {outcome:?}", egg.stop);
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        use futures::StreamExt;
        let mut rest = Vec::new();
        while let Some(Ok(line)) = console.output.next().await {
            rest.push(line.text);
        }
        rest
    })
    .await
    .expect("the console ends when the server is gone");
    // The server's answer to a console command on a fresh world (curses draws it amid cursor
    // movements: what it shows is the text once those are taken out) proves the command came
    // through the terminal.
    let before = strip_escapes(&seen.iter().map(|l| l.text.as_str()).collect::<String>());
    let shown = strip_escapes(&rest.concat());
    let refusal = "you can't execute admin tasks";
    assert!(!before.contains(refusal), "refused before any command: {before}");
    assert!(shown.contains(refusal), "the stop command never reached the server's console; it showed: {shown}");
}

/// `text` without its terminal escape sequences (`ESC [ … letter`, `ESC ( B`, `ESC =`, ...).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() || c == '@' || c == '~' {
                        break;
                    }
                }
            }
            Some('(' | ')') => {
                chars.next();
            }
            _ => {}
        }
    }
    out
}

/// Lays the data directory out like the egg's install would (see the module docs).
fn prepare_data_dir(dir: &Path) {
    for sub in [".minetest/worlds", ".minetest/games", ".minetest/mods"] {
        std::fs::create_dir_all(dir.join(sub)).expect("directory");
    }
    std::fs::write(dir.join("server.log"), "").expect("server.log");
    std::fs::write(
        dir.join(".minetest/minetest.conf"),
        "## Server settings generated by pterodactyl\nname\nserver_name\nserver_description\nserver_address\nserver_url\n\
         server_announce\nserverlist_url\nmotd\nmax_users\nbind_address\ndefault_password\ndefault_game\n\n## Custom server settings\n\n",
    )
    .expect("minetest.conf");
}

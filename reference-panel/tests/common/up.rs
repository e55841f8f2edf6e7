//! `nexus-panel up` as a child process: started in a data directory, its URL and first
//! admin password read from what it prints, interrupted like Ctrl-C, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_nexus-panel");

/// A running `nexus-panel up`, killed if the test fails.
pub struct Up {
    pub child: Child,
    pub url: String,
    /// The admin password, when this start printed one.
    pub password: Option<String>,
    /// Containers to remove when it is dropped (a `docker ps --filter`).
    pub node_containers: Option<String>,
}

impl Up {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with_ports(data_dir, "30410-30419", "127.0.0.1:0")
    }

    pub fn start_with_ports(data_dir: &Path, ports: &str, listen: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["up", "--listen", listen, "--heartbeat-secs", "1", "--ports", ports, "--data-dir"])
            .arg(data_dir)
            .args(std::env::var_os("NEXUS_TEST_PANEL_LOG").map(|_| "--verbose"))
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("NEXUS_TEST_PANEL_LOG") {
                Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .expect("start nexus-panel up");
        let (url, password) = read_banner(child.stdout.take().unwrap());
        let url = url.expect("the panel printed its URL");
        Self { child, url, password, node_containers: None }
    }

    /// A session of the first admin (this start printed its password); the local node's
    /// containers are removed when `self` is dropped.
    pub async fn admin_session(&mut self) -> super::Client {
        let password = self.password.clone().expect("this start printed the admin password");
        let session = super::Client::login(&self.url, "admin@nexus.local", &password).await;
        let node = session.get("/api/v1/nodes").await["data"][0]["id"].as_str().unwrap().to_owned();
        self.node_containers = Some(format!("label={}={node}", nexus_agent::NODE_LABEL));
        session
    }

    /// Ctrl-C; the panel exits cleanly in time.
    pub fn interrupt(mut self) {
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "nexus-panel up exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "nexus-panel up did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.node_containers = None;
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(filter) = &self.node_containers {
            remove_containers(filter);
        }
    }
}

/// What a starting panel (`up` or `serve`) prints before it serves: its URL, and the first
/// admin's password when this start created one.
pub fn read_banner(stdout: std::process::ChildStdout) -> (Option<String>, Option<String>) {
    let (mut url, mut password) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the panel's output");
        if let Some(rest) = line.strip_prefix("Nexus panel: ") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("password: ") {
            password = Some(rest.to_owned());
        }
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
    }
    (url, password)
}

/// A new API key of `kind` (`application` or `client`) for `user`, from `keys create` on the
/// data directory.
pub fn create_key(data: &Path, user: &str, kind: &str) -> String {
    let out = Command::new(BIN)
        .args(["keys", "create", "--user", user, "--kind", kind, "--data-dir"])
        .arg(data)
        .output()
        .expect("run keys create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("a key").trim().to_owned()
}

/// Removes the Docker containers `filter` selects.
pub fn remove_containers(filter: &str) {
    let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", filter]).output() else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
    }
}

//! What a case works with: the subject, builders for specs and data directories, console
//! helpers, and the record of everything to remove afterwards.

use super::{BUSYBOX_IMAGE, CONFORMANCE_LABEL, EngineProbe, Subject};
use futures::StreamExt;
use futures::stream::BoxStream;
use nexus_core::console::{ConsoleLine, ConsoleStream};
use nexus_core::ids::ServerId;
use nexus_core::model::ServerLimits;
use nexus_core::runtime::{ConsoleInput, ConsoleIo, ContainerId, ContainerSpec, Isolation, Runtime, RuntimeError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a case waits for an expected console line before failing.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// A case's handle on the runtime, the probe and its own resources.
///
/// Clones share the record of created resources, which [`Ctx::cleanup`] removes.
#[derive(Clone)]
pub struct Ctx {
    /// The runtime under test.
    pub runtime: Arc<dyn Runtime>,
    /// The engine probe.
    pub probe: Arc<dyn EngineProbe>,
    created: Arc<Mutex<Created>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("runtime", &self.runtime.name()).finish_non_exhaustive()
    }
}

/// Resources a case created.
#[derive(Default)]
struct Created {
    servers: Vec<ServerId>,
    containers: Vec<ContainerId>,
    dirs: Vec<PathBuf>,
}

impl Ctx {
    /// A context for one case.
    pub fn new(subject: Subject) -> Self {
        Self { runtime: subject.runtime, probe: subject.probe, created: Arc::default() }
    }

    fn record(&self, f: impl FnOnce(&mut Created)) {
        // A poisoned lock only means another task of this case panicked; keep recording.
        let mut created = self.created.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut created);
    }

    /// A fresh server id whose containers are removed at cleanup.
    pub fn server(&self) -> ServerId {
        let server = ServerId::new();
        self.record(|c| c.servers.push(server));
        server
    }

    /// Removes container `id` at cleanup (for containers not tied to a recorded server).
    pub fn track(&self, id: &ContainerId) {
        self.record(|c| c.containers.push(id.clone()));
    }

    /// A fresh, empty data directory, removed at cleanup.
    pub fn data_dir(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nexus-conformance-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating a data directory");
        self.record(|c| c.dirs.push(dir.clone()));
        dir
    }

    /// A spec for a new server running `script` with `/bin/sh -c` in [`BUSYBOX_IMAGE`], with a
    /// fresh data directory, no limits, no ports and the [`CONFORMANCE_LABEL`].
    pub fn spec(&self, script: &str) -> ContainerSpec {
        ContainerSpec {
            server: self.server(),
            image: BUSYBOX_IMAGE.to_owned(),
            command: Some(vec!["/bin/sh".into(), "-c".into(), script.to_owned()]),
            env: BTreeMap::new(),
            data_dir: self.data_dir(),
            limits: ServerLimits::default(),
            ports: Vec::new(),
            labels: BTreeMap::from([(CONFORMANCE_LABEL.to_owned(), "true".to_owned())]),
            isolation: Isolation::server(),
            tty: false,
        }
    }

    /// Creates the container of `spec`, failing the case on error.
    pub async fn create(&self, spec: &ContainerSpec) -> ContainerId {
        let id = self.runtime.create(spec).await.unwrap_or_else(|e| panic!("create {}: {e}", spec.server));
        self.track(&id);
        id
    }

    /// Creates and starts the container of `spec`.
    pub async fn run(&self, spec: &ContainerSpec) -> ContainerId {
        let id = self.create(spec).await;
        self.runtime.start(&id).await.unwrap_or_else(|e| panic!("start {id}: {e}"));
        id
    }

    /// Creates the container of `spec`, attaches its console, then starts it, so no output
    /// can be missed.
    pub async fn run_attached(&self, spec: &ContainerSpec) -> (ContainerId, ConsoleIo) {
        let id = self.create(spec).await;
        let console = self.runtime.attach(&id).await.unwrap_or_else(|e| panic!("attach {id} before start: {e}"));
        self.runtime.start(&id).await.unwrap_or_else(|e| panic!("start {id}: {e}"));
        (id, console)
    }

    /// Removes every container of the recorded servers (install containers included) and
    /// every recorded container and directory. Errors are printed, not raised: cleanup must
    /// get as far as it can.
    pub async fn cleanup(&self) {
        let (servers, mut containers, dirs) = {
            let mut created = self.created.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (
                std::mem::take(&mut created.servers),
                std::mem::take(&mut created.containers),
                std::mem::take(&mut created.dirs),
            )
        };
        for server in servers {
            match self.probe.server_containers(server).await {
                Ok(ids) => containers.extend(ids),
                Err(e) => eprintln!("cleanup: listing containers of {server}: {e}"),
            }
        }
        containers.sort_by(|a, b| a.0.cmp(&b.0));
        containers.dedup();
        for id in containers {
            match self.runtime.destroy(&id).await {
                Ok(()) | Err(RuntimeError::ContainerNotFound(_)) => {}
                Err(e) => eprintln!("cleanup: destroying {id}: {e}"),
            }
        }
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    eprintln!("cleanup: removing {}: {e}", dir.display());
                }
                _ => {}
            }
        }
    }
}

/// Writes `line` and a newline to a console input.
pub async fn write_line(input: &mut ConsoleInput, line: &str) {
    let bytes = format!("{line}\n");
    write_all(input, bytes.as_bytes()).await.expect("writing to the console");
}

/// `AsyncWriteExt::write_all` + `flush` without tokio's `io-util` feature (nexus-core does
/// not otherwise need it).
async fn write_all(input: &mut ConsoleInput, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written = std::future::poll_fn(|cx| input.as_mut().poll_write(cx, bytes)).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    std::future::poll_fn(|cx| input.as_mut().poll_flush(cx)).await
}

/// Console output as the runtime delivers it.
pub type Output = BoxStream<'static, Result<ConsoleLine, RuntimeError>>;

/// Reads lines until one satisfies `wanted`; returns every line read, that one last. Fails
/// the case on a stream error, on the end of the stream, or after `timeout`, showing what
/// was seen.
pub async fn read_until(
    output: &mut Output,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&ConsoleLine) -> bool,
) -> Vec<ConsoleLine> {
    let mut seen = Vec::new();
    let search = async {
        while let Some(line) = output.next().await {
            let line = line.unwrap_or_else(|e| panic!("console error while waiting for {what}: {e}"));
            let done = wanted(&line);
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(timeout, search).await {
        Ok(true) => seen,
        Ok(false) => panic!("console ended before {what}; saw {:?}", tail(&seen)),
        Err(_) => panic!("no {what} on the console within {timeout:?}; saw {:?}", tail(&seen)),
    }
}

/// Reads lines until `text` appears on stdout (exact match).
pub async fn expect_line(output: &mut Output, text: &str) -> Vec<ConsoleLine> {
    read_until(output, LINE_TIMEOUT, &format!("line {text:?}"), |l| l.text == text).await
}

/// Reads every line until the stream ends (the process exited); fails after `timeout`.
pub async fn read_to_end(output: &mut Output, timeout: Duration) -> Vec<ConsoleLine> {
    let mut seen = Vec::new();
    let drain = async {
        while let Some(line) = output.next().await {
            seen.push(line.unwrap_or_else(|e| panic!("console error: {e}")));
        }
    };
    if tokio::time::timeout(timeout, drain).await.is_err() {
        panic!("console did not end within {timeout:?}; {} lines, last {:?}", seen.len(), tail(&seen));
    }
    seen
}

/// Lines of one stream, as text.
pub fn texts(lines: &[ConsoleLine], stream: ConsoleStream) -> Vec<String> {
    lines.iter().filter(|l| l.stream == stream).map(|l| l.text.clone()).collect()
}

/// The last few lines, for failure messages.
fn tail(lines: &[ConsoleLine]) -> &[ConsoleLine] {
    &lines[lines.len().saturating_sub(10)..]
}

/// A port on 127.0.0.1 free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a TCP probe socket");
        let port = tcp.local_addr().expect("probe socket address").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `timeout`.
pub async fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! A real S3-compatible server for tests: `s3s-fs` (installed by `scripts/services/s3.sh`,
//! found through `NEXUS_TEST_S3S_FS`), one process per [`S3Server`], on loopback, with its
//! own directory, port and credentials, so a test can kill it and start it again
//! ([`S3Server::kill`], [`S3Server::restart`]) without disturbing other tests.
//!
//! ```no_run
//! # async fn demo() {
//! let Some(s3) = nexus_conformance::s3::S3Server::start("templates").await else { return };
//! println!("{} bucket {} key {}", s3.endpoint(), s3.bucket(), s3.access_key());
//! # }
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Environment variable naming the `s3s-fs` binary.
pub const BINARY_ENV: &str = "NEXUS_TEST_S3S_FS";
/// Region the server accepts (s3s-fs accepts any; clients must sign with one).
pub const REGION: &str = "us-east-1";

/// One running `s3s-fs`; killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    bucket: String,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server holding one empty bucket `bucket`. `None` when `s3s-fs` is not
    /// installed and the run is not under `CI=true` (see
    /// [`require_service`](crate::require_service)); under `CI=true` that panics.
    pub async fn start(bucket: &str) -> Option<Self> {
        let binary = match std::env::var_os(BINARY_ENV) {
            Some(path) if Path::new(&path).is_file() => PathBuf::from(path),
            Some(path) => {
                let reason = format!("{BINARY_ENV}={} is not a file", Path::new(&path).display());
                crate::require_service("s3s-fs", Err(reason));
                return None;
            }
            None => {
                crate::require_service("s3s-fs", Err(format!("{BINARY_ENV} is not set")));
                return None;
            }
        };
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("creating the S3 server's directory: {e}"),
        };
        if let Err(e) = std::fs::create_dir(dir.path().join(bucket)) {
            panic!("creating bucket {bucket}: {e}");
        }
        let port = free_port();
        let mut server = Self { binary, dir, port, bucket: bucket.to_owned(), child: None };
        server.restart().await;
        Some(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Access key id the server checks signatures against.
    pub fn access_key(&self) -> &'static str {
        "nexus-test-access"
    }

    /// Secret key the server checks signatures against.
    pub fn secret_key(&self) -> &'static str {
        "nexus-test-secret-key-0123456789"
    }

    /// The directory holding the objects (`<dir>/<bucket>/<key>`), to inspect or corrupt.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server at once (`SIGKILL`): requests in flight fail mid-stream.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// (Re)starts the server on the same port and directory and waits until it accepts
    /// connections (at most 10 s).
    #[allow(clippy::panic, reason = "test support: a server that cannot start fails the test")]
    pub async fn restart(&mut self) {
        self.kill().await;
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", self.access_key(), "--secret-key", self.secret_key()])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("starting {}: {e}", self.binary.display()),
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                panic!("s3s-fs did not listen on port {} within 10 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[allow(clippy::panic, reason = "test support")]
fn free_port() -> u16 {
    match TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("finding a free port: {e}"),
    }
}

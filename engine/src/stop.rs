//! The stop sequence of [`Runtime::stop`](nexus_core::runtime::Runtime::stop), written once over
//! the four engine calls it needs.

use async_trait::async_trait;
use nexus_core::model::{StopMethod, StopSignal};
use nexus_core::runtime::{ConsoleInput, ContainerId, ExitStatus, RuntimeError, StopOutcome};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What [`stop`] needs from an engine. Errors are already mapped: a container that is not
/// running is [`RuntimeError::Conflict`] for [`open_stdin`](Self::open_stdin) and
/// [`signal`](Self::signal), a removed one [`RuntimeError::ContainerNotFound`].
#[async_trait]
pub trait StopEngine: Send + Sync {
    /// How the container's process ended, or `None` while it runs. A container that never
    /// ran counts as ended with code 0.
    async fn exit_if_stopped(&self, id: &str) -> Result<Option<ExitStatus>, RuntimeError>;

    /// Opens the process's stdin alone. No output is attached, so a stop never holds the
    /// process back on output nobody reads.
    async fn open_stdin(&self, id: &str) -> Result<ConsoleInput, RuntimeError>;

    /// Sends `signal` to the process.
    async fn signal(&self, id: &str, signal: StopSignal) -> Result<(), RuntimeError>;

    /// Waits until the process is not running and returns how it ended.
    async fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError>;
}

/// Stops container `id` by egg semantics: a process that already ended reports that exit;
/// otherwise `method` is applied (a line written to stdin, or a signal), the exit is awaited
/// up to `timeout`, and a process still running then is killed with `SIGKILL`
/// (`graceful: false`, exit 137).
pub async fn stop<E: StopEngine + ?Sized>(
    engine: &E,
    id: &ContainerId,
    method: &StopMethod,
    timeout: Duration,
) -> Result<StopOutcome, RuntimeError> {
    if let Some(exit) = engine.exit_if_stopped(&id.0).await? {
        return Ok(StopOutcome { exit, graceful: true });
    }
    tracing::info!(container = %id, ?method, ?timeout, "stopping container");
    let stopped = match method {
        StopMethod::Command(command) => by_command(engine, &id.0, command, timeout).await?,
        StopMethod::Signal(signal) => by_signal(engine, &id.0, *signal, timeout).await?,
    };
    if let Some(exit) = stopped {
        return Ok(StopOutcome { exit, graceful: true });
    }
    tracing::warn!(container = %id, ?timeout, "process ignored the stop; killing it");
    let graceful = match engine.signal(&id.0, StopSignal::Kill).await {
        Ok(()) => false,
        // It exited on its own in the instant between the timeout and the kill.
        Err(RuntimeError::Conflict(_)) => true,
        Err(e) => return Err(e),
    };
    let exit = engine.wait(&id.0).await?;
    Ok(StopOutcome { exit, graceful })
}

/// Writes `command` and a newline to the process's stdin, then waits up to `timeout`.
async fn by_command<E: StopEngine + ?Sized>(
    engine: &E,
    id: &str,
    command: &str,
    timeout: Duration,
) -> Result<Option<ExitStatus>, RuntimeError> {
    let input = match engine.open_stdin(id).await {
        Ok(mut input) => {
            if let Err(error) = write_line(&mut input, command).await {
                // The process may have exited (closing stdin) just now; the wait tells.
                tracing::debug!(container = %id, %error, "writing the stop command failed");
            }
            Some(input)
        }
        // Exited since the state check: nothing to write to, the wait returns at once.
        Err(RuntimeError::Conflict(_)) => None,
        Err(e) => return Err(e),
    };
    // The input stays open while waiting: closing it right after the write could race the
    // engine copying the bytes to the process.
    let exit = tokio::time::timeout(timeout, engine.wait(id)).await;
    drop(input);
    exit.ok().transpose()
}

/// Sends `signal`, then waits up to `timeout`.
async fn by_signal<E: StopEngine + ?Sized>(
    engine: &E,
    id: &str,
    signal: StopSignal,
    timeout: Duration,
) -> Result<Option<ExitStatus>, RuntimeError> {
    match engine.signal(id, signal).await {
        // Exited between the state check and the signal: the wait below returns at once.
        Ok(()) | Err(RuntimeError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    tokio::time::timeout(timeout, engine.wait(id)).await.ok().transpose()
}

/// Writes `line` and a newline to a console input and flushes it.
pub async fn write_line(input: &mut ConsoleInput, line: &str) -> std::io::Result<()> {
    input.write_all(format!("{line}\n").as_bytes()).await?;
    input.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A process that exits with `code` when it gets `obeys`, and 137 on SIGKILL.
    struct Fake {
        obeys: Option<StopSignal>,
        code: i64,
        exited: Mutex<Option<ExitStatus>>,
        sent: Mutex<Vec<StopSignal>>,
    }

    impl Fake {
        fn new(obeys: Option<StopSignal>, code: i64) -> Self {
            Self { obeys, code, exited: Mutex::new(None), sent: Mutex::new(Vec::new()) }
        }
    }

    #[async_trait]
    impl StopEngine for Fake {
        async fn exit_if_stopped(&self, _: &str) -> Result<Option<ExitStatus>, RuntimeError> {
            Ok(*self.exited.lock().unwrap_or_else(|p| p.into_inner()))
        }
        async fn open_stdin(&self, _: &str) -> Result<ConsoleInput, RuntimeError> {
            Ok(Box::pin(tokio::io::sink()))
        }
        async fn signal(&self, _: &str, signal: StopSignal) -> Result<(), RuntimeError> {
            self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(signal);
            let code = match signal {
                StopSignal::Kill => 137,
                s if Some(s) == self.obeys => self.code,
                _ => return Ok(()),
            };
            *self.exited.lock().unwrap_or_else(|p| p.into_inner()) = Some(ExitStatus { code, oom_killed: false });
            Ok(())
        }
        async fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
            loop {
                if let Some(exit) = self.exit_if_stopped(id).await? {
                    return Ok(exit);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    #[tokio::test]
    async fn obeyed_signal_is_graceful_ignored_one_is_killed() {
        let id = ContainerId("c".into());
        let term = StopMethod::Signal(StopSignal::Terminate);
        let obeying = Fake::new(Some(StopSignal::Terminate), 5);
        let outcome = stop(&obeying, &id, &term, Duration::from_secs(5)).await.expect("stop");
        assert_eq!((outcome.exit.code, outcome.graceful), (5, true));

        let stubborn = Fake::new(None, 0);
        let outcome = stop(&stubborn, &id, &term, Duration::from_millis(50)).await.expect("stop");
        assert_eq!((outcome.exit.code, outcome.graceful), (137, false));
        assert_eq!(*stubborn.sent.lock().expect("lock"), [StopSignal::Terminate, StopSignal::Kill]);

        // Already exited: that exit, nothing sent.
        let outcome = stop(&stubborn, &id, &term, Duration::from_millis(50)).await.expect("stop");
        assert_eq!((outcome.exit.code, outcome.graceful), (137, true));
        assert_eq!(stubborn.sent.lock().expect("lock").len(), 2);
    }
}

//! Retrying a whole backup or restore, and cleaning up uploads the store could not abort.

use object_store::MultipartUpload;
use std::time::{Duration, Instant};

/// How often a backup or a restore is tried when the store fails in a way that can pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1). Default 3.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each next one. Default 2 s.
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default 30 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 3, initial_backoff: Duration::from_secs(2), max_backoff: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The waits between attempts, in order.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let max = self.max_backoff;
        std::iter::successors(Some(self.initial_backoff.min(max)), move |d| Some((*d * 2).min(max)))
    }
}

/// Whether an object store error can pass by trying again: connection failures, timeouts
/// and server errors come as `Generic` (after the client's own request retries); not found,
/// refused credentials, preconditions and unsupported operations do not pass.
pub(crate) fn is_retryable(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. } | object_store::Error::JoinError { .. })
}

/// The store's wait without progress when none is configured
/// (`request_timeout_secs` of the store's configuration).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(300);

/// The error of a store request that made no progress for `timeout`: `Generic`, so it is
/// retried like any other store failure that can pass.
pub(crate) fn timed_out(what: &str, timeout: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "backup",
        source: format!("{what}: no answer from the store within {}s", timeout.as_secs_f64()).into(),
    }
}

/// Runs the store request `request`, failing with [`timed_out`] when it has not ended
/// after `timeout` (the S3 client has no whole-request timeout of its own: a store that
/// stalls would hold the job forever).
pub(crate) async fn timed<T>(
    timeout: Duration,
    what: &str,
    request: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(what, timeout)),
    }
}

/// How long an upload the store could not abort (it was down) keeps being retried in the
/// background.
const LINGER: Duration = Duration::from_secs(15 * 60);
/// Longest wait between two of those tries.
const LINGER_MAX_WAIT: Duration = Duration::from_secs(10);
/// Longest one abort may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Aborts `upload`, so the store drops the parts it holds. Tried at once; when the store
/// cannot be reached (the reason the upload failed, often), tried again in the background
/// for [`LINGER`], so parts of a failed attempt do not stay once the store is back. Logged
/// when that fails too: a bucket lifecycle rule for incomplete multipart uploads is the
/// last resort.
pub(crate) async fn abort_upload(mut upload: Box<dyn MultipartUpload>, key: String) {
    match tokio::time::timeout(ABORT_TIMEOUT, upload.abort()).await {
        Ok(Ok(())) => {
            tracing::debug!(%key, "partial upload aborted");
            return;
        }
        Ok(Err(error)) => tracing::info!(%key, %error, "aborting a partial upload failed; retrying in the background"),
        Err(_) => tracing::info!(%key, "aborting a partial upload timed out; retrying in the background"),
    }
    tokio::spawn(async move {
        let started = Instant::now();
        let mut wait = Duration::from_secs(1);
        while started.elapsed() < LINGER {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LINGER_MAX_WAIT);
            match tokio::time::timeout(ABORT_TIMEOUT, upload.abort()).await {
                Ok(Ok(())) => {
                    tracing::info!(%key, "partial upload aborted after the store came back");
                    return;
                }
                Ok(Err(error)) => tracing::debug!(%key, %error, "aborting a partial upload failed again"),
                Err(_) => tracing::debug!(%key, "aborting a partial upload timed out again"),
            }
        }
        tracing::warn!(
            %key,
            "could not abort a partial upload within {LINGER:?}; its parts stay in the store until a lifecycle rule removes them"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy =
            RetryPolicy { attempts: 5, initial_backoff: Duration::from_secs(2), max_backoff: Duration::from_secs(5) };
        let delays: Vec<u64> = policy.delays().take(4).map(|d| d.as_secs()).collect();
        assert_eq!(delays, [2, 4, 5, 5]);
    }
}

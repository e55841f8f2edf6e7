//! The daemon's HTTP listener: the API filter served over hyper with the limits a public
//! socket needs.
//!
//! warp's own server has no timeouts and no connection cap, so idle or half-open connections
//! could pile up until the process runs out of file descriptors, and then the daemon could not
//! even save its state. Here:
//!
//! * **Connection cap.** At most [`ConnectionLimits::max_connections`] connections are served
//!   at once; a connection over the cap is accepted and closed at once (so the kernel's backlog
//!   does not fill). The cap is also kept under the process's file-descriptor limit minus
//!   [`FD_RESERVE`], which stays free for state saves, install scripts and engine sockets
//!   ([`ConnectionLimits::fit_to_fd_limit`]; the soft limit is raised to the hard one at start).
//! * **HTTP/1 only.** hyper's HTTP/1 connection is served directly (with upgrades, for the
//!   console WebSocket), not through hyper-util's protocol-sniffing builder: that one reads the
//!   first bytes without a timeout, and serves HTTP/2 with prior knowledge, where a client can
//!   hold a connection with pings without ever sending a request.
//! * **Header-read timeout.** A client must send a request's headers within
//!   [`ConnectionLimits::header_read_timeout`] (slowloris), counted from the moment the
//!   connection is ready for a request, its first one included (a client that connects and
//!   says nothing is cut as fast as a slow one).
//! * **Idle timeout.** A connection (WebSockets included) with no byte read or written for
//!   [`ConnectionLimits::idle_timeout`] is closed. Console sockets carry stats and pings, so a
//!   live one never idles that long; TCP keep-alive probes find peers that vanished.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// File descriptors kept out of the connection cap's reach.
pub const FD_RESERVE: u64 = 256;

/// Limits of the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Longest a connection may go without a byte either way.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// These limits with the connection cap lowered, if needed, to the process's descriptor
    /// limit minus [`FD_RESERVE`] (after raising the soft limit to the hard one). Returns the
    /// limits and, when the cap was lowered, a warning for the operator.
    pub fn fit_to_fd_limit(mut self) -> (Self, Option<String>) {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(hard)) = (limit.current, limit.maximum)
            && current < hard
        {
            let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) });
        }
        let Some(soft) = getrlimit(Resource::Nofile).current else { return (self, None) };
        let usable = usize::try_from(soft.saturating_sub(FD_RESERVE).max(soft / 2)).unwrap_or(usize::MAX);
        if usable >= self.max_connections {
            return (self, None);
        }
        let warning = format!(
            "max_connections lowered from {} to {usable}: the process may open {soft} files and keeps {FD_RESERVE} in reserve",
            self.max_connections
        );
        self.max_connections = usable;
        (self, Some(warning))
    }
}

/// Counters of the listener, for `/metrics`.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed for idling.
    pub idle_closed: AtomicU64,
}

/// Serves `routes` on `listener` under `limits` until `shutdown` resolves; then stops
/// accepting and gives open connections `grace` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: ConnectionLimits,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Set when the listener stops: every connection finishes its request in flight and closes.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "connection cap reached; closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(
            &socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10)),
        );
        let io = hyper_util::rt::TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout, Arc::clone(&stats)));
        let service = hyper_util::service::TowerToHyperService::new(warp::service(routes.clone()));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(io, service)
            .with_upgrades();
        let stats = Arc::clone(&stats);
        let mut stop = stop.clone();
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it has closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all)).await.is_err() {
        tracing::warn!("open connections did not finish within {grace:?}; closing them");
    }
}

/// A stream that fails once it has moved no byte either way for `idle`.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    stats: Arc<ListenerStats>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration, stats: Arc<ListenerStats>) -> Self {
        let now = Instant::now();
        Self { inner, idle, last_activity: now, timer: Box::pin(tokio::time::sleep_until(now + idle)), stats }
    }

    /// `Ready(error)` once idle for too long. The timer is only moved when it fires early
    /// (activity happened since it was set), so traffic costs one `Instant` store per call.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_activity + self.idle;
            if Instant::now() >= deadline {
                self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle too long"));
            }
            self.timer.as_mut().reset(deadline);
        }
    }

    /// What one read or write of the inner stream becomes: a transfer that `moved` bytes
    /// counts as activity; a pending one fails once the connection has idled too long.
    fn settle<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
        moved: bool,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Ready(Ok(_)) if moved => self.last_activity = Instant::now(),
            Poll::Pending => {
                if let Poll::Ready(error) = self.poll_expired(cx) {
                    return Poll::Ready(Err(error));
                }
            }
            Poll::Ready(_) => {}
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        this.settle(cx, result, moved)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        let moved = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.settle(cx, result, moved)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let moved = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.settle(cx, result, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

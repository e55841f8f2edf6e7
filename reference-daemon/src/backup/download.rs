//! [`ObjectReader`]: a stored archive as an [`AsyncRead`], hashed as it is read.

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::{GetResult, GetResultPayload};
use sha2::{Digest, Sha256};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

enum Source {
    /// A local store hands the open file over: read it directly (in large reads, not the
    /// store's 8 KiB chunks, each a blocking task of its own).
    File(tokio::io::Take<tokio::fs::File>),
    Stream {
        stream: BoxStream<'static, object_store::Result<Bytes>>,
        current: Bytes,
        /// Longest wait for the next chunk.
        timeout: Duration,
        /// When the wait for the next chunk fails; armed when the wait begins (a reader
        /// whose consumer is slow is not the store's fault).
        deadline: Pin<Box<Sleep>>,
        waiting: bool,
    },
}

/// Reads a stored object, computing its SHA-256 and counting its bytes on the way. Waiting
/// longer than the store's timeout for the next chunk of a streamed object fails the read
/// (a `Generic` store error, so retried). The first store error is kept ([`take_error`](Self::take_error)); the reader fails with it
/// as an `io::Error`.
pub struct ObjectReader {
    source: Source,
    size: u64,
    hasher: Sha256,
    bytes: u64,
    error: Option<object_store::Error>,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader").field("size", &self.size).field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl ObjectReader {
    /// The whole object `result` answers with; `timeout` is the longest wait for a chunk.
    pub(crate) fn new(result: GetResult, timeout: Duration) -> Self {
        let size = result.meta.size;
        let whole = result.range.start == 0 && result.range.end == size;
        let source = match result.payload {
            GetResultPayload::File(file, _) if whole => {
                use tokio::io::AsyncReadExt as _;
                Source::File(tokio::fs::File::from_std(file).take(size))
            }
            _ => Source::Stream {
                stream: result.into_stream(),
                current: Bytes::new(),
                timeout,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                waiting: false,
            },
        };
        Self { source, size, hasher: Sha256::new(), bytes: 0, error: None }
    }

    /// The object's size as the store reports it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// SHA-256 of the bytes read so far, lower-case hex.
    pub fn checksum(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The store error that failed a read, if one did.
    pub fn take_error(&mut self) -> Option<object_store::Error> {
        self.error.take()
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match &mut this.source {
            Source::File(file) => ready!(Pin::new(file).poll_read(cx, buf))?,
            Source::Stream { stream, current, timeout, deadline, waiting } => {
                while current.is_empty() {
                    if !*waiting {
                        deadline.as_mut().reset(Instant::now() + *timeout);
                        *waiting = true;
                    }
                    let next = match stream.poll_next_unpin(cx) {
                        Poll::Ready(next) => next,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            Some(Err(super::retry::timed_out("reading the archive", *timeout)))
                        }
                    };
                    match next {
                        Some(Ok(chunk)) => {
                            *current = chunk;
                            *waiting = false;
                        }
                        Some(Err(error)) => {
                            let shown = io::Error::other(format!("backup store: {error}"));
                            this.error.get_or_insert(error);
                            return Poll::Ready(Err(shown));
                        }
                        None => return Poll::Ready(Ok(())),
                    }
                }
                let n = buf.remaining().min(current.len());
                buf.put_slice(&current.split_to(n));
            }
        }
        let read = &buf.filled()[before..];
        this.hasher.update(read);
        this.bytes += read.len() as u64;
        Poll::Ready(Ok(()))
    }
}

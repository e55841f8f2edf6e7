//! [`MultipartSink`]: an [`AsyncWrite`] feeding an object store's multipart upload in
//! fixed-size parts, hashing what it takes.

use bytes::{Bytes, BytesMut};
use object_store::{MultipartUpload, PutPayload};
use sha2::{Digest, Sha256};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::task::JoinSet;

use super::retry::timed;

/// Bytes of one part: S3 wants at least 5 MiB for all parts but the last, and at most
/// 10,000 parts (so archives up to 80 GiB).
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploading at once; with the one being filled, what a backup buffers at most.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Writes go into a part buffer; each full part is uploaded by a task of its own, at most
/// [`PARTS_IN_FLIGHT`] at once (a write waits for one to finish), so at most
/// `(PARTS_IN_FLIGHT + 1) × PART_SIZE` bytes are held. Each part upload and the completion
/// fail after `timeout` without an answer. The first store error is kept
/// ([`take_error`](Self::take_error)) and every later write fails.
pub(crate) struct MultipartSink {
    upload: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
    buffer: BytesMut,
    /// The parts sent, kept to reuse their buffers once the store let go of them (no fresh
    /// 8 MiB allocation, and its page faults, per part).
    sent: Vec<Bytes>,
    part_size: usize,
    timeout: Duration,
    hasher: Sha256,
    bytes: u64,
    error: Option<object_store::Error>,
}

impl MultipartSink {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>, part_size: usize, timeout: Duration) -> Self {
        Self {
            upload: Some(upload),
            parts: JoinSet::new(),
            buffer: BytesMut::with_capacity(part_size),
            sent: Vec::new(),
            part_size,
            timeout,
            hasher: Sha256::new(),
            bytes: 0,
            error: None,
        }
    }

    /// Bytes taken so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// SHA-256 of the bytes taken so far, lower-case hex.
    pub(crate) fn checksum(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The store error that failed a write, if one did.
    pub(crate) fn take_error(&mut self) -> Option<object_store::Error> {
        self.error.take()
    }

    fn failed(&mut self, error: object_store::Error) -> io::Error {
        let shown = io::Error::other(format!("backup store: {error}"));
        self.error.get_or_insert(error);
        shown
    }

    /// Uploads the buffer as the next part.
    fn send_part(&mut self) {
        let next = self.spare();
        let part = std::mem::replace(&mut self.buffer, next).freeze();
        let Some(upload) = self.upload.as_mut() else { return };
        self.sent.push(part.clone());
        let request = upload.put_part(PutPayload::from(part));
        let timeout = self.timeout;
        self.parts.spawn(async move { timed(timeout, "uploading a part", request).await });
    }

    /// An empty part buffer: one the store is done with, or a new one.
    fn spare(&mut self) -> BytesMut {
        let done = self.sent.iter().position(Bytes::is_unique);
        let reused = done.and_then(|i| self.sent.swap_remove(i).try_into_mut().ok());
        // Other buffers the store is done with are not kept: at most the parts in flight are.
        self.sent.retain(|part| !part.is_unique());
        match reused {
            Some(mut buffer) if buffer.capacity() >= self.part_size => {
                buffer.clear();
                buffer
            }
            _ => BytesMut::with_capacity(self.part_size),
        }
    }

    /// Waits for one part to finish (ready at once when none is uploading).
    fn poll_one_part(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(self.parts.poll_join_next(cx)) {
            None | Some(Ok(Ok(()))) => Poll::Ready(Ok(())),
            Some(Ok(Err(error))) => Poll::Ready(Err(self.failed(error))),
            Some(Err(join)) => Poll::Ready(Err(self.failed(object_store::Error::JoinError { source: join }))),
        }
    }

    /// Uploads what is buffered, waits for every part, and completes the upload. On an
    /// error the upload is left as is: [`into_upload`](Self::into_upload) it and abort it.
    pub(crate) async fn finish(&mut self) -> object_store::Result<()> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        // An empty object still needs one part.
        if !self.buffer.is_empty() || self.parts.is_empty() && self.bytes == 0 {
            self.send_part();
        }
        while let Some(done) = self.parts.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(join) => return Err(object_store::Error::JoinError { source: join }),
            }
        }
        match self.upload.as_mut() {
            Some(upload) => timed(self.timeout, "completing the upload", upload.complete()).await.map(|_| ()),
            None => Err(object_store::Error::Generic { store: "backup", source: "upload already finished".into() }),
        }
    }

    /// Stops the parts still uploading and hands the upload over (to abort it).
    pub(crate) async fn into_upload(mut self) -> Option<Box<dyn MultipartUpload>> {
        self.parts.shutdown().await;
        self.upload.take()
    }
}

impl AsyncWrite for MultipartSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(error) = &this.error {
            return Poll::Ready(Err(io::Error::other(format!("backup store: {error}"))));
        }
        if this.buffer.len() >= this.part_size {
            while this.parts.len() >= PARTS_IN_FLIGHT {
                ready!(this.poll_one_part(cx))?;
            }
            this.send_part();
        }
        // Reap parts already done, so an error shows up at the next write.
        while !this.parts.is_empty() {
            match this.poll_one_part(cx) {
                Poll::Ready(Ok(())) if this.parts.is_empty() => break,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        let n = buf.len().min(this.part_size - this.buffer.len());
        this.hasher.update(&buf[..n]);
        this.buffer.extend_from_slice(&buf[..n]);
        this.bytes += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Parts are uploaded when full and by `finish`; nothing to do here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn parts_are_uploaded_hashed_and_completed() {
        let store = InMemory::new();
        let key = Path::from("a/b.tar.zst");
        let mut sink = MultipartSink::new(store.put_multipart(&key).await.unwrap(), 5 << 20, Duration::from_secs(30));
        let data: Vec<u8> = (0..12_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in data.chunks(300_000) {
            sink.write_all(chunk).await.unwrap();
        }
        sink.finish().await.unwrap();
        assert_eq!(sink.bytes(), data.len() as u64);
        assert_eq!(sink.checksum(), hex::encode(Sha256::digest(&data)));
        let stored = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), &data[..]);
        let _: &dyn ObjectStore = &store;
    }
}

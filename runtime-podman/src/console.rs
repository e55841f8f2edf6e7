//! Console attachment: libpod's attach (an HTTP connection upgraded to a raw stream, output
//! multiplexed in Docker's frame format) turned into [`ConsoleLine`]s and a stdin writer.

use crate::error::About;
use crate::libpod::{Libpod, Upgraded};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use nexus_core::console::{ConsoleLine, ConsoleStream};
use nexus_core::runtime::{ConsoleInput, RuntimeError};
use nexus_engine::console::{OutputChunk, chunk_lines};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadHalf};

/// Which streams to attach.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streams {
    /// Attach stdin (to write to the process).
    pub stdin: bool,
    /// Attach stdout and stderr (to read from it).
    pub output: bool,
    /// The container has a terminal: its output is one raw stream, not frames.
    pub tty: bool,
}

/// An attachment: stdin writer and output lines (empty when output was not attached).
pub(crate) struct Attached {
    pub input: ConsoleInput,
    pub output: BoxStream<'static, Result<ConsoleLine, RuntimeError>>,
}

/// Attaches to container `id`. libpod never replays earlier output unless asked (`logs`), so
/// a re-attaching daemon does not see a server's history as new lines. A created container is
/// initialised by the engine first (and so is an exited one, as Docker's attach allows), so
/// output is attachable before `start`.
pub(crate) async fn attach(libpod: &Libpod, id: &str, streams: Streams) -> Result<Attached, RuntimeError> {
    let path = format!(
        "/containers/{id}/attach?stream=true&stdin={}&stdout={output}&stderr={output}",
        streams.stdin,
        output = streams.output
    );
    let connection = libpod.upgrade(&path, About::Container(id)).await?;
    let (read, write) = tokio::io::split(connection);
    let output = match (streams.output, streams.tty) {
        (false, _) => futures::stream::empty().boxed(),
        (true, false) => chunk_lines(frames(read, id.to_owned())),
        (true, true) => chunk_lines(raw(read, id.to_owned())),
    };
    Ok(Attached { input: Box::pin(write), output })
}

/// Size of one frame header: stream byte, three zero bytes, big-endian payload length.
const HEADER: usize = 8;

/// The output frames of an attach connection: `(stream, payload)` until the engine closes it
/// (the process exited). Frames of other streams (stdin echo, none in practice) are skipped;
/// a connection cut inside a frame is an error.
fn frames(read: ReadHalf<Upgraded>, id: String) -> BoxStream<'static, Result<OutputChunk, RuntimeError>> {
    let reader = BufReader::with_capacity(64 * 1024, read);
    futures::stream::unfold(Some((reader, id)), |state| async move {
        let (mut reader, id) = state?;
        loop {
            match read_frame(&mut reader).await {
                Ok(Some((stream, payload))) => {
                    let stream = match stream {
                        1 => ConsoleStream::Stdout,
                        2 => ConsoleStream::Stderr,
                        other => {
                            tracing::debug!(container = %id, stream = other, "skipping attach frame of another stream");
                            continue;
                        }
                    };
                    return Some((Ok((stream, payload)), Some((reader, id))));
                }
                Ok(None) => return None,
                Err(error) => {
                    tracing::debug!(container = %id, %error, "console stream failed");
                    return Some((Err(RuntimeError::Io(error)), None));
                }
            }
        }
    })
    .boxed()
}

/// The output of a terminal container: one raw stream, all of it stdout, until the engine
/// closes it.
fn raw(read: ReadHalf<Upgraded>, id: String) -> BoxStream<'static, Result<OutputChunk, RuntimeError>> {
    futures::stream::unfold(Some((read, id)), |state| async move {
        let (mut read, id) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match read.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok((ConsoleStream::Stdout, Bytes::from(buf))), Some((read, id))))
            }
            Err(error) => {
                tracing::debug!(container = %id, %error, "console stream failed");
                Some((Err(RuntimeError::Io(error)), None))
            }
        }
    })
    .boxed()
}

/// The frames of a whole log answer (libpod frames its logs like attach output, terminal
/// containers included: every frame then says stdout). A cut frame at the end is kept as far
/// as it goes.
pub(crate) fn log_frames(mut bytes: Bytes) -> Vec<Result<OutputChunk, RuntimeError>> {
    let mut chunks = Vec::new();
    while bytes.len() >= HEADER {
        let length = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let stream = if bytes[0] == 2 { ConsoleStream::Stderr } else { ConsoleStream::Stdout };
        let _ = bytes.split_to(HEADER);
        let payload = bytes.split_to(length.min(bytes.len()));
        chunks.push(Ok((stream, payload)));
    }
    chunks
}

/// Reads one frame; `None` at a clean end between frames.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<(u8, Bytes)>> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(Some((header[0], Bytes::from(payload))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![stream, 0, 0, 0];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_ends_are_told_apart() {
        let mut bytes = frame(1, b"hello\n");
        bytes.extend(frame(2, b""));
        bytes.extend(frame(3, b"system"));
        let mut reader: &[u8] = &bytes;
        assert_eq!(read_frame(&mut reader).await.expect("frame"), Some((1, Bytes::from_static(b"hello\n"))));
        assert_eq!(read_frame(&mut reader).await.expect("frame"), Some((2, Bytes::new())));
        assert_eq!(read_frame(&mut reader).await.expect("frame"), Some((3, Bytes::from_static(b"system"))));
        assert_eq!(read_frame(&mut reader).await.expect("end"), None);

        let cut = frame(1, b"hello");
        let mut reader: &[u8] = &cut[..10];
        assert!(read_frame(&mut reader).await.is_err(), "cut inside the payload");
        let mut reader: &[u8] = &cut[..3];
        assert!(read_frame(&mut reader).await.is_err(), "cut inside the header");
    }
}

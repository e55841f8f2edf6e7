//! An engine's output chunks → [`ConsoleLine`]s.

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use nexus_core::console::{ConsoleLine, ConsoleStream, LineSplitter};
use nexus_core::runtime::RuntimeError;
use std::collections::VecDeque;

/// The last `max_lines` of `lines`, at most [`LOG_MAX_BYTES`] of text, within
/// [`LOG_READ_DEADLINE`]: a log read never holds a caller longer, or more memory, whatever the
/// container printed or the engine does.
pub async fn last_lines(
    mut lines: BoxStream<'static, Result<ConsoleLine, RuntimeError>>,
    max_lines: usize,
) -> Result<Vec<ConsoleLine>, RuntimeError> {
    let mut kept: VecDeque<ConsoleLine> = VecDeque::with_capacity(max_lines.min(4096));
    let mut bytes = 0usize;
    let read = async {
        while let Some(line) = lines.next().await {
            let line = line?;
            if max_lines == 0 {
                continue;
            }
            bytes += line.text.len();
            kept.push_back(line);
            while kept.len() > max_lines || bytes > LOG_MAX_BYTES {
                if let Some(old) = kept.pop_front() {
                    bytes -= old.text.len();
                }
            }
        }
        Ok::<_, RuntimeError>(())
    };
    match tokio::time::timeout(LOG_READ_DEADLINE, read).await {
        Ok(result) => result?,
        Err(_) => return Err(RuntimeError::Engine(format!("the log was not read within {LOG_READ_DEADLINE:?}"))),
    }
    Ok(kept.into())
}

/// Longest [`last_lines`] reads.
pub const LOG_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Most text [`last_lines`] keeps.
pub const LOG_MAX_BYTES: usize = 4 << 20;

/// A chunk of output of any size, as an engine's attach stream delivers it.
pub type OutputChunk = (ConsoleStream, Bytes);

/// Turns output chunks into lines, each stream split by its own [`LineSplitter`] so a partial
/// stdout line is never joined with stderr. Unterminated tails are delivered when the chunks
/// end; an error is passed on and ends the lines (what follows it is not read).
pub fn chunk_lines<S>(chunks: S) -> BoxStream<'static, Result<ConsoleLine, RuntimeError>>
where
    S: Stream<Item = Result<OutputChunk, RuntimeError>> + Send + 'static,
{
    struct State<S> {
        chunks: S,
        stdout: LineSplitter,
        stderr: LineSplitter,
        ready: VecDeque<Result<ConsoleLine, RuntimeError>>,
        ended: bool,
    }
    let state = State {
        chunks: Box::pin(chunks),
        stdout: LineSplitter::new(),
        stderr: LineSplitter::new(),
        ready: VecDeque::new(),
        ended: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            if state.ended {
                return None;
            }
            match state.chunks.next().await {
                Some(Ok((stream, bytes))) => {
                    let splitter = match stream {
                        ConsoleStream::Stdout => &mut state.stdout,
                        ConsoleStream::Stderr => &mut state.stderr,
                    };
                    let lines = splitter.push(&bytes);
                    state.ready.extend(lines.into_iter().map(|text| Ok(ConsoleLine { stream, text })));
                }
                Some(Err(error)) => {
                    state.ended = true;
                    state.ready.push_back(Err(error));
                }
                None => {
                    state.ended = true;
                    for (stream, splitter) in
                        [(ConsoleStream::Stdout, &mut state.stdout), (ConsoleStream::Stderr, &mut state.stderr)]
                    {
                        if let Some(text) = splitter.finish() {
                            state.ready.push_back(Ok(ConsoleLine { stream, text }));
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> Result<OutputChunk, RuntimeError> {
        Ok((ConsoleStream::Stdout, Bytes::from(s.to_owned())))
    }
    fn err(s: &str) -> Result<OutputChunk, RuntimeError> {
        Ok((ConsoleStream::Stderr, Bytes::from(s.to_owned())))
    }

    #[tokio::test]
    async fn chunks_become_lines_per_stream() {
        let chunks = futures::stream::iter(vec![out("a\nb"), err("e1"), out("c\n"), err("\ne2"), out("tail")]);
        let got: Vec<_> = chunk_lines(chunks).map(|l| l.expect("line")).collect().await;
        let text = |s: ConsoleStream| got.iter().filter(|l| l.stream == s).map(|l| l.text.as_str()).collect::<Vec<_>>();
        assert_eq!(text(ConsoleStream::Stdout), ["a", "bc", "tail"]);
        assert_eq!(text(ConsoleStream::Stderr), ["e1", "e2"]);
    }

    #[tokio::test]
    async fn an_error_ends_the_lines() {
        let chunks =
            futures::stream::iter(vec![out("x\n"), Err(RuntimeError::ContainerNotFound("c1".into())), out("never\n")]);
        let got: Vec<_> = chunk_lines(chunks).collect().await;
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[1], Err(RuntimeError::ContainerNotFound(id)) if id == "c1"));
    }
}

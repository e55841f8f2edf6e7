//! Console attachment: Docker's attach API (an HTTP connection upgraded to a raw stream)
//! turned into [`ConsoleLine`]s.

use crate::error::{About, engine_error};
use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::AttachContainerOptionsBuilder;
use futures::stream::{BoxStream, Stream, StreamExt};
use nexus_core::console::{ConsoleLine, ConsoleStream, LineSplitter};
use nexus_core::runtime::RuntimeError;
use std::collections::VecDeque;

/// Which streams to attach.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streams {
    /// Attach stdin (to write to the process).
    pub stdin: bool,
    /// Attach stdout and stderr (to read from it).
    pub output: bool,
}

/// Attaches to container `id`. Never replays earlier output (`logs=false`): a re-attaching
/// daemon must not see a server's whole history as new lines.
pub(crate) async fn attach(
    docker: &Docker,
    id: &str,
    streams: Streams,
) -> Result<AttachContainerResults, RuntimeError> {
    let options = AttachContainerOptionsBuilder::default()
        .stdin(streams.stdin)
        .stdout(streams.output)
        .stderr(streams.output)
        .stream(true)
        .logs(false)
        .build();
    docker.attach_container(id, Some(options)).await.map_err(|e| engine_error(e, About::Container(id)))
}

/// Turns the attach output (multiplexed stdout/stderr frames of any size) into lines, each
/// stream split by its own [`LineSplitter`] so a partial stdout line is never joined with
/// stderr. Unterminated tails are delivered when the stream ends.
pub(crate) fn lines(
    frames: impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
    id: String,
) -> BoxStream<'static, Result<ConsoleLine, RuntimeError>> {
    struct State<S> {
        frames: S,
        id: String,
        stdout: LineSplitter,
        stderr: LineSplitter,
        ready: VecDeque<Result<ConsoleLine, RuntimeError>>,
        ended: bool,
    }
    let state = State {
        frames: Box::pin(frames),
        id,
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
            match state.frames.next().await {
                Some(Ok(frame)) => {
                    let (stream, bytes) = match frame {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            (ConsoleStream::Stdout, message)
                        }
                        LogOutput::StdErr { message } => (ConsoleStream::Stderr, message),
                        LogOutput::StdIn { .. } => continue,
                    };
                    let splitter = match stream {
                        ConsoleStream::Stdout => &mut state.stdout,
                        ConsoleStream::Stderr => &mut state.stderr,
                    };
                    let lines = splitter.push(&bytes);
                    state.ready.extend(lines.into_iter().map(|text| Ok(ConsoleLine { stream, text })));
                }
                Some(Err(error)) => {
                    state.ended = true;
                    tracing::debug!(container = %state.id, %error, "console stream failed");
                    state.ready.push_back(Err(engine_error(error, About::Container(&state.id))));
                }
                None => {
                    state.ended = true;
                    if let Some(text) = state.stdout.finish() {
                        state.ready.push_back(Ok(ConsoleLine { stream: ConsoleStream::Stdout, text }));
                    }
                    if let Some(text) = state.stderr.finish() {
                        state.ready.push_back(Ok(ConsoleLine { stream: ConsoleStream::Stderr, text }));
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
    use bytes::Bytes;

    fn out(s: &str) -> Result<LogOutput, bollard::errors::Error> {
        Ok(LogOutput::StdOut { message: Bytes::from(s.to_owned()) })
    }
    fn err(s: &str) -> Result<LogOutput, bollard::errors::Error> {
        Ok(LogOutput::StdErr { message: Bytes::from(s.to_owned()) })
    }

    #[tokio::test]
    async fn frames_become_lines_per_stream() {
        let frames = futures::stream::iter(vec![out("a\nb"), err("e1"), out("c\n"), err("\ne2"), out("tail")]);
        let got: Vec<_> = lines(frames, "c1".into()).map(|l| l.expect("line")).collect().await;
        let text = |s: ConsoleStream| got.iter().filter(|l| l.stream == s).map(|l| l.text.as_str()).collect::<Vec<_>>();
        assert_eq!(text(ConsoleStream::Stdout), ["a", "bc", "tail"]);
        assert_eq!(text(ConsoleStream::Stderr), ["e1", "e2"]);
    }

    #[tokio::test]
    async fn an_error_ends_the_stream() {
        let frames = futures::stream::iter(vec![
            out("x\n"),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message: "gone".into() }),
            out("never\n"),
        ]);
        let got: Vec<_> = lines(frames, "c1".into()).collect().await;
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[1], Err(RuntimeError::ContainerNotFound(id)) if id == "c1"));
    }
}

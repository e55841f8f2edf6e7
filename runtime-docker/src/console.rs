//! Console attachment: Docker's attach API (an HTTP connection upgraded to a raw stream)
//! turned into [`ConsoleLine`]s.

use crate::error::{About, engine_error};
use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::AttachContainerOptionsBuilder;
use futures::stream::{BoxStream, Stream, StreamExt};
use nexus_core::console::{ConsoleLine, ConsoleStream};
use nexus_core::runtime::RuntimeError;
use nexus_engine::console::chunk_lines;

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
/// stream split on its own (see [`chunk_lines`]).
pub(crate) fn lines(
    frames: impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
    id: String,
) -> BoxStream<'static, Result<ConsoleLine, RuntimeError>> {
    let chunks = frames.filter_map(move |frame| {
        let chunk = match frame {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                Some(Ok((ConsoleStream::Stdout, message)))
            }
            Ok(LogOutput::StdErr { message }) => Some(Ok((ConsoleStream::Stderr, message))),
            Ok(LogOutput::StdIn { .. }) => None,
            Err(error) => {
                tracing::debug!(container = %id, %error, "console stream failed");
                Some(Err(engine_error(error, About::Container(&id))))
            }
        };
        futures::future::ready(chunk)
    });
    chunk_lines(chunks)
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

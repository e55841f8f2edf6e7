//! Console: input, output streams, bursts.

use crate::runtime::Ctx;
use crate::runtime::context::{LINE_TIMEOUT, expect_line, read_to_end, texts, write_line};
use nexus_core::console::ConsoleStream;
use std::time::Duration;

/// A line written to the console input reaches the process's stdin. A second attachment
/// (a restarted daemon re-attaching) can write and sees the output too, and closing an
/// attachment does not close the process's stdin.
pub async fn console_input_reaches_the_process(ctx: Ctx) {
    let spec = ctx.spec(
        r#"echo ready; while read -r line; do echo "got: $line"; [ "$line" = bye ] && exit 0; done; echo stdin-closed"#,
    );
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;
    write_line(&mut console.input, "hello there").await;
    expect_line(&mut console.output, "got: hello there").await;

    let mut second = ctx.runtime.attach(&id).await.expect("second attach");
    write_line(&mut second.input, "again").await;
    expect_line(&mut second.output, "got: again").await;
    expect_line(&mut console.output, "got: again").await;
    drop(second);

    write_line(&mut console.input, "still open").await;
    expect_line(&mut console.output, "got: still open").await;
    write_line(&mut console.input, "bye").await;
    let rest = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    assert_eq!(texts(&rest, ConsoleStream::Stdout), ["got: bye"], "stdin stayed open until bye");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
}

/// stdout and stderr lines arrive as separate streams, each in order, and an unterminated
/// last line is delivered when the process exits.
pub async fn console_separates_stdout_and_stderr(ctx: Ctx) {
    let spec =
        ctx.spec("echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; printf 'crlf\\r\\n'; printf no-newline");
    let (id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    assert_eq!(texts(&lines, ConsoleStream::Stdout), ["out-1", "out-2", "crlf", "no-newline"]);
    assert_eq!(texts(&lines, ConsoleStream::Stderr), ["err-1", "err-2"]);
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
}

/// A burst of 100,000 lines arrives complete and in order, line by line.
pub async fn console_burst_loses_no_line(ctx: Ctx) {
    const LINES: usize = 100_000;
    let spec = ctx.spec(&format!("seq 1 {LINES}"));
    let (id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, Duration::from_secs(90)).await;
    let out = texts(&lines, ConsoleStream::Stdout);
    if let Some((index, line)) = out.iter().enumerate().find(|(i, line)| **line != (i + 1).to_string()) {
        panic!("line {} is {line:?}, expected {} ({} lines received)", index + 1, index + 1, out.len());
    }
    assert_eq!(out.len(), LINES, "lines received");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
}

/// With [`ContainerSpec::tty`](nexus_core::runtime::ContainerSpec::tty) the process runs on a
/// terminal, as under Wings: stdin and stdout are a TTY and `TERM` is set (a server started
/// with `--terminal` needs both), stderr arrives merged into stdout, lines carry no `\r`,
/// console input reaches the process (and is echoed by the terminal), and a second
/// attachment reads and writes as well.
pub async fn tty_container_runs_on_a_terminal(ctx: Ctx) {
    let mut spec = ctx.spec(
        r#"[ -t 0 ] && [ -t 1 ] && echo on-a-terminal; echo "term=$TERM"; echo to-stderr >&2; echo ready; while read -r line; do echo "got: $line"; [ "$line" = bye ] && exit 0; done"#,
    );
    spec.tty = true;
    let (id, mut console) = ctx.run_attached(&spec).await;
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(LINE_TIMEOUT, futures::StreamExt::next(&mut console.output))
            .await
            .unwrap_or_else(|_| panic!("no `ready` line; saw {seen:?}"))
            .expect("output ended early")
            .expect("console line");
        assert_eq!(line.stream, ConsoleStream::Stdout, "a terminal has one output stream: {line:?}");
        assert!(!line.text.contains('\r'), "a carriage return in {:?}", line.text);
        let ready = line.text == "ready";
        seen.push(line.text);
        if ready {
            break;
        }
    }
    assert!(seen.iter().any(|l| l == "on-a-terminal"), "stdin and stdout are not a terminal: {seen:?}");
    let term = seen.iter().find_map(|l| l.strip_prefix("term=")).unwrap_or_default();
    assert!(!term.is_empty(), "TERM is not set: {seen:?}");
    assert!(seen.iter().any(|l| l == "to-stderr"), "stderr is not merged into the output: {seen:?}");
    write_line(&mut console.input, "hello").await;
    expect_line(&mut console.output, "got: hello").await;
    let mut second = ctx.runtime.attach(&id).await.expect("second attach");
    write_line(&mut second.input, "again").await;
    expect_line(&mut second.output, "got: again").await;
    drop(second);
    // A stop by console command writes through an attachment of its own.
    let stop = nexus_core::model::StopMethod::Command("bye".into());
    let outcome = ctx.runtime.stop(&id, &stop, Duration::from_secs(10)).await.expect("stop");
    let rest = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    assert!(
        outcome.graceful && outcome.exit.code == 0,
        "the stop command did not reach the terminal: {outcome:?}; output after it: {rest:?}"
    );
}

/// `output_since_start` returns what the process printed since it started, from the engine's
/// log, oldest first, both streams, at most `max_lines` (the last ones): what a re-adopting
/// agent replays and looks for the done line in.
pub async fn output_since_start_reads_the_log(ctx: Ctx) {
    let spec = ctx
        .spec("i=1; while [ $i -le 50 ]; do echo line-$i; i=$((i+1)); done; echo to-stderr >&2; echo ready; sleep 600");
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;
    // The engine writes its log apart from the live stream (Podman's conmon), so the log may
    // trail what an attached console already saw by a moment.
    let deadline = tokio::time::Instant::now() + LINE_TIMEOUT;
    let all = loop {
        let all = ctx.runtime.output_since_start(&id, 1000).await.expect("output_since_start");
        if all.len() >= 52 || tokio::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(all.len(), 52, "{all:?}");
    // Each stream in order; between the two, engines do not promise an order.
    let mut stdout: Vec<String> = (1..=50).map(|i| format!("line-{i}")).collect();
    stdout.push("ready".into());
    assert_eq!(texts(&all, ConsoleStream::Stdout), stdout);
    assert_eq!(texts(&all, ConsoleStream::Stderr), ["to-stderr"]);
    let last = ctx.runtime.output_since_start(&id, 5).await.expect("output_since_start");
    let last: Vec<&str> = last.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(last.len(), 5, "{last:?}");
    for expected in ["line-49", "line-50", "ready"] {
        assert!(last.contains(&expected), "{last:?}");
    }
    drop(console);
    ctx.runtime.kill(&id, nexus_core::model::StopSignal::Kill).await.expect("kill");
}

/// As under Wings, a server container's host name is its server's id.
pub async fn hostname_is_the_server_id(ctx: Ctx) {
    let spec = ctx.spec("hostname");
    let (id, mut console) = ctx.run_attached(&spec).await;
    let lines = read_to_end(&mut console.output, LINE_TIMEOUT).await;
    assert_eq!(texts(&lines, ConsoleStream::Stdout), [spec.server.to_string()]);
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0);
}

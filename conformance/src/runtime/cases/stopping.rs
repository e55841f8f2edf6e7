//! Stop, kill, wait.

use crate::runtime::Ctx;
use crate::runtime::context::expect_line;
use nexus_core::model::{StopMethod, StopSignal};
use std::time::{Duration, Instant};

/// Generous stop timeout for processes that do stop; they should take well under a second.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// `StopMethod::Command` writes the line to the console; a process that exits on it stops
/// gracefully, with its own exit code, without waiting for the timeout.
pub async fn stop_by_console_command(ctx: Ctx) {
    let spec =
        ctx.spec(r#"echo ready; while read -r line; do if [ "$line" = stop ]; then echo stopping; exit 7; fi; done"#);
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;
    let started = Instant::now();
    let outcome = ctx.runtime.stop(&id, &StopMethod::Command("stop".into()), STOP_TIMEOUT).await.expect("stop");
    assert!(outcome.graceful, "the process exited on its own: {outcome:?}");
    assert_eq!(outcome.exit.code, 7, "exit code of the process");
    assert!(!outcome.exit.oom_killed);
    assert!(started.elapsed() < STOP_TIMEOUT / 2, "stop returned after {:?}", started.elapsed());
    expect_line(&mut console.output, "stopping").await;
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 7);
}

/// `StopMethod::Signal` delivers the signal to the server process (through init); a process
/// trapping it exits gracefully with its own code. Checked for SIGINT and SIGTERM.
pub async fn stop_by_signal(ctx: Ctx) {
    for (signal, name) in [(StopSignal::Interrupt, "INT"), (StopSignal::Terminate, "TERM")] {
        let spec = ctx.spec(&format!(
            "trap 'echo caught-{name}; exit 5' {name}; echo ready; while :; do sleep 1 & wait $!; done"
        ));
        let (id, mut console) = ctx.run_attached(&spec).await;
        expect_line(&mut console.output, "ready").await;
        let started = Instant::now();
        let outcome = ctx.runtime.stop(&id, &StopMethod::Signal(signal), STOP_TIMEOUT).await.expect("stop");
        assert!(outcome.graceful, "SIG{name} was trapped and the process exited: {outcome:?}");
        assert_eq!(outcome.exit.code, 5, "exit code after SIG{name}");
        assert!(started.elapsed() < STOP_TIMEOUT / 2, "stop returned after {:?}", started.elapsed());
        expect_line(&mut console.output, &format!("caught-{name}")).await;
    }
}

/// A stop the process ignores ends in a kill once the timeout has passed: `graceful: false`,
/// exit code 137. Checked for an ignored SIGTERM and for a console command nobody reads.
pub async fn stop_ignored_is_killed_after_timeout(ctx: Ctx) {
    let timeout = Duration::from_secs(2);
    let cases = [
        ("trap '' TERM; echo ready; while :; do sleep 1; done", StopMethod::Signal(StopSignal::Terminate)),
        ("echo ready; while :; do sleep 1; done", StopMethod::Command("stop".into())),
    ];
    for (script, method) in cases {
        let spec = ctx.spec(script);
        let (id, mut console) = ctx.run_attached(&spec).await;
        expect_line(&mut console.output, "ready").await;
        let started = Instant::now();
        let outcome = ctx.runtime.stop(&id, &method, timeout).await.expect("stop");
        let took = started.elapsed();
        assert!(!outcome.graceful, "{method:?} was ignored, so the process was killed: {outcome:?}");
        assert_eq!(outcome.exit.code, 137, "killed by SIGKILL after {method:?}");
        assert!(took >= timeout, "killed after {took:?}, before the {timeout:?} timeout");
        assert!(took < timeout + Duration::from_secs(15), "stop took {took:?}");
    }
}

/// Stopping a container whose process already exited returns that exit at once, graceful.
pub async fn stop_of_exited_container_reports_its_exit(ctx: Ctx) {
    let id = ctx.run(&ctx.spec("exit 3")).await;
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 3);
    for method in [StopMethod::Signal(StopSignal::Terminate), StopMethod::Command("stop".into())] {
        let started = Instant::now();
        let outcome = ctx.runtime.stop(&id, &method, STOP_TIMEOUT).await.expect("stop of an exited container");
        assert!(outcome.graceful, "{method:?}: {outcome:?}");
        assert_eq!(outcome.exit.code, 3, "{method:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{method:?} took {:?}", started.elapsed());
    }
}

/// `kill` sends the signal now: SIGKILL ends the process with 137, an untrapped SIGINT with
/// 130, and a trapped SIGUSR1 reaches the process, which keeps running.
pub async fn kill_sends_the_signal(ctx: Ctx) {
    let spec = ctx.spec("trap 'echo got-usr1' USR1; echo ready; while :; do sleep 1 & wait $!; done");
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;
    ctx.runtime.kill(&id, StopSignal::User1).await.expect("kill SIGUSR1");
    expect_line(&mut console.output, "got-usr1").await;
    ctx.runtime.kill(&id, StopSignal::Kill).await.expect("kill SIGKILL");
    let exit = ctx.runtime.wait(&id).await.expect("wait");
    assert_eq!(exit.code, 137, "SIGKILL");

    let spec = ctx.spec("echo ready; exec sleep 1000");
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;
    ctx.runtime.kill(&id, StopSignal::Interrupt).await.expect("kill SIGINT");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 130, "untrapped SIGINT");
}

/// `wait` returns the process's real exit code; waiting again returns it again; an exited
/// container starts again and its next exit is waited for.
pub async fn wait_returns_real_exit_code(ctx: Ctx) {
    let id = ctx.run(&ctx.spec("sleep 1; exit 42")).await;
    let exit = ctx.runtime.wait(&id).await.expect("wait");
    assert_eq!(exit.code, 42, "exit code");
    assert!(!exit.oom_killed, "not OOM-killed");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait again").code, 42, "waiting again");
    ctx.runtime.start(&id).await.expect("restart an exited container");
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait after restart").code, 42, "after restart");

    let id = ctx.run(&ctx.spec("exit 0")).await;
    assert_eq!(ctx.runtime.wait(&id).await.expect("wait").code, 0, "success");
}

//! A scripted, in-memory [`Runtime`] for the agent's tests: no engine, no processes.
//!
//! Each container holds a pretend process whose behaviour the test scripts: lines it prints
//! ([`FakeRuntime::print`], plus [`Program::boot`] at every start), when it exits
//! ([`FakeRuntime::exit`]), what it does with its input ([`Program::quits_on`]). Input the
//! agent writes is kept ([`FakeRuntime::stdin`]); every runtime call is logged in order
//! ([`FakeRuntime::calls`]), the calls that change containers twice (begin and end), so a
//! test can see whether two of them overlapped.

#![allow(dead_code, reason = "each test uses a part of the fake")]

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use nexus_core::console::{ConsoleLine, ConsoleStream};
use nexus_core::ids::ServerId;
use nexus_core::model::{StopMethod, StopSignal};
use nexus_core::runtime::{
    ConsoleIo, ContainerId, ContainerSpec, ExitStatus, InstallOutcome, InstallSpec, LiveOutput, ManagedContainer,
    ResourceStats, Runtime, RuntimeError, StopOutcome,
};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, watch};

/// Exit code of a process killed with `SIGKILL`.
pub const KILLED: i64 = 137;
/// Lines [`Runtime::output_since_start`] can return at most (an engine's log is bounded too).
const LOG_LINES: usize = 10_000;

/// How the pretend process of a server behaves (the same for each of its containers).
#[derive(Clone, Debug)]
pub struct Program {
    /// Printed, in order, as soon as the process starts.
    pub boot: Vec<String>,
    /// An input line on which the process exits 0 (the egg's stop command); `None`: never.
    pub quits_on: Option<String>,
    /// Catchable signals are ignored (only `SIGKILL` ends it).
    pub ignores_signals: bool,
}

impl Default for Program {
    fn default() -> Self {
        Self { boot: Vec::new(), quits_on: Some("stop".into()), ignores_signals: false }
    }
}

impl Program {
    /// A program printing `lines` at each start, quitting on `stop`.
    pub fn booting(lines: &[&str]) -> Self {
        Self { boot: lines.iter().map(|l| (*l).to_owned()).collect(), ..Self::default() }
    }
}

/// One logged runtime call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Method name (`create`, `start`, `stop`, ...).
    pub op: &'static str,
    /// The server it concerned, when known.
    pub server: Option<ServerId>,
    /// The container it concerned (for `create`: the one it creates).
    pub container: Option<String>,
    /// True for the entry marking the end of a container-changing call.
    pub end: bool,
}

impl Call {
    /// `op container`, e.g. `start c2`.
    pub fn short(&self) -> String {
        match &self.container {
            Some(c) => format!("{} {c}", self.op),
            None => self.op.to_owned(),
        }
    }

    /// Calls that change a container (and are logged at begin and end).
    pub fn changes_containers(&self) -> bool {
        matches!(self.op, "create" | "start" | "stop" | "kill" | "destroy")
    }
}

struct Container {
    spec: ContainerSpec,
    running: bool,
    exit: Option<ExitStatus>,
    /// Bumped at every exit, with the exit status.
    exits: watch::Sender<(u64, Option<ExitStatus>)>,
    /// Output streams of the attached consoles; dropped (so the streams end) at exit.
    attached: Vec<mpsc::UnboundedSender<ConsoleLine>>,
    /// Printed since the process last started, for `output_since_start`.
    since_start: Vec<ConsoleLine>,
    /// Unfinished input line.
    pending_input: Vec<u8>,
}

impl Container {
    fn print(&mut self, text: &str) {
        let line = ConsoleLine { stream: ConsoleStream::Stdout, text: text.to_owned() };
        self.attached.retain(|tx| tx.send(line.clone()).is_ok());
        self.since_start.push(line);
        if self.since_start.len() > LOG_LINES {
            self.since_start.remove(0);
        }
    }

    fn exit(&mut self, code: i64) {
        if !self.running {
            return;
        }
        let status = ExitStatus { code, oom_killed: false };
        self.running = false;
        self.exit = Some(status);
        self.attached.clear();
        self.exits.send_modify(|(n, exit)| {
            *n += 1;
            *exit = Some(status);
        });
    }
}

#[derive(Default)]
struct World {
    containers: HashMap<ContainerId, Container>,
    next_container: u64,
    programs: HashMap<ServerId, Program>,
    /// Lines every server's process received on its input, by server.
    stdin: HashMap<ServerId, Vec<String>>,
    install_outcomes: HashMap<ServerId, (i64, Vec<String>)>,
    installs: Vec<InstallSpec>,
    latency: Duration,
}

impl World {
    fn program(&self, server: ServerId) -> Program {
        self.programs.get(&server).cloned().unwrap_or_default()
    }

    /// The container of `server` (the agent keeps at most one; the newest if not).
    fn current(&mut self, server: ServerId) -> Option<&mut Container> {
        let id = self
            .containers
            .iter()
            .filter(|(_, c)| c.spec.server == server)
            .max_by_key(|(id, _)| container_number(id))
            .map(|(id, _)| id.clone())?;
        self.containers.get_mut(&id)
    }

    /// Bytes reaching the process's input: complete lines are recorded and acted on.
    fn feed_input(&mut self, id: &ContainerId, bytes: &[u8]) -> std::io::Result<()> {
        let Some(container) = self.containers.get_mut(id).filter(|c| c.running) else {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the process is not running"));
        };
        container.pending_input.extend_from_slice(bytes);
        let server = container.spec.server;
        let mut lines = Vec::new();
        while let Some(end) = container.pending_input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = container.pending_input.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        let quits_on = self.program(server).quits_on;
        for line in lines {
            self.stdin.entry(server).or_default().push(line.clone());
            if quits_on.as_deref() == Some(line.as_str())
                && let Some(container) = self.containers.get_mut(id)
            {
                container.exit(0);
            }
        }
        Ok(())
    }
}

fn container_number(id: &ContainerId) -> u64 {
    id.0.trim_start_matches('c').parse().unwrap_or(0)
}

fn signal_number(signal: StopSignal) -> i64 {
    match signal {
        StopSignal::Hangup => 1,
        StopSignal::Interrupt => 2,
        StopSignal::Quit => 3,
        StopSignal::Kill => 9,
        StopSignal::User1 => 10,
        StopSignal::User2 => 12,
        StopSignal::Terminate => 15,
    }
}

fn not_found(id: &ContainerId) -> RuntimeError {
    RuntimeError::ContainerNotFound(id.0.clone())
}

#[derive(Default)]
struct Shared {
    world: Mutex<World>,
    calls: Mutex<Vec<Call>>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// See the module docs. Containers are named `c1`, `c2`, ... in creation order.
pub struct FakeRuntime {
    shared: Arc<Shared>,
    /// `true` while installs are held back ([`hold_installs`](Self::hold_installs)).
    installs_held: watch::Sender<bool>,
}

impl FakeRuntime {
    /// An empty engine.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { shared: Arc::new(Shared::default()), installs_held: watch::Sender::new(false) })
    }

    // ---- scripting ----

    /// How `server`'s process behaves from its next start on.
    pub fn program(&self, server: ServerId, program: Program) {
        self.shared.world().programs.insert(server, program);
    }

    /// Every container-changing call takes this long (so that overlapping calls would show).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.world().latency = latency;
    }

    /// `server`'s running process prints `text`. Panics when it does not run.
    pub fn print(&self, server: ServerId, text: &str) {
        let mut world = self.shared.world();
        let container = world.current(server).filter(|c| c.running);
        container.unwrap_or_else(|| panic!("no running process of {server} to print {text:?}")).print(text);
    }

    /// `server`'s running process exits with `code` on its own (a crash when non-zero).
    /// Panics when it does not run.
    pub fn exit(&self, server: ServerId, code: i64) {
        let mut world = self.shared.world();
        let container = world.current(server).filter(|c| c.running);
        container.unwrap_or_else(|| panic!("no running process of {server} to exit")).exit(code);
    }

    /// Every container of `server` disappears behind the agent's back (`docker rm -f`).
    pub fn vanish(&self, server: ServerId) {
        let mut world = self.shared.world();
        world.containers.retain(|_, c| {
            if c.spec.server == server {
                c.exit(KILLED);
            }
            c.spec.server != server
        });
    }

    /// The next install of `server` exits with `code` after printing `lines`.
    pub fn script_install(&self, server: ServerId, code: i64, lines: &[&str]) {
        let lines = lines.iter().map(|l| (*l).to_owned()).collect();
        self.shared.world().install_outcomes.insert(server, (code, lines));
    }

    /// Installs wait (in `run_install`) until [`release_installs`](Self::release_installs).
    pub fn hold_installs(&self) {
        self.installs_held.send_replace(true);
    }

    /// Lets held installs go on.
    pub fn release_installs(&self) {
        self.installs_held.send_replace(false);
    }

    // ---- observing ----

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The calls concerning `server` (begin entries only) as `op container`, from the
    /// `skip`-th call of the whole log on.
    pub fn ops_since(&self, server: ServerId, skip: usize) -> Vec<String> {
        self.calls().into_iter().skip(skip).filter(|c| c.server == Some(server) && !c.end).map(|c| c.short()).collect()
    }

    /// [`ops_since`](Self::ops_since) the beginning.
    pub fn ops(&self, server: ServerId) -> Vec<String> {
        self.ops_since(server, 0)
    }

    /// The container-changing calls of `server`, begin entries only.
    pub fn changes(&self, server: ServerId) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.server == Some(server) && !c.end && c.changes_containers())
            .map(|c| c.short())
            .collect()
    }

    /// `(container, running)` of every container of `server`, oldest first.
    pub fn containers(&self, server: ServerId) -> Vec<(String, bool)> {
        let world = self.shared.world();
        let mut found: Vec<(String, bool)> = world
            .containers
            .iter()
            .filter(|(_, c)| c.spec.server == server)
            .map(|(id, c)| (id.0.clone(), c.running))
            .collect();
        found.sort_by_key(|(id, _)| container_number(&ContainerId(id.clone())));
        found
    }

    /// The spec the container of `server` was created with, if it has one.
    pub fn spec_of(&self, server: ServerId) -> Option<ContainerSpec> {
        self.shared.world().current(server).map(|c| c.spec.clone())
    }

    /// Lines `server`'s processes read from their input, over all its containers.
    pub fn stdin(&self, server: ServerId) -> Vec<String> {
        self.shared.world().stdin.get(&server).cloned().unwrap_or_default()
    }

    /// Every install run, in order.
    pub fn installs(&self) -> Vec<InstallSpec> {
        self.shared.world().installs.clone()
    }

    // ---- internals ----

    fn log(&self, op: &'static str, server: Option<ServerId>, container: Option<&ContainerId>, end: bool) {
        let call = Call { op, server, container: container.map(|c| c.0.clone()), end };
        self.shared.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(call);
    }

    fn server_of(&self, id: &ContainerId) -> Option<ServerId> {
        self.shared.world().containers.get(id).map(|c| c.spec.server)
    }

    /// Logs the begin of a container-changing call on `id`, then waits the latency.
    async fn begin(&self, op: &'static str, id: &ContainerId) -> Option<ServerId> {
        let server = self.server_of(id);
        self.log(op, server, Some(id), false);
        let latency = self.shared.world().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        server
    }
}

/// The input of one attached console: what is written reaches the container's process.
struct FakeInput {
    shared: Arc<Shared>,
    id: ContainerId,
}

impl AsyncWrite for FakeInput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.shared.world().feed_input(&self.id, buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn image_exists(&self, _image: &str) -> Result<bool, RuntimeError> {
        Ok(true)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let id = {
            let mut world = self.shared.world();
            world.next_container += 1;
            ContainerId(format!("c{}", world.next_container))
        };
        self.log("create", Some(spec.server), Some(&id), false);
        let latency = self.shared.world().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let created = {
            let mut world = self.shared.world();
            if world.containers.values().any(|c| c.spec.server == spec.server) {
                Err(RuntimeError::Conflict(format!("a container of {} exists", spec.server)))
            } else {
                let container = Container {
                    spec: spec.clone(),
                    running: false,
                    exit: None,
                    exits: watch::Sender::new((0, None)),
                    attached: Vec::new(),
                    since_start: Vec::new(),
                    pending_input: Vec::new(),
                };
                world.containers.insert(id.clone(), container);
                Ok(id.clone())
            }
        };
        self.log("create", Some(spec.server), Some(&id), true);
        created
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let server = self.begin("start", id).await;
        let started = {
            let mut world = self.shared.world();
            let boot = server.map(|s| world.program(s).boot).unwrap_or_default();
            match world.containers.get_mut(id) {
                None => Err(not_found(id)),
                Some(c) if c.running => Ok(()),
                Some(c) => {
                    c.running = true;
                    c.exit = None;
                    // Forgotten without waking anyone: nothing exited.
                    c.exits.send_if_modified(|(_, exit)| {
                        *exit = None;
                        false
                    });
                    c.since_start.clear();
                    c.pending_input.clear();
                    for line in &boot {
                        c.print(line);
                    }
                    Ok(())
                }
            }
        };
        self.log("start", server, Some(id), true);
        started
    }

    async fn stop(
        &self,
        id: &ContainerId,
        method: &StopMethod,
        timeout: Duration,
    ) -> Result<StopOutcome, RuntimeError> {
        let server = self.begin("stop", id).await;
        let asked = {
            let mut world = self.shared.world();
            match world.containers.get(id) {
                None => Err(not_found(id)),
                Some(c) if !c.running => {
                    let exit = c.exit.unwrap_or(ExitStatus { code: 0, oom_killed: false });
                    Ok(Err(StopOutcome { exit, graceful: true }))
                }
                Some(c) => {
                    // Subscribed before asking, so an exit right away is not missed.
                    let exits = c.exits.subscribe();
                    let ignores_signals = world.program(c.spec.server).ignores_signals;
                    match method {
                        StopMethod::Command(command) => {
                            let _ = world.feed_input(id, format!("{command}\n").as_bytes());
                        }
                        StopMethod::Signal(signal) => {
                            if *signal == StopSignal::Kill || !ignores_signals {
                                if let Some(c) = world.containers.get_mut(id) {
                                    c.exit(128 + signal_number(*signal));
                                }
                            }
                        }
                    }
                    Ok(Ok(exits))
                }
            }
        };
        let outcome = match asked {
            Err(e) => Err(e),
            Ok(Err(already)) => Ok(already),
            Ok(Ok(mut exits)) => {
                match tokio::time::timeout(timeout, exits.wait_for(|(_, exit)| exit.is_some())).await {
                    Ok(Ok(exited)) => Ok(StopOutcome {
                        exit: exited.1.unwrap_or(ExitStatus { code: 0, oom_killed: false }),
                        graceful: true,
                    }),
                    // Removed meanwhile.
                    Ok(Err(_)) => Err(not_found(id)),
                    Err(_) => {
                        let mut world = self.shared.world();
                        match world.containers.get_mut(id) {
                            Some(c) => {
                                c.exit(KILLED);
                                Ok(StopOutcome {
                                    exit: ExitStatus { code: KILLED, oom_killed: false },
                                    graceful: false,
                                })
                            }
                            None => Err(not_found(id)),
                        }
                    }
                }
            }
        };
        self.log("stop", server, Some(id), true);
        outcome
    }

    async fn kill(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError> {
        let server = self.begin("kill", id).await;
        let killed = {
            let mut world = self.shared.world();
            let ignores = server.is_some_and(|s| world.program(s).ignores_signals);
            match world.containers.get_mut(id) {
                None => Err(not_found(id)),
                Some(c) if !c.running => Err(RuntimeError::Conflict(format!("container {} is not running", id.0))),
                Some(c) => {
                    if signal == StopSignal::Kill || !ignores {
                        c.exit(128 + signal_number(signal));
                    }
                    Ok(())
                }
            }
        };
        self.log("kill", server, Some(id), true);
        killed
    }

    async fn destroy(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let server = self.begin("destroy", id).await;
        {
            let mut world = self.shared.world();
            if let Some(mut c) = world.containers.remove(id) {
                c.exit(KILLED);
            }
        }
        self.log("destroy", server, Some(id), true);
        Ok(())
    }

    async fn attach(&self, id: &ContainerId) -> Result<ConsoleIo, RuntimeError> {
        let server = self.server_of(id);
        self.log("attach", server, Some(id), false);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut world = self.shared.world();
            let c = world.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            // An exited process prints nothing more: its stream ends at once.
            if c.running || c.exit.is_none() {
                c.attached.push(tx);
            }
        }
        let output = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|line| (Ok(line), rx)) }).boxed();
        Ok(ConsoleIo { input: Box::pin(FakeInput { shared: self.shared.clone(), id: id.clone() }), output })
    }

    async fn output_since_start(&self, id: &ContainerId, max_lines: usize) -> Result<Vec<ConsoleLine>, RuntimeError> {
        self.log("output_since_start", self.server_of(id), Some(id), false);
        let world = self.shared.world();
        let c = world.containers.get(id).ok_or_else(|| not_found(id))?;
        let skip = c.since_start.len().saturating_sub(max_lines);
        Ok(c.since_start[skip..].to_vec())
    }

    async fn stats(
        &self,
        id: &ContainerId,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        self.log("stats", self.server_of(id), Some(id), false);
        Ok(stream::empty().boxed())
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError> {
        self.log("wait", self.server_of(id), Some(id), false);
        let mut exits = {
            let world = self.shared.world();
            let c = world.containers.get(id).ok_or_else(|| not_found(id))?;
            if let (false, Some(exit)) = (c.running, c.exit) {
                return Ok(exit);
            }
            c.exits.subscribe()
        };
        // Removal drops the sender; the exit it reported before is still seen.
        match exits.changed().await {
            Ok(()) => {}
            Err(_) if exits.borrow().1.is_some() => {}
            Err(_) => return Err(not_found(id)),
        }
        let exit = exits.borrow_and_update().1;
        exit.ok_or_else(|| not_found(id))
    }

    async fn run_install(&self, spec: &InstallSpec, live: Option<LiveOutput>) -> Result<InstallOutcome, RuntimeError> {
        self.log("run_install", Some(spec.server), None, false);
        let mut held = self.installs_held.subscribe();
        let _ = held.wait_for(|held| !*held).await;
        let (code, lines) = {
            let mut world = self.shared.world();
            world.installs.push(spec.clone());
            world.install_outcomes.remove(&spec.server).unwrap_or((0, Vec::new()))
        };
        let mut log = String::new();
        for text in lines {
            if let Some(live) = &live {
                live.offer(&ConsoleLine { stream: ConsoleStream::Stdout, text: text.clone() });
            }
            log.push_str(&text);
            log.push('\n');
        }
        self.log("run_install", Some(spec.server), None, true);
        Ok(InstallOutcome { exit_code: code, log })
    }

    async fn remove_install(&self, server: ServerId) -> Result<(), RuntimeError> {
        self.log("remove_install", Some(server), None, false);
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        self.log("list_managed", None, None, false);
        let world = self.shared.world();
        let mut listed: Vec<ManagedContainer> = world
            .containers
            .iter()
            .map(|(id, c)| ManagedContainer {
                id: id.clone(),
                server: c.spec.server,
                image: c.spec.image.clone(),
                running: c.running,
            })
            .collect();
        listed.sort_by_key(|c| container_number(&c.id));
        Ok(listed)
    }
}

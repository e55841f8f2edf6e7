//! Helpers the unit tests of several modules share.

/// A thread stack small enough that a parser recursing once per level of a 100,000-deep
/// input overflows it (which aborts the test binary).
pub(crate) const SMALL_STACK: usize = 256 * 1024;

/// The stack of the daemon's blocking threads, where patching and importing run.
pub(crate) const DAEMON_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with `stack` bytes of stack.
pub(crate) fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(stack).spawn(f).unwrap().join().unwrap()
}

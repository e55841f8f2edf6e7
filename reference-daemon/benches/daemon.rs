//! Daemon benchmarks (placeholder while the agent lands).
fn main() {}

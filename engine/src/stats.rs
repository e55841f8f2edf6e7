//! CPU percent from the counters engines report.
//!
//! Engines report cumulative counters: the CPU time the container used, and a reference
//! clock (Docker: the host's total CPU time over all cores; Podman: wall-clock time). The
//! share of the reference consumed between two samples, scaled by how many cores the
//! reference spans, is the CPU use in percent of one core.

/// Cumulative counters of one sample, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuCounters {
    /// CPU time used by the container.
    pub used: u64,
    /// The reference clock.
    pub reference: u64,
}

/// Remembers the previous sample's counters and turns each new sample into CPU percent.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTracker {
    previous: Option<CpuCounters>,
}

impl CpuTracker {
    /// A tracker with no sample yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPU percent of one core between the previous counters (or `fallback`, the engine's own
    /// previous reading, for the first sample) and `now`; `reference_cores` is how many cores
    /// the reference clock spans (1 for wall-clock time). 0 when there is no earlier sample or
    /// a counter went backwards (a restart). Samples without counters leave the tracker as is.
    pub fn percent(&mut self, now: Option<CpuCounters>, fallback: Option<CpuCounters>, reference_cores: u64) -> f64 {
        let before = self.previous.or(fallback);
        let percent = match (before, now) {
            (Some(before), Some(now)) if now.reference > before.reference && now.used >= before.used => {
                let used = (now.used - before.used) as f64;
                let reference = (now.reference - before.reference) as f64;
                used / reference * reference_cores.max(1) as f64 * 100.0
            }
            _ => 0.0,
        };
        if now.is_some() {
            self.previous = now;
        }
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_one_core_from_deltas() {
        let mut tracker = CpuTracker::new();
        let at = |used, reference| Some(CpuCounters { used, reference });
        assert_eq!(tracker.percent(at(1_000, 10_000), None, 2), 0.0, "no delta yet");
        // Half of a 2-core reference is one full core.
        assert!((tracker.percent(at(6_000, 20_000), None, 2) - 100.0).abs() < 1e-9);
        // Wall clock: a quarter of the elapsed time is 25 %.
        assert!((tracker.percent(at(8_500, 30_000), None, 1) - 25.0).abs() < 1e-9);
        assert_eq!(tracker.percent(None, None, 1), 0.0);
        assert_eq!(tracker.percent(at(0, 40_000), None, 1), 0.0, "counter reset");
        let mut fresh = CpuTracker::new();
        assert!((fresh.percent(at(2_000, 2_000), at(1_000, 1_000), 1) - 100.0).abs() < 1e-9, "engine's previous");
    }
}

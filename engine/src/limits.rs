//! [`ServerLimits`] in the units container engines use.
//!
//! Docker's `HostConfig`, Podman's spec and inspect output, and the kernel's cgroup files all
//! count memory in bytes, swap as memory + swap (`-1` unlimited), CPU as a CFS quota over a
//! period in microseconds, pids as a count and block-IO weight as 10..=1000, so one conversion
//! serves every engine.

use nexus_core::model::ServerLimits;
use nexus_core::runtime::RuntimeError;

/// CFS period for CPU quotas: 100 ms, the kernel's default, so `quota = percent * 1000`.
pub const CPU_PERIOD_US: i64 = 100_000;
const MIB: i64 = 1024 * 1024;

/// Limits in engine units; `None` is "not limited" (or, read back, "not recorded").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineLimits {
    /// Memory, bytes.
    pub memory: Option<i64>,
    /// Memory + swap, bytes; `-1` lifts the swap limit.
    pub memory_swap: Option<i64>,
    /// CFS period, µs.
    pub cpu_period: Option<i64>,
    /// CFS quota per period, µs.
    pub cpu_quota: Option<i64>,
    /// CPUs × 10⁹ (Docker's `--cpus`); only read back, never set by Nexus.
    pub nano_cpus: Option<i64>,
    /// Processes and threads.
    pub pids: Option<i64>,
    /// Block-IO weight, 10..=1000.
    pub io_weight: Option<u16>,
}

impl EngineLimits {
    /// The engine values for `limits`; out-of-range values are [`RuntimeError::InvalidSpec`].
    /// `disk_mb` is not a container limit (the data directory is a bind mount, whose size the
    /// node agent watches, as Wings does) and is left out.
    pub fn from_limits(limits: &ServerLimits) -> Result<Self, RuntimeError> {
        let invalid = |what: &str| RuntimeError::InvalidSpec(format!("{what} out of range: {limits:?}"));
        let mut engine = Self::default();
        if limits.memory_mb > 0 {
            let memory = i64::try_from(limits.memory_mb)
                .ok()
                .and_then(|mb| mb.checked_mul(MIB))
                .ok_or_else(|| invalid("memory"))?;
            engine.memory = Some(memory);
            engine.memory_swap = Some(match limits.swap_mb {
                -1 => -1,
                0 => memory,
                swap if swap > 0 => {
                    swap.checked_mul(MIB).and_then(|s| s.checked_add(memory)).ok_or_else(|| invalid("swap"))?
                }
                _ => return Err(invalid("swap")),
            });
        } else if limits.swap_mb < -1 {
            return Err(invalid("swap"));
        }
        if limits.cpu_percent > 0 {
            let quota = i64::try_from(limits.cpu_percent)
                .ok()
                .and_then(|p| p.checked_mul(CPU_PERIOD_US / 100))
                .ok_or_else(|| invalid("cpu"))?;
            engine.cpu_period = Some(CPU_PERIOD_US);
            engine.cpu_quota = Some(quota);
        }
        if limits.pids > 0 {
            engine.pids = Some(i64::try_from(limits.pids).map_err(|_| invalid("pids"))?);
        }
        match limits.io_weight {
            0 => {}
            weight @ 10..=1000 => engine.io_weight = Some(weight),
            _ => return Err(invalid("io_weight (10..=1000)")),
        }
        Ok(engine)
    }

    /// The limits these engine values stand for (`disk_mb` is always 0). Zero and negative
    /// values, which engines record for "unset", read as unlimited.
    pub fn to_limits(&self) -> ServerLimits {
        let memory = self.memory.unwrap_or(0).max(0);
        let swap_mb = match self.memory_swap.unwrap_or(0) {
            -1 => -1,
            total if memory > 0 && total >= memory => (total - memory) / MIB,
            _ => 0,
        };
        let cpu_percent = match (self.cpu_quota, self.cpu_period) {
            (Some(quota), Some(period)) if quota > 0 && period > 0 => quota * 100 / period,
            // The kernel's default period when only a quota is set.
            (Some(quota), _) if quota > 0 => quota * 100 / CPU_PERIOD_US,
            _ => match self.nano_cpus {
                Some(nano) if nano > 0 => nano / 10_000_000,
                _ => 0,
            },
        };
        ServerLimits {
            memory_mb: u64::try_from(memory / MIB).unwrap_or(0),
            swap_mb,
            cpu_percent: u64::try_from(cpu_percent).unwrap_or(0),
            disk_mb: 0,
            io_weight: self.io_weight.unwrap_or(0),
            pids: self.pids.and_then(|p| u64::try_from(p).ok()).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory_mb: u64, swap_mb: i64) -> ServerLimits {
        ServerLimits { memory_mb, swap_mb, cpu_percent: 150, disk_mb: 1024, io_weight: 500, pids: 64 }
    }

    #[test]
    fn limits_round_trip() {
        for swap in [-1, 0, 64] {
            let wanted = limits(256, swap);
            let engine = EngineLimits::from_limits(&wanted).expect("valid limits");
            assert_eq!(engine.to_limits(), ServerLimits { disk_mb: 0, ..wanted });
        }
        let engine = EngineLimits::from_limits(&limits(256, 64)).expect("valid");
        assert_eq!((engine.memory, engine.memory_swap), (Some(256 * MIB), Some(320 * MIB)));
        assert_eq!((engine.cpu_quota, engine.cpu_period), (Some(150_000), Some(100_000)));
        assert_eq!(EngineLimits::default().to_limits(), ServerLimits::default());
        assert_eq!(EngineLimits { nano_cpus: Some(1_500_000_000), ..Default::default() }.to_limits().cpu_percent, 150);
    }

    #[test]
    fn out_of_range_limits_are_invalid() {
        for bad in [
            ServerLimits { io_weight: 5, ..ServerLimits::default() },
            ServerLimits { io_weight: 1001, ..ServerLimits::default() },
            ServerLimits { memory_mb: 10, swap_mb: -2, ..ServerLimits::default() },
            ServerLimits { swap_mb: -2, ..ServerLimits::default() },
            ServerLimits { memory_mb: u64::MAX, ..ServerLimits::default() },
            ServerLimits { cpu_percent: u64::MAX, ..ServerLimits::default() },
        ] {
            assert!(matches!(EngineLimits::from_limits(&bad), Err(RuntimeError::InvalidSpec(_))), "{bad:?}");
        }
    }
}

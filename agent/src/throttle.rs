//! [`Throttle`]: per-server console output limit, one notice per window that dropped lines.

use std::time::Duration;
use tokio::time::Instant;

/// Lines allowed per window; past the limit lines are dropped and counted, and the count is
/// reported once, when the window closes.
///
/// Pure: the caller passes the time. Windows start at the first line after the previous one
/// closed, so an idle server costs nothing.
#[derive(Clone, Debug)]
pub struct Throttle {
    limit: u32,
    window: Duration,
    started: Option<Instant>,
    passed: u32,
    dropped: u64,
}

/// What [`Throttle::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Pass the line on (else drop it).
    pub pass: bool,
    /// Lines dropped in the window that just closed; report them before this line.
    pub report: Option<u64>,
}

impl Throttle {
    /// `limit` lines per `window`; `limit == 0` passes everything.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, started: None, passed: 0, dropped: 0 }
    }

    /// `limit` lines per second.
    pub fn per_second(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// Decides for one line arriving at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if self.limit == 0 {
            return Admission { pass: true, report: None };
        }
        let report = self.flush(now);
        let started = *self.started.get_or_insert(now);
        debug_assert!(now >= started);
        if self.passed < self.limit {
            self.passed += 1;
            Admission { pass: true, report }
        } else {
            self.dropped += 1;
            Admission { pass: false, report }
        }
    }

    /// Closes the current window if `now` is past its end; returns how many lines it dropped,
    /// if any.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let started = self.started?;
        if now < started + self.window {
            return None;
        }
        let dropped = std::mem::take(&mut self.dropped);
        self.started = None;
        self.passed = 0;
        (dropped > 0).then_some(dropped)
    }

    /// Closes the current window whatever the time (the stream ended); returns how many
    /// lines it dropped, if any.
    pub fn finish(&mut self) -> Option<u64> {
        let dropped = std::mem::take(&mut self.dropped);
        self.started = None;
        self.passed = 0;
        (dropped > 0).then_some(dropped)
    }

    /// When the current window ends, if it has dropped lines to report (the caller should
    /// [`flush`](Self::flush) then, so the notice does not wait for the next line).
    pub fn deadline(&self) -> Option<Instant> {
        match self.started {
            Some(started) if self.dropped > 0 => Some(started + self.window),
            _ => None,
        }
    }

    /// [`admit`](Self::admit), the drops of a window that just closed told to `report` as
    /// their [`notice`](Self::notice): whether to pass the line on.
    pub fn admit_reporting(&mut self, now: Instant, report: impl FnOnce(String)) -> bool {
        let admission = self.admit(now);
        if let Some(dropped) = admission.report {
            report(self.notice(dropped));
        }
        admission.pass
    }

    /// [`finish`](Self::finish), its drops told to `report` as their [`notice`](Self::notice).
    pub fn finish_reporting(&mut self, report: impl FnOnce(String)) {
        if let Some(dropped) = self.finish() {
            report(self.notice(dropped));
        }
    }

    /// The notice text for `dropped` lines.
    pub fn notice(&self, dropped: u64) -> String {
        format!(
            "console output throttled: {dropped} lines dropped (more than {} lines in {:?})",
            self.limit, self.window
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_past_the_limit_and_reports_once_per_window() {
        let t0 = Instant::now();
        let mut t = Throttle::per_second(3);
        let ms = |n| t0 + Duration::from_millis(n);
        let passes: Vec<bool> = (0..10).map(|i| t.admit(ms(i)).pass).collect();
        assert_eq!(passes, [true, true, true, false, false, false, false, false, false, false]);
        assert_eq!(t.deadline(), Some(ms(1000)));
        assert_eq!(t.flush(ms(999)), None);
        // The first line of the next window carries the report of the previous one.
        let next = t.admit(ms(1500));
        assert_eq!(next, Admission { pass: true, report: Some(7) });
        assert_eq!(t.deadline(), None, "nothing dropped in the new window yet");
        // A quiet window after drops is reported by flush, exactly once.
        for i in 0..5 {
            t.admit(ms(1600 + i));
        }
        // 1500 opened the window with one line; two more pass, three are dropped.
        assert_eq!(t.flush(ms(2500)), Some(3));
        assert_eq!(t.flush(ms(9000)), None);
        assert!(t.notice(2).contains("2 lines dropped"));
    }

    #[test]
    fn within_limit_never_reports() {
        let t0 = Instant::now();
        let mut t = Throttle::per_second(5);
        for s in 0..10u64 {
            for i in 0..5 {
                let a = t.admit(t0 + Duration::from_millis(s * 1000 + i));
                assert_eq!(a, Admission { pass: true, report: None });
            }
        }
    }

    #[test]
    fn zero_is_unlimited() {
        let mut t = Throttle::per_second(0);
        let now = Instant::now();
        assert!((0..100_000).all(|_| t.admit(now).pass));
        assert_eq!(t.deadline(), None);
    }
}

//! Disk usage, tracked incrementally, and the quota.
//!
//! Usage is the sum of the apparent sizes of regular files below the root, each inode
//! counted once. It is computed by one scan, lazily, the first time it is needed, then
//! adjusted by every operation of the manager: a write reserves its bytes *before* writing
//! (a stream reserves chunk by chunk and is aborted, its partial file removed, when the quota
//! is hit), a delete releases what it freed. Files written by the game server process itself
//! bypass the counter, so the daemon reconciles with [`super::ServerFiles::rescan`]
//! periodically and when a server stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::error::{FilesError, Result};

#[derive(Default)]
struct Usage {
    /// Bytes counted, `None` until the first scan.
    used: Option<u64>,
}

/// The quota (0 = unlimited) and the usage counter.
pub(crate) struct Quota {
    limit: AtomicU64,
    usage: Mutex<Usage>,
}

impl Quota {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit: AtomicU64::new(limit), usage: Mutex::new(Usage::default()) }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        // A panic while holding the lock leaves a plain number behind; keep using it.
        self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The counter, scanning first if it was never computed. The lock is held during that
    /// first scan so that no operation adjusts a counter that does not exist yet.
    pub(crate) fn used(&self, scan: impl FnOnce() -> Result<u64>) -> Result<u64> {
        let mut usage = self.lock();
        match usage.used {
            Some(used) => Ok(used),
            None => {
                let used = scan()?;
                usage.used = Some(used);
                Ok(used)
            }
        }
    }

    /// Replaces the counter with a fresh scan.
    pub(crate) fn reset(&self, used: u64) {
        self.lock().used = Some(used);
    }

    fn available(&self, used: u64) -> u64 {
        match self.limit() {
            0 => u64::MAX,
            limit => limit.saturating_sub(used),
        }
    }

    /// Reserves `needed` bytes; `credit` bytes (the size of a file being replaced) will be
    /// freed when the reservation is committed, so they count as available.
    pub(crate) fn reserve(&self, needed: u64, credit: u64) -> Result<Reservation<'_>> {
        let mut reservation = Reservation { quota: self, held: 0, credit, committed: false };
        reservation.grow(needed)?;
        Ok(reservation)
    }

    /// Subtracts freed bytes (deletes, replaced files).
    pub(crate) fn release(&self, bytes: u64) {
        let mut usage = self.lock();
        if let Some(used) = usage.used.as_mut() {
            *used = used.saturating_sub(bytes);
        }
    }
}

/// Bytes reserved under the quota for an operation in flight. Dropped without
/// [`Reservation::commit`], it gives them back (the operation failed and cleaned up).
pub(crate) struct Reservation<'q> {
    quota: &'q Quota,
    held: u64,
    credit: u64,
    committed: bool,
}

impl Reservation<'_> {
    /// Reserves `more` bytes, refusing with [`FilesError::QuotaExceeded`] past the quota.
    pub(crate) fn grow(&mut self, more: u64) -> Result<()> {
        let mut usage = self.quota.lock();
        // Not scanned yet: callers scan before reserving; counting from 0 here would be
        // wrong, so treat it as the unknown it is and only track the reservation.
        let used = usage.used.unwrap_or(0);
        let after = self.held.saturating_add(more);
        let available = self.quota.available(used.saturating_sub(self.held)).saturating_add(self.credit);
        if after > available {
            return Err(FilesError::QuotaExceeded {
                needed: after.saturating_sub(self.credit),
                available: available.saturating_sub(self.credit),
            });
        }
        if let Some(used) = usage.used.as_mut() {
            *used = used.saturating_add(more);
        }
        self.held = after;
        Ok(())
    }

    /// Bytes held so far.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Commits a write of `actual` bytes that replaced a file of `replaced` bytes (measured
    /// at the rename, which may differ from the credit planned when the write started).
    pub(crate) fn settle(mut self, actual: u64, replaced: u64) {
        self.credit = replaced;
        self.commit_exact(actual);
    }

    /// Like [`Reservation::commit`], giving back what was reserved beyond `actual` bytes.
    pub(crate) fn commit_exact(mut self, actual: u64) {
        if actual < self.held {
            self.quota.release(self.held - actual);
            self.held = actual;
        }
        self.commit();
    }

    /// Keeps the bytes counted and frees the credited (replaced) ones.
    pub(crate) fn commit(mut self) {
        self.committed = true;
        self.quota.release(self.credit);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.quota.release(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_commit_or_roll_back() {
        let quota = Quota::new(100);
        assert_eq!(quota.used(|| Ok(40)).unwrap(), 40);
        {
            let r = quota.reserve(50, 0).unwrap();
            assert_eq!(quota.used(|| unreachable!()).unwrap(), 90);
            drop(r);
        }
        assert_eq!(quota.used(|| unreachable!()).unwrap(), 40);
        let err = quota.reserve(61, 0).err().unwrap();
        assert!(matches!(err, FilesError::QuotaExceeded { needed: 61, available: 60 }), "{err:?}");
        // Replacing a 30-byte file with 80 bytes needs 50 more: fits.
        let mut r = quota.reserve(80, 30).unwrap();
        assert!(r.grow(11).is_err());
        r.commit();
        assert_eq!(quota.used(|| unreachable!()).unwrap(), 90);
        quota.release(1000);
        assert_eq!(quota.used(|| unreachable!()).unwrap(), 0);
        quota.set_limit(0);
        assert!(quota.reserve(u64::MAX / 2, 0).is_ok());
    }
}

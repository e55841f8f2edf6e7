//! Disk usage, tracked incrementally, and the quota.
//!
//! # What an entry costs
//! Usage is what the entries below the root take on disk, estimated the same way by the scan
//! and by every operation (see [`cost`]): content in whole 4 KiB blocks, at least one block
//! per entry (a directory is one block whatever it holds), plus [`ENTRY_COST`] for the inode
//! and the name in the parent directory. A regular file with several links is counted once,
//! plus [`ENTRY_COST`] for each further name.
//! Sparse files count their apparent size. So an archive of 20,000 empty directories costs
//! about 87 MB, not 0, and the number of entries a server can create is bounded by its quota.
//!
//! # Quota before bytes
//! The counter is computed by one scan, lazily, the first time it is needed, then adjusted by
//! every operation of the manager: a write reserves its bytes *before* writing (a stream
//! reserves chunk by chunk and is aborted, its partial file removed, when the quota is hit),
//! a delete releases what it freed. A replacement reserves the whole new file: the old one is
//! released only once the rename has replaced it, by the bytes of the inode actually replaced
//! (see `confine::replace_entry`). So the counter always covers what is on disk, temporary
//! files of operations in flight included.
//!
//! # Rescans
//! Files written by the game server process itself bypass the counter, so the daemon
//! reconciles with [`super::ServerFiles::rescan`] when a server stops. A scan skips the
//! temporary files of the manager's operations in flight (registered with
//! [`Quota::temporary`]) and adds what their reservations hold instead; what operations
//! commit while the scan runs is added too (it may have been seen by the scan as well: the
//! counter then over-counts until the next rescan, never under-counts).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::confine::{Kind, Meta, is_temp_name};
use super::error::{FilesError, Result};

/// The allocation unit content is counted in (ext4, XFS, tmpfs).
pub const BLOCK: u64 = 4096;
/// Charged per entry on top of its blocks: the inode and the name in the parent directory
/// (an ext4 inode is 256 bytes, a directory entry at most 264).
pub const ENTRY_COST: u64 = 256;

/// What an entry of `kind` with `size` bytes (a symlink's target length for a symlink)
/// counts as.
pub(crate) fn cost(kind: Kind, size: u64) -> u64 {
    let blocks = match kind {
        Kind::Dir => 1,
        _ => size.div_ceil(BLOCK).max(1),
    };
    blocks.saturating_mul(BLOCK).saturating_add(ENTRY_COST)
}

/// What an existing entry counts as: its [`cost`], or for a regular file what the file
/// system really allocated for it when that is more (`fallocate` with `KEEP_SIZE` takes space
/// without growing the size), so space taken without writing content is counted too. A
/// directory keeps its flat cost: the blocks it grows by hold the names of its entries, which
/// each entry's [`ENTRY_COST`] already pays for.
pub(crate) fn meta_cost(meta: &Meta) -> u64 {
    let flat = cost(meta.kind, meta.size);
    match meta.kind {
        Kind::File => flat.max(meta.allocated.saturating_add(ENTRY_COST)),
        _ => flat,
    }
}

/// What a regular file of `size` bytes counts as in disk usage and against the quota.
pub fn file_cost(size: u64) -> u64 {
    cost(Kind::File, size)
}

/// What a directory counts as in disk usage and against the quota, whatever it holds.
pub fn dir_cost() -> u64 {
    cost(Kind::Dir, 0)
}

/// What unlinking the entry frees from the counter: its cost, except for a file with other
/// links: its inode stays (the scan counts its content under whichever link it meets first,
/// and [`ENTRY_COST`] for each other link), so only one name's cost is freed.
pub(crate) fn freed_by_unlink(meta: &Meta) -> u64 {
    if meta.kind == Kind::File && meta.nlink > 1 { ENTRY_COST } else { meta_cost(meta) }
}

#[derive(Default)]
struct Usage {
    /// Bytes counted, reservations in flight included; `None` until the first scan.
    used: Option<u64>,
    /// Bytes held by reservations not committed yet.
    in_flight: u64,
    /// While a rescan runs: bytes committed since it started.
    committed_during_scan: Option<u64>,
}

struct Shared {
    limit: AtomicU64,
    usage: Mutex<Usage>,
    /// Temporary names of operations in flight (files, staging directories); a lock of its
    /// own, since scans read it while the first one holds `usage`.
    temporaries: Mutex<HashSet<OsString>>,
    /// One rescan at a time.
    rescanning: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Usage> {
        // A panic while holding the lock leaves plain numbers behind; keep using them.
        self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn temporaries(&self) -> MutexGuard<'_, HashSet<OsString>> {
        self.temporaries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn available(&self, used: u64) -> u64 {
        match self.limit.load(Ordering::Relaxed) {
            0 => u64::MAX,
            limit => limit.saturating_sub(used),
        }
    }

    /// Adds committed bytes (also seen by a rescan in progress).
    fn add_committed(usage: &mut Usage, bytes: u64) {
        if let Some(used) = usage.used.as_mut() {
            *used = used.saturating_add(bytes);
        }
        if let Some(during) = usage.committed_during_scan.as_mut() {
            *during = during.saturating_add(bytes);
        }
    }
}

/// The quota (0 = unlimited) and the usage counter. Cheap to clone; clones share the counter.
#[derive(Clone)]
pub(crate) struct Quota {
    shared: Arc<Shared>,
}

impl Quota {
    pub(crate) fn new(limit: u64) -> Self {
        let shared = Shared {
            limit: AtomicU64::new(limit),
            usage: Mutex::new(Usage::default()),
            temporaries: Mutex::new(HashSet::new()),
            rescanning: Mutex::new(()),
        };
        Self { shared: Arc::new(shared) }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.shared.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.shared.limit.store(limit, Ordering::Relaxed);
    }

    /// The counter, scanning first if it was never computed. The lock is held during that
    /// first scan so that no operation adjusts a counter that does not exist yet.
    pub(crate) fn used(&self, scan: impl FnOnce() -> Result<u64>) -> Result<u64> {
        let mut usage = self.shared.lock();
        match usage.used {
            Some(used) => Ok(used),
            None => {
                let used = scan()?.saturating_add(usage.in_flight);
                usage.used = Some(used);
                Ok(used)
            }
        }
    }

    /// Replaces the counter with `scan` (which skips [`Quota::is_in_flight`] names), plus
    /// what operations in flight hold, plus what they committed meanwhile.
    pub(crate) fn rescan(&self, scan: impl FnOnce() -> Result<u64>) -> Result<u64> {
        let _one_at_a_time = self.shared.rescanning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.shared.lock().committed_during_scan = Some(0);
        let scanned = scan();
        let mut usage = self.shared.lock();
        let during = usage.committed_during_scan.take().unwrap_or(0);
        let used = scanned?.saturating_add(usage.in_flight).saturating_add(during);
        usage.used = Some(used);
        Ok(used)
    }

    /// Reserves `needed` bytes, refusing with [`FilesError::QuotaExceeded`] past the quota.
    /// Callers scan first (see [`Quota::used`]).
    pub(crate) fn reserve(&self, needed: u64) -> Result<Reservation> {
        let mut reservation = Reservation { shared: Arc::clone(&self.shared), held: 0 };
        reservation.grow(needed)?;
        Ok(reservation)
    }

    /// Reserves `bytes` for `create`, which reports whether it created something: the bytes
    /// stay counted only if it did (a directory that already existed costs nothing more).
    pub(crate) fn charged<T>(&self, bytes: u64, create: impl FnOnce() -> Result<(T, bool)>) -> Result<T> {
        let reservation = self.reserve(bytes)?;
        let (value, created) = create()?;
        if created {
            reservation.commit();
        }
        Ok(value)
    }

    /// Subtracts freed bytes (deletes, replaced files).
    pub(crate) fn release(&self, bytes: u64) {
        if let Some(used) = self.shared.lock().used.as_mut() {
            *used = used.saturating_sub(bytes);
        }
    }

    /// Registers the temporary name of an operation in flight, until the guard is dropped:
    /// scans skip it, since its reservation already counts it.
    pub(crate) fn temporary(&self, name: OsString) -> Temporary {
        self.shared.temporaries().insert(name.clone());
        Temporary { shared: Arc::clone(&self.shared), name }
    }

    /// Whether `name` is the temporary name of an operation in flight.
    pub(crate) fn is_in_flight(&self, name: &OsStr) -> bool {
        is_temp_name(name) && self.shared.temporaries().contains(name)
    }
}

/// A registered temporary name (see [`Quota::temporary`]).
pub(crate) struct Temporary {
    shared: Arc<Shared>,
    name: OsString,
}

impl Temporary {
    /// The name.
    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        self.shared.temporaries().remove(&self.name);
    }
}

/// Bytes reserved under the quota for an operation in flight. Dropped without being
/// committed, it gives them back (the operation failed and cleaned up, or was abandoned).
/// It owns its share of the counter, so it can travel to the blocking pool with the work.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    held: u64,
}

impl Reservation {
    /// Reserves `more` bytes, refusing with [`FilesError::QuotaExceeded`] past the quota.
    pub(crate) fn grow(&mut self, more: u64) -> Result<()> {
        let mut usage = self.shared.lock();
        // Not scanned yet: callers scan before reserving; counting from 0 here would be
        // wrong, so treat it as the unknown it is and only track the reservation.
        let used = usage.used.unwrap_or(0);
        let after = self.held.saturating_add(more);
        let available = self.shared.available(used.saturating_sub(self.held));
        if after > available {
            return Err(FilesError::QuotaExceeded { needed: after, available });
        }
        if let Some(used) = usage.used.as_mut() {
            *used = used.saturating_add(more);
        }
        usage.in_flight = usage.in_flight.saturating_add(more);
        self.held = after;
        Ok(())
    }

    /// Grows the reservation to hold at least `total` bytes.
    pub(crate) fn ensure(&mut self, total: u64) -> Result<()> {
        if total > self.held { self.grow(total - self.held) } else { Ok(()) }
    }

    /// Keeps the bytes held counted.
    pub(crate) fn commit(self) {
        let held = self.held;
        self.commit_as(held);
    }

    /// Keeps exactly `actual` bytes counted: what the operation left on disk, which may be
    /// less than reserved (a size hint too large) or slightly more (counted anyway: the
    /// bytes are there).
    pub(crate) fn commit_as(mut self, actual: u64) {
        let held = std::mem::take(&mut self.held);
        let mut usage = self.shared.lock();
        usage.in_flight = usage.in_flight.saturating_sub(held);
        if let Some(used) = usage.used.as_mut() {
            *used = used.saturating_sub(held);
        }
        Shared::add_committed(&mut usage, actual);
    }

    /// Commits a write of `actual` bytes that replaced an entry of `freed` bytes.
    pub(crate) fn settle(self, actual: u64, freed: u64) {
        let shared = Arc::clone(&self.shared);
        self.commit_as(actual);
        if let Some(used) = shared.lock().used.as_mut() {
            *used = used.saturating_sub(freed);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held > 0 {
            let mut usage = self.shared.lock();
            usage.in_flight = usage.in_flight.saturating_sub(self.held);
            if let Some(used) = usage.used.as_mut() {
                *used = used.saturating_sub(self.held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(quota: &Quota) -> u64 {
        quota.used(|| unreachable!()).unwrap()
    }

    #[test]
    fn reservations_commit_or_roll_back() {
        let quota = Quota::new(100);
        assert_eq!(quota.used(|| Ok(40)).unwrap(), 40);
        {
            let r = quota.reserve(50).unwrap();
            assert_eq!(used(&quota), 90);
            drop(r);
        }
        assert_eq!(used(&quota), 40);
        let err = quota.reserve(61).err().unwrap();
        assert!(matches!(err, FilesError::QuotaExceeded { needed: 61, available: 60 }), "{err:?}");
        // A replacement holds the whole new file until the old one is gone.
        let mut r = quota.reserve(30).unwrap();
        assert!(r.grow(31).is_err());
        r.ensure(60).unwrap();
        r.settle(50, 40);
        assert_eq!(used(&quota), 50);
        quota.release(1000);
        assert_eq!(used(&quota), 0);
        quota.set_limit(0);
        assert!(quota.reserve(u64::MAX / 2).is_ok());
    }

    #[test]
    fn rescans_keep_what_is_in_flight() {
        let quota = Quota::new(0);
        quota.used(|| Ok(0)).unwrap();
        let r = quota.reserve(500).unwrap();
        // The scan skipped the operation's temporary file; its reservation still counts.
        assert_eq!(quota.rescan(|| Ok(100)).unwrap(), 600);
        r.commit_as(400);
        assert_eq!(used(&quota), 500);
        // Committed while the scan ran: added, whether the scan saw it or not.
        let r = quota.reserve(70).unwrap();
        assert_eq!(
            quota
                .rescan(|| {
                    r.commit();
                    Ok(100)
                })
                .unwrap(),
            170
        );
        assert_eq!(cost(Kind::Dir, 0), 4096 + 256);
        assert_eq!(file_cost(0), 4096 + 256);
        assert_eq!(file_cost(4097), 8192 + 256);
    }
}

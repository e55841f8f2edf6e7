//! The store conformance suite on `MemoryStore`: the in-memory store passes every case the SQL
//! stores pass.

use nexus_core::memory::MemoryStore;

/// The whole suite, one test per case.
mod conformance {
    use super::MemoryStore;
    nexus_conformance::store_conformance_tests!(|| async { Some(MemoryStore::new()) });
}

/// The same suite through `run_all`, on a single-threaded runtime.
#[tokio::test]
async fn conformance_run_all_on_current_thread() {
    nexus_conformance::store::run_all(|| async { Some(MemoryStore::new()) }).await;
}

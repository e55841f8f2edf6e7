//! The store conformance suite: the behaviour every [`Store`] backend must show, as
//! executable cases.
//!
//! One line generates one `#[test]` per case (so failures are reported per case and can
//! be filtered with `cargo test conformance::users_`):
//!
//! ```ignore
//! mod conformance {
//!     // Any expression callable as `make()` whose future yields `Some(fresh empty store)`, or
//!     // `None` to skip the case after `require_service` decided the service may be missing.
//!     nexus_conformance::store_conformance_tests!(|| async { Some(my_backend::PgStore::connect_fresh_schema().await) });
//! }
//! ```
//!
//! Each case gets its own store from `make` and runs on its own multi-threaded tokio runtime
//! (so the backend crate needs no tokio set-up), with a time limit of [`CASE_TIMEOUT`].
//! [`run_all`] runs every case inside one test instead, and [`CASES`] lists them for custom
//! harnesses.
//!
//! # What the suite pins
//!
//! The contract is written on the trait: see "Contract" on
//! [`Store`]. Each rule there is a case here.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code compiled as a library module: a failed expectation must fail the case"
)]

pub mod cases;
pub mod fixtures;

use futures::FutureExt;
use futures::future::BoxFuture;
use nexus_core::store::Store;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// Longest a single case may run under [`run_case`] before it fails (a deadlocked backend
/// should fail, not hang CI).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's function name in [`cases`].
    pub name: &'static str,
    /// Runs the case against an empty store; panics on failure.
    pub run: fn(Arc<dyn Store>) -> BoxFuture<'static, ()>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every case, in the order [`store_conformance_tests!`](crate::store_conformance_tests)
/// emits them.
pub const CASES: &[Case] = crate::__store_conformance_cases!(list());

/// Runs one case on a fresh multi-threaded runtime against the store `make` builds; panics if
/// the case fails or exceeds [`CASE_TIMEOUT`]. `make` yields `None` to skip the case (its
/// service is unavailable and [`require_service`](crate::require_service) allowed
/// a skip). What the generated tests call.
pub fn run_case<S, M, MF, C, CF>(make: M, case: C)
where
    S: Store + 'static,
    M: FnOnce() -> MF,
    MF: Future<Output = Option<S>>,
    C: FnOnce(Arc<dyn Store>) -> CF,
    CF: Future<Output = ()>,
{
    let runtime = super::case_runtime();
    runtime.block_on(async move {
        let Some(store) = make().await else { return };
        let store: Arc<dyn Store> = Arc::new(store);
        if tokio::time::timeout(CASE_TIMEOUT, case(store)).await.is_err() {
            panic!("conformance case did not finish within {CASE_TIMEOUT:?}");
        }
    });
}

/// Runs every case, each against a fresh store from `make`, on the caller's runtime; panics
/// at the end naming every failed case. For a single test instead of one per case. Stops
/// quietly when `make` yields `None` (service unavailable, skip allowed).
pub async fn run_all<S, M, MF>(mut make: M)
where
    S: Store + 'static,
    M: FnMut() -> MF,
    MF: Future<Output = Option<S>>,
{
    let mut failed = Vec::new();
    for case in CASES {
        let Some(store) = make().await else { return };
        let store: Arc<dyn Store> = Arc::new(store);
        if AssertUnwindSafe((case.run)(store)).catch_unwind().await.is_err() {
            failed.push(case.name);
        }
    }
    assert!(failed.is_empty(), "{} of {} store conformance cases failed: {failed:?}", failed.len(), CASES.len());
}

/// Generates one `#[test]` per store conformance case in the current module.
///
/// The argument is an expression callable as `make()` (a closure or a function path) whose
/// future yields `Some` fresh, empty [`Store`](nexus_core::store::Store), or `None` to skip:
///
/// ```ignore
/// mod conformance {
///     nexus_conformance::store_conformance_tests!(|| async { Some(nexus_core::memory::MemoryStore::new()) });
/// }
/// ```
///
/// See [the module docs](crate::store).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr $(,)?) => {
        $crate::__store_conformance_cases!(tests($make));
    };
}

/// The single list of case names, handed to [`__store_conformance_emit!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($mode:ident $args:tt) => {
        $crate::__store_conformance_emit! { $mode $args [
            users_round_trip,
            users_unique_case_insensitively,
            users_not_found,
            users_listed_by_username_and_paged,
            user_delete_guarded_by_servers_and_removes_keys,
            api_keys_round_trip,
            subusers_put_replaces_and_keeps_created_at,
            subusers_checked_references,
            subusers_listed_oldest_first,
            subusers_deleted_alone_and_with_server_or_user,
            totp_put_replace_delete,
            totp_removed_with_user,
            audit_newest_first_filtered_and_paged,
            locations_unique_ordered_and_guarded,
            nodes_round_trip,
            nodes_unique_and_checked,
            node_delete_guarded_by_servers,
            heartbeats_and_stale_nodes,
            heartbeats_recorded_in_batches,
            node_usage_sums_servers_per_node,
            allocations_round_trip_in_address_order,
            allocations_unique_per_node_all_or_nothing,
            allocation_delete_guarded_when_assigned,
            claim_free_allocation_lowest_first,
            claim_for_existing_server_extends_it,
            eggs_round_trip,
            egg_delete_guarded_by_servers,
            nests_group_eggs_and_are_guarded_by_them,
            record_refs_number_once_in_order,
            record_refs_external_ids_are_unique_per_kind,
            record_refs_numbered_once_under_concurrency,
            servers_round_trip_assigns_allocations,
            servers_listed_filtered_and_paged,
            servers_listed_by_member,
            servers_listed_in_order,
            server_suspension_and_deletion_request_round_trip,
            server_create_conflicts_change_nothing,
            server_create_accepts_allocation_claimed_for_it,
            server_update_checks_version,
            server_transition_checks_version_and_state,
            node_events_applied_in_order,
            node_events_match_a_sequential_oracle,
            server_events_newest_first,
            server_delete_cleans_up,
            schedules_round_trip,
            due_schedules_soonest_first,
            schedule_runs_claimed_once,
            backups_round_trip_and_lock,
            transaction_commit_makes_writes_visible,
            transaction_rollback_discards_writes,
            transaction_drop_discards_writes,
            transaction_does_not_lose_concurrent_writes,
            transaction_spans_claim_and_create,
            concurrent_claims_more_tasks_than_allocations,
            concurrent_claims_fewer_tasks_than_allocations,
            concurrent_transitions_one_winner,
            concurrent_node_event_batches_apply_each_event_once,
            concurrent_updates_one_winner,
            concurrent_deletes_one_winner,
            concurrent_schedule_claims_one_winner,
        ] }
    };
}

/// Expands the case list as tests or as the [`CASES`](crate::store::CASES) table.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_emit {
    (tests($make:expr) [$($case:ident),* $(,)?]) => {
        $(
            #[test]
            fn $case() {
                $crate::store::run_case($make, $crate::store::cases::$case);
            }
        )*
    };
    (list() [$($case:ident),* $(,)?]) => {
        &[$(
            $crate::store::Case {
                name: stringify!($case),
                run: |store| ::std::boxed::Box::pin($crate::store::cases::$case(store)),
            }
        ),*]
    };
}

//! Transactions and concurrent callers.

use crate::store::fixtures::*;
use nexus_core::ids::*;
use nexus_core::lifecycle::{ServerState, Trigger};
use nexus_core::model::*;
use nexus_core::store::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Barrier;

/// Concurrent tasks in the races below; above the 50 the suite promises.
const RACERS: usize = 64;

/// Panel processes racing for one schedule run: a handful, as in a replicated panel.
const SCHEDULERS: usize = 8;

/// Writes in a transaction are visible inside it at once, invisible outside until `commit`,
/// and all visible after.
pub async fn transaction_commit_makes_writes_visible(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let newcomer = user("newcomer");
    let server = world.server(&[0]);

    let tx = store.begin().await.expect("begin");
    tx.create_user(&newcomer).await.expect("create user in transaction");
    tx.create_server(&server).await.expect("create server in transaction");
    assert_eq!(tx.get_user(newcomer.id).await.expect("read own write"), newcomer, "reads see the transaction");
    assert_eq!(tx.get_allocation(world.allocation(0)).await.expect("get").server, Some(server.id));

    assert_err!(store.get_user(newcomer.id).await, StoreError::NotFound { .. }, "uncommitted user visible outside");
    assert_eq!(store.find_user_by_login("newcomer").await.expect("find"), None, "uncommitted user found outside");
    assert_err!(store.get_server(server.id).await, StoreError::NotFound { .. }, "uncommitted server visible outside");
    assert_eq!(store.get_allocation(world.allocation(0)).await.expect("get").server, None, "uncommitted claim");

    tx.commit().await.expect("commit");
    assert_eq!(store.get_user(newcomer.id).await.expect("get after commit"), newcomer);
    assert_eq!(store.get_server(server.id).await.expect("get after commit"), server);
    assert_eq!(store.get_allocation(world.allocation(0)).await.expect("get").server, Some(server.id));
}

/// Writes in a transaction that is rolled back are never visible, and the store stays usable.
pub async fn transaction_rollback_discards_writes(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let tx = store.begin().await.expect("begin");
    let changes = write_everything(&*tx, &world).await;
    tx.rollback().await.expect("rollback");
    assert_untouched(&*store, &world, &changes).await;
}

/// Dropping a transaction without commit or rollback discards its writes, and the store stays
/// usable.
pub async fn transaction_drop_discards_writes(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let tx = store.begin().await.expect("begin");
    let changes = write_everything(&*tx, &world).await;
    drop(tx);
    assert_untouched(&*store, &world, &changes).await;
}

/// What [`write_everything`] wrote.
struct Changes {
    user: User,
    server: Server,
    audit: AuditEvent,
}

/// Writes through several repositories of `tx`.
async fn write_everything(tx: &dyn StoreTransaction, world: &World) -> Changes {
    let user = user("discarded");
    tx.create_user(&user).await.expect("create user");
    let server = world.server(&[0]);
    tx.create_server(&server).await.expect("create server");
    let e = event(server.id, ServerState::Requested, Trigger::InstallStarted, ts(1));
    tx.transition_server(server.version, &e).await.expect("transition");
    let claimed = tx.claim_free_allocation(world.node.id, ServerId::new()).await.expect("claim");
    assert_eq!(claimed.map(|a| a.id), Some(world.allocation(1)), "claim inside the transaction");
    tx.update_node(&Node { maintenance: true, ..world.node.clone() }).await.expect("update node");
    tx.record_heartbeat(world.node.id, ts(77)).await.expect("heartbeat");
    let audit = audit(AuditSubject::Server(server.id), "server.create", ts(1));
    tx.append_audit(&audit).await.expect("append audit");
    tx.put_subuser(&subuser(server.id, user.id, &["control.console"], ts(1))).await.expect("put subuser");
    tx.put_totp(&totp(user.id, Some(1))).await.expect("put second factor");
    Changes { user, server, audit }
}

async fn assert_untouched(store: &dyn Store, world: &World, changes: &Changes) {
    assert_err!(store.get_user(changes.user.id).await, StoreError::NotFound { .. }, "discarded user");
    assert_err!(store.get_server(changes.server.id).await, StoreError::NotFound { .. }, "discarded server");
    assert_eq!(store.get_node(world.node.id).await.expect("get node"), world.node, "discarded node changes");
    assert_eq!(store.list_allocations(world.node.id).await.expect("list"), world.allocations, "discarded claims");
    let audit = store.list_audit(Some(&changes.audit.subject), Page::all()).await.expect("audit");
    assert!(audit.is_empty(), "discarded audit entry");
    // The store must not stay locked by the finished transaction.
    store.create_user(&changes.user).await.expect("write after the transaction ended");
    store.create_server(&changes.server).await.expect("create the server for real");
    assert_eq!(store.get_totp(changes.user.id).await.expect("get totp"), None, "discarded second factor");
    let grant = store.get_subuser(changes.server.id, changes.user.id).await.expect("get subuser");
    assert_eq!(grant, None, "discarded subuser grant");
}

/// A write made by another task while a transaction is open is not lost when the transaction
/// commits (whether the backend makes that write wait for the transaction or not).
pub async fn transaction_does_not_lose_concurrent_writes(store: Arc<dyn Store>) {
    let inside = user("inside");
    let outside = user("outside");
    let tx = store.begin().await.expect("begin");
    tx.create_user(&inside).await.expect("create in transaction");
    let writer = tokio::spawn({
        let (store, outside) = (Arc::clone(&store), outside.clone());
        async move { store.create_user(&outside).await }
    });
    // Give the outside write time to run (or to start waiting) before the commit.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tx.commit().await.expect("commit");
    writer.await.expect("writer task panicked").expect("outside write");
    assert_eq!(store.get_user(inside.id).await.expect("get inside"), inside, "committed write");
    assert_eq!(store.get_user(outside.id).await.expect("get outside"), outside, "concurrent write survives");
}

/// The placement flow: claim an allocation for a new server id and create the server with it,
/// in one transaction.
pub async fn transaction_spans_claim_and_create(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 3).await;
    let tx = store.begin().await.expect("begin");
    let planned = ServerId::new();
    let claimed = tx.claim_free_allocation(world.node.id, planned).await.expect("claim").expect("free");
    let server = Server { id: planned, ..world.server(&[2]) };
    let server = Server { primary_allocation: claimed.id, ..server };
    tx.create_server(&server).await.expect("create with the claimed allocation");
    tx.commit().await.expect("commit");

    assert_eq!(store.get_server(planned).await.expect("get"), server);
    let usage = store.node_usage().await.expect("usage");
    let free = usage.iter().find(|u| u.node == Some(world.node.id)).map(|u| u.free_allocations);
    assert_eq!(free, Some(2), "one allocation used");
}

/// More concurrent claimers than allocations: every allocation is claimed exactly once and the
/// surplus claimers get `None`.
pub async fn concurrent_claims_more_tasks_than_allocations(store: Arc<dyn Store>) {
    claim_race(store, RACERS, 40).await;
}

/// Fewer concurrent claimers than allocations: every claimer gets a distinct allocation.
pub async fn concurrent_claims_fewer_tasks_than_allocations(store: Arc<dyn Store>) {
    claim_race(store, RACERS, RACERS + 16).await;
}

async fn claim_race(store: Arc<dyn Store>, tasks: usize, allocations: usize) {
    let world = World::seed(&*store, allocations).await;
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, barrier, node) = (Arc::clone(&store), Arc::clone(&barrier), world.node.id);
            tokio::spawn(async move {
                let server = ServerId::new();
                barrier.wait().await;
                (server, store.claim_free_allocation(node, server).await)
            })
        })
        .collect();

    let mut claims: HashMap<AllocationId, ServerId> = HashMap::new();
    for handle in handles {
        let (server, result) = handle.await.expect("claimer task panicked");
        let Some(allocation) = result.expect("claim_free_allocation must not fail under concurrency") else {
            continue;
        };
        assert_eq!(allocation.server, Some(server), "returned allocation names its claimer");
        if let Some(previous) = claims.insert(allocation.id, server) {
            panic!("allocation {} claimed twice, by {previous} and {server}", allocation.id);
        }
    }
    assert_eq!(claims.len(), tasks.min(allocations), "claims = min(tasks, allocations)");
    for allocation in store.list_allocations(world.node.id).await.expect("list") {
        assert_eq!(allocation.server, claims.get(&allocation.id).copied(), "stored owner of {}", allocation.id);
    }
}

/// Many concurrent `transition_server` calls at one version: exactly one wins, the others get
/// `VersionConflict`, one event is recorded.
pub async fn concurrent_transitions_one_winner(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let e =
                event(server.id, ServerState::Requested, Trigger::InstallStarted, ts(i64::try_from(i).unwrap_or(0)));
            let version = server.version;
            tokio::spawn(async move {
                barrier.wait().await;
                (e.clone(), store.transition_server(version, &e).await)
            })
        })
        .collect();

    let mut winners = Vec::new();
    for handle in handles {
        match handle.await.expect("transition task panicked") {
            (e, Ok(after)) => {
                assert_eq!(after.version, server.version + 1, "winner bumps the version once");
                winners.push(e);
            }
            (_, Err(StoreError::VersionConflict { expected, actual, .. })) => {
                assert_eq!((expected, actual), (server.version, server.version + 1), "conflict reports both versions");
            }
            (_, Err(other)) => panic!("losers must get VersionConflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one transition wins");
    let stored = store.get_server(server.id).await.expect("get");
    assert_eq!((stored.state, stored.version), (ServerState::Installing, server.version + 1));
    assert_eq!(store.server_events(server.id, 100).await.expect("events"), winners, "only the winner's event");
}

/// Many concurrent `apply_node_events` batches, each holding the same first event of one
/// shared server (a node's retried delivery reaching two panels) and an event of a server of
/// its own: the shared event is applied exactly once, every own event is applied, and no batch
/// fails or waits on another for good.
pub async fn concurrent_node_event_batches_apply_each_event_once(store: Arc<dyn Store>) {
    let world = World::seed(&*store, RACERS + 1).await;
    let shared = world.create_server(&*store, &[RACERS]).await;
    let mut own = Vec::new();
    for i in 0..RACERS {
        own.push(world.create_server(&*store, &[i]).await);
    }
    let barrier = Arc::new(Barrier::new(RACERS));
    let install = event(shared.id, ServerState::Requested, Trigger::InstallStarted, ts(1));
    let handles: Vec<_> = own
        .iter()
        .enumerate()
        .map(|(i, mine)| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let mine = (world.node.id, event(mine.id, ServerState::Requested, Trigger::InstallStarted, ts(2)));
            let shared = (world.node.id, install.clone());
            // Half the batches name the shared server first, half last: opposite orders.
            let batch = if i % 2 == 0 { vec![shared, mine] } else { vec![mine, shared] };
            tokio::spawn(async move {
                barrier.wait().await;
                let outcomes = store.apply_node_events(&batch).await.expect("a batch failed");
                if i % 2 == 0 { outcomes } else { outcomes.into_iter().rev().collect() }
            })
        })
        .collect();
    let mut applied_shared = 0;
    for handle in handles {
        let outcomes = handle.await.expect("batch task panicked");
        assert_eq!(outcomes.len(), 2);
        match &outcomes[0] {
            EventOutcome::Applied(_) => applied_shared += 1,
            EventOutcome::Refused(server) => {
                assert_eq!(server.state, ServerState::Installing, "refused: already moved")
            }
            other => panic!("shared event: {other:?}"),
        }
        assert!(matches!(outcomes[1], EventOutcome::Applied(_)), "own event: {:?}", outcomes[1]);
    }
    assert_eq!(applied_shared, 1, "the shared event is applied exactly once");
    assert_eq!(store.server_events(shared.id, 100).await.expect("events"), [install], "once in the history");
    for mine in &own {
        let stored = store.get_server(mine.id).await.expect("get");
        assert_eq!((stored.state, stored.version), (ServerState::Installing, mine.version + 1));
    }
}

/// Many concurrent `delete_server` calls for one server: exactly one succeeds, the others are
/// `NotFound` (a panel frees the server's room in placement only on the call that removed it).
pub async fn concurrent_deletes_one_winner(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.delete_server(server.id).await
            })
        })
        .collect();
    let mut removed = 0;
    for handle in handles {
        match handle.await.expect("delete task panicked") {
            Ok(()) => removed += 1,
            Err(StoreError::NotFound { .. }) => {}
            Err(other) => panic!("losers must get NotFound, got {other:?}"),
        }
    }
    assert_eq!(removed, 1, "exactly one delete removes the server");
    assert_eq!(store.get_allocation(world.allocation(0)).await.expect("allocation").server, None, "freed");
}

/// Many concurrent `update_server` calls at one version: exactly one wins and its write is the
/// one stored.
pub async fn concurrent_updates_one_winner(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let edited = Server { name: format!("writer-{i}"), ..server.clone() };
            tokio::spawn(async move {
                barrier.wait().await;
                store.update_server(&edited).await
            })
        })
        .collect();

    let mut winners = Vec::new();
    for handle in handles {
        match handle.await.expect("update task panicked") {
            Ok(updated) => winners.push(updated),
            Err(StoreError::VersionConflict { .. }) => {}
            Err(other) => panic!("losers must get VersionConflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins");
    assert_eq!(store.get_server(server.id).await.expect("get"), winners[0], "the winner's write is stored");
}

/// Several concurrent `claim_schedule_run` calls for the same due run (panel replicas seeing
/// the same due schedule): exactly one gets `true`, and its `last_run_at` and `next_run_at`
/// are the ones stored.
pub async fn concurrent_schedule_claims_one_winner(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let due = ts(100);
    let restart = schedule(server.id, "restart", Some(due));
    store.create_schedule(&restart).await.expect("create schedule");
    let barrier = Arc::new(Barrier::new(SCHEDULERS));
    let handles: Vec<_> = (0..SCHEDULERS)
        .map(|i| {
            let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), restart.id);
            let offset = i64::try_from(i).unwrap_or(0);
            let (next, ran_at) = (ts(1_000 + offset), ts(100 + offset));
            tokio::spawn(async move {
                barrier.wait().await;
                (next, ran_at, store.claim_schedule_run(id, due, Some(next), ran_at).await)
            })
        })
        .collect();

    let mut winners = Vec::new();
    for handle in handles {
        let (next, ran_at, claimed) = handle.await.expect("claimer task panicked");
        if claimed.expect("claim_schedule_run must not fail under concurrency") {
            winners.push((next, ran_at));
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins, got {winners:?}");
    let (next, ran_at) = winners[0];
    let stored = store.get_schedule(restart.id).await.expect("get");
    assert_eq!(stored, Schedule { last_run_at: Some(ran_at), next_run_at: Some(next), ..restart }, "winner's write");
}

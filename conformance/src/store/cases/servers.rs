//! Servers, their lifecycle events, schedules and backups.

use crate::store::fixtures::*;
use nexus_core::ids::*;
use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger};
use nexus_core::model::*;
use nexus_core::store::*;
use std::sync::Arc;

/// Servers round-trip every field; creating one assigns all its allocations to it and no others.
pub async fn servers_round_trip_assigns_allocations(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 4).await;
    let server = world.create_server(&*store, &[2, 0, 1]).await;
    assert_eq!(store.get_server(server.id).await.expect("get"), server, "round-trip, allocation order kept");
    for index in [0, 1, 2] {
        let allocation = store.get_allocation(world.allocation(index)).await.expect("get allocation");
        assert_eq!(allocation.server, Some(server.id), "allocation {index} assigned");
    }
    assert_eq!(store.get_allocation(world.allocation(3)).await.expect("get").server, None, "others stay free");
    assert_err!(store.get_server(ServerId::new()).await, StoreError::NotFound { .. }, "get unknown");
}

/// `list_servers` filters by owner, node and egg (empty filter: all), orders by creation time
/// then id, and pages.
pub async fn servers_listed_filtered_and_paged(store: Arc<dyn Store>) {
    let a = World::seed(&*store, 4).await;
    let b = World::seed(&*store, 2).await;
    let make = |world: &World, index: usize, at: i64| Server { created_at: ts(at), ..world.server(&[index]) };
    let a30 = make(&a, 0, 30);
    let b10 = make(&b, 0, 10);
    let a20 = make(&a, 1, 20);
    let a10 = make(&a, 2, 10);
    // Owner from `a`, node and egg from `b`: the filters are independent.
    let mixed = Server { owner: a.user.id, created_at: ts(40), ..b.server(&[1]) };
    for server in [&a30, &b10, &a20, &a10, &mixed] {
        store.create_server(server).await.expect("create server");
    }
    let ids = |servers: Vec<Server>| servers.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let list = |filter: ServerFilter, page: Page| {
        let store = Arc::clone(&store);
        async move { ids(store.list_servers(&filter, page).await.expect("list_servers")) }
    };
    let (first10, second10) = if a10.id < b10.id { (a10.id, b10.id) } else { (b10.id, a10.id) };

    let all = list(ServerFilter::default(), Page::all()).await;
    assert_eq!(all, [first10, second10, a20.id, a30.id, mixed.id], "by created_at, then id");
    let owned = list(ServerFilter { owner: Some(a.user.id), ..ServerFilter::default() }, Page::all()).await;
    assert_eq!(owned, [a10.id, a20.id, a30.id, mixed.id], "by owner");
    let on_b = list(ServerFilter { node: Some(b.node.id), ..ServerFilter::default() }, Page::all()).await;
    assert_eq!(on_b, [b10.id, mixed.id], "by node");
    let egg_a = list(ServerFilter { egg: Some(a.egg.id), ..ServerFilter::default() }, Page::all()).await;
    assert_eq!(egg_a, [a10.id, a20.id, a30.id], "by egg");
    let both =
        ServerFilter { owner: Some(a.user.id), node: Some(b.node.id), egg: Some(b.egg.id), ..ServerFilter::default() };
    assert_eq!(list(both, Page::all()).await, [mixed.id], "filters combine");
    let none = ServerFilter { owner: Some(b.user.id), node: Some(a.node.id), ..ServerFilter::default() };
    assert!(list(none, Page::all()).await.is_empty(), "no match");
    let page = list(ServerFilter { owner: Some(a.user.id), ..ServerFilter::default() }, Page { offset: 1, limit: 2 });
    assert_eq!(page.await, [a20.id, a30.id], "filter, then page");
}

/// `list_servers` orders by creation time or name, either way, ties broken by id (also
/// reversed), and pages in that order.
pub async fn servers_listed_in_order(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 4).await;
    let make = |index: usize, name: &str, at: i64| Server {
        name: name.to_owned(),
        created_at: ts(at),
        ..world.server(&[index])
    };
    let (beta, alpha, gamma, alpha2) =
        (make(0, "beta", 10), make(1, "alpha", 30), make(2, "gamma", 20), make(3, "alpha", 30));
    for server in [&beta, &alpha, &gamma, &alpha2] {
        store.create_server(server).await.expect("create server");
    }
    let (alpha_first, alpha_second) = if alpha.id < alpha2.id { (alpha.id, alpha2.id) } else { (alpha2.id, alpha.id) };
    let list = |order: ServerOrder, page: Page| {
        let store = Arc::clone(&store);
        let filter = ServerFilter { owner: Some(world.user.id), order, ..ServerFilter::default() };
        async move {
            store.list_servers(&filter, page).await.expect("list_servers").into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(ServerOrder::CreatedAt, Page::all()).await, [beta.id, gamma.id, alpha_first, alpha_second]);
    assert_eq!(list(ServerOrder::CreatedAtDesc, Page::all()).await, [alpha_second, alpha_first, gamma.id, beta.id]);
    assert_eq!(list(ServerOrder::Name, Page::all()).await, [alpha_first, alpha_second, beta.id, gamma.id]);
    assert_eq!(list(ServerOrder::NameDesc, Page::all()).await, [gamma.id, beta.id, alpha_second, alpha_first]);
    assert_eq!(list(ServerOrder::Name, Page { offset: 1, limit: 2 }).await, [alpha_second, beta.id], "pages in order");
}

/// `list_servers` with `member` lists the servers the user owns and those shared with them as
/// a subuser (not other users' servers, nor servers shared with someone else), in the usual
/// order, combined with the other filters and paged; a removed grant no longer counts.
pub async fn servers_listed_by_member(store: Arc<dyn Store>) {
    let a = World::seed(&*store, 2).await;
    let b = World::seed(&*store, 3).await;
    let guest = user(&format!("guest-{}", tag()));
    let stranger = user(&format!("stranger-{}", tag()));
    for u in [&guest, &stranger] {
        store.create_user(u).await.expect("create user");
    }
    let make = |world: &World, index: usize, at: i64| Server { created_at: ts(at), ..world.server(&[index]) };
    let a10 = make(&a, 0, 10);
    let a20 = make(&a, 1, 20);
    let b15 = make(&b, 0, 15);
    let b25 = make(&b, 1, 25);
    let b5 = make(&b, 2, 5);
    for server in [&a10, &a20, &b15, &b25, &b5] {
        store.create_server(server).await.expect("create server");
    }
    for (server, user) in [(b15.id, a.user.id), (b25.id, a.user.id), (b5.id, guest.id), (b25.id, guest.id)] {
        store.put_subuser(&subuser(server, user, &["control.console"], ts(1))).await.expect("put subuser");
    }
    let list = |filter: ServerFilter, page: Page| {
        let store = Arc::clone(&store);
        async move {
            let servers = store.list_servers(&filter, page).await.expect("list_servers");
            servers.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    let member = |user: UserId| ServerFilter { member: Some(user), ..ServerFilter::default() };

    assert_eq!(list(member(a.user.id), Page::all()).await, [a10.id, b15.id, a20.id, b25.id], "owned and shared");
    assert_eq!(list(member(b.user.id), Page::all()).await, [b5.id, b15.id, b25.id], "grants to others do not matter");
    assert_eq!(list(member(guest.id), Page::all()).await, [b5.id, b25.id], "shared only");
    assert!(list(member(stranger.id), Page::all()).await.is_empty(), "neither owned nor shared");
    assert!(list(member(UserId::new()), Page::all()).await.is_empty(), "unknown user: empty, not an error");
    let on_b = ServerFilter { node: Some(b.node.id), ..member(a.user.id) };
    assert_eq!(list(on_b, Page::all()).await, [b15.id, b25.id], "member and node combine");
    let owned_by_b = ServerFilter { owner: Some(b.user.id), ..member(a.user.id) };
    assert_eq!(list(owned_by_b, Page::all()).await, [b15.id, b25.id], "member and owner combine");
    let owned_by_a = ServerFilter { owner: Some(a.user.id), ..member(guest.id) };
    assert!(list(owned_by_a, Page::all()).await.is_empty(), "member and owner combine, no match");
    assert_eq!(list(member(a.user.id), Page { offset: 1, limit: 2 }).await, [b15.id, a20.id], "filter, then page");

    store.delete_subuser(b15.id, a.user.id).await.expect("delete grant");
    assert_eq!(list(member(a.user.id), Page::all()).await, [a10.id, a20.id, b25.id], "removed grant");
}

/// `suspended`, `deletion_requested_at`, `backup_limit` and `templates` round-trip through
/// `create_server` and `update_server`, set and cleared again.
pub async fn server_suspension_and_deletion_request_round_trip(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let requested_at = ts(50) + chrono::Duration::microseconds(123_456);
    let flagged = Server {
        suspended: true,
        deletion_requested_at: Some(requested_at),
        backup_limit: Some(3),
        templates: vec!["base@1".parse().expect("layer"), "mods@2.0".parse().expect("layer")],
        ..world.server(&[0])
    };
    store.create_server(&flagged).await.expect("create suspended server");
    assert_eq!(store.get_server(flagged.id).await.expect("get"), flagged, "round-trip through create");
    let plain = world.create_server(&*store, &[1]).await;
    let stored = store.get_server(plain.id).await.expect("get");
    assert_eq!((stored.suspended, stored.deletion_requested_at, stored.backup_limit), (false, None, None), "defaults");

    let cleared = Server {
        suspended: false,
        deletion_requested_at: None,
        backup_limit: None,
        templates: Vec::new(),
        ..flagged.clone()
    };
    let updated = store.update_server(&cleared).await.expect("clear");
    assert_eq!(updated, Server { version: flagged.version + 1, ..cleared }, "cleared by update");
    assert_eq!(store.get_server(flagged.id).await.expect("get"), updated, "stored");
    let set = Server { suspended: true, deletion_requested_at: Some(ts(70)), backup_limit: Some(0), ..updated.clone() };
    let updated = store.update_server(&set).await.expect("set");
    assert_eq!(updated, Server { version: set.version + 1, ..set }, "set by update");
    assert_eq!(store.get_server(flagged.id).await.expect("get"), updated, "stored");
    assert_eq!(store.get_server(plain.id).await.expect("get"), stored, "other servers untouched");
}

/// `create_server` fails with `AllocationUnavailable` for an allocation that is taken, on
/// another node, missing or listed twice, with `InvalidReference` for a missing owner or egg,
/// with `Duplicate` for a taken id — and then changes nothing.
pub async fn server_create_conflicts_change_nothing(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 3).await;
    let elsewhere = World::seed(&*store, 1).await;
    let existing = world.create_server(&*store, &[0]).await;
    let missing = AllocationId::new();

    let cases = [
        (world.allocation(0), "taken by another server"),
        (elsewhere.allocation(0), "on another node"),
        (missing, "does not exist"),
        (world.allocation(1), "listed twice"),
    ];
    for (extra, why) in cases {
        let server = Server { extra_allocations: vec![world.allocation(2), extra], ..world.server(&[1]) };
        match store.create_server(&server).await {
            Err(StoreError::AllocationUnavailable { allocation, .. }) => {
                assert_eq!(allocation, extra, "the error names the unavailable allocation ({why})")
            }
            other => panic!("allocation {why}: expected AllocationUnavailable, got {other:?}"),
        }
        assert_err!(store.get_server(server.id).await, StoreError::NotFound { .. }, "server stored although {why}");
    }

    let orphan = Server { owner: UserId::new(), ..world.server(&[1]) };
    assert_err!(store.create_server(&orphan).await, StoreError::InvalidReference(_), "unknown owner");
    let eggless = Server { egg: EggId::new(), ..world.server(&[1]) };
    assert_err!(store.create_server(&eggless).await, StoreError::InvalidReference(_), "unknown egg");
    // With an unknown node the allocations are also "on another node"; either error will do.
    let nodeless = Server { node: NodeId::new(), ..world.server(&[1]) };
    assert_err!(
        store.create_server(&nodeless).await,
        StoreError::InvalidReference(_) | StoreError::AllocationUnavailable { .. },
        "unknown node"
    );
    let twin = Server { id: existing.id, ..world.server(&[1]) };
    assert_err!(store.create_server(&twin).await, StoreError::Duplicate { .. }, "same id");

    for index in [1, 2] {
        assert_eq!(store.get_allocation(world.allocation(index)).await.expect("get").server, None, "still free");
    }
    assert_eq!(store.get_allocation(elsewhere.allocation(0)).await.expect("get").server, None, "still free");
    assert_eq!(store.get_server(existing.id).await.expect("get"), existing, "existing server untouched");
    let all = store.list_servers(&ServerFilter::default(), Page::all()).await.expect("list");
    assert_eq!(all, [existing], "only the first server exists");
}

/// An allocation claimed for a server id that does not exist yet can be used to create that
/// server (and only that server).
pub async fn server_create_accepts_allocation_claimed_for_it(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let planned = ServerId::new();
    let claimed = store.claim_free_allocation(world.node.id, planned).await.expect("claim").expect("free");

    let intruder = Server { primary_allocation: claimed.id, ..world.server(&[1]) };
    match store.create_server(&intruder).await {
        Err(StoreError::AllocationUnavailable { allocation, .. }) => assert_eq!(allocation, claimed.id),
        other => panic!("reserved for another server: expected AllocationUnavailable, got {other:?}"),
    }
    let server = Server { id: planned, primary_allocation: claimed.id, ..world.server(&[1]) };
    store.create_server(&server).await.expect("create with the claimed allocation");
    assert_eq!(store.get_server(planned).await.expect("get"), server);
    assert_eq!(store.get_allocation(claimed.id).await.expect("get").server, Some(planned));
}

/// `update_server` writes only at the stored version (else `VersionConflict` with both
/// versions), bumps it by one, returns the stored row, ignores allocation fields, refuses to
/// move the server to another node, and checks owner and egg.
pub async fn server_update_checks_version(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 3).await;
    let original = world.create_server(&*store, &[0]).await;

    let mut edited = original.clone();
    edited.name = "renamed".into();
    edited.image = "ghcr.io/pterodactyl/yolks:java_17".into();
    edited.environment.insert("EXTRA".into(), "1".into());
    edited.limits.memory_mb = 4096;
    edited.state = ServerState::Installed;
    let updated = store.update_server(&edited).await.expect("update at the current version");
    assert_eq!(updated, Server { version: original.version + 1, ..edited.clone() }, "fields written, version bumped");
    assert_eq!(store.get_server(original.id).await.expect("get"), updated, "returned value is what is stored");

    let stale = Server { name: "lost update".into(), ..original.clone() };
    assert_err!(
        store.update_server(&stale).await,
        StoreError::VersionConflict { expected, actual, .. } if expected == original.version && actual == updated.version,
        "stale version"
    );
    assert_eq!(store.get_server(original.id).await.expect("get"), updated, "a conflict changes nothing");

    let reallocated = Server {
        primary_allocation: world.allocation(1),
        extra_allocations: vec![world.allocation(2)],
        ..updated.clone()
    };
    let again = store.update_server(&reallocated).await.expect("update ignoring allocations");
    assert_eq!((again.primary_allocation, again.extra_allocations.clone()), (world.allocation(0), vec![]), "kept");
    assert_eq!(store.get_allocation(world.allocation(1)).await.expect("get").server, None, "not assigned");

    let elsewhere = World::seed(&*store, 1).await;
    let moved = Server { node: elsewhere.node.id, ..again.clone() };
    assert_err!(store.update_server(&moved).await, StoreError::InvalidReference(_), "moving nodes");
    let orphan = Server { owner: UserId::new(), ..again.clone() };
    assert_err!(store.update_server(&orphan).await, StoreError::InvalidReference(_), "unknown owner");
    let eggless = Server { egg: EggId::new(), ..again.clone() };
    assert_err!(store.update_server(&eggless).await, StoreError::InvalidReference(_), "unknown egg");
    assert_eq!(store.get_server(original.id).await.expect("get"), again, "rejected updates change nothing");
    let ghost = world.server(&[1]);
    assert_err!(store.update_server(&ghost).await, StoreError::NotFound { .. }, "unknown server");
}

/// `transition_server` applies an event at the expected version (else `VersionConflict`),
/// only from the stored state and only along the lifecycle table (else `StateMismatch`),
/// bumping the version and appending the event; unknown servers are `NotFound`.
pub async fn server_transition_checks_version_and_state(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let install = event(server.id, ServerState::Requested, Trigger::InstallStarted, ts(1));
    let after = store.transition_server(server.version, &install).await.expect("transition");
    assert_eq!(after, Server { state: ServerState::Installing, version: server.version + 1, ..server.clone() });
    assert_eq!(store.get_server(server.id).await.expect("get"), after, "stored");

    let done = event(server.id, ServerState::Installing, Trigger::InstallSucceeded, ts(2));
    assert_err!(
        store.transition_server(server.version, &done).await,
        StoreError::VersionConflict { expected, actual, .. } if expected == server.version && actual == after.version,
        "stale version"
    );
    assert_err!(
        store.transition_server(after.version, &install).await,
        StoreError::StateMismatch { .. },
        "event from a state the server is not in"
    );
    let forbidden = LifecycleEvent { to: ServerState::Running, ..done.clone() };
    assert_err!(
        store.transition_server(after.version, &forbidden).await,
        StoreError::StateMismatch { .. },
        "transition not in the lifecycle table"
    );
    assert_eq!(store.get_server(server.id).await.expect("get"), after, "rejected transitions change nothing");
    assert_eq!(store.server_events(server.id, 10).await.expect("events"), [install], "one event appended");

    let ghost = event(ServerId::new(), ServerState::Requested, Trigger::InstallStarted, ts(1));
    assert_err!(store.transition_server(0, &ghost).await, StoreError::NotFound { .. }, "unknown server");
}

/// `apply_node_events` applies, in order and each seeing the ones before it, the events whose
/// server is on the sending node, in the event's `from` state, along the lifecycle table; the
/// others change nothing and come back `Refused` with the server as stored, or
/// `UnknownServer`. Applied events bump the version once each and are appended to the history
/// in order.
pub async fn node_events_applied_in_order(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 3).await;
    let elsewhere = World::seed(&*store, 1).await;
    let first = world.create_server(&*store, &[0]).await;
    let second = world.create_server(&*store, &[1]).await;
    let foreign = elsewhere.create_server(&*store, &[0]).await;
    let node = world.node.id;
    let install = event(first.id, ServerState::Requested, Trigger::InstallStarted, ts(10));
    let installed = event(first.id, ServerState::Installing, Trigger::InstallSucceeded, ts(11));
    let batch = vec![
        (node, install.clone()),
        (node, installed.clone()),
        // Not in `from` any more: the two events before moved it on.
        (node, install.clone()),
        // Sent by another node.
        (elsewhere.node.id, event(first.id, ServerState::Installed, Trigger::Start, ts(12))),
        // Not in the lifecycle table.
        (
            node,
            LifecycleEvent {
                to: ServerState::Running,
                ..event(second.id, ServerState::Requested, Trigger::InstallStarted, ts(13))
            },
        ),
        // On another node.
        (node, event(foreign.id, ServerState::Requested, Trigger::InstallStarted, ts(14))),
        (node, event(ServerId::new(), ServerState::Requested, Trigger::InstallStarted, ts(15))),
        (node, event(second.id, ServerState::Requested, Trigger::InstallStarted, ts(16))),
    ];
    let outcomes = store.apply_node_events(&batch).await.expect("apply");
    let after_install = Server { state: ServerState::Installing, version: first.version + 1, ..first.clone() };
    let after_installed = Server { state: ServerState::Installed, version: first.version + 2, ..first.clone() };
    let second_after = Server { state: ServerState::Installing, version: second.version + 1, ..second.clone() };
    assert_eq!(
        outcomes,
        vec![
            EventOutcome::Applied(Box::new(after_install)),
            EventOutcome::Applied(Box::new(after_installed.clone())),
            EventOutcome::Refused(Box::new(after_installed.clone())),
            EventOutcome::Refused(Box::new(after_installed.clone())),
            EventOutcome::Refused(Box::new(second.clone())),
            EventOutcome::Refused(Box::new(foreign.clone())),
            EventOutcome::UnknownServer,
            EventOutcome::Applied(Box::new(second_after.clone())),
        ],
        "one outcome per event, in order"
    );
    assert_eq!(store.get_server(first.id).await.expect("get"), after_installed, "stored");
    assert_eq!(store.get_server(second.id).await.expect("get"), second_after, "stored");
    assert_eq!(store.get_server(foreign.id).await.expect("get"), foreign, "refused events change nothing");
    assert_eq!(store.server_events(first.id, 10).await.expect("events"), [installed, install], "history in order");
    assert_eq!(store.server_events(second.id, 10).await.expect("events").len(), 1, "only the applied event");
    assert!(store.server_events(foreign.id, 10).await.expect("events").is_empty());
    assert!(store.apply_node_events(&[]).await.expect("empty").is_empty(), "an empty batch");
}

/// `apply_node_events` against a brute-force oracle: seeded random batches (several events
/// per server, valid and invalid transitions, the wrong sender, unknown servers) give, event
/// by event, the outcome a sequential replay of [`event_applies`] gives, and leave every server
/// in the oracle's state, version and history length.
pub async fn node_events_match_a_sequential_oracle(store: Arc<dyn Store>) {
    use nexus_core::lifecycle::{TRANSITIONS, next_state};
    use std::collections::HashMap;
    let world = World::seed(&*store, 6).await;
    let other = World::seed(&*store, 0).await;
    let mut servers = Vec::new();
    for i in 0..6 {
        servers.push(world.create_server(&*store, &[i]).await);
    }
    // The oracle: (state, version, events) per server, replayed one event at a time.
    let mut oracle: HashMap<ServerId, (ServerState, u64, usize)> =
        servers.iter().map(|s| (s.id, (s.state, s.version, 0))).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    let (mut at, mut chains) = (0, 0);
    for _ in 0..25 {
        let mut batch = Vec::new();
        // Where the batch's events so far would take each server: most events follow on, so
        // a batch holds chains of several events of one server.
        let mut planned: HashMap<ServerId, ServerState> = oracle.iter().map(|(id, o)| (*id, o.0)).collect();
        for _ in 0..1 + next(24) {
            at += 1;
            let pick = next(servers.len() + 1);
            let server = servers.get(pick).map_or_else(ServerId::new, |s| s.id);
            let state = planned.get(&server).copied().unwrap_or(ServerState::Requested);
            // Mostly a transition out of the state the oracle holds, sometimes any other.
            // Not towards removal, which would end a server's part in the test early.
            let candidates: Vec<_> = TRANSITIONS
                .iter()
                .filter(|(from, _, to)| {
                    *from == state && !matches!(to, ServerState::Destroying | ServerState::Destroyed)
                })
                .collect();
            let (from, trigger, to) = match (next(5), candidates.is_empty()) {
                (0, _) | (_, true) => TRANSITIONS[next(TRANSITIONS.len())],
                _ => *candidates[next(candidates.len())],
            };
            let to = if next(10) == 0 { ServerState::Running } else { to };
            let sender = if next(8) == 0 { other.node.id } else { world.node.id };
            if from == state && sender == world.node.id && next_state(from, trigger) == Some(to) {
                planned.insert(server, to);
            }
            batch.push((sender, LifecycleEvent { server, from, to, trigger, at: ts(at) }));
        }
        let outcomes = store.apply_node_events(&batch).await.expect("apply");
        assert_eq!(outcomes.len(), batch.len(), "one outcome per event");
        let mut applied_here: HashMap<ServerId, usize> = HashMap::new();
        for (outcome, (_, event)) in outcomes.iter().zip(&batch) {
            if matches!(outcome, EventOutcome::Applied(_)) {
                *applied_here.entry(event.server).or_default() += 1;
            }
        }
        chains += applied_here.values().filter(|&&n| n > 1).count();
        for ((sender, event), outcome) in batch.iter().zip(outcomes) {
            let Some(expected) = oracle.get_mut(&event.server) else {
                assert_eq!(outcome, EventOutcome::UnknownServer, "{event:?}");
                continue;
            };
            let stored = Server { state: expected.0, version: expected.1, node: world.node.id, ..servers[0].clone() };
            let applies = event_applies(&Server { id: event.server, ..stored }, *sender, event);
            match outcome {
                EventOutcome::Applied(server) => {
                    assert!(applies, "applied, the oracle refuses: {event:?}");
                    *expected = (event.to, expected.1 + 1, expected.2 + 1);
                    assert_eq!((server.id, server.state, server.version), (event.server, expected.0, expected.1));
                }
                EventOutcome::Refused(server) => {
                    assert!(!applies, "refused, the oracle applies: {event:?}");
                    assert_eq!((server.state, server.version), (expected.0, expected.1), "refused as stored");
                }
                other => panic!("{event:?}: {other:?}"),
            }
        }
    }
    assert!(chains >= 10, "only {chains} batches applied several events of one server");
    for server in &servers {
        let stored = store.get_server(server.id).await.expect("get");
        let expected = oracle[&server.id];
        assert_eq!((stored.state, stored.version), (expected.0, expected.1), "final state of {}", server.id);
        assert_eq!(store.server_events(server.id, 1_000).await.expect("events").len(), expected.2, "history");
    }
}

/// `server_events` returns the newest `limit` events, newest first; equal timestamps: last
/// appended first.
pub async fn server_events_newest_first(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let server = world.create_server(&*store, &[0]).await;
    let other = world.create_server(&*store, &[1]).await;
    let steps = [
        (ServerState::Requested, Trigger::InstallStarted, 10),
        (ServerState::Installing, Trigger::InstallSucceeded, 20),
        (ServerState::Installed, Trigger::Start, 30),
        (ServerState::Starting, Trigger::Ready, 30),
        (ServerState::Running, Trigger::Stop, 40),
    ];
    let mut version = server.version;
    let mut events = Vec::new();
    for (from, trigger, at) in steps {
        let e = event(server.id, from, trigger, ts(at));
        version = store.transition_server(version, &e).await.expect("transition").version;
        events.push(e);
    }
    let e = event(other.id, ServerState::Requested, Trigger::InstallStarted, ts(50));
    store.transition_server(other.version, &e).await.expect("transition other");

    events.reverse();
    assert_eq!(store.server_events(server.id, 10).await.expect("events"), events, "newest first, only this server");
    assert_eq!(store.server_events(server.id, 2).await.expect("events"), events[..2], "limit");
    assert!(store.server_events(server.id, 0).await.expect("events").is_empty(), "limit 0");
    assert_eq!(store.server_events(other.id, 10).await.expect("events").len(), 1);
    assert_err!(store.server_events(ServerId::new(), 10).await, StoreError::NotFound { .. }, "unknown server");
}

/// `delete_server` removes the server with its events, schedules and backups (locked ones too),
/// frees its allocations, keeps everything of other servers and the audit log.
pub async fn server_delete_cleans_up(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 3).await;
    let doomed = world.create_server(&*store, &[0, 1]).await;
    let survivor = world.create_server(&*store, &[2]).await;
    let e = event(doomed.id, ServerState::Requested, Trigger::InstallStarted, ts(1));
    store.transition_server(doomed.version, &e).await.expect("transition");
    let doomed_schedule = schedule(doomed.id, "restart", Some(ts(100)));
    let doomed_backup = Backup { locked: true, ..backup(doomed.id, "nightly", ts(5)) };
    let survivor_schedule = schedule(survivor.id, "restart", Some(ts(100)));
    let survivor_backup = backup(survivor.id, "nightly", ts(5));
    let note = audit(AuditSubject::Server(doomed.id), "server.create", ts(0));
    store.create_schedule(&doomed_schedule).await.expect("schedule");
    store.create_schedule(&survivor_schedule).await.expect("schedule");
    store.create_backup(&doomed_backup).await.expect("backup");
    store.create_backup(&survivor_backup).await.expect("backup");
    store.append_audit(&note).await.expect("audit");

    store.delete_server(doomed.id).await.expect("delete");
    assert_err!(store.get_server(doomed.id).await, StoreError::NotFound { .. }, "server gone");
    assert_err!(store.server_events(doomed.id, 10).await, StoreError::NotFound { .. }, "events gone with it");
    assert_err!(store.get_schedule(doomed_schedule.id).await, StoreError::NotFound { .. }, "schedule gone");
    assert_err!(store.get_backup(doomed_backup.id).await, StoreError::NotFound { .. }, "locked backup gone");
    for index in [0, 1] {
        assert_eq!(store.get_allocation(world.allocation(index)).await.expect("get").server, None, "freed");
    }
    assert_eq!(store.get_schedule(survivor_schedule.id).await.expect("get"), survivor_schedule, "other kept");
    assert_eq!(store.get_backup(survivor_backup.id).await.expect("get"), survivor_backup, "other kept");
    assert_eq!(store.get_allocation(world.allocation(2)).await.expect("get").server, Some(survivor.id));
    let about = store.list_audit(Some(&AuditSubject::Server(doomed.id)), Page::all()).await.expect("audit");
    assert_eq!(about, [note], "the audit log keeps history");
    assert_err!(store.delete_server(doomed.id).await, StoreError::NotFound { .. }, "delete twice");

    let reborn = world.create_server(&*store, &[0, 1]).await;
    assert!(store.server_events(reborn.id, 10).await.expect("events").is_empty(), "no events inherited");
}

/// Schedules round-trip with their tasks, list by name per server, update and delete; the
/// server must exist.
pub async fn schedules_round_trip(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let server = world.create_server(&*store, &[0]).await;
    let other = world.create_server(&*store, &[1]).await;
    let mut restart = schedule(server.id, "b-restart", Some(ts(100)));
    let backup_task = Schedule {
        tasks: vec![Task {
            id: TaskId::new(),
            action: TaskAction::Backup(vec!["*.log".into(), "cache/".into()]),
            offset_seconds: 0,
            continue_on_failure: false,
        }],
        ..schedule(server.id, "a-backup", None)
    };
    let foreign = schedule(other.id, "0-other", None);
    for s in [&restart, &backup_task, &foreign] {
        store.create_schedule(s).await.expect("create schedule");
    }
    assert_eq!(store.get_schedule(restart.id).await.expect("get"), restart, "round-trip");
    assert_eq!(store.list_schedules(server.id).await.expect("list"), [backup_task.clone(), restart.clone()], "by name");
    assert_err!(store.create_schedule(&restart).await, StoreError::Duplicate { .. }, "same id");

    restart.enabled = false;
    restart.only_when_online = true;
    restart.cron = "*/5 * * * *".into();
    restart.timezone = "UTC".into();
    restart.tasks.reverse();
    restart.last_run_at = Some(ts(90));
    restart.next_run_at = Some(ts(120));
    store.update_schedule(&restart).await.expect("update");
    assert_eq!(store.get_schedule(restart.id).await.expect("get"), restart, "update replaces every field");

    store.delete_schedule(restart.id).await.expect("delete");
    assert_err!(store.get_schedule(restart.id).await, StoreError::NotFound { .. }, "deleted");
    assert_err!(store.delete_schedule(restart.id).await, StoreError::NotFound { .. }, "delete twice");
    assert_err!(store.update_schedule(&restart).await, StoreError::NotFound { .. }, "update unknown");
    assert_eq!(store.list_schedules(server.id).await.expect("list"), [backup_task], "one left");

    let orphan = schedule(ServerId::new(), "orphan", None);
    assert_err!(store.create_schedule(&orphan).await, StoreError::InvalidReference(_), "unknown server");
    assert_err!(store.list_schedules(ServerId::new()).await, StoreError::NotFound { .. }, "list of unknown server");
}

/// `claim_schedule_run` claims a due run once: the first claim of a `due` answers `true` and
/// sets `last_run_at` and `next_run_at`; the same `due` again, another `due`, or a disabled
/// schedule answer `false` and change nothing; an unknown schedule is `NotFound`. `due` is
/// compared at the precision timestamps are stored with (microseconds).
pub async fn schedule_runs_claimed_once(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    let due = ts(100) + chrono::Duration::microseconds(250_001);
    let restart = schedule(server.id, "restart", Some(due));
    let twin = schedule(server.id, "twin", Some(due));
    let disabled = Schedule { enabled: false, ..schedule(server.id, "disabled", Some(due)) };
    for s in [&restart, &twin, &disabled] {
        store.create_schedule(s).await.expect("create schedule");
    }
    let get = |id: ScheduleId| {
        let store = Arc::clone(&store);
        async move { store.get_schedule(id).await.expect("get schedule") }
    };

    assert!(store.claim_schedule_run(restart.id, due, Some(ts(200)), ts(101)).await.expect("claim"), "first claim");
    let claimed = Schedule { last_run_at: Some(ts(101)), next_run_at: Some(ts(200)), ..restart.clone() };
    assert_eq!(get(restart.id).await, claimed, "last and next run written");
    assert!(!store.claim_schedule_run(restart.id, due, Some(ts(300)), ts(102)).await.expect("claim"), "same due");
    assert!(!store.claim_schedule_run(restart.id, ts(150), Some(ts(300)), ts(102)).await.expect("claim"), "other due");
    assert_eq!(get(restart.id).await, claimed, "refused claims change nothing");
    assert_eq!(get(twin.id).await, twin, "only the claimed schedule changes");

    assert!(store.claim_schedule_run(restart.id, ts(200), None, ts(201)).await.expect("claim"), "next run");
    let finished = Schedule { last_run_at: Some(ts(201)), next_run_at: None, ..restart.clone() };
    assert_eq!(get(restart.id).await, finished, "no next run");
    assert!(!store.claim_schedule_run(restart.id, ts(200), None, ts(202)).await.expect("claim"), "nothing due");

    assert!(!store.claim_schedule_run(disabled.id, due, Some(ts(200)), ts(101)).await.expect("claim"), "disabled");
    assert_eq!(get(disabled.id).await, disabled, "a disabled schedule is not claimed");
    assert_err!(
        store.claim_schedule_run(ScheduleId::new(), due, None, ts(101)).await,
        StoreError::NotFound { .. },
        "unknown schedule"
    );
}

/// `due_schedules` returns enabled schedules with `next_run_at <= now` (any server), soonest
/// first.
pub async fn due_schedules_soonest_first(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let a = world.create_server(&*store, &[0]).await;
    let b = world.create_server(&*store, &[1]).await;
    let later = schedule(a.id, "later", Some(ts(30)));
    let soonest = schedule(b.id, "soonest", Some(ts(10)));
    let disabled = Schedule { enabled: false, ..schedule(a.id, "disabled", Some(ts(5))) };
    let unplanned = schedule(a.id, "unplanned", None);
    let future = schedule(b.id, "future", Some(ts(41)));
    let exactly_now = schedule(a.id, "now", Some(ts(40)));
    for s in [&later, &soonest, &disabled, &unplanned, &future, &exactly_now] {
        store.create_schedule(s).await.expect("create schedule");
    }
    let due = store.due_schedules(ts(40)).await.expect("due");
    assert_eq!(due, [soonest, later, exactly_now], "enabled, due by now inclusive, soonest first");
    assert!(store.due_schedules(ts(9)).await.expect("due").is_empty(), "nothing due yet");
}

/// Backups round-trip, list newest first per server, update, and a locked backup cannot be
/// deleted (`InUse`) until unlocked; the server must exist.
pub async fn backups_round_trip_and_lock(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let server = world.create_server(&*store, &[0]).await;
    let other = world.create_server(&*store, &[1]).await;
    let mut old = backup(server.id, "old", ts(10));
    let new = backup(server.id, "new", ts(30));
    let mid = backup(server.id, "mid", ts(20));
    let foreign = backup(other.id, "foreign", ts(40));
    for b in [&old, &new, &mid, &foreign] {
        store.create_backup(b).await.expect("create backup");
    }
    assert_eq!(store.get_backup(mid.id).await.expect("get"), mid, "round-trip");
    let listed: Vec<BackupId> = store.list_backups(server.id).await.expect("list").into_iter().map(|b| b.id).collect();
    assert_eq!(listed, [new.id, mid.id, old.id], "newest first, only this server");
    assert_err!(store.create_backup(&old).await, StoreError::Duplicate { .. }, "same id");

    old.state = BackupState::Succeeded;
    old.bytes = Some(5 * 1024 * 1024 * 1024);
    old.checksum = Some("sha256:abc".into());
    old.completed_at = Some(ts(11));
    old.locked = true;
    store.update_backup(&old).await.expect("update");
    assert_eq!(store.get_backup(old.id).await.expect("get"), old, "update replaces every field");

    assert_err!(store.delete_backup(old.id).await, StoreError::InUse { .. }, "locked");
    assert_eq!(store.get_backup(old.id).await.expect("get"), old, "still there");
    old.locked = false;
    store.update_backup(&old).await.expect("unlock");
    store.delete_backup(old.id).await.expect("delete unlocked");
    assert_err!(store.get_backup(old.id).await, StoreError::NotFound { .. }, "deleted");
    assert_err!(store.delete_backup(old.id).await, StoreError::NotFound { .. }, "delete twice");
    assert_err!(store.update_backup(&old).await, StoreError::NotFound { .. }, "update unknown");

    let orphan = backup(ServerId::new(), "orphan", ts(1));
    assert_err!(store.create_backup(&orphan).await, StoreError::InvalidReference(_), "unknown server");
    assert_err!(store.list_backups(ServerId::new()).await, StoreError::NotFound { .. }, "list of unknown server");
}

//! Locations, nodes, allocations, eggs.

use crate::store::fixtures::*;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::*;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// Location short codes are unique (also on update); listing is ordered by short code; a
/// location used by a node cannot be deleted (`InUse`); unknown ones are `NotFound`.
pub async fn locations_unique_ordered_and_guarded(store: Arc<dyn Store>) {
    let fra = location("fra1");
    let ams = location("ams1");
    store.create_location(&fra).await.expect("create fra1");
    store.create_location(&ams).await.expect("create ams1");
    assert_err!(store.create_location(&location("fra1")).await, StoreError::Duplicate { .. }, "same short code");
    assert_err!(
        store.create_location(&Location { id: fra.id, ..location("lon1") }).await,
        StoreError::Duplicate { .. },
        "same id"
    );
    assert_eq!(store.list_locations().await.expect("list"), [ams.clone(), fra.clone()], "ordered by short code");
    let renamed = Location { long: "Frankfurt am Main".into(), ..fra.clone() };
    store.update_location(&renamed).await.expect("update");
    assert_err!(
        store.update_location(&Location { short: "ams1".into(), ..fra.clone() }).await,
        StoreError::Duplicate { .. },
        "renamed onto another's short code"
    );
    assert_err!(store.update_location(&location("nowhere")).await, StoreError::NotFound { .. }, "unknown location");
    let fra = renamed;
    assert_eq!(store.list_locations().await.expect("list"), [ams.clone(), fra.clone()], "updated in place");

    let node = Node { location: Some(fra.id), ..node("fra-node") };
    store.create_node(&node).await.expect("create node in fra1");
    assert_err!(store.delete_location(fra.id).await, StoreError::InUse { .. }, "location used by a node");
    store.delete_location(ams.id).await.expect("delete unused location");
    assert_eq!(store.list_locations().await.expect("list"), std::slice::from_ref(&fra), "ams1 gone, fra1 kept");
    assert_err!(store.delete_location(ams.id).await, StoreError::NotFound { .. }, "delete twice");

    store.delete_node(node.id).await.expect("delete node");
    store.delete_location(fra.id).await.expect("delete location once unused");
    assert!(store.list_locations().await.expect("list").is_empty());
}

/// Nodes round-trip every field, `update_node` replaces every field, `list_nodes` is ordered by
/// name; unknown nodes are `NotFound`.
pub async fn nodes_round_trip(store: Arc<dyn Store>) {
    let fra = location("fra1");
    store.create_location(&fra).await.expect("create location");
    let mut b = Node { location: Some(fra.id), ..node("b-node") };
    let a = node("a-node");
    let c = Node { status: NodeStatus::Offline, ..node("c-node") };
    for n in [&b, &a, &c] {
        store.create_node(n).await.expect("create node");
    }
    assert_eq!(store.get_node(b.id).await.expect("get"), b, "get_node returns what was created");

    b.fqdn = "b2.example.net".into();
    b.daemon_port = 8443;
    b.token_hash = "sha256:rotated".into();
    b.location = None;
    b.tags = BTreeSet::from(["eu".to_owned(), "ddos-protected".to_owned()]);
    b.capacity = NodeCapacity { memory_mb: 1, disk_mb: 2, cpu_percent: 3 };
    b.overallocation = Overallocation { memory_percent: None, disk_percent: Some(50), cpu_percent: Some(10) };
    b.maintenance = true;
    b.status = NodeStatus::Offline;
    b.last_heartbeat = Some(ts(7));
    store.update_node(&b).await.expect("update");
    assert_eq!(store.get_node(b.id).await.expect("get"), b, "update_node replaces every field");

    let names: Vec<String> = store.list_nodes().await.expect("list").into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["a-node", "b-node", "c-node"], "ordered by name");

    let ghost = node("ghost");
    assert_err!(store.get_node(ghost.id).await, StoreError::NotFound { .. }, "get unknown");
    assert_err!(store.update_node(&ghost).await, StoreError::NotFound { .. }, "update unknown");
    assert_err!(store.delete_node(ghost.id).await, StoreError::NotFound { .. }, "delete unknown");
}

/// Node names are unique (create and update); a node's location must exist.
pub async fn nodes_unique_and_checked(store: Arc<dyn Store>) {
    let a = node("alpha");
    let b = node("beta");
    store.create_node(&a).await.expect("create alpha");
    store.create_node(&b).await.expect("create beta");
    assert_err!(store.create_node(&node("alpha")).await, StoreError::Duplicate { .. }, "same name");
    assert_err!(store.create_node(&Node { id: a.id, ..node("gamma") }).await, StoreError::Duplicate { .. }, "same id");
    let renamed = Node { name: "alpha".into(), ..b.clone() };
    assert_err!(store.update_node(&renamed).await, StoreError::Duplicate { .. }, "rename to a taken name");
    assert_eq!(store.get_node(b.id).await.expect("get"), b, "failed update changes nothing");

    let lost = Node { location: Some(LocationId::new()), ..node("lost") };
    assert_err!(store.create_node(&lost).await, StoreError::InvalidReference(_), "create with unknown location");
    assert_err!(store.get_node(lost.id).await, StoreError::NotFound { .. }, "failed create stores nothing");
    let moved = Node { location: Some(LocationId::new()), ..a.clone() };
    assert_err!(store.update_node(&moved).await, StoreError::InvalidReference(_), "update to unknown location");
    assert_eq!(store.list_nodes().await.expect("list").len(), 2);
}

/// A node with servers cannot be deleted (`InUse`); deleting an empty node removes
/// its allocations.
pub async fn node_delete_guarded_by_servers(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    let server = world.create_server(&*store, &[0]).await;
    assert_err!(store.delete_node(world.node.id).await, StoreError::InUse { .. }, "node has a server");
    assert_eq!(store.get_node(world.node.id).await.expect("get"), world.node, "blocked delete changes nothing");

    store.delete_server(server.id).await.expect("delete server");
    store.delete_node(world.node.id).await.expect("delete empty node");
    assert_err!(store.get_node(world.node.id).await, StoreError::NotFound { .. }, "node gone");
    for allocation in &world.allocations {
        assert_err!(store.get_allocation(allocation.id).await, StoreError::NotFound { .. }, "allocations go too");
    }
}

/// `record_heartbeat` stores the time and marks the node online; `mark_stale_nodes_offline`
/// marks online nodes whose heartbeat is older than the cutoff (or missing) offline and returns
/// exactly those.
pub async fn heartbeats_and_stale_nodes(store: Arc<dyn Store>) {
    let fresh = Node { status: NodeStatus::Offline, ..node("fresh") };
    let stale = node("stale");
    let silent = node("silent"); // online, never reported
    let gone = Node { status: NodeStatus::Offline, last_heartbeat: Some(ts(1)), ..node("gone") };
    let edge = node("edge");
    for n in [&fresh, &stale, &silent, &gone, &edge] {
        store.create_node(n).await.expect("create node");
    }
    store.record_heartbeat(fresh.id, ts(100)).await.expect("heartbeat fresh");
    store.record_heartbeat(stale.id, ts(50)).await.expect("heartbeat stale");
    store.record_heartbeat(edge.id, ts(60)).await.expect("heartbeat edge");
    let got = store.get_node(fresh.id).await.expect("get fresh");
    assert_eq!((got.status, got.last_heartbeat), (NodeStatus::Online, Some(ts(100))), "heartbeat marks online");
    assert_eq!(
        store.get_node(fresh.id).await.expect("get"),
        Node { status: NodeStatus::Online, last_heartbeat: Some(ts(100)), ..fresh.clone() },
        "heartbeat changes nothing else"
    );

    let marked: HashSet<NodeId> = store.mark_stale_nodes_offline(ts(60)).await.expect("mark").into_iter().collect();
    assert_eq!(marked, HashSet::from([stale.id, silent.id]), "stale and never-reported online nodes only");
    for (n, status) in [
        (&fresh, NodeStatus::Online),
        (&stale, NodeStatus::Offline),
        (&silent, NodeStatus::Offline),
        (&gone, NodeStatus::Offline),
        (&edge, NodeStatus::Online),
    ] {
        assert_eq!(store.get_node(n.id).await.expect("get").status, status, "status of {}", n.name);
    }
    assert_eq!(store.get_node(stale.id).await.expect("get").last_heartbeat, Some(ts(50)), "heartbeat time kept");
    assert!(store.mark_stale_nodes_offline(ts(60)).await.expect("mark again").is_empty(), "offline nodes not returned");

    store.record_heartbeat(stale.id, ts(200)).await.expect("heartbeat again");
    assert_eq!(store.get_node(stale.id).await.expect("get").status, NodeStatus::Online, "back online");
    assert_err!(store.record_heartbeat(NodeId::new(), ts(1)).await, StoreError::NotFound { .. }, "unknown node");
}

/// `record_heartbeats` records one time for many nodes and marks them online, answering what
/// each known node was before (status, whether it had ever reported) once per node, however
/// often it is named; unknown nodes are left out and nothing else changes.
pub async fn heartbeats_recorded_in_batches(store: Arc<dyn Store>) {
    let never = Node { status: NodeStatus::Offline, ..node("never") };
    let online = Node { last_heartbeat: Some(ts(50)), ..node("online") };
    let away = Node { status: NodeStatus::Offline, last_heartbeat: Some(ts(40)), ..node("away") };
    let untouched = Node { last_heartbeat: Some(ts(30)), ..node("untouched") };
    for n in [&never, &online, &away, &untouched] {
        store.create_node(n).await.expect("create node");
    }
    assert!(store.record_heartbeats(&[], ts(1)).await.expect("no nodes").is_empty(), "an empty batch");

    let batch = [away.id, NodeId::new(), never.id, online.id, away.id];
    let mut recorded = store.record_heartbeats(&batch, ts(100)).await.expect("record");
    recorded.sort_by_key(|r| r.node);
    let mut expected = vec![
        HeartbeatRecorded::new(never.id, NodeStatus::Offline, true),
        HeartbeatRecorded::new(online.id, NodeStatus::Online, false),
        HeartbeatRecorded::new(away.id, NodeStatus::Offline, false),
    ];
    expected.sort_by_key(|r| r.node);
    assert_eq!(recorded, expected, "each known node once, as it was before");
    for n in [&never, &online, &away] {
        assert_eq!(
            store.get_node(n.id).await.expect("get"),
            Node { status: NodeStatus::Online, last_heartbeat: Some(ts(100)), ..n.clone() },
            "{} recorded, nothing else changed",
            n.name
        );
    }
    assert_eq!(store.get_node(untouched.id).await.expect("get"), untouched, "a node not in the batch");

    let again = store.record_heartbeats(&[never.id], ts(101)).await.expect("again");
    assert_eq!(again, [HeartbeatRecorded::new(never.id, NodeStatus::Online, false)], "now online, reported before");
    let marked = store.mark_stale_nodes_offline(ts(101)).await.expect("mark");
    assert_eq!(
        marked.into_iter().collect::<HashSet<_>>(),
        HashSet::from([online.id, away.id, untouched.id]),
        "batched heartbeats are what the stale-node sweep reads"
    );
}

/// `node_usage` has one entry per node (servers or not) summing its servers' limits and
/// counting its free allocations.
pub async fn node_usage_sums_servers_per_node(store: Arc<dyn Store>) {
    let busy = World::seed(&*store, 4).await;
    let idle = World::seed(&*store, 3).await;
    let bare = node("bare");
    store.create_node(&bare).await.expect("create bare node");

    let mut first = busy.server(&[0, 1]);
    first.limits = ServerLimits { memory_mb: 1024, disk_mb: 10_000, cpu_percent: 100, ..first.limits };
    let mut second = busy.server(&[2]);
    second.limits = ServerLimits { memory_mb: 2048, disk_mb: 5_000, cpu_percent: 250, ..second.limits };
    store.create_server(&first).await.expect("create first");
    store.create_server(&second).await.expect("create second");

    let usage = store.node_usage().await.expect("node_usage");
    assert_eq!(usage.len(), 3, "one entry per node: {usage:?}");
    let of = |id: NodeId| {
        let found: Vec<&NodeUsage> = usage.iter().filter(|u| u.node == Some(id)).collect();
        assert_eq!(found.len(), 1, "exactly one entry for node {id}: {usage:?}");
        *found[0]
    };
    assert_eq!(
        of(busy.node.id),
        NodeUsage {
            node: Some(busy.node.id),
            servers: 2,
            memory_mb: 3072,
            disk_mb: 15_000,
            cpu_percent: 350,
            free_allocations: 1
        }
    );
    assert_eq!(of(idle.node.id), NodeUsage { node: Some(idle.node.id), free_allocations: 3, ..NodeUsage::default() });
    assert_eq!(of(bare.id), NodeUsage { node: Some(bare.id), ..NodeUsage::default() });
}

/// Allocations round-trip; `list_allocations` is ordered by address (numerically: 10.0.0.9
/// before 10.0.0.10), then port; unknown ones are `NotFound`.
pub async fn allocations_round_trip_in_address_order(store: Arc<dyn Store>) {
    let n = node("ports");
    let other = node("others");
    store.create_node(&n).await.expect("create node");
    store.create_node(&other).await.expect("create other node");
    let high_ip = allocation(n.id, [10, 0, 0, 10], 2000);
    let big_port = allocation(n.id, [10, 0, 0, 9], 25565);
    let aliased = Allocation { alias: Some("play.example.com".into()), ..allocation(n.id, [10, 0, 0, 9], 3000) };
    let low = allocation(n.id, [10, 0, 0, 9], 2000);
    store.create_allocations(&[high_ip.clone(), big_port.clone(), aliased.clone()]).await.expect("create batch");
    store.create_allocations(std::slice::from_ref(&low)).await.expect("create single");
    store.create_allocations(&[allocation(other.id, [10, 0, 0, 1], 1)]).await.expect("create on other node");
    store.create_allocations(&[]).await.expect("an empty batch is fine");

    assert_eq!(store.get_allocation(aliased.id).await.expect("get"), aliased, "round-trip");
    assert_eq!(
        store.list_allocations(n.id).await.expect("list"),
        [low, aliased, big_port, high_ip],
        "this node's allocations, ordered by ip then port"
    );
    assert_err!(store.get_allocation(AllocationId::new()).await, StoreError::NotFound { .. }, "get unknown");
    assert_err!(store.list_allocations(NodeId::new()).await, StoreError::NotFound { .. }, "list of unknown node");
}

/// `ip:port` is unique per node (not globally); a batch is inserted all or none; the node must
/// exist; allocations are created unassigned.
pub async fn allocations_unique_per_node_all_or_nothing(store: Arc<dyn Store>) {
    let n = node("one");
    let m = node("two");
    store.create_node(&n).await.expect("create node one");
    store.create_node(&m).await.expect("create node two");
    let taken = allocation(n.id, [10, 0, 0, 1], 1000);
    store.create_allocations(std::slice::from_ref(&taken)).await.expect("create first");

    let innocent = allocation(n.id, [10, 0, 0, 1], 1001);
    let clash = allocation(n.id, [10, 0, 0, 1], 1000);
    assert_err!(
        store.create_allocations(&[innocent.clone(), clash]).await,
        StoreError::Duplicate { .. },
        "address taken on the node"
    );
    assert_err!(store.get_allocation(innocent.id).await, StoreError::NotFound { .. }, "all or nothing");

    let twin_a = allocation(n.id, [10, 0, 0, 1], 1002);
    let twin_b = allocation(n.id, [10, 0, 0, 1], 1002);
    assert_err!(
        store.create_allocations(&[twin_a.clone(), twin_b]).await,
        StoreError::Duplicate { .. },
        "same address twice in one batch"
    );
    assert_err!(store.get_allocation(twin_a.id).await, StoreError::NotFound { .. }, "all or nothing");

    let same_id = Allocation { id: taken.id, ..allocation(n.id, [10, 0, 0, 1], 1003) };
    assert_err!(store.create_allocations(&[same_id]).await, StoreError::Duplicate { .. }, "same id");
    let orphan = allocation(NodeId::new(), [10, 0, 0, 1], 1004);
    assert_err!(store.create_allocations(&[orphan]).await, StoreError::InvalidReference(_), "unknown node");
    let assigned = Allocation { server: Some(ServerId::new()), ..allocation(n.id, [10, 0, 0, 1], 1005) };
    assert_err!(store.create_allocations(&[assigned]).await, StoreError::InvalidReference(_), "created assigned");

    store.create_allocations(&[allocation(m.id, [10, 0, 0, 1], 1000)]).await.expect("same address on another node");
    assert_eq!(store.list_allocations(n.id).await.expect("list"), [taken], "only the first allocation on node one");
}

/// An assigned allocation cannot be deleted (`InUse`); a free one can.
pub async fn allocation_delete_guarded_when_assigned(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 2).await;
    world.create_server(&*store, &[0]).await;
    assert_err!(
        store.delete_allocation(world.allocation(0)).await,
        StoreError::InUse { .. },
        "allocation assigned to a server"
    );
    assert!(store.get_allocation(world.allocation(0)).await.is_ok(), "blocked delete keeps it");
    store.delete_allocation(world.allocation(1)).await.expect("delete free allocation");
    assert_err!(store.get_allocation(world.allocation(1)).await, StoreError::NotFound { .. }, "deleted");
    assert_err!(store.delete_allocation(world.allocation(1)).await, StoreError::NotFound { .. }, "delete twice");
}

/// `claim_free_allocation` hands out the lowest free `ip:port` first, marks it as the given
/// server's (which need not exist yet), returns `None` when the node is full, and `NotFound`
/// for an unknown node.
pub async fn claim_free_allocation_lowest_first(store: Arc<dyn Store>) {
    let n = node("claims");
    store.create_node(&n).await.expect("create node");
    let p3000 = allocation(n.id, [10, 0, 0, 1], 3000);
    let p1000 = allocation(n.id, [10, 0, 0, 1], 1000);
    let p2000 = allocation(n.id, [10, 0, 0, 1], 2000);
    let other_ip = allocation(n.id, [10, 0, 0, 2], 10);
    store.create_allocations(&[p3000.clone(), other_ip.clone(), p1000.clone(), p2000.clone()]).await.expect("create");

    let mut claimed = Vec::new();
    for _ in 0..4 {
        let server = ServerId::new();
        let allocation = store.claim_free_allocation(n.id, server).await.expect("claim").expect("a free allocation");
        assert_eq!(allocation.server, Some(server), "returned allocation names its server");
        assert_eq!(store.get_allocation(allocation.id).await.expect("get").server, Some(server), "stored");
        claimed.push(allocation.id);
    }
    assert_eq!(claimed, [p1000.id, p2000.id, p3000.id, other_ip.id], "lowest ip, then port, first");
    assert_eq!(store.claim_free_allocation(n.id, ServerId::new()).await.expect("claim"), None, "node full");
    assert_err!(
        store.claim_free_allocation(NodeId::new(), ServerId::new()).await,
        StoreError::NotFound { .. },
        "unknown node"
    );
}

/// Claiming for an existing server appends the allocation to its `extra_allocations` and bumps
/// its version; claiming on a node the server is not on is `InvalidReference`.
pub async fn claim_for_existing_server_extends_it(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 3).await;
    let elsewhere = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;

    let claimed = store.claim_free_allocation(world.node.id, server.id).await.expect("claim").expect("free");
    assert_eq!(claimed.id, world.allocation(1));
    let stored = store.get_server(server.id).await.expect("get");
    assert_eq!(stored.extra_allocations, [claimed.id], "claimed allocation joins the server");
    assert_eq!(stored.version, server.version + 1, "a claim is a write to the server");

    assert_err!(
        store.claim_free_allocation(elsewhere.node.id, server.id).await,
        StoreError::InvalidReference(_),
        "server lives on another node"
    );
    assert_eq!(store.get_allocation(elsewhere.allocation(0)).await.expect("get").server, None, "nothing claimed");
}

/// Eggs round-trip every field (JSON-ish ones included), `list_eggs` is ordered by name,
/// `update_egg` replaces every field, unknown eggs are `NotFound`.
pub async fn eggs_round_trip(store: Arc<dyn Store>) {
    let mut paper = egg("Paper");
    let forge =
        Egg { source_format: EggSourceFormat::PlcnV3, icon: Some("data:image/png;base64,AA==".into()), ..egg("Forge") };
    let vanilla = Egg { source_uuid: None, update_url: None, exported_at: None, ..egg("Vanilla") };
    for e in [&paper, &forge, &vanilla] {
        store.create_egg(e).await.expect("create egg");
    }
    assert_eq!(store.get_egg(paper.id).await.expect("get"), paper, "round-trip");
    assert_eq!(store.get_egg(vanilla.id).await.expect("get"), vanilla, "round-trip with empty options");
    assert_err!(store.create_egg(&Egg { id: paper.id, ..egg("Clone") }).await, StoreError::Duplicate { .. }, "id");

    paper.description = "Updated".into();
    paper.stop = StopMethod::Signal(StopSignal::Interrupt);
    paper.done = vec![DoneMatcher::Regex("^Done \\(.*\\)!".into())];
    paper.variables.clear();
    paper.logs = serde_json::json!({ "custom": true, "location": "logs/latest.log" });
    store.update_egg(&paper).await.expect("update");
    assert_eq!(store.get_egg(paper.id).await.expect("get"), paper, "update replaces every field");

    let names: Vec<String> = store.list_eggs().await.expect("list").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["Forge", "Paper", "Vanilla"], "ordered by name");

    store.delete_egg(forge.id).await.expect("delete");
    assert_err!(store.get_egg(forge.id).await, StoreError::NotFound { .. }, "deleted");
    assert_err!(store.delete_egg(forge.id).await, StoreError::NotFound { .. }, "delete twice");
    assert_err!(store.update_egg(&forge).await, StoreError::NotFound { .. }, "update unknown");
    assert_eq!(store.list_eggs().await.expect("list").len(), 2);
}

/// An egg used by servers cannot be deleted (`InUse`).
pub async fn egg_delete_guarded_by_servers(store: Arc<dyn Store>) {
    let world = World::seed(&*store, 1).await;
    let server = world.create_server(&*store, &[0]).await;
    assert_err!(store.delete_egg(world.egg.id).await, StoreError::InUse { .. }, "egg used by a server");
    assert_eq!(store.get_egg(world.egg.id).await.expect("get"), world.egg, "blocked delete changes nothing");
    store.delete_server(server.id).await.expect("delete server");
    store.delete_egg(world.egg.id).await.expect("delete unused egg");
}

/// Nests round-trip, list by name, keep names unique (also on update), hold eggs that name
/// them (an unknown nest is refused) and cannot be deleted while they do.
pub async fn nests_group_eggs_and_are_guarded_by_them(store: Arc<dyn Store>) {
    let t = tag();
    let nest =
        |name: &str| Nest { id: NestId::new(), name: format!("{name}-{t}"), description: format!("{name} eggs") };
    let (games, tools) = (nest("games"), nest("tools"));
    store.create_nest(&tools).await.expect("create nest");
    store.create_nest(&games).await.expect("create nest");
    assert_eq!(store.get_nest(games.id).await.expect("get"), games);
    let listed: Vec<Nest> =
        store.list_nests().await.expect("list").into_iter().filter(|n| n.name.ends_with(&t)).collect();
    assert_eq!(listed, [games.clone(), tools.clone()], "by name");
    let twin = Nest { id: NestId::new(), ..games.clone() };
    assert_err!(store.create_nest(&twin).await, StoreError::Duplicate { .. }, "same name");
    let clash = Nest { name: games.name.clone(), ..tools.clone() };
    assert_err!(store.update_nest(&clash).await, StoreError::Duplicate { .. }, "renamed onto another");
    let renamed = Nest { description: "changed".into(), ..tools.clone() };
    store.update_nest(&renamed).await.expect("update");
    assert_eq!(store.get_nest(tools.id).await.expect("get"), renamed);
    assert_err!(store.get_nest(NestId::new()).await, StoreError::NotFound { .. }, "unknown nest");

    let stray = Egg { nest: Some(NestId::new()), ..egg("Stray") };
    assert_err!(store.create_egg(&stray).await, StoreError::InvalidReference(_), "unknown nest");
    let grouped = Egg { nest: Some(games.id), ..egg("Grouped") };
    store.create_egg(&grouped).await.expect("egg in a nest");
    assert_eq!(store.get_egg(grouped.id).await.expect("get").nest, Some(games.id));
    assert_err!(store.delete_nest(games.id).await, StoreError::InUse { .. }, "nest holding an egg");
    let moved = Egg { nest: Some(NestId::new()), ..grouped.clone() };
    assert_err!(store.update_egg(&moved).await, StoreError::InvalidReference(_), "moved to an unknown nest");
    store.update_egg(&Egg { nest: None, ..grouped.clone() }).await.expect("out of the nest");
    assert_eq!(store.get_egg(grouped.id).await.expect("get").nest, None);
    store.delete_nest(games.id).await.expect("delete an empty nest");
    assert_err!(store.get_nest(games.id).await, StoreError::NotFound { .. }, "deleted");
}

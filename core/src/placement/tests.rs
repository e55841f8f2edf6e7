//! Behaviour tests of placement, and a property test against a brute-force scan.

use super::Strategy;
use super::*;
use crate::ids::LocationId;
use crate::model::{NodeCapacity, NodeStatus, Overallocation};
use proptest::prelude::{Strategy as _, *};
use std::collections::BTreeSet;
use uuid::Uuid;

fn id(n: u128) -> NodeId {
    NodeId(Uuid::from_u128(n))
}

fn loc(n: u128) -> LocationId {
    LocationId(Uuid::from_u128(0x10C << 64 | n))
}

fn node(n: u128, memory_mb: u64) -> Node {
    Node {
        id: id(n),
        name: format!("node-{n}"),
        fqdn: format!("node-{n}.example.com"),
        daemon_port: 8080,
        token_hash: String::new(),
        location: None,
        tags: BTreeSet::new(),
        capacity: NodeCapacity { memory_mb, disk_mb: 100_000, cpu_percent: 400 },
        overallocation: Overallocation::default(),
        maintenance: false,
        status: NodeStatus::Online,
        last_heartbeat: None,
    }
}

fn usage(n: u128, memory_mb: u64, free_allocations: u64) -> NodeUsage {
    NodeUsage { node: Some(id(n)), memory_mb, free_allocations, ..NodeUsage::default() }
}

fn free(n: u128) -> NodeUsage {
    usage(n, 0, 100)
}

fn placement(nodes: &[Node]) -> ScoringPlacement {
    let usage: Vec<_> = nodes
        .iter()
        .map(|node| NodeUsage { node: Some(node.id), free_allocations: 100, ..NodeUsage::default() })
        .collect();
    ScoringPlacement::new(nodes, &usage, PlacementConfig::default())
}

fn rejections(result: Result<PlacementDecision, PlacementError>) -> Rejections {
    match result {
        Err(PlacementError::NoCapacity(rejections)) => rejections,
        other => panic!("expected NoCapacity, got {other:?}"),
    }
}

#[test]
fn trait_is_object_safe() {
    let placement: Box<dyn Placement> = Box::new(placement(&[node(1, 1024)]));
    assert_eq!(placement.decide(&PlacementRequest::new(512, 0, 0)).map(|d| d.node), Ok(id(1)));
}

#[test]
fn offline_and_maintenance_nodes_are_skipped() {
    let mut offline = node(1, 8192);
    offline.status = NodeStatus::Offline;
    let mut maintenance = node(2, 8192);
    maintenance.maintenance = true;
    let mut placement = placement(&[offline, maintenance, node(3, 1024)]);
    let request = PlacementRequest::new(2048, 0, 0);
    let counted = rejections(placement.decide(&request));
    assert_eq!((counted.nodes, counted.offline, counted.maintenance, counted.memory), (3, 1, 1, 1));

    placement.set_online(id(1), true).unwrap();
    assert_eq!(placement.decide(&request).unwrap().node, id(1));
    placement.set_online(id(1), false).unwrap();
    placement.set_maintenance(id(2), false).unwrap();
    assert_eq!(placement.decide(&request).unwrap().node, id(2));
    assert_eq!(placement.set_online(id(9), true), Err(PlacementError::UnknownNode(id(9))));
}

#[test]
fn required_tags_must_be_a_subset() {
    let mut ssd = node(1, 4096);
    ssd.tags = ["ssd".to_owned(), "eu".to_owned()].into();
    let mut gpu = node(2, 4096);
    gpu.tags = ["gpu".to_owned()].into();
    let placement = placement(&[ssd, gpu, node(3, 4096)]);

    let decide = |tags: &[&str]| {
        let mut request = PlacementRequest::new(1024, 0, 0);
        request.required_tags = tags.iter().map(|tag| (*tag).to_owned()).collect();
        placement.decide(&request)
    };
    assert_eq!(decide(&["ssd"]).unwrap().node, id(1));
    assert_eq!(decide(&["eu", "ssd"]).unwrap().node, id(1));
    assert_eq!(decide(&["gpu"]).unwrap().node, id(2));
    assert_eq!(rejections(decide(&["ssd", "gpu"])).tags, 3);
    assert_eq!(rejections(decide(&["never-seen"])).tags, 3);
}

#[test]
fn location_must_match() {
    let mut a = node(1, 4096);
    a.location = Some(loc(1));
    let mut b = node(2, 8192);
    b.location = Some(loc(2));
    let placement = placement(&[a, b, node(3, 16384)]);
    let request = PlacementRequest::new(1024, 0, 0).with_strategy(Strategy::Spread);
    assert_eq!(placement.decide(&request).unwrap().node, id(3));
    assert_eq!(placement.decide(&request.clone().in_location(loc(1))).unwrap().node, id(1));
    assert_eq!(placement.decide(&request.clone().in_location(loc(2))).unwrap().node, id(2));
    let counted = rejections(placement.decide(&request.in_location(loc(3))));
    assert_eq!((counted.nodes, counted.location), (3, 3));
}

#[test]
fn memory_disk_and_cpu_are_checked_against_limits() {
    let mut small_disk = node(1, 8192);
    small_disk.capacity.disk_mb = 1000;
    let mut small_cpu = node(2, 8192);
    small_cpu.capacity.cpu_percent = 100;
    small_cpu.overallocation.cpu_percent = Some(0);
    let mut placement = placement(&[small_disk, small_cpu]);

    let disk_heavy = PlacementRequest::new(1024, 5000, 50);
    assert_eq!(placement.decide(&disk_heavy).unwrap().node, id(2));
    let cpu_heavy = PlacementRequest::new(1024, 500, 200);
    // The default overallocation leaves CPU unchecked on node 1.
    assert_eq!(placement.decide(&cpu_heavy).unwrap().node, id(1));
    let both = PlacementRequest::new(1024, 5000, 200);
    let counted = rejections(placement.decide(&both));
    assert_eq!((counted.disk, counted.cpu), (1, 1));
    let memory = rejections(placement.decide(&PlacementRequest::new(8193, 0, 0)));
    assert_eq!(memory.memory, 2);

    placement.set_usage(&NodeUsage { disk_mb: 600, ..free(1) }).unwrap();
    placement.set_online(id(2), false).unwrap();
    let counted = rejections(placement.decide(&PlacementRequest::new(0, 401, 0)));
    assert_eq!((counted.offline, counted.disk), (1, 1));
    assert_eq!(placement.decide(&PlacementRequest::new(0, 400, 0)).unwrap().node, id(1));
}

#[test]
fn allocations_are_checked() {
    let nodes = [node(1, 4096), node(2, 4096)];
    let mut placement = ScoringPlacement::new(&nodes, &[usage(1, 0, 1), usage(2, 0, 3)], PlacementConfig::default());
    assert_eq!(placement.decide(&PlacementRequest::new(0, 0, 0).with_allocations(3)).unwrap().node, id(2));
    assert_eq!(
        placement.decide(&PlacementRequest::new(0, 0, 0).with_allocations(0)),
        Err(PlacementError::NoAllocationRequested)
    );
    let counted = rejections(placement.decide(&PlacementRequest::new(0, 0, 0).with_allocations(4)));
    assert_eq!(counted.allocations, 2);

    // Taking the last allocation makes the node unplaceable; releasing brings it back.
    let one = PlacementRequest::new(0, 0, 0).in_location(loc(1));
    let booked = Resources { allocations: 1, ..Resources::default() };
    placement.commit(id(1), &booked).unwrap();
    placement.index.assert_consistent();
    assert_eq!(placement.usage(id(1)).unwrap().free_allocations, 0);
    assert_eq!(placement.decide(&PlacementRequest::new(0, 0, 0).with_strategy(Strategy::BinPack)).unwrap().node, id(2));
    placement.release(id(1), &booked).unwrap();
    placement.index.assert_consistent();
    assert_eq!(rejections(placement.decide(&one)).location, 2);
}

#[test]
fn nodes_without_usage_have_no_allocations() {
    let mut placement = ScoringPlacement::new(&[node(1, 4096)], &[], PlacementConfig::default());
    assert_eq!(rejections(placement.decide(&PlacementRequest::new(1, 0, 0))).allocations, 1);
    assert_eq!(placement.set_usage(&NodeUsage::default()), Err(PlacementError::UsageWithoutNode));
    assert_eq!(placement.set_usage(&free(2)), Err(PlacementError::UnknownNode(id(2))));
    placement.set_usage(&free(1)).unwrap();
    assert_eq!(placement.decide(&PlacementRequest::new(1, 0, 0)).unwrap().node, id(1));
}

#[test]
fn overallocation_scales_limits() {
    let mut over = node(1, 1000);
    over.overallocation = Overallocation { memory_percent: Some(50), disk_percent: Some(10), cpu_percent: None };
    over.capacity.disk_mb = 1000;
    let mut placement =
        ScoringPlacement::new(&[over], &[NodeUsage { disk_mb: 1000, ..usage(1, 1400, 5) }], PlacementConfig::default());

    // Memory limit 1500, disk limit 1100: exactly at the limit fits, one more does not.
    let at_limit = PlacementRequest::new(100, 100, 10_000);
    let decision = placement.decide(&at_limit).unwrap();
    assert_eq!(decision.memory_left_mb, Some(0));
    assert_eq!(rejections(placement.decide(&PlacementRequest::new(101, 100, 0))).memory, 1);
    assert_eq!(rejections(placement.decide(&PlacementRequest::new(100, 101, 0))).disk, 1);

    // Exactly at capacity with zero overallocation.
    let mut exact = node(2, 1000);
    exact.overallocation.memory_percent = Some(0);
    placement.upsert_node(&exact);
    placement.set_usage(&usage(2, 0, 5)).unwrap();
    let request = PlacementRequest::new(1000, 0, 0).with_strategy(Strategy::Spread);
    assert_eq!(placement.decide(&request).unwrap().node, id(2));
    assert_eq!(rejections(placement.decide(&PlacementRequest::new(1001, 0, 0))).memory, 2);

    // Unchecked memory: any request fits and no headroom is reported.
    exact.overallocation.memory_percent = None;
    placement.upsert_node(&exact);
    let decision = placement.decide(&PlacementRequest::new(1 << 40, 0, 0)).unwrap();
    assert_eq!((decision.node, decision.memory_left_mb), (id(2), None));
    placement.index.assert_consistent();
}

#[test]
fn overbooked_node_rejects_even_empty_requests() {
    // Capacity shrank below what is booked: free memory saturates at 0 but nothing fits.
    let mut placement = ScoringPlacement::new(&[node(1, 1000)], &[usage(1, 1500, 5)], PlacementConfig::default());
    assert_eq!(rejections(placement.decide(&PlacementRequest::new(0, 0, 0))).memory, 1);
    placement.release(id(1), &Resources { memory_mb: 500, ..Resources::default() }).unwrap();
    assert_eq!(placement.decide(&PlacementRequest::new(0, 0, 0)).unwrap().node, id(1));
}

#[test]
fn bin_pack_fills_the_fullest_node_first() {
    let nodes = [node(1, 4096), node(2, 8192), node(3, 2048)];
    let mut placement = placement(&nodes);
    let request = PlacementRequest::new(1024, 0, 0);
    let mut chosen = Vec::new();
    for _ in 0..8 {
        chosen.push(placement.place(&request).unwrap().node);
        placement.index.assert_consistent();
    }
    // The smallest node first, then whichever has the least room left.
    assert_eq!(&chosen[..2], &[id(3), id(3)]);
    assert_eq!(&chosen[2..6], &[id(1); 4]);
    assert_eq!(&chosen[6..], &[id(2), id(2)]);
    // A request that only fits the emptiest node goes there.
    assert_eq!(placement.decide(&PlacementRequest::new(6144, 0, 0)).unwrap().node, id(2));
}

#[test]
fn spread_picks_the_emptiest_node() {
    let nodes = [node(1, 4096), node(2, 8192), node(3, 2048)];
    let mut placement = ScoringPlacement::new(
        &nodes,
        &[free(1), free(2), free(3)],
        PlacementConfig { strategy: Strategy::Spread, seed: 7 },
    );
    let request = PlacementRequest::new(1024, 0, 0);
    let chosen: Vec<_> = (0..6).map(|_| placement.place(&request).unwrap().node).collect();
    // Free memory 8192/4096/2048 -> 7168 -> 6144 -> 5120 -> 4096 (tie with node 1) ...
    assert_eq!(&chosen[..4], &[id(2); 4]);
    assert_eq!(chosen[4..].iter().filter(|node| **node == id(1)).count(), 1);
    assert_eq!(placement.usage(id(2)).unwrap().servers, 5);
}

#[test]
fn ties_are_deterministic_for_a_seed_and_vary_across_seeds() {
    let nodes: Vec<_> = (1..=16).map(|n| node(n, 4096)).collect();
    let usage: Vec<_> = (1..=16).map(free).collect();
    let mut reversed = nodes.clone();
    reversed.reverse();
    let request = PlacementRequest::new(512, 0, 0);
    let mut picks = BTreeSet::new();
    for seed in 0..32 {
        let config = PlacementConfig { strategy: Strategy::BinPack, seed };
        let forward = ScoringPlacement::new(&nodes, &usage, config);
        let backward = ScoringPlacement::new(&reversed, &usage, config);
        let pick = forward.decide(&request).unwrap().node;
        assert_eq!(pick, backward.decide(&request).unwrap().node, "input order must not matter");
        assert_eq!(pick, forward.decide(&request).unwrap().node);
        picks.insert(pick);
    }
    assert!(picks.len() > 4, "seeds should spread ties, got {picks:?}");
}

#[test]
fn rare_tags_use_the_holder_list() {
    let mut nodes: Vec<_> = (1..=100).map(|n| node(n, 1024 * (1 + n as u64 % 7))).collect();
    nodes[10].tags.insert("gpu".to_owned());
    nodes[70].tags.insert("gpu".to_owned());
    for node in nodes.iter_mut().take(60) {
        node.tags.insert("common".to_owned());
    }
    let placement = placement(&nodes);
    for strategy in [Strategy::BinPack, Strategy::Spread] {
        let request = PlacementRequest::new(1024, 0, 0).with_tag("gpu").with_strategy(strategy);
        let decision = placement.decide(&request).unwrap();
        let query = placement.index.query(&request, strategy);
        assert_eq!(Some(decision.node), placement.index.brute_force(&query));
        assert_eq!(decision.examined, 2, "only the two holders are checked");
        let common = request.clone().with_tag("common");
        let query = placement.index.query(&common, strategy);
        assert_eq!(placement.decide(&common).map(|d| d.node).ok(), placement.index.brute_force(&query));
    }
}

#[test]
fn node_updates_keep_the_index_consistent() {
    let mut a = node(1, 4096);
    a.location = Some(loc(1));
    a.tags.insert("ssd".to_owned());
    let mut placement = placement(&[a.clone(), node(2, 2048)]);
    placement.index.assert_consistent();
    let request = PlacementRequest::new(1024, 0, 0).with_tag("ssd");
    assert_eq!(placement.decide(&request).unwrap().node, id(1));

    // Moving the node and dropping its tag keeps its bookings.
    placement.commit(id(1), &Resources { memory_mb: 1000, allocations: 2, ..Resources::default() }).unwrap();
    a.tags.clear();
    a.location = Some(loc(2));
    placement.upsert_node(&a);
    placement.index.assert_consistent();
    assert_eq!(placement.usage(id(1)).unwrap().memory_mb, 1000);
    assert_eq!(rejections(placement.decide(&request)).tags, 2);
    assert_eq!(placement.decide(&PlacementRequest::new(1024, 0, 0).in_location(loc(2))).unwrap().node, id(1));
    assert_eq!(
        placement
            .decide(&PlacementRequest::new(1024, 0, 0).in_location(loc(1)))
            .map(|_| ())
            .map_err(|e| rejections(Err(e)).location),
        Err(2)
    );

    assert!(placement.remove_node(id(1)));
    assert!(!placement.remove_node(id(1)));
    placement.index.assert_consistent();
    assert_eq!(placement.len(), 1);
    assert_eq!(placement.commit(id(1), &Resources::default()), Err(PlacementError::UnknownNode(id(1))));

    // A re-added node reuses the slot and starts with no usage.
    placement.upsert_node(&node(3, 1024));
    placement.index.assert_consistent();
    assert_eq!(placement.usage(id(3)).unwrap().free_allocations, 0);
}

#[test]
fn request_serde_defaults_to_one_allocation() {
    let request: PlacementRequest = serde_json::from_str(r#"{"memory_mb":1,"disk_mb":2,"cpu_percent":3}"#).unwrap();
    assert_eq!(request, PlacementRequest::new(1, 2, 3));
    let json = serde_json::to_string(&request.clone().with_strategy(Strategy::Spread)).unwrap();
    assert!(json.contains(r#""strategy":"spread""#));
    assert_eq!(serde_json::from_str::<PlacementRequest>(&json).unwrap().strategy, Some(Strategy::Spread));
}

// ---- property test ------------------------------------------------------------------------

const TAGS: [&str; 4] = ["ssd", "eu", "ddos", "gpu"];

#[derive(Clone, Debug)]
enum Op {
    Place(PlacementRequest),
    Release(usize, Resources),
    Online(usize, bool),
    Maintenance(usize, bool),
    Usage(usize, u64, u64),
    Remove(usize),
    Readd(usize),
}

fn arb_node() -> impl proptest::strategy::Strategy<Value = (Node, NodeUsage)> {
    (
        (0..4u128, 0..16u8, 1..8u64, 1..6u64, 1..8u64),
        (prop::option::of(0..60u32), prop::option::of(0..30u32), prop::option::of(0..100u32)),
        (0..10u8, 0..10u8),
        (0..8u64, 0..4u64, 0..6u64, 0..4u64),
    )
        .prop_map(
            |(
                (location, tags, memory, disk, cpu),
                (over_mem, over_disk, over_cpu),
                (status, maint),
                (used, dused, cused, allocs),
            )| {
                let mut node = node(0, memory * 1024);
                node.location = (location < 3).then(|| loc(location));
                // The gpu tag is rare: only 1 node in 16 by this mask's distribution.
                node.tags = TAGS
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| tags & (1 << bit) != 0 && (*bit != 3 || tags == 15))
                    .map(|(_, tag)| (*tag).to_owned())
                    .collect();
                node.capacity.disk_mb = disk * 10_000;
                node.capacity.cpu_percent = cpu * 100;
                node.overallocation =
                    Overallocation { memory_percent: over_mem, disk_percent: over_disk, cpu_percent: over_cpu };
                node.status = if status == 0 { NodeStatus::Offline } else { NodeStatus::Online };
                node.maintenance = maint == 0;
                let usage = NodeUsage {
                    node: None,
                    servers: used,
                    memory_mb: used * 512,
                    disk_mb: dused * 5_000,
                    cpu_percent: cused * 50,
                    free_allocations: allocs,
                };
                (node, usage)
            },
        )
}

fn arb_request() -> impl proptest::strategy::Strategy<Value = PlacementRequest> {
    (0..12u64, 0..5u64, 0..6u64, 0..32u8, 0..5u128, 0..4u64, any::<bool>()).prop_map(
        |(memory, disk, cpu, tags, location, allocations, spread)| {
            let mut request = PlacementRequest::new(memory * 512, disk * 5_000, cpu * 50);
            request.required_tags = TAGS
                .iter()
                .enumerate()
                .filter(|(bit, _)| tags & (1 << bit) != 0 && tags & 16 != 0)
                .map(|(_, tag)| (*tag).to_owned())
                .collect();
            request.location = (location < 3).then(|| loc(location));
            request.allocations = allocations;
            request.strategy = Some(if spread { Strategy::Spread } else { Strategy::BinPack });
            request
        },
    )
}

fn arb_op(nodes: usize) -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        6 => arb_request().prop_map(Op::Place),
        1 => (0..nodes, 0..4u64).prop_map(|(n, k)| Op::Release(n, Resources { memory_mb: k * 512, disk_mb: k * 1000, cpu_percent: k * 50, allocations: 1 })),
        1 => (0..nodes, any::<bool>()).prop_map(|(n, on)| Op::Online(n, on)),
        1 => (0..nodes, any::<bool>()).prop_map(|(n, on)| Op::Maintenance(n, on)),
        1 => (0..nodes, 0..16u64, 0..4u64).prop_map(|(n, mem, allocs)| Op::Usage(n, mem * 512, allocs)),
        1 => (0..nodes).prop_map(Op::Remove),
        1 => (0..nodes).prop_map(Op::Readd),
    ]
}

fn arb_cluster() -> impl proptest::strategy::Strategy<Value = (Vec<(Node, NodeUsage)>, u64, Vec<Op>)> {
    (1..40usize).prop_flat_map(|count| {
        (prop::collection::vec(arb_node(), count), any::<u64>(), prop::collection::vec(arb_op(count), 1..60))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn decisions_match_a_brute_force_scan((cluster, seed, ops) in arb_cluster()) {
        let nodes: Vec<Node> = cluster.iter().enumerate().map(|(n, (node, _))| Node { id: id(n as u128 + 1), ..node.clone() }).collect();
        let usage: Vec<NodeUsage> = cluster.iter().enumerate().map(|(n, (_, usage))| NodeUsage { node: Some(id(n as u128 + 1)), ..*usage }).collect();
        let mut placement = ScoringPlacement::new(&nodes, &usage, PlacementConfig { strategy: Strategy::BinPack, seed });
        placement.index.assert_consistent();
        for op in ops {
            match op {
                Op::Place(request) => {
                    let strategy = request.strategy.unwrap_or_default();
                    let query = placement.index.query(&request, strategy);
                    let expected = placement.index.brute_force(&query);
                    match placement.decide(&request) {
                        Ok(decision) => {
                            // Every constraint, restated from the node description rather than
                            // through the index's own check.
                            let slot = placement.index.slot(&decision.node).unwrap();
                            let original = nodes.iter().find(|node| node.id == decision.node).unwrap();
                            let limits = original.overallocation.limits(&original.capacity);
                            let used = slot.usage;
                            let fits = |booked: u64, wanted: u64, limit: u64| u128::from(booked) + u128::from(wanted) <= u128::from(limit);
                            prop_assert!(slot.status == NodeStatus::Online && !slot.maintenance);
                            prop_assert!(request.required_tags.is_subset(&original.tags));
                            prop_assert!(request.location.is_none() || request.location == original.location);
                            prop_assert!(fits(used.memory_mb, request.memory_mb, limits.memory_mb));
                            prop_assert!(fits(used.disk_mb, request.disk_mb, limits.disk_mb));
                            prop_assert!(fits(used.cpu_percent, request.cpu_percent, limits.cpu_percent));
                            prop_assert!(used.free_allocations >= request.allocations);
                            prop_assert_eq!(Some(decision.node), expected);
                            placement.commit(decision.node, &request.resources()).unwrap();
                        }
                        Err(PlacementError::NoCapacity(rejections)) => {
                            prop_assert_eq!(expected, None);
                            let rejected = rejections.offline + rejections.maintenance + rejections.location + rejections.tags
                                + rejections.memory + rejections.disk + rejections.cpu + rejections.allocations;
                            prop_assert_eq!(rejected, placement.len() as u64);
                        }
                        Err(PlacementError::NoAllocationRequested) => prop_assert_eq!(request.allocations, 0),
                        Err(other) => prop_assert!(false, "unexpected {other}"),
                    }
                }
                Op::Release(n, resources) => {
                    let _ = placement.release(nodes[n].id, &resources);
                }
                Op::Online(n, online) => {
                    let _ = placement.set_online(nodes[n].id, online);
                }
                Op::Maintenance(n, on) => {
                    let _ = placement.set_maintenance(nodes[n].id, on);
                }
                Op::Usage(n, memory_mb, free_allocations) => {
                    let _ = placement.set_usage(&NodeUsage { node: Some(nodes[n].id), memory_mb, free_allocations, ..NodeUsage::default() });
                }
                Op::Remove(n) => {
                    placement.remove_node(nodes[n].id);
                }
                Op::Readd(n) => {
                    placement.upsert_node(&nodes[n]);
                }
            }
            placement.index.assert_consistent();
        }
    }
}

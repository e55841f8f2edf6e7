//! Placement throughput on a 10,000-node cluster holding 100,000 servers.
//!
//! Run with `cargo bench -p nexus-core --bench placement -- --warm-up-time 1 --measurement-time 3`.
//! Criterion reports `elem/s`: one element is one placement decision.

use criterion::{BenchmarkId, Criterion, Throughput, black_box};
use nexus_core::model::{Node, NodeCapacity, NodeStatus, Overallocation};
use nexus_core::placement::{Placement, PlacementConfig, PlacementRequest, ScoringPlacement, Strategy};
use nexus_core::store::NodeUsage;
use nexus_core::{LocationId, NodeId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

const NODES: usize = 10_000;
const SERVERS: usize = 100_000;
/// `cargo test --all-targets` runs benches once as a smoke test, unoptimised and without
/// `--bench`; a tenth of the cluster keeps that quick.
const SMOKE_SCALE: usize = 10;
const LOCATIONS: u128 = 12;
const REQUESTS: usize = 8_192;
/// Decisions per fresh copy of the cluster in the commit benchmarks, so the cluster does not
/// drift towards full however many iterations criterion asks for.
const CHUNK: u64 = 20_000;

/// SplitMix64: a seeded generator so every run builds the same cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn location(n: u128) -> LocationId {
    LocationId(Uuid::from_u128(0x10C << 64 | n))
}

fn cluster(rng: &mut Rng, count: usize) -> (Vec<Node>, Vec<NodeUsage>) {
    let mut nodes = Vec::with_capacity(count);
    let mut usage = Vec::with_capacity(count);
    for n in 0..count {
        let id = NodeId(Uuid::from_u128(rng.next() as u128 | (n as u128) << 64));
        let loc = rng.below(LOCATIONS as u64) as u128;
        let mut tags = BTreeSet::new();
        tags.insert(["eu", "us", "asia"][(loc % 3) as usize].to_owned());
        for (tag, percent) in [("ssd", 60), ("nvme", 25), ("ddos-protected", 30), ("gpu", 1)] {
            if rng.chance(percent) {
                tags.insert(tag.to_owned());
            }
        }
        let overallocation = Overallocation {
            memory_percent: rng.pick(&[Some(0), Some(0), Some(10), Some(25), None]),
            disk_percent: rng.pick(&[Some(0), Some(50), None]),
            cpu_percent: rng.pick(&[None, Some(0), Some(100)]),
        };
        nodes.push(Node {
            id,
            name: format!("node-{n}"),
            fqdn: format!("node-{n}.example.com"),
            daemon_port: 8080,
            token_hash: String::new(),
            location: Some(location(loc)),
            tags,
            capacity: NodeCapacity {
                memory_mb: rng.pick(&[16, 32, 64, 64, 128, 256]) * 1024,
                disk_mb: rng.pick(&[250, 500, 1000, 2000]) * 1024,
                cpu_percent: rng.pick(&[400, 800, 1600, 3200]),
            },
            overallocation,
            maintenance: rng.chance(1),
            status: if rng.chance(2) { NodeStatus::Offline } else { NodeStatus::Online },
            last_heartbeat: None,
        });
        usage.push(NodeUsage { node: Some(id), free_allocations: 40 + rng.below(160), ..NodeUsage::default() });
    }
    (nodes, usage)
}

fn request(rng: &mut Rng) -> PlacementRequest {
    let mut request = PlacementRequest::new(
        rng.pick(&[512, 1024, 2048, 2048, 4096, 4096, 6144, 8192, 16384]),
        rng.pick(&[1, 2, 5, 10, 20, 50]) * 1024,
        rng.pick(&[0, 50, 100, 200, 400]),
    )
    .with_allocations(rng.pick(&[1, 1, 1, 2, 3]));
    if rng.chance(30) {
        request.location = Some(location(rng.below(LOCATIONS as u64) as u128));
    }
    for (tag, percent) in [("ssd", 20), ("ddos-protected", 5), ("nvme", 3), ("gpu", 1)] {
        if rng.chance(percent) {
            request.required_tags.insert(tag.to_owned());
        }
    }
    request
}

/// The cluster with 100,000 servers placed through the index, and the request mix.
fn setup(strategy: Strategy) -> (ScoringPlacement, Vec<PlacementRequest>) {
    let scale = if std::env::args().any(|arg| arg == "--bench") { 1 } else { SMOKE_SCALE };
    let mut rng = Rng(0x5EED);
    let (nodes, usage) = cluster(&mut rng, NODES / scale);
    let mut placement = ScoringPlacement::new(&nodes, &usage, PlacementConfig { strategy, seed: 42 });
    let mut placed = 0;
    while placed < SERVERS / scale {
        if placement.place(&request(&mut rng)).is_ok() {
            placed += 1;
        }
    }
    let requests: Vec<_> = (0..REQUESTS).map(|_| request(&mut rng)).collect();
    let (mut fits, mut examined) = (0u64, 0u64);
    for request in &requests {
        if let Ok(decision) = placement.decide(request) {
            fits += 1;
            examined += decision.examined;
        }
    }
    eprintln!(
        "{strategy:?}: {placed} servers on {} nodes; {:.1}% of requests fit, {:.1} index entries visited per decision",
        nodes.len(),
        100.0 * fits as f64 / REQUESTS as f64,
        examined as f64 / fits.max(1) as f64,
    );
    (placement, requests)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group.throughput(Throughput::Elements(1));
    for strategy in [Strategy::BinPack, Strategy::Spread] {
        let (placement, requests) = setup(strategy);
        let name = format!("{strategy:?}");

        group.bench_function(BenchmarkId::new("decide", &name), |b| {
            let mut next = 0;
            b.iter(|| {
                next = (next + 1) % requests.len();
                black_box(placement.decide(&requests[next]).is_ok())
            });
        });

        group.bench_function(BenchmarkId::new("decide_commit", &name), |b| {
            b.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                let mut done = 0;
                let mut next = 0;
                while done < iterations {
                    let mut fresh = placement.clone();
                    let chunk = CHUNK.min(iterations - done);
                    let start = Instant::now();
                    for _ in 0..chunk {
                        next = (next + 1) % requests.len();
                        black_box(fresh.place(&requests[next]).is_ok());
                    }
                    measured += start.elapsed();
                    done += chunk;
                }
                measured
            });
        });

        // Slow paths from the module docs, for reference: a tag held by ~1% of the nodes, and a
        // request nothing can take (every node is checked to explain why).
        let rare = PlacementRequest::new(2048, 1024, 100).with_tag("gpu");
        group.bench_function(BenchmarkId::new("decide_rare_tag", &name), |b| {
            b.iter(|| black_box(placement.decide(&rare).is_ok()));
        });
        let impossible = PlacementRequest::new(1024, 0, 0).in_location(location(LOCATIONS + 1));
        group.bench_function(BenchmarkId::new("decide_no_fit", &name), |b| {
            b.iter(|| black_box(placement.decide(&impossible).is_err()));
        });
    }
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented `pub fn` they
// generate (missing_docs is denied in CI).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}

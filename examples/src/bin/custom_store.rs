//! A `Store` of your own: [`TracingStore`] wrapped around `MemoryStore`.
//!
//! Seeds a user, a location, a node with two allocations and an egg, claims an allocation for
//! a new server inside a transaction, then prints how often each store method was called.
//! Every call is also a `DEBUG` event of the `tracing` crate: install a subscriber (for example
//! `tracing-subscriber`) in your own program to see them.
//!
//! ```text
//! cargo run -p nexus-examples --bin custom_store
//! ```

use chrono::Utc;
use nexus_core::ids::{AllocationId, EggId, LocationId, NodeId, ServerId, UserId};
use nexus_core::memory::MemoryStore;
use nexus_core::model::{
    Allocation, DoneMatcher, Egg, EggImage, EggScript, EggSourceFormat, EggStartup, EggVariable, Location, Node,
    NodeCapacity, NodeStatus, Overallocation, Role, StopMethod, User,
};
use nexus_core::store::{AllocationRepo, EggRepo, LocationRepo, NodeRepo, Store, StoreError, UserRepo};
use nexus_examples::tracing_store::TracingStore;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    let store = TracingStore::new(MemoryStore::new());
    println!("backend: {} (traced)", store.backend());

    let user = User {
        id: UserId::new(),
        username: "alice".into(),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::Admin,
        created_at: Utc::now(),
    };
    store.create_user(&user).await?;

    let location = Location { id: LocationId::new(), short: "fra1".into(), long: "Frankfurt".into() };
    store.create_location(&location).await?;

    let node = Node {
        id: NodeId::new(),
        name: "node-1".into(),
        fqdn: "node-1.example.com".into(),
        daemon_port: 8080,
        token_hash: "sha256:0123456789abcdef".into(),
        location: Some(location.id),
        tags: BTreeSet::from(["ssd".to_owned()]),
        capacity: NodeCapacity { memory_mb: 16_384, disk_mb: 200_000, cpu_percent: 800 },
        overallocation: Overallocation::default(),
        maintenance: false,
        status: NodeStatus::Online,
        last_heartbeat: None,
    };
    store.create_node(&node).await?;

    let allocations: Vec<Allocation> = [25_565, 25_566]
        .into_iter()
        .map(|port| Allocation {
            id: AllocationId::new(),
            node: node.id,
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            alias: None,
            port,
            server: None,
        })
        .collect();
    store.create_allocations(&allocations).await?;

    store.create_egg(&egg()).await?;

    // A transaction from the tracing store is traced too: `begin`, the claim and `commit` are
    // all counted.
    let server = ServerId::new();
    let transaction = store.begin().await?;
    let claimed = transaction.claim_free_allocation(node.id, server).await?;
    transaction.commit().await?;
    match claimed {
        Some(allocation) => println!("claimed {}:{} for server {server}", allocation.ip, allocation.port),
        None => println!("no free allocation on {}", node.name),
    }

    println!("calls:");
    for (method, count) in store.calls() {
        println!("  {method}: {count}");
    }
    Ok(())
}

/// A small egg written inline: a shell that greets and waits for `stop`.
fn egg() -> Egg {
    Egg {
        nest: None,
        id: EggId::new(),
        source_uuid: None,
        source_format: EggSourceFormat::PtdlV2,
        name: "Busybox echo".into(),
        author: "eggs@example.com".into(),
        description: "Prints a greeting, then waits for `stop`.".into(),
        update_url: None,
        icon: None,
        exported_at: None,
        tags: Vec::new(),
        features: Vec::new(),
        images: vec![EggImage { label: "Busybox".into(), image: "busybox:latest".into() }],
        file_denylist: Vec::new(),
        templates: Vec::new(),
        startup_commands: vec![EggStartup {
            label: "Default".into(),
            command: "echo \"{{GREETING}}\"; echo ready; while read -r line; do [ \"$line\" = stop ] && exit 0; done"
                .into(),
        }],
        config_files: Vec::new(),
        done: vec![DoneMatcher::Substring("ready".into())],
        stop: StopMethod::Command("stop".into()),
        logs: Default::default(),
        install: EggScript {
            script: "#!/bin/ash\necho installed\n".into(),
            container: "busybox:latest".into(),
            entrypoint: "ash".into(),
        },
        variables: vec![EggVariable {
            name: "Greeting".into(),
            description: "What the server says first.".into(),
            env_variable: "GREETING".into(),
            default_value: "hello".into(),
            user_viewable: true,
            user_editable: true,
            rules: vec!["required".into(), "string".into(), "max:20".into()],
            field_type: Some("text".into()),
            sort: Some(1),
        }],
    }
}

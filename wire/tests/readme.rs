//! The JSON shapes the README shows for the panel↔node protocol are exactly what the types
//! read and write: every block marked `<!-- wire: Type -->` is parsed as that type and written
//! back, and must come out equal (as JSON values), so the documentation cannot drift.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nexus_core::console::ConsoleEvent;
use nexus_core::transport::ServerSpec;
use nexus_wire::api::{CommandRequest, ConsoleClientMessage, PowerRequest};
use nexus_wire::{ErrorBody, EventEnvelope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: Serialize + DeserializeOwned>(json: &str) -> Value {
    let typed: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    serde_json::to_value(&typed).unwrap()
}

#[test]
fn every_marked_block_of_the_readme_is_exactly_its_type() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut seen = Vec::new();
    for part in readme.split("<!-- wire: ").skip(1) {
        let (name, rest) = part.split_once(" -->").unwrap();
        let body = rest.trim_start().strip_prefix("```json").unwrap_or_else(|| panic!("{name}: no json block"));
        let json = &body[..body.find("```").unwrap()];
        let written = match name {
            "ServerSpec" => round_trip::<ServerSpec>(json),
            "PowerRequest" => round_trip::<PowerRequest>(json),
            "CommandRequest" => round_trip::<CommandRequest>(json),
            "ConsoleEvent" => round_trip::<ConsoleEvent>(json),
            "ConsoleClientMessage" => round_trip::<ConsoleClientMessage>(json),
            "ErrorBody" => round_trip::<ErrorBody>(json),
            "EventEnvelope" => round_trip::<EventEnvelope>(json),
            other => panic!("the README marks an unknown type `{other}`"),
        };
        let shown: Value = serde_json::from_str(json).unwrap();
        assert_eq!(written, shown, "{name}: the README shows something the type does not write");
        seen.push(name);
    }
    seen.sort_unstable();
    let expected = [
        "CommandRequest",
        "ConsoleClientMessage",
        "ConsoleEvent",
        "ErrorBody",
        "EventEnvelope",
        "PowerRequest",
        "ServerSpec",
    ];
    assert_eq!(seen, expected, "every shape is shown once");
}

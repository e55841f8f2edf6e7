//! Imports every real egg in `../shared/eggs/` and checks what came out against the raw file,
//! then round-trips each through every export format.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nexus_core::model::{DoneMatcher, Egg, StopMethod};
use nexus_eggs::export::{ExportFormat, export_egg};
use nexus_eggs::import::import_egg;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eggs")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("egg corpus missing at {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// The raw document, parsed independently of the importer.
fn raw(name: &str, bytes: &[u8]) -> Value {
    if name.ends_with(".json") {
        serde_json::from_slice(bytes).unwrap()
    } else {
        serde_json::to_value(yaml_serde::from_slice::<yaml_serde::Value>(bytes).unwrap()).unwrap()
    }
}

fn embedded(value: &Value) -> Value {
    match value {
        Value::String(s) if s.trim().is_empty() => Value::Object(Default::default()),
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    }
}

#[test]
fn every_corpus_egg_imports_with_its_variables_images_stop_and_done() {
    let files = corpus();
    assert_eq!(files.len(), 77, "the shared corpus holds 77 eggs");
    let mut failures = Vec::new();
    for (name, bytes) in &files {
        let egg = match import_egg(bytes) {
            Ok(egg) => egg,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let raw = raw(name, bytes);

        assert_eq!(egg.source_format.as_str(), raw["meta"]["version"].as_str().unwrap(), "{name}");
        assert_eq!(egg.name, raw["name"].as_str().unwrap(), "{name}");

        let raw_vars = raw["variables"].as_array().unwrap();
        assert_eq!(egg.variables.len(), raw_vars.len(), "{name}: variable count");
        for (var, raw_var) in egg.variables.iter().zip(raw_vars) {
            assert_eq!(var.env_variable, raw_var["env_variable"].as_str().unwrap(), "{name}");
            let raw_rules: Vec<String> = match &raw_var["rules"] {
                Value::String(s) => nexus_eggs::rules::split_rule_string(s),
                Value::Array(items) => items.iter().map(|r| r.as_str().unwrap().to_string()).collect(),
                other => panic!("{name}: rules are {other:?}"),
            };
            let raw_rules: Vec<String> = raw_rules.into_iter().filter(|r| !r.trim().is_empty()).collect();
            assert_eq!(var.rules, raw_rules, "{name}: {}", var.env_variable);
        }

        // Every egg names at least one image, in one of its historical shapes.
        assert!(!egg.images.is_empty(), "{name}: no images");
        assert!(egg.images.iter().all(|i| !i.image.is_empty() && !i.image.starts_with("data:")), "{name}");

        let raw_stop = raw["config"]["stop"].as_str().unwrap();
        match &egg.stop {
            StopMethod::Command(cmd) => assert_eq!(cmd, raw_stop, "{name}"),
            StopMethod::Signal(_) => assert!(raw_stop.starts_with('^'), "{name}: {raw_stop}"),
        }

        let raw_done = &embedded(&raw["config"]["startup"])["done"];
        let expected_done: Vec<&str> = match raw_done {
            Value::String(s) if s.is_empty() => vec![],
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().map(|i| i.as_str().unwrap()).collect(),
            _ => vec![],
        };
        assert_eq!(egg.done.len(), expected_done.len(), "{name}: done matchers");
        for (matcher, raw) in egg.done.iter().zip(expected_done) {
            match matcher {
                DoneMatcher::Substring(s) => assert_eq!(s, raw),
                DoneMatcher::Regex(r) => assert_eq!(format!("regex:{r}"), raw),
            }
        }

        let raw_files = embedded(&raw["config"]["files"]);
        assert_eq!(egg.config_files.len(), raw_files.as_object().map_or(0, |m| m.len()), "{name}: config files");
        assert!(!egg.install.script.contains("\r\n"), "{name}: CRLF left in install script");
        assert!(!egg.startup_commands.is_empty(), "{name}: no startup command");
    }
    assert!(
        failures.is_empty(),
        "{} of {} eggs failed to import:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    println!("{} eggs imported", files.len());
}

/// What survives a `PTDL_v2` export: everything but several startup commands, tags, icon, uuid.
fn ptdl_view(egg: &Egg) -> Egg {
    let mut egg = egg.clone();
    egg.startup_commands.truncate(1);
    if let Some(first) = egg.startup_commands.first_mut() {
        first.label = "Default".to_string();
    }
    egg.tags.clear();
    egg.icon = None;
    egg.source_uuid = None;
    egg
}

#[test]
fn every_corpus_egg_round_trips_through_every_export_format() {
    for (name, bytes) in corpus() {
        let egg = import_egg(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        for format in [ExportFormat::PtdlV2, ExportFormat::PlcnV3Json, ExportFormat::PlcnV3Yaml] {
            let text = export_egg(&egg, format).unwrap();
            let mut back = import_egg(text.as_bytes()).unwrap_or_else(|e| panic!("{name} {format:?}: {e}\n{text}"));
            let expected = if format == ExportFormat::PtdlV2 { ptdl_view(&egg) } else { egg.clone() };
            // Identity and source format are not content.
            back.id = expected.id;
            back.source_format = expected.source_format;
            assert_eq!(back, expected, "{name} {format:?} changed in a round trip");
            // A second export of the re-import is identical text: export is deterministic.
            assert_eq!(export_egg(&back, format).unwrap(), export_egg(&expected, format).unwrap(), "{name} {format:?}");
        }
    }
}

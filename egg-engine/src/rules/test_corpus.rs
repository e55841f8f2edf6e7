//! Raw access to the egg corpus in `../shared/eggs` for unit tests, independent of the importer.

use nexus_core::model::EggVariable;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One egg file as parsed JSON (YAML files converted).
pub(crate) struct RawEgg {
    /// File name, for messages.
    pub file: String,
    /// The document.
    pub doc: Value,
}

pub(crate) fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eggs")
}

/// Every egg of the corpus, sorted by file name. Panics if the corpus is missing: the tests
/// using it would otherwise pass without checking anything.
pub(crate) fn eggs() -> Vec<RawEgg> {
    let dir = corpus_dir();
    let mut eggs: Vec<RawEgg> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("egg corpus missing at {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")))
        .map(|p| {
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            let doc = if file.ends_with(".json") {
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
            } else {
                let yaml: yaml_serde::Value = yaml_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
                serde_json::to_value(yaml).unwrap()
            };
            RawEgg { file, doc }
        })
        .collect();
    eggs.sort_by(|a, b| a.file.cmp(&b.file));
    assert!(eggs.len() >= 77, "expected the 77 corpus eggs in {}, found {}", dir.display(), eggs.len());
    eggs
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "1" } else { "0" }.to_string(),
        Some(other) => other.to_string(),
    }
}

impl RawEgg {
    /// The raw `rules` of every variable as a list (pipe strings split with
    /// [`super::split_rule_string`]), with the variable.
    pub fn variables(&self) -> Vec<EggVariable> {
        let Some(Value::Array(vars)) = self.doc.get("variables") else {
            return Vec::new();
        };
        vars.iter()
            .map(|v| {
                let rules = match v.get("rules") {
                    Some(Value::String(s)) => super::split_rule_string(s),
                    Some(Value::Array(items)) => items.iter().map(|i| text(Some(i))).collect(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(other) => panic!("{}: unexpected rules {other}", self.file),
                };
                EggVariable {
                    name: text(v.get("name")),
                    description: text(v.get("description")),
                    env_variable: text(v.get("env_variable")),
                    default_value: text(v.get("default_value")),
                    user_viewable: v.get("user_viewable").and_then(Value::as_bool).unwrap_or(false),
                    user_editable: v.get("user_editable").and_then(Value::as_bool).unwrap_or(false),
                    rules,
                    field_type: v.get("field_type").and_then(Value::as_str).map(String::from),
                    sort: v.get("sort").and_then(Value::as_i64),
                }
            })
            .collect()
    }

    /// Every startup command: `startup` and the values of a Pelican `startup_commands` map.
    pub fn startup_commands(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Value::String(s)) = self.doc.get("startup") {
            out.push(s.clone());
        }
        match self.doc.get("startup_commands") {
            Some(Value::Object(map)) => out.extend(map.values().filter_map(Value::as_str).map(String::from)),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str).map(String::from)),
            _ => {}
        }
        out
    }
}

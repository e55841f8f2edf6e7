//! Exporting eggs as Pterodactyl `PTDL_v2` (JSON) or Pelican `PLCN_v3` (JSON or YAML).
//!
//! `PLCN_v3` carries everything a normalized [`Egg`] holds. `PTDL_v2` cannot hold several
//! startup commands, tags, an icon or the egg's own UUID: only the default startup command is
//! written and the rest is dropped, as Pterodactyl itself would.

use crate::stop::stop_to_egg_string;
use nexus_core::model::{ConfigFile, DoneMatcher, Egg, EggVariable, FindValue};
use serde_json::{Map, Value, json};

/// Target format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// Pterodactyl `PTDL_v2`, JSON.
    PtdlV2,
    /// Pelican `PLCN_v3`, JSON.
    PlcnV3Json,
    /// Pelican `PLCN_v3`, YAML (Pelican's default).
    PlcnV3Yaml,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Serialization failed.
    #[error("cannot serialize egg `{egg}`: {message}")]
    Serialize {
        /// The egg's name.
        egg: String,
        /// Serializer message.
        message: String,
    },
}

/// Exports `egg` as text in `format`.
pub fn export_egg(egg: &Egg, format: ExportFormat) -> Result<String, ExportError> {
    let fail = |message: String| ExportError::Serialize { egg: egg.name.clone(), message };
    match format {
        ExportFormat::PtdlV2 => serde_json::to_string_pretty(&ptdl_v2(egg)).map_err(|e| fail(e.to_string())),
        ExportFormat::PlcnV3Json => serde_json::to_string_pretty(&plcn_v3(egg)).map_err(|e| fail(e.to_string())),
        ExportFormat::PlcnV3Yaml => yaml_serde::to_string(&plcn_v3(egg)).map_err(|e| fail(e.to_string())),
    }
}

/// The `PTDL_v2` document of `egg`.
pub fn ptdl_v2(egg: &Egg) -> Value {
    // PTDL_v2 stores the config blocks as JSON-encoded strings.
    let encoded = |value: Value| Value::String(value.to_string());
    json!({
        "_comment": "DO NOT EDIT: FILE GENERATED AUTOMATICALLY BY PTERODACTYL PANEL - PTERODACTYL.IO",
        "meta": { "version": "PTDL_v2", "update_url": egg.update_url },
        "exported_at": egg.exported_at,
        "name": egg.name,
        "author": egg.author,
        "description": egg.description,
        "features": egg.features,
        "docker_images": images(egg),
        "file_denylist": egg.file_denylist,
        "startup": egg.default_startup().unwrap_or_default(),
        "config": {
            "files": encoded(config_files(&egg.config_files)),
            "startup": encoded(json!({ "done": done(&egg.done) })),
            "logs": encoded(egg.logs.clone()),
            "stop": stop_to_egg_string(&egg.stop),
        },
        "scripts": { "installation": script(egg) },
        "variables": egg.variables.iter().map(|v| variable(v, Value::String(v.rules.join("|")))).collect::<Vec<_>>(),
    })
}

/// The `PLCN_v3` document of `egg`.
pub fn plcn_v3(egg: &Egg) -> Value {
    let startup_commands: Map<String, Value> =
        egg.startup_commands.iter().map(|s| (s.label.clone(), Value::String(s.command.clone()))).collect();
    json!({
        "_comment": "DO NOT EDIT: FILE GENERATED AUTOMATICALLY BY PANEL",
        "meta": { "version": "PLCN_v3", "update_url": egg.update_url },
        "exported_at": egg.exported_at,
        "name": egg.name,
        "author": egg.author,
        "uuid": egg.source_uuid,
        "description": egg.description,
        "icon": egg.icon,
        "tags": egg.tags,
        "features": egg.features,
        "docker_images": images(egg),
        "file_denylist": egg.file_denylist,
        "startup_commands": startup_commands,
        "config": {
            "files": config_files(&egg.config_files),
            "startup": { "done": done(&egg.done) },
            "logs": egg.logs,
            "stop": stop_to_egg_string(&egg.stop),
        },
        "scripts": { "installation": script(egg) },
        "variables": egg.variables.iter().map(|v| variable(v, json!(v.rules))).collect::<Vec<_>>(),
    })
}

fn images(egg: &Egg) -> Value {
    Value::Object(egg.images.iter().map(|i| (i.label.clone(), Value::String(i.image.clone()))).collect())
}

fn script(egg: &Egg) -> Value {
    json!({ "script": egg.install.script, "container": egg.install.container, "entrypoint": egg.install.entrypoint })
}

/// A single matcher is written as a string (what every panel reads), several as a list.
fn done(matchers: &[DoneMatcher]) -> Value {
    let mut entries: Vec<Value> = matchers
        .iter()
        .map(|m| match m {
            DoneMatcher::Substring(s) => Value::String(s.clone()),
            DoneMatcher::Regex(r) => Value::String(format!("regex:{r}")),
        })
        .collect();
    match entries.len() {
        0 => Value::String(String::new()),
        1 => entries.remove(0),
        _ => Value::Array(entries),
    }
}

fn config_files(files: &[ConfigFile]) -> Value {
    Value::Object(
        files
            .iter()
            .map(|file| {
                let find: Map<String, Value> = file
                    .find
                    .iter()
                    .map(|(key, value)| {
                        let value = match value {
                            FindValue::Text(s) => Value::String(s.clone()),
                            FindValue::Scalar(v) => v.clone(),
                            FindValue::Match(cases) => Value::Object(
                                cases.iter().map(|(when, then)| (when.clone(), Value::String(then.clone()))).collect(),
                            ),
                        };
                        (key.clone(), value)
                    })
                    .collect();
                (file.path.clone(), json!({ "parser": file.parser.as_str(), "find": find }))
            })
            .collect(),
    )
}

fn variable(v: &EggVariable, rules: Value) -> Value {
    let mut out = json!({
        "name": v.name,
        "description": v.description,
        "env_variable": v.env_variable,
        "default_value": v.default_value,
        "user_viewable": v.user_viewable,
        "user_editable": v.user_editable,
        "rules": rules,
    });
    if let Value::Object(map) = &mut out {
        if let Some(field_type) = &v.field_type {
            map.insert("field_type".to_string(), json!(field_type));
        }
        if let Some(sort) = v.sort {
            map.insert("sort".to_string(), json!(sort));
        }
    }
    out
}

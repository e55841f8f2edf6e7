//! Importing egg files.
//!
//! One entry point, [`import_egg`], takes the bytes of any Pterodactyl (`PTDL_v1`, `PTDL_v2`) or
//! Pelican (`PLCN_v1`..`PLCN_v3`) egg, JSON or YAML, and returns a normalized
//! [`Egg`]. It accepts the shapes real eggs use in the wild:
//!
//! | field | shapes accepted |
//! |---|---|
//! | `config.files`, `config.startup`, `config.logs` | JSON-encoded string (empty allowed) or a native map |
//! | `config.startup.done` | a string or a list; entries starting `regex:` are regular expressions |
//! | images | `docker_images` map (label → image) or list, old `images` list, old `image` string |
//! | startup | `startup` string or Pelican `startup_commands` map (label → command) |
//! | variable `rules` | a pipe string or a list; empty segments ignored |
//! | variable `default_value` | text, number or boolean |
//! | `file_denylist` | a list, `{}`, `""` or null |
//! | install script | CRLF line endings normalized to LF |
//!
//! Every variable's rules are parsed at import time, so an egg with a rule Nexus cannot enforce
//! is refused here with an error naming the variable, not later when a user saves a value.

mod error;
mod lenient;

pub use error::ImportError;

use crate::config_files::{MAX_FIND_ENTRIES, position};
use crate::{depth, rules, startup, stop, yaml_expansion};
use lenient::{boolean, embedded_object, invalid, kind, string_list, text};
use nexus_core::EggId;
use nexus_core::model::{
    ConfigFile, ConfigParser, DoneMatcher, Egg, EggImage, EggScript, EggSourceFormat, EggStartup, EggVariable,
    FindValue,
};
use serde_json::{Map, Value};

/// Largest egg file accepted. Real eggs are well under 1 MiB (icons included).
pub const MAX_EGG_BYTES: usize = 8 * 1024 * 1024;

/// Deepest nesting accepted in an egg file, and in the JSON some of its fields embed. Real
/// eggs nest about 5 levels deep. The nesting is measured before parsing: yaml_serde's
/// parser, libyaml, slows down quadratically on deeply nested flow collections before
/// yaml_serde's own recursion limit applies.
pub const MAX_EGG_DEPTH: usize = 64;

/// Imports an egg from JSON or YAML bytes (detected from the content).
///
/// # Errors
///
/// [`ImportError`]: the file is larger than [`MAX_EGG_BYTES`], nests deeper than
/// [`MAX_EGG_DEPTH`], does not parse, or is not a valid egg.
pub fn import_egg(bytes: &[u8]) -> Result<Egg, ImportError> {
    if bytes.len() > MAX_EGG_BYTES {
        return Err(ImportError::TooLarge { size: bytes.len(), limit: MAX_EGG_BYTES });
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| ImportError::Syntax { format: "UTF-8", message: e.to_string() })?;
    import_value(parse_document(text)?)
}

/// Parses the document: JSON when it starts with `{`, YAML otherwise.
fn parse_document(text: &str) -> Result<Value, ImportError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let too_deep = |too_deep: depth::TooDeep| ImportError::TooDeep {
        location: position(trimmed, too_deep.offset),
        limit: MAX_EGG_DEPTH,
    };
    if trimmed.starts_with('{') {
        depth::json(trimmed, MAX_EGG_DEPTH, false).map_err(too_deep)?;
        serde_json::from_str(trimmed).map_err(|e| ImportError::Syntax { format: "JSON", message: e.to_string() })
    } else {
        depth::yaml(trimmed, MAX_EGG_DEPTH).map_err(too_deep)?;
        // Before building a tree, which would repeat every aliased node in memory.
        match yaml_expansion::check(trimmed) {
            Err(yaml_expansion::Refused::Expands { limit }) => return Err(ImportError::ExpandsTooMuch { limit }),
            Err(refused @ yaml_expansion::Refused::TagDirective { .. }) => {
                return Err(ImportError::Syntax { format: "YAML", message: refused.to_string() });
            }
            // A malformed document gets yaml_serde's own message just below.
            Ok(()) | Err(yaml_expansion::Refused::Malformed(_)) => {}
        }
        let yaml: yaml_serde::Value = yaml_serde::from_str(trimmed)
            .map_err(|e| ImportError::Syntax { format: "YAML", message: e.to_string() })?;
        serde_json::to_value(yaml).map_err(|e| ImportError::Syntax { format: "YAML", message: e.to_string() })
    }
}

/// Imports an egg already parsed into a JSON value.
pub fn import_value(document: Value) -> Result<Egg, ImportError> {
    let Value::Object(root) = document else { return Err(ImportError::NotAnObject) };
    let meta = root.get("meta").and_then(Value::as_object);
    let version = meta.and_then(|m| m.get("version")).and_then(Value::as_str).unwrap_or("");
    let source_format = match version {
        "PTDL_v1" => EggSourceFormat::PtdlV1,
        "PTDL_v2" => EggSourceFormat::PtdlV2,
        "PLCN_v1" => EggSourceFormat::PlcnV1,
        "PLCN_v2" => EggSourceFormat::PlcnV2,
        "PLCN_v3" => EggSourceFormat::PlcnV3,
        other => return Err(ImportError::UnsupportedVersion(other.to_string())),
    };
    let name =
        text(root.get("name"), "name")?.filter(|n| !n.trim().is_empty()).ok_or(ImportError::MissingField("name"))?;
    let config = root.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
    let startup_block = embedded_object(config.get("startup"), "config.startup")?;

    Ok(Egg {
        nest: None,
        id: EggId::new(),
        source_uuid: text(root.get("uuid"), "uuid")?,
        source_format,
        name,
        author: text(root.get("author"), "author")?.unwrap_or_default(),
        description: text(root.get("description"), "description")?.unwrap_or_default(),
        update_url: text(meta.and_then(|m| m.get("update_url")), "meta.update_url")?,
        icon: match text(root.get("icon"), "icon")? {
            Some(icon) => Some(icon),
            // Pelican puts the icon (a data URL) under `image`; in PTDL_v1 `image` is a container image.
            None => root.get("image").and_then(Value::as_str).filter(|s| s.starts_with("data:")).map(String::from),
        },
        exported_at: text(root.get("exported_at"), "exported_at")?,
        tags: string_list(root.get("tags"), "tags")?,
        features: string_list(root.get("features"), "features")?,
        images: images(&root)?,
        file_denylist: string_list(root.get("file_denylist"), "file_denylist")?,
        templates: Vec::new(),
        startup_commands: startup_commands(&root)?,
        config_files: config_files(&embedded_object(config.get("files"), "config.files")?)?,
        done: done_matchers(startup_block.get("done"))?,
        stop: stop::parse_stop(&text(config.get("stop"), "config.stop")?.unwrap_or_default()),
        logs: Value::Object(embedded_object(config.get("logs"), "config.logs")?),
        install: install_script(&root)?,
        variables: variables(root.get("variables"))?,
    })
}

fn images(root: &Map<String, Value>) -> Result<Vec<EggImage>, ImportError> {
    let same = |image: String| EggImage { label: image.clone(), image };
    match root.get("docker_images") {
        Some(Value::Object(map)) if !map.is_empty() => {
            return map
                .iter()
                .map(|(label, image)| {
                    let image = text(Some(image), &format!("docker_images.{label}"))?.unwrap_or_default();
                    Ok(EggImage { label: label.clone(), image })
                })
                .collect();
        }
        Some(list @ Value::Array(items)) if !items.is_empty() => {
            return Ok(string_list(Some(list), "docker_images")?.into_iter().map(same).collect());
        }
        _ => {}
    }
    let legacy = string_list(root.get("images"), "images")?;
    if !legacy.is_empty() {
        return Ok(legacy.into_iter().map(same).collect());
    }
    match root.get("image").and_then(Value::as_str) {
        Some(image) if !image.is_empty() && !image.starts_with("data:") => Ok(vec![same(image.to_string())]),
        _ => Ok(Vec::new()),
    }
}

fn startup_commands(root: &Map<String, Value>) -> Result<Vec<EggStartup>, ImportError> {
    if let Some(Value::Object(map)) = root.get("startup_commands") {
        let commands = map
            .iter()
            .map(|(label, command)| {
                let command = text(Some(command), &format!("startup_commands.{label}"))?.unwrap_or_default();
                Ok(EggStartup { label: label.clone(), command })
            })
            .collect::<Result<Vec<_>, ImportError>>()?;
        if !commands.is_empty() {
            return Ok(commands);
        }
    }
    Ok(text(root.get("startup"), "startup")?
        .map(|command| vec![EggStartup { label: "Default".to_string(), command }])
        .unwrap_or_default())
}

fn config_files(files: &Map<String, Value>) -> Result<Vec<ConfigFile>, ImportError> {
    files
        .iter()
        .map(|(path, spec)| {
            let field = format!("config.files.{path}");
            let Value::Object(spec) = spec else {
                return Err(invalid(field, format!("expected an object, found {}", kind(spec))));
            };
            let parser_name = text(spec.get("parser"), &format!("{field}.parser"))?.unwrap_or_default();
            let parser = ConfigParser::from_name(&parser_name)
                .ok_or_else(|| ImportError::UnknownParser { path: path.clone(), parser: parser_name.clone() })?;
            let find = match spec.get("find") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) if items.is_empty() => Vec::new(),
                Some(Value::Object(find)) if find.len() > MAX_FIND_ENTRIES => {
                    return Err(invalid(
                        format!("{field}.find"),
                        format!("{} keys, more than the {MAX_FIND_ENTRIES} a config file may have", find.len()),
                    ));
                }
                Some(Value::Object(find)) => find
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), find_value(value, &format!("{field}.find.{key}"))?)))
                    .collect::<Result<_, ImportError>>()?,
                Some(other) => {
                    return Err(invalid(format!("{field}.find"), format!("expected an object, found {}", kind(other))));
                }
            };
            Ok(ConfigFile { path: path.clone(), parser, find })
        })
        .collect()
}

fn find_value(value: &Value, field: &str) -> Result<FindValue, ImportError> {
    Ok(match value {
        Value::String(s) => FindValue::Text(s.clone()),
        Value::Null => FindValue::Text(String::new()),
        Value::Number(_) | Value::Bool(_) => FindValue::Scalar(value.clone()),
        Value::Object(cases) => FindValue::Match(
            cases
                .iter()
                .map(|(when, then)| {
                    Ok((when.clone(), text(Some(then), &format!("{field}.{when}"))?.unwrap_or_default()))
                })
                .collect::<Result<_, ImportError>>()?,
        ),
        Value::Array(_) => return Err(invalid(field, "a list is not a valid replacement value")),
    })
}

fn done_matchers(done: Option<&Value>) -> Result<Vec<DoneMatcher>, ImportError> {
    // A single string is one matcher, verbatim: trailing spaces are part of what is matched.
    let entries = match done {
        Some(Value::String(s)) => vec![s.clone()],
        other => string_list(other, "config.startup.done")?,
    };
    entries
        .into_iter()
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.strip_prefix("regex:") {
            Some(pattern) => match regex::Regex::new(pattern) {
                Ok(_) => Ok(DoneMatcher::Regex(pattern.to_string())),
                Err(e) => Err(ImportError::InvalidDoneRegex { pattern: pattern.to_string(), message: e.to_string() }),
            },
            None => Ok(DoneMatcher::Substring(entry)),
        })
        .collect()
}

fn install_script(root: &Map<String, Value>) -> Result<EggScript, ImportError> {
    let installation = root
        .get("scripts")
        .and_then(Value::as_object)
        .and_then(|s| s.get("installation"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let script = text(installation.get("script"), "scripts.installation.script")?.unwrap_or_default();
    Ok(EggScript {
        script: script.replace("\r\n", "\n"),
        container: text(installation.get("container"), "scripts.installation.container")?.unwrap_or_default(),
        entrypoint: text(installation.get("entrypoint"), "scripts.installation.entrypoint")?
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "bash".to_string()),
    })
}

fn variables(list: Option<&Value>) -> Result<Vec<EggVariable>, ImportError> {
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(invalid("variables", format!("expected a list, found {}", kind(other)))),
    };
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| format!("variables[{i}].{name}");
            let Value::Object(v) = item else {
                return Err(invalid(format!("variables[{i}]"), format!("expected an object, found {}", kind(item))));
            };
            let env_variable = text(v.get("env_variable"), &field("env_variable"))?.unwrap_or_default();
            if !startup::is_valid_variable_name(&env_variable) {
                return Err(ImportError::InvalidVariableName(env_variable));
            }
            if startup::is_reserved(&env_variable) {
                return Err(ImportError::ReservedVariable(env_variable));
            }
            if !seen.insert(env_variable.clone()) {
                return Err(ImportError::DuplicateVariable(env_variable));
            }
            let rule_list = match v.get("rules") {
                Some(Value::String(s)) => rules::split_rule_string(s),
                other => string_list(other, &field("rules"))?,
            };
            let rule_list: Vec<String> = rule_list.into_iter().filter(|r| !r.trim().is_empty()).collect();
            rules::parse_rules(&rule_list)
                .map_err(|source| ImportError::InvalidRule { variable: env_variable.clone(), source })?;
            Ok(EggVariable {
                name: text(v.get("name"), &field("name"))?.unwrap_or_else(|| env_variable.clone()),
                description: text(v.get("description"), &field("description"))?.unwrap_or_default(),
                default_value: default_value(v.get("default_value"), &field("default_value"))?,
                user_viewable: boolean(v.get("user_viewable"), &field("user_viewable"), false)?,
                user_editable: boolean(v.get("user_editable"), &field("user_editable"), false)?,
                rules: rule_list,
                field_type: text(v.get("field_type"), &field("field_type"))?,
                sort: v.get("sort").and_then(Value::as_i64),
                env_variable,
            })
        })
        .collect()
}

/// Defaults are text; YAML eggs write numbers and booleans bare. Booleans become `1`/`0`,
/// which is what the `boolean` rule and the startup scripts of real eggs compare against.
fn default_value(value: Option<&Value>, field: &str) -> Result<String, ImportError> {
    match value {
        Some(Value::Bool(b)) => Ok(if *b { "1" } else { "0" }.to_string()),
        other => Ok(text(other, field)?.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests;

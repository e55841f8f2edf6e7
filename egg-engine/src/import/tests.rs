use super::*;
use crate::test_support::{DAEMON_STACK, SMALL_STACK, on_stack};
use nexus_core::model::{StopMethod, StopSignal};
use serde_json::json;

/// A minimal PTDL_v2 egg; tests override fields.
fn egg(overrides: Value) -> Value {
    let mut base = json!({
        "meta": { "version": "PTDL_v2" },
        "name": "Test",
        "author": "a@example.com",
        "docker_images": { "Java 17": "ghcr.io/example/java:17" },
        "startup": "java -jar {{JAR}}",
        "config": { "files": "{}", "startup": "{\"done\": \"Done\"}", "logs": "{}", "stop": "stop" },
        "scripts": { "installation": { "script": "echo hi", "container": "debian", "entrypoint": "bash" } },
        "variables": [{ "name": "Jar", "env_variable": "JAR", "default_value": "server.jar",
                        "user_viewable": true, "user_editable": true, "rules": "required|string|max:20" }]
    });
    if let (Value::Object(base), Value::Object(over)) = (&mut base, overrides) {
        base.extend(over);
    }
    base
}

fn import(v: Value) -> Result<Egg, ImportError> {
    import_egg(v.to_string().as_bytes())
}

#[test]
fn minimal_egg_imports() {
    let egg = import(egg(json!({}))).unwrap();
    assert_eq!(egg.name, "Test");
    assert_eq!(egg.default_image(), Some("ghcr.io/example/java:17"));
    assert_eq!(egg.default_startup(), Some("java -jar {{JAR}}"));
    assert_eq!(egg.done, vec![DoneMatcher::Substring("Done".into())]);
    assert_eq!(egg.stop, StopMethod::Command("stop".into()));
    assert_eq!(egg.variables[0].rules, vec!["required", "string", "max:20"]);
}

#[test]
fn legacy_images_list_and_image_string() {
    let e = import(egg(json!({ "docker_images": null, "images": ["a:1", "b:2"] }))).unwrap();
    assert_eq!(e.images.iter().map(|i| i.image.as_str()).collect::<Vec<_>>(), ["a:1", "b:2"]);
    let e = import(egg(json!({ "docker_images": null, "image": "legacy:1" }))).unwrap();
    assert_eq!(e.default_image(), Some("legacy:1"));
    let e = import(egg(json!({ "docker_images": ["x:1"] }))).unwrap();
    assert_eq!(e.images[0].label, "x:1");
}

#[test]
fn pelican_image_is_an_icon_not_a_container_image() {
    let e = import(egg(json!({ "image": "data:image/png;base64,AAAA" }))).unwrap();
    assert_eq!(e.icon.as_deref(), Some("data:image/png;base64,AAAA"));
    assert_eq!(e.default_image(), Some("ghcr.io/example/java:17"));
}

#[test]
fn native_maps_done_lists_and_regex() {
    let e = import(egg(json!({
        "meta": { "version": "PLCN_v3" },
        "startup_commands": { "Default": "./run", "Debug": "./run --debug" },
        "config": {
            "files": { "server.properties": { "parser": "properties", "find": { "server-port": "{{server.allocations.default.port}}", "max": 10 } } },
            "startup": { "done": ["Ready", "regex:^Listening on \\d+$"] },
            "logs": {},
            "stop": "^C"
        }
    })))
    .unwrap();
    assert_eq!(e.startup_commands.len(), 2);
    assert_eq!(e.startup_commands[1].label, "Debug");
    assert_eq!(e.done, vec![DoneMatcher::Substring("Ready".into()), DoneMatcher::Regex("^Listening on \\d+$".into())]);
    assert_eq!(e.stop, StopMethod::Signal(StopSignal::Interrupt));
    assert_eq!(e.config_files[0].parser, ConfigParser::Properties);
    assert_eq!(e.config_files[0].find[1], ("max".to_string(), FindValue::Scalar(json!(10))));
}

#[test]
fn if_value_objects_become_match_values() {
    let e = import(egg(json!({ "config": { "files": { "config.yml": { "parser": "yaml",
        "find": { "servers.*.address": { "regex:^(127\\.0\\.0\\.1|localhost)(:\\d{1,5})?$": "{{config.docker.interface}}$2" } } } },
        "startup": "{}", "logs": "{}", "stop": "end" } })))
    .unwrap();
    let FindValue::Match(cases) = &e.config_files[0].find[0].1 else { panic!("not a match value") };
    assert!(cases[0].0.starts_with("regex:"));
}

#[test]
fn file_denylist_shapes() {
    for (shape, expected) in [
        (json!({}), vec![]),
        (json!(""), vec![]),
        (json!(null), vec![]),
        (json!([]), vec![]),
        (json!(["*.jar", "config/secret"]), vec!["*.jar", "config/secret"]),
    ] {
        let e = import(egg(json!({ "file_denylist": shape.clone() }))).unwrap();
        assert_eq!(e.file_denylist, expected, "{shape}");
    }
}

#[test]
fn crlf_scripts_are_normalized() {
    let e = import(egg(
        json!({ "scripts": { "installation": { "script": "a\r\nb\r\n", "container": "c", "entrypoint": "ash" } } }),
    ))
    .unwrap();
    assert_eq!(e.install.script, "a\nb\n");
    assert_eq!(e.install.entrypoint, "ash");
}

#[test]
fn yaml_numbers_and_booleans_become_text() {
    let yaml = "meta:\n  version: PLCN_v3\nname: Y\nauthor: a\ndocker_images:\n  Img: img:1\nstartup_commands:\n  Default: ./run\nconfig:\n  files: {}\n  startup:\n    done: up\n  logs: {}\n  stop: quit\nvariables:\n  - name: Port\n    env_variable: QUERY_PORT\n    default_value: 27015\n    user_viewable: 1\n    user_editable: false\n    rules: [required, integer]\n  - name: Update\n    env_variable: AUTO_UPDATE\n    default_value: true\n    user_viewable: true\n    user_editable: true\n    rules: [boolean]\n";
    let e = import_egg(yaml.as_bytes()).unwrap();
    assert_eq!(e.variables[0].default_value, "27015");
    assert!(e.variables[0].user_viewable);
    assert_eq!(e.variables[1].default_value, "1");
}

#[test]
fn errors_name_what_is_wrong() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "meta": { "version": "PTDL_v9" } }), "PTDL_v9"),
        (json!({ "meta": null }), "unsupported egg format ``"),
        (json!({ "name": "" }), "missing field `name`"),
        (json!({ "variables": [{ "env_variable": "X", "rules": "required|frobnicate" }] }), "frobnicate"),
        (json!({ "variables": [{ "env_variable": "X", "rules": "required|frobnicate" }] }), "variable `X`"),
        (json!({ "variables": [{ "env_variable": "SERVER_PORT", "rules": "" }] }), "reserved"),
        (json!({ "variables": [{ "env_variable": "BAD-NAME", "rules": "" }] }), "BAD-NAME"),
        (
            json!({ "variables": [{ "env_variable": "A", "rules": "" }, { "env_variable": "A", "rules": "" }] }),
            "defined twice",
        ),
        (
            json!({ "config": { "files": { "a.cfg": { "parser": "hcl", "find": {} } }, "startup": "{}", "stop": "x" } }),
            "unknown parser `hcl`",
        ),
        (json!({ "config": { "files": "{not json", "startup": "{}", "stop": "x" } }), "config.files"),
        (
            json!({ "config": { "files": "{}", "startup": "{\"done\": \"regex:(unclosed\"}", "stop": "x" } }),
            "(unclosed",
        ),
        (json!({ "variables": "nope" }), "variables"),
    ];
    for (overrides, needle) in cases {
        let err = import(egg(overrides.clone())).expect_err(&overrides.to_string()).to_string();
        assert!(err.contains(needle), "{overrides}: `{err}` does not mention `{needle}`");
    }
    assert!(matches!(import_egg(b"[1, 2]"), Err(ImportError::NotAnObject)));
    assert!(matches!(import_egg(b"{\"meta\": "), Err(ImportError::Syntax { format: "JSON", .. })));
    assert!(matches!(import_egg(b"meta: [unclosed"), Err(ImportError::Syntax { format: "YAML", .. })));
    assert!(matches!(import_egg(&[0xff, 0xfe]), Err(ImportError::Syntax { format: "UTF-8", .. })));
}

/// Deep eggs are refused before serde parses them, without recursion: YAML flow collections
/// 100,000 deep (200 KB) took libyaml over 40 seconds before yaml_serde's recursion limit
/// applied, and the others came back as syntax errors rather than typed ones.
#[test]
fn deeply_nested_eggs_are_refused_quickly() {
    const DEEP: usize = 100_000;
    let deep_files = egg(json!({ "config": { "files": "[".repeat(DEEP), "startup": "{}", "stop": "x" } })).to_string();
    let cases = [
        (format!("meta: {}{}\n", "[".repeat(DEEP), "]".repeat(DEEP)), "line 1"),
        ("{\"\":[".repeat(DEEP / 2), "line 1"),
        (format!("meta:\n  {}x\n", "- ".repeat(DEEP)), "line 2"),
        (format!("{}1{}", "{\"a\": ".repeat(DEEP), "}".repeat(DEEP)), "line 1"),
        (deep_files, "config.files"),
    ];
    for (text, location) in cases {
        let result = on_stack(SMALL_STACK, move || import_egg(text.as_bytes()).map(drop));
        match result {
            Err(ImportError::TooDeep { location: at, limit }) => {
                assert_eq!(limit, MAX_EGG_DEPTH);
                assert!(at.contains(location), "{at} should mention {location}");
            }
            other => panic!("expected TooDeep at {location}, got {other:?}"),
        }
    }
}

#[test]
fn eggs_within_the_depth_limit_import() {
    // The root, `config` and `logs` objects, then `depth - 3` nested lists.
    let egg_of_depth = |depth: usize| {
        let mut nested = json!(1);
        for _ in 3..depth {
            nested = Value::Array(vec![nested]);
        }
        egg(json!({ "config": { "files": "{}", "startup": "{}", "stop": "x", "logs": { "x": nested } } })).to_string()
    };
    let at_limit = egg_of_depth(MAX_EGG_DEPTH);
    assert!(on_stack(DAEMON_STACK, move || import_egg(at_limit.as_bytes()).map(drop)).is_ok());
    assert!(matches!(import_egg(egg_of_depth(MAX_EGG_DEPTH + 1).as_bytes()), Err(ImportError::TooDeep { .. })));
}

#[test]
fn oversized_eggs_and_overlong_find_lists_are_refused() {
    let big = vec![b' '; MAX_EGG_BYTES + 1];
    assert!(matches!(
        import_egg(&big),
        Err(ImportError::TooLarge { size, limit }) if size == MAX_EGG_BYTES + 1 && limit == MAX_EGG_BYTES
    ));
    let find: Map<String, Value> = (0..=MAX_FIND_ENTRIES).map(|i| (format!("k{i}"), json!("v"))).collect();
    let files = json!({ "a.properties": { "parser": "properties", "find": find } });
    let err = import(egg(json!({ "config": { "files": files, "startup": "{}", "stop": "x" } }))).unwrap_err();
    assert!(
        matches!(&err, ImportError::InvalidField { field, .. } if field == "config.files.a.properties.find"),
        "{err}"
    );
}

/// A YAML egg whose aliases expand to billions of nodes is refused before a tree is built.
#[test]
fn yaml_alias_bombs_are_refused() {
    let mut text = String::from("meta:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (previous, name) in ('a'..='j').zip('b'..='k') {
        text.push_str(&format!("  {name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
    }
    let started = std::time::Instant::now();
    assert!(matches!(import_egg(text.as_bytes()), Err(ImportError::ExpandsTooMuch { .. })));
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
}

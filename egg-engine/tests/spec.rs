//! `server_spec`: an egg, the server's settings, its allocations and the values given become
//! the spec a node runs, or the first reason they cannot.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nexus_core::ids::ServerId;
use nexus_core::model::{Egg, ServerLimits};
use nexus_core::runtime::PortBinding;
use nexus_eggs::import::import_egg;
use nexus_eggs::spec::{Editor, ServerSettings, SpecBuildError, render_spec_startup, server_spec};
use std::collections::BTreeMap;
use std::path::Path;

fn egg() -> Egg {
    import_egg(include_bytes!("fixtures/egg-busybox-echo.json")).unwrap()
}

fn settings() -> ServerSettings {
    let mut settings = ServerSettings::new(ServerId::new());
    settings.limits = ServerLimits { memory_mb: 512, ..ServerLimits::default() };
    settings.location = Some("ams".into());
    settings.allocation_limit = Some(2);
    settings
}

fn ports() -> Vec<PortBinding> {
    vec![
        PortBinding { ip: "10.0.0.5".parse().unwrap(), port: 25565 },
        PortBinding { ip: "10.0.0.5".parse().unwrap(), port: 25575 },
    ]
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn defaults_fill_what_was_not_given_and_the_egg_supplies_the_rest() {
    let egg = egg();
    let settings = settings();
    let spec = server_spec(&egg, &settings, &ports(), &values(&[("MAX_PLAYERS", "32")])).unwrap();
    assert_eq!(spec.id, settings.id);
    assert_eq!(spec.image, "nexus-test/busybox:latest");
    assert_eq!(spec.startup, egg.default_startup().unwrap());
    assert_eq!(spec.environment, values(&[("GREETING", "hello"), ("MAX_PLAYERS", "32"), ("MOTD", "")]));
    assert_eq!((spec.done.clone(), spec.stop.clone()), (egg.done.clone(), egg.stop.clone()));
    assert_eq!((spec.config_files.len(), &spec.install), (1, &egg.install));
    assert_eq!(spec.allocations, ports());
    assert_eq!(spec.limits.memory_mb, 512);
    assert_eq!(spec.validate(), Ok(()));

    // What the node will give the process, as Wings and the panel do between them.
    let env = render_spec_startup(&spec, Some("Europe/Amsterdam")).unwrap().env;
    for (name, value) in [
        ("SERVER_MEMORY", "512"),
        ("SERVER_IP", "10.0.0.5"),
        ("SERVER_PORT", "25565"),
        ("P_SERVER_LOCATION", "ams"),
        ("P_SERVER_ALLOCATION_LIMIT", "2"),
        ("TZ", "Europe/Amsterdam"),
        ("HOME", "/home/container"),
        ("USER", "container"),
        ("MAX_PLAYERS", "32"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert_eq!(env["P_SERVER_UUID"], settings.id.to_string());
    assert!(env["STARTUP"].contains("${GREETING}"), "values travel as references: {}", env["STARTUP"]);
}

#[test]
fn settings_override_the_egg_image_and_startup() {
    let mut settings = settings();
    settings.image = Some("nexus-test/busybox-user:latest".into());
    settings.startup = Some("echo {{GREETING}}".into());
    settings.suspended = true;
    let spec = server_spec(&egg(), &settings, &ports(), &BTreeMap::new()).unwrap();
    assert_eq!(
        (spec.image.as_str(), spec.startup.as_str(), spec.suspended),
        ("nexus-test/busybox-user:latest", "echo {{GREETING}}", true)
    );
}

#[test]
fn every_refusal_names_the_variable_and_the_rule() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 5] = [
        (&[("GREETING", "")], "GREETING", "required"),
        (&[("GREETING", "a greeting far longer than twenty")], "GREETING", "max"),
        (&[("MAX_PLAYERS", "many")], "MAX_PLAYERS", "integer"),
        (&[("MAX_PLAYERS", "65")], "MAX_PLAYERS", "between"),
        (&[("MOTD", &"m".repeat(65))], "MOTD", "max"),
    ];
    let mut admin = settings();
    admin.editor = Editor::Admin;
    for (given, variable, rule) in cases {
        match server_spec(&egg(), &admin, &ports(), &values(given)) {
            Err(SpecBuildError::Invalid(e)) => {
                assert_eq!((e.env_variable.as_str(), e.rule.name()), (variable, rule), "{given:?}");
                let message = SpecBuildError::Invalid(e).to_string();
                assert!(message.starts_with(variable), "{message}");
            }
            other => panic!("{given:?}: {other:?}"),
        }
    }
    // A nullable variable may be left empty.
    assert!(server_spec(&egg(), &admin, &ports(), &values(&[("MOTD", "")])).is_ok());
}

/// As Pterodactyl's client API: users set only variables the egg lets them edit; admins (and
/// values already stored) set any.
#[test]
fn users_cannot_set_locked_variables() {
    match server_spec(&egg(), &settings(), &ports(), &values(&[("MOTD", "mine")])) {
        Err(SpecBuildError::NotEditable { name }) => assert_eq!(name, "MOTD"),
        other => panic!("{other:?}"),
    }
    let mut admin = settings();
    admin.editor = Editor::Admin;
    let spec = server_spec(&egg(), &admin, &ports(), &values(&[("MOTD", "theirs")])).unwrap();
    assert_eq!(spec.environment["MOTD"], "theirs");
}

/// Laravel trims request strings before validating; so does this, and it stores what it
/// checked. Oversized values are refused before any rule looks at them.
#[test]
fn values_are_trimmed_and_bounded() {
    let spec = server_spec(&egg(), &settings(), &ports(), &values(&[("GREETING", "  hi  "), ("MAX_PLAYERS", " 9\n")]))
        .unwrap();
    assert_eq!((spec.environment["GREETING"].as_str(), spec.environment["MAX_PLAYERS"].as_str()), ("hi", "9"));
    match server_spec(&egg(), &settings(), &ports(), &values(&[("GREETING", "   ")])) {
        Err(SpecBuildError::Invalid(e)) => assert_eq!(e.rule.name(), "required", "blank is empty"),
        other => panic!("{other:?}"),
    }
    let huge = "x".repeat(200 * 1024);
    assert!(matches!(
        server_spec(&egg(), &settings(), &ports(), &values(&[("GREETING", &huge)])),
        Err(SpecBuildError::TooLong { name }) if name == "GREETING"
    ));
    match server_spec(&egg(), &settings(), &ports(), &values(&[("BAD\u{1b}[2J", "1")])) {
        Err(SpecBuildError::UnknownVariable { name }) => assert!(!name.contains('\u{1b}'), "{name:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_variables_and_platform_names_are_refused() {
    for name in ["NOPE", "SERVER_PORT", "P_SERVER_LOCATION", "STARTUP"] {
        match server_spec(&egg(), &settings(), &ports(), &values(&[(name, "1")])) {
            Err(SpecBuildError::UnknownVariable { name: got }) => assert_eq!(got, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_value_the_startup_cannot_carry_fails_before_any_node_sees_it() {
    let mut egg = egg();
    // Valid for its rules, but used where bash evaluates arithmetic.
    egg.startup_commands[0].command = "[[ {{GREETING}} -eq 1 ]] && echo one".into();
    match server_spec(&egg, &settings(), &ports(), &values(&[("GREETING", "a[$(id)]")])) {
        Err(SpecBuildError::Startup(e)) => assert!(e.to_string().contains("GREETING"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_a_node_would_refuse_is_refused_here_with_its_field() {
    let mut settings = settings();
    settings.limits.memory_mb = 1;
    match server_spec(&egg(), &settings, &ports(), &BTreeMap::new()) {
        Err(SpecBuildError::Spec(e)) => assert_eq!(e.field, "limits.memory_mb"),
        other => panic!("{other:?}"),
    }
    let mut settings = self::settings();
    settings.location = Some("two\nlines".into());
    assert!(
        matches!(server_spec(&egg(), &settings, &ports(), &BTreeMap::new()), Err(SpecBuildError::Spec(e)) if e.field == "location")
    );
    let same_port = [ports()[0], ports()[0]];
    assert!(
        matches!(server_spec(&egg(), &self::settings(), &same_port, &BTreeMap::new()), Err(SpecBuildError::Spec(e)) if e.field.starts_with("allocations"))
    );
}

#[test]
fn an_egg_without_image_or_startup_needs_them_from_the_settings() {
    let mut egg = egg();
    egg.images.clear();
    assert!(matches!(server_spec(&egg, &settings(), &ports(), &BTreeMap::new()), Err(SpecBuildError::NoImage)));
    egg.startup_commands.clear();
    let mut settings = settings();
    settings.image = Some("nexus-test/busybox:latest".into());
    assert!(matches!(server_spec(&egg, &settings, &ports(), &BTreeMap::new()), Err(SpecBuildError::NoStartup)));
    settings.startup = Some("echo hi".into());
    assert!(server_spec(&egg, &settings, &ports(), &BTreeMap::new()).is_ok());
}

/// Every real egg with its own defaults: either a spec every node accepts, or a refusal that
/// names a `required` variable whose default is empty (authors leave tokens and passwords for
/// the user to fill in).
#[test]
fn every_corpus_egg_with_its_defaults() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eggs");
    let (mut built, mut needs_values) = (0, Vec::new());
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("egg corpus missing at {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")) {
            continue;
        }
        let egg = import_egg(&std::fs::read(&path).unwrap()).unwrap();
        match server_spec(&egg, &settings(), &ports(), &BTreeMap::new()) {
            Ok(spec) => {
                assert_eq!(spec.validate(), Ok(()));
                assert_eq!(spec.environment.len(), egg.variables.len(), "{}", path.display());
                built += 1;
            }
            Err(SpecBuildError::Invalid(e)) => {
                let variable = egg.variable(&e.env_variable).unwrap();
                assert!(
                    e.rule.name() == "required" && variable.default_value.trim().is_empty(),
                    "{}: a default its own rules refuse for another reason than being empty: {e}",
                    path.display()
                );
                needs_values.push(format!("{}: {} ({:?})", egg.name, e, variable.default_value));
            }
            Err(other) => panic!("{}: {other}", path.display()),
        }
    }
    eprintln!(
        "{built} eggs build with their defaults; {} need values:\n{}",
        needs_values.len(),
        needs_values.join("\n")
    );
    assert!(built + needs_values.len() >= 77, "the whole corpus was read");
    assert!(built > needs_values.len(), "most eggs run with their defaults");
}

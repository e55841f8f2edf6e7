//! The `egg_tool` example validates values and renders the startup of an egg file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const EGG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../egg-engine/tests/fixtures/egg-busybox-echo.json");

fn egg_tool(args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } =
        Command::new(env!("CARGO_BIN_EXE_egg_tool")).args(args).output().expect("runs egg_tool");
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

#[test]
fn renders_valid_values() {
    let (code, stdout, stderr) = egg_tool(&[EGG, "GREETING=hi", "MAX_PLAYERS=10"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("egg: Busybox echo"), "{stdout}");
    assert!(stdout.contains(r#"display: echo "hi on port 25565""#), "{stdout}");
    assert!(stdout.contains(r#"command: echo "${GREETING} on port ${SERVER_PORT}""#), "{stdout}");
    assert!(stdout.contains("MAX_PLAYERS=\"10\" (rules: required|integer|between:1,64)"), "{stdout}");
    // MOTD keeps its (empty) default.
    assert!(stdout.contains("MOTD=\"\" (rules: nullable|string|max:64)"), "{stdout}");
}

#[test]
fn renders_defaults_without_values() {
    let (code, stdout, stderr) = egg_tool(&[EGG]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(r#"display: echo "hello on port 25565""#), "{stdout}");
}

#[test]
fn refuses_value_breaking_a_rule() {
    let (code, stdout, stderr) = egg_tool(&[EGG, "MAX_PLAYERS=100"]);
    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("MAX_PLAYERS"), "{stderr}");
    assert!(stderr.contains("between"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn refuses_unknown_variable() {
    let (code, stdout, stderr) = egg_tool(&[EGG, "NOPE=1"]);
    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("NOPE"), "{stderr}");
}

#[test]
fn refuses_missing_egg_file() {
    let (code, _, stderr) = egg_tool(&["/nonexistent/egg.json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/egg.json"), "{stderr}");
}

#[test]
fn usage_error_without_arguments() {
    let (code, stdout, stderr) = egg_tool(&[]);
    assert_eq!(code, Some(64), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("usage: egg_tool"), "{stderr}");
}

#[test]
fn usage_error_for_argument_without_equals() {
    let (code, _, stderr) = egg_tool(&[EGG, "GREETING"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("usage: egg_tool"), "{stderr}");
}

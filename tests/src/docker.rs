//! The Docker CLI, as an operator would type it: the harness starts, stops, kills and
//! partitions containers with the same commands.

use std::process::Command;

/// Runs `docker ARGS`; its trimmed stdout, or what it printed on failure.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output().map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs `docker ARGS`; panics with what it printed unless it succeeded.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Removes every container `filter` (a `docker ps --filter`) selects.
pub fn remove_containers(filter: &str) {
    let Ok(ids) = try_docker(&["ps", "-aq", "--filter", filter]) else { return };
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        let _ = try_docker(&args);
    }
}

/// The host PID of a running container's first process.
pub fn pid_of(container: &str) -> Option<u32> {
    try_docker(&["inspect", "-f", "{{.State.Pid}}", container]).ok()?.parse().ok().filter(|pid| *pid != 0)
}

/// Whether `container` runs.
pub fn running(container: &str) -> bool {
    try_docker(&["inspect", "-f", "{{.State.Running}}", container]).is_ok_and(|s| s == "true")
}

/// The start time Docker recorded for `container` (changes when it is started again).
pub fn started_at(container: &str) -> String {
    docker(&["inspect", "-f", "{{.State.StartedAt}}", container])
}

/// Running containers `filter` selects, by name.
pub fn names(filter: &str) -> Vec<String> {
    try_docker(&["ps", "--filter", filter, "--format", "{{.Names}}"])
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

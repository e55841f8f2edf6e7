//! [`ServerSpec::validate`]: everything a node can check about a spec before accepting it.
//!
//! A spec that passes can still fail later for reasons only the node sees (a missing image, a
//! port in use, a startup template `nexus-eggs` cannot render), but never because one of its
//! own values is impossible. Panels call this before sending a spec; the node agent and the
//! reference daemon call it again on arrival, since panels are not trusted to.
//!
//! | field | rule |
//! |---|---|
//! | `id` | not the nil UUID |
//! | `image`, `install.container` | an image reference (below); `install.container` may be empty (the server's image) |
//! | `startup` | not blank, no NUL, at most [`MAX_STARTUP_BYTES`] |
//! | `environment` | at most [`MAX_ENVIRONMENT`] names, each matching `[A-Za-z_][A-Za-z0-9_]*` and not [reserved](crate::env::is_reserved); values without NUL; each `NAME=value` at most [`MAX_ENV_ENTRY_BYTES`], all together at most [`MAX_ENV_TOTAL_BYTES`] |
//! | `limits.memory_mb` | `0` (unlimited) or [`MIN_MEMORY_MB`]..=[`MAX_MEMORY_MB`] |
//! | `limits.swap_mb` | `-1` (unlimited), `0` (none) or up to [`MAX_SWAP_MB`]; positive only with a memory limit |
//! | `limits.cpu_percent` | `0` (unlimited) or up to [`MAX_CPU_PERCENT`] |
//! | `limits.disk_mb` | `0` (unlimited) or up to [`MAX_DISK_MB`] |
//! | `limits.io_weight` | `0` (engine default) or 10..=1000 |
//! | `limits.pids` | `0` (node default) or [`MIN_PIDS`]..=[`MAX_PIDS`] |
//! | `allocations` | at most [`MAX_ALLOCATIONS`]; port not 0; not a multicast or broadcast address; no two binding the same port on the same address (or one of them on the unspecified address of the same family) |
//! | `done` | at most [`MAX_DONE_MATCHERS`]; each non-empty, at most [`MAX_PATTERN_BYTES`], no line break (lines never contain one); regexes compile, alone and as a set |
//! | `stop` | a command: not blank, one line, at most [`MAX_COMMAND_BYTES`] |
//! | `config_files` | at most [`MAX_CONFIG_FILES`]; a path that is not blank, has no NUL and no `..` component; its `find` entries at most [`MAX_CONFIG_FIND_BYTES`] together |
//! | `install.script` | at most [`MAX_INSTALL_SCRIPT_BYTES`], no NUL |
//! | `install.entrypoint` | empty (`bash`) or a program name or path: no whitespace or control characters |
//! | `location` | at most [`MAX_LOCATION_BYTES`], no control characters |
//! | `file_denylist` | at most [`MAX_DENYLIST_PATTERNS`]; each at most [`MAX_PATTERN_BYTES`], no NUL or line break (whether a pattern is valid gitignore syntax is the file manager's to say: the daemon checks it) |
//!
//! **Memory floor.** Docker refuses limits under 6 MiB, and a process with a few MiB is
//! killed by the OOM killer while its shell starts; [`MIN_MEMORY_MB`] (16 MiB) is the
//! smallest limit under which a shell and a tiny server still start.
//!
//! An image reference is at most [`MAX_IMAGE_BYTES`] of `[A-Za-z0-9._/:@-]`, starting with
//! a letter or digit: a syntax check only (no whitespace, no option-like `-x`, nothing an
//! engine would have to guess at); whether the image exists is the runtime's to say at start.

use super::MAX_COMMAND_BYTES;
use super::ServerSpec;
use crate::model::{DoneMatcher, FindValue, StopMethod};
use std::net::IpAddr;

/// Longest location code a spec may carry (`P_SERVER_LOCATION`).
pub const MAX_LOCATION_BYTES: usize = 255;

/// Smallest memory limit, MiB (see the module docs).
pub const MIN_MEMORY_MB: u64 = 16;
/// Largest memory limit, MiB: 16 TiB, past any host a node runs on (and far below what
/// overflows byte counts).
pub const MAX_MEMORY_MB: u64 = 1 << 24;
/// Largest swap limit, MiB (16 TiB).
pub const MAX_SWAP_MB: i64 = 1 << 24;
/// Largest CPU limit, percent of one core: 1024 cores.
pub const MAX_CPU_PERCENT: u64 = 100 * 1024;
/// Largest disk quota, MiB (1 PiB).
pub const MAX_DISK_MB: u64 = 1 << 30;
/// Smallest process limit: the container's init, the shell wrapper and a few threads (a
/// Java server starts dozens).
pub const MIN_PIDS: u64 = 16;
/// Largest process limit: the kernel's `PID_MAX_LIMIT` on 64-bit.
pub const MAX_PIDS: u64 = 1 << 22;
/// Most published ports per server: each costs the engine a proxy per protocol.
pub const MAX_ALLOCATIONS: usize = 256;
/// Most environment variables per server.
pub const MAX_ENVIRONMENT: usize = 1024;
/// Longest `NAME=value` entry: the kernel's `MAX_ARG_STRLEN` (128 KiB, the terminating NUL
/// included); a longer one makes the server's `exec` fail.
pub const MAX_ENV_ENTRY_BYTES: usize = 128 * 1024 - 1;
/// Most bytes of environment in total (names, values, startup): half the usual `ARG_MAX`.
pub const MAX_ENV_TOTAL_BYTES: usize = 1 << 20;
/// Longest startup template (it also travels in the environment as `STARTUP`).
pub const MAX_STARTUP_BYTES: usize = 64 * 1024;
/// Most `done` matchers.
pub const MAX_DONE_MATCHERS: usize = 64;
/// Longest `done` pattern or denylist pattern.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Most config files patched per start.
pub const MAX_CONFIG_FILES: usize = 64;

/// Largest install script a spec may carry (the real eggs' longest are a few tens of KiB).
pub const MAX_INSTALL_SCRIPT_BYTES: usize = 1 << 20;

/// Most bytes the `find` entries of one config file may take together (keys and values).
pub const MAX_CONFIG_FIND_BYTES: usize = 256 * 1024;
/// Most denylist patterns.
pub const MAX_DENYLIST_PATTERNS: usize = 1024;
/// Longest image reference.
pub const MAX_IMAGE_BYTES: usize = 512;

/// Why a [`ServerSpec`] cannot be accepted: the field at fault (`limits.memory_mb`,
/// `environment.STARTUP`, `done[1]`, ...) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
#[non_exhaustive]
pub struct SpecError {
    /// Path of the field in the spec's JSON form (`limits.memory_mb`, `allocations[2]`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl SpecError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

type Checked = Result<(), SpecError>;

impl ServerSpec {
    /// Checks every value of the spec; the first problem found is returned. The rules are
    /// listed in the [module docs](crate::transport::validate).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.id.as_uuid().is_nil() {
            return Err(SpecError::new("id", "the nil UUID is not a server id"));
        }
        check_image("image", &self.image)?;
        self.check_startup_and_environment()?;
        self.check_limits()?;
        self.check_allocations()?;
        self.check_done()?;
        if let StopMethod::Command(command) = &self.stop {
            check_command("stop", command)?;
        }
        self.check_config_files()?;
        if !self.install.container.is_empty() {
            check_image("install.container", &self.install.container)?;
        }
        check_entrypoint(&self.install.entrypoint)?;
        if self.install.script.len() > MAX_INSTALL_SCRIPT_BYTES {
            return Err(SpecError::new("install.script", format!("longer than {MAX_INSTALL_SCRIPT_BYTES} bytes")));
        }
        if self.install.script.contains('\0') {
            return Err(SpecError::new("install.script", "contains a NUL byte"));
        }
        if let Some(location) = &self.location {
            if location.len() > MAX_LOCATION_BYTES {
                return Err(SpecError::new("location", format!("longer than {MAX_LOCATION_BYTES} bytes")));
            }
            if location.chars().any(char::is_control) {
                return Err(SpecError::new("location", "contains a control character"));
            }
        }
        check_patterns("file_denylist", &self.file_denylist, MAX_DENYLIST_PATTERNS)?;
        for (i, pattern) in self.file_denylist.iter().enumerate() {
            if pattern.contains('\0') {
                return Err(SpecError::new(format!("file_denylist[{i}]"), "contains a NUL byte"));
            }
        }
        Ok(())
    }

    fn check_startup_and_environment(&self) -> Checked {
        if self.startup.trim().is_empty() {
            return Err(SpecError::new("startup", "is empty"));
        }
        if self.startup.contains('\0') {
            return Err(SpecError::new("startup", "contains a NUL byte"));
        }
        if self.startup.len() > MAX_STARTUP_BYTES {
            return Err(SpecError::new("startup", format!("is longer than {MAX_STARTUP_BYTES} bytes")));
        }
        if self.environment.len() > MAX_ENVIRONMENT {
            return Err(SpecError::new("environment", format!("has more than {MAX_ENVIRONMENT} variables")));
        }
        // `STARTUP=<command>` travels in the environment as well.
        let mut total = "STARTUP=".len() + self.startup.len() + 1;
        for (name, value) in &self.environment {
            let field = || format!("environment.{name}");
            if !crate::env::is_valid_variable_name(name) {
                return Err(SpecError::new(
                    format!("environment.{}", printable(name)),
                    "an environment name must match [A-Za-z_][A-Za-z0-9_]*",
                ));
            }
            if crate::env::is_reserved(name) {
                return Err(SpecError::new(field(), "this name is set by the platform or read by the shell"));
            }
            if value.contains('\0') {
                return Err(SpecError::new(field(), "the value contains a NUL byte"));
            }
            let entry = name.len() + 1 + value.len();
            if entry > MAX_ENV_ENTRY_BYTES {
                return Err(SpecError::new(field(), format!("longer than {MAX_ENV_ENTRY_BYTES} bytes")));
            }
            total += entry + 1;
        }
        if total > MAX_ENV_TOTAL_BYTES {
            return Err(SpecError::new("environment", format!("more than {MAX_ENV_TOTAL_BYTES} bytes in total")));
        }
        Ok(())
    }

    fn check_limits(&self) -> Checked {
        let l = &self.limits;
        if l.memory_mb != 0 && !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&l.memory_mb) {
            return Err(SpecError::new(
                "limits.memory_mb",
                format!("{} MiB: must be 0 (unlimited) or {MIN_MEMORY_MB}..={MAX_MEMORY_MB}", l.memory_mb),
            ));
        }
        match l.swap_mb {
            -1 | 0 => {}
            swap if !(-1..=MAX_SWAP_MB).contains(&swap) => {
                return Err(SpecError::new(
                    "limits.swap_mb",
                    format!("{swap} MiB: must be -1 (unlimited), 0 (none) or up to {MAX_SWAP_MB}"),
                ));
            }
            _ if l.memory_mb == 0 => {
                return Err(SpecError::new("limits.swap_mb", "a swap size needs a memory limit"));
            }
            _ => {}
        }
        if l.cpu_percent > MAX_CPU_PERCENT {
            return Err(SpecError::new(
                "limits.cpu_percent",
                format!("{}: must be 0 (unlimited) or up to {MAX_CPU_PERCENT}", l.cpu_percent),
            ));
        }
        if l.disk_mb > MAX_DISK_MB {
            return Err(SpecError::new(
                "limits.disk_mb",
                format!("{} MiB: must be 0 (unlimited) or up to {MAX_DISK_MB}", l.disk_mb),
            ));
        }
        if l.io_weight != 0 && !(10..=1000).contains(&l.io_weight) {
            return Err(SpecError::new(
                "limits.io_weight",
                format!("{}: must be 0 (engine default) or 10..=1000", l.io_weight),
            ));
        }
        if l.pids != 0 && !(MIN_PIDS..=MAX_PIDS).contains(&l.pids) {
            return Err(SpecError::new(
                "limits.pids",
                format!("{}: must be 0 (node default) or {MIN_PIDS}..={MAX_PIDS}", l.pids),
            ));
        }
        Ok(())
    }

    fn check_allocations(&self) -> Checked {
        if self.allocations.len() > MAX_ALLOCATIONS {
            return Err(SpecError::new("allocations", format!("more than {MAX_ALLOCATIONS}")));
        }
        for (i, a) in self.allocations.iter().enumerate() {
            let field = || format!("allocations[{i}]");
            if a.port == 0 {
                return Err(SpecError::new(field(), "port 0 cannot be published"));
            }
            let unbindable = match a.ip {
                IpAddr::V4(ip) => ip.is_multicast() || ip.is_broadcast(),
                IpAddr::V6(ip) => ip.is_multicast(),
            };
            if unbindable {
                return Err(SpecError::new(field(), format!("{} is not an address a port can be bound to", a.ip)));
            }
            let clash = self.allocations[..i].iter().position(|b| {
                b.port == a.port
                    && b.ip.is_ipv4() == a.ip.is_ipv4()
                    && (b.ip == a.ip || b.ip.is_unspecified() || a.ip.is_unspecified())
            });
            if let Some(j) = clash {
                return Err(SpecError::new(
                    field(),
                    format!("{}:{} overlaps allocations[{j}] ({})", a.ip, a.port, self.allocations[j].ip),
                ));
            }
        }
        Ok(())
    }

    fn check_done(&self) -> Checked {
        if self.done.len() > MAX_DONE_MATCHERS {
            return Err(SpecError::new("done", format!("more than {MAX_DONE_MATCHERS} matchers")));
        }
        for (i, matcher) in self.done.iter().enumerate() {
            let field = || format!("done[{i}]");
            let (DoneMatcher::Substring(pattern) | DoneMatcher::Regex(pattern)) = matcher;
            if pattern.is_empty() {
                return Err(SpecError::new(field(), "an empty pattern matches every line; leave `done` empty instead"));
            }
            if pattern.len() > MAX_PATTERN_BYTES {
                return Err(SpecError::new(field(), format!("longer than {MAX_PATTERN_BYTES} bytes")));
            }
            match matcher {
                DoneMatcher::Substring(text) if text.contains(['\n', '\r']) => {
                    return Err(SpecError::new(field(), "console lines never contain a line break"));
                }
                DoneMatcher::Regex(pattern) => {
                    regex::Regex::new(pattern).map_err(|e| SpecError::new(field(), e.to_string()))?;
                }
                DoneMatcher::Substring(_) => {}
            }
        }
        // Each pattern compiled alone; together they may still exceed the set's size limit.
        let patterns = self.done.iter().filter_map(|m| match m {
            DoneMatcher::Regex(pattern) => Some(pattern.as_str()),
            DoneMatcher::Substring(_) => None,
        });
        regex::RegexSet::new(patterns).map_err(|e| SpecError::new("done", format!("done patterns: {e}")))?;
        Ok(())
    }

    fn check_config_files(&self) -> Checked {
        if self.config_files.len() > MAX_CONFIG_FILES {
            return Err(SpecError::new("config_files", format!("more than {MAX_CONFIG_FILES}")));
        }
        for (i, file) in self.config_files.iter().enumerate() {
            let find_bytes: usize = file.find.iter().map(|(key, value)| key.len() + find_value_bytes(value)).sum();
            if find_bytes > MAX_CONFIG_FIND_BYTES {
                return Err(SpecError::new(
                    format!("config_files[{i}].find"),
                    format!("{find_bytes} bytes; at most {MAX_CONFIG_FIND_BYTES}"),
                ));
            }
            let field = || format!("config_files[{i}].path");
            if file.path.contains('\0') {
                return Err(SpecError::new(field(), "contains a NUL byte"));
            }
            let mut components = file.path.split(['/', '\\']).filter(|c| !c.is_empty() && *c != ".");
            if components.clone().next().is_none() {
                return Err(SpecError::new(field(), "names no file"));
            }
            // Stricter than the file manager (which allows `a/../b`): no egg needs `..`.
            if components.any(|c| c == "..") {
                return Err(SpecError::new(field(), "may not contain `..`"));
            }
        }
        Ok(())
    }
}

/// The size of one `find` value as text.
fn find_value_bytes(value: &FindValue) -> usize {
    match value {
        FindValue::Text(text) => text.len(),
        FindValue::Scalar(scalar) => scalar.to_string().len(),
        FindValue::Match(pairs) => pairs.iter().map(|(a, b)| a.len() + b.len()).sum(),
    }
}

fn check_image(field: &str, image: &str) -> Checked {
    if image.is_empty() {
        return Err(SpecError::new(field, "is empty"));
    }
    if image.len() > MAX_IMAGE_BYTES {
        return Err(SpecError::new(field, format!("longer than {MAX_IMAGE_BYTES} bytes")));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '-');
    if !image.starts_with(|c: char| c.is_ascii_alphanumeric()) || !image.chars().all(allowed) {
        return Err(SpecError::new(
            field,
            format!(
                "`{}` is not an image reference ([A-Za-z0-9._/:@-], starting with a letter or digit)",
                printable(image)
            ),
        ));
    }
    Ok(())
}

fn check_command(field: &str, command: &str) -> Checked {
    if command.trim().is_empty() {
        return Err(SpecError::new(field, "the stop command is empty"));
    }
    if command.contains(['\n', '\r']) {
        return Err(SpecError::new(field, "a console command is one line"));
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(SpecError::new(field, format!("longer than {MAX_COMMAND_BYTES} bytes")));
    }
    Ok(())
}

fn check_entrypoint(entrypoint: &str) -> Checked {
    let field = "install.entrypoint";
    if entrypoint.len() > 256 {
        return Err(SpecError::new(field, "longer than 256 bytes"));
    }
    if entrypoint.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SpecError::new(field, "a program name or path, without whitespace or control characters"));
    }
    Ok(())
}

fn check_patterns(field: &str, patterns: &[String], max: usize) -> Checked {
    if patterns.len() > max {
        return Err(SpecError::new(field, format!("more than {max} patterns")));
    }
    for (i, pattern) in patterns.iter().enumerate() {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(SpecError::new(format!("{field}[{i}]"), format!("longer than {MAX_PATTERN_BYTES} bytes")));
        }
        if pattern.contains(['\n', '\r']) {
            return Err(SpecError::new(format!("{field}[{i}]"), "a pattern is one line"));
        }
    }
    Ok(())
}

/// `text` made safe to echo in an error message (control characters escaped, cut at 64
/// characters): it came from an untrusted sender and ends up in logs and panels.
pub fn printable(text: &str) -> String {
    let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ServerId;
    use crate::model::{ConfigFile, ConfigParser, EggScript, ServerLimits};
    use crate::runtime::PortBinding;
    use std::collections::BTreeMap;

    fn spec() -> ServerSpec {
        ServerSpec {
            id: ServerId::new(),
            image: "nexus-test/yolks:java_17".into(),
            startup: "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}".into(),
            environment: BTreeMap::from([("SERVER_JARFILE".into(), "server.jar".into()), ("TZ".into(), "UTC".into())]),
            limits: ServerLimits {
                memory_mb: 1024,
                swap_mb: 0,
                cpu_percent: 200,
                disk_mb: 4096,
                io_weight: 500,
                pids: 256,
            },
            allocations: vec![
                PortBinding { ip: "0.0.0.0".parse().unwrap(), port: 25565 },
                PortBinding { ip: "0.0.0.0".parse().unwrap(), port: 25575 },
                PortBinding { ip: "::".parse().unwrap(), port: 25565 },
            ],
            done: vec![DoneMatcher::Substring(")! For help, type ".into()), DoneMatcher::Regex(r"^Done \(\d+".into())],
            stop: StopMethod::Command("stop".into()),
            config_files: vec![ConfigFile {
                path: "config/paper.yml".into(),
                parser: ConfigParser::Yaml,
                find: vec![],
            }],
            install: EggScript { script: "echo hi".into(), container: "".into(), entrypoint: "bash".into() },
            file_denylist: vec!["*.jar".into()],
            suspended: false,
            location: None,
            allocation_limit: None,
            templates: Vec::new(),
        }
    }

    /// One change to a valid spec.
    type Change = Box<dyn FnOnce(&mut ServerSpec)>;

    /// The field the error names, or `None` when the spec is valid.
    fn field(change: impl FnOnce(&mut ServerSpec)) -> Option<String> {
        let mut s = spec();
        change(&mut s);
        s.validate().err().map(|e| e.field)
    }

    #[test]
    fn a_realistic_spec_is_valid() {
        assert_eq!(spec().validate(), Ok(()));
        assert_eq!(field(|s| s.limits = ServerLimits::default()), None, "all zero: unlimited / defaults");
        assert_eq!(field(|s| s.limits.swap_mb = -1), None);
        assert_eq!(field(|s| s.limits.memory_mb = MIN_MEMORY_MB), None);
        assert_eq!(field(|s| s.limits.io_weight = 10), None);
        assert_eq!(field(|s| s.stop = StopMethod::Signal(crate::model::StopSignal::Interrupt)), None);
        assert_eq!(field(|s| s.install.entrypoint.clear()), None);
        assert_eq!(field(|s| s.image = "localhost:5000/a/b@sha256:0123abcd".into()), None);
        assert_eq!(field(|s| s.location = Some("fra-1".into())), None);
    }

    #[test]
    fn install_scripts_and_config_patches_are_bounded() {
        assert_eq!(field(|s| s.install.script = "x".repeat(MAX_INSTALL_SCRIPT_BYTES)), None);
        let too_long = field(|s| s.install.script = "x".repeat(MAX_INSTALL_SCRIPT_BYTES + 1));
        assert_eq!(too_long.as_deref(), Some("install.script"));
        assert_eq!(field(|s| s.install.script = "a\0b".into()).as_deref(), Some("install.script"));
        let huge = field(|s| {
            s.config_files[0].find = vec![("key".into(), FindValue::Text("v".repeat(MAX_CONFIG_FIND_BYTES)))]
        });
        assert_eq!(huge.as_deref(), Some("config_files[0].find"));
    }

    #[test]
    fn a_location_is_one_short_line() {
        assert_eq!(field(|s| s.location = Some("a\nb".into())).as_deref(), Some("location"));
        assert_eq!(field(|s| s.location = Some("\0".into())).as_deref(), Some("location"));
        assert_eq!(field(|s| s.location = Some("x".repeat(MAX_LOCATION_BYTES + 1))).as_deref(), Some("location"));
    }

    #[test]
    fn impossible_limits_name_their_field() {
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.limits.memory_mb = 1), "limits.memory_mb"),
            (Box::new(|s| s.limits.memory_mb = 1 << 63), "limits.memory_mb"),
            (Box::new(|s| s.limits.swap_mb = -2), "limits.swap_mb"),
            (Box::new(|s| s.limits.swap_mb = i64::MIN), "limits.swap_mb"),
            (Box::new(|s| s.limits.swap_mb = 1 << 40), "limits.swap_mb"),
            (
                Box::new(|s| {
                    s.limits.memory_mb = 0;
                    s.limits.swap_mb = 512;
                }),
                "limits.swap_mb",
            ),
            (Box::new(|s| s.limits.io_weight = 5), "limits.io_weight"),
            (Box::new(|s| s.limits.io_weight = 1001), "limits.io_weight"),
            (Box::new(|s| s.limits.cpu_percent = u64::MAX), "limits.cpu_percent"),
            (Box::new(|s| s.limits.disk_mb = u64::MAX), "limits.disk_mb"),
            (Box::new(|s| s.limits.pids = 1), "limits.pids"),
            (Box::new(|s| s.limits.pids = u64::MAX), "limits.pids"),
        ];
        for (change, want) in cases {
            assert_eq!(field(change).as_deref(), Some(want));
        }
    }

    #[test]
    fn environment_names_and_values() {
        for name in
            ["STARTUP", "SERVER_MEMORY", "SERVER_IP", "SERVER_PORT", "P_SERVER_UUID", "P_SERVER_X", "HOME", "IFS"]
        {
            assert_eq!(
                field(|s| {
                    s.environment.insert(name.into(), "1".into());
                }),
                Some(format!("environment.{name}"))
            );
        }
        for name in ["", "A=B", "A\0B", "1X", "A B", "é"] {
            let got = field(|s| {
                s.environment.insert(name.into(), "1".into());
            });
            assert!(got.as_deref().is_some_and(|f| f.starts_with("environment.")), "{name:?}: {got:?}");
        }
        assert_eq!(
            field(|s| {
                s.environment.insert("A".into(), "x\0y".into());
            })
            .as_deref(),
            Some("environment.A")
        );
        assert_eq!(
            field(|s| {
                s.environment.insert("BIG".into(), "x".repeat(MAX_ENV_ENTRY_BYTES));
            })
            .as_deref(),
            Some("environment.BIG")
        );
        assert_eq!(
            field(|s| {
                for i in 0..10 {
                    s.environment.insert(format!("V{i}"), "x".repeat(120 * 1024));
                }
            })
            .as_deref(),
            Some("environment")
        );
        // A NUL in the name is reported without echoing it raw.
        let mut s = spec();
        s.environment.insert("A\0B".into(), "1".into());
        assert_eq!(s.validate().unwrap_err().field, "environment.A\\0B");
    }

    #[test]
    fn everything_else() {
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.id = ServerId(uuid::Uuid::nil())), "id"),
            (Box::new(|s| s.image.clear()), "image"),
            (Box::new(|s| s.image = "busybox latest".into()), "image"),
            (Box::new(|s| s.image = "-v/:/host".into()), "image"),
            (Box::new(|s| s.install.container = "a\nb".into()), "install.container"),
            (Box::new(|s| s.install.entrypoint = "bash -x".into()), "install.entrypoint"),
            (Box::new(|s| s.startup = "  ".into()), "startup"),
            (Box::new(|s| s.startup = "a\0b".into()), "startup"),
            (Box::new(|s| s.allocations[1].port = 0), "allocations[1]"),
            (Box::new(|s| s.allocations.push(s.allocations[0])), "allocations[3]"),
            (
                Box::new(|s| s.allocations.push(PortBinding { ip: "127.0.0.1".parse().unwrap(), port: 25575 })),
                "allocations[3]",
            ),
            (
                Box::new(|s| s.allocations.push(PortBinding { ip: "224.0.0.1".parse().unwrap(), port: 1 })),
                "allocations[3]",
            ),
            (Box::new(|s| s.done.push(DoneMatcher::Regex("(unclosed".into()))), "done[2]"),
            (Box::new(|s| s.done.push(DoneMatcher::Substring(String::new()))), "done[2]"),
            (Box::new(|s| s.done[0] = DoneMatcher::Substring("a\nb".into())), "done[0]"),
            (Box::new(|s| s.stop = StopMethod::Command(String::new())), "stop"),
            (Box::new(|s| s.stop = StopMethod::Command("stop\nrm".into())), "stop"),
            (Box::new(|s| s.config_files[0].path = "../../etc/passwd".into()), "config_files[0].path"),
            (Box::new(|s| s.config_files[0].path = "/".into()), "config_files[0].path"),
            (Box::new(|s| s.file_denylist.push("a\nb".into())), "file_denylist[1]"),
            (Box::new(|s| s.file_denylist.push("a\0b".into())), "file_denylist[1]"),
        ];
        for (change, want) in cases {
            assert_eq!(field(change).as_deref(), Some(want));
        }
        // Different families on the same port do not clash.
        assert_eq!(field(|s| s.allocations.push(PortBinding { ip: "::1".parse().unwrap(), port: 25575 })), None);
    }

    #[test]
    fn error_text_names_the_field() {
        let mut s = spec();
        s.limits.memory_mb = 1;
        let e = s.validate().unwrap_err();
        assert!(e.to_string().starts_with("limits.memory_mb: 1 MiB"), "{e}");
    }
}

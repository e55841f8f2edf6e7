//! Environment variable names a server may be given: which are well-formed and which the
//! platform or the shell owns.
//!
//! Written once here because both sides need them: the egg importer (`nexus-eggs`) refuses
//! egg variables with these names, startup rendering refuses them in the values it receives,
//! and [`ServerSpec::validate`](crate::transport::ServerSpec::validate) refuses a spec whose
//! environment uses them before a node accepts it.
//!
//! Reserved:
//! - set by the platform for every server: `SERVER_MEMORY`, `SERVER_IP`, `SERVER_PORT`,
//!   `STARTUP`, `HOME`, `USER`, and every `P_SERVER_*` name (Pterodactyl sets
//!   `P_SERVER_UUID`, `P_SERVER_LOCATION`, `P_SERVER_ALLOCATION_LIMIT`);
//! - read by the shell that runs the command and able to change what it does: `IFS` (how
//!   values are split), `BASH_ENV` and `ENV` (a file sourced before the command), `SHELLOPTS`,
//!   `BASHOPTS`.
//!
//! `TZ` is **not** reserved: eggs in the wild define a `TZ` variable for users to pick a time
//! zone, and a non-empty one wins over the node's zone.

/// Names a server's environment (an egg variable) may not use. `P_SERVER_*` is reserved as a
/// prefix, see [`RESERVED_PREFIXES`].
pub const RESERVED_VARIABLES: &[&str] = &[
    "SERVER_MEMORY",
    "SERVER_IP",
    "SERVER_PORT",
    "STARTUP",
    "HOME",
    "USER",
    "P_SERVER_UUID",
    "P_SERVER_LOCATION",
    "P_SERVER_ALLOCATION_LIMIT",
    "IFS",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
];

/// Name prefixes a server's environment may not use.
pub const RESERVED_PREFIXES: &[&str] = &["P_SERVER_"];

/// Whether a server's environment may not contain `name` (case-sensitive, like the
/// environment).
pub fn is_reserved(name: &str) -> bool {
    RESERVED_VARIABLES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `name` matches `[A-Za-z_][A-Za-z0-9_]*`, the names the shell can reference.
pub fn is_valid_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for name in ["A", "_", "srv_name", "JAVA_17", "TZ"] {
            assert!(is_valid_variable_name(name) && !is_reserved(name), "{name}");
        }
        for name in ["", "1A", "A-B", "A=B", "A B", "A\0", "É"] {
            assert!(!is_valid_variable_name(name), "{name:?}");
        }
        for name in ["STARTUP", "SERVER_PORT", "P_SERVER_ANYTHING", "IFS", "HOME"] {
            assert!(is_reserved(name), "{name}");
        }
    }
}

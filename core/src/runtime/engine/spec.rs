//! Where things are inside a container, and the checks every engine needs before it is asked
//! to create one.

use crate::runtime::{ContainerSpec, RuntimeError};
use std::path::Path;

/// Where the server's data directory is mounted, and the working directory of its process
/// (egg startup commands such as `./teeworlds_srv` are relative to it).
pub const HOME: &str = "/home/container";

/// Where every container gets its size-limited tmpfs ([`Isolation::tmp_size_mb`](crate::runtime::Isolation::tmp_size_mb)).
pub const TMP_DIR: &str = "/tmp";

/// Capabilities removed from server containers, on top of `no-new-privileges`: Wings' list
/// (`SETPCAP`, `MKNOD`, `AUDIT_WRITE`, `NET_RAW`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`,
/// `NET_BIND_SERVICE`, `SYS_CHROOT`, `SETFCAP`) plus `CHOWN`. A game server needs none of
/// them; run as an unprivileged user it has no effective capabilities at all, and these keep
/// an image whose user is root from creating device nodes, set-id files for others, or raw
/// sockets. What remains of the engines' default set is `SETUID`, `SETGID` and `KILL`.
pub const SERVER_DROPPED_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SYS_CHROOT",
];

/// Capabilities removed from install containers. Install scripts run as root (as with Wings)
/// and install packages, which needs ownership and permission overrides (`CHOWN`,
/// `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `SETUID`/`SETGID` for apt's sandbox user); device
/// nodes, raw sockets, chroot and capability games are never needed. The node agent hands the
/// installed files to the server's user afterwards, clearing set-id bits.
pub const INSTALL_DROPPED_CAPABILITIES: &[&str] =
    &["CAP_AUDIT_WRITE", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_SYS_CHROOT"];

/// The security option every container gets: set-id binaries and file capabilities grant
/// nothing inside it.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// Mount options of the `/tmp` tmpfs of `size_mb` MiB: executable (game servers unpack native
/// libraries there, as Wings allows) but `nosuid,nodev`.
pub fn tmpfs_options(size_mb: u64) -> String {
    format!("rw,exec,nosuid,nodev,size={size_mb}m")
}

/// Checks what a server container's spec needs beyond the engine's own validation: an
/// existing absolute data directory ([`check_data_dir`]) and no port 0.
pub fn check_server_spec(spec: &ContainerSpec) -> Result<(), RuntimeError> {
    check_data_dir(&spec.data_dir)?;
    if spec.ports.iter().any(|binding| binding.port == 0) {
        return Err(RuntimeError::InvalidSpec("port 0 cannot be published".into()));
    }
    Ok(())
}

/// A data directory must be an existing absolute directory: engines take a relative path for
/// a volume name, and some create a missing bind source (as root).
pub fn check_data_dir(dir: &Path) -> Result<(), RuntimeError> {
    if !dir.is_absolute() {
        return Err(RuntimeError::InvalidSpec(format!("data directory {} is not absolute", dir.display())));
    }
    if !dir.is_dir() {
        return Err(RuntimeError::InvalidSpec(format!("data directory {} does not exist", dir.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ServerId;
    use crate::model::ServerLimits;
    use crate::runtime::PortBinding;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn data_dirs_and_ports_are_checked() {
        let spec = ContainerSpec {
            server: ServerId::new(),
            image: "img".into(),
            command: None,
            env: BTreeMap::new(),
            data_dir: std::env::temp_dir(),
            limits: ServerLimits::default(),
            ports: vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 25565 }],
            labels: BTreeMap::new(),
            isolation: Default::default(),
            tty: false,
        };
        assert!(check_server_spec(&spec).is_ok());
        let port0 = ContainerSpec { ports: vec![PortBinding { port: 0, ..spec.ports[0] }], ..spec.clone() };
        assert!(matches!(check_server_spec(&port0), Err(RuntimeError::InvalidSpec(_))));
        let relative = ContainerSpec { data_dir: "data".into(), ..spec.clone() };
        assert!(matches!(check_server_spec(&relative), Err(RuntimeError::InvalidSpec(_))));
        let missing = ContainerSpec { data_dir: spec.data_dir.join("nexus-no-such-dir-x"), ..spec };
        assert!(matches!(check_server_spec(&missing), Err(RuntimeError::InvalidSpec(_))));
    }
}

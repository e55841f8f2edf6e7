//! Where things are inside a container, and the checks every engine needs before it is asked
//! to create one.

use nexus_core::runtime::{ContainerSpec, RuntimeError};
use std::path::Path;

pub use nexus_core::runtime::{HOME, INSTALL_DROPPED_CAPABILITIES, SERVER_DROPPED_CAPABILITIES, TMP_DIR};

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
    use nexus_core::ids::ServerId;
    use nexus_core::model::ServerLimits;
    use nexus_core::runtime::PortBinding;
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

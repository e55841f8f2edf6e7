//! Port lists for allocations, as Pterodactyl's panel takes them: `25565`, `25565-25665`, or
//! several separated by commas (`25565,27015-27020`).
//!
//! As in Pterodactyl, ports are 1024..=65535 and one range holds at most
//! [`MAX_PORTS_PER_RANGE`] ports; a whole list is bounded too ([`MAX_PORTS`]), so a typo such
//! as `1024-65535` is refused instead of creating 64,000 rows.

use crate::ControlError;
use std::collections::BTreeSet;

/// Lowest port an allocation may use (below are privileged ports).
pub const MIN_PORT: u16 = 1024;
/// Most ports one `a-b` range may hold.
pub const MAX_PORTS_PER_RANGE: usize = 1000;
/// Most ports one list may hold.
pub const MAX_PORTS: usize = 5000;
/// Longest list accepted, in bytes.
const MAX_INPUT: usize = 4096;

/// The ports of `input`, sorted, without duplicates.
pub fn parse_ports(input: &str) -> Result<Vec<u16>, ControlError> {
    let invalid = |reason: String| ControlError::InvalidPorts { input: shorten(input), reason };
    if input.len() > MAX_INPUT {
        return Err(invalid(format!("longer than {MAX_INPUT} bytes")));
    }
    let mut ports = BTreeSet::new();
    for part in input.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(invalid("empty entry".into()));
        }
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (port(low.trim()).map_err(&invalid)?, port(high.trim()).map_err(&invalid)?),
            None => {
                let single = port(part).map_err(&invalid)?;
                (single, single)
            }
        };
        if low > high {
            return Err(invalid(format!("range `{part}` runs backwards")));
        }
        let count = usize::from(high - low) + 1;
        if count > MAX_PORTS_PER_RANGE {
            return Err(invalid(format!("range `{part}` holds {count} ports; at most {MAX_PORTS_PER_RANGE}")));
        }
        ports.extend(low..=high);
        if ports.len() > MAX_PORTS {
            return Err(invalid(format!("more than {MAX_PORTS} ports")));
        }
    }
    Ok(ports.into_iter().collect())
}

fn port(text: &str) -> Result<u16, String> {
    let value: u32 = text.parse().map_err(|_| format!("`{}` is not a port number", shorten(text)))?;
    match u16::try_from(value) {
        Ok(port) if port >= MIN_PORT => Ok(port),
        _ => Err(format!("port {value} is outside {MIN_PORT}..=65535")),
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_and_singles() {
        assert_eq!(parse_ports("25565").unwrap(), [25565]);
        assert_eq!(parse_ports("25565-25567, 27015,25566").unwrap(), [25565, 25566, 25567, 27015]);
        assert_eq!(parse_ports("1024-2023").unwrap().len(), 1000);
    }

    #[test]
    fn refusals_say_why() {
        for (input, reason) in [
            ("", "empty entry"),
            ("25565,", "empty entry"),
            ("80", "outside"),
            ("70000", "outside"),
            ("abc", "not a port number"),
            ("30000-29999", "backwards"),
            ("1024-2024", "at most 1000"),
            ("1024-65535", "at most 1000"),
            ("25565--25566", "not a port number"),
        ] {
            match parse_ports(input) {
                Err(ControlError::InvalidPorts { reason: got, .. }) => assert!(got.contains(reason), "{input}: {got}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let many = (0..6).map(|i| format!("{}-{}", 2000 + i * 1000, 2999 + i * 1000)).collect::<Vec<_>>().join(",");
        assert!(matches!(parse_ports(&many), Err(ControlError::InvalidPorts { .. })));
        assert!(matches!(parse_ports(&"1".repeat(5000)), Err(ControlError::InvalidPorts { .. })));
    }
}

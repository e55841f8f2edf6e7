//! Dot-path keys of the structured parsers (json, yaml, toml, xml): `servers.lobby.address`,
//! `listeners[0].host`, `servers.*.address`.

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// A named child (object member, mapping key, table key, element name).
    Key(String),
    /// The N-th item of a list (0-based); in XML, the N-th child element of that name.
    Index(usize),
    /// Every child.
    Wildcard,
}

/// Parses a dot path. Keys cannot contain dots, like in Wings.
pub(super) fn parse(key: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    for part in key.split('.') {
        if part == "*" {
            segments.push(Segment::Wildcard);
            continue;
        }
        let (name, mut indices) = part.split_at(part.find('[').unwrap_or(part.len()));
        if name.is_empty() {
            return Err(if part.is_empty() {
                "empty segment (two dots in a row, or a leading or trailing dot)".to_owned()
            } else {
                format!("segment `{part}` has an index but no name")
            });
        }
        segments.push(Segment::Key(name.to_owned()));
        while !indices.is_empty() {
            let Some(close) = indices.find(']') else {
                return Err(format!("unclosed `[` in `{part}`"));
            };
            let digits = &indices[1..close];
            let index = digits.parse::<usize>().map_err(|_| format!("`[{digits}]` in `{part}` is not an index"))?;
            segments.push(Segment::Index(index));
            indices = &indices[close + 1..];
            if !indices.is_empty() && !indices.starts_with('[') {
                return Err(format!("unexpected `{indices}` after an index in `{part}`"));
            }
        }
    }
    Ok(segments)
}

/// Whether a missing tail can be created: only plain keys, never through an index or `*`.
pub(super) fn creatable(segments: &[Segment]) -> bool {
    segments.iter().all(|segment| matches!(segment, Segment::Key(_)))
}

/// Shows a path prefix back in key syntax, for error messages.
pub(super) fn display(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
            Segment::Wildcard => out.push_str(if out.is_empty() { "*" } else { ".*" }),
        }
    }
    if out.is_empty() { "(root)".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::Segment::{Index, Key, Wildcard};
    use super::*;

    fn key(name: &str) -> Segment {
        Key(name.to_owned())
    }

    #[test]
    fn parses_the_shapes_eggs_use() {
        assert_eq!(parse("servers.*.address"), Ok(vec![key("servers"), Wildcard, key("address")]));
        assert_eq!(parse("listeners[0].query_port"), Ok(vec![key("listeners"), Index(0), key("query_port")]));
        assert_eq!(parse("a[1][2]"), Ok(vec![key("a"), Index(1), Index(2)]));
        assert_eq!(parse("User:admin"), Ok(vec![key("User:admin")]));
    }

    #[test]
    fn rejects_broken_paths() {
        for bad in ["", "a..b", ".a", "a.", "a[x]", "a[1", "[0]", "a[0]b"] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn displays_prefixes() {
        assert_eq!(display(&[key("a"), Index(0), Wildcard, key("b")]), "a[0].*.b");
        assert_eq!(display(&[]), "(root)");
    }
}

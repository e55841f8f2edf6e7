//! Dot-path keys of the structured parsers (json, yaml, toml, xml): `servers.lobby.address`,
//! `listeners[0].host`, `servers.*.address`; and [`locate`], which walks one over a [`Tree`]
//! (the JSON and YAML node trees).

use super::MAX_DEPTH;

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

/// Parses a dot path. Keys cannot contain dots, like in Wings. A path has at most
/// [`MAX_DEPTH`] segments: walking it and creating what it names both go one level per segment.
pub(super) fn parse(key: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    for part in key.split('.') {
        if segments.len() >= MAX_DEPTH {
            return Err(format!("more than {MAX_DEPTH} segments"));
        }
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
            if segments.len() >= MAX_DEPTH {
                return Err(format!("more than {MAX_DEPTH} segments"));
            }
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

/// The names of the keys in `segments`, indices and wildcards left out: what a missing
/// [`creatable`] tail creates, one level per name.
pub(super) fn key_names(segments: &[Segment]) -> Vec<&str> {
    segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(name) => Some(name.as_str()),
            Segment::Index(_) | Segment::Wildcard => None,
        })
        .collect()
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

/// A parsed document whose nodes a key path can walk.
pub(super) trait Tree: Sized {
    /// One member of a map: a key and its value.
    type Entry;
    /// What the format calls a map and a list, with their article (`an object`, `an array`), for
    /// error messages.
    const NAMES: (&'static str, &'static str);
    /// What this node is to a path.
    fn shape(&self) -> Shape<'_, Self>;
    /// An entry's key.
    fn key(entry: &Self::Entry) -> &str;
    /// An entry's value.
    fn value(entry: &Self::Entry) -> &Self;
}

/// What a [`Tree`] node is to a path.
pub(super) enum Shape<'n, N: Tree> {
    /// Keyed children, in file order.
    Map(&'n [N::Entry]),
    /// Indexed children.
    List(&'n [N]),
    /// Nothing yet (YAML's `key:` with no value): keys can be created below it; an index or
    /// wildcard finds nothing in it.
    Empty,
    /// A value that cannot be walked into, with why (`a flow-style collection, ...`).
    Opaque(&'static str),
    /// Any other value.
    Scalar,
}

/// What a key path leads to.
pub(super) enum Target<'n, N> {
    /// An existing node.
    Found(&'n N),
    /// `parent` (a map, or an empty value) lacks `keys[0]`; `keys` is the whole missing tail.
    Missing {
        /// The deepest node the path reaches.
        parent: &'n N,
        /// The keys to create below it, outermost first.
        keys: Vec<&'n str>,
    },
}

/// Every node `path` leads to from `root`, in document order. A `*` visits every child; a
/// missing key becomes a [`Target::Missing`] when the rest of the path could be created (never
/// below a wildcard: `*` only addresses what exists). An index or wildcard that finds nothing
/// is no error; a path through a value of the wrong kind is, except below a wildcard, whose
/// children need not all be alike.
pub(super) fn locate<'n, N: Tree>(root: &'n N, path: &'n [Segment]) -> Result<Vec<Target<'n, N>>, String> {
    let mut targets = Vec::new();
    walk(root, path, 0, false, &mut targets)?;
    Ok(targets)
}

fn walk<'n, N: Tree>(
    node: &'n N,
    path: &'n [Segment],
    depth: usize,
    under_wildcard: bool,
    out: &mut Vec<Target<'n, N>>,
) -> Result<(), String> {
    let Some(segment) = path.get(depth) else {
        out.push(Target::Found(node));
        return Ok(());
    };
    let prefix = || display(&path[..depth]);
    let can_create = !under_wildcard && creatable(&path[depth..]);
    let missing = || Target::Missing { parent: node, keys: key_names(&path[depth..]) };
    let (map, list) = N::NAMES;
    match (segment, node.shape()) {
        // Duplicate keys: parsers keep the last one, so that is the one to change.
        (Segment::Key(name), Shape::Map(entries)) => match entries.iter().rev().find(|entry| N::key(entry) == name) {
            Some(entry) => walk(N::value(entry), path, depth + 1, under_wildcard, out)?,
            None if can_create => out.push(missing()),
            None => {}
        },
        (Segment::Key(_), Shape::Empty) if can_create => out.push(missing()),
        // A numeric key addresses a list item, as Wings' path library reads `servers.0.name`.
        (Segment::Key(name), Shape::List(items)) if name.parse::<usize>().is_ok() => {
            if let Some(item) = name.parse::<usize>().ok().and_then(|index| items.get(index)) {
                walk(item, path, depth + 1, under_wildcard, out)?;
            }
        }
        (Segment::Index(index), Shape::List(items)) => {
            if let Some(item) = items.get(*index) {
                walk(item, path, depth + 1, under_wildcard, out)?;
            }
        }
        (Segment::Wildcard, Shape::Map(entries)) => {
            for entry in entries {
                walk(N::value(entry), path, depth + 1, true, out)?;
            }
        }
        (Segment::Wildcard, Shape::List(items)) => {
            for item in items {
                walk(item, path, depth + 1, true, out)?;
            }
        }
        _ if under_wildcard => {}
        (_, Shape::Opaque(what)) => return Err(format!("`{}` is {what}", prefix())),
        (Segment::Key(_), _) => return Err(format!("`{}` is not {map}", prefix())),
        (Segment::Index(_) | Segment::Wildcard, Shape::Empty) => {}
        (Segment::Index(_), _) => return Err(format!("`{}` is not {list}", prefix())),
        (Segment::Wildcard, _) => return Err(format!("`{}` is neither {map} nor {list}", prefix())),
    }
    Ok(())
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
        assert_eq!(parse(&vec!["a"; MAX_DEPTH].join(".")).map(|p| p.len()), Ok(MAX_DEPTH));
        assert!(parse(&vec!["a"; MAX_DEPTH + 1].join(".")).is_err());
        assert!(parse(&format!("a{}", "[0]".repeat(MAX_DEPTH))).is_err());
        assert!(parse(&vec!["a"; 100_000].join(".")).is_err());
    }

    #[test]
    fn displays_prefixes() {
        assert_eq!(display(&[key("a"), Index(0), Wildcard, key("b")]), "a[0].*.b");
        assert_eq!(display(&[]), "(root)");
    }
}

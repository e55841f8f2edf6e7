//! Merging a server's layers, in list order, into the entries to write.
//!
//! # Rules
//! Layers apply in list order, each on top of the result of those before it:
//!
//! 1. A layer's **whiteouts** apply first, and only to earlier layers: a whiteout at `p`
//!    removes `p` and everything below it. An entry of the same layer below `p` is kept
//!    (a layer may remove an old tree and ship a new one in its place).
//! 2. Then each **entry** of the layer replaces whatever is at its path (later wins):
//!    - a file or a symlink removes everything below its path (a file replacing a
//!      directory removes the directory's descendants);
//!    - a directory replacing a directory keeps the descendants (only the mode changes);
//!    - every ancestor of the entry becomes a directory: an earlier file or symlink at an
//!      ancestor is removed (with an explicit directory entry from an earlier layer kept).
//!      A whiteout says nothing about its ancestors: a whiteout of `a/b` leaves a file `a`.
//! 3. The result is sorted by path, which puts parents before their children.
//!
//! Whiteouts never reach the result: they remove entries of earlier layers, never files
//! already in the server's directory.
//!
//! The implementation walks the layers top-down (last first), masking what higher layers
//! hide; `tests::matches_replay_oracle` checks it against the rules applied literally.

use std::collections::{HashMap, HashSet};

use nexus_core::template::{EntryKind, LayerManifest};

/// One entry of the merged result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedEntry {
    /// The path (relative, normalized).
    pub path: String,
    /// What is written there (never [`EntryKind::Whiteout`]).
    pub kind: EntryKind,
    /// Index, in the list given to [`merge`], of the layer it comes from.
    pub layer: usize,
}

/// What higher layers do to a path, as seen from a lower one; stronger values win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mask {
    /// A higher entry lies below this path: it must be a directory. A lower file or
    /// symlink here is hidden; a lower directory survives.
    Ancestor,
    /// A higher directory is here: a lower entry at exactly this path is hidden; its
    /// descendants survive.
    Dir,
    /// A higher file, symlink or whiteout is here: this path and everything below it are
    /// hidden.
    Covered,
}

/// Merges `layers` (in priority order, later wins) per the module's rules.
///
/// Each distinct ancestor path is visited once per layer however many entries lie below it
/// (a memo of what is covered, and ancestors marked once), so deep trees cost what their
/// distinct paths cost, not entries × depth. CPU-bound on big layers: async callers run it
/// on the blocking pool.
pub fn merge(layers: &[LayerManifest]) -> Vec<MergedEntry> {
    let mut masks: HashMap<&str, Mask> = HashMap::new();
    // Paths whose ancestors all carry at least `Mask::Ancestor` already.
    let mut chained: HashSet<&str> = HashSet::new();
    let mut out: Vec<MergedEntry> = Vec::new();
    for (index, layer) in layers.iter().enumerate().rev() {
        // What survives of this layer is decided by the layers above it only...
        let mut covered: HashMap<&str, bool> = HashMap::new();
        for entry in &layer.entries {
            if matches!(entry.kind, EntryKind::Whiteout) || hidden(&masks, &mut covered, &entry.path, &entry.kind) {
                continue;
            }
            out.push(MergedEntry { path: entry.path.clone(), kind: entry.kind.clone(), layer: index });
        }
        // ...then it masks the layers below it.
        for entry in &layer.entries {
            let mask = match entry.kind {
                EntryKind::Dir { .. } => Mask::Dir,
                _ => Mask::Covered,
            };
            raise(&mut masks, &entry.path, mask);
            if matches!(entry.kind, EntryKind::Whiteout) {
                // A whiteout says nothing about its parents.
                continue;
            }
            let mut path = entry.path.as_str();
            while let Some((parent, _)) = path.rsplit_once('/') {
                if !chained.insert(parent) {
                    break;
                }
                raise(&mut masks, parent, Mask::Ancestor);
                path = parent;
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn raise<'a>(masks: &mut HashMap<&'a str, Mask>, path: &'a str, mask: Mask) {
    let slot = masks.entry(path).or_insert(mask);
    *slot = (*slot).max(mask);
}

/// Whether an entry of a lower layer is hidden by the masks of the layers above it.
/// `covered` memoizes, for the current layer, whether a path lies below a `Covered` one.
fn hidden<'a>(
    masks: &HashMap<&str, Mask>,
    covered: &mut HashMap<&'a str, bool>,
    path: &'a str,
    kind: &EntryKind,
) -> bool {
    match masks.get(path) {
        Some(Mask::Covered | Mask::Dir) => return true,
        Some(Mask::Ancestor) if !matches!(kind, EntryKind::Dir { .. }) => return true,
        _ => {}
    }
    below_covered(masks, covered, path)
}

/// Whether a proper ancestor of `path` is `Covered`, each ancestor looked at once.
fn below_covered<'a>(masks: &HashMap<&str, Mask>, covered: &mut HashMap<&'a str, bool>, path: &'a str) -> bool {
    // Climb to the nearest ancestor already known (or the root)...
    let mut chain = Vec::new();
    let mut up = path;
    let mut known = false;
    while let Some((parent, _)) = up.rsplit_once('/') {
        if let Some(&answer) = covered.get(parent) {
            known = answer;
            break;
        }
        chain.push(parent);
        up = parent;
    }
    // ...then answer for each one on the way back down.
    for parent in chain.into_iter().rev() {
        known = known || masks.get(parent) == Some(&Mask::Covered);
        covered.insert(parent, known);
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use nexus_core::template::{LayerEntry, MANIFEST_FORMAT};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn manifest(index: usize, entries: Vec<LayerEntry>) -> LayerManifest {
        LayerManifest {
            format: MANIFEST_FORMAT,
            layer: format!("l{index}@1").parse().unwrap(),
            created_at: Utc::now(),
            entries,
        }
    }

    /// The rules applied literally: replay every layer on a map, scanning all keys.
    fn oracle(layers: &[LayerManifest]) -> Vec<MergedEntry> {
        let mut map: BTreeMap<String, (EntryKind, usize)> = BTreeMap::new();
        let below = |key: &str, path: &str| {
            key.len() > path.len() && key.starts_with(path) && key.as_bytes()[path.len()] == b'/'
        };
        for (index, layer) in layers.iter().enumerate() {
            for entry in layer.entries.iter().filter(|e| matches!(e.kind, EntryKind::Whiteout)) {
                map.retain(|key, _| key != &entry.path && !below(key, &entry.path));
            }
            for entry in layer.entries.iter().filter(|e| !matches!(e.kind, EntryKind::Whiteout)) {
                if !matches!(entry.kind, EntryKind::Dir { .. }) {
                    map.retain(|key, _| !below(key, &entry.path));
                }
                map.retain(|key, (kind, _)| !below(&entry.path, key) || matches!(kind, EntryKind::Dir { .. }));
                map.insert(entry.path.clone(), (entry.kind.clone(), index));
            }
        }
        map.into_iter().map(|(path, (kind, layer))| MergedEntry { path, kind, layer }).collect()
    }

    fn file(path: &str, tag: u8) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::File { size: 1, sha256: format!("{tag:064x}"), mode: 0o644, render: false },
        }
    }

    fn entry(path: &str, kind: EntryKind) -> LayerEntry {
        LayerEntry { path: path.into(), kind }
    }

    #[test]
    fn documented_examples() {
        let dir = |m| EntryKind::Dir { mode: m };
        let layers = vec![
            manifest(
                0,
                vec![
                    entry("a", dir(0o700)),
                    file("a/x", 1),
                    file("a/y", 1),
                    entry("d", dir(0o755)),
                    file("d/old", 1),
                    file("f", 1),
                ],
            ),
            manifest(
                1,
                vec![
                    entry("a/x", EntryKind::Whiteout),
                    entry("d", EntryKind::Whiteout),
                    file("d/new", 2),
                    file("f/inner", 2),
                ],
            ),
            manifest(2, vec![entry("a", dir(0o750)), file("a/y", 3)]),
        ];
        let merged: Vec<_> = merge(&layers).into_iter().map(|e| (e.path, e.layer)).collect();
        let expected: Vec<(String, usize)> =
            [("a", 2), ("a/y", 2), ("d/new", 1), ("f/inner", 1)].iter().map(|(p, l)| ((*p).into(), *l)).collect();
        assert_eq!(merged, expected);
        assert_eq!(merge(&layers), oracle(&layers));
    }

    #[test]
    fn a_layer_may_remove_a_tree_and_ship_a_new_one() {
        let dir = EntryKind::Dir { mode: 0o755 };
        let layers = vec![
            manifest(0, vec![entry("x", dir.clone()), file("x/old", 1), file("x/kept", 1)]),
            manifest(1, vec![entry("x", EntryKind::Whiteout), entry("x", dir), file("x/new", 2)]),
        ];
        for layer in &layers {
            layer.validate().unwrap();
        }
        let merged: Vec<_> = merge(&layers).into_iter().map(|e| (e.path, e.layer)).collect();
        assert_eq!(merged, [("x".to_owned(), 1), ("x/new".to_owned(), 1)]);
        assert_eq!(merge(&layers), oracle(&layers));
    }

    #[test]
    fn deep_layers_merge_in_time() {
        // 2,000 files 250 levels deep, in 3 layers: each ancestor visited once per layer.
        let deep = vec!["d"; 250].join("/");
        let layers: Vec<_> =
            (0..3).map(|l| manifest(l, (0..2000).map(|i| file(&format!("{deep}/{i}"), l as u8)).collect())).collect();
        let started = std::time::Instant::now();
        assert_eq!(merge(&layers).len(), 2000);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    fn arb_path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=3).prop_map(|parts| parts.join("/"))
    }

    fn arb_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            (0u8..4).prop_map(|t| EntryKind::File { size: 1, sha256: format!("{t:064x}"), mode: 0o644, render: false }),
            (0u32..3).prop_map(|m| EntryKind::Dir { mode: 0o700 + m }),
            Just(EntryKind::Symlink { target: "x".into() }),
            Just(EntryKind::Whiteout),
        ]
    }

    /// A valid layer: no path twice, nothing below a file or symlink of the same layer.
    fn arb_layer() -> impl Strategy<Value = Vec<LayerEntry>> {
        prop::collection::vec((arb_path(), arb_kind()), 0..8).prop_map(|raw| {
            let mut entries: Vec<LayerEntry> = Vec::new();
            for (path, kind) in raw {
                let clash = entries.iter().any(|e| {
                    let leaf = |k: &EntryKind| matches!(k, EntryKind::File { .. } | EntryKind::Symlink { .. });
                    e.path == path
                        || (leaf(&e.kind) && path.starts_with(&format!("{}/", e.path)))
                        || (leaf(&kind) && e.path.starts_with(&format!("{path}/")))
                });
                if !clash {
                    entries.push(LayerEntry { path, kind });
                }
            }
            entries
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn matches_replay_oracle(raw in prop::collection::vec(arb_layer(), 0..5)) {
            let layers: Vec<_> = raw.into_iter().enumerate().map(|(i, e)| manifest(i, e)).collect();
            for layer in &layers {
                prop_assert!(layer.validate().is_ok());
            }
            let merged = merge(&layers);
            prop_assert_eq!(&merged, &oracle(&layers));
            // Parents before children, no path twice.
            for pair in merged.windows(2) {
                prop_assert!(pair[0].path < pair[1].path);
            }
        }
    }
}

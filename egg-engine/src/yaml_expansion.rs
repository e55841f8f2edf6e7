//! What a YAML document weighs once its aliases are expanded, measured while parsing and
//! stopped as soon as a budget is spent.
//!
//! An alias (`*a`) repeats the whole node its anchor (`&a`) names, and the repeated node may
//! itself hold aliases: ten lines of `b: &b [*a, *a, *a, …]` expand to billions of nodes
//! ("billion laughs"), and a megabyte-long scalar aliased a thousand times to a gigabyte.
//! yaml_serde follows aliases while deserializing (its own guard allows a hundred jumps per
//! event, far too many when each jump repeats a large node), so everything that reads a
//! tenant's or an egg author's YAML into a tree, or only validates it, first walks it here:
//! one node costs one unit, a scalar one more per byte, and a document of `n` bytes may
//! weigh at most [`budget`]`(n)`. A document without aliases always fits (each node takes at
//! least a byte of the text), so the budget only ever refuses repetition.
//!
//! `%TAG` directives are refused before parsing: libyaml copies a directive's prefix into every
//! tag that uses it, and yaml_serde keeps every event's tag before any visitor runs, so a long
//! prefix used by many short tags (`%TAG !e! <4 MiB>` then `!e!a x` …) would take terabytes.
//! No config file or egg needs one.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// What a document of `len` bytes may weigh expanded: twice its own weight, plus a little
/// for tiny documents that alias a small block a few times.
pub(crate) fn budget(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(4096)
}

/// Why a document was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Expanded, the document weighs more than the budget it was given.
    Expands {
        /// The budget.
        limit: usize,
    },
    /// Not valid YAML (or more than one document).
    Malformed(yaml_serde::Error),
    /// A `%TAG` directive, on the given line (1-based).
    TagDirective {
        /// The directive's line.
        line: usize,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Expands { limit } => write!(f, "aliases expand past {limit} units, more than twice the document"),
            Self::Malformed(error) => write!(f, "{error}"),
            Self::TagDirective { line } => write!(f, "line {line}: `%TAG` directives are not supported"),
        }
    }
}

/// Walks the single document in `text`, following its aliases, without building anything;
/// stops at the first unit past [`budget`]`(text.len())`.
pub(crate) fn check(text: &str) -> Result<(), Refused> {
    // Directives start at the beginning of a line (after a byte-order mark on the first).
    if let Some(index) = text.trim_start_matches('\u{feff}').lines().position(|line| line.starts_with("%TAG")) {
        return Err(Refused::TagDirective { line: index + 1 });
    }
    let limit = budget(text.len());
    let meter = Meter { left: Cell::new(limit), spent: Cell::new(false) };
    match Node(&meter).deserialize(yaml_serde::Deserializer::from_str(text)) {
        Ok(()) => Ok(()),
        Err(_) if meter.spent.get() => Err(Refused::Expands { limit }),
        Err(error) => Err(Refused::Malformed(error)),
    }
}

struct Meter {
    left: Cell<usize>,
    /// Set when the budget ran out, to tell that error from the parser's own.
    spent: Cell<bool>,
}

#[derive(Clone, Copy)]
struct Node<'m>(&'m Meter);

impl Node<'_> {
    fn spend<E: de::Error>(self, units: usize) -> Result<(), E> {
        let left = self.0.left.get();
        match left.checked_sub(units.saturating_add(1)) {
            Some(rest) => {
                self.0.left.set(rest);
                Ok(())
            }
            None => {
                self.0.spent.set(true);
                Err(E::custom("the document expands past its budget"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.spend(text.len())
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<(), E> {
        self.spend(bytes.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.spend(0)?;
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.spend(0)?;
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged node (`!tag value`): the tag, then the value.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_without_aliases_fit() {
        for text in ["a: 1", "[1,1,1,1,1,1,1,1]", "- a\n- b\n", "{a: {b: {c: [x, y]}}}", "!tag {a: 1}", "~", ""] {
            check(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        }
        let wide = "[".to_owned() + &"1,".repeat(100_000) + "1]";
        check(&wide).unwrap();
    }

    #[test]
    fn a_few_aliases_fit() {
        let text = "defaults: &d {port: 1, host: x, motd: hello}\nlobby: *d\ngame: *d\nother: *d\n";
        check(text).unwrap();
        assert_eq!(yaml_serde::from_str::<yaml_serde::Value>(text).unwrap()["game"]["port"], 1);
    }

    /// Ten lines that expand to ten billion nodes are refused after about the budget's
    /// worth of work, not after expanding them.
    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let names: Vec<char> = ('b'..='k').collect();
        let mut previous = 'a';
        for name in names {
            let row = vec![format!("*{previous}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{row}]\n"));
            previous = name;
        }
        let started = std::time::Instant::now();
        assert!(matches!(check(&text), Err(Refused::Expands { .. })), "{:?}", check(&text));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    /// Few nodes, each a long scalar repeated by aliases.
    #[test]
    fn long_scalars_repeated_are_refused() {
        let text = format!("a: &a {}\nb: [{}]\n", "x".repeat(100_000), vec!["*a"; 1000].join(", "));
        assert!(matches!(check(&text), Err(Refused::Expands { .. })));
    }

    /// A long `%TAG` prefix used by many short tags: refused before libyaml copies it into
    /// every tag (this document would otherwise take about 2.5 GB).
    #[test]
    fn tag_directives_are_refused_before_parsing() {
        let text = format!("%TAG !e! !{}\n---\n{}", "p".repeat(1 << 12), "- !e!a x\n".repeat(600_000));
        let started = std::time::Instant::now();
        assert!(matches!(check(&text), Err(Refused::TagDirective { line: 1 })));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(check("\u{feff}a: 1\n%TAG ! tag:x,2000:\n"), Err(Refused::TagDirective { line: 2 })));
        check("a: '%TAG is text here'\nb: !!str 1\n").unwrap();
    }

    #[test]
    fn malformed_is_told_apart() {
        assert!(matches!(check("a: [1, 2"), Err(Refused::Malformed(_))));
        assert!(matches!(check("a: *missing"), Err(Refused::Malformed(_))));
        assert!(matches!(check("a: 1\n---\nb: 2\n"), Err(Refused::Malformed(_))));
    }
}

//! Tag interning.
//!
//! Tags are strings on the wire but bits in the index: a subset test on a node is then a few
//! word operations instead of string comparisons in a `BTreeSet`.

use std::collections::{BTreeSet, HashMap};

/// Per-node tag bits, indexed by interned tag id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TagBits {
    words: Vec<u64>,
}

impl TagBits {
    pub(crate) fn insert(&mut self, tag: u32) {
        let word = (tag / 64) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (tag % 64);
    }

    pub(crate) fn contains(&self, tag: u32) -> bool {
        self.words.get((tag / 64) as usize).is_some_and(|word| word & (1 << (tag % 64)) != 0)
    }

    /// Tags with ids below 64.
    pub(crate) fn first_word(&self) -> u64 {
        self.words.first().copied().unwrap_or(0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            (0..64u32).filter(move |bit| word & (1 << bit) != 0).map(move |bit| index as u32 * 64 + bit)
        })
    }
}

/// Tags a request requires, resolved against the interner.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequiredTags {
    /// Interned ids of the required tags that some node has carried.
    pub(crate) ids: Vec<u32>,
    /// A required tag no node has ever carried: nothing can match.
    pub(crate) unknown: bool,
}

impl RequiredTags {
    pub(crate) fn satisfied_by(&self, tags: &TagBits) -> bool {
        !self.unknown && self.ids.iter().all(|&id| tags.contains(id))
    }
}

/// Tag name to id, plus the nodes (slot numbers) carrying each tag.
///
/// Ids are never recycled: the set of distinct tags in a cluster is small and stable, so the
/// cost of keeping a retired tag is an empty set.
#[derive(Clone, Debug, Default)]
pub(crate) struct TagTable {
    ids: HashMap<String, u32>,
    holders: Vec<BTreeSet<u32>>,
}

impl TagTable {
    /// Interns `tags` and records `slot` as a holder of each.
    pub(crate) fn attach<'a>(&mut self, slot: u32, tags: impl IntoIterator<Item = &'a String>) -> TagBits {
        let mut bits = TagBits::default();
        for tag in tags {
            let id = match self.ids.get(tag) {
                Some(&id) => id,
                None => {
                    let id = self.holders.len() as u32;
                    self.ids.insert(tag.clone(), id);
                    self.holders.push(BTreeSet::new());
                    id
                }
            };
            bits.insert(id);
            self.holders[id as usize].insert(slot);
        }
        bits
    }

    /// Forgets `slot` as a holder of `bits`.
    pub(crate) fn detach(&mut self, slot: u32, bits: &TagBits) {
        for id in bits.iter() {
            if let Some(holders) = self.holders.get_mut(id as usize) {
                holders.remove(&slot);
            }
        }
    }

    pub(crate) fn resolve<'a>(&self, tags: impl IntoIterator<Item = &'a String>) -> RequiredTags {
        let mut required = RequiredTags::default();
        for tag in tags {
            match self.ids.get(tag) {
                Some(&id) => required.ids.push(id),
                None => required.unknown = true,
            }
        }
        required
    }

    /// Slots carrying tag `id`.
    pub(crate) fn holders(&self, id: u32) -> &BTreeSet<u32> {
        &self.holders[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_past_the_first_word() {
        let mut bits = TagBits::default();
        for id in [0, 63, 64, 130] {
            bits.insert(id);
        }
        assert!(bits.contains(130) && bits.contains(63) && !bits.contains(1) && !bits.contains(500));
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![0, 63, 64, 130]);
    }

    #[test]
    fn resolve_flags_unknown_tags() {
        let mut table = TagTable::default();
        let tags = ["ssd".to_owned(), "eu".to_owned()];
        let bits = table.attach(7, &tags);
        assert!(table.resolve(&tags).satisfied_by(&bits));
        let unknown = ["gpu".to_owned()];
        assert!(!table.resolve(&unknown).satisfied_by(&bits));
        table.detach(7, &bits);
        assert!(table.holders(0).is_empty());
    }
}

//! Placeable nodes in score order, with per-subtree maxima so searches skip hopeless ranges.
//!
//! A plain ordered map by free memory degrades when the nodes ranked first are short of
//! something else: after a while of spread placement, the nodes with unchecked or large memory
//! sit at the top of the order with their disk or allocations exhausted, and every decision
//! walks past all of them. This structure is a treap (a binary search tree balanced by random
//! priorities, here a hash of the node) keyed like the map, where every subtree also records
//! the largest free disk, free CPU and free allocation count in it and the union of its tag
//! bits. A search skips a whole subtree when even those maxima cannot satisfy the request.
//!
//! Updates are O(log n) expected (the summaries are recomputed along one root path). A search
//! is O(log n) when the summaries prune well; the maxima are necessary conditions only, so a
//! subtree whose best disk and best CPU belong to different nodes is still entered, and the
//! worst case stays O(n).

use super::index::Key;

const NIL: u32 = u32::MAX;

/// What a node, or the best of a subtree, offers beyond memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Offer {
    pub(crate) disk_mb: u64,
    pub(crate) cpu_percent: u64,
    pub(crate) allocations: u64,
    /// Tag ids below 64 as bits; higher ids are not summarised (they never prune).
    pub(crate) tags: u64,
}

impl Offer {
    fn join(self, other: Self) -> Self {
        Self {
            disk_mb: self.disk_mb.max(other.disk_mb),
            cpu_percent: self.cpu_percent.max(other.cpu_percent),
            allocations: self.allocations.max(other.allocations),
            tags: self.tags | other.tags,
        }
    }

    /// Could something offering this (at best) satisfy `need`?
    pub(crate) fn may_satisfy(&self, need: &Offer) -> bool {
        self.disk_mb >= need.disk_mb
            && self.cpu_percent >= need.cpu_percent
            && self.allocations >= need.allocations
            && self.tags & need.tags == need.tags
    }
}

#[derive(Clone, Debug)]
struct Entry {
    key: Key,
    slot: u32,
    priority: u64,
    offer: Offer,
    best: Offer,
    left: u32,
    right: u32,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct OrderedNodes {
    entries: Vec<Entry>,
    vacant: Vec<u32>,
    root: u32,
    len: usize,
}

impl Default for OrderedNodes {
    fn default() -> Self {
        Self { entries: Vec::new(), vacant: Vec::new(), root: NIL, len: 0 }
    }
}

/// State of one search: the request, the caller's exact check, and a visit counter.
pub(crate) struct Search<'n, F> {
    pub(crate) need: &'n Offer,
    /// Called on nodes whose own offer may satisfy the request, in rank order, until it
    /// returns true.
    pub(crate) accept: F,
    /// Tree entries looked at, pruned or not: the cost of the search.
    pub(crate) visited: u64,
}

impl OrderedNodes {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn best(&self, at: u32) -> Option<&Offer> {
        self.entries.get(at as usize).map(|entry| &entry.best)
    }

    fn pull(&mut self, at: u32) {
        let entry = &self.entries[at as usize];
        let mut best = entry.offer;
        for child in [entry.left, entry.right] {
            if let Some(offer) = self.best(child) {
                best = best.join(*offer);
            }
        }
        self.entries[at as usize].best = best;
    }

    /// Splits `at` into keys `< key` and keys `>= key`.
    fn split(&mut self, at: u32, key: &Key) -> (u32, u32) {
        if at == NIL {
            return (NIL, NIL);
        }
        if self.entries[at as usize].key < *key {
            let (low, high) = self.split(self.entries[at as usize].right, key);
            self.entries[at as usize].right = low;
            self.pull(at);
            (at, high)
        } else {
            let (low, high) = self.split(self.entries[at as usize].left, key);
            self.entries[at as usize].left = high;
            self.pull(at);
            (low, at)
        }
    }

    /// Joins two trees where every key of `low` is below every key of `high`.
    fn merge(&mut self, low: u32, high: u32) -> u32 {
        if low == NIL {
            return high;
        }
        if high == NIL {
            return low;
        }
        if self.entries[low as usize].priority > self.entries[high as usize].priority {
            let right = self.merge(self.entries[low as usize].right, high);
            self.entries[low as usize].right = right;
            self.pull(low);
            low
        } else {
            let left = self.merge(low, self.entries[high as usize].left);
            self.entries[high as usize].left = left;
            self.pull(high);
            high
        }
    }

    /// Inserts a node; the key must not be present.
    pub(crate) fn insert(&mut self, key: Key, slot: u32, priority: u64, offer: Offer) {
        let entry = Entry { key, slot, priority, offer, best: offer, left: NIL, right: NIL };
        let at = match self.vacant.pop() {
            Some(at) => {
                self.entries[at as usize] = entry;
                at
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.root = self.insert_at(self.root, at);
        self.len += 1;
    }

    /// Inserts `new` below `at`: descend while the priorities stay higher, then split there.
    /// This touches one root path instead of splitting at the root.
    fn insert_at(&mut self, at: u32, new: u32) -> u32 {
        if at == NIL {
            return new;
        }
        let key = self.entries[new as usize].key;
        if self.entries[new as usize].priority > self.entries[at as usize].priority {
            let (low, high) = self.split(at, &key);
            self.entries[new as usize].left = low;
            self.entries[new as usize].right = high;
            self.pull(new);
            return new;
        }
        if key < self.entries[at as usize].key {
            let left = self.insert_at(self.entries[at as usize].left, new);
            self.entries[at as usize].left = left;
        } else {
            let right = self.insert_at(self.entries[at as usize].right, new);
            self.entries[at as usize].right = right;
        }
        self.pull(at);
        at
    }

    /// Removes the node with `key`; false if absent.
    pub(crate) fn remove(&mut self, key: &Key) -> bool {
        let before = self.len;
        self.root = self.remove_at(self.root, key);
        before != self.len
    }

    fn remove_at(&mut self, at: u32, key: &Key) -> u32 {
        if at == NIL {
            return NIL;
        }
        let entry = &self.entries[at as usize];
        match key.cmp(&entry.key) {
            std::cmp::Ordering::Less => {
                let left = self.remove_at(entry.left, key);
                self.entries[at as usize].left = left;
            }
            std::cmp::Ordering::Greater => {
                let right = self.remove_at(entry.right, key);
                self.entries[at as usize].right = right;
            }
            std::cmp::Ordering::Equal => {
                let (left, right) = (entry.left, entry.right);
                self.vacant.push(at);
                self.len -= 1;
                return self.merge(left, right);
            }
        }
        self.pull(at);
        at
    }

    /// The first node in ascending key order with key `>= from` that the search accepts.
    pub(crate) fn first_from<F: FnMut(u32) -> bool>(&self, from: &Key, search: &mut Search<'_, F>) -> Option<u32> {
        self.ascend(self.root, from, search)
    }

    fn ascend<F: FnMut(u32) -> bool>(&self, at: u32, from: &Key, search: &mut Search<'_, F>) -> Option<u32> {
        let entry = self.entries.get(at as usize)?;
        search.visited += 1;
        if !entry.best.may_satisfy(search.need) {
            return None;
        }
        if entry.key < *from {
            return self.ascend(entry.right, from, search);
        }
        if let Some(found) = self.ascend(entry.left, from, search) {
            return Some(found);
        }
        if entry.offer.may_satisfy(search.need) && (search.accept)(entry.slot) {
            return Some(entry.slot);
        }
        self.ascend(entry.right, from, search)
    }

    /// The first node in descending key order, among keys `>= floor`, that the search accepts.
    pub(crate) fn last_down_to<F: FnMut(u32) -> bool>(&self, floor: &Key, search: &mut Search<'_, F>) -> Option<u32> {
        self.descend(self.root, floor, search)
    }

    fn descend<F: FnMut(u32) -> bool>(&self, at: u32, floor: &Key, search: &mut Search<'_, F>) -> Option<u32> {
        let entry = self.entries.get(at as usize)?;
        search.visited += 1;
        if !entry.best.may_satisfy(search.need) {
            return None;
        }
        if entry.key < *floor {
            return self.descend(entry.right, floor, search);
        }
        if let Some(found) = self.descend(entry.right, floor, search) {
            return Some(found);
        }
        if entry.offer.may_satisfy(search.need) && (search.accept)(entry.slot) {
            return Some(entry.slot);
        }
        self.descend(entry.left, floor, search)
    }

    /// Every (key, slot) in ascending order; for tests.
    #[cfg(test)]
    pub(crate) fn items(&self) -> Vec<(Key, u32)> {
        fn walk(tree: &OrderedNodes, at: u32, out: &mut Vec<(Key, u32)>) {
            if let Some(entry) = tree.entries.get(at as usize) {
                walk(tree, entry.left, out);
                out.push((entry.key, entry.slot));
                walk(tree, entry.right, out);
            }
        }
        let mut out = Vec::with_capacity(self.len);
        walk(self, self.root, &mut out);
        out
    }

    /// Checks heap order, summaries and the length; returns the height. For tests.
    #[cfg(test)]
    pub(crate) fn check(&self) -> usize {
        fn walk(tree: &OrderedNodes, at: u32, count: &mut usize) -> (Option<Offer>, usize) {
            let Some(entry) = tree.entries.get(at as usize) else { return (None, 0) };
            *count += 1;
            let mut best = entry.offer;
            let mut height = 0;
            for child in [entry.left, entry.right] {
                if let Some(child_entry) = tree.entries.get(child as usize) {
                    assert!(child_entry.priority <= entry.priority, "heap order");
                }
                let (offer, child_height) = walk(tree, child, count);
                if let Some(offer) = offer {
                    best = best.join(offer);
                }
                height = height.max(child_height);
            }
            assert_eq!(best, entry.best, "stale summary");
            (Some(best), height + 1)
        }
        let mut count = 0;
        let (_, height) = walk(self, self.root, &mut count);
        assert_eq!(count, self.len);
        let items = self.items();
        assert!(items.windows(2).all(|pair| pair[0].0 < pair[1].0), "search order");
        height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::placement::hash::mix64;
    use uuid::Uuid;

    fn key(free_memory: u64, n: u64) -> Key {
        Key { free_memory, tie: mix64(n), node: NodeId(Uuid::from_u128(u128::from(n))) }
    }

    fn offer(disk_mb: u64) -> Offer {
        Offer { disk_mb, cpu_percent: 100, allocations: 1, tags: 0 }
    }

    #[test]
    fn stays_balanced_and_ordered_under_churn() {
        let mut tree = OrderedNodes::default();
        let mut keys = Vec::new();
        for n in 0..2000u64 {
            // Many equal memory values: ties must not degrade the shape.
            let k = key(n % 4 * 1024, n);
            tree.insert(k, n as u32, mix64(n ^ 0xABCD), offer(n));
            keys.push(k);
        }
        for k in keys.iter().step_by(3) {
            assert!(tree.remove(k));
        }
        assert!(!tree.remove(&keys[0]));
        let height = tree.check();
        assert!(height < 40, "height {height}");
        assert_eq!(tree.len(), 2000 - 667);
    }

    #[test]
    fn searches_skip_subtrees_that_cannot_fit() {
        let mut tree = OrderedNodes::default();
        for n in 0..1000u64 {
            tree.insert(key(n, n), n as u32, mix64(n), offer(if n == 700 || n == 300 { 50 } else { 1 }));
        }
        let need = offer(10);
        let mut accepted = 0;
        let mut search = Search {
            need: &need,
            accept: |_| {
                accepted += 1;
                true
            },
            visited: 0,
        };
        assert_eq!(tree.first_from(&key(0, 0), &mut search), Some(300));
        assert_eq!(tree.first_from(&key(301, 0), &mut search), Some(700));
        assert_eq!(tree.last_down_to(&key(0, 0), &mut search), Some(700));
        assert_eq!(tree.last_down_to(&key(701, 0), &mut search), None);
        // Pruning keeps each search near one root path instead of a walk over 1000 nodes.
        assert!(search.visited < 4 * 60, "visited {}", search.visited);
        assert_eq!(accepted, 3, "only nodes offering enough disk are offered to the caller");

        let mut reject_all = Search { need: &offer(0), accept: |_| false, visited: 0 };
        assert_eq!(tree.first_from(&key(0, 0), &mut reject_all), None);
        assert_eq!(reject_all.visited, 1000);
    }
}

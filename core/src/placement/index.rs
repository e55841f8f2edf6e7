//! The incrementally maintained node index behind [`ScoringPlacement`](super::ScoringPlacement).
//!
//! Nodes live in a slab (`slots`) so that every other structure can refer to them by a `u32`.
//! Nodes that can take a server at all (online, not in maintenance, at least one free
//! allocation) are also in [`OrderedNodes`] trees: one over the whole cluster and one per
//! location, ordered by `(free memory, seeded tie-break, id)`. A decision is then a range query
//! from the requested memory upwards (bin-pack) or from the top downwards (spread), and every
//! change to a node is "remove key, change, re-insert key": O(log n).

use super::error::{Reason, Rejections};
use super::hash::{mix64, tie_break};
use super::ordered::{Offer, OrderedNodes, Search};
use super::request::{PlacementRequest, Resources, Strategy};
use super::tags::{RequiredTags, TagBits, TagTable};
use crate::ids::{LocationId, NodeId};
use crate::model::{Node, NodeStatus};
use crate::store::NodeUsage;
use std::collections::HashMap;

/// Order of placeable nodes. Field order is the sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    /// Limit minus booked memory, saturating; `u64::MAX - booked` when memory is unchecked.
    pub(crate) free_memory: u64,
    pub(crate) tie: u64,
    /// Makes the order total (and independent of slot numbers) even if two ties collide.
    pub(crate) node: NodeId,
}

/// One node as the index sees it.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) id: NodeId,
    pub(crate) location: Option<LocationId>,
    pub(crate) tags: TagBits,
    /// `Overallocation::limits` of the capacity: `u64::MAX` where unchecked.
    pub(crate) memory_limit: u64,
    pub(crate) disk_limit: u64,
    pub(crate) cpu_limit: u64,
    pub(crate) status: NodeStatus,
    pub(crate) maintenance: bool,
    pub(crate) usage: NodeUsage,
    pub(crate) tie: u64,
}

/// `booked + requested <= limit`, where an overflowing sum never fits: the one capacity rule,
/// for placement's index and for a create re-checking a node's room in its transaction.
pub fn fits(booked: u64, requested: u64, limit: u64) -> bool {
    booked.checked_add(requested).is_some_and(|total| total <= limit)
}

impl Slot {
    fn placeable(&self) -> bool {
        self.status == NodeStatus::Online && !self.maintenance && self.usage.free_allocations > 0
    }

    pub(crate) fn key(&self) -> Key {
        Key { free_memory: self.memory_limit.saturating_sub(self.usage.memory_mb), tie: self.tie, node: self.id }
    }

    /// Room left beyond memory, for the subtree summaries of [`OrderedNodes`].
    fn offer(&self) -> Offer {
        Offer {
            disk_mb: self.disk_limit.saturating_sub(self.usage.disk_mb),
            cpu_percent: self.cpu_limit.saturating_sub(self.usage.cpu_percent),
            allocations: self.usage.free_allocations,
            tags: self.tags.first_word(),
        }
    }

    /// Treap priority: a second hash, so that it does not follow the tie-break order (which
    /// would turn a run of equal free memory into a list).
    fn priority(&self) -> u64 {
        mix64(self.tie)
    }

    /// The first check the node fails for `query`, or `None` if it can take the server.
    ///
    /// Every search path and the diagnostics use this one function, so they cannot disagree.
    pub(crate) fn rejects(&self, query: &Query<'_>) -> Option<Reason> {
        let wanted = &query.request;
        if self.status != NodeStatus::Online {
            Some(Reason::Offline)
        } else if self.maintenance {
            Some(Reason::Maintenance)
        } else if wanted.location.is_some() && wanted.location != self.location {
            Some(Reason::Location)
        } else if !query.tags.satisfied_by(&self.tags) {
            Some(Reason::Tags)
        } else if !fits(self.usage.memory_mb, wanted.memory_mb, self.memory_limit) {
            Some(Reason::Memory)
        } else if !fits(self.usage.disk_mb, wanted.disk_mb, self.disk_limit) {
            Some(Reason::Disk)
        } else if !fits(self.usage.cpu_percent, wanted.cpu_percent, self.cpu_limit) {
            Some(Reason::Cpu)
        } else if self.usage.free_allocations < wanted.allocations {
            Some(Reason::Allocations)
        } else {
            None
        }
    }
}

/// A request resolved against the index.
pub(crate) struct Query<'a> {
    pub(crate) request: &'a PlacementRequest,
    pub(crate) tags: RequiredTags,
    pub(crate) strategy: Strategy,
    /// The request as a lower bound on a node's [`Offer`].
    pub(crate) need: Offer,
}

/// A node the search accepted.
pub(crate) struct Hit<'a> {
    pub(crate) slot: &'a Slot,
    pub(crate) examined: u64,
}

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeIndex {
    seed: u64,
    slots: Vec<Option<Slot>>,
    vacant: Vec<u32>,
    by_id: HashMap<NodeId, u32>,
    placeable: OrderedNodes,
    by_location: HashMap<LocationId, OrderedNodes>,
    tags: TagTable,
}

impl NodeIndex {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, ..Self::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn slot(&self, node: &NodeId) -> Option<&Slot> {
        self.by_id.get(node).and_then(|&index| self.slots[index as usize].as_ref())
    }

    fn link(&mut self, index: u32) {
        let Some(slot) = self.slots[index as usize].as_ref() else { return };
        if !slot.placeable() {
            return;
        }
        let (key, priority, offer) = (slot.key(), slot.priority(), slot.offer());
        self.placeable.insert(key, index, priority, offer);
        if let Some(location) = slot.location {
            self.by_location.entry(location).or_default().insert(key, index, priority, offer);
        }
    }

    fn unlink(&mut self, index: u32) {
        let Some(slot) = self.slots[index as usize].as_ref() else { return };
        if !slot.placeable() {
            return;
        }
        let key = slot.key();
        self.placeable.remove(&key);
        if let Some(location) = slot.location {
            if let Some(group) = self.by_location.get_mut(&location) {
                group.remove(&key);
                if group.is_empty() {
                    self.by_location.remove(&location);
                }
            }
        }
    }

    /// Runs `change` on the node's slot, keeping the ordered maps in step. `None` if unknown.
    pub(crate) fn update<R>(&mut self, node: &NodeId, change: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let index = *self.by_id.get(node)?;
        self.unlink(index);
        let result = self.slots[index as usize].as_mut().map(change);
        self.link(index);
        result
    }

    /// Inserts or replaces a node's description, keeping its usage if it was known.
    pub(crate) fn upsert(&mut self, node: &Node) {
        let (index, usage) = match self.by_id.get(&node.id) {
            Some(&index) => {
                self.unlink(index);
                let old = self.slots[index as usize].take();
                let usage = old.map(|old| {
                    self.tags.detach(index, &old.tags);
                    old.usage
                });
                (index, usage)
            }
            None => {
                let index = match self.vacant.pop() {
                    Some(index) => index,
                    None => {
                        self.slots.push(None);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_id.insert(node.id, index);
                (index, None)
            }
        };
        let limits = node.overallocation.limits(&node.capacity);
        let tags = self.tags.attach(index, &node.tags);
        self.slots[index as usize] = Some(Slot {
            id: node.id,
            location: node.location,
            tags,
            memory_limit: limits.memory_mb,
            disk_limit: limits.disk_mb,
            cpu_limit: limits.cpu_percent,
            status: node.status,
            maintenance: node.maintenance,
            usage: usage.unwrap_or(NodeUsage { node: Some(node.id), ..NodeUsage::default() }),
            tie: tie_break(self.seed, &node.id),
        });
        self.link(index);
    }

    pub(crate) fn remove(&mut self, node: &NodeId) -> bool {
        let Some(index) = self.by_id.remove(node) else { return false };
        self.unlink(index);
        if let Some(old) = self.slots[index as usize].take() {
            self.tags.detach(index, &old.tags);
        }
        self.vacant.push(index);
        true
    }

    pub(crate) fn set_usage(&mut self, node: &NodeId, usage: &NodeUsage) -> bool {
        self.update(node, |slot| slot.usage = NodeUsage { node: Some(slot.id), ..*usage }).is_some()
    }

    pub(crate) fn commit(&mut self, node: &NodeId, booked: &Resources) -> bool {
        self.update(node, |slot| {
            let usage = &mut slot.usage;
            usage.servers = usage.servers.saturating_add(1);
            usage.memory_mb = usage.memory_mb.saturating_add(booked.memory_mb);
            usage.disk_mb = usage.disk_mb.saturating_add(booked.disk_mb);
            usage.cpu_percent = usage.cpu_percent.saturating_add(booked.cpu_percent);
            usage.free_allocations = usage.free_allocations.saturating_sub(booked.allocations);
        })
        .is_some()
    }

    pub(crate) fn release(&mut self, node: &NodeId, booked: &Resources) -> bool {
        self.update(node, |slot| {
            let usage = &mut slot.usage;
            usage.servers = usage.servers.saturating_sub(1);
            usage.memory_mb = usage.memory_mb.saturating_sub(booked.memory_mb);
            usage.disk_mb = usage.disk_mb.saturating_sub(booked.disk_mb);
            usage.cpu_percent = usage.cpu_percent.saturating_sub(booked.cpu_percent);
            usage.free_allocations = usage.free_allocations.saturating_add(booked.allocations);
        })
        .is_some()
    }

    pub(crate) fn query<'a>(&self, request: &'a PlacementRequest, strategy: Strategy) -> Query<'a> {
        let tags = self.tags.resolve(&request.required_tags);
        let need = Offer {
            disk_mb: request.disk_mb,
            cpu_percent: request.cpu_percent,
            allocations: request.allocations,
            tags: tags.ids.iter().filter(|&&id| id < 64).fold(0, |bits, id| bits | 1 << id),
        };
        Query { request, tags, strategy, need }
    }

    /// The best node for `query`: the minimum key among acceptable nodes for bin-pack, the
    /// maximum for spread.
    pub(crate) fn search(&self, query: &Query<'_>) -> Option<Hit<'_>> {
        if query.tags.unknown {
            return None;
        }
        let group = match query.request.location {
            None => &self.placeable,
            Some(location) => self.by_location.get(&location)?,
        };
        // The tree prunes on tags only for the first 64 tags and only where a whole subtree lacks
        // them, so a rare tag can still cost a walk of about n/k entries for k holders spread
        // evenly. Checking the k holders directly costs k, which wins when k < n/k.
        let rarest = query.tags.ids.iter().map(|&id| self.tags.holders(id)).min_by_key(|holders| holders.len());
        match rarest {
            Some(holders) if holders.len().saturating_mul(holders.len()) <= group.len() => {
                self.scan_holders(query, holders.iter().copied())
            }
            _ => self.scan_ordered(query, group),
        }
    }

    fn scan_ordered(&self, query: &Query<'_>, group: &OrderedNodes) -> Option<Hit<'_>> {
        let mut search = Search {
            need: &query.need,
            accept: |index: u32| self.slots[index as usize].as_ref().is_some_and(|slot| slot.rejects(query).is_none()),
            visited: 0,
        };
        // Any acceptable node has at least the requested memory free, so both walks may start
        // or stop at that bound.
        let bound = Key { free_memory: query.request.memory_mb, tie: 0, node: NodeId(uuid::Uuid::nil()) };
        let index = match query.strategy {
            Strategy::BinPack => group.first_from(&bound, &mut search),
            Strategy::Spread => group.last_down_to(&bound, &mut search),
        }?;
        let slot = self.slots[index as usize].as_ref()?;
        Some(Hit { slot, examined: search.visited })
    }

    fn scan_holders(&self, query: &Query<'_>, holders: impl Iterator<Item = u32>) -> Option<Hit<'_>> {
        let mut examined = 0;
        let mut best: Option<(Key, &Slot)> = None;
        for index in holders {
            examined += 1;
            let Some(slot) = self.slots[index as usize].as_ref() else { continue };
            if slot.rejects(query).is_some() {
                continue;
            }
            let key = slot.key();
            let better = match (&best, query.strategy) {
                (None, _) => true,
                (Some((current, _)), Strategy::BinPack) => key < *current,
                (Some((current, _)), Strategy::Spread) => key > *current,
            };
            if better {
                best = Some((key, slot));
            }
        }
        best.map(|(_, slot)| Hit { slot, examined })
    }

    /// Counts, for every node, the first check it fails. O(n): only run once a search failed.
    pub(crate) fn diagnose(&self, query: &Query<'_>) -> Rejections {
        let mut rejections = Rejections { nodes: self.len() as u64, ..Rejections::default() };
        for slot in self.slots.iter().flatten() {
            if let Some(reason) = slot.rejects(query) {
                rejections.count(reason);
            }
        }
        rejections
    }

    /// Reference answer by a full scan; tests compare the index against it.
    #[cfg(test)]
    pub(crate) fn brute_force(&self, query: &Query<'_>) -> Option<NodeId> {
        let acceptable = self.slots.iter().flatten().filter(|slot| slot.rejects(query).is_none()).map(Slot::key);
        match query.strategy {
            Strategy::BinPack => acceptable.min(),
            Strategy::Spread => acceptable.max(),
        }
        .map(|key| key.node)
    }

    /// Checks the ordered trees against the slots; tests call it after every mutation.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        use std::collections::BTreeMap;
        let mut expected: Vec<(Key, u32)> = Vec::new();
        let mut expected_by_location: BTreeMap<LocationId, Vec<(Key, u32)>> = BTreeMap::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot.as_ref().filter(|slot| slot.placeable()) else { continue };
            expected.push((slot.key(), index as u32));
            if let Some(location) = slot.location {
                expected_by_location.entry(location).or_default().push((slot.key(), index as u32));
            }
        }
        expected.sort();
        self.placeable.check();
        assert_eq!(self.placeable.items(), expected);
        assert_eq!(self.by_location.len(), expected_by_location.len());
        for (location, mut expected) in expected_by_location {
            expected.sort();
            let group = &self.by_location[&location];
            group.check();
            assert_eq!(group.items(), expected);
        }
        assert_eq!(self.by_id.len(), self.slots.iter().flatten().count());
    }
}

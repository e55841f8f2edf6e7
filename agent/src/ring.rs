//! [`ReplayRing`]: the last N console events of a server, replayed to new subscribers.

use std::collections::VecDeque;

/// A bounded FIFO: pushing past the capacity evicts the oldest item.
#[derive(Clone, Debug)]
pub struct ReplayRing<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone> ReplayRing<T> {
    /// A ring keeping up to `capacity` items (`0` keeps nothing).
    pub fn new(capacity: usize) -> Self {
        // Allocated as it fills: most servers never print `capacity` lines.
        Self { items: VecDeque::new(), capacity }
    }

    /// Appends `item`, evicting the oldest one when full.
    pub fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// The items, oldest first.
    pub fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    /// Number of items held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_in_order() {
        let mut ring = ReplayRing::new(3);
        assert!(ring.is_empty());
        for i in 0..5 {
            ring.push(i);
        }
        assert_eq!(ring.to_vec(), vec![2, 3, 4]);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut ring = ReplayRing::new(0);
        ring.push("x");
        assert!(ring.is_empty());
    }
}

//! A slab: entries by key, O(1) insert and remove. A token keeps its registrations in
//! one (its children and callbacks, and in each shard its queued jobs), a group its
//! pending jobs.

/// A slab with O(1) insert and remove by key. Its free list runs through the vacant
/// slots themselves: an insert or a remove touches the slab's header and one slot, no
/// third cache line for a separate free list.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// The first vacant slot, or `NONE`.
    free: usize,
    live: usize,
}

/// A slot: an entry, or vacant with the next vacant slot (or `NONE`).
enum Slot<T> {
    Full(T),
    Vacant(usize),
}

/// The end of the free list.
const NONE: usize = usize::MAX;

impl<T> Slab<T> {
    pub(crate) const EMPTY: Self = Slab {
        slots: Vec::new(),
        free: NONE,
        live: 0,
    };

    /// Adds `entry`; returns its key.
    pub(crate) fn insert(&mut self, entry: T) -> usize {
        self.live += 1;
        let index = self.free;
        match self.slots.get_mut(index) {
            Some(slot) => {
                let Slot::Vacant(next) = std::mem::replace(slot, Slot::Full(entry)) else {
                    unreachable!("the free list holds vacant slots only");
                };
                self.free = next;
                index
            }
            None => {
                self.slots.push(Slot::Full(entry));
                self.slots.len() - 1
            }
        }
    }

    /// Takes out the entry of `key`; `None` if there is none (removed, or never given
    /// by this slab: a slab replaced by `EMPTY` forgets its keys).
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let slot = self.slots.get_mut(key)?;
        if let Slot::Vacant(_) = slot {
            return None;
        }
        let Slot::Full(entry) = std::mem::replace(slot, Slot::Vacant(self.free)) else {
            unreachable!("checked above");
        };
        self.free = key;
        self.live -= 1;
        Some(entry)
    }

    /// The entries held.
    #[cfg(any(test, loom))]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The entry of `key`, if there is one.
    #[cfg(not(loom))]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.slots.get(key)? {
            Slot::Full(entry) => Some(entry),
            Slot::Vacant(_) => None,
        }
    }

    /// One more than the largest key given so far: every key is below it.
    #[cfg(not(loom))]
    pub(crate) fn key_bound(&self) -> usize {
        self.slots.len()
    }

    /// The entries, in key order.
    #[cfg(not(loom))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Full(entry) => Some(entry),
            Slot::Vacant(_) => None,
        })
    }

    /// The entries, in key order, the slab consumed.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = T> {
        self.slots.into_iter().filter_map(|slot| match slot {
            Slot::Full(entry) => Some(entry),
            Slot::Vacant(_) => None,
        })
    }
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab::EMPTY
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_and_removed_entries_are_gone() {
        let mut slab = Slab::EMPTY;
        let a = slab.insert('a');
        let b = slab.insert('b');
        let c = slab.insert('c');
        assert_eq!(slab.remove(b), Some('b'));
        assert_eq!(slab.remove(b), None, "removed once");
        assert_eq!(slab.len(), 2);
        let d = slab.insert('d');
        assert_eq!(d, b, "a freed key is reused");
        assert_eq!(slab.remove(99), None, "a key never given");
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(c), Some('c'));
        let e = slab.insert('e');
        assert_eq!(e, c, "the last freed key first");
        assert_eq!(slab.get(d), Some(&'d'));
        assert_eq!(slab.get(a), None, "removed");
        assert_eq!(slab.key_bound(), 3);
        assert_eq!(slab.iter().collect::<Vec<_>>(), [&'d', &'e']);
        let rest: Vec<char> = slab.into_entries().collect();
        assert_eq!(rest, ['d', 'e']);
    }
}

//! A lock-free hand-off of marked items to one consumer thread.
//!
//! The C layer's `jr_token_cancel` must be async-signal-safe: no lock, no allocation. It
//! marks the token ([`Marked::mark`]: the first mark wins) and hands it to a helper thread
//! ([`HandOff::push`]): a Treiber stack of `Arc`s, pushed with a compare-and-swap from
//! any thread or signal handler, and emptied all at once by the consumer
//! ([`HandOff::take_all`], a swap), so there is no ABA problem and no node is ever freed
//! while a pusher still reads it (a pusher holds its own reference). The loom model below
//! checks that every pushed item is taken exactly once and every reference returned.

// Only the C layer uses it (and the loom model).
#![cfg_attr(not(feature = "capi"), allow(dead_code))]

use std::sync::Arc;

use crate::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// An item that can be marked once and handed off.
pub(crate) struct Marked<T> {
    pub(crate) value: T,
    marked: AtomicBool,
    /// The next node while this one is on a [`HandOff`] stack.
    next: AtomicPtr<Marked<T>>,
}

impl<T> Marked<T> {
    pub(crate) fn new(value: T) -> Arc<Self> {
        Arc::new(Marked {
            value,
            marked: AtomicBool::new(false),
            next: AtomicPtr::new(std::ptr::null_mut()),
        })
    }

    /// Marks the item; true for the call that marked it first. Async-signal-safe.
    pub(crate) fn mark(&self) -> bool {
        !self.marked.swap(true, Ordering::AcqRel)
    }

    /// Whether the item has been marked.
    pub(crate) fn is_marked(&self) -> bool {
        self.marked.load(Ordering::Acquire)
    }
}

/// A stack of marked items, pushed from anywhere, taken by one consumer.
pub(crate) struct HandOff<T> {
    head: AtomicPtr<Marked<T>>,
}

impl<T> HandOff<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        HandOff {
            head: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        HandOff {
            head: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Pushes `item` with a reference of its own (taken back by [`HandOff::take_all`]).
    /// Atomics only: async-signal-safe. Push an item once per mark (the caller whose
    /// [`Marked::mark`] returned true): an item is on at most one stack at a time.
    pub(crate) fn push(&self, item: &Arc<Marked<T>>) {
        let raw = Arc::into_raw(Arc::clone(item)).cast_mut();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            item.next.store(head, Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(head, raw, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every item pushed so far (newest first), with the references they were
    /// pushed with. One consumer at a time.
    pub(crate) fn take_all(&self) -> Vec<Arc<Marked<T>>> {
        let mut next = self.head.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let mut taken = Vec::new();
        while !next.is_null() {
            // SAFETY: every pointer on the stack came from `Arc::into_raw` in `push`, and
            // the swap above made us the only owner of the whole chain.
            let item = unsafe { Arc::from_raw(next) };
            next = item.next.load(Ordering::Relaxed);
            taken.push(item);
        }
        taken
    }

    /// Forgets the stack's items without touching them (a forked child: their owners'
    /// threads are gone). Their references leak.
    pub(crate) fn forget_all(&self) {
        self.head.store(std::ptr::null_mut(), Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::thread;

    /// Two threads race to mark and push the same item while a third pushes another and
    /// the consumer takes concurrently: each item is taken exactly once, and every
    /// reference the stack took is given back.
    #[test]
    fn every_marked_item_is_taken_once() {
        crate::pool::sleep::loom_tests::model(|| {
            let handoff = Arc::new(HandOff::new());
            let a = Marked::new('a');
            let b = Marked::new('b');
            let racers: Vec<_> = [(Arc::clone(&a)), Arc::clone(&a), Arc::clone(&b)]
                .into_iter()
                .map(|item| {
                    let handoff = Arc::clone(&handoff);
                    thread::spawn(move || {
                        if item.mark() {
                            handoff.push(&item);
                        }
                    })
                })
                .collect();
            let mut taken: Vec<char> = handoff.take_all().iter().map(|i| i.value).collect();
            for racer in racers {
                racer.join().unwrap();
            }
            taken.extend(handoff.take_all().iter().map(|i| i.value));
            taken.sort_unstable();
            assert_eq!(taken, ['a', 'b']);
            assert!(a.is_marked() && b.is_marked());
            assert_eq!(Arc::strong_count(&a), 1);
            assert_eq!(Arc::strong_count(&b), 1);
        });
    }
}

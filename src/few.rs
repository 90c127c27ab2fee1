//! `Few`: what a thread takes out from under a lock, to act on once it has released it
//! (the end callbacks of a job, the waiters of a group to wake). Most of the time there
//! is one, kept without allocating a `Vec`.

pub(crate) enum Few<T> {
    None,
    One(T),
    Many(Vec<T>),
}

impl<T> Few<T> {
    pub(crate) fn push(&mut self, item: T) {
        *self = match std::mem::replace(self, Few::None) {
            Few::None => Few::One(item),
            Few::One(first) => Few::Many(vec![first, item]),
            Few::Many(mut all) => {
                all.push(item);
                Few::Many(all)
            }
        };
    }

    /// Calls `f` on each, in the order they were pushed.
    pub(crate) fn for_each(self, f: impl FnMut(T)) {
        match self {
            Few::None => {}
            Few::One(item) => std::iter::once(item).for_each(f),
            Few::Many(all) => all.into_iter().for_each(f),
        }
    }
}

impl<T> FromIterator<T> for Few<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut few = Few::None;
        items.into_iter().for_each(|item| few.push(item));
        few
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_item_in_order() {
        for n in 0..4 {
            let few: Few<usize> = (0..n).collect();
            let mut seen = Vec::new();
            few.for_each(|i| seen.push(i));
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        assert!(matches!((0..1).collect::<Few<_>>(), Few::One(0)));
    }
}

//! The k-way merge behind every spill to disk (correlation inputs, detections): sorted runs
//! are read side by side, and a `BinaryHeap` of [`Head`]s gives the smallest next record
//! first, ties to the earlier run.

use std::cmp::Ordering;

/// The order records of sorted runs are merged in.
pub trait RunOrder {
    fn run_cmp(&self, other: &Self) -> Ordering;
}

/// A run's next record and the index of the run it came from.
pub struct Head<T>(pub T, pub usize);

impl<T: RunOrder> PartialEq for Head<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<T: RunOrder> Eq for Head<T> {}
impl<T: RunOrder> PartialOrd for Head<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T: RunOrder> Ord for Head<T> {
    /// Reversed: `BinaryHeap` is a max-heap and the smallest comes first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.run_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RunOrder for u32 {
        fn run_cmp(&self, other: &Self) -> Ordering {
            self.cmp(other)
        }
    }

    #[test]
    fn the_smallest_comes_first_and_ties_go_to_the_earlier_run() {
        let mut heap = std::collections::BinaryHeap::new();
        for (value, run) in [(5, 0), (3, 2), (3, 1), (9, 0), (1, 3)] {
            heap.push(Head(value, run));
        }
        let order: Vec<(u32, usize)> = std::iter::from_fn(|| heap.pop().map(|Head(v, r)| (v, r))).collect();
        assert_eq!(order, [(1, 3), (3, 1), (3, 2), (5, 0), (9, 0)]);
    }
}

//! Grouping by shared keys: the union-find behind incidents (findings sharing an entity)
//! and mail campaigns (messages sharing a sender, link or beacon).

/// Disjoint sets over `0..n`, with path halving. The smallest index of a set is its root,
/// so a group is named by its earliest member whatever order the unions came in.
#[derive(Clone, Debug)]
pub struct UnionFind(Vec<usize>);

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> UnionFind {
        UnionFind((0..n).collect())
    }

    /// The root (smallest member) of `x`'s set.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }

    /// Joins the sets of `a` and `b`.
    pub fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UnionFind;

    #[test]
    fn the_smallest_member_is_the_root_whatever_the_order() {
        let mut u = UnionFind::new(6);
        u.union(5, 3);
        u.union(3, 4);
        u.union(4, 1);
        assert_eq!((u.find(5), u.find(3), u.find(4), u.find(1)), (1, 1, 1, 1));
        assert_eq!((u.find(0), u.find(2)), (0, 2));
        u.union(2, 5);
        assert_eq!(u.find(2), 1);
    }
}

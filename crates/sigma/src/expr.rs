//! Boolean expressions over leaves: the form every detection takes once its
//! condition is resolved, first over leaf specifications, then over compiled leaf ids.

#[derive(Clone, Debug, PartialEq)]
pub enum Expr<L> {
    Leaf(L),
    Not(Box<Expr<L>>),
    And(Vec<Expr<L>>),
    Or(Vec<Expr<L>>),
    /// At least `n` of the operands (`2 of selection_*`).
    AtLeast(usize, Vec<Expr<L>>),
    Const(bool),
}

impl<L> Expr<L> {
    pub fn not(e: Expr<L>) -> Expr<L> {
        match e {
            Expr::Const(b) => Expr::Const(!b),
            Expr::Not(inner) => *inner,
            e => Expr::Not(Box::new(e)),
        }
    }

    pub fn and(mut v: Vec<Expr<L>>) -> Expr<L> {
        if v.len() == 1 { v.pop().unwrap() } else { Expr::And(v) }
    }

    pub fn or(mut v: Vec<Expr<L>>) -> Expr<L> {
        if v.len() == 1 { v.pop().unwrap() } else { Expr::Or(v) }
    }

    /// Replaces every leaf, leaving this expression as it is.
    pub fn map_ref<M>(&self, f: &mut impl FnMut(&L) -> M) -> Expr<M> {
        match self {
            Expr::Leaf(l) => Expr::Leaf(f(l)),
            Expr::Not(e) => Expr::Not(Box::new(e.map_ref(f))),
            Expr::And(v) => Expr::And(v.iter().map(|e| e.map_ref(f)).collect()),
            Expr::Or(v) => Expr::Or(v.iter().map(|e| e.map_ref(f)).collect()),
            Expr::AtLeast(n, v) => Expr::AtLeast(*n, v.iter().map(|e| e.map_ref(f)).collect()),
            Expr::Const(b) => Expr::Const(*b),
        }
    }

    pub fn leaves<'a>(&'a self, out: &mut Vec<&'a L>) {
        match self {
            Expr::Leaf(l) => out.push(l),
            Expr::Not(e) => e.leaves(out),
            Expr::And(v) | Expr::Or(v) | Expr::AtLeast(_, v) => v.iter().for_each(|e| e.leaves(out)),
            Expr::Const(_) => {}
        }
    }

    /// Evaluates with a leaf oracle.
    pub fn eval(&self, leaf: &impl Fn(&L) -> bool) -> bool {
        match self {
            Expr::Leaf(l) => leaf(l),
            Expr::Not(e) => !e.eval(leaf),
            Expr::And(v) => v.iter().all(|e| e.eval(leaf)),
            Expr::Or(v) => v.iter().any(|e| e.eval(leaf)),
            Expr::AtLeast(n, v) => {
                let mut hits = 0;
                for e in v {
                    if e.eval(leaf) {
                        hits += 1;
                        if hits >= *n {
                            return true;
                        }
                    }
                }
                *n == 0
            }
            Expr::Const(b) => *b,
        }
    }
}

/// The deepest expression read back from the rule cache. Rules parsed from YAML stay far
/// below it (conditions nest at most 64 levels); a cache file is input like any other,
/// and a deeper tree would overflow the stack of every recursive walk.
pub const MAX_CACHED_DEPTH: usize = 256;

/// An expression in postfix order, for serialising without recursion on the way in.
#[derive(serde::Serialize, serde::Deserialize)]
enum Postfix<L> {
    Leaf(L),
    Not,
    And(u32),
    Or(u32),
    AtLeast(u64, u32),
    Const(bool),
}

impl<L> Expr<L> {
    fn postfix<'a>(&'a self, out: &mut Vec<Postfix<&'a L>>) {
        match self {
            Expr::Leaf(l) => out.push(Postfix::Leaf(l)),
            Expr::Not(e) => {
                e.postfix(out);
                out.push(Postfix::Not);
            }
            Expr::And(v) | Expr::Or(v) | Expr::AtLeast(_, v) => {
                v.iter().for_each(|e| e.postfix(out));
                let n = v.len() as u32;
                out.push(match self {
                    Expr::And(_) => Postfix::And(n),
                    Expr::Or(_) => Postfix::Or(n),
                    Expr::AtLeast(k, _) => Postfix::AtLeast(*k as u64, n),
                    _ => unreachable!("matched above"),
                });
            }
            Expr::Const(b) => out.push(Postfix::Const(*b)),
        }
    }
}

impl<L: serde::Serialize> serde::Serialize for Expr<L> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::new();
        self.postfix(&mut out);
        out.serialize(s)
    }
}

impl<'de, L: serde::Deserialize<'de>> serde::Deserialize<'de> for Expr<L> {
    /// Rebuilds the tree with an explicit stack, refusing anything malformed or deeper
    /// than [`MAX_CACHED_DEPTH`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let ops: Vec<Postfix<L>> = Vec::deserialize(d)?;
        let mut stack: Vec<(Expr<L>, usize)> = Vec::new();
        let take = |stack: &mut Vec<(Expr<L>, usize)>, n: u32| -> Result<(Vec<Expr<L>>, usize), D::Error> {
            let n = n as usize;
            if n > stack.len() {
                return Err(D::Error::custom("expression operator without its operands"));
            }
            let children = stack.split_off(stack.len() - n);
            let depth = children.iter().map(|(_, d)| *d).max().unwrap_or(0) + 1;
            if depth > MAX_CACHED_DEPTH {
                return Err(D::Error::custom("expression nests too deeply"));
            }
            Ok((children.into_iter().map(|(e, _)| e).collect(), depth))
        };
        for op in ops {
            let node = match op {
                Postfix::Leaf(l) => (Expr::Leaf(l), 1),
                Postfix::Const(b) => (Expr::Const(b), 1),
                Postfix::Not => {
                    let (mut v, depth) = take(&mut stack, 1)?;
                    (Expr::Not(Box::new(v.remove(0))), depth)
                }
                Postfix::And(n) => {
                    let (v, depth) = take(&mut stack, n)?;
                    (Expr::And(v), depth)
                }
                Postfix::Or(n) => {
                    let (v, depth) = take(&mut stack, n)?;
                    (Expr::Or(v), depth)
                }
                Postfix::AtLeast(k, n) => {
                    let (v, depth) = take(&mut stack, n)?;
                    (Expr::AtLeast(k as usize, v), depth)
                }
            };
            stack.push(node);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some((e, _)), true) => Ok(e),
            _ => Err(D::Error::custom("expression is not one tree")),
        }
    }
}

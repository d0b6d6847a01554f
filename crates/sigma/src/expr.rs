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

    /// Replaces every leaf, failing on the first error.
    pub fn try_map<M, E>(self, f: &mut impl FnMut(L) -> Result<M, E>) -> Result<Expr<M>, E> {
        Ok(match self {
            Expr::Leaf(l) => Expr::Leaf(f(l)?),
            Expr::Not(e) => Expr::Not(Box::new(e.try_map(f)?)),
            Expr::And(v) => Expr::And(v.into_iter().map(|e| e.try_map(f)).collect::<Result<_, _>>()?),
            Expr::Or(v) => Expr::Or(v.into_iter().map(|e| e.try_map(f)).collect::<Result<_, _>>()?),
            Expr::AtLeast(n, v) => Expr::AtLeast(n, v.into_iter().map(|e| e.try_map(f)).collect::<Result<_, _>>()?),
            Expr::Const(b) => Expr::Const(b),
        })
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

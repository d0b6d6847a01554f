//! Correlation inputs put in order at bounded memory: records are buffered, sorted and
//! spilled to temporary files in runs when the buffer passes its budget, then merged.
//! Files from many hosts, read in parallel and out of order, come out as one stream in
//! time order, or group by group with each group in time order ([`Order`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use portcullis_event::merge::{Head, RunOrder};
use portcullis_event::text_hash::TextHash;

/// One base-rule (or correlation) match, as a correlation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// UTC microseconds.
    pub ts: i64,
    /// The correlation it feeds, and the position of its source in that correlation's `rules`.
    pub corr: u32,
    pub pos: u32,
    /// The group-by values, joined by U+001F.
    pub group: String,
    /// The value of the correlation's `field` (empty if it has none).
    pub value: String,
    /// The finding id of the matched event (for evidence), as the number its 32 hex
    /// digits write ([`portcullis_event::hex_id`]).
    pub evidence: u128,
    /// The matched event's entities (`kind=value`, joined by U+001F), passed on to findings.
    pub entities: String,
}

/// The order a sorter gives its inputs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// [`Input::key`]: time, then correlation, source, group and evidence. One stream as
    /// it happened: what correlations of correlations need, since an outer correlation
    /// groups its inner findings differently.
    Time,
    /// Correlation and a hash of the group, then time, source and evidence: each group's
    /// inputs together, in the order `Time` gives them. A group's state is then built,
    /// judged and dropped while it is in the cache, instead of being visited once per
    /// input among thousands. Groups whose hashes collide come interleaved in time order.
    /// Sorting by the hash, not the text, keeps comparisons off the inputs' strings.
    Group,
}

/// An input as a sorter keeps it: with its group's hash under [`Order::Group`] (0 under
/// [`Order::Time`]).
#[derive(Debug)]
struct Keyed {
    group_hash: u64,
    input: Input,
}

impl Order {
    fn cmp(self, a: &Keyed, b: &Keyed) -> Ordering {
        let (x, y) = (&a.input, &b.input);
        match self {
            Order::Time => x.key().cmp(&y.key()),
            Order::Group => (x.corr, a.group_hash, x.ts, x.pos, x.evidence)
                .cmp(&(y.corr, b.group_hash, y.ts, y.pos, y.evidence))
                .then_with(|| x.group.cmp(&y.group)),
        }
    }

    fn keyed(self, input: Input) -> Keyed {
        let group_hash = match self {
            Order::Time => 0,
            // Seeded (group keys come from the logs): groups whose hashes collide are
            // correlated side by side, so prepared collisions would keep them all alive.
            Order::Group => TextHash::default().hash_bytes(input.group.as_bytes()),
        };
        Keyed { group_hash, input }
    }
}

impl Input {
    fn cost(&self) -> usize {
        64 + self.group.len() + self.value.len() + self.entities.len()
    }

    /// The time order ([`Order::Time`]): time, then correlation, source, group and evidence.
    /// Inputs with equal keys are the same match (one event's, for one source of one
    /// correlation), so an unstable sort loses no order.
    pub fn key(&self) -> (i64, u32, u32, &str, u128) {
        (self.ts, self.corr, self.pos, &self.group, self.evidence)
    }

    fn write(&self, group_hash: u64, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&group_hash.to_le_bytes())?;
        w.write_all(&self.ts.to_le_bytes())?;
        w.write_all(&self.corr.to_le_bytes())?;
        w.write_all(&self.pos.to_le_bytes())?;
        w.write_all(&self.evidence.to_le_bytes())?;
        for s in [&self.group, &self.value, &self.entities] {
            w.write_all(&(s.len() as u32).to_le_bytes())?;
            w.write_all(s.as_bytes())?;
        }
        Ok(())
    }

    fn read(r: &mut impl Read) -> io::Result<Option<Keyed>> {
        let mut b8 = [0u8; 8];
        match r.read_exact(&mut b8) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let group_hash = u64::from_le_bytes(b8);
        r.read_exact(&mut b8)?;
        let mut b4 = [0u8; 4];
        r.read_exact(&mut b4)?;
        let corr = u32::from_le_bytes(b4);
        r.read_exact(&mut b4)?;
        let pos = u32::from_le_bytes(b4);
        let mut b16 = [0u8; 16];
        r.read_exact(&mut b16)?;
        let evidence = u128::from_le_bytes(b16);
        let mut strings = [String::new(), String::new(), String::new()];
        for s in &mut strings {
            r.read_exact(&mut b4)?;
            let mut buf = vec![0u8; u32::from_le_bytes(b4) as usize];
            r.read_exact(&mut buf)?;
            *s = String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let [group, value, entities] = strings;
        let input = Input { ts: i64::from_le_bytes(b8), corr, pos, group, value, evidence, entities };
        Ok(Some(Keyed { group_hash, input }))
    }
}

/// Buffers inputs and spills sorted runs to temporary files past a memory budget.
pub struct Sorter {
    order: Order,
    budget: usize,
    used: usize,
    buffer: Vec<Keyed>,
    runs: Vec<File>,
    /// Inputs spilled to disk so far.
    pub spilled: u64,
}

impl Sorter {
    /// A sorter giving its inputs in time order.
    pub fn new(budget_bytes: usize) -> Sorter {
        Sorter::in_order(budget_bytes, Order::Time)
    }

    pub fn in_order(budget_bytes: usize, order: Order) -> Sorter {
        Sorter { order, budget: budget_bytes.max(1 << 16), used: 0, buffer: Vec::new(), runs: Vec::new(), spilled: 0 }
    }

    pub fn push(&mut self, input: Input) -> io::Result<()> {
        self.used += input.cost();
        self.buffer.push(self.order.keyed(input));
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        let order = self.order;
        self.buffer.sort_unstable_by(|a, b| order.cmp(a, b));
        let mut f = BufWriter::new(tempfile::tempfile()?);
        for k in self.buffer.drain(..) {
            k.input.write(k.group_hash, &mut f)?;
            self.spilled += 1;
        }
        let mut file = f.into_inner().map_err(|e| e.into_error())?;
        use std::io::Seek;
        file.rewind()?;
        self.runs.push(file);
        // The buffer keeps its capacity: it fills to the same budget again, and growing it
        // afresh after every spill cost a tenth of a correlation-heavy hunt (copies, page faults).
        self.used = 0;
        Ok(())
    }

    /// Merges any number of sorters into one stream, in the first one's order (the others
    /// must have been made with the same).
    pub fn merge(sorters: Vec<Sorter>) -> io::Result<Merged> {
        let order = sorters.first().map_or(Order::Time, |s| s.order);
        if sorters.iter().any(|s| s.order != order) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "correlation inputs sorted in different orders cannot be merged"));
        }
        let mut sources: Vec<RunReader> = Vec::new();
        for mut s in sorters {
            s.buffer.sort_unstable_by(|a, b| order.cmp(a, b));
            // The room kept for refills is not kept through the merge.
            s.buffer.shrink_to_fit();
            sources.push(RunReader::Memory(std::mem::take(&mut s.buffer).into_iter()));
            for f in s.runs {
                sources.push(RunReader::File(BufReader::with_capacity(64 * 1024, f)));
            }
        }
        let mut heap = BinaryHeap::new();
        for (i, src) in sources.iter_mut().enumerate() {
            if let Some(k) = src.next()? {
                heap.push(Head(Ordered(k, order), i));
            }
        }
        Ok(Merged { order, sources, heap })
    }
}

enum RunReader {
    Memory(std::vec::IntoIter<Keyed>),
    File(BufReader<File>),
}

impl RunReader {
    fn next(&mut self) -> io::Result<Option<Keyed>> {
        match self {
            RunReader::Memory(it) => Ok(it.next()),
            RunReader::File(r) => Input::read(r),
        }
    }
}

/// An input in a merge, with the order it is merged in.
struct Ordered(Keyed, Order);

impl RunOrder for Ordered {
    fn run_cmp(&self, other: &Self) -> Ordering {
        self.1.cmp(&self.0, &other.0)
    }
}

/// The merged stream, in the sorters' [`Order`]: a stream in [`Order::Group`] is for
/// [`crate::Correlator::push_grouped`], not [`crate::Correlator::push`].
pub struct Merged {
    order: Order,
    sources: Vec<RunReader>,
    heap: BinaryHeap<Head<Ordered>>,
}

impl Merged {
    /// The order the stream comes in.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The next input with its group's hash (under [`Order::Group`]; 0 under [`Order::Time`]).
    pub fn next_keyed(&mut self) -> Option<io::Result<(u64, Input)>> {
        let Head(Ordered(k, order), src) = self.heap.pop()?;
        match self.sources[src].next() {
            Ok(Some(n)) => self.heap.push(Head(Ordered(n, order), src)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok((k.group_hash, k.input)))
    }
}

impl Iterator for Merged {
    type Item = io::Result<Input>;
    fn next(&mut self) -> Option<io::Result<Input>> {
        self.next_keyed().map(|r| r.map(|(_, input)| input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ts: i64, g: &str) -> Input {
        // Evidence with high and low bits set, so a spill that cut or swapped them shows.
        let evidence = (ts as u128) << 96 | 0xfeed_0000_0000_0000_0000_0001 | ts as u128;
        Input { ts, corr: 0, pos: 0, group: g.into(), value: format!("v{ts}"), evidence, entities: "host=h".into() }
    }

    #[test]
    fn merges_spilled_and_buffered_runs_in_time_order() {
        let mut a = Sorter::new(1); // spills on every push past the minimum budget
        let mut b = Sorter::new(1 << 20);
        let mut seed = 7u64;
        let mut all = Vec::new();
        for i in 0..5000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let ts = (seed >> 33) as i64 % 100_000;
            all.push(ts);
            let s = if i % 2 == 0 { &mut a } else { &mut b };
            s.push(input(ts, "g")).unwrap();
        }
        assert!(a.spilled > 0);
        let merged: Vec<Input> = Sorter::merge(vec![a, b]).unwrap().map(|r| r.unwrap()).collect();
        all.sort();
        assert_eq!(merged.iter().map(|i| i.ts).collect::<Vec<_>>(), all);
        // Every field comes back from the spill files as it went in.
        assert!(merged.iter().all(|i| *i == input(i.ts, "g")));
    }

    #[test]
    fn sorters_in_different_orders_are_not_merged() {
        let (mut a, mut b) = (Sorter::new(1 << 16), Sorter::in_order(1 << 16, Order::Group));
        a.push(input(1, "g")).unwrap();
        b.push(input(2, "g")).unwrap();
        assert!(Sorter::merge(vec![a, b]).is_err());
    }

    #[test]
    fn merges_group_by_group_each_group_in_time_order() {
        let mut a = Sorter::in_order(1, Order::Group);
        let mut b = Sorter::in_order(1 << 20, Order::Group);
        let mut seed = 3u64;
        let mut all = Vec::new();
        for i in 0..5000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let ts = (seed >> 33) as i64 % 100_000;
            let mut inp = input(ts, ["g2", "g1", "g10"][(seed >> 20) as usize % 3]);
            inp.corr = (seed >> 40) as u32 % 2;
            all.push(inp.clone());
            let s = if i % 2 == 0 { &mut a } else { &mut b };
            s.push(inp).unwrap();
        }
        assert!(a.spilled > 0);
        let merged = Sorter::merge(vec![a, b]).unwrap();
        assert_eq!(merged.order(), Order::Group);
        let merged: Vec<Input> = merged.map(|r| r.unwrap()).collect();
        // Each (correlation, group) comes as one run, in time order.
        let mut done = std::collections::HashSet::new();
        for w in merged.windows(2) {
            let (a, b) = ((w[0].corr, &w[0].group), (w[1].corr, &w[1].group));
            if a == b {
                assert!(w[0].ts <= w[1].ts, "a group out of time order");
            } else {
                assert!(done.insert(a), "group {a:?} comes twice");
                assert!(!done.contains(&b), "group {b:?} comes twice");
            }
        }
        // Nothing lost, nothing changed.
        let mut sorted = merged.clone();
        sorted.sort_by(|x, y| x.key().cmp(&y.key()));
        all.sort_by(|x, y| x.key().cmp(&y.key()));
        assert_eq!(sorted, all);
    }
}

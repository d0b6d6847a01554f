//! Correlation inputs put into global time order at bounded memory: records are
//! buffered, sorted and spilled to temporary files in runs when the buffer passes
//! its budget, then merged. Files from many hosts, read in parallel and out of
//! order, come out as one time-ordered stream.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use portcullis_event::merge::{Head, RunOrder};

/// One base-rule (or correlation) match, as a correlation sees it. Its three texts are
/// kept end to end in one allocation: millions of inputs are made on the scanning
/// threads, sorted, spilled, read back and dropped on the correlating ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// UTC microseconds.
    pub ts: i64,
    /// The correlation it feeds, and the position of its source in that correlation's `rules`.
    pub corr: u32,
    pub pos: u32,
    /// The finding id of the matched event (for evidence), as the number its 32 hex
    /// digits write ([`portcullis_event::hex_id`]).
    pub evidence: u128,
    /// The group key, the value and the entities, end to end.
    texts: Box<str>,
    group_end: usize,
    value_end: usize,
}

impl Input {
    /// An input with its group-by values (joined by U+001F), the value of the correlation's
    /// `field` (empty if it has none) and the matched event's entities (`kind=value`, joined
    /// by U+001F, passed on to findings).
    pub fn new(ts: i64, corr: u32, pos: u32, evidence: u128, group: &str, value: &str, entities: &str) -> Input {
        let mut texts = String::with_capacity(group.len() + value.len() + entities.len());
        texts.push_str(group);
        texts.push_str(value);
        texts.push_str(entities);
        Input::from_texts(ts, corr, pos, evidence, texts.into_boxed_str(), group.len(), group.len() + value.len())
    }

    /// An input from its texts already laid end to end (the ends must be character
    /// boundaries of `texts`, in order).
    fn from_texts(ts: i64, corr: u32, pos: u32, evidence: u128, texts: Box<str>, group_end: usize, value_end: usize) -> Input {
        debug_assert!(group_end <= value_end && texts.is_char_boundary(group_end) && texts.is_char_boundary(value_end));
        Input { ts, corr, pos, evidence, texts, group_end, value_end }
    }

    /// The group-by values, joined by U+001F.
    pub fn group(&self) -> &str {
        &self.texts[..self.group_end]
    }

    /// The value of the correlation's `field` (empty if it has none).
    pub fn value(&self) -> &str {
        &self.texts[self.group_end..self.value_end]
    }

    /// The matched event's entities (`kind=value`, joined by U+001F).
    pub fn entities(&self) -> &str {
        &self.texts[self.value_end..]
    }

    fn cost(&self) -> usize {
        std::mem::size_of::<Input>() + self.texts.len()
    }

    /// The order inputs are correlated in: time, then correlation, source, group and evidence.
    /// Inputs with equal keys are the same match (one event's, for one source of one
    /// correlation), so an unstable sort loses no order.
    pub fn key(&self) -> (i64, u32, u32, &str, u128) {
        (self.ts, self.corr, self.pos, self.group(), self.evidence)
    }

    fn write(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.ts.to_le_bytes())?;
        w.write_all(&self.corr.to_le_bytes())?;
        w.write_all(&self.pos.to_le_bytes())?;
        w.write_all(&self.evidence.to_le_bytes())?;
        for n in [self.group_end, self.value_end, self.texts.len()] {
            w.write_all(&(n as u64).to_le_bytes())?;
        }
        w.write_all(self.texts.as_bytes())
    }

    fn read(r: &mut impl Read) -> io::Result<Option<Input>> {
        let mut b8 = [0u8; 8];
        match r.read_exact(&mut b8) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let ts = i64::from_le_bytes(b8);
        let mut b4 = [0u8; 4];
        r.read_exact(&mut b4)?;
        let corr = u32::from_le_bytes(b4);
        r.read_exact(&mut b4)?;
        let pos = u32::from_le_bytes(b4);
        let mut b16 = [0u8; 16];
        r.read_exact(&mut b16)?;
        let evidence = u128::from_le_bytes(b16);
        let mut ends = [0usize; 3];
        for end in &mut ends {
            r.read_exact(&mut b8)?;
            *end = usize::try_from(u64::from_le_bytes(b8)).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let [group_end, value_end, len] = ends;
        // Read as far as the file goes, not allocated up front: a damaged length must not
        // ask for terabytes.
        // Room for the usual record at once (no growing, and no shrinking into the box); a
        // damaged length is still only read as far as the file goes.
        let mut buf = Vec::with_capacity(len.min(64 * 1024));
        r.take(len as u64).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a spilled correlation input is cut short"));
        }
        let texts = String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !(group_end <= value_end && value_end <= len && texts.is_char_boundary(group_end) && texts.is_char_boundary(value_end)) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a spilled correlation input's text ends are out of place"));
        }
        Ok(Some(Input::from_texts(ts, corr, pos, evidence, texts.into_boxed_str(), group_end, value_end)))
    }
}

/// Buffers inputs and spills sorted runs to temporary files past a memory budget.
pub struct Sorter {
    budget: usize,
    used: usize,
    buffer: Vec<Input>,
    runs: Vec<File>,
    /// Inputs spilled to disk so far.
    pub spilled: u64,
}

impl Sorter {
    pub fn new(budget_bytes: usize) -> Sorter {
        Sorter { budget: budget_bytes.max(1 << 16), used: 0, buffer: Vec::new(), runs: Vec::new(), spilled: 0 }
    }

    pub fn push(&mut self, input: Input) -> io::Result<()> {
        self.used += input.cost();
        self.buffer.push(input);
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        let mut f = BufWriter::new(tempfile::tempfile()?);
        for i in sorted_order(&self.buffer) {
            self.buffer[i].write(&mut f)?;
            self.spilled += 1;
        }
        self.buffer.clear();
        let mut file = f.into_inner().map_err(|e| e.into_error())?;
        use std::io::Seek;
        file.rewind()?;
        self.runs.push(file);
        self.used = 0;
        self.buffer.shrink_to(1024);
        Ok(())
    }

    /// Merges any number of sorters into one time-ordered stream.
    pub fn merge(sorters: Vec<Sorter>) -> io::Result<Merged> {
        let mut sources: Vec<RunReader> = Vec::new();
        for mut s in sorters {
            let order = sorted_order(&s.buffer);
            put_in_order(&mut s.buffer, order);
            sources.push(RunReader::Memory(std::mem::take(&mut s.buffer).into_iter()));
            for f in s.runs {
                sources.push(RunReader::File(BufReader::with_capacity(64 * 1024, f)));
            }
        }
        let mut heap = BinaryHeap::new();
        for (i, src) in sources.iter_mut().enumerate() {
            if let Some(input) = src.next()? {
                heap.push(Head(input, i));
            }
        }
        Ok(Merged { sources, heap })
    }
}

/// The places of `inputs` in [`Input::key`] order. What is sorted is each input's time,
/// correlation, source and first eight bytes of group with its place (32 bytes, compared as
/// numbers), not the inputs (64 bytes each, moved at every swap); only inputs equal in all
/// of those are looked up and compared by their whole group and evidence.
///
/// Inputs mostly arrive in time order already (one log is written in time order), with
/// the events of one second in no order of their own. So they are put in time order first,
/// by a stable sort that finds runs already in order and merges them (one pass over a
/// buffer that is in order), and then each second's few inputs by the rest of the key.
fn sorted_order(inputs: &[Input]) -> Vec<usize> {
    let mut keys: Vec<(i64, u64, u64, usize)> =
        inputs.iter().enumerate().map(|(i, x)| (x.ts, u64::from(x.corr) << 32 | u64::from(x.pos), group_prefix(x.group()), i)).collect();
    keys.sort_by_key(|k| k.0);
    for same_time in keys.chunk_by_mut(|a, b| a.0 == b.0) {
        same_time.sort_unstable_by(|a, b| {
            (a.1, a.2).cmp(&(b.1, b.2)).then_with(|| {
                let (x, y) = (&inputs[a.3], &inputs[b.3]);
                (x.group(), x.evidence).cmp(&(y.group(), y.evidence))
            })
        });
    }
    keys.into_iter().map(|k| k.3).collect()
}

/// Moves `items[order[k]]` to place `k`, for every k, in place (a copy would double the
/// largest buffer of the run). `order` must be a permutation of the places.
fn put_in_order<T>(items: &mut [T], mut order: Vec<usize>) {
    const DONE: usize = usize::MAX;
    for start in 0..items.len() {
        if order[start] == DONE {
            continue;
        }
        // Follow the cycle through `start`: each swap puts one item in its final place and
        // carries the item that was at `start` on to the next.
        let mut k = start;
        loop {
            let from = std::mem::replace(&mut order[k], DONE);
            if from == start || from == DONE {
                break;
            }
            items.swap(k, from);
            k = from;
        }
    }
}

/// The first eight bytes of `group` as a big-endian number, zeros past its end: when two
/// groups' prefixes differ, they are ordered as the groups are (a group that ends early
/// is a prefix of the other, and so the lesser); when they are equal, nothing is said.
fn group_prefix(group: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = group.len().min(8);
    b[..n].copy_from_slice(&group.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

enum RunReader {
    Memory(std::vec::IntoIter<Input>),
    File(BufReader<File>),
}

impl RunReader {
    fn next(&mut self) -> io::Result<Option<Input>> {
        match self {
            RunReader::Memory(it) => Ok(it.next()),
            RunReader::File(r) => Input::read(r),
        }
    }
}

impl RunOrder for Input {
    fn run_cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The merged stream.
pub struct Merged {
    sources: Vec<RunReader>,
    heap: BinaryHeap<Head<Input>>,
}

impl Iterator for Merged {
    type Item = io::Result<Input>;
    fn next(&mut self) -> Option<io::Result<Input>> {
        let Head(input, src) = self.heap.pop()?;
        match self.sources[src].next() {
            Ok(Some(n)) => self.heap.push(Head(n, src)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ts: i64, g: &str) -> Input {
        // Evidence with high and low bits set, so a spill that cut or swapped them shows.
        let evidence = (ts as u128) << 96 | 0xfeed_0000_0000_0000_0000_0001 | ts as u128;
        Input::new(ts, 0, 0, evidence, g, &format!("v{ts}"), "host=h")
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
    fn inputs_come_out_in_the_order_of_their_keys() {
        // Times, correlations, sources, groups and evidence that tie in every way but one.
        let mut inputs = Vec::new();
        let mut seed = 11u64;
        for _ in 0..3000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = seed >> 33;
            let group = ["a", "ab", "b", "", "a\u{1f}b", "a\u{0}", "10.1.220.1", "10.1.220.10", "10.1.220.9", "é"][(r % 10) as usize];
            inputs.push(Input::new(
                (r % 7) as i64 - 3,
                (r / 7 % 3) as u32,
                (r / 21 % 2) as u32,
                u128::from(r / 42 % 4) << 100 | u128::from(r % 10),
                group,
                "v",
                "",
            ));
        }
        let mut expected = inputs.clone();
        expected.sort_by(|a, b| a.key().cmp(&b.key()));
        let by_order: Vec<Input> = sorted_order(&inputs).into_iter().map(|i| inputs[i].clone()).collect();
        assert_eq!(by_order, expected);
        // In time order already, each time's inputs in no order (as one log gives them).
        let mut timed = inputs.clone();
        timed.sort_by_key(|i| i.ts);
        assert_ne!(timed, expected);
        let by_order: Vec<Input> = sorted_order(&timed).into_iter().map(|i| timed[i].clone()).collect();
        assert_eq!(by_order, expected);
        for budget in [1, 1 << 30] {
            let mut s = Sorter::new(budget);
            for i in &inputs {
                s.push(i.clone()).unwrap();
            }
            let merged: Vec<Input> = Sorter::merge(vec![s]).unwrap().map(|r| r.unwrap()).collect();
            assert_eq!(merged, expected, "budget {budget}");
        }
    }

    #[test]
    fn put_in_order_applies_the_permutation() {
        let mut seed = 5u64;
        for n in [0usize, 1, 2, 3, 10, 257] {
            let mut order: Vec<usize> = (0..n).collect();
            // A shuffle (Fisher-Yates) with cycles of every length.
            for i in (1..n).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let items: Vec<u32> = (0..n as u32).map(|i| i * 7 + 1).collect();
            let expected: Vec<u32> = order.iter().map(|&i| items[i]).collect();
            let mut moved = items.clone();
            put_in_order(&mut moved, order);
            assert_eq!(moved, expected, "{n}");
        }
    }

    #[test]
    fn a_damaged_spill_record_is_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        input(5, "gé").write(&mut bytes).unwrap();
        assert_eq!(Input::read(&mut bytes.as_slice()).unwrap(), Some(input(5, "gé")));
        // The group's end inside "é", past the value's end, past the texts; a length past
        // the file; texts cut short.
        for (at, end) in [(32, 2u64), (32, 9), (40, 1 << 40), (48, 1 << 60)] {
            let mut bad = bytes.clone();
            bad[at..at + 8].copy_from_slice(&end.to_le_bytes());
            assert!(Input::read(&mut bad.as_slice()).is_err(), "end {end} at {at}");
        }
        assert!(Input::read(&mut &bytes[..bytes.len() - 1]).is_err());
    }
}

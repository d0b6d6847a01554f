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

    /// The memory its texts take (the input itself is counted by the room a buffer holds).
    fn text_cost(&self) -> usize {
        self.texts.len()
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
///
/// Inputs are kept in parts (an input's part is chosen by its caller, the same for every
/// input of one correlation group: [`crate::place_of`]), and each part is put in time order
/// on its own: a spill writes every part's inputs one part after another into one file, and
/// the merge gives one part's inputs, in time order, before the next part's. Correlating a
/// part at a time keeps only that part's groups in use, and so in the processor's caches.
pub struct Sorter {
    budget: usize,
    used: usize,
    /// Per part, the inputs not yet spilled.
    parts: Vec<Vec<Input>>,
    runs: Vec<Run>,
    /// Inputs spilled to disk so far.
    pub spilled: u64,
}

/// One spill: every part's inputs, sorted, part after part.
struct Run {
    file: File,
    /// Per part, how many inputs it holds.
    counts: Vec<u64>,
}

impl Sorter {
    /// A sorter of one part: its merge is one time-ordered stream.
    pub fn new(budget_bytes: usize) -> Sorter {
        Sorter::with_parts(budget_bytes, 1)
    }

    /// A sorter of `parts` parts (at least one).
    pub fn with_parts(budget_bytes: usize, parts: usize) -> Sorter {
        let parts = (0..parts.max(1)).map(|_| Vec::new()).collect();
        Sorter { budget: budget_bytes.max(1 << 16), used: 0, parts, runs: Vec::new(), spilled: 0 }
    }

    /// Adds an input to the first part.
    pub fn push(&mut self, input: Input) -> io::Result<()> {
        self.push_to(0, input)
    }

    /// Adds an input to part `part` (taken modulo the number of parts).
    pub fn push_to(&mut self, part: usize, input: Input) -> io::Result<()> {
        // Counted: the texts, and the room each part's buffer holds (a buffer grows by
        // doubling, and many parts' spare room adds up).
        let n = self.parts.len();
        let buffer = &mut self.parts[part % n];
        let room = buffer.capacity();
        self.used += input.text_cost();
        buffer.push(input);
        self.used += (buffer.capacity() - room) * std::mem::size_of::<Input>();
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        let mut f = BufWriter::new(tempfile::tempfile()?);
        let mut counts = Vec::with_capacity(self.parts.len());
        let keep = (1024 / self.parts.len()).max(16);
        for part in &mut self.parts {
            for i in sorted_order(part) {
                part[i].write(&mut f)?;
            }
            counts.push(part.len() as u64);
            self.spilled += part.len() as u64;
            part.clear();
            part.shrink_to(keep);
        }
        let mut file = f.into_inner().map_err(|e| e.into_error())?;
        use std::io::Seek;
        file.rewind()?;
        self.runs.push(Run { file, counts });
        // The little room kept (at most 1024 inputs' in all) is not counted.
        self.used = 0;
        Ok(())
    }

    /// Merges any number of sorters into one stream: every input of part 0 in time order,
    /// then every input of part 1, and so on ([`Merged::part`] tells which part an input
    /// came from). Sorters of one part give one time-ordered stream.
    pub fn merge(sorters: Vec<Sorter>) -> io::Result<Merged> {
        let parts = sorters.iter().map(|s| s.parts.len()).max().unwrap_or(1);
        let mut sources: Vec<RunReader> = Vec::new();
        for s in sorters {
            let mut memory: Vec<std::vec::IntoIter<Input>> = Vec::with_capacity(parts);
            for mut part in s.parts {
                let order = sorted_order(&part);
                put_in_order(&mut part, order);
                memory.push(part.into_iter());
            }
            sources.push(RunReader::Memory(memory));
            for run in s.runs {
                sources.push(RunReader::File { reader: BufReader::with_capacity(64 * 1024, run.file), counts: run.counts, left: 0 });
            }
        }
        let mut merged = Merged { sources, heap: BinaryHeap::new(), part: 0, parts };
        merged.start_part()?;
        Ok(merged)
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
    /// Per part, the inputs that were never spilled, in order.
    Memory(Vec<std::vec::IntoIter<Input>>),
    /// A spill, read part after part: `left` inputs of the current part are still to come.
    File { reader: BufReader<File>, counts: Vec<u64>, left: u64 },
}

impl RunReader {
    /// Readies the source for part `part` (every input of the parts before it was read).
    fn start(&mut self, part: usize) {
        if let RunReader::File { counts, left, .. } = self {
            *left = counts.get(part).copied().unwrap_or(0);
        }
    }

    /// The next input of the current part.
    fn next(&mut self, part: usize) -> io::Result<Option<Input>> {
        match self {
            RunReader::Memory(parts) => Ok(parts.get_mut(part).and_then(|it| it.next())),
            RunReader::File { reader, left, .. } => {
                if *left == 0 {
                    return Ok(None);
                }
                *left -= 1;
                match Input::read(reader)? {
                    Some(input) => Ok(Some(input)),
                    None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a spill of correlation inputs is cut short")),
                }
            }
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
    /// The part being merged, of `parts`.
    part: usize,
    parts: usize,
}

impl Merged {
    /// The part of the input last given.
    pub fn part(&self) -> usize {
        self.part
    }

    /// Fills the heap with each source's first input of the current part, moving on to
    /// the next part while the current one has none.
    fn start_part(&mut self) -> io::Result<()> {
        while self.heap.is_empty() && self.part < self.parts {
            for (i, src) in self.sources.iter_mut().enumerate() {
                src.start(self.part);
                if let Some(input) = src.next(self.part)? {
                    self.heap.push(Head(input, i));
                }
            }
            if self.heap.is_empty() {
                self.part += 1;
            }
        }
        Ok(())
    }
}

impl Iterator for Merged {
    type Item = io::Result<Input>;
    fn next(&mut self) -> Option<io::Result<Input>> {
        if self.heap.is_empty() {
            // The current part is done: the next one with inputs.
            self.part += 1;
            if let Err(e) = self.start_part() {
                self.part = self.parts;
                return Some(Err(e));
            }
        }
        let Head(input, src) = self.heap.pop()?;
        match self.sources[src].next(self.part) {
            Ok(Some(n)) => self.heap.push(Head(n, src)),
            Ok(None) => {}
            Err(e) => {
                self.heap.clear();
                self.part = self.parts;
                return Some(Err(e));
            }
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
    fn parts_come_out_one_after_another_each_in_time_order() {
        // Three sorters of five parts, one spilling at every push past its minimum budget,
        // one at times, one never; part 3 gets nothing.
        let mut sorters = vec![Sorter::with_parts(1, 5), Sorter::with_parts(1 << 17, 5), Sorter::with_parts(1 << 30, 5)];
        let mut seed = 9u64;
        let mut expected: Vec<Vec<Input>> = vec![Vec::new(); 5];
        for i in 0..6000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let ts = (seed >> 33) as i64 % 50_000;
            let part = [0, 1, 2, 4][(seed >> 20) as usize % 4];
            let x = input(ts, &format!("g{}", (seed >> 40) % 7));
            expected[part].push(x.clone());
            sorters[i % 3].push_to(part, x).unwrap();
        }
        assert!(sorters[0].spilled > 0 && sorters[1].spilled > 0 && sorters[2].spilled == 0);
        let mut merged = Sorter::merge(sorters).unwrap();
        let mut got: Vec<Vec<Input>> = vec![Vec::new(); 5];
        let mut parts_seen = Vec::new();
        while let Some(x) = merged.next() {
            let part = merged.part();
            if parts_seen.last() != Some(&part) {
                parts_seen.push(part);
            }
            got[part].push(x.unwrap());
        }
        assert_eq!(parts_seen, [0, 1, 2, 4]);
        for e in &mut expected {
            e.sort_by(|a, b| a.key().cmp(&b.key()));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_sorter_in_parts_keeps_to_its_budget_and_spills_in_large_runs() {
        let budget = 1 << 20;
        let mut s = Sorter::with_parts(budget, 64);
        for i in 0..40_000i64 {
            s.push_to((i * 7919) as usize % 64, input(i / 10, &format!("10.0.{}.{}", i % 97, i % 13))).unwrap();
            // The buffers' room and texts, as counted, stay within the budget between pushes.
            let room: usize = s.parts.iter().map(|p| p.capacity()).sum::<usize>() * std::mem::size_of::<Input>();
            let texts: usize = s.parts.iter().flatten().map(|x| x.texts.len()).sum();
            assert!(room + texts <= budget + 1024 * std::mem::size_of::<Input>() + 4096, "{i}: {room} + {texts}");
        }
        // Each run holds many inputs: the room kept after a spill does not make the next
        // push spill again.
        assert!(!s.runs.is_empty());
        assert!(s.spilled / s.runs.len() as u64 > 5_000, "{} runs for {} inputs", s.runs.len(), s.spilled);
    }

    #[test]
    fn a_spill_cut_short_is_an_error() {
        let mut s = Sorter::with_parts(1, 2);
        for ts in 0..3000 {
            s.push_to(ts as usize % 2, input(ts, "g")).unwrap();
        }
        assert!(s.spilled > 0);
        // The first run loses its last bytes: its second part comes up short.
        let len = s.runs[0].file.metadata().unwrap().len();
        s.runs[0].file.set_len(len - 10).unwrap();
        let results: Vec<io::Result<Input>> = Sorter::merge(vec![s]).unwrap().collect();
        assert!(results.last().unwrap().is_err());
        assert!(results[..results.len() - 1].iter().all(|r| r.is_ok()));
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

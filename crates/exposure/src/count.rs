//! Exact counting of unique electors in bounded memory.
//!
//! Each appearance of an elector is one `u128`: the top 112 bits of the 128-bit xxh3
//! fingerprint of the normalised name + address + postcode, and 16 bits of flags (the
//! categories of that appearance, once for all files, once more if the file is on a
//! compromised system and once more if it is evidenced as accessed). Appearances gather
//! in memory up to a budget; when full they are sorted (in parallel), duplicates merged by
//! OR-ing their flags, and, if still large, written out as a sorted run. The end is a
//! k-way merge of the runs that counts each fingerprint once. 40 million rows take
//! 640 MB in memory; past the budget the cost is sequential disk I/O, never more memory.
//! A false merge needs two of the electors to share 112 bits (probability ≈ n²/2¹¹³,
//! about 10⁻¹⁹ for 40 million).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use rayon::slice::ParallelSliceMut;

use crate::register::{CATEGORIES, CATEGORY_BITS};

const FLAG_MASK: u128 = 0xFFFF;

/// Where an appearance was found, as flag-word shifts.
pub const SCOPE_ALL: u32 = 0;
pub const SCOPE_COMPROMISED: u32 = CATEGORY_BITS;
pub const SCOPE_ACCESSED: u32 = 2 * CATEGORY_BITS;

/// Packs a fingerprint with its flags.
pub fn entry(hash: u128, categories: u16, compromised: bool, accessed: bool) -> u128 {
    let mut flags = categories as u128;
    if compromised {
        flags |= (categories as u128) << SCOPE_COMPROMISED;
    }
    if accessed {
        flags |= (categories as u128) << SCOPE_ACCESSED;
    }
    (hash & !FLAG_MASK) | flags
}

/// Unique electors per scope and category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// [scope][category]: scope 0 all files, 1 on compromised systems, 2 evidenced as accessed.
    pub counts: [[u64; 5]; 3],
    /// Appearances counted (rows), before de-duplication.
    pub appearances: u64,
    /// Sorted runs written to disk.
    pub spilled_runs: usize,
}

impl Tally {
    pub fn unique(&self, scope: usize) -> u64 {
        self.counts[scope][0]
    }
    pub fn by_category(&self, scope: usize) -> serde_json::Map<String, serde_json::Value> {
        CATEGORIES.iter().zip(self.counts[scope]).map(|(n, c)| (n.to_string(), c.into())).collect()
    }
    fn add(&mut self, flags: u16) {
        for scope in 0..3 {
            let bits = (flags >> (scope as u32 * CATEGORY_BITS)) & ((1 << CATEGORY_BITS) - 1);
            for (c, count) in self.counts[scope].iter_mut().enumerate() {
                if bits & (1 << c) != 0 {
                    *count += 1;
                }
            }
        }
    }
}

/// Gathers appearances; see the module docs.
pub struct Counter {
    mem: Vec<u128>,
    budget: usize,
    runs: Vec<File>,
    appearances: u64,
}

impl Counter {
    /// `budget_bytes` bounds the in-memory appearances (16 bytes each).
    pub fn new(budget_bytes: usize) -> Counter {
        Counter { mem: Vec::new(), budget: (budget_bytes / 16).max(1024), runs: Vec::new(), appearances: 0 }
    }

    pub fn extend(&mut self, batch: &[u128]) -> io::Result<()> {
        self.appearances += batch.len() as u64;
        for chunk in batch.chunks(self.budget) {
            if self.mem.len() + chunk.len() > self.budget {
                self.compact();
                if self.mem.len() + chunk.len() > self.budget {
                    self.spill()?;
                }
            }
            self.mem.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Sorts and merges duplicates in memory.
    fn compact(&mut self) {
        self.mem.par_sort_unstable();
        let mut w = 0;
        for r in 0..self.mem.len() {
            let v = self.mem[r];
            if w > 0 && (self.mem[w - 1] & !FLAG_MASK) == (v & !FLAG_MASK) {
                self.mem[w - 1] |= v & FLAG_MASK;
            } else {
                self.mem[w] = v;
                w += 1;
            }
        }
        self.mem.truncate(w);
    }

    fn spill(&mut self) -> io::Result<()> {
        let file = tempfile::tempfile()?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for v in &self.mem {
            w.write_all(&v.to_le_bytes())?;
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0))?;
        self.runs.push(file);
        self.mem.clear();
        Ok(())
    }

    /// Merges everything and counts each elector once.
    pub fn finish(mut self) -> io::Result<Tally> {
        self.compact();
        let mut tally = Tally { appearances: self.appearances, spilled_runs: self.runs.len(), ..Default::default() };
        let mut readers: Vec<BufReader<File>> = self.runs.drain(..).map(|f| BufReader::with_capacity(1 << 20, f)).collect();
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(v) = read_u128(r)? {
                heap.push(Reverse((v, i)));
            }
        }
        let mut mem = self.mem.iter().copied().peekable();
        let mut current: Option<(u128, u16)> = None;
        loop {
            // The smallest of the memory run and the disk runs.
            let from_heap = heap.peek().map(|Reverse((v, _))| *v);
            let next = match (mem.peek().copied(), from_heap) {
                (None, None) => break,
                (Some(m), Some(h)) if m <= h => mem.next(),
                (Some(_), None) => mem.next(),
                _ => {
                    let Reverse((v, i)) = heap.pop().expect("peeked");
                    if let Some(n) = read_u128(&mut readers[i])? {
                        heap.push(Reverse((n, i)));
                    }
                    Some(v)
                }
            };
            let v = next.expect("one side has a value");
            let (key, flags) = (v & !FLAG_MASK, (v & FLAG_MASK) as u16);
            match &mut current {
                Some((k, f)) if *k == key => *f |= flags,
                _ => {
                    if let Some((_, f)) = current.take() {
                        tally.add(f);
                    }
                    current = Some((key, flags));
                }
            }
        }
        if let Some((_, f)) = current {
            tally.add(f);
        }
        Ok(tally)
    }
}

fn read_u128(r: &mut impl Read) -> io::Result<Option<u128>> {
    let mut b = [0u8; 16];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(u128::from_le_bytes(b))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{ATTAINER, LISTED, OVERSEAS};

    fn count(budget: usize, entries: &[u128]) -> Tally {
        let mut c = Counter::new(budget);
        for chunk in entries.chunks(100) {
            c.extend(chunk).unwrap();
        }
        c.finish().unwrap()
    }

    #[test]
    fn spilling_gives_the_same_exact_counts() {
        // 50,000 electors, each seen 1–3 times with varying categories and scopes.
        let mut entries = Vec::new();
        for i in 0..50_000u128 {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) << 16;
            for k in 0..(1 + i % 3) {
                let cat = LISTED | if i % 7 == 0 && k == 1 { ATTAINER } else { 0 } | if i % 11 == 0 { OVERSEAS } else { 0 };
                entries.push(entry(h, cat, i % 2 == 0, i % 4 == 0 && k == 0));
            }
        }
        // Shuffle deterministically.
        let n = entries.len();
        for i in 0..n {
            let j = (i * 7919 + 13) % n;
            entries.swap(i, j);
        }
        let in_memory = count(1 << 30, &entries);
        let spilled = count(16 * 4096, &entries);
        assert_eq!(in_memory.counts, spilled.counts);
        assert!(spilled.spilled_runs > 3, "{}", spilled.spilled_runs);
        assert_eq!(in_memory.unique(0), 50_000);
        assert_eq!(in_memory.unique(1), 25_000);
        assert_eq!(in_memory.unique(2), 12_500);
        // Attainer on the second appearance: i % 7 == 0 and i % 3 >= 1.
        let attainers = (0..50_000u64).filter(|i| i % 7 == 0 && i % 3 >= 1).count() as u64;
        assert_eq!(in_memory.counts[0][2], attainers);
        assert_eq!(in_memory.counts[0][3], (0..50_000u64).filter(|i| i % 11 == 0).count() as u64);
    }
}

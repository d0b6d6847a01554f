//! A field's literal automaton: built the first time an event needs it, and for a large
//! set, built over a short fragment of each long pattern, whose hits are then verified.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::FxBuild;

/// Pattern sets up to this many bytes are searched with a DFA, once they have searched
/// `DFA_AFTER_BYTES`; larger sets are searched by fragments (see [`Searcher`]).
pub(super) const DFA_PATTERN_BYTES: usize = 16 * 1024;
pub(super) const DFA_AFTER_BYTES: u64 = 1 << 20;

/// States this close to the start get a transition for every byte class.
const DENSE_DEPTH: usize = 2;

/// In a large set, a pattern longer than this is searched for by this many of its bytes.
const FRAGMENT_LEN: usize = 8;

/// The automaton for one set of (lower-cased) literals. Groups whose log sources never
/// occur in the input cost nothing to compile, and start-up is the rules' parsing and
/// indexing only. Built once and shared by every scanner thread.
///
/// A small set starts as a contiguous NFA, quick to build, and one that goes on to search
/// a megabyte gets a DFA (several times faster to search, and small; a large set's DFA
/// would take tens of megabytes): on triage-sized input, converting a hundred sets to
/// DFAs cost more than all their searches. A large set (thousands of file hashes, say)
/// keeps its NFA, built over fragments, which takes a fifth of the time and memory of the
/// whole patterns. Every form finds the same occurrences.
pub(super) struct LazyAutomaton {
    pub(super) patterns: Vec<String>,
    /// Whether the set is small enough for a DFA (and too small to gain from fragments).
    small: bool,
    nfa: OnceLock<Option<Searcher>>,
    dfa: OnceLock<Option<Searcher>>,
    /// Bytes searched with the NFA (counted only until the DFA is built).
    searched: AtomicU64,
}

/// An automaton over the patterns or over their fragments.
struct Searcher {
    ac: AhoCorasick,
    /// Per automaton pattern, when it searches fragments: the set's patterns it is a
    /// fragment of, each with the fragment's offset in it.
    fragment_of: Option<Vec<Vec<(u32, u32)>>>,
}

impl LazyAutomaton {
    pub(super) fn new(patterns: Vec<String>) -> LazyAutomaton {
        let bytes: usize = patterns.iter().map(|p| p.len()).sum();
        LazyAutomaton {
            patterns,
            small: bytes <= DFA_PATTERN_BYTES,
            nfa: Default::default(),
            dfa: Default::default(),
            searched: Default::default(),
        }
    }

    /// Appends every occurrence of every pattern in `hay` to `out`, as (pattern, start,
    /// end), overlapping ones included, in no particular order.
    pub(super) fn find_all(&self, hay: &[u8], out: &mut Vec<(u32, u32, u32)>) {
        let Some(searcher) = self.searcher(hay.len()) else { return };
        let found = searcher.ac.find_overlapping_iter(hay);
        let Some(fragment_of) = &searcher.fragment_of else {
            out.extend(found.map(|m| (m.pattern().as_usize() as u32, m.start() as u32, m.end() as u32)));
            return;
        };
        for m in found {
            let fragment_len = m.end() - m.start();
            for &(p, offset) in &fragment_of[m.pattern().as_usize()] {
                let pattern = self.patterns[p as usize].as_bytes();
                let Some(start) = m.start().checked_sub(offset as usize) else { continue };
                let end = start + pattern.len();
                if pattern.len() == fragment_len || hay.get(start..end) == Some(pattern) {
                    out.push((p, start as u32, end as u32));
                }
            }
        }
    }

    /// What the automaton is, once built (for diagnostics).
    pub(super) fn describe(&self) -> Option<String> {
        let s = self.dfa.get().and_then(Option::as_ref).or_else(|| self.nfa())?;
        let form = if s.fragment_of.is_some() { " by fragments" } else { "" };
        Some(format!("{:?}{form}/{}p/{}KiB", s.ac.kind(), self.patterns.len(), s.ac.memory_usage() / 1024))
    }

    /// The searcher for `len` bytes of input.
    fn searcher(&self, len: usize) -> Option<&Searcher> {
        if let Some(dfa) = self.dfa.get() {
            return dfa.as_ref().or_else(|| self.nfa());
        }
        let nfa = self.nfa()?;
        if !self.small {
            return Some(nfa);
        }
        let before = self.searched.fetch_add(len as u64, Ordering::Relaxed);
        if before + len as u64 >= DFA_AFTER_BYTES
            && let Some(dfa) = self.dfa.get_or_init(|| self.build_whole(AhoCorasickKind::DFA))
        {
            return Some(dfa);
        }
        Some(nfa)
    }

    fn nfa(&self) -> Option<&Searcher> {
        self.nfa.get_or_init(|| if self.small { self.build_whole(AhoCorasickKind::ContiguousNFA) } else { self.build_fragments() }).as_ref()
    }

    fn build_whole(&self, kind: AhoCorasickKind) -> Option<Searcher> {
        Some(Searcher { ac: build(&self.patterns, kind)?, fragment_of: None })
    }

    /// An NFA over one fragment of each pattern (the whole of a short one); patterns
    /// sharing a fragment share its automaton pattern.
    fn build_fragments(&self) -> Option<Searcher> {
        let mut fragments: Vec<&[u8]> = Vec::new();
        let mut fragment_of: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut index: HashMap<&[u8], usize, FxBuild> = HashMap::default();
        for (p, pattern) in self.patterns.iter().enumerate() {
            let bytes = pattern.as_bytes();
            let offset = fragment_offset(bytes);
            let fragment = &bytes[offset..bytes.len().min(offset + FRAGMENT_LEN)];
            let at = *index.entry(fragment).or_insert_with(|| {
                fragments.push(fragment);
                fragment_of.push(Vec::new());
                fragments.len() - 1
            });
            fragment_of[at].push((p as u32, offset as u32));
        }
        Some(Searcher { ac: build(&fragments, AhoCorasickKind::ContiguousNFA)?, fragment_of: Some(fragment_of) })
    }
}

fn build<P: AsRef<[u8]>>(patterns: &[P], kind: AhoCorasickKind) -> Option<AhoCorasick> {
    // Patterns are lower-cased and values are lower-cased before the search: an ASCII
    // case-insensitive automaton takes five times longer to build. Dense transitions only
    // for the first two levels (the crate's default is three): on the CommandLine set's
    // fragments the build takes a third less time, and searches as fast.
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .kind(Some(kind))
        .dense_depth(DENSE_DEPTH)
        .build(patterns)
        .or_else(|_| AhoCorasick::builder().match_kind(MatchKind::Standard).build(patterns))
        .ok()
}

/// Where in `pattern` its `FRAGMENT_LEN` bytes least likely to occur by chance start (the
/// later on a tie): each hit of a fragment is verified, so a rare one is verified rarely.
fn fragment_offset(pattern: &[u8]) -> usize {
    if pattern.len() <= FRAGMENT_LEN {
        return 0;
    }
    let rarity = |b: u8| u32::from(RARITY[b as usize]);
    let mut score: u32 = pattern[..FRAGMENT_LEN].iter().map(|&b| rarity(b)).sum();
    let (mut best, mut at) = (score, 0);
    for end in FRAGMENT_LEN..pattern.len() {
        score = score + rarity(pattern[end]) - rarity(pattern[end - FRAGMENT_LEN]);
        if score >= best {
            (best, at) = (score, end + 1 - FRAGMENT_LEN);
        }
    }
    at
}

/// How unusual each byte is in lower-cased log values: the commonest letters and the
/// separators of paths and command lines score 0, other letters, digits and a few
/// punctuation marks 1, anything else 2.
const RARITY: [u8; 256] = {
    let mut table = [2u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'=' | b',' | b'"' | b'\'') {
            table[b] = 1;
        }
        b += 1;
    }
    let common = b" \\/.:-etaoinsrcldmwxp0";
    let mut i = 0;
    while i < common.len() {
        table[common[i] as usize] = 0;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(patterns: &[String], hay: &[u8]) -> Vec<(u32, u32, u32)> {
        let ac = build(patterns, AhoCorasickKind::NoncontiguousNFA).expect("automaton");
        let mut v: Vec<_> =
            ac.find_overlapping_iter(hay).map(|m| (m.pattern().as_usize() as u32, m.start() as u32, m.end() as u32)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn found(lazy: &LazyAutomaton, hay: &[u8]) -> Vec<(u32, u32, u32)> {
        let mut v = Vec::new();
        lazy.find_all(hay, &mut v);
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn an_automaton_finds_the_same_before_and_after_it_gets_a_dfa() {
        let patterns: Vec<String> = ["\\whoami.exe", "mimikatz", "sekurlsa::", "a", "ab", "bab"].iter().map(|p| p.to_string()).collect();
        let lazy = LazyAutomaton::new(patterns.clone());
        let hay = b"c:\\windows\\whoami.exe /all; mimikatz sekurlsa::logonpasswords abab";
        let nfa = found(&lazy, hay);
        assert!(lazy.describe().is_some_and(|d| d.starts_with("ContiguousNFA/")));
        // Past the bytes an NFA searches before the set gets its DFA.
        lazy.find_all(&vec![b'z'; DFA_AFTER_BYTES as usize], &mut Vec::new());
        assert!(lazy.describe().is_some_and(|d| d.starts_with("DFA/")));
        assert_eq!(nfa, found(&lazy, hay));
        assert_eq!(nfa, whole(&patterns, hay));
        // A large set keeps its NFA, over fragments.
        let large = LazyAutomaton::new((0..2000).map(|i| format!("pattern-number-{i}")).collect());
        large.find_all(&vec![b'z'; DFA_AFTER_BYTES as usize * 2], &mut Vec::new());
        assert!(large.describe().is_some_and(|d| d.starts_with("ContiguousNFA by fragments/")), "{:?}", large.describe());
    }

    /// A large set searched by fragments finds exactly what its whole patterns find:
    /// patterns that share fragments, repeat them, overlap one another, are short, empty
    /// or multi-byte, in text made of the same pieces. (An empty pattern can be reported
    /// twice at one place, by either form: what is found is compared as a set.)
    #[test]
    fn fragments_find_exactly_what_whole_patterns_find() {
        let pieces: [&[u8]; 9] = [b"ab", b"abab", b"c:\\windows\\", b"md5=", b"0f3a", b"\xf0\x9f\x90\x9c", b" ", b"x", b"\\temp\\"];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut patterns: Vec<String> = Vec::new();
        let mut bytes = 0;
        while bytes <= DFA_PATTERN_BYTES {
            let mut p = Vec::new();
            for _ in 0..next(12) {
                p.extend_from_slice(pieces[next(pieces.len())]);
            }
            let p = String::from_utf8(p).expect("whole pieces");
            if !patterns.contains(&p) {
                bytes += p.len();
                patterns.push(p);
            }
        }
        if !patterns.contains(&String::new()) {
            patterns.push(String::new());
        }
        let lazy = LazyAutomaton::new(patterns.clone());
        for round in 0..200 {
            let mut hay = Vec::new();
            for _ in 0..next(40) {
                if next(4) == 0 {
                    hay.extend_from_slice(patterns[next(patterns.len())].as_bytes());
                } else {
                    hay.extend_from_slice(pieces[next(pieces.len())]);
                }
            }
            assert_eq!(found(&lazy, &hay), whole(&patterns, &hay), "round {round}");
        }
        assert!(lazy.describe().is_some_and(|d| d.contains("by fragments")));
    }

    #[test]
    fn a_fragment_is_the_rarest_window_of_a_long_pattern() {
        assert_eq!(fragment_offset(b"short"), 0);
        let p = b"c:\\windows\\system32\\qzk#;";
        let at = fragment_offset(p);
        assert!(p[at..at + FRAGMENT_LEN].ends_with(b"qzk#;"), "{:?}", String::from_utf8_lossy(&p[at..at + FRAGMENT_LEN]));
    }
}

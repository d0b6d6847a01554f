//! A quick check, before a keyword automaton runs over an event's whole text, that the
//! text can hold one of its patterns. Each pattern of more than four bytes is represented
//! by one of its 4-byte windows (one nearly as rare as its rarest in a sample of recent
//! texts, and shared with as many other patterns as can use it), and shorter patterns by
//! themselves: a text holding none of these holds no pattern. They are looked for with the
//! SIMD searcher of the aho-corasick crate (Teddy, up to 64 literals at a time), several
//! times faster than the automaton; a text that has one is searched by the automaton as
//! before. So the check never changes a result, only how often the automaton runs.

use aho_corasick::packed;
use rustc_hash::FxHashMap;

/// Literals per SIMD searcher (Teddy's limit), and the most searchers worth running:
/// past that the check costs as much as the automaton.
const PER_SEARCHER: usize = 64;
const MAX_SEARCHERS: usize = 2;

/// The most recent keyword text a scanner keeps as its sample (one text in `SAMPLE_EVERY`).
const SAMPLE_BYTES: usize = 256 * 1024;
const SAMPLE_EVERY: u64 = 8;
/// Longest part of one text kept in the sample.
const SAMPLE_TEXT_MAX: usize = 1024;
/// Texts seen before the first filter is built (so that its sample holds some), then
/// texts a filter is first judged on; each judgement it fails doubles the wait.
const FIRST_BUILD: u32 = 256;
const FIRST_JUDGEMENT: u32 = 2048;
const LAST_JUDGEMENT: u32 = 1 << 20;

/// The filter is kept only if it lets through at most this share of the texts; a filter
/// passing most texts is only overhead.
const MAX_PASS_SHARE: f64 = 0.25;

pub(super) struct GramFilter {
    searchers: Vec<packed::Searcher>,
}

impl GramFilter {
    /// The filter for `patterns` (lower-cased, as the automaton's), with windows chosen by
    /// how rarely they occur in `sample` (whole keyword texts); None if it would let through
    /// too many of the sample's texts to pay, or needs too many searchers.
    pub(super) fn new(patterns: &[String], sample: &[&[u8]]) -> Option<GramFilter> {
        // Windows counted as the number their four bytes make: hashing a number is one
        // multiplication, a slice is its length and then its bytes.
        let key = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let total: usize = sample.iter().map(|t| t.len().saturating_sub(3)).sum();
        let mut counts: FxHashMap<u32, u32> = FxHashMap::with_capacity_and_hasher(total.min(1 << 16), Default::default());
        for w in sample.iter().flat_map(|t| t.windows(4)) {
            *counts.entry(key(w)).or_default() += 1;
        }
        // A window is good enough for a pattern if it is about as rare as the pattern's
        // rarest: among those, the one good enough for most patterns is chosen, so that
        // variants (`${jndi:ldap:/`, `${jndi:rmi:/`, ...) share one literal and the
        // searchers stay few.
        let slack = (sample.len() / 256) as u32;
        let count = |w: &[u8]| counts.get(&key(w)).copied().unwrap_or(0);
        fn good_enough<'p>(b: &'p [u8], count: &impl Fn(&[u8]) -> u32, slack: u32) -> Vec<&'p [u8]> {
            let rarest = b.windows(4).map(count).min().unwrap_or(0);
            let mut good: Vec<&[u8]> = b.windows(4).filter(|w| count(w) <= rarest.saturating_add(slack)).collect();
            good.sort_unstable();
            good.dedup();
            good
        }
        // Per pattern longer than a window, its good-enough windows (empty for the others).
        let good: Vec<Vec<&[u8]>> =
            patterns.iter().map(|p| if p.len() > 4 { good_enough(p.as_bytes(), &count, slack) } else { Vec::new() }).collect();
        let mut cover: FxHashMap<&[u8], u32> = FxHashMap::default();
        for &w in good.iter().flatten() {
            *cover.entry(w).or_default() += 1;
        }
        let mut literals: Vec<&[u8]> = Vec::with_capacity(patterns.len());
        for (p, good) in patterns.iter().zip(&good) {
            let b = p.as_bytes();
            if b.len() <= 4 {
                literals.push(b);
                continue;
            }
            let best = good.iter().copied().min_by_key(|w| {
                (std::cmp::Reverse(cover.get(w).copied().unwrap_or(0)), count(w), w.iter().map(|&c| byte_commonness(c)).sum::<u32>())
            })?;
            literals.push(best);
        }
        literals.sort_unstable();
        literals.dedup();
        if literals.is_empty() || literals.iter().any(|l| l.is_empty()) {
            return None;
        }
        // Teddy first checks as many bytes of each literal as the shortest one has (up to
        // four), a few bits of each: one short literal among many makes every searcher of
        // theirs stop at several places per line to verify. So the windows (four bytes) are
        // looked for apart from the shorter patterns.
        let (windows, short): (Vec<&[u8]>, Vec<&[u8]>) = literals.iter().partition(|l| l.len() >= 4);
        if windows.len() > PER_SEARCHER * MAX_SEARCHERS || short.len() > PER_SEARCHER {
            return None;
        }
        let mut searchers = Vec::new();
        for chunk in windows.chunks(PER_SEARCHER).chain(short.chunks(PER_SEARCHER)) {
            let mut b = packed::Config::new().builder();
            b.extend(chunk);
            searchers.push(b.build()?);
        }
        let filter = GramFilter { searchers };
        let passed = sample.iter().filter(|t| filter.may_match(t)).count();
        (!sample.is_empty() && passed as f64 <= sample.len() as f64 * MAX_PASS_SHARE).then_some(filter)
    }

    /// False only if `hay` holds none of the patterns.
    pub(super) fn may_match(&self, hay: &[u8]) -> bool {
        self.searchers.iter().any(|s| s.find(hay).is_some())
    }
}

/// A scanner's sample of recent keyword texts, which filters are built from. (The texts
/// hold NULs between values, so each text's end is kept apart.)
#[derive(Default)]
pub(super) struct Sample {
    bytes: Vec<u8>,
    ends: std::collections::VecDeque<usize>,
    /// Bytes dropped from the front of `bytes` (the offsets in `ends` count them).
    dropped: usize,
    seen: u64,
}

impl Sample {
    pub(super) fn offer(&mut self, text: &[u8]) {
        self.seen += 1;
        if self.seen % SAMPLE_EVERY != 1 {
            return;
        }
        if self.bytes.len() >= SAMPLE_BYTES {
            // Keep the newer half of the texts.
            let half = self.ends.len() / 2;
            if let Some(&cut) = half.checked_sub(1).and_then(|i| self.ends.get(i)) {
                self.bytes.drain(..cut - self.dropped);
                self.dropped = cut;
                self.ends.drain(..half);
            }
        }
        self.bytes.extend_from_slice(&text[..text.len().min(SAMPLE_TEXT_MAX)]);
        self.ends.push_back(self.dropped + self.bytes.len());
    }

    fn texts(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let end = end - self.dropped;
                let t = &self.bytes[start..end];
                start = end;
                t
            })
            .collect()
    }
}

/// One keyword automaton's filter in one scanner, judged on the share of texts it lets
/// through and built again from the newer sample when that is too high (logs change: the
/// first hour of a web log is health checks, the rest is users).
pub(super) struct Judged {
    filter: Option<GramFilter>,
    checked: u32,
    passed: u32,
    /// Texts until the filter is judged (or, without one, built again).
    wait: u32,
}

impl Default for Judged {
    fn default() -> Self {
        Judged { filter: None, checked: 0, passed: 0, wait: FIRST_BUILD }
    }
}

impl Judged {
    /// Whether `text` must be searched; builds, judges and rebuilds the filter as it goes.
    pub(super) fn must_search(&mut self, patterns: &[String], sample: &Sample, text: &[u8]) -> bool {
        self.checked += 1;
        let pass = self.filter.as_ref().is_none_or(|f| f.may_match(text));
        self.passed += u32::from(pass);
        if self.checked >= self.wait {
            let failed = self.filter.is_none() || self.passed as f64 > self.checked as f64 * MAX_PASS_SHARE;
            if failed {
                self.filter = GramFilter::new(patterns, &sample.texts());
                self.wait = if self.wait == FIRST_BUILD { FIRST_JUDGEMENT } else { (self.wait * 2).min(LAST_JUDGEMENT) };
            }
            self.checked = 0;
            self.passed = 0;
        }
        pass
    }
}

/// How common a byte is in log text (higher is more common), to break ties between
/// windows the sample never saw: letters, digits and URL punctuation over the rest.
fn byte_commonness(b: u8) -> u32 {
    match b {
        b'a'..=b'z' | b'0'..=b'9' | b' ' | b'/' | b'.' => 9,
        b'-' | b':' | b'+' | b'=' | b'%' | b'&' | b'_' => 6,
        b',' | b';' | b'(' | b')' | b'\\' | b'@' | b'?' | 0 => 4,
        b'\'' | b'"' | b'[' | b']' | b'#' | b'*' => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains_any(patterns: &[String], hay: &[u8]) -> bool {
        patterns.iter().any(|p| hay.windows(p.len()).any(|w| w == p.as_bytes()))
    }

    /// The filter may let a text through that holds no pattern, but must never stop one
    /// that holds a pattern, whatever the sample it was built from.
    #[test]
    fn never_stops_a_text_that_holds_a_pattern() {
        let patterns: Vec<String> = ["select ", "${jndi:", "=${", "={{", "$", "ab", "/etc/passwd", "union%20select", "cmd.exe"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut seed = 0x1234_5678_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"abcdeflmnoprstuxy%2f$={ /.:";
        // A sample of plain text without the rare bytes, so that most texts are filtered out.
        let texts: Vec<Vec<u8>> =
            (0..200).map(|_| (0..60).map(|_| b"get /owa/auth.owa 200 mozilla"[(next() % 29) as usize]).collect()).collect();
        let sample: Vec<&[u8]> = texts.iter().map(|t| &t[..]).collect();
        let filter = GramFilter::new(&patterns, &sample).expect("a selective filter");
        let mut stopped = 0;
        for round in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut hay: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            if round % 3 == 0 {
                let p = &patterns[(next() % patterns.len() as u64) as usize];
                let at = (next() % (hay.len() as u64 + 1)) as usize;
                hay.splice(at..at, p.bytes());
            }
            let holds = contains_any(&patterns, &hay);
            let passes = filter.may_match(&hay);
            assert!(passes || !holds, "stopped {:?}", String::from_utf8_lossy(&hay));
            stopped += usize::from(!passes);
        }
        assert!(stopped > 0, "the filter stopped nothing");
    }

    #[test]
    fn a_filter_that_would_pass_most_texts_is_not_built() {
        let patterns: Vec<String> = vec!["get ".into()];
        let sample: [&[u8]; 4] = [b"get /a", b"get /b", b"get /c", b"post /d"];
        assert!(GramFilter::new(&patterns, &sample).is_none());
        assert!(GramFilter::new(&[String::new()], &[b"x"]).is_none());
    }

    /// The sample keeps whole texts (values joined by NUL inside them), the newest, and
    /// within its bound.
    #[test]
    fn the_sample_keeps_the_newest_whole_texts() {
        let mut sample = Sample::default();
        for i in 0..(SAMPLE_EVERY as usize * 4000) {
            let text = format!("text {i}\0value {i}\0{}", "x".repeat(i % 300));
            sample.offer(text.as_bytes());
        }
        let texts = sample.texts();
        assert!(sample.bytes.len() <= SAMPLE_BYTES + SAMPLE_TEXT_MAX, "{}", sample.bytes.len());
        assert!(texts.len() > 100);
        for t in &texts {
            let s = std::str::from_utf8(t).unwrap();
            let n: usize = s.strip_prefix("text ").and_then(|r| r.split('\0').next()).and_then(|n| n.parse().ok()).expect(s);
            assert!(s.starts_with(&format!("text {n}\0value {n}\0")), "{s}");
        }
        let last = std::str::from_utf8(texts[texts.len() - 1]).unwrap();
        assert!(last.starts_with(&format!("text {}\0", SAMPLE_EVERY as usize * 3999)), "{last}");
    }

    #[test]
    fn the_rarest_window_in_the_sample_is_chosen() {
        let patterns: Vec<String> = vec!["/ecp/ddi".into()];
        let sample: [&[u8]; 5] = [b"/ecp/a", b"/ecp/b", b"/ecp/c", b"/owa/d", b"/owa/e"];
        let filter = GramFilter::new(&patterns, &sample).expect("a selective filter");
        assert!(!filter.may_match(b"/ecp/x"));
        assert!(filter.may_match(b"/ecp/ddi"));
    }
}

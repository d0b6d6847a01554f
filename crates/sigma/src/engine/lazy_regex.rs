//! A rule's regex, compiled the first time it is needed into a forward-only matcher.
//!
//! A rule's regex only ever answers "does this value match", so it is compiled to one
//! forward Thompson NFA, searched by a lazy DFA (with a literal prefilter where the regex
//! has prefixes), and by a PikeVM over the same NFA when the lazy DFA gives up (a Unicode
//! word boundary beside a non-ASCII byte, or a cache it keeps refilling). A full `regex`
//! also compiles a reverse NFA, to report where a match starts: for `\w{1,64}`, the
//! larger half of the compile time.

use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::OnceLock;

use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::nfa::thompson::pikevm::{Cache as PikeCache, PikeVM};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{Input, MatchKind};

/// Limit on the NFA and on each lazy DFA cache of a regex compiled from a rule (hostile
/// rules must not exhaust memory).
pub(super) const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// A rule's regular expression (written with `re`, or a glob the automata cannot
/// answer), compiled the first time a value is tested against it: most regexes never run
/// on a given input, and compiling all of them up front was a sixth of start-up. Syntax
/// is checked when the rule set compiles, and so is the size of any regex that might
/// outgrow the limit, so a rule with a bad regex still fails to load.
pub(crate) struct LazyRegex {
    pub(super) pattern: String,
    /// Literals every match starts with (lower-cased), if a small set: see `regex_prefixes`.
    pub(super) prefixes: Option<Vec<String>>,
    compiled: OnceLock<Result<Matcher, String>>,
}

impl LazyRegex {
    pub(super) fn new(pattern: String, prefixes: Option<Vec<String>>) -> LazyRegex {
        LazyRegex { pattern, prefixes, compiled: OnceLock::new() }
    }

    pub(super) fn is_match(&self, value: &str) -> bool {
        match self.compile_now() {
            Ok(re) => re.is_match(value),
            Err(_) => false,
        }
    }

    pub(super) fn compile_now(&self) -> &Result<Matcher, String> {
        self.compiled.get_or_init(|| Matcher::new(&self.pattern))
    }

    /// Why the regex could not be compiled when first used, if it could not.
    pub(super) fn failure(&self) -> Option<&str> {
        match self.compiled.get() {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

type Caches = (Option<DfaCache>, PikeCache);
type NewCaches = Box<dyn Fn() -> Caches + Send + Sync + UnwindSafe + RefUnwindSafe>;

/// A compiled regex that answers whether a value matches anywhere in it.
pub(super) struct Matcher {
    dfa: Option<DFA>,
    pikevm: PikeVM,
    /// Each thread's search state (one in use per thread at a time).
    caches: Pool<Caches, NewCaches>,
}

impl Matcher {
    /// Compiles `pattern` with the `regex` crate's default syntax (Unicode on).
    pub(super) fn new(pattern: &str) -> Result<Matcher, String> {
        let message = |e: &dyn std::fmt::Display| e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT)).which_captures(WhichCaptures::Implicit))
            .build(pattern)
            .map_err(|e| match e.size_limit() {
                Some(limit) => format!("compiled regex exceeds size limit of {limit} bytes"),
                None => message(&e),
            })?;
        let pikevm = PikeVM::new_from_nfa(nfa.clone()).map_err(|e| message(&e))?;
        let prefilter = regex_syntax::ParserBuilder::new()
            .build()
            .parse(pattern)
            .ok()
            .and_then(|hir| Prefilter::from_hir_prefix(MatchKind::LeftmostFirst, &hir));
        // As the `regex` crate configures its lazy DFA: give up (and use the PikeVM) when
        // the cache is cleared often while making little progress.
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .prefilter(prefilter)
                    .cache_capacity(REGEX_SIZE_LIMIT)
                    .unicode_word_boundary(true)
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa)
            .ok();
        let (for_dfa, for_pikevm) = (dfa.clone(), pikevm.clone());
        let new_caches: NewCaches = Box::new(move || (for_dfa.as_ref().map(DfaCache::new), for_pikevm.create_cache()));
        Ok(Matcher { dfa, pikevm, caches: Pool::new(new_caches) })
    }

    pub(super) fn is_match(&self, value: &str) -> bool {
        let mut caches = self.caches.get();
        let (dfa_cache, pike_cache) = &mut *caches;
        let input = Input::new(value).earliest(true);
        if let (Some(dfa), Some(cache)) = (&self.dfa, dfa_cache.as_mut())
            && let Ok(found) = dfa.try_search_fwd(cache, &input)
        {
            return found.is_some();
        }
        self.pikevm.is_match(pike_cache, input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matcher answers as the `regex` crate does, on the shapes rules use: Unicode
    /// classes and word boundaries (where the lazy DFA gives up on non-ASCII text),
    /// anchors, case-insensitivity, prefixes, repetitions and empty values.
    #[test]
    fn a_matcher_answers_as_the_regex_crate_does() {
        let patterns = [
            r"-k\s\w{1,64}(?:\s?(?:-p|-s))?",
            r"\bcmd\b",
            r"(?i)^powershell.*-enc",
            r"(?si)^.*>.C:\\Temp\\.*$",
            r"\\[^\\]{1,256}$",
            r"^$",
            r"[A-Z]{3,}\d+",
            r"é+\b",
            r"(?i)(invoke|iex)\s*\(",
            r"a|b|c",
        ];
        let values = [
            "",
            "cmd /c whoami",
            "xcmd",
            "-k netsvcs -p",
            "-k ÄÖÜéé -s",
            "POWERSHELL -ENC abc",
            "c:\\users\\a\\appdata\\x.exe",
            "1>\\C:\\Temp\\x",
            "ABC123",
            "é",
            "ééé ",
            "caféé",
            "IEX (new-object)",
            "日本語 cmd 日本",
            "zzz",
        ];
        for p in patterns {
            let ours = Matcher::new(p).expect("compiles");
            let theirs = regex::Regex::new(p).expect("compiles");
            for v in values {
                assert_eq!(ours.is_match(v), theirs.is_match(v), "{p:?} on {v:?}");
            }
        }
    }

    #[test]
    fn a_regex_over_the_size_limit_is_an_error() {
        let e = Matcher::new("a{300000}").err().expect("too big");
        assert!(e.contains("exceeds size limit"), "{e}");
    }
}

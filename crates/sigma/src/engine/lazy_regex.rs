//! A rule's regex, compiled the first time it is needed into a forward-only matcher.
//!
//! A rule's regex only ever answers "does this value match", so it is compiled to one
//! forward Thompson NFA, searched by a lazy DFA (with a literal prefilter where the regex
//! has prefixes), and by a PikeVM over the same NFA when the lazy DFA gives up (a Unicode
//! word boundary beside a non-ASCII byte, or a cache it keeps refilling). A full `regex`
//! also compiles a reverse NFA, to report where a match starts: for `\w{1,64}`, the
//! larger half of the compile time.
//!
//! Most values are ASCII, and on ASCII text a regex's classes (`\w`, `.`, `[^"]`,
//! case-insensitive letters) only ever meet their ASCII members. So an ASCII value is
//! tested with the regex whose classes are cut to those members, whose NFA is a fraction
//! of the size (`.{1000,}`: 10 ms to compile with Unicode, well under one without), and
//! the Unicode form is compiled only when a value that is not ASCII comes. One class
//! repeated (`.{1000,}`, a rule's length test) is not searched at all on ASCII values: a
//! count of the bytes in the class answers. Either form is compiled without what may follow
//! the last part every match needs (see [`for_is_match`]).

use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::OnceLock;

use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::nfa::thompson::pikevm::{Cache as PikeCache, PikeVM};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::{Capture, Class, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look, Repetition};

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
    /// The regex as it acts on ASCII values.
    ascii: OnceLock<AsciiForm>,
}

/// A regex cut to what it can match in ASCII text (see [`ascii_only`]).
enum AsciiForm {
    /// It needs a character that is not ASCII (`(?i)Ԝ`, the homoglyph rules' letters), so
    /// no ASCII value matches, and none is searched.
    Never,
    /// It is one class repeated at least `min` times (`.{1000,}`, `.{150}`: a length
    /// test): a value matches if it has a run of that many bytes of the class. As an
    /// automaton it is a chain of `min` states, which its lazy DFA builds anew on every
    /// long value (a third of a millisecond each).
    Run {
        class: Box<[bool; 128]>,
        min: usize,
    },
    Search(Box<Matcher>),
    /// The cut regex did not compile: ASCII values are tested by the whole regex.
    Unusable,
}

impl LazyRegex {
    pub(super) fn new(pattern: String, prefixes: Option<Vec<String>>) -> LazyRegex {
        LazyRegex { pattern, prefixes, compiled: OnceLock::new(), ascii: OnceLock::new() }
    }

    pub(super) fn is_match(&self, value: &str) -> bool {
        if value.is_ascii()
            && let Some(answer) = self.ascii.get_or_init(|| Matcher::ascii(&self.pattern)).is_match(value)
        {
            return answer;
        }
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

impl AsciiForm {
    /// The answer for an ASCII value, or None if the whole regex must give it.
    fn is_match(&self, value: &str) -> Option<bool> {
        match self {
            AsciiForm::Never => Some(false),
            AsciiForm::Run { class, min } => {
                let mut run = 0;
                for &b in value.as_bytes() {
                    if class.get(usize::from(b)).copied().unwrap_or(false) {
                        run += 1;
                        if run >= *min {
                            return Some(true);
                        }
                    } else {
                        run = 0;
                    }
                }
                Some(false)
            }
            AsciiForm::Search(m) => Some(m.is_match(value)),
            AsciiForm::Unusable => None,
        }
    }
}

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
        let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).map_err(|e| message(&e))?;
        Matcher::from_hir(&for_is_match(&hir), true)
    }

    /// Compiles `pattern` for ASCII values only: its classes cut to their ASCII members and
    /// its Unicode word boundaries made ASCII ones, which on ASCII text is the same test
    /// (case-insensitive letters were already made classes by the parser, so `(?i)k` keeps
    /// `K` and `k`).
    fn ascii(pattern: &str) -> AsciiForm {
        let Ok(hir) = regex_syntax::ParserBuilder::new().build().parse(pattern) else { return AsciiForm::Unusable };
        let ascii = ascii_only(&for_is_match(&hir));
        if !can_match(&ascii) {
            return AsciiForm::Never;
        }
        if let Some((class, min)) = run_of_class(&ascii) {
            return AsciiForm::Run { class, min };
        }
        match Matcher::from_hir(&ascii, ascii.properties().is_utf8()) {
            Ok(m) => AsciiForm::Search(Box::new(m)),
            Err(_) => AsciiForm::Unusable,
        }
    }

    fn from_hir(hir: &Hir, utf8: bool) -> Result<Matcher, String> {
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().utf8(utf8).nfa_size_limit(Some(REGEX_SIZE_LIMIT)).which_captures(WhichCaptures::Implicit))
            .build_from_hir(hir)
            .map_err(|e| match e.size_limit() {
                Some(limit) => format!("compiled regex exceeds size limit of {limit} bytes"),
                None => message(&e),
            })?;
        let pikevm = PikeVM::new_from_nfa(nfa.clone()).map_err(|e| message(&e))?;
        let prefilter = Prefilter::from_hir_prefix(MatchKind::LeftmostFirst, hir);
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

/// `hir` as it acts on ASCII text, without the non-ASCII members of its classes.
fn ascii_only(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Literal(l) if !l.0.is_ascii() => Hir::fail(),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(Class::Bytes(_)) => hir.clone(),
        HirKind::Class(Class::Unicode(c)) => {
            let mut c = c.clone();
            c.intersect(&ClassUnicode::new([ClassUnicodeRange::new('\0', '\x7F')]));
            match c.to_byte_class() {
                Some(bytes) => Hir::class(Class::Bytes(bytes)),
                None => Hir::class(Class::Unicode(c)),
            }
        }
        HirKind::Look(look) => Hir::look(match look {
            Look::WordUnicode => Look::WordAscii,
            Look::WordUnicodeNegate => Look::WordAsciiNegate,
            Look::WordStartUnicode => Look::WordStartAscii,
            Look::WordEndUnicode => Look::WordEndAscii,
            Look::WordStartHalfUnicode => Look::WordStartHalfAscii,
            Look::WordEndHalfUnicode => Look::WordEndHalfAscii,
            other => *other,
        }),
        HirKind::Repetition(r) => Hir::repetition(Repetition { sub: Box::new(ascii_only(&r.sub)), ..r.clone() }),
        HirKind::Capture(c) => Hir::capture(Capture { sub: Box::new(ascii_only(&c.sub)), ..c.clone() }),
        HirKind::Concat(v) => Hir::concat(v.iter().map(ascii_only).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(ascii_only).collect()),
    }
}

/// Whether `hir` matches some text: not if a class or literal it needs was cut to nothing.
/// (regex-syntax's `minimum_len` is None for `[]*` too, which matches the empty string.)
fn can_match(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Look(_) => true,
        HirKind::Class(Class::Unicode(c)) => !c.ranges().is_empty(),
        HirKind::Class(Class::Bytes(c)) => !c.ranges().is_empty(),
        HirKind::Repetition(r) => r.min == 0 || can_match(&r.sub),
        HirKind::Capture(c) => can_match(&c.sub),
        HirKind::Concat(v) => v.iter().all(can_match),
        HirKind::Alternation(v) => v.iter().any(can_match),
    }
}

/// `hir` as far as a search that asks only whether there is a match needs it: what may
/// follow the last part every match needs (a trailing optional part, the copies of a
/// trailing repetition past its least count) is dropped. Any match has a prefix that
/// matches what is left, and a match of what is left is a match of the whole with the
/// dropped part empty or repeated least. `-k\s\w{1,64}(?:\s?(?:-p|-s))?` becomes
/// `-k\s\w`: with Unicode `\w`, one class instead of sixty-four (compiling it took 7 ms).
/// An anchor or word boundary at the end stops the cut.
fn for_is_match(hir: &Hir) -> Hir {
    shortest_prefix(hir).unwrap_or_else(Hir::empty)
}

/// [`for_is_match`] of one part: `None` if it can match the empty string (and so, at the
/// end, can be dropped).
fn shortest_prefix(hir: &Hir) -> Option<Hir> {
    match hir.kind() {
        HirKind::Empty => None,
        HirKind::Repetition(r) if r.min == 0 => None,
        HirKind::Repetition(r) => Some(Hir::repetition(Repetition { min: r.min, max: Some(r.min), greedy: r.greedy, sub: r.sub.clone() })),
        HirKind::Capture(c) => {
            shortest_prefix(&c.sub).map(|sub| Hir::capture(Capture { index: c.index, name: c.name.clone(), sub: Box::new(sub) }))
        }
        HirKind::Concat(parts) => {
            let mut parts = parts.clone();
            while let Some(last) = parts.pop() {
                if let Some(kept) = shortest_prefix(&last) {
                    parts.push(kept);
                    return Some(Hir::concat(parts));
                }
            }
            None
        }
        HirKind::Alternation(alternatives) if alternatives.iter().any(|a| shortest_prefix(a).is_none()) => None,
        _ => Some(hir.clone()),
    }
}

/// The class and the least count, if `hir` is one class of ASCII bytes repeated at least
/// once (of any greedy or lazy repetition, with or without a most): for "is there a match
/// anywhere", a run of `min` bytes of the class, whatever the most.
fn run_of_class(hir: &Hir) -> Option<(Box<[bool; 128]>, usize)> {
    let HirKind::Repetition(r) = hir.kind() else { return None };
    let HirKind::Class(Class::Bytes(c)) = r.sub.kind() else { return None };
    let min = usize::try_from(r.min).ok().filter(|&m| m >= 1)?;
    if r.max.is_some_and(|max| max < r.min) {
        return None;
    }
    let mut class = Box::new([false; 128]);
    for range in c.ranges() {
        for b in range.start()..=range.end() {
            *class.get_mut(usize::from(b))? = true;
        }
    }
    Some((class, min))
}

/// An error's last line (the `regex` crates put the pattern and a caret above it).
pub(super) fn message(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().last().unwrap_or("invalid").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cutting what may follow the last needed part never changes whether a value has a
    /// match: each shape of trailing part, against the `regex` crate on every short string
    /// over an alphabet with a letter outside ASCII, and the cut is made where it pays.
    #[test]
    fn a_regex_cut_for_is_match_matches_what_the_whole_does() {
        let patterns = [
            r"-k\s\w{1,64}(?:\s?(?:-p|-s))?",
            r"ab{2,}",
            r"ab{2,3}?",
            r"a(?:bc)?",
            r"a(b|c|)",
            r"a(b|c)*",
            r"x(a{1,3}b?)",
            r"a{2,}$",
            r"a\b",
            r"(?:a\s?)+",
            r"a?",
            r"(?:ab)?b*",
            r"\w{2,}é?",
            r"(a|b)(a|)+",
            r"(?m)a.*$",
        ];
        let alphabet = ['a', 'b', 'c', 'x', ' ', 'é', '-'];
        let mut values = vec![String::new()];
        for len in 1..=4u32 {
            for n in 0..alphabet.len().pow(len) {
                let mut n = n;
                let mut v = String::new();
                for _ in 0..len {
                    v.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                values.push(v);
            }
        }
        for p in patterns {
            let whole = regex::Regex::new(p).unwrap();
            let lazy = LazyRegex::new(p.to_string(), None);
            for v in &values {
                assert_eq!(lazy.is_match(v), whole.is_match(v), "{p:?} on {v:?}");
            }
        }
        let cut = |p: &str| for_is_match(&regex_syntax::ParserBuilder::new().build().parse(p).unwrap()).to_string();
        assert_eq!(cut(r"(?-u)-k\s\w{1,64}(?:\s?(?:-p|-s))?"), cut(r"(?-u)-k\s\w"));
        assert_eq!(cut(r"ab{2,}"), cut(r"ab{2}"));
        assert_eq!(cut(r"a{2,}$"), cut(r"a{2,}$"), "an anchor at the end stops the cut");
        assert_eq!(cut(r"a?"), cut(r""));
    }

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
            let lazy = LazyRegex::new(p.to_string(), None);
            let theirs = regex::Regex::new(p).expect("compiles");
            for v in values {
                assert_eq!(ours.is_match(v), theirs.is_match(v), "{p:?} on {v:?}");
                assert_eq!(lazy.is_match(v), theirs.is_match(v), "{p:?} on {v:?} (ASCII form on ASCII values)");
            }
        }
    }

    /// On ASCII text, a regex compiled with Unicode off answers as with Unicode on:
    /// every class, flag and boundary, on every short ASCII string over a small alphabet.
    #[test]
    fn ascii_values_get_the_answers_of_the_unicode_regex() {
        let patterns = [
            r"\w+\s\d",
            r"\W\S\D",
            r"\bk\b",
            r"\B.\B",
            r"(?i)k[a-z]S",
            r"(?i)[^k]s",
            r"[[:alpha:]]\d",
            r"(?m)^a$",
            r"a.{2,}b",
            r"(?s)a.b",
            r"[^\x00-\x60]{2}",
            // One class repeated: a run of bytes (see `AsciiForm::Run`).
            r".{2,}",
            r".{3}",
            r"[a-k]{2,3}",
            r"(?i)k{2}",
            r"\S+?",
            r"(?s).{3,}",
            // Literals and classes of letters outside ASCII, alone or beside others.
            "(?i)kА",
            "a|Ж",
            "(?i)sЖ*",
            "Ж?k",
            r"[Ж\d]",
        ];
        let alphabet = ['a', 'b', 'k', 'K', 's', 'S', '1', ' ', '\n', '_', '-', '\t'];
        let mut values = vec![String::new()];
        for len in 1..=3 {
            let mut idx = vec![0usize; len];
            loop {
                values.push(idx.iter().map(|&i| alphabet[i]).collect());
                let mut k = 0;
                while k < len {
                    idx[k] += 1;
                    if idx[k] < alphabet.len() {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
            }
        }
        for p in patterns {
            let ascii = Matcher::ascii(p);
            assert!(!matches!(ascii, AsciiForm::Unusable), "{p:?} compiles without Unicode");
            let unicode = Matcher::new(p).expect("compiles");
            for v in &values {
                assert_eq!(ascii.is_match(v), Some(unicode.is_match(v)), "{p:?} on {v:?}");
            }
        }
        // Letters outside ASCII that fold to ASCII ones (the Kelvin sign to k, the long s
        // to s) keep their ASCII partners; classes of only other letters match nothing.
        for (p, v, want) in
            [("(?i)\u{212A}", "k", true), ("(?i)ſ", "S", true), (r"\p{Cyrillic}", "a", false), ("(?si)^.*А.*$", "path", false)]
        {
            assert_eq!(Matcher::ascii(p).is_match(v), Some(want), "{p:?} on {v:?}");
            assert_eq!(regex::Regex::new(p).expect("compiles").is_match(v), want, "{p:?} on {v:?}");
        }
        let lazy = LazyRegex::new("(?si)^.*А.*$".to_string(), None);
        assert!(lazy.is_match("pАth") && !lazy.is_match("path"));
    }

    /// A regex that needs a character outside ASCII (the homoglyph rules' `contains: А`)
    /// is known to match no ASCII value without searching one; one that can match without
    /// it is searched.
    #[test]
    fn a_regex_needing_a_letter_outside_ascii_searches_no_ascii_value() {
        for p in ["(?si)^.*А.*$", "(?si)^.*Ⓜ️.*$", r"\p{Cyrillic}", "(?i)kЖ", "Ж|(?i)Ԝ"] {
            assert!(matches!(Matcher::ascii(p), AsciiForm::Never), "{p:?}");
        }
        for p in ["Ж*k", "Ж|k", "(?i)\u{212A}", ".", ""] {
            assert!(matches!(Matcher::ascii(p), AsciiForm::Search(_)), "{p:?}");
        }
        // A length test is a count of bytes, without an automaton.
        for (p, want) in [(".{1000,}", 1000), (".{150}", 150), (r"\w{3,5}", 3)] {
            assert!(matches!(Matcher::ascii(p), AsciiForm::Run { min, .. } if min == want), "{p:?}");
        }
        for p in [".*", "a.{3}", "(.{3})", ".{3}$"] {
            assert!(!matches!(Matcher::ascii(p), AsciiForm::Run { .. }), "{p:?}");
        }
        let long = LazyRegex::new(".{1000,}".to_string(), None);
        let line = "a".repeat(999);
        assert!(!long.is_match(&line) && long.is_match(&format!("{line}b")));
        assert!(!long.is_match(&format!("{line}\n{line}")), "`.` does not cross a line end");
    }

    #[test]
    fn a_regex_over_the_size_limit_is_an_error() {
        let e = Matcher::new("a{300000}").err().expect("too big");
        assert!(e.contains("exceeds size limit"), "{e}");
    }
}

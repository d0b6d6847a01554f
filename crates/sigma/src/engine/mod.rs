//! The compiled engine: every rule compiled once into shared matchers.
//!
//! Rules are grouped by the event class their log source selects (a [`Selector`]).
//! Within a group every distinct leaf test (field + predicate) exists once, however
//! many rules use it, and all literal leaves on one field share one Aho-Corasick
//! automaton (ASCII case-insensitive, overlapping matches), so a field value is
//! scanned once for thousands of patterns. Whatever an automaton cannot answer
//! (regexes, globs, numbers, CIDR, field references, times) is a direct test,
//! gated where possible by a literal the automaton finds first.
//!
//! A group's matchers are built the first time an event of its class is scanned, so a
//! hunt pays only for the groups its input reaches.
//!
//! Scanning an event: find its groups (cached per event class), resolve its field
//! names to field ids once, run each group's field matchers to set leaf bits,
//! then evaluate only the rules that have a set leaf (or that can match with
//! none). Detection is a pure function of (rules, event): a [`Scanner`], one per
//! thread, holds scratch buffers and its keyword filters (see `gram`), which change how
//! often an automaton runs, never what it finds.

mod automaton;
mod compile;
mod gram;
mod lazy_regex;
mod scan;

pub use scan::Scanner;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use portcullis_event::{Event, SourceKind, Timestamp, ValueKind};

use self::automaton::LazyAutomaton;
use self::lazy_regex::LazyRegex;
use crate::expr::Expr;
use crate::loader::RuleSet;
use crate::logsource::{LogsourceTable, Resolution, Selector};
use crate::modifiers::{CmpOp, IpNet, LeafSpec, Pred, TimeUnit};
use crate::pattern::{self, Mode, Shape};
use crate::rule::{Filter, LoadError, Rule};

type FieldId = u32;
/// The rustc "Fx" hash: fast, non-cryptographic, for short keys looked up per event.
type FxBuild = rustc_hash::FxBuildHasher;
pub use rustc_hash::FxHasher;
type LeafId = u32;
const NONE: u32 = u32::MAX;

/// How an automaton hit on a literal decides its leaf.
#[derive(Clone, Copy, Debug)]
enum How {
    Exact,
    Prefix,
    Suffix,
    Contains,
    /// Opens the gate of a direct test (the literal is required for it to match).
    Gate(u32),
}

enum Test {
    Regex(Arc<LazyRegex>),
    Glob(StarGlob),
    /// Any value that is not null.
    Any,
    /// The value is an empty string (not null).
    Empty,
    Cased {
        shape: Shape,
    },
    Cmp {
        op: CmpOp,
        value: f64,
    },
    Cidr(IpNet),
    FieldRef {
        other: FieldId,
        mode: Mode,
        cased: bool,
    },
    Time {
        unit: TimeUnit,
        op: CmpOp,
        value: f64,
    },
}

/// A pattern of literals joined by `*` (ASCII case-insensitive), matched by finding
/// each literal in order: linear time, no regex to compile.
struct StarGlob {
    parts: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

impl StarGlob {
    fn new(toks: &[pattern::Tok]) -> Option<StarGlob> {
        let mut parts = Vec::new();
        for t in toks {
            match t {
                pattern::Tok::Lit(l) if pattern::ascii_fold_is_exact(l) => parts.push(l.to_ascii_lowercase()),
                pattern::Tok::Star => {}
                _ => return None,
            }
        }
        if parts.is_empty() {
            return None;
        }
        Some(StarGlob {
            parts,
            anchored_start: matches!(toks.first(), Some(pattern::Tok::Lit(_))),
            anchored_end: matches!(toks.last(), Some(pattern::Tok::Lit(_))),
        })
    }

    fn matches(&self, value: &str) -> bool {
        let lower = value.to_ascii_lowercase();
        let hay = lower.as_bytes();
        let mut pos = 0;
        let last = self.parts.len() - 1;
        for (i, part) in self.parts.iter().enumerate() {
            let p = part.as_bytes();
            if i == 0 && self.anchored_start {
                if !hay.starts_with(p) {
                    return false;
                }
                pos = p.len();
            } else if i == last && self.anchored_end {
                return hay.len() >= pos + p.len() && hay.ends_with(p);
            } else {
                match memchr::memmem::find(&hay[pos..], p) {
                    Some(at) => pos += at + p.len(),
                    None => return false,
                }
            }
        }
        true
    }
}

struct Direct {
    leaf: LeafId,
    /// Index into the gate bits, if this test only runs after its literal was seen.
    gate: Option<u32>,
    test: Test,
}

/// Every leaf on one field (or, for keywords, on every field).
#[derive(Default)]
struct FieldMatcher {
    field: FieldId,
    /// Lower-cased whole values → the leaves they set (`field: value` without wildcards).
    exact: HashMap<Box<[u8]>, Vec<LeafId>, FxBuild>,
    ac: Option<Arc<LazyAutomaton>>,
    /// The automaton's patterns until they are handed to `ac`.
    patterns: Vec<String>,
    /// Per automaton pattern: the leaves it decides.
    hits: Vec<Vec<(LeafId, How)>>,
    direct: Vec<Direct>,
    /// For keywords: those no rule is indexed under, searched only when a candidate rule asks.
    on_demand: Option<OnDemand>,
    /// Leaves true when the field is absent (`null`, `exists: false`).
    when_absent: Vec<LeafId>,
    /// Leaves true when the field is present (`exists: true`).
    when_present: Vec<LeafId>,
    /// Leaves true when the field is absent or all its values are null (`null`).
    when_null: Vec<LeafId>,
}

/// Keywords that no rule is indexed under (`POST` and `200` beside an exploit's path).
/// They are searched for by their own automaton, over the keyword text, the first time a
/// candidate rule asks for one of their leaves in an event; each of `leaves` is then decided.
struct OnDemand {
    ac: Option<Arc<LazyAutomaton>>,
    /// The automaton's patterns until they are handed to `ac`.
    patterns: Vec<String>,
    hits: Vec<Vec<(LeafId, How)>>,
    leaves: Vec<LeafId>,
}

/// A leaf decided on demand, when a candidate rule asks for it.
enum Lazy {
    /// A test on each value of the field (on every value and the raw line for keywords,
    /// `NONE`) until one passes.
    Test(FieldId, Test),
    /// A search with the keywords' [`OnDemand`] automaton.
    Keywords,
}

struct GroupRule {
    rule: u32,
    expr: Expr<LeafId>,
    /// The expression as a flat short-circuit program, if it has no `N of` (see [`Op`]).
    program: Option<Vec<Op>>,
}

/// One step of a compiled rule: a single accumulator, jumps for short-circuiting.
#[derive(Clone, Copy, Debug)]
enum Op {
    Leaf(LeafId),
    Not,
    Set(bool),
    JumpIfFalse(u32),
    JumpIfTrue(u32),
}

/// One group's matchers and rules, built when an event of its class is first scanned.
struct Group {
    fields: Vec<FieldMatcher>,
    /// Field id → index into `fields`, or NONE.
    matcher_of: Vec<u32>,
    /// Matchers with `null`/`exists` leaves, which must also run when the field is absent.
    absence_tests: Vec<u32>,
    keywords: Option<FieldMatcher>,
    n_leaves: usize,
    n_gates: usize,
    /// Compressed rows: the group rules that use each leaf.
    leaf_rules_start: Vec<u32>,
    leaf_rules: Vec<u32>,
    rules: Vec<GroupRule>,
    /// Group rules without an indexable trigger (e.g. `not filter`, or only regexes): always evaluated.
    always: Vec<u32>,
    /// Leaves evaluated on demand, only when a candidate rule asks (regexes, numbers,
    /// CIDR, field references, times, and keywords no rule is indexed under).
    lazy: Vec<Lazy>,
    /// Per leaf: index into `lazy`, or NONE for leaves the field scan decides.
    lazy_index: Vec<u32>,
}

/// A rule that compiled but applies to no event Portcullis reads.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unmapped {
    pub rule: usize,
    pub reason: String,
}

/// The compiled rule set. Build once, share across threads, scan with a [`Scanner`].
pub struct Engine {
    pub rules: Vec<Rule>,
    pub unmapped: Vec<Unmapped>,
    /// Rules that parsed but could not be compiled (e.g. a regex the engine rejects).
    pub failed: Vec<LoadError>,
    fields: HashMap<String, FieldId, FxBuild>,
    /// The same numbers by each name as rules write it (after log-source renaming), so
    /// that building a group need not normalise names.
    fields_as_written: HashMap<String, FieldId, FxBuild>,
    groups: Vec<compile::LazyGroup>,
    /// Every distinct regex by its pattern: for building groups, and for
    /// [`Engine::regex_failures`].
    regexes: HashMap<String, Arc<LazyRegex>>,
    /// The literal automata of the groups built so far, by a hash of their pattern sets.
    automata: std::sync::Mutex<HashMap<u128, Vec<Arc<LazyAutomaton>>, FxBuild>>,
}

impl Engine {
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Regexes that passed the checks at load but could not be compiled when first used
    /// (the size estimate let them through): each made its leaf false, so the rules using
    /// it (named here) may have missed or wrongly matched. Empty in practice; reported so
    /// that it is never silent.
    pub fn regex_failures(&self) -> Vec<LoadError> {
        let mut out = Vec::new();
        for re in self.regexes.values() {
            let Some(reason) = re.failure() else { continue };
            for rule in &self.rules {
                let mut leaves = Vec::new();
                rule.detection.leaves(&mut leaves);
                let uses = leaves.iter().any(|l| compile::leaf_regex(&l.pred).as_deref() == Some(re.pattern.as_str()));
                if uses {
                    out.push(LoadError {
                        path: rule.origin.path.to_string(),
                        line: rule.origin.line,
                        reason: format!(
                            "regex `{}` could not be compiled when first used, so it matched nothing: {reason}",
                            compile::abbreviated(&re.pattern)
                        ),
                        needs_placeholder: false,
                    });
                }
            }
        }
        out
    }

    /// The rules (by index) that belong to groups with a non-zero event count.
    pub fn applied_rules(&self, group_events: &[u64]) -> Vec<bool> {
        let mut applied = vec![false; self.rules.len()];
        for (g, n) in self.groups.iter().zip(group_events) {
            if *n > 0 {
                for r in g.rules() {
                    applied[r as usize] = true;
                }
            }
        }
        applied
    }
}

/// Field names compare case-insensitively and without spaces: the Sigma spec names
/// Windows fields like `Source Name` as `SourceName`.
fn normalise_field_name(name: &str, out: &mut String) {
    out.clear();
    out.push_str(name);
    out.make_ascii_lowercase();
    if out.contains(' ') {
        out.retain(|c| c != ' ');
    }
}

#[cfg(test)]
mod tests {
    use super::lazy_regex::Matcher;
    use super::*;
    use crate::pattern::parse_sigma_string;

    /// An engine of these rules (YAML texts).
    fn compiled(rules: &[&str]) -> Engine {
        let mut set = crate::RuleSet::default();
        for (i, r) in rules.iter().enumerate() {
            set.add_text(r, &format!("r{i}.yml"), &Default::default());
        }
        Engine::compile(&set, &crate::LogsourceTable::builtin())
    }

    /// A group is built when an event of its class is first scanned, and only then; what
    /// an engine finds does not depend on which groups were built before.
    #[test]
    fn groups_are_built_when_their_events_come_and_find_the_same() {
        let rules = [
            "title: web shell\nlogsource: {category: webserver}\ndetection:\n  s: {cs-uri-stem|endswith: '.aspx', cs-uri-query|contains: 'cmd='}\n  condition: s\n",
            "title: logon\nlogsource: {product: windows, service: security}\ndetection:\n  s: {EventID: 4624, TargetUserName|contains: admin}\n  condition: s\n",
            "title: process\nlogsource: {product: windows, category: process_creation}\ndetection:\n  s: {CommandLine|contains: ' -enc '}\n  condition: s\n",
        ];
        let web = || {
            let mut e = Event::new(SourceKind::W3c);
            e.log_type = "iis".into();
            e.push_str("cs-uri-stem", "/owa/auth/x.aspx");
            e.push_str("cs-uri-query", "cmd=whoami");
            e
        };
        let logon = || {
            let mut e = Event::new(SourceKind::Windows);
            e.push_str("Channel", "Security");
            e.push_str("EventID", "4624");
            e.push_str("TargetUserName", "Administrator");
            e
        };
        let lazy = compiled(&rules);
        let built = |engine: &Engine| engine.groups.iter().filter(|g| g.is_built()).count();
        assert!(lazy.group_count() >= 3, "{}", lazy.group_count());
        assert_eq!(built(&lazy), 0);
        let mut scanner = lazy.scanner();
        let mut out = Vec::new();
        scanner.scan(&web(), &mut out);
        assert_eq!(out, [0]);
        assert_eq!(built(&lazy), 1, "only the web server group");
        out.clear();
        scanner.scan(&logon(), &mut out);
        assert_eq!(out, [1]);
        let after_logon = built(&lazy);
        assert!(after_logon > 1 && after_logon < lazy.group_count(), "{after_logon}");

        let eager = compiled(&rules);
        eager.build_all_groups();
        assert_eq!(built(&eager), eager.group_count());
        let mut scanner = eager.scanner();
        for (ev, want) in [(logon(), 1), (web(), 0)] {
            out.clear();
            scanner.scan(&ev, &mut out);
            assert_eq!(out, [want]);
        }
    }

    #[test]
    fn star_glob_agrees_with_regex() {
        let patterns = ["a*b", "*a*b*", "ab*ab", "*x*", "a*", "*a*a*a", "abc*abc*c"];
        let values = ["ab", "aab", "ba", "abab", "xx", "a", "aXa", "AaA", "abcabc", "abcabcc", "abcXabcc", ""];
        for p in patterns {
            let toks = parse_sigma_string(p);
            let g = StarGlob::new(&toks).unwrap();
            let re = Matcher::new(&pattern::to_regex(&toks, false)).unwrap();
            for v in values {
                assert_eq!(g.matches(v), re.is_match(v), "pattern {p} value {v}");
            }
        }
    }

    /// A keyword with a wildcard (`select * from`) is tested on each value once the text
    /// holds its literal (`select `); events without the literal skip the values. The
    /// answers are the same whether the event before had the literal or not, and whether or
    /// not another keyword (`''`, which every value holds) is tested on every value.
    #[test]
    fn wildcard_keywords_decide_per_value_whether_or_not_their_literal_is_there() {
        let sql = "title: sql\nlogsource: {category: webserver}\ndetection:\n  keywords: ['select * from']\n  condition: keywords\n";
        let any = "title: any\nlogsource: {category: webserver}\ndetection:\n  keywords: ['']\n  condition: keywords\n";
        for rules in [&[sql][..], &[sql, any][..]] {
            let engine = compiled(rules);
            assert_eq!(engine.rules.len(), rules.len(), "{:?}", engine.failed);
            let title = |i: usize| engine.rules[i].title.clone();
            let mut scanner = engine.scanner();
            let mut sql_matched = |fields: &[(&str, &str)]| {
                let mut e = Event::new(SourceKind::W3c);
                e.log_type = "iis".into();
                for (n, v) in fields {
                    e.push_str(n, v);
                }
                let mut out = Vec::new();
                scanner.scan(&e, &mut out);
                let titles: Vec<String> = out.into_iter().map(title).collect();
                assert_eq!(titles.iter().any(|t| t == "any"), rules.len() == 2);
                titles.iter().any(|t| t == "sql")
            };
            for _ in 0..2 {
                assert!(sql_matched(&[("cs-uri-query", "q=SELECT name FROM users")]));
                assert!(!sql_matched(&[("cs-uri-query", "q=names")]));
                // The literal is in the text, but no one value holds the whole keyword.
                assert!(!sql_matched(&[("cs-uri-query", "q=select name"), ("cs-uri-stem", "/from")]));
                assert!(sql_matched(&[("cs-uri-stem", "/a"), ("cs-uri-query", "q=select a from b")]));
                assert!(!sql_matched(&[("cs-uri-stem", "/select"), ("cs-uri-query", "q=from")]));
            }
        }
    }

    /// Keywords no rule is indexed under (`POST` and `200` beside a rare path) are searched
    /// only when a candidate rule asks: the answers must be those of searching every literal
    /// for every event, here beside rules whose other literals decide on demand too (a
    /// command line beside a rare image, a filter).
    #[test]
    fn literals_searched_on_demand_decide_as_if_always_searched() {
        let rules = [
            "title: all keywords\nlogsource: {product: windows}\ndetection:\n  keywords:\n    '|all': ['POST', '200', '/ecp/DDI/DDIService.svc/SetObject']\n  condition: keywords\n",
            "title: image and command line\nlogsource: {product: windows}\ndetection:\n  img: {Image|endswith: '\\rare-tool.exe'}\n  cli: {CommandLine|contains: ' -x'}\n  condition: img and cli\n",
            "title: filtered\nlogsource: {product: windows}\ndetection:\n  sel: {Image|endswith: '\\other-rare-tool.exe'}\n  filter: {ParentImage|startswith: 'c:\\windows\\'}\n  condition: sel and not filter\n",
            "title: any two characters\nlogsource: {product: windows}\ndetection:\n  keywords: ['??']\n  condition: keywords\n",
        ];
        let engine = compiled(&rules);
        assert_eq!(engine.rules.len(), 4, "{:?}", engine.failed);
        engine.build_all_groups();
        let on_demand = (0..engine.group_count()).flat_map(|g| &engine.group(g).lazy).filter(|l| matches!(l, Lazy::Keywords)).count();
        assert_eq!(on_demand, 1, "`POST` and `200` are searched on demand");
        let title = |i: usize| engine.rules[i].title.clone();
        let mut scanner = engine.scanner();
        let mut matched = |fields: &[(&str, &str)]| {
            let mut e = Event::new(SourceKind::Windows);
            e.push_str("Channel", "Security");
            for (n, v) in fields {
                e.push_str(n, v);
            }
            let mut out = Vec::new();
            scanner.scan(&e, &mut out);
            let mut titles: Vec<String> = out.into_iter().map(title).filter(|t| t != "any two characters").collect();
            titles.sort();
            titles
        };
        let none: Vec<String> = Vec::new();
        assert_eq!(matched(&[("Data", "POST /ecp/ddi/DDIService.svc/SetObject 200")]), ["all keywords"]);
        assert_eq!(matched(&[("Data", "GET /ecp/ddi/DDIService.svc/SetObject 200")]), none);
        assert_eq!(matched(&[("Method", "post"), ("Uri", "/ECP/DDI/DDIService.svc/SetObject"), ("Status", "200")]), ["all keywords"]);
        assert_eq!(matched(&[("Image", "C:\\x\\Rare-Tool.exe"), ("CommandLine", "rare-tool.exe -X")]), ["image and command line"]);
        assert_eq!(matched(&[("Image", "C:\\x\\rare-tool.exe"), ("CommandLine", "rare-tool.exe")]), none);
        assert_eq!(
            matched(&[("Image", "C:\\x\\rare-tool.exe"), ("CommandLine", "a"), ("CommandLine", "b -x")]),
            ["image and command line"]
        );
        assert_eq!(matched(&[("Image", "C:\\x\\rare-tool.exe")]), none);
        assert_eq!(matched(&[("Image", "d:\\other-rare-tool.exe"), ("ParentImage", "C:\\Windows\\explorer.exe")]), none);
        assert_eq!(matched(&[("Image", "d:\\other-rare-tool.exe"), ("ParentImage", "d:\\explorer.exe")]), ["filtered"]);
        // The same values again, now answered from the value cache.
        assert_eq!(matched(&[("Image", "C:\\x\\Rare-Tool.exe"), ("CommandLine", "rare-tool.exe -X")]), ["image and command line"]);
        assert_eq!(matched(&[("Image", "C:\\x\\rare-tool.exe"), ("CommandLine", "rare-tool.exe")]), none);
    }

    /// Events whose reader says they share their names' order ([`Event::set_layout`]) reuse
    /// the last event's field index: the answers must be those of indexing each afresh,
    /// through a change of layout and an event of the same layout with other values.
    #[test]
    fn a_repeated_layout_gives_the_answers_of_indexing_afresh() {
        let rules = [
            "title: uri\nlogsource: {category: webserver}\ndetection:\n  sel: {cs-uri-stem|contains: '/autodiscover'}\n  condition: sel\n",
            "title: status\nlogsource: {category: webserver}\ndetection:\n  sel: {sc-status: 500, cs-method: POST}\n  condition: sel\n",
        ];
        let engine = compiled(&rules);
        assert_eq!(engine.rules.len(), 2, "{:?}", engine.failed);
        let (first, second) = (portcullis_event::new_layout(), portcullis_event::new_layout());
        let event = |layout: u64, names: &[&str], values: &[&str]| {
            let mut e = Event::new(SourceKind::W3c);
            e.log_type.push_str("iis");
            for (n, v) in names.iter().zip(values) {
                e.push_str(n, v);
            }
            e.set_layout(layout);
            e
        };
        let a = ["cs-method", "cs-uri-stem", "sc-status"];
        let b = ["sc-status", "cs-uri-stem", "cs-method", "c-ip"];
        let events = [
            event(first, &a, &["POST", "/autodiscover/x", "500"]),
            event(first, &a, &["GET", "/owa", "500"]),
            event(second, &b, &["500", "/owa", "POST", "10.0.0.1"]),
            event(second, &b, &["200", "/Autodiscover", "POST", "10.0.0.1"]),
            // Unknown layout, the same number of names in another order.
            event(0, &["sc-status", "cs-uri-stem", "cs-method"], &["500", "/x", "POST"]),
            event(first, &a, &["POST", "/x", "500"]),
        ];
        let mut reusing = engine.scanner();
        let mut answers = Vec::new();
        for e in &events {
            let (mut with, mut afresh) = (Vec::new(), Vec::new());
            reusing.scan(e, &mut with);
            let mut plain = e.clone();
            plain.set_layout(0);
            engine.scanner().scan(&plain, &mut afresh);
            assert_eq!(with, afresh, "{e:?}");
            answers.push(with);
        }
        let v: &[&[usize]] = &[&[0, 1], &[], &[1], &[0], &[1], &[1]];
        assert_eq!(answers, v);
        let mut out = Vec::new();
        reusing.scan(&events[2], &mut out);
        assert_eq!(out, [1], "the second layout's own order");
    }

    /// A keyword the automata cannot answer (no literal to look for) is tested on every
    /// value of the event; it used to be tested on none, and so never matched.
    #[test]
    fn a_keyword_without_a_literal_is_tested_on_every_value() {
        let rule = "title: t\nlogsource: {product: windows}\ndetection:\n  keywords: ['??']\n  condition: keywords\n";
        let engine = compiled(&[rule]);
        let mut scanner = engine.scanner();
        let mut e = Event::new(SourceKind::Windows);
        e.push_str("Channel", "Security");
        e.push_str("Data", "ab");
        let mut out = Vec::new();
        scanner.scan(&e, &mut out);
        assert_eq!(out, [0]);
    }

    /// The value cache must give the same answers as matching afresh, including for a field
    /// that repeats within one event and for values seen again in later events.
    #[test]
    fn value_cache_agrees_with_fresh_matching() {
        let rule = "title: t\nlogsource: {product: windows}\ndetection:\n  a: {Data|contains: abc}\n  b: {Data|endswith: zz}\n  condition: a and b\n";
        let engine = compiled(&[rule]);
        let mut scanner = engine.scanner();
        let event = |values: &[&str]| {
            let mut e = Event::new(SourceKind::Windows);
            e.push_str("Channel", "Security");
            for v in values {
                e.push_str("Data", v);
            }
            e
        };
        let cases: [(&[&str], bool); 7] = [
            (&["abcq", "qzz"], true),
            (&["qzz"], false),
            (&["abcq"], false),
            (&["abcq", "abcq"], false),
            (&["abczz"], true),
            (&["qzz", "abcq"], true),
            (&["abcq", "qzz"], true),
        ];
        for round in 0..3 {
            for (values, expect) in cases {
                let mut out = Vec::new();
                scanner.scan(&event(values), &mut out);
                assert_eq!(!out.is_empty(), expect, "round {round}: {values:?}");
            }
        }
    }
}

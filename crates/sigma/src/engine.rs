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
//! Scanning an event: find its groups (cached per event class), resolve its field
//! names to field ids once, run each group's field matchers to set leaf bits,
//! then evaluate only the rules that have a set leaf (or that can match with
//! none). Detection is a pure function of (rules, event): a [`Scanner`] holds
//! only scratch buffers, one per thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use portcullis_event::{Event, SourceKind, Timestamp, ValueKind};
use regex::{Regex, RegexBuilder};

use crate::expr::Expr;
use crate::loader::RuleSet;
use crate::logsource::{LogsourceTable, Resolution, Selector};
use crate::modifiers::{CmpOp, IpNet, LeafSpec, Pred, TimeUnit};
use crate::par::par_map;
use crate::pattern::{self, Mode, Shape};
use crate::rule::{LoadError, Rule};

type FieldId = u32;
type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// A fast non-cryptographic hasher (the rustc "Fx" hash) for short keys looked up per event.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
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
    Regex(Regex),
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
    /// Leaves true when the field is absent (`null`, `exists: false`).
    when_absent: Vec<LeafId>,
    /// Leaves true when the field is present (`exists: true`).
    when_present: Vec<LeafId>,
    /// Leaves true when the field is absent or all its values are null (`null`).
    when_null: Vec<LeafId>,
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

/// Compiles an expression into ops; None if it uses `N of` (evaluated as a tree).
fn compile_program(e: &Expr<LeafId>) -> Option<Vec<Op>> {
    fn emit(e: &Expr<LeafId>, ops: &mut Vec<Op>) -> Option<()> {
        match e {
            Expr::Leaf(l) => ops.push(Op::Leaf(*l)),
            Expr::Not(c) => {
                emit(c, ops)?;
                ops.push(Op::Not);
            }
            Expr::Const(b) => ops.push(Op::Set(*b)),
            Expr::And(v) | Expr::Or(v) => {
                let and = matches!(e, Expr::And(_));
                let mut jumps = Vec::new();
                for (i, c) in v.iter().enumerate() {
                    emit(c, ops)?;
                    if i + 1 < v.len() {
                        jumps.push(ops.len());
                        ops.push(if and { Op::JumpIfFalse(0) } else { Op::JumpIfTrue(0) });
                    }
                }
                if v.is_empty() {
                    ops.push(Op::Set(and));
                }
                let end = ops.len() as u32;
                for j in jumps {
                    ops[j] = if and { Op::JumpIfFalse(end) } else { Op::JumpIfTrue(end) };
                }
            }
            Expr::AtLeast(..) => return None,
        }
        Some(())
    }
    let mut ops = Vec::new();
    emit(e, &mut ops)?;
    Some(ops)
}

struct Group {
    selector: Selector,
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
    /// CIDR, field references, times): `None` for leaves the field scan decides.
    lazy: Vec<(FieldId, Test)>,
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
    groups: Vec<Group>,
}

/// Pattern sets up to this many bytes are searched with a DFA.
const DFA_PATTERN_BYTES: usize = 16 * 1024;

/// Limits on regexes compiled from rules (hostile rules must not exhaust memory).
const REGEX_SIZE_LIMIT: usize = 8 << 20;

impl Engine {
    /// Compiles a rule set. Filters are applied to the rules they name.
    pub fn compile(set: &RuleSet, table: &LogsourceTable) -> Engine {
        let mut rules: Vec<Rule> = set.rules.clone();
        for f in &set.filters {
            for r in rules.iter_mut() {
                let named =
                    f.rules.iter().any(|n| r.id.as_deref() == Some(n.as_str()) || r.name.as_deref() == Some(n.as_str()) || r.title == *n);
                if named {
                    let det = std::mem::replace(&mut r.detection, Expr::Const(false));
                    r.detection = Expr::And(vec![det, Expr::not(f.detection.clone())]);
                }
            }
        }
        let mut b = Builder::default();
        let mut patterns: Vec<String> = Vec::new();
        for r in &rules {
            let mut leaves = Vec::new();
            r.detection.leaves(&mut leaves);
            patterns.extend(leaves.iter().filter_map(|l| match &l.pred {
                Pred::Re { pattern } => Some(pattern.clone()),
                _ => None,
            }));
        }
        patterns.sort();
        patterns.dedup();
        let compiled = par_map(patterns.clone(), |p| build_regex(&p));
        for (p, re) in patterns.into_iter().zip(compiled) {
            match re {
                Ok(re) => {
                    b.regexes.insert(p, re);
                }
                Err(e) => {
                    b.bad_regexes.insert(p, e);
                }
            }
        }
        let mut unmapped = Vec::new();
        let mut failed = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            match table.resolve(&rule.logsource) {
                Resolution::Unmapped(reason) => unmapped.push(Unmapped { rule: ri, reason }),
                Resolution::Variants(variants) => {
                    for v in variants {
                        let mut parts: Vec<Expr<LeafSpec>> = v
                            .conditions
                            .iter()
                            .map(|(field, values)| {
                                Expr::or(
                                    values
                                        .iter()
                                        .map(|val| {
                                            Expr::Leaf(LeafSpec {
                                                field: Some(field.clone()),
                                                pred: Pred::Str { toks: vec![pattern::Tok::Lit(val.clone())], cased: false },
                                            })
                                        })
                                        .collect(),
                                )
                            })
                            .collect();
                        parts.push(rule.detection.clone());
                        let expr = Expr::and(parts);
                        if let Err(reason) = b.add(ri as u32, &v.selector, expr) {
                            failed.push(LoadError {
                                path: rule.origin.path.to_string(),
                                line: rule.origin.line,
                                reason,
                                needs_placeholder: false,
                            });
                            break;
                        }
                    }
                }
            }
        }
        let (fields, groups) = b.finish();
        Engine { rules, unmapped, failed, fields, groups }
    }

    pub fn scanner(&self) -> Scanner<'_> {
        Scanner {
            engine: self,
            dispatch: HashMap::default(),
            key: String::new(),
            event_groups: Vec::new(),
            lower: String::new(),
            slot_gen: vec![0; self.fields.len()],
            slot_first: vec![NONE; self.fields.len()],
            slot_last: vec![NONE; self.fields.len()],
            next_same: Vec::new(),
            field_ids: Vec::new(),
            shapes: HashMap::default(),
            event_gen: 0,
            bits: Vec::new(),
            gates: Vec::new(),
            lazy_done: Vec::new(),
            set_leaves: Vec::new(),
            rule_stamp: Vec::new(),
            rule_gen: 0,
            candidates: Vec::new(),
            folded: Vec::new(),
            keyword_text: Vec::new(),
            keyword_text_gen: 0,
            hits: Vec::new(),
            matched_stamp: vec![0; self.rules.len()],
            match_gen: 0,
            value_cache: Vec::new(),
            recording: None,
            group_events: vec![0; self.groups.len()],
        }
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The rules (by index) that belong to groups with a non-zero event count.
    pub fn applied_rules(&self, group_events: &[u64]) -> Vec<bool> {
        let mut applied = vec![false; self.rules.len()];
        for (g, n) in self.groups.iter().zip(group_events) {
            if *n > 0 {
                for r in &g.rules {
                    applied[r.rule as usize] = true;
                }
            }
        }
        applied
    }
}

#[derive(Default)]
struct GroupBuilder {
    selector: Selector,
    leaves: Vec<(Option<FieldId>, Pred)>,
    leaf_index: HashMap<String, LeafId>,
    rules: Vec<GroupRule>,
}

#[derive(Default)]
struct Builder {
    fields: HashMap<String, FieldId, FxBuild>,
    /// Rule regexes, compiled once when the rule is added (so errors name the rule).
    regexes: HashMap<String, Regex>,
    bad_regexes: HashMap<String, String>,
    groups: Vec<GroupBuilder>,
    group_index: HashMap<Selector, usize>,
}

impl Builder {
    fn field(&mut self, name: &str) -> FieldId {
        let n = self.fields.len() as FieldId;
        let mut key = String::new();
        normalise_field_name(name, &mut key);
        *self.fields.entry(key).or_insert(n)
    }

    fn add(&mut self, rule: u32, selector: &Selector, expr: Expr<LeafSpec>) -> Result<(), String> {
        // Validate what compiles per leaf before touching shared state.
        let mut leaves = Vec::new();
        expr.leaves(&mut leaves);
        for l in &leaves {
            if let Pred::Re { pattern } = &l.pred
                && let Some(e) = self.bad_regexes.get(pattern)
            {
                return Err(format!("regex `{pattern}`: {e}"));
            }
        }
        let gi = match self.group_index.get(selector) {
            Some(&g) => g,
            None => {
                self.groups.push(GroupBuilder { selector: selector.clone(), ..Default::default() });
                self.group_index.insert(selector.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let mut intern = |spec: LeafSpec| -> Result<LeafId, String> {
            let field = spec.field.as_deref().map(|f| selector.map_field(f).to_string());
            let fid = field.as_deref().map(|f| self.field(f));
            let pred = match spec.pred {
                Pred::FieldRef { other, mode, cased } => {
                    let o = selector.map_field(&other).to_string();
                    self.field(&o);
                    Pred::FieldRef { other: o, mode, cased }
                }
                p => p,
            };
            let key = leaf_key(field.as_deref(), &pred);
            let g = &mut self.groups[gi];
            if let Some(&id) = g.leaf_index.get(&key) {
                return Ok(id);
            }
            let id = g.leaves.len() as LeafId;
            g.leaves.push((fid, pred));
            g.leaf_index.insert(key, id);
            Ok(id)
        };
        let compiled = expr.try_map(&mut intern)?;
        let g = &self.groups[gi];
        let compiled = cheap_first(compiled, &|l| is_costly(&g.leaves[l as usize].1));
        let program = compile_program(&compiled);
        self.groups[gi].rules.push(GroupRule { rule, expr: compiled, program });
        Ok(())
    }

    fn finish(self) -> (HashMap<String, FieldId, FxBuild>, Vec<Group>) {
        let fields = self.fields;
        let regexes = self.regexes;
        let mut groups: Vec<Group> = par_map(self.groups, |g| build_group(g, &fields, &regexes));
        build_automata(&mut groups);
        (fields, groups)
    }
}

/// Whether evaluating a leaf may run a regex or parse values (so it should come last).
fn is_costly(p: &Pred) -> bool {
    !matches!(p, Pred::Str { .. } | Pred::Exists(_) | Pred::Null)
}

/// Reorders AND and OR operands so that those without costly leaves are evaluated
/// first: short-circuiting then often skips regexes altogether. Order does not
/// change the result.
fn cheap_first(e: Expr<LeafId>, costly: &impl Fn(LeafId) -> bool) -> Expr<LeafId> {
    fn has_costly(e: &Expr<LeafId>, costly: &impl Fn(LeafId) -> bool) -> bool {
        let mut ls = Vec::new();
        e.leaves(&mut ls);
        ls.into_iter().any(|l| costly(*l))
    }
    let reorder = |v: Vec<Expr<LeafId>>| {
        let mut v: Vec<Expr<LeafId>> = v.into_iter().map(|c| cheap_first(c, costly)).collect();
        v.sort_by_key(|c| has_costly(c, costly));
        v
    };
    match e {
        Expr::And(v) => Expr::And(reorder(v)),
        Expr::Or(v) => Expr::Or(reorder(v)),
        Expr::Not(inner) => Expr::Not(Box::new(cheap_first(*inner, costly))),
        Expr::AtLeast(n, v) => Expr::AtLeast(n, v.into_iter().map(|c| cheap_first(c, costly)).collect()),
        e => e,
    }
}

/// A canonical key for leaf deduplication (case folded where matching is).
fn leaf_key(field: Option<&str>, pred: &Pred) -> String {
    let field = field.map(str::to_ascii_lowercase);
    match pred {
        Pred::Str { toks, cased: false } => {
            let folded: Vec<pattern::Tok> = toks
                .iter()
                .map(|t| match t {
                    pattern::Tok::Lit(l) => pattern::Tok::Lit(l.to_lowercase()),
                    t => t.clone(),
                })
                .collect();
            format!("{field:?}|str|{folded:?}")
        }
        Pred::FieldRef { other, mode, cased } => format!("{field:?}|ref|{}|{mode:?}|{cased}", other.to_ascii_lowercase()),
        p => format!("{field:?}|{p:?}"),
    }
}

fn build_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string().lines().last().unwrap_or("invalid").trim().to_string())
}

#[derive(Default)]
struct MatcherBuilder {
    patterns: Vec<String>,
    pattern_index: HashMap<String, usize>,
    hits: Vec<Vec<(LeafId, How)>>,
    m: FieldMatcher,
}

impl FieldMatcher {
    fn is_empty(&self) -> bool {
        self.patterns.is_empty()
            && self.exact.is_empty()
            && self.direct.is_empty()
            && self.when_absent.is_empty()
            && self.when_present.is_empty()
            && self.when_null.is_empty()
    }
}

impl MatcherBuilder {
    fn literal(&mut self, lit: &str, leaf: LeafId, how: How) {
        let key = lit.to_ascii_lowercase();
        // Whole-value matches are a hash lookup, not an automaton search (keywords excepted:
        // they search the whole event text).
        if matches!(how, How::Exact) && self.m.field != NONE {
            self.m.exact.entry(key.into_bytes().into_boxed_slice()).or_default().push(leaf);
            return;
        }
        let idx = match self.pattern_index.get(&key) {
            Some(&i) => i,
            None => {
                self.patterns.push(key.clone());
                self.hits.push(Vec::new());
                self.pattern_index.insert(key, self.patterns.len() - 1);
                self.patterns.len() - 1
            }
        };
        self.hits[idx].push((leaf, how));
    }

    /// The matcher, with its automaton still to be built from `patterns` (see [`build_automata`]).
    fn finish(mut self) -> FieldMatcher {
        self.m.patterns = self.patterns;
        self.m.hits = self.hits;
        self.m
    }
}

/// Gives every field matcher its (lazily built) automaton. Groups often share a pattern
/// set (the Sysmon and Security variants of process_creation, for one), so each distinct
/// set has one automaton.
fn build_automata(groups: &mut [Group]) {
    let mut unique: HashMap<Vec<String>, usize> = HashMap::new();
    let mut sets: Vec<Vec<String>> = Vec::new();
    let mut assign: Vec<(usize, usize, usize)> = Vec::new(); // (group, matcher or usize::MAX for keywords, set)
    for (gi, g) in groups.iter_mut().enumerate() {
        let matchers = g.fields.iter_mut().enumerate().chain(g.keywords.iter_mut().map(|m| (usize::MAX, m)));
        for (mi, m) in matchers {
            if m.patterns.is_empty() {
                continue;
            }
            let patterns = std::mem::take(&mut m.patterns);
            let next = sets.len();
            let si = *unique.entry(patterns.clone()).or_insert(next);
            if si == next {
                sets.push(patterns);
            }
            assign.push((gi, mi, si));
        }
    }
    let lazy: Vec<Arc<LazyAutomaton>> =
        sets.into_iter().map(|patterns| Arc::new(LazyAutomaton { patterns, built: std::sync::OnceLock::new() })).collect();
    for (gi, mi, si) in assign {
        let g = &mut groups[gi];
        let m = if mi == usize::MAX { g.keywords.as_mut() } else { g.fields.get_mut(mi) };
        if let Some(m) = m {
            m.ac = Some(lazy[si].clone());
        }
    }
}

/// A field's Aho-Corasick automaton, built the first time an event needs it: groups whose
/// log sources never occur in the input cost nothing to compile, and start-up is the
/// rules' parsing and indexing only. Built once and shared by every scanner thread.
struct LazyAutomaton {
    patterns: Vec<String>,
    built: std::sync::OnceLock<Option<AhoCorasick>>,
}

impl LazyAutomaton {
    fn get(&self) -> Option<&AhoCorasick> {
        self.built
            .get_or_init(|| {
                // Patterns are lower-cased and values are lower-cased before the search:
                // an ASCII case-insensitive automaton takes five times longer to build.
                // Small sets get a DFA (several times faster to search, and small);
                // large ones a contiguous NFA (a DFA would take tens of megabytes).
                let bytes: usize = self.patterns.iter().map(|p| p.len()).sum();
                let kind = if bytes <= DFA_PATTERN_BYTES { AhoCorasickKind::DFA } else { AhoCorasickKind::ContiguousNFA };
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(kind))
                    .build(&self.patterns)
                    .or_else(|_| AhoCorasick::builder().match_kind(MatchKind::Standard).build(&self.patterns))
                    .ok()
            })
            .as_ref()
    }
}

fn build_group(g: GroupBuilder, fields: &HashMap<String, FieldId, FxBuild>, regexes: &HashMap<String, Regex>) -> Group {
    let mut per_field: HashMap<Option<FieldId>, MatcherBuilder> = HashMap::new();
    let mut n_gates = 0u32;
    let n_leaves = g.leaves.len();
    let mut lazy: Vec<(FieldId, Test)> = Vec::new();
    let mut lazy_index = vec![NONE; n_leaves];
    // How likely each leaf is to be set, for choosing the triggers rules are indexed under.
    let mut cost = vec![1.0f64; n_leaves];
    let mut common = vec![false; fields.len()];
    for (name, id) in fields {
        common[*id as usize] = COMMON_FIELDS.contains(&name.as_str());
    }
    for (leaf, (fid, pred)) in g.leaves.iter().enumerate() {
        let field = fid.unwrap_or(NONE);
        let weight = if field != NONE && common[field as usize] { 20.0 } else { 1.0 };
        let lit_cost = |l: &str| weight / (1.0 + l.len() as f64);
        let leaf_id = leaf as LeafId;
        let mb = per_field.entry(*fid).or_default();
        mb.m.field = field;
        let mut make_lazy = |test: Test, cost: &mut f64| {
            *cost = f64::INFINITY;
            lazy_index[leaf] = lazy.len() as u32;
            lazy.push((field, test));
        };
        match pred {
            Pred::Str { toks, cased } => {
                let shape = pattern::shape(toks);
                let fast = |l: &str| !*cased && !l.is_empty() && pattern::ascii_fold_is_exact(l);
                match shape {
                    Shape::Any => mb.m.direct.push(Direct { leaf: leaf_id, gate: None, test: Test::Any }),
                    Shape::Exact(ref l) if l.is_empty() => mb.m.direct.push(Direct { leaf: leaf_id, gate: None, test: Test::Empty }),
                    Shape::Exact(ref l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        mb.literal(l, leaf_id, How::Exact)
                    }
                    Shape::Prefix(ref l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        mb.literal(l, leaf_id, How::Prefix)
                    }
                    Shape::Suffix(ref l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        mb.literal(l, leaf_id, How::Suffix)
                    }
                    Shape::Contains(ref l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        mb.literal(l, leaf_id, How::Contains)
                    }
                    ref s if *cased && *s != Shape::Glob => make_lazy(Test::Cased { shape: s.clone() }, &mut cost[leaf]),
                    _ => {
                        let test = match StarGlob::new(toks) {
                            Some(g) if !*cased => Test::Glob(g),
                            _ => Test::Regex(build_regex(&pattern::to_regex(toks, *cased)).expect("an escaped glob is a valid regex")),
                        };
                        match pattern::required_literal(toks).filter(|l| fast(l)) {
                            Some(l) => {
                                let gi = n_gates;
                                n_gates += 1;
                                cost[leaf] = lit_cost(l);
                                mb.literal(l, leaf_id, How::Gate(gi));
                                mb.m.direct.push(Direct { leaf: leaf_id, gate: Some(gi), test });
                            }
                            None => make_lazy(test, &mut cost[leaf]),
                        }
                    }
                }
            }
            Pred::Re { pattern } => {
                let test = Test::Regex(regexes[pattern].clone());
                match regex_prefixes(pattern) {
                    Some(lits) => {
                        let gi = n_gates;
                        n_gates += 1;
                        let shortest = lits.iter().map(|l| l.len()).min().unwrap_or(0);
                        cost[leaf] = weight * lits.len() as f64 / (1.0 + shortest as f64);
                        for l in &lits {
                            mb.literal(l, leaf_id, How::Gate(gi));
                        }
                        mb.m.direct.push(Direct { leaf: leaf_id, gate: Some(gi), test });
                    }
                    None => make_lazy(test, &mut cost[leaf]),
                }
            }
            Pred::Cmp { op, value } => make_lazy(Test::Cmp { op: *op, value: *value }, &mut cost[leaf]),
            Pred::Cidr(net) => make_lazy(Test::Cidr(*net), &mut cost[leaf]),
            Pred::Time { unit, op, value } => make_lazy(Test::Time { unit: *unit, op: *op, value: *value }, &mut cost[leaf]),
            Pred::FieldRef { other, mode, cased } => {
                let mut key = String::new();
                normalise_field_name(other, &mut key);
                let other = fields[&key];
                make_lazy(Test::FieldRef { other, mode: *mode, cased: *cased }, &mut cost[leaf]);
            }
            Pred::Exists(true) => mb.m.when_present.push(leaf_id),
            Pred::Exists(false) => mb.m.when_absent.push(leaf_id),
            Pred::Null => mb.m.when_null.push(leaf_id),
        }
    }
    let keywords = per_field.remove(&None).map(MatcherBuilder::finish).filter(|m| !m.is_empty());
    let mut field_matchers: Vec<FieldMatcher> = per_field.into_values().map(MatcherBuilder::finish).filter(|m| !m.is_empty()).collect();
    field_matchers.sort_by_key(|m| m.field);
    let mut matcher_of = vec![NONE; fields.len()];
    let mut absence_tests = Vec::new();
    for (i, m) in field_matchers.iter().enumerate() {
        matcher_of[m.field as usize] = i as u32;
        if !m.when_absent.is_empty() || !m.when_null.is_empty() {
            absence_tests.push(i as u32);
        }
    }

    // Index each rule under its cheapest necessary leaf set: the rule cannot match
    // unless one of those leaves is set, so other events never evaluate it.
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n_leaves];
    let mut always = Vec::new();
    for (ri, r) in g.rules.iter().enumerate() {
        let sets = necessary_sets(&r.expr, &cost);
        let best = sets
            .into_iter()
            .filter(|s| s.iter().all(|l| cost[*l as usize].is_finite()))
            .min_by(|a, b| set_cost(a, &cost).total_cmp(&set_cost(b, &cost)));
        match best {
            Some(set) => {
                for l in set {
                    rows[l as usize].push(ri as u32);
                }
            }
            None => always.push(ri as u32),
        }
    }
    let mut leaf_rules_start = Vec::with_capacity(n_leaves + 1);
    let mut leaf_rules = Vec::new();
    for mut row in rows {
        row.sort_unstable();
        row.dedup();
        leaf_rules_start.push(leaf_rules.len() as u32);
        leaf_rules.extend(row);
    }
    leaf_rules_start.push(leaf_rules.len() as u32);
    Group {
        selector: g.selector,
        fields: field_matchers,
        matcher_of,
        absence_tests,
        keywords,
        n_leaves,
        n_gates: n_gates as usize,
        leaf_rules_start,
        leaf_rules,
        rules: g.rules,
        always,
        lazy,
        lazy_index,
    }
}

/// Literals every match of a regex starts with (lower-cased), if there is a small set of
/// non-empty ones: a value containing none of them cannot match, so the regex is only
/// run after the automaton has seen one.
fn regex_prefixes(pattern: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).ok()?;
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_total(64);
    let seq = ex.extract(&hir);
    let lits = seq.literals()?;
    // Short or numerous prefixes open the gate on almost every value: then the regex is
    // better run lazily, only for rules that are already candidates.
    if lits.is_empty() || lits.len() > 8 || lits.iter().any(|l| l.as_bytes().len() < 3) {
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(lits.len());
    for l in lits {
        let s = std::str::from_utf8(l.as_bytes()).ok()?;
        if s.is_empty() || !pattern::ascii_fold_is_exact(s) {
            return None;
        }
        out.push(s.to_ascii_lowercase());
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// Fields whose values repeat across most events of a class (a literal on them says little).
const COMMON_FIELDS: [&str; 10] =
    ["eventid", "channel", "provider_name", "eventtype", "level", "task", "opcode", "keywords", "version", "computer"];

fn set_cost(set: &[LeafId], cost: &[f64]) -> f64 {
    set.iter().map(|l| cost[*l as usize]).sum()
}

/// Leaf sets such that, if `e` is true, at least one leaf of every set is true.
fn necessary_sets(e: &Expr<LeafId>, cost: &[f64]) -> Vec<Vec<LeafId>> {
    match e {
        Expr::Leaf(l) => vec![vec![*l]],
        Expr::And(children) => children.iter().flat_map(|c| necessary_sets(c, cost)).collect(),
        Expr::Or(children) | Expr::AtLeast(_, children) => {
            if matches!(e, Expr::AtLeast(0, _)) {
                return Vec::new();
            }
            let mut union = Vec::new();
            for c in children {
                let best = necessary_sets(c, cost).into_iter().min_by(|a, b| set_cost(a, cost).total_cmp(&set_cost(b, cost)));
                match best {
                    Some(s) => union.extend(s),
                    None => return Vec::new(),
                }
            }
            union.sort_unstable();
            union.dedup();
            vec![union]
        }
        Expr::Not(_) | Expr::Const(true) => Vec::new(),
        Expr::Const(false) => vec![Vec::new()],
    }
}

/// Logs repeat values endlessly (URI stems, user agents, process paths, account names),
/// and a value's leaves depend only on the value, its kind and the field matcher. So the
/// outcome of matching a value is kept in a direct-mapped cache of this many entries per
/// scanner; values longer than `CACHE_VALUE_MAX` are always matched afresh.
const VALUE_CACHE_SLOTS: usize = 8192;
const CACHE_VALUE_MAX: usize = 512;

#[derive(Default)]
struct CachedValue {
    /// The field matcher's address (matchers live as long as the engine), 0 when empty.
    matcher: usize,
    kind: u8,
    value: Vec<u8>,
    leaves: Vec<LeafId>,
}

/// Per-thread scratch for scanning events. Cheap to create; reuse it.
pub struct Scanner<'e> {
    engine: &'e Engine,
    dispatch: HashMap<String, Box<[u32]>, FxBuild>,
    key: String,
    /// The groups of the current event.
    event_groups: Vec<u32>,
    lower: String,
    slot_gen: Vec<u32>,
    slot_first: Vec<u32>,
    slot_last: Vec<u32>,
    next_same: Vec<u32>,
    /// The field id of each field of the current event (NONE if no rule reads it).
    field_ids: Vec<u32>,
    /// Resolved field ids per sequence of field names (hash → (names joined by NUL, ids)).
    shapes: HashMap<u64, (String, Vec<u32>), FxBuild>,
    event_gen: u32,
    bits: Vec<u64>,
    gates: Vec<u64>,
    /// Lazy leaves already computed for the current event and group.
    lazy_done: Vec<u64>,
    set_leaves: Vec<LeafId>,
    rule_stamp: Vec<u32>,
    rule_gen: u32,
    candidates: Vec<u32>,
    /// The current value, ASCII lower-cased, when it had capitals.
    folded: Vec<u8>,
    /// The event's keyword-search text, and the event it was built for.
    keyword_text: Vec<u8>,
    keyword_text_gen: u32,
    /// Automaton hits on the current value: (pattern, start, end).
    hits: Vec<(u32, u32, u32)>,
    matched_stamp: Vec<u32>,
    match_gen: u32,
    /// Recent outcomes of `match_value` (see [`ValueCache`]).
    value_cache: Vec<CachedValue>,
    /// While filling a cache entry: every leaf the value sets, even if already set.
    recording: Option<Vec<LeafId>>,
    /// Events seen per group (for "which rules applied to anything").
    pub group_events: Vec<u64>,
}

impl<'e> Scanner<'e> {
    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Appends the indexes (into `Engine::rules`) of the rules that match `ev`.
    pub fn scan(&mut self, ev: &Event, out: &mut Vec<usize>) {
        let mut groups = std::mem::take(&mut self.event_groups);
        self.groups_for(ev, &mut groups);
        if groups.is_empty() {
            self.event_groups = groups;
            return;
        }
        self.index_fields(ev);
        self.match_gen = self.match_gen.wrapping_add(1);
        if self.match_gen == 0 {
            self.matched_stamp.iter_mut().for_each(|s| *s = 0);
            self.match_gen = 1;
        }
        for &g in groups.iter() {
            self.group_events[g as usize] += 1;
            self.scan_group(&self.engine.groups[g as usize], ev, out);
        }
        self.event_groups = groups;
    }

    #[doc(hidden)]
    pub fn debug_groups(&mut self, ev: &Event) -> Vec<String> {
        let mut groups = Vec::new();
        self.groups_for(ev, &mut groups);
        self.index_fields(ev);
        groups
            .iter()
            .map(|&g| {
                let gr = &self.engine.groups[g as usize];
                let matched: Vec<usize> =
                    (0..ev.len()).filter(|&i| self.field_ids[i] != NONE && gr.matcher_of[self.field_ids[i] as usize] != NONE).collect();
                let directs: usize =
                    matched.iter().map(|&i| gr.fields[gr.matcher_of[self.field_ids[i] as usize] as usize].direct.len()).sum();
                let acs: Vec<String> = matched
                    .iter()
                    .map(|&i| &gr.fields[gr.matcher_of[self.field_ids[i] as usize] as usize])
                    .chain(gr.keywords.as_ref())
                    .filter_map(|fm| {
                        fm.ac
                            .as_ref()
                            .and_then(|l| l.get())
                            .map(|ac| format!("{:?}/{}p/{}KiB", ac.kind(), ac.patterns_len(), ac.memory_usage() / 1024))
                    })
                    .collect();
                format!(
                    "group {g}: acs {acs:?} {} rules, {} always, {} field matchers ({} on this event, {} directs), keywords {}, lazy {}",
                    gr.rules.len(),
                    gr.always.len(),
                    gr.fields.len(),
                    matched.len(),
                    directs,
                    gr.keywords.is_some(),
                    gr.lazy.len()
                )
            })
            .collect()
    }

    /// The groups covering this event's class, cached per class.
    fn groups_for(&mut self, ev: &Event, out: &mut Vec<u32>) {
        out.clear();
        let (channel, event_id) = if ev.source == SourceKind::Windows {
            (ev.get("Channel").unwrap_or(""), ev.get("EventID").and_then(|s| s.trim().parse::<u32>().ok()))
        } else {
            ("", None)
        };
        self.key.clear();
        self.key.push_str(ev.source.as_str());
        self.key.push('\u{0}');
        self.key.push_str(channel);
        self.key.push('\u{0}');
        if let Some(id) = event_id {
            let mut buf = [0u8; 10];
            let mut n = id;
            let mut at = buf.len();
            loop {
                at -= 1;
                buf[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            self.key.push_str(std::str::from_utf8(&buf[at..]).unwrap_or(""));
        }
        self.key.push('\u{0}');
        self.key.push_str(&ev.log_type);
        self.key.make_ascii_lowercase();
        if let Some(g) = self.dispatch.get(self.key.as_str()) {
            out.extend_from_slice(g);
            return;
        }
        let groups: Box<[u32]> = self
            .engine
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.selector.covers(ev.source, channel, event_id, &ev.log_type))
            .map(|(i, _)| i as u32)
            .collect();
        out.extend_from_slice(&groups);
        if self.dispatch.len() < 100_000 {
            self.dispatch.insert(self.key.clone(), groups);
        }
    }

    fn index_fields(&mut self, ev: &Event) {
        self.event_gen = self.event_gen.wrapping_add(1);
        if self.event_gen == 0 {
            self.slot_gen.iter_mut().for_each(|g| *g = 0);
            self.event_gen = 1;
        }
        self.next_same.clear();
        self.next_same.resize(ev.len(), NONE);
        self.resolve_names(ev);
        for i in 0..ev.len() {
            let id = self.field_ids[i];
            if id == NONE {
                continue;
            }
            let id = id as usize;
            if self.slot_gen[id] != self.event_gen {
                self.slot_gen[id] = self.event_gen;
                self.slot_first[id] = i as u32;
            } else {
                self.next_same[self.slot_last[id] as usize] = i as u32;
            }
            self.slot_last[id] = i as u32;
        }
    }

    /// Fills `field_ids` for the event's field names. Logs repeat the same sequence of
    /// names (a `#Fields:` block, a CSV header, an EVTX template), so the resolution is
    /// cached per sequence of names.
    fn resolve_names(&mut self, ev: &Event) {
        use std::hash::Hasher;
        let mut h = FxHasher::default();
        for f in ev.fields() {
            h.write(f.name.as_bytes());
            h.write_u8(0);
        }
        let key = h.finish();
        if let Some((names, ids)) = self.shapes.get(&key) {
            let mut at = 0usize;
            let same = ids.len() == ev.len()
                && ev.fields().all(|f| {
                    let n = f.name.as_bytes();
                    let ok = names.as_bytes().get(at..at + n.len()) == Some(n) && names.as_bytes().get(at + n.len()) == Some(&0);
                    at += n.len() + 1;
                    ok
                });
            if same {
                self.field_ids.clear();
                self.field_ids.extend_from_slice(ids);
                return;
            }
        }
        self.field_ids.clear();
        let mut names = String::new();
        for f in ev.fields() {
            names.push_str(f.name);
            names.push('\u{0}');
            normalise_field_name(f.name, &mut self.lower);
            self.field_ids.push(self.engine.fields.get(self.lower.as_str()).copied().unwrap_or(NONE));
        }
        if self.shapes.len() >= 4096 {
            self.shapes.clear();
        }
        self.shapes.insert(key, (names, self.field_ids.clone()));
    }

    fn first(&self, field: FieldId) -> u32 {
        let f = field as usize;
        if field != NONE && self.slot_gen[f] == self.event_gen { self.slot_first[f] } else { NONE }
    }

    fn scan_group(&mut self, g: &'e Group, ev: &Event, out: &mut Vec<usize>) {
        let words = g.n_leaves.div_ceil(64);
        self.bits.clear();
        self.bits.resize(words, 0);
        self.gates.clear();
        self.gates.resize(g.n_gates.div_ceil(64), 0);
        self.set_leaves.clear();

        // Walk the event's fields (a few dozen), not the group's matchers (hundreds).
        for i in 0..self.field_ids.len() {
            let fid = self.field_ids[i];
            if fid == NONE {
                continue;
            }
            let m = g.matcher_of[fid as usize];
            if m == NONE {
                continue;
            }
            let fm = &g.fields[m as usize];
            for &l in &fm.when_present {
                self.set(l);
            }
            let f = ev.field(i);
            self.match_value(fm, f.value, f.kind, ev);
        }
        // Tests on absence and emptiness need the whole field.
        for &m in &g.absence_tests {
            let fm = &g.fields[m as usize];
            let mut i = self.first(fm.field);
            if i == NONE {
                for &l in fm.when_absent.iter().chain(&fm.when_null) {
                    self.set(l);
                }
                continue;
            }
            // `null` is an absent field or a null value; `''` (an empty string) is not null.
            let mut all_null = true;
            while i != NONE {
                if ev.field(i as usize).kind != ValueKind::Null {
                    all_null = false;
                    break;
                }
                i = self.next_same[i as usize];
            }
            if all_null {
                for &l in &fm.when_null {
                    self.set(l);
                }
            }
        }
        if let Some(kw) = &g.keywords {
            self.match_keywords(kw, ev);
        }

        // Candidate rules: those with a set leaf, plus those that can match without one.
        self.rule_gen = self.rule_gen.wrapping_add(1);
        if self.rule_stamp.len() < g.rules.len() || self.rule_gen == 0 {
            self.rule_stamp.clear();
            self.rule_stamp.resize(g.rules.len().max(self.rule_stamp.len()), 0);
            self.rule_gen = 1;
        }
        self.candidates.clear();
        for k in 0..self.set_leaves.len() {
            let l = self.set_leaves[k] as usize;
            for &r in &g.leaf_rules[g.leaf_rules_start[l] as usize..g.leaf_rules_start[l + 1] as usize] {
                if self.rule_stamp[r as usize] != self.rule_gen {
                    self.rule_stamp[r as usize] = self.rule_gen;
                    self.candidates.push(r);
                }
            }
        }
        for &r in &g.always {
            if self.rule_stamp[r as usize] != self.rule_gen {
                self.rule_stamp[r as usize] = self.rule_gen;
                self.candidates.push(r);
            }
        }
        self.candidates.sort_unstable();
        self.lazy_done.clear();
        self.lazy_done.resize(words, 0);
        for k in 0..self.candidates.len() {
            let gr = &g.rules[self.candidates[k] as usize];
            let matched = match &gr.program {
                Some(ops) => self.run(g, ops, ev),
                None => self.eval(g, &gr.expr, ev),
            };
            if matched {
                let rule = gr.rule as usize;
                if self.matched_stamp[rule] != self.match_gen {
                    self.matched_stamp[rule] = self.match_gen;
                    out.push(rule);
                }
            }
        }
    }

    fn run(&mut self, g: &Group, ops: &[Op], ev: &Event) -> bool {
        let mut acc = false;
        let mut pc = 0;
        while let Some(op) = ops.get(pc) {
            pc += 1;
            match *op {
                Op::Leaf(l) => acc = self.leaf(g, l, ev),
                Op::Not => acc = !acc,
                Op::Set(b) => acc = b,
                Op::JumpIfFalse(t) if !acc => pc = t as usize,
                Op::JumpIfTrue(t) if acc => pc = t as usize,
                Op::JumpIfFalse(_) | Op::JumpIfTrue(_) => {}
            }
        }
        acc
    }

    fn eval(&mut self, g: &Group, e: &Expr<LeafId>, ev: &Event) -> bool {
        match e {
            Expr::Leaf(l) => self.leaf(g, *l, ev),
            Expr::Not(inner) => !self.eval(g, inner, ev),
            Expr::And(v) => v.iter().all(|c| self.eval(g, c, ev)),
            Expr::Or(v) => v.iter().any(|c| self.eval(g, c, ev)),
            Expr::AtLeast(n, v) => {
                let mut hits = 0;
                for c in v {
                    if self.eval(g, c, ev) {
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

    /// A leaf's value: from the field scan, or computed (once per event) for lazy leaves.
    fn leaf(&mut self, g: &Group, l: LeafId, ev: &Event) -> bool {
        let (w, m) = (l as usize / 64, 1u64 << (l % 64));
        let li = g.lazy_index[l as usize];
        if li == NONE {
            return self.bits[w] & m != 0;
        }
        let (field, test) = &g.lazy[li as usize];
        if self.lazy_done[w] & m != 0 {
            return self.bits[w] & m != 0;
        }
        self.lazy_done[w] |= m;
        let mut i = self.first(*field);
        while i != NONE {
            let f = ev.field(i as usize);
            if self.test(test, f.value, f.kind, ev) {
                self.bits[w] |= m;
                return true;
            }
            i = self.next_same[i as usize];
        }
        false
    }

    #[inline]
    fn set(&mut self, l: LeafId) {
        if let Some(r) = &mut self.recording {
            r.push(l);
        }
        let (w, m) = (l as usize / 64, 1u64 << (l % 64));
        if self.bits[w] & m == 0 {
            self.bits[w] |= m;
            self.set_leaves.push(l);
        }
    }

    /// Sets the leaves one value decides, from the cache when the value was seen recently.
    fn match_value(&mut self, fm: &FieldMatcher, value: &str, kind: ValueKind, ev: &Event) {
        // Direct tests depend only on the value (field references are lazy, never direct).
        if value.len() > CACHE_VALUE_MAX {
            return self.match_value_uncached(fm, value, kind, ev);
        }
        if self.value_cache.is_empty() {
            self.value_cache.resize_with(VALUE_CACHE_SLOTS, CachedValue::default);
        }
        use std::hash::Hasher;
        let mut h = FxHasher::default();
        h.write(value.as_bytes());
        h.write_usize(fm as *const FieldMatcher as usize);
        let slot = (h.finish() as usize) % VALUE_CACHE_SLOTS;
        let id = fm as *const FieldMatcher as usize;
        let e = &self.value_cache[slot];
        if e.matcher == id && e.kind == kind as u8 && e.value == value.as_bytes() {
            let leaves = std::mem::take(&mut self.value_cache[slot].leaves);
            for &l in &leaves {
                self.set(l);
            }
            self.value_cache[slot].leaves = leaves;
            return;
        }
        let mut recorded = std::mem::take(&mut self.value_cache[slot].leaves);
        recorded.clear();
        self.recording = Some(recorded);
        self.match_value_uncached(fm, value, kind, ev);
        let recorded = self.recording.take().unwrap_or_default();
        let e = &mut self.value_cache[slot];
        e.matcher = id;
        e.kind = kind as u8;
        e.value.clear();
        e.value.extend_from_slice(value.as_bytes());
        e.leaves = recorded;
    }

    /// Runs a field's automaton and direct tests over one value.
    fn match_value_uncached(&mut self, fm: &FieldMatcher, value: &str, kind: ValueKind, ev: &Event) {
        if fm.ac.is_some() || !fm.exact.is_empty() {
            let upper = value.bytes().any(|b| b.is_ascii_uppercase());
            if upper {
                self.folded.clear();
                self.folded.extend(value.bytes().map(|b| b.to_ascii_lowercase()));
            }
            if !fm.exact.is_empty() {
                let key: &[u8] = if upper { &self.folded } else { value.as_bytes() };
                if let Some(leaves) = fm.exact.get(key) {
                    for &l in leaves {
                        self.set(l);
                    }
                }
            }
            if let Some(ac) = fm.ac.as_ref().and_then(|l| l.get()) {
                self.match_literals(fm, ac, if upper { None } else { Some(value.as_bytes()) });
            }
        }
        self.match_directs(fm, value, kind, ev);
        self.close_gates(fm);
    }

    /// Keyword searches: one automaton pass over the event's text, lower-cased and joined
    /// by NUL (which no keyword contains). For line-based logs the text is the raw line
    /// (it holds every value) plus any value the reader decoded (`+` as space); otherwise
    /// every field value. Built once per event, shared by every group that needs it.
    fn match_keywords(&mut self, kw: &FieldMatcher, ev: &Event) {
        if let Some(ac) = kw.ac.as_ref().and_then(|l| l.get()) {
            if self.keyword_text_gen != self.event_gen {
                self.keyword_text_gen = self.event_gen;
                let joined = &mut self.keyword_text;
                joined.clear();
                if ev.raw.is_empty() {
                    for f in ev.fields() {
                        joined.extend(f.value.bytes().map(|b| b.to_ascii_lowercase()));
                        joined.push(0);
                    }
                } else {
                    joined.extend(ev.raw.bytes().map(|b| b.to_ascii_lowercase()));
                    let mut previous = "";
                    for f in ev.fields().filter(|f| f.value.contains(' ')) {
                        // Aliases repeat a value (cs(User-Agent) and cs-user-agent): scan it once.
                        if f.value == previous {
                            continue;
                        }
                        previous = f.value;
                        joined.push(0);
                        joined.extend(f.value.bytes().map(|b| b.to_ascii_lowercase()));
                    }
                }
            }
            let text = std::mem::take(&mut self.keyword_text);
            self.match_literals(kw, ac, Some(&text));
            self.keyword_text = text;
        }
        if !kw.direct.is_empty() {
            for f in ev.fields() {
                self.match_directs(kw, f.value, f.kind, ev);
            }
            if !ev.raw.is_empty() {
                self.match_directs(kw, &ev.raw, ValueKind::Str, ev);
            }
        }
        self.close_gates(kw);
    }

    /// Sets the leaves an automaton decides for `hay` (or, if None, the folded buffer).
    fn match_literals(&mut self, fm: &FieldMatcher, ac: &AhoCorasick, hay: Option<&[u8]>) {
        let hay = hay.unwrap_or(&self.folded);
        let len = hay.len();
        self.hits.clear();
        self.hits.extend(ac.find_overlapping_iter(hay).map(|m| (m.pattern().as_usize() as u32, m.start() as u32, m.end() as u32)));
        for k in 0..self.hits.len() {
            let (p, start, end) = self.hits[k];
            let (start, end) = (start as usize, end as usize);
            for &(leaf, how) in &fm.hits[p as usize] {
                let hit = match how {
                    How::Contains => true,
                    How::Prefix => start == 0,
                    How::Suffix => end == len,
                    How::Exact => start == 0 && end == len,
                    How::Gate(gi) => {
                        self.gates[gi as usize / 64] |= 1 << (gi % 64);
                        false
                    }
                };
                if hit {
                    self.set(leaf);
                }
            }
        }
    }

    fn match_directs(&mut self, fm: &FieldMatcher, value: &str, kind: ValueKind, ev: &Event) {
        for d in &fm.direct {
            if let Some(gi) = d.gate
                && self.gates[gi as usize / 64] & (1 << (gi % 64)) == 0
            {
                continue;
            }
            // (While recording a cache entry the test runs anyway: the entry must hold it.)
            if self.recording.is_none() && self.bits[d.leaf as usize / 64] & (1 << (d.leaf % 64)) != 0 {
                continue;
            }
            if self.test(&d.test, value, kind, ev) {
                self.set(d.leaf);
            }
        }
    }

    /// Gates opened by one value must not leak to the next.
    fn close_gates(&mut self, fm: &FieldMatcher) {
        for d in &fm.direct {
            if let Some(gi) = d.gate {
                self.gates[gi as usize / 64] &= !(1 << (gi % 64));
            }
        }
    }

    fn test(&self, test: &Test, value: &str, kind: ValueKind, ev: &Event) -> bool {
        match test {
            Test::Regex(re) => re.is_match(value),
            Test::Glob(g) => g.matches(value),
            Test::Any => kind != ValueKind::Null,
            Test::Empty => value.is_empty() && kind != ValueKind::Null,
            Test::Cased { shape } => match shape {
                Shape::Exact(l) => value == l,
                Shape::Prefix(l) => value.starts_with(l.as_str()),
                Shape::Suffix(l) => value.ends_with(l.as_str()),
                Shape::Contains(l) => memchr::memmem::find(value.as_bytes(), l.as_bytes()).is_some(),
                Shape::Any => true,
                Shape::Glob => false,
            },
            Test::Cmp { op, value: want } => parse_number(value).is_some_and(|v| op.test(v, *want)),
            Test::Cidr(net) => parse_ip(value).is_some_and(|ip| net.contains(ip)),
            Test::Time { unit, op, value: want } => Timestamp::parse(value).is_some_and(|t| {
                let (y, mo, d, h, mi, _) = t.civil();
                let part = match unit {
                    TimeUnit::Minute => mi as f64,
                    TimeUnit::Hour => h as f64,
                    TimeUnit::Day => d as f64,
                    TimeUnit::Week => t.iso_week() as f64,
                    TimeUnit::Month => mo as f64,
                    TimeUnit::Year => y as f64,
                };
                op.test(part, *want)
            }),
            Test::FieldRef { other, mode, cased } => {
                let mut i = self.first(*other);
                while i != NONE {
                    let o = ev.field(i as usize).value;
                    if compare(value, o, *mode, *cased) {
                        return true;
                    }
                    i = self.next_same[i as usize];
                }
                false
            }
        }
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

fn compare(value: &str, other: &str, mode: Mode, cased: bool) -> bool {
    if cased {
        return match mode {
            Mode::Exact => value == other,
            Mode::Contains => value.contains(other),
            Mode::StartsWith => value.starts_with(other),
            Mode::EndsWith => value.ends_with(other),
        };
    }
    let (v, o) = (value.to_lowercase(), other.to_lowercase());
    match mode {
        Mode::Exact => v == o,
        Mode::Contains => v.contains(&o),
        Mode::StartsWith => v.starts_with(&o),
        Mode::EndsWith => v.ends_with(&o),
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    let s = s.split('%').next().unwrap_or(s); // IPv6 zone id
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::parse_sigma_string;

    #[test]
    fn star_glob_agrees_with_regex() {
        let patterns = ["a*b", "*a*b*", "ab*ab", "*x*", "a*", "*a*a*a", "abc*abc*c"];
        let values = ["ab", "aab", "ba", "abab", "xx", "a", "aXa", "AaA", "abcabc", "abcabcc", "abcXabcc", ""];
        for p in patterns {
            let toks = parse_sigma_string(p);
            let g = StarGlob::new(&toks).unwrap();
            let re = build_regex(&pattern::to_regex(&toks, false)).unwrap();
            for v in values {
                assert_eq!(g.matches(v), re.is_match(v), "pattern {p} value {v}");
            }
        }
    }

    /// The value cache must give the same answers as matching afresh, including for a field
    /// that repeats within one event and for values seen again in later events.
    #[test]
    fn value_cache_agrees_with_fresh_matching() {
        let rule = "title: t\nlogsource: {product: windows}\ndetection:\n  a: {Data|contains: abc}\n  b: {Data|endswith: zz}\n  condition: a and b\n";
        let mut set = crate::RuleSet::default();
        set.add_text(rule, "t.yml", &Default::default());
        let engine = Engine::compile(&set, &crate::LogsourceTable::builtin());
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

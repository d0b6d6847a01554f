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

use aho_corasick::{AhoCorasick, MatchKind};
use portcullis_event::{Event, SourceKind, Timestamp, ValueKind};
use regex::{Regex, RegexBuilder};

use crate::expr::Expr;
use crate::loader::RuleSet;
use crate::logsource::{LogsourceTable, Resolution, Selector};
use crate::modifiers::{CmpOp, IpNet, LeafSpec, Pred, TimeUnit};
use crate::pattern::{self, Mode, Shape};
use crate::rule::{LoadError, Rule};

type FieldId = u32;
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
    /// Any value that is not null.
    Any,
    /// The value is empty (or null).
    Empty,
    Cased { shape: Shape },
    Cmp { op: CmpOp, value: f64 },
    Cidr(IpNet),
    FieldRef { other: FieldId, mode: Mode, cased: bool },
    Time { unit: TimeUnit, op: CmpOp, value: f64 },
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
    ac: Option<AhoCorasick>,
    /// Per automaton pattern: the leaves it decides.
    hits: Vec<Vec<(LeafId, How)>>,
    direct: Vec<Direct>,
    /// Leaves true when the field is absent (`null`, `exists: false`).
    when_absent: Vec<LeafId>,
    /// Leaves true when the field is present (`exists: true`).
    when_present: Vec<LeafId>,
    /// Leaves true when the field is absent or all its values are empty (`null`).
    when_null: Vec<LeafId>,
}

struct GroupRule {
    rule: u32,
    expr: Expr<LeafId>,
}

struct Group {
    selector: Selector,
    fields: Vec<FieldMatcher>,
    keywords: Option<FieldMatcher>,
    n_leaves: usize,
    n_gates: usize,
    /// Compressed rows: the group rules that use each leaf.
    leaf_rules_start: Vec<u32>,
    leaf_rules: Vec<u32>,
    rules: Vec<GroupRule>,
    /// Group rules that can match with no leaf set (e.g. `not filter`).
    always: Vec<u32>,
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
    fields: HashMap<String, FieldId>,
    groups: Vec<Group>,
}

/// Limits on regexes compiled from rules (hostile rules must not exhaust memory).
const REGEX_SIZE_LIMIT: usize = 8 << 20;

impl Engine {
    /// Compiles a rule set. Filters are applied to the rules they name.
    pub fn compile(set: &RuleSet, table: &LogsourceTable) -> Engine {
        let mut rules: Vec<Rule> = set.rules.clone();
        for f in &set.filters {
            for r in rules.iter_mut() {
                let named = f.rules.iter().any(|n| {
                    r.id.as_deref() == Some(n.as_str()) || r.name.as_deref() == Some(n.as_str()) || r.title == *n
                });
                if named {
                    let det = std::mem::replace(&mut r.detection, Expr::Const(false));
                    r.detection = Expr::And(vec![det, Expr::not(f.detection.clone())]);
                }
            }
        }
        let mut b = Builder::default();
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
            dispatch: HashMap::new(),
            key: String::new(),
            lower: String::new(),
            slot_gen: vec![0; self.fields.len()],
            slot_first: vec![NONE; self.fields.len()],
            slot_last: vec![NONE; self.fields.len()],
            next_same: Vec::new(),
            event_gen: 0,
            bits: Vec::new(),
            gates: Vec::new(),
            set_leaves: Vec::new(),
            rule_stamp: Vec::new(),
            rule_gen: 0,
            candidates: Vec::new(),
            matched_stamp: vec![0; self.rules.len()],
            match_gen: 0,
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
    fields: HashMap<String, FieldId>,
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
            if let Pred::Re { pattern } = &l.pred {
                build_regex(pattern).map_err(|e| format!("regex `{pattern}`: {e}"))?;
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
        self.groups[gi].rules.push(GroupRule { rule, expr: compiled });
        Ok(())
    }

    fn finish(self) -> (HashMap<String, FieldId>, Vec<Group>) {
        let fields = self.fields;
        let groups = self.groups.into_iter().map(|g| build_group(g, &fields)).collect();
        (fields, groups)
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

impl MatcherBuilder {
    fn literal(&mut self, lit: &str, leaf: LeafId, how: How) {
        let key = lit.to_ascii_lowercase();
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

    fn finish(mut self) -> FieldMatcher {
        if !self.patterns.is_empty() {
            self.m.ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&self.patterns)
                .ok();
            self.m.hits = self.hits;
        }
        self.m
    }
}

fn build_group(g: GroupBuilder, fields: &HashMap<String, FieldId>) -> Group {
    let mut per_field: HashMap<Option<FieldId>, MatcherBuilder> = HashMap::new();
    let mut n_gates = 0u32;
    for (leaf, (fid, pred)) in g.leaves.iter().enumerate() {
        let leaf = leaf as LeafId;
        let mb = per_field.entry(*fid).or_default();
        mb.m.field = fid.unwrap_or(NONE);
        let direct = |mb: &mut MatcherBuilder, test: Test, gate: Option<u32>| mb.m.direct.push(Direct { leaf, gate, test });
        match pred {
            Pred::Str { toks, cased } => {
                let shape = pattern::shape(toks);
                let fast = |l: &str| !*cased && !l.is_empty() && pattern::ascii_fold_is_exact(l);
                match shape {
                    Shape::Any => direct(mb, Test::Any, None),
                    Shape::Exact(ref l) if l.is_empty() => direct(mb, Test::Empty, None),
                    Shape::Exact(ref l) if fast(l) => mb.literal(l, leaf, How::Exact),
                    Shape::Prefix(ref l) if fast(l) => mb.literal(l, leaf, How::Prefix),
                    Shape::Suffix(ref l) if fast(l) => mb.literal(l, leaf, How::Suffix),
                    Shape::Contains(ref l) if fast(l) => mb.literal(l, leaf, How::Contains),
                    ref s if *cased && *s != Shape::Glob => direct(mb, Test::Cased { shape: s.clone() }, None),
                    _ => {
                        let re = build_regex(&pattern::to_regex(toks, *cased)).expect("escaped glob regex compiles");
                        let gate = pattern::required_literal(toks).filter(|l| fast(l)).map(|l| {
                            let gi = n_gates;
                            n_gates += 1;
                            mb.literal(l, leaf, How::Gate(gi));
                            gi
                        });
                        direct(mb, Test::Regex(re), gate);
                    }
                }
            }
            Pred::Re { pattern } => {
                let re = build_regex(pattern).expect("validated when the rule was added");
                direct(mb, Test::Regex(re), None);
            }
            Pred::Cmp { op, value } => direct(mb, Test::Cmp { op: *op, value: *value }, None),
            Pred::Cidr(net) => direct(mb, Test::Cidr(*net), None),
            Pred::Time { unit, op, value } => direct(mb, Test::Time { unit: *unit, op: *op, value: *value }, None),
            Pred::FieldRef { other, mode, cased } => {
                let mut key = String::new();
                normalise_field_name(other, &mut key);
                let other = fields[&key];
                direct(mb, Test::FieldRef { other, mode: *mode, cased: *cased }, None);
            }
            Pred::Exists(true) => mb.m.when_present.push(leaf),
            Pred::Exists(false) => mb.m.when_absent.push(leaf),
            Pred::Null => mb.m.when_null.push(leaf),
        }
    }
    // Gated tests need their gate index to be stable within the field matcher: already are.
    let keywords = per_field.remove(&None).map(MatcherBuilder::finish);
    let mut field_matchers: Vec<FieldMatcher> = per_field.into_values().map(MatcherBuilder::finish).collect();
    field_matchers.sort_by_key(|m| m.field);

    let n_leaves = g.leaves.len();
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n_leaves];
    let mut always = Vec::new();
    for (ri, r) in g.rules.iter().enumerate() {
        let mut ls = Vec::new();
        r.expr.leaves(&mut ls);
        let mut ls: Vec<u32> = ls.into_iter().copied().collect();
        ls.sort_unstable();
        ls.dedup();
        for l in ls {
            rows[l as usize].push(ri as u32);
        }
        if r.expr.eval(&|_| false) {
            always.push(ri as u32);
        }
    }
    let mut leaf_rules_start = Vec::with_capacity(n_leaves + 1);
    let mut leaf_rules = Vec::new();
    for row in rows {
        leaf_rules_start.push(leaf_rules.len() as u32);
        leaf_rules.extend(row);
    }
    leaf_rules_start.push(leaf_rules.len() as u32);
    Group {
        selector: g.selector,
        fields: field_matchers,
        keywords,
        n_leaves,
        n_gates: n_gates as usize,
        leaf_rules_start,
        leaf_rules,
        rules: g.rules,
        always,
    }
}

/// Per-thread scratch for scanning events. Cheap to create; reuse it.
pub struct Scanner<'e> {
    engine: &'e Engine,
    dispatch: HashMap<String, Box<[u32]>>,
    key: String,
    lower: String,
    slot_gen: Vec<u32>,
    slot_first: Vec<u32>,
    slot_last: Vec<u32>,
    next_same: Vec<u32>,
    event_gen: u32,
    bits: Vec<u64>,
    gates: Vec<u64>,
    set_leaves: Vec<LeafId>,
    rule_stamp: Vec<u32>,
    rule_gen: u32,
    candidates: Vec<u32>,
    matched_stamp: Vec<u32>,
    match_gen: u32,
    /// Events seen per group (for "which rules applied to anything").
    pub group_events: Vec<u64>,
}

impl<'e> Scanner<'e> {
    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Appends the indexes (into `Engine::rules`) of the rules that match `ev`.
    pub fn scan(&mut self, ev: &Event, out: &mut Vec<usize>) {
        let groups = self.groups_for(ev);
        if groups.is_empty() {
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
    }

    fn groups_for(&mut self, ev: &Event) -> Box<[u32]> {
        let (channel, event_id) = if ev.source == SourceKind::Windows {
            (ev.get("Channel").unwrap_or(""), ev.get("EventID").and_then(|s| s.trim().parse::<u32>().ok()))
        } else {
            ("", None)
        };
        self.key.clear();
        use std::fmt::Write;
        let _ = write!(self.key, "{}\u{0}{}\u{0}{:?}\u{0}{}", ev.source.as_str(), channel, event_id, ev.log_type);
        self.key.make_ascii_lowercase();
        if let Some(g) = self.dispatch.get(self.key.as_str()) {
            return g.clone();
        }
        let groups: Box<[u32]> = self
            .engine
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.selector.covers(ev.source, channel, event_id, &ev.log_type))
            .map(|(i, _)| i as u32)
            .collect();
        if self.dispatch.len() < 100_000 {
            self.dispatch.insert(self.key.clone(), groups.clone());
        }
        groups
    }

    fn index_fields(&mut self, ev: &Event) {
        self.event_gen = self.event_gen.wrapping_add(1);
        if self.event_gen == 0 {
            self.slot_gen.iter_mut().for_each(|g| *g = 0);
            self.event_gen = 1;
        }
        self.next_same.clear();
        self.next_same.resize(ev.len(), NONE);
        for i in 0..ev.len() {
            normalise_field_name(ev.field(i).name, &mut self.lower);
            let Some(&id) = self.engine.fields.get(self.lower.as_str()) else { continue };
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

        for fm in &g.fields {
            let mut i = self.first(fm.field);
            if i == NONE {
                for &l in fm.when_absent.iter().chain(&fm.when_null) {
                    self.set(l);
                }
                continue;
            }
            for &l in &fm.when_present {
                self.set(l);
            }
            let mut all_empty = true;
            while i != NONE {
                let f = ev.field(i as usize);
                if !f.value.is_empty() {
                    all_empty = false;
                }
                self.match_value(fm, f.value, f.kind, ev);
                i = self.next_same[i as usize];
            }
            if all_empty {
                for &l in &fm.when_null {
                    self.set(l);
                }
            }
        }
        if let Some(kw) = &g.keywords {
            for f in ev.fields() {
                self.match_value(kw, f.value, f.kind, ev);
            }
            if !ev.raw.is_empty() {
                self.match_value(kw, &ev.raw, ValueKind::Str, ev);
            }
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
        let bits = &self.bits;
        for &r in &self.candidates {
            let gr = &g.rules[r as usize];
            if gr.expr.eval(&|&l| bits[l as usize / 64] & (1 << (l % 64)) != 0) {
                let rule = gr.rule as usize;
                if self.matched_stamp[rule] != self.match_gen {
                    self.matched_stamp[rule] = self.match_gen;
                    out.push(rule);
                }
            }
        }
    }

    #[inline]
    fn set(&mut self, l: LeafId) {
        let (w, m) = (l as usize / 64, 1u64 << (l % 64));
        if self.bits[w] & m == 0 {
            self.bits[w] |= m;
            self.set_leaves.push(l);
        }
    }

    fn match_value(&mut self, fm: &FieldMatcher, value: &str, kind: ValueKind, ev: &Event) {
        if let Some(ac) = &fm.ac {
            let len = value.len();
            for m in ac.find_overlapping_iter(value) {
                for &(leaf, how) in &fm.hits[m.pattern().as_usize()] {
                    let hit = match how {
                        How::Contains => true,
                        How::Prefix => m.start() == 0,
                        How::Suffix => m.end() == len,
                        How::Exact => m.start() == 0 && m.end() == len,
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
        for d in &fm.direct {
            if let Some(gi) = d.gate
                && self.gates[gi as usize / 64] & (1 << (gi % 64)) == 0
            {
                continue;
            }
            if self.bits[d.leaf as usize / 64] & (1 << (d.leaf % 64)) != 0 {
                continue;
            }
            if self.test(&d.test, value, kind, ev) {
                self.set(d.leaf);
            }
        }
        // Gates opened by this value must not leak to the next value.
        for d in &fm.direct {
            if let Some(gi) = d.gate {
                self.gates[gi as usize / 64] &= !(1 << (gi % 64));
            }
        }
    }

    fn test(&self, test: &Test, value: &str, kind: ValueKind, ev: &Event) -> bool {
        match test {
            Test::Regex(re) => re.is_match(value),
            Test::Any => kind != ValueKind::Null,
            Test::Empty => value.is_empty(),
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
    out.extend(name.chars().filter(|c| *c != ' ').map(|c| c.to_ascii_lowercase()));
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

//! Compiling a rule set: rules grouped by the event class their log source selects,
//! every distinct leaf once per group, literal leaves on a field gathered for one
//! automaton, each rule indexed under its cheapest necessary leaf set and compiled into
//! a short-circuit program.

use rayon::prelude::*;

use super::*;

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

impl Engine {
    /// Compiles a rule set. Filters are applied to the rules they name.
    pub fn compile(set: &RuleSet, table: &LogsourceTable) -> Engine {
        Engine::compile_rules(set.rules.clone(), &set.filters, table)
    }

    /// [`Engine::compile`], taking the rules rather than copying them.
    pub fn compile_rules(mut rules: Vec<Rule>, filters: &[Filter], table: &LogsourceTable) -> Engine {
        for f in filters {
            for r in rules.iter_mut() {
                let named =
                    f.rules.iter().any(|n| r.id.as_deref() == Some(n.as_str()) || r.name.as_deref() == Some(n.as_str()) || r.title == *n);
                if named {
                    let det = std::mem::replace(&mut r.detection, Expr::Const(false));
                    r.detection = Expr::And(vec![det, Expr::not(f.detection.clone())]);
                }
            }
        }
        // Each rule's log source, resolved once for the regexes below and for indexing.
        let resolutions: Vec<Resolution> = rules.iter().map(|r| table.resolve(&r.logsource)).collect();
        let mut patterns: Vec<String> = Vec::new();
        for (r, resolution) in rules.iter().zip(&resolutions) {
            // A rule no input can reach (a Linux or cloud rule) needs no regex: its leaves
            // are never tested, and one too big to compile would not fail it.
            if !matches!(resolution, Resolution::Variants(v) if !v.is_empty()) {
                continue;
            }
            let mut leaves = Vec::new();
            r.detection.leaves(&mut leaves);
            patterns.extend(leaves.iter().filter_map(|l| leaf_regex(&l.pred)));
        }
        patterns.sort();
        patterns.dedup();
        let prepared: Vec<_> = patterns.par_iter().map(|p| prepare_regex(p)).collect();
        let mut regexes = HashMap::new();
        let mut bad = HashMap::new();
        let mut eager = Vec::new();
        for (p, re) in patterns.into_iter().zip(prepared) {
            match re {
                Ok((re, needs_eager)) => {
                    let re = Arc::new(re);
                    if needs_eager {
                        eager.push(re.clone());
                    }
                    regexes.insert(p, re);
                }
                Err(e) => {
                    bad.insert(p, e);
                }
            }
        }
        // Regexes that may outgrow the size limit compile while the rules are indexed;
        // in the rare case one fails, its rules are indexed again without it.
        let (mut engine, ()) = rayon::join(
            || Engine::index(rules, &resolutions, regexes.clone(), bad.clone()),
            || {
                eager.par_iter().for_each(|re| {
                    let _ = re.compile_now();
                })
            },
        );
        let too_big: Vec<(String, String)> =
            eager.iter().filter_map(|re| re.failure().map(|e| (re.pattern.clone(), e.to_string()))).collect();
        if too_big.is_empty() {
            return engine;
        }
        for (p, e) in too_big {
            regexes.remove(&p);
            bad.insert(p, e);
        }
        Engine::index(std::mem::take(&mut engine.rules), &resolutions, regexes, bad)
    }

    /// Groups the rules by their log sources (`resolutions`, one per rule), with their
    /// regexes prepared (`regexes`) or known to be unusable (`bad`, whose rules fail).
    ///
    /// One pass over the rules, in order, gives each rule's variants their group and
    /// numbers the fields; each group interns its leaves and builds its matchers later, when
    /// first needed ([`Engine::group`]; groups share only the field numbers fixed here).
    fn index(
        rules: Vec<Rule>,
        resolutions: &[Resolution],
        regexes: HashMap<String, Arc<LazyRegex>>,
        bad_regexes: HashMap<String, String>,
    ) -> Engine {
        let mut plan = Plan::default();
        let mut unmapped = Vec::new();
        let mut failed = Vec::new();
        for (ri, (rule, resolution)) in rules.iter().zip(resolutions).enumerate() {
            match resolution {
                Resolution::Unmapped(reason) => unmapped.push(Unmapped { rule: ri, reason: reason.clone() }),
                Resolution::Variants(variants) => {
                    if variants.is_empty() {
                        continue;
                    }
                    if let Some(reason) = bad_regex(&rule.detection, &bad_regexes) {
                        failed.push(LoadError {
                            path: rule.origin.path.to_string(),
                            line: rule.origin.line,
                            reason,
                            needs_placeholder: false,
                        });
                        continue;
                    }
                    for v in variants {
                        let conditions: Vec<Expr<LeafSpec>> = v
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
                        plan.add(ri as u32, v.selector.clone(), conditions, &rule.detection);
                    }
                }
            }
        }
        let Plan { fields, as_written: fields_as_written, groups, .. } = plan;
        let groups = groups.into_iter().map(LazyGroup::new).collect();
        Engine { rules, unmapped, failed, fields, fields_as_written, groups, regexes, automata: Default::default() }
    }

    /// Group `g`'s matchers, built the first time an event of its class is scanned: a hunt
    /// of web logs never builds the Windows groups. Threads that need a group
    /// being built wait for it.
    #[inline]
    pub(super) fn group(&self, g: usize) -> &Group {
        let lazy = &self.groups[g];
        lazy.built.get_or_init(|| self.build(lazy))
    }

    /// Builds every group not yet built, in parallel: for callers that want all the work
    /// done before the first event (and for tests that inspect the groups).
    pub fn build_all_groups(&self) {
        (0..self.groups.len()).into_par_iter().for_each(|g| {
            self.group(g);
        });
    }

    fn build(&self, lazy: &LazyGroup) -> Group {
        let mut group = build_group(lazy.plan.intern(&self.rules, &self.fields_as_written, &self.fields), &self.fields, &self.regexes);
        self.attach_automata(&mut group);
        group
    }

    /// Gives every field matcher of a group just built its (lazily built) automaton.
    /// Groups often share a pattern set (the Sysmon and Security variants of
    /// process_creation, for one), so each distinct set has one automaton, kept by the
    /// engine under a hash of the set.
    fn attach_automata(&self, g: &mut Group) {
        let mut automata = self.automata.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut shared = |patterns: Vec<String>| -> Arc<LazyAutomaton> {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for p in &patterns {
                h.update(&(p.len() as u64).to_le_bytes());
                h.update(p.as_bytes());
            }
            let same = automata.entry(h.digest128()).or_default();
            if let Some(a) = same.iter().find(|a| a.patterns == patterns) {
                return a.clone();
            }
            let a = Arc::new(LazyAutomaton::new(patterns));
            same.push(a.clone());
            a
        };
        for m in g.fields.iter_mut().chain(g.keywords.as_mut()) {
            if !m.patterns.is_empty() {
                m.ac = Some(shared(std::mem::take(&mut m.patterns)));
            }
            if let Some(od) = &mut m.on_demand {
                od.ac = Some(shared(std::mem::take(&mut od.patterns)));
            }
        }
    }
}

/// A group as indexing left it: its event class and rules known at once, its matchers
/// built by [`Engine::group`] when first needed.
pub(super) struct LazyGroup {
    plan: GroupPlan,
    built: std::sync::OnceLock<Group>,
}

impl LazyGroup {
    fn new(plan: GroupPlan) -> LazyGroup {
        LazyGroup { plan, built: Default::default() }
    }

    /// The event class it covers.
    pub(super) fn selector(&self) -> &Selector {
        &self.plan.selector
    }

    /// The rules (indexes into [`Engine::rules`]) it holds, once per variant.
    pub(super) fn rules(&self) -> impl Iterator<Item = u32> + '_ {
        self.plan.variants.iter().map(|v| v.rule)
    }

    /// Whether its matchers have been built.
    #[cfg(test)]
    pub(super) fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

/// Why a rule cannot be compiled, if one of its regexes is unusable.
fn bad_regex(detection: &Expr<LeafSpec>, bad_regexes: &HashMap<String, String>) -> Option<String> {
    if bad_regexes.is_empty() {
        return None;
    }
    let mut leaves = Vec::new();
    detection.leaves(&mut leaves);
    leaves.iter().find_map(|l| {
        let pattern = leaf_regex(&l.pred)?;
        let e = bad_regexes.get(&pattern)?;
        Some(format!("regex `{}`: {e}", abbreviated(&pattern)))
    })
}

/// The first pass of indexing: each rule variant in its group, and every field numbered
/// in the order the rules first name it.
#[derive(Default)]
struct Plan {
    fields: HashMap<String, FieldId, FxBuild>,
    /// Field numbers by the name as a rule writes it (after its log source's renaming,
    /// before normalising); kept by the engine for building groups.
    as_written: HashMap<String, FieldId, FxBuild>,
    groups: Vec<GroupPlan>,
    group_index: HashMap<Selector, usize, FxBuild>,
    /// A scratch buffer for normalised field names.
    key: String,
}

/// The rule variants of one group, to be interned by [`GroupPlan::intern`].
struct GroupPlan {
    selector: Selector,
    variants: Vec<VariantPlan>,
}

/// One rule for one way its log source is met: the log source's own field tests
/// (`conditions`) and the rule's detection, all of which must hold.
struct VariantPlan {
    rule: u32,
    conditions: Vec<Expr<LeafSpec>>,
}

impl Plan {
    fn field(&mut self, name: &str) -> FieldId {
        // Rules name the same few hundred fields thousands of times, as written.
        if let Some(&id) = self.as_written.get(name) {
            return id;
        }
        normalise_field_name(name, &mut self.key);
        let id = match self.fields.get(self.key.as_str()) {
            Some(&id) => id,
            None => {
                let id = self.fields.len() as FieldId;
                self.fields.insert(self.key.clone(), id);
                id
            }
        };
        self.as_written.insert(name.to_string(), id);
        id
    }

    fn add(&mut self, rule: u32, selector: Selector, conditions: Vec<Expr<LeafSpec>>, detection: &Expr<LeafSpec>) {
        let mut leaves = Vec::new();
        for c in &conditions {
            c.leaves(&mut leaves);
        }
        detection.leaves(&mut leaves);
        for spec in leaves {
            // A field reference's other field is numbered before its own.
            if let Pred::FieldRef { other, .. } = &spec.pred {
                self.field(selector.map_field(other));
            }
            if let Some(f) = spec.field.as_deref() {
                self.field(selector.map_field(f));
            }
        }
        let gi = match self.group_index.get(&selector) {
            Some(&g) => g,
            None => {
                self.group_index.insert(selector.clone(), self.groups.len());
                self.groups.push(GroupPlan { selector, variants: Vec::new() });
                self.groups.len() - 1
            }
        };
        self.groups[gi].variants.push(VariantPlan { rule, conditions });
    }
}

/// A group's distinct leaves and its rules as expressions over them.
#[derive(Default)]
struct GroupBuilder {
    leaves: Vec<(Option<FieldId>, Pred)>,
    leaf_index: HashMap<Box<[u8]>, LeafId, FxBuild>,
    rules: Vec<GroupRule>,
}

impl GroupPlan {
    /// Every distinct leaf of the group's rules once, and each rule variant as a program
    /// over them. Field numbers come from `as_written`, where indexing put every name these
    /// rules use; `fields` (by normalised name) answers any other.
    fn intern(
        &self,
        rules: &[Rule],
        as_written: &HashMap<String, FieldId, FxBuild>,
        fields: &HashMap<String, FieldId, FxBuild>,
    ) -> GroupBuilder {
        let mut g = GroupBuilder::default();
        let selector = &self.selector;
        let mut key = String::new();
        let mut leaf_key_buf = Vec::new();
        for v in &self.variants {
            let Some(rule) = rules.get(v.rule as usize) else { continue };
            let mut intern = |spec: &LeafSpec| -> LeafId {
                let field = spec.field.as_deref().map(|f| selector.map_field(f));
                let renamed;
                let pred = match &spec.pred {
                    Pred::FieldRef { other, mode, cased } => {
                        renamed = Pred::FieldRef { other: selector.map_field(other).to_string(), mode: *mode, cased: *cased };
                        &renamed
                    }
                    p => p,
                };
                leaf_key(field, pred, &mut leaf_key_buf);
                if let Some(&known) = g.leaf_index.get(leaf_key_buf.as_slice()) {
                    return known;
                }
                // The first pass numbered every field.
                let fid = field.and_then(|f| {
                    as_written.get(f).copied().or_else(|| {
                        normalise_field_name(f, &mut key);
                        fields.get(key.as_str()).copied()
                    })
                });
                let id = g.leaves.len() as LeafId;
                g.leaves.push((fid, pred.clone()));
                g.leaf_index.insert(leaf_key_buf.as_slice().into(), id);
                id
            };
            let mut parts: Vec<Expr<LeafId>> = v.conditions.iter().map(|c| c.map_ref(&mut intern)).collect();
            parts.push(rule.detection.map_ref(&mut intern));
            let compiled = Expr::and(parts);
            let compiled = cheap_first(compiled, &|l| is_costly(&g.leaves[l as usize].1));
            let program = compile_program(&compiled);
            g.rules.push(GroupRule { rule: v.rule, expr: compiled, program });
        }
        g
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
    /// The reordered expression, and whether it has a costly leaf (found on the way up,
    /// so each subtree is walked once).
    fn walk(e: Expr<LeafId>, costly: &impl Fn(LeafId) -> bool) -> (Expr<LeafId>, bool) {
        let children = |v: Vec<Expr<LeafId>>, reorder: bool| {
            let mut v: Vec<(Expr<LeafId>, bool)> = v.into_iter().map(|c| walk(c, costly)).collect();
            if reorder {
                v.sort_by_key(|(_, c)| *c);
            }
            let any = v.iter().any(|(_, c)| *c);
            (v.into_iter().map(|(e, _)| e).collect::<Vec<_>>(), any)
        };
        match e {
            Expr::Leaf(l) => (Expr::Leaf(l), costly(l)),
            Expr::And(v) => {
                let (v, any) = children(v, true);
                (Expr::And(v), any)
            }
            Expr::Or(v) => {
                let (v, any) = children(v, true);
                (Expr::Or(v), any)
            }
            Expr::AtLeast(n, v) => {
                let (v, any) = children(v, false);
                (Expr::AtLeast(n, v), any)
            }
            Expr::Not(inner) => {
                let (inner, any) = walk(*inner, costly);
                (Expr::Not(Box::new(inner)), any)
            }
            Expr::Const(b) => (Expr::Const(b), false),
        }
    }
    walk(e, costly).0
}

/// Writes a canonical key for leaf deduplication (case folded where matching is) into
/// `out`: the field, then the predicate, each part length-prefixed so that no two leaves
/// write the same bytes unless they are the same leaf. Written into one reused buffer, as
/// the leaves of a group are mostly repeats (a thousand rules testing `Image`): a key of
/// owned strings cost an allocation per part per leaf, repeat or not.
fn leaf_key(field: Option<&str>, pred: &Pred, out: &mut Vec<u8>) {
    use std::io::Write;
    fn part(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        write(out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    // Copied, then lower-cased in place: both run over whole words, not byte by byte.
    let ascii_lower = |out: &mut Vec<u8>, s: &str| {
        let at = out.len();
        out.extend_from_slice(s.as_bytes());
        out[at..].make_ascii_lowercase();
    };
    out.clear();
    match field {
        None => out.push(0),
        Some(f) => {
            out.push(1);
            part(out, |out| ascii_lower(out, f));
        }
    }
    match pred {
        Pred::Str { toks, cased } => {
            out.extend_from_slice(&[b'S', u8::from(*cased)]);
            for t in toks {
                match t {
                    pattern::Tok::Lit(l) => {
                        out.push(b'L');
                        part(out, |out| match (*cased, l.is_ascii()) {
                            (true, _) => out.extend_from_slice(l.as_bytes()),
                            (false, true) => ascii_lower(out, l),
                            (false, false) => out.extend_from_slice(l.to_lowercase().as_bytes()),
                        });
                    }
                    pattern::Tok::Star => out.push(b'*'),
                    pattern::Tok::One => out.push(b'?'),
                    pattern::Tok::Dash => out.push(b'-'),
                }
            }
        }
        Pred::FieldRef { other, mode, cased } => {
            out.extend_from_slice(&[b'F', u8::from(*cased)]);
            part(out, |out| ascii_lower(out, other));
            let _ = write!(out, "{mode:?}");
        }
        // Every other predicate by its debug form (they are few, and some hold floats); it
        // is the key's last part, so it needs no length.
        p => {
            out.push(b'O');
            let _ = write!(out, "{p:?}");
        }
    }
}

/// The regex a leaf is tested with, if it needs one: a `re` pattern, or a string
/// pattern that neither the automata nor a [`StarGlob`] can answer (the last arm of the
/// string case in [`build_group`], which asks for the same pattern).
pub(super) fn leaf_regex(pred: &Pred) -> Option<String> {
    match pred {
        Pred::Re { pattern } => Some(pattern.clone()),
        Pred::Str { toks, cased } => {
            let fast = |l: &str| automaton_literal(l, *cased);
            match pattern::shape(toks) {
                Shape::Any => None,
                Shape::Exact("") => None,
                Shape::Exact(l) | Shape::Prefix(l) | Shape::Suffix(l) | Shape::Contains(l) if fast(l) => None,
                s if *cased && s != Shape::Glob => None,
                _ if !*cased && StarGlob::new(toks).is_some() => None,
                _ => Some(pattern::to_regex(toks, *cased)),
            }
        }
        _ => None,
    }
}

/// Whether a pattern's literal is matched by the lower-cased literal automata (else by a
/// test of its own): uncased, not empty, and folded exactly by ASCII case folding. Both
/// [`leaf_regex`] and [`build_group`] decide by it, so a regex is prepared for exactly the
/// leaves that will test with one.
fn automaton_literal(l: &str, cased: bool) -> bool {
    !cased && !l.is_empty() && pattern::ascii_fold_is_exact(l)
}

/// A pattern short enough to quote in a message: a hostile rule's can be megabytes.
pub(super) fn abbreviated(pattern: &str) -> String {
    const MAX: usize = 200;
    match pattern.char_indices().nth(MAX) {
        None => pattern.to_string(),
        Some((end, _)) => format!("{}… ({} characters)", &pattern[..end], pattern.chars().count()),
    }
}

/// The prepared regex for a pattern ([`leaf_regex`] put every one in the map; a miss
/// would be a bug, and gets a regex of its own rather than a panic).
fn shared_regex(regexes: &HashMap<String, Arc<LazyRegex>>, pattern: &str) -> Arc<LazyRegex> {
    match regexes.get(pattern) {
        Some(re) => re.clone(),
        None => Arc::new(LazyRegex::new(pattern.to_string(), None)),
    }
}

/// Above this many estimated NFA states a regex is compiled at load, to learn whether it
/// fits the size limit while the rule can still fail to load; below it, compiling is
/// left to the first use. The limit (8 MiB) is about 262,000 states (`a{262138}`
/// exceeds it); the estimate is at or above the real count (see `nfa_states_estimate`),
/// so regexes under this mark fit. The test below checks this at the boundary.
const EAGER_REGEX_STATES: u64 = 200_000;

/// Checks a regex's syntax and gives it its prefixes; true if it must be compiled at load
/// because it might be too big to compile at all.
fn prepare_regex(pattern: &str) -> Result<(LazyRegex, bool), String> {
    let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).map_err(|e| lazy_regex::message(&e))?;
    let eager = nfa_states_estimate(&hir) > EAGER_REGEX_STATES;
    Ok((LazyRegex::new(pattern.to_string(), regex_prefixes(&hir)), eager))
}

/// A generous estimate of the states a Thompson NFA for `hir` takes: repetitions copy
/// their body; a Unicode class takes a state per byte of each UTF-8 sequence it becomes.
fn nfa_states_estimate(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::{Class, HirKind};
    use regex_syntax::utf8::Utf8Sequences;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(l) => l.0.len() as u64,
        // Calibrated on the regex crate: states ≈ bytes / 32, e.g. `.` 31, `\w` 1,570,
        // `[\x{800}-\x{FFFF}]` 15, `(?i)[a-z]` 10; the estimates are 34, 4,934, 18 and 19.
        HirKind::Class(Class::Unicode(c)) => {
            let bytes: u64 = c.ranges().iter().flat_map(|r| Utf8Sequences::new(r.start(), r.end())).map(|seq| seq.len() as u64).sum();
            bytes + 2 * c.ranges().len() as u64 + 4
        }
        HirKind::Class(Class::Bytes(c)) => 3 * c.ranges().len() as u64 + 4,
        HirKind::Repetition(r) => {
            let copies = u64::from(r.max.unwrap_or(r.min).max(r.min)) + 1;
            nfa_states_estimate(&r.sub).saturating_add(1).saturating_mul(copies)
        }
        HirKind::Capture(c) => nfa_states_estimate(&c.sub).saturating_add(2),
        HirKind::Concat(v) => v.iter().fold(1, |n, h| n.saturating_add(nfa_states_estimate(h))),
        HirKind::Alternation(v) => v.iter().fold(2, |n, h| n.saturating_add(nfa_states_estimate(h)).saturating_add(2)),
    }
}

#[derive(Default)]
struct MatcherBuilder {
    /// The literals every value is searched for.
    eager: PatternSet,
    /// The literals searched only when a candidate rule asks (see [`OnDemand`]).
    on_demand: PatternSet,
    m: FieldMatcher,
}

/// Literals to be put in one automaton, each with the leaves it decides.
#[derive(Default)]
struct PatternSet {
    patterns: Vec<String>,
    index: HashMap<String, usize, FxBuild>,
    hits: Vec<Vec<(LeafId, How)>>,
}

impl PatternSet {
    fn add(&mut self, key: String, leaf: LeafId, how: How) {
        let idx = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.patterns.push(key.clone());
                self.hits.push(Vec::new());
                self.index.insert(key, self.patterns.len() - 1);
                self.patterns.len() - 1
            }
        };
        self.hits[idx].push((leaf, how));
    }
}

impl FieldMatcher {
    fn is_empty(&self) -> bool {
        self.patterns.is_empty()
            && self.on_demand.is_none()
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
        self.eager.add(key, leaf, how);
    }

    /// A literal no rule is indexed under: searched for only when a rule that is already a
    /// candidate asks for it.
    fn literal_on_demand(&mut self, lit: &str, leaf: LeafId, how: How) {
        self.on_demand.add(lit.to_ascii_lowercase(), leaf, how);
    }

    /// The matcher, with its automata still to be built from `patterns` (see [`Engine::attach_automata`]).
    fn finish(mut self) -> FieldMatcher {
        self.m.patterns = self.eager.patterns;
        self.m.hits = self.eager.hits;
        if !self.on_demand.patterns.is_empty() {
            let mut leaves: Vec<LeafId> = self.on_demand.hits.iter().flatten().map(|(l, _)| *l).collect();
            leaves.sort_unstable();
            leaves.dedup();
            self.m.on_demand = Some(OnDemand { patterns: self.on_demand.patterns, hits: self.on_demand.hits, leaves, ac: None });
        }
        self.m
    }
}

fn build_group(g: GroupBuilder, fields: &HashMap<String, FieldId, FxBuild>, regexes: &HashMap<String, Arc<LazyRegex>>) -> Group {
    let mut per_field: HashMap<Option<FieldId>, MatcherBuilder, FxBuild> = HashMap::default();
    let mut n_gates = 0u32;
    let n_leaves = g.leaves.len();
    let mut lazy: Vec<Lazy> = Vec::new();
    let mut lazy_index = vec![NONE; n_leaves];
    // Literal leaves, put in an automaton once it is known whether a rule is indexed under them.
    let mut literals: Vec<(Option<FieldId>, String, LeafId, How)> = Vec::new();
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
            lazy.push(Lazy::Test(field, test));
        };
        match pred {
            Pred::Str { toks, cased } => {
                let shape = pattern::shape(toks);
                let fast = |l: &str| automaton_literal(l, *cased);
                match shape {
                    Shape::Any => mb.m.direct.push(Direct { leaf: leaf_id, gate: None, test: Test::Any }),
                    Shape::Exact("") => mb.m.direct.push(Direct { leaf: leaf_id, gate: None, test: Test::Empty }),
                    Shape::Exact(l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        if field == NONE {
                            literals.push((*fid, l.to_string(), leaf_id, How::Exact))
                        } else {
                            mb.literal(l, leaf_id, How::Exact)
                        }
                    }
                    Shape::Prefix(l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        literals.push((*fid, l.to_string(), leaf_id, How::Prefix))
                    }
                    Shape::Suffix(l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        literals.push((*fid, l.to_string(), leaf_id, How::Suffix))
                    }
                    Shape::Contains(l) if fast(l) => {
                        cost[leaf] = lit_cost(l);
                        literals.push((*fid, l.to_string(), leaf_id, How::Contains))
                    }
                    ref s if *cased && *s != Shape::Glob => make_lazy(Test::Cased { shape: s.owned() }, &mut cost[leaf]),
                    _ => {
                        let test = match StarGlob::new(toks) {
                            Some(g) if !*cased => Test::Glob(g),
                            _ => Test::Regex(shared_regex(regexes, &pattern::to_regex(toks, *cased))),
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
                let re = shared_regex(regexes, pattern);
                let prefixes = re.prefixes.clone();
                let test = Test::Regex(re);
                match prefixes {
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
    // A keyword no rule is indexed under only matters once a rule is already a candidate
    // (`POST` and `200` beside an exploit's path): it is left out of the automaton every
    // event's text goes through, which then rarely hits and can be skipped by its filter
    // (see `gram`), and searched for by a second automaton when a candidate asks. Field
    // literals stay together: a field's values repeat, and the value cache answers them.
    for (fid, lit, leaf, how) in literals {
        let mb = per_field.entry(fid).or_default();
        if fid.is_none() && rows[leaf as usize].is_empty() {
            mb.literal_on_demand(&lit, leaf, how);
        } else {
            mb.literal(&lit, leaf, how);
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
    if let Some(od) = keywords.as_ref().and_then(|k| k.on_demand.as_ref()) {
        for &l in &od.leaves {
            lazy_index[l as usize] = lazy.len() as u32;
        }
        lazy.push(Lazy::Keywords);
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
fn regex_prefixes(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_total(64);
    let seq = ex.extract(hir);
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

/// Fields whose values repeat across most events of a class (a literal on them says little):
/// Windows event headers, and a web request's method, status and protocol (`cs-method: GET`
/// holds for half of a web log, so a rule is indexed under its URI or keywords instead).
const COMMON_FIELDS: &[&str] = &[
    "eventid",
    "channel",
    "provider_name",
    "eventtype",
    "level",
    "task",
    "opcode",
    "keywords",
    "version",
    "computer",
    "cs-method",
    "sc-status",
    "sc-substatus",
    "s-port",
    "cs-version",
    "method",
    "httpstatus",
    "protocol",
];

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every regex left to compile on first use must compile: the estimate may be
    /// generous but must not let a regex past the size limit slip through to the scan.
    /// For each body, the most copies the estimate leaves to first use must compile.
    #[test]
    fn lazily_compiled_regexes_fit_the_size_limit() {
        let bodies = [
            "a",
            "(?i)a",
            ".",
            "(?s).",
            r"\w",
            r"\pL",
            r"[^a]",
            r"[\x{80}-\x{10FFFF}]",
            r"\d",
            r"(?i)[a-z]",
            r"\s",
            r"[\x{100}-\x{7FF}]",
            r"[\x{800}-\x{FFFF}]",
            r"\p{Greek}",
            r"(?:ab|cd)",
            r"(?:a|bc|def|g)",
            r"\b",
            r"a?",
            r"a+",
            r"\S",
            r"[^\s]",
            r"(?i)ab",
            r"(a)",
        ];
        let estimate = |p: &str| nfa_states_estimate(&regex_syntax::ParserBuilder::new().build().parse(p).unwrap());
        for body in bodies {
            let (mut lo, mut hi) = (1u32, 10_000_000u32);
            while lo + 1 < hi {
                let mid = lo + (hi - lo) / 2;
                if estimate(&format!("(?:{body}){{{mid}}}")) <= EAGER_REGEX_STATES { lo = mid } else { hi = mid }
            }
            let pattern = format!("(?:{body}){{{lo}}}");
            assert!(
                crate::engine::lazy_regex::Matcher::new(&pattern).is_ok(),
                "{body}: {lo} copies are left to first use but do not compile"
            );
        }
    }

    #[test]
    fn a_regex_too_big_fails_its_rule_at_load_not_the_scan() {
        let rules = [
            format!(
                "title: glob\nlogsource: {{product: windows}}\ndetection:\n  s: {{CommandLine: 'a{}b'}}\n  condition: s\n",
                "?".repeat(300_000)
            ),
            "title: re\nlogsource: {product: windows}\ndetection:\n  s: {CommandLine|re: '(a{1000}){1000}'}\n  condition: s\n".to_string(),
        ];
        for text in rules {
            let mut set = crate::RuleSet::default();
            set.add_text(&text, "t.yml", &Default::default());
            let engine = Engine::compile(&set, &crate::LogsourceTable::builtin());
            assert_eq!(engine.failed.len(), 1, "{:?}", engine.failed);
            assert!(engine.failed[0].reason.contains("size limit"), "{}", engine.failed[0].reason);
            assert!(engine.failed[0].reason.len() < 400, "the message quotes the whole pattern");
        }
    }
}

//! Scanning events with a compiled engine: event classes to groups (cached), field
//! names to ids once, automata and direct tests per value (with a value cache), then
//! the candidate rules' programs.

use super::*;

impl Engine {
    /// Per-thread scratch for scanning; cheap to create, reuse it.
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
            fields_gen: 0,
            indexed_layout: 0,
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
            keyword_sample: gram::Sample::default(),
            keyword_filters: Vec::new(),
            hits: Vec::new(),
            matched_stamp: vec![0; self.rules.len()],
            match_gen: 0,
            value_cache: Vec::new(),
            recording: None,
            group_events: vec![0; self.groups.len()],
        }
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
    /// The generation of the field index (`slot_*`, `next_same`), and the layout of the
    /// event it was built for ([`Event::layout`]; 0 if unknown).
    fields_gen: u32,
    indexed_layout: u64,
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
    /// Recent keyword texts, and each keyword automaton's filter built from them (by
    /// the automaton's address, which lives as long as the engine).
    keyword_sample: gram::Sample,
    keyword_filters: Vec<(usize, gram::Judged)>,
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
            self.scan_group(self.engine.group(g as usize), ev, out);
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
                let gr = self.engine.group(g as usize);
                let matched: Vec<usize> =
                    (0..ev.len()).filter(|&i| self.field_ids[i] != NONE && gr.matcher_of[self.field_ids[i] as usize] != NONE).collect();
                let directs: usize =
                    matched.iter().map(|&i| gr.fields[gr.matcher_of[self.field_ids[i] as usize] as usize].direct.len()).sum();
                let acs: Vec<String> = matched
                    .iter()
                    .map(|&i| &gr.fields[gr.matcher_of[self.field_ids[i] as usize] as usize])
                    .chain(gr.keywords.as_ref())
                    .filter_map(|fm| fm.ac.as_ref().and_then(|l| l.describe()))
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
            .filter(|(_, g)| g.selector().covers(ev.source, channel, event_id, &ev.log_type))
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
            self.keyword_text_gen = 0;
            self.event_gen = 1;
        }
        // The same names in the same order as the last event (a web or Exchange log's
        // records): the same index.
        let layout = ev.layout();
        if layout != 0 && layout == self.indexed_layout && self.next_same.len() == ev.len() {
            return;
        }
        self.indexed_layout = layout;
        self.fields_gen = self.fields_gen.wrapping_add(1);
        if self.fields_gen == 0 {
            self.slot_gen.iter_mut().for_each(|g| *g = 0);
            self.fields_gen = 1;
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
            if self.slot_gen[id] != self.fields_gen {
                self.slot_gen[id] = self.fields_gen;
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
        for (name, _) in ev.field_bytes() {
            h.write(name);
            h.write_u8(0);
        }
        let key = h.finish();
        if let Some((names, ids)) = self.shapes.get(&key) {
            let mut at = 0usize;
            let same = ids.len() == ev.len()
                && ev.field_bytes().all(|(n, _)| {
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
        if field != NONE && self.slot_gen[f] == self.fields_gen { self.slot_first[f] } else { NONE }
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
    /// Inlined into the rule programs for the common case, a leaf already decided.
    #[inline]
    fn leaf(&mut self, g: &Group, l: LeafId, ev: &Event) -> bool {
        let (w, m) = (l as usize / 64, 1u64 << (l % 64));
        let li = g.lazy_index[l as usize];
        if li == NONE || self.lazy_done[w] & m != 0 {
            return self.bits[w] & m != 0;
        }
        self.lazy_leaf(g, li, (w, m), ev)
    }

    /// Computes lazy leaf `li` (bit `m` of word `w`) for this event.
    #[inline(never)]
    fn lazy_leaf(&mut self, g: &Group, li: u32, (w, m): (usize, u64), ev: &Event) -> bool {
        self.lazy_done[w] |= m;
        match &g.lazy[li as usize] {
            Lazy::Keywords => {
                if let Some(kw) = &g.keywords {
                    self.search_keywords_on_demand(kw, ev);
                }
                self.bits[w] & m != 0
            }
            Lazy::Test(field, test) if *field == NONE => {
                let hit = keyword_values(ev).any(|(value, kind)| self.test(test, value, kind, ev));
                if hit {
                    self.bits[w] |= m;
                }
                hit
            }
            Lazy::Test(field, test) => {
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
        }
    }

    /// Decides every keyword searched on demand for this event: their automaton over the
    /// keyword text.
    fn search_keywords_on_demand(&mut self, kw: &FieldMatcher, ev: &Event) {
        let Some(od) = &kw.on_demand else { return };
        for &l in &od.leaves {
            self.lazy_done[l as usize / 64] |= 1 << (l % 64);
        }
        self.build_keyword_text(ev);
        let Some(ac) = &od.ac else { return };
        let text = std::mem::take(&mut self.keyword_text);
        self.match_literals(&od.hits, ac, Some(&text));
        self.keyword_text = text;
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
        // The matcher's address names it: it lives as long as the engine.
        let id = fm as *const FieldMatcher as usize;
        let mut h = FxHasher::default();
        h.write(value.as_bytes());
        h.write_usize(id);
        let slot = (h.finish() as usize) % VALUE_CACHE_SLOTS;
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
            if let Some(ac) = &fm.ac {
                self.match_literals(&fm.hits, ac, if upper { None } else { Some(value.as_bytes()) });
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
        if let Some(lazy) = &kw.ac {
            self.build_keyword_text(ev);
            let key = Arc::as_ptr(lazy) as usize;
            let at = match self.keyword_filters.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    self.keyword_filters.push((key, gram::Judged::default()));
                    self.keyword_filters.len() - 1
                }
            };
            let search = self.keyword_filters[at].1.must_search(&lazy.patterns, &self.keyword_sample, &self.keyword_text);
            if search {
                let text = std::mem::take(&mut self.keyword_text);
                self.match_literals(&kw.hits, lazy, Some(&text));
                self.keyword_text = text;
            }
        }
        // A test whose literal the text lacks (its gate is shut) passes over every value:
        // when all are such, the values are not gone through at all.
        if kw.direct.iter().any(|d| d.gate.is_none_or(|gi| self.gate_open(gi))) {
            for (value, kind) in keyword_values(ev) {
                self.match_directs(kw, value, kind, ev);
            }
        }
        self.close_gates(kw);
    }

    /// The event's keyword text in `keyword_text`, built once per event.
    fn build_keyword_text(&mut self, ev: &Event) {
        if self.keyword_text_gen == self.event_gen {
            return;
        }
        self.keyword_text_gen = self.event_gen;
        let joined = &mut self.keyword_text;
        joined.clear();
        // Values as bytes: none is sliced as text (a check of both ends per value).
        if ev.raw.is_empty() {
            for (_, value) in ev.field_bytes() {
                joined.extend_from_slice(value);
                joined.push(0);
            }
        } else {
            joined.extend_from_slice(ev.raw.as_bytes());
            append_values_with_spaces(ev, joined);
        }
        joined.make_ascii_lowercase();
        self.keyword_sample.offer(&self.keyword_text);
    }

    /// Sets the leaves an automaton decides for `hay` (or, if None, the folded buffer).
    fn match_literals(&mut self, hits: &[Vec<(LeafId, How)>], ac: &LazyAutomaton, hay: Option<&[u8]>) {
        let hay = hay.unwrap_or(&self.folded);
        let len = hay.len();
        self.hits.clear();
        ac.find_all(hay, &mut self.hits);
        for k in 0..self.hits.len() {
            let (p, start, end) = self.hits[k];
            let (start, end) = (start as usize, end as usize);
            for &(leaf, how) in &hits[p as usize] {
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
                && !self.gate_open(gi)
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

    /// Whether a gated test's literal was found in the current value (or, for keywords,
    /// the event's text).
    fn gate_open(&self, gi: u32) -> bool {
        self.gates[gi as usize / 64] & (1 << (gi % 64)) != 0
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

/// What a keyword test that is not a literal search reads: every value of the event, then
/// its raw line (for line-based logs).
fn keyword_values(ev: &Event) -> impl Iterator<Item = (&str, ValueKind)> {
    ev.fields().map(|f| (f.value, f.kind)).chain((!ev.raw.is_empty()).then_some((ev.raw.as_str(), ValueKind::Str)))
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

/// Appends to a line's keyword text each value of the event that holds a space (one the
/// reader decoded: `+` in a web log's user agent), after a NUL; a value equal to the one
/// appended before it is left out (aliases: `cs(User-Agent)` and `cs-user-agent`).
fn append_values_with_spaces(ev: &Event, joined: &mut Vec<u8>) {
    // Most values have no space: one search of the event's whole text finds those that do
    // (a space in a value already appended or in a name starts the search again later).
    let text = ev.field_stream();
    let mut space = memchr::memchr(b' ', text);
    let mut previous: &[u8] = &[];
    for span in ev.value_spans() {
        let Some(at) = space else { break };
        if at < span.start {
            space = text.get(span.start..).and_then(|rest| memchr::memchr(b' ', rest)).map(|p| p + span.start);
        }
        if space.is_none_or(|at| at >= span.end) {
            continue;
        }
        let value = &text[span];
        if value == previous {
            continue;
        }
        previous = value;
        joined.push(0);
        joined.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use portcullis_event::{Event, SourceKind, ValueKind};

    /// What [`super::append_values_with_spaces`] appends, value by value.
    fn reference(ev: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        let mut previous: &[u8] = &[];
        for (_, value) in ev.field_bytes() {
            if !value.contains(&b' ') || value == previous {
                continue;
            }
            previous = value;
            out.push(0);
            out.extend_from_slice(value);
        }
        out
    }

    #[test]
    fn values_with_spaces_are_found_by_one_search_as_value_by_value() {
        // Values and names with and without spaces, in every order, repeated and not.
        let parts = ["", " ", "a", "a b", "a b ", " a", "ab", "x y z", "  ", "Mozilla/5.0 (Windows NT 10.0)"];
        let names = ["n", "cs(User-Agent)", "a name"];
        let mut seed = 7u64;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..3000 {
            let mut ev = Event::new(SourceKind::W3c);
            for _ in 0..next(8) {
                ev.push(names[next(names.len())], parts[next(parts.len())], ValueKind::Str);
            }
            let mut got = Vec::new();
            super::append_values_with_spaces(&ev, &mut got);
            assert_eq!(got, reference(&ev), "{:?}", ev.fields().map(|f| (f.name, f.value)).collect::<Vec<_>>());
        }
    }
}

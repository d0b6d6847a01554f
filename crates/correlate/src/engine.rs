//! The correlation state machines. Inputs must arrive in time order (see the sorter).
//! State is kept per (correlation, group) and dropped once its window has passed, so
//! memory follows the number of groups active within a timespan, not the event count.

use std::collections::{HashMap, VecDeque};

use hashbrown::hash_map::EntryRef;
use std::sync::Arc;

use portcullis_event::text_hash::TextHash;

use crate::parse::{Correlation, CorrelationSet, Kind, Source};
use crate::sorter::Input;

/// Keyed by event values (group keys, counted values): seeded, so that keys which collide
/// cannot be prepared in the logs.
type Map<K, V> = hashbrown::HashMap<K, V, TextHash>;

/// At most this many evidence ids are kept per finding.
pub const MAX_EVIDENCE: usize = 64;

/// A correlation that fired for one group.
#[derive(Clone, Debug)]
pub struct CorrelationFinding {
    /// Stable: a hash of the correlation, the group and the evidence.
    pub id: String,
    pub correlation: usize,
    /// The group-by fields and their values.
    pub group: Vec<(String, String)>,
    pub first_ts: i64,
    pub last_ts: i64,
    /// The measured value the condition held for (count, distinct values, sum, average, percent).
    pub value: f64,
    /// Finding ids of the contributing events (at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<String>,
    pub evidence_total: u64,
    /// Entities of the contributing events (`kind=value`), at most [`MAX_ENTITIES`].
    pub entities: Vec<String>,
    /// `id` as the number it was written from: a chained correlation's evidence.
    pub(crate) id_hash: u128,
}

/// At most this many distinct entities are kept per group.
pub const MAX_ENTITIES: usize = 32;

#[derive(Default)]
struct GroupState {
    /// Oldest first.
    window: VecDeque<Entry>,
    /// Distinct values in the window with their counts (value_count, value_percentile).
    counts: Map<Arc<str>, u32>,
    sum: f64,
    /// temporal: latest time each position was seen; temporal_ordered: start of the best
    /// chain that has completed each prefix length.
    marks: Vec<Option<i64>>,
    opened: i64,
    last: i64,
    entities: std::collections::BTreeSet<Arc<str>>,
    /// The seeded hash (never 0) of the last input's entity list, to skip re-adding the
    /// same list: a group's inputs mostly carry one list, and comparing it as text read
    /// another allocation per input. Lists whose hashes collide (odds 2^-63, the seed
    /// unknown to whoever writes the logs) would only leave the second list's entities out
    /// of the group's summary, never change what fires.
    last_entities: u64,
}

/// One input in a group's window.
struct Entry {
    ts: i64,
    value: Arc<str>,
    /// The finding id of the matched event.
    evidence: u128,
}

/// Runs every correlation over a time-ordered input stream.
pub struct Correlator {
    set: Arc<CorrelationSet>,
    states: Vec<Map<String, GroupState>>,
    now: i64,
    since_sweep: u32,
    /// Findings of correlations nobody else consumes (the ones to report).
    pub findings: Vec<CorrelationFinding>,
    /// Findings of every correlation, including those that only feed others.
    pub all_findings: u64,
    /// Inputs that arrived out of time order (processed at their own time anyway).
    pub late_inputs: u64,
    /// Largest number of live groups seen at once (for memory reporting).
    pub peak_groups: usize,
}

impl Correlator {
    pub fn new(set: Arc<CorrelationSet>) -> Correlator {
        let n = set.correlations.len();
        Correlator {
            set,
            states: (0..n).map(|_| Map::default()).collect(),
            now: i64::MIN,
            since_sweep: 0,
            findings: Vec::new(),
            all_findings: 0,
            late_inputs: 0,
            peak_groups: 0,
        }
    }

    pub fn live_groups(&self) -> usize {
        self.states.iter().map(|s| s.len()).sum()
    }

    /// Processes one input (inputs must come in time order; a late one is counted).
    pub fn push(&mut self, input: Input) {
        if input.ts < self.now {
            self.late_inputs += 1;
        } else {
            self.now = input.ts;
        }
        self.since_sweep += 1;
        if self.since_sweep >= 4096 {
            self.sweep(false);
        }
        // Most inputs make no finding: the queue for the findings' own inputs (chained
        // correlations) is only allocated when one does.
        let Some(f) = self.process(input) else { return };
        let mut queue = Vec::new();
        self.emit(f, &mut queue);
        while let Some(inp) = queue.pop() {
            if let Some(f) = self.process(inp) {
                self.emit(f, &mut queue);
            }
        }
    }

    /// Closes every open window (end of input).
    pub fn finish(&mut self) {
        self.sweep(true);
    }

    fn emit(&mut self, f: CorrelationFinding, queue: &mut Vec<Input>) {
        self.all_findings += 1;
        let source = Source::Correlation(f.correlation);
        match self.set.subscribers.get(&source) {
            Some(subs) => {
                for &(ci, pos) in subs {
                    let outer = &self.set.correlations[ci];
                    let fields: HashMap<&str, &str> = f.group.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let Some(group) = group_key(outer, pos, |name| fields.get(name).copied()) else {
                        continue;
                    };
                    let value = outer.field.as_deref().and_then(|fname| fields.get(fname).copied()).unwrap_or_default();
                    let entities = f.entities.join("\u{1f}");
                    queue.push(Input::new(f.last_ts, ci as u32, pos as u32, f.id_hash, &group, value, &entities));
                }
            }
            None => self.findings.push(f),
        }
    }

    fn process(&mut self, inp: Input) -> Option<CorrelationFinding> {
        let (ts, pos, evidence) = (inp.ts, inp.pos, inp.evidence);
        let (group, value, entities) = (inp.group(), inp.value(), inp.entities());
        let ci = inp.corr as usize;
        let Correlator { set, states: all_states, peak_groups, .. } = self;
        let c = &set.correlations[ci];
        let span = c.timespan_micros;
        let (before, rest) = all_states.split_at_mut(ci);
        let (states, after) = rest.split_first_mut()?;
        let here = states.len();
        let st = match states.entry_ref(group) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => {
                let live: usize = before.iter().chain(after.iter()).map(|s| s.len()).sum::<usize>() + here + 1;
                *peak_groups = (*peak_groups).max(live);
                v.insert(GroupState { opened: ts, marks: vec![None; c.sources.len() + 1], ..Default::default() })
            }
        };
        // A window that opened at a group's first event closes after `timespan`.
        let mut closed = None;
        if !c.condition.grows() && ts - st.opened > span {
            // As a sweep closes it (a percentile is judged per event, not at the close).
            if c.kind != Kind::ValuePercentile {
                closed = evaluate(c, ci, group, st);
            }
            *st = GroupState { opened: ts, marks: vec![None; c.sources.len() + 1], ..Default::default() };
        } else if c.condition.grows() && ts - st.last > span && ts - st.opened > span {
            // Every input of the sliding window has passed: start afresh, as if a sweep had
            // dropped the group, so that findings (their entities) do not depend on when
            // sweeps happen to run, or on which other groups share the stream.
            *st = GroupState { opened: ts, marks: vec![None; c.sources.len() + 1], ..Default::default() };
        }
        st.last = ts;
        // A full entity set takes no more: the list is not even hashed.
        if st.entities.len() < MAX_ENTITIES {
            let entities_hash = TextHash::default().hash_bytes(entities.as_bytes()) | 1;
            if st.last_entities != entities_hash {
                for e in entities.split('\u{1f}').filter(|e| !e.is_empty()) {
                    if st.entities.len() >= MAX_ENTITIES {
                        break;
                    }
                    if !st.entities.contains(e) {
                        st.entities.insert(Arc::from(e));
                    }
                }
                st.last_entities = entities_hash;
            }
        }
        // Only value correlations need the values kept. A counted value is the key already
        // counted, when there is one: one allocation per distinct value, not per input.
        // Counted here, before the window's old inputs are forgotten below: the value's count
        // then never passes through zero, and the final counts are the same.
        let value: Arc<str> = match c.kind {
            Kind::ValueCount | Kind::ValuePercentile => match st.counts.entry_ref(value) {
                EntryRef::Occupied(mut o) => {
                    *o.get_mut() += 1;
                    o.key().clone()
                }
                EntryRef::Vacant(v) => {
                    let key: Arc<str> = Arc::from(v.key());
                    v.insert_with_key(key.clone(), 1);
                    key
                }
            },
            _ if value.is_empty() => empty(),
            _ => Arc::from(value),
        };
        st.window.push_back(Entry { ts, value: value.clone(), evidence });
        if c.condition.grows() {
            // Sliding window: drop what fell out of it.
            while st.window.front().is_some_and(|old| ts - old.ts > span) {
                if let Some(old) = st.window.pop_front() {
                    forget(c.kind, st, &old);
                }
            }
        }
        match c.kind {
            Kind::ValueCount | Kind::ValuePercentile => {}
            Kind::ValueSum | Kind::ValueAvg => st.sum += value.trim().parse::<f64>().unwrap_or(0.0),
            Kind::Temporal => st.marks[pos as usize] = Some(ts),
            Kind::TemporalOrdered => advance_chain(c, st, pos as usize, ts),
            Kind::EventCount => {}
        }
        if closed.is_some() {
            return closed;
        }
        if c.condition.grows() {
            let measured = match c.kind {
                Kind::ValuePercentile => percentile_of(st, &value),
                _ => measure(c.kind, st, ts, span),
            };
            if c.condition.holds(measured) {
                let f = finding(c, ci, group, st, measured);
                states.remove(group);
                return Some(f);
            }
        } else if c.kind == Kind::ValuePercentile {
            // Percentile with lte/lt: the value is rare *so far* in this window.
            let measured = percentile_of(st, &value);
            if st.window.len() >= 2 && c.condition.holds(measured) {
                return Some(finding(c, ci, group, st, measured));
            }
        }
        None
    }

    /// Drops groups whose window has passed, evaluating closing windows first.
    fn sweep(&mut self, all: bool) {
        self.since_sweep = 0;
        let set = self.set.clone();
        let mut out = Vec::new();
        for (ci, states) in self.states.iter_mut().enumerate() {
            let c = &set.correlations[ci];
            let span = c.timespan_micros;
            let now = self.now;
            states.retain(|group, st| {
                let expired = all || now.saturating_sub(st.last) > span && now.saturating_sub(st.opened) > span;
                if !expired {
                    return true;
                }
                if !c.condition.grows()
                    && c.kind != Kind::ValuePercentile
                    && let Some(f) = evaluate(c, ci, group, st)
                {
                    out.push(f);
                }
                false
            });
        }
        // In an order of their own, not the maps' (which the seed changes from run to run),
        // so that correlations fed by these findings see them in the same order every time.
        out.sort_by(|a, b| (a.last_ts, a.correlation, &a.id).cmp(&(b.last_ts, b.correlation, &b.id)));
        let mut queue = Vec::new();
        for f in out {
            self.emit(f, &mut queue);
        }
        while let Some(inp) = queue.pop() {
            if let Some(f) = self.process(inp) {
                self.emit(f, &mut queue);
            }
        }
    }
}

fn empty() -> Arc<str> {
    thread_local! {
        static EMPTY: Arc<str> = Arc::from("");
    }
    EMPTY.with(|e| e.clone())
}

fn forget(kind: Kind, st: &mut GroupState, old: &Entry) {
    match kind {
        Kind::ValueCount | Kind::ValuePercentile => {
            if let EntryRef::Occupied(mut o) = st.counts.entry_ref(&*old.value) {
                *o.get_mut() -= 1;
                if *o.get() == 0 {
                    o.remove();
                }
            }
        }
        Kind::ValueSum | Kind::ValueAvg => st.sum -= old.value.trim().parse::<f64>().unwrap_or(0.0),
        _ => {}
    }
}

/// temporal_ordered: an event for position `p` extends every chain that completed
/// positions 0..p within the timespan; the latest start is kept (most time left).
fn advance_chain(c: &Correlation, st: &mut GroupState, pos: usize, ts: i64) {
    let name = &c.source_names[pos];
    // The same rule may appear at several positions: extend the longest prefixes first,
    // so one event is not used twice in a chain.
    for p in (0..c.sources.len()).rev() {
        if &c.source_names[p] != name {
            continue;
        }
        let start = if p == 0 { Some(ts) } else { st.marks[p].filter(|s| ts - *s <= c.timespan_micros) };
        if let Some(s) = start {
            st.marks[p + 1] = Some(st.marks[p + 1].map_or(s, |old| old.max(s)));
        }
    }
}

fn measure(kind: Kind, st: &GroupState, now: i64, span: i64) -> f64 {
    match kind {
        Kind::EventCount => st.window.len() as f64,
        Kind::ValueCount => st.counts.len() as f64,
        Kind::ValueSum => st.sum,
        Kind::ValueAvg => {
            if st.window.is_empty() {
                0.0
            } else {
                st.sum / st.window.len() as f64
            }
        }
        Kind::Temporal => st.marks.iter().filter(|m| m.is_some_and(|t| now - t <= span)).count() as f64,
        Kind::TemporalOrdered => {
            let n = st.marks.len() - 1;
            // How many positions of the order were met by the best chain.
            (0..=n).rev().find(|k| *k == 0 || st.marks[*k].is_some_and(|s| now - s <= span)).unwrap_or(0) as f64
        }
        Kind::ValuePercentile => 100.0,
    }
}

fn percentile_of(st: &GroupState, v: &Arc<str>) -> f64 {
    let total = st.window.len().max(1) as f64;
    st.counts.get(v).copied().unwrap_or(0) as f64 * 100.0 / total
}

fn evaluate(c: &Correlation, ci: usize, group: &str, st: &GroupState) -> Option<CorrelationFinding> {
    if st.window.is_empty() {
        return None;
    }
    let measured = measure(c.kind, st, st.last, c.timespan_micros);
    c.condition.holds(measured).then(|| finding(c, ci, group, st, measured))
}

fn finding(c: &Correlation, ci: usize, group: &str, st: &GroupState, value: f64) -> CorrelationFinding {
    use xxhash_rust::xxh3::Xxh3;
    let first_ts = st.window.front().map(|w| w.ts).unwrap_or(st.opened);
    let last_ts = st.window.back().map(|w| w.ts).unwrap_or(st.last);
    let mut h = Xxh3::new();
    h.update(c.key().as_bytes());
    h.update(&[0]);
    h.update(group.as_bytes());
    h.update(&first_ts.to_le_bytes());
    h.update(&last_ts.to_le_bytes());
    // Hashed as the hex ids they are written as, so finding ids stay as they were.
    for w in &st.window {
        h.update(&portcullis_event::hex_id_bytes(w.evidence));
    }
    let id_hash = h.digest128();
    let values: Vec<&str> = group.split('\u{1f}').collect();
    CorrelationFinding {
        id: portcullis_event::hex_id(id_hash),
        id_hash,
        correlation: ci,
        group: c.group_by.iter().cloned().zip(values.into_iter().map(str::to_string)).collect(),
        first_ts,
        last_ts,
        value,
        evidence: st.window.iter().take(MAX_EVIDENCE).map(|w| portcullis_event::hex_id(w.evidence)).collect(),
        evidence_total: st.window.len() as u64,
        entities: st.entities.iter().map(|e| e.to_string()).collect(),
    }
}

/// The group key for an event feeding `c` at `pos`, or None if a group-by field is missing.
pub fn group_key<V: AsRef<str>>(c: &Correlation, pos: usize, get: impl FnMut(&str) -> Option<V>) -> Option<String> {
    let mut key = String::new();
    push_group_key(c, pos, get, &mut key).then_some(key)
}

/// [`group_key`] appended to `key`; false (and `key` partly written) if a group-by field
/// is missing.
fn push_group_key<V: AsRef<str>>(c: &Correlation, pos: usize, mut get: impl FnMut(&str) -> Option<V>, key: &mut String) -> bool {
    for (i, g) in c.group_by.iter().enumerate() {
        let Some(v) = get(c.group_field(g, pos)).filter(|v| !v.as_ref().is_empty()) else { return false };
        if i > 0 {
            key.push('\u{1f}');
        }
        key.push_str(v.as_ref());
    }
    true
}

/// The correlation inputs one rule match produces: one per correlation (and position)
/// the rule feeds, with its group key and field value read through `get`. Matches
/// missing a group-by field produce nothing for that correlation.
pub fn inputs_for<V: AsRef<str>>(
    set: &CorrelationSet,
    rule: usize,
    ts: i64,
    evidence: u128,
    entities: &str,
    get: impl FnMut(&str) -> Option<V>,
) -> Vec<Input> {
    let mut out = Vec::new();
    push_inputs_for(set, rule, ts, evidence, entities, get, &mut out);
    out
}

/// [`inputs_for`] appended to `out`. `get` must not make inputs itself (the thread's
/// layout buffer is in use while it runs).
pub fn push_inputs_for<V: AsRef<str>>(
    set: &CorrelationSet,
    rule: usize,
    ts: i64,
    evidence: u128,
    entities: &str,
    mut get: impl FnMut(&str) -> Option<V>,
    out: &mut Vec<Input>,
) {
    thread_local! {
        /// An input's group key and value are laid out here, then copied into the input.
        static TEXTS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    let Some(subs) = set.subscribers.get(&Source::Rule(rule)) else { return };
    TEXTS.with_borrow_mut(|texts| {
        for &(ci, pos) in subs {
            let c = &set.correlations[ci];
            texts.clear();
            if !push_group_key(c, pos, &mut get, texts) {
                continue;
            }
            let group_end = texts.len();
            if let Some(f) = &c.field {
                match get(c.group_field(f, pos)) {
                    Some(v) => texts.push_str(v.as_ref()),
                    None if matches!(c.kind, Kind::ValueCount | Kind::ValuePercentile) => continue,
                    None => {}
                }
            }
            let (group, value) = texts.split_at(group_end);
            out.push(Input::new(ts, ci as u32, pos as u32, evidence, group, value, entities));
        }
        // One huge value (a multi-megabyte command line) is not held for the thread's life.
        if texts.capacity() > 64 * 1024 {
            *texts = String::new();
        }
    });
}

/// Whether matches of `rule` feed any correlation.
pub fn feeds_correlations(set: &CorrelationSet, rule: usize) -> bool {
    set.subscribers.contains_key(&Source::Rule(rule))
}

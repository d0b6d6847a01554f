//! The hunt pipeline: files → readers → Sigma scanner → detections, in parallel.
//!
//! Files are shared out to worker threads (one [`Scanner`] each) from an atomic
//! cursor; a single large EVTX file is instead parsed with the `evtx` crate's
//! own chunk parallelism. Readers never stop a run: an unreadable file is
//! reported and the rest go on, and a reader that panics on hostile input is
//! caught and reported as such.
//!
//! Every detection gets a stable [`Detection::id`] derived from the rule and the
//! event, so re-running on the same data (or a redelivered message on a
//! distributed worker) yields the same ids.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_correlate::{CorrelationFinding, CorrelationSet, Sorter};
use portcullis_event::{Event, Timestamp};
use portcullis_sigma::{Engine, Level, Scanner};
use portcullis_sources::{FileReport, ReadOptions, SourceError};

pub mod ioc;
pub mod store;
pub use ioc::IocRules;
pub use store::{DETECTION_BUFFER_BYTES, DetectionBuffer, Detections};

/// One rule matching one event.
#[derive(Clone, Debug)]
pub struct Detection {
    /// Stable id: hex of a 128-bit hash of (rule, event locator, event content).
    pub id: String,
    /// Index into `Engine::rules`.
    pub rule: usize,
    /// A Sigma rule's detection logic, or an indicator found in a field.
    pub matcher: Matcher,
    pub path: Arc<Path>,
    pub event: Event,
}

/// What made a detection: a rule's logic or an indicator of compromise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    Rule,
    Indicator,
}

impl Matcher {
    pub fn as_str(self) -> &'static str {
        match self {
            Matcher::Rule => "rule",
            Matcher::Indicator => "indicator",
        }
    }

    pub fn parse(s: &str) -> Option<Matcher> {
        match s {
            "rule" => Some(Matcher::Rule),
            "indicator" => Some(Matcher::Indicator),
            _ => None,
        }
    }
}

impl Detection {
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.event.timestamp
    }
}

/// The file an event came from: the input file, or the member inside an input archive
/// (`triage.zip/Logs/Security.evtx`).
pub fn event_path(path: &Arc<Path>, ev: &Event) -> Arc<Path> {
    if ev.member.is_empty() { path.clone() } else { Arc::from(path.join(&ev.member)) }
}

/// Progress callbacks, called from worker threads.
pub trait Progress: Sync {
    fn file_done(&self, _path: &Path, _bytes: u64) {}
}

/// No progress display.
pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub threads: usize,
    pub read: ReadOptions,
    /// Events before this instant are skipped (events without a time are kept).
    pub from: Option<Timestamp>,
    /// Events after this instant are skipped.
    pub to: Option<Timestamp>,
    /// Indicators to look for in every field (their rules already in the engine).
    pub iocs: Option<Arc<IocRules>>,
    /// A plain W3C log at least this large is cut into pieces for several threads.
    pub split_min_bytes: u64,
    /// Detections below this level are not kept (their rules still feed correlations).
    pub min_level: Level,
    /// Memory the detections may take before they are spilled to temporary files.
    pub detection_budget: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            read: ReadOptions::default(),
            from: None,
            to: None,
            iocs: None,
            split_min_bytes: portcullis_sources::split::MIN_SPLIT_BYTES,
            min_level: Level::Informational,
            detection_budget: DETECTION_BUFFER_BYTES,
        }
    }
}

/// What happened to one input file.
#[derive(Debug)]
pub enum FileOutcome {
    Read(FileReport),
    Failed(SourceError),
    /// The reader panicked: a bug, reported rather than crashing the run.
    Crashed {
        path: PathBuf,
        message: String,
    },
}

impl FileOutcome {
    pub fn path(&self) -> &Path {
        match self {
            FileOutcome::Read(r) => &r.path,
            FileOutcome::Failed(SourceError::Io { path, .. })
            | FileOutcome::Failed(SourceError::Unrecognised { path })
            | FileOutcome::Failed(SourceError::Corrupt { path, .. })
            | FileOutcome::Failed(SourceError::NotRegular { path, .. })
            | FileOutcome::Crashed { path, .. } => path,
        }
    }
}

/// Counts over a whole run.
#[derive(Debug, Default)]
pub struct RunStats {
    pub events: u64,
    /// Events outside `--from`/`--to`.
    pub out_of_range: u64,
}

/// Runs `per_event` over every event of every file, in parallel. Each worker thread
/// owns a state made by `init`; the states are returned for merging, with the file
/// outcomes in input order. With more threads than files, a large W3C log is cut into
/// pieces read by several threads ([`portcullis_sources::split`]): the same events, record
/// numbers and outcome as one whole read.
pub fn run_files<S: Send>(
    files: &[PathBuf],
    opts: &RunOptions,
    progress: &dyn Progress,
    init: impl Fn() -> S + Sync,
    per_event: impl Fn(&mut S, &Arc<Path>, &Event) + Sync,
) -> (Vec<FileOutcome>, Vec<(S, RunStats)>) {
    let cut: Vec<bool> = files.iter().map(|f| opts.threads > 1 && portcullis_sources::split::splittable(f, opts.split_min_bytes)).collect();
    let threads = if cut.contains(&true) { opts.threads } else { opts.threads.max(1).min(files.len().max(1)) };
    let mut read = opts.read.clone();
    // With fewer files than threads, let the EVTX parser use the spare cores on chunks.
    read.evtx_threads = if files.len() < opts.threads.max(1) { opts.threads.max(1) } else { 1 };
    let queue = WorkQueue::new(&cut);
    // Per file: its outcome, or its pieces' outcomes by where each starts.
    let outcomes: Vec<std::sync::Mutex<Vec<(u64, FileOutcome)>>> = files.iter().map(|_| Default::default()).collect();
    let states = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = init();
                    let mut stats = RunStats::default();
                    while let Some(unit) = queue.next() {
                        let (i, piece) = match unit {
                            Unit::Cut(i) => {
                                // Cut the file; the pieces are queued as they are found, so
                                // the other threads start on them while this one cuts on.
                                let cut = portcullis_sources::split::plan(
                                    &files[i],
                                    portcullis_sources::split::piece_bytes(&files[i], threads),
                                    read.max_record_bytes,
                                    &mut |p| queue.push(Unit::Piece(i, p)),
                                );
                                if let Err(error) = cut {
                                    let path = files[i].clone();
                                    add_outcome(&outcomes[i], u64::MAX, FileOutcome::Failed(SourceError::Io { path, error }));
                                }
                                queue.planned();
                                continue;
                            }
                            Unit::File(i) => (i, None),
                            Unit::Piece(i, p) => (i, Some(p)),
                        };
                        let path = &files[i];
                        let shared: Arc<Path> = Arc::from(path.as_path());
                        let mut span: Option<(portcullis_event::Timestamp, portcullis_event::Timestamp)> = None;
                        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            let mut sink = |ev: &Event| {
                                if let Some(ts) = ev.timestamp
                                    && (opts.from.is_some_and(|f| ts < f) || opts.to.is_some_and(|t| ts > t))
                                {
                                    stats.out_of_range += 1;
                                    return std::ops::ControlFlow::Continue(());
                                }
                                stats.events += 1;
                                if let Some(ts) = ev.timestamp {
                                    span = Some(span.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
                                }
                                per_event(&mut state, &shared, ev);
                                std::ops::ControlFlow::Continue(())
                            };
                            match &piece {
                                None => portcullis_sources::read_file(path, &read, &mut sink),
                                Some(p) => portcullis_sources::split::read_piece(path, p, &read, &mut sink),
                            }
                        }));
                        let size = || match &piece {
                            Some(p) => p.len,
                            None => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
                        };
                        let outcome = match result {
                            Ok(Ok(mut report)) => {
                                report.time_span = span;
                                progress.file_done(path, report.bytes);
                                FileOutcome::Read(report)
                            }
                            Ok(Err(e)) => {
                                progress.file_done(path, size());
                                FileOutcome::Failed(e)
                            }
                            Err(panic) => {
                                let message = panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_else(|| "unknown panic".into());
                                FileOutcome::Crashed { path: path.clone(), message }
                            }
                        };
                        add_outcome(&outcomes[i], piece.as_ref().map_or(0, |p| p.start), outcome);
                    }
                    (state, stats)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker threads catch reader panics")).collect::<Vec<_>>()
    });
    let outcomes = outcomes
        .into_iter()
        .map(|m| {
            let mut parts = m.into_inner().unwrap_or_else(|e| e.into_inner());
            parts.sort_by_key(|(start, _)| *start);
            parts.into_iter().map(|(_, o)| o).reduce(merge_outcomes).expect("every file is visited")
        })
        .collect();
    (outcomes, states)
}

/// A file to read whole, a large file to cut into pieces, or one piece of it.
enum Unit {
    File(usize),
    Cut(usize),
    Piece(usize, portcullis_sources::split::Piece),
}

/// The work of a run: files in input order, pieces of cut files first (their file is
/// already open in the page cache). A worker waits while a file is still being cut.
struct WorkQueue {
    inner: std::sync::Mutex<(std::collections::VecDeque<Unit>, usize)>,
    ready: std::sync::Condvar,
}

impl WorkQueue {
    fn new(cut: &[bool]) -> WorkQueue {
        let units = cut.iter().enumerate().map(|(i, &c)| if c { Unit::Cut(i) } else { Unit::File(i) }).collect();
        WorkQueue { inner: std::sync::Mutex::new((units, 0)), ready: std::sync::Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (std::collections::VecDeque<Unit>, usize)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next unit, or None when there is none and no file is being cut. Taking a
    /// file to cut counts it as being cut until [`planned`](Self::planned).
    fn next(&self) -> Option<Unit> {
        let mut g = self.lock();
        loop {
            if let Some(u) = g.0.pop_front() {
                if matches!(u, Unit::Cut(_)) {
                    g.1 += 1;
                }
                return Some(u);
            }
            if g.1 == 0 {
                return None;
            }
            g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn push(&self, u: Unit) {
        self.lock().0.push_front(u);
        self.ready.notify_one();
    }

    /// A file taken to be cut is cut: all its pieces are queued.
    fn planned(&self) {
        let mut g = self.lock();
        g.1 = g.1.saturating_sub(1);
        drop(g);
        self.ready.notify_all();
    }
}

fn add_outcome(slot: &std::sync::Mutex<Vec<(u64, FileOutcome)>>, start: u64, outcome: FileOutcome) {
    slot.lock().unwrap_or_else(|e| e.into_inner()).push((start, outcome));
}

/// A file's outcome from its pieces' (in file order): their reports summed; a failure or
/// crash of any piece stands for the file.
fn merge_outcomes(a: FileOutcome, b: FileOutcome) -> FileOutcome {
    match (a, b) {
        (FileOutcome::Read(mut a), FileOutcome::Read(b)) => {
            a.merge_piece(b);
            FileOutcome::Read(a)
        }
        (FileOutcome::Read(_), bad) => bad,
        (bad, _) => bad,
    }
}

/// The result of a hunt.
#[derive(Debug)]
pub struct HuntResult {
    /// Sorted by time (events without a time last), then path, record, rule and id; past a
    /// memory budget, spilled to temporary files. Rules that only feed correlations (no
    /// `generate: true`) and rules below [`RunOptions::min_level`] are not here.
    pub detections: Detections,
    /// Why the detections could not be spilled, if they could not (those not spilled
    /// already were kept in memory, none lost: the run says memory was not bounded).
    pub spill_error: Option<std::io::Error>,
    /// Correlation findings (of correlations no other correlation consumes), by time.
    pub correlations: Vec<CorrelationFinding>,
    pub correlation_stats: CorrelationStats,
    pub outcomes: Vec<FileOutcome>,
    pub stats: RunStats,
    /// Events seen per compiled group, for reporting which rules applied to anything.
    pub group_events: Vec<u64>,
}

impl HuntResult {
    pub fn by_level(&self, engine: &Engine) -> [u64; 5] {
        let mut counts = [0u64; 5];
        for (rule, n) in self.detections.by_rule().iter().enumerate() {
            counts[engine.rules[rule].level as usize] += n;
        }
        counts
    }
}

/// Counts from the correlation stage.
#[derive(Debug, Default)]
pub struct CorrelationStats {
    /// Base-rule matches handed to correlations.
    pub inputs: u64,
    /// Of those, spilled to temporary files to keep memory bounded.
    pub spilled: u64,
    /// Most (correlation, group) states alive at once (each share's most, added up).
    pub peak_groups: usize,
    /// Base matches without a timestamp (cannot be correlated in time).
    pub untimed: u64,
    /// Problems spilling or merging correlation inputs (results may be incomplete).
    pub errors: Vec<String>,
    /// Time spent merging the inputs into time order and correlating them (the shares
    /// side by side).
    pub seconds: f64,
}

/// Memory each worker may use for buffering correlation inputs before spilling.
pub const CORRELATION_BUFFER_BYTES: usize = 64 << 20;

/// Hunts every file with the engine and runs the correlations over the matches.
pub fn hunt(
    engine: &Engine,
    correlations: &Arc<CorrelationSet>,
    files: &[PathBuf],
    opts: &RunOptions,
    progress: &dyn Progress,
) -> HuntResult {
    struct Worker<'e> {
        scanner: Scanner<'e>,
        matches: Vec<usize>,
        ioc_hits: Vec<portcullis_intel::Hit>,
        /// One event's detections, on their way to `kept` (reused).
        detections: Vec<Detection>,
        kept: DetectionBuffer,
        /// One per share of the correlation inputs, each in parts ([`portcullis_correlate::place_of`]).
        sorters: Vec<Sorter>,
        /// One event's correlation inputs, on their way to the sorters (reused).
        inputs_buffer: Vec<portcullis_correlate::Input>,
        inputs: u64,
        untimed: u64,
        io_error: Option<std::io::Error>,
    }
    let hidden = hidden_rules(engine, correlations);
    let shares = portcullis_correlate::shares_for(correlations, opts.threads);
    let parts = portcullis_correlate::parts_for(correlations);
    let below_min: Vec<bool> = engine.rules.iter().map(|r| r.level < opts.min_level).collect();
    let detection_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (outcomes, states) = run_files(
        files,
        opts,
        progress,
        || Worker {
            scanner: engine.scanner(),
            matches: Vec::new(),
            ioc_hits: Vec::new(),
            detections: Vec::new(),
            kept: DetectionBuffer::new(opts.detection_budget, detection_bytes.clone()),
            sorters: (0..shares).map(|_| Sorter::with_parts(CORRELATION_BUFFER_BYTES / shares, parts)).collect(),
            inputs_buffer: Vec::new(),
            inputs: 0,
            untimed: 0,
            io_error: None,
        },
        |w, path, ev| {
            let mut inputs = std::mem::take(&mut w.inputs_buffer);
            let untimed = detect(
                &mut Scratch { scanner: &mut w.scanner, matches: &mut w.matches, ioc_hits: &mut w.ioc_hits },
                &Rules { engine, correlations, hidden: &hidden, iocs: opts.iocs.as_deref() },
                path,
                ev,
                &mut w.detections,
                &mut inputs,
            );
            w.untimed += untimed;
            if !w.detections.is_empty() {
                w.detections.retain(|d| !below_min[d.rule]);
                w.kept.extend_from(&mut w.detections);
            }
            for input in inputs.drain(..) {
                w.inputs += 1;
                let (share, part) = portcullis_correlate::place_of(&input, shares, parts);
                if let Err(e) = w.sorters[share].push_to(part, input) {
                    w.io_error.get_or_insert(e);
                }
            }
            w.inputs_buffer = inputs;
        },
    );
    let mut kept = Vec::new();
    let mut stats = RunStats::default();
    let mut group_events = vec![0u64; engine.group_count()];
    let mut by_share: Vec<Vec<Sorter>> = (0..shares).map(|_| Vec::new()).collect();
    let mut correlation_stats = CorrelationStats::default();
    for (w, s) in states {
        kept.push(w.kept);
        correlation_stats.inputs += w.inputs;
        correlation_stats.untimed += w.untimed;
        if let Some(e) = w.io_error {
            correlation_stats.errors.push(format!("spilling correlation inputs failed: {e}"));
        }
        for (share, sorter) in by_share.iter_mut().zip(w.sorters) {
            correlation_stats.spilled += sorter.spilled;
            share.push(sorter);
        }
        stats.events += s.events;
        stats.out_of_range += s.out_of_range;
        for (g, n) in group_events.iter_mut().zip(&w.scanner.group_events) {
            *g += n;
        }
    }
    let (detections, spill_error) = Detections::collect(kept);
    let mut found = Vec::new();
    if !correlations.is_empty() {
        let started = std::time::Instant::now();
        // Each share is put into time order and correlated on a thread of its own.
        let correlated = portcullis_correlate::correlate_shares(correlations, by_share);
        correlation_stats.errors.extend(correlated.errors);
        correlation_stats.peak_groups = correlated.peak_groups;
        correlation_stats.seconds = started.elapsed().as_secs_f64();
        found = correlated.findings;
    }
    HuntResult { detections, spill_error, correlations: found, correlation_stats, outcomes, stats, group_events }
}

/// What detection runs with: compiled rules, correlations and indicators.
pub struct Rules<'a> {
    pub engine: &'a Engine,
    pub correlations: &'a CorrelationSet,
    /// Per rule: matched only to feed correlations, not reported ([`hidden_rules`]).
    pub hidden: &'a [bool],
    pub iocs: Option<&'a IocRules>,
}

/// Per rule, whether it only feeds correlations (no `generate: true`) and is not reported.
pub fn hidden_rules(engine: &Engine, correlations: &CorrelationSet) -> Vec<bool> {
    let mut hidden = vec![false; engine.rules.len()];
    for &r in &correlations.hidden_rules {
        hidden[r] = true;
    }
    hidden
}

/// A worker's reusable buffers for [`detect`].
pub struct Scratch<'s, 'e> {
    pub scanner: &'s mut Scanner<'e>,
    pub matches: &'s mut Vec<usize>,
    pub ioc_hits: &'s mut Vec<portcullis_intel::Hit>,
}

/// Detection of one event, a pure function of (rules, event): the detections (with
/// stable ids) go to `detections`, the matches that feed correlations to `inputs`.
/// Returns how many matches had no time (and could not be correlated).
pub fn detect(
    scratch: &mut Scratch<'_, '_>,
    rules: &Rules<'_>,
    path: &Arc<Path>,
    ev: &Event,
    detections: &mut Vec<Detection>,
    inputs: &mut Vec<portcullis_correlate::Input>,
) -> u64 {
    let Rules { engine, correlations, hidden, iocs } = *rules;
    let mut untimed = 0;
    scratch.matches.clear();
    scratch.scanner.scan(ev, scratch.matches);
    thread_local! {
        static ENTITIES: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    // The event's entities, as correlations carry them: worked out once, for the first
    // match that feeds one, in the thread's buffer (taken only then).
    let mut entities: Option<String> = None;
    for &rule in scratch.matches.iter() {
        let id = finding_hash(&engine.rules[rule].key(), ev);
        if portcullis_correlate::feeds_correlations(correlations, rule) {
            match ev.timestamp {
                Some(ts) => {
                    let entities = entities.get_or_insert_with(|| {
                        let mut buf = ENTITIES.with(|e| e.try_borrow_mut().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default());
                        buf.clear();
                        portcullis_event::entity::encode_entities(ev, &mut buf);
                        buf
                    });
                    portcullis_correlate::push_inputs_for(correlations, rule, ts.0, id, entities, |f| ev.get(f), inputs)
                }
                None => untimed += 1,
            }
        }
        if !hidden[rule] {
            detections.push(Detection {
                id: portcullis_event::hex_id(id),
                rule,
                matcher: Matcher::Rule,
                path: event_path(path, ev),
                event: ev.kept(0, 0),
            });
        }
    }
    // The buffer is given back for the next event, unless one huge value grew it.
    if let Some(entities) = entities
        && entities.capacity() <= 64 * 1024
    {
        ENTITIES.with(|e| {
            if let Ok(mut e) = e.try_borrow_mut() {
                *e = entities;
            }
        });
    }
    if let Some(iocs) = iocs {
        let mut found = Vec::new();
        iocs.scan(ev, scratch.ioc_hits, &mut found);
        for (indicator, rule, field) in found {
            let rule = rule as usize;
            let ind = &iocs.set.indicators[indicator as usize];
            let id = finding_id(&format!("{}\n{}\n{}", engine.rules[rule].key(), ind.kind.as_str(), ind.value), ev);
            detections.push(Detection {
                id,
                rule,
                matcher: Matcher::Indicator,
                path: event_path(path, ev),
                event: iocs.annotate(ev, indicator, field),
            });
        }
    }
    untimed
}

/// The stable id of the finding "rule `rule_key` matched `ev`": a hash of the rule key,
/// the event's record number and time, and every field name and value.
pub fn finding_id(rule_key: &str, ev: &Event) -> String {
    portcullis_event::hex_id(finding_hash(rule_key, ev))
}

/// [`finding_id`] as the number its hex digits write (correlation inputs carry it so).
pub fn finding_hash(rule_key: &str, ev: &Event) -> u128 {
    use std::cell::RefCell;
    // The hashed bytes are the rule key, a NUL, the record and time, then each field as
    // name NUL value 0x01, which is how the event keeps its fields (Event::field_stream).
    // xxh3 of parts laid end to end is xxh3 streamed over them, so an event of usual size
    // is copied into one buffer and hashed in one call, not through the streaming state.
    const ONE_CALL_MAX: usize = 64 * 1024;
    let fields = ev.field_stream();
    let size = rule_key.len() + 17 + fields.len();
    if size > ONE_CALL_MAX {
        return finding_hash_streamed(rule_key, ev);
    }
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut b = buf.borrow_mut();
        b.clear();
        b.reserve(size);
        b.extend_from_slice(rule_key.as_bytes());
        b.push(0);
        b.extend_from_slice(&ev.record.to_le_bytes());
        b.extend_from_slice(&ev.timestamp.map(|t| t.0).unwrap_or(i64::MIN).to_le_bytes());
        b.extend_from_slice(fields);
        xxhash_rust::xxh3::xxh3_128(&b)
    })
}

fn finding_hash_streamed(rule_key: &str, ev: &Event) -> u128 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(rule_key.as_bytes());
    h.update(&[0]);
    h.update(&ev.record.to_le_bytes());
    h.update(&ev.timestamp.map(|t| t.0).unwrap_or(i64::MIN).to_le_bytes());
    h.update(ev.field_stream());
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id as it was first defined: each field's name and value fed to the hash in turn.
    fn hashed_field_by_field(rule_key: &str, ev: &Event) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(rule_key.as_bytes());
        h.update(&[0]);
        h.update(&ev.record.to_le_bytes());
        h.update(&ev.timestamp.map(|t| t.0).unwrap_or(i64::MIN).to_le_bytes());
        for f in ev.fields() {
            h.update(f.name.as_bytes());
            h.update(&[0]);
            h.update(f.value.as_bytes());
            h.update(&[1]);
        }
        h.digest128()
    }

    #[test]
    fn finding_ids_are_the_hash_of_each_field_in_turn() {
        let mut ev = Event::default();
        ev.record = 7;
        for (i, (name, value)) in [("c-ip", "203.0.113.9"), ("", ""), ("Naïve", "café\u{0}\u{1}"), ("Data", &"x".repeat(70_000)), ("a", "")]
            .into_iter()
            .enumerate()
        {
            ev.push_str(name, value);
            ev.timestamp = (i % 2 == 0).then_some(portcullis_event::Timestamp(1_600_000_000_000_000 + i as i64));
            assert_eq!(finding_hash("k", &ev), hashed_field_by_field("k", &ev), "{i}");
        }
        let mut kept = ev.kept(1, 4);
        kept.push_str("ioc", "x");
        assert_eq!(finding_hash("k", &kept), hashed_field_by_field("k", &kept));
    }

    #[test]
    fn finding_ids_hashed_in_one_call_equal_the_streamed_hash() {
        let mut ev = Event::default();
        ev.record = 42;
        ev.timestamp = Some(portcullis_event::Timestamp(1_600_000_000_000_000));
        for size in [0usize, 3, 100, 1000, 40_000, 70_000] {
            ev.push_str(&format!("Field{size}"), &"v".repeat(size));
            let id = finding_id("rule-key", &ev);
            assert_eq!(id, portcullis_event::hex_id(finding_hash_streamed("rule-key", &ev)), "{size}");
            assert_ne!(id, finding_id("other-key", &ev));
        }
        // Pinned: ids are stable across versions (case files and triage notes refer to them).
        assert_eq!(finding_id("rule-key", &ev), portcullis_event::hex_id(hashed_field_by_field("rule-key", &ev)));
        let mut small = Event::default();
        small.push_str("c-ip", "203.0.113.9");
        assert_eq!(finding_id("k", &small), "e53ae24f35d6af2beea2236946d254b0");
    }
}

//! Live detection on one machine (`watch`): logs followed as they are written
//! ([`follow`]), each new event detected as in `hunt` (same rules, same finding ids),
//! correlations run with their state kept, findings and incidents written into the case,
//! and alerts for what is new ([`alert`]).
//!
//! Every step is one case transaction holding the findings, the correlation inputs still
//! inside their windows, and where every file's reading stands. A crash (`kill -9`) at any
//! point leaves the case before or after a step, never between, so a restart loses no
//! event and duplicates no finding; the correlation state is rebuilt from the kept inputs.

pub mod alert;
pub mod follow;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis_case::{Case, LiveBatch, LiveInput, SourceRecord};
use portcullis_correlate::{Correlator, Input};
use portcullis_finding::Finding;
use portcullis_hunt::{Detection, Scratch};
use portcullis_incident::IncidentOptions;
use portcullis_pipeline::{Error, RuleSettings};
use portcullis_sources::ReadOptions;

pub use alert::{Alert, Backoff, Webhook};
pub use follow::{FileState, Follower, PollLimits, pause};

/// What to watch and how.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// Files and folders (folders are searched recursively, again at every poll).
    pub paths: Vec<PathBuf>,
    /// The case file findings, incidents and checkpoints go into.
    pub case: PathBuf,
    pub case_command: String,
    pub rules: RuleSettings,
    pub iocs: Vec<PathBuf>,
    pub builtin_intel: bool,
    pub assume_utc_offset_secs: Option<i64>,
    /// Time between polls when nothing is waiting.
    pub interval: Duration,
    /// On the first run with this case, start every existing file at its end.
    pub from_end: bool,
    /// Read what there is, then stop (an incremental hunt with checkpoints).
    pub once: bool,
    /// Correlation inputs wait this long in event time for earlier ones from slower files.
    pub lateness_micros: i64,
    /// With no new event for this long, waiting correlation inputs are correlated anyway.
    pub idle_flush: Duration,
    /// Incidents are rebuilt at most this often while findings keep arriving.
    pub incident_interval: Duration,
    pub incident_window_days: f64,
    pub limits: PollLimits,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            paths: Vec::new(),
            case: PathBuf::new(),
            case_command: String::new(),
            rules: RuleSettings::default(),
            iocs: Vec::new(),
            builtin_intel: true,
            assume_utc_offset_secs: None,
            interval: Duration::from_secs(1),
            from_end: false,
            once: false,
            lateness_micros: 60_000_000,
            idle_flush: Duration::from_secs(10),
            incident_interval: Duration::from_secs(5),
            incident_window_days: 90.0,
            limits: PollLimits::default(),
        }
    }
}

/// What `watch` reports as it goes.
pub trait Observer {
    /// A new finding (once: a finding already in the case is never announced again).
    fn alert(&self, _alert: &Alert) {}
    /// After each step that read something, and when idle.
    fn status(&self, _status: &Status) {}
    /// Something the operator should know (rotation, truncation, a skipped record).
    fn note(&self, _note: &str) {}
}

/// Where watching stands.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    /// Always "status".
    pub kind: &'static str,
    pub files: usize,
    pub events: u64,
    pub findings_new: u64,
    pub incidents: usize,
    /// Bytes written to followed files and not read yet.
    pub lag_bytes: u64,
    /// Seconds between the newest event time read and now (how far behind the logs are).
    pub lag_seconds: Option<f64>,
    /// Correlation inputs waiting for slower files.
    pub correlation_pending: usize,
    pub records_skipped: u64,
}

const FILES_KEY: &str = "files";
const RELEASED_KEY: &str = "correlation_released_until";

/// Watches until `stop` is set (or, with `once`, until everything there is was read).
pub fn watch(s: &WatchSettings, observer: &dyn Observer, stop: &AtomicBool) -> Result<Status, Error> {
    let mut case = Case::open(&s.case, &s.case_command)?;
    let detector = portcullis_pipeline::load_detector(&s.rules, &s.iocs, s.builtin_intel)?;
    for p in &s.paths {
        if !p.exists() {
            return Err(Error::Inputs(vec![format!("{}: no such file or folder", p.display())]));
        }
    }
    let engine = &detector.loaded.engine;
    let labels = portcullis_finding::RuleLabels::of(engine);
    let correlations = detector.loaded.correlations.clone();
    let rules = detector.rules();
    let by_key: HashMap<String, usize> = correlations.correlations.iter().enumerate().map(|(i, c)| (c.key(), i)).collect();
    let max_span = correlations.correlations.iter().map(|c| c.timespan_micros).max().unwrap_or(0);

    // Resume: where each file stood, and the correlation state rebuilt from kept inputs.
    let files: Vec<FileState> = match case.live_state(FILES_KEY)? {
        Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
            observer.note(&format!(
                "{}: the watch checkpoint could not be read ({e}); every file is read again (findings are not duplicated)",
                s.case.display()
            ));
            Vec::new()
        }),
        None => Vec::new(),
    };
    let first_run = files.is_empty();
    let mut released_until: i64 = case.live_state(RELEASED_KEY)?.and_then(|v| v.parse().ok()).unwrap_or(i64::MIN);
    let mut correlator = Correlator::new(correlations.clone());
    let mut pending: Vec<Input> = Vec::new();
    let mut seen: HashMap<(u32, u32, String, u128), i64> = HashMap::new();
    let mut replay: Vec<Input> = Vec::new();
    let mut unreadable_inputs = 0usize;
    for i in case.live_inputs()? {
        let Some(&corr) = by_key.get(&i.correlation) else { continue };
        // Written by `watch` as a finding id: anything else is a damaged case file.
        let Some(evidence) = portcullis_event::parse_hex_id(&i.evidence) else {
            unreadable_inputs += 1;
            continue;
        };
        let input = Input::new(i.ts, corr as u32, i.pos, evidence, &i.group, &i.value, &i.entities);
        seen.insert((input.corr, input.pos, i.group, input.evidence), input.ts);
        if input.ts <= released_until { replay.push(input) } else { pending.push(input) }
    }
    if unreadable_inputs > 0 {
        observer.note(&format!(
            "{}: {unreadable_inputs} kept correlation inputs have an evidence id that is not 32 hex digits and were left out of the rebuilt correlation state",
            s.case.display()
        ));
    }
    replay.sort_by(|a, b| a.key().cmp(&b.key()));
    for input in replay {
        correlator.push(input);
    }
    // Findings of the replay were recorded before the restart; recording them again is a no-op.
    let mut carried: Vec<portcullis_correlate::CorrelationFinding> = std::mem::take(&mut correlator.findings);

    let mut read = ReadOptions { assume_utc_offset_secs: s.assume_utc_offset_secs, ..Default::default() };
    read.evtx_threads = 1;
    let mut follower = Follower::new(s.paths.clone(), read, files);
    if first_run && s.from_end {
        follower.skip_existing();
    }

    let incident_opts = IncidentOptions { window_micros: (s.incident_window_days.max(0.0) * 86_400.0 * 1e6) as i64, ..Default::default() };
    let mut scanner = engine.scanner();
    let (mut matches, mut ioc_hits) = (Vec::new(), Vec::new());
    let mut status = Status { kind: "status", ..Default::default() };
    let mut newest_event: Option<i64> = None;
    let mut last_input = Instant::now();
    let mut last_rebuild = Instant::now() - s.incident_interval;
    let mut unrebuilt = !carried.is_empty();
    let min = s.rules.min_level;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut detections: Vec<Detection> = Vec::new();
        let mut inputs: Vec<Input> = Vec::new();
        let mut events = 0u64;
        let pieces = if stopping {
            Vec::new()
        } else {
            follower.poll(&s.limits, &mut |_key: &str, path: &Arc<Path>, ev| {
                events += 1;
                if let Some(ts) = ev.timestamp {
                    newest_event = Some(newest_event.map_or(ts.0, |n| n.max(ts.0)));
                }
                let mut scratch = Scratch { scanner: &mut scanner, matches: &mut matches, ioc_hits: &mut ioc_hits };
                portcullis_hunt::detect(&mut scratch, &rules, path, ev, &mut detections, &mut inputs);
            })
        };
        let read_bytes: u64 = pieces.iter().map(|p| p.report.bytes).sum();
        for p in &pieces {
            for n in &p.notes {
                observer.note(n);
            }
            for n in &p.report.notes {
                observer.note(&format!("{}: {n}", p.report.path.display()));
            }
            status.records_skipped += p.report.skipped;
        }
        status.events += events;
        // Nothing could be read: what is unread (a line still being written) waits for more.
        let drained = read_bytes == 0;
        if events > 0 {
            last_input = Instant::now();
        }

        // Correlation: new inputs wait (in event time) for slower files, then go in order.
        let mut kept: Vec<LiveInput> = Vec::new();
        for i in inputs {
            if seen.insert((i.corr, i.pos, i.group().to_string(), i.evidence), i.ts).is_none() {
                kept.push(LiveInput {
                    correlation: correlations.correlations[i.corr as usize].key(),
                    pos: i.pos,
                    group: i.group().to_string(),
                    evidence: portcullis_event::hex_id(i.evidence),
                    ts: i.ts,
                    value: i.value().to_string(),
                    entities: i.entities().to_string(),
                });
                pending.push(i);
            }
        }
        let released_before = released_until;
        let flush = stopping || (drained && (s.once || last_input.elapsed() >= s.idle_flush));
        let newest_pending = pending.iter().map(|i| i.ts).max();
        let watermark = match newest_pending {
            Some(n) if flush => n,
            Some(n) => n.saturating_sub(s.lateness_micros).max(released_until),
            None => released_until,
        };
        if !pending.is_empty() {
            let (mut ready, wait): (Vec<Input>, Vec<Input>) = pending.drain(..).partition(|i| i.ts <= watermark);
            pending = wait;
            ready.sort_by(|a, b| a.key().cmp(&b.key()));
            for input in ready {
                correlator.push(input);
            }
            released_until = released_until.max(watermark);
        }
        carried.append(&mut correlator.findings);

        let mut findings: Vec<(Finding, Option<String>)> = detections
            .iter()
            .filter(|d| engine.rules[d.rule].level >= min)
            .map(|d| (Finding::from_detection(&labels, engine, d), Some(d.event.json_text())))
            .collect();
        for c in carried.drain(..) {
            if correlations.correlations[c.correlation].level >= min {
                findings.push((Finding::from_correlation(&correlations, &c, &[]), None));
            }
        }
        unrebuilt |= !findings.is_empty();
        let rebuild = unrebuilt && (drained || stopping || last_rebuild.elapsed() >= s.incident_interval);
        let prune_before = (max_span > 0 && released_until > i64::MIN).then(|| released_until.saturating_sub(max_span + s.lateness_micros));
        let sources: Vec<(SourceRecord<'_>, String)> = pieces
            .iter()
            .filter(|p| p.report.bytes > 0 || p.report.events > 0)
            .map(|p| {
                (
                    SourceRecord {
                        path: &p.report.path,
                        size: p.report.bytes,
                        format: p.report.format.map(|f| f.as_str()),
                        events: p.report.events,
                        skipped: p.report.skipped,
                        time_span: p.report.time_span,
                        notes: p.report.notes.iter().chain(&p.report.warnings).cloned().collect(),
                    },
                    p.key.clone(),
                )
            })
            .collect();
        // Nothing read, found or released: nothing to write (the files' state only changed
        // in what a poll re-derives, such as an EVTX file's size while it is written).
        let idle = pieces.is_empty() && findings.is_empty() && kept.is_empty() && !rebuild && released_until == released_before;
        let recorded = if idle {
            portcullis_case::LiveRecorded::default()
        } else {
            case.record_live(&LiveBatch {
                sources,
                findings: &findings,
                inputs: &kept,
                prune_before,
                state: vec![(FILES_KEY.into(), follower.checkpoint()), (RELEASED_KEY.into(), released_until.to_string())],
                incidents: rebuild.then_some(&incident_opts),
                events: status.events,
                rules_loaded: engine.rules.len() - detector.loaded.ioc_rules,
            })?
        };
        if let Some(before) = prune_before {
            seen.retain(|_, ts| *ts >= before);
        }
        if let Some(incidents) = &recorded.incidents {
            status.incidents = incidents.len();
            last_rebuild = Instant::now();
            unrebuilt = false;
        }
        let new: HashSet<&str> = recorded.new_findings.iter().map(String::as_str).collect();
        for (f, _) in &findings {
            if new.contains(f.id.as_str()) {
                observer.alert(&Alert::of(f));
            }
        }
        status.findings_new += recorded.new_findings.len() as u64;
        status.files = follower.files.len();
        status.lag_bytes = follower.backlog;
        status.correlation_pending = pending.len();
        status.lag_seconds = newest_event.map(|n| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
            (now - n).max(0) as f64 / 1e6
        });
        if events > 0 || drained {
            observer.status(&status);
        }
        if stopping || (s.once && drained && pending.is_empty() && !unrebuilt) {
            break;
        }
        if drained {
            follow::pause(s.interval, stop);
        }
    }
    case.finish_live()?;
    Ok(status)
}

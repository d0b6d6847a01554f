//! The hunt pipeline as a library: rules loaded and compiled, inputs read and scanned,
//! correlations run, findings and incidents built, the case file and timeline written,
//! and the run summarised, with the "never a silent zero-detection run" policy. Every
//! front end (the CLI, the report, the web UI, the workers) calls this instead of
//! wiring the crates itself; settings are plain structs, not a front end's arguments.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use portcullis_correlate::CorrelationSet;
use portcullis_event::Timestamp;
use portcullis_hunt::{FileOutcome, HuntResult, Progress, RunOptions};
use portcullis_incident::{Incident, IncidentOptions};
use portcullis_output::{FileProblem, RuleProblem, Summary};
use portcullis_sigma::{Engine, Level, LoadError, LogsourceTable, Placeholders, RuleSet};

mod findings;
pub use findings::{TOP_FINDINGS, TopFindings};

/// Which rules to load.
#[derive(Clone, Debug)]
pub struct RuleSettings {
    /// Sigma rule files or directories (community rules run unchanged).
    pub sigma: Vec<PathBuf>,
    /// Load Portcullis's own rule pack.
    pub builtin: bool,
    /// YAML of placeholder values for the `expand` modifier.
    pub placeholders: Option<PathBuf>,
    /// Extra log source mappings (the layout of `crates/sigma/data/logsources.yml`).
    pub logsources: Option<PathBuf>,
    /// Only findings at or above this level are reported. Every rule is still evaluated, so
    /// correlations keep the inputs their base rules give them.
    pub min_level: Level,
    /// Where parsed `--sigma` rule files are cached between runs (see
    /// [`portcullis_sigma::cache`]); None parses every file every time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            sigma: Vec::new(),
            builtin: true,
            placeholders: None,
            logsources: None,
            min_level: Level::Informational,
            cache_dir: None,
        }
    }
}

/// One hunt: what to read, with which rules and indicators, and where results go.
#[derive(Clone, Debug)]
pub struct HuntSettings {
    pub paths: Vec<PathBuf>,
    pub rules: RuleSettings,
    /// Indicator files (STIX 2.1, MISP, CSV/plain).
    pub iocs: Vec<PathBuf>,
    /// Load the built-in intel bundles.
    pub builtin_intel: bool,
    /// Events before this instant are skipped.
    pub from: Option<Timestamp>,
    /// Events after this instant are skipped.
    pub to: Option<Timestamp>,
    /// The UTC offset (seconds) of times written without a zone, and of collectors' times
    /// when no offset could be learned from the events' own times.
    pub assume_utc_offset_secs: Option<i64>,
    /// Worker threads; `None` for every core.
    pub threads: Option<usize>,
    /// Record the run in this SQLite case file.
    pub case: Option<PathBuf>,
    /// What the case file records as the command of this run.
    pub case_command: String,
    /// Write a Timesketch timeline here (CSV if the name ends in .csv, else JSONL).
    pub timeline: Option<PathBuf>,
    /// Findings sharing an entity join one incident when at most this many days apart.
    pub incident_window_days: f64,
    /// Memory (bytes) the detections may take before they are spilled to temporary files.
    pub detection_memory: usize,
}

impl Default for HuntSettings {
    fn default() -> Self {
        HuntSettings {
            paths: Vec::new(),
            rules: RuleSettings::default(),
            iocs: Vec::new(),
            builtin_intel: true,
            from: None,
            to: None,
            assume_utc_offset_secs: None,
            threads: None,
            case: None,
            case_command: String::new(),
            timeline: None,
            incident_window_days: 90.0,
            detection_memory: portcullis_hunt::DETECTION_BUFFER_BYTES,
        }
    }
}

/// Why a hunt could not run or finish.
#[derive(Debug)]
pub enum Error {
    /// A `--sigma` path that does not exist.
    RulesPathMissing(PathBuf),
    /// The placeholders file could not be used.
    Placeholders(String),
    /// The extra log source mappings could not be used.
    Logsources { path: PathBuf, reason: String },
    /// Input paths that could not be listed.
    Inputs(Vec<String>),
    /// The input paths hold no files.
    NoInputs,
    /// An indicator file could not be used.
    Intel(String),
    /// The case file could not be opened or written.
    Case(portcullis_case::CaseError),
    /// The timeline could not be written.
    Timeline { path: PathBuf, error: std::io::Error },
    /// `--from` is later than `--to`: nothing could be checked.
    EmptyWindow { from: Timestamp, to: Timestamp },
    /// Rules were given with `--sigma` but none of them loaded: nothing they describe was checked.
    NoRuleLoaded { failed: usize },
    /// Detections spilled to temporary files could not be read back.
    DetectionsUnreadable(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RulesPathMissing(p) => write!(f, "rules path {} does not exist", p.display()),
            Error::Placeholders(e) => f.write_str(e),
            Error::Logsources { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Inputs(errors) => f.write_str(&errors.join("; ")),
            Error::NoInputs => f.write_str("no input files found"),
            Error::Intel(e) => f.write_str(e),
            Error::Case(e) => write!(f, "{e}"),
            Error::Timeline { path, error } => write!(f, "{}: {error}", path.display()),
            Error::EmptyWindow { from, to } => write!(f, "--from {from} is later than --to {to}: no event could be checked"),
            Error::NoRuleLoaded { failed } => write!(
                f,
                "none of the --sigma rules loaded ({failed} failed; `portcullis rules --sigma DIR` lists why): nothing they describe was checked"
            ),
            Error::DetectionsUnreadable(e) => write!(f, "the detections spilled to temporary files could not be read back: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<portcullis_case::CaseError> for Error {
    fn from(e: portcullis_case::CaseError) -> Self {
        Error::Case(e)
    }
}

/// Rules loaded and compiled, with what failed.
pub struct LoadedRules {
    /// What was loaded, less its rules: they moved into `engine.rules`.
    pub set: RuleSet,
    pub engine: Engine,
    pub correlations: Arc<CorrelationSet>,
    /// Correlation documents that could not be used.
    pub correlation_errors: Vec<LoadError>,
    /// Reading and parsing rule files.
    pub parse_seconds: f64,
    /// Compiling the parsed rules into matchers.
    pub compile_seconds: f64,
    /// Synthetic rules appended to the engine for indicator contexts.
    pub ioc_rules: usize,
    /// Rules (and correlations) loaded from `--sigma` paths.
    pub user_rules: usize,
    /// What the parsed-rule cache gave.
    pub cache: portcullis_sigma::CacheUse,
}

impl LoadedRules {
    /// Every rule or correlation that failed to load or compile.
    pub fn failures(&self) -> impl Iterator<Item = &LoadError> {
        self.set.errors.iter().chain(&self.engine.failed).chain(&self.correlation_errors)
    }
}

/// Reads, parses and compiles the rules.
pub fn load_rules(s: &RuleSettings) -> Result<LoadedRules, Error> {
    let started = Instant::now();
    let placeholders = match &s.placeholders {
        Some(p) => portcullis_sigma::load_placeholders(p).map_err(Error::Placeholders)?,
        None => Placeholders::new(),
    };
    let mut table = LogsourceTable::builtin();
    if let Some(p) = &s.logsources {
        let bad = |reason: String| Error::Logsources { path: p.clone(), reason };
        let text = std::fs::read_to_string(p).map_err(|e| bad(e.to_string()))?;
        table.extend_from_yaml(&text).map_err(|e| bad(e.to_string()))?;
    }
    let mut set = RuleSet::default();
    if s.builtin {
        for (label, text) in portcullis_rules::builtin() {
            set.add_text(text, label, &placeholders);
        }
    }
    let builtin = set.rules.len() + set.correlations.len();
    let rule_cache = s.cache_dir.as_ref().map(|dir| portcullis_sigma::RuleCache::new(dir.clone(), &placeholders));
    let mut cache = portcullis_sigma::CacheUse::default();
    for p in &s.sigma {
        if !p.exists() {
            return Err(Error::RulesPathMissing(p.clone()));
        }
        cache.add(set.add_path_cached(p, &placeholders, rule_cache.as_ref()));
    }
    let user_rules = set.rules.len() + set.correlations.len() - builtin;
    let parse_seconds = started.elapsed().as_secs_f64();
    let engine = Engine::compile_rules(std::mem::take(&mut set.rules), &set.filters, &table);
    let (correlations, correlation_errors) = CorrelationSet::compile(&set.correlations, &engine.rules);
    let compile_seconds = started.elapsed().as_secs_f64() - parse_seconds;
    Ok(LoadedRules {
        set,
        engine,
        correlations: Arc::new(correlations),
        correlation_errors,
        parse_seconds,
        compile_seconds,
        ioc_rules: 0,
        user_rules,
        cache,
    })
}

/// Rules and indicators loaded for a front end that scans events itself (`watch`, workers).
pub struct Detector {
    pub loaded: LoadedRules,
    pub iocs: Option<Arc<portcullis_hunt::IocRules>>,
    /// Per rule: matched only to feed correlations, not reported.
    pub hidden: Vec<bool>,
    /// Indicator files read, as "file (format): count".
    pub ioc_files: Vec<String>,
    /// Indicators that could not be used, with their position.
    pub ioc_problems: Vec<String>,
}

impl Detector {
    /// The view [`portcullis_hunt::detect`] takes.
    pub fn rules(&self) -> portcullis_hunt::Rules<'_> {
        portcullis_hunt::Rules {
            engine: &self.loaded.engine,
            correlations: &self.loaded.correlations,
            hidden: &self.hidden,
            iocs: self.iocs.as_deref(),
        }
    }
}

/// Loads rules and indicators the way `hunt` does (the same rules give the same finding
/// ids), refusing `--sigma` paths of which no rule loaded.
pub fn load_detector(rules: &RuleSettings, iocs: &[PathBuf], builtin_intel: bool) -> Result<Detector, Error> {
    let mut loaded = load_rules(rules)?;
    if !rules.sigma.is_empty() && loaded.set.files > 0 && loaded.user_rules == 0 {
        return Err(Error::NoRuleLoaded { failed: loaded.failures().count() });
    }
    let intel = portcullis_intel::load(iocs, builtin_intel).map_err(Error::Intel)?;
    let ioc_files = intel.files.iter().map(|(f, fmt, n)| format!("{f} ({fmt}): {n}")).collect();
    let ioc_problems = intel.problems.iter().map(|p| format!("{}: {}", p.position, p.reason)).collect();
    let before = loaded.engine.rules.len();
    let iocs = (!intel.set.is_empty()).then(|| Arc::new(portcullis_hunt::IocRules::install(&mut loaded.engine, intel.set)));
    loaded.ioc_rules = loaded.engine.rules.len() - before;
    let hidden = portcullis_hunt::hidden_rules(&loaded.engine, &loaded.correlations);
    Ok(Detector { loaded, iocs, hidden, ioc_files, ioc_problems })
}

/// The files under `paths` (directories searched recursively); an error if a path
/// cannot be listed or nothing is found.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let (files, errors) = portcullis_sources::collect_files(paths);
    if !errors.is_empty() {
        return Err(Error::Inputs(errors.iter().map(|e| e.to_string()).collect()));
    }
    if files.is_empty() {
        return Err(Error::NoInputs);
    }
    Ok(files)
}

/// Adds to `inventory` every Exchange build evidenced in the logs under `paths` (OWA/ECP
/// paths, X-OWA-Version, the HttpProxy/Rps_Http version columns, Sysmon file versions of
/// Exchange binaries), each with the file and record it came from. Returns how many events
/// were searched.
pub fn exchange_builds_in_logs(inventory: &mut portcullis_exchange::Inventory, paths: &[PathBuf]) -> Result<u64, Error> {
    use portcullis_exchange::Build;
    let files = collect_inputs(paths)?;
    let (_, states) = portcullis_hunt::run_files(
        &files,
        &RunOptions::default(),
        &portcullis_hunt::NoProgress,
        || (0u64, Vec::new()),
        |(n, found): &mut (u64, Vec<(String, Build, String)>), path, ev| {
            *n += 1;
            for (server, b, evidence) in portcullis_exchange::builds_in_event(ev) {
                let place = portcullis_hunt::event_path(path, ev);
                found.push((server, b, format!("{} ({}:{})", evidence.describe(), place.display(), ev.record)));
            }
        },
    );
    let mut searched = 0;
    for ((n, found), _) in states {
        searched += n;
        for (server, b, source) in found {
            inventory.add(server.to_uppercase(), b, source);
        }
    }
    Ok(searched)
}

/// Everything a hunt produced, before it is written out.
pub struct HuntOutcome {
    pub loaded: LoadedRules,
    pub result: HuntResult,
    /// The most severe findings, and the highest level of any.
    pub top_findings: TopFindings,
    pub incidents: Vec<Incident>,
    pub summary: Summary,
    /// Recording into the case file failed after the hunt; the results above are whole
    /// (incidents from this run's findings only) and should be written out before this
    /// error is reported.
    pub case_error: Option<Error>,
}

impl HuntOutcome {
    /// The writer's view of this hunt.
    pub fn report(&self) -> portcullis_output::Report<'_> {
        portcullis_output::Report {
            engine: &self.loaded.engine,
            correlation_set: &self.loaded.correlations,
            incidents: &self.incidents,
            correlations: &self.result.correlations,
            detections: &self.result.detections,
            summary: &self.summary,
        }
    }

    /// True when no input file could be read as a log.
    pub fn nothing_read(&self) -> bool {
        self.summary.files_failed + self.summary.files_not_logs.len() == self.summary.files
    }
}

/// Progress of a hunt, for a front end to display.
pub trait Observer: Progress {
    /// Called once the input files are known, before any is read.
    fn started(&self, _files: &[PathBuf]) {}
}

/// No progress display.
pub struct Quiet;
impl Progress for Quiet {}
impl Observer for Quiet {}

/// Loads rules and indicators, reads and scans the inputs, correlates, builds findings
/// and incidents, and records the case file and timeline if asked. `started` is when
/// the run began (for the summary's elapsed time).
pub fn hunt(s: &HuntSettings, observer: &dyn Observer, started: Instant) -> Result<HuntOutcome, Error> {
    // A case file that cannot be written is refused before a single log is read.
    let mut case = match &s.case {
        Some(path) => Some(portcullis_case::Case::open(path, &s.case_command)?),
        None => None,
    };
    if let (Some(from), Some(to)) = (s.from, s.to)
        && from > to
    {
        return Err(Error::EmptyWindow { from, to });
    }
    let mut loaded = load_rules(&s.rules)?;
    if !s.rules.sigma.is_empty() && loaded.set.files > 0 && loaded.user_rules == 0 {
        return Err(Error::NoRuleLoaded { failed: loaded.failures().count() });
    }
    let files = collect_inputs(&s.paths)?;
    let intel = portcullis_intel::load(&s.iocs, s.builtin_intel).map_err(Error::Intel)?;
    let ioc_files: Vec<String> = intel.files.iter().map(|(f, fmt, n)| format!("{f} ({fmt}): {n}")).collect();
    let ioc_problems: Vec<String> = intel.problems.iter().map(|p| format!("{}: {}", p.position, p.reason)).collect();
    let before = loaded.engine.rules.len();
    let iocs = (!intel.set.is_empty()).then(|| Arc::new(portcullis_hunt::IocRules::install(&mut loaded.engine, intel.set)));
    loaded.ioc_rules = loaded.engine.rules.len() - before;
    let iocs_loaded = iocs.as_ref().map_or(0, |i| i.set.len());
    let mut opts = RunOptions {
        threads: s.threads.unwrap_or_else(|| RunOptions::default().threads),
        from: s.from,
        to: s.to,
        iocs,
        min_level: s.rules.min_level,
        detection_budget: s.detection_memory,
        ..Default::default()
    };
    opts.read.assume_utc_offset_secs = s.assume_utc_offset_secs;
    observer.started(&files);
    let hunt_started = Instant::now();
    let mut result = portcullis_hunt::hunt(&loaded.engine, &loaded.correlations, &files, &opts, observer);
    let hunt_seconds = hunt_started.elapsed().as_secs_f64();
    // A million indicators take a tenth of a second to free: not on the way to the report.
    if let Some(iocs) = opts.iocs.take() {
        std::thread::spawn(move || drop(iocs));
    }
    let min = s.rules.min_level;
    result.correlations.retain(|c| loaded.correlations.correlations[c.correlation].level >= min);
    let incident_opts = IncidentOptions { window_micros: (s.incident_window_days.max(0.0) * 86_400.0 * 1e6) as i64, ..Default::default() };
    let mut case_new = None;
    let mut case_error = None;
    let mut top_findings = TopFindings::default();
    let mut incident_warning = None;
    let recorded = case.as_mut().map(|case| {
        let sources: Vec<portcullis_case::SourceRecord<'_>> = result
            .outcomes
            .iter()
            .filter_map(|o| match o {
                FileOutcome::Read(r) => Some(portcullis_case::SourceRecord {
                    path: &r.path,
                    size: r.bytes,
                    format: r.format.map(|f| f.as_str()),
                    events: r.events,
                    skipped: r.skipped,
                    time_span: r.time_span,
                    notes: r.notes.iter().chain(&r.warnings).cloned().collect(),
                }),
                _ => None,
            })
            .collect();
        record_in_case(case, &sources, &loaded, &result, &incident_opts, &mut top_findings)
    });
    let incidents = match recorded {
        Some(Ok((new, incidents))) => {
            case_new = Some(new);
            incidents
        }
        // The run's own results are kept and reported; the caller says the case failed.
        other => {
            case_error = other.and_then(|r| r.err());
            top_findings = TopFindings::default();
            let (incidents, left_out) =
                findings::incidents_of_run(&loaded, &result, &incident_opts, &mut top_findings).map_err(Error::DetectionsUnreadable)?;
            if left_out > 0 {
                incident_warning =
                    Some(format!("{left_out} findings past the incident builder's 4-billion limit were left out of incidents"));
            }
            incidents
        }
    };
    let mut timeline_warning = None;
    if let Some(path) = &s.timeline {
        portcullis_output::timeline::write(
            path,
            &loaded.engine,
            &loaded.correlations,
            &result.detections,
            &result.correlations,
            &incidents,
        )
        .map_err(|error| Error::Timeline { path: path.clone(), error })?;
        let untimed = result.detections.untimed();
        if untimed > 0 {
            timeline_warning = Some(format!(
                "timeline {}: {} without a time left out (they are in the output{})",
                path.display(),
                portcullis_output::plural(untimed, "detection", "detections"),
                if s.case.is_some() { " and the case" } else { "" }
            ));
        }
    }

    let mut summary = summarise(&loaded, &result, started);
    summary.warnings.extend(timeline_warning);
    summary.warnings.extend(incident_warning);
    summary.iocs_loaded = iocs_loaded;
    summary.ioc_matches = result.detections.indicator_matches();
    summary.ioc_files = ioc_files;
    summary.ioc_problem_count = ioc_problems.len();
    summary.ioc_problems = ioc_problems.into_iter().take(100).collect();
    summary.hunt_seconds = hunt_seconds;
    summary.incidents = incidents.len();
    summary.case = s.case.as_ref().map(|p| p.display().to_string());
    summary.case_new_findings = case_new;
    if case_error.is_none()
        && let Some(case) = case.as_mut()
        && let Err(e) = case.record_summary(&summary)
    {
        case_error = Some(Error::Case(e));
    }
    Ok(HuntOutcome { loaded, result, top_findings, incidents, summary, case_error })
}

/// Records the run in the case: its sources, its findings with (for detections) the event as
/// JSON, made a chunk at a time as the detections are read again, so neither the findings
/// nor the events' JSON are ever all held; then the incidents rebuilt from every finding in
/// the case. Every finding of the run passes through `top`.
fn record_in_case(
    case: &mut portcullis_case::Case,
    sources: &[portcullis_case::SourceRecord<'_>],
    loaded: &LoadedRules,
    result: &HuntResult,
    incident_opts: &IncidentOptions,
    top: &mut TopFindings,
) -> Result<(usize, Vec<Incident>), Error> {
    use rayon::prelude::*;
    struct Failed(Error);
    impl From<std::io::Error> for Failed {
        fn from(e: std::io::Error) -> Self {
            Failed(Error::DetectionsUnreadable(e))
        }
    }
    let mut run = case.begin_run(sources)?;
    let mut detections = 0;
    let labels = portcullis_finding::RuleLabels::of(&loaded.engine);
    findings::each_batch(loaded, &labels, result, findings::Made::Whole, |batch, chunk| -> Result<(), Failed> {
        let events: Vec<String> = chunk.par_iter().with_min_len(256).map(|d| d.event.json_text()).collect();
        detections += chunk.len();
        // Correlation findings come with no detection, and so with no event.
        let events = events.iter().map(|e| Some(e.as_str())).chain(std::iter::repeat(None));
        run.add_findings(batch.iter().zip(events)).map_err(|e| Failed(Error::Case(e)))?;
        batch.iter().for_each(|f| top.add(f));
        Ok(())
    })
    .map_err(|f| f.0)?;
    findings::all_read(detections, result).map_err(Error::DetectionsUnreadable)?;
    Ok(run.finish(loaded.engine.rules.len(), result.stats.events, incident_opts)?)
}

/// The run summary: files, events, skips with positions, rules loaded, applied and
/// failed, detections by level, and the warnings that keep a zero-detection run from
/// passing silently.
pub fn summarise(loaded: &LoadedRules, result: &HuntResult, started: Instant) -> Summary {
    let engine = &loaded.engine;
    let mut s = Summary { kind: "summary", ..Default::default() };
    s.files = result.outcomes.len();
    for o in &result.outcomes {
        match o {
            FileOutcome::Read(r) => {
                s.bytes += r.bytes;
                s.records_skipped += r.skipped;
                for w in &r.warnings {
                    s.warnings.push(format!("{}: {w}", r.path.display()));
                }
                if r.skipped > 0 {
                    s.file_problems.push(FileProblem {
                        path: r.path.display().to_string(),
                        error: None,
                        skipped: r.skipped,
                        notes: r.notes.clone(),
                    });
                }
            }
            FileOutcome::Failed(portcullis_sources::SourceError::Unrecognised { path }) => {
                s.files_not_logs.push(path.display().to_string());
            }
            FileOutcome::Failed(e @ portcullis_sources::SourceError::NotRegular { path, .. }) => {
                s.files_not_logs.push(path.display().to_string());
                s.warnings.push(e.to_string());
            }
            FileOutcome::Failed(e) => {
                s.files_failed += 1;
                s.file_problems.push(FileProblem {
                    path: o.path().display().to_string(),
                    error: Some(e.to_string()),
                    skipped: 0,
                    notes: vec![],
                });
            }
            FileOutcome::Crashed { path, message } => {
                s.files_failed += 1;
                s.file_problems.push(FileProblem {
                    path: path.display().to_string(),
                    error: Some(format!("{}: reader failed ({message}); please report this file", path.display())),
                    skipped: 0,
                    notes: vec![],
                });
            }
        }
    }
    s.events = result.stats.events;
    s.events_out_of_range = result.stats.out_of_range;
    s.rules_loaded = engine.rules.len() - loaded.ioc_rules;
    s.rules_unmapped = engine.unmapped.len();
    // Regexes compile on first use; one that could not is reported with the load failures.
    let late = engine.regex_failures();
    s.rules_failed =
        loaded.failures().chain(&late).map(|e| RuleProblem { path: e.path.clone(), line: e.line, reason: e.reason.clone() }).collect();
    let applied = engine.applied_rules(&result.group_events);
    s.rules_applied = applied.iter().filter(|a| **a).count();
    s.detections = result.detections.len();
    s.detections_spilled = result.detections.spilled();
    if let Some(e) = &result.spill_error {
        s.warnings.push(format!(
            "the detections could not be spilled to temporary files ({e}); {} of {} were kept in memory",
            result.detections.len() - result.detections.spilled(),
            result.detections.len()
        ));
    }
    s.correlations_loaded = loaded.correlations.correlations.len();
    s.correlation_findings = result.correlations.len();
    s.correlation_inputs = result.correlation_stats.inputs;
    s.correlation_seconds = result.correlation_stats.seconds;
    for e in &result.correlation_stats.errors {
        s.warnings.push(e.clone());
    }
    if result.correlation_stats.untimed > 0 {
        s.warnings
            .push(format!("{} matches of correlated rules had no timestamp and could not be correlated", result.correlation_stats.untimed));
    }
    let by_level = result.by_level(engine);
    for l in Level::ALL {
        s.detections_by_level.insert(l.as_str(), by_level[l as usize]);
    }
    if s.rules_loaded == 0 {
        s.warnings.push("no rules were loaded: pass --sigma DIR with Sigma rules".into());
    } else if s.events == 0 && s.events_out_of_range == 0 {
        s.warnings.push("no events were read from the inputs".into());
    } else if s.events > 0 && s.rules_applied == 0 {
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        for o in &result.outcomes {
            if let FileOutcome::Read(r) = o
                && let Some(f) = r.format
            {
                *kinds.entry(f.as_str()).or_default() += r.events;
            }
        }
        let inputs: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        s.warnings.push(format!(
            "no loaded rule applies to any input: the inputs were {} events, and none of the {} rules' log sources \
select them. Zero detections here means nothing was checked, not that nothing happened. \
Run `portcullis events` on an input to see its fields and `portcullis rules` for the rules' log sources.",
            inputs.join(", "),
            s.rules_loaded
        ));
    }
    s.rules_parse_seconds = loaded.parse_seconds;
    s.rules_compile_seconds = loaded.compile_seconds;
    s.rules_files_cached = loaded.cache.hits;
    s.rules_files_unread = loaded.cache.unread;
    for p in &loaded.cache.problems {
        s.warnings.push(format!("rule cache: {p}"));
    }
    s.elapsed_seconds = started.elapsed().as_secs_f64();
    s
}

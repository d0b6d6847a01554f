//! The subcommands.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use portcullis_event::{Timestamp, escape_display};
use portcullis_hunt::{FileOutcome, Progress, RunOptions};
use portcullis_pipeline::{HuntSettings, Observer, RuleSettings};
use portcullis_sigma::Level;

use crate::{
    DemoArgs, EXIT_FINDINGS, EXIT_OK, EventsArgs, ExchangeCheckArgs, Fatal, HuntArgs, LevelArg, RuleArgs, RulesArgs, SimulateArgs,
    show_progress,
};

impl RuleArgs {
    pub fn settings(&self) -> RuleSettings {
        RuleSettings {
            sigma: self.sigma.clone(),
            builtin: !self.no_builtin,
            placeholders: self.placeholders.clone(),
            logsources: self.logsources.clone(),
            min_level: self.min_level.into(),
            cache_dir: if self.no_rule_cache { None } else { rule_cache_dir() },
        }
    }
}

/// Where parsed rule files are cached: $PORTCULLIS_CACHE_DIR, else the user's cache
/// directory ($XDG_CACHE_HOME or ~/.cache) under `portcullis`. None when none is known.
fn rule_cache_dir() -> Option<std::path::PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    env("PORTCULLIS_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("portcullis")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("portcullis")))
}

impl HuntArgs {
    pub fn settings(&self) -> Result<HuntSettings, Fatal> {
        Ok(HuntSettings {
            paths: self.paths.clone(),
            rules: self.rules.settings(),
            iocs: self.intel.iocs.clone(),
            builtin_intel: !self.intel.no_builtin_intel,
            from: parse_time(&self.from, "--from")?,
            to: parse_time(&self.to, "--to")?,
            assume_utc_offset_secs: parse_offset(&self.assume_timezone)?,
            threads: self.threads,
            case: self.case.clone(),
            case_command: std::env::args().collect::<Vec<_>>().join(" "),
            timeline: self.timeline.clone(),
            incident_window_days: self.incident_window_days,
            detection_memory: (self.detection_memory.min(1 << 40) as usize) << 20,
        })
    }
}

pub fn parse_offset(s: &Option<String>) -> Result<Option<i64>, Fatal> {
    match s {
        None => Ok(None),
        Some(z) => Timestamp::parse_offset(z)
            .map(Some)
            .ok_or_else(|| Fatal(format!("--assume-timezone `{z}` is not a UTC offset (use e.g. -05:00, +0100 or UTC)"))),
    }
}

fn parse_time(s: &Option<String>, what: &str) -> Result<Option<Timestamp>, Fatal> {
    match s {
        None => Ok(None),
        Some(t) => Timestamp::parse(t).map(Some).ok_or_else(|| Fatal(format!("{what} `{t}` is not a time (use RFC 3339 or YYYY-MM-DD)"))),
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn file_done(&self, _path: &Path, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Observer for Bar {
    fn started(&self, files: &[PathBuf]) {
        if !self.0.is_hidden() {
            self.0.set_length(total_bytes(files));
        }
    }
}

fn total_bytes(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
}

fn progress_bar(files: &[PathBuf], show: bool) -> Bar {
    Bar(bytes_bar(files, show))
}

/// A progress bar over the total size of `files` (stderr, hidden unless `show`).
pub fn bytes_bar(files: &[PathBuf], show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes(files));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Fatal> {
    Ok(portcullis_pipeline::collect_inputs(paths)?)
}

pub fn open_output(path: &Option<PathBuf>) -> Result<Box<dyn Write + Send>, Fatal> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(File::create(p).map_err(|e| Fatal(format!("{}: {e}", p.display())))?)),
        None => Box::new(BufWriter::new(std::io::stdout())),
    })
}

pub fn hunt(a: HuntArgs, started: Instant) -> Result<u8, Fatal> {
    let bar = Bar(bytes_bar(&[], show_progress(a.quiet)));
    // The outcome holds the compiled rules, hundreds of thousands of small allocations. The
    // process exits after this command, so it is not freed piece by piece.
    let h = std::mem::ManuallyDrop::new(portcullis_pipeline::hunt(&a.settings()?, &bar, started)?);
    bar.0.finish_and_clear();
    let summary = &h.summary;
    let format: portcullis_output::Format = a.format.into();
    let mut out = open_output(&a.output)?;
    portcullis_output::write_report(&mut out, format, &h.report())?;
    drop(out);
    if !a.quiet && (format != portcullis_output::Format::Table || a.output.is_some()) {
        let mut err = std::io::stderr().lock();
        portcullis_output::write_summary_text(&mut err, summary)?;
    }
    if let Some(e) = &h.case_error {
        return Err(Fatal(format!("the results above were written, but the case file was not: {e}")));
    }
    if h.nothing_read() {
        return Err(Fatal("no input file could be read as a log (see the summary above)".into()));
    }
    if let Some(level) = a.fail_on {
        let level: Level = level.into();
        if h.top_findings.highest.is_some_and(|l| l >= level) {
            return Ok(EXIT_FINDINGS);
        }
    }
    Ok(EXIT_OK)
}

pub fn events(a: EventsArgs) -> Result<u8, Fatal> {
    let files = collect_inputs(&a.paths)?;
    let mut opts = RunOptions {
        threads: a.threads.unwrap_or_else(|| RunOptions::default().threads),
        from: parse_time(&a.from, "--from")?,
        to: parse_time(&a.to, "--to")?,
        ..Default::default()
    };
    opts.read.assume_utc_offset_secs = parse_offset(&a.assume_timezone)?;
    let bar = progress_bar(&files, show_progress(a.quiet));
    let mut out = open_output(&a.output)?;
    let (outcomes, total) = if a.count {
        let (outcomes, states) = portcullis_hunt::run_files(&files, &opts, &bar, || 0u64, |n, _, _| *n += 1);
        (outcomes, states.iter().map(|(n, _)| *n).sum::<u64>())
    } else {
        // One thread writes in file order, so output is deterministic.
        let opts = RunOptions { threads: 1, ..opts };
        let out_ref = std::sync::Mutex::new(&mut out);
        let (outcomes, states) = portcullis_hunt::run_files(
            &files,
            &opts,
            &bar,
            || 0u64,
            |n, path, ev| {
                *n += 1;
                let mut w = out_ref.lock().unwrap_or_else(|e| e.into_inner());
                let _ = portcullis_output::events::write_event(&mut **w, path, ev);
            },
        );
        (outcomes, states.iter().map(|(n, _)| *n).sum::<u64>())
    };
    bar.0.finish_and_clear();
    if a.count {
        writeln!(out, "{total}")?;
    }
    out.flush()?;
    let mut failed = 0;
    let mut skipped = 0;
    let mut not_logs = 0;
    for o in &outcomes {
        match o {
            FileOutcome::Read(r) => {
                skipped += r.skipped;
                if !a.quiet {
                    for w in &r.warnings {
                        eprintln!("warning: {}: {}", r.path.display(), escape_display(w));
                    }
                }
            }
            FileOutcome::Failed(portcullis_sources::SourceError::Unrecognised { .. }) => not_logs += 1,
            FileOutcome::Failed(e @ portcullis_sources::SourceError::NotRegular { .. }) => {
                not_logs += 1;
                if !a.quiet {
                    eprintln!("note: {}", escape_display(&e.to_string()));
                }
            }
            FileOutcome::Failed(e) => {
                failed += 1;
                if !a.quiet {
                    eprintln!("unreadable: {}", escape_display(&e.to_string()));
                }
            }
            FileOutcome::Crashed { path, message } => {
                failed += 1;
                eprintln!("reader failed on {}: {message}", path.display());
            }
        }
    }
    if !a.quiet {
        eprintln!(
            "{total} events from {} files; {skipped} records skipped; {failed} files unreadable; {not_logs} files not in a log format",
            outcomes.len()
        );
    }
    if failed + not_logs == outcomes.len() {
        return Err(Fatal("no input file could be read".into()));
    }
    Ok(EXIT_OK)
}

pub fn rules(a: RulesArgs) -> Result<u8, Fatal> {
    let loaded = portcullis_pipeline::load_rules(&a.rules.settings())?;
    let report = portcullis_output::rules::RulesReport {
        engine: &loaded.engine,
        failures: loaded.failures().collect(),
        files: loaded.set.files,
        filters: loaded.set.filters.len(),
        correlations: loaded.correlations.correlations.len(),
        parse_seconds: loaded.parse_seconds,
        compile_seconds: loaded.compile_seconds,
        verbose: a.verbose,
    };
    let mut out = open_output(&a.output)?;
    portcullis_output::rules::write(&mut out, a.format.into(), &report)?;
    out.flush()?;
    Ok(EXIT_OK)
}

pub fn simulate(a: SimulateArgs) -> Result<u8, Fatal> {
    let max = if a.registers_only { 2000.0 } else { 100.0 };
    if !(a.scale > 0.0 && a.scale <= max) {
        return Err(Fatal(format!("--scale must be above 0 and at most {max}")));
    }
    let started = Instant::now();
    let cfg = portcullis_simulate::Config { seed: a.seed, scale: a.scale, registers_only: a.registers_only };
    if matches!(a.scenario, crate::Scenario::Parliament) {
        let truth =
            portcullis_simulate::parliament(&cfg, a.members_targeted, &a.out).map_err(|e| Fatal(format!("{}: {e}", a.out.display())))?;
        let bytes: u64 = truth.files.iter().map(|f| f.bytes).sum();
        let mail = truth.benign_mail.as_ref().and_then(|b| b["messages"].as_u64()).unwrap_or(0);
        let planted = truth.mail_campaigns.first().and_then(|c| c["messages"].as_u64()).unwrap_or(0);
        println!(
            "Wrote {} benign messages and a planted {}-message campaign under {}/Mail, {} log files ({}) under Logs/, members.csv and truth.json in {:.1}s.",
            mail,
            planted,
            a.out.display(),
            truth.files.len(),
            portcullis_output::human_bytes(bytes),
            started.elapsed().as_secs_f64(),
        );
        println!("Try: portcullis mail {0}/Mail --members {0}/members.csv --logs {0}/Logs", a.out.display());
        return Ok(EXIT_OK);
    }
    let truth = portcullis_simulate::electoral_commission(&cfg, &a.out).map_err(|e| Fatal(format!("{}: {e}", a.out.display())))?;
    let bytes: u64 = truth.files.iter().map(|f| f.bytes).sum();
    println!(
        "Wrote {} log files ({}) and truth.json to {} in {:.1}s: {} planted steps from {} to {}.",
        truth.files.len(),
        portcullis_output::human_bytes(bytes),
        a.out.display(),
        started.elapsed().as_secs_f64(),
        truth.steps.len(),
        truth.steps.first().map(|s| s.time.as_str()).unwrap_or("-"),
        truth.steps.last().map(|s| s.time.as_str()).unwrap_or("-"),
    );
    Ok(EXIT_OK)
}

pub fn demo(a: DemoArgs, started: Instant) -> Result<u8, Fatal> {
    use portcullis_event::escape_display as esc;
    let out = &a.out;
    let data = out.join("institution");
    if data.exists() {
        std::fs::remove_dir_all(&data).map_err(|e| Fatal(format!("{}: {e}", data.display())))?;
    }
    let case = out.join("case.sqlite");
    for stale in [case.clone(), out.join("case.sqlite-wal"), out.join("case.sqlite-shm")] {
        let _ = std::fs::remove_file(stale);
    }
    println!("Portcullis demo: a synthetic electoral body, breached through Exchange (ProxyShell) in Aug 2021.\n");
    let cfg = portcullis_simulate::Config { seed: a.seed, scale: a.scale, registers_only: false };
    let truth = portcullis_simulate::electoral_commission(&cfg, &data).map_err(|e| Fatal(format!("{}: {e}", data.display())))?;
    let bytes: u64 = truth.files.iter().map(|f| f.bytes).sum();
    println!(
        "1. Simulated {} log files ({}) from Aug 2021 to Oct 2022 in {}: IIS, Exchange HttpProxy/Rps_Http/\n   message tracking, Windows Security, Sysmon, MSExchange Management, Okta, file-share audit.",
        truth.files.len(),
        portcullis_output::human_bytes(bytes),
        data.display()
    );
    let settings = HuntSettings {
        paths: vec![data.clone()],
        rules: RuleSettings { sigma: a.sigma.clone(), ..Default::default() },
        case: Some(case.clone()),
        case_command: std::env::args().collect::<Vec<_>>().join(" "),
        timeline: Some(out.join("timeline.jsonl")),
        ..Default::default()
    };
    let h = portcullis_pipeline::hunt(&settings, &portcullis_pipeline::Quiet, started)?;
    if let Some(e) = h.case_error {
        return Err(Fatal(e.to_string()));
    }
    {
        let mut f = BufWriter::new(File::create(out.join("findings.jsonl")).map_err(|e| Fatal(e.to_string()))?);
        portcullis_output::write_report(&mut f, portcullis_output::Format::Jsonl, &h.report())?;
    }
    let s = &h.summary;
    println!(
        "2. Hunted {} events with {} rules (Portcullis's Exchange pack{}) in {:.1}s: {} detections, {} correlations, {} incident{}.\n",
        s.events,
        s.rules_loaded,
        if a.sigma.is_empty() { "" } else { " and SigmaHQ" },
        s.hunt_seconds,
        s.detections,
        s.correlation_findings,
        s.incidents,
        if s.incidents == 1 { "" } else { "s" }
    );

    // Did we see every planted step?
    let detections = h.result.detections.all().map_err(|e| Fatal(e.to_string()))?;
    let seen: std::collections::HashSet<(String, u64)> =
        detections.iter().map(|d| (d.path.strip_prefix(&data).unwrap_or(&d.path).display().to_string(), d.event.record)).collect();
    let correlated: Vec<(i64, i64)> = h.result.correlations.iter().map(|c| (c.first_ts, c.last_ts)).collect();
    let detected = truth
        .steps
        .iter()
        .filter(|st| {
            st.evidence.iter().any(|e| seen.contains(&(e.path.clone(), e.line.or(e.record).unwrap_or(0))))
                || Timestamp::parse(&st.time).is_some_and(|t| correlated.iter().any(|(f, l)| t.0 >= *f - 60_000_000 && t.0 <= *l))
        })
        .count();

    for (n, inc) in h.incidents.iter().enumerate().take(3) {
        println!(
            "INCIDENT {} [{}]  first evidence {}  ·  last {}  ·  dwell {}",
            n + 1,
            inc.severity.as_str().to_uppercase(),
            inc.first_seen,
            inc.last_seen,
            portcullis_incident::human_duration(inc.dwell_seconds)
        );
        let ents: Vec<String> = inc.entities.iter().take(5).map(|e| format!("{}={}", e.kind, esc(&e.value))).collect();
        println!("   entities: {}", ents.join(", "));
        println!("   ATT&CK:   {}", inc.tactics.join(" → "));
        println!("   attack chain (each step the first time it was seen):");
        let mut shown = std::collections::HashSet::new();
        for st in &inc.stages {
            if shown.insert(st.rule_title.clone()) {
                let mut line = esc(&st.sentence).into_owned();
                if line.chars().count() > 150 {
                    line = line.chars().take(149).collect::<String>() + "…";
                }
                println!("    · {line}");
            }
        }
        println!();
    }
    let top = &h.top_findings;
    println!("TOP FINDINGS ({} at high or critical)", top.total);
    for f in top.findings.iter().take(8) {
        let mut line = esc(&f.sentence).into_owned();
        if line.chars().count() > 140 {
            line = line.chars().take(139).collect::<String>() + "…";
        }
        println!("  {:<8} {line}", f.level.as_str());
    }
    println!(
        "\nDetected {detected} of {} planted steps (truth.json). The real intrusion went unseen for fourteen months;\n{}\n",
        truth.steps.len(),
        first_evidence_sentence(&h, &truth, &data)
    );
    demo_exposure(&data, &case)?;
    demo_posture(&data, &case)?;
    demo_mail(out, &case, a.seed)?;
    let report = out.join("report.html");
    crate::report::write(&case, &report)?;
    println!("Open the results:");
    println!("  {}              the report for leadership and the regulator (open in a browser)", report.display());
    println!("Work through it in the browser:  portcullis serve {}", case.display());
    println!("  {}            every finding, incident and the summary (JSONL)", out.join("findings.jsonl").display());
    println!("  {}              sqlite3 {} \"SELECT first_seen, severity, dwell_seconds FROM incidents\"", case.display(), case.display());
    println!("  {}            Timesketch timeline", out.join("timeline.jsonl").display());
    println!("  {}/truth.json   what was planted, with the log lines that show it", data.display());
    println!("  {}/mail-campaigns.jsonl   the reconnaissance campaign, every recipient graded", out.display());
    println!("Hunt your own logs:  portcullis hunt PATH --sigma sigma/rules");
    println!("Check your mail:     portcullis mail EXPORT --members members.csv --logs PROXY_AND_SIGNIN_LOGS");
    Ok(EXIT_OK)
}

/// Where the incident's first evidence falls in what was planted, from this run.
fn first_evidence_sentence(h: &portcullis_pipeline::HuntOutcome, truth: &portcullis_simulate::Truth, data: &Path) -> String {
    let Some(inc) = h.incidents.first() else { return "here no incident was found.".into() };
    let Ok(detections) = h.result.detections.all() else { return "here the detections could not be read back.".into() };
    let Some(first) = detections.iter().find(|d| d.id == inc.first_evidence) else {
        return format!("here the first evidence is a correlation at {}.", inc.first_seen);
    };
    let place = (first.path.strip_prefix(data).unwrap_or(&first.path).display().to_string(), first.event.record);
    let step = truth.steps.iter().position(|st| st.evidence.iter().any(|e| (e.path.clone(), e.line.or(e.record).unwrap_or(0)) == place));
    match step {
        Some(0) => format!("here the first evidence is the first planted step ({}, {}).", truth.steps[0].description, inc.first_seen),
        Some(n) => format!("here the first evidence is planted step {} of {} ({}).", n + 1, truth.steps.len(), truth.steps[n].description),
        None => format!("here the first evidence ({}) is not one of the planted steps.", inc.first_seen),
    }
}

/// What the campaigns that stay low are, by their commonest signal, from this run.
fn low_campaigns_sentence(campaigns: &[portcullis_mail::Campaign]) -> String {
    let low: Vec<&portcullis_mail::Campaign> = campaigns.iter().filter(|c| c.severity < portcullis_mail::Severity::Medium).collect();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for c in &low {
        if let Some(s) = c.signals.iter().max_by_key(|s| (s.messages, s.score)) {
            *kinds.entry(format!("{:?}", s.kind)).or_default() += 1;
        }
    }
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let what: Vec<String> = kinds.iter().take(3).map(|(k, n)| format!("{n} {}", human_kind(k))).collect();
    format!(
        "{} other campaign{} stay below medium{}",
        low.len(),
        if low.len() == 1 { "" } else { "s" },
        if what.is_empty() { String::new() } else { format!(": by their main signal, {}", what.join(", ")) }
    )
}

/// "HiddenImage" → "hidden image".
fn human_kind(k: &str) -> String {
    let mut out = String::new();
    for (i, c) in k.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Electoral registers in the institution's files, scoped by what the intrusion reached
/// according to the case, recorded in the case for the report.
fn demo_exposure(data: &std::path::Path, case: &std::path::Path) -> Result<(), Fatal> {
    let (hosts, files) = portcullis_case::intrusion_scope(case).map_err(|e| Fatal(e.to_string()))?;
    let opts = portcullis_exposure::Options {
        scope: Some(portcullis_exposure::Scope { accessed: files, compromised_hosts: hosts }),
        ..Default::default()
    };
    let report = portcullis_exposure::scan(&[data.to_path_buf()], &opts, &|_| {});
    let total = report.total_json();
    portcullis_case::Case::open(case, "exposure (demo)")
        .and_then(|mut c| c.record_exposure(&report, &total))
        .map_err(|e| Fatal(e.to_string()))?;
    let registers = report.files.iter().filter(|f| f.register).count();
    println!(
        "Exposure: {} unique electors in {registers} register cop{} on the institution's shares; {} on systems the intrusion reached, {} in files evidenced as accessed.\n",
        report.tally.unique(0),
        if registers == 1 { "y" } else { "ies" },
        report.tally.unique(1),
        report.tally.unique(2)
    );
    Ok(())
}

/// The regulator's findings as checks over the same logs, recorded in the case.
fn demo_posture(data: &std::path::Path, case: &std::path::Path) -> Result<(), Fatal> {
    let settings = portcullis_posture::Settings { paths: vec![data.to_path_buf()], ad: None, inventory: None, threads: 0 };
    let report = portcullis_posture::run(&settings, &|_| {}).map_err(Fatal)?;
    portcullis_case::Case::open(case, "posture (demo)").and_then(|mut c| c.record_posture(&report)).map_err(|e| Fatal(e.to_string()))?;
    let mut by_check: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &report.weaknesses {
        *by_check.entry(w.check.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = by_check.iter().map(|(k, n)| format!("{n} {}", k.replace('_', " "))).collect();
    println!(
        "Posture: {} weaknesses ({}); {} things these logs could not show.\n",
        report.weaknesses.len(),
        parts.join(", "),
        report.could_not_see.len()
    );
    Ok(())
}

/// The demo's second part: a parliament's mail with an APT31-style beacon campaign.
fn demo_mail(out: &std::path::Path, case: &std::path::Path, seed: u64) -> Result<(), Fatal> {
    use portcullis_event::escape_display as esc;
    let data = out.join("parliament");
    if data.exists() {
        std::fs::remove_dir_all(&data).map_err(|e| Fatal(format!("{}: {e}", data.display())))?;
    }
    let cfg = portcullis_simulate::Config { seed, scale: 0.05, registers_only: false };
    let truth = portcullis_simulate::parliament(&cfg, 43, &data).map_err(|e| Fatal(format!("{}: {e}", data.display())))?;
    let members = portcullis_mail::Members::parse(&std::fs::read_to_string(data.join("members.csv"))?).map_err(Fatal)?;
    let opts = portcullis_mail::Options { members, logs: vec![data.join("Logs")], ..Default::default() };
    let report = portcullis_mail::run(&[data.join("Mail")], &opts, &|_| {});
    let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("mail-campaigns.jsonl"))?);
    for c in &report.campaigns {
        serde_json::to_writer(&mut w, c)?;
        writeln!(w)?;
    }
    w.flush()?;
    let mut db = portcullis_case::Case::open(case, "mail").map_err(|e| Fatal(e.to_string()))?;
    db.record_mail(&report.campaigns).map_err(|e| Fatal(e.to_string()))?;
    println!(
        "Mail: a parliament's mailbox export in 2021 ({} messages, {} members on the protected list){}.",
        report.messages,
        report.members_loaded,
        truth.mail_campaigns.first().map(|_| ", with an APT31-style campaign planted").unwrap_or("")
    );
    let high: Vec<_> = report.campaigns.iter().filter(|c| c.severity >= portcullis_mail::Severity::Medium).collect();
    for c in &high {
        let grade = |g: portcullis_mail::Grade| c.recipients.iter().filter(|r| r.grade == g).count();
        let sender = c.senders.first().map(|s| format!("\"{}\" <{}>", s.name.as_deref().unwrap_or(""), s.address)).unwrap_or_default();
        println!(
            "CAMPAIGN [{}] {} to {}: {} messages from {} sender accounts (e.g. {}) to {} recipients, {} of them members",
            c.severity.as_str().to_uppercase(),
            c.first_seen.as_deref().map(|s| &s[..10]).unwrap_or("-"),
            c.last_seen.as_deref().map(|s| &s[..10]).unwrap_or("-"),
            c.messages,
            c.senders.len(),
            esc(&sender),
            c.recipients.len(),
            c.members_targeted
        );
        for s in c.signals.iter().filter(|s| s.score >= 2).take(4) {
            println!("   why: {}", esc(&s.what));
        }
        println!(
            "   graded from proxy, sign-in and Exchange logs: {} received, {} opened (beacon fetched), {} clicked, {} compromised",
            grade(portcullis_mail::Grade::Received),
            grade(portcullis_mail::Grade::Opened),
            grade(portcullis_mail::Grade::Clicked),
            grade(portcullis_mail::Grade::Compromised)
        );
        println!("   {}", esc(&c.assessment));
    }
    println!("   ({})\n", low_campaigns_sentence(&report.campaigns));
    Ok(())
}

pub fn exchange_check(a: ExchangeCheckArgs) -> Result<u8, Fatal> {
    use portcullis_exchange::{Build, Inventory, Status};
    let mut inventory = Inventory::default();
    for (i, arg) in a.builds.iter().enumerate() {
        let (server, build) = match arg.split_once('=') {
            Some((s, b)) => (s.trim().to_string(), b),
            None => (format!("server{}", i + 1), arg.as_str()),
        };
        let b = Build::parse(build).ok_or_else(|| Fatal(format!("`{build}` is not an Exchange 2013–2019 build (15.x.y[.z])")))?;
        inventory.add(server, b, "argument".into());
    }
    if let Some(inv) = &a.inventory {
        inventory.add_csv(inv).map_err(Fatal)?;
    }
    let searched = if a.logs.is_empty() { 0 } else { portcullis_pipeline::exchange_builds_in_logs(&mut inventory, &a.logs)? };
    if inventory.servers.is_empty() {
        let looked = if a.logs.is_empty() {
            String::new()
        } else {
            format!(
                " ({searched} events searched for OWA/ECP build paths, X-OWA-Version headers, the version columns of \
Exchange's HttpProxy/Rps_Http logs and Sysmon file versions of Exchange binaries; none found)"
            )
        };
        return Err(Fatal(format!("no Exchange build given or found: pass builds, --inventory or --logs{looked}")));
    }
    let verdicts = inventory.verdicts();
    let mut out = open_output(&a.output)?;
    portcullis_output::exchange::write(&mut out, a.format.into(), &verdicts)?;
    out.flush()?;
    // An open chain is critical; a build whose security-update level is unknown, medium.
    let fail_on = a.fail_on.or(a.fail_if_open.then_some(LevelArg::Critical)).map(Level::from);
    let level = |st: Status| match st {
        Status::Open => Some(Level::Critical),
        Status::Unknown => Some(Level::Medium),
        Status::Fixed => None,
    };
    let fail = fail_on.is_some_and(|min| verdicts.iter().flat_map(|v| &v.chains).filter_map(|c| level(c.status)).any(|l| l >= min));
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}

//! `portcullis posture`: the regulator's findings as checks over the logs and exports a
//! team already has, each with its evidence, and what the logs could not show.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use portcullis_event::{Timestamp, escape_display as esc};
use portcullis_posture::{Blind, BuildSighting, Check, Report, Settings, Severity, SourceCoverage, Weakness};
use serde::Serialize;

use crate::{EXIT_FINDINGS, EXIT_OK, Fatal, show_progress};

#[derive(Args)]
pub struct PostureArgs {
    /// Logs to check (files or directories, read as `hunt` reads them): Security, Sysmon,
    /// PowerShell and MSExchange Management events (EVTX or any JSON layout), IIS W3C,
    /// Exchange HttpProxy/Rps_Http logs, Entra ID sign-in logs (JSON).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// An AD export of users (CSV from Get-ADUser/csvde, or LDIF from ldifde) with
    /// sAMAccountName, pwdLastSet, whenCreated and lastLogonTimestamp.
    #[arg(long, value_name = "FILE")]
    pub ad: Option<PathBuf>,
    /// An Exchange inventory CSV with server and build columns (as for exchange-check).
    #[arg(long, value_name = "CSV")]
    pub inventory: Option<PathBuf>,
    /// Also record the weaknesses and what could not be seen in this case file (SQLite).
    #[arg(long, value_name = "CASE")]
    pub case: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PostureFormat,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit with code 2 if a weakness at or above this severity is found.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<crate::mail::SeverityArg>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PostureFormat {
    Table,
    Jsonl,
    Json,
    Csv,
}

fn severity(s: crate::mail::SeverityArg) -> Severity {
    use crate::mail::SeverityArg as A;
    match s {
        A::Informational => Severity::Informational,
        A::Low => Severity::Low,
        A::Medium => Severity::Medium,
        A::High => Severity::High,
        A::Critical => Severity::Critical,
    }
}

/// A weakness as written to JSON/JSONL.
#[derive(Serialize)]
struct WeaknessRecord<'a> {
    kind: &'static str,
    #[serde(flatten)]
    weakness: &'a Weakness,
    sentence: String,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

#[derive(Serialize)]
struct BlindRecord<'a> {
    kind: &'static str,
    #[serde(flatten)]
    blind: &'a Blind,
}

#[derive(Serialize)]
struct CoverageRecord<'a> {
    kind: &'static str,
    #[serde(flatten)]
    coverage: &'a SourceCoverage,
}

#[derive(Serialize)]
struct BuildRecord<'a> {
    kind: &'static str,
    #[serde(flatten)]
    build: &'a BuildSighting,
}

#[derive(Serialize)]
struct Summary<'a> {
    kind: &'static str,
    files: usize,
    events: u64,
    skipped: u64,
    as_of: Option<Timestamp>,
    weaknesses: usize,
    by_check: Vec<(&'static str, usize)>,
    could_not_see: usize,
    problems: &'a [String],
    not_logs: u64,
    not_logs_examples: &'a [String],
    seconds: f64,
}

fn weakness_record(w: &Weakness) -> WeaknessRecord<'_> {
    let (first, last) = w.span();
    WeaknessRecord { kind: "weakness", weakness: w, sentence: w.sentence(), first, last }
}

pub fn run(a: PostureArgs) -> Result<u8, Fatal> {
    let started = Instant::now();
    for p in &a.paths {
        if !p.exists() {
            return Err(Fatal(format!("{}: no such file or directory", p.display())));
        }
    }
    if let Some(case) = &a.case {
        // Refuse a file that is not a case before reading a single log.
        portcullis_case::check_file(case).map_err(|e| Fatal(e.to_string()))?;
    }
    let settings = Settings { paths: a.paths.clone(), ad: a.ad.clone(), inventory: a.inventory.clone(), threads: a.threads.unwrap_or(0) };
    let (files, _) = portcullis_sources::collect_files(&a.paths);
    let bar = crate::commands::bytes_bar(&files, show_progress(a.quiet));
    let report = portcullis_posture::run(&settings, &|done| bar.set_position(done)).map_err(Fatal)?;
    bar.finish_and_clear();
    if report.events == 0 && a.ad.is_none() && a.inventory.is_none() {
        let mut why: Vec<String> = report.problems.iter().take(5).cloned().collect();
        if report.not_logs > 0 {
            why.push(format!(
                "{} file(s) in no log format Portcullis reads, e.g. {}",
                report.not_logs,
                report.not_logs_examples.join(", ")
            ));
        }
        if why.is_empty() {
            why.push("no files found".into());
        }
        return Err(Fatal(format!("no event could be read: {}", why.join("; "))));
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(case) = &a.case {
        let mut c = portcullis_case::Case::open(case, "posture").map_err(|e| Fatal(e.to_string()))?;
        c.record_posture(&report).map_err(|e| Fatal(e.to_string()))?;
    }
    let summary = Summary {
        kind: "posture_summary",
        files: report.files,
        events: report.events,
        skipped: report.skipped,
        as_of: report.as_of,
        weaknesses: report.weaknesses.len(),
        by_check: Check::ALL.iter().map(|c| (c.as_str(), report.count(*c))).collect(),
        could_not_see: report.could_not_see.len(),
        problems: &report.problems,
        not_logs: report.not_logs,
        not_logs_examples: &report.not_logs_examples,
        seconds: (seconds * 1000.0).round() / 1000.0,
    };
    let mut out = crate::commands::open_output(&a.output)?;
    match a.format {
        PostureFormat::Jsonl => {
            for w in &report.weaknesses {
                writeln!(out, "{}", serde_json::to_string(&weakness_record(w))?)?;
            }
            for b in &report.could_not_see {
                writeln!(out, "{}", serde_json::to_string(&BlindRecord { kind: "could_not_see", blind: b })?)?;
            }
            for c in &report.coverage {
                writeln!(out, "{}", serde_json::to_string(&CoverageRecord { kind: "coverage", coverage: c })?)?;
            }
            for b in &report.builds {
                writeln!(out, "{}", serde_json::to_string(&BuildRecord { kind: "build", build: b })?)?;
            }
            writeln!(out, "{}", serde_json::to_string(&summary)?)?;
        }
        PostureFormat::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                weaknesses: Vec<WeaknessRecord<'a>>,
                could_not_see: &'a [Blind],
                coverage: &'a [SourceCoverage],
                builds: &'a [BuildSighting],
                summary: Summary<'a>,
            }
            let doc = Doc {
                weaknesses: report.weaknesses.iter().map(weakness_record).collect(),
                could_not_see: &report.could_not_see,
                coverage: &report.coverage,
                builds: &report.builds,
                summary,
            };
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        PostureFormat::Csv => write_csv(&mut out, &report)?,
        PostureFormat::Table => write_table(&mut out, &report, seconds)?,
    }
    out.flush()?;
    let fail = a.fail_on.map(severity).is_some_and(|f| report.weaknesses.iter().any(|w| w.severity >= f));
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}

fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn write_csv(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "kind,check,severity,subject_kind,subject,summary,first,last,evidence,fix")?;
    for w in &r.weaknesses {
        let (first, last) = w.span();
        let ev: Vec<String> = w.evidence.iter().map(|e| format!("{} {}", e.at(), e.what)).collect();
        writeln!(
            out,
            "weakness,{},{},{},{},{},{},{},{},",
            w.check.as_str(),
            w.severity.as_str(),
            w.subject.kind(),
            csv_cell(&w.subject.name()),
            csv_cell(&w.sentence()),
            first.map(|t| t.to_string()).unwrap_or_default(),
            last.map(|t| t.to_string()).unwrap_or_default(),
            csv_cell(&ev.join(" | ")),
        )?;
    }
    for b in &r.could_not_see {
        writeln!(
            out,
            "could_not_see,{},,{},{},{},,,,{}",
            b.check.as_str(),
            b.subject.as_ref().map(|s| s.kind()).unwrap_or(""),
            csv_cell(&b.subject.as_ref().map(|s| s.name()).unwrap_or_default()),
            csv_cell(b.consequence),
            csv_cell(b.fix),
        )?;
    }
    Ok(())
}

fn day(t: Option<Timestamp>) -> String {
    t.map(portcullis_posture::day).unwrap_or_else(|| "-".into())
}

fn write_table(out: &mut dyn Write, r: &Report, seconds: f64) -> std::io::Result<()> {
    writeln!(
        out,
        "Read {} files: {} events ({} records skipped), up to {}, in {seconds:.1}s.",
        r.files,
        r.events,
        r.skipped,
        r.as_of.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
    )?;
    let count = |s: Severity| r.weaknesses.iter().filter(|w| w.severity == s).count();
    if r.weaknesses.is_empty() {
        writeln!(out, "\nNo weakness found in what these logs show (see below for what they could not show).")?;
    } else {
        writeln!(
            out,
            "\nWeaknesses ({}: {} critical, {} high, {} medium, {} low):",
            r.weaknesses.len(),
            count(Severity::Critical),
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low)
        )?;
        for check in Check::ALL {
            let list: Vec<&Weakness> = r.weaknesses.iter().filter(|w| w.check == check).collect();
            if list.is_empty() {
                continue;
            }
            writeln!(out, "\n  {} ({}):", check.as_str().replace('_', " "), list.len())?;
            for w in list.iter().take(50) {
                writeln!(out, "    {:<8}  {}", w.severity.as_str(), esc(&w.sentence()))?;
                if let Some(e) = w.evidence.first() {
                    writeln!(out, "              evidence: {} {} [{}]", day(e.time), esc(&e.what), esc(&e.at()))?;
                }
            }
            if list.len() > 50 {
                writeln!(out, "    … {} more (use --format jsonl for all)", list.len() - 50)?;
            }
        }
    }
    if !r.could_not_see.is_empty() {
        writeln!(out, "\nWhat these logs could not show ({}):", r.could_not_see.len())?;
        for b in &r.could_not_see {
            let on = b.subject.as_ref().map(|s| format!("{}: ", s.name())).unwrap_or_default();
            writeln!(out, "  - {}{}", esc(&on), b.consequence)?;
            writeln!(out, "      fix: {}", b.fix)?;
        }
    }
    if !r.builds.is_empty() {
        writeln!(out, "\nExchange builds seen:")?;
        writeln!(out, "  {:<16}  {:<14}  {:<10}  {:<10}  {:>9}  FROM", "SERVER", "BUILD", "FIRST", "LAST", "SIGHTINGS")?;
        for b in &r.builds {
            writeln!(
                out,
                "  {:<16}  {:<14}  {:<10}  {:<10}  {:>9}  {}",
                esc(&b.server),
                b.build,
                day(b.first),
                day(b.last),
                b.sightings,
                esc(&b.from)
            )?;
        }
    }
    if !r.coverage.is_empty() {
        writeln!(out, "\nLogs by host and source:")?;
        writeln!(out, "  {:<16}  {:<40}  {:<10}  {:<10}  {:>10}  {:>9}  GAPS", "HOST", "SOURCE", "FIRST", "LAST", "EVENTS", "DAYS")?;
        let mut rows: Vec<&SourceCoverage> = r.coverage.iter().collect();
        rows.sort_by(|a, b| b.gaps.cmp(&a.gaps).then(b.events.cmp(&a.events)));
        for c in rows.iter().take(40) {
            let gaps = if c.continuous { c.gaps.to_string() } else { "- (sparse)".into() };
            writeln!(
                out,
                "  {:<16}  {:<40}  {:<10}  {:<10}  {:>10}  {:>9}  {gaps}",
                esc(&c.host),
                esc(&c.source.chars().take(40).collect::<String>()),
                day(c.first),
                day(c.last),
                c.events,
                format!("{}/{}", c.days_with_events, c.days_spanned),
            )?;
        }
        if rows.len() > 40 {
            writeln!(out, "  … {} more (use --format jsonl for all)", rows.len() - 40)?;
        }
    }
    if r.not_logs > 0 {
        writeln!(
            out,
            "\n{} file(s) in no log format Portcullis reads were left aside (mail, documents, exports), e.g. {}",
            r.not_logs,
            esc(&r.not_logs_examples.join(", "))
        )?;
    }
    if !r.problems.is_empty() {
        writeln!(out, "\nProblems ({}):", r.problems.len())?;
        for p in r.problems.iter().take(20) {
            writeln!(out, "  {}", esc(p))?;
        }
        if r.problems.len() > 20 {
            writeln!(out, "  … {} more (use --format jsonl for all)", r.problems.len() - 20)?;
        }
    }
    Ok(())
}

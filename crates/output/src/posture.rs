//! `posture`'s output: weaknesses with their evidence, what the logs could not show,
//! Exchange builds and log coverage, as a table, JSONL, one JSON document, or CSV.

use std::io::{self, Write};

use portcullis_event::{Timestamp, csv_field, escape_display as esc};
use portcullis_posture::{Blind, BuildSighting, Check, Report, Severity, SourceCoverage, Weakness};
use serde::Serialize;

use crate::Format;

/// A weakness as written to JSON/JSONL.
#[derive(Serialize)]
struct WeaknessRecord<'a> {
    pub kind: &'static str,
    #[serde(flatten)]
    weakness: &'a Weakness,
    sentence: String,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

#[derive(Serialize)]
struct BlindRecord<'a> {
    pub kind: &'static str,
    #[serde(flatten)]
    blind: &'a Blind,
}

#[derive(Serialize)]
struct CoverageRecord<'a> {
    pub kind: &'static str,
    #[serde(flatten)]
    coverage: &'a SourceCoverage,
}

#[derive(Serialize)]
struct BuildRecord<'a> {
    pub kind: &'static str,
    #[serde(flatten)]
    build: &'a BuildSighting,
}

#[derive(Serialize)]
pub struct Summary<'a> {
    pub kind: &'static str,
    pub files: usize,
    pub events: u64,
    pub skipped: u64,
    pub as_of: Option<Timestamp>,
    pub weaknesses: usize,
    pub by_check: Vec<(&'static str, usize)>,
    pub could_not_see: usize,
    pub problems: &'a [String],
    pub not_logs: u64,
    pub not_logs_examples: &'a [String],
    pub seconds: f64,
}

fn weakness_record(w: &Weakness) -> WeaknessRecord<'_> {
    let (first, last) = w.span();
    WeaknessRecord { kind: "weakness", weakness: w, sentence: w.sentence(), first, last }
}

/// The `posture_summary` record for a report and the run's time.
pub fn summary(report: &Report, seconds: f64) -> Summary<'_> {
    Summary {
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
    }
}

/// Writes the report in `format`.
pub fn write(out: &mut dyn Write, format: Format, report: &Report, seconds: f64) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for w in &report.weaknesses {
                crate::json_line(out, &weakness_record(w))?;
            }
            for b in &report.could_not_see {
                crate::json_line(out, &BlindRecord { kind: "could_not_see", blind: b })?;
            }
            for c in &report.coverage {
                crate::json_line(out, &CoverageRecord { kind: "coverage", coverage: c })?;
            }
            for b in &report.builds {
                crate::json_line(out, &BuildRecord { kind: "build", build: b })?;
            }
            crate::json_line(out, &summary(report, seconds))
        }
        Format::Json => {
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
                summary: summary(report, seconds),
            };
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        Format::Csv => write_csv(out, report),
        Format::Table => write_table(out, report, seconds),
    }
}

fn write_csv(out: &mut dyn Write, r: &Report) -> io::Result<()> {
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
            csv_field(&w.subject.name()),
            csv_field(&w.sentence()),
            first.map(|t| t.to_string()).unwrap_or_default(),
            last.map(|t| t.to_string()).unwrap_or_default(),
            csv_field(&ev.join(" | ")),
        )?;
    }
    for b in &r.could_not_see {
        writeln!(
            out,
            "could_not_see,{},,{},{},{},,,,{}",
            b.check.as_str(),
            b.subject.as_ref().map(|s| s.kind()).unwrap_or(""),
            csv_field(&b.subject.as_ref().map(|s| s.name()).unwrap_or_default()),
            csv_field(b.consequence),
            csv_field(b.fix),
        )?;
    }
    Ok(())
}

fn day(t: Option<Timestamp>) -> String {
    t.map(portcullis_posture::day).unwrap_or_else(|| "-".into())
}

fn write_table(out: &mut dyn Write, r: &Report, seconds: f64) -> io::Result<()> {
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

//! Every command's output, one printer for all: a table for people; JSONL, JSON and CSV
//! for machines, chosen by one [`Format`]. This file writes `hunt`'s findings; one module
//! per other command (`mail`, `exposure`, `posture`, `exchange`, `rules`, `timeline`).
//!
//! Every machine record carries a `kind` (`detection`, `summary`, …; see
//! `docs/formats.md`). Evidence strings are attacker-controlled: the table escapes
//! control and bidi characters (no terminal injection); every CSV cell is escaped the
//! same way and, when a spreadsheet would run it as a formula, prefixed with `'`
//! ([`csv_cell`]); JSON is escaped by the serializer. Adding a format: a [`Format`] variant and a `write_*` function.

use std::io::{self, Write};

use portcullis_correlate::{CorrelationFinding, CorrelationSet};
use portcullis_event::roles::{self, Role};
use portcullis_event::{Event, Timestamp, escape_display, escape_json_text};
use portcullis_hunt::{Detection, Detections};
use portcullis_incident::{Incident, human_duration};
use portcullis_sigma::{Engine, Level};
use serde::Serialize;

pub mod events;
pub mod exchange;
pub mod exposure;
pub mod mail;
pub mod posture;
pub mod rules;
pub mod timeline;

pub use portcullis_event::csv_cell;

/// Everything a hunt reports.
pub struct Report<'a> {
    pub engine: &'a Engine,
    pub correlation_set: &'a CorrelationSet,
    pub incidents: &'a [Incident],
    pub correlations: &'a [CorrelationFinding],
    pub detections: &'a Detections,
    pub summary: &'a Summary,
}

/// A correlation finding as written in JSONL/JSON.
#[derive(Serialize)]
pub struct CorrelationRecord<'a> {
    pub kind: &'static str,
    pub id: &'a str,
    pub rule_id: String,
    pub rule_title: &'a str,
    pub correlation_type: &'static str,
    pub level: Level,
    pub timestamp: String,
    pub first_seen: String,
    pub last_seen: String,
    pub group: std::collections::BTreeMap<&'a str, &'a str>,
    pub value: f64,
    pub tags: &'a [String],
    pub evidence: &'a [String],
    pub evidence_total: u64,
    pub rule_path: &'a str,
}

impl<'a> CorrelationRecord<'a> {
    pub fn new(set: &'a CorrelationSet, f: &'a CorrelationFinding) -> Self {
        let c = &set.correlations[f.correlation];
        CorrelationRecord {
            kind: "correlation",
            id: &f.id,
            rule_id: c.key(),
            rule_title: &c.title,
            correlation_type: c.kind.as_str(),
            level: c.level,
            timestamp: Timestamp(f.last_ts).to_string(),
            first_seen: Timestamp(f.first_ts).to_string(),
            last_seen: Timestamp(f.last_ts).to_string(),
            group: f.group.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            value: f.value,
            tags: &c.tags,
            evidence: &f.evidence,
            evidence_total: f.evidence_total,
            rule_path: &c.origin.path,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Jsonl,
    Json,
    Csv,
}

/// A detection as written in JSONL/JSON.
#[derive(Serialize)]
pub struct DetectionRecord<'a> {
    pub kind: &'static str,
    pub id: &'a str,
    pub rule_id: String,
    pub rule_title: &'a str,
    pub level: Level,
    pub timestamp: Option<String>,
    pub path: String,
    pub record: u64,
    pub host: Option<&'a str>,
    pub source: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub log_type: &'a str,
    pub tags: &'a [String],
    pub rule_path: &'a str,
    pub fields: portcullis_event::JsonFields<'a>,
}

impl<'a> DetectionRecord<'a> {
    pub fn new(engine: &'a Engine, d: &'a Detection) -> Self {
        let rule = &engine.rules[d.rule];
        DetectionRecord {
            kind: "detection",
            id: &d.id,
            rule_id: rule.key().into_owned(),
            rule_title: &rule.title,
            level: rule.level,
            timestamp: d.event.timestamp.map(|t| t.to_string()),
            path: d.path.to_string_lossy().into_owned(),
            record: d.event.record,
            host: d.event.host(),
            source: d.event.source.as_str(),
            log_type: &d.event.log_type,
            tags: &rule.tags,
            rule_path: &rule.origin.path,
            fields: portcullis_event::JsonFields(&d.event),
        }
    }
}

/// A rule that could not be used, as listed in the summary.
#[derive(Clone, Serialize)]
pub struct RuleProblem {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

/// A file that could not be read, or whose records were partly skipped.
#[derive(Clone, Serialize)]
pub struct FileProblem {
    pub path: String,
    pub error: Option<String>,
    pub skipped: u64,
    pub notes: Vec<String>,
}

/// The end-of-run summary (`"kind": "summary"`).
#[derive(Clone, Serialize, Default)]
pub struct Summary {
    pub kind: &'static str,
    pub files: usize,
    pub files_failed: usize,
    /// Files skipped because their content is not a log format Portcullis reads.
    pub files_not_logs: Vec<String>,
    pub bytes: u64,
    pub events: u64,
    pub records_skipped: u64,
    pub events_out_of_range: u64,
    pub rules_loaded: usize,
    pub rules_applied: usize,
    pub rules_unmapped: usize,
    pub rules_failed: Vec<RuleProblem>,
    pub detections: usize,
    pub detections_by_level: std::collections::BTreeMap<&'static str, u64>,
    /// Of `detections`, how many were spilled to temporary files to keep memory bounded.
    pub detections_spilled: usize,
    pub correlations_loaded: usize,
    pub correlation_findings: usize,
    pub correlation_inputs: u64,
    pub incidents: usize,
    /// Indicators loaded and looked for in every field (`--iocs` and built-in intel).
    pub iocs_loaded: usize,
    /// Detections made by an indicator (an indicator found in a field).
    pub ioc_matches: usize,
    /// Indicator files read: `file (format): N indicators`.
    pub ioc_files: Vec<String>,
    /// Indicators that could not be used, with their position (first 100).
    pub ioc_problems: Vec<String>,
    pub ioc_problem_count: usize,
    /// The case file written, if any, and how many findings were new to it.
    pub case: Option<String>,
    pub case_new_findings: Option<usize>,
    pub file_problems: Vec<FileProblem>,
    pub warnings: Vec<String>,
    pub rules_parse_seconds: f64,
    pub rules_compile_seconds: f64,
    /// Rule files taken from the parsed-rule cache rather than parsed (of `--sigma` files).
    pub rules_files_cached: usize,
    /// Of those, the files not even read: their size, inode and change time were as when
    /// they were cached.
    pub rules_files_unread: usize,
    /// Reading and scanning the inputs (excludes loading rules and writing output).
    pub hunt_seconds: f64,
    /// Of `hunt_seconds`, putting correlation inputs in time order and correlating them
    /// (on one thread, after scanning).
    pub correlation_seconds: f64,
    pub elapsed_seconds: f64,
}

/// One JSON record and a line break, with the characters a terminal or viewer would act on
/// or hide (which the serializer leaves raw) as `\uXXXX` escapes: the same JSON value.
pub fn json_line(out: &mut dyn Write, record: &impl Serialize) -> io::Result<()> {
    let text = serde_json::to_string(record)?;
    out.write_all(escape_json_text(&text).as_bytes())?;
    out.write_all(b"\n")
}

/// Formats the detections a chunk at a time on every core and writes the text in their
/// order, one bounded batch of chunks at a time, so a million detections are never all
/// held as text (nor, when they were spilled, as detections).
fn write_in_parallel(
    out: &mut dyn Write,
    detections: &Detections,
    format: impl Fn(&[Detection]) -> io::Result<Vec<u8>> + Sync,
) -> io::Result<()> {
    use rayon::prelude::*;
    const CHUNK: usize = 256;
    let batch = CHUNK * 4 * rayon::current_num_threads().max(1);
    detections.try_for_each_chunk(batch, |group| -> io::Result<()> {
        let texts: Vec<io::Result<Vec<u8>>> = group.par_chunks(CHUNK).map(&format).collect();
        for text in texts {
            out.write_all(&text?)?;
        }
        Ok(())
    })
}

/// Serialized JSON passed through [`escape_json_text`] as it is written, so a JSON document
/// of a million detections is never held as one text. The escape works a character at a
/// time, so pieces can be escaped apart; a character cut between two writes waits for the
/// rest of it.
struct EscapeJson<'w> {
    out: &'w mut dyn Write,
    pending: Vec<u8>,
}

impl EscapeJson<'_> {
    const BATCH: usize = 64 << 10;

    /// Escapes and writes what is pending, but for an unfinished character at its end.
    fn drain(&mut self) -> io::Result<()> {
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "serialized JSON is not UTF-8")),
        };
        let text = std::str::from_utf8(&self.pending[..valid]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.out.write_all(escape_json_text(text).as_bytes())?;
        self.pending.drain(..valid);
        Ok(())
    }

    /// Writes the rest; an error if it ends inside a character.
    fn finish(mut self) -> io::Result<()> {
        self.drain()?;
        if !self.pending.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "serialized JSON ends inside a character"));
        }
        Ok(())
    }
}

impl Write for EscapeJson<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= Self::BATCH {
            self.drain()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.flush()
    }
}

/// The detections as a JSON array, one record at a time (for the JSON document).
struct DetectionArray<'a>(&'a Engine, &'a Detections);

impl Serialize for DetectionArray<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        enum Failed<E> {
            Write(E),
            Read(io::Error),
        }
        impl<E> From<io::Error> for Failed<E> {
            fn from(e: io::Error) -> Self {
                Failed::Read(e)
            }
        }
        let mut seq = s.serialize_seq(Some(self.1.len()))?;
        let read = self.1.try_for_each_chunk(4096, |chunk| {
            for d in chunk {
                seq.serialize_element(&DetectionRecord::new(self.0, d)).map_err(Failed::Write)?;
            }
            Ok(())
        });
        match read {
            Ok(()) => seq.end(),
            Err(Failed::Write(e)) => Err(e),
            Err(Failed::Read(e)) => Err(S::Error::custom(e)),
        }
    }
}

/// Writes incidents, correlations, detections, then the summary, in the chosen format.
pub fn write_report(out: &mut dyn Write, format: Format, r: &Report<'_>) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for i in r.incidents {
                json_line(out, i)?;
            }
            for c in r.correlations {
                json_line(out, &CorrelationRecord::new(r.correlation_set, c))?;
            }
            write_in_parallel(out, r.detections, |chunk| {
                let mut text = Vec::with_capacity(chunk.len() * 512);
                for d in chunk {
                    json_line(&mut text, &DetectionRecord::new(r.engine, d))?;
                }
                Ok(text)
            })?;
            json_line(out, r.summary)?;
        }
        Format::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                incidents: &'a [Incident],
                correlations: Vec<CorrelationRecord<'a>>,
                detections: DetectionArray<'a>,
                summary: &'a Summary,
            }
            let doc = Doc {
                incidents: r.incidents,
                correlations: r.correlations.iter().map(|c| CorrelationRecord::new(r.correlation_set, c)).collect(),
                detections: DetectionArray(r.engine, r.detections),
                summary: r.summary,
            };
            let mut escaped = EscapeJson { out: &mut *out, pending: Vec::with_capacity(EscapeJson::BATCH) };
            serde_json::to_writer_pretty(&mut escaped, &doc)?;
            escaped.finish()?;
            out.write_all(b"\n")?;
        }
        Format::Csv => write_csv(out, r.engine, r.detections)?,
        Format::Table => {
            write_incidents(out, r.incidents)?;
            write_correlations(out, r)?;
            write_table(out, r.engine, r.detections)?;
            write_summary_text(out, r.summary)?;
        }
    }
    out.flush()
}

/// Incidents for people: first evidence, dwell time, the chain.
pub fn write_incidents(out: &mut dyn Write, incidents: &[Incident]) -> io::Result<()> {
    if incidents.is_empty() {
        return Ok(());
    }
    writeln!(out, "INCIDENTS ({})", incidents.len())?;
    for (n, i) in incidents.iter().enumerate() {
        writeln!(
            out,
            "\n#{} {} [{}] first evidence {} · last {} · dwell {}",
            n + 1,
            i.id,
            i.severity,
            i.first_seen,
            i.last_seen,
            human_duration(i.dwell_seconds)
        )?;
        let ents: Vec<String> = i.entities.iter().take(6).map(|e| format!("{}={}", e.kind, escape_display(&e.value))).collect();
        writeln!(out, "   entities: {}", ents.join(", "))?;
        if !i.techniques.is_empty() {
            writeln!(out, "   ATT&CK: {} ({})", i.tactics.join(" → "), i.techniques.join(", "))?;
        }
        // Each distinct step once, where it was first seen, with how often it recurred.
        let mut steps: Vec<(&portcullis_incident::Stage, usize)> = Vec::new();
        for st in &i.stages {
            match steps.iter_mut().find(|(s, _)| s.rule_title == st.rule_title) {
                Some((_, n)) => *n += st.finding_ids.len(),
                None => steps.push((st, st.finding_ids.len())),
            }
        }
        for (k, (st, n)) in steps.iter().enumerate().take(25) {
            let tactic = st.tactic.map(|t| format!("[{t}] ")).unwrap_or_default();
            let sentence = st.sentence.split(" (and ").next().unwrap_or(&st.sentence);
            let mut line = escape_display(sentence).into_owned();
            truncate(&mut line, 200);
            let more = if *n > 1 { format!(" (and {} more like it)", n - 1) } else { String::new() };
            writeln!(out, "   {:>2}. {tactic}{line}{more}", k + 1)?;
        }
        if steps.len() > 25 {
            writeln!(out, "   … {} more steps (see JSONL or the case file)", steps.len() - 25)?;
        }
        if !i.context.is_empty() {
            let n: usize = i.context.iter().map(|c| c.finding_ids.len()).sum();
            let first = &i.context[0];
            let mut line = escape_display(&first.sentence).into_owned();
            truncate(&mut line, 160);
            writeln!(
                out,
                "   context before the first evidence ({n} finding{}, linked to the attack only by the host), e.g. {line}",
                if n == 1 { "" } else { "s" }
            )?;
        }
    }
    writeln!(out)
}

fn write_correlations(out: &mut dyn Write, r: &Report<'_>) -> io::Result<()> {
    if r.correlations.is_empty() {
        return Ok(());
    }
    writeln!(out, "CORRELATIONS ({})", r.correlations.len())?;
    for f in r.correlations {
        let c = &r.correlation_set.correlations[f.correlation];
        let group: Vec<String> = f.group.iter().map(|(k, v)| format!("{k}={}", escape_display(v))).collect();
        writeln!(
            out,
            "  {}  {:<8} {}  {} ({} = {}, {} events)",
            Timestamp(f.last_ts),
            c.level.as_str(),
            escape_display(&c.title),
            group.join(" "),
            c.kind.as_str(),
            f.value,
            f.evidence_total
        )?;
    }
    writeln!(out)
}

/// What to show first for a detection, by how telling it usually is: field roles (the
/// first present name of each, from `portcullis_event::roles`) and a few fields that have
/// no role but say what happened.
enum Salient {
    Role(Role),
    Field(&'static str),
}

const SALIENT: [Salient; 15] = [
    Salient::Role(Role::CommandLine),
    Salient::Role(Role::Process),
    Salient::Role(Role::ParentProcess),
    Salient::Role(Role::File),
    Salient::Field("TargetObject"),
    Salient::Field("Details"),
    Salient::Field("cs-method"),
    Salient::Role(Role::Url),
    Salient::Field("cs-uri-query"),
    Salient::Field("UrlQuery"),
    Salient::Role(Role::SourceAddress),
    Salient::Role(Role::Status),
    Salient::Role(Role::UserAgent),
    Salient::Role(Role::Account),
    Salient::Field("QueryName"),
];

/// "1 incident", "2 incidents".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A one-line `key=value` digest of an event, salient fields first, bounded in length.
pub fn details(ev: &Event, max: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let push = |name: &str, value: &str, out: &mut String| {
        if value.is_empty() || out.len() >= max {
            return;
        }
        if !out.is_empty() {
            out.push_str(" ¦ ");
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&escape_display(value));
    };
    for salient in &SALIENT {
        let found = match salient {
            Salient::Role(role) => {
                roles::names(*role).find_map(|n| ev.fields().find(|f| f.name.eq_ignore_ascii_case(n) && !roles::blank(f.value)))
            }
            Salient::Field(name) => ev.fields().find(|f| f.name.eq_ignore_ascii_case(name)),
        };
        if let Some(f) = found {
            push(f.name, f.value, &mut out);
            shown += 1;
        }
    }
    if shown == 0 {
        for f in ev.fields().take(8) {
            push(f.name, f.value, &mut out);
        }
    }
    truncate(&mut out, max);
    out
}

fn truncate(s: &mut String, max: usize) {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        *s = cut + "…";
    }
}

/// A detection's table cells before its details: time, level, rule, host, place.
fn table_cells(engine: &Engine, d: &Detection) -> [String; 5] {
    let rule = &engine.rules[d.rule];
    let mut title = escape_display(&rule.title).into_owned();
    truncate(&mut title, 60);
    let mut host = escape_display(d.event.host().unwrap_or("-")).into_owned();
    truncate(&mut host, 24);
    let file = d.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut place = format!("{}:{}", escape_display(&file), d.event.record);
    truncate(&mut place, 40);
    [d.event.timestamp.map(|t| t.to_string()).unwrap_or_else(|| "-".into()), rule.level.to_string(), title, host, place]
}

/// Detections for people: column widths from a first pass over the short cells, then the
/// rows a chunk at a time.
fn write_table(out: &mut dyn Write, engine: &Engine, detections: &Detections) -> io::Result<()> {
    if detections.is_empty() {
        return Ok(());
    }
    let headers = ["TIME (UTC)", "LEVEL", "RULE", "HOST", "WHERE", "DETAILS"];
    let mut widths = headers.map(|h| h.chars().count());
    detections.try_for_each_chunk(4096, |chunk| -> io::Result<()> {
        for d in chunk {
            for (w, c) in widths.iter_mut().zip(table_cells(engine, d).iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        Ok(())
    })?;
    let line = |cells: [&str; 6], out: &mut dyn Write| -> io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 5 {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            } else {
                s.push_str(c);
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(headers, out)?;
    detections.try_for_each_chunk(4096, |chunk| -> io::Result<()> {
        for d in chunk {
            let [a, b, c, e, f] = table_cells(engine, d);
            line([&a, &b, &c, &e, &f, &details(&d.event, 140)], out)?;
        }
        Ok(())
    })?;
    writeln!(out)
}

/// The human summary (also used on stderr for machine formats).
pub fn write_summary_text(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(
        out,
        "Read {} file{} ({}), {} events; {} records skipped{}.",
        s.files,
        if s.files == 1 { "" } else { "s" },
        human_bytes(s.bytes),
        s.events,
        s.records_skipped,
        if s.files_failed > 0 { format!("; {} files unreadable", s.files_failed) } else { String::new() }
    )?;
    if !s.files_not_logs.is_empty() {
        let shown: Vec<String> = s.files_not_logs.iter().take(3).map(|p| escape_display(p).into_owned()).collect();
        writeln!(
            out,
            "{} files are not in a log format Portcullis reads and were skipped ({}{}).",
            s.files_not_logs.len(),
            shown.join(", "),
            if s.files_not_logs.len() > 3 { ", …" } else { "" }
        )?;
    }
    if s.events_out_of_range > 0 {
        writeln!(out, "{} events fell outside --from/--to.", s.events_out_of_range)?;
    }
    if s.iocs_loaded > 0 || s.ioc_problem_count > 0 {
        writeln!(
            out,
            "Indicators: {} loaded ({}) and looked for in every field: {}.",
            s.iocs_loaded,
            escape_display(&s.ioc_files.join("; ")),
            plural(s.ioc_matches, "match", "matches")
        )?;
        if s.ioc_problem_count > 0 {
            writeln!(out, "{} indicators could not be used:", s.ioc_problem_count)?;
            for p in s.ioc_problems.iter().take(10) {
                writeln!(out, "  {}", escape_display(p))?;
            }
            if s.ioc_problem_count > 10 {
                writeln!(out, "  … {} more (see the JSON summary)", s.ioc_problem_count - 10)?;
            }
        }
    }
    writeln!(
        out,
        "Rules: {} loaded, {} applied to these inputs, {} for log sources Portcullis does not read, {} failed.",
        s.rules_loaded,
        s.rules_applied,
        s.rules_unmapped,
        s.rules_failed.len()
    )?;
    let levels: Vec<String> = s.detections_by_level.iter().rev().filter(|(_, n)| **n > 0).map(|(l, n)| format!("{n} {l}")).collect();
    writeln!(
        out,
        "Detections: {}{}; {}; {}; in {:.2}s.",
        s.detections,
        if levels.is_empty() { String::new() } else { format!(" ({})", levels.join(", ")) },
        plural(s.correlation_findings, "correlation finding", "correlation findings"),
        plural(s.incidents, "incident", "incidents"),
        s.elapsed_seconds
    )?;
    if s.detections_spilled > 0 {
        writeln!(
            out,
            "{} spilled to temporary files to keep memory bounded (--detection-memory).",
            plural(s.detections_spilled, "detection was", "detections were")
        )?;
    }
    if let (Some(case), Some(new)) = (&s.case, s.case_new_findings) {
        writeln!(out, "Case file {}: {}.", escape_display(case), plural(new, "new finding", "new findings"))?;
    }
    for p in s.file_problems.iter().take(10) {
        match &p.error {
            Some(e) => writeln!(out, "  unreadable: {}", escape_display(e))?,
            None => writeln!(
                out,
                "  {} records skipped in {}{}",
                p.skipped,
                escape_display(&p.path),
                p.notes.first().map(|n| format!(" (first: {})", escape_display(n))).unwrap_or_default()
            )?,
        }
    }
    if s.file_problems.len() > 10 {
        writeln!(out, "  … and {} more files with problems (see the JSON summary)", s.file_problems.len() - 10)?;
    }
    for f in s.rules_failed.iter().take(10) {
        writeln!(out, "  rule failed: {}:{}: {}", escape_display(&f.path), f.line, escape_display(&f.reason))?;
    }
    if s.rules_failed.len() > 10 {
        writeln!(out, "  … and {} more rules failed (see `portcullis rules` or the JSON summary)", s.rules_failed.len() - 10)?;
    }
    for w in &s.warnings {
        writeln!(out, "WARNING: {w}")?;
    }
    Ok(())
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn write_csv(out: &mut dyn Write, engine: &Engine, detections: &Detections) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(&mut *out);
    w.write_record(["timestamp", "level", "rule_title", "rule_id", "host", "path", "record", "id", "details"])?;
    w.flush()?;
    drop(w);
    write_in_parallel(out, detections, |chunk| {
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(chunk.len() * 256));
        for d in chunk {
            let rule = &engine.rules[d.rule];
            let ts = d.event.timestamp.map(|t| t.to_string()).unwrap_or_default();
            let path = d.path.to_string_lossy().into_owned();
            let record = d.event.record.to_string();
            let details = details(&d.event, 1000);
            let key = rule.key();
            let cells =
                [ts.as_str(), rule.level.as_str(), &rule.title, &key, d.event.host().unwrap_or(""), &path, &record, &d.id, &details];
            w.write_record(cells.map(csv_cell).iter().map(|c| c.as_ref()))?;
        }
        w.into_inner().map_err(|e| e.into_error())
    })?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escaping JSON as it is written, in pieces cut anywhere (inside characters too), gives
    /// the text escaping it whole gives.
    #[test]
    fn json_escaped_in_pieces_is_json_escaped_whole() {
        let text = "{\"a\": \"x\u{202e}y\u{7f}z é∂ \u{200b}\"}\n".repeat(500);
        for piece in [1, 2, 3, 7, 64, 1 << 20] {
            let mut out = Vec::new();
            let mut escaped = EscapeJson { out: &mut out, pending: Vec::new() };
            for part in text.as_bytes().chunks(piece) {
                escaped.write_all(part).unwrap();
            }
            escaped.finish().unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), escape_json_text(&text), "pieces of {piece}");
        }
        let mut out = Vec::new();
        let mut escaped = EscapeJson { out: &mut out, pending: Vec::new() };
        escaped.write_all(&"é".as_bytes()[..1]).unwrap();
        assert!(escaped.finish().is_err(), "a cut character at the end is an error");
    }

    #[test]
    fn csv_guards_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("plain"), "plain");
    }

    #[test]
    fn details_are_escaped_and_bounded() {
        let mut e = Event::default();
        e.push_str("CommandLine", "evil\x1b[2J\u{202e}cmd");
        e.push_str("Other", &"x".repeat(500));
        let d = details(&e, 60);
        assert!(!d.contains('\x1b'));
        assert!(d.contains("\\u{1b}"));
        assert!(d.chars().count() <= 60);
    }
}

//! A Timesketch-ready timeline: JSONL (`.jsonl`) or CSV (`.csv`) with the fields
//! Timesketch requires (`message`, `datetime`, `timestamp_desc`, `timestamp`), one
//! row per detection, correlation and incident stage. JSONL rows also carry the
//! matched event's fields; CSV rows carry them as one JSON column.
//!
//! Evidence is attacker-controlled: `message` is built from escaped parts (rule titles,
//! group values and sentences as [`escape_display`] shows them), every CSV cell goes
//! through [`crate::csv_cell`], and JSON (the JSONL rows, the CSV's JSON column) has its
//! invisible, bidi and C1 control characters as `\uXXXX` escapes.

use std::io::{self, Write};
use std::path::Path;

use portcullis_correlate::{CorrelationFinding, CorrelationSet};
use portcullis_event::{Timestamp, escape_display, escape_json_text};
use portcullis_hunt::{Detection, Detections};
use portcullis_incident::Incident;
use portcullis_sigma::Engine;
use serde_json::{Map, Value, json};

const RESERVED: [&str; 4] = ["message", "datetime", "timestamp", "timestamp_desc"];

fn row(ts: Timestamp, desc: &str, message: String, mut extra: Map<String, Value>) -> Map<String, Value> {
    extra.insert("message".into(), Value::String(message));
    extra.insert("datetime".into(), Value::String(ts.to_string()));
    extra.insert("timestamp".into(), json!(ts.0));
    extra.insert("timestamp_desc".into(), Value::String(desc.into()));
    extra
}

/// Writes the timeline to `path` (CSV if it ends in `.csv`, else JSONL), rows in time
/// order: detections as they are read from `detections`, a chunk at a time (those without
/// a time are left out: [`Detections::untimed`] says how many), with the correlation and
/// incident-stage rows merged in; at equal times detections come first. Only those few
/// rows are held, never a row per detection.
pub fn write(
    path: &Path,
    engine: &Engine,
    set: &CorrelationSet,
    detections: &Detections,
    correlations: &[CorrelationFinding],
    incidents: &[Incident],
) -> io::Result<()> {
    use rayon::prelude::*;
    let mut others = Vec::new();
    for f in correlations {
        let c = &set.correlations[f.correlation];
        let group: Vec<String> = f.group.iter().map(|(k, v)| format!("{}={}", escape_display(k), escape_display(v))).collect();
        let mut extra = Map::new();
        extra.insert("portcullis_kind".into(), json!("correlation"));
        extra.insert("portcullis_id".into(), json!(f.id));
        extra.insert("portcullis_rule_id".into(), json!(c.key()));
        extra.insert("portcullis_level".into(), json!(c.level.as_str()));
        extra.insert("portcullis_evidence".into(), json!(f.evidence.join(",")));
        let message = format!("[{}] {}: {} ({} = {})", c.level, escape_display(&c.title), group.join(" "), c.kind.as_str(), f.value);
        others.push(row(Timestamp(f.last_ts), "Correlation Fired", message, extra));
    }
    for i in incidents {
        for s in &i.stages {
            let mut extra = Map::new();
            extra.insert("portcullis_kind".into(), json!("incident_stage"));
            extra.insert("portcullis_incident".into(), json!(i.id));
            extra.insert("portcullis_level".into(), json!(s.level.as_str()));
            extra.insert("portcullis_findings".into(), json!(s.finding_ids.join(",")));
            others.push(row(s.time, "Incident Stage", escape_display(&s.sentence).into_owned(), extra));
        }
    }
    let time = |r: &Map<String, Value>| r.get("timestamp").and_then(Value::as_i64).unwrap_or(i64::MAX);
    others.sort_by_key(time);
    let mut others = others.into_iter().peekable();
    let mut sink = Sink::create(path)?;
    detections.try_for_each_chunk(4096, |chunk| -> io::Result<()> {
        let rows: Vec<Map<String, Value>> = chunk.par_iter().with_min_len(256).filter_map(|d| detection_row(engine, d)).collect();
        for r in rows {
            let t = time(&r);
            while let Some(o) = others.next_if(|o| time(o) < t) {
                sink.write(&o)?;
            }
            sink.write(&r)?;
        }
        Ok(())
    })?;
    for o in others {
        sink.write(&o)?;
    }
    sink.finish()
}

/// Where timeline rows go: CSV with Timesketch's columns and the rest as one JSON column,
/// or JSONL.
enum Sink {
    Csv(Box<csv::Writer<io::BufWriter<std::fs::File>>>),
    Jsonl(io::BufWriter<std::fs::File>),
}

impl Sink {
    fn create(path: &Path) -> io::Result<Sink> {
        let w = io::BufWriter::new(std::fs::File::create(path)?);
        if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            return Ok(Sink::Jsonl(w));
        }
        let mut c = csv::Writer::from_writer(w);
        c.write_record([
            "message",
            "datetime",
            "timestamp_desc",
            "timestamp",
            "portcullis_kind",
            "portcullis_level",
            "portcullis_id",
            "fields",
        ])?;
        Ok(Sink::Csv(Box::new(c)))
    }

    fn write(&mut self, r: &Map<String, Value>) -> io::Result<()> {
        match self {
            Sink::Jsonl(w) => crate::json_line(w, r),
            Sink::Csv(c) => {
                let get = |k: &str| r.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
                let fields: Map<String, Value> =
                    r.iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
                let fields = escape_json_text(&Value::Object(fields).to_string()).into_owned();
                let cells = [
                    get("message"),
                    get("datetime"),
                    get("timestamp_desc"),
                    get("timestamp"),
                    get("portcullis_kind"),
                    get("portcullis_level"),
                    get("portcullis_id"),
                    fields,
                ];
                c.write_record(cells.iter().map(|v| crate::csv_cell(v)).collect::<Vec<_>>().iter().map(|c| c.as_ref()))?;
                Ok(())
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Jsonl(mut w) => w.flush(),
            Sink::Csv(c) => c.into_inner().map_err(|e| e.into_error())?.flush(),
        }
    }
}

fn detection_row(engine: &Engine, d: &Detection) -> Option<Map<String, Value>> {
    let ts = d.event.timestamp?;
    let rule = &engine.rules[d.rule];
    let mut extra = Map::new();
    if let Value::Object(fields) = d.event.to_json() {
        for (k, v) in fields {
            let key = if RESERVED.contains(&k.as_str()) || k.starts_with("portcullis_") { format!("event_{k}") } else { k };
            extra.insert(key, v);
        }
    }
    extra.insert("portcullis_kind".into(), json!("detection"));
    extra.insert("portcullis_id".into(), json!(d.id));
    extra.insert("portcullis_rule_id".into(), json!(rule.key()));
    extra.insert("portcullis_level".into(), json!(rule.level.as_str()));
    extra.insert("portcullis_tags".into(), json!(rule.tags.join(",")));
    extra.insert("portcullis_path".into(), json!(d.path.to_string_lossy()));
    extra.insert("portcullis_record".into(), json!(d.event.record));
    let message = format!("[{}] {}: {}", rule.level, escape_display(&rule.title), crate::details(&d.event, 300));
    Some(row(ts, "Event Recorded", message, extra))
}

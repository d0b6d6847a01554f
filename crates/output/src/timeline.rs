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

/// The timeline rows, in time order (detections without a time are left out:
/// [`Detections::untimed`] says how many). An error if spilled detections could not be read
/// back.
pub fn rows(
    engine: &Engine,
    set: &CorrelationSet,
    detections: &Detections,
    correlations: &[CorrelationFinding],
    incidents: &[Incident],
) -> io::Result<Vec<Map<String, Value>>> {
    let mut out = Vec::new();
    detections.try_for_each_chunk(4096, |chunk| -> io::Result<()> {
        for d in chunk {
            detection_row(engine, d, &mut out);
        }
        Ok(())
    })?;
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
        out.push(row(Timestamp(f.last_ts), "Correlation Fired", message, extra));
    }
    for i in incidents {
        for s in &i.stages {
            let mut extra = Map::new();
            extra.insert("portcullis_kind".into(), json!("incident_stage"));
            extra.insert("portcullis_incident".into(), json!(i.id));
            extra.insert("portcullis_level".into(), json!(s.level.as_str()));
            extra.insert("portcullis_findings".into(), json!(s.finding_ids.join(",")));
            out.push(row(s.time, "Incident Stage", escape_display(&s.sentence).into_owned(), extra));
        }
    }
    out.sort_by_key(|r| r.get("timestamp").and_then(Value::as_i64).unwrap_or(i64::MAX));
    Ok(out)
}

fn detection_row(engine: &Engine, d: &Detection, out: &mut Vec<Map<String, Value>>) {
    let Some(ts) = d.event.timestamp else { return };
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
    extra.insert("portcullis_path".into(), json!(d.path.display().to_string()));
    extra.insert("portcullis_record".into(), json!(d.event.record));
    let message = format!("[{}] {}: {}", rule.level, escape_display(&rule.title), crate::details(&d.event, 300));
    out.push(row(ts, "Event Recorded", message, extra));
}

/// Writes the timeline as CSV if `path` ends in `.csv`, else as JSONL.
pub fn write(path: &Path, rows: &[Map<String, Value>]) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = io::BufWriter::new(file);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        let mut c = csv::Writer::from_writer(&mut w);
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
        for r in rows {
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
        }
        c.flush()?;
    } else {
        for r in rows {
            crate::json_line(&mut w, r)?;
        }
    }
    w.flush()
}

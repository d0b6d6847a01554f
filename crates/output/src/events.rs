//! `events`' output: each parsed event as one JSONL `event` record (its path, record,
//! time, source kind and every field), for piping into jq or another tool. Events have no
//! fixed columns, so JSONL is the only format.

use std::io::{self, Write};
use std::path::Path;

use portcullis_event::Event;

/// Writes `ev`, read from `path`, as one line.
pub fn write_event(out: &mut dyn Write, path: &Path, ev: &Event) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Rec<'a> {
        kind: &'static str,
        path: String,
        record: u64,
        timestamp: Option<String>,
        source: &'static str,
        #[serde(skip_serializing_if = "str::is_empty")]
        log_type: &'a str,
        fields: serde_json::Value,
    }
    let rec = Rec {
        kind: "event",
        path: path.to_string_lossy().into_owned(),
        record: ev.record,
        timestamp: ev.timestamp.map(|t| t.to_string()),
        source: ev.source.as_str(),
        log_type: &ev.log_type,
        fields: ev.to_json(),
    };
    serde_json::to_writer(&mut *out, &rec)?;
    out.write_all(b"\n")
}

//! EVTX through the `evtx` crate: each record is rendered to JSON by the crate's
//! compiled templates (in parallel over chunks when allowed) and flattened by the
//! JSON flattener, so `.evtx` and its JSON export give identical events.

use std::io::{Read, Seek};
use std::ops::ControlFlow;
use std::path::Path;

use evtx::{EvtxParser, ParserSettings};
use portcullis_event::{Event, SourceKind, Timestamp};

use crate::json::{Flattener, finish_event};
use crate::{FileReport, ReadOptions, SourceError};

pub fn read<T: Read + Seek + Send + 'static>(
    data: T,
    path: &Path,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let settings = ParserSettings::new().num_threads(opts.evtx_threads.max(1)).indent(false);
    let mut parser = EvtxParser::from_read_seek(data)
        .map_err(|e| SourceError::Corrupt { path: path.to_path_buf(), reason: format!("not a readable EVTX file: {}", chain(&e)) })?
        .with_configuration(settings);
    let mut event = Event::new(SourceKind::Windows);
    let mut flat = Flattener::default();
    for item in parser.serialized_records(|r| r.and_then(|r| r.into_json_bytes())) {
        let rec = match item {
            Ok(rec) => rec,
            Err(e) => {
                report.skip(|| chain(&e));
                continue;
            }
        };
        if let Err(e) = flat.flatten(&rec.data, &mut event) {
            report.skip(|| format!("record {}: rendered JSON unreadable: {e}", rec.event_record_id));
            continue;
        }
        // `record` is the EventRecordID that Event Viewer shows (finish_event reads it from
        // the record's System); the record header's number is only a fallback.
        finish_event(&mut event, rec.event_record_id);
        event.source = SourceKind::Windows;
        if event.timestamp.is_none() {
            event.timestamp = Some(Timestamp(rec.timestamp.as_microsecond()));
        }
        report.events += 1;
        if sink(&event).is_break() {
            break;
        }
    }
    Ok(())
}

/// An error with its causes, e.g. "Failed to parse chunk number 3: invalid magic".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut depth = 0;
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    s
}

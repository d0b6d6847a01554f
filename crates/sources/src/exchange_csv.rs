//! Exchange's own CSV logs (HttpProxy, Rps_Http/CmdletInfra, message tracking, …):
//! `#`-directives, a `#Fields:` header naming the columns, then RFC 4180 records
//! (quoted values may hold commas, doubled quotes and line breaks). Each column
//! becomes a field under its header name; `#Log-type:` becomes the event's `log_type`.

use std::io::{self, BufRead};
use std::ops::{ControlFlow, Range};

use portcullis_event::{Event, SourceKind, Timestamp, ValueKind};

use crate::lines::{Line, decode_lossy, read_line_bounded};
use crate::{FileReport, ReadOptions};

pub fn read(
    mut reader: impl BufRead,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut columns: Vec<String> = Vec::new();
    let mut log_type = String::new();
    let mut buf = Vec::new();
    let mut record = String::new();
    let mut values = String::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut event = Event::new(SourceKind::ExchangeCsv);
    let mut line_no: u64 = 0;
    let mut record_line: u64 = 0;
    loop {
        line_no += 1;
        let step = read_line_bounded(&mut reader, &mut buf, opts.max_record_bytes)?;
        let continuing = !record.is_empty();
        match step {
            Line::Eof => {
                if continuing {
                    report.skip(|| format!("line {record_line}: quoted value not closed before end of file"));
                }
                break;
            }
            Line::TooLong { len } => {
                record.clear();
                report.skip(|| format!("line {line_no}: {len} bytes exceeds the record limit"));
                continue;
            }
            Line::Ok => {}
        }
        let (line, lossy) = decode_lossy(&buf);
        if lossy {
            report.lossy += 1;
        }
        if !continuing {
            if let Some(directive) = line.strip_prefix('#') {
                if let Some(fields) = directive.strip_prefix("Fields:") {
                    columns.clear();
                    if split_record(fields.trim(), &mut values, &mut ranges) {
                        columns.extend(ranges.iter().map(|r| values[r.clone()].trim().to_string()));
                    }
                } else if let Some(t) = directive.strip_prefix("Log-type:") {
                    log_type = t.trim().to_string();
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            record_line = line_no;
        } else {
            record.push('\n');
        }
        if record.len() + line.len() > opts.max_record_bytes {
            record.clear();
            report.skip(|| format!("line {record_line}: record exceeds the record limit"));
            continue;
        }
        record.push_str(&line);
        if !split_record(&record, &mut values, &mut ranges) {
            continue; // a quoted value runs on to the next line
        }
        record.clear();
        if columns.is_empty() {
            report.skip(|| format!("line {record_line}: data before any #Fields: directive"));
            continue;
        }
        if ranges.len() != columns.len() {
            let (n, expected) = (ranges.len(), columns.len());
            report.skip(|| format!("line {record_line}: {n} columns where #Fields: names {expected}"));
            continue;
        }
        event.clear(SourceKind::ExchangeCsv);
        event.log_type.push_str(&log_type);
        event.record = record_line;
        for (name, r) in columns.iter().zip(&ranges) {
            let v = &values[r.clone()];
            event.push(name, v, if v.is_empty() { ValueKind::Null } else { ValueKind::Str });
        }
        event.timestamp = ["DateTime", "date-time", "Timestamp", "date"].iter().find_map(|n| event.get(n).and_then(Timestamp::parse));
        report.events += 1;
        if sink(&event).is_break() {
            break;
        }
    }
    Ok(())
}

/// Splits one RFC 4180 record into `values` (unquoted text) and `ranges` into it.
/// Returns false when a quoted value is still open at the end of `line`.
pub fn split_record(line: &str, values: &mut String, ranges: &mut Vec<Range<usize>>) -> bool {
    values.clear();
    ranges.clear();
    let mut chars = line.chars().peekable();
    let mut start = 0;
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    values.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                values.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                ranges.push(start..values.len());
                start = values.len();
                at_field_start = true;
                continue;
            }
            '"' if at_field_start => in_quotes = true,
            c => values.push(c),
        }
        at_field_start = false;
    }
    if in_quotes {
        return false;
    }
    ranges.push(start..values.len());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4180_records() {
        let mut v = String::new();
        let mut r = Vec::new();
        assert!(split_record(r#"a,"b,c","say ""hi""",,"#, &mut v, &mut r));
        let got: Vec<&str> = r.iter().map(|x| &v[x.clone()]).collect();
        assert_eq!(got, ["a", "b,c", "say \"hi\"", "", ""]);
        assert!(!split_record(r#"a,"open"#, &mut v, &mut r));
    }

    #[test]
    fn httpproxy_and_message_tracking() {
        let data = "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2176.002\r\n#Log-type: HttpProxy Logs\r\n\
#Date: 2021-08-24T02:13:00.000Z\r\n#Fields: DateTime,RequestId,UrlStem,ClientIpAddress,UserAgent,HttpStatus,AnchorMailbox\r\n\
2021-08-24T02:13:00.120Z,1,/autodiscover/autodiscover.json,185.220.101.182,\"python, urllib\",200,ServerInfo~a]@b.local\r\n\
2021-08-24T02:13:01.000Z,2,\"/multi\r\nline\",1.1.1.1,,401,\r\n\
too,few\r\n";
        let mut report = FileReport::default();
        let mut events = Vec::new();
        read(data.as_bytes(), &ReadOptions::default(), &mut report, &mut |e| {
            events.push(e.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(report.skipped, 1);
        assert_eq!(events[0].log_type, "HttpProxy Logs");
        assert_eq!(events[0].get("UserAgent"), Some("python, urllib"));
        assert_eq!(events[0].get("AnchorMailbox"), Some("ServerInfo~a]@b.local"));
        assert_eq!(events[0].timestamp.unwrap().to_string(), "2021-08-24T02:13:00.120000Z");
        assert_eq!(events[1].get("UrlStem"), Some("/multi\nline"));
        assert_eq!(events[1].record, 7);
    }
}

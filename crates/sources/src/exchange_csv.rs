//! Exchange's own CSV logs (HttpProxy, Rps_Http/CmdletInfra, message tracking, …):
//! `#`-directives, a `#Fields:` header naming the columns, then RFC 4180 records
//! (quoted values may hold commas, doubled quotes and line breaks). Each column
//! becomes a field under its header name; `#Log-type:` becomes the event's `log_type`.

use std::io::{self, BufRead};
use std::ops::{ControlFlow, Range};

use portcullis_event::{Event, SourceKind, Timestamp, ValueKind};

use crate::lines::{Line, decode_lossy, read_line_bounded};
use crate::quoted::QuoteState;
use crate::{FileReport, ReadOptions};

pub fn read(
    mut reader: impl BufRead,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut columns: Vec<String> = Vec::new();
    // Every record of one `#Fields:` header has the same field names in the same order.
    let mut layout = 0;
    let mut log_type = String::new();
    let mut buf = Vec::new();
    // The record being assembled while a quoted value runs on over lines.
    let mut record = String::new();
    let mut quote = QuoteState::default();
    let mut values = String::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut event = Event::new(SourceKind::ExchangeCsv);
    let mut line_no: u64 = opts.first_line.saturating_sub(1);
    let mut record_line: u64 = 0;
    loop {
        line_no += 1;
        let step = read_line_bounded(&mut reader, &mut buf, opts.max_record_bytes)?;
        let continuing = quote.open;
        match step {
            Line::Eof => {
                if continuing {
                    lose_open_record(report, record_line, line_no - 1, "end of file");
                }
                break;
            }
            Line::TooLong { len } => {
                if continuing {
                    lose_open_record(report, record_line, line_no - 1, &format!("an overlong line {line_no}"));
                    quote = QuoteState::default();
                    record.clear();
                }
                report.skip(|| format!("line {line_no}: {len} bytes exceeds the record limit"));
                continue;
            }
            Line::Ok => {}
        }
        let (line, lossy) = decode_lossy(&buf);
        if lossy {
            report.lossy += 1;
        }
        if continuing {
            // A quoted value is open: this line either continues it, or the quote was never
            // closed and this line is where reading recovers.
            quote.scan(&line, b',');
            let fits = record.len() + 1 + line.len() <= opts.max_record_bytes;
            if fits {
                record.push('\n');
                record.push_str(&line);
            }
            if fits && !quote.open && !quote.stray && split_record(&record, &mut values, &mut ranges) && ranges.len() == columns.len() {
                record.clear();
                quote = QuoteState::default();
                emit((&columns, layout), &log_type, &values, &ranges, record_line, &mut event, report);
                if sink(&event).is_break() {
                    break;
                }
                continue;
            }
            let alone = line.starts_with('#')
                || (!QuoteState::of_line(&line, b',').open
                    && split_record(&line, &mut values, &mut ranges)
                    && ranges.len() == columns.len());
            if !(alone || !quote.open || !fits) {
                continue; // the quoted value goes on
            }
            let why = if alone {
                format!("line {line_no}, a record of its own")
            } else if !fits {
                "the record limit".into()
            } else {
                format!("line {line_no}, where a stray quote closes it")
            };
            // Every line of the broken record is lost; this one is read afresh unless the
            // record limit cut it.
            let last = if alone { line_no - 1 } else { line_no };
            lose_open_record(report, record_line, last, &why);
            record.clear();
            quote = QuoteState::default();
            if !alone {
                continue;
            }
        }
        if let Some(directive) = line.strip_prefix('#') {
            if let Some(fields) = directive.strip_prefix("Fields:") {
                columns.clear();
                if split_record(fields.trim(), &mut values, &mut ranges) {
                    columns.extend(ranges.iter().map(|r| values[r.clone()].trim().to_string()));
                }
                layout = portcullis_event::new_layout();
            } else if let Some(t) = directive.strip_prefix("Log-type:") {
                log_type = t.trim().to_string();
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        record_line = line_no;
        // Split at once: a record left open by a quoted value (split_record says so, as
        // QuoteState would) is rare, and only it is scanned for its quote state.
        if !split_record(&line, &mut values, &mut ranges) {
            quote = QuoteState::of_line(&line, b',');
            record.push_str(&line);
            continue; // a quoted value runs on to the next line
        }
        if columns.is_empty() {
            report.skip(|| format!("line {record_line}: data before any #Fields: directive"));
            continue;
        }
        if ranges.len() != columns.len() {
            let (n, expected) = (ranges.len(), columns.len());
            report.skip(|| format!("line {record_line}: {n} columns where #Fields: names {expected}"));
            continue;
        }
        emit((&columns, layout), &log_type, &values, &ranges, record_line, &mut event, report);
        if sink(&event).is_break() {
            break;
        }
    }
    Ok(())
}

/// Counts lines `first..=last` of a record whose quoted value never closed as skipped.
fn lose_open_record(report: &mut FileReport, first: u64, last: u64, recovered_at: &str) {
    let n = last + 1 - first;
    let lines = if n == 1 { format!("line {first}") } else { format!("lines {first}-{last}") };
    report.skip_n(n, || format!("{lines}: quoted value opened on line {first} not closed before {recovered_at}; {n} line(s) skipped"));
}

fn emit(
    (columns, layout): (&[String], u64),
    log_type: &str,
    values: &str,
    ranges: &[Range<usize>],
    record_line: u64,
    event: &mut Event,
    report: &mut FileReport,
) {
    event.clear(SourceKind::ExchangeCsv);
    event.log_type.push_str(log_type);
    event.record = record_line;
    for (name, r) in columns.iter().zip(ranges) {
        let v = &values[r.clone()];
        event.push(name, v, if v.is_empty() { ValueKind::Null } else { ValueKind::Str });
    }
    event.set_layout(layout);
    event.timestamp = ["DateTime", "date-time", "Timestamp", "date"].iter().find_map(|n| event.get(n).and_then(Timestamp::parse));
    report.events += 1;
}

/// Splits one RFC 4180 record into `values` (unquoted text) and `ranges` into it.
/// Returns false when a quoted value is still open at the end of `line` (`values` then
/// holds the text so far, `ranges` the fields before it).
///
/// A field that starts with `"` is quoted up to the next lone `"` (`""` inside is one
/// quote); whatever follows up to the comma is taken as it stands, quotes included.
pub fn split_record(line: &str, values: &mut String, ranges: &mut Vec<Range<usize>>) -> bool {
    values.clear();
    ranges.clear();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        let start = values.len();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let Some(q) = memchr::memchr(b'"', &b[i..]) else {
                    values.push_str(&line[i..]);
                    return false;
                };
                values.push_str(&line[i..i + q]);
                i += q + 1;
                if b.get(i) == Some(&b'"') {
                    values.push('"');
                    i += 1;
                } else {
                    break;
                }
            }
        }
        match memchr::memchr(b',', &b[i..]) {
            Some(c) => {
                values.push_str(&line[i..i + c]);
                ranges.push(start..values.len());
                i += c + 1;
            }
            None => {
                values.push_str(&line[i..]);
                ranges.push(start..values.len());
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_open_for_split_record_as_for_the_quote_state() {
        // Every line of up to 6 characters over the characters that matter, then longer
        // pseudo-random ones.
        let alphabet = ['a', ',', '"', ' ', '\t', 'é'];
        let mut lines: Vec<String> = vec![String::new()];
        let mut frontier = lines.clone();
        for _ in 0..6 {
            frontier = frontier.iter().flat_map(|l| alphabet.iter().map(move |c| format!("{l}{c}"))).collect();
            lines.extend(frontier.iter().cloned());
        }
        let mut seed = 3u64;
        for _ in 0..2000 {
            let mut l = String::new();
            for _ in 0..40 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                l.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            lines.push(l);
        }
        let (mut values, mut ranges) = (String::new(), Vec::new());
        for l in &lines {
            assert_eq!(split_record(l, &mut values, &mut ranges), !QuoteState::of_line(l, b',').open, "{l:?}");
        }
    }

    /// The character-at-a-time splitter `split_record` replaced, kept as its reference.
    fn split_record_by_char(line: &str, values: &mut String, ranges: &mut Vec<Range<usize>>) -> bool {
        values.clear();
        ranges.clear();
        let mut chars = line.chars().peekable();
        let (mut start, mut in_quotes, mut at_field_start) = (0, false, true);
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

    #[test]
    fn splits_as_the_character_at_a_time_reference_does() {
        let alphabet = ["a", ",", "\"", "é", " ", "\"\""];
        let mut seed = 3u64;
        let (mut v1, mut r1, mut v2, mut r2) = (String::new(), Vec::new(), String::new(), Vec::new());
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize;
            let line: String = (0..len).map(|k| alphabet[((seed >> (k * 3 % 56)) % 6) as usize]).collect();
            let ok = split_record(&line, &mut v1, &mut r1);
            assert_eq!(ok, split_record_by_char(&line, &mut v2, &mut r2), "{line:?}");
            assert_eq!((&v1, &r1), (&v2, &r2), "{line:?}");
        }
        for line in ["", ",", "\"a\"b\"c", "a,\"open", "\"\"\"\"", "x,\"y\"\"\",z", "é,\"é,é\""] {
            let ok = split_record(line, &mut v1, &mut r1);
            assert_eq!(ok, split_record_by_char(line, &mut v2, &mut r2), "{line:?}");
            assert_eq!((&v1, &r1), (&v2, &r2), "{line:?}");
        }
    }

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
        // Records of one #Fields: header share a layout (the one run on over lines too).
        assert!(events[0].layout() != 0 && events[0].layout() == events[1].layout());
    }

    fn httpproxy(rows: usize, bad: Option<usize>) -> String {
        let mut s = String::from(
            "#Software: Microsoft Exchange Server\r\n#Log-type: HttpProxy Logs\r\n\
#Fields: DateTime,RequestId,UrlStem,ClientIpAddress,UserAgent,HttpStatus\r\n",
        );
        for i in 0..rows {
            let agent = if Some(i) == bad { "\"python, urllib".to_string() } else { format!("\"Mozilla/5.0, {i}\"") };
            s.push_str(&format!("2021-08-24T02:13:{:02}.000Z,{i},/owa/,10.0.0.{},{agent},200\r\n", i % 60, i % 250));
        }
        s
    }

    fn read_str(data: &str) -> (Vec<Event>, FileReport) {
        let mut report = FileReport::default();
        let mut events = Vec::new();
        read(data.as_bytes(), &ReadOptions::default(), &mut report, &mut |e| {
            events.push(e.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
        (events, report)
    }

    #[test]
    fn an_unclosed_quote_loses_only_its_line() {
        let (events, report) = read_str(&httpproxy(111, None));
        assert_eq!((events.len(), report.skipped), (111, 0));
        // Row 5 (line 9) opens a quote it never closes: reading recovers at the next record.
        let (events, report) = read_str(&httpproxy(111, Some(5)));
        assert_eq!(events.len(), 110, "{:?}", report.notes);
        assert_eq!(report.skipped, 1);
        assert!(report.notes[0].starts_with("line 9: quoted value opened on line 9 not closed"), "{:?}", report.notes);
        assert_eq!(events[5].get("RequestId"), Some("6"));
        assert_eq!(events[5].record, 10);
        // The last row broken: the end of the file closes nothing.
        let (events, report) = read_str(&httpproxy(111, Some(110)));
        assert_eq!((events.len(), report.skipped), (110, 1), "{:?}", report.notes);
        assert!(report.notes[0].contains("end of file"), "{:?}", report.notes);
    }

    #[test]
    fn a_stray_quote_that_closes_a_broken_one_loses_only_the_lines_between() {
        // Line 5 opens a quote; line 6 is not a record of its own (too few columns); line 7's
        // first quote closes the value with text after it: lines 5-7 are lost, 8 is read.
        let data = "#Fields: DateTime,RequestId,UrlStem,UserAgent\n\
2021-08-24T02:13:00Z,1,/a,ok\n\
2021-08-24T02:13:01Z,2,/b,ok\n\
2021-08-24T02:13:02Z,3,/c,ok\n\
2021-08-24T02:13:03Z,4,\"/d,ok\n\
half a line\n\
x\"y,z\n\
2021-08-24T02:13:04Z,5,/e,\"quoted, fine\"\n\
2021-08-24T02:13:05Z,6,\"/multi\n\
line\",ok\n";
        let (events, report) = read_str(data);
        let ids: Vec<_> = events.iter().map(|e| e.get("RequestId").unwrap().to_string()).collect();
        assert_eq!(ids, ["1", "2", "3", "5", "6"], "{:?}", report.notes);
        assert_eq!(report.skipped, 3, "{:?}", report.notes);
        assert!(report.notes[0].starts_with("lines 5-7:"), "{:?}", report.notes);
        assert_eq!(events[4].get("UrlStem"), Some("/multi\nline"));
    }
}

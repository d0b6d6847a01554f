//! W3C extended log format as IIS (and some proxies) write it: `#Fields:` names the
//! space-separated columns and may change mid-file; `-` is an empty value; `+` stands
//! for a space in user agents. Each column becomes a field under its `#Fields:` name,
//! with the Sigma webserver aliases added (`cs(User-Agent)` is also `cs-user-agent`)
//! and `cs-uri` built from stem and query. Data lines before any `#Fields:` directive are
//! read with IIS's default field set ([`IIS_DEFAULT_FIELDS`]), and the file's warnings say so.

use std::io::{self, BufRead};
use std::ops::ControlFlow;

use portcullis_event::{Event, SourceKind, Timestamp, ValueKind};

use crate::lines::{Line, decode_lossy, read_line_bounded};
use crate::{FileReport, ReadOptions};

struct Column {
    name: String,
    alias: Option<&'static str>,
    plus_is_space: bool,
    /// What the reader takes from the column besides its field, found once per `#Fields:`.
    part: Part,
}

/// Columns that make the event's time and `cs-uri` (names as IIS writes them).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Date,
    Time,
    UriStem,
    UriQuery,
    Uri,
    Other,
}

fn column(name: &str) -> Column {
    let lower = name.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "cs(user-agent)" => Some("cs-user-agent"),
        "cs(referer)" => Some("cs-referer"),
        "cs(cookie)" => Some("cs-cookie"),
        "cs(host)" => Some("cs-host"),
        "cs(x-forwarded-for)" => Some("cs-x-forwarded-for"),
        _ => None,
    };
    let plus_is_space = lower.starts_with("cs(") || lower.starts_with("sc(") || lower.starts_with("s-computername");
    let part = match name {
        "date" => Part::Date,
        "time" => Part::Time,
        "cs-uri-stem" => Part::UriStem,
        "cs-uri-query" => Part::UriQuery,
        "cs-uri" => Part::Uri,
        _ => Part::Other,
    };
    Column { name: name.to_string(), alias, plus_is_space, part }
}

/// `iis` for web-server logs (IIS's own, or the `cs-uri-stem`/`s-sitename` columns),
/// `proxy` for web-proxy logs (ELFF columns such as `c-uri`, `cs-host`, `sc-filter-result`),
/// else `w3c`. Sigma's `webserver` and `proxy` categories select on it.
fn kind_of_log(software: &str, columns: &[Column]) -> &'static str {
    let has = |n: &str| columns.iter().any(|c| c.name.eq_ignore_ascii_case(n));
    if software.contains("Internet Information Services") || has("s-sitename") || (has("cs-uri-stem") && !has("c-uri")) {
        "iis"
    } else if has("c-uri") || has("sc-filter-result") || has("r-ip") || has("s-action") {
        "proxy"
    } else {
        "w3c"
    }
}

/// The fields IIS writes by default, used for data lines before any `#Fields:` directive.
pub const IIS_DEFAULT_FIELDS: [&str; 15] = [
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
];

/// A data line in IIS's default field set: `YYYY-MM-DD HH:MM:SS` and 15 columns.
pub fn is_default_iis_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shape = |s: &[u8], pattern: &[u8]| {
        s.len() == pattern.len() && s.iter().zip(pattern).all(|(c, p)| if *p == b'9' { c.is_ascii_digit() } else { c == p })
    };
    let mut cols = line.split(|&b| b == b' ');
    cols.next().is_some_and(|d| shape(d, b"9999-99-99"))
        && cols.next().is_some_and(|t| shape(t, b"99:99:99"))
        && cols.count() == IIS_DEFAULT_FIELDS.len() - 2
}

/// `line.split(' ')` by a plain byte loop: W3C fields are a few bytes long, and the
/// standard splitter's search costs more per field than this scan of its bytes.
fn split_spaces(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == b' ') {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

pub fn read(
    mut reader: impl BufRead,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut columns: Vec<Column> = Vec::new();
    let mut software = String::new();
    let mut log_type = "w3c";
    // Whether `columns` are IIS's defaults (no #Fields: directive seen yet).
    let mut defaulted = false;
    // Every record of one `#Fields:` block has the same field names in the same order.
    let mut layout = 0;
    let mut buf = Vec::new();
    let mut value = String::new();
    let mut event = Event::new(SourceKind::W3c);
    let mut line_no: u64 = opts.first_line.saturating_sub(1);
    loop {
        line_no += 1;
        match read_line_bounded(&mut reader, &mut buf, opts.max_record_bytes)? {
            Line::Eof => break,
            Line::TooLong { len } => {
                report.skip(|| format!("line {line_no}: {len} bytes exceeds the record limit"));
                continue;
            }
            Line::Ok => {}
        }
        let (line, lossy) = decode_lossy(&buf);
        if lossy {
            report.lossy += 1;
        }
        if let Some(directive) = line.strip_prefix('#') {
            if let Some(fields) = directive.strip_prefix("Fields:") {
                columns = fields.split_ascii_whitespace().map(column).collect();
                layout = portcullis_event::new_layout();
                defaulted = false;
                log_type = kind_of_log(&software, &columns);
            } else if let Some(sw) = directive.strip_prefix("Software:") {
                software = sw.trim().to_string();
            }
            continue;
        }
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if columns.is_empty() {
            // Data before any #Fields: directive: IIS's default fields, said once per file.
            columns = IIS_DEFAULT_FIELDS.iter().map(|n| column(n)).collect();
            layout = portcullis_event::new_layout();
            log_type = kind_of_log(&software, &columns);
            defaulted = true;
            report.warnings.push(format!(
                "data from line {line_no} on came before any #Fields: directive and is read with IIS's default W3C fields ({})",
                IIS_DEFAULT_FIELDS.join(" ")
            ));
        }
        // Separators counted byte by byte (the compiler vectorises it), not field by field.
        let n = line.bytes().filter(|&b| b == b' ').count() + 1;
        if n != columns.len() {
            let expected = columns.len();
            let whose = if defaulted { "IIS's default fields name" } else { "#Fields: names" };
            report.skip(|| format!("line {line_no}: {n} columns where {whose} {expected}"));
            continue;
        }
        event.clear(SourceKind::W3c);
        event.log_type.push_str(log_type);
        event.record = line_no;
        let (mut date, mut time, mut stem, mut query) = (None, None, None, None);
        let mut has_cs_uri = false;
        for (col, raw) in columns.iter().zip(split_spaces(line)) {
            let (v, kind) = if raw == "-" {
                ("", ValueKind::Null)
            } else if col.plus_is_space && raw.contains('+') {
                value.clear();
                for (k, part) in raw.split('+').enumerate() {
                    if k > 0 {
                        value.push(' ');
                    }
                    value.push_str(part);
                }
                (value.as_str(), ValueKind::Str)
            } else {
                (raw, ValueKind::Str)
            };
            event.push(&col.name, v, kind);
            if let Some(alias) = col.alias {
                event.push(alias, v, kind);
            }
            match col.part {
                Part::Date => date = Some(raw),
                Part::Time => time = Some(raw),
                Part::UriStem => stem = Some(raw),
                Part::UriQuery => query = Some(raw).filter(|q| *q != "-"),
                Part::Uri => has_cs_uri = true,
                Part::Other => {}
            }
        }
        if let (Some(stem), false) = (stem, has_cs_uri) {
            value.clear();
            value.push_str(stem);
            if let Some(q) = query {
                value.push('?');
                value.push_str(q);
            }
            event.push("cs-uri", &value, ValueKind::Str);
        }
        event.set_layout(layout);
        if let (Some(d), Some(t)) = (date, time) {
            value.clear();
            value.push_str(d);
            value.push(' ');
            value.push_str(t);
            event.timestamp = Timestamp::parse(&value);
        }
        event.raw.push_str(line);
        report.events += 1;
        if sink(&event).is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_spaces_splits_as_the_standard_splitter() {
        for line in ["", " ", "a", "a b", " a", "a ", "a  b", "  ", "é ü  x\u{3000}y ", "2022-06-01 10:00:00 GET /owa/ - 443"] {
            assert_eq!(split_spaces(line).collect::<Vec<_>>(), line.split(' ').collect::<Vec<_>>(), "{line:?}");
        }
    }

    const IIS: &str = "#Software: Microsoft Internet Information Services 10.0\r\n\
#Version: 1.0\r\n\
#Date: 2021-08-24 02:13:00\r\n\
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\r\n\
2021-08-24 02:13:00 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dz&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 185.220.101.182 python-requests/2.25.1 - 200 0 0 312\r\n\
2021-08-24 02:13:01 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 12\r\n\
2021-08-24 02:13:02 10.0.0.5 GET /too few\r\n\
#Fields: date time c-ip\r\n\
2021-08-24 02:14:00 10.9.9.9\r\n";

    fn read_all(data: &[u8]) -> (Vec<Event>, FileReport) {
        let mut report = FileReport::default();
        let mut events = Vec::new();
        read(data, &ReadOptions::default(), &mut report, &mut |e| {
            events.push(e.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
        (events, report)
    }

    #[test]
    fn iis_lines_become_fields() {
        let (events, report) = read_all(IIS.as_bytes());
        assert_eq!(report.events, 3);
        assert_eq!(report.skipped, 1);
        assert!(report.notes[0].starts_with("line 7: 6 columns where #Fields: names 15"), "{:?}", report.notes);
        let e = &events[0];
        assert_eq!(e.get("cs-uri-stem"), Some("/autodiscover/autodiscover.json"));
        assert!(e.get("cs-uri-query").unwrap().contains("X-Rps-CAT"));
        assert_eq!(e.get("c-ip"), Some("185.220.101.182"));
        assert_eq!(e.get("sc-status"), Some("200"));
        assert_eq!(e.get("cs-username"), Some(""));
        assert!(e.get("cs-uri").unwrap().starts_with("/autodiscover/autodiscover.json?@evil.corp/powershell"));
        assert_eq!(e.timestamp.unwrap().to_string(), "2021-08-24T02:13:00Z");
        assert_eq!(e.record, 5);
        assert_eq!(events[1].get("cs-user-agent"), Some("Mozilla/5.0 (Windows NT 10.0)"));
        assert_eq!(events[1].get("cs-uri"), Some("/owa/"));
        // #Fields changed mid-file
        assert_eq!(events[2].get("c-ip"), Some("10.9.9.9"));
        assert_eq!(events[2].record, 9);
        // One layout per #Fields: block, so that name lookups are reused only within one.
        assert!(events[0].layout() != 0 && events[0].layout() == events[1].layout());
        assert!(events[2].layout() != 0 && events[2].layout() != events[1].layout());
    }

    #[test]
    fn hostile_lines() {
        let mut data = b"2021-08-24 00:00:00 x\n#Fields: date time c-ip\n".to_vec();
        data.extend_from_slice(b"2021-08-24 00:00:00 \xff\xfe\n");
        data.extend(std::iter::repeat_n(b'a', 20 << 20));
        data.extend_from_slice(b"\n2021-08-24 00:00:01 1.2.3.4\n");
        let (events, report) = read_all(&data);
        assert_eq!(events.len(), 2);
        assert_eq!(report.lossy, 1);
        assert_eq!(report.skipped, 2, "{:?}", report.notes);
        assert!(report.notes[0].starts_with("line 1: 3 columns where IIS's default fields name 15"), "{:?}", report.notes);
        assert!(report.notes[1].contains("exceeds the record limit"));
    }

    #[test]
    fn data_before_fields_is_read_with_iis_default_fields() {
        // The first lines of a log whose header was cut, then a #Fields: directive.
        let data = "#Software: Microsoft Internet Information Services 10.0\r\n\
2021-08-24 02:13:00 10.0.0.5 POST /autodiscover/autodiscover.json a=@evil.corp/powershell 443 - 185.220.101.182 python-requests/2.25.1 - 200 0 0 312\r\n\
2021-08-24 02:13:01 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0+(Windows) - 200 0 0 12\r\n\
#Fields: date time c-ip\r\n\
2021-08-24 02:14:00 10.9.9.9\r\n";
        let (events, report) = read_all(data.as_bytes());
        assert_eq!((events.len(), report.skipped), (3, 0), "{:?}", report.notes);
        assert_eq!(events[0].get("cs-uri-stem"), Some("/autodiscover/autodiscover.json"));
        assert_eq!(events[0].get("c-ip"), Some("185.220.101.182"));
        assert_eq!(events[0].log_type, "iis");
        assert_eq!(events[0].timestamp.unwrap().to_string(), "2021-08-24T02:13:00Z");
        assert_eq!(events[1].get("cs-user-agent"), Some("Mozilla/5.0 (Windows)"));
        assert_eq!(events[2].get("c-ip"), Some("10.9.9.9"));
        assert_eq!(report.warnings.len(), 1, "said once per file: {:?}", report.warnings);
        assert!(report.warnings[0].starts_with("data from line 2 on came before any #Fields: directive"), "{:?}", report.warnings);
        assert!(crate::sniff(data.as_bytes()) == Some(crate::Format::W3c));
    }
}

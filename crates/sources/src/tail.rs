//! A growing text log read piece by piece (for `watch` and agents): where the whole
//! records in newly written bytes end, and the state — the next line number, the `#`
//! directives in effect, a JSON file's collector clock — that lets each piece be read
//! exactly as a read of the whole file reads it (same fields, times and record numbers,
//! hence the same finding ids).

use std::io::{self, Cursor, Read};
use std::ops::ControlFlow;

use portcullis_event::Event;

use crate::{CollectorClock, FileReport, Format, ReadOptions};

/// Where reading a followed text file stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TailState {
    pub format: TextFormat,
    /// The number of the next line to read.
    pub line: u64,
    /// The `#` directives in effect (W3C and Exchange logs), the latest of each kind, in
    /// the order they were written.
    pub directives: Vec<String>,
    /// A JSON file's collector clock, once learned from its start.
    pub clock: Option<Option<i64>>,
}

/// The formats that can be followed as they grow (EVTX and archives are read whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextFormat {
    Json,
    W3c,
    ExchangeCsv,
}

impl TextFormat {
    pub fn format(self) -> Format {
        match self {
            TextFormat::Json => Format::Json,
            TextFormat::W3c => Format::W3c,
            TextFormat::ExchangeCsv => Format::ExchangeCsv,
        }
    }

    /// The followable format of a file starting with `prefix` (not gzipped), if any.
    pub fn sniff(prefix: &[u8]) -> Option<TextFormat> {
        match crate::sniff(prefix)? {
            Format::Json => Some(TextFormat::Json),
            Format::W3c => Some(TextFormat::W3c),
            Format::ExchangeCsv => Some(TextFormat::ExchangeCsv),
            Format::Evtx | Format::Zip | Format::Tar => None,
        }
    }
}

/// Directives whose latest value changes how later lines are read.
const KEPT_DIRECTIVES: [&str; 3] = ["Fields", "Software", "Log-type"];

impl TailState {
    pub fn new(format: TextFormat) -> TailState {
        TailState { format, line: 1, directives: Vec::new(), clock: None }
    }

    /// The length of the longest start of `bytes` made of whole records: up to the last
    /// line break (outside a quoted value in Exchange's CSV, outside any object in JSON).
    pub fn complete(&self, bytes: &[u8]) -> usize {
        match self.format {
            TextFormat::W3c => memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1),
            TextFormat::ExchangeCsv => self.csv_scan(bytes).0,
            TextFormat::Json => {
                let (mut depth, mut in_string, mut escaped, mut end) = (0u32, false, false, 0);
                for (i, &b) in bytes.iter().enumerate() {
                    if in_string {
                        match b {
                            _ if escaped => escaped = false,
                            b'\\' => escaped = true,
                            b'"' => in_string = false,
                            // A line break inside a string is invalid JSON: the record ends.
                            b'\n' => (in_string, depth, end) = (false, 0, i + 1),
                            _ => {}
                        }
                        continue;
                    }
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            // A closed object is whole even when no line break follows yet
                            // (a file's last object often has none).
                            if depth == 0 {
                                end = i + 1;
                            }
                        }
                        b'\n' if depth == 0 => end = i + 1,
                        _ => {}
                    }
                }
                end
            }
        }
    }

    /// Exchange's CSV: the line breaks after which `exchange_csv::read` has no record open,
    /// found by its own rules — a quote opens a value only at the value's start (`a,x"y` is
    /// plain), an open quoted value runs on until it closes, and a directive or a line that
    /// is a whole record of its own (as many columns as `#Fields:` names) ends it unless it
    /// completes it — and the `#` lines it reads as directives (not those inside a value).
    fn csv_scan(&self, bytes: &[u8]) -> (usize, Vec<std::ops::Range<usize>>) {
        use crate::exchange_csv::split_record;
        use crate::quoted::QuoteState;
        let (mut values, mut ranges) = (String::new(), Vec::new());
        let mut columns_of = |fields: &str| if split_record(fields.trim(), &mut values, &mut ranges) { ranges.len() } else { 0 };
        let mut columns = 0;
        for d in &self.directives {
            if let Some(fields) = d.strip_prefix("#Fields:") {
                columns = columns_of(fields);
            }
        }
        let (mut values, mut ranges, mut record) = (String::new(), Vec::new(), String::new());
        let (mut quote, mut open, mut start, mut end) = (QuoteState::default(), false, 0, 0);
        let mut directives = Vec::new();
        while let Some(nl) = memchr::memchr(b'\n', &bytes[start..]) {
            let raw = &bytes[start..start + nl];
            let line_at = start..start + nl;
            start += nl + 1;
            let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw));
            let fresh = if open {
                quote.scan(&line, b',');
                record.push('\n');
                record.push_str(&line);
                let whole = !quote.open && !quote.stray && split_record(&record, &mut values, &mut ranges) && ranges.len() == columns;
                let alone = !whole
                    && (line.starts_with('#')
                        || (!QuoteState::of_line(&line, b',').open
                            && split_record(&line, &mut values, &mut ranges)
                            && ranges.len() == columns));
                open = quote.open && !alone && !whole;
                // A line that is a record of its own is read afresh once the open one is lost.
                alone
            } else {
                true
            };
            if fresh {
                record.clear();
                if line.starts_with('#') {
                    directives.push(line_at);
                    if let Some(fields) = line.strip_prefix("#Fields:") {
                        columns = columns_of(fields);
                    }
                } else if !line.trim().is_empty() {
                    quote = QuoteState::of_line(&line, b',');
                    open = quote.open;
                    record.push_str(&line);
                }
            }
            if !open {
                end = start;
            }
        }
        (end, directives)
    }

    /// Reads `bytes` (whole records, the piece that follows what was read before),
    /// calling `sink` with each event, and moves the state past them.
    pub fn read(
        &mut self,
        bytes: &[u8],
        opts: &ReadOptions,
        report: &mut FileReport,
        sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
    ) -> io::Result<()> {
        if self.format == TextFormat::Json {
            self.clock.get_or_insert_with(|| crate::json::Clock::learn(bytes, opts).learned_offset());
        }
        let result = self.read_from(bytes, opts, report, sink);
        self.skip(bytes);
        result
    }

    /// Reads the whole records in `reader` (what follows the point this state describes)
    /// as a read of the whole file reads them there, without moving the state.
    pub(crate) fn read_from(
        &self,
        reader: impl io::Read,
        opts: &ReadOptions,
        report: &mut FileReport,
        sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let mut opts = opts.clone();
        if let Some(clock) = self.clock {
            opts.collector_clock = CollectorClock::Known(clock);
        }
        let mut header = String::new();
        for d in &self.directives {
            header.push_str(d);
            header.push('\n');
        }
        // The directives are replayed as lines before the piece; numbering starts early by as many.
        opts.first_line = self.line.saturating_sub(self.directives.len() as u64).max(1);
        let reader = io::BufReader::with_capacity(256 * 1024, Cursor::new(header.into_bytes()).chain(reader));
        match crate::read_text(self.format.format(), reader, &report.path.clone(), &opts, report, sink) {
            Ok(()) => Ok(()),
            Err(crate::SourceError::Io { error, .. }) => Err(error),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// Moves the state past `bytes` (whole lines) without reading their events: the line
    /// count and the directives in effect follow.
    pub fn skip(&mut self, bytes: &[u8]) {
        self.line += memchr::memchr_iter(b'\n', bytes).count() as u64;
        if self.format == TextFormat::Json {
            return;
        }
        // In Exchange's CSV a `#` line inside a quoted value is part of the value.
        let lines: Vec<&[u8]> = match self.format {
            TextFormat::ExchangeCsv => self.csv_scan(bytes).1.into_iter().map(|r| &bytes[r]).collect(),
            _ => bytes.split(|&b| b == b'\n').filter(|l| l.first() == Some(&b'#')).collect(),
        };
        for line in lines {
            let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
            let name = line[1..].split(':').next().unwrap_or("");
            if !KEPT_DIRECTIVES.contains(&name) || !line[1..].contains(':') {
                continue;
            }
            let kept = |d: &String| d[1..].split(':').next() == Some(name);
            match self.directives.iter_mut().find(|d| kept(d)) {
                Some(d) => *d = line.into_owned(),
                None => self.directives.push(line.into_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `data` as (record, fields), read whole or in pieces cut at `cuts`.
    fn events(format: TextFormat, data: &[u8], cuts: &[usize]) -> Vec<(u64, Vec<(String, String)>, Option<i64>)> {
        let mut out = Vec::new();
        let mut sink = |e: &Event| {
            out.push((e.record, e.fields().map(|f| (f.name.to_string(), f.value.to_string())).collect(), e.timestamp.map(|t| t.0)));
            ControlFlow::Continue(())
        };
        let opts = ReadOptions::default();
        let mut report = FileReport::default();
        if cuts.is_empty() {
            crate::read_text(format.format(), data, std::path::Path::new("x"), &opts, &mut report, &mut sink).unwrap();
        } else {
            let mut state = TailState::new(format);
            let mut start = 0;
            for &cut in cuts.iter().chain([&data.len()]) {
                // Only whole records are handed over; the rest waits for the next piece.
                let end = start + state.complete(&data[start..cut.max(start)]);
                state.read(&data[start..end], &opts, &mut report, &mut sink).unwrap();
                start = end;
            }
            assert_eq!(start, data.len(), "everything was read by the end");
        }
        out
    }

    #[test]
    fn w3c_in_pieces_reads_as_whole() {
        let data = b"#Software: Microsoft Internet Information Services 10.0\r\n#Fields: date time cs-method cs-uri-stem c-ip\r\n\
2021-08-24 02:10:17 GET /owa/a 10.0.0.1\r\n2021-08-24 02:10:18 POST /autodiscover/autodiscover.json 10.0.0.2\r\n\
#Software: Microsoft Internet Information Services 10.0\r\n#Fields: date time c-ip cs-uri-stem\r\n2021-08-24 02:11:00 10.0.0.3 /ecp/x\r\n";
        let whole = events(TextFormat::W3c, data, &[]);
        assert_eq!(whole.len(), 3);
        for cuts in [vec![10], vec![120, 150, 200], (1..data.len()).step_by(7).collect::<Vec<_>>()] {
            assert_eq!(events(TextFormat::W3c, data, &cuts), whole, "cuts {cuts:?}");
        }
    }

    #[test]
    fn exchange_csv_keeps_quoted_line_breaks_together() {
        let data = b"#Software: Microsoft Exchange Server\r\n#Log-type: HttpProxy Logs\r\n#Fields: DateTime,UrlStem,Cmd\r\n\
2021-08-24T02:10:17.000Z,/ecp/a,\"one\r\ntwo, three\"\r\n2021-08-24T02:10:18.000Z,/owa/b,plain\r\n";
        let whole = events(TextFormat::ExchangeCsv, data, &[]);
        assert_eq!(whole.len(), 2);
        for cut in 1..data.len() {
            assert_eq!(events(TextFormat::ExchangeCsv, data, &[cut]), whole, "cut at {cut}");
        }
    }

    /// Found by the `tail` fuzz target: a quote inside a value (`x"y`) opens nothing, so
    /// the line break after `"b` is inside the record, and a piece must not end there.
    #[test]
    fn exchange_csv_quote_inside_a_value_opens_nothing() {
        let data = b"#Fields: a,b,c\na,x\"y,\"b\nc\"\nd,e,f\nm,n\"o,p\n";
        let whole = events(TextFormat::ExchangeCsv, data, &[]);
        assert_eq!(whole.len(), 3);
        for cut in 1..data.len() {
            assert_eq!(events(TextFormat::ExchangeCsv, data, &[cut]), whole, "cut at {cut}");
        }
    }

    /// Found by the `tail` fuzz target: a `#Fields:` line inside a quoted value is part of
    /// the value, neither a directive for later pieces nor the end of the record.
    #[test]
    fn exchange_csv_directive_inside_a_value_is_text() {
        let data = b"#Fields: a,b,c\r\n1,\"x\r\n#Fields: q,r\",w\r\n2,y,z\r\n";
        let whole = events(TextFormat::ExchangeCsv, data, &[]);
        assert_eq!(whole.len(), 2);
        for cut in 1..data.len() {
            assert_eq!(events(TextFormat::ExchangeCsv, data, &[cut]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_last_object_without_a_line_break_is_read() {
        let data = b"{\"a\": 1}\n{\"b\": {\"c\": 2}}";
        let state = TailState::new(TextFormat::Json);
        assert_eq!(state.complete(data), data.len());
        assert_eq!(state.complete(&data[..data.len() - 1]), 9, "an object still open waits");
        assert_eq!(events(TextFormat::Json, data, &[5]), events(TextFormat::Json, data, &[]));
    }

    #[test]
    fn jsonl_in_pieces_reads_as_whole() {
        let data = b"{\"a\": {\"b\": \"x}\\\"{\"}, \"t\": \"2021-08-24T02:10:17Z\"}\n{\"a\": 2}\n{\n  \"pretty\": [1, 2]\n}\n";
        let whole = events(TextFormat::Json, data, &[]);
        assert_eq!(whole.len(), 3);
        for cut in 1..data.len() {
            assert_eq!(events(TextFormat::Json, data, &[cut]), whole, "cut at {cut}");
        }
    }
}

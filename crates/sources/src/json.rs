//! JSON: one object per line, concatenated (pretty-printed) objects, or a top-level
//! array of objects — all found by one bounded scanner that splits the byte stream
//! into top-level objects without parsing it.
//!
//! Each object is flattened straight into the reused [`Event`] by a serde visitor,
//! without building a map: the evtx JSON layout (`{"Event": {"System": …, "EventData":
//! …}}`) is named the way Sigma names Windows fields (`EventID`, `Provider_Name`,
//! `CommandLine`); anything else by dotted path (`a.b.c`; arrays repeat the name), after
//! which `layouts` recognises Windows events exported by other tools and renames them.
//!
//! Time: where a file's events carry both a collector's time and their own UTC time
//! (OTRF: `TimeCreated` written in local time marked `Z`, Sysmon's `UtcTime`), the
//! offset between them is learned from the start of the file ([`Clock`]); when it is
//! more than a minute, the events that have only the collector's time are corrected by
//! it and the file's report says so once.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::ops::ControlFlow;

use portcullis_event::{Event, SourceKind, TimeSource, Timestamp, ValueKind};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::layouts::{Normaliser, Times};
use crate::{FileReport, ReadOptions};

/// Reads JSON records from `reader`.
pub fn read(
    mut reader: impl BufRead,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> io::Result<()> {
    if let crate::CollectorClock::Known(offset) = opts.collector_clock {
        let mut clock = Clock { offset, ..Default::default() };
        let result = read_objects(reader, opts, report, &mut |event| {
            clock.correct(event, opts);
            sink(event)
        });
        clock.report(report, opts);
        return result;
    }
    // The start of the file is read twice: once to learn the collector's clock offset.
    // A stream that fails inside it (a truncated gzip) still gives the records before.
    let mut prefix = Vec::new();
    let prefix_error = (&mut reader).take(CLOCK_PRESCAN_BYTES).read_to_end(&mut prefix).err();
    let mut clock = Clock::learn(&prefix, opts);
    let mut correct = |event: &mut Event| {
        clock.correct(event, opts);
        sink(event)
    };
    let result = match prefix_error {
        Some(e) => read_objects(io::Cursor::new(prefix), opts, report, &mut correct).and(Err(e)),
        None => read_objects(io::Cursor::new(prefix).chain(reader), opts, report, &mut correct),
    };
    clock.report(report, opts);
    result
}

/// How much of a file's start is used to learn its collector's clock offset.
const CLOCK_PRESCAN_BYTES: u64 = 4 << 20;

/// The objects of a JSON stream, flattened and normalised, each given to `sink`.
fn read_objects(
    mut reader: impl BufRead,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&mut Event) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut splitter = Splitter::new(opts.max_record_bytes);
    splitter.start_at_line(opts.first_line);
    let mut event = Event::new(SourceKind::Json);
    let mut flat = Flattener::default();
    let mut norm = Normaliser::default();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        let mut stop = false;
        splitter.feed(chunk, &mut |piece| match piece {
            Piece::Object { bytes, line } => {
                if stop {
                    return;
                }
                match flat.flatten(bytes, &mut event) {
                    Ok(()) => {
                        match norm.normalise(&mut event, line) {
                            Some((layout, _)) => {
                                report.layout.get_or_insert(layout);
                            }
                            None => finish_event(&mut event, line),
                        }
                        report.events += 1;
                        if sink(&mut event).is_break() {
                            stop = true;
                        }
                    }
                    Err(e) => report.skip(|| format!("line {line}: invalid JSON object: {e}")),
                }
            }
            Piece::TooLarge { line, len } => report.skip(|| format!("line {line}: JSON object of {len} bytes exceeds the record limit")),
            Piece::Stray { line } => report.skip(|| format!("line {line}: text outside any JSON object")),
        });
        reader.consume(len);
        if stop {
            return Ok(());
        }
    }
    if let Some(line) = splitter.unfinished() {
        report.skip(|| format!("line {line}: JSON object truncated at end of file"));
    }
    Ok(())
}

/// A file's collector clock against the events' own: learned from the events that have
/// both (OTRF Sysmon events: `UtcTime` and the collector's `TimeCreated`).
#[derive(Debug, Default)]
pub struct Clock {
    /// Microseconds to add to a collector's time to get UTC.
    offset: Option<i64>,
    /// (own − collector) differences seen while learning.
    samples: usize,
    /// Differences that disagreed with the learned offset.
    disagreeing: usize,
    corrected: u64,
    collector_only: u64,
    unzoned: u64,
}

impl Clock {
    /// Learns the offset from the objects in `prefix` that carry Sysmon's `UtcTime`.
    pub fn learn(prefix: &[u8], opts: &ReadOptions) -> Clock {
        let mut diffs: Vec<i64> = Vec::new();
        if memchr::memmem::find(prefix, b"UtcTime").is_some() {
            let mut splitter = Splitter::new(opts.max_record_bytes);
            let mut event = Event::new(SourceKind::Json);
            let mut flat = Flattener::default();
            let mut norm = Normaliser::default();
            let finder = memchr::memmem::Finder::new(b"UtcTime");
            splitter.feed(prefix, &mut |piece| {
                if let Piece::Object { bytes, line } = piece
                    && diffs.len() < 10_000
                    && finder.find(bytes).is_some()
                    && flat.flatten(bytes, &mut event).is_ok()
                    && let Some((_, Times { own: Some(own), collector: Some(collector) })) = norm.normalise(&mut event, line)
                {
                    diffs.push(own.0 - collector.0);
                }
            });
        }
        let mut clock = Clock { samples: diffs.len(), ..Default::default() };
        if diffs.len() < 3 {
            return clock;
        }
        // Zones are whole quarter hours; collectors add seconds of lag on top.
        const QUARTER: i64 = 900 * 1_000_000;
        let mut rounded: Vec<i64> = diffs.iter().map(|d| (d + d.signum() * QUARTER / 2) / QUARTER * QUARTER).collect();
        rounded.sort_unstable();
        let (mut best, mut best_n, mut i) = (0, 0, 0);
        while i < rounded.len() {
            let j = rounded[i..].iter().take_while(|&&x| x == rounded[i]).count();
            if j > best_n {
                (best, best_n) = (rounded[i], j);
            }
            i += j;
        }
        clock.disagreeing = diffs.len() - best_n;
        if best != 0 && best_n * 10 >= diffs.len() * 8 {
            clock.offset = Some(best);
        }
        clock
    }

    /// The offset learned from `prefix` (microseconds to add to a collector's time), if any.
    pub fn learned_offset(&self) -> Option<i64> {
        self.offset
    }

    /// Puts an event's time right: a collector's time shifted by the learned offset (or
    /// `--assume-timezone` when none was learned), a time without zone by the assumed zone.
    pub fn correct(&mut self, event: &mut Event, opts: &ReadOptions) {
        let Some(t) = event.timestamp else { return };
        match event.time_source {
            TimeSource::Event => {}
            TimeSource::Collector => {
                if let Some(off) = self.offset {
                    event.timestamp = Some(Timestamp(t.0 + off));
                    event.time_source = TimeSource::Event;
                    self.corrected += 1;
                } else if let Some(zone) = opts.assume_utc_offset_secs {
                    event.timestamp = Some(Timestamp(t.0 - zone * 1_000_000));
                    self.corrected += 1;
                } else {
                    self.collector_only += 1;
                }
            }
            TimeSource::Unzoned => {
                if let Some(zone) = opts.assume_utc_offset_secs {
                    event.timestamp = Some(Timestamp(t.0 - zone * 1_000_000));
                    self.corrected += 1;
                } else {
                    self.unzoned += 1;
                }
            }
        }
    }

    /// Says once per file what was done to its times.
    pub fn report(&self, report: &mut FileReport, opts: &ReadOptions) {
        if let Some(off) = self.offset {
            report.warnings.push(format!(
                "the collector's times are {} {} the events' own UTC times (learned from {} Sysmon events{}): {} events that had only the collector's time were corrected by {}",
                human_offset(off.abs()),
                if off > 0 { "behind" } else { "ahead of" },
                self.samples,
                if self.disagreeing > 0 { format!(", {} disagreeing", self.disagreeing) } else { String::new() },
                self.corrected,
                signed_offset(off),
            ));
        } else if self.samples >= 3 && self.disagreeing * 10 > self.samples * 2 {
            report.warnings.push(format!(
                "the collector's times disagree with the events' own UTC times by varying amounts ({} of {} samples): not corrected",
                self.disagreeing, self.samples
            ));
        }
        if self.collector_only > 0 {
            report.warnings.push(format!(
                "{} events carry only a collector's time (not their own); if that collector wrote local time, pass --assume-timezone",
                self.collector_only
            ));
        }
        if self.unzoned > 0 {
            report.warnings.push(format!(
                "{} events' times carry no time zone and were read as UTC; pass --assume-timezone if they are local",
                self.unzoned
            ));
        }
        if let Some(zone) = opts.assume_utc_offset_secs
            && self.offset.is_none()
            && self.corrected > 0
        {
            report.warnings.push(format!(
                "{} events' times were read in the assumed zone UTC{}",
                self.corrected,
                signed_offset(zone * 1_000_000)
            ));
        }
    }
}

fn human_offset(micros: i64) -> String {
    let mins = micros / 60_000_000;
    format!("{} h {:02} min", mins / 60, mins % 60)
}

fn signed_offset(micros: i64) -> String {
    let mins = micros.abs() / 60_000_000;
    format!("{}{:02}:{:02}", if micros < 0 { '-' } else { '+' }, mins / 60, mins % 60)
}

/// Gives a flattened object its source kind, timestamp and record number.
pub(crate) fn finish_event(event: &mut Event, line: u64) {
    let windows = event.source == SourceKind::Windows || (event.get("Channel").is_some() && event.get("EventID").is_some());
    if windows {
        event.source = SourceKind::Windows;
        let own = event.get("TimeCreated_SystemTime").or_else(|| event.get("TimeCreated")).and_then(Timestamp::parse_zoned);
        (event.timestamp, event.time_source) = match own {
            Some((t, true)) => (Some(t), TimeSource::Event),
            Some((t, false)) => (Some(t), TimeSource::Unzoned),
            None => (event.get("@timestamp").and_then(Timestamp::parse), TimeSource::Collector),
        };
        event.record = event.get("EventRecordID").and_then(|r| r.parse().ok()).unwrap_or(line);
        add_integrity_level(event);
    } else {
        event.record = line;
        // Cloud identity logs get a log type, so Sigma log sources (okta, azure) select them.
        if event.get("eventType").is_some() && (event.get("published").is_some() || event.get("actor.alternateId").is_some()) {
            event.log_type.push_str("okta");
        } else if event.get("category").is_some_and(|c| c.eq_ignore_ascii_case("SignInLogs"))
            || (event.get("operationName").is_some_and(|o| o.eq_ignore_ascii_case("Sign-in activity")))
        {
            event.log_type.push_str("azure_signinlogs");
        }
        event.timestamp = JSON_TIME_FIELDS.iter().find_map(|name| {
            let f = event.fields().find(|f| f.name.eq_ignore_ascii_case(name))?;
            match f.kind {
                ValueKind::Int | ValueKind::Float => {
                    let n: f64 = f.value.parse().ok()?;
                    // Epoch seconds, or milliseconds when the number is too large for seconds.
                    let secs = if n > 1e11 { n / 1000.0 } else { n };
                    Some(Timestamp((secs * 1e6) as i64))
                }
                _ => Timestamp::parse(f.value),
            }
        });
    }
}

/// Security 4688 gives the new process's integrity as a label SID (`MandatoryLabel`);
/// Sysmon and the Sigma rules written for it say `IntegrityLevel: High`. The word is added
/// so those rules apply to 4688 as they do to Sysmon 1.
pub(crate) fn add_integrity_level(event: &mut Event) {
    if event.get("EventID") != Some("4688") || event.get("IntegrityLevel").is_some() {
        return;
    }
    let level = match event.get("MandatoryLabel").map(|l| l.trim().to_ascii_uppercase()) {
        Some(l) => match l.as_str() {
            "S-1-16-0" => "Untrusted",
            "S-1-16-4096" => "Low",
            "S-1-16-8192" => "Medium",
            "S-1-16-8448" => "MediumPlus",
            "S-1-16-12288" => "High",
            "S-1-16-16384" => "System",
            "S-1-16-20480" => "Protected",
            _ => return,
        },
        None => return,
    };
    event.push_str("IntegrityLevel", level);
}

const JSON_TIME_FIELDS: [&str; 14] = [
    "@timestamp",
    "timestamp",
    "published",
    "TimeCreated",
    "TimeGenerated",
    "EventTime",
    "eventTime",
    "time",
    "createdDateTime",
    "datetime",
    "date-time",
    "DateTime",
    "UtcTime",
    "date",
];

/// Pieces the splitter finds in the byte stream.
pub enum Piece<'a> {
    Object { bytes: &'a [u8], line: u64 },
    TooLarge { line: u64, len: u64 },
    Stray { line: u64 },
}

/// Splits a byte stream into top-level JSON objects, tracking strings and nesting,
/// holding at most `max` bytes of any one object.
pub struct Splitter {
    max: usize,
    buf: Vec<u8>,
    depth: u32,
    /// 1 inside a top-level array, else 0.
    base: u32,
    in_string: bool,
    escaped: bool,
    overflow: bool,
    obj_len: u64,
    obj_line: u64,
    line: u64,
    skipping_line: bool,
    seen_first: bool,
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Splitter {
            max,
            buf: Vec::new(),
            depth: 0,
            base: 0,
            in_string: false,
            escaped: false,
            overflow: false,
            obj_len: 0,
            obj_line: 1,
            line: 1,
            skipping_line: false,
            seen_first: false,
        }
    }

    /// Numbers lines from `line` (a stream that starts inside a file).
    pub fn start_at_line(&mut self, line: u64) {
        self.line = line.max(1);
        self.obj_line = self.line;
    }

    /// The line of an object left open at end of input, if any.
    pub fn unfinished(&self) -> Option<u64> {
        (self.depth > self.base).then_some(self.obj_line)
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut dyn FnMut(Piece<'_>)) {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            if self.depth > self.base {
                // Inside an object: copy bytes, track strings and nesting.
                let start = i;
                while i < chunk.len() {
                    let c = chunk[i];
                    i += 1;
                    if c == b'\n' {
                        self.line += 1;
                    }
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if c == b'\\' {
                            self.escaped = true;
                        } else if c == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match c {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == self.base {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                self.append(&chunk[start..i]);
                if self.depth == self.base {
                    if self.overflow {
                        out(Piece::TooLarge { line: self.obj_line, len: self.obj_len });
                    } else {
                        out(Piece::Object { bytes: &self.buf, line: self.obj_line });
                    }
                    self.buf.clear();
                    if self.buf.capacity() > 4 * 1024 * 1024 {
                        self.buf.shrink_to(64 * 1024);
                    }
                    self.overflow = false;
                    self.obj_len = 0;
                }
                continue;
            }
            i += 1;
            if b == b'\n' {
                self.line += 1;
                self.skipping_line = false;
                continue;
            }
            if self.skipping_line || b.is_ascii_whitespace() {
                continue;
            }
            match b {
                b'{' => {
                    self.seen_first = true;
                    self.obj_line = self.line;
                    self.depth += 1;
                    self.in_string = false;
                    self.escaped = false;
                    self.append(b"{");
                }
                b'[' if !self.seen_first && self.base == 0 => {
                    self.seen_first = true;
                    self.base = 1;
                    self.depth = 1;
                }
                b',' if self.base == 1 => {}
                b']' if self.base == 1 => {
                    self.base = 0;
                    self.depth = 0;
                }
                0xEF | 0xBB | 0xBF if !self.seen_first => {} // UTF-8 byte order mark
                b'R' if !self.seen_first || self.base == 0 => self.skipping_line = true, // "Record N" (evtx_dump)
                _ => {
                    self.skipping_line = true;
                    out(Piece::Stray { line: self.line });
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.obj_len += bytes.len() as u64;
        if self.overflow {
            return;
        }
        if self.buf.len() + bytes.len() > self.max {
            self.overflow = true;
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Flattens one JSON object into an event. Reused across objects.
#[derive(Default)]
pub struct Flattener {
    path: String,
    starts: Vec<usize>,
    name: String,
    number: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Generic,
    Windows,
}

impl Flattener {
    pub fn flatten(&mut self, bytes: &[u8], event: &mut Event) -> Result<(), serde_json::Error> {
        event.clear(SourceKind::Json);
        self.path.clear();
        self.starts.clear();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        Node { st: self, ev: event }.deserialize(&mut de)?;
        de.end()
    }

    fn segment(&self, i: usize) -> &str {
        segment(&self.path, &self.starts, i)
    }

    fn layout(&self) -> Layout {
        match self.starts.first().map(|_| self.segment(0)) {
            Some("Event") => Layout::Windows,
            _ => Layout::Generic,
        }
    }

    /// Emits the value at the current path under its Sigma-style name.
    fn emit(&mut self, ev: &mut Event, value: &str, kind: ValueKind) {
        let n = self.starts.len();
        if n == 0 {
            return;
        }
        let layout = self.layout();
        let mut name = std::mem::take(&mut self.name);
        name.clear();
        let seg = |i| segment(&self.path, &self.starts, i);
        let named = match layout {
            Layout::Windows => {
                ev.source = SourceKind::Windows;
                let attrs = (1..n).any(|i| seg(i) == "#attributes");
                match (n, n.checked_sub(1).map(|_| seg(1.min(n - 1)))) {
                    (0..=1, _) => false,
                    (_, Some("System")) if n >= 3 => {
                        name.push_str(seg(2));
                        if attrs {
                            name.push('_');
                            name.push_str(seg(n - 1));
                        }
                        true
                    }
                    _ if attrs => false, // xmlns and other XML attributes outside System
                    (_, Some("EventData")) if n >= 3 => {
                        name.push_str(seg(2));
                        true
                    }
                    _ => match (1..n).rev().map(seg).find(|s| *s != "#text") {
                        Some(last) => {
                            name.push_str(last);
                            true
                        }
                        None => false,
                    },
                }
            }
            Layout::Generic => {
                dotted(&self.path, &self.starts, &mut name);
                true
            }
        };
        if named {
            ev.push(&name, value, kind);
        }
        self.name = name;
    }

    /// Emits a number formatted into a reused buffer.
    fn emit_number(&mut self, ev: &mut Event, value: fmt::Arguments<'_>, kind: ValueKind) {
        use std::fmt::Write;
        let mut number = std::mem::take(&mut self.number);
        number.clear();
        let _ = number.write_fmt(value);
        self.emit(ev, &number, kind);
        self.number = number;
    }
}

fn segment<'p>(path: &'p str, starts: &[usize], i: usize) -> &'p str {
    let end = starts.get(i + 1).copied().unwrap_or(path.len());
    &path[starts[i]..end]
}

fn dotted(path: &str, starts: &[usize], name: &mut String) {
    for i in 0..starts.len() {
        if i > 0 {
            name.push('.');
        }
        name.push_str(segment(path, starts, i));
    }
}

struct Node<'s> {
    st: &'s mut Flattener,
    ev: &'s mut Event,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.st.emit(self.ev, v, ValueKind::Str);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.st.emit_number(self.ev, format_args!("{v}"), ValueKind::Int);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.st.emit_number(self.ev, format_args!("{v}"), ValueKind::Int);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.st.emit_number(self.ev, format_args!("{v}"), ValueKind::Float);
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.st.emit(self.ev, if v { "true" } else { "false" }, ValueKind::Bool);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.st.emit(self.ev, "", ValueKind::Null);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.st.emit(self.ev, "", ValueKind::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Node { st, ev } = self;
        while seq.next_element_seed(Node { st: &mut *st, ev: &mut *ev })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Node { st, ev } = self;
        loop {
            let mark = st.path.len();
            st.starts.push(mark);
            if map.next_key_seed(Key { path: &mut st.path })?.is_none() {
                st.starts.pop();
                return Ok(());
            }
            map.next_value_seed(Node { st: &mut *st, ev: &mut *ev })?;
            st.starts.pop();
            st.path.truncate(mark);
        }
    }
}

/// Appends a map key to the path buffer without allocating.
struct Key<'p> {
    path: &'p mut String,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.path.push_str(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &str) -> (Vec<serde_json::Value>, Vec<Event>, FileReport) {
        let mut report = FileReport::default();
        let mut events = Vec::new();
        read(data.as_bytes(), &ReadOptions { max_record_bytes: 4096, ..Default::default() }, &mut report, &mut |e| {
            events.push(e.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
        (events.iter().map(|e| e.to_json()).collect(), events, report)
    }

    #[test]
    fn evtx_layout_is_named_like_sigma() {
        let doc = r##"{"Event":{"#attributes":{"xmlns":"x"},"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon","Guid":"{5770}"}},
          "EventID":{"#attributes":{"Qualifiers":16384},"#text":1},"TimeCreated":{"#attributes":{"SystemTime":"2025-11-26T05:11:27.927693Z"}},
          "EventRecordID":142649,"Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"host1","Security":{"#attributes":{"UserID":"S-1-5-18"}}},
          "EventData":{"CommandLine":"cmd.exe /c whoami","ProcessId":10116,"Data":["a","b"]},
          "UserData":{"EventXML":{"#attributes":{"xmlns":"y"},"Param1":"p1"}}}}"##;
        let (json, events, report) = read_all(doc);
        assert_eq!(report.events, 1);
        let e = &events[0];
        assert_eq!(e.source, SourceKind::Windows);
        assert_eq!(e.record, 142649);
        assert_eq!(e.timestamp.unwrap().to_string(), "2025-11-26T05:11:27.927693Z");
        let j = &json[0];
        assert_eq!(j["Provider_Name"], "Microsoft-Windows-Sysmon");
        assert_eq!(j["EventID"], 1);
        assert_eq!(j["EventID_Qualifiers"], 16384);
        assert_eq!(j["Security_UserID"], "S-1-5-18");
        assert_eq!(j["CommandLine"], "cmd.exe /c whoami");
        assert_eq!(j["ProcessId"], 10116);
        assert_eq!(j["Data"], serde_json::json!(["a", "b"]));
        assert_eq!(j["Param1"], "p1");
        assert!(j.get("xmlns").is_none());
    }

    #[test]
    fn jsonl_pretty_and_arrays() {
        let (json, _, report) = read_all("{\"a\":{\"b\":1}}\n{\"c\":\"x}\"}\n{\n  \"d\": [1, 2]\n}\n");
        assert_eq!(report.events, 3);
        assert_eq!(json[0]["a.b"], 1);
        assert_eq!(json[1]["c"], "x}");
        assert_eq!(json[2]["d"], serde_json::json!([1, 2]));
        let (json, _, report) = read_all("[{\"a\":1},\n{\"a\":2}]");
        assert_eq!(report.events, 2);
        assert_eq!(json[1]["a"], 2);
    }

    #[test]
    fn flat_windows_and_winlogbeat() {
        let (_, events, _) = read_all(r#"{"Channel":"Security","EventID":4688,"NewProcessName":"x"}"#);
        assert_eq!(events[0].source, SourceKind::Windows);
        let (j, events, _) = read_all(
            r#"{"@timestamp":"2021-08-24T02:13:00Z","winlog":{"channel":"Security","event_id":4688,"event_data":{"CommandLine":"whoami"}}}"#,
        );
        assert_eq!(events[0].source, SourceKind::Windows);
        assert_eq!(j[0]["CommandLine"], "whoami");
        assert_eq!(events[0].timestamp.unwrap().to_string(), "2021-08-24T02:13:00Z");
    }

    #[test]
    fn cloud_identity_logs_get_a_log_type() {
        let (_, events, _) = read_all(
            r#"{"published":"2021-08-24T03:00:00.000Z","eventType":"system.push.send_factor_verify_push","actor":{"alternateId":"a@b.c"}}"#,
        );
        assert_eq!(events[0].log_type, "okta");
        assert_eq!(events[0].timestamp.unwrap().to_string(), "2021-08-24T03:00:00Z");
        let (_, events, _) =
            read_all(r#"{"time":"2021-08-24T03:00:00Z","category":"SignInLogs","properties":{"userPrincipalName":"a@b.c"}}"#);
        assert_eq!(events[0].log_type, "azure_signinlogs");
    }

    #[test]
    fn a_collector_clock_is_learned_and_local_times_can_be_assumed() {
        // OTRF 2021: TimeCreated and @timestamp in local time (UTC-5) marked Z; Sysmon's UtcTime is true.
        let mut data = String::new();
        for k in 0..5 {
            data.push_str(&format!(
                "{{\"Hostname\":\"MXS01.x.local\",\"Channel\":\"Microsoft-Windows-Sysmon/Operational\",\"EventID\":1,\"SourceName\":\"Microsoft-Windows-Sysmon\",\
\"TimeCreated\":\"2021-03-14T01:40:1{k}.500Z\",\"@timestamp\":\"2021-03-14T01:40:1{k}.500Z\",\"UtcTime\":\"2021-03-14 06:40:1{k}.400\",\"Image\":\"x\"}}\n"
            ));
        }
        data.push_str(
            "{\"Hostname\":\"MXS01.x.local\",\"Channel\":\"MSExchange Management\",\"EventID\":1,\"SourceName\":\"MSExchange CmdletLogs\",\
\"TimeCreated\":\"2021-03-14T01:40:12.987Z\",\"@timestamp\":\"2021-03-14T01:40:12.987Z\",\"Message\":\"Cmdlet suceeded\"}\n",
        );
        let (_, events, report) = read_all(&data);
        assert_eq!(events[5].get("Computer"), Some("MXS01.x.local"));
        assert_eq!(events[5].get("Provider_Name"), Some("MSExchange CmdletLogs"));
        assert_eq!(events[5].timestamp.unwrap().to_string(), "2021-03-14T06:40:12.987000Z", "corrected by the learned +5 h");
        assert_eq!(events[0].timestamp.unwrap().to_string(), "2021-03-14T06:40:10.400000Z", "Sysmon's own UtcTime");
        assert!(report.warnings.iter().any(|w| w.contains("5 h 00 min behind")), "{:?}", report.warnings);

        // A time without a zone, in logs known to be local.
        let one = "{\"Channel\":\"Security\",\"EventID\":4624,\"TimeCreated\":\"2021-03-14 01:40:12\"}";
        let (_, events, report) = read_all(one);
        assert_eq!(events[0].timestamp.unwrap().to_string(), "2021-03-14T01:40:12Z");
        assert!(report.warnings.iter().any(|w| w.contains("no time zone")), "{:?}", report.warnings);
        let mut report = FileReport::default();
        let opts = ReadOptions { assume_utc_offset_secs: Some(-5 * 3600), ..Default::default() };
        let mut got = None;
        read(one.as_bytes(), &opts, &mut report, &mut |e| {
            got = e.timestamp;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(got.unwrap().to_string(), "2021-03-14T06:40:12Z");
    }

    #[test]
    fn hostile_json_is_skipped_and_counted() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(10_000));
        let data = format!("{{\"ok\":1}}\n{{\"bad\": }}\ngarbage line\n{big}\n{{\"ok\":2}}\n{{\"unterminated\": \"");
        let (json, _, report) = read_all(&data);
        assert_eq!(json.len(), 2);
        assert_eq!(report.skipped, 4, "{:?}", report.notes);
        assert!(report.notes[0].starts_with("line 2:"), "{:?}", report.notes);
        assert!(report.notes.iter().any(|n| n.contains("exceeds")));
        assert!(report.notes.iter().any(|n| n.contains("truncated")));
    }

    #[test]
    fn invalid_utf8_is_a_counted_skip() {
        let mut report = FileReport::default();
        let data: &[u8] = b"{\"a\":\"\xff\xfe\"}\n{\"a\":\"ok\"}\n";
        let mut n = 0;
        read(data, &ReadOptions::default(), &mut report, &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!((n, report.skipped), (1, 1));
    }
}

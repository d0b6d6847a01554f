//! The one event model every source produces and every detector reads.
//!
//! An [`Event`] is a flat, ordered list of `name = value` fields stored in one
//! text buffer, plus where it came from (file, record) and when it happened.
//! Readers fill a reused `Event` in place (`clear` then `push`), so a steady
//! stream of records allocates nothing per event. Field names keep the shape
//! Sigma rules use: EVTX `EventData` fields by their `Name`, `System` attributes
//! joined with `_` (`Provider_Name`), W3C columns by their `#Fields:` name, and
//! nested JSON by dotted path.
//!
//! Values are kept as text (numbers in their decimal form) with a [`ValueKind`]
//! so that matching works on one representation and output can restore types.

use std::fmt;
use std::ops::Range;

pub mod bytes;
pub mod entity;
pub mod merge;
pub mod roles;
pub mod spill;
pub mod text_hash;
pub mod time;
pub mod union_find;
pub mod wire;

pub use time::Timestamp;

/// Where an event came from: the format family, which decides how log sources map onto it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A Windows event: binary EVTX or the evtx JSON layout (`Event.System…`).
    Windows,
    /// A W3C extended log line (IIS, some proxies).
    W3c,
    /// An Exchange `#Fields:` CSV log (HttpProxy, Rps_Http, message tracking, …).
    ExchangeCsv,
    /// Any other JSON object.
    Json,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Windows => "windows",
            SourceKind::W3c => "w3c",
            SourceKind::ExchangeCsv => "exchange_csv",
            SourceKind::Json => "json",
        }
    }
}

/// Where an event's time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The event's own UTC time (EVTX `SystemTime`, Sysmon `UtcTime`, a zoned log time).
    Event,
    /// A collector's or forwarder's time (`@timestamp`, NXLog `EventTime`, ingest time):
    /// possibly late, possibly local time marked as UTC.
    Collector,
    /// A time written without a zone and not known to be UTC; read as UTC unless told otherwise.
    Unzoned,
}

/// The JSON type a value had in its source, so output can restore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Str,
    Int,
    Float,
    Bool,
    Null,
}

/// Where one field lies in the event's text: its name, a NUL byte, its value and a 0x01
/// byte (so three offsets, not two ranges: 16 bytes a field, not 20). With the separators
/// the text is, end to end, the bytes a finding id hashes ([`Event::field_stream`]).
#[derive(Clone, Debug)]
struct FieldSlot {
    start: u32,
    name_end: u32,
    value_end: u32,
    kind: ValueKind,
}

impl FieldSlot {
    /// The name's place in the event's text.
    #[inline]
    fn name(&self) -> Range<usize> {
        self.start as usize..self.name_end as usize
    }

    /// The value's place in the event's text (past the NUL that ends the name).
    #[inline]
    fn value(&self) -> Range<usize> {
        self.name_end as usize + 1..self.value_end as usize
    }
}

/// One field of an event, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub kind: ValueKind,
}

/// A normalised event. See the crate docs.
#[derive(Clone, Debug)]
pub struct Event {
    text: String,
    fields: Vec<FieldSlot>,
    /// Format family of the source.
    pub source: SourceKind,
    /// A sub-type named by the reader (e.g. the Exchange log type `HttpProxy`), empty if none.
    pub log_type: String,
    /// When it happened, if the record says.
    pub timestamp: Option<Timestamp>,
    /// Where `timestamp` came from, and so how far to trust it.
    pub time_source: TimeSource,
    /// EVTX `EventRecordID`, or the 1-based line number for line formats.
    pub record: u64,
    /// The original line for line-based formats, used by keyword searches (empty otherwise).
    pub raw: String,
    /// For an event read from inside an archive: the member's path in it (empty otherwise).
    pub member: String,
    /// The id of its field names' sequence ([`Event::set_layout`]), 0 if unknown.
    layout: u64,
    /// Whether a push was refused since the last clear (the fields are then not the
    /// reader's usual sequence, whatever it says).
    refused: bool,
}

/// A new layout id ([`Event::set_layout`]): never 0, never given twice in a process.
pub fn new_layout() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Default for Event {
    fn default() -> Self {
        Event::new(SourceKind::Json)
    }
}

/// The limit on one event's text, so a hostile record cannot grow a buffer without bound.
pub const MAX_EVENT_TEXT: usize = 64 * 1024 * 1024;

impl Event {
    pub fn new(source: SourceKind) -> Self {
        Event {
            text: String::with_capacity(1024),
            fields: Vec::with_capacity(32),
            source,
            log_type: String::new(),
            timestamp: None,
            time_source: TimeSource::Event,
            record: 0,
            raw: String::new(),
            member: String::new(),
            layout: 0,
            refused: false,
        }
    }

    /// A copy to keep once the scan is done (a detection's event): without the raw line,
    /// which only keyword searches read while the event is scanned (for a web or Exchange
    /// log, as many bytes again as the fields), and with room for exactly `extra_fields`
    /// more fields and `extra_text` more bytes (an indicator match's `ioc.*` fields), so
    /// that adding them does not double its buffers. A noisy rule keeps millions.
    pub fn kept(&self, extra_fields: usize, extra_text: usize) -> Event {
        let mut text = String::with_capacity(self.text.len() + extra_text + 2 * extra_fields);
        text.push_str(&self.text);
        let mut fields = Vec::with_capacity(self.fields.len() + extra_fields);
        fields.extend_from_slice(&self.fields);
        Event {
            text,
            fields,
            source: self.source,
            log_type: self.log_type.clone(),
            timestamp: self.timestamp,
            time_source: self.time_source,
            record: self.record,
            raw: String::new(),
            member: self.member.clone(),
            layout: self.layout,
            refused: self.refused,
        }
    }

    /// Empties the event for reuse, keeping its buffers.
    pub fn clear(&mut self, source: SourceKind) {
        self.text.clear();
        self.fields.clear();
        self.source = source;
        self.log_type.clear();
        self.timestamp = None;
        self.time_source = TimeSource::Event;
        self.record = 0;
        self.raw.clear();
        self.member.clear();
        self.layout = 0;
        self.refused = false;
    }

    /// Says that this event's field names, in order, are those of every other event given
    /// `id` (from [`new_layout`]): a reader gives one id to the records of one `#Fields:`
    /// block, so that code mapping names to something (rule fields, roles) can reuse its
    /// last mapping instead of comparing every name again. Call it after the last push: a
    /// later push forgets it, and it does not take if a push was refused since the last
    /// clear.
    pub fn set_layout(&mut self, id: u64) {
        self.layout = if self.refused { 0 } else { id };
    }

    /// The id given by [`Event::set_layout`], or 0 if the field names are not known to
    /// repeat another event's.
    #[inline]
    pub fn layout(&self) -> u64 {
        self.layout
    }

    /// Appends a field. Returns false (and adds nothing) if the event would exceed
    /// [`MAX_EVENT_TEXT`].
    pub fn push(&mut self, name: &str, value: &str, kind: ValueKind) -> bool {
        self.layout = 0;
        if self.text.len() + name.len() + value.len() + 2 > MAX_EVENT_TEXT {
            self.refused = true;
            return false;
        }
        let n0 = self.text.len() as u32;
        self.text.push_str(name);
        let n1 = self.text.len() as u32;
        self.text.push('\0');
        self.text.push_str(value);
        let v1 = self.text.len() as u32;
        self.text.push('\u{1}');
        self.fields.push(FieldSlot { start: n0, name_end: n1, value_end: v1, kind });
        true
    }

    /// Appends a string field.
    pub fn push_str(&mut self, name: &str, value: &str) -> bool {
        self.push(name, value, ValueKind::Str)
    }

    /// Appends a field whose name is built from parts (avoids a temporary string).
    pub fn push_parts(&mut self, name_parts: &[&str], value: &str, kind: ValueKind) -> bool {
        let name_len: usize = name_parts.iter().map(|p| p.len()).sum();
        self.layout = 0;
        if self.text.len() + name_len + value.len() + 2 > MAX_EVENT_TEXT {
            self.refused = true;
            return false;
        }
        let n0 = self.text.len() as u32;
        for p in name_parts {
            self.text.push_str(p);
        }
        let n1 = self.text.len() as u32;
        self.text.push('\0');
        self.text.push_str(value);
        let v1 = self.text.len() as u32;
        self.text.push('\u{1}');
        self.fields.push(FieldSlot { start: n0, name_end: n1, value_end: v1, kind });
        true
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The i-th field in source order.
    pub fn field(&self, i: usize) -> Field<'_> {
        self.field_at(&self.fields[i])
    }

    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        self.fields.iter().map(move |s| self.field_at(s))
    }

    #[inline]
    fn field_at(&self, s: &FieldSlot) -> Field<'_> {
        Field { name: &self.text[s.name()], value: &self.text[s.value()], kind: s.kind }
    }

    /// Each field's name and value as bytes, in source order: for hashing an event, which
    /// needs no text (so no check that a slice falls between characters).
    pub fn field_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let text = self.text.as_bytes();
        self.fields.iter().map(move |s| (&text[s.name()], &text[s.value()]))
    }

    /// Where each field's value lies in [`Event::field_stream`], in source order: for a
    /// scanner that searches the whole stream at once, then asks which value a hit is in.
    pub fn value_spans(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.fields.iter().map(FieldSlot::value)
    }

    /// Every field as its name, a NUL byte, its value and a 0x01 byte, end to end in source
    /// order: the bytes a finding id hashes after the rule and the record.
    #[inline]
    pub fn field_stream(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The first value of a field, by name compared ASCII case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        if self.layout == 0 {
            return self.get_by_scan(name).map(|(_, v)| v);
        }
        // Every record of a log has its fields in the layout's order, so a name asked of
        // one record is found at the same place in the next. Where each recent name was
        // found is kept per thread, keyed by the layout and the address of the name asked
        // for; since another name may later sit at that address, the name at the place is
        // compared before its value is given (an earlier field with the same name would
        // have been found first when the place was remembered).
        thread_local! {
            static FOUND: [std::cell::Cell<(u64, usize, u32)>; 16] =
                const { [const { std::cell::Cell::new((0, 0, 0)) }; 16] };
        }
        let at = name.as_ptr() as usize;
        let slot = (at >> 3 ^ at >> 9 ^ name.len()) & 15;
        let (layout, asked, index) = FOUND.with(|f| f[slot].get());
        if layout == self.layout
            && asked == at
            && let Some(s) = self.fields.get(index as usize)
            && let found = &self.text.as_bytes()[s.name()]
            && (found == name.as_bytes() || found.eq_ignore_ascii_case(name.as_bytes()))
        {
            return Some(&self.text[s.value()]);
        }
        let (index, value) = self.get_by_scan(name)?;
        FOUND.with(|f| f[slot].set((self.layout, at, index as u32)));
        Some(value)
    }

    /// [`Event::get`] by looking at every name in turn, and the place of the field found.
    fn get_by_scan(&self, name: &str) -> Option<(usize, &str)> {
        // Names compared as bytes: only the value found is sliced as text.
        // Lengths first, from the slots alone: most names differ in length from the one
        // sought, and are passed over without their bytes being read.
        let text = self.text.as_bytes();
        let len = name.len();
        let index = self
            .fields
            .iter()
            .position(|s| (s.name_end - s.start) as usize == len && text[s.name()].eq_ignore_ascii_case(name.as_bytes()))?;
        Some((index, &self.text[self.fields[index].value()]))
    }

    /// All values of a field (multi-valued fields such as unnamed EVTX `Data` repeat their name).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields().filter(move |f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value)
    }

    /// The host the event is about (the `Host` role; the server's address when no name is
    /// given).
    pub fn host(&self) -> Option<&str> {
        roles::Firsts::of(self).host()
    }

    /// Which log the event came from, for people and for counting independent sources:
    /// the channel of a Windows event, the Exchange log type, `IIS/W3C` for web logs, and
    /// otherwise the log type a reader named or `JSON`.
    pub fn log_name(&self) -> String {
        match self.source {
            SourceKind::Windows => self.get("Channel").filter(|c| !c.is_empty()).unwrap_or("Windows").to_string(),
            SourceKind::W3c => "IIS/W3C".into(),
            SourceKind::ExchangeCsv if !self.log_type.is_empty() => format!("Exchange {}", self.log_type),
            SourceKind::ExchangeCsv => "Exchange".into(),
            SourceKind::Json if !self.log_type.is_empty() => self.log_type.clone(),
            SourceKind::Json => "JSON".into(),
        }
    }

    /// The event as a JSON object. Repeated names become arrays; types are restored.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for f in self.fields() {
            let v = json_value(f);
            match map.get_mut(f.name) {
                None => {
                    map.insert(f.name.to_string(), v);
                }
                Some(serde_json::Value::Array(a)) if a.len() < 1 << 16 => a.push(v),
                Some(existing) => {
                    let prev = existing.take();
                    *existing = serde_json::Value::Array(vec![prev, v]);
                }
            }
        }
        serde_json::Value::Object(map)
    }
}

impl Event {
    /// [`Event::to_json`] as text, without building the JSON value first.
    pub fn json_text(&self) -> String {
        serde_json::to_string(&JsonFields(self)).unwrap_or_else(|_| self.to_json().to_string())
    }

    /// Whether no two fields share a name (compared as JSON keys are, exactly).
    fn names_distinct(&self) -> bool {
        let n = self.fields.len();
        if n <= 16 {
            return (1..n).all(|i| {
                let name = self.field(i).name;
                (0..i).all(|j| self.field(j).name != name)
            });
        }
        let mut names: Vec<&str> = self.fields().map(|f| f.name).collect();
        names.sort_unstable();
        names.windows(2).all(|w| w[0] != w[1])
    }
}

/// An event serialized as [`Event::to_json`] gives it, without building the JSON value:
/// fields in order, each with its restored type. An event that repeats a name (whose
/// values become arrays) is serialized through `to_json`.
pub struct JsonFields<'a>(pub &'a Event);

impl serde::Serialize for JsonFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let ev = self.0;
        if !ev.names_distinct() {
            return ev.to_json().serialize(s);
        }
        let mut map = s.serialize_map(Some(ev.len()))?;
        for f in ev.fields() {
            match f.kind {
                ValueKind::Str => map.serialize_entry(f.name, f.value)?,
                _ => map.serialize_entry(f.name, &json_value(f))?,
            }
        }
        map.end()
    }
}

fn json_value(f: Field<'_>) -> serde_json::Value {
    match f.kind {
        ValueKind::Str => serde_json::Value::String(f.value.to_string()),
        ValueKind::Int => f
            .value
            .parse::<i64>()
            .map(Into::into)
            .or_else(|_| f.value.parse::<u64>().map(Into::into))
            .unwrap_or_else(|_| serde_json::Value::String(f.value.to_string())),
        ValueKind::Float => f
            .value
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(f.value.to_string())),
        ValueKind::Bool => serde_json::Value::Bool(f.value == "true"),
        ValueKind::Null => serde_json::Value::Null,
    }
}

impl fmt::Display for Event {
    /// `name=value` pairs, values escaped, for human display.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields().enumerate() {
            if i > 0 {
                out.write_str(" ")?;
            }
            write!(out, "{}={}", escape_display(field.name), escape_display(field.value))?;
        }
        Ok(())
    }
}

/// A 128-bit hash as the 32 lowercase hex digits every stable id in Portcullis uses
/// (finding, correlation and message ids): what `format!("{:032x}")` gives, without the
/// formatting machinery on the hot path (an id is made for every match).
pub fn hex_id(h: u128) -> String {
    hex_id_bytes(h).iter().map(|&b| b as char).collect()
}

/// [`hex_id`]'s digits, without allocating (for hashing ids or writing them out).
pub fn hex_id_bytes(h: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in h.to_be_bytes().iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    out
}

/// The hash a [`hex_id`] was written from: `Some` only for exactly 32 lower-case hex
/// digits, so that writing it out again gives the same text.
pub fn parse_hex_id(s: &str) -> Option<u128> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// Makes an attacker-controlled string safe to print on a terminal or in a table:
/// control characters (including ESC, so no ANSI sequences), bidi overrides and
/// other invisible format characters become `\u{..}` escapes; `\n`, `\r`, `\t`
/// become their C escapes.
pub fn escape_display(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                use fmt::Write;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Makes a string safe as a CSV cell that a person may open in a spreadsheet: escaped as
/// for display ([`escape_display`]: control, bidi and invisible characters), and a cell a
/// spreadsheet would run as a formula (a leading `=`, `+`, `-` or `@`) prefixed with `'`,
/// unless it is a plain number (`-5`, `1.5`). Every column of every CSV Portcullis writes
/// goes through this; quoting is left to the CSV writer (or [`csv_field`]).
pub fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    let escaped = escape_display(s);
    if !escaped.starts_with(['=', '+', '-', '@']) || is_plain_number(&escaped) {
        return escaped;
    }
    std::borrow::Cow::Owned(format!("'{escaped}"))
}

/// [`csv_cell`], quoted per RFC 4180 when it holds a delimiter or a quote, for CSV written
/// by hand.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    let cell = csv_cell(s);
    if cell.contains([',', '"', ';', '\t']) {
        return std::borrow::Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")));
    }
    cell
}

/// Makes serialized JSON safe to display without changing what it means: the characters
/// [`escape_display`] escapes (which JSON serializers leave raw: DEL, C1 controls, bidi and
/// invisible format characters) become `\uXXXX` escapes.
pub fn escape_json_text(json: &str) -> std::borrow::Cow<'_, str> {
    // Outside strings a serializer writes only ASCII, and line breaks and tabs only as
    // whitespace (inside strings they are escaped already).
    let unsafe_char = |c: char| needs_escape(c) && !matches!(c, '\n' | '\r' | '\t');
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    // Text before `copied` is in `out` (when it exists); `at` is where to look on from.
    let (mut copied, mut at) = (0, 0);
    // Only the characters at suspect bytes are decoded: text with a `®` or an em dash in it
    // is otherwise let through at the speed of the byte test.
    while let Some(i) = next_suspect(bytes, at) {
        // A suspect byte is ASCII or a lead byte, so `i` starts a character.
        let Some(c) = json.get(i..).and_then(|rest| rest.chars().next()) else { break };
        at = i + c.len_utf8();
        if unsafe_char(c) {
            let out = out.get_or_insert_with(|| String::with_capacity(json.len() + 8));
            out.push_str(&json[copied..i]);
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                use fmt::Write;
                let _ = write!(out, "\\u{:04x}", u);
            }
            copied = at;
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(json),
        Some(mut out) => {
            out.push_str(&json[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a byte of UTF-8 text may begin a character [`needs_escape`] (other than the
/// three whitespace controls): an ASCII control or DEL, or the lead byte of U+0080..U+009F
/// (0xC2), U+2000..U+2FFF (0xE2) or U+F000..U+FFFF (0xEF). A byte-wise test the compiler
/// vectorises, so JSON that is plain (nearly all of it) is let through quickly: written with
/// `&` and `|`, not `&&` and `||`, whose branches kept it to a byte at a time (14
/// instructions a byte, not 1.6).
#[inline(always)]
fn may_start_escape(b: u8) -> bool {
    ((b < 0x20) & (b != b'\n') & (b != b'\r') & (b != b'\t')) | (b == 0x7f) | (b == 0xc2) | (b == 0xe2) | (b == 0xef)
}

/// The first byte at or after `from` that [`may_start_escape`]: tested 32 bytes at a time
/// without a branch per byte (the compiler vectorises the test).
fn next_suspect(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    let mut chunks = rest.chunks_exact(32);
    let mut offset = from;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |hit, &x| hit | may_start_escape(x)) {
            return chunk.iter().position(|&x| may_start_escape(x)).map(|p| offset + p);
        }
        offset += 32;
    }
    chunks.remainder().iter().position(|&x| may_start_escape(x)).map(|p| offset + p)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x200B..=0x200F   // zero-width and direction marks
            | 0x202A..=0x202E // bidi embeddings and overrides
            | 0x2066..=0x2069 // bidi isolates
            | 0xFEFF)
}

#[cfg(test)]
mod tests {
    #[test]
    fn field_bytes_and_the_field_stream_agree_with_the_fields() {
        let mut ev = super::Event::default();
        for (n, v) in [("a", ""), ("Naïve", "café"), ("", "x"), ("c-ip", "203.0.113.9")] {
            ev.push_str(n, v);
            let bytes: Vec<(Vec<u8>, Vec<u8>)> = ev.field_bytes().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            let fields: Vec<(Vec<u8>, Vec<u8>)> = ev.fields().map(|f| (f.name.as_bytes().to_vec(), f.value.as_bytes().to_vec())).collect();
            assert_eq!(bytes, fields);
            let mut stream = Vec::new();
            for f in ev.fields() {
                stream.extend_from_slice(f.name.as_bytes());
                stream.push(0);
                stream.extend_from_slice(f.value.as_bytes());
                stream.push(1);
            }
            assert_eq!(ev.field_stream(), &stream[..]);
        }
    }

    #[test]
    fn a_layout_holds_only_for_the_fields_it_was_set_on() {
        let id = super::new_layout();
        assert!(id != 0 && super::new_layout() != id);
        let mut ev = super::Event::default();
        ev.push_str("a", "1");
        ev.set_layout(id);
        assert_eq!(ev.layout(), id);
        assert_eq!(ev.kept(1, 1).layout(), id);
        ev.push_str("b", "2");
        assert_eq!(ev.layout(), 0, "a push after it forgets it");
        ev.set_layout(id);
        ev.clear(super::SourceKind::W3c);
        assert_eq!(ev.layout(), 0, "clear forgets it");
        // A refused push: the fields are not the reader's sequence, whatever it says.
        ev.push_str("a", &"x".repeat(super::MAX_EVENT_TEXT));
        ev.set_layout(id);
        assert_eq!(ev.layout(), 0);
        ev.clear(super::SourceKind::W3c);
        ev.set_layout(id);
        assert_eq!(ev.layout(), id);
    }

    #[test]
    fn a_field_found_by_its_remembered_place_is_the_one_a_scan_finds() {
        // Two layouts with the same names in other orders, repeated names, names that
        // differ only in case; events of one layout take turns with those of the other
        // and with events of no layout.
        let layouts: [&[&str]; 3] =
            [&["date", "c-ip", "s-ip", "cs-uri-stem", "C-IP"], &["s-ip", "date", "c-ip", "cs-uri-stem"], &["c-ip", "c-ip", "x"]];
        let ids: Vec<u64> = layouts.iter().map(|_| super::new_layout()).collect();
        let asked = ["c-ip", "C-IP", "s-ip", "cs-uri-stem", "CS-URI-STEM", "date", "x", "absent", "c-i"];
        // One buffer whose bytes change in place: the same address asks for other names.
        let mut reused = String::with_capacity(16);
        let mut seed = 3u64;
        for round in 0..3000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let which = (seed >> 33) as usize % (layouts.len() + 1);
            let mut ev = super::Event::default();
            let names: &[&str] = layouts.get(which).copied().unwrap_or(&["c-ip", "s-ip"]);
            for (k, n) in names.iter().enumerate() {
                ev.push_str(n, &format!("{n}={k}@{round}"));
            }
            if let Some(&id) = ids.get(which) {
                ev.set_layout(id);
            }
            let name = asked[(seed >> 45) as usize % asked.len()];
            reused.clear();
            reused.push_str(name);
            let expected = ev.get_by_scan(name).map(|(_, v)| v.to_string());
            assert_eq!(ev.get(name).map(str::to_string), expected, "{name} in layout {which}");
            assert_eq!(ev.get(&reused).map(str::to_string), expected, "{name} asked from a reused buffer, layout {which}");
        }
    }
    #[test]
    fn a_field_slot_is_three_offsets_and_a_kind() {
        assert_eq!(std::mem::size_of::<super::FieldSlot>(), 16);
    }

    #[test]
    fn a_kept_copy_is_the_event_without_its_raw_line_or_spare_room() {
        let mut ev = super::Event::new(super::SourceKind::W3c);
        // A reader's event is reused, and keeps the room of the largest record it has read.
        ev.push_str("cs-uri-query", &"q".repeat(100_000));
        ev.clear(super::SourceKind::W3c);
        ev.push_str("c-ip", "203.0.113.9");
        ev.push("sc-status", "200", super::ValueKind::Int);
        ev.log_type = "W3SVC1".into();
        ev.member = "logs/u_ex2206.log".into();
        ev.record = 7;
        ev.timestamp = Some(super::Timestamp(1_600_000_000_000_000));
        ev.raw = "2022-06-01 10:00:00 203.0.113.9 200".into();
        let mut kept = ev.kept(1, 16);
        assert!(kept.raw.is_empty());
        assert!(kept.text.capacity() < 1024, "{}", kept.text.capacity());
        let fields = |e: &super::Event| e.fields().map(|f| (f.name.to_string(), f.value.to_string(), f.kind)).collect::<Vec<_>>();
        assert_eq!(fields(&kept), fields(&ev));
        assert_eq!(
            (kept.source, &kept.log_type, &kept.member, kept.record, kept.timestamp, kept.time_source),
            (ev.source, &ev.log_type, &ev.member, ev.record, ev.timestamp, ev.time_source)
        );
        kept.push_str("ioc.value", "203.0.113.9");
        assert_eq!(kept.get("ioc.value"), Some("203.0.113.9"));
        assert_eq!(kept.get("c-ip"), Some("203.0.113.9"));
    }

    #[test]
    fn hex_id_is_the_formatted_hash() {
        for h in [0u128, 1, 0xdead_beef, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(super::hex_id(h), format!("{h:032x}"));
            assert_eq!(super::parse_hex_id(&super::hex_id(h)), Some(h));
            // Sorting ids as text sorts them as numbers (correlation inputs rely on it).
            assert_eq!(super::hex_id(h).cmp(&super::hex_id(h / 3)), h.cmp(&(h / 3)));
        }
        for bad in [
            "",
            "0",
            "e53ae24f35d6af2beea2236946d254b",
            "E53AE24F35D6AF2BEEA2236946D254B0",
            "+53ae24f35d6af2beea2236946d254b0",
            "e53ae24f35d6af2beea2236946d254b0 ",
        ] {
            assert_eq!(super::parse_hex_id(bad), None, "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut e = Event::new(SourceKind::Windows);
        e.push("EventID", "4688", ValueKind::Int);
        e.push_str("CommandLine", "cmd.exe /c whoami");
        e.push_parts(&["Provider", "_", "Name"], "Microsoft-Windows-Security-Auditing", ValueKind::Str);
        assert_eq!(e.len(), 3);
        assert_eq!(e.get("commandline"), Some("cmd.exe /c whoami"));
        assert_eq!(e.get("Provider_Name"), Some("Microsoft-Windows-Security-Auditing"));
        assert_eq!(e.get("CommandLin"), None, "a prefix is not the name");
        e.push_str("COMMANDLINE", "second");
        assert_eq!(e.get("CommandLine"), Some("cmd.exe /c whoami"), "the first of repeated names");
        let j = e.to_json();
        assert_eq!(j["EventID"], serde_json::json!(4688));
        e.clear(SourceKind::W3c);
        assert!(e.is_empty());
        assert_eq!(e.source, SourceKind::W3c);
    }

    #[test]
    fn repeated_names_become_arrays() {
        let mut e = Event::default();
        e.push_str("Data", "a");
        e.push_str("Data", "b");
        e.push_str("Data", "c");
        assert_eq!(e.to_json()["Data"], serde_json::json!(["a", "b", "c"]));
        assert_eq!(e.get_all("data").collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn csv_cells_are_escaped_and_guarded() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("+cmd|' /C calc'!A0"), "'+cmd|' /C calc'!A0");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("-1634567890123"), "-1634567890123");
        assert_eq!(csv_cell("-1.5"), "-1.5");
        assert_eq!(csv_cell("-1."), "'-1.");
        // Control characters never reach the file, and cannot hide a formula behind them.
        assert_eq!(csv_cell("\t=1+1"), "\\t=1+1");
        assert_eq!(csv_cell("a\x1b[31mb\r\nc\u{202e}"), "a\\u{1b}[31mb\\r\\nc\\u{202e}");
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
        assert_eq!(csv_field("x"), "x");
        let json = serde_json::json!({"v": "a\u{202e}b\u{7f}c\nd"}).to_string();
        let safe = escape_json_text(&json);
        assert_eq!(safe, r#"{"v":"a\u202eb\u007fc\nd"}"#);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap()["v"], "a\u{202e}b\u{7f}c\nd");
        let pretty = serde_json::to_string_pretty(&serde_json::json!({"v": ["\u{1b}\u{9b}"]})).unwrap();
        let safe = escape_json_text(&pretty);
        assert_eq!(safe, "{\n  \"v\": [\n    \"\\u001b\\u009b\"\n  ]\n}");
    }

    #[test]
    fn the_byte_prefilter_misses_no_character_that_needs_escaping() {
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            if needs_escape(c) && !matches!(c, '\n' | '\r' | '\t') {
                let mut buf = [0u8; 4];
                let first = c.encode_utf8(&mut buf).as_bytes()[0];
                assert!(may_start_escape(first), "{c:?}");
            }
        }
        // Text with a lead byte but nothing to escape is let through unchanged.
        assert!(matches!(escape_json_text("{\"v\":\"\u{2019}\u{e9}\u{fe00}\"}"), std::borrow::Cow::Borrowed(_)));
    }

    /// Escaping from suspect byte to suspect byte gives what escaping every character does,
    /// wherever the characters fall against the 32-byte blocks of the byte test.
    #[test]
    fn json_text_is_escaped_as_character_by_character() {
        fn each_character(json: &str) -> String {
            let mut out = String::new();
            for c in json.chars() {
                if needs_escape(c) && !matches!(c, '\n' | '\r' | '\t') {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        let pieces = [
            "a", "\"", "®", "\u{2014}", "\u{202e}", "\u{7f}", "\u{1b}", "\u{9b}", "\n", "\t", "\u{feff}", "\u{fe00}", "€", "😀", "\u{200b}",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let mut text = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 90) as usize;
            let mut r = seed;
            for _ in 0..len {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Mostly plain letters, so that suspects fall at every offset of a block.
                let k = (r >> 33) as usize % (pieces.len() * 4);
                text.push_str(pieces.get(k).copied().unwrap_or("x"));
            }
            let escaped = escape_json_text(&text);
            assert_eq!(escaped, each_character(&text), "{text:?}");
            assert_eq!(matches!(escaped, std::borrow::Cow::Borrowed(_)), escaped == text);
        }
    }

    #[test]
    fn json_text_is_to_json_written_out() {
        let mut e = Event::new(SourceKind::Windows);
        e.push_str("Zeta", "z \"quoted\" \u{202e}");
        e.push("EventID", "4688", ValueKind::Int);
        e.push("Big", "18446744073709551615", ValueKind::Int);
        e.push("NotInt", "12x", ValueKind::Int);
        e.push("Ratio", "0.25", ValueKind::Float);
        e.push("Inf", "inf", ValueKind::Float);
        e.push("Flag", "true", ValueKind::Bool);
        e.push("Nothing", "", ValueKind::Null);
        e.push_str("alpha", "");
        e.push_str("ALPHA", "case differs, so a distinct key");
        assert_eq!(e.json_text(), e.to_json().to_string());
        // Repeated names (arrays), and more than sixteen fields, take the other paths.
        e.push_str("Zeta", "again");
        assert_eq!(e.json_text(), e.to_json().to_string());
        for i in 0..40 {
            e.push_str(&format!("f{i}"), "v");
        }
        assert_eq!(e.json_text(), e.to_json().to_string());
        let mut many = Event::default();
        for i in 0..40 {
            many.push_str(&format!("f{i}"), &i.to_string());
        }
        assert_eq!(many.json_text(), many.to_json().to_string());
        assert_eq!(Event::default().json_text(), "{}");
    }

    #[test]
    fn escapes_terminal_control() {
        assert_eq!(escape_display("plain"), "plain");
        assert_eq!(escape_display("a\x1b[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape_display("x\u{202e}y\nz"), "x\\u{202e}y\\nz");
    }
}

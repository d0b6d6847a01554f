//! XLSX worksheets as rows, streamed: shared strings are read once (bounded), each sheet's
//! XML is read event by event, so a million-row sheet never sits in memory.

use std::io::{self, BufReader, Read, Seek};

use portcullis_sources::layouts::xml::push_ref;
use quick_xml::events::Event;
use zip::ZipArchive;

use crate::table::{Row, RowSource};

/// Limits on a workbook's shared strings (hostile workbooks must not exhaust memory): their
/// text, and their count (a string costs 4 bytes of index however short, so a small file of
/// millions of empty strings is bounded too).
const MAX_SHARED_BYTES: usize = 512 << 20;
pub const MAX_SHARED_STRINGS: usize = 8 << 20;
const MAX_COLUMNS: usize = 16_384;

/// A workbook's shared strings, end to end in one buffer.
#[derive(Debug, Default)]
pub struct SharedStrings {
    text: String,
    ends: Vec<u32>,
}

impl SharedStrings {
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..end)
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }
}

impl<S: AsRef<str>> FromIterator<S> for SharedStrings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = SharedStrings::default();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

/// Why a workbook's shared strings were not read.
#[derive(Debug)]
pub enum SharedStringsError {
    /// More than the limits allow: the workbook may be fine, but is not read whole.
    OverLimit(String),
    Malformed(String),
}

impl std::fmt::Display for SharedStringsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedStringsError::OverLimit(why) => write!(f, "not read: {why}"),
            SharedStringsError::Malformed(why) => write!(f, "malformed workbook: {why}"),
        }
    }
}

pub fn is_workbook<R: Read + Seek>(a: &ZipArchive<R>) -> bool {
    a.index_for_name("xl/workbook.xml").is_some()
}

/// The worksheet entries, in sheet order.
pub fn sheet_names<R: Read + Seek>(a: &ZipArchive<R>) -> Vec<String> {
    let mut v: Vec<String> = a
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.to_string()))
        .filter(|n| n.starts_with("xl/worksheets/") && n.ends_with(".xml") && !n[14..].contains('/'))
        .collect();
    v.sort_by_key(|n| (n.len(), n.clone()));
    v
}

pub fn shared_strings<R: Read + Seek>(a: &mut ZipArchive<R>) -> Result<SharedStrings, SharedStringsError> {
    use SharedStringsError::{Malformed, OverLimit};
    let Some(i) = a.index_for_name("xl/sharedStrings.xml") else { return Ok(SharedStrings::default()) };
    let f = a.by_index(i).map_err(|e| Malformed(format!("sharedStrings.xml: {e}")))?;
    let mut r = quick_xml::Reader::from_reader(BufReader::new(f.take(MAX_SHARED_BYTES as u64 + 1)));
    let mut buf = Vec::new();
    let mut out = SharedStrings::default();
    let mut cur = String::new();
    let mut in_t = false;
    let mut in_si = false;
    loop {
        match r.read_event_into(&mut buf) {
            Ok(Event::Start(e)) if e.local_name().as_ref() == "si" => {
                cur.clear();
                in_si = true;
            }
            Ok(Event::Empty(e)) if e.local_name().as_ref() == "si" => {
                if out.len() >= MAX_SHARED_STRINGS {
                    return Err(OverLimit(format!("shared strings over the limit of {MAX_SHARED_STRINGS}")));
                }
                out.push("");
            }
            Ok(Event::Start(e)) if e.local_name().as_ref() == "t" => in_t = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == "t" => in_t = false,
            Ok(Event::End(e)) if e.local_name().as_ref() == "si" => {
                in_si = false;
                if out.text.len() + cur.len() > MAX_SHARED_BYTES {
                    return Err(OverLimit(format!("shared strings over the limit of {} MiB of text", MAX_SHARED_BYTES >> 20)));
                }
                if out.len() >= MAX_SHARED_STRINGS {
                    return Err(OverLimit(format!("shared strings over the limit of {MAX_SHARED_STRINGS}")));
                }
                out.push(&cur);
            }
            Ok(Event::Text(t)) if in_t => cur.push_str(&t.xml10_content()),
            Ok(Event::CData(t)) if in_t => cur.push_str(&t),
            Ok(Event::GeneralRef(e)) if in_t => push_ref(&e, &mut cur),
            Ok(Event::Eof) if in_si => return Err(Malformed("sharedStrings.xml ends inside a string (truncated)".into())),
            Ok(Event::Eof) => break,
            Err(e) => return Err(Malformed(format!("sharedStrings.xml at byte {}: {e}", r.buffer_position()))),
            _ => {}
        }
        if in_si && cur.len() > MAX_SHARED_BYTES {
            return Err(OverLimit(format!("shared strings over the limit of {} MiB of text", MAX_SHARED_BYTES >> 20)));
        }
        buf.clear();
    }
    Ok(out)
}

/// Column index of a cell reference such as `AB12`.
fn column_of(r: &[u8]) -> Option<usize> {
    let mut c = 0usize;
    let mut any = false;
    for &b in r {
        if b.is_ascii_alphabetic() {
            c = c.checked_mul(26)?.checked_add((b.to_ascii_uppercase() - b'A' + 1) as usize)?;
            any = true;
        } else {
            break;
        }
    }
    (any && c >= 1).then(|| c - 1)
}

/// Longest tag or cell text kept from a worksheet.
const MAX_TOKEN: usize = 1 << 20;

/// One worksheet's rows. Worksheet XML is a narrow, regular format read here by a small
/// tokenizer (tags by `memchr`, the `r` and `t` attributes of cells, entity references),
/// several times faster than a general XML reader on the millions of cells a register
/// holds. Anything unexpected is skipped, never trusted: bounds on every tag and text.
pub struct SheetRows<'s, R: Read> {
    input: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    shared: &'s SharedStrings,
    rows: u64,
    pub bad_cells: u64,
    pub bad_tokens: u64,
    text: Vec<u8>,
}

enum Token {
    Open { name: &'static str, empty: bool },
    Close(&'static str),
    Text,
    Eof,
}

/// The elements that matter; everything else is "other".
fn element(name: &[u8]) -> &'static str {
    let local = match memchr::memrchr(b':', name) {
        Some(i) => &name[i + 1..],
        None => name,
    };
    match local {
        b"row" => "row",
        b"c" => "c",
        b"v" => "v",
        b"t" => "t",
        b"is" => "is",
        b"sheetData" => "sheetData",
        _ => "other",
    }
}

impl<'s, R: Read> SheetRows<'s, R> {
    pub fn new(input: R, shared: &'s SharedStrings) -> Self {
        SheetRows { input, buf: Vec::new(), pos: 0, eof: false, shared, rows: 0, bad_cells: 0, bad_tokens: 0, text: Vec::new() }
    }

    /// Makes at least `want` bytes from `pos` available if the input has them.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.buf.len() - self.pos < want && !self.eof {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + 256 * 1024, 0);
            let n = loop {
                match self.input.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// Finds `needle` from `pos + from`, reading more as needed, within MAX_TOKEN.
    fn find(&mut self, needle: &[u8], from: usize) -> io::Result<Option<usize>> {
        let mut searched = from;
        loop {
            let hay = &self.buf[self.pos..];
            let start = searched.min(hay.len());
            let found =
                if needle.len() == 1 { memchr::memchr(needle[0], &hay[start..]) } else { memchr::memmem::find(&hay[start..], needle) };
            if let Some(i) = found {
                return Ok(Some(start + i));
            }
            if self.eof || hay.len() > MAX_TOKEN {
                return Ok(None);
            }
            searched = hay.len().saturating_sub(needle.len() - 1);
            let want = hay.len() + 1;
            self.fill(want)?;
        }
    }

    /// Reads the next token; text goes (unescaped) into `self.text`, the attributes of an
    /// opening `c` into `r`/`t`.
    fn next_token(&mut self, col: &mut Option<usize>, kind: &mut [u8; 16], kind_len: &mut usize) -> io::Result<Token> {
        self.fill(1)?;
        if self.pos >= self.buf.len() {
            return Ok(Token::Eof);
        }
        if self.buf[self.pos] != b'<' {
            let end = self.find(b"<", 0)?;
            let end = match end {
                Some(e) => e,
                None if self.eof => self.buf.len() - self.pos,
                None => {
                    // Text past the bound: drop it.
                    self.bad_tokens += 1;
                    self.pos = self.buf.len();
                    return Ok(Token::Text);
                }
            };
            self.text.clear();
            unescape(&self.buf[self.pos..self.pos + end], &mut self.text);
            self.pos += end;
            return Ok(Token::Text);
        }
        if self.buf[self.pos..].starts_with(b"<![CDATA[") || {
            self.fill(9)?;
            self.buf[self.pos..].starts_with(b"<![CDATA[")
        } {
            let Some(end) = self.find(b"]]>", 9)? else {
                self.bad_tokens += 1;
                self.pos = self.buf.len();
                return Ok(Token::Eof);
            };
            self.text.clear();
            self.text.extend_from_slice(&self.buf[self.pos + 9..self.pos + end]);
            self.pos += end + 3;
            return Ok(Token::Text);
        }
        let Some(gt) = self.find(b">", 1)? else {
            self.bad_tokens += 1;
            self.pos = self.buf.len();
            return Ok(Token::Eof);
        };
        let tag = &self.buf[self.pos + 1..self.pos + gt];
        let token = match tag.first() {
            Some(b'/') => Token::Close(element(tag[1..].split(|b| b.is_ascii_whitespace()).next().unwrap_or(b""))),
            Some(b'?') | Some(b'!') => Token::Open { name: "other", empty: true },
            _ => {
                let empty = tag.last() == Some(&b'/');
                let body = if empty { &tag[..tag.len() - 1] } else { tag };
                let name_end = body.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(body.len());
                let name = element(&body[..name_end]);
                if name == "c" {
                    *col = None;
                    *kind_len = 0;
                    let mut rest = &body[name_end..];
                    while let Some(eq) = memchr::memchr(b'=', rest) {
                        let key = rest[..eq].trim_ascii();
                        let after = &rest[eq + 1..];
                        let Some(q) = after.iter().position(|b| *b == b'"' || *b == b'\'') else { break };
                        let quote = after[q];
                        let Some(close) = memchr::memchr(quote, &after[q + 1..]) else { break };
                        let value = &after[q + 1..q + 1 + close];
                        match key {
                            b"r" => *col = column_of(value),
                            b"t" => {
                                let n = value.len().min(kind.len());
                                kind[..n].copy_from_slice(&value[..n]);
                                *kind_len = n;
                            }
                            _ => {}
                        }
                        rest = &after[q + 1 + close + 1..];
                    }
                }
                Token::Open { name, empty }
            }
        };
        self.pos += gt + 1;
        Ok(token)
    }
}

/// Appends `raw` with XML entity references resolved (unknown ones dropped).
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(amp) = memchr::memchr(b'&', &raw[i..]) {
        out.extend_from_slice(&raw[i..i + amp]);
        let rest = &raw[i + amp + 1..];
        let Some(semi) = rest.iter().take(12).position(|b| *b == b';') else {
            out.push(b'&');
            i += amp + 1;
            continue;
        };
        let name = &rest[..semi];
        let ch = match name {
            b"amp" => Some('&'),
            b"lt" => Some('<'),
            b"gt" => Some('>'),
            b"quot" => Some('"'),
            b"apos" => Some('\''),
            _ if name.first() == Some(&b'#') => {
                let s = std::str::from_utf8(&name[1..]).unwrap_or("");
                let n = match s.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                };
                n.and_then(char::from_u32)
            }
            _ => None,
        };
        if let Some(c) = ch {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        i += amp + 1 + semi + 1;
    }
    out.extend_from_slice(&raw[i..]);
}

impl<R: Read> RowSource for SheetRows<'_, R> {
    fn next_row(&mut self, row: &mut Row) -> io::Result<bool> {
        row.clear();
        let mut in_row = false;
        let mut col = 0usize;
        let mut cell_col: Option<usize> = None;
        let mut kind = [0u8; 16];
        let mut kind_len = 0usize;
        let mut in_value = false;
        let mut value: Vec<u8> = Vec::new();
        loop {
            let tok = self.next_token(&mut cell_col, &mut kind, &mut kind_len)?;
            match tok {
                Token::Open { name: "row", empty } => {
                    in_row = true;
                    col = 0;
                    if empty {
                        self.rows += 1;
                        return Ok(true);
                    }
                }
                Token::Close("row") if in_row => {
                    self.rows += 1;
                    return Ok(true);
                }
                Token::Open { name: "c", empty } if in_row => {
                    if let Some(c) = cell_col {
                        col = c;
                    }
                    value.clear();
                    if empty {
                        col += 1;
                    }
                }
                Token::Open { name: "v" | "t", empty: false } => in_value = true,
                Token::Close("v" | "t") => in_value = false,
                Token::Text if in_value && value.len() + self.text.len() <= MAX_TOKEN => {
                    value.extend_from_slice(&self.text);
                }
                Token::Close("c") if in_row => {
                    let v = String::from_utf8_lossy(&value);
                    if col < MAX_COLUMNS {
                        if &kind[..kind_len] == b"s" {
                            match v.trim().parse::<usize>().ok().and_then(|i| self.shared.get(i)) {
                                Some(s) => row.set(col, s),
                                None => {
                                    self.bad_cells += 1;
                                    row.set(col, "");
                                }
                            }
                        } else {
                            row.set(col, &v);
                        }
                    } else {
                        self.bad_cells += 1;
                    }
                    col += 1;
                }
                Token::Eof => return Ok(in_row && !row.is_empty()),
                _ => {}
            }
        }
    }

    fn position(&self) -> u64 {
        self.rows
    }

    fn skipped(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        if self.bad_cells > 0 {
            v.push(("cells with a missing shared string or past column XFD".into(), self.bad_cells));
        }
        if self.bad_tokens > 0 {
            v.push((format!("worksheet tags or texts unterminated or longer than {} bytes", MAX_TOKEN), self.bad_tokens));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sheet_tokenizer_reads_cells_entities_and_gaps() {
        let xml = br#"<?xml version="1.0"?><x:worksheet xmlns:x="m"><x:sheetData><x:row r="1"><x:c r="A1" t="inlineStr"><x:is><x:t>Tom &amp; Jo&#233;</x:t></x:is></x:c><x:c r="C1" t="s"><x:v>1</x:v></x:c><x:c r="D1"/></x:row><row/><row><c t="str"><v><![CDATA[a<b]]></v></c></row></x:sheetData></x:worksheet>"#;
        let shared: super::SharedStrings = ["zero", "one"].into_iter().collect();
        let mut rows = super::SheetRows::new(&xml[..], &shared);
        let mut r = crate::table::Row::default();
        use crate::table::RowSource;
        assert!(rows.next_row(&mut r).unwrap());
        assert_eq!(r.cells().collect::<Vec<_>>(), vec!["Tom & Joé", "", "one"]);
        assert!(rows.next_row(&mut r).unwrap());
        assert_eq!(r.len(), 0);
        assert!(rows.next_row(&mut r).unwrap());
        assert_eq!(r.get(0), "a<b");
        assert!(!rows.next_row(&mut r).unwrap());
    }

    #[test]
    fn cell_references() {
        assert_eq!(super::column_of(b"A1"), Some(0));
        assert_eq!(super::column_of(b"Z9"), Some(25));
        assert_eq!(super::column_of(b"AA3"), Some(26));
        assert_eq!(super::column_of(b"12"), None);
    }
}

//! XLSX worksheets as rows, streamed: shared strings are read once (bounded), each sheet's
//! XML is read event by event, so a million-row sheet never sits in memory.

use std::io::{self, BufRead, BufReader, Read, Seek};

use quick_xml::events::Event;
use zip::ZipArchive;

use crate::table::{Row, RowSource};

/// Limits on a workbook's shared strings (hostile workbooks must not exhaust memory).
const MAX_SHARED_BYTES: usize = 512 << 20;
const MAX_COLUMNS: usize = 16_384;

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

pub fn shared_strings<R: Read + Seek>(a: &mut ZipArchive<R>) -> Result<Vec<String>, String> {
    let Some(i) = a.index_for_name("xl/sharedStrings.xml") else { return Ok(Vec::new()) };
    let f = a.by_index(i).map_err(|e| format!("sharedStrings.xml: {e}"))?;
    let mut r = quick_xml::Reader::from_reader(BufReader::new(f.take(MAX_SHARED_BYTES as u64 + 1)));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_t = false;
    let mut in_si = false;
    let mut total = 0usize;
    loop {
        match r.read_event_into(&mut buf) {
            Ok(Event::Start(e)) if e.local_name().as_ref() == "si" => {
                cur.clear();
                in_si = true;
            }
            Ok(Event::Start(e)) if e.local_name().as_ref() == "t" => in_t = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == "t" => in_t = false,
            Ok(Event::End(e)) if e.local_name().as_ref() == "si" => {
                in_si = false;
                total += cur.len();
                if total > MAX_SHARED_BYTES {
                    return Err(format!("shared strings exceed {} MiB", MAX_SHARED_BYTES >> 20));
                }
                out.push(std::mem::take(&mut cur));
            }
            Ok(Event::Text(t)) if in_t => cur.push_str(&t.xml10_content()),
            Ok(Event::CData(t)) if in_t => cur.push_str(&t),
            Ok(Event::GeneralRef(e)) if in_t => push_ref(&e, &mut cur),
            Ok(Event::Eof) if in_si => return Err("sharedStrings.xml ends inside a string (truncated)".into()),
            Ok(Event::Eof) => break,
            Err(e) => return Err(format!("sharedStrings.xml at byte {}: {e}", r.buffer_position())),
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn push_ref(e: &quick_xml::events::BytesRef<'_>, out: &mut String) {
    if let Ok(Some(c)) = e.resolve_char_ref() {
        out.push(c);
        return;
    }
    out.push_str(match e.as_ref() {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => "",
    });
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

/// One worksheet's rows.
pub struct SheetRows<'s, B: BufRead> {
    reader: quick_xml::Reader<B>,
    shared: &'s [String],
    buf: Vec<u8>,
    rows: u64,
    pub bad_cells: u64,
    done: bool,
}

impl<'s, B: BufRead> SheetRows<'s, B> {
    pub fn new(r: B, shared: &'s [String]) -> Self {
        SheetRows { reader: quick_xml::Reader::from_reader(r), shared, buf: Vec::new(), rows: 0, bad_cells: 0, done: false }
    }
}

impl<B: BufRead> RowSource for SheetRows<'_, B> {
    fn next_row(&mut self, row: &mut Row) -> io::Result<bool> {
        row.clear();
        if self.done {
            return Ok(false);
        }
        let mut in_row = false;
        let mut col = 0usize;
        let mut kind = Vec::new(); // the cell's `t` attribute
        let mut in_value = false;
        let mut value = String::new();
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("worksheet XML at byte {}: {e}", self.reader.buffer_position()))
            })?;
            match ev {
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "row" => {
                    in_row = true;
                    col = 0;
                    if self.buf.last() == Some(&b'/') {
                        // <row/>: an empty row.
                    }
                }
                Event::End(e) if e.local_name().as_ref() == "row" => {
                    self.rows += 1;
                    return Ok(true);
                }
                Event::Start(e) if in_row && e.local_name().as_ref() == "c" => {
                    kind.clear();
                    value.clear();
                    for a in e.attributes().flatten() {
                        match a.key.local_name().as_ref() {
                            "r" => {
                                if let Some(c) = column_of(a.value.as_bytes()) {
                                    col = c;
                                }
                            }
                            "t" => kind.extend_from_slice(a.value.as_bytes()),
                            _ => {}
                        }
                    }
                }
                Event::Empty(e) if in_row && e.local_name().as_ref() == "c" => col += 1,
                Event::Start(e) if matches!(e.local_name().as_ref(), "v" | "t") => in_value = true,
                Event::End(e) if matches!(e.local_name().as_ref(), "v" | "t") => in_value = false,
                Event::Text(t) if in_value => value.push_str(&t.xml10_content()),
                Event::GeneralRef(e) if in_value => push_ref(&e, &mut value),
                Event::End(e) if in_row && e.local_name().as_ref() == "c" => {
                    if col < MAX_COLUMNS {
                        if kind == b"s" {
                            match value.trim().parse::<usize>().ok().and_then(|i| self.shared.get(i)) {
                                Some(s) => row.set(col, s),
                                None => {
                                    self.bad_cells += 1;
                                    row.set(col, "");
                                }
                            }
                        } else {
                            row.set(col, &value);
                        }
                    } else {
                        self.bad_cells += 1;
                    }
                    col += 1;
                }
                Event::Eof => {
                    self.done = true;
                    return Ok(in_row && row.len() > 0);
                }
                _ => {}
            }
        }
    }

    fn position(&self) -> u64 {
        self.rows
    }

    fn skipped(&self) -> Vec<(String, u64)> {
        if self.bad_cells > 0 { vec![("cells with a missing shared string or past column XFD".into(), self.bad_cells)] } else { vec![] }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cell_references() {
        assert_eq!(super::column_of(b"A1"), Some(0));
        assert_eq!(super::column_of(b"Z9"), Some(25));
        assert_eq!(super::column_of(b"AA3"), Some(26));
        assert_eq!(super::column_of(b"12"), None);
    }
}

/// Writes a minimal one-sheet workbook (inline strings) row by row, streaming: for
/// synthetic data and tests.
pub struct WorkbookWriter<W: io::Write + Seek> {
    zip: zip::ZipWriter<W>,
    rows: u64,
    line: String,
}

impl<W: io::Write + Seek> WorkbookWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(w);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(true);
        let parts: [(&str, &str); 4] = [
            ("[Content_Types].xml", r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#),
            ("_rels/.rels", r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
            ("xl/workbook.xml", r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Register" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
            ("xl/_rels/workbook.xml.rels", r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#),
        ];
        for (name, body) in parts {
            z.start_file(name, opts).map_err(io::Error::other)?;
            z.write_all(body.as_bytes())?;
        }
        z.start_file("xl/worksheets/sheet1.xml", opts).map_err(io::Error::other)?;
        z.write_all(br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#)?;
        Ok(WorkbookWriter { zip: z, rows: 0, line: String::new() })
    }

    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> io::Result<()> {
        use std::fmt::Write as _;
        use std::io::Write;
        self.rows += 1;
        let r = self.rows;
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, "<row r=\"{r}\">");
        for (c, cell) in cells.iter().enumerate() {
            let cell = cell.as_ref();
            if cell.is_empty() {
                continue;
            }
            let mut col = Vec::new();
            let mut n = c + 1;
            while n > 0 {
                col.push(b'A' + ((n - 1) % 26) as u8);
                n = (n - 1) / 26;
            }
            col.reverse();
            let _ = write!(line, "<c r=\"{}{r}\" t=\"inlineStr\"><is><t>", String::from_utf8_lossy(&col));
            for ch in cell.chars() {
                match ch {
                    '&' => line.push_str("&amp;"),
                    '<' => line.push_str("&lt;"),
                    '>' => line.push_str("&gt;"),
                    c => line.push(c),
                }
            }
            line.push_str("</t></is></c>");
        }
        line.push_str("</row>");
        self.zip.write_all(line.as_bytes())
    }

    pub fn finish(mut self) -> io::Result<W> {
        use std::io::Write;
        self.zip.write_all(b"</sheetData></worksheet>")?;
        self.zip.finish().map_err(io::Error::other)
    }
}

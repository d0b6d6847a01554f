//! A minimal XLSX writer for synthetic registers and tests: one sheet of inline strings,
//! streamed row by row (the exposure scanner reads it like a workbook from Excel).

use std::io::{self, Seek};

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
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Register" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
            ),
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

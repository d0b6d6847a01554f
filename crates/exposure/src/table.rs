//! Tables from delimited text (any of `,` `\t` `;` `|`, RFC 4180 quoting, quoted line
//! breaks) and from spreadsheets, as one row type.

use std::io::{self, Read};

use portcullis_sources::quoted::QuoteState;

use crate::text::{MAX_RECORD, TextReader};

/// One row: the cell texts stored end to end.
#[derive(Default, Clone, Debug)]
pub struct Row {
    text: String,
    cells: Vec<(u32, u32)>,
    /// A record read but not yet split ([`RowSource::next_row_unsplit`]), and its delimiter.
    raw: String,
    unsplit: Option<u8>,
}

impl Row {
    /// Splits a record read by [`RowSource::next_row_unsplit`] into its cells (nothing to
    /// do for a row read whole): the costly part, done on the thread that uses the row.
    pub fn split_pending(&mut self) {
        if let Some(d) = self.unsplit.take() {
            let raw = std::mem::take(&mut self.raw);
            split_record(&raw, d, self);
            self.raw = raw;
        }
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
        self.unsplit = None;
    }
    pub fn len(&self) -> usize {
        self.cells.len()
    }
    /// Bytes of text the row holds now (split or not).
    pub fn size(&self) -> usize {
        if self.unsplit.is_some() { self.raw.len() } else { self.text.len() }
    }
    /// Bytes its buffers keep allocated.
    pub fn capacity(&self) -> usize {
        self.text.capacity() + self.raw.capacity() + self.cells.capacity() * std::mem::size_of::<(u32, u32)>()
    }
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
    /// True when every cell is blank.
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(|&(s, e)| self.text[s as usize..e as usize].trim().is_empty())
    }
    /// The cell at `i` (cells are stored trimmed); empty if the row is shorter.
    pub fn get(&self, i: usize) -> &str {
        self.cells.get(i).map(|&(s, e)| &self.text[s as usize..e as usize]).unwrap_or("")
    }
    pub fn push(&mut self, cell: &str) {
        let cell = cell.trim();
        let s = self.text.len() as u32;
        self.text.push_str(cell);
        self.cells.push((s, self.text.len() as u32));
    }
    /// Sets cell `i`, padding with empty cells (spreadsheets skip empty cells).
    pub fn set(&mut self, i: usize, cell: &str) {
        let cell = cell.trim();
        while self.cells.len() < i {
            let e = self.text.len() as u32;
            self.cells.push((e, e));
        }
        if i == self.cells.len() {
            self.push(cell);
        } else {
            let s = self.text.len() as u32;
            self.text.push_str(cell);
            self.cells[i] = (s, self.text.len() as u32);
        }
    }
    /// Closes the cell that began at `start`, trimming surrounding whitespace.
    fn end_cell(&mut self, start: u32) {
        let cell = &self.text[start as usize..];
        let lead = cell.len() - cell.trim_start().len();
        let kept = cell.trim().len();
        let s = start + lead as u32;
        self.cells.push((s, s + kept as u32));
    }

    pub fn cells(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// A source of rows: delimited text or a spreadsheet sheet.
pub trait RowSource {
    /// Reads the next row; false at the end.
    fn next_row(&mut self, row: &mut Row) -> io::Result<bool>;
    /// Reads the next row, possibly leaving it to be split by [`Row::split_pending`] (on
    /// another thread); by default, as [`RowSource::next_row`].
    fn next_row_unsplit(&mut self, row: &mut Row) -> io::Result<bool> {
        self.next_row(row)
    }
    /// Where the last row came from (line or row number), for messages.
    fn position(&self) -> u64;
    /// Rows skipped as unreadable (overlong, undecodable bytes), with the reason.
    fn skipped(&self) -> Vec<(String, u64)>;
}

pub const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

/// The delimiter that splits the sample lines most consistently into two or more cells,
/// or None if the text is not a table.
pub fn sniff_delimiter(lines: &[String]) -> Option<u8> {
    let lines: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    // One line is a sentence, not a table.
    if lines.len() < 2 {
        return None;
    }
    let mut best: Option<(u8, usize, usize)> = None; // (delimiter, lines agreeing, cells)
    for d in DELIMITERS {
        let mut counts: Vec<usize> = lines.iter().map(|l| count_outside_quotes(l, d)).collect();
        counts.sort_unstable();
        // The most common count among lines.
        let (mut mode, mut mode_n, mut k) = (0, 0, 0);
        while k < counts.len() {
            let c = counts[k];
            let n = counts[k..].iter().take_while(|&&x| x == c).count();
            if n > mode_n {
                (mode, mode_n) = (c, n);
            }
            k += n;
        }
        if mode == 0 || mode_n * 10 < lines.len() * 7 {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, n, cells)) => mode_n > n || (mode_n == n && mode + 1 > cells),
        };
        if better {
            best = Some((d, mode_n, mode + 1));
        }
    }
    best.map(|b| b.0)
}

fn count_outside_quotes(line: &str, d: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == d && !quoted {
            n += 1;
        }
    }
    n
}

/// Splits one record into cells. Returns false if a quoted cell is still open at the end
/// (the record continues on the next line).
pub fn split_record(line: &str, d: u8, row: &mut Row) -> bool {
    row.clear();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        // One cell.
        let start = row.text.len() as u32;
        if i < b.len() && b[i] == b'"' {
            i += 1;
            loop {
                match memchr::memchr(b'"', &b[i..]) {
                    None => {
                        row.text.push_str(&line[i..]);
                        return false;
                    }
                    Some(q) => {
                        row.text.push_str(&line[i..i + q]);
                        i += q + 1;
                        if i < b.len() && b[i] == b'"' {
                            row.text.push('"');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            // Text after the closing quote up to the delimiter is kept (lenient).
            let end = memchr::memchr(d, &b[i..]).map(|p| i + p).unwrap_or(b.len());
            row.text.push_str(&line[i..end]);
            i = end;
        } else {
            let end = memchr::memchr(d, &b[i..]).map(|p| i + p).unwrap_or(b.len());
            row.text.push_str(&line[i..end]);
            i = end;
        }
        row.end_cell(start);
        if i >= b.len() {
            return true;
        }
        i += 1; // the delimiter
        if i == b.len() {
            let e = row.text.len() as u32;
            row.cells.push((e, e));
            return true;
        }
    }
}

/// Rows of delimited text.
///
/// A quoted cell may run on over line breaks; a quote that is never closed does not
/// swallow the rest of the file: reading recovers at the next line that is a record of
/// its own (closed quotes, the header's number of cells), and every line of the broken
/// record is counted as lost with its position.
pub struct DelimitedRows<R: Read> {
    text: TextReader<R>,
    delimiter: u8,
    /// Lines read ahead for sniffing, returned first.
    pending: std::collections::VecDeque<String>,
    line: String,
    record: String,
    /// The line that ended a broken record, to be read again as a record of its own.
    retry: bool,
    /// Cells of the first record (the header, or the first row): what a record looks like.
    cells: Option<usize>,
    /// Lines lost to quotes that never closed, and the first few broken records' lines.
    pub lost_lines: u64,
    lost_at: Vec<(u64, u64)>,
    position: u64,
}

/// How many broken records' positions are named in the skip reason.
const NAMED_POSITIONS: usize = 5;

impl<R: Read> DelimitedRows<R> {
    pub fn new(text: TextReader<R>, delimiter: u8, pending: Vec<String>) -> Self {
        DelimitedRows {
            text,
            delimiter,
            pending: pending.into(),
            line: String::new(),
            record: String::new(),
            retry: false,
            cells: None,
            lost_lines: 0,
            lost_at: Vec::new(),
            position: 0,
        }
    }

    fn next_line(&mut self) -> io::Result<bool> {
        if let Some(l) = self.pending.pop_front() {
            self.line = l;
            self.position += 1;
            return Ok(true);
        }
        let ok = self.text.read_line(&mut self.line)?;
        self.position = self.text.line;
        Ok(ok)
    }

    fn lose(&mut self, first: u64, last: u64) {
        self.lost_lines += last + 1 - first;
        if self.lost_at.len() < NAMED_POSITIONS {
            self.lost_at.push((first, last));
        }
    }

    /// Whether `line` alone is a whole record like the others.
    fn is_record(&self, line: &str, row: &mut Row) -> bool {
        !QuoteState::of_line(line, self.delimiter).open && split_record(line, self.delimiter, row) && Some(row.len()) == self.cells
    }
}

impl<R: Read> RowSource for DelimitedRows<R> {
    /// A line that is a record by itself (no quote left open) is handed over as it is, once
    /// the first record has set how many cells a record has; anything else (a quoted cell
    /// over lines, a broken record) is read by [`RowSource::next_row`].
    fn next_row_unsplit(&mut self, row: &mut Row) -> io::Result<bool> {
        if self.cells.is_some() && !self.retry && self.pending.is_empty() {
            if !self.next_line()? {
                return Ok(false);
            }
            if !QuoteState::of_line(&self.line, self.delimiter).open {
                std::mem::swap(&mut row.raw, &mut self.line);
                row.unsplit = Some(self.delimiter);
                return Ok(true);
            }
            // Read again by next_row as the first line of a record.
            self.retry = true;
        }
        self.next_row(row)
    }

    fn next_row(&mut self, row: &mut Row) -> io::Result<bool> {
        'record: loop {
            if !std::mem::take(&mut self.retry) && !self.next_line()? {
                return Ok(false);
            }
            let mut quote = QuoteState::of_line(&self.line, self.delimiter);
            if !quote.open {
                split_record(&self.line, self.delimiter, row);
                self.cells.get_or_insert(row.len());
                return Ok(true);
            }
            // A quoted cell runs on: gather lines until it closes, or until it is clear that
            // it never will.
            let first = self.position;
            self.record.clear();
            self.record.push_str(&self.line);
            loop {
                if !self.next_line()? {
                    let last = self.position;
                    self.lose(first, last);
                    return Ok(false);
                }
                quote.scan(&self.line, self.delimiter);
                let fits = self.record.len() + 1 + self.line.len() <= MAX_RECORD;
                if fits {
                    self.record.push('\n');
                    self.record.push_str(&self.line);
                }
                if fits && !quote.open && !quote.stray {
                    split_record(&self.record, self.delimiter, row);
                    if self.cells.is_none_or(|n| n == row.len()) {
                        self.cells.get_or_insert(row.len());
                        return Ok(true);
                    }
                }
                let line = std::mem::take(&mut self.line);
                let alone = self.is_record(&line, row);
                self.line = line;
                if alone {
                    let last = self.position - 1;
                    self.lose(first, last);
                    self.retry = true;
                    continue 'record;
                }
                if !quote.open || !fits {
                    let last = self.position;
                    self.lose(first, last);
                    continue 'record;
                }
            }
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        if self.text.overlong > 0 {
            v.push((format!("records longer than {} bytes", MAX_RECORD), self.text.overlong));
        }
        if self.text.undecodable > 0 {
            v.push((format!("lines with bytes invalid in {}", self.text.encoding.name()), self.text.undecodable));
        }
        if self.lost_lines > 0 {
            let mut at: Vec<String> =
                self.lost_at.iter().map(|&(a, b)| if a == b { format!("line {a}") } else { format!("lines {a}-{b}") }).collect();
            if self.lost_lines > self.lost_at.iter().map(|&(a, b)| b + 1 - a).sum::<u64>() {
                at.push("…".into());
            }
            v.push((format!("lines of records whose quote never closed ({})", at.join(", ")), self.lost_lines));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(line: &str, d: u8) -> (Vec<String>, bool) {
        let mut r = Row::default();
        let done = split_record(line, d, &mut r);
        (r.cells().map(String::from).collect(), done)
    }

    #[test]
    fn quoting_and_delimiters() {
        assert_eq!(cells("a,b,,c", b','), (vec!["a".into(), "b".into(), "".into(), "c".into()], true));
        assert_eq!(cells("\"x, y\",\"say \"\"hi\"\"\",z,", b','), (vec!["x, y".into(), "say \"hi\"".into(), "z".into(), "".into()], true));
        assert_eq!(cells("a\tb;c", b'\t'), (vec!["a".into(), "b;c".into()], true));
        assert!(!cells("\"open, cell", b',').1);
    }

    #[test]
    fn delimiter_sniffing() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(sniff_delimiter(&s(&["a;b;c", "1;2;3", "x;\"y;z\";w"])), Some(b';'));
        assert_eq!(sniff_delimiter(&s(&["a\tb, c\td", "1\t2, 3\t4"])), Some(b'\t'));
        assert_eq!(sniff_delimiter(&s(&["a|b", "c|d"])), Some(b'|'));
        assert_eq!(sniff_delimiter(&s(&["Dear member,", "thank you for your letter.", "Regards"])), None);
    }
}

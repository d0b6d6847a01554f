//! The quote state of a delimited (RFC 4180) record read line by line: a quote opens a
//! value only at its start, `""` inside a quoted value is a quote, and a quoted value may
//! run on over line breaks. Readers use it to tell a value that goes on to the next line
//! from a quote that was never closed, so that one stray quote does not swallow the rest of
//! a file (see `exchange_csv` and the exposure crate's delimited tables).

/// Where a record stands after the text scanned so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuoteState {
    /// A quoted value is open at the end of the text scanned.
    pub open: bool,
    /// A closing quote was followed by something other than a delimiter, blank or the end
    /// of the line (`"abc"def`). Readers accept that on one line, but a record spanning
    /// lines that does it is more likely two records joined by a stray quote.
    pub stray: bool,
    at_start: bool,
    after_close: bool,
}

impl Default for QuoteState {
    fn default() -> Self {
        QuoteState { open: false, stray: false, at_start: true, after_close: false }
    }
}

impl QuoteState {
    /// Scans `line` as the continuation of the record so far (a line break between calls
    /// is part of an open quoted value).
    pub fn scan(&mut self, line: &str, delimiter: u8) {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if self.open {
                match memchr::memchr(b'"', &b[i..]) {
                    None => return,
                    Some(q) => {
                        i += q + 1;
                        if b.get(i) == Some(&b'"') {
                            i += 1;
                        } else {
                            self.open = false;
                            self.after_close = true;
                        }
                    }
                }
                continue;
            }
            let c = b[i];
            if c == delimiter {
                self.at_start = true;
                self.after_close = false;
            } else if c == b'"' && self.at_start {
                self.open = true;
                self.at_start = false;
            } else {
                if self.after_close && c != b' ' && c != b'\t' {
                    self.stray = true;
                    self.after_close = false;
                }
                self.at_start = false;
            }
            i += 1;
        }
    }

    /// The state of `line` read on its own as a record.
    pub fn of_line(line: &str, delimiter: u8) -> QuoteState {
        let mut s = QuoteState::default();
        s.scan(line, delimiter);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_open_close_and_stray() {
        assert!(!QuoteState::of_line(r#"a,"b,c","say ""hi""",,"#, b',').open);
        assert!(QuoteState::of_line(r#"a,"open"#, b',').open);
        assert!(!QuoteState::of_line(r#"a,mid"quote,b"#, b',').open);
        let mut s = QuoteState::of_line(r#"a,"multi"#, b',');
        s.scan(r#"line",b"#, b',');
        assert!(!s.open && !s.stray);
        let mut s = QuoteState::of_line(r#"a,"broken,b"#, b',');
        s.scan(r#"c,"d",e"#, b',');
        assert!(!s.open && s.stray, "{s:?}");
        // A doubled quote at the end of a line stays inside the value.
        let mut s = QuoteState::of_line("a,\"x\"\"", b',');
        assert!(s.open);
        s.scan("y\"", b',');
        assert!(!s.open && !s.stray);
        assert!(!QuoteState::of_line("\"a\"\t\"b\"", b'\t').open);
    }
}

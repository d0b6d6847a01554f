//! Text decoding and bounded record reading: encodings are sniffed from the first bytes
//! (BOMs, UTF-16 without a BOM by its NUL pattern, UTF-8 if it validates, otherwise
//! Windows-1252), and no record may grow past a limit however long the line is.

use std::io::{self, BufReader, Read};

use portcullis_sources::lines::{Line, read_line_bounded};

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Longest record (line, or quoted multi-line CSV record) kept; longer ones are skipped
/// and counted, reading on from the next line without holding the rest in memory.
pub const MAX_RECORD: usize = 1 << 20;

/// The encoding a text most likely has, from its first bytes.
pub fn sniff_encoding(head: &[u8]) -> &'static Encoding {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return UTF_8;
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return UTF_16LE;
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return UTF_16BE;
    }
    let sample = &head[..head.len().min(4096)];
    if sample.len() >= 4 {
        let (mut even, mut odd) = (0usize, 0usize);
        for (i, b) in sample.iter().enumerate() {
            if *b == 0 {
                if i % 2 == 0 { even += 1 } else { odd += 1 }
            }
        }
        let half = sample.len() / 2;
        if odd * 10 >= half * 3 && even * 10 < half {
            return UTF_16LE;
        }
        if even * 10 >= half * 3 && odd * 10 < half {
            return UTF_16BE;
        }
    }
    match std::str::from_utf8(sample) {
        Ok(_) => UTF_8,
        // A character cut by the end of the sample is not evidence against UTF-8.
        Err(e) if e.error_len().is_none() => UTF_8,
        Err(_) => WINDOWS_1252,
    }
}

/// Reads a text stream as UTF-8 records whatever its encoding.
pub struct TextReader<R: Read> {
    inner: Inner<R>,
    pub encoding: &'static Encoding,
    /// Records longer than [`MAX_RECORD`] that were skipped.
    pub overlong: u64,
    /// Records that held bytes invalid in the encoding (replaced by U+FFFD).
    pub undecodable: u64,
    /// 1-based number of the last line read.
    pub line: u64,
    raw: Vec<u8>,
}

/// UTF-8 is read as it is (lines are validated one by one); other encodings through a
/// streaming transcoder.
enum Inner<R: Read> {
    Utf8(BufReader<R>),
    Decoded(BufReader<encoding_rs_io::DecodeReaderBytes<R, Vec<u8>>>),
}

/// A text reader over `head` (the first bytes of the stream, used for sniffing) and
/// `rest` (the stream after them).
pub fn open<R: Read>(head: Vec<u8>, rest: R) -> TextReader<io::Chain<io::Cursor<Vec<u8>>, R>> {
    {
        let encoding = sniff_encoding(&head);
        let mut head = head;
        if encoding == UTF_8 && head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            head.drain(..3);
        }
        let chained = io::Cursor::new(head).chain(rest);
        let inner = if encoding == UTF_8 {
            Inner::Utf8(BufReader::with_capacity(256 * 1024, chained))
        } else {
            let decoder =
                encoding_rs_io::DecodeReaderBytesBuilder::new().encoding(Some(encoding)).bom_override(true).strip_bom(true).build(chained);
            Inner::Decoded(BufReader::with_capacity(256 * 1024, decoder))
        };
        TextReader { inner, encoding, overlong: 0, undecodable: 0, line: 0, raw: Vec::new() }
    }
}

impl<R: Read> TextReader<R> {
    /// Reads the next line (without its line ending) into `out`; false at the end.
    /// Overlong lines are skipped and counted.
    pub fn read_line(&mut self, out: &mut String) -> io::Result<bool> {
        loop {
            self.raw.clear();
            let got = match &mut self.inner {
                Inner::Utf8(r) => read_line_bounded(r, &mut self.raw, MAX_RECORD)?,
                Inner::Decoded(r) => read_line_bounded(r, &mut self.raw, MAX_RECORD)?,
            };
            match got {
                Line::Eof => return Ok(false),
                Line::TooLong { .. } => {
                    self.line += 1;
                    self.overlong += 1;
                }
                Line::Ok => {
                    self.line += 1;
                    out.clear();
                    match std::str::from_utf8(&self.raw) {
                        Ok(s) => {
                            out.push_str(s);
                            // The transcoder marks bytes invalid in the encoding with U+FFFD.
                            if matches!(self.inner, Inner::Decoded(_)) && s.contains('\u{FFFD}') {
                                self.undecodable += 1;
                            }
                        }
                        Err(_) => {
                            self.undecodable += 1;
                            out.push_str(&String::from_utf8_lossy(&self.raw));
                        }
                    }
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> (Vec<String>, &'static str, u64) {
        let head = bytes[..bytes.len().min(8192)].to_vec();
        let rest = &bytes[head.len()..];
        let mut r = open(head, rest);
        let mut out = Vec::new();
        let mut s = String::new();
        while r.read_line(&mut s).unwrap() {
            out.push(s.clone());
        }
        (out, r.encoding.name(), r.overlong)
    }

    #[test]
    fn encodings_are_sniffed_and_decoded() {
        assert_eq!(lines("a,b\r\nZoë,2\n".as_bytes()), (vec!["a,b".into(), "Zoë,2".into()], "UTF-8", 0));
        let mut le = vec![0xFF, 0xFE];
        for u in "Siân,1\n".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(lines(&le).0, vec!["Siân,1"]);
        let mut be = Vec::new();
        for u in "Name,Post\nSiân,NE1 1AA\n".encode_utf16() {
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(lines(&be), (vec!["Name,Post".into(), "Siân,NE1 1AA".into()], "UTF-16BE", 0));
        assert_eq!(lines(b"Zo\xEB,1\n"), (vec!["Zoë,1".into()], "windows-1252", 0));
    }

    #[test]
    fn overlong_lines_are_skipped_with_bounded_memory() {
        let mut big = b"ok\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_RECORD * 3));
        big.extend_from_slice(b"\nafter\n");
        let (l, _, overlong) = lines(&big);
        assert_eq!(l, vec!["ok", "after"]);
        assert_eq!(overlong, 1);
    }
}

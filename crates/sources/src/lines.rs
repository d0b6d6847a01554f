//! Reading lines with a bound on their length, so a 2 GB single-line file costs
//! at most the bound in memory.

use std::io::{self, BufRead};

/// One step of [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (without its `\n`) is in the buffer.
    Ok,
    /// The line was longer than the bound; `len` bytes were discarded and the buffer is empty.
    TooLong { len: u64 },
    /// End of input.
    Eof,
}

/// Reads the next line into `buf` (cleared first), keeping at most `max` bytes.
/// A trailing `\r` is removed.
pub fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut total: u64 = 0;
    let mut overflow = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if total == 0 {
                return Ok(Line::Eof);
            }
            break;
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        total += chunk.len() as u64;
        if !overflow {
            if buf.len() + chunk.len() > max {
                overflow = true;
                buf.clear();
                buf.shrink_to(64 * 1024);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        r.consume(consumed);
        if done.is_some() {
            total += 1;
            break;
        }
    }
    if overflow {
        return Ok(Line::TooLong { len: total });
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Ok)
}

/// Decodes a line as UTF-8, replacing invalid bytes. Returns whether replacement happened.
pub fn decode_lossy(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines() {
        let data = b"short\r\nthis line is far too long\nok\nlast-no-newline";
        let mut r = io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), Line::Ok);
        assert_eq!(buf, b"short");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), Line::TooLong { len: 26 });
        assert!(buf.is_empty());
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), Line::Ok);
        assert_eq!(buf, b"ok");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 100).unwrap(), Line::Ok);
        assert_eq!(buf, b"last-no-newline");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), Line::Eof);
    }
}

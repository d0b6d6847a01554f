//! Recognising mail files and splitting mailboxes into messages, with every message bounded.
//!
//! MBOX variants: `mboxo` and `mboxrd` (`>From ` lines are unescaped one level), and
//! `mboxcl`/`mboxcl2` read the same way. A line starting `From ` separates messages only at
//! the start of the file or after a blank line, so an unescaped `From ` inside a paragraph
//! stays in its message.

use std::io::{self, BufReader, Read};

use portcullis_sources::lines::{Line, read_line_bounded};

/// Largest message read; bigger ones are skipped and reported.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Longest line kept in a mailbox (RFC 5322 allows 998 bytes; longer lines are dropped and counted).
pub const MAX_LINE: usize = 1 << 20;

/// True if `head` looks like the start of a mailbox (`From ` line).
pub fn is_mbox(head: &[u8]) -> bool {
    head.starts_with(b"From ")
}

/// True if `head` looks like an RFC 5322 message: header lines, including at least two
/// of the usual ones, before the first blank line.
pub fn is_eml(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(16 * 1024)]);
    let mut known = 0;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, _)) = line.split_once(':') else { return false };
        // RFC 5322 field names: printable ASCII but space and colon (`X-Content_id` is one).
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
            return false;
        }
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "from" | "to" | "subject" | "date" | "message-id" | "received" | "mime-version" | "return-path" | "delivered-to"
        ) {
            known += 1;
        }
        if i > 200 {
            break;
        }
    }
    known >= 2
}

/// One message cut from a mailbox.
pub enum Piece<'a> {
    /// The message's bytes (escaping undone), the 1-based line of its `From ` separator, and
    /// the bytes of its header lines over [`MAX_LINE`] that were dropped (0 for most messages).
    Message { bytes: &'a [u8], line: u64, dropped: u64 },
    /// A message over [`MAX_MESSAGE`], skipped.
    TooBig { line: u64 },
}

/// What splitting a mailbox found besides messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct SplitStats {
    pub messages: usize,
    /// Lines over [`MAX_LINE`], dropped.
    pub long_lines: u64,
}

/// Splits a mailbox into messages, calling `f(index, piece)` for each.
pub fn split_mbox<R: Read>(r: R, mut f: impl FnMut(usize, Piece<'_>)) -> io::Result<SplitStats> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let mut msg: Vec<u8> = Vec::new();
    let mut too_big = false;
    let mut stats = SplitStats::default();
    let mut started = false;
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut msg_line = 0u64;
    let mut prev_blank = true;
    let mut dropped = 0u64;
    let mut in_header = false;
    loop {
        match read_line_bounded(&mut r, &mut line, MAX_LINE)? {
            Line::Eof => break,
            Line::TooLong { len } => {
                line_no += 1;
                stats.long_lines += 1;
                if in_header {
                    dropped += len;
                }
                prev_blank = false;
                continue;
            }
            Line::Ok => line.push(b'\n'),
        }
        line_no += 1;
        let blank = line.iter().all(|b| matches!(b, b'\r' | b'\n'));
        if line.starts_with(b"From ") && prev_blank {
            if started {
                emit(&mut f, &mut stats, &msg, too_big, msg_line, dropped);
            }
            started = true;
            dropped = 0;
            in_header = true;
            msg.clear();
            too_big = false;
            msg_line = line_no;
            prev_blank = false;
            continue;
        }
        prev_blank = blank;
        if blank {
            in_header = false;
        }
        if !started || too_big {
            continue;
        }
        let body: &[u8] =
            if line.starts_with(b">") && line.iter().skip_while(|b| **b == b'>').take(5).eq(b"From ".iter()) { &line[1..] } else { &line };
        if msg.len() + body.len() > MAX_MESSAGE {
            too_big = true;
            msg = Vec::new();
            continue;
        }
        msg.extend_from_slice(body);
    }
    if started {
        emit(&mut f, &mut stats, &msg, too_big, msg_line, dropped);
    }
    Ok(stats)
}

fn emit(f: &mut impl FnMut(usize, Piece<'_>), stats: &mut SplitStats, msg: &[u8], too_big: bool, line: u64, dropped: u64) {
    // The blank line before the next separator belongs to the mailbox, not the message.
    let mut end = msg.len();
    if msg[..end].ends_with(b"\r\n\r\n") {
        end -= 2;
    } else if msg[..end].ends_with(b"\n\n") {
        end -= 1;
    }
    let piece = if too_big { Piece::TooBig { line } } else { Piece::Message { bytes: &msg[..end], line, dropped } };
    f(stats.messages, piece);
    stats.messages += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    const EML: &str = "From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n";

    fn split(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        split_mbox(s.as_bytes(), |_, p| match p {
            Piece::Message { bytes, .. } => out.push(String::from_utf8_lossy(bytes).into_owned()),
            Piece::TooBig { .. } => out.push("<too big>".into()),
        })
        .unwrap();
        out
    }

    #[test]
    fn recognises_messages() {
        assert!(is_eml(EML.as_bytes()));
        assert!(!is_eml(b"Name,Postcode\nAda,NE1 1AA\n"));
        assert!(is_eml(b"Received: from x\n\tby y\nTo: a@b\nX-Content_id: 450897\nSubject: s\n\nbody\n"), "any RFC 5322 field name");
        assert!(is_mbox(b"From x@y Mon Jan  1 00:00:00 2024\n"));
    }

    #[test]
    fn mboxrd_and_mboxo_escaping() {
        let mbox = format!("From x Mon Jan  1 00:00:00 2024\n{EML}>From the desk\n>>From quoted\n\nFrom y Mon Jan  1 00:00:00 2024\n{EML}");
        let m = split(&mbox);
        assert_eq!(m.len(), 2);
        assert!(m[0].contains("\nFrom the desk\n>From quoted\n"), "{:?}", m[0]);
        assert!(m[1].ends_with("body\n"), "{:?}", m[1]);
    }

    #[test]
    fn from_inside_a_paragraph_does_not_split() {
        let mbox = format!("From x Mon Jan  1 00:00:00 2024\n{EML}line one\nFrom here on, unescaped\n");
        let m = split(&mbox);
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("From here on"));
    }

    #[test]
    fn long_lines_and_big_messages_are_bounded() {
        let long = "x".repeat(MAX_LINE + 10);
        let mbox = format!("From x Mon Jan  1 00:00:00 2024\n{EML}{long}\n");
        let mut stats = SplitStats::default();
        let mut n = 0;
        stats = split_mbox(mbox.as_bytes(), |_, _| n += 1).unwrap_or(stats);
        assert_eq!((n, stats.long_lines), (1, 1));
    }
}

//! Mail as a container: EML files and MBOX mailboxes, whose attachments are examined like
//! files (registers in CSV, XLSX, ZIP…) and whose text bodies are counted for personal
//! data. Every message is bounded in size; a mailbox is split into messages as it is read.

use std::io::{self, BufReader, Read};

use portcullis_sources::lines::{Line, read_line_bounded};

use mail_parser::{MessageParser, MimeHeaders};

/// Largest message read; bigger ones are skipped and reported.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Messages nested inside messages (message/rfc822 attachments) followed this deep.
const MAX_NESTING: usize = 8;

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
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
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

/// What one message holds, for the caller to examine.
pub struct Parts {
    /// (name, bytes) of each attachment, nested messages flattened.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// The text bodies.
    pub texts: Vec<String>,
}

/// Parses one message; None if it is not a message at all.
pub fn parts(raw: &[u8]) -> Option<Parts> {
    let msg = MessageParser::default().parse(raw)?;
    let mut out = Parts { attachments: Vec::new(), texts: Vec::new() };
    collect(&msg, &mut out, 0);
    Some(out)
}

fn collect(msg: &mail_parser::Message<'_>, out: &mut Parts, depth: usize) {
    for i in 0..msg.text_body_count() {
        if let Some(t) = msg.body_text(i) {
            out.texts.push(t.into_owned());
        }
    }
    for (k, part) in msg.attachments().enumerate() {
        if let Some(inner) = part.message() {
            if depth < MAX_NESTING {
                collect(inner, out, depth + 1);
            }
            continue;
        }
        let name = part.attachment_name().map(String::from).unwrap_or_else(|| format!("attachment-{}", k + 1));
        out.attachments.push((name, part.contents().to_vec()));
    }
}

/// Splits a mailbox into messages: a line starting `From ` begins one; `>From ` lines
/// are unescaped (mboxrd). Calls `f(index, bytes)` per message; messages over
/// [`MAX_MESSAGE`] are passed as None.
pub fn split_mbox<R: Read>(r: R, mut f: impl FnMut(usize, Option<&[u8]>)) -> io::Result<usize> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let mut msg: Vec<u8> = Vec::new();
    let mut too_big = false;
    let mut n = 0usize;
    let mut started = false;
    let mut line = Vec::new();
    loop {
        // Lines past 1 MiB cannot be valid mail (RFC 5322 allows 998 bytes); they are dropped.
        match read_line_bounded(&mut r, &mut line, 1 << 20)? {
            Line::Eof => break,
            Line::TooLong { .. } => continue,
            Line::Ok => line.push(b'\n'),
        }
        if line.starts_with(b"From ") {
            if started {
                f(n, (!too_big).then_some(&msg[..]));
                n += 1;
            }
            started = true;
            msg.clear();
            too_big = false;
            continue;
        }
        if !started || too_big {
            continue;
        }
        let body: &[u8] = if line.starts_with(b">") && line.iter().skip_while(|b| **b == b'>').take(5).eq(b"From ".iter()) {
            &line[1..]
        } else {
            &line
        };
        if msg.len() + body.len() > MAX_MESSAGE {
            too_big = true;
            msg.clear();
            continue;
        }
        msg.extend_from_slice(body);
    }
    if started {
        f(n, (!too_big).then_some(&msg[..]));
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EML: &str = "From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: register\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nCall 020 7946 0018.\r\n--XX\r\nContent-Type: text/csv; name=\"reg.csv\"\r\nContent-Disposition: attachment; filename=\"reg.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxiCjEsMgo=\r\n--XX--\r\n";

    #[test]
    fn messages_and_attachments() {
        assert!(is_eml(EML.as_bytes()));
        assert!(!is_eml(b"Name,Postcode\nAda,NE1 1AA\n"));
        let p = parts(EML.as_bytes()).unwrap();
        assert_eq!(p.attachments, vec![("reg.csv".to_string(), b"a,b\n1,2\n".to_vec())]);
        assert!(p.texts.iter().any(|t| t.contains("020 7946 0018")));
        let mbox = format!("From x Mon Jan  1 00:00:00 2024\n{EML}\n>From here\nFrom y Mon Jan  1 00:00:00 2024\n{EML}");
        let mut seen = Vec::new();
        let n = split_mbox(mbox.as_bytes(), |i, m| seen.push((i, m.map(|m| m.len())))).unwrap();
        assert_eq!(n, 2);
        assert!(seen.iter().all(|(_, m)| m.is_some()));
    }
}

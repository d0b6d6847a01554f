//! Mail as a container for exposure: the attachments of each message are examined like
//! files (registers in CSV, XLSX, ZIP…) and its text bodies counted for personal data.
//! Recognising and splitting mail is `portcullis-mailbox`'s job.

use mail_parser::{MessageParser, MimeHeaders};

pub use portcullis_mailbox::split::{MAX_MESSAGE, Piece, is_eml, is_mbox, split_mbox};

/// Messages nested inside messages (message/rfc822 attachments) followed this deep.
const MAX_NESTING: usize = 8;

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

#[cfg(test)]
mod tests {
    use super::*;

    const EML: &str = "From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: register\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nCall 020 7946 0018.\r\n--XX\r\nContent-Type: text/csv; name=\"reg.csv\"\r\nContent-Disposition: attachment; filename=\"reg.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxiCjEsMgo=\r\n--XX--\r\n";

    #[test]
    fn attachments_and_texts() {
        let p = parts(EML.as_bytes()).unwrap();
        assert_eq!(p.attachments, vec![("reg.csv".to_string(), b"a,b\n1,2\n".to_vec())]);
        assert!(p.texts.iter().any(|t| t.contains("020 7946 0018")));
    }
}

//! One message as the analysers see it: addresses, routing, bulk-mail headers, bodies and
//! attachments, with every text bounded and every decoding problem noted rather than fatal.

use std::net::IpAddr;

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use portcullis_event::Timestamp;
use sha2::{Digest, Sha256};

/// Largest header block parsed; a message whose headers run past it is reported, not read.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Text and HTML kept per message for analysis; the rest is cut and noted.
pub const MAX_BODY_TEXT: usize = 2 << 20;
/// Parts examined per message.
pub const MAX_PARTS: usize = 1024;

/// A mailbox address with its display name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lower-cased.
    pub address: String,
}

impl Mailbox {
    /// The domain after `@`, lower-cased ("" if none).
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// One `Received:` hop (newest first, as in the message).
#[derive(Clone, Debug, Default)]
pub struct Hop {
    /// The name the sending host gave (HELO/EHLO) or its reverse DNS.
    pub from_host: Option<String>,
    pub from_ip: Option<IpAddr>,
    pub by: Option<String>,
}

/// An attachment, listed without its content.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// A parsed message.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub message_id: Option<String>,
    pub date: Option<Timestamp>,
    pub from: Option<Mailbox>,
    pub sender: Option<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    /// Envelope sender (`Return-Path`), lower-cased.
    pub return_path: Option<String>,
    /// To, Cc, Bcc, Delivered-To and X-Original-To, de-duplicated.
    pub recipients: Vec<Mailbox>,
    pub subject: String,
    pub received: Vec<Hop>,
    /// `d=` of each DKIM-Signature, lower-cased.
    pub dkim_domains: Vec<String>,
    pub x_mailer: Option<String>,
    /// Headers that mark list or bulk mail (`List-Unsubscribe`, `Precedence: bulk`,
    /// `Feedback-ID`, ESP ids…), by name.
    pub bulk_headers: Vec<String>,
    /// A read receipt or other automatic reply (`Auto-Submitted`, disposition notification).
    pub automatic: bool,
    pub html: Vec<String>,
    pub text: Vec<String>,
    pub attachments: Vec<Attachment>,
    pub size: usize,
    /// Decoding problems met (broken base64, unknown charset, cut bodies…).
    pub problems: Vec<&'static str>,
}

/// Why a message could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    HeaderTooLarge,
    NotAMessage,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreadable::HeaderTooLarge => "header block larger than 1 MiB",
            Unreadable::NotAMessage => "not a mail message",
        })
    }
}

/// Parses one message.
pub fn parse(raw: &[u8]) -> Result<Mail, Unreadable> {
    if header_block_len(raw).is_none() && raw.len() > MAX_HEADER_BLOCK {
        return Err(Unreadable::HeaderTooLarge);
    }
    let msg = MessageParser::default().parse(raw).ok_or(Unreadable::NotAMessage)?;
    if msg.from().is_none() && msg.to().is_none() && msg.subject().is_none() && msg.date().is_none() && msg.message_id().is_none() {
        return Err(Unreadable::NotAMessage);
    }
    let mut m = Mail { size: raw.len(), ..Mail::default() };
    m.message_id = msg.message_id().map(|s| s.trim().to_ascii_lowercase());
    m.date = msg.date().map(|d| Timestamp(d.to_timestamp().saturating_mul(1_000_000)));
    m.from = msg.from().and_then(first);
    m.sender = msg.sender().and_then(first);
    m.reply_to = msg.reply_to().map(all).unwrap_or_default();
    m.return_path = msg.return_address().map(|s| s.trim_matches(['<', '>', ' ']).to_ascii_lowercase()).filter(|s| !s.is_empty());
    let mut recipients: Vec<Mailbox> = Vec::new();
    for a in [msg.to(), msg.cc(), msg.bcc()].into_iter().flatten() {
        recipients.extend(all(a));
    }
    m.subject = msg.subject().unwrap_or("").to_string();
    for (name, value) in msg.headers_raw() {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "delivered-to" | "x-original-to" => {
                let a = value.trim().trim_matches(['<', '>']).to_ascii_lowercase();
                if a.contains('@') && a.len() < 320 {
                    recipients.push(Mailbox { name: None, address: a });
                }
            }
            "dkim-signature" => {
                if let Some(d) = dkim_domain(value) {
                    m.dkim_domains.push(d);
                }
            }
            "x-mailer" | "user-agent" => m.x_mailer = Some(clip(value.trim(), 200)),
            "list-unsubscribe" | "list-id" | "feedback-id" | "x-sg-eid" | "x-mailgun-sid" | "x-ses-outgoing"
            | "x-mc-user" | "x-campaign" | "x-campaignid" | "x-mailchimp-campaign" | "x-sfmc-stack" | "x-mailjet-campaign" => {
                m.bulk_headers.push(lower.clone())
            }
            "precedence" if matches!(value.trim().to_ascii_lowercase().as_str(), "bulk" | "list" | "junk") => {
                m.bulk_headers.push("precedence".into())
            }
            "auto-submitted" if !value.trim().eq_ignore_ascii_case("no") => m.automatic = true,
            "content-type" if value.to_ascii_lowercase().contains("disposition-notification") => m.automatic = true,
            _ => {}
        }
    }
    m.bulk_headers.sort();
    m.bulk_headers.dedup();
    m.dkim_domains.sort();
    m.dkim_domains.dedup();
    recipients.sort_by(|a, b| a.address.cmp(&b.address).then(b.name.is_some().cmp(&a.name.is_some())));
    recipients.dedup_by(|a, b| a.address == b.address);
    m.recipients = recipients;
    for r in msg.received_all() {
        m.received.push(Hop {
            from_host: r.from.as_ref().map(host_string).or_else(|| r.from_iprev.as_ref().map(|s| s.to_ascii_lowercase())),
            from_ip: r.from_ip,
            by: r.by.as_ref().map(host_string),
        });
    }
    let mut kept = 0usize;
    for (i, part) in msg.parts.iter().enumerate() {
        if i >= MAX_PARTS {
            m.problems.push("more than 1024 MIME parts; the rest not examined");
            break;
        }
        if part.is_encoding_problem {
            let cte = part.content_transfer_encoding().map(|c| c.trim().to_ascii_lowercase());
            m.problems.push(match (part.encoding, cte.as_deref()) {
                (mail_parser::Encoding::Base64, _) | (_, Some("base64")) => "broken base64",
                (mail_parser::Encoding::QuotedPrintable, _) | (_, Some("quoted-printable")) => "broken quoted-printable",
                _ => "undecodable part",
            });
        }
        if let Some(cs) = part.content_type().and_then(|c| c.attribute("charset"))
            && !known_charset(cs)
        {
            m.problems.push("unknown charset");
        }
    }
    for part in msg.html_bodies().take(MAX_PARTS) {
        if let PartType::Html(h) = &part.body {
            push_bounded(&mut m.html, h, &mut kept, &mut m.problems);
        }
    }
    for part in msg.text_bodies().take(MAX_PARTS) {
        if let PartType::Text(t) = &part.body {
            push_bounded(&mut m.text, t, &mut kept, &mut m.problems);
        }
    }
    for (k, part) in msg.attachments().take(MAX_PARTS).enumerate() {
        let contents = part.contents();
        m.attachments.push(Attachment {
            name: clip(part.attachment_name().unwrap_or(&format!("attachment-{}", k + 1)), 255),
            content_type: part
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")).to_ascii_lowercase())
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: contents.len() as u64,
            sha256: hex(&Sha256::digest(contents)),
        });
    }
    m.problems.sort();
    m.problems.dedup();
    Ok(m)
}

/// Length of the header block (up to and including the blank line) if it ends within
/// [`MAX_HEADER_BLOCK`].
fn header_block_len(raw: &[u8]) -> Option<usize> {
    let head = &raw[..raw.len().min(MAX_HEADER_BLOCK)];
    let mut i = 0;
    while i < head.len() {
        let nl = head[i..].iter().position(|&b| b == b'\n').map(|p| i + p)?;
        let line = &head[i..nl];
        if line.is_empty() || line == b"\r" {
            return Some(nl + 1);
        }
        i = nl + 1;
    }
    (head.len() == raw.len()).then_some(raw.len())
}

fn push_bounded(out: &mut Vec<String>, text: &str, kept: &mut usize, problems: &mut Vec<&'static str>) {
    let room = MAX_BODY_TEXT.saturating_sub(*kept);
    if room == 0 {
        problems.push("body text beyond 2 MiB not examined");
        return;
    }
    let t = if text.len() > room {
        problems.push("body text beyond 2 MiB not examined");
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    } else {
        text
    };
    *kept += t.len();
    out.push(t.to_string());
}

fn first(a: &Address<'_>) -> Option<Mailbox> {
    a.iter().find_map(mailbox)
}

fn all(a: &Address<'_>) -> Vec<Mailbox> {
    a.iter().take(10_000).filter_map(mailbox).collect()
}

fn mailbox(a: &mail_parser::Addr<'_>) -> Option<Mailbox> {
    let address = a.address()?.trim().to_ascii_lowercase();
    if address.is_empty() || address.len() > 320 {
        return None;
    }
    let name = a.name().map(|n| clip(n.trim().trim_matches('"'), 200)).filter(|n| !n.is_empty());
    Some(Mailbox { name, address })
}

fn host_string(h: &mail_parser::Host<'_>) -> String {
    match h {
        mail_parser::Host::Name(n) => clip(&n.to_ascii_lowercase(), 255),
        mail_parser::Host::IpAddr(ip) => ip.to_string(),
    }
}

/// `d=` of a DKIM-Signature header value.
pub fn dkim_domain(value: &str) -> Option<String> {
    value.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim() == "d").then(|| v.trim().to_ascii_lowercase()).filter(|d| !d.is_empty() && d.len() < 256)
    })
}

fn known_charset(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    matches!(l.as_str(), "us-ascii" | "ascii" | "utf-8" | "utf8" | "iso-8859-1" | "latin1" | "windows-1252" | "utf-16" | "utf-16le" | "utf-16be" | "iso-8859-15" | "gb2312" | "gbk" | "gb18030" | "big5" | "shift_jis" | "euc-jp" | "iso-2022-jp" | "euc-kr" | "koi8-r" | "koi8-u" | "windows-1251" | "iso-8859-2" | "iso-8859-5" | "iso-8859-7" | "windows-1250" | "windows-1253" | "windows-1254" | "windows-1255" | "windows-1256" | "windows-1257" | "windows-1258" | "iso-8859-3" | "iso-8859-4" | "iso-8859-6" | "iso-8859-8" | "iso-8859-9" | "iso-8859-10" | "iso-8859-13" | "iso-8859-14" | "iso-8859-16" | "tis-620" | "windows-874" | "macintosh" | "utf-7" | "cp1252" | "cp1251" | "cp1250" | "ks_c_5601-1987" | "hz-gb-2312" | "x-user-defined")
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "Return-Path: <bounce-77@mailer.example.net>\r\nReceived: from mta7.mailer.example.net (mta7.mailer.example.net [203.0.113.7])\r\n\tby mx.parliament.example (Postfix) with ESMTPS id 1;\r\n\tMon, 1 Mar 2021 09:00:00 +0000\r\nDKIM-Signature: v=1; a=rsa-sha256; d=nropnews.com; s=s1; b=abc\r\nFrom: \"Daniel Wright, NROP News\" <d.wright@nropnews.com>\r\nReply-To: dwright.news@gmail.com\r\nTo: Jane MP <jane.doe@parliament.example>\r\nSubject: =?utf-8?q?Interview_request?=\r\nDate: Mon, 1 Mar 2021 09:00:00 +0000\r\nMessage-ID: <A1@nropnews.com>\r\nList-Unsubscribe: <mailto:u@x>\r\nX-Mailer: MassMail 3\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/html; charset=x-unknown\r\n\r\n<p>Hello</p><img src=\"https://t.nropnews.com/o/abc\" width=1 height=1>\r\n--b\r\nContent-Type: application/pdf; name=\"brief.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64***\r\n--b--\r\n";

    #[test]
    fn reads_the_fields_analysers_need() {
        let m = parse(MSG.as_bytes()).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("a1@nropnews.com"));
        assert_eq!(m.from.as_ref().unwrap().address, "d.wright@nropnews.com");
        assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Daniel Wright, NROP News"));
        assert_eq!(m.reply_to[0].address, "dwright.news@gmail.com");
        assert_eq!(m.return_path.as_deref(), Some("bounce-77@mailer.example.net"));
        assert_eq!(m.recipients[0].address, "jane.doe@parliament.example");
        assert_eq!(m.subject, "Interview request");
        assert_eq!(m.dkim_domains, vec!["nropnews.com"]);
        assert_eq!(m.received[0].from_ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(m.received[0].from_host.as_deref(), Some("mta7.mailer.example.net"));
        assert_eq!(m.bulk_headers, vec!["list-unsubscribe"]);
        assert_eq!(m.x_mailer.as_deref(), Some("MassMail 3"));
        assert!(m.html[0].contains("t.nropnews.com/o/abc"));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].name, "brief.pdf");
        assert_eq!(m.attachments[0].sha256.len(), 64);
        assert!(m.problems.contains(&"unknown charset"), "{:?}", m.problems);
        assert!(m.date.is_some());
    }

    #[test]
    fn oversized_header_block_is_refused() {
        let mut raw = b"From: a@b\r\nX-Big: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 2 << 20));
        assert_eq!(parse(&raw).unwrap_err(), Unreadable::HeaderTooLarge);
        assert!(parse(b"\x00\x01\x02").is_err());
    }
}

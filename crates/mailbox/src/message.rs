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

/// One authentication result (`spf`, `dkim`, `dmarc`, `arc`, `compauth`…) and the domain it
/// is about (`smtp.mailfrom`, `header.d`, `header.from`), as an `Authentication-Results` or
/// `ARC-Authentication-Results` header states it (RFC 8601, RFC 8617).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthResult {
    /// Lower-cased method: `spf`, `dkim`, `dmarc`…
    pub method: String,
    /// Lower-cased result: `pass`, `fail`, `softfail`, `none`, `temperror`…
    pub result: String,
    /// Lower-cased domain the result is about, when the header names one.
    pub domain: Option<String>,
}

/// An `Authentication-Results` (or `ARC-Authentication-Results`) header: who wrote it and
/// where it sits. Any sender can write one; [`AuthHeader::received_above`] lets the reader
/// keep only those its own servers added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthHeader {
    /// The authserv-id (the host that wrote it), lower-cased; None when the header has none
    /// (Exchange Online writes none).
    pub authserv_id: Option<String>,
    /// `Received:` headers above it: 0 means it was added after the last hop's Received.
    pub received_above: usize,
    /// An `ARC-Authentication-Results` header (and its `i=` instance).
    pub arc_instance: Option<u32>,
    pub results: Vec<AuthResult>,
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
    /// `Authentication-Results` and `ARC-Authentication-Results` headers, in header order.
    pub auth: Vec<AuthHeader>,
    /// Bulk-mail software named in a Received header (`PowerMTA`, `StrongMail`…).
    pub bulk_mta: Option<String>,
    /// The header block was over [`MAX_HEADER_BLOCK`]: the bytes of oversized header fields
    /// dropped to read the rest (padding a header is an evasion).
    pub header_dropped: Option<usize>,
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

/// Longest header field kept when a header block is over [`MAX_HEADER_BLOCK`]; longer
/// fields (the padding) are dropped and counted.
pub const MAX_FIELD_WHEN_PADDED: usize = 64 << 10;

/// Parses one message. A header block over [`MAX_HEADER_BLOCK`] is read bounded: fields
/// over [`MAX_FIELD_WHEN_PADDED`] are dropped (and the bytes dropped recorded in
/// [`Mail::header_dropped`]) until the rest fits; only when it still does not fit is the
/// message [`Unreadable::HeaderTooLarge`].
pub fn parse(raw: &[u8]) -> Result<Mail, Unreadable> {
    if header_block_len(raw).is_none() && raw.len() > MAX_HEADER_BLOCK {
        let (rebuilt, dropped) = without_padding(raw).ok_or(Unreadable::HeaderTooLarge)?;
        let mut m = parse(&rebuilt)?;
        m.size = raw.len();
        m.header_dropped = Some(dropped);
        m.problems.push("header block over 1 MiB: oversized header fields dropped");
        m.problems.sort();
        m.problems.dedup();
        return Ok(m);
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
    let mut received_seen = 0usize;
    for (name, value) in msg.headers_raw() {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "received" => {
                received_seen += 1;
                if m.bulk_mta.is_none() {
                    m.bulk_mta = bulk_mta(value);
                }
            }
            "authentication-results" | "arc-authentication-results" if m.auth.len() < 32 => {
                if let Some(h) = auth_header(value, lower.starts_with("arc-"), received_seen) {
                    m.auth.push(h);
                }
            }
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
            "list-unsubscribe"
            | "list-id"
            | "list-post"
            | "list-help"
            | "list-subscribe"
            | "list-archive"
            | "list-owner"
            | "list-unsubscribe-post"
            | "mailing-list"
            | "x-mailing-list"
            | "x-mailman-version"
            | "x-beenthere"
            | "feedback-id"
            | "x-sg-eid"
            | "x-sg-id"
            | "x-mailgun-sid"
            | "x-mailgun-tag"
            | "x-mailgun-variables"
            | "x-ses-outgoing"
            | "x-mc-user"
            | "x-mandrill-user"
            | "x-report-abuse"
            | "x-csa-complaints"
            | "x-campaign"
            | "x-campaignid"
            | "x-campaign-id"
            | "x-mailchimp-campaign"
            | "x-sfmc-stack"
            | "x-job"
            | "x-msfbl"
            | "x-rpcampaign"
            | "x-mailjet-campaign"
            | "x-listmember" => m.bulk_headers.push(lower.clone()),
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

/// Header fields the analysers read, kept when a padded header block is cut down.
const READ_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "dkim-signature",
    "authentication-results",
    "x-mailer",
    "user-agent",
    "precedence",
    "feedback-id",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// The message with header fields over [`MAX_FIELD_WHEN_PADDED`] left out, and fields the
/// analysers do not read once half of [`MAX_HEADER_BLOCK`] is used, and the bytes left out;
/// None when what remains is still over [`MAX_HEADER_BLOCK`] or the header block never ends.
fn without_padding(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(MAX_HEADER_BLOCK);
    let mut dropped = 0usize;
    let mut i = 0;
    let mut field_start = 0;
    let mut body_start = None;
    // Walk lines; a field is a line plus its continuation lines (starting with space/tab).
    // The fields analysis reads are kept wherever they stand; others while there is room,
    // so many small padding fields go the way of one big one.
    let flush = |out: &mut Vec<u8>, dropped: &mut usize, field: &[u8]| {
        let name_end = field.iter().position(|&b| b == b':').unwrap_or(0);
        let name = String::from_utf8_lossy(&field[..name_end.min(64)]).trim().to_ascii_lowercase();
        let wanted = READ_FIELDS.contains(&name.as_str()) || name.starts_with("list-") || name.starts_with("arc-");
        if field.len() > MAX_FIELD_WHEN_PADDED || (!wanted && out.len() + field.len() > MAX_HEADER_BLOCK / 2) {
            *dropped += field.len();
        } else {
            out.extend_from_slice(field);
        }
    };
    while i < raw.len() {
        let nl = memchr_nl(&raw[i..]).map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..nl];
        let blank = line == b"\n" || line == b"\r\n";
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if i > field_start && !continuation {
            flush(&mut out, &mut dropped, &raw[field_start..i]);
            field_start = i;
            if out.len() > MAX_HEADER_BLOCK {
                return None;
            }
        }
        if blank {
            body_start = Some(i);
            break;
        }
        i = nl;
    }
    let body_start = body_start?;
    out.extend_from_slice(&raw[body_start..]);
    Some((out, dropped))
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
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

/// Mass-mailing software that names itself in a Received header.
const BULK_MTAS: &[&str] =
    &["PowerMTA", "StrongMail", "GreenArrow", "MailerQ", "Momentum", "Ecelerity", "ListManager", "LISTSERV", "ezmlm", "Mailman", "Port25"];

fn bulk_mta(received: &str) -> Option<String> {
    let head = &received[..received.len().min(2048)];
    let head = &head[..(0..=head.len()).rev().find(|&i| head.is_char_boundary(i)).unwrap_or(0)];
    BULK_MTAS.iter().find(|n| head.contains(*n)).map(|n| n.to_string())
}

/// Parses an `Authentication-Results` value: `authserv-id [version]; method=result
/// [reason] prop.key=value …; …`, or Exchange Online's form with no authserv-id.
fn auth_header(value: &str, arc: bool, received_above: usize) -> Option<AuthHeader> {
    let value = &value[..value.len().min(16 * 1024)];
    let value = &value[..(0..=value.len()).rev().find(|&i| value.is_char_boundary(i)).unwrap_or(0)];
    let mut parts = value.split(';').map(str::trim);
    let mut arc_instance = None;
    let mut authserv_id = None;
    let mut pending: Option<&str> = None;
    if arc {
        let first = parts.next()?;
        arc_instance = first.strip_prefix("i=").and_then(|n| n.trim().parse().ok());
    }
    if let Some(first) = parts.next() {
        let word = first.split_whitespace().next().unwrap_or("");
        if word.contains('=') {
            pending = Some(first);
        } else if !word.is_empty() {
            authserv_id = Some(clip(&word.to_ascii_lowercase(), 255));
        }
    }
    let mut results = Vec::new();
    for part in pending.into_iter().chain(parts).take(32) {
        // Comments in parentheses are free text; drop them before reading key=value pairs.
        let mut clean = String::with_capacity(part.len());
        let mut depth = 0usize;
        for c in part.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                c if depth == 0 => clean.push(c),
                _ => {}
            }
        }
        let mut words = clean.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else { continue };
        let method = method.to_ascii_lowercase();
        if method.is_empty() || method.len() > 32 || method.contains('.') {
            continue;
        }
        let mut domain = None;
        for w in words {
            if let Some((k, v)) = w.split_once('=') {
                let k = k.to_ascii_lowercase();
                if matches!(k.as_str(), "smtp.mailfrom" | "header.d" | "header.from" | "header.i" | "smtp.helo") && domain.is_none() {
                    let v = v.trim_matches(['"', '<', '>', ';']).to_ascii_lowercase();
                    let d = v.rsplit('@').next().unwrap_or("").trim_start_matches('.');
                    if !d.is_empty() && d.len() < 256 {
                        domain = Some(d.to_string());
                    }
                }
            }
        }
        results.push(AuthResult { method, result: result.trim().to_ascii_lowercase(), domain });
    }
    Some(AuthHeader { authserv_id, received_above, arc_instance, results })
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
    matches!(
        l.as_str(),
        "us-ascii"
            | "ascii"
            | "utf-8"
            | "utf8"
            | "iso-8859-1"
            | "latin1"
            | "windows-1252"
            | "utf-16"
            | "utf-16le"
            | "utf-16be"
            | "iso-8859-15"
            | "gb2312"
            | "gbk"
            | "gb18030"
            | "big5"
            | "shift_jis"
            | "euc-jp"
            | "iso-2022-jp"
            | "euc-kr"
            | "koi8-r"
            | "koi8-u"
            | "windows-1251"
            | "iso-8859-2"
            | "iso-8859-5"
            | "iso-8859-7"
            | "windows-1250"
            | "windows-1253"
            | "windows-1254"
            | "windows-1255"
            | "windows-1256"
            | "windows-1257"
            | "windows-1258"
            | "iso-8859-3"
            | "iso-8859-4"
            | "iso-8859-6"
            | "iso-8859-8"
            | "iso-8859-9"
            | "iso-8859-10"
            | "iso-8859-13"
            | "iso-8859-14"
            | "iso-8859-16"
            | "tis-620"
            | "windows-874"
            | "macintosh"
            | "utf-7"
            | "cp1252"
            | "cp1251"
            | "cp1250"
            | "ks_c_5601-1987"
            | "hz-gb-2312"
            | "x-user-defined"
    )
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
    fn oversized_header_block_is_read_bounded() {
        // One 2 MiB field: dropped, the rest read, the padding recorded.
        let mut raw = b"From: a@b.example\r\nTo: c@d.example\r\nX-Big: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 2 << 20));
        raw.extend_from_slice(b"\r\nSubject: padded\r\n\r\nbody\r\n");
        let m = parse(&raw).unwrap();
        assert_eq!(m.subject, "padded");
        assert_eq!(m.from.unwrap().address, "a@b.example");
        assert!(m.header_dropped.unwrap() > 2 << 20);
        // A header block that never ends, or is still too big without its long fields, is refused.
        let mut raw = b"From: a@b\r\nX-Big: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 2 << 20));
        assert_eq!(parse(&raw).unwrap_err(), Unreadable::HeaderTooLarge);
        // Many small padding fields before the real ones: those read are kept.
        let mut raw = Vec::new();
        for i in 0..40_000 {
            raw.extend_from_slice(format!("X-F{i}: {}\r\n", "b".repeat(40)).as_bytes());
        }
        raw.extend_from_slice(b"From: a@b.example\r\nSubject: late\r\n\r\nbody\r\n");
        let m = parse(&raw).unwrap();
        assert_eq!((m.subject.as_str(), m.from.unwrap().address.as_str()), ("late", "a@b.example"));
        assert!(m.header_dropped.unwrap() > 1 << 20);
        // Even the fields read, past 1 MiB, are refused.
        let mut raw = Vec::new();
        for _ in 0..40_000 {
            raw.extend_from_slice(format!("Received: from {}\r\n", "b".repeat(40)).as_bytes());
        }
        raw.extend_from_slice(b"From: a@b.example\r\n\r\nbody\r\n");
        assert_eq!(parse(&raw).unwrap_err(), Unreadable::HeaderTooLarge);
        assert!(parse(b"\x00\x01\x02").is_err());
    }

    #[test]
    fn authentication_results_are_read_with_their_position() {
        let raw = "Authentication-Results: mx.parliament.example; spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=bounce.bbc.co.uk;\r\n dkim=pass header.d=bbc.co.uk header.s=s1; dmarc=pass (p=reject) header.from=bbc.co.uk\r\nReceived: from mail.bbc.co.uk (mail.bbc.co.uk [212.58.224.1]) by mx.parliament.example; Mon, 1 Mar 2021 09:00:00 +0000\r\nAuthentication-Results: spf=fail smtp.mailfrom=evil.example; dkim=none; dmarc=fail action=oreject header.from=bbc.co.uk;compauth=fail reason=000\r\nARC-Authentication-Results: i=1; mx.google.com; dkim=pass header.i=@news.example\r\nFrom: a@bbc.co.uk\r\nTo: b@parliament.example\r\nSubject: s\r\nReceived: by x with PowerMTA(TM) v4.0; Mon, 1 Mar 2021 08:00:00 +0000\r\n\r\nbody\r\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.auth.len(), 3);
        assert_eq!((m.auth[0].authserv_id.as_deref(), m.auth[0].received_above), (Some("mx.parliament.example"), 0));
        assert_eq!(
            m.auth[0].results,
            vec![
                AuthResult { method: "spf".into(), result: "pass".into(), domain: Some("bounce.bbc.co.uk".into()) },
                AuthResult { method: "dkim".into(), result: "pass".into(), domain: Some("bbc.co.uk".into()) },
                AuthResult { method: "dmarc".into(), result: "pass".into(), domain: Some("bbc.co.uk".into()) },
            ]
        );
        assert_eq!((m.auth[1].authserv_id.as_deref(), m.auth[1].received_above), (None, 1));
        assert_eq!(m.auth[1].results[2], AuthResult { method: "dmarc".into(), result: "fail".into(), domain: Some("bbc.co.uk".into()) });
        assert_eq!((m.auth[2].arc_instance, m.auth[2].authserv_id.as_deref()), (Some(1), Some("mx.google.com")));
        assert_eq!(m.auth[2].results[0].domain.as_deref(), Some("news.example"));
        assert_eq!(m.bulk_mta.as_deref(), Some("PowerMTA"));
    }
}

//! The per-message analysers: hidden beacons, impersonation and bulk-mail infrastructure.
//! Each gives explained signals with a score; nothing here depends on other messages, so
//! messages are analysed in parallel. Novelty and shared infrastructure need the whole
//! corpus and are added by [`crate::campaign`].

use std::net::IpAddr;

use portcullis_event::Timestamp;
use portcullis_mailbox::{Attachment, Location, Mail};
use serde::Serialize;

use crate::domain::{Established, Identity, Lists, LookAlike, decode_punycode, skeleton};
use crate::html;
use crate::url::{self, registrable};
use portcullis_event::text_hash::TextHash;

/// Which analyser raised a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Analyser {
    Beacon,
    Impersonation,
    Novelty,
    Bulk,
    Targeting,
    /// What is known in the sender's favour (an established domain, passed authentication):
    /// score 0, shown so a low grade is explained.
    Sender,
    /// Evasion of reading: a header padded past what readers take.
    Evasion,
}

/// What a signal observed, set where it is raised: severity, ATT&CK techniques and the
/// judgement read this, never the signal's English text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A hidden image or tracking-path image (an open beacon).
    HiddenImage,
    /// A read-receipt service's pixel in person-to-person mail.
    ReadReceipt,
    /// A link through a redirector to another domain.
    Redirector,
    /// The sender domain is punycode.
    Punycode,
    /// The sender domain looks like a known outlet's or protected identity's.
    LookAlikeSender,
    /// A link host looks like a known outlet's.
    LookAlikeLink,
    /// The display name claims a known outlet or protected identity the address is not on.
    DisplayName,
    /// Replies go to another domain.
    ReplyTo,
    /// The sender domain is styled as a news outlet.
    StyledAsOutlet,
    /// The display name presents a journalist or outlet.
    PersonaName,
    /// First mail from a domain.
    NewDomain,
    /// A domain first seen only days before.
    RecentDomain,
    /// First mail from this sender to its recipients.
    NewCorrespondent,
    /// Sent through a recognised mass-mailing service.
    MassMailer,
    /// List or bulk headers.
    ListHeaders,
    /// One personal-looking message to many recipients, each with its own token.
    PersonalBulk,
    /// Several sender accounts share one template and infrastructure.
    SharedInfrastructure,
    /// Sent to protected members.
    ProtectedMember,
    /// From claims a known identity's own domain and the receiving gateway's authentication failed.
    SpoofedDomain,
    /// Authentication failed for a sender that impersonates.
    AuthFailure,
    /// The sender domain passed the receiving gateway's aligned authentication.
    Authenticated,
    /// The sender domain is established (a known outlet's own, widely used, or restricted).
    Established,
    /// Bulk-mail infrastructure beyond a recognised service (bulk MTA, VERP bounce address).
    BulkInfrastructure,
    /// A header block padded past what readers take (1 MiB), dropped to read the rest.
    PaddedHeader,
}

/// One explained observation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub analyser: Analyser,
    pub kind: SignalKind,
    pub score: u8,
    /// Shared: copies of one newsletter say the same thing (see [`crate::slim`]).
    pub what: std::sync::Arc<str>,
}

/// A URL in a message worth following into the logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UrlRef {
    /// A hash of the URL as written, for telling a message's URLs apart while it is analysed
    /// (the text itself is never read again).
    #[serde(skip)]
    pub url_hash: u128,
    /// Shared, as [`Signal::what`] is: every copy of a newsletter links the same hosts.
    pub host: std::sync::Arc<str>,
    /// Host and path with tokens blanked, query keys sorted.
    pub template: std::sync::Arc<str>,
    /// Per-recipient tokens found in it.
    pub tokens: Vec<String>,
    /// An image that reports the opening (hidden, or on a tracking path); otherwise a link.
    pub beacon: bool,
}

/// A message reduced to what campaign finding needs; bodies are dropped after analysis.
#[derive(Clone, Debug)]
pub struct Analysed {
    pub location: Location,
    /// `Message-ID`, or a hash of the message's bytes when it has none (emptied after
    /// analysis unless the message is a campaign candidate: see `id_hash`).
    pub message_id: String,
    /// A 128-bit hash of `message_id`, by which copies of one message are found.
    pub id_hash: u128,
    pub date: Option<Timestamp>,
    pub from: Option<portcullis_mailbox::Mailbox>,
    pub reply_to: Vec<String>,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The first public address in the Received chain (the host that handed the message over).
    pub sending_ip: Option<IpAddr>,
    /// The mass-mailing service it went through, if recognised.
    pub bulk_relay: Option<String>,
    /// List or bulk headers (List-Unsubscribe, Precedence: bulk…).
    pub list_mail: bool,
    pub automatic: bool,
    /// The beacon is a read-receipt service's pixel (a person's choice, not a campaign's).
    pub read_receipt: bool,
    /// Public addresses of the Received hops below the sending one, newest first, for
    /// finding the real sender behind the institution's own relays and forwarders.
    pub public_hops: Vec<IpAddr>,
    pub urls: Vec<UrlRef>,
    pub skeleton: Option<u64>,
    pub attachments: Vec<Attachment>,
    pub signals: Vec<Signal>,
    pub problems: Vec<&'static str>,
    pub size: usize,
}

impl Analysed {
    pub fn score(&self, a: Analyser) -> u32 {
        self.signals.iter().filter(|s| s.analyser == a).map(|s| s.score as u32).sum()
    }
    pub fn from_domain(&self) -> &str {
        self.from.as_ref().map(|f| f.domain()).unwrap_or("")
    }
}

/// The identities a label looks like, as [`Context::lookalikes_of`] gives them.
pub type Lookalikes = std::sync::Arc<[(usize, String, LookAlike)]>;
type LookalikeCache = std::collections::HashMap<String, Lookalikes, TextHash>;

/// Settings the analysers share.
pub struct Context {
    pub lists: Lists,
    /// The institution's own registrable domains (mail between them is internal).
    pub internal: Vec<String>,
    /// Domain label → the identities (index, brand label, how) it looks like; labels repeat
    /// across a corpus, so each is compared with the lists once.
    pub lookalikes: std::sync::RwLock<LookalikeCache>,
}

impl Context {
    pub fn new(mut lists: Lists, internal: Vec<String>) -> Context {
        lists.reindex();
        Context { lists, internal, lookalikes: Default::default() }
    }

    /// The identities whose brand labels `label` looks like (without being them).
    pub fn lookalikes_of(&self, label: &str) -> Lookalikes {
        if let Some(v) = self.lookalikes.read().unwrap_or_else(|p| p.into_inner()).get(label) {
            return v.clone();
        }
        let sl = skeleton(label);
        let forms = crate::domain::LabelForms::new(label, &sl);
        let mut found = Vec::new();
        for (i, id) in self.lists.identities.iter().enumerate() {
            // The most telling match among its labels (look-alike characters before added words).
            if let Some((b, how)) = id
                .labels
                .iter()
                .zip(&id.label_skeletons)
                .zip(&id.ordinary)
                .filter_map(|((b, sb), ord)| crate::domain::looks_like_forms(&forms, b, sb, *ord).map(|h| (b, h)))
                .min_by_key(|(_, h)| h.rank())
            {
                found.push((i, b.clone(), how));
            }
        }
        let found: Lookalikes = found.into();
        let mut cache = self.lookalikes.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() < 1_000_000 {
            cache.insert(label.to_string(), found.clone());
        }
        found
    }

    pub fn is_internal(&self, domain: &str) -> bool {
        let r = registrable(domain);
        self.internal.iter().any(|d| d == r)
    }
}

const URLS_PER_MESSAGE: usize = 64;

/// Analyses one parsed message.
pub fn analyse(mut mail: Mail, location: Location, raw_hash: u64, ctx: &Context) -> Analysed {
    // What the analysers below do not read of `mail` is moved, not copied. Addresses go into
    // vectors of their own size: collected in place, they would keep the larger buffer.
    let addresses = |list: Vec<portcullis_mailbox::Mailbox>| {
        let mut out = Vec::with_capacity(list.len());
        out.extend(list.into_iter().map(|r| r.address));
        out
    };
    let recipients: Vec<String> = addresses(std::mem::take(&mut mail.recipients));
    let sending = mail.received.iter().find(|h| h.from_ip.is_some_and(is_public));
    let public_hops: Vec<IpAddr> = mail.received.iter().filter_map(|h| h.from_ip.filter(|ip| is_public(*ip))).skip(1).take(4).collect();
    let message_id = mail.message_id.take().unwrap_or_else(|| format!("sha:{raw_hash:016x}"));
    let subject = if mail.subject.len() <= 300 { std::mem::take(&mut mail.subject) } else { clip(&mail.subject, 300) };
    let mut a = Analysed {
        location,
        id_hash: xxhash_rust::xxh3::xxh3_128(message_id.as_bytes()),
        message_id,
        date: mail.date,
        from: mail.from.take().or_else(|| mail.sender.take()),
        reply_to: addresses(std::mem::take(&mut mail.reply_to)),
        recipients,
        subject,
        sending_ip: sending.and_then(|h| h.from_ip),
        bulk_relay: None,
        list_mail: !mail.bulk_headers.is_empty(),
        automatic: mail.automatic,
        read_receipt: false,
        public_hops,
        urls: Vec::new(),
        skeleton: None,
        attachments: std::mem::take(&mut mail.attachments),
        signals: Vec::new(),
        problems: std::mem::take(&mut mail.problems),
        size: mail.size,
    };
    bulk(&mail, &mut a, ctx);
    beacons(&mail, &mut a, ctx);
    if !ctx.is_internal(a.from_domain()) {
        let auth = auth_verdict(&trusted_auth(&mail, &ctx.internal), registrable(a.from_domain()));
        impersonation_remembered(&mut a, ctx, &auth);
    }
    if let Some(n) = mail.header_dropped {
        a.signals.push(Signal {
            analyser: Analyser::Evasion,
            kind: SignalKind::PaddedHeader,
            score: 2,
            what: format!("header block padded past 1 MiB: {n} bytes of oversized header fields dropped to read the rest").into(),
        });
    }
    a
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.octets()[0] == 100 && v.octets()[1] >= 64 && v.octets()[1] < 128)
        }
        IpAddr::V6(v) => {
            !(v.is_loopback() || v.is_unspecified() || (v.segments()[0] & 0xfe00) == 0xfc00 || (v.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn bulk(mail: &Mail, a: &mut Analysed, ctx: &Context) {
    let mut candidates: Vec<&str> = Vec::new();
    for h in &mail.received {
        candidates.extend(h.from_host.as_deref());
    }
    if let Some(rp) = &mail.return_path {
        candidates.push(rp.rsplit('@').next().unwrap_or(""));
    }
    candidates.extend(mail.dkim_domains.iter().map(String::as_str));
    if let Some(relay) = candidates.into_iter().find(|h| ctx.lists.is_bulk_mailer(h)) {
        let relay = registrable(relay).to_string();
        a.signals.push(Signal {
            analyser: Analyser::Bulk,
            kind: SignalKind::MassMailer,
            score: 0,
            what: format!("sent through a mass-mailing service ({relay})").into(),
        });
        a.bulk_relay = Some(relay);
    }
    if a.bulk_relay.is_none() {
        let mut infra = Vec::new();
        if let Some(mta) = &mail.bulk_mta {
            infra.push(format!("bulk-mail software {mta} in its Received headers"));
        }
        if let Some(rp) = &mail.return_path
            && let Some((local, dom)) = rp.rsplit_once('@')
            && verp(local, &a.recipients)
        {
            infra.push(format!("a per-recipient bounce address (VERP) at {}", registrable(dom)));
        }
        if !infra.is_empty() {
            a.signals.push(Signal {
                analyser: Analyser::Bulk,
                kind: SignalKind::BulkInfrastructure,
                score: 0,
                what: infra.join("; ").into(),
            });
        }
    }
    if a.list_mail {
        a.signals.push(Signal {
            analyser: Analyser::Bulk,
            kind: SignalKind::ListHeaders,
            score: 0,
            what: {
                let mut what = String::from("list/bulk headers: ");
                for (n, h) in mail.bulk_headers.iter().enumerate() {
                    if n > 0 {
                        what.push_str(", ");
                    }
                    what.push_str(h);
                }
                what
            }
            .into(),
        });
    }
}

/// A bounce address that encodes the recipient or a per-message token: how mass-mailing
/// software tells which recipient bounced (`bounces+jane=example.org@`, `bounce-8f3KzQ1x@`).
fn verp(local: &str, recipients: &[String]) -> bool {
    let l = local.to_ascii_lowercase();
    if recipients.iter().any(|r| {
        r.split_once('@').is_some_and(|(u, d)| u.len() >= 3 && l.contains(u) && (l.contains(d) || l.contains(&d.replace('.', "="))))
    }) {
        return true;
    }
    l.split(['+', '-', '.', '=', '_'])
        .any(|part| part.len() >= 8 && part.bytes().any(|b| b.is_ascii_digit()) && part.bytes().any(|b| b.is_ascii_alphabetic()))
}

fn beacons(mail: &Mail, a: &mut Analysed, ctx: &Context) {
    let from_reg = registrable(a.from_domain()).to_string();
    let dkim: Vec<String> = mail.dkim_domains.iter().map(|d| registrable(d).to_string()).collect();
    let owner = ctx.lists.owner_of(&from_reg).map(|i| &ctx.lists.identities[i]);
    let own = |host: &str| {
        let r = registrable(host);
        r == from_reg || dkim.iter().any(|d| d == r) || owner.is_some_and(|id| id.owns(r))
    };
    let mut beacon_score = 0u8;
    let mut explained: Vec<String> = Vec::new();
    let mut redirect_noted = false;
    let mut skeletons = Vec::new();
    for body in &mail.html {
        let facts = html::scan(body);
        if facts.tags >= 8 {
            skeletons.push(facts.skeleton);
        }
        if facts.truncated {
            a.problems.push("deeply nested or very long HTML; the rest not examined");
        }
        let mut candidates: Vec<(String, Vec<&'static str>, bool)> = facts.images.into_iter().map(|i| (i.src, i.hidden, false)).collect();
        candidates.extend(facts.backgrounds.into_iter().map(|u| (u, Vec::new(), true)));
        for (src, hidden, background) in candidates {
            let Some(u) = url::parse(&src) else { continue };
            let found = url::tokens(&u, &a.recipients);
            let tracking = url::tracking_path(&u.path);
            let is_beacon = !hidden.is_empty() || tracking.is_some() || (background && !found.list.is_empty());
            if !is_beacon {
                continue;
            }
            let template = url::template(&u, &found);
            let tokens = found.list;
            if ctx.lists.is_read_receipt_host(&u.host) {
                a.read_receipt = true;
            }
            if explained.len() < 3 {
                // Written into one string: every beacon of a newsletter's every copy says this.
                let mut s = String::with_capacity(96 + u.host.len());
                s.push_str("hidden image from ");
                s.push_str(&u.host);
                s.push_str(" (");
                let mut parts = 0;
                let mut why = |s: &mut String, words: &[&str]| {
                    if parts > 0 {
                        s.push_str(", ");
                    }
                    parts += 1;
                    words.iter().for_each(|w| s.push_str(w));
                };
                for h in &hidden {
                    why(&mut s, &[h]);
                }
                if let Some(t) = tracking {
                    why(&mut s, &["tracking path ", t]);
                }
                if background {
                    why(&mut s, &["CSS background"]);
                }
                s.push(')');
                if let Some(t) = tokens.first() {
                    s.push_str("; URL carries ");
                    s.push_str(t.why);
                }
                if !own(&u.host) {
                    s.push_str("; host unrelated to the sender");
                }
                explained.push(s);
            }
            let mut score = 1;
            if !tokens.is_empty() {
                score += 1;
            }
            if !own(&u.host) {
                score += 1;
            }
            beacon_score = beacon_score.max(score);
            push_url(a, &src, u, template, tokens, true);
        }
        for href in facts.links {
            let Some(u) = url::parse(&href) else { continue };
            if !redirect_noted
                && let Some(target) = url::redirect_target(&u)
                && registrable(&target.host) != registrable(&u.host)
            {
                redirect_noted = true;
                a.signals.push(Signal {
                    analyser: Analyser::Beacon,
                    kind: SignalKind::Redirector,
                    score: 1,
                    what: format!("link through a redirector: {} → {}", u.host, target.host).into(),
                });
            }
            let found = url::tokens(&u, &a.recipients);
            if !found.list.is_empty() {
                let template = url::template(&u, &found);
                push_url(a, &href, u, template, found.list, false);
            }
        }
    }
    skeletons.sort_unstable();
    a.skeleton = skeletons.first().copied();
    if beacon_score > 0 {
        let score = if a.read_receipt { 1 } else { beacon_score };
        let what = if a.read_receipt { format!("read-receipt pixel: {}", explained.join("; ")) } else { explained.join("; ") };
        let kind = if a.read_receipt { SignalKind::ReadReceipt } else { SignalKind::HiddenImage };
        a.signals.push(Signal { analyser: Analyser::Beacon, kind, score, what: what.into() });
    }
}

fn push_url(a: &mut Analysed, raw: &str, u: url::Url, template: String, tokens: Vec<url::Token>, beacon: bool) {
    let url_hash = xxhash_rust::xxh3::xxh3_128(raw.as_bytes());
    if a.urls.len() >= URLS_PER_MESSAGE || a.urls.iter().any(|x| x.url_hash == url_hash) {
        return;
    }
    a.urls.push(UrlRef {
        url_hash,
        host: u.host.into(),
        template: template.into(),
        tokens: tokens.into_iter().map(|t| t.value).collect(),
        beacon,
    });
}

const PERSONA_WORDS: &[&str] =
    &["news", "reporter", "correspondent", "journalist", "editor", "press", "newsroom", "media", "times", "post", "herald", "daily"];

/// What the receiving side's authentication said about the From domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Aligned SPF, DKIM or DMARC passed for the From domain (with the result that did).
    Pass(String),
    /// DMARC (or Exchange Online's composite authentication) failed, or SPF failed with no
    /// DKIM signature passing (with the results).
    Fail(String),
    /// No result the institution's own servers wrote, or none about the From domain.
    Unknown,
}

/// The authentication results written by the receiving side: the headers above the hop
/// that took the message in from outside. Walking the Received hops from the newest, a hop
/// is the receiving side's own while it comes from a private address or from a host in a
/// domain a receiving hop already belongs to (the last server's, the institution's); the
/// first other hop is the boundary, and only results above it are the gateway's. Results
/// further down were in the message as it arrived: anyone can write them.
pub fn trusted_auth<'m>(mail: &'m Mail, internal: &[String]) -> Vec<&'m portcullis_mailbox::AuthResult> {
    if mail.auth.is_empty() {
        return Vec::new();
    }
    let mut ours: Vec<String> = internal.to_vec();
    if let Some(by) = mail.received.first().and_then(|h| h.by.as_deref()) {
        ours.push(registrable(by).to_string());
    }
    let mut boundary = mail.received.len();
    for (k, h) in mail.received.iter().enumerate() {
        let private = h.from_ip.is_some_and(|ip| !is_public(ip));
        let from_ours = h.from_host.as_deref().is_some_and(|f| ours.iter().any(|o| !o.is_empty() && o == registrable(f)));
        if private || from_ours {
            if let Some(by) = h.by.as_deref() {
                let r = registrable(by).to_string();
                if !ours.contains(&r) {
                    ours.push(r);
                }
            }
            continue;
        }
        boundary = k;
        break;
    }
    mail.auth.iter().filter(|h| h.received_above <= boundary).flat_map(|h| h.results.iter()).collect()
}

/// The verdict on `from_reg` from trusted results (see [`trusted_auth`]).
pub fn auth_verdict(results: &[&portcullis_mailbox::AuthResult], from_reg: &str) -> AuthVerdict {
    if results.is_empty() || from_reg.is_empty() {
        return AuthVerdict::Unknown;
    }
    let about = |r: &portcullis_mailbox::AuthResult| r.domain.as_deref().is_none_or(|d| registrable(d) == from_reg);
    let aligned = |r: &portcullis_mailbox::AuthResult| r.domain.as_deref().is_some_and(|d| registrable(d) == from_reg);
    let say = |r: &portcullis_mailbox::AuthResult| match &r.domain {
        Some(d) => format!("{}={} for {d}", r.method, r.result),
        None => format!("{}={}", r.method, r.result),
    };
    if let Some(r) = results.iter().find(|r| matches!(r.method.as_str(), "dmarc" | "compauth") && r.result == "fail" && about(r)) {
        return AuthVerdict::Fail(say(r));
    }
    if let Some(r) = results.iter().find(|r| r.method == "dmarc" && r.result == "pass" && about(r)) {
        return AuthVerdict::Pass(say(r));
    }
    if let Some(r) = results.iter().find(|r| matches!(r.method.as_str(), "dkim" | "spf") && r.result == "pass" && aligned(r)) {
        return AuthVerdict::Pass(format!("aligned {}", say(r)));
    }
    let spf_fail = results.iter().find(|r| r.method == "spf" && matches!(r.result.as_str(), "fail" | "softfail"));
    let dkim_pass = results.iter().any(|r| r.method == "dkim" && r.result == "pass");
    match spf_fail {
        Some(r) if !dkim_pass => AuthVerdict::Fail(say(r)),
        _ => AuthVerdict::Unknown,
    }
}

/// Impersonation kinds that can carry a message past low on their own (with a beacon, or
/// at score 3 without one); the rest (styled names, persona words, reply-to, punycode,
/// failed authentication of an unknown domain) only add weight to them.
pub fn strong_impersonation(kind: SignalKind) -> bool {
    matches!(kind, SignalKind::LookAlikeSender | SignalKind::LookAlikeLink | SignalKind::DisplayName | SignalKind::SpoofedDomain)
}

/// Inputs of [`impersonation`] remembered per thread; past this many it starts afresh.
const REMEMBERED_SENDERS: usize = 4096;
/// Inputs longer than this are not remembered (a message with many links or reply-to
/// addresses, or a padded display name, is analysed afresh). The remembered signals' texts
/// are made of the inputs, so this also bounds what the memory holds: 4,096 answers of a
/// few signals each, every text under about this size, per thread.
const REMEMBERED_KEY_BYTES: usize = 1024;

/// [`impersonation`], remembered: its signals depend only on the sender (domain and display
/// name), the gateway's verdict, whether there is a beacon, the reply-to addresses and the
/// link hosts, which every copy of a newsletter shares; a copy takes the signals its first
/// copy on this thread was given (their texts shared, not copied).
fn impersonation_remembered(a: &mut Analysed, ctx: &Context, auth: &AuthVerdict) {
    type Remembered = std::collections::HashMap<Box<[u8]>, Box<[Signal]>, TextHash>;
    thread_local! {
        static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        static SEEN: std::cell::RefCell<Remembered> = Default::default();
    }
    KEY.with_borrow_mut(|key| {
        // The inputs, each length-prefixed so that no two differ only in where one ends.
        key.clear();
        let Some(from) = &a.from else { return };
        let mut field = |bytes: &[u8]| {
            key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            key.extend_from_slice(bytes);
        };
        field(from.domain().as_bytes());
        match &from.name {
            Some(n) => field(n.as_bytes()),
            None => field(b"\xff"),
        }
        match auth {
            AuthVerdict::Pass(why) => {
                field(b"p");
                field(why.as_bytes());
            }
            AuthVerdict::Fail(why) => {
                field(b"f");
                field(why.as_bytes());
            }
            AuthVerdict::Unknown => field(b"u"),
        }
        field(if a.score(Analyser::Beacon) > 0 { b"b" } else { b"-" });
        field(&(a.reply_to.len() as u32).to_le_bytes());
        for r in &a.reply_to {
            field(r.as_bytes());
        }
        field(&(a.urls.len() as u32).to_le_bytes());
        for u in &a.urls {
            field(u.host.as_bytes());
        }
        if key.len() > REMEMBERED_KEY_BYTES {
            impersonation(a, ctx, auth);
            return;
        }
        let signals = &mut a.signals;
        if SEEN.with_borrow(|seen| seen.get(key.as_slice()).map(|known| signals.extend_from_slice(known)).is_some()) {
            return;
        }
        let before = a.signals.len();
        impersonation(a, ctx, auth);
        let added: Box<[Signal]> = a.signals[before..].into();
        SEEN.with_borrow_mut(|seen| {
            if seen.len() >= REMEMBERED_SENDERS {
                seen.clear();
            }
            seen.insert(key.as_slice().into(), added);
        });
    })
}

fn impersonation(a: &mut Analysed, ctx: &Context, auth: &AuthVerdict) {
    // Taken for the analysis and put back at the end, not copied.
    let Some(from) = a.from.take() else { return };
    let domain_raw = from.domain();
    let domain = decode_punycode(domain_raw);
    let reg = registrable(&domain);
    let label = reg.split('.').next().unwrap_or("");
    let freemail = ctx.lists.is_freemail(reg);
    let established = ctx.lists.established(reg);
    let display = from.name.as_deref().unwrap_or("");
    let display_sk = skeleton(display);
    let display_parts = DisplayParts::of(&display_sk);
    let mut found: Vec<Signal> = Vec::new();
    let mut benign: Vec<Signal> = Vec::new();
    if *domain != *domain_raw {
        found.push(Signal {
            analyser: Analyser::Impersonation,
            kind: SignalKind::Punycode,
            score: 1,
            what: format!("sender domain {domain_raw} is punycode for {domain}").into(),
        });
    }
    let legit_outlet = matches!(established, Some(Established::Own(_)));
    match (&established, auth) {
        (Some(Established::Own(i)), AuthVerdict::Fail(why)) => found.push(Signal {
            analyser: Analyser::Impersonation,
            kind: SignalKind::SpoofedDomain,
            score: 3,
            what: format!(
                "From claims {}'s own domain {reg}, but the receiving gateway's authentication failed ({why})",
                ctx.lists.identities[*i].name
            )
            .into(),
        }),
        // Said only where it can matter: a message with a beacon or an impersonation.
        _ if a.score(Analyser::Beacon) == 0 && found.is_empty() && a.reply_to.is_empty() => {}
        (Some(e), AuthVerdict::Pass(why)) => benign.push(Signal {
            analyser: Analyser::Sender,
            kind: SignalKind::Authenticated,
            score: 0,
            what: format!("{reg} ({}) authenticated by the receiving gateway ({why})", e.why(&ctx.lists)).into(),
        }),
        (Some(e), _) => benign.push(Signal {
            analyser: Analyser::Sender,
            kind: SignalKind::Established,
            score: 0,
            what: format!("{reg} is established: {}", e.why(&ctx.lists)).into(),
        }),
        _ => {}
    }
    let lookalikes = ctx.lookalikes_of(label);
    // Only identities something points at: a look-alike label, the exact label, or the first
    // word of their name in the display name. The user's protected identities first: they
    // are the more specific claim.
    let lists = &ctx.lists;
    let mut candidates: Vec<usize> = lookalikes.iter().map(|(j, _, _)| *j).collect();
    candidates.extend(lists.by_label.get(label).into_iter().flatten());
    for part in display_parts.parts() {
        for w in part {
            candidates.extend(lists.by_first_word.get(*w).into_iter().flatten());
        }
    }
    candidates.sort_unstable_by_key(|&j| (!lists.identities[j].user_supplied, j));
    candidates.dedup();
    let owner = lists.owner_of(reg);
    for i in candidates {
        let id = &lists.identities[i];
        if owner == Some(i) || id.owns(reg) {
            continue;
        }
        let exact = id
            .labels
            .iter()
            .zip(&id.ordinary)
            .find(|(b, ord)| **b == label && !**ord && b.len() >= 3)
            .map(|(b, _)| (b.clone(), LookAlike::OtherDomain));
        if let Some((brand, how)) = lookalikes.iter().find(|(j, _, _)| *j == i).map(|(_, b, h)| (b.clone(), *h)).or(exact) {
            // A look-alike needs a domain that is neither established nor a known name; under
            // a restricted suffix only a small edit (a coincidence of names) is forgiven.
            let forgiven = match &established {
                Some(Established::Own(_)) | Some(Established::Popular) => true,
                Some(Established::Restricted(_)) => how.is_edit(),
                None => false,
            };
            if forgiven {
                if let Some(e) = &established {
                    benign.push(Signal {
                        analyser: Analyser::Sender,
                        kind: SignalKind::Established,
                        score: 0,
                        what: format!("{reg} resembles {} ({brand}: {}) but is established: {}", id.name, how.how(), e.why(&ctx.lists))
                            .into(),
                    });
                }
                continue;
            }
            found.push(Signal {
                analyser: Analyser::Impersonation,
                kind: SignalKind::LookAlikeSender,
                score: if id.user_supplied { 3 } else { how.score() },
                what: format!("sender domain {reg} looks like {} ({brand}: {})", id.name, how.how()).into(),
            });
            continue;
        }
        if !display.is_empty() && names_identity(&display_parts, id) {
            let (score, on) = if freemail {
                (3, format!("{reg} (free webmail)"))
            } else if id.user_supplied {
                (3, reg.to_string())
            } else {
                (2, reg.to_string())
            };
            found.push(Signal {
                analyser: Analyser::Impersonation,
                kind: SignalKind::DisplayName,
                score,
                what: format!("display name \"{display}\" claims {} but the address is on {on}", id.name).into(),
            });
        }
    }
    let mut seen_hosts: Vec<&str> = Vec::new();
    for u in &a.urls {
        if seen_hosts.contains(&&*u.host) {
            continue;
        }
        seen_hosts.push(&u.host);
        let host = decode_punycode(&u.host);
        let host_reg = registrable(&host);
        if host_reg == reg || ctx.lists.is_established(host_reg) {
            continue;
        }
        let l = host_reg.split('.').next().unwrap_or("");
        let near = ctx.lookalikes_of(l);
        if let Some(id) = near.iter().map(|(j, _, _)| &ctx.lists.identities[*j]).find(|id| !id.owns(host_reg)) {
            if l != label {
                found.push(Signal {
                    analyser: Analyser::Impersonation,
                    kind: SignalKind::LookAlikeLink,
                    score: 2,
                    what: format!("links to {host_reg}, which looks like {}", id.name).into(),
                });
            }
            break;
        }
    }
    if let Some(rt) = a.reply_to.iter().find(|r| registrable(r.rsplit('@').next().unwrap_or("")) != reg) {
        let rt_dom = registrable(rt.rsplit('@').next().unwrap_or("")).to_string();
        let score = if ctx.lists.is_freemail(&rt_dom) && !freemail { 2 } else { 1 };
        found.push(Signal {
            analyser: Analyser::Impersonation,
            kind: SignalKind::ReplyTo,
            score,
            what: format!("replies go to {rt_dom}, not {reg}").into(),
        });
    }
    let claims = found.iter().any(|s| strong_impersonation(s.kind));
    if let AuthVerdict::Fail(why) = auth
        && claims
        && !legit_outlet
    {
        found.push(Signal {
            analyser: Analyser::Impersonation,
            kind: SignalKind::AuthFailure,
            score: 1,
            what: format!("the receiving gateway's authentication of {reg} failed ({why})").into(),
        });
    }
    if established.is_none()
        && !freemail
        && found.iter().all(|s| s.score < 3)
        && let Some(w) =
            PERSONA_WORDS.iter().find(|w| w.len() >= 4 && label.len() > w.len() + 2 && (label.ends_with(**w) || label.starts_with(**w)))
    {
        found.push(Signal {
            analyser: Analyser::Impersonation,
            kind: SignalKind::StyledAsOutlet,
            score: 1,
            what: format!("{reg} is styled as a news outlet (\"{w}\") but is not a known one").into(),
        });
    }
    if !legit_outlet && found.iter().all(|s| s.score < 3) {
        // The name's words once, then each persona word looked up among them (the list's
        // order decides which is named).
        let lower = display.to_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|t| (4..=13).contains(&t.len())).collect();
        if let Some(w) = PERSONA_WORDS.iter().find(|w| words.contains(w)) {
            found.push(Signal {
                analyser: Analyser::Impersonation,
                kind: SignalKind::PersonaName,
                score: 1,
                what: format!("display name presents a journalist or outlet (\"{w}\") on {reg}, not a known outlet").into(),
            });
        }
    }
    let mut total = 0u8;
    for mut s in found {
        let room = 4u8.saturating_sub(total);
        if room == 0 {
            break;
        }
        s.score = s.score.min(room);
        total += s.score;
        a.signals.push(s);
    }
    benign.truncate(2);
    a.signals.extend(benign);
    a.from = Some(from);
}

/// A display name's words, by part (parts split at `,()|/-<>[]`), in one list.
struct DisplayParts<'a> {
    words: Vec<&'a str>,
    /// Where each part's words end in `words`.
    ends: Vec<usize>,
}

impl<'a> DisplayParts<'a> {
    fn of(name: &'a str) -> DisplayParts<'a> {
        let mut parts = DisplayParts { words: Vec::new(), ends: Vec::new() };
        for part in name.split(part_separator) {
            parts.words.extend(part.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()));
            parts.ends.push(parts.words.len());
        }
        parts
    }

    fn parts(&self) -> impl Iterator<Item = &[&'a str]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.words[a..b])
    }
}

/// Where a display name's parts end. A `match`, not a slice of separators (which is tested
/// element by element): every character of every sender's name is tested.
fn part_separator(c: char) -> bool {
    matches!(c, ',' | '(' | ')' | '|' | '/' | '-' | '<' | '>' | '[' | ']')
}

/// Whether a display name (as a confusable skeleton) names `identity`: its words appear
/// together within one part of the name (parts split at `,()|/-`); a name starting "The"
/// (The Times) must start its part or follow "the", so "Financial Times" is not The Times.
fn names_identity(display_parts: &DisplayParts<'_>, identity: &Identity) -> bool {
    let name_words = &identity.name_words;
    if name_words.is_empty() {
        return false;
    }
    for words in display_parts.parts() {
        if words.len() < name_words.len() {
            continue;
        }
        for i in 0..=words.len() - name_words.len() {
            if words[i..i + name_words.len()].iter().zip(name_words).all(|(a, b)| *a == b.as_str())
                && (!identity.name_has_the || i == 0 || words[i - 1] == "the")
            {
                return true;
            }
        }
    }
    false
}

pub use portcullis_mailbox::message::clip;

//! Finds reconnaissance mail campaigns — hidden beacons, impersonated journalists and
//! outlets, look-alike domains, mass-mailing infrastructure — names every targeted member
//! and grades each recipient received / opened / clicked / compromised against the
//! institution's logs.
//!
//! Data flow: [`portcullis_mailbox`] reads files into bounded messages → [`analyse`] (in
//! parallel: beacons, impersonation, bulk headers; bodies dropped) → de-duplication by
//! Message-ID → [`campaign`] (novelty in time order, protected recipients, clustering,
//! campaign signals, severity) → [`assemble`] (campaign records) → [`grade`] (logs read by
//! the hunt readers) → [`judge`] (ATT&CK, PHIA judgement, attribution) → [`Report`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use portcullis_event::text_hash::TextHash;
use portcullis_mailbox::{FileKind, Location};
use rayon::prelude::*;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

pub mod analyse;
pub mod assemble;
pub mod campaign;
pub mod domain;
pub mod grade;
pub mod html;
pub mod judge;
pub mod members;
pub mod url;

pub use analyse::{Analysed, Analyser, Signal, SignalKind};
pub use campaign::Severity;
pub use domain::Lists;
pub use grade::{Coverage, Evidence, Grade};
pub use members::Members;

/// What to look for and where.
pub struct Options {
    pub members: Members,
    pub lists: Lists,
    /// The institution's own domains; inferred from the recipients when empty.
    pub internal_domains: Vec<String>,
    /// Logs to grade recipients with.
    pub logs: Vec<PathBuf>,
    pub threads: usize,
    /// Only read and parse (benchmark baseline).
    pub parse_only: bool,
    /// Indicators (built-in intel and `--iocs`) to check each campaign's infrastructure against.
    pub iocs: Option<portcullis_intel::IocSet>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: Members::default(),
            lists: Lists::builtin(),
            internal_domains: Vec::new(),
            logs: Vec::new(),
            threads: 0,
            parse_only: false,
            iocs: None,
        }
    }
}

/// A sender account of a campaign.
#[derive(Clone, Debug, Serialize)]
pub struct Sender {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub messages: usize,
}

/// One recipient of a campaign and how far the campaign got with them.
#[derive(Clone, Debug, Serialize)]
pub struct Recipient {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub grade: Grade,
    pub messages: usize,
    pub first_received: Option<String>,
    pub evidence: Vec<Evidence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A signal as it appears across a campaign's messages.
#[derive(Clone, Debug, Serialize)]
pub struct SignalSummary {
    pub analyser: Analyser,
    pub kind: SignalKind,
    pub score: u8,
    pub what: String,
    pub messages: usize,
}

/// An indicator the campaign leaves, for sharing and for hunting elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Ioc {
    /// `domain`, `ipv4`/`ipv6`, `email`, `url_template`, `sha256`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
}

/// An attachment a campaign carried.
#[derive(Clone, Debug, Serialize)]
pub struct AttachmentSummary {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub messages: usize,
}

/// A campaign: messages sharing infrastructure, template or skeleton.
#[derive(Clone, Debug, Serialize)]
pub struct Campaign {
    pub kind: &'static str,
    pub id: String,
    pub severity: Severity,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub messages: usize,
    pub senders: Vec<Sender>,
    pub domains: Vec<String>,
    pub sending_ips: Vec<String>,
    pub relays: Vec<String>,
    pub url_templates: Vec<String>,
    pub subjects: Vec<String>,
    /// Attachments seen in its messages (distinct by hash).
    pub attachments: Vec<AttachmentSummary>,
    pub members_targeted: usize,
    pub recipients: Vec<Recipient>,
    pub grades: BTreeMap<&'static str, usize>,
    pub signals: Vec<SignalSummary>,
    pub iocs: Vec<Ioc>,
    /// What the supplied logs allow to be said about opens, clicks and compromise.
    pub assessment: String,
    /// ATT&CK techniques the campaign shows, with names.
    pub attack: Vec<portcullis_intel::attack::Technique>,
    /// "This is a targeted reconnaissance campaign" on the PHIA yardstick, with confidence and reasons.
    pub judgement: portcullis_intel::phia::Assessment,
    /// Intel that matched its infrastructure (`indicator (type) — context`).
    pub intel_matches: Vec<String>,
    /// Which known actor the evidence points at, and how strongly; never more than it supports.
    pub attribution: Vec<String>,
    /// Where to read examples of its messages.
    pub examples: Vec<String>,
}

/// One mail file read.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub kind: &'static str,
    pub bytes: u64,
    pub messages: usize,
    pub unreadable: usize,
}

/// Everything a run found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub bytes: u64,
    pub messages: usize,
    /// Copies of a message already seen (same Message-ID), merged.
    pub duplicates: usize,
    /// Messages that could not be read at all: where and why (first 100) and how many.
    pub unreadable: Vec<String>,
    pub unreadable_count: usize,
    /// Decoding problems met, by kind (broken base64, unknown charset…).
    pub problems: BTreeMap<&'static str, u64>,
    pub internal_domains: Vec<String>,
    pub members_loaded: usize,
    /// Messages by severity.
    pub severities: BTreeMap<&'static str, usize>,
    pub campaigns: Vec<Campaign>,
    pub coverage: Option<Coverage>,
    pub errors: Vec<String>,
}

/// Messages analysed together by one task of the pool.
const BATCH_BYTES: usize = 1 << 20;
/// Bytes of one file's messages waiting for the pool at most; past it the file's own
/// thread analyses the next batch itself (which also bounds memory).
const BYTES_IN_FLIGHT: usize = 16 << 20;

/// Reads, analyses and grades.
pub fn run(paths: &[PathBuf], opts: &Options, progress: &(dyn Fn(u64) + Sync)) -> Report {
    let mut report = Report { members_loaded: opts.members.count, ..Report::default() };
    let (mut files, errors) = portcullis_mailbox::collect_files(paths);
    report.errors.extend(errors.into_iter().map(|(_, e)| e));
    // Largest first, so one big mailbox does not start last.
    // Each file's size is read once, not at every comparison: a Maildir holds many files.
    files.sort_by_cached_key(|f| std::cmp::Reverse(std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)));
    let done = AtomicU64::new(0);
    let unreadable = Mutex::new((Vec::<String>::new(), 0usize));
    let ctx_lists = &opts.lists;
    let ctx = analyse::Context::new(
        ctx_lists.clone(),
        opts.internal_domains.iter().map(|d| url::registrable(&d.to_ascii_lowercase()).to_string()).collect(),
    );
    // Boxed: the batches analysed in parallel are joined into one corpus by moving pointers,
    // not copying each ~500-byte record (and touching that much fresh memory) again.
    type Analysis = Result<Box<Analysed>, (Location, String)>;
    type PerFile = (Option<FileReport>, Vec<Vec<Analysis>>, Vec<&'static str>, Option<String>);
    let per_file: Vec<PerFile> = files
        .par_iter()
        .map(|path| {
            // The file's thread reads and splits; its batches are analysed by the pool while
            // it reads on (a batch is done here when too many bytes already wait), and put
            // back in file order at the end.
            let analysed: Mutex<Vec<(usize, Vec<Analysis>)>> = Mutex::new(Vec::new());
            let bytes_in_flight = AtomicUsize::new(0);
            let alone = rayon::current_num_threads() <= 1;
            let analyse_batch = |index: usize, batch: Vec<(Location, Vec<u8>, u64)>| {
                let results: Vec<Analysis> = batch
                    .into_iter()
                    .map(|(loc, raw, dropped)| {
                        let mut mail = portcullis_mailbox::parse(&raw).map_err(|e| (loc.clone(), e.to_string()))?;
                        if dropped > 0 {
                            // A mailbox reader dropped header lines over 1 MiB: the same evasion.
                            mail.header_dropped = Some(mail.header_dropped.unwrap_or(0) + dropped as usize);
                        }
                        if opts.parse_only {
                            return Ok(Box::new(Analysed::placeholder(loc, mail.problems)));
                        }
                        let a = analyse::analyse(mail, loc, xxh3_64(&raw), &ctx);
                        Ok(Box::new(slim(a)))
                    })
                    .collect();
                analysed.lock().unwrap_or_else(|p| p.into_inner()).push((index, results));
            };
            let mut batch: Vec<(Location, Vec<u8>, u64)> = Vec::new();
            let mut batch_bytes = 0usize;
            let mut batches = 0usize;
            let result = rayon::in_place_scope(|scope| {
                let mut hand_over = |batch: Vec<(Location, Vec<u8>, u64)>, bytes: usize| {
                    let index = batches;
                    batches += 1;
                    if alone || bytes_in_flight.load(Ordering::Acquire) + bytes > BYTES_IN_FLIGHT {
                        analyse_batch(index, batch);
                    } else {
                        bytes_in_flight.fetch_add(bytes, Ordering::AcqRel);
                        let (analyse_batch, bytes_in_flight) = (&analyse_batch, &bytes_in_flight);
                        scope.spawn(move |_| {
                            analyse_batch(index, batch);
                            bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
                        });
                    }
                };
                let result = portcullis_mailbox::read_file(path, |loc, bytes, dropped| {
                    batch_bytes += bytes.len();
                    batch.push((loc, bytes.to_vec(), dropped));
                    if batch_bytes >= BATCH_BYTES {
                        hand_over(std::mem::take(&mut batch), batch_bytes);
                        batch_bytes = 0;
                    }
                });
                if !batch.is_empty() {
                    hand_over(std::mem::take(&mut batch), batch_bytes);
                }
                result
            });
            let mut analysed = analysed.into_inner().unwrap_or_else(|p| p.into_inner());
            analysed.sort_unstable_by_key(|(index, _)| *index);
            let mut out = Vec::new();
            let mut problems = Vec::new();
            let mut bad = 0usize;
            for (_, results) in analysed {
                for r in &results {
                    match r {
                        Ok(a) => problems.extend(a.problems.iter().copied()),
                        Err((loc, why)) => {
                            bad += 1;
                            let mut u = unreadable.lock().unwrap_or_else(|p| p.into_inner());
                            u.1 += 1;
                            if u.0.len() < 100 {
                                u.0.push(format!("{loc}: {why}"));
                            }
                        }
                    }
                }
                // Moved once, into the corpus below (each message is a few hundred bytes).
                if !opts.parse_only && !results.is_empty() {
                    out.push(results);
                }
            }
            let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            progress(done.fetch_add(bytes, Ordering::Relaxed) + bytes);
            match result {
                Ok(s) => {
                    if !s.skipped.is_empty() {
                        let mut u = unreadable.lock().unwrap_or_else(|p| p.into_inner());
                        u.1 += s.skipped.len();
                        for (loc, why) in &s.skipped {
                            if u.0.len() < 100 {
                                u.0.push(format!("{loc}: {why}"));
                            }
                        }
                    }
                    if s.long_lines > 0 {
                        problems.push("lines over 1 MiB dropped");
                    }
                    let kind = match s.kind {
                        FileKind::Eml => "eml",
                        FileKind::Mbox => "mbox",
                        FileKind::NotMail => return (None, out, problems, None),
                    };
                    let fr = FileReport {
                        path: path.display().to_string(),
                        kind,
                        bytes: s.bytes,
                        messages: s.messages,
                        unreadable: bad + s.skipped.len(),
                    };
                    (Some(fr), out, problems, None)
                }
                Err(e) => (None, out, problems, Some(format!("{}: {e}", path.display()))),
            }
        })
        .collect();
    let mut messages: Vec<Box<Analysed>> = Vec::with_capacity(per_file.iter().flat_map(|f| &f.1).map(Vec::len).sum());
    for (fr, batches, problems, err) in per_file {
        if let Some(fr) = fr {
            report.bytes += fr.bytes;
            report.files.push(fr);
        }
        for b in batches {
            messages.extend(b.into_iter().flatten());
        }
        for p in problems {
            *report.problems.entry(p).or_default() += 1;
        }
        report.errors.extend(err);
    }
    let u = unreadable.into_inner().unwrap_or_else(|p| p.into_inner());
    report.unreadable = u.0;
    report.unreadable_count = u.1;
    report.unreadable.sort();
    report.files.sort_by(|a, b| a.path.cmp(&b.path));
    report.messages =
        report.files.iter().map(|f| f.messages).sum::<usize>() - report.unreadable_count.min(report.files.iter().map(|f| f.messages).sum());
    if opts.parse_only {
        return report;
    }

    // The same message from several exports (journal, mailbox, user report) is one message:
    // the copy read first (largest file first, then path order) stays, later copies add
    // their recipients.
    // In place: a later copy gives its recipients to the first and is dropped. Copies are
    // found by sorting (message-id hash, index) pairs on every core: the first of a run is
    // the copy read first, and the rest give it their recipients in the order they were read.
    let mut keep = vec![true; messages.len()];
    let mut keys: Vec<(u128, usize)> = messages.par_iter().enumerate().map(|(i, m)| (m.id_hash, i)).collect();
    keys.par_sort_unstable();
    for run in keys.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        let j = run[0].1;
        for &(_, i) in &run[1..] {
            report.duplicates += 1;
            keep[i] = false;
            let rs = std::mem::take(&mut messages[i].recipients);
            let last = &mut messages[j];
            for r in rs {
                if !last.recipients.contains(&r) {
                    last.recipients.push(r);
                }
            }
        }
    }
    drop(keys);
    let mut k = keep.iter();
    messages.retain(|_| *k.next().unwrap_or(&true));

    let mut ctx = ctx;
    // One pass over the corpus gathers what finding the institution's domain (unless given)
    // and the relays in front of it need, and which messages either changes; only those
    // are touched again.
    let inferring = ctx.internal.is_empty();
    let seen = corpus_seen(&messages, inferring);
    if inferring {
        ctx.internal = most_addressed(seen.addressed);
    }
    report.internal_domains = ctx.internal.clone();
    const INTERNAL: u8 = 1;
    const RELAYED: u8 = 2;
    let mut touch = vec![0u8; messages.len()];
    if inferring {
        for (i, domain) in seen.impersonations {
            if ctx.is_internal(domain) {
                touch[i] |= INTERNAL;
            }
        }
    }
    let mut relays = std::collections::HashSet::new();
    for (ip, (domains, sent)) in seen.by_ip {
        if is_relay(&domains, &ctx.lists) {
            relays.insert(ip);
            sent.into_iter().for_each(|i| touch[i] |= RELAYED);
        }
    }
    messages.par_iter_mut().zip(touch.par_iter()).filter(|(_, t)| **t != 0).for_each(|(m, t)| {
        // Internal senders were analysed before their domain was known: their signals go.
        if t & INTERNAL != 0 {
            m.signals.retain(|s| s.analyser != Analyser::Impersonation);
        }
        // A relay in front of the institution is not the sender: the next public hop is.
        if t & RELAYED != 0 {
            m.sending_ip = m.public_hops.iter().find(|ip| !relays.contains(ip)).copied();
        }
    });
    // Novelty (a walk in time order, on one thread), targeting and clustering read the
    // messages independently, so they run side by side; their signals are added afterwards
    // in that order.
    let (novel, (targeted, (groups, clustered))) = rayon::join(
        || campaign::novelty_signals(&messages, &ctx),
        || {
            rayon::join(
                || campaign::targeting_signals(&messages, &opts.members),
                || {
                    let groups = campaign::cluster(&messages, &ctx);
                    // Each cluster's signals are worked out in parallel; clusters share no message.
                    let added: Vec<Vec<analyse::Signal>> = groups.par_iter().map(|g| campaign::cluster_signal_set(&messages, g)).collect();
                    (groups, added)
                },
            )
        },
    );
    for (i, signals) in novel {
        messages[i].signals.extend(signals);
    }
    for (i, signal) in targeted {
        messages[i].signals.push(signal);
    }
    for (g, added) in groups.iter().zip(clustered) {
        campaign::add_signals(&mut messages, g, &added);
    }
    let severities: Vec<Severity> = messages.par_iter().map(|m| campaign::message_severity(m)).collect();
    for s in &severities {
        *report.severities.entry(s.as_str()).or_default() += 1;
    }
    let mut campaigns: Vec<Campaign> =
        groups.par_iter().map(|g| assemble::build_campaign(&messages, g, &opts.members, &severities)).collect();

    if !opts.logs.is_empty() {
        let keys: Vec<grade::CampaignKeys> = groups.iter().map(|g| assemble::campaign_keys(&messages, g)).collect();
        let (graded, coverage) =
            grade::grade(&keys, &opts.logs, if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads });
        for (c, g) in campaigns.iter_mut().zip(graded) {
            assemble::apply_grades(c, g);
        }
        report.coverage = Some(coverage);
    } else {
        for c in campaigns.iter_mut() {
            c.assessment =
                "no logs supplied (--logs): every recipient is graded 'received'; opens, clicks and compromise were not assessed".into();
        }
    }
    // A large corpus's messages are freed on a thread of their own while the campaigns are
    // judged and printed, rather than one by one before returning.
    std::thread::spawn(move || drop(messages));
    for c in campaigns.iter_mut() {
        judge::judge(c, opts.iocs.as_ref());
    }
    campaigns.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.members_targeted.cmp(&a.members_targeted))
            .then(b.messages.cmp(&a.messages))
            .then(a.id.cmp(&b.id))
    });
    report.campaigns = campaigns;
    report
}

impl Analysed {
    fn placeholder(location: Location, problems: Vec<&'static str>) -> Analysed {
        Analysed {
            location,
            message_id: String::new(),
            id_hash: 0,
            date: None,
            from: None,
            reply_to: Vec::new(),
            recipients: Vec::new(),
            subject: String::new(),
            sending_ip: None,
            bulk_relay: None,
            list_mail: false,
            automatic: false,
            read_receipt: false,
            public_hops: Vec::new(),
            urls: Vec::new(),
            skeleton: None,
            attachments: Vec::new(),
            signals: Vec::new(),
            problems,
            size: 0,
        }
    }
}

/// Drops what only campaign candidates need (URLs, attachments, the text of signals), to keep
/// a large corpus small in memory.
fn slim(mut a: Analysed) -> Analysed {
    if a.score(Analyser::Beacon) == 0 && a.score(Analyser::Impersonation) < 2 && a.score(Analyser::Evasion) == 0 {
        a.urls = Vec::new();
        a.attachments = Vec::new();
        // Only a campaign's record and clustering read these (its id, senders, indicators,
        // subjects and relays); copies of one message are found by `id_hash`.
        a.message_id = String::new();
        a.subject = String::new();
        a.reply_to = Vec::new();
        a.bulk_relay = None;
        if let Some(f) = &mut a.from {
            f.name = None;
        }
        // Not a campaign candidate: its signals count towards its severity by kind and
        // score, but their text is only ever read in a campaign's summary.
        for s in &mut a.signals {
            // The standard library's empty `Arc<str>` is static: nothing is allocated.
            s.what = Default::default();
        }
    } else {
        a.urls.shrink_to_fit();
        for u in &mut a.urls {
            u.host = shared_text(&u.host);
            u.template = shared_text(&u.template);
        }
        for s in &mut a.signals {
            s.what = shared_text(&s.what);
        }
    }
    // Signals were pushed one at a time (room for four, then eight); most messages get at
    // most one more, from the corpus-wide analysis.
    a.signals.shrink_to_fit();
    a
}

/// Texts kept per thread for [`shared_text`]; past this many the memory starts afresh.
const SHARED_TEXTS: usize = 4096;

/// One copy of `text` for the messages this thread analyses: the copies of a newsletter, one
/// per recipient, explain themselves in the same words, and a large corpus would otherwise
/// hold each text once per copy. A text not met before is kept as it is (not copied).
fn shared_text(text: &std::sync::Arc<str>) -> std::sync::Arc<str> {
    thread_local! {
        static TEXTS: std::cell::RefCell<std::collections::HashSet<std::sync::Arc<str>, TextHash>> = Default::default();
    }
    TEXTS.with_borrow_mut(|texts| {
        if let Some(t) = texts.get(&**text) {
            return t.clone();
        }
        if texts.len() >= SHARED_TEXTS {
            texts.clear();
        }
        texts.insert(text.clone());
        text.clone()
    })
}

/// A hop that hands over mail from this many different sender domains is a relay in front
/// of the institution (its filtering service, a forwarder), not a sender; so is one that
/// hands over mail from [`RELAY_SOME`] domains of which [`RELAY_ESTABLISHED`] are
/// established (a forwarder carries well-known senders' mail; a campaign's server does not).
const RELAY_DOMAINS: usize = 20;
const RELAY_SOME: usize = 4;
const RELAY_ESTABLISHED: usize = 2;

/// What one pass over the corpus gathers for finding the institution's domain and the relays
/// in front of it, and which messages either can change.
#[derive(Default)]
struct CorpusSeen<'m> {
    /// Messages addressed to each recipient domain (when counted).
    addressed: HashMap<&'m str, usize, TextHash>,
    /// Per sending address: the sender domains seen from it (up to [`RELAY_DOMAINS`]) and the
    /// messages it sent.
    by_ip: HashMap<std::net::IpAddr, (BTreeSet<&'m str>, Vec<usize>), TextHash>,
    /// Messages with an impersonation signal, and their sender's domain.
    impersonations: Vec<(usize, &'m str)>,
}

/// Gathers [`CorpusSeen`] on every thread and joins it; recipient domains only when
/// `count_recipients`.
fn corpus_seen(messages: &[Box<Analysed>], count_recipients: bool) -> CorpusSeen<'_> {
    fn add<'m>(d: &mut BTreeSet<&'m str>, domain: &'m str) {
        if d.len() < RELAY_DOMAINS {
            d.insert(domain);
        }
    }
    fn domain(address: &str) -> &str {
        url::registrable(address.rsplit('@').next().unwrap_or(""))
    }
    messages
        .par_iter()
        .enumerate()
        .fold(CorpusSeen::default, |mut seen, (i, m)| {
            if let Some(ip) = m.sending_ip {
                let (d, sent) = seen.by_ip.entry(ip).or_default();
                // Once full, the address is a relay whatever else it sends.
                if d.len() < RELAY_DOMAINS {
                    add(d, url::registrable(m.from_domain()));
                }
                sent.push(i);
            }
            if m.signals.iter().any(|s| s.analyser == Analyser::Impersonation) {
                seen.impersonations.push((i, m.from_domain()));
            }
            if count_recipients && let [first, rest @ ..] = m.recipients.as_slice() {
                let d = domain(first);
                // Most messages: one recipient, or all in one domain; counted without a list.
                if rest.iter().all(|r| domain(r) == d) {
                    *seen.addressed.entry(d).or_default() += 1;
                } else {
                    // Each domain once per message (sorted, not a linear search: a hostile
                    // message may name any number of recipients).
                    let mut domains: Vec<&str> = m.recipients.iter().map(|r| domain(r)).collect();
                    domains.sort_unstable();
                    domains.dedup();
                    for d in domains {
                        *seen.addressed.entry(d).or_default() += 1;
                    }
                }
            }
            seen
        })
        .reduce(CorpusSeen::default, |mut a, b| {
            for (d, n) in b.addressed {
                *a.addressed.entry(d).or_default() += n;
            }
            for (ip, (ds, sent)) in b.by_ip {
                let (d, s) = a.by_ip.entry(ip).or_default();
                for x in ds {
                    add(d, x);
                }
                s.extend(sent);
            }
            a.impersonations.extend(b.impersonations);
            a
        })
}

/// Whether a sending address that handed over mail from these sender domains is a relay
/// (see [`RELAY_DOMAINS`]). Its messages are then credited to the next public hop below it,
/// so one forwarder does not join every message into one campaign or become an indicator.
fn is_relay(domains: &BTreeSet<&str>, lists: &Lists) -> bool {
    domains.len() >= RELAY_DOMAINS
        || (domains.len() >= RELAY_SOME && domains.iter().filter(|x| lists.is_established(x)).count() >= RELAY_ESTABLISHED)
}

/// The domain most messages are addressed to is the institution's own.
fn most_addressed(counts: HashMap<&str, usize, TextHash>) -> Vec<String> {
    counts
        .into_iter()
        .filter(|(d, _)| !d.is_empty())
        .max_by_key(|(d, n)| (*n, std::cmp::Reverse(*d)))
        .map(|(d, _)| vec![d.to_string()])
        .unwrap_or_default()
}

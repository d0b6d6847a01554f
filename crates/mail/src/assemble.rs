//! Builds a campaign record from a cluster of analysed messages (senders, infrastructure,
//! recipients, signal summaries, indicators) and applies the grades the logs support.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use portcullis_event::Timestamp;

use crate::analyse::{Analysed, Analyser, SignalKind};
use crate::campaign::{self, Severity};
use crate::grade::{self, Grade};
use crate::members::Members;
use crate::url;
use crate::{AttachmentSummary, Campaign, Ioc, Recipient, Sender, SignalSummary};
use portcullis_event::text_hash::TextHash;

/// Keys here are text from the messages: hashed with this process's seed.
type HashMap<K, V> = std::collections::HashMap<K, V, TextHash>;
type HashSet<K> = std::collections::HashSet<K, TextHash>;

fn ts(t: Option<i64>) -> Option<String> {
    t.map(|t| Timestamp(t).to_string())
}

/// The campaign record for one cluster of messages (every recipient graded `received`);
/// `severities` are the messages' own ([`campaign::message_severity`]), by index.
pub fn build_campaign(messages: &[Box<Analysed>], group: &[usize], members: &Members, severities: &[Severity]) -> Campaign {
    use rayon::prelude::*;
    let ms: Vec<&Analysed> = group.iter().map(|&i| &*messages[i]).collect();
    fn tally_of<'m>(ms: &[&'m Analysed], group: &[usize], severities: &[Severity]) -> Tally<'m> {
        let mut t = Tally::default();
        for (m, &i) in ms.iter().zip(group) {
            t.add(m, severities[i]);
        }
        t.end_run();
        t
    }
    // A large cluster (a newsletter's year) is counted in slices on every core and the
    // slices merged in order, so the first sender name or signal kind met still wins.
    let tally = if ms.len() > TALLY_SLICE {
        ms.par_chunks(TALLY_SLICE)
            .zip(group.par_chunks(TALLY_SLICE))
            .map(|(m, g)| tally_of(m, g, severities))
            .reduce_with(Tally::merge)
            .unwrap_or_default()
    } else {
        tally_of(&ms, group, severities)
    };
    let Tally {
        first,
        last,
        senders,
        domains,
        ips,
        relays,
        templates,
        subjects,
        recipients,
        signals,
        iocs,
        ip_iocs,
        attachments,
        severity,
        run: _,
    } = tally;
    let ips: BTreeSet<String> = ips.into_iter().map(|ip| ip.to_string()).collect();
    let relays: Vec<String> = relays.into_iter().map(str::to_string).collect();
    let mut iocs: BTreeSet<Ioc> = iocs.into_iter().map(|(kind, value)| Ioc { kind, value: value.to_string() }).collect();
    iocs.extend(ip_iocs.into_iter().map(|ip| Ioc { kind: if ip.is_ipv4() { "ipv4" } else { "ipv6" }, value: ip.to_string() }));
    let mut templates: Vec<(&str, usize)> = templates.into_iter().collect();
    templates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut subjects: Vec<(&str, usize)> = subjects.into_iter().collect();
    subjects.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    // Per-message signal texts vary (names, counts); keep the most frequent per analyser.
    let mut signals: Vec<SignalSummary> = signals
        .into_iter()
        .map(|((analyser, what), (kind, score, messages))| SignalSummary { analyser, kind, score, what: what.to_string(), messages })
        .collect();
    signals.sort_by(|a, b| a.analyser.cmp(&b.analyser).then(b.messages.cmp(&a.messages)).then(a.what.cmp(&b.what)));
    let mut per: HashMap<Analyser, usize> = HashMap::default();
    signals.retain(|s| {
        let n = per.entry(s.analyser).or_default();
        *n += 1;
        *n <= 4
    });
    let mut recipients: Vec<(&str, (usize, Option<i64>))> = recipients.into_iter().collect();
    recipients.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let recipients: Vec<Recipient> = recipients
        .into_iter()
        .map(|(address, (messages, first))| Recipient {
            member: members.name_of(address).map(String::from),
            address: address.to_string(),
            grade: Grade::Received,
            messages,
            first_received: ts(first),
            evidence: Vec::new(),
            notes: Vec::new(),
        })
        .collect();
    let members_targeted = recipients.iter().filter(|r| r.member.is_some()).count();
    let mut examples: Vec<String> = ms.iter().take(3).map(|m| m.location.to_string()).collect();
    examples.sort();
    let mut c = Campaign {
        kind: "campaign",
        id: campaign::campaign_id(messages, group),
        severity,
        first_seen: ts(first),
        last_seen: ts(last),
        messages: ms.len(),
        senders: senders.into_values().collect(),
        domains: domains.into_iter().filter(|d| !d.is_empty()).map(str::to_string).collect(),
        sending_ips: ips.into_iter().collect(),
        relays,
        url_templates: templates.into_iter().take(10).map(|(t, _)| t.to_string()).collect(),
        subjects: subjects.into_iter().take(5).map(|(s, _)| s.to_string()).collect(),
        attachments: attachments.into_values().take(50).collect(),
        members_targeted,
        recipients,
        grades: BTreeMap::new(),
        signals,
        iocs: iocs.into_iter().collect(),
        assessment: String::new(),
        attack: Vec::new(),
        judgement: portcullis_intel::phia::assess("", 0, &[], "low"),
        intel_matches: Vec::new(),
        attribution: Vec::new(),
        examples,
    };
    count_grades(&mut c);
    c
}

/// Messages a slice of a cluster holds when a large one is counted on every core.
const TALLY_SLICE: usize = 4096;

/// What a campaign record counts over its messages, borrowed from them while counting (a
/// large cluster repeats the same few values thousands of times) and owned once at the end.
#[derive(Default)]
struct Tally<'m> {
    first: Option<i64>,
    last: Option<i64>,
    senders: BTreeMap<&'m str, Sender>,
    domains: BTreeSet<&'m str>,
    ips: HashSet<IpAddr>,
    relays: BTreeSet<&'m str>,
    templates: HashMap<&'m str, usize>,
    subjects: HashMap<&'m str, usize>,
    recipients: HashMap<&'m str, (usize, Option<i64>)>,
    signals: HashMap<(Analyser, &'m str), (SignalKind, u8, usize)>,
    iocs: HashSet<(&'static str, &'m str)>,
    ip_iocs: HashSet<IpAddr>,
    attachments: BTreeMap<&'m str, AttachmentSummary>,
    severity: Severity,
    /// A run of messages alike in everything counted per message but their recipients,
    /// times and addresses (a newsletter's copies): its first message, and how many. It is
    /// counted once, times the run's length, when a different message ends it.
    run: Option<(&'m Analysed, usize)>,
}

/// Whether `b` adds to a tally exactly what `a` adds, apart from its date, sending address
/// and recipients.
fn alike(a: &Analysed, b: &Analysed) -> bool {
    a.from.as_ref().map(|f| &f.address) == b.from.as_ref().map(|f| &f.address)
        && a.reply_to == b.reply_to
        && a.bulk_relay == b.bulk_relay
        && a.subject == b.subject
        && a.urls.len() == b.urls.len()
        && a.urls.iter().zip(&b.urls).all(|(x, y)| {
            x.template == y.template && x.host == y.host && x.beacon == y.beacon && x.tokens.is_empty() == y.tokens.is_empty()
        })
        && a.attachments.len() == b.attachments.len()
        && a.attachments.iter().zip(&b.attachments).all(|(x, y)| x.sha256 == y.sha256)
        && a.signals.len() == b.signals.len()
        && a.signals.iter().zip(&b.signals).all(|(x, y)| x.analyser == y.analyser && x.what == y.what)
}

impl<'m> Tally<'m> {
    fn add(&mut self, m: &'m Analysed, severity: Severity) {
        self.severity = self.severity.max(severity);
        let date = m.date.map(|d| d.0);
        self.first = earliest(self.first, date);
        self.last = latest(self.last, date);
        if let Some(ip) = m.sending_ip {
            self.ips.insert(ip);
            if m.bulk_relay.is_none() {
                self.ip_iocs.insert(ip);
            }
        }
        for r in &m.recipients {
            let e = self.recipients.entry(r.as_str()).or_insert((0, None));
            e.0 += 1;
            e.1 = earliest(e.1, date);
        }
        match &mut self.run {
            Some((first, n)) if alike(first, m) => *n += 1,
            _ => {
                self.end_run();
                self.run = Some((m, 1));
            }
        }
    }

    /// Counts the current run: its first message's values, `n` times over. A run's first
    /// message is met before the rest, so first-met values (a sender's name) stay the same.
    fn end_run(&mut self) {
        let Some((m, n)) = self.run.take() else { return };
        if let Some(f) = &m.from {
            match self.senders.get_mut(f.address.as_str()) {
                Some(s) => s.messages += n,
                None => {
                    self.senders.insert(&f.address, Sender { address: f.address.clone(), name: f.name.clone(), messages: n });
                }
            }
            self.domains.insert(url::registrable(f.domain()));
            self.iocs.insert(("email", &f.address));
            self.iocs.insert(("domain", url::registrable(f.domain())));
        }
        for r in &m.reply_to {
            self.iocs.insert(("email", r));
        }
        self.relays.extend(m.bulk_relay.as_deref());
        for u in &m.urls {
            *self.templates.entry(&*u.template).or_default() += n;
            self.domains.insert(url::registrable(&u.host));
            if !u.beacon && u.tokens.is_empty() {
                continue;
            }
            self.iocs.insert(("domain", &u.host));
            self.iocs.insert(("url_template", &u.template));
        }
        for a in &m.attachments {
            self.iocs.insert(("sha256", &a.sha256));
            self.attachments
                .entry(a.sha256.as_str())
                .or_insert_with(|| AttachmentSummary {
                    name: a.name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                    messages: 0,
                })
                .messages += n;
        }
        *self.subjects.entry(m.subject.as_str()).or_default() += n;
        for s in &m.signals {
            let e = self.signals.entry((s.analyser, &*s.what)).or_insert((s.kind, s.score, 0));
            e.2 += n;
        }
    }

    /// This slice's counts followed by the next slice's: where the two disagree on a
    /// first-met value (a sender's name, a signal's kind), this slice's stands.
    fn merge(mut self, mut other: Tally<'m>) -> Tally<'m> {
        self.end_run();
        other.end_run();
        self.first = earliest(self.first, other.first);
        self.last = latest(self.last, other.last);
        for (k, s) in other.senders {
            self.senders.entry(k).and_modify(|x| x.messages += s.messages).or_insert(s);
        }
        self.domains.extend(other.domains);
        self.ips.extend(other.ips);
        self.relays.extend(other.relays);
        for (k, n) in other.templates {
            *self.templates.entry(k).or_default() += n;
        }
        for (k, n) in other.subjects {
            *self.subjects.entry(k).or_default() += n;
        }
        for (k, (n, t)) in other.recipients {
            let e = self.recipients.entry(k).or_insert((0, None));
            e.0 += n;
            e.1 = earliest(e.1, t);
        }
        for (k, (kind, score, n)) in other.signals {
            self.signals.entry(k).or_insert((kind, score, 0)).2 += n;
        }
        self.iocs.extend(other.iocs);
        self.ip_iocs.extend(other.ip_iocs);
        for (k, a) in other.attachments {
            self.attachments.entry(k).and_modify(|x| x.messages += a.messages).or_insert(a);
        }
        self.severity = self.severity.max(other.severity);
        self
    }
}

/// The earlier of two times where either may be unknown.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The later of two times where either may be unknown.
fn latest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn count_grades(c: &mut Campaign) {
    c.grades.clear();
    for r in &c.recipients {
        *c.grades.entry(r.grade.as_str()).or_default() += 1;
    }
}

/// What grading looks for in the logs for one cluster: hosts, tokens, recipients, times.
pub fn campaign_keys(messages: &[Box<Analysed>], group: &[usize]) -> grade::CampaignKeys {
    let mut k = grade::CampaignKeys {
        beacon_hosts: Vec::new(),
        link_hosts: Vec::new(),
        tokens: Default::default(),
        recipients: Vec::new(),
        first_sent: Default::default(),
        infra_ips: Default::default(),
        first_seen: i64::MAX,
        last_seen: i64::MIN,
    };
    let mut rset = BTreeSet::new();
    for &i in group {
        let m = &messages[i];
        if let Some(d) = m.date {
            k.first_seen = k.first_seen.min(d.0);
            k.last_seen = k.last_seen.max(d.0);
        }
        if let Some(ip) = m.sending_ip
            && m.bulk_relay.is_none()
        {
            k.infra_ips.insert(ip.to_string());
        }
        for r in &m.recipients {
            rset.insert(r.clone());
            let t = m.date.map(|d| d.0).unwrap_or(i64::MIN);
            let e = k.first_sent.entry(r.clone()).or_insert(t);
            *e = (*e).min(t);
        }
        for u in &m.urls {
            let hosts = if u.beacon { &mut k.beacon_hosts } else { &mut k.link_hosts };
            if !hosts.iter().any(|h| **h == *u.host) {
                hosts.push(u.host.to_string());
            }
            // A token is only a recipient's when the message had one recipient.
            if m.recipients.len() == 1 {
                for t in &u.tokens {
                    if t.len() >= 6 {
                        k.tokens.insert(t.clone(), m.recipients[0].clone());
                    }
                }
            }
        }
    }
    if k.first_seen == i64::MAX {
        k.first_seen = i64::MIN;
        k.last_seen = i64::MAX;
    }
    k.recipients = rset.into_iter().collect();
    k
}

/// Puts the grades the logs support on a campaign's recipients; compromise makes it critical.
pub fn apply_grades(c: &mut Campaign, g: grade::Graded) {
    for r in c.recipients.iter_mut() {
        r.grade = g.grades.get(&r.address).copied().unwrap_or(Grade::Received);
        r.evidence = g.evidence.get(&r.address).cloned().unwrap_or_default();
        r.notes = g.notes.get(&r.address).cloned().unwrap_or_default();
    }
    if c.recipients.iter().any(|r| r.grade == Grade::Compromised) {
        c.severity = Severity::Critical;
    }
    let mut a = g.statement;
    if g.unattributed_count > 0 {
        a.push_str(&format!("; {} fetch(es) of campaign hosts name no recipient (e.g. DNS lookups)", g.unattributed_count));
    }
    c.assessment = a;
    count_grades(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyse::{Signal, UrlRef};
    use portcullis_mailbox::{Location, Mailbox};

    fn message(i: usize, from: &str, name: &str, subject: &str, kind: SignalKind, to: &str) -> Box<Analysed> {
        let mut m =
            Analysed::placeholder(Location { path: std::path::Path::new("box.mbox").into(), index: Some((i, i as u64)) }, Vec::new());
        m.from = Some(Mailbox { name: Some(name.into()), address: from.into() });
        m.subject = subject.into();
        m.recipients = vec![to.into()];
        m.date = Some(Timestamp(1_000 + i as i64));
        m.urls = vec![UrlRef {
            url_hash: 0,
            host: "t.example.org".into(),
            template: "t.example.org/{t}.gif".into(),
            tokens: vec![format!("tok{i}")],
            beacon: true,
        }];
        m.signals = vec![Signal { analyser: Analyser::Beacon, kind, score: 2, what: "hidden image from t.example.org".into() }];
        Box::new(m)
    }

    /// Runs of alike messages are counted once, times their length; the record must be the
    /// one counting message by message gives, first-met sender names and signal kinds too.
    #[test]
    fn runs_of_alike_messages_count_as_each_message_would() {
        let messages: Vec<Box<Analysed>> = vec![
            message(0, "a@news.example", "First name", "Hello", SignalKind::HiddenImage, "x@p.example"),
            message(1, "a@news.example", "Second name", "Hello", SignalKind::ReadReceipt, "y@p.example"),
            message(2, "a@news.example", "Second name", "Hello", SignalKind::HiddenImage, "x@p.example"),
            message(3, "b@news.example", "B", "Other", SignalKind::ReadReceipt, "z@p.example"),
            message(4, "a@news.example", "Third name", "Hello", SignalKind::ReadReceipt, "z@p.example"),
            message(5, "a@news.example", "Third name", "Hello", SignalKind::HiddenImage, "y@p.example"),
            message(6, "a@news.example", "Third name", "Again", SignalKind::HiddenImage, "x@p.example"),
        ];
        let group: Vec<usize> = (0..messages.len()).collect();
        let severities = vec![Severity::Low; messages.len()];
        let c = build_campaign(&messages, &group, &Members::default(), &severities);
        let a = c.senders.iter().find(|s| s.address == "a@news.example").unwrap();
        assert_eq!((a.name.as_deref(), a.messages), (Some("First name"), 6));
        assert_eq!(c.senders.iter().find(|s| s.address == "b@news.example").unwrap().messages, 1);
        assert_eq!(c.subjects, ["Hello", "Again", "Other"]);
        let beacon = c.signals.iter().find(|s| s.analyser == Analyser::Beacon).unwrap();
        assert_eq!((beacon.kind, beacon.messages), (SignalKind::HiddenImage, 7));
        let counts: Vec<(&str, usize)> = c.recipients.iter().map(|r| (r.address.as_str(), r.messages)).collect();
        assert_eq!(counts, [("x@p.example", 3), ("y@p.example", 2), ("z@p.example", 2)]);
        assert_eq!(c.url_templates, ["t.example.org/{t}.gif"]);
        assert_eq!(c.messages, 7);
    }
}

//! Builds a campaign record from a cluster of analysed messages (senders, infrastructure,
//! recipients, signal summaries, indicators) and applies the grades the logs support.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use portcullis_event::Timestamp;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::analyse::{Analysed, Analyser, SignalKind};
use crate::campaign::{self, Severity};
use crate::grade::{self, Grade};
use crate::members::Members;
use crate::url;
use crate::{AttachmentSummary, Campaign, Ioc, Recipient, Sender, SignalSummary};

fn ts(t: Option<i64>) -> Option<String> {
    t.map(|t| Timestamp(t).to_string())
}

/// The campaign record for one cluster of messages (every recipient graded `received`);
/// `severities` are the messages' own ([`campaign::message_severity`]), by index.
pub fn build_campaign(messages: &[Box<Analysed>], group: &[usize], members: &Members, severities: &[Severity]) -> Campaign {
    let ms: Vec<&Analysed> = group.iter().map(|&i| &*messages[i]).collect();
    let dates: Vec<i64> = ms.iter().filter_map(|m| m.date.map(|d| d.0)).collect();
    // Borrowed from the messages while counting (a large cluster repeats the same few values
    // thousands of times); owned once at the end.
    let mut senders: BTreeMap<&str, Sender> = BTreeMap::new();
    let mut domains: BTreeSet<&str> = BTreeSet::new();
    let mut ips: HashSet<IpAddr> = HashSet::default();
    let mut relays: BTreeSet<&str> = BTreeSet::new();
    let mut templates: HashMap<&str, usize> = HashMap::default();
    let mut subjects: HashMap<&str, usize> = HashMap::default();
    let mut recipients: HashMap<&str, (usize, Option<i64>)> = HashMap::default();
    let mut signals: HashMap<(Analyser, &str), (SignalKind, u8, usize)> = HashMap::default();
    let mut iocs: HashSet<(&'static str, &str)> = HashSet::default();
    let mut ip_iocs: HashSet<IpAddr> = HashSet::default();
    let mut attachments: BTreeMap<&str, AttachmentSummary> = BTreeMap::new();
    let mut severity = Severity::Informational;
    for (m, &i) in ms.iter().zip(group) {
        severity = severity.max(severities[i]);
        if let Some(f) = &m.from {
            match senders.get_mut(f.address.as_str()) {
                Some(s) => s.messages += 1,
                None => {
                    senders.insert(&f.address, Sender { address: f.address.clone(), name: f.name.clone(), messages: 1 });
                }
            }
            domains.insert(url::registrable(f.domain()));
            iocs.insert(("email", &f.address));
            iocs.insert(("domain", url::registrable(f.domain())));
        }
        for r in &m.reply_to {
            iocs.insert(("email", r));
        }
        if let Some(ip) = m.sending_ip {
            ips.insert(ip);
            if m.bulk_relay.is_none() {
                ip_iocs.insert(ip);
            }
        }
        relays.extend(m.bulk_relay.as_deref());
        for u in &m.urls {
            *templates.entry(u.template.as_str()).or_default() += 1;
            domains.insert(url::registrable(&u.host));
            if !u.beacon && u.tokens.is_empty() {
                continue;
            }
            iocs.insert(("domain", &u.host));
            iocs.insert(("url_template", &u.template));
        }
        for a in &m.attachments {
            iocs.insert(("sha256", &a.sha256));
            attachments
                .entry(a.sha256.as_str())
                .or_insert_with(|| AttachmentSummary {
                    name: a.name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                    messages: 0,
                })
                .messages += 1;
        }
        *subjects.entry(m.subject.as_str()).or_default() += 1;
        for r in &m.recipients {
            let e = recipients.entry(r.as_str()).or_insert((0, None));
            e.0 += 1;
            if let Some(d) = m.date {
                e.1 = Some(e.1.map_or(d.0, |x: i64| x.min(d.0)));
            }
        }
        for s in &m.signals {
            let e = signals.entry((s.analyser, s.what.as_str())).or_insert((s.kind, s.score, 0));
            e.2 += 1;
        }
    }
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
        first_seen: ts(dates.iter().min().copied()),
        last_seen: ts(dates.iter().max().copied()),
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
            if !hosts.contains(&u.host) {
                hosts.push(u.host.clone());
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

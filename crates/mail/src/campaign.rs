//! Corpus-wide analysis: sender novelty (learned in time order), protected recipients,
//! clustering of suspicious messages into campaigns (shared URL template, HTML skeleton,
//! sender domain, sending address), campaign-level signals, and the severity of each
//! message and campaign.

use portcullis_event::union_find::UnionFind;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use portcullis_event::Timestamp;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::analyse::{Analysed, Analyser, Context, Signal, SignalKind, strong_impersonation};
use crate::members::Members;
use crate::url::registrable;
use portcullis_event::text_hash::TextHash;

/// How serious a message or campaign is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A domain seen within this many days of its first message is still new.
const NEW_DOMAIN_DAYS: i64 = 14;

/// Novelty signals, learned in time order, by message index: a sender domain new to the
/// institution, and a sender the recipients have never had mail from.
pub fn novelty_signals(messages: &[Box<Analysed>], ctx: &Context) -> Vec<(usize, Vec<Signal>)> {
    use rayon::prelude::*;
    // What the time-ordered pass needs of each message, hashed in parallel beforehand so the
    // pass itself (necessarily one thread) only looks up numbers and borrowed domains.
    struct Seen<'m> {
        t: i64,
        internal: bool,
        reg: &'m str,
        from: u64,
        recipients: OneOrMany<u64>,
        recipient_domains: Vec<&'m str>,
    }
    /// Most messages have one recipient: kept without a heap allocation of its own.
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    impl<T> OneOrMany<T> {
        fn as_slice(&self) -> &[T] {
            match self {
                OneOrMany::One(x) => std::slice::from_ref(x),
                OneOrMany::Many(v) => v,
            }
        }
    }
    let seen: Vec<Seen> = messages
        .par_iter()
        .map(|m| {
            let from = m.from.as_ref().map(|f| f.address.as_str()).unwrap_or("");
            let reg = registrable(m.from_domain());
            let internal = ctx.is_internal(reg) || from.is_empty();
            Seen {
                t: m.date.map(|d| d.0).unwrap_or(i64::MAX),
                internal,
                reg,
                from: xxh3_64(from.as_bytes()),
                // Each recipient once, so that the walk below can learn whether a pair is new
                // from the one insertion that records it.
                recipients: match m.recipients.as_slice() {
                    [one] => OneOrMany::One(xxh3_64(one.as_bytes())),
                    many => {
                        let mut r: Vec<u64> = many.iter().map(|r| xxh3_64(r.as_bytes())).collect();
                        r.sort_unstable();
                        r.dedup();
                        OneOrMany::Many(r)
                    }
                },
                recipient_domains: if internal {
                    m.recipients.iter().map(|r| registrable(r.rsplit('@').next().unwrap_or(""))).collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    // Sorted as (time, index) pairs, not indices compared through `seen`.
    let mut order: Vec<(i64, usize)> = seen.iter().enumerate().map(|(i, m)| (m.t, i)).collect();
    order.sort_unstable();
    let mut domain_first: HashMap<&str, i64, TextHash> = HashMap::default();
    // (recipient, sender) pairs already in touch, as hashes of their hashes.
    let pair = |r: u64, s: u64| r ^ s.rotate_left(17);
    let mut pairs: HashSet<u64, TextHash> =
        HashSet::with_capacity_and_hasher(seen.iter().map(|m| m.recipients.as_slice().len()).sum(), Default::default());
    let mut added: Vec<(usize, Vec<Signal>)> = Vec::new();
    // Texts that repeat from message to message are made once and shared.
    let new_correspondent: std::sync::Arc<str> = "first mail from this sender to its recipients".into();
    let mut recent_text: HashMap<&str, std::sync::Arc<str>, TextHash> = HashMap::default();
    for (_, i) in order {
        let m = &seen[i];
        let t = m.t;
        if m.internal {
            // The institution writing to a domain makes that domain, and that correspondent, known.
            for d in &m.recipient_domains {
                domain_first.entry(d).or_insert(i64::MIN);
            }
            for r in m.recipients.as_slice() {
                pairs.insert(pair(m.from, *r));
            }
            continue;
        }
        let reg = m.reg;
        let mut signals = Vec::new();
        match domain_first.get(reg) {
            None => {
                signals.push(Signal {
                    analyser: Analyser::Novelty,
                    kind: SignalKind::NewDomain,
                    score: 1,
                    what: format!("first mail from {reg}").into(),
                });
                domain_first.insert(reg, t);
            }
            Some(&first) if first != i64::MIN && t != i64::MAX && t - first < NEW_DOMAIN_DAYS * 86_400_000_000 => {
                signals.push(Signal {
                    analyser: Analyser::Novelty,
                    kind: SignalKind::RecentDomain,
                    score: 1,
                    what: recent_text
                        .entry(reg)
                        .or_insert_with(|| format!("{reg} first seen {} (under {NEW_DOMAIN_DAYS} days before)", Timestamp(first)).into())
                        .clone(),
                });
            }
            _ => {}
        }
        // Recording each pair says whether it was new (the recipients are distinct).
        let recipients = m.recipients.as_slice();
        let new_to: usize = recipients.iter().filter(|r| pairs.insert(pair(**r, m.from))).count();
        if new_to > 0 && new_to == recipients.len() {
            signals.push(Signal {
                analyser: Analyser::Novelty,
                kind: SignalKind::NewCorrespondent,
                score: 1,
                what: new_correspondent.clone(),
            });
        }
        if !signals.is_empty() {
            added.push((i, signals));
        }
    }
    added
}

/// A targeting signal for each message to protected members, by message index.
pub fn targeting_signals(messages: &[Box<Analysed>], members: &Members) -> Vec<(usize, Signal)> {
    use rayon::prelude::*;
    // One text for every message to one member: shared, not a copy each.
    let one: std::sync::Arc<str> = "sent to a protected member".into();
    messages
        .par_iter()
        .enumerate()
        .filter_map(|(i, m)| {
            // One recipient (most messages) needs no set to count distinct names in.
            let names = match m.recipients.as_slice() {
                [one] => members.name_of(one).map_or(0, |_| 1),
                many => many.iter().filter_map(|r| members.name_of(r)).collect::<BTreeSet<&str>>().len(),
            };
            if names == 0 {
                return None;
            }
            let what = if names == 1 { one.clone() } else { format!("sent to {names} protected members").into() };
            Some((i, Signal { analyser: Analyser::Targeting, kind: SignalKind::ProtectedMember, score: 1, what }))
        })
        .collect()
}

/// Whether a message takes part in campaign finding. A read-receipt pixel in a person's
/// mail is their own choice, not a campaign.
fn candidate(m: &Analysed) -> bool {
    (m.score(Analyser::Beacon) > 0 && !m.read_receipt) || m.score(Analyser::Impersonation) >= 2 || m.score(Analyser::Evasion) > 0
}

/// Groups candidate messages into clusters (indices into `messages`), largest first.
pub fn cluster(messages: &[Box<Analysed>], ctx: &Context) -> Vec<Vec<usize>> {
    use rayon::prelude::*;
    let cands: Vec<usize> = (0..messages.len()).into_par_iter().filter(|&i| candidate(&messages[i])).collect();
    // Each candidate's keys (hashed), computed in parallel; joined in order below.
    let keys: Vec<Vec<u64>> = cands
        .par_iter()
        .map(|&i| {
            let m = &messages[i];
            let from_reg = registrable(m.from_domain());
            let own_domain = !from_reg.is_empty() && !ctx.lists.is_freemail(from_reg) && !ctx.is_internal(from_reg);
            let h = |parts: &[&[u8]]| {
                let mut x = 0u64;
                for p in parts {
                    x = x.rotate_left(23) ^ xxh3_64(p);
                }
                x
            };
            let from_b = from_reg.as_bytes();
            let mut keys: Vec<u64> = Vec::new();
            for u in m.urls.iter().filter(|u| u.beacon || !u.tokens.is_empty()) {
                // A mass-mailing service's tracking host is shared by its customers, and an
                // established third party's (an ad network, a CDN, a publisher) by everyone
                // who embeds it: key by sender too. A campaign's own tracker joins across senders.
                let host_reg = registrable(&u.host);
                if ctx.lists.is_bulk_mailer(&u.host) || (host_reg != from_reg && ctx.lists.is_established(host_reg)) {
                    keys.push(h(&[b"tpl", u.template.as_bytes(), from_b]));
                } else {
                    keys.push(h(&[b"tpl", u.template.as_bytes()]));
                }
            }
            if let Some(s) = m.skeleton {
                // A mass-mailing service's customers share its templates' skeletons too.
                let sk = s.to_le_bytes();
                match (&m.bulk_relay, m.sending_ip) {
                    (Some(relay), _) => keys.push(h(&[b"skel", &sk, relay.as_bytes(), from_b])),
                    (None, Some(ip)) => keys.push(h(&[b"skel", &sk, &ip_bytes(ip)])),
                    (None, None) => keys.push(h(&[b"skel", &sk, from_b])),
                }
            }
            if own_domain {
                keys.push(h(&[b"dom", from_b]));
            }
            if let Some(ip) = m.sending_ip
                && m.bulk_relay.is_none()
            {
                keys.push(h(&[b"ip", &ip_bytes(ip)]));
            }
            keys
        })
        .collect();
    let mut uf = UnionFind::new(messages.len());
    let mut first_by_key: HashMap<u64, usize, TextHash> =
        HashMap::with_capacity_and_hasher(keys.iter().map(Vec::len).sum(), Default::default());
    for (&i, ks) in cands.iter().zip(&keys) {
        for &k in ks {
            match first_by_key.get(&k) {
                Some(&j) => uf.union(i, j),
                None => {
                    first_by_key.insert(k, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &cands {
        let root = uf.find(i);
        groups.entry(root).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.len()));
    out
}

/// An address as bytes for a cluster key: a family tag, then its octets.
fn ip_bytes(ip: std::net::IpAddr) -> [u8; 17] {
    let mut out = [0u8; 17];
    match ip {
        std::net::IpAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.octets());
        }
        std::net::IpAddr::V6(a) => {
            out[0] = 6;
            out[1..].copy_from_slice(&a.octets());
        }
    }
    out
}

/// The campaign-level signals for a cluster, to add to each of its messages
/// ([`add_signals`]): one personal-looking message sent to many recipients with
/// per-recipient tokens, and several sender accounts sharing the sending infrastructure.
pub fn cluster_signal_set(messages: &[Box<Analysed>], group: &[usize]) -> Vec<Signal> {
    let recipients: HashSet<&str, TextHash> = group.iter().flat_map(|&i| messages[i].recipients.iter().map(String::as_str)).collect();
    let tokened = group.iter().filter(|&&i| messages[i].urls.iter().any(|u| !u.tokens.is_empty())).count();
    let personal = group.iter().filter(|&&i| !messages[i].list_mail && !messages[i].automatic).count();
    // Per-recipient sender addresses (a token in the local part) are one account. A large
    // cluster repeats a few addresses thousands of times: each is reduced once.
    let mut addresses: HashSet<&str, TextHash> = HashSet::default();
    let mut last = None;
    for a in group.iter().filter_map(|&i| messages[i].from.as_ref().map(|f| f.address.as_str())) {
        // Compared with the one before first: cheaper than hashing it again.
        if last != Some(a) {
            addresses.insert(a);
            last = Some(a);
        }
    }
    let senders: BTreeSet<String> = addresses.into_iter().map(sender_account).collect();
    let mut added = Vec::new();
    let n_rcpt = recipients.len();
    if n_rcpt >= 10 && tokened * 2 >= group.len() && personal * 2 >= group.len() {
        added.push(Signal {
            analyser: Analyser::Bulk,
            kind: SignalKind::PersonalBulk,
            score: 2,
            what: format!(
                "one personal-looking message (no unsubscribe or list headers) sent to {n_rcpt} recipients, each with its own token"
            )
            .into(),
        });
    }
    if senders.len() >= 3 && personal * 2 >= group.len() {
        added.push(Signal {
            analyser: Analyser::Bulk,
            kind: SignalKind::SharedInfrastructure,
            score: 1,
            what: format!("{} sender accounts share one template and sending infrastructure", senders.len()).into(),
        });
    }
    added
}

/// Adds `added` to each message of `group`.
pub fn add_signals(messages: &mut [Box<Analysed>], group: &[usize], added: &[Signal]) {
    if added.is_empty() {
        return;
    }
    for &i in group {
        messages[i].signals.extend(added.iter().cloned());
    }
}

/// A sender address with per-recipient tokens in its local part blanked
/// (`online#3.19578.34-uggtgzfn19nar9rr.1@newsletter.online.com` → one account).
pub fn sender_account(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let mut out = String::with_capacity(address.len());
    let mut seg = String::new();
    let flush = |seg: &mut String, out: &mut String| {
        let digits = seg.bytes().filter(u8::is_ascii_digit).count();
        let token = (seg.len() >= 8 && digits > 0 && digits < seg.len()) || (digits > 0 && digits == seg.len());
        out.push_str(if token { "{t}" } else { seg });
        seg.clear();
    };
    for c in local.chars() {
        if matches!(c, '.' | '-' | '_' | '+' | '=' | '#') {
            flush(&mut seg, &mut out);
            out.push(c);
        } else {
            seg.push(c);
        }
    }
    flush(&mut seg, &mut out);
    format!("{out}@{domain}")
}

/// The severity of one message from its signals. Every step names the kinds it needs, so
/// each grade is explained by the signals shown with it:
/// - informational: no beacon, no impersonation, no evasion;
/// - low: anything else short of medium (a beacon alone, a read receipt, weak impersonation
///   such as a styled name or a persona word, a padded header alone);
/// - medium: a *strong* impersonation (look-alike sender or link, a display name claiming a
///   known identity, a known outlet's own domain failing the gateway's authentication) of
///   score 3, or of score 2 with a beacon; or a beacon with a padded header; or a beacon
///   with a personal-looking bulk send (one message, many recipients, each with its own
///   token) from a sender that is not established or authenticated;
/// - high: medium with a beacon, protected recipients, and novelty or that bulk send, with
///   all the scores together at least 8.
pub fn message_severity(m: &Analysed) -> Severity {
    let b = m.score(Analyser::Beacon);
    let i = m.score(Analyser::Impersonation);
    let n = m.score(Analyser::Novelty);
    let p = m.score(Analyser::Targeting);
    let s = m.score(Analyser::Bulk);
    let e = m.score(Analyser::Evasion);
    if b == 0 && i == 0 && e == 0 {
        return Severity::Informational;
    }
    let strong = m
        .signals
        .iter()
        .filter(|x| x.analyser == Analyser::Impersonation && strong_impersonation(x.kind))
        .map(|x| x.score as u32)
        .max()
        .unwrap_or(0);
    let spoofed = m.signals.iter().any(|x| x.kind == SignalKind::SpoofedDomain);
    let vouched = !spoofed && m.signals.iter().any(|x| matches!(x.kind, SignalKind::Established | SignalKind::Authenticated));
    let personal_bulk = m.signals.iter().any(|x| x.kind == SignalKind::PersonalBulk) && !vouched;
    let core = if b == 0 { strong >= 3 && i >= 3 } else { (strong >= 2 && i >= 2) || personal_bulk || e > 0 };
    if !core || (m.read_receipt && i < 2) {
        return Severity::Low;
    }
    let bulk = if vouched { 0 } else { s };
    if b > 0 && p > 0 && (n > 0 || bulk > 0) && b + i + n + p + bulk + e >= 8 {
        return Severity::High;
    }
    Severity::Medium
}

/// A stable id for a cluster: from its smallest Message-ID.
pub fn campaign_id(messages: &[Box<Analysed>], group: &[usize]) -> String {
    let min = group.iter().map(|&i| messages[i].message_id.as_str()).min().unwrap_or("");
    format!("camp-{:012x}", xxh3_64(min.as_bytes()) & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_recipient_sender_addresses_are_one_account() {
        assert_eq!(
            sender_account("online#3.19578.34-uggtgzfn19nar9rr.1@newsletter.online.com"),
            "online#{t}.{t}.{t}-{t}.{t}@newsletter.online.com"
        );
        assert_eq!(
            sender_account("online#3.21186.45-m2NUOKj6j6GVpsRR.1@newsletter.online.com"),
            sender_account("online#3.19578.34-uggtgzfn19nar9rr.1@newsletter.online.com")
        );
        assert_eq!(sender_account("d.wright@nropnews.com"), "d.wright@nropnews.com");
        assert_ne!(sender_account("d.wright@nropnews.com"), sender_account("m.hale@nropnews.com"));
    }
}

//! Grading each recipient of each campaign against the institution's logs (proxy, IIS, DNS,
//! sign-in, mailbox audit — anything the hunt readers read): received → opened (a beacon URL
//! fetched, by its token or the recipient's account) → clicked (a tokened link fetched) →
//! compromised (a sign-in from the campaign's infrastructure, a forwarding rule to another
//! domain, or a sign-in from a new address together with a new inbox rule, after the send).
//! Also says which kinds of log cover the campaign's period, so "no compromise found" is
//! only said when it can be.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use portcullis_event::{Event, Timestamp};
use serde::Serialize;

/// A recipient's grade, in increasing order of harm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Received,
    Opened,
    Clicked,
    Compromised,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Received => "received",
            Grade::Opened => "opened",
            Grade::Clicked => "clicked",
            Grade::Compromised => "compromised",
        }
    }
}

/// One log record that moved a grade or is worth a look.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Evidence {
    pub time: Option<String>,
    /// `open`, `click`, `sign-in from campaign infrastructure`, `forwarding rule`…
    pub kind: String,
    /// File and line or record.
    pub at: String,
    pub detail: String,
}

/// What the grader needs from one campaign.
pub struct CampaignKeys {
    /// Hosts of its beacons (opens) and tokened links (clicks).
    pub beacon_hosts: Vec<String>,
    pub link_hosts: Vec<String>,
    /// Token → recipient.
    pub tokens: HashMap<String, String>,
    pub recipients: Vec<String>,
    /// When each recipient was first sent a message.
    pub first_sent: HashMap<String, i64>,
    /// Sending IPs and other infrastructure addresses.
    pub infra_ips: HashSet<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Coverage of one kind of log.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Span {
    pub events: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl Span {
    fn add(&mut self, t: Option<Timestamp>) {
        self.events += 1;
        if let Some(t) = t {
            self.first = Some(self.first.map_or(t.0, |f| f.min(t.0)));
            self.last = Some(self.last.map_or(t.0, |l| l.max(t.0)));
        }
    }
    fn merge(&mut self, o: &Span) {
        self.events += o.events;
        for t in [o.first, o.last].into_iter().flatten() {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }
    pub fn covers(&self, from: i64, to: i64) -> bool {
        self.events > 0 && self.first.is_some_and(|f| f <= from) && self.last.is_some_and(|l| l >= to)
    }
    pub fn describe(&self) -> String {
        match (self.first, self.last) {
            (Some(f), Some(l)) => format!("{} to {}", day(f), day(l)),
            _ if self.events > 0 => "undated records".into(),
            _ => "absent".into(),
        }
    }
}

fn day(t: i64) -> String {
    Timestamp(t).to_string()[..10].to_string()
}

/// Which kinds of log were supplied, and when they run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    /// Proxy, IIS, firewall or DNS records with URLs or host names (opens and clicks).
    pub web: Span,
    /// Sign-in records (Okta, Entra ID/Azure AD, Windows logons with an address).
    pub sign_in: Span,
    /// Mailbox administration and audit (Exchange cmdlet logs, inbox-rule audit records).
    pub mailbox_audit: Span,
    pub files: usize,
    pub unreadable: Vec<String>,
}

impl Coverage {
    fn merge(&mut self, o: &Coverage) {
        self.web.merge(&o.web);
        self.sign_in.merge(&o.sign_in);
        self.mailbox_audit.merge(&o.mailbox_audit);
    }
}

/// The grades of one campaign's recipients.
#[derive(Clone, Debug, Default)]
pub struct Graded {
    pub grades: HashMap<String, Grade>,
    pub evidence: HashMap<String, Vec<Evidence>>,
    pub notes: HashMap<String, Vec<String>>,
    /// Fetches of campaign hosts that name no recipient (DNS lookups, untokened requests).
    pub unattributed: Vec<Evidence>,
    pub unattributed_count: u64,
    /// What the logs let us say about compromise, opens and clicks.
    pub statement: String,
}

const EVIDENCE_PER_RECIPIENT: usize = 10;
/// Fetches of a campaign's hosts that name no recipient, shown (the earliest by time).
const UNATTRIBUTED_SHOWN: usize = 20;
const RULE_WORDS: &[&str] =
    &["new-inboxrule", "set-inboxrule", "forwardingsmtpaddress", "forwardingaddress", "updateinboxrules", "-forwardto", "-redirectto"];
const USER_FIELDS: &[&str] = &[
    "cs-username",
    "userPrincipalName",
    "properties.userPrincipalName",
    "actor.alternateId",
    "TargetUserName",
    "UserPrincipalName",
    "user",
    "username",
    "user.name",
    "AuthenticatedUser",
];
const IP_FIELDS: &[&str] =
    &["c-ip", "ipAddress", "properties.ipAddress", "client.ipAddress", "IpAddress", "ClientIP", "ClientIpAddress", "source.ip", "src_ip"];
const AGENT_FIELDS: &[&str] = &["cs(User-Agent)", "client.userAgent.rawUserAgent", "properties.userAgent", "userAgent", "user_agent"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Host { campaign: usize, beacon: bool },
    Token { campaign: usize },
    RuleWord,
}

struct SignIn {
    time: i64,
    ip: String,
    at: String,
}

struct RuleChange {
    time: Option<i64>,
    at: String,
    text: String,
}

/// Per-file findings before merging.
#[derive(Default)]
struct Partial {
    coverage: Coverage,
    hits: Vec<(usize, String, Grade, Evidence)>,
    unattributed: Vec<(usize, Evidence)>,
    sign_ins: HashMap<String, Vec<SignIn>>,
    rules: Vec<RuleChange>,
}

/// Grades every campaign's recipients against the logs under `paths`.
pub fn grade(campaigns: &[CampaignKeys], paths: &[PathBuf], threads: usize) -> (Vec<Graded>, Coverage) {
    let mut patterns: Vec<String> = Vec::new();
    let mut kinds: Vec<Pattern> = Vec::new();
    for (c, k) in campaigns.iter().enumerate() {
        for h in &k.beacon_hosts {
            patterns.push(h.clone());
            kinds.push(Pattern::Host { campaign: c, beacon: true });
        }
        for h in k.link_hosts.iter().filter(|h| !k.beacon_hosts.contains(h)) {
            patterns.push(h.clone());
            kinds.push(Pattern::Host { campaign: c, beacon: false });
        }
        for t in k.tokens.keys() {
            patterns.push(t.clone());
            kinds.push(Pattern::Token { campaign: c });
        }
    }
    for w in RULE_WORDS {
        patterns.push(w.to_string());
        kinds.push(Pattern::RuleWord);
    }
    let ac =
        AhoCorasickBuilder::new().ascii_case_insensitive(true).match_kind(MatchKind::Standard).build(&patterns).expect("literal patterns");
    // account spellings → recipient address
    let mut accounts: HashMap<String, String> = HashMap::new();
    let mut local_count: HashMap<String, usize> = HashMap::new();
    for k in campaigns {
        for r in &k.recipients {
            accounts.insert(r.clone(), r.clone());
            if let Some((local, _)) = r.split_once('@') {
                *local_count.entry(local.to_string()).or_default() += 1;
            }
        }
    }
    for k in campaigns {
        for r in &k.recipients {
            if let Some((local, _)) = r.split_once('@')
                && local_count.get(local) == Some(&1)
                && local.len() >= 3
            {
                accounts.insert(local.to_string(), r.clone());
            }
        }
    }
    let (files, errors) = portcullis_sources::collect_files(paths);
    // The hunt's file loop: files (and pieces of large web logs) shared out to `threads`
    // threads, a reader's panic reported as that file's failure rather than ending the run.
    let opts = portcullis_hunt::RunOptions { threads: threads.max(1), ..Default::default() };
    let (outcomes, partials) = portcullis_hunt::run_files(&files, &opts, &portcullis_hunt::NoProgress, Partial::default, |p, path, ev| {
        scan_event(ev, path, &ac, &kinds, &patterns, campaigns, &accounts, p)
    });
    let mut coverage = Coverage { files: files.len(), ..Coverage::default() };
    coverage.unreadable.extend(errors.into_iter().map(|e| e.to_string()));
    for outcome in &outcomes {
        match outcome {
            portcullis_hunt::FileOutcome::Read(_) => {}
            portcullis_hunt::FileOutcome::Failed(e) => coverage.unreadable.push(e.to_string()),
            portcullis_hunt::FileOutcome::Crashed { path, message } => {
                coverage.unreadable.push(format!("{}: the reader failed ({message}); please report this", path.display()))
            }
        }
    }
    let mut out: Vec<Graded> = campaigns.iter().map(|_| Graded::default()).collect();
    let mut sign_ins: HashMap<String, Vec<SignIn>> = HashMap::new();
    let mut rules: Vec<RuleChange> = Vec::new();
    // Each thread's partial covers whichever files it was given: merged so that nothing
    // depends on that (grades by maximum, evidence and lists sorted below).
    let mut unattributed: Vec<Vec<Evidence>> = campaigns.iter().map(|_| Vec::new()).collect();
    for (p, _) in partials {
        coverage.merge(&p.coverage);
        for (c, r, g, e) in p.hits {
            let cur = out[c].grades.entry(r.clone()).or_insert(Grade::Received);
            *cur = (*cur).max(g);
            out[c].evidence.entry(r).or_default().push(e);
        }
        for (c, e) in p.unattributed {
            out[c].unattributed_count += 1;
            let kept = &mut unattributed[c];
            kept.push(e);
            if kept.len() >= 10 * UNATTRIBUTED_SHOWN {
                kept.sort();
                kept.truncate(UNATTRIBUTED_SHOWN);
            }
        }
        for (a, mut v) in p.sign_ins {
            sign_ins.entry(a).or_default().append(&mut v);
        }
        rules.extend(p.rules);
    }
    for (c, mut kept) in unattributed.into_iter().enumerate() {
        kept.sort();
        kept.truncate(UNATTRIBUTED_SHOWN);
        out[c].unattributed = kept;
    }
    for list in sign_ins.values_mut() {
        list.sort_by(|a, b| (a.time, &a.at, &a.ip).cmp(&(b.time, &b.at, &b.ip)));
    }
    rules.sort_by(|a, b| (a.time, &a.at, &a.text).cmp(&(b.time, &b.at, &b.text)));
    for (c, k) in campaigns.iter().enumerate() {
        judge_compromise(k, &mut out[c], &sign_ins, &rules);
        for r in &k.recipients {
            out[c].grades.entry(r.clone()).or_insert(Grade::Received);
        }
        for v in out[c].evidence.values_mut() {
            v.sort();
            v.truncate(EVIDENCE_PER_RECIPIENT);
        }
        out[c].statement = statement(k, &out[c], &coverage);
    }
    (out, coverage)
}

#[allow(clippy::too_many_arguments)]
fn scan_event(
    ev: &Event,
    path: &std::path::Path,
    ac: &AhoCorasick,
    kinds: &[Pattern],
    patterns: &[String],
    campaigns: &[CampaignKeys],
    accounts: &HashMap<String, String>,
    p: &mut Partial,
) {
    let at = format!("{}:{}", path.display(), ev.record);
    let get =
        |names: &[&str]| names.iter().find_map(|n| ev.get(n)).map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty() && v != "-");
    let is_web = ev.get("cs-uri-stem").is_some()
        || ev.get("QueryName").is_some()
        || ev.get("url").is_some()
        || ev.get("query").is_some()
        || ev.get("cs-host").is_some();
    if is_web {
        p.coverage.web.add(ev.timestamp);
    }
    let sign_in =
        matches!(ev.log_type.as_str(), "okta" | "azure_signinlogs") || (ev.get("EventID") == Some("4624") && ev.get("IpAddress").is_some());
    if sign_in {
        p.coverage.sign_in.add(ev.timestamp);
    }
    let audit = ev.get("Channel").is_some_and(|c| c.eq_ignore_ascii_case("MSExchange Management"))
        || ev.get("Operation").is_some_and(|o| o.to_ascii_lowercase().contains("inboxrule"));
    if audit {
        p.coverage.mailbox_audit.add(ev.timestamp);
    }
    let mut hosts: Vec<(usize, bool, String)> = Vec::new();
    let mut tokens: Vec<usize> = Vec::new();
    let mut rule_word = false;
    for f in ev.fields() {
        for m in ac.find_overlapping_iter(f.value) {
            match kinds[m.pattern().as_usize()] {
                Pattern::Host { campaign, beacon } => {
                    // A host must match whole: `t.nropnews.com` not inside `t.nropnews.com.evil`.
                    let after = f.value.as_bytes().get(m.end()).copied();
                    let before = m.start().checked_sub(1).map(|i| f.value.as_bytes()[i]);
                    let ok_after = after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b'.'));
                    let ok_before = before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'-'));
                    if ok_after && ok_before && hosts.len() < 8 {
                        hosts.push((campaign, beacon, f.value.to_string()));
                    }
                }
                Pattern::Token { .. } => tokens.push(m.pattern().as_usize()),
                Pattern::RuleWord => rule_word = true,
            }
        }
    }
    let time = ev.timestamp.map(|t| t.to_string());
    if !hosts.is_empty() {
        let user = get(USER_FIELDS);
        let ip = get(IP_FIELDS);
        let agent = AGENT_FIELDS.iter().find_map(|n| ev.get(n)).map(|v| v.trim()).filter(|v| !v.is_empty() && *v != "-").map(|v| {
            // W3C logs write spaces in the user agent as `+`.
            if ev.get("cs-uri-stem").is_some() { v.replace('+', " ") } else { v.to_string() }
        });
        // A fetch of a beacon host is an open; of a link host only, a click.
        let mut per_campaign: Vec<(usize, bool, String)> = Vec::new();
        for (c, beacon_host, value) in hosts {
            match per_campaign.iter_mut().find(|(pc, _, _)| *pc == c) {
                Some(e) => {
                    if beacon_host && !e.1 {
                        *e = (c, true, value);
                    }
                }
                None => per_campaign.push((c, beacon_host, value)),
            }
        }
        for (c, beacon, value) in per_campaign {
            let tok = tokens.iter().find_map(|&t| match kinds[t] {
                Pattern::Token { campaign } if campaign == c => campaigns[c].tokens.get(&patterns[t]).cloned(),
                _ => None,
            });
            let recipient = tok.or_else(|| user.as_ref().and_then(|u| account_of(u, accounts)));
            // Show the whole request where the log has one (W3C: host + stem + query).
            let url = match (ev.get("cs-uri-stem"), ev.get("cs-host")) {
                (Some(stem), host) => {
                    let q = ev.get("cs-uri-query").filter(|q| *q != "-").map(|q| format!("?{q}")).unwrap_or_default();
                    format!("{}{stem}{q}", host.unwrap_or(""))
                }
                _ => value,
            };
            let mut detail = crate::analyse::clip(&url, 300);
            if let Some(ip) = &ip {
                detail.push_str(&format!(" from {ip}"));
            }
            if let Some(a) = &agent {
                detail.push_str(&format!(" ({})", crate::analyse::clip(a, 120)));
            }
            match recipient.filter(|r| campaigns[c].first_sent.contains_key(r)) {
                Some(r) => {
                    let (grade, kind) = if beacon { (Grade::Opened, "open") } else { (Grade::Clicked, "click") };
                    p.hits.push((c, r, grade, Evidence { time: time.clone(), kind: kind.into(), at: at.clone(), detail }));
                }
                None => {
                    p.unattributed.push((c, Evidence { time: time.clone(), kind: "fetch of campaign host".into(), at: at.clone(), detail }))
                }
            }
        }
    }
    if sign_in
        && let (Some(user), Some(ip), Some(t)) = (get(USER_FIELDS), get(IP_FIELDS), ev.timestamp)
        && let Some(r) = account_of(&user, accounts)
    {
        let v = p.sign_ins.entry(r).or_default();
        if v.len() < 100_000 {
            v.push(SignIn { time: t.0, ip, at });
        }
    } else if rule_word && p.rules.len() < 100_000 {
        let mut text = String::new();
        for f in ev.fields() {
            if text.len() > 4096 {
                break;
            }
            text.push_str(f.value);
            text.push(' ');
        }
        p.rules.push(RuleChange { time: ev.timestamp.map(|t| t.0), at, text: crate::analyse::clip(&text, 4096) });
    }
}

/// The recipient an account spelling (`jane.doe@x`, `PARL\jane.doe`, `jane.doe`) names.
fn account_of(user: &str, accounts: &HashMap<String, String>) -> Option<String> {
    let u = user.trim().to_ascii_lowercase();
    let bare = u.rsplit(['\\', '/']).next().unwrap_or(&u);
    accounts.get(bare).or_else(|| bare.split_once('@').and_then(|(l, _)| accounts.get(l))).cloned()
}

/// Addresses seen for this many accounts are the institution's own (office, VPN), never "new".
const SHARED_ADDRESS_ACCOUNTS: usize = 5;
/// A new inbox rule this soon after a sign-in from a new address is the takeover pattern.
const RULE_AFTER_SIGN_IN: i64 = 24 * 3600 * 1_000_000;

fn judge_compromise(k: &CampaignKeys, g: &mut Graded, sign_ins: &HashMap<String, Vec<SignIn>>, rules: &[RuleChange]) {
    let mut accounts_per_ip: HashMap<&str, usize> = HashMap::new();
    for list in sign_ins.values() {
        let ips: HashSet<&str> = list.iter().map(|s| s.ip.as_str()).collect();
        for ip in ips {
            *accounts_per_ip.entry(ip).or_default() += 1;
        }
    }
    for r in &k.recipients {
        let Some(&sent) = k.first_sent.get(r) else { continue };
        let mut strong: Vec<Evidence> = Vec::new();
        let mut new_device: Vec<(i64, Evidence)> = Vec::new();
        if let Some(list) = sign_ins.get(r) {
            let before: HashSet<&str> = list.iter().filter(|s| s.time < sent).map(|s| s.ip.as_str()).collect();
            for s in list.iter().filter(|s| s.time >= sent) {
                let e = |kind: &str| Evidence {
                    time: Some(Timestamp(s.time).to_string()),
                    kind: kind.into(),
                    at: s.at.clone(),
                    detail: format!("sign-in from {}", s.ip),
                };
                if k.infra_ips.contains(&s.ip) {
                    strong.push(e("sign-in from campaign infrastructure"));
                } else if !before.is_empty()
                    && !before.contains(s.ip.as_str())
                    && accounts_per_ip.get(s.ip.as_str()).copied().unwrap_or(0) < SHARED_ADDRESS_ACCOUNTS
                    && new_device.len() < 20
                {
                    new_device.push((s.time, e("sign-in from an address not seen before the send")));
                }
            }
        }
        let local = r.split('@').next().unwrap_or(r);
        let domain = r.split('@').nth(1).unwrap_or("");
        let mut rule_ev: Vec<(Option<i64>, Evidence)> = Vec::new();
        for c in rules.iter().filter(|c| c.time.is_none_or(|t| t >= sent)) {
            let lower = c.text.to_ascii_lowercase();
            if !(lower.contains(r.as_str())
                || lower.contains(&format!("\"{local}\""))
                || lower.contains(&format!("\\{local} "))
                || lower.contains(&format!(" {local} ")))
            {
                continue;
            }
            let forwards = lower.contains("forward") || lower.contains("redirect");
            let forward_external = forwards
                && lower
                    .split(|ch: char| ch.is_whitespace() || ch == '"' || ch == '\'' || ch == ';')
                    .any(|w| w.contains('@') && !w.trim_matches(|c: char| !c.is_alphanumeric()).ends_with(domain));
            let e = Evidence {
                time: c.time.map(|t| Timestamp(t).to_string()),
                kind: if forward_external { "forwarding to another domain".into() } else { "inbox rule change".into() },
                at: c.at.clone(),
                detail: crate::analyse::clip(c.text.trim(), 300),
            };
            if forward_external {
                strong.push(e);
            } else {
                rule_ev.push((c.time, e));
            }
        }
        // A rule created within a day after a sign-in from a new address.
        let pairs: Vec<(Evidence, Evidence)> = new_device
            .iter()
            .filter_map(|(t, d)| {
                rule_ev
                    .iter()
                    .find(|(rt, _)| rt.is_some_and(|rt| rt >= *t && rt - *t <= RULE_AFTER_SIGN_IN))
                    .map(|(_, re)| (d.clone(), re.clone()))
            })
            .collect();
        if !strong.is_empty() || !pairs.is_empty() {
            g.grades.insert(r.clone(), Grade::Compromised);
            let ev = g.evidence.entry(r.clone()).or_default();
            ev.extend(strong);
            for (d, re) in pairs {
                ev.push(d);
                ev.push(re);
            }
        } else {
            let mut notes = Vec::new();
            if !new_device.is_empty() {
                notes.push(format!(
                    "{} sign-in(s) after the send from addresses not seen before it (no other sign of compromise)",
                    new_device.len()
                ));
            }
            if !rule_ev.is_empty() {
                notes.push(format!(
                    "{} inbox rule change(s) after the send, none forwarding outside and none right after a new-address sign-in",
                    rule_ev.len()
                ));
            }
            if !notes.is_empty() {
                g.notes.insert(r.clone(), notes);
            }
        }
    }
}

/// What the supplied logs let the report say.
fn statement(k: &CampaignKeys, g: &Graded, cov: &Coverage) -> String {
    let (from, to) = (k.first_seen, k.last_seen);
    let compromised = g.grades.values().filter(|&&x| x == Grade::Compromised).count();
    let opened = g.grades.values().filter(|&&x| x >= Grade::Opened).count();
    let mut parts = Vec::new();
    if cov.files == 0 {
        return "no logs supplied: every recipient is graded 'received'; opens, clicks and compromise were not assessed".into();
    }
    if cov.web.covers(from, to) {
        parts.push(format!("web/proxy/DNS logs cover the campaign ({}): {opened} recipient(s) opened or clicked", cov.web.describe()));
    } else {
        parts.push(format!(
            "opens and clicks only partly assessable: web/proxy/DNS logs {} (campaign {} to {})",
            cov.web.describe(),
            day(from),
            day(to)
        ));
    }
    if compromised > 0 {
        parts.push(format!("{compromised} recipient(s) compromised"));
    } else if cov.sign_in.covers(from, to) && cov.mailbox_audit.covers(from, to) {
        parts.push(format!(
            "no compromise found in the supplied logs (sign-in logs {}, mailbox audit {})",
            cov.sign_in.describe(),
            cov.mailbox_audit.describe()
        ));
    } else {
        let mut missing = Vec::new();
        if !cov.sign_in.covers(from, to) {
            missing.push(format!("sign-in logs {}", cov.sign_in.describe()));
        }
        if !cov.mailbox_audit.covers(from, to) {
            missing.push(format!("mailbox audit {}", cov.mailbox_audit.describe()));
        }
        parts.push(format!("compromise not ruled out: {} for the campaign period {} to {}", missing.join(", "), day(from), day(to)));
    }
    parts.join("; ")
}

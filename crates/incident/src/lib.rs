//! Incidents: findings joined by the entities they share (host, account, source IP,
//! mailbox, file path) within a time window, told as an attack chain with its first
//! evidence and dwell time. Every join is explained, so an analyst can disagree.
//!
//! Findings are walked in time order; a finding joins the group of the most recent
//! earlier finding that shares an entity with it, if that finding is no more than
//! `window` older. An entity seen on many hosts (a lab or service account) joins only
//! findings on one host; a community rule firing again and again on one host (a
//! monitoring agent's routine) is a *noisy stack*: its findings stay findings but join
//! nothing. A group becomes an incident when it holds a finding at `medium` or above.
//!
//! Evidence is ranked ([`Evidence`]): an indicator, a Portcullis pack rule or a critical
//! rule is *specific*; then high, medium, weak. The first evidence is the earliest
//! finding of the group's strongest rank, or an earlier one linked to it by something
//! other than the host (an account, an address, a file); findings before it on the same
//! host are kept as *context*, not as the start of the attack. A group with no specific
//! evidence and only one rule is uncorroborated and stays at `medium`. Consecutive
//! findings of one rule form one stage.

use portcullis_event::union_find::UnionFind;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use portcullis_event::Timestamp;
use portcullis_finding::{Entity, EntityKind, Finding, FindingKind, Matcher, RuleSource, TACTICS};
use portcullis_sigma::Level;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct IncidentOptions {
    /// How far apart (in microseconds) two findings sharing an entity may be and still join.
    pub window_micros: i64,
    /// Findings below this level are left out of incidents.
    pub min_level: Level,
    /// A community rule with at least this many findings on one host is a noisy stack.
    pub noisy_stack: usize,
}

impl Default for IncidentOptions {
    fn default() -> Self {
        // Intruders come back weeks apart (the Electoral Commission: Aug, Sep 2021, Mar,
        // Jun, Aug 2022); 90 days keeps such a campaign together through its returns.
        IncidentOptions { window_micros: 90 * 86_400 * 1_000_000, min_level: Level::Low, noisy_stack: 25 }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    pub time: Timestamp,
    pub tactic: Option<&'static str>,
    pub techniques: Vec<String>,
    pub rule_title: String,
    pub level: Level,
    pub sentence: String,
    pub finding_ids: Vec<String>,
}

/// Why a finding is in its incident.
#[derive(Clone, Debug, Serialize)]
pub struct Join {
    pub finding: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct EntityCount {
    pub kind: &'static str,
    pub value: String,
    pub findings: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub kind: &'static str,
    /// Stable: derived from the incident's first finding.
    pub id: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub dwell_seconds: i64,
    pub severity: Level,
    /// The finding that is the first evidence of compromise.
    pub first_evidence: String,
    pub entities: Vec<EntityCount>,
    pub tactics: Vec<&'static str>,
    pub techniques: Vec<String>,
    pub stages: Vec<Stage>,
    /// Findings on the incident's entities before its first evidence that are not linked
    /// to the attack by more than the host (shown for context, not counted in dwell).
    pub context: Vec<Stage>,
    pub finding_count: usize,
    pub explanation: Vec<Join>,
    /// ATT&CK technique names for `techniques` (v18.1).
    pub attack: Vec<portcullis_intel::attack::Technique>,
    /// How likely this is a real compromise (PHIA yardstick) and how confident, with reasons.
    pub assessment: portcullis_intel::phia::Assessment,
    /// Which known actors' indicators or techniques overlap, and how much; never a name
    /// the evidence does not support.
    pub attribution: Vec<String>,
}

/// How strongly a finding evidences an attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Low or informational, or one of a noisy stack.
    Weak,
    Medium,
    High,
    /// An indicator match, a Portcullis pack rule at medium or above, a critical rule, or
    /// a correlation at high or above.
    Specific,
}

impl Evidence {
    pub fn of(f: &Finding, noisy: bool) -> Evidence {
        if noisy || f.level < Level::Medium {
            return Evidence::Weak;
        }
        let specific = f.matcher == Matcher::Indicator
            || f.rule_source == RuleSource::Builtin
            || f.level >= Level::Critical
            || (f.kind == FindingKind::Correlation && f.level >= Level::High);
        if specific {
            Evidence::Specific
        } else if f.level >= Level::High {
            Evidence::High
        } else {
            Evidence::Medium
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Evidence::Specific => "specific evidence (an indicator, a Portcullis pack rule, a critical rule or a correlation)",
            Evidence::High => "high-severity evidence",
            Evidence::Medium => "medium-severity evidence",
            Evidence::Weak => "weak evidence",
        }
    }
}

/// Groups findings into incidents, most severe first, then by time.
pub fn build(findings: &[Finding], opts: &IncidentOptions) -> Vec<Incident> {
    build_from(findings.iter(), opts)
}

/// [`build`] over findings held elsewhere (beside their events, say), without copying them.
pub fn build_from<'f>(findings: impl Iterator<Item = &'f Finding>, opts: &IncidentOptions) -> Vec<Incident> {
    let findings: Vec<&'f Finding> = findings.collect();
    let mut idx: Vec<usize> =
        (0..findings.len()).filter(|&i| findings[i].level >= opts.min_level && findings[i].first_ts.is_some()).collect();
    idx.sort_by(|&a, &b| (findings[a].first_ts, &findings[a].id).cmp(&(findings[b].first_ts, &findings[b].id)));
    let n = idx.len();
    let host_of = |f: &'f Finding| f.entities.iter().find(|e| e.kind == EntityKind::Host).map(|e| e.value.as_str());
    // Noisy stacks: one community rule firing again and again on one host.
    let mut stack_size: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    for &i in &idx {
        let f = findings[i];
        if f.kind == FindingKind::Detection && f.rule_source == RuleSource::User {
            *stack_size.entry((&*f.rule_id, host_of(f))).or_default() += 1;
        }
    }
    let noisy: Vec<bool> = idx
        .iter()
        .map(|&i| {
            let f = findings[i];
            f.kind == FindingKind::Detection
                && f.rule_source == RuleSource::User
                && stack_size.get(&(&*f.rule_id, host_of(f))).is_some_and(|&c| c >= opts.noisy_stack)
        })
        .collect();
    // Entities seen on three or more hosts (lab, service and admin accounts) join nothing.
    let mut hosts_seen: HashMap<&Entity, BTreeSet<&str>> = HashMap::new();
    for &i in &idx {
        let f = findings[i];
        if let Some(h) = host_of(f) {
            for e in f.entities.iter().filter(|e| e.kind != EntityKind::Host) {
                hosts_seen.entry(e).or_default().insert(h);
            }
        }
    }
    let widespread = |e: &Entity| hosts_seen.get(e).is_some_and(|h| h.len() >= 3);

    let mut dsu = UnionFind::new(n);
    let mut reasons: Vec<Option<String>> = vec![None; n];
    let mut last_seen: HashMap<&Entity, (usize, i64)> = HashMap::new();
    for (k, &i) in idx.iter().enumerate() {
        if noisy[k] {
            continue;
        }
        let f = findings[i];
        let ts = f.first_ts.expect("filtered").0;
        for e in f.entities.iter().filter(|e| !widespread(e)) {
            if let Some(&(prev, pts)) = last_seen.get(e)
                && ts - pts <= opts.window_micros
            {
                if dsu.find(prev) != dsu.find(k) && reasons[k].is_none() {
                    let p = findings[idx[prev]];
                    reasons[k] = Some(format!("shares {} `{}` with \"{}\" at {}", e.kind.as_str(), e.value, p.rule_title, Timestamp(pts)));
                }
                dsu.union(prev, k);
            }
        }
        let end = f.last_ts.unwrap_or(f.first_ts.expect("filtered")).0;
        for e in f.entities.iter().filter(|e| !widespread(e)) {
            last_seen.insert(e, (k, end));
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for k in (0..n).filter(|&k| !noisy[k]) {
        groups.entry(dsu.find(k)).or_default().push(k);
    }
    let mut out = Vec::new();
    for members in groups.values() {
        let fs: Vec<&Finding> = members.iter().map(|&k| findings[idx[k]]).collect();
        let ranks: Vec<Evidence> = fs.iter().map(|f| Evidence::of(f, false)).collect();
        let strongest = ranks.iter().copied().max().unwrap_or(Evidence::Weak);
        if strongest < Evidence::Medium {
            continue;
        }
        // The first evidence: the earliest finding of the strongest rank, or an earlier
        // one of some weight linked to such a finding by more than the host.
        let strongest_entities: HashSet<&Entity> = (0..fs.len())
            .filter(|&m| ranks[m] == strongest)
            .flat_map(|m| fs[m].entities.iter().filter(|e| e.kind != EntityKind::Host && !widespread(e)))
            .collect();
        let linked = |a: &Finding| a.entities.iter().any(|e| strongest_entities.contains(e));
        let first = (0..fs.len()).find(|&j| ranks[j] == strongest || (ranks[j] >= Evidence::Medium && linked(fs[j]))).unwrap_or(0);
        let why_first = if ranks[first] == strongest {
            format!("first evidence: the earliest {} in this incident", strongest.describe())
        } else {
            format!("first evidence: the earliest finding linked by an account, address or file to the incident's {}", strongest.describe())
        };
        let mut why: Vec<Option<String>> = members.iter().map(|&k| reasons[k].clone()).collect();
        why[first] = Some(why_first);
        for w in why.iter_mut().take(first) {
            *w = Some(format!(
                "context: before the first evidence and linked to the attack only by {}",
                w.as_deref().map(|r| r.trim_start_matches("shares ").to_string()).unwrap_or_else(|| "the host".into())
            ));
        }
        out.push(incident(&fs, &ranks, first, why));
    }
    out.sort_by_key(|i| (std::cmp::Reverse(i.severity), i.first_seen));
    out
}

fn stages_of(fs: &[&Finding]) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for f in fs {
        match stages.last_mut() {
            Some(s) if *s.rule_title == *f.rule_title => s.finding_ids.push(f.id.clone()),
            _ => stages.push(Stage {
                time: f.first_ts.expect("filtered"),
                tactic: f.tactics().into_iter().next(),
                techniques: f.techniques(),
                rule_title: f.rule_title.to_string(),
                level: f.level,
                sentence: f.sentence.clone(),
                finding_ids: vec![f.id.clone()],
            }),
        }
    }
    for s in &mut stages {
        if s.finding_ids.len() > 1 {
            s.sentence.push_str(&format!(" (and {} more like it)", s.finding_ids.len() - 1));
        }
    }
    stages
}

fn incident(all: &[&Finding], ranks: &[Evidence], first: usize, reasons: Vec<Option<String>>) -> Incident {
    let fs = &all[first..];
    let head = fs[0];
    let first_seen = head.first_ts.expect("filtered");
    let last_seen = fs.iter().filter_map(|f| f.last_ts.or(f.first_ts)).max().unwrap_or(first_seen);
    let stages = stages_of(fs);
    let context = stages_of(&all[..first]);
    let mut tactic_set: BTreeSet<usize> = BTreeSet::new();
    let mut techniques: BTreeSet<String> = BTreeSet::new();
    let mut entity_counts: BTreeMap<&Entity, usize> = BTreeMap::new();
    for f in fs {
        for t in f.tactics() {
            tactic_set.insert(TACTICS.iter().position(|x| *x == t).unwrap_or(0));
        }
        techniques.extend(f.techniques());
        for e in &f.entities {
            *entity_counts.entry(e).or_default() += 1;
        }
    }
    let max_level = fs.iter().map(|f| f.level).max().unwrap_or(Level::Medium);
    let rules: BTreeSet<&str> = fs.iter().map(|f| &*f.rule_id).collect();
    let specific = ranks[first..].contains(&Evidence::Specific);
    // A chain across three or more tactics with a high finding is an intrusion in progress;
    // one community rule alone, with nothing specific, is a lead to triage, not more.
    let severity = if !specific && rules.len() < 2 {
        max_level.min(Level::Medium)
    } else if tactic_set.len() >= 3 && max_level >= Level::High {
        Level::Critical
    } else {
        max_level
    };
    let mut entities: Vec<EntityCount> =
        entity_counts.into_iter().map(|(e, n)| EntityCount { kind: e.kind.as_str(), value: e.value.clone(), findings: n }).collect();
    entities.sort_by(|a, b| b.findings.cmp(&a.findings).then(a.kind.cmp(b.kind)).then(a.value.cmp(&b.value)));
    let explanation = all
        .iter()
        .zip(reasons)
        .map(|(f, r)| Join {
            finding: f.id.clone(),
            reason: r.unwrap_or_else(|| "shares an entity with a finding that joined earlier".into()),
        })
        .collect();
    let techniques: Vec<String> = techniques.into_iter().collect();
    let (assessment, attribution) = assess(fs, tactic_set.len(), &techniques, max_level);
    Incident {
        kind: "incident",
        id: format!("inc-{}", &head.id[..head.id.len().min(24)]),
        first_seen,
        last_seen,
        dwell_seconds: (last_seen.0 - first_seen.0) / 1_000_000,
        severity,
        first_evidence: head.id.clone(),
        entities,
        tactics: tactic_set.into_iter().map(|i| TACTICS[i]).collect(),
        attack: portcullis_intel::attack::name_all(&techniques),
        techniques,
        stages,
        context,
        finding_count: all.len(),
        explanation,
        assessment,
        attribution,
    }
}

/// The PHIA judgement "this is a genuine compromise" and the attribution lines.
fn assess(fs: &[&Finding], tactics: usize, techniques: &[String], max_level: Level) -> (portcullis_intel::phia::Assessment, Vec<String>) {
    let mut ev: Vec<(i32, String)> = Vec::new();
    if max_level >= Level::Critical {
        ev.push((20, "a critical finding (an exploit that succeeded or a web shell in use)".into()));
    } else if max_level >= Level::High {
        ev.push((10, "high-severity findings".into()));
    }
    if tactics >= 3 {
        ev.push(((tactics as i32 * 5).min(35), format!("a chain across {tactics} ATT&CK tactics, in time order")));
    } else if tactics <= 1 {
        ev.push((-15, "findings in a single tactic only".into()));
    }
    let rules: BTreeSet<&str> = fs.iter().map(|f| &*f.rule_id).collect();
    if rules.len() >= 5 {
        ev.push((10, format!("{} different rules agree", rules.len())));
    }
    let kinds: BTreeSet<&str> = fs.iter().filter_map(|f| f.log.as_deref()).collect();
    if kinds.len() >= 2 {
        ev.push((5, format!("evidence from {} kinds of log ({})", kinds.len(), kinds.iter().copied().collect::<Vec<_>>().join(", "))));
    }
    let iocs: BTreeSet<&str> =
        fs.iter().filter(|f| f.matcher == Matcher::Indicator).map(|f| f.rule_title.trim_start_matches("IOC match: ")).collect();
    if !iocs.is_empty() {
        ev.push((10, format!("published indicators matched ({})", iocs.iter().copied().collect::<Vec<_>>().join("; "))));
    }
    if fs.len() == 1 {
        ev.push((-20, "a single finding".into()));
    }
    let confidence = if tactics >= 3 && kinds.len() >= 2 && rules.len() >= 5 {
        "high"
    } else if tactics >= 2 && rules.len() >= 2 {
        "moderate"
    } else {
        "low"
    };
    let assessment = portcullis_intel::phia::assess("these findings are one genuine compromise", 40, &ev, confidence);
    let mut attribution = Vec::new();
    for (name, _, actor_techniques) in portcullis_intel::known_actors() {
        let shared: Vec<&String> = techniques.iter().filter(|t| actor_techniques.contains(t)).collect();
        let named = iocs.iter().any(|c| c.contains(&name));
        if named {
            attribution
                .push(format!("indicators associated with {name} matched: consistent with {name}'s infrastructure, not proof of {name}"));
        }
        if !shared.is_empty() {
            attribution.push(format!(
                "shares {} of {} ATT&CK techniques known for {name} ({}): common techniques, too few to attribute",
                shared.len(),
                actor_techniques.len(),
                shared.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let unnamed: Vec<&str> = iocs.iter().copied().filter(|c| !attribution.iter().any(|a| a.contains(*c))).collect();
    for c in unnamed {
        attribution.push(format!("infrastructure of \"{c}\" seen; that intel names no actor, so none is named here"));
    }
    if attribution.is_empty() {
        attribution.push("no known actor's indicators matched and technique overlap is negligible: no attribution is made".into());
    }
    (assessment, attribution)
}

/// "14 months 9 days", "3 days 4 hours", "12 minutes" — dwell time for people.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d >= 60 {
        let months = d / 30;
        let days = d % 30;
        if days == 0 { plural(months, "month") } else { format!("{} {}", plural(months, "month"), plural(days, "day")) }
    } else if d > 0 {
        if h == 0 { plural(d, "day") } else { format!("{} {}", plural(d, "day"), plural(h, "hour")) }
    } else if h > 0 {
        format!("{} {}", plural(h, "hour"), plural(m, "minute"))
    } else if m > 0 {
        plural(m, "minute")
    } else {
        plural(secs, "second")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_finding::FindingKind;

    fn finding(id: &str, t: &str, level: Level, tags: &[&str], entities: &[(EntityKind, &str)]) -> Finding {
        Finding {
            id: id.into(),
            kind: FindingKind::Detection,
            matcher: Matcher::Rule,
            log: None,
            rule_source: RuleSource::Builtin,
            rule_id: format!("rule-{id}").into(),
            rule_title: format!("rule {id}").into(),
            level,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            first_ts: Timestamp::parse(t),
            last_ts: Timestamp::parse(t),
            host: None,
            entities: entities.iter().map(|(k, v)| Entity { kind: *k, value: v.to_string() }).collect(),
            sentence: format!("sentence {id}"),
            path: None,
            record: None,
            evidence: vec![],
        }
    }

    #[test]
    fn chain_joins_through_shared_entities() {
        use EntityKind::*;
        let fs = vec![
            finding("c", "2021-08-24T03:00:00Z", Level::High, &["attack.execution"], &[(Host, "exch01"), (Account, "svc")]),
            finding(
                "a",
                "2021-08-24T02:13:00Z",
                Level::High,
                &["attack.initial-access", "attack.t1190"],
                &[(Host, "exch01"), (SourceIp, "185.220.101.182")],
            ),
            finding(
                "b",
                "2021-08-24T02:20:00Z",
                Level::High,
                &["attack.persistence", "attack.t1505.003"],
                &[(Host, "exch01"), (FilePath, "c:\\x.aspx")],
            ),
            finding("d", "2021-08-24T04:00:00Z", Level::High, &["attack.credential-access"], &[(Account, "svc")]),
            finding("x", "2021-08-24T05:00:00Z", Level::Medium, &[], &[(Host, "ws99")]),
            finding("lo", "2021-08-24T05:00:00Z", Level::Low, &[], &[(Host, "ws42")]),
        ];
        let inc = build(&fs, &IncidentOptions::default());
        assert_eq!(inc.len(), 2, "{inc:#?}");
        let main = &inc[0];
        assert_eq!(main.first_evidence, "a");
        assert_eq!(main.finding_count, 4);
        assert_eq!(main.dwell_seconds, 3600 + 47 * 60, "02:13 to 04:00");
        let order: Vec<&str> = main.stages.iter().map(|s| s.finding_ids[0].as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(main.severity, Level::Critical);
        assert_eq!(main.tactics, ["initial-access", "execution", "persistence", "credential-access"]);
        assert!(main.explanation[3].reason.contains("account `svc`"), "{:?}", main.explanation);
        assert_eq!(inc[1].finding_count, 1);
    }

    fn community(mut f: Finding) -> Finding {
        f.rule_source = RuleSource::User;
        f
    }

    #[test]
    fn first_evidence_is_the_attack_not_the_monitoring_script_before_it() {
        use EntityKind::*;
        let fs = vec![
            // A monitoring script flagged by a generic community rule, on the same host only.
            community(finding("mon", "2021-03-14T06:39:52Z", Level::High, &["attack.execution"], &[(Host, "mxs01")])),
            // The attack: a pack rule's specific finding, then what follows it.
            finding("oab", "2021-03-14T06:40:12Z", Level::Critical, &["attack.persistence"], &[(Host, "mxs01")]),
            community(finding("shell", "2021-03-14T06:40:15Z", Level::High, &["attack.execution"], &[(Host, "mxs01"), (Account, "svc")])),
        ];
        let inc = build(&fs, &IncidentOptions::default());
        assert_eq!(inc.len(), 1);
        let i = &inc[0];
        assert_eq!(i.first_evidence, "oab");
        assert_eq!(i.first_seen, Timestamp::parse("2021-03-14T06:40:12Z").unwrap());
        assert_eq!(i.context.len(), 1);
        assert_eq!(i.context[0].finding_ids, ["mon"]);
        assert!(i.explanation[0].reason.starts_with("context:"), "{:?}", i.explanation);
        assert!(i.explanation[1].reason.contains("specific evidence"), "{:?}", i.explanation);
        assert_eq!(i.finding_count, 3);
    }

    #[test]
    fn noisy_stacks_and_lone_community_findings_do_not_make_high_incidents() {
        use EntityKind::*;
        let mut fs: Vec<Finding> = (0..30)
            .map(|k| {
                let mut f = community(finding(
                    &format!("n{k:02}"),
                    &format!("2021-05-01T10:{k:02}:00Z"),
                    Level::High,
                    &["attack.execution"],
                    &[(Host, "ws1")],
                ));
                f.rule_id = "generic-rule".into();
                f
            })
            .collect();
        let inc = build(&fs, &IncidentOptions::default());
        assert!(inc.is_empty(), "one rule firing 30 times on one host is a noisy stack: {inc:#?}");
        fs.truncate(1);
        let inc = build(&fs, &IncidentOptions::default());
        assert_eq!(inc.len(), 1);
        assert_eq!(inc[0].severity, Level::Medium, "one community rule alone is uncorroborated");
    }

    #[test]
    fn an_account_seen_on_many_hosts_joins_nothing_across_them() {
        use EntityKind::*;
        let fs = vec![
            finding("a", "2021-01-01T00:00:00Z", Level::High, &[], &[(Host, "h1"), (Account, "labuser")]),
            finding("b", "2021-01-10T00:00:00Z", Level::High, &[], &[(Host, "h2"), (Account, "labuser")]),
            finding("c", "2021-01-20T00:00:00Z", Level::High, &[], &[(Host, "h3"), (Account, "labuser")]),
        ];
        assert_eq!(build(&fs, &IncidentOptions::default()).len(), 3);
        let two = &fs[..2];
        assert_eq!(build(two, &IncidentOptions::default()).len(), 1, "an account on two hosts still joins");
    }

    #[test]
    fn the_window_limits_joins() {
        use EntityKind::*;
        let fs = vec![
            finding("a", "2021-01-01T00:00:00Z", Level::High, &[], &[(Host, "h")]),
            finding("b", "2021-06-01T00:00:00Z", Level::High, &[], &[(Host, "h")]),
        ];
        assert_eq!(build(&fs, &IncidentOptions::default()).len(), 2);
        let wide = IncidentOptions { window_micros: 365 * 86_400 * 1_000_000, ..Default::default() };
        assert_eq!(build(&fs, &wide).len(), 1);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0), "0 seconds");
        assert_eq!(human_duration(720), "12 minutes");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3 days 4 hours");
        assert_eq!(human_duration(430 * 86_400), "14 months 10 days");
    }
}

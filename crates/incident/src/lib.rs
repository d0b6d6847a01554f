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
//! findings of one rule title form one stage.

mod builder;

pub use builder::{Grouped, IncidentBuilder};
use std::collections::HashMap;

use portcullis_event::Timestamp;
use portcullis_finding::{Finding, FindingKind, Matcher, RuleSource};
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
        Evidence::rank(f.level, f.matcher, f.rule_source, f.kind, noisy)
    }

    fn rank(level: Level, matcher: Matcher, source: RuleSource, kind: FindingKind, noisy: bool) -> Evidence {
        if noisy || level < Level::Medium {
            return Evidence::Weak;
        }
        let specific = matcher == Matcher::Indicator
            || source == RuleSource::Builtin
            || level >= Level::Critical
            || (kind == FindingKind::Correlation && level >= Level::High);
        if specific {
            Evidence::Specific
        } else if level >= Level::High {
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

/// Groups findings into incidents, most severe first, then by time (through an
/// [`IncidentBuilder`], the stages' sentences taken from these findings).
pub fn build(findings: &[Finding], opts: &IncidentOptions) -> Vec<Incident> {
    let mut builder = IncidentBuilder::new(opts);
    for f in findings {
        builder.add(f);
    }
    let grouped = builder.group();
    let wanted = grouped.sentence_ids();
    let mut sentences: HashMap<String, String> = HashMap::new();
    for f in findings.iter().filter(|f| wanted.contains(f.id.as_str())) {
        sentences.entry(f.id.clone()).or_insert_with(|| f.sentence.clone());
    }
    drop(wanted);
    // (By reference: two incidents can quote one id, when a log was read twice.)
    grouped.finish(|id| sentences.get(id).cloned())
}

/// The PHIA judgement "this is a genuine compromise" and the attribution lines.
fn assess(w: &builder::Weight<'_>, techniques: &[String], max_level: Level) -> (portcullis_intel::phia::Assessment, Vec<String>) {
    let tactics = w.tactics;
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
    if w.rules >= 5 {
        ev.push((10, format!("{} different rules agree", w.rules)));
    }
    let kinds = &w.kinds;
    if kinds.len() >= 2 {
        ev.push((5, format!("evidence from {} kinds of log ({})", kinds.len(), kinds.iter().copied().collect::<Vec<_>>().join(", "))));
    }
    let iocs = &w.iocs;
    if !iocs.is_empty() {
        ev.push((10, format!("published indicators matched ({})", iocs.iter().copied().collect::<Vec<_>>().join("; "))));
    }
    if w.findings == 1 {
        ev.push((-20, "a single finding".into()));
    }
    let confidence = if tactics >= 3 && kinds.len() >= 2 && w.rules >= 5 {
        "high"
    } else if tactics >= 2 && w.rules >= 2 {
        "moderate"
    } else {
        "low"
    };
    let assessment = portcullis_intel::phia::assess("these findings are one genuine compromise", 40, &ev, confidence);
    let mut attribution = Vec::new();
    for actor in portcullis_intel::known_actors() {
        let (name, actor_techniques) = (&actor.name, &actor.techniques);
        let shared: Vec<&String> = techniques.iter().filter(|t| actor_techniques.contains(t)).collect();
        let named = iocs.iter().any(|c| c.contains(name.as_str()));
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
    use portcullis_finding::{Entity, EntityKind};

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

    /// The builder keeps findings as compact members: the order they come in does not
    /// matter (ids are unique), and each stage quotes its first finding's sentence.
    #[test]
    fn findings_in_any_order_make_the_same_incidents_with_their_sentences() {
        use EntityKind::*;
        let mut fs: Vec<Finding> = (0..60)
            .map(|n| {
                let mut f = finding(
                    &format!("f{n:02}"),
                    &format!("2021-08-24T{:02}:{:02}:00Z", n % 24, n % 7),
                    [Level::Medium, Level::High, Level::Critical][n % 3],
                    &[["attack.initial-access", "attack.t1190"], ["attack.execution", "attack.t1059"]][n % 2],
                    &[(Host, &format!("h{}", n % 3)), (Account, &format!("a{}", n % 4))],
                );
                f.rule_id = format!("rule-{}", n % 4).into();
                f.rule_title = format!("Rule {}", n % 4).into();
                f
            })
            .collect();
        let json = |i: &[Incident]| format!("{i:?}");
        let first = build(&fs, &IncidentOptions::default());
        assert!(!first.is_empty());
        fs.reverse();
        assert_eq!(json(&build(&fs, &IncidentOptions::default())), json(&first));
        fs.rotate_left(17);
        assert_eq!(json(&build(&fs, &IncidentOptions::default())), json(&first));
        for i in &first {
            for s in i.stages.iter().chain(&i.context) {
                let head = s.finding_ids[0].trim_start_matches('f');
                let more = if s.finding_ids.len() > 1 { format!(" (and {} more like it)", s.finding_ids.len() - 1) } else { String::new() };
                assert_eq!(s.sentence, format!("sentence f{head}{more}"));
            }
        }
        // Asked for by id: only the stages' first findings.
        let mut builder = IncidentBuilder::new(&IncidentOptions::default());
        fs.iter().for_each(|f| builder.add(f));
        let grouped = builder.group();
        let heads: usize = first.iter().map(|i| i.stages.len() + i.context.len()).sum();
        assert_eq!(grouped.sentence_ids().len(), heads);
        let unnamed = grouped.finish(|_| None);
        assert_eq!(unnamed[0].stages[0].sentence.split(" (and").next(), Some(&*unnamed[0].stages[0].rule_title));
        // One log read twice: two findings with one id and nothing to join them are two
        // incidents, and both quote the sentence.
        let twice = [
            finding("same", "2021-08-24T02:00:00Z", Level::High, &[], &[]),
            finding("same", "2021-08-24T02:00:00Z", Level::High, &[], &[]),
        ];
        let inc = build(&twice, &IncidentOptions::default());
        assert_eq!(inc.len(), 2);
        assert!(inc.iter().all(|i| i.stages[0].sentence == "sentence same"), "{inc:#?}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0), "0 seconds");
        assert_eq!(human_duration(720), "12 minutes");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3 days 4 hours");
        assert_eq!(human_duration(430 * 86_400), "14 months 10 days");
    }
}

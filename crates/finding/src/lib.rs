//! The one finding type: a detection or a correlation, with a stable id, the
//! entities it involves (host, account, source IP, mailbox, file path), its ATT&CK
//! tags, and one plain sentence saying what happened. Incidents, the case file,
//! the timeline and every output read findings in this form.

use std::collections::BTreeSet;
use std::sync::Arc;

use portcullis_correlate::{CorrelationFinding, CorrelationSet};
pub use portcullis_event::entity::{Entity, EntityKind, entities, kind_of_field, normalise, trivial};
use portcullis_event::roles::{Firsts, Role};
use portcullis_event::{Event, Timestamp};
use portcullis_hunt::Detection;
pub use portcullis_hunt::Matcher;
use portcullis_sigma::{Engine, Level};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Detection,
    Correlation,
}

/// Where a finding's rule came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// Portcullis's own rule pack (`rules/`), or built-in intel.
    Builtin,
    /// A rule loaded with `--sigma` (SigmaHQ community rules or the user's own).
    User,
}

impl RuleSource {
    pub fn of_path(path: &str) -> RuleSource {
        if path.starts_with("builtin:") { RuleSource::Builtin } else { RuleSource::User }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleSource::Builtin => "builtin",
            RuleSource::User => "user",
        }
    }

    pub fn parse(s: &str) -> RuleSource {
        if s == "builtin" { RuleSource::Builtin } else { RuleSource::User }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub id: String,
    pub kind: FindingKind,
    /// For a detection: a rule's logic or an indicator (a correlation is always `Rule`).
    pub matcher: Matcher,
    /// For a detection: which log its event came from (`Event::log_name`).
    pub log: Option<String>,
    /// Whose rule: Portcullis's own pack (curated, Exchange-specific) or one given with
    /// `--sigma` (community or the user's own).
    pub rule_source: RuleSource,
    pub rule_id: Arc<str>,
    pub rule_title: Arc<str>,
    pub level: Level,
    pub tags: Arc<[String]>,
    /// When it happened (for a correlation: its first contributing event).
    pub first_ts: Option<Timestamp>,
    /// For a correlation: the event that made it fire; for a detection, the same as first.
    pub last_ts: Option<Timestamp>,
    pub host: Option<String>,
    pub entities: Vec<Entity>,
    pub sentence: String,
    pub path: Option<String>,
    pub record: Option<u64>,
    /// Contributing finding ids (correlations).
    pub evidence: Vec<String>,
}

impl Finding {
    /// ATT&CK technique ids from the tags (`attack.t1190` → `T1190`, `attack.t1059.001` → `T1059.001`).
    pub fn techniques(&self) -> Vec<String> {
        techniques(&self.tags)
    }

    /// ATT&CK tactics from the tags, in kill-chain order.
    pub fn tactics(&self) -> Vec<&'static str> {
        tactics(&self.tags)
    }
}

pub fn techniques(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .filter_map(|t| t.strip_prefix("attack.t"))
        .filter(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|t| format!("T{}", t.to_ascii_uppercase()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// ATT&CK enterprise tactics in kill-chain order, by their Sigma tag names.
pub const TACTICS: [&str; 14] = [
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
];

pub fn tactics(tags: &[String]) -> Vec<&'static str> {
    TACTICS.iter().copied().filter(|t| tags.iter().any(|g| g.strip_prefix("attack.").is_some_and(|x| x.replace('_', "-") == *t))).collect()
}

fn day_time(t: Timestamp) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, _) = t.civil();
    format!("{d} {} {y} {h:02}:{mi:02} UTC", MONTHS[(mo as usize).saturating_sub(1).min(11)])
}

/// One plain sentence for a detection: when, what, where, from whom, and the outcome.
pub fn sentence(title: &str, ev: &Event) -> String {
    sentence_with(title, ev, &Firsts::of(ev))
}

fn sentence_with(title: &str, ev: &Event, roles: &Firsts<'_>) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(title.len() + 96);
    if let Some(t) = ev.timestamp {
        s.push_str(&day_time(t));
        s.push_str(" — ");
    }
    s.push_str(title);
    if let Some(v) = ev.get("ioc.value")
        && let (Some(t), Some(f)) = (ev.get("ioc.type"), ev.get("ioc.field"))
    {
        let _ = write!(s, " — {t} {v} in {f}");
    }
    if let Some(ip) = roles.first(Role::SourceAddress) {
        let _ = write!(s, " from {ip}");
    }
    if let Some(h) = roles.host() {
        let _ = write!(s, " on {h}");
    }
    if let Some(u) = roles.first(Role::Account) {
        let _ = write!(s, " as {u}");
    }
    if let Some(status) = roles.first(Role::Status) {
        let outcome = match status.trim().parse::<u16>() {
            Ok(200..=299) => "succeeded",
            Ok(300..=399) => "was redirected",
            Ok(401 | 403) => "was refused",
            _ => "answered",
        };
        let _ = write!(s, " ({outcome}, HTTP {status})");
    } else if let Some(cmd) = roles.first(Role::CommandLine) {
        s.push_str(": ");
        s.extend(cmd.chars().take(120));
    } else if let Some(f) = roles.first(Role::File) {
        let _ = write!(s, ": {f}");
    }
    s
}

/// What every finding of one rule says alike, made once per rule and shared by its
/// findings: its key, title and tags (a noisy rule has millions of findings).
pub struct RuleLabels {
    by_rule: Vec<(Arc<str>, Arc<str>, Arc<[String]>)>,
}

impl RuleLabels {
    pub fn of(engine: &Engine) -> RuleLabels {
        RuleLabels { by_rule: engine.rules.iter().map(|r| (r.key().into(), r.title.as_str().into(), r.tags.as_slice().into())).collect() }
    }
}

impl Finding {
    pub fn from_detection(labels: &RuleLabels, engine: &Engine, d: &Detection) -> Finding {
        let roles = Firsts::of(&d.event);
        Finding {
            host: roles.host().map(str::to_string),
            sentence: sentence_with(&engine.rules[d.rule].title, &d.event, &roles),
            path: Some(d.path.to_string_lossy().into_owned()),
            ..Finding::from_detection_to_group(labels, engine, d)
        }
    }

    /// A detection's finding as incidents group it: no sentence, host or path, so the
    /// event's roles are not read (the sentences of the few findings that head a stage
    /// are made afterwards, with [`Finding::from_detection`]).
    pub fn from_detection_to_group(labels: &RuleLabels, engine: &Engine, d: &Detection) -> Finding {
        let rule = &engine.rules[d.rule];
        let (rule_id, rule_title, tags) = labels.by_rule[d.rule].clone();
        Finding {
            id: d.id.clone(),
            kind: FindingKind::Detection,
            matcher: d.matcher,
            log: Some(d.event.log_name()),
            rule_source: RuleSource::of_path(&rule.origin.path),
            rule_id,
            rule_title,
            level: rule.level,
            tags,
            first_ts: d.event.timestamp,
            last_ts: d.event.timestamp,
            host: None,
            entities: entities(&d.event),
            sentence: String::new(),
            path: None,
            record: Some(d.event.record),
            evidence: Vec::new(),
        }
    }

    /// A correlation finding; its entities are those of its group and of its evidence
    /// (looked up among `detections_by_id` where the contributing detection is reported).
    pub fn from_correlation(set: &CorrelationSet, f: &CorrelationFinding, evidence_entities: &[Entity]) -> Finding {
        let c = &set.correlations[f.correlation];
        let mut entities: BTreeSet<Entity> = evidence_entities.iter().cloned().collect();
        entities.extend(f.entities.iter().filter_map(|e| Entity::decode(e)));
        for (field, value) in &f.group {
            if let Some(kind) = kind_of_field(field)
                && let Some(value) = normalise(kind, value)
            {
                entities.insert(Entity { kind, value });
            }
        }
        let host = entities.iter().find(|e| e.kind == EntityKind::Host).map(|e| e.value.clone());
        let group: Vec<String> = f.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let first = Timestamp(f.first_ts);
        let last = Timestamp(f.last_ts);
        let span = (f.last_ts - f.first_ts) / 1_000_000;
        let sentence = format!(
            "{} — {}: {} ({} {} within {}s{})",
            day_time(first),
            c.title,
            if group.is_empty() { "all events".to_string() } else { group.join(", ") },
            f.value,
            match c.kind {
                portcullis_correlate::Kind::EventCount => "events",
                portcullis_correlate::Kind::ValueCount => "distinct values",
                _ => c.kind.as_str(),
            },
            span,
            host.as_ref().map(|h| format!(", on {h}")).unwrap_or_default()
        );
        Finding {
            id: f.id.clone(),
            kind: FindingKind::Correlation,
            matcher: Matcher::Rule,
            log: None,
            rule_source: RuleSource::of_path(&c.origin.path),
            rule_id: c.key().into(),
            rule_title: c.title.as_str().into(),
            level: c.level,
            tags: c.tags.as_slice().into(),
            first_ts: Some(first),
            last_ts: Some(last),
            host,
            entities: entities.into_iter().collect(),
            sentence,
            path: None,
            record: None,
            evidence: f.evidence.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_of_one_rule_share_its_labels() {
        use portcullis_sigma::{LogsourceTable, RuleSet};
        let mut set = RuleSet::default();
        set.add_text(
            "title: Web shell\nid: 0b1f8a52-4c1b-4d1e-9a59-1f7f2c2f0001\ntags: [attack.persistence, attack.t1505.003]\nlogsource: {category: webserver}\ndetection:\n  s: {cs-uri-stem|endswith: '.aspx'}\n  condition: s\n",
            "t.yml",
            &Default::default(),
        );
        let engine = Engine::compile(&set, &LogsourceTable::builtin());
        let labels = RuleLabels::of(&engine);
        let detection = |uri: &str| {
            let mut event = Event::default();
            event.push_str("cs-uri-stem", uri);
            Detection {
                id: "0123456789abcdef0123456789abcdef".into(),
                rule: 0,
                matcher: Matcher::Rule,
                path: std::sync::Arc::from(std::path::Path::new("u_ex.log")),
                event,
            }
        };
        let (a, b) = (
            Finding::from_detection(&labels, &engine, &detection("/a.aspx")),
            Finding::from_detection(&labels, &engine, &detection("/b.aspx")),
        );
        assert_eq!((&*a.rule_id, &*a.rule_title), (&*engine.rules[0].key(), "Web shell"));
        assert_eq!(&*a.tags, ["attack.persistence", "attack.t1505.003"]);
        assert!(Arc::ptr_eq(&a.rule_id, &b.rule_id) && Arc::ptr_eq(&a.rule_title, &b.rule_title) && Arc::ptr_eq(&a.tags, &b.tags));
        // Written as before: strings and a list.
        let json = serde_json::to_value(&a).expect("serialises");
        assert_eq!(json["rule_title"], "Web shell");
        assert_eq!(json["tags"], serde_json::json!(["attack.persistence", "attack.t1505.003"]));
    }

    #[test]
    fn tags_to_attack() {
        let tags: Vec<String> = ["attack.initial-access", "attack.t1190", "attack.execution", "attack.t1059.001", "cve.2021-34473"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(techniques(&tags), ["T1059.001", "T1190"]);
        assert_eq!(tactics(&tags), ["initial-access", "execution"]);
    }

    #[test]
    fn entities_and_sentence_of_an_iis_request() {
        let mut e = Event::new(portcullis_event::SourceKind::W3c);
        e.push_str("s-computername", "EXCH01.corp.local");
        e.push_str("c-ip", "185.220.101.182");
        e.push_str("cs-username", "-");
        e.push_str("sc-status", "200");
        e.timestamp = Timestamp::parse("2021-08-24T02:13:00Z");
        let ents = entities(&e);
        assert!(ents.contains(&Entity { kind: EntityKind::Host, value: "exch01".into() }));
        assert!(ents.contains(&Entity { kind: EntityKind::SourceIp, value: "185.220.101.182".into() }));
        assert_eq!(ents.len(), 2);
        assert_eq!(
            sentence("ProxyShell request", &e),
            "24 Aug 2021 02:13 UTC — ProxyShell request from 185.220.101.182 on EXCH01.corp.local (succeeded, HTTP 200)"
        );
    }
}

//! Correlation documents into typed correlations, with their rule references resolved.

use std::collections::HashMap;

use portcullis_sigma::modifiers::CmpOp;
use portcullis_sigma::rule::{CorrelationDoc, Level, LoadError, Origin, Rule};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
    ValueSum,
    ValueAvg,
    ValuePercentile,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EventCount => "event_count",
            Kind::ValueCount => "value_count",
            Kind::Temporal => "temporal",
            Kind::TemporalOrdered => "temporal_ordered",
            Kind::ValueSum => "value_sum",
            Kind::ValueAvg => "value_avg",
            Kind::ValuePercentile => "value_percentile",
        }
    }
}

/// What a correlation refers to: a detection rule or another correlation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Rule(usize),
    Correlation(usize),
}

/// A conjunction of comparisons (`gt: 100`, `lte: 200`); `neq` is the negation of equality.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub tests: Vec<(CmpOp, bool, f64)>,
}

impl Condition {
    pub fn holds(&self, v: f64) -> bool {
        self.tests.iter().all(|(op, negate, want)| op.test(v, *want) != *negate)
    }

    /// Only `gt`/`gte`: once true for a growing window, it stays true.
    pub fn grows(&self) -> bool {
        self.tests.iter().all(|(op, negate, _)| !negate && matches!(op, CmpOp::Gt | CmpOp::Gte))
    }
}

#[derive(Clone, Debug)]
pub struct Correlation {
    pub origin: Origin,
    pub id: Option<String>,
    pub name: Option<String>,
    pub title: String,
    pub level: Level,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub kind: Kind,
    pub sources: Vec<Source>,
    /// The reference as written, per source (rule `name` matters for aliases).
    pub source_names: Vec<String>,
    pub group_by: Vec<String>,
    /// alias → (rule name or id → field)
    pub aliases: HashMap<String, HashMap<String, String>>,
    pub timespan_micros: i64,
    pub condition: Condition,
    pub field: Option<String>,
    pub generate: bool,
}

impl Correlation {
    /// The key findings carry: id, else name, else file and line.
    pub fn key(&self) -> String {
        self.id.clone().or_else(|| self.name.clone()).unwrap_or_else(|| self.origin.to_string())
    }

    /// The event field a group-by name reads for the source at `pos` (resolving aliases).
    pub fn group_field<'a>(&'a self, group: &'a str, pos: usize) -> &'a str {
        if let Some(map) = self.aliases.get(group) {
            let name = &self.source_names[pos];
            if let Some(f) = map.get(name) {
                return f;
            }
        }
        group
    }
}

/// Every correlation of a rule set, and which correlations each source feeds.
#[derive(Clone, Debug, Default)]
pub struct CorrelationSet {
    pub correlations: Vec<Correlation>,
    /// source → [(correlation, position in its `rules`)] (looked up for every match, so
    /// with a hash quicker than the default one)
    pub subscribers: HashMap<Source, Vec<(usize, usize)>, portcullis_event::text_hash::TextHash>,
    /// Rules referenced only by correlations without `generate: true`: matched, not reported.
    pub hidden_rules: Vec<usize>,
    /// Correlations referenced by other correlations: findings feed them, not the report.
    pub hidden_correlations: Vec<usize>,
}

impl CorrelationSet {
    pub fn is_empty(&self) -> bool {
        self.correlations.is_empty()
    }

    /// Parses and resolves correlation documents against the loaded rules.
    pub fn compile(docs: &[CorrelationDoc], rules: &[Rule]) -> (CorrelationSet, Vec<LoadError>) {
        let mut errors = Vec::new();
        let mut parsed: Vec<(Correlation, Vec<String>)> = Vec::new();
        for d in docs {
            match parse(d) {
                Ok(c) => parsed.push(c),
                Err((line, reason)) => errors.push(LoadError { path: d.origin.path.to_string(), line, reason, needs_placeholder: false }),
            }
        }
        let corr_index = |r: &str, list: &[(Correlation, Vec<String>)]| {
            list.iter().position(|(c, _)| c.id.as_deref() == Some(r) || c.name.as_deref() == Some(r))
        };
        let rule_index = |r: &str| rules.iter().position(|x| x.id.as_deref() == Some(r) || x.name.as_deref() == Some(r));
        let mut resolved: Vec<Option<Correlation>> = Vec::new();
        for (c, refs) in &parsed {
            let mut c = c.clone();
            let mut ok = true;
            for r in refs {
                let src = match (rule_index(r), corr_index(r, &parsed)) {
                    (Some(i), _) => Source::Rule(i),
                    (None, Some(i)) => Source::Correlation(i),
                    (None, None) => {
                        errors.push(LoadError {
                            path: c.origin.path.to_string(),
                            line: c.origin.line,
                            reason: format!("correlation refers to `{r}`, which is no loaded rule or correlation"),
                            needs_placeholder: false,
                        });
                        ok = false;
                        break;
                    }
                };
                c.sources.push(src);
                c.source_names.push(r.clone());
            }
            resolved.push(ok.then_some(c));
        }
        // A correlation whose references failed cannot feed others; a cycle is an error.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..resolved.len() {
                let broken = resolved[i]
                    .as_ref()
                    .is_some_and(|c| c.sources.iter().any(|s| matches!(s, Source::Correlation(j) if resolved[*j].is_none())));
                if broken {
                    let c = resolved[i].take().expect("checked");
                    errors.push(LoadError {
                        path: c.origin.path.to_string(),
                        line: c.origin.line,
                        reason: "correlation refers to a correlation that failed to load".into(),
                        needs_placeholder: false,
                    });
                    changed = true;
                }
            }
        }
        for i in 0..resolved.len() {
            if resolved[i].is_some() && in_cycle(i, &resolved) {
                let c = resolved[i].take().expect("checked");
                errors.push(LoadError {
                    path: c.origin.path.to_string(),
                    line: c.origin.line,
                    reason: "correlations refer to each other in a cycle".into(),
                    needs_placeholder: false,
                });
            }
        }
        // Renumber the survivors.
        let mut new_index = vec![usize::MAX; resolved.len()];
        let mut correlations = Vec::new();
        for (i, c) in resolved.iter().enumerate() {
            if let Some(c) = c {
                new_index[i] = correlations.len();
                correlations.push(c.clone());
            }
        }
        for c in &mut correlations {
            for s in &mut c.sources {
                if let Source::Correlation(j) = s {
                    *j = new_index[*j];
                }
            }
        }
        let mut set = CorrelationSet { correlations, ..Default::default() };
        let mut generated_rules = std::collections::HashSet::new();
        for (ci, c) in set.correlations.iter().enumerate() {
            for (pos, s) in c.sources.iter().enumerate() {
                set.subscribers.entry(*s).or_default().push((ci, pos));
                match s {
                    Source::Rule(r) if c.generate => {
                        generated_rules.insert(*r);
                    }
                    Source::Correlation(j) => set.hidden_correlations.push(*j),
                    _ => {}
                }
            }
        }
        let mut hidden: Vec<usize> = set
            .subscribers
            .keys()
            .filter_map(|s| if let Source::Rule(r) = s { Some(*r) } else { None })
            .filter(|r| !generated_rules.contains(r))
            .collect();
        hidden.sort_unstable();
        set.hidden_rules = hidden;
        set.hidden_correlations.sort_unstable();
        set.hidden_correlations.dedup();
        (set, errors)
    }
}

fn in_cycle(start: usize, list: &[Option<Correlation>]) -> bool {
    let mut stack = vec![(start, 0usize)];
    let mut seen = vec![false; list.len()];
    while let Some((i, depth)) = stack.pop() {
        if depth > list.len() {
            return true;
        }
        let Some(c) = &list[i] else { continue };
        for s in &c.sources {
            if let Source::Correlation(j) = s {
                if *j == start {
                    return true;
                }
                if !seen[*j] {
                    seen[*j] = true;
                    stack.push((*j, depth + 1));
                }
            }
        }
    }
    false
}

/// Parses `30s`, `5m`, `1h`, `2d`, `1w` (and `1M`/`1y` for long windows) into microseconds.
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1_000_000).filter(|v| *v > 0)
}

fn parse(d: &CorrelationDoc) -> Result<(Correlation, Vec<String>), (usize, String)> {
    let at = |line: usize, m: &str| (line, m.to_string());
    let kind = match d.kind.as_deref() {
        Some("event_count") => Kind::EventCount,
        Some("value_count") => Kind::ValueCount,
        Some("temporal") => Kind::Temporal,
        Some("temporal_ordered") => Kind::TemporalOrdered,
        Some("value_sum") => Kind::ValueSum,
        Some("value_avg") => Kind::ValueAvg,
        Some("value_percentile") => Kind::ValuePercentile,
        Some(other) => return Err(at(d.line, &format!("unknown correlation type `{other}`"))),
        None => return Err(at(d.line, "correlation needs a `type`")),
    };
    let refs = d.rules.clone();
    if refs.is_empty() {
        return Err(at(d.line, "correlation needs `rules`"));
    }
    let group_by = d.group_by.clone();
    let timespan = d.timespan.as_ref().ok_or_else(|| at(d.line, "correlation needs a `timespan`"))?;
    let timespan_micros = timespan
        .value
        .as_deref()
        .and_then(parse_timespan)
        .ok_or_else(|| at(timespan.line, "timespan must be a number and s, m, h, d or w (e.g. `1h`)"))?;
    let mut tests = Vec::new();
    let mut field = None;
    match &d.condition {
        Some(c) => {
            let Some(entries) = &c.value else { return Err(at(c.line, "condition must be a mapping like `gte: 10`")) };
            for e in entries {
                let key = e.key.as_str();
                if key == "field" {
                    field = e.text.clone();
                    continue;
                }
                let Some(number) = e.number else { return Err(at(e.value_line, &format!("condition `{key}` needs a number"))) };
                let (op, negate) = match key {
                    "gt" => (CmpOp::Gt, false),
                    "gte" => (CmpOp::Gte, false),
                    "lt" => (CmpOp::Lt, false),
                    "lte" => (CmpOp::Lte, false),
                    "eq" => (CmpOp::Eq, false),
                    "neq" => (CmpOp::Eq, true),
                    other => return Err(at(e.key_line, &format!("unknown condition operator `{other}`"))),
                };
                tests.push((op, negate, number));
            }
        }
        None if matches!(kind, Kind::Temporal | Kind::TemporalOrdered) => {
            tests.push((CmpOp::Gte, false, refs.len() as f64));
        }
        None => return Err(at(d.line, "this correlation type needs a `condition`")),
    }
    if tests.is_empty() && !matches!(kind, Kind::Temporal | Kind::TemporalOrdered) {
        return Err(at(d.line, "the condition has no comparison"));
    }
    if tests.is_empty() {
        tests.push((CmpOp::Gte, false, refs.len() as f64));
    }
    if matches!(kind, Kind::ValueCount | Kind::ValueSum | Kind::ValueAvg | Kind::ValuePercentile) && field.is_none() {
        return Err(at(d.line, &format!("{} needs `field` in its condition", kind.as_str())));
    }
    let aliases: HashMap<String, HashMap<String, String>> =
        d.aliases.iter().map(|(alias, pairs)| (alias.clone(), pairs.iter().cloned().collect())).collect();
    let level = d.level.as_deref().and_then(Level::parse).unwrap_or(Level::Medium);
    Ok((
        Correlation {
            origin: d.origin.clone(),
            id: d.id.clone(),
            name: d.name.clone(),
            title: if d.title.is_empty() { "(untitled correlation)".into() } else { d.title.clone() },
            level,
            tags: d.tags.clone(),
            description: d.description.clone(),
            kind,
            sources: Vec::new(),
            source_names: Vec::new(),
            group_by,
            aliases,
            timespan_micros,
            condition: Condition { tests },
            field,
            generate: d.generate,
        },
        refs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sigma::{Placeholders, RuleSet};

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("1h"), Some(3_600_000_000));
        assert_eq!(parse_timespan("90m"), Some(5_400_000_000));
        assert_eq!(parse_timespan("10s"), Some(10_000_000));
        assert_eq!(parse_timespan("h"), None);
        assert_eq!(parse_timespan("0s"), None);
        assert_eq!(parse_timespan("5x"), None);
        assert_eq!(parse_timespan("99999999999999999d"), None);
    }

    #[test]
    fn every_specification_example_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/sigma-specification/tests/schema/correlation");
        if !dir.is_dir() {
            assert!(
                std::env::var("PORTCULLIS_REQUIRE_SHARED").as_deref() != Ok("1"),
                "../shared is required (PORTCULLIS_REQUIRE_SHARED=1) but missing"
            );
            eprintln!("SKIPPED: ../shared/sigma-specification not found");
            return;
        }
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let mut set = RuleSet::default();
            set.add_path(&p, &Placeholders::new());
            assert!(set.errors.is_empty(), "{}: {:?}", p.display(), set.errors);
            assert_eq!(set.correlations.len(), 1);
            // The examples refer to rules that are not in the file: parse without resolving.
            let parsed = parse(&set.correlations[0]);
            assert!(parsed.is_ok(), "{}: {:?}", p.display(), parsed.err());
            n += 1;
        }
        assert_eq!(n, 8);
    }
}

//! Indicators in the hunt: each indicator context (a feed's actor, campaign or file)
//! becomes one synthetic rule in the engine, so an indicator match is a detection like any
//! other — a finding with entities, joined into incidents, stored in the case file. The
//! matched value, its kind and the field it was in are added to the detection's event as
//! `ioc.value`, `ioc.type`, `ioc.field`, `ioc.context`, `ioc.source` and, for STIX, `ioc.stix_id`.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_event::Event;
use portcullis_intel::{Hit, IocSet};
use portcullis_sigma::expr::Expr;
use portcullis_sigma::rule::Origin;
use portcullis_sigma::{Engine, Level, Logsource, Rule};

/// Most synthetic rules made from indicator contexts; past it they are grouped coarser.
pub const MAX_CONTEXT_RULES: usize = 10_000;

/// Indicators compiled for the hunt, each pointing at its synthetic rule.
pub struct IocRules {
    pub set: IocSet,
    /// Indicator index → index into `Engine::rules`.
    pub rule_of: Vec<u32>,
}

impl std::fmt::Debug for IocRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IocRules({} indicators)", self.set.len())
    }
}

impl IocRules {
    /// Adds one rule per indicator context to `engine` and returns the matcher. A feed that
    /// gives (nearly) every indicator its own context — a STIX bundle naming each indicator —
    /// would make a rule per indicator; past [`MAX_CONTEXT_RULES`] contexts, indicators share
    /// one rule per actor or campaign and source, and keep their own description in
    /// `ioc.context`.
    pub fn install(engine: &mut Engine, set: IocSet) -> IocRules {
        use portcullis_intel::Context;
        use std::collections::HashSet;
        let fine = |c: &Context| (c.title(), c.source.clone());
        let coarse = |c: &Context| {
            let names: Vec<&str> = c.actors.iter().chain(&c.campaigns).map(String::as_str).collect();
            (if names.is_empty() { c.source.clone() } else { names.join(", ") }, c.source.clone())
        };
        // Both counts stop as soon as they pass the limit: a million contexts are not all
        // titled to find out that there are too many.
        let too_many = {
            let mut contexts: HashSet<*const Context> = HashSet::new();
            set.indicators.iter().any(|i| contexts.insert(Arc::as_ptr(&i.context)) && contexts.len() > MAX_CONTEXT_RULES) && {
                let (mut contexts, mut keys) = (HashSet::<*const Context>::new(), HashSet::new());
                set.indicators
                    .iter()
                    .any(|i| contexts.insert(Arc::as_ptr(&i.context)) && keys.insert(fine(&i.context)) && keys.len() > MAX_CONTEXT_RULES)
            }
        };
        // A rule is found by the context's parts, borrowed (the key is a function of them);
        // its key text and id are made once per rule.
        type Parts<'c> = (&'c [String], &'c [String], &'c str, &'c str);
        let mut by_parts: HashMap<Parts<'_>, u32> = HashMap::new();
        let mut by_context: HashMap<(String, String), u32> = HashMap::new();
        let mut rule_of = Vec::with_capacity(set.len());
        for ind in &set.indicators {
            let c: &Context = &ind.context;
            // The description is part of a fine key (the title), not of a coarse one.
            let p: Parts<'_> = (&c.actors, &c.campaigns, &c.source, if too_many { "" } else { &c.description });
            if let Some(&r) = by_parts.get(&p) {
                rule_of.push(r);
                continue;
            }
            let key = if too_many { coarse(c) } else { fine(c) };
            let next = engine.rules.len() as u32;
            let r = *by_context.entry(key.clone()).or_insert_with(|| {
                let mut description = format!("Indicator from {}", c.source);
                if !c.actors.is_empty() {
                    description.push_str(&format!("; indicates {}", c.actors.join(", ")));
                }
                if !c.campaigns.is_empty() {
                    description.push_str(&format!("; campaign {}", c.campaigns.join(", ")));
                }
                if !c.description.is_empty() && !too_many {
                    description.push_str(&format!("; {}", c.description));
                }
                let id = format!("ioc-{:016x}", xxhash_rust::xxh3::xxh3_64(format!("{}\n{}", key.0, key.1).as_bytes()));
                engine.rules.push(Rule {
                    origin: Origin { path: Arc::from(format!("ioc:{}", c.source)), line: 0 },
                    id: Some(id),
                    name: None,
                    title: format!("IOC match: {}", key.0),
                    level: Level::High,
                    status: Some("stable".into()),
                    description: Some(description),
                    author: Some(c.source.clone()),
                    date: None,
                    tags: vec!["ioc".into()],
                    references: Vec::new(),
                    falsepositives: vec!["shared infrastructure (hosting, CDN, Tor exit) — check the matched value and time".into()],
                    logsource: Logsource::default(),
                    detection: Expr::Const(false),
                });
                next
            });
            by_parts.insert(p, r);
            rule_of.push(r);
        }
        IocRules { set, rule_of }
    }

    /// The indicators in `ev`: (indicator, rule, field name), each indicator once.
    pub fn scan<'e>(&self, ev: &'e Event, hits: &mut Vec<Hit>, out: &mut Vec<(u32, u32, &'e str)>) {
        out.clear();
        self.set.scan_event(ev, hits, |k, hits| {
            for h in hits {
                if !out.iter().any(|(i, _, _)| *i == h.indicator) {
                    out.push((h.indicator, self.rule_of[h.indicator as usize], ev.field(k).name));
                }
            }
        });
    }

    /// `ev` with the match described in `ioc.*` fields.
    pub fn annotate(&self, ev: &Event, indicator: u32, field: &str) -> Event {
        let ind = &self.set.indicators[indicator as usize];
        let title = ind.context.title();
        let described = [
            ("ioc.value", ind.value.as_str()),
            ("ioc.type", ind.kind.as_str()),
            ("ioc.field", field),
            ("ioc.context", title.as_str()),
            ("ioc.source", ind.context.source.as_str()),
            // The feed's own object, to look the indicator up where it came from.
            ("ioc.stix_id", ind.stix_id.as_deref().unwrap_or_default()),
        ];
        let described = if ind.stix_id.is_some() { &described[..] } else { &described[..5] };
        // Sized once for what is added, so that adding it does not double the copy's buffers.
        let mut e = ev.kept(described.len(), described.iter().map(|(name, value)| name.len() + value.len()).sum());
        for (name, value) in described {
            e.push_str(name, value);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_intel::{Context, Indicator, Kind};
    use portcullis_sigma::LogsourceTable;

    /// The rule key each indicator gets, written the plain way: every context titled.
    fn reference_keys(indicators: &[Indicator]) -> Vec<(String, String)> {
        let fine = |c: &Context| (c.title(), c.source.clone());
        let coarse = |c: &Context| {
            let names: Vec<&str> = c.actors.iter().chain(&c.campaigns).map(String::as_str).collect();
            (if names.is_empty() { c.source.clone() } else { names.join(", ") }, c.source.clone())
        };
        let distinct: std::collections::HashSet<*const Context> = indicators.iter().map(|i| Arc::as_ptr(&i.context)).collect();
        let too_many = distinct.len() > MAX_CONTEXT_RULES
            && indicators.iter().map(|i| fine(&i.context)).collect::<std::collections::HashSet<_>>().len() > MAX_CONTEXT_RULES;
        indicators.iter().map(|i| if too_many { coarse(&i.context) } else { fine(&i.context) }).collect()
    }

    fn indicators(contexts: usize) -> Vec<Indicator> {
        let mut out = Vec::new();
        for k in 0..contexts {
            let c = Arc::new(Context {
                source: if k % 7 == 0 { "feed-b".into() } else { "feed-a".into() },
                actors: if k % 3 == 0 { vec!["APT31".into()] } else { vec![] },
                campaigns: if k % 5 == 0 { vec!["Journalists".into()] } else { vec![] },
                // Titles collide past 80 characters, and some contexts repeat.
                description: format!("{}{}", "x".repeat(if k % 4 == 0 { 90 } else { 0 }), k % (contexts / 2 + 1)),
            });
            for v in 0..2 {
                out.push(Indicator { kind: Kind::Domain, value: format!("d{k}-{v}.example"), context: c.clone(), stix_id: None });
            }
        }
        out
    }

    #[test]
    fn indicators_get_the_rule_their_context_key_names() {
        for contexts in [40, MAX_CONTEXT_RULES + 200, 3 * MAX_CONTEXT_RULES] {
            let list = indicators(contexts);
            let keys = reference_keys(&list);
            let mut engine = Engine::compile_rules(Vec::new(), &[], &LogsourceTable::default());
            let rules = IocRules::install(&mut engine, IocSet::new(list));
            assert_eq!(rules.rule_of.len(), keys.len());
            let mut rule_of_key: HashMap<&(String, String), u32> = HashMap::new();
            for (key, &r) in keys.iter().zip(&rules.rule_of) {
                assert_eq!(engine.rules[r as usize].title, format!("IOC match: {}", key.0), "{contexts}");
                assert_eq!(*rule_of_key.entry(key).or_insert(r), r, "one rule per key ({contexts})");
            }
            assert_eq!(engine.rules.len(), rule_of_key.len(), "{contexts}");
            // The first set keeps a rule per title, the last is grouped by actor and source.
            if contexts == 40 {
                assert!(engine.rules.len() > 5, "{}", engine.rules.len());
            }
            if contexts == 3 * MAX_CONTEXT_RULES {
                assert!(engine.rules.len() < 10, "{}", engine.rules.len());
            }
        }
    }
}

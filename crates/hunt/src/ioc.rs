//! Indicators in the hunt: each indicator context (a feed's actor, campaign or file)
//! becomes one synthetic rule in the engine, so an indicator match is a detection like any
//! other — a finding with entities, joined into incidents, stored in the case file. The
//! matched value, its kind and the field it was in are added to the detection's event as
//! `ioc.value`, `ioc.type`, `ioc.field` and `ioc.context`.

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
        let fine = |c: &portcullis_intel::Context| (c.title(), c.source.clone());
        let coarse = |c: &portcullis_intel::Context| {
            let names: Vec<&str> = c.actors.iter().chain(&c.campaigns).map(String::as_str).collect();
            (if names.is_empty() { c.source.clone() } else { names.join(", ") }, c.source.clone())
        };
        let distinct: std::collections::HashSet<*const portcullis_intel::Context> =
            set.indicators.iter().map(|i| Arc::as_ptr(&i.context)).collect();
        let too_many = distinct.len() > MAX_CONTEXT_RULES
            && set.indicators.iter().map(|i| fine(&i.context)).collect::<std::collections::HashSet<_>>().len() > MAX_CONTEXT_RULES;
        let mut by_context: HashMap<(String, String), u32> = HashMap::new();
        let mut rule_of = Vec::with_capacity(set.len());
        for ind in &set.indicators {
            let c = &ind.context;
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
            rule_of.push(r);
        }
        IocRules { set, rule_of }
    }

    /// The indicators in `ev`: (indicator, rule, field name), each indicator once.
    pub fn scan<'e>(&self, ev: &'e Event, hits: &mut Vec<Hit>, out: &mut Vec<(u32, u32, &'e str)>) {
        out.clear();
        for f in ev.fields() {
            hits.clear();
            self.set.scan(f.value, hits);
            for h in hits.iter() {
                if !out.iter().any(|(i, _, _)| *i == h.indicator) {
                    out.push((h.indicator, self.rule_of[h.indicator as usize], f.name));
                }
            }
        }
    }

    /// `ev` with the match described in `ioc.*` fields.
    pub fn annotate(&self, ev: &Event, indicator: u32, field: &str) -> Event {
        let ind = &self.set.indicators[indicator as usize];
        let mut e = ev.clone();
        e.push_str("ioc.value", &ind.value);
        e.push_str("ioc.type", ind.kind.as_str());
        e.push_str("ioc.field", field);
        e.push_str("ioc.context", &ind.context.title());
        e.push_str("ioc.source", &ind.context.source);
        e
    }
}

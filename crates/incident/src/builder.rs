//! Incidents built from findings a finding at a time. Each finding is kept as a compact
//! member (its rule, log and entities interned, its id in one arena), not as the finding,
//! so a hunt's or a case's million findings need not all be held. The few sentences the
//! stages quote are asked for by id once the groups are known ([`Grouped::finish`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use portcullis_event::Timestamp;
use portcullis_event::text_hash::TextHash;
use portcullis_event::union_find::UnionFind;
use portcullis_finding::{Entity, EntityKind, Finding, FindingKind, Matcher, RuleSource, TACTICS};
use portcullis_sigma::Level;

use crate::{EntityCount, Evidence, Incident, IncidentOptions, Join, Stage};

/// A rule as incidents use it, once however many findings it has.
struct RuleInfo {
    /// Numbers the rule id: two titles (or tag lists) of one rule id are one rule here.
    id_no: u32,
    title: Arc<str>,
    tactics: Vec<&'static str>,
    techniques: Vec<String>,
}

/// One finding, compact: about 48 bytes, its id and entity numbers aside.
struct Member {
    first: i64,
    /// Its last time (a correlation's), or its first.
    end: i64,
    /// Where its id ends in `ids` and its entities end in `entity_refs` (each starts
    /// where the member before ends).
    id_end: usize,
    entities_end: usize,
    rule: u32,
    /// Index into `logs`, or `NO_LOG`.
    log: u32,
    level: Level,
    kind: FindingKind,
    matcher: Matcher,
    source: RuleSource,
}

const NO_LOG: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
/// Members and entities are numbered in 32 bits, `NONE` aside: past this many (some 400
/// GB of detections) findings are left out and counted.
const MAX_NUMBERED: usize = u32::MAX as usize - 1;

/// Collects findings for [`IncidentBuilder::group`]; only those at the options' minimum
/// level or above, with a time, are kept.
pub struct IncidentBuilder {
    opts: IncidentOptions,
    members: Vec<Member>,
    ids: String,
    entity_refs: Vec<u32>,
    /// Each distinct entity once, numbered by its place; `entity_index` holds the numbers,
    /// hashed by the entity they name (entity values are attacker-controlled text).
    entities: Vec<Entity>,
    entity_index: hashbrown::HashTable<u32>,
    hasher: TextHash,
    rules: Vec<RuleInfo>,
    rule_index: HashMap<(Arc<str>, Arc<str>, Arc<[String]>), u32>,
    rule_ids: HashMap<Arc<str>, u32>,
    /// The last finding's labels and their rule: findings of one rule come in runs, and
    /// share their labels' allocations.
    last_rule: Option<(Arc<str>, Arc<str>, Arc<[String]>, u32)>,
    logs: Vec<String>,
    log_index: HashMap<String, u32>,
    left_out: u64,
}

/// Why a finding joined its group: the entity it shares with an earlier finding.
#[derive(Clone, Copy)]
struct Shared {
    entity: u32,
    /// The earlier finding (its place in time order) and when it was last seen.
    prev: u32,
    at: i64,
}

impl IncidentBuilder {
    pub fn new(opts: &IncidentOptions) -> IncidentBuilder {
        IncidentBuilder {
            opts: opts.clone(),
            members: Vec::new(),
            ids: String::new(),
            entity_refs: Vec::new(),
            entities: Vec::new(),
            entity_index: hashbrown::HashTable::new(),
            hasher: TextHash::default(),
            rules: Vec::new(),
            rule_index: HashMap::new(),
            rule_ids: HashMap::new(),
            last_rule: None,
            logs: Vec::new(),
            log_index: HashMap::new(),
            left_out: 0,
        }
    }

    /// Findings kept so far.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Takes one finding into account (findings below the minimum level or without a time
    /// are left out). Findings are ordered by time and id; findings equal in both keep the
    /// order they were added in.
    pub fn add(&mut self, f: &Finding) {
        let Some(first) = f.first_ts else { return };
        if f.level < self.opts.min_level {
            return;
        }
        if self.members.len() >= MAX_NUMBERED || self.entities.len() + f.entities.len() >= MAX_NUMBERED {
            self.left_out += 1;
            return;
        }
        let rule = self.rule_of(f);
        let log = match &f.log {
            None => NO_LOG,
            Some(l) => match self.log_index.get(l.as_str()) {
                Some(&i) => i,
                None => {
                    let i = self.logs.len() as u32;
                    self.logs.push(l.clone());
                    self.log_index.insert(l.clone(), i);
                    i
                }
            },
        };
        for e in &f.entities {
            let n = self.entity_number(e);
            self.entity_refs.push(n);
        }
        self.ids.push_str(&f.id);
        self.members.push(Member {
            first: first.0,
            end: f.last_ts.unwrap_or(first).0,
            id_end: self.ids.len(),
            entities_end: self.entity_refs.len(),
            rule,
            log,
            level: f.level,
            kind: f.kind,
            matcher: f.matcher,
            source: f.rule_source,
        });
    }

    fn entity_number(&mut self, e: &Entity) -> u32 {
        let IncidentBuilder { entities, entity_index, hasher, .. } = self;
        let h = hasher.hash_one(e);
        if let Some(&n) = entity_index.find(h, |&n| entities[n as usize] == *e) {
            return n;
        }
        let n = entities.len() as u32;
        entities.push(e.clone());
        entity_index.insert_unique(h, n, |&n| hasher.hash_one(&entities[n as usize]));
        n
    }

    fn rule_of(&mut self, f: &Finding) -> u32 {
        if let Some((id, title, tags, n)) = &self.last_rule
            && Arc::ptr_eq(id, &f.rule_id)
            && Arc::ptr_eq(title, &f.rule_title)
            && Arc::ptr_eq(tags, &f.tags)
        {
            return *n;
        }
        let key = (f.rule_id.clone(), f.rule_title.clone(), f.tags.clone());
        let n = match self.rule_index.get(&key) {
            Some(&n) => n,
            None => {
                let next = self.rule_ids.len() as u32;
                let id_no = *self.rule_ids.entry(f.rule_id.clone()).or_insert(next);
                let n = self.rules.len() as u32;
                self.rules.push(RuleInfo {
                    id_no,
                    title: f.rule_title.clone(),
                    tactics: portcullis_finding::tactics(&f.tags),
                    techniques: portcullis_finding::techniques(&f.tags),
                });
                self.rule_index.insert(key.clone(), n);
                n
            }
        };
        self.last_rule = Some((key.0, key.1, key.2, n));
        n
    }

    fn id(&self, m: usize) -> &str {
        let start = if m == 0 { 0 } else { self.members[m - 1].id_end };
        &self.ids[start..self.members[m].id_end]
    }

    fn entities_of(&self, m: usize) -> &[u32] {
        let start = if m == 0 { 0 } else { self.members[m - 1].entities_end };
        &self.entity_refs[start..self.members[m].entities_end]
    }

    fn host_of(&self, m: usize) -> u32 {
        self.entities_of(m).iter().copied().find(|&e| self.entities[e as usize].kind == EntityKind::Host).unwrap_or(NONE)
    }

    fn rank(&self, m: usize) -> Evidence {
        let f = &self.members[m];
        Evidence::rank(f.level, f.matcher, f.source, f.kind, false)
    }

    /// Groups the findings into incidents, most severe first, then by time. Findings are
    /// walked in time order; a finding joins the group of the most recent earlier finding
    /// that shares an entity with it, if that finding is no more than the window older.
    pub fn group(self) -> Grouped {
        let n = self.members.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            (self.members[a].first, self.id(a)).cmp(&(self.members[b].first, self.id(b)))
        });
        let at = |k: usize| order[k] as usize;
        // Noisy stacks: one community rule firing again and again on one host.
        let community = |m: usize| self.members[m].kind == FindingKind::Detection && self.members[m].source == RuleSource::User;
        let mut stack_size: HashMap<(u32, u32), usize> = HashMap::new();
        for m in (0..n).filter(|&m| community(m)) {
            *stack_size.entry((self.rules[self.members[m].rule as usize].id_no, self.host_of(m))).or_default() += 1;
        }
        let noisy: Vec<bool> = (0..n)
            .map(|k| {
                let m = at(k);
                community(m)
                    && stack_size
                        .get(&(self.rules[self.members[m].rule as usize].id_no, self.host_of(m)))
                        .is_some_and(|&c| c >= self.opts.noisy_stack)
            })
            .collect();
        drop(stack_size);
        // Entities seen on three or more hosts (lab, service and admin accounts) join nothing.
        let mut hosts_seen: Vec<[u32; 3]> = vec![[NONE; 3]; self.entities.len()];
        for m in 0..n {
            let h = self.host_of(m);
            if h == NONE {
                continue;
            }
            for &e in self.entities_of(m) {
                if self.entities[e as usize].kind == EntityKind::Host {
                    continue;
                }
                let seen = &mut hosts_seen[e as usize];
                if let Some(free) = seen.iter().position(|&s| s == NONE || s == h)
                    && seen[free] == NONE
                {
                    seen[free] = h;
                }
            }
        }
        let widespread: Vec<bool> = hosts_seen.iter().map(|s| s[2] != NONE).collect();
        drop(hosts_seen);

        let mut dsu = UnionFind::new(n);
        let mut reasons: Vec<Option<Shared>> = vec![None; n];
        let mut last_seen: Vec<(u32, i64)> = vec![(NONE, 0); self.entities.len()];
        for k in 0..n {
            if noisy[k] {
                continue;
            }
            let m = at(k);
            let ts = self.members[m].first;
            for &e in self.entities_of(m).iter().filter(|&&e| !widespread[e as usize]) {
                let (prev, pts) = last_seen[e as usize];
                if prev != NONE && ts.saturating_sub(pts) <= self.opts.window_micros {
                    let prev = prev as usize;
                    if dsu.find(prev) != dsu.find(k) && reasons[k].is_none() {
                        reasons[k] = Some(Shared { entity: e, prev: prev as u32, at: pts });
                    }
                    dsu.union(prev, k);
                }
            }
            let end = self.members[m].end;
            for &e in self.entities_of(m).iter().filter(|&&e| !widespread[e as usize]) {
                last_seen[e as usize] = (k as u32, end);
            }
        }
        drop(last_seen);
        // Groups by their root (the earliest member), members in time order.
        let mut by_root: Vec<(u32, u32)> = (0..n).filter(|&k| !noisy[k]).map(|k| (dsu.find(k) as u32, k as u32)).collect();
        by_root.sort_unstable();
        drop(dsu);
        let mut out: Vec<(Incident, Vec<Head>)> = Vec::new();
        for group in by_root.chunk_by(|a, b| a.0 == b.0) {
            let members: Vec<usize> = group.iter().map(|&(_, k)| k as usize).collect();
            let fs: Vec<usize> = members.iter().map(|&k| at(k)).collect();
            let ranks: Vec<Evidence> = fs.iter().map(|&m| self.rank(m)).collect();
            let strongest = ranks.iter().copied().max().unwrap_or(Evidence::Weak);
            if strongest < Evidence::Medium {
                continue;
            }
            // The first evidence: the earliest finding of the strongest rank, or an earlier
            // one of some weight linked to such a finding by more than the host.
            let strongest_entities: HashSet<u32> = (0..fs.len())
                .filter(|&j| ranks[j] == strongest)
                .flat_map(|j| self.entities_of(fs[j]).iter().copied())
                .filter(|&e| self.entities[e as usize].kind != EntityKind::Host && !widespread[e as usize])
                .collect();
            let linked = |m: usize| self.entities_of(m).iter().any(|e| strongest_entities.contains(e));
            let first = (0..fs.len()).find(|&j| ranks[j] == strongest || (ranks[j] >= Evidence::Medium && linked(fs[j]))).unwrap_or(0);
            let why_first = if ranks[first] == strongest {
                format!("first evidence: the earliest {} in this incident", strongest.describe())
            } else {
                format!(
                    "first evidence: the earliest finding linked by an account, address or file to the incident's {}",
                    strongest.describe()
                )
            };
            let mut why: Vec<Option<String>> = members
                .iter()
                .map(|&k| {
                    reasons[k].map(|r| {
                        let e = &self.entities[r.entity as usize];
                        let p = &self.rules[self.members[at(r.prev as usize)].rule as usize];
                        format!("shares {} `{}` with \"{}\" at {}", e.kind.as_str(), e.value, p.title, Timestamp(r.at))
                    })
                })
                .collect();
            why[first] = Some(why_first);
            for w in why.iter_mut().take(first) {
                *w = Some(format!(
                    "context: before the first evidence and linked to the attack only by {}",
                    w.as_deref().map(|r| r.trim_start_matches("shares ").to_string()).unwrap_or_else(|| "the host".into())
                ));
            }
            out.push(self.incident(&fs, &ranks, first, why));
        }
        out.sort_by_key(|(i, _)| (std::cmp::Reverse(i.severity), i.first_seen));
        Grouped { incidents: out, left_out: self.left_out }
    }

    /// A run of consecutive findings of one rule title is one stage; its sentence is the
    /// first finding's, filled in by [`Grouped::finish`].
    fn stages_of(&self, fs: &[usize], context: bool, heads: &mut Vec<Head>) -> Vec<Stage> {
        let mut stages: Vec<Stage> = Vec::new();
        for &m in fs {
            let rule = &self.rules[self.members[m].rule as usize];
            match stages.last_mut() {
                Some(s) if *s.rule_title == *rule.title => s.finding_ids.push(self.id(m).to_string()),
                _ => {
                    heads.push(Head { context, stage: stages.len() });
                    stages.push(Stage {
                        time: Timestamp(self.members[m].first),
                        tactic: rule.tactics.first().copied(),
                        techniques: rule.techniques.clone(),
                        rule_title: rule.title.to_string(),
                        level: self.members[m].level,
                        sentence: String::new(),
                        finding_ids: vec![self.id(m).to_string()],
                    })
                }
            }
        }
        stages
    }

    fn incident(&self, all: &[usize], ranks: &[Evidence], first: usize, reasons: Vec<Option<String>>) -> (Incident, Vec<Head>) {
        let fs = &all[first..];
        let head = fs[0];
        let first_seen = Timestamp(self.members[head].first);
        let last_seen = Timestamp(fs.iter().map(|&m| self.members[m].end).max().unwrap_or(first_seen.0));
        let mut heads = Vec::new();
        let stages = self.stages_of(fs, false, &mut heads);
        let context = self.stages_of(&all[..first], true, &mut heads);
        let mut tactic_set: BTreeSet<usize> = BTreeSet::new();
        let mut techniques: BTreeSet<String> = BTreeSet::new();
        let mut entity_counts: BTreeMap<&Entity, usize> = BTreeMap::new();
        let mut rule_ids: HashSet<u32> = HashSet::new();
        let mut kinds: BTreeSet<&str> = BTreeSet::new();
        let mut iocs: BTreeSet<&str> = BTreeSet::new();
        for &m in fs {
            let f = &self.members[m];
            let rule = &self.rules[f.rule as usize];
            for t in &rule.tactics {
                tactic_set.insert(TACTICS.iter().position(|x| x == t).unwrap_or(0));
            }
            techniques.extend(rule.techniques.iter().cloned());
            for &e in self.entities_of(m) {
                *entity_counts.entry(&self.entities[e as usize]).or_default() += 1;
            }
            rule_ids.insert(rule.id_no);
            if f.log != NO_LOG {
                kinds.insert(&self.logs[f.log as usize]);
            }
            if f.matcher == Matcher::Indicator {
                iocs.insert(rule.title.trim_start_matches("IOC match: "));
            }
        }
        let max_level = fs.iter().map(|&m| self.members[m].level).max().unwrap_or(Level::Medium);
        let specific = ranks[first..].contains(&Evidence::Specific);
        // A chain across three or more tactics with a high finding is an intrusion in progress;
        // one community rule alone, with nothing specific, is a lead to triage, not more.
        let severity = if !specific && rule_ids.len() < 2 {
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
            .map(|(&m, r)| Join {
                finding: self.id(m).to_string(),
                reason: r.unwrap_or_else(|| "shares an entity with a finding that joined earlier".into()),
            })
            .collect();
        let techniques: Vec<String> = techniques.into_iter().collect();
        let weight = Weight { findings: fs.len(), tactics: tactic_set.len(), rules: rule_ids.len(), kinds, iocs };
        let (assessment, attribution) = crate::assess(&weight, &techniques, max_level);
        let id = self.id(head);
        let mut cut = id.len().min(24);
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        let incident = Incident {
            kind: "incident",
            id: format!("inc-{}", &id[..cut]),
            first_seen,
            last_seen,
            dwell_seconds: last_seen.0.saturating_sub(first_seen.0) / 1_000_000,
            severity,
            first_evidence: id.to_string(),
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
        };
        (incident, heads)
    }
}

/// What an incident's evidence weighs, for its assessment.
pub(crate) struct Weight<'a> {
    pub findings: usize,
    pub tactics: usize,
    /// Distinct rule ids.
    pub rules: usize,
    /// Kinds of log the evidence came from.
    pub kinds: BTreeSet<&'a str>,
    /// Indicator contexts matched.
    pub iocs: BTreeSet<&'a str>,
}

/// A stage whose sentence is its first finding's.
struct Head {
    context: bool,
    stage: usize,
}

/// Incidents grouped, waiting for the sentences of their stages' first findings.
pub struct Grouped {
    incidents: Vec<(Incident, Vec<Head>)>,
    left_out: u64,
}

impl Grouped {
    /// Findings left out because the builder had numbered as many as it can.
    pub fn left_out(&self) -> u64 {
        self.left_out
    }

    /// The ids of the findings whose sentences the stages quote.
    pub fn sentence_ids(&self) -> HashSet<&str> {
        let mut ids = HashSet::new();
        for (i, heads) in &self.incidents {
            for h in heads {
                let stages = if h.context { &i.context } else { &i.stages };
                ids.insert(stages[h.stage].finding_ids[0].as_str());
            }
        }
        ids
    }

    /// The incidents, each stage's sentence its first finding's (`sentence_of` that id;
    /// the rule's title if it has none), with how many more findings the stage holds.
    pub fn finish(self, mut sentence_of: impl FnMut(&str) -> Option<String>) -> Vec<Incident> {
        self.incidents
            .into_iter()
            .map(|(mut i, heads)| {
                for h in heads {
                    let stage = if h.context { &mut i.context[h.stage] } else { &mut i.stages[h.stage] };
                    let mut sentence = sentence_of(&stage.finding_ids[0]).unwrap_or_else(|| stage.rule_title.clone());
                    if stage.finding_ids.len() > 1 {
                        sentence.push_str(&format!(" (and {} more like it)", stage.finding_ids.len() - 1));
                    }
                    stage.sentence = sentence;
                }
                i
            })
            .collect()
    }
}

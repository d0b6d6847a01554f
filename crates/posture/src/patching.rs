//! Patching: per Exchange server, the builds seen over time (from the exchange crate's
//! build evidence in log events, and an inventory), and for each exploit chain how long
//! the server stayed open after the fix was published.

use std::collections::BTreeSet;

use portcullis_event::Timestamp;
use portcullis_exchange::{Build, BuildEvidence, Chain, Inventory, Status};

use crate::{BuildSighting, Check, Detail, Evidence, Map, Missing, Position, Report, Seen, Severity, Subject, Weakness};

/// When each chain's fix was published (the security update whose builds the exchange
/// crate's table names as fixed).
pub fn fix_published(chain: Chain) -> Timestamp {
    let day = match chain {
        Chain::ProxyLogon => "2021-03-02",
        Chain::ProxyShell => "2021-05-11",
        Chain::ProxyNotShell | Chain::Owassrf => "2022-11-08",
    };
    Timestamp::parse(day).unwrap_or(Timestamp(0))
}

/// Open this long after publication, still open, is critical; fixed later than this is a
/// finding about the patching regime.
const SLOW_DAYS: i64 = 30;

struct Sight {
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    count: u64,
    from: BuildEvidence,
    evidence: Evidence,
}

#[derive(Default)]
pub struct State {
    builds: Map<(String, Build), Sight>,
}

impl State {
    pub fn merge(&mut self, o: State) {
        for (k, v) in o.builds {
            let room = self.builds.len() < crate::MAX_BUILDS;
            match self.builds.get_mut(&k) {
                Some(s) => {
                    s.count += v.count;
                    if v.first.is_some() && (s.first.is_none() || v.first < s.first) {
                        s.first = v.first;
                        s.evidence = v.evidence;
                    }
                    s.last = s.last.max(v.last);
                }
                None if room => {
                    self.builds.insert(k, v);
                }
                None => {}
            }
        }
    }
}

pub fn scan(s: &Seen<'_>, st: &mut State) {
    for (server, build, from) in portcullis_exchange::builds_in_event(s.ev) {
        let key = (crate::short_host(&server), build);
        let t = s.ev.timestamp;
        let room = st.builds.len() < crate::MAX_BUILDS;
        match st.builds.get_mut(&key) {
            Some(x) => {
                x.count += 1;
                if t.is_some() && (x.first.is_none() || t < x.first) {
                    x.first = t;
                    x.evidence = s.evidence(format!("build {build} ({})", from.describe()));
                }
                x.last = x.last.max(t);
            }
            None if room => {
                let evidence = s.evidence(format!("build {build} ({})", from.describe()));
                st.builds.insert(key, Sight { first: t, last: t, count: 1, from, evidence });
            }
            None => {}
        }
    }
}

struct Seen2 {
    build: Build,
    first: Timestamp,
    last: Timestamp,
    evidence: Evidence,
}

/// Adds the patching weaknesses and build sightings; returns the Exchange servers seen.
pub fn finish(st: &State, inventory: Option<&Inventory>, as_of: Timestamp, report: &mut Report) -> BTreeSet<String> {
    let mut per_server: Map<String, Vec<Seen2>> = Map::new();
    let mut keys: Vec<&(String, Build)> = st.builds.keys().collect();
    keys.sort();
    for k in keys {
        let s = &st.builds[k];
        report.builds.push(BuildSighting {
            server: k.0.clone(),
            build: k.1.to_string(),
            first: s.first,
            last: s.last,
            sightings: s.count,
            from: s.from.describe().to_string(),
            evidence: s.evidence.clone(),
        });
        if let (Some(first), Some(last)) = (s.first, s.last) {
            per_server.entry(k.0.clone()).or_default().push(Seen2 { build: k.1, first, last, evidence: s.evidence.clone() });
        }
    }
    if let Some(inv) = inventory {
        for (server, (build, source)) in &inv.servers {
            let server = crate::short_host(server);
            let evidence = Evidence {
                file: source.trim_start_matches("inventory ").to_string(),
                position: Position::Line(0),
                time: None,
                what: format!("inventory: {server} at build {build}"),
            };
            report.builds.push(BuildSighting {
                server: server.clone(),
                build: build.to_string(),
                first: None,
                last: None,
                sightings: 1,
                from: source.clone(),
                evidence: evidence.clone(),
            });
            // An inventory says what runs now: the end of the evidence.
            per_server.entry(server).or_default().push(Seen2 { build: *build, first: as_of, last: as_of, evidence });
        }
    }
    if per_server.is_empty() {
        report.could_not_see.push(crate::Blind::new(Missing::ExchangeBuilds, None));
    }
    let mut servers: Vec<&String> = per_server.keys().collect();
    servers.sort();
    for server in servers {
        let sights = &per_server[server];
        for chain in Chain::ALL {
            judge(server, chain, sights, report);
        }
    }
    per_server.into_keys().collect()
}

fn status(server: &str, b: Build, chain: Chain) -> (Status, String) {
    let v = portcullis_exchange::check(server, b, "");
    v.chains.into_iter().find(|c| c.chain == chain.name()).map(|c| (c.status, c.remedy)).unwrap_or((Status::Unknown, String::new()))
}

fn judge(server: &str, chain: Chain, sights: &[Seen2], report: &mut Report) {
    let published = fix_published(chain);
    let full_cus: BTreeSet<(u32, u32)> =
        sights.iter().filter(|s| s.build.revision.is_some()).map(|s| (s.build.minor, s.build.build)).collect();
    let mut open: Vec<(&Seen2, String)> = Vec::new();
    let mut fixed: Vec<&Seen2> = Vec::new();
    let mut unknown: Vec<(&Seen2, String)> = Vec::new();
    for s in sights {
        match status(server, s.build, chain) {
            (Status::Open, remedy) => open.push((s, remedy)),
            (Status::Fixed, _) => fixed.push(s),
            (Status::Unknown, remedy) => {
                // A CU-only sighting says nothing new when the full build of that CU was seen.
                if !full_cus.contains(&(s.build.minor, s.build.build)) {
                    unknown.push((s, remedy));
                }
            }
        }
    }
    let subject = Subject::Host(server.to_string());
    if let Some(until) = open.iter().map(|(s, _)| s.last).max() {
        let from = open.iter().map(|(s, _)| s.first).min().unwrap_or(until);
        let Some((latest, remedy)) = open.iter().max_by_key(|(s, _)| s.last) else { return };
        let fixed_after = fixed.iter().filter(|f| f.first >= until).min_by_key(|f| f.first);
        let end = fixed_after.map_or(until, |f| f.first);
        if end <= published {
            return; // no fix existed while it was seen open
        }
        let days = crate::days(published, end);
        let still_open = fixed_after.is_none();
        let severity = match (still_open, days >= SLOW_DAYS) {
            (true, true) => Severity::Critical,
            (true, false) => Severity::High,
            (false, true) => Severity::Medium,
            (false, false) => return,
        };
        let mut evidence = vec![latest.evidence.clone()];
        if let Some(f) = fixed_after {
            evidence.push(f.evidence.clone());
        }
        report.weaknesses.push(Weakness {
            id: crate::stable_id(&["patching", server, chain.name()]),
            check: Check::Patching,
            severity,
            subject,
            detail: Detail::OpenAfterFix {
                chain: chain.name(),
                cves: chain.cves(),
                fix_published: published,
                build: latest.build.to_string(),
                open_seen_from: from,
                open_seen_until: until,
                fixed_seen: fixed_after.map(|f| f.first),
                fixed_build: fixed_after.map(|f| f.build.to_string()),
                days_open_after_fix: days,
                still_open,
                remedy: remedy.clone(),
            },
            evidence,
        });
        return;
    }
    // Only CU-level sightings after publication, and none fixed since.
    let last_fixed = fixed.iter().map(|f| f.last).max();
    if let Some((s, remedy)) =
        unknown.iter().filter(|(s, _)| s.last > published && last_fixed.is_none_or(|f| f < s.last)).max_by_key(|(s, _)| s.last)
    {
        report.weaknesses.push(Weakness {
            id: crate::stable_id(&["patching", server, chain.name()]),
            check: Check::Patching,
            severity: Severity::Medium,
            subject: subject.clone(),
            detail: Detail::MaybeOpenAfterFix {
                chain: chain.name(),
                cves: chain.cves(),
                fix_published: published,
                build: s.build.to_string(),
                last_seen: s.last,
                remedy: remedy.clone(),
            },
            evidence: vec![s.evidence.clone()],
        });
        report.could_not_see.push(crate::Blind::new(Missing::SecurityUpdateLevel, Some(subject)));
    }
}

//! The judgement on a campaign: ATT&CK techniques it shows, the PHIA likelihood that it is
//! targeted reconnaissance (with the evidence for and against), and attribution from intel.

use std::collections::BTreeSet;

use crate::Campaign;
use crate::analyse::{Analyser, SignalKind};

/// ATT&CK techniques, the PHIA judgement and the attribution of one campaign.
pub fn judge(c: &mut Campaign, iocs: Option<&portcullis_intel::IocSet>) {
    let has = |a: Analyser, min: u8| c.signals.iter().any(|s| s.analyser == a && s.score >= min);
    let mut techniques = Vec::new();
    if has(Analyser::Beacon, 1) {
        techniques.push("T1598.003".to_string());
    }
    if c.url_templates.iter().any(|t| !t.ends_with(".gif") && !t.ends_with(".png")) {
        techniques.push("T1566.002".to_string());
    }
    if c.signals.iter().any(|s| matches!(s.kind, SignalKind::LookAlikeSender | SignalKind::LookAlikeLink)) {
        techniques.push("T1583.001".to_string());
    }
    techniques.sort();
    c.attack = portcullis_intel::attack::name_all(&techniques);
    let mut ev: Vec<(i32, String)> = Vec::new();
    if has(Analyser::Beacon, 2) {
        ev.push((15, "hidden beacons with per-recipient tokens".into()));
    } else if has(Analyser::Beacon, 1) {
        ev.push((5, "tracking pixels".into()));
    }
    if has(Analyser::Impersonation, 2) {
        ev.push((20, "impersonation of an outlet, journalist or protected identity".into()));
    }
    if has(Analyser::Bulk, 2) {
        ev.push((15, "one personal-looking message sent to many recipients with individual tokens".into()));
    }
    if c.members_targeted > 0 {
        ev.push((10, format!("{} protected members among the recipients", c.members_targeted)));
    }
    if !has(Analyser::Impersonation, 2)
        && let Some(s) = c.signals.iter().find(|s| matches!(s.kind, SignalKind::Authenticated | SignalKind::Established))
    {
        ev.push((-20, format!("no impersonation, and the sender is vouched for: {}", s.what)));
    }
    if has(Analyser::Evasion, 1) {
        ev.push((10, "headers padded past what mail readers take (an evasion)".into()));
    }
    if c.signals.iter().any(|s| s.kind == SignalKind::ListHeaders) && !has(Analyser::Impersonation, 2) {
        ev.push((-30, "list headers and no impersonation: the shape of an ordinary newsletter".into()));
    }
    let mut intel = Vec::new();
    let mut actors: BTreeSet<String> = BTreeSet::new();
    if let Some(set) = iocs {
        let mut hits = Vec::new();
        let values: Vec<&str> = c.iocs.iter().map(|i| i.value.as_str()).chain(c.domains.iter().map(String::as_str)).collect();
        for v in values {
            hits.clear();
            set.scan(v, &mut hits);
            for h in &hits {
                let ind = &set.indicators[h.indicator as usize];
                let line = format!("{} ({}) — {} [{}]", ind.value, ind.kind.as_str(), ind.context.title(), ind.context.source);
                if !intel.contains(&line) {
                    intel.push(line);
                }
                actors.extend(ind.context.actors.iter().cloned());
            }
        }
    }
    if !intel.is_empty() {
        ev.push((10, format!("infrastructure matches published intel ({} indicator(s))", intel.len())));
    }
    let confidence = if c.messages >= 50 && ev.len() >= 4 {
        "high"
    } else if ev.len() >= 2 {
        "moderate"
    } else {
        "low"
    };
    c.judgement = portcullis_intel::phia::assess("this is a targeted reconnaissance campaign", 35, &ev, confidence);
    let mut attribution: Vec<String> = actors
        .iter()
        .map(|a| format!("its infrastructure matches intel associated with {a}: consistent with {a}, not proof; attribution needs more than shared infrastructure"))
        .collect();
    if attribution.is_empty() {
        attribution.push("no intel links its infrastructure to a known actor: no attribution is made".into());
    }
    c.intel_matches = intel;
    c.attribution = attribution;
}

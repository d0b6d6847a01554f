//! What a case shares with a CERT or partner: its indicator matches aggregated into
//! sightings, the indicators of its medium-and-above mail campaigns, its incidents and
//! campaigns, in the form `intel::stix` writes as STIX 2.1, MISP or CSV.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use portcullis_intel::stix::{CampaignSummary, CaseIntel, IncidentSummary, Listed, Sighted, kind_of};

use crate::{CaseError, export_rows};

/// Everything a case shares, under `producer`'s name, made at `now`.
pub fn case_intel(path: &Path, producer: &str, now: String) -> Result<CaseIntel, CaseError> {
    let rows = export_rows(path).map_err(|e| CaseError(format!("{}: {e}", path.display())))?;
    let mut sighted: BTreeMap<(String, String), Sighted> = BTreeMap::new();
    for f in &rows.ioc_findings {
        let Some(kind) = kind_of(&f.kind, &f.value) else { continue };
        let s = sighted.entry((f.kind.clone(), f.value.clone())).or_insert_with(|| Sighted {
            kind,
            value: f.value.clone(),
            context: f.context.clone(),
            source: f.source.clone(),
            count: 0,
            first_seen: None,
            last_seen: None,
            incidents: Vec::new(),
        });
        s.count += 1;
        if let Some(t) = &f.time {
            if s.first_seen.as_ref().is_none_or(|x| t < x) {
                s.first_seen = Some(t.clone());
            }
            if s.last_seen.as_ref().is_none_or(|x| t > x) {
                s.last_seen = Some(t.clone());
            }
        }
        for i in &f.incidents {
            if !s.incidents.contains(i) {
                s.incidents.push(i.clone());
            }
        }
    }
    // Only campaigns worth sharing: newsletters and read receipts (low) are not adversaries.
    let shared: HashSet<String> = rows
        .campaigns
        .iter()
        .filter(|c| matches!(c.severity.as_str(), "medium" | "high" | "critical"))
        .map(|c| format!("campaign:{}", c.id))
        .collect();
    let listed: Vec<Listed> = rows
        .iocs
        .iter()
        .filter(|(source, ..)| !source.starts_with("campaign:") || shared.contains(source))
        .filter_map(|(source, t, v)| Some(Listed { kind: kind_of(t, v)?, value: v.clone(), source: source.clone() }))
        .collect();
    let incidents = rows
        .incidents
        .iter()
        .map(|i| IncidentSummary {
            id: i.id.clone(),
            first_seen: i.first_seen.clone(),
            last_seen: i.last_seen.clone(),
            severity: i.severity.clone(),
            dwell_seconds: i.dwell_seconds,
            techniques: i.techniques.clone(),
            description: format!("{} incident of {} findings; tactics {}.", i.severity, i.finding_count, i.tactics.join(" → ")),
        })
        .collect();
    let campaigns = rows
        .campaigns
        .iter()
        .filter(|c| shared.contains(&format!("campaign:{}", c.id)))
        .map(|c| {
            let domains: Vec<&str> = c.record.domains.iter().map(String::as_str).take(3).collect();
            CampaignSummary {
                id: c.id.clone(),
                name: format!("Mail campaign {} ({})", c.id, domains.join(", ")),
                first_seen: c.first_seen.clone(),
                last_seen: c.last_seen.clone(),
                description: format!(
                    "{} reconnaissance mail campaign: {} messages from {} sender accounts to {} recipients ({} protected members). {}",
                    c.severity,
                    c.messages,
                    c.record.senders.len(),
                    c.record.recipients.len(),
                    c.members_targeted,
                    c.record.assessment
                ),
            }
        })
        .collect();
    Ok(CaseIntel { producer: producer.to_string(), sighted: sighted.into_values().collect(), listed, incidents, campaigns, now })
}

//! `portcullis export`: a case's indicators, sightings, incidents and campaigns for sharing
//! with a CERT or partner, as a STIX 2.1 bundle, a MISP event or a CSV list.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use portcullis_intel::stix::{CampaignSummary, CaseIntel, IncidentSummary, Listed, Sighted, kind_of};

use crate::{EXIT_OK, Fatal};

#[derive(Args)]
pub struct ExportArgs {
    /// What to write: a STIX 2.1 bundle, a MISP event (JSON) or a CSV list (type,value,context).
    #[arg(value_enum)]
    pub format: ExportFormat,
    /// The case file (from `hunt --case` and `mail --case`).
    #[arg(value_name = "CASE")]
    pub case: PathBuf,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The name the export is made under (the STIX identity / MISP event title).
    #[arg(long, default_value = "Portcullis user")]
    pub producer: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Stix,
    Misp,
    Csv,
}

pub fn run(a: ExportArgs) -> Result<u8, Fatal> {
    if !a.case.is_file() {
        return Err(Fatal(format!("{}: no such case file", a.case.display())));
    }
    let rows = portcullis_case::export_rows(&a.case).map_err(|e| Fatal(format!("{}: {e}", a.case.display())))?;
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
    let shared: std::collections::HashSet<String> = rows
        .campaigns
        .iter()
        .filter(|(_, severity, ..)| matches!(severity.as_str(), "medium" | "high" | "critical"))
        .map(|(id, ..)| format!("campaign:{id}"))
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
        .map(|(id, first, last, severity, dwell, techniques, tactics, n)| IncidentSummary {
            id: id.clone(),
            first_seen: first.clone(),
            last_seen: last.clone(),
            severity: severity.clone(),
            dwell_seconds: *dwell,
            techniques: techniques.clone(),
            description: format!("{severity} incident of {n} findings; tactics {}.", tactics.join(" → ")),
        })
        .collect();
    let campaigns = rows
        .campaigns
        .iter()
        .filter(|(id, ..)| shared.contains(&format!("campaign:{id}")))
        .map(|(id, severity, first, last, rec)| {
            let domains: Vec<&str> = rec["domains"].as_array().into_iter().flatten().filter_map(|d| d.as_str()).take(3).collect();
            CampaignSummary {
                id: id.clone(),
                name: format!("Mail campaign {id} ({})", domains.join(", ")),
                first_seen: first.clone(),
                last_seen: last.clone(),
                description: format!(
                    "{severity} reconnaissance mail campaign: {} messages from {} sender accounts to {} recipients ({} protected members). {}",
                    rec["messages"],
                    rec["senders"].as_array().map_or(0, |s| s.len()),
                    rec["recipients"].as_array().map_or(0, |s| s.len()),
                    rec["members_targeted"],
                    rec["assessment"].as_str().unwrap_or("")
                ),
            }
        })
        .collect();
    let intel = CaseIntel {
        producer: a.producer.clone(),
        sighted: sighted.into_values().collect(),
        listed,
        incidents,
        campaigns,
        now: portcullis_event::Timestamp::now().to_string(),
    };
    let text = match a.format {
        ExportFormat::Stix => serde_json::to_string_pretty(&portcullis_intel::stix::bundle(&intel))?,
        ExportFormat::Misp => serde_json::to_string_pretty(&portcullis_intel::stix::misp(&intel))?,
        ExportFormat::Csv => portcullis_intel::stix::csv(&intel),
    };
    match &a.output {
        Some(p) => std::fs::write(p, text).map_err(|e| Fatal(format!("{}: {e}", p.display())))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    eprintln!(
        "exported {} sighted indicators, {} campaign indicators, {} incidents, {} campaigns",
        intel.sighted.len(),
        intel.listed.len(),
        intel.incidents.len(),
        intel.campaigns.len()
    );
    Ok(EXIT_OK)
}

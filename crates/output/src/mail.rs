//! `mail`'s output: the campaigns report as a table, JSONL (a record per campaign and a
//! `mail_summary`), one JSON document, or CSV with a row per campaign recipient.

use std::io::{self, Write};

use portcullis_event::{csv_field, escape_display as esc};
use portcullis_mail::{Grade, Report, Severity};

use crate::Format;

/// The `mail_summary` record (JSONL, JSON).
pub fn summary(r: &Report, seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "kind": "mail_summary",
        "files": r.files.len(),
        "bytes": r.bytes,
        "messages": r.messages,
        "duplicates": r.duplicates,
        "unreadable": r.unreadable_count,
        "unreadable_examples": r.unreadable,
        "problems": r.problems,
        "internal_domains": r.internal_domains,
        "members_loaded": r.members_loaded,
        "message_severities": r.severities,
        "campaigns": r.campaigns.len(),
        "coverage": r.coverage,
        "errors": r.errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    })
}

/// Writes the report's campaigns (already filtered by severity) in `format`.
pub fn write(out: &mut dyn Write, format: Format, r: &Report, seconds: f64) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for c in &r.campaigns {
                crate::json_line(out, c)?;
            }
            crate::json_line(out, &summary(r, seconds))
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({"campaigns": r.campaigns, "summary": summary(r, seconds)}))?;
            writeln!(out)
        }
        Format::Csv => write_csv(out, r),
        Format::Table => write_table(out, r, seconds),
    }
}

fn write_csv(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(out, "campaign_id,severity,first_seen,last_seen,recipient,member,grade,messages,first_received,evidence")?;
    for c in &r.campaigns {
        for rc in &c.recipients {
            let ev: Vec<String> = rc.evidence.iter().map(|e| format!("{} {} {}", e.kind, e.at, e.detail)).collect();
            let messages = rc.messages.to_string();
            let cells = [
                c.id.as_str(),
                c.severity.as_str(),
                c.first_seen.as_deref().unwrap_or(""),
                c.last_seen.as_deref().unwrap_or(""),
                &rc.address,
                rc.member.as_deref().unwrap_or(""),
                rc.grade.as_str(),
                &messages,
                rc.first_received.as_deref().unwrap_or(""),
                &ev.join(" | "),
            ];
            writeln!(out, "{}", cells.map(csv_field).join(","))?;
        }
    }
    Ok(())
}

fn day(s: &Option<String>) -> &str {
    s.as_deref().map(|s| &s[..s.len().min(10)]).unwrap_or("-")
}

fn write_table(out: &mut dyn Write, r: &Report, seconds: f64) -> io::Result<()> {
    writeln!(
        out,
        "Read {} mail files ({}): {} messages ({} duplicate copies merged, {} unreadable) in {seconds:.1}s.",
        r.files.len(),
        crate::human_bytes(r.bytes),
        r.messages,
        r.duplicates,
        r.unreadable_count
    )?;
    writeln!(
        out,
        "Institution domain: {}. Protected members loaded: {}.",
        if r.internal_domains.is_empty() { "unknown".to_string() } else { r.internal_domains.join(", ") },
        r.members_loaded
    )?;
    if r.members_loaded == 0 {
        writeln!(out, "  (no --members list: targeting of members cannot weigh in, and no member is named)")?;
    }
    if r.campaigns.is_empty() {
        writeln!(out, "\nNo campaign found: no message carried a hidden beacon or impersonated a protected identity.")?;
    } else {
        let count = |s: Severity| r.campaigns.iter().filter(|c| c.severity == s).count();
        writeln!(
            out,
            "\nCampaigns ({}: {} critical, {} high, {} medium, {} low):",
            r.campaigns.len(),
            count(Severity::Critical),
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low)
        )?;
        writeln!(
            out,
            "  {:<8}  {:<17}  {:<10}  {:<10}  {:>5}  {:>7}  {:>5}  {:>7}  {:>6}  {:>7}  {:>11}  DOMAINS",
            "SEVERITY", "ID", "FIRST", "LAST", "MSGS", "SENDERS", "RCPTS", "MEMBERS", "OPENED", "CLICKED", "COMPROMISED"
        )?;
        for c in r.campaigns.iter().take(25) {
            let g = |x: Grade| c.recipients.iter().filter(|rc| rc.grade == x).count();
            let domains: Vec<&str> = c.domains.iter().take(3).map(String::as_str).collect();
            writeln!(
                out,
                "  {:<8}  {:<17}  {:<10}  {:<10}  {:>5}  {:>7}  {:>5}  {:>7}  {:>6}  {:>7}  {:>11}  {}",
                c.severity.as_str(),
                c.id,
                day(&c.first_seen),
                day(&c.last_seen),
                c.messages,
                c.senders.len(),
                c.recipients.len(),
                c.members_targeted,
                g(Grade::Opened),
                g(Grade::Clicked),
                g(Grade::Compromised),
                esc(&domains.join(", "))
            )?;
        }
        if r.campaigns.len() > 25 {
            writeln!(out, "  … {} more (use --format jsonl for all)", r.campaigns.len() - 25)?;
        }
        for c in r.campaigns.iter().filter(|c| c.severity >= Severity::Medium) {
            writeln!(out, "\n{} — {} campaign, {} to {}", c.id, c.severity.as_str(), day(&c.first_seen), day(&c.last_seen))?;
            writeln!(out, "  {} messages to {} recipients ({} protected members)", c.messages, c.recipients.len(), c.members_targeted)?;
            let senders: Vec<String> = c
                .senders
                .iter()
                .take(10)
                .map(|s| match &s.name {
                    Some(n) => format!("\"{}\" <{}>", esc(n), esc(&s.address)),
                    None => esc(&s.address).into_owned(),
                })
                .collect();
            writeln!(out, "  senders ({}): {}", c.senders.len(), senders.join(", "))?;
            if !c.sending_ips.is_empty() {
                writeln!(out, "  sending addresses: {}", esc(&c.sending_ips.join(", ")))?;
            }
            if !c.url_templates.is_empty() {
                writeln!(out, "  URL templates: {}", esc(&c.url_templates.iter().take(3).cloned().collect::<Vec<_>>().join("  ")))?;
            }
            writeln!(out, "  why:")?;
            for s in &c.signals {
                writeln!(
                    out,
                    "    {:<13} +{}  {} ({} messages)",
                    format!("{:?}", s.analyser).to_lowercase(),
                    s.score,
                    esc(&s.what),
                    s.messages
                )?;
            }
            let mut members: Vec<_> = c.recipients.iter().filter(|rc| rc.member.is_some()).collect();
            members.sort_by(|a, b| b.grade.cmp(&a.grade).then(a.member.cmp(&b.member)));
            if !members.is_empty() {
                writeln!(out, "  members targeted ({}):", members.len())?;
                for rc in members {
                    writeln!(out, "    {:<11}  {} <{}>", rc.grade.as_str(), esc(rc.member.as_deref().unwrap_or("")), esc(&rc.address))?;
                }
            }
            let mut graded: Vec<_> = c.recipients.iter().filter(|rc| rc.grade > Grade::Received).collect();
            graded.sort_by(|a, b| b.grade.cmp(&a.grade).then(a.address.cmp(&b.address)));
            if !graded.is_empty() {
                writeln!(out, "  evidence (first {} of {} recipients beyond 'received'):", graded.len().min(10), graded.len())?;
                for rc in graded.iter().take(10) {
                    // The evidence that set the grade: a click over an open, anything else over both.
                    let rank = |k: &str| match k {
                        "open" => 0,
                        "click" => 1,
                        _ => 2,
                    };
                    if let Some(e) = rc.evidence.iter().max_by_key(|e| rank(&e.kind)) {
                        writeln!(
                            out,
                            "    {:<11}  {}  {}  {}  [{}]",
                            rc.grade.as_str(),
                            esc(&rc.address),
                            e.time.as_deref().unwrap_or("-"),
                            esc(&e.detail),
                            esc(&e.at)
                        )?;
                    }
                }
            }
            let noted: Vec<_> = c.recipients.iter().filter(|rc| !rc.notes.is_empty()).collect();
            for rc in noted.iter().take(5) {
                writeln!(out, "  note: {}: {}", esc(&rc.address), esc(&rc.notes.join("; ")))?;
            }
            writeln!(
                out,
                "  judgement: {} ({}) that {}; confidence {}",
                c.judgement.likelihood, c.judgement.probability, c.judgement.judgement, c.judgement.confidence
            )?;
            if !c.attack.is_empty() {
                let t: Vec<String> = c.attack.iter().map(|t| format!("{} {}", t.id, t.name)).collect();
                writeln!(out, "  ATT&CK: {}", t.join("; "))?;
            }
            for m in &c.intel_matches {
                writeln!(out, "  intel: {}", esc(m))?;
            }
            for a in &c.attribution {
                writeln!(out, "  attribution: {}", esc(a))?;
            }
            writeln!(out, "  logs: {}", esc(&c.assessment))?;
            writeln!(out, "  examples: {}", esc(&c.examples.join("; ")))?;
        }
    }
    if r.unreadable_count > 0 || !r.problems.is_empty() || !r.errors.is_empty() {
        writeln!(out, "\nProblems:")?;
        for e in &r.errors {
            writeln!(out, "  {}", esc(e))?;
        }
        for u in r.unreadable.iter().take(10) {
            writeln!(out, "  unreadable: {}", esc(u))?;
        }
        if r.unreadable_count > 10 {
            writeln!(out, "  … {} more unreadable messages", r.unreadable_count - 10)?;
        }
        for (p, n) in &r.problems {
            writeln!(out, "  {n} message(s): {p}")?;
        }
    }
    Ok(())
}

//! `portcullis mail`: reconnaissance campaigns in mail exports, every targeted member, and
//! each recipient graded against the logs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use portcullis_event::{csv_field, escape_display as esc};
use portcullis_mail::{Grade, Lists, Members, Options, Report, Severity};

use crate::{EXIT_FINDINGS, EXIT_OK, Fatal, show_progress};

#[derive(Args)]
pub struct MailArgs {
    /// Mail to examine: EML files, MBOX mailboxes, Maildir folders, or directories of them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Protected members: CSV with `name` and `addresses` columns (several addresses
    /// separated by `;`). Messages to them weigh more and the report names them.
    #[arg(long, value_name = "FILE")]
    pub members: Option<PathBuf>,
    /// Identities worth impersonating beyond the built-in news outlets (journalists, outlets,
    /// officials): CSV `name,domains` where domains (`;`-separated) are their real ones.
    #[arg(long, value_name = "FILE")]
    pub protected: Option<PathBuf>,
    /// The institution's own mail domain (repeatable; default: the domain most mail is addressed to).
    #[arg(long = "internal-domain", value_name = "DOMAIN")]
    pub internal_domains: Vec<String>,
    /// Logs to grade recipients with (repeatable): proxy, IIS, DNS, sign-in, Exchange
    /// cmdlet or EVTX logs, files or directories, read as `hunt` reads them.
    #[arg(long = "logs", value_name = "PATH")]
    pub logs: Vec<PathBuf>,
    /// Indicators to check campaign infrastructure against (repeatable; STIX 2.1, MISP or CSV).
    #[arg(long = "iocs", value_name = "FILE")]
    pub iocs: Vec<PathBuf>,
    /// Do not load the built-in intel.
    #[arg(long)]
    pub no_builtin_intel: bool,
    /// Output format: a report for people, one JSON record per campaign (JSONL), one JSON
    /// document, or CSV with a row per campaign recipient.
    #[arg(long, value_enum, default_value = "table")]
    pub format: MailFormat,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also record campaigns, recipients and indicators in this case file (SQLite).
    #[arg(long, value_name = "FILE")]
    pub case: Option<PathBuf>,
    /// Leave out campaigns below this severity.
    #[arg(long, value_enum, default_value = "low")]
    pub min_severity: SeverityArg,
    /// Exit with code 2 if a campaign at or above this severity is found.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<SeverityArg>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// Only read and parse the mail (the benchmark's baseline).
    #[arg(long, hide = true)]
    pub parse_only: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MailFormat {
    Table,
    Jsonl,
    Json,
    Csv,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SeverityArg {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(s: SeverityArg) -> Severity {
        match s {
            SeverityArg::Informational => Severity::Informational,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

pub fn run(a: MailArgs) -> Result<u8, Fatal> {
    let started = Instant::now();
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| Fatal(format!("{}: {e}", p.display())));
    let members = match &a.members {
        Some(p) => Members::parse(&read(p)?).map_err(|e| Fatal(format!("{}: {e}", p.display())))?,
        None => Members::default(),
    };
    let mut lists = Lists::builtin();
    if let Some(p) = &a.protected {
        lists.add_protected(&read(p)?).map_err(|e| Fatal(format!("{}: {e}", p.display())))?;
    }
    for l in &a.logs {
        if !l.exists() {
            return Err(Fatal(format!("{}: no such file or directory (--logs)", l.display())));
        }
    }
    let threads = a.threads.unwrap_or(0);
    let intel = portcullis_intel::load(&a.iocs, !a.no_builtin_intel).map_err(Fatal)?;
    for p in intel.problems.iter().take(10) {
        eprintln!("portcullis: warning: unusable indicator at {}: {}", esc(&p.position), esc(&p.reason));
    }
    let opts = Options {
        members,
        lists,
        internal_domains: a.internal_domains.clone(),
        logs: a.logs.clone(),
        threads,
        parse_only: a.parse_only,
        iocs: Some(intel.set),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| Fatal(e.to_string()))?;
    let (files, _) = portcullis_mailbox::collect_files(&a.paths);
    let bar = crate::commands::bytes_bar(&files, show_progress(a.quiet));
    let mut report = pool.install(|| portcullis_mail::run(&a.paths, &opts, &|done| bar.set_position(done)));
    bar.finish_and_clear();
    if report.files.is_empty() {
        let why = if report.errors.is_empty() { "no EML, MBOX or Maildir mail found".to_string() } else { report.errors.join("; ") };
        return Err(Fatal(format!("{why} under {}", a.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))));
    }
    if report.messages == 0 {
        // Mail files were found but not one message in them could be read: an error, as for no mail.
        let why = match report.unreadable.first() {
            Some(first) => format!("no message could be read ({} unreadable; first: {})", report.unreadable_count, esc(first)),
            None => "no message could be read (the mail files hold none)".to_string(),
        };
        return Err(Fatal(format!("{why} under {}", a.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))));
    }
    let seconds = started.elapsed().as_secs_f64();
    if a.parse_only {
        println!("parsed {} messages ({} bytes, {} unreadable) in {seconds:.3}s", report.messages, report.bytes, report.unreadable_count);
        return Ok(EXIT_OK);
    }
    let min: Severity = a.min_severity.into();
    report.campaigns.retain(|c| c.severity >= min);
    let campaigns: Vec<serde_json::Value> = report.campaigns.iter().map(|c| serde_json::to_value(c).unwrap_or_default()).collect();
    if let Some(case) = &a.case {
        let mut c = portcullis_case::Case::open(case, "mail").map_err(|e| Fatal(e.to_string()))?;
        c.record_mail(&report.campaigns).map_err(|e| Fatal(e.to_string()))?;
    }
    let summary = serde_json::json!({
        "kind": "mail_summary",
        "files": report.files.len(),
        "bytes": report.bytes,
        "messages": report.messages,
        "duplicates": report.duplicates,
        "unreadable": report.unreadable_count,
        "unreadable_examples": report.unreadable,
        "problems": report.problems,
        "internal_domains": report.internal_domains,
        "members_loaded": report.members_loaded,
        "message_severities": report.severities,
        "campaigns": report.campaigns.len(),
        "coverage": report.coverage,
        "errors": report.errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    });
    let mut out = crate::commands::open_output(&a.output)?;
    match a.format {
        MailFormat::Jsonl => {
            for c in &campaigns {
                writeln!(out, "{c}")?;
            }
            writeln!(out, "{summary}")?;
        }
        MailFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({"campaigns": campaigns, "summary": summary}))?;
            writeln!(out)?;
        }
        MailFormat::Csv => write_csv(&mut out, &report)?,
        MailFormat::Table => write_table(&mut out, &report, seconds)?,
    }
    out.flush()?;
    let fail = a.fail_on.map(Severity::from).is_some_and(|f| report.campaigns.iter().any(|c| c.severity >= f));
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}

fn write_csv(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
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

fn write_table(out: &mut dyn Write, r: &Report, seconds: f64) -> std::io::Result<()> {
    writeln!(
        out,
        "Read {} mail files ({}): {} messages ({} duplicate copies merged, {} unreadable) in {seconds:.1}s.",
        r.files.len(),
        portcullis_output::human_bytes(r.bytes),
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

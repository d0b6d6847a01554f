//! `portcullis mail`: reconnaissance campaigns in mail exports, every targeted member, and
//! each recipient graded against the logs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use portcullis_event::escape_display as esc;
use portcullis_mail::{Lists, Members, Options, Severity};

use crate::{EXIT_FINDINGS, EXIT_OK, Fatal, FormatArg, LevelArg, show_progress};

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
    pub format: FormatArg,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also record campaigns, recipients and indicators in this case file (SQLite).
    #[arg(long, value_name = "FILE")]
    pub case: Option<PathBuf>,
    /// Leave out campaigns below this severity.
    #[arg(long, value_enum, default_value = "low")]
    pub min_severity: LevelArg,
    /// Exit with code 2 if a campaign at or above this severity is found.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<LevelArg>,
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

pub fn run(a: MailArgs) -> Result<u8, Fatal> {
    let started = Instant::now();
    if let Some(case) = &a.case {
        // Refuse a file that is not a case before reading a single message or file.
        portcullis_case::check_file(case).map_err(|e| Fatal(e.to_string()))?;
    }
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
    // The results are written before the case, so a case error loses none of them.
    let mut out = crate::commands::open_output(&a.output)?;
    portcullis_output::mail::write(&mut out, a.format.into(), &report, seconds)?;
    out.flush()?;
    if let Some(case) = &a.case {
        let mut c = portcullis_case::Case::open(case, "mail").map_err(|e| Fatal(e.to_string()))?;
        c.record_mail(&report.campaigns).map_err(|e| Fatal(e.to_string()))?;
    }
    let fail = a.fail_on.map(Severity::from).is_some_and(|f| report.campaigns.iter().any(|c| c.severity >= f));
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}

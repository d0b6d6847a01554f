//! `portcullis posture`: the regulator's findings as checks over the logs and exports a
//! team already has, each with its evidence, and what the logs could not show.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use portcullis_posture::{Settings, Severity};

use crate::{EXIT_FINDINGS, EXIT_OK, Fatal, FormatArg, LevelArg, show_progress};

#[derive(Args)]
pub struct PostureArgs {
    /// Logs to check (files or directories, read as `hunt` reads them): Security, Sysmon,
    /// PowerShell and MSExchange Management events (EVTX or any JSON layout), IIS W3C,
    /// Exchange HttpProxy/Rps_Http logs, Entra ID sign-in logs (JSON).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// An AD export of users (CSV from Get-ADUser/csvde, or LDIF from ldifde) with
    /// sAMAccountName, pwdLastSet, whenCreated and lastLogonTimestamp.
    #[arg(long, value_name = "FILE")]
    pub ad: Option<PathBuf>,
    /// An Exchange inventory CSV with server and build columns (as for exchange-check).
    #[arg(long, value_name = "CSV")]
    pub inventory: Option<PathBuf>,
    /// Also record the weaknesses and what could not be seen in this case file (SQLite).
    #[arg(long, value_name = "CASE")]
    pub case: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit with code 2 if a weakness at or above this severity is found.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<LevelArg>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(a: PostureArgs) -> Result<u8, Fatal> {
    let started = Instant::now();
    for p in &a.paths {
        if !p.exists() {
            return Err(Fatal(format!("{}: no such file or directory", p.display())));
        }
    }
    if let Some(case) = &a.case {
        // Refuse a file that is not a case before reading a single log.
        portcullis_case::check_file(case).map_err(|e| Fatal(e.to_string()))?;
    }
    let settings = Settings { paths: a.paths.clone(), ad: a.ad.clone(), inventory: a.inventory.clone(), threads: a.threads.unwrap_or(0) };
    let (files, _) = portcullis_sources::collect_files(&a.paths);
    let bar = crate::commands::bytes_bar(&files, show_progress(a.quiet));
    let report = portcullis_posture::run(&settings, &|done| bar.set_position(done)).map_err(Fatal)?;
    bar.finish_and_clear();
    if report.events == 0 && a.ad.is_none() && a.inventory.is_none() {
        let mut why: Vec<String> = report.problems.iter().take(5).cloned().collect();
        if report.not_logs > 0 {
            why.push(format!(
                "{} file(s) in no log format Portcullis reads, e.g. {}",
                report.not_logs,
                report.not_logs_examples.join(", ")
            ));
        }
        if why.is_empty() {
            why.push("no files found".into());
        }
        return Err(Fatal(format!("no event could be read: {}", why.join("; "))));
    }
    let seconds = started.elapsed().as_secs_f64();
    // The results are written before the case, so a case error loses none of them.
    let mut out = crate::commands::open_output(&a.output)?;
    portcullis_output::posture::write(&mut out, a.format.into(), &report, seconds)?;
    out.flush()?;
    if let Some(case) = &a.case {
        let mut c = portcullis_case::Case::open(case, "posture").map_err(|e| Fatal(e.to_string()))?;
        c.record_posture(&report).map_err(|e| Fatal(e.to_string()))?;
    }
    let fail = a.fail_on.map(Severity::from).is_some_and(|f| report.weaknesses.iter().any(|w| w.severity >= f));
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}

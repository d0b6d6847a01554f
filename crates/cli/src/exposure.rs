//! `portcullis exposure`: register copies and the unique electors they expose.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use portcullis_exposure::{FileReport, Options, Scope};

use crate::{EXIT_FINDINGS, EXIT_OK, Fatal, FormatArg, LevelArg, show_progress};

#[derive(Args)]
pub struct ExposureArgs {
    /// Files and directories to examine (shares, exports, mail dumps, triage collections).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Scope the figures to what the intruder reached: a hunt case file (hosts and file
    /// paths of its incidents) or a text file listing accessed paths, one per line.
    #[arg(long, value_name = "CASE|LIST")]
    pub accessed: Option<PathBuf>,
    /// A host known to be compromised (repeatable); files under a directory of that name
    /// count as on a compromised system.
    #[arg(long = "compromised-host", value_name = "HOST")]
    pub compromised_hosts: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also record the results in this case file (SQLite).
    #[arg(long, value_name = "FILE")]
    pub case: Option<PathBuf>,
    /// Show up to three masked sample rows per register file (initials, outward postcode).
    #[arg(long)]
    pub show_samples: bool,
    /// Memory for elector fingerprints before sorted runs spill to a temporary file.
    #[arg(long, value_name = "MiB", default_value_t = 2048)]
    pub memory_mb: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Exit with code 2 if a register copy at or above this level is found: critical when
    /// evidenced as accessed by the intruder, high on a compromised system, medium elsewhere.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<LevelArg>,
    /// Same as --fail-on informational: exit 2 if any register copy is found.
    #[arg(long, hide = true)]
    pub fail_if_found: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(a: ExposureArgs) -> Result<u8, Fatal> {
    let started = Instant::now();
    if let Some(case) = &a.case {
        // Refuse a file that is not a case before reading a single message or file.
        portcullis_case::check_file(case).map_err(|e| Fatal(e.to_string()))?;
    }
    let scope = match &a.accessed {
        None if a.compromised_hosts.is_empty() => None,
        None => Some(Scope { accessed: Vec::new(), compromised_hosts: a.compromised_hosts.clone() }),
        Some(p) => {
            let mut head = [0u8; 16];
            let n = std::io::Read::read(&mut File::open(p).map_err(|e| Fatal(format!("{}: {e}", p.display())))?, &mut head).unwrap_or(0);
            let (mut hosts, files) = if head[..n].starts_with(b"SQLite format 3\0") {
                portcullis_case::intrusion_scope(p).map_err(|e| Fatal(e.to_string()))?
            } else {
                let text = std::fs::read_to_string(p).map_err(|e| Fatal(format!("{}: {e}", p.display())))?;
                (Vec::new(), text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
            };
            hosts.extend(a.compromised_hosts.iter().cloned());
            Some(Scope { accessed: files, compromised_hosts: hosts })
        }
    };
    let opts = Options { scope, memory_budget: a.memory_mb.max(16) << 20, show_samples: a.show_samples, ..Default::default() };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads.unwrap_or(0)).build().map_err(|e| Fatal(e.to_string()))?;
    let (files, _) = portcullis_exposure::collect_files(&a.paths);
    let bar = crate::commands::bytes_bar(&files, show_progress(a.quiet));
    let report = pool.install(|| portcullis_exposure::scan(&a.paths, &opts, &|done| bar.set_position(done)));
    bar.finish_and_clear();
    if report.files.is_empty() && !report.errors.is_empty() {
        return Err(Fatal(report.errors.join("; ")));
    }
    let seconds = started.elapsed().as_secs_f64();
    // The results are written before the case, so a case error loses none of them.
    let mut out = crate::commands::open_output(&a.output)?;
    portcullis_output::exposure::write(&mut out, a.format.into(), &report, seconds)?;
    out.flush()?;
    if let Some(case) = &a.case {
        let mut c = portcullis_case::Case::open(case, "exposure").map_err(|e| Fatal(e.to_string()))?;
        c.record_exposure(&report, &portcullis_output::exposure::total(&report, seconds)).map_err(|e| Fatal(e.to_string()))?;
    }
    let fail_on = a.fail_on.or(a.fail_if_found.then_some(LevelArg::Informational)).map(portcullis_sigma::Level::from);
    let fail = fail_on.is_some_and(|min| report.files.iter().filter_map(level).any(|l| l >= min));
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}

/// How much a file matters to `--fail-on`: a register copy the intruder is evidenced to
/// have accessed is critical, one on a compromised system high, any other medium.
fn level(f: &FileReport) -> Option<portcullis_sigma::Level> {
    use portcullis_sigma::Level;
    match (f.register, f.accessed, f.on_compromised_system) {
        (false, _, _) => None,
        (true, true, _) => Some(Level::Critical),
        (true, false, true) => Some(Level::High),
        (true, false, false) => Some(Level::Medium),
    }
}

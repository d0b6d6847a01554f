//! `portcullis exposure`: register copies and the unique electors they expose.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use portcullis_event::escape_display as esc;
use portcullis_exposure::{Options, Report, Scope};

use crate::{EXIT_FINDINGS, EXIT_OK, Fatal, show_progress};

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
    pub format: ExposureFormat,
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
    /// Exit with code 2 if any register copy is found.
    #[arg(long)]
    pub fail_if_found: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExposureFormat {
    Table,
    Jsonl,
    Json,
}

pub fn run(a: ExposureArgs) -> Result<u8, Fatal> {
    let started = Instant::now();
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
    let files: Vec<serde_json::Value> = report.files.iter().map(|f| serde_json::to_value(f).unwrap_or_default()).collect();
    let mut total_rec = report.total_json();
    total_rec["seconds"] = serde_json::json!((seconds * 1000.0).round() / 1000.0);
    total_rec["errors"] = serde_json::json!(report.errors);

    if let Some(case) = &a.case {
        let mut c = portcullis_case::Case::open(case, "exposure").map_err(|e| Fatal(e.to_string()))?;
        c.record_exposure(&report, &total_rec).map_err(|e| Fatal(e.to_string()))?;
    }

    let mut out = crate::commands::open_output(&a.output)?;
    match a.format {
        ExposureFormat::Jsonl => {
            for f in &files {
                writeln!(out, "{f}")?;
            }
            writeln!(out, "{total_rec}")?;
        }
        ExposureFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({"files": files, "total": total_rec}))?;
            writeln!(out)?;
        }
        ExposureFormat::Table => write_table(&mut out, &report, seconds)?,
    }
    out.flush()?;
    let found = report.files.iter().any(|f| f.register);
    Ok(if a.fail_if_found && found { EXIT_FINDINGS } else { EXIT_OK })
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn write_table(out: &mut dyn Write, r: &Report, seconds: f64) -> std::io::Result<()> {
    let registers: Vec<_> = r.files.iter().filter(|f| f.register).collect();
    writeln!(
        out,
        "Examined {} files and archive members ({}, {} rows) in {seconds:.1}s.",
        thousands(r.files.len() as u64),
        portcullis_output::human_bytes(r.bytes),
        thousands(r.rows)
    )?;
    if registers.is_empty() {
        writeln!(out, "\nNo electoral-register copy found.")?;
    } else {
        writeln!(out, "\nRegister copies ({}):", registers.len())?;
        writeln!(out, "  {:>4}  {:>11}  {:<5}  {:<22}  PATH", "CONF", "ROWS", "TYPE", "WHERE")?;
        for f in &registers {
            let place = match (f.accessed, f.on_compromised_system) {
                (true, _) => "accessed by intruder",
                (false, true) => "on compromised system",
                _ if r.scoped => "not reached",
                _ => "-",
            };
            writeln!(out, "  {:>4.2}  {:>11}  {:<5}  {:<22}  {}", f.confidence, thousands(f.rows), f.file_type, place, esc(&f.path))?;
            for s in &f.samples {
                writeln!(out, "          sample: {}", esc(s))?;
            }
        }
        writeln!(out, "\nUnique electors exposed: {}", thousands(r.tally.unique(0)))?;
        let scopes: &[(usize, &str)] =
            if r.scoped { &[(0, "all files"), (1, "on compromised systems"), (2, "evidenced as accessed")] } else { &[(0, "all files")] };
        write!(out, "  {:<24}", "CATEGORY")?;
        for (_, name) in scopes {
            write!(out, "  {name:>22}")?;
        }
        writeln!(out)?;
        for (c, name) in portcullis_exposure::register::CATEGORIES.iter().enumerate() {
            write!(out, "  {name:<24}")?;
            for (s, _) in scopes {
                write!(out, "  {:>22}", thousands(r.tally.counts[*s][c]))?;
            }
            writeln!(out)?;
        }
        writeln!(
            out,
            "  (unique by normalised name + address + postcode; overseas electors by name; opt-outs only where a file shows them)"
        )?;
    }
    let mut pii: std::collections::BTreeMap<&str, (u64, usize)> = Default::default();
    for f in &r.files {
        for (k, v) in &f.pii {
            let e = pii.entry(k.as_str()).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    if !pii.is_empty() {
        writeln!(out, "\nOther personal data:")?;
        for (k, (n, files)) in pii {
            writeln!(out, "  {:<18} {:>12} in {files} files", k.replace('_', " "), thousands(n))?;
        }
    }
    let problems: Vec<String> = r
        .files
        .iter()
        .flat_map(|f| {
            f.errors
                .iter()
                .map(move |e| format!("{}: {e}", f.path))
                .chain(f.skipped.iter().map(move |(why, n)| format!("{}: skipped {n} {why}", f.path)))
        })
        .chain(r.errors.iter().cloned())
        .collect();
    if !problems.is_empty() {
        writeln!(out, "\nProblems ({}):", problems.len())?;
        for p in problems.iter().take(20) {
            writeln!(out, "  {}", esc(p))?;
        }
        if problems.len() > 20 {
            writeln!(out, "  … {} more (use --format jsonl for all)", problems.len() - 20)?;
        }
    }
    Ok(())
}

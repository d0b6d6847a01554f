//! `exposure`'s output: register copies and unique electors as a table, JSONL (a record per
//! file and an `exposure_total`), one JSON document, or CSV with a row per file.

use std::io::{self, Write};

use portcullis_event::{csv_field, escape_display as esc};
use portcullis_exposure::Report;

use crate::Format;

/// The `exposure_total` record, with the run's time and the inputs that could not be read.
pub fn total(r: &Report, seconds: f64) -> serde_json::Value {
    let mut t = r.total_json();
    t["seconds"] = serde_json::json!((seconds * 1000.0).round() / 1000.0);
    t["errors"] = serde_json::json!(r.errors);
    t
}

/// Writes the report in `format`.
pub fn write(out: &mut dyn Write, format: Format, r: &Report, seconds: f64) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for f in &r.files {
                crate::json_line(out, f)?;
            }
            crate::json_line(out, &total(r, seconds))
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({"files": r.files, "total": total(r, seconds)}))?;
            writeln!(out)
        }
        Format::Csv => write_csv(out, r),
        Format::Table => write_table(out, r, seconds),
    }
}

/// A row per file examined: where it is, whether it is a register copy and how sure, its
/// rows, where the intruder stood relative to it, and what could not be read in it.
fn write_csv(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(out, "path,file_type,register,confidence,rows,accessed,on_compromised_system,personal_data,problems")?;
    for f in &r.files {
        let pii: Vec<String> = f.pii.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let problems: Vec<String> = f.errors.iter().cloned().chain(f.skipped.iter().map(|(why, n)| format!("skipped {n} {why}"))).collect();
        let cells = [
            f.path.clone(),
            f.file_type.to_string(),
            f.register.to_string(),
            format!("{:.2}", f.confidence),
            f.rows.to_string(),
            f.accessed.to_string(),
            f.on_compromised_system.to_string(),
            pii.join(" "),
            problems.join(" | "),
        ];
        writeln!(out, "{}", cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","))?;
    }
    Ok(())
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

fn write_table(out: &mut dyn Write, r: &Report, seconds: f64) -> io::Result<()> {
    let registers: Vec<_> = r.files.iter().filter(|f| f.register).collect();
    writeln!(
        out,
        "Examined {} files and archive members ({}, {} rows) in {seconds:.1}s.",
        thousands(r.files.len() as u64),
        crate::human_bytes(r.bytes),
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

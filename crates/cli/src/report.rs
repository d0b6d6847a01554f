//! `portcullis report`: a case as one self-contained HTML document for leadership and the
//! regulator.

use std::path::PathBuf;

use clap::Args;

use crate::{EXIT_OK, Fatal};

#[derive(Args)]
pub struct ReportArgs {
    /// The case file (from `hunt --case`, `mail --case`, `exposure --case`).
    #[arg(value_name = "CASE")]
    pub case: PathBuf,
    /// Where to write the HTML (`-` for standard output).
    #[arg(short, long, value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
}

pub fn run(a: ReportArgs) -> Result<u8, Fatal> {
    let (bytes, incidents) = write(&a.case, &a.output)?;
    if a.output.as_os_str() != "-" {
        eprintln!(
            "Wrote {} ({} KiB, {incidents} incidents). Open it in a browser; print it (Save as PDF) for a paper copy.",
            a.output.display(),
            bytes / 1024
        );
    }
    Ok(EXIT_OK)
}

/// Writes the report of `case` to `output`; returns (bytes, incidents).
pub fn write(case: &std::path::Path, output: &std::path::Path) -> Result<(usize, usize), Fatal> {
    let reader = portcullis_case::read::CaseReader::open(case).map_err(|e| Fatal(e.0))?;
    let incidents = reader.counts().map_err(|e| Fatal(e.0))?.incidents as usize;
    let generated = portcullis_event::Timestamp::now().to_string();
    let html = portcullis_report::report(&reader, &generated).map_err(|e| Fatal(e.0))?;
    if output.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().write_all(html.as_bytes()).map_err(|e| Fatal(format!("standard output: {e}")))?;
    } else {
        std::fs::write(output, &html).map_err(|e| Fatal(format!("{}: {e}", output.display())))?;
    }
    Ok((html.len(), incidents))
}

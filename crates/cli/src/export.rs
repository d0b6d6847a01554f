//! `portcullis export`: a case's indicators, sightings, incidents and campaigns for sharing
//! with a CERT or partner, as a STIX 2.1 bundle, a MISP event or a CSV list.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
    let intel = portcullis_case::export::case_intel(&a.case, &a.producer, portcullis_event::Timestamp::now().to_string())
        .map_err(|e| Fatal(e.to_string()))?;
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

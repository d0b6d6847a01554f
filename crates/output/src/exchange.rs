//! `exchange-check`'s output: per server, each chain fixed, open or unknown, as a table,
//! JSONL (an `exchange_server` record per server), one JSON document, or CSV with a row per
//! server and chain.

use std::io::{self, Write};

use portcullis_event::{csv_field, escape_display as esc};
use portcullis_exchange::{Status, Verdict};

use crate::Format;

/// Writes the verdicts in `format`.
pub fn write(out: &mut dyn Write, format: Format, verdicts: &[Verdict]) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for v in verdicts {
                crate::json_line(out, &serde_json::json!({"kind": "exchange_server", "verdict": v}))?;
            }
            Ok(())
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({"servers": verdicts}))?;
            writeln!(out)
        }
        Format::Csv => {
            writeln!(out, "server,product,cu,build,su_revision,chain,cves,status,remedy,source")?;
            for v in verdicts {
                let rev = v.su_revision.map(|r| r.to_string()).unwrap_or_default();
                for c in &v.chains {
                    let cells =
                        [&v.server, v.product, &v.cu, &v.build, &rev, c.chain, c.cves, status(c.status).trim_end(), &c.remedy, &v.source];
                    writeln!(out, "{}", cells.map(csv_field).join(","))?;
                }
            }
            Ok(())
        }
        Format::Table => {
            for v in verdicts {
                writeln!(
                    out,
                    "{}  {} {} (build {}, {})",
                    esc(&v.server),
                    v.product,
                    esc(&v.cu),
                    esc(&v.build),
                    match v.su_revision {
                        Some(r) => format!("revision {r}"),
                        None => "security update level unknown".into(),
                    }
                )?;
                for c in &v.chains {
                    let mark = match c.status {
                        Status::Open => "OPEN   ",
                        other => status(other),
                    };
                    writeln!(out, "   {mark}  {:<14} {:<36} {}", c.chain, c.cves, c.remedy)?;
                }
                writeln!(out, "   (build from {})", esc(&v.source))?;
            }
            Ok(())
        }
    }
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Fixed => "fixed  ",
        Status::Open => "open   ",
        Status::Unknown => "unknown",
    }
}

//! `rules`' output: which rules loaded, which failed (file, line, reason) and which select
//! no event Portcullis reads, as a table, JSONL, one JSON document, or CSV.

use std::collections::BTreeMap;
use std::io::{self, Write};

use portcullis_event::{csv_field, escape_display as esc};
use portcullis_sigma::Engine;
use portcullis_sigma::rule::LoadError;

use crate::Format;

/// What loading a rule set gave, for [`write`].
pub struct RulesReport<'a> {
    pub engine: &'a Engine,
    pub failures: Vec<&'a LoadError>,
    pub files: usize,
    pub filters: usize,
    pub correlations: usize,
    pub parse_seconds: f64,
    pub compile_seconds: f64,
    /// Table: list every unmapped rule under its reason, not only the count.
    pub verbose: bool,
}

/// One problem with a rule: it failed to load, or it selects no event Portcullis reads.
fn problems<'a>(r: &'a RulesReport<'a>) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = r
        .failures
        .iter()
        .map(|e| {
            serde_json::json!({
                "kind": "rule_failed", "path": e.path, "line": e.line, "reason": e.reason,
                "needs_placeholder": e.needs_placeholder,
            })
        })
        .collect();
    for u in &r.engine.unmapped {
        let rule = &r.engine.rules[u.rule];
        out.push(serde_json::json!({
            "kind": "rule_unmapped", "path": &*rule.origin.path, "line": rule.origin.line, "rule_id": rule.key(), "reason": u.reason,
        }));
    }
    out
}

fn summary(r: &RulesReport<'_>) -> serde_json::Value {
    serde_json::json!({
        "kind": "rules_summary", "files": r.files, "rules_loaded": r.engine.rules.len(),
        "rules_failed": r.failures.len(),
        "needs_placeholder": r.failures.iter().filter(|e| e.needs_placeholder).count(),
        "rules_unmapped": r.engine.unmapped.len(), "filters": r.filters,
        "correlations": r.correlations, "matcher_groups": r.engine.group_count(),
        "parse_seconds": r.parse_seconds, "compile_seconds": r.compile_seconds,
    })
}

/// Writes the report in `format`.
pub fn write(out: &mut dyn Write, format: Format, r: &RulesReport<'_>) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for p in problems(r) {
                crate::json_line(out, &p)?;
            }
            crate::json_line(out, &summary(r))
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({"problems": problems(r), "summary": summary(r)}))?;
            writeln!(out)
        }
        Format::Csv => {
            writeln!(out, "kind,path,line,rule_id,reason")?;
            for e in &r.failures {
                let line = e.line.to_string();
                writeln!(out, "{}", ["rule_failed", &e.path, &line, "", &e.reason].map(csv_field).join(","))?;
            }
            for u in &r.engine.unmapped {
                let rule = &r.engine.rules[u.rule];
                let (line, key) = (rule.origin.line.to_string(), rule.key().to_string());
                writeln!(out, "{}", ["rule_unmapped", &rule.origin.path, &line, &key, &u.reason].map(csv_field).join(","))?;
            }
            Ok(())
        }
        Format::Table => write_table(out, r),
    }
}

fn write_table(out: &mut dyn Write, r: &RulesReport<'_>) -> io::Result<()> {
    let engine = r.engine;
    let placeholder_needed = r.failures.iter().filter(|e| e.needs_placeholder).count();
    writeln!(
        out,
        "{} rule files: {} rules loaded ({} filters, {} correlations) into {} matcher groups \
(parsed in {:.3}s, compiled in {:.3}s).",
        r.files,
        engine.rules.len(),
        r.filters,
        r.correlations,
        engine.group_count(),
        r.parse_seconds,
        r.compile_seconds
    )?;
    writeln!(
        out,
        "{} failed to load{}:",
        r.failures.len(),
        if placeholder_needed > 0 { format!(" ({placeholder_needed} only need --placeholders)") } else { String::new() }
    )?;
    for e in &r.failures {
        writeln!(out, "  {}:{}: {}", esc(&e.path), e.line, esc(&e.reason))?;
    }
    let mut reasons: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for u in &engine.unmapped {
        reasons.entry(&u.reason).or_default().push(u.rule);
    }
    let mut by_count: Vec<_> = reasons.into_iter().collect();
    by_count.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    writeln!(out, "{} loaded but select no events Portcullis reads:", engine.unmapped.len())?;
    for (reason, rules) in by_count {
        writeln!(out, "  {:>5}  {}", rules.len(), esc(reason))?;
        if r.verbose {
            for rule in rules {
                writeln!(out, "           {}", esc(&engine.rules[rule].origin.to_string()))?;
            }
        }
    }
    Ok(())
}

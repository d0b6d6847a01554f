//! Every rule of Portcullis's own pack (`rules/`) fires on its positive sample and stays
//! silent on its negative sample (`rules/samples/<rule file name>/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_correlate::CorrelationSet;
use portcullis_hunt::{NoProgress, RunOptions, hunt};
use portcullis_sigma::{Engine, Level, LogsourceTable, Placeholders, RuleSet};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "samples") {
            rule_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(p);
        }
    }
}

/// Findings of the rules in `file` on `sample`, the whole pack loaded (correlations may name
/// rules in other files), not counting informational base rules of correlations.
fn reported(file: &Path, sample: &Path) -> usize {
    let mut set = RuleSet::default();
    set.add_path(&rules_dir(), &Placeholders::new());
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let engine = Engine::compile(&set, &LogsourceTable::builtin());
    assert!(engine.failed.is_empty() && engine.unmapped.is_empty(), "{}", file.display());
    let (corr, errors) = CorrelationSet::compile(&set.correlations, &engine.rules);
    assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    let corr = Arc::new(corr);
    let result = hunt(&engine, &corr, &[sample.to_path_buf()], &RunOptions { threads: 1, ..Default::default() }, &NoProgress);
    let same = |p: &str| Path::new(p).canonicalize().ok() == file.canonicalize().ok();
    let detections = result
        .detections
        .all()
        .unwrap()
        .iter()
        .filter(|d| engine.rules[d.rule].level > Level::Informational && same(&engine.rules[d.rule].origin.path))
        .count();
    let correlations = result.correlations.iter().filter(|c| same(&corr.correlations[c.correlation].origin.path)).count();
    detections + correlations
}

#[test]
fn every_pack_rule_has_samples_that_behave() {
    let mut files = Vec::new();
    rule_files(&rules_dir(), &mut files);
    files.sort();
    assert!(files.len() >= 25, "{} rule files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let dir = rules_dir().join("samples").join(&stem);
        let find = |prefix: &str| -> Option<PathBuf> {
            std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        };
        let (Some(pos), Some(neg)) = (find("positive"), find("negative")) else {
            failures.push(format!("{stem}: missing positive or negative sample in {}", dir.display()));
            continue;
        };
        let p = reported(f, &pos);
        let n = reported(f, &neg);
        if p == 0 {
            failures.push(format!("{stem}: no finding on {}", pos.display()));
        }
        if n != 0 {
            failures.push(format!("{stem}: {n} findings on {}", neg.display()));
        }
    }
    println!("{} pack rule files checked against their samples", files.len());
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_pack_rule_is_documented() {
    let mut files = Vec::new();
    rule_files(&rules_dir(), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for key in ["title:", "id:", "description:", "references:", "level:", "tags:"] {
            assert!(text.contains(key), "{} lacks {key}", f.display());
        }
        assert!(text.contains("attack."), "{} has no ATT&CK tag", f.display());
    }
}

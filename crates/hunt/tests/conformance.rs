//! The Sigma conformance suite: every SigmaHQ rule with `regression_tests_path`
//! must yield at least `match_count` detections (one where absent) on its `.evtx`
//! sample and on its `.json` export. Reads `../shared/sigma`; says so and passes
//! when that is absent (a user's fresh clone), and fails in CI where it exists.

use std::path::{Path, PathBuf};

use portcullis_hunt::{NoProgress, RunOptions, hunt};
use portcullis_sigma::{Engine, LogsourceTable, Placeholders, RuleSet};

/// `../shared` (or `$PORTCULLIS_SHARED`); the suite is `#[ignore]`d and runs with
/// `--ignored` (CI does), so a missing folder is a failure, not a skip.
fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(dir.join("sigma/regression_data").is_dir(), "{}/sigma/regression_data not found (set PORTCULLIS_SHARED)", dir.display());
    Some(dir)
}

struct Case {
    rule_file: PathBuf,
    sample: PathBuf,
    match_count: usize,
}

fn cases(sigma: &Path) -> Vec<Case> {
    let mut rule_files = Vec::new();
    for d in ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-compliance", "rules-placeholder"] {
        walk(&sigma.join(d), &mut rule_files);
    }
    rule_files.sort();
    let mut out = Vec::new();
    for rule_file in rule_files {
        let text = std::fs::read_to_string(&rule_file).unwrap();
        let Some(info) = text.lines().find_map(|l| l.strip_prefix("regression_tests_path:")) else { continue };
        let info = std::fs::read_to_string(sigma.join(info.trim())).unwrap();
        let mut match_count = 1;
        let mut samples = Vec::new();
        for line in info.lines() {
            let l = line.trim();
            if let Some(p) = l.strip_prefix("path:") {
                samples.push(sigma.join(p.trim()));
            } else if let Some(n) = l.strip_prefix("match_count:") {
                match_count = n.trim().parse().unwrap();
            }
        }
        for evtx in samples {
            for sample in [evtx.clone(), evtx.with_extension("json")] {
                out.push(Case { rule_file: rule_file.clone(), sample, match_count });
            }
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(p);
        }
    }
}

#[test]
#[ignore = "needs ../shared (SigmaHQ rules and samples); CI runs it with --ignored"]
fn sigma_regression_suite() {
    let Some(shared) = shared() else {
        eprintln!("SKIPPED: ../shared/sigma/regression_data not found (set PORTCULLIS_SHARED to run the conformance suite)");
        return;
    };
    let sigma = shared.join("sigma");
    let cases = cases(&sigma);
    assert!(cases.len() >= 400, "expected the 202-rule suite on .evtx and .json, found {} cases", cases.len());
    let table = LogsourceTable::builtin();
    let opts = RunOptions { threads: 1, ..Default::default() };
    let mut failures = Vec::new();
    let mut rules_passed = std::collections::BTreeMap::<PathBuf, bool>::new();
    for c in &cases {
        let mut set = RuleSet::default();
        set.add_path(&c.rule_file, &Placeholders::new());
        let engine = Engine::compile(&set, &table);
        let problem = if !set.errors.is_empty() || !engine.failed.is_empty() || !engine.unmapped.is_empty() {
            Some(format!(
                "rule does not load: {:?} {:?} {:?}",
                set.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                engine.failed.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                engine.unmapped.iter().map(|u| &u.reason).collect::<Vec<_>>()
            ))
        } else if !c.sample.exists() {
            Some("sample missing".to_string())
        } else {
            let result = hunt(&engine, &Default::default(), std::slice::from_ref(&c.sample), &opts, &NoProgress);
            let n = result.detections.len();
            (n < c.match_count).then(|| format!("{n} detections, expected at least {}", c.match_count))
        };
        let ok = problem.is_none();
        let entry = rules_passed.entry(c.rule_file.clone()).or_insert(true);
        *entry &= ok;
        if let Some(p) = problem {
            failures.push(format!(
                "{} on {}: {p}",
                c.rule_file.strip_prefix(&sigma).unwrap_or(&c.rule_file).display(),
                c.sample.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    let passed = rules_passed.values().filter(|ok| **ok).count();
    println!("Sigma conformance: {passed}/{} rules pass on both .evtx and .json ({} cases)", rules_passed.len(), cases.len());
    for f in &failures {
        println!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} conformance failures", failures.len());
}

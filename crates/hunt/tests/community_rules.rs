//! Every SigmaHQ rule under `../shared/sigma/rules*` loads, or is listed with a
//! precise reason. Without a placeholder file, only rules needing placeholder
//! values may fail (each says which); with one, everything loads.

use std::path::{Path, PathBuf};

use portcullis_sigma::{Engine, LogsourceTable, Placeholders, RuleSet, load_placeholders};

/// `../shared/sigma` (or `$PORTCULLIS_SHARED/sigma`); these tests are `#[ignore]`d and run
/// with `--ignored` (CI does), so a missing folder is a failure, not a skip.
fn sigma() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("sigma");
    assert!(dir.join("rules").is_dir(), "{} not found (set PORTCULLIS_SHARED)", dir.display());
    dir
}

fn load(sigma: &Path, dirs: &[&str], placeholders: &Placeholders) -> (RuleSet, Engine) {
    let mut set = RuleSet::default();
    for d in dirs {
        set.add_path(&sigma.join(d), placeholders);
    }
    let engine = Engine::compile(&set, &LogsourceTable::builtin());
    (set, engine)
}

#[test]
#[ignore = "needs ../shared (SigmaHQ rules and samples); CI runs it with --ignored"]
fn every_community_rule_loads() {
    let sigma = sigma();
    let dirs = ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-compliance"];
    let (set, engine) = load(&sigma, &dirs, &Placeholders::new());
    println!(
        "{} files, {} rules loaded, {} failed to parse, {} failed to compile, {} for log sources without a reader",
        set.files,
        engine.rules.len(),
        set.errors.len(),
        engine.failed.len(),
        engine.unmapped.len()
    );
    for e in set.errors.iter().chain(&engine.failed) {
        println!("  {e}");
    }
    assert!(engine.failed.is_empty());
    assert!(set.errors.iter().all(|e| e.needs_placeholder), "only placeholder rules may fail");
    assert!(engine.rules.len() >= 3700, "{} rules", engine.rules.len());

    let placeholders = load_placeholders(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/placeholders.yml")).unwrap();
    let (set, engine) = load(&sigma, &dirs, &placeholders);
    assert!(set.errors.is_empty() && engine.failed.is_empty(), "{:?}", set.errors);
}

#[test]
#[ignore = "needs ../shared (SigmaHQ rules and samples); CI runs it with --ignored"]
fn placeholder_rules_need_and_accept_a_placeholder_file() {
    let sigma = sigma();
    let (set, _) = load(&sigma, &["rules-placeholder"], &Placeholders::new());
    let n = set.files;
    assert!(n >= 20);
    assert!(set.errors.iter().all(|e| e.needs_placeholder && e.reason.contains("placeholder %")), "{:?}", set.errors);
    let placeholders = load_placeholders(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/placeholders.yml")).unwrap();
    let (set, engine) = load(&sigma, &["rules-placeholder"], &placeholders);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    assert!(engine.failed.is_empty());
    println!("rules-placeholder: {} rules load with the placeholder file", engine.rules.len());
}

#[test]
#[ignore = "needs ../shared (SigmaHQ rules and samples); CI runs it with --ignored"]
fn hunting_the_attack_samples_with_every_rule_completes() {
    let sigma = sigma();
    let samples = sigma.join("../evtx/EVTX-ATTACK-SAMPLES");
    assert!(samples.is_dir(), "{} not found", samples.display());
    let (_, engine) = load(&sigma, &["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-compliance"], &Placeholders::new());
    let (files, errors) = portcullis_sources::collect_files(&[samples]);
    assert!(errors.is_empty());
    let result = portcullis_hunt::hunt(&engine, &Default::default(), &files, &Default::default(), &portcullis_hunt::NoProgress);
    let mut skipped = 0;
    for o in &result.outcomes {
        match o {
            portcullis_hunt::FileOutcome::Crashed { path, message } => panic!("reader crashed on {}: {message}", path.display()),
            portcullis_hunt::FileOutcome::Read(r) => {
                skipped += r.skipped;
                // Nothing is lost without a word: every skip in a file comes with its reason.
                assert!(r.skipped == 0 || !r.notes.is_empty(), "{}: {} skipped with no reason", r.path.display(), r.skipped);
                assert!(r.notes.len() <= portcullis_sources::MAX_NOTES);
            }
            portcullis_hunt::FileOutcome::Failed(_) => {}
        }
    }
    println!("{} files, {} events, {} records skipped, {} detections", files.len(), result.stats.events, skipped, result.detections.len());
    assert!(result.stats.events > 10_000);
    assert!(result.detections.len() > 500);
}

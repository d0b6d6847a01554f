//! The synthetic institution, hunted: every planted step is detected, nothing in the
//! background is reported at high or critical, the intrusion's first evidence is the
//! first planted exploit request, and generation is deterministic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn simulate(out: &Path, seed: u64, scale: &str) {
    let st =
        bin().args(["simulate", "electoral-commission", "--seed", &seed.to_string(), "--scale", scale, "--out"]).arg(out).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
}

fn shared_sigma() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/sigma");
    p.join("rules").is_dir().then_some(p)
}

struct Checked {
    steps: usize,
    detected: usize,
    background_high: Vec<String>,
    background_lower: Vec<String>,
    first_evidence_ok: bool,
}

fn check(data: &Path, extra_rules: &[PathBuf]) -> Checked {
    let mut cmd = bin();
    cmd.arg("hunt").arg(data).args(["--format", "jsonl", "-q"]);
    for r in extra_rules {
        cmd.arg("--sigma").arg(r);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("truth.json")).unwrap()).unwrap();
    let key = |path: &str, rec: u64| (path.to_string(), rec);
    let mut planted = HashSet::new();
    for s in truth["steps"].as_array().unwrap() {
        for e in s["evidence"].as_array().unwrap() {
            planted.insert(key(e["path"].as_str().unwrap(), e["line"].as_u64().or(e["record"].as_u64()).unwrap()));
        }
    }
    let rel = |p: &str| Path::new(p).strip_prefix(data).unwrap().display().to_string();
    let mut seen = HashSet::new();
    let (mut background_high, mut background_lower) = (Vec::new(), Vec::new());
    // truth.json names the attacker's addresses, so built-in intel matches it too; it is the
    // answer sheet, not a log of the institution.
    for d in recs.iter().filter(|r| r["kind"] == "detection" && !r["path"].as_str().unwrap().ends_with("truth.json")) {
        let k = key(&rel(d["path"].as_str().unwrap()), d["record"].as_u64().unwrap());
        if !planted.contains(&k) {
            let what = format!("{} [{}] {}:{}", d["rule_title"], d["level"], k.0, k.1);
            if matches!(d["level"].as_str(), Some("high" | "critical")) {
                background_high.push(what);
            } else {
                background_lower.push(what);
            }
        }
        seen.insert(k);
    }
    let corr_windows: Vec<(String, String)> = recs
        .iter()
        .filter(|r| r["kind"] == "correlation")
        .map(|c| (c["first_seen"].as_str().unwrap().to_string(), c["last_seen"].as_str().unwrap().to_string()))
        .collect();
    let steps = truth["steps"].as_array().unwrap();
    let detected = steps
        .iter()
        .filter(|s| {
            s["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| seen.contains(&key(e["path"].as_str().unwrap(), e["line"].as_u64().or(e["record"].as_u64()).unwrap())))
                || corr_windows.iter().any(|(f, l)| f.as_str() <= s["time"].as_str().unwrap() && s["time"].as_str().unwrap() <= l.as_str())
        })
        .count();
    // The incident holding the first planted step starts at it.
    let first_step = &steps[0];
    let first_evidence_ok = recs.iter().filter(|r| r["kind"] == "incident").any(|i| i["first_seen"] == first_step["time"]);
    Checked { steps: steps.len(), detected, background_high, background_lower, first_evidence_ok }
}

#[test]
fn simulated_intrusion_is_found_whole_without_background_noise() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    simulate(&data, 3, "0.01");
    let c = check(&data, &[]);
    assert_eq!(c.detected, c.steps, "recall must be 100%");
    assert!(c.background_high.is_empty(), "{:#?}", c.background_high);
    assert!(c.background_lower.is_empty(), "{:#?}", c.background_lower);
    assert!(c.first_evidence_ok, "the first incident starts at the first planted exploit request");

    if let Some(sigma) = shared_sigma() {
        let rules: Vec<PathBuf> =
            ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-compliance"].iter().map(|d| sigma.join(d)).collect();
        let c = check(&data, &rules);
        assert_eq!(c.detected, c.steps);
        assert!(c.background_high.is_empty(), "SigmaHQ rules at high/critical on background: {:#?}", c.background_high);
        println!("With all SigmaHQ rules: {} lower-level background detections: {:#?}", c.background_lower.len(), c.background_lower);
    } else {
        assert!(
            std::env::var("PORTCULLIS_REQUIRE_SHARED").as_deref() != Ok("1"),
            "../shared is required (PORTCULLIS_REQUIRE_SHARED=1) but missing"
        );
        eprintln!("SKIPPED (part): ../shared/sigma not found, SigmaHQ rules not run over the simulation");
    }
}

#[test]
fn simulation_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    simulate(&a, 9, "0.003");
    simulate(&b, 9, "0.003");
    simulate(&c, 10, "0.003");
    let read = |p: &Path| std::fs::read(p.join("truth.json")).unwrap();
    assert_eq!(read(&a), read(&b));
    assert_ne!(read(&a), read(&c));
    let iis = "EXCH01/inetpub/logs/LogFiles/W3SVC1/u_ex2108.log";
    assert_eq!(std::fs::read(a.join(iis)).unwrap(), std::fs::read(b.join(iis)).unwrap());
}

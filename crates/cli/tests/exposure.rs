//! `exposure` on the synthetic institution: the unique-elector counts per category equal
//! `truth.json` exactly, in all files, on compromised systems and as evidenced accessed
//! by the hunt's case; results land in the case file; exit codes hold.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(out.status.code().is_some(), "killed");
    out
}

fn figures(v: &serde_json::Value) -> (u64, serde_json::Value) {
    (v["unique_electors"].as_u64().unwrap(), v["by_category"].clone())
}

#[test]
fn counts_equal_truth_in_every_scope() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    let case = dir.path().join("case.sqlite");
    for seed in ["3", "11"] {
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_file(&case);
        let st = run(bin().args(["simulate", "electoral-commission", "--scale", "0.05", "--seed", seed, "--out"]).arg(&data));
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let st = run(bin()
            .arg("hunt")
            .arg(&data)
            .args(["-q", "--format", "jsonl", "-o"])
            .arg(dir.path().join("f.jsonl"))
            .arg("--case")
            .arg(&case));
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let st = run(bin()
            .arg("exposure")
            .arg(&data)
            .args(["--format", "jsonl", "-q", "--fail-if-found", "--accessed"])
            .arg(&case)
            .arg("--case")
            .arg(&case));
        assert_eq!(st.status.code(), Some(2), "{}", String::from_utf8_lossy(&st.stderr));
        let lines: Vec<serde_json::Value> =
            String::from_utf8(st.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let total = lines.last().unwrap();
        assert_eq!(total["kind"], "exposure_total");
        let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("truth.json")).unwrap()).unwrap();
        let t = &truth["exposure"];
        assert_eq!(figures(total), figures(t), "all files, seed {seed}");
        assert_eq!(figures(&total["on_compromised_systems"]), figures(&t["on_compromised_systems"]), "compromised, seed {seed}");
        assert_eq!(figures(&total["evidenced_as_accessed"]), figures(&t["evidenced_as_accessed"]), "accessed, seed {seed}");
        assert!(figures(&t["evidenced_as_accessed"]).0 < figures(t).0, "the scenario must leave some electors unreached");
        // Every register file is found, and only those.
        let registers: Vec<&str> = lines.iter().filter(|l| l["register"] == true).map(|l| l["path"].as_str().unwrap()).collect();
        assert_eq!(registers.len(), 9, "{registers:?}");
        assert!(registers.iter().all(|p| p.contains("Registers") || p.contains("elections-team.mbox!")), "{registers:?}");
        // Nothing personal is printed by default.
        assert!(lines.iter().all(|l| l.get("samples").is_none()));
        let conn = rusqlite::Connection::open(&case).unwrap();
        let stored: i64 = conn.query_row("SELECT unique_electors FROM exposure_totals", [], |r| r.get(0)).unwrap();
        assert_eq!(stored as u64, figures(t).0);
        let files: i64 = conn.query_row("SELECT COUNT(*) FROM exposure_files WHERE register = 1", [], |r| r.get(0)).unwrap();
        assert_eq!(files, 9);
    }
}

#[test]
fn table_output_and_missing_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let st = run(bin().args(["simulate", "electoral-commission", "--registers-only", "--scale", "0.05", "--out"]).arg(dir.path()));
    assert!(st.status.success());
    let st = run(bin().arg("exposure").arg(dir.path()).arg("--compromised-host").arg("FS01"));
    assert_eq!(st.status.code(), Some(0));
    let text = String::from_utf8(st.stdout).unwrap();
    assert!(text.contains("Unique electors exposed") && text.contains("on compromised systems"), "{text}");
    let st = run(bin().arg("exposure").arg(Path::new("/nonexistent/portcullis")));
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stderr).contains("/nonexistent/portcullis"));
}

/// `--fail-on LEVEL` grades a register copy by where it was: accessed critical, on a
/// compromised system high, elsewhere medium (`--fail-if-found` is `--fail-on
/// informational`); `--format csv` has a row per file.
#[test]
fn fail_on_levels_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("regs");
    let st = run(bin().args(["simulate", "electoral-commission", "--registers-only", "--scale", "0.05", "--out"]).arg(&data));
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let code = |args: &[&str]| run(bin().arg("exposure").arg(&data).arg("-q").args(args)).status.code();
    assert_eq!(code(&["--fail-if-found"]), Some(2));
    assert_eq!(code(&["--fail-on", "medium"]), Some(2));
    assert_eq!(code(&["--fail-on", "high"]), Some(0), "no register copy is on a compromised system");
    assert_eq!(code(&["--fail-on", "high", "--compromised-host", "FS01"]), Some(2));
    assert_eq!(code(&["--fail-on", "critical", "--compromised-host", "FS01"]), Some(0), "none is evidenced as accessed");
    assert_eq!(code(&[]), Some(0));

    let st = run(bin().arg("exposure").arg(&data).args(["-q", "--format", "csv", "--compromised-host", "FS01"]));
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let mut rows = csv::Reader::from_reader(&st.stdout[..]);
    assert_eq!(&rows.headers().unwrap()[2], "register");
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(records.iter().filter(|r| &r[2] == "true").count(), 9);
    assert!(records.iter().any(|r| &r[2] == "true" && &r[6] == "true" && r[0].contains("FS01")));
}

//! `portcullis exchange-check` from arguments, an inventory and log evidence.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).arg("exchange-check").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn verdicts_from_arguments_inventory_and_logs() {
    let (code, out) = run(&["EXCH01=15.1.2176.2", "--fail-if-open"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("OPEN     ProxyShell") && out.contains("15.1.2176.14"), "{out}");
    let (code, out) = run(&["15.2.1258.12", "--fail-if-open"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("OPEN"));
    let (code, out) = run(&["banana"]);
    assert_eq!(code, 1);
    assert!(out.contains("not an Exchange"));

    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("servers.csv");
    std::fs::write(&inv, "Name,Version\nMBX1,15.1.2507.16\nMBX2,15.0.1497.18\n").unwrap();
    let (code, out) = run(&["--inventory", inv.to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(code, 0);
    let v: Vec<serde_json::Value> = out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v.len(), 2);
    let mbx2 = &v[1]["verdict"];
    assert_eq!(mbx2["server"], "MBX2");
    let status = |name: &str| mbx2["chains"].as_array().unwrap().iter().find(|c| c["chain"] == name).unwrap()["status"].clone();
    assert_eq!(status("ProxyShell"), "fixed");
    assert_eq!(status("ProxyNotShell"), "open");

    let logs = dir.path().join("iis.log");
    std::fs::write(
        &logs,
        "#Fields: date time s-computername cs-method cs-uri-stem cs-uri-query c-ip sc-status\n2022-01-01 10:00:00 EXCH9 GET /owa/auth/15.2.986/themes/x.png - 10.0.0.1 200\n",
    )
    .unwrap();
    let (_, out) = run(&["--logs", logs.to_str().unwrap()]);
    assert!(out.contains("EXCH9") && out.contains("CU11"), "{out}");
    assert!(out.contains("unknown") && out.contains("15.2.986.36"), "three-part builds leave the update level unknown: {out}");
}

/// `--fail-on LEVEL`: an open chain is critical, a chain whose security-update level is
/// unknown (only the CU known) medium; `--fail-if-open` is `--fail-on critical`. CSV has a
/// row per server and chain, and `-o` writes to a file.
#[test]
fn fail_on_levels_and_csv() {
    // 15.2.1118 (CU12, no revision): ProxyNotShell and OWASSRF unknown, nothing open.
    let (code, out) = run(&["EX2=15.2.1118", "--fail-on", "critical"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["EX2=15.2.1118", "--fail-if-open"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["EX2=15.2.1118", "--fail-on", "medium"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = run(&["EXCH01=15.1.2176.2", "--fail-on", "critical"]);
    assert_eq!(code, 2, "{out}");

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("verdicts.csv");
    let (code, out) = run(&["EXCH01=15.1.2176.2", "EX2=15.2.1118", "--format", "csv", "-o", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.is_empty(), "-o leaves standard output empty: {out}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let headers = rows.headers().unwrap().clone();
    assert_eq!(&headers[7], "status");
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 8, "{text}");
    let status = |server: &str, chain: &str| {
        records.iter().find(|r| &r[0] == server && &r[5] == chain).map(|r| r[7].to_string()).unwrap_or_default()
    };
    assert_eq!(status("EXCH01", "ProxyShell"), "open");
    assert_eq!(status("EX2", "ProxyShell"), "fixed");
    assert_eq!(status("EX2", "OWASSRF"), "unknown");
}

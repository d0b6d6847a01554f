//! End to end: a small multi-file breach becomes one incident with its stages in
//! order, its first evidence and its dwell time; benign activity on another host
//! becomes nothing; the case file survives re-runs and a killed run.

use std::path::Path;
use std::process::{Command, Output};

const IIS: &str = "#Software: Microsoft Internet Information Services 10.0
#Fields: date time s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken
2021-08-24 02:00:00 EXCH01 10.0.0.5 GET /owa/ - 443 - 10.1.1.20 Mozilla/5.0 200 0 0 10
2021-08-24 02:13:00 EXCH01 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dz&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 185.220.101.182 python-requests/2.25.1 200 0 0 312
2021-08-24 02:14:00 EXCH01 10.0.0.5 GET /ecp/ - 443 - 10.1.1.21 Mozilla/5.0 200 0 0 10
";

fn sysmon(t: &str, host: &str, id: u32, data: &str) -> String {
    format!(
        r##"{{"Event":{{"System":{{"Provider":{{"#attributes":{{"Name":"Microsoft-Windows-Sysmon"}}}},"EventID":{id},"TimeCreated":{{"#attributes":{{"SystemTime":"{t}"}}}},"EventRecordID":{id},"Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"{host}"}},"EventData":{{{data}}}}}}}"##
    ) + "\n"
}

const RULES: &str = r#"
title: Autodiscover SSRF to PowerShell
id: t-exploit
level: high
tags: [attack.initial-access, attack.t1190]
logsource: {category: webserver}
detection:
    sel:
        cs-uri-stem|contains: /autodiscover/autodiscover.json
        cs-uri-query|contains|all: ['@', powershell]
    condition: sel
---
title: Webshell written under owa\auth
id: t-webshell
level: critical
tags: [attack.persistence, attack.t1505.003]
logsource: {product: windows, category: file_event}
detection:
    sel:
        TargetFilename|contains: '\owa\auth\'
        TargetFilename|endswith: ['.aspx', '.ashx']
    condition: sel
---
title: IIS worker spawned a shell
id: t-w3wp
level: high
tags: [attack.execution, attack.t1059.003]
logsource: {product: windows, category: process_creation}
detection:
    sel:
        ParentImage|endswith: '\w3wp.exe'
        Image|endswith: ['\cmd.exe', '\powershell.exe']
    condition: sel
---
title: Okta Verify push sent
id: t-push
name: okta_push
level: informational
logsource: {product: okta, service: okta}
detection:
    sel:
        eventType: system.push.send_factor_verify_push
    condition: sel
---
title: MFA push burst for one account
id: t-mfa-burst
level: high
tags: [attack.credential-access, attack.t1621]
correlation:
    type: event_count
    rules: [okta_push]
    group-by: [actor.alternateId]
    timespan: 1m
    condition: {gte: 10}
"#;

fn dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("exch01/iis")).unwrap();
    std::fs::create_dir_all(dir.join("ws042")).unwrap();
    std::fs::write(dir.join("exch01/iis/u_ex210824.log"), IIS).unwrap();
    let mut sys = String::new();
    sys += &sysmon(
        "2021-08-24T02:20:00Z",
        "EXCH01.corp.local",
        11,
        r#""Image":"c:\\windows\\system32\\inetsrv\\w3wp.exe","TargetFilename":"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\pxh4HG1v.ashx""#,
    );
    sys += &sysmon(
        "2021-08-24T02:25:00Z",
        "EXCH01.corp.local",
        1,
        r#""Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"c:\\windows\\system32\\inetsrv\\w3wp.exe","CommandLine":"cmd /c whoami","User":"NT AUTHORITY\\SYSTEM""#,
    );
    std::fs::write(dir.join("exch01/sysmon.jsonl"), sys).unwrap();
    let mut okta = String::new();
    for i in 0..10 {
        okta += &format!(
            r#"{{"published":"2021-08-24T03:00:{:02}.000Z","eventType":"system.push.send_factor_verify_push","actor":{{"alternateId":"jsmith@electoralcommission.example"}},"client":{{"ipAddress":"185.220.101.182"}}}}"#,
            i * 5
        );
        okta.push('\n');
    }
    std::fs::write(dir.join("okta.jsonl"), okta).unwrap();
    // Benign on another host: ordinary processes, ordinary logons.
    let benign = sysmon(
        "2021-08-24T02:30:00Z",
        "WS042.corp.local",
        1,
        r#""Image":"C:\\Windows\\System32\\notepad.exe","ParentImage":"C:\\Windows\\explorer.exe","CommandLine":"notepad report.txt","User":"CORP\\bob""#,
    );
    std::fs::write(dir.join("ws042/sysmon.jsonl"), benign).unwrap();
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
}

fn hunt(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("hunt")
        .arg("--no-builtin-intel")
        .arg(dir.join("exch01"))
        .arg(dir.join("ws042"))
        .arg(dir.join("okta.jsonl"))
        .arg("--no-builtin")
        .arg("--sigma")
        .arg(dir.join("rules.yml"))
        .args(["--format", "jsonl"])
        .args(extra)
        .output()
        .unwrap()
}

fn records(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn one_incident_in_order_with_first_evidence_and_dwell_time() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let recs = records(&hunt(dir.path(), &[]));
    let incidents: Vec<_> = recs.iter().filter(|r| r["kind"] == "incident").collect();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let inc = incidents[0];
    let detections: Vec<_> = recs.iter().filter(|r| r["kind"] == "detection").collect();
    assert_eq!(detections.len(), 3, "the push events themselves only feed the correlation");
    let exploit = detections.iter().find(|d| d["rule_id"] == "t-exploit").unwrap();
    assert_eq!(inc["first_evidence"], exploit["id"]);
    assert_eq!(inc["first_seen"], "2021-08-24T02:13:00Z");
    assert_eq!(inc["last_seen"], "2021-08-24T03:00:45Z");
    assert_eq!(inc["dwell_seconds"], 47 * 60 + 45);
    let stages: Vec<&str> = inc["stages"].as_array().unwrap().iter().map(|s| s["rule_title"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "Autodiscover SSRF to PowerShell",
            "Webshell written under owa\\auth",
            "IIS worker spawned a shell",
            "MFA push burst for one account"
        ]
    );
    assert_eq!(inc["tactics"], serde_json::json!(["initial-access", "execution", "persistence", "credential-access"]));
    assert_eq!(inc["severity"], "critical");
    let first_sentence = inc["stages"][0]["sentence"].as_str().unwrap();
    assert!(first_sentence.starts_with("24 Aug 2021 02:13 UTC — Autodiscover SSRF"), "{first_sentence}");
    assert!(first_sentence.contains("from 185.220.101.182") && first_sentence.contains("HTTP 200"));
    // Every join says why.
    let reasons: Vec<&str> = inc["explanation"].as_array().unwrap().iter().map(|j| j["reason"].as_str().unwrap()).collect();
    assert!(reasons[3].contains("source_ip `185.220.101.182`"), "{reasons:?}");
    // Nothing from WS042.
    assert!(!recs.iter().any(|r| r.to_string().to_lowercase().contains("ws042")));
    let corr: Vec<_> = recs.iter().filter(|r| r["kind"] == "correlation").collect();
    assert_eq!(corr.len(), 1);
    assert_eq!(corr[0]["value"], 10.0);
    assert_eq!(corr[0]["group"]["actor.alternateId"], "jsmith@electoralcommission.example");
}

#[test]
fn case_file_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let case = dir.path().join("case.sqlite");
    let timeline = dir.path().join("timeline.jsonl");
    let case_s = case.to_str().unwrap();
    let recs = records(&hunt(dir.path(), &["--case", case_s, "--timeline", timeline.to_str().unwrap()]));
    let summary = recs.last().unwrap();
    assert_eq!(summary["case_new_findings"], 4);
    let again = records(&hunt(dir.path(), &["--case", case_s]));
    assert_eq!(again.last().unwrap()["case_new_findings"], 0, "the same data adds nothing");
    let conn = rusqlite_check(&case);
    assert_eq!(conn, (4, 1, 2));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&timeline).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 4 + 4);
    for l in &lines {
        for k in ["message", "datetime", "timestamp_desc", "timestamp"] {
            assert!(l.get(k).is_some(), "timeline row lacks {k}: {l}");
        }
    }
    let times: Vec<i64> = lines.iter().map(|l| l["timestamp"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let csv = dir.path().join("timeline.csv");
    records(&hunt(dir.path(), &["--timeline", csv.to_str().unwrap()]));
    assert!(std::fs::read_to_string(&csv).unwrap().starts_with("message,datetime,timestamp_desc,timestamp"));
}

/// (findings, incidents, completed runs) read with the sqlite3 CLI if present, else by the library.
fn rusqlite_check(case: &Path) -> (i64, i64, i64) {
    let q = |sql: &str| -> i64 {
        let out = Command::new("sqlite3").arg(case).arg(sql).output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().parse().unwrap(),
            _ => portcullis_case_query(case, sql),
        }
    };
    (q("SELECT COUNT(*) FROM findings"), q("SELECT COUNT(*) FROM incidents"), q("SELECT COUNT(*) FROM runs WHERE status = 'complete'"))
}

fn portcullis_case_query(case: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(case).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_killed_run_leaves_the_case_intact() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    // Enough exploit requests that writing the findings takes a while.
    let mut big = IIS.lines().take(2).collect::<Vec<_>>().join("\n");
    big.push('\n');
    for i in 0..60_000 {
        big += &format!(
            "2021-08-25 {:02}:{:02}:{:02} EXCH01 10.0.0.5 POST /autodiscover/autodiscover.json @x/powershell/?n={i} 443 - 185.220.101.{} python 200 0 0 5\n",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            i % 250
        );
    }
    std::fs::write(dir.path().join("exch01/iis/u_ex210825.log"), big).unwrap();
    let case = dir.path().join("case.sqlite");
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        c.arg("hunt")
            .arg("--no-builtin-intel")
            .arg(dir.path().join("exch01"))
            .args(["--no-builtin", "--sigma"])
            .arg(dir.path().join("rules.yml"))
            .args(["--format", "jsonl", "-q", "-o"])
            .arg(dir.path().join("out.jsonl"))
            .arg("--case")
            .arg(&case);
        c
    };
    for delay_ms in [50u64, 300, 700, 1200] {
        let mut child = run().spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let conn = rusqlite::Connection::open(&case);
        if let Ok(conn) = conn {
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap_or_else(|_| "ok".into());
            assert_eq!(ok, "ok", "after kill at {delay_ms} ms");
        }
    }
    assert!(run().status().unwrap().success());
    assert!(run().status().unwrap().success());
    let conn = rusqlite::Connection::open(&case).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let findings: i64 = conn.query_row("SELECT COUNT(*) FROM findings", [], |r| r.get(0)).unwrap();
    let distinct: i64 = conn.query_row("SELECT COUNT(DISTINCT id) FROM findings", [], |r| r.get(0)).unwrap();
    assert_eq!(findings, distinct);
    assert_eq!(findings, 60_000 + 3, "every exploit request (60,000 + the first), the webshell and the w3wp findings, once");
}

//! End-to-end tests of the `portcullis` binary on small built-in fixtures.

use std::path::PathBuf;
use std::process::{Command, Output};

const IIS_LOG: &str = "#Software: Microsoft Internet Information Services 10.0\r\n\
#Version: 1.0\r\n\
#Date: 2021-08-24 02:13:00\r\n\
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\r\n\
2021-08-24 02:13:00 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dz&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 185.220.101.182 python-requests/2.25.1 - 200 0 0 312\r\n\
2021-08-24 02:14:00 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 12\r\n\
2021-08-24 02:15:00 10.0.0.5 GET /bad line\r\n";

const RULE: &str = "title: Autodiscover SSRF to PowerShell (test rule)
id: 11111111-2222-3333-4444-555555555555
status: test
level: critical
tags: [attack.initial-access, attack.t1190]
logsource:
    category: webserver
detection:
    selection:
        cs-uri-stem|contains: '/autodiscover/autodiscover.json'
        cs-uri-query|contains|all: ['powershell', '@']
    condition: selection
";

const LOW_RULE: &str = "title: OWA page view (test rule)
id: 66666666-2222-3333-4444-555555555555
level: low
logsource:
    category: webserver
detection:
    selection:
        cs-uri-stem|startswith: '/owa/'
    condition: selection
";

const SYSMON_ONLY: &str = "title: Sysmon only
id: 77777777-2222-3333-4444-555555555555
level: high
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\\cmd.exe'
    condition: selection
";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("u_ex210824.log"), IIS_LOG).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/ssrf.yml"), RULE).unwrap();
        std::fs::write(dir.path().join("rules/owa.yml"), LOW_RULE).unwrap();
        std::fs::write(dir.path().join("sysmon.yml"), SYSMON_ONLY).unwrap();
        std::fs::write(dir.path().join("broken.yml"), "title: broken\ndetection:\n  sel:\n    A|nosuch: x\n  condition: sel\n").unwrap();
        Fixture { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

/// Runs the binary; `hunt` and `rules` run without the built-in pack so counts are the fixture's.
fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for a in args {
        c.arg(a);
    }
    let first = args.first().map(|a| a.as_ref().to_string_lossy().into_owned());
    if matches!(first.as_deref(), Some("hunt" | "rules")) {
        c.arg("--no-builtin");
    }
    c.output().unwrap()
}

#[test]
fn builtin_pack_is_loaded_by_default() {
    let f = Fixture::new();
    let out =
        Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["hunt", "--format", "jsonl"]).arg(f.path("u_ex210824.log")).output().unwrap();
    let recs = jsonl(&out);
    assert!(recs.iter().any(|r| r["kind"] == "detection" && r["rule_path"].as_str().unwrap().starts_with("builtin:rules/")));
}

fn jsonl(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn hunt_jsonl_has_detections_then_summary() {
    let f = Fixture::new();
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("rules"), &"--format", &"jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = jsonl(&out);
    let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["incident", "detection", "detection", "summary"]);
    let d = &recs[1];
    assert_eq!(d["kind"], "detection");
    assert_eq!(d["rule_id"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(d["level"], "critical");
    assert_eq!(d["timestamp"], "2021-08-24T02:13:00Z");
    assert_eq!(d["record"], 5);
    assert!(d["path"].as_str().unwrap().ends_with("u_ex210824.log"));
    assert_eq!(d["fields"]["c-ip"], "185.220.101.182");
    assert_eq!(d["id"].as_str().unwrap().len(), 32);
    let s = recs.last().unwrap();
    assert_eq!(s["kind"], "summary");
    assert_eq!(s["events"], 2);
    assert_eq!(s["records_skipped"], 1);
    assert_eq!(s["detections"], 2);
    assert_eq!(s["detections_by_level"]["critical"], 1);
    assert_eq!(s["rules_loaded"], 2);
    assert_eq!(s["rules_applied"], 2);
}

#[test]
fn finding_ids_are_stable_across_runs() {
    let f = Fixture::new();
    let ids = |out: &Output| -> Vec<String> {
        jsonl(out).iter().filter(|r| r["kind"] == "detection").map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    let a = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("rules"), &"--format", &"jsonl"]);
    let b = run(&[&"hunt", &"--no-builtin-intel", &f.dir.path(), &"--sigma", &f.path("rules"), &"--format", &"jsonl", &"--threads", &"1"]);
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn exit_codes_and_min_level() {
    let f = Fixture::new();
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("rules"), &"--fail-on", &"high", &"-q"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        &"hunt",
        &"--no-builtin-intel",
        &f.path("u_ex210824.log"),
        &"--sigma",
        &f.path("rules/owa.yml"),
        &"--fail-on",
        &"high",
        &"-q",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = run(&[
        &"hunt",
        &"--no-builtin-intel",
        &f.path("u_ex210824.log"),
        &"--sigma",
        &f.path("rules"),
        &"--min-level",
        &"high",
        &"--format",
        &"jsonl",
    ]);
    let recs = jsonl(&out);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "detection").count(), 1);
    // Errors: a missing input, a missing rules path, a bad argument.
    assert_eq!(run(&[&"hunt", &"--no-builtin-intel", &f.path("nope.log")]).status.code(), Some(1));
    assert_eq!(run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("nope")]).status.code(), Some(1));
    assert_eq!(run(&[&"hunt", &"--no-builtin-intel", &"--format", &"xml", &f.path("u_ex210824.log")]).status.code(), Some(1));
    assert_eq!(run(&[&"--help"]).status.code(), Some(0));
}

#[test]
fn never_a_silent_zero_detection_run() {
    let f = Fixture::new();
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("sysmon.yml"), &"--format", &"jsonl"]);
    assert_eq!(out.status.code(), Some(0));
    let recs = jsonl(&out);
    let s = recs.last().unwrap();
    assert_eq!(s["detections"], 0);
    assert_eq!(s["rules_applied"], 0);
    let warnings = s["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("no loaded rule applies to any input")), "{warnings:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no loaded rule applies"));
}

#[test]
fn failed_rules_are_listed_with_file_line_and_reason() {
    let f = Fixture::new();
    let out = run(&[
        &"hunt",
        &"--no-builtin-intel",
        &f.path("u_ex210824.log"),
        &"--sigma",
        &f.path("broken.yml"),
        &"--sigma",
        &f.path("rules"),
        &"--format",
        &"jsonl",
    ]);
    let recs = jsonl(&out);
    let s = recs.last().unwrap();
    let failed = s["rules_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["path"].as_str().unwrap().ends_with("broken.yml"));
    assert_eq!(failed[0]["line"], 4);
    assert!(failed[0]["reason"].as_str().unwrap().contains("unknown value modifier"));
    assert_eq!(s["detections"], 2, "the other rules still ran");
}

#[test]
fn table_csv_and_json_formats() {
    let f = Fixture::new();
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("rules")]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("TIME (UTC)") && table.contains("Autodiscover SSRF"), "{table}");
    assert!(table.contains("Detections: 2"));
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210824.log"), &"--sigma", &f.path("rules"), &"--format", &"csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("timestamp,level,rule_title"));
    assert_eq!(csv.lines().count(), 3);
    let out_file = f.path("out.json");
    let out = run(&[
        &"hunt",
        &"--no-builtin-intel",
        &f.path("u_ex210824.log"),
        &"--sigma",
        &f.path("rules"),
        &"--format",
        &"json",
        &"-o",
        &out_file,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(doc["detections"].as_array().unwrap().len(), 2);
    assert_eq!(doc["summary"]["kind"], "summary");
}

#[test]
fn events_dump_and_count() {
    let f = Fixture::new();
    let out = run(&[&"events", &f.path("u_ex210824.log")]);
    let recs = jsonl(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["kind"], "event");
    assert_eq!(recs[0]["source"], "w3c");
    assert_eq!(recs[0]["fields"]["cs-method"], "POST");
    let out = run(&[&"events", &"--count", &f.dir.path()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn rules_command_reports_problems() {
    let f = Fixture::new();
    let out = run(&[&"rules", &"--sigma", &f.dir.path(), &"--format", &"jsonl"]);
    let recs = jsonl(&out);
    assert!(recs.iter().any(|r| r["kind"] == "rule_failed" && r["line"] == 4));
    let s = recs.last().unwrap();
    assert_eq!(s["kind"], "rules_summary");
    assert_eq!(s["rules_loaded"], 3);
}

#[test]
fn a_file_that_is_not_a_case_is_refused_before_hunting() {
    let f = Fixture::new();
    let notes = f.path("notes.sqlite");
    std::fs::write(&notes, "meeting notes, not a database; long enough to fill a 100-byte SQLite header and then some more words").unwrap();
    let out = run(&[&"hunt", &f.path("u_ex210824.log"), &"--sigma", &f.path("rules"), &"--case", &notes, &"--format", &"jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.sqlite") && err.contains("not a SQLite database"), "{err}");
    assert!(out.stdout.is_empty(), "refused before any log was read");
    assert!(std::fs::read_to_string(&notes).unwrap().starts_with("meeting notes"));
}

#[test]
fn min_level_filters_what_is_reported_not_what_correlations_see() {
    // The MFA push burst (high) is built on an informational base rule: --min-level high
    // must still report the burst.
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules/samples/corr_mfa_push_burst/positive.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["hunt", sample, "--no-builtin-intel", "--min-level", "high", "--format", "jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = jsonl(&out);
    assert!(recs.iter().any(|r| r["kind"] == "correlation" && r["rule_title"] == "MFA Push Burst for One Account"), "{recs:#?}");
    assert!(!recs.iter().any(|r| r["kind"] == "detection" && r["level"] == "informational"), "below the level: not reported");
    let summary = recs.last().unwrap();
    assert!(summary["rules_failed"].as_array().unwrap().is_empty(), "{summary}");
}

#[test]
fn runs_that_would_check_nothing_are_errors_not_silent_passes() {
    let f = Fixture::new();
    let log = f.path("u_ex210824.log");
    let err = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    // --from after --to.
    let out = run(&[&"hunt", &"--no-builtin-intel", &log, &"--sigma", &f.path("rules"), &"--from", &"2022-01-01", &"--to", &"2021-01-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("later than --to"), "{}", err(&out));
    // Every --sigma rule failed to load.
    let out = run(&[&"hunt", &"--no-builtin-intel", &log, &"--sigma", &f.path("broken.yml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("none of the --sigma rules loaded"), "{}", err(&out));
    // An indicator file with nothing usable, and indicators that would match everything.
    std::fs::write(f.path("empty.csv"), "").unwrap();
    let out = run(&[&"hunt", &log, &"--sigma", &f.path("rules"), &"--iocs", &f.path("empty.csv")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("empty.csv: no usable indicator"), "{}", err(&out));
    std::fs::write(f.path("wide.csv"), "0.0.0.0/0\n::/0\n10.0.0.0/4\n185.220.101.182\n").unwrap();
    let out = run(&[&"hunt", &log, &"--sigma", &f.path("rules"), &"--iocs", &f.path("wide.csv"), &"--format", &"jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let summary = jsonl(&out).pop().unwrap();
    let problems = summary["ioc_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().all(|p| p.as_str().unwrap().contains("wide.csv:")), "positions named: {problems:?}");
    assert!(summary["ioc_matches"].as_u64().unwrap() >= 1);
}

/// Every cell of a CSV: no control, bidi or invisible character, and nothing a spreadsheet
/// would run as a formula (plain numbers aside).
fn assert_safe_csv(what: &str, text: &str) {
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut cells = 0;
    for rec in r.records() {
        let rec = rec.unwrap_or_else(|e| panic!("{what}: not CSV: {e}\n{text}"));
        for cell in rec.iter() {
            cells += 1;
            assert!(
                !cell.chars().any(|c| c.is_control() || ('\u{200b}'..='\u{200f}').contains(&c) || ('\u{202a}'..='\u{202e}').contains(&c)),
                "{what}: raw control or bidi character in {cell:?}"
            );
            let number = cell.trim_start_matches('-').parse::<f64>().is_ok();
            assert!(!cell.starts_with(['=', '+', '-', '@']) || number, "{what}: formula cell {cell:?}");
        }
    }
    assert!(cells > 0, "{what}: empty");
}

#[test]
fn hostile_evidence_is_escaped_in_every_csv_and_the_timeline() {
    let f = Fixture::new();
    let hostile = "{\"Channel\":\"Security\",\"EventID\":4688,\"TimeCreated\":\"2021-08-24T02:13:00Z\",\
\"Computer\":\"=HOST\\u001b[31m\",\"SubjectUserName\":\"+admin\\u202e\",\"IpAddress\":\"185.220.101.182\",\
\"CommandLine\":\"@SUM(1)\\u0007\\r\\nnext\",\"NewProcessName\":\"-C:\\\\x.exe\\u0085\"}\n";
    std::fs::write(f.path("=evil\x1b[2J.json"), hostile).unwrap();
    std::fs::create_dir(f.path("hostile-rules")).unwrap();
    std::fs::write(
        f.path("hostile-rules/r.yml"),
        "title: \"=cmd|' /C calc'!A0 \\e]0;owned\\a\"\nid: 88888888-2222-3333-4444-555555555555\nlevel: high\n\
logsource:\n    product: windows\n    service: security\ndetection:\n    sel:\n        EventID: 4688\n    condition: sel\n",
    )
    .unwrap();
    std::fs::write(f.path("iocs.csv"), "value,context\n185.220.101.182,\"=HYPERLINK(\"\"http://x\"\")\u{1b}[1m\"\n").unwrap();
    let case = f.path("case.sqlite");
    let timeline = f.path("timeline.csv");
    let log = f.path("=evil\x1b[2J.json");
    let args: [&dyn AsRef<std::ffi::OsStr>; 13] = [
        &"hunt",
        &"--no-builtin-intel",
        &log,
        &"--sigma",
        &f.path("hostile-rules"),
        &"--iocs",
        &f.path("iocs.csv"),
        &"--case",
        &case,
        &"--timeline",
        &timeline,
        &"--format",
        &"csv",
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.contains("'=cmd|"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "a rule and an indicator matched: {csv}");
    assert_safe_csv("hunt --format csv", &csv);
    let rows = std::fs::read_to_string(&timeline).unwrap();
    assert!(rows.contains("\\u{1b}"), "{rows}");
    assert_safe_csv("timeline.csv", &rows);
    // The timeline as JSONL: the same values, escaped as JSON, and a message escaped for display.
    let jsonl = f.path("timeline.jsonl");
    let out = run(&[&"hunt", &"--no-builtin-intel", &log, &"--sigma", &f.path("hostile-rules"), &"--timeline", &jsonl, &"-q"]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(!text.chars().any(|c| c != '\n' && (c.is_control() || c == '\u{202e}')), "{text:?}");
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(row["SubjectUserName"], "+admin\u{202e}", "fields keep their values");
    assert!(!row["message"].as_str().unwrap().chars().any(|c| c.is_control() || c == '\u{202e}'), "{row}");
    // The case's indicators shared as CSV.
    let out = run(&[&"export", &"csv", &case]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let exported = String::from_utf8(out.stdout).unwrap();
    assert!(exported.contains("185.220.101.182"), "{exported}");
    assert_safe_csv("export csv", &exported);
}

/// Runs the binary, killing it after `secs` seconds (a hang is a failure, not a stuck test).
fn run_within(secs: u64, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for a in args {
        c.arg(a);
    }
    c.arg("--no-builtin").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("portcullis {:?} did not finish within {secs}s", args.iter().map(|a| a.as_ref().to_owned()).collect::<Vec<_>>());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn fifos_truncated_gzip_headerless_w3c_and_untimed_detections_are_said() {
    use std::io::Write;
    let f = Fixture::new();
    let summary = |out: &Output| jsonl(out).into_iter().find(|r| r["kind"] == "summary").unwrap();
    // A FIFO given directly is skipped with a note; the other input is hunted.
    #[cfg(unix)]
    {
        let fifo = f.path("pipe.log");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let out = run_within(
            60,
            &[&"hunt", &"--no-builtin-intel", &fifo, &f.path("u_ex210824.log"), &"--sigma", &f.path("rules"), &"--format", &"jsonl"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let s = summary(&out);
        assert_eq!(s["detections"], 2);
        assert!(
            s["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("pipe.log: a FIFO (named pipe), not a regular file: skipped")),
            "{s}"
        );
    }
    // A truncated .gz whose events were hunted: the events count, the cut is a skip.
    std::fs::create_dir(f.path("win-rules")).unwrap();
    std::fs::write(
        f.path("win-rules/r.yml"),
        "title: whoami\nid: 99999999-2222-3333-4444-555555555555\nlevel: high\nlogsource:\n    product: windows\n    service: security\n\
detection:\n    sel:\n        CommandLine|contains: whoami\n    condition: sel\n",
    )
    .unwrap();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "{{\"Channel\":\"Security\",\"EventID\":4688,\"TimeCreated\":\"2021-08-24T02:13:00Z\",\"CommandLine\":\"whoami {i}\"}}\n"
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let whole = gz.finish().unwrap();
    std::fs::write(f.path("events.json.gz"), &whole[..whole.len() / 2]).unwrap();
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("events.json.gz"), &"--sigma", &f.path("win-rules"), &"--format", &"jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    assert!(s["events"].as_u64().unwrap() > 100 && s["detections"] == s["events"], "{s}");
    assert!(s["records_skipped"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["file_problems"].to_string().contains("gzip stream ends early"), "{s}");
    // An IIS log without its #Fields: line is read with IIS's default fields, and says so.
    let headerless: String = IIS_LOG.lines().filter(|l| !l.starts_with("#Fields")).map(|l| format!("{l}\n")).collect();
    std::fs::write(f.path("u_ex210825.log"), headerless).unwrap();
    let out = run(&[&"hunt", &"--no-builtin-intel", &f.path("u_ex210825.log"), &"--sigma", &f.path("rules"), &"--format", &"jsonl"]);
    let s = summary(&out);
    assert_eq!(s["detections"], 2, "{s}");
    assert!(s["warnings"].to_string().contains("read with IIS's default W3C fields"), "{s}");
    // Detections without a time are counted out of the timeline.
    std::fs::write(f.path("untimed.json"), "{\"Channel\":\"Security\",\"EventID\":4688,\"CommandLine\":\"whoami /all\"}\n").unwrap();
    let timeline = f.path("t.jsonl");
    let out = run(&[
        &"hunt",
        &"--no-builtin-intel",
        &f.path("untimed.json"),
        &"--sigma",
        &f.path("win-rules"),
        &"--timeline",
        &timeline,
        &"--format",
        &"jsonl",
    ]);
    let s = summary(&out);
    assert_eq!(s["detections"], 1);
    assert!(s["warnings"].to_string().contains("t.jsonl: 1 detection without a time left out"), "{s}");
}

/// A hunt whose detections pass `--detection-memory` spills them to temporary files and
/// writes exactly what a hunt that held them in memory writes: every format, the timeline
/// and the case file; only the summary says they were spilled.
#[test]
fn spilled_detections_are_written_as_held_ones() {
    let f = Fixture::new();
    let mut log = String::from(IIS_LOG.trim_end_matches("2021-08-24 02:15:00 10.0.0.5 GET /bad line\r\n"));
    for i in 0..4000 {
        // Times out of order across the file, so the merge of spilled runs has work to do.
        let (m, s) = ((i * 7919) % 3600 / 60, (i * 7919) % 60);
        log.push_str(&format!(
            "2021-08-24 03:{m:02}:{s:02} 10.0.0.5 GET /owa/{i} - 443 - 10.1.{}.{} Mozilla/5.0 - 200 0 0 12\r\n",
            i % 7,
            i % 250
        ));
    }
    std::fs::write(f.path("busy.log"), log).unwrap();
    let hunt = |format: &str, memory: &str, tag: &str| -> (String, String, serde_json::Value) {
        let (out, timeline, case) = (f.path(&format!("out-{tag}")), f.path(&format!("tl-{tag}.jsonl")), f.path(&format!("{tag}.case")));
        let o = run(&[
            &"hunt",
            &"--no-builtin-intel",
            &f.path("busy.log"),
            &"--sigma",
            &f.path("rules"),
            &"--format",
            &format,
            &"-o",
            &out,
            &"--threads",
            &"2",
            &"--detection-memory",
            &memory,
            &"--timeline",
            &timeline,
            &"--case",
            &case,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let summary = match format {
            "jsonl" => serde_json::from_str(text.lines().last().unwrap()).unwrap(),
            "json" => serde_json::from_str::<serde_json::Value>(&text).unwrap()["summary"].clone(),
            _ => serde_json::Value::Null,
        };
        // Everything but the summary, which holds times and the spill count.
        let body = match format {
            "jsonl" => text.lines().filter(|l| !l.contains("\"kind\":\"summary\"")).collect::<Vec<_>>().join("\n"),
            "json" => text[..text.find("\"summary\"").unwrap()].to_string(),
            "table" => text[..text.find("Detections: ").unwrap()].to_string(),
            _ => text,
        };
        (body, std::fs::read_to_string(&timeline).unwrap(), summary)
    };
    for format in ["jsonl", "json", "csv", "table"] {
        let (held, held_timeline, held_summary) = hunt(format, "256", &format!("held-{format}"));
        let (spilled, spilled_timeline, spilled_summary) = hunt(format, "0", &format!("spilled-{format}"));
        assert_eq!(held, spilled, "{format}");
        assert_eq!(held_timeline, spilled_timeline, "{format}");
        if format == "jsonl" || format == "json" {
            assert_eq!(held_summary["detections"], 4002);
            assert_eq!(held_summary["detections_spilled"], 0);
            assert_eq!(spilled_summary["detections"], 4002);
            assert!(spilled_summary["detections_spilled"].as_u64().unwrap() > 0, "{spilled_summary}");
        }
    }
    let count = |case: &str| {
        let db = rusqlite::Connection::open(f.path(case)).unwrap();
        db.query_row("SELECT COUNT(*), COUNT(DISTINCT event) FROM findings", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
    };
    assert_eq!(count("held-jsonl.case"), count("spilled-jsonl.case"));
    assert_eq!(count("held-jsonl.case").0, 4002);
}

//! `posture` end to end: on the simulated institution every planted weakness is found (the
//! unpatched server per chain, each password left as the service desk set it, each
//! single-factor and legacy-protocol account, the IIS logging gap) and nothing else is
//! flagged; what the logs cannot show is stated; an AD export confirms and clears; the
//! case file gets the rows; real recordings (`../shared`) run and say what they could not see.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn simulate(out: &Path, seed: &str, scale: &str) -> Value {
    let st = bin().args(["simulate", "electoral-commission", "--seed", seed, "--scale", scale, "--out"]).arg(out).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let truth: Value = serde_json::from_slice(&std::fs::read(out.join("truth.json")).unwrap()).unwrap();
    truth["posture"].clone()
}

fn posture(args: &[&str], paths: &[&Path]) -> (i32, Vec<Value>, String) {
    let mut cmd = bin();
    cmd.arg("posture").args(paths).args(["--format", "jsonl", "-q"]).args(args);
    let out = cmd.output().unwrap();
    let recs = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.code().unwrap_or(-1), recs, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn weaknesses<'a>(recs: &'a [Value], check: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["kind"] == "weakness" && r["check"] == check).collect()
}

/// Compares a run with the truth: every planted weakness found, nothing else.
fn check_against_truth(recs: &[Value], truth: &Value, data: &Path) {
    // Patching: (server, chain) open after the fix.
    let found: BTreeSet<(String, String)> = weaknesses(recs, "patching")
        .iter()
        .map(|w| {
            assert_eq!(w["detail"]["type"], "open_after_fix", "{w}");
            assert_eq!(w["detail"]["still_open"], true);
            assert_eq!(w["severity"], "critical");
            (s(&w["subject"]["name"]), s(&w["detail"]["chain"]))
        })
        .collect();
    let planted: BTreeSet<(String, String)> = truth["patching"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["open_after_fix"].as_array().unwrap().iter().map(|c| (s(&p["server"]), s(c))).collect::<Vec<_>>())
        .collect();
    assert_eq!(found, planted, "patching");

    // Passwords left as the service desk set them.
    let found = weaknesses(recs, "passwords_as_set");
    let planted = truth["passwords_as_set"].as_array().unwrap();
    let names: BTreeSet<String> = found.iter().map(|w| s(&w["subject"]["name"])).collect();
    let want: BTreeSet<String> = planted.iter().map(|p| s(&p["account"])).collect();
    assert_eq!(names, want, "passwords left as set");
    for p in planted {
        let w = found.iter().find(|w| w["subject"]["name"] == p["account"]).unwrap();
        assert_eq!(w["detail"]["set_at"], p["reset_at"], "{w}");
        assert_eq!(w["detail"]["set_by"], p["reset_by"]);
        assert_eq!(w["detail"]["resets"], p["resets"]);
        assert!(w["detail"]["age_days"].as_i64().unwrap() > 30);
        if p["logged_on_after"] == true {
            assert!(w["detail"]["used_after"].is_string(), "planted logon after the reset not seen: {w}");
            assert_eq!(w["severity"], "high");
        }
        // The first evidence is the 4724 itself, in a file that exists.
        let e = &w["evidence"][0];
        assert!(s(&e["what"]).starts_with("4724"), "{e}");
        assert!(Path::new(&s(&e["file"])).is_file());
        assert!(e["position"]["record"].is_u64());
    }
    for c in truth["passwords_changed"].as_array().unwrap() {
        assert!(!names.contains(&s(&c["account"])), "changed by the account, yet flagged: {c}");
    }

    // MFA coverage.
    let mfa = weaknesses(recs, "mfa_coverage");
    let single: BTreeSet<(String, u64)> = mfa
        .iter()
        .filter(|w| w["detail"]["type"] == "single_factor")
        .map(|w| (s(&w["subject"]["name"]), w["detail"]["sign_ins"].as_u64().unwrap()))
        .collect();
    let want: BTreeSet<(String, u64)> =
        truth["single_factor"].as_array().unwrap().iter().map(|p| (s(&p["account"]), p["sign_ins"].as_u64().unwrap())).collect();
    assert_eq!(single, want, "single-factor accounts");
    let legacy: BTreeSet<(String, String, u64)> = mfa
        .iter()
        .filter(|w| w["detail"]["type"] == "legacy_protocol")
        .map(|w| (s(&w["subject"]["name"]), s(&w["detail"]["client_app"]), w["detail"]["sign_ins"].as_u64().unwrap()))
        .collect();
    let want: BTreeSet<(String, String, u64)> = truth["legacy_protocols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (s(&p["account"]), s(&p["client_app"]), p["sign_ins"].as_u64().unwrap()))
        .collect();
    assert_eq!(legacy, want, "legacy protocols");
    assert_eq!(mfa.len(), single.len() + legacy.len());

    // Logging gaps.
    let gaps: BTreeSet<(String, String, String, String)> = weaknesses(recs, "logging_coverage")
        .iter()
        .map(|w| {
            assert_eq!(w["detail"]["type"], "logging_gap");
            (s(&w["subject"]["name"]["host"]), s(&w["subject"]["name"]["source"]), s(&w["detail"]["from"]), s(&w["detail"]["to"]))
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> =
        truth["logging_gaps"].as_array().unwrap().iter().map(|g| (s(&g["host"]), s(&g["source"]), s(&g["from"]), s(&g["to"]))).collect();
    assert_eq!(gaps, want, "logging gaps");

    // Nothing in any other check, and exactly the expected "could not see".
    let total = recs.iter().filter(|r| r["kind"] == "weakness").count();
    assert_eq!(total, weaknesses(recs, "patching").len() + found.len() + mfa.len() + gaps.len());
    let blind: BTreeSet<(String, String)> = recs
        .iter()
        .filter(|r| r["kind"] == "could_not_see")
        .map(|r| {
            assert!(s(&r["fix"]).len() > 20 && s(&r["consequence"]).starts_with("you could not have seen"), "{r}");
            (s(&r["missing"]), s(&r["subject"]["name"]))
        })
        .collect();
    let want: BTreeSet<(String, String)> =
        truth["could_not_see"].as_array().unwrap().iter().map(|b| (s(&b["missing"]), s(&b["host"]))).collect();
    assert_eq!(blind, want, "could not see");
    let summary = recs.last().unwrap();
    assert_eq!(summary["kind"], "posture_summary");
    assert!(summary["events"].as_u64().unwrap() > 1000, "{summary}");
    assert!(s(&summary["as_of"]).starts_with("2022-10-31"), "ages are measured to the end of the logs: {summary}");
    let _ = data;
}

#[test]
fn simulated_weaknesses_are_all_found_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, scale) in [("3", "0.02"), ("11", "0.01")] {
        let data = dir.path().join(format!("sim{seed}"));
        let truth = simulate(&data, seed, scale);
        let case = dir.path().join(format!("case{seed}.sqlite"));
        let (code, recs, err) = posture(&["--case", case.to_str().unwrap()], &[&data]);
        assert_eq!(code, 0, "{err}");
        check_against_truth(&recs, &truth, &data);

        // The case file holds every weakness and every statement, typed.
        let conn = rusqlite::Connection::open(&case).unwrap();
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM posture_checks", [], |r| r.get(0)).unwrap();
        let want = recs.iter().filter(|r| r["kind"] == "weakness" || r["kind"] == "could_not_see").count();
        assert_eq!(rows as usize, want);
        let critical: i64 = conn
            .query_row("SELECT COUNT(*) FROM posture_checks WHERE check_name = 'patching' AND severity = 'critical'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(critical, 2);
        let v: String = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "4");
    }

    // An inventory says what runs now: EXCH01 updated at the end, so both chains were fixed
    // late (medium) instead of still open.
    let data = dir.path().join("sim11");
    let inv = dir.path().join("servers.csv");
    std::fs::write(&inv, "Server,Build\nEXCH01.ec.local,15.1.2176.14\n").unwrap();
    let (code, recs, err) = posture(&["--inventory", inv.to_str().unwrap()], &[&data]);
    assert_eq!(code, 0, "{err}");
    let p = weaknesses(&recs, "patching");
    assert_eq!(p.len(), 2);
    for w in p {
        assert_eq!(w["detail"]["still_open"], false, "{w}");
        assert_eq!(w["detail"]["fixed_build"], "15.1.2176.14");
        assert_eq!(w["severity"], "medium");
        assert!(s(&w["evidence"][1]["file"]).ends_with("servers.csv"));
    }

    // Exit codes and the other formats.
    let (code, _, _) = posture(&["--fail-on", "critical"], &[&data]);
    assert_eq!(code, 2);
    let out = bin().arg("posture").arg(&data).args(["--format", "csv", "-q"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("kind,check,severity,subject_kind,subject,summary,first,last,evidence,fix\n"));
    assert!(text.lines().any(|l| l.starts_with("could_not_see,logging_coverage")));
    let out = bin().arg("posture").arg(&data).arg("-q").output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("What these logs could not show") && table.contains("Script Block Logging"), "{table}");
    let out = bin().args(["posture", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("passwords_as_set") && help.contains("you could not have seen"), "{help}");
}

/// Windows FILETIME for an RFC 3339 time.
fn filetime(t: &str) -> i64 {
    let secs = match chrono_free_parse(t) {
        Some(s) => s,
        None => panic!("bad time {t}"),
    };
    secs * 10_000_000 + 116_444_736_000_000_000
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS…Z` (days from civil, no dependency).
fn chrono_free_parse(t: &str) -> Option<i64> {
    let (y, m, d): (i64, i64, i64) = (t.get(0..4)?.parse().ok()?, t.get(5..7)?.parse().ok()?, t.get(8..10)?.parse().ok()?);
    let (h, mi, s): (i64, i64, i64) = (t.get(11..13)?.parse().ok()?, t.get(14..16)?.parse().ok()?, t.get(17..19)?.parse().ok()?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + mi * 60 + s)
}

#[test]
fn an_ad_export_confirms_clears_and_adds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    let truth = simulate(&data, "5", "0.01");
    let planted = truth["passwords_as_set"].as_array().unwrap();
    let (kept, cleared) = (&planted[0], &planted[1]);
    let ad = dir.path().join("users.csv");
    let mut csv =
        String::from("#TYPE Microsoft.ActiveDirectory.Management.ADUser\nsAMAccountName,pwdLastSet,whenCreated,lastLogonTimestamp\n");
    // Still the service desk's password; changed since (AD knows, the logs do not); an
    // account still on the password it was created with, and used.
    csv.push_str(&format!("{},{},20190301090000.0Z,0\n", s(&kept["account"]), filetime(&s(&kept["reset_at"]))));
    csv.push_str(&format!("{},{},20190301090000.0Z,0\n", s(&cleared["account"]), filetime("2022-10-20T09:00:00Z")));
    csv.push_str(&format!("legacy.clerk,{},20200115101500.0Z,{}\n", filetime("2020-01-15T10:15:00Z"), filetime("2022-09-01T08:00:00Z")));
    std::fs::write(&ad, csv).unwrap();
    let (code, recs, err) = posture(&["--ad", ad.to_str().unwrap()], &[&data]);
    assert_eq!(code, 0, "{err}");
    let pw = weaknesses(&recs, "passwords_as_set");
    let by = |n: &str| pw.iter().find(|w| w["subject"]["name"] == n).copied();
    assert_eq!(by(&s(&kept["account"])).unwrap()["detail"]["basis"], "reset_confirmed_by_ad");
    assert!(by(&s(&cleared["account"])).is_none(), "AD says it was changed since the reset");
    let clerk = by("legacy.clerk").unwrap();
    assert_eq!(clerk["detail"]["basis"], "initial_password_in_ad");
    assert_eq!(clerk["detail"]["used_via"], "ad_last_logon");
    assert_eq!(clerk["evidence"][0]["position"]["line"], 5);
    assert_eq!(pw.len(), planted.len() - 1 + 1);

    // A bad export is an error naming the file and the row.
    std::fs::write(&ad, "sAMAccountName,pwdLastSet\nbob,next tuesday\n").unwrap();
    let (code, _, err) = posture(&["--ad", ad.to_str().unwrap()], &[&data]);
    assert_eq!(code, 1);
    assert!(err.contains("users.csv") && err.contains("row 2"), "{err}");
}

#[test]
fn hostile_and_empty_inputs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.bin"), [0u8, 159, 146, 150, 255, 0, 1]).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"EventID\": 4724, \"Channel\": \"Security\", \"TargetUserName\": ").unwrap();
    std::fs::write(
        dir.path().join("odd.json"),
        "{\"Channel\":\"Security\",\"EventID\":4724,\"TargetUserName\":\"x\",\"SubjectUserName\":\"y\"}\n\
         {\"Channel\":\"Security\",\"EventID\":\"4738\",\"TargetUserName\":\"x\",\"SubjectUserName\":\"x\",\"PasswordLastSet\":\"%%1794\",\"TimeCreated\":\"9999-99-99\"}\n\
         {\"properties\":{\"userPrincipalName\":\"\\u001b[31mred@x\",\"clientAppUsed\":\"IMAP4\",\"status\":{\"errorCode\":0}},\"category\":\"SignInLogs\",\"time\":\"2022-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let out = bin().arg("posture").arg(dir.path()).arg("-q").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("garbage.bin") && table.contains("broken.json"), "unreadable files are named: {table}");
    assert!(!table.contains('\u{1b}'), "evidence strings are escaped");
    assert!(table.contains("no Entra ID") || table.contains("legacy protocol"));
    let out = bin().args(["posture", "/nonexistent/path"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let only = dir.path().join("only");
    std::fs::create_dir(&only).unwrap();
    std::fs::write(only.join("notes.txt"), "hello").unwrap();
    let out = bin().arg("posture").arg(&only).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt"));
}

#[test]
fn other_tools_exports_feed_the_checks() {
    // Winlogbeat/ECS Security events and a Sentinel SigninLogs export, recognised by content.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("winlogbeat.json"),
        r#"{"@timestamp":"2022-03-01T10:00:00.000Z","winlog":{"channel":"Security","event_id":4724,"computer_name":"DC01.corp.local","record_id":501,"provider_name":"Microsoft-Windows-Security-Auditing","event_data":{"SubjectUserName":"helpdesk","SubjectDomainName":"CORP","TargetUserName":"jdoe","TargetDomainName":"CORP"}},"event":{"code":"4724","outcome":"success"},"host":{"name":"DC01.corp.local"}}
{"@timestamp":"2022-03-02T10:00:00.000Z","winlog":{"channel":"Security","event_id":4624,"computer_name":"WS01.corp.local","record_id":77,"provider_name":"Microsoft-Windows-Security-Auditing","event_data":{"TargetUserName":"jdoe","TargetDomainName":"CORP","LogonType":"10","IpAddress":"10.0.0.5"}},"event":{"code":"4624"},"host":{"name":"WS01.corp.local"}}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sentinel.json"),
        r#"[{"TimeGenerated":"2022-03-05T10:00:00Z","Category":"SignInLogs","OperationName":"Sign-in activity","UserPrincipalName":"Jane@corp.example","AppDisplayName":"Office 365 Exchange Online","ClientAppUsed":"Exchange ActiveSync","AuthenticationRequirement":"singleFactorAuthentication","ResultType":"0"},
{"TimeGenerated":"2022-03-05T11:00:00Z","Category":"SignInLogs","OperationName":"Sign-in activity","UserPrincipalName":"ken@corp.example","AppDisplayName":"Microsoft Teams","ClientAppUsed":"Browser","AuthenticationRequirement":"singleFactorAuthentication","ResultType":"0"}]"#,
    )
    .unwrap();
    let (code, recs, err) = posture(&[], &[dir.path()]);
    assert_eq!(code, 0, "{err}");
    let pw = weaknesses(&recs, "passwords_as_set");
    assert_eq!(pw.len(), 1);
    assert_eq!(pw[0]["subject"]["name"], "jdoe");
    assert_eq!(pw[0]["detail"]["used_via"], "interactive");
    assert_eq!(pw[0]["evidence"][0]["position"]["record"], 501);
    let mfa: BTreeSet<(String, String)> =
        weaknesses(&recs, "mfa_coverage").iter().map(|w| (s(&w["subject"]["name"]), s(&w["detail"]["type"]))).collect();
    let want: BTreeSet<(String, String)> = [("jane@corp.example", "legacy_protocol"), ("ken@corp.example", "single_factor")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(mfa, want);
    assert!(!recs.iter().any(|r| r["missing"] == "authentication_requirement"));
}

fn shared() -> PathBuf {
    let p = std::env::var_os("PORTCULLIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    assert!(p.join("evtx/EVTX-ATTACK-SAMPLES").is_dir() && p.join("real").is_dir(), "../shared is missing: {}", p.display());
    p
}

#[test]
#[ignore = "needs ../shared (EVTX-ATTACK-SAMPLES and real recordings); CI runs it with --ignored"]
fn real_recordings_run_and_say_what_they_could_not_see() {
    let shared = shared();
    for path in [shared.join("evtx/EVTX-ATTACK-SAMPLES"), shared.join("real")] {
        let (code, recs, err) = posture(&[], &[&path]);
        assert_eq!(code, 0, "{}: {err}", path.display());
        let summary = recs.last().unwrap();
        assert_eq!(summary["kind"], "posture_summary");
        assert!(summary["events"].as_u64().unwrap() > 1000, "{summary}");
        let blind: Vec<String> = recs.iter().filter(|r| r["kind"] == "could_not_see").map(|r| s(&r["missing"])).collect();
        assert!(!blind.is_empty(), "real collections always miss something");
        let coverage = recs.iter().filter(|r| r["kind"] == "coverage").count();
        assert!(coverage > 0);
        println!(
            "{}: {} events, {} weaknesses {:?}, {} sources, could not see: {blind:?}",
            path.display(),
            summary["events"],
            summary["weaknesses"],
            summary["by_check"],
            coverage
        );
        for w in recs.iter().filter(|r| r["kind"] == "weakness") {
            println!("  {} {}", w["severity"], w["sentence"]);
        }
    }
}

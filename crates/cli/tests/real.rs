//! On recordings of real attacks nobody on the project wrote (`../shared/real`,
//! `../shared/evtx`): the ProxyLogon recording read straight from its ZIP becomes one
//! incident on the Exchange host in true UTC, with or without every SigmaHQ rule, and each
//! pack rule fires on the public recording of what it detects.
//!
//! These need `../shared` beside the repository: they are ignored by default and CI runs
//! them with `--ignored` (see `.ci/run`); run locally with
//! `cargo test --release -p portcullis-cli --test real -- --ignored`.

use std::path::PathBuf;
use std::process::Command;

fn shared() -> PathBuf {
    let p = std::env::var_os("PORTCULLIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    assert!(p.join("real/otrf/proxylogon_ssrf_rce_poc.zip").is_file(), "../shared is missing: {}", p.display());
    p
}

fn hunt(args: &[&std::ffi::OsStr]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("hunt")
        .args(args)
        .args(["--format", "jsonl", "--no-builtin-intel", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn incidents(recs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    recs.iter().filter(|r| r["kind"] == "incident").collect()
}

/// The attack ran from 06:40:10 to 06:40:16 UTC (Sysmon UtcTime of the PoC's connections
/// and of `cmd /c whoami`); the collector wrote local time (UTC−5) marked as UTC.
fn in_attack(t: &str) -> bool {
    ("2021-03-14T06:40:10".."2021-03-14T06:40:17").contains(&&t[..19])
}

#[test]
#[ignore = "needs ../shared (real recordings); CI runs it with --ignored"]
fn proxylogon_zip_is_one_incident_on_the_exchange_host_in_true_utc() {
    let zip = shared().join("real/otrf/proxylogon_ssrf_rce_poc.zip");
    let recs = hunt(&[zip.as_os_str()]);
    let inc = incidents(&recs);
    assert_eq!(inc.len(), 1, "{inc:#?}");
    let i = inc[0];
    assert!(i["entities"].as_array().unwrap().iter().any(|e| e["kind"] == "host" && e["value"] == "mxs01"), "{i}");
    assert!(in_attack(i["first_seen"].as_str().unwrap()), "first evidence inside the attack: {}", i["first_seen"]);
    let oab = recs
        .iter()
        .find(|r| r["kind"] == "detection" && r["rule_title"].as_str().unwrap().contains("Virtual Directory URL Carrying a Script"))
        .expect("the CVE-2021-27065 step is found by the pack");
    assert!(matches!(oab["level"].as_str(), Some("high" | "critical")));
    assert_eq!(oab["host"], "MXS01.azsentinel.local");
    assert!(in_attack(oab["timestamp"].as_str().unwrap()), "true UTC: {}", oab["timestamp"]);
    let summary = recs.last().unwrap();
    assert!(
        summary["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("5 h 00 min behind")),
        "the clock correction is said once: {summary}"
    );

    let sigma = shared().join("sigma");
    let recs = hunt(&[
        zip.as_os_str(),
        "--sigma".as_ref(),
        sigma.join("rules").as_os_str(),
        "--sigma".as_ref(),
        sigma.join("rules-emerging-threats").as_os_str(),
        "--sigma".as_ref(),
        sigma.join("rules-threat-hunting").as_os_str(),
    ]);
    let inc = incidents(&recs);
    assert_eq!(inc.len(), 1, "still one incident with every SigmaHQ rule: {inc:#?}");
    assert!(in_attack(inc[0]["first_seen"].as_str().unwrap()), "not the monitoring script before the attack: {}", inc[0]["first_seen"]);
    assert!(!inc[0]["context"].as_array().unwrap().is_empty(), "what came before is kept as context");
}

#[test]
#[ignore = "needs ../shared (EVTX-ATTACK-SAMPLES); CI runs it with --ignored"]
fn pack_rules_fire_on_their_public_recordings() {
    let samples = shared().join("evtx/EVTX-ATTACK-SAMPLES");
    let cases: &[(&str, &str, &str)] = &[
        ("Privilege Escalation/privexchange_dirkjan.evtx", "(DCSync) Rights Granted", "high"),
        ("Persistence/DACL_DCSync_Right_Powerview_ Add-DomainObjectAcl.evtx", "(DCSync) Rights Granted", "high"),
        ("Credential Access/CA_DCSync_4662.evtx", "(DCSync) Requested by an Account That Is Not a Domain Controller", "high"),
        ("Credential Access/sysmon_10_11_lsass_memdump.evtx", "LSASS Opened with Memory-Dumping Access", "high"),
        ("Credential Access/CA_sysmon_hashdump_cmd_meterpreter.evtx", "LSASS Opened with Memory-Dumping Access", "high"),
        ("AutomatedTestingTools/PanacheSysmon_vs_AtomicRedTeam01.evtx", "ProcDump", "high"),
        ("Command and Control/Tunna_rdp_tunnel_IIS.log", "Tunna Web-Shell Tunnel Opened", "critical"),
        ("Command and Control/tunna_iis_rdp_smb_tunneling_sysmon_3.evtx", "IIS Worker Process Connected to RDP, SMB or SSH", "high"),
    ];
    let mut failures = Vec::new();
    for (file, title, level) in cases {
        let recs = hunt(&[samples.join(file).as_os_str()]);
        let hits = recs
            .iter()
            .filter(|r| r["kind"] == "detection" && r["rule_title"].as_str().unwrap().contains(title) && r["level"] == *level)
            .count();
        if hits == 0 {
            failures.push(format!("{file}: no {level} `{title}`"));
        }
    }
    let tunnel = hunt(&[samples.join("Command and Control/Tunna_rdp_tunnel_IIS.log").as_os_str()]);
    if !tunnel.iter().any(|r| r["kind"] == "correlation" && r["rule_title"].as_str().unwrap().contains("Polled at a Tunnel")) {
        failures.push("Tunna_rdp_tunnel_IIS.log: no tunnel-polling correlation".into());
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

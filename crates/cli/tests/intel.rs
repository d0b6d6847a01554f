//! Intel in and out: indicators from a CSV match in every source; a case exported as STIX
//! and fed back into a fresh hunt gives the same indicator matches; the bundle is
//! structurally valid STIX 2.1 (checked against the OASIS cti-stix2-json-schemas in
//! `../shared/stix2-json-schemas` when present, and against the spec's required
//! properties always).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn ioc_matches(findings: &Path) -> BTreeSet<(String, u64, String, String)> {
    std::fs::read_to_string(findings)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "detection" && r["rule_id"].as_str().unwrap().starts_with("ioc-"))
        .map(|r| {
            let ev = &r["fields"];
            (
                r["path"].as_str().unwrap().to_string(),
                r["record"].as_u64().unwrap(),
                ev["ioc.type"].as_str().unwrap().to_string(),
                ev["ioc.value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hunt(data: &Path, iocs: &Path, case: &Path, out: &Path) {
    let st = bin()
        .arg("hunt")
        .arg(data)
        .args(["--no-builtin-intel", "--iocs"])
        .arg(iocs)
        .args(["--format", "jsonl", "-q", "--case"])
        .arg(case)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
}

#[test]
fn stix_round_trip_gives_the_same_matches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    let st = bin().args(["simulate", "electoral-commission", "--scale", "0.02", "--seed", "5", "--out"]).arg(&data).output().unwrap();
    assert!(st.status.success());
    std::fs::remove_file(data.join("truth.json")).unwrap();
    // Defanged and mixed: an attacker IP, a CIDR around another, the download URL, a domain
    // seen only inside an SSRF query string, a hash nobody has, and two broken lines.
    let csv = dir.path().join("partner.csv");
    std::fs::write(
        &csv,
        "type,value,context\nipv4,104.244.79[.]6,partner: Exchange actor\ncidr,94.140.8.0/24,partner: exfil network\nurl,hxxp://137.184.67[.]33:8080/themes.aspx,partner: stager\n\
domain,evil[.]corp,partner: SSRF marker\nsha256,0000000000000000000000000000000000000000000000000000000000000000,nothing\nipv4,300.1.1.1,broken\nfoo,bar,unknown type\n",
    )
    .unwrap();
    let (case1, out1) = (dir.path().join("c1.sqlite"), dir.path().join("f1.jsonl"));
    hunt(&data, &csv, &case1, &out1);
    let first = ioc_matches(&out1);
    let kinds: BTreeSet<&str> = first.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(kinds, ["cidr", "domain", "ipv4", "url"].into_iter().collect(), "every indicator kind planted matched: {first:?}");
    let summary: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&out1).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(summary["ioc_problem_count"], 2, "{summary}");
    assert!(summary["ioc_problems"][0].as_str().unwrap().contains("partner.csv:"), "positions given: {summary}");

    let bundle = dir.path().join("case.stix.json");
    let st = bin().args(["export", "stix"]).arg(&case1).arg("-o").arg(&bundle).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    check_bundle(&b);
    let types: BTreeSet<&str> = b["objects"].as_array().unwrap().iter().map(|o| o["type"].as_str().unwrap()).collect();
    for t in ["identity", "indicator", "sighting", "observed-data", "incident"] {
        assert!(types.contains(t), "bundle has {t}: {types:?}");
    }

    let (case2, out2) = (dir.path().join("c2.sqlite"), dir.path().join("f2.jsonl"));
    hunt(&data, &bundle, &case2, &out2);
    assert_eq!(ioc_matches(&out2), first, "the exported bundle finds exactly what the partner's list found");

    for f in ["misp", "csv"] {
        let st = bin().args(["export", f]).arg(&case1).output().unwrap();
        assert!(st.status.success());
        let path = dir.path().join(format!("case.{f}"));
        std::fs::write(&path, &st.stdout).unwrap();
        let (c, o) = (dir.path().join(format!("c-{f}.sqlite")), dir.path().join(format!("f-{f}.jsonl")));
        hunt(&data, &path, &c, &o);
        assert_eq!(ioc_matches(&o), first, "{f} export round trip");
    }
}

/// Required properties from the STIX 2.1 specification (common properties of SDOs and
/// SROs, and each type's own), identifiers and timestamps.
fn check_bundle(b: &serde_json::Value) {
    assert_eq!(b["type"], "bundle");
    let id_re = regex::Regex::new(
        r"^[a-z][a-z0-9-]+[a-z0-9]--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$",
    )
    .unwrap();
    let ts_re = regex::Regex::new(
        r"^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?Z$",
    )
    .unwrap();
    let millis_re = regex::Regex::new(r"T\d{2}:\d{2}:\d{2}\.\d{3,}Z$").unwrap();
    assert!(id_re.is_match(b["id"].as_str().unwrap()));
    let objects = b["objects"].as_array().unwrap();
    let ids: BTreeSet<&str> = objects.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), objects.len(), "ids are unique");
    let schemas = shared_schemas();
    for o in objects {
        let t = o["type"].as_str().unwrap();
        let id = o["id"].as_str().unwrap();
        assert!(id_re.is_match(id) && id.starts_with(&format!("{t}--")), "{id}");
        let sco = matches!(t, "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" | "file");
        let mut required: Vec<String> = if sco {
            vec!["type".into(), "id".into()]
        } else {
            ["type", "spec_version", "id", "created", "modified"].map(String::from).to_vec()
        };
        required.extend(
            match t {
                "indicator" => &["pattern", "pattern_type", "valid_from"][..],
                "sighting" => &["sighting_of_ref"][..],
                "observed-data" => &["first_observed", "last_observed", "number_observed"][..],
                "relationship" => &["relationship_type", "source_ref", "target_ref"][..],
                "identity" | "incident" | "campaign" => &["name"][..],
                "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" => &["value"][..],
                _ => &[][..],
            }
            .iter()
            .map(|s| s.to_string()),
        );
        if let Some(dir) = &schemas {
            required.extend(schema_required(dir, t));
        }
        for r in &required {
            assert!(o.get(r).is_some(), "{t} {id} lacks required {r}");
        }
        for k in ["created", "modified"] {
            if let Some(v) = o.get(k) {
                assert!(ts_re.is_match(v.as_str().unwrap()) && millis_re.is_match(v.as_str().unwrap()), "{k} {v}");
            }
        }
        for k in ["valid_from", "first_seen", "last_seen", "first_observed", "last_observed"] {
            if let Some(v) = o.get(k) {
                assert!(ts_re.is_match(v.as_str().unwrap()), "{k} {v}");
            }
        }
        for k in ["sighting_of_ref", "source_ref", "target_ref", "created_by_ref"] {
            if let Some(v) = o.get(k) {
                assert!(ids.contains(v.as_str().unwrap()), "{t} {k} points inside the bundle");
            }
        }
        for k in ["object_refs", "observed_data_refs", "where_sighted_refs"] {
            for v in o.get(k).and_then(|v| v.as_array()).into_iter().flatten() {
                assert!(ids.contains(v.as_str().unwrap()), "{t} {k} points inside the bundle");
            }
        }
    }
}

fn shared_schemas() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/stix2-json-schemas/schemas");
    if d.is_dir() {
        Some(d)
    } else {
        assert!(
            std::env::var("PORTCULLIS_REQUIRE_SHARED").as_deref() != Ok("1"),
            "../shared is required (PORTCULLIS_REQUIRE_SHARED=1) but missing"
        );
        eprintln!("SKIPPED (part): ../shared/stix2-json-schemas not found; checked against the spec's required properties only");
        None
    }
}

/// The `required` lists of a type's schema (top level and `allOf` parts, following `$ref`s
/// into the common schemas), from OASIS cti-stix2-json-schemas.
fn schema_required(dir: &Path, t: &str) -> Vec<String> {
    let file = ["sdos", "sros", "observables"].iter().map(|s| dir.join(s).join(format!("{t}.json"))).find(|p| p.is_file());
    let Some(file) = file else { return Vec::new() };
    let mut out = Vec::new();
    collect_required(&file, &mut out, 0);
    out
}

fn collect_required(file: &Path, out: &mut Vec<String>, depth: usize) {
    if depth > 4 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else { return };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut parts = vec![v.clone()];
    parts.extend(v["allOf"].as_array().cloned().unwrap_or_default());
    for p in parts {
        out.extend(p["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(String::from)));
        if let Some(r) = p["$ref"].as_str() {
            collect_required(&file.parent().unwrap().join(r), out, depth + 1);
        }
    }
}

//! Indicator files in every supported shape, defanged values, and broken input reported
//! with its position.

use std::path::Path;

use portcullis_intel::{IocSet, Kind, import};

fn kinds(im: &import::Imported) -> Vec<(Kind, String)> {
    let mut v: Vec<(Kind, String)> = im.indicators.iter().map(|i| (i.kind, i.value.clone())).collect();
    v.sort();
    v
}

#[test]
fn stix_bundle_with_context() {
    let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[
      {"type":"identity","id":"identity--a","name":"Partner CERT"},
      {"type":"intrusion-set","id":"intrusion-set--x","name":"APT31"},
      {"type":"campaign","id":"campaign--c","name":"Beacons 2021"},
      {"type":"indicator","id":"indicator--1","created_by_ref":"identity--a","pattern_type":"stix","valid_from":"2021-01-01T00:00:00Z",
       "pattern":"[ipv4-addr:value = '198.51.100.7'] OR [domain-name:value = 'nropnews[.]com']"},
      {"type":"indicator","id":"indicator--2","pattern_type":"stix","pattern":"[ipv4-addr:value ISSUBSET '203.0.113.0/24'] AND [url:value = 'hxxp://x.example/a']"},
      {"type":"indicator","id":"indicator--3","pattern_type":"stix","pattern":"[file:hashes.'SHA-256' = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'] OR [email-addr:value = 'd.wright@nropnews.com'] OR [ipv6-addr:value = '2001:db8::/48']"},
      {"type":"indicator","id":"indicator--4","pattern_type":"sigma","pattern":"title: x"},
      {"type":"indicator","id":"indicator--5","pattern_type":"stix","pattern":"[process:name = 'evil.exe']"},
      {"type":"indicator","id":"indicator--6","pattern_type":"stix","pattern":"[ipv4-addr:value = '999.1.1.1']"},
      {"type":"ipv4-addr","id":"ipv4-addr--o","value":"192.0.2.55"},
      {"type":"relationship","id":"relationship--r","relationship_type":"indicates","source_ref":"indicator--1","target_ref":"intrusion-set--x"},
      {"type":"relationship","id":"relationship--s","relationship_type":"indicates","source_ref":"indicator--1","target_ref":"campaign--c"}
    ]}"#;
    let im = import::parse("partner.json", bundle.as_bytes());
    assert_eq!(im.format, "stix");
    let got = kinds(&im);
    assert!(got.contains(&(Kind::Ipv4, "198.51.100.7".into())));
    assert!(got.contains(&(Kind::Domain, "nropnews.com".into())), "defanged inside a pattern");
    assert!(got.contains(&(Kind::Cidr, "203.0.113.0/24".into())));
    assert!(got.contains(&(Kind::Url, "http://x.example/a".into())));
    assert!(got.contains(&(Kind::Sha256, "a".repeat(64))));
    assert!(got.contains(&(Kind::Email, "d.wright@nropnews.com".into())));
    assert!(got.contains(&(Kind::Cidr, "2001:db8::/48".into())));
    assert!(got.contains(&(Kind::Ipv4, "192.0.2.55".into())), "observables count as indicators");
    let first = im.indicators.iter().find(|i| i.value == "198.51.100.7").unwrap();
    assert_eq!(first.context.source, "Partner CERT");
    assert_eq!(first.context.actors, vec!["APT31"]);
    assert_eq!(first.context.campaigns, vec!["Beacons 2021"]);
    assert_eq!(first.stix_id.as_deref(), Some("indicator--1"));
    // Problems carry the object's position and id.
    let problems: Vec<String> = im.problems.iter().map(|p| format!("{} {}", p.position, p.reason)).collect();
    assert!(problems.iter().any(|p| p.contains("objects[6] (indicator--4)") && p.contains("sigma")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("objects[7] (indicator--5)")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("objects[8] (indicator--6)") && p.contains("999.1.1.1")), "{problems:?}");
    // Matching: CIDR v4/v6 and subdomains.
    let set = IocSet::new(im.indicators);
    let mut hits = Vec::new();
    for (v, n) in [
        ("203.0.113.200", 1),
        ("2001:db8:0:1::9", 1),
        ("2001:db9::1", 0),
        ("https://t.nropnews.com/o/x", 1),
        ("nropnews.com.evil.example", 0),
    ] {
        hits.clear();
        set.scan(v, &mut hits);
        assert_eq!(hits.len(), n, "{v}");
    }
}

#[test]
fn malformed_bundles_are_reported_not_fatal() {
    for (text, want) in [
        (r#"{"type":"bundle","id":"bundle--1","objects":[{"type":"indicator""#, "ends early (truncated?)"),
        (r#"{"type":"bundle","id":"bundle--1","objects":[{"type":"indicator",}]}"#, "invalid JSON"),
        // The last object before the end is still read.
        (r#"{"type":"bundle","id":"bundle--1","objects":[{"type":"indicator"}"#, "without a pattern"),
        (r#"{"type":"bundle","id":"bundle--1"}"#, "without an objects list"),
        (r#"{"type":"bundle","objects":[{"id":"x"}, {"type":"indicator","id":"indicator--9"}]}"#, "without a pattern"),
        (r#"{"hello":"world"}"#, "neither a STIX bundle nor a MISP event"),
        // Values of the wrong JSON type are taken as missing, never a reason to drop the bundle.
        (r#"{"type":"bundle","objects":5}"#, "without an objects list"),
        (r#"{"type":"bundle","objects":[7, "x"]}"#, "not a JSON object"),
        (r#"{"type":"bundle","objects":[{"type":"indicator","id":"indicator--1","pattern":5}]}"#, "without a pattern"),
        (r#"{"type":"bundle","objects":[{"type":["indicator"],"id":"indicator--1"}]}"#, "without a type"),
    ] {
        let im = import::parse("bad.json", text.as_bytes());
        assert!(im.indicators.is_empty());
        assert!(im.problems.iter().any(|p| p.reason.contains(want)), "{text}: {:?}", im.problems);
        if want == "invalid JSON" {
            // The element by its index in `objects`, or the file by line and column.
            let at = &im.problems[0].position;
            assert!(at == "bad.json: objects[0]" || at.starts_with("bad.json:1:"), "where: {:?}", im.problems);
        }
    }
}

#[test]
fn misp_event_with_galaxy_and_objects() {
    let misp = r#"{"Event":{"info":"Tracking-link mail","Orgc":{"name":"Parliament SOC"},
      "Galaxy":[{"type":"threat-actor","GalaxyCluster":[{"value":"APT31"}]}],
      "Attribute":[
        {"type":"ip-dst","value":"198.51.100.7","to_ids":true},
        {"type":"domain|ip","value":"nropnews.com|198.51.100.8","to_ids":true},
        {"type":"url","value":"hxxps://track.nropnews[.]com/o/","to_ids":true},
        {"type":"comment","value":"not an indicator"},
        {"type":"md5","value":"xyz","to_ids":true}],
      "Object":[{"Attribute":[{"type":"sha1","value":"da39a3ee5e6b4b0d3255bfef95601890afd80709","to_ids":true}]}]}}"#;
    let im = import::parse("event.json", misp.as_bytes());
    assert_eq!(im.format, "misp");
    let got = kinds(&im);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.contains(&(Kind::Url, "https://track.nropnews.com/o/".into())));
    assert!(got.contains(&(Kind::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709".into())));
    assert_eq!(im.indicators[0].context.actors, vec!["APT31"]);
    assert_eq!(im.indicators[0].context.source, "Parliament SOC");
    assert_eq!(im.problems.len(), 1);
    assert!(im.problems[0].position.contains("Attribute[4]"), "{:?}", im.problems);
}

#[test]
fn csv_and_plain_lists() {
    let plain = "# partner list\n47.242.39[.]92\nhxxp://bad[.]example/x\nevil(.)example\n10.0.0.0/8\nnonsense value\n";
    let im = import::parse("list.txt", plain.as_bytes());
    assert_eq!(im.indicators.len(), 4);
    assert_eq!(im.problems.len(), 1);
    assert_eq!(im.problems[0].position, "list.txt:6");
    let csv = "indicator,type,comment\n203.0.113.9,ip-dst,stager\nmd5hash,md5,broken\n";
    let im = import::parse("feed.csv", csv.as_bytes());
    assert_eq!(im.indicators.len(), 1);
    assert_eq!(im.indicators[0].context.description, "stager");
    assert_eq!(im.problems[0].position, "feed.csv:3");
}

#[test]
fn oasis_examples_load_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/stix2-json-schemas/examples");
    if !dir.is_dir() {
        assert!(
            std::env::var("PORTCULLIS_REQUIRE_SHARED").as_deref() != Ok("1"),
            "../shared is required (PORTCULLIS_REQUIRE_SHARED=1) but missing"
        );
        eprintln!("SKIPPED: ../shared/stix2-json-schemas not found");
        return;
    }
    let mut total = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            let im = import::read(&e.path()).unwrap();
            total += im.indicators.len();
        }
    }
    // indicator-for-c2-ip-address.json and friends carry IPv4 and URL indicators.
    assert!(total > 0);
    let c2 = import::read(&dir.join("indicator-for-c2-ip-address.json")).unwrap();
    assert!(c2.indicators.iter().any(|i| i.kind == Kind::Ipv4), "{:?}", c2.problems);
}

#[test]
fn more_indicators_than_a_run_holds_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ips = |n: usize, offset: usize| -> String {
        (offset..offset + n).map(|i| format!("10.{}.{}.{}\n", (i >> 16) & 255, (i >> 8) & 255, i & 255)).collect()
    };
    let half = portcullis_intel::MAX_INDICATORS / 2;
    std::fs::write(dir.join("a.txt"), ips(half, 0)).unwrap();
    std::fs::write(dir.join("b.txt"), ips(half + 1, half)).unwrap();
    // At the limit: loads.
    let ok = portcullis_intel::load(&[dir.join("a.txt")], false).unwrap();
    assert_eq!(ok.files[0].2, half);
    // Past it: an error naming the file that crossed it, the count and the limit.
    let err = portcullis_intel::load(&[dir.join("a.txt"), dir.join("b.txt")], false).err().expect("over the limit");
    assert!(err.contains("b.txt") && err.contains("over the limit of 1000000 indicators per run"), "{err}");
    assert!(err.contains(&format!("{} with those loaded before it", 2 * half + 1)), "{err}");
}

#[test]
fn a_bundle_file_is_streamed_with_its_context() {
    // Read from a file (streamed), relationships after the indicators, one shared context.
    let mut objects = vec![r#"{"type":"identity","id":"identity--p","name":"Partner CERT"}"#.to_string()];
    for i in 0..1000 {
        objects.push(format!(
            r#"{{"type":"indicator","id":"indicator--{i}","created_by_ref":"identity--p","pattern":"[ipv4-addr:value = '198.51.{}.{}']","pattern_type":"stix","extra":{{"deep":[1,2,{{"x":null}}]}}}}"#,
            i / 256,
            i % 256
        ));
    }
    for i in 0..1000 {
        objects.push(format!(r#"{{"type":"relationship","id":"relationship--{i}","relationship_type":"indicates","source_ref":"indicator--{i}","target_ref":"intrusion-set--a"}}"#));
    }
    objects.push(r#"{"type":"intrusion-set","id":"intrusion-set--a","name":"APT31"}"#.into());
    let text = format!("\u{feff}  {{\"type\":\"bundle\",\"id\":\"bundle--1\",\"objects\":[{}]}}", objects.join(",\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.json");
    std::fs::write(&path, text.as_bytes()).unwrap();
    let im = import::read(&path).unwrap();
    assert_eq!(im.format, "stix");
    assert!(im.problems.is_empty(), "{:?}", im.problems);
    assert_eq!(im.indicators.len(), 1000);
    let first = &im.indicators[0];
    assert_eq!(first.value, "198.51.0.0");
    assert_eq!(first.context.actors, ["APT31"]);
    assert_eq!(first.context.source, "Partner CERT");
    assert!(im.indicators.iter().all(|i| std::sync::Arc::ptr_eq(&i.context, &first.context)), "one shared context");
    assert_eq!(import::parse("feed.json", text.as_bytes()).indicators.len(), 1000, "bytes and file read alike");
}

//! The hunt's findings, never all held, give the same incidents and the same most severe
//! findings (with their sentences) whether they go through the case file or not.

use std::path::PathBuf;
use std::time::Instant;

use portcullis_pipeline::{HuntSettings, Quiet, RuleSettings};

fn settings(dir: &std::path::Path) -> HuntSettings {
    let mut log = String::from(
        "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status\n",
    );
    for n in 0..40 {
        let method = if n % 3 == 0 { "POST" } else { "GET" };
        log.push_str(&format!(
            "2021-08-24 02:{:02}:{:02} 10.0.0.5 {method} /owa/auth/x{}.aspx - 443 - 203.0.113.{} Mozilla/5.0 200\n",
            n / 2,
            n % 60,
            n % 4,
            n % 3
        ));
    }
    std::fs::write(dir.join("u_ex210824.log"), log).unwrap();
    std::fs::write(
        dir.join("rules.yml"),
        "title: Post to OWA\nid: 11111111-1111-4111-8111-111111111111\nlevel: high\ntags: [attack.initial-access, attack.t1190]\n\
         logsource: {category: webserver}\ndetection: {sel: {cs-method: POST}, condition: sel}\n---\n\
         title: Any OWA page\nid: 22222222-2222-4222-8222-222222222222\nlevel: medium\ntags: [attack.persistence]\n\
         logsource: {category: webserver}\ndetection: {sel: {cs-uri-stem|endswith: '.aspx'}, condition: sel}\n",
    )
    .unwrap();
    HuntSettings {
        paths: vec![dir.join("u_ex210824.log")],
        rules: RuleSettings { sigma: vec![dir.join("rules.yml")], builtin: false, ..Default::default() },
        builtin_intel: false,
        ..Default::default()
    }
}

#[test]
fn incidents_and_top_findings_are_the_same_with_and_without_a_case() {
    let dir = tempfile::tempdir().unwrap();
    let plain = settings(dir.path());
    let held = portcullis_pipeline::hunt(&plain, &Quiet, Instant::now()).unwrap();
    let case: PathBuf = dir.path().join("case.sqlite");
    let spilled = HuntSettings { case: Some(case), detection_memory: 0, ..plain.clone() };
    let recorded = portcullis_pipeline::hunt(&spilled, &Quiet, Instant::now()).unwrap();
    assert!(recorded.case_error.is_none());
    assert!(!held.incidents.is_empty());
    assert_eq!(format!("{:?}", held.incidents), format!("{:?}", recorded.incidents));
    let top = |h: &portcullis_pipeline::HuntOutcome| -> Vec<(String, String)> {
        h.top_findings.findings.iter().map(|f| (f.id.clone(), f.sentence.clone())).collect()
    };
    assert_eq!(held.top_findings.total, 14, "the POSTs are high");
    assert_eq!(top(&held).len(), portcullis_pipeline::TOP_FINDINGS);
    assert_eq!(top(&held), top(&recorded));
    assert!(top(&held).iter().all(|(_, s)| s.contains("Post to OWA")), "{:?}", top(&held));
    assert!(held.incidents[0].stages.iter().all(|s| !s.sentence.is_empty()));
}

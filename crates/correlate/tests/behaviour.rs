//! Behaviour of every correlation type: window boundaries, ordering, group-by on a
//! missing field, aliases, and a correlation of a correlation.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_correlate::{
    CorrelationFinding, CorrelationSet, Correlator, Sorter, correlate_shares, inputs_for, parts_for, place_of, share_of, shares_for,
};
use portcullis_sigma::{Placeholders, RuleSet};

const S: i64 = 1_000_000;

const BASE: &str = "
title: failed login
id: r-failed
name: failed_login
logsource: {product: windows, service: security}
detection: {sel: {EventID: 4625}, condition: sel}
---
title: success login
id: r-success
name: successful_login
logsource: {product: windows, service: security}
detection: {sel: {EventID: 4624}, condition: sel}
---
title: recon
id: r-recon
name: recon
logsource: {product: windows, category: process_creation}
detection: {sel: {Image|endswith: '\\whoami.exe'}, condition: sel}
";

struct Harness {
    set: Arc<CorrelationSet>,
    rules: Vec<String>,
    events: Vec<(i64, usize, HashMap<String, String>)>,
}

impl Harness {
    fn new(correlations: &str) -> Harness {
        let mut rs = RuleSet::default();
        rs.add_text(&format!("{BASE}\n---\n{correlations}"), "test.yml", &Placeholders::new());
        assert!(rs.errors.is_empty(), "{:?}", rs.errors);
        let (set, errors) = CorrelationSet::compile(&rs.correlations, &rs.rules);
        assert!(errors.is_empty(), "{errors:?}");
        Harness { set: Arc::new(set), rules: rs.rules.iter().map(|r| r.id.clone().unwrap()).collect(), events: Vec::new() }
    }

    fn event(&mut self, secs: f64, rule: &str, fields: &[(&str, &str)]) -> &mut Self {
        let r = self.rules.iter().position(|x| x == rule).unwrap();
        let map = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.events.push(((secs * S as f64) as i64, r, map));
        self
    }

    /// Feeds the events out of order through the sorter, as a hunt over many files would.
    fn run(&self) -> Vec<CorrelationFinding> {
        let mut sorters = vec![Sorter::new(1 << 16), Sorter::new(1 << 16)];
        for (i, (ts, r, fields)) in self.events.iter().enumerate().rev() {
            for inp in inputs_for(&self.set, *r, *ts, i as u128, "", |f| fields.get(f).cloned()) {
                sorters[i % 2].push(inp).unwrap();
            }
        }
        let mut c = Correlator::new(self.set.clone());
        for inp in Sorter::merge(sorters).unwrap() {
            c.push(inp.unwrap());
        }
        c.finish();
        // The same inputs in three shares, correlated side by side, give the same findings.
        let mut one: Vec<String> = c.findings.iter().map(|f| format!("{f:?}")).collect();
        one.sort();
        let mut shared: Vec<String> = self.run_in_shares(3).iter().map(|f| format!("{f:?}")).collect();
        shared.sort();
        assert_eq!(one, shared);
        c.findings
    }

    fn run_in_shares(&self, threads: usize) -> Vec<CorrelationFinding> {
        let n = shares_for(&self.set, threads);
        // In parts, as a hunt keeps them: each part's groups are correlated on their own.
        let parts = parts_for(&self.set);
        let mut shares: Vec<Vec<Sorter>> =
            (0..n).map(|_| vec![Sorter::with_parts(1 << 16, parts), Sorter::with_parts(1 << 16, parts)]).collect();
        for (i, (ts, r, fields)) in self.events.iter().enumerate().rev() {
            for inp in inputs_for(&self.set, *r, *ts, i as u128, "", |f| fields.get(f).cloned()) {
                let (share, part) = place_of(&inp, n, parts);
                assert_eq!(share, share_of(&inp, n));
                shares[share][i % 2].push_to(part, inp).unwrap();
            }
        }
        let out = correlate_shares(&self.set, shares);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.findings
    }
}

#[test]
fn event_count_and_its_timespan_boundary() {
    let corr = "title: burst\nid: c1\ncorrelation: {type: event_count, rules: [failed_login], group-by: [User], timespan: 1m, condition: {gte: 10}}\nlevel: high\n";
    // Ten prompts across exactly 60 s: inside the window (inclusive).
    let mut h = Harness::new(corr);
    for i in 0..10 {
        h.event(i as f64 * 60.0 / 9.0, "r-failed", &[("User", "alice")]);
    }
    let f = h.run();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].value, 10.0);
    assert_eq!(f[0].group, vec![("User".to_string(), "alice".to_string())]);
    assert_eq!(f[0].evidence.len(), 10);
    // Ten across 60.01 s: the first has left the window when the tenth arrives.
    let mut h = Harness::new(corr);
    for i in 0..10 {
        h.event(i as f64 * 60.01 / 9.0, "r-failed", &[("User", "alice")]);
    }
    assert!(h.run().is_empty());
    // Ten across two users: no group reaches ten.
    let mut h = Harness::new(corr);
    for i in 0..10 {
        h.event(i as f64, "r-failed", &[("User", if i % 2 == 0 { "a" } else { "b" })]);
    }
    assert!(h.run().is_empty());
}

#[test]
fn group_by_on_a_missing_field_does_not_count() {
    let corr = "title: burst\nid: c1\ncorrelation: {type: event_count, rules: [failed_login], group-by: [User], timespan: 1m, condition: {gte: 3}}\n";
    let mut h = Harness::new(corr);
    h.event(1.0, "r-failed", &[]).event(2.0, "r-failed", &[("Other", "x")]).event(3.0, "r-failed", &[("User", "")]);
    h.event(4.0, "r-failed", &[("User", "bob")]);
    assert!(h.run().is_empty(), "events without a User are not grouped together");
}

#[test]
fn event_count_window_conditions_evaluate_at_close() {
    let corr = "title: quiet\nid: c1\ncorrelation: {type: event_count, rules: [failed_login], group-by: [User], timespan: 10s, condition: {gt: 1, lte: 3}}\n";
    let mut h = Harness::new(corr);
    for t in [0.0, 1.0] {
        h.event(t, "r-failed", &[("User", "a")]);
    }
    for t in [0.0, 1.0, 2.0, 3.0, 4.0] {
        h.event(t, "r-failed", &[("User", "b")]);
    }
    h.event(100.0, "r-failed", &[("User", "c")]);
    let f = h.run();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].group[0].1, "a");
}

#[test]
fn value_count_counts_distinct_values() {
    let corr = "title: spray\nid: c1\ncorrelation: {type: value_count, rules: [failed_login], group-by: [IpAddress], timespan: 1h, condition: {field: TargetUserName, gte: 3}}\n";
    let mut h = Harness::new(corr);
    for (t, u) in [(0.0, "a"), (10.0, "a"), (20.0, "b"), (30.0, "b")] {
        h.event(t, "r-failed", &[("IpAddress", "10.0.0.9"), ("TargetUserName", u)]);
    }
    assert!(h.run().is_empty(), "two distinct users");
    h.event(3000.0, "r-failed", &[("IpAddress", "10.0.0.9"), ("TargetUserName", "c")]);
    let f = h.run();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].value, 3.0);
    // The same three users spread over more than an hour do not count together.
    let mut h = Harness::new(corr);
    for (t, u) in [(0.0, "a"), (1800.0, "b"), (3601.0, "c")] {
        h.event(t, "r-failed", &[("IpAddress", "10.0.0.9"), ("TargetUserName", u)]);
    }
    assert!(h.run().is_empty());
}

#[test]
fn temporal_needs_every_rule_in_the_window_in_any_order() {
    let corr =
        "title: t\nid: c1\ncorrelation: {type: temporal, rules: [successful_login, failed_login, recon], group-by: [User], timespan: 5m}\n";
    let mut h = Harness::new(corr);
    h.event(0.0, "r-recon", &[("User", "u")]).event(60.0, "r-success", &[("User", "u")]).event(120.0, "r-failed", &[("User", "u")]);
    assert_eq!(h.run().len(), 1);
    let mut h = Harness::new(corr);
    h.event(0.0, "r-recon", &[("User", "u")]).event(60.0, "r-success", &[("User", "u")]).event(400.0, "r-failed", &[("User", "u")]);
    assert!(h.run().is_empty(), "recon fell out of the 5 minutes");
}

#[test]
fn temporal_ordered_respects_the_order() {
    let corr = "title: t\nid: c1\ncorrelation: {type: temporal_ordered, rules: [failed_login, successful_login], group-by: [User], timespan: 10m}\n";
    let mut h = Harness::new(corr);
    h.event(0.0, "r-failed", &[("User", "u")]).event(30.0, "r-success", &[("User", "u")]);
    assert_eq!(h.run().len(), 1, "failed then success");
    let mut h = Harness::new(corr);
    h.event(0.0, "r-success", &[("User", "u")]).event(30.0, "r-failed", &[("User", "u")]);
    assert!(h.run().is_empty(), "success then failed is the wrong order");
    let mut h = Harness::new(corr);
    h.event(0.0, "r-failed", &[("User", "u")]).event(601.0, "r-success", &[("User", "u")]);
    assert!(h.run().is_empty(), "too far apart");
}

#[test]
fn value_sum_avg_and_percentile() {
    let sum = "title: s\nid: c1\ncorrelation: {type: value_sum, rules: [failed_login], group-by: [User], timespan: 1h, condition: {field: Bytes, gt: 1000}}\n";
    let mut h = Harness::new(sum);
    for (t, b) in [(0.0, "400"), (10.0, "400"), (20.0, "300")] {
        h.event(t, "r-failed", &[("User", "u"), ("Bytes", b)]);
    }
    let f = h.run();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].value, 1100.0);

    let avg = "title: a\nid: c1\ncorrelation: {type: value_avg, rules: [failed_login], group-by: [User], timespan: 1h, condition: {field: Bytes, gt: 500}}\n";
    let mut h = Harness::new(avg);
    for (t, b) in [(0.0, "100"), (10.0, "200")] {
        h.event(t, "r-failed", &[("User", "u"), ("Bytes", b)]);
    }
    assert!(h.run().is_empty());
    h.event(20.0, "r-failed", &[("User", "u"), ("Bytes", "2000")]);
    assert_eq!(h.run().len(), 1);

    let pct = "title: p\nid: c1\ncorrelation: {type: value_percentile, rules: [recon], group-by: [Computer], timespan: 1d, condition: {field: Image, lte: 10}}\n";
    let mut h = Harness::new(pct);
    for i in 0..30 {
        h.event(i as f64, "r-recon", &[("Computer", "h"), ("Image", "c:\\common.exe")]);
    }
    h.event(40.0, "r-recon", &[("Computer", "h"), ("Image", "c:\\rare.exe")]);
    let f = h.run();
    assert_eq!(f.len(), 1, "only the rare image fires: {f:?}");
}

#[test]
fn correlation_of_a_correlation_and_aliases() {
    // The specification's example: many failed logins, then a success, for one user.
    let corr = "
title: brute force then success
id: outer
correlation: {type: temporal_ordered, rules: [many_failed, successful_login], group-by: [User], timespan: 10m}
level: high
---
title: many failed
id: inner
name: many_failed
correlation: {type: event_count, rules: [failed_login], group-by: [User], timespan: 10m, condition: {gte: 5}}
";
    let mut h = Harness::new(corr);
    for i in 0..5 {
        h.event(i as f64, "r-failed", &[("User", "mallory")]);
    }
    h.event(60.0, "r-success", &[("User", "mallory")]);
    let f = h.run();
    assert_eq!(f.len(), 1, "only the outer correlation is reported: {f:?}");
    assert_eq!(f[0].group[0].1, "mallory");
    // Success before the burst: no match.
    let mut h = Harness::new(corr);
    h.event(0.0, "r-success", &[("User", "mallory")]);
    for i in 1..6 {
        h.event(i as f64, "r-failed", &[("User", "mallory")]);
    }
    assert!(h.run().is_empty());

    let aliased = "
title: same ip
id: c1
correlation:
  type: temporal
  rules: [failed_login, recon]
  group-by: [ip]
  timespan: 1m
  aliases:
    ip: {failed_login: IpAddress, recon: SourceIp}
";
    let mut h = Harness::new(aliased);
    h.event(0.0, "r-failed", &[("IpAddress", "1.2.3.4")]).event(10.0, "r-recon", &[("SourceIp", "1.2.3.4")]);
    assert_eq!(h.run().len(), 1);
}

#[test]
fn state_is_dropped_after_its_window() {
    let corr = "title: spray\nid: c1\ncorrelation: {type: value_count, rules: [failed_login], group-by: [IpAddress], timespan: 1h, condition: {field: TargetUserName, gte: 1000}}\n";
    let h = Harness::new(corr);
    let mut c = Correlator::new(h.set.clone());
    // 200,000 events over ~23 days from 50 rotating sources: live groups stay small.
    for i in 0..200_000i64 {
        let ip = format!("10.0.{}.{}", (i / 1000) % 50, i % 7);
        for inp in inputs_for(&h.set, 0, i * 10 * S, 0xe, "", |f| match f {
            "IpAddress" => Some(ip.clone()),
            "TargetUserName" => Some(format!("u{}", i % 13)),
            _ => None,
        }) {
            c.push(inp);
        }
    }
    assert!(c.peak_groups < 1000, "peak live groups {}", c.peak_groups);
    c.finish();
    assert_eq!(c.live_groups(), 0);
}

#[test]
fn findings_do_not_depend_on_the_other_groups_in_the_stream() {
    // 12,000 inputs (sweeps run every 4,096) over 40 groups that go quiet for longer than
    // the window and come back, each input naming its own host: one stream and three
    // shares must give the same findings, entities included, for every kind of
    // correlation (growing and closing windows, values, sums, percentiles, temporal).
    let correlations = [
        "{type: event_count, rules: [failed_login], group-by: [User], timespan: 1m, condition: {gte: 3}}",
        "{type: event_count, rules: [failed_login], group-by: [User], timespan: 1m, condition: {gt: 1, lte: 3}}",
        "{type: value_count, rules: [failed_login, successful_login], group-by: [User], timespan: 1m, condition: {field: Target, gte: 3}}",
        "{type: value_percentile, rules: [failed_login], group-by: [User], timespan: 1m, condition: {field: Target, lte: 20}}",
        "{type: value_sum, rules: [successful_login], group-by: [User], timespan: 1m, condition: {field: Bytes, gte: 1500}}",
        "{type: temporal_ordered, rules: [failed_login, successful_login], group-by: [User], timespan: 1m}",
        "{type: temporal, rules: [failed_login, successful_login], group-by: [User], timespan: 1m}",
    ];
    for corr in correlations {
        let h = Harness::new(&format!("title: burst\nid: c1\ncorrelation: {corr}\n"));
        let mut seed = 11u64;
        let mut inputs = Vec::new();
        for i in 0..12_000i64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let user = format!("u{}", (seed >> 40) % 40);
            let target = format!("t{}", (seed >> 10) % 6);
            let bytes = ((seed >> 4) % 1000).to_string();
            let ts = i * S / 2 + ((seed >> 20) % 1000) as i64;
            let entities = format!("host=h{}\u{1f}account={user}", (seed >> 30) % 9);
            let rule = ((seed >> 50) % 2) as usize;
            inputs.extend(inputs_for(&h.set, rule, ts, i as u128, &entities, |f| match f {
                "User" => Some(user.clone()),
                "Target" => Some(target.clone()),
                "Bytes" => Some(bytes.clone()),
                _ => None,
            }));
        }
        let run = |threads: usize| {
            let n = shares_for(&h.set, threads);
            let mut shares: Vec<Vec<Sorter>> = (0..n).map(|_| vec![Sorter::new(1 << 16)]).collect();
            for inp in &inputs {
                shares[share_of(inp, n)][0].push(inp.clone()).unwrap();
            }
            correlate_shares(&h.set, shares).findings.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>()
        };
        let (one, three) = (run(1), run(3));
        assert!(!one.is_empty(), "no findings for {corr}");
        assert_eq!(one.len(), three.len(), "{corr}");
        if let Some((a, b)) = one.iter().zip(&three).find(|(a, b)| a != b) {
            panic!("{corr}\none stream:\n{a}\nthree shares:\n{b}");
        }
    }
}

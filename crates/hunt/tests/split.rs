//! A large W3C log cut into pieces for several threads gives what one thread reading it
//! whole gives: the same events with the same record numbers, the same file outcome, and
//! the same detections and correlation findings from a real hunt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_correlate::CorrelationSet;
use portcullis_hunt::{FileOutcome, NoProgress, RunOptions, run_files};
use portcullis_sigma::{Engine, LogsourceTable, Placeholders, RuleSet};

fn write_log(dir: &Path) -> PathBuf {
    let path = dir.join("u_ex210824.log");
    let mut text = String::from(
        "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken\n",
    );
    for i in 0..40_000u32 {
        if i == 20_000 {
            // IIS writes its header again after a restart, with other fields.
            text.push_str("#Software: Microsoft Internet Information Services 10.0\n#Fields: date time c-ip cs-method cs-uri-stem sc-status cs(User-Agent)\n");
        }
        if i % 9_999 == 0 {
            text.push_str("this line has no fields\n");
        }
        let (m, s) = ((i / 60) % 60, i % 60);
        let h = 10 + i / 3600;
        if i < 20_000 {
            let uri = if i % 5_000 == 7 { "/autodiscover/autodiscover.json" } else { "/owa/auth/logon.aspx" };
            let query = if i % 5_000 == 7 { "@evil.corp/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.corp" } else { "-" };
            text.push_str(&format!(
                "2021-08-24 {h:02}:{m:02}:{s:02} 10.0.0.5 GET {uri} {query} 443 - 198.51.100.{} Mozilla/5.0 200 0 0 5\n",
                i % 200
            ));
        } else {
            text.push_str(&format!("2021-08-24 {h:02}:{m:02}:{s:02} 203.0.113.{} POST /ecp/x{} 200 curl/7.1\n", i % 50, i % 97));
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn outcome_counts(o: &FileOutcome) -> (u64, u64, u64, Option<String>) {
    match o {
        FileOutcome::Read(r) => (r.events, r.skipped, r.bytes, r.time_span.map(|(a, b)| format!("{a} {b}"))),
        other => panic!("not read: {:?}", other.path()),
    }
}

#[test]
fn pieces_give_the_whole_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path());
    let files = vec![path.clone()];
    let collect = |opts: &RunOptions| {
        let (outcomes, states) = run_files(&files, opts, &NoProgress, Vec::new, |seen: &mut Vec<(u64, String)>, _: &Arc<Path>, ev| {
            seen.push((ev.record, ev.to_string()))
        });
        let busy = states.iter().filter(|(s, _)| !s.is_empty()).count();
        let mut all: Vec<(u64, String)> = states.into_iter().flat_map(|(s, _)| s).collect();
        all.sort();
        (outcome_counts(&outcomes[0]), all, outcomes, busy)
    };
    let whole = collect(&RunOptions { threads: 1, ..Default::default() });
    let cut = collect(&RunOptions { threads: 2, split_min_bytes: 1, ..Default::default() });
    assert!(whole.1.len() > 39_000);
    assert_eq!((whole.3, cut.3), (1, 2), "one file, read by both threads when cut");
    assert_eq!(whole.0, cut.0, "events, skipped, bytes and time span");
    assert_eq!(whole.1, cut.1, "events and record numbers");
    let notes = |o: &[FileOutcome]| match &o[0] {
        FileOutcome::Read(r) => r.notes.clone(),
        _ => Vec::new(),
    };
    assert_eq!(notes(&whole.2), notes(&cut.2), "skip notes in file order");

    // A real hunt with the built-in pack: the same detections and correlation findings.
    let mut set = RuleSet::default();
    set.add_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules"), &Placeholders::new());
    let engine = Engine::compile(&set, &LogsourceTable::builtin());
    let corr = Arc::new(CorrelationSet::compile(&set.correlations, &engine.rules).0);
    let ids = |opts: &RunOptions| {
        let r = portcullis_hunt::hunt(&engine, &corr, &files, opts, &NoProgress);
        (
            r.detections.all().unwrap().iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
            r.correlations.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        )
    };
    let a = ids(&RunOptions { threads: 1, ..Default::default() });
    let b = ids(&RunOptions { threads: 2, split_min_bytes: 1, ..Default::default() });
    assert!(!a.0.is_empty(), "the planted ProxyShell requests are found");
    assert_eq!(a, b);
}

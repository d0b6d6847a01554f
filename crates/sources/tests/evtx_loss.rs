//! EVTX records are never lost without a count: on real recordings (`../shared/evtx`), a
//! zeroed chunk in the middle and a file cut inside a chunk lose records that the chunk
//! headers (and the file header) name, and the report counts them and names the chunk; on
//! the untouched recordings, events and skips add up to what the headers say was there.
//!
//! These need `../shared` beside the repository: they are ignored by default and CI runs
//! them with `--ignored`; run locally with
//! `cargo test --release -p portcullis-sources --test evtx_loss -- --ignored`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use portcullis_sources::{FileReport, ReadOptions, read_file};

fn samples() -> PathBuf {
    let p = std::env::var_os("PORTCULLIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")))
        .join("evtx/EVTX-ATTACK-SAMPLES");
    assert!(p.is_dir(), "../shared is missing: {}", p.display());
    p
}

fn read(path: &Path) -> FileReport {
    let mut n = 0;
    let report = read_file(path, &ReadOptions::default(), &mut |_| {
        n += 1;
        ControlFlow::Continue(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, report.events);
    report
}

/// `etw_rpc_zerologon.evtx`: three chunks holding record ids 1-189, 190-369 and 370-415.
fn zerologon() -> Vec<u8> {
    std::fs::read(samples().join("Credential Access/etw_rpc_zerologon.evtx")).unwrap()
}

fn write(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("damaged.evtx");
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

const CHUNK: usize = 65536;
const FIRST_CHUNK: usize = 4096;

#[test]
#[ignore = "needs ../shared (EVTX-ATTACK-SAMPLES); CI runs it with --ignored"]
fn a_zeroed_chunk_in_the_middle_is_counted_and_named() {
    let mut data = zerologon();
    let whole = read(&write(&data).1);
    assert_eq!((whole.events, whole.skipped), (415, 0), "{:?}", whole.notes);
    data[FIRST_CHUNK + CHUNK..FIRST_CHUNK + 2 * CHUNK].fill(0);
    let report = read(&write(&data).1);
    assert_eq!(report.events, 415 - 180);
    assert_eq!(report.skipped, 180, "{:?}", report.notes);
    assert_eq!(report.notes[0], "chunk 1 (at byte 69632), zeroed: 180 records unreadable (record ids 190-369 missing)");
    // Only its header zeroed: the parser reports the chunk, the headers around it count it.
    let mut data = zerologon();
    data[FIRST_CHUNK + CHUNK..FIRST_CHUNK + CHUNK + 512].fill(0);
    let report = read(&write(&data).1);
    assert_eq!((report.events, report.skipped), (235, 180), "{:?}", report.notes);
    // The first chunk zeroed: records from id 1 on are missing.
    let mut data = zerologon();
    data[FIRST_CHUNK..FIRST_CHUNK + CHUNK].fill(0);
    let report = read(&write(&data).1);
    assert_eq!((report.events, report.skipped), (415 - 189, 189), "{:?}", report.notes);
    assert!(report.notes[0].starts_with("chunk 0 (at byte 4096), zeroed: 189 records"), "{:?}", report.notes);
}

#[test]
#[ignore = "needs ../shared (EVTX-ATTACK-SAMPLES); CI runs it with --ignored"]
fn a_file_cut_inside_a_chunk_reads_up_to_the_cut_and_counts_the_rest() {
    let data = zerologon();
    // Inside the last chunk: its records before the cut are read, the rest counted.
    let cut = FIRST_CHUNK + 2 * CHUNK + 5000;
    let report = read(&write(&data[..cut]).1);
    assert!(report.events > 369 && report.events < 415, "{} {:?}", report.events, report.notes);
    assert_eq!(report.events + report.skipped, 415, "{:?}", report.notes);
    assert!(report.notes[0].starts_with("chunk 2 (at byte 135168): "), "{:?}", report.notes);
    assert!(report.notes[0].contains("the file ends 5000 bytes into it"), "{:?}", report.notes);
    // Cut in the middle chunk: the last chunk is gone; the file header names its records.
    let cut = FIRST_CHUNK + CHUNK + 30_000;
    let report = read(&write(&data[..cut]).1);
    assert_eq!(report.events + report.skipped, 415, "{:?}", report.notes);
    assert!(report.notes.iter().any(|n| n.contains("next record id 416")), "{:?}", report.notes);
    // Cut just inside a chunk header: nothing of that chunk can be read or padded.
    let cut = FIRST_CHUNK + 2 * CHUNK + 100;
    let report = read(&write(&data[..cut]).1);
    assert_eq!((report.events, report.skipped), (369, 46), "{:?}", report.notes);
}

#[test]
#[ignore = "needs ../shared (EVTX-ATTACK-SAMPLES); CI runs it with --ignored"]
fn untouched_recordings_add_up() {
    let mut files = Vec::new();
    let mut stack = vec![samples()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "evtx") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 200);
    let mut skipping = Vec::new();
    for p in &files {
        let report = read(p);
        if report.skipped > 0 {
            skipping.push(format!("{}: {} events, {} skipped: {:?}", p.display(), report.events, report.skipped, report.notes));
        }
    }
    assert!(skipping.is_empty(), "{} of {} files report skips:\n{}", skipping.len(), files.len(), skipping.join("\n"));
}

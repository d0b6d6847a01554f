//! Hostile input: every reader must return a counted skip or a clear error naming
//! the file and position — never a panic, never unbounded memory.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use portcullis_sources::{FileReport, ReadOptions, SourceError, read_file};

fn read(path: &Path) -> (Result<FileReport, SourceError>, u64) {
    let mut n = 0;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_file(path, &ReadOptions::default(), &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
    }));
    match r {
        Ok(r) => (r, n),
        Err(_) => panic!("reader panicked on {}", path.display()),
    }
}

fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

fn shared_evtx() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evtx/EVTX-ATTACK-SAMPLES/Credential Access/CA_DCSync_4662.evtx");
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var("PORTCULLIS_REQUIRE_SHARED").as_deref() != Ok("1"),
            "../shared is required (PORTCULLIS_REQUIRE_SHARED=1) but missing"
        );
        eprintln!("SKIPPED: ../shared/evtx not found; EVTX corruption tests need a real EVTX sample");
        None
    }
}

#[test]
fn truncated_evtx_reads_what_is_there() {
    let Some(src) = shared_evtx() else { return };
    let data = std::fs::read(&src).unwrap();
    let (full, n_full) = read(&src);
    let full = full.unwrap();
    assert!(n_full > 0 && full.skipped == 0);
    // Cut in the middle of the first chunk, at the header, and mid-way through the file.
    for cut in [100, 4096, 4096 + 30_000, data.len() / 2, data.len() - 1] {
        let (_d, p) = temp_file("cut.evtx", &data[..cut.min(data.len())]);
        let (r, n) = read(&p);
        match r {
            Ok(_) => assert!(n <= n_full, "cut {cut}: {n} events > {n_full}"),
            Err(e) => assert!(e.to_string().contains("cut.evtx"), "error must name the file: {e}"),
        }
    }
}

#[test]
fn bit_flipped_evtx_never_panics() {
    let Some(src) = shared_evtx() else { return };
    let data = std::fs::read(&src).unwrap();
    let (_full, n_full) = read(&src);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut skipped_somewhere = false;
    for _ in 0..150 {
        let mut d = data.clone();
        for _ in 0..8 {
            // Flip bits in the chunks, past the file header, where records live.
            let at = 4096 + (next() as usize % (d.len() - 4096));
            d[at] ^= 1 << (next() % 8);
        }
        let (_dir, p) = temp_file("flip.evtx", &d);
        let (r, n) = read(&p);
        if let Ok(report) = r {
            assert!(n <= n_full + 64, "implausible event count {n}");
            skipped_somewhere |= report.skipped > 0;
            for note in &report.notes {
                assert!(!note.is_empty());
            }
        }
    }
    assert!(skipped_somewhere, "150 corrupted files and no skip was ever reported");
}

#[test]
fn a_100_mb_single_line_is_a_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    for (name, head) in [("w3c.log", &b"#Fields: date time c-ip\n"[..]), ("big.json", &b"{\"a\": \""[..])] {
        let p = dir.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        f.write_all(head).unwrap();
        let block = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&block).unwrap();
        }
        if name.ends_with(".json") {
            f.write_all(b"\"}\n{\"ok\": 1}\n").unwrap();
        } else {
            f.write_all(b"\n2021-08-24 00:00:00 1.2.3.4\n").unwrap();
        }
        drop(f);
        let (r, n) = read(&p);
        let report = r.unwrap();
        assert_eq!(n, 1, "{name}: the record after the long line is still read");
        assert_eq!(report.skipped, 1, "{name}: {:?}", report.notes);
        assert!(report.notes[0].contains("exceeds the record limit"), "{:?}", report.notes);
    }
}

#[test]
fn gzip_is_read_transparently() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"{\"Channel\":\"Security\",\"EventID\":4688,\"CommandLine\":\"whoami\"}\n{\"a\":2}\n").unwrap();
    let (_d, p) = temp_file("events.json.gz", &gz.finish().unwrap());
    let (r, n) = read(&p);
    let report = r.unwrap();
    assert!(report.gzip);
    assert_eq!(n, 2);
    // A corrupt gzip stream ends with an error naming the file, after what it could read.
    let (_d2, p2) = temp_file("broken.gz", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let (r, _) = read(&p2);
    if let Err(e) = r {
        assert!(e.to_string().contains("broken.gz"), "{e}");
    }
}

#[test]
fn garbage_and_empty_files_are_clear_errors() {
    for (name, bytes) in [("empty.log", &b""[..]), ("noise.bin", &[0u8, 159, 146, 150, 1, 2][..]), ("elf.evtx", b"ElfFile\0short")] {
        let (_d, p) = temp_file(name, bytes);
        let (r, n) = read(&p);
        assert_eq!(n, 0);
        let e = r.expect_err(name);
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn a_truncated_gzip_keeps_what_was_read_and_counts_the_cut() {
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("{{\"Channel\":\"Security\",\"EventID\":4688,\"CommandLine\":\"cmd {i} {}\"}}\n", "x".repeat(i % 97)));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let whole = gz.finish().unwrap();
    let (_d, p) = temp_file("events.json.gz", &whole[..whole.len() * 2 / 3]);
    let (r, n) = read(&p);
    let report = r.unwrap_or_else(|e| panic!("a truncated gzip whose events were read must not fail the file: {e}"));
    assert!(n > 1000 && n < 5000, "{n}");
    assert_eq!(report.events, n);
    // The object cut by the end of the stream, and the unreadable rest.
    assert_eq!(report.skipped, 2, "{:?}", report.notes);
    assert!(report.notes[0].contains("JSON object truncated"), "{:?}", report.notes);
    assert!(report.notes[1].contains(&format!("gzip stream ends early after {n} events")), "{:?}", report.notes);
}

#[cfg(unix)]
#[test]
fn a_fifo_is_skipped_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.log");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let r = read_file(&path, &ReadOptions::default(), &mut |_| ControlFlow::Continue(()));
        let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
    });
    let r = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("reading a FIFO must not hang");
    let e = r.expect_err("a FIFO is not read");
    assert!(e.contains("pipe.log") && e.contains("FIFO") && e.contains("skipped"), "{e}");
    // Listed as a file when given directly, so that the skip is said.
    let (files, errors) = portcullis_sources::collect_files(std::slice::from_ref(&fifo));
    assert_eq!((files.len(), errors.len()), (1, 0));
}

//! Archives read as folders: ZIP and tar.gz members give the same events as the files,
//! each named by its member path; bombs, deep nesting and broken members are counted and
//! named, never fatal to the rest of the archive.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use portcullis_sources::{Format, ReadOptions, read_file};

const JSONL: &str = "{\"Channel\":\"Security\",\"EventID\":4688,\"Computer\":\"ws1\",\"CommandLine\":\"whoami\"}\n{\"a\":1}\n";
const W3C: &str = "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem c-ip sc-status\n2021-08-24 02:13:00 10.0.0.5 GET /owa/ 1.2.3.4 200\n";

fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn read(path: &Path) -> (portcullis_sources::FileReport, Vec<(String, u64)>) {
    let mut seen = Vec::new();
    let report = read_file(path, &ReadOptions::default(), &mut |e| {
        seen.push((e.member.clone(), e.record));
        ControlFlow::Continue(())
    })
    .unwrap();
    (report, seen)
}

#[test]
fn zip_and_tar_gz_members_are_read_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("triage.zip");
    std::fs::write(&zip, zip_bytes(&[("logs/a.jsonl", JSONL.as_bytes()), ("iis/u_ex210824.log", W3C.as_bytes()), ("notes.txt", b"hello")]))
        .unwrap();
    let (report, seen) = read(&zip);
    assert_eq!(report.format, Some(Format::Zip));
    assert_eq!(report.events, 3);
    assert_eq!(seen.iter().filter(|(m, _)| m == "logs/a.jsonl").count(), 2);
    assert!(seen.iter().any(|(m, r)| m == "iis/u_ex210824.log" && *r == 3));
    assert!(report.warnings.iter().any(|w| w.contains("notes.txt")), "{:?}", report.warnings);

    let tgz = dir.path().join("triage.tar.gz");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tgz).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [("logs/a.jsonl", JSONL), ("iis/u_ex210824.log", W3C)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    let (report, seen) = read(&tgz);
    assert_eq!(report.format, Some(Format::Tar));
    assert_eq!(report.events, 3);
    assert!(seen.iter().any(|(m, _)| m == "iis/u_ex210824.log"));
}

#[test]
fn archive_bombs_and_deep_nesting_are_stopped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    // 300 MB of zeros compresses to about 300 KB: far past the 200x ratio once past 16 MiB.
    let zeros = vec![0u8; 300 << 20];
    let bomb = zip_bytes(&[("bomb.jsonl", &zeros), ("ok.jsonl", JSONL.as_bytes())]);
    drop(zeros);
    let path = dir.path().join("bomb.zip");
    std::fs::write(&path, &bomb).unwrap();
    let (report, seen) = read(&path);
    assert_eq!(seen.len(), 2, "the good member is still read");
    assert!(report.notes.iter().any(|n| n.contains("bomb.jsonl") && n.contains("archive bomb")), "{:?}", report.notes);
    assert!(report.skipped >= 1);

    let mut nested = zip_bytes(&[("deep.jsonl", JSONL.as_bytes())]);
    for level in 0..6 {
        nested = zip_bytes(&[(&format!("level{level}.zip"), &nested)]);
    }
    let path = dir.path().join("nested.zip");
    std::fs::write(&path, &nested).unwrap();
    let (report, seen) = read(&path);
    assert!(seen.is_empty());
    assert!(report.notes.iter().any(|n| n.contains("nested deeper than 4")), "{:?}", report.notes);

    let path = dir.path().join("truncated.zip");
    std::fs::write(&path, &bomb[..bomb.len() / 2]).unwrap();
    let err = read_file(&path, &ReadOptions::default(), &mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.to_string().contains("truncated.zip"), "{err}");
}

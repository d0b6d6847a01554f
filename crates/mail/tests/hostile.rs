//! Hostile mail: every case is counted or reported, never a panic, and memory stays bounded
//! by the per-message and per-header limits.

use std::path::Path;

use portcullis_mail::{Options, Report};

fn run_on(files: &[(&str, Vec<u8>)]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    run_dir(dir.path())
}

fn run_dir(p: &Path) -> Report {
    portcullis_mail::run(&[p.to_path_buf()], &Options::default(), &|_| {})
}

const HEAD: &str = "From: a@example.org\r\nTo: b@parliament.example\r\nSubject: s\r\nDate: Mon, 18 Jan 2021 09:00:00 +0000\r\n";

#[test]
fn fifty_megabyte_header_is_reported() {
    let mut raw = HEAD.as_bytes().to_vec();
    let line = format!("X-Filler: {}\r\n", "a".repeat(990));
    while raw.len() < 50 << 20 {
        raw.extend_from_slice(line.as_bytes());
    }
    raw.extend_from_slice(b"\r\nbody\r\n");
    // The same header as one 50 MB line inside a mailbox.
    let mut mbox = format!("From x Mon Jan 18 09:00:00 2021\n{HEAD}X-Big: ").into_bytes();
    mbox.extend(std::iter::repeat_n(b'b', 50 << 20));
    mbox.extend_from_slice(b"\n\nbody\n");
    let r = run_on(&[("big.eml", raw), ("big.mbox", mbox)]);
    // Both are read bounded (the padding dropped) and the padding is a finding of its own.
    assert_eq!((r.messages, r.unreadable_count), (2, 0), "{:?}", r.unreadable);
    assert_eq!(r.problems.get("lines over 1 MiB dropped"), Some(&1), "{:?}", r.problems);
    assert!(r.problems.keys().any(|p| p.contains("header block over 1 MiB")), "{:?}", r.problems);
    let padded: usize = r
        .campaigns
        .iter()
        .filter(|c| c.signals.iter().any(|s| s.kind == portcullis_mail::SignalKind::PaddedHeader && s.what.contains("padded past 1 MiB")))
        .map(|c| c.messages)
        .sum();
    assert_eq!(padded, 2, "{:#?}", r.campaigns);
}

#[test]
fn a_header_block_that_never_ends_is_reported_unreadable() {
    let mut raw = HEAD.as_bytes().to_vec();
    for _ in 0..30_000 {
        raw.extend_from_slice(format!("Received: from {}\r\n", "r".repeat(60)).as_bytes());
    }
    let r = run_on(&[("endless.eml", raw)]);
    assert_eq!(r.unreadable_count, 1, "{:?}", r.unreadable);
    assert!(r.unreadable[0].contains("header block larger than 1 MiB"), "{:?}", r.unreadable);
}

#[test]
fn ten_thousand_nested_multiparts() {
    let mut raw = format!("{HEAD}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
    for i in 0..10_000 {
        raw.push_str(&format!("--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n", i + 1));
    }
    raw.push_str(
        "--b10000\r\nContent-Type: text/html\r\n\r\n<img src=\"https://t.example/o/Zq81LmV0xR4kT6yB/p.gif\" width=1 height=1>\r\n",
    );
    for i in (0..=10_000).rev() {
        raw.push_str(&format!("--b{i}--\r\n"));
    }
    let r = run_on(&[("nested.eml", raw.into_bytes())]);
    assert_eq!(r.messages, 1);
    assert!(r.problems.keys().any(|p| p.contains("MIME parts")), "{:?}", r.problems);
}

#[test]
fn broken_base64_and_unknown_charsets_are_counted() {
    let broken = format!(
        "{HEAD}MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGltZyBzcmM9Imh0dHBz!!!***%%%\r\n"
    );
    let charset = format!("{HEAD}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"x-made-up-99\"\r\n\r\nhello\r\n");
    let r = run_on(&[("b64.eml", broken.into_bytes()), ("cs.eml", charset.into_bytes())]);
    assert_eq!(r.messages, 2);
    assert_eq!(r.problems.get("unknown charset"), Some(&1), "{:?}", r.problems);
    assert_eq!(r.problems.get("broken base64"), Some(&1), "{:?}", r.problems);
}

#[test]
fn deeply_nested_html_is_cut_not_recursed() {
    let mut html = "<div>".repeat(1_000_000);
    html.push_str("<img src=\"https://t.example/o/Zq81LmV0xR4kT6yB/p.gif\" width=1 height=1>");
    let raw = format!("{HEAD}MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n{html}\r\n");
    let r = run_on(&[("deep.eml", raw.into_bytes())]);
    assert_eq!(r.messages, 1);
    assert!(r.problems.keys().any(|p| p.contains("deeply nested")), "{:?}", r.problems);
}

#[test]
fn garbage_and_truncated_mail_never_panics() {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let good = format!(
        "{HEAD}Content-Type: text/html\r\n\r\n<img src=\"https://t.example/o/Zq81LmV0xR4kT6yB/p.gif\" width=1 height=1><a href=\"https://t.example/?u=aHR0cDovL3g=\">x</a>\r\n"
    );
    for cut in [1, 10, 40, 80, good.len() - 5] {
        files.push((format!("cut{cut}.eml"), good.as_bytes()[..cut].to_vec()));
    }
    files.push(("mbox-garbage.mbox".into(), b"From \xff\xfe\x00\n\x00\x01\x02\n\nFrom \n\n".to_vec()));
    files.push(("binary.eml".into(), (0..=255u8).cycle().take(100_000).collect()));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let r = run_on(&refs);
    assert!(r.messages + r.unreadable_count >= 1);
}

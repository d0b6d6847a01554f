//! End-to-end: register files in every supported shape count the same electors once;
//! hostile inputs are bounded and reported.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use portcullis_exposure::{Limits, Options, Report, scan, scan_reader};

const ELECTORS: [(&str, &str, &str, &str, &str); 5] = [
    // (surname, forename, address1, postcode, marker)
    ("O'Hara", "Siân", "1 High Street", "NE8 2JM", ""),
    ("Barker", "Zoë", "2 High Street", "NE8 2JM", "E"),
    ("Carver", "Ada", "", "", "F"),
    ("Dunmore", "Felix", "14 Mill Road", "LS10 1FW", "G"),
    ("Ellery", "Ursula", "3 Church Lane", "NE1 4ST", ""),
];

/// Layout A (export): separate name columns, markers, DOB for attainers.
fn layout_a(d: char, rows: &[usize]) -> String {
    let mut s = [
        "Elector Number Prefix",
        "Elector Number",
        "Elector Markers",
        "Elector DOB",
        "Elector Surname",
        "Elector Forename",
        "PostCode",
        "Address1",
        "Address2",
    ]
    .join(&d.to_string());
    s.push_str("\r\n");
    for &i in rows {
        let (sur, fore, a1, pc, m) = ELECTORS[i];
        let dob = if m == "E" { "01/09/2022" } else { "" };
        let town = if a1.is_empty() { "" } else { "Northfield, Tyne" };
        let cells = ["NFA", &(i + 1).to_string(), m, dob, sur, fore, pc, a1, town]
            .iter()
            .map(|c| if c.contains(d) { format!("\"{c}\"") } else { c.to_string() })
            .collect::<Vec<_>>();
        s.push_str(&cells.join(&d.to_string()));
        s.push_str("\r\n");
    }
    s
}

/// Layout B (monthly update): combined elector number, postcode repeated in the address.
fn layout_b(rows: &[usize]) -> String {
    let mut s = String::from(
        "ElectorNumber\tElectorName\tMarkersRegisterText\tPropertyAddress1\tPropertyAddress2\tPropertyAddress3\tPropertyPostCode\n",
    );
    for &i in rows {
        let (sur, fore, a1, pc, m) = ELECTORS[i];
        let town = if a1.is_empty() { "" } else { "Northfield, Tyne" };
        s.push_str(&format!("NFA-{}/1\t{}, {}\t{}\t{}\t{}\t{}\t{}\n", i + 1, sur.to_uppercase(), fore, m, a1, town, pc, pc));
    }
    s
}

fn utf16le(s: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFE];
    v.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
    v
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn run(dir: &std::path::Path) -> Report {
    scan(&[dir.to_path_buf()], &Options::default(), &|_| {})
}

#[test]
fn every_shape_of_register_counts_each_elector_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> PathBuf { dir.path().join(n) };
    std::fs::write(p("a.csv"), layout_a(',', &[0, 1, 2])).unwrap();
    std::fs::write(p("b.txt"), layout_a(';', &[1, 2, 3])).unwrap();
    std::fs::write(p("c.tsv"), utf16le(&layout_b(&[3, 4]))).unwrap();
    std::fs::write(p("d.csv"), encoding_rs::WINDOWS_1252.encode(&layout_a('|', &[0, 4])).0).unwrap();
    let mut book = Vec::new();
    {
        let mut w = portcullis_simulate::xlsx::WorkbookWriter::new(Cursor::new(&mut book)).unwrap();
        // The same layout as a sheet (the semicolon text has no quoting to undo).
        for line in layout_a(';', &[0, 1, 2, 3, 4]).lines() {
            let cells: Vec<&str> = line.split(';').collect();
            w.row(&cells).unwrap();
        }
        w.finish().unwrap();
    }
    std::fs::write(p("e.xlsx"), &book).unwrap();
    let inner = zip_of(&[("2019/old.csv", layout_a(',', &[2, 3]).as_bytes())]);
    std::fs::write(p("f.zip"), zip_of(&[("2020.tsv", layout_b(&[0]).as_bytes()), ("older.zip", &inner)])).unwrap();
    std::fs::write(p("notes.txt"), "Call Ada on 020 7946 0018 or ada@example.org; born 01/02/1990.\n").unwrap();

    let r = run(dir.path());
    let registers: Vec<_> = r.files.iter().filter(|f| f.register).map(|f| f.path.rsplit(['/', '\\']).next().unwrap().to_string()).collect();
    assert_eq!(registers.len(), 7, "{registers:?} {:#?}", r.files);
    for f in r.files.iter().filter(|f| f.register) {
        assert!(f.confidence >= 0.9, "{} {}", f.path, f.confidence);
        assert!(f.errors.is_empty() && f.skipped.is_empty(), "{f:?}");
    }
    let types: std::collections::BTreeSet<_> = r.files.iter().map(|f| f.file_type.as_str()).collect();
    assert!(types.is_superset(&["csv", "ssv", "tsv", "psv", "xlsx", "zip", "text"].into()), "{types:?}");
    assert_eq!(r.tally.unique(0), 5);
    let c = r.tally.counts[0];
    assert_eq!(c, [5, 0, 1, 1, 1], "full, opt-outs, attainers, overseas, other");
    let notes = r.files.iter().find(|f| f.path.ends_with("notes.txt")).unwrap();
    assert_eq!(notes.pii.get("phone_numbers"), Some(&1));
    assert_eq!(notes.pii.get("email_addresses"), Some(&1));
    assert_eq!(notes.pii.get("dates_of_birth"), Some(&1));
}

#[test]
fn scope_splits_reached_from_unreached() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["FS01/Registers/2021", "FS01/Registers/2019", "WS07/Desktop"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("FS01/Registers/2021/r.csv"), layout_a(',', &[0, 1])).unwrap();
    std::fs::write(dir.path().join("FS01/Registers/2019/r.csv"), layout_a(',', &[1, 2])).unwrap();
    std::fs::write(dir.path().join("WS07/Desktop/copy.csv"), layout_a(',', &[3, 4])).unwrap();
    let opts = Options {
        scope: Some(portcullis_exposure::Scope {
            accessed: vec!["D:\\Shares\\Registers\\2021\\r.csv".into()],
            compromised_hosts: vec!["fs01.ec.local".into()],
        }),
        ..Default::default()
    };
    let r = scan(&[dir.path().to_path_buf()], &opts, &|_| {});
    assert_eq!((r.tally.unique(0), r.tally.unique(1), r.tally.unique(2)), (5, 3, 2));
    // Attainer (elector 1) is in the accessed file; overseas (elector 2) only on FS01.
    assert_eq!(r.tally.counts[2][2], 1);
    assert_eq!(r.tally.counts[2][3], 0);
    assert_eq!(r.tally.counts[1][3], 1);
}

#[test]
fn samples_are_masked_and_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), layout_a(',', &[4])).unwrap();
    let r = run(dir.path());
    assert!(r.files[0].samples.is_empty());
    let r = scan(&[dir.path().to_path_buf()], &Options { show_samples: true, ..Default::default() }, &|_| {});
    let s = &r.files[0].samples[0];
    assert!(s.contains("E***") && s.contains("NE1 ***"), "{s}");
    assert!(!s.contains("Ellery") && !s.contains("Ursula") && !s.contains("4ST") && !s.contains("Church"), "{s}");
}

#[test]
fn zip_bombs_are_bounded_and_reported() {
    // High ratio: 200 MB of zeros compresses to a few hundred KB.
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    z.start_file("zeros.csv", zip::write::SimpleFileOptions::default()).unwrap();
    let block = vec![b'0'; 1 << 20];
    for _ in 0..200 {
        z.write_all(&block).unwrap();
    }
    let bomb = z.finish().unwrap().into_inner();
    assert!(bomb.len() < 2 << 20);
    let r = scan_reader("bomb.zip", Cursor::new(bomb.clone()), &Options::default());
    let zip = r.files.iter().find(|f| f.file_type == "zip").unwrap();
    assert!(zip.errors.iter().any(|e| e.contains("ZIP bomb")), "{:?}", r.files);

    // Nested: archives within archives past the depth limit.
    let mut nested = bomb;
    for i in 0..6 {
        nested = zip_of(&[(&format!("level{i}.zip"), &nested)]);
    }
    let r = scan_reader("nested.zip", Cursor::new(nested), &Options::default());
    let errors: Vec<&String> = r.files.iter().flat_map(|f| &f.errors).collect();
    assert!(errors.iter().any(|e| e.contains("nested deeper")), "{errors:?}");

    // A small total budget stops an archive of many ordinary entries.
    let entry = layout_a(',', &[0, 1, 2, 3, 4]).repeat(200);
    let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("r{i}.csv"), entry.clone().into_bytes())).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let opts = Options { limits: Limits { max_total_bytes: 200_000, ..Default::default() }, ..Default::default() };
    let r = scan_reader("many.zip", Cursor::new(zip_of(&refs)), &opts);
    let errors: Vec<&String> = r.files.iter().flat_map(|f| &f.errors).collect();
    assert!(!errors.is_empty(), "the budget must stop reading");
    assert_eq!(r.tally.unique(0), 5);
}

/// A reader producing `n` bytes of one value, then an ending, without holding them.
struct Generated {
    left: u64,
    byte: u8,
    tail: Cursor<Vec<u8>>,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return self.tail.read(buf);
        }
        let n = buf.len().min(self.left as usize);
        buf[..n].fill(self.byte);
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn a_two_gigabyte_line_is_skipped_in_bounded_memory() {
    let head = layout_a(',', &[0, 1]);
    let input = Cursor::new(head.into_bytes()).chain(Generated {
        left: 2 << 30,
        byte: b'x',
        tail: Cursor::new(b"\nNFA,9,,,Ellery,Ursula,NE1 4ST,3 Church Lane,\"Northfield, Tyne\"\n".to_vec()),
    });
    let r = scan_reader("huge.csv", input, &Options::default());
    let f = &r.files[0];
    assert!(f.register);
    assert_eq!(f.skipped.values().sum::<u64>(), 1, "{:?}", f.skipped);
    assert_eq!(r.tally.unique(0), 3);
}

#[test]
fn malformed_workbooks_and_undecodable_bytes_are_reported() {
    let bad = zip_of(&[
        ("xl/workbook.xml", b"<workbook/>"),
        ("xl/sharedStrings.xml", b"<sst><si><t>unclosed"),
        ("xl/worksheets/sheet1.xml", b"<worksheet><sheetData><row><c t=\"s\"><v>99</v></c>"),
    ]);
    let r = scan_reader("bad.xlsx", Cursor::new(bad), &Options::default());
    assert!(r.files.iter().any(|f| !f.errors.is_empty()), "{:?}", r.files);

    let bad_sheet = zip_of(&[
        ("xl/workbook.xml", b"<workbook/>"),
        ("xl/worksheets/sheet1.xml", b"<worksheet><sheetData><row><c t=\"s\"><v>99</v></c></row><row><c></x></row>"),
    ]);
    let r = scan_reader("bad2.xlsx", Cursor::new(bad_sheet), &Options::default());
    let f = &r.files[0];
    assert!(!f.errors.is_empty() || !f.skipped.is_empty(), "{f:?}");

    // UTF-8 with stray bytes past the part used to sniff the encoding: the row still
    // counts, the bad line is reported.
    let mut data = layout_a(',', &[0]).into_bytes();
    let repeat = layout_a(',', &[0]).lines().nth(1).unwrap().to_string() + "\n";
    data.extend(repeat.repeat(100_000 / repeat.len() + 1).bytes());
    data.extend_from_slice(b"NFA,7,,,Fenwick,Ol\xFF\xFEive,NE8 2JM,4 High Street,x\n");
    let r = scan_reader("mixed.csv", Cursor::new(data), &Options::default());
    assert_eq!(r.tally.unique(0), 2);
    assert!(r.files[0].skipped.keys().any(|k| k.contains("invalid")), "{:?}", r.files[0].skipped);
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            out.push(if k <= c.len() { T[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

fn message(subject: &str, name: &str, data: &[u8]) -> String {
    format!(
        "From: Clerk <clerk@ec.example>\r\nTo: ero@la.example\r\nSubject: {subject}\r\nDate: Mon, 13 Jun 2022 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease call me on 07700 900123.\r\n--b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        base64(data)
    )
}

#[test]
fn registers_attached_to_mail_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let csv = layout_a(',', &[0, 1]);
    let zipped = zip_of(&[("r.tsv", layout_b(&[3, 4]).as_bytes())]);
    let mbox = format!(
        "From clerk@ec.example Mon Jun 13 09:00:00 2022\n{}\nFrom clerk@ec.example Mon Jun 13 09:05:00 2022\n{}",
        message("extract", "extract.csv", csv.as_bytes()),
        message("older", "older.zip", &zipped)
    );
    std::fs::write(dir.path().join("export.mbox"), mbox).unwrap();
    std::fs::write(dir.path().join("one.eml"), message("overseas", "o.csv", layout_a(',', &[2]).as_bytes())).unwrap();
    let r = run(dir.path());
    assert_eq!(r.tally.unique(0), 5, "{:#?}", r.files);
    let registers: Vec<&str> = r.files.iter().filter(|f| f.register).map(|f| f.path.as_str()).collect();
    assert_eq!(registers.len(), 3, "{registers:?}");
    assert!(registers.iter().any(|p| p.ends_with("export.mbox!message 2!older.zip!r.tsv")), "{registers:?}");
    let mbox = r.files.iter().find(|f| f.file_type == "mbox").unwrap();
    assert_eq!(mbox.rows, 2);
    assert_eq!(mbox.pii.get("phone_numbers"), Some(&2));
}

/// `n` distinct electors in layout A (quoted town cells), row `bad` with an address whose
/// opening quote is never closed.
fn register_with_broken_quote(n: usize, bad: Option<usize>) -> String {
    let mut s = String::from("Elector Number,Elector Surname,Elector Forename,PostCode,Address1,Address2\r\n");
    for i in 0..n {
        let address = if Some(i) == bad {
            format!("\"{i} High Street,Northfield")
        } else {
            format!("\"{i} High Street, Flat {}\",\"Northfield, Tyne\"", i % 7)
        };
        s.push_str(&format!("{},Surname{i},Forename{i},NE8 {}JM,{address}\r\n", i + 1, i % 10));
    }
    s
}

#[test]
fn an_unclosed_quote_loses_only_its_own_line() {
    let r = scan_reader("whole.csv", Cursor::new(register_with_broken_quote(300, None).into_bytes()), &Options::default());
    assert_eq!(r.tally.unique(0), 300);
    assert!(r.files[0].skipped.is_empty(), "{:?}", r.files[0].skipped);
    // Row 4 (line 5) opens a quote it never closes: the next line is a record of its own.
    let r = scan_reader("broken.csv", Cursor::new(register_with_broken_quote(300, Some(3)).into_bytes()), &Options::default());
    let f = &r.files[0];
    assert!(f.register);
    assert_eq!(r.tally.unique(0), 299, "{:?}", f.skipped);
    assert_eq!(f.skipped.len(), 1, "{:?}", f.skipped);
    let (why, n) = f.skipped.iter().next().unwrap();
    assert_eq!((why.as_str(), *n), ("lines of records whose quote never closed (line 5)", 1));
    // The last row broken: nothing after it closes the quote.
    let r = scan_reader("last.csv", Cursor::new(register_with_broken_quote(300, Some(299)).into_bytes()), &Options::default());
    assert_eq!(r.tally.unique(0), 299, "{:?}", r.files[0].skipped);
    assert_eq!(r.files[0].skipped.values().sum::<u64>(), 1);
    // A quoted cell over two lines is still one row.
    let mut s = register_with_broken_quote(60, None);
    s.push_str("61,Surname61,Forename61,NE8 1JM,\"61 High Street\nFlat 2\",\"Northfield, Tyne\"\r\n");
    let r = scan_reader("multi.csv", Cursor::new(s.into_bytes()), &Options::default());
    assert_eq!(r.tally.unique(0), 61);
    assert!(r.files[0].skipped.is_empty(), "{:?}", r.files[0].skipped);
}

#[test]
fn shared_strings_are_bounded_by_count_and_said_to_be_over_the_limit() {
    // Millions of empty shared strings compress to almost nothing; each would cost an index.
    let n = portcullis_exposure::xlsx::MAX_SHARED_STRINGS + 1;
    let mut sst = String::with_capacity(n * 5 + 64);
    sst.push_str("<sst>");
    for i in 0..n {
        sst.push_str(if i % 2 == 0 { "<si/>" } else { "<si></si>" });
    }
    sst.push_str("</sst>");
    let book = zip_of(&[
        ("xl/workbook.xml", b"<workbook/>"),
        ("xl/sharedStrings.xml", sst.as_bytes()),
        ("xl/worksheets/sheet1.xml", b"<worksheet><sheetData><row><c t=\"s\"><v>0</v></c></row></sheetData></worksheet>"),
    ]);
    assert!(book.len() < 2 << 20, "{} bytes", book.len());
    let r = scan_reader("many.xlsx", Cursor::new(book), &Options::default());
    let f = &r.files[0];
    assert_eq!(f.errors.len(), 1, "{f:?}");
    assert!(f.errors[0].contains("shared strings over the limit of 8388608"), "{:?}", f.errors);
    assert!(!f.errors[0].contains("malformed") && !f.errors[0].contains("corrupt"), "{:?}", f.errors);
}

#[test]
fn empty_shared_strings_keep_their_index() {
    // `<si/>` is a string too: the strings after it must not shift onto the wrong index.
    let book = zip_of(&[
        ("xl/workbook.xml", b"<workbook/>"),
        ("xl/sharedStrings.xml", b"<sst><si/><si><t>Surname</t></si><si></si><si><r><t>Fore</t></r><r><t>name</t></r></si></sst>"),
    ]);
    let mut a = zip::ZipArchive::new(Cursor::new(book)).unwrap();
    let shared = portcullis_exposure::xlsx::shared_strings(&mut a).unwrap();
    let got: Vec<_> = (0..shared.len()).map(|i| shared.get(i).unwrap()).collect();
    assert_eq!(got, ["", "Surname", "", "Forename"]);
}

/// One large register is keyed on several cores in parts; the result is the same as on one
/// thread: every count, the repeated headers and blank lines left out, a broken quote
/// counted once, duplicates counted once, and the samples the first three rows'.
#[test]
fn one_large_register_read_in_parts_on_every_core_counts_as_on_one() {
    let mut s = register_with_broken_quote(20_000, Some(12_345));
    // Concatenated exports: the same rows again after a repeated header, and blank lines.
    let again = register_with_broken_quote(3_000, None);
    s.push_str("\r\n,,,,,\r\n");
    s.push_str(&again);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("register.csv"), s).unwrap();
    let opts = Options { show_samples: true, ..Default::default() };
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| scan(&[dir.path().to_path_buf()], &opts, &|_| {}))
    };
    let one = on(1);
    let f = &one.files[0];
    assert!(f.register);
    assert_eq!(one.tally.unique(0), 19_999, "{:?}", f.skipped);
    assert_eq!(f.rows, 20_000 - 1 + 3_000, "repeated header and blank rows are not electors");
    assert_eq!(f.skipped.values().sum::<u64>(), 1, "{:?}", f.skipped);
    assert_eq!(f.samples.len(), 3);
    for threads in [2, 4] {
        let many = on(threads);
        let g = &many.files[0];
        assert_eq!(many.tally.counts, one.tally.counts, "{threads} threads");
        assert_eq!(many.tally.appearances, one.tally.appearances);
        assert_eq!((g.rows, &g.skipped, &g.samples, &g.categories, &g.pii), (f.rows, &f.skipped, &f.samples, &f.categories, &f.pii));
    }
}

/// Long rows end a part early (parts are bounded in bytes as well as rows): the same
/// electors on one thread and on four.
#[test]
fn long_rows_are_read_in_small_parts_with_the_same_result() {
    let mut s = register_with_broken_quote(60, None);
    let padding = "x".repeat(200_000);
    for i in 60..120 {
        s.push_str(&format!("{},Surname{i},Forename{i},NE8 {}JM,{i} High Street {padding},Northfield\r\n", i + 1, i % 10));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("long.csv"), s).unwrap();
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| scan(&[dir.path().to_path_buf()], &Options::default(), &|_| {}))
    };
    let (one, four) = (on(1), on(4));
    assert_eq!(one.tally.unique(0), 120, "{:?}", one.files[0].skipped);
    assert_eq!(four.tally.counts, one.tally.counts);
    assert_eq!(four.files[0].rows, 120);
}

//! Synthetic electoral register exports on the file share (threat brief §5): two local
//! authorities, four years (2019–2022), the two common layouts, several encodings and
//! containers, overlapping electors across years, attainers with the date they reach
//! voting age, overseas electors listed by name only, other franchise markers and
//! open-register opt-outs (visible in one authority's layout only).
//!
//! Every elector is a function of (seed, authority, index), so nothing is stored per
//! person and the expected counts in `truth.json` are exact: each person has a distinct
//! name + address + postcode (households have distinct forenames; addresses are unique per
//! postcode unit), and overseas electors have distinct names.

use std::io::{self, BufWriter, Cursor, Write};
use std::path::Path;

use serde_json::json;

use crate::Config;

/// The current registers the intruder read (2021 and 2022 of both authorities).
pub const FILES: [&str; 4] = [
    "FS01/Shares/Registers/2021/LA-Northfield-register-2021.csv",
    "FS01/Shares/Registers/2021/LA-Eastbridge-register-2021.csv",
    "FS01/Shares/Registers/2022/LA-Northfield-register-2022.csv",
    "FS01/Shares/Registers/2022/LA-Eastbridge-register-2022.csv",
];
const ARCHIVE_ZIP: &str = "FS01/Shares/Registers/Archive/registers-2019-2020.zip";
const MAILBOX: &str = "EXCH01/MailboxExports/elections-team.mbox";
const ARCHIVE_XLSX: &str = "FS01/Shares/Registers/Archive/LA-Eastbridge-register-2020.xlsx";

const SURNAMES: [&str; 32] = [
    "Abbott",
    "Barker",
    "Carver",
    "Dunmore",
    "Ellery",
    "Fenwick",
    "Garside",
    "Hollins",
    "Ingram",
    "Jessop",
    "Kettle",
    "Lomax",
    "Marlow",
    "Nuttall",
    "Orchard",
    "Pennock",
    "Quayle",
    "Ravens",
    "Sowerby",
    "Tennant",
    "Upton",
    "Varley",
    "Whitlock",
    "Yardley",
    "O'Hara",
    "Prydderch",
    "Llewelyn",
    "Ó Ceallaigh",
    "MacAulay",
    "Ashworth",
    "Brierley",
    "Cartwright",
];
const FORENAMES: [&str; 32] = [
    "Ada", "Bertie", "Clara", "Dennis", "Edith", "Felix", "Gwen", "Horace", "Iris", "Jasper", "Kitty", "Lionel", "Maud", "Nigel", "Olive",
    "Percy", "Queenie", "Rupert", "Sybil", "Trevor", "Ursula", "Vernon", "Winifred", "Zac", "Siân", "Zoë", "Seán", "Chloé", "Dafydd",
    "Aoife", "Rhiannon", "Padraig",
];
const STREETS: [&str; 16] = [
    "High Street",
    "Station Road",
    "Church Lane",
    "Mill Road",
    "Park Avenue",
    "Victoria Road",
    "Green Lane",
    "Manor Way",
    "Queens Road",
    "Orchard Close",
    "Bridge Street",
    "Kings Drive",
    "Chapel Row",
    "Albert Terrace",
    "Moor Lane",
    "Castle View",
];
const SYLLABLES: [&str; 10] = ["ton", "ley", "by", "well", "ford", "wick", "ham", "den", "worth", "field"];
/// Inward-code unit letters (C, I, K, M, O and V are never used).
const UNIT_LETTERS: &[u8; 20] = b"ABDEFGHJLNPQRSTUWXYZ";
const OTHER_MARKERS: [&str; 5] = ["G", "B", "L", "M", "K"];
pub const YEARS: [u32; 4] = [2019, 2020, 2021, 2022];

/// One local authority's register.
struct Authority {
    code: &'static str,
    town: &'static str,
    area: &'static str,
    /// Layout A (`Elector Number Prefix, …, Opted Out`, comma) shows opt-outs; layout B
    /// (the monthly update layout, tab) does not.
    layout_a: bool,
    residents: u64,
    overseas: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One elector's facts.
struct Person {
    forename: &'static str,
    surname: String,
    /// Empty for overseas electors.
    address1: String,
    postcode: String,
    /// First and last register year index the person is on.
    first: usize,
    last: usize,
    /// Year index in which the person is an attainer.
    attainer: Option<usize>,
    marker: &'static str,
    opted_out: bool,
    overseas: bool,
}

impl Authority {
    fn person(&self, seed: u64, la: u64, i: u64) -> Person {
        let h = |k: u64| {
            mix(seed ^ mix(la.wrapping_mul(0x1000_0000_01B3) ^ i.wrapping_mul(0x9E37_79B9) ^ k.wrapping_mul(0xA24B_AED4_963E_E407)))
        };
        let overseas = i >= self.residents;
        let (forename, surname, address1, postcode);
        if overseas {
            // Name only, so names are made unique: surname + three syllables from the index.
            let k = i - self.residents + la * 5_000_000;
            forename = FORENAMES[(k % 32) as usize];
            let x = k / 32;
            surname = format!(
                "{}{}{}{}{}",
                SURNAMES[(x % 32) as usize].replace(['\'', ' '], ""),
                SYLLABLES[((x / 32) % 10) as usize],
                SYLLABLES[((x / 320) % 10) as usize],
                SYLLABLES[((x / 3200) % 10) as usize],
                SYLLABLES[((x / 32000) % 10) as usize]
            );
            address1 = String::new();
            postcode = String::new();
        } else {
            // Three to a household, thirty households to a postcode unit.
            let (house, member) = (i / 3, i % 3);
            let (unit, number) = (house / 30, house % 30 + 1);
            let hh = mix(seed ^ mix(la * 7919 + house));
            forename = FORENAMES[((hh % 32) + member * 11) as usize % 32];
            surname = SURNAMES[((hh >> 8) % 32) as usize].to_string();
            address1 = format!("{number} {}", STREETS[(unit % 16) as usize]);
            let letters = unit % 400;
            postcode = format!(
                "{}{} {}{}{}",
                self.area,
                1 + unit / 4000,
                (unit / 400) % 10,
                UNIT_LETTERS[(letters / 20) as usize] as char,
                UNIT_LETTERS[(letters % 20) as usize] as char
            );
        }
        let (h1, h2, h3, h4, h5) = (h(1), h(2), h(3), h(4), h(5));
        let first = if h1 % 100 < 10 { 1 + (h1 / 100 % 3) as usize } else { 0 };
        let last = if h2 % 100 < 7 { first.max((h2 / 100 % 3) as usize) } else { 3 };
        let attainer = if !overseas && ((first > 0 && h3 % 2 == 0) || (first == 0 && h3 % 40 == 0)) { Some(first) } else { None };
        let marker = if overseas {
            "F"
        } else if h4 % 100 < 3 {
            OTHER_MARKERS[(h4 / 100 % 5) as usize]
        } else {
            ""
        };
        Person { forename, surname, address1, postcode, first, last, attainer, marker, opted_out: !overseas && h5 % 100 < 35, overseas }
    }
}

/// Categories, as the exposure counter names them.
const LISTED: u16 = 1;
const OPTED_OUT: u16 = 2;
const ATTAINER: u16 = 4;
const OVERSEAS: u16 = 8;
const OTHER: u16 = 16;

/// Writes the register files; returns the expected exposure figures.
pub fn generate(cfg: &Config, out: &Path) -> io::Result<serde_json::Value> {
    let per_la = ((6_000.0 * cfg.scale) as u64).max(300);
    let las = [
        Authority { code: "NF", town: "Northfield", area: "NE", layout_a: true, residents: per_la, overseas: per_la / 50 },
        Authority { code: "EB", town: "Eastbridge", area: "LS", layout_a: false, residents: per_la, overseas: per_la / 50 },
    ];
    let seed = cfg.seed;
    // Per person: category bits over all files (low 5) and over the accessed years (next 5).
    let mut truth: Vec<Vec<u16>> = las.iter().map(|a| vec![0u16; (a.residents + a.overseas) as usize]).collect();
    let mut rows_written = 0u64;
    let mut emit = |la: usize, year: usize, sink: &mut dyn FnMut(&[String]) -> io::Result<()>| -> io::Result<()> {
        let a = &las[la];
        let mut cells: Vec<String> = Vec::new();
        sink(&header(a.layout_a))?;
        let mut number = 0u64;
        for i in 0..a.residents + a.overseas {
            let p = a.person(seed, la as u64, i);
            if year < p.first || year > p.last {
                continue;
            }
            number += 1;
            let mut cat = LISTED;
            let attainer = p.attainer == Some(year);
            if attainer {
                cat |= ATTAINER;
            }
            if p.overseas {
                cat |= OVERSEAS;
            }
            if !p.marker.is_empty() && !p.overseas && !attainer {
                cat |= OTHER;
            }
            if p.opted_out && a.layout_a {
                cat |= OPTED_OUT;
            }
            let accessed = YEARS[year] >= 2021;
            truth[la][i as usize] |= cat | if accessed { cat << 5 } else { 0 };
            row(a, &p, year, number, attainer, &mut cells);
            sink(&cells)?;
            rows_written += 1;
        }
        Ok(())
    };

    let mut extract: Vec<Vec<u8>> = Vec::new();
    let share = out.join("FS01/Shares/Registers");
    std::fs::create_dir_all(share.join("Archive"))?;
    for year in [2usize, 3] {
        for (la, rel) in [(0usize, FILES[if year == 2 { 0 } else { 2 }]), (1, FILES[if year == 2 { 1 } else { 3 }])] {
            let path = out.join(rel);
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
            // Northfield: UTF-8 CSV. Eastbridge: tab-separated, UTF-16LE with a BOM in 2021
            // and Windows-1252 in 2022 (as exported by different systems).
            let enc = match (la, year) {
                (0, _) => Enc::Utf8,
                (_, 2) => Enc::Utf16Le,
                _ => Enc::Windows1252,
            };
            if enc == Enc::Utf16Le {
                w.write_all(&[0xFF, 0xFE])?;
            }
            let d = if la == 0 { ',' } else { '\t' };
            emit(la, year, &mut |cells| {
                // The first rows of Northfield 2022 also travel by mail (see below).
                if la == 0 && year == 3 && extract.len() < 41 {
                    let mut line = Vec::new();
                    write_delimited(&mut line, cells, ',', Enc::Utf8)?;
                    extract.push(line);
                }
                write_delimited(&mut w, cells, d, enc)
            })?;
            w.flush()?;
        }
    }
    // The archive: 2020 Northfield and 2019 Eastbridge in a ZIP, 2019 Northfield in a ZIP
    // inside it; 2020 Eastbridge as a workbook.
    {
        let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(out.join(ARCHIVE_ZIP))?);
        let mut z = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(true);
        z.start_file("2020/LA-Northfield-register-2020.csv", opts).map_err(io::Error::other)?;
        emit(0, 1, &mut |cells| write_delimited(&mut z, cells, ',', Enc::Utf8))?;
        z.start_file("2019/LA-Eastbridge-register-2019.tsv", opts).map_err(io::Error::other)?;
        emit(1, 0, &mut |cells| write_delimited(&mut z, cells, '\t', Enc::Utf8))?;
        let mut inner = zip::ZipWriter::new(Cursor::new(Vec::new()));
        inner.start_file("LA-Northfield-register-2019.csv", opts).map_err(io::Error::other)?;
        emit(0, 0, &mut |cells| write_delimited(&mut inner, cells, ',', Enc::Utf8))?;
        let inner = inner.finish().map_err(io::Error::other)?.into_inner();
        z.start_file("2019/older-registers.zip", opts.compression_method(zip::CompressionMethod::Stored).compression_level(None))
            .map_err(io::Error::other)?;
        z.write_all(&inner)?;
        z.finish().map_err(io::Error::other)?.flush()?;
    }
    {
        let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(out.join(ARCHIVE_XLSX))?);
        let mut book = crate::xlsx::WorkbookWriter::new(file)?;
        emit(1, 1, &mut |cells| book.row(cells))?;
        book.finish()?.flush()?;
    }
    // An extract of the current register sent by mail, in the elections team's mailbox
    // export on the Exchange server: the same electors, so the expected figures stay.
    {
        let path = out.join(MAILBOX);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let csv: Vec<u8> = extract.concat();
        let mut w = BufWriter::new(std::fs::File::create(&path)?);
        write!(
            w,
            "From elections@ec.local Mon Jun  6 09:12:44 2022\r\nFrom: Elections Team <elections@ec.local>\r\nTo: Northfield ERO <ero@northfield.gov.example>\r\nSubject: Register extract for the canvass check\r\nDate: Mon, 6 Jun 2022 09:12:44 +0100\r\nMessage-ID: <extract-2022@ec.local>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_reg\"\r\n\r\n--=_reg\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAttached are the first rows of the 2022 Northfield register for the canvass check.\r\n\r\n--=_reg\r\nContent-Type: text/csv; name=\"LA-Northfield-register-2022-extract.csv\"\r\nContent-Disposition: attachment; filename=\"LA-Northfield-register-2022-extract.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--=_reg--\r\n",
            base64(&csv)
        )?;
        w.flush()?;
    }

    let count = |shift: u32| {
        let mut c = [0u64; 5];
        for v in truth.iter().flatten() {
            let bits = (v >> shift) & 31;
            for (k, n) in c.iter_mut().enumerate() {
                if bits & (1 << k) != 0 {
                    *n += 1;
                }
            }
        }
        c
    };
    let figures = |c: [u64; 5]| {
        json!({
            "unique_electors": c[0],
            "by_category": {
                "full_register": c[0], "open_register_opt_outs": c[1], "attainers": c[2],
                "overseas_electors": c[3], "other_markers": c[4],
            }
        })
    };
    let all = count(0);
    let mut v = figures(all);
    v["on_compromised_systems"] = figures(all);
    v["evidenced_as_accessed"] = figures(count(5));
    v["rows"] = json!(rows_written);
    v["files"] = json!([FILES[0], FILES[1], FILES[2], FILES[3], ARCHIVE_ZIP, ARCHIVE_XLSX, MAILBOX]);
    v["notes"] = json!(
        "Identity is normalised name + address + postcode; overseas electors are listed by name only. Opt-outs are visible only in Northfield's layout. All files sit on FS01 (compromised); the 2021 and 2022 registers were read by the intruder on 13 Jun 2022."
    );
    Ok(v)
}

fn header(layout_a: bool) -> Vec<String> {
    let h: &[&str] = if layout_a {
        &[
            "Elector Number Prefix",
            "Elector Number",
            "Elector Number Suffix",
            "Elector Markers",
            "Elector DOB",
            "Elector Surname",
            "Elector Forename",
            "PostCode",
            "Address1",
            "Address2",
            "Address3",
            "Address4",
            "Address5",
            "Address6",
            "Opted Out",
        ]
    } else {
        &[
            "ElectorNumber",
            "ElectorSurname",
            "ElectorForename",
            "ElectorDOB",
            "MarkersRegisterText",
            "PropertyAddress1",
            "PropertyAddress2",
            "PropertyAddress3",
            "PropertyAddress4",
            "PropertyAddress5",
            "PropertyPostCode",
        ]
    };
    h.iter().map(|s| s.to_string()).collect()
}

fn row(a: &Authority, p: &Person, year: usize, number: u64, attainer: bool, cells: &mut Vec<String>) {
    cells.clear();
    let district = format!("{}{}", a.code, (b'A' + (number % 3) as u8) as char);
    let suffix = if number.is_multiple_of(17) { "1" } else { "" };
    let dob = if attainer { format!("{:02}/{:02}/{}", 1 + number % 28, 1 + number % 12, YEARS[year]) } else { String::new() };
    let marker = if attainer { "E" } else { p.marker };
    let town = if p.overseas { "" } else { a.town };
    if a.layout_a {
        cells.extend([
            district,
            number.to_string(),
            suffix.to_string(),
            marker.to_string(),
            dob,
            p.surname.clone(),
            p.forename.to_string(),
            p.postcode.clone(),
            p.address1.clone(),
            town.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            if p.opted_out { "Y".into() } else { String::new() },
        ]);
    } else {
        let number = if suffix.is_empty() { format!("{district}-{number}") } else { format!("{district}-{number}/{suffix}") };
        cells.extend([
            number,
            p.surname.clone(),
            p.forename.to_string(),
            dob,
            marker.to_string(),
            p.address1.clone(),
            town.to_string(),
            // This layout repeats the postcode as the last address line.
            p.postcode.clone(),
            String::new(),
            String::new(),
            p.postcode.clone(),
        ]);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Enc {
    Utf8,
    Utf16Le,
    Windows1252,
}

fn write_delimited(w: &mut dyn Write, cells: &[String], d: char, enc: Enc) -> io::Result<()> {
    let mut line = String::with_capacity(160);
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            line.push(d);
        }
        if c.contains([d, '"', '\n']) {
            line.push('"');
            line.push_str(&c.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(c);
        }
    }
    line.push_str("\r\n");
    match enc {
        Enc::Utf8 => w.write_all(line.as_bytes()),
        Enc::Utf16Le => {
            let bytes: Vec<u8> = line.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            w.write_all(&bytes)
        }
        Enc::Windows1252 => w.write_all(&encoding_rs::WINDOWS_1252.encode(&line).0),
    }
}

/// Standard base64 with CRLF every 76 characters, as mail carries attachments.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    let flat = base64::engine::general_purpose::STANDARD.encode(data);
    // The alphabet is ASCII, so every 76-byte chunk is whole characters.
    flat.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("\r\n")
}

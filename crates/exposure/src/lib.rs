//! Finds electoral-register copies in files, archives and mail and counts the unique
//! electors they expose, by category and by how close the intruder came.
//!
//! Data flow: [`scan`] walks the inputs; each file is opened by content (ZIP and XLSX by
//! their magic, nested archives recursively within [`Limits`], everything else as text in
//! whatever encoding it has); text that splits into a table is classified
//! ([`register::classify`]: header names, then content) and, if it is a register, every
//! row becomes one 128-bit elector fingerprint with category flags ([`register::Keyer`]);
//! fingerprints from all files meet in one [`count::Counter`] that counts each elector once
//! in bounded memory. Other text is counted for other personal data ([`pii`]).
//!
//! Personal data never leaves this crate except as counts, unless the caller asks for
//! masked samples.

pub mod count;
pub mod mail;
pub mod pii;
pub mod register;
pub mod table;
pub mod text;
pub mod xlsx;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use count::Counter;
use portcullis_sources::read_up_to;
use register::{CATEGORIES, Keyer, Layout};
use table::{DelimitedRows, Row, RowSource};

use portcullis_sources::archive::Limited;
/// Bounds on archives: the same as `hunt` uses (`portcullis_sources::archive`).
pub use portcullis_sources::archive::Limits;

/// Which files the intruder reached.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Paths evidenced as accessed (files or folders, Windows or Unix form), matched
    /// against a file's trailing path components.
    pub accessed: Vec<String>,
    /// Hosts known to be compromised: a file whose path has a component naming one of them
    /// (as collected triage is usually laid out, `HOST/...`) is on a compromised system.
    pub compromised_hosts: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub limits: Limits,
    pub scope: Option<Scope>,
    /// Memory for fingerprints before sorted runs spill to disk.
    pub memory_budget: usize,
    /// Keep up to three masked sample rows per register file.
    pub show_samples: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { limits: Limits::default(), scope: None, memory_budget: 2 << 30, show_samples: false }
    }
}

/// One file (or archive member) examined.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub kind: &'static str,
    /// The file, with `!member` for each archive level.
    pub path: String,
    /// csv, tsv, psv, ssv (semicolon), xlsx, text, zip, binary.
    #[serde(rename = "type")]
    pub file_type: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Data rows read (header excluded).
    pub rows: u64,
    pub register: bool,
    pub confidence: f64,
    pub reasons: Vec<String>,
    /// Rows per category in this file (appearances, not unique electors).
    pub categories: BTreeMap<String, u64>,
    /// Other personal data found (counts).
    pub pii: BTreeMap<String, u64>,
    pub on_compromised_system: bool,
    pub accessed: bool,
    /// Rows or records skipped, with why.
    pub skipped: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

impl FileReport {
    /// A report for a file that could not be examined, with why.
    fn failed(path: String, file_type: &str, error: String) -> Self {
        let mut r = FileReport::new(path, file_type);
        r.errors.push(error);
        r
    }

    fn new(path: String, file_type: &str) -> Self {
        FileReport {
            kind: "exposure_file",
            path,
            file_type: file_type.into(),
            bytes: 0,
            encoding: None,
            rows: 0,
            register: false,
            confidence: 0.0,
            reasons: Vec::new(),
            categories: BTreeMap::new(),
            pii: BTreeMap::new(),
            on_compromised_system: false,
            accessed: false,
            skipped: BTreeMap::new(),
            errors: Vec::new(),
            samples: Vec::new(),
        }
    }
}

/// The whole run.
#[derive(Debug)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub tally: count::Tally,
    /// Inputs that could not be read at all.
    pub errors: Vec<String>,
    pub bytes: u64,
    pub rows: u64,
    pub scoped: bool,
}

impl Report {
    /// The `exposure_total` record.
    pub fn total_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "kind": "exposure_total",
            "unique_electors": self.tally.unique(0),
            "by_category": self.tally.by_category(0),
            "register_files": self.files.iter().filter(|f| f.register).count(),
            "files": self.files.len(),
            "rows": self.rows,
            "bytes": self.bytes,
            "spilled_runs": self.tally.spilled_runs,
        });
        if self.scoped {
            v["on_compromised_systems"] = serde_json::json!({
                "unique_electors": self.tally.unique(1), "by_category": self.tally.by_category(1) });
            v["evidenced_as_accessed"] = serde_json::json!({
                "unique_electors": self.tally.unique(2), "by_category": self.tally.by_category(2) });
        }
        v
    }
}

/// Every file under the inputs, sorted, and the inputs that could not be listed (the
/// hunt's walk: directory symlinks are not followed, FIFOs and devices never opened).
pub fn collect_files(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let (files, errors) = portcullis_sources::collect_regular_files(inputs);
    (files, errors.into_iter().map(|e| e.to_string()).collect())
}

/// Fingerprints are handed to the shared counter in batches of this many.
const BATCH: usize = 1 << 16;

struct Ctx<'a> {
    opts: &'a Options,
    counter: &'a Mutex<Result<Counter, io::Error>>,
}

/// Scans the inputs. `progress` is called with bytes done as files finish.
pub fn scan(inputs: &[PathBuf], opts: &Options, progress: &(dyn Fn(u64) + Sync)) -> Report {
    let (files, mut errors) = collect_files(inputs);
    let counter = Mutex::new(Ok(Counter::new(opts.memory_budget)));
    let ctx = Ctx { opts, counter: &counter };
    let done = AtomicU64::new(0);
    // Largest first, one file per task, so the big ones do not end up queued behind each
    // other on one core; reports are put back in path order afterwards.
    let mut order: Vec<(u64, usize)> =
        files.iter().enumerate().map(|(i, f)| (std::fs::metadata(f).map(|m| m.len()).unwrap_or(0), i)).collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    let mut per_file: Vec<(usize, (Vec<FileReport>, Option<String>))> = order
        .par_iter()
        .with_max_len(1)
        .map(|&(_, i)| {
            let f = &files[i];
            let r = scan_file(f, &ctx);
            let bytes: u64 = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            progress(done.fetch_add(bytes, Ordering::Relaxed) + bytes);
            (i, r)
        })
        .collect();
    per_file.sort_unstable_by_key(|p| p.0);
    let per_file = per_file.into_iter().map(|p| p.1);
    let mut reports = Vec::new();
    for (r, e) in per_file {
        reports.extend(r);
        errors.extend(e);
    }
    let tally = match counter.into_inner().unwrap_or_else(|p| p.into_inner()).and_then(|c| c.finish()) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("counting electors: {e}"));
            Default::default()
        }
    };
    let bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let rows = reports.iter().map(|r| r.rows).sum();
    Report { files: reports, tally, errors, bytes, rows, scoped: opts.scope.is_some() }
}

/// Scans one stream (stdin, an attachment, a generated input) as if it were a file called
/// `name`.
pub fn scan_reader<R: Read>(name: &str, reader: R, opts: &Options) -> Report {
    let counter = Mutex::new(Ok(Counter::new(opts.memory_budget)));
    let ctx = Ctx { opts, counter: &counter };
    let mut out = Vec::new();
    let mut budget = opts.limits.max_total_bytes;
    let place = place_of(Path::new(name), &opts.scope);
    scan_stream(name.to_string(), Vec::new(), reader, 1, place, &mut budget, &ctx, &mut out);
    let mut errors = Vec::new();
    let tally = match counter.into_inner().unwrap_or_else(|p| p.into_inner()).and_then(|c| c.finish()) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("counting electors: {e}"));
            Default::default()
        }
    };
    let bytes = out.iter().map(|r| r.bytes).sum();
    let rows = out.iter().map(|r| r.rows).sum();
    Report { files: out, tally, errors, bytes, rows, scoped: opts.scope.is_some() }
}

/// Where a top-level file sits relative to the intrusion.
#[derive(Clone, Copy, Default)]
struct Place {
    compromised: bool,
    accessed: bool,
}

fn place_of(path: &Path, scope: &Option<Scope>) -> Place {
    let Some(scope) = scope else { return Place::default() };
    let comps = components(&path.to_string_lossy());
    let compromised = scope.compromised_hosts.iter().any(|h| {
        let short = h.split('.').next().unwrap_or(h).to_lowercase();
        !short.is_empty() && comps.contains(&short)
    });
    let accessed = scope.accessed.iter().any(|a| path_matches(&comps, &components(a)));
    Place { compromised: compromised || accessed, accessed }
}

/// Lower-cased path components, either separator, without drive letters and `\??\`.
pub fn components(p: &str) -> Vec<String> {
    p.split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != "??" && *c != "." && !(c.len() == 2 && c.ends_with(':')))
        .map(|c| c.to_lowercase())
        .collect()
}

/// True if the last two components of `accessed` (or its only one) appear, in order and
/// adjacent, in `local`: a file matches itself, a folder matches everything under it.
pub fn path_matches(local: &[String], accessed: &[String]) -> bool {
    let k = accessed.len().min(2);
    if k == 0 {
        return false;
    }
    let tail = &accessed[accessed.len() - k..];
    local.windows(k).any(|w| w == tail)
}

fn scan_file(path: &Path, ctx: &Ctx) -> (Vec<FileReport>, Option<String>) {
    let display = path.display().to_string();
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return (Vec::new(), Some(format!("{display}: {e}"))),
    };
    let place = place_of(path, &ctx.opts.scope);
    let mut out = Vec::new();
    let mut budget = ctx.opts.limits.max_total_bytes;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).unwrap_or(0);
    if n == 4 && magic == *b"PK\x03\x04" {
        match file.seek(io::SeekFrom::Start(0)) {
            Ok(_) => scan_zip(file, display, 1, place, &mut budget, ctx, &mut out),
            Err(e) => return (out, Some(format!("{display}: {e}"))),
        }
    } else {
        let head = magic[..n].to_vec();
        scan_stream(display, head, file, 1, place, &mut budget, ctx, &mut out);
        if let (Some(r), Ok(m)) = (out.first_mut(), std::fs::metadata(path)) {
            r.bytes = m.len();
        }
    }
    (out, None)
}

#[allow(clippy::too_many_arguments)]
fn scan_zip<R: Read + Seek>(
    reader: R,
    display: String,
    depth: usize,
    place: Place,
    budget: &mut u64,
    ctx: &Ctx,
    out: &mut Vec<FileReport>,
) {
    let limits = &ctx.opts.limits;
    let mut archive = match zip::ZipArchive::new(reader) {
        Ok(a) => a,
        Err(e) => {
            out.push(FileReport::failed(display, "zip", format!("not a readable ZIP archive: {e}")));
            return;
        }
    };
    if xlsx::is_workbook(&archive) {
        scan_workbook(&mut archive, display, place, budget, ctx, out);
        return;
    }
    let mut summary = FileReport::new(display.clone(), "zip");
    summary.on_compromised_system = place.compromised;
    summary.accessed = place.accessed;
    if archive.len() > limits.max_entries {
        summary.errors.push(format!("{} entries; only the first {} read", archive.len(), limits.max_entries));
    }
    for i in 0..archive.len().min(limits.max_entries) {
        let entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                summary.errors.push(format!("entry {i}: {e}"));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map(|n| n.to_string()).unwrap_or_else(|_| format!("#{i}"));
        let member = format!("{display}!{name}");
        if entry.encrypted() {
            summary.errors.push(format!("{name}: encrypted, not read"));
            continue;
        }
        let compressed = entry.compressed_size();
        let allowed = limits.allowance(compressed, *budget);
        if entry.size() > allowed {
            summary.errors.push(format!(
                "{name}: declares {} bytes from {compressed} compressed — over the limit (suspected ZIP bomb), not read",
                entry.size()
            ));
            continue;
        }
        let mut limited = Limited {
            inner: entry,
            left: allowed,
            read: 0,
            what: format!("decompressed past {allowed} bytes from {compressed} compressed (suspected ZIP bomb); stopped"),
        };
        let mut head = vec![0u8; 4];
        let n = read_up_to(&mut limited, &mut head).unwrap_or(0);
        head.truncate(n);
        if head == b"PK\x03\x04" {
            if depth >= limits.max_depth {
                summary.errors.push(format!("{name}: archive nested deeper than {}, not read", limits.max_depth));
                continue;
            }
            let cap = limits.max_nested_bytes.min(limited.left);
            let mut data = head;
            let mut t = (&mut limited).take(cap + 1);
            if let Err(e) = t.read_to_end(&mut data) {
                summary.errors.push(format!("{name}: {e}"));
                continue;
            }
            if data.len() as u64 > cap {
                summary.errors.push(format!("{name}: nested archive larger than {cap} bytes, not opened"));
                continue;
            }
            *budget = budget.saturating_sub(data.len() as u64);
            scan_zip(Cursor::new(data), member, depth + 1, place, budget, ctx, out);
        } else {
            let before = out.len();
            scan_stream(member, head, &mut limited, depth, place, budget, ctx, out);
            *budget = budget.saturating_sub(limited.read);
            if let Some(r) = out.get_mut(before) {
                r.bytes = limited.read + n as u64;
            }
        }
    }
    out.push(summary);
}

fn scan_workbook<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    display: String,
    place: Place,
    budget: &mut u64,
    ctx: &Ctx,
    out: &mut Vec<FileReport>,
) {
    let shared = match xlsx::shared_strings(archive) {
        Ok(s) => s,
        Err(e) => {
            out.push(FileReport::failed(display, "xlsx", e.to_string()));
            return;
        }
    };
    let sheets = xlsx::sheet_names(archive);
    if sheets.is_empty() {
        out.push(FileReport::failed(display, "xlsx", "workbook has no worksheets".into()));
        return;
    }
    for name in sheets {
        let label = format!("{display}!{name}");
        let entry = match archive.by_name(&name) {
            Ok(e) => e,
            Err(e) => {
                out.push(FileReport::failed(label, "xlsx", e.to_string()));
                continue;
            }
        };
        let compressed = entry.compressed_size();
        let limits = &ctx.opts.limits;
        let allowed = limits.allowance(compressed, *budget);
        let mut limited = Limited {
            inner: entry,
            left: allowed,
            read: 0,
            what: format!("worksheet decompressed past {allowed} bytes (suspected ZIP bomb); stopped"),
        };
        let mut report = FileReport::new(label, "xlsx");
        report.encoding = Some("UTF-8".into());
        let mut rows = xlsx::SheetRows::new(&mut limited, &shared);
        read_table(&mut rows, &mut report, place, ctx);
        drop(rows);
        report.bytes = limited.read;
        *budget = budget.saturating_sub(limited.read);
        out.push(report);
    }
}

/// Plain streams: mail, text tables, other text.
#[allow(clippy::too_many_arguments)]
fn scan_stream<R: Read>(
    display: String,
    mut head: Vec<u8>,
    mut rest: R,
    depth: usize,
    place: Place,
    budget: &mut u64,
    ctx: &Ctx,
    out: &mut Vec<FileReport>,
) {
    // Enough of the start to tell text from binary and sniff the encoding.
    let want = 64 * 1024;
    let have = head.len();
    head.resize(want, 0);
    let n = read_up_to(&mut rest, &mut head[have..]).unwrap_or(0);
    head.truncate(have + n);
    if head.starts_with(b"PK\x03\x04") {
        // An archive arriving as a stream (stdin, a mail attachment): ZIP needs to seek,
        // so it is held in memory, within the nested-archive limit.
        let cap = ctx.opts.limits.max_nested_bytes.min(*budget);
        let mut data = head;
        if let Err(e) = (&mut rest).take(cap.saturating_sub(data.len() as u64) + 1).read_to_end(&mut data) {
            out.push(FileReport::failed(display, "zip", e.to_string()));
            return;
        }
        if data.len() as u64 > cap {
            out.push(FileReport::failed(display, "zip", format!("archive larger than {cap} bytes arriving as a stream, not opened")));
            return;
        }
        if depth > ctx.opts.limits.max_depth {
            out.push(FileReport::failed(display, "zip", format!("archive nested deeper than {}, not read", ctx.opts.limits.max_depth)));
            return;
        }
        scan_zip(Cursor::new(data), display, depth, place, budget, ctx, out);
        return;
    }
    if mail::is_mbox(&head) || mail::is_eml(&head) {
        scan_mail(display, head, rest, depth, place, budget, ctx, out);
        return;
    }
    let mut report = FileReport::new(display, "text");
    report.on_compromised_system = place.compromised;
    report.accessed = place.accessed;
    let encoding = text::sniff_encoding(&head);
    if encoding == encoding_rs::UTF_8 || encoding == encoding_rs::WINDOWS_1252 {
        let nuls = head.iter().filter(|b| **b == 0).count();
        if nuls * 100 > head.len().max(1) {
            report.file_type = "binary".into();
            report.reasons.push("binary content, not text".into());
            out.push(report);
            return;
        }
    }
    let mut text = text::open(head, rest);
    report.encoding = Some(text.encoding.name().to_string());
    let mut sample = Vec::new();
    let mut line = String::new();
    while sample.len() < 40 {
        match text.read_line(&mut line) {
            Ok(true) => sample.push(line.clone()),
            Ok(false) => break,
            Err(e) => {
                report.errors.push(format!("line {}: {e}", text.line + 1));
                break;
            }
        }
    }
    match table::sniff_delimiter(&sample) {
        Some(d) => {
            report.file_type = match d {
                b',' => "csv",
                b'\t' => "tsv",
                b';' => "ssv",
                _ => "psv",
            }
            .into();
            let mut rows = DelimitedRows::new(text, d, sample);
            read_table(&mut rows, &mut report, place, ctx);
        }
        None => {
            let mut counts = pii::Counts::default();
            for l in &sample {
                counts.add_text(l);
            }
            loop {
                match text.read_line(&mut line) {
                    Ok(true) => counts.add_text(&line),
                    Ok(false) => break,
                    Err(e) => {
                        report.errors.push(format!("line {}: {e}", text.line + 1));
                        break;
                    }
                }
            }
            report.rows = text.line;
            report.pii = counts.into_map();
            if text.overlong > 0 {
                report.skipped.insert(format!("lines longer than {} bytes", text::MAX_RECORD), text.overlong);
            }
        }
    }
    out.push(report);
}

/// A mailbox or message: attachments are examined like files, bodies for personal data.
#[allow(clippy::too_many_arguments)]
fn scan_mail<R: Read>(
    display: String,
    head: Vec<u8>,
    rest: R,
    depth: usize,
    place: Place,
    budget: &mut u64,
    ctx: &Ctx,
    out: &mut Vec<FileReport>,
) {
    let mbox = mail::is_mbox(&head);
    let mut report = FileReport::new(display.clone(), if mbox { "mbox" } else { "eml" });
    report.on_compromised_system = place.compromised;
    report.accessed = place.accessed;
    let mut pii = pii::Counts::default();
    let mut unparsed = 0u64;
    let mut oversized = 0u64;
    let mut nested = Vec::new();
    let mut message = |label: String, raw: &[u8], report: &mut FileReport, budget: &mut u64, nested: &mut Vec<FileReport>| {
        report.rows += 1;
        let Some(parts) = mail::parts(raw) else {
            unparsed += 1;
            return;
        };
        for t in &parts.texts {
            for line in t.lines() {
                pii.add_text(line);
            }
        }
        for (name, bytes) in parts.attachments {
            if depth >= ctx.opts.limits.max_depth {
                report.errors.push(format!("{label}: attachment {name} nested deeper than {}, not read", ctx.opts.limits.max_depth));
                continue;
            }
            *budget = budget.saturating_sub(bytes.len() as u64);
            let n = bytes.len() as u64;
            let before = nested.len();
            scan_stream(format!("{label}!{name}"), Vec::new(), Cursor::new(bytes), depth + 1, place, budget, ctx, nested);
            if let Some(r) = nested.get_mut(before) {
                r.bytes = n;
            }
        }
    };
    let input = Cursor::new(head).chain(rest);
    if mbox {
        let result = mail::split_mbox(input, |i, piece| match piece {
            mail::Piece::Message { bytes, .. } => message(format!("{display}!message {}", i + 1), bytes, &mut report, budget, &mut nested),
            mail::Piece::TooBig { .. } => oversized += 1,
        });
        if let Err(e) = result {
            report.errors.push(format!("reading mailbox: {e}"));
        }
    } else {
        let mut raw = Vec::new();
        match input.take(mail::MAX_MESSAGE as u64 + 1).read_to_end(&mut raw) {
            Ok(_) if raw.len() > mail::MAX_MESSAGE => oversized += 1,
            Ok(_) => message(display.clone(), &raw, &mut report, budget, &mut nested),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    if unparsed > 0 {
        report.skipped.insert("messages that could not be parsed".into(), unparsed);
    }
    if oversized > 0 {
        report.skipped.insert(format!("messages larger than {} MiB", mail::MAX_MESSAGE >> 20), oversized);
    }
    report.pii = pii.into_map();
    out.push(report);
    out.extend(nested);
}

/// Reads a table: classifies it from its first rows, then keys every register row.
///
/// Past the sample, rows are read on this thread and split into cells and keyed (or counted
/// for personal data) in parts of [`ROWS_PER_PART`] rows or [`PART_BYTES`] on every core,
/// so one large register uses them all. At most [`BYTES_IN_FLIGHT`] wait at a time, and
/// parts are reused only while small (memory stays bounded when rows are long); past that,
/// or with one thread, this thread keys the part itself, so it never waits on a pool that
/// may be busy with other files. The parts' figures are sums and the fingerprints a set, so
/// the result does not depend on the order the parts finish in; samples are taken in row
/// order.
fn read_table(rows: &mut dyn RowSource, report: &mut FileReport, place: Place, ctx: &Ctx) {
    report.on_compromised_system = place.compromised;
    report.accessed = place.accessed;
    let mut sample: Vec<Row> = Vec::new();
    let mut row = Row::default();
    let mut failed = None;
    while sample.len() < 50 {
        match rows.next_row(&mut row) {
            Ok(true) => {
                if !row.is_blank() {
                    sample.push(row.clone());
                }
            }
            Ok(false) => break,
            Err(e) => {
                failed = Some(format!("row {}: {e}", rows.position()));
                break;
            }
        }
    }
    let layout = register::classify(&sample);
    report.confidence = (layout.confidence * 100.0).round() / 100.0;
    report.reasons = layout.reasons.clone();
    report.register = layout.is_register();
    let table = Table {
        register: report.register,
        skip_header: usize::from(layout.header),
        // Concatenated exports repeat their header: such rows are not electors.
        header: layout.header.then(|| sample[0].cells().map(String::from).collect()),
        keyer: Keyer::new(&layout),
        layout,
        place,
    };
    let mut state = table.state(if report.register { BATCH } else { 0 });
    let mut keyer = table.keyer.clone();
    for r in sample.iter().skip(table.skip_header) {
        if !table.is_header(r) {
            state.row(&table, &mut keyer, r, ctx);
        }
    }
    if failed.is_none() && sample.len() == 50 {
        // The parts' sums, and their samples by part (taken in row order at the end).
        let sums = Mutex::new(table.state(0));
        let samples: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
        let spare: Mutex<Vec<Vec<Row>>> = Mutex::new(Vec::new());
        let bytes_in_flight = std::sync::atomic::AtomicUsize::new(0);
        let alone = rayon::current_num_threads() <= 1;
        // Keys the first `n` rows of a part and gives the part back for reuse.
        let key = |index: usize, n: usize, mut part: Vec<Row>| {
            let mut st = table.state(n);
            let mut keyer = table.keyer.clone();
            for r in &mut part[..n] {
                r.split_pending();
                if !r.is_blank() && !table.is_header(r) {
                    st.row(&table, &mut keyer, r, ctx);
                }
            }
            st.flush(ctx);
            if !st.samples.is_empty() {
                samples.lock().unwrap_or_else(|p| p.into_inner()).push((index, std::mem::take(&mut st.samples)));
            }
            sums.lock().unwrap_or_else(|p| p.into_inner()).merge(st);
            if part.iter().map(Row::capacity).sum::<usize>() <= 2 * PART_BYTES {
                spare.lock().unwrap_or_else(|p| p.into_inner()).push(part);
            }
        };
        rayon::in_place_scope(|s| {
            for index in 0.. {
                let mut part = spare.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
                let mut n = 0;
                let mut bytes = 0;
                let mut end = false;
                while n < ROWS_PER_PART && bytes < PART_BYTES {
                    if part.len() == n {
                        part.push(Row::default());
                    }
                    match rows.next_row_unsplit(&mut part[n]) {
                        Ok(true) => {
                            bytes += part[n].size();
                            n += 1;
                        }
                        Ok(false) => {
                            end = true;
                            break;
                        }
                        Err(e) => {
                            failed = Some(format!("row {}: {e}", rows.position()));
                            end = true;
                            break;
                        }
                    }
                }
                if n > 0 {
                    if alone || bytes_in_flight.load(Ordering::Acquire) + bytes > BYTES_IN_FLIGHT {
                        key(index, n, part);
                    } else {
                        bytes_in_flight.fetch_add(bytes, Ordering::AcqRel);
                        let (key, bytes_in_flight) = (&key, &bytes_in_flight);
                        s.spawn(move |_| {
                            key(index, n, part);
                            bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
                        });
                    }
                }
                if end {
                    break;
                }
            }
        });
        state.merge(sums.into_inner().unwrap_or_else(|p| p.into_inner()));
        let mut samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());
        samples.sort_unstable_by_key(|p| p.0);
        for (_, s) in samples {
            let room = 3usize.saturating_sub(state.samples.len());
            state.samples.extend(s.into_iter().take(room));
        }
    }
    state.flush(ctx);
    report.rows += state.rows;
    report.samples.extend(state.samples);
    report.errors.extend(state.errors);
    if let Some(e) = failed {
        report.errors.push(e);
    }
    for (why, n) in rows.skipped() {
        report.skipped.insert(why, n);
    }
    if state.no_name > 0 {
        report.skipped.insert("register rows without a name".into(), state.no_name);
    }
    if report.register {
        for (name, n) in CATEGORIES.iter().zip(state.categories) {
            report.categories.insert(name.to_string(), n);
        }
    }
    report.pii = state.pii.into_map();
}

/// Rows keyed together by one task when a table is spread over the cores.
const ROWS_PER_PART: usize = 1024;
/// A part ends at this many bytes of rows too (long rows: fewer per part).
const PART_BYTES: usize = 1 << 20;
/// Bytes of one table's rows queued for the pool at most.
const BYTES_IN_FLIGHT: usize = 4 << 20;

/// What every part of one table is read with.
struct Table {
    register: bool,
    skip_header: usize,
    header: Option<Vec<String>>,
    keyer: Keyer,
    layout: Layout,
    place: Place,
}

impl Table {
    fn is_header(&self, r: &Row) -> bool {
        self.header.as_ref().is_some_and(|h| r.len() == h.len() && r.cells().zip(h).all(|(a, b)| a == b))
    }

    fn state(&self, batch: usize) -> TableState {
        TableState {
            batch: Vec::with_capacity(if self.register { batch.min(BATCH) } else { 0 }),
            pii: pii::Counts::default(),
            categories: [0u64; 5],
            no_name: 0,
            rows: 0,
            samples: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// The figures of a table, or of one part of it.
struct TableState {
    batch: Vec<u128>,
    pii: pii::Counts,
    categories: [u64; 5],
    no_name: u64,
    rows: u64,
    samples: Vec<String>,
    errors: Vec<String>,
}

impl TableState {
    fn row(&mut self, table: &Table, keyer: &mut Keyer, row: &Row, ctx: &Ctx) {
        self.rows += 1;
        if !table.register {
            for c in row.cells() {
                self.pii.add_text(c);
            }
            return;
        }
        match keyer.key(row) {
            Some(k) => {
                for (i, n) in self.categories.iter_mut().enumerate() {
                    if k.categories & (1 << i) != 0 {
                        *n += 1;
                    }
                }
                if ctx.opts.show_samples && self.samples.len() < 3 {
                    self.samples.push(register::masked_sample(&table.layout, row));
                }
                self.batch.push(count::entry(k.hash, k.categories, table.place.compromised, table.place.accessed));
                if self.batch.len() >= BATCH {
                    self.flush(ctx);
                }
            }
            None => self.no_name += 1,
        }
        for &(c, r) in &table.layout.columns {
            match r {
                register::Role::Email if !row.get(c).is_empty() => self.pii.add("email_addresses", 1),
                register::Role::Phone if !row.get(c).is_empty() => self.pii.add("phone_numbers", 1),
                register::Role::Dob if !row.get(c).is_empty() => self.pii.add("dates_of_birth", 1),
                _ => {}
            }
        }
    }

    /// Hands the fingerprints kept so far to the shared counter.
    fn flush(&mut self, ctx: &Ctx) {
        if self.batch.is_empty() {
            return;
        }
        let mut c = ctx.counter.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(counter) = c.as_mut()
            && let Err(e) = counter.extend(&self.batch)
        {
            self.errors.push(format!("counting: {e}"));
            *c = Err(e);
        }
        self.batch.clear();
    }

    /// Adds another part's figures (its fingerprints are already with the counter).
    fn merge(&mut self, p: TableState) {
        self.pii.merge(p.pii);
        for (a, b) in self.categories.iter_mut().zip(p.categories) {
            *a += b;
        }
        self.no_name += p.no_name;
        self.rows += p.rows;
        let room = 3usize.saturating_sub(self.samples.len());
        self.samples.extend(p.samples.into_iter().take(room));
        // One failed counter is named once.
        for e in p.errors {
            if !self.errors.contains(&e) {
                self.errors.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessed_paths_match_files_and_folders() {
        let local = components("/cases/FS01/Shares/Registers/2021/LA-Northfield-register-2021.csv");
        assert!(path_matches(&local, &components("D:\\Shares\\Registers\\2021\\LA-Northfield-register-2021.csv")));
        assert!(path_matches(&local, &components("2021\\LA-Northfield-register-2021.csv")));
        assert!(path_matches(&local, &components("\\\\FS01\\Registers\\2021")));
        assert!(!path_matches(&local, &components("D:\\Shares\\Registers\\2022\\LA-Northfield-register-2021.csv")));
        assert!(!path_matches(&local, &components("\\\\FS01\\Registers\\2022")));
    }
}

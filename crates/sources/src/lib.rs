//! Readers that turn the files a breached institution hands over into [`Event`]s.
//!
//! The format is chosen by content, never by extension ([`sniff`]): EVTX by its
//! `ElfFile` magic, JSON by its first byte, W3C and Exchange CSV logs by their
//! `#` directives. Gzip is unwrapped transparently. Every reader is hostile-input
//! safe: a corrupt record is skipped and counted in the [`FileReport`] with its
//! position, a record larger than [`ReadOptions::max_record_bytes`] is skipped
//! without being held in memory, and reading goes on.
//!
//! Adding a source: write a module with a `read(…, &mut Event, sink)` function
//! that fills the reused event per record, add a [`Format`] variant and teach
//! [`sniff`] to recognise it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use portcullis_event::Event;

pub mod archive;
pub mod evtx;
pub mod exchange_csv;
pub mod json;
pub mod layouts;
pub mod lines;
pub mod quoted;
pub mod split;
pub mod tail;
pub mod w3c;

/// A file format Portcullis can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Evtx,
    Json,
    W3c,
    ExchangeCsv,
    /// A ZIP archive, its members read as files.
    Zip,
    /// A tar archive (usually gzipped), its members read as files.
    Tar,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Evtx => "evtx",
            Format::Json => "json",
            Format::W3c => "w3c",
            Format::ExchangeCsv => "exchange_csv",
            Format::Zip => "zip",
            Format::Tar => "tar",
        }
    }
}

/// Limits and parallelism for reading.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// A line, JSON object or CSV record longer than this is skipped (and counted).
    pub max_record_bytes: usize,
    /// Threads the EVTX parser may use for one file (1 = parse inline).
    pub evtx_threads: usize,
    /// Largest decompressed size of a gzipped EVTX file (it is unpacked to a temporary file).
    pub max_gunzip_bytes: u64,
    /// `--assume-timezone`: the UTC offset (seconds) of times written without a zone, and
    /// of collectors' times when no offset could be learned from the events themselves.
    pub assume_utc_offset_secs: Option<i64>,
    /// The number of the stream's first line (1 for a whole file; later for a followed
    /// file read piece by piece, so records keep the numbers a whole read gives them).
    pub first_line: u64,
    /// How a JSON file's collector clock offset is found.
    pub collector_clock: CollectorClock,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_record_bytes: 16 * 1024 * 1024,
            evtx_threads: 1,
            max_gunzip_bytes: 16 << 30,
            assume_utc_offset_secs: None,
            first_line: 1,
            collector_clock: CollectorClock::Learn,
        }
    }
}

/// Where a JSON file's collector clock offset (see [`json::Clock`]) comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CollectorClock {
    /// Learned from the start of the stream.
    #[default]
    Learn,
    /// Already learned from the start of the file (microseconds to add, or none).
    Known(Option<i64>),
}

/// How many skip notes a report keeps verbatim; the rest are only counted.
pub const MAX_NOTES: usize = 20;

/// What reading one file produced.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub format: Option<Format>,
    pub gzip: bool,
    pub bytes: u64,
    pub events: u64,
    /// Records (or whole EVTX chunks, see `notes`) that could not be read.
    pub skipped: u64,
    /// Lines that held invalid UTF-8 and were decoded with replacement characters.
    pub lossy: u64,
    /// The first [`MAX_NOTES`] reasons for skips, with their position.
    pub notes: Vec<String>,
    /// For Windows events exported by another tool: the layout recognised (first seen).
    pub layout: Option<layouts::Layout>,
    /// What the reader changed or could not trust, once per file (e.g. a collector's clock
    /// offset corrected); not skips.
    pub warnings: Vec<String>,
    /// The earliest and latest event time read (set by the caller that sees the events,
    /// after any time filter), for saying which period a log covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_span: Option<(portcullis_event::Timestamp, portcullis_event::Timestamp)>,
}

impl FileReport {
    pub(crate) fn skip(&mut self, note: impl FnOnce() -> String) {
        self.skipped += 1;
        if self.notes.len() < MAX_NOTES {
            self.notes.push(note());
        }
    }

    /// Counts `n` records (or lines) skipped for one reason, with one note.
    pub(crate) fn skip_n(&mut self, n: u64, note: impl FnOnce() -> String) {
        self.skipped += n;
        if self.notes.len() < MAX_NOTES {
            self.notes.push(note());
        }
    }
}

/// A file that could not be read at all.
#[derive(Debug)]
pub enum SourceError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// The content matches no supported format.
    Unrecognised {
        path: PathBuf,
    },
    /// The format was recognised but the file is unreadable as a whole (e.g. a bad EVTX header).
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    /// Not a regular file (a FIFO, socket or device): skipped without being opened, since
    /// opening or reading it could wait for ever.
    NotRegular {
        path: PathBuf,
        what: &'static str,
    },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            SourceError::Unrecognised { path } => {
                write!(f, "{}: not a format Portcullis reads (EVTX, JSON, W3C, Exchange CSV, or a ZIP/tar of them)", path.display())
            }
            SourceError::Corrupt { path, reason } => write!(f, "{}: {reason}", path.display()),
            SourceError::NotRegular { path, what } => write!(f, "{}: {what}, not a regular file: skipped", path.display()),
        }
    }
}

impl std::error::Error for SourceError {}

/// Recognises a format from the first bytes of a (decompressed) file.
pub fn sniff(prefix: &[u8]) -> Option<Format> {
    if prefix.starts_with(b"ElfFile\0") {
        return Some(Format::Evtx);
    }
    let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &text[start..];
    match text[0] {
        b'{' | b'[' => Some(Format::Json),
        b'R' if text.starts_with(b"Record ") => Some(Format::Json), // evtx_dump output
        b'#' => {
            let mut saw_fields = None;
            for line in text.split(|&b| b == b'\n').take(64) {
                if !line.starts_with(b"#") {
                    // Data before any #Fields: a W3C log if its directives say so (read with
                    // IIS's default fields, see `w3c`).
                    if saw_fields.is_none() && w3c_directive_seen(text, line) {
                        return Some(Format::W3c);
                    }
                    break;
                }
                if starts_with_ci(line, b"#Software: Microsoft Exchange") || starts_with_ci(line, b"#Log-type:") {
                    return Some(Format::ExchangeCsv);
                }
                if let Some(rest) = line.strip_prefix(b"#Fields:") {
                    saw_fields = Some(if rest.contains(&b',') { Format::ExchangeCsv } else { Format::W3c });
                    break;
                }
            }
            saw_fields
        }
        b'0'..=b'9' if text.split(|&b| b == b'\n').next().is_some_and(w3c::is_default_iis_line) => Some(Format::W3c),
        _ => None,
    }
}

/// Whether the directive lines before `data` in `text` are W3C's own.
fn w3c_directive_seen(text: &[u8], data: &[u8]) -> bool {
    let head = &text[..(data.as_ptr() as usize - text.as_ptr() as usize).min(text.len())];
    head.split(|&b| b == b'\n')
        .any(|l| ["#Software:", "#Version:", "#Date:", "#Start-Date:", "#Remark:"].iter().any(|d| starts_with_ci(l, d.as_bytes())))
        && w3c::is_default_iis_line(data)
}

fn starts_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

/// Expands files and directories (recursively, not following directory symlinks) into a
/// sorted list of files. Paths that do not exist are returned as errors.
pub fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<SourceError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &mut files, &mut errors),
            Ok(_) => files.push(p.clone()),
            Err(error) => errors.push(SourceError::Io { path: p.clone(), error }),
        }
    }
    files.sort();
    files.dedup();
    (files, errors)
}

/// [`collect_files`] without the FIFOs, sockets and devices given directly: each is named in
/// the errors and never opened (opening a FIFO would wait for a writer). For readers that
/// open files themselves (`mail`, `exposure`); [`read_file`] refuses them on its own.
pub fn collect_regular_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<SourceError>) {
    let (files, mut errors) = collect_files(paths);
    let files = files
        .into_iter()
        .filter(|f| match std::fs::metadata(f).ok().and_then(|m| not_regular(f, &m)) {
            Some(e) => {
                errors.push(e);
                false
            }
            None => true,
        })
        .collect();
    (files, errors)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<SourceError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(error) => {
            errors.push(SourceError::Io { path: dir.to_path_buf(), error });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, errors),
            Ok(t) if t.is_file() => files.push(path),
            Ok(t) if t.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) => {
                files.push(path);
            }
            _ => {}
        }
    }
}

/// Reads one file, calling `sink` with each event (the same `Event` value, refilled).
/// `sink` returns `Break` to stop early.
pub fn read_file(path: &Path, opts: &ReadOptions, sink: &mut dyn FnMut(&Event) -> ControlFlow<()>) -> Result<FileReport, SourceError> {
    let io_err = |error| SourceError::Io { path: path.to_path_buf(), error };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if let Some(e) = not_regular(path, &meta) {
        return Err(e);
    }
    let mut file = File::open(path).map_err(io_err)?;
    let bytes = file.metadata().map_err(io_err)?.len();
    let mut report = FileReport { path: path.to_path_buf(), bytes, ..Default::default() };

    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    if archive::is_zip(&magic[..n]) {
        archive::read_zip(BufReader::new(file), path, opts, &mut report, sink)?;
        return Ok(report);
    }
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        report.gzip = true;
        let mut reader = BufReader::with_capacity(256 * 1024, flate2::read::MultiGzDecoder::new(file));
        let mut head = Vec::with_capacity(512);
        (&mut reader).take(512).read_to_end(&mut head).map_err(io_err)?;
        if archive::is_tar(&head) {
            archive::read_tar(io::Cursor::new(head).chain(reader), path, opts, &mut report, sink)?;
            return Ok(report);
        }
        let mut reader = BufReader::with_capacity(256 * 1024, io::Cursor::new(head).chain(reader));
        let format = sniff(reader.fill_buf().map_err(io_err)?).ok_or_else(|| SourceError::Unrecognised { path: path.to_path_buf() })?;
        report.format = Some(format);
        if format == Format::Evtx {
            // The EVTX parser seeks, so the file is unpacked to a temporary file first.
            let mut tmp = tempfile::tempfile().map_err(io_err)?;
            let (copied, cut) = copy_until_error(&mut reader.take(opts.max_gunzip_bytes + 1), &mut tmp).map_err(io_err)?;
            if let Some(e) = cut {
                // What was unpacked is read; the chunk and file headers count what is missing.
                report.warnings.push(format!("the gzip stream ends early after {copied} bytes ({e}); the EVTX data up to there is read"));
            }
            if copied > opts.max_gunzip_bytes {
                return Err(SourceError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("decompresses to more than {} bytes; raise the limit to read it", opts.max_gunzip_bytes),
                });
            }
            tmp.rewind().map_err(io_err)?;
            evtx::read(tmp, path, opts, &mut report, sink)?;
        } else {
            match read_text(format, reader, path, opts, &mut report, sink) {
                // A truncated or corrupt stream after some records: what was read stands
                // (it may already have been hunted); the rest is a counted skip.
                Err(SourceError::Io { error, .. }) if report.events > 0 || report.skipped > 0 => {
                    let events = report.events;
                    report.skip(|| {
                        format!("the gzip stream ends early after {events} events ({error}); the rest of the file cannot be read")
                    });
                }
                other => other?,
            }
        }
        return Ok(report);
    }

    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(io_err)?;
    if archive::is_tar(head) {
        let file = reader.into_inner();
        archive::read_tar(BufReader::new(file), path, opts, &mut report, sink)?;
        return Ok(report);
    }
    let format = sniff(head).ok_or_else(|| SourceError::Unrecognised { path: path.to_path_buf() })?;
    report.format = Some(format);
    if format == Format::Evtx {
        let mut file = reader.into_inner();
        file.rewind().map_err(io_err)?;
        evtx::read(file, path, opts, &mut report, sink)?;
    } else {
        read_text(format, reader, path, opts, &mut report, sink)?;
    }
    Ok(report)
}

pub(crate) fn read_text(
    format: Format,
    reader: impl BufRead,
    path: &Path,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let res = match format {
        Format::Json => json::read(reader, opts, report, sink),
        Format::W3c => w3c::read(reader, opts, report, sink),
        Format::ExchangeCsv => exchange_csv::read(reader, opts, report, sink),
        Format::Evtx | Format::Zip | Format::Tar => {
            return Err(SourceError::Corrupt { path: path.to_path_buf(), reason: "not a text format".into() });
        }
    };
    res.map_err(|error| SourceError::Io { path: path.to_path_buf(), error })
}

/// The error for a path that is not a regular file (a FIFO, socket or device), which no
/// reader should open: opening a FIFO waits for a writer, reading a device may never end.
pub fn not_regular(path: &Path, meta: &std::fs::Metadata) -> Option<SourceError> {
    (!meta.is_file()).then(|| SourceError::NotRegular { path: path.to_path_buf(), what: file_kind(meta) })
}

/// What a path that is not a regular file is, for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if meta.is_dir() { "a directory" } else { "a special file" }
}

/// Copies until the input ends or fails; returns the bytes copied and the read error that
/// ended it early, if any (a write error is an error).
fn copy_until_error(r: &mut impl Read, w: &mut impl io::Write) -> io::Result<(u64, Option<io::Error>)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok((copied, None)),
            Ok(n) => {
                w.write_all(&buf[..n])?;
                copied += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Ok((copied, Some(e))),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff(b"ElfFile\0\0\0"), Some(Format::Evtx));
        assert_eq!(sniff(b"\xEF\xBB\xBF  {\"a\":1}"), Some(Format::Json));
        assert_eq!(sniff(b"[{}]"), Some(Format::Json));
        assert_eq!(
            sniff(b"#Software: Microsoft Internet Information Services 10.0\r\n#Fields: date time cs-method\r\n"),
            Some(Format::W3c)
        );
        assert_eq!(sniff(b"#Software: Microsoft Exchange Server\r\n#Fields: DateTime,RequestId\r\n"), Some(Format::ExchangeCsv));
        assert_eq!(sniff(b"#Fields: date-time,client-ip\n"), Some(Format::ExchangeCsv));
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"# just a comment\nfoo"), None);
        // IIS data before any #Fields: (a log whose start was cut, or written without it).
        let data = b"2021-08-24 02:13:00 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 12\r\n";
        assert_eq!(sniff(data), Some(Format::W3c));
        let mut with_directives = b"#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n".to_vec();
        with_directives.extend_from_slice(data);
        assert_eq!(sniff(&with_directives), Some(Format::W3c));
        assert_eq!(sniff(b"# comment\n2021-08-24 02:13:00 a b\n"), None);
        assert_eq!(sniff(b"2021-08-24 02:13:00 not a log line\n"), None);
    }
}

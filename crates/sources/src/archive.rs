//! Archives as folders: ZIP and tar (plain or gzipped) read member by member, each member
//! recognised by content like any file, within [`Limits`] that stop archive bombs (a
//! decompression ratio past a floor, a total budget per top-level file, nesting depth,
//! entry count). The same limits and [`Limited`] reader serve `exposure`.

use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::ops::ControlFlow;
use std::path::Path;

use portcullis_event::Event;

use crate::{FileReport, Format, ReadOptions, SourceError, read_up_to, sniff};

/// Bounds on archives (hostile archives must not exhaust disk, memory or time).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Archives inside archives, counting the outermost as 1.
    pub max_depth: usize,
    /// Entries read from one archive.
    pub max_entries: usize,
    /// Decompressed bytes read from one top-level file, all entries together.
    pub max_total_bytes: u64,
    /// An entry may decompress to at most this many times its compressed size...
    pub max_ratio: u64,
    /// ...once it is past this size (small files compress well legitimately).
    pub ratio_floor: u64,
    /// A nested archive or an EVTX member is held in memory (both need to seek): at most this big.
    pub max_nested_bytes: u64,
}

impl Limits {
    /// Bytes one entry of `compressed` bytes may decompress to, within what is left of
    /// the file's budget.
    pub fn allowance(&self, compressed: u64, budget: u64) -> u64 {
        self.ratio_floor.max(compressed.saturating_mul(self.max_ratio)).min(budget)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 4,
            max_entries: 100_000,
            max_total_bytes: 64 << 30,
            max_ratio: 200,
            ratio_floor: 16 << 20,
            max_nested_bytes: 1 << 30,
        }
    }
}

/// A reader that fails once more than `left` bytes have come out of it.
pub struct Limited<R> {
    pub inner: R,
    pub left: u64,
    pub read: u64,
    /// The error given when the limit is passed.
    pub what: String,
}

impl<R: Read> Limited<R> {
    pub fn new(inner: R, left: u64, what: String) -> Self {
        Limited { inner, left, read: 0, what }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Is there more? One byte tells.
            let mut one = [0u8; 1];
            return match self.inner.read(&mut one)? {
                0 => Ok(0),
                _ => Err(io::Error::other(self.what.clone())),
            };
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// Whether `head` (the first bytes of a file) starts a ZIP archive.
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Whether `head` (at least 262 bytes of a decompressed stream) is a tar archive.
pub fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// What reading an archive's members needs: the options, the run's sink, the archive's
/// report (events, skips and notes of every member add up there) and the budget left.
struct Walk<'a> {
    opts: &'a ReadOptions,
    limits: Limits,
    report: &'a mut FileReport,
    budget: u64,
    /// The event given to the sink, with `member` set (copied from the member reader's).
    event: Event,
    sink: &'a mut dyn FnMut(&Event) -> ControlFlow<()>,
    stopped: bool,
}

/// Reads a ZIP archive's members as files.
pub fn read_zip<R: Read + Seek>(
    reader: R,
    path: &Path,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    report.format = Some(Format::Zip);
    let limits = Limits::default();
    let mut walk = Walk { opts, budget: limits.max_total_bytes, limits, report, event: Event::default(), sink, stopped: false };
    walk.zip(reader, "", 1).map_err(|reason| SourceError::Corrupt { path: path.to_path_buf(), reason })
}

/// Reads a (decompressed) tar stream's members as files.
pub fn read_tar(
    reader: impl Read,
    path: &Path,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    report.format = Some(Format::Tar);
    let limits = Limits::default();
    let mut walk = Walk { opts, budget: limits.max_total_bytes, limits, report, event: Event::default(), sink, stopped: false };
    let mut reader = reader;
    walk.tar(&mut reader, "", 1).map_err(|reason| SourceError::Corrupt { path: path.to_path_buf(), reason })
}

impl Walk<'_> {
    fn skip(&mut self, note: String) {
        self.report.skip(|| note);
    }

    fn zip<R: Read + Seek>(&mut self, reader: R, prefix: &str, depth: usize) -> Result<(), String> {
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| format!("not a readable ZIP archive: {e}"))?;
        if archive.len() > self.limits.max_entries {
            self.skip(format!("{prefix}: {} entries; only the first {} read", archive.len(), self.limits.max_entries));
        }
        for i in 0..archive.len().min(self.limits.max_entries) {
            if self.stopped {
                break;
            }
            let entry = match archive.by_index(i) {
                Ok(e) => e,
                Err(e) => {
                    self.skip(format!("{prefix}entry {i}: {e}"));
                    continue;
                }
            };
            if entry.is_dir() {
                continue;
            }
            let name = format!("{prefix}{}", entry.name().map(|n| n.into_owned()).unwrap_or_else(|_| format!("#{i}")));
            if entry.encrypted() {
                self.skip(format!("{name}: encrypted, not read"));
                continue;
            }
            let compressed = entry.compressed_size();
            let allowed = self.limits.allowance(compressed, self.budget);
            if entry.size() > allowed {
                self.skip(format!(
                    "{name}: declares {} bytes from {compressed} compressed, over the limit (suspected archive bomb); not read",
                    entry.size()
                ));
                continue;
            }
            let what = format!("{name}: decompressed past {allowed} bytes from {compressed} compressed (suspected archive bomb); stopped");
            let mut limited = Limited::new(entry, allowed, what);
            self.member(&mut limited, &name, depth);
            self.budget = self.budget.saturating_sub(limited.read);
        }
        Ok(())
    }

    fn tar(&mut self, reader: &mut dyn Read, prefix: &str, depth: usize) -> Result<(), String> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| format!("not a readable tar archive: {e}"))?;
        for (i, entry) in entries.enumerate() {
            if self.stopped {
                break;
            }
            if i >= self.limits.max_entries {
                self.skip(format!("{prefix}: more than {} entries; the rest not read", self.limits.max_entries));
                break;
            }
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // A tar stream cannot be resynchronised after a broken header.
                    self.skip(format!("{prefix}entry {i}: {e}; the rest of the archive not read"));
                    break;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = format!("{prefix}{}", entry.path().map(|p| p.display().to_string()).unwrap_or_else(|_| format!("#{i}")));
            let allowed = self.limits.max_nested_bytes.max(self.limits.ratio_floor).min(self.budget);
            if entry.size() > self.budget {
                self.skip(format!("{name}: {} bytes, over what is left of the archive's budget; not read", entry.size()));
                continue;
            }
            let what = format!("{name}: larger than {allowed} bytes; stopped");
            let mut limited = Limited::new(entry, self.budget, what);
            self.member(&mut limited, &name, depth);
            self.budget = self.budget.saturating_sub(limited.read);
        }
        Ok(())
    }

    /// One member: recognised by content (gzip unwrapped), read by its format's reader,
    /// or opened as a nested archive.
    fn member(&mut self, limited: &mut dyn Read, name: &str, depth: usize) {
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut &mut *limited, &mut magic).unwrap_or(0);
        let head = Cursor::new(magic[..n].to_vec()).chain(limited);
        if n == 2 && magic == [0x1f, 0x8b] {
            let decoded = flate2::read::MultiGzDecoder::new(head);
            self.content(&mut BufReader::with_capacity(256 * 1024, decoded), name, depth);
        } else {
            self.content(&mut BufReader::with_capacity(256 * 1024, head), name, depth);
        }
    }

    fn content(&mut self, reader: &mut dyn BufRead, name: &str, depth: usize) {
        let mut head = Vec::with_capacity(512);
        // Enough to see a tar header; what was peeked is chained back in front.
        let peek = match reader.take(512).read_to_end(&mut head) {
            Ok(_) => head,
            Err(e) => {
                self.skip(format!("{name}: {e}"));
                return;
            }
        };
        let mut reader = Cursor::new(peek.clone()).chain(reader);
        let nested = is_zip(&peek) || is_tar(&peek);
        if nested && depth >= self.limits.max_depth {
            self.skip(format!("{name}: archive nested deeper than {}, not read", self.limits.max_depth));
            return;
        }
        let prefix = format!("{name}/");
        if is_tar(&peek) {
            if let Err(e) = self.tar(&mut reader, &prefix, depth + 1) {
                self.skip(format!("{name}: {e}"));
            }
            return;
        }
        let Some(format) = (if is_zip(&peek) { Some(Format::Zip) } else { sniff(&peek) }) else {
            self.report.warnings.push(format!("{name}: not a format Portcullis reads; skipped"));
            return;
        };
        if matches!(format, Format::Zip | Format::Evtx) {
            // Both need to seek: held in memory, within bounds.
            let cap = self.limits.max_nested_bytes.min(self.budget);
            let mut data = Vec::new();
            match (&mut reader).take(cap + 1).read_to_end(&mut data) {
                Ok(_) if data.len() as u64 > cap => {
                    self.skip(format!("{name}: larger than {cap} bytes, not opened"));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    self.skip(format!("{name}: {e}"));
                    return;
                }
            }
            if format == Format::Zip {
                if let Err(e) = self.zip(Cursor::new(data), &prefix, depth + 1) {
                    self.skip(format!("{name}: {e}"));
                }
                return;
            }
            let mut member = FileReport::default();
            let result = self.with_member(name, &mut member, |member, (opts, sink)| {
                crate::evtx::read(Cursor::new(data), Path::new(name), opts, member, sink)
            });
            if let Err(e) = result {
                self.skip(format!("{name}: {e}"));
            }
            return;
        }
        let mut member = FileReport::default();
        let result = self
            .with_member(name, &mut member, |member, (opts, sink)| crate::read_text(format, reader, Path::new(name), opts, member, sink));
        if let Err(e) = result {
            self.skip(format!("{name}: {e}"));
        }
    }

    /// Runs a member's reader with a sink that names the member on each event, then adds
    /// the member's counts and notes to the archive's report.
    fn with_member<T>(
        &mut self,
        name: &str,
        member: &mut FileReport,
        read: impl FnOnce(&mut FileReport, (&ReadOptions, &mut dyn FnMut(&Event) -> ControlFlow<()>)) -> T,
    ) -> T {
        let Walk { opts, event, sink, stopped, .. } = self;
        let mut named = |ev: &Event| {
            event.clone_from(ev);
            event.member.clear();
            event.member.push_str(name);
            let flow = sink(event);
            if flow.is_break() {
                *stopped = true;
            }
            flow
        };
        let result = read(member, (*opts, &mut named));
        self.report.events += member.events;
        self.report.lossy += member.lossy;
        self.report.skipped += member.skipped;
        for n in member.notes.drain(..) {
            if self.report.notes.len() < crate::MAX_NOTES {
                self.report.notes.push(format!("{name}: {n}"));
            }
        }
        for w in member.warnings.drain(..) {
            self.report.warnings.push(format!("{name}: {w}"));
        }
        if self.report.layout.is_none() {
            self.report.layout = member.layout;
        }
        result
    }
}

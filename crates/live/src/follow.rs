//! Following files as they are written: new files found in watched folders, growing text
//! logs read piece by piece from their checkpointed offset, rotation by rename (a file is
//! known by its identity, not its name), truncation in place, a reused inode (told apart
//! by the first bytes), and files that can only be read whole (EVTX, gzip, ZIP) read once
//! they have stopped changing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_event::Event;
use portcullis_sources::tail::{TailState, TextFormat};
use portcullis_sources::{FileReport, ReadOptions};

/// How many first bytes tell one file from another that reused its inode.
const FINGERPRINT_BYTES: u64 = 1024;

/// A file read whole (EVTX, gzip, ZIP) that has not changed for this long is complete.
const WHOLE_FILE_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// Where reading one file stands (what a checkpoint keeps).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileState {
    /// The file's identity on its file system (`device:inode`).
    pub key: String,
    /// Where it was last seen.
    pub path: PathBuf,
    /// Hash of the first `fingerprint_len` bytes.
    pub fingerprint: u64,
    pub fingerprint_len: u64,
    /// Bytes read (text) or the size read (whole files).
    pub offset: u64,
    pub how: Reading,
}

/// How a file is read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// Not enough bytes yet to tell its format.
    Unknown,
    /// A text log followed as it grows.
    Text(TailState),
    /// Read whole once it stops changing; `read` is the (size, modified) last read.
    Whole { seen: (u64, i64), read: Option<(u64, i64)> },
    /// Not a log (said once).
    NotALog,
}

/// What one poll read from one file.
#[derive(Debug)]
pub struct Piece {
    pub key: String,
    pub report: FileReport,
    /// Something to tell the operator (rotation, truncation, a file that is not a log).
    pub notes: Vec<String>,
}

/// Limits of one poll.
#[derive(Clone, Debug)]
pub struct PollLimits {
    /// Most bytes read from one file in one poll.
    pub per_file: u64,
    /// Most bytes read in one poll over every file.
    pub total: u64,
}

impl Default for PollLimits {
    fn default() -> Self {
        PollLimits { per_file: 16 << 20, total: 64 << 20 }
    }
}

/// The files under some paths, followed.
pub struct Follower {
    paths: Vec<PathBuf>,
    pub files: HashMap<String, FileState>,
    pub read: ReadOptions,
    /// Unread bytes of followed text files at the end of the last poll.
    pub backlog: u64,
}

impl Follower {
    pub fn new(paths: Vec<PathBuf>, read: ReadOptions, files: Vec<FileState>) -> Follower {
        Follower { paths, files: files.into_iter().map(|f| (f.key.clone(), f)).collect(), read, backlog: 0 }
    }

    /// Starts every file that exists now at its end (`--from-end`): only what is written
    /// from now on is read.
    pub fn skip_existing(&mut self) {
        let (files, _) = portcullis_sources::collect_files(&self.paths);
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let Some(key) = identity(&meta) else { continue };
            if self.files.contains_key(&key) {
                continue;
            }
            let mut state = new_state(key, &path);
            let mut head = Vec::new();
            if File::open(&path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head)).is_ok() {
                state.how = classify(&head, meta.len());
                if let Reading::Text(t) = &mut state.how {
                    // Count the lines and keep the directives in effect, reading nothing else.
                    // Count the lines and keep the directives in effect, reading no event.
                    if let Ok(f) = File::open(&path) {
                        let mut r = std::io::BufReader::new(f.take(meta.len()));
                        let (mut batch, mut line, mut whole) = (Vec::new(), Vec::new(), 0u64);
                        while matches!(std::io::BufRead::read_until(&mut r, b'\n', &mut line), Ok(n) if n > 0) {
                            if line.last() != Some(&b'\n') {
                                break; // a line still being written: read when it ends
                            }
                            whole += line.len() as u64;
                            batch.extend_from_slice(&line);
                            line.clear();
                            if batch.len() > 1 << 20 {
                                t.skip(&batch);
                                batch.clear();
                            }
                        }
                        t.skip(&batch);
                        t.clock = Some(portcullis_sources::json::Clock::learn(&head, &self.read).learned_offset());
                        state.offset = whole;
                    }
                } else if let Reading::Whole { seen, read } = &mut state.how {
                    *seen = (meta.len(), modified(&meta));
                    *read = Some(*seen);
                }
            }
            fingerprint(&mut state, &path, meta.len());
            self.files.insert(state.key.clone(), state);
        }
    }

    /// Where every file's reading stands, as JSON (what a checkpoint saves; read back with
    /// `serde_json` into the `Vec<FileState>` that [`Follower::new`] takes).
    pub fn checkpoint(&self) -> String {
        serde_json::to_string(&self.files.values().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
    }

    /// Reads what is new in every file (within `limits`), calling `sink` with each event
    /// and the key of its file. Returns what was read per file.
    pub fn poll(&mut self, limits: &PollLimits, sink: &mut dyn FnMut(&str, &Arc<Path>, &Event)) -> Vec<Piece> {
        let (listed, _) = portcullis_sources::collect_files(&self.paths);
        let mut pieces = Vec::new();
        let mut budget = limits.total;
        let mut present = Vec::new();
        self.backlog = 0;
        for path in listed {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if !meta.is_file() {
                continue;
            }
            let Some(key) = identity(&meta) else { continue };
            present.push(key.clone());
            let mut notes = Vec::new();
            let mut state = match self.files.remove(&key) {
                Some(s) if same_file(&s, &path, meta.len()) => {
                    if s.path != path {
                        notes.push(format!(
                            "{} was renamed to {} (rotated); reading goes on where it stood",
                            s.path.display(),
                            path.display()
                        ));
                    }
                    FileState { path: path.clone(), ..s }
                }
                Some(s) => {
                    notes.push(format!("{}: a different file now (its start changed); read from the beginning", path.display()));
                    new_state(s.key, &path)
                }
                None => new_state(key.clone(), &path),
            };
            let size = meta.len();
            if let Reading::Text(_) = state.how
                && size < state.offset
            {
                notes.push(format!("{}: truncated to {size} bytes (had {}): read again from the beginning", path.display(), state.offset));
                state = new_state(state.key, &path);
            }
            let piece = self.read_new(&mut state, &path, &meta, limits.per_file.min(budget), sink, &mut notes);
            if let Reading::Text(_) = state.how {
                self.backlog += size.saturating_sub(state.offset);
            }
            if let Some(report) = piece {
                budget = budget.saturating_sub(report.bytes);
                pieces.push(Piece { key: state.key.clone(), report, notes });
            } else if !notes.is_empty() {
                pieces.push(Piece { key: state.key.clone(), report: FileReport { path: path.clone(), ..Default::default() }, notes });
            }
            self.files.insert(state.key.clone(), state);
        }
        // A file gone from every watched path cannot come back as itself.
        self.files.retain(|k, _| present.contains(k));
        pieces
    }

    fn read_new(
        &self,
        state: &mut FileState,
        path: &Path,
        meta: &std::fs::Metadata,
        budget: u64,
        sink: &mut dyn FnMut(&str, &Arc<Path>, &Event),
        notes: &mut Vec<String>,
    ) -> Option<FileReport> {
        let size = meta.len();
        let shared: Arc<Path> = Arc::from(path);
        let key = state.key.clone();
        if state.how == Reading::Unknown {
            let mut head = Vec::new();
            File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head)).ok()?;
            state.how = classify(&head, size);
            if state.how == Reading::NotALog {
                notes.push(format!("{}: not a log Portcullis can read; left alone", path.display()));
            }
        }
        match &mut state.how {
            Reading::Unknown | Reading::NotALog => None,
            Reading::Whole { seen, read } => {
                let now = (size, modified(meta));
                // Unchanged since the last poll, or not written for a while (a file that was
                // already complete when first seen is read at once).
                let quiet = meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= WHOLE_FILE_QUIET);
                let stable = *seen == now || quiet;
                *seen = now;
                if !stable || *read == Some(now) {
                    return None;
                }
                *read = Some(now);
                let mut opts = self.read.clone();
                opts.evtx_threads = 1;
                let mut span = None;
                let result = portcullis_sources::read_file(path, &opts, &mut |ev| {
                    track(&mut span, ev);
                    sink(&key, &shared, ev);
                    ControlFlow::Continue(())
                });
                state.offset = size;
                fingerprint(state, path, size);
                match result {
                    Ok(mut r) => {
                        r.time_span = span;
                        Some(r)
                    }
                    Err(e) => {
                        notes.push(e.to_string());
                        None
                    }
                }
            }
            Reading::Text(tail) => {
                if size <= state.offset {
                    return None;
                }
                let want = (size - state.offset).min(budget.max(1 << 16));
                let mut buf = Vec::with_capacity(want as usize);
                let mut f = File::open(path).ok()?;
                f.seek(SeekFrom::Start(state.offset)).ok()?;
                f.take(want).read_to_end(&mut buf).ok()?;
                let mut end = tail.complete(&buf);
                if end == 0 && buf.len() as u64 >= self.read.max_record_bytes as u64 {
                    // No record ends within the record limit: the reader counts it as too long.
                    end = buf.len();
                }
                if end == 0 {
                    return None;
                }
                let mut report = FileReport { path: path.to_path_buf(), format: Some(tail.format.format()), ..Default::default() };
                let mut span = None;
                if let Err(e) = tail.read(&buf[..end], &self.read, &mut report, &mut |ev| {
                    track(&mut span, ev);
                    sink(&key, &shared, ev);
                    ControlFlow::Continue(())
                }) {
                    notes.push(format!("{}: {e}", path.display()));
                }
                report.bytes = end as u64;
                report.time_span = span;
                state.offset += end as u64;
                fingerprint(state, path, size);
                Some(report)
            }
        }
    }
}

fn track(span: &mut Option<(portcullis_event::Timestamp, portcullis_event::Timestamp)>, ev: &Event) {
    if let Some(ts) = ev.timestamp {
        *span = Some(span.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
    }
}

fn new_state(key: String, path: &Path) -> FileState {
    FileState { key, path: path.to_path_buf(), fingerprint: 0, fingerprint_len: 0, offset: 0, how: Reading::Unknown }
}

/// How a file starting with `head` (of a file of `size` bytes) is read.
fn classify(head: &[u8], size: u64) -> Reading {
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    if gzip || head.starts_with(b"PK\x03\x04") || head.starts_with(b"ElfFile\0") {
        return Reading::Whole { seen: (0, 0), read: None };
    }
    match TextFormat::sniff(head) {
        Some(f) => Reading::Text(TailState::new(f)),
        // A tar archive, or too little to tell yet.
        None if portcullis_sources::sniff(head).is_some() => Reading::Whole { seen: (0, 0), read: None },
        None if size < 4096 => Reading::Unknown,
        None => Reading::NotALog,
    }
}

/// The file's identity on its file system.
fn identity(meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(format!("{}:{}", meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn modified(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64)
}

fn head_hash(path: &Path, len: u64) -> Option<u64> {
    let mut buf = Vec::with_capacity(len as usize);
    File::open(path).and_then(|f| f.take(len).read_to_end(&mut buf)).ok()?;
    (buf.len() as u64 == len).then(|| xxhash_rust::xxh3::xxh3_64(&buf))
}

/// Whether the file at `path` is still the one `state` followed (its first bytes unchanged).
fn same_file(state: &FileState, path: &Path, size: u64) -> bool {
    if state.fingerprint_len == 0 {
        return true;
    }
    size >= state.fingerprint_len && head_hash(path, state.fingerprint_len) == Some(state.fingerprint)
}

/// Extends the fingerprint to the first bytes read so far (at most [`FINGERPRINT_BYTES`]).
fn fingerprint(state: &mut FileState, path: &Path, size: u64) {
    let len = state.offset.min(size).min(FINGERPRINT_BYTES);
    if len > state.fingerprint_len
        && let Some(h) = head_hash(path, len)
    {
        state.fingerprint = h;
        state.fingerprint_len = len;
    }
}

/// Waits `interval` between polls, waking every 20 ms to notice `stop` quickly.
pub fn pause(interval: std::time::Duration, stop: &std::sync::atomic::AtomicBool) {
    let until = std::time::Instant::now() + interval;
    while std::time::Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(20).min(interval));
    }
}

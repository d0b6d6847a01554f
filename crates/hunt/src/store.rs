//! A hunt's detections in time order, at bounded memory: each worker buffers its
//! detections; when all workers' buffers together pass the budget, a worker holding a fair
//! part of it sorts its buffer and appends it as a run to its own temporary file (one file
//! per worker, however many runs); the runs are merged each time the detections are read.
//! A hunt that stays under the budget (nearly all) keeps one sorted vector and never
//! touches the disk.
//!
//! Readers take the detections a chunk at a time ([`Detections::try_for_each_chunk`]), so a
//! noisy rule or a broad indicator that matches millions of events costs disk, not memory.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use portcullis_event::Event;
use portcullis_event::merge::{Head, RunOrder};

use crate::{Detection, Matcher};

/// Memory a hunt's detections may take before they are spilled to temporary files.
pub const DETECTION_BUFFER_BYTES: usize = 256 << 20;

/// The order detections are reported in: time (events without a time last), then path,
/// record, rule and id (two indicators found in one event can share the rest), so the
/// order is the same however the detections were buffered, spilled and merged.
fn order(a: &Detection, b: &Detection) -> Ordering {
    let ta = a.event.timestamp.map(|t| t.0).unwrap_or(i64::MAX);
    let tb = b.event.timestamp.map(|t| t.0).unwrap_or(i64::MAX);
    ta.cmp(&tb)
        // Read-back detections of one file share its path: no need to compare the text.
        .then_with(|| if Arc::ptr_eq(&a.path, &b.path) { Ordering::Equal } else { a.path.cmp(&b.path) })
        .then((a.event.record, a.rule).cmp(&(b.event.record, b.rule)))
        .then_with(|| a.id.cmp(&b.id))
}

/// What one detection costs in memory, roughly: its struct, its event's buffers and its id.
fn cost(d: &Detection) -> usize {
    std::mem::size_of::<Detection>() + d.event.heap_bytes() + d.id.capacity()
}

/// One worker's detections: a buffer, and the runs it spilled.
pub struct DetectionBuffer {
    budget: usize,
    /// Bytes held by every worker's buffer together.
    shared: Arc<AtomicUsize>,
    used: usize,
    buffer: Vec<Detection>,
    /// The worker's temporary file, created at its first spill; runs are appended to it.
    file: Option<File>,
    file_len: u64,
    runs: Vec<Run>,
    /// The paths the runs name by index (spilled records carry an index, not the path),
    /// keyed by their exact text (`Path` equality would take `a//b` for `a/b`).
    paths: Vec<Arc<Path>>,
    path_index: HashMap<OsString, u32>,
    counts: Counts,
    error: Option<io::Error>,
}

/// One sorted run: where it lies in its worker's file and how many records it holds.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
    records: u64,
}

/// Detections counted as they are added, so totals need no pass over spilled runs.
#[derive(Clone, Debug, Default)]
struct Counts {
    total: usize,
    /// Per rule index.
    by_rule: Vec<u64>,
    indicator: usize,
    untimed: usize,
}

impl Counts {
    fn add(&mut self, d: &Detection) {
        self.total += 1;
        if d.rule >= self.by_rule.len() {
            self.by_rule.resize(d.rule + 1, 0);
        }
        self.by_rule[d.rule] += 1;
        self.indicator += usize::from(d.matcher == Matcher::Indicator);
        self.untimed += usize::from(d.event.timestamp.is_none());
    }

    fn merge(&mut self, o: &Counts) {
        self.total += o.total;
        if o.by_rule.len() > self.by_rule.len() {
            self.by_rule.resize(o.by_rule.len(), 0);
        }
        for (a, b) in self.by_rule.iter_mut().zip(&o.by_rule) {
            *a += b;
        }
        self.indicator += o.indicator;
        self.untimed += o.untimed;
    }
}

impl DetectionBuffer {
    /// A worker's buffer. Its detections spill when the bytes `shared` counts (every
    /// worker's buffers made with the same `shared`) pass `budget_bytes` (at least 64 KiB)
    /// and this worker holds a sixteenth of the budget or more (so a worker with a few
    /// detections does not write a run for each while another holds the rest).
    pub fn new(budget_bytes: usize, shared: Arc<AtomicUsize>) -> DetectionBuffer {
        DetectionBuffer {
            budget: budget_bytes.max(64 << 10),
            shared,
            used: 0,
            buffer: Vec::new(),
            file: None,
            file_len: 0,
            runs: Vec::new(),
            paths: Vec::new(),
            path_index: HashMap::new(),
            counts: Counts::default(),
            error: None,
        }
    }

    /// Adds detections (drained from `from`), spilling if the buffer passes its budget. A
    /// failure to spill is kept (and reported by [`Detections::collect`]); the detections stay
    /// in memory.
    pub fn extend_from(&mut self, from: &mut Vec<Detection>) {
        let mut added = 0;
        for d in from.drain(..) {
            added += cost(&d);
            self.counts.add(&d);
            self.buffer.push(d);
        }
        self.used += added;
        let total = self.shared.fetch_add(added, AtomicOrdering::Relaxed) + added;
        if total > self.budget
            && self.used >= self.budget / 16
            && self.error.is_none()
            && let Err(e) = self.spill()
        {
            self.error = Some(e);
        }
    }

    /// Sorts the buffer and appends it to the worker's file as one run.
    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_unstable_by(order);
        if self.file.is_none() {
            self.file = Some(tempfile::tempfile()?);
        }
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        file.seek(SeekFrom::Start(self.file_len))?;
        let mut w = io::BufWriter::with_capacity(256 << 10, file);
        let mut record = Vec::with_capacity(4096);
        let mut written = 0u64;
        // Detections of one file come together: the path before is nearly always the one.
        let mut last: Option<(&Arc<Path>, u32)> = None;
        for d in &self.buffer {
            let path = match last {
                Some((p, i)) if Arc::ptr_eq(p, &d.path) => i,
                _ => match self.path_index.get(d.path.as_os_str()) {
                    Some(&i) => i,
                    None => {
                        let i = self.paths.len() as u32;
                        self.paths.push(d.path.clone());
                        self.path_index.insert(d.path.as_os_str().to_owned(), i);
                        i
                    }
                },
            };
            last = Some((&d.path, path));
            record.clear();
            record.extend_from_slice(&[0; 4]);
            encode(d, path, &mut record)?;
            let len = record.len() - 4;
            if len > MAX_RECORD_BYTES {
                return Err(io::Error::other(format!("a detection of {len} bytes is past the {MAX_RECORD_BYTES} a spilled one may take")));
            }
            record[..4].copy_from_slice(&(len as u32).to_le_bytes());
            w.write_all(&record)?;
            written += record.len() as u64;
        }
        w.flush()?;
        drop(w);
        let start = self.file_len;
        self.file_len += written;
        self.runs.push(Run { start, end: self.file_len, records: self.buffer.len() as u64 });
        self.buffer.clear();
        self.buffer.shrink_to(1024);
        self.shared.fetch_sub(self.used, AtomicOrdering::Relaxed);
        self.used = 0;
        Ok(())
    }
}

fn encode(d: &Detection, path: u32, out: &mut Vec<u8>) -> io::Result<()> {
    let Ok(id_len) = u8::try_from(d.id.len()) else {
        return Err(io::Error::other(format!("a detection id of {} bytes cannot be spilled", d.id.len())));
    };
    out.push(id_len);
    out.extend_from_slice(d.id.as_bytes());
    out.extend_from_slice(&(d.rule as u32).to_le_bytes());
    out.push(match d.matcher {
        Matcher::Rule => 0,
        Matcher::Indicator => 1,
    });
    out.extend_from_slice(&path.to_le_bytes());
    d.event.write_spilled(out);
    Ok(())
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a spilled detection could not be read back: {what}"))
}

/// Reads a record back; `rules` is how many rules there are (an index past them is damage,
/// not something to look up).
fn decode(bytes: &[u8], paths: &[Arc<Path>], rules: usize) -> io::Result<Detection> {
    let n = *bytes.first().ok_or_else(|| damaged("empty record"))? as usize;
    if bytes.len() < 1 + n + 9 {
        return Err(damaged("record ends early"));
    }
    let id = std::str::from_utf8(&bytes[1..1 + n]).map_err(|_| damaged("id is not text"))?.to_owned();
    let rest = &bytes[1 + n..];
    let rule = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if rule >= rules {
        return Err(damaged("unknown rule"));
    }
    let matcher = match rest[4] {
        0 => Matcher::Rule,
        1 => Matcher::Indicator,
        _ => return Err(damaged("unknown matcher")),
    };
    let path = u32::from_le_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
    let path = paths.get(path).ok_or_else(|| damaged("unknown path"))?.clone();
    let (event, tail) = Event::read_spilled(&rest[9..]).map_err(|e| damaged(e.0))?;
    if !tail.is_empty() {
        return Err(damaged("bytes after the event"));
    }
    Ok(Detection { id, rule, matcher, path, event })
}

/// Spilled records longer than this are damage (an event's text is at most 64 MiB).
const MAX_RECORD_BYTES: usize = 256 << 20;

/// One spilled run being read: its own place in the worker's file (runs of one file are
/// read side by side, so each seeks to where it was before it reads) and a small buffer.
struct RunReader<'a> {
    file: &'a File,
    /// Where the buffer's next refill starts, and where the run ends.
    pos: u64,
    end: u64,
    buffer: Vec<u8>,
    /// Unread bytes of `buffer` start here.
    at: usize,
    left: u64,
    paths: &'a [Arc<Path>],
    rules: usize,
    record: Vec<u8>,
}

impl RunReader<'_> {
    /// Copies the next `out.len()` bytes of the run into `out`.
    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            if self.at == self.buffer.len() {
                let want = (self.buffer.capacity() as u64).min(self.end - self.pos) as usize;
                if want == 0 {
                    return Err(damaged("run ends early"));
                }
                self.buffer.resize(want, 0);
                let mut file = self.file;
                file.seek(SeekFrom::Start(self.pos))?;
                file.read_exact(&mut self.buffer)?;
                self.pos += want as u64;
                self.at = 0;
            }
            let n = (out.len() - done).min(self.buffer.len() - self.at);
            out[done..done + n].copy_from_slice(&self.buffer[self.at..self.at + n]);
            self.at += n;
            done += n;
        }
        Ok(())
    }

    fn next(&mut self) -> io::Result<Option<Detection>> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(damaged("record length past any event's"));
        }
        let mut record = std::mem::take(&mut self.record);
        record.resize(len, 0);
        let read = self.read_exact(&mut record);
        self.record = record;
        read?;
        self.left -= 1;
        decode(&self.record, self.paths, self.rules).map(Some)
    }
}

impl RunOrder for Detection {
    fn run_cmp(&self, other: &Self) -> Ordering {
        order(self, other)
    }
}

/// The runs of one worker, in its file, with the path table their records index.
struct Spilled {
    file: File,
    runs: Vec<Run>,
    paths: Vec<Arc<Path>>,
}

/// Every detection of a hunt, in time order (events without a time last), then by path,
/// record, rule and id.
pub struct Detections {
    /// Sorted; everything when nothing was spilled, else what could not be (empty unless
    /// spilling failed part-way).
    memory: Vec<Detection>,
    /// Workers' spilled runs; read one pass at a time (the lock is held while reading).
    spilled: Mutex<Vec<Spilled>>,
    counts: Counts,
    spilled_count: usize,
}

impl Default for Detections {
    fn default() -> Self {
        Detections::from_vec(Vec::new())
    }
}

impl std::fmt::Debug for Detections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Detections({} detections, {} spilled)", self.len(), self.spilled_count)
    }
}

impl Detections {
    /// Detections held in memory (sorted here).
    pub fn from_vec(mut detections: Vec<Detection>) -> Detections {
        detections.sort_by(order);
        let mut counts = Counts::default();
        for d in &detections {
            counts.add(d);
        }
        Detections { memory: detections, spilled: Mutex::new(Vec::new()), counts, spilled_count: 0 }
    }

    /// Puts the workers' buffers together. If any spilled, the rest are spilled too, so
    /// memory stays within the budget however many detections there are. An error spilling
    /// is returned (with the detections that could be kept; none is dropped silently: the
    /// hunt reports the error).
    pub fn collect(buffers: Vec<DetectionBuffer>) -> (Detections, Option<io::Error>) {
        let mut error = None;
        let any_spilled = buffers.iter().any(|b| !b.runs.is_empty());
        let mut counts = Counts::default();
        let mut memory = Vec::new();
        let mut spilled = Vec::new();
        for mut b in buffers {
            counts.merge(&b.counts);
            if let Some(e) = b.error.take() {
                error.get_or_insert(e);
            }
            if any_spilled
                && !b.buffer.is_empty()
                && error.is_none()
                && let Err(e) = b.spill()
            {
                error.get_or_insert(e);
            }
            memory.append(&mut b.buffer);
            if let Some(file) = b.file.take()
                && !b.runs.is_empty()
            {
                spilled.push(Spilled { file, runs: b.runs, paths: b.paths });
            }
        }
        let spilled_count = counts.total - memory.len();
        memory.sort_by(order);
        (Detections { memory, spilled: Mutex::new(spilled), counts, spilled_count }, error)
    }

    pub fn len(&self) -> usize {
        self.counts.total
    }

    pub fn is_empty(&self) -> bool {
        self.counts.total == 0
    }

    /// How many were spilled to temporary files (0 when the hunt stayed within its budget).
    pub fn spilled(&self) -> usize {
        self.spilled_count
    }

    /// Detections per rule index (indices past the end have none).
    pub fn by_rule(&self) -> &[u64] {
        &self.counts.by_rule
    }

    /// Detections made by an indicator.
    pub fn indicator_matches(&self) -> usize {
        self.counts.indicator
    }

    /// Detections whose event has no time.
    pub fn untimed(&self) -> usize {
        self.counts.untimed
    }

    /// Calls `f` with the detections in order, at most `n` at a time (borrowed from memory,
    /// or read back from the runs). Stops at the first error, from `f` or from reading.
    pub fn try_for_each_chunk<E: From<io::Error>>(&self, n: usize, mut f: impl FnMut(&[Detection]) -> Result<(), E>) -> Result<(), E> {
        let n = n.max(1);
        let spilled = self.spilled.lock().unwrap_or_else(|p| p.into_inner());
        if spilled.is_empty() {
            for chunk in self.memory.chunks(n) {
                f(chunk)?;
            }
            return Ok(());
        }
        // Runs are merged and decoded on a thread of their own, two chunks ahead of `f`.
        std::thread::scope(|scope| {
            let (send, receive) = std::sync::mpsc::sync_channel::<io::Result<Vec<Detection>>>(2);
            let spilled = &*spilled;
            scope.spawn(move || {
                if let Err(e) = self.merge_runs(spilled, n, |chunk| send.send(Ok(chunk)).is_ok()) {
                    let _ = send.send(Err(e));
                }
            });
            for chunk in receive {
                f(&chunk?)?;
            }
            Ok(())
        })
    }

    /// Merges the runs and the detections in memory, handing `emit` chunks of `n` until it
    /// returns false.
    fn merge_runs(&self, spilled: &[Spilled], n: usize, mut emit: impl FnMut(Vec<Detection>) -> bool) -> io::Result<()> {
        // Read buffers share 16 MiB, between 4 and 64 KiB each.
        let run_count: usize = spilled.iter().map(|s| s.runs.len()).sum();
        let buffer_bytes = ((16 << 20) / run_count.max(1)).clamp(4 << 10, 64 << 10);
        let rules = self.counts.by_rule.len();
        let mut readers = Vec::new();
        for s in spilled {
            for run in &s.runs {
                readers.push(RunReader {
                    file: &s.file,
                    pos: run.start,
                    end: run.end,
                    buffer: Vec::with_capacity(buffer_bytes),
                    at: 0,
                    left: run.records,
                    paths: &s.paths,
                    rules,
                    record: Vec::new(),
                });
            }
        }
        let mut memory = self.memory.iter();
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(d) = r.next()? {
                heap.push(Head(d, i));
            }
        }
        let from_memory = readers.len();
        if let Some(d) = memory.next() {
            heap.push(Head(d.clone(), from_memory));
        }
        let mut chunk = Vec::with_capacity(n.min(1 << 16));
        let mut emitted = 0;
        while let Some(Head(d, src)) = heap.pop() {
            emitted += 1;
            let next = if src == from_memory { memory.next().cloned() } else { readers[src].next()? };
            if let Some(next) = next {
                heap.push(Head(next, src));
            }
            chunk.push(d);
            if chunk.len() == n && !emit(std::mem::replace(&mut chunk, Vec::with_capacity(n.min(1 << 16)))) {
                return Ok(());
            }
        }
        if emitted != self.counts.total {
            return Err(damaged(&format!("{emitted} read back of {} detections", self.counts.total)));
        }
        if !chunk.is_empty() {
            emit(chunk);
        }
        Ok(())
    }

    /// Every detection at once: for small hunts (tests, the demo), never for a hunt's output.
    pub fn all(&self) -> io::Result<Cow<'_, [Detection]>> {
        if self.spilled.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return Ok(Cow::Borrowed(&self.memory));
        }
        let mut all = Vec::with_capacity(self.len());
        self.try_for_each_chunk(1 << 16, |c: &[Detection]| -> io::Result<()> {
            all.extend_from_slice(c);
            Ok(())
        })?;
        Ok(Cow::Owned(all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_event::{SourceKind, Timestamp};

    fn detection(i: usize, path: &Arc<Path>) -> Detection {
        let mut event = Event::new(SourceKind::W3c);
        event.push_str("cs-uri-stem", &format!("/owa/{i}/{}", "x".repeat(i % 300)));
        // Every seventh has no time; others repeat times so the tie-breaks matter.
        event.timestamp = (!i.is_multiple_of(7)).then_some(Timestamp(((i * 7919) % 500) as i64));
        event.record = (i % 13) as u64;
        Detection {
            id: format!("{i:032x}"),
            rule: i % 5,
            matcher: if i.is_multiple_of(3) { Matcher::Indicator } else { Matcher::Rule },
            path: path.clone(),
            event,
        }
    }

    fn read_all(d: &Detections, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        d.try_for_each_chunk(n, |c: &[Detection]| -> io::Result<()> {
            assert!(c.len() <= n);
            out.extend(c.iter().map(|d| format!("{} {:?} {} {:?}", d.id, d.matcher, d.path.display(), d.event)));
            Ok(())
        })
        .unwrap();
        out
    }

    /// Spilling (at every budget, from one worker or several) gives the same detections in
    /// the same order as holding them all, read as often as asked.
    #[test]
    fn spilled_detections_read_back_in_order() {
        let paths: Vec<Arc<Path>> =
            ["/a/u_ex1.log", "/b/u_ex2.log", "/a/inner.zip/x.log"].iter().map(|p| Arc::from(Path::new(p))).collect();
        let all: Vec<Detection> = (0..3000).map(|i| detection(i, &paths[i % 3])).collect();
        let expected = read_all(&Detections::from_vec(all.clone()), 7);
        assert_eq!(expected.len(), 3000);
        for (workers, budget) in [(1, 1), (3, 1), (2, 200 << 10), (4, 1 << 30)] {
            let shared = Arc::new(AtomicUsize::new(0));
            let mut buffers: Vec<DetectionBuffer> = (0..workers).map(|_| DetectionBuffer::new(budget, shared.clone())).collect();
            for (i, d) in all.iter().enumerate() {
                buffers[i % workers].extend_from(&mut vec![d.clone()]);
            }
            let (store, error) = Detections::collect(buffers);
            assert!(error.is_none());
            assert_eq!(store.len(), 3000);
            assert_eq!(store.spilled() > 0, budget < 1 << 30, "{workers} workers, budget {budget}");
            assert_eq!(store.indicator_matches(), 1000);
            assert_eq!(store.untimed(), all.iter().filter(|d| d.event.timestamp.is_none()).count());
            assert_eq!(store.by_rule(), &[600, 600, 600, 600, 600]);
            for n in [1, 64, 5000] {
                assert_eq!(read_all(&store, n), expected, "{workers} workers, budget {budget}, chunks of {n}");
            }
            assert_eq!(store.all().unwrap().len(), 3000);
        }
    }

    #[test]
    fn a_damaged_record_is_an_error() {
        let path: Arc<Path> = Arc::from(Path::new("/x.log"));
        let mut record = Vec::new();
        encode(&detection(1, &path), 0, &mut record).unwrap();
        assert!(decode(&record, std::slice::from_ref(&path), 5).is_ok());
        assert!(decode(&record, &[], 5).is_err(), "unknown path index");
        assert!(decode(&record, std::slice::from_ref(&path), 1).is_err(), "rule 1 of one rule");
        for cut in 0..record.len() {
            assert!(decode(&record[..cut], std::slice::from_ref(&path), 5).is_err(), "cut at {cut}");
        }
    }

    /// A run cut short (a full disk, a damaged file) is an error when read, never fewer
    /// detections than the hunt counted.
    #[test]
    fn a_run_cut_short_is_an_error_not_fewer_detections() {
        let path: Arc<Path> = Arc::from(Path::new("/x.log"));
        let mut buffer = DetectionBuffer::new(1, Arc::new(AtomicUsize::new(0)));
        for i in 0..2000 {
            buffer.extend_from(&mut vec![detection(i, &path)]);
        }
        let (store, error) = Detections::collect(vec![buffer]);
        assert!(error.is_none());
        assert!(store.spilled() > 0);
        assert_eq!(read_all(&store, 100).len(), 2000);
        for cut in [1, 3, 200] {
            {
                let spilled = store.spilled.lock().unwrap();
                let s = &spilled[0];
                let len = s.file.metadata().unwrap().len();
                s.file.set_len(len - cut).unwrap();
            }
            let result = store.try_for_each_chunk(100, |_: &[Detection]| -> io::Result<()> { Ok(()) });
            assert!(result.is_err(), "cut by {cut}");
        }
    }

    /// Paths that `Path` calls equal but that are written differently (a hostile archive's
    /// `logs//u_ex.log` beside `logs/u_ex.log`) come back as written.
    #[test]
    fn spilled_paths_come_back_as_written() {
        let paths: Vec<Arc<Path>> = ["/a/logs/u_ex.log", "/a/logs//u_ex.log"].iter().map(|p| Arc::from(Path::new(p))).collect();
        let all: Vec<Detection> = (0..400).map(|i| detection(i, &paths[i % 2])).collect();
        let mut buffer = DetectionBuffer::new(1, Arc::new(AtomicUsize::new(0)));
        for d in &all {
            buffer.extend_from(&mut vec![d.clone()]);
        }
        let (store, _) = Detections::collect(vec![buffer]);
        assert!(store.spilled() > 0);
        let mut back = Vec::new();
        store
            .try_for_each_chunk(50, |c: &[Detection]| -> io::Result<()> {
                back.extend(c.iter().map(|d| (d.id.clone(), d.path.as_os_str().to_owned())));
                Ok(())
            })
            .unwrap();
        back.sort();
        let mut expected: Vec<_> = all.iter().map(|d| (d.id.clone(), d.path.as_os_str().to_owned())).collect();
        expected.sort();
        assert_eq!(back, expected);
    }
}

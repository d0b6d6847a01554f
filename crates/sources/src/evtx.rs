//! EVTX through the `evtx` crate: each record is rendered to JSON by the crate's
//! compiled templates (in parallel over chunks when allowed) and flattened by the
//! JSON flattener, so `.evtx` and its JSON export give identical events.
//!
//! Nothing is lost without a count: before parsing, every chunk header is read for the
//! range of record ids it holds; afterwards, records a header names that were not read, gaps
//! in record ids where a chunk is zeroed or unreadable, and records the file header names
//! past the last chunk are counted as skipped and named by chunk. A file cut inside a chunk
//! is read as if zeros followed, so the records before the cut are read.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use evtx::{EvtxChunkHeader, EvtxParser, ParserSettings};
use portcullis_event::{Event, SourceKind, Timestamp};

use crate::json::{Flattener, finish_event};
use crate::{FileReport, MAX_NOTES, ReadOptions, SourceError};

/// Where chunks start: after the 4 KiB file header, every 64 KiB.
const FILE_HEADER: u64 = 4096;
const CHUNK: u64 = 65536;
const CHUNK_HEADER: usize = 512;

pub fn read<T: Read + Seek + Send + 'static>(
    mut data: T,
    path: &Path,
    opts: &ReadOptions,
    report: &mut FileReport,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let io_err = |error| SourceError::Io { path: path.to_path_buf(), error };
    // What the chunk headers say was there, before the parser reads what it can.
    let len = data.seek(SeekFrom::End(0)).map_err(io_err)?;
    let mut census = Census::take(&mut data, len).map_err(io_err)?;
    data.rewind().map_err(io_err)?;
    // A file cut inside a chunk: the parser ignores a chunk shorter than 64 KiB, so the cut
    // chunk is padded with zeros and the records before the cut are read.
    let padded = census.cut.as_ref().map_or(len, |_| FILE_HEADER + (len - FILE_HEADER).div_ceil(CHUNK) * CHUNK);
    let settings = ParserSettings::new().num_threads(opts.evtx_threads.max(1)).indent(false);
    let mut parser = EvtxParser::from_read_seek(Padded { inner: data, len, padded, pos: 0 })
        .map_err(|e| SourceError::Corrupt { path: path.to_path_buf(), reason: format!("not a readable EVTX file: {}", chain(&e)) })?
        .with_configuration(settings);
    let header = parser.header();
    census.next_record_id = header.validate_checksum().then_some(header.next_record_id);
    let mut event = Event::new(SourceKind::Windows);
    let mut flat = Flattener::default();
    let mut errors = 0u64;
    let mut error_notes = Vec::new();
    for item in parser.serialized_records(|r| r.and_then(|r| r.into_json_bytes())) {
        let rec = match item {
            Ok(rec) => rec,
            Err(e) => {
                errors += 1;
                if error_notes.len() < MAX_NOTES {
                    error_notes.push(chain(&e));
                }
                continue;
            }
        };
        census.read(rec.event_record_id);
        if let Err(e) = flat.flatten(&rec.data, &mut event) {
            errors += 1;
            if error_notes.len() < MAX_NOTES {
                error_notes.push(format!("record {}: rendered JSON unreadable: {e}", rec.event_record_id));
            }
            continue;
        }
        // `record` is the EventRecordID that Event Viewer shows (finish_event reads it from
        // the record's System); the record header's number is only a fallback.
        finish_event(&mut event, rec.event_record_id);
        event.source = SourceKind::Windows;
        if event.timestamp.is_none() {
            event.timestamp = Some(Timestamp(rec.timestamp.as_microsecond()));
        }
        report.events += 1;
        if sink(&event).is_break() {
            return Ok(());
        }
    }
    // Records the headers name that were not read, by chunk; read errors the headers cannot
    // place (a chunk whose header is unreadable, at the end) still count one each.
    let (lost, notes) = census.account();
    report.skipped += lost.max(errors);
    for note in notes.into_iter().chain(error_notes) {
        if report.notes.len() < MAX_NOTES {
            report.notes.push(note);
        }
    }
    Ok(())
}

/// One chunk slot of the file as its header describes it.
#[derive(Clone, Debug)]
enum Slot {
    /// A chunk header with the range of record ids it holds.
    Chunk { first: u64, last: u64 },
    /// All zeros where a chunk header should be (a zeroed chunk, or space never used).
    Zero,
    /// Anything else: no record count can be read from it.
    Bad,
}

/// The chunks' record ranges against the records actually read.
#[derive(Debug, Default)]
struct Census {
    slots: Vec<Slot>,
    /// Chunks with a range, ordered by first id: (first, last, slot, read in range, highest id read).
    ranges: Vec<(u64, u64, usize, u64, u64)>,
    /// The file ends this many bytes into its last chunk slot.
    cut: Option<(usize, u64)>,
    /// The file header's next record id, when its checksum holds.
    next_record_id: Option<u64>,
}

impl Census {
    fn take(data: &mut (impl Read + Seek), len: u64) -> std::io::Result<Census> {
        let mut census = Census::default();
        let mut head = [0u8; CHUNK_HEADER];
        let slots = len.saturating_sub(FILE_HEADER).div_ceil(CHUNK);
        for n in 0..slots {
            let at = FILE_HEADER + n * CHUNK;
            data.seek(SeekFrom::Start(at))?;
            let got = crate::read_up_to(data, &mut head)?;
            let slot = match EvtxChunkHeader::from_bytes(&head[..got]) {
                // A reversed or impossibly wide range says nothing (a 64 KiB chunk holds a few
                // hundred records at most).
                Ok(h) if h.first_event_record_id <= h.last_event_record_id && h.last_event_record_id - h.first_event_record_id < CHUNK => {
                    Slot::Chunk { first: h.first_event_record_id, last: h.last_event_record_id }
                }
                _ if head[..got].iter().all(|&b| b == 0) => Slot::Zero,
                _ => Slot::Bad,
            };
            if let Slot::Chunk { first, last } = slot {
                census.ranges.push((first, last, n as usize, 0, 0));
            }
            census.slots.push(slot);
            if at + CHUNK > len {
                census.cut = Some((n as usize, len - at));
            }
        }
        census.ranges.sort_unstable();
        // A cut chunk is only worth padding when its header is there to say what it held.
        if let Some((n, _)) = census.cut
            && !matches!(census.slots[n], Slot::Chunk { .. })
        {
            census.cut = None;
        }
        Ok(census)
    }

    fn read(&mut self, id: u64) {
        let i = self.ranges.partition_point(|r| r.0 <= id);
        if let Some(r) = i.checked_sub(1).and_then(|i| self.ranges.get_mut(i)) {
            if id <= r.1 {
                r.3 += 1;
            }
            r.4 = r.4.max(id);
        }
    }

    /// How many records the headers say were there and were not read, with a note per chunk.
    fn account(&self) -> (u64, Vec<String>) {
        let mut lost = 0u64;
        let mut notes = Vec::new();
        let place = |n: usize| format!("chunk {n} (at byte {})", FILE_HEADER + n as u64 * CHUNK);
        let ids = |a: u64, b: u64| if a == b { format!("record id {a}") } else { format!("record ids {a}-{b}") };
        let unreadable = |slots: &[usize]| -> String {
            let named: Vec<String> = slots
                .iter()
                .map(|&n| format!("{}{}", place(n), if matches!(self.slots[n], Slot::Zero) { ", zeroed" } else { ", header unreadable" }))
                .collect();
            named.join("; ")
        };
        // Zeroed or unreadable slots physically between two chunks.
        let between = |a: usize, b: usize| -> Vec<usize> {
            (a.min(b) + 1..a.max(b)).filter(|&n| !matches!(self.slots[n], Slot::Chunk { .. })).collect()
        };
        let records = |n: u64| if n == 1 { "1 record".to_string() } else { format!("{n} records") };
        // Before the oldest chunk: only when the log has not wrapped (chunks in record order
        // in the file) and something unreadable lies before it.
        if let Some(&(first, _, slot, _, _)) = self.ranges.first() {
            let in_order = self.ranges.windows(2).all(|w| w[0].2 < w[1].2);
            let before: Vec<usize> = (0..slot).filter(|&n| !matches!(self.slots[n], Slot::Chunk { .. })).collect();
            if first > 1 && in_order && !before.is_empty() {
                lost += first - 1;
                notes.push(format!("{}: {} unreadable ({})", unreadable(&before), records(first - 1), ids(1, first - 1)));
            }
        }
        for (k, &(first, last, slot, read, _)) in self.ranges.iter().enumerate() {
            let expected = last - first + 1;
            let missing = expected.saturating_sub(read);
            if missing > 0 {
                lost += missing;
                let cut = match self.cut {
                    Some((n, at)) if n == slot => format!("; the file ends {at} bytes into it"),
                    _ => String::new(),
                };
                notes.push(format!(
                    "{}: {} of its {} unreadable ({} by its header{cut})",
                    place(slot),
                    missing,
                    records(expected),
                    ids(first, last)
                ));
            }
            if let Some(&(next_first, _, next_slot, _, _)) = self.ranges.get(k + 1) {
                let end = last.max(self.ranges[k].4);
                if next_first > end + 1 {
                    let gap = next_first - end - 1;
                    lost += gap;
                    let inside = between(slot, next_slot);
                    let whose =
                        if inside.is_empty() { format!("between {} and {}", place(slot), place(next_slot)) } else { unreadable(&inside) };
                    notes.push(format!("{whose}: {} unreadable ({} missing)", records(gap), ids(end + 1, next_first - 1)));
                }
            }
        }
        // After the newest chunk: the file header names the next record id.
        let end = self.ranges.last().map_or(0, |r| r.1.max(r.4));
        if let Some(next) = self.next_record_id
            && next > end + 1
            && next - end - 1 < CHUNK * self.slots.len().max(1) as u64
        {
            let gap = next - end - 1;
            lost += gap;
            notes.push(format!(
                "{} unreadable ({}): named by the file header (next record id {next}) but in no readable chunk",
                records(gap),
                ids(end + 1, next - 1)
            ));
        }
        (lost, notes)
    }
}

/// A file cut inside a chunk, read as if zeros followed up to the end of that chunk.
struct Padded<T> {
    inner: T,
    len: u64,
    padded: u64,
    pos: u64,
}

impl<T: Read + Seek> Read for Padded<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.len {
            let n = (buf.len() as u64).min(self.len - self.pos) as usize;
            let got = self.inner.read(&mut buf[..n])?;
            self.pos += got as u64;
            return Ok(got);
        }
        let n = (buf.len() as u64).min(self.padded.saturating_sub(self.pos)) as usize;
        buf[..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T: Read + Seek> Seek for Padded<T> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.padded.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.inner.seek(SeekFrom::Start(target.min(self.len)))?;
        self.pos = target;
        Ok(target)
    }
}

/// An error with its causes, e.g. "Failed to parse chunk number 3: invalid magic".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut depth = 0;
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    s
}

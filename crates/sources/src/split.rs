//! One large W3C log (an IIS server's month) read by several threads: the file is cut at
//! line breaks into pieces, each carrying the state a read of the whole file has there
//! (the line number and the `#Fields:`-style directives in effect, as `watch` keeps them
//! in [`TailState`]), so the pieces give exactly the events, record numbers and hence
//! finding ids of one whole read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use portcullis_event::Event;

use crate::tail::{TailState, TextFormat};
use crate::{FileReport, Format, ReadOptions, SourceError};

/// Files smaller than this are read whole by one thread.
pub const MIN_SPLIT_BYTES: u64 = 64 << 20;
/// About how much of the file each piece holds.
pub const PIECE_BYTES: usize = 16 << 20;

/// A run of whole lines of a file and the reading state at its start.
#[derive(Clone, Debug)]
pub struct Piece {
    pub start: u64,
    pub len: u64,
    pub state: TailState,
}

/// Whether `path` is worth splitting: a plain (uncompressed) W3C log of at least
/// `min_bytes` (normally [`MIN_SPLIT_BYTES`]). Exchange's CSV is not split: finding its
/// record boundaries takes as long as reading it.
pub fn splittable(path: &Path, min_bytes: u64) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if !meta.is_file() || meta.len() < min_bytes.max(1) {
        return false;
    }
    let mut head = vec![0u8; 64 * 1024];
    let n = File::open(path).and_then(|mut f| crate::read_up_to(&mut f, &mut head)).unwrap_or(0);
    matches!(crate::sniff(&head[..n]), Some(Format::W3c))
}

/// The piece size for `path` read by `threads`: a few pieces per thread (so one slow piece
/// does not leave the others idle), between 64 KiB and [`PIECE_BYTES`].
pub fn piece_bytes(path: &Path, threads: usize) -> usize {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    (len / (threads.max(1) as u64 * 4)).clamp(64 << 10, PIECE_BYTES as u64) as usize
}

/// Cuts `path` into pieces of about `piece_bytes`, calling `found` with each as soon as its
/// end is known, so readers can start on the first while the rest is being cut. Reads the
/// file once, holding at most one piece (plus the longest line) in memory. A line longer
/// than `max_line` ends the cutting: the rest of the file is one last piece.
pub fn plan(path: &Path, piece_bytes: usize, max_line: usize, found: &mut dyn FnMut(Piece)) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut state = TailState::new(TextFormat::W3c);
    let mut buf: Vec<u8> = Vec::with_capacity(piece_bytes + 64 * 1024);
    let mut start = 0u64;
    loop {
        let have = buf.len();
        buf.resize(have + piece_bytes, 0);
        let n = crate::read_up_to(&mut file, &mut buf[have..])?;
        buf.truncate(have + n);
        if n == 0 {
            // The end of the file: whatever is left (a last line without a break) is one piece.
            if !buf.is_empty() {
                found(Piece { start, len: buf.len() as u64, state });
            }
            return Ok(());
        }
        let cut = state.complete(&buf);
        if cut == 0 {
            if buf.len() > piece_bytes + max_line {
                let rest = file.metadata()?.len().saturating_sub(start);
                found(Piece { start, len: rest, state });
                return Ok(());
            }
            continue;
        }
        found(Piece { start, len: cut as u64, state: state.clone() });
        state.skip(&buf[..cut]);
        start += cut as u64;
        buf.drain(..cut);
    }
}

/// Reads one piece of `path`, calling `sink` with each event, as a whole read would.
pub fn read_piece(
    path: &Path,
    piece: &Piece,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(&Event) -> ControlFlow<()>,
) -> Result<FileReport, SourceError> {
    let io_err = |error| SourceError::Io { path: path.to_path_buf(), error };
    let mut file = File::open(path).map_err(io_err)?;
    file.seek(SeekFrom::Start(piece.start)).map_err(io_err)?;
    let mut report = FileReport { path: path.to_path_buf(), bytes: piece.len, format: Some(Format::W3c), ..Default::default() };
    piece.state.read_from(file.take(piece.len), opts, &mut report, sink).map_err(io_err)?;
    Ok(report)
}

impl FileReport {
    /// Adds what a later piece of the same file read.
    pub fn merge_piece(&mut self, other: FileReport) {
        self.bytes += other.bytes;
        self.events += other.events;
        self.skipped += other.skipped;
        self.lossy += other.lossy;
        for n in other.notes {
            if self.notes.len() < crate::MAX_NOTES {
                self.notes.push(n);
            }
        }
        self.layout = self.layout.take().or(other.layout);
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        self.time_span = match (self.time_span, other.time_span) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, None) | (None, x) => x,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(path: &Path, pieces: Option<&[Piece]>) -> (Vec<String>, FileReport) {
        let opts = ReadOptions::default();
        let mut out = Vec::new();
        let mut sink = |ev: &Event| {
            out.push(format!("{} {:?} {ev}", ev.record, ev.timestamp));
            ControlFlow::Continue(())
        };
        let report = match pieces {
            None => crate::read_file(path, &opts, &mut sink).unwrap(),
            Some(pieces) => {
                let mut all: Option<FileReport> = None;
                for p in pieces {
                    let r = read_piece(path, p, &opts, &mut sink).unwrap();
                    match &mut all {
                        Some(a) => a.merge_piece(r),
                        None => all = Some(r),
                    }
                }
                all.unwrap()
            }
        };
        (out, report)
    }

    /// Pieces cut anywhere (directives changing mid-file, a bad line, a last line without a
    /// break) read the same events, record numbers and skips as one whole read.
    #[test]
    fn pieces_read_as_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("pc-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("u_ex.log");
        let mut text = String::from(
            "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time c-ip cs-method cs-uri-stem sc-status\n",
        );
        for i in 0..400 {
            if i == 150 {
                text.push_str("#Fields: date time cs-uri-stem c-ip cs(User-Agent)\n");
            }
            if i == 151 {
                text.push_str("2021-08-24 10:00:00 only-three-columns\n");
            }
            if i < 150 {
                text.push_str(&format!("2021-08-24 10:{:02}:{:02} 10.0.0.{} GET /owa/{i} 200\n", i / 60, i % 60, i % 7));
            } else {
                text.push_str(&format!("2021-08-24 11:{:02}:{:02} /ecp/{i} 10.1.0.{} Mozilla/5.0\n", (i / 60) % 60, i % 60, i % 5));
            }
        }
        text.push_str("2021-08-24 12:00:00 /last 10.9.9.9 curl");
        std::fs::write(&path, &text).unwrap();
        let (whole, whole_report) = events(&path, None);
        assert!(whole.len() > 390, "{}", whole.len());
        for piece_bytes in [1, 7, 64, 500, 4096, 1 << 20] {
            let mut pieces = Vec::new();
            plan(&path, piece_bytes, 1 << 20, &mut |p| pieces.push(p)).unwrap();
            assert_eq!(pieces.iter().map(|p| p.len).sum::<u64>(), text.len() as u64);
            let (got, report) = events(&path, Some(&pieces));
            assert_eq!(got, whole, "pieces of {piece_bytes} bytes");
            assert_eq!((report.events, report.skipped, report.bytes), (whole_report.events, whole_report.skipped, whole_report.bytes));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

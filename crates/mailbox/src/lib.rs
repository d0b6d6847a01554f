//! Reads mail: EML files, MBOX mailboxes (mboxo/mboxrd), Maildir folders and directories of
//! them, as bounded messages with their location, and parses each into a [`Mail`] for the
//! analysers. Nothing in a mail file is trusted: oversized messages and headers, broken
//! encodings and non-mail files are counted and reported, never fatal.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod message;
pub mod split;

pub use message::{Attachment, AuthHeader, AuthResult, Hop, Mail, Mailbox, Unreadable, parse};
pub use split::{MAX_MESSAGE, Piece, is_eml, is_mbox, split_mbox};

/// Where a message was read from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Shared by every message of a file (a mailbox holds many).
    pub path: Arc<Path>,
    /// Position in a mailbox (0-based) and the line of its `From ` separator; None for a
    /// file holding one message.
    pub index: Option<(usize, u64)>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some((i, line)) => write!(f, "{} (message {}, line {})", self.path.display(), i + 1, line),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// What one file held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Eml,
    Mbox,
    NotMail,
}

/// The outcome of reading one file.
#[derive(Clone, Debug)]
pub struct FileSummary {
    pub path: PathBuf,
    pub kind: FileKind,
    pub bytes: u64,
    pub messages: usize,
    /// Messages skipped whole (too big), with where and why.
    pub skipped: Vec<(Location, String)>,
    pub long_lines: u64,
}

/// Reads the messages of one file, calling `f` with each message's location, its bytes and
/// the bytes of its lines over [`split::MAX_LINE`] that a mailbox reader had to drop (a
/// header padded past reading is an evasion the analysers report). Files that are neither
/// EML nor MBOX are reported as [`FileKind::NotMail`].
pub fn read_file(path: &Path, mut f: impl FnMut(Location, &[u8], u64)) -> io::Result<FileSummary> {
    let mut file = File::open(path)?;
    let bytes = file.metadata()?.len();
    let mut head = vec![0u8; 64 * 1024];
    let n = portcullis_sources::read_up_to(&mut file, &mut head)?;
    head.truncate(n);
    let shared: Arc<Path> = Arc::from(path);
    let mut summary =
        FileSummary { path: path.to_path_buf(), kind: FileKind::NotMail, bytes, messages: 0, skipped: Vec::new(), long_lines: 0 };
    if is_mbox(&head) {
        summary.kind = FileKind::Mbox;
        let rest = io::Cursor::new(head).chain(file);
        let stats = split_mbox(rest, |i, piece| match piece {
            Piece::Message { bytes, line, dropped } => f(Location { path: shared.clone(), index: Some((i, line)) }, bytes, dropped),
            Piece::TooBig { line } => summary.skipped.push((
                Location { path: shared.clone(), index: Some((i, line)) },
                format!("message larger than {} MiB", MAX_MESSAGE >> 20),
            )),
        })?;
        summary.messages = stats.messages - summary.skipped.len();
        summary.long_lines = stats.long_lines;
    } else if is_eml(&head) || (has_eml_extension(path) && starts_with_header_field(&head)) {
        summary.kind = FileKind::Eml;
        let loc = Location { path: shared.clone(), index: None };
        if bytes > MAX_MESSAGE as u64 {
            summary.skipped.push((loc, format!("message larger than {} MiB", MAX_MESSAGE >> 20)));
        } else {
            let mut all = head;
            file.take(MAX_MESSAGE as u64 + 1 - all.len() as u64).read_to_end(&mut all)?;
            if all.len() > MAX_MESSAGE {
                summary.skipped.push((loc, format!("message larger than {} MiB", MAX_MESSAGE >> 20)));
            } else {
                summary.messages = 1;
                f(loc, &all, 0);
            }
        }
    } else if has_eml_extension(path) && bytes > 0 {
        // Named as mail but not readable as mail: reported, never silently passed over.
        summary.kind = FileKind::Eml;
        summary.skipped.push((Location { path: shared.clone(), index: None }, "a .eml file that does not start with mail headers".into()));
    }
    Ok(summary)
}

fn has_eml_extension(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml"))
}

/// The first line is an RFC 5322 header field (`Name: value`): an EML whose first headers
/// are padding the usual ones come after.
fn starts_with_header_field(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    match line.iter().position(|&b| b == b':') {
        Some(i) => i > 0 && line[..i].iter().all(|&b| (33..=126).contains(&b)),
        None => false,
    }
}

/// Expands files and directories (Maildir `cur/`, `new/` and `tmp/` included) into a sorted
/// file list, with the paths that could not be read.
pub fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let (files, errors) = portcullis_sources::collect_regular_files(paths);
    (files, errors.into_iter().map(|e| (PathBuf::new(), e.to_string())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_eml_mbox_and_maildir() {
        let dir = tempfile_dir();
        let eml = "From: a@x.org\r\nTo: b@y.org\r\nSubject: s\r\n\r\nbody\r\n";
        std::fs::create_dir_all(dir.join("Maildir/cur")).unwrap();
        std::fs::write(dir.join("Maildir/cur/1612345678.M1P1.host:2,S"), eml).unwrap();
        std::fs::write(dir.join("box.mbox"), format!("From a Mon Jan  1 00:00:00 2024\n{eml}\nFrom b Mon Jan  1 00:00:00 2024\n{eml}"))
            .unwrap();
        std::fs::write(dir.join("notes.txt"), "hello").unwrap();
        let (files, errors) = collect_files(std::slice::from_ref(&dir));
        assert!(errors.is_empty());
        let mut seen = Vec::new();
        let mut kinds = Vec::new();
        for f in &files {
            let s = read_file(f, |loc, b, _| seen.push((loc, b.len()))).unwrap();
            kinds.push(s.kind);
        }
        assert_eq!(seen.len(), 3);
        assert!(kinds.contains(&FileKind::NotMail));
        // Mailbox lines are read without their `\r`.
        let lf = eml.replace("\r\n", "\n").len();
        assert!(seen.iter().all(|(_, n)| *n == eml.len() || *n == lf), "{seen:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("pc-mailbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

//! A cache of parsed rule files on disk: with the SigmaHQ rules, parsing YAML was most of
//! a hunt's start-up, and rules rarely change between runs.
//!
//! One cache file per rule directory (named by a hash of its absolute path) holds, for each
//! rule file, its path, a 128-bit hash of its text, the file's metadata when it was read
//! and what parsing it gave (rules, filters, correlations and errors). A rule file is taken
//! from the cache without being read if its metadata is as recorded (see `FileStamp`),
//! else only if its text hashes the same; a cache file is used only if this very binary
//! wrote it with the same placeholders (they change what parsing gives). What comes out of
//! the cache is trusted no more than a rule file: it is compiled by the same code, its
//! expression trees are rebuilt without recursion and with a depth limit, and a cache file
//! that is corrupt (checksum), truncated, oversized or from another build is ignored and
//! rewritten.
//!
//! Layout: `MAGIC | stamp u64 | count u32 | count × (path_len u32, path, text_hash u128,
//! file stamp (flag u8, then dev, ino, len u64, mtime, ctime as i64 seconds and u32
//! nanoseconds when the flag is 1), body_len u32, body) | xxh3-64 of everything before`,
//! little-endian; each body is the file's [`RuleSet`] in postcard.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_128};

use crate::loader::RuleSet;
use crate::modifiers::Placeholders;

const MAGIC: &[u8; 8] = b"PCRULES\x02";
/// A cache file larger than this is not read (the SigmaHQ rules make about 10 MB).
const MAX_CACHE_BYTES: u64 = 1 << 30;

/// Where parsed rule files are kept, and the stamp of the binary and placeholders that
/// parsed them.
pub struct RuleCache {
    dir: PathBuf,
    stamp: u64,
    /// How long a file must have gone unchanged, when it is read, for its metadata to
    /// stand for its text on later runs.
    settle: std::time::Duration,
}

/// A rule file's metadata, which stands for its text: a write to the file, a rename over
/// it or any change of its metadata sets its change time (`ctime`) to the current time,
/// and no user can set that time back. File times have a coarse grain (a clock tick), so a
/// file written twice in one tick would keep its stamp: a stamp is recorded only for a file
/// that had gone [`RuleCache::settle`] unchanged when it was read (git's "racy" rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
}

/// Bytes of a [`FileStamp`] in a cache file, after its flag byte.
const FILE_STAMP_BYTES: usize = 3 * 8 + 2 * 12;

impl FileStamp {
    /// The metadata of the file at `path` (following links, as reading it does); `None` off
    /// Unix or if it cannot be had: the file is then read and hashed every time.
    #[cfg(unix)]
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), u32::try_from(m.mtime_nsec()).ok()?),
            ctime: (m.ctime(), u32::try_from(m.ctime_nsec()).ok()?),
        })
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_path: &Path) -> Option<FileStamp> {
        None
    }

    /// Whether the file had gone `settle` unchanged at `now` (a change time in the future,
    /// as after the clock was set back, has not).
    pub(crate) fn settled(&self, now: std::time::SystemTime, settle: std::time::Duration) -> bool {
        let Ok(now) = now.duration_since(std::time::UNIX_EPOCH) else { return false };
        let (Ok(secs), nanos) = (u64::try_from(self.ctime.0), self.ctime.1) else { return false };
        let changed = std::time::Duration::new(secs, nanos.min(999_999_999));
        now.checked_sub(changed).is_some_and(|age| age >= settle)
    }

    fn encode(stamp: Option<FileStamp>, out: &mut Vec<u8>) {
        let Some(s) = stamp else {
            out.push(0);
            return;
        };
        out.push(1);
        for v in [s.dev, s.ino, s.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (secs, nanos) in [s.mtime, s.ctime] {
            out.extend_from_slice(&secs.to_le_bytes());
            out.extend_from_slice(&nanos.to_le_bytes());
        }
    }

    fn decode(r: &mut Reader) -> Result<Option<FileStamp>, String> {
        match r.take(1)?[0] {
            0 => return Ok(None),
            1 => {}
            _ => return Err("bad file stamp flag".into()),
        }
        let b = r.take(FILE_STAMP_BYTES)?;
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let t = |i: usize| (u(i) as i64, u32::from_le_bytes(b[i + 8..i + 12].try_into().unwrap_or_default()));
        Ok(Some(FileStamp { dev: u(0), ino: u(8), len: u(16), mtime: t(24), ctime: t(36) }))
    }
}

/// What loading one rule directory got from the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheUse {
    /// Rule files taken from the cache.
    pub hits: usize,
    /// Of those, the ones taken without being read: their metadata was as recorded.
    pub unread: usize,
    /// Rule files parsed (new, changed, or the cache was missing or unusable).
    pub misses: usize,
    /// Why a cache file could not be read or written, if it could not. The rules are
    /// loaded either way; only the time is lost.
    pub problems: Vec<String>,
}

impl CacheUse {
    pub fn add(&mut self, other: CacheUse) {
        self.hits += other.hits;
        self.unread += other.unread;
        self.misses += other.misses;
        self.problems.extend(other.problems);
    }
}

/// One rule file's entry in a cache file that was read.
pub(crate) struct Entry {
    pub(crate) text_hash: u128,
    pub(crate) stamp: Option<FileStamp>,
    pub(crate) body: Range<usize>,
}

/// A cache file read into memory, its entries by rule file path.
#[derive(Default)]
pub(crate) struct CacheFile {
    pub(crate) bytes: Vec<u8>,
    pub(crate) entries: HashMap<String, Entry>,
}

impl CacheFile {
    /// The parsed rule file and where it lies in the cache file, if the cache has it for
    /// exactly this text (and it decodes).
    pub(crate) fn get(&self, path: &str, text_hash: u128) -> Option<(RuleSet, Range<usize>)> {
        self.entries.get(path).filter(|e| e.text_hash == text_hash).and_then(|e| self.decode(e))
    }

    /// The parsed rule file, its text hash and where it lies in the cache file, if the
    /// cache has it for a file with exactly this stamp (and it decodes).
    pub(crate) fn get_unread(&self, path: &str, stamp: FileStamp) -> Option<(RuleSet, u128, Range<usize>)> {
        let e = self.entries.get(path).filter(|e| e.stamp == Some(stamp))?;
        self.decode(e).map(|(set, body)| (set, e.text_hash, body))
    }

    /// The stamp recorded for a rule file, if any.
    pub(crate) fn stamp_of(&self, path: &str) -> Option<FileStamp> {
        self.entries.get(path).and_then(|e| e.stamp)
    }

    fn decode(&self, e: &Entry) -> Option<(RuleSet, Range<usize>)> {
        let set = postcard::from_bytes(self.bytes.get(e.body.clone())?).ok()?;
        Some((set, e.body.clone()))
    }
}

/// A rule file's entry to write: its path, the hash of its text, its stamp if it had
/// settled when read, and its parsed form.
pub(crate) struct NewEntry {
    pub(crate) path: String,
    pub(crate) text_hash: u128,
    pub(crate) stamp: Option<FileStamp>,
    pub(crate) body: Body,
}

/// A parsed rule file, serialised afresh or still in the cache file that was read (found
/// there by its text's hash, or by its stamp without reading the file).
pub(crate) enum Body {
    Fresh(Vec<u8>),
    Cached(Range<usize>),
    Unread(Range<usize>),
}

impl RuleCache {
    /// A cache kept in `dir` (created, private to the user, on first write) for rules
    /// parsed by this binary with these placeholders.
    pub fn new(dir: PathBuf, placeholders: &Placeholders) -> RuleCache {
        let mut h = Xxh3::new();
        h.update(MAGIC);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        // The binary itself: any rebuild changes its modification time.
        if let Ok(meta) = std::env::current_exe().and_then(std::fs::metadata) {
            h.update(&meta.len().to_le_bytes());
            if let Ok(since) = meta.modified().map(|m| m.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()) {
                h.update(&since.as_nanos().to_le_bytes());
            }
        }
        let mut names: Vec<_> = placeholders.iter().collect();
        names.sort();
        for (name, values) in names {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&(values.len() as u64).to_le_bytes());
            for v in values {
                h.update(&(v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
        }
        RuleCache { dir, stamp: h.digest(), settle: std::time::Duration::from_secs(1) }
    }

    #[cfg(test)]
    fn with_settle(self, settle: std::time::Duration) -> RuleCache {
        RuleCache { settle, ..self }
    }

    /// How long a file must have gone unchanged when read for its metadata to stand for
    /// its text (see [`FileStamp`]); a second unless a test needs less.
    pub(crate) fn settle(&self) -> std::time::Duration {
        self.settle
    }

    /// The hash a rule file's text is cached under.
    pub(crate) fn text_hash(text: &str) -> u128 {
        xxh3_128(text.as_bytes())
    }

    fn file_for(&self, root: &Path) -> PathBuf {
        let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let key = xxh3_64(abs.as_os_str().as_encoded_bytes());
        self.dir.join(format!("rules-{key:016x}.bin"))
    }

    /// Reads the cache file for a rule directory. No file is an empty cache, not a problem.
    pub(crate) fn read(&self, root: &Path) -> Result<CacheFile, String> {
        let path = self.file_for(root);
        let bytes = match crate::loader::read_capped(&path, MAX_CACHE_BYTES) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(None) => return Err(format!("{}: larger than {MAX_CACHE_BYTES} bytes", path.display())),
            Ok(Some(bytes)) => bytes,
        };
        match parse(bytes, self.stamp) {
            Ok(Some(file)) => Ok(file),
            // Written by another build or with other placeholders: stale, not broken.
            Ok(None) => Ok(CacheFile::default()),
            Err(reason) => Err(format!("{}: {reason}; it will be rewritten", path.display())),
        }
    }

    /// Writes the cache file for a rule directory, replacing it atomically; `old` is the
    /// file read before, which [`Body::Cached`] entries point into.
    pub(crate) fn write(&self, root: &Path, entries: &[NewEntry], old: &CacheFile) -> Result<(), String> {
        let path = self.file_for(root);
        fn body<'a>(b: &'a Body, old: &'a CacheFile) -> &'a [u8] {
            match b {
                Body::Fresh(v) => v,
                Body::Cached(r) | Body::Unread(r) => old.bytes.get(r.clone()).unwrap_or_default(),
            }
        }
        let mut out =
            Vec::with_capacity(entries.iter().map(|e| e.path.len() + body(&e.body, old).len() + 25 + FILE_STAMP_BYTES).sum::<usize>() + 28);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.stamp.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
            out.extend_from_slice(e.path.as_bytes());
            out.extend_from_slice(&e.text_hash.to_le_bytes());
            FileStamp::encode(e.stamp, &mut out);
            let b = body(&e.body, old);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        create_private_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        // A name no other writer uses, in this process or another: each writes a whole
        // file and renames it into place, so the last one wins and none is torn.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
        std::fs::write(&tmp, &out).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Checks and indexes a cache file: `Ok(None)` if another build wrote it, `Err` if it is
/// damaged.
fn parse(bytes: Vec<u8>, stamp: u64) -> Result<Option<CacheFile>, String> {
    if bytes.len() < MAGIC.len() + 8 + 4 + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a Portcullis rule cache".into());
    }
    let (content, sum) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(content).to_le_bytes() != sum {
        return Err("checksum mismatch (truncated or damaged)".into());
    }
    let mut r = Reader { bytes: content, pos: MAGIC.len() };
    if r.u64()? != stamp {
        return Ok(None);
    }
    let count = r.u32()? as usize;
    let mut entries = HashMap::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?).map_err(|_| "a path is not UTF-8")?.to_string();
        let text_hash = u128::from_le_bytes(r.take(16)?.try_into().map_err(|_| "short hash")?);
        let stamp = FileStamp::decode(&mut r)?;
        let len = r.u32()? as usize;
        let start = r.pos;
        r.take(len)?;
        entries.insert(path, Entry { text_hash, stamp, body: start..start + len });
    }
    if r.pos != content.len() {
        return Err("trailing bytes".into());
    }
    Ok(Some(CacheFile { bytes, entries }))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or("truncated entry")?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short")?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;

    const RULE: &str = "title: t{n}\nid: 00000000-0000-0000-0000-00000000000{n}\nlogsource: {product: windows, service: security}\ndetection:\n  s: {EventID: 4624, TargetUserName|contains: admin}\n  condition: s\n";

    fn rules_dir(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            std::fs::write(dir.path().join(format!("r{i}.yml")), RULE.replace("{n}", &i.to_string())).unwrap();
        }
        std::fs::write(dir.path().join("bad.yml"), "title: [unclosed\n").unwrap();
        // Not UTF-8: unreadable, so never cached, and no reason to rewrite the cache.
        std::fs::write(dir.path().join("latin1.yml"), b"title: caf\xe9\n").unwrap();
        dir
    }

    fn load(root: &Path, cache: &RuleCache) -> (RuleSet, CacheUse) {
        let mut set = RuleSet::default();
        let used = set.add_path_cached(root, &Placeholders::new(), Some(cache));
        (set, used)
    }

    fn uncached(root: &Path) -> String {
        let mut set = RuleSet::default();
        set.add_path(root, &Placeholders::new());
        format!("{set:?}")
    }

    #[test]
    fn unchanged_files_come_from_the_cache_and_load_the_same() {
        let rules = rules_dir(4);
        let dir = tempfile::tempdir().unwrap();
        let cache = RuleCache::new(dir.path().join("c"), &Placeholders::new());
        let (first, used) = load(rules.path(), &cache);
        assert_eq!((used.hits, used.misses, used.problems.len()), (0, 5, 0));
        let (second, used) = load(rules.path(), &cache);
        assert_eq!((used.hits, used.misses, used.problems.len()), (5, 0, 0));
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        assert_eq!(format!("{second:?}"), uncached(rules.path()));
        assert_eq!(second.errors.len(), 2, "the YAML error is cached too, and the unreadable file named");

        // One file changed: only it is parsed again, and the cache follows.
        std::fs::write(rules.path().join("r2.yml"), RULE.replace("{n}", "2").replace("admin", "root")).unwrap();
        let (third, used) = load(rules.path(), &cache);
        assert_eq!((used.hits, used.misses), (4, 1));
        assert_eq!(format!("{third:?}"), uncached(rules.path()));
        assert_eq!(load(rules.path(), &cache).1.hits, 5);

        // Other placeholders: another stamp, so nothing is taken from the old cache.
        let other = RuleCache::new(dir.path().join("c"), &Placeholders::from([("x".to_string(), vec!["y".to_string()])]));
        let used = load(rules.path(), &other).1;
        assert_eq!((used.hits, used.misses, used.problems.len()), (0, 5, 0));
    }

    /// A file whose metadata is as recorded is taken unread; any write moves its change
    /// time, even one that keeps its size and modification time, and it is read again. A
    /// file read within `settle` of its last change is read on every run until it settles.
    #[test]
    fn files_are_taken_unread_only_while_their_stamp_holds() {
        let settle = std::time::Duration::from_millis(200);
        let rules = rules_dir(4);
        let dir = tempfile::tempdir().unwrap();
        let cache = RuleCache::new(dir.path().join("c"), &Placeholders::new()).with_settle(settle);
        let unread = |used: &CacheUse| (used.hits, used.unread, used.misses);

        // Just written: cached by text, but every file is read again until it settles.
        assert_eq!(unread(&load(rules.path(), &cache).1), (0, 0, 5));
        assert_eq!(unread(&load(rules.path(), &cache).1), (5, 0, 0));
        std::thread::sleep(settle + std::time::Duration::from_millis(50));
        assert_eq!(unread(&load(rules.path(), &cache).1), (5, 0, 0), "read once more, and now stamped");
        let (set, used) = load(rules.path(), &cache);
        assert_eq!(unread(&used), (5, 5, 0));
        assert_eq!(format!("{set:?}"), uncached(rules.path()));

        // Same length, modification time put back: the change time still moved.
        let r2 = rules.path().join("r2.yml");
        let mtime = std::fs::metadata(&r2).unwrap().modified().unwrap();
        std::fs::write(&r2, RULE.replace("{n}", "2").replace("admin", "luser")).unwrap();
        std::fs::File::options().write(true).open(&r2).unwrap().set_modified(mtime).unwrap();
        let (set, used) = load(rules.path(), &cache);
        assert_eq!(unread(&used), (4, 4, 1));
        assert_eq!(format!("{set:?}"), uncached(rules.path()));
        assert!(format!("{set:?}").contains("luser"));
        assert_eq!(unread(&load(rules.path(), &cache).1), (5, 4, 0), "r2 is read until it settles");
        std::thread::sleep(settle + std::time::Duration::from_millis(50));
        load(rules.path(), &cache);
        assert_eq!(unread(&load(rules.path(), &cache).1), (5, 5, 0));

        // Replaced by another file (a checkout, a copy that keeps times): another inode.
        let copy = rules.path().join("copy.tmp");
        std::fs::copy(rules.path().join("r1.yml"), &copy).unwrap();
        std::fs::rename(&copy, rules.path().join("r3.yml")).unwrap();
        let (set, used) = load(rules.path(), &cache);
        assert_eq!(unread(&used), (4, 4, 1));
        assert_eq!(format!("{set:?}"), uncached(rules.path()));
    }

    #[test]
    fn a_damaged_cache_is_reported_ignored_and_rewritten() {
        let rules = rules_dir(3);
        let dir = tempfile::tempdir().unwrap();
        let cache = RuleCache::new(dir.path().to_path_buf(), &Placeholders::new());
        load(rules.path(), &cache);
        let file = cache.file_for(rules.path());
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&file, &bytes).unwrap();
        let (set, used) = load(rules.path(), &cache);
        assert_eq!((used.hits, used.misses), (0, 4));
        assert!(used.problems[0].contains("checksum"), "{:?}", used.problems);
        assert_eq!(format!("{set:?}"), uncached(rules.path()));
        std::fs::write(&file, &bytes[..10]).unwrap();
        let used = load(rules.path(), &cache).1;
        assert!(used.problems[0].contains("not a Portcullis rule cache"), "{:?}", used.problems);
        assert_eq!(load(rules.path(), &cache).1.hits, 4, "rewritten after the damage");
    }

    /// Loads of one directory at the same time (threads of one process) each write the
    /// cache whole; none reports a problem, and the file left is a good one.
    #[test]
    fn loads_at_the_same_time_leave_a_good_cache() {
        let rules = rules_dir(20);
        let dir = tempfile::tempdir().unwrap();
        let cache = RuleCache::new(dir.path().to_path_buf(), &Placeholders::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| assert!(load(rules.path(), &cache).1.problems.is_empty()));
            }
        });
        let used = load(rules.path(), &cache).1;
        assert_eq!((used.hits, used.problems.len()), (21, 0));
    }

    /// A cache file is input: one written by someone else, with a valid checksum, whose
    /// entry holds an expression nested deeper than any rule file can give, is not used.
    #[test]
    fn a_hostile_entry_is_parsed_afresh_not_trusted() {
        let rules = rules_dir(1);
        let dir = tempfile::tempdir().unwrap();
        let cache = RuleCache::new(dir.path().to_path_buf(), &Placeholders::new());
        let (honest, _) = load(rules.path(), &cache);
        let mut evil = honest.clone();
        let mut deep = Expr::Const(true);
        for _ in 0..2_000 {
            deep = Expr::Not(Box::new(deep));
        }
        evil.rules[0].detection = Expr::And(vec![deep]);
        let path = rules.path().join("r0.yml").display().to_string();
        let text = std::fs::read_to_string(rules.path().join("r0.yml")).unwrap();
        let entry = NewEntry {
            path,
            text_hash: RuleCache::text_hash(&text),
            stamp: None,
            body: Body::Fresh(postcard::to_allocvec(&evil).unwrap()),
        };
        cache.write(rules.path(), &[entry], &CacheFile::default()).unwrap();
        let (set, used) = load(rules.path(), &cache);
        assert_eq!(used.hits, 0);
        assert_eq!(format!("{set:?}"), format!("{honest:?}"));
    }
}

//! Loading rule files and directories into a [`RuleSet`]: every document that
//! parses is kept; every one that does not is listed with file, line and reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::cache::{Body, CacheFile, CacheUse, FileStamp, NewEntry, RuleCache};
use crate::modifiers::Placeholders;
use crate::rule::{CorrelationDoc, Document, Filter, LoadError, Rule, load_error};
use crate::yaml::{self, Node};

/// Everything loaded from rule sources.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub filters: Vec<Filter>,
    pub correlations: Vec<CorrelationDoc>,
    pub errors: Vec<LoadError>,
    pub files: usize,
}

impl RuleSet {
    /// Adds every document of one YAML text; `label` names it in errors and findings.
    pub fn add_text(&mut self, text: &str, label: &str, placeholders: &Placeholders) {
        self.files += 1;
        let path: Arc<str> = Arc::from(label);
        let docs = match yaml::parse_documents(text) {
            Ok(d) => d,
            Err(e) => {
                self.errors.push(LoadError {
                    path: label.to_string(),
                    line: e.line,
                    reason: format!("YAML: {}", e.message),
                    needs_placeholder: false,
                });
                return;
            }
        };
        for doc in &docs {
            match crate::rule::parse_document(doc, &path, placeholders) {
                Ok(Document::Rule(r)) => self.rules.push(r),
                Ok(Document::Filter(f)) => self.filters.push(f),
                Ok(Document::Correlation(c)) => self.correlations.push(c),
                Err(e) => self.errors.push(load_error(label, e)),
            }
        }
    }

    /// Loads rule files, and `.yml`/`.yaml` files under directories (recursively).
    pub fn add_path(&mut self, path: &Path, placeholders: &Placeholders) {
        self.add_path_cached(path, placeholders, None);
    }

    /// [`RuleSet::add_path`], taking each rule file whose text is unchanged from the cache
    /// (see [`crate::cache`]) and updating the cache when any file was parsed afresh.
    pub fn add_path_cached(&mut self, path: &Path, placeholders: &Placeholders, cache: Option<&RuleCache>) -> CacheUse {
        let mut files = Vec::new();
        if path.is_dir() {
            collect_yaml(path, &mut files);
            // Path order (component by component), from a key made once per path: comparing
            // paths parses their components on every comparison.
            files.sort_by_cached_key(|p| {
                p.as_os_str().as_encoded_bytes().iter().map(|&b| if b == b'/' { 0 } else { b }).collect::<Vec<u8>>()
            });
        } else {
            files.push(path.to_path_buf());
        }
        if files.is_empty() {
            self.errors.push(LoadError {
                path: path.display().to_string(),
                line: 0,
                reason: "no .yml or .yaml rule files here".into(),
                needs_placeholder: false,
            });
        }
        let mut used = CacheUse::default();
        let old = match cache.map(|c| c.read(path)) {
            Some(Ok(file)) => file,
            Some(Err(problem)) => {
                used.problems.push(problem);
                CacheFile::default()
            }
            None => CacheFile::default(),
        };
        let parsed: Vec<(RuleSet, Option<NewEntry>)> = files
            .into_par_iter()
            .map(|f| {
                // The same text as `display()` gives, without going through a formatter
                // (thousands of rule files: a measurable share of a warm start).
                let label = f.to_string_lossy().into_owned();
                let mut one = RuleSet::default();
                let Some(cache) = cache else {
                    match read_bounded(&f) {
                        Ok(text) => one.add_text(&text, &label, placeholders),
                        Err(reason) => unreadable(&mut one, label, reason),
                    }
                    return (one, None);
                };
                // Taken before the text is read: a write after it gives a later stamp.
                let stamp = FileStamp::of(&f);
                if let Some(stamp) = stamp
                    && let Some((cached, text_hash, range)) = old.get_unread(&label, stamp)
                {
                    return (cached, Some(NewEntry { path: label, text_hash, stamp: Some(stamp), body: Body::Unread(range) }));
                }
                let text = match read_bounded(&f) {
                    Ok(text) => text,
                    Err(reason) => {
                        unreadable(&mut one, label, reason);
                        return (one, None);
                    }
                };
                let stamp = stamp.filter(|s| s.settled(std::time::SystemTime::now(), cache.settle()));
                let text_hash = RuleCache::text_hash(&text);
                if let Some((cached, range)) = old.get(&label, text_hash) {
                    return (cached, Some(NewEntry { path: label, text_hash, stamp, body: Body::Cached(range) }));
                }
                one.add_text(&text, &label, placeholders);
                let entry =
                    postcard::to_allocvec(&one).ok().map(|body| NewEntry { path: label, text_hash, stamp, body: Body::Fresh(body) });
                (one, entry)
            })
            .collect();
        let mut entries = Vec::new();
        // Whether any entry's stamp is not the one recorded (a file touched, or settled
        // since): the cache is rewritten so that the next run need not read it.
        let mut restamped = false;
        for (one, entry) in parsed {
            // A file that could not be read is neither: it has no text to cache, and
            // counting it as parsed would rewrite the cache on every run.
            if let Some(e) = &entry {
                match e.body {
                    Body::Unread(_) => (used.hits, used.unread) = (used.hits + 1, used.unread + 1),
                    Body::Cached(_) => used.hits += 1,
                    Body::Fresh(_) => used.misses += 1,
                }
                restamped |= e.stamp != old.stamp_of(&e.path);
            }
            entries.extend(entry);
            self.merge(one);
        }
        if let Some(cache) = cache
            && (used.misses > 0 || restamped || entries.len() != old.entries.len())
            && let Err(problem) = cache.write(path, &entries, &old)
        {
            used.problems.push(problem);
        }
        used
    }

    pub fn merge(&mut self, other: RuleSet) {
        self.rules.extend(other.rules);
        self.filters.extend(other.filters);
        self.correlations.extend(other.correlations);
        self.errors.extend(other.errors);
        self.files += other.files;
    }
}

/// Records a rule file that could not be read (as a file, so that it is counted).
fn unreadable(one: &mut RuleSet, path: String, reason: String) {
    one.files += 1;
    one.errors.push(LoadError { path, line: 0, reason, needs_placeholder: false });
}

/// A file's bytes, read through one handle and never past `max`, even if it grows after it
/// was sized (one open: thousands of rule files make a second path lookup a fifth of a warm
/// start). `None` when it is larger than `max`.
pub(crate) fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path, yaml::MAX_YAML_BYTES as u64)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("rule file is larger than {} bytes", yaml::MAX_YAML_BYTES))?;
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_yaml(&p, out),
            Ok(_) if matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")) => out.push(p),
            _ => {}
        }
    }
}

/// Reads a placeholder file: a YAML mapping of name to a value or list of values.
pub fn load_placeholders(path: &Path) -> Result<Placeholders, String> {
    let text = read_bounded(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let docs = yaml::parse_documents(&text).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.message))?;
    let mut out = Placeholders::new();
    let Some(map) = docs.first().and_then(Node::as_map) else {
        return Err(format!("{}: expected a mapping of placeholder names to values", path.display()));
    };
    for (k, v) in map {
        let Some(name) = k.as_str() else { continue };
        out.insert(name.trim_matches('%').to_string(), v.string_list());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_are_read_within_the_bound_and_text_only() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.yml");
        std::fs::write(&ok, "title: t\n").unwrap();
        assert_eq!(read_bounded(&ok).unwrap(), "title: t\n");
        let big = dir.path().join("big.yml");
        std::fs::write(&big, vec![b'#'; yaml::MAX_YAML_BYTES + 1]).unwrap();
        assert!(read_bounded(&big).unwrap_err().contains("larger than"));
        let bin = dir.path().join("bin.yml");
        std::fs::write(&bin, b"title: \xff\n").unwrap();
        assert_eq!(read_bounded(&bin).unwrap_err(), "not UTF-8 text (byte 7)");
        assert!(read_bounded(&dir.path().join("missing.yml")).is_err());
        assert!(read_bounded(dir.path()).is_err(), "a directory is not a rule file");
    }
}

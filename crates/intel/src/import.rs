//! Reading indicator files: STIX 2.1 bundles (indicator patterns, cyber observables, and
//! the threat actors, intrusion sets and campaigns related to them), MISP event JSON
//! (attributes, objects, threat-actor galaxies and tags), and CSV or plain lists (one
//! value per line, or `type,value[,context]`). Defanged values are refanged. Every value
//! that cannot be used is reported with its position, never fatal.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use portcullis_event::text_hash::TextHash;
use serde_json::Value;

use crate::indicator::{Context, Indicator, Kind, normalise};

/// An indicator that could not be used, and where it was.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// `file:line` for lists, `file: objects[i] (id)` for STIX, `file: Attribute[i]` for MISP.
    pub position: String,
    pub reason: String,
}

/// What one file held.
#[derive(Debug, Default)]
pub struct Imported {
    pub format: &'static str,
    pub indicators: Vec<Indicator>,
    pub problems: Vec<Problem>,
    /// STIX patterns with parts Portcullis does not match (e.g. `process:name`), counted.
    pub unsupported: usize,
}

/// Largest indicator file read.
pub const MAX_FILE: u64 = 1 << 30;

/// Reads one indicator file; the format is recognised by content.
pub fn read(path: &std::path::Path) -> Result<Imported, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if len > MAX_FILE {
        return Err(format!("{}: larger than 1 GiB", path.display()));
    }
    let name = path.display().to_string();
    let mut file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    // A JSON object is streamed (a bundle of a million indicators is never held whole);
    // anything else is read into memory.
    use std::io::{Read, Seek};
    let mut head = Vec::new();
    (&mut file).take(64).read_to_end(&mut head).map_err(|e| format!("{name}: {e}"))?;
    let first = head.iter().copied().find(|b| !(b.is_ascii_whitespace() || matches!(b, 0xef | 0xbb | 0xbf)));
    file.rewind().map_err(|e| format!("{name}: {e}"))?;
    if first == Some(b'{') {
        if let Some(bundle) = stix_bundle(&name, &mut file).map_err(|e| format!("{name}: {e}"))? {
            return Ok(bundle);
        }
        file.rewind().map_err(|e| format!("{name}: {e}"))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        skip_bom(&mut reader).map_err(|e| format!("{name}: {e}"))?;
        return Ok(json_object(&name, reader));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| format!("{name}: {e}"))?;
    Ok(parse(&name, &bytes))
}

fn skip_bom(r: &mut impl std::io::BufRead) -> std::io::Result<()> {
    let buf = r.fill_buf()?;
    let mut skip = 0;
    while skip < buf.len() && buf[skip].is_ascii_whitespace() {
        skip += 1;
    }
    if buf[skip..].starts_with(&[0xef, 0xbb, 0xbf]) {
        skip += 3;
    }
    r.consume(skip);
    Ok(())
}

/// Parses indicator data named `name` (for positions and the default source).
pub fn parse(name: &str, bytes: &[u8]) -> Imported {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        if let Ok(Some(bundle)) = stix_bundle(name, &mut trimmed.as_bytes()) {
            return bundle;
        }
        return json_object(name, trimmed.as_bytes());
    }
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) => {
                // A list of MISP events (a bundle is always an object).
                if v.as_array().is_some_and(|a| a.iter().any(|e| e.get("Event").is_some())) {
                    return misp(name, &v);
                }
                return Imported {
                    format: "json",
                    problems: vec![Problem { position: name.into(), reason: "JSON that is neither a STIX bundle nor a MISP event".into() }],
                    ..Imported::default()
                };
            }
            Err(e) => {
                return Imported {
                    format: "json",
                    problems: vec![Problem {
                        position: format!("{name}:{}:{}", e.line(), e.column()),
                        reason: format!("invalid JSON: {e}"),
                    }],
                    ..Imported::default()
                };
            }
        }
    }
    list(name, trimmed)
}

fn list(name: &str, text: &str) -> Imported {
    let mut out = Imported { format: "csv", ..Imported::default() };
    let ctx = Arc::new(Context { source: short_name(name), ..Context::default() });
    let mut type_col: Option<usize> = None;
    let mut value_col = 0usize;
    let mut ctx_col: Option<usize> = None;
    let mut contexts: HashMap<String, Arc<Context>> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let cells = split_csv(line);
        if i == 0 || (out.indicators.is_empty() && out.problems.is_empty() && type_col.is_none() && cells.len() > 1) {
            let lower: Vec<String> = cells.iter().map(|c| c.trim().to_ascii_lowercase()).collect();
            if let Some(v) = lower.iter().position(|c| matches!(c.as_str(), "value" | "indicator" | "ioc" | "observable")) {
                value_col = v;
                type_col = lower.iter().position(|c| matches!(c.as_str(), "type" | "kind" | "indicator_type"));
                ctx_col =
                    lower.iter().position(|c| matches!(c.as_str(), "context" | "description" | "comment" | "actor" | "campaign" | "tags"));
                continue;
            }
        }
        let value = cells.get(value_col).map(String::as_str).unwrap_or("").trim();
        let hint = match type_col.and_then(|t| cells.get(t)) {
            Some(t) if !t.trim().is_empty() => match Kind::from_name(t) {
                Some(k) => Some(k),
                None => {
                    out.problems
                        .push(Problem { position: format!("{name}:{}", i + 1), reason: format!("unknown indicator type {:?}", t.trim()) });
                    continue;
                }
            },
            _ => None,
        };
        let context = match ctx_col.and_then(|c| cells.get(c)).map(|c| c.trim()).filter(|c| !c.is_empty()) {
            Some(c) => contexts
                .entry(c.to_string())
                .or_insert_with(|| Arc::new(Context { source: ctx.source.clone(), description: c.to_string(), ..Context::default() }))
                .clone(),
            None => ctx.clone(),
        };
        match normalise(hint, value) {
            Ok((kind, value)) => out.indicators.push(Indicator { kind, value, context, stix_id: None }),
            Err(reason) => out.problems.push(Problem { position: format!("{name}:{}", i + 1), reason }),
        }
    }
    out
}

/// Cells of one line split at `,`, tab or `;` outside quotes; quoted cells unquoted (`""` is
/// a quote), and the `'` a CSV writer puts before a cell a spreadsheet would run as a
/// formula taken off again.
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            ',' | '\t' | ';' if !quoted => cells.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    cells.push(cell);
    for c in &mut cells {
        let t = c.trim();
        if t.len() > 1 && t.starts_with('\'') && t[1..].starts_with(['=', '+', '-', '@']) {
            *c = t[1..].to_string();
        }
    }
    cells
}

fn short_name(name: &str) -> String {
    std::path::Path::new(name).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_string())
}

/// `[object:path OP 'value']` with `=` or `ISSUBSET` and a value without quotes or
/// backslashes, split into its parts; anything else is left to the full pattern regex.
fn simple_comparison(pattern: &str) -> Option<(&str, &str, &str, &str)> {
    let inner = pattern.trim().strip_prefix('[')?.strip_suffix(']')?;
    // The value is the last quoted string (a path may quote too: `hashes.'SHA-256'`).
    let body = inner.strip_suffix('\'')?;
    let open = body.rfind('\'')?;
    let (lhs, val) = (&body[..open], &body[open + 1..]);
    if val.contains('\\') || lhs.ends_with('\\') {
        return None;
    }
    let lhs = lhs.trim_end();
    let (lhs, op) = if let Some(l) = lhs.strip_suffix('=') {
        (l, "=")
    } else if lhs.len() > 8 && lhs.as_bytes()[lhs.len() - 8..].eq_ignore_ascii_case(b"ISSUBSET") {
        // Eight ASCII bytes: cutting before them is on a character boundary.
        (&lhs[..lhs.len() - 8], "ISSUBSET")
    } else {
        return None;
    };
    let lhs = lhs.trim_end();
    if lhs.ends_with(['!', '<', '>']) {
        return None;
    }
    let (obj, path) = lhs.trim_start().split_once(':')?;
    let ok_obj = !obj.is_empty() && obj.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let ok_path = !path.is_empty() && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'\'' | b'-'));
    (ok_obj && ok_path).then_some((obj, path, op, val))
}

/// STIX comparison expressions Portcullis matches: `[type:path = 'value']` and
/// `ISSUBSET 'cidr'`.
fn pattern_terms(pattern: &str) -> (Vec<(Kind, String)>, usize) {
    use std::sync::OnceLock;
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(?i)([a-z0-9-]+):([a-z0-9_.'\-]+)\s*(=|ISSUBSET|LIKE|MATCHES|!=|IN)\s*'((?:[^'\\]|\\.)*)'")
            .expect("valid regex")
    });
    let mut out = Vec::new();
    let mut unsupported = 0;
    let mut take = |obj: &str, path: &str, op: &str, val: Cow<'_, str>| match comparison_kind(obj, path, op) {
        // `=` on an address may hold a CIDR too.
        Some(Kind::Ipv4 | Kind::Ipv6) if val.contains('/') => out.push((Kind::Cidr, val.into_owned())),
        Some(k) => out.push((k, val.into_owned())),
        None => unsupported += 1,
    };
    // The common shape, one comparison with a plain value, without the regex; it must give
    // what the regex gives.
    match simple_comparison(pattern) {
        Some((obj, path, op, val)) => take(obj, path, op, Cow::Borrowed(val)),
        None => {
            for c in re.captures_iter(pattern) {
                take(&c[1], &c[2], &c[3], Cow::Owned(c[4].replace("\\'", "'")));
            }
        }
    }
    (out, unsupported)
}

/// The indicator kind a comparison `obj:path op` gives, if Portcullis matches it.
fn comparison_kind(obj: &str, path: &str, op: &str) -> Option<Kind> {
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let (eq, subset) = (op == "=", is(op, "ISSUBSET"));
    let value = is(path, "value");
    if is(obj, "ipv4-addr") && value {
        return if eq { Some(Kind::Ipv4) } else { subset.then_some(Kind::Cidr) };
    }
    if is(obj, "ipv6-addr") && value {
        return if eq { Some(Kind::Ipv6) } else { subset.then_some(Kind::Cidr) };
    }
    if !eq {
        return None;
    }
    if is(obj, "domain-name") && value {
        return Some(Kind::Domain);
    }
    if is(obj, "url") && value {
        return Some(Kind::Url);
    }
    if (is(obj, "email-addr") && value) || (is(obj, "email-message") && (is(path, "from_ref.value") || is(path, "sender_ref.value"))) {
        return Some(Kind::Email);
    }
    // `get`: the regex's case-insensitive classes take some non-ASCII letters (the Kelvin sign).
    if (is(obj, "file") || is(obj, "artifact"))
        && let (Some(head), Some(alg)) = (path.get(..7), path.get(7..))
        && is(head, "hashes.")
    {
        let h = alg.trim_matches('\'').replace('-', "").to_ascii_lowercase();
        return match h.as_str() {
            "md5" => Some(Kind::Md5),
            "sha1" => Some(Kind::Sha1),
            "sha256" => Some(Kind::Sha256),
            _ => None,
        };
    }
    None
}

/// Largest single STIX object accepted in a bundle.
const MAX_OBJECT: usize = 64 << 20;

/// A STIX bundle read fast: the top-level object is split into the elements of its
/// `objects` list by a byte scanner (strings skipped with `memchr`, nothing decoded), and
/// batches of elements are decoded and analysed by worker threads, their outcomes applied
/// in bundle order. An element that is not valid JSON is reported with its index and the
/// rest of the bundle still read. `None` when the object has no `objects` list at its top
/// (a MISP event, or not JSON at all): the caller reads it another way.
fn stix_bundle(name: &str, reader: &mut dyn std::io::Read) -> std::io::Result<Option<Imported>> {
    use std::sync::mpsc;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let mut stix = StixReader { name, ..Default::default() };
    let (work_tx, work_rx) = mpsc::sync_channel::<(usize, Vec<u8>, Vec<(usize, usize)>)>(workers * 2);
    // Batch buffers go back to the reader once analysed, so they are not allocated (and
    // their pages faulted in) again for every batch.
    let (spare_tx, spare_rx) = mpsc::channel::<(Vec<u8>, Vec<(usize, usize)>)>();
    let work_rx = std::sync::Mutex::new(work_rx);
    let ended = std::thread::scope(|scope| -> std::io::Result<Split> {
        // Owned here, so that leaving early (a read error) ends the workers.
        let work_tx = work_tx;
        let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<Outcome>)>();
        for _ in 0..workers {
            let (work_rx, done_tx, spare_tx) = (&work_rx, done_tx.clone(), spare_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = work_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((start, mut text, mut bounds)) = next else { break };
                    let out = bounds.iter().enumerate().map(|(k, &(a, b))| analyse(name, start + k, &text[a..b])).collect();
                    if done_tx.send((start, out)).is_err() {
                        break;
                    }
                    // A buffer that one huge element grew is not kept.
                    if text.capacity() <= 4 * BATCH * 512 {
                        text.clear();
                        bounds.clear();
                        let _ = spare_tx.send((text, bounds));
                    }
                }
            });
        }
        drop(spare_tx);
        drop(done_tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut in_flight = 0usize;
        let mut text = Vec::with_capacity(BATCH * 512);
        let mut bounds = Vec::with_capacity(BATCH);
        let mut start = 0usize;
        // Applies every outcome that is next in bundle order; with `block`, until none is
        // in flight.
        let mut apply_ready = |stix: &mut StixReader<'_>, in_flight: &mut usize, block: bool| loop {
            while let Some(out) = waiting.remove(&stix.index) {
                stix.apply(out);
                *in_flight -= 1;
            }
            if *in_flight == 0 {
                break;
            }
            let got = if block { done_rx.recv().ok() } else { done_rx.try_recv().ok() };
            match got {
                Some((at, out)) => {
                    waiting.insert(at, out);
                }
                None => break,
            }
        };
        let ended = split_objects(reader, &mut |element: &[u8]| {
            bounds.push((text.len(), text.len() + element.len()));
            text.extend_from_slice(element);
            if bounds.len() == BATCH {
                let (spare_text, spare_bounds) =
                    spare_rx.try_recv().unwrap_or_else(|_| (Vec::with_capacity(BATCH * 512), Vec::with_capacity(BATCH)));
                let batch = (start, std::mem::replace(&mut text, spare_text), std::mem::replace(&mut bounds, spare_bounds));
                start += BATCH;
                in_flight += 1;
                if work_tx.send(batch).is_err() {
                    return false;
                }
                apply_ready(&mut stix, &mut in_flight, false);
            }
            true
        })?;
        if !bounds.is_empty() {
            in_flight += 1;
            let _ = work_tx.send((start, std::mem::take(&mut text), std::mem::take(&mut bounds)));
        }
        drop(work_tx);
        apply_ready(&mut stix, &mut in_flight, true);
        Ok(ended)
    })?;
    match ended {
        Split::NoObjects => return Ok(None),
        Split::Complete => {}
        Split::Truncated(at) => stix.out.problems.push(Problem {
            position: format!("{name}: byte {at}"),
            reason: "the bundle ends early (truncated?); the objects before were read".into(),
        }),
        Split::TooLarge(at) => stix.out.problems.push(Problem {
            position: format!("{name}: byte {at}"),
            reason: format!("an object larger than {} MiB; the bundle was read up to it", MAX_OBJECT >> 20),
        }),
    }
    stix.objects = Some(true);
    Ok(Some(stix.finish()))
}

/// How splitting a bundle ended.
#[derive(Debug, PartialEq)]
enum Split {
    /// The top-level object has no `objects` list.
    NoObjects,
    Complete,
    /// The input ended inside the list (at this byte).
    Truncated(u64),
    /// An element longer than [`MAX_OBJECT`] starts at this byte.
    TooLarge(u64),
}

/// Drops `buf[..keep]`, counting it in `consumed` and moving `elem_start` with the rest.
fn drop_front(buf: &mut Vec<u8>, keep: usize, consumed: &mut u64, elem_start: &mut Option<usize>) {
    if keep > 0 {
        buf.drain(..keep);
        *consumed += keep as u64;
        if let Some(s) = elem_start.as_mut() {
            *s -= keep;
        }
    }
}

/// Appends up to 1 MiB read from `reader` to `buf`; how many bytes (0 at the end).
fn read_more(reader: &mut dyn std::io::Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let old = buf.len();
    buf.resize(old + (1 << 20), 0);
    let n = loop {
        match reader.read(&mut buf[old..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    };
    buf.truncate(old + n);
    Ok(n)
}

/// The first `"` or `\\` in `hay`. Most JSON strings are short: eight bytes at a time
/// finds their end before `memchr2` would have set up.
fn quote_or_escape(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i < 32
        && let Some(word) = hay.get(i..i + 8)
    {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let (q, e) = (w ^ (ONES * u64::from(b'"')), w ^ (ONES * u64::from(b'\\')));
        // A zero byte in `q` or `e`; the lowest flag is exact (later ones may not be).
        let found = ((q.wrapping_sub(ONES) & !q) | (e.wrapping_sub(ONES) & !e)) & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr::memchr2(b'"', b'\\', &hay[i..]).map(|k| k + i)
}

/// Hands each element of the top-level object's `objects` list to `element` (which returns
/// `false` to stop), reading `reader` in chunks. Only structure is scanned: brackets,
/// commas and string boundaries; the elements' own JSON is checked when they are decoded.
fn split_objects(reader: &mut dyn std::io::Read, element: &mut dyn FnMut(&[u8]) -> bool) -> std::io::Result<Split> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut consumed: u64 = 0; // bytes dropped from the front of `buf`
    let mut pos = 0usize;
    let mut depth = 0usize;
    let mut in_list = false;
    // At depth 1: whether the last string was `objects` (a key once `:` follows), and
    // whether the key being valued is.
    let mut last_string_objects = false;
    let mut key_is_objects = false;
    let mut seen_objects = false;
    let mut elem_start: Option<usize> = None;
    let mut eof = false;
    loop {
        if pos >= buf.len() {
            if eof {
                if !seen_objects {
                    return Ok(Split::NoObjects);
                }
                // The last element may be whole (only the list's end is missing): decoding
                // it tells.
                if let Some(s) = elem_start.take() {
                    element(buf[s..].trim_ascii_end());
                }
                return Ok(Split::Truncated(consumed + pos as u64));
            }
            // Keep only the element in progress (or nothing) before reading on.
            let keep = elem_start.unwrap_or(pos).min(pos);
            drop_front(&mut buf, keep, &mut consumed, &mut elem_start);
            pos -= keep;
            if elem_start.is_some() && buf.len() > MAX_OBJECT {
                return Ok(Split::TooLarge(consumed));
            }
            eof = read_more(reader, &mut buf)? == 0;
            continue;
        }
        let b = buf[pos];
        match b {
            b'"' => {
                // Skip to the closing quote; an escaped quote does not close.
                let open = pos;
                let mut i = pos + 1;
                loop {
                    match quote_or_escape(&buf[i..]) {
                        Some(k) if buf[i + k] == b'\\' => {
                            if i + k + 1 >= buf.len() {
                                i = buf.len();
                                break;
                            }
                            i += k + 2;
                        }
                        Some(k) => {
                            i += k;
                            break;
                        }
                        None => {
                            i = buf.len();
                            break;
                        }
                    }
                }
                if i >= buf.len() {
                    // The string continues past the buffer: read more and scan it again.
                    if eof {
                        pos = buf.len();
                        continue;
                    }
                    let keep = elem_start.unwrap_or(open).min(open);
                    drop_front(&mut buf, keep, &mut consumed, &mut elem_start);
                    pos = open - keep;
                    if buf.len() > MAX_OBJECT {
                        // Too long for an object of the list; elsewhere, not a bundle this
                        // reader takes (the caller's streaming reader has its own limits).
                        return Ok(if in_list {
                            Split::TooLarge(consumed + pos as u64)
                        } else if seen_objects {
                            Split::Complete
                        } else {
                            Split::NoObjects
                        });
                    }
                    eof = read_more(reader, &mut buf)? == 0;
                    continue;
                }
                if depth == 1 {
                    last_string_objects = &buf[open + 1..i] == b"objects";
                }
                if in_list && depth == 2 && elem_start.is_none() {
                    elem_start = Some(open);
                }
                pos = i + 1;
                continue;
            }
            b':' if depth == 1 => {
                key_is_objects = last_string_objects;
            }
            b'{' | b'[' => {
                if in_list && depth == 2 && elem_start.is_none() {
                    elem_start = Some(pos);
                }
                if depth == 1 && b == b'[' && key_is_objects && !seen_objects {
                    in_list = true;
                    seen_objects = true;
                }
                depth += 1;
            }
            b'}' | b']' => {
                if in_list && depth == 2 {
                    // The list closes.
                    if let Some(s) = elem_start.take()
                        && !element(buf[s..pos].trim_ascii_end())
                    {
                        return Ok(Split::Complete);
                    }
                    in_list = false;
                }
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(if seen_objects { Split::Complete } else { Split::NoObjects });
                }
            }
            b',' if in_list && depth == 2 => {
                if let Some(s) = elem_start.take()
                    && !element(buf[s..pos].trim_ascii_end())
                {
                    return Ok(Split::Complete);
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                if in_list && depth == 2 && elem_start.is_none() {
                    elem_start = Some(pos);
                }
            }
        }
        if depth == 1 && b == b',' {
            key_is_objects = false;
        }
        pos += 1;
    }
}

/// A top-level JSON object read as a stream: a STIX bundle's `objects` one at a time (a
/// bundle of a million indicators is never held whole, only what each indicator keeps);
/// any other key (a MISP `Event`, `response`) kept as JSON.
fn json_object(name: &str, reader: impl std::io::Read) -> Imported {
    let mut stix = StixReader { name, ..Default::default() };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let top = serde::de::DeserializeSeed::deserialize(TopLevel { stix: &mut stix }, &mut de).and_then(|top| de.end().map(|()| top));
    let (is_bundle, other) = match top {
        Ok(t) => t,
        Err(e) => {
            return Imported {
                format: "json",
                problems: vec![Problem { position: format!("{name}:{}:{}", e.line(), e.column()), reason: format!("invalid JSON: {e}") }],
                ..Imported::default()
            };
        }
    };
    if is_bundle || stix.objects.is_some() {
        return stix.finish();
    }
    let v = Value::Object(other);
    if v.get("Event").is_some() || v.get("response").is_some() {
        return misp(name, &v);
    }
    Imported {
        format: "json",
        problems: vec![Problem { position: name.into(), reason: "JSON that is neither a STIX bundle nor a MISP event".into() }],
        ..Imported::default()
    }
}

struct TopLevel<'a, 'n> {
    stix: &'a mut StixReader<'n>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = (bool, serde_json::Map<String, Value>);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel<'_, '_> {
    type Value = (bool, serde_json::Map<String, Value>);
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut bundle = false;
        let mut other = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "objects" {
                let is_list = map.next_value_seed(Objects { stix: &mut *self.stix })?;
                self.stix.objects = Some(is_list);
            } else {
                let v: Value = map.next_value()?;
                bundle |= key == "type" && v.as_str() == Some("bundle");
                other.insert(key, v);
            }
        }
        Ok((bundle, other))
    }
}

/// The `objects` value: each element handed to the reader as it is parsed. `false` when it
/// is not a list.
struct Objects<'a, 'n> {
    stix: &'a mut StixReader<'n>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Objects<'_, '_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Objects<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of STIX objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        // Only reached when the fast split (`stix_bundle`) did not take the file.
        while let Some(raw) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
            let out = analyse(self.stix.name, self.stix.index, raw.get().as_bytes());
            self.stix.apply(vec![out]);
        }
        Ok(true)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// The parts of one STIX object Portcullis uses; a value of the wrong JSON type is taken as
/// absent (and reported like a missing one), never a reason to refuse the bundle.
#[derive(Default)]
struct RawObject<'a> {
    /// `None` when the element is not a JSON object at all.
    is_object: bool,
    kind: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    description: Option<Cow<'a, str>>,
    created_by_ref: Option<Cow<'a, str>>,
    revoked: Option<bool>,
    pattern_type: Option<Cow<'a, str>>,
    pattern: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    hashes: Option<Value>,
    source_ref: Option<Cow<'a, str>>,
    target_ref: Option<Cow<'a, str>>,
}

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a STIX object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
                let mut o = RawObject { is_object: true, ..Default::default() };
                while let Some(LenientString(key)) = map.next_key::<LenientString<'de>>()? {
                    let slot = match key.as_deref().unwrap_or("") {
                        "type" => &mut o.kind,
                        "id" => &mut o.id,
                        "name" => &mut o.name,
                        "description" => &mut o.description,
                        "created_by_ref" => &mut o.created_by_ref,
                        "pattern_type" => &mut o.pattern_type,
                        "pattern" => &mut o.pattern,
                        "value" => &mut o.value,
                        "source_ref" => &mut o.source_ref,
                        "target_ref" => &mut o.target_ref,
                        "revoked" => {
                            o.revoked = map.next_value::<Value>()?.as_bool();
                            continue;
                        }
                        "hashes" => {
                            o.hashes = Some(map.next_value::<Value>()?);
                            continue;
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<LenientString>()?.0;
                }
                Ok(o)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawObject<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RawObject::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<RawObject<'de>, E> {
                Ok(RawObject::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawObject<'de>, E> {
                Ok(RawObject::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawObject<'de>, E> {
                Ok(RawObject::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawObject<'de>, E> {
                Ok(RawObject::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<RawObject<'de>, E> {
                Ok(RawObject::default())
            }
            fn visit_unit<E>(self) -> Result<RawObject<'de>, E> {
                Ok(RawObject::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A string (borrowed from the input when it has no escapes), or nothing when the JSON
/// value is of another type.
struct LenientString<'a>(Option<Cow<'a, str>>);

impl<'de> serde::Deserialize<'de> for LenientString<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LenientString<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientString(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientString(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientString(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientString(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientString(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientString(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientString(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LenientString(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(LenientString(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(LenientString(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An indicator or observable read by a worker.
struct Pending {
    id: String,
    created_by: Option<String>,
    /// Its own name or description (at most 200 characters).
    own: Option<String>,
    found: Vec<(Kind, String)>,
}

/// An indicator or observable kept until the relationships that give its context are read:
/// a million of them wait at once, so the producer is a number and the strings are boxed.
struct Waiting {
    id: Box<str>,
    /// The number [`StixReader::producers`] gives its `created_by_ref`, or [`NO_PRODUCER`].
    producer: u32,
    own: Option<Box<str>>,
    found: Vec<(Kind, String)>,
}

const NO_PRODUCER: u32 = u32::MAX;

/// STIX objects decoded and analysed per batch by a worker thread.
const BATCH: usize = 1024;

/// What one element of `objects` contributes.
enum Contribution {
    Indicator(Pending),
    Relationship(String, String),
    /// id, type, name of an object that gives context.
    Named(String, String, String),
    Nothing,
}

/// One element of `objects`, analysed.
struct Outcome {
    contribution: Contribution,
    problems: Vec<Problem>,
    unsupported: usize,
}

/// What a streamed bundle keeps: the indicators (normalised), the names of the objects
/// that give context, and the relationships between them.
#[derive(Default)]
struct StixReader<'n> {
    name: &'n str,
    /// Whether `objects` was seen, and was a list.
    objects: Option<bool>,
    index: usize,
    pending: Vec<Waiting>,
    /// Each distinct `created_by_ref`, numbered in [`Waiting::producer`].
    producers: HashMap<String, u32, TextHash>,
    /// id → (type, name) of identities, actors, intrusion sets, campaigns, malware, tools, infrastructure.
    named: HashMap<String, (String, String), TextHash>,
    /// (source, target) of every relationship.
    relationships: Vec<(String, String)>,
    out: Imported,
}

/// Decodes and analyses element `i` of bundle `name`'s `objects`, given as JSON text.
fn analyse(name: &str, i: usize, raw: &[u8]) -> Outcome {
    let mut out = Outcome { contribution: Contribution::Nothing, problems: Vec::new(), unsupported: 0 };
    let o: RawObject<'_> = match serde_json::from_slice(raw) {
        Ok(o) => o,
        Err(e) => {
            out.problems.push(Problem { position: format!("{name}: objects[{i}]"), reason: format!("invalid JSON: {e}") });
            return out;
        }
    };
    let t = o.kind.as_deref().unwrap_or("");
    let id = o.id.as_deref().unwrap_or("");
    let pos = || format!("{name}: objects[{i}] ({})", if id.is_empty() { t } else { id });
    if !o.is_object {
        out.problems.push(Problem { position: format!("{name}: objects[{i}]"), reason: "not a JSON object".into() });
        return out;
    }
    let own = || o.name.as_deref().or(o.description.as_deref()).map(|d| d.chars().take(200).collect::<String>());
    let mut found: Vec<(Kind, String)> = Vec::new();
    match t {
        "indicator" => {
            if o.revoked == Some(true) {
                return out;
            }
            let pt = o.pattern_type.as_deref().unwrap_or("stix");
            if !pt.eq_ignore_ascii_case("stix") {
                out.problems.push(Problem { position: pos(), reason: format!("pattern_type {pt:?} is not matched (only stix)") });
                return out;
            }
            let Some(pattern) = o.pattern.as_deref() else {
                out.problems.push(Problem { position: pos(), reason: "indicator without a pattern".into() });
                return out;
            };
            let (terms, unsupported) = pattern_terms(pattern);
            out.unsupported += unsupported;
            if terms.is_empty() {
                out.problems.push(Problem {
                    position: pos(),
                    reason: format!("no matchable comparison in pattern {:?}", pattern.chars().take(120).collect::<String>()),
                });
                return out;
            }
            for (kind, value) in terms {
                match normalise(Some(kind), &value) {
                    Ok(kv) => found.push(kv),
                    Err(reason) => out.problems.push(Problem { position: pos(), reason }),
                }
            }
        }
        "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" => {
            let Some(value) = o.value.as_deref() else {
                out.problems.push(Problem { position: pos(), reason: "observable without a value".into() });
                return out;
            };
            let kind = match t {
                "ipv4-addr" => Kind::Ipv4,
                "ipv6-addr" => Kind::Ipv6,
                "domain-name" => Kind::Domain,
                "url" => Kind::Url,
                _ => Kind::Email,
            };
            match normalise(Some(kind), value) {
                Ok(kv) => found.push(kv),
                Err(reason) => out.problems.push(Problem { position: pos(), reason }),
            }
        }
        "file" => {
            let Some(hashes) = o.hashes.as_ref().and_then(Value::as_object) else { return out };
            for (alg, h) in hashes {
                let Some(kind) = Kind::from_name(&alg.replace('-', "")) else { continue };
                match normalise(Some(kind), h.as_str().unwrap_or("")) {
                    Ok(kv) => found.push(kv),
                    Err(reason) => out.problems.push(Problem { position: pos(), reason }),
                }
            }
        }
        "relationship" => {
            if let (Some(src), Some(dst)) = (&o.source_ref, &o.target_ref) {
                out.contribution = Contribution::Relationship(src.to_string(), dst.to_string());
            }
            return out;
        }
        "identity" | "threat-actor" | "intrusion-set" | "campaign" | "malware" | "tool" | "infrastructure" => {
            if let (Some(id), Some(n)) = (&o.id, &o.name) {
                out.contribution = Contribution::Named(id.to_string(), t.to_string(), n.to_string());
            }
            return out;
        }
        "" => {
            out.problems.push(Problem { position: format!("{name}: objects[{i}]"), reason: "object without a type".into() });
            return out;
        }
        _ => return out,
    }
    if !found.is_empty() {
        out.contribution = Contribution::Indicator(Pending {
            id: id.to_string(),
            created_by: o.created_by_ref.as_deref().map(str::to_string),
            own: own(),
            found,
        });
    }
    out
}

impl StixReader<'_> {
    /// Takes in one batch's outcomes, the next in bundle order.
    fn apply(&mut self, batch: Vec<Outcome>) {
        for o in batch {
            self.index += 1;
            self.out.problems.extend(o.problems);
            self.out.unsupported += o.unsupported;
            match o.contribution {
                Contribution::Indicator(p) => {
                    let producer = match p.created_by {
                        Some(r) => match self.producers.get(&r) {
                            Some(&k) => k,
                            None if self.producers.len() < NO_PRODUCER as usize => {
                                let k = self.producers.len() as u32;
                                self.producers.insert(r, k);
                                k
                            }
                            None => NO_PRODUCER,
                        },
                        None => NO_PRODUCER,
                    };
                    self.pending.push(Waiting {
                        id: p.id.into_boxed_str(),
                        producer,
                        own: p.own.map(String::into_boxed_str),
                        found: p.found,
                    });
                }
                Contribution::Relationship(src, dst) => self.relationships.push((src, dst)),
                Contribution::Named(id, t, n) => {
                    self.named.insert(id, (t, n));
                }
                Contribution::Nothing => {}
            }
        }
    }

    /// Gives each indicator its context (producer, what it indicates) once every object is read.
    fn finish(mut self) -> Imported {
        self.out.format = "stix";
        if self.objects == Some(false) || (self.objects.is_none() && self.index == 0) {
            self.out.problems.push(Problem { position: self.name.into(), reason: "a bundle without an objects list".into() });
            return self.out;
        }
        // What each indicator or observable indicates, by type and name.
        let mut indicates: HashMap<&str, Vec<(&str, &str)>, TextHash> = HashMap::default();
        for (src, dst) in &self.relationships {
            if let Some((t, n)) = self.named.get(dst) {
                indicates.entry(src.as_str()).or_default().push((t.as_str(), n.as_str()));
            }
        }
        // The producer's name for each number `producers` gave.
        let mut producer_names: Vec<Option<&str>> = vec![None; self.producers.len()];
        for (r, &k) in &self.producers {
            producer_names[k as usize] = self.named.get(r).map(|(_, n)| n.as_str());
        }
        // Each indicator's context, built by several threads over consecutive runs of the
        // indicators (taken out of the list in place); within a run, indicators with the
        // same context share one.
        let source = short_name(self.name);
        let mut pending = std::mem::take(&mut self.pending);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        let run = pending.len().div_ceil(threads).max(4096);
        let (indicates, source, producer_names) = (&indicates, &source, &producer_names);
        let built: Vec<Vec<Indicator>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                pending.chunks_mut(run).map(|run| scope.spawn(move || contexts_for(run, producer_names, indicates, source))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        drop(pending);
        self.out.indicators.reserve(built.iter().map(Vec::len).sum());
        for b in built {
            self.out.indicators.extend(b);
        }
        self.out
    }
}

/// The indicators of `run` with their contexts: the producer (`created_by_ref`), what each
/// indicates, else its own name; equal contexts shared.
fn contexts_for(
    run: &mut [Waiting],
    producer_names: &[Option<&str>],
    indicates: &HashMap<&str, Vec<(&str, &str)>, TextHash>,
    source: &str,
) -> Vec<Indicator> {
    // Keyed by the context's hash, computed once: a set of `Arc<Context>` would hash every
    // context's strings again each time it grows. Equal hashes of unequal contexts (rare)
    // only cost the sharing.
    let hasher = TextHash::default();
    let mut contexts: HashMap<u64, Arc<Context>, rustc_hash::FxBuildHasher> =
        HashMap::with_capacity_and_hasher(run.len(), Default::default());
    let mut out = Vec::with_capacity(run.len());
    for p in run {
        let producer = producer_names.get(p.producer as usize).copied().flatten();
        let mut c = Context { source: producer.unwrap_or(source).to_string(), ..Context::default() };
        for (t, n) in indicates.get(&*p.id).into_iter().flatten() {
            match *t {
                "threat-actor" | "intrusion-set" => c.actors.push(n.to_string()),
                "campaign" => c.campaigns.push(n.to_string()),
                "malware" | "tool" | "infrastructure" => {
                    c.description = if c.description.is_empty() { n.to_string() } else { format!("{}; {n}", c.description) }
                }
                _ => {}
            }
        }
        if c.description.is_empty()
            && let Some(d) = p.own.take()
        {
            c.description = d.into_string();
        }
        c.actors.sort();
        c.actors.dedup();
        c.campaigns.sort();
        c.campaigns.dedup();
        let h = std::hash::BuildHasher::hash_one(&hasher, &c);
        let context = match contexts.get(&h) {
            Some(shared) if **shared == c => shared.clone(),
            Some(_) => Arc::new(c),
            None => {
                let shared = Arc::new(c);
                contexts.insert(h, shared.clone());
                shared
            }
        };
        let mut stix_id = (!p.id.is_empty()).then(|| std::mem::take(&mut p.id).into_string());
        let found = std::mem::take(&mut p.found);
        let last = found.len().saturating_sub(1);
        for (k, (kind, value)) in found.into_iter().enumerate() {
            // The last value takes the id; the others copy it.
            let stix_id = if k == last { stix_id.take() } else { stix_id.clone() };
            out.push(Indicator { kind, value, context: context.clone(), stix_id });
        }
    }
    out
}

fn misp(name: &str, v: &Value) -> Imported {
    let mut out = Imported { format: "misp", ..Imported::default() };
    let mut events: Vec<&Value> = Vec::new();
    fn event_of(e: &Value) -> &Value {
        e.get("Event").unwrap_or(e)
    }
    if let Some(e) = v.get("Event") {
        events.push(e);
    } else if let Some(r) = v.get("response").and_then(Value::as_array) {
        events.extend(r.iter().map(event_of));
    } else if let Some(a) = v.as_array() {
        events.extend(a.iter().map(event_of));
    }
    for (ei, e) in events.iter().enumerate() {
        let mut ctx = Context {
            source: e
                .get("Orgc")
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| short_name(name)),
            description: e.get("info").and_then(Value::as_str).unwrap_or("").chars().take(200).collect(),
            ..Context::default()
        };
        for g in e.get("Galaxy").and_then(Value::as_array).into_iter().flatten() {
            let gtype = g.get("type").and_then(Value::as_str).unwrap_or("");
            for c in g.get("GalaxyCluster").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = c.get("value").and_then(Value::as_str) {
                    if gtype.contains("threat-actor") || gtype.contains("intrusion-set") {
                        ctx.actors.push(n.to_string());
                    } else if gtype.contains("campaign") {
                        ctx.campaigns.push(n.to_string());
                    }
                }
            }
        }
        for t in e.get("Tag").and_then(Value::as_array).into_iter().flatten() {
            let n = t.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some(a) = n.split("threat-actor=\"").nth(1) {
                ctx.actors.push(a.trim_end_matches('"').to_string());
            }
        }
        ctx.actors.sort();
        ctx.actors.dedup();
        let ctx = Arc::new(ctx);
        let mut attrs: Vec<(String, &Value)> = Vec::new();
        for (i, a) in e.get("Attribute").and_then(Value::as_array).into_iter().flatten().enumerate() {
            attrs.push((format!("{name}: Event[{ei}].Attribute[{i}]"), a));
        }
        for (oi, o) in e.get("Object").and_then(Value::as_array).into_iter().flatten().enumerate() {
            for (i, a) in o.get("Attribute").and_then(Value::as_array).into_iter().flatten().enumerate() {
                attrs.push((format!("{name}: Event[{ei}].Object[{oi}].Attribute[{i}]"), a));
            }
        }
        for (pos, a) in attrs {
            let t = a.get("type").and_then(Value::as_str).unwrap_or("");
            let value = a.get("value").and_then(Value::as_str).unwrap_or("");
            if a.get("to_ids").and_then(Value::as_bool) == Some(false)
                && !matches!(t, "ip-src" | "ip-dst" | "domain" | "hostname" | "url" | "md5" | "sha1" | "sha256")
            {
                continue;
            }
            let kind = match Kind::from_name(t) {
                Some(k) => k,
                None => {
                    // Descriptive attributes (text, comment, filename…) are not indicators.
                    if matches!(t, "text" | "comment" | "other" | "filename" | "link" | "datetime" | "counter" | "size-in-bytes" | "port") {
                        continue;
                    }
                    out.unsupported += 1;
                    continue;
                }
            };
            // `domain|ip` holds both.
            if t == "domain|ip"
                && let Some((d, ip)) = value.split_once('|')
            {
                for (k, v) in [(Kind::Domain, d), (Kind::Ipv4, ip)] {
                    match normalise(Some(k), v) {
                        Ok((kind, value)) => out.indicators.push(Indicator { kind, value, context: ctx.clone(), stix_id: None }),
                        Err(reason) => out.problems.push(Problem { position: pos.clone(), reason }),
                    }
                }
                continue;
            }
            match normalise(Some(kind), value) {
                Ok((kind, value)) => out.indicators.push(Indicator { kind, value, context: ctx.clone(), stix_id: None }),
                Err(reason) => out.problems.push(Problem { position: pos, reason }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `step` bytes at a time, to cross every chunk boundary.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn split(text: &str, step: usize) -> (Vec<String>, Split) {
        let mut got = Vec::new();
        let end = split_objects(&mut Trickle { data: text.as_bytes(), step }, &mut |e| {
            got.push(String::from_utf8_lossy(e).into_owned());
            true
        })
        .unwrap();
        (got, end)
    }

    #[test]
    fn simple_comparisons_read_as_the_regex_reads_them() {
        let re = regex::Regex::new(r"(?i)([a-z0-9-]+):([a-z0-9_.'\-]+)\s*(=|ISSUBSET|LIKE|MATCHES|!=|IN)\s*'((?:[^'\\]|\\.)*)'").unwrap();
        for p in [
            "[ipv4-addr:value = '203.0.113.7']",
            " [ipv4-addr:value ISSUBSET '203.0.113.0/24'] ",
            "[domain-name:value='evil.example']",
            "[file:hashes.'SHA-256' = 'aa']",
            "[url:value = 'http://x.example/a?b=c']",
            "[process:name = 'x']",
            "[ipv4-addr:value != '1.2.3.4']",
            "[ipv4-addr:value = '1.2.3.4'] OR [domain-name:value = 'a.example']",
            "[email-addr:value = 'o\\'brien@example.org']",
            "[a:b = 'x' = 'v']",
            "[file:hashes.MD5 = 'aa']",
            "[IPv4-Addr:Value issubset '10.0.0.0/8']",
            "[ipv4-addr:value = 'a' AND x:z = 'b']",
        ] {
            let by_regex: Vec<(String, String, String, String)> =
                re.captures_iter(p).map(|c| (c[1].to_string(), c[2].to_string(), c[3].to_ascii_uppercase(), c[4].to_string())).collect();
            if let Some((o, pa, op, v)) = simple_comparison(p) {
                assert_eq!(by_regex, vec![(o.to_string(), pa.to_string(), op.to_string(), v.to_string())], "{p}");
            }
        }
        assert!(simple_comparison("[ipv4-addr:value = '203.0.113.7']").is_some());
        assert!(simple_comparison("[ipv4-addr:value = '1.2.3.4'] OR [domain-name:value = 'a.example']").is_none());
        assert!(simple_comparison("[ipv4-addr:value != '1.2.3.4']").is_none());
        // Found by fuzzing: a multi-byte character where `ISSUBSET` would end.
        assert!(simple_comparison("[domain-name:val\u{fffd}\u{fffd}\u{fffd} 'x']").is_none());
        assert!(simple_comparison("[a:b\u{fffd}SSUBSET 'x']").is_none());
        assert!(simple_comparison("[file:hashes.'SHA-256' = 'aa']").is_some());
        for p in ["[a:b = 'x' = 'v']", "[email-addr:value = 'o\\'brien@example.org']", "[ipv4-addr:value = 'a' AND x:z = 'b']"] {
            assert!(simple_comparison(p).is_none(), "{p}");
        }
        assert_eq!(pattern_terms("[ipv4-addr:value = '203.0.113.7']").0, vec![(Kind::Ipv4, "203.0.113.7".to_string())]);
        assert_eq!(pattern_terms("[ipv4-addr:value ISSUBSET '203.0.113.0/24']").0, vec![(Kind::Cidr, "203.0.113.0/24".to_string())]);
        assert_eq!(pattern_terms("[file:hashes.'SHA-256' = 'aa']").0, vec![(Kind::Sha256, "aa".to_string())]);
        assert_eq!(pattern_terms("[process:name = 'x']"), (vec![], 1));
    }

    #[test]
    fn quote_or_escape_finds_what_memchr2_finds() {
        let mut text = Vec::new();
        for n in 0..80usize {
            text.clear();
            text.extend((0..n).map(|k| b'a' + (k % 26) as u8));
            assert_eq!(quote_or_escape(&text), None);
            for at in 0..n {
                for mark in [b'"', b'\\'] {
                    let mut t = text.clone();
                    t[at] = mark;
                    // A later mark, and bytes that differ from a mark by one bit, change nothing.
                    t.extend([b'#', b'!', 0xa2, b'"']);
                    assert_eq!(quote_or_escape(&t), memchr::memchr2(b'"', b'\\', &t), "{n} {at}");
                    assert_eq!(quote_or_escape(&t), Some(at));
                }
            }
        }
    }

    #[test]
    fn the_objects_list_is_split_whatever_comes_around_it() {
        let text = r#"{"id":"bundle--1","note":{"objects":[1,2]},"x":"objects","objects" : [ {"a":"}],\"{["} , [1,[2]] ,"s\\",3,{} ],"type":"bundle"}"#;
        for step in [1, 2, 7, 1 << 20] {
            let (got, end) = split(text, step);
            assert_eq!(got, vec![r#"{"a":"}],\"{["}"#, "[1,[2]]", r#""s\\""#, "3", "{}"], "step {step}");
            assert_eq!(end, Split::Complete);
        }
    }

    #[test]
    fn no_list_truncation_and_garbage_are_told_apart() {
        assert_eq!(split(r#"{"Event":{"Attribute":[]}}"#, 3).1, Split::NoObjects);
        assert_eq!(split(r#"{"objects":{"a":1}}"#, 3).1, Split::NoObjects);
        // A string longer than an object may be, outside the list: not taken, not refused.
        let long = format!(r#"{{"Event":{{"info":"{}"}}}}"#, "x".repeat(MAX_OBJECT + (2 << 20)));
        assert_eq!(split(&long, 1 << 20).1, Split::NoObjects);
        let long = format!(r#"{{"objects":["{}"]}}"#, "x".repeat(MAX_OBJECT + (2 << 20)));
        assert!(matches!(split(&long, 1 << 20).1, Split::TooLarge(_)));
        let (got, end) = split(r#"{"objects":[{"a":1},{"b":"#, 5);
        // The unfinished last element is handed over too: decoding it reports it.
        assert_eq!(got, vec![r#"{"a":1}"#, r#"{"b":"#]);
        assert_eq!(end, Split::Truncated(25));
        assert_eq!(split("{\"objects\":[\"never closed", 4).1, Split::Truncated(25));
    }

    #[test]
    fn a_bundle_reads_the_same_split_or_streamed() {
        let bundle = r#"{"type":"bundle","objects":[
            {"type":"identity","id":"identity--1","name":"Partner CERT"},
            {"type":"indicator","id":"indicator--1","created_by_ref":"identity--1","name":"C2","pattern":"[ipv4-addr:value = '203.0.113.7'] OR [domain-name:value = 'evil.example']","pattern_type":"stix"},
            not json,
            {"type":"relationship","source_ref":"indicator--1","target_ref":"intrusion-set--1"},
            {"type":"intrusion-set","id":"intrusion-set--1","name":"APT31"},
            {"type":"indicator","id":"indicator--2","pattern":"[process:name = 'x']"}
        ]}"#;
        let fast = stix_bundle("b.json", &mut bundle.as_bytes()).unwrap().expect("a bundle");
        let values: Vec<&str> = fast.indicators.iter().map(|i| i.value.as_str()).collect();
        assert_eq!(values, vec!["203.0.113.7", "evil.example"]);
        assert_eq!(fast.indicators[0].context.actors, vec!["APT31".to_string()]);
        assert_eq!(fast.indicators[0].context.source, "Partner CERT");
        assert_eq!(fast.indicators[0].stix_id.as_deref(), Some("indicator--1"));
        // The element that is not JSON is reported by index, and the rest still read.
        assert!(
            fast.problems.iter().any(|p| p.position == "b.json: objects[2]" && p.reason.starts_with("invalid JSON")),
            "{:?}",
            fast.problems
        );
        assert!(fast.problems.iter().any(|p| p.position.contains("objects[5]")));
        assert_eq!(fast.unsupported, 1);
        // Without the bad element, the streamed (serde) reading agrees.
        let clean = bundle.replace("not json,", "");
        let fast = stix_bundle("b.json", &mut clean.as_bytes()).unwrap().expect("a bundle");
        let slow = json_object("b.json", clean.as_bytes());
        let key = |im: &Imported| im.indicators.iter().map(|i| (i.value.clone(), i.context.clone(), i.stix_id.clone())).collect::<Vec<_>>();
        assert_eq!(key(&fast), key(&slow));
        assert_eq!(fast.problems, slow.problems);
    }
}

//! Reading indicator files: STIX 2.1 bundles (indicator patterns, cyber observables, and
//! the threat actors, intrusion sets and campaigns related to them), MISP event JSON
//! (attributes, objects, threat-actor galaxies and tags), and CSV or plain lists (one
//! value per line, or `type,value[,context]`). Defanged values are refanged. Every value
//! that cannot be used is reported with its position, never fatal.

use std::collections::HashMap;
use std::sync::Arc;

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
    for c in re.captures_iter(pattern) {
        let (obj, path, op, val) =
            (c[1].to_ascii_lowercase(), c[2].to_ascii_lowercase(), c[3].to_ascii_uppercase(), c[4].replace("\\'", "'"));
        let kind = match (obj.as_str(), path.as_str(), op.as_str()) {
            ("ipv4-addr", "value", "=") => Some(Kind::Ipv4),
            ("ipv6-addr", "value", "=") => Some(Kind::Ipv6),
            ("ipv4-addr" | "ipv6-addr", "value", "ISSUBSET") => Some(Kind::Cidr),
            ("domain-name", "value", "=") => Some(Kind::Domain),
            ("url", "value", "=") => Some(Kind::Url),
            ("email-addr", "value", "=") | ("email-message", "from_ref.value", "=") | ("email-message", "sender_ref.value", "=") => {
                Some(Kind::Email)
            }
            ("file" | "artifact", p, "=") if p.starts_with("hashes.") => {
                let h = p.trim_start_matches("hashes.").trim_matches('\'').replace('-', "");
                match h.as_str() {
                    "md5" => Some(Kind::Md5),
                    "sha1" => Some(Kind::Sha1),
                    "sha256" => Some(Kind::Sha256),
                    _ => None,
                }
            }
            _ => None,
        };
        match kind {
            // `=` on an address may hold a CIDR too.
            Some(Kind::Ipv4 | Kind::Ipv6) if val.contains('/') => out.push((Kind::Cidr, val)),
            Some(k) => out.push((k, val)),
            None => unsupported += 1,
        }
    }
    (out, unsupported)
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
        while let Some(o) = seq.next_element::<RawObject>()? {
            self.stix.object(o);
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
struct RawObject {
    /// `None` when the element is not a JSON object at all.
    is_object: bool,
    kind: Option<String>,
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    created_by_ref: Option<String>,
    revoked: Option<bool>,
    pattern_type: Option<String>,
    pattern: Option<String>,
    value: Option<String>,
    hashes: Option<Value>,
    source_ref: Option<String>,
    target_ref: Option<String>,
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a STIX object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut o = RawObject { is_object: true, ..Default::default() };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
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
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawObject, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RawObject::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<RawObject, E> {
                Ok(RawObject::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawObject, E> {
                Ok(RawObject::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawObject, E> {
                Ok(RawObject::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawObject, E> {
                Ok(RawObject::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<RawObject, E> {
                Ok(RawObject::default())
            }
            fn visit_unit<E>(self) -> Result<RawObject, E> {
                Ok(RawObject::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or nothing when the JSON value is of another type.
struct LenientString(Option<String>);

impl<'de> serde::Deserialize<'de> for LenientString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(LenientString(match v {
            Value::String(s) => Some(s),
            _ => None,
        }))
    }
}

/// An indicator or observable read, waiting for the relationships that give its context.
struct Pending {
    index: usize,
    id: String,
    created_by: Option<String>,
    /// Its own name or description (at most 200 characters).
    own: Option<String>,
    found: Vec<(Kind, String)>,
}

/// What a streamed bundle keeps: the indicators (normalised), the names of the objects
/// that give context, and the relationships between them.
#[derive(Default)]
struct StixReader<'n> {
    name: &'n str,
    /// Whether `objects` was seen, and was a list.
    objects: Option<bool>,
    index: usize,
    pending: Vec<Pending>,
    /// id → (type, name) of identities, actors, intrusion sets, campaigns, malware, tools, infrastructure.
    named: HashMap<String, (String, String)>,
    /// (source, target) of every relationship.
    relationships: Vec<(String, String)>,
    out: Imported,
}

impl StixReader<'_> {
    fn object(&mut self, o: RawObject) {
        let i = self.index;
        self.index += 1;
        let name = self.name;
        let t = o.kind.as_deref().unwrap_or("");
        let id = o.id.as_deref().unwrap_or("");
        let pos = || format!("{name}: objects[{i}] ({})", if id.is_empty() { t } else { id });
        if !o.is_object {
            self.out.problems.push(Problem { position: format!("{name}: objects[{i}]"), reason: "not a JSON object".into() });
            return;
        }
        let own = || o.name.as_deref().or(o.description.as_deref()).map(|d| d.chars().take(200).collect::<String>());
        let mut found: Vec<(Kind, String)> = Vec::new();
        match t {
            "indicator" => {
                if o.revoked == Some(true) {
                    return;
                }
                let pt = o.pattern_type.as_deref().unwrap_or("stix");
                if !pt.eq_ignore_ascii_case("stix") {
                    self.out.problems.push(Problem { position: pos(), reason: format!("pattern_type {pt:?} is not matched (only stix)") });
                    return;
                }
                let Some(pattern) = o.pattern.as_deref() else {
                    self.out.problems.push(Problem { position: pos(), reason: "indicator without a pattern".into() });
                    return;
                };
                let (terms, unsupported) = pattern_terms(pattern);
                self.out.unsupported += unsupported;
                if terms.is_empty() {
                    self.out.problems.push(Problem {
                        position: pos(),
                        reason: format!("no matchable comparison in pattern {:?}", pattern.chars().take(120).collect::<String>()),
                    });
                    return;
                }
                for (kind, value) in terms {
                    match normalise(Some(kind), &value) {
                        Ok(kv) => found.push(kv),
                        Err(reason) => self.out.problems.push(Problem { position: pos(), reason }),
                    }
                }
            }
            "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" => {
                let Some(value) = o.value.as_deref() else {
                    self.out.problems.push(Problem { position: pos(), reason: "observable without a value".into() });
                    return;
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
                    Err(reason) => self.out.problems.push(Problem { position: pos(), reason }),
                }
            }
            "file" => {
                let Some(hashes) = o.hashes.as_ref().and_then(Value::as_object) else { return };
                for (alg, h) in hashes {
                    let Some(kind) = Kind::from_name(&alg.replace('-', "")) else { continue };
                    match normalise(Some(kind), h.as_str().unwrap_or("")) {
                        Ok(kv) => found.push(kv),
                        Err(reason) => self.out.problems.push(Problem { position: pos(), reason }),
                    }
                }
            }
            "relationship" => {
                if let (Some(src), Some(dst)) = (o.source_ref, o.target_ref) {
                    self.relationships.push((src, dst));
                }
                return;
            }
            "identity" | "threat-actor" | "intrusion-set" | "campaign" | "malware" | "tool" | "infrastructure" => {
                if let (Some(id), Some(n)) = (o.id.clone(), o.name.clone()) {
                    self.named.insert(id, (t.to_string(), n));
                }
                return;
            }
            "" => {
                self.out.problems.push(Problem { position: format!("{name}: objects[{i}]"), reason: "object without a type".into() });
                return;
            }
            _ => return,
        }
        if !found.is_empty() {
            let own = own();
            self.pending.push(Pending { index: i, id: id.to_string(), created_by: o.created_by_ref, own, found });
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
        let mut indicates: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for (src, dst) in &self.relationships {
            if let Some((t, n)) = self.named.get(dst) {
                indicates.entry(src.as_str()).or_default().push((t.as_str(), n.as_str()));
            }
        }
        // Indicators with the same context share one.
        let mut contexts: HashMap<Context, Arc<Context>> = HashMap::new();
        let source = short_name(self.name);
        self.pending.sort_by_key(|p| p.index);
        for p in self.pending {
            let producer = p.created_by.as_deref().and_then(|r| self.named.get(r)).map(|(_, n)| n.clone());
            let mut c = Context { source: producer.unwrap_or_else(|| source.clone()), ..Context::default() };
            for (t, n) in indicates.get(p.id.as_str()).into_iter().flatten() {
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
                && let Some(d) = p.own
            {
                c.description = d;
            }
            c.actors.sort();
            c.actors.dedup();
            c.campaigns.sort();
            c.campaigns.dedup();
            let context = match contexts.get(&c) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = Arc::new(c.clone());
                    contexts.insert(c, shared.clone());
                    shared
                }
            };
            let stix_id = (!p.id.is_empty()).then_some(p.id);
            for (kind, value) in p.found {
                self.out.indicators.push(Indicator { kind, value, context: context.clone(), stix_id: stix_id.clone() });
            }
        }
        self.out
    }
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

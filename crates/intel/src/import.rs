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
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    Ok(parse(&name, &bytes))
}

/// Parses indicator data named `name` (for positions and the default source).
pub fn parse(name: &str, bytes: &[u8]) -> Imported {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) => {
                if v.get("type").and_then(Value::as_str) == Some("bundle") || v.get("objects").is_some() {
                    return stix(name, &v);
                }
                if v.get("Event").is_some()
                    || v.get("response").is_some()
                    || v.as_array().is_some_and(|a| a.iter().any(|e| e.get("Event").is_some()))
                {
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

fn stix(name: &str, v: &Value) -> Imported {
    let mut out = Imported { format: "stix", ..Imported::default() };
    let Some(objects) = v.get("objects").and_then(Value::as_array) else {
        out.problems.push(Problem { position: name.into(), reason: "a bundle without an objects list".into() });
        return out;
    };
    let by_id: HashMap<&str, &Value> = objects.iter().filter_map(|o| Some((o.get("id")?.as_str()?, o))).collect();
    let producer = |o: &Value| -> String {
        o.get("created_by_ref")
            .and_then(Value::as_str)
            .and_then(|r| by_id.get(r))
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| short_name(name))
    };
    // What each indicator or observable indicates (relationships), by name and type.
    let mut indicates: HashMap<&str, Vec<(&str, String)>> = HashMap::new();
    for o in objects {
        if o.get("type").and_then(Value::as_str) != Some("relationship") {
            continue;
        }
        let (Some(src), Some(dst)) = (o.get("source_ref").and_then(Value::as_str), o.get("target_ref").and_then(Value::as_str)) else {
            continue;
        };
        let Some(target) = by_id.get(dst) else { continue };
        let ttype = target.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(n) = target.get("name").and_then(Value::as_str) {
            indicates.entry(src).or_default().push((ttype, n.to_string()));
        }
    }
    let context_of = |o: &Value, id: &str| -> Arc<Context> {
        let mut c = Context { source: producer(o), ..Context::default() };
        for (t, n) in indicates.get(id).into_iter().flatten() {
            match *t {
                "threat-actor" | "intrusion-set" => c.actors.push(n.clone()),
                "campaign" => c.campaigns.push(n.clone()),
                "malware" | "tool" | "infrastructure" => {
                    c.description = if c.description.is_empty() { n.clone() } else { format!("{}; {n}", c.description) }
                }
                _ => {}
            }
        }
        if c.description.is_empty()
            && let Some(d) = o.get("name").or_else(|| o.get("description")).and_then(Value::as_str)
        {
            c.description = d.chars().take(200).collect();
        }
        c.actors.sort();
        c.actors.dedup();
        c.campaigns.sort();
        c.campaigns.dedup();
        Arc::new(c)
    };
    for (i, o) in objects.iter().enumerate() {
        let t = o.get("type").and_then(Value::as_str).unwrap_or("");
        let id = o.get("id").and_then(Value::as_str).unwrap_or("");
        let pos = || format!("{name}: objects[{i}] ({})", if id.is_empty() { t } else { id });
        match t {
            "indicator" => {
                if o.get("revoked").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let pt = o.get("pattern_type").and_then(Value::as_str).unwrap_or("stix");
                if !pt.eq_ignore_ascii_case("stix") {
                    out.problems.push(Problem { position: pos(), reason: format!("pattern_type {pt:?} is not matched (only stix)") });
                    continue;
                }
                let Some(pattern) = o.get("pattern").and_then(Value::as_str) else {
                    out.problems.push(Problem { position: pos(), reason: "indicator without a pattern".into() });
                    continue;
                };
                let (terms, unsupported) = pattern_terms(pattern);
                out.unsupported += unsupported;
                if terms.is_empty() {
                    out.problems.push(Problem {
                        position: pos(),
                        reason: format!("no matchable comparison in pattern {:?}", pattern.chars().take(120).collect::<String>()),
                    });
                    continue;
                }
                let ctx = context_of(o, id);
                for (kind, value) in terms {
                    match normalise(Some(kind), &value) {
                        Ok((kind, value)) => {
                            out.indicators.push(Indicator { kind, value, context: ctx.clone(), stix_id: Some(id.to_string()) })
                        }
                        Err(reason) => out.problems.push(Problem { position: pos(), reason }),
                    }
                }
            }
            "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" => {
                let Some(value) = o.get("value").and_then(Value::as_str) else {
                    out.problems.push(Problem { position: pos(), reason: "observable without a value".into() });
                    continue;
                };
                let kind = match t {
                    "ipv4-addr" => Kind::Ipv4,
                    "ipv6-addr" => Kind::Ipv6,
                    "domain-name" => Kind::Domain,
                    "url" => Kind::Url,
                    _ => Kind::Email,
                };
                match normalise(Some(kind), value) {
                    Ok((kind, value)) => {
                        out.indicators.push(Indicator { kind, value, context: context_of(o, id), stix_id: Some(id.to_string()) })
                    }
                    Err(reason) => out.problems.push(Problem { position: pos(), reason }),
                }
            }
            "file" => {
                let Some(hashes) = o.get("hashes").and_then(Value::as_object) else { continue };
                for (alg, h) in hashes {
                    let Some(kind) = Kind::from_name(&alg.replace('-', "")) else { continue };
                    match normalise(Some(kind), h.as_str().unwrap_or("")) {
                        Ok((kind, value)) => {
                            out.indicators.push(Indicator { kind, value, context: context_of(o, id), stix_id: Some(id.to_string()) })
                        }
                        Err(reason) => out.problems.push(Problem { position: pos(), reason }),
                    }
                }
            }
            "" => out.problems.push(Problem { position: format!("{name}: objects[{i}]"), reason: "object without a type".into() }),
            _ => {}
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

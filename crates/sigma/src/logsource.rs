//! Which events a rule's `logsource` selects, and how its field names map onto
//! them. The table lives in `data/logsources.yml` (embedded) and can be extended
//! by a user file with the same layout.

use std::collections::BTreeMap;

use portcullis_event::SourceKind;

use crate::rule::Logsource;
use crate::yaml::{self, Node};

/// The event classes a log source covers. Rules with equal selectors share one
/// compiled matcher group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    pub kinds: Vec<SourceKind>,
    /// Lower-cased Windows channels; `None` means any.
    pub channels: Option<Vec<String>>,
    pub event_ids: Option<Vec<u32>>,
    /// Lower-cased substrings of an Exchange log's `#Log-type:`; `None` means any.
    pub log_types: Option<Vec<String>>,
    /// Sigma field → event field renames, sorted.
    pub rename: Vec<(String, String)>,
}

impl Selector {
    /// Whether an event of this class is covered.
    pub fn covers(&self, kind: SourceKind, channel: &str, event_id: Option<u32>, log_type: &str) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        if let Some(ch) = &self.channels
            && !ch.iter().any(|c| c.eq_ignore_ascii_case(channel))
        {
            return false;
        }
        if let Some(ids) = &self.event_ids
            && !event_id.is_some_and(|id| ids.contains(&id))
        {
            return false;
        }
        if let Some(types) = &self.log_types {
            let lt = log_type.to_ascii_lowercase();
            if !types.iter().any(|t| lt.contains(t.as_str())) {
                return false;
            }
        }
        true
    }

    /// The event field a Sigma field name reads.
    pub fn map_field<'a>(&'a self, field: &'a str) -> &'a str {
        self.rename.iter().find(|(from, _)| from.eq_ignore_ascii_case(field)).map(|(_, to)| to.as_str()).unwrap_or(field)
    }
}

/// One way a log source is met: a selector plus field tests every event must pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Variant {
    pub selector: Selector,
    pub conditions: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    Variants(Vec<Variant>),
    /// No reader produces events for this log source; the reason says which part is unknown.
    Unmapped(String),
}

/// The mapping table.
#[derive(Clone, Debug, Default)]
pub struct LogsourceTable {
    products: BTreeMap<String, Variant>,
    services: BTreeMap<(String, String), Variant>,
    categories: BTreeMap<(String, String), Vec<Variant>>,
}

const BUILTIN: &str = include_str!("../data/logsources.yml");

impl LogsourceTable {
    /// The built-in table.
    pub fn builtin() -> LogsourceTable {
        let mut t = LogsourceTable::default();
        t.extend_from_yaml(BUILTIN).expect("the built-in logsource table is valid (tested)");
        t
    }

    /// Adds (or overrides) entries from a YAML text in the layout of `data/logsources.yml`.
    pub fn extend_from_yaml(&mut self, text: &str) -> Result<(), String> {
        let docs = yaml::parse_documents(text).map_err(|e| format!("line {}: {}", e.line, e.message))?;
        let Some(doc) = docs.first() else { return Ok(()) };
        for (k, v) in doc.get("products").and_then(Node::as_map).unwrap_or(&[]) {
            let name = key(k)?;
            self.products.insert(name, variant(v)?);
        }
        for (p, services) in doc.get("services").and_then(Node::as_map).unwrap_or(&[]) {
            let product = key(p)?;
            for (s, v) in services.as_map().unwrap_or(&[]) {
                self.services.insert((product.clone(), key(s)?), variant(v)?);
            }
        }
        for (p, cats) in doc.get("categories").and_then(Node::as_map).unwrap_or(&[]) {
            let product = key(p)?;
            for (c, v) in cats.as_map().unwrap_or(&[]) {
                let variants = match v.as_seq() {
                    Some(items) => items.iter().map(variant).collect::<Result<Vec<_>, _>>()?,
                    None => vec![variant(v)?],
                };
                self.categories.insert((product.clone(), key(c)?), variants);
            }
        }
        Ok(())
    }

    /// Resolves a rule's log source.
    pub fn resolve(&self, ls: &Logsource) -> Resolution {
        let product = ls.product.as_deref();
        if let Some(p) = product
            && !self.products.contains_key(p)
        {
            return Resolution::Unmapped(format!("product `{p}` has no reader in Portcullis"));
        }
        let any = "*".to_string();
        let lookup_category = |c: &str| {
            product
                .and_then(|p| self.categories.get(&(p.to_string(), c.to_string())))
                .or_else(|| self.categories.get(&(any.clone(), c.to_string())))
        };
        let mut variants: Vec<Variant> = match &ls.category {
            Some(c) => match lookup_category(c) {
                Some(v) => v.clone(),
                None => {
                    let scope = product.map(|p| format!(" for product `{p}`")).unwrap_or_default();
                    return Resolution::Unmapped(format!("category `{c}`{scope} has no reader in Portcullis"));
                }
            },
            None => vec![product.and_then(|p| self.products.get(p)).cloned().unwrap_or_default()],
        };
        if let Some(s) = &ls.service {
            let svc = product
                .and_then(|p| self.services.get(&(p.to_string(), s.clone())))
                .or_else(|| self.services.get(&(any.clone(), s.clone())));
            let Some(svc) = svc else {
                let scope = product.map(|p| format!(" of product `{p}`")).unwrap_or_default();
                return Resolution::Unmapped(format!("service `{s}`{scope} has no reader in Portcullis"));
            };
            variants = variants.iter().filter_map(|v| intersect(v, svc)).collect();
            if variants.is_empty() {
                return Resolution::Unmapped(format!("{ls} selects no events (category and service disagree)"));
            }
        }
        // A product restricts kinds where the category left them open.
        if let Some(pv) = product.and_then(|p| self.products.get(p)) {
            for v in &mut variants {
                if v.selector.kinds.is_empty() {
                    v.selector.kinds = pv.selector.kinds.clone();
                }
            }
        }
        Resolution::Variants(variants)
    }
}

fn key(n: &Node) -> Result<String, String> {
    n.as_str().map(|s| s.to_ascii_lowercase()).ok_or_else(|| format!("line {}: expected a name", n.line))
}

fn kind(s: &str) -> Option<SourceKind> {
    Some(match s {
        "windows" => SourceKind::Windows,
        "w3c" => SourceKind::W3c,
        "exchange_csv" => SourceKind::ExchangeCsv,
        "json" => SourceKind::Json,
        _ => return None,
    })
}

fn variant(n: &Node) -> Result<Variant, String> {
    let mut sel = Selector::default();
    for k in n.get("kinds").map(Node::string_list).unwrap_or_default() {
        sel.kinds.push(kind(&k).ok_or_else(|| format!("line {}: unknown reader kind `{k}`", n.line))?);
    }
    sel.channels = n.get("channels").map(|c| c.string_list().iter().map(|s| s.to_ascii_lowercase()).collect());
    sel.event_ids = match n.get("event_ids") {
        None => None,
        Some(ids) => Some(
            ids.string_list()
                .iter()
                .map(|s| s.parse::<u32>().map_err(|_| format!("line {}: bad event id `{s}`", ids.line)))
                .collect::<Result<_, _>>()?,
        ),
    };
    sel.log_types = n.get("log_types").map(|c| c.string_list().iter().map(|s| s.to_ascii_lowercase()).collect());
    if sel.kinds.is_empty() && (sel.channels.is_some() || sel.event_ids.is_some()) {
        sel.kinds.push(SourceKind::Windows);
    }
    for (from, to) in n.get("rename").and_then(Node::as_map).unwrap_or(&[]) {
        if let (Some(f), Some(t)) = (from.as_str(), to.as_str()) {
            sel.rename.push((f.to_string(), t.to_string()));
        }
    }
    sel.rename.sort();
    sel.kinds.sort();
    let mut conditions = Vec::new();
    for (f, vals) in n.get("conditions").and_then(Node::as_map).unwrap_or(&[]) {
        if let Some(f) = f.as_str() {
            conditions.push((f.to_string(), vals.string_list()));
        }
    }
    Ok(Variant { selector: sel, conditions })
}

/// Both constraints at once, or None if they cannot both hold.
fn intersect(a: &Variant, b: &Variant) -> Option<Variant> {
    let kinds = match (a.selector.kinds.is_empty(), b.selector.kinds.is_empty()) {
        (true, _) => b.selector.kinds.clone(),
        (_, true) => a.selector.kinds.clone(),
        _ => a.selector.kinds.iter().filter(|k| b.selector.kinds.contains(k)).copied().collect(),
    };
    if kinds.is_empty() && !(a.selector.kinds.is_empty() && b.selector.kinds.is_empty()) {
        return None;
    }
    fn both<T: Clone + PartialEq>(x: &Option<Vec<T>>, y: &Option<Vec<T>>) -> Result<Option<Vec<T>>, ()> {
        match (x, y) {
            (None, o) | (o, None) => Ok(o.clone()),
            (Some(x), Some(y)) => {
                let v: Vec<T> = x.iter().filter(|i| y.contains(i)).cloned().collect();
                if v.is_empty() { Err(()) } else { Ok(Some(v)) }
            }
        }
    }
    let mut rename = a.selector.rename.clone();
    rename.extend(b.selector.rename.iter().cloned());
    rename.sort();
    rename.dedup();
    Some(Variant {
        selector: Selector {
            kinds,
            channels: both(&a.selector.channels, &b.selector.channels).ok()?,
            event_ids: both(&a.selector.event_ids, &b.selector.event_ids).ok()?,
            log_types: both(&a.selector.log_types, &b.selector.log_types).ok()?,
            rename,
        },
        conditions: a.conditions.iter().chain(&b.conditions).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(p: Option<&str>, c: Option<&str>, s: Option<&str>) -> Logsource {
        Logsource { product: p.map(Into::into), category: c.map(Into::into), service: s.map(Into::into) }
    }

    #[test]
    fn builtin_table_resolves() {
        let t = LogsourceTable::builtin();
        let Resolution::Variants(v) = t.resolve(&ls(Some("windows"), Some("process_creation"), None)) else { panic!() };
        assert_eq!(v.len(), 2);
        assert!(v[0].selector.covers(SourceKind::Windows, "Microsoft-Windows-Sysmon/Operational", Some(1), ""));
        assert!(!v[0].selector.covers(SourceKind::Windows, "Microsoft-Windows-Sysmon/Operational", Some(3), ""));
        assert_eq!(v[1].selector.map_field("image"), "NewProcessName");
        let Resolution::Variants(v) = t.resolve(&ls(Some("windows"), None, Some("security"))) else { panic!() };
        assert!(v[0].selector.covers(SourceKind::Windows, "security", Some(4624), ""));
        assert!(!v[0].selector.covers(SourceKind::W3c, "", None, ""));
        let Resolution::Variants(v) = t.resolve(&ls(None, Some("webserver"), None)) else { panic!() };
        assert!(v[0].selector.covers(SourceKind::W3c, "", None, "iis"));
        assert!(v[0].selector.covers(SourceKind::W3c, "", None, "w3c"));
        assert!(!v[0].selector.covers(SourceKind::W3c, "", None, "proxy"));
        let Resolution::Variants(v) = t.resolve(&ls(None, Some("proxy"), None)) else { panic!() };
        assert!(!v[0].selector.covers(SourceKind::W3c, "", None, "iis"));
        assert!(v[0].selector.covers(SourceKind::W3c, "", None, "proxy"));
        let Resolution::Variants(v) = t.resolve(&ls(Some("windows"), Some("registry_add"), None)) else { panic!() };
        assert_eq!(v[0].conditions, vec![("EventType".to_string(), vec!["CreateKey".to_string()])]);
        let Resolution::Variants(v) = t.resolve(&ls(Some("windows"), None, None)) else { panic!() };
        assert!(v[0].selector.covers(SourceKind::Windows, "anything", None, ""));
        let Resolution::Variants(v) = t.resolve(&ls(Some("exchange"), None, Some("httpproxy"))) else { panic!() };
        assert!(v[0].selector.covers(SourceKind::ExchangeCsv, "", None, "HttpProxy Logs"));
        assert!(matches!(t.resolve(&ls(Some("linux"), None, Some("auth"))), Resolution::Unmapped(_)));
        assert!(matches!(t.resolve(&ls(Some("linux"), Some("process_creation"), None)), Resolution::Unmapped(_)));
        assert!(matches!(t.resolve(&ls(Some("windows"), Some("file_access"), None)), Resolution::Unmapped(_)));
        // A category and a service that disagree select nothing.
        assert!(matches!(t.resolve(&ls(Some("windows"), Some("process_creation"), Some("system"))), Resolution::Unmapped(_)));
    }
}

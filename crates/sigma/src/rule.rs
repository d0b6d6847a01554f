//! Sigma documents: detection rules, filters and correlation rules, parsed from
//! the marked YAML tree into typed values with their detection resolved to one
//! expression. Every problem carries the line it was found on.

use std::fmt;
use std::sync::Arc;

use crate::condition;
use crate::expr::Expr;
use crate::modifiers::{self, LeafSpec, Placeholders, SpecError};
use crate::yaml::{Node, NodeKind, Scalar};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [Level::Informational, Level::Low, Level::Medium, Level::High, Level::Critical];

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "informational" | "info" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Logsource {
    pub product: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
}

impl fmt::Display for Logsource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [("product", &self.product), ("category", &self.category), ("service", &self.service)]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
            .collect();
        if parts.is_empty() { f.write_str("(any)") } else { f.write_str(&parts.join(", ")) }
    }
}

/// Where a document came from: a file on disk or the built-in pack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub path: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.line)
    }
}

/// A Sigma detection rule with its detection resolved.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub origin: Origin,
    pub id: Option<String>,
    /// The `name` correlations refer to.
    pub name: Option<String>,
    pub title: String,
    pub level: Level,
    pub status: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub date: Option<String>,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    pub logsource: Logsource,
    pub detection: Expr<LeafSpec>,
}

impl Rule {
    /// The id used in findings: the rule's `id`, else its `name`, else its file and line.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match self.id.as_deref().or(self.name.as_deref()) {
            Some(k) => k.into(),
            None => self.origin.to_string().into(),
        }
    }
}

/// A Sigma filter document: an exclusion applied to the rules it names.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    pub origin: Origin,
    pub id: Option<String>,
    pub title: String,
    pub rules: Vec<String>,
    pub logsource: Logsource,
    pub detection: Expr<LeafSpec>,
}

/// A correlation document's fields as written, each with its line for errors; what they
/// mean (the type, the timespan, the operators) is checked by `portcullis-correlate`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CorrelationDoc {
    pub origin: Origin,
    pub id: Option<String>,
    pub name: Option<String>,
    pub title: String,
    /// The line of the `correlation` section.
    pub line: usize,
    /// `type`.
    pub kind: Option<String>,
    pub rules: Vec<String>,
    pub group_by: Vec<String>,
    /// `timespan`: its text (None if not a scalar) and line.
    pub timespan: Option<Written<Option<String>>>,
    /// `condition`: its entries (None if it is not a mapping) and line.
    pub condition: Option<Written<Option<Vec<ConditionEntry>>>>,
    /// `aliases`: each alias with its (rule, field) pairs.
    pub aliases: Vec<(String, Vec<(String, String)>)>,
    /// `generate: true`, in the document or its correlation section.
    pub generate: bool,
    pub level: Option<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
}

/// A value and the line it was written on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Written<T> {
    pub value: T,
    pub line: usize,
}

/// One `key: value` of a correlation's condition (`gte: 10`, `field: User`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ConditionEntry {
    pub key: String,
    pub key_line: usize,
    /// The value as text (None for a list or mapping).
    pub text: Option<String>,
    /// The value as a number, when it is an integer or a float.
    pub number: Option<f64>,
    pub value_line: usize,
}

fn correlation_doc(doc: &Node, corr: &Node, origin: Origin, title: String) -> CorrelationDoc {
    let condition = corr.get("condition").map(|c| Written {
        line: c.line,
        value: c.as_map().map(|entries| {
            entries
                .iter()
                .map(|(k, v)| ConditionEntry {
                    key: k.as_str().unwrap_or("").to_string(),
                    key_line: k.line,
                    text: v.as_str().map(str::to_string),
                    number: match &v.kind {
                        NodeKind::Scalar { value: Scalar::Int(i), .. } => Some(*i as f64),
                        NodeKind::Scalar { value: Scalar::Float(f), .. } => Some(*f),
                        _ => None,
                    },
                    value_line: v.line,
                })
                .collect()
        }),
    });
    let aliases = corr
        .get("aliases")
        .and_then(Node::as_map)
        .unwrap_or(&[])
        .iter()
        .filter_map(|(alias, map)| {
            let pairs = map
                .as_map()
                .unwrap_or(&[])
                .iter()
                .filter_map(|(rule, f)| Some((rule.as_str()?.to_string(), f.as_str()?.to_string())))
                .collect();
            Some((alias.as_str()?.to_string(), pairs))
        })
        .collect();
    CorrelationDoc {
        origin,
        id: opt_str(doc, "id"),
        name: opt_str(doc, "name"),
        title,
        line: corr.line,
        kind: opt_str(corr, "type"),
        rules: list(corr, "rules"),
        group_by: list(corr, "group-by"),
        timespan: corr.get("timespan").map(|t| Written { value: t.as_str().map(str::to_string), line: t.line }),
        condition,
        aliases,
        generate: matches!(
            doc.get("generate").or_else(|| corr.get("generate")).map(|n| &n.kind),
            Some(NodeKind::Scalar { value: Scalar::Bool(true), .. })
        ),
        level: opt_str(doc, "level"),
        tags: list(doc, "tags"),
        description: opt_str(doc, "description"),
    }
}

/// One parsed document.
#[derive(Clone, Debug)]
pub enum Document {
    Rule(Rule),
    Filter(Filter),
    Correlation(CorrelationDoc),
}

/// A document that could not be used, with where and why.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LoadError {
    pub path: String,
    pub line: usize,
    pub reason: String,
    /// The reason is a missing placeholder value (fixed by `--placeholders`), not a defect.
    pub needs_placeholder: bool,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.reason)
    }
}

pub(crate) fn load_error(path: &str, e: SpecError) -> LoadError {
    LoadError { path: path.to_string(), line: e.line, needs_placeholder: e.message.contains("--placeholders"), reason: e.message }
}

fn spec_err<T>(line: usize, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError { line, message: message.into() })
}

fn opt_str(doc: &Node, key: &str) -> Option<String> {
    doc.get(key).and_then(|n| n.as_str()).map(str::to_string)
}

fn list(doc: &Node, key: &str) -> Vec<String> {
    doc.get(key).map(|n| n.string_list()).unwrap_or_default()
}

fn logsource(doc: &Node) -> Result<Logsource, SpecError> {
    let Some(ls) = doc.get("logsource") else { return Ok(Logsource::default()) };
    if ls.as_map().is_none() {
        return spec_err(ls.line, "`logsource` must be a mapping");
    }
    let norm = |k: &str| opt_str(ls, k).map(|s| s.trim().to_ascii_lowercase());
    Ok(Logsource { product: norm("product"), category: norm("category"), service: norm("service") })
}

/// Parses one YAML document of a rule file.
pub fn parse_document(doc: &Node, path: &Arc<str>, placeholders: &Placeholders) -> Result<Document, SpecError> {
    if doc.as_map().is_none() {
        return spec_err(doc.line, format!("a Sigma document must be a mapping, not {}", doc.type_name()));
    }
    let origin = Origin { path: path.clone(), line: doc.line };
    let title = opt_str(doc, "title").unwrap_or_default();
    if let Some(action) = opt_str(doc, "action") {
        return spec_err(doc.line, format!("`action: {action}` rule collections are Sigma 1 syntax and not supported"));
    }
    if let Some(corr) = doc.get("correlation") {
        return Ok(Document::Correlation(correlation_doc(doc, corr, origin, title)));
    }
    if let Some(filter) = doc.get("filter")
        && doc.get("detection").is_none()
    {
        let rules = list(filter, "rules");
        if rules.is_empty() {
            return spec_err(filter.line, "a filter needs `rules:` naming the rules it applies to");
        }
        let detection = detection(filter, placeholders, &["rules", "condition"])?;
        return Ok(Document::Filter(Filter { origin, id: opt_str(doc, "id"), title, rules, logsource: logsource(doc)?, detection }));
    }
    let Some(det) = doc.get("detection") else {
        return spec_err(doc.line, "no `detection` section");
    };
    let level = match doc.get("level") {
        None => Level::Informational,
        Some(n) => match n.as_str().and_then(Level::parse) {
            Some(l) => l,
            None => return spec_err(n.line, "level must be informational, low, medium, high or critical"),
        },
    };
    let detection = detection(det, placeholders, &["condition", "timeframe", "fields"])?;
    Ok(Document::Rule(Rule {
        origin,
        id: opt_str(doc, "id"),
        name: opt_str(doc, "name"),
        title: if title.is_empty() { "(untitled rule)".into() } else { title },
        level,
        status: opt_str(doc, "status"),
        description: opt_str(doc, "description"),
        author: opt_str(doc, "author"),
        date: opt_str(doc, "date"),
        tags: list(doc, "tags"),
        references: list(doc, "references"),
        falsepositives: list(doc, "falsepositives"),
        logsource: logsource(doc)?,
        detection,
    }))
}

/// Parses the search identifiers of a detection (or filter) section and resolves its condition.
fn detection(section: &Node, placeholders: &Placeholders, reserved: &[&str]) -> Result<Expr<LeafSpec>, SpecError> {
    let Some(entries) = section.as_map() else {
        return spec_err(section.line, "`detection` must be a mapping");
    };
    let mut searches: Vec<(String, Expr<LeafSpec>)> = Vec::new();
    for (k, v) in entries {
        let Some(name) = k.as_str() else { return spec_err(k.line, "search identifiers must be strings") };
        if reserved.contains(&name) {
            continue;
        }
        searches.push((name.to_string(), search(v, placeholders)?));
    }
    let Some(cond_node) = section.get("condition") else {
        return spec_err(section.line, "no `condition`");
    };
    let conditions: Vec<&Node> = match &cond_node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![cond_node],
    };
    let mut exprs = Vec::new();
    for c in conditions {
        let Some(text) = c.as_str() else { return spec_err(c.line, "a condition must be a string") };
        let parsed = condition::parse(text).map_err(|m| SpecError { line: c.line, message: m })?;
        exprs.push(condition::resolve(&parsed, &searches).map_err(|m| SpecError { line: c.line, message: m })?);
    }
    if exprs.is_empty() {
        return spec_err(cond_node.line, "empty condition list");
    }
    Ok(Expr::or(exprs))
}

/// One search identifier's value: a map (AND of items), a list (OR of maps and keywords) or a keyword.
fn search(v: &Node, placeholders: &Placeholders) -> Result<Expr<LeafSpec>, SpecError> {
    match &v.kind {
        NodeKind::Map(entries) => {
            if entries.is_empty() {
                return spec_err(v.line, "empty search identifier");
            }
            let mut items = Vec::with_capacity(entries.len());
            for (k, val) in entries {
                let Some(key) = k.as_str() else { return spec_err(k.line, "field names must be strings") };
                items.push(modifiers::field_expr(key, val, placeholders)?);
            }
            Ok(Expr::and(items))
        }
        NodeKind::Seq(items) => {
            if items.is_empty() {
                return spec_err(v.line, "empty search identifier");
            }
            let mut alts = Vec::with_capacity(items.len());
            let mut keywords = Vec::new();
            for item in items {
                match &item.kind {
                    NodeKind::Map(_) => alts.push(search(item, placeholders)?),
                    NodeKind::Scalar { .. } => keywords.push(item.clone()),
                    NodeKind::Seq(_) => return spec_err(item.line, "nested lists are not valid in a search"),
                }
            }
            if !keywords.is_empty() {
                let node = Node { kind: NodeKind::Seq(keywords), line: v.line };
                alts.push(modifiers::keyword_expr(&node, false)?);
            }
            Ok(Expr::or(alts))
        }
        NodeKind::Scalar { .. } if !v.is_null() => modifiers::keyword_expr(v, false),
        NodeKind::Scalar { .. } => spec_err(v.line, "empty search identifier"),
    }
}

//! Value modifiers: turns one detection item (`Field|mod1|mod2: values`) or a
//! keyword list into an expression over leaf predicates.
//!
//! Transformation modifiers (`windash`, `base64`, `base64offset`, `utf16*`/`wide`,
//! `expand`) rewrite values in the order written; type modifiers (`contains`,
//! `startswith`, `endswith`, `re` with `i`/`m`/`s`, `cidr`, `exists`, `cased`,
//! `fieldref`, `lt`/`lte`/`gt`/`gte`, `neq`, `minute`…`year`) decide how values
//! match; `all` joins values with AND. Adding a modifier: a [`Modifier`] variant,
//! its name in [`Modifier::parse`], and its effect in [`field_expr`].

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;

use crate::expr::Expr;
use crate::pattern;
/// The pieces of a string pattern, and how a field's value must match one.
pub use crate::pattern::{Mode, Tok};
use crate::yaml::{Node, NodeKind, Scalar};

/// What a leaf tests about one field (or, with no field, any field: keywords).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeafSpec {
    pub field: Option<String>,
    pub pred: Pred,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Pred {
    /// A Sigma string pattern, anchored at both ends (match modes add the `*`).
    Str {
        toks: Vec<Tok>,
        cased: bool,
    },
    /// A regular expression (flags already inlined).
    Re {
        pattern: String,
    },
    Cmp {
        op: CmpOp,
        value: f64,
    },
    Cidr(IpNet),
    Exists(bool),
    /// The field is absent, null or empty.
    Null,
    /// The field's value compared with another field's.
    FieldRef {
        other: String,
        mode: Mode,
        cased: bool,
    },
    /// A part of a timestamp value compared with a number.
    Time {
        unit: TimeUnit,
        op: CmpOp,
        value: f64,
    },
}

impl Pred {
    /// For a string pattern: the regular expression it matches like (anchored; case folded
    /// unless `cased`), and whether it is a plain `contains` of one comma-free literal.
    pub fn string_regex(&self) -> Option<(String, bool)> {
        let Pred::Str { toks, cased } = self else { return None };
        let contains = matches!(toks.as_slice(), [Tok::Star, Tok::Lit(l), Tok::Star] if !l.contains(','));
        Some((pattern::to_regex(toks, *cased), contains))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CmpOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CmpOp {
    pub fn test(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TimeUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// An IPv4 or IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                (u32::from(n) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                (u128::from(n) & mask) == (u128::from(a) & mask)
            }
            _ => false,
        }
    }
}

/// A problem with a detection item, with its line.
#[derive(Clone, Debug)]
pub struct SpecError {
    pub line: usize,
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError { line, message: message.into() })
}

/// Values for `%name%` placeholders used with the `expand` modifier.
pub type Placeholders = HashMap<String, Vec<String>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Base64,
    Base64Offset,
    Utf16le,
    Utf16be,
    Utf16,
    Windash,
    Re,
    ReI,
    ReM,
    ReS,
    Cidr,
    Exists,
    Cased,
    Neq,
    Expand,
    FieldRef,
    Cmp(CmpOp),
    Time(TimeUnit),
}

impl Modifier {
    pub fn parse(s: &str) -> Option<Modifier> {
        Some(match s {
            "contains" => Modifier::Contains,
            "startswith" => Modifier::StartsWith,
            "endswith" => Modifier::EndsWith,
            "all" => Modifier::All,
            "base64" => Modifier::Base64,
            "base64offset" => Modifier::Base64Offset,
            "utf16le" | "wide" => Modifier::Utf16le,
            "utf16be" => Modifier::Utf16be,
            "utf16" => Modifier::Utf16,
            "windash" => Modifier::Windash,
            "re" => Modifier::Re,
            "i" => Modifier::ReI,
            "m" => Modifier::ReM,
            "s" => Modifier::ReS,
            "cidr" => Modifier::Cidr,
            "exists" => Modifier::Exists,
            "cased" => Modifier::Cased,
            "neq" => Modifier::Neq,
            "expand" => Modifier::Expand,
            "fieldref" => Modifier::FieldRef,
            "lt" => Modifier::Cmp(CmpOp::Lt),
            "lte" => Modifier::Cmp(CmpOp::Lte),
            "gt" => Modifier::Cmp(CmpOp::Gt),
            "gte" => Modifier::Cmp(CmpOp::Gte),
            "minute" => Modifier::Time(TimeUnit::Minute),
            "hour" => Modifier::Time(TimeUnit::Hour),
            "day" => Modifier::Time(TimeUnit::Day),
            "week" => Modifier::Time(TimeUnit::Week),
            "month" => Modifier::Time(TimeUnit::Month),
            "year" => Modifier::Time(TimeUnit::Year),
            _ => return None,
        })
    }
}

/// A value on its way through the transformation modifiers.
#[derive(Clone, Debug)]
enum Val {
    /// A Sigma string not yet parsed for wildcards (so `expand` and `re` can see it raw).
    Raw(String),
    Toks(Vec<Tok>),
    Bytes(Vec<u8>),
}

impl Val {
    fn into_toks(self, line: usize) -> Result<Vec<Tok>, SpecError> {
        match self {
            Val::Raw(s) => Ok(pattern::parse_sigma_string(&s)),
            Val::Toks(t) => Ok(t),
            Val::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => Ok(vec![Tok::Lit(s)]),
                Err(_) => err(line, "an encoded value is not text; follow utf16 modifiers with base64 or base64offset"),
            },
        }
    }

    fn into_plain_bytes(self, line: usize, modifier: &str) -> Result<Vec<u8>, SpecError> {
        match self {
            Val::Bytes(b) => Ok(b),
            v => {
                let toks = v.into_toks(line)?;
                match pattern::plain_text(&toks) {
                    Some(s) => Ok(s.into_bytes()),
                    None => err(line, format!("`{modifier}` cannot encode a value with wildcards")),
                }
            }
        }
    }
}

/// One detection item: `key` is `Field|mod|…` (or `|all` for keywords), `value` its YAML value.
pub fn field_expr(key: &str, value: &Node, placeholders: &Placeholders) -> Result<Expr<LeafSpec>, SpecError> {
    let line = value.line;
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or("").trim();
    let mut mods = Vec::new();
    for m in parts {
        match Modifier::parse(m.trim()) {
            Some(m) => mods.push(m),
            None => return err(line, format!("unknown value modifier `{m}` in `{key}`")),
        }
    }
    let has = |m: Modifier| mods.contains(&m);
    if field.is_empty() {
        // `'|all': [..]` keyword lists.
        if mods.iter().any(|m| *m != Modifier::All) {
            return err(line, format!("keyword lists take only the `all` modifier, not `{key}`"));
        }
        return keyword_expr(value, has(Modifier::All));
    }
    let field_name = Some(field.to_string());

    let scalars: Vec<&Node> = match &value.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Scalar { .. } => vec![value],
        NodeKind::Map(_) => return err(line, format!("`{key}` has a mapping as its value; expected a value or a list")),
    };
    if scalars.is_empty() {
        return err(line, format!("`{key}` has an empty list of values"));
    }
    for s in &scalars {
        if !matches!(s.kind, NodeKind::Scalar { .. }) {
            return err(s.line, format!("`{key}` has {} among its values; expected plain values", s.type_name()));
        }
    }
    let leaf = |pred| Expr::Leaf(LeafSpec { field: field_name.clone(), pred });
    let join = |v: Vec<Expr<LeafSpec>>| if has(Modifier::All) { Expr::and(v) } else { Expr::or(v) };

    if has(Modifier::Exists) {
        if mods.len() != 1 {
            return err(line, "`exists` cannot be combined with other modifiers");
        }
        return match scalar_of(scalars[0]) {
            Scalar::Bool(b) if scalars.len() == 1 => Ok(leaf(Pred::Exists(*b))),
            _ => err(line, "`exists` takes true or false"),
        };
    }

    // A bare null is the null test; it cannot be modified.
    if scalars.len() == 1 && scalars[0].is_null() && !has(Modifier::FieldRef) {
        if mods.iter().any(|m| !matches!(m, Modifier::Neq | Modifier::All)) {
            return err(line, format!("`{key}` applies modifiers to null"));
        }
        let e = leaf(Pred::Null);
        return Ok(if has(Modifier::Neq) { Expr::not(e) } else { e });
    }

    let cmp = mods.iter().find_map(|m| if let Modifier::Cmp(op) = m { Some(*op) } else { None });
    let time = mods.iter().find_map(|m| if let Modifier::Time(u) = m { Some(*u) } else { None });
    let neq = has(Modifier::Neq);
    let wrap_neq = |e: Expr<LeafSpec>| if neq { Expr::not(e) } else { e };

    if let Some(unit) = time {
        let op = cmp.unwrap_or(CmpOp::Eq);
        let mut out = Vec::new();
        for s in &scalars {
            let Some(v) = number_of(s) else { return err(s.line, format!("`{key}` needs numbers")) };
            out.push(wrap_neq(leaf(Pred::Time { unit, op, value: v })));
        }
        return Ok(if neq { Expr::and(out) } else { join(out) });
    }
    if let Some(op) = cmp {
        let mut out = Vec::new();
        for s in &scalars {
            let Some(v) = number_of(s) else { return err(s.line, format!("`{key}` compares numbers but has `{}`", text_of(s))) };
            out.push(leaf(Pred::Cmp { op, value: v }));
        }
        return Ok(join(out));
    }
    if has(Modifier::Cidr) {
        let mut out = Vec::new();
        for s in &scalars {
            let t = text_of(s);
            let Some(net) = IpNet::parse(&t) else { return err(s.line, format!("`{t}` is not a CIDR network")) };
            out.push(wrap_neq(leaf(Pred::Cidr(net))));
        }
        return Ok(if neq { Expr::and(out) } else { join(out) });
    }

    let mode = if has(Modifier::Contains) {
        Mode::Contains
    } else if has(Modifier::StartsWith) {
        Mode::StartsWith
    } else if has(Modifier::EndsWith) {
        Mode::EndsWith
    } else {
        Mode::Exact
    };
    let cased = has(Modifier::Cased);

    if has(Modifier::FieldRef) {
        let mut out = Vec::new();
        for s in &scalars {
            let other = text_of(s);
            if other.is_empty() {
                return err(s.line, "`fieldref` needs a field name");
            }
            out.push(wrap_neq(leaf(Pred::FieldRef { other, mode, cased })));
        }
        return Ok(if neq { Expr::and(out) } else { join(out) });
    }

    if has(Modifier::Re) {
        let mut flags = String::new();
        for m in &mods {
            match m {
                Modifier::Re | Modifier::All | Modifier::Neq => {}
                Modifier::ReI => flags.push('i'),
                Modifier::ReM => flags.push('m'),
                Modifier::ReS => flags.push('s'),
                other => return err(line, format!("`re` cannot be combined with `{other:?}`")),
            }
        }
        let mut out = Vec::new();
        for s in &scalars {
            let src = text_of(s);
            let pattern = if flags.is_empty() { src } else { format!("(?{flags}){src}") };
            out.push(wrap_neq(leaf(Pred::Re { pattern })));
        }
        return Ok(if neq { Expr::and(out) } else { join(out) });
    }
    if mods.iter().any(|m| matches!(m, Modifier::ReI | Modifier::ReM | Modifier::ReS)) {
        return err(line, "`i`, `m` and `s` only qualify `re`");
    }

    // String values through the transformation modifiers, in the order written.
    let mut values: Vec<Val> = scalars.iter().map(|s| Val::Raw(text_of(s))).collect();
    for m in &mods {
        values = match m {
            Modifier::Windash => {
                let mut out = Vec::new();
                for v in values {
                    out.extend(pattern::windash(&v.into_toks(line)?).into_iter().map(Val::Toks));
                }
                out
            }
            Modifier::Base64 => {
                let mut out = Vec::new();
                for v in values {
                    let bytes = v.into_plain_bytes(line, "base64")?;
                    out.push(Val::Toks(vec![Tok::Lit(base64::engine::general_purpose::STANDARD.encode(bytes))]));
                }
                out
            }
            Modifier::Base64Offset => {
                let mut out = Vec::new();
                for v in values {
                    let bytes = v.into_plain_bytes(line, "base64offset")?;
                    out.extend(base64_offsets(&bytes).into_iter().map(|s| Val::Toks(vec![Tok::Lit(s)])));
                }
                out
            }
            Modifier::Utf16le | Modifier::Utf16be | Modifier::Utf16 => {
                let mut out = Vec::new();
                for v in values {
                    let text = String::from_utf8(v.into_plain_bytes(line, "utf16")?)
                        .map_err(|_| SpecError { line, message: "utf16 needs a text value".into() })?;
                    out.push(Val::Bytes(utf16(&text, *m)));
                }
                out
            }
            Modifier::Expand => {
                let mut out = Vec::new();
                for v in values {
                    let Val::Raw(raw) = v else {
                        return err(line, "`expand` must come before encoding modifiers");
                    };
                    for e in expand(&raw, placeholders, line)? {
                        out.push(Val::Raw(e));
                    }
                }
                out
            }
            _ => values,
        };
        if values.len() > 10_000 {
            return err(line, "modifiers expand this item to more than 10000 values");
        }
    }
    let mut out = Vec::new();
    for v in values {
        let toks = pattern::with_mode(v.into_toks(line)?, mode);
        out.push(wrap_neq(leaf(Pred::Str { toks, cased })));
    }
    Ok(if neq { Expr::and(out) } else { join(out) })
}

/// A keyword search identifier: values matched anywhere in the event.
pub fn keyword_expr(value: &Node, all: bool) -> Result<Expr<LeafSpec>, SpecError> {
    let items: Vec<&Node> = match &value.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Scalar { .. } => vec![value],
        NodeKind::Map(_) => return err(value.line, "keywords must be a value or a list of values"),
    };
    let mut out = Vec::new();
    for n in items {
        if !matches!(n.kind, NodeKind::Scalar { .. }) || n.is_null() {
            return err(n.line, "keywords must be plain values");
        }
        let toks = pattern::with_mode(pattern::parse_sigma_string(&text_of(n)), Mode::Contains);
        out.push(Expr::Leaf(LeafSpec { field: None, pred: Pred::Str { toks, cased: false } }));
    }
    if out.is_empty() {
        return err(value.line, "empty keyword list");
    }
    Ok(if all { Expr::and(out) } else { Expr::or(out) })
}

fn scalar_of(n: &Node) -> &Scalar {
    match &n.kind {
        NodeKind::Scalar { value, .. } => value,
        _ => &Scalar::Null,
    }
}

fn text_of(n: &Node) -> String {
    match &n.kind {
        NodeKind::Scalar { value: Scalar::Null, .. } => String::new(),
        NodeKind::Scalar { text, .. } => text.clone(),
        _ => String::new(),
    }
}

fn number_of(n: &Node) -> Option<f64> {
    match scalar_of(n) {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) => Some(*f),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The three base64 forms of `value` at byte offsets 0, 1 and 2 of an enclosing
/// string, with the characters that depend on neighbouring bytes cut off.
pub fn base64_offsets(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    let mut out = Vec::with_capacity(3);
    for i in 0..3 {
        let mut padded = vec![b' '; i];
        padded.extend_from_slice(value);
        let enc = base64::engine::general_purpose::STANDARD.encode(&padded);
        let trim = END_TRIM[(value.len() + i) % 3];
        let end = enc.len().saturating_sub(trim);
        if START[i] < end {
            out.push(enc[START[i]..end].to_string());
        }
    }
    out
}

fn utf16(text: &str, m: Modifier) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2 + 2);
    if m == Modifier::Utf16 {
        out.extend_from_slice(&[0xFF, 0xFE]);
    }
    for u in text.encode_utf16() {
        if m == Modifier::Utf16be {
            out.extend_from_slice(&u.to_be_bytes());
        } else {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
    out
}

/// Replaces `%name%` placeholders (not `\%`) with each of their values.
fn expand(raw: &str, placeholders: &Placeholders, line: usize) -> Result<Vec<String>, SpecError> {
    let mut results = vec![String::new()];
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("\\%") {
            results.iter_mut().for_each(|r| r.push('%'));
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix('%')
            && let Some(end) = after.find('%')
        {
            let name = &after[..end];
            let Some(values) = placeholders.get(name) else {
                return err(line, format!("placeholder %{name}% has no values; pass them with --placeholders FILE"));
            };
            if values.is_empty() {
                return err(line, format!("placeholder %{name}% has an empty value list"));
            }
            results = results.iter().flat_map(|r| values.iter().map(move |v| format!("{r}{v}"))).collect();
            if results.len() > 10_000 {
                return err(line, "placeholders expand to more than 10000 values");
            }
            rest = &after[end + 1..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        results.iter_mut().for_each(|r| r.push(c));
        rest = &rest[c.len_utf8()..];
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    fn item(yaml: &str) -> Result<Expr<LeafSpec>, SpecError> {
        let doc = &parse_documents(yaml).unwrap()[0];
        let (k, v) = &doc.as_map().unwrap()[0];
        let mut ph = Placeholders::new();
        ph.insert("Admins".into(), vec!["adm_*".into(), "root".into()]);
        field_expr(k.as_str().unwrap(), v, &ph)
    }

    fn leaves(e: &Expr<LeafSpec>) -> Vec<LeafSpec> {
        let mut v = Vec::new();
        e.leaves(&mut v);
        v.into_iter().cloned().collect()
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // Known values from the Sigma documentation for "/bin/bash".
        assert_eq!(base64_offsets(b"/bin/bash"), ["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
    }

    #[test]
    fn modifiers_build_leaves() {
        let e = item("CommandLine|contains|all: [a, b]").unwrap();
        assert!(matches!(e, Expr::And(ref v) if v.len() == 2));
        let e = item("CommandLine|contains|windash: ' -enc '").unwrap();
        assert_eq!(leaves(&e).len(), 5);
        let e = item("CommandLine|wide|base64offset|contains: 'ping'").unwrap();
        assert_eq!(leaves(&e).len(), 3);
        let e = item("User|expand: '%Admins%'").unwrap();
        assert_eq!(leaves(&e).len(), 2);
        let e = item("Ip|cidr: ['10.0.0.0/8', 'fe80::/10']").unwrap();
        assert_eq!(leaves(&e).len(), 2);
        let e = item("A|re|i: '^x'").unwrap();
        assert_eq!(leaves(&e)[0].pred, Pred::Re { pattern: "(?i)^x".into() });
        let e = item("A|neq: [x, y]").unwrap();
        assert!(matches!(e, Expr::And(ref v) if matches!(v[0], Expr::Not(_))));
        assert!(matches!(item("A|hour|gte: 22").unwrap(), Expr::Leaf(LeafSpec { pred: Pred::Time { op: CmpOp::Gte, .. }, .. })));
        assert!(matches!(item("A: null").unwrap(), Expr::Leaf(LeafSpec { pred: Pred::Null, .. })));
    }

    #[test]
    fn bad_items_are_errors_with_lines() {
        for (yaml, msg) in [
            ("A|nosuch: x", "unknown value modifier"),
            ("A|exists: maybe", "true or false"),
            ("A|cidr: 10.0.0.0/33", "CIDR"),
            ("A|gt: abc", "numbers"),
            ("A|base64: 'a*'", "wildcards"),
            ("A|expand: '%Nope%'", "--placeholders"),
            ("A|i: x", "only qualify"),
            ("A: {b: c}", "mapping"),
        ] {
            let e = item(yaml).unwrap_err();
            assert!(e.message.contains(msg), "{yaml}: {}", e.message);
            assert_eq!(e.line, 1);
        }
    }

    #[test]
    fn cidr_contains() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let n6 = IpNet::parse("fe80::/10").unwrap();
        assert!(n6.contains("fe80::1".parse().unwrap()));
        assert!(!n6.contains("10.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}

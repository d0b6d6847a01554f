//! A YAML tree that remembers the line of every node, built from `yaml-rust2`'s
//! event stream with limits on size, depth and alias expansion, because rule
//! files are hostile input too.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Largest rule file accepted.
pub const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;
const MAX_DEPTH: usize = 64;
const MAX_NODES: usize = 1_000_000;

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    Scalar { value: Scalar, text: String, quoted: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub line: usize,
}

impl Node {
    /// The value under `key` in a mapping (keys compared exactly).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a scalar (as written, for strings; canonical for other types).
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value: Scalar::Null, .. } => None,
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Scalar { value: Scalar::Null, .. })
    }

    /// A scalar or a list of scalars, as strings.
    pub fn string_list(&self) -> Vec<String> {
        match &self.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|n| n.as_str().map(str::to_string)).collect(),
            _ => self.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax or limit error, with the line it was found on.
#[derive(Clone, Debug)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

/// Parses every document of a YAML stream.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    if text.len() > MAX_YAML_BYTES {
        return Err(YamlError { line: 1, message: format!("file is larger than {MAX_YAML_BYTES} bytes") });
    }
    // The parser is third-party code fed hostile text; a panic in it must not take the run down.
    match std::panic::catch_unwind(|| Builder::default().run(text)) {
        Ok(r) => r,
        Err(_) => Err(YamlError { line: 1, message: "YAML parser failed on this file".into() }),
    }
}

enum Frame {
    Seq { items: Vec<Node>, line: usize, anchor: usize },
    Map { entries: Vec<(Node, Node)>, key: Option<Node>, line: usize, anchor: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    docs: Vec<Node>,
}

impl Builder {
    fn run(mut self, text: &str) -> Result<Vec<Node>, YamlError> {
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, mark) = parser.next_token().map_err(|e| YamlError { line: e.marker().line(), message: e.info().to_string() })?;
            let line = mark.line();
            match event {
                Event::StreamEnd => break,
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart => self.anchors.clear(),
                Event::Scalar(text, style, anchor, _tag) => {
                    let node = scalar_node(text, style, line);
                    self.push(node, anchor)?;
                }
                Event::Alias(id) => {
                    let node =
                        self.anchors.get(&id).cloned().ok_or_else(|| YamlError { line, message: "alias to an unknown anchor".into() })?;
                    self.nodes += count_nodes(&node);
                    if self.nodes > MAX_NODES {
                        return Err(YamlError { line, message: "too many nodes after alias expansion".into() });
                    }
                    self.push(node, 0)?;
                }
                Event::SequenceStart(anchor, _) => {
                    self.open(line)?;
                    self.stack.push(Frame::Seq { items: Vec::new(), line, anchor });
                }
                Event::MappingStart(anchor, _) => {
                    self.open(line)?;
                    self.stack.push(Frame::Map { entries: Vec::new(), key: None, line, anchor });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match self.stack.pop() {
                        Some(Frame::Seq { items, line, anchor }) => (Node { kind: NodeKind::Seq(items), line }, anchor),
                        Some(Frame::Map { entries, line, anchor, .. }) => (Node { kind: NodeKind::Map(entries), line }, anchor),
                        None => return Err(YamlError { line, message: "unbalanced collection end".into() }),
                    };
                    self.push(node, anchor)?;
                }
            }
        }
        Ok(self.docs)
    }

    fn open(&mut self, line: usize) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError { line, message: format!("nesting deeper than {MAX_DEPTH} levels") });
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(YamlError { line: node.line, message: "too many YAML nodes".into() });
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => 1 + entries.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum::<usize>(),
    }
}

fn scalar_node(text: String, style: TScalarStyle, line: usize) -> Node {
    let quoted = style != TScalarStyle::Plain;
    let value = if quoted { Scalar::Str(text.clone()) } else { resolve_plain(&text) };
    Node { kind: NodeKind::Scalar { value, text, quoted }, line }
}

/// YAML 1.2 core-schema resolution of a plain scalar.
fn resolve_plain(t: &str) -> Scalar {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let parsed = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(v) = parsed {
        return Scalar::Int(if neg { -v } else { v });
    }
    if t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && let Ok(f) = t.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_types() {
        let docs =
            parse_documents("title: x\ndetection:\n  sel:\n    EventID: 4688\n    A: '4688'\n    B: null\n---\nk: [1, true]\n").unwrap();
        assert_eq!(docs.len(), 2);
        let sel = docs[0].get("detection").unwrap().get("sel").unwrap();
        assert_eq!(sel.line, 4);
        let m = sel.as_map().unwrap();
        assert!(matches!(m[0].1.kind, NodeKind::Scalar { value: Scalar::Int(4688), .. }));
        assert!(matches!(&m[1].1.kind, NodeKind::Scalar { value: Scalar::Str(s), quoted: true, .. } if s == "4688"));
        assert!(m[2].1.is_null());
        assert_eq!(m[2].1.line, 6);
    }

    #[test]
    fn hostile_yaml_is_an_error_not_a_crash() {
        let deep = "[".repeat(10_000);
        assert!(parse_documents(&deep).is_err());
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        let err = parse_documents(bomb).unwrap_err();
        assert!(err.message.contains("too many"), "{}", err.message);
        assert!(parse_documents("a: [unclosed\n").is_err());
        assert!(parse_documents("a: *nope\n").is_err());
    }
}

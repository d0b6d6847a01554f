//! Sigma string values: wildcards (`*`, `?`), escapes (`\*`, `\?`, `\\`), and the
//! shape a pattern has once its match mode is applied, which decides how the
//! engine matches it (one multi-pattern automaton for plain literals, a regular
//! expression for everything else).

/// A token of a Sigma string pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Tok {
    Lit(String),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
    /// Any of the five characters `windash` treats as interchangeable.
    Dash,
}

/// The characters `windash` permutes: hyphen, slash, en dash, em dash, horizontal bar.
pub const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Parses a Sigma string: `*` and `?` are wildcards; `\*`, `\?` and `\\` are the plain
/// characters; a backslash before anything else is itself.
pub fn parse_sigma_string(s: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    toks.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                toks.push(if c == '*' { Tok::Star } else { Tok::One });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    toks
}

/// The plain text of a pattern without wildcards, or None if it has any.
pub fn plain_text(toks: &[Tok]) -> Option<String> {
    let mut s = String::new();
    for t in toks {
        match t {
            Tok::Lit(l) => s.push_str(l),
            _ => return None,
        }
    }
    Some(s)
}

/// How a value is matched against a field (the `contains`/`startswith`/`endswith` modifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    Exact,
    Contains,
    StartsWith,
    EndsWith,
}

/// Applies a match mode by adding the implied wildcards, then normalises.
pub fn with_mode(mut toks: Vec<Tok>, mode: Mode) -> Vec<Tok> {
    if matches!(mode, Mode::Contains | Mode::EndsWith) {
        toks.insert(0, Tok::Star);
    }
    if matches!(mode, Mode::Contains | Mode::StartsWith) {
        toks.push(Tok::Star);
    }
    normalise(toks)
}

/// Merges adjacent literals and collapses runs of `*`.
pub fn normalise(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    for t in toks {
        match (out.last_mut(), t) {
            (Some(Tok::Lit(prev)), Tok::Lit(l)) => prev.push_str(&l),
            (Some(Tok::Star), Tok::Star) => {}
            (_, Tok::Lit(l)) if l.is_empty() => {}
            (_, t) => out.push(t),
        }
    }
    out
}

/// Expands `windash`: every dash-like character in a literal may be any of [`DASHES`].
/// Small expansions become separate literal patterns (so they stay on the fast path);
/// larger ones use a [`Tok::Dash`] class.
pub fn windash(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let dash_count: usize =
        toks.iter().map(|t| if let Tok::Lit(l) = t { l.chars().filter(|c| DASHES.contains(c)).count() } else { 0 }).sum();
    if dash_count == 0 {
        return vec![toks.to_vec()];
    }
    if dash_count <= 3 {
        let mut variants: Vec<Vec<Tok>> = vec![Vec::new()];
        for t in toks {
            match t {
                Tok::Lit(l) => {
                    let mut lits: Vec<String> = vec![String::new()];
                    for c in l.chars() {
                        if DASHES.contains(&c) {
                            lits = lits.iter().flat_map(|s| DASHES.iter().map(move |d| format!("{s}{d}"))).collect();
                        } else {
                            lits.iter_mut().for_each(|s| s.push(c));
                        }
                    }
                    variants = variants.iter().flat_map(|v| lits.iter().map(move |l| push(v, Tok::Lit(l.clone())))).collect();
                }
                other => variants.iter_mut().for_each(|v| v.push(other.clone())),
            }
        }
        return variants;
    }
    let mut out = Vec::new();
    for t in toks {
        match t {
            Tok::Lit(l) => {
                let mut lit = String::new();
                for c in l.chars() {
                    if DASHES.contains(&c) {
                        if !lit.is_empty() {
                            out.push(Tok::Lit(std::mem::take(&mut lit)));
                        }
                        out.push(Tok::Dash);
                    } else {
                        lit.push(c);
                    }
                }
                if !lit.is_empty() {
                    out.push(Tok::Lit(lit));
                }
            }
            other => out.push(other.clone()),
        }
    }
    vec![out]
}

fn push(v: &[Tok], t: Tok) -> Vec<Tok> {
    let mut v = v.to_vec();
    v.push(t);
    v
}

/// The shape of a normalised pattern, which decides the matching strategy: its literal
/// borrowed from the pattern ([`shape`]) or owned, to be kept in a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape<S = String> {
    Exact(S),
    Prefix(S),
    Suffix(S),
    Contains(S),
    /// `*`: any value at all.
    Any,
    /// Anything with inner wildcards, `?` or dash classes; matched by a regex.
    Glob,
}

impl Shape<&str> {
    /// The shape with its literal copied out of the pattern.
    pub fn owned(&self) -> Shape {
        match *self {
            Shape::Exact(l) => Shape::Exact(l.to_string()),
            Shape::Prefix(l) => Shape::Prefix(l.to_string()),
            Shape::Suffix(l) => Shape::Suffix(l.to_string()),
            Shape::Contains(l) => Shape::Contains(l.to_string()),
            Shape::Any => Shape::Any,
            Shape::Glob => Shape::Glob,
        }
    }
}

pub fn shape(toks: &[Tok]) -> Shape<&str> {
    match toks {
        [] => Shape::Exact(""),
        [Tok::Lit(l)] => Shape::Exact(l),
        [Tok::Star] => Shape::Any,
        [Tok::Star, Tok::Lit(l)] => Shape::Suffix(l),
        [Tok::Lit(l), Tok::Star] => Shape::Prefix(l),
        [Tok::Star, Tok::Lit(l), Tok::Star] => Shape::Contains(l),
        _ => Shape::Glob,
    }
}

/// The longest literal a match must contain, used to skip the regex when it is absent.
pub fn required_literal(toks: &[Tok]) -> Option<&str> {
    toks.iter().filter_map(|t| if let Tok::Lit(l) = t { Some(l.as_str()) } else { None }).max_by_key(|l| l.len()).filter(|l| !l.is_empty())
}

/// An anchored regular expression equivalent to the pattern.
pub fn to_regex(toks: &[Tok], cased: bool) -> String {
    let mut re = String::from(if cased { "(?s)^" } else { "(?si)^" });
    for t in toks {
        match t {
            Tok::Lit(l) => re.push_str(&regex::escape(l)),
            Tok::Star => re.push_str(".*"),
            Tok::One => re.push('.'),
            Tok::Dash => re.push_str("[-/\u{2013}\u{2014}\u{2015}]"),
        }
    }
    re.push('$');
    re
}

/// Whether ASCII case folding compares this literal the way full case folding would
/// (true when no non-ASCII character in it has case variants).
pub fn ascii_fold_is_exact(s: &str) -> bool {
    s.is_ascii() || s.chars().all(|c| c.is_ascii() || (c.to_lowercase().eq(std::iter::once(c)) && c.to_uppercase().eq(std::iter::once(c))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Tok::*;

    fn lit(s: &str) -> Tok {
        Lit(s.into())
    }

    #[test]
    fn escapes_per_spec() {
        assert_eq!(parse_sigma_string(r"C:\Windows\*"), vec![lit(r"C:\Windows*")]);
        assert_eq!(parse_sigma_string(r"a\*b"), vec![lit("a*b")]);
        assert_eq!(parse_sigma_string(r"a\\*b"), vec![lit(r"a\"), Star, lit("b")]);
        assert_eq!(parse_sigma_string(r"a\\\*b"), vec![lit(r"a\*b")]);
        assert_eq!(parse_sigma_string(r"\\\\srv"), vec![lit(r"\\srv")]);
        assert_eq!(parse_sigma_string(r"a?c"), vec![lit("a"), One, lit("c")]);
        assert_eq!(parse_sigma_string(r"\?"), vec![lit("?")]);
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(&with_mode(parse_sigma_string("x"), Mode::Contains)), Shape::Contains("x"));
        assert_eq!(shape(&with_mode(parse_sigma_string("*x"), Mode::Contains)), Shape::Contains("x"));
        assert_eq!(shape(&with_mode(parse_sigma_string("x"), Mode::EndsWith)), Shape::Suffix("x"));
        assert_eq!(shape(&parse_sigma_string("x*")), Shape::Prefix("x"));
        assert_eq!(shape(&parse_sigma_string("*")), Shape::Any);
        assert_eq!(shape(&parse_sigma_string("a*b")), Shape::Glob);
        assert_eq!(shape(&parse_sigma_string("")), Shape::Exact(""));
    }

    #[test]
    fn windash_variants() {
        let v = windash(&[lit(" -enc ")]);
        assert_eq!(v.len(), 5);
        assert!(v.contains(&vec![lit(" /enc ")]));
        assert!(v.contains(&vec![lit(" \u{2015}enc ")]));
        let many = windash(&[lit("-a -b -c -d")]);
        assert_eq!(many.len(), 1);
        let re = regex::Regex::new(&to_regex(&many[0], false)).unwrap();
        assert!(re.is_match("/A \u{2013}b -c /D"));
    }

    #[test]
    fn glob_regex() {
        let re = regex::Regex::new(&to_regex(&parse_sigma_string("*\\a?c*x"), false)).unwrap();
        assert!(re.is_match("zz\\ABCqqX"));
        assert!(!re.is_match("zz\\ACqqX"));
        assert!(ascii_fold_is_exact("a\u{2013}b"));
        assert!(!ascii_fold_is_exact("über"));
    }
}

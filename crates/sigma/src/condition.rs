//! The condition grammar: `and`, `or`, `not`, parentheses, `1 of x*`, `all of them`,
//! `N of pattern`. Precedence, least binding first: or, and, not, `x of`, parentheses.

use crate::expr::Expr;

#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Ident(String),
    /// `N of pattern` (`all` is `None`); `them` is the pattern `*` over non-`_` identifiers.
    Of {
        count: Option<usize>,
        pattern: String,
        them: bool,
    },
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    Pipe,
}

const MAX_DEPTH: usize = 64;

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        match c {
            '(' | ')' | '|' => {
                if !word.is_empty() {
                    out.push(Token::Word(std::mem::take(&mut word)));
                }
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Pipe,
                });
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(Token::Word(std::mem::take(&mut word)));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(Token::Word(word));
    }
    if out.len() > 10_000 {
        return Err("condition is too long".into());
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

pub fn parse(s: &str) -> Result<Cond, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err("empty condition".into());
    }
    if toks.contains(&Token::Pipe) {
        return Err("aggregation (`| count() …`) is Sigma 1 syntax; write it as a correlation rule".into());
    }
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let c = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected `{}` in condition", p.describe()));
    }
    Ok(c)
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn describe(&self) -> String {
        match self.peek() {
            Some(Token::Word(w)) => w.clone(),
            Some(Token::Open) => "(".into(),
            Some(Token::Close) => ")".into(),
            Some(Token::Pipe) => "|".into(),
            None => "end of condition".into(),
        }
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut v = vec![self.and()?];
        while is_kw(self.peek(), "or") {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.pop().unwrap() } else { Cond::Or(v) })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut v = vec![self.not()?];
        while is_kw(self.peek(), "and") {
            self.pos += 1;
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 { v.pop().unwrap() } else { Cond::And(v) })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if is_kw(self.peek(), "not") {
            self.pos += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("condition nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<Cond, String> {
        match self.peek().cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                self.enter()?;
                let c = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Token::Close) {
                    return Err(format!("expected `)` but found `{}`", self.describe()));
                }
                self.pos += 1;
                Ok(c)
            }
            Some(Token::Word(w)) => {
                self.pos += 1;
                if is_kw(self.peek(), "of") {
                    let count = if w.eq_ignore_ascii_case("all") {
                        None
                    } else if w.eq_ignore_ascii_case("any") {
                        Some(1)
                    } else {
                        match w.parse::<usize>() {
                            Ok(n) if n >= 1 => Some(n),
                            _ => return Err(format!("`{w} of` needs a positive number or `all`")),
                        }
                    };
                    self.pos += 1;
                    let Some(Token::Word(target)) = self.peek().cloned() else {
                        return Err(format!("`of` needs a search identifier pattern, found `{}`", self.describe()));
                    };
                    self.pos += 1;
                    let them = target.eq_ignore_ascii_case("them");
                    return Ok(Cond::Of { count, pattern: if them { "*".into() } else { target }, them });
                }
                for kw in ["and", "or", "not", "of"] {
                    if w.eq_ignore_ascii_case(kw) {
                        return Err(format!("unexpected `{w}` in condition"));
                    }
                }
                Ok(Cond::Ident(w))
            }
            _ => Err(format!("expected a search identifier but found `{}`", self.describe())),
        }
    }
}

/// Whether a search identifier matches an `x of` pattern (`*` matches any run).
pub fn ident_matches(pattern: &str, ident: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == ident;
    }
    let mut rest = ident;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(p) => rest = &rest[p + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Resolves a condition against the named searches into one expression.
pub fn resolve<L: Clone>(cond: &Cond, searches: &[(String, Expr<L>)]) -> Result<Expr<L>, String> {
    Ok(match cond {
        Cond::Ident(name) => match searches.iter().find(|(n, _)| n == name) {
            Some((_, e)) => e.clone(),
            None => return Err(format!("condition names `{name}`, which is not a search identifier")),
        },
        Cond::Of { count, pattern, them } => {
            let hits: Vec<Expr<L>> = searches
                .iter()
                .filter(|(n, _)| if *them { !n.starts_with('_') } else { ident_matches(pattern, n) })
                .map(|(_, e)| e.clone())
                .collect();
            if hits.is_empty() {
                return Err(format!("`{pattern}` in the condition matches no search identifier"));
            }
            match count {
                None => Expr::and(hits),
                Some(1) => Expr::or(hits),
                Some(n) => Expr::AtLeast(*n, hits),
            }
        }
        Cond::Not(c) => Expr::not(resolve(c, searches)?),
        Cond::And(v) => Expr::And(v.iter().map(|c| resolve(c, searches)).collect::<Result<_, _>>()?),
        Cond::Or(v) => Expr::Or(v.iter().map(|c| resolve(c, searches)).collect::<Result<_, _>>()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(cond: &str, truth: &[(&str, bool)]) -> bool {
        let searches: Vec<(String, Expr<bool>)> = truth.iter().map(|(n, b)| (n.to_string(), Expr::Leaf(*b))).collect();
        resolve(&parse(cond).unwrap(), &searches).unwrap().eval(&|b| *b)
    }

    #[test]
    fn precedence() {
        let t = [("a", true), ("b", false), ("c", true)];
        assert!(eval("a or b and c", &t)); // a or (b and c)
        assert!(!eval("(a or b) and not c", &t));
        assert!(eval("not b and a", &t));
        assert!(!eval("not (a and c)", &t));
        assert!(eval("a and not not c", &t));
    }

    #[test]
    fn quantifiers() {
        let t = [("selection_1", true), ("selection_2", false), ("filter_x", false), ("_hidden", false)];
        assert!(eval("1 of selection_*", &t));
        assert!(!eval("all of selection_*", &t));
        assert!(eval("1 of selection_* and not 1 of filter*", &t));
        assert!(!eval("all of them", &t));
        assert!(eval("all of them", &[("a", true), ("_b", false)]));
        assert!(!eval("2 of selection_*", &t));
        assert!(eval("any of sel*", &t));
    }

    #[test]
    fn errors() {
        assert!(parse("").is_err());
        assert!(parse("a and").is_err());
        assert!(parse("(a").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("selection | count() > 5").unwrap_err().contains("correlation"));
        assert!(parse(&"(".repeat(1000)).unwrap_err().contains("deeper"));
        let s: Vec<(String, Expr<bool>)> = vec![("a".into(), Expr::Leaf(true))];
        assert!(resolve(&parse("nope").unwrap(), &s).is_err());
        assert!(resolve(&parse("1 of x*").unwrap(), &s).is_err());
        assert!(ident_matches("sel*_a*", "sel1_ab"));
        assert!(!ident_matches("sel*", "xsel"));
    }
}

//! An HTML writer in which every string from evidence is escaped: markup is only ever
//! written through [`Html::raw`] with literals of ours, text through [`Html::text`].

use std::fmt::Write;

/// Escapes text for HTML content and attribute values. Control, bidi and invisible
/// characters are first made visible (`\u{202e}`) so evidence cannot hide what it says.
pub fn escape(s: &str) -> String {
    let visible = portcullis_event::escape_display(s);
    let mut out = String::with_capacity(visible.len() + 8);
    for c in visible.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a URL query or path segment.
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A growing HTML document.
#[derive(Default)]
pub struct Html(String);

impl Html {
    pub fn new() -> Html {
        Html(String::with_capacity(64 * 1024))
    }
    /// Markup of ours (never evidence).
    pub fn raw(&mut self, s: &str) -> &mut Html {
        self.0.push_str(s);
        self
    }
    /// Text, escaped.
    pub fn text(&mut self, s: &str) -> &mut Html {
        self.0.push_str(&escape(s));
        self
    }
    /// Preformatted text, escaped line by line (line breaks kept).
    pub fn text_pre(&mut self, s: &str) -> &mut Html {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                self.0.push('\n');
            }
            self.0.push_str(&escape(line));
        }
        self
    }
    /// `<tag class="…">text</tag>` with the text escaped.
    pub fn el(&mut self, tag: &str, class: &str, text: &str) -> &mut Html {
        if class.is_empty() {
            let _ = write!(self.0, "<{tag}>");
        } else {
            let _ = write!(self.0, "<{tag} class=\"{class}\">");
        }
        self.text(text);
        let _ = write!(self.0, "</{tag}>");
        self
    }
    /// A link within the document or the UI (relative targets only, so no evidence can
    /// become a `javascript:` or off-site link); target and text are both escaped.
    pub fn link(&mut self, href: &str, text: &str) -> &mut Html {
        if href.starts_with('/') && !href.starts_with("//") || href.starts_with('#') || href.starts_with('?') {
            let _ = write!(self.0, "<a href=\"{}\">{}</a>", escape(href), escape(text));
        } else {
            self.text(text);
        }
        self
    }
    pub fn fmt(&mut self, args: std::fmt::Arguments<'_>) -> &mut Html {
        let _ = self.0.write_fmt(args);
        self
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_cannot_become_markup() {
        let payload = "<script>window.pwned=1</script>\"' onmouseover=x \u{202e}gpj.exe";
        let e = escape(payload);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''), "{e}");
        assert!(e.contains("\\u{202e}"), "bidi override made visible: {e}");
        let mut h = Html::new();
        h.link("javascript:alert(1)\"><img src=x>", "<b>");
        assert!(!h.into_string().contains("<img"));
        assert_eq!(url_part("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }
}

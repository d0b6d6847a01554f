//! A small, bounded HTML scanner: not a DOM, just what beacon analysis needs — images with
//! their size and visibility (own attributes, inline CSS and hidden ancestors), links, CSS
//! background images and a skeleton of tag and attribute names for clustering. It never
//! recurses, keeps at most [`MAX_STACK`] open elements and looks at most [`MAX_TAGS`] tags,
//! so hostile nesting costs bounded time and memory.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use xxhash_rust::xxh3::xxh3_64;

/// Searchers for inline CSS (image sizes, background URLs), built once, not at every tag.
static CSS_WIDTH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("width:"));
static CSS_HEIGHT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("height:"));
static CSS_URL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("url("));

/// Open elements tracked for inherited visibility.
pub const MAX_STACK: usize = 256;
/// Tags examined per body.
pub const MAX_TAGS: usize = 100_000;
/// Tags that go into the skeleton hash.
const SKELETON_TAGS: usize = 2_000;

/// An `<img>` (or `<input type=image>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub src: String,
    /// Why it cannot be seen: `width=1`, `display:none`, `inside a hidden element`…
    pub hidden: Vec<&'static str>,
    pub alt_empty: bool,
}

/// What a body's HTML holds.
#[derive(Clone, Debug, Default)]
pub struct HtmlFacts {
    pub images: Vec<Image>,
    /// `href` of links.
    pub links: Vec<String>,
    /// URLs of CSS background images (inline styles, `<style>` blocks, `background=`).
    pub backgrounds: Vec<String>,
    /// Elements hidden by CSS (not counting images).
    pub hidden_elements: u32,
    /// Hash of the tag and attribute names in document order (values left out).
    pub skeleton: u64,
    pub tags: usize,
    /// Nesting beyond [`MAX_STACK`] or tags beyond [`MAX_TAGS`] were met.
    pub truncated: bool,
}

/// Elements that never have content or a closing tag.
fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area" | "base" | "br" | "col" | "embed" | "hr" | "img" | "input" | "link" | "meta" | "param" | "source" | "track" | "wbr"
    )
}

/// Scans one HTML body.
pub fn scan(html: &str) -> HtmlFacts {
    let b = html.as_bytes();
    let mut facts = HtmlFacts::default();
    let mut stack: Vec<(Cow<'_, str>, bool)> = Vec::new();
    let mut overflow_depth = 0usize;
    let mut skeleton = String::with_capacity(1024);
    let mut attrs: Attributes<'_> = Vec::with_capacity(16);
    let mut i = 0;
    while i < b.len() {
        let Some(lt) = memchr::memchr(b'<', &b[i..]) else { break };
        i += lt;
        if b[i..].starts_with(b"<!--") {
            i = find(b, i + 4, b"-->").map(|p| p + 3).unwrap_or(b.len());
            continue;
        }
        if b[i..].starts_with(b"<!") || b[i..].starts_with(b"<?") {
            i = memchr::memchr(b'>', &b[i..]).map(|p| i + p + 1).unwrap_or(b.len());
            continue;
        }
        let closing = b.get(i + 1) == Some(&b'/');
        let name_start = i + 1 + closing as usize;
        let mut j = name_start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b':') {
            j += 1;
        }
        if j == name_start {
            i += 1;
            continue;
        }
        let name = lower(&html[name_start..j]);
        let end = attributes(html, j, &mut attrs);
        i = end;
        facts.tags += 1;
        if facts.tags > MAX_TAGS {
            facts.truncated = true;
            break;
        }
        if closing {
            if overflow_depth > 0 {
                overflow_depth -= 1;
            } else if let Some(pos) = stack.iter().rposition(|(n, _)| *n == name) {
                stack.truncate(pos);
            }
            continue;
        }
        if facts.tags <= SKELETON_TAGS {
            skeleton.push_str(&name);
            // Attribute names in sorted order, sorted as indices: a 64-byte array to set up
            // per tag, not 64 string slices (1 KiB).
            let mut order = [0u8; MAX_ATTRIBUTES];
            for (slot, k) in order.iter_mut().zip(0u8..) {
                *slot = k;
            }
            let order = &mut order[..attrs.len()];
            order.sort_unstable_by(|&x, &y| attrs[x as usize].0.cmp(&attrs[y as usize].0));
            for &k in order.iter() {
                skeleton.push(' ');
                skeleton.push_str(&attrs[k as usize].0);
            }
            skeleton.push('|');
        }
        let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref());
        let style = attr("style").map(compact_css).unwrap_or_default();
        let hidden_by_style = style_hidden(&style);
        let ancestor_hidden = stack.last().is_some_and(|(_, h)| *h);
        facts.backgrounds.extend(css_urls(&style));
        if let Some(bg) = attr("background").filter(|v| !v.is_empty()) {
            facts.backgrounds.push(bg.to_string());
        }
        match name.as_ref() {
            "img" | "image" => {
                let mut hidden = Vec::new();
                if let Some(r) = hidden_by_style {
                    hidden.push(r);
                }
                if attr("width").is_some_and(tiny) {
                    hidden.push("width 0–1");
                }
                if attr("height").is_some_and(tiny) {
                    hidden.push("height 0–1");
                }
                if style_size_tiny(&style, &CSS_WIDTH) {
                    hidden.push("CSS width 0–1");
                }
                if style_size_tiny(&style, &CSS_HEIGHT) {
                    hidden.push("CSS height 0–1");
                }
                if attr("hidden").is_some() {
                    hidden.push("hidden attribute");
                }
                if ancestor_hidden {
                    hidden.push("inside a hidden element");
                }
                if let Some(src) = attr("src") {
                    facts.images.push(Image { src: src.to_string(), hidden, alt_empty: attr("alt").is_none_or(|a| a.trim().is_empty()) });
                }
            }
            "input" if attr("type").is_some_and(|t| t.eq_ignore_ascii_case("image")) => {
                if let Some(src) = attr("src") {
                    facts.images.push(Image { src: src.to_string(), hidden: Vec::new(), alt_empty: true });
                }
            }
            "a" | "area" => {
                if let Some(h) = attr("href").filter(|h| !h.is_empty()) {
                    facts.links.push(h.to_string());
                }
            }
            "style" => {
                let end = find_ci(b, i, b"</style").unwrap_or(b.len());
                let css = compact_css(&html[i..end]);
                facts.backgrounds.extend(css_urls(&css));
                i = end;
                continue;
            }
            "script" => {
                i = find_ci(b, i, b"</script").unwrap_or(b.len());
                continue;
            }
            _ => {}
        }
        if hidden_by_style.is_some() || attr("hidden").is_some() {
            facts.hidden_elements += 1;
        }
        if is_void(&name) || html[..i].ends_with("/>") {
            continue;
        }
        if stack.len() >= MAX_STACK {
            overflow_depth += 1;
            facts.truncated = true;
        } else {
            stack.push((name, ancestor_hidden || hidden_by_style.is_some() || attr("hidden").is_some()));
        }
    }
    facts.skeleton = xxh3_64(skeleton.as_bytes());
    facts
}

/// Attribute names and values of a tag.
type Attributes<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Attributes kept per tag; the rest are read past.
const MAX_ATTRIBUTES: usize = 64;

/// Parses attributes from `start` (just after the tag name) to the closing `>` into `out`
/// (cleared first; names lower-cased, values with entities for `&`, quotes and angle
/// brackets decoded) and returns the index after `>`.
fn attributes<'a>(html: &'a str, start: usize, out: &mut Attributes<'a>) -> usize {
    let b = html.as_bytes();
    out.clear();
    let mut i = start;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return b.len();
        }
        if b[i] == b'>' {
            return i + 1;
        }
        let ns = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = lower(&html[ns..i]);
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Cow::Borrowed("");
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = memchr::memchr(q, &b[vs..]).map(|p| vs + p).unwrap_or(b.len());
                value = decode_entities(&html[vs..ve]);
                i = (ve + 1).min(b.len());
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&html[vs..i]);
            }
        }
        if out.len() < MAX_ATTRIBUTES && !name.is_empty() {
            out.push((name, value));
        }
    }
}

/// CSS lower-cased (ASCII) without spaces, tabs and line breaks, as the checks below read it.
fn compact_css(css: &str) -> String {
    // Byte by byte: dropping and lower-casing ASCII bytes leaves UTF-8 valid.
    let mut out = Vec::with_capacity(css.len());
    out.extend(css.bytes().filter(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r')).map(|c| c.to_ascii_lowercase()));
    String::from_utf8(out).unwrap_or_default()
}

/// Lower-cased, borrowing when it already is.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) }
}

/// `&amp;`, `&#38;`, `&quot;`, `&#39;`, `&lt;` and `&gt;` decoded in one pass, as a browser
/// does: a decoded `&` does not start another entity (`&amp;lt;` is the text `&lt;`).
fn decode_entities(s: &str) -> Cow<'_, str> {
    const ENTITIES: [(&str, &str); 6] = [("&amp;", "&"), ("&#38;", "&"), ("&quot;", "\""), ("&#39;", "'"), ("&lt;", "<"), ("&gt;", ">")];
    let Some(first) = memchr::memchr(b'&', s.as_bytes()) else { return Cow::Borrowed(s) };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut rest = &s[first..];
    while let Some(at) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match ENTITIES.iter().find(|(e, _)| rest.starts_with(e)) {
            Some((e, d)) => {
                out.push_str(d);
                rest = &rest[e.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn tiny(v: &str) -> bool {
    let mut v = v.trim();
    while let Some(rest) = v.strip_suffix("px") {
        v = rest;
    }
    // Most sizes are whole numbers: 0 or 1 after any leading zeros, without parsing a float.
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let n = v.trim_start_matches('0');
        return n.is_empty() || n == "1";
    }
    v.parse::<f64>().is_ok_and(|n| (0.0..=1.0).contains(&n))
}

/// Why a compact (lower-cased, whitespace-free) inline style hides its element, if it does.
fn style_hidden(style: &str) -> Option<&'static str> {
    // Every pattern below is a property name, `:`, and the start of a value: found in one
    // walk over the style's colons (not a search per pattern), keeping each pattern's first
    // occurrence, then judged in the order of precedence.
    let b = style.as_bytes();
    let (mut display_none, mut visibility_hidden, mut max_size_0) = (false, false, false);
    let mut opacity: Option<usize> = None;
    // Where the value of `left:-`, `top:-` and `text-indent:-` first starts.
    let mut offsets: [Option<usize>; 3] = [None; 3];
    for colon in memchr::memchr_iter(b':', b) {
        let (name, value) = (&b[..colon], &b[colon + 1..]);
        display_none |= name.ends_with(b"display") && value.starts_with(b"none");
        visibility_hidden |= name.ends_with(b"visibility") && value.starts_with(b"hidden");
        max_size_0 |= (name.ends_with(b"max-height") || name.ends_with(b"max-width")) && value.starts_with(b"0");
        if opacity.is_none() && name.ends_with(b"opacity") {
            opacity = Some(colon + 1);
        }
        if value.starts_with(b"-") {
            for (slot, key) in offsets.iter_mut().zip([b"left".as_slice(), b"top", b"text-indent"]) {
                if slot.is_none() && name.ends_with(key) {
                    *slot = Some(colon + 2);
                }
            }
        }
    }
    if display_none {
        return Some("display:none");
    }
    if visibility_hidden {
        return Some("visibility:hidden");
    }
    if let Some(v) = opacity {
        let v = &style[v..];
        let v = &v[..v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len())];
        if v.parse::<f64>().is_ok_and(|o| o < 0.05) {
            return Some("opacity:0");
        }
    }
    if max_size_0 {
        return Some("max size 0");
    }
    for v in offsets.into_iter().flatten() {
        let v = &style[v..];
        let v = &v[..v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len())];
        if v.parse::<u64>().is_ok_and(|n| n >= 500) {
            return Some("positioned off-screen");
        }
    }
    None
}

/// Whether the property `finder` looks for (`width:`, `height:`) is set to 0 or 1 in a
/// compact style, as a property of its own (not `max-width:`).
fn style_size_tiny(style: &str, finder: &Finder<'static>) -> bool {
    if style.is_empty() {
        return false;
    }
    let key = finder.needle();
    let mut from = 0;
    while let Some(p) = finder.find(&style.as_bytes()[from..]) {
        let at = from + p;
        // `max-width:` and `min-width:` are other properties.
        let standalone = at == 0 || matches!(style.as_bytes()[at - 1], b';' | b'{' | b'"');
        let rest = &style[at + key.len()..];
        let v = &rest[..rest.find([';', '}']).unwrap_or(rest.len())];
        if standalone && tiny(v) {
            return true;
        }
        from = at + key.len();
    }
    false
}

/// URLs inside `url(...)` in compact CSS, where the declaration is a background.
fn css_urls(css: &str) -> Vec<String> {
    // Most styles have no `(` at all: no searcher is needed for them.
    if memchr::memchr(b'(', css.as_bytes()).is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = CSS_URL.find(&css.as_bytes()[from..]) {
        let at = from + p;
        let decl_start = css[..at].rfind([';', '{', '"']).map(|i| i + 1).unwrap_or(0);
        let end = css[at..].find(')').map(|e| at + e).unwrap_or(css.len());
        if css[decl_start..at].starts_with("background") {
            let u = css[at + 4..end].trim_matches(['"', '\'']);
            if !u.is_empty() && out.len() < 64 {
                out.push(u.to_string());
            }
        }
        from = (end + 1).min(css.len());
        if from >= css.len() {
            break;
        }
    }
    out
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(b.get(from..)?, needle).map(|p| from + p)
}

fn find_ci(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'<', b.get(i..)?) {
        let at = i + p;
        if b.len() >= at + needle.len() && b[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_that_hide_in_order_of_precedence() {
        for (style, why) in [
            ("", None),
            ("color:red", None),
            ("display:none", Some("display:none")),
            ("color:red;display:block;display:none", Some("display:none")),
            ("display:nonexistent", Some("display:none")),
            ("visibility:hidden;display:none", Some("display:none")),
            ("visibility:hidden", Some("visibility:hidden")),
            ("opacity:0", Some("opacity:0")),
            ("opacity:.01", Some("opacity:0")),
            ("opacity:0.5", None),
            // Only the first `opacity:` is read.
            ("opacity:1;opacity:0", None),
            ("max-height:0px;overflow:hidden", Some("max size 0")),
            ("max-width:0", Some("max size 0")),
            ("max-width:10px", None),
            ("opacity:0.01;max-height:0", Some("opacity:0")),
            ("position:absolute;left:-9999px", Some("positioned off-screen")),
            ("margin-left:-600px", Some("positioned off-screen")),
            ("left:-10px", None),
            // The first `left:-` is small; a later `top:-` is far.
            ("left:-10px;top:-800px", Some("positioned off-screen")),
            ("text-indent:-10000px", Some("positioned off-screen")),
            ("left:-10px;left:-9999px", None),
            ("top:", None),
            ("é:display:none", Some("display:none")),
        ] {
            assert_eq!(style_hidden(style), why, "{style}");
        }
    }

    #[test]
    fn tiny_and_hidden_images() {
        let f = scan(
            r#"<p>Hi</p><img src="https://t.example/o/abc.gif" width="1" height="1" alt=""><img src=a.png style="display: none"><img src="logo.png" width="120" height="40" alt="Logo">"#,
        );
        assert_eq!(f.images.len(), 3);
        assert_eq!(f.images[0].hidden, vec!["width 0–1", "height 0–1"]);
        assert!(f.images[0].alt_empty);
        assert_eq!(f.images[1].hidden, vec!["display:none"]);
        assert!(f.images[2].hidden.is_empty());
    }

    #[test]
    fn css_sizes_hidden_ancestors_and_backgrounds() {
        let f = scan(
            r#"<div style="visibility:hidden"><span><img src="x"></span></div><img src="y"><img src=z style="width:1px;height:1px;max-width:600px"><td style="background-image: url('https://t.example/bg/123')"></td><style>.a{background:url(https://t.example/css.png)}</style>"#,
        );
        assert_eq!(f.images[0].hidden, vec!["inside a hidden element"]);
        assert!(f.images[1].hidden.is_empty(), "a closed hidden div stops hiding");
        assert_eq!(f.images[2].hidden, vec!["CSS width 0–1", "CSS height 0–1"]);
        assert_eq!(f.backgrounds, vec!["https://t.example/bg/123", "https://t.example/css.png"]);
        assert_eq!(f.hidden_elements, 1);
    }

    #[test]
    fn links_entities_and_skeleton() {
        let a = scan(r#"<a href="https://x.example/r?u=1&amp;t=2">read</a>"#);
        let b = scan(r#"<a href="https://y.example/other">other text</a>"#);
        assert_eq!(a.links, vec!["https://x.example/r?u=1&t=2"]);
        assert_eq!(a.skeleton, b.skeleton, "skeleton ignores values and text");
        assert_ne!(a.skeleton, scan("<p><a href=x>y</a></p>").skeleton);
    }

    #[test]
    fn entities_are_decoded_once_as_a_browser_does() {
        for (raw, text) in [
            ("plain", "plain"),
            ("a&amp;b", "a&b"),
            ("&lt;&gt;&quot;&#39;&#38;", "<>\"'&"),
            ("u=1&amp;amp;t=2", "u=1&amp;t=2"),
            ("&amp;lt;", "&lt;"),
            ("& &x; &amp", "& &x; &amp"),
            ("caf\u{e9}&amp;\u{1f600}", "caf\u{e9}&\u{1f600}"),
            ("&", "&"),
        ] {
            assert_eq!(decode_entities(raw), text, "{raw}");
        }
    }

    #[test]
    fn sizes_read_without_a_float_agree_with_one() {
        let reference = |v: &str| v.trim().trim_end_matches("px").parse::<f64>().is_ok_and(|n| (0.0..=1.0).contains(&n));
        for v in [
            "0",
            "1",
            "2",
            "10",
            "01",
            "0001",
            "000",
            "1px",
            "1pxpx",
            " 1 ",
            "0.5",
            "1.0",
            "1.5",
            "-0",
            "+1",
            "",
            "px",
            "1e0",
            "99999999999999999999",
            "１",
        ] {
            assert_eq!(tiny(v), reference(v), "{v:?}");
        }
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let deep = "<div>".repeat(200_000);
        let f = scan(&deep);
        assert!(f.truncated);
        let unclosed = format!("<img src=\"{}", "a".repeat(1000));
        let f = scan(&unclosed);
        assert_eq!(f.images.len(), 1);
        let _ = scan("<<<<>>>></ <a <img src=>");
    }
}

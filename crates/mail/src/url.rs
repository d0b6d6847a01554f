//! URLs as beacon analysis sees them: host, registrable domain, tracking paths, per-recipient
//! tokens, a template with the tokens blanked (one template × N tokens is a campaign), and
//! redirector targets.

/// A parsed http(s) URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub path: String,
    pub query: String,
}

/// Parses `http://`, `https://` and scheme-relative `//` URLs; anything else is None.
pub fn parse(raw: &str) -> Option<Url> {
    let s = raw.trim();
    let rest =
        if let Some(r) = strip_prefix_ci(s, "https://").or_else(|| strip_prefix_ci(s, "http://")) { r } else { s.strip_prefix("//")? };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let tail = &rest[end..];
    let tail = tail.split('#').next().unwrap_or("");
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    Some(Url { host, path: if path.is_empty() { "/".into() } else { path.to_string() }, query: query.to_string() })
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    (s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p)).then(|| &s[p.len()..])
}

/// Two-label public suffixes common in the mail this tool sees; enough to name the
/// registrable domain without shipping the whole Public Suffix List.
const TWO_LABEL_SUFFIXES: &[&str] = &[
    "co.uk",
    "org.uk",
    "ac.uk",
    "gov.uk",
    "ltd.uk",
    "plc.uk",
    "me.uk",
    "net.uk",
    "sch.uk",
    "nhs.uk",
    "police.uk",
    "parliament.uk",
    "com.au",
    "net.au",
    "org.au",
    "gov.au",
    "co.nz",
    "org.nz",
    "co.jp",
    "ne.jp",
    "or.jp",
    "com.cn",
    "net.cn",
    "org.cn",
    "gov.cn",
    "com.hk",
    "com.tw",
    "com.sg",
    "co.in",
    "co.kr",
    "com.br",
    "co.za",
    "com.mx",
    "com.tr",
    "com.ru",
    "eu.com",
    "co.il",
    "mod.uk",
    "edu.au",
    "ac.nz",
    "govt.nz",
    "ac.jp",
    "go.jp",
    "ac.kr",
    "go.kr",
    "or.kr",
    "ac.in",
    "gov.in",
    "edu.cn",
    "ac.il",
    "gov.il",
    "ac.za",
    "gov.za",
    "edu.sg",
    "gov.sg",
    "gc.ca",
    "gouv.fr",
    "com.ar",
    "com.my",
    "co.id",
    "com.pk",
    "com.ng",
    "com.ua",
    "co.th",
    "com.vn",
    "com.ph",
    "org.za",
    "org.il",
    "net.il",
    "or.at",
    "ac.at",
    "gv.at",
];

/// Whether `s` is one of [`TWO_LABEL_SUFFIXES`]: a set, as every sender, recipient and link
/// host of a corpus is asked (a scan of the list was 4% of `mail`).
fn two_label_suffix(s: &str) -> bool {
    static SET: std::sync::LazyLock<rustc_hash::FxHashSet<&'static str>> =
        std::sync::LazyLock::new(|| TWO_LABEL_SUFFIXES.iter().copied().collect());
    SET.contains(s)
}

/// `mail.news.bbc.co.uk` → `bbc.co.uk`.
pub fn registrable(host: &str) -> &str {
    let host = host.strip_suffix('.').unwrap_or(host);
    let b = host.as_bytes();
    // The last three dots, from the end.
    let mut dots = [usize::MAX; 3];
    let mut n = 0;
    let mut i = b.len();
    while i > 0 && n < 3 {
        i -= 1;
        match b[i] {
            b'.' => {
                dots[n] = i;
                n += 1;
            }
            b':' => return host,
            _ => {}
        }
    }
    // No top-level domain is all digits: that is an IPv4 address (or one inside an IPv6 one).
    if n == 0 || b[dots[0] + 1..].iter().all(u8::is_ascii_digit) {
        return host;
    }
    let start = |k: usize| if k < n { dots[k] + 1 } else { 0 };
    // Two-label suffixes only end in a country code or `com`.
    let last = &host[dots[0] + 1..];
    let two_label = n >= 2 && (last.len() == 2 || last == "com") && two_label_suffix(&host[start(1)..]);
    &host[start(if two_label { 2 } else { 1 })..]
}

/// The label that names the owner: `bbc` in `news.bbc.co.uk`.
pub fn main_label(host: &str) -> &str {
    registrable(host).split('.').next().unwrap_or("")
}

/// Path fragments that tracking pixels and open/click trackers use.
const TRACKING_PATHS: &[&str] = &[
    "/track/open",
    "/track/click",
    "/wf/open",
    "/wf/click",
    "/o/",
    "/open/",
    "/open.",
    "/e/o/",
    "/trk",
    "/pixel",
    "/beacon",
    "/t.gif",
    "/ss/o/",
    "/trace/",
    "/mo/",
    "/imp",
    "/view/",
    "/read/",
    ".php",
    "/ls/click",
    "/e/c/",
    "/r/",
];

/// The tracking-path fragment in `path`, if any.
pub fn tracking_path(path: &str) -> Option<&'static str> {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    let ac = AC
        .get_or_init(|| aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(TRACKING_PATHS).expect("literal patterns"));
    ac.find(path).map(|m| TRACKING_PATHS[m.pattern().as_usize()])
}

/// Query keys whose short values identify a recipient.
const ID_KEYS: &[&str] = &[
    "rid",
    "uid",
    "u",
    "id",
    "e",
    "r",
    "t",
    "m",
    "sid",
    "cid",
    "eid",
    "recipient",
    "subscriber",
    "upn",
    "email",
    "mail",
    "user",
    "tid",
    "k",
    "c",
];

/// A token in a URL and why it was taken for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub why: &'static str,
}

/// The tokens of `url` and its template (tokens and numbers blanked, query keys sorted).
/// `recipients` are the message's recipient addresses, looked for plain, URL-encoded and
/// in base64.
pub fn tokens_and_template(url: &Url, recipients: &[String]) -> (Vec<Token>, String) {
    let found = tokens(url, recipients);
    let template = template(url, &found);
    (found.list, template)
}

/// The tokens found in a URL: those of its path first, then those of its query.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub list: Vec<Token>,
    /// How many of `list` are path segments.
    pub in_path: usize,
}

/// The per-recipient tokens of `url` (see [`tokens_and_template`]). Most links carry none,
/// and their template is never needed: it is made apart, by [`template`].
pub fn tokens(url: &Url, recipients: &[String]) -> Tokens {
    // Recipients are looked for only in values that could hold them: asked once per URL.
    let recipients = Recipients { all: recipients, all_have_at: recipients.iter().all(|r| r.contains('@')) };
    let recipients = &recipients;
    let mut list = Vec::new();
    for seg in url.path.split('/').skip(1).filter(|s| !s.is_empty()) {
        let stem = path_stem(seg).0;
        if let Some(why) = classify(stem, None, recipients) {
            list.push(Token { value: stem.to_string(), why });
        }
    }
    let in_path = list.len();
    for pair in url.query.split('&').filter(|p| !p.is_empty()).take(64) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some(why) = classify(v, Some(k), recipients) {
            list.push(Token { value: v.to_string(), why });
        }
    }
    Tokens { list, in_path }
}

/// A path segment as its stem and its extension, if it is a file name: `abc123.gif` →
/// (`abc123`, `gif`), so that the template keeps the extension (`{t}.gif`).
fn path_stem(seg: &str) -> (&str, Option<&str>) {
    match seg.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && e.len() <= 4 && e.bytes().all(|c| c.is_ascii_alphabetic()) => (s, Some(e)),
        _ => (seg, None),
    }
}

/// The template of `url`: its path segments that are `found` tokens blanked as `{t}`,
/// numbers as `{n}`, and its query keys sorted. A path segment's classification depends
/// only on its text, so a segment is a token here exactly when [`tokens`] found it one.
pub fn template(url: &Url, found: &Tokens) -> String {
    let path_tokens = &found.list[..found.in_path.min(found.list.len())];
    let mut template = String::with_capacity(url.host.len() + url.path.len() + 16);
    template.push_str(&url.host);
    for seg in url.path.split('/').skip(1) {
        template.push('/');
        if seg.is_empty() {
            continue;
        }
        let (stem, ext) = path_stem(seg);
        if path_tokens.iter().any(|t| t.value == stem) {
            template.push_str("{t}");
        } else if stem.bytes().all(|c| c.is_ascii_digit()) {
            template.push_str("{n}");
        } else {
            template.push_str(&stem.to_ascii_lowercase());
        }
        if let Some(e) = ext {
            template.push('.');
            template.push_str(&e.to_ascii_lowercase());
        }
    }
    let mut keys: Vec<&str> =
        url.query.split('&').filter(|p| !p.is_empty()).take(64).map(|pair| pair.split_once('=').map_or(pair, |(k, _)| k)).collect();
    if !keys.is_empty() {
        keys.sort_unstable();
        keys.dedup();
        template.push('?');
        template.push_str(&keys.join("&").to_ascii_lowercase());
    }
    template
}

/// A message's recipient addresses, and whether each holds an `@` (as addresses do).
struct Recipients<'r> {
    all: &'r [String],
    all_have_at: bool,
}

/// Why `value` (a path segment, or the value of query key `key`) is a per-recipient token.
fn classify(value: &str, key: Option<&str>, recipients: &Recipients<'_>) -> Option<&'static str> {
    if value.len() < 4 || value.len() > 512 {
        return None;
    }
    let decoded = percent_decode(value);
    // An address holds an `@`: text without one cannot hold it (most values, checked once).
    let has_at = decoded.as_bytes().contains(&b'@');
    if has_at || !recipients.all_have_at {
        for r in recipients.all {
            if r.len() >= 3 && (has_at || !r.contains('@')) && contains_ci(&decoded, r) {
                return Some("the recipient's address");
            }
        }
    }
    let recipients = recipients.all;
    if value.len() >= 8
        && value.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_' | b'='))
        // Decoded, it is at most three quarters as long: too short to hold any recipient is not decoded.
        && recipients.iter().any(|r| r.len() >= 3 && value.len() * 3 / 4 >= r.len())
        && let Some(b) = base64_decode(value)
        && recipients.iter().any(|r| r.len() >= 3 && b.len() >= r.len() && b.windows(r.len()).any(|w| w.eq_ignore_ascii_case(r.as_bytes())))
    {
        return Some("the recipient's address in base64");
    }
    let alnum = value.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'%' | b'.'));
    if !alnum {
        return None;
    }
    // `mixed` first: it is the cheaper test, and most values fail it.
    if value.len() >= 12 && mixed(value) && entropy(value) >= 3.0 {
        return Some("a high-entropy identifier");
    }
    if let Some(k) = key
        && ID_KEYS.iter().any(|id| id.eq_ignore_ascii_case(k))
        && (4..=64).contains(&value.len())
        && value.bytes().any(|c| c.is_ascii_digit())
    {
        return Some("a short recipient id");
    }
    None
}

/// Letters and digits interleaved within runs (`8f3KzQ1x`), not a slug of words and a number
/// (`uk-politics-56380123`).
fn mixed(v: &str) -> bool {
    let mut changes = 0;
    let (mut upper, mut lower, mut digit) = (false, false, false);
    for run in v.split(['-', '_', '.', '=', '%']) {
        let mut prev: Option<bool> = None;
        for c in run.chars() {
            upper |= c.is_ascii_uppercase();
            lower |= c.is_ascii_lowercase();
            digit |= c.is_ascii_digit();
            let d = c.is_ascii_digit();
            if prev.is_some_and(|p| p != d) {
                changes += 1;
            }
            prev = Some(d);
        }
    }
    changes >= 3 || (upper && lower && digit)
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    // The byte values met are marked in a 256-bit set and visited in byte order (as a walk
    // over the whole count table would, so the sum is the same), not all 256 of them.
    let mut counts = [0u32; 256];
    let mut met = [0u64; 4];
    for b in s.bytes() {
        counts[b as usize] += 1;
        met[(b >> 6) as usize] |= 1 << (b & 63);
    }
    let n = s.len() as f64;
    let mut sum = 0.0;
    for (word, mut bits) in met.into_iter().enumerate() {
        while bits != 0 {
            let b = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let p = counts[b] as f64 / n;
            sum += -p * p.log2();
        }
    }
    sum
}

/// The URL a redirector points at, from a query value (plain, percent-encoded or base64).
pub fn redirect_target(url: &Url) -> Option<Url> {
    for pair in url.query.split('&').take(64) {
        let Some((_, v)) = pair.split_once('=') else { continue };
        let d = percent_decode(v);
        if let Some(u) = parse(&d).filter(|_| d.starts_with("http")) {
            return Some(u);
        }
        if v.len() >= 12
            && let Some(b) = base64_decode(v)
            && let Ok(s) = std::str::from_utf8(&b)
            && s.starts_with("http")
        {
            return parse(s);
        }
    }
    None
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.len() >= needle.len() && hay.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

pub fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') && !s.contains('+') {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = |c: u8| (c as char).to_digit(16);
                match (h(b[i + 1]), h(b[i + 2])) {
                    (Some(x), Some(y)) => {
                        out.push((x * 16 + y) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Decodes standard or URL-safe base64, padded or not; None if it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_domains() {
        let u = parse("HTTPS://user@Img.News.BBC.co.uk:443/a/b.gif?x=1#frag").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str(), u.query.as_str()), ("img.news.bbc.co.uk", "/a/b.gif", "x=1"));
        assert_eq!(registrable(&u.host), "bbc.co.uk");
        assert_eq!(registrable("t.nropnews.com"), "nropnews.com");
        assert_eq!(main_label("mail.nropnews.com"), "nropnews");
        assert!(parse("mailto:a@b").is_none());
        assert!(parse("cid:logo").is_none());
    }

    #[test]
    fn registrable_keeps_addresses_and_short_names_whole() {
        for (host, reg) in [
            ("news.bbc.co.uk.", "bbc.co.uk"),
            ("a.b.c.example.com", "example.com"),
            ("example.com", "example.com"),
            ("localhost", "localhost"),
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:192.0.2.7", "::ffff:192.0.2.7"),
            ("a.b:8080", "a.b:8080"),
            // A `:` before the last three labels is not looked at.
            ("x:y.a.b.example.org", "example.org"),
            ("", ""),
        ] {
            assert_eq!(registrable(host), reg, "{host}");
        }
    }

    #[test]
    fn entropy_in_bits_per_character() {
        assert_eq!(entropy("aaaa"), 0.0);
        assert_eq!(entropy("abcd"), 2.0);
        assert_eq!(entropy("aabb"), 1.0);
        assert_eq!(entropy(""), 0.0);
        assert!((entropy("8f3KzQ1xLm9") - 11f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn tokens_are_found_and_blanked() {
        let rcpt = vec!["jane.doe@parliament.example".to_string()];
        let u = parse("https://t.nropnews.com/o/8f3KzQ1x9LmP2vW7/pixel.gif?rid=a81f&n=2").unwrap();
        let (t, tpl) = tokens_and_template(&u, &rcpt);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(tpl, "t.nropnews.com/o/{t}/pixel.gif?n&rid");
        let other = parse("https://t.nropnews.com/o/Zq81LmV0xR4kT6yB/pixel.gif?rid=77c2&n=2").unwrap();
        assert_eq!(tokens_and_template(&other, &rcpt).1, tpl);
        // The recipient, plain and in base64.
        let u = parse("https://x.example/open?e=jane.doe%40parliament.example").unwrap();
        assert_eq!(tokens_and_template(&u, &rcpt).0[0].why, "the recipient's address");
        let u = parse("https://x.example/open/amFuZS5kb2VAcGFybGlhbWVudC5leGFtcGxl").unwrap();
        assert_eq!(tokens_and_template(&u, &rcpt).0[0].why, "the recipient's address in base64");
        // Ordinary words are not tokens.
        let u = parse("https://www.bbc.co.uk/news/uk-politics-56380123").unwrap();
        let (t, tpl) = tokens_and_template(&u, &rcpt);
        assert!(t.is_empty(), "{t:?}");
        assert_eq!(tpl, "www.bbc.co.uk/news/uk-politics-56380123");
    }

    #[test]
    fn a_query_token_does_not_blank_a_path_segment_of_the_same_text() {
        let rcpt = vec!["jane.doe@parliament.example".to_string()];
        // `1234a` is a short recipient id as the value of `rid`, but not as a path segment.
        let u = parse("https://x.example/1234a/view?rid=1234a").unwrap();
        let found = tokens(&u, &rcpt);
        assert_eq!((found.list.len(), found.in_path), (1, 0), "{:?}", found.list);
        assert_eq!(template(&u, &found), "x.example/1234a/view?rid");
    }

    #[test]
    fn tracking_paths_and_redirects() {
        assert_eq!(tracking_path("/wf/open"), Some("/wf/open"));
        assert_eq!(tracking_path("/news/article"), None);
        let u = parse("https://r.example/c?url=https%3A%2F%2Fevil.example%2Flogin&x=1").unwrap();
        assert_eq!(redirect_target(&u).unwrap().host, "evil.example");
        let u = parse("https://r.example/c?d=aHR0cHM6Ly9ldmlsLmV4YW1wbGUvYQ").unwrap();
        assert_eq!(redirect_target(&u).unwrap().host, "evil.example");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}

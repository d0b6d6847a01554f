//! Domain look-alikes: punycode (`xn--`) decoding, a confusable-character skeleton, edit
//! distance, and the built-in lists (news outlets, free webmail, mass-mailing services,
//! read-receipt trackers) under `crates/mail/data/`.

use std::collections::HashSet;

use xxhash_rust::xxh3::Xxh3Builder;

/// A set of domains hashed with xxh3 (lookups happen several times per message).
pub type DomainSet = HashSet<String, Xxh3Builder>;

use crate::url::{main_label, registrable};

/// A name and the domains that are really its own.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    /// Registrable domains, lower-cased.
    pub domains: Vec<String>,
    /// Brand labels compared with look-alike domains (`bbc`, `nprnews`).
    pub labels: Vec<String>,
    /// From the user's `--protected` list (journalists, officials) rather than built in.
    pub user_supplied: bool,
    /// The name's words as confusable skeletons, without a leading "the", and whether it had one.
    pub name_words: Vec<String>,
    pub name_has_the: bool,
    /// Skeletons of `labels`.
    pub label_skeletons: Vec<String>,
}

impl Identity {
    pub fn new(name: String, domains: Vec<String>, mut labels: Vec<String>, user_supplied: bool) -> Identity {
        labels.sort();
        labels.dedup();
        let mut name_words: Vec<String> =
            skeleton(&name).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect();
        let name_has_the = name_words.first().is_some_and(|w| w == "the");
        if name_has_the {
            name_words.remove(0);
        }
        let label_skeletons = labels.iter().map(|l| skeleton(l)).collect();
        Identity { name, domains, labels, user_supplied, name_words, name_has_the, label_skeletons }
    }
}

/// The lists analysers compare against.
#[derive(Clone, Debug)]
pub struct Lists {
    pub identities: Vec<Identity>,
    pub freemail: DomainSet,
    pub bulk_mailers: DomainSet,
    pub read_receipt_hosts: DomainSet,
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

impl Lists {
    /// The built-in lists.
    pub fn builtin() -> Lists {
        let mut identities = Vec::new();
        for l in lines(include_str!("../data/outlets.tsv")) {
            let mut cols = l.split('\t');
            let name = cols.next().unwrap_or("").to_string();
            let domains: Vec<String> = cols.next().unwrap_or("").split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
            let mut labels: Vec<String> = cols.next().unwrap_or("").split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
            labels.extend(domains.iter().map(|d| main_label(d).to_string()));
            identities.push(Identity::new(name, domains, labels, false));
        }
        let set = |t: &str| lines(t).map(str::to_string).collect::<DomainSet>();
        Lists {
            identities,
            freemail: set(include_str!("../data/freemail.txt")),
            bulk_mailers: set(include_str!("../data/bulk-mailers.txt")),
            read_receipt_hosts: set(include_str!("../data/read-receipt-hosts.txt")),
        }
    }

    pub fn is_freemail(&self, domain: &str) -> bool {
        self.freemail.contains(domain) || self.freemail.contains(registrable(domain))
    }

    pub fn is_bulk_mailer(&self, host: &str) -> bool {
        self.bulk_mailers.contains(registrable(host))
    }

    pub fn is_read_receipt_host(&self, host: &str) -> bool {
        self.read_receipt_hosts.contains(registrable(host))
    }

    /// Adds the user's protected identities: CSV lines `name,domain[;domain…]` (a header
    /// line naming `name` is skipped). Returns the number added, or the line that is wrong.
    pub fn add_protected(&mut self, text: &str) -> Result<usize, String> {
        let mut n = 0;
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') || (i == 0 && l.to_ascii_lowercase().starts_with("name")) {
                continue;
            }
            let (name, rest) = l.split_once(',').unwrap_or((l, ""));
            let name = name.trim().trim_matches('"').to_string();
            if name.chars().filter(|c| c.is_alphanumeric()).count() < 3 {
                return Err(format!("line {}: a protected name needs at least 3 letters", i + 1));
            }
            let domains: Vec<String> = rest
                .split([';', ',', ' '])
                .map(|d| d.trim().trim_matches('"').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .map(|d| registrable(d.rsplit('@').next().unwrap_or(&d)).to_string())
                .collect();
            let labels = domains.iter().map(|d| main_label(d).to_string()).collect();
            self.identities.push(Identity::new(name, domains, labels, true));
            n += 1;
        }
        Ok(n)
    }
}

/// Damerau–Levenshtein distance (insertions, deletions, substitutions and transpositions of
/// adjacent characters, unrestricted), or `max + 1` when it is larger than `max`.
pub fn edit_distance(a: &str, b: &str, max: usize) -> usize {
    let a: Vec<char> = a.chars().take(128).collect();
    let b: Vec<char> = b.chars().take(128).collect();
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let (n, m) = (a.len(), b.len());
    let inf = n + m;
    let w = m + 2;
    let mut d = vec![0usize; (n + 2) * w];
    d[0] = inf;
    for i in 0..=n {
        d[(i + 1) * w] = inf;
        d[(i + 1) * w + 1] = i;
    }
    for j in 0..=m {
        d[j + 1] = inf;
        d[w + j + 1] = j;
    }
    // Last row each character was seen in; domain labels have few distinct characters.
    let mut last_row: Vec<(char, usize)> = Vec::with_capacity(32);
    for i in 1..=n {
        let mut last_col = 0;
        for j in 1..=m {
            let i1 = last_row.iter().find(|(c, _)| *c == b[j - 1]).map(|(_, r)| *r).unwrap_or(0);
            let j1 = last_col;
            let cost = if a[i - 1] == b[j - 1] {
                last_col = j;
                0
            } else {
                1
            };
            let v = (d[i * w + j] + cost)
                .min(d[(i + 1) * w + j] + 1)
                .min(d[i * w + j + 1] + 1)
                .min(d[i1 * w + j1] + (i - i1 - 1) + 1 + (j - j1 - 1));
            d[(i + 1) * w + j + 1] = v;
        }
        match last_row.iter_mut().find(|(c, _)| *c == a[i - 1]) {
            Some(e) => e.1 = i,
            None => last_row.push((a[i - 1], i)),
        }
    }
    d[(n + 1) * w + m + 1].min(max + 1)
}

/// Decodes each `xn--` label of a domain (RFC 3492); labels that fail stay as they are.
pub fn decode_punycode(domain: &str) -> std::borrow::Cow<'_, str> {
    if !domain.contains("xn--") && !domain.contains("XN--") {
        return std::borrow::Cow::Borrowed(domain);
    }
    std::borrow::Cow::Owned(domain
        .split('.')
        .map(|l| match l.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("xn--") => punycode(&l[4..]).unwrap_or_else(|| l.to_string()),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("."))
}

fn punycode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    let (basic, ext) = match input.rfind('-') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => ("", input),
    };
    if !basic.is_ascii() || input.len() > 63 {
        return None;
    }
    let mut out: Vec<char> = basic.chars().collect();
    let (mut n, mut i, mut bias) = (128u32, 0u32, 72u32);
    let mut it = ext.bytes().peekable();
    while it.peek().is_some() {
        let old_i = i;
        let mut w = 1u32;
        let mut k = BASE;
        loop {
            let c = it.next()?;
            let digit = match c {
                b'a'..=b'z' => c - b'a',
                b'A'..=b'Z' => c - b'A',
                b'0'..=b'9' => c - b'0' + 26,
                _ => return None,
            } as u32;
            i = i.checked_add(digit.checked_mul(w)?)?;
            let t = if k <= bias { 1 } else if k >= bias + 26 { 26 } else { k - bias };
            if digit < t {
                break;
            }
            w = w.checked_mul(BASE - t)?;
            k += BASE;
        }
        let len = out.len() as u32 + 1;
        // Bias adaptation (RFC 3492 §6.1).
        let mut delta = if old_i == 0 { (i - old_i) / 700 } else { (i - old_i) / 2 };
        delta += delta / len;
        let mut kk = 0;
        while delta > ((BASE - 1) * 26) / 2 {
            delta /= BASE - 1;
            kk += BASE;
        }
        bias = kk + (BASE * delta) / (delta + 38);
        n = n.checked_add(i / len)?;
        i %= len;
        out.insert(i as usize, char::from_u32(n)?);
        i += 1;
        if out.len() > 63 {
            return None;
        }
    }
    Some(out.into_iter().collect())
}

/// Maps characters that look like Latin letters (Cyrillic, Greek, digits, accents) to them,
/// so `раураl` and `paypal` compare equal. Lower-cases.
pub fn skeleton(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let m = match c {
            'а' | 'α' | 'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ɑ' => 'a',
            'в' | 'ь' | 'β' => 'b',
            'с' | 'ϲ' | 'ç' => 'c',
            'ԁ' | 'ɗ' => 'd',
            'е' | 'ε' | 'è' | 'é' | 'ê' | 'ë' | 'ё' => 'e',
            'ғ' => 'f',
            'ɡ' | 'ց' => 'g',
            'һ' | 'н' => 'h',
            'і' | 'ι' | 'ı' | 'ì' | 'í' | 'î' | 'ï' | 'l' | '1' | '|' | 'ӏ' => 'l',
            'ј' | 'ϳ' => 'j',
            'κ' | 'к' => 'k',
            'м' => 'm',
            'ո' | 'п' | 'η' => 'n',
            'о' | 'ο' | 'ө' | 'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | '0' | 'σ' => 'o',
            'р' | 'ρ' => 'p',
            'ԛ' => 'q',
            'г' => 'r',
            'ѕ' | '5' => 's',
            'т' | 'τ' => 't',
            'υ' | 'ս' | 'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ν' | 'ѵ' => 'v',
            'ѡ' | 'ω' | 'ԝ' => 'w',
            'х' | 'χ' => 'x',
            'у' | 'γ' | 'ý' | 'ÿ' => 'y',
            'ᴢ' => 'z',
            other => other,
        };
        out.push(m);
    }
    // `i` and `l` and `1` look alike; so do `rn` and `m`, `vv` and `w`.
    out.replace('i', "l").replace("rn", "m").replace("vv", "w")
}

/// Whether `label` (a domain's main label) looks like brand label `brand` without being it:
/// the distance allowed grows with length; short brands only match exactly-embedded forms.
pub fn looks_like(label: &str, brand: &str) -> Option<&'static str> {
    looks_like_skeleton(label, &skeleton(label), brand, &skeleton(brand))
}

/// [`looks_like`] with both skeletons already computed.
pub fn looks_like_skeleton(label: &str, sl: &str, brand: &str, sb: &str) -> Option<&'static str> {
    if label == brand || brand.len() < 3 {
        return None;
    }
    if label.len().abs_diff(brand.len()) > 12 {
        return None;
    }
    if sl == sb {
        return Some("uses look-alike characters");
    }
    let max = if brand.len() >= 7 { 2 } else if brand.len() >= 5 { 1 } else { 0 };
    if max > 0 && (edit_distance(label, brand, max) <= max || edit_distance(sl, sb, max) <= max) {
        return Some("is a small edit away");
    }
    if brand.len() >= 5 && (label.starts_with(brand) || label.ends_with(brand)) {
        let extra = label.len() - brand.len();
        if (1..=12).contains(&extra) {
            return Some("adds words to the name");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("nropnews", "nprnews", 2), 2);
        assert_eq!(edit_distance("ca", "abc", 3), 2, "transposition then insertion");
        assert_eq!(edit_distance("guardain", "guardian", 2), 1, "swap");
        assert_eq!(edit_distance("abc", "xyzxyz", 2), 3);
    }

    #[test]
    fn punycode_decodes() {
        assert_eq!(decode_punycode("xn--80ak6aa92e.com"), "аррӏе.com");
        assert_eq!(decode_punycode("xn--bcher-kva.example"), "bücher.example");
        assert_eq!(decode_punycode("xn--zz!.com"), "xn--zz!.com");
        assert_eq!(skeleton("аррӏе"), "apple".replace('l', "l"));
    }

    #[test]
    fn look_alikes() {
        assert_eq!(looks_like("nropnews", "nprnews"), Some("is a small edit away"));
        assert_eq!(looks_like("theguardlan", "theguardian"), Some("uses look-alike characters"));
        assert_eq!(looks_like("bbc", "bbc"), None);
        assert_eq!(looks_like("abc", "bbc"), None, "three-letter brands only match by characters");
        assert_eq!(looks_like("reuters-desk", "reuters"), Some("adds words to the name"));
        assert_eq!(looks_like("gmail", "guardian"), None);
    }

    #[test]
    fn lists_load() {
        let mut l = Lists::builtin();
        assert!(l.is_freemail("gmail.com"));
        assert!(l.is_bulk_mailer("o1.ptr1234.sendgrid.net"));
        assert!(l.identities.iter().any(|i| i.labels.contains(&"nprnews".to_string())));
        assert_eq!(l.add_protected("name,domains\nAlex Reporter,alex@reuters.com;reuters.com\n").unwrap(), 1);
        assert!(l.add_protected("x,\n").is_err());
    }
}

//! Domain look-alikes and what is established: punycode (`xn--`) decoding, a
//! confusable-character skeleton, an edit distance weighted for what look-alike registrations
//! do, and the built-in lists under `crates/mail/data/` (news outlets and their domains,
//! restricted suffixes, widely used domains, free webmail, mass-mailing services,
//! read-receipt trackers).

use std::collections::HashSet;

/// A set of domains hashed with FxHash (lookups happen several times per message, and the
/// sets hold only the built-in and user-supplied lists: no input is ever inserted).
pub type DomainSet = HashSet<String, rustc_hash::FxBuildHasher>;
/// A map keyed by the built-in and user-supplied lists (as [`DomainSet`]).
pub type ListMap<V> = std::collections::HashMap<String, V, rustc_hash::FxBuildHasher>;

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
    /// Per label: an everyday word (see `data/outlets.tsv`), matched more strictly.
    pub ordinary: Vec<bool>,
    /// Further domains its mail's images, links and sending hosts use; its own too.
    pub infrastructure: Vec<String>,
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
        let ordinary = vec![false; labels.len()];
        Identity { name, domains, labels, user_supplied, name_words, name_has_the, label_skeletons, ordinary, infrastructure: Vec::new() }
    }

    /// Whether `reg` (a registrable domain) is this identity's own or its infrastructure's.
    pub fn owns(&self, reg: &str) -> bool {
        self.domains.iter().chain(&self.infrastructure).any(|d| d == reg)
    }
}

/// Why a domain is established (not a fresh look-alike registration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Established {
    /// A known outlet's or protected identity's own domain (index into the identities).
    Own(usize),
    /// On the list of widely used domains.
    Popular,
    /// Registered under a restricted suffix (`edu`, `ac.uk`…).
    Restricted(String),
}

impl Established {
    pub fn why(&self, lists: &Lists) -> String {
        match self {
            Established::Own(i) => format!("{}'s own domain", lists.identities[*i].name),
            Established::Popular => "a widely used domain".into(),
            Established::Restricted(suffix) => {
                format!("registered under .{suffix}, where registration is restricted to vetted institutions")
            }
        }
    }
}

/// The lists analysers compare against.
#[derive(Clone, Debug)]
pub struct Lists {
    pub identities: Vec<Identity>,
    pub freemail: DomainSet,
    pub bulk_mailers: DomainSet,
    pub read_receipt_hosts: DomainSet,
    /// Widely used registrable domains (`data/popular-domains.txt`).
    pub popular: DomainSet,
    /// Suffixes only vetted institutions can register under (`data/restricted-suffixes.txt`).
    pub restricted_suffixes: Vec<String>,
    /// Indexes over `identities` (see [`Lists::reindex`]): owner by domain, identities by
    /// exact brand label, and by the first word of their name.
    pub owners: ListMap<usize>,
    pub by_label: ListMap<Vec<usize>>,
    pub by_first_word: ListMap<Vec<usize>>,
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
            let list = |c: Option<&str>| -> Vec<String> {
                c.unwrap_or("").split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect()
            };
            let domains = list(cols.next());
            let raw_labels = list(cols.next());
            let infrastructure = list(cols.next());
            let ordinary: Vec<String> = raw_labels.iter().filter_map(|l| l.strip_prefix('~')).map(str::to_string).collect();
            let mut labels: Vec<String> = raw_labels.iter().map(|l| l.trim_start_matches('~').to_string()).collect();
            labels.extend(domains.iter().map(|d| main_label(d).to_string()));
            // A news word on its own (`news.co.uk`, `news.cn`) names no outlet.
            labels.retain(|l| !is_news_word(l));
            let mut id = Identity::new(name, domains, labels, false);
            id.ordinary = id.labels.iter().map(|l| ordinary.contains(l)).collect();
            id.infrastructure = infrastructure;
            identities.push(id);
        }
        let set = |t: &str| lines(t).map(str::to_string).collect::<DomainSet>();
        Lists {
            identities,
            freemail: set(include_str!("../data/freemail.txt")),
            bulk_mailers: set(include_str!("../data/bulk-mailers.txt")),
            read_receipt_hosts: set(include_str!("../data/read-receipt-hosts.txt")),
            popular: set(include_str!("../data/popular-domains.txt")),
            restricted_suffixes: lines(include_str!("../data/restricted-suffixes.txt")).map(str::to_string).collect(),
            owners: Default::default(),
            by_label: Default::default(),
            by_first_word: Default::default(),
        }
        .reindexed()
    }

    fn reindexed(mut self) -> Lists {
        self.reindex();
        self
    }

    /// Rebuilds the indexes over `identities` (after adding to them by hand).
    pub fn reindex(&mut self) {
        self.owners.clear();
        self.by_label.clear();
        self.by_first_word.clear();
        for (i, id) in self.identities.iter().enumerate() {
            for d in id.domains.iter().chain(&id.infrastructure) {
                self.owners.entry(d.clone()).or_insert(i);
            }
            for l in &id.labels {
                self.by_label.entry(l.clone()).or_default().push(i);
            }
            if let Some(w) = id.name_words.first() {
                self.by_first_word.entry(w.clone()).or_default().push(i);
            }
        }
    }

    /// The identity whose own (or infrastructure) domain `reg` is.
    pub fn owner_of(&self, reg: &str) -> Option<usize> {
        if self.owners.is_empty() {
            return self.identities.iter().position(|id| id.owns(reg));
        }
        self.owners.get(reg).copied()
    }

    /// Whether a registrable domain is established, and why: a known identity's own domain,
    /// a widely used one, or one under a restricted suffix.
    pub fn established(&self, reg: &str) -> Option<Established> {
        if reg.is_empty() {
            return None;
        }
        if let Some(i) = self.owner_of(reg) {
            return Some(Established::Own(i));
        }
        if self.popular.contains(reg) {
            return Some(Established::Popular);
        }
        self.restricted_suffix(reg).map(|s| Established::Restricted(s.to_string()))
    }

    /// Whether `reg` is established ([`Lists::established`]), without saying why.
    pub fn is_established(&self, reg: &str) -> bool {
        !reg.is_empty() && (self.owner_of(reg).is_some() || self.popular.contains(reg) || self.restricted_suffix(reg).is_some())
    }

    /// The restricted suffix (`gov.uk`, `edu`…) `reg` is registered under, if any.
    fn restricted_suffix(&self, reg: &str) -> Option<&str> {
        self.restricted_suffixes
            .iter()
            .find(|s| reg.len() > s.len() + 1 && reg.ends_with(s.as_str()) && reg.as_bytes()[reg.len() - s.len() - 1] == b'.')
            .map(String::as_str)
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
        self.reindex();
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
    std::borrow::Cow::Owned(
        domain
            .split('.')
            .map(|l| match l.get(..4) {
                Some(p) if p.eq_ignore_ascii_case("xn--") => punycode(&l[4..]).unwrap_or_else(|| l.to_string()),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("."),
    )
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
            let t = if k <= bias {
                1
            } else if k >= bias + 26 {
                26
            } else {
                k - bias
            };
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
    if !s.is_ascii() {
        return skeleton_of_chars(s);
    }
    // Most names and labels are ASCII: the same mapping, a byte at a time.
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes() {
        let m = match c.to_ascii_lowercase() {
            b'i' | b'1' | b'|' => b'l',
            b'0' => b'o',
            b'5' => b's',
            other => other,
        };
        match (m, out.last_mut()) {
            (b'n', Some(last @ b'r')) => *last = b'm',
            (b'v', Some(last @ b'v')) => *last = b'w',
            _ => out.push(m),
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// [`skeleton`] for any text, a character at a time.
fn skeleton_of_chars(s: &str) -> String {
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
            // `i` and `l` and `1` look alike.
            'i' => 'l',
            other => other,
        };
        // So do `rn` and `m`, `vv` and `w` (each pair folded once, from the left).
        match (m, out.as_bytes().last()) {
            ('n', Some(b'r')) => {
                out.pop();
                out.push('m');
            }
            ('v', Some(b'v')) => {
                out.pop();
                out.push('w');
            }
            _ => out.push(m),
        }
    }
    out
}

/// How a domain label imitates a brand label, in the ways attackers register look-alikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookAlike {
    /// The same characters after confusables are mapped (`rn`→`m`, `1`→`l`, Cyrillic `а`→`a`).
    Confusable,
    /// Two adjacent letters swapped (`reutres`), perhaps with a doubled letter.
    Transposition,
    /// A small misspelling: letters dropped, added or swapped for a neighbouring key, costing
    /// at most what the brand's length allows (see [`weighted_distance`]).
    Misspelling,
    /// The brand with a hyphen inserted (`bbc-news` for `bbcnews`).
    Hyphenated,
    /// The brand with news words added (`reuters-news`, `bbc-news`, `thebbc`, `newsbbc`).
    NewsWords,
    /// The brand with other words added (`reuters-jobs`, `bloombergx`): weaker, since owners
    /// of a distinctive name register such domains for themselves too.
    AddedWords,
    /// The brand's exact name on a domain that is not its own (`bbc.co`, `reuters.info`).
    OtherDomain,
}

impl LookAlike {
    /// How the look-alike is explained in a signal.
    pub fn how(self) -> &'static str {
        match self {
            LookAlike::Confusable => "uses look-alike characters",
            LookAlike::Transposition => "swaps adjacent letters",
            LookAlike::Misspelling => "is a small misspelling",
            LookAlike::Hyphenated => "adds a hyphen",
            LookAlike::NewsWords => "adds news words to the name",
            LookAlike::AddedWords => "adds words to the name",
            LookAlike::OtherDomain => "the same name on another domain",
        }
    }

    /// A small edit could be a coincidence between two real names (`rutgers`/`reuters`);
    /// characters, added words and the exact name cannot.
    pub fn is_edit(self) -> bool {
        matches!(self, LookAlike::Transposition | LookAlike::Misspelling)
    }

    /// Which explanation to give when several labels match: the most telling first.
    pub fn rank(self) -> u8 {
        match self {
            LookAlike::Confusable => 0,
            LookAlike::Transposition => 1,
            LookAlike::Hyphenated => 2,
            LookAlike::NewsWords => 3,
            LookAlike::Misspelling => 4,
            LookAlike::AddedWords => 5,
            LookAlike::OtherDomain => 6,
        }
    }

    /// How much it weighs as impersonation: 3 for what only an imitator registers (look-alike
    /// characters, a swap, a hyphen, news words); 2 where a real owner of a similar name is
    /// plausible (a misspelling, other words, the exact name on another TLD).
    pub fn score(self) -> u8 {
        match self {
            LookAlike::Confusable | LookAlike::Transposition | LookAlike::Hyphenated | LookAlike::NewsWords => 3,
            LookAlike::Misspelling | LookAlike::AddedWords | LookAlike::OtherDomain => 2,
        }
    }
}

/// Words attackers add to an outlet's name to make a look-alike (`reuters-news`, `bbcnews-uk`).
pub const NEWS_WORDS: &[&str] = &[
    "news",
    "newsroom",
    "press",
    "media",
    "daily",
    "today",
    "online",
    "world",
    "global",
    "live",
    "tv",
    "radio",
    "report",
    "reports",
    "journal",
    "desk",
    "editor",
    "editorial",
    "editors",
    "wire",
    "alert",
    "alerts",
    "briefing",
    "briefings",
    "digest",
    "weekly",
    "headlines",
    "breaking",
    "politics",
    "international",
    "intl",
    "uk",
    "us",
    "usa",
    "eu",
    "europe",
    "asia",
    "the",
    "mail",
    "post",
    "insider",
    "review",
    "update",
    "updates",
    "info",
    "official",
    "team",
    "staff",
    "newsletter",
    "newsletters",
    "letters",
    "hq",
    "group",
];

fn is_news_word(w: &str) -> bool {
    NEWS_WORDS.contains(&w)
}

/// Whether `rest` (what remains of a label once the brand is taken off) is only news words,
/// perhaps separated by hyphens (`-news`, `news-uk`, `newsdaily`).
fn only_news_words(rest: &str) -> bool {
    let parts: Vec<&str> = rest.split('-').filter(|p| !p.is_empty()).collect();
    !parts.is_empty() && parts.iter().all(|p| is_news_word(p) || split_news_words(p))
}

/// `newsdaily` → true (two news words run together); at most three.
fn split_news_words(s: &str) -> bool {
    fn go(s: &str, depth: usize) -> bool {
        if s.is_empty() {
            return true;
        }
        depth < 3 && NEWS_WORDS.iter().any(|w| s.starts_with(w) && go(&s[w.len()..], depth + 1))
    }
    go(s, 0)
}

/// QWERTY keys next to each other: a slip of the finger, the substitution typosquatters use.
fn neighbours(a: char, b: char) -> bool {
    // Row and column + 1 of each key by ASCII code (0: not a key); looked up in the edit
    // distance's inner loop.
    const KEYS: [(i8, i8); 128] = {
        const ROWS: [&[u8]; 4] = [b"1234567890", b"qwertyuiop", b"asdfghjkl", b"zxcvbnm"];
        let mut t = [(0i8, 0i8); 128];
        let mut r = 0;
        while r < ROWS.len() {
            let mut x = 0;
            while x < ROWS[r].len() {
                t[ROWS[r][x] as usize] = (r as i8, x as i8 + 1);
                x += 1;
            }
            r += 1;
        }
        t
    };
    let pos = |c: char| match KEYS.get(c as usize) {
        Some(&(r, x)) if x > 0 => Some((r, x)),
        _ => None,
    };
    match (pos(a), pos(b)) {
        (Some((ra, xa)), Some((rb, xb))) => (ra - rb).abs() <= 1 && (xa - xb).abs() <= 1 && (ra != rb || xa != xb),
        _ => false,
    }
}

/// An edit distance weighted for what look-alike registrations do, in half-units: swapping
/// two adjacent letters costs 1, doubling or undoubling a letter 1, dropping or adding any
/// other letter 2, a neighbouring key 2, any other substitution 4. Compare skeletons (see
/// [`skeleton`]) so confusable characters cost nothing. Returns `max + 1` when larger than
/// `max`. Transpositions are unrestricted (Damerau), so `nprnews`→`nropnews` (a swap and an
/// added letter) costs 3, while `reuters`→`rutgers` costs 4 and `nytimes`→`latimes` 8.
pub fn weighted_distance(a: &str, b: &str, max: usize) -> usize {
    if letters_apart(a, b) > max {
        return max + 1;
    }
    distance_table(a, b, max)
}

/// [`weighted_distance`] by its table (Damerau with weights), whatever the letters.
fn distance_table(a: &str, b: &str, max: usize) -> usize {
    let a: Vec<char> = a.chars().take(128).collect();
    let b: Vec<char> = b.chars().take(128).collect();
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let (n, m) = (a.len(), b.len());
    let big = 4 * (n + m) + 8;
    let w = m + 2;
    let mut d = vec![0usize; (n + 2) * w];
    // Cost of dropping a[i] (the label has a letter the brand does not) and of adding b[j].
    let del = |i: usize| if (i > 0 && a[i - 1] == a[i]) || (i + 1 < n && a[i + 1] == a[i]) { 1 } else { 2 };
    let ins = |j: usize| if (j > 0 && b[j - 1] == b[j]) || (j + 1 < m && b[j + 1] == b[j]) { 1 } else { 2 };
    d[0] = big;
    for i in 0..=n {
        d[(i + 1) * w] = big;
    }
    for j in 0..=m {
        d[j + 1] = big;
    }
    d[w + 1] = 0;
    for i in 1..=n {
        d[(i + 1) * w + 1] = d[i * w + 1] + del(i - 1);
    }
    for j in 1..=m {
        d[w + j + 1] = d[w + j] + ins(j - 1);
    }
    let mut last_row: Vec<(char, usize)> = Vec::with_capacity(32);
    for i in 1..=n {
        let mut last_col = 0;
        let mut row_min = big;
        for j in 1..=m {
            let i1 = last_row.iter().find(|(c, _)| *c == b[j - 1]).map(|(_, r)| *r).unwrap_or(0);
            let j1 = last_col;
            let sub = if a[i - 1] == b[j - 1] {
                last_col = j;
                0
            } else if neighbours(a[i - 1], b[j - 1]) {
                2
            } else {
                4
            };
            let mut v = (d[i * w + j] + sub).min(d[(i + 1) * w + j] + ins(j - 1)).min(d[i * w + j + 1] + del(i - 1));
            if i1 > 0 && j1 > 0 {
                let dels: usize = (i1..i - 1).map(&del).sum();
                let inss: usize = (j1..j - 1).map(&ins).sum();
                v = v.min(d[i1 * w + j1] + dels + 1 + inss);
            }
            d[(i + 1) * w + j + 1] = v;
            row_min = row_min.min(v);
        }
        if row_min > max + 8 {
            return max + 1;
        }
        match last_row.iter_mut().find(|(c, _)| *c == a[i - 1]) {
            Some(e) => e.1 = i,
            None => last_row.push((a[i - 1], i)),
        }
    }
    d[(n + 1) * w + m + 1].min(max + 1)
}

/// A lower bound of [`weighted_distance`] worked out without it, so that most pairs of
/// labels, far apart, cost a count rather than the table: letters of one that the other
/// lacks (as multisets, every letter beyond ASCII counted as one) must each be dropped,
/// added or replaced, and every such edit costs at least one half-unit and mends at most
/// one letter on each side. Reads the same first 128 characters as the distance.
fn letters_apart(a: &str, b: &str) -> usize {
    let mut count = [0i16; 129];
    let slot = |c: char| if c.is_ascii() { c as usize } else { 128 };
    for c in a.chars().take(128) {
        count[slot(c)] += 1;
    }
    for c in b.chars().take(128) {
        count[slot(c)] -= 1;
    }
    let (mut only_a, mut only_b) = (0usize, 0usize);
    for n in count {
        if n > 0 {
            only_a += n as usize;
        } else {
            only_b += n.unsigned_abs() as usize;
        }
    }
    only_a.max(only_b)
}

/// The weighted distance a brand of this length allows (half-units): 1.5 edits from 7
/// letters, 1 from 5, a swap at 4, none below.
fn allowance(brand_len: usize) -> usize {
    match brand_len {
        0..=3 => 0,
        4 => 1,
        5 | 6 => 2,
        _ => 3,
    }
}

/// Whether `label` (a domain's registrable label) looks like brand label `brand` without
/// being it. See [`looks_like_skeleton`].
pub fn looks_like(label: &str, brand: &str) -> Option<&'static str> {
    looks_like_skeleton(label, &skeleton(label), brand, &skeleton(brand), false).map(LookAlike::how)
}

/// How `label` imitates `brand` (skeletons `sl`, `sb` precomputed), if it does. An
/// `ordinary` brand is an everyday word (`guardian`, `independent`, `times`): other owners
/// of the word and its misspellings are common, so only look-alike characters, a swap, or
/// news words added (`guardian-news`) count for it. The exact name (another TLD) is left
/// to the caller, which knows the whole domain.
pub fn looks_like_skeleton(label: &str, sl: &str, brand: &str, sb: &str, ordinary: bool) -> Option<LookAlike> {
    looks_like_forms(&LabelForms::new(label, sl), brand, sb, ordinary)
}

/// What [`looks_like_forms`] needs of a label whatever the brand, worked out once per label
/// rather than once per brand compared.
pub struct LabelForms<'a> {
    label: &'a str,
    sl: &'a str,
    /// Per form (as written, skeleton): without hyphens, and its affix splits.
    hyphenless: [String; 2],
    splits: [Vec<(&'a str, &'a str)>; 2],
}

impl<'a> LabelForms<'a> {
    pub fn new(label: &'a str, sl: &'a str) -> LabelForms<'a> {
        let hyphenless = |x: &str| x.chars().filter(|c| *c != '-').collect::<String>();
        LabelForms { label, sl, hyphenless: [hyphenless(label), hyphenless(sl)], splits: [affix_splits(label), affix_splits(sl)] }
    }
}

/// [`looks_like_skeleton`] with the label's forms precomputed.
pub fn looks_like_forms(f: &LabelForms, brand: &str, sb: &str, ordinary: bool) -> Option<LookAlike> {
    let (label, sl) = (f.label, f.sl);
    if label == brand || brand.len() < 3 || label.len() > brand.len() + 24 {
        return None;
    }
    if sl == sb {
        return Some(LookAlike::Confusable);
    }
    // Compared both as written and as skeletons: the skeleton catches confusables, the
    // written form keeps brands whose letters fold (`nprnews` holds `rn`, folded to `m`).
    let brands = [brand, sb];
    if f.hyphenless.iter().zip(brands).any(|(h, b)| h == b) {
        return Some(LookAlike::Hyphenated);
    }
    // Words added before or after the brand (or a look-alike of it), with or without hyphens.
    let distinctive = !ordinary && sb.len() >= 5;
    let allow = allowance(brand.chars().count());
    for (splits, b) in f.splits.iter().zip(brands) {
        for &(core, rest) in splits {
            // Every dropped or added letter costs at least ½: lengths further apart cannot be near.
            let near = core == b || (allow > 0 && core.len().abs_diff(b.len()) <= allow && weighted_distance(core, b, allow) <= allow);
            if !near {
                continue;
            }
            if only_news_words(rest) {
                return Some(LookAlike::NewsWords);
            }
            let rest_letters = rest.trim_matches('-');
            if core == b && ((distinctive && (1..=12).contains(&rest_letters.len())) || (!ordinary && rest.contains('-'))) {
                return Some(LookAlike::AddedWords);
            }
        }
    }
    if label.len().abs_diff(brand.len()) > 3 {
        return None;
    }
    let (d, same_len) = f
        .hyphenless
        .iter()
        .zip(brands)
        .map(|(h, b)| (weighted_distance(h, b, 4), h.chars().count() == b.chars().count()))
        .min()
        .unwrap_or((5, false));
    if d <= 1 && same_len && brand.len() >= 4 {
        return Some(LookAlike::Transposition);
    }
    if ordinary {
        return None;
    }
    if d <= allow {
        return Some(LookAlike::Misspelling);
    }
    None
}

/// Ways to cut a label into (core, rest) where rest is the words before or after: at each
/// hyphen, and at every position of an unhyphenated label whose other side is a news word.
fn affix_splits(sl: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    for (i, c) in sl.char_indices() {
        if c == '-' {
            out.push((&sl[..i], &sl[i..]));
            out.push((&sl[i + 1..], &sl[..=i]));
        }
    }
    if !sl.contains('-') {
        for (i, _) in sl.char_indices().skip(1) {
            out.push((&sl[..i], &sl[i..]));
            out.push((&sl[i..], &sl[..i]));
        }
    }
    out.retain(|(core, _)| !core.is_empty() && !core.contains('-'));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_keys() {
        const ROWS: [&str; 4] = ["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"];
        let pos = |c: char| ROWS.iter().enumerate().find_map(|(r, row)| row.find(c).map(|x| (r as i32, x as i32)));
        let chars: Vec<char> = (0u8..128).map(char::from).chain(['é', 'а', 'Q']).collect();
        for &a in &chars {
            for &b in &chars {
                let want = match (pos(a), pos(b)) {
                    (Some((ra, xa)), Some((rb, xb))) if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                        (ra - rb).abs() <= 1 && (xa - xb).abs() <= 1 && (ra != rb || xa != xb)
                    }
                    _ => false,
                };
                assert_eq!(neighbours(a, b), want, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn is_established_agrees_with_established() {
        let lists = Lists::builtin();
        let mut some = 0;
        for reg in ["bbc.co.uk", "reuters.com", "rutgers.edu", "council.gov.uk", "nprnevvs.com", "gmail.com", "", "edu", "x.edu", "a.mil"] {
            assert_eq!(lists.is_established(reg), lists.established(reg).is_some(), "{reg}");
            some += lists.is_established(reg) as usize;
        }
        assert!(some >= 4, "own, popular and restricted domains are among them");
    }

    #[test]
    fn ascii_skeleton_is_the_one_character_by_character_gives() {
        // Every ASCII character, alone and in random runs (pairs that fold included).
        for c in 0u8..128 {
            let s = (c as char).to_string();
            assert_eq!(skeleton(&s), skeleton_of_chars(&s), "{c}");
        }
        let alphabet: Vec<char> = "rnvwmiIlL1|05sSoOaZ-. @".chars().collect();
        for s in random_words(&alphabet, 0x2545_f491_4f6c_dd1d, 12, 20_000) {
            assert_eq!(skeleton(&s), skeleton_of_chars(&s), "{s:?}");
        }
    }

    /// `n` pseudo-random words (xorshift from `seed`) of under `max_len` characters drawn
    /// from `alphabet`: small alphabets make the pairs that fold common.
    fn random_words(alphabet: &[char], seed: u64, max_len: u64, n: usize) -> impl Iterator<Item = String> {
        let mut x = seed;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % max_len) as usize;
            (0..len).map(|k| alphabet[((x >> (4 * k + 8)) % alphabet.len() as u64) as usize]).collect()
        })
    }

    #[test]
    fn skeleton_folds_pairs_as_replacing_them_in_turn_would() {
        let by_replacing = |s: &str| {
            let mapped: String = s.chars().map(|c| skeleton(&c.to_string())).collect();
            mapped.replace('i', "l").replace("rn", "m").replace("vv", "w")
        };
        let alphabet: Vec<char> = "rnvwmiIRNVп1".chars().collect();
        for s in random_words(&alphabet, 0x9e37_79b9_7f4a_7c15, 9, 20_000) {
            assert_eq!(skeleton(&s), by_replacing(&s), "{s:?}");
        }
        assert_eq!(skeleton("Rnvvvrrn"), "mwvrm");
    }

    #[test]
    fn letter_count_bound_never_changes_a_distance() {
        // Pseudo-random labels over small alphabets (so near pairs are common), with
        // doubled letters, hyphens and a confusable beyond ASCII.
        let alphabet: Vec<char> = "aeinorst-ábc".chars().collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut pruned = 0;
        for _ in 0..20_000 {
            let word = |next: &mut dyn FnMut(usize) -> usize| -> String {
                let len = 1 + next(9);
                (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
            };
            let a = word(&mut next);
            let b = if next(2) == 0 { word(&mut next) } else { a.chars().rev().chain(['s']).collect() };
            for max in [1, 2, 3, 4, 8] {
                assert_eq!(weighted_distance(&a, &b, max), distance_table(&a, &b, max), "{a:?} {b:?} {max}");
                pruned += usize::from(letters_apart(&a, &b) > max);
            }
        }
        assert!(pruned > 10_000, "the bound prunes most far pairs ({pruned})");
    }

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
        assert_eq!(skeleton("аррӏе"), "apple");
    }

    #[test]
    fn look_alikes() {
        assert_eq!(looks_like("nropnews", "nprnews"), Some("is a small misspelling"));
        assert_eq!(looks_like("theguardlan", "theguardian"), Some("uses look-alike characters"));
        assert_eq!(looks_like("bbc", "bbc"), None);
        assert_eq!(looks_like("abc", "bbc"), None, "three-letter brands only match by characters");
        assert_eq!(looks_like("reuters-desk", "reuters"), Some("adds news words to the name"));
        assert_eq!(looks_like("reuters-jobs", "reuters"), Some("adds words to the name"));
        assert_eq!(looks_like("bcb", "bbc"), None, "a swap in three letters is a coincidence");
        assert_eq!(looks_like("gmail", "guardian"), None);
    }

    #[test]
    fn weighted_for_what_attackers_do() {
        let w = |a: &str, b: &str| weighted_distance(a, b, 8).min(weighted_distance(&skeleton(a), &skeleton(b), 8));
        assert_eq!(w("reutres", "reuters"), 1, "a swap");
        assert_eq!(w("nropnews", "nprnews"), 3, "a swap and an added letter");
        assert_eq!(w("reutters", "reuters"), 1, "a doubled letter");
        assert_eq!(w("reuter", "reuters"), 2, "a dropped letter");
        assert!(w("rutgers", "reuters") >= 4, "two unrelated edits");
        assert!(w("latimes", "nytimes") >= 8, "two unrelated substitutions");
        assert!(w("politics", "politico") >= 4, "a substitution far on the keyboard");
        assert_eq!(w("nytlmes", "nytimes"), 0, "confusables cost nothing on skeletons");
    }

    #[test]
    fn benign_pairs_and_look_alikes_that_fire() {
        let la = |l: &str, b: &str| looks_like_skeleton(l, &skeleton(l), b, &skeleton(b), false);
        for (label, brand) in [
            ("rutgers", "reuters"),
            ("latimes", "nytimes"),
            ("politics", "politico"),
            ("unitedmedia", "dailymail"),
            ("imakenews", "nprnews"),
            ("online", "bbc"),
        ] {
            assert_eq!(la(label, brand), None, "{label} is not {brand}");
        }
        for (label, brand, how) in [
            ("reutres", "reuters", LookAlike::Transposition),
            ("reuters-news", "reuters", LookAlike::NewsWords),
            ("nropnews", "nprnews", LookAlike::Misspelling),
            ("bbc-news", "bbc", LookAlike::NewsWords),
            ("bbc-news", "bbcnews", LookAlike::Hyphenated),
            ("bbcnews-uk", "bbcnews", LookAlike::NewsWords),
            ("thebbc", "bbc", LookAlike::NewsWords),
            ("reutres-news", "reuters", LookAlike::NewsWords),
            ("nytimes-daily", "nytimes", LookAlike::NewsWords),
            ("bbc-shop", "bbc", LookAlike::AddedWords),
            ("nyt1mes", "nytimes", LookAlike::Confusable),
            ("bloornberg", "bloomberg", LookAlike::Confusable),
        ] {
            assert_eq!(la(label, brand), Some(how), "{label} imitates {brand}");
        }
        // Everyday words: only characters, swaps and news words.
        let ord = |l: &str, b: &str| looks_like_skeleton(l, &skeleton(l), b, &skeleton(b), true);
        assert_eq!(ord("guardianlife", "guardian"), None);
        assert_eq!(ord("guardians", "guardian"), None);
        assert_eq!(ord("guardian-news", "guardian"), Some(LookAlike::NewsWords));
        assert_eq!(ord("guardain", "guardian"), Some(LookAlike::Transposition));
    }

    #[test]
    fn lists_load() {
        let mut l = Lists::builtin();
        assert!(l.is_freemail("gmail.com"));
        assert!(l.is_bulk_mailer("o1.ptr1234.sendgrid.net"));
        assert!(l.identities.iter().any(|i| i.labels.contains(&"nprnews".to_string())));
        assert_eq!(l.add_protected("name,domains\nAlex Reporter,alex@reuters.com;reuters.com\n").unwrap(), 1);
        assert!(l.add_protected("x,\n").is_err());
        assert!(matches!(l.established("rutgers.edu"), Some(Established::Restricted(s)) if s == "edu"));
        assert!(matches!(l.established("cam.ac.uk"), Some(Established::Restricted(s)) if s == "ac.uk"));
        assert!(matches!(l.established("latimes.com"), Some(Established::Own(_))));
        assert_eq!(l.established("cnet.com").map(|e| matches!(e, Established::Own(_))), Some(true));
        assert_eq!(l.established("youtube.com"), Some(Established::Popular));
        assert_eq!(l.established("nropnews.com"), None);
        assert_eq!(l.established("edu"), None);
        let guardian = l.identities.iter().find(|i| i.name == "The Guardian").unwrap();
        assert!(guardian.ordinary[guardian.labels.iter().position(|x| x == "guardian").unwrap()]);
        assert!(guardian.owns("guim.co.uk"));
    }
}

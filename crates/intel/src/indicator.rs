//! One indicator: its kind, its normalised value, where it came from and the context
//! (actors, campaigns) that gives it meaning. Values are refanged (`hxxp`, `[.]`) and
//! normalised (lower-case domains and hashes, canonical IPs and CIDRs, URLs without
//! default ports or fragments) before they are compared.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Ipv4,
    Ipv6,
    /// An IPv4 or IPv6 network (`10.0.0.0/8`).
    Cidr,
    Domain,
    Url,
    Email,
    Md5,
    Sha1,
    Sha256,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Cidr => "cidr",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Email => "email",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
        }
    }

    /// From a type name used by STIX paths, MISP attribute types or CSV columns.
    pub fn from_name(name: &str) -> Option<Kind> {
        let n = name.trim().to_ascii_lowercase();
        Some(match n.as_str() {
            "ipv4" | "ipv4-addr" | "ip" | "ip-src" | "ip-dst" | "ip-src|port" | "ip-dst|port" | "ipaddress" | "ip_address" => Kind::Ipv4,
            "ipv6" | "ipv6-addr" => Kind::Ipv6,
            "cidr" | "network" | "subnet" => Kind::Cidr,
            "domain" | "domain-name" | "hostname" | "fqdn" | "host" | "domain|ip" => Kind::Domain,
            "url" | "uri" | "link" => Kind::Url,
            "email" | "email-addr" | "email-src" | "email-dst" | "email-address" | "whois-registrant-email" => Kind::Email,
            "md5" | "filename|md5" | "file:hashes.md5" => Kind::Md5,
            "sha1" | "sha-1" | "filename|sha1" => Kind::Sha1,
            "sha256" | "sha-256" | "filename|sha256" => Kind::Sha256,
            _ => return None,
        })
    }
}

/// What an indicator means, shared by the indicators of one report or event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Context {
    /// The feed, bundle or file it came from (file name, or the STIX/MISP producer).
    pub source: String,
    /// Named threat actors / intrusion sets it indicates.
    pub actors: Vec<String>,
    /// Named campaigns it indicates.
    pub campaigns: Vec<String>,
    /// Free text: indicator name or description, MISP event info.
    pub description: String,
}

impl Context {
    /// A short title: the actors or campaigns, else the description, else the source.
    pub fn title(&self) -> String {
        let mut names: Vec<&str> = self.actors.iter().chain(&self.campaigns).map(String::as_str).collect();
        names.dedup();
        if !names.is_empty() {
            names.join(", ")
        } else if !self.description.is_empty() {
            self.description.chars().take(80).collect()
        } else {
            self.source.clone()
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Indicator {
    pub kind: Kind,
    /// Normalised.
    pub value: String,
    pub context: Arc<Context>,
    /// The STIX id it was imported from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stix_id: Option<String>,
}

/// Undoes common defanging: `hxxp`, `[.]`, `(.)`, `{.}`, `[dot]`, `[:]`, `[@]`, `(at)`.
pub fn refang(s: &str) -> String {
    let t = s.trim().trim_matches(|c| c == '"' || c == '\'' || c == '<' || c == '>');
    // Most values are not defanged: every bracketed form needs a bracket, every scheme an
    // `h`, `m` or `f` first (`hxxp`, `meow`, `fxp`); a value with neither is copied as it is.
    let bracketed = memchr::memchr3(b'[', b'(', b'{', t.as_bytes()).is_some();
    let scheme = t.as_bytes().first().is_some_and(|b| matches!(b | 0x20, b'h' | b'm' | b'f'));
    if !bracketed && !scheme {
        return t.to_string();
    }
    let mut t = t.to_string();
    if bracketed {
        for (from, to) in [
            ("[.]", "."),
            ("(.)", "."),
            ("{.}", "."),
            ("[dot]", "."),
            ("(dot)", "."),
            ("[:]", ":"),
            ("[://]", "://"),
            ("[@]", "@"),
            ("(at)", "@"),
            ("[at]", "@"),
            ("[/]", "/"),
        ] {
            if t.contains(from) {
                t = t.replace(from, to);
            }
        }
    }
    for (from, to) in
        [("hxxps://", "https://"), ("hxxp://", "http://"), ("hXXps://", "https://"), ("meow://", "http://"), ("fxp://", "ftp://")]
    {
        if t.len() >= from.len() && t.as_bytes()[..from.len()].eq_ignore_ascii_case(from.as_bytes()) {
            t = format!("{to}{}", &t[from.len()..]);
            break;
        }
    }
    t
}

/// `a` in dotted decimal, as `Ipv4Addr`'s `Display` writes it, without the formatter.
pub fn ipv4_text(a: std::net::Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push((b'0' + o / 100) as char);
        }
        if o >= 10 {
            out.push((b'0' + o / 10 % 10) as char);
        }
        out.push((b'0' + o % 10) as char);
    }
    out
}

/// Parses and normalises `raw` as `kind` (or guesses the kind when None).
/// The widest IPv4 network accepted as an indicator.
pub const MIN_PREFIX_V4: u8 = 8;
/// The widest IPv6 network accepted as an indicator.
pub const MIN_PREFIX_V6: u8 = 32;

pub fn normalise(kind: Option<Kind>, raw: &str) -> Result<(Kind, String), String> {
    let v = refang(raw);
    if v.is_empty() {
        return Err("empty value".into());
    }
    if v.len() > 2048 {
        return Err("value longer than 2048 characters".into());
    }
    let kind = match kind {
        Some(k) => k,
        None => guess(&v).ok_or_else(|| format!("cannot tell what kind of indicator {:?} is", short(&v)))?,
    };
    let bad = |what: &str| Err(format!("{:?} is not {what}", short(&v)));
    match kind {
        Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => {
            // MISP `ip|port` and a trailing `:port` on IPv4.
            let core = v.split('|').next().unwrap_or(&v);
            if core.contains('/') {
                return match parse_cidr(core) {
                    // Networks this wide match a large part of the Internet (or all of it):
                    // an indicator that matches everything hides every real match.
                    Some((ip, len)) if len < MIN_PREFIX_V4 && ip.is_ipv4() => Err(format!(
                        "{:?} is wider than /{MIN_PREFIX_V4}; refused (it would match a large part of the Internet)",
                        short(&v)
                    )),
                    Some((ip, len)) if len < MIN_PREFIX_V6 && ip.is_ipv6() => Err(format!(
                        "{:?} is wider than /{MIN_PREFIX_V6}; refused (it would match a large part of the Internet)",
                        short(&v)
                    )),
                    Some((ip, len)) => Ok((Kind::Cidr, format!("{ip}/{len}"))),
                    None => bad("an IP network"),
                };
            }
            let core = if core.matches(':').count() == 1 { core.split(':').next().unwrap_or(core) } else { core };
            match core.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => Ok((Kind::Ipv4, ipv4_text(a))),
                Ok(IpAddr::V6(a)) => Ok((Kind::Ipv6, a.to_string())),
                Err(_) => bad("an IP address"),
            }
        }
        Kind::Domain => {
            let d = v.split('|').next().unwrap_or(&v).trim_end_matches('.').to_ascii_lowercase();
            let ok = d.contains('.')
                && d.len() <= 253
                && d.split('.')
                    .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
                && d.rsplit('.').next().is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()));
            if ok { Ok((Kind::Domain, d)) } else { bad("a domain name") }
        }
        Kind::Url => match normalise_url(&v) {
            Some(u) => Ok((Kind::Url, u)),
            None => bad("an http(s) or ftp URL"),
        },
        Kind::Email => {
            let e = v.to_ascii_lowercase();
            match e.split_once('@') {
                Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@') && !e.contains(char::is_whitespace) => {
                    Ok((Kind::Email, e))
                }
                _ => bad("an email address"),
            }
        }
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => {
            let h = v.rsplit('|').next().unwrap_or(&v).to_ascii_lowercase();
            let want = match kind {
                Kind::Md5 => 32,
                Kind::Sha1 => 40,
                _ => 64,
            };
            if h.len() == want && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok((kind, h))
            } else {
                bad(&format!("a {}-digit hex hash", want))
            }
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The kind a bare value looks like.
pub fn guess(v: &str) -> Option<Kind> {
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("ftp://") {
        return Some(Kind::Url);
    }
    if v.contains('/') && parse_cidr(v).is_some() {
        return Some(Kind::Cidr);
    }
    match v.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => return Some(Kind::Ipv4),
        Ok(IpAddr::V6(_)) => return Some(Kind::Ipv6),
        Err(_) => {}
    }
    if v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return match v.len() {
            32 => Some(Kind::Md5),
            40 => Some(Kind::Sha1),
            64 => Some(Kind::Sha256),
            _ => None,
        };
    }
    if v.contains('@') {
        return Some(Kind::Email);
    }
    if v.contains('.') && !v.contains(['/', ' ']) {
        return Some(Kind::Domain);
    }
    None
}

/// `10.1.2.3/8` → (10.0.0.0, 8): the network address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.trim().split_once('/')?;
    let len: u8 = len.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some((IpAddr::V4((u32::from(a) & mask).into()), len))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            Some((IpAddr::V6((u128::from(a) & mask).into()), len))
        }
        _ => None,
    }
}

/// Lower-case scheme and host, no default port, no fragment, no trailing `/` on an empty path.
pub fn normalise_url(v: &str) -> Option<String> {
    let (scheme, rest) = v.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = authority.rsplit('@').next().unwrap_or(authority).to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) | ("ftp", Some((h, "21"))) => h.to_string(),
        _ => authority,
    };
    let authority = authority.trim_end_matches('.');
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return None;
    }
    let tail = if tail == "/" { "" } else { tail };
    Some(format!("{scheme}://{authority}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refangs_and_normalises() {
        assert_eq!(refang("hxxps://evil[.]example[.]com/a"), "https://evil.example.com/a");
        assert_eq!(refang("bad(at)mail[.]ru"), "bad@mail.ru");
        assert_eq!(normalise(None, "47.242.39[.]92").unwrap(), (Kind::Ipv4, "47.242.39.92".into()));
        assert_eq!(normalise(None, "10.1.2.3/8").unwrap(), (Kind::Cidr, "10.0.0.0/8".into()));
        assert_eq!(normalise(None, "2001:DB8::1").unwrap(), (Kind::Ipv6, "2001:db8::1".into()));
        assert_eq!(normalise(None, "2001:db8::/32").unwrap(), (Kind::Cidr, "2001:db8::/32".into()));
        assert_eq!(normalise(None, "Mail.NROPNews.com.").unwrap(), (Kind::Domain, "mail.nropnews.com".into()));
        assert_eq!(normalise(None, "HTTP://Evil.Example:80/x?y=1#frag").unwrap(), (Kind::Url, "http://evil.example/x?y=1".into()));
        assert_eq!(normalise(Some(Kind::Ipv4), "203.0.113.5|8080").unwrap().1, "203.0.113.5");
        assert_eq!(normalise(Some(Kind::Ipv4), "203.0.113.5:8080").unwrap().1, "203.0.113.5");
        assert_eq!(normalise(None, &"A".repeat(64)).unwrap(), (Kind::Sha256, "a".repeat(64)));
        assert!(normalise(Some(Kind::Ipv4), "999.1.1.1").is_err());
        assert!(normalise(Some(Kind::Md5), "abc").is_err());
        assert!(normalise(Some(Kind::Domain), "not a domain").is_err());
        assert!(normalise(None, "hello").is_err());
        assert_eq!(refang("HXXP://a[.]b"), "http://a.b");
        assert_eq!(refang("  'plain.example'  "), "plain.example");
    }

    #[test]
    fn ipv4_text_writes_what_display_writes() {
        for a in [0u32, 1, 9, 10, 99, 100, 255, 0x0a00_0001, 0xc0a8_6401, 0x6464_6464, u32::MAX, 0x0109_630a] {
            let ip = std::net::Ipv4Addr::from(a);
            assert_eq!(ipv4_text(ip), ip.to_string());
        }
    }
}

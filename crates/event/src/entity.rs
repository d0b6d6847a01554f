//! Entities: the hosts, accounts, source IPs, mailboxes and file paths an event
//! involves, normalised so that findings about the same thing can be joined.

use crate::Event;
use crate::roles::{Role, role_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Host,
    Account,
    SourceIp,
    Mailbox,
    FilePath,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Host => "host",
            EntityKind::Account => "account",
            EntityKind::SourceIp => "source_ip",
            EntityKind::Mailbox => "mailbox",
            EntityKind::FilePath => "file_path",
        }
    }

    /// The kind `as_str` writes as `s`, if any.
    pub fn parse(s: &str) -> Option<EntityKind> {
        Some(match s {
            "host" => EntityKind::Host,
            "account" => EntityKind::Account,
            "source_ip" => EntityKind::SourceIp,
            "mailbox" => EntityKind::Mailbox,
            "file_path" => EntityKind::FilePath,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Entity {
    pub kind: EntityKind,
    /// Normalised (lower-cased) value.
    pub value: String,
}

/// The entity kind a field's role carries, if any.
pub fn kind_of_role(role: Role) -> Option<EntityKind> {
    Some(match role {
        Role::Host => EntityKind::Host,
        Role::Account => EntityKind::Account,
        Role::SourceAddress | Role::ServerAddress => EntityKind::SourceIp,
        Role::Mailbox => EntityKind::Mailbox,
        Role::File => EntityKind::FilePath,
        _ => return None,
    })
}

/// The entity kind of a field name, from its role.
pub fn kind_of_field(name: &str) -> Option<EntityKind> {
    role_of(name).and_then(kind_of_role)
}

/// A value as the entity it names, so that every spelling of one thing is one entity:
/// hosts by their first DNS label (`EXCH01.corp.local` = `exch01`), accounts by their
/// name without domain (`CORP\jdoe` = `jdoe@corp.example` = `jdoe`), addresses in
/// canonical form (IPv4-mapped IPv6 folded), file paths only when the value is a path.
/// `None` for values that link nothing: blank, well-known system accounts, machine
/// accounts, loopback, link-local and unspecified addresses, SIDs, LDAP names, pipes.
pub fn normalise(kind: EntityKind, v: &str) -> Option<String> {
    let mut out = String::new();
    normalise_into(kind, v, &mut out).then_some(out)
}

/// [`normalise`] appended to `out` (true), or nothing (false): the entities of one event
/// are written into one buffer, not a string each.
fn normalise_into(kind: EntityKind, v: &str, out: &mut String) -> bool {
    let v = trim(v);
    if v.is_empty() || v == "-" || v.len() > 512 {
        return false;
    }
    match kind {
        EntityKind::Host => {
            host_name_into(v, out);
            true
        }
        EntityKind::Account => match account(v) {
            Some(name) => {
                out.push_str(&name);
                true
            }
            None => false,
        },
        EntityKind::SourceIp => address_into(v, out),
        EntityKind::Mailbox => {
            push_lowercase(v, out);
            true
        }
        EntityKind::FilePath => {
            let path = path_like(v);
            if path {
                push_lowercase(v, out);
            }
            path
        }
    }
}

/// `v.to_lowercase()` appended to `out`; an ASCII value (nearly all) without a string of
/// its own.
fn push_lowercase(v: &str, out: &mut String) {
    if v.is_ascii() {
        let start = out.len();
        out.push_str(v);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&v.to_lowercase());
    }
}

/// `v.trim()`, without looking at characters when `v` starts and ends with an ASCII byte
/// that is not white space (nearly every value).
fn trim(v: &str) -> &str {
    let plain = |b: u8| b > b' ' && b.is_ascii();
    match v.as_bytes() {
        [first, .., last] if plain(*first) && plain(*last) => v,
        [only] if plain(*only) => v,
        _ => v.trim(),
    }
}

/// `v.trim_matches(['[', ']'])`, a byte at a time.
fn trim_brackets(v: &str) -> &str {
    &v[crate::bytes::trim_range(v.as_bytes(), |c| matches!(c, b'[' | b']'))]
}

/// Values too common or too vague to link anything (see [`normalise`]).
pub fn trivial(kind: EntityKind, v: &str) -> bool {
    normalise(kind, v).is_none()
}

fn account(v: &str) -> Option<String> {
    let l = v.to_lowercase();
    if l.starts_with("s-1-") {
        return None;
    }
    let name = l.rsplit(['\\', '/']).next().unwrap_or(&l);
    let name = match name.split_once('@') {
        Some((user, domain)) if !user.is_empty() && domain.contains('.') => user,
        _ => name,
    };
    let system = matches!(
        name,
        "system"
            | "local service"
            | "network service"
            | "localsystem"
            | "anonymous logon"
            | "dwm-1"
            | "umfd-0"
            | "umfd-1"
            | "dwm-2"
            | "iusr"
            | "defaultapppool"
    );
    (!system && !name.is_empty() && !name.ends_with('$')).then(|| name.to_string())
}

fn address_into(v: &str, out: &mut String) -> bool {
    let v = trim_brackets(v);
    // The common case, dotted IPv4: the parser takes only the canonical form (no leading
    // zeros), so the text is kept as written and not formatted again.
    if let Some(a) = dotted_ipv4(v) {
        let local = a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast();
        if !local {
            out.push_str(v);
        }
        return !local;
    }
    let ip: std::net::IpAddr = match v.parse() {
        Ok(ip) => ip,
        // Not an address (a host name in an address column): kept as written.
        Err(_) if v == "localhost" => return false,
        Err(_) => {
            push_lowercase(v, out);
            return true;
        }
    };
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let local = match ip {
        std::net::IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if !local {
        use std::fmt::Write;
        let _ = write!(out, "{ip}");
    }
    !local
}

/// A file path: a drive (`C:\`), a UNC or device path, or a relative path with a
/// separator; not a SID, an LDAP name or a bare pipe or object name.
fn path_like(v: &str) -> bool {
    let b = v.as_bytes();
    let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/');
    if drive || v.starts_with("\\\\") || v.starts_with('/') {
        return true;
    }
    let l = v.to_ascii_lowercase();
    if l.starts_with("s-1-") || l.contains("dc=") || l.contains("cn=") || l.starts_with("\\device\\namedpipe") {
        return false;
    }
    l.starts_with("\\device\\") || (v.contains('\\') && !v.contains('='))
}

/// The entities of an event, from the fields whose role names one.
pub fn entities(ev: &Event) -> Vec<Entity> {
    let (mut buf, mut spans) = (String::new(), Vec::new());
    collect(ev, &mut buf, &mut spans);
    spans.into_iter().map(|(kind, r)| Entity { kind, value: buf[r].to_string() }).collect()
}

/// [`entities`] as correlation inputs carry them, appended to `out`: each `kind=value`
/// ([`Entity::encode`]), joined by U+001F, without a string per entity.
pub fn encode_entities(ev: &Event, out: &mut String) {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<(String, Vec<(EntityKind, std::ops::Range<usize>)>)> = const { RefCell::new((String::new(), Vec::new())) };
    }
    SCRATCH.with(|scratch| {
        let mut fresh = Default::default();
        // Re-entered (not done today): a scratch of its own, never a double borrow.
        let mut held = scratch.try_borrow_mut();
        let (buf, spans) = match held.as_deref_mut() {
            Ok(s) => s,
            Err(_) => &mut fresh,
        };
        collect(ev, buf, spans);
        for (i, (kind, r)) in spans.iter().enumerate() {
            if i > 0 {
                out.push('\u{1f}');
            }
            out.push_str(kind.as_str());
            out.push('=');
            out.push_str(&buf[r.clone()]);
        }
        // One huge value is not held for the thread's life.
        if buf.capacity() > 64 * 1024 {
            *buf = String::new();
        }
    });
}

/// The entities of `ev` as (kind, place of the value in `buf`), sorted by kind and value
/// and without repeats (the order a set gives).
fn collect(ev: &Event, buf: &mut String, spans: &mut Vec<(EntityKind, std::ops::Range<usize>)>) {
    buf.clear();
    spans.clear();
    // The server's own address names the host when nothing else does, and links the
    // server's own requests to other logs that saw it as a client (share access). The last
    // such field's value, as normalised for its own entity (a source address).
    let mut host_fallback = None;
    crate::roles::for_each_role(ev, |f, (role, _)| {
        let Some(kind) = kind_of_role(role) else { return };
        let start = buf.len();
        let kept = normalise_into(kind, f.value, buf);
        let normalised = kept.then_some(start..buf.len());
        if role == Role::ServerAddress {
            host_fallback = Some(normalised.clone());
        }
        if let Some(r) = normalised {
            spans.push((kind, r));
        }
    });
    if !spans.iter().any(|(k, _)| *k == EntityKind::Host)
        && let Some(Some(r)) = host_fallback
    {
        spans.push((EntityKind::Host, r));
    }
    // Compared as bytes (the order of UTF-8 bytes is the order of the text's characters),
    // so that no value is sliced as text.
    let text = buf.as_bytes();
    spans.sort_unstable_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| text[a.clone()].cmp(&text[b.clone()])));
    spans.dedup_by(|(ka, a), (kb, b)| ka == kb && text[a.clone()] == text[b.clone()]);
}

/// A dotted IPv4 address as `Ipv4Addr`'s parser takes it (four parts of one to three
/// digits, no leading zero, none past 255), without its general parser.
fn dotted_ipv4(s: &str) -> Option<std::net::Ipv4Addr> {
    let b = s.as_bytes();
    if b.len() > 15 {
        return None;
    }
    let (mut parts, mut i) = ([0u8; 4], 0);
    for (n, part) in parts.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v = 0u32;
        while i < b.len() && i - start < 3 && b[i].is_ascii_digit() {
            v = v * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || v > 255 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        *part = v as u8;
    }
    (i == b.len()).then(|| std::net::Ipv4Addr::from(parts))
}

/// `exch01.corp.local` and `EXCH01` are one host (`exch01`); an IP address stays whole.
fn host_name_into(v: &str, out: &mut String) {
    let start = out.len();
    push_lowercase(v, out);
    if out[start..].parse::<std::net::IpAddr>().is_err()
        && let Some(dot) = out[start..].find('.')
    {
        out.truncate(start + dot);
    }
}

impl Entity {
    /// A compact text form, `kind=value`, for carrying entities through correlation inputs.
    pub fn encode(&self) -> String {
        format!("{}={}", self.kind.as_str(), self.value)
    }

    pub fn decode(s: &str) -> Option<Entity> {
        let (k, v) = s.split_once('=')?;
        Some(Entity { kind: EntityKind::parse(k)?, value: v.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_trims_trim_as_the_standard_ones_do() {
        let pieces = ["", " ", "\t", "\u{b}", "\u{a0}", "\u{3000}", "\u{85}", "a", "é", "[", "]", "1", "::", "-", "\u{7f}"];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let v = format!("{a}{b}{c}");
                    assert_eq!(trim(&v), v.trim(), "{v:?}");
                    assert_eq!(trim_brackets(&v), v.trim_matches(['[', ']']), "{v:?}");
                }
            }
        }
    }

    fn ents(fields: &[(&str, &str)]) -> Vec<(EntityKind, String)> {
        let mut ev = Event::default();
        for (n, v) in fields {
            ev.push_str(n, v);
        }
        entities(&ev).into_iter().map(|e| (e.kind, e.value)).collect()
    }

    /// Written in place after what the buffer holds, as `normalise` gives it, and nothing
    /// written when there is no entity, for every kind and spellings that take each path
    /// (IPv6, brackets, Unicode, blanks); the addresses and hosts pinned as they were
    /// before they were written in place.
    #[test]
    fn normalised_in_place_as_normalise_gives() {
        let pinned = [
            (EntityKind::SourceIp, "203.0.113.9", Some("203.0.113.9")),
            (EntityKind::SourceIp, " [203.0.113.9] ", Some("203.0.113.9")),
            (EntityKind::SourceIp, "127.0.0.1", None),
            (EntityKind::SourceIp, "169.254.1.1", None),
            (EntityKind::SourceIp, "255.255.255.255", None),
            (EntityKind::SourceIp, "010.1.1.1", Some("010.1.1.1")),
            (EntityKind::SourceIp, "::ffff:203.0.113.9", Some("203.0.113.9")),
            (EntityKind::SourceIp, "[2001:DB8::1]", Some("2001:db8::1")),
            (EntityKind::SourceIp, "fe80::1", None),
            (EntityKind::SourceIp, "localhost", None),
            (EntityKind::SourceIp, "EXCH01.corp.local", Some("exch01.corp.local")),
            (EntityKind::SourceIp, "ÉCOLE.example", Some("école.example")),
            (EntityKind::Host, "EXCH01.corp.local", Some("exch01")),
            (EntityKind::Host, "ÉCOLE.example", Some("école")),
            (EntityKind::Host, "10.0.0.5", Some("10.0.0.5")),
            (EntityKind::Host, "::1", Some("::1")),
            (EntityKind::Host, ".corp", Some("")),
            (EntityKind::Mailbox, "Alice@Corp.Example", Some("alice@corp.example")),
            (EntityKind::FilePath, "C:\\Windows\\X.exe", Some("c:\\windows\\x.exe")),
            (EntityKind::FilePath, "S-1-5-18", None),
        ];
        for (kind, v, want) in pinned {
            assert_eq!(normalise(kind, v).as_deref(), want, "{kind:?} {v:?}");
        }
        let values = [
            "203.0.113.9",
            " 203.0.113.9 ",
            "[203.0.113.9]",
            "127.0.0.1",
            "0.0.0.0",
            "169.254.1.1",
            "255.255.255.255",
            "010.1.1.1",
            "::ffff:203.0.113.9",
            "[2001:DB8::1]",
            "fe80::1",
            "::1",
            "localhost",
            "EXCH01.corp.local",
            "exch01",
            "ÉCOLE.example",
            "10.0.0.5",
            "-",
            "",
            "  ",
            "CORP\\Alice",
            "alice@corp.example",
            "SYSTEM",
            "dc01$",
            "S-1-5-18",
            "C:\\Windows\\x.exe",
            "\\\\srv\\share",
            "cn=x,dc=y",
            ".corp",
            "a.b.c",
            "ΣΊΣΥΦΟΣ.example",
        ];
        let kinds = [EntityKind::Host, EntityKind::Account, EntityKind::SourceIp, EntityKind::Mailbox, EntityKind::FilePath];
        let long = "x".repeat(600);
        for kind in kinds {
            for v in values.iter().copied().chain([long.as_str()]) {
                let mut out = String::from("before");
                let wrote = normalise_into(kind, v, &mut out);
                let want = normalise(kind, v);
                assert_eq!(wrote.then(|| out["before".len()..].to_string()), want, "{kind:?} {v:?}");
                if !wrote {
                    assert_eq!(out, "before");
                }
            }
        }
    }

    #[test]
    fn dotted_ipv4_takes_what_the_standard_parser_takes() {
        let mut cases: Vec<String> = [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "1.2.3.4567",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.-4",
            "1.2.3.+4",
            "",
            "...",
            "1.2.3.4.5",
            "1000.1.1.1",
            "10.0.0.5",
            "0.1.2.3",
            "00.1.2.3",
            "1.2.3.a",
            "١.2.3.4",
            "192.168.001.1",
            "9.99.199.249",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every string of up to 7 characters over digits and dots, and some longer ones.
        let alphabet = ['0', '1', '2', '5', '9', '.'];
        let mut seed = 1u64;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 60) as usize;
            let s: String = (0..len).map(|k| alphabet[((seed >> (k * 3 % 48)) % 6) as usize]).collect();
            cases.push(s);
        }
        for c in &cases {
            assert_eq!(dotted_ipv4(c), c.parse::<std::net::Ipv4Addr>().ok(), "{c:?}");
        }
    }

    #[test]
    fn entities_are_encoded_as_each_entity_encodes_joined() {
        let events: &[&[(&str, &str)]] = &[
            &[("Computer", "EXCH01.corp.local"), ("c-ip", "203.0.113.9"), ("TargetUserName", "CORP\\alice"), ("Image", "-")],
            &[("s-ip", "10.0.0.5"), ("c-ip", "203.0.113.9"), ("c-ip", "203.0.113.9"), ("cs-username", "bob")],
            &[("s-ip", "10.0.0.5"), ("s-ip", "10.0.0.6"), ("Computer", "-")],
            &[("Computer", "ÉCOLE.local"), ("TargetFilename", "C:\\x\\y.dll"), ("c-ip", "::ffff:1.2.3.4")],
            &[],
        ];
        for fields in events {
            let mut ev = Event::default();
            for (n, v) in *fields {
                ev.push_str(n, v);
            }
            let by_entity: Vec<String> = entities(&ev).iter().map(|e| e.encode()).collect();
            let mut encoded = String::from("x");
            encode_entities(&ev, &mut encoded);
            assert_eq!(encoded, format!("x{}", by_entity.join("\u{1f}")), "{fields:?}");
        }
    }

    #[test]
    fn one_thing_one_entity() {
        use EntityKind::*;
        assert_eq!(normalise(Host, "MXS01.azsentinel.local"), normalise(Host, "mxs01"));
        assert_eq!(normalise(Account, "CORP\\jdoe"), Some("jdoe".into()));
        assert_eq!(normalise(Account, "jdoe@corp.example"), Some("jdoe".into()));
        assert_eq!(normalise(Account, "JDoe"), Some("jdoe".into()));
        assert_eq!(normalise(Account, "EXCH01$"), None);
        assert_eq!(normalise(Account, "NT AUTHORITY\\SYSTEM"), None);
        assert_eq!(normalise(Account, "S-1-5-21-1-2-3-500"), None);
        assert_eq!(normalise(SourceIp, "::ffff:10.1.2.3"), Some("10.1.2.3".into()));
        assert_eq!(normalise(SourceIp, "0:0:0:0:0:0:0:1"), None);
        assert_eq!(normalise(SourceIp, "127.0.0.2"), None);
        assert_eq!(normalise(SourceIp, "169.254.3.4"), None);
        assert_eq!(normalise(SourceIp, "fe80::1%12"), Some("fe80::1%12".into()), "zone ids are not addresses std parses");
        assert_eq!(normalise(SourceIp, "fe80::1"), None);
    }

    #[test]
    fn only_paths_are_file_entities() {
        use EntityKind::*;
        assert!(normalise(FilePath, "C:\\inetpub\\wwwroot\\x.aspx").is_some());
        assert!(normalise(FilePath, "\\\\fs01\\share\\reg.csv").is_some());
        assert!(normalise(FilePath, "Registers\\2021.csv").is_some());
        assert!(normalise(FilePath, "S-1-5-21-1-2-3").is_none());
        assert!(normalise(FilePath, "CN=Builtin,DC=example,DC=corp").is_none());
        assert!(normalise(FilePath, "blabla-1234-stderr").is_none());
        assert!(normalise(FilePath, "\\Device\\NamedPipe\\x").is_none());
        let e = ents(&[("ObjectName", "cn=builtin,dc=example,dc=corp"), ("Computer", "DC1.example.corp")]);
        assert_eq!(e, vec![(Host, "dc1".to_string())]);
    }
}

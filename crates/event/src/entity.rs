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
    let v = v.trim();
    if v.is_empty() || v == "-" || v.len() > 512 {
        return None;
    }
    match kind {
        EntityKind::Host => Some(host_name(&v.to_lowercase())),
        EntityKind::Account => account(v),
        EntityKind::SourceIp => address(v),
        EntityKind::Mailbox => Some(v.to_lowercase()),
        EntityKind::FilePath => path_like(v).then(|| v.to_lowercase()),
    }
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

fn address(v: &str) -> Option<String> {
    let v = v.trim_matches(['[', ']']);
    // The common case, dotted IPv4: the parser takes only the canonical form (no leading
    // zeros), so the text is kept as written and not formatted again.
    if let Ok(a) = v.parse::<std::net::Ipv4Addr>() {
        let local = a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast();
        return (!local).then(|| v.to_string());
    }
    let ip: std::net::IpAddr = match v.parse() {
        Ok(ip) => ip,
        // Not an address (a host name in an address column): kept as written.
        Err(_) => return (v != "localhost").then(|| v.to_lowercase()),
    };
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let local = match ip {
        std::net::IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    (!local).then(|| ip.to_string())
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
    // Few per event: a vector sorted and deduplicated at the end, in the order a set gives.
    let mut set = Vec::new();
    let mut host_fallback = None;
    crate::roles::for_each_role(ev, |f, role| {
        let Some((role, _)) = role else { return };
        let Some(kind) = kind_of_role(role) else { return };
        if role == Role::ServerAddress {
            // The server's own address names the host when nothing else does, and links the
            // server's own requests to other logs that saw it as a client (share access).
            host_fallback = Some(f.value);
        }
        if let Some(value) = normalise(kind, f.value) {
            set.push(Entity { kind, value });
        }
    });
    if !set.iter().any(|e| e.kind == EntityKind::Host)
        && let Some(value) = host_fallback.and_then(|h| normalise(EntityKind::SourceIp, h))
    {
        set.push(Entity { kind: EntityKind::Host, value });
    }
    set.sort_unstable();
    set.dedup();
    set
}

/// `exch01.corp.local` and `EXCH01` are one host; an IP address stays whole.
fn host_name(v: &str) -> String {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return v.to_string();
    }
    v.split('.').next().unwrap_or(v).to_string()
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

    fn ents(fields: &[(&str, &str)]) -> Vec<(EntityKind, String)> {
        let mut ev = Event::default();
        for (n, v) in fields {
            ev.push_str(n, v);
        }
        entities(&ev).into_iter().map(|e| (e.kind, e.value)).collect()
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

//! Entities: the hosts, accounts, source IPs, mailboxes and file paths an event
//! involves, normalised so that findings about the same thing can be joined.

use std::collections::BTreeSet;

use crate::Event;

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
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Entity {
    pub kind: EntityKind,
    /// Normalised (lower-cased) value.
    pub value: String,
}

/// Values too common to link anything (well-known system accounts, loopback, empty).
pub fn trivial(kind: EntityKind, v: &str) -> bool {
    let v = v.trim();
    if v.is_empty() || v == "-" || v.len() > 512 {
        return true;
    }
    match kind {
        EntityKind::Account => {
            let l = v.to_ascii_lowercase();
            let name = l.rsplit(['\\', '/']).next().unwrap_or(&l);
            matches!(
                name,
                "system" | "local service" | "network service" | "localsystem" | "anonymous logon" | "dwm-1" | "umfd-0"
            ) || l.starts_with("s-1-5-18")
                || l.ends_with('$')
        }
        EntityKind::SourceIp => matches!(v, "127.0.0.1" | "::1" | "0.0.0.0" | "::" | "localhost"),
        _ => false,
    }
}

pub const ENTITY_FIELDS: [(&str, EntityKind); 33] = [
    ("TargetUserName", EntityKind::Account),
    ("SubjectUserName", EntityKind::Account),
    ("User", EntityKind::Account),
    ("UserName", EntityKind::Account),
    ("AccountName", EntityKind::Account),
    ("cs-username", EntityKind::Account),
    ("AuthenticatedUser", EntityKind::Account),
    ("UserPrincipalName", EntityKind::Account),
    ("c-ip", EntityKind::SourceIp),
    ("ClientIpAddress", EntityKind::SourceIp),
    ("client-ip", EntityKind::SourceIp),
    ("IpAddress", EntityKind::SourceIp),
    ("SourceIp", EntityKind::SourceIp),
    ("SourceAddress", EntityKind::SourceIp),
    ("ClientIP", EntityKind::SourceIp),
    ("AnchorMailbox", EntityKind::Mailbox),
    ("sender-address", EntityKind::Mailbox),
    ("recipient-address", EntityKind::Mailbox),
    ("Mailbox", EntityKind::Mailbox),
    ("Identity", EntityKind::Mailbox),
    ("TargetFilename", EntityKind::FilePath),
    ("FilePath", EntityKind::FilePath),
    ("ObjectName", EntityKind::FilePath),
    ("RelativeTargetName", EntityKind::FilePath),
    ("actor.alternateId", EntityKind::Account),
    ("client.ipAddress", EntityKind::SourceIp),
    ("properties.userPrincipalName", EntityKind::Account),
    ("properties.ipAddress", EntityKind::SourceIp),
    ("userPrincipalName", EntityKind::Account),
    ("ipAddress", EntityKind::SourceIp),
    ("Computer", EntityKind::Host),
    ("s-computername", EntityKind::Host),
    ("ServerHostName", EntityKind::Host),
];

/// The entities of an event.
pub fn entities(ev: &Event) -> Vec<Entity> {
    let mut set = BTreeSet::new();
    let mut lower = [0u8; 32];
    let mut host_fallback = None;
    for f in ev.fields() {
        let name = f.name.as_bytes();
        if name.len() > lower.len() {
            continue;
        }
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let key = &lower[..name.len()];
        let kind = if key == b"s-ip" {
            // The server's address: names the host when nothing else does, and links the
            // server's own requests to other logs that saw it as a client (share access).
            host_fallback = Some(f.value);
            EntityKind::SourceIp
        } else {
            match kind_of(key) {
                Some(k) => k,
                None => continue,
            }
        };
        if trivial(kind, f.value) {
            continue;
        }
        let mut value = f.value.trim().to_lowercase();
        if kind == EntityKind::Host {
            value = host_name(&value);
        }
        set.insert(Entity { kind, value });
    }
    // The server's own address names the host only when nothing better does.
    if !set.iter().any(|e| e.kind == EntityKind::Host)
        && let Some(h) = host_fallback.filter(|h| !trivial(EntityKind::Host, h))
    {
        set.insert(Entity { kind: EntityKind::Host, value: host_name(&h.trim().to_lowercase()) });
    }
    set.into_iter().collect()
}

/// The entity kind a (lower-cased) field name carries, from [`ENTITY_FIELDS`].
fn kind_of(lower: &[u8]) -> Option<EntityKind> {
    use std::sync::OnceLock;
    static TABLE: OnceLock<std::collections::HashMap<Vec<u8>, EntityKind>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut m: std::collections::HashMap<Vec<u8>, EntityKind> =
            ENTITY_FIELDS.iter().map(|(n, k)| (n.to_ascii_lowercase().into_bytes(), *k)).collect();
        m.insert(b"server-hostname".to_vec(), EntityKind::Host);
        m.insert(b"host.name".to_vec(), EntityKind::Host);
        m
    });
    table.get(lower).copied()
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
        let kind = match k {
            "host" => EntityKind::Host,
            "account" => EntityKind::Account,
            "source_ip" => EntityKind::SourceIp,
            "mailbox" => EntityKind::Mailbox,
            "file_path" => EntityKind::FilePath,
            _ => return None,
        };
        Some(Entity { kind, value: v.to_string() })
    }
}

//! Field roles: the one table of which field names say what about an event (the host,
//! the account, the source and destination address, the process and its parent, the
//! command line, the file, the URL, the mailbox, the user agent, the outcome). Entity
//! extraction, finding sentences, output columns and mail grading all read it, so a new
//! log layout is taught to every part of Portcullis in one place.
//!
//! Names are those after the readers' normalisation (Windows events under EVTX names
//! whatever the export; W3C and Exchange columns by their `#Fields:` names; other JSON
//! by dotted path). Order matters: within a role the first present name wins.

use std::sync::OnceLock;

use crate::Event;

/// What a field says about its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The machine the event happened on (or that served the request).
    Host,
    /// The server's own address in web and Exchange logs (names the host when nothing else does).
    ServerAddress,
    /// The account that acted or was acted upon.
    Account,
    /// Where a request or logon came from.
    SourceAddress,
    /// Where a connection went.
    DestinationAddress,
    /// The process image.
    Process,
    /// The parent process image.
    ParentProcess,
    /// A command line or script text.
    CommandLine,
    /// A file the event wrote, read or named.
    File,
    /// A requested URL (stem or path).
    Url,
    /// A mailbox or mail address.
    Mailbox,
    /// A client's user agent.
    UserAgent,
    /// An HTTP status or similar outcome code.
    Status,
}

/// Every field with a role, in order of preference within each role.
pub const ROLE_FIELDS: &[(&str, Role)] = &[
    ("Computer", Role::Host),
    ("s-computername", Role::Host),
    ("ServerHostName", Role::Host),
    ("server-hostname", Role::Host),
    ("host.name", Role::Host),
    ("s-ip", Role::ServerAddress),
    ("TargetUserName", Role::Account),
    ("SubjectUserName", Role::Account),
    ("User", Role::Account),
    ("UserName", Role::Account),
    ("AccountName", Role::Account),
    ("SamAccountName", Role::Account),
    ("cs-username", Role::Account),
    ("AuthenticatedUser", Role::Account),
    ("UserPrincipalName", Role::Account),
    ("actor.alternateId", Role::Account),
    ("properties.userPrincipalName", Role::Account),
    ("user.name", Role::Account),
    ("c-ip", Role::SourceAddress),
    ("ClientIpAddress", Role::SourceAddress),
    ("client-ip", Role::SourceAddress),
    ("IpAddress", Role::SourceAddress),
    ("SourceIp", Role::SourceAddress),
    ("SourceAddress", Role::SourceAddress),
    ("ClientIP", Role::SourceAddress),
    ("client.ipAddress", Role::SourceAddress),
    ("properties.ipAddress", Role::SourceAddress),
    ("source.ip", Role::SourceAddress),
    ("DestinationIp", Role::DestinationAddress),
    ("DestAddress", Role::DestinationAddress),
    ("server-ip", Role::DestinationAddress),
    ("destination.ip", Role::DestinationAddress),
    ("Image", Role::Process),
    ("NewProcessName", Role::Process),
    ("SourceImage", Role::Process),
    ("ProcessName", Role::Process),
    ("Application", Role::Process),
    ("ParentImage", Role::ParentProcess),
    ("ParentProcessName", Role::ParentProcess),
    ("CommandLine", Role::CommandLine),
    ("ScriptBlockText", Role::CommandLine),
    ("TargetFilename", Role::File),
    ("FilePath", Role::File),
    ("ObjectName", Role::File),
    ("RelativeTargetName", Role::File),
    ("cs-uri-stem", Role::Url),
    ("UrlStem", Role::Url),
    ("url", Role::Url),
    ("AnchorMailbox", Role::Mailbox),
    ("sender-address", Role::Mailbox),
    ("recipient-address", Role::Mailbox),
    ("Mailbox", Role::Mailbox),
    ("Identity", Role::Mailbox),
    ("cs(User-Agent)", Role::UserAgent),
    ("cs-user-agent", Role::UserAgent),
    ("UserAgent", Role::UserAgent),
    ("ClientInfo", Role::UserAgent),
    ("sc-status", Role::Status),
    ("HttpStatus", Role::Status),
];

/// The role of a field name (ASCII case-insensitive).
pub fn role_of(name: &str) -> Option<Role> {
    lookup(name).map(|(role, _)| role)
}

/// The role of a field name and the name's place in [`ROLE_FIELDS`].
fn lookup(name: &str) -> Option<(Role, usize)> {
    static TABLE: OnceLock<rustc_hash::FxHashMap<String, (Role, usize)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| ROLE_FIELDS.iter().enumerate().map(|(rank, (n, r))| (n.to_ascii_lowercase(), (*r, rank))).collect());
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return table.get(name).copied();
    }
    // Lower-cased on the stack: this runs for every field of every matched event.
    let mut buf = [0u8; 64];
    match buf.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).ok().and_then(|l| table.get(l)).copied()
        }
        None => table.get(&name.to_ascii_lowercase()).copied(),
    }
}

/// Calls `f` with each field of `ev` that has a role, with the role and the name's place in
/// [`ROLE_FIELDS`], in field order. The events of one log mostly share their field names
/// (a W3C or Exchange file's columns), so each thread remembers the last event's names and
/// looks up only a name that differs from the one in the same position; an event whose
/// reader says it has the last one's names ([`Event::layout`]) has none compared, and only
/// its fields with a role are taken out of it.
pub(crate) fn for_each_role<'a>(ev: &'a Event, mut f: impl FnMut(crate::Field<'a>, (Role, usize))) {
    use std::cell::RefCell;
    /// Past this many fields, or for a longer name, names are looked up afresh (a hostile
    /// record's names cannot make the remembered ones large).
    const REMEMBERED: usize = 256;
    const REMEMBERED_NAME: usize = 128;
    thread_local! {
        static LAST: RefCell<Vec<(String, Option<(Role, usize)>)>> = const { RefCell::new(Vec::new()) };
        /// The layout ([`Event::layout`]) of the last event, when `LAST` holds all its names.
        static LAST_LAYOUT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let layout = ev.layout();
    LAST.with(|last| {
        // Re-entered from `f` (not done today): plain lookups, never a double borrow.
        let Ok(mut last) = last.try_borrow_mut() else {
            ev.fields().for_each(|field| lookup(field.name).into_iter().for_each(|role| f(field, role)));
            return;
        };
        // The same names in the same order as the last event: no name compared.
        if layout != 0 && LAST_LAYOUT.get() == layout && last.len() >= ev.len() {
            for (i, (_, role)) in last[..ev.len()].iter().enumerate() {
                if let Some(role) = *role {
                    f(ev.field(i), role);
                }
            }
            return;
        }
        LAST_LAYOUT.set(0);
        let mut all_remembered = ev.len() <= REMEMBERED;
        for (i, field) in ev.fields().enumerate() {
            let role = match last.get_mut(i) {
                Some((name, role)) if name == field.name => *role,
                _ if field.name.len() > REMEMBERED_NAME => {
                    all_remembered = false;
                    lookup(field.name)
                }
                Some((name, role)) => {
                    name.clear();
                    name.push_str(field.name);
                    *role = lookup(field.name);
                    *role
                }
                None if i < REMEMBERED => {
                    let role = lookup(field.name);
                    last.push((field.name.to_string(), role));
                    role
                }
                None => lookup(field.name),
            };
            if let Some(role) = role {
                f(field, role);
            }
        }
        LAST_LAYOUT.set(if all_remembered { layout } else { 0 });
    });
}

/// What [`first`] gives for every role of one event, from one pass over its fields, for
/// code that asks about several roles (a finding's sentence, host and columns).
pub struct Firsts<'a> {
    /// The value of the first field with each name of [`ROLE_FIELDS`], by its place there.
    by_name: [Option<&'a str>; ROLE_FIELDS.len()],
}

impl<'a> Firsts<'a> {
    pub fn of(ev: &'a Event) -> Firsts<'a> {
        let mut by_name = [None; ROLE_FIELDS.len()];
        for_each_role(ev, |f, (_, rank)| {
            if by_name[rank].is_none() {
                by_name[rank] = Some(f.value);
            }
        });
        Firsts { by_name }
    }

    /// The preferred non-blank value of `role`, as [`first`].
    pub fn first(&self, role: Role) -> Option<&'a str> {
        ROLE_FIELDS.iter().zip(&self.by_name).filter(|((_, r), _)| *r == role).find_map(|(_, v)| v.filter(|v| !blank(v)))
    }

    /// The host the event is about, as [`Event::host`].
    pub fn host(&self) -> Option<&'a str> {
        self.first(Role::Host).or_else(|| self.first(Role::ServerAddress))
    }
}

/// Field names with `role`, in order of preference.
pub fn names(role: Role) -> impl Iterator<Item = &'static str> {
    ROLE_FIELDS.iter().filter(move |(_, r)| *r == role).map(|(n, _)| *n)
}

/// A value that says nothing: empty or `-`.
pub fn blank(v: &str) -> bool {
    let v = v.trim();
    v.is_empty() || v == "-"
}

/// The preferred non-blank value of `role` in `ev`.
pub fn first(ev: &Event, role: Role) -> Option<&str> {
    names(role).find_map(|n| ev.get(n).filter(|v| !blank(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_layouts_give_the_roles_a_fresh_lookup_gives() {
        // Events that share a layout, change one name, grow, shrink and differ in case:
        // every field's role must be the plain lookup's, whatever the last event was.
        let layouts: &[&[&str]] = &[
            &["date", "c-ip", "cs-uri-stem", "s-ip"],
            &["date", "c-ip", "cs-uri-stem", "s-ip"],
            &["date", "C-IP", "cs-uri-stem", "s-ip"],
            &["date", "Computer", "cs-uri-stem", "s-ip", "TargetUserName", "nothing"],
            &["date"],
            &["Computer", "date", "c-ip"],
            &[],
            &["date", "c-ip", "cs-uri-stem", "s-ip"],
        ];
        let mut big = Event::default();
        for i in 0..300 {
            big.push_str(if i % 2 == 0 { "c-ip" } else { "Computer" }, "x");
        }
        // Events with the same names get the same layout id, as a reader gives them; each is
        // looked at twice in a row, then after an event of unknown layout.
        let mut ids = std::collections::HashMap::new();
        for names in layouts.iter().map(|l| l.to_vec()).chain([Vec::new()]) {
            let mut ev = Event::default();
            for n in &names {
                ev.push_str(n, "v");
            }
            ev.set_layout(*ids.entry(names.clone()).or_insert_with(crate::new_layout));
            for ev in [&ev, &ev, &big] {
                let mut got = Vec::new();
                for_each_role(ev, |f, role| got.push((f.name.to_string(), role)));
                let want: Vec<_> = ev.fields().filter_map(|f| Some((f.name.to_string(), lookup(f.name)?))).collect();
                assert_eq!(got, want);
            }
        }
        // A name too long to remember, in a position that was remembered before.
        let long = "c".repeat(200);
        let mut ev = Event::default();
        ev.push_str(&long, "v");
        ev.push_str("c-ip", "v");
        ev.set_layout(crate::new_layout());
        for _ in 0..3 {
            let mut got = Vec::new();
            for_each_role(&ev, |f, role| got.push((f.name.to_string(), role)));
            assert_eq!(got, vec![("c-ip".to_string(), (Role::SourceAddress, lookup("c-ip").unwrap().1))]);
        }
    }

    #[test]
    fn roles_are_found_case_insensitively_and_in_order() {
        assert_eq!(role_of("c-ip"), Some(Role::SourceAddress));
        assert_eq!(role_of("COMPUTER"), Some(Role::Host));
        assert_eq!(role_of("Nothing"), None);
        let mut ev = Event::default();
        ev.push_str("SubjectUserName", "-");
        ev.push_str("User", "CORP\\jdoe");
        ev.push_str("TargetUserName", "");
        assert_eq!(first(&ev, Role::Account), Some("CORP\\jdoe"));
        assert_eq!(first(&ev, Role::Host), None);
    }

    #[test]
    fn firsts_agree_with_first_role_by_role() {
        let roles = [
            Role::Host,
            Role::ServerAddress,
            Role::Account,
            Role::SourceAddress,
            Role::DestinationAddress,
            Role::Process,
            Role::ParentProcess,
            Role::CommandLine,
            Role::File,
            Role::Url,
            Role::Mailbox,
            Role::UserAgent,
            Role::Status,
        ];
        let events: [&[(&str, &str)]; 4] = [
            // A blank first field of a name hides a later one of the same name; the next
            // name of the role is tried.
            &[("SubjectUserName", "-"), ("subjectusername", "CORP\\late"), ("User", "CORP\\jdoe"), ("Computer", "")],
            &[("s-ip", "10.0.0.5"), ("c-ip", "203.0.113.9"), ("cs-username", "-"), ("sc-status", "200"), ("cs-uri-stem", "/owa/")],
            &[("COMPUTER", "WS1"), ("Computer", "WS2"), ("Image", "C:\\x.exe"), ("CommandLine", "x -y"), ("TargetFilename", "C:\\t")],
            &[],
        ];
        for fields in events {
            let mut ev = Event::default();
            for (n, v) in fields {
                ev.push_str(n, v);
            }
            let firsts = Firsts::of(&ev);
            for role in roles {
                assert_eq!(firsts.first(role), first(&ev, role), "{role:?} in {fields:?}");
            }
            assert_eq!(firsts.host(), ev.host(), "{fields:?}");
        }
    }

    #[test]
    fn every_field_name_has_one_role() {
        let mut seen = std::collections::HashSet::new();
        for (n, _) in ROLE_FIELDS {
            assert!(seen.insert(n.to_ascii_lowercase()), "{n} listed twice");
        }
    }
}

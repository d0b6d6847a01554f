//! Passwords left as the service desk set them: Security 4724 (reset by another account),
//! with no later 4723 (or 4738 with a new `PasswordLastSet`) by the account itself;
//! the reset's age; whether the account then logged on with it (4624 interactive,
//! remote-interactive or cached, or OWA in IIS logs); an AD export confirms or clears.

use portcullis_event::Timestamp;

use crate::ad::AdExport;
use crate::{Check, Detail, Evidence, LogonVia, Map, Missing, PasswordBasis, Report, Seen, Severity, Subject, Weakness};

/// A reset and a later `pwdLastSet` this close are the same event.
const SAME_SET: i64 = 5 * 60 * 1_000_000;

#[derive(Clone)]
struct Reset {
    at: Timestamp,
    id: u32,
    by: String,
    ev: Evidence,
}

impl Reset {
    /// Whether `new` replaces `old` as the latest reset. The 4738 a domain controller logs
    /// right after a 4724 is the same reset; the 4724 is the better evidence.
    fn replaces(new: &Reset, old: Option<&Reset>) -> bool {
        match old {
            None => true,
            Some(old) => new.at > old.at && !(new.id == 4738 && old.id == 4724 && new.at.0 - old.at.0 <= 60_000_000),
        }
    }
}

#[derive(Default)]
struct Account {
    /// The latest 4738 by another account that set "must change password at next logon"
    /// (`PasswordLastSet` = `%%1794`).
    must_change: Option<Timestamp>,
    last_reset: Option<Reset>,
    resets: u64,
    last_self: Option<(Timestamp, Evidence)>,
    last_logon: Option<(Timestamp, LogonVia, Evidence)>,
}

#[derive(Default)]
pub struct State {
    accounts: Map<String, Account>,
    account_events: u64,
    logon_events: u64,
    dropped: u64,
}

impl State {
    pub fn merge(&mut self, o: State) {
        self.account_events += o.account_events;
        self.logon_events += o.logon_events;
        self.dropped += o.dropped;
        for (k, v) in o.accounts {
            let Some(a) = self.entry(k) else { continue };
            a.resets += v.resets;
            if let Some(r) = v.last_reset
                && Reset::replaces(&r, a.last_reset.as_ref())
            {
                a.last_reset = Some(r);
            }
            a.must_change = a.must_change.max(v.must_change);
            if v.last_self.as_ref().map(|s| s.0) > a.last_self.as_ref().map(|s| s.0) {
                a.last_self = v.last_self;
            }
            if v.last_logon.as_ref().map(|s| s.0) > a.last_logon.as_ref().map(|s| s.0) {
                a.last_logon = v.last_logon;
            }
        }
    }

    fn entry(&mut self, k: String) -> Option<&mut Account> {
        if self.accounts.len() >= crate::MAX_ACCOUNTS && !self.accounts.contains_key(&k) {
            self.dropped += 1;
            return None;
        }
        Some(self.accounts.entry(k).or_default())
    }
}

fn failed(s: &Seen<'_>) -> bool {
    // Audit failure keyword (0x8010000000000000), or a layout's own outcome field.
    s.get("Keywords").is_some_and(|k| k.to_ascii_lowercase().starts_with("0x8010"))
        || s.get("event.outcome").is_some_and(|o| o.eq_ignore_ascii_case("failure"))
}

pub fn scan(s: &Seen<'_>, st: &mut State) {
    let Some(t) = s.ev.timestamp else { return };
    if let Some(id) = s.event_id() {
        match id {
            4723 | 4724 | 4738 => {
                st.account_events += 1;
                if failed(s) {
                    return;
                }
                let Some(target) = s.get("TargetUserName").and_then(crate::account_key) else { return };
                let subject = s.get("SubjectUserName");
                let subject_key = subject.and_then(crate::account_key);
                // Self-service password reset written back by Entra Connect (`MSOL_…`,
                // `Sync_…`) is the user's own choice of password.
                let by_self = subject_key.as_deref() == Some(target.as_str()) || subject_key.as_deref().is_some_and(is_writeback);
                if id == 4738 {
                    // Only a 4738 that sets a password counts; `%%1794` ("never") by another
                    // account marks "must change password at next logon".
                    let Some(pls) = s.get("PasswordLastSet") else { return };
                    if pls.starts_with("%%") {
                        if !by_self && let Some(a) = st.entry(target) {
                            a.must_change = a.must_change.max(Some(t));
                        }
                        return;
                    }
                }
                let by = match (s.get("SubjectDomainName"), subject) {
                    (Some(d), Some(u)) => format!("{d}\\{u}"),
                    (None, Some(u)) => u.to_string(),
                    _ => "unknown".into(),
                };
                let what = |verb: &str| format!("{id} {verb} {target}'s password");
                let Some(a) = st.entry(target.clone()) else { return };
                if by_self {
                    if a.last_self.as_ref().is_none_or(|x| t > x.0) {
                        a.last_self = Some((t, s.evidence(what("account changed its own"))));
                    }
                } else {
                    // A 4724 and its 4738 are one reset.
                    if id != 4738 || a.last_reset.as_ref().is_none_or(|r| r.id != 4724 || (t.0 - r.at.0).abs() > 60_000_000) {
                        a.resets += 1;
                    }
                    let verb = if id == 4724 { format!("{by} reset") } else { format!("{by} set") };
                    let r = Reset { at: t, id, ev: s.evidence(what(&verb)), by };
                    if Reset::replaces(&r, a.last_reset.as_ref()) {
                        a.last_reset = Some(r);
                    }
                }
            }
            4624 => {
                let lt = s.get("LogonType").unwrap_or("");
                if !matches!(lt, "2" | "10" | "11") {
                    return;
                }
                let Some(u) = s.get("TargetUserName").and_then(crate::account_key) else { return };
                st.logon_events += 1;
                logon(st, u, t, LogonVia::Interactive, |u| s.evidence(format!("4624 logon type {lt} by {u}")));
            }
            _ => {}
        }
        return;
    }
    // OWA in IIS logs: an authenticated request under /owa/.
    if let (Some(stem), Some(user)) = (s.get("cs-uri-stem"), s.get("cs-username"))
        && stem.as_bytes().get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"/owa"))
        && s.get("sc-status").is_none_or(|c| c.starts_with('2'))
        && let Some(u) = crate::account_key(user)
    {
        st.logon_events += 1;
        logon(st, u, t, LogonVia::Owa, |_| s.evidence(format!("OWA request {stem} as {user}")));
    }
}

/// The accounts Entra Connect writes self-service password resets back with.
fn is_writeback(account: &str) -> bool {
    account.starts_with("msol_") || account.starts_with("sync_") || account.starts_with("aad_")
}

fn logon(st: &mut State, u: String, t: Timestamp, via: LogonVia, ev: impl FnOnce(&str) -> Evidence) {
    // Only accounts with a reset or a change matter, but order across files is unknown:
    // keep the latest logon of every account (one entry per account).
    let evidence_for = u.clone();
    let Some(a) = st.entry(u) else { return };
    if a.last_logon.as_ref().is_none_or(|x| t > x.0) {
        a.last_logon = Some((t, via, ev(&evidence_for)));
    }
}

pub fn finish(st: &State, ad: Option<&AdExport>, as_of: Timestamp, report: &mut Report) {
    if st.account_events == 0 {
        report.could_not_see.push(crate::Blind::new(Missing::AccountManagementAudit, None));
    }
    if st.logon_events == 0 && ad.is_none() {
        report.could_not_see.push(crate::Blind::new(Missing::InteractiveLogons, None));
    }
    let mut names: Vec<&String> = st.accounts.keys().collect();
    names.sort();
    for name in names {
        let a = &st.accounts[name];
        let Some(r) = &a.last_reset else { continue };
        if a.last_self.as_ref().is_some_and(|s| s.0 >= r.at) {
            continue;
        }
        let ad_user = ad.and_then(|x| x.users.get(name));
        let mut basis = PasswordBasis::ResetInLogs;
        if let Some(pls) = ad_user.and_then(|u| u.pwd_last_set) {
            if pls.0 > r.at.0 + SAME_SET {
                continue; // changed since, says AD
            }
            if (pls.0 - r.at.0).abs() <= SAME_SET {
                basis = PasswordBasis::ResetConfirmedByAd;
            }
        }
        let mut evidence = vec![r.ev.clone()];
        let (mut used_after, mut used_via) = (None, None);
        if let Some((t, via, ev)) = &a.last_logon
            && *t > r.at
        {
            used_after = Some(*t);
            used_via = Some(*via);
            evidence.push(ev.clone());
        } else if let Some(u) = ad_user
            && let Some(ll) = u.last_logon
            && ll > r.at
        {
            used_after = Some(ll);
            used_via = Some(LogonVia::AdLastLogon);
            evidence.push(u.evidence(&ad.map(|x| x.path.clone()).unwrap_or_default(), "lastLogonTimestamp after the reset"));
        }
        // "Must change at next logon" set with the reset: the next logon forces a change.
        let must_change = a.must_change.is_some_and(|m| (m.0 - r.at.0).abs() <= 60_000_000);
        let severity = match (used_after.is_some(), must_change) {
            (true, _) => Severity::High,
            (false, true) => Severity::Low,
            (false, false) => Severity::Medium,
        };
        report.weaknesses.push(Weakness {
            id: crate::stable_id(&["passwords_as_set", name, &r.at.to_string()]),
            check: Check::PasswordsAsSet,
            severity,
            subject: Subject::Account(name.clone()),
            detail: Detail::PasswordAsSet {
                basis,
                set_by: Some(r.by.clone()),
                set_at: r.at,
                age_days: crate::days(r.at, as_of),
                resets: a.resets,
                must_change_at_next_logon: must_change,
                used_after,
                used_via,
            },
            evidence,
        });
    }
    // From the AD export alone: passwords never changed since the account was created.
    let Some(ad) = ad else { return };
    let mut users: Vec<_> = ad.users.values().collect();
    users.sort_by(|a, b| a.account.cmp(&b.account));
    for u in users {
        let (Some(pls), Some(created)) = (u.pwd_last_set, u.when_created) else { continue };
        if (pls.0 - created.0).abs() > SAME_SET {
            continue;
        }
        let logs = st.accounts.get(&u.account);
        if logs.is_some_and(|a| a.last_reset.is_some() || a.last_self.as_ref().is_some_and(|s| s.0 > pls)) {
            continue; // the logs know better
        }
        let mut evidence = vec![u.evidence(&ad.path, "pwdLastSet equals whenCreated")];
        let (mut used_after, mut used_via) = (None, None);
        if let Some((t, via, ev)) = logs.and_then(|a| a.last_logon.as_ref())
            && *t > pls
        {
            used_after = Some(*t);
            used_via = Some(*via);
            evidence.push(ev.clone());
        } else if let Some(ll) = u.last_logon
            && ll > pls
        {
            used_after = Some(ll);
            used_via = Some(LogonVia::AdLastLogon);
        }
        report.weaknesses.push(Weakness {
            id: crate::stable_id(&["passwords_as_set", &u.account, &pls.to_string()]),
            check: Check::PasswordsAsSet,
            severity: if used_after.is_some() { Severity::High } else { Severity::Medium },
            subject: Subject::Account(u.account.clone()),
            detail: Detail::PasswordAsSet {
                basis: PasswordBasis::InitialPasswordInAd,
                set_by: None,
                set_at: pls,
                age_days: crate::days(pls, as_of),
                resets: 0,
                must_change_at_next_logon: false,
                used_after,
                used_via,
            },
            evidence,
        });
    }
}

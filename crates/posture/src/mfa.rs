//! MFA coverage from Entra ID sign-in logs (diagnostic-setting export, Graph export, or
//! Sentinel's `SigninLogs` rows): accounts whose successful sign-ins satisfied a single
//! factor, with the applications, and successful sign-ins over legacy protocols (IMAP,
//! POP, SMTP AUTH, EWS/ActiveSync basic, "Other clients"), which cannot do MFA at all.

use std::collections::BTreeSet;

use portcullis_event::Timestamp;

use crate::{Check, Detail, Evidence, Map, Missing, Report, Seen, Severity, Subject, Weakness};

/// The `clientAppUsed` values Microsoft lists as legacy authentication.
const LEGACY: &[&str] = &[
    "authenticated smtp",
    "autodiscover",
    "exchange activesync",
    "exchange online powershell",
    "exchange web services",
    "imap4",
    "imap",
    "mapi over http",
    "offline address book",
    "outlook anywhere (rpc over http)",
    "outlook service",
    "pop3",
    "pop",
    "reporting web services",
    "other clients",
];

const MAX_APPS: usize = 8;

#[derive(Default)]
struct Tally {
    sign_ins: u64,
    apps: BTreeSet<String>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    evidence: Vec<Evidence>,
}

impl Tally {
    fn add(&mut self, t: Option<Timestamp>, app: Option<&str>, ev: impl FnOnce() -> Evidence) {
        self.sign_ins += 1;
        if let Some(a) = app
            && self.apps.len() < MAX_APPS
        {
            self.apps.insert(a.chars().take(120).collect());
        }
        if let Some(t) = t {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
        if self.evidence.len() < crate::EVIDENCE_PER_WEAKNESS || t.is_some_and(|t| self.evidence.iter().any(|e| e.time > Some(t))) {
            crate::keep_evidence(&mut self.evidence, [ev()]);
        }
    }
    fn merge(&mut self, o: Tally) {
        self.sign_ins += o.sign_ins;
        for a in o.apps {
            if self.apps.len() < MAX_APPS {
                self.apps.insert(a);
            }
        }
        self.first = [self.first, o.first].into_iter().flatten().min();
        self.last = self.last.max(o.last);
        crate::keep_evidence(&mut self.evidence, o.evidence);
    }
}

#[derive(Default)]
pub struct State {
    single: Map<String, Tally>,
    legacy: Map<(String, String), Tally>,
    entra: u64,
    with_requirement: u64,
    okta: u64,
    dropped: u64,
}

impl State {
    pub fn merge(&mut self, o: State) {
        self.entra += o.entra;
        self.with_requirement += o.with_requirement;
        self.okta += o.okta;
        self.dropped += o.dropped;
        for (k, v) in o.single {
            if self.single.len() < crate::MAX_ACCOUNTS || self.single.contains_key(&k) {
                self.single.entry(k).or_default().merge(v);
            }
        }
        for (k, v) in o.legacy {
            if self.legacy.len() < crate::MAX_ACCOUNTS || self.legacy.contains_key(&k) {
                self.legacy.entry(k).or_default().merge(v);
            }
        }
    }
}

fn field<'a>(s: &'a Seen<'_>, name: &str) -> Option<&'a str> {
    // Diagnostic-setting exports nest under `properties.`; Graph and Sentinel do not.
    s.get(&format!("properties.{name}")).or_else(|| s.get(name))
}

pub fn scan(s: &Seen<'_>, st: &mut State) {
    if s.ev.source != portcullis_event::SourceKind::Json {
        return;
    }
    if s.ev.log_type == "okta" {
        st.okta += 1;
        return;
    }
    let Some(upn) = field(s, "userPrincipalName") else { return };
    let client = field(s, "clientAppUsed");
    let app = field(s, "appDisplayName");
    if s.ev.log_type != "azure_signinlogs" && client.is_none() && app.is_none() {
        return;
    }
    st.entra += 1;
    let req = field(s, "authenticationRequirement");
    if req.is_some() {
        st.with_requirement += 1;
    }
    let status = field(s, "status.errorCode").or_else(|| field(s, "resultType"));
    if status.is_some_and(|c| c != "0") {
        return;
    }
    let upn = upn.to_ascii_lowercase();
    let t = s.ev.timestamp;
    if let Some(c) = client
        && LEGACY.contains(&c.to_ascii_lowercase().as_str())
    {
        let key = (upn, c.to_string());
        if st.legacy.len() >= crate::MAX_ACCOUNTS && !st.legacy.contains_key(&key) {
            st.dropped += 1;
            return;
        }
        let what = format!("sign-in by {} over {c}", key.0);
        st.legacy.entry(key).or_default().add(t, app, || s.evidence(what));
        return;
    }
    let Some(req) = req else { return };
    if !req.eq_ignore_ascii_case("singleFactorAuthentication") {
        return;
    }
    if st.single.len() >= crate::MAX_ACCOUNTS && !st.single.contains_key(&upn) {
        st.dropped += 1;
        return;
    }
    let what = format!("single-factor sign-in by {upn} to {}", app.unwrap_or("an application"));
    st.single.entry(upn).or_default().add(t, app, || s.evidence(what));
}

pub fn finish(st: &State, report: &mut Report) {
    if st.okta > 0 {
        report.could_not_see.push(crate::Blind::new(Missing::OktaFactors, None));
    }
    if st.entra == 0 {
        report.could_not_see.push(crate::Blind::new(Missing::SignInLogs, None));
    } else if st.with_requirement == 0 {
        report.could_not_see.push(crate::Blind::new(Missing::AuthenticationRequirement, None));
    }
    for (upn, t) in &st.single {
        report.weaknesses.push(Weakness {
            id: crate::stable_id(&["mfa_single_factor", upn]),
            check: Check::MfaCoverage,
            severity: Severity::High,
            subject: Subject::Account(upn.clone()),
            detail: Detail::SingleFactor { sign_ins: t.sign_ins, apps: t.apps.iter().cloned().collect(), first: t.first, last: t.last },
            evidence: t.evidence.clone(),
        });
    }
    for ((upn, client), t) in &st.legacy {
        report.weaknesses.push(Weakness {
            id: crate::stable_id(&["mfa_legacy", upn, client]),
            check: Check::MfaCoverage,
            severity: Severity::High,
            subject: Subject::Account(upn.clone()),
            detail: Detail::LegacyProtocol { client_app: client.clone(), sign_ins: t.sign_ins, first: t.first, last: t.last },
            evidence: t.evidence.clone(),
        });
    }
}

//! `posture`: the regulator's findings about the Electoral Commission as checks over the
//! logs and exports a team already has — Exchange servers left open after fixes were
//! published, passwords left as the service desk set them, single-factor and legacy
//! sign-ins, and which logs exist (with gaps) — each answer with its evidence, and a
//! separate list of what the logs could not show and the setting that fixes it.
//!
//! Events come through the hunt's readers (`portcullis_sources`), so EVTX, the JSON
//! layouts of other tools, IIS W3C and Exchange logs all work. Files are read in
//! parallel; each keeps per-account, per-source and per-build state (never the events)
//! and the states are merged at the end.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;

use portcullis_event::{Event, SourceKind, Timestamp};

pub mod ad;
mod coverage;
mod mfa;
pub mod model;
mod passwords;
mod patching;

pub use model::*;

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Log files and directories (read as `hunt` reads them).
    pub paths: Vec<PathBuf>,
    /// An AD export of users (CSV or LDIF) with `pwdLastSet`, `whenCreated`, `lastLogonTimestamp`.
    pub ad: Option<PathBuf>,
    /// An Exchange inventory CSV (server and build columns).
    pub inventory: Option<PathBuf>,
    /// Worker threads (0: all cores).
    pub threads: usize,
}

/// Limits on per-file state, so hostile input cannot grow memory without bound.
pub(crate) const MAX_ACCOUNTS: usize = 1_000_000;
pub(crate) const MAX_SOURCES: usize = 100_000;
pub(crate) const MAX_BUILDS: usize = 10_000;

/// Per-file state, merged after reading.
#[derive(Default)]
pub(crate) struct Partial {
    pub passwords: passwords::State,
    pub mfa: mfa::State,
    pub coverage: coverage::State,
    pub patching: patching::State,
    pub events: u64,
    pub last_time: Option<Timestamp>,
}

impl Partial {
    fn merge(&mut self, o: Partial) {
        self.passwords.merge(o.passwords);
        self.mfa.merge(o.mfa);
        self.coverage.merge(o.coverage);
        self.patching.merge(o.patching);
        self.events += o.events;
        self.last_time = self.last_time.max(o.last_time);
    }
}

/// One event, as the checks see it.
pub(crate) struct Seen<'a> {
    pub ev: &'a Event,
    pub file: &'a str,
}

impl Seen<'_> {
    pub fn evidence(&self, what: String) -> Evidence {
        let file = if self.ev.member.is_empty() { self.file.to_string() } else { format!("{}!{}", self.file, self.ev.member) };
        let position =
            if self.ev.source == SourceKind::Windows { Position::Record(self.ev.record) } else { Position::Line(self.ev.record) };
        Evidence { file, position, time: self.ev.timestamp, what }
    }
    pub fn event_id(&self) -> Option<u32> {
        if self.ev.source != SourceKind::Windows {
            return None;
        }
        self.ev.get("EventID").and_then(|v| v.trim().parse().ok())
    }
    pub fn channel(&self) -> &str {
        self.ev.get("Channel").unwrap_or("")
    }
    /// A value, with `-` and empty as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.ev.get(name).map(str::trim).filter(|v| !v.is_empty() && *v != "-")
    }
}

/// A host name as one key: the first DNS label, upper case (`EXCH01.ec.local` → `EXCH01`);
/// addresses are kept whole.
pub fn short_host(h: &str) -> String {
    let h = h.trim();
    if h.is_empty() || h == "-" {
        return "unknown".into();
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return h.to_string();
    }
    h.split('.').next().unwrap_or(h).to_ascii_uppercase()
}

/// An account as one key: lower case, without `DOMAIN\` or `@domain`.
pub fn account_key(u: &str) -> Option<String> {
    let u = u.trim();
    let bare = u.rsplit(['\\', '/']).next().unwrap_or(u);
    let bare = bare.split('@').next().unwrap_or(bare).trim().to_ascii_lowercase();
    if bare.is_empty() || bare == "-" || bare.ends_with('$') || bare == "anonymous logon" || bare.len() > 256 {
        return None;
    }
    Some(bare)
}

/// Reads everything and runs the four checks.
pub fn run(s: &Settings, progress: &(dyn Fn(u64) + Sync)) -> Result<Report, String> {
    let (files, errors) = portcullis_sources::collect_files(&s.paths);
    let mut report = Report { files: files.len(), ..Report::default() };
    report.problems.extend(errors.iter().map(|e| e.to_string()));
    let inventory = match &s.inventory {
        Some(p) => {
            let mut inv = portcullis_exchange::Inventory::default();
            inv.add_csv(p)?;
            Some(inv)
        }
        None => None,
    };
    let ad = match &s.ad {
        Some(p) => Some(ad::read(p)?),
        None => None,
    };
    let opts = portcullis_sources::ReadOptions::default();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(s.threads).build().map_err(|e| e.to_string())?;
    let done = std::sync::atomic::AtomicU64::new(0);
    let partials: Vec<(Partial, Result<portcullis_sources::FileReport, portcullis_sources::SourceError>)> = pool.install(|| {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|path| {
                let mut p = Partial::default();
                let display = path.display().to_string();
                let res = portcullis_sources::read_file(path, &opts, &mut |ev: &Event| {
                    scan(&Seen { ev, file: &display }, &mut p);
                    ControlFlow::Continue(())
                });
                let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                progress(done.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes);
                (p, res)
            })
            .collect()
    });
    let mut all = Partial::default();
    for (p, res) in partials {
        all.merge(p);
        match res {
            Ok(r) => {
                report.skipped += r.skipped;
                for n in &r.notes {
                    if report.problems.len() < 200 {
                        report.problems.push(format!("{}: {n}", r.path.display()));
                    }
                }
            }
            Err(portcullis_sources::SourceError::Unrecognised { path }) => {
                report.not_logs += 1;
                if report.not_logs_examples.len() < 5 {
                    report.not_logs_examples.push(path.display().to_string());
                }
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    conclude(all, inventory.as_ref(), ad.as_ref(), &mut report);
    Ok(report)
}

/// Runs the checks' conclusions over the merged state.
fn conclude(all: Partial, inventory: Option<&portcullis_exchange::Inventory>, ad: Option<&ad::AdExport>, report: &mut Report) {
    report.events = all.events;
    let now = Timestamp::now();
    report.as_of = all.last_time.map(|t| t.min(now));
    let as_of = report.as_of.unwrap_or(now);

    let exchange_servers = patching::finish(&all.patching, inventory, as_of, report);
    passwords::finish(&all.passwords, ad, as_of, report);
    mfa::finish(&all.mfa, report);
    coverage::finish(&all.coverage, &exchange_servers, report);

    report.weaknesses.sort_by(|a, b| {
        (a.check, std::cmp::Reverse(a.severity), a.subject.clone(), a.id.clone()).cmp(&(
            b.check,
            std::cmp::Reverse(b.severity),
            b.subject.clone(),
            b.id.clone(),
        ))
    });
    report.could_not_see.sort();
    report.could_not_see.dedup();
}

fn scan(s: &Seen<'_>, p: &mut Partial) {
    p.events += 1;
    if let Some(t) = s.ev.timestamp {
        p.last_time = p.last_time.max(Some(t));
    }
    coverage::scan(s, &mut p.coverage);
    patching::scan(s, &mut p.patching);
    passwords::scan(s, &mut p.passwords);
    mfa::scan(s, &mut p.mfa);
}

/// Keeps the earliest `EVIDENCE_PER_WEAKNESS` records.
pub(crate) fn keep_evidence(list: &mut Vec<Evidence>, more: impl IntoIterator<Item = Evidence>) {
    list.extend(more);
    if list.len() > EVIDENCE_PER_WEAKNESS {
        list.sort_by(|a, b| (a.time, &a.file, a.position).cmp(&(b.time, &b.file, b.position)));
        list.dedup();
        list.truncate(EVIDENCE_PER_WEAKNESS);
    }
}

/// Days between two instants, rounded down.
pub(crate) fn days(from: Timestamp, to: Timestamp) -> i64 {
    (to.0 - from.0).div_euclid(86_400 * 1_000_000)
}

pub(crate) type Map<K, V> = HashMap<K, V>;

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_event::SourceKind;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn win(id: u32, time: &str, record: u64, fields: &[(&str, &str)]) -> Event {
        let mut e = Event::new(SourceKind::Windows);
        e.push_str("EventID", &id.to_string());
        e.push_str("Channel", if id == 1 { "Microsoft-Windows-Sysmon/Operational" } else { "Security" });
        e.push_str("Computer", "DC01.ec.local");
        for (k, v) in fields {
            e.push_str(k, v);
        }
        e.timestamp = Some(t(time));
        e.record = record;
        e
    }

    /// Each batch is one file (its own partial state), merged in the order given.
    fn check(batches: &[Vec<Event>]) -> Report {
        let mut all = Partial::default();
        for (i, b) in batches.iter().enumerate() {
            let mut p = Partial::default();
            let file = format!("file{i}");
            for ev in b {
                scan(&Seen { ev, file: &file }, &mut p);
            }
            all.merge(p);
        }
        let mut report = Report::default();
        conclude(all, None, None, &mut report);
        report
    }

    fn reset(time: &str, target: &str, record: u64) -> Event {
        win(4724, time, record, &[("SubjectUserName", "helpdesk"), ("SubjectDomainName", "EC"), ("TargetUserName", target)])
    }

    #[test]
    fn passwords_in_any_file_order() {
        let change = |time: &str, who: &str| win(4723, time, 9, &[("SubjectUserName", who), ("TargetUserName", who)]);
        let helpdesk_4738 = win(
            4738,
            "2022-01-10T09:00:00.01Z",
            2,
            &[("SubjectUserName", "helpdesk"), ("TargetUserName", "ann"), ("PasswordLastSet", "1/10/2022 9:00:00 AM")],
        );
        let network = win(4624, "2022-02-01T09:00:00Z", 3, &[("TargetUserName", "ann"), ("LogonType", "3")]);
        let desk = win(4624, "2022-02-02T09:00:00Z", 4, &[("TargetUserName", "EC\\bob"), ("LogonType", "2")]);
        // ann: reset, never changed (an older own change is in another file read first);
        // bob: reset, used at the desk; cat: reset then changed; dan: own 4738.
        let r = check(&[
            vec![change("2021-12-01T00:00:00Z", "ann"), desk, change("2022-01-12T00:00:00Z", "cat")],
            vec![reset("2022-01-10T09:00:00Z", "ann", 1), helpdesk_4738, network, reset("2022-01-11T09:00:00Z", "bob", 5)],
            vec![
                reset("2022-01-11T09:00:00Z", "cat", 6),
                reset("2022-01-11T09:00:00Z", "dan", 7),
                win(
                    4738,
                    "2022-01-13T00:00:00Z",
                    8,
                    &[("SubjectUserName", "dan"), ("TargetUserName", "dan"), ("PasswordLastSet", "1/13/2022")],
                ),
                reset("2022-01-11T09:00:00Z", "WS01$", 10),
                // eve: reset with "must change at next logon", not logged on since.
                reset("2022-01-11T09:00:00Z", "eve", 11),
                win(
                    4738,
                    "2022-01-11T09:00:00.5Z",
                    12,
                    &[("SubjectUserName", "helpdesk"), ("TargetUserName", "eve"), ("PasswordLastSet", "%%1794")],
                ),
                // fay: self-service reset written back by Entra Connect.
                win(4724, "2022-01-11T09:00:00Z", 13, &[("SubjectUserName", "MSOL_0a1b2c3d4e5f"), ("TargetUserName", "fay")]),
            ],
        ]);
        let pw: Vec<&Weakness> = r.weaknesses.iter().filter(|w| w.check == Check::PasswordsAsSet).collect();
        assert_eq!(pw.iter().map(|w| w.subject.name()).collect::<Vec<_>>(), ["bob", "ann", "eve"]);
        assert_eq!(pw[2].severity, Severity::Low);
        assert!(matches!(pw[2].detail, Detail::PasswordAsSet { must_change_at_next_logon: true, .. }));
        let Detail::PasswordAsSet { resets, used_after, set_by, .. } = &pw[1].detail else { panic!() };
        assert_eq!((*resets, *used_after, set_by.as_deref()), (1, None, Some("EC\\helpdesk")), "a 4724 and its 4738 are one reset");
        assert_eq!(pw[1].evidence[0].position, Position::Record(1), "the 4724 is the evidence");
        assert_eq!(pw[1].severity, Severity::Medium);
        let Detail::PasswordAsSet { used_via, .. } = &pw[0].detail else { panic!() };
        assert_eq!((*used_via, pw[0].severity), (Some(LogonVia::Interactive), Severity::High));
    }

    fn sign_in(time: &str, upn: &str, client: &str, req: Option<&str>, error: &str) -> Event {
        let mut e = Event::new(SourceKind::Json);
        e.log_type.push_str("azure_signinlogs");
        e.push_str("properties.userPrincipalName", upn);
        e.push_str("properties.clientAppUsed", client);
        e.push_str("properties.appDisplayName", "Office 365 Exchange Online");
        if let Some(r) = req {
            e.push_str("properties.authenticationRequirement", r);
        }
        e.push_str("properties.status.errorCode", error);
        e.timestamp = Some(t(time));
        e
    }

    #[test]
    fn single_factor_and_legacy_sign_ins() {
        let r = check(&[vec![
            sign_in("2022-03-01T10:00:00Z", "a@x", "Browser", Some("singleFactorAuthentication"), "0"),
            sign_in("2022-03-01T10:00:00Z", "b@x", "Browser", Some("singleFactorAuthentication"), "50126"),
            sign_in("2022-03-01T10:00:00Z", "c@x", "Browser", Some("multiFactorAuthentication"), "0"),
            sign_in("2022-03-01T10:00:00Z", "d@x", "IMAP4", Some("singleFactorAuthentication"), "0"),
            sign_in("2022-03-01T10:00:00Z", "e@x", "POP3", None, "50053"),
        ]]);
        let mfa: Vec<String> = r.weaknesses.iter().filter(|w| w.check == Check::MfaCoverage).map(|w| w.subject.name()).collect();
        assert_eq!(mfa, ["a@x", "d@x"]);
        assert!(!r.could_not_see.iter().any(|b| b.check == Check::MfaCoverage));
        let r = check(&[vec![sign_in("2022-03-01T10:00:00Z", "a@x", "Browser", None, "0")]]);
        assert!(r.could_not_see.iter().any(|b| b.missing == Missing::AuthenticationRequirement));
        let r = check(&[vec![sign_in("2022-03-01T10:00:00Z", "a@x", "IMAP4", Some("singleFactorAuthentication"), "0")]]);
        assert!(!r.could_not_see.iter().any(|b| b.missing == Missing::AuthenticationRequirement), "legacy sign-ins carry it too");
    }

    fn iis(time: Timestamp, line: u64) -> Event {
        let mut e = Event::new(SourceKind::W3c);
        e.push_str("s-computername", "EXCH01");
        e.push_str("cs-uri-stem", "/owa/healthcheck.htm");
        e.push_str("cs-uri-query", "-");
        e.push_str("c-ip", "127.0.0.1");
        e.timestamp = Some(time);
        e.record = line;
        e
    }

    #[test]
    fn gaps_only_where_the_source_is_continuous() {
        let start = t("2022-01-01T00:00:00Z").0;
        let hour = 3_600_000_000;
        // 6 events a day for 60 days, none on days 30–33; and a sparse source.
        let mut dense = Vec::new();
        for h in 0..60 * 24 {
            if h % 4 == 0 && !(30 * 24..34 * 24).contains(&h) {
                dense.push(iis(Timestamp(start + h * hour), h as u64));
            }
        }
        let sparse: Vec<Event> = (0..20)
            .map(|d| win(4624, &Timestamp(start + d * 3 * 24 * hour).to_string(), d as u64, &[("TargetUserName", "x"), ("LogonType", "3")]))
            .collect();
        let r = check(&[dense, sparse]);
        let gaps: Vec<&Weakness> = r.weaknesses.iter().filter(|w| w.check == Check::LoggingCoverage).collect();
        assert_eq!(gaps.len(), 1, "{gaps:#?}");
        let Detail::LoggingGap { from, to, hours, .. } = &gaps[0].detail else { panic!() };
        assert_eq!((*from, *to, *hours), (t("2022-01-30T20:00:00Z"), t("2022-02-04T00:00:00Z"), 100));
        assert_eq!(gaps[0].subject, Subject::Log { host: "EXCH01".into(), source: "IIS/W3C".into() });
        let sparse = r.coverage.iter().find(|c| c.host == "DC01").unwrap();
        assert!(!sparse.continuous);
        // The IIS log has no user agent: said plainly for the Exchange server it comes from.
        assert!(r.could_not_see.iter().any(|b| b.missing == Missing::IisUserAgent));
        assert!(r.could_not_see.iter().any(|b| b.missing == Missing::HttpProxyLogs));
    }

    fn proxy(time: &str, rev: &str) -> Event {
        let mut e = Event::new(SourceKind::ExchangeCsv);
        e.log_type.push_str("HttpProxy Logs");
        for (k, v) in [
            ("MajorVersion", "15"),
            ("MinorVersion", "1"),
            ("BuildVersion", "2176"),
            ("RevisionVersion", rev),
            ("ServerHostName", "EXCH01"),
        ] {
            e.push_str(k, v);
        }
        e.timestamp = Some(t(time));
        e.record = 7;
        e
    }

    #[test]
    fn days_open_after_each_fix() {
        let r = check(&[vec![proxy("2021-06-01T00:00:00Z", "2"), proxy("2021-09-01T00:00:00Z", "2"), proxy("2021-09-10T00:00:00Z", "14")]]);
        let p: Vec<&Weakness> = r.weaknesses.iter().filter(|w| w.check == Check::Patching).collect();
        assert_eq!(p.len(), 2, "ProxyLogon and ProxyShell fixed late; ProxyNotShell's fix came after the logs");
        for w in &p {
            let Detail::OpenAfterFix { chain, days_open_after_fix, still_open, fixed_build, .. } = &w.detail else { panic!() };
            assert!(!still_open);
            assert_eq!(fixed_build.as_deref(), Some("15.1.2176.14"));
            assert_eq!(w.severity, Severity::Medium);
            let want = if *chain == "ProxyShell" { 122 } else { 192 };
            assert_eq!(*days_open_after_fix, want, "{chain}");
        }
        let r = check(&[vec![proxy("2021-06-01T00:00:00Z", "2")]]);
        let sev = |c: &str| {
            r.weaknesses.iter().find(|w| matches!(&w.detail, Detail::OpenAfterFix { chain, .. } if *chain == c)).map(|w| w.severity)
        };
        assert_eq!(sev("ProxyShell"), Some(Severity::High), "still open, 21 days after the fix");
        assert_eq!(sev("ProxyLogon"), Some(Severity::Critical), "still open, 91 days after the fix");
        let r = check(&[vec![]]);
        assert!(r.could_not_see.iter().any(|b| b.missing == Missing::ExchangeBuilds));
    }

    #[test]
    fn keys() {
        assert_eq!(short_host("EXCH01.ec.local"), "EXCH01");
        assert_eq!(short_host("10.1.2.3"), "10.1.2.3");
        assert_eq!(account_key("EC\\Amelia.Smith").as_deref(), Some("amelia.smith"));
        assert_eq!(account_key("amelia.smith@ec.example").as_deref(), Some("amelia.smith"));
        assert_eq!(account_key("WS01$"), None);
        assert_eq!(account_key("-"), None);
    }
}

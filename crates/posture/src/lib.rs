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
    report.events = all.events;
    let now = Timestamp::now();
    report.as_of = all.last_time.map(|t| t.min(now));
    let as_of = report.as_of.unwrap_or(now);

    let exchange_servers = patching::finish(&all.patching, inventory.as_ref(), as_of, &mut report);
    passwords::finish(&all.passwords, ad.as_ref(), as_of, &mut report);
    mfa::finish(&all.mfa, &mut report);
    coverage::finish(&all.coverage, &exchange_servers, &mut report);

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
    Ok(report)
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

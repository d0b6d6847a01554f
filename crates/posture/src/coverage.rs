//! Logging coverage: per host and source, the period covered and the gaps (a day or more
//! without events in a source whose quiet days still have events), and whether the logs
//! the Exchange chains need exist on each Exchange server: IIS W3C with cs-uri-query,
//! cs(User-Agent) and c-ip, HttpProxy, MSExchange Management, process creation with
//! command lines (Sysmon or 4688), PowerShell 4104.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_event::{SourceKind, Timestamp};

use crate::{Check, Detail, Map, Missing, Report, Seen, Severity, SourceCoverage, Subject, Weakness};

const DAY: i64 = 86_400 * 1_000_000;
const HOUR: i64 = 3_600 * 1_000_000;
/// Days tracked per source (over a century); past it the source is not checked for gaps.
const MAX_DAYS: usize = 40_000;
/// A source is checked for gaps once it spans this many days.
const MIN_SPAN_DAYS: i64 = 14;
/// A gap is reported when the source's quiet days (10th percentile) would have put at
/// least this many events into it.
const MIN_EXPECTED_IN_GAP: i64 = 8;
const MAX_GAPS_PER_SOURCE: usize = 20;

#[derive(Clone, Copy)]
struct DayStat {
    count: u32,
    first: i64,
    last: i64,
}

#[derive(Default)]
struct Source {
    events: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    days: BTreeMap<i64, DayStat>,
    overflow: bool,
}

impl Source {
    fn add(&mut self, t: Option<Timestamp>) {
        self.events += 1;
        let Some(t) = t else { return };
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = self.last.max(Some(t));
        if self.overflow {
            return;
        }
        let d = t.0.div_euclid(DAY);
        let room = self.days.len() < MAX_DAYS;
        match self.days.get_mut(&d) {
            Some(s) => {
                s.count = s.count.saturating_add(1);
                s.first = s.first.min(t.0);
                s.last = s.last.max(t.0);
            }
            None if room => {
                self.days.insert(d, DayStat { count: 1, first: t.0, last: t.0 });
            }
            None => {
                self.overflow = true;
                self.days.clear();
            }
        }
    }
    fn merge(&mut self, o: Source) {
        self.events += o.events;
        self.first = [self.first, o.first].into_iter().flatten().min();
        self.last = self.last.max(o.last);
        self.overflow |= o.overflow;
        if self.overflow {
            self.days.clear();
            return;
        }
        for (d, s) in o.days {
            match self.days.get_mut(&d) {
                Some(x) => {
                    x.count = x.count.saturating_add(s.count);
                    x.first = x.first.min(s.first);
                    x.last = x.last.max(s.last);
                }
                None => {
                    self.days.insert(d, s);
                }
            }
        }
        if self.days.len() > MAX_DAYS {
            self.overflow = true;
            self.days.clear();
        }
    }
}

#[derive(Default, Clone, Copy)]
struct HostFlags {
    iis: u64,
    iis_exchange_paths: bool,
    iis_uri_query: bool,
    iis_user_agent: bool,
    iis_client_ip: bool,
    httpproxy: u64,
    management: u64,
    exchange_logs: bool,
    sysmon_process: u64,
    process_4688: u64,
    process_4688_command_line: u64,
    script_block: u64,
}

impl HostFlags {
    fn merge(&mut self, o: &HostFlags) {
        self.iis += o.iis;
        self.iis_exchange_paths |= o.iis_exchange_paths;
        self.iis_uri_query |= o.iis_uri_query;
        self.iis_user_agent |= o.iis_user_agent;
        self.iis_client_ip |= o.iis_client_ip;
        self.httpproxy += o.httpproxy;
        self.management += o.management;
        self.exchange_logs |= o.exchange_logs;
        self.sysmon_process += o.sysmon_process;
        self.process_4688 += o.process_4688;
        self.process_4688_command_line += o.process_4688_command_line;
        self.script_block += o.script_block;
    }
}

/// The last event's raw host and source and the key they made: a file is mostly one host
/// and one source, so keys are built once per change, not per event.
struct Last {
    kind: SourceKind,
    cloud: Option<&'static str>,
    raw_host: String,
    raw_source: String,
    key: (String, String),
}

#[derive(Default)]
pub struct State {
    last: Option<Last>,
    sources: Map<(String, String), Source>,
    hosts: Map<String, HostFlags>,
    dropped: u64,
}

impl State {
    pub fn merge(&mut self, o: State) {
        self.dropped += o.dropped;
        for (k, v) in o.sources {
            if self.sources.len() < crate::MAX_SOURCES || self.sources.contains_key(&k) {
                self.sources.entry(k).or_default().merge(v);
            }
        }
        for (k, v) in o.hosts {
            if self.hosts.len() < crate::MAX_SOURCES || self.hosts.contains_key(&k) {
                self.hosts.entry(k).or_default().merge(&v);
            }
        }
    }
}

const EXCHANGE_PATHS: &[&str] =
    &["/owa", "/ecp", "/autodiscover", "/ews", "/mapi", "/microsoft-server-activesync", "/powershell", "/rpc", "/oab"];

pub fn scan(s: &Seen<'_>, st: &mut State) {
    let ev = s.ev;
    let cloud = match ev.log_type.as_str() {
        "okta" => Some("Okta System Log"),
        "azure_signinlogs" => Some("Entra ID sign-ins"),
        _ if ev.source == SourceKind::Json && (s.get("userPrincipalName").is_some() || s.get("properties.userPrincipalName").is_some()) => {
            Some("Entra ID sign-ins")
        }
        _ => None,
    };
    let raw_host = ev.host().unwrap_or("");
    let raw_source = match ev.source {
        SourceKind::Windows => ev.get("Channel").unwrap_or(""),
        SourceKind::W3c => "",
        SourceKind::ExchangeCsv | SourceKind::Json => ev.log_type.as_str(),
    };
    let same =
        st.last.as_ref().is_some_and(|l| l.kind == ev.source && l.cloud == cloud && l.raw_host == raw_host && l.raw_source == raw_source);
    if !same {
        let key = match cloud {
            Some(c) => ("cloud".to_string(), c.to_string()),
            None => (ev.host().map(crate::short_host).unwrap_or_else(|| "unknown".into()), ev.log_name()),
        };
        st.last = Some(Last { kind: ev.source, cloud, raw_host: raw_host.into(), raw_source: raw_source.into(), key });
    }
    let Some(key) = st.last.as_ref().map(|l| &l.key) else { return };
    let room = st.sources.len() < crate::MAX_SOURCES;
    match st.sources.get_mut(key) {
        Some(src) => src.add(ev.timestamp),
        None if room => {
            let mut src = Source::default();
            src.add(ev.timestamp);
            st.sources.insert(key.clone(), src);
        }
        None => {
            st.dropped += 1;
            return;
        }
    }
    let host = &key.0;
    if !st.hosts.contains_key(host) {
        if st.hosts.len() >= crate::MAX_SOURCES {
            return;
        }
        st.hosts.insert(host.clone(), HostFlags::default());
    }
    let Some(f) = st.hosts.get_mut(host) else { return };
    match ev.source {
        SourceKind::W3c => {
            f.iis += 1;
            f.iis_uri_query |= ev.get("cs-uri-query").is_some();
            f.iis_user_agent |= ev.get("cs(User-Agent)").is_some();
            f.iis_client_ip |= ev.get("c-ip").is_some();
            if !f.iis_exchange_paths
                && let Some(stem) = ev.get("cs-uri-stem")
            {
                let l = stem.to_ascii_lowercase();
                f.iis_exchange_paths = EXCHANGE_PATHS.iter().any(|p| l.starts_with(p));
            }
        }
        SourceKind::ExchangeCsv => {
            f.exchange_logs = true;
            let lt = ev.log_type.to_ascii_lowercase();
            if lt.contains("httpproxy") || (ev.get("RoutingHint").is_some() && ev.get("AnchorMailbox").is_some()) {
                f.httpproxy += 1;
            }
        }
        SourceKind::Windows => {
            let channel = s.channel();
            let id = s.event_id();
            if channel.eq_ignore_ascii_case("MSExchange Management") {
                f.management += 1;
                f.exchange_logs = true;
            } else if id == Some(1) && channel.to_ascii_lowercase().contains("sysmon") {
                if s.get("CommandLine").is_some() {
                    f.sysmon_process += 1;
                }
            } else if id == Some(4688) {
                f.process_4688 += 1;
                if s.get("CommandLine").is_some() {
                    f.process_4688_command_line += 1;
                }
            } else if id == Some(4104) && channel.to_ascii_lowercase().contains("powershell") {
                f.script_block += 1;
            }
        }
        SourceKind::Json => {}
    }
}

fn is_named(host: &str) -> bool {
    host != "unknown" && host != "cloud" && host.parse::<std::net::IpAddr>().is_err()
}

pub fn finish(st: &State, servers_from_builds: &BTreeSet<String>, report: &mut Report) {
    let mut keys: Vec<&(String, String)> = st.sources.keys().collect();
    keys.sort();
    for k in keys {
        let src = &st.sources[k];
        let (gaps, continuous) = gaps(k, src, report);
        let span = match (src.first, src.last) {
            (Some(f), Some(l)) => (l.0.div_euclid(DAY) - f.0.div_euclid(DAY) + 1) as u64,
            _ => 0,
        };
        report.coverage.push(SourceCoverage {
            host: k.0.clone(),
            source: k.1.clone(),
            events: src.events,
            first: src.first,
            last: src.last,
            days_with_events: src.days.len() as u64,
            days_spanned: span,
            continuous,
            gaps,
        });
    }
    // The Exchange servers: named in builds, or writing Exchange's own logs, or serving
    // Exchange paths in IIS under their own name.
    let mut servers: BTreeSet<String> = servers_from_builds.clone();
    for (h, f) in &st.hosts {
        if is_named(h) && (f.exchange_logs || (f.iis > 0 && f.iis_exchange_paths)) {
            servers.insert(h.clone());
        }
    }
    // IIS logs written without s-computername name their host by address only.
    let mut anonymous_iis = HostFlags::default();
    for (h, f) in &st.hosts {
        if !is_named(h) && f.iis_exchange_paths {
            anonymous_iis.merge(f);
        }
    }
    let none = HostFlags::default();
    let blind = |m: Missing, host: &str, report: &mut Report| {
        report.could_not_see.push(crate::Blind::new(m, Some(Subject::Host(host.to_string()))))
    };
    for server in &servers {
        let f = st.hosts.get(server).unwrap_or(&none);
        let iis = if f.iis > 0 { f } else { &anonymous_iis };
        if iis.iis == 0 {
            blind(Missing::IisLogs, server, report);
        } else {
            if !iis.iis_uri_query {
                blind(Missing::IisUriQuery, server, report);
            }
            if !iis.iis_user_agent {
                blind(Missing::IisUserAgent, server, report);
            }
            if !iis.iis_client_ip {
                blind(Missing::IisClientIp, server, report);
            }
        }
        if f.httpproxy == 0 {
            blind(Missing::HttpProxyLogs, server, report);
        }
        if f.management == 0 {
            blind(Missing::ExchangeManagementLog, server, report);
        }
        process_blinds(f, Some(server), report);
    }
    if servers.is_empty() {
        let mut all = HostFlags::default();
        for f in st.hosts.values() {
            all.merge(f);
        }
        process_blinds(&all, None, report);
    }
}

fn process_blinds(f: &HostFlags, host: Option<&String>, report: &mut Report) {
    let subject = host.map(|h| Subject::Host(h.clone()));
    if f.sysmon_process == 0 && f.process_4688 == 0 {
        report.could_not_see.push(crate::Blind::new(Missing::ProcessCreation, subject.clone()));
    } else if f.sysmon_process == 0 && f.process_4688_command_line == 0 {
        report.could_not_see.push(crate::Blind::new(Missing::ProcessCommandLine, subject.clone()));
    }
    if f.script_block == 0 {
        report.could_not_see.push(crate::Blind::new(Missing::PowerShellScriptBlock, subject));
    }
}

/// Reports the source's gaps; returns how many and whether the source is continuous.
fn gaps(k: &(String, String), src: &Source, report: &mut Report) -> (usize, bool) {
    let (Some(&first_day), Some(&last_day)) = (src.days.keys().next(), src.days.keys().next_back()) else { return (0, false) };
    let span = last_day - first_day + 1;
    // A span of centuries (hostile or broken clocks) is not a log to find gaps in.
    if src.overflow || !(MIN_SPAN_DAYS..=MAX_DAYS as i64 * 4).contains(&span) {
        return (0, false);
    }
    let mut counts: Vec<u32> = (first_day..=last_day).map(|d| src.days.get(&d).map_or(0, |s| s.count)).collect();
    counts.sort_unstable();
    let quiet = counts[counts.len() / 10] as i64;
    if quiet == 0 {
        return (0, false);
    }
    let mut found = 0;
    let mut prev: Option<i64> = None;
    for s in src.days.values() {
        if let Some(p) = prev {
            let gap = s.first - p;
            if gap >= DAY && quiet * gap / DAY >= MIN_EXPECTED_IN_GAP {
                found += 1;
                if found <= MAX_GAPS_PER_SOURCE {
                    let (from, to) = (Timestamp(p), Timestamp(s.first));
                    report.weaknesses.push(Weakness {
                        id: crate::stable_id(&["logging_gap", &k.0, &k.1, &from.to_string()]),
                        check: Check::LoggingCoverage,
                        severity: Severity::Medium,
                        subject: Subject::Log { host: k.0.clone(), source: k.1.clone() },
                        detail: Detail::LoggingGap { from, to, hours: gap / HOUR, typical_daily_events: quiet as u64 },
                        evidence: Vec::new(),
                    });
                }
            }
        }
        prev = Some(s.last);
    }
    (found, true)
}

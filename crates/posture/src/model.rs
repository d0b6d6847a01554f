//! The typed result of `posture`: weaknesses (with severity, subject and evidence) and
//! the separate statements of what the supplied logs could not show.

use portcullis_event::Timestamp;
use serde::Serialize;

/// The four checks, after the regulator's findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Exchange servers left open to an exploit chain after its fix was published.
    Patching,
    /// Passwords left as the service desk set them.
    PasswordsAsSet,
    /// Accounts and applications signing in with one factor, legacy protocols.
    MfaCoverage,
    /// Which logs exist, for which period, with which gaps.
    LoggingCoverage,
}

impl Check {
    pub const ALL: [Check; 4] = [Check::Patching, Check::PasswordsAsSet, Check::MfaCoverage, Check::LoggingCoverage];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Patching => "patching",
            Check::PasswordsAsSet => "passwords_as_set",
            Check::MfaCoverage => "mfa_coverage",
            Check::LoggingCoverage => "logging_coverage",
        }
    }
}

/// How much a weakness matters, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    pub fn rank(self) -> i64 {
        self as i64
    }
}

/// What a weakness is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Subject {
    Host(String),
    Account(String),
    App(String),
    /// One log source on one host (`IIS/W3C` on `EXCH01`).
    Log {
        host: String,
        source: String,
    },
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Host(_) => "host",
            Subject::Account(_) => "account",
            Subject::App(_) => "app",
            Subject::Log { .. } => "log",
        }
    }
    pub fn name(&self) -> String {
        match self {
            Subject::Host(s) | Subject::Account(s) | Subject::App(s) => s.clone(),
            Subject::Log { host, source } => format!("{source} on {host}"),
        }
    }
}

/// Where in a file a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// EVTX `EventRecordID` (Windows events in any layout).
    Record(u64),
    /// 1-based line (line formats), or row of a CSV export.
    Line(u64),
}

/// One record that supports a weakness.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Evidence {
    /// The file (and `!member` inside an archive).
    pub file: String,
    pub position: Position,
    pub time: Option<Timestamp>,
    /// What the record shows, in a few words (`4724 reset by EC\helpdesk`).
    pub what: String,
}

impl Evidence {
    /// `file:line` or `file#record`.
    pub fn at(&self) -> String {
        match self.position {
            Position::Record(r) => format!("{}#{r}", self.file),
            Position::Line(l) => format!("{}:{l}", self.file),
        }
    }
}

/// How an account used a password after it was set by someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogonVia {
    /// Security 4624, logon type 2 (interactive), 10 (remote interactive) or 11 (cached).
    Interactive,
    /// An authenticated OWA request in IIS logs.
    Owa,
    /// `lastLogonTimestamp` in an AD export after `pwdLastSet`.
    AdLastLogon,
}

/// Where a password finding was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordBasis {
    /// Security 4724 (reset by another account) and no later change by the account.
    ResetInLogs,
    /// The logs' reset, and the AD export's `pwdLastSet` is still that reset.
    ResetConfirmedByAd,
    /// An AD export: `pwdLastSet` equals `whenCreated`, the password the account was created with.
    InitialPasswordInAd,
}

/// What was found, with its figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    /// An Exchange server open to a chain after the fix was published.
    OpenAfterFix {
        chain: &'static str,
        cves: &'static str,
        fix_published: Timestamp,
        /// The open build last seen.
        build: String,
        /// First and last sighting of an open build.
        open_seen_from: Timestamp,
        open_seen_until: Timestamp,
        /// The first sighting of a fixed build after it, if any.
        fixed_seen: Option<Timestamp>,
        fixed_build: Option<String>,
        /// Days from the fix's publication to the fixed sighting (or the last open sighting).
        days_open_after_fix: i64,
        still_open: bool,
        remedy: String,
    },
    /// Only a three-part build (the CU) was seen: whether the update was installed is unknown.
    MaybeOpenAfterFix {
        chain: &'static str,
        cves: &'static str,
        fix_published: Timestamp,
        build: String,
        last_seen: Timestamp,
        remedy: String,
    },
    /// A password set by another account (or at creation) and never changed by its owner.
    PasswordAsSet {
        basis: PasswordBasis,
        set_by: Option<String>,
        set_at: Timestamp,
        /// Days from `set_at` to the end of the evidence (`as_of`).
        age_days: i64,
        resets: u64,
        /// The reset also set "must change password at next logon" (a 4738 with
        /// `PasswordLastSet` `%%1794`): the next logon forces a change.
        must_change_at_next_logon: bool,
        used_after: Option<Timestamp>,
        used_via: Option<LogonVia>,
    },
    /// Successful sign-ins that satisfied a single factor.
    SingleFactor { sign_ins: u64, apps: Vec<String>, first: Option<Timestamp>, last: Option<Timestamp> },
    /// Successful sign-ins over a legacy protocol (no MFA possible).
    LegacyProtocol { client_app: String, sign_ins: u64, first: Option<Timestamp>, last: Option<Timestamp> },
    /// A stretch with no events in a source that is otherwise continuous.
    LoggingGap { from: Timestamp, to: Timestamp, hours: i64, typical_daily_events: u64 },
}

/// One weakness found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Weakness {
    /// Stable: the same data gives the same id.
    pub id: String,
    pub check: Check,
    pub severity: Severity,
    pub subject: Subject,
    pub detail: Detail,
    /// Up to [`EVIDENCE_PER_WEAKNESS`] records, earliest first.
    pub evidence: Vec<Evidence>,
}

pub const EVIDENCE_PER_WEAKNESS: usize = 5;

/// Something the supplied logs could not show, and what fixes that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Missing {
    /// No Exchange build evidence and no inventory.
    ExchangeBuilds,
    /// Only CU-level (three-part) builds: security-update level unknown.
    SecurityUpdateLevel,
    /// No IIS W3C logs from an Exchange server.
    IisLogs,
    IisUriQuery,
    IisUserAgent,
    IisClientIp,
    HttpProxyLogs,
    ExchangeManagementLog,
    /// Neither Sysmon process creation nor 4688.
    ProcessCreation,
    /// 4688 without command lines.
    ProcessCommandLine,
    PowerShellScriptBlock,
    /// No 4724/4723/4738 at all.
    AccountManagementAudit,
    /// No 4624 interactive logons (and no OWA in IIS).
    InteractiveLogons,
    /// No Entra ID (or Okta) sign-in logs.
    SignInLogs,
    /// Entra sign-ins without `authenticationRequirement`.
    AuthenticationRequirement,
    /// Okta System Log present: not assessed for single-factor sign-ins.
    OktaFactors,
}

/// Serialised by [`Missing::as_str`], the name `docs/formats.md` lists.
impl Serialize for Missing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::ExchangeBuilds => "exchange_builds",
            Missing::SecurityUpdateLevel => "security_update_level",
            Missing::IisLogs => "iis_logs",
            Missing::IisUriQuery => "iis_uri_query",
            Missing::IisUserAgent => "iis_user_agent",
            Missing::IisClientIp => "iis_client_ip",
            Missing::HttpProxyLogs => "httpproxy_logs",
            Missing::ExchangeManagementLog => "exchange_management_log",
            Missing::ProcessCreation => "process_creation",
            Missing::ProcessCommandLine => "process_command_line",
            Missing::PowerShellScriptBlock => "powershell_script_block",
            Missing::AccountManagementAudit => "account_management_audit",
            Missing::InteractiveLogons => "interactive_logons",
            Missing::SignInLogs => "sign_in_logs",
            Missing::AuthenticationRequirement => "authentication_requirement",
            Missing::OktaFactors => "okta_factors",
        }
    }

    pub fn check(self) -> Check {
        match self {
            Missing::ExchangeBuilds | Missing::SecurityUpdateLevel => Check::Patching,
            Missing::AccountManagementAudit | Missing::InteractiveLogons => Check::PasswordsAsSet,
            Missing::SignInLogs | Missing::AuthenticationRequirement | Missing::OktaFactors => Check::MfaCoverage,
            _ => Check::LoggingCoverage,
        }
    }

    /// What could not have been seen, plainly.
    pub fn consequence(self) -> &'static str {
        match self {
            Missing::ExchangeBuilds => {
                "you could not have seen how long any Exchange server stayed unpatched: no build was found in the logs"
            }
            Missing::SecurityUpdateLevel => {
                "you could not have seen whether the security updates were installed: the logs show only the cumulative update (three-part build)"
            }
            Missing::IisLogs => {
                "you could not have seen the exploit requests of ProxyLogon, ProxyShell, ProxyNotShell or OWASSRF, nor webshell use: no IIS logs from the Exchange server"
            }
            Missing::IisUriQuery => {
                "you could not have seen ProxyShell/ProxyNotShell SSRF (`autodiscover.json?@…/powershell`): the IIS logs have no cs-uri-query"
            }
            Missing::IisUserAgent => {
                "you could not have seen attack tools' user agents (python-requests, AntSword, zgrab): the IIS logs have no cs(User-Agent)"
            }
            Missing::IisClientIp => "you could not have seen where exploit requests came from: the IIS logs have no c-ip",
            Missing::HttpProxyLogs => {
                "you could not have seen the proxied backend requests (AnchorMailbox ServerInfo~…, /powershell via autodiscover) that Exchange's HttpProxy log records"
            }
            Missing::ExchangeManagementLog => {
                "you could not have seen the cmdlets a chain runs (New-ManagementRoleAssignment, New-MailboxExportRequest to .aspx, Set-OabVirtualDirectory, New-InboxRule)"
            }
            Missing::ProcessCreation => {
                "you could not have seen w3wp.exe or UMWorkerProcess.exe starting cmd.exe/powershell.exe (webshell commands): no process creation events"
            }
            Missing::ProcessCommandLine => {
                "you could not have seen what the webshell ran (China Chopper `&whoami&echo [S]`, certutil, rar): 4688 events carry no command line"
            }
            Missing::PowerShellScriptBlock => {
                "you could not have seen the PowerShell the intruder ran (Exchange cmdlets via the backend, download cradles): no PowerShell 4104 script block events"
            }
            Missing::AccountManagementAudit => {
                "you could not have seen passwords reset by the service desk and never changed: no 4724/4723/4738 account management events"
            }
            Missing::InteractiveLogons => {
                "you could not have seen accounts logging on with a password someone else set: no 4624 interactive logons and no OWA requests"
            }
            Missing::SignInLogs => "you could not have seen single-factor sign-ins or legacy protocols in use: no Entra ID sign-in logs",
            Missing::AuthenticationRequirement => {
                "you could not have seen which sign-ins used one factor: the sign-in records carry no authenticationRequirement"
            }
            Missing::OktaFactors => {
                "you could not have seen single-factor sign-ins through Okta here: the Okta System Log was read for coverage only (single-factor and legacy use are judged from Entra ID sign-in logs)"
            }
        }
    }

    /// The Microsoft setting or log that fixes it.
    pub fn fix(self) -> &'static str {
        match self {
            Missing::ExchangeBuilds => {
                "give --inventory (server,build CSV from `Get-ExchangeServer | Select Name,AdminDisplayVersion` or `Get-Command Exsetup.exe | % FileVersionInfo`), or collect IIS and HttpProxy logs from the Exchange servers"
            }
            Missing::SecurityUpdateLevel => {
                "collect HttpProxy logs (they record the full build) or give --inventory with the Exsetup.exe file version of each server"
            }
            Missing::IisLogs => {
                "collect %SystemDrive%\\inetpub\\logs\\LogFiles\\W3SVC* from every Exchange server (IIS Manager → Logging: W3C format, keep them longer than the default rotation)"
            }
            Missing::IisUriQuery | Missing::IisUserAgent | Missing::IisClientIp => {
                "IIS Manager → server → Logging → Select Fields: tick URI Query, User Agent and Client IP Address (W3C), on both Default Web Site and Exchange Back End"
            }
            Missing::HttpProxyLogs => {
                "collect %ExchangeInstallPath%Logging\\HttpProxy\\<protocol>\\ (Exchange writes it by default; its retention is size- and age-capped, so copy it off the server)"
            }
            Missing::ExchangeManagementLog => {
                "collect the `MSExchange Management` event log (Applications and Services Logs) from every Exchange server and raise its maximum size (`wevtutil sl \"MSExchange Management\" /ms:1073741824`)"
            }
            Missing::ProcessCreation => {
                "Advanced Audit Policy → Detailed Tracking → Audit Process Creation (Success), with command lines (below); or deploy Sysmon with a configuration that logs event 1"
            }
            Missing::ProcessCommandLine => {
                "GPO: Computer Configuration → Administrative Templates → System → Audit Process Creation → \"Include command line in process creation events\" = Enabled"
            }
            Missing::PowerShellScriptBlock => {
                "GPO: Computer Configuration → Administrative Templates → Windows Components → Windows PowerShell → \"Turn on PowerShell Script Block Logging\" = Enabled; collect Microsoft-Windows-PowerShell/Operational"
            }
            Missing::AccountManagementAudit => {
                "Advanced Audit Policy on the domain controllers → Account Management → Audit User Account Management (Success and Failure); collect the DCs' Security logs"
            }
            Missing::InteractiveLogons => {
                "Advanced Audit Policy → Logon/Logoff → Audit Logon (Success) on workstations and servers; collect IIS logs with cs-username for OWA"
            }
            Missing::SignInLogs => {
                "Entra admin center → Identity → Monitoring & health → Sign-in logs → Download (JSON), or a diagnostic setting sending SignInLogs and NonInteractiveUserSignInLogs to Log Analytics or storage"
            }
            Missing::AuthenticationRequirement => {
                "export sign-ins from Microsoft Graph (`/auditLogs/signIns`) or the SignInLogs diagnostic category, which include authenticationRequirement"
            }
            Missing::OktaFactors => "export Entra ID sign-in logs as well, or review Okta sign-on policies for single-factor rules",
        }
    }
}

/// A statement of what could not be seen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Blind {
    pub check: Check,
    pub missing: Missing,
    /// The host (or other subject) it applies to, when it is one.
    pub subject: Option<Subject>,
    pub consequence: &'static str,
    pub fix: &'static str,
}

impl Blind {
    pub fn new(missing: Missing, subject: Option<Subject>) -> Blind {
        Blind { check: missing.check(), missing, subject, consequence: missing.consequence(), fix: missing.fix() }
    }
}

/// One log source on one host, and the period it covers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceCoverage {
    pub host: String,
    pub source: String,
    pub events: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Calendar days (UTC) with at least one event, and days from first to last.
    pub days_with_events: u64,
    pub days_spanned: u64,
    /// Whether the source is dense enough for a gap to mean logging stopped.
    pub continuous: bool,
    pub gaps: usize,
}

/// An Exchange build seen for a server, and when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BuildSighting {
    pub server: String,
    pub build: String,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub sightings: u64,
    /// What it was read from (`an OWA/ECP resource path in a web log`, `inventory FILE`).
    pub from: String,
    pub evidence: Evidence,
}

/// Everything `posture` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub weaknesses: Vec<Weakness>,
    pub could_not_see: Vec<Blind>,
    pub coverage: Vec<SourceCoverage>,
    pub builds: Vec<BuildSighting>,
    /// The latest event time read: ages are measured to it.
    pub as_of: Option<Timestamp>,
    pub files: usize,
    pub events: u64,
    /// Records skipped by the readers (with positions in `problems`).
    pub skipped: u64,
    /// Unreadable files and skipped records, each naming file and position.
    pub problems: Vec<String>,
    /// Files in no format Portcullis reads (mail, documents beside the logs): counted, with
    /// the first few named.
    pub not_logs: u64,
    pub not_logs_examples: Vec<String>,
}

impl Report {
    pub fn count(&self, check: Check) -> usize {
        self.weaknesses.iter().filter(|w| w.check == check).count()
    }
}

impl Weakness {
    /// One sentence for people (computed from the typed detail; never parsed back).
    pub fn sentence(&self) -> String {
        let day = |t: &Timestamp| day(*t);
        match &self.detail {
            Detail::OpenAfterFix { chain, build, fix_published, days_open_after_fix, still_open, fixed_seen, .. } => {
                if *still_open {
                    format!(
                        "{} was still open to {chain} at build {build} when last seen, {days_open_after_fix} days after the fix was published ({})",
                        self.subject.name(),
                        day(fix_published)
                    )
                } else {
                    format!(
                        "{} stayed open to {chain} for {days_open_after_fix} days after the fix was published ({}); fixed build first seen {}",
                        self.subject.name(),
                        day(fix_published),
                        fixed_seen.as_ref().map(day).unwrap_or_default()
                    )
                }
            }
            Detail::MaybeOpenAfterFix { chain, build, fix_published, .. } => format!(
                "{} runs CU build {build}: open to {chain} unless the update published {} is installed (the logs show only the CU)",
                self.subject.name(),
                day(fix_published)
            ),
            Detail::PasswordAsSet { basis, set_by, set_at, age_days, used_after, used_via, must_change_at_next_logon, .. } => {
                let who = match basis {
                    PasswordBasis::InitialPasswordInAd => "set when the account was created".to_string(),
                    _ => format!("reset by {}", set_by.as_deref().unwrap_or("another account")),
                };
                let mut s = format!(
                    "{}: password {who} on {} and never changed by the account since ({age_days} days)",
                    self.subject.name(),
                    day(set_at)
                );
                if let (Some(t), Some(v)) = (used_after, used_via) {
                    let via = match v {
                        LogonVia::Interactive => "an interactive logon",
                        LogonVia::Owa => "OWA",
                        LogonVia::AdLastLogon => "a logon (AD lastLogonTimestamp)",
                    };
                    s.push_str(&format!("; used with it through {via}, last {}", day(t)));
                } else if *must_change_at_next_logon {
                    s.push_str("; set to change at next logon, which has not happened");
                }
                s
            }
            Detail::SingleFactor { sign_ins, apps, .. } => {
                format!("{} signed in {sign_ins} time(s) with a single factor ({})", self.subject.name(), apps.join(", "))
            }
            Detail::LegacyProtocol { client_app, sign_ins, .. } => {
                format!("{} signed in {sign_ins} time(s) over a legacy protocol ({client_app}), which cannot use MFA", self.subject.name())
            }
            Detail::LoggingGap { from, to, hours, typical_daily_events } => format!(
                "{}: no events for {hours} h from {from} to {to}, where at least {typical_daily_events} a day are usual",
                self.subject.name()
            ),
        }
    }

    /// First and last time the weakness covers (for the case file and sorting).
    pub fn span(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        match &self.detail {
            Detail::OpenAfterFix { fix_published, open_seen_until, fixed_seen, .. } => {
                (Some(*fix_published), Some(fixed_seen.unwrap_or(*open_seen_until)))
            }
            Detail::MaybeOpenAfterFix { fix_published, last_seen, .. } => (Some(*fix_published), Some(*last_seen)),
            Detail::PasswordAsSet { set_at, used_after, .. } => (Some(*set_at), used_after.or(Some(*set_at))),
            Detail::SingleFactor { first, last, .. } | Detail::LegacyProtocol { first, last, .. } => (*first, *last),
            Detail::LoggingGap { from, to, .. } => (Some(*from), Some(*to)),
        }
    }
}

/// The date part of a time (`2021-08-24`).
pub fn day(t: Timestamp) -> String {
    let s = t.to_string();
    s.get(..10).unwrap_or(&s).to_string()
}

/// A stable id from the parts that identify a weakness.
pub fn stable_id(parts: &[&str]) -> String {
    // FNV-1a 64, twice with different offsets: stable across runs and platforms.
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for p in parts {
        for &byte in p.as_bytes().iter().chain(std::iter::once(&0u8)) {
            a = (a ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            b = (b ^ byte as u64).wrapping_mul(0x0100_0000_01b3).rotate_left(7);
        }
    }
    format!("{a:016x}{:08x}", b as u32)
}

//! `portcullis`: the command line. Thin: parses arguments, wires the library
//! crates together, prints, and returns an exit code scripts can rely on.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mimalloc: the analysers allocate many small strings per message and event; the system
/// allocator spent a fifth of `mail`'s time in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod export;
mod exposure;
mod mail;
mod posture;
mod report;
mod scale;
mod serve;
mod watch;

/// Exit codes, documented in `--help` and docs/formats.md.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_FINDINGS: u8 = 2;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Breach detection and investigation for democratic institutions",
    long_about = "Portcullis finds intrusions and reconnaissance campaigns in the logs, mail and files an \
institution already has. It runs Sigma rules (its own and the SigmaHQ community's) and partners' indicators \
over EVTX, JSON, IIS/W3C and Exchange logs, finds reconnaissance campaigns in mail exports, counts the electors \
exposed in register copies, and shares what it found as STIX 2.1 or MISP.",
    after_help = "EXIT CODES:\n  0  ran clean\n  1  error (bad arguments, unreadable inputs or rules path, output not writable)\n  \
2  a finding at or above the level given to --fail-on (hunt, mail, posture, exposure, exchange-check); \
agent/worker/correlator/collector: the NATS server could not be reached\n\nExamples:\n  portcullis demo\n  \
portcullis hunt C:\\Triage --sigma sigma/rules --min-level medium\n  portcullis hunt logs/ --format jsonl --output findings.jsonl --fail-on high"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Try it with no data of your own: simulate a breached institution, hunt it, show what matters.
    #[command(after_help = "Writes the synthetic logs, findings.jsonl, case.sqlite and timeline.jsonl under \
./portcullis-demo (or --out DIR), then prints the incident with its first evidence and dwell time, \
the attack chain, and the top findings. No network, no data of your own needed.")]
    Demo(DemoArgs),
    /// Hunt through logs with Sigma rules: "were we breached, how, since when?"
    #[command(after_help = "Inputs are recognised by content (EVTX, JSON/JSONL, IIS W3C, Exchange CSV logs), \
directories are searched recursively and .gz files are read transparently.\n\nExamples:\n  \
portcullis hunt ./triage --sigma ../sigma/rules\n  portcullis hunt u_ex210824.log --format jsonl --output out.jsonl\n  \
portcullis hunt ./evtx --sigma rules/ --from 2021-08-01 --to 2022-10-31 --min-level high --fail-on critical")]
    Hunt(HuntArgs),
    /// Print the normalised events as JSONL (for writing rules and checking field names).
    #[command(after_help = "Example:\n  portcullis events Security.evtx | head\n  portcullis events ./logs --count")]
    Events(EventsArgs),
    /// Which Exchange servers are open to ProxyLogon, ProxyShell, ProxyNotShell and OWASSRF.
    #[command(after_help = "Builds come from arguments (BUILD or SERVER=BUILD), an inventory CSV with \
server and build columns, and evidence in logs (OWA/ECP paths like /owa/auth/15.1.2176/, X-OWA-Version, \
and the build columns of Exchange's own HttpProxy/Rps_Http logs).\n\nExamples:\n  \
portcullis exchange-check EXCH01=15.1.2176.2\n  portcullis exchange-check --inventory servers.csv\n  \
portcullis exchange-check --logs ./triage --fail-on critical\n\nExit code 2 with --fail-on when a chain at or above that level is found (open: critical; security-update level unknown: medium).")]
    ExchangeCheck(ExchangeCheckArgs),
    /// Generate a synthetic institution with the 2021–22 intrusion planted (for demos, tests, benchmarks).
    #[command(after_help = "Example:\n  portcullis simulate electoral-commission --out ./ec-sim --seed 7 --scale 0.1\n\n\
Scale 1 is about 300 MB of logs over Aug 2021 – Oct 2022. The output directory gets truth.json, \
listing every planted step with the file and line (or record) of each log entry that evidences it.")]
    Simulate(SimulateArgs),
    /// What personal data sat where the intruder was: register copies and unique electors by category.
    #[command(after_help = "Files are recognised by content: CSV/TSV (any delimiter, quoting, UTF-8, UTF-16, \
Windows-1252), XLSX, ZIP archives (nested, within limits against ZIP bombs), EML/MBOX mail (attachments read like files) \
and plain text. Register \
tables are recognised by their header names and by their content (elector numbers, postcodes, markers, \
names); every row becomes one elector, counted once across all files and years by normalised name + \
address + postcode. No personal data is printed unless --show-samples (masked).\n\nExamples:\n  \
portcullis exposure //fs01/Registers ./mail-export\n  \
portcullis exposure ./triage --accessed case.sqlite --format jsonl -o exposure.jsonl\n  \
portcullis exposure ./share --accessed accessed-paths.txt --compromised-host FS01\n\n\
Exit code 2 with --fail-on when a register copy at or above that level is found (accessed by the intruder: critical; on a compromised system: high; elsewhere: medium).")]
    Exposure(exposure::ExposureArgs),
    /// "Is someone targeting our members?": reconnaissance campaigns in mail, graded per recipient.
    #[command(after_help = "Reads EML files, MBOX mailboxes and Maildir folders (directories searched recursively). \
Each message is examined for hidden beacons (0-1 px or hidden images, CSS backgrounds, tracking paths, \
per-recipient tokens), impersonation (outlet and protected names on other domains, look-alike and punycode \
domains, reply-to elsewhere), sender novelty and mass-mailing infrastructure; suspicious messages are grouped \
into campaigns by URL template, HTML skeleton and sending infrastructure. With --logs, every recipient is \
graded received / opened / clicked / compromised with the log lines as evidence, and the report says which \
logs cover the campaign.\n\nExamples:\n  \
portcullis mail ./journal-export --members members.csv\n  \
portcullis mail ./mail --members members.csv --logs ./proxy --logs ./signin --logs ./exchange\n  \
portcullis mail ./mail --format jsonl -o campaigns.jsonl --case case.sqlite --fail-on high\n\n\
Exit code 2 with --fail-on when a campaign at or above that severity is found.")]
    Mail(mail::MailArgs),
    /// The regulator's findings as checks: unpatched Exchange, passwords left as the service desk set them, MFA, logging.
    #[command(after_help = "Four checks over the logs and exports you already have, each answer with its evidence \
(file and line or record, and time):\n\
  patching          per Exchange server, the builds seen over time (OWA paths, X-OWA-Version, HttpProxy columns, \
Exchange binaries' file versions, --inventory) and how long it stayed open to ProxyLogon, ProxyShell, ProxyNotShell \
and OWASSRF after each fix was published\n\
  passwords_as_set  Security 4724 (password reset by another account, e.g. the service desk) with no later 4723 \
(or 4738 with a new PasswordLastSet) by the account itself; the reset's age; whether the account then logged on \
with it (4624 interactive/RDP, or OWA in IIS logs). --ad confirms or clears each one with pwdLastSet and adds \
accounts still on the password they were created with\n\
  mfa_coverage      Entra ID sign-in logs: accounts whose successful sign-ins used a single factor, and legacy \
protocols (IMAP, POP, SMTP AUTH, EWS/ActiveSync basic, Other clients) still used\n\
  logging_coverage  per host and source, the period covered and gaps (a day or more without events where the source \
is otherwise continuous), and whether the logs the Exchange chains need exist: IIS W3C with cs-uri-query, \
cs(User-Agent) and c-ip, HttpProxy, MSExchange Management, Sysmon or 4688 with command lines, PowerShell 4104\n\n\
Every run also says what the logs could not show (\"you could not have seen …\") and the Microsoft setting or log \
that fixes it.\n\nExamples:\n  \
portcullis posture ./triage\n  \
portcullis posture ./dc-security ./exchange ./entra-signins --ad users.csv --inventory servers.csv\n  \
portcullis posture ./triage --case case.sqlite --format jsonl -o posture.jsonl --fail-on high\n\n\
Exit code 2 with --fail-on when a weakness at or above that severity is found.")]
    Posture(posture::PostureArgs),
    /// Share what a case found: its indicators, sightings, incidents and campaigns as STIX 2.1, MISP or CSV.
    #[command(after_help = "Examples:\n  portcullis export stix case.sqlite -o case.stix.json --producer \"Example Council SOC\"\n  \
portcullis export misp case.sqlite -o case.misp.json\n  portcullis export csv case.sqlite\n\n\
Indicators are those that matched during `hunt --iocs` (with a sighting and observed data each) and the \
infrastructure of `mail` campaigns; a bundle exported here can be fed back with `hunt --iocs`.")]
    Export(export::ExportArgs),
    /// Write a case as one self-contained HTML report: summary, notification facts, incidents, mail, exposure, coverage.
    #[command(after_help = "The report works offline (no network, fonts or scripts), carries a strict Content \
Security Policy, and prints cleanly: use the browser's Save as PDF for a paper copy. Likelihoods use the PHIA \
yardstick; the notification facts are a draft for a person to complete.\n\nExamples:\n  \
portcullis report case.sqlite -o report.html\n  portcullis report portcullis-demo/case.sqlite -o - > r.html")]
    Report(report::ReportArgs),
    /// Work through a case in the browser: incidents, findings, pivots, search and triage notes.
    #[command(after_help = "Listens on 127.0.0.1 only, and every request needs the random token in the printed \
URL (as Jupyter does). Pages load nothing from elsewhere and run no script. Triage verdicts (confirmed, benign, \
needs review) are stored in the case as annotations with who and when; findings are never changed.\n\nExamples:\n  \
portcullis serve case.sqlite\n  portcullis serve case.sqlite --bind 127.0.0.1:0 --author \"J. Smith\"")]
    Serve(serve::ServeArgs),
    /// Follow logs as they are written: detect, correlate, update incidents in a case, alert.
    #[command(after_help = "Each new line of a followed log is detected as `hunt` would (same rules, same \
finding ids), correlations keep their state, and new findings are printed as JSONL alerts on standard output \
(and POSTed to --webhook). Rotation by rename, truncation and new files in watched folders are followed; \
EVTX and compressed files are read whole once they stop changing. Every step is one transaction in the case \
with where each file stands, so stopping, restarting or a crash loses no event and repeats no finding.\n\n\
Examples:\n  portcullis watch C:\\inetpub\\logs\\LogFiles \"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Logging\" --case live.sqlite\n  \
portcullis watch /var/log/collector/ --case live.sqlite --webhook https://hooks.example.org/soc\n  \
portcullis watch logs/ --case case.sqlite --once   # an incremental hunt for a scheduled job")]
    Watch(watch::WatchArgs),
    /// Load rules and report which load, which fail (file, line, reason) and which apply to nothing.
    #[command(after_help = "Example:\n  portcullis rules --sigma ../sigma/rules --sigma ../sigma/rules-emerging-threats")]
    Rules(RulesArgs),
    #[command(flatten)]
    Scale(scale::ScaleCommand),
}

#[derive(Args, Clone)]
pub struct RuleArgs {
    /// Sigma rule file or directory (repeatable). Community rules run unchanged.
    #[arg(long = "sigma", value_name = "DIR|FILE")]
    pub sigma: Vec<PathBuf>,
    /// Do not load Portcullis's built-in rule pack.
    #[arg(long)]
    pub no_builtin: bool,
    /// YAML file of placeholder values for rules using the `expand` modifier (name: [values]).
    #[arg(long, value_name = "FILE")]
    pub placeholders: Option<PathBuf>,
    /// Extra log source mappings (same layout as crates/sigma/data/logsources.yml).
    #[arg(long, value_name = "FILE")]
    pub logsources: Option<PathBuf>,
    /// Only report findings at or above this level (every rule is still evaluated, so
    /// correlations keep the inputs their base rules give them).
    #[arg(long, value_enum, default_value = "informational")]
    pub min_level: LevelArg,
    /// Parse every `--sigma` file afresh instead of taking unchanged ones from the
    /// parsed-rule cache ($PORTCULLIS_CACHE_DIR, else $XDG_CACHE_HOME/portcullis, else
    /// ~/.cache/portcullis). The cache is keyed by each file's text and this binary (a file
    /// whose inode, size and change time are as when it was cached is not read again), so
    /// it never changes what is detected; it only saves start-up time.
    #[arg(long)]
    pub no_rule_cache: bool,
}

/// Indicators matched in every field of every event (`hunt`, `watch`, `worker`).
#[derive(Args, Clone)]
pub struct IntelArgs {
    /// Indicators to match in every field of every event (repeatable): a STIX 2.1 bundle,
    /// a MISP event (JSON), or a CSV/plain list (one value per line, or type,value[,context]).
    /// Defanged values (hxxp, [.]) are fine. IPs match by CIDR, domains with their subdomains.
    #[arg(long = "iocs", value_name = "FILE")]
    pub iocs: Vec<PathBuf>,
    /// Do not load the built-in intel (published Exchange-wave IPs and C2, APT31 infrastructure).
    #[arg(long)]
    pub no_builtin_intel: bool,
}

#[derive(Args)]
pub struct HuntArgs {
    /// Files or directories to hunt through.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub intel: IntelArgs,
    /// Skip events before this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Skip events after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Logs known to be in local time: the UTC offset (e.g. -05:00) of times written without a
    /// zone, and of a collector's times when the events' own UTC times cannot correct them.
    #[arg(long, value_name = "OFFSET")]
    pub assume_timezone: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// Write results here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit with code 2 if a detection at or above this level is found.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<LevelArg>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar and no summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,
    /// Record runs, sources, findings and incidents in this SQLite case file (created if
    /// missing). Re-hunting the same data adds nothing; new data extends the incidents.
    #[arg(long, value_name = "FILE")]
    pub case: Option<PathBuf>,
    /// Write a Timesketch timeline here (CSV if the name ends in .csv, else JSONL).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Findings that share an entity join one incident when at most this many days apart.
    #[arg(long, value_name = "DAYS", default_value_t = 90.0)]
    pub incident_window_days: f64,
    /// Memory the detections may take (MiB) before they are spilled, in time order, to
    /// temporary files (in TMPDIR) and read back for output: a noisy rule or a broad
    /// indicator that matches millions of events then costs disk, not memory.
    #[arg(long, value_name = "MIB", default_value_t = (portcullis_hunt::DETECTION_BUFFER_BYTES >> 20) as u64)]
    pub detection_memory: u64,
}

#[derive(Args)]
struct EventsArgs {
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print only the number of events (the parse-only baseline for benchmarks).
    #[arg(long)]
    count: bool,
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// The UTC offset of times written without a zone (see `hunt --help`).
    #[arg(long, value_name = "OFFSET")]
    assume_timezone: Option<String>,
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ExchangeCheckArgs {
    /// Builds to check: `15.1.2176.2` or `EXCH01=15.1.2176.2`.
    #[arg(value_name = "BUILD")]
    builds: Vec<String>,
    /// CSV inventory with a server (or name, host) column and a build (or version) column.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Logs to search for build evidence (IIS, Exchange CSV logs).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    logs: Vec<PathBuf>,
    /// Output format: a table, JSONL (a record per server), JSON, or CSV (a row per server and chain).
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
    /// Write results here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Exit with code 2 if a chain at or above this level is found: a server open to a
    /// chain is critical, one whose security-update level is unknown medium.
    #[arg(long, value_enum, value_name = "LEVEL")]
    fail_on: Option<LevelArg>,
    /// Same as --fail-on critical (kept for scripts): exit 2 if a server is open to a chain.
    #[arg(long, hide = true)]
    fail_if_open: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Where to put the synthetic institution and the outputs.
    #[arg(long, value_name = "DIR", default_value = "portcullis-demo")]
    out: PathBuf,
    /// Background volume (1.0 is about 300 MB).
    #[arg(long, default_value_t = 0.02)]
    scale: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run the SigmaHQ community rules from this directory.
    #[arg(long = "sigma", value_name = "DIR")]
    sigma: Vec<PathBuf>,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// The scenario to generate.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Random seed: the same seed and scale give identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Background volume: 1.0 is about 300 MB of logs and 43,000 register rows.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Only write the register exports (for exposure benchmarks; --scale up to 2000,
    /// about 7,400 rows per unit of scale).
    #[arg(long)]
    registers_only: bool,
    /// parliament: how many of the campaign's 400 recipients are protected members.
    #[arg(long, default_value_t = 43)]
    pub members_targeted: usize,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Scenario {
    /// The Electoral Commission breach, 24 Aug 2021 – Oct 2022.
    ElectoralCommission,
    /// A parliament's mail in 2021 with an APT31-style beacon campaign against members.
    Parliament,
}

#[derive(Args)]
struct RulesArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// Output format: a table, JSONL (a record per problem and a summary), JSON, or CSV.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
    /// Write results here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// List every rule that applies to no log source Portcullis reads, not just a count per reason.
    #[arg(long)]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Table,
    Jsonl,
    Json,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LevelArg {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

/// `--fail-on` and `--min-severity` take one `LevelArg`; each crate grades with its own
/// five-step scale of the same names.
macro_rules! level_from_arg {
    ($($scale:ident)::+) => {
        impl From<LevelArg> for $($scale)::+ {
            fn from(l: LevelArg) -> Self {
                match l {
                    LevelArg::Informational => $($scale)::+::Informational,
                    LevelArg::Low => $($scale)::+::Low,
                    LevelArg::Medium => $($scale)::+::Medium,
                    LevelArg::High => $($scale)::+::High,
                    LevelArg::Critical => $($scale)::+::Critical,
                }
            }
        }
    };
}
level_from_arg!(portcullis_sigma::Level);
level_from_arg!(portcullis_mail::Severity);
level_from_arg!(portcullis_posture::Severity);

impl From<FormatArg> for portcullis_output::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => portcullis_output::Format::Table,
            FormatArg::Jsonl => portcullis_output::Format::Jsonl,
            FormatArg::Json => portcullis_output::Format::Json,
            FormatArg::Csv => portcullis_output::Format::Csv,
        }
    }
}

/// An error to report on stderr with exit code 1.
pub struct Fatal(pub String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Fatal(e.to_string())
    }
}

fn main() -> ExitCode {
    // `portcullis demo | head` closes the pipe early: leave quietly like other Unix tools
    // (exit 141, as SIGPIPE would) instead of reporting a panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let started = Instant::now();
    let result = match cli.command {
        Command::Hunt(a) => commands::hunt(a, started),
        Command::Demo(a) => commands::demo(a, started),
        Command::ExchangeCheck(a) => commands::exchange_check(a),
        Command::Events(a) => commands::events(a),
        Command::Rules(a) => commands::rules(a),
        Command::Simulate(a) => commands::simulate(a),
        Command::Exposure(a) => exposure::run(a),
        Command::Mail(a) => mail::run(a),
        Command::Posture(a) => posture::run(a),
        Command::Export(a) => export::run(a),
        Command::Report(a) => report::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Scale(c) => scale::run(c),
        Command::Watch(a) => watch::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Output piped into `head` and closed early: as the panic hook above.
        Err(Fatal(msg)) if msg.ends_with("Broken pipe (os error 32)") => ExitCode::from(141),
        Err(Fatal(msg)) => {
            let _ = writeln!(std::io::stderr(), "portcullis: error: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether to draw progress: only when stderr is a terminal.
pub fn show_progress(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

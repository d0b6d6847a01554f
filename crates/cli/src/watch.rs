//! `portcullis watch`: live detection on one machine, into a case, with alerts.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Args;
use portcullis_live::{Alert, Status, Webhook};

use crate::{EXIT_OK, Fatal, RuleArgs};

#[derive(Args)]
pub struct WatchArgs {
    /// Log files and folders to follow (folders are searched again at every poll, so new
    /// daily files are picked up).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The case file: findings, incidents and the checkpoints a restart resumes from.
    #[arg(long, value_name = "FILE")]
    pub case: PathBuf,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub intel: crate::IntelArgs,
    /// The UTC offset of times written without a zone (as `hunt --assume-timezone`).
    #[arg(long, value_name = "OFFSET")]
    pub assume_timezone: Option<String>,
    /// Seconds between polls when there is nothing new.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// On the first run with this case, skip what the files already hold and read only what
    /// is written from now on (default: read existing content first, like `hunt`).
    #[arg(long)]
    pub from_end: bool,
    /// Read everything there is now, then stop: an incremental hunt that resumes where the
    /// last one stopped (for a scheduled job).
    #[arg(long)]
    pub once: bool,
    /// POST each batch of new findings to this URL as a JSON array (retried with back-off).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Seconds (of event time) a correlation input waits for slower files before it is correlated.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub lateness: f64,
    /// Seconds without a new event after which waiting correlation inputs are correlated anyway.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub idle_flush: f64,
    /// Findings that share an entity join one incident when at most this many days apart.
    #[arg(long, value_name = "DAYS", default_value_t = 90.0)]
    pub incident_window_days: f64,
    /// No status lines on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

struct Printer {
    quiet: bool,
    webhook: Option<Webhook>,
}

impl portcullis_live::Observer for Printer {
    fn alert(&self, alert: &Alert) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, alert);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
        if let Some(w) = &self.webhook {
            w.send(alert.clone());
        }
    }

    fn status(&self, s: &Status) {
        if self.quiet {
            return;
        }
        let lag =
            s.lag_seconds.map(|l| format!(", newest event {} ago", portcullis_incident::human_duration(l as i64))).unwrap_or_default();
        eprintln!(
            "watch: {} files, {} events, {} new findings, {} incidents; {} bytes unread{lag}{}",
            s.files,
            s.events,
            s.findings_new,
            s.incidents,
            s.lag_bytes,
            if s.correlation_pending > 0 { format!(", {} correlation inputs waiting", s.correlation_pending) } else { String::new() }
        );
    }

    fn note(&self, note: &str) {
        if !self.quiet {
            eprintln!("watch: {}", portcullis_event::escape_display(note));
        }
    }
}

pub fn run(a: WatchArgs) -> Result<u8, Fatal> {
    let secs = |v: f64, what: &str| {
        if v.is_finite() && v >= 0.0 { Ok(Duration::from_secs_f64(v)) } else { Err(Fatal(format!("--{what} must be a number of seconds"))) }
    };
    let settings = portcullis_live::WatchSettings {
        paths: a.paths.clone(),
        case: a.case.clone(),
        case_command: std::env::args().collect::<Vec<_>>().join(" "),
        rules: a.rules.settings(),
        iocs: a.intel.iocs.clone(),
        builtin_intel: !a.intel.no_builtin_intel,
        assume_utc_offset_secs: crate::commands::parse_offset(&a.assume_timezone)?,
        interval: secs(a.interval, "interval")?,
        from_end: a.from_end,
        once: a.once,
        lateness_micros: secs(a.lateness, "lateness")?.as_micros() as i64,
        idle_flush: secs(a.idle_flush, "idle-flush")?,
        incident_window_days: a.incident_window_days,
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C or SIGTERM ends the current step cleanly; a harder kill is safe too (each step is one transaction).
    let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
    let printer = Printer { quiet: a.quiet, webhook: a.webhook.clone().map(Webhook::start) };
    if !a.quiet {
        eprintln!(
            "watch: following {} into {}{}",
            a.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            a.case.display(),
            if a.once { " (once)" } else { "; stop with Ctrl-C" }
        );
    }
    let result = portcullis_live::watch(&settings, &printer, &stop);
    if let Some(w) = printer.webhook {
        let stats = w.finish();
        let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            eprintln!("watch: {dropped} alerts could not be delivered to the webhook (they are in the case)");
        }
    }
    let status = result.map_err(|e| Fatal(e.to_string()))?;
    if !a.quiet {
        eprintln!(
            "watch: stopped after {} events; {} new findings; {} incidents in {}",
            status.events,
            status.findings_new,
            status.incidents,
            a.case.display()
        );
    }
    Ok(EXIT_OK)
}

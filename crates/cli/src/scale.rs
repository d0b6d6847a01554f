//! `agent`, `worker`, `correlator`, `collector`: the scale-out subcommands over NATS
//! JetStream (arguments into `portcullis_jetstream` settings, a one-line JSON report on
//! stdout, exit code 2 when the server cannot be reached).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use portcullis_jetstream::{Idle, Names, StreamSettings};

use crate::{Fatal, RuleArgs};

macro_rules! bus_help {
    () => {
        "\n\nEvery scale-out command takes --nats URL (default nats://127.0.0.1:4222) and --org NAME \
(the second token of every subject, so several organisations can share one server). Streams EVENTS, FINDINGS \
and CORR are created if missing. Design, failure behaviour and sizing: docs/scale-out.md; the event message \
format for other publishers (Vector, Fluent Bit): docs/event-schema.md. A test server: scripts/nats-server.sh start."
    };
}

#[derive(Subcommand)]
pub enum ScaleCommand {
    /// Scale-out: read log files and publish their events to NATS JetStream (stream EVENTS).
    #[command(after_help = concat!("Each event goes to subject events.<org>.<host>.<source> with a Nats-Msg-Id made from \
the file's identity (device, inode, path), its record and content, so sending a file again within the streams' \
duplicate window stores nothing twice. At most --window publishes await the server's ack; a slow server slows \
the reader, nothing piles up in memory.\n\nExample:\n  portcullis agent /var/log/iis --host WEB01 --org ec --nats nats://10.0.0.5:4222\n\n\
Prints a JSON line: files, events, stored, duplicates, seconds.", bus_help!()))]
    Agent(AgentArgs),
    /// Scale-out: scan events from NATS JetStream with the Sigma rules and publish findings (run any number).
    #[command(after_help = concat!("All workers share one durable pull consumer (--consumer), so each event is scanned by one \
of them; rules load as in `hunt` (the built-in pack, --sigma directories, built-in intel and --iocs). Detections \
go to FINDINGS with Nats-Msg-Id = the finding id (the same id a batch `hunt` gives), matches of rules that feed \
correlations go to CORR subject corr.<org>.<partition>; an event is acked only once all of those are stored. \
An event not acked within --ack-wait (a worker killed) goes to another worker; its findings have the same ids \
and are dropped as duplicates. A malformed message is logged with its stream sequence and terminated.\n\n\
Example:\n  portcullis worker --sigma sigma/rules --org ec --partitions 4\n\nPrints a JSON line at exit: events, \
detections, detections_duplicate, inputs, malformed, busy_seconds, events_per_second.", bus_help!()))]
    Worker(WorkerArgs),
    /// Scale-out: run the Sigma correlations of one partition of CORR and publish their findings.
    #[command(after_help = concat!("Run one per partition (0 .. --partitions-1), with the same rules and --partitions as the \
workers. Inputs are put back in time order within --lateness (event time) or after --idle-flush without input \
(held while the workers still have events queued, which may yet bring earlier inputs); state is checkpointed \
to the key-value bucket after every batch, so a restarted partition resumes without loss or double counting. For a back-fill of old files, where events of one window arrive far apart, give a large \
--lateness (e.g. 31536000).\n\nExample:\n  portcullis correlator --partition 0 --partitions 4 --org ec", bus_help!()))]
    Correlator(CorrelatorArgs),
    /// Scale-out: write the findings on NATS JetStream into a case file (incidents rebuilt as they come).
    #[command(after_help = concat!("One durable consumer per case file (--consumer). Findings are written in batches of up to \
--batch or every --interval-ms, with INSERT OR IGNORE on their stable ids, and acked after the transaction \
commits: a collector killed mid-batch loses nothing and duplicates nothing.\n\nExample:\n  \
portcullis collector --case ec.sqlite --org ec\n\nPrints a JSON line at exit: findings, new, malformed, batches, \
incidents, latency_p50/p99 (seconds from the server receiving an event to its finding committed).", bus_help!()))]
    Collector(CollectorArgs),
}

#[derive(Args, Clone)]
pub struct BusArgs {
    /// The NATS server (several, comma-separated, for a cluster).
    #[arg(long, value_name = "URL", default_value = portcullis_jetstream::DEFAULT_URL)]
    pub nats: String,
    /// The organisation: the second token of every subject.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub org: String,
    /// The stream of events.
    #[arg(long, value_name = "NAME", default_value = "EVENTS")]
    pub events_stream: String,
    /// The stream of findings.
    #[arg(long, value_name = "NAME", default_value = "FINDINGS")]
    pub findings_stream: String,
    /// The stream of correlation inputs.
    #[arg(long, value_name = "NAME", default_value = "CORR")]
    pub corr_stream: String,
    /// The key-value bucket of correlation checkpoints.
    #[arg(long, value_name = "NAME", default_value = "PORTCULLIS_CORR")]
    pub corr_bucket: String,
    /// Replicas of streams created here (3 on a three-node cluster).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: usize,
    /// Seconds within which a message id seen before is dropped (streams created here).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub duplicate_window: u64,
    /// Stop after this many seconds without messages (tests, benchmarks, back-fills).
    #[arg(long, value_name = "SECS")]
    pub exit_when_idle: Option<f64>,
}

impl BusArgs {
    fn names(&self) -> Names {
        Names {
            org: self.org.clone(),
            events_stream: self.events_stream.clone(),
            findings_stream: self.findings_stream.clone(),
            corr_stream: self.corr_stream.clone(),
            corr_bucket: self.corr_bucket.clone(),
        }
    }

    fn streams(&self) -> StreamSettings {
        StreamSettings { replicas: self.replicas, duplicate_window: Duration::from_secs(self.duplicate_window), ..Default::default() }
    }

    fn idle(&self) -> Idle {
        Idle { exit_after: self.exit_when_idle.map(|s| Duration::from_secs_f64(s.max(0.0))) }
    }
}

#[derive(Args)]
pub struct AgentArgs {
    /// Log files or directories (searched recursively), read once (or followed: --follow).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The machine the logs come from (default: this machine's name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Publishes awaiting the server's ack at most.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub window: usize,
    /// The UTC offset of times written without a zone (as for `hunt`).
    #[arg(long, value_name = "OFFSET")]
    pub assume_timezone: Option<String>,
    /// Publish at most this many events per second (for latency measurements and for
    /// sharing a thin link); default as fast as the server acks.
    #[arg(long, value_name = "N")]
    pub max_rate: Option<u64>,
    /// Keep following the files as they are written (as `watch` does: new files, rotation,
    /// truncation) instead of reading them once; needs --state. Stop with Ctrl-C.
    #[arg(long, requires = "state")]
    pub follow: bool,
    /// With --follow: where each file's reading stands, saved once the server has acked
    /// everything read before it (a restart resumes there; repeats are dropped by message id).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// With --follow: seconds between polls when nothing is new.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,

    #[command(flatten)]
    pub bus: BusArgs,
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub intel: crate::IntelArgs,
    /// The durable consumer all workers share (the server's name is NAME-<org>).
    #[arg(long, value_name = "NAME", default_value = "workers")]
    pub consumer: String,
    /// Events fetched per batch (their findings are in flight together).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub batch: usize,
    /// Seconds before an unacked event goes to another worker.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub ack_wait: f64,
    /// Correlation partitions (as many correlators).
    #[arg(long, value_name = "P", default_value_t = 4)]
    pub partitions: u32,
    #[command(flatten)]
    pub bus: BusArgs,
}

#[derive(Args)]
pub struct CorrelatorArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    /// This correlator's partition (0 .. P-1).
    #[arg(long, value_name = "K")]
    pub partition: u32,
    /// Correlation partitions (as the workers' --partitions).
    #[arg(long, value_name = "P", default_value_t = 4)]
    pub partitions: u32,
    /// Seconds of event time an input may arrive late and still be put in order.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub lateness: u64,
    /// Seconds without input after which every buffered input is processed (put off while
    /// the workers still have events of the organisation queued).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub idle_flush: f64,
    /// Buffered inputs at most (past it the oldest are processed).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_pending: usize,
    /// Seconds before an unacked input is delivered again (to this partition restarted).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub ack_wait: f64,
    #[command(flatten)]
    pub bus: BusArgs,
}

#[derive(Args)]
pub struct CollectorArgs {
    /// The case file to write (created if missing).
    #[arg(long, value_name = "FILE")]
    pub case: PathBuf,
    /// The durable consumer of this case (the server's name is NAME-<org>).
    #[arg(long, value_name = "NAME", default_value = "collector")]
    pub consumer: String,
    /// Findings per case transaction at most.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch: usize,
    /// Milliseconds a batch waits to fill.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub interval_ms: u64,
    /// Findings sharing an entity join one incident when at most this many days apart.
    #[arg(long, value_name = "DAYS", default_value_t = 90.0)]
    pub incident_window_days: f64,
    #[command(flatten)]
    pub bus: BusArgs,
}

fn this_host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs a scale-out subcommand.
pub fn run(cmd: ScaleCommand) -> Result<u8, Fatal> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result: Result<serde_json::Value, portcullis_jetstream::Error> = runtime.block_on(async {
        match cmd {
            ScaleCommand::Agent(a) => {
                let s = portcullis_jetstream::agent::AgentSettings {
                    url: a.bus.nats.clone(),
                    names: a.bus.names(),
                    streams: a.bus.streams(),
                    paths: a.paths.clone(),
                    host: a.host.clone().unwrap_or_else(this_host),
                    window: a.window,
                    max_rate: a.max_rate,
                    follow: match (&a.state, a.follow) {
                        (Some(state), true) => {
                            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                            let flag = stop.clone();
                            let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
                            let secs = |v: f64| std::time::Duration::from_secs_f64(if v.is_finite() { v.max(0.0) } else { 1.0 });
                            Some(portcullis_jetstream::agent::Follow {
                                state: state.clone(),
                                interval: secs(a.interval),
                                exit_when_idle: a.bus.exit_when_idle.map(secs),
                                stop,
                            })
                        }
                        _ => None,
                    },
                    assume_utc_offset_secs: match &a.assume_timezone {
                        None => None,
                        Some(z) => Some(portcullis_event::Timestamp::parse_offset(z).ok_or_else(|| {
                            portcullis_jetstream::Error::Input(format!("--assume-timezone {z:?} is not an offset like +05:00"))
                        })?),
                    },
                };
                let r = portcullis_jetstream::agent::run(&s).await?;
                for f in &r.files_failed {
                    eprintln!("portcullis: warning: {f}");
                }
                Ok(serde_json::json!({"kind": "agent", "files": r.files, "files_failed": r.files_failed.len(), "events": r.events,
                    "stored": r.stored, "duplicates": r.duplicates, "seconds": r.seconds,
                    "events_per_second": r.events as f64 / r.seconds.max(1e-9)}))
            }
            ScaleCommand::Worker(a) => {
                let s = portcullis_jetstream::worker::WorkerSettings {
                    url: a.bus.nats.clone(),
                    names: a.bus.names(),
                    streams: a.bus.streams(),
                    rules: a.rules.settings(),
                    iocs: a.intel.iocs.clone(),
                    builtin_intel: !a.intel.no_builtin_intel,
                    consumer: a.consumer.clone(),
                    batch: a.batch,
                    ack_wait: Duration::from_secs_f64(a.ack_wait.max(1.0)),
                    partitions: a.partitions.max(1),
                    idle: a.bus.idle(),
                };
                let r = portcullis_jetstream::worker::run(&s).await?;
                Ok(serde_json::json!({"kind": "worker", "events": r.events, "detections": r.detections,
                    "detections_duplicate": r.detections_duplicate, "inputs": r.inputs, "malformed": r.malformed,
                    "busy_seconds": r.busy_seconds, "events_per_second": r.events as f64 / r.busy_seconds.max(1e-9)}))
            }
            ScaleCommand::Correlator(a) => {
                let s = portcullis_jetstream::correlator::CorrelatorSettings {
                    url: a.bus.nats.clone(),
                    names: a.bus.names(),
                    streams: a.bus.streams(),
                    rules: a.rules.settings(),
                    partition: a.partition,
                    partitions: a.partitions.max(1),
                    lateness: Duration::from_secs(a.lateness),
                    idle_flush: Duration::from_secs_f64(a.idle_flush.max(0.0)),
                    max_pending: a.max_pending.max(1),
                    ack_wait: Duration::from_secs_f64(a.ack_wait.max(1.0)),
                    idle: a.bus.idle(),
                };
                let r = portcullis_jetstream::correlator::run(&s).await?;
                Ok(serde_json::json!({"kind": "correlator", "partition": a.partition, "inputs": r.inputs, "findings": r.findings,
                    "findings_duplicate": r.findings_duplicate, "malformed": r.malformed, "replayed": r.replayed, "restored_pending": r.restored_pending,
                    "skipped_redelivered": r.skipped_redelivered, "late_inputs": r.late_inputs, "flushes_deferred": r.flushes_deferred}))
            }
            ScaleCommand::Collector(a) => {
                let s = portcullis_jetstream::collector::CollectorSettings {
                    url: a.bus.nats.clone(),
                    names: a.bus.names(),
                    streams: a.bus.streams(),
                    case: a.case.clone(),
                    consumer: a.consumer.clone(),
                    batch: a.batch,
                    interval: Duration::from_millis(a.interval_ms.max(10)),
                    incident_window_days: a.incident_window_days,
                    idle: a.bus.idle(),
                };
                let r = portcullis_jetstream::collector::run(&s).await?;
                Ok(serde_json::json!({"kind": "collector", "findings": r.findings, "new": r.new, "malformed": r.malformed,
                    "batches": r.batches, "incidents": r.incidents, "latency_p50": r.latency(0.5), "latency_p99": r.latency(0.99)}))
            }
        }
    });
    match result {
        Ok(report) => {
            println!("{report}");
            let _ = std::io::stdout().flush();
            Ok(crate::EXIT_OK)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "portcullis: error: {e}");
            Ok(e.exit_code())
        }
    }
}

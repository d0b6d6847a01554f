//! `portcullis collector`: a durable consumer on FINDINGS that writes findings into a case
//! file in batches (up to `batch` findings or one fetch interval), with
//! `Case::record_run` (INSERT OR IGNORE on stable ids, incidents rebuilt), acking the
//! batch only after its transaction commits. A malformed message is counted, logged with
//! its stream sequence and terminated.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use portcullis_event::Timestamp;
use portcullis_incident::IncidentOptions;

use crate::{Error, FindingMsg, Idle, Names, StreamSettings, nats_err};

/// What `portcullis collector` does.
#[derive(Clone, Debug)]
pub struct CollectorSettings {
    pub url: String,
    pub names: Names,
    pub streams: StreamSettings,
    pub case: PathBuf,
    pub consumer: String,
    /// Findings per case transaction at most.
    pub batch: usize,
    /// How long a fetch waits for a batch to fill.
    pub interval: Duration,
    pub incident_window_days: f64,
    pub idle: Idle,
}

/// What a collector did.
#[derive(Debug, Default)]
pub struct CollectorReport {
    pub findings: u64,
    /// Findings the case did not have yet.
    pub new: u64,
    pub malformed: u64,
    pub batches: u64,
    pub incidents: usize,
    /// Seconds from the server receiving an event to its detection committed in the case,
    /// for each detection written (redelivered ones included).
    pub latencies: Vec<f64>,
}

impl CollectorReport {
    /// The latency at quantile `q` (0–1), if any was measured.
    pub fn latency(&self, q: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v = self.latencies.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(v[i])
    }
}

/// Consumes findings until stopped (or idle for `idle.exit_after` with every correlation
/// partition drained; see [`crate::correlator::partitions_drained`]).
pub async fn run(s: &CollectorSettings) -> Result<CollectorReport, Error> {
    let mut case = portcullis_case::Case::open(&s.case, "collector").map_err(|e| Error::Case(e.to_string()))?;
    let js = crate::connect(&s.url).await?;
    crate::ensure_streams(&js, &s.names, &s.streams).await?;
    // One consumer per organisation: its filter is the organisation's subjects.
    let name = format!("{}-{}", crate::subject_token(&s.consumer), crate::subject_token(&s.names.org));
    let consumer = crate::durable_consumer(
        &js,
        &s.names.findings_stream,
        pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            filter_subject: s.names.findings_subject(),
            max_ack_pending: 20_000,
            ..Default::default()
        },
    )
    .await?;
    let incident_opts = IncidentOptions { window_micros: (s.incident_window_days.max(0.0) * 86_400.0 * 1e6) as i64, ..Default::default() };
    let mut report = CollectorReport::default();
    let mut last_message = Instant::now();
    loop {
        let fetched = crate::fetch_batch(&consumer, s.batch, s.interval, "collector", "findings").await?;
        if fetched.unavailable {
            last_message = Instant::now();
        }
        let messages = fetched.messages;
        if messages.is_empty() {
            if let Some(d) = s.idle.exit_after
                && last_message.elapsed() >= d
            {
                // Idle is not done while a correlation partition still holds inputs: its
                // findings come at its idle flush, perhaps after this collector's idle time.
                let outstanding = match crate::correlator::partitions_drained(&js, &s.names).await {
                    // Drained, but a finding published after this fetch came back empty would
                    // be left behind: the consumer's own count says whether one is waiting.
                    Ok(()) => match consumer.get_info().await {
                        Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => Ok(()),
                        Ok(info) => Err(format!(
                            "{} findings not yet fetched and {} not yet acked by this collector",
                            info.num_pending, info.num_ack_pending
                        )),
                        Err(e) => Err(format!("this collector's consumer: {e}")),
                    },
                    Err(why) => Err(why),
                };
                match outstanding {
                    Ok(()) => break,
                    Err(why) if last_message.elapsed() >= d * crate::DRAIN_PATIENCE => {
                        eprintln!("collector: exiting after {:.0?} idle with findings maybe still to come: {why}", last_message.elapsed());
                        break;
                    }
                    Err(why) => crate::say_now_and_then(&format!("collector: idle, but waiting: {why}")),
                }
            }
            continue;
        }
        last_message = Instant::now();
        let mut findings = Vec::with_capacity(messages.len());
        let mut published = Vec::with_capacity(messages.len());
        let mut good = Vec::with_capacity(messages.len());
        for msg in messages {
            let parsed = serde_json::from_slice::<FindingMsg>(&msg.payload).map_err(|e| e.to_string()).and_then(|m| {
                let p = m.event_published_us;
                m.into_finding().map(|f| (f, p))
            });
            match parsed {
                Ok((f, p)) => {
                    // Latency is measured on detections (a correlation finding waits for its window).
                    published.push(p.filter(|_| f.0.kind == portcullis_finding::FindingKind::Detection));
                    findings.push(f);
                    good.push(msg);
                }
                Err(e) => {
                    report.malformed += 1;
                    eprintln!("collector: malformed finding at {} sequence {}: {e}", s.names.findings_stream, crate::stream_seq(&msg));
                    if let Err(e) = msg.ack_with(AckKind::Term).await {
                        eprintln!("collector: terminating a malformed finding: {e}");
                    }
                }
            }
        }
        if findings.is_empty() {
            continue;
        }
        let (new, incidents) =
            case.record_run(&[], &findings, 0, 0, &incident_opts).map_err(|e| Error::Case(format!("{}: {e}", s.case.display())))?;
        let now = Timestamp::now().0;
        report.latencies.extend(published.iter().flatten().map(|p| (now - p) as f64 / 1e6));
        report.findings += findings.len() as u64;
        report.new += new as u64;
        report.batches += 1;
        report.incidents = incidents.len();
        for msg in good {
            msg.ack().await.map_err(|e| nats_err("acking a finding")(&e))?;
        }
    }
    Ok(report)
}

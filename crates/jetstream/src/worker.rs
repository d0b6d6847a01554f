//! `portcullis worker`: one shared durable pull consumer on EVENTS (work-queue: each event
//! goes to one worker). Each event is scanned exactly as the batch hunt scans it
//! (`portcullis_hunt::detect`), each detection published to FINDINGS under its finding
//! id, each correlation input to its partition on CORR; the event is acked only after
//! every one of those publishes is acked. A malformed message is counted, logged with its
//! stream sequence and terminated (never redelivered).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use portcullis_correlate::Source;
use portcullis_event::Event;
use portcullis_finding::Finding;
use portcullis_pipeline::RuleSettings;

use crate::{Error, FindingMsg, Idle, InputMsg, Names, StreamSettings, nats_err};

/// Deliveries after which an event is terminated instead of scanned again.
pub const MAX_DELIVERIES: i64 = 10;

/// What `portcullis worker` does.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub url: String,
    pub names: Names,
    pub streams: StreamSettings,
    pub rules: RuleSettings,
    pub iocs: Vec<PathBuf>,
    pub builtin_intel: bool,
    /// The durable consumer every worker shares.
    pub consumer: String,
    /// Events fetched (and in flight) per batch.
    pub batch: usize,
    /// An event not acked within this time is redelivered to another worker.
    pub ack_wait: Duration,
    /// Correlation partitions (must equal the correlators' `--partitions`).
    pub partitions: u32,
    pub idle: Idle,
}

/// What a worker did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub events: u64,
    pub detections: u64,
    pub detections_duplicate: u64,
    pub inputs: u64,
    pub malformed: u64,
    /// From the first event received to the last one acked.
    pub busy_seconds: f64,
}

/// Consumes events until stopped (or idle for `idle.exit_after`).
pub async fn run(s: &WorkerSettings) -> Result<WorkerReport, Error> {
    // Rules and indicators loaded as `hunt` loads them, so the finding ids are the same.
    let rules = portcullis_pipeline::load_detector(&s.rules, &s.iocs, s.builtin_intel).map_err(|e| Error::Rules(e.to_string()))?;
    let js = crate::connect(&s.url).await?;
    crate::ensure_streams(&js, &s.names, &s.streams).await?;
    // One consumer per organisation: its filter is the organisation's subjects.
    let name = format!("{}-{}", crate::subject_token(&s.consumer), crate::subject_token(&s.names.org));
    let consumer = crate::durable_consumer(
        &js,
        &s.names.events_stream,
        pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: s.ack_wait,
            filter_subject: s.names.events_filter(),
            max_ack_pending: 20_000,
            ..Default::default()
        },
    )
    .await?;
    consume(&js, &consumer, s, &rules).await
}

async fn consume(
    js: &jetstream::Context,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    s: &WorkerSettings,
    rules: &portcullis_pipeline::Detector,
) -> Result<WorkerReport, Error> {
    let engine = &rules.loaded.engine;
    let labels = portcullis_finding::RuleLabels::of(engine);
    let correlations = &rules.loaded.correlations;
    let min = s.rules.min_level;
    let view = rules.rules();
    // Correlations of correlations need every input in one place: one partition.
    let chained = correlations.subscribers.keys().any(|k| matches!(k, Source::Correlation(_)));
    let keys: Vec<String> = correlations.correlations.iter().map(|c| c.key()).collect();
    let mut scanner = engine.scanner();
    let mut matches = Vec::new();
    let mut ioc_hits = Vec::new();
    let mut event = Event::default();
    let mut report = WorkerReport::default();
    let mut first: Option<Instant> = None;
    let mut last_done = Instant::now();
    let mut last_message = Instant::now();
    let findings_subject = s.names.findings_subject();
    loop {
        let fetched = crate::fetch_batch(consumer, s.batch, Duration::from_millis(500), "worker", "events").await?;
        if fetched.unavailable {
            last_message = Instant::now();
        }
        let messages = fetched.messages;
        if messages.is_empty() {
            if s.idle.exit_after.is_some_and(|d| last_message.elapsed() >= d) {
                break;
            }
            continue;
        }
        last_message = Instant::now();
        first.get_or_insert_with(Instant::now);
        let mut acks = Vec::new();
        let mut good = Vec::with_capacity(messages.len());
        for msg in messages {
            // An event delivered this often has stopped a worker each time (or never got its
            // findings stored): give up on it rather than loop.
            if msg.info().is_ok_and(|i| i.delivered > MAX_DELIVERIES) {
                report.malformed += 1;
                eprintln!(
                    "worker: event at {} sequence {} was delivered {MAX_DELIVERIES} times without completing; terminated",
                    s.names.events_stream,
                    crate::stream_seq(&msg)
                );
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    eprintln!("worker: terminating an event: {e}");
                }
                continue;
            }
            let envelope = match portcullis_event::wire::decode_into(&msg.payload, &mut event) {
                Ok(env) => env,
                Err(e) => {
                    report.malformed += 1;
                    eprintln!("worker: malformed event at {} sequence {}: {e}", s.names.events_stream, crate::stream_seq(&msg));
                    if let Err(e) = msg.ack_with(AckKind::Term).await {
                        eprintln!("worker: terminating a malformed event: {e}");
                    }
                    continue;
                }
            };
            report.events += 1;
            let published = crate::published_us(&msg);
            let path: Arc<Path> = Arc::from(Path::new(&envelope.path));
            let mut detections = Vec::new();
            let mut inputs = Vec::new();
            portcullis_hunt::detect(
                &mut portcullis_hunt::Scratch { scanner: &mut scanner, matches: &mut matches, ioc_hits: &mut ioc_hits },
                &view,
                &path,
                &event,
                &mut detections,
                &mut inputs,
            );
            for d in detections {
                if engine.rules[d.rule].level < min {
                    continue;
                }
                let finding = Finding::from_detection(&labels, engine, &d);
                let body = FindingMsg::from_finding(&finding, Some(d.event.json_text()), published);
                let payload = serde_json::to_vec(&body).map_err(|e| Error::Nats(e.to_string()))?;
                let ack = js
                    .send_publish(
                        findings_subject.clone(),
                        jetstream::message::PublishMessage::build().payload(payload.into()).message_id(&finding.id),
                    )
                    .await
                    .map_err(|e| nats_err("publishing a finding")(&e))?;
                acks.push((ack, true));
            }
            for i in inputs {
                let Some(key) = keys.get(i.corr as usize) else { continue };
                let partition = if chained { 0 } else { crate::partition(key, i.group(), s.partitions) };
                let evidence = portcullis_event::hex_id(i.evidence);
                let id = crate::stable_id(&[key.as_bytes(), &i.pos.to_le_bytes(), i.group().as_bytes(), evidence.as_bytes()]);
                let body = InputMsg {
                    ts: i.ts,
                    correlation: key.clone(),
                    pos: i.pos,
                    group: i.group().to_string(),
                    value: i.value().to_string(),
                    evidence,
                    entities: i.entities().to_string(),
                    event_published_us: published,
                };
                let payload = serde_json::to_vec(&body).map_err(|e| Error::Nats(e.to_string()))?;
                let ack = js
                    .send_publish(
                        s.names.corr_subject(partition),
                        jetstream::message::PublishMessage::build().payload(payload.into()).message_id(&id),
                    )
                    .await
                    .map_err(|e| nats_err("publishing a correlation input")(&e))?;
                report.inputs += 1;
                acks.push((ack, false));
            }
            good.push(msg);
        }
        // Every publish stored before any event of the batch is acked: a crash here
        // redelivers the events and the re-publishes are dropped as duplicates.
        for (ack, is_detection) in acks {
            let ack = ack.await.map_err(|e| nats_err("a finding was not stored")(&e))?;
            if is_detection {
                if ack.duplicate {
                    report.detections_duplicate += 1;
                } else {
                    report.detections += 1;
                }
            }
        }
        for msg in good {
            msg.ack().await.map_err(|e| nats_err("acking an event")(&e))?;
        }
        last_done = Instant::now();
    }
    report.busy_seconds = first.map(|f| last_done.duration_since(f).as_secs_f64()).unwrap_or(0.0);
    Ok(report)
}

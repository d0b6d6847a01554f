//! `portcullis correlator --partition K`: runs the Sigma correlations over the inputs the
//! workers published to `corr.<org>.K`. Inputs are buffered and released in the batch
//! hunt's order (time, correlation, position, group, evidence) once the event-time
//! watermark (latest time seen minus `lateness`) passes them, or when the partition has
//! been idle for `idle_flush`. After each batch the state is checkpointed in a key-value
//! bucket: the stream sequence processed, the released inputs still inside a live window
//! (per group, mirroring the engine's window rules) and the inputs not yet released; only
//! then are the messages acked. A restarted partition replays the retained inputs through a
//! fresh `Correlator` (findings it re-derives were published before the checkpoint and are
//! dropped) and skips the messages the checkpoint says it had taken in (see [`Taken`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use portcullis_correlate::{CorrelationSet, Correlator, Input};
use portcullis_finding::Finding;
use portcullis_pipeline::RuleSettings;
use serde::{Deserialize, Serialize};

use crate::{Error, FindingMsg, Idle, InputMsg, Names, StreamSettings, nats_err};

/// What `portcullis correlator` does.
#[derive(Clone, Debug)]
pub struct CorrelatorSettings {
    pub url: String,
    pub names: Names,
    pub streams: StreamSettings,
    pub rules: RuleSettings,
    pub partition: u32,
    pub partitions: u32,
    /// How late (in event time) an input may arrive and still be put in order.
    pub lateness: Duration,
    /// Release every buffered input after this long without messages.
    pub idle_flush: Duration,
    /// Buffered inputs at most; past it the oldest are released.
    pub max_pending: usize,
    /// An input not acked within this time (a correlator killed) is delivered again.
    pub ack_wait: Duration,
    pub idle: Idle,
}

/// What a correlator did.
#[derive(Debug, Default)]
pub struct CorrelatorReport {
    pub inputs: u64,
    pub findings: u64,
    pub findings_duplicate: u64,
    pub malformed: u64,
    pub skipped_redelivered: u64,
    pub late_inputs: u64,
    /// Inputs replayed from the checkpoint at start.
    pub replayed: u64,
    /// Buffered inputs restored from the checkpoint at start.
    pub restored_pending: u64,
    /// Idle-flush checks (one per empty fetch, about every half second) that put the flush
    /// off because workers still had events of the organisation queued or inputs were still
    /// undelivered: releasing then would correlate out of order.
    pub flushes_deferred: u64,
}

/// The checkpoint of one partition.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// The highest stream sequence taken in.
    seq: u64,
    /// The sequences taken in whose acks the server may not have yet (above the consumer's
    /// ack floor when written). A checkpoint written before this field existed has none:
    /// its `seq` is then taken as the floor, as it was then.
    #[serde(default)]
    taken: Option<Vec<u64>>,
    retained: Vec<InputMsg>,
    pending: Vec<InputMsg>,
}

/// The stream sequences a partition has taken in and may be delivered again: those above
/// the consumer's ack floor (the server never redelivers what it holds acked). A high-water
/// mark is not enough: a message lost on its way (a node lost, a fetch that expired) is
/// delivered again after later ones were taken in, and must be taken in then, not skipped.
#[derive(Debug, Default)]
struct Taken {
    /// Everything at or below was taken in (from a checkpoint without `taken`).
    legacy_floor: u64,
    above_floor: BTreeSet<u64>,
    /// The highest sequence taken in (never below `legacy_floor`).
    highest: u64,
}

impl Taken {
    /// Past this many sequences the set is pruned to the consumer's ack floor.
    const PRUNE_AT: usize = 1024;

    fn from_checkpoint(cp: &Checkpoint) -> Taken {
        match &cp.taken {
            Some(seqs) => Taken { legacy_floor: 0, above_floor: seqs.iter().copied().collect(), highest: cp.seq },
            None => Taken { legacy_floor: cp.seq, above_floor: BTreeSet::new(), highest: cp.seq },
        }
    }

    fn contains(&self, seq: u64) -> bool {
        seq <= self.legacy_floor || self.above_floor.contains(&seq)
    }

    fn insert(&mut self, seq: u64) {
        self.above_floor.insert(seq);
        self.highest = self.highest.max(seq);
    }

    /// Forgets what the server holds acked (`ack_floor`: every sequence at or below it).
    fn prune(&mut self, ack_floor: u64) {
        self.above_floor = self.above_floor.split_off(&ack_floor.saturating_add(1));
    }
}

/// The released inputs of one (correlation, group) that are still in its window.
#[derive(Default)]
struct Mirror {
    opened: i64,
    last: i64,
    inputs: Vec<InputMsg>,
}

type Key = (i64, u32, u32, String, u128);

struct Partition {
    set: std::sync::Arc<CorrelationSet>,
    index: HashMap<String, usize>,
    correlator: Correlator,
    pending: BTreeMap<Key, InputMsg>,
    mirrors: HashMap<(u32, String), Mirror>,
    max_ts: i64,
    released_now: i64,
}

impl Partition {
    fn new(set: std::sync::Arc<CorrelationSet>) -> Partition {
        let index = set.correlations.iter().enumerate().map(|(i, c)| (c.key(), i)).collect();
        Partition {
            correlator: Correlator::new(set.clone()),
            set,
            index,
            pending: BTreeMap::new(),
            mirrors: HashMap::new(),
            max_ts: i64::MIN,
            released_now: i64::MIN,
        }
    }

    fn key(&self, m: &InputMsg) -> Option<Key> {
        let ci = *self.index.get(&m.correlation)?;
        let c = &self.set.correlations[ci];
        if m.pos as usize >= c.sources.len() {
            return None;
        }
        // The evidence is a finding id (32 hex digits), as workers write it.
        Some((m.ts, ci as u32, m.pos, m.group.clone(), portcullis_event::parse_hex_id(&m.evidence)?))
    }

    /// Buffers an input; false if it names a correlation (or position) this partition does
    /// not have, or its evidence is not a finding id.
    fn add(&mut self, m: InputMsg) -> bool {
        let Some(k) = self.key(&m) else { return false };
        self.max_ts = self.max_ts.max(m.ts);
        self.pending.insert(k, m);
        true
    }

    /// Releases buffered inputs up to `watermark` (all if None), in order; returns the
    /// findings with the published time of the input that produced them.
    fn release(&mut self, watermark: Option<i64>, out: &mut Vec<(portcullis_correlate::CorrelationFinding, Option<i64>)>) {
        while let Some(entry) = self.pending.first_entry() {
            if watermark.is_some_and(|w| entry.key().0 > w) {
                break;
            }
            let (k, m) = entry.remove_entry();
            self.push(k.1, k.4, m, out);
        }
    }

    fn push(&mut self, ci: u32, evidence: u128, m: InputMsg, out: &mut Vec<(portcullis_correlate::CorrelationFinding, Option<i64>)>) {
        let c = &self.set.correlations[ci as usize];
        let span = c.timespan_micros;
        let grows = c.condition.grows();
        let mirror = self.mirrors.entry((ci, m.group.clone())).or_default();
        if mirror.inputs.is_empty() || (!grows && m.ts - mirror.opened > span) {
            mirror.inputs.clear();
            mirror.opened = m.ts;
        }
        mirror.last = m.ts;
        mirror.inputs.push(m.clone());
        if grows {
            let ts = m.ts;
            mirror.inputs.retain(|i| ts - i.ts <= span);
        }
        self.released_now = self.released_now.max(m.ts);
        let published = m.event_published_us;
        self.correlator.push(Input::new(m.ts, ci, m.pos, evidence, &m.group, &m.value, &m.entities));
        for f in self.correlator.findings.drain(..) {
            let fc = &self.set.correlations[f.correlation];
            if fc.condition.grows() {
                let group: Vec<&str> = f.group.iter().map(|(_, v)| v.as_str()).collect();
                self.mirrors.remove(&(f.correlation as u32, group.join("\u{1f}")));
            }
            out.push((f, published));
        }
    }

    /// Drops the mirrors of groups the engine has expired.
    fn expire(&mut self) {
        let now = self.released_now;
        let set = &self.set;
        self.mirrors.retain(|(ci, _), m| {
            let span = set.correlations[*ci as usize].timespan_micros;
            let expired = now.saturating_sub(m.last) > span && now.saturating_sub(m.opened) > span;
            !m.inputs.is_empty() && !expired
        });
    }

    /// Loads a checkpoint into a fresh partition: the retained inputs replayed (their
    /// findings were published before the checkpoint was written, so they are dropped),
    /// the pending ones buffered. Returns (replayed, restored pending).
    fn restore(&mut self, cp: Checkpoint) -> (u64, u64) {
        let (mut replayed, mut restored) = (0, 0);
        let mut discard = Vec::new();
        for m in cp.retained {
            if let Some(k) = self.key(&m) {
                replayed += 1;
                self.push(k.1, k.4, m, &mut discard);
            }
        }
        for m in cp.pending {
            if self.add(m) {
                restored += 1;
            }
        }
        (replayed, restored)
    }

    fn checkpoint(&self, taken: &Taken) -> Checkpoint {
        let mut retained: Vec<InputMsg> = self.mirrors.values().flat_map(|m| m.inputs.iter().cloned()).collect();
        retained.sort_by_key(|m| self.key(m));
        Checkpoint {
            seq: taken.highest,
            taken: Some(taken.above_floor.iter().copied().collect()),
            retained,
            pending: self.pending.values().cloned().collect(),
        }
    }
}

/// Runs one partition until stopped (or idle for `idle.exit_after`).
pub async fn run(s: &CorrelatorSettings) -> Result<CorrelatorReport, Error> {
    if s.partition >= s.partitions.max(1) {
        return Err(Error::Input(format!("--partition {} is not below --partitions {}", s.partition, s.partitions)));
    }
    let loaded = portcullis_pipeline::load_rules(&s.rules).map_err(|e| Error::Rules(e.to_string()))?;
    let js = crate::connect(&s.url).await?;
    crate::ensure_streams(&js, &s.names, &s.streams).await?;
    let bucket = match js.get_key_value(&s.names.corr_bucket).await {
        Ok(b) => b,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: s.names.corr_bucket.clone(),
                history: 1,
                num_replicas: s.streams.replicas.max(1),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("checkpoint bucket")(&e))?,
    };
    let ckey = format!("{}.{}.of.{}", crate::subject_token(&s.names.org), s.partition, s.partitions);
    let name = format!("corr-{}-{}", crate::subject_token(&s.names.org), s.partition);
    let consumer = crate::durable_consumer(
        &js,
        &s.names.corr_stream,
        pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: s.ack_wait,
            filter_subject: s.names.corr_subject(s.partition),
            max_ack_pending: 20_000,
            ..Default::default()
        },
    )
    .await?;

    let mut report = CorrelatorReport::default();
    let mut part = Partition::new(loaded.correlations.clone());
    let mut taken = Taken::default();
    // Resume: replay the retained inputs (their findings were published before the
    // checkpoint was written), then buffer the pending ones again.
    match bucket.get(&ckey).await {
        Ok(Some(bytes)) => {
            let cp: Checkpoint =
                serde_json::from_slice(&bytes).map_err(|e| Error::Nats(format!("checkpoint {ckey} is unreadable: {e}")))?;
            taken = Taken::from_checkpoint(&cp);
            let (replayed, restored) = part.restore(cp);
            report.replayed = replayed;
            report.restored_pending = restored;
        }
        Ok(None) => {}
        Err(e) => return Err(Error::Nats(format!("reading checkpoint {ckey}: {e}"))),
    }
    let lateness = s.lateness.as_micros().min(i64::MAX as u128) as i64;
    let findings_subject = s.names.findings_subject();
    let mut last_message = Instant::now();
    // Inputs restored from the checkpoint wait for an idle flush like any others: a
    // partition restarted with nothing new to read held them for ever, and with
    // --exit-when-idle never exited (its exit waits for an empty buffer).
    let mut flushed = part.pending.is_empty();
    loop {
        let fetched = crate::fetch_batch(&consumer, 1000, Duration::from_millis(500), "correlator", "correlation inputs").await?;
        if fetched.unavailable {
            last_message = Instant::now();
        }
        let messages = fetched.messages;
        let mut found = Vec::new();
        let mut to_ack = Vec::new();
        if messages.is_empty() {
            let idle = last_message.elapsed();
            if !flushed && idle >= s.idle_flush {
                if !nothing_more_coming(&js, &consumer, s, idle, "flushing").await {
                    report.flushes_deferred += 1;
                    continue;
                }
                part.release(None, &mut found);
                flushed = true;
            } else {
                if let Some(d) = s.idle.exit_after
                    && idle >= d
                    && part.pending.is_empty()
                {
                    // Idle is not done while events wait for the workers: a worker slower to
                    // start than this idle time would leave its inputs here to nobody.
                    if nothing_more_coming(&js, &consumer, s, idle, "exiting").await {
                        break;
                    }
                    crate::say_now_and_then("correlator: idle, but events are still queued for the workers or inputs are on their way");
                }
                continue;
            }
        } else {
            last_message = Instant::now();
            flushed = false;
            for msg in messages {
                let sseq = crate::stream_seq(&msg);
                if taken.contains(sseq) {
                    report.skipped_redelivered += 1;
                    to_ack.push(msg);
                    continue;
                }
                taken.insert(sseq);
                let parsed = serde_json::from_slice::<InputMsg>(&msg.payload).map_err(|e| e.to_string());
                match parsed.and_then(|m| {
                    if part.add(m) { Ok(()) } else { Err("unknown correlation or position, or evidence that is not a finding id".into()) }
                }) {
                    Ok(()) => {
                        report.inputs += 1;
                        to_ack.push(msg);
                    }
                    Err(e) => {
                        report.malformed += 1;
                        eprintln!("correlator: malformed input at {} sequence {sseq}: {e}", s.names.corr_stream);
                        if let Err(e) = msg.ack_with(AckKind::Term).await {
                            eprintln!("correlator: terminating a malformed input: {e}");
                        }
                    }
                }
            }
            part.release(Some(part.max_ts.saturating_sub(lateness)), &mut found);
            while part.pending.len() > s.max_pending {
                if let Some((k, m)) = part.pending.pop_first() {
                    part.push(k.1, k.4, m, &mut found);
                }
            }
        }
        // Findings stored, then the checkpoint, then the acks.
        let mut acks = Vec::new();
        for (f, published) in &found {
            let finding = Finding::from_correlation(&part.set, f, &[]);
            let body = FindingMsg::from_finding(&finding, None, *published);
            let payload = serde_json::to_vec(&body).map_err(|e| Error::Nats(e.to_string()))?;
            let ack = js
                .send_publish(
                    findings_subject.clone(),
                    jetstream::message::PublishMessage::build().payload(payload.into()).message_id(&finding.id),
                )
                .await
                .map_err(|e| nats_err("publishing a correlation finding")(&e))?;
            acks.push(ack);
        }
        for ack in acks {
            let ack = ack.await.map_err(|e| nats_err("a correlation finding was not stored")(&e))?;
            if ack.duplicate {
                report.findings_duplicate += 1;
            } else {
                report.findings += 1;
            }
        }
        part.expire();
        if taken.above_floor.len() > Taken::PRUNE_AT
            && let Ok(info) = consumer.get_info().await
        {
            taken.prune(info.ack_floor.stream_sequence);
        }
        let cp = serde_json::to_vec(&part.checkpoint(&taken)).map_err(|e| Error::Nats(e.to_string()))?;
        bucket.put(&ckey, cp.into()).await.map_err(|e| nats_err("writing the checkpoint")(&e))?;
        for msg in to_ack {
            msg.ack().await.map_err(|e| nats_err("acking an input")(&e))?;
        }
    }
    report.late_inputs = part.correlator.late_inputs;
    Ok(report)
}

/// Whether every input this partition will receive has been delivered to it: none left
/// undelivered on its own consumer, and no event of the organisation still queued for the
/// workers (EVENTS is a work queue and a worker acks an event only after the inputs it made
/// are stored, so an event still there may yet produce inputs with earlier times). An idle
/// flush before that point would push those later inputs out of order. EVENTS is asked
/// first: a worker stores its inputs before it acks its events, so once EVENTS is empty
/// every input is on CORR (asked the other way round, inputs stored between the two
/// questions would be missed). A question the servers cannot answer (a leader moving)
/// counts as "not yet".
async fn upstream_drained(js: &jetstream::Context, consumer: &jetstream::consumer::Consumer<pull::Config>, names: &Names) -> bool {
    if !matches!(first_queued(js, &names.events_stream, &names.events_filter()).await, Ok(None)) {
        return false;
    }
    matches!(consumer.get_info().await, Ok(info) if info.num_pending == 0)
}

/// Whether an idle partition may go on as if no more inputs will come (to flush or to
/// exit, `doing`): its upstream is drained, or, with `--exit-when-idle`, it has waited
/// [`crate::DRAIN_PATIENCE`] times its idle time for that (a worker may have died with the
/// organisation's events still queued), which it says. A live partition waits as long as
/// it takes.
async fn nothing_more_coming(
    js: &jetstream::Context,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    s: &CorrelatorSettings,
    idle: Duration,
    doing: &str,
) -> bool {
    if upstream_drained(js, consumer, &s.names).await {
        return true;
    }
    let gave_up = s.idle.exit_after.is_some_and(|d| idle >= d * crate::DRAIN_PATIENCE);
    if gave_up {
        eprintln!(
            "correlator: {doing} after {idle:.0?} idle although events are still queued for the workers or inputs are on their way (is a worker running?)"
        );
    }
    gave_up
}

/// The first subject under `filter` still holding messages on work-queue stream `stream`,
/// with its count (`None`: the queue is empty). Only subjects holding messages are listed.
async fn first_queued(js: &jetstream::Context, stream: &str, filter: &str) -> Result<Option<(String, usize)>, String> {
    use futures_util::TryStreamExt;
    let s = js.get_stream_no_info(stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
    let mut subjects = s.info_with_subjects(filter).await.map_err(|e| format!("stream {stream}: {e}"))?;
    subjects.try_next().await.map_err(|e| format!("stream {stream}: {e}"))
}

/// Whether no finding of the organisation can still come: no event queued for the
/// workers, no input on CORR waiting for (or unacked by) a partition, and no partition's
/// checkpoint holding inputs it has not released. A partition publishes its findings
/// before it writes its checkpoint, so by then they are stored. `Err` says what is still
/// outstanding (or which question the servers could not answer: a leader moving).
pub(crate) async fn partitions_drained(js: &jetstream::Context, names: &Names) -> Result<(), String> {
    use futures_util::TryStreamExt;
    // EVENTS is a work queue too: an event is there until a worker has stored what it made.
    if let Some((subject, n)) = first_queued(js, &names.events_stream, &names.events_filter()).await? {
        return Err(format!("{n} events on {subject} not yet scanned by a worker"));
    }
    // CORR is a work queue: an input is there until its partition acks it.
    let filter = format!("corr.{}.>", crate::subject_token(&names.org));
    if let Some((subject, n)) = first_queued(js, &names.corr_stream, &filter).await? {
        return Err(format!("{n} correlation inputs on {subject} not yet taken in"));
    }
    let bucket = match js.get_key_value(&names.corr_bucket).await {
        Ok(b) => b,
        // No bucket: no partition has taken in anything (a partition makes it first).
        Err(e) if bucket_missing(&e) => return Ok(()),
        Err(e) => return Err(format!("checkpoint bucket {}: {e}", names.corr_bucket)),
    };
    let prefix = format!("{}.", crate::subject_token(&names.org));
    let mut keys = bucket.keys().await.map_err(|e| format!("checkpoint bucket {}: {e}", names.corr_bucket))?;
    while let Some(key) = keys.try_next().await.map_err(|e| format!("checkpoint bucket {}: {e}", names.corr_bucket))? {
        if !key.starts_with(&prefix) {
            continue;
        }
        let Some(bytes) = bucket.get(&key).await.map_err(|e| format!("checkpoint {key}: {e}"))? else { continue };
        let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| format!("checkpoint {key} is unreadable: {e}"))?;
        if !cp.pending.is_empty() {
            return Err(format!("partition {key} holds {} inputs not yet released", cp.pending.len()));
        }
    }
    Ok(())
}

/// Whether the server said the bucket does not exist (not that it could not answer).
fn bucket_missing(e: &jetstream::context::KeyValueError) -> bool {
    use jetstream::context::{GetStreamError, GetStreamErrorKind};
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .is_some_and(|g| matches!(g.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence_of(m: &InputMsg) -> u128 {
        portcullis_event::parse_hex_id(&m.evidence).expect("the test's evidence is a finding id")
    }

    fn inputs(key: &str) -> Vec<InputMsg> {
        // Five groups, bursts and gaps, several firings per group.
        let mut out = Vec::new();
        let mut t = 1_600_000_000_000_000i64;
        let mut x = 7u64;
        for i in 0..3000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            t += ((x >> 33) % 1_800_000_000) as i64; // up to 30 minutes apart
            out.push(InputMsg {
                ts: t,
                correlation: key.to_string(),
                pos: 0,
                group: format!("10.0.0.{}", (x >> 20) % 5),
                value: String::new(),
                evidence: format!("{i:032x}"),
                entities: String::new(),
                event_published_us: None,
            });
        }
        out
    }

    fn ids(found: &[(portcullis_correlate::CorrelationFinding, Option<i64>)]) -> Vec<String> {
        found.iter().map(|(f, _)| f.id.clone()).collect()
    }

    #[test]
    fn a_restored_partition_continues_as_if_never_stopped() {
        let loaded = portcullis_pipeline::load_rules(&RuleSettings::default()).expect("rules");
        let set = loaded.correlations.clone();
        let (ci, c) = set
            .correlations
            .iter()
            .enumerate()
            .filter(|(_, c)| c.condition.grows())
            .max_by_key(|(_, c)| c.timespan_micros)
            .expect("a growing correlation");
        let all = inputs(&c.key());
        let mut whole = Partition::new(set.clone());
        let mut expected = Vec::new();
        for m in all.clone() {
            whole.push(ci as u32, evidence_of(&m), m, &mut expected);
        }
        assert!(expected.len() > 10, "the inputs should fire often: {}", expected.len());
        for cut in [1, 500, 1234, 2999] {
            let mut first = Partition::new(set.clone());
            let mut got = Vec::new();
            for m in all[..cut].iter().cloned() {
                first.push(ci as u32, evidence_of(&m), m, &mut got);
            }
            // Some inputs not yet released at the cut: they travel as pending.
            for m in all[cut..(cut + 3).min(all.len())].iter().cloned() {
                first.add(m);
            }
            first.expire();
            let cp = first.checkpoint(&Taken { highest: cut as u64, ..Taken::default() });
            let bytes = serde_json::to_vec(&cp).expect("serialises");
            let mut second = Partition::new(set.clone());
            let (_, restored) = second.restore(serde_json::from_slice(&bytes).expect("parses"));
            assert_eq!(restored as usize, (cut + 3).min(all.len()) - cut);
            second.release(None, &mut got);
            for m in all[(cut + 3).min(all.len())..].iter().cloned() {
                second.push(ci as u32, evidence_of(&m), m, &mut got);
            }
            assert_eq!(ids(&got), ids(&expected), "cut at {cut}");
            // The checkpoint holds only what live windows need, not the history.
            assert!(cp.retained.len() < 200, "{} retained at {cut}", cp.retained.len());
        }
    }

    #[test]
    fn a_message_lost_on_its_way_is_taken_in_when_delivered_again() {
        let mut taken = Taken::default();
        // 4 is lost in flight; 5 and 6 are taken in, then 4 comes again and 5's ack was lost.
        for seq in [1, 2, 3, 5, 6] {
            assert!(!taken.contains(seq));
            taken.insert(seq);
        }
        assert!(!taken.contains(4), "a sequence never taken in is not skipped for being below the highest");
        taken.insert(4);
        assert!(taken.contains(5), "a redelivery of what was taken in is skipped");
        // The server holds 1..=4 acked: those are forgotten, the rest survive a checkpoint.
        taken.prune(4);
        assert_eq!(taken.above_floor.iter().copied().collect::<Vec<_>>(), vec![5, 6]);
        let cp = Checkpoint { seq: taken.highest, taken: Some(taken.above_floor.iter().copied().collect()), ..Default::default() };
        let back: Checkpoint = serde_json::from_slice(&serde_json::to_vec(&cp).expect("serialises")).expect("parses");
        let again = Taken::from_checkpoint(&back);
        assert!(again.contains(6) && !again.contains(7) && again.highest == 6);
        // A checkpoint written before `taken` existed keeps its sequence as the floor.
        let old: Checkpoint = serde_json::from_str(r#"{"seq":9,"retained":[],"pending":[]}"#).expect("old checkpoint");
        let legacy = Taken::from_checkpoint(&old);
        assert!(legacy.contains(9) && !legacy.contains(10));
    }

    #[test]
    fn inputs_are_released_in_the_batch_order() {
        let loaded = portcullis_pipeline::load_rules(&RuleSettings::default()).expect("rules");
        let set = loaded.correlations.clone();
        let (ci, c) = set
            .correlations
            .iter()
            .enumerate()
            .filter(|(_, c)| c.condition.grows())
            .max_by_key(|(_, c)| c.timespan_micros)
            .expect("a growing correlation");
        let all = inputs(&c.key());
        let mut sorted = Partition::new(set.clone());
        let mut expected = Vec::new();
        for m in all.clone() {
            sorted.push(ci as u32, evidence_of(&m), m, &mut expected);
        }
        // The same inputs arriving shuffled (as from many workers) and released at the end.
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.swap(10, 2000);
        let mut p = Partition::new(set.clone());
        for m in shuffled {
            assert!(p.add(m));
        }
        let mut got = Vec::new();
        p.release(None, &mut got);
        assert_eq!(ids(&got), ids(&expected));
        assert_eq!(p.correlator.late_inputs, 0);
        // An input naming an unknown correlation or position is refused.
        let mut bad = all[0].clone();
        bad.correlation = "nope".into();
        assert!(!p.add(bad));
        let mut bad = all[0].clone();
        bad.pos = 9;
        assert!(!p.add(bad));
        // So is one whose evidence is not a finding id.
        let mut bad = all[0].clone();
        bad.evidence = "not a finding id".into();
        assert!(!p.add(bad));
    }
}

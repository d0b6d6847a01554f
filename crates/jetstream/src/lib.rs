//! Scale-out over NATS JetStream: agents publish events, any number of workers scan them
//! with the Sigma engine, correlation partitions run the correlations, and a collector
//! writes findings into the case file. See `docs/scale-out.md` for the design.
//!
//! ```text
//! agent ──events.<org>.<host>.<source>──► EVENTS (work queue) ──► worker (durable "workers-<org>")
//!   Nats-Msg-Id = file identity + record          │ detections              │ correlation inputs
//!                                                  ▼                         ▼
//!                              FINDINGS ◄── findings.<org>       CORR (corr.<partition>)
//!                              Nats-Msg-Id = finding id          ──► correlator K (durable "corr-K",
//!                                   │                               checkpoint in KV bucket)
//!                                   ▼                                    │ correlation findings
//!                              collector ──► case (INSERT OR IGNORE)  ◄──┘ (to FINDINGS)
//! ```
//!
//! Every message that is written is acknowledged only after what it produced is stored
//! (the worker acks an event after the publish acks of its findings; the collector after
//! the case transaction commits), and every id is stable, so a crash anywhere redelivers
//! and re-publishes without loss or duplicates.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use portcullis_event::Timestamp;
use portcullis_finding::{Entity, Finding, FindingKind, Matcher, RuleSource};
use portcullis_sigma::Level;
use serde::{Deserialize, Serialize};

pub mod agent;
pub mod collector;
pub mod correlator;
pub mod worker;

/// The default server.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Stream, consumer and bucket names, so two deployments can share one server.
#[derive(Clone, Debug)]
pub struct Names {
    /// The organisation: the second token of every subject.
    pub org: String,
    pub events_stream: String,
    pub findings_stream: String,
    pub corr_stream: String,
    /// The key-value bucket of correlation checkpoints.
    pub corr_bucket: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            org: "default".into(),
            events_stream: "EVENTS".into(),
            findings_stream: "FINDINGS".into(),
            corr_stream: "CORR".into(),
            corr_bucket: "PORTCULLIS_CORR".into(),
        }
    }
}

impl Names {
    pub fn event_subject(&self, host: &str, source: &str) -> String {
        format!("events.{}.{}.{}", subject_token(&self.org), subject_token(host), subject_token(source))
    }

    pub fn events_filter(&self) -> String {
        format!("events.{}.>", subject_token(&self.org))
    }

    pub fn findings_subject(&self) -> String {
        format!("findings.{}", subject_token(&self.org))
    }

    pub fn corr_subject(&self, partition: u32) -> String {
        format!("corr.{}.{partition}", subject_token(&self.org))
    }
}

/// How streams are created: replicas (1, or 3 on a three-node cluster) and the duplicate
/// window within which a re-sent message id is dropped.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub replicas: usize,
    pub duplicate_window: Duration,
    /// How long findings stay on FINDINGS for collectors.
    pub findings_max_age: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings { replicas: 1, duplicate_window: Duration::from_secs(3600), findings_max_age: Duration::from_secs(7 * 86_400) }
    }
}

/// Why a scale-out command failed.
#[derive(Debug)]
pub enum Error {
    /// No server answered at the URL.
    Unreachable { url: String, reason: String },
    /// The server refused or failed an operation.
    Nats(String),
    /// Rules or indicators could not be loaded.
    Rules(String),
    /// The case file could not be opened or written.
    Case(String),
    /// An input could not be read or a setting is wrong.
    Input(String),
}

impl Error {
    /// The process exit code: 2 when the server is unreachable, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Unreachable { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable { url, reason } => write!(
                f,
                "cannot reach the NATS server at {url}: {reason} (start one with scripts/nats-server.sh start, or pass --nats URL)"
            ),
            Error::Nats(e) | Error::Rules(e) | Error::Case(e) | Error::Input(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

/// One fetch from a pull consumer.
pub(crate) struct Fetched {
    pub messages: Vec<jetstream::Message>,
    /// The server could not serve the fetch (a consumer still electing its leader after a
    /// node was lost answers 503): not idle time, since messages may be waiting.
    pub unavailable: bool,
}

/// One batch of at most `max` messages from a pull consumer, waiting at most `expires`. A
/// fetch the server could not serve is said (`role: what: error`, at most once every ten
/// seconds with a count of the others) and paused after, so that a leaderless consumer is
/// not asked in a tight loop.
pub(crate) async fn fetch_batch(
    consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
    max: usize,
    expires: Duration,
    role: &str,
    what: &str,
) -> Result<Fetched, Error> {
    use futures_util::StreamExt;
    let mut batch = consumer
        .fetch()
        .max_messages(max.max(1))
        .expires(expires)
        .messages()
        .await
        .map_err(|e| nats_err(&format!("fetching {what}"))(&e))?;
    let mut messages = Vec::new();
    let mut unavailable = false;
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => messages.push(m),
            Err(e) => {
                unavailable = true;
                say_now_and_then(&format!("{role}: fetching {what}: {e}"));
            }
        }
    }
    if unavailable && messages.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Fetched { messages, unavailable })
}

/// An idle collector or correlator waits at most this many times its idle time for work
/// still on its way (a partition no correlator runs never releases its inputs; events no
/// worker runs never make any).
pub(crate) const DRAIN_PATIENCE: u32 = 5;

/// Says `line` on stderr unless a line was said in the last ten seconds, in which case it
/// is counted and the count said with the next line that is: a server down for minutes
/// fills a log with a line every ten seconds, not thousands.
pub(crate) fn say_now_and_then(line: &str) {
    use std::sync::Mutex;
    static LAST: Mutex<(Option<std::time::Instant>, u64)> = Mutex::new((None, 0));
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = std::time::Instant::now();
    if last.0.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
        last.1 += 1;
        return;
    }
    match last.1 {
        0 => eprintln!("{line}"),
        n => eprintln!("{line} ({n} more like it not shown)"),
    }
    *last = (Some(now), 0);
}

pub(crate) fn nats_err(what: &str) -> impl Fn(&dyn fmt::Display) -> Error + '_ {
    move |e| Error::Nats(format!("{what}: {e}"))
}

/// Connects, failing within a few seconds with [`Error::Unreachable`] naming the URL.
/// `url` may list several servers of a cluster, comma-separated.
pub async fn connect(url: &str) -> Result<jetstream::Context, Error> {
    let addrs = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Unreachable { url: url.to_string(), reason: format!("not a server address: {e}") })?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name("portcullis")
        .connect(addrs)
        .await
        .map_err(|e| Error::Unreachable { url: url.to_string(), reason: e.to_string() })?;
    Ok(jetstream::new(client))
}

/// Creates the three streams if they are missing (idempotent; an existing stream is used
/// as it is).
pub async fn ensure_streams(js: &jetstream::Context, names: &Names, s: &StreamSettings) -> Result<(), Error> {
    let specs = [
        (&names.events_stream, "events.>", stream::RetentionPolicy::WorkQueue, Duration::ZERO),
        (&names.findings_stream, "findings.>", stream::RetentionPolicy::Limits, s.findings_max_age),
        (&names.corr_stream, "corr.>", stream::RetentionPolicy::WorkQueue, Duration::ZERO),
    ];
    for (name, subject, retention, max_age) in specs {
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subject.to_string()],
            retention,
            storage: stream::StorageType::File,
            num_replicas: s.replicas.max(1),
            duplicate_window: s.duplicate_window,
            max_age,
            ..Default::default()
        };
        // A cluster that has just started (or lost its meta leader) answers JetStream
        // requests only once it has elected one: retry for up to half a minute.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match js.get_or_create_stream(config.clone()).await {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("portcullis: stream {name} not ready ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(Error::Nats(format!("stream {name}: {e}"))),
            }
        }
    }
    Ok(())
}

/// The durable pull consumer `config` on stream `stream_name`, created if missing. A
/// cluster that has just lost a node answers only once it has elected new stream and
/// consumer leaders: like [`ensure_streams`], retry for up to half a minute.
pub async fn durable_consumer(
    js: &jetstream::Context,
    stream_name: &str,
    config: jetstream::consumer::pull::Config,
) -> Result<jetstream::consumer::Consumer<jetstream::consumer::pull::Config>, Error> {
    let name = config.durable_name.clone().unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = match js.get_stream(stream_name).await {
            Ok(stream) => stream.get_or_create_consumer(&name, config.clone()).await.map_err(|e| format!("consumer: {e}")),
            Err(e) => Err(format!("stream: {e}")),
        };
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("portcullis: consumer {name} on {stream_name} not ready ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(Error::Nats(e)),
        }
    }
}

/// A name made safe as one NATS subject token: letters, digits, `-` and `_` kept, anything
/// else (dots, wildcards, spaces, control characters) as `_`; at most 64 characters; `_`
/// if empty.
pub fn subject_token(s: &str) -> String {
    let mut out: String = s.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A 128-bit hash of parts (each followed by a separator), as 32 hex digits.
pub fn stable_id(parts: &[&[u8]]) -> String {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    portcullis_event::hex_id(h.digest128())
}

/// A finding as published on FINDINGS: everything the case file records, in plain types.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingMsg {
    pub id: String,
    /// `detection` or `correlation`.
    pub kind: String,
    pub matcher: String,
    #[serde(default)]
    pub log: Option<String>,
    pub rule_source: String,
    pub rule_id: String,
    pub rule_title: String,
    pub level: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// UTC microseconds.
    #[serde(default)]
    pub first_ts: Option<i64>,
    #[serde(default)]
    pub last_ts: Option<i64>,
    #[serde(default)]
    pub host: Option<String>,
    /// `kind=value`.
    #[serde(default)]
    pub entities: Vec<String>,
    pub sentence: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub record: Option<u64>,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The detection's event as JSON text (as the batch hunt records it).
    #[serde(default)]
    pub event: Option<String>,
    /// When the server received the event that led here (UTC microseconds), for latency.
    #[serde(default)]
    pub event_published_us: Option<i64>,
}

impl FindingMsg {
    pub fn from_finding(f: &Finding, event: Option<String>, event_published_us: Option<i64>) -> FindingMsg {
        FindingMsg {
            id: f.id.clone(),
            kind: match f.kind {
                FindingKind::Detection => "detection".into(),
                FindingKind::Correlation => "correlation".into(),
            },
            matcher: f.matcher.as_str().into(),
            log: f.log.clone(),
            rule_source: f.rule_source.as_str().into(),
            rule_id: f.rule_id.to_string(),
            rule_title: f.rule_title.to_string(),
            level: f.level.as_str().into(),
            tags: f.tags.to_vec(),
            first_ts: f.first_ts.map(|t| t.0),
            last_ts: f.last_ts.map(|t| t.0),
            host: f.host.clone(),
            entities: f.entities.iter().map(|e| e.encode()).collect(),
            sentence: f.sentence.clone(),
            path: f.path.clone(),
            record: f.record,
            evidence: f.evidence.clone(),
            event,
            event_published_us,
        }
    }

    /// Back to a finding, refusing unknown kinds, levels and matchers, ids that are not
    /// 32 lower-case hex digits (as every Portcullis process writes them: an upper-case
    /// copy of an id would be stored as a second finding) and entities that are not
    /// `kind=value`.
    pub fn into_finding(self) -> Result<(Finding, Option<String>), String> {
        if portcullis_event::parse_hex_id(&self.id).is_none() {
            return Err(format!("finding id {:?} is not 32 lower-case hex digits", self.id));
        }
        let kind = match self.kind.as_str() {
            "detection" => FindingKind::Detection,
            "correlation" => FindingKind::Correlation,
            k => return Err(format!("unknown finding kind {k:?}")),
        };
        let matcher = Matcher::parse(&self.matcher).ok_or_else(|| format!("unknown matcher {:?}", self.matcher))?;
        let level = Level::parse(&self.level).ok_or_else(|| format!("unknown level {:?}", self.level))?;
        let entities = self
            .entities
            .iter()
            .map(|e| Entity::decode(e).ok_or_else(|| format!("entity {e:?} is not kind=value")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            Finding {
                id: self.id,
                kind,
                matcher,
                log: self.log,
                rule_source: RuleSource::parse(&self.rule_source),
                rule_id: self.rule_id.into(),
                rule_title: self.rule_title.into(),
                level,
                tags: self.tags.into(),
                first_ts: self.first_ts.map(Timestamp),
                last_ts: self.last_ts.map(Timestamp),
                host: self.host,
                entities,
                sentence: self.sentence,
                path: self.path,
                record: self.record,
                evidence: self.evidence,
            },
            self.event,
        ))
    }
}

/// A correlation input as published on CORR. The correlation is named by its key (not its
/// index), so a worker and a correlator with different rule files cannot mix them up.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InputMsg {
    pub ts: i64,
    pub correlation: String,
    pub pos: u32,
    pub group: String,
    #[serde(default)]
    pub value: String,
    pub evidence: String,
    #[serde(default)]
    pub entities: String,
    #[serde(default)]
    pub event_published_us: Option<i64>,
}

/// The partition of a (correlation, group): a stable hash, so every input of a group goes
/// to the same correlator.
pub fn partition(correlation_key: &str, group: &str, partitions: u32) -> u32 {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{correlation_key}\u{1f}{group}").as_bytes());
    (h % partitions.max(1) as u64) as u32
}

/// The server's receive time of a consumed message, in UTC microseconds.
pub(crate) fn published_us(msg: &jetstream::Message) -> Option<i64> {
    let info = msg.info().ok()?;
    Some((info.published.unix_timestamp_nanos() / 1000) as i64)
}

/// The stream sequence of a consumed message (0 if its reply subject is not JetStream's).
pub(crate) fn stream_seq(msg: &jetstream::Message) -> u64 {
    msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}

/// Stops a loop after a time without messages (for tests, benchmarks and batch back-fills).
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    pub exit_after: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_safe() {
        assert_eq!(subject_token("EXCH01.corp.local"), "EXCH01_corp_local");
        assert_eq!(subject_token("a b*>\u{0}"), "a_b___");
        assert_eq!(subject_token(""), "_");
        assert_eq!(subject_token(&"x".repeat(100)).len(), 64);
        let n = Names::default();
        assert_eq!(n.event_subject("h.1", "windows"), "events.default.h_1.windows");
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        let p: Vec<u32> = (0..1000).map(|i| partition("c", &format!("10.0.0.{i}"), 4)).collect();
        assert_eq!(p, (0..1000).map(|i| partition("c", &format!("10.0.0.{i}"), 4)).collect::<Vec<_>>());
        for k in 0..4 {
            assert!(p.iter().filter(|x| **x == k).count() > 150);
        }
        assert_eq!(partition("c", "g", 0), 0);
    }

    #[test]
    fn finding_messages_refuse_garbage() {
        let good = r#"{"id":"0123456789abcdef0123456789abcdef","kind":"detection","matcher":"rule","rule_source":"builtin","rule_id":"r","rule_title":"t","level":"high","sentence":"s","entities":["host=exch01"]}"#;
        let m: FindingMsg = serde_json::from_str(good).expect("parses");
        let (f, _) = m.into_finding().expect("valid");
        assert_eq!(f.entities.len(), 1);
        for bad in [
            good.replace("0123456789abcdef0123456789abcdef", "x"),
            good.replace("0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF"),
            good.replace("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef0"),
            good.replace("\"high\"", "\"severe\""),
            good.replace("detection", "guess"),
            good.replace("host=exch01", "nonsense"),
        ] {
            let m: FindingMsg = serde_json::from_str(&bad).expect("parses");
            assert!(m.into_finding().is_err(), "{bad}");
        }
    }
}

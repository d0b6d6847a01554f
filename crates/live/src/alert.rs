//! Alerts for new findings: one JSON object each, written as JSONL by the front end and
//! posted to a webhook by a background sender with retries and exponential back-off. The
//! webhook queue is bounded; what it cannot hold is counted and said, and every alert is
//! also a finding in the case, so nothing is lost from the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use portcullis_finding::Finding;

/// One new finding, as announced.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Alert {
    /// Always "alert".
    pub kind: String,
    /// The finding's stable id (also its id in the case).
    pub id: String,
    pub level: String,
    pub rule_id: String,
    pub title: String,
    pub host: Option<String>,
    pub time: Option<String>,
    /// The finding in plain words (escape before display: evidence is hostile).
    pub sentence: String,
    pub path: Option<String>,
    pub record: Option<u64>,
}

impl Alert {
    pub fn of(f: &Finding) -> Alert {
        Alert {
            kind: "alert".into(),
            id: f.id.clone(),
            level: f.level.as_str().into(),
            rule_id: f.rule_id.to_string(),
            title: f.rule_title.to_string(),
            host: f.host.clone(),
            time: f.first_ts.map(|t| t.to_string()),
            sentence: f.sentence.clone(),
            path: f.path.clone(),
            record: f.record,
        }
    }
}

/// Counts of the webhook sender.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub sent: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Alerts given up on after every retry, or not queued because the queue was full.
    pub dropped: AtomicU64,
}

/// Posts alerts to a URL (JSON array per batch) from a background thread.
pub struct Webhook {
    tx: Option<SyncSender<Alert>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<WebhookStats>,
}

/// How many alerts wait for the webhook at most.
const QUEUE: usize = 10_000;

/// How a batch that failed is tried again.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Tries per batch, the first included.
    pub attempts: u32,
    /// Wait after the first failure; doubled after each, up to `max`.
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// Eight tries over about half a minute.
    fn default() -> Self {
        Backoff { attempts: 8, first: Duration::from_millis(250), max: Duration::from_secs(30) }
    }
}

impl Webhook {
    pub fn start(url: String) -> Webhook {
        Webhook::with_backoff(url, Backoff::default())
    }

    pub fn with_backoff(url: String, backoff: Backoff) -> Webhook {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let s = stats.clone();
        let thread = std::thread::spawn(move || send_loop(&url, rx, &s, backoff));
        Webhook { tx: Some(tx), thread: Some(thread), stats }
    }

    /// Queues an alert; never blocks detection (a full queue counts a drop).
    pub fn send(&self, alert: Alert) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(alert)
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued (with its retries) and stops.
    pub fn finish(mut self) -> Arc<WebhookStats> {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats.clone()
    }
}

fn send_loop(url: &str, rx: Receiver<Alert>, stats: &WebhookStats, backoff: Backoff) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 100 {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let body = serde_json::to_string(&batch).unwrap_or_default();
        let mut delay = backoff.first;
        let mut sent = false;
        for attempt in 1..=backoff.attempts.max(1) {
            let result = agent.post(url).header("Content-Type", "application/json").send(&body);
            if result.is_ok() {
                sent = true;
                break;
            }
            if attempt < backoff.attempts {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(delay);
                delay = (delay * 2).min(backoff.max);
            }
        }
        let counter = if sent { &stats.sent } else { &stats.dropped };
        counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

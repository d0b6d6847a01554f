//! `portcullis agent`: reads log files and publishes their events to the EVENTS stream.
//! Reading and publishing are separate: a reader thread fills a bounded channel, and a
//! [`Publisher`] sends each event with a stable `Nats-Msg-Id` and awaits the server's
//! acks in a bounded window, so a slow server slows the reader instead of filling memory.
//! With `follow`, files are followed as `watch` follows them (`live::Follower`: new files,
//! rotation, truncation) and where each stands is saved to a state file only once every
//! event read before it is acked: a restart (or `kill -9`) resends at most what was not yet
//! saved, and the server drops those repeats by their message ids.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use async_nats::jetstream;
use portcullis_event::Event;

use crate::{Error, Names, StreamSettings};

/// A publish kept until the server acks it, to send again if it does not.
struct Pending {
    subject: String,
    payload: bytes::Bytes,
    msg_id: String,
    /// Times it was sent again after its ack failed.
    resent: u32,
}

/// The server's answer to one publish, awaited in its own task so that its timeout runs
/// from the send, not from when the publisher gets round to it: when a node dies with a
/// full window in flight, every lost ack then costs one timeout together, not one each.
type Ack = tokio::task::JoinHandle<Result<async_nats::jetstream::publish::PublishAck, String>>;

/// How many times a publish is sent again when the server does not ack it (a node of the
/// cluster lost, a leader election): the message id makes a repeat harmless.
const RETRIES: u32 = 20;

/// Publishes events to EVENTS with at most `window` publishes awaiting their acks.
pub struct Publisher {
    js: jetstream::Context,
    names: Names,
    host: String,
    window: usize,
    /// Each publish awaiting its ack, with what is needed to send it again.
    in_flight: VecDeque<(Ack, Pending)>,
    /// Events the server stored.
    pub stored: u64,
    /// Events the server dropped as already stored (same `Nats-Msg-Id` within its window).
    pub duplicates: u64,
}

impl Publisher {
    /// `host` is the machine the logs are from (the subject's third token).
    pub fn new(js: jetstream::Context, names: Names, host: &str, window: usize) -> Publisher {
        Publisher { js, names, host: host.to_string(), window: window.max(1), in_flight: VecDeque::new(), stored: 0, duplicates: 0 }
    }

    /// Publishes one event read from `path` under `msg_id` (see [`event_msg_id`]); returns
    /// once the window has room (the oldest ack is awaited when it is full).
    pub async fn publish(&mut self, event: &Event, path: &str, msg_id: &str) -> Result<(), Error> {
        while self.in_flight.len() >= self.window {
            self.settle_one().await?;
        }
        let pending = Pending {
            subject: self.names.event_subject(&self.host, event.source.as_str()),
            payload: portcullis_event::wire::encode(event, path, &self.host).into(),
            msg_id: msg_id.to_string(),
            resent: 0,
        };
        let ack = self.send(&pending).await?;
        self.in_flight.push_back((ack, pending));
        Ok(())
    }

    async fn send(&self, p: &Pending) -> Result<Ack, Error> {
        let mut tries = 0;
        loop {
            let message = jetstream::message::PublishMessage::build().payload(p.payload.clone()).message_id(&p.msg_id);
            match self.js.send_publish(p.subject.clone(), message).await {
                Ok(ack) => return Ok(tokio::spawn(async move { ack.await.map_err(|e| e.to_string()) })),
                Err(e) if tries < RETRIES => {
                    tries += 1;
                    eprintln!("agent: publishing an event failed ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250 * tries as u64)).await;
                }
                Err(e) => return Err(Error::Nats(format!("publishing an event: {e}"))),
            }
        }
    }

    async fn outcome(ack: Ack) -> Result<async_nats::jetstream::publish::PublishAck, String> {
        ack.await.unwrap_or_else(|e| Err(e.to_string()))
    }

    fn count(&mut self, ack: &async_nats::jetstream::publish::PublishAck) {
        if ack.duplicate {
            self.duplicates += 1;
        } else {
            self.stored += 1;
        }
    }

    /// Settles the oldest publish. A failed ack starts a recovery round: the acks of every
    /// publish in flight are collected (each resolves within the ack timeout of its own
    /// send), then, after one pause, every publish without an ack is sent again in order, and
    /// the round is said in one line, not a line per event.
    async fn settle_one(&mut self) -> Result<(), Error> {
        let Some((ack, pending)) = self.in_flight.pop_front() else { return Ok(()) };
        let first_error = match Self::outcome(ack).await {
            Ok(a) => {
                self.count(&a);
                return Ok(());
            }
            Err(e) => e,
        };
        let mut failed = vec![pending];
        for (ack, pending) in std::mem::take(&mut self.in_flight) {
            match Self::outcome(ack).await {
                Ok(a) => self.count(&a),
                Err(_) => failed.push(pending),
            }
        }
        let round = failed.iter().map(|p| p.resent).max().unwrap_or(0) + 1;
        if round > RETRIES {
            return Err(Error::Nats(format!("event not stored after {RETRIES} attempts: {first_error}")));
        }
        eprintln!("agent: {} events not acked ({first_error}); sending them again (attempt {round} of {RETRIES})", failed.len());
        tokio::time::sleep(std::time::Duration::from_millis(250 * round as u64)).await;
        for mut pending in failed {
            pending.resent += 1;
            let ack = self.send(&pending).await?;
            self.in_flight.push_back((ack, pending));
        }
        Ok(())
    }

    /// Waits for every outstanding ack.
    pub async fn flush(&mut self) -> Result<(), Error> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }
}

/// The identity of a file for message ids: its canonical path and, on Unix, its device and
/// inode (a file replaced under the same name is another file).
pub fn file_identity(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            return format!("{}:{}:{}", m.dev(), m.ino(), canonical.display());
        }
    }
    canonical.display().to_string()
}

/// The stable message id of an event: (organisation, file identity, archive member, record)
/// and the event's content (two events of one record, as in a JSON array on one line, get
/// two ids; the same event sent again gets the same id).
pub fn event_msg_id(org: &str, identity: &str, ev: &Event) -> String {
    let content = portcullis_hunt::finding_id("", ev);
    crate::stable_id(&[org.as_bytes(), identity.as_bytes(), ev.member.as_bytes(), &ev.record.to_le_bytes(), content.as_bytes()])
}

/// What `portcullis agent` does.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub url: String,
    pub names: Names,
    pub streams: StreamSettings,
    pub paths: Vec<PathBuf>,
    /// The machine the logs come from.
    pub host: String,
    /// Publishes awaiting acks at most.
    pub window: usize,
    pub assume_utc_offset_secs: Option<i64>,
    /// Events per second at most (None: as fast as the server acks).
    pub max_rate: Option<u64>,
    /// Follow the files as they grow instead of reading them once.
    pub follow: Option<Follow>,
}

/// How the agent follows files.
#[derive(Clone, Debug)]
pub struct Follow {
    /// Where each file's reading stands (JSON), saved after the server acked what was read.
    pub state: PathBuf,
    pub interval: std::time::Duration,
    /// Stop after this long without a new event (None: until `stop`).
    pub exit_when_idle: Option<std::time::Duration>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What the reader thread hands the publisher.
enum Item {
    Event(Event, std::sync::Arc<str>, String),
    /// Every event before this is read; save this state once they are acked.
    Checkpoint(String),
}

/// The reader thread of a following agent: polls, sends the events, then the state to save.
fn follow_files(
    f: &Follow,
    paths: Vec<PathBuf>,
    read: portcullis_sources::ReadOptions,
    org: &str,
    tx: tokio::sync::mpsc::Sender<Item>,
) -> Vec<String> {
    use std::sync::atomic::Ordering;
    let files: Vec<portcullis_live::FileState> =
        std::fs::read(&f.state).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut follower = portcullis_live::Follower::new(paths, read, files);
    let mut last_saved = String::new();
    let mut last_event = Instant::now();
    let mut notes = Vec::new();
    while !f.stop.load(Ordering::Relaxed) {
        let mut sent = 0u64;
        let mut closed = false;
        let pieces = follower.poll(&portcullis_live::PollLimits::default(), &mut |key, path, ev| {
            if closed {
                return;
            }
            let id = event_msg_id(org, key, ev);
            let shown: std::sync::Arc<str> = std::sync::Arc::from(path.display().to_string());
            closed = tx.blocking_send(Item::Event(ev.clone(), shown, id)).is_err();
            sent += 1;
        });
        if closed {
            break;
        }
        for p in pieces {
            for n in p.notes.into_iter().chain(p.report.notes.iter().map(|n| format!("{}: {n}", p.report.path.display()))) {
                eprintln!("portcullis agent: {}", portcullis_event::escape_display(&n));
                if notes.len() < 100 {
                    notes.push(n);
                }
            }
        }
        let state = follower.checkpoint();
        if state != last_saved {
            if tx.blocking_send(Item::Checkpoint(state.clone())).is_err() {
                break;
            }
            last_saved = state;
        }
        if sent > 0 {
            last_event = Instant::now();
        } else if f.exit_when_idle.is_some_and(|idle| last_event.elapsed() >= idle) {
            break;
        } else {
            portcullis_live::pause(f.interval, &f.stop);
        }
    }
    notes
}

/// Writes `state` to `path` atomically (a temporary file renamed over it).
fn save_state(path: &Path, state: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let fail = |e: std::io::Error| Error::Input(format!("{}: {e}", path.display()));
    std::fs::write(&tmp, state).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// What an agent run did.
#[derive(Debug, Default)]
pub struct AgentReport {
    pub files: usize,
    pub files_failed: Vec<String>,
    pub events: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub seconds: f64,
}

/// Reads every file once and publishes its events.
pub async fn run(s: &AgentSettings) -> Result<AgentReport, Error> {
    let started = Instant::now();
    let js = crate::connect(&s.url).await?;
    crate::ensure_streams(&js, &s.names, &s.streams).await?;
    let read = portcullis_sources::ReadOptions { assume_utc_offset_secs: s.assume_utc_offset_secs, ..Default::default() };
    // The reader runs on its own thread; the channel is the back-pressure between them.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(1024);
    let org = s.names.org.clone();
    let (files, reader) = if let Some(f) = s.follow.clone() {
        for p in &s.paths {
            if !p.exists() {
                return Err(Error::Input(format!("{}: no such file or folder", p.display())));
            }
        }
        let paths = s.paths.clone();
        (Vec::new(), std::thread::spawn(move || follow_files(&f, paths, read, &org, tx)))
    } else {
        let files = portcullis_pipeline::collect_inputs(&s.paths).map_err(|e| Error::Input(e.to_string()))?;
        let reader_files = files.clone();
        let reader = std::thread::spawn(move || {
            let mut failed = Vec::new();
            for path in &reader_files {
                let identity = file_identity(path);
                let shown: std::sync::Arc<str> = std::sync::Arc::from(path.display().to_string());
                let result = portcullis_sources::read_file(path, &read, &mut |ev| {
                    let id = event_msg_id(&org, &identity, ev);
                    if tx.blocking_send(Item::Event(ev.clone(), shown.clone(), id)).is_err() {
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                });
                if let Err(e) = result {
                    failed.push(e.to_string());
                }
            }
            failed
        });
        (files, reader)
    };
    let mut publisher = Publisher::new(js, s.names.clone(), &s.host, s.window);
    let mut events = 0u64;
    let mut error = None;
    let paced = Instant::now();
    while let Some(item) = rx.recv().await {
        let (ev, path, id) = match item {
            Item::Event(ev, path, id) => (ev, path, id),
            Item::Checkpoint(state) => {
                // Saved only once everything read before it is stored.
                if let Err(e) = publisher.flush().await {
                    error = Some(e);
                    break;
                }
                if let Some(f) = &s.follow
                    && let Err(e) = save_state(&f.state, &state)
                {
                    error = Some(e);
                    break;
                }
                continue;
            }
        };
        if let Some(rate) = s.max_rate.filter(|r| *r > 0) {
            let due = std::time::Duration::from_secs_f64(events as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(paced.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if let Err(e) = publisher.publish(&ev, &path, &id).await {
            error = Some(e);
            break;
        }
        events += 1;
    }
    drop(rx);
    let failed = reader.join().unwrap_or_else(|_| vec!["the reader thread failed".into()]);
    if let Some(e) = error {
        return Err(e);
    }
    publisher.flush().await?;
    Ok(AgentReport {
        files: files.len(),
        files_failed: failed,
        events,
        stored: publisher.stored,
        duplicates: publisher.duplicates,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_event::{SourceKind, Timestamp};

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let mut a = Event::new(SourceKind::Json);
        a.record = 7;
        a.timestamp = Some(Timestamp(1));
        a.push_str("k", "v");
        let mut b = a.clone();
        b.clear(SourceKind::Json);
        b.record = 7;
        b.timestamp = Some(Timestamp(1));
        b.push_str("k", "w");
        let id = event_msg_id("org", "1:2:/x", &a);
        assert_eq!(id, event_msg_id("org", "1:2:/x", &a.clone()));
        // Two events of one record (a JSON array on one line) are two messages.
        assert_ne!(id, event_msg_id("org", "1:2:/x", &b));
        assert_ne!(id, event_msg_id("org", "1:3:/x", &a));
        assert_ne!(id, event_msg_id("other", "1:2:/x", &a));
        let mut m = a.clone();
        m.member = "inner.log".into();
        assert_ne!(id, event_msg_id("org", "1:2:/x", &m));
    }
}

//! The event wire schema: one [`Event`] as one JSON object, for publishing events on a
//! message bus (NATS JetStream) from the agent, Vector or Fluent Bit. It round-trips
//! exactly: a decoded event has the same fields in the same order, record number and
//! time (microseconds), so detections on it get the same stable finding ids as in a
//! batch hunt. The schema is documented in `docs/event-schema.md`.

use serde::{Deserialize, Serialize};

use crate::{Event, SourceKind, TimeSource, Timestamp, ValueKind};

/// The schema version written in `v`; decoders refuse others.
pub const VERSION: u32 = 1;

/// The largest encoded event a decoder accepts (bytes), so a hostile message cannot make a
/// worker allocate without bound (NATS's own default payload limit is 1 MiB; 8 MiB allows
/// servers configured larger).
pub const MAX_WIRE_BYTES: usize = 8 << 20;

/// One event on the wire. Field order is significant and kept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    /// Schema version ([`VERSION`]).
    pub v: u32,
    /// Format family: `windows`, `w3c`, `exchange_csv` or `json`; decides which rules apply.
    pub source: SourceKind,
    /// A sub-type (the Exchange log type such as `HttpProxy`); empty if none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_type: String,
    /// When it happened, UTC microseconds since the Unix epoch; absent if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// The same instant as RFC 3339 text, for people and for publishers that cannot compute
    /// microseconds; used only when `ts` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Where the time came from: `event`, `collector` or `unzoned`.
    #[serde(default = "default_time_source")]
    pub time_source: TimeSource,
    /// EVTX `EventRecordID`, or the 1-based line number for line formats.
    #[serde(default)]
    pub record: u64,
    /// The file the event was read from, as the publisher names it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// For an event inside an archive: the member's path in it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub member: String,
    /// The machine that produced the log, if the publisher knows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The fields in order: `[name, value, kind]`, kind one of `str`, `int`, `float`,
    /// `bool`, `null` (values are always text).
    pub fields: Vec<(String, String, WireKind)>,
    /// The original line for line formats (keyword rules search it); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub raw: String,
}

fn default_time_source() -> TimeSource {
    TimeSource::Event
}

/// [`ValueKind`] on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireKind {
    Str,
    Int,
    Float,
    Bool,
    Null,
}

impl From<ValueKind> for WireKind {
    fn from(k: ValueKind) -> Self {
        match k {
            ValueKind::Str => WireKind::Str,
            ValueKind::Int => WireKind::Int,
            ValueKind::Float => WireKind::Float,
            ValueKind::Bool => WireKind::Bool,
            ValueKind::Null => WireKind::Null,
        }
    }
}

impl From<WireKind> for ValueKind {
    fn from(k: WireKind) -> Self {
        match k {
            WireKind::Str => ValueKind::Str,
            WireKind::Int => ValueKind::Int,
            WireKind::Float => ValueKind::Float,
            WireKind::Bool => ValueKind::Bool,
            WireKind::Null => ValueKind::Null,
        }
    }
}

/// What the wire carries besides the event itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub path: String,
    pub host: String,
}

/// Why a message is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

/// The event as wire JSON. `path` and `host` are the publisher's (the file read, the
/// machine it is on); `host` may be empty.
pub fn encode(ev: &Event, path: &str, host: &str) -> Vec<u8> {
    let wire = WireEvent {
        v: VERSION,
        source: ev.source,
        log_type: ev.log_type.clone(),
        ts: ev.timestamp.map(|t| t.0),
        time: ev.timestamp.map(|t| t.to_string()),
        time_source: ev.time_source,
        record: ev.record,
        path: path.to_string(),
        member: ev.member.clone(),
        host: host.to_string(),
        fields: ev.fields().map(|f| (f.name.to_string(), f.value.to_string(), f.kind.into())).collect(),
        raw: ev.raw.clone(),
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Decodes wire JSON into `ev` (cleared first), returning the envelope. Refuses messages
/// over [`MAX_WIRE_BYTES`], another schema version, unknown keys, a `time` that is not a
/// timestamp and events over [`crate::MAX_EVENT_TEXT`].
pub fn decode_into(bytes: &[u8], ev: &mut Event) -> Result<Envelope, WireError> {
    if bytes.len() > MAX_WIRE_BYTES {
        return Err(WireError(format!("event message of {} bytes is over the {} byte limit", bytes.len(), MAX_WIRE_BYTES)));
    }
    let wire: WireEvent = serde_json::from_slice(bytes).map_err(|e| WireError(format!("not an event: {e}")))?;
    if wire.v != VERSION {
        return Err(WireError(format!("event schema version {} (this build reads {VERSION})", wire.v)));
    }
    let timestamp = match (wire.ts, &wire.time) {
        (Some(ts), _) => Some(Timestamp(ts)),
        (None, Some(t)) => Some(Timestamp::parse(t).ok_or_else(|| WireError(format!("time {t:?} is not a timestamp")))?),
        (None, None) => None,
    };
    ev.clear(wire.source);
    ev.log_type = wire.log_type;
    ev.timestamp = timestamp;
    ev.time_source = wire.time_source;
    ev.record = wire.record;
    ev.member = wire.member;
    ev.raw = wire.raw;
    for (name, value, kind) in &wire.fields {
        if !ev.push(name, value, (*kind).into()) {
            return Err(WireError(format!("event text is over the {} byte limit", crate::MAX_EVENT_TEXT)));
        }
    }
    Ok(Envelope { path: wire.path, host: wire.host })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut e = Event::new(SourceKind::ExchangeCsv);
        e.log_type = "HttpProxy".into();
        e.timestamp = Some(Timestamp(1_629_771_180_123_456));
        e.time_source = TimeSource::Collector;
        e.record = 42;
        e.member = "Logs/x.log".into();
        e.raw = "a,b,\"c\"\n".into();
        e.push("Data", "1", ValueKind::Int);
        e.push_str("Data", "two \u{202e} \0 \"q\"");
        e.push("Float", "1.50", ValueKind::Float);
        e.push("B", "true", ValueKind::Bool);
        e.push("N", "", ValueKind::Null);
        e.push_str("", "");
        e
    }

    #[test]
    fn round_trips_exactly() {
        let e = sample();
        let bytes = encode(&e, "/logs/a.log", "EXCH01");
        let mut back = Event::default();
        let env = decode_into(&bytes, &mut back).expect("decodes");
        assert_eq!(env, Envelope { path: "/logs/a.log".into(), host: "EXCH01".into() });
        assert_eq!(back.source, e.source);
        assert_eq!(back.log_type, e.log_type);
        assert_eq!(back.timestamp, e.timestamp);
        assert_eq!(back.time_source, e.time_source);
        assert_eq!(back.record, e.record);
        assert_eq!(back.member, e.member);
        assert_eq!(back.raw, e.raw);
        let a: Vec<_> = e.fields().map(|f| (f.name, f.value, f.kind)).collect();
        let b: Vec<_> = back.fields().map(|f| (f.name, f.value, f.kind)).collect();
        assert_eq!(a, b);
        // The same bytes again: encoding is deterministic.
        assert_eq!(encode(&back, "/logs/a.log", "EXCH01"), bytes);
    }

    #[test]
    fn time_text_when_no_micros() {
        let msg = br#"{"v":1,"source":"w3c","time":"2021-08-24T02:13:00.5Z","record":3,"fields":[["c-ip","10.0.0.1","str"]]}"#;
        let mut e = Event::default();
        decode_into(msg, &mut e).expect("decodes");
        assert_eq!(e.timestamp, Timestamp::parse("2021-08-24T02:13:00.5Z"));
        assert_eq!(e.get("c-ip"), Some("10.0.0.1"));
    }

    #[test]
    fn refuses_hostile_messages() {
        let mut e = Event::default();
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            br#"{"v":2,"source":"json","fields":[]}"#,
            br#"{"v":1,"source":"nope","fields":[]}"#,
            br#"{"v":1,"source":"json","fields":[["a","b","weird"]]}"#,
            br#"{"v":1,"source":"json","fields":[["a","b"]]}"#,
            br#"{"v":1,"source":"json","fields":[],"extra":1}"#,
            br#"{"v":1,"source":"json","time":"yesterday","fields":[]}"#,
            br#"{"v":1,"source":"json","record":-1,"fields":[]}"#,
            b"\xff\xfe",
        ] {
            assert!(decode_into(bad, &mut e).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let big = vec![b' '; MAX_WIRE_BYTES + 1];
        assert!(decode_into(&big, &mut e).is_err());
    }
}

//! A synthetic institution to prove Portcullis on, demo it with and benchmark it:
//! an electoral body with an on-premises Exchange server, a domain controller, a file
//! server holding register exports and workstations, logging as the real products do
//! (IIS W3C, Exchange HttpProxy / Rps_Http / message tracking CSV, Windows Security,
//! Sysmon and MSExchange Management events in the evtx JSON layout, Okta sign-in logs),
//! with benign background at a realistic shape and the 2021–2022 intrusion planted along
//! the public timeline (`../shared/docs/threat-brief.md`).
//!
//! Deterministic: the same seed and scale give byte-identical files. `truth.json` lists
//! every planted step with the file and line (or EVTX record id) of each log entry that
//! evidences it. Scale 1 is about 300 MB.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use portcullis_event::Timestamp;
use serde::Serialize;

mod background;
mod intrusion;
mod parliament;
mod posture;
mod register;
pub mod xlsx;

pub use parliament::generate as parliament;

/// The simulated Exchange server's build (Exchange 2016 CU19, no May 2021 security update).
pub use background::EXCH_BUILD;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Background volume: 1.0 ≈ 300 MB.
    pub scale: f64,
    /// Only the register exports (for exposure benchmarks at national scale).
    pub registers_only: bool,
}

/// `truth.json`: what was planted, and where the evidence is.
#[derive(Debug, Serialize)]
pub struct Truth {
    pub scenario: &'static str,
    pub seed: u64,
    pub scale: f64,
    pub start: String,
    pub end: String,
    pub steps: Vec<Step>,
    pub files: Vec<FileInfo>,
    /// Expected figures for `mail` (filled in as that capability arrives).
    pub mail_campaigns: Vec<serde_json::Value>,
    /// Expected figures for `exposure`: unique electors by category, in all files, on
    /// compromised systems and evidenced as accessed.
    pub exposure: Option<serde_json::Value>,
    /// For `mail`: the benign senders (newsletters with pixels, read receipts) that must
    /// stay low.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benign_mail: Option<serde_json::Value>,
    /// For `posture`: the weaknesses planted (passwords left as the service desk set them,
    /// single-factor and legacy sign-ins, a logging gap, the unpatched server) and what the
    /// logs cannot show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Step {
    pub time: String,
    pub host: String,
    pub technique: String,
    pub tactic: String,
    pub description: String,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Evidence {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub bytes: u64,
    pub entries: u64,
}

/// A deterministic random source (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A Windows event to be written in the evtx JSON layout (its record id is given at write time).
#[derive(Clone, Debug)]
pub struct WinEvent {
    pub computer: String,
    pub channel: &'static str,
    pub provider: &'static str,
    pub event_id: u32,
    /// Named `Data` elements; a name of `""` writes an unnamed `Data` value.
    pub data: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
enum Body {
    Text(String),
    Win(WinEvent),
}

struct Entry {
    ts: i64,
    seq: u64,
    body: Body,
    step: Option<usize>,
}

/// All output files, filled in any order and written sorted by time.
#[derive(Default)]
pub struct Output {
    files: BTreeMap<String, (Vec<String>, Vec<Entry>)>,
    seq: u64,
}

impl Output {
    fn file(&mut self, path: &str, header: &[String]) -> &mut Vec<Entry> {
        &mut self.files.entry(path.to_string()).or_insert_with(|| (header.to_vec(), Vec::new())).1
    }

    /// Adds a text line (`step`: the planted step it evidences, if any).
    pub fn text(&mut self, path: &str, header: &[String], ts: i64, line: String, step: Option<usize>) {
        self.seq += 1;
        let seq = self.seq;
        self.file(path, header).push(Entry { ts, seq, body: Body::Text(line), step });
    }

    /// Removes the background entries of one file in `[from, to)` (a logging gap); planted
    /// entries stay. Returns the times of the last entry before and the first after.
    pub fn drop_range(&mut self, path: &str, from: i64, to: i64) -> (Option<i64>, Option<i64>) {
        let Some((_, entries)) = self.files.get_mut(path) else { return (None, None) };
        entries.retain(|e| e.step.is_some() || e.ts < from || e.ts >= to);
        let before = entries.iter().filter(|e| e.ts < from).map(|e| e.ts).max();
        let after = entries.iter().filter(|e| e.ts >= from).map(|e| e.ts).min();
        (before, after)
    }

    /// Adds a Windows event.
    pub fn win(&mut self, path: &str, ts: i64, ev: WinEvent, step: Option<usize>) {
        self.seq += 1;
        let seq = self.seq;
        self.file(path, &[]).push(Entry { ts, seq, body: Body::Win(ev), step });
    }

    /// Writes every file under `out`; returns evidence per step and the file list.
    fn write(self, out: &Path, steps: usize) -> io::Result<(Vec<Vec<Evidence>>, Vec<FileInfo>)> {
        let mut evidence = vec![Vec::new(); steps];
        let mut infos = Vec::new();
        for (rel, (header, mut entries)) in self.files {
            entries.sort_by_key(|e| (e.ts, e.seq));
            let path = out.join(&rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
            let mut bytes = 0u64;
            let mut line_no = 0u64;
            for h in &header {
                writeln!(w, "{h}")?;
                bytes += h.len() as u64 + 1;
                line_no += 1;
            }
            for (i, e) in entries.iter().enumerate() {
                line_no += 1;
                let record = 1000 + i as u64;
                let text = match &e.body {
                    Body::Text(t) => t.clone(),
                    Body::Win(ev) => render_win(ev, e.ts, record),
                };
                w.write_all(text.as_bytes())?;
                w.write_all(b"\n")?;
                bytes += text.len() as u64 + 1;
                if let Some(s) = e.step {
                    let is_win = matches!(e.body, Body::Win(_));
                    evidence[s].push(Evidence { path: rel.clone(), line: (!is_win).then_some(line_no), record: is_win.then_some(record) });
                }
            }
            w.flush()?;
            infos.push(FileInfo { path: rel, bytes, entries: entries.len() as u64 });
        }
        for e in &mut evidence {
            e.sort();
        }
        Ok((evidence, infos))
    }
}

fn render_win(ev: &WinEvent, ts: i64, record: u64) -> String {
    use serde_json::{Map, Value, json};
    let mut data = Map::new();
    let mut unnamed = Vec::new();
    for (k, v) in &ev.data {
        if k.is_empty() {
            unnamed.push(Value::String(v.clone()));
        } else {
            data.insert(k.clone(), Value::String(v.clone()));
        }
    }
    if !unnamed.is_empty() {
        data.insert("Data".into(), Value::Array(unnamed));
    }
    json!({"Event": {
        "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
        "System": {
            "Provider": {"#attributes": {"Name": ev.provider}},
            "EventID": ev.event_id,
            "TimeCreated": {"#attributes": {"SystemTime": Timestamp(ts).to_string()}},
            "EventRecordID": record,
            "Channel": ev.channel,
            "Computer": ev.computer,
        },
        "EventData": Value::Object(data),
    }})
    .to_string()
}

/// Microseconds for a UTC time `YYYY-MM-DD HH:MM:SS`.
pub fn at(s: &str) -> i64 {
    Timestamp::parse(s).expect("valid literal time").0
}

pub const SECOND: i64 = 1_000_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// The public timeline runs from the first exploitation (24 Aug 2021) to discovery (Oct 2022);
/// background starts three weeks earlier so the first compromise is not the first event.
pub const START: &str = "2021-08-01 00:00:00";
pub const END: &str = "2022-10-31 23:59:59";

/// Generates the electoral-commission scenario into `out`.
pub fn electoral_commission(cfg: &Config, out: &Path) -> io::Result<Truth> {
    std::fs::create_dir_all(out)?;
    let mut o = Output::default();
    let mut rng = Rng::new(cfg.seed);
    let org = background::Org::new(&mut rng);
    let exposure = register::generate(cfg, out)?;
    let (steps, posture) = if cfg.registers_only {
        (Vec::new(), None)
    } else {
        background::generate(&mut o, &org, cfg, &mut rng);
        let steps = intrusion::plant(&mut o, &org, &mut rng);
        (steps, Some(posture::plant(&mut o, &org, cfg)))
    };
    let (evidence, files) = o.write(out, steps.len())?;
    let steps: Vec<Step> = steps
        .into_iter()
        .zip(evidence)
        .map(|(s, evidence)| Step {
            time: Timestamp(s.ts).to_string(),
            host: s.host,
            technique: s.technique.into(),
            tactic: s.tactic.into(),
            description: s.description,
            evidence,
        })
        .collect();
    let truth = Truth {
        scenario: "electoral-commission",
        seed: cfg.seed,
        scale: cfg.scale,
        start: Timestamp(at(START)).to_string(),
        end: Timestamp(at(END)).to_string(),
        steps,
        files,
        mail_campaigns: Vec::new(),
        exposure: Some(exposure),
        benign_mail: None,
        posture,
    };
    let f = std::fs::File::create(out.join("truth.json"))?;
    serde_json::to_writer_pretty(BufWriter::new(f), &truth)?;
    Ok(truth)
}

/// A planted step before its evidence is known.
pub struct PlantedStep {
    pub ts: i64,
    pub host: String,
    pub technique: &'static str,
    pub tactic: &'static str,
    pub description: String,
}

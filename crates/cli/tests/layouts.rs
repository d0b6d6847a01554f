//! The JSON layouts responders export Windows events in must hunt like the EVTX files they came from.
//!
//! For every `.evtx` file of EVTX-ATTACK-SAMPLES (`../shared/evtx`, next to the workspace) the
//! test takes the events `portcullis events` reads from it, reshapes them into one export layout
//! (Winlogbeat, Elastic ingest documents, OTRF/Mordor NXLog, Sentinel `SecurityEvent` /
//! `WindowsEvent` / `Event`, Velociraptor, Splunk `XmlWinEventLog`), hunts the reshaped files with
//! the SigmaHQ rules (`../shared/sigma/rules`) and asserts the same detections — the multiset of
//! (rule id, event time) — as hunting the EVTX files themselves. One `#[test]` per layout (and per
//! sub-case), so failures are separate. Reference for every layout: the research notes the layout
//! readers were written from (Winlogbeat `event.go` and module goldens, the Log Analytics table
//! references and `az` CLI source, Velociraptor artifacts and evtx goldens, OTRF datasets, Splunk
//! REST export fixtures); the quirks each layout has are listed on its builder below.
//!
//! What a layout cannot carry is not blanket-tolerated. Each layout has two halves:
//! - `render`: the document(s) an exporter of that kind writes for one event;
//! - `recover`: the Sigma fields a *perfect* reader can get back from that document (starting from
//!   the event's own fields and removing / changing exactly what the layout loses).
//!
//! Wherever `recover` differs from the EVTX fields, every rule with a detection leaf (or logsource
//! condition) on that field that *evaluates differently* on the EVTX value and on the recovered
//! value — for some event of the data — is excluded from that layout's comparison (on both sides),
//! and listed in the output with the field and an example. Rules the layout cannot affect stay.
//! Times are compared exactly (to the microsecond Portcullis keeps), except where a layout only
//! carries a coarser or a different clock; then the allowed window is computed per event (see
//! `Layout::window`).
//!
//! Run: `cargo test --release -p portcullis-cli --test layouts -- --ignored` (add `--nocapture` for
//! every layout's report, also printed when it passes). `PORTCULLIS_SHARED=/path/to/shared`
//! overrides where `evtx/` and `sigma/` are looked for; `PORTCULLIS_LAYOUTS_KEEP=<dir>` keeps the
//! reshaped files in `<dir>/<layout>/` (e.g. to run `portcullis events` on one).
//! The tests are `#[ignore]`d so that a checkout without `../shared` does not pass them silently;
//! run with `--ignored` and without `../shared` they fail saying what is missing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use portcullis_sigma::logsource::Resolution;
use portcullis_sigma::modifiers::{LeafSpec, Pred};
use portcullis_sigma::{LogsourceTable, RuleSet};
use serde_json::{Map, Value, json};

const NEEDS_SHARED: &str = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)";

/// The WEC / collector / forwarder name the exports were made on: deliberately not any `Computer`.
const COLLECTOR: &str = "wec01.collector.example";
/// The Windows hosts' local zone in the NXLog layout (EDT-like; UTC-5).
const NXLOG_OFFSET_MIN: i64 = -5 * 60;
/// The exporting Splunk user's zone in `_time`.
const SPLUNK_OFFSET_MIN: i64 = 60;

// ---------------------------------------------------------------------------------------------
// Fixture: the EVTX events and the baseline hunt, computed once per test process.

fn shared_dir() -> PathBuf {
    match std::env::var_os("PORTCULLIS_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    }
}

fn evtx_files() -> Vec<PathBuf> {
    let root = shared_dir().join("evtx/EVTX-ATTACK-SAMPLES");
    assert!(
        root.is_dir(),
        "{} is missing — the layout tests {NEEDS_SHARED}; set PORTCULLIS_SHARED=<dir> to look elsewhere",
        root.display()
    );
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("evtx")) {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() > 200, "expected the ~277 EVTX-ATTACK-SAMPLES files, found {}", out.len());
    out
}

fn rules_dir() -> PathBuf {
    let p = shared_dir().join("sigma/rules");
    assert!(p.is_dir(), "{} is missing — the layout tests {NEEDS_SHARED}; set PORTCULLIS_SHARED=<dir> to look elsewhere", p.display());
    p
}

fn portcullis(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(2),
        "portcullis {:?} failed: {}",
        args.iter().take(3).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn jsonl(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The hunt every side runs: SigmaHQ rules only, no built-in pack or intel.
fn hunt(inputs: &[PathBuf]) -> (Vec<Det>, Value) {
    let rules = rules_dir();
    let mut args: Vec<&std::ffi::OsStr> = vec!["hunt".as_ref()];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    args.extend(["--no-builtin", "--no-builtin-intel", "--format", "jsonl", "--sigma"].iter().map(std::ffi::OsStr::new));
    args.push(rules.as_os_str());
    let out = portcullis(&args);
    let recs = jsonl(&out.stdout);
    let summary = recs.iter().rev().find(|r| r["kind"] == "summary").cloned().unwrap_or(Value::Null);
    let dets = recs
        .into_iter()
        .filter(|r| r["kind"] == "detection")
        .map(|r| Det {
            rule_id: r["rule_id"].as_str().unwrap_or_default().to_string(),
            title: r["rule_title"].as_str().unwrap_or_default().to_string(),
            t: r["timestamp"].as_str().and_then(parse_time).map(|ns| ns.div_euclid(1000)),
            path: r["path"].as_str().unwrap_or_default().to_string(),
            record: r["record"].as_u64().unwrap_or(0),
            fields: r["fields"].clone(),
        })
        .collect();
    (dets, summary)
}

#[derive(Clone, Debug)]
struct Det {
    rule_id: String,
    title: String,
    /// Microseconds since the epoch.
    t: Option<i64>,
    path: String,
    record: u64,
    fields: Value,
}

/// The System fields of the flattened EVTX record (everything else is EventData/UserData).
const SYSTEM: &[&str] = &[
    "Provider_Name",
    "Provider_Guid",
    "Provider_EventSourceName",
    "EventID",
    "EventID_Qualifiers",
    "Version",
    "Level",
    "Task",
    "Opcode",
    "Keywords",
    "TimeCreated_SystemTime",
    "EventRecordID",
    "Correlation",
    "Correlation_ActivityID",
    "Correlation_RelatedActivityID",
    "Execution_ProcessID",
    "Execution_ThreadID",
    "Channel",
    "Computer",
    "Security_UserID",
    // `Security` (null: no UserID) and `EventData` (null: an empty EventData element) are markers.
    "Security",
    "EventData",
];

/// One EVTX event as `portcullis events` printed it, split into System and data fields.
struct Src {
    path: String,
    record: u64,
    /// The original flattened fields.
    f: Map<String, Value>,
    /// System fields, scalar (a System name repeated by UserData — `Channel`, `Version` — keeps
    /// its first value here; the others are data values).
    sys: Map<String, Value>,
    /// EventData/UserData by name; an array is a repeated name (unnamed `Data` values).
    data: Vec<(String, Value)>,
    /// `TimeCreated_SystemTime` in nanoseconds.
    t_ns: i64,
}

impl Src {
    fn new(path: String, record: u64, f: Map<String, Value>) -> Src {
        let mut sys = Map::new();
        let mut data = Vec::new();
        for (k, v) in &f {
            if SYSTEM.contains(&k.as_str()) {
                match v {
                    Value::Array(a) if !a.is_empty() => {
                        sys.insert(k.clone(), a[0].clone());
                        let rest = &a[1..];
                        match rest.len() {
                            0 => {}
                            1 => data.push((k.clone(), rest[0].clone())),
                            _ => data.push((k.clone(), Value::Array(rest.to_vec()))),
                        }
                    }
                    _ => {
                        sys.insert(k.clone(), v.clone());
                    }
                }
            } else {
                data.push((k.clone(), v.clone()));
            }
        }
        let t_ns = sys.get("TimeCreated_SystemTime").and_then(Value::as_str).and_then(parse_time).expect("SystemTime");
        Src { path, record, f, sys, data, t_ns }
    }
    fn s(&self, k: &str) -> Option<String> {
        self.sys.get(k).filter(|v| !v.is_null()).map(text)
    }
    fn n(&self, k: &str) -> Option<u64> {
        match self.sys.get(k)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.strip_prefix("0x").map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok()),
            _ => None,
        }
    }
    fn eid(&self) -> u64 {
        self.n("EventID").unwrap_or(0)
    }
    fn channel(&self) -> String {
        self.s("Channel").unwrap_or_default()
    }
    fn systime(&self) -> String {
        self.s("TimeCreated_SystemTime").unwrap()
    }
    fn is_sysmon(&self) -> bool {
        self.channel().eq_ignore_ascii_case("Microsoft-Windows-Sysmon/Operational")
    }
    fn is_security(&self) -> bool {
        self.channel().eq_ignore_ascii_case("Security")
    }
    fn get_data(&self, k: &str) -> Option<&Value> {
        self.data.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }
    /// Sysmon's own UTC time (`UtcTime`, millisecond precision), when present.
    fn utc_time_ns(&self) -> Option<i64> {
        self.get_data("UtcTime").and_then(Value::as_str).and_then(parse_time)
    }
    fn key(&self) -> (String, u64) {
        (self.path.clone(), self.record)
    }
}

struct Fixture {
    events: Vec<Src>,
    by_key: HashMap<(String, u64), usize>,
    baseline: Vec<Det>,
    analysis: RuleAnalysis,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t0 = std::time::Instant::now();
        let files = evtx_files();
        let mut args: Vec<&std::ffi::OsStr> = vec!["events".as_ref()];
        args.extend(files.iter().map(|p| p.as_os_str()));
        let out = portcullis(&args);
        let mut events = Vec::new();
        for r in jsonl(&out.stdout) {
            if r["kind"] != "event" || r["source"] != "windows" {
                continue;
            }
            let Value::Object(f) = r["fields"].clone() else {
                continue;
            };
            events.push(Src::new(r["path"].as_str().unwrap().to_string(), r["record"].as_u64().unwrap(), f));
        }
        assert!(events.len() > 5000, "portcullis events read only {} Windows events", events.len());
        let by_key = events.iter().enumerate().map(|(i, e)| (e.key(), i)).collect();
        let (baseline, summary) = hunt(&files);
        assert!(baseline.len() > 500, "the EVTX baseline has only {} detections: {summary}", baseline.len());
        let t1 = t0.elapsed().as_secs_f64();
        let analysis = RuleAnalysis::load(&rules_dir());
        eprintln!("fixture: EVTX events and baseline hunt {t1:.1}s, rule analysis {:.1}s", t0.elapsed().as_secs_f64() - t1);
        Fixture { events, by_key, baseline, analysis }
    })
}

// ---------------------------------------------------------------------------------------------
// Time helpers (proleptic Gregorian, UTC nanoseconds).

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f…][Z|±HH:MM]` (no zone: UTC) → nanoseconds since the epoch.
fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut digits = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if digits < 9 {
                frac = frac * 10 + (b[i] - b'0') as i64;
                digits += 1;
            }
            i += 1;
        }
        frac *= 10i64.pow(9 - digits);
    }
    let off_min = match s.get(i..) {
        None | Some("") | Some("Z") => 0,
        Some(z) if (z.starts_with('+') || z.starts_with('-')) && z.len() == 6 => {
            let m = z[1..3].parse::<i64>().ok()? * 60 + z[4..6].parse::<i64>().ok()?;
            if z.starts_with('-') { -m } else { m }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_min * 60;
    Some(secs * 1_000_000_000 + frac)
}

/// Formats `t_ns` shifted by `off_min`: `YYYY-MM-DD{sep}HH:MM:SS[.digits]`.
fn civil(t_ns: i64, off_min: i64, sep: char, digits: u32) -> String {
    let t = t_ns + off_min * 60 * 1_000_000_000;
    let secs = t.div_euclid(1_000_000_000);
    let frac = t.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400);
    let mut s = format!("{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if digits > 0 {
        let _ = write!(s, ".{:0width$}", frac / 10i64.pow(9 - digits), width = digits as usize);
    }
    s
}

fn iso_z(t_ns: i64, digits: u32) -> String {
    civil(t_ns, 0, 'T', digits) + "Z"
}

fn iso_off(t_ns: i64, digits: u32, off_min: i64) -> String {
    let sign = if off_min < 0 { '-' } else { '+' };
    format!("{}{sign}{:02}:{:02}", civil(t_ns, off_min, 'T', digits), off_min.abs() / 60, off_min.abs() % 60)
}

const SEC: i64 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// Values: what a field holds, for reshaping and for deciding what a layout loses.

/// A JSON value as Sigma text (numbers in decimal; null as "").
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The values of a field as a rule sees them (a repeated field has several).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum V {
    S(String),
    Null,
    /// A comma-separated list whose order the layout loses (rebuilt `Hashes`).
    AnyOrder(Vec<String>),
}

type Fields = BTreeMap<String, Vec<V>>;

fn vals(v: &Value) -> Vec<V> {
    match v {
        Value::Array(a) => a.iter().flat_map(vals).collect(),
        Value::Null => vec![V::Null],
        other => vec![V::S(text(other))],
    }
}

fn orig_fields(e: &Src) -> Fields {
    e.f.iter().map(|(k, v)| (k.clone(), vals(v))).collect()
}

fn set(f: &mut Fields, k: &str, v: Vec<V>) {
    if v.is_empty() {
        f.remove(k);
    } else {
        f.insert(k.to_string(), v);
    }
}

/// Replaces null values of data fields by "" (layouts that write every value as text).
fn null_data_as_empty(e: &Src, f: &mut Fields) {
    for (k, _) in &e.data {
        if let Some(vs) = f.get_mut(k) {
            for v in vs.iter_mut() {
                if *v == V::Null {
                    *v = V::S(String::new());
                }
            }
        }
    }
}

/// Removes System fields a layout has no place for (and the null markers).
fn drop_sys(e: &Src, f: &mut Fields, lost: &[&str]) {
    for k in lost.iter().chain(&["Correlation", "Security", "EventData"]) {
        if !e.sys.contains_key(*k) {
            continue;
        }
        // A System name also used by UserData keeps the data values.
        let data: Vec<V> = e.data.iter().filter(|(n, _)| n == k).flat_map(|(_, v)| vals(v)).collect();
        set(f, k, data);
    }
}

fn upper_sys(e: &Src, f: &mut Fields, k: &str) {
    if let Some(s) = e.s(k) {
        let mut vs = f.remove(k).unwrap_or_default();
        vs[0] = V::S(s.to_uppercase());
        f.insert(k.to_string(), vs);
    }
}

/// A string that is a lower-case `0x` hex number exactly as EVTX renders HexInt32/64.
fn as_hex(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    let n = u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()?;
    (format!("0x{n:x}") == s).then_some(n)
}

/// A braced GUID as EVTX renders GUID-typed values (lower case).
fn is_evtx_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 38
        && b[0] == b'{'
        && b[37] == b'}'
        && s[1..37]
            .chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() && !c.is_ascii_uppercase() })
}

fn xml_escape(s: &str, quote: char) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' if quote == '"' => o.push_str("&quot;"),
            '\'' if quote == '\'' => o.push_str("&apos;"),
            // CR would be normalised away by an XML parser; other control characters have no
            // literal form: character references keep them.
            '\r' => o.push_str("&#xD;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {
                let _ = write!(o, "&#x{:X};", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

/// `<Data Name='…'>…</Data>` elements for the data fields (unnamed `Data` values without a Name).
fn data_xml(e: &Src, q: char, only: impl Fn(&str) -> bool) -> String {
    let mut x = String::new();
    for (k, v) in &e.data {
        if !only(k) {
            continue;
        }
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        for it in items {
            let name = if k == "Data" { String::new() } else { format!(" Name={q}{}{q}", xml_escape(k, q)) };
            // Windows renders a null and an empty value alike: `<Data Name='x'></Data>`.
            let _ = write!(x, "<Data{name}>{}</Data>", xml_escape(&text(it), q));
        }
    }
    x
}

fn level_name(level: u64) -> &'static str {
    match level {
        1 => "critical",
        2 => "error",
        3 => "warning",
        5 => "verbose",
        _ => "information",
    }
}

/// A deterministic pseudo-random GUID (for ids the exporters invent).
fn fake_guid(seed: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let h2 = h.rotate_left(29).wrapping_mul(0x9e3779b97f4a7c15);
    format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xfff, h2 >> 52, h2 & 0xffff_ffff_ffff)
}

// ---------------------------------------------------------------------------------------------
// Which rules a layout's losses can change.

/// A leaf test of a rule, compiled for evaluating one field's values.
struct Leaf {
    /// Event field names it reads (Sigma name and every logsource rename), lower-cased;
    /// empty: a keyword leaf (any field).
    fields: Vec<String>,
    test: LeafTest,
}

enum LeafTest {
    /// A pattern or regular expression (compiled when first needed); `true` when it is a
    /// `contains` of a text without commas.
    Re(LazyRe, bool),
    Cmp(portcullis_sigma::modifiers::CmpOp, f64),
    Cidr(portcullis_sigma::modifiers::IpNet),
    Exists(bool),
    Null,
    /// Field references and time parts: any change counts.
    Unknown,
    /// A logsource condition: the field's first value is one of these (case-insensitive).
    OneOf(Vec<String>),
}

struct LazyRe {
    pattern: String,
    re: OnceLock<Option<regex::Regex>>,
}

impl LazyRe {
    fn new(pattern: String) -> LazyRe {
        LazyRe { pattern, re: OnceLock::new() }
    }
    /// `None` when the regex crate cannot compile it (the leaf then counts as touched).
    fn get(&self) -> Option<&regex::Regex> {
        self.re.get_or_init(|| regex::RegexBuilder::new(&self.pattern).size_limit(1 << 26).build().ok()).as_ref()
    }
}

struct RuleInfo {
    key: String,
    title: String,
    leaves: Vec<Leaf>,
    /// Every field name the rule's leaves read (for printing differences).
    shown: Vec<String>,
}

struct RuleAnalysis {
    rules: Vec<RuleInfo>,
}

impl RuleAnalysis {
    fn load(dir: &Path) -> RuleAnalysis {
        let mut set = RuleSet::default();
        set.add_path(dir, &Default::default());
        let table = LogsourceTable::builtin();
        let mut rules = Vec::new();
        for r in &set.rules {
            let variants = match table.resolve(&r.logsource) {
                Resolution::Variants(v) => v,
                Resolution::Unmapped(_) => continue,
            };
            let mut specs = Vec::new();
            r.detection.leaves(&mut specs);
            let mut leaves = Vec::new();
            let mut shown = Vec::new();
            for spec in specs {
                let LeafSpec { field, pred } = spec;
                let fields: Vec<String> = match field {
                    None => Vec::new(),
                    Some(f) => {
                        let mut names: Vec<String> = std::iter::once(f.to_ascii_lowercase())
                            .chain(variants.iter().map(|v| v.selector.map_field(f).to_ascii_lowercase()))
                            .collect();
                        names.sort();
                        names.dedup();
                        for n in std::iter::once(f.as_str()).chain(variants.iter().map(|v| v.selector.map_field(f))) {
                            if !shown.iter().any(|s: &String| s.eq_ignore_ascii_case(n)) {
                                shown.push(n.to_string());
                            }
                        }
                        names
                    }
                };
                let test = match pred {
                    p @ Pred::Str { .. } => {
                        let (re, contains) = p.string_regex().expect("a string pattern");
                        LeafTest::Re(LazyRe::new(re), contains)
                    }
                    Pred::Re { pattern } => LeafTest::Re(LazyRe::new(pattern.clone()), false),
                    Pred::Cmp { op, value } => LeafTest::Cmp(*op, *value),
                    Pred::Cidr(net) => LeafTest::Cidr(*net),
                    Pred::Exists(b) => LeafTest::Exists(*b),
                    Pred::Null => LeafTest::Null,
                    _ => LeafTest::Unknown,
                };
                leaves.push(Leaf { fields, test });
            }
            for v in &variants {
                for (f, allowed) in &v.conditions {
                    leaves.push(Leaf { fields: vec![f.to_ascii_lowercase()], test: LeafTest::OneOf(allowed.clone()) });
                }
                // Which events a rule applies to depends on Channel and EventID too.
                if v.selector.channels.is_some() {
                    leaves.push(Leaf { fields: vec!["channel".into()], test: LeafTest::OneOf(v.selector.channels.clone().unwrap()) });
                }
            }
            rules.push(RuleInfo { key: r.key().into_owned(), title: r.title.clone(), leaves, shown });
        }
        assert!(rules.len() > 1000, "loaded only {} SigmaHQ rules", rules.len());
        RuleAnalysis { rules }
    }
}

/// A leaf's outcome on a field's values; `None` when it cannot be told (null values, order-free lists).
fn eval(test: &LeafTest, vs: &[V]) -> Option<bool> {
    let one = |s: &str| -> Option<bool> {
        Some(match test {
            LeafTest::Re(re, _) => re.get()?.is_match(s),
            LeafTest::Cmp(op, want) => s.trim().parse::<f64>().is_ok_and(|v| op.test(v, *want)),
            LeafTest::Cidr(net) => s.trim().parse::<std::net::IpAddr>().is_ok_and(|ip| net.contains(ip)),
            LeafTest::OneOf(allowed) => allowed.iter().any(|a| a.eq_ignore_ascii_case(s)),
            _ => return None,
        })
    };
    match test {
        LeafTest::Unknown => return None,
        LeafTest::Exists(b) => {
            return if vs.contains(&V::Null) { None } else { Some(vs.is_empty() != *b) };
        }
        LeafTest::Null => {
            return if vs.is_empty() {
                Some(true)
            } else if vs.iter().any(|v| matches!(v, V::Null) || *v == V::S(String::new())) {
                None
            } else {
                Some(false)
            };
        }
        LeafTest::OneOf(_) => {
            return match vs.first() {
                None | Some(V::Null) => Some(false),
                Some(V::S(s)) => one(s),
                Some(V::AnyOrder(_)) => None,
            };
        }
        _ => {}
    }
    let mut unknown = false;
    for v in vs {
        let r = match v {
            V::S(s) => one(s),
            // A null reads as "" or as nothing: it is known only when "" does not match either.
            V::Null => match one("") {
                Some(false) => Some(false),
                _ => None,
            },
            V::AnyOrder(parts) => match test {
                // `contains` of a text without a comma does not depend on the order.
                LeafTest::Re(_, true) => one(&parts.join(",")),
                _ => {
                    let outs: BTreeSet<Option<bool>> = permutations(parts).iter().map(|p| one(&p.join(","))).collect();
                    if outs.len() == 1 { *outs.iter().next().unwrap() } else { None }
                }
            },
        };
        match r {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown { None } else { Some(false) }
}

fn permutations(parts: &[String]) -> Vec<Vec<String>> {
    if parts.len() <= 1 {
        return vec![parts.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..parts.len() {
        let mut rest = parts.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// One thing a layout loses: a field whose values a perfect reader gets back differently.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Loss {
    field: String,
    orig: Vec<V>,
    rec: Vec<V>,
}

struct Exclusion {
    rule: String,
    title: String,
    why: String,
}

/// The rules whose outcome the losses can change, with the first reason found.
fn exclusions(analysis: &RuleAnalysis, losses: &BTreeMap<Loss, (String, u64)>) -> Vec<Exclusion> {
    let mut by_field: HashMap<String, Vec<(&Loss, &(String, u64))>> = HashMap::new();
    for (l, at) in losses {
        by_field.entry(l.field.to_ascii_lowercase()).or_default().push((l, at));
    }
    let mut out = Vec::new();
    'rules: for r in &analysis.rules {
        for leaf in &r.leaves {
            let candidates: Vec<(&Loss, &(String, u64))> = if leaf.fields.is_empty() {
                losses.iter().collect()
            } else {
                leaf.fields.iter().filter_map(|f| by_field.get(f)).flatten().copied().collect()
            };
            for (l, at) in candidates {
                // Only the order of a list changed: a comma-free `contains` cannot tell.
                if matches!(leaf.test, LeafTest::Re(_, true)) && order_only(l) {
                    continue;
                }
                let (a, b) = (eval(&leaf.test, &l.orig), eval(&leaf.test, &l.rec));
                if a.is_none() || b.is_none() || a != b {
                    let file = at.0.rsplit('/').next().unwrap_or_default();
                    out.push(Exclusion {
                        rule: r.key.clone(),
                        title: r.title.clone(),
                        why: format!(
                            "{}: EVTX {:?} → layout {:?} (e.g. {file} record {})",
                            l.field,
                            shorten(&l.orig),
                            shorten(&l.rec),
                            at.1
                        ),
                    });
                    continue 'rules;
                }
            }
        }
    }
    out
}

fn order_only(l: &Loss) -> bool {
    l.orig.len() == l.rec.len()
        && l.orig.iter().zip(&l.rec).all(|(a, b)| match (a, b) {
            (V::S(s), V::AnyOrder(parts)) => *s == parts.join(","),
            (a, b) => a == b,
        })
}

fn shorten(vs: &[V]) -> Vec<String> {
    vs.iter()
        .map(|v| {
            let s = match v {
                V::S(s) => format!("{s:?}"),
                V::Null => "null".into(),
                V::AnyOrder(p) => format!("any order of {p:?}"),
            };
            if s.chars().count() > 60 { s.chars().take(57).collect::<String>() + "…" } else { s }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// JSON building helpers.

fn put(doc: &mut Value, path: &str, v: Value) {
    let mut cur = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        if !cur.get(*p).is_some_and(Value::is_object) {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).unwrap();
    }
    cur[parts[parts.len() - 1]] = v;
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

/// Drops null members (exporters that omit absent values).
fn compact(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            if x.is_object() {
                *x = compact(x.take());
            }
        }
    }
    v
}

fn num_or_text(s: &str) -> Value {
    s.parse::<u64>().map_or_else(|_| Value::String(s.to_string()), Value::from)
}

fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Writes one file per source EVTX file: `NNN-<evtx name>.<ext>`.
fn write_files(groups: &[(usize, &str, Vec<&Src>)], dir: &Path, ext: &str, body: impl Fn(usize, &[&Src]) -> String) {
    for (i, path, evs) in groups {
        let stem = basename(path).trim_end_matches(".evtx").replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_");
        std::fs::write(dir.join(format!("{i:03}-{stem}.{ext}")), body(*i, evs)).unwrap();
    }
}

fn lines(docs: impl Iterator<Item = Value>) -> String {
    docs.map(|d| d.to_string() + "\n").collect()
}

// ---------------------------------------------------------------------------------------------
// a. Winlogbeat 8 beat output (file output / Logstash / Kafka stream: everything under `winlog.*`).
//
// `@timestamp` = SystemTime verbatim; `event.code` and `winlog.event_id` strings (7.13+);
// `winlog.record_id` a number; every EventData value a string; `host.name` the collector (WEF),
// `winlog.computer_name` the event's Computer; Level/Task/Opcode/Keywords rendered as names; GUIDs
// upper case in braces. Unnamed `<Data>` values become `param1`…`paramN` (Winlogbeat names a
// nameless pair by its position). UserData is written as `event_data` too: the flattened EVTX
// fields do not say which names came from UserData. `%%nnnn` insertion strings are kept raw
// (Winlogbeat renders some from message tables; that needs the Windows DLLs).

fn keyword_names(k: u64) -> Vec<&'static str> {
    let mut v = Vec::new();
    if k & 0x0020_0000_0000_0000 != 0 {
        v.push("Audit Success");
    }
    if k & 0x0010_0000_0000_0000 != 0 {
        v.push("Audit Failure");
    }
    if k & 0x0080_0000_0000_0000 != 0 {
        v.push("Classic");
    }
    v
}

fn opcode_name(op: u64) -> &'static str {
    match op {
        1 => "Start",
        2 => "Stop",
        _ => "Info",
    }
}

fn winlogbeat_doc(e: &Src) -> Value {
    let mut ed = Map::new();
    for (k, v) in &e.data {
        if k == "Data" {
            for (i, it) in items(v).iter().enumerate() {
                ed.insert(format!("param{}", i + 1), Value::String(text(it)));
            }
        } else {
            // A name given twice: the last pair wins (a Go map).
            ed.insert(k.clone(), Value::String(items(v).last().map(|x| text(x)).unwrap_or_default()));
        }
    }
    let kw = e.s("Keywords").and_then(|k| u64::from_str_radix(k.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
    let mut w = json!({
        "api": "wineventlog",
        "channel": opt(e.s("Channel")),
        "computer_name": opt(e.s("Computer")),
        "event_id": e.eid().to_string(),
        "provider_name": opt(e.s("Provider_Name")),
        "provider_guid": opt(e.s("Provider_Guid").map(|g| g.to_uppercase())),
        "record_id": opt(e.n("EventRecordID")),
        "version": opt(e.n("Version")),
        "opcode": opt(e.n("Opcode").map(opcode_name)),
        "keywords": keyword_names(kw),
        "activity_id": opt(e.s("Correlation_ActivityID").map(|g| g.to_uppercase())),
        "related_activity_id": opt(e.s("Correlation_RelatedActivityID").map(|g| g.to_uppercase())),
        "time_created": e.systime(),
    });
    if let Some(pid) = e.n("Execution_ProcessID") {
        w["process"] = json!({"pid": pid, "thread": {"id": opt(e.n("Execution_ThreadID"))}});
    }
    if let Some(u) = e.s("Security_UserID") {
        w["user"] = json!({"identifier": u});
    }
    if !ed.is_empty() {
        w["event_data"] = Value::Object(ed);
    }
    compact(json!({
        "@timestamp": e.systime(),
        "@metadata": {"beat": "winlogbeat", "type": "_doc", "version": "8.13.4"},
        "agent": {"type": "winlogbeat", "version": "8.13.4", "name": COLLECTOR, "hostname": COLLECTOR,
                  "id": fake_guid(COLLECTOR), "ephemeral_id": fake_guid("ephemeral")},
        "ecs": {"version": "8.0.0"},
        "event": {"code": e.eid().to_string(), "kind": "event", "provider": opt(e.s("Provider_Name")),
                  "created": iso_z(e.t_ns + 2 * SEC, 3)},
        "host": {"name": COLLECTOR, "hostname": "wec01", "os": {"family": "windows", "platform": "windows"}},
        "log": {"level": level_name(e.n("Level").unwrap_or(4))},
        "message": format!("Event {} of {}", e.eid(), e.s("Provider_Name").unwrap_or_default()),
        "winlog": w,
    }))
}

fn recover_winlogbeat(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    drop_sys(e, &mut f, &["Level", "Task", "Opcode", "Keywords", "EventID_Qualifiers", "Provider_EventSourceName"]);
    for k in ["Provider_Guid", "Correlation_ActivityID", "Correlation_RelatedActivityID"] {
        upper_sys(e, &mut f, k);
    }
    null_data_as_empty(e, &mut f);
    for (k, v) in &e.data {
        if k == "Data" {
            f.remove("Data");
            for (i, it) in items(v).iter().enumerate() {
                f.insert(format!("param{}", i + 1), vec![V::S(text(it))]);
            }
        } else if let Value::Array(a) = v
            && !SYSTEM.contains(&k.as_str())
        {
            f.insert(k.clone(), vec![V::S(a.last().map(text).unwrap_or_default())]);
        }
    }
    f
}

fn write_winlogbeat(groups: &[(usize, &str, Vec<&Src>)], dir: &Path) {
    // Winlogbeat 8 file output: `winlogbeat-<date>.ndjson`, one document per line.
    write_files(groups, dir, "ndjson", |_, evs| lines(evs.iter().map(|e| winlogbeat_doc(e))));
}

// ---------------------------------------------------------------------------------------------
// b. Documents after the Winlogbeat/Elastic ingest pipelines (exported from Elasticsearch).
//
// On top of (a): `winlog.record_id` a string; `winlog.time_created` moved to `event.created`.
// Sysmon (module pipeline `sysmon.yml`): every EventData value `-`, empty or the zero GUID is
// removed; `@timestamp` is overwritten from `UtcTime` (milliseconds); these are moved to ECS
// fields and deleted from `event_data` (the event id decides where a name goes):
//   CommandLine→process.command_line, Image/SourceImage→process.executable,
//   ProcessId/SourceProcessId→process.pid (number), ProcessGuid/SourceProcessGuid/SourceProcessGUID
//   →process.entity_id, CurrentDirectory→process.working_directory, ParentCommandLine/ParentImage/
//   ParentProcessId/ParentProcessGuid→process.parent.*, OriginalFileName→process.pe (file.pe for 7)
//   .original_file_name, Hashes→process.hash.* (1) / file.hash.* (others), lower case, split,
//   TargetFilename/ImageLoaded(7)/Device(9)→file.path, PipeName→file.name, Source*/Destination*
//   Ip/Port/Hostname→source./destination. ip/port/domain, Protocol→network.transport,
//   Initiated→network.direction (egress/ingress), QueryName→dns.question.name,
//   QueryStatus→sysmon.dns.status, TargetObject→registry.path, Details→registry.data.strings,
//   RuleName→rule.name, User→user.domain + user.name; TargetProcessGUID is renamed
//   TargetProcessGuid; UtcTime, Archived, IsExecutable, SourceIsIpv6, DestinationIsIpv6 and
//   QueryResults (parsed into dns.answers objects) are removed.
// Security 4688: NewProcessName→process.executable, NewProcessId→process.pid (decimal),
//   ParentProcessName→process.parent.executable (all deleted from event_data); CommandLine is
//   copied to process.command_line, ProcessId to process.parent.pid (decimal).
// Other Security event ids keep their event_data here (the security pipeline's other per-id
// renames are not modelled). Odd-numbered files are written as Elasticsearch hits
// (`{"_index","_id","_score","_source"}` per line, as elasticdump writes them), the others as bare
// documents.
//
// Lost (→ exclusions): the dropped `-`/empty/zero-GUID Sysmon values; the removed Sysmon fields;
// the order of the `Hashes` list (a reader rebuilds `SHA1=…,MD5=…` upper-case in its own order);
// the casing of `TargetProcessGUID`.

const ZERO_GUID: &str = "{00000000-0000-0000-0000-000000000000}";
const ECS_SYSMON_REMOVED: &[&str] = &["UtcTime", "Archived", "IsExecutable", "SourceIsIpv6", "DestinationIsIpv6", "QueryResults"];

fn ecs_doc(e: &Src) -> Value {
    let mut doc = winlogbeat_doc(e);
    let w = doc["winlog"].as_object_mut().unwrap();
    if let Some(r) = w.get("record_id").and_then(Value::as_u64) {
        w.insert("record_id".into(), Value::String(r.to_string()));
    }
    let created = w.remove("time_created").unwrap();
    let mut ed = match w.remove("event_data") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    put(&mut doc, "event.created", created);
    put(&mut doc, "event.ingested", Value::String(iso_z(e.t_ns + 5 * SEC, 6)));
    let eid = e.eid();
    if e.is_sysmon() {
        put(&mut doc, "event.module", json!("sysmon"));
        put(&mut doc, "event.dataset", json!("sysmon_operational"));
        ed.retain(|_, v| !matches!(v.as_str(), Some("-" | "" | ZERO_GUID)));
        if let Some(t) = e.utc_time_ns() {
            doc["@timestamp"] = Value::String(iso_z(t, 3));
        }
        let mut mv = |doc: &mut Value, name: &str, to: &str, number: bool| {
            if let Some(v) = ed.remove(name) {
                let s = text(&v);
                put(doc, to, if number { num_or_text(&s) } else { Value::String(s) });
            }
        };
        mv(&mut doc, "CommandLine", "process.command_line", false);
        mv(&mut doc, "Image", "process.executable", false);
        mv(&mut doc, "SourceImage", "process.executable", false);
        mv(&mut doc, "ProcessId", "process.pid", true);
        mv(&mut doc, "SourceProcessId", "process.pid", true);
        mv(&mut doc, "ProcessGuid", "process.entity_id", false);
        mv(&mut doc, "SourceProcessGuid", "process.entity_id", false);
        mv(&mut doc, "SourceProcessGUID", "process.entity_id", false);
        mv(&mut doc, "CurrentDirectory", "process.working_directory", false);
        mv(&mut doc, "ParentCommandLine", "process.parent.command_line", false);
        mv(&mut doc, "ParentImage", "process.parent.executable", false);
        mv(&mut doc, "ParentProcessId", "process.parent.pid", true);
        mv(&mut doc, "ParentProcessGuid", "process.parent.entity_id", false);
        mv(&mut doc, "OriginalFileName", if eid == 7 { "file.pe.original_file_name" } else { "process.pe.original_file_name" }, false);
        mv(&mut doc, "TargetFilename", "file.path", false);
        mv(&mut doc, "ImageLoaded", "file.path", false);
        mv(&mut doc, "Device", "file.path", false);
        mv(&mut doc, "PipeName", "file.name", false);
        mv(&mut doc, "SourceIp", "source.ip", false);
        mv(&mut doc, "SourcePort", "source.port", true);
        mv(&mut doc, "SourceHostname", "source.domain", false);
        mv(&mut doc, "DestinationIp", "destination.ip", false);
        mv(&mut doc, "DestinationPort", "destination.port", true);
        mv(&mut doc, "DestinationHostname", "destination.domain", false);
        mv(&mut doc, "Protocol", "network.transport", false);
        mv(&mut doc, "QueryName", "dns.question.name", false);
        mv(&mut doc, "QueryStatus", "sysmon.dns.status", false);
        mv(&mut doc, "TargetObject", "registry.path", false);
        mv(&mut doc, "RuleName", "rule.name", false);
        if let Some(v) = ed.remove("Initiated") {
            put(&mut doc, "network.direction", json!(if v == "true" { "egress" } else { "ingress" }));
        }
        if let Some(v) = ed.remove("Details") {
            put(&mut doc, "registry.data.strings", json!([v]));
        }
        if let Some(v) = ed.remove("User") {
            let s = text(&v);
            match s.split_once('\\') {
                Some((d, n)) => {
                    put(&mut doc, "user.domain", json!(d));
                    put(&mut doc, "user.name", json!(n));
                }
                None => put(&mut doc, "user.name", json!(s)),
            }
        }
        if let Some(v) = ed.remove("Hashes") {
            let base = if eid == 1 { "process.hash" } else { "file.hash" };
            for part in text(&v).split(',') {
                if let Some((k, h)) = part.split_once('=') {
                    put(&mut doc, &format!("{base}.{}", k.to_ascii_lowercase()), json!(h.to_ascii_lowercase()));
                }
            }
        }
        if let Some(v) = ed.remove("TargetProcessGUID") {
            ed.insert("TargetProcessGuid".into(), v);
        }
        for k in ECS_SYSMON_REMOVED {
            ed.remove(*k);
        }
    } else if e.is_security() {
        put(&mut doc, "event.module", json!("security"));
        if eid == 4688 {
            let hex = |v: &Value| v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
            if let Some(v) = ed.remove("NewProcessName") {
                put(&mut doc, "process.executable", v);
            }
            if let Some(v) = ed.remove("NewProcessId") {
                put(&mut doc, "process.pid", opt(hex(&v)));
            }
            if let Some(v) = ed.remove("ParentProcessName") {
                put(&mut doc, "process.parent.executable", v);
            }
            if let Some(v) = ed.get("ProcessId").and_then(hex) {
                put(&mut doc, "process.parent.pid", json!(v));
            }
            if let Some(v) = ed.get("CommandLine").cloned() {
                put(&mut doc, "process.command_line", v);
            }
            if let Some(v) = ed.get("SubjectLogonId").cloned() {
                put(&mut doc, "winlog.logon.id", v);
            }
        }
    }
    if !ed.is_empty() {
        doc["winlog"]["event_data"] = Value::Object(ed);
    }
    doc
}

fn recover_ecs(e: &Src) -> Fields {
    let mut f = recover_winlogbeat(e);
    if e.is_sysmon() {
        for (k, _) in &e.data {
            let dropped = f.get(k).is_some_and(|vs| vs.iter().all(|v| matches!(v, V::S(s) if s == "-" || s.is_empty() || s == ZERO_GUID)));
            if dropped || ECS_SYSMON_REMOVED.contains(&k.as_str()) {
                f.remove(k);
            }
        }
        if let Some(v) = f.remove("TargetProcessGUID") {
            f.insert("TargetProcessGuid".into(), v);
        }
        if let Some(vs) = f.get_mut("Hashes") {
            for v in vs.iter_mut() {
                if let V::S(s) = v {
                    *v = V::AnyOrder(s.split(',').map(|p| p.to_ascii_uppercase()).collect());
                }
            }
        }
    }
    f
}

fn write_ecs(groups: &[(usize, &str, Vec<&Src>)], dir: &Path) {
    write_files(groups, dir, "json", |i, evs| {
        lines(evs.iter().map(|e| {
            let doc = ecs_doc(e);
            if i % 2 == 0 {
                return doc;
            }
            let ds = if e.is_sysmon() {
                "windows.sysmon_operational"
            } else if e.is_security() {
                "system.security"
            } else {
                "windows.forwarded"
            };
            json!({
                "_index": format!(".ds-logs-{ds}-default-2024.05.01-000001"),
                "_id": fake_guid(&format!("{}:{}", e.path, e.record)).replace('-', "")[..20].to_string(),
                "_score": 1.0,
                "_source": doc,
            })
        }))
    });
}

/// Sysmon events carry their time as `UtcTime` in this layout: either clock is accepted.
fn window_ecs(e: &Src, t: i64) -> (i64, i64) {
    match e.utc_time_ns().filter(|_| e.is_sysmon()) {
        Some(u) => (t.min(u / 1000), t.max(u / 1000)),
        None => (t, t),
    }
}

// ---------------------------------------------------------------------------------------------
// c. OTRF/Mordor: NXLog `im_msvistalog` → Logstash, one flat JSON object per line.
//
// NXLog core fields (`EventTime` = the Windows host's local time without zone — here UTC-5 —,
// `EventReceivedTime` 2 s later, `Hostname` = Computer, `SourceName` = provider, `ProviderGuid`,
// `EventID`/`RecordNumber`/`Version`/`Task`/`OpcodeValue`/`ExecutionProcessID`/`ThreadID` numbers,
// `Keywords` a signed int64, `EventType`/`Severity`/`SeverityValue`, `UserID`, `ActivityID`,
// `Message`) plus Logstash fields (`@timestamp` = ingest, 3–4 s after the event, UTC ms;
// `@version`, `host` = the WEC, `port`, `tags:["mordorDataset"]`), then every EventData value at
// top level as a string (unnamed `<Data>` values as a JSON array under `Data`, a guess).
// An EventData name equal to a core name overwrites it (as NXLog's Sysmon `EventType` does).
//
// Lost (→ exclusions): `Level` (only the coarse `Severity` is written), `EventID_Qualifiers`,
// `Provider_EventSourceName`, the exact `TimeCreated_SystemTime`; EventData fields named like a core
// field (the reserved names below) — except Sysmon's `EventType` (SetValue, CreateKey…), which a
// reader keeps when it is not an NXLog event type; where such a name is also a System field
// (`Channel`, `Version`), the System value is the one overwritten.
// Time: the layout has the event time to the second (`EventTime` + an offset recoverable from
// `@timestamp` − `EventTime`), Sysmon's `UtcTime` (ms), and the ingest time `@timestamp`; any time
// from the whole second of the event to `@timestamp` is accepted.

const NXLOG_RESERVED: &[&str] = &[
    "tags",
    "@version",
    "@timestamp",
    "host",
    "port",
    "EventTime",
    "EventReceivedTime",
    "Hostname",
    "Keywords",
    "EventType",
    "SeverityValue",
    "Severity",
    "SourceName",
    "ProviderGuid",
    "Version",
    "Task",
    "TaskValue",
    "OpcodeValue",
    "Opcode",
    "Category",
    "RecordNumber",
    "ProcessID",
    "ThreadID",
    "ExecutionProcessID",
    "ExecutionThreadID",
    "Channel",
    "Domain",
    "AccountName",
    "UserID",
    "AccountType",
    "Message",
    "SourceModuleName",
    "SourceModuleType",
    "EventID",
    "ActivityID",
    "RelatedActivityID",
    "ERROR_EVT_UNRESOLVED",
];

/// NXLog core names that carry a System field.
fn nxlog_system(k: &str) -> Option<&'static str> {
    Some(match k {
        "Channel" => "Channel",
        "Version" => "Version",
        "EventID" => "EventID",
        "Task" => "Task",
        "Keywords" => "Keywords",
        "RecordNumber" => "EventRecordID",
        "Hostname" => "Computer",
        "SourceName" => "Provider_Name",
        "ProviderGuid" => "Provider_Guid",
        "OpcodeValue" => "Opcode",
        "ExecutionProcessID" => "Execution_ProcessID",
        "ThreadID" => "Execution_ThreadID",
        "UserID" => "Security_UserID",
        "ActivityID" => "Correlation_ActivityID",
        "RelatedActivityID" => "Correlation_RelatedActivityID",
        _ => return None,
    })
}

const NXLOG_EVENT_TYPES: &[&str] = &["INFO", "AUDIT_SUCCESS", "AUDIT_FAILURE", "WARNING", "ERROR", "CRITICAL", "VERBOSE"];

fn nxlog_ingest_ns(e: &Src) -> i64 {
    e.t_ns + 3 * SEC + (e.record % 997) as i64 * 1_000_000
}

fn nxlog_doc(e: &Src) -> Value {
    let kw = e.s("Keywords").and_then(|k| u64::from_str_radix(k.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
    let level = e.n("Level").unwrap_or(4);
    let (etype, sev, sevv) = if kw & 0x0020_0000_0000_0000 != 0 {
        ("AUDIT_SUCCESS", "INFO", 2)
    } else if kw & 0x0010_0000_0000_0000 != 0 {
        ("AUDIT_FAILURE", "ERROR", 4)
    } else {
        match level {
            1 => ("CRITICAL", "CRITICAL", 5),
            2 => ("ERROR", "ERROR", 4),
            3 => ("WARNING", "WARNING", 3),
            5 => ("VERBOSE", "DEBUG", 1),
            _ => ("INFO", "INFO", 2),
        }
    };
    let mut m = compact(json!({
        "tags": ["mordorDataset"],
        "@version": "1",
        "@timestamp": iso_z(nxlog_ingest_ns(e), 3),
        "host": "wec.internal.cloudapp.net",
        "port": 60122,
        "EventTime": civil(e.t_ns, NXLOG_OFFSET_MIN, ' ', 0),
        "EventReceivedTime": civil(e.t_ns + 2 * SEC, NXLOG_OFFSET_MIN, ' ', 0),
        "Hostname": opt(e.s("Computer")),
        "SourceName": opt(e.s("Provider_Name")),
        "ProviderGuid": opt(e.s("Provider_Guid").map(|g| g.to_uppercase())),
        "EventID": e.eid(),
        "Channel": opt(e.s("Channel")),
        "RecordNumber": opt(e.n("EventRecordID")),
        "Version": opt(e.n("Version")),
        "Task": opt(e.n("Task")),
        "OpcodeValue": opt(e.n("Opcode")),
        "Opcode": opt(e.n("Opcode").map(opcode_name)),
        "Keywords": kw as i64,
        "EventType": etype,
        "Severity": sev,
        "SeverityValue": sevv,
        "ExecutionProcessID": opt(e.n("Execution_ProcessID")),
        "ThreadID": opt(e.n("Execution_ThreadID")),
        "UserID": opt(e.s("Security_UserID")),
        "ActivityID": opt(e.s("Correlation_ActivityID").map(|g| g.to_uppercase())),
        "RelatedActivityID": opt(e.s("Correlation_RelatedActivityID").map(|g| g.to_uppercase())),
        "Message": format!("Event {} of {}", e.eid(), e.s("Provider_Name").unwrap_or_default()),
        "SourceModuleName": "eventlog",
        "SourceModuleType": "im_msvistalog",
    }));
    let obj = m.as_object_mut().unwrap();
    for (k, v) in &e.data {
        let v = match v {
            Value::Array(a) => Value::Array(a.iter().map(|x| Value::String(text(x))).collect()),
            v => Value::String(text(v)),
        };
        obj.insert(k.clone(), v);
    }
    m
}

fn recover_nxlog(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    drop_sys(e, &mut f, &["Level", "EventID_Qualifiers", "Provider_EventSourceName", "TimeCreated_SystemTime"]);
    for k in ["Provider_Guid", "Correlation_ActivityID", "Correlation_RelatedActivityID"] {
        upper_sys(e, &mut f, k);
    }
    null_data_as_empty(e, &mut f);
    for (k, v) in &e.data {
        if !NXLOG_RESERVED.contains(&k.as_str()) {
            continue;
        }
        let vs: Vec<V> = vals(v).into_iter().map(|x| if x == V::Null { V::S(String::new()) } else { x }).collect();
        if k == "EventType" && !vs.iter().any(|x| matches!(x, V::S(s) if NXLOG_EVENT_TYPES.contains(&s.as_str()))) {
            continue;
        }
        match nxlog_system(k) {
            // The data value took the System field's place.
            Some(sys) if sys == k => set(&mut f, k, vs),
            Some(sys) => {
                f.remove(k);
                set(&mut f, sys, vs);
            }
            None => {
                f.remove(k);
            }
        }
    }
    f
}

fn write_nxlog(groups: &[(usize, &str, Vec<&Src>)], dir: &Path) {
    write_files(groups, dir, "json", |_, evs| lines(evs.iter().map(|e| nxlog_doc(e))));
}

fn window_nxlog(e: &Src, t: i64) -> (i64, i64) {
    let second = e.t_ns.div_euclid(SEC) * SEC;
    let lo = e.utc_time_ns().filter(|_| e.is_sysmon()).map_or(second, |u| u.min(second));
    (lo / 1000, (nxlog_ingest_ns(e) / 1000).max(t))
}

// ---------------------------------------------------------------------------------------------
// d. Sentinel / Log Analytics `SecurityEvent` (MMA/AMA Security channel; other channels are in
// `Event`, layout f). Two sub-cases of the same rows:
//   - the Log Analytics API result as a JSON array of objects (`Type":"SecurityEvent"`,
//     `TimeGenerated` 7 fractional digits Z, `EventID`/`Task` numbers, `Level` a string,
//     `Activity` "4624 - …", `TimeCollected` 3 s later, `EventSourceName`, derived columns
//     `Account`/`SubjectAccount`/`TargetAccount`/`Process`/`LogonTypeName`), every promoted
//     EventData column present in every row (null when the event has no such field), the
//     `int`-typed ones numbers, the `guid`-typed ones without braces; the EventData fields that
//     have no column go to the `EventData` XML column (null when there are none);
//   - the same rows as `az monitor log-analytics query` prints them: every value a string,
//     null as "None", a `TableName` column.
//
// Lost (→ exclusions): no EventRecordID, Provider_Guid, Version, Opcode, Keywords, Execution_*,
// Correlation_*, Security_UserID, EventID_Qualifiers, Provider_EventSourceName columns; a null
// EventData value is indistinguishable from "no such field" in a promoted column (null/"None"), and
// reads as "" from the XML; an EventData name equal to a standard column is lost.
// Braces of guid columns are not counted as lost: a reader restores them by column name.

const SE_STANDARD: &[&str] = &[
    "TenantId",
    "TimeGenerated",
    "SourceSystem",
    "Account",
    "AccountType",
    "Computer",
    "EventSourceName",
    "Channel",
    "Task",
    "Level",
    "EventData",
    "EventID",
    "Activity",
    "SourceComputerId",
    "EventOriginId",
    "MG",
    "TimeCollected",
    "ManagementGroupName",
    "Type",
    "_ResourceId",
    "SubjectAccount",
    "TargetAccount",
    "Process",
    "LogonTypeName",
    "TableName",
];

const SE_PROMOTED: &[&str] = &[
    "AccessList",
    "AccessMask",
    "AccessReason",
    "AccountExpires",
    "AdditionalInfo",
    "AdditionalInfo2",
    "AllowedToDelegateTo",
    "AuditPolicyChanges",
    "AuthenticationPackageName",
    "CallerProcessId",
    "CallerProcessName",
    "CategoryId",
    "CertIssuerName",
    "CertSerialNumber",
    "CertThumbprint",
    "ClientAddress",
    "ClientName",
    "CommandLine",
    "DisplayName",
    "Disposition",
    "DomainBehaviorVersion",
    "DomainName",
    "DomainPolicyChanged",
    "DomainSid",
    "ElevatedToken",
    "ErrorCode",
    "FailureReason",
    "FilterOrigin",
    "HandleId",
    "HomeDirectory",
    "HomePath",
    "ImpersonationLevel",
    "IpAddress",
    "IpPort",
    "KeyLength",
    "LmPackageName",
    "LogonGuid",
    "LogonHours",
    "LogonID",
    "LogonProcessName",
    "LogonType",
    "MandatoryLabel",
    "MemberName",
    "MemberSid",
    "NewProcessId",
    "NewProcessName",
    "NewUacValue",
    "NewValue",
    "NewValueType",
    "ObjectName",
    "ObjectServer",
    "ObjectType",
    "ObjectValueName",
    "OldUacValue",
    "OldValue",
    "OldValueType",
    "OperationType",
    "PackageName",
    "ParentProcessName",
    "PasswordLastSet",
    "PreAuthType",
    "PrimaryGroupId",
    "PrivilegeList",
    "ProcessId",
    "ProcessName",
    "ProfilePath",
    "Properties",
    "RelativeTargetName",
    "RestrictedAdminMode",
    "RestrictedSidCount",
    "SamAccountName",
    "ScriptPath",
    "ServiceAccount",
    "ServiceFileName",
    "ServiceName",
    "ServiceStartType",
    "ServiceType",
    "SessionName",
    "ShareLocalPath",
    "ShareName",
    "SidHistory",
    "Status",
    "SubcategoryGuid",
    "SubcategoryId",
    "SubjectDomainName",
    "SubjectKeyIdentifier",
    "SubjectLogonId",
    "SubjectUserName",
    "SubjectUserSid",
    "SubStatus",
    "TargetDomainName",
    "TargetInfo",
    "TargetLinkedLogonId",
    "TargetLogonGuid",
    "TargetLogonId",
    "TargetOutboundDomainName",
    "TargetOutboundUserName",
    "TargetServerName",
    "TargetSid",
    "TargetUser",
    "TargetUserName",
    "TargetUserSid",
    "TemplateContent",
    "TicketEncryptionType",
    "TicketOptions",
    "TokenElevationType",
    "TransmittedServices",
    "UserAccountControl",
    "UserParameters",
    "UserPrincipalName",
    "UserWorkstations",
    "VirtualAccount",
    "Workstation",
    "WorkstationName",
    "InterfaceUuid",
];

const SE_INT: &[&str] = &["LogonType", "KeyLength", "ServiceStartType", "AuditsDiscarded", "AuthenticationLevel", "RestrictedSidCount"];
const SE_GUID: &[&str] = &["LogonGuid", "SubcategoryGuid", "TargetLogonGuid", "InterfaceUuid"];

fn activity(eid: u64) -> String {
    let text = match eid {
        4624 => "An account was successfully logged on.",
        4625 => "An account failed to log on.",
        4634 => "An account was logged off.",
        4648 => "A logon was attempted using explicit credentials.",
        4656 => "A handle to an object was requested.",
        4661 => "A handle to an object was requested.",
        4663 => "An attempt was made to access an object.",
        4672 => "Special privileges assigned to new logon.",
        4688 => "A new process has been created.",
        4697 => "A service was installed in the system.",
        4698 => "A scheduled task was created.",
        4720 => "A user account was created.",
        4732 => "A member was added to a security-enabled local group.",
        4768 => "A Kerberos authentication ticket (TGT) was requested.",
        4769 => "A Kerberos service ticket was requested.",
        5140 => "A network share object was accessed.",
        5145 => "A network share object was checked to see whether client can be granted desired access.",
        _ => "An event was logged.",
    };
    format!("{eid} - {text}")
}

fn security_event_row(e: &Src) -> Value {
    let d = |k: &str| e.get_data(k).filter(|v| !v.is_null()).map(text);
    let account = |dom: Option<String>, user: Option<String>| {
        user.map(|u| match dom {
            Some(dm) if !dm.is_empty() && dm != "-" => format!("{dm}\\{u}"),
            _ => u,
        })
    };
    let mut row = json!({
        "TenantId": fake_guid("tenant"),
        "TimeGenerated": e.systime(),
        "SourceSystem": "OpsManager",
        "Account": opt(account(d("TargetDomainName").or(d("SubjectDomainName")), d("TargetUserName").or(d("SubjectUserName")))),
        "AccountType": opt(d("SubjectUserName").map(|u| if u.ends_with('$') { "Machine" } else { "User" })),
        "Computer": opt(e.s("Computer")),
        "EventSourceName": opt(e.s("Provider_Name")),
        "Channel": opt(e.s("Channel")),
        "Task": opt(e.n("Task")),
        "Level": opt(e.n("Level").map(|l| l.to_string())),
        "EventID": e.eid(),
        "Activity": activity(e.eid()),
        "SourceComputerId": fake_guid(&e.s("Computer").unwrap_or_default()),
        "EventOriginId": fake_guid(&format!("{}:{}", e.path, e.record)),
        "MG": "00000000-0000-0000-0000-000000000001",
        "TimeCollected": iso_z(e.t_ns + 3 * SEC, 7),
        "ManagementGroupName": "AOI-81a662b5-8541-481b-977d-5d956616ac5e",
        "SubjectAccount": opt(account(d("SubjectDomainName"), d("SubjectUserName"))),
        "TargetAccount": opt(account(d("TargetDomainName"), d("TargetUserName"))),
        "Process": opt(d("NewProcessName").or(d("ProcessName")).map(|p| p.rsplit('\\').next().unwrap_or_default().to_string())),
        "LogonTypeName": opt(d("LogonType").map(|t| format!("{t} - Logon"))),
        "Type": "SecurityEvent",
        "_ResourceId": "/subscriptions/0000/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm",
    });
    let obj = row.as_object_mut().unwrap();
    for c in SE_PROMOTED {
        obj.insert(c.to_string(), Value::Null);
    }
    for (k, v) in &e.data {
        if !SE_PROMOTED.contains(&k.as_str()) || v.is_array() {
            continue;
        }
        let col = if v.is_null() {
            Value::Null
        } else if SE_GUID.contains(&k.as_str()) {
            Value::String(text(v).trim_start_matches('{').trim_end_matches('}').to_string())
        } else if SE_INT.contains(&k.as_str()) && v.is_number() {
            v.clone()
        } else {
            Value::String(text(v))
        };
        obj.insert(k.clone(), col);
    }
    let rest = data_xml(e, '"', |k| !SE_PROMOTED.contains(&k) && !SE_STANDARD.contains(&k));
    obj.insert(
        "EventData".into(),
        if rest.is_empty() {
            Value::Null
        } else {
            Value::String(format!("<EventData xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">{rest}</EventData>"))
        },
    );
    row
}

/// `az monitor log-analytics query`: `item[col] = str(value)` for every column, `TableName` first.
fn az_row(row: Value) -> Value {
    let mut m = Map::new();
    m.insert("TableName".into(), json!("PrimaryResult"));
    for (k, v) in row.as_object().unwrap() {
        m.insert(
            k.clone(),
            Value::String(match v {
                Value::Null => "None".into(),
                Value::Bool(b) => if *b { "True" } else { "False" }.into(),
                other => text(other),
            }),
        );
    }
    Value::Object(m)
}

fn recover_security_event(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    drop_sys(
        e,
        &mut f,
        &[
            "EventRecordID",
            "Provider_Guid",
            "Version",
            "Opcode",
            "Keywords",
            "Execution_ProcessID",
            "Execution_ThreadID",
            "Correlation_ActivityID",
            "Correlation_RelatedActivityID",
            "Security_UserID",
            "EventID_Qualifiers",
            "Provider_EventSourceName",
        ],
    );
    for (k, v) in &e.data {
        if SE_STANDARD.contains(&k.as_str()) {
            f.remove(k);
        } else if SE_PROMOTED.contains(&k.as_str()) && !v.is_array() {
            if v.is_null() {
                f.remove(k);
            }
        } else {
            // From the XML: null and "" alike.
            f.insert(k.clone(), vals(v).into_iter().map(|x| if x == V::Null { V::S(String::new()) } else { x }).collect());
        }
    }
    f
}

fn write_security_event(groups: &[(usize, &str, Vec<&Src>)], dir: &Path, az: bool) {
    write_files(groups, dir, "json", |_, evs| {
        let rows: Vec<Value> = evs.iter().map(|e| security_event_row(e)).map(|r| if az { az_row(r) } else { r }).collect();
        // The API result compact, the az CLI indented as it prints.
        if az { serde_json::to_string_pretty(&rows).unwrap() } else { serde_json::to_string(&rows).unwrap() }
    });
}

// ---------------------------------------------------------------------------------------------
// e. Sentinel `WindowsEvent` (AMA / WEF connector), every channel: `Provider`, `EventRecordId` a
// string, `EventID`/`Task`/`Version`/`EventLevel`/`SystemProcessId`/`SystemThreadId` numbers,
// `Keywords` and `Opcode` strings, `SystemUserId`, `TimeGenerated` 7 digits Z, `RawEventData`
// null, `EventData` the Data names → values (strings, null kept, unnamed `Data` a list) as an
// object (the `dynamic` column parsed) or as its JSON text (sub-case 2). One JSON array per file.
//
// Lost (→ exclusions): Provider_Guid, Provider_EventSourceName, EventID_Qualifiers and the
// Correlation ids have no column.

fn windows_event_row(e: &Src, as_string: bool) -> Value {
    let mut ed = Map::new();
    for (k, v) in &e.data {
        let v = match v {
            Value::Array(a) => Value::Array(a.iter().map(|x| if x.is_null() { Value::Null } else { Value::String(text(x)) }).collect()),
            Value::Null => Value::Null,
            v => Value::String(text(v)),
        };
        ed.insert(k.clone(), v);
    }
    let ed = if ed.is_empty() {
        Value::Null
    } else if as_string {
        Value::String(Value::Object(ed).to_string())
    } else {
        Value::Object(ed)
    };
    let level = e.n("Level");
    json!({
        "TenantId": fake_guid("tenant"),
        "TimeGenerated": e.systime(),
        "Channel": opt(e.s("Channel")),
        "Computer": opt(e.s("Computer")),
        "Correlation": null,
        "EventData": ed,
        "EventID": e.eid(),
        "EventLevel": opt(level),
        "EventLevelName": opt(level.map(|l| { let n = level_name(l); n[..1].to_uppercase() + &n[1..] })),
        "EventOriginId": fake_guid("vm"),
        "EventRecordId": opt(e.n("EventRecordID").map(|r| r.to_string())),
        "Keywords": opt(e.s("Keywords")),
        "ManagementGroupName": null,
        "Opcode": opt(e.n("Opcode").map(|o| o.to_string())),
        "Provider": opt(e.s("Provider_Name")),
        "RawEventData": null,
        "SystemProcessId": opt(e.n("Execution_ProcessID")),
        "SystemThreadId": opt(e.n("Execution_ThreadID")),
        "SystemUserId": opt(e.s("Security_UserID")),
        "Task": opt(e.n("Task")),
        "Version": opt(e.n("Version")),
        "Type": "WindowsEvent",
        "_ResourceId": "/subscriptions/0000/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm",
    })
}

fn recover_windows_event(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    drop_sys(
        e,
        &mut f,
        &["Provider_Guid", "Provider_EventSourceName", "EventID_Qualifiers", "Correlation_ActivityID", "Correlation_RelatedActivityID"],
    );
    f
}

fn write_windows_event(groups: &[(usize, &str, Vec<&Src>)], dir: &Path, as_string: bool) {
    write_files(groups, dir, "json", |_, evs| {
        serde_json::to_string(&evs.iter().map(|e| windows_event_row(e, as_string)).collect::<Vec<_>>()).unwrap()
    });
}

// ---------------------------------------------------------------------------------------------
// f. Sentinel `Event` (legacy MMA "Windows event logs": every channel but Security): `EventLog`
// = channel, `Source` = provider, `EventLevel`/`EventLevelName`, `EventCategory`, `UserName`,
// `RenderedDescription`, positional `ParameterXml`, and `EventData` the XML string
// `<DataItem type="System.XmlData" time=… sourceHealthServiceId=…><EventData xmlns=…><Data
// Name="…">…</Data>…</EventData></DataItem>` (values XML-escaped; unnamed values as `<Data>`).
// One JSON array per file.
//
// Lost (→ exclusions): no EventRecordID, Provider_Guid, Provider_EventSourceName,
// EventID_Qualifiers, Version, Opcode, Keywords, Execution_*, Correlation_*, Security_UserID
// column (`UserName` is the resolved account); `Task` is not counted as carried
// (`EventCategory` is not documented as the task); null values read as "" from the XML; a null
// Channel (ETW-converted files) is a null `EventLog`, i.e. none.

fn event_row(e: &Src) -> Value {
    let level = e.n("Level");
    let params: String = e
        .data
        .iter()
        .flat_map(|(_, v)| items(v).into_iter().map(|x| format!("<Param>{}</Param>", xml_escape(&text(x), '"'))).collect::<Vec<_>>())
        .collect();
    json!({
        "TenantId": fake_guid("tenant"),
        "SourceSystem": "OpsManager",
        "TimeGenerated": e.systime(),
        "Source": opt(e.s("Provider_Name")),
        "EventLog": opt(e.s("Channel")),
        "Computer": opt(e.s("Computer")),
        "EventLevel": opt(level),
        "EventLevelName": opt(level.map(|l| { let n = level_name(l); n[..1].to_uppercase() + &n[1..] })),
        "EventID": e.eid(),
        "EventCategory": opt(e.n("Task")),
        "UserName": opt(e.s("Security_UserID").filter(|s| s == "S-1-5-18").map(|_| "NT AUTHORITY\\SYSTEM")),
        "RenderedDescription": format!("Event {} of {}", e.eid(), e.s("Provider_Name").unwrap_or_default()),
        "Message": "",
        "ParameterXml": params,
        "EventData": format!(
            "<DataItem type=\"System.XmlData\" time=\"{}+00:00\" sourceHealthServiceId=\"{}\"><EventData xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">{}</EventData></DataItem>",
            civil(e.t_ns, 0, 'T', 7),
            fake_guid("healthservice").to_uppercase(),
            data_xml(e, '"', |_| true)
        ),
        "ManagementGroupName": "AOI-81a662b5-8541-481b-977d-5d956616ac5e",
        "MG": "00000000-0000-0000-0000-000000000001",
        "Type": "Event",
        "_ResourceId": "/subscriptions/0000/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm",
    })
}

fn recover_event(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    drop_sys(
        e,
        &mut f,
        &[
            "EventRecordID",
            "Provider_Guid",
            "Provider_EventSourceName",
            "EventID_Qualifiers",
            "Version",
            "Opcode",
            "Task",
            "Keywords",
            "Execution_ProcessID",
            "Execution_ThreadID",
            "Correlation_ActivityID",
            "Correlation_RelatedActivityID",
            "Security_UserID",
        ],
    );
    null_data_as_empty(e, &mut f);
    if e.sys.get("Channel").is_some_and(Value::is_null) {
        drop_sys(e, &mut f, &["Channel"]);
    }
    f
}

fn write_event(groups: &[(usize, &str, Vec<&Src>)], dir: &Path) {
    write_files(groups, dir, "json", |_, evs| serde_json::to_string(&evs.iter().map(|e| event_row(e)).collect::<Vec<_>>()).unwrap());
}

// ---------------------------------------------------------------------------------------------
// g. Velociraptor `Windows.EventLogs.Evtx` (JSONL, one row per event): the `parse_evtx` row
// (`System` typed: `EventID.Value` number, `TimeCreated.SystemTime` float epoch seconds,
// `Keywords` decimal uint64, `Provider.Guid` and `Correlation` ids upper case without braces,
// `Security: {}` when there is no UserID) plus the artifact's columns `TimeCreated` (whole
// seconds, RFC 3339 UTC), `Channel`, `EventRecordID`, `EventID`, `OSPath`.
// EventData keeps JSON types; a string that is a `0x` hex number exactly as EVTX renders
// HexInt32/64 (lower case, no leading zeros) becomes the number, as Velociraptor decodes those
// types. A braced lower-case GUID (how EVTX renders GUID-typed values; text-typed ones keep their
// own case) in a field named `…Guid`/`…GUID`/`…Uuid` loses its braces and is upper-cased. The
// flattened EVTX fields do not carry the binary types, so these two rules approximate them: a
// text-typed value that happens to look like that (e.g. Sysmon's `GrantedAccess`, which is a
// string in the EVTX) is converted as well — a reader has to re-hex by field name anyway.
//
// Lost (→ exclusions): only the GUID case (a reader restores braces by field name); the hex
// rendering is counted as recoverable (the hex-typed fields are known per provider and event id:
// `SubjectLogonId`, `AccessMask`, `Status`, Security `ProcessId`, …), and the System fields are
// all there. Time: float seconds carry microseconds only up to rounding: ±1 µs.

fn velo_guid(name: &str, s: &str) -> Option<String> {
    let n = name.to_ascii_lowercase();
    (is_evtx_guid(s) && (n.ends_with("guid") || n.ends_with("uuid"))).then(|| s[1..37].to_uppercase())
}

fn velo_value(name: &str, v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| velo_value(name, x)).collect()),
        Value::String(s) => {
            if let Some(n) = as_hex(v) {
                json!(n)
            } else if let Some(g) = velo_guid(name, s) {
                json!(g)
            } else {
                v.clone()
            }
        }
        v => v.clone(),
    }
}

fn velociraptor_row(e: &Src) -> Value {
    let strip = |g: String| g.trim_start_matches('{').trim_end_matches('}').to_uppercase();
    let mut sys = json!({
        "Provider": compact(json!({"Name": opt(e.s("Provider_Name")), "Guid": opt(e.s("Provider_Guid").map(strip)),
                                   "EventSourceName": opt(e.s("Provider_EventSourceName"))})),
        "EventID": compact(json!({"Qualifiers": opt(e.n("EventID_Qualifiers")), "Value": e.eid()})),
        "Version": opt(e.n("Version")),
        "Level": opt(e.n("Level")),
        "Task": opt(e.n("Task")),
        "Opcode": opt(e.n("Opcode")),
        "Keywords": opt(e.n("Keywords")),
        "TimeCreated": {"SystemTime": e.t_ns.div_euclid(SEC) as f64 + e.t_ns.rem_euclid(SEC) as f64 / 1e9},
        "EventRecordID": opt(e.n("EventRecordID")),
        "Correlation": compact(json!({"ActivityID": opt(e.s("Correlation_ActivityID").map(strip)),
                                      "RelatedActivityID": opt(e.s("Correlation_RelatedActivityID").map(strip))})),
        "Execution": compact(json!({"ProcessID": opt(e.n("Execution_ProcessID")), "ThreadID": opt(e.n("Execution_ThreadID"))})),
        "Channel": opt(e.s("Channel")),
        "Computer": opt(e.s("Computer")),
        "Security": compact(json!({"UserID": opt(e.s("Security_UserID"))})),
    });
    for k in ["Version", "Level", "Task", "Opcode", "Keywords", "EventRecordID", "Channel"] {
        if sys[k].is_null() && !e.sys.contains_key(k) {
            sys.as_object_mut().unwrap().remove(k);
        }
    }
    if e.n("Execution_ProcessID").is_none() {
        sys.as_object_mut().unwrap().remove("Execution");
    }
    let mut row = json!({"System": sys});
    if !e.data.is_empty() {
        row["EventData"] = Value::Object(e.data.iter().map(|(k, v)| (k.clone(), velo_value(k, v))).collect());
    }
    let file = basename(&e.path);
    row["TimeCreated"] = json!(iso_z(e.t_ns.div_euclid(SEC) * SEC, 0));
    row["Channel"] = opt(e.s("Channel"));
    row["EventRecordID"] = opt(e.n("EventRecordID"));
    row["EventID"] = json!(e.eid());
    row["OSPath"] = json!(format!("C:\\Windows\\System32\\winevt\\Logs\\{file}"));
    row
}

fn recover_velociraptor(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    drop_sys(e, &mut f, &[]);
    for k in ["Provider_Guid", "Correlation_ActivityID", "Correlation_RelatedActivityID"] {
        upper_sys(e, &mut f, k);
    }
    for (k, v) in &e.data {
        if items(v).iter().any(|x| x.as_str().is_some_and(|s| velo_guid(k, s).is_some())) {
            let vs = items(v)
                .iter()
                .map(|x| match x.as_str().and_then(|s| velo_guid(k, s)) {
                    Some(g) => V::S(format!("{{{g}}}")),
                    None => vals(x).remove(0),
                })
                .collect();
            f.insert(k.clone(), vs);
        }
    }
    f
}

fn write_velociraptor(groups: &[(usize, &str, Vec<&Src>)], dir: &Path) {
    write_files(groups, dir, "json", |_, evs| lines(evs.iter().map(|e| velociraptor_row(e))));
}

fn window_velociraptor(_: &Src, t: i64) -> (i64, i64) {
    (t - 1, t + 1)
}

// ---------------------------------------------------------------------------------------------
// h. Splunk `XmlWinEventLog` exported through REST `/search/jobs/export?output_mode=json`: one
// `{"preview":false,"offset":n,"result":{…}}` per line (the last with `"lastrow":true`), all
// result values strings, `_time` in the exporting user's zone (+01:00, ms), `_raw` the event XML
// rendered from the fields (single-quoted attributes, XML-escaped values, CR and control characters
// as character references), plus a few TA-extracted conveniences (`EventCode`, `Computer`,
// `RecordNumber`). UserData is rendered as EventData (the flattened fields do not tell them apart).
//
// Lost (→ exclusions): only null vs "" of EventData values (both render `<Data Name='x'></Data>`).

fn event_xml(e: &Src) -> String {
    let a = |s: String| xml_escape(&s, '\'');
    let mut x = String::from("<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>");
    x.push_str("<Provider");
    for (attr, k) in [("Name", "Provider_Name"), ("Guid", "Provider_Guid"), ("EventSourceName", "Provider_EventSourceName")] {
        if let Some(v) = e.s(k) {
            let _ = write!(x, " {attr}='{}'", a(v));
        }
    }
    x.push_str("/>");
    match e.n("EventID_Qualifiers") {
        Some(q) => {
            let _ = write!(x, "<EventID Qualifiers='{q}'>{}</EventID>", e.eid());
        }
        None => {
            let _ = write!(x, "<EventID>{}</EventID>", e.eid());
        }
    }
    for k in ["Version", "Level", "Task", "Opcode", "Keywords"] {
        if let Some(v) = e.s(k) {
            let _ = write!(x, "<{k}>{}</{k}>", a(v));
        }
    }
    let _ = write!(x, "<TimeCreated SystemTime='{}'/>", e.systime());
    if let Some(r) = e.s("EventRecordID") {
        let _ = write!(x, "<EventRecordID>{r}</EventRecordID>");
    }
    x.push_str("<Correlation");
    for (attr, k) in [("ActivityID", "Correlation_ActivityID"), ("RelatedActivityID", "Correlation_RelatedActivityID")] {
        if let Some(v) = e.s(k) {
            let _ = write!(x, " {attr}='{}'", a(v));
        }
    }
    x.push_str("/>");
    if let Some(p) = e.s("Execution_ProcessID") {
        let _ = write!(x, "<Execution ProcessID='{p}' ThreadID='{}'/>", e.s("Execution_ThreadID").unwrap_or_default());
    }
    match e.s("Channel") {
        Some(c) => {
            let _ = write!(x, "<Channel>{}</Channel>", xml_escape(&c, '\''));
        }
        None => x.push_str("<Channel/>"),
    }
    let _ = write!(x, "<Computer>{}</Computer>", xml_escape(&e.s("Computer").unwrap_or_default(), '\''));
    match e.s("Security_UserID") {
        Some(u) => {
            let _ = write!(x, "<Security UserID='{}'/>", a(u));
        }
        None => x.push_str("<Security/>"),
    }
    x.push_str("</System>");
    if e.data.is_empty() {
        x.push_str("<EventData/>");
    } else {
        let _ = write!(x, "<EventData>{}</EventData>", data_xml(e, '\'', |_| true));
    }
    x.push_str("</Event>");
    x
}

fn splunk_result(e: &Src, n: usize) -> Value {
    let idx_time = (e.t_ns / SEC + 7).to_string();
    json!({
        "_bkt": "wineventlog~42~5E2E5D43-1C8A-4D5B-9A53-0C0F6E1A2B3C",
        "_cd": format!("42:{}", 1000 + n),
        "_indextime": idx_time,
        "_raw": event_xml(e),
        "_serial": n.to_string(),
        "_si": ["idx01", "wineventlog"],
        "_sourcetype": "XmlWinEventLog",
        "_time": iso_off(e.t_ns, 3, SPLUNK_OFFSET_MIN),
        "host": COLLECTOR,
        "index": "wineventlog",
        "linecount": "1",
        "source": format!("XmlWinEventLog:{}", e.s("Channel").unwrap_or_default()),
        "sourcetype": "XmlWinEventLog",
        "splunk_server": "idx01",
        "EventCode": e.eid().to_string(),
        "Computer": e.s("Computer").unwrap_or_default(),
        "RecordNumber": e.s("EventRecordID").unwrap_or_default(),
    })
}

fn recover_splunk(e: &Src) -> Fields {
    let mut f = orig_fields(e);
    null_data_as_empty(e, &mut f);
    f
}

fn write_splunk(groups: &[(usize, &str, Vec<&Src>)], dir: &Path) {
    write_files(groups, dir, "json", |_, evs| {
        let last = evs.len().saturating_sub(1);
        lines(evs.iter().enumerate().map(|(n, e)| {
            let mut line = json!({"preview": false, "offset": n, "result": splunk_result(e, n)});
            if n == last {
                line["lastrow"] = json!(true);
            }
            line
        }))
    });
}

// ---------------------------------------------------------------------------------------------
// Comparing a layout's hunt with the EVTX baseline.

type Groups<'a> = Vec<(usize, &'a str, Vec<&'a Src>)>;

struct Layout {
    name: &'static str,
    include: fn(&Src) -> bool,
    write: fn(&[(usize, &str, Vec<&Src>)], &Path),
    recover: fn(&Src) -> Fields,
    /// The times a detection of this event may carry, given the EVTX detection's time (µs).
    window: fn(&Src, i64) -> (i64, i64),
}

fn all(_: &Src) -> bool {
    true
}

fn exact(_: &Src, t: i64) -> (i64, i64) {
    (t, t)
}

fn fmt_us(t: i64) -> String {
    iso_z(t * 1000, 6)
}

/// A few of the fields the rule reads, for a difference line.
fn show_fields(fields: &Value, rule: Option<&RuleInfo>) -> String {
    let mut names: Vec<&str> = rule.map(|r| r.shown.iter().map(String::as_str).collect()).unwrap_or_default();
    names.retain(|n| !["EventID", "Channel", "Provider_Name"].contains(n));
    let obj = fields.as_object();
    let mut out = Vec::new();
    for n in names {
        let v = obj.and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v));
        let s = v.map_or("<absent>".to_string(), |v| v.to_string());
        let s = if s.chars().count() > 80 { s.chars().take(77).collect::<String>() + "…" } else { s };
        out.push(format!("{n}={s}"));
        if out.len() == 4 {
            break;
        }
    }
    out.join(" ")
}

fn check(layout: &Layout) {
    let fx = fixture();
    let started = std::time::Instant::now();
    let included: Vec<&Src> = fx.events.iter().filter(|e| (layout.include)(e)).collect();
    let mut groups: Groups<'_> = Vec::new();
    for e in &included {
        match groups.last_mut() {
            Some((_, p, evs)) if *p == e.path.as_str() => evs.push(e),
            _ => groups.push((groups.len(), e.path.as_str(), vec![e])),
        }
    }
    // PORTCULLIS_LAYOUTS_KEEP=<dir> keeps the reshaped files in <dir>/<layout> for a look.
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("PORTCULLIS_LAYOUTS_KEEP") {
        Some(keep) => {
            let d = PathBuf::from(keep).join(layout.name);
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            d
        }
        None => tmp.path().to_path_buf(),
    };
    (layout.write)(&groups, &dir);
    let (got_all, summary) = hunt(std::slice::from_ref(&dir));

    // What the layout loses, and the rules that can notice.
    let mut losses: BTreeMap<Loss, (String, u64)> = BTreeMap::new();
    for e in &included {
        let o = orig_fields(e);
        let r = (layout.recover)(e);
        let keys: BTreeSet<&String> = o.keys().chain(r.keys()).collect();
        for k in keys {
            let (a, b) = (o.get(k).cloned().unwrap_or_default(), r.get(k).cloned().unwrap_or_default());
            if a != b {
                losses.entry(Loss { field: k.clone(), orig: a, rec: b }).or_insert_with(|| e.key());
            }
        }
    }
    let t_losses = started.elapsed().as_secs_f64();
    let excluded = exclusions(&fx.analysis, &losses);
    let t_excl = started.elapsed().as_secs_f64() - t_losses;
    let excluded_ids: BTreeSet<&str> = excluded.iter().map(|x| x.rule.as_str()).collect();
    let rules: HashMap<&str, &RuleInfo> = fx.analysis.rules.iter().map(|r| (r.key.as_str(), r)).collect();

    // Expected: the EVTX detections of the included events, by rule, each with its time window.
    let mut expected: BTreeMap<&str, Vec<(i64, i64, &Det)>> = BTreeMap::new();
    let (mut in_layout, mut excluded_dets) = (0, 0);
    for d in &fx.baseline {
        let Some(&i) = fx.by_key.get(&(d.path.clone(), d.record)) else {
            continue;
        };
        let e = &fx.events[i];
        if !(layout.include)(e) {
            continue;
        }
        in_layout += 1;
        if excluded_ids.contains(d.rule_id.as_str()) {
            excluded_dets += 1;
            continue;
        }
        let t = d.t.unwrap_or(i64::MIN);
        let (lo, hi) = (layout.window)(e, t);
        expected.entry(&d.rule_id).or_default().push((lo, hi, d));
    }
    let mut got: BTreeMap<&str, Vec<&Det>> = BTreeMap::new();
    let mut got_excluded = 0;
    for d in &got_all {
        if excluded_ids.contains(d.rule_id.as_str()) {
            got_excluded += 1;
        } else {
            got.entry(&d.rule_id).or_default().push(d);
        }
    }

    // Match every layout detection to an open window of the same rule (earliest deadline first).
    let mut missing: Vec<(i64, i64, &Det)> = Vec::new();
    let mut unexpected: Vec<&Det> = Vec::new();
    let mut per_rule: Vec<(&str, usize, usize)> = Vec::new();
    let ids: BTreeSet<&str> = expected.keys().chain(got.keys()).copied().collect();
    for id in ids {
        let mut exp = expected.remove(id).unwrap_or_default();
        let mut gs = got.remove(id).unwrap_or_default();
        exp.sort_by_key(|x| (x.0, x.1));
        gs.sort_by_key(|d| d.t);
        let (n_exp, n_got) = (exp.len(), gs.len());
        let (before_m, before_u) = (missing.len(), unexpected.len());
        let mut open: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
        let mut next = 0;
        for d in gs {
            let t = d.t.unwrap_or(i64::MIN);
            while next < exp.len() && exp[next].0 <= t {
                open.push(Reverse((exp[next].1, next)));
                next += 1;
            }
            while let Some(Reverse((hi, j))) = open.peek().copied() {
                if hi < t {
                    open.pop();
                    missing.push(exp[j]);
                } else {
                    break;
                }
            }
            if open.pop().is_none() {
                unexpected.push(d);
            }
        }
        missing.extend(open.into_iter().map(|Reverse((_, j))| exp[j]));
        missing.extend(exp[next..].iter().copied());
        if missing.len() > before_m || unexpected.len() > before_u {
            per_rule.push((id, n_exp, n_got));
        }
    }

    let n_expected: usize = in_layout - excluded_dets;
    let n_got = got_all.len() - got_excluded;
    let mut rep = String::new();
    let _ = writeln!(rep, "== layout {}: {} events in {} files ==", layout.name, included.len(), groups.len());
    let _ = writeln!(
        rep,
        "hunt of the layout: {} events read, {} detections, files not logs: {}, files failed: {}, warnings: {}",
        summary["events"],
        got_all.len(),
        summary["files_not_logs"].as_array().map_or(0, Vec::len),
        summary["files_failed"],
        summary["warnings"]
    );
    let _ = writeln!(
        rep,
        "baseline (EVTX) detections of these events: {in_layout}; excluded rules: {} ({excluded_dets} baseline / {got_excluded} layout detections); compared: expected {n_expected}, layout {n_got}, missing {}, unexpected {}",
        excluded.len(),
        missing.len(),
        unexpected.len()
    );
    if !per_rule.is_empty() {
        per_rule.sort_by_key(|(id, e, g)| (Reverse(e.abs_diff(*g)), *id));
        let _ = writeln!(rep, "rules that differ ({}; expected → layout):", per_rule.len());
        for (id, e, g) in per_rule.iter().take(20) {
            let title = rules.get(id).map_or("?", |r| r.title.as_str());
            let _ = writeln!(rep, "  {e:>4} → {g:<4} {title} [{id}]");
        }
    }
    let mut diffs: Vec<String> = Vec::new();
    for (lo, hi, d) in &missing {
        let r = rules.get(d.rule_id.as_str()).copied();
        let when = if lo == hi { fmt_us(*lo) } else { format!("{}..{}", fmt_us(*lo), fmt_us(*hi)) };
        diffs.push(format!(
            "  missing    {} [{}] at {when}: {} record {} EventID {} {}",
            d.title,
            d.rule_id,
            basename(&d.path),
            d.record,
            d.fields["EventID"],
            show_fields(&d.fields, r)
        ));
    }
    for d in &unexpected {
        let r = rules.get(d.rule_id.as_str()).copied();
        diffs.push(format!(
            "  unexpected {} [{}] at {}: {} record {} EventID {} {}",
            d.title,
            d.rule_id,
            d.t.map_or("<no time>".into(), fmt_us),
            basename(&d.path),
            d.record,
            d.fields["EventID"],
            show_fields(&d.fields, r)
        ));
    }
    if !diffs.is_empty() {
        // Up to 20: the first missing and the first unexpected ones, half and half when both exist.
        let n_missing = missing.len().min(if unexpected.is_empty() { 20 } else { 10 });
        let n_unexpected = (20 - n_missing).min(unexpected.len());
        let shown: Vec<&String> = diffs[..n_missing].iter().chain(&diffs[missing.len()..missing.len() + n_unexpected]).collect();
        let _ = writeln!(rep, "first differences ({} missing, {} unexpected):", missing.len(), unexpected.len());
        for l in shown {
            let _ = writeln!(rep, "{l}");
        }
    }
    if !excluded.is_empty() {
        let _ = writeln!(rep, "excluded rules (the layout loses what they test):");
        for x in &excluded {
            let _ = writeln!(rep, "  {} [{}] — {}", x.title, x.rule, x.why);
        }
    }
    let _ = writeln!(
        rep,
        "({:.1}s; {} distinct losses; {t_excl:.1}s to find the rules they touch)",
        started.elapsed().as_secs_f64(),
        losses.len()
    );
    println!("{rep}");
    assert!(n_expected > 0, "nothing left to compare\n{rep}");
    assert!(missing.is_empty() && unexpected.is_empty(), "layout {} does not hunt like its EVTX files\n{rep}", layout.name);
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn a_winlogbeat_beat_output() {
    check(&Layout { name: "winlogbeat", include: all, write: write_winlogbeat, recover: recover_winlogbeat, window: exact });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn b_elastic_ingest_documents() {
    check(&Layout { name: "elastic-ingest", include: all, write: write_ecs, recover: recover_ecs, window: window_ecs });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn c_otrf_mordor_nxlog() {
    check(&Layout { name: "otrf-nxlog", include: all, write: write_nxlog, recover: recover_nxlog, window: window_nxlog });
}

fn security(e: &Src) -> bool {
    e.is_security()
}

fn not_security(e: &Src) -> bool {
    !e.is_security()
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn d1_sentinel_security_event_api() {
    check(&Layout {
        name: "sentinel-SecurityEvent-api",
        include: security,
        write: |g, d| write_security_event(g, d, false),
        recover: recover_security_event,
        window: exact,
    });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn d2_sentinel_security_event_az_cli() {
    check(&Layout {
        name: "sentinel-SecurityEvent-az",
        include: security,
        write: |g, d| write_security_event(g, d, true),
        recover: recover_security_event,
        window: exact,
    });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn e1_sentinel_windows_event_object() {
    check(&Layout {
        name: "sentinel-WindowsEvent-object",
        include: all,
        write: |g, d| write_windows_event(g, d, false),
        recover: recover_windows_event,
        window: exact,
    });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn e2_sentinel_windows_event_string() {
    check(&Layout {
        name: "sentinel-WindowsEvent-string",
        include: all,
        write: |g, d| write_windows_event(g, d, true),
        recover: recover_windows_event,
        window: exact,
    });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn f_sentinel_event() {
    check(&Layout { name: "sentinel-Event", include: not_security, write: write_event, recover: recover_event, window: exact });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn g_velociraptor_evtx() {
    check(&Layout {
        name: "velociraptor",
        include: all,
        write: write_velociraptor,
        recover: recover_velociraptor,
        window: window_velociraptor,
    });
}

#[test]
#[ignore = "needs ../shared/evtx and ../shared/sigma (run with --ignored; CI does)"]
fn h_splunk_xml_win_event_log() {
    check(&Layout { name: "splunk-XmlWinEventLog", include: all, write: write_splunk, recover: recover_splunk, window: exact });
}

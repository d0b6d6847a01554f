//! Fuzz targets for every Portcullis parser of attacker-controlled bytes, one binary run
//! as `portcullis-fuzz TARGET` under AFL++ (cargo-afl, stable toolchain), or with a file
//! on standard input to replay a finding. Each target calls the library's own function on
//! the bytes; a panic, an abort or a hang is a finding.

use std::io::Cursor;
use std::ops::ControlFlow;
use std::path::Path;

use portcullis_event::{Event, SourceKind};
use portcullis_sources::{FileReport, ReadOptions};

/// The targets: name, what it covers, and the function given the bytes.
const TARGETS: &[(&str, &str, fn(&[u8]))] = &[
    ("evtx", "EVTX reading (chunk census, evtx crate, JSON flattening of records)", evtx),
    ("json", "JSON splitting and flattening, layouts, collector clock", json),
    ("w3c", "W3C extended log (IIS) reading", w3c),
    ("exchange_csv", "Exchange message-tracking CSV reading", exchange_csv),
    ("tail", "sources::tail: a text log read piece by piece as it grows", tail),
    ("archive", "ZIP and tar archives of logs (sources::archive)", archive),
    ("exposure", "exposure scan of one stream: register CSV/TSV, XLSX, ZIP, mail", exposure),
    ("mbox", "mbox splitting, then MIME parsing of each message", mbox),
    ("mime", "MIME parsing (mailbox::parse, exposure's mail parts)", mime),
    ("html", "HTML beacon scanner and URL tokens (mail::html, mail::url)", html),
    ("sigma", "Sigma YAML rules and conditions, compiled and run on events", sigma),
    ("sigma_condition", "Sigma condition expressions", sigma_condition),
    ("intel", "STIX 2.1 bundles and patterns, MISP events, CSV/plain lists", intel),
];

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(&(_, _, target)) = TARGETS.iter().find(|(n, _, _)| *n == name) else {
        eprintln!("usage: portcullis-fuzz TARGET   (input on stdin, or under afl-fuzz)\n\ntargets:");
        for (n, what, _) in TARGETS {
            eprintln!("  {n:<16} {what}");
        }
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}

fn opts() -> ReadOptions {
    // Small limits, so long records are reached by short inputs.
    ReadOptions { max_record_bytes: 64 * 1024, ..ReadOptions::default() }
}

fn sink(_: &Event) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn report(name: &str) -> FileReport {
    FileReport { path: name.into(), ..FileReport::default() }
}

fn evtx(data: &[u8]) {
    let mut r = report("fuzz.evtx");
    let _ = portcullis_sources::evtx::read(Cursor::new(data.to_vec()), Path::new("fuzz.evtx"), &opts(), &mut r, &mut sink);
}

fn json(data: &[u8]) {
    let _ = portcullis_sources::json::read(data, &opts(), &mut report("fuzz.json"), &mut sink);
}

fn w3c(data: &[u8]) {
    let _ = portcullis_sources::w3c::read(data, &opts(), &mut report("fuzz.log"), &mut sink);
}

fn exchange_csv(data: &[u8]) {
    let _ = portcullis_sources::exchange_csv::read(data, &opts(), &mut report("fuzz.log"), &mut sink);
}

/// First byte: the format; second: the size of the pieces the file grows by. The rest is
/// appended piece by piece, and what is complete after each piece is read, as `watch`
/// does. For W3C and Exchange's CSV the events and skips must be those of one whole read
/// of the same bytes (JSON is left out of that check: its collector clock is learned from
/// the first piece, by design, not from the whole).
fn tail(data: &[u8]) {
    use portcullis_sources::tail::{TailState, TextFormat};
    let [f, step, rest @ ..] = data else { return };
    let format = match f % 3 {
        0 => TextFormat::Json,
        1 => TextFormat::W3c,
        _ => TextFormat::ExchangeCsv,
    };
    let step = usize::from(*step).max(1);
    let mut state = TailState::new(format);
    let mut pieces = report("fuzz.log");
    let (opts, mut pending, mut consumed) = (opts(), Vec::new(), 0);
    let mut events = Vec::new();
    for piece in rest.chunks(step) {
        pending.extend_from_slice(piece);
        let n = state.complete(&pending);
        assert!(n <= pending.len());
        let _ = state.read(&pending[..n], &opts, &mut pieces, &mut |e| {
            events.push(e.to_json());
            ControlFlow::Continue(())
        });
        pending.drain(..n);
        consumed += n;
    }
    let mut whole = report("fuzz.log");
    let mut whole_events = Vec::new();
    let mut collect = |e: &Event| {
        whole_events.push(e.to_json());
        ControlFlow::Continue(())
    };
    let read = match format {
        TextFormat::W3c => portcullis_sources::w3c::read(&rest[..consumed], &opts, &mut whole, &mut collect),
        TextFormat::ExchangeCsv => portcullis_sources::exchange_csv::read(&rest[..consumed], &opts, &mut whole, &mut collect),
        TextFormat::Json => return,
    };
    if read.is_ok() {
        assert_eq!(events, whole_events, "pieces of {step} bytes read other events than the whole");
        assert_eq!(pieces.skipped, whole.skipped, "pieces of {step} bytes skipped other records than the whole");
    }
}

fn archive(data: &[u8]) {
    use portcullis_sources::archive;
    let mut r = report("fuzz.zip");
    let path = Path::new("fuzz");
    if archive::is_zip(data) {
        let _ = archive::read_zip(Cursor::new(data), path, &opts(), &mut r, &mut sink);
    } else {
        let _ = archive::read_tar(data, path, &opts(), &mut r, &mut sink);
    }
}

fn exposure(data: &[u8]) {
    let opts = portcullis_exposure::Options { memory_budget: 1 << 20, show_samples: true, ..Default::default() };
    let _ = portcullis_exposure::scan_reader("fuzz", data, &opts);
}

fn mbox(data: &[u8]) {
    let _ = portcullis_mailbox::split_mbox(data, |_, piece| {
        if let portcullis_mailbox::Piece::Message { bytes, .. } = piece {
            let _ = portcullis_mailbox::parse(bytes);
        }
    });
}

fn mime(data: &[u8]) {
    let _ = portcullis_mailbox::is_eml(data);
    let _ = portcullis_mailbox::parse(data);
    let _ = portcullis_exposure::mail::parts(data);
}

fn html(data: &[u8]) {
    use portcullis_mail::url;
    let text = String::from_utf8_lossy(data);
    let facts = portcullis_mail::html::scan(&text);
    std::hint::black_box(&facts);
    if let Some(u) = url::parse(&text) {
        let _ = url::main_label(url::registrable(&u.host));
        let _ = url::tracking_path(&u.path);
    }
}

fn sigma(data: &[u8]) {
    use portcullis_sigma::{Engine, LogsourceTable, Placeholders, RuleSet};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut set = RuleSet::default();
    set.add_text(text, "fuzz.yml", &Placeholders::new());
    if set.rules.is_empty() {
        return;
    }
    let engine = Engine::compile(&set, &LogsourceTable::builtin());
    let mut scanner = engine.scanner();
    let mut out = Vec::new();
    let mut ev = Event::new(SourceKind::Windows);
    for (channel, id) in [("Microsoft-Windows-Sysmon/Operational", "1"), ("Security", "4688")] {
        ev.clear(SourceKind::Windows);
        ev.push_str("Channel", channel);
        ev.push_str("EventID", id);
        ev.push_str("Image", "C:\\Windows\\System32\\cmd.exe");
        ev.push_str("CommandLine", "cmd.exe /c whoami && powershell -enc SQBFAFgA");
        ev.push_str("User", "CORP\\admin");
        scanner.scan(&ev, &mut out);
    }
}

fn sigma_condition(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis_sigma::condition::parse(text);
    }
}

fn intel(data: &[u8]) {
    let imported = portcullis_intel::import::parse("fuzz", data);
    let set = portcullis_intel::IocSet::new(imported.indicators);
    let mut hits = Vec::new();
    set.scan("http://198.51.100.7/evil.exe from attacker@example.com d41d8cd98f00b204e9800998ecf8427e", &mut hits);
}

//! Scan-only microbenchmark: events are read into memory first, then scanned.
//! Usage: cargo run --release -p portcullis-hunt --example scanbench -- EVENTS_DIR RULES_DIR...
//! With `IOCS=builtin` or `IOCS=FILE` (an indicator file), the indicator scan is timed too.
#![allow(unsafe_code)] // a counting global allocator for the benchmark

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts allocations, to show the scan loop allocates nothing per event.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, rule_dirs) = args.split_first().expect("usage: scanbench INPUT RULES...");
    let (files, _) = portcullis_sources::collect_files(&[input.into()]);
    let mut events = Vec::new();
    let t = Instant::now();
    for f in &files {
        let _ = portcullis_sources::read_file(f, &Default::default(), &mut |e| {
            events.push(e.clone());
            std::ops::ControlFlow::Continue(())
        });
    }
    eprintln!("read {} events in {:.3}s", events.len(), t.elapsed().as_secs_f64());
    let mut set = portcullis_sigma::RuleSet::default();
    for d in rule_dirs {
        set.add_path(d.as_ref(), &Default::default());
    }
    let engine = portcullis_sigma::Engine::compile(&set, &portcullis_sigma::LogsourceTable::builtin());
    let mut scanner = engine.scanner();
    let mut out = Vec::new();
    if let Some(e) = events.first() {
        for l in scanner.debug_groups(e) {
            eprintln!("{l}");
        }
    }
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    for round in 0..rounds {
        let t = Instant::now();
        let allocs = ALLOCS.load(Ordering::Relaxed);
        let mut n = 0;
        for e in &events {
            out.clear();
            scanner.scan(e, &mut out);
            n += out.len();
        }
        let s = t.elapsed().as_secs_f64();
        let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
        eprintln!("round {round}: scan {:.3}s = {:.2} us/event, {n} matches, {allocs} allocations", s, s * 1e6 / events.len() as f64);
    }
    let Ok(iocs) = std::env::var("IOCS") else { return };
    let files: Vec<std::path::PathBuf> = if iocs == "builtin" { Vec::new() } else { vec![iocs.into()] };
    let loaded = portcullis_intel::load(&files, files.is_empty()).expect("indicators");
    // The indicators' rules go to an engine of their own: the scanner borrows the first.
    let mut ioc_engine = portcullis_sigma::Engine::compile_rules(Vec::new(), &[], &portcullis_sigma::LogsourceTable::default());
    let rules = portcullis_hunt::ioc::IocRules::install(&mut ioc_engine, loaded.set);
    let (mut hits, mut found) = (Vec::new(), Vec::new());
    // In a hunt an event is scanned for indicators just after it was read and scanned by
    // the rules, so it is in the cache: each chunk is touched first, then timed.
    for round in 0..rounds {
        let mut timed = std::time::Duration::ZERO;
        let mut n = 0;
        for chunk in events.chunks(16) {
            for e in chunk {
                out.clear();
                scanner.scan(e, &mut out);
            }
            let t = Instant::now();
            for e in chunk {
                rules.scan(e, &mut hits, &mut found);
                n += found.len();
            }
            timed += t.elapsed();
        }
        let s = timed.as_secs_f64();
        eprintln!("round {round}: indicators ({}) {:.3}s = {:.3} us/event, {n} matches", rules.set.len(), s, s * 1e6 / events.len() as f64);
    }
}

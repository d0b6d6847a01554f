//! Correlating on several threads: inputs are split by (correlation, group) into shares,
//! and each share is correlated on a thread of its own, a part of its groups at a time,
//! each part in time order. A group's state only ever sees its own inputs, so every share
//! and part gives the findings it would have given in one stream; a set whose
//! correlations feed other correlations stays in one share of one part, because an outer
//! correlation groups its inner findings differently.

use std::hash::BuildHasher;
use std::sync::Arc;

use portcullis_event::text_hash::TextHash;

use crate::engine::{CorrelationFinding, Correlator};
use crate::parse::CorrelationSet;
use crate::sorter::{Input, Sorter};

/// How many shares `set`'s inputs may be split into on `threads` threads.
pub fn shares_for(set: &CorrelationSet, threads: usize) -> usize {
    if set.hidden_correlations.is_empty() { threads.max(1) } else { 1 }
}

/// The share of `shares` an input belongs to: every input of one (correlation, group)
/// goes to the same one.
pub fn share_of(input: &Input, shares: usize) -> usize {
    place_of(input, shares, 1).0
}

/// How many parts each share's inputs are kept in ([`Sorter::with_parts`]): a part's
/// groups are correlated together, apart from the other parts' groups, so that the state
/// in use at once is a part's, not a share's. One part when correlations feed others (an
/// outer correlation groups its inner findings differently).
pub fn parts_for(set: &CorrelationSet) -> usize {
    if set.hidden_correlations.is_empty() { PARTS } else { 1 }
}

/// Parts per share when groups are independent. Thousands of groups (sources, users) keep
/// state of a kilobyte or two each; a sixty-fourth of them fits in a core's own cache.
const PARTS: usize = 64;

/// The share of `shares` and the part of `parts` an input belongs to: every input of one
/// (correlation, group) goes to the same place.
pub fn place_of(input: &Input, shares: usize, parts: usize) -> (usize, usize) {
    if shares <= 1 && parts <= 1 {
        return (0, 0);
    }
    // Seeded: group keys cannot be chosen in the logs to crowd into one share or part.
    let h = TextHash::default().hash_one((input.corr, input.group()));
    let shares = shares.max(1) as u64;
    ((h % shares) as usize, (h / shares % parts.max(1) as u64) as usize)
}

/// What correlating every share gave.
#[derive(Debug, Default)]
pub struct Correlated {
    /// Findings to report, ordered by last time, correlation and id.
    pub findings: Vec<CorrelationFinding>,
    /// The shares' largest numbers of live groups (in one part at a time), added up (an
    /// upper bound of the groups alive at once).
    pub peak_groups: usize,
    /// Problems reading spilled inputs back (results may be incomplete).
    pub errors: Vec<String>,
}

/// Merges each share's sorters into time order and correlates the shares side by side,
/// one thread each (the calling thread takes the first).
pub fn correlate_shares(set: &Arc<CorrelationSet>, shares: Vec<Vec<Sorter>>) -> Correlated {
    let mut shares = shares.into_iter();
    let first = shares.next().unwrap_or_default();
    let parts: Vec<Correlated> = std::thread::scope(|scope| {
        let others: Vec<_> = shares.map(|sorters| scope.spawn(move || correlate_one(set, sorters))).collect();
        let mut parts = vec![correlate_one(set, first)];
        for h in others {
            parts.push(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        parts
    });
    let mut all = Correlated::default();
    for p in parts {
        all.findings.extend(p.findings);
        all.peak_groups += p.peak_groups;
        all.errors.extend(p.errors);
    }
    all.findings.sort_by(|a, b| (a.last_ts, a.correlation, &a.id).cmp(&(b.last_ts, b.correlation, &b.id)));
    all
}

fn correlate_one(set: &Arc<CorrelationSet>, sorters: Vec<Sorter>) -> Correlated {
    let mut errors = Vec::new();
    let mut findings = Vec::new();
    let mut peak_groups = 0;
    let mut correlator = Correlator::new(set.clone());
    match Sorter::merge(sorters) {
        Ok(mut merged) => {
            let mut part = merged.part();
            while let Some(input) = merged.next() {
                match input {
                    Ok(i) => {
                        // A part's groups share nothing with the next part's: its windows
                        // are closed, and the next part starts with no state.
                        if merged.part() != part {
                            part = merged.part();
                            correlator.finish();
                            peak_groups = peak_groups.max(correlator.peak_groups);
                            findings.append(&mut correlator.findings);
                            correlator = Correlator::new(set.clone());
                        }
                        correlator.push(i)
                    }
                    Err(e) => {
                        errors.push(format!("reading spilled correlation inputs failed: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => errors.push(format!("merging correlation inputs failed: {e}")),
    }
    // Windows cut short by an error are not judged: "fewer than" would hold on a window
    // whose inputs were lost.
    if errors.is_empty() {
        correlator.finish();
    }
    findings.append(&mut correlator.findings);
    Correlated { findings, peak_groups: peak_groups.max(correlator.peak_groups), errors }
}

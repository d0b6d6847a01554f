//! A hunt's findings, made from its detections a chunk at a time and handed on (to the
//! case file or to the incident builder) without ever being all held: incidents from
//! compact members, the case recorded batch by batch, the most severe kept for display.

use std::collections::{HashMap, HashSet};

use portcullis_finding::{Entity, Finding, FindingKind, RuleLabels};
use portcullis_hunt::{Detection, HuntResult};
use portcullis_incident::{Incident, IncidentBuilder, IncidentOptions};
use portcullis_sigma::Level;

use crate::LoadedRules;

/// Detections made into findings per call.
const CHUNK: usize = 16 << 10;

/// How many of the most severe findings [`TopFindings`] keeps.
pub const TOP_FINDINGS: usize = 10;

/// The most severe findings of a hunt (high and critical; the most severe first, then the
/// earliest), how many there were, and the highest level of any finding.
#[derive(Debug, Default)]
pub struct TopFindings {
    /// At most [`TOP_FINDINGS`].
    pub findings: Vec<Finding>,
    /// Findings at high or critical.
    pub total: usize,
    /// The level of the most severe finding, if any.
    pub highest: Option<Level>,
}

impl TopFindings {
    pub fn add(&mut self, f: &Finding) {
        self.highest = self.highest.max(Some(f.level));
        if f.level < Level::High {
            return;
        }
        self.total += 1;
        let key = |f: &Finding| (std::cmp::Reverse(f.level), f.first_ts);
        // After every finding of an equal key: a stable order, the order they came in.
        let at = self.findings.partition_point(|x| key(x) <= key(f));
        if at < TOP_FINDINGS {
            self.findings.insert(at, f.clone());
            self.findings.truncate(TOP_FINDINGS);
        }
    }
}

/// What a detection's finding is made for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Made {
    /// Everything: the case file records it.
    Whole,
    /// What incidents group by, without the sentence, host or path.
    ToGroup,
}

/// Makes the run's detections into findings a chunk at a time, on every core, and hands
/// each chunk to `each` with its detections; then the correlations' findings (with the
/// entities of the detections they name as evidence, always whole), with no detections.
pub(crate) fn each_batch<E: From<std::io::Error>>(
    loaded: &LoadedRules,
    labels: &RuleLabels,
    result: &HuntResult,
    made: Made,
    mut each: impl FnMut(&[Finding], &[Detection]) -> Result<(), E>,
) -> Result<(), E> {
    use rayon::prelude::*;
    // The entities of the detections correlations name as evidence, gathered on the way.
    let wanted: HashSet<&str> = result.correlations.iter().flat_map(|c| c.evidence.iter().map(String::as_str)).collect();
    let mut evidence: HashMap<String, Vec<Entity>> = HashMap::new();
    let mut batch: Vec<Finding> = Vec::new();
    result.detections.try_for_each_chunk(CHUNK, |chunk| -> Result<(), E> {
        batch.clear();
        batch.par_extend(chunk.par_iter().with_min_len(1024).map(|d| match made {
            Made::Whole => Finding::from_detection(labels, &loaded.engine, d),
            Made::ToGroup => Finding::from_detection_to_group(labels, &loaded.engine, d),
        }));
        for d in chunk.iter().filter(|d| wanted.contains(d.id.as_str())) {
            evidence.insert(d.id.clone(), portcullis_finding::entities(&d.event));
        }
        each(&batch, chunk)
    })?;
    let correlations: Vec<Finding> = result
        .correlations
        .iter()
        .map(|c| {
            let evidence_entities: Vec<Entity> = c.evidence.iter().filter_map(|id| evidence.get(id)).flatten().cloned().collect();
            Finding::from_correlation(&loaded.correlations, c, &evidence_entities)
        })
        .collect();
    each(&correlations, &[])
}

/// The run's incidents, from its findings alone (no case file): one pass to group them,
/// from compact members, and one to make the findings whose sentences their stages quote
/// (and those `top` keeps) whole. Every finding passes through `top`. Also returns how
/// many findings the builder had to leave out (past its 32-bit numbering; in practice none).
pub(crate) fn incidents_of_run(
    loaded: &LoadedRules,
    result: &HuntResult,
    opts: &IncidentOptions,
    top: &mut TopFindings,
) -> std::io::Result<(Vec<Incident>, u64)> {
    let labels = RuleLabels::of(&loaded.engine);
    let mut builder = IncidentBuilder::new(opts);
    let mut correlation_sentences: HashMap<String, String> = HashMap::new();
    let mut read = 0;
    each_batch(loaded, &labels, result, Made::ToGroup, |batch, detections| -> std::io::Result<()> {
        for f in batch {
            builder.add(f);
            top.add(f);
        }
        read += detections.len();
        if detections.is_empty() {
            correlation_sentences.extend(batch.iter().map(|f| (f.id.clone(), f.sentence.clone())));
        }
        Ok(())
    })?;
    all_read(read, result)?;
    let grouped = builder.group();
    let left_out = grouped.left_out();
    let mut wanted: HashSet<String> = grouped.sentence_ids().into_iter().map(str::to_string).collect();
    wanted.extend(top.findings.iter().filter(|f| f.kind == FindingKind::Detection).map(|f| f.id.clone()));
    let mut whole: HashMap<String, Finding> = HashMap::new();
    let mut read = 0;
    result.detections.try_for_each_chunk(CHUNK, |chunk| -> std::io::Result<()> {
        read += chunk.len();
        for d in chunk.iter().filter(|d| wanted.contains(d.id.as_str())) {
            whole.entry(d.id.clone()).or_insert_with(|| Finding::from_detection(&labels, &loaded.engine, d));
        }
        Ok(())
    })?;
    all_read(read, result)?;
    for f in top.findings.iter_mut().filter(|f| f.kind == FindingKind::Detection) {
        if let Some(w) = whole.get(&f.id) {
            *f = w.clone();
        }
    }
    // (By reference: two incidents can quote one id, when a log was read twice.)
    let incidents = grouped.finish(|id| whole.get(id).map(|f| f.sentence.clone()).or_else(|| correlation_sentences.get(id).cloned()));
    Ok((incidents, left_out))
}

/// Every detection must have been read back, or the results would be short with no word.
pub(crate) fn all_read(read: usize, result: &HuntResult) -> std::io::Result<()> {
    if read == result.detections.len() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("{read} of {} detections read back", result.detections.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_event::Timestamp;

    fn finding(n: usize, level: Level, ts: i64) -> Finding {
        Finding {
            id: format!("{n:032x}"),
            kind: portcullis_finding::FindingKind::Detection,
            matcher: portcullis_finding::Matcher::Rule,
            log: None,
            rule_source: portcullis_finding::RuleSource::User,
            rule_id: "r".into(),
            rule_title: "r".into(),
            level,
            tags: Vec::new().into(),
            first_ts: Some(Timestamp(ts)),
            last_ts: Some(Timestamp(ts)),
            host: None,
            entities: Vec::new(),
            sentence: String::new(),
            path: None,
            record: None,
            evidence: Vec::new(),
        }
    }

    #[test]
    fn top_findings_are_the_stable_sort_of_all() {
        let levels = [Level::Low, Level::High, Level::Critical, Level::Medium, Level::High];
        let all: Vec<Finding> = (0..200).map(|n| finding(n, levels[n * 7 % 5], (n as i64 * 37) % 11)).collect();
        let mut top = TopFindings::default();
        for f in &all {
            top.add(f);
        }
        let mut sorted: Vec<&Finding> = all.iter().filter(|f| f.level >= Level::High).collect();
        sorted.sort_by_key(|f| (std::cmp::Reverse(f.level), f.first_ts));
        let want: Vec<&str> = sorted.iter().take(TOP_FINDINGS).map(|f| f.id.as_str()).collect();
        let got: Vec<&str> = top.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(got, want);
        assert_eq!(top.total, sorted.len());
        assert_eq!(top.highest, Some(Level::Critical));
    }
}

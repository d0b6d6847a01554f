//! Reading a case for people: typed views of runs, sources, findings, incidents, mail
//! campaigns, exposure and triage annotations, for the HTML report and the web UI.
//!
//! A [`CaseReader`] opens the case read-only and refuses anything that is not a Portcullis
//! case. Stored JSON records are read into the structs here (a renamed field is an error
//! or a visible default, never a silently empty page). The one write is [`annotate`]:
//! triage verdicts are added beside the findings, never changing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis_sigma::Level;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::{APPLICATION_ID, CaseError};

/// A case opened for reading.
pub struct CaseReader {
    conn: Connection,
    path: PathBuf,
    version: i64,
}

/// One run of a command over the case.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub started: String,
    pub finished: Option<String>,
    pub status: String,
    pub command: String,
    pub version: String,
    pub rules_loaded: Option<i64>,
    pub events: Option<i64>,
    pub findings_new: Option<i64>,
    /// The hunt's summary record (hunt runs of schema 3 and later).
    pub summary: Option<RunSummary>,
}

/// The parts of a hunt's summary record that say what a run covered.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    pub files: usize,
    pub files_failed: usize,
    pub files_not_logs: Vec<String>,
    pub bytes: u64,
    pub events: u64,
    pub records_skipped: u64,
    pub events_out_of_range: u64,
    pub rules_loaded: usize,
    pub rules_applied: usize,
    pub rules_unmapped: usize,
    pub rules_failed: Vec<RuleProblemRow>,
    pub correlations_loaded: usize,
    pub iocs_loaded: usize,
    pub ioc_problem_count: usize,
    pub file_problems: Vec<FileProblemRow>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleProblemRow {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FileProblemRow {
    pub path: String,
    pub error: Option<String>,
    pub skipped: u64,
    pub notes: Vec<String>,
}

/// A log file read into the case.
#[derive(Clone, Debug, Serialize)]
pub struct SourceRow {
    pub path: String,
    pub size: i64,
    pub format: Option<String>,
    pub events: i64,
    pub skipped: i64,
    pub first_run: i64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub notes: Vec<String>,
}

/// A finding as stored.
#[derive(Clone, Debug, Serialize)]
pub struct FindingRow {
    pub id: String,
    pub kind: String,
    pub rule_id: String,
    pub rule_title: String,
    pub level: Level,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub host: Option<String>,
    pub sentence: String,
    pub path: Option<String>,
    pub record: Option<i64>,
    pub tags: Vec<String>,
    pub evidence: Vec<String>,
    pub matcher: String,
    pub log: Option<String>,
    pub rule_source: String,
    /// The matched event as JSON text (only filled by [`CaseReader::finding`]).
    pub event: Option<String>,
}

/// Which findings to list.
#[derive(Clone, Debug, Default)]
pub struct FindingQuery {
    pub min_level: Option<Level>,
    pub host: Option<String>,
    /// A rule id or exact title.
    pub rule: Option<String>,
    /// RFC 3339 bounds on the finding's first time (inclusive).
    pub from: Option<String>,
    pub to: Option<String>,
    /// Findings naming this entity (kind, value).
    pub entity: Option<(String, String)>,
    /// Findings of this incident.
    pub incident: Option<String>,
    /// Full-text search (SQLite FTS5 query over title, sentence, host, path and event).
    pub text: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// An incident as stored with its full record (assessment, ATT&CK names, stages).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IncidentView {
    pub id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub dwell_seconds: i64,
    pub severity: Option<Level>,
    pub first_evidence: String,
    pub entities: Vec<EntityCountRow>,
    pub tactics: Vec<String>,
    pub techniques: Vec<String>,
    pub stages: Vec<StageRow>,
    pub context: Vec<StageRow>,
    pub finding_count: usize,
    pub explanation: Vec<JoinRow>,
    pub attack: Vec<TechniqueRow>,
    pub assessment: Option<AssessmentRow>,
    pub attribution: Vec<String>,
}

impl IncidentView {
    /// Entity values of one kind (`host`, `account`, `source_ip`, …), most cited first.
    pub fn entities_of(&self, kind: &str) -> Vec<&str> {
        let mut v: Vec<&EntityCountRow> = self.entities.iter().filter(|e| e.kind == kind).collect();
        v.sort_by(|a, b| b.findings.cmp(&a.findings).then(a.value.cmp(&b.value)));
        v.into_iter().map(|e| e.value.as_str()).collect()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityCountRow {
    pub kind: String,
    pub value: String,
    pub findings: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StageRow {
    pub time: String,
    pub tactic: Option<String>,
    pub techniques: Vec<String>,
    pub rule_title: String,
    pub level: Option<Level>,
    pub sentence: String,
    pub finding_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinRow {
    pub finding: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TechniqueRow {
    pub id: String,
    pub name: String,
    pub tactics: Vec<String>,
}

/// A PHIA judgement as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AssessmentRow {
    pub judgement: String,
    pub likelihood: String,
    pub probability: String,
    pub confidence: String,
    pub reasoning: Vec<String>,
}

/// A mail campaign as stored by `portcullis mail --case`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignView {
    pub id: String,
    pub severity: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub messages: usize,
    pub senders: Vec<SenderRow>,
    pub domains: Vec<String>,
    pub sending_ips: Vec<String>,
    pub url_templates: Vec<String>,
    pub subjects: Vec<String>,
    pub members_targeted: usize,
    pub recipients: Vec<RecipientRow>,
    pub grades: BTreeMap<String, usize>,
    pub signals: Vec<SignalRow>,
    pub assessment: String,
    pub attack: Vec<TechniqueRow>,
    pub judgement: Option<AssessmentRow>,
    pub intel_matches: Vec<String>,
    pub attribution: Vec<String>,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SenderRow {
    pub address: String,
    pub name: Option<String>,
    pub messages: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecipientRow {
    pub address: String,
    pub member: Option<String>,
    pub grade: String,
    pub messages: usize,
    pub first_received: Option<String>,
    pub evidence: Vec<GradeEvidenceRow>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GradeEvidenceRow {
    pub time: Option<String>,
    pub kind: String,
    pub at: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SignalRow {
    pub analyser: String,
    pub kind: String,
    pub score: u8,
    pub what: String,
    pub messages: usize,
}

/// The latest `exposure` run recorded in the case.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExposureView {
    pub run_id: i64,
    pub totals: ExposureTotals,
    pub files: Vec<ExposureFileRow>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExposureTotals {
    pub unique_electors: u64,
    pub by_category: BTreeMap<String, u64>,
    pub register_files: usize,
    pub files: usize,
    pub rows: u64,
    pub on_compromised_systems: Option<ExposureScope>,
    pub evidenced_as_accessed: Option<ExposureScope>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExposureScope {
    pub unique_electors: u64,
    pub by_category: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExposureFileRow {
    pub path: String,
    #[serde(rename = "type")]
    pub file_type: String,
    pub rows: u64,
    pub register: bool,
    pub confidence: f64,
    pub categories: BTreeMap<String, u64>,
    pub on_compromised_system: bool,
    pub accessed: bool,
    pub reasons: Vec<String>,
}

/// The latest `posture` run recorded in the case: weaknesses and what the logs could not show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PostureView {
    pub run_id: i64,
    pub rows: Vec<PostureRow>,
}

/// One row of `posture_checks`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PostureRow {
    /// `weakness` or `blind` (could not see).
    pub kind: String,
    pub check: String,
    pub severity: Option<String>,
    pub subject_kind: Option<String>,
    pub subject: Option<String>,
    pub summary: String,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub evidence: Vec<PostureEvidence>,
    /// For a blind spot: the setting or log that would fix it.
    pub fix: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PostureEvidence {
    pub file: String,
    pub position: PostureEvidencePosition,
    pub time: Option<String>,
    pub what: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PostureEvidencePosition {
    pub line: Option<u64>,
    pub record: Option<u64>,
}

/// What a triage annotation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Finding,
    Incident,
    Campaign,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Finding => "finding",
            Target::Incident => "incident",
            Target::Campaign => "campaign",
        }
    }
    pub fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "finding" => Target::Finding,
            "incident" => Target::Incident,
            "campaign" => Target::Campaign,
            _ => return None,
        })
    }
}

/// A person's triage verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    Benign,
    NeedsReview,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Confirmed, Verdict::Benign, Verdict::NeedsReview];
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Benign => "benign",
            Verdict::NeedsReview => "needs_review",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Benign => "benign",
            Verdict::NeedsReview => "needs review",
        }
    }
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A triage annotation: who said what about which finding, incident or campaign, when.
#[derive(Clone, Debug, Serialize)]
pub struct Annotation {
    pub id: i64,
    pub target: Target,
    pub target_id: String,
    pub verdict: Verdict,
    pub note: String,
    pub author: String,
    pub created: String,
}

/// Counts for a case's front page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub findings: u64,
    /// Findings per level, informational first.
    pub by_level: [u64; 5],
    pub incidents: u64,
    pub sources: u64,
    pub events: u64,
    pub campaigns: u64,
    pub annotations: u64,
}

/// Lists count matches exactly up to this many.
pub const COUNT_CAP: u64 = 10_000;

const FINDING_COLUMNS: &str = "f.id, f.kind, f.rule_id, f.rule_title, f.level, f.first_ts, f.last_ts, f.host, f.sentence, f.path, f.record, f.tags, f.evidence, f.matcher, f.log, f.rule_source";

fn finding_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FindingRow> {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(FindingRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        rule_id: r.get(2)?,
        rule_title: r.get(3)?,
        level: Level::parse(&r.get::<_, String>(4)?).unwrap_or(Level::Informational),
        first_ts: r.get(5)?,
        last_ts: r.get(6)?,
        host: r.get(7)?,
        sentence: r.get(8)?,
        path: r.get(9)?,
        record: r.get(10)?,
        tags: list(r.get(11)?),
        evidence: list(r.get(12)?),
        matcher: r.get(13)?,
        log: r.get(14)?,
        rule_source: r.get(15)?,
        event: None,
    })
}

impl CaseReader {
    /// Opens a case read-only; anything that is not a Portcullis case (or one written by a
    /// newer Portcullis) is refused, naming the path.
    pub fn open(path: &Path) -> Result<CaseReader, CaseError> {
        let err = |e: &dyn std::fmt::Display| CaseError(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| err(&e))?;
        if !meta.is_file() {
            return Err(err(&"not a regular file, so not a case file"));
        }
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| err(&e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| err(&e))?;
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|_| err(&"not a SQLite database, so not a Portcullis case file"))?;
        if app != APPLICATION_ID && app != 0 {
            return Err(err(&format!("a SQLite database of another application (application_id {app:#x}), not a Portcullis case file")));
        }
        let version = crate::stored_version(&conn, path)?;
        Ok(CaseReader { conn, path: path.to_path_buf(), version })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the case was written with (older cases show less: no coverage
    /// periods, no assessments, no search before version 3).
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    fn has_table(&self, name: &str) -> bool {
        self.conn.query_row("SELECT 1 FROM sqlite_master WHERE name = ?1", [name], |_| Ok(())).optional().ok().flatten().is_some()
    }

    pub fn counts(&self) -> Result<Counts, CaseError> {
        let mut c = Counts::default();
        let mut st = self.conn.prepare("SELECT level_rank, COUNT(*) FROM findings GROUP BY level_rank")?;
        for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
            let (rank, n) = row?;
            c.by_level[rank.clamp(0, 4) as usize] += n as u64;
            c.findings += n as u64;
        }
        let one =
            |sql: &str| -> Result<u64, CaseError> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?.unwrap_or(0) as u64) };
        c.incidents = one("SELECT COUNT(*) FROM incidents")?;
        c.sources = one("SELECT COUNT(*) FROM sources")?;
        c.events = one("SELECT SUM(events) FROM sources")?;
        if self.has_table("mail_campaigns") {
            c.campaigns = one("SELECT COUNT(*) FROM mail_campaigns")?;
        }
        if self.has_table("annotations") {
            c.annotations = one("SELECT COUNT(*) FROM annotations")?;
        }
        Ok(c)
    }

    pub fn runs(&self) -> Result<Vec<RunRow>, CaseError> {
        let summary_col = if self.version >= 3 { "summary" } else { "NULL" };
        let mut st = self.conn.prepare(&format!(
            "SELECT id, started, finished, status, command, version, rules_loaded, events, findings_new, {summary_col} FROM runs ORDER BY id"
        ))?;
        let rows = st.query_map([], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                started: r.get(1)?,
                finished: r.get(2)?,
                status: r.get(3)?,
                command: r.get(4)?,
                version: r.get(5)?,
                rules_loaded: r.get(6)?,
                events: r.get(7)?,
                findings_new: r.get(8)?,
                summary: r.get::<_, Option<String>>(9)?.and_then(|s| serde_json::from_str(&s).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn sources(&self) -> Result<Vec<SourceRow>, CaseError> {
        let extra = if self.version >= 3 { "first_ts, last_ts, notes" } else { "NULL, NULL, '[]'" };
        let mut st =
            self.conn.prepare(&format!("SELECT path, size, format, events, skipped, first_run, {extra} FROM sources ORDER BY path"))?;
        let rows = st.query_map([], |r| {
            Ok(SourceRow {
                path: r.get(0)?,
                size: r.get(1)?,
                format: r.get(2)?,
                events: r.get(3)?,
                skipped: r.get(4)?,
                first_run: r.get(5)?,
                first_ts: r.get(6)?,
                last_ts: r.get(7)?,
                notes: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Findings matching `q` (every given condition must hold), in time order. Returns the
    /// page asked for and how many matched, counted up to [`COUNT_CAP`] + 1 (more than the
    /// cap is reported as `COUNT_CAP + 1`).
    pub fn findings(&self, q: &FindingQuery) -> Result<(Vec<FindingRow>, u64), CaseError> {
        let mut joins = String::new();
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(l) = q.min_level {
            conds.push(format!("f.level_rank >= {}", l as i64));
        }
        // Entities (a host filter, a pivot) go through the entities index. A rare entity is
        // a small set to look findings up in; a common one (most of a million findings) is
        // cheaper the other way round: walk findings in time order and check each, which
        // stops at the first page.
        let mut entity_conds: Vec<(String, String)> = Vec::new();
        if let Some(h) = &q.host {
            // `exch01` finds `EXCH01` and `EXCH01.ec.local`, as the host entities are named.
            let label = portcullis_event::entity::normalise(portcullis_event::entity::EntityKind::Host, h)
                .unwrap_or_else(|| h.trim().to_lowercase());
            entity_conds.push(("host".into(), label));
        }
        if let Some((kind, value)) = &q.entity {
            entity_conds.push((kind.clone(), value.to_lowercase()));
        }
        for (kind, value) in entity_conds {
            let common = self.entity_count(&kind, &value, COUNT_CAP)? > COUNT_CAP;
            args.push(kind);
            args.push(value);
            let (k, v) = (args.len() - 1, args.len());
            conds.push(if common {
                format!("EXISTS (SELECT 1 FROM entities e WHERE e.finding_id = f.id AND e.kind = ?{k} AND e.value = ?{v})")
            } else {
                format!("f.id IN (SELECT finding_id FROM entities WHERE kind = ?{k} AND value = ?{v})")
            });
        }
        if let Some(rule) = &q.rule {
            args.push(rule.clone());
            conds.push(format!("(f.rule_id = ?{0} OR f.rule_title = ?{0})", args.len()));
        }
        if let Some(from) = &q.from {
            args.push(from.clone());
            conds.push(format!("f.first_ts >= ?{}", args.len()));
        }
        if let Some(to) = &q.to {
            args.push(to.clone());
            conds.push(format!("f.first_ts <= ?{}", args.len()));
        }
        if let Some(inc) = &q.incident {
            args.push(inc.clone());
            joins.push_str(&format!(" JOIN incident_findings l ON l.finding_id = f.id AND l.incident_id = ?{}", args.len()));
        }
        if let Some(text) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            if !self.has_table("findings_fts") {
                return Err(CaseError(format!("{}: this case has no search index (hunt into it again to add one)", self.path.display())));
            }
            args.push(fts_query(text));
            conds.push(format!("f.id IN (SELECT id FROM findings_fts WHERE findings_fts MATCH ?{})", args.len()));
        }
        let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        // Counting is capped: on a million findings an exact count of a broad filter costs
        // more than the page itself, and "more than 10,000" is what a person needs to know.
        let total: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM (SELECT 1 FROM findings f{joins}{filter} LIMIT {})", COUNT_CAP + 1),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let limit = if q.limit == 0 { 100 } else { q.limit };
        // In time order on the (first_ts, id) index; findings without a time come first.
        let sql =
            format!("SELECT {FINDING_COLUMNS} FROM findings f{joins}{filter} ORDER BY f.first_ts, f.id LIMIT {limit} OFFSET {}", q.offset);
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(args.iter()), finding_row)?;
        Ok((rows.collect::<Result<_, _>>()?, total as u64))
    }

    /// How many findings name an entity, counted up to `cap` + 1.
    fn entity_count(&self, kind: &str, value: &str, cap: u64) -> Result<u64, CaseError> {
        Ok(self.conn.query_row(
            &format!("SELECT COUNT(*) FROM (SELECT 1 FROM entities WHERE kind = ?1 AND value = ?2 LIMIT {})", cap + 1),
            params![kind, value],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// One finding with its event, if it exists.
    pub fn finding(&self, id: &str) -> Result<Option<FindingRow>, CaseError> {
        let mut st = self.conn.prepare(&format!("SELECT {FINDING_COLUMNS}, f.event FROM findings f WHERE f.id = ?1"))?;
        Ok(st
            .query_row([id], |r| {
                let mut f = finding_row(r)?;
                f.event = r.get(16)?;
                Ok(f)
            })
            .optional()?)
    }

    /// The entities a finding names, (kind, value).
    pub fn finding_entities(&self, id: &str) -> Result<Vec<(String, String)>, CaseError> {
        let mut st = self.conn.prepare("SELECT kind, value FROM entities WHERE finding_id = ?1 ORDER BY kind, value")?;
        let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The incidents a finding belongs to.
    pub fn finding_incidents(&self, id: &str) -> Result<Vec<String>, CaseError> {
        let mut st = self.conn.prepare("SELECT incident_id FROM incident_findings WHERE finding_id = ?1 ORDER BY incident_id")?;
        let rows = st.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every incident, most severe first, then earliest.
    pub fn incidents(&self) -> Result<Vec<IncidentView>, CaseError> {
        let record = if self.version >= 3 { "record" } else { "NULL" };
        let mut st = self.conn.prepare(&format!(
            "SELECT id, first_seen, last_seen, dwell_seconds, severity, first_evidence, tactics, techniques, entities, stages, explanation, finding_count, {record}
             FROM incidents ORDER BY first_seen, id"
        ))?;
        let rows = st.query_map([], |r| {
            if let Some(rec) = r.get::<_, Option<String>>(12)?
                && let Ok(v) = serde_json::from_str::<IncidentView>(&rec)
            {
                return Ok(v);
            }
            // A case written before incidents kept their whole record: the columns alone.
            let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
            Ok(IncidentView {
                id: r.get(0)?,
                first_seen: r.get(1)?,
                last_seen: r.get(2)?,
                dwell_seconds: r.get(3)?,
                severity: Level::parse(&r.get::<_, String>(4)?),
                first_evidence: r.get(5)?,
                tactics: serde_json::from_str(&json(6)?).unwrap_or_default(),
                techniques: serde_json::from_str(&json(7)?).unwrap_or_default(),
                entities: serde_json::from_str(&json(8)?).unwrap_or_default(),
                stages: serde_json::from_str(&json(9)?).unwrap_or_default(),
                explanation: serde_json::from_str(&json(10)?).unwrap_or_default(),
                finding_count: r.get::<_, i64>(11)? as usize,
                ..Default::default()
            })
        })?;
        let mut v: Vec<IncidentView> = rows.collect::<Result<_, _>>()?;
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.first_seen.cmp(&b.first_seen)).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    pub fn incident(&self, id: &str) -> Result<Option<IncidentView>, CaseError> {
        Ok(self.incidents()?.into_iter().find(|i| i.id == id))
    }

    /// Mail campaigns, most severe first.
    pub fn campaigns(&self) -> Result<Vec<CampaignView>, CaseError> {
        if !self.has_table("mail_campaigns") {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare("SELECT id, record FROM mail_campaigns ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, record) = row?;
            let c: CampaignView = serde_json::from_str(&record)
                .map_err(|e| CaseError(format!("{}: campaign {id}: stored record unreadable ({e})", self.path.display())))?;
            out.push(c);
        }
        let rank = |s: &str| match s {
            "high" => 0,
            "medium" => 1,
            "low" => 2,
            _ => 3,
        };
        out.sort_by(|a, b| rank(&a.severity).cmp(&rank(&b.severity)).then(a.first_seen.cmp(&b.first_seen)).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The latest exposure run, if any.
    pub fn exposure(&self) -> Result<Option<ExposureView>, CaseError> {
        if !self.has_table("exposure_totals") {
            return Ok(None);
        }
        let Some((run_id, record)) = self
            .conn
            .query_row("SELECT run_id, record FROM exposure_totals ORDER BY run_id DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?
        else {
            return Ok(None);
        };
        let totals: ExposureTotals = serde_json::from_str(&record)
            .map_err(|e| CaseError(format!("{}: exposure run {run_id}: stored totals unreadable ({e})", self.path.display())))?;
        let mut st = self.conn.prepare("SELECT record FROM exposure_files WHERE run_id = ?1 ORDER BY register DESC, rows DESC, path")?;
        let rows = st.query_map([run_id], |r| r.get::<_, String>(0))?;
        let mut files = Vec::new();
        for row in rows {
            if let Ok(f) = serde_json::from_str::<ExposureFileRow>(&row?) {
                files.push(f);
            }
        }
        Ok(Some(ExposureView { run_id, totals, files }))
    }

    /// The latest posture run, if any: weaknesses most severe first, then blind spots.
    pub fn posture(&self) -> Result<Option<PostureView>, CaseError> {
        if !self.has_table("posture_checks") {
            return Ok(None);
        }
        let Some(run_id) = self.conn.query_row("SELECT MAX(run_id) FROM posture_checks", [], |r| r.get::<_, Option<i64>>(0))? else {
            return Ok(None);
        };
        let mut st = self.conn.prepare(
            "SELECT kind, check_name, severity, subject_kind, subject, summary, first_ts, last_ts, evidence, fix FROM posture_checks
             WHERE run_id = ?1 ORDER BY kind DESC, coalesce(level_rank, -1) DESC, check_name, subject, id",
        )?;
        let rows = st.query_map([run_id], |r| {
            Ok(PostureRow {
                kind: r.get(0)?,
                check: r.get(1)?,
                severity: r.get(2)?,
                subject_kind: r.get(3)?,
                subject: r.get(4)?,
                summary: r.get(5)?,
                first_ts: r.get(6)?,
                last_ts: r.get(7)?,
                evidence: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
                fix: r.get(9)?,
            })
        })?;
        Ok(Some(PostureView { run_id, rows: rows.collect::<Result<_, _>>()? }))
    }

    /// Annotations, newest first; of one target if given.
    pub fn annotations(&self, target: Option<(Target, &str)>) -> Result<Vec<Annotation>, CaseError> {
        if !self.has_table("annotations") {
            return Ok(Vec::new());
        }
        let (filter, args): (&str, Vec<String>) = match target {
            Some((t, id)) => ("WHERE target_kind = ?1 AND target_id = ?2", vec![t.as_str().into(), id.into()]),
            None => ("", vec![]),
        };
        let mut st = self.conn.prepare(&format!(
            "SELECT id, target_kind, target_id, verdict, note, author, created FROM annotations {filter} ORDER BY id DESC"
        ))?;
        let rows = st.query_map(params_from_iter(args.iter()), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get::<_, String>(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, t, target_id, v, note, author, created) = row?;
            let (Some(target), Some(verdict)) = (Target::parse(&t), Verdict::parse(&v)) else { continue };
            out.push(Annotation { id, target, target_id, verdict, note, author, created });
        }
        Ok(out)
    }

    /// The latest verdict per target of one kind.
    pub fn latest_verdicts(&self, target: Target) -> Result<BTreeMap<String, Verdict>, CaseError> {
        let mut out = BTreeMap::new();
        for a in self.annotations(None)?.into_iter().rev() {
            if a.target == target {
                out.insert(a.target_id, a.verdict);
            }
        }
        Ok(out)
    }

    /// The most cited entities of a kind, (value, findings).
    pub fn top_entities(&self, kind: &str, limit: usize) -> Result<Vec<(String, u64)>, CaseError> {
        let mut st =
            self.conn.prepare("SELECT value, COUNT(*) c FROM entities WHERE kind = ?1 GROUP BY value ORDER BY c DESC, value LIMIT ?2")?;
        let rows = st.query_map(params![kind, limit as i64], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Turns what a person typed into an FTS5 query that cannot be a syntax error: each word
/// becomes a quoted phrase (quotes doubled), all of them required.
fn fts_query(text: &str) -> String {
    text.split_whitespace().take(32).map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" ")
}

/// Adds a triage annotation to the case (the case must be writable and a Portcullis case).
/// The findings themselves are never changed.
pub fn annotate(path: &Path, target: Target, target_id: &str, verdict: Verdict, note: &str, author: &str) -> Result<i64, CaseError> {
    let err = |e: &dyn std::fmt::Display| CaseError(format!("{}: {e}", path.display()));
    if !crate::check_file(path)? {
        return Err(err(&"no case file here"));
    }
    // Opened as the writer opens it, so an older case is migrated (and gains the table) first.
    let conn = crate::open_writable(path)?;
    let note: String = note.chars().take(4000).collect();
    let author: String = author.chars().take(200).collect();
    conn.execute(
        "INSERT INTO annotations (target_kind, target_id, verdict, note, author, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![target.as_str(), target_id, verdict.as_str(), note, author, crate::now()],
    )
    .map_err(|e| err(&e))?;
    Ok(conn.last_insert_rowid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_always_a_valid_query() {
        assert_eq!(fts_query(r#"cmd "/c" OR NEAR("#), r#""cmd" """/c""" "OR" "NEAR(""#);
    }
}

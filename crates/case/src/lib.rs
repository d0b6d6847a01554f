//! The case file: one SQLite database (WAL) an analyst can open with any tool.
//!
//! Findings are keyed by their stable id, so hunting the same data into the same
//! case twice adds nothing; incidents are rebuilt from every finding in the case
//! after each run, so new data extends them. Each run's writes are one transaction:
//! a run killed half-way leaves the case as it was (its `runs` row says `running`).
//! The schema is documented in `docs/case-schema.md`.

use std::path::Path;

use portcullis_event::Timestamp;
use portcullis_finding::{Entity, EntityKind, Finding, FindingKind, Matcher, RuleSource};
use portcullis_incident::{Incident, IncidentOptions};
use portcullis_sigma::Level;
use rusqlite::{Connection, OptionalExtension, params};

/// The case schema this Portcullis writes; older cases are migrated when opened.
pub const SCHEMA_VERSION: i64 = 4;

pub mod export;
pub mod read;

/// SQLite `application_id` of a Portcullis case file (`PCUL`), so no other database is
/// taken for a case and written into.
pub const APPLICATION_ID: i32 = 0x5043_554C;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS live_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS live_inputs (
    correlation TEXT NOT NULL,
    pos INTEGER NOT NULL,
    grp TEXT NOT NULL,
    evidence TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value TEXT NOT NULL,
    entities TEXT NOT NULL,
    PRIMARY KEY (correlation, pos, grp, evidence)
);
CREATE INDEX IF NOT EXISTS live_inputs_ts ON live_inputs(ts);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    command TEXT NOT NULL,
    version TEXT NOT NULL,
    rules_loaded INTEGER,
    events INTEGER,
    findings_new INTEGER,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT NOT NULL,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    format TEXT,
    events INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    first_run INTEGER NOT NULL REFERENCES runs(id),
    first_ts TEXT,
    last_ts TEXT,
    notes TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (path, hash)
);
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    rule_title TEXT NOT NULL,
    level TEXT NOT NULL,
    level_rank INTEGER NOT NULL,
    first_ts TEXT,
    last_ts TEXT,
    host TEXT,
    sentence TEXT NOT NULL,
    path TEXT,
    record INTEGER,
    tags TEXT NOT NULL,
    evidence TEXT NOT NULL,
    event TEXT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    matcher TEXT NOT NULL DEFAULT 'rule',
    log TEXT,
    rule_source TEXT NOT NULL DEFAULT 'user'
);
CREATE INDEX IF NOT EXISTS findings_time ON findings(first_ts);
CREATE INDEX IF NOT EXISTS findings_time_id ON findings(first_ts, id);
CREATE INDEX IF NOT EXISTS findings_level ON findings(level_rank, first_ts);
CREATE TABLE IF NOT EXISTS entities (
    finding_id TEXT NOT NULL REFERENCES findings(id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (finding_id, kind, value)
);
CREATE INDEX IF NOT EXISTS entities_value ON entities(kind, value);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    dwell_seconds INTEGER NOT NULL,
    severity TEXT NOT NULL,
    first_evidence TEXT NOT NULL,
    tactics TEXT NOT NULL,
    techniques TEXT NOT NULL,
    entities TEXT NOT NULL,
    stages TEXT NOT NULL,
    explanation TEXT NOT NULL,
    finding_count INTEGER NOT NULL,
    record TEXT
);
CREATE TABLE IF NOT EXISTS incident_findings (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    finding_id TEXT NOT NULL REFERENCES findings(id),
    PRIMARY KEY (incident_id, finding_id)
);
CREATE TABLE IF NOT EXISTS exposure_files (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    path TEXT NOT NULL,
    type TEXT NOT NULL,
    rows INTEGER NOT NULL,
    register INTEGER NOT NULL,
    confidence REAL NOT NULL,
    on_compromised_system INTEGER NOT NULL,
    accessed INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE IF NOT EXISTS exposure_totals (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    unique_electors INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mail_campaigns (
    id TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    severity TEXT NOT NULL,
    first_seen TEXT,
    last_seen TEXT,
    messages INTEGER NOT NULL,
    members_targeted INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mail_recipients (
    campaign_id TEXT NOT NULL REFERENCES mail_campaigns(id),
    address TEXT NOT NULL,
    member TEXT,
    grade TEXT NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (campaign_id, address)
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    verdict TEXT NOT NULL,
    note TEXT NOT NULL,
    author TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_target ON annotations(target_kind, target_id);
CREATE VIRTUAL TABLE IF NOT EXISTS findings_fts USING fts5(id UNINDEXED, text, tokenize = 'unicode61');
CREATE TABLE IF NOT EXISTS posture_checks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    check_name TEXT NOT NULL,
    severity TEXT,
    level_rank INTEGER,
    subject_kind TEXT,
    subject TEXT,
    summary TEXT NOT NULL,
    first_ts TEXT,
    last_ts TEXT,
    evidence TEXT NOT NULL,
    fix TEXT,
    detail TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
);
CREATE INDEX IF NOT EXISTS posture_checks_check ON posture_checks(check_name, level_rank);
CREATE TABLE IF NOT EXISTS iocs (
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, type, value)
);
";

/// An indicator match recorded in a case (a finding of an `ioc-` rule).
#[derive(Clone, Debug)]
pub struct IocFinding {
    pub finding_id: String,
    pub kind: String,
    pub value: String,
    pub context: String,
    pub source: String,
    pub time: Option<String>,
    pub incidents: Vec<String>,
}

/// What `portcullis export` reads from a case.
#[derive(Clone, Debug, Default)]
pub struct ExportRows {
    pub ioc_findings: Vec<IocFinding>,
    /// (source, type, value) from the `iocs` table.
    pub iocs: Vec<(String, String, String)>,
    pub incidents: Vec<IncidentRow>,
    pub campaigns: Vec<CampaignRow>,
}

/// An incident as a case stores it.
#[derive(Clone, Debug)]
pub struct IncidentRow {
    pub id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub severity: String,
    pub dwell_seconds: i64,
    pub techniques: Vec<String>,
    pub tactics: Vec<String>,
    pub finding_count: i64,
}

/// A mail campaign as a case stores it: its columns and the parts of its record an export
/// needs (read strictly: a record without them is an error, not an empty description).
#[derive(Clone, Debug)]
pub struct CampaignRow {
    pub id: String,
    pub severity: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub messages: i64,
    pub members_targeted: i64,
    pub record: StoredCampaign,
}

/// The fields of a stored `campaign` record that `export` uses.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct StoredCampaign {
    pub domains: Vec<String>,
    pub senders: Vec<serde::de::IgnoredAny>,
    pub recipients: Vec<serde::de::IgnoredAny>,
    pub assessment: String,
}

/// Reads what an export needs, opening the case read-only.
pub fn export_rows(path: &Path) -> Result<ExportRows, CaseError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut out = ExportRows::default();
    let mut membership: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    {
        let mut st = conn.prepare("SELECT incident_id, finding_id FROM incident_findings")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (i, f) = row?;
            membership.entry(f).or_default().push(i);
        }
    }
    {
        // A schema-1 case (opened read-only, so not migrated) marks indicator rules by id.
        let indicator =
            if conn.prepare("SELECT matcher FROM findings LIMIT 0").is_ok() { "matcher = 'indicator'" } else { "rule_id LIKE 'ioc-%'" };
        let mut st = conn.prepare(&format!("SELECT id, first_ts, event FROM findings WHERE {indicator} ORDER BY first_ts, id"))?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?)))?;
        for row in rows {
            let (id, time, event) = row?;
            let ev: serde_json::Value = event.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default();
            let get = |k: &str| ev.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            if get("ioc.value").is_empty() {
                continue;
            }
            out.ioc_findings.push(IocFinding {
                incidents: membership.get(&id).cloned().unwrap_or_default(),
                finding_id: id,
                kind: get("ioc.type"),
                value: get("ioc.value"),
                context: get("ioc.context"),
                source: get("ioc.source"),
                time,
            });
        }
    }
    // Tables added after the first release may be missing from an old case opened read-only.
    if let Ok(mut st) = conn.prepare("SELECT source, type, value FROM iocs ORDER BY source, type, value") {
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            out.iocs.push(row?);
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT id, first_seen, last_seen, severity, dwell_seconds, techniques, tactics, finding_count FROM incidents ORDER BY first_seen, id",
        )?;
        let rows = st.query_map([], |r| {
            let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
            Ok(IncidentRow {
                id: r.get(0)?,
                first_seen: r.get(1)?,
                last_seen: r.get(2)?,
                severity: r.get(3)?,
                dwell_seconds: r.get(4)?,
                techniques: list(r.get(5)?),
                tactics: list(r.get(6)?),
                finding_count: r.get(7)?,
            })
        })?;
        for row in rows {
            out.incidents.push(row?);
        }
    }
    if let Ok(mut st) =
        conn.prepare("SELECT id, severity, first_seen, last_seen, messages, members_targeted, record FROM mail_campaigns ORDER BY id")
    {
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get::<_, String>(6)?))
        })?;
        for row in rows {
            let (id, severity, first_seen, last_seen, messages, members_targeted, record) = row?;
            let record: StoredCampaign = serde_json::from_str(&record)
                .map_err(|e| CaseError(format!("{}: campaign {id}: stored record unreadable ({e})", path.display())))?;
            out.campaigns.push(CampaignRow { id, severity, first_seen, last_seen, messages, members_targeted, record });
        }
    }
    Ok(out)
}

/// Whether `path` is an existing case file; an error when it exists but is not one this
/// Portcullis may write: not a regular file, not SQLite, another application's database
/// (by `application_id`), or not writable. Reads only the 100-byte SQLite header.
pub fn check_file(path: &Path) -> Result<bool, CaseError> {
    use std::io::Read;
    let err = |e: &dyn std::fmt::Display| CaseError(format!("{}: {e}", path.display()));
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(err(&e)),
    };
    if !meta.is_file() {
        return Err(err(&"not a regular file, so not a case file"));
    }
    if meta.permissions().readonly() {
        return Err(err(&"the case file is read-only; a hunt would lose its results"));
    }
    if meta.len() == 0 {
        return Ok(false);
    }
    let mut header = [0u8; 100];
    let mut f = std::fs::File::open(path).map_err(|e| err(&e))?;
    let n = f.read(&mut header).map_err(|e| err(&e))?;
    if n < 100 || &header[..16] != b"SQLite format 3\0" {
        return Err(err(&"not a SQLite database, so not a Portcullis case file"));
    }
    let app = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    // 0: a case written before the application id existed (schema 1), checked by its `meta`.
    if app != APPLICATION_ID && app != 0 {
        return Err(err(&format!("a SQLite database of another application (application_id {app:#x}), not a Portcullis case file")));
    }
    std::fs::OpenOptions::new().append(true).open(path).map_err(|e| err(&format!("cannot be written ({e})")))?;
    Ok(true)
}

/// What full-text search sees of a finding (SQL over the `findings` columns).
const FTS_TEXT: &str =
    "rule_title || ' ' || sentence || ' ' || coalesce(host, '') || ' ' || coalesce(path, '') || ' ' || coalesce(event, '')";

/// Adds a column unless the table has it already.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<(), rusqlite::Error> {
    let exists: bool = conn
        .query_row(&format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"), [column], |r| r.get::<_, i64>(0))?
        > 0;
    if !exists {
        conn.execute(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"), [])?;
    }
    Ok(())
}

/// Brings a case up to [`SCHEMA_VERSION`] and stamps the application id.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let version: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional()?;
    let version = version.and_then(|v| v.parse::<i64>().ok()).unwrap_or(SCHEMA_VERSION);
    if version < 2 {
        // 1 → 2: findings say whether a rule or an indicator matched, and from which log.
        add_column(conn, "findings", "matcher", "TEXT NOT NULL DEFAULT 'rule'")?;
        add_column(conn, "findings", "log", "TEXT")?;
        add_column(conn, "findings", "rule_source", "TEXT NOT NULL DEFAULT 'user'")?;
        conn.execute_batch(
            "UPDATE findings SET matcher = 'indicator' WHERE rule_id LIKE 'ioc-%';
             UPDATE findings SET rule_source = 'builtin' WHERE rule_id LIKE 'ioc-%';",
        )?;
    }
    if version < 3 {
        // 2 → 3: the period each source covers and its skip notes, the run's summary, the
        // incidents' whole records, triage annotations (created by SCHEMA) and full-text
        // search over the findings already there.
        add_column(conn, "sources", "first_ts", "TEXT")?;
        add_column(conn, "sources", "last_ts", "TEXT")?;
        add_column(conn, "sources", "notes", "TEXT NOT NULL DEFAULT '[]'")?;
        add_column(conn, "runs", "summary", "TEXT")?;
        add_column(conn, "incidents", "record", "TEXT")?;
        conn.execute("DELETE FROM findings_fts", [])?;
        conn.execute(&format!("INSERT INTO findings_fts (id, text) SELECT id, {FTS_TEXT} FROM findings"), [])?;
        // 2 → 3: `posture_checks` (weaknesses and what the logs could not show). The table
        // and its index are new, so `SCHEMA`'s `CREATE … IF NOT EXISTS` has made them;
        // nothing existing changes.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS posture_checks (run_id INTEGER NOT NULL REFERENCES runs(id), id TEXT NOT NULL, kind TEXT NOT NULL,
                check_name TEXT NOT NULL, severity TEXT, level_rank INTEGER, subject_kind TEXT, subject TEXT, summary TEXT NOT NULL,
                first_ts TEXT, last_ts TEXT, evidence TEXT NOT NULL, fix TEXT, detail TEXT NOT NULL, PRIMARY KEY (run_id, id));
             CREATE INDEX IF NOT EXISTS posture_checks_check ON posture_checks(check_name, level_rank);",
        )?;
    }
    // 3 → 4: `live_state` and `live_inputs` (what `watch` resumes from) are new tables,
    // made by `SCHEMA`'s `CREATE … IF NOT EXISTS`; nothing existing changes.
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    Ok(())
}

/// The schema version recorded in a case; an error naming `path` for a database without
/// one (not a case) or one written by a newer Portcullis.
fn stored_version(conn: &Connection, path: &Path) -> Result<i64, CaseError> {
    let err = |e: &dyn std::fmt::Display| CaseError(format!("{}: {e}", path.display()));
    let version: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .optional()
        .map_err(|e| err(&format!("not a Portcullis case file ({e})")))?;
    match version.as_deref().and_then(|v| v.parse::<i64>().ok()) {
        Some(v) if v > SCHEMA_VERSION => Err(err(&format!(
            "case schema version {v} was written by a newer Portcullis; this one reads and writes up to version {SCHEMA_VERSION}"
        ))),
        Some(v) if v >= 1 => Ok(v),
        _ => Err(err(&"not a Portcullis case file (no schema version)")),
    }
}

/// Opens (or creates) a case for writing: anything that is not a Portcullis case this
/// version can write is refused before anything is written; the tables, the migration of
/// an older case and the schema version are made in one transaction.
fn open_writable(path: &Path) -> Result<Connection, CaseError> {
    let err = |e: &dyn std::fmt::Display| CaseError(format!("{}: {e}", path.display()));
    let existing = check_file(path)?;
    let conn = Connection::open(path).map_err(|e| err(&e))?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| err(&e))?;
    // A SQLite file with no table at all (a run killed while creating the case) holds
    // nothing to protect: it is made into a case like a new file.
    let empty = existing && conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).map_err(|e| err(&e))? == 0;
    if existing && !empty {
        stored_version(&conn, path)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| err(&e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Finding ids are hashes, so a run's inserts land all over the id and entity indexes:
    // with SQLite's 2 MiB page cache, recording 200,000 findings spent a third of its time
    // reading and spilling pages. 64 MiB at most (negative: KiB).
    conn.pragma_update(None, "cache_size", -65536)?;
    // Tables, migration and the schema version in one transaction: a run killed while
    // creating a case leaves no half-made case behind (an uncommitted transaction is
    // rolled back when the file is next opened).
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| err(&e))?;
    conn.execute_batch(SCHEMA).map_err(|e| err(&e))?;
    migrate(&conn).map_err(|e| err(&e))?;
    conn.execute_batch("COMMIT").map_err(|e| err(&e))?;
    Ok(conn)
}

/// What recording a source does when the case already has it (same path and hash).
enum SourceConflict {
    /// Keep what is there (`hunt`: the same file read again adds nothing).
    Keep,
    /// Add this step's counts and widen its period (`watch`: a followed file read on).
    Accumulate,
}

fn insert_source(
    tx: &rusqlite::Transaction<'_>,
    s: &SourceRecord<'_>,
    hash: &str,
    run_id: i64,
    conflict: SourceConflict,
) -> Result<(), rusqlite::Error> {
    let on_conflict = match conflict {
        SourceConflict::Keep => "ON CONFLICT (path, hash) DO NOTHING",
        SourceConflict::Accumulate => {
            "ON CONFLICT (path, hash) DO UPDATE SET size = excluded.size, events = events + excluded.events,
                skipped = skipped + excluded.skipped,
                first_ts = min(coalesce(first_ts, excluded.first_ts), coalesce(excluded.first_ts, first_ts)),
                last_ts = max(coalesce(last_ts, excluded.last_ts), coalesce(excluded.last_ts, last_ts)),
                notes = CASE WHEN notes = '[]' THEN excluded.notes ELSE notes END"
        }
    };
    tx.execute(
        &format!(
            "INSERT INTO sources (path, hash, size, format, events, skipped, first_run, first_ts, last_ts, notes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) {on_conflict}"
        ),
        params![
            s.path.display().to_string(),
            hash,
            s.size as i64,
            s.format,
            s.events as i64,
            s.skipped as i64,
            run_id,
            s.time_span.map(|t| t.0.to_string()),
            s.time_span.map(|t| t.1.to_string()),
            serde_json::to_string(&s.notes).unwrap_or_default(),
        ],
    )?;
    Ok(())
}

/// Inserts the findings (each with its event as JSON, for detections) not already in the
/// case, calling `on_new` with each that was new.
fn insert_findings<'f>(
    tx: &rusqlite::Transaction<'_>,
    findings: impl IntoIterator<Item = (&'f Finding, Option<&'f str>)>,
    run_id: i64,
    mut on_new: impl FnMut(&Finding),
) -> Result<(), rusqlite::Error> {
    let mut ins = tx.prepare_cached(
        "INSERT OR IGNORE INTO findings (id, kind, rule_id, rule_title, level, level_rank, first_ts, last_ts, host, sentence, path, record, tags, evidence, event, run_id, matcher, log, rule_source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?;
    let mut ent = tx.prepare_cached("INSERT OR IGNORE INTO entities (finding_id, kind, value) VALUES (?1, ?2, ?3)")?;
    // New rows get rowids past the largest before them: their search text is added in one
    // statement after the loop. One statement per finding made FTS5 flush its pending
    // index at every statement's savepoint: 31% of recording a million findings.
    let last_before: i64 = tx.query_row("SELECT COALESCE(MAX(rowid), 0) FROM findings", [], |r| r.get(0))?;
    let mut any_new = false;
    // SQLite picks a lower rowid only when the largest is i64::MAX (a crafted case file):
    // those rows get their search text one at a time.
    let mut below = Vec::new();
    for (f, event_json) in findings {
        let added = ins.execute(params![
            f.id,
            match f.kind {
                FindingKind::Detection => "detection",
                FindingKind::Correlation => "correlation",
            },
            f.rule_id,
            f.rule_title,
            f.level.as_str(),
            f.level as i64,
            f.first_ts.map(|t| t.to_string()),
            f.last_ts.map(|t| t.to_string()),
            f.host,
            f.sentence,
            f.path,
            f.record.map(|r| r as i64),
            serde_json::to_string(&f.tags).unwrap_or_default(),
            serde_json::to_string(&f.evidence).unwrap_or_default(),
            event_json,
            run_id,
            f.matcher.as_str(),
            f.log,
            f.rule_source.as_str(),
        ])?;
        if added > 0 {
            on_new(f);
            any_new = true;
            if tx.last_insert_rowid() <= last_before {
                below.push(f.id.clone());
            }
            for e in &f.entities {
                ent.execute(params![f.id, e.kind.as_str(), e.value])?;
            }
        }
    }
    if any_new {
        tx.execute(&format!("INSERT INTO findings_fts (id, text) SELECT id, {FTS_TEXT} FROM findings WHERE rowid > ?1"), [last_before])?;
    }
    for id in below {
        tx.execute(&format!("INSERT INTO findings_fts (id, text) SELECT id, {FTS_TEXT} FROM findings WHERE id = ?1"), [id])?;
    }
    Ok(())
}

/// A run being recorded ([`Case::begin_run`]), in one transaction.
pub struct RunRecorder<'c> {
    tx: rusqlite::Transaction<'c>,
    run_id: i64,
    new: usize,
}

impl RunRecorder<'_> {
    /// Adds findings, each with its event as JSON for a detection; those already in the
    /// case are left as they are.
    pub fn add_findings<'f>(&mut self, findings: impl IntoIterator<Item = (&'f Finding, Option<&'f str>)>) -> Result<(), CaseError> {
        let mut new = 0;
        insert_findings(&self.tx, findings, self.run_id, |_| new += 1)?;
        self.new += new;
        Ok(())
    }

    /// Rebuilds the incidents from every finding in the case, marks the run complete and
    /// commits. Returns (new findings, incidents).
    pub fn finish(self, rules_loaded: usize, events: u64, incident_opts: &IncidentOptions) -> Result<(usize, Vec<Incident>), CaseError> {
        let incidents = rebuild_incidents(&self.tx, incident_opts)?;
        self.tx.execute(
            "UPDATE runs SET finished = ?1, status = 'complete', rules_loaded = ?2, events = ?3, findings_new = ?4 WHERE id = ?5",
            params![now(), rules_loaded as i64, events as i64, self.new as i64, self.run_id],
        )?;
        self.tx.commit()?;
        Ok((self.new, incidents))
    }
}

/// Rebuilds every incident from every finding in the case.
fn rebuild_incidents(tx: &rusqlite::Transaction<'_>, incident_opts: &IncidentOptions) -> Result<Vec<Incident>, CaseError> {
    let mut builder = portcullis_incident::IncidentBuilder::new(incident_opts);
    each_finding_for_incidents(tx, |f| builder.add(f))?;
    let grouped = builder.group();
    if grouped.left_out() > 0 {
        return Err(CaseError(format!(
            "{} findings past the incident builder's 4-billion limit: incidents not rebuilt",
            grouped.left_out()
        )));
    }
    let mut sentences: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    {
        let mut st = tx.prepare("SELECT sentence FROM findings WHERE id = ?1")?;
        for id in grouped.sentence_ids() {
            if let Some(sentence) = st.query_row([id], |r| r.get::<_, String>(0)).optional()? {
                sentences.insert(id.to_string(), sentence);
            }
        }
    }
    let incidents = grouped.finish(|id| sentences.get(id).cloned());
    tx.execute("DELETE FROM incident_findings", [])?;
    tx.execute("DELETE FROM incidents", [])?;
    let mut ins = tx.prepare(
        "INSERT INTO incidents (id, first_seen, last_seen, dwell_seconds, severity, first_evidence, tactics, techniques, entities, stages, explanation, finding_count, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut link = tx.prepare("INSERT OR IGNORE INTO incident_findings (incident_id, finding_id) VALUES (?1, ?2)")?;
    for i in &incidents {
        ins.execute(params![
            i.id,
            i.first_seen.to_string(),
            i.last_seen.to_string(),
            i.dwell_seconds,
            i.severity.as_str(),
            i.first_evidence,
            serde_json::to_string(&i.tactics).unwrap_or_default(),
            serde_json::to_string(&i.techniques).unwrap_or_default(),
            serde_json::to_string(&i.entities).unwrap_or_default(),
            serde_json::to_string(&i.stages).unwrap_or_default(),
            serde_json::to_string(&i.explanation).unwrap_or_default(),
            i.finding_count as i64,
            serde_json::to_string(i).unwrap_or_default(),
        ])?;
        for j in &i.explanation {
            link.execute(params![i.id, j.finding])?;
        }
    }
    Ok(incidents)
}

/// A match of a correlated rule kept by `watch` until its correlation's window has passed,
/// so a restart rebuilds the correlation state from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveInput {
    /// The correlation's stable key (its id, name or title).
    pub correlation: String,
    pub pos: u32,
    pub group: String,
    pub evidence: String,
    /// UTC microseconds.
    pub ts: i64,
    pub value: String,
    pub entities: String,
}

/// One step of `watch`, written in one transaction: what was read, what was found, the
/// correlation inputs kept, and where reading stands.
pub struct LiveBatch<'a> {
    /// Sources read in this step; counts add to what the case has for the same path and key.
    pub sources: Vec<(SourceRecord<'a>, String)>,
    pub findings: &'a [(Finding, Option<String>)],
    pub inputs: &'a [LiveInput],
    /// Kept inputs older than this (UTC microseconds) are dropped.
    pub prune_before: Option<i64>,
    /// `live_state` keys and values to set.
    pub state: Vec<(String, String)>,
    /// Rebuild the incidents (and mark the run's progress) in this step.
    pub incidents: Option<&'a IncidentOptions>,
    pub events: u64,
    pub rules_loaded: usize,
}

/// What a `watch` step changed.
#[derive(Debug, Default)]
pub struct LiveRecorded {
    /// Ids of findings that were not in the case before.
    pub new_findings: Vec<String>,
    /// For each input, whether it was new (a re-read event's inputs are not).
    pub new_inputs: Vec<bool>,
    /// The incidents, when they were rebuilt.
    pub incidents: Option<Vec<Incident>>,
}

/// An open case file.
pub struct Case {
    conn: Connection,
    run_id: i64,
}

/// What the intruder reached according to a case: the hosts and file paths named by
/// findings that belong to an incident. Opens the case read-only.
pub fn intrusion_scope(path: &Path) -> Result<(Vec<String>, Vec<String>), CaseError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| CaseError(format!("{}: {e}", path.display())))?;
    let mut q = conn
        .prepare(
            "SELECT DISTINCT e.kind, e.value FROM entities e JOIN incident_findings l ON l.finding_id = e.finding_id
             WHERE e.kind IN ('host', 'file_path') ORDER BY e.kind, e.value",
        )
        .map_err(|e| CaseError(format!("{}: not a Portcullis case file ({e})", path.display())))?;
    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let (mut hosts, mut files) = (Vec::new(), Vec::new());
    for r in rows {
        let (kind, value) = r?;
        if kind == "host" { hosts.push(value) } else { files.push(value) }
    }
    Ok((hosts, files))
}

/// A source file as recorded in the case.
pub struct SourceRecord<'a> {
    pub path: &'a Path,
    pub size: u64,
    pub format: Option<&'a str>,
    pub events: u64,
    pub skipped: u64,
    /// Earliest and latest event time read.
    pub time_span: Option<(Timestamp, Timestamp)>,
    /// Why records were skipped (with positions) and what the reader corrected.
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct CaseError(pub String);

impl std::fmt::Display for CaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for CaseError {
    fn from(e: rusqlite::Error) -> Self {
        CaseError(format!("case file: {e}"))
    }
}

impl Case {
    /// Opens (or creates) a case file and starts a run. Anything that is not a
    /// Portcullis case this version can write (another file, another application's
    /// database, a newer schema, a read-only file) is refused before anything is read or
    /// written; an older case is migrated.
    pub fn open(path: &Path, command: &str) -> Result<Case, CaseError> {
        let conn = open_writable(path)?;
        conn.execute(
            "INSERT INTO runs (started, status, command, version) VALUES (?1, 'running', ?2, ?3)",
            params![now(), command, env!("CARGO_PKG_VERSION")],
        )
        .map_err(|e| CaseError(format!("{}: {e}", path.display())))?;
        let run_id = conn.last_insert_rowid();
        Ok(Case { conn, run_id })
    }

    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// Records a run's sources and findings, rebuilds the incidents from every finding
    /// in the case, and marks the run complete — all in one transaction.
    /// Returns (new findings, incidents).
    pub fn record_run(
        &mut self,
        sources: &[SourceRecord<'_>],
        findings: &[(Finding, Option<String>)],
        rules_loaded: usize,
        events: u64,
        incident_opts: &IncidentOptions,
    ) -> Result<(usize, Vec<Incident>), CaseError> {
        let mut run = self.begin_run(sources)?;
        run.add_findings(findings.iter().map(|(f, e)| (f, e.as_deref())))?;
        run.finish(rules_loaded, events, incident_opts)
    }

    /// Starts recording a run: its sources now, its findings as they come
    /// ([`RunRecorder::add_findings`], any number of times), then [`RunRecorder::finish`].
    /// All in one transaction: a run that is not finished leaves the case as it was.
    pub fn begin_run(&mut self, sources: &[SourceRecord<'_>]) -> Result<RunRecorder<'_>, CaseError> {
        let run_id = self.run_id;
        let tx = self.conn.transaction()?;
        for s in sources {
            let hash = hash_file(s.path).unwrap_or_else(|e| format!("unhashed: {e}"));
            insert_source(&tx, s, &hash, run_id, SourceConflict::Keep)?;
        }
        Ok(RunRecorder { tx, run_id, new: 0 })
    }

    /// Records one step of `watch` in one transaction (see [`LiveBatch`]): a crash at any
    /// point leaves the case as it was before the step or after it, never between.
    pub fn record_live(&mut self, batch: &LiveBatch<'_>) -> Result<LiveRecorded, CaseError> {
        let run_id = self.run_id;
        let tx = self.conn.transaction()?;
        for (s, key) in &batch.sources {
            insert_source(&tx, s, &format!("live:{key}"), run_id, SourceConflict::Accumulate)?;
        }
        let mut new_findings = Vec::new();
        insert_findings(&tx, batch.findings.iter().map(|(f, e)| (f, e.as_deref())), run_id, |f| new_findings.push(f.id.clone()))?;
        let mut new_inputs = Vec::with_capacity(batch.inputs.len());
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO live_inputs (correlation, pos, grp, evidence, ts, value, entities) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for i in batch.inputs {
                let added = ins.execute(params![i.correlation, i.pos, i.group, i.evidence, i.ts, i.value, i.entities])?;
                new_inputs.push(added > 0);
            }
        }
        if let Some(before) = batch.prune_before {
            tx.execute("DELETE FROM live_inputs WHERE ts < ?1", [before])?;
        }
        for (k, v) in &batch.state {
            tx.execute("INSERT OR REPLACE INTO live_state (key, value) VALUES (?1, ?2)", params![k, v])?;
        }
        let incidents = match batch.incidents {
            Some(opts) => {
                let incidents = rebuild_incidents(&tx, opts)?;
                tx.execute(
                    "UPDATE runs SET finished = ?1, status = 'watching', rules_loaded = ?2, events = ?3,
                        findings_new = (SELECT COUNT(*) FROM findings WHERE run_id = ?4) WHERE id = ?4",
                    params![now(), batch.rules_loaded as i64, batch.events as i64, run_id],
                )?;
                Some(incidents)
            }
            None => None,
        };
        tx.commit()?;
        Ok(LiveRecorded { new_findings, new_inputs, incidents })
    }

    /// A value `watch` stored with [`Case::record_live`].
    pub fn live_state(&self, key: &str) -> Result<Option<String>, CaseError> {
        Ok(self.conn.query_row("SELECT value FROM live_state WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// The correlation inputs `watch` kept, in time order.
    pub fn live_inputs(&self) -> Result<Vec<LiveInput>, CaseError> {
        let mut q = self.conn.prepare(
            "SELECT correlation, pos, grp, evidence, ts, value, entities FROM live_inputs ORDER BY ts, correlation, grp, pos, evidence",
        )?;
        let rows = q.query_map([], |r| {
            Ok(LiveInput {
                correlation: r.get(0)?,
                pos: r.get(1)?,
                group: r.get(2)?,
                evidence: r.get(3)?,
                ts: r.get(4)?,
                value: r.get(5)?,
                entities: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks the run as stopped (a `watch` that ends cleanly).
    pub fn finish_live(&mut self) -> Result<(), CaseError> {
        self.conn.execute("UPDATE runs SET finished = ?1, status = 'complete' WHERE id = ?2", params![now(), self.run_id])?;
        Ok(())
    }

    /// Records an `exposure` run: one row per file examined and the totals, in one
    /// transaction. `total` is the run's `exposure_total` record as written to the output
    /// (with the run's own additions such as timing and errors).
    pub fn record_exposure(&mut self, report: &portcullis_exposure::Report, total: &serde_json::Value) -> Result<(), CaseError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare(
                "INSERT OR REPLACE INTO exposure_files (run_id, path, type, rows, register, confidence, on_compromised_system, accessed, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for f in &report.files {
                ins.execute(params![
                    self.run_id,
                    f.path,
                    f.file_type,
                    f.rows as i64,
                    f.register,
                    f.confidence,
                    f.on_compromised_system,
                    f.accessed,
                    serde_json::to_string(f).unwrap_or_default(),
                ])?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO exposure_totals (run_id, unique_electors, record) VALUES (?1, ?2, ?3)",
            params![self.run_id, report.tally.unique(0) as i64, total.to_string()],
        )?;
        tx.execute("UPDATE runs SET finished = ?1, status = 'complete' WHERE id = ?2", params![now(), self.run_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Records a `mail` run: each campaign, its recipients with their grades and evidence,
    /// and its indicators (source `campaign:<id>`). A campaign seen again replaces its
    /// earlier rows.
    pub fn record_mail(&mut self, campaigns: &[portcullis_mail::Campaign]) -> Result<(), CaseError> {
        let tx = self.conn.transaction()?;
        {
            let mut camp = tx.prepare(
                "INSERT OR REPLACE INTO mail_campaigns (id, run_id, severity, first_seen, last_seen, messages, members_targeted, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut clear = tx.prepare("DELETE FROM mail_recipients WHERE campaign_id = ?1")?;
            let mut rcpt = tx.prepare(
                "INSERT OR REPLACE INTO mail_recipients (campaign_id, address, member, grade, evidence) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut ioc = tx.prepare("INSERT OR IGNORE INTO iocs (source, type, value) VALUES (?1, ?2, ?3)")?;
            for c in campaigns {
                camp.execute(params![
                    c.id,
                    self.run_id,
                    c.severity.as_str(),
                    c.first_seen,
                    c.last_seen,
                    c.messages as i64,
                    c.members_targeted as i64,
                    serde_json::to_string(c).unwrap_or_default(),
                ])?;
                clear.execute(params![c.id])?;
                for r in &c.recipients {
                    rcpt.execute(params![
                        c.id,
                        r.address,
                        r.member,
                        r.grade.as_str(),
                        serde_json::to_string(&r.evidence).unwrap_or_default(),
                    ])?;
                }
                let source = format!("campaign:{}", c.id);
                for i in &c.iocs {
                    ioc.execute(params![source, i.kind, i.value])?;
                }
            }
        }
        tx.execute("UPDATE runs SET finished = ?1, status = 'complete' WHERE id = ?2", params![now(), self.run_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Stores the run's summary record (what was read, skipped and loaded) for the report's
    /// coverage section.
    pub fn record_summary(&mut self, summary: &impl serde::Serialize) -> Result<(), CaseError> {
        let text = serde_json::to_string(summary).map_err(|e| CaseError(format!("run summary: {e}")))?;
        self.conn.execute("UPDATE runs SET summary = ?1 WHERE id = ?2", params![text, self.run_id])?;
        Ok(())
    }

    /// Records a `posture` run: each weakness and each statement of what the logs could not
    /// show, one row each, in one transaction.
    pub fn record_posture(&mut self, report: &portcullis_posture::Report) -> Result<(), CaseError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare(
                "INSERT OR REPLACE INTO posture_checks (run_id, id, kind, check_name, severity, level_rank, subject_kind, subject, summary, first_ts, last_ts, evidence, fix, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for w in &report.weaknesses {
                let (first, last) = w.span();
                ins.execute(params![
                    self.run_id,
                    w.id,
                    "weakness",
                    w.check.as_str(),
                    w.severity.as_str(),
                    w.severity.rank(),
                    w.subject.kind(),
                    w.subject.name(),
                    w.sentence(),
                    first.map(|t| t.to_string()),
                    last.map(|t| t.to_string()),
                    serde_json::to_string(&w.evidence).unwrap_or_default(),
                    Option::<String>::None,
                    serde_json::to_string(&w.detail).unwrap_or_default(),
                ])?;
            }
            for b in &report.could_not_see {
                let subject = b.subject.as_ref().map(|s| s.name());
                let id = portcullis_posture::stable_id(&["could_not_see", b.missing.as_str(), subject.as_deref().unwrap_or("")]);
                ins.execute(params![
                    self.run_id,
                    id,
                    "could_not_see",
                    b.check.as_str(),
                    Option::<String>::None,
                    Option::<i64>::None,
                    b.subject.as_ref().map(|s| s.kind()),
                    subject,
                    b.consequence,
                    Option::<String>::None,
                    Option::<String>::None,
                    "[]",
                    b.fix,
                    serde_json::json!({"missing": b.missing.as_str()}).to_string(),
                ])?;
            }
        }
        tx.execute(
            "UPDATE runs SET finished = ?1, status = 'complete', events = ?2 WHERE id = ?3",
            params![now(), report.events as i64, self.run_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Number of findings in the case.
    pub fn finding_count(&self) -> Result<u64, CaseError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM findings", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

/// Every finding in the case, one at a time in id order, with what incidents need of it:
/// its entities (in the order they were recorded) but not its sentence, path or evidence.
/// Findings and entities are read side by side, both in id order, so neither is held. The
/// walk needs SQLite's order to be Rust's (bytes of UTF-8 text): a case where it is not
/// (another encoding or collation, crafted) is refused, never read with entities lost.
fn each_finding_for_incidents(conn: &Connection, mut each: impl FnMut(&Finding)) -> Result<(), CaseError> {
    use rusqlite::types::{FromSqlError, ValueRef};
    use std::sync::Arc;
    let encoding: String = conn.query_row("PRAGMA encoding", [], |r| r.get(0))?;
    if encoding != "UTF-8" {
        return Err(CaseError(format!("the case's text is {encoding}, not UTF-8: incidents cannot be rebuilt")));
    }
    let out_of_order = |what: &str| CaseError(format!("{what} came back out of id order: the case is damaged or not Portcullis's"));
    // A text column as the old whole-row reads took it: NULL only where a column may be NULL.
    fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
        let v: ValueRef<'r> = r.get_ref(i)?;
        v.as_str().map_err(|e: FromSqlError| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))
    }
    fn text_or_null<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
        let v: ValueRef<'r> = r.get_ref(i)?;
        v.as_str_or_null().map_err(|e: FromSqlError| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))
    }
    let mut ent = conn.prepare("SELECT finding_id, kind, value FROM entities ORDER BY finding_id COLLATE BINARY, rowid")?;
    let mut entities = ent.query([])?;
    let next_entity = |entities: &mut rusqlite::Rows<'_>| -> Result<Option<(String, Entity)>, CaseError> {
        Ok(match entities.next()? {
            Some(r) => {
                // (An unknown kind is read as a file path, as the case has always read it.)
                let kind = EntityKind::parse(text(r, 1)?).unwrap_or(EntityKind::FilePath);
                Some((r.get(0)?, Entity { kind, value: r.get(2)? }))
            }
            None => None,
        })
    };
    let mut pending = next_entity(&mut entities)?;
    // A rule's labels are shared by its findings, not allocated for each: by rule id, then
    // (title, tags as recorded).
    type Labels = (Arc<str>, Arc<str>, Arc<[String]>);
    let mut labels: std::collections::HashMap<String, Vec<(String, String, Labels)>> = std::collections::HashMap::new();
    let mut st = conn.prepare(
        "SELECT id, kind, rule_id, rule_title, level, first_ts, last_ts, tags, matcher, log, rule_source FROM findings ORDER BY id COLLATE BINARY",
    )?;
    let mut rows = st.query([])?;
    let mut f = Finding {
        id: String::new(),
        kind: FindingKind::Detection,
        matcher: Matcher::Rule,
        log: None,
        rule_source: RuleSource::User,
        rule_id: Arc::from(""),
        rule_title: Arc::from(""),
        level: Level::Informational,
        tags: Arc::from(Vec::new()),
        first_ts: None,
        last_ts: None,
        host: None,
        entities: Vec::new(),
        sentence: String::new(),
        path: None,
        record: None,
        evidence: Vec::new(),
    };
    let mut first = true;
    while let Some(r) = rows.next()? {
        let id = text(r, 0)?;
        if !first && id <= f.id.as_str() {
            return Err(out_of_order("findings"));
        }
        first = false;
        f.id.clear();
        f.id.push_str(id);
        f.kind = if text(r, 1)? == "correlation" { FindingKind::Correlation } else { FindingKind::Detection };
        let (rule_id, title, tags) = (text(r, 2)?, text(r, 3)?, text(r, 7)?);
        let known = labels.get(rule_id).and_then(|v| v.iter().find(|(t, g, _)| t == title && g == tags)).map(|(_, _, l)| l.clone());
        (f.rule_id, f.rule_title, f.tags) = match known {
            Some(l) => l,
            None => {
                let parsed: Vec<String> = serde_json::from_str(tags).unwrap_or_default();
                let l: Labels = (Arc::from(rule_id), Arc::from(title), Arc::from(parsed));
                // (A few labels per rule id at most: a damaged case's thousands are not kept.)
                let same_id = labels.entry(rule_id.to_string()).or_default();
                if same_id.len() < 16 {
                    same_id.push((title.to_string(), tags.to_string(), l.clone()));
                }
                l
            }
        };
        f.level = Level::parse(text(r, 4)?).unwrap_or(Level::Informational);
        f.first_ts = text_or_null(r, 5)?.and_then(Timestamp::parse);
        f.last_ts = text_or_null(r, 6)?.and_then(Timestamp::parse);
        f.matcher = Matcher::parse(text(r, 8)?).unwrap_or(Matcher::Rule);
        f.log = text_or_null(r, 9)?.map(str::to_string);
        f.rule_source = RuleSource::parse(text(r, 10)?);
        f.entities.clear();
        while let Some((owner, e)) = pending.take() {
            match owner.as_str().cmp(f.id.as_str()) {
                // An entity of no finding (a damaged case) is passed by.
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => f.entities.push(e),
                std::cmp::Ordering::Greater => {
                    pending = Some((owner, e));
                    break;
                }
            }
            let next = next_entity(&mut entities)?;
            if next.as_ref().is_some_and(|(next_owner, _)| next_owner < &owner) {
                return Err(out_of_order("entities"));
            }
            pending = next;
        }
        each(&f);
    }
    Ok(())
}

fn now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(d.as_micros() as i64).to_string()
}

/// xxh3-128 of a file's bytes (identifies a source across runs and renames).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("xxh3:{:032x}", h.digest128()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: &str, t: &str, level: Level, host: &str) -> (Finding, Option<String>) {
        (
            Finding {
                id: id.into(),
                kind: FindingKind::Detection,
                matcher: Matcher::Rule,
                log: None,
                rule_source: RuleSource::Builtin,
                rule_id: "r".into(),
                rule_title: "rule".into(),
                level,
                tags: vec!["attack.initial-access".to_string()].into(),
                first_ts: Timestamp::parse(t),
                last_ts: Timestamp::parse(t),
                host: Some(host.into()),
                entities: vec![Entity { kind: EntityKind::Host, value: host.into() }],
                sentence: "s".into(),
                path: Some("x.log".into()),
                record: Some(1),
                evidence: vec![],
            },
            Some("{}".into()),
        )
    }

    /// Findings added in parts, as the hunt adds them chunk by chunk, are recorded as one
    /// call with all of them is: the same rows, the same count of new ones, the same incidents.
    #[test]
    fn a_run_recorded_in_parts_is_the_run_recorded_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let opts = IncidentOptions::default();
        let mut batch = vec![
            f("a", "2021-08-24T02:13:00Z", Level::High, "exch01"),
            f("b", "2021-08-24T02:14:00Z", Level::Medium, "exch01"),
            f("c", "2021-09-16T10:00:00Z", Level::High, "dc01"),
        ];
        batch[1].1 = Some("{\"EventID\":4688}".into());
        let at_once = dir.path().join("once.sqlite");
        let (new, incidents) = Case::open(&at_once, "test").unwrap().record_run(&[], &batch, 1, 1, &opts).unwrap();
        let in_parts = dir.path().join("parts.sqlite");
        let mut case = Case::open(&in_parts, "test").unwrap();
        let mut run = case.begin_run(&[]).unwrap();
        run.add_findings(batch[..2].iter().map(|(f, e)| (f, e.as_deref()))).unwrap();
        // A finding given twice counts once.
        run.add_findings(batch[1..].iter().map(|(f, e)| (f, e.as_deref()))).unwrap();
        let (parts_new, parts_incidents) = run.finish(1, 1, &opts).unwrap();
        assert_eq!((parts_new, parts_incidents.len()), (new, incidents.len()));
        assert_eq!(new, 3);
        let rows = |p: &std::path::Path| -> Vec<(String, Option<String>)> {
            let c = Connection::open(p).unwrap();
            let mut q = c.prepare("SELECT id, event FROM findings ORDER BY id").unwrap();
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
        };
        assert_eq!(rows(&at_once), rows(&in_parts));
        assert_eq!(rows(&in_parts)[1].1.as_deref(), Some("{\"EventID\":4688}"));
        // Search text: once per finding, however often it was given, and added for a later
        // run's new findings only.
        let searchable = |p: &std::path::Path| -> Vec<String> {
            let c = Connection::open(p).unwrap();
            let mut q = c.prepare("SELECT id FROM findings_fts ORDER BY id").unwrap();
            q.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
        };
        assert_eq!(searchable(&in_parts), ["a", "b", "c"]);
        let later = [f("b", "2021-08-24T02:14:00Z", Level::Medium, "exch01"), f("d", "2021-09-17T10:00:00Z", Level::High, "dc01")];
        let mut case = Case::open(&in_parts, "test").unwrap();
        let mut run = case.begin_run(&[]).unwrap();
        run.add_findings(later.iter().map(|(f, e)| (f, e.as_deref()))).unwrap();
        assert_eq!(run.finish(1, 1, &opts).unwrap().0, 1);
        assert_eq!(searchable(&in_parts), ["a", "b", "c", "d"]);
        let c = Connection::open(&in_parts).unwrap();
        let hits: i64 = c.query_row("SELECT COUNT(*) FROM findings_fts WHERE findings_fts MATCH '\"4688\"'", [], |r| r.get(0)).unwrap();
        assert_eq!(hits, 1);
        // A case whose largest rowid is i64::MAX (crafted): new rows get lower rowids, and
        // still their search text.
        c.execute("UPDATE findings SET rowid = 9223372036854775807 WHERE id = 'd'", []).unwrap();
        drop(c);
        let mut case = Case::open(&in_parts, "test").unwrap();
        let mut run = case.begin_run(&[]).unwrap();
        let more = [f("e", "2021-09-18T10:00:00Z", Level::High, "dc01")];
        run.add_findings(more.iter().map(|(f, e)| (f, e.as_deref()))).unwrap();
        run.finish(1, 1, &opts).unwrap();
        assert_eq!(searchable(&in_parts), ["a", "b", "c", "d", "e"]);
    }

    /// Incidents rebuilt from the case (its findings read a row at a time beside their
    /// entities, sentences looked up by id) are those built from the findings in memory.
    #[test]
    fn incidents_rebuilt_from_the_case_equal_those_built_from_the_findings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case.sqlite");
        let opts = IncidentOptions::default();
        let kinds = [EntityKind::Account, EntityKind::SourceIp, EntityKind::FilePath, EntityKind::Mailbox];
        let mut findings = Vec::new();
        for n in 0..400u64 {
            let (mut finding, _) = f(&format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)), "2021-08-24T00:00:00Z", Level::Low, "h");
            let rule = n % 7;
            finding.rule_id = format!("rule-{rule}").into();
            finding.rule_title = format!("Rule {}", rule % 5).into();
            finding.tags =
                [["attack.initial-access", "attack.t1190"], ["attack.execution", "attack.t1059.001"], ["attack.persistence", "x"]]
                    [rule as usize % 3]
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .into();
            finding.level = [Level::Informational, Level::Low, Level::Medium, Level::High, Level::Critical][(n % 5) as usize];
            finding.rule_source = if n % 3 == 0 { RuleSource::User } else { RuleSource::Builtin };
            finding.first_ts = Some(Timestamp(1_600_000_000_000_000 + (n as i64 % 37) * 3_600_000_000));
            finding.last_ts = finding.first_ts.map(|t| Timestamp(t.0 + (n as i64 % 4) * 60_000_000));
            finding.log = Some(["security", "w3c", "sysmon"][(n % 3) as usize].into());
            finding.sentence = format!("finding {n}");
            // Entities out of sorted order, some shared widely, the host not always first.
            finding.entities = vec![
                Entity { kind: kinds[(n % 4) as usize], value: format!("v{}", n % 11) },
                Entity { kind: EntityKind::Host, value: format!("host{}", n % 5) },
                Entity { kind: kinds[((n + 1) % 4) as usize], value: format!("w{}", n % 3) },
            ];
            findings.push((finding, None));
        }
        let mut c = Case::open(&path, "test").unwrap();
        let (_, from_case) = c.record_run(&[], &findings, 1, 1, &opts).unwrap();
        let plain: Vec<Finding> = findings.into_iter().map(|(f, _)| f).collect();
        let in_memory = portcullis_incident::build(&plain, &opts);
        let json = |i: &[Incident]| serde_json::to_string(i).unwrap();
        assert!(in_memory.len() >= 3 && in_memory.iter().any(|i| !i.context.is_empty() || i.stages.len() > 3), "{in_memory:#?}");
        assert_eq!(json(&from_case), json(&in_memory));
        // An entity row of no finding (a damaged case) is passed by.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; INSERT INTO entities (finding_id, kind, value) VALUES ('0', 'host', 'x'), ('zzz', 'host', 'y')",
        )
        .unwrap();
        drop(conn);
        let mut c = Case::open(&path, "test").unwrap();
        let (_, rebuilt) = c.record_run(&[], &[], 1, 1, &opts).unwrap();
        assert_eq!(json(&rebuilt), json(&in_memory));
        // A case whose text is UTF-16 sorts ids otherwise than Rust: refused, not read with
        // entities lost.
        let utf16 = dir.path().join("utf16.sqlite");
        Connection::open(&utf16).unwrap().execute_batch("PRAGMA encoding = 'UTF-16le'; CREATE TABLE t (x); DROP TABLE t;").unwrap();
        let mut c = Case::open(&utf16, "test").unwrap();
        let err = c.record_run(&[], &plain.iter().take(3).map(|f| (f.clone(), None)).collect::<Vec<_>>(), 1, 1, &opts).unwrap_err();
        assert!(err.0.contains("UTF-16le"), "{err:?}");
    }

    #[test]
    fn rerunning_adds_nothing_and_new_data_extends_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case.sqlite");
        let opts = IncidentOptions::default();
        let batch = vec![f("a", "2021-08-24T02:13:00Z", Level::High, "exch01")];
        let mut c = Case::open(&path, "test").unwrap();
        let (new, inc) = c.record_run(&[], &batch, 1, 1, &opts).unwrap();
        assert_eq!((new, inc.len()), (1, 1));
        let mut c = Case::open(&path, "test").unwrap();
        let (new, _) = c.record_run(&[], &batch, 1, 1, &opts).unwrap();
        assert_eq!(new, 0);
        assert_eq!(c.finding_count().unwrap(), 1);
        let later = vec![f("b", "2021-09-16T10:00:00Z", Level::High, "exch01")];
        let mut c = Case::open(&path, "test").unwrap();
        let (new, inc) = c.record_run(&[], &later, 1, 1, &opts).unwrap();
        assert_eq!(new, 1);
        assert_eq!(inc.len(), 1);
        assert_eq!(inc[0].finding_count, 2);
        assert_eq!(inc[0].first_evidence, "a");
        let conn = Connection::open(&path).unwrap();
        let runs: i64 = conn.query_row("SELECT COUNT(*) FROM runs WHERE status = 'complete'", [], |r| r.get(0)).unwrap();
        assert_eq!(runs, 3);
    }

    #[test]
    fn only_portcullis_cases_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all, but long enough to have a header of a hundred bytes or more, surely, yes indeed")
            .unwrap();
        let e = Case::open(&text, "t").err().unwrap().0;
        assert!(e.contains("not a SQLite database") && e.contains("notes.txt"), "{e}");
        assert!(std::fs::read_to_string(&text).unwrap().starts_with("not a database"), "left untouched");

        let other = dir.path().join("other.sqlite");
        let c = Connection::open(&other).unwrap();
        c.execute_batch("PRAGMA application_id = 1234; CREATE TABLE t (x);").unwrap();
        drop(c);
        let e = Case::open(&other, "t").err().unwrap().0;
        assert!(e.contains("another application"), "{e}");

        let empty = dir.path().join("empty.sqlite");
        Connection::open(&empty).unwrap().pragma_update(None, "journal_mode", "WAL").unwrap();
        assert!(std::fs::metadata(&empty).unwrap().len() > 0);
        drop(Case::open(&empty, "t").expect("an empty SQLite file (a killed first run) becomes a case"));

        let foreign = dir.path().join("foreign.sqlite");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x);").unwrap();
        let e = Case::open(&foreign, "t").err().unwrap().0;
        assert!(e.contains("not a Portcullis case file"), "{e}");
        let tables: i64 = Connection::open(&foreign)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1, "nothing written into a database that is not a case");

        let ro = dir.path().join("ro.sqlite");
        drop(Case::open(&ro, "t").unwrap());
        let mut perm = std::fs::metadata(&ro).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&ro, perm).unwrap();
        let e = Case::open(&ro, "t").err().unwrap().0;
        assert!(e.contains("read-only"), "{e}");

        let newer = dir.path().join("newer.sqlite");
        drop(Case::open(&newer, "t").unwrap());
        Connection::open(&newer).unwrap().execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
        let e = Case::open(&newer, "t").err().unwrap().0;
        assert!(e.contains("newer Portcullis"), "{e}");
    }

    #[test]
    fn schema_2_cases_get_posture_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.sqlite");
        drop(Case::open(&path, "t").unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("DROP TABLE posture_checks; UPDATE meta SET value = '2' WHERE key = 'schema_version';").unwrap();
        }
        let mut c = Case::open(&path, "posture").unwrap();
        c.record_posture(&portcullis_posture::Report::default()).unwrap();
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM posture_checks", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
        let v: String = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION.to_string());
    }

    #[test]
    fn schema_1_cases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            // The schema-1 layout: no application id, findings without matcher and log.
            let c = Connection::open(&path).unwrap();
            let v1 = SCHEMA
                .replace(",\n    matcher TEXT NOT NULL DEFAULT 'rule',\n    log TEXT,\n    rule_source TEXT NOT NULL DEFAULT 'user'", "")
                .replace(",\n    summary TEXT", "")
                .replace(",\n    first_ts TEXT,\n    last_ts TEXT,\n    notes TEXT NOT NULL DEFAULT '[]'", "")
                .replace(
                    ",\n    record TEXT\n);\nCREATE TABLE IF NOT EXISTS incident_findings",
                    "\n);\nCREATE TABLE IF NOT EXISTS incident_findings",
                );
            assert!(!v1.contains("matcher") && !v1.contains("summary") && !v1.contains("notes TEXT"), "{v1}");
            c.execute_batch(&v1).unwrap();
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')", []).unwrap();
            c.execute("INSERT INTO runs (started, status, command, version) VALUES ('x', 'complete', 'old', '0.1.0')", []).unwrap();
            c.execute(
                "INSERT INTO findings (id, kind, rule_id, rule_title, level, level_rank, first_ts, sentence, tags, evidence, run_id)
                 VALUES ('f1', 'detection', 'ioc-00', 'IOC match: x', 'high', 3, '2021-08-24T02:13:00Z', 's', '[]', '[]', 1)",
                [],
            )
            .unwrap();
        }
        let mut c = Case::open(&path, "new").unwrap();
        let (new, incidents) =
            c.record_run(&[], &[f("b", "2021-08-24T02:14:00Z", Level::High, "exch01")], 1, 1, &IncidentOptions::default()).unwrap();
        assert_eq!(new, 1);
        assert_eq!(incidents.len(), 2);
        let conn = Connection::open(&path).unwrap();
        let matcher: String = conn.query_row("SELECT matcher FROM findings WHERE id = 'f1'", [], |r| r.get(0)).unwrap();
        assert_eq!(matcher, "indicator");
        let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
        assert_eq!(app, APPLICATION_ID);
        let v: String = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION.to_string());
        // 2 → 3: the old finding is searchable, incidents keep their record.
        let hits: i64 = conn.query_row("SELECT COUNT(*) FROM findings_fts WHERE findings_fts MATCH '\"IOC\"'", [], |r| r.get(0)).unwrap();
        assert_eq!(hits, 1);
        let records: i64 = conn.query_row("SELECT COUNT(*) FROM incidents WHERE record IS NOT NULL", [], |r| r.get(0)).unwrap();
        assert_eq!(records, 2);
        let reader = read::CaseReader::open(&path).unwrap();
        assert!(reader.incidents().unwrap().iter().all(|i| i.assessment.is_some()));
        let (found, total) = reader.findings(&read::FindingQuery { text: Some("IOC".into()), ..Default::default() }).unwrap();
        assert_eq!((found.len(), total), (1, 1));
    }
}

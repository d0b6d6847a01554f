//! The sections a case is shown in — summary, notification facts, incidents, campaigns,
//! exposure, coverage, evidence — rendered once for both the report (links are anchors in
//! the document) and the web UI (links are pages), through [`Links`].

use std::collections::BTreeMap;

use portcullis_case::CaseError;
use portcullis_case::read::{
    Annotation, CampaignView, CaseReader, ExposureView, FindingQuery, FindingRow, IncidentView, RunRow, SourceRow, Target,
};
use portcullis_event::Timestamp;
use portcullis_sigma::Level;

use crate::chart::{Mark, attack_matrix, duration, legend, tactic_name, timeline_svg, when};
use crate::html::{Html, url_part};

/// Where a reference to a thing of the case points.
pub trait Links {
    fn finding(&self, id: &str) -> String;
    fn incident(&self, id: &str) -> String;
    fn campaign(&self, id: &str) -> String;
    /// A pivot to everything about an entity, if the view has one.
    fn entity(&self, kind: &str, value: &str) -> Option<String>;
    /// A pivot to every finding of a rule, if the view has one.
    fn rule(&self, rule_id: &str) -> Option<String>;
    fn section(&self, name: &str) -> String;
}

/// Links inside one HTML document.
pub struct Anchors;

impl Links for Anchors {
    fn finding(&self, id: &str) -> String {
        format!("#f-{}", url_part(id))
    }
    fn incident(&self, id: &str) -> String {
        format!("#{}", url_part(id))
    }
    fn campaign(&self, id: &str) -> String {
        format!("#{}", url_part(id))
    }
    fn entity(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn rule(&self, _: &str) -> Option<String> {
        None
    }
    fn section(&self, name: &str) -> String {
        format!("#{name}")
    }
}

/// Everything the report shows, read from the case once.
pub struct CaseData {
    pub path: String,
    pub runs: Vec<RunRow>,
    pub sources: Vec<SourceRow>,
    pub incidents: Vec<IncidentView>,
    /// Findings cited by incidents (stage findings and first evidence), by id.
    pub cited: BTreeMap<String, FindingRow>,
    pub campaigns: Vec<CampaignView>,
    pub exposure: Option<ExposureView>,
    pub posture: Option<portcullis_case::read::PostureView>,
    pub annotations: Vec<Annotation>,
    pub findings_total: u64,
    pub by_level: [u64; 5],
    /// Each incident's first evidence as the line in its log file, where the file is a
    /// text log still at its recorded path.
    pub original_lines: BTreeMap<String, String>,
}

impl CaseData {
    pub fn read(case: &CaseReader) -> Result<CaseData, CaseError> {
        let counts = case.counts()?;
        let incidents = case.incidents()?;
        let mut cited = BTreeMap::new();
        for i in &incidents {
            let ids = std::iter::once(&i.first_evidence)
                .chain(i.stages.iter().flat_map(|s| s.finding_ids.first()))
                .chain(i.context.iter().flat_map(|s| s.finding_ids.first()));
            for id in ids {
                if !cited.contains_key(id)
                    && let Some(f) = case.finding(id)?
                {
                    cited.insert(id.clone(), f);
                }
            }
        }
        let mut original_lines = BTreeMap::new();
        for i in &incidents {
            if let Some(f) = cited.get(&i.first_evidence)
                && let (Some(path), Some(line)) = (&f.path, f.record)
                && let Some(text) = original_line(std::path::Path::new(path), line)
            {
                original_lines.insert(f.id.clone(), text);
            }
        }
        Ok(CaseData {
            original_lines,
            path: case.path().display().to_string(),
            runs: case.runs()?,
            sources: case.sources()?,
            incidents,
            cited,
            campaigns: case.campaigns()?,
            exposure: case.exposure()?,
            posture: case.posture()?,
            annotations: case.annotations(None)?,
            findings_total: counts.findings,
            by_level: counts.by_level,
        })
    }

    fn host_of(&self, finding: &str) -> Option<String> {
        self.cited.get(finding).and_then(|f| f.host.as_deref()).map(host_label)
    }

    fn notable_campaigns(&self) -> impl Iterator<Item = &CampaignView> {
        self.campaigns.iter().filter(|c| c.severity == "high" || c.severity == "medium")
    }
}

/// Line `n` (1-based) of a plain-text log, if the file is still there and is text (not
/// EVTX, compressed or an archive member). Bounded: at most 512 MiB read, 64 KiB shown.
fn original_line(path: &std::path::Path, n: i64) -> Option<String> {
    use std::io::{BufRead, Read};
    if n < 1 || !path.is_file() {
        return None;
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if matches!(ext.as_str(), "evtx" | "gz" | "zip" | "tar" | "tgz" | "xz" | "bz2" | "7z") {
        return None;
    }
    let f = std::fs::File::open(path).ok()?;
    let mut r = std::io::BufReader::new(f.take(512 << 20));
    let mut buf = Vec::new();
    for _ in 1..n {
        buf.clear();
        if r.read_until(b'\n', &mut buf).ok()? == 0 {
            return None;
        }
    }
    buf.clear();
    r.by_ref().take(64 << 10).read_until(b'\n', &mut buf).ok()?;
    if buf.contains(&0) {
        return None;
    }
    let text = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
    (!text.is_empty()).then_some(text)
}

/// A host as the incident's entities name it (`entity::normalise`: the first DNS label,
/// lower-cased; addresses as they are), so `EXCH01.ec.local` and `EXCH01` are one lane.
pub fn host_label(h: &str) -> String {
    portcullis_event::entity::normalise(portcullis_event::entity::EntityKind::Host, h).unwrap_or_else(|| h.trim().to_lowercase())
}

/// Stages grouped for reading: one row per (rule, host), in order of first appearance.
struct StageGroup<'a> {
    first: &'a StageRow,
    last_time: &'a str,
    host: String,
    count: usize,
    findings: usize,
    first_evidence: bool,
}

fn group_stages<'a>(d: &CaseData, i: &'a IncidentView) -> (Vec<StageGroup<'a>>, Vec<usize>) {
    let mut groups: Vec<StageGroup<'a>> = Vec::new();
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut of_stage = Vec::with_capacity(i.stages.len());
    for s in &i.stages {
        let host = s.finding_ids.first().and_then(|f| d.host_of(f)).unwrap_or_default();
        let first_evidence = s.finding_ids.contains(&i.first_evidence);
        let key = (s.rule_title.clone(), host.clone());
        let g = *index.entry(key).or_insert_with(|| {
            groups.push(StageGroup { first: s, last_time: &s.time, host, count: 0, findings: 0, first_evidence: false });
            groups.len() - 1
        });
        let group = &mut groups[g];
        group.count += 1;
        group.findings += s.finding_ids.len();
        group.last_time = &s.time;
        group.first_evidence |= first_evidence;
        of_stage.push(g);
    }
    (groups, of_stage)
}

use portcullis_case::read::StageRow;

fn level_class(l: Option<Level>) -> &'static str {
    match l {
        Some(Level::Critical) => "sev critical",
        Some(Level::High) => "sev high",
        Some(Level::Medium) => "sev medium",
        Some(Level::Low) => "sev low",
        _ => "sev info",
    }
}

fn severity_badge(h: &mut Html, l: Option<Level>) {
    h.el("span", level_class(l), l.map_or("unknown", |l| l.as_str()));
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn entity_list(h: &mut Html, links: &dyn Links, kind: &str, values: &[&str], max: usize) {
    for (i, v) in values.iter().take(max).enumerate() {
        if i > 0 {
            h.raw(", ");
        }
        match links.entity(kind, v) {
            Some(href) => h.link(&href, v),
            None => h.el("code", "", v),
        };
    }
    if values.len() > max {
        h.fmt(format_args!(" and {} more", values.len() - max));
    }
    if values.is_empty() {
        h.raw("<span class=\"muted\">none named</span>");
    }
}

/// The summary in plain words.
pub fn summary(h: &mut Html, d: &CaseData, links: &dyn Links) {
    h.raw("<section id=\"summary\"><h2>Summary</h2>");
    if d.incidents.is_empty() {
        h.raw("<p><b>No incident was found</b> in the logs read into this case. What that covers — the logs, their periods and the rules — is under <a href=\"")
            .raw(&links.section("coverage"))
            .raw("\">Coverage</a>.</p>");
    } else {
        let serious = d.incidents.iter().filter(|i| i.severity >= Some(Level::High)).count();
        h.fmt(format_args!(
            "<p>Portcullis found <b>{}</b> in this case ({} of them high or critical), from {} findings.</p>",
            plural(d.incidents.len(), "incident", "incidents"),
            serious,
            d.findings_total
        ));
        h.raw("<ul class=\"facts\">");
        for i in d.incidents.iter().take(5) {
            h.raw("<li>");
            severity_badge(h, i.severity);
            h.raw(" ").link(&links.incident(&i.id), &i.id).raw(": ");
            if let Some(a) = &i.assessment {
                h.text(&format!("{} ", a.judgement))
                    .raw("— <b>")
                    .text(&a.likelihood)
                    .raw("</b> (")
                    .text(&a.probability)
                    .raw("), confidence ")
                    .text(&a.confidence)
                    .raw(". ");
            }
            h.raw("First evidence ").text(&when(&i.first_seen));
            if let Some(f) = d.cited.get(&i.first_evidence) {
                h.raw(" (").text(&f.rule_title).raw(")");
            }
            h.raw(", last ").text(&when(&i.last_seen)).raw(": dwell <b>").text(&duration(i.dwell_seconds)).raw("</b>. Systems: ");
            entity_list(h, links, "host", &i.entities_of("host"), 8);
            h.raw(". Accounts: ");
            entity_list(h, links, "account", &i.entities_of("account"), 8);
            h.raw(".</li>");
        }
        if d.incidents.len() > 5 {
            h.fmt(format_args!("<li>… and {} more incidents, listed below.</li>", d.incidents.len() - 5));
        }
        h.raw("</ul>");
    }
    match &d.exposure {
        Some(e) => {
            h.raw("<p>Electoral registers: <b>").text(&e.totals.unique_electors.to_string()).raw("</b> unique electors in ");
            h.text(&plural(e.totals.register_files, "register copy", "register copies"));
            if let Some(s) = &e.totals.on_compromised_systems {
                h.fmt(format_args!("; <b>{}</b> on systems the intrusion reached", s.unique_electors));
            }
            if let Some(s) = &e.totals.evidenced_as_accessed {
                h.fmt(format_args!("; <b>{}</b> in files evidenced as accessed", s.unique_electors));
            }
            h.raw(". By category: ");
            category_list(h, &e.totals.by_category);
            h.raw(" (<a href=\"").raw(&links.section("exposure")).raw("\">details</a>).</p>");
        }
        None => {
            h.raw("<p class=\"muted\">No exposure scan is recorded in this case (<code>portcullis exposure PATH --case CASE</code> adds one).</p>");
        }
    }
    let notable: Vec<&CampaignView> = d.notable_campaigns().collect();
    if d.campaigns.is_empty() {
        h.raw(
            "<p class=\"muted\">No mail analysis is recorded in this case (<code>portcullis mail EXPORT --case CASE</code> adds one).</p>",
        );
    } else if notable.is_empty() {
        h.fmt(format_args!("<p>Mail: {} found, none above low.</p>", plural(d.campaigns.len(), "campaign", "campaigns")));
    } else {
        h.raw("<ul class=\"facts\">");
        for c in notable {
            h.raw("<li>Mail campaign ").link(&links.campaign(&c.id), &c.id).raw(" [").text(&c.severity).raw("]: ");
            if let Some(j) = &c.judgement {
                h.text(&j.judgement).raw(" — <b>").text(&j.likelihood).raw("</b>. ");
            }
            h.fmt(format_args!(
                "{} messages to {} recipients, <b>{} members targeted</b>; ",
                c.messages,
                c.recipients.len(),
                c.members_targeted
            ));
            grades(h, &c.grades);
            h.raw(".</li>");
        }
        h.raw("</ul>");
    }
    h.raw("</section>");
}

fn category_list(h: &mut Html, cats: &BTreeMap<String, u64>) {
    let mut v: Vec<(&String, &u64)> = cats.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (i, (k, n)) in v.iter().enumerate() {
        if i > 0 {
            h.raw(", ");
        }
        h.text(k).fmt(format_args!(" {n}"));
    }
    if v.is_empty() {
        h.raw("none");
    }
}

fn grades(h: &mut Html, g: &BTreeMap<String, usize>) {
    let order = ["received", "opened", "clicked", "compromised"];
    let parts: Vec<String> = order.iter().map(|k| format!("{} {}", g.get(*k).copied().unwrap_or(0), k)).collect();
    h.text(&parts.join(", "));
}

/// The facts a UK GDPR Article 33 notification asks for, each linked to its evidence;
/// what only a person can say is left for them, marked as such.
pub fn notification(h: &mut Html, d: &CaseData, links: &dyn Links) {
    h.raw("<section id=\"notification\"><h2>Notification facts (UK GDPR Article 33) — <span class=\"draft\">DRAFT</span></h2>");
    h.raw("<p class=\"note\">Prepared from the evidence in this case for a person to check and complete. The ICO must be told within 72 hours of the controller becoming aware of a personal data breach that is likely to result in a risk to people's rights and freedoms. Items marked <span class=\"todo\">to complete</span> cannot be known from logs.</p>");
    h.raw("<table class=\"facts\"><tbody>");
    let row = |h: &mut Html, label: &str, body: &dyn Fn(&mut Html)| {
        h.raw("<tr><th>").text(label).raw("</th><td>");
        body(h);
        h.raw("</td></tr>");
    };
    let first = d.incidents.iter().min_by(|a, b| a.first_seen.cmp(&b.first_seen));
    row(h, "Nature of the breach", &|h| {
        if d.incidents.is_empty() {
            h.raw("No intrusion found in the logs read. ");
        }
        for i in d.incidents.iter().filter(|i| i.severity >= Some(Level::High)).take(3) {
            h.raw("Unauthorised access (confidentiality): ");
            let names: Vec<String> = i.attack.iter().take(6).map(|t| format!("{} {}", t.id, t.name)).collect();
            h.text(&if names.is_empty() { i.techniques.join(", ") } else { names.join("; ") });
            h.raw(" — ").link(&links.incident(&i.id), &i.id).raw(". ");
        }
        for c in d.notable_campaigns().take(3) {
            h.raw("Targeted reconnaissance by mail of members (").link(&links.campaign(&c.id), &c.id).raw("). ");
        }
    });
    row(h, "Categories of data subjects", &|h| match &d.exposure {
        Some(e) if e.totals.unique_electors > 0 => {
            h.raw("Electors on register copies, by category: ");
            category_list(h, &e.totals.by_category);
            h.raw(" (<a href=\"").raw(&links.section("exposure")).raw("\">exposure</a>). ");
        }
        _ => {
            h.raw("<span class=\"muted\">No register copy found (or no exposure scan in this case).</span> ");
        }
    });
    row(h, "Approximate number of data subjects", &|h| match &d.exposure {
        Some(e) => {
            h.fmt(format_args!("{} unique electors in all files examined", e.totals.unique_electors));
            if let Some(s) = &e.totals.on_compromised_systems {
                h.fmt(format_args!("; {} on systems the intrusion reached", s.unique_electors));
            }
            if let Some(s) = &e.totals.evidenced_as_accessed {
                h.fmt(format_args!("; {} evidenced as accessed", s.unique_electors));
            }
            let members: usize = d.notable_campaigns().map(|c| c.members_targeted).sum();
            if members > 0 {
                h.fmt(format_args!("; {members} members targeted by mail"));
            }
            h.raw(".");
        }
        None => {
            h.raw("<span class=\"todo\">to complete</span>");
        }
    });
    row(h, "Approximate number of records", &|h| match &d.exposure {
        Some(e) => {
            let reg_rows: u64 = e.files.iter().filter(|f| f.register).map(|f| f.rows).sum();
            h.fmt(format_args!("{reg_rows} register rows in {} register files.", e.totals.register_files));
        }
        None => {
            h.raw("<span class=\"todo\">to complete</span>");
        }
    });
    row(h, "When the breach began", &|h| match first {
        Some(i) => {
            h.raw("Earliest evidence: ").text(&when(&i.first_seen)).raw(" (");
            h.link(&links.finding(&i.first_evidence), "first evidence");
            h.raw("). It may have begun earlier than the logs show; see ")
                .raw(&format!("<a href=\"{}\">coverage</a>", links.section("coverage")))
                .raw(".");
        }
        None => {
            h.raw("<span class=\"muted\">No incident.</span>");
        }
    });
    row(h, "When it was detected", &|h| {
        let found = d.runs.iter().find(|r| r.findings_new.unwrap_or(0) > 0);
        match found {
            Some(r) => {
                h.raw("Found by Portcullis in run ").fmt(format_args!("{}", r.id)).raw(" on ").text(&when(&r.started)).raw(". ");
            }
            None => {
                h.raw("No Portcullis run found anything. ");
            }
        }
        h.raw("When the controller became aware: <span class=\"todo\">to complete</span>.");
    });
    row(h, "Systems involved", &|h| {
        let mut hosts: Vec<&str> = d.incidents.iter().flat_map(|i| i.entities_of("host")).collect();
        hosts.sort();
        hosts.dedup();
        entity_list(h, links, "host", &hosts, 30);
    });
    let todo = |h: &mut Html| {
        h.raw("<span class=\"todo\">to complete</span>");
    };
    row(h, "Likely consequences", &todo);
    row(h, "Measures taken or proposed", &todo);
    row(h, "Contact point (DPO)", &todo);
    h.raw("</tbody></table></section>");
}

/// One incident: assessment, timeline, stages, matrix, entities, joins, first evidence.
pub fn incident(h: &mut Html, d: &CaseData, i: &IncidentView, links: &dyn Links) {
    h.fmt(format_args!("<section class=\"incident\" id=\"{}\">", url_part(&i.id)));
    h.raw("<h3>");
    severity_badge(h, i.severity);
    h.raw(" Incident ").text(&i.id).raw("</h3>");
    h.raw("<p>").text(&when(&i.first_seen)).raw(" → ").text(&when(&i.last_seen));
    h.raw(" · dwell <b>").text(&duration(i.dwell_seconds)).raw("</b> · ").text(&plural(i.finding_count, "finding", "findings")).raw(" · ");
    h.text(&i.tactics.iter().map(|t| tactic_name(t)).collect::<Vec<_>>().join(" → ")).raw("</p>");
    if let Some(a) = &i.assessment {
        h.raw("<p class=\"assess\"><b>Assessment:</b> ")
            .text(&a.judgement)
            .raw(" — <b>")
            .text(&a.likelihood)
            .raw("</b> (")
            .text(&a.probability);
        h.raw("), confidence ").text(&a.confidence).raw(".");
        if !a.reasoning.is_empty() {
            h.raw(" Because: ").text(&a.reasoning.join("; ")).raw(".");
        }
        h.raw("</p>");
    }
    for line in &i.attribution {
        h.raw("<p class=\"attrib\"><b>Attribution:</b> ").text(line).raw("</p>");
    }
    annotations(h, d.annotations.iter().filter(|a| a.target == Target::Incident && a.target_id == i.id));
    h.raw("<h4>Attack chain</h4>");
    let (groups, of_stage) = group_stages(d, i);
    let marks: Vec<Mark> = i
        .stages
        .iter()
        .zip(&of_stage)
        .filter_map(|(s, &g)| {
            Some(Mark {
                time: Timestamp::parse(&s.time)?.as_micros(),
                lane: if groups[g].host.is_empty() { "(no host)".into() } else { groups[g].host.clone() },
                tactic: s.tactic.clone(),
                number: g + 1,
                title: s.rule_title.clone(),
                first_evidence: s.finding_ids.contains(&i.first_evidence),
            })
        })
        .collect();
    h.raw(&timeline_svg(&i.id, i.dwell_seconds, &marks));
    h.raw(&legend(&i.stages.iter().filter_map(|s| s.tactic.clone()).fold(Vec::new(), |mut v, t| {
        if !v.contains(&t) {
            v.push(t);
        }
        v
    })));
    h.fmt(format_args!(
        "<p class=\"muted\">{} stages, shown as {} steps: one row per rule and host, at its first appearance.</p>",
        i.stages.len(),
        groups.len()
    ));
    h.raw("<table class=\"stages\"><thead><tr><th>#</th><th>first seen</th><th>host</th><th>tactic</th><th>level</th><th>what</th></tr></thead><tbody>");
    for (n, g) in groups.iter().enumerate() {
        let s = g.first;
        h.raw(if g.first_evidence { "<tr class=\"first\">" } else { "<tr>" });
        h.fmt(format_args!("<td>{}</td><td class=\"nowrap\">", n + 1)).text(&when(&s.time)).raw("</td><td>");
        match links.entity("host", &g.host) {
            Some(href) if !g.host.is_empty() => h.link(&href, &g.host),
            _ => h.text(&g.host),
        };
        h.raw("</td><td>").text(&s.tactic.as_deref().map(tactic_name).unwrap_or_default()).raw("</td><td>");
        severity_badge(h, s.level);
        h.raw("</td><td>");
        if g.first_evidence {
            h.raw("<b>first evidence</b> · ");
        }
        match s.finding_ids.first() {
            Some(f) => h.link(&links.finding(f), &s.rule_title),
            None => h.text(&s.rule_title),
        };
        h.raw("<div class=\"sentence\">").text(&s.sentence).raw("</div>");
        if g.count > 1 {
            h.fmt(format_args!("<div class=\"muted\">seen {} times ({} findings), last ", g.count, g.findings))
                .text(&when(g.last_time))
                .raw("</div>");
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    if !i.context.is_empty() {
        h.fmt(format_args!(
            "<details><summary>{} earlier findings on these entities, shown for context (linked by host only, not counted in dwell)</summary><ul>",
            i.context.len()
        ));
        for s in i.context.iter().take(50) {
            h.raw("<li>").text(&when(&s.time)).raw(" — ").text(&s.rule_title).raw(": ").text(&s.sentence).raw("</li>");
        }
        h.raw("</ul></details>");
    }
    h.raw("<h4>ATT&amp;CK techniques seen</h4>");
    h.raw(&attack_matrix(&i.attack, &i.techniques));
    h.raw("<h4>Entities</h4><table class=\"entities\"><thead><tr><th>kind</th><th>value</th><th>findings</th></tr></thead><tbody>");
    for e in i.entities.iter().take(100) {
        h.raw("<tr><td>").text(&e.kind).raw("</td><td>");
        match links.entity(&e.kind, &e.value) {
            Some(href) => h.link(&href, &e.value),
            None => h.el("code", "", &e.value),
        };
        h.fmt(format_args!("</td><td>{}</td></tr>", e.findings));
    }
    h.raw("</tbody></table>");
    if i.entities.len() > 100 {
        h.fmt(format_args!("<p class=\"muted\">{} more entities not shown.</p>", i.entities.len() - 100));
    }
    h.raw("<h4>Why these findings are one incident</h4><details><summary>");
    h.text(&plural(i.explanation.len(), "join", "joins")).raw("</summary><table class=\"joins\"><tbody>");
    for j in i.explanation.iter().take(300) {
        h.raw("<tr><td>").link(&links.finding(&j.finding), &short(&j.finding)).raw("</td><td>").text(&j.reason).raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    if i.explanation.len() > 300 {
        h.fmt(format_args!("<p class=\"muted\">{} more joins not shown.</p>", i.explanation.len() - 300));
    }
    h.raw("</details>");
    h.raw("<h4>First evidence, as read</h4>");
    match d.cited.get(&i.first_evidence) {
        Some(f) => {
            if let Some(line) = d.original_lines.get(&f.id) {
                h.raw("<p>The line in <code>")
                    .text(f.path.as_deref().unwrap_or(""))
                    .fmt(format_args!(":{}</code>:</p>", f.record.unwrap_or(0)));
                h.raw("<pre class=\"event original\">").text(line).raw("</pre><p>As Portcullis read it:</p>");
            }
            evidence(h, f, links)
        }
        None => {
            h.raw("<p class=\"muted\">The first evidence finding is not in the case.</p>");
        }
    }
    h.raw("</section>");
}

fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

/// A finding with where it was read and the event as read.
pub fn evidence(h: &mut Html, f: &FindingRow, links: &dyn Links) {
    h.raw("<div class=\"evidence\"><p>");
    severity_badge(h, Some(f.level));
    h.raw(" ");
    match links.rule(&f.rule_id) {
        Some(href) => h.link(&href, &f.rule_title),
        None => h.el("b", "", &f.rule_title),
    };
    h.raw(" · ").text(&f.first_ts.as_deref().map(when).unwrap_or_else(|| "no time".into()));
    if let Some(host) = &f.host {
        h.raw(" · ");
        match links.entity("host", &host_label(host)) {
            Some(href) => h.link(&href, host),
            None => h.text(host),
        };
    }
    h.raw("</p><p class=\"sentence\">").text(&f.sentence).raw("</p><p class=\"where\">");
    if let Some(p) = &f.path {
        h.raw("read from <code>").text(p).raw("</code>");
        if let Some(r) = f.record {
            h.fmt(format_args!(" record/line <code>{r}</code>"));
        }
    }
    if let Some(l) = &f.log {
        h.raw(" · log ").text(l);
    }
    h.raw(" · finding <code>").text(&f.id).raw("</code> (").text(&f.matcher).raw(", ").text(&f.rule_source).raw(" rule)</p>");
    if let Some(ev) = &f.event {
        let pretty = serde_json::from_str::<serde_json::Value>(ev)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| ev.clone());
        let mut shown: String = pretty.chars().take(8000).collect();
        if shown.len() < pretty.len() {
            shown.push_str("\n… (truncated)");
        }
        h.raw("<pre class=\"event\">").text_pre(&shown).raw("</pre>");
    }
    h.raw("</div>");
}

fn annotations<'a>(h: &mut Html, list: impl Iterator<Item = &'a Annotation>) {
    let list: Vec<&Annotation> = list.collect();
    if list.is_empty() {
        return;
    }
    h.raw("<ul class=\"triage\">");
    for a in list {
        h.raw("<li><span class=\"verdict ").raw(a.verdict.as_str()).raw("\">").text(a.verdict.label()).raw("</span> by ").text(&a.author);
        h.raw(" at ").text(&when(&a.created));
        if !a.note.is_empty() {
            h.raw(": ").text(&a.note);
        }
        h.raw("</li>");
    }
    h.raw("</ul>");
}

/// Triage annotations on a target, newest first (for the UI's pages).
pub fn annotations_of(h: &mut Html, d: &[Annotation], target: Target, id: &str) {
    annotations(h, d.iter().filter(|a| a.target == target && a.target_id == id));
}

/// One mail campaign: judgement, senders, signals, every recipient graded.
pub fn campaign(h: &mut Html, c: &CampaignView, notes: &[Annotation], links: &dyn Links) {
    h.fmt(format_args!("<section class=\"campaign\" id=\"{}\">", url_part(&c.id)));
    h.raw("<h3><span class=\"sev ").text(&c.severity).raw("\">").text(&c.severity).raw("</span> Campaign ").text(&c.id).raw("</h3>");
    h.raw("<p>")
        .text(&c.first_seen.as_deref().map(when).unwrap_or_default())
        .raw(" → ")
        .text(&c.last_seen.as_deref().map(when).unwrap_or_default());
    h.fmt(format_args!(
        " · {} messages · {} recipients · <b>{} members targeted</b> · ",
        c.messages,
        c.recipients.len(),
        c.members_targeted
    ));
    grades(h, &c.grades);
    h.raw("</p>");
    if let Some(j) = &c.judgement {
        h.raw("<p class=\"assess\"><b>Assessment:</b> ")
            .text(&j.judgement)
            .raw(" — <b>")
            .text(&j.likelihood)
            .raw("</b> (")
            .text(&j.probability);
        h.raw("), confidence ").text(&j.confidence).raw(".</p>");
    }
    h.raw("<p>").text(&c.assessment).raw("</p>");
    for line in &c.attribution {
        h.raw("<p class=\"attrib\"><b>Attribution:</b> ").text(line).raw("</p>");
    }
    annotations(h, notes.iter().filter(|a| a.target == Target::Campaign && a.target_id == c.id));
    h.raw("<h4>Signals</h4><ul>");
    for s in &c.signals {
        h.raw("<li>").text(&s.what).fmt(format_args!(" <span class=\"muted\">({} messages)</span></li>", s.messages));
    }
    h.raw("</ul><h4>Senders</h4><ul>");
    for s in c.senders.iter().take(50) {
        h.raw("<li>");
        if let Some(n) = &s.name {
            h.raw("“").text(n).raw("” ");
        }
        h.raw("&lt;");
        match links.entity("mailbox", &s.address) {
            Some(href) => h.link(&href, &s.address),
            None => h.text(&s.address),
        };
        h.fmt(format_args!("&gt; — {} messages</li>", s.messages));
    }
    h.raw("</ul>");
    if !c.domains.is_empty() || !c.sending_ips.is_empty() {
        h.raw("<p>Infrastructure: ").text(&c.domains.join(", "));
        if !c.sending_ips.is_empty() {
            h.raw(" · sending IPs ").text(&c.sending_ips.join(", "));
        }
        h.raw("</p>");
    }
    if !c.subjects.is_empty() {
        h.raw("<p>Subjects: ").text(&c.subjects.iter().take(10).cloned().collect::<Vec<_>>().join(" · ")).raw("</p>");
    }
    h.raw("<h4>Recipients</h4><table class=\"recipients\"><thead><tr><th>recipient</th><th>member</th><th>grade</th><th>first received</th><th>evidence</th></tr></thead><tbody>");
    let rank = |g: &str| match g {
        "compromised" => 0,
        "clicked" => 1,
        "opened" => 2,
        _ => 3,
    };
    let mut rs: Vec<_> = c.recipients.iter().collect();
    rs.sort_by(|a, b| {
        rank(&a.grade).cmp(&rank(&b.grade)).then(b.member.is_some().cmp(&a.member.is_some())).then(a.address.cmp(&b.address))
    });
    for r in rs {
        h.raw("<tr><td>").text(&r.address).raw("</td><td>").text(r.member.as_deref().unwrap_or("")).raw("</td><td>");
        h.raw("<span class=\"grade ").raw(match r.grade.as_str() {
            "compromised" => "compromised",
            "clicked" => "clicked",
            "opened" => "opened",
            _ => "received",
        });
        h.raw("\">")
            .text(&r.grade)
            .raw("</span></td><td class=\"nowrap\">")
            .text(&r.first_received.as_deref().map(when).unwrap_or_default())
            .raw("</td><td>");
        for e in r.evidence.iter().take(3) {
            h.raw("<div>")
                .text(&e.time.as_deref().map(when).unwrap_or_default())
                .raw(" ")
                .text(&e.kind)
                .raw(" <code>")
                .text(&e.at)
                .raw("</code> ")
                .text(&e.detail)
                .raw("</div>");
        }
        if r.evidence.len() > 3 {
            h.fmt(format_args!("<div class=\"muted\">{} more</div>", r.evidence.len() - 3));
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table></section>");
}

/// Unique electors by category and scope, and the files they were found in.
pub fn exposure(h: &mut Html, e: Option<&ExposureView>) {
    h.raw("<section id=\"exposure\"><h2>Exposure of electoral registers</h2>");
    let Some(e) = e else {
        h.raw("<p class=\"muted\">No exposure scan is recorded in this case.</p></section>");
        return;
    };
    h.fmt(format_args!(
        "<p><b>{}</b> unique electors in {} register copies among {} files examined ({} rows).</p>",
        e.totals.unique_electors, e.totals.register_files, e.totals.files, e.totals.rows
    ));
    let mut cats: Vec<&String> = e.totals.by_category.keys().collect();
    cats.sort_by(|a, b| e.totals.by_category[*b].cmp(&e.totals.by_category[*a]).then(a.cmp(b)));
    h.raw("<table class=\"exposure\"><thead><tr><th>category</th><th>all files</th><th>on systems the intrusion reached</th><th>evidenced as accessed</th></tr></thead><tbody>");
    let scoped = |s: &Option<portcullis_case::read::ExposureScope>, k: &str| -> String {
        s.as_ref().map_or("not scoped".into(), |s| s.by_category.get(k).copied().unwrap_or(0).to_string())
    };
    for k in cats {
        h.raw("<tr><td>").text(k).fmt(format_args!("</td><td>{}</td><td>", e.totals.by_category[k]));
        h.text(&scoped(&e.totals.on_compromised_systems, k))
            .raw("</td><td>")
            .text(&scoped(&e.totals.evidenced_as_accessed, k))
            .raw("</td></tr>");
    }
    h.fmt(format_args!("<tr class=\"total\"><td>unique electors</td><td>{}</td><td>", e.totals.unique_electors));
    h.text(&e.totals.on_compromised_systems.as_ref().map_or("not scoped".into(), |s| s.unique_electors.to_string())).raw("</td><td>");
    h.text(&e.totals.evidenced_as_accessed.as_ref().map_or("not scoped".into(), |s| s.unique_electors.to_string()))
        .raw("</td></tr></tbody></table>");
    h.raw("<h4>Register copies</h4><table class=\"files\"><thead><tr><th>file</th><th>type</th><th>rows</th><th>confidence</th><th>scope</th></tr></thead><tbody>");
    let registers: Vec<_> = e.files.iter().filter(|f| f.register).collect();
    for f in registers.iter().take(300) {
        h.raw("<tr><td><code>")
            .text(&f.path)
            .raw("</code></td><td>")
            .text(&f.file_type)
            .fmt(format_args!("</td><td>{}</td><td>{:.2}</td><td>", f.rows, f.confidence));
        let scope = match (f.on_compromised_system, f.accessed) {
            (_, true) => "evidenced as accessed",
            (true, false) => "on a compromised system",
            _ => "",
        };
        h.text(scope).raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    if registers.len() > 300 {
        h.fmt(format_args!("<p class=\"muted\">{} more register files not shown.</p>", registers.len() - 300));
    }
    h.raw("</section>");
}

/// The regulator's findings as checks (`portcullis posture`): weaknesses with their
/// evidence, and what the logs could not show with the setting that fixes it.
pub fn posture(h: &mut Html, p: Option<&portcullis_case::read::PostureView>) {
    h.raw("<section id=\"posture\"><h2>Posture: patching, passwords, MFA, logging</h2>");
    let Some(p) = p else {
        h.raw("<p class=\"muted\">No posture check is recorded in this case (<code>portcullis posture LOGS --case CASE</code> adds one).</p></section>");
        return;
    };
    let (weak, blind): (Vec<_>, Vec<_>) = p.rows.iter().partition(|r| r.kind == "weakness");
    if weak.is_empty() {
        h.raw("<p>No weakness found in the logs read.</p>");
    } else {
        h.fmt(format_args!("<p>{} found:</p>", plural(weak.len(), "weakness", "weaknesses")));
        h.raw("<table class=\"posture\"><thead><tr><th>check</th><th>level</th><th>subject</th><th>finding</th><th>evidence</th></tr></thead><tbody>");
        for r in weak {
            h.raw("<tr><td>").text(&r.check.replace('_', " ")).raw("</td><td>");
            let sev = r.severity.as_deref().unwrap_or("info");
            h.raw("<span class=\"sev ")
                .text(sev)
                .raw("\">")
                .text(sev)
                .raw("</span></td><td>")
                .text(r.subject.as_deref().unwrap_or(""))
                .raw("</td><td>");
            h.text(&r.summary).raw("</td><td>");
            for e in r.evidence.iter().take(3) {
                let pos = e.position.line.map(|l| format!(":{l}")).or(e.position.record.map(|n| format!("#{n}"))).unwrap_or_default();
                h.raw("<div>")
                    .text(&e.time.as_deref().map(when).unwrap_or_default())
                    .raw(" ")
                    .text(&e.what)
                    .raw(" <code>")
                    .text(&format!("{}{pos}", e.file))
                    .raw("</code></div>");
            }
            h.raw("</td></tr>");
        }
        h.raw("</tbody></table>");
    }
    if !blind.is_empty() {
        h.raw("<h4>What these logs could not show</h4><ul>");
        for r in blind {
            h.raw("<li>").text(&r.summary);
            if let Some(fix) = &r.fix {
                h.raw(" <span class=\"muted\">Fix: ").text(fix).raw("</span>");
            }
            h.raw("</li>");
        }
        h.raw("</ul>");
    }
    h.raw("</section>");
}

/// Which logs were read, the periods they cover, the gaps between them, and the rules:
/// what "nothing found" covers.
pub fn coverage(h: &mut Html, d: &CaseData) {
    h.raw("<section id=\"coverage\"><h2>Coverage: what was read</h2>");
    let events: i64 = d.sources.iter().map(|s| s.events).sum();
    let skipped: i64 = d.sources.iter().map(|s| s.skipped).sum();
    h.fmt(format_args!(
        "<p>{} log files read, {} events, {} records skipped (each with its reason below).</p>",
        d.sources.len(),
        events,
        skipped
    ));
    let spans: Vec<(i64, i64)> = d
        .sources
        .iter()
        .filter_map(|s| Some((Timestamp::parse(s.first_ts.as_deref()?)?.as_micros(), Timestamp::parse(s.last_ts.as_deref()?)?.as_micros())))
        .collect();
    if spans.is_empty() {
        h.raw("<p class=\"muted\">The periods the logs cover are not recorded in this case (written before Portcullis kept them; hunt into it again).</p>");
    } else {
        let (covered, gaps) = union(spans);
        let first = covered.first().map(|c| c.0).unwrap_or(0);
        let last = covered.last().map(|c| c.1).unwrap_or(0);
        h.raw("<p>The logs cover <b>")
            .text(&when(&Timestamp(first).to_string()))
            .raw("</b> to <b>")
            .text(&when(&Timestamp(last).to_string()))
            .raw("</b>");
        if gaps.is_empty() {
            h.raw(" with no gap of a day or more between files.</p>");
        } else {
            h.fmt(format_args!(
                ", with {} (nothing can be said of these periods):</p><ul>",
                plural(gaps.len(), "gap of a day or more", "gaps of a day or more")
            ));
            for (a, b) in gaps.iter().take(50) {
                h.raw("<li>").text(&when(&Timestamp(*a).to_string())).raw(" to ").text(&when(&Timestamp(*b).to_string()));
                h.raw(" (").text(&duration((b - a) / 1_000_000)).raw(")</li>");
            }
            h.raw("</ul>");
        }
        let incident_start = d.incidents.iter().filter_map(|i| Timestamp::parse(&i.first_seen)).map(|t| t.as_micros()).min();
        if let Some(s) = incident_start
            && s - first < 7 * 86_400_000_000
        {
            h.raw("<p class=\"warn\">The first evidence is within a week of the start of the logs: the intrusion may have begun before them.</p>");
        }
    }
    let hunts: Vec<&RunRow> = d.runs.iter().filter(|r| r.summary.is_some() || r.rules_loaded.is_some()).collect();
    h.raw("<h4>Runs</h4><table class=\"runs\"><thead><tr><th>run</th><th>started</th><th>status</th><th>command</th><th>rules loaded</th><th>rules failed</th><th>events</th><th>new findings</th></tr></thead><tbody>");
    for r in &d.runs {
        h.fmt(format_args!("<tr><td>{}</td><td class=\"nowrap\">", r.id))
            .text(&when(&r.started))
            .raw("</td><td>")
            .text(&r.status)
            .raw("</td><td><code>");
        h.text(&r.command).raw("</code></td><td>");
        h.text(&r.rules_loaded.map(|n| n.to_string()).unwrap_or_default()).raw("</td><td>");
        h.text(&r.summary.as_ref().map(|s| s.rules_failed.len().to_string()).unwrap_or_default()).raw("</td><td>");
        h.text(&r.events.map(|n| n.to_string()).unwrap_or_default()).raw("</td><td>");
        h.text(&r.findings_new.map(|n| n.to_string()).unwrap_or_default()).raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    for r in hunts.iter().filter_map(|r| r.summary.as_ref().map(|s| (r.id, s))) {
        let (id, s) = r;
        if s.rules_failed.is_empty() && s.file_problems.is_empty() && s.files_not_logs.is_empty() && s.warnings.is_empty() {
            continue;
        }
        h.fmt(format_args!(
            "<details><summary>Run {id}: {} rules failed to load, {} files with problems, {} files not logs, {} warnings</summary>",
            s.rules_failed.len(),
            s.file_problems.len(),
            s.files_not_logs.len(),
            s.warnings.len()
        ));
        h.raw("<ul>");
        for w in &s.warnings {
            h.raw("<li class=\"warn\">").text(w).raw("</li>");
        }
        for p in s.file_problems.iter().take(100) {
            h.raw("<li><code>").text(&p.path).raw("</code>: ");
            if let Some(e) = &p.error {
                h.text(e);
            } else {
                h.fmt(format_args!("{} records skipped", p.skipped));
            }
            for n in p.notes.iter().take(3) {
                h.raw("<div class=\"muted\">").text(n).raw("</div>");
            }
            h.raw("</li>");
        }
        for f in s.files_not_logs.iter().take(50) {
            h.raw("<li><code>").text(f).raw("</code>: not a log format Portcullis reads</li>");
        }
        for p in s.rules_failed.iter().take(100) {
            h.raw("<li>rule <code>").text(&p.path).fmt(format_args!(":{}</code>: ", p.line)).text(&p.reason).raw("</li>");
        }
        h.raw("</ul></details>");
    }
    h.raw("<h4>Log files</h4><table class=\"sources\"><thead><tr><th>file</th><th>format</th><th>events</th><th>skipped</th><th>from</th><th>to</th></tr></thead><tbody>");
    for s in d.sources.iter().take(1000) {
        h.raw("<tr><td><code>").text(&s.path).raw("</code>");
        for n in s.notes.iter().take(2) {
            h.raw("<div class=\"muted\">").text(n).raw("</div>");
        }
        h.raw("</td><td>")
            .text(s.format.as_deref().unwrap_or(""))
            .fmt(format_args!("</td><td>{}</td><td>{}</td><td class=\"nowrap\">", s.events, s.skipped));
        h.text(&s.first_ts.as_deref().map(when).unwrap_or_default())
            .raw("</td><td class=\"nowrap\">")
            .text(&s.last_ts.as_deref().map(when).unwrap_or_default())
            .raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    if d.sources.len() > 1000 {
        h.fmt(format_args!(
            "<p class=\"muted\">{} more files not shown (all are in the case's <code>sources</code> table).</p>",
            d.sources.len() - 1000
        ));
    }
    h.raw("</section>");
}

/// Merges time spans; returns the covered intervals and the gaps of a day or more between them.
fn union(mut spans: Vec<(i64, i64)>) -> (Vec<(i64, i64)>, Vec<(i64, i64)>) {
    spans.sort();
    let mut covered: Vec<(i64, i64)> = Vec::new();
    for (a, b) in spans {
        match covered.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => covered.push((a, b)),
        }
    }
    let gaps = covered.windows(2).map(|w| (w[0].1, w[1].0)).filter(|(a, b)| b - a >= 86_400_000_000).collect();
    (covered, gaps)
}

/// The findings cited above, each with its event as read.
pub fn cited_evidence(h: &mut Html, d: &CaseData, links: &dyn Links) {
    h.raw("<section id=\"evidence\"><h2>Evidence cited</h2>");
    h.raw("<p class=\"muted\">The first finding of each stage and each incident's first evidence, with the event as Portcullis read it. Every finding is in the case file.</p>");
    for (id, f) in &d.cited {
        h.fmt(format_args!("<div class=\"cited\" id=\"f-{}\">", url_part(id)));
        evidence(h, f, links);
        annotations(h, d.annotations.iter().filter(|a| a.target == Target::Finding && a.target_id == *id));
        h.raw("</div>");
    }
    h.raw("</section>");
}

/// Every triage verdict people recorded, newest first, with what it is about.
pub fn triage(h: &mut Html, d: &CaseData, links: &dyn Links) {
    h.raw("<section id=\"triage\"><h2>Triage notes</h2>");
    if d.annotations.is_empty() {
        h.raw(
            "<p class=\"muted\">No finding, incident or campaign has been triaged yet (<code>portcullis serve CASE</code>).</p></section>",
        );
        return;
    }
    h.raw("<table class=\"triage\"><thead><tr><th>when</th><th>who</th><th>about</th><th>verdict</th><th>note</th></tr></thead><tbody>");
    for a in &d.annotations {
        h.raw("<tr><td class=\"nowrap\">")
            .text(&when(&a.created))
            .raw("</td><td>")
            .text(&a.author)
            .raw("</td><td>")
            .text(a.target.as_str())
            .raw(" ");
        let href = match a.target {
            Target::Finding if d.cited.contains_key(&a.target_id) => Some(links.finding(&a.target_id)),
            Target::Finding => None,
            Target::Incident => Some(links.incident(&a.target_id)),
            Target::Campaign => Some(links.campaign(&a.target_id)),
        };
        match href {
            Some(href) => h.link(&href, &a.target_id),
            None => h.el("code", "", &a.target_id),
        };
        h.raw("</td><td><span class=\"verdict ")
            .raw(a.verdict.as_str())
            .raw("\">")
            .text(a.verdict.label())
            .raw("</span></td><td>")
            .text(&a.note)
            .raw("</td></tr>");
    }
    h.raw("</tbody></table></section>");
}

/// Findings of a query as a table (the UI's lists).
pub fn finding_table(h: &mut Html, rows: &[FindingRow], links: &dyn Links) {
    h.raw("<table class=\"findings\"><thead><tr><th>time</th><th>level</th><th>rule</th><th>host</th><th>what</th></tr></thead><tbody>");
    for f in rows {
        h.raw("<tr><td class=\"nowrap\">").text(&f.first_ts.as_deref().map(when).unwrap_or_else(|| "no time".into())).raw("</td><td>");
        severity_badge(h, Some(f.level));
        h.raw("</td><td>").link(&links.finding(&f.id), &f.rule_title).raw("</td><td>");
        if let Some(host) = &f.host {
            match links.entity("host", &host_label(host)) {
                Some(href) => h.link(&href, host),
                None => h.text(host),
            };
        }
        h.raw("</td><td class=\"sentence\">").text(&f.sentence).raw("</td></tr>");
    }
    h.raw("</tbody></table>");
}

/// Reads the findings of one incident (for the UI).
pub fn incident_findings(case: &CaseReader, id: &str, limit: usize) -> Result<(Vec<FindingRow>, u64), CaseError> {
    case.findings(&FindingQuery { incident: Some(id.to_string()), limit, ..Default::default() })
}

//! The UI's pages: each reads the case (on a blocking thread) and renders the report's
//! sections with links that are pages here, plus lists, filters, pivots and triage forms.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_case::read::{CaseReader, FindingQuery, Target, Verdict};
use portcullis_report::chart::{duration, when};
use portcullis_report::html::{Html, url_part};
use portcullis_report::sections::{self, CaseData, Links};
use portcullis_sigma::Level;
use serde::Deserialize;

use crate::{App, same};

/// Links between the UI's pages.
struct Ui;

impl Links for Ui {
    fn finding(&self, id: &str) -> String {
        format!("/findings/{}", url_part(id))
    }
    fn incident(&self, id: &str) -> String {
        format!("/incidents/{}", url_part(id))
    }
    fn campaign(&self, id: &str) -> String {
        format!("/campaigns/{}", url_part(id))
    }
    fn entity(&self, kind: &str, value: &str) -> Option<String> {
        (!value.is_empty()).then(|| format!("/entity/{}/{}", url_part(kind), url_part(value)))
    }
    fn rule(&self, rule_id: &str) -> Option<String> {
        Some(format!("/findings?rule={}", url_part(rule_id)))
    }
    fn section(&self, name: &str) -> String {
        match name {
            "coverage" => "/coverage".into(),
            "exposure" => "/exposure".into(),
            _ => format!("/#{name}"),
        }
    }
}

const PAGE: usize = 100;

fn page(title: &str, body: &str) -> Response {
    let mut h = Html::new();
    h.raw("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.raw("<link rel=\"stylesheet\" href=\"/static/app.css\"><title>").text(title).raw(" — Portcullis</title></head><body>");
    h.raw(
        "<header class=\"top\"><a class=\"brand\" href=\"/\">Portcullis</a><a href=\"/\">Incidents</a><a href=\"/findings\">Findings</a>",
    );
    h.raw("<a href=\"/exposure\">Exposure</a><a href=\"/posture\">Posture</a><a href=\"/coverage\">Coverage</a><a href=\"/report.html\">Report</a>");
    h.raw("<form method=\"get\" action=\"/findings\" role=\"search\"><input type=\"search\" name=\"q\" placeholder=\"Search findings and evidence\" aria-label=\"Search\"> <button>Search</button></form></header><main>");
    h.raw(body).raw("</main></body></html>");
    let mut r = (StatusCode::OK, h.into_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let mut h = Html::new();
    h.raw("<h1>")
        .text(status.canonical_reason().unwrap_or("Error"))
        .raw("</h1><p>")
        .text(message)
        .raw("</p><p><a href=\"/\">Back to the case</a></p>");
    let mut r = page("Error", &h.into_string());
    *r.status_mut() = status;
    r
}

/// Runs `f` over a freshly opened case on a blocking thread; its `Err` is a 404 message.
async fn with_case<F>(app: &Arc<App>, title: String, f: F) -> Response
where
    F: FnOnce(&CaseReader) -> Result<Option<String>, String> + Send + 'static,
{
    let path = app.case.clone();
    let result = tokio::task::spawn_blocking(move || {
        let case = CaseReader::open(&path).map_err(|e| e.0)?;
        f(&case)
    })
    .await;
    match result {
        Ok(Ok(Some(body))) => page(&title, &body),
        Ok(Ok(None)) => error_page(StatusCode::NOT_FOUND, "Not in this case."),
        Ok(Err(e)) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("the page failed: {e}")),
    }
}

fn triage_form(h: &mut Html, app: &App, target: Target, id: &str) {
    h.raw("<form class=\"triage\" method=\"post\" action=\"/annotate\"><b>Triage</b> ");
    h.raw("<input type=\"hidden\" name=\"csrf\" value=\"").text(&app.csrf).raw("\">");
    h.raw("<input type=\"hidden\" name=\"target\" value=\"").raw(target.as_str()).raw("\">");
    h.raw("<input type=\"hidden\" name=\"id\" value=\"").text(id).raw("\">");
    h.raw("<select name=\"verdict\" aria-label=\"verdict\">");
    for v in Verdict::ALL {
        h.raw("<option value=\"").raw(v.as_str()).raw("\">").text(v.label()).raw("</option>");
    }
    h.raw("</select> <input type=\"text\" name=\"note\" maxlength=\"4000\" size=\"50\" placeholder=\"note (why)\" aria-label=\"note\"> ");
    h.raw("<button type=\"submit\">Record</button> <span class=\"muted\">as ").text(&app.author);
    h.raw(" — stored beside the finding in the case, never changing it</span></form>");
}

pub async fn overview(State(app): State<Arc<App>>) -> Response {
    with_case(&app, "Case".into(), move |case| {
        let counts = case.counts().map_err(|e| e.0)?;
        let incidents = case.incidents().map_err(|e| e.0)?;
        let campaigns = case.campaigns().map_err(|e| e.0)?;
        let verdicts = case.latest_verdicts(Target::Incident).map_err(|e| e.0)?;
        let mut h = Html::new();
        h.raw("<h1>Case ").text(&case.path().display().to_string()).raw("</h1><div class=\"cards\">");
        let card = |h: &mut Html, n: u64, label: &str, href: &str| {
            h.raw("<div class=\"card\"><b>").text(&n.to_string()).raw("</b>").link(href, label).raw("</div>");
        };
        card(&mut h, counts.incidents, "incidents", "/#incidents");
        card(&mut h, counts.by_level[4] + counts.by_level[3], "high or critical findings", "/findings?level=high");
        card(&mut h, counts.findings, "findings", "/findings");
        card(&mut h, counts.campaigns, "mail campaigns", "/#campaigns");
        card(&mut h, counts.sources, "log files read", "/coverage");
        card(&mut h, counts.events, "events", "/coverage");
        card(&mut h, counts.annotations, "triage notes", "/#incidents");
        h.raw("</div><h2 id=\"incidents\">Incidents</h2>");
        if incidents.is_empty() {
            h.raw("<p>No incident in this case. See <a href=\"/coverage\">coverage</a> for what was read.</p>");
        } else {
            h.raw("<table><thead><tr><th>severity</th><th>incident</th><th>first evidence</th><th>dwell</th><th>hosts</th><th>assessment</th><th>triage</th></tr></thead><tbody>");
            for i in &incidents {
                h.raw("<tr><td>").el("span", &format!("sev {}", i.severity.map_or("info", |l| l.as_str())), i.severity.map_or("?", |l| l.as_str()));
                h.raw("</td><td>").link(&Ui.incident(&i.id), &i.id).fmt(format_args!(" <span class=\"muted\">{} findings</span>", i.finding_count));
                h.raw("</td><td class=\"nowrap\">").text(&when(&i.first_seen)).raw("</td><td>").text(&duration(i.dwell_seconds)).raw("</td><td>");
                for (n, host) in i.entities_of("host").iter().take(4).enumerate() {
                    if n > 0 {
                        h.raw(", ");
                    }
                    h.link(&Ui.entity("host", host).unwrap_or_default(), host);
                }
                h.raw("</td><td>");
                if let Some(a) = &i.assessment {
                    h.text(&a.likelihood).raw(" (").text(&a.confidence).raw(" confidence)");
                }
                h.raw("</td><td>");
                if let Some(v) = verdicts.get(&i.id) {
                    h.raw("<span class=\"verdict ").raw(v.as_str()).raw("\">").text(v.label()).raw("</span>");
                }
                h.raw("</td></tr>");
            }
            h.raw("</tbody></table>");
        }
        h.raw("<h2 id=\"campaigns\">Mail campaigns</h2>");
        if campaigns.is_empty() {
            h.raw("<p class=\"muted\">No mail analysis in this case.</p>");
        } else {
            h.raw("<table><thead><tr><th>severity</th><th>campaign</th><th>first seen</th><th>messages</th><th>members targeted</th><th>grades</th></tr></thead><tbody>");
            for c in &campaigns {
                h.raw("<tr><td><span class=\"sev ").text(&c.severity).raw("\">").text(&c.severity).raw("</span></td><td>").link(&Ui.campaign(&c.id), &c.id);
                if let Some(s) = c.senders.first() {
                    h.raw(" <span class=\"muted\">").text(&s.address).raw("</span>");
                }
                h.raw("</td><td class=\"nowrap\">").text(&c.first_seen.as_deref().map(when).unwrap_or_default());
                h.fmt(format_args!("</td><td>{}</td><td>{}</td><td>", c.messages, c.members_targeted));
                let g: Vec<String> = c.grades.iter().map(|(k, v)| format!("{v} {k}")).collect();
                h.text(&g.join(", ")).raw("</td></tr>");
            }
            h.raw("</tbody></table>");
        }
        h.raw("<h2>Pivots</h2><div class=\"cards\">");
        for (kind, label) in [("host", "Hosts"), ("account", "Accounts"), ("source_ip", "Source addresses"), ("mailbox", "Mailboxes")] {
            let top = case.top_entities(kind, 12).map_err(|e| e.0)?;
            if top.is_empty() {
                continue;
            }
            h.raw("<div class=\"card\"><h4>").text(label).raw("</h4><ul>");
            for (v, n) in top {
                h.raw("<li>").link(&Ui.entity(kind, &v).unwrap_or_default(), &v).fmt(format_args!(" <span class=\"muted\">{n}</span></li>"));
            }
            h.raw("</ul></div>");
        }
        h.raw("</div>");
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn incident(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let app2 = app.clone();
    with_case(&app, format!("Incident {id}"), move |case| {
        let d = CaseData::read(case).map_err(|e| e.0)?;
        let Some(i) = d.incidents.iter().find(|i| i.id == id) else { return Ok(None) };
        let mut h = Html::new();
        triage_form(&mut h, &app2, Target::Incident, &i.id);
        sections::incident(&mut h, &d, i, &Ui);
        let (rows, total) = sections::incident_findings(case, &i.id, PAGE).map_err(|e| e.0)?;
        h.fmt(format_args!("<h4>Findings of this incident ({})</h4>", i.finding_count));
        sections::finding_table(&mut h, &rows, &Ui);
        if total > rows.len() as u64 {
            h.link(&format!("/findings?incident={}", url_part(&i.id)), "all findings of this incident");
        }
        Ok(Some(h.into_string()))
    })
    .await
}

#[derive(Deserialize, Default)]
pub struct FindingParams {
    level: Option<String>,
    host: Option<String>,
    rule: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    kind: Option<String>,
    value: Option<String>,
    incident: Option<String>,
    page: Option<usize>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| s.chars().take(500).collect())
}

/// A bound from a filter box: a date is the start (or end) of that day.
fn bound(s: &Option<String>, end: bool) -> Option<String> {
    let s = nonempty(s)?;
    if s.len() == 10 {
        return Some(format!("{s}T{}", if end { "23:59:59.999999Z" } else { "00:00:00Z" }));
    }
    Some(s)
}

pub async fn findings(State(app): State<Arc<App>>, Query(p): Query<FindingParams>) -> Response {
    with_case(&app, "Findings".into(), move |case| {
        let page_no = p.page.unwrap_or(1).max(1);
        let q = FindingQuery {
            min_level: nonempty(&p.level).and_then(|l| Level::parse(&l)),
            host: nonempty(&p.host),
            rule: nonempty(&p.rule),
            from: bound(&p.from, false),
            to: bound(&p.to, true),
            entity: nonempty(&p.kind).zip(nonempty(&p.value)),
            incident: nonempty(&p.incident),
            text: nonempty(&p.q),
            limit: PAGE,
            offset: (page_no - 1).saturating_mul(PAGE).min(1 << 30),
        };
        let (rows, total) = case.findings(&q).map_err(|e| e.0)?;
        let mut h = Html::new();
        h.raw("<h1>Findings</h1><form class=\"filters\" method=\"get\" action=\"/findings\">");
        let input = |h: &mut Html, name: &str, label: &str, v: &Option<String>, kind: &str| {
            h.raw("<label>").text(label).raw("<input type=\"").raw(kind).raw("\" name=\"").raw(name).raw("\" value=\"");
            h.text(v.as_deref().unwrap_or("")).raw("\"></label>");
        };
        h.raw("<label>level at least<select name=\"level\"><option value=\"\">any</option>");
        for l in Level::ALL {
            let sel = q.min_level == Some(l);
            h.raw("<option value=\"").raw(l.as_str()).raw(if sel { "\" selected>" } else { "\">" }).raw(l.as_str()).raw("</option>");
        }
        h.raw("</select></label>");
        input(&mut h, "host", "host", &p.host, "text");
        input(&mut h, "rule", "rule id or title", &p.rule, "text");
        input(&mut h, "from", "from (date or time)", &p.from, "text");
        input(&mut h, "to", "to", &p.to, "text");
        input(&mut h, "q", "text search", &p.q, "search");
        for (name, v) in [("kind", &p.kind), ("value", &p.value), ("incident", &p.incident)] {
            if let Some(v) = nonempty(v) {
                h.raw("<input type=\"hidden\" name=\"").raw(name).raw("\" value=\"").text(&v).raw("\">");
            }
        }
        h.raw("<button type=\"submit\">Filter</button> <a href=\"/findings\">clear</a></form>");
        if let Some((k, v)) = &q.entity {
            h.raw("<p>Findings naming ").text(k).raw(" <code>").text(v).raw("</code>.</p>");
        }
        if let Some(i) = &q.incident {
            h.raw("<p>Findings of incident ").link(&Ui.incident(i), i).raw(".</p>");
        }
        let first = q.offset + 1;
        let last = q.offset + rows.len();
        if total > portcullis_case::read::COUNT_CAP {
            h.fmt(format_args!("<p class=\"count\"><b>more than {}</b> findings match", portcullis_case::read::COUNT_CAP));
        } else {
            h.fmt(format_args!("<p class=\"count\"><b>{total}</b> findings match"));
        }
        if total > 0 {
            h.fmt(format_args!("; showing {first}–{last}"));
        }
        h.raw(".</p>");
        sections::finding_table(&mut h, &rows, &Ui);
        pager(&mut h, &p, page_no, total);
        Ok(Some(h.into_string()))
    })
    .await
}

fn pager(h: &mut Html, p: &FindingParams, page_no: usize, total: u64) {
    let pages = (total as usize).div_ceil(PAGE).max(1);
    if pages <= 1 {
        return;
    }
    let mut base = String::new();
    for (k, v) in [
        ("level", &p.level),
        ("host", &p.host),
        ("rule", &p.rule),
        ("from", &p.from),
        ("to", &p.to),
        ("q", &p.q),
        ("kind", &p.kind),
        ("value", &p.value),
        ("incident", &p.incident),
    ] {
        if let Some(v) = nonempty(v) {
            base.push_str(&format!("{k}={}&", url_part(&v)));
        }
    }
    h.raw("<nav class=\"pager\">");
    if page_no > 1 {
        h.link(&format!("/findings?{base}page={}", page_no - 1), "← previous").raw(" ");
    }
    let capped = total > portcullis_case::read::COUNT_CAP;
    if capped {
        h.fmt(format_args!("page {page_no} of more than {} ", pages - 1));
    } else {
        h.fmt(format_args!("page {page_no} of {pages} "));
    }
    if page_no < pages || capped {
        h.link(&format!("/findings?{base}page={}", page_no + 1), "next →");
    }
    h.raw("</nav>");
}

pub async fn finding(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let app2 = app.clone();
    with_case(&app, "Finding".into(), move |case| {
        let Some(f) = case.finding(&id).map_err(|e| e.0)? else { return Ok(None) };
        let mut h = Html::new();
        h.raw("<h1>Finding</h1>");
        sections::evidence(&mut h, &f, &Ui);
        let notes = case.annotations(Some((Target::Finding, &f.id))).map_err(|e| e.0)?;
        sections::annotations_of(&mut h, &notes, Target::Finding, &f.id);
        triage_form(&mut h, &app2, Target::Finding, &f.id);
        let incidents = case.finding_incidents(&f.id).map_err(|e| e.0)?;
        if !incidents.is_empty() {
            h.raw("<p>Part of ");
            for (n, i) in incidents.iter().enumerate() {
                if n > 0 {
                    h.raw(", ");
                }
                h.link(&Ui.incident(i), i);
            }
            h.raw(".</p>");
        }
        h.raw("<h4>Entities (pivot to everything about each)</h4><ul>");
        for (kind, value) in case.finding_entities(&f.id).map_err(|e| e.0)? {
            h.raw("<li>").text(&kind).raw(" ").link(&Ui.entity(&kind, &value).unwrap_or_default(), &value).raw("</li>");
        }
        h.raw("</ul><p>").link(&Ui.rule(&f.rule_id).unwrap_or_default(), "every finding of this rule").raw("</p>");
        if !f.evidence.is_empty() {
            h.raw("<h4>Contributing findings</h4><ul>");
            for e in f.evidence.iter().take(200) {
                h.raw("<li>").link(&Ui.finding(e), e).raw("</li>");
            }
            h.raw("</ul>");
        }
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn entity(State(app): State<Arc<App>>, Path((kind, value)): Path<(String, String)>) -> Response {
    with_case(&app, format!("{kind} {value}"), move |case| {
        let (rows, total) = case
            .findings(&FindingQuery { entity: Some((kind.clone(), value.clone())), limit: PAGE, ..Default::default() })
            .map_err(|e| e.0)?;
        let mut h = Html::new();
        h.raw("<h1>").text(&kind).raw(" <code>").text(&value).raw("</code></h1>");
        let incidents = case.incidents().map_err(|e| e.0)?;
        let lower = value.to_lowercase();
        let linked: Vec<_> = incidents.iter().filter(|i| i.entities.iter().any(|e| e.kind == kind && e.value == lower)).collect();
        if linked.is_empty() {
            h.raw("<p>In no incident.</p>");
        } else {
            h.raw("<p>In ");
            for (n, i) in linked.iter().enumerate() {
                if n > 0 {
                    h.raw(", ");
                }
                h.link(&Ui.incident(&i.id), &i.id);
            }
            h.raw(".</p>");
        }
        if total > portcullis_case::read::COUNT_CAP {
            h.fmt(format_args!("<p><b>more than {}</b> findings name it", portcullis_case::read::COUNT_CAP));
        } else {
            h.fmt(format_args!("<p><b>{total}</b> findings name it"));
        }
        if total > rows.len() as u64 {
            h.raw(" (").link(&format!("/findings?kind={}&value={}", url_part(&kind), url_part(&value)), "all of them").raw(")");
        }
        h.raw(".</p>");
        sections::finding_table(&mut h, &rows, &Ui);
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn campaign(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let app2 = app.clone();
    with_case(&app, format!("Campaign {id}"), move |case| {
        let campaigns = case.campaigns().map_err(|e| e.0)?;
        let Some(c) = campaigns.iter().find(|c| c.id == id) else { return Ok(None) };
        let notes = case.annotations(Some((Target::Campaign, &c.id))).map_err(|e| e.0)?;
        let mut h = Html::new();
        triage_form(&mut h, &app2, Target::Campaign, &c.id);
        sections::campaign(&mut h, c, &notes, &Ui);
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn exposure(State(app): State<Arc<App>>) -> Response {
    with_case(&app, "Exposure".into(), move |case| {
        let e = case.exposure().map_err(|e| e.0)?;
        let mut h = Html::new();
        sections::exposure(&mut h, e.as_ref());
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn posture(State(app): State<Arc<App>>) -> Response {
    with_case(&app, "Posture".into(), move |case| {
        let p = case.posture().map_err(|e| e.0)?;
        let mut h = Html::new();
        sections::posture(&mut h, p.as_ref());
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn coverage(State(app): State<Arc<App>>) -> Response {
    with_case(&app, "Coverage".into(), move |case| {
        let d = CaseData::read(case).map_err(|e| e.0)?;
        let mut h = Html::new();
        sections::coverage(&mut h, &d);
        Ok(Some(h.into_string()))
    })
    .await
}

pub async fn report(State(app): State<Arc<App>>) -> Response {
    let path = app.case.clone();
    let result = tokio::task::spawn_blocking(move || {
        let case = CaseReader::open(&path).map_err(|e| e.0)?;
        portcullis_report::report(&case, &portcullis_event::Timestamp::now().to_string()).map_err(|e| e.0)
    })
    .await;
    match result {
        Ok(Ok(html)) => {
            let mut r = html.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            if let Ok(v) = HeaderValue::from_str(&portcullis_report::report_csp()) {
                r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            r
        }
        Ok(Err(e)) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
pub struct AnnotateForm {
    csrf: String,
    target: String,
    id: String,
    verdict: String,
    #[serde(default)]
    note: String,
}

/// Records a triage verdict. Only same-origin form posts carrying this session's CSRF token
/// are accepted; the reply is a redirect to the annotated thing's page (never to a place
/// the request names).
pub async fn annotate(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Form<AnnotateForm>) -> Response {
    if !same(&f.csrf, &app.csrf) {
        return error_page(StatusCode::FORBIDDEN, "The form's CSRF token is wrong or missing; reload the page and try again.");
    }
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s != "same-origin" && s != "none") {
        return error_page(StatusCode::FORBIDDEN, "Changes are only accepted from this UI's own pages.");
    }
    if let (Some(origin), Some(host)) =
        (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        && origin != format!("http://{host}")
    {
        return error_page(StatusCode::FORBIDDEN, "Changes are only accepted from this UI's own pages (origin differs).");
    }
    let (Some(target), Some(verdict)) = (Target::parse(&f.target), Verdict::parse(&f.verdict)) else {
        return error_page(StatusCode::BAD_REQUEST, "Unknown target or verdict.");
    };
    if f.id.is_empty() || f.id.len() > 200 {
        return error_page(StatusCode::BAD_REQUEST, "Bad id.");
    }
    let (path, author, id, note) = (app.case.clone(), app.author.clone(), f.id.clone(), f.note.clone());
    let result = tokio::task::spawn_blocking(move || {
        let case = CaseReader::open(&path).map_err(|e| e.0)?;
        let exists = match target {
            Target::Finding => case.finding(&id).map_err(|e| e.0)?.is_some(),
            Target::Incident => case.incidents().map_err(|e| e.0)?.iter().any(|i| i.id == id),
            Target::Campaign => case.campaigns().map_err(|e| e.0)?.iter().any(|c| c.id == id),
        };
        if !exists {
            return Err(format!("no {} {id} in this case", target.as_str()));
        }
        drop(case);
        portcullis_case::read::annotate(&path, target, &id, verdict, &note, &author).map_err(|e| e.0)
    })
    .await;
    match result {
        Ok(Ok(_)) => {
            let to = match target {
                Target::Finding => Ui.finding(&f.id),
                Target::Incident => Ui.incident(&f.id),
                Target::Campaign => Ui.campaign(&f.id),
            };
            Redirect::to(&to).into_response()
        }
        Ok(Err(e)) => error_page(StatusCode::BAD_REQUEST, &e),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub async fn style() -> Response {
    let mut r = portcullis_report::STYLE.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "No such page.")
}

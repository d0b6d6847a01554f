//! HTML views of a case: the self-contained report (`portcullis report`) and the pages the
//! web UI (`portcullis serve`) serves, both drawn from the same sections.
//!
//! Evidence is attacker-controlled: every string goes through [`html::Html::text`], links
//! are relative only, and the report carries a Content Security Policy that allows no
//! script at all and only its own style sheet (by hash).

pub mod chart;
pub mod html;
pub mod sections;

use base64::Engine as _;
use portcullis_case::CaseError;
use portcullis_case::read::CaseReader;
use sha2::Digest;

use html::Html;
use sections::{Anchors, CaseData};

/// The style sheet shared by the report (inline, pinned by hash) and the UI (served).
pub const STYLE: &str = include_str!("style.css");

/// The report's Content Security Policy: nothing may load or run; only the inline style
/// sheet whose hash this is.
pub fn report_csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE.as_bytes()));
    format!("default-src 'none'; style-src 'sha256-{hash}'; img-src data:; base-uri 'none'; form-action 'none'")
}

/// The whole report as one HTML document.
pub fn report(case: &CaseReader, generated: &str) -> Result<String, CaseError> {
    let d = CaseData::read(case)?;
    let links = Anchors;
    let mut h = Html::new();
    h.raw("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    // Ours, not evidence: quotes as they are (the hash is base64, no `"`).
    h.raw("<meta http-equiv=\"Content-Security-Policy\" content=\"").raw(&report_csp()).raw("\">");
    h.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">");
    h.raw("<title>Portcullis report — ").text(&file_name(&d.path)).raw("</title><style>").raw(STYLE).raw("</style></head><body>");
    h.raw("<header class=\"top\"><span class=\"brand\">Portcullis</span><span>Breach report</span></header><main>");
    h.raw("<h1>Breach report: ").text(&file_name(&d.path)).raw("</h1>");
    h.raw("<p class=\"muted\">Case <code>").text(&d.path).raw("</code> · generated ").text(generated);
    h.raw(" · Portcullis ").text(env!("CARGO_PKG_VERSION"));
    h.raw(". Likelihoods use the PHIA probability yardstick; confidence is stated separately. Triage verdicts are people's, shown beside the findings they concern.</p>");
    h.raw(
        "<nav class=\"toc\"><ol><li><a href=\"#summary\">Summary</a></li><li><a href=\"#notification\">Notification facts (draft)</a></li>",
    );
    h.raw("<li><a href=\"#incidents\">Incidents</a></li><li><a href=\"#mail\">Mail campaigns</a></li><li><a href=\"#exposure\">Exposure</a></li><li><a href=\"#posture\">Posture</a></li>");
    h.raw("<li><a href=\"#coverage\">Coverage</a></li><li><a href=\"#triage\">Triage notes</a></li><li><a href=\"#evidence\">Evidence cited</a></li></ol></nav>");
    sections::summary(&mut h, &d, &links);
    sections::notification(&mut h, &d, &links);
    h.raw("<section id=\"incidents\"><h2>Incidents</h2>");
    if d.incidents.is_empty() {
        h.raw("<p>No incident.</p>");
    }
    for i in &d.incidents {
        sections::incident(&mut h, &d, i, &links);
    }
    h.raw("</section><section id=\"mail\"><h2>Mail campaigns</h2>");
    let (notable, low): (Vec<_>, Vec<_>) = d.campaigns.iter().partition(|c| c.severity == "high" || c.severity == "medium");
    if d.campaigns.is_empty() {
        h.raw("<p class=\"muted\">No mail analysis recorded in this case.</p>");
    }
    for c in &notable {
        sections::campaign(&mut h, c, &d.annotations, &links);
    }
    if !low.is_empty() {
        h.fmt(format_args!("<p>{} more campaigns stay below medium (newsletters, single pixels): ", low.len()));
        let ids: Vec<String> = low.iter().map(|c| format!("{} ({} messages)", c.id, c.messages)).collect();
        h.text(&ids.join(", ")).raw(".</p>");
    }
    h.raw("</section>");
    sections::exposure(&mut h, d.exposure.as_ref());
    sections::posture(&mut h, d.posture.as_ref());
    sections::coverage(&mut h, &d);
    sections::triage(&mut h, &d, &links);
    sections::cited_evidence(&mut h, &d, &links);
    h.raw("</main></body></html>");
    Ok(h.into_string())
}

fn file_name(path: &str) -> String {
    std::path::Path::new(path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string())
}

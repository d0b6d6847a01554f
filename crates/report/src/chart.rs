//! Drawings made on the server: the attack-chain timeline (hosts as lanes, stages as marks
//! coloured by ATT&CK tactic, time to scale) as SVG, and the ATT&CK matrix of techniques seen.

use std::collections::BTreeMap;

use portcullis_case::read::TechniqueRow;
use portcullis_event::Timestamp;
use portcullis_finding::TACTICS;

use crate::html::{Html, escape};

/// A colour per tactic, in kill-chain order (distinguishable in print and for common
/// colour-vision deficiencies as far as 14 hues allow; the legend names each).
const TACTIC_COLOURS: [&str; 14] = [
    "#6b7280", "#9ca3af", "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#1f77b4", "#2ca02c", "#9467bd",
    "#393b79", "#000000",
];
const NO_TACTIC: &str = "#c7c7c7";

pub fn tactic_colour(tactic: Option<&str>) -> &'static str {
    tactic.and_then(|t| TACTICS.iter().position(|x| *x == t)).map_or(NO_TACTIC, |i| TACTIC_COLOURS[i])
}

/// Human name of a tactic id (`credential-access` → `Credential access`).
pub fn tactic_name(t: &str) -> String {
    let mut s = t.replace('-', " ");
    if let Some(f) = s.get(0..1) {
        let up = f.to_uppercase();
        s.replace_range(0..1, &up);
    }
    s
}

/// Durations read as the CLI says them (`14 months 3 days`, `2 hours 10 minutes`).
pub use portcullis_incident::human_duration as duration;

/// `2021-08-24 02:13 UTC` from an RFC 3339 time (or the text as given).
pub fn when(t: &str) -> String {
    match Timestamp::parse(t) {
        Some(ts) => {
            let (y, mo, d, h, mi, _) = ts.civil();
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
        }
        None => t.to_string(),
    }
}

/// One mark on the attack-chain timeline.
pub struct Mark {
    /// Microseconds since the Unix epoch.
    pub time: i64,
    pub lane: String,
    pub tactic: Option<String>,
    /// The number of its row in the stage table.
    pub number: usize,
    pub title: String,
    pub first_evidence: bool,
}

/// An incident's attack chain as SVG: a lane per host in order of appearance, a mark per
/// stage coloured by tactic and numbered as in the stage table, time to scale.
pub fn timeline_svg(incident_id: &str, dwell_seconds: i64, marks: &[Mark]) -> String {
    let mut lanes: Vec<&str> = Vec::new();
    for m in marks {
        if !lanes.contains(&m.lane.as_str()) {
            lanes.push(&m.lane);
        }
    }
    let (w, left, right, top, lane_h) = (960.0f64, 170.0f64, 40.0f64, 34.0f64, 56.0f64);
    let height = top + lane_h * lanes.len().max(1) as f64 + 46.0;
    let t0 = marks.iter().map(|m| m.time).min().unwrap_or(0);
    let t1 = marks.iter().map(|m| m.time).max().unwrap_or(0).max(t0 + 1);
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * (w - left - right);
    let mut h = Html::new();
    h.fmt(format_args!(
        "<svg class=\"chain\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"Attack chain of incident {}: {} stages on {} hosts over {}\">",
        escape(incident_id),
        marks.len(),
        lanes.len(),
        escape(&duration(dwell_seconds))
    ));
    h.fmt(format_args!(
        "<text x=\"{left}\" y=\"18\" class=\"axis\">dwell {} (first evidence to last), drawn to scale</text>",
        escape(&duration(dwell_seconds))
    ));
    for (i, lane) in lanes.iter().enumerate() {
        let y = top + lane_h * i as f64 + lane_h / 2.0;
        h.fmt(format_args!(
            "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#d1d5db\" stroke-width=\"1\"/><text x=\"8\" y=\"{}\" class=\"lane\">{}</text>",
            w - right,
            y + 4.0,
            escape(&truncate(lane, 22))
        ));
    }
    // Ticks: start, end, and calendar ticks between when the span allows.
    let axis_y = top + lane_h * lanes.len().max(1) as f64 + 8.0;
    h.fmt(format_args!("<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#6b7280\"/>", w - right));
    for (t, label) in ticks(t0, t1) {
        let tx = x(t);
        h.fmt(format_args!(
            "<line x1=\"{tx:.1}\" y1=\"{axis_y}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#6b7280\"/><text x=\"{tx:.1}\" y=\"{}\" class=\"tick\">{}</text>",
            axis_y + 5.0,
            axis_y + 18.0,
            escape(&label)
        ));
    }
    // Marks that would overlap in a lane are stacked; the same stage seen again at the same
    // place is drawn once.
    let mut drawn: BTreeMap<usize, Vec<(f64, usize)>> = BTreeMap::new();
    for m in marks {
        let lane = lanes.iter().position(|l| *l == m.lane).unwrap_or(0);
        let cx = x(m.time);
        let used = drawn.entry(lane).or_default();
        if used.iter().any(|&(px, n)| n == m.number && (px - cx).abs() < 14.0) {
            continue;
        }
        let level = used.iter().filter(|&&(px, _)| (px - cx).abs() < 14.0).count() % 4;
        used.push((cx, m.number));
        let cy = top + lane_h * lane as f64 + lane_h / 2.0 - 12.0 * level as f64 + 6.0;
        let colour = tactic_colour(m.tactic.as_deref());
        let r = if m.first_evidence { 9.0 } else { 7.0 };
        h.fmt(format_args!(
            "<g class=\"mark\"><circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{r}\" fill=\"{colour}\" stroke=\"#111827\" stroke-width=\"1\"/>"
        ));
        h.fmt(format_args!("<text x=\"{cx:.1}\" y=\"{:.1}\" class=\"num\">{}</text>", cy + 3.5, m.number));
        h.fmt(format_args!(
            "<title>{}. {} — {} ({}) on {}</title></g>",
            m.number,
            escape(&when(&portcullis_event::Timestamp(m.time).to_string())),
            escape(&m.title),
            escape(&m.tactic.as_deref().map(tactic_name).unwrap_or_else(|| "no tactic".into())),
            escape(&m.lane)
        ));
    }
    h.raw("</svg>");
    h.into_string()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// Axis ticks for a span: the ends, and month, day or hour boundaries between them.
fn ticks(t0: i64, t1: i64) -> Vec<(i64, String)> {
    let span = t1 - t0;
    const DAY: i64 = 86_400_000_000;
    let label = |t: i64| {
        let (y, mo, d, h, mi, sec) = Timestamp(t).civil();
        if span < 2 * 3_600_000_000 {
            format!("{h:02}:{mi:02}:{sec:02}")
        } else if span < 3 * DAY {
            format!("{mo:02}-{d:02} {h:02}:{mi:02}")
        } else {
            format!("{y:04}-{mo:02}-{d:02}")
        }
    };
    let mut out = vec![(t0, label(t0))];
    let step = if span > 400 * DAY {
        90 * DAY
    } else if span > 60 * DAY {
        30 * DAY
    } else if span > 10 * DAY {
        7 * DAY
    } else if span > 2 * DAY {
        DAY
    } else {
        (span / 4).max(1)
    };
    let mut t = t0 + step;
    while t < t1 - step / 2 {
        out.push((t, label(t)));
        t += step;
    }
    if t1 > t0 + 1 {
        out.push((t1, label(t1)));
    }
    out
}

/// The ATT&CK matrix of the techniques seen: a column per tactic in kill-chain order
/// (only tactics with a technique), each technique once per tactic it serves.
pub fn attack_matrix(attack: &[TechniqueRow], techniques: &[String]) -> String {
    let mut cols: BTreeMap<usize, Vec<(&str, &str)>> = BTreeMap::new();
    for t in attack {
        for tac in &t.tactics {
            if let Some(i) = TACTICS.iter().position(|x| x == tac) {
                cols.entry(i).or_default().push((t.id.as_str(), t.name.as_str()));
            }
        }
    }
    let mut h = Html::new();
    if cols.is_empty() {
        if techniques.is_empty() {
            h.raw("<p class=\"muted\">No ATT&amp;CK technique is tagged on this incident's findings.</p>");
        } else {
            h.raw("<p>Techniques: ").text(&techniques.join(", ")).raw("</p>");
        }
        return h.into_string();
    }
    h.raw("<table class=\"matrix\"><thead><tr>");
    for i in cols.keys() {
        h.fmt(format_args!("<th class=\"t{i}\">")).text(&tactic_name(TACTICS[*i])).raw("</th>");
    }
    h.raw("</tr></thead><tbody><tr>");
    for (i, techs) in &cols {
        h.fmt(format_args!("<td class=\"t{i}\">"));
        for (id, name) in techs {
            h.raw("<div class=\"tech\"><b>").text(id).raw("</b> ").text(name).raw("</div>");
        }
        h.raw("</td>");
    }
    h.raw("</tr></tbody></table>");
    h.into_string()
}

/// The legend of tactic colours used by the timelines.
pub fn legend(tactics: &[String]) -> String {
    let mut h = Html::new();
    h.raw("<ul class=\"legend\">");
    for t in tactics {
        h.fmt(format_args!(
            "<li><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><circle cx=\"6\" cy=\"6\" r=\"5\" fill=\"{}\"/></svg> ",
            tactic_colour(Some(t))
        ))
        .text(&tactic_name(t))
        .raw("</li>");
    }
    h.raw("</ul>");
    h.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_is_escaped_and_to_scale() {
        let mark = |t: &str, lane: &str, n: usize, title: &str| Mark {
            time: Timestamp::parse(t).unwrap().as_micros(),
            lane: lane.into(),
            tactic: Some("initial-access".into()),
            number: n,
            title: title.into(),
            first_evidence: n == 1,
        };
        let marks = vec![
            mark("2021-01-01T00:00:00Z", "exch01", 1, "<script>alert(1)</script>"),
            mark("2021-04-11T00:00:00Z", "<img src=x onerror=alert(1)>", 2, "late"),
        ];
        let svg = timeline_svg("inc-1", 86_400 * 100, &marks);
        assert!(!svg.contains("<script>") && !svg.contains("<img"), "{svg}");
        assert!(svg.contains("cx=\"170.0\"") && svg.contains("cx=\"920.0\""), "first and last stage at the ends: {svg}");
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(14 * 30 * 86_400 + 3 * 86_400), "14 months 3 days");
        assert_eq!(duration(7_800), "2 hours 10 minutes");
        assert_eq!(duration(45), "45 seconds");
    }
}

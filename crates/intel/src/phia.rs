//! Assessment language: a likelihood on the UK Professional Head of Intelligence Assessment
//! (PHIA) probability yardstick and a separate analytic confidence, each derived from the
//! evidence with the reasoning shown (threat brief §6).

use serde::Serialize;

/// The PHIA yardstick, with its probability ranges; the gaps between ranges are deliberate.
pub const YARDSTICK: [(&str, u8, u8); 7] = [
    ("remote chance", 0, 5),
    ("highly unlikely", 10, 20),
    ("unlikely", 25, 35),
    ("realistic possibility", 40, 50),
    ("likely", 55, 75),
    ("highly likely", 80, 90),
    ("almost certain", 95, 100),
];

#[derive(Clone, Debug, Serialize)]
pub struct Assessment {
    /// What is being judged.
    pub judgement: String,
    /// A PHIA term.
    pub likelihood: &'static str,
    /// Its range, e.g. "80–90%".
    pub probability: String,
    /// Analytic confidence: low, moderate or high (separate from likelihood).
    pub confidence: &'static str,
    pub reasoning: Vec<String>,
}

/// Picks the yardstick term for a point estimate in percent.
pub fn term(percent: u8) -> (&'static str, String) {
    let mut best = YARDSTICK[0];
    for y in YARDSTICK {
        if percent >= y.1 {
            best = y;
        }
    }
    (best.0, format!("{}–{}%", best.1, best.2))
}

/// Builds an assessment from weighed evidence: each (weight in percentage points, reason).
pub fn assess(judgement: &str, base: i32, evidence: &[(i32, String)], confidence: &'static str) -> Assessment {
    let p = evidence.iter().fold(base, |acc, (w, _)| acc + w).clamp(1, 99) as u8;
    let (likelihood, probability) = term(p);
    Assessment {
        judgement: judgement.into(),
        likelihood,
        probability,
        confidence,
        reasoning: evidence.iter().map(|(_, r)| r.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn yardstick_terms() {
        assert_eq!(super::term(97).0, "almost certain");
        assert_eq!(super::term(85).0, "highly likely");
        assert_eq!(super::term(52).0, "realistic possibility");
        assert_eq!(super::term(3).0, "remote chance");
    }
}

//! STIX 2.1, MISP and plain-list export of what a case holds: the indicators that matched
//! (with sightings and observed data), the campaign indicators from `mail`, the incidents
//! and campaigns themselves. Ids are deterministic (UUIDv5-style from the content), so
//! exporting the same case twice gives the same bundle.

use portcullis_event::csv_field;
use serde_json::{Value, json};

use crate::indicator::{Kind, normalise};

/// An indicator that matched in the case: how often, when, and what it indicates.
#[derive(Clone, Debug)]
pub struct Sighted {
    pub kind: Kind,
    pub value: String,
    pub context: String,
    pub source: String,
    pub count: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Incidents whose findings include this match.
    pub incidents: Vec<String>,
}

/// An indicator recorded without a sighting (a `mail` campaign's infrastructure).
#[derive(Clone, Debug)]
pub struct Listed {
    pub kind: Kind,
    pub value: String,
    /// `campaign:<id>`.
    pub source: String,
}

#[derive(Clone, Debug)]
pub struct IncidentSummary {
    pub id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub severity: String,
    pub dwell_seconds: i64,
    pub techniques: Vec<String>,
    pub description: String,
}

#[derive(Clone, Debug)]
pub struct CampaignSummary {
    pub id: String,
    pub name: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub description: String,
}

/// Everything exported.
#[derive(Clone, Debug, Default)]
pub struct CaseIntel {
    pub producer: String,
    pub sighted: Vec<Sighted>,
    pub listed: Vec<Listed>,
    pub incidents: Vec<IncidentSummary>,
    pub campaigns: Vec<CampaignSummary>,
    /// When the export was made (`created`/`modified` of new objects).
    pub now: String,
}

/// A deterministic STIX id for `kind` from `seed`.
pub fn stix_id(kind: &str, seed: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(format!("{kind}\u{0}{seed}").as_bytes()).to_be_bytes();
    let mut b = h;
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!("{kind}--{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// STIX timestamps need milliseconds for created/modified; others accept them too.
pub fn millis(t: &str) -> String {
    match t.strip_suffix('Z') {
        Some(core) if core.contains('.') => {
            let (a, frac) = core.split_once('.').unwrap_or((core, ""));
            format!("{a}.{:0<3}Z", &frac[..frac.len().min(6)])
        }
        Some(core) => format!("{core}.000Z"),
        None => t.to_string(),
    }
}

/// The STIX pattern of an indicator.
pub fn pattern(kind: Kind, value: &str) -> Option<String> {
    let v = value.replace('\\', "\\\\").replace('\'', "\\'");
    Some(match kind {
        Kind::Ipv4 => format!("[ipv4-addr:value = '{v}']"),
        Kind::Ipv6 => format!("[ipv6-addr:value = '{v}']"),
        Kind::Cidr if value.contains(':') => format!("[ipv6-addr:value ISSUBSET '{v}']"),
        Kind::Cidr => format!("[ipv4-addr:value ISSUBSET '{v}']"),
        Kind::Domain => format!("[domain-name:value = '{v}']"),
        Kind::Url => format!("[url:value = '{v}']"),
        Kind::Email => format!("[email-addr:value = '{v}']"),
        Kind::Md5 => format!("[file:hashes.MD5 = '{v}']"),
        Kind::Sha1 => format!("[file:hashes.'SHA-1' = '{v}']"),
        Kind::Sha256 => format!("[file:hashes.'SHA-256' = '{v}']"),
    })
}

/// The cyber observable for a value (None for networks).
fn observable(kind: Kind, value: &str) -> Option<Value> {
    let (t, body) = match kind {
        Kind::Ipv4 => ("ipv4-addr", json!({"value": value})),
        Kind::Ipv6 => ("ipv6-addr", json!({"value": value})),
        Kind::Domain => ("domain-name", json!({"value": value})),
        Kind::Url => ("url", json!({"value": value})),
        Kind::Email => ("email-addr", json!({"value": value})),
        Kind::Md5 => ("file", json!({"hashes": {"MD5": value}})),
        Kind::Sha1 => ("file", json!({"hashes": {"SHA-1": value}})),
        Kind::Sha256 => ("file", json!({"hashes": {"SHA-256": value}})),
        Kind::Cidr => return None,
    };
    let mut o = body;
    o["type"] = json!(t);
    o["spec_version"] = json!("2.1");
    o["id"] = json!(stix_id(t, value));
    Some(o)
}

/// The case as a STIX 2.1 bundle.
pub fn bundle(c: &CaseIntel) -> Value {
    let now = millis(&c.now);
    let producer = stix_id("identity", &c.producer);
    let mut objects = vec![json!({
        "type": "identity", "spec_version": "2.1", "id": producer, "created": now, "modified": now,
        "name": c.producer, "identity_class": "organization",
        "description": "The institution that ran Portcullis and saw these indicators.",
    })];
    let mut incident_ids = std::collections::HashMap::new();
    for i in &c.incidents {
        let id = stix_id("incident", &i.id);
        incident_ids.insert(i.id.clone(), id.clone());
        objects.push(json!({
            "type": "incident", "spec_version": "2.1", "id": id, "created": now, "modified": now, "created_by_ref": producer,
            "name": format!("Portcullis incident {} ({})", i.id, i.severity),
            "description": format!("{} First evidence {}, last {}, dwell {} s. Techniques: {}.", i.description, i.first_seen, i.last_seen, i.dwell_seconds, i.techniques.join(", ")),
            "external_references": [{"source_name": "portcullis", "external_id": i.id}],
        }));
    }
    let mut campaign_ids = std::collections::HashMap::new();
    for k in &c.campaigns {
        let id = stix_id("campaign", &k.id);
        campaign_ids.insert(format!("campaign:{}", k.id), id.clone());
        let mut o = json!({
            "type": "campaign", "spec_version": "2.1", "id": id, "created": now, "modified": now, "created_by_ref": producer,
            "name": k.name, "description": k.description,
            "external_references": [{"source_name": "portcullis", "external_id": k.id}],
        });
        if let Some(f) = &k.first_seen {
            o["first_seen"] = json!(millis(f));
        }
        if let Some(l) = &k.last_seen {
            o["last_seen"] = json!(millis(l));
        }
        objects.push(o);
    }
    let mut seen = std::collections::HashSet::new();
    for s in &c.sighted {
        let Some(pat) = pattern(s.kind, &s.value) else { continue };
        if !seen.insert((s.kind, s.value.clone())) {
            continue;
        }
        let ind = stix_id("indicator", &pat);
        let valid_from = s.first_seen.as_deref().map(millis).unwrap_or_else(|| now.clone());
        objects.push(json!({
            "type": "indicator", "spec_version": "2.1", "id": ind, "created": now, "modified": now, "created_by_ref": producer,
            "name": format!("{} {}", s.kind.as_str(), s.value), "description": format!("Seen by Portcullis; context: {} (from {}).", s.context, s.source),
            "indicator_types": ["malicious-activity"], "pattern": pat, "pattern_type": "stix", "pattern_version": "2.1", "valid_from": valid_from,
        }));
        let mut sighting = json!({
            "type": "sighting", "spec_version": "2.1", "id": stix_id("sighting", &format!("{ind}{}", c.producer)), "created": now, "modified": now,
            "created_by_ref": producer, "sighting_of_ref": ind, "count": s.count.max(1), "where_sighted_refs": [producer],
        });
        if let Some(f) = &s.first_seen {
            sighting["first_seen"] = json!(millis(f));
        }
        if let Some(l) = &s.last_seen {
            sighting["last_seen"] = json!(millis(l));
        }
        if let Some(obs) = observable(s.kind, &s.value) {
            let od = stix_id("observed-data", &format!("{ind}{}", c.producer));
            let first = s.first_seen.as_deref().map(millis).unwrap_or_else(|| now.clone());
            let last = s.last_seen.as_deref().map(millis).unwrap_or_else(|| first.clone());
            objects.push(json!({
                "type": "observed-data", "spec_version": "2.1", "id": od, "created": now, "modified": now, "created_by_ref": producer,
                "first_observed": first, "last_observed": last, "number_observed": s.count.clamp(1, 999_999_999), "object_refs": [obs["id"].clone()],
            }));
            sighting["observed_data_refs"] = json!([od]);
            objects.push(obs);
        }
        objects.push(sighting);
        for inc in &s.incidents {
            if let Some(target) = incident_ids.get(inc) {
                objects.push(relationship(&now, &producer, &ind, "indicates", target));
            }
        }
    }
    for l in &c.listed {
        let Some(pat) = pattern(l.kind, &l.value) else { continue };
        if !seen.insert((l.kind, l.value.clone())) {
            continue;
        }
        let ind = stix_id("indicator", &pat);
        objects.push(json!({
            "type": "indicator", "spec_version": "2.1", "id": ind, "created": now, "modified": now, "created_by_ref": producer,
            "name": format!("{} {}", l.kind.as_str(), l.value), "description": format!("Infrastructure of {}.", l.source),
            "indicator_types": ["malicious-activity"], "pattern": pat, "pattern_type": "stix", "pattern_version": "2.1", "valid_from": now,
        }));
        if let Some(target) = campaign_ids.get(&l.source) {
            objects.push(relationship(&now, &producer, &ind, "indicates", target));
        }
    }
    json!({"type": "bundle", "id": stix_id("bundle", &format!("{}{}", c.producer, objects.len())), "objects": objects})
}

fn relationship(now: &str, producer: &str, src: &str, kind: &str, dst: &str) -> Value {
    json!({
        "type": "relationship", "spec_version": "2.1", "id": stix_id("relationship", &format!("{src}{kind}{dst}")), "created": now, "modified": now,
        "created_by_ref": producer, "relationship_type": kind, "source_ref": src, "target_ref": dst,
    })
}

/// The case as one MISP event (attributes per indicator).
pub fn misp(c: &CaseIntel) -> Value {
    let mut attrs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let all = c
        .sighted
        .iter()
        .map(|s| (s.kind, &s.value, format!("{} (seen {} times)", s.context, s.count)))
        .chain(c.listed.iter().map(|l| (l.kind, &l.value, l.source.clone())));
    for (kind, value, comment) in all {
        if !seen.insert((kind, value.clone())) {
            continue;
        }
        let (t, category) = match kind {
            Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => ("ip-src", "Network activity"),
            Kind::Domain => ("domain", "Network activity"),
            Kind::Url => ("url", "Network activity"),
            Kind::Email => ("email-src", "Payload delivery"),
            Kind::Md5 => ("md5", "Payload delivery"),
            Kind::Sha1 => ("sha1", "Payload delivery"),
            Kind::Sha256 => ("sha256", "Payload delivery"),
        };
        attrs.push(json!({"type": t, "category": category, "value": value, "to_ids": true, "comment": comment}));
    }
    json!({"Event": {"info": format!("Portcullis case export: {}", c.producer), "date": c.now.get(..10).unwrap_or(""), "threat_level_id": "2", "analysis": "1", "distribution": "0", "Attribute": attrs}})
}

/// The case as CSV: `type,value,context`, every cell escaped and guarded against formulas
/// ([`csv_field`]; the import takes the guard off again).
pub fn csv(c: &CaseIntel) -> String {
    let mut out = String::from("type,value,context\n");
    let mut seen = std::collections::HashSet::new();
    for (kind, value, ctx) in
        c.sighted.iter().map(|s| (s.kind, &s.value, &s.context)).chain(c.listed.iter().map(|l| (l.kind, &l.value, &l.source)))
    {
        if seen.insert((kind, value.clone())) {
            out.push_str(&format!("{},{},{}\n", kind.as_str(), csv_field(value), csv_field(ctx)));
        }
    }
    out
}

/// Parses `type` and `value` as stored in a case back into a kind (`url_template` and
/// other kinds without a STIX pattern give None).
pub fn kind_of(t: &str, value: &str) -> Option<Kind> {
    let k = match t {
        "ipv4" => Kind::Ipv4,
        "ipv6" => Kind::Ipv6,
        "cidr" => Kind::Cidr,
        "domain" => Kind::Domain,
        "url" => Kind::Url,
        "email" => Kind::Email,
        "md5" => Kind::Md5,
        "sha1" => Kind::Sha1,
        "sha256" => Kind::Sha256,
        _ => return None,
    };
    normalise(Some(k), value).ok().map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_timestamps_are_stix_shaped() {
        let id = stix_id("indicator", "x");
        let re = regex::Regex::new(r"^[a-z][a-z0-9-]+[a-z0-9]--[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();
        assert!(re.is_match(&id), "{id}");
        assert_eq!(id, stix_id("indicator", "x"));
        assert_eq!(millis("2021-08-24T02:10:17Z"), "2021-08-24T02:10:17.000Z");
        assert_eq!(millis("2021-08-24T02:10:17.5Z"), "2021-08-24T02:10:17.500Z");
        assert_eq!(pattern(Kind::Sha256, "ab"), Some("[file:hashes.'SHA-256' = 'ab']".into()));
    }
}

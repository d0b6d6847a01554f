//! MITRE ATT&CK Enterprise v18.1 names for technique ids and group aliases, shipped as data
//! (`data/attack-enterprise-v18.1.tsv`, with MITRE's attribution notice).

use std::collections::HashMap;
use std::sync::OnceLock;

/// A technique's name and tactics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Technique {
    pub id: String,
    pub name: String,
    pub tactics: Vec<String>,
}

struct Table {
    techniques: HashMap<String, (String, Vec<String>)>,
    /// Lower-cased alias → (group id, name).
    groups: HashMap<String, (String, String)>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut techniques = HashMap::new();
        let mut groups = HashMap::new();
        for line in include_str!("../data/attack-enterprise-v18.1.tsv").lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut c = line.split('\t');
            let (Some(id), Some(name), Some(rest)) = (c.next(), c.next(), c.next()) else { continue };
            if id.starts_with('T') {
                techniques
                    .insert(id.to_string(), (name.to_string(), rest.split(',').filter(|s| !s.is_empty()).map(String::from).collect()));
            } else if id.starts_with('G') {
                for alias in rest.split(',').chain(std::iter::once(name)) {
                    groups.insert(alias.trim().to_lowercase(), (id.to_string(), name.to_string()));
                }
            }
        }
        Table { techniques, groups }
    })
}

/// The technique for `id` (`T1190`, `T1059.001`), if ATT&CK v18.1 has it.
pub fn technique(id: &str) -> Option<Technique> {
    let id = id.trim().to_ascii_uppercase();
    table().techniques.get(&id).map(|(name, tactics)| Technique { id: id.clone(), name: name.clone(), tactics: tactics.clone() })
}

/// Names for a list of ids, unknown ids kept with an empty name.
pub fn name_all(ids: &[String]) -> Vec<Technique> {
    ids.iter().map(|id| technique(id).unwrap_or(Technique { id: id.clone(), name: String::new(), tactics: Vec::new() })).collect()
}

/// The ATT&CK group an actor name or alias refers to: (`G0128`, `ZIRCONIUM`).
pub fn group(alias: &str) -> Option<(String, String)> {
    table().groups.get(&alias.trim().to_lowercase()).cloned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_groups() {
        assert_eq!(super::technique("t1190").unwrap().name, "Exploit Public-Facing Application");
        assert_eq!(super::technique("T1598.003").unwrap().tactics, vec!["reconnaissance"]);
        assert!(super::technique("T9999").is_none());
        assert_eq!(super::group("APT31").unwrap().0, "G0128");
        assert_eq!(super::group("violet typhoon").unwrap().1, "ZIRCONIUM");
    }
}

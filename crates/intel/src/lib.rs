//! Threat intelligence in and out. Indicators come in from STIX 2.1 bundles, MISP events
//! and CSV/plain lists ([`import`]), refanged and normalised ([`indicator`]), and are
//! compiled into an [`IocSet`] that `hunt` runs over every field of every event and
//! `mail` over every campaign. Built-in intel ([`builtin`]) ships as STIX bundles under
//! `crates/intel/data/` with their published sources.

pub mod attack;
pub mod import;
pub mod indicator;
pub mod phia;
pub mod set;
pub mod stix;

pub use import::{Imported, Problem};
pub use indicator::{Context, Indicator, Kind};
pub use set::{Hit, IocSet};

/// The built-in intel: (file name, STIX bundle text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("exchange-2022-wave.stix.json", include_str!("../data/exchange-2022-wave.stix.json")),
    ("apt31-parliament-campaign.stix.json", include_str!("../data/apt31-parliament-campaign.stix.json")),
];

/// What loading indicator files gave.
#[derive(Default)]
pub struct Loaded {
    pub set: IocSet,
    pub problems: Vec<Problem>,
    /// (file, format, indicators read).
    pub files: Vec<(String, &'static str, usize)>,
    pub unsupported: usize,
}

/// Most indicators one run loads (built-in intel and every file together): the matcher
/// keeps each one, so memory follows this count. A run past it is an error naming the file
/// that crossed it.
pub const MAX_INDICATORS: usize = 1_000_000;

/// Loads the built-in intel (if `builtin`) and each file; a file that cannot be read is an
/// error, an indicator that cannot be used is a [`Problem`], more than [`MAX_INDICATORS`]
/// in all is an error.
pub fn load(paths: &[std::path::PathBuf], builtin: bool) -> Result<Loaded, String> {
    let mut all = Vec::new();
    let mut out = Loaded::default();
    let mut take = |name: String, im: Imported, out: &mut Loaded| {
        out.files.push((name, im.format, im.indicators.len()));
        out.problems.extend(im.problems);
        out.unsupported += im.unsupported;
        if all.is_empty() {
            // The first file's list is kept, not copied: a million indicators are 64 MB.
            all = im.indicators;
        } else {
            all.extend(im.indicators);
        }
    };
    if builtin {
        for (name, text) in BUILTIN {
            let im = import::parse(&format!("builtin:{name}"), text.as_bytes());
            take(format!("builtin:{name}"), im, &mut out);
        }
    }
    for p in paths {
        let im = import::read(p)?;
        if im.indicators.is_empty() {
            let first: Vec<String> = im.problems.iter().take(3).map(|p| format!("{}: {}", p.position, p.reason)).collect();
            return Err(format!(
                "{}: no usable indicator in this {} file{}{}",
                p.display(),
                im.format,
                if im.problems.is_empty() { String::new() } else { format!(" ({} refused", im.problems.len()) },
                if first.is_empty() { String::new() } else { format!(", e.g. {})", first.join("; ")) }
            ));
        }
        let before: usize = out.files.iter().map(|f| f.2).sum();
        if before + im.indicators.len() > MAX_INDICATORS {
            return Err(format!(
                "{}: {} indicators, {} with those loaded before it: over the limit of {MAX_INDICATORS} indicators per run \
(split the indicators across runs)",
                p.display(),
                im.indicators.len(),
                before + im.indicators.len()
            ));
        }
        take(p.display().to_string(), im, &mut out);
    }
    out.set = IocSet::new(all);
    Ok(out)
}

/// An intrusion set named in the built-in intel.
pub struct KnownActor {
    pub name: String,
    pub aliases: Vec<String>,
    /// ATT&CK technique ids the intel says it uses, sorted.
    pub techniques: Vec<String>,
}

/// Known actors from the built-in intel, read from its bundles once per process (every
/// incident's assessment asks).
pub fn known_actors() -> &'static [KnownActor] {
    static ACTORS: std::sync::OnceLock<Vec<KnownActor>> = std::sync::OnceLock::new();
    ACTORS.get_or_init(read_known_actors)
}

fn read_known_actors() -> Vec<KnownActor> {
    let mut out = Vec::new();
    for (_, text) in BUILTIN {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { continue };
        let objects = v["objects"].as_array().cloned().unwrap_or_default();
        let by_id: std::collections::HashMap<&str, &serde_json::Value> =
            objects.iter().filter_map(|o| Some((o["id"].as_str()?, o))).collect();
        for o in objects.iter().filter(|o| o["type"] == "intrusion-set") {
            let id = o["id"].as_str().unwrap_or("");
            let mut techniques: Vec<String> = objects
                .iter()
                .filter(|r| r["type"] == "relationship" && r["relationship_type"] == "uses" && r["source_ref"] == id)
                .filter_map(|r| by_id.get(r["target_ref"].as_str()?))
                .filter_map(|ap| ap["external_references"].as_array()?.iter().find_map(|e| e["external_id"].as_str().map(String::from)))
                .collect();
            techniques.sort();
            let aliases = o["aliases"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
            out.push(KnownActor { name: o["name"].as_str().unwrap_or("").to_string(), aliases, techniques });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// The built-in intel's actor, with the techniques its bundle relates to it, read once.
    #[test]
    fn known_actors_are_read_from_the_builtin_bundles_once() {
        let actors = super::known_actors();
        let apt31 = actors.iter().find(|a| a.name == "APT31").expect("APT31 is in the built-in intel");
        assert!(apt31.aliases.iter().any(|a| a == "ZIRCONIUM"), "{:?}", apt31.aliases);
        assert_eq!(apt31.techniques.len(), 12, "{:?}", apt31.techniques);
        assert!(apt31.techniques.windows(2).all(|w| w[0] <= w[1]) && apt31.techniques.contains(&"T1598.003".to_string()));
        assert!(std::ptr::eq(actors, super::known_actors()));
    }
}

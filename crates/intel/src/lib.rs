//! Threat intelligence in and out. Indicators come in from STIX 2.1 bundles, MISP events
//! and CSV/plain lists ([`import`]), refanged and normalised ([`indicator`]), and are
//! compiled into an [`IocSet`] that `hunt` runs over every field of every event and
//! `mail` over every campaign. Built-in intel ([`builtin`]) ships as STIX bundles under
//! `crates/intel/data/` with their published sources.

pub mod import;
pub mod indicator;
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

/// Loads the built-in intel (if `builtin`) and each file; a file that cannot be read is an
/// error, an indicator that cannot be used is a [`Problem`].
pub fn load(paths: &[std::path::PathBuf], builtin: bool) -> Result<Loaded, String> {
    let mut all = Vec::new();
    let mut out = Loaded::default();
    let mut take = |name: String, im: Imported, out: &mut Loaded| {
        out.files.push((name, im.format, im.indicators.len()));
        out.problems.extend(im.problems);
        out.unsupported += im.unsupported;
        all.extend(im.indicators);
    };
    if builtin {
        for (name, text) in BUILTIN {
            let im = import::parse(&format!("builtin:{name}"), text.as_bytes());
            take(format!("builtin:{name}"), im, &mut out);
        }
    }
    for p in paths {
        let im = import::read(p)?;
        take(p.display().to_string(), im, &mut out);
    }
    out.set = IocSet::new(all);
    Ok(out)
}

//! Which Exchange servers are open to which exploit chain, from their build numbers.
//!
//! A server is fixed for a chain when it is at or above the security-update build on
//! its cumulative update (CU), or on a later CU that includes the fix; CUs that never
//! got an update for a chain stay open until upgraded. Builds come from arguments, an
//! inventory, or evidence in logs ([`builds_in_event`]): OWA/ECP resource paths carry
//! `major.minor.build`, and Exchange's HttpProxy / Rps_Http logs carry the full build of
//! the server that wrote them.
//!
//! Facts: ProxyShell and ProxyNotShell builds from the threat brief (§1); ProxyLogon from
//! Microsoft's March 2021 security-update table; OWASSRF (CVE-2022-41080) was fixed by
//! the November 2022 security updates, the same builds as ProxyNotShell. Verify both
//! against Microsoft's build table before relying on a verdict for a rare build.

use std::fmt;

use portcullis_event::Event;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Build {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    /// None when only `major.minor.build` is known (OWA paths): the security update level is unknown.
    pub revision: Option<u32>,
}

impl Build {
    pub fn parse(s: &str) -> Option<Build> {
        let parts: Vec<u32> = s.trim().split('.').map(|p| p.trim().parse().ok()).collect::<Option<_>>()?;
        match parts.as_slice() {
            [15, minor @ 0..=2, build] => Some(Build { major: 15, minor: *minor, build: *build, revision: None }),
            [15, minor @ 0..=2, build, rev] => Some(Build { major: 15, minor: *minor, build: *build, revision: Some(*rev) }),
            _ => None,
        }
    }

    pub fn product(&self) -> &'static str {
        match self.minor {
            0 => "Exchange Server 2013",
            1 => "Exchange Server 2016",
            _ => "Exchange Server 2019",
        }
    }
}

impl fmt::Display for Build {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.revision {
            Some(r) => write!(f, "{}.{}.{}.{}", self.major, self.minor, self.build, r),
            None => write!(f, "{}.{}.{}", self.major, self.minor, self.build),
        }
    }
}

/// The exploit chains checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Chain {
    ProxyLogon,
    ProxyShell,
    ProxyNotShell,
    Owassrf,
}

impl Chain {
    pub const ALL: [Chain; 4] = [Chain::ProxyLogon, Chain::ProxyShell, Chain::ProxyNotShell, Chain::Owassrf];

    pub fn name(self) -> &'static str {
        match self {
            Chain::ProxyLogon => "ProxyLogon",
            Chain::ProxyShell => "ProxyShell",
            Chain::ProxyNotShell => "ProxyNotShell",
            Chain::Owassrf => "OWASSRF",
        }
    }

    pub fn cves(self) -> &'static str {
        match self {
            Chain::ProxyLogon => "CVE-2021-26855, 26857, 26858, 27065",
            Chain::ProxyShell => "CVE-2021-34473, 34523, 31207",
            Chain::ProxyNotShell => "CVE-2022-41040, 41082",
            Chain::Owassrf => "CVE-2022-41080, 41082",
        }
    }

    fn update(self) -> &'static str {
        match self {
            Chain::ProxyLogon => "March 2021 security update",
            Chain::ProxyShell => "April/May 2021 security update",
            Chain::ProxyNotShell | Chain::Owassrf => "November 2022 security update",
        }
    }
}

/// What a CU has for one chain.
#[derive(Clone, Copy)]
enum Fix {
    /// Fixed at this revision of the CU's build.
    At(u32),
    /// The CU's release build already includes the fix.
    Included,
    /// No update was released for this CU.
    None,
}

struct Cu {
    minor: u32,
    build: u32,
    name: &'static str,
    /// ProxyLogon, ProxyShell, ProxyNotShell (OWASSRF = ProxyNotShell).
    fixes: [Fix; 3],
}

use Fix::{At, Included, None as NoFix};

const CUS: &[Cu] = &[
    Cu { minor: 0, build: 1497, name: "CU23", fixes: [At(12), At(18), At(44)] },
    Cu { minor: 1, build: 2106, name: "CU18", fixes: [At(13), NoFix, NoFix] },
    Cu { minor: 1, build: 2176, name: "CU19", fixes: [At(9), At(14), NoFix] },
    Cu { minor: 1, build: 2242, name: "CU20", fixes: [Included, At(10), NoFix] },
    Cu { minor: 1, build: 2308, name: "CU21", fixes: [Included, Included, NoFix] },
    Cu { minor: 1, build: 2375, name: "CU22", fixes: [Included, Included, At(37)] },
    Cu { minor: 1, build: 2507, name: "CU23", fixes: [Included, Included, At(16)] },
    Cu { minor: 2, build: 721, name: "CU7", fixes: [At(13), NoFix, NoFix] },
    Cu { minor: 2, build: 792, name: "CU8", fixes: [At(10), At(15), NoFix] },
    Cu { minor: 2, build: 858, name: "CU9", fixes: [Included, At(12), NoFix] },
    Cu { minor: 2, build: 922, name: "CU10", fixes: [Included, Included, NoFix] },
    Cu { minor: 2, build: 986, name: "CU11", fixes: [Included, Included, At(36)] },
    Cu { minor: 2, build: 1118, name: "CU12", fixes: [Included, Included, At(20)] },
    Cu { minor: 2, build: 1258, name: "CU13", fixes: [Included, Included, Included] },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Fixed,
    Open,
    /// The CU is known but not its security-update level (a three-part build).
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChainVerdict {
    pub chain: &'static str,
    pub cves: &'static str,
    pub status: Status,
    /// What fixes it (or fixed it), in plain words.
    pub remedy: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub server: String,
    pub build: String,
    pub product: &'static str,
    pub cu: String,
    pub su_revision: Option<u32>,
    pub chains: Vec<ChainVerdict>,
    /// Where the build was learnt (argument, inventory, or a log file).
    pub source: String,
}

fn fixed_build(cu: &Cu, rev: u32) -> String {
    format!("15.{}.{}.{}", cu.minor, cu.build, rev)
}

/// The verdict for one server's build.
pub fn check(server: &str, build: Build, source: &str) -> Verdict {
    let product_cus: Vec<&Cu> = CUS.iter().filter(|c| c.minor == build.minor).collect();
    let cu = product_cus.iter().find(|c| c.build == build.build).copied();
    let newest = product_cus.last().copied();
    let cu_name = match cu {
        Some(c) => c.name.to_string(),
        None if newest.is_some_and(|n| build.build > n.build) => format!("later than {}", newest.map(|n| n.name).unwrap_or("?")),
        None => "an older or unlisted CU".to_string(),
    };
    let chains = Chain::ALL
        .iter()
        .map(|&chain| {
            let i = match chain {
                Chain::ProxyLogon => 0,
                Chain::ProxyShell => 1,
                Chain::ProxyNotShell | Chain::Owassrf => 2,
            };
            // The first CU of this product whose release includes the fix, if any.
            let first_included = product_cus.iter().find(|c| matches!(c.fixes[i], Included));
            // The newest CU with an update for this chain (the upgrade target).
            let target = product_cus
                .iter()
                .rev()
                .find_map(|c| match c.fixes[i] {
                    At(r) => Some(format!("{} {} (build {} or later)", c.name, chain.update(), fixed_build(c, r))),
                    Included => Some(format!("{} or later", c.name)),
                    NoFix => None,
                })
                .unwrap_or_else(|| "a supported CU with the update".into());
            let (status, remedy) = match cu {
                Some(c) => match c.fixes[i] {
                    At(r) => match build.revision {
                        Some(rev) if rev >= r => (Status::Fixed, format!("fixed by the {} ({})", chain.update(), fixed_build(c, r))),
                        Some(_) => (Status::Open, format!("install the {} for {} ({})", chain.update(), c.name, fixed_build(c, r))),
                        None => (
                            Status::Unknown,
                            format!("fixed only if the {} ({}) is installed; the log shows only the CU", chain.update(), fixed_build(c, r)),
                        ),
                    },
                    Included => (Status::Fixed, format!("{} includes the fix", c.name)),
                    NoFix => (Status::Open, format!("{} never got an update for {}: upgrade to {target}", c.name, chain.name())),
                },
                None => match (first_included, newest) {
                    (_, Some(n)) if build.build > n.build => (Status::Fixed, format!("a CU later than {} includes the fix", n.name)),
                    _ => (Status::Open, format!("this CU is older than any with a fix: upgrade to {target}")),
                },
            };
            ChainVerdict { chain: chain.name(), cves: chain.cves(), status, remedy }
        })
        .collect();
    Verdict {
        server: server.to_string(),
        build: build.to_string(),
        product: build.product(),
        cu: cu_name,
        su_revision: build.revision,
        chains,
        source: source.to_string(),
    }
}

/// What a build was read from, for the verdict's "build from" line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildEvidence {
    /// An OWA/ECP resource path (`/owa/auth/15.1.2176/…`): the CU, not the security update.
    OwaPath,
    /// The `X-OWA-Version` header logged by IIS.
    OwaVersionHeader,
    /// The version columns of Exchange's own HttpProxy / Rps_Http logs.
    ExchangeLogColumns,
    /// The file version of an Exchange binary in a Sysmon process or image-load event.
    BinaryFileVersion,
}

impl BuildEvidence {
    pub fn describe(self) -> &'static str {
        match self {
            BuildEvidence::OwaPath => "an OWA/ECP resource path in a web log",
            BuildEvidence::OwaVersionHeader => "the X-OWA-Version header in a web log",
            BuildEvidence::ExchangeLogColumns => "the version columns of Exchange's own log",
            BuildEvidence::BinaryFileVersion => "the file version of an Exchange binary in a Sysmon event",
        }
    }
}

/// Builds evidenced by one event: (server, build, what it was read from).
pub fn builds_in_event(ev: &Event) -> Vec<(String, Build, BuildEvidence)> {
    use std::sync::OnceLock;
    static PATH: OnceLock<regex::Regex> = OnceLock::new();
    let re = PATH.get_or_init(|| regex::Regex::new(r"(?i)^/(?:owa|ecp)/(?:auth/)?(15\.[0-2]\.\d{1,5}(?:\.\d{1,5})?)/").expect("valid"));
    let mut out = Vec::new();
    let host = ev.host().unwrap_or("unknown").to_string();
    for name in ["cs-uri-stem", "UrlStem"] {
        if let Some(stem) = ev.get(name)
            && let Some(m) = re.captures(stem)
            && let Some(b) = Build::parse(&m[1])
        {
            out.push((host.clone(), b, BuildEvidence::OwaPath));
        }
    }
    for name in ["cs(X-OWA-Version)", "X-OWA-Version", "sc(X-OWA-Version)"] {
        if let Some(v) = ev.get(name).and_then(Build::parse) {
            out.push((host.clone(), v, BuildEvidence::OwaVersionHeader));
        }
    }
    // Exchange's own CSV logs record the writing server's build.
    if let (Some(ma), Some(mi), Some(bu)) = (ev.get("MajorVersion"), ev.get("MinorVersion"), ev.get("BuildVersion"))
        && let Some(b) = Build::parse(&format!("{ma}.{mi}.{bu}.{}", ev.get("RevisionVersion").unwrap_or("")))
            .or_else(|| Build::parse(&format!("{ma}.{mi}.{bu}")))
    {
        let server = ev.get("ServerHostName").unwrap_or(&host).to_string();
        out.push((server, b, BuildEvidence::ExchangeLogColumns));
    }
    // Sysmon process creation and image loads carry the binary's file version:
    // Exchange's own binaries say `15.01.2176.009`.
    if let Some(image) = ev.get("ImageLoaded").or_else(|| ev.get("Image"))
        && image.to_ascii_lowercase().contains("\\exchange server\\v15\\")
        && let Some(v) = ev.get("FileVersion")
        && let Some(b) = file_version_build(v)
    {
        out.push((host.clone(), b, BuildEvidence::BinaryFileVersion));
    }
    out
}

/// `15.01.2176.009` (a Windows file version, zero-padded) as a build.
fn file_version_build(v: &str) -> Option<Build> {
    let parts: Vec<u32> = v.split_whitespace().next()?.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [15, minor @ 0..=2, build, rev] if *build > 0 => Some(Build { major: 15, minor: *minor, build: *build, revision: Some(*rev) }),
        _ => None,
    }
}

/// Servers and the best build known for each: a full build beats a three-part one of the
/// same CU; otherwise the newest wins. Each build keeps where it was read from.
#[derive(Debug, Default)]
pub struct Inventory {
    pub servers: std::collections::BTreeMap<String, (Build, String)>,
}

impl Inventory {
    pub fn add(&mut self, server: String, b: Build, source: String) {
        let better = match self.servers.get(&server) {
            None => true,
            Some((old, _)) => (b.build, b.revision.is_some(), b.revision) > (old.build, old.revision.is_some(), old.revision),
        };
        if better {
            self.servers.insert(server, (b, source));
        }
    }

    /// An inventory CSV with a server (or name, host, hostname) column and a build (or
    /// version, buildnumber) column; quoted cells as RFC 4180. Errors name the row.
    pub fn add_csv(&mut self, path: &std::path::Path) -> Result<usize, String> {
        let at = |e: &dyn fmt::Display| format!("{}: {e}", path.display());
        let mut r = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| at(&e))?;
        let headers: Vec<String> = r.headers().map_err(|e| at(&e))?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
        let (Some(sc), Some(bc)) = (col(&["server", "name", "host", "hostname"]), col(&["build", "version", "buildnumber"])) else {
            return Err(at(&"needs a server and a build column"));
        };
        let mut n = 0;
        for (i, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| at(&format!("row {}: {e}", i + 2)))?;
            let build = rec.get(bc).unwrap_or("");
            let b = Build::parse(build).ok_or_else(|| at(&format!("row {}: `{build}` is not an Exchange build", i + 2)))?;
            self.add(rec.get(sc).unwrap_or("?").trim().to_string(), b, format!("inventory {}", path.display()));
            n += 1;
        }
        Ok(n)
    }

    /// Verdicts for every server.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.servers.iter().map(|(s, (b, src))| check(s, *b, src)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(build: &str, chain: Chain) -> Status {
        let v = check("s", Build::parse(build).unwrap(), "test");
        v.chains.iter().find(|c| c.chain == chain.name()).unwrap().status
    }

    #[test]
    fn builds_from_binary_file_versions_and_the_best_build_wins() {
        let mut ev = Event::default();
        ev.push_str("Computer", "EXCH01.ec.local");
        ev.push_str("Image", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeHMWorker.exe");
        ev.push_str("FileVersion", "15.01.2176.002");
        let found = builds_in_event(&ev);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, Build::parse("15.1.2176.2").unwrap());
        assert_eq!(found[0].2, BuildEvidence::BinaryFileVersion);
        let mut other = Event::default();
        other.push_str("Image", "C:\\Windows\\System32\\cmd.exe");
        other.push_str("FileVersion", "15.0.1.2");
        assert!(builds_in_event(&other).is_empty(), "only Exchange's own binaries");
        let mut inv = Inventory::default();
        inv.add("EXCH01".into(), Build::parse("15.1.2176").unwrap(), "owa path".into());
        inv.add("EXCH01".into(), Build::parse("15.1.2176.2").unwrap(), "binary".into());
        inv.add("EXCH01".into(), Build::parse("15.1.2176").unwrap(), "owa path again".into());
        assert_eq!(inv.servers["EXCH01"].1, "binary");
    }

    #[test]
    fn verdicts_follow_the_build_table() {
        use Chain::*;
        // Exchange 2016 CU19: ProxyShell fixed at .14; no ProxyNotShell update ever.
        assert_eq!(status("15.1.2176.2", ProxyShell), Status::Open);
        assert_eq!(status("15.1.2176.14", ProxyShell), Status::Fixed);
        assert_eq!(status("15.1.2176.14", ProxyNotShell), Status::Open);
        assert_eq!(status("15.1.2176.14", Owassrf), Status::Open);
        // 2016 CU21: the CU includes the ProxyShell fix.
        assert_eq!(status("15.1.2308.8", ProxyShell), Status::Fixed);
        assert_eq!(status("15.1.2308.8", ProxyNotShell), Status::Open);
        // 2016 CU23 with the November 2022 update.
        assert_eq!(status("15.1.2507.16", ProxyNotShell), Status::Fixed);
        assert_eq!(status("15.1.2507.13", ProxyNotShell), Status::Open);
        assert_eq!(status("15.1.2507.16", ProxyShell), Status::Fixed);
        // 2019: CU9 ProxyShell at .12; CU10 includes it; CU13 includes ProxyNotShell; later CUs too.
        assert_eq!(status("15.2.858.10", ProxyShell), Status::Open);
        assert_eq!(status("15.2.858.12", ProxyShell), Status::Fixed);
        assert_eq!(status("15.2.922.7", ProxyShell), Status::Fixed);
        assert_eq!(status("15.2.986.36", ProxyNotShell), Status::Fixed);
        assert_eq!(status("15.2.1118.20", Owassrf), Status::Fixed);
        assert_eq!(status("15.2.1258.12", ProxyNotShell), Status::Fixed);
        assert_eq!(status("15.2.1544.4", ProxyNotShell), Status::Fixed);
        // 2013 CU23 got every update; an older CU got none of the later ones.
        assert_eq!(status("15.0.1497.18", ProxyShell), Status::Fixed);
        assert_eq!(status("15.0.1497.44", ProxyNotShell), Status::Fixed);
        assert_eq!(status("15.0.1497.40", ProxyNotShell), Status::Open);
        assert_eq!(status("15.0.1473.3", ProxyShell), Status::Open);
        // ProxyLogon.
        assert_eq!(status("15.1.2176.2", ProxyLogon), Status::Open);
        assert_eq!(status("15.1.2176.9", ProxyLogon), Status::Fixed);
        assert_eq!(status("15.2.858.5", ProxyLogon), Status::Fixed);
        // A three-part build (from an OWA path) cannot say whether the update is installed.
        assert_eq!(status("15.1.2176", ProxyShell), Status::Unknown);
        assert_eq!(status("15.1.2308", ProxyShell), Status::Fixed);
    }

    #[test]
    fn remedies_name_the_update() {
        let v = check("EXCH01", Build::parse("15.1.2176.2").unwrap(), "test");
        assert_eq!(v.cu, "CU19");
        assert_eq!(v.product, "Exchange Server 2016");
        let ps = v.chains.iter().find(|c| c.chain == "ProxyShell").unwrap();
        assert!(ps.remedy.contains("15.1.2176.14"), "{}", ps.remedy);
        let pns = v.chains.iter().find(|c| c.chain == "ProxyNotShell").unwrap();
        assert!(pns.remedy.contains("upgrade to CU23") && pns.remedy.contains("15.1.2507.16"), "{}", pns.remedy);
        assert!(Build::parse("14.3.123.4").is_none());
        assert!(Build::parse("15.1.x").is_none());
    }

    #[test]
    fn builds_from_log_evidence() {
        let mut e = Event::new(portcullis_event::SourceKind::W3c);
        e.push_str("s-computername", "EXCH01");
        e.push_str("cs-uri-stem", "/owa/auth/15.1.2176/themes/resources/favicon.ico");
        assert_eq!(builds_in_event(&e), vec![("EXCH01".to_string(), Build::parse("15.1.2176").unwrap(), BuildEvidence::OwaPath)]);
        let mut e = Event::new(portcullis_event::SourceKind::ExchangeCsv);
        for (k, v) in [
            ("MajorVersion", "15"),
            ("MinorVersion", "1"),
            ("BuildVersion", "2176"),
            ("RevisionVersion", "2"),
            ("ServerHostName", "EXCH01"),
        ] {
            e.push_str(k, v);
        }
        assert_eq!(
            builds_in_event(&e),
            vec![("EXCH01".to_string(), Build::parse("15.1.2176.2").unwrap(), BuildEvidence::ExchangeLogColumns)]
        );
    }
}

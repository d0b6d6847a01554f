//! Synthetic electoral register exports on the file share: fake names, real postcode
//! shapes, elector numbers, franchise markers and attainer dates, in the export layout
//! described in the threat brief (§5).

use std::io::{self, Write};
use std::path::Path;

use crate::background::Org;
use crate::{Config, Output, Rng};

/// Register exports, relative to the output directory.
pub const FILES: [&str; 4] = [
    "FS01/Shares/Registers/2021/LA-Northfield-register-2021.csv",
    "FS01/Shares/Registers/2021/LA-Eastbridge-register-2021.csv",
    "FS01/Shares/Registers/2022/LA-Northfield-register-2022.csv",
    "FS01/Shares/Registers/2022/LA-Eastbridge-register-2022.csv",
];

const SURNAMES: [&str; 24] = [
    "Abbott", "Barker", "Carver", "Dunmore", "Ellery", "Fenwick", "Garside", "Hollins", "Ingram", "Jessop",
    "Kettle", "Lomax", "Marlow", "Nuttall", "Orchard", "Pennock", "Quayle", "Ravens", "Sowerby", "Tennant",
    "Upton", "Varley", "Whitlock", "Yardley",
];
const FORENAMES: [&str; 24] = [
    "Ada", "Bertie", "Clara", "Dennis", "Edith", "Felix", "Gwen", "Horace", "Iris", "Jasper", "Kitty", "Lionel",
    "Maud", "Nigel", "Olive", "Percy", "Queenie", "Rupert", "Sybil", "Trevor", "Ursula", "Vernon", "Winifred", "Zac",
];
const STREETS: [&str; 12] = [
    "High Street", "Station Road", "Church Lane", "Mill Road", "Park Avenue", "Victoria Road", "Green Lane",
    "Manor Way", "Queens Road", "Orchard Close", "Bridge Street", "Kings Drive",
];

pub fn generate(_o: &mut Output, _org: &Org, cfg: &Config, out: &Path, rng: &mut Rng) -> io::Result<()> {
    let rows = ((20_000.0 * cfg.scale) as usize).max(200);
    for (i, rel) in FILES.iter().enumerate() {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut w = io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(
            w,
            "Elector Number Prefix,Elector Number,Elector Number Suffix,Elector Markers,Elector DOB,Elector Surname,Elector Forename,PostCode,Address1,Address2,Address3"
        )?;
        let area = if i % 2 == 0 { ("NF", "NE", 4) } else { ("EB", "LS", 7) };
        for n in 0..rows {
            let prefix = format!("{}{}", area.0, (b'A' + (n % 3) as u8) as char);
            let marker = match rng.below(100) {
                0..=1 => "F",
                2..=4 => "E",
                5 => "G",
                _ => "",
            };
            let dob = if marker == "E" { format!("{:02}/{:02}/2004", 1 + rng.below(28), 1 + rng.below(12)) } else { String::new() };
            let postcode = format!(
                "{}{} {}{}{}",
                area.1,
                1 + rng.below(area.2 * 2),
                rng.below(10),
                (b'A' + rng.below(26) as u8) as char,
                (b'A' + rng.below(26) as u8) as char
            );
            let (a1, a2) = if marker == "F" {
                (String::new(), String::new())
            } else {
                (format!("{} {}", 1 + rng.below(200), rng.pick(&STREETS)), if i % 2 == 0 { "Northfield".into() } else { "Eastbridge".into() })
            };
            writeln!(
                w,
                "{prefix},{},,{marker},{dob},{},{},{},{a1},{a2},",
                n + 1,
                rng.pick(&SURNAMES),
                rng.pick(&FORENAMES),
                if marker == "F" { String::new() } else { postcode },
            )?;
        }
        w.flush()?;
    }
    Ok(())
}

//! Recognising register tables (by header names and by content) and turning each row into
//! an elector fingerprint with its categories.

use std::sync::LazyLock;

use regex::Regex;

use crate::table::Row;

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    NumberPrefix,
    Number,
    NumberSuffix,
    Markers,
    Dob,
    FullName,
    Surname,
    Forename,
    MiddleName,
    Postcode,
    Address(u8),
    OptOut,
    Email,
    Phone,
}

impl Role {
    pub fn label(self) -> String {
        match self {
            Role::NumberPrefix => "elector number prefix".into(),
            Role::Number => "elector number".into(),
            Role::NumberSuffix => "elector number suffix".into(),
            Role::Markers => "markers".into(),
            Role::Dob => "date of birth / attainer date".into(),
            Role::FullName => "name".into(),
            Role::Surname => "surname".into(),
            Role::Forename => "forename".into(),
            Role::MiddleName => "middle name".into(),
            Role::Postcode => "postcode".into(),
            Role::Address(n) => format!("address line {n}"),
            Role::OptOut => "open-register opt-out".into(),
            Role::Email => "email address".into(),
            Role::Phone => "phone number".into(),
        }
    }
}

/// A header name → role, by its letters and digits only (`Elector Number Prefix`,
/// `ElectorNumberPrefix` and `elector_number_prefix` are the same).
pub fn header_role(name: &str) -> Option<Role> {
    let n: String = name.chars().filter(|c| c.is_alphanumeric()).flat_map(|c| c.to_lowercase()).collect();
    let r = match n.as_str() {
        "electornumberprefix" | "pd" | "pollingdistrict" | "pollingdistrictcode" | "electorprefix" | "prefix" => Role::NumberPrefix,
        "electornumber" | "electorno" | "electornum" | "enumber" | "elno" | "electorid" | "rollno" | "rollnumber" => Role::Number,
        "electornumbersuffix" | "electorsuffix" | "suffix" => Role::NumberSuffix,
        "electormarkers"
        | "markers"
        | "marker"
        | "markersregistertext"
        | "franchise"
        | "franchisemarker"
        | "franchiseflag"
        | "electormarker" => Role::Markers,
        "electordob" | "dob" | "dateofbirth" | "electordateofbirth" | "birthdate" | "attainerdate" | "dateofattainment"
        | "attainmentdate" => Role::Dob,
        "electorname" | "name" | "fullname" | "electorfullname" => Role::FullName,
        "electorsurname" | "surname" | "lastname" | "familyname" => Role::Surname,
        "electorforename" | "forename" | "forenames" | "firstname" | "givenname" | "electorfirstname" => Role::Forename,
        "middlename" | "middlenames" | "electormiddlename" | "initials" => Role::MiddleName,
        "postcode" | "propertypostcode" | "electorpostcode" | "postalcode" | "registeredpostcode" => Role::Postcode,
        "optedout"
        | "optout"
        | "openregisteroptout"
        | "editedregisteroptout"
        | "optoutflag"
        | "excludedfromopenregister"
        | "optedoutofopenregister" => Role::OptOut,
        "email" | "emailaddress" | "electoremail" => Role::Email,
        "phone" | "telephone" | "phonenumber" | "mobile" | "telephonenumber" => Role::Phone,
        "address" | "street" => Role::Address(1),
        "town" | "city" | "posttown" => Role::Address(8),
        _ => {
            let digits = n.trim_start_matches(|c: char| c.is_alphabetic());
            let stem = &n[..n.len() - digits.len()];
            let k: u8 = digits.parse().ok().filter(|k| (1..=9).contains(k))?;
            match stem {
                "address" | "propertyaddress" | "electoraddress" | "addressline" | "addr" | "registeredaddress" => Role::Address(k),
                _ => return None,
            }
        }
    };
    Some(r)
}

static POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    // The threat brief's pattern (§5), case-insensitive.
    Regex::new(r"(?i)^(GIR 0AA|(([A-Z][0-9]{1,2})|([A-Z][A-HJ-Y][0-9]{1,2})|([A-Z][0-9][A-Z])|([A-Z][A-HJ-Y][0-9][A-Z]?)) ?[0-9][A-Z]{2})$")
        .expect("valid")
});
static ELECTOR_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^[A-Z]{1,4}[0-9]?-?[0-9]{1,6}(/[0-9]{1,3})?$").expect("valid"));
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{Lu}[\p{L}'’.-]*( \p{Lu}[\p{L}'’.-]*)*$").expect("valid"));
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}|[0-9]{4}-[0-9]{2}-[0-9]{2})").expect("valid"));

pub fn is_postcode(s: &str) -> bool {
    s.len() <= 9 && POSTCODE.is_match(s.trim())
}

/// Markers that appear before an elector's name on the register (threat brief §5).
const MARKERS: &[&str] = &["F", "L", "M", "G", "B", "E", "K", "N", "A", "P", "S", "Z"];

/// How a table's columns were understood.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// (column, role).
    pub columns: Vec<(usize, Role)>,
    /// The first row was a header.
    pub header: bool,
    pub confidence: f64,
    pub reasons: Vec<String>,
}

impl Layout {
    pub fn has(&self, r: Role) -> bool {
        self.columns.iter().any(|c| c.1 == r)
    }
    fn col(&self, r: Role) -> Option<usize> {
        self.columns.iter().find(|c| c.1 == r).map(|c| c.0)
    }
    fn has_name(&self) -> bool {
        self.has(Role::FullName) || self.has(Role::Surname) || self.has(Role::Forename)
    }
    fn has_address(&self) -> bool {
        self.columns.iter().any(|c| matches!(c.1, Role::Address(_)))
    }
    /// A table is read as a register when this confident.
    pub fn is_register(&self) -> bool {
        self.confidence >= 0.5 && self.has_name()
    }
}

/// Works out a table's layout from its first rows: header names first, then content.
pub fn classify(sample: &[Row]) -> Layout {
    let Some(first) = sample.first() else { return Layout::default() };
    let mut layout = Layout::default();
    let mut seen = std::collections::HashSet::new();
    for (i, cell) in first.cells().enumerate() {
        if let Some(r) = header_role(cell)
            && seen.insert(r)
        {
            layout.columns.push((i, r));
        }
    }
    let data: &[Row] = if layout.columns.len() >= 2 {
        layout.header = true;
        &sample[1..]
    } else {
        layout.columns.clear();
        sample
    };
    if layout.header {
        let names: Vec<String> = layout.columns.iter().map(|(i, _)| format!("'{}'", first.get(*i))).collect();
        layout.reasons.push(format!("header names {}", names.join(", ")));
        let mut c: f64 = if layout.has_name() { 0.35 } else { 0.0 };
        for (r, w) in [(Role::Number, 0.25), (Role::Markers, 0.15), (Role::Postcode, 0.15), (Role::NumberPrefix, 0.1)] {
            if layout.has(r) {
                c += w;
            }
        }
        if layout.has_address() {
            c += 0.1;
        }
        layout.confidence = c;
    } else {
        content_roles(data, &mut layout);
    }
    // Content confirms (or weakens) what the header says.
    if let Some(p) = layout.col(Role::Postcode) {
        let (hit, n) = fraction(data, p, is_postcode);
        if n > 0 {
            layout.reasons.push(format!("{hit} of {n} sampled postcodes are UK postcodes"));
            if hit * 2 < n {
                layout.confidence -= 0.2;
            }
        }
    }
    if let Some(p) = layout.col(Role::Number)
        && layout.header
    {
        let (hit, n) = fraction(data, p, |v| ELECTOR_NUMBER.is_match(v) || v.bytes().all(|b| b.is_ascii_digit()));
        if n > 0 {
            layout.reasons.push(format!("{hit} of {n} sampled elector numbers have the register's shape"));
        }
    }
    layout.confidence = layout.confidence.clamp(0.0, 0.99);
    layout
}

fn fraction(rows: &[Row], col: usize, f: impl Fn(&str) -> bool) -> (usize, usize) {
    let mut hit = 0;
    let mut n = 0;
    for r in rows {
        let v = r.get(col);
        if v.is_empty() {
            continue;
        }
        n += 1;
        if f(v) {
            hit += 1;
        }
    }
    (hit, n)
}

/// Roles of a headerless table from what its cells look like.
fn content_roles(rows: &[Row], layout: &mut Layout) {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0).min(64);
    let mut names = Vec::new();
    let mut postcode = None;
    let mut number = None;
    let mut markers = None;
    for c in 0..width {
        let (pc, n) = fraction(rows, c, is_postcode);
        if n == 0 {
            continue;
        }
        let (en, _) = fraction(rows, c, |v| ELECTOR_NUMBER.is_match(v) && v.bytes().any(|b| b.is_ascii_alphabetic()));
        let (nm, _) = fraction(rows, c, |v| NAME.is_match(v) && !is_postcode(v));
        let (mk, _) = fraction(rows, c, |v| MARKERS.contains(&v));
        if postcode.is_none() && pc * 10 >= n * 6 {
            postcode = Some(c);
            layout.reasons.push(format!("column {} holds UK postcodes ({pc} of {n})", c + 1));
        } else if number.is_none() && en * 10 >= n * 6 {
            number = Some(c);
            layout.reasons.push(format!("column {} holds elector numbers ({en} of {n})", c + 1));
        } else if markers.is_none() && mk * 10 >= n * 9 {
            markers = Some(c);
        } else if nm * 10 >= n * 7 && names.len() < 2 && postcode.is_none() {
            names.push(c);
        }
    }
    if names.is_empty() {
        return;
    }
    layout.reasons.push(format!("name-like columns {}", names.iter().map(|c| (c + 1).to_string()).collect::<Vec<_>>().join(", ")));
    let mut c: f64 = 0.2;
    for (i, col) in names.iter().enumerate() {
        layout.columns.push((*col, if i == 0 { Role::Surname } else { Role::Forename }));
    }
    if let Some(p) = postcode {
        layout.columns.push((p, Role::Postcode));
        c += 0.25;
        // Address lines sit between the names and the postcode, or after it.
        let last_name = *names.last().expect("non-empty");
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0).min(64);
        let mut k = 1;
        for col in (last_name + 1)..width {
            if col != p && Some(col) != markers && Some(col) != number && k <= 9 {
                layout.columns.push((col, Role::Address(k)));
                k += 1;
            }
        }
    }
    if let Some(n) = number {
        layout.columns.push((n, Role::Number));
        c += 0.3;
    }
    if let Some(m) = markers {
        layout.columns.push((m, Role::Markers));
        c += 0.1;
    }
    // Without a header, names and identifiers are everywhere in logs; a register also has
    // addresses, so content alone needs postcodes to be believed.
    if postcode.is_none() {
        c = c.min(0.4);
        layout.reasons.push("no postcode column, so not read as a register".into());
    }
    layout.confidence = c;
}

/// Category bits of one elector's appearance.
pub const LISTED: u16 = 1;
pub const OPTED_OUT: u16 = 2;
pub const ATTAINER: u16 = 4;
pub const OVERSEAS: u16 = 8;
pub const OTHER_MARKER: u16 = 16;
pub const CATEGORY_BITS: u32 = 5;
pub const CATEGORIES: [&str; 5] = ["full_register", "open_register_opt_outs", "attainers", "overseas_electors", "other_markers"];

/// Turns register rows into elector fingerprints, for one table's layout. Reusable
/// scratch; no allocation per row once warmed up. Cloned for each core keying one table.
#[derive(Clone)]
pub struct Keyer {
    names: Vec<usize>,
    /// Address columns in line order.
    address: Vec<usize>,
    postcode: Option<usize>,
    markers: Option<usize>,
    dob: Option<usize>,
    opt_out: Option<usize>,
    key: Vec<u8>,
    tokens: Vec<u8>,
    spans: Vec<(u32, u32)>,
    postcode_buf: String,
}

/// Result of keying one row.
pub struct Keyed {
    /// 128-bit fingerprint of normalised name + address + postcode.
    pub hash: u128,
    pub categories: u16,
}

impl Keyer {
    pub fn new(layout: &Layout) -> Keyer {
        let names = layout
            .columns
            .iter()
            .filter(|(_, r)| matches!(r, Role::FullName | Role::Surname | Role::Forename | Role::MiddleName))
            .map(|c| c.0)
            .collect();
        let mut address: Vec<(u8, usize)> =
            layout.columns.iter().filter_map(|&(c, r)| if let Role::Address(k) = r { Some((k, c)) } else { None }).collect();
        address.sort_unstable();
        Keyer {
            names,
            address: address.into_iter().map(|a| a.1).collect(),
            postcode: layout.col(Role::Postcode),
            markers: layout.col(Role::Markers),
            dob: layout.col(Role::Dob),
            opt_out: layout.col(Role::OptOut),
            key: Vec::new(),
            tokens: Vec::new(),
            spans: Vec::new(),
            postcode_buf: String::new(),
        }
    }

    /// The elector on this row, or None if it names nobody.
    pub fn key(&mut self, row: &Row) -> Option<Keyed> {
        self.key.clear();
        // Name: its words upper-cased and sorted, so "Surname, Forename", "Forename
        // Surname" and split columns agree.
        self.tokens.clear();
        self.spans.clear();
        for &c in &self.names {
            push_tokens(row.get(c), &mut self.tokens, &mut self.spans);
        }
        if self.spans.is_empty() {
            return None;
        }
        let t = &self.tokens;
        self.spans.sort_unstable_by(|a, b| t[a.0 as usize..a.1 as usize].cmp(&t[b.0 as usize..b.1 as usize]));
        for &(s, e) in &self.spans {
            self.key.extend_from_slice(&t[s as usize..e as usize]);
            self.key.push(b' ');
        }
        self.key.push(0x1f);
        // Postcode without spaces.
        self.postcode_buf.clear();
        if let Some(c) = self.postcode {
            for ch in row.get(c).chars().filter(|c| !c.is_whitespace()) {
                if ch.is_ascii() {
                    self.postcode_buf.push(ch.to_ascii_uppercase());
                } else {
                    self.postcode_buf.extend(ch.to_uppercase());
                }
            }
        }
        // Address: the words of its lines in order, without a trailing postcode some
        // layouts repeat in the last line.
        self.tokens.clear();
        self.spans.clear();
        for &c in &self.address {
            push_tokens(row.get(c), &mut self.tokens, &mut self.spans);
        }
        let mut n = self.spans.len();
        let pc = self.postcode_buf.as_bytes();
        let word = |i: usize| &self.tokens[self.spans[i].0 as usize..self.spans[i].1 as usize];
        if !pc.is_empty() && n >= 2 {
            let (a, b) = (word(n - 2), word(n - 1));
            if a.len() + b.len() == pc.len() && pc.starts_with(a) && pc.ends_with(b) {
                n -= 2;
            }
        }
        if n >= 1 && !pc.is_empty() && word(n - 1) == pc {
            n -= 1;
        }
        for &(s, e) in &self.spans[..n] {
            self.key.extend_from_slice(&self.tokens[s as usize..e as usize]);
            self.key.push(b' ');
        }
        self.key.push(0x1f);
        self.key.extend_from_slice(self.postcode_buf.as_bytes());

        let mut categories = LISTED;
        if let Some(c) = self.markers {
            let v = row.get(c);
            if !v.is_empty() {
                categories |= marker_categories(v);
            }
        }
        if let Some(c) = self.dob
            && !row.get(c).is_empty()
        {
            // On a register only attainers carry a date (the day they reach voting age).
            categories |= ATTAINER;
        }
        if let Some(c) = self.opt_out
            && truthy(row.get(c))
        {
            categories |= OPTED_OUT;
        }
        let hash = xxhash_rust::xxh3::xxh3_128(&self.key);
        Some(Keyed { hash, categories })
    }

    /// The normalised key last built (for tests).
    pub fn last_key(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

fn marker_categories(v: &str) -> u16 {
    let mut categories = 0;
    for m in v.split(|c: char| !c.is_alphanumeric() && c != '/').filter(|m| !m.is_empty()) {
        if DATE.is_match(m) {
            categories |= ATTAINER;
            continue;
        }
        // Markers are letters; "EF" style concatenations count each letter.
        if m.len() <= 3 && m.chars().all(|c| c.is_ascii_alphabetic()) {
            for ch in m.chars() {
                categories |= match ch.to_ascii_uppercase() {
                    'F' => OVERSEAS,
                    'E' => ATTAINER,
                    'Z' => OPTED_OUT,
                    _ => OTHER_MARKER,
                };
            }
        }
    }
    categories
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "1" | "x" | "opted out" | "z")
}

/// Appends the upper-cased alphanumeric words of `s` (apostrophes dropped: O'Brien is
/// OBrien).
fn push_tokens(s: &str, out: &mut Vec<u8>, spans: &mut Vec<(u32, u32)>) {
    let mut start: Option<usize> = None;
    if s.is_ascii() {
        // Fast path: bytes.
        for &b in s.as_bytes() {
            if b.is_ascii_alphanumeric() {
                if start.is_none() {
                    start = Some(out.len());
                }
                out.push(b.to_ascii_uppercase());
            } else if b == b'\'' {
            } else if let Some(st) = start.take() {
                spans.push((st as u32, out.len() as u32));
            }
        }
    } else {
        let mut buf = [0u8; 4];
        for ch in s.chars() {
            if ch.is_alphanumeric() {
                if start.is_none() {
                    start = Some(out.len());
                }
                for u in ch.to_uppercase() {
                    out.extend_from_slice(u.encode_utf8(&mut buf).as_bytes());
                }
            } else if ch == '\'' || ch == '’' {
            } else if let Some(st) = start.take() {
                spans.push((st as u32, out.len() as u32));
            }
        }
    }
    if let Some(st) = start {
        spans.push((st as u32, out.len() as u32));
    }
}

/// A masked sample of a row for `--show-samples`: initials and the outward postcode only.
pub fn masked_sample(layout: &Layout, row: &Row) -> String {
    let mut parts = Vec::new();
    for &(c, r) in &layout.columns {
        let v = row.get(c);
        if v.is_empty() {
            continue;
        }
        let masked = match r {
            Role::Postcode => format!("{} ***", v.split_whitespace().next().unwrap_or("").chars().take(4).collect::<String>()),
            Role::Markers | Role::OptOut => v.chars().take(8).collect(),
            Role::Number | Role::NumberPrefix | Role::NumberSuffix => "***".into(),
            _ => v
                .split_whitespace()
                .map(|w| format!("{}***", w.chars().next().map(String::from).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" "),
        };
        parts.push(format!("{}: {masked}", r.label()));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Row {
        let mut r = Row::default();
        for c in cells {
            r.push(c);
        }
        r
    }

    #[test]
    fn header_variants_map_to_roles() {
        for (h, r) in [
            ("Elector Number Prefix", Role::NumberPrefix),
            ("ElectorNumber", Role::Number),
            ("elector_surname", Role::Surname),
            ("MarkersRegisterText", Role::Markers),
            ("PropertyAddress3", Role::Address(3)),
            ("PropertyPostCode", Role::Postcode),
            ("Post Code", Role::Postcode),
            ("Address 6", Role::Address(6)),
            ("Opted Out", Role::OptOut),
        ] {
            assert_eq!(header_role(h), Some(r), "{h}");
        }
        assert_eq!(header_role("Amount"), None);
    }

    #[test]
    fn the_same_elector_in_two_layouts_has_one_key() {
        let a = [
            row(&[
                "Elector Number Prefix",
                "Elector Number",
                "Elector Markers",
                "Elector Surname",
                "Elector Forename",
                "PostCode",
                "Address1",
                "Address2",
            ]),
            row(&["NFA", "12", "", "O'Brien", "Siân", "ne8 2jm", "156 High Street", "Northfield"]),
        ];
        let b = [
            row(&[
                "ElectorNumber",
                "ElectorName",
                "MarkersRegisterText",
                "PropertyAddress1",
                "PropertyAddress2",
                "PropertyAddress3",
                "PropertyPostCode",
            ]),
            row(&["NFA-12", "SIÂN OBRIEN", "", "156 High Street", "Northfield", "NE8 2JM", "NE8 2JM"]),
        ];
        let (la, lb) = (classify(&a), classify(&b));
        assert!(la.is_register() && lb.is_register(), "{la:?} {lb:?}");
        let (mut ka_, mut kb_) = (Keyer::new(&la), Keyer::new(&lb));
        let ka = ka_.key(&a[1]).unwrap().hash;
        let key_a = ka_.last_key();
        let kb = kb_.key(&b[1]).unwrap().hash;
        let k = kb_;
        assert_eq!(ka, kb, "{key_a} vs {}", k.last_key());
    }

    #[test]
    fn markers_and_flags_give_categories() {
        let h = row(&["Elector Number", "Elector Markers", "Elector DOB", "Elector Surname", "Elector Forename", "PostCode", "Opted Out"]);
        let l = classify(&[h]);
        let mut k = Keyer::new(&l);
        let cat = |k: &mut Keyer, cells: &[&str]| k.key(&row(cells)).unwrap().categories;
        assert_eq!(cat(&mut k, &["AB-1", "", "", "Ash", "Ann", "NE1 1AA", ""]), LISTED);
        assert_eq!(cat(&mut k, &["AB-2", "F", "", "Ash", "Bob", "", ""]), LISTED | OVERSEAS);
        assert_eq!(cat(&mut k, &["AB-3", "E", "01/09/2025", "Ash", "Cy", "NE1 1AA", "Y"]), LISTED | ATTAINER | OPTED_OUT);
        assert_eq!(cat(&mut k, &["AB-4", "G", "", "Ash", "Di", "NE1 1AA", "N"]), LISTED | OTHER_MARKER);
        assert!(k.key(&row(&["AB-5", "", "", "", "", "NE1 1AA", ""])).is_none());
    }

    #[test]
    fn headerless_register_is_recognised_by_content() {
        let rows: Vec<Row> = (0..20)
            .map(|i| {
                let n = format!("NF-{i}");
                let pc = format!("NE{} {}AB", 1 + i % 9, i % 10);
                let (s, f) = (["Abbott", "Barker", "Carver"][i % 3], ["Ada", "Bertie", "Clara"][i % 3]);
                let marker = if i % 5 == 0 { "F" } else { "" };
                let street = format!("{} High Street", i + 1);
                let cells = [n.as_str(), marker, s, f, street.as_str(), "Northfield", pc.as_str()];
                row(&cells)
            })
            .collect();
        let l = classify(&rows);
        assert!(!l.header);
        assert!(l.is_register(), "{l:?}");
        assert!(l.has(Role::Postcode) && l.has(Role::Number));
        let other = [row(&["invoice", "amount"]), row(&["INV-1", "12.00"]), row(&["INV-2", "13.50"])];
        assert!(!classify(&other).is_register());
    }
}

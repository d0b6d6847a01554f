//! The protected members list (`--members FILE`): CSV with a `name` column and an
//! `addresses` column (several addresses separated by `;` or spaces), optional further
//! columns ignored. This is the format `simulate parliament` writes as `members.csv`.

use std::collections::HashMap;

use portcullis_event::text_hash::TextHash;

/// Member name by lower-cased address.
#[derive(Clone, Debug, Default)]
pub struct Members {
    by_address: HashMap<String, String, TextHash>,
    pub count: usize,
}

impl Members {
    pub fn parse(text: &str) -> Result<Members, String> {
        let mut m = Members::default();
        let mut name_col = 0;
        let mut addr_col = 1;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cells = split_csv(line);
            if i == 0 && cells.iter().any(|c| c.eq_ignore_ascii_case("name")) {
                name_col = cells.iter().position(|c| c.eq_ignore_ascii_case("name")).unwrap_or(0);
                addr_col = cells
                    .iter()
                    .position(|c| matches!(c.to_ascii_lowercase().as_str(), "addresses" | "address" | "email" | "emails"))
                    .ok_or_else(|| "line 1: no addresses column (expected `name,addresses`)".to_string())?;
                continue;
            }
            let name = cells.get(name_col).map(|s| s.trim()).unwrap_or("");
            let addrs = cells.get(addr_col).map(|s| s.as_str()).unwrap_or("");
            let addrs: Vec<String> =
                addrs.split([';', ' ', ',']).map(|a| a.trim().to_ascii_lowercase()).filter(|a| !a.is_empty()).collect();
            if name.is_empty() || addrs.is_empty() {
                return Err(format!("line {}: needs a name and at least one address", i + 1));
            }
            if let Some(bad) = addrs.iter().find(|a| !a.contains('@') || a.len() > 320) {
                return Err(format!("line {}: {bad:?} is not an email address", i + 1));
            }
            for a in addrs {
                m.by_address.insert(a, name.to_string());
            }
            m.count += 1;
        }
        Ok(m)
    }

    pub fn name_of(&self, address: &str) -> Option<&str> {
        self.by_address.get(address).map(String::as_str)
    }
}

/// Splits one CSV line (RFC 4180 quotes, no embedded line breaks).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_members() {
        let m = Members::parse("name,addresses,group\n\"Doe, Jane\",jane.doe@parliament.example;JDoe@Party.example,IPAC\n").unwrap();
        assert_eq!(m.count, 1);
        assert_eq!(m.name_of("jdoe@party.example"), Some("Doe, Jane"));
        assert!(Members::parse("name,addresses\nX,not-an-address\n").is_err());
        assert!(Members::parse("name,phone\nX,1\n").is_err());
    }
}

//! An Active Directory export of users, as CSV (`Get-ADUser … | Export-Csv`, csvde) or
//! LDIF (ldifde): the account, `pwdLastSet`, `whenCreated` and `lastLogonTimestamp`.
//! Times are read as FILETIME integers, LDAP generalized time or the dates PowerShell writes.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use portcullis_event::Timestamp;

use crate::{Evidence, Position};

/// One user in the export.
#[derive(Clone, Debug, PartialEq)]
pub struct AdUser {
    pub account: String,
    pub pwd_last_set: Option<Timestamp>,
    pub when_created: Option<Timestamp>,
    pub last_logon: Option<Timestamp>,
    /// The CSV row or LDIF line where the entry starts.
    pub row: u64,
}

impl AdUser {
    pub fn evidence(&self, path: &str, what: &str) -> Evidence {
        Evidence { file: path.to_string(), position: Position::Line(self.row), time: self.pwd_last_set, what: what.to_string() }
    }
}

/// The export, by account key.
#[derive(Clone, Debug, Default)]
pub struct AdExport {
    pub path: String,
    pub users: HashMap<String, AdUser>,
}

/// Largest export read (an export of a million users is about 300 MB).
const MAX_BYTES: u64 = 4 << 30;

pub fn read(path: &Path) -> Result<AdExport, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| at(&e))?;
    if meta.len() > MAX_BYTES {
        return Err(at(&format!("larger than {MAX_BYTES} bytes; split the export")));
    }
    let bytes = std::fs::read(path).map_err(|e| at(&e))?;
    let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes)).into_owned();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    let lower = first.to_ascii_lowercase();
    let mut out = AdExport { path: path.display().to_string(), users: HashMap::new() };
    if lower.starts_with("dn:") || lower.starts_with("dn::") || lower.starts_with("version:") {
        read_ldif(&text, &mut out).map_err(|e| at(&e))?;
    } else {
        read_csv(&text, &mut out).map_err(|e| at(&e))?;
    }
    if out.users.is_empty() {
        return Err(at(&"no user with sAMAccountName (or userPrincipalName) found; expected CSV or LDIF with pwdLastSet"));
    }
    Ok(out)
}

fn add(out: &mut AdExport, u: AdUser) {
    if out.users.len() < crate::MAX_ACCOUNTS {
        out.users.insert(u.account.clone(), u);
    }
}

fn read_csv(text: &str, out: &mut AdExport) -> Result<(), String> {
    // `Export-Csv` writes a `#TYPE …` line first.
    let type_line = text.trim_start().starts_with("#TYPE");
    let body: String = if type_line { text.lines().skip(1).collect::<Vec<_>>().join("\n") } else { text.into() };
    let offset = if type_line { 3 } else { 2 };
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(body.as_bytes());
    let headers: Vec<String> = r.headers().map_err(|e| e.to_string())?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h == n));
    let Some(acct) = col(&["samaccountname", "userprincipalname", "name"]) else {
        return Err("row 1: no sAMAccountName or userPrincipalName column".into());
    };
    let pls = col(&["pwdlastset", "passwordlastset"]);
    let created = col(&["whencreated", "created"]);
    let logon = col(&["lastlogontimestamp", "lastlogondate", "lastlogon"]);
    if pls.is_none() {
        return Err("row 1: no pwdLastSet (or PasswordLastSet) column".into());
    }
    for (i, rec) in r.records().enumerate() {
        let row = i as u64 + offset;
        let rec = rec.map_err(|e| format!("row {row}: {e}"))?;
        let cell = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim).filter(|v| !v.is_empty());
        let Some(account) = cell(Some(acct)).and_then(crate::account_key) else { continue };
        let time = |c: Option<usize>, name: &str| -> Result<Option<Timestamp>, String> {
            match cell(c) {
                None => Ok(None),
                Some(v) => parse_time(v).map_err(|_| format!("row {row}: {name} `{}` is not a time", clip(v))),
            }
        };
        add(
            out,
            AdUser {
                account,
                pwd_last_set: time(pls, "pwdLastSet")?,
                when_created: time(created, "whenCreated")?,
                last_logon: time(logon, "lastLogonTimestamp")?,
                row,
            },
        );
    }
    Ok(())
}

fn read_ldif(text: &str, out: &mut AdExport) -> Result<(), String> {
    // Unfold continuation lines (a leading space continues the previous line).
    let mut lines: Vec<(u64, String)> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_end_matches('\r');
        if let Some(rest) = l.strip_prefix(' ')
            && let Some(last) = lines.last_mut()
            && !last.1.is_empty()
        {
            last.1.push_str(rest);
            continue;
        }
        lines.push((i as u64 + 1, l.to_string()));
    }
    let mut entry: Vec<(String, String)> = Vec::new();
    let mut start = 0u64;
    let mut flush = |entry: &mut Vec<(String, String)>, start: u64| -> Result<(), String> {
        let get = |n: &str| entry.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
        if let Some(account) = get("sAMAccountName").or_else(|| get("userPrincipalName")).and_then(crate::account_key) {
            let time = |n: &str| -> Result<Option<Timestamp>, String> {
                match get(n) {
                    None => Ok(None),
                    Some(v) => parse_time(v).map_err(|_| format!("line {start}: {n} `{}` is not a time", clip(v))),
                }
            };
            let u = AdUser {
                pwd_last_set: time("pwdLastSet")?,
                when_created: time("whenCreated")?,
                last_logon: time("lastLogonTimestamp")?,
                account,
                row: start,
            };
            add(out, u);
        }
        entry.clear();
        Ok(())
    };
    for (n, l) in lines {
        if l.trim().is_empty() {
            flush(&mut entry, start)?;
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        if entry.is_empty() {
            start = n;
        }
        let Some((k, v)) = l.split_once(':') else { return Err(format!("line {n}: not `attribute: value`")) };
        let value = if let Some(b64) = v.strip_prefix(':') {
            let raw =
                base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| format!("line {n}: {k}: bad base64 ({e})"))?;
            String::from_utf8_lossy(&raw).into_owned()
        } else {
            v.trim().to_string()
        };
        if entry.len() < 1024 {
            entry.push((k.trim().to_string(), value));
        }
    }
    flush(&mut entry, start)
}

fn clip(v: &str) -> String {
    v.chars().take(40).collect()
}

/// A value that is not a time in any form an AD export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotATime;

/// FILETIME integers (0 and the maximum mean "not set"), LDAP generalized time
/// (`20210824021305.0Z`), RFC 3339, or `8/24/2021 2:13:05 AM`.
pub fn parse_time(v: &str) -> Result<Option<Timestamp>, NotATime> {
    let v = v.trim();
    if let Ok(n) = v.parse::<i64>() {
        if n <= 0 || n == i64::MAX {
            return Ok(None);
        }
        if n > 100_000_000_000_000_000 {
            return Ok(Some(Timestamp((n - 116_444_736_000_000_000) / 10)));
        }
        return Err(NotATime);
    }
    let b = v.as_bytes();
    if b.len() >= 15 && b[..14].iter().all(u8::is_ascii_digit) && matches!(b[14], b'.' | b'Z') {
        let s = format!("{}-{}-{}T{}:{}:{}Z", &v[..4], &v[4..6], &v[6..8], &v[8..10], &v[10..12], &v[12..14]);
        return Timestamp::parse(&s).map(Some).ok_or(NotATime);
    }
    if let Some(t) = Timestamp::parse(v) {
        return Ok(Some(t));
    }
    us_date(v).map(Some).ok_or(NotATime)
}

/// `8/24/2021 2:13:05 AM` (the US form PowerShell and the Security log's `PasswordLastSet` use).
pub fn us_date(v: &str) -> Option<Timestamp> {
    let mut parts = v.split_whitespace();
    let date = parts.next()?;
    let time = parts.next().unwrap_or("0:00:00");
    let ampm = parts.next();
    let d: Vec<u32> = date.split('/').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [m, day, y] = d.as_slice() else { return None };
    let t: Vec<u32> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (mut h, mi, s) = (*t.first()?, *t.get(1).unwrap_or(&0), *t.get(2).unwrap_or(&0));
    match ampm.map(|a| a.to_ascii_uppercase()) {
        Some(a) if a == "PM" && h < 12 => h += 12,
        Some(a) if a == "AM" && h == 12 => h = 0,
        _ => {}
    }
    Timestamp::parse(&format!("{y:04}-{m:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form() {
        let t = Timestamp::parse("2021-08-24T02:13:05Z").unwrap();
        assert_eq!(parse_time("132742447850000000"), Ok(Some(t)));
        assert_eq!(parse_time("20210824021305.0Z"), Ok(Some(t)));
        assert_eq!(parse_time("8/24/2021 2:13:05 AM"), Ok(Some(t)));
        assert_eq!(parse_time("0"), Ok(None));
        assert_eq!(parse_time("9223372036854775807"), Ok(None));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2021082402130é.0Z").is_err(), "a multi-byte character where a digit belongs");
        assert!(parse_time("12/ab/2021 9").is_err());
    }

    #[test]
    fn csv_and_ldif_exports() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("users.csv");
        std::fs::write(
            &csv,
            "#TYPE Microsoft.ActiveDirectory.Management.ADUser\nsAMAccountName,pwdLastSet,whenCreated,lastLogonTimestamp\n\
             amelia.smith,132742447850000000,8/24/2021 2:13:05 AM,0\nbob,,,\n",
        )
        .unwrap();
        let ad = read(&csv).unwrap();
        assert_eq!(ad.users["amelia.smith"].row, 3);
        assert!(ad.users["amelia.smith"].pwd_last_set.is_some());
        assert_eq!(ad.users["amelia.smith"].last_logon, None);
        let ldif = dir.path().join("users.ldf");
        std::fs::write(
            &ldif,
            "dn: CN=Amelia Smith,OU=Staff,DC=ec,DC=local\nsAMAccountName:: YW1lbGlhLnNtaXRo\npwdLastSet: 132742447850000000\nwhenCreated: 20210824021305.0Z\n\ndn: CN=x\nsAMAccountName: x\n",
        )
        .unwrap();
        let ad = read(&ldif).unwrap();
        assert_eq!(ad.users["amelia.smith"].pwd_last_set, ad.users["amelia.smith"].when_created);
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "sAMAccountName,pwdLastSet\nx,soon\n").unwrap();
        let e = read(&bad).unwrap_err();
        assert!(e.contains("bad.csv") && e.contains("row 2"), "{e}");
    }
}

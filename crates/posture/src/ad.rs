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

pub fn read(path: &Path) -> Result<AdExport, String> {
    use std::io::{BufRead, BufReader, Read};
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| at(&e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(|e| at(&e))?;
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Err(at(&"UTF-16 export: re-export as UTF-8 (csvde without -u, or Export-Csv -Encoding UTF8)"));
    }
    let bom = if head.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    reader.consume(bom);
    let head = reader.fill_buf().map_err(|e| at(&e))?;
    let first = head
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).trim().to_ascii_lowercase())
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    let mut out = AdExport { path: path.display().to_string(), users: HashMap::new() };
    // Lines longer than this are not an AD export's.
    let reader = reader.take(MAX_BYTES);
    if first.starts_with("dn:") || first.starts_with("version:") {
        read_ldif(reader, &mut out).map_err(|e| at(&e))?;
    } else {
        read_csv(reader, &mut out).map_err(|e| at(&e))?;
    }
    if out.users.is_empty() {
        return Err(at(&"no user with sAMAccountName (or userPrincipalName) found; expected CSV or LDIF with pwdLastSet"));
    }
    Ok(out)
}

/// Largest export read (an export of a million users is about 300 MB).
const MAX_BYTES: u64 = 4 << 30;
/// Longest LDIF line (unfolded) kept.
const MAX_LINE: usize = 1 << 20;

fn add(out: &mut AdExport, u: AdUser) {
    if out.users.len() < crate::MAX_ACCOUNTS {
        out.users.insert(u.account.clone(), u);
    }
}

fn read_csv(mut reader: impl std::io::BufRead, out: &mut AdExport) -> Result<(), String> {
    // `Export-Csv` writes a `#TYPE …` line first.
    let mut offset = 2;
    if reader.fill_buf().map_err(|e| e.to_string())?.starts_with(b"#TYPE") {
        let mut skip = Vec::new();
        reader.read_until(b'\n', &mut skip).map_err(|e| e.to_string())?;
        offset = 3;
    }
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers: Vec<String> =
        r.headers().map_err(|e| format!("row {}: {e}", offset - 1))?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h == n));
    let Some(acct) = col(&["samaccountname", "userprincipalname", "name"]) else {
        return Err(format!("row {}: no sAMAccountName or userPrincipalName column", offset - 1));
    };
    let pls = col(&["pwdlastset", "passwordlastset"]);
    let created = col(&["whencreated", "created"]);
    let logon = col(&["lastlogontimestamp", "lastlogondate", "lastlogon"]);
    if pls.is_none() {
        return Err(format!("row {}: no pwdLastSet (or PasswordLastSet) column", offset - 1));
    }
    let mut rec = csv::StringRecord::new();
    let mut i = 0u64;
    loop {
        let row = i + offset;
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(format!("row {row}: {e}")),
        }
        i += 1;
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

fn read_ldif(mut reader: impl std::io::BufRead, out: &mut AdExport) -> Result<(), String> {
    let mut entry: Vec<(u64, String, String)> = Vec::new();
    let mut start = 0u64;
    // The current logical line (continuations unfolded) and where it began.
    let mut logical: Option<(u64, String)> = None;
    let mut raw = Vec::new();
    let mut n = 0u64;
    loop {
        raw.clear();
        let got = reader.read_until(b'\n', &mut raw).map_err(|e| format!("line {}: {e}", n + 1))?;
        n += 1;
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if got > 0
            && let Some(rest) = line.strip_prefix(' ')
            && let Some((_, l)) = logical.as_mut()
        {
            if l.len() + rest.len() > MAX_LINE {
                return Err(format!("line {n}: a value longer than {MAX_LINE} bytes"));
            }
            l.push_str(rest);
            continue;
        }
        if let Some((ln, l)) = logical.take() {
            ldif_line(ln, &l, &mut entry, &mut start)?;
        }
        if got == 0 {
            break;
        }
        if line.trim().is_empty() {
            flush_ldif(&mut entry, start, out)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        logical = Some((n, line.to_string()));
    }
    flush_ldif(&mut entry, start, out)
}

fn ldif_line(n: u64, l: &str, entry: &mut Vec<(u64, String, String)>, start: &mut u64) -> Result<(), String> {
    if entry.is_empty() {
        *start = n;
    }
    let Some((k, v)) = l.split_once(':') else { return Err(format!("line {n}: not `attribute: value`")) };
    let value = if let Some(b64) = v.strip_prefix(':') {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| format!("line {n}: {k}: bad base64 ({e})"))?;
        String::from_utf8_lossy(&raw).into_owned()
    } else {
        v.trim().to_string()
    };
    if entry.len() < 1024 {
        entry.push((n, k.trim().to_string(), value));
    }
    Ok(())
}

fn flush_ldif(entry: &mut Vec<(u64, String, String)>, start: u64, out: &mut AdExport) -> Result<(), String> {
    let get = |n: &str| entry.iter().find(|(_, k, _)| k.eq_ignore_ascii_case(n)).map(|(line, _, v)| (*line, v.as_str()));
    if let Some(account) = get("sAMAccountName").or_else(|| get("userPrincipalName")).and_then(|(_, v)| crate::account_key(v)) {
        let time = |n: &str| -> Result<Option<Timestamp>, String> {
            match get(n) {
                None => Ok(None),
                Some((line, v)) => parse_time(v).map_err(|_| format!("line {line}: {n} `{}` is not a time", clip(v))),
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
            "version: 1\n\ndn: CN=Amelia Smith,OU=Staff,\n DC=ec,DC=local\nsAMAccountName:: YW1lbGlhL\n nNtaXRo\npwdLastSet: 132742447850000000\nwhenCreated: 20210824021305.0Z\n\ndn: CN=x\nsAMAccountName: x\nwhenCreated: soon\n",
        )
        .unwrap();
        let e = read(&ldif).unwrap_err();
        assert!(e.contains("users.ldf: line 12: whenCreated"), "{e}");
        let text = std::fs::read_to_string(&ldif).unwrap().replace("whenCreated: soon\n", "");
        std::fs::write(&ldif, text).unwrap();
        let ad = read(&ldif).unwrap();
        assert_eq!(ad.users["amelia.smith"].pwd_last_set, ad.users["amelia.smith"].when_created);
        assert_eq!(ad.users["amelia.smith"].row, 3);
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "sAMAccountName,pwdLastSet\nx,soon\n").unwrap();
        let e = read(&bad).unwrap_err();
        assert!(e.contains("bad.csv") && e.contains("row 2"), "{e}");
    }
}

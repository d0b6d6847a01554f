//! Timestamps: UTC microseconds since the Unix epoch, parsed from the forms logs use.

use std::fmt;

/// A UTC instant with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Serialised as RFC 3339 text (`2021-08-24T02:13:00Z`), the form every output uses.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a timestamp: {s}")))
    }
}

impl Timestamp {
    pub const MICROS_PER_SEC: i64 = 1_000_000;

    pub fn from_unix_seconds(s: i64) -> Self {
        Timestamp(s.saturating_mul(Self::MICROS_PER_SEC))
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    pub fn as_seconds(self) -> i64 {
        self.0.div_euclid(Self::MICROS_PER_SEC)
    }

    /// Parses `YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]][Z|±HH[:]MM]` or a bare `YYYY-MM-DD`.
    /// A time without a zone is taken as UTC (IIS, Exchange and Sysmon `UtcTime` all log UTC).
    /// A UTC offset as people write it (`+05:00`, `-0500`, `+5`, `UTC`, `Z`), in seconds.
    pub fn parse_offset(s: &str) -> Option<i64> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("gmt") {
            return Some(0);
        }
        let t = t.strip_prefix("UTC").or_else(|| t.strip_prefix("utc")).unwrap_or(t);
        let (sign, rest) = match t.as_bytes().first()? {
            b'+' => (1, &t[1..]),
            b'-' => (-1, &t[1..]),
            _ => return None,
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
    }

    /// The current time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_micros().min(i64::MAX as u128) as i64)
    }

    pub fn parse(s: &str) -> Option<Timestamp> {
        Self::parse_zoned(s).map(|(t, _)| t)
    }

    /// Like [`Timestamp::parse`], also saying whether the text named its zone (`Z` or an
    /// offset); a bare date counts as zoned (days carry no time to misplace).
    pub fn parse_zoned(s: &str) -> Option<(Timestamp, bool)> {
        let b = s.trim().as_bytes();
        if b.len() < 10 {
            return None;
        }
        let year = digits(b, 0, 4)? as i64;
        if b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let mut secs_of_day = 0i64;
        let mut micros = 0i64;
        let mut offset_secs = 0i64;
        let mut zoned = true;
        let mut i = 10;
        if i < b.len() {
            if b[i] != b'T' && b[i] != b' ' && b[i] != b't' {
                return None;
            }
            i += 1;
            let hour = digits(b, i, 2)? as i64;
            if b.get(i + 2) != Some(&b':') {
                return None;
            }
            let minute = digits(b, i + 3, 2)? as i64;
            i += 5;
            let mut second = 0i64;
            if b.get(i) == Some(&b':') {
                second = digits(b, i + 1, 2)? as i64;
                i += 3;
            }
            if hour > 23 || minute > 59 || second > 60 {
                return None;
            }
            secs_of_day = hour * 3600 + minute * 60 + second.min(59);
            if matches!(b.get(i), Some(b'.') | Some(b',')) {
                i += 1;
                let start = i;
                let mut scale = 100_000i64;
                while i < b.len() && b[i].is_ascii_digit() {
                    if i - start < 6 {
                        micros += (b[i] - b'0') as i64 * scale;
                        scale /= 10;
                    }
                    i += 1;
                }
                if i == start {
                    return None;
                }
            }
            match b.get(i) {
                None => zoned = false,
                Some(b'Z') | Some(b'z') => i += 1,
                Some(&sign @ (b'+' | b'-')) => {
                    let oh = digits(b, i + 1, 2)? as i64;
                    let mut j = i + 3;
                    if b.get(j) == Some(&b':') {
                        j += 1;
                    }
                    let om = digits(b, j, 2).unwrap_or(0) as i64;
                    offset_secs = (oh * 3600 + om * 60) * if sign == b'+' { 1 } else { -1 };
                    i = if digits(b, j, 2).is_some() { j + 2 } else { i + 3 };
                }
                Some(_) => return None,
            }
            if i != b.len() {
                return None;
            }
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + secs_of_day - offset_secs;
        Some((Timestamp(secs * Self::MICROS_PER_SEC + micros), zoned))
    }

    /// The civil UTC date and time: (year, month, day, hour, minute, second).
    pub fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let secs = self.as_seconds();
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (y, m, d, (sod / 3600) as u32, ((sod % 3600) / 60) as u32, (sod % 60) as u32)
    }

    /// ISO week number (1–53).
    pub fn iso_week(self) -> u32 {
        let days = self.as_seconds().div_euclid(86_400);
        // 1970-01-01 was a Thursday; ISO weekday 1 = Monday.
        let weekday = (days + 3).rem_euclid(7) + 1;
        let (y, _, _) = civil_from_days(days);
        let ordinal = days - days_from_civil(y, 1, 1) + 1;
        let week = (ordinal - weekday + 10).div_euclid(7);
        if week < 1 {
            return weeks_in_year(y - 1);
        }
        if week > weeks_in_year(y) as i64 {
            return 1;
        }
        week as u32
    }
}

fn weeks_in_year(y: i64) -> u32 {
    let p = |y: i64| (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400)).rem_euclid(7);
    if p(y) == 4 || p(y - 1) == 3 { 53 } else { 52 }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC: `2021-08-24T02:13:00Z`, with `.ffffff` only when there are microseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.civil();
        let us = self.0.rem_euclid(Self::MICROS_PER_SEC);
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
        if us != 0 {
            write!(f, ".{us:06}")?;
        }
        f.write_str("Z")
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_as_people_write_them() {
        assert_eq!(Timestamp::parse_offset("+05:00"), Some(5 * 3600));
        assert_eq!(Timestamp::parse_offset("-0500"), Some(-5 * 3600));
        assert_eq!(Timestamp::parse_offset("UTC+5:30"), Some(5 * 3600 + 1800));
        assert_eq!(Timestamp::parse_offset("utc"), Some(0));
        assert_eq!(Timestamp::parse_offset("-5"), Some(-5 * 3600));
        assert_eq!(Timestamp::parse_offset("Europe/London"), None);
        assert_eq!(Timestamp::parse_offset("+25:00"), None);
        assert_eq!(Timestamp::parse_zoned("2021-03-14 01:40:12"), Some((Timestamp::parse("2021-03-14T01:40:12Z").unwrap(), false)));
    }

    #[test]
    fn parses_log_forms() {
        let t = Timestamp::parse("2021-08-24T02:13:00Z").unwrap();
        assert_eq!(t.as_seconds(), 1_629_771_180);
        assert_eq!(Timestamp::parse("2021-08-24 02:13:00").unwrap(), t);
        assert_eq!(Timestamp::parse("2021-08-24T03:13:00+01:00").unwrap(), t);
        assert_eq!(Timestamp::parse("2021-08-24T02:13:00.5Z").unwrap().0, t.0 + 500_000);
        assert_eq!(Timestamp::parse("2025-11-26T05:11:27.927693Z").unwrap().to_string(), "2025-11-26T05:11:27.927693Z");
        assert_eq!(Timestamp::parse("2021-08-24").unwrap().to_string(), "2021-08-24T00:00:00Z");
        assert_eq!(t.to_string(), "2021-08-24T02:13:00Z");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "2021", "2021-13-01", "2021-02-30", "2021-08-24X", "2021-08-24T25:00:00", "abcd-ef-gh"] {
            assert_eq!(Timestamp::parse(s), None, "{s}");
        }
    }

    #[test]
    fn civil_round_trip_and_weeks() {
        for days in [-800_000i64, -1, 0, 1, 18_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(Timestamp::parse("2021-01-01").unwrap().iso_week(), 53);
        assert_eq!(Timestamp::parse("2021-08-24").unwrap().iso_week(), 34);
        assert_eq!(Timestamp::parse("2024-12-30").unwrap().iso_week(), 1);
    }
}

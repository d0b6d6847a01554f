//! Counts of personal data other than register rows: email addresses, UK phone numbers,
//! dates of birth (a date next to "born", "DOB" or "date of birth"), postcodes and elector
//! numbers in free text.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}").expect("valid"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\+44\s?\(?0?\)?\s?|\b0)(\d[\s-]?){9,10}\b").expect("valid"));
static DOB: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(dob|d\.o\.b\.?|date of birth|born)\b\W{0,4}(on\s+)?(\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}\s+[a-z]{3,9}\s+\d{4})")
        .expect("valid")
});
static POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(GIR 0AA|(([A-Z][0-9]{1,2})|([A-Z][A-HJ-Y][0-9]{1,2})|([A-Z][0-9][A-Z])|([A-Z][A-HJ-Y][0-9][A-Z]?)) ?[0-9][A-Z]{2})\b",
    )
    .expect("valid")
});
static ELECTOR_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Z]{1,3}-[0-9]{1,6}(/[0-9]{1,3})?\b").expect("valid"));

#[derive(Default, Debug)]
pub struct Counts(BTreeMap<&'static str, u64>);

impl Counts {
    pub fn add(&mut self, what: &'static str, n: u64) {
        *self.0.entry(what).or_default() += n;
    }

    pub fn add_text(&mut self, s: &str) {
        if s.len() < 5 {
            return;
        }
        if s.contains('@') {
            let n = EMAIL.find_iter(s).count() as u64;
            if n > 0 {
                self.add("email_addresses", n);
            }
        }
        if s.bytes().filter(u8::is_ascii_digit).count() >= 10 {
            let n = PHONE.find_iter(s).count() as u64;
            if n > 0 {
                self.add("phone_numbers", n);
            }
        }
        let n = DOB.find_iter(s).count() as u64;
        if n > 0 {
            self.add("dates_of_birth", n);
        }
        let n = POSTCODE.find_iter(s).count() as u64;
        if n > 0 {
            self.add("postcodes", n);
        }
        if s.contains('-') {
            let n = ELECTOR_NUMBER.find_iter(s).count() as u64;
            if n > 0 {
                self.add("elector_numbers", n);
            }
        }
    }

    /// Adds another count's figures (counts of parts of one table, kept apart while in parallel).
    pub fn merge(&mut self, other: Counts) {
        for (k, n) in other.0 {
            self.add(k, n);
        }
    }

    pub fn into_map(self) -> BTreeMap<String, u64> {
        self.0.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_personal_data() {
        let mut c = Counts::default();
        c.add_text("Write to jo.bloggs@example.org.uk or call 020 7946 0018, +44 7700 900123.");
        c.add_text("Applicant born 03/04/1987 at NE8 2JM, elector NFA-12/1.");
        c.add_text("Order 12345 shipped on 03/04/2021.");
        let m = c.into_map();
        assert_eq!(m["email_addresses"], 1);
        assert_eq!(m["phone_numbers"], 2);
        assert_eq!(m["dates_of_birth"], 1);
        assert_eq!(m["postcodes"], 1);
        assert_eq!(m["elector_numbers"], 1);
    }
}

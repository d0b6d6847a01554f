//! A compact binary copy of an [`Event`], for the temporary files a process spills to and
//! reads back itself (detections past a memory budget). Not a wire or storage format: no
//! version, no promise between builds. Decoding still checks every offset, so a damaged
//! file gives an error, never a panic or an event whose fields point outside its text.

use crate::{Event, FieldSlot, SourceKind, TimeSource, Timestamp, ValueKind};

impl Event {
    /// Bytes this event holds on the heap, for memory budgets (capacities, not lengths).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.fields.capacity() * std::mem::size_of::<FieldSlot>()
            + self.log_type.capacity()
            + self.raw.capacity()
            + self.member.capacity()
    }

    /// Appends the event to `out` (read back with [`Event::read_spilled`]).
    pub fn write_spilled(&self, out: &mut Vec<u8>) {
        put_str(out, &self.text);
        put_u32(out, self.fields.len() as u32);
        // Slots as lengths: a field usually starts where the one before it ends, so most
        // take three or four bytes, not twelve.
        let mut end = 0;
        for f in &self.fields {
            put_varint(out, f.start.wrapping_sub(end));
            put_varint(out, f.name_end - f.start);
            put_varint(out, f.value_end - f.name_end);
            end = f.value_end;
            out.push(match f.kind {
                ValueKind::Str => 0,
                ValueKind::Int => 1,
                ValueKind::Float => 2,
                ValueKind::Bool => 3,
                ValueKind::Null => 4,
            });
        }
        out.push(match self.source {
            SourceKind::Windows => 0,
            SourceKind::W3c => 1,
            SourceKind::ExchangeCsv => 2,
            SourceKind::Json => 3,
        });
        put_str(out, &self.log_type);
        match self.timestamp {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.0.to_le_bytes());
            }
            None => out.push(0),
        }
        out.push(match self.time_source {
            TimeSource::Event => 0,
            TimeSource::Collector => 1,
            TimeSource::Unzoned => 2,
        });
        out.extend_from_slice(&self.record.to_le_bytes());
        put_str(out, &self.raw);
        put_str(out, &self.member);
    }

    /// Reads an event written by [`Event::write_spilled`] from the front of `bytes`,
    /// returning it and the bytes after it.
    pub fn read_spilled(bytes: &[u8]) -> Result<(Event, &[u8]), SpillError> {
        let mut r = Reader(bytes);
        let text = r.string()?;
        let n = r.u32()? as usize;
        // Each slot takes at least 4 bytes: a count larger than what is left is damage, not a
        // reason to allocate.
        if n > r.0.len() / 4 {
            return Err(SpillError("field count past the end of the record"));
        }
        let mut fields = Vec::with_capacity(n);
        let (mut end, mut next_start) = (0u32, 0u32);
        for _ in 0..n {
            let start = end.wrapping_add(r.varint()?);
            let name_end = start.checked_add(r.varint()?).ok_or(SpillError("field outside its event's text"))?;
            let value_end = name_end.checked_add(r.varint()?).ok_or(SpillError("field outside its event's text"))?;
            end = value_end;
            let kind = match r.u8()? {
                0 => ValueKind::Str,
                1 => ValueKind::Int,
                2 => ValueKind::Float,
                3 => ValueKind::Bool,
                4 => ValueKind::Null,
                _ => return Err(SpillError("unknown value kind")),
            };
            // Fields lie end to end as name NUL value 0x01 ([`Event::field_stream`]); the
            // separators also make every offset fall between characters.
            let bytes = text.as_bytes();
            let ok = start == next_start
                && name_end < value_end
                && (value_end as usize) < text.len()
                && bytes[name_end as usize] == 0
                && bytes[value_end as usize] == 1;
            if !ok {
                return Err(SpillError("field outside its event's text"));
            }
            next_start = value_end + 1;
            fields.push(FieldSlot { start, name_end, value_end, kind });
        }
        if next_start as usize != text.len() {
            return Err(SpillError("text past its event's last field"));
        }
        let source = match r.u8()? {
            0 => SourceKind::Windows,
            1 => SourceKind::W3c,
            2 => SourceKind::ExchangeCsv,
            3 => SourceKind::Json,
            _ => return Err(SpillError("unknown source kind")),
        };
        let log_type = r.string()?;
        let timestamp = match r.u8()? {
            0 => None,
            1 => Some(Timestamp(r.i64()?)),
            _ => return Err(SpillError("bad timestamp flag")),
        };
        let time_source = match r.u8()? {
            0 => TimeSource::Event,
            1 => TimeSource::Collector,
            2 => TimeSource::Unzoned,
            _ => return Err(SpillError("unknown time source")),
        };
        let record = r.i64()? as u64;
        let raw = r.string()?;
        let member = r.string()?;
        Ok((Event { text, fields, source, log_type, timestamp, time_source, record, raw, member, layout: 0, refused: false }, r.0))
    }
}

/// Why spilled bytes could not be read back as an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpillError(pub &'static str);

impl std::fmt::Display for SpillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "damaged spilled event: {}", self.0)
    }
}

impl std::error::Error for SpillError {}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// LEB128: seven bits a byte, low first.
fn put_varint(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpillError> {
        if n > self.0.len() {
            return Err(SpillError("record ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SpillError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, SpillError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self) -> Result<u32, SpillError> {
        let mut n = 0u32;
        for shift in [0, 7, 14, 21, 28] {
            let b = self.u8()?;
            n |= u32::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return if shift == 28 && b > 0x0f { Err(SpillError("number too large")) } else { Ok(n) };
            }
        }
        Err(SpillError("number too long"))
    }

    fn i64(&mut self) -> Result<i64, SpillError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String, SpillError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| SpillError("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut e = Event::new(SourceKind::W3c);
        e.push_str("cs-uri-stem", "/owa/é∂");
        e.push("sc-status", "200", ValueKind::Int);
        e.push("x", "", ValueKind::Null);
        e.log_type = "HttpProxy".into();
        e.timestamp = Some(Timestamp(1_609_459_200_123_456));
        e.time_source = TimeSource::Unzoned;
        e.record = 77;
        e.raw = "raw line".into();
        e.member = "inner/u_ex.log".into();
        e
    }

    #[test]
    fn an_event_reads_back_as_written() {
        let e = sample();
        let mut bytes = Vec::new();
        e.write_spilled(&mut bytes);
        bytes.extend_from_slice(b"next");
        let (back, rest) = Event::read_spilled(&bytes).unwrap();
        assert_eq!(rest, b"next");
        assert_eq!(format!("{e:?}"), format!("{back:?}"));
        let fields: Vec<_> = back.fields().map(|f| (f.name, f.value, f.kind)).collect();
        assert_eq!(
            fields,
            vec![("cs-uri-stem", "/owa/é∂", ValueKind::Str), ("sc-status", "200", ValueKind::Int), ("x", "", ValueKind::Null)]
        );
    }

    /// Every cut and every single-byte change of a record gives an error or an event whose
    /// fields can all be read: never a panic.
    #[test]
    fn damaged_records_are_errors_not_panics() {
        let mut bytes = Vec::new();
        sample().write_spilled(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(Event::read_spilled(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for v in [0u8, 1, 5, 0x7f, 0xc3, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = v;
                if let Ok((e, _)) = Event::read_spilled(&damaged) {
                    for f in e.fields() {
                        let _ = (f.name.len(), f.value.len());
                    }
                }
            }
        }
    }
}

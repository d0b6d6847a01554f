//! Quick tests on a value's bytes, shared by the scanners that look at every value of
//! every event (indicators, entities): a word at a time, without slicing text.

use std::ops::Range;

/// Whether `b` holds any byte of `set`, tested a word at a time (values are short: a
/// search that first sets itself up costs more than it saves). A byte of `v` equals `c`
/// exactly when that byte of `v ^ c…c` is zero, and `(x - 0x01…) & !x & 0x80…` is non-zero
/// exactly when some byte of `x` is zero.
#[inline]
pub fn has_any<const N: usize>(b: &[u8], set: [u8; N]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let any = |v: u64| {
        set.iter().any(|&c| {
            let x = v ^ (ONES * u64::from(c));
            x.wrapping_sub(ONES) & !x & HIGHS != 0
        })
    };
    let word = |w: &[u8]| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    let half = |w: &[u8]| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    let n = b.len();
    if n < 4 {
        return b.iter().any(|c| set.contains(c));
    }
    if n < 8 {
        // The first four bytes and the last four, which overlap: every byte is in one.
        return any(half(b) | half(&b[n - 4..]) << 32);
    }
    if b.chunks_exact(8).any(|w| any(word(w))) {
        return true;
    }
    // The last 1–7 bytes, in the last eight (bytes read twice do no harm). Not copied into a
    // padded word: writing a word byte by byte and reading it whole stalls the load.
    !n.is_multiple_of(8) && any(word(&b[n - 8..]))
}

/// The part of `b` left without the bytes `cut` accepts at either end. When `cut` accepts
/// only ASCII bytes, the ends are character boundaries of text `b` was taken from.
#[inline]
pub fn trim_range(b: &[u8], cut: impl Fn(u8) -> bool) -> Range<usize> {
    let start = b.iter().position(|&c| !cut(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !cut(c)).map_or(start, |e| e + 1);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_any_finds_a_byte_of_the_set_wherever_it_is() {
        for n in 0..40 {
            // Bytes next to those sought, a zero byte and high bytes.
            let base: Vec<u8> = (0..n).map(|i| b"ab\x00\xa0\x1f!~-/;?A\x80\xae\xff"[i % 15]).collect();
            assert!(!has_any(&base, [b' ']) && !has_any(&base, [b'.', b':', b'@']), "{n}");
            for at in 0..n {
                for c in [b' ', b'.', b':', b'@'] {
                    let mut v = base.clone();
                    v[at] = c;
                    assert_eq!(has_any(&v, [b' ']), c == b' ', "{c} at {at} of {n}");
                    assert_eq!(has_any(&v, [b'.', b':', b'@']), c != b' ', "{c} at {at} of {n}");
                }
            }
        }
    }

    #[test]
    fn trim_range_trims_as_the_standard_trim_does() {
        let pieces = ["", "[", "]", "[]", ".", "-", "a", "é", ".a-", "[x]"];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let v = format!("{a}{b}{c}");
                    assert_eq!(&v[trim_range(v.as_bytes(), |c| matches!(c, b'[' | b']'))], v.trim_matches(['[', ']']), "{v:?}");
                    assert_eq!(&v[trim_range(v.as_bytes(), |c| matches!(c, b'.' | b'-'))], v.trim_matches(['.', '-']), "{v:?}");
                }
            }
        }
    }
}

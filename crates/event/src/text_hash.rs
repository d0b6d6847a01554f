//! The hasher for maps keyed by attacker-controlled input (mail addresses and domains,
//! correlation group keys and values, indicators): xxh3 over each write in one call, not
//! through its streaming state (which buffers every small write), seeded once per process
//! so that keys that collide cannot be prepared in advance to make inserts quadratic.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Builds [`TextHasher`]s that share this process's seed.
#[derive(Clone, Copy, Debug)]
pub struct TextHash {
    seed: u64,
}

impl Default for TextHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        // The standard library's per-process random keys, drawn once.
        let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));
        TextHash { seed }
    }
}

impl TextHash {
    /// The seeded hash of one byte string, for a cache keyed by the hash alone: an attacker
    /// cannot make a value of theirs share the hash of one seen earlier.
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        xxh3_64_with_seed(bytes, self.seed)
    }
}

impl BuildHasher for TextHash {
    type Hasher = TextHasher;
    fn build_hasher(&self) -> TextHasher {
        TextHasher(self.seed)
    }
}

/// Each write is hashed whole, seeded with the state so far.
#[derive(Clone, Copy, Debug)]
pub struct TextHasher(u64);

impl Hasher for TextHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, b: u8) {
        // The terminator `str` hashes after its bytes: mixed in without another xxh3 call.
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_text_hashes_equal_and_different_text_differently() {
        let h = TextHash::default();
        assert_eq!(h.hash_one("jane@parliament.example"), TextHash::default().hash_one("jane@parliament.example"));
        assert_ne!(h.hash_one("jane@parliament.example"), h.hash_one("jane@parliament.exampl"));
        // The boundary between the parts of a key counts.
        assert_ne!(h.hash_one(("ab", "c")), h.hash_one(("a", "bc")));
        let mut m: std::collections::HashMap<&str, u32, TextHash> = Default::default();
        m.insert("a.example", 1);
        assert_eq!(m.get("a.example"), Some(&1));
        assert_eq!(m.get("b.example"), None);
    }

    #[test]
    fn the_seed_moves_every_hash() {
        // Where a key lands depends on the seed, which an attacker preparing mail cannot know.
        let keys = ["a.example", "b.example", "jane@parliament.example", ""];
        for k in keys {
            assert_ne!(TextHash { seed: 1 }.hash_one(k), TextHash { seed: 2 }.hash_one(k), "{k:?}");
        }
        assert_ne!(TextHash { seed: 1 }.hash_one(7u64), TextHash { seed: 2 }.hash_one(7u64));
    }
}

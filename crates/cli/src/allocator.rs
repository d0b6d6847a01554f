//! The allocator (mimalloc) and how long it keeps freed memory before giving it back.

// The one place the project calls foreign code itself: two functions of mimalloc's table of
// options, which the `mimalloc` crate does not wrap.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};

/// mimalloc: the analysers allocate many small strings per message and event; the system
/// allocator spent a fifth of `mail`'s time in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (its sixteenth option).
const PURGE_DELAY: c_int = 15;
/// mimalloc's own default for it, in milliseconds: checked by a test, so that a new
/// mimalloc that renumbered its options is noticed rather than set blindly.
const MIMALLOC_DEFAULT_PURGE_DELAY: c_long = 1_000;
/// How long freed memory is kept before it goes back to the system, in milliseconds.
///
/// By default mimalloc gives memory back a second after it is freed. A run that reads for
/// longer than that (`mail` over a large corpus, a million STIX indicators) frees each
/// batch's buffers, has them returned to the kernel, and takes fresh pages again for the
/// next batch: the kernel zeroed those pages (2 MiB at a time with transparent huge
/// pages) for up to a fifth of the run's time, and a third of `mail`'s system time.
/// Ten seconds spans a command's working phases; a long-running `watch` or worker still
/// gives memory back when it goes quiet.
const PURGE_DELAY_MS: c_long = 10_000;

/// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` in the environment chose one.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: both functions only read or write mimalloc's table of options; any option
    // number is checked against the table's size by mimalloc itself.
    unsafe {
        if mi_option_get(PURGE_DELAY) == MIMALLOC_DEFAULT_PURGE_DELAY {
            mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_it_is_said_to_be() {
        // SAFETY: as in `tune`.
        let before = unsafe { mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                before == MIMALLOC_DEFAULT_PURGE_DELAY || before == PURGE_DELAY_MS,
                "option {PURGE_DELAY} is {before}: not mimalloc's purge delay (has mimalloc renumbered its options?)"
            );
        }
        tune();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, PURGE_DELAY_MS);
        }
    }
}

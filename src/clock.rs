// SPDX-License-Identifier: MIT OR Apache-2.0
//! The wall clock as records carry it, and suffixes that keep names apart.

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in nanoseconds (0 on a clock set before 1970).
pub fn unix_time_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Unix time now, in milliseconds (0 on a clock set before 1970).
pub fn unix_time_ms() -> i64 {
    (unix_time_ns() / 1_000_000) as i64
}

/// Eight hex digits that differ between processes and between calls, for names that
/// must not collide when two elements start at once (stream ids, ...).
pub fn random_suffix() -> String {
    // RandomState's keys are random per process and advance per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_time_ns());
    format!("{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_after_2020_and_suffixes_differ() {
        assert!(unix_time_ns() > 1_577_836_800_000_000_000);
        assert_eq!(unix_time_ms(), (unix_time_ns() / 1_000_000) as i64);
        let a = random_suffix();
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_suffix());
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Identities that come out the same whenever the same thing is computed again: a
//! worker that replaces a dead one and re-reads its frames gives the same crossing the
//! same [`event_id`] and a track born on the same frame the same [`track_id`], while ids
//! of different cameras, frame sequences, places or tracks differ.
//!
//! Both are SipHash-1-3 with fixed keys (the `siphasher` crate) over their arguments,
//! strings length-prefixed and numbers little-endian, so "ab"+"c" and "a"+"bc" differ and
//! every machine, build and Rust version computes the same value (std's `DefaultHasher`
//! promises none of that). A change of keys, order or encoding changes every id and
//! breaks deduplication across the change: the tests pin known values. The ids are not
//! secret and not proof against forgery: whoever can write the events topic can write any
//! event anyway.

use siphasher::{sip, sip128};

use crate::events::{Direction, EventKind};

/// The SipHash keys of every identity: "gkv.identity.v1\0" as two little-endian u64;
/// fixed for good.
const KEYS: (u64, u64) = (0x6e65_6469_2e76_6b67, 0x0031_762e_7974_6974);

/// Largest integer a JavaScript number (an IEEE double) holds exactly: 2^53 - 1.
const JS_SAFE: u64 = (1 << 53) - 1;

/// The bytes an identity is hashed from: a domain tag first (an event id never equals a
/// track id's hash of other fields), then the fields, each unambiguously delimited.
pub(crate) struct Fields(Vec<u8>);

impl Fields {
    pub(crate) fn new(domain: &str) -> Fields {
        let mut fields = Fields(Vec::with_capacity(64));
        fields.str(domain);
        fields
    }

    pub(crate) fn str(&mut self, text: &str) -> &mut Fields {
        self.u64(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    pub(crate) fn u64(&mut self, number: u64) -> &mut Fields {
        self.0.extend_from_slice(&number.to_le_bytes());
        self
    }

    pub(crate) fn hash64(&self) -> u64 {
        sip::SipHasher13::new_with_keys(KEYS.0, KEYS.1).hash(&self.0)
    }

    /// 128 bits, where many values are kept side by side and must not collide (the
    /// tally's memory of what it counted).
    pub(crate) fn hash128(&self) -> u128 {
        sip128::SipHasher13::new_with_keys(KEYS.0, KEYS.1)
            .hash(&self.0)
            .as_u128()
    }
}

/// The id of an event: 16 lowercase hex digits, the same for the same crossing computed
/// again from the same frames. `origin` names the frame sequence (the source record's
/// stream, or a per-run random string when frames have no record) and `seq` the frame in
/// it; `place` is the line or zone.
pub fn event_id(
    camera: &str,
    origin: &str,
    seq: u64,
    kind: EventKind,
    place: &str,
    direction: Option<Direction>,
    track_id: u64,
) -> String {
    let hash = Fields::new("gkv.event")
        .str(camera)
        .str(origin)
        .u64(seq)
        .str(kind.as_str())
        .str(place)
        .str(direction.map_or("", Direction::as_str))
        .u64(track_id)
        .hash64();
    format!("{hash:016x}")
}

/// A track id for the `nth` track born on frame `seq` of `origin` (see [`event_id`]) in
/// `camera`: the same when that frame is tracked again, unique across workers and
/// restarts. Below 2^53, so JavaScript (the viewer's page, JSON tools) reads it exactly,
/// and never 0.
pub fn track_id(camera: &str, origin: &str, seq: u64, nth: u32) -> u64 {
    let hash = Fields::new("gkv.track")
        .str(camera)
        .str(origin)
        .u64(seq)
        .u64(u64::from(nth))
        .hash64();
    (hash & JS_SAFE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing() -> String {
        event_id(
            "cam1",
            "cam1-09b1",
            42,
            EventKind::LineCrossed,
            "gate",
            Some(Direction::In),
            7,
        )
    }

    #[test]
    fn an_event_id_is_16_hex_digits_and_the_same_for_the_same_event() {
        let id = crossing();
        assert_eq!(id.len(), 16, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{id}"
        );
        assert_eq!(crossing(), id);
    }

    #[test]
    fn changing_any_one_argument_changes_the_event_id() {
        let base = crossing();
        let others = [
            event_id(
                "cam2",
                "cam1-09b1",
                42,
                EventKind::LineCrossed,
                "gate",
                Some(Direction::In),
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b2",
                42,
                EventKind::LineCrossed,
                "gate",
                Some(Direction::In),
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b1",
                43,
                EventKind::LineCrossed,
                "gate",
                Some(Direction::In),
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b1",
                42,
                EventKind::ZoneEntered,
                "gate",
                Some(Direction::In),
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b1",
                42,
                EventKind::LineCrossed,
                "exit",
                Some(Direction::In),
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b1",
                42,
                EventKind::LineCrossed,
                "gate",
                Some(Direction::Out),
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b1",
                42,
                EventKind::LineCrossed,
                "gate",
                None,
                7,
            ),
            event_id(
                "cam1",
                "cam1-09b1",
                42,
                EventKind::LineCrossed,
                "gate",
                Some(Direction::In),
                8,
            ),
            // The same characters split differently between camera and origin.
            event_id(
                "cam1c",
                "am1-09b1",
                42,
                EventKind::LineCrossed,
                "gate",
                Some(Direction::In),
                7,
            ),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(other, &base, "change {i} kept the id");
        }
        let distinct: std::collections::HashSet<&String> = others.iter().collect();
        assert_eq!(distinct.len(), others.len());
    }

    #[test]
    fn ids_are_pinned_so_a_change_of_hashing_is_caught() {
        // Checked against an independent SipHash-1-3 (the reference algorithm, written
        // apart in Python) over the documented encoding. A new value means every id
        // already in a topic would no longer match its recomputation after a restart.
        assert_eq!(crossing(), "ab8e2fe3370059f0");
        assert_eq!(track_id("cam1", "cam1-09b1", 42, 0), 5_212_538_457_783_032);
    }

    #[test]
    fn track_ids_are_stable_distinct_below_2_pow_53_and_never_0() {
        let id = track_id("cam1", "cam1-09b1", 42, 0);
        assert_eq!(track_id("cam1", "cam1-09b1", 42, 0), id);
        for other in [
            track_id("cam2", "cam1-09b1", 42, 0),
            track_id("cam1", "cam1-09b2", 42, 0),
            track_id("cam1", "cam1-09b1", 43, 0),
            track_id("cam1", "cam1-09b1", 42, 1),
        ] {
            assert_ne!(other, id);
        }
        let mut seen = std::collections::HashSet::new();
        for seq in 0..20_000u64 {
            for nth in 0..5 {
                let id = track_id("cam1", "run-1", seq, nth);
                assert!((1..=JS_SAFE).contains(&id), "{id}");
                assert!(seen.insert(id), "track id {id} repeated");
            }
        }
    }
}

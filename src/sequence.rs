// SPDX-License-Identifier: MIT OR Apache-2.0
//! Frames lost, duplicated and reordered in one stream (one run of a `kafkasink`), from
//! its `gkv-seq` numbers: `kafkasrc` counts them per camera, and so can any reader of a
//! topic (`demo-status`). A camera that restarts starts a new stream: a restart, not a loss.

use std::collections::BTreeSet;

/// How far back (in frames) a stream remembers which numbers it is missing: a frame
/// further back than this that arrives again counts as duplicated.
pub const WINDOW: u64 = 4096;

/// How one frame's number compares with those seen before in its stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The number after the highest so far.
    Next,
    /// Past the next number: the frames in between are missing (for now).
    After { missing: u64 },
    /// Seen before.
    Duplicate,
    /// One of the missing frames, arriving after later ones.
    Late,
}

/// The numbers one stream has delivered.
#[derive(Debug)]
pub struct Sequence {
    next: u64,
    /// Missing numbers of the last [`WINDOW`] before `next`.
    missing: BTreeSet<u64>,
}

impl Sequence {
    /// A stream first seen at frame `seq` (joined mid-way: what came before is not ours).
    pub fn starting_at(seq: u64) -> Sequence {
        Sequence {
            next: seq,
            missing: BTreeSet::new(),
        }
    }

    pub fn arrive(&mut self, seq: u64) -> Arrival {
        if seq == self.next {
            self.next += 1;
            return Arrival::Next;
        }
        if seq > self.next {
            let missing = seq - self.next;
            self.missing
                .extend(self.next.max((seq + 1).saturating_sub(WINDOW))..seq);
            self.next = seq + 1;
            let oldest = self.next.saturating_sub(WINDOW);
            if self.missing.first().is_some_and(|first| *first < oldest) {
                self.missing = self.missing.split_off(&oldest);
            }
            return Arrival::After { missing };
        }
        if self.missing.remove(&seq) {
            Arrival::Late
        } else {
            Arrival::Duplicate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_duplicates_and_late_frames_are_told_apart() {
        let mut sequence = Sequence::starting_at(10);
        assert_eq!(sequence.arrive(10), Arrival::Next);
        assert_eq!(sequence.arrive(11), Arrival::Next);
        assert_eq!(sequence.arrive(15), Arrival::After { missing: 3 });
        assert_eq!(sequence.arrive(13), Arrival::Late);
        assert_eq!(sequence.arrive(13), Arrival::Duplicate);
        assert_eq!(sequence.arrive(15), Arrival::Duplicate);
        assert_eq!(sequence.arrive(11), Arrival::Duplicate);
        assert_eq!(sequence.arrive(16), Arrival::Next);
        assert_eq!(sequence.arrive(9), Arrival::Duplicate, "before the join");
    }

    #[test]
    fn only_a_window_of_missing_numbers_is_remembered() {
        let mut sequence = Sequence::starting_at(0);
        assert_eq!(
            sequence.arrive(1_000_000),
            Arrival::After { missing: 1_000_000 }
        );
        assert_eq!(sequence.missing.len() as u64, WINDOW - 1);
        assert_eq!(sequence.arrive(1_000_001 - WINDOW), Arrival::Late);
        assert_eq!(sequence.arrive(1_000_000 - WINDOW), Arrival::Duplicate);
        assert_eq!(
            sequence.arrive(1_000_000 + 2 * WINDOW),
            Arrival::After {
                missing: 2 * WINDOW - 1
            }
        );
        assert!(sequence.missing.len() as u64 <= WINDOW);
    }
}

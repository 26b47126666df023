// SPDX-License-Identifier: MIT OR Apache-2.0
//! Frames lost, duplicated and reordered in one stream (one run of a `kafkasink`), from
//! its `gkv-seq` numbers: `kafkasrc` counts them per camera, and so can any reader of a
//! topic (`demo-status`). A camera that restarts starts a new stream: a restart, not a loss.
//! A stream spread over several partitions (`kafkasink partitioner=round-robin`, so that a
//! group shares one camera's independent frames) has no order across them, and a reader
//! may own only some of them: its numbers are not checked.

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
    /// The stream's records come from more than one partition: nothing is checked. The
    /// first time, `retracted` is what it had counted missing and still was.
    Unordered { retracted: u64 },
}

/// The numbers one stream has delivered.
#[derive(Debug)]
pub struct Sequence {
    next: u64,
    /// Missing numbers of the last [`WINDOW`] before `next`.
    missing: BTreeSet<u64>,
    /// Frames counted missing, less those that came late.
    outstanding: u64,
    /// The partition of its first record, until it is seen in another (`None`).
    partition: Option<i32>,
}

impl Sequence {
    /// A stream first seen at frame `seq` in `partition` (joined mid-way: what came before
    /// is not ours).
    pub fn starting_at(seq: u64, partition: i32) -> Sequence {
        Sequence {
            next: seq,
            missing: BTreeSet::new(),
            outstanding: 0,
            partition: Some(partition),
        }
    }

    /// Frame `seq`, read from `partition`.
    pub fn arrive(&mut self, seq: u64, partition: i32) -> Arrival {
        match self.partition {
            None => return Arrival::Unordered { retracted: 0 },
            Some(first) if first != partition => {
                self.partition = None;
                self.missing.clear();
                let retracted = std::mem::take(&mut self.outstanding);
                return Arrival::Unordered { retracted };
            }
            Some(_) => {}
        }
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
            self.outstanding += missing;
            return Arrival::After { missing };
        }
        if self.missing.remove(&seq) {
            self.outstanding = self.outstanding.saturating_sub(1);
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
        let mut sequence = Sequence::starting_at(10, 0);
        assert_eq!(sequence.arrive(10, 0), Arrival::Next);
        assert_eq!(sequence.arrive(11, 0), Arrival::Next);
        assert_eq!(sequence.arrive(15, 0), Arrival::After { missing: 3 });
        assert_eq!(sequence.arrive(13, 0), Arrival::Late);
        assert_eq!(sequence.arrive(13, 0), Arrival::Duplicate);
        assert_eq!(sequence.arrive(15, 0), Arrival::Duplicate);
        assert_eq!(sequence.arrive(11, 0), Arrival::Duplicate);
        assert_eq!(sequence.arrive(16, 0), Arrival::Next);
        assert_eq!(sequence.arrive(9, 0), Arrival::Duplicate, "before the join");
    }

    #[test]
    fn only_a_window_of_missing_numbers_is_remembered() {
        let mut sequence = Sequence::starting_at(0, 0);
        assert_eq!(
            sequence.arrive(1_000_000, 0),
            Arrival::After { missing: 1_000_000 }
        );
        assert_eq!(sequence.missing.len() as u64, WINDOW - 1);
        assert_eq!(sequence.arrive(1_000_001 - WINDOW, 0), Arrival::Late);
        assert_eq!(sequence.arrive(1_000_000 - WINDOW, 0), Arrival::Duplicate);
        assert_eq!(
            sequence.arrive(1_000_000 + 2 * WINDOW, 0),
            Arrival::After {
                missing: 2 * WINDOW - 1
            }
        );
        assert!(sequence.missing.len() as u64 <= WINDOW);
    }

    #[test]
    fn a_stream_spread_over_partitions_is_not_checked_and_its_gaps_are_taken_back() {
        let mut sequence = Sequence::starting_at(0, 0);
        // Round-robin over two partitions: this reader sees 0, 2, 4 of partition 0 first.
        assert_eq!(sequence.arrive(0, 0), Arrival::Next);
        assert_eq!(sequence.arrive(2, 0), Arrival::After { missing: 1 });
        assert_eq!(sequence.arrive(4, 0), Arrival::After { missing: 1 });
        assert_eq!(sequence.arrive(1, 1), Arrival::Unordered { retracted: 2 });
        assert_eq!(sequence.arrive(3, 1), Arrival::Unordered { retracted: 0 });
        assert_eq!(sequence.arrive(3, 1), Arrival::Unordered { retracted: 0 });
    }
}

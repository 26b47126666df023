// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which records downstream has finished with, so that `kafkasrc` commits only those.
//!
//! Every buffer `kafkasrc` pushes carries a [`ReleaseToken`] inside its record meta. Metas
//! are copied onto the buffers that elements derive from it (decoded frames, encoded
//! JPEGs, tee branches), and `kafkasink` keeps the token until the broker acknowledged the
//! record it wrote. The token is dropped with the last of them, and only then is the
//! record "released": a worker killed with frames in queues, decoders or an undelivered
//! producer queue has not committed them, and its successor reads them again.
//!
//! Offsets are committed in order, so a partition's commit point is the record before its
//! oldest unreleased one.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use gst::glib;
use gst::prelude::*;
use kafkavision::meta::RECORD_META;

/// Name of the record meta field that holds the token.
pub const TOKEN_FIELD: &str = "release-token";

#[derive(Default)]
pub struct OffsetTracker {
    inner: Mutex<Progress>,
    /// The source whose pipeline's shutdown turns releases into discards.
    owner: Mutex<Option<glib::WeakRef<gst::Element>>>,
    /// The source sent EOS: an application that stops the pipeline after the EOS message
    /// finds everything processed, so buffers sinks still hold count as handled.
    ended: AtomicBool,
}

#[derive(Default)]
struct Progress {
    partitions: HashMap<i32, PartitionProgress>,
    /// Per partition, bumped whenever it is assigned or revoked: tokens of an older
    /// assignment no longer count, since the partition is read again from its committed
    /// offset. Per partition because cooperative rebalancing moves some partitions while
    /// the others keep flowing.
    generations: HashMap<i32, u64>,
}

impl Progress {
    fn generation(&self, partition: i32) -> u64 {
        self.generations.get(&partition).copied().unwrap_or(0)
    }

    fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        *self.generations.entry(partition).or_default() += 1;
    }
}

#[derive(Default)]
struct PartitionProgress {
    /// Offsets handed downstream and not released yet.
    in_flight: BTreeSet<i64>,
    /// Offsets whose delivery failed downstream: never released, so never committed.
    failed: BTreeSet<i64>,
    first_seen: Option<i64>,
    highest_seen: Option<i64>,
    /// The last offset handed to the consumer for commit.
    stored: Option<i64>,
}

impl PartitionProgress {
    fn see(&mut self, offset: i64) {
        self.first_seen.get_or_insert(offset);
        self.highest_seen = Some(self.highest_seen.map_or(offset, |h| h.max(offset)));
    }

    /// The highest offset such that it and every offset read before it were handled.
    fn commit_point(&self) -> Option<i64> {
        let oldest_open = [self.in_flight.first(), self.failed.first()]
            .into_iter()
            .flatten()
            .min()
            .copied();
        match oldest_open {
            Some(open) => (open > self.first_seen?).then_some(open - 1),
            None => self.highest_seen,
        }
    }
}

impl OffsetTracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The record goes downstream in a buffer; it is handled when the token is dropped.
    pub fn hand_out(self: &Arc<Self>, partition: i32, offset: i64) -> ReleaseToken {
        let mut progress = self.inner.lock().unwrap();
        let entry = progress.partitions.entry(partition).or_default();
        entry.see(offset);
        entry.in_flight.insert(offset);
        ReleaseToken(Arc::new(TokenState {
            tracker: Arc::downgrade(self),
            partition,
            offset,
            generation: progress.generation(partition),
            failed: AtomicBool::new(false),
        }))
    }

    /// The record was dealt with without sending anything downstream (skipped, bad, end of
    /// stream), or downstream is trusted once the push returned.
    pub fn handled(&self, partition: i32, offset: i64) {
        let mut progress = self.inner.lock().unwrap();
        progress
            .partitions
            .entry(partition)
            .or_default()
            .see(offset);
    }

    /// Releases happen from the owner's pipeline shutting down: they count as discards.
    pub fn watch_shutdown_of(&self, element: &gst::Element) {
        *self.owner.lock().unwrap() = Some(element.downgrade());
    }

    /// True while the owner's top-level pipeline is going to READY or NULL, or is there:
    /// queues flush then, and the buffers they drop were never processed.
    fn owner_shutting_down(&self) -> bool {
        let Some(owner) = self.owner.lock().unwrap().as_ref().map(|w| w.upgrade()) else {
            return false;
        };
        // The source itself is gone: nothing processed now can be committed anyway.
        let Some(owner) = owner else {
            return true;
        };
        let mut top = owner;
        while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
            top = parent;
        }
        let going_down = |state: gst::State| matches!(state, gst::State::Ready | gst::State::Null);
        match top.pending_state() {
            gst::State::VoidPending => going_down(top.current_state()),
            pending => going_down(pending),
        }
    }

    /// End-of-stream went downstream after the last buffer.
    pub fn end_of_stream(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// Stopping after end-of-stream: every record still open was processed, and only a
    /// sink's last sample (or an application) holds its buffer. Failed records stay open.
    pub fn stopping(&self) {
        if !self.ended.load(Ordering::SeqCst) {
            return;
        }
        let mut progress = self.inner.lock().unwrap();
        for entry in progress.partitions.values_mut() {
            entry.in_flight.clear();
        }
    }

    fn release(&self, token: &TokenState) {
        let discarded = !self.ended.load(Ordering::SeqCst) && self.owner_shutting_down();
        let mut progress = self.inner.lock().unwrap();
        if progress.generation(token.partition) != token.generation {
            return;
        }
        if let Some(entry) = progress.partitions.get_mut(&token.partition) {
            entry.in_flight.remove(&token.offset);
            if discarded || token.failed.load(Ordering::Relaxed) {
                entry.failed.insert(token.offset);
            }
        }
    }

    /// Commit points that moved since the last call, as (partition, offset of the last
    /// handled record).
    pub fn take_commit_points(&self) -> Vec<(i32, i64)> {
        let mut progress = self.inner.lock().unwrap();
        let mut points = Vec::new();
        for (partition, entry) in progress.partitions.iter_mut() {
            if let Some(point) = entry.commit_point()
                && entry.stored.is_none_or(|stored| point > stored)
            {
                entry.stored = Some(point);
                points.push((*partition, point));
            }
        }
        points
    }

    /// The whole assignment changed: what is in flight now is read again by whoever owns
    /// its partition next, so forget it.
    pub fn reset(&self) {
        let mut progress = self.inner.lock().unwrap();
        let known: Vec<i32> = progress
            .partitions
            .keys()
            .chain(progress.generations.keys())
            .copied()
            .collect();
        for partition in known {
            progress.forget(partition);
        }
    }

    /// These partitions were revoked or assigned (cooperative rebalancing): forget what
    /// is in flight from them; the other partitions keep their progress.
    pub fn forget(&self, partitions: &[i32]) {
        let mut progress = self.inner.lock().unwrap();
        for partition in partitions {
            progress.forget(*partition);
        }
    }

    /// Records handed downstream and not released yet, and records whose delivery failed.
    pub fn open_records(&self) -> (u64, u64) {
        let progress = self.inner.lock().unwrap();
        progress
            .partitions
            .values()
            .fold((0, 0), |(open, failed), p| {
                (
                    open + p.in_flight.len() as u64,
                    failed + p.failed.len() as u64,
                )
            })
    }
}

struct TokenState {
    tracker: Weak<OffsetTracker>,
    partition: i32,
    offset: i64,
    generation: u64,
    failed: AtomicBool,
}

/// Runs on whichever thread drops the last clone: a streaming thread (`kafkasrc`'s own
/// when nothing queues between it and the sink, else the one after a queue), the producer
/// polling thread of a `kafkasink` (once the broker acknowledged the record), or the
/// application's thread that takes the pipeline to READY or NULL (queues free what they
/// held). Hence it takes only the tracker's own short lock and reads the pipeline's state:
/// nothing that `kafkasrc`'s `create` may hold while it waits.
impl Drop for TokenState {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.upgrade() {
            tracker.release(self);
        }
    }
}

/// Keeps a record open while any buffer (or undelivered Kafka record) derived from it is
/// alive. Clones share one state; the record is released when the last clone is dropped.
#[derive(Clone, glib::Boxed)]
#[boxed_type(name = "GstKafkaReleaseToken")]
pub struct ReleaseToken(Arc<TokenState>);

impl ReleaseToken {
    /// Output derived from the record was lost (a delivery failed): the record must be read
    /// again, so its offset is never committed.
    pub fn mark_failed(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }

    /// The token a buffer's record meta holds, if any.
    pub fn of_buffer(buffer: &gst::BufferRef) -> Option<ReleaseToken> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, RECORD_META).ok()?;
        meta.structure().get::<ReleaseToken>(TOKEN_FIELD).ok()
    }

    /// Puts this token into the buffer's record meta, which keeps the record open.
    pub fn attach(self, buffer: &mut gst::BufferRef) {
        if let Ok(mut meta) = gst::meta::CustomMeta::from_mut_buffer(buffer, RECORD_META) {
            meta.mut_structure().set(TOKEN_FIELD, self);
        }
    }
}

impl std::fmt::Debug for ReleaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReleaseToken({}:{})", self.0.partition, self.0.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_the_oldest_open_record() {
        let tracker = OffsetTracker::new();
        let a = tracker.hand_out(0, 10);
        let b = tracker.hand_out(0, 11);
        tracker.handled(0, 12);
        assert!(tracker.take_commit_points().is_empty());
        drop(b);
        assert!(tracker.take_commit_points().is_empty(), "10 is still open");
        let a2 = a.clone();
        drop(a);
        assert!(tracker.take_commit_points().is_empty(), "a clone is alive");
        drop(a2);
        assert_eq!(tracker.take_commit_points(), vec![(0, 12)]);
        assert!(tracker.take_commit_points().is_empty(), "reported once");
    }

    #[test]
    fn partitions_are_independent_and_a_failed_record_blocks_its_partition() {
        let tracker = OffsetTracker::new();
        let p0 = tracker.hand_out(0, 5);
        let p1 = tracker.hand_out(1, 7);
        tracker.handled(1, 8);
        p1.mark_failed();
        drop(p1);
        drop(p0);
        assert_eq!(tracker.take_commit_points(), vec![(0, 5)]);
        assert_eq!(tracker.open_records(), (0, 1));
        drop(tracker.hand_out(1, 9));
        assert!(
            tracker.take_commit_points().is_empty(),
            "7 failed: nothing past it"
        );
    }

    #[test]
    fn stopping_after_end_of_stream_releases_what_sinks_still_hold() {
        let tracker = OffsetTracker::new();
        let held = tracker.hand_out(0, 3);
        let failed = tracker.hand_out(1, 0);
        failed.mark_failed();
        drop(failed);
        tracker.stopping();
        assert!(tracker.take_commit_points().is_empty(), "no EOS yet");
        tracker.end_of_stream();
        tracker.stopping();
        assert_eq!(tracker.take_commit_points(), vec![(0, 3)]);
        drop(held);
        assert_eq!(
            tracker.open_records(),
            (0, 1),
            "the failed record stays open"
        );
    }

    #[test]
    fn forgetting_a_partition_keeps_the_others_progress() {
        let tracker = OffsetTracker::new();
        let moved = tracker.hand_out(0, 5);
        let kept = tracker.hand_out(1, 7);
        tracker.handled(1, 6);
        tracker.forget(&[0]);
        // Partition 0 was revoked and assigned back: its old token no longer counts.
        tracker.handled(0, 3);
        drop(moved);
        drop(kept);
        let mut points = tracker.take_commit_points();
        points.sort();
        assert_eq!(points, vec![(0, 3), (1, 7)]);
    }

    #[test]
    fn tokens_of_an_old_assignment_are_ignored() {
        let tracker = OffsetTracker::new();
        let old = tracker.hand_out(0, 1);
        tracker.reset();
        tracker.handled(0, 40);
        drop(old);
        assert_eq!(tracker.take_commit_points(), vec![(0, 40)]);
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc`'s record → buffer state machine: one [`Outcome`] per [`Record`], with what it
//! has to remember between records per stream (the next sequence number, whether a
//! keyframe was seen since joining, the timestamp offset, whether the stream ended) and
//! the caps pushed last. It knows nothing of rdkafka or of the element, so every rule of
//! reading a stream is tested here without a broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::glib;
use kafkavision::meta::{KafkaHeaders, RecordMeta};
use kafkavision::{Envelope, Flags, RecordKind};

use super::consumer::Stats;
use super::imp::CAT;
use super::payload::check_payload;
use super::sequence::{Arrival, Sequence};
use super::window::{StopAt, StopCheck, record_time_ms};
use crate::record::{self, Retime};

/// One Kafka record as read from a partition, borrowed from the client's message.
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// Header names and values in record order; Kafka allows a header without value.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp in Unix ms, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// What to do with one record.
#[derive(Debug)]
pub enum Outcome {
    /// Push the buffer; `new_caps` first when they differ from the caps pushed last
    /// (downstream has accepted them).
    Push {
        buffer: gst::Buffer,
        new_caps: Option<gst::Caps>,
    },
    /// Nothing to push: a delta unit before its stream's first keyframe, or an
    /// end-of-stream record while other streams go on.
    Skip,
    /// The record cannot be read, and why.
    Bad(String),
    /// The read is over: the last open stream ended and `stop-on-eos` is on, or the
    /// record is past `stop-at` and so is every partition. Why, for the log.
    End(&'static str),
}

/// What the source knows about one stream (one `kafkasink` run) it reads.
struct StreamState {
    partition: i32,
    sequence: Sequence,
    /// False until the first keyframe after joining.
    synced: bool,
    /// Running time minus original time, fixed at the first pushed buffer.
    ts_offset: Option<i128>,
    ended: bool,
    /// When it was last read, in records read by this source: the least recent goes
    /// first when the map is full.
    last_read: u64,
}

/// Streams remembered at most. Every camera restart is a new stream, so a long-lived
/// source would otherwise keep one entry per restart forever; the cap is far above the
/// cameras one source reads, so only long-gone streams are forgotten (ended ones first).
pub const MAX_STREAMS: usize = 10_000;

/// The caps a record's buffer goes out with.
struct BufferCaps {
    /// As written in the record (or the `caps` property as text), compared to decide
    /// whether they changed.
    text: String,
    caps: gst::Caps,
    changed: bool,
}

/// Every stream read so far from one topic, and the caps pushed last.
pub struct Streams {
    topic: String,
    by_id: HashMap<String, StreamState>,
    /// Enveloped records read so far, the clock of `StreamState::last_read`.
    reads: u64,
    /// Caps pushed downstream last, and the text they were parsed from.
    current_caps: Option<(String, gst::Caps)>,
    /// The `caps` property: caps of records without envelope or without `gkv-caps`.
    fallback_caps: Option<gst::Caps>,
    stop_on_eos: bool,
    window: Window,
    stats: Arc<Stats>,
    /// The element's name, for the log.
    log_id: glib::GString,
}

/// The part of a topic a source reads: records of one key, up to a stop time.
#[derive(Debug, Default)]
pub struct Window {
    /// Records of other keys are skipped.
    pub key: Option<Vec<u8>>,
    pub stop: Option<StopAt>,
    /// `max-age`: records captured longer ago than this (ms) on arrival are skipped.
    pub max_age_ms: Option<i64>,
}

impl Streams {
    pub fn new(
        topic: &str,
        fallback_caps: Option<gst::Caps>,
        stop_on_eos: bool,
        window: Window,
        stats: Arc<Stats>,
        log_id: glib::GString,
    ) -> Streams {
        Streams {
            topic: topic.to_string(),
            by_id: HashMap::new(),
            reads: 0,
            current_caps: None,
            fallback_caps,
            stop_on_eos,
            window,
            stats,
            log_id,
        }
    }

    /// Forgets the streams last seen on these partitions (gained in a rebalance, so they
    /// may be joined mid-way): they wait for a keyframe again and are re-timed.
    pub fn forget_partitions(&mut self, partitions: &[i32]) {
        self.by_id.retain(|_, s| !partitions.contains(&s.partition));
    }

    /// Reads one record that arrived at running time `now`. `accepts` asks downstream
    /// whether it takes caps that differ from those pushed last: caps nothing downstream
    /// takes would stop the pipeline, and a group would read the record again after every
    /// restart, so such a record is a bad one.
    pub fn read(
        &mut self,
        record: &Record<'_>,
        now: Option<gst::ClockTime>,
        accepts: impl FnOnce(&gst::Caps) -> bool,
    ) -> Outcome {
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(record.value.len() as u64, Ordering::Relaxed);
        if let Some(key) = &self.window.key
            && record.key != Some(key.as_slice())
        {
            self.stats.records_other_key.fetch_add(1, Ordering::Relaxed);
            return Outcome::Skip;
        }
        let read = match record::split_headers(record.headers.iter().copied()) {
            Err(err) => Err(err.to_string()),
            Ok((envelope, extra)) => match self.check_stop(record, envelope.as_ref()) {
                Some(outcome) => Ok(outcome),
                None => match envelope {
                    None => self.read_plain(record, now, &extra, accepts),
                    Some(envelope) => self.read_enveloped(record, now, envelope, &extra, accepts),
                },
            },
        };
        read.unwrap_or_else(Outcome::Bad)
    }

    /// `stop-at`, in Unix ms, when set.
    pub fn stop_at_ms(&self) -> Option<i64> {
        self.window.stop.as_ref().map(|stop| stop.at_ms)
    }

    /// What to do with a record past `stop-at`; `None` for a record within it.
    fn check_stop(&mut self, record: &Record<'_>, envelope: Option<&Envelope>) -> Option<Outcome> {
        let stop = self.window.stop.as_mut()?;
        let time = record_time_ms(envelope, record.timestamp_ms);
        let assigned = self.stats.partitions_assigned.load(Ordering::Relaxed);
        let check = stop.check(record.partition, time, assigned);
        if check != StopCheck::Within {
            self.stats.records_past_stop.fetch_add(1, Ordering::Relaxed);
        }
        match check {
            StopCheck::Within => None,
            StopCheck::Past => Some(Outcome::Skip),
            StopCheck::Reached => Some(Outcome::End("a record past stop-at")),
        }
    }

    /// A record without envelope (written by another client): its partition is one
    /// stream and its offset the sequence number.
    fn read_plain(
        &mut self,
        record: &Record<'_>,
        now: Option<gst::ClockTime>,
        extra: &KafkaHeaders,
        accepts: impl FnOnce(&gst::Caps) -> bool,
    ) -> Result<Outcome, String> {
        let Some(fallback) = &self.fallback_caps else {
            return Err(
                "record carries no gkv envelope; set the caps property (e.g. caps=image/jpeg) \
                 to read records written by other clients"
                    .into(),
            );
        };
        let caps = self.buffer_caps(fallback.to_string(), |_| Ok(fallback.clone()))?;
        check_payload(&caps.caps, record.value)?;
        if let (Some(time_ms), Some(max_age_ms)) = (record.timestamp_ms, self.window.max_age_ms)
            && kafkavision::clock::unix_time_ms() - time_ms > max_age_ms
        {
            self.stats.records_too_old.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Skip);
        }
        let origin = self.origin(
            record,
            format!("partition-{}", record.partition),
            record.offset as u64,
        );
        let buffer =
            record::plain_buffer_of(record.value, now, record.timestamp_ms, &origin, extra);
        Ok(self.push(buffer, caps, accepts))
    }

    fn read_enveloped(
        &mut self,
        record: &Record<'_>,
        now: Option<gst::ClockTime>,
        envelope: Envelope,
        extra: &KafkaHeaders,
        accepts: impl FnOnce(&gst::Caps) -> bool,
    ) -> Result<Outcome, String> {
        // A bad record must not register its stream: validate before any bookkeeping.
        let caps = match envelope.kind {
            RecordKind::Buffer => Some(self.envelope_caps(&envelope, record.value)?),
            RecordKind::EndOfStream => None,
        };

        if self.by_id.len() >= MAX_STREAMS && !self.by_id.contains_key(&envelope.stream_id) {
            self.forget_one_stream();
        }
        self.reads += 1;
        let stream = self
            .by_id
            .entry(envelope.stream_id.clone())
            .or_insert_with(|| StreamState {
                partition: record.partition,
                sequence: Sequence::starting_at(envelope.seq, record.partition),
                synced: false,
                ts_offset: None,
                ended: false,
                last_read: 0,
            });
        stream.partition = record.partition;
        stream.last_read = self.reads;
        let camera = record.key.map_or_else(
            || envelope.stream_id.clone(),
            |key| String::from_utf8_lossy(key).into_owned(),
        );
        let arrival = stream.sequence.arrive(envelope.seq, record.partition);
        let time_ms = record_time_ms(Some(&envelope), record.timestamp_ms);
        let age_ms = time_ms.map(|t| kafkavision::clock::unix_time_ms() - t);
        {
            let mut cameras = self.stats.cameras.lock().unwrap();
            cameras.count(&camera, &arrival);
            if let (Some(age_ms), Some(_)) = (age_ms, &caps) {
                cameras.heard(&camera).latency.observe(age_ms as f64);
            }
        }
        let mut discont = false;
        match arrival {
            Arrival::Next | Arrival::Unordered { .. } => {}
            Arrival::After { missing } => {
                gst::debug!(
                    CAT,
                    id = &self.log_id,
                    "Stream {}: seq {} where {} was expected",
                    envelope.stream_id,
                    envelope.seq,
                    envelope.seq - missing
                );
                self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
                discont = true;
            }
            Arrival::Duplicate | Arrival::Late => {
                let counter = if arrival == Arrival::Duplicate {
                    &self.stats.frames_duplicated
                } else {
                    &self.stats.frames_out_of_order
                };
                counter.fetch_add(1, Ordering::Relaxed);
                gst::debug!(
                    CAT,
                    id = &self.log_id,
                    "Stream {}: skipping seq {} ({arrival:?})",
                    envelope.stream_id,
                    envelope.seq
                );
                return Ok(Outcome::Skip);
            }
        }

        let Some(caps) = caps else {
            self.stats.eos_records.fetch_add(1, Ordering::Relaxed);
            stream.ended = true;
            gst::info!(
                CAT,
                id = &self.log_id,
                "Stream {} ended",
                envelope.stream_id
            );
            let all_ended = self.by_id.values().all(|s| s.ended);
            return Ok(if self.stop_on_eos && all_ended {
                Outcome::End("every stream has ended")
            } else {
                Outcome::Skip
            });
        };
        stream.ended = false;

        if let (Some(age_ms), Some(max_age_ms)) = (age_ms, self.window.max_age_ms)
            && age_ms > max_age_ms
        {
            self.stats.records_too_old.fetch_add(1, Ordering::Relaxed);
            // The frames after a skipped one may refer to it: wait for a keyframe.
            stream.synced = false;
            return Ok(Outcome::Skip);
        }

        if !stream.synced {
            if envelope.flags.contains(Flags::DELTA_UNIT) {
                self.stats
                    .delta_units_skipped
                    .fetch_add(1, Ordering::Relaxed);
                gst::trace!(
                    CAT,
                    id = &self.log_id,
                    "Stream {}: skipping delta unit {} before the first keyframe",
                    envelope.stream_id,
                    envelope.seq
                );
                return Ok(Outcome::Skip);
            }
            stream.synced = true;
            discont = true;
        }

        let now = now.map_or(0, |t| t.nseconds());
        let reference = envelope.dts.or(envelope.pts);
        let offset = *stream
            .ts_offset
            .get_or_insert_with(|| now as i128 - reference.map_or(now as i128, |r| r as i128));
        let origin = self.origin(record, envelope.stream_id.clone(), envelope.seq);
        let buffer = record::buffer_of(
            record.value,
            &envelope,
            Retime { offset, now },
            discont,
            &origin,
            extra,
        );
        Ok(self.push(buffer, caps, accepts))
    }

    /// Makes room for a new stream: forgets an ended stream, else the one read least
    /// recently. Should it come back, it is a stream joined mid-way (it waits for a
    /// keyframe and is re-timed).
    fn forget_one_stream(&mut self) {
        let Some(id) = self
            .by_id
            .iter()
            .min_by_key(|(_, s)| (!s.ended, s.last_read))
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        gst::info!(
            CAT,
            id = &self.log_id,
            "Forgetting stream {id}: {MAX_STREAMS} streams remembered"
        );
        self.by_id.remove(&id);
    }

    /// The caps of an enveloped buffer (its `gkv-caps` header, else the `caps` property),
    /// checked against its value.
    fn envelope_caps(&self, envelope: &Envelope, value: &[u8]) -> Result<BufferCaps, String> {
        let caps = match (&envelope.caps, &self.fallback_caps) {
            (Some(text), _) => self.buffer_caps(text.clone(), |text| {
                let caps = text
                    .parse::<gst::Caps>()
                    .map_err(|_| format!("header gkv-caps '{text}' is not valid caps"))?;
                if !caps.is_fixed() {
                    return Err(format!("header gkv-caps '{text}' is not fixed caps"));
                }
                Ok(caps)
            })?,
            (None, Some(fallback)) => {
                self.buffer_caps(fallback.to_string(), |_| Ok(fallback.clone()))?
            }
            (None, None) => {
                return Err(
                    "record has an envelope but no gkv-caps header; set the caps property".into(),
                );
            }
        };
        check_payload(&caps.caps, value)?;
        Ok(caps)
    }

    /// The one place caps are compared: the caps pushed last when `text` is theirs (not
    /// parsed again), else `parse(text)`, marked as changed.
    fn buffer_caps(
        &self,
        text: String,
        parse: impl FnOnce(&str) -> Result<gst::Caps, String>,
    ) -> Result<BufferCaps, String> {
        Ok(match &self.current_caps {
            Some((current, caps)) if *current == text => BufferCaps {
                text,
                caps: caps.clone(),
                changed: false,
            },
            _ => BufferCaps {
                caps: parse(&text)?,
                text,
                changed: true,
            },
        })
    }

    fn push(
        &mut self,
        buffer: gst::Buffer,
        caps: BufferCaps,
        accepts: impl FnOnce(&gst::Caps) -> bool,
    ) -> Outcome {
        if !caps.changed {
            return Outcome::Push {
                buffer,
                new_caps: None,
            };
        }
        if !accepts(&caps.caps) {
            return Outcome::Bad(format!("downstream does not accept caps {}", caps.caps));
        }
        self.current_caps = Some((caps.text, caps.caps.clone()));
        Outcome::Push {
            buffer,
            new_caps: Some(caps.caps),
        }
    }

    fn origin(&self, record: &Record<'_>, stream: String, seq: u64) -> RecordMeta {
        RecordMeta {
            topic: self.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.map(|k| String::from_utf8_lossy(k).into_owned()),
            stream,
            seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use kafkavision::envelope::header;

    use super::*;

    const H264: &str = "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au";
    const H264_HD: &str = "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au, \
                           width=(int)1280, height=(int)720";
    const JPEG_BYTES: [u8; 8] = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0xFF, 0xD9];

    /// A record as a writer left it.
    struct Written {
        key: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        value: Vec<u8>,
        partition: i32,
        offset: i64,
    }

    impl Written {
        /// The record `kafkasink` writes for `envelope` into partition 0, at the offset
        /// of its sequence number.
        fn of(envelope: &Envelope) -> Written {
            Written {
                key: None,
                headers: envelope
                    .to_headers()
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value.into_bytes()))
                    .collect(),
                value: b"access unit".to_vec(),
                partition: 0,
                offset: envelope.seq as i64,
            }
        }

        /// A record of another client: no headers at all.
        fn plain(value: &[u8], offset: i64) -> Written {
            Written {
                key: Some(b"cam7".to_vec()),
                headers: Vec::new(),
                value: value.to_vec(),
                partition: 3,
                offset,
            }
        }

        fn with_header(mut self, name: &str, value: &str) -> Written {
            self.headers.retain(|(n, _)| n != name);
            self.headers
                .push((name.to_string(), value.as_bytes().to_vec()));
            self
        }

        fn record(&self) -> Record<'_> {
            Record {
                key: self.key.as_deref(),
                value: &self.value,
                headers: self
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), Some(v.as_slice())))
                    .collect(),
                partition: self.partition,
                offset: self.offset,
                timestamp_ms: Some(1_763_700_000_000),
            }
        }
    }

    /// Frame `seq` of `stream`, 40 ms apart, a keyframe unless `delta`.
    fn frame(stream: &str, seq: u64, delta: bool) -> Envelope {
        let mut envelope = Envelope::buffer(stream, seq, Some(H264.to_string()));
        envelope.pts = Some(seq * 40_000_000);
        if delta {
            envelope.flags = Flags::DELTA_UNIT;
        }
        envelope
    }

    fn new_streams(fallback_caps: Option<&str>, stop_on_eos: bool) -> (Streams, Arc<Stats>) {
        windowed(fallback_caps, stop_on_eos, Window::default())
    }

    fn windowed(
        fallback_caps: Option<&str>,
        stop_on_eos: bool,
        window: Window,
    ) -> (Streams, Arc<Stats>) {
        gst::init().unwrap();
        let stats = Arc::new(Stats::default());
        let fallback_caps = fallback_caps.map(|caps| caps.parse().unwrap());
        let streams = Streams::new(
            "frames",
            fallback_caps,
            stop_on_eos,
            window,
            stats.clone(),
            "kafkasrc-test".into(),
        );
        (streams, stats)
    }

    /// Reads a record at running time 10 s with a downstream that takes any caps.
    fn read(streams: &mut Streams, written: &Written) -> Outcome {
        let now = Some(gst::ClockTime::from_seconds(10));
        streams.read(&written.record(), now, |_| true)
    }

    /// The buffer and new caps of a pushed record.
    fn pushed(outcome: Outcome) -> (gst::Buffer, Option<gst::Caps>) {
        match outcome {
            Outcome::Push { buffer, new_caps } => (buffer, new_caps),
            other => panic!("expected a push, got {other:?}"),
        }
    }

    fn bad(outcome: Outcome) -> String {
        match outcome {
            Outcome::Bad(why) => why,
            other => panic!("expected a bad record, got {other:?}"),
        }
    }

    fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[test]
    fn joining_mid_stream_skips_delta_units_until_a_keyframe() {
        let (mut streams, stats) = new_streams(None, false);
        for seq in 5..7 {
            let outcome = read(&mut streams, &Written::of(&frame("cam1-a", seq, true)));
            assert!(matches!(outcome, Outcome::Skip), "{outcome:?}");
        }
        let (keyframe, _) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 7, false))));
        assert!(keyframe.flags().contains(gst::BufferFlags::DISCONT));
        assert_eq!(keyframe.offset(), 7);
        let (delta, _) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 8, true))));
        assert!(!delta.flags().contains(gst::BufferFlags::DISCONT));
        assert!(delta.flags().contains(gst::BufferFlags::DELTA_UNIT));
        assert_eq!(count(&stats.delta_units_skipped), 2);
        assert_eq!(count(&stats.sequence_gaps), 0);
        assert_eq!(count(&stats.records), 4);
        assert_eq!(count(&stats.bytes), 4 * b"access unit".len() as u64);
    }

    #[test]
    fn a_sequence_gap_is_counted_and_marks_the_next_buffer_discont() {
        let (mut streams, stats) = new_streams(None, false);
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 0, false))));
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 1, true))));
        let (after_gap, _) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 4, true))));
        assert!(after_gap.flags().contains(gst::BufferFlags::DISCONT));
        let (next, _) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 5, true))));
        assert!(!next.flags().contains(gst::BufferFlags::DISCONT));
        assert_eq!(count(&stats.sequence_gaps), 1);
    }

    /// (missing, duplicated, out of order) of each camera, in stats.
    fn camera_figures(stats: &Stats) -> Vec<(String, u64, u64, u64)> {
        let cameras = stats.cameras.lock().unwrap();
        cameras
            .iter()
            .map(|(c, f)| (c.clone(), f.missing, f.duplicated, f.out_of_order))
            .collect()
    }

    #[test]
    fn lost_duplicated_and_reordered_frames_are_counted_exactly_and_a_restart_is_no_loss() {
        let (mut streams, stats) = new_streams(None, false);
        let at = |stream: &str, seq| {
            let mut written = Written::of(&frame(stream, seq, seq > 0));
            written.key = Some(b"cam1".to_vec());
            written
        };
        // 0 1 _ 3 5 4 4 1 7 _ 9: 2 and 8 lost, 4 late, 4 and 1 again, 6 lost.
        let mut pushed_seqs = Vec::new();
        for seq in [0, 1, 3, 5, 4, 4, 1, 7, 9] {
            if let Outcome::Push { buffer, .. } = read(&mut streams, &at("cam1-a", seq)) {
                pushed_seqs.push(buffer.offset());
            }
        }
        assert_eq!(
            pushed_seqs,
            [0, 1, 3, 5, 7, 9],
            "late and repeated frames skipped"
        );
        assert_eq!(camera_figures(&stats), [("cam1".into(), 3, 2, 1)]);
        // The camera restarts: a new stream from 0, nothing lost in between.
        for seq in 0..3 {
            read(&mut streams, &at("cam1-b", seq));
        }
        assert_eq!(camera_figures(&stats), [("cam1".into(), 3, 2, 1)]);
        assert_eq!(count(&stats.frames_duplicated), 2);
        assert_eq!(count(&stats.frames_out_of_order), 1);
        let latency = stats
            .cameras
            .lock()
            .unwrap()
            .iter()
            .next()
            .unwrap()
            .1
            .latency
            .clone();
        assert_eq!(latency.count(), 9 + 3, "every buffer record's arrival");
    }

    #[test]
    fn a_stream_spread_over_partitions_is_pushed_whole_and_counts_no_loss() {
        let (mut streams, stats) = new_streams(None, false);
        // Round-robin over two partitions, read as the consumer gets them: partition 0's
        // records first, then partition 1's.
        let mut pushed_count = 0;
        for seq in [0, 2, 4, 6, 1, 3, 5, 7] {
            let mut written = Written::of(&frame("cam1-a", seq, false));
            written.partition = (seq % 2) as i32;
            if let Outcome::Push { .. } = read(&mut streams, &written) {
                pushed_count += 1;
            }
        }
        assert_eq!(pushed_count, 8);
        assert_eq!(camera_figures(&stats), [("cam1-a".into(), 0, 0, 0)]);
    }

    #[test]
    fn frames_older_than_max_age_are_skipped_and_the_stream_waits_for_a_keyframe() {
        let window = Window {
            max_age_ms: Some(2_000),
            ..Default::default()
        };
        let (mut streams, stats) = windowed(None, false, window);
        let now_ms = kafkavision::clock::unix_time_ms() as u64;
        let at = |seq: u64, age_ms: u64, delta: bool| {
            let mut envelope = frame("cam1-a", seq, delta);
            envelope.capture_time_ns = Some((now_ms - age_ms) * 1_000_000);
            Written::of(&envelope)
        };
        // A backlog 10.5 s deep, a frame a second, a keyframe every 5 frames.
        let mut kept = Vec::new();
        for seq in 0..14u64 {
            let age_ms = 10_500u64.saturating_sub(seq * 1_000);
            if let Outcome::Push { buffer, .. } = read(&mut streams, &at(seq, age_ms, seq % 5 != 0))
            {
                kept.push(buffer.offset());
            }
        }
        // 0..=8 are older than 2 s; 9 is a delta unit after skipped frames.
        assert_eq!(kept, [10, 11, 12, 13]);
        assert_eq!(count(&stats.records_too_old), 9);
        assert_eq!(count(&stats.delta_units_skipped), 1);
        assert_eq!(camera_figures(&stats), [("cam1-a".into(), 0, 0, 0)]);
    }

    #[test]
    fn end_of_stream_records_end_once_every_stream_has_ended() {
        let (mut streams, stats) = new_streams(None, true);
        for stream in ["cam1-a", "cam2-b"] {
            pushed(read(&mut streams, &Written::of(&frame(stream, 0, false))));
        }
        let eos = |stream| Written::of(&Envelope::end_of_stream(stream, 1));
        assert!(matches!(read(&mut streams, &eos("cam1-a")), Outcome::Skip));
        assert!(matches!(
            read(&mut streams, &eos("cam2-b")),
            Outcome::End(_)
        ));
        assert_eq!(count(&stats.eos_records), 2);

        // Without stop-on-eos the source waits for more.
        let (mut streams, stats) = new_streams(None, false);
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 0, false))));
        assert!(matches!(read(&mut streams, &eos("cam1-a")), Outcome::Skip));
        assert_eq!(count(&stats.eos_records), 1);
    }

    #[test]
    fn a_stream_that_goes_on_after_its_end_keeps_the_source_open() {
        let (mut streams, _) = new_streams(None, true);
        let eos = |stream, seq| Written::of(&Envelope::end_of_stream(stream, seq));
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 0, false))));
        pushed(read(&mut streams, &Written::of(&frame("cam2-b", 0, false))));
        assert!(matches!(
            read(&mut streams, &eos("cam1-a", 1)),
            Outcome::Skip
        ));
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 2, true))));
        assert!(matches!(
            read(&mut streams, &eos("cam2-b", 1)),
            Outcome::Skip
        ));
        assert!(matches!(
            read(&mut streams, &eos("cam1-a", 3)),
            Outcome::End(_)
        ));
    }

    #[test]
    fn caps_are_pushed_once_and_again_when_they_change() {
        let (mut streams, _) = new_streams(None, false);
        let hd = |seq| Written::of(&frame("cam1-a", seq, true)).with_header(header::CAPS, H264_HD);
        let (_, caps) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 0, false))));
        assert_eq!(caps, Some(H264.parse().unwrap()));
        let (_, caps) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 1, true))));
        assert_eq!(caps, None);
        let (_, caps) = pushed(read(&mut streams, &hd(2)));
        assert_eq!(caps, Some(H264_HD.parse().unwrap()));
        let (_, caps) = pushed(read(&mut streams, &hd(3)));
        assert_eq!(caps, None);
    }

    #[test]
    fn caps_downstream_refuses_make_a_bad_record_and_are_asked_again() {
        let (mut streams, stats) = new_streams(None, false);
        let now = Some(gst::ClockTime::from_seconds(10));
        let first = Written::of(&frame("cam1-a", 0, false));
        let why = bad(streams.read(&first.record(), now, |_| false));
        assert!(
            why.contains("downstream does not accept caps video/x-h264"),
            "{why}"
        );
        let (_, caps) = pushed(read(&mut streams, &Written::of(&frame("cam1-a", 1, false))));
        assert_eq!(caps, Some(H264.parse().unwrap()));
        assert_eq!(count(&stats.sequence_gaps), 0);
    }

    #[test]
    fn records_without_an_envelope_need_the_caps_property() {
        let (mut streams, _) = new_streams(None, false);
        let why = bad(read(&mut streams, &Written::plain(&JPEG_BYTES, 40)));
        assert!(why.contains("set the caps property"), "{why}");

        let (mut streams, _) = new_streams(Some("image/jpeg"), false);
        let (buffer, caps) = pushed(read(&mut streams, &Written::plain(&JPEG_BYTES, 40)));
        assert_eq!(caps, Some(gst::Caps::new_empty_simple("image/jpeg")));
        assert_eq!(buffer.pts(), Some(gst::ClockTime::from_seconds(10)));
        assert_eq!(buffer.offset(), 40);
        let origin = RecordMeta::of(&buffer).unwrap();
        assert_eq!(origin.stream, "partition-3");
        assert_eq!(origin.seq, 40);
        assert_eq!(origin.key.as_deref(), Some("cam7"));
        let (_, caps) = pushed(read(&mut streams, &Written::plain(&JPEG_BYTES, 41)));
        assert_eq!(caps, None);

        let why = bad(read(&mut streams, &Written::plain(b"not a jpeg", 42)));
        assert!(why.contains("JPEG SOI marker"), "{why}");
    }

    #[test]
    fn an_envelope_without_caps_takes_the_caps_property() {
        let envelope = Envelope::buffer("cam1-a", 0, None);
        let (mut streams, _) = new_streams(None, false);
        let why = bad(read(&mut streams, &Written::of(&envelope)));
        assert!(
            why.contains("no gkv-caps header; set the caps property"),
            "{why}"
        );

        let (mut streams, _) = new_streams(Some(H264), false);
        let (_, caps) = pushed(read(&mut streams, &Written::of(&envelope)));
        assert_eq!(caps, Some(H264.parse().unwrap()));
    }

    #[test]
    fn an_unknown_envelope_version_is_a_bad_record() {
        let (mut streams, stats) = new_streams(None, false);
        let newer = Written::of(&frame("cam1-a", 0, false)).with_header(header::VERSION, "2");
        let why = bad(read(&mut streams, &newer));
        assert!(
            why.contains("envelope version '2' is not supported"),
            "{why}"
        );
        assert_eq!(count(&stats.records), 1);
    }

    #[test]
    fn a_bad_record_does_not_register_its_stream() {
        let (mut streams, stats) = new_streams(None, false);
        let broken = Written::of(&frame("cam1-a", 0, false)).with_header(header::CAPS, "{{");
        let why = bad(read(&mut streams, &broken));
        assert!(why.contains("is not valid caps"), "{why}");
        let open = Written::of(&frame("cam1-a", 1, false))
            .with_header(header::CAPS, "video/x-h264, width=(int)[ 1, 4096 ]");
        let why = bad(read(&mut streams, &open));
        assert!(why.contains("is not fixed caps"), "{why}");
        // The stream starts at its first good record: no gap.
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 5, false))));
        assert_eq!(count(&stats.sequence_gaps), 0);
    }

    #[test]
    fn timestamps_keep_their_spacing_from_the_first_buffers_arrival() {
        let (mut streams, _) = new_streams(None, false);
        let at = |streams: &mut Streams, seq, seconds| {
            let written = Written::of(&frame("cam1-a", seq, seq > 0));
            let now = Some(gst::ClockTime::from_seconds(seconds));
            pushed(streams.read(&written.record(), now, |_| true)).0
        };
        assert_eq!(
            at(&mut streams, 0, 3).pts(),
            Some(gst::ClockTime::from_seconds(3))
        );
        // Arriving late does not move it: 40 ms after the first.
        assert_eq!(
            at(&mut streams, 1, 9).pts(),
            Some(gst::ClockTime::from_mseconds(3_040))
        );
    }

    #[test]
    fn a_gained_partition_waits_for_a_keyframe_again() {
        let (mut streams, stats) = new_streams(None, false);
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 0, false))));
        streams.forget_partitions(&[1]);
        pushed(read(&mut streams, &Written::of(&frame("cam1-a", 1, true))));
        streams.forget_partitions(&[0]);
        let outcome = read(&mut streams, &Written::of(&frame("cam1-a", 2, true)));
        assert!(matches!(outcome, Outcome::Skip), "{outcome:?}");
        assert_eq!(count(&stats.delta_units_skipped), 1);
    }

    #[test]
    fn the_stream_map_is_bounded_and_forgets_ended_streams_first_then_the_least_recent() {
        let (mut streams, stats) = new_streams(None, false);
        let first = |stream: &str| Written::of(&frame(stream, 0, false));
        pushed(read(&mut streams, &first("early")));
        for i in 0..MAX_STREAMS - 2 {
            pushed(read(&mut streams, &first(&format!("filler-{i}"))));
        }
        pushed(read(&mut streams, &first("ended")));
        let eos = Written::of(&Envelope::end_of_stream("ended", 1));
        assert!(matches!(read(&mut streams, &eos), Outcome::Skip));
        assert_eq!(streams.by_id.len(), MAX_STREAMS);

        // Full: the ended stream goes though read last, then the least recent.
        pushed(read(&mut streams, &first("new-1")));
        assert!(!streams.by_id.contains_key("ended"));
        assert!(streams.by_id.contains_key("early"));
        pushed(read(&mut streams, &first("new-2")));
        assert!(!streams.by_id.contains_key("early"));
        assert_eq!(streams.by_id.len(), MAX_STREAMS);

        // A forgotten stream that comes back is one joined mid-way: a keyframe first.
        let outcome = read(&mut streams, &Written::of(&frame("early", 1, true)));
        assert!(matches!(outcome, Outcome::Skip), "{outcome:?}");
        assert_eq!(count(&stats.delta_units_skipped), 1);
        assert_eq!(streams.by_id.len(), MAX_STREAMS);
    }

    #[test]
    fn buffers_say_which_record_they_came_from() {
        let (mut streams, _) = new_streams(None, false);
        let mut written = Written::of(&frame("cam1-a", 12, false));
        written.key = Some(b"cam1".to_vec());
        written.partition = 2;
        written.offset = 900;
        let (buffer, _) = pushed(read(&mut streams, &written));
        assert_eq!(
            RecordMeta::of(&buffer),
            Some(RecordMeta {
                topic: "frames".into(),
                partition: 2,
                offset: 900,
                key: Some("cam1".into()),
                stream: "cam1-a".into(),
                seq: 12,
            })
        );
    }

    /// Frame `seq` of camera `key`, captured at `ms`.
    fn keyed(key: &str, seq: u64, ms: u64) -> Written {
        let mut envelope = frame(&format!("{key}-a"), seq, seq > 0);
        envelope.capture_time_ns = Some(ms * 1_000_000);
        let mut written = Written::of(&envelope);
        written.key = Some(key.as_bytes().to_vec());
        written
    }

    #[test]
    fn a_key_keeps_its_records_and_counts_the_others() {
        let window = Window {
            key: Some(b"cam1".to_vec()),
            stop: None,
            ..Default::default()
        };
        let (mut streams, stats) = windowed(None, false, window);
        let (buffer, _) = pushed(read(&mut streams, &keyed("cam1", 0, 1000)));
        assert_eq!(
            RecordMeta::of(&buffer).unwrap().key.as_deref(),
            Some("cam1")
        );
        assert!(matches!(
            read(&mut streams, &keyed("cam2", 0, 1000)),
            Outcome::Skip
        ));
        // A record without a key is another camera's too.
        let mut keyless = keyed("cam1", 1, 1040);
        keyless.key = None;
        assert!(matches!(read(&mut streams, &keyless), Outcome::Skip));
        pushed(read(&mut streams, &keyed("cam1", 1, 1040)));
        assert_eq!(count(&stats.records_other_key), 2);
        assert_eq!(count(&stats.records), 4);
        // The other camera's stream was never registered.
        assert_eq!(streams.by_id.len(), 1);
    }

    #[test]
    fn stop_at_ends_at_the_first_record_of_the_key_past_it() {
        let window = Window {
            key: Some(b"cam1".to_vec()),
            stop: Some(StopAt::new(2000, true)),
            ..Default::default()
        };
        let (mut streams, stats) = windowed(None, false, window);
        assert_eq!(streams.stop_at_ms(), Some(2000));
        pushed(read(&mut streams, &keyed("cam1", 0, 1960)));
        pushed(read(&mut streams, &keyed("cam1", 1, 2000)));
        // Another camera past the stop time ends nothing.
        assert!(matches!(
            read(&mut streams, &keyed("cam2", 9, 2500)),
            Outcome::Skip
        ));
        assert!(matches!(
            read(&mut streams, &keyed("cam1", 2, 2040)),
            Outcome::End(_)
        ));
        assert_eq!(count(&stats.records_past_stop), 1);
    }

    #[test]
    fn without_a_key_stop_at_waits_for_every_partition() {
        let window = Window {
            key: None,
            stop: Some(StopAt::new(2000, false)),
            ..Default::default()
        };
        let (mut streams, stats) = windowed(None, false, window);
        stats.partitions_assigned.store(2, Ordering::Relaxed);
        let mut late = keyed("cam2", 0, 2100);
        late.partition = 1;
        assert!(matches!(read(&mut streams, &late), Outcome::Skip));
        pushed(read(&mut streams, &keyed("cam1", 0, 1900)));
        assert!(matches!(
            read(&mut streams, &keyed("cam1", 1, 2040)),
            Outcome::End(_)
        ));
        assert_eq!(count(&stats.records_past_stop), 2);
    }
}

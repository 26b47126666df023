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
use kafkavision::meta::RecordMeta;
use kafkavision::{Envelope, Flags, RecordKind};

use super::consumer::Stats;
use super::imp::CAT;
use super::payload::check_payload;
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
    /// The last open stream ended and `stop-on-eos` is on.
    End,
}

/// What the source knows about one stream (one `kafkasink` run) it reads.
struct StreamState {
    partition: i32,
    next_seq: u64,
    /// False until the first keyframe after joining.
    synced: bool,
    /// Running time minus original time, fixed at the first pushed buffer.
    ts_offset: Option<i128>,
    ended: bool,
}

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
    /// Caps pushed downstream last, and the text they were parsed from.
    current_caps: Option<(String, gst::Caps)>,
    /// The `caps` property: caps of records without envelope or without `gkv-caps`.
    fallback_caps: Option<gst::Caps>,
    stop_on_eos: bool,
    stats: Arc<Stats>,
    /// The element's name, for the log.
    log_id: glib::GString,
}

impl Streams {
    pub fn new(
        topic: &str,
        fallback_caps: Option<gst::Caps>,
        stop_on_eos: bool,
        stats: Arc<Stats>,
        log_id: glib::GString,
    ) -> Streams {
        Streams {
            topic: topic.to_string(),
            by_id: HashMap::new(),
            current_caps: None,
            fallback_caps,
            stop_on_eos,
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
        match record::split_headers(record.headers.iter().copied()) {
            Err(err) => Outcome::Bad(err.to_string()),
            Ok((None, extra)) => self.read_plain(record, now, &extra, accepts),
            Ok((Some(envelope), extra)) => {
                self.read_enveloped(record, now, envelope, &extra, accepts)
            }
        }
    }

    /// A record without envelope (written by another client): its partition is one
    /// stream and its offset the sequence number.
    fn read_plain(
        &mut self,
        record: &Record<'_>,
        now: Option<gst::ClockTime>,
        extra: &kafkavision::meta::KafkaHeaders,
        accepts: impl FnOnce(&gst::Caps) -> bool,
    ) -> Outcome {
        let Some(fallback) = &self.fallback_caps else {
            return Outcome::Bad(
                "record carries no gkv envelope; set the caps property (e.g. caps=image/jpeg) \
                 to read records written by other clients"
                    .into(),
            );
        };
        let caps = self.buffer_caps(fallback.to_string(), |_| Ok(fallback.clone()));
        let caps =
            match caps.and_then(|caps| check_payload(&caps.caps, record.value).map(|()| caps)) {
                Ok(caps) => caps,
                Err(why) => return Outcome::Bad(why),
            };
        let origin = self.origin(
            record,
            format!("partition-{}", record.partition),
            record.offset as u64,
        );
        let buffer =
            record::plain_buffer_of(record.value, now, record.timestamp_ms, &origin, extra);
        self.push(buffer, caps, accepts)
    }

    fn read_enveloped(
        &mut self,
        record: &Record<'_>,
        now: Option<gst::ClockTime>,
        envelope: Envelope,
        extra: &kafkavision::meta::KafkaHeaders,
        accepts: impl FnOnce(&gst::Caps) -> bool,
    ) -> Outcome {
        // A bad record must not register its stream: validate before any bookkeeping.
        let caps = match envelope.kind {
            RecordKind::Buffer => match self.envelope_caps(&envelope, record.value) {
                Ok(caps) => Some(caps),
                Err(why) => return Outcome::Bad(why),
            },
            RecordKind::EndOfStream => None,
        };

        let stream = self
            .by_id
            .entry(envelope.stream_id.clone())
            .or_insert_with(|| StreamState {
                partition: record.partition,
                next_seq: envelope.seq,
                synced: false,
                ts_offset: None,
                ended: false,
            });
        let mut discont = false;
        if envelope.seq != stream.next_seq {
            gst::debug!(
                CAT,
                id = &self.log_id,
                "Stream {}: seq {} where {} was expected",
                envelope.stream_id,
                envelope.seq,
                stream.next_seq
            );
            self.stats.sequence_gaps.fetch_add(1, Ordering::Relaxed);
            discont = true;
        }
        stream.next_seq = envelope.seq.wrapping_add(1);
        stream.partition = record.partition;

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
            return if self.stop_on_eos && all_ended {
                Outcome::End
            } else {
                Outcome::Skip
            };
        };
        stream.ended = false;

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
                return Outcome::Skip;
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
        self.push(buffer, caps, accepts)
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

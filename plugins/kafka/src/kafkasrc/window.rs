// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading a time window of one camera (a clip): which records a `key` keeps, where the
//! streams' last keyframes at or before a start time are, and when a stop time is reached.
//! Pure logic over records already read, tested without a broker; the consumer does the
//! reading.

use std::collections::{HashMap, HashSet};

use kafkavision::{Envelope, Flags, RecordKind};

/// A record's time for windows, Unix ms: the capture time its envelope carries (the time
/// events name), else the time it reached its first sink, else its Kafka timestamp.
pub fn record_time_ms(envelope: Option<&Envelope>, kafka_timestamp_ms: Option<i64>) -> Option<i64> {
    envelope
        .and_then(|e| e.capture_time_ns.or(e.sink_time_ns))
        .map(|ns| (ns / 1_000_000) as i64)
        .or(kafka_timestamp_ms)
}

/// What the keyframe search needs of one record.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub offset: i64,
    /// The envelope's stream id, or the partition's for records without one.
    pub stream: String,
    pub keyframe: bool,
    /// Its end-of-stream record: the stream is over.
    pub end: bool,
    pub time_ms: Option<i64>,
}

impl Scanned {
    /// A record read in the search, `None` for headers that cannot be read (the source
    /// reports those when it reads them).
    pub fn of(
        offset: i64,
        partition: i32,
        envelope: Result<Option<Envelope>, ()>,
        kafka_timestamp_ms: Option<i64>,
    ) -> Option<Scanned> {
        let envelope = envelope.ok()?;
        let time_ms = record_time_ms(envelope.as_ref(), kafka_timestamp_ms);
        Some(match envelope {
            Some(e) => Scanned {
                offset,
                keyframe: !e.flags.contains(Flags::DELTA_UNIT),
                end: e.kind == RecordKind::EndOfStream,
                stream: e.stream_id,
                time_ms,
            },
            // Another client's record: every one stands alone, as kafkasrc reads it.
            None => Scanned {
                offset,
                stream: format!("partition-{partition}"),
                keyframe: true,
                end: false,
                time_ms,
            },
        })
    }
}

/// Where a partition's reading should start for every stream to begin at its last
/// keyframe at or before the start time, as far as the records searched tell.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyframeStart {
    /// The earliest of those keyframes; `None` when no stream had a record at or before
    /// the time in the records searched.
    pub offset: Option<i64>,
    /// False when a stream open at the time has no keyframe in the records searched:
    /// earlier records must be searched too.
    pub complete: bool,
}

/// The start for streams open at `time_ms` among `records` (in offset order, all of the
/// wanted key): each stream's last keyframe at or before the time. A stream whose
/// end-of-stream record comes before the time is not open; records after the time are
/// not looked at.
pub fn keyframe_start(records: &[Scanned], time_ms: i64) -> KeyframeStart {
    #[derive(Default)]
    struct Open {
        ended: bool,
        keyframe: Option<i64>,
    }
    let mut streams: HashMap<&str, Open> = HashMap::new();
    for record in records {
        if record.time_ms.is_some_and(|t| t > time_ms) {
            continue;
        }
        let stream = streams.entry(&record.stream).or_default();
        stream.ended = record.end;
        if record.keyframe && !record.end {
            stream.keyframe = Some(record.offset);
        }
    }
    let open: Vec<&Open> = streams.values().filter(|s| !s.ended).collect();
    KeyframeStart {
        offset: open.iter().filter_map(|s| s.keyframe).min(),
        complete: open.iter().all(|s| s.keyframe.is_some()),
    }
}

/// The stop time: reached when a record of the wanted key is past it (a key lives in one
/// partition) or, without a key, once every assigned partition has had one past it.
#[derive(Debug)]
pub struct StopAt {
    pub at_ms: i64,
    keyed: bool,
    partitions_past: HashSet<i32>,
}

/// What a record means for the stop time.
#[derive(Debug, PartialEq, Eq)]
pub enum StopCheck {
    /// Within the window: read it.
    Within,
    /// Past the stop time; other partitions may still have records within it.
    Past,
    /// Past the stop time, and so is every partition: the read is over.
    Reached,
}

impl StopAt {
    pub fn new(at_ms: i64, keyed: bool) -> StopAt {
        StopAt {
            at_ms,
            keyed,
            partitions_past: HashSet::new(),
        }
    }

    /// A record of the wanted key at `time_ms` from `partition`, with `assigned`
    /// partitions read.
    pub fn check(&mut self, partition: i32, time_ms: Option<i64>, assigned: u32) -> StopCheck {
        if time_ms.is_none_or(|t| t <= self.at_ms) {
            return StopCheck::Within;
        }
        self.partitions_past.insert(partition);
        if self.keyed || self.partitions_past.len() >= assigned as usize {
            StopCheck::Reached
        } else {
            StopCheck::Past
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, stream: &str, keyframe: bool, time_ms: i64) -> Scanned {
        Scanned {
            offset,
            stream: stream.into(),
            keyframe,
            end: false,
            time_ms: Some(time_ms),
        }
    }

    #[test]
    fn each_open_stream_starts_at_its_last_keyframe_at_or_before_the_time() {
        let records = [
            record(10, "a", true, 1000),
            record(11, "b", true, 1010),
            record(12, "a", false, 1100),
            record(13, "a", true, 1200),
            record(14, "b", false, 1210),
            // At the time exactly: still at or before it.
            record(15, "b", true, 1300),
            record(16, "a", false, 1300),
            // After the time: not a start, even for a keyframe.
            record(17, "a", true, 1301),
        ];
        assert_eq!(
            keyframe_start(&records, 1300),
            KeyframeStart {
                offset: Some(13),
                complete: true
            }
        );
        assert_eq!(
            keyframe_start(&records, 1250),
            KeyframeStart {
                offset: Some(11),
                complete: true
            }
        );
    }

    #[test]
    fn a_stream_without_a_keyframe_in_the_records_asks_for_earlier_ones() {
        let records = [record(20, "a", false, 1000), record(21, "b", true, 1000)];
        assert_eq!(
            keyframe_start(&records, 1500),
            KeyframeStart {
                offset: Some(21),
                complete: false
            }
        );
        // No record at or before the time: nothing to start from here.
        assert_eq!(
            keyframe_start(&records, 999),
            KeyframeStart {
                offset: None,
                complete: true
            }
        );
    }

    #[test]
    fn a_stream_that_ended_before_the_time_is_not_waited_for() {
        let mut end = record(31, "old", false, 1100);
        end.end = true;
        let records = [
            record(30, "old", false, 1000),
            end,
            record(32, "new", true, 1200),
        ];
        assert_eq!(
            keyframe_start(&records, 1300),
            KeyframeStart {
                offset: Some(32),
                complete: true
            }
        );
    }

    #[test]
    fn records_without_an_envelope_each_stand_alone() {
        let plain = Scanned::of(7, 3, Ok(None), Some(1234)).unwrap();
        assert!(plain.keyframe);
        assert_eq!(plain.stream, "partition-3");
        assert_eq!(plain.time_ms, Some(1234));
        assert!(Scanned::of(8, 3, Err(()), Some(1234)).is_none());
    }

    #[test]
    fn the_capture_time_is_the_records_time() {
        let mut envelope = Envelope::buffer("cam1-a", 0, None);
        assert_eq!(record_time_ms(Some(&envelope), Some(5)), Some(5));
        envelope.sink_time_ns = Some(2_000_000_000);
        assert_eq!(record_time_ms(Some(&envelope), Some(5)), Some(2000));
        envelope.capture_time_ns = Some(1_500_000_000);
        assert_eq!(record_time_ms(Some(&envelope), Some(5)), Some(1500));
        assert_eq!(record_time_ms(None, Some(5)), Some(5));
    }

    #[test]
    fn the_stop_time_is_reached_by_the_key_or_by_every_partition() {
        let mut keyed = StopAt::new(1000, true);
        assert_eq!(keyed.check(0, Some(1000), 4), StopCheck::Within);
        assert_eq!(keyed.check(0, None, 4), StopCheck::Within);
        assert_eq!(keyed.check(2, Some(1001), 4), StopCheck::Reached);

        let mut every = StopAt::new(1000, false);
        assert_eq!(every.check(0, Some(1001), 2), StopCheck::Past);
        assert_eq!(every.check(0, Some(1002), 2), StopCheck::Past);
        assert_eq!(every.check(1, Some(900), 2), StopCheck::Within);
        assert_eq!(every.check(1, Some(1001), 2), StopCheck::Reached);
    }
}
